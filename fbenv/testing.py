"""Checks every fbenv env must pass; the test suite runs them over the whole registry.

``check_fbenv_env`` runs Gymnasium's ``check_env`` and fbenv's own checks: the info keys
and Feedback types of every step, lockstep same-seed determinism, that the text and
discrete interfaces draw the same hidden task from the same seed, and ``close()`` twice;
with ``simulator="llm"`` it also drives the LLM path with a :class:`ChoosingBackend` and
requires zero parse failures and zero fallbacks. ``check_fbenv_parallel_env`` does the
same for PettingZoo ``ParallelEnv`` tasks; ``check_spec_card`` checks the nine sections.
:func:`task_cases` is what the registry-generated tests parametrize over.
Each check raises ``AssertionError`` with a message saying what differed.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from fbenv.feedback import Feedback
from fbenv.llm.scripted import ChoosingBackend
from fbenv.registry import REGISTRY, TaskSpec

SPEC_CARD_SECTIONS = ("Description", "Observation", "Action", "Reward", "Feedback source", "True utility",
                      "Episode end", "Arguments", "Version history")

REQUIRED_INFO = {"feedback": tuple, "true_utility": float, "is_success": bool}
# Timing and cost vary run to run; everything else in info must repeat exactly.
VOLATILE_INFO = {"usage"}


def _fail(msg: str) -> None:
    raise AssertionError(msg)


def check_info(info: dict[str, Any], where: str) -> None:
    for key, typ in REQUIRED_INFO.items():
        if key not in info:
            _fail(f"{where}: info lacks {key!r} (has {sorted(info)})")
        value = info[key]
        if typ is float and isinstance(value, (int, float, np.floating)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                _fail(f"{where}: info[{key!r}] is not finite: {value}")
            continue
        if typ is bool and isinstance(value, (bool, np.bool_)):
            continue
        if not isinstance(value, typ):
            _fail(f"{where}: info[{key!r}] expects {typ.__name__}, actual {type(value).__name__}")
    for record in info["feedback"]:
        if not isinstance(record, Feedback):
            _fail(f"{where}: info['feedback'] holds a {type(record).__name__}, expects Feedback")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, Feedback) and isinstance(b, Feedback):
        return _same({**a.__dict__, "usage": None}, {**b.__dict__, "usage": None})
    return a == b


def rollout(env: gym.Env, seed: int, steps: int = 12) -> list[tuple]:
    """A same-seed rollout: actions sampled from the action space seeded with ``seed``."""
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    check_info(info, "reset")
    trace = [(obs, {k: v for k, v in info.items() if k not in VOLATILE_INFO})]
    for t in range(steps):
        action = env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        check_info(info, f"step {t}")
        if terminated and truncated:
            _fail(f"step {t}: terminated and truncated both set")
        trace.append((obs, float(reward), terminated, truncated, {k: v for k, v in info.items() if k not in VOLATILE_INFO}))
        if terminated or truncated:
            obs, info = env.reset()
            trace.append((obs, {k: v for k, v in info.items() if k not in VOLATILE_INFO}))
    return trace


def check_lockstep(make_env, seed: int = 0, steps: int = 12) -> None:
    """Two envs, same seed, same actions: identical observations, rewards and infos."""
    a, b = make_env(), make_env()
    try:
        ta, tb = rollout(a, seed, steps), rollout(b, seed, steps)
    finally:
        a.close()
        b.close()
    for i, (x, y) in enumerate(zip(ta, tb)):
        if not _same(x, y):
            _fail(f"lockstep rollouts differ at entry {i}:\n{x}\n!=\n{y}")


def check_interfaces_agree(make_env, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """``interface="text"`` and ``"discrete"`` draw the same hidden task from a seed."""
    text, disc = make_env(interface="text"), make_env(interface="discrete")
    try:
        for seed in seeds:
            text.reset(seed=seed)
            disc.reset(seed=seed)
            ht, hd = text.unwrapped.hidden_task(), disc.unwrapped.hidden_task()
            if ht != hd:
                _fail(f"seed {seed}: interfaces disagree on the hidden task:\n{ht}\n!=\n{hd}")
    finally:
        text.close()
        disc.close()


def check_llm_path(make_env, seeds: tuple[int, ...] = (0, 1, 2), steps: int = 12) -> None:
    """Every LLM call of a rollout parsed and none fell back (``make_env`` uses a choosing backend).

    Actions are the task's own candidate replies (in the text view too: random text
    rarely says anything a simulated person can answer).
    """
    env = make_env()
    try:
        llm_records = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            _, info = env.reset(seed=seed)
            for _ in range(steps):
                replies = env.unwrapped.candidate_replies()
                i = int(rng.integers(len(replies)))
                action = i if env.unwrapped.interface == "discrete" else replies[i]
                _, _, terminated, truncated, info = env.step(action)
                llm_records += [r for r in info["feedback"] if r.simulator == "llm"]
                if terminated or truncated:
                    env.reset()
        if not llm_records:
            _fail("the LLM simulator was never asked in these rollouts")
        bad = [r for r in llm_records if not r.parsed or r.fallback is not None]
        if bad:
            _fail(f"{len(bad)} of {len(llm_records)} LLM records did not parse or fell back, e.g. {bad[0]}")
        stats = env.unwrapped.parse_stats
        if stats.failures or stats.fallbacks or stats.give_ups:
            _fail(f"parse failures with a backend that answers every choice: {stats}")
    finally:
        env.close()


def check_fbenv_env(task: TaskSpec, **kwargs: Any) -> None:
    """Every check, for one registered single-agent task and option set."""

    def make_env(**over: Any) -> gym.Env:
        return gym.make(task.id, **{**kwargs, **over})

    env = make_env()
    check_env(env.unwrapped, skip_render_check=True)
    env.close()
    env.close()  # twice, on purpose
    check_lockstep(make_env)
    if set(task.interfaces) >= {"text", "discrete"} and "interface" not in kwargs:
        check_interfaces_agree(make_env)
    if kwargs.get("simulator") == "llm" and isinstance(kwargs.get("llm"), ChoosingBackend):
        check_llm_path(make_env)


def check_spec_card(task: TaskSpec) -> None:
    """The task module's docstring has every section of a spec card."""
    card = importlib.import_module(task.entry_point.partition(":")[0]).__doc__ or ""
    missing = [name for name in SPEC_CARD_SECTIONS if f"## {name}" not in card]
    if missing:
        _fail(f"{task.id}: the spec card lacks {missing}")


def task_cases(specs: list[TaskSpec] | None = None) -> list[tuple[TaskSpec, dict[str, Any]]]:
    """(spec, kwargs) for every interface x variant x simulator of every task; the LLM
    simulator is answered by a :class:`ChoosingBackend`."""
    out = []
    for task in REGISTRY if specs is None else specs:
        variants = list(task.variants)
        if task.multi_agent:  # every seat alone is learnable, the others played by their roles
            cls = task.load()
            variants += [{**v, "learnable": seat} for v in task.variants for seat in cls.seats
                         if all(o in cls.seat_roles for o in cls.seats if o != seat)]
        for interface in task.interfaces:
            for variant in variants:
                for sim in task.simulators:
                    kw = {"interface": interface, "simulator": sim, **variant}
                    if sim == "llm":
                        kw["llm"] = ChoosingBackend()
                    out.append((task, kw))
    return out


def case_id(case: tuple[TaskSpec, dict[str, Any]]) -> str:
    task, kw = case
    extra = [str(v) for k, v in kw.items() if k not in ("interface", "simulator", "llm")]
    return "-".join([task.name, kw["interface"], kw["simulator"], *extra])


def check_task(task: TaskSpec, **kwargs: Any) -> None:
    """The right checker for ``task`` (single- or multi-agent) with ``kwargs``."""
    if task.multi_agent:
        check_fbenv_parallel_env(task, **kwargs)
    else:
        check_fbenv_env(task, **kwargs)


def check_fbenv_parallel_env(task: "TaskSpec | Callable[[], Any]", num_cycles: int = 20, **kwargs: Any) -> None:
    """Every check for a multi-agent (PettingZoo ``ParallelEnv``) task.

    PettingZoo's parallel API and seed tests, its AEC API test through
    ``parallel_to_aec``, fbenv's info keys for every agent at every step, and
    ``close()`` twice. ``task`` is a registered spec (built with ``kwargs``) or a
    factory of fresh envs (seed tests need two). With a choosing LLM backend, every LLM
    record must parse without fallback.
    """
    from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
    from pettingzoo.utils.conversions import parallel_to_aec

    if isinstance(task, TaskSpec):
        spec_ = task

        def make_env():
            return spec_.load()(**kwargs)
    else:
        make_env = task

    env = make_env()
    parallel_api_test(env, num_cycles=num_cycles)
    env.close()
    env.close()  # twice, on purpose
    parallel_seed_test(make_env, num_cycles=num_cycles)
    api_test(parallel_to_aec(make_env()), num_cycles=num_cycles)

    env = make_env()
    llm_records = 0
    rng = np.random.default_rng(0)
    try:
        _, infos = env.reset(seed=0)
        for agent, info in infos.items():
            check_info(info, f"reset[{agent}]")
        for t in range(num_cycles):
            if not env.agents:  # the episode ended: a new one, so later steps are checked too
                env.reset(seed=t + 1)
            if hasattr(env, "candidate_replies"):  # the task's own replies: random text says nothing
                picks = {a: int(rng.integers(len(env.candidate_replies(a)))) for a in env.agents}
                actions = {a: i if env.interface == "discrete" else env.candidate_replies(a)[i] for a, i in picks.items()}
            else:
                actions = {a: env.action_space(a).sample() for a in env.agents}
            _, _, terminations, truncations, infos = env.step(actions)
            for agent, info in infos.items():
                check_info(info, f"step {t}[{agent}]")
                if isinstance(kwargs.get("llm"), ChoosingBackend):
                    llm_records += sum(r.simulator == "llm" for r in info["feedback"])
                    bad = [r for r in info["feedback"] if r.simulator == "llm" and (not r.parsed or r.fallback)]
                    if bad:
                        _fail(f"step {t}[{agent}]: LLM records did not parse or fell back: {bad[0]}")
                if terminations.get(agent) and truncations.get(agent):
                    _fail(f"step {t}[{agent}]: terminated and truncated both set")
        if isinstance(kwargs.get("llm"), ChoosingBackend) and getattr(env, "simulated", ()) and not llm_records:
            _fail("the simulated seats never asked the LLM in these steps")
    finally:
        env.close()


def single_agent_specs() -> list[TaskSpec]:
    return [s for s in REGISTRY if not s.multi_agent]


def multi_agent_specs() -> list[TaskSpec]:
    return [s for s in REGISTRY if s.multi_agent]
