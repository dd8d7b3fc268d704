"""Checks every fbenv env must pass; the test suite runs them over the whole registry.

``check_fbenv_env`` runs Gymnasium's ``check_env`` and fbenv's own checks: the info keys
and Feedback types of every step, lockstep same-seed determinism, that the text and
discrete interfaces draw the same hidden task from the same seed, and ``close()`` twice.
``check_fbenv_parallel_env`` does the same for PettingZoo ``ParallelEnv`` tasks.
Each check raises ``AssertionError`` with a message saying what differed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from fbenv.feedback import Feedback
from fbenv.registry import REGISTRY, TaskSpec

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


def check_fbenv_parallel_env(make_env: Callable[[], Any], num_cycles: int = 20) -> None:
    """Every check for a multi-agent (PettingZoo ``ParallelEnv``) task.

    PettingZoo's parallel API and seed tests, its AEC API test through
    ``parallel_to_aec``, fbenv's info keys for every agent at every step, and
    ``close()`` twice. ``make_env`` builds a fresh env (seed tests need two).
    """
    from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
    from pettingzoo.utils.conversions import parallel_to_aec

    env = make_env()
    parallel_api_test(env, num_cycles=num_cycles)
    env.close()
    env.close()  # twice, on purpose
    parallel_seed_test(make_env, num_cycles=num_cycles)
    api_test(parallel_to_aec(make_env()), num_cycles=num_cycles)

    env = make_env()
    try:
        _, infos = env.reset(seed=0)
        for agent, info in infos.items():
            check_info(info, f"reset[{agent}]")
        for t in range(num_cycles):
            if not env.agents:
                break
            actions = {a: env.action_space(a).sample() for a in env.agents}
            _, _, terminations, truncations, infos = env.step(actions)
            for agent, info in infos.items():
                check_info(info, f"step {t}[{agent}]")
                if terminations.get(agent) and truncations.get(agent):
                    _fail(f"step {t}[{agent}]: terminated and truncated both set")
    finally:
        env.close()


def single_agent_specs() -> list[TaskSpec]:
    return [s for s in REGISTRY if not s.multi_agent]


def multi_agent_specs() -> list[TaskSpec]:
    return [s for s in REGISTRY if s.multi_agent]
