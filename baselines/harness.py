"""The benchmark harness: suites as data, one results row per episode, resumable runs.

A **suite** is a TOML file (``baselines/suites/quick.toml``, ``full.toml``, or a user's
own path) of grids; each grid is (env id, kwargs) x (agent, kwargs) x seeds::

    [[grid]]
    name = "bandits"
    seeds = 8                                   # or an explicit list [0, 1, 5]
    envs = [{ id = "fbenv/SuggestionTiming-v0", kwargs = {} }]
    agents = [{ name = "ucb1", kwargs = { warmup = 2 } }, { name = "random" }]

A ``[generate]`` table adds grids from the registry, so a task registered later shows up
with no edit: for every task (``tasks = "all"``, or only those no grid names: ``"unnamed"``),
the seeded random agent and the task's scripted policies (its fidelity probe's, under the
probe's first variant, or every variant: ``variants = "all"``) on the rule simulator;
and for every task with an LLM simulator that no grid runs under it, the first scripted
policy on the LLM simulator for ``llm_seeds`` seeds (short: the embedded model is slow).

Agents (``name``): ``random``; ``probe:<policy>`` (a scripted policy of the task's probe);
the bandits ``epsilon_greedy``, ``ucb1``, ``thompson``, ``exp3`` (kwargs go to the class,
plus ``warmup``: training episodes before the scored one, and ``reward_range``, rewards are
clipped into it); ``ppo`` (SB3 PPO on the discrete view, trained within the run for
``steps`` with ``train_seed``, once per process and cell); ``zero_shot`` and ``reflexion``
(prompting agents on the text view; kwargs go to the class).

Every episode is one row of ``RUN_DIR/results.sqlite`` (:mod:`fbenv.baselines.store`),
keyed by ``(cell, seed, repeat)``; ``RUN_DIR/run.json`` keeps the expanded cells, so
``--resume RUN_DIR`` plays exactly the episodes not yet recorded. An episode depends only
on its cell, seed and repeat (the env is reset with the seed; the agent's randomness comes
from ``(seed, repeat)``), so the rows do not depend on how many worker processes play them,
nor on the executor: local processes (``workers``) or a Ray cluster (``executor="ray"``,
whose worker processes each keep their own shared LLM backends, as a local worker does).

A cell whose people are LLM-simulated plays its pending episodes in **lockstep**: up to
``lockstep`` episodes at once in threads, their simulator calls merged into batched backend
calls (:class:`fbenv.llm.batching.BatchGroup`, as ``fbenv.vector`` does); each episode keeps
its own env, so its row is the one it would have had alone.

Besides its row, an episode may leave **details** (``RUN_DIR/results.sqlite``, table
``details``, written in the row's transaction): the learning curve of an agent that learns
(a bandit's reward by step of its scored episode, PPO's training returns by timestep) and,
for the first ``TRANSCRIPTS`` seeds of a cell, its transcript with the feedback records of
each step, for the HTML report.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import json
import math
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv import truth as keys
from fbenv.baselines.store import Store
from fbenv.episodes import EpisodeResult, EpisodeTally, outcomes_of
from fbenv.errors import InvalidArgumentError, UnknownNameError
from fbenv.registry import REGISTRY, TaskSpec, spec

BANDITS = {"epsilon_greedy": "EpsilonGreedy", "ucb1": "UCB1", "thompson": "ThompsonSampling", "exp3": "EXP3"}
PROMPTING = {"zero_shot": "ZeroShotAgent", "reflexion": "ReflexionAgent"}
AGENTS = ("random", "probe:<policy>", *BANDITS, "ppo", *PROMPTING)
WARMUP_SEED = 1_000_000  # training episodes play seeds from here: never a scored seed
TRANSCRIPTS = 2  # seeds per cell whose episode (repeat 0) keeps its transcript
TRANSCRIPT_STEPS = 40  # steps kept per transcript (a bandit's hundreds of rounds are cut)
TEXT_CHARS = 600  # characters kept per message or action text
EXECUTORS = ("local", "ray")


# ------------------------------------------------------------------ suites


@dataclass(frozen=True)
class Cell:
    """One (env, kwargs) x (agent, kwargs) pair of a grid, with its seeds."""

    grid: str
    env: str
    env_kwargs: Mapping[str, Any]
    agent: str
    agent_kwargs: Mapping[str, Any]
    seeds: tuple[int, ...]

    @property
    def key(self) -> str:
        blob = json.dumps([self.env, self.env_kwargs, self.agent, self.agent_kwargs], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def uses_llm(self) -> bool:
        return simulator_uses_llm(self.env_kwargs.get("simulator", "rule")) or self.agent in PROMPTING

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds)}


def simulator_uses_llm(simulator: Any) -> bool:
    return simulator == "llm" or (isinstance(simulator, Mapping) and "llm" in simulator.values())


def suite_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("fbenv.baselines").joinpath("suites").iterdir()
                  if p.name.endswith(".toml"))


def load_suite(name_or_path: str) -> dict[str, Any]:
    """A packaged suite by name (``quick``, ``full``) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text = path.read_text()
    elif name_or_path in suite_names():
        text = resources.files("fbenv.baselines").joinpath("suites", f"{name_or_path}.toml").read_text()
    else:
        raise UnknownNameError("bench suite file", name_or_path, suite_names())
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"suite {name_or_path!r}: not valid TOML ({exc})") from None
    data.setdefault("name", path.stem if path.suffix == ".toml" else name_or_path)
    return data


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and value >= 1:
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) for s in value):
        return tuple(value)
    raise InvalidArgumentError(f"{where}.seeds: expects a count >= 1 or a list of ints, actual {value!r}")


def _probe(task: TaskSpec):
    from fbenv.fidelity import probe_of

    return probe_of(task)


def _scripted(task: TaskSpec) -> list[str]:
    """The task's scripted policies (its probe's), random left to the harness's own."""
    return [p for p in _probe(task).policies if p != "random"]


def expand(suite: Mapping[str, Any], llm: str = "embedded", skip_llm: bool = False) -> list[Cell]:
    """The suite's cells, generated grids last; ``llm`` fills in the backend of LLM rows that
    name none; ``skip_llm`` drops every cell that would call a model."""
    cells: list[Cell] = []
    for g, grid in enumerate(suite.get("grid", [])):
        name = str(grid.get("name", f"grid{g}"))
        seeds = _seeds(grid.get("seeds", 4), f"grid {name!r}")
        for e in grid.get("envs", []):
            env_id = spec(e["id"]).id  # a typo fails here, with the closest id
            env_kwargs = dict(e.get("kwargs", {}))
            if simulator_uses_llm(env_kwargs.get("simulator", "rule")):
                env_kwargs.setdefault("llm", llm)
            for a in grid.get("agents", []):
                agent = str(a["name"])
                if agent not in AGENTS and not agent.startswith("probe:"):
                    raise UnknownNameError("bench agent", agent, AGENTS)
                cells.append(Cell(name, env_id, env_kwargs, agent, dict(a.get("kwargs", {})), seeds))
    gen = suite.get("generate")
    if gen is not None and gen.get("enabled", True):
        cells += _generated(cells, gen, llm)
    if skip_llm:
        cells = [c for c in cells if not c.uses_llm]
    seen, out = set(), []
    for c in cells:  # one cell in two grids plays once
        if c.key not in seen:
            seen.add(c.key)
            out.append(c)
    return out


def _generated(named: Sequence[Cell], gen: Mapping[str, Any], llm: str) -> list[Cell]:
    seeds = _seeds(gen.get("seeds", 4), "generate")
    llm_seeds = _seeds(gen.get("llm_seeds", 1), "generate.llm_seeds")
    policies = int(gen.get("policies", 8))
    tasks = gen.get("tasks", "all")
    if tasks not in ("all", "unnamed"):
        raise InvalidArgumentError(f"generate.tasks: expects 'all' or 'unnamed', actual {tasks!r}")
    which = gen.get("variants", "first")
    if which not in ("first", "all"):
        raise InvalidArgumentError(f"generate.variants: expects 'first' or 'all', actual {which!r}")
    named_envs = {c.env for c in named}
    with_llm = {c.env for c in named if simulator_uses_llm(c.env_kwargs.get("simulator", "rule"))}
    out = []
    for task in REGISTRY:
        probe = _probe(task)
        variants = [dict(v) for v in probe.variants.values()]
        variants = variants[:1] if which == "first" else variants
        scripted = _scripted(task)
        if tasks == "all" or task.id not in named_envs:
            for variant in variants:
                for agent in ["random", *[f"probe:{p}" for p in scripted[:policies]]]:
                    out.append(Cell(f"auto:{task.name}", task.id, {**variant, "simulator": "rule"}, agent, {}, seeds))
        if "llm" in task.simulators and task.id not in with_llm:
            agent = f"probe:{scripted[0]}" if scripted else "random"
            out.append(Cell(f"auto-llm:{task.name}", task.id, {**variants[0], "simulator": "llm", "llm": llm},
                            agent, {}, llm_seeds))
    return out


# ------------------------------------------------------------------ fingerprints


def _sha(data: "bytes | str") -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@functools.lru_cache(maxsize=None)
def _file_sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def model_identity(backend_spec: str) -> dict[str, Any]:
    """What model answers for ``backend_spec``, read from files and metadata (never loaded)."""
    kind, _, arg = backend_spec.partition(":")
    if kind == "embedded":
        from fbenv.llm.hf import EMBEDDED_DIST, EMBEDDED_MODEL, embedded_gguf_path

        try:
            gguf = embedded_gguf_path()
            version = importlib.metadata.version(EMBEDDED_DIST)
        except Exception as exc:  # noqa: BLE001 - not installed: say so in the fingerprint
            return {"model": EMBEDDED_MODEL, "weights": f"unavailable ({type(exc).__name__})"}
        return {"model": EMBEDDED_MODEL, "dist": f"{EMBEDDED_DIST}=={version}", "file": gguf.name,
                "sha256": _file_sha(str(gguf))}
    if kind == "transformers":
        path = Path(arg)
        if path.is_file():
            return {"model": arg, "sha256": _file_sha(str(path))}
        if path.is_dir():  # weights by name and size, small files (config, tokenizer) by content
            parts = []
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                size = f.stat().st_size
                parts.append(f"{f.relative_to(path)}:{size}:{_file_sha(str(f)) if size < 1 << 20 else ''}")
            return {"model": arg, "files_sha256": _sha("\n".join(parts))}
        return {"model": arg, "revision": "unknown (hub id; pin a local path for a hash)"}
    if kind in ("openai", "vllm"):
        return {"model": arg, "revision": "as served (not verifiable from here)"}
    return {"model": backend_spec}  # scripted / choosing: deterministic code, versioned with fbenv


@functools.lru_cache(maxsize=None)
def prompt_hash(entry_point: str) -> str:
    """A hash of the task's prompt templates: the source of its role classes (the module's
    source when the class declares no roles)."""
    module_name, _, attr = entry_point.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    role_types = sorted({type(r) for r in getattr(cls, "roles", ())}, key=lambda t: t.__qualname__)
    try:
        sources = [inspect.getsource(t) for t in role_types] or [inspect.getsource(sys.modules[module_name])]
    except (OSError, TypeError):
        sources = [repr(getattr(cls, "roles", entry_point))]
    return _sha("\n".join(sources))[:16]


def fingerprint(env_id: str, env_kwargs: Mapping[str, Any], agent: str = "", agent_kwargs: Mapping[str, Any] = {}) -> dict[str, Any]:
    """What produced a row's feedback (and, for prompting agents, its actions)."""
    import fbenv

    task = spec(env_id)
    simulator = env_kwargs.get("simulator", "rule")
    fp: dict[str, Any] = {
        "env": task.id, "env_version": int(task.id.rsplit("-v", 1)[1]), "simulator": simulator,
        "prompts": prompt_hash(task.entry_point), "fbenv": fbenv.__version__,
    }
    if simulator_uses_llm(simulator):
        backend = env_kwargs.get("llm", "embedded")
        backend = backend if isinstance(backend, str) else (getattr(backend, "spec", None) or type(backend).__name__)
        fp["backend"] = backend
        fp["model"] = model_identity(backend)
        fp["sampling"] = {"llm_temperature": float(env_kwargs.get("llm_temperature", 0.0)),
                          "on_parse_error": env_kwargs.get("on_parse_error", "fallback")}
    if agent in PROMPTING:
        backend = agent_kwargs.get("llm", "embedded")
        fp["agent_model"] = {"backend": backend, **model_identity(backend)}
    return fp


def fingerprint_key(fp: Mapping[str, Any]) -> str:
    return _sha(json.dumps(fp, sort_keys=True, default=str))[:12]


# ------------------------------------------------------------------ agents


def agent_seed(seed: int, repeat: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(repeat)]).generate_state(1)[0])


def _base(env: Any) -> Any:
    return env.unwrapped if isinstance(env, gym.Env) else env


def _make(cell: Cell) -> Any:
    task = spec(cell.env)
    kwargs = dict(cell.env_kwargs)
    if "interface" not in kwargs:
        kwargs["interface"] = "text" if cell.agent in PROMPTING or "discrete" not in task.interfaces else "discrete"
    if task.multi_agent:
        return task.load()(**kwargs)
    return gym.make(task.id, **kwargs)


def _random_policy(env: Any, rng: np.random.Generator) -> Callable[..., Any]:
    def act(*args: Any) -> Any:
        *seat, _obs, _info = args
        space = env.action_space(seat[0]) if seat else env.action_space
        n = getattr(space, "n", None)
        if n is not None:
            return int(rng.integers(n))
        replies = getattr(_base(env), "candidate_replies", None)
        options = list(replies()) if callable(replies) else []
        return options[int(rng.integers(len(options)))] if options else "I think so."

    return act


_trained: dict[str, Any] = {}  # per process: a learner trained once per cell, with its training curve
_train_lock = threading.Lock()


def _ppo(cell: Cell) -> Any:
    with _train_lock:  # lockstep threads of one cell share one training
        if cell.key not in _trained:
            from stable_baselines3 import PPO
            from stable_baselines3.common.callbacks import BaseCallback

            from fbenv.agents.sb3 import make_vec_env

            kw = dict(cell.agent_kwargs)
            steps, train_seed = int(kw.pop("steps", 2048)), int(kw.pop("train_seed", 0))
            env_kwargs = {k: v for k, v in cell.env_kwargs.items() if k != "interface"}
            venv = make_vec_env(cell.env, n_envs=int(kw.pop("n_envs", 1)), seed=train_seed, **env_kwargs)
            kw.setdefault("n_steps", min(512, steps))
            kw.setdefault("batch_size", 64)
            curve: dict[str, list] = {"x": [], "y": [], "true": []}

            class Curve(BaseCallback):
                """Training episodes' return (and true utility) by timestep, from SB3's Monitor."""

                def _on_step(self) -> bool:
                    for info in self.locals.get("infos", ()):
                        ep = info.get("episode")
                        if ep is not None:
                            curve["x"].append(int(self.num_timesteps))
                            curve["y"].append(round(float(ep["r"]), 6))
                            curve["true"].append(round(float(ep.get("episode_true_utility", math.nan)), 6))
                    return True

            model = PPO("MlpPolicy", venv, seed=train_seed, device="cpu", verbose=0, **kw)
            model.learn(steps, callback=Curve())
            venv.close()
            _trained[cell.key] = (model, {"kind": "training", "x_label": "training step",
                                          "y_label": "training episode return", **curve})
        return _trained[cell.key]


def _text(x: Any) -> str:
    t = x if isinstance(x, str) else str(x)
    return t if len(t) <= TEXT_CHARS else t[: TEXT_CHARS - 1] + "…"


class _Trace:
    """What an episode leaves besides its row: per-step rewards (for a learning curve) and,
    when kept, the transcript with each step's feedback records."""

    def __init__(self, curve: bool, transcript: bool):
        self.rewards: list[float] | None = [] if curve else None
        self.steps: list[dict[str, Any]] | None = [] if transcript else None
        self.prompt: Any = None
        self.messages: Any = None
        self.total_steps = 0

    def opened(self, info: Mapping[str, Any]) -> None:
        if self.steps is not None:
            self.prompt = [{**m, "content": _text(m.get("content", ""))} for m in info.get(keys.MESSAGES, [])][-6:]

    def step(self, action: Any, reward: float, info: Mapping[str, Any], seat: str | None = None) -> None:
        from fbenv.wrappers import to_jsonable

        self.total_steps += 1
        if self.rewards is not None and seat is None:
            self.rewards.append(round(float(reward), 6))
        if self.steps is not None and len(self.steps) < TRANSCRIPT_STEPS:
            step = {"action": _text(info.get("action_text", action if isinstance(action, str) else to_jsonable(action))),
                    "reward": float(reward), "true_utility": _plain(info.get(keys.TRUE_UTILITY, 0.0)),
                    "feedback": [{k: (_text(v) if k in ("text", "raw") and v else v) for k, v in r.items()
                                  if v is not None and k not in ("usage", "distribution")}
                                 for r in to_jsonable(info.get(keys.FEEDBACK, ()))]}
            if seat is not None:
                step["seat"] = seat
            if info.get(keys.FEEDBACK_ERROR):
                step["feedback_error"] = _text(info[keys.FEEDBACK_ERROR])
            self.steps.append(step)

    def ended(self, info: Mapping[str, Any]) -> None:
        if self.steps is not None:
            self.messages = [{**m, "content": _text(m.get("content", ""))} for m in info.get(keys.MESSAGES, [])][-12:]

    def details(self, cell: Cell, trained_curve: Mapping[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if trained_curve is not None:
            out["curve"] = dict(trained_curve)
        elif self.rewards is not None:
            out["curve"] = {"kind": "episode", "x_label": "step of the scored episode", "y_label": "feedback reward",
                            "x": list(range(1, len(self.rewards) + 1)), "y": self.rewards}
        if self.steps is not None:
            out["transcript"] = {"prompt": self.prompt, "steps": self.steps, "total_steps": self.total_steps,
                                 "messages": self.messages}
        return out


class _Learner:
    """Plays a bandit or prompting agent through episodes, updating it after each step."""

    def __init__(self, agent: Any):
        self.agent = agent

    def episode(self, env: Any, seed: int, clip: tuple[float, float] | None,
                trace: _Trace | None = None) -> tuple[EpisodeTally, Mapping]:
        from fbenv.agents.base import Transition

        tally = EpisodeTally(seed, outcomes_of(env))
        obs, info = env.reset(seed=seed)
        if trace is not None:
            trace.opened(info)
        while True:
            action = self.agent.act(obs, info)
            next_obs, reward, terminated, truncated, info = env.step(action)
            tally.add(reward, terminated, truncated, info)
            if trace is not None:
                trace.step(action, reward, info)
            r = float(reward) if clip is None else min(max(float(reward), clip[0]), clip[1])
            self.agent.update(Transition(obs, action, r, next_obs, terminated, truncated, info))
            obs = next_obs
            if terminated or truncated:
                if trace is not None:
                    trace.ended(info)
                return tally, info


def _play_single(cell: Cell, env: gym.Env, seed: int, repeat: int, trace: _Trace) -> tuple[EpisodeResult, bool, Any]:
    kw = dict(cell.agent_kwargs)
    aseed = agent_seed(seed, repeat)
    if cell.agent in BANDITS or cell.agent in PROMPTING:
        warmup = int(kw.pop("warmup", 0))
        clip = tuple(kw.pop("reward_range", (0.0, 1.0))) if cell.agent in BANDITS else None
        if cell.agent in BANDITS:
            from fbenv.agents import bandits

            agent = getattr(bandits, BANDITS[cell.agent])(int(env.action_space.n), reward_range=clip, **kw)
        else:
            from fbenv.agents import prompting

            agent = getattr(prompting, PROMPTING[cell.agent])(**kw)
        agent.reset(aseed)
        learner = _Learner(agent)
        for k in range(warmup):
            learner.episode(env, WARMUP_SEED + 1000 * seed + k, clip)
        tally, info = learner.episode(env, seed, clip, trace)
        return tally.result(), keys.IS_SUCCESS in info, None
    trained_curve = None
    if cell.agent == "ppo":
        model, trained_curve = _ppo(cell)
        policy = lambda obs, info: int(model.predict(obs, deterministic=True)[0])  # noqa: E731
    elif cell.agent == "random":
        policy = _random_policy(env, np.random.default_rng(aseed))
    else:
        policy = _probe(spec(cell.env)).policies[cell.agent.split(":", 1)[1]](env)
    tally = EpisodeTally(seed, outcomes_of(env))
    obs, info = env.reset(seed=seed)
    trace.opened(info)
    while True:
        action = policy(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        tally.add(reward, terminated, truncated, info)
        trace.step(action, reward, info)
        if terminated or truncated or tally.turns >= 10_000:
            trace.ended(info)
            return tally.result(), keys.IS_SUCCESS in info, trained_curve


def _run_parallel(env: Any, policy: Callable[..., Any], seed: int, trace: _Trace, max_cycles: int = 1000) -> EpisodeResult:
    """One multi-agent episode (fbenv.fidelity's, with the trace): the result sums the
    learnable seats' rewards and utilities."""
    obs, infos = env.reset(seed=seed)
    trace.opened(next(iter(infos.values()), {}))
    results: dict[str, EpisodeResult] = {}
    last: Mapping[str, Any] = {}
    for _ in range(max_cycles):
        if not env.agents:
            break
        actions = {a: policy(a, obs[a], infos[a]) for a in env.agents}
        obs, rewards, _terms, _truncs, infos = env.step(actions)
        for a, info in infos.items():
            trace.step(actions.get(a), rewards.get(a, 0.0), info, seat=a)
            last = info
            if "episode_result" in info:
                results[a] = EpisodeResult.from_info(info["episode_result"])
    trace.ended(last)
    parts = list(results.values())
    return EpisodeResult(
        seed=seed, reward=sum(r.reward for r in parts), true_utility=sum(r.true_utility for r in parts),
        is_success=all(r.is_success for r in parts), turns=max((r.turns for r in parts), default=0),
        terminated=all(r.terminated for r in parts), truncated=any(r.truncated for r in parts),
        feedback_error=next((r.feedback_error for r in parts if r.feedback_error), None),
        fallbacks=sum(r.fallbacks for r in parts), parse_failures=sum(r.parse_failures for r in parts),
    )


def _play_parallel(cell: Cell, env: Any, seed: int, repeat: int, trace: _Trace) -> tuple[EpisodeResult, bool, Any]:
    if cell.agent == "random":
        policy = _random_policy(env, np.random.default_rng(agent_seed(seed, repeat)))
    elif cell.agent.startswith("probe:"):
        policy = _probe(spec(cell.env)).policies[cell.agent.split(":", 1)[1]](env)
    else:
        raise InvalidArgumentError(f"bench: agent {cell.agent!r} plays single-agent tasks only, not {cell.env}")
    return _run_parallel(env, policy, seed, trace), False, None


def _cell(cell_dict: Mapping[str, Any]) -> Cell:
    return Cell(**{**cell_dict, "seeds": tuple(cell_dict["seeds"])})


def _play(cell: Cell, env: Any, seed: int, repeat: int) -> dict[str, Any]:
    """One episode of ``cell`` on ``env`` (made for it): its row, details under ``"details"``."""
    keep = repeat == 0 and seed in cell.seeds[:TRANSCRIPTS]
    trace = _Trace(curve=cell.agent in BANDITS, transcript=keep)
    start = time.perf_counter()
    if spec(cell.env).multi_agent:
        result, has_success, trained_curve = _play_parallel(cell, env, seed, repeat, trace)
    else:
        result, has_success, trained_curve = _play_single(cell, env, seed, repeat, trace)
    usage = getattr(getattr(_base(env), "sim", None), "episode_usage", None)
    seconds = time.perf_counter() - start
    fp = fingerprint(cell.env, cell.env_kwargs, cell.agent, cell.agent_kwargs)
    outcomes = {k: _plain(v) for k, v in result.outcomes.items()}
    return {
        "cell": cell.key, "grid": cell.grid, "env": cell.env, "env_kwargs": dict(cell.env_kwargs),
        "agent": cell.agent, "agent_kwargs": dict(cell.agent_kwargs),
        "simulator": json.dumps(cell.env_kwargs.get("simulator", "rule"), sort_keys=True).strip('"'),
        "seed": int(seed), "repeat": int(repeat), "reward": float(result.reward),
        "true_utility": float(result.true_utility), "success": int(result.is_success), "has_success": int(has_success),
        "turns": int(result.turns), "terminated": int(result.terminated), "truncated": int(result.truncated),
        "outcomes": outcomes, "fallbacks": int(result.fallbacks), "parse_failures": int(result.parse_failures),
        "feedback_error": result.feedback_error,
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0)),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0)),
        "seconds": seconds, "fingerprint": fingerprint_key(fp), "fingerprint_json": fp,
        "details": trace.details(cell, trained_curve if keep else None),
    }


def play(cell_dict: Mapping[str, Any], seed: int, repeat: int) -> dict[str, Any]:
    """One episode of one cell: its results row (what the store records)."""
    cell = _cell(cell_dict)
    env = _make(cell)
    try:
        return _play(cell, env, seed, repeat)
    finally:
        env.close()


def lockstep_ok(cell: Cell) -> bool:
    """Whether the cell's episodes gain from lockstep: its people are LLM-simulated and its
    agent calls no model of its own (a prompting agent's calls are not merged here)."""
    return simulator_uses_llm(cell.env_kwargs.get("simulator", "rule")) and cell.agent not in PROMPTING


def play_batch(cell_dict: Mapping[str, Any], episodes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Episodes ``(seed, repeat)`` of one cell: in lockstep (one env each, their simulator
    calls batched) where :func:`lockstep_ok`, else one at a time. Rows in ``episodes`` order."""
    cell = _cell(cell_dict)
    if len(episodes) < 2 or not lockstep_ok(cell):
        return [play(cell_dict, s, r) for s, r in episodes]
    from fbenv.llm.batching import BatchGroup

    if cell.agent == "ppo":
        _ppo(cell)  # trained once, before the threads
    envs = [_make(cell) for _ in episodes]
    try:
        group = BatchGroup(max_workers=len(envs))
        return group.run([lambda e=e, s=s, r=r: _play(cell, e, s, r) for e, (s, r) in zip(envs, episodes)])
    finally:
        for e in envs:
            e.close()


def _plain(v: Any) -> Any:
    """Outcomes as JSON values (numpy scalars and arrays included)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------ runs


@dataclass
class Run:
    """A run directory: ``run.json`` (the expanded cells and options) beside ``results.sqlite``."""

    path: Path
    suite: str
    cells: list[Cell]
    repeats: int = 1
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def store_path(self) -> Path:
        return self.path / "results.sqlite"

    def episodes(self) -> list[tuple[Cell, int, int]]:
        return [(c, s, r) for c in self.cells for s in c.seeds for r in range(self.repeats)]

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        data = {"suite": self.suite, "repeats": self.repeats, "options": self.options,
                "cells": [c.as_dict() for c in self.cells]}
        (self.path / "run.json").write_text(json.dumps(data, indent=2, default=str))

    @classmethod
    def load(cls, path: "str | Path") -> "Run":
        path = Path(path)
        meta = path / "run.json"
        if not meta.exists():
            raise InvalidArgumentError(f"--resume: expects a run directory with run.json, actual {str(path)!r}")
        data = json.loads(meta.read_text())
        cells = [Cell(**{**c, "seeds": tuple(c["seeds"])}) for c in data["cells"]]
        return cls(path, data["suite"], cells, int(data["repeats"]), data.get("options", {}))


def new_run(suite: str, out: "str | Path", repeats: int = 1, llm: str = "embedded", skip_llm: bool = False) -> Run:
    """Expand ``suite`` into ``out`` (refusing a directory that already holds a run)."""
    if repeats < 1:
        raise InvalidArgumentError(f"--repeats: expects >= 1, actual {repeats}")
    out = Path(out)
    if (out / "run.json").exists():
        raise InvalidArgumentError(f"--out: {str(out)!r} already holds a run; continue it with --resume {out}")
    data = load_suite(suite)
    run = Run(out, str(data["name"]), expand(data, llm=llm, skip_llm=skip_llm), repeats,
              {"llm": llm, "skip_llm": skip_llm})
    run.save()
    return run


def units(todo: Sequence[tuple[Cell, int, int]], lockstep: int = 16) -> list[tuple[Cell, list[tuple[int, int]]]]:
    """The pending episodes as units of work: a lockstep cell's in groups of up to
    ``lockstep`` (1: one at a time), every other episode alone."""
    out: list[tuple[Cell, list[tuple[int, int]]]] = []
    open_: dict[str, list[tuple[int, int]]] = {}
    for c, s, r in todo:
        if lockstep > 1 and lockstep_ok(c):
            if c.key not in open_ or len(open_[c.key]) >= lockstep:
                open_[c.key] = []
                out.append((c, open_[c.key]))
            open_[c.key].append((s, r))
        else:
            out.append((c, [(s, r)]))
    return out


class _Local:
    """Units in this process (``workers=1``) or in spawned worker processes."""

    def __init__(self, workers: int):
        self.pool = ProcessPoolExecutor(workers, mp_context=_spawn()) if workers > 1 else None

    def results(self, work: Sequence[tuple[Cell, list[tuple[int, int]]]]) -> Iterable[list[dict[str, Any]]]:
        if self.pool is None:
            for c, eps in work:
                yield play_batch(c.as_dict(), eps)
            return
        futures = [self.pool.submit(play_batch, c.as_dict(), eps) for c, eps in work]
        for f in as_completed(futures):
            yield f.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class _Ray:
    """Units as Ray tasks: on the cluster at ``address`` (``"auto"``, ``"host:port"``,
    ``"ray://host:10001"``), or the Ray instance this process already started, or a new
    local one. Ray reuses its worker processes, so each keeps its LLM backends shared
    across the episodes it plays, as a local worker process does."""

    def __init__(self, address: str | None):
        try:
            import ray
        except ImportError:
            raise InvalidArgumentError("--executor ray: Ray is not installed (pip install 'fbenv[ray]')") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
            self.started = True
        self.remote = ray.remote(num_cpus=1, max_retries=0)(play_batch)

    def results(self, work: Sequence[tuple[Cell, list[tuple[int, int]]]]) -> Iterable[list[dict[str, Any]]]:
        pending = [self.remote.remote(c.as_dict(), eps) for c, eps in work]
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            yield self.ray.get(done[0])

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def execute(run: Run, workers: int = 1, progress: bool = True, echo: Callable[[str], None] = print,
            executor: str = "local", address: str | None = None, lockstep: int = 16) -> int:
    """Play every episode of ``run`` not yet in its store; one tqdm bar per grid. Returns the
    number of episodes played now. ``executor``: ``"local"`` (``workers`` processes) or
    ``"ray"`` (``address``); ``lockstep``: at most this many episodes of an LLM-simulated
    cell play together (1: one at a time)."""
    from tqdm.auto import tqdm

    if workers < 1:
        raise InvalidArgumentError(f"--workers: expects >= 1, actual {workers}")
    if executor not in EXECUTORS:
        raise UnknownNameError("bench executor", executor, EXECUTORS)
    if lockstep < 1:
        raise InvalidArgumentError(f"--lockstep: expects >= 1, actual {lockstep}")
    store = Store(run.store_path)
    done = store.done()
    grids: dict[str, list[tuple[Cell, int, int]]] = {}
    for c, s, r in run.episodes():
        grids.setdefault(c.grid, []).append((c, s, r))
    runner = _Ray(address) if executor == "ray" else _Local(workers)
    played = 0
    try:
        for grid, items in grids.items():
            todo = [(c, s, r) for c, s, r in items if (c.key, s, r) not in done]
            bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=grid, unit="ep",
                       disable=not progress, dynamic_ncols=True, file=sys.stderr)
            for rows in runner.results(units(todo, lockstep)):
                for row in rows:
                    played += store.add(row)
                bar.update(len(rows))
            bar.close()
    finally:
        runner.close()
        store.close()
    return played


def _spawn():
    import multiprocessing

    return multiprocessing.get_context("spawn")  # torch and the LLM backends' threads do not survive fork


def bench(
    suite: str,
    out: "str | Path | None" = None,
    resume: "str | Path | None" = None,
    repeats: int = 1,
    workers: int = 1,
    llm: str = "embedded",
    skip_llm: bool = False,
    echo: Callable[[str], None] = print,
    progress: bool = True,
    report: bool = True,
    executor: str = "local",
    address: str | None = None,
    lockstep: int = 16,
) -> Path:
    """What ``fbenv bench --suite`` runs: expand (or reload) the run, play it, write the report."""
    if resume:
        run = Run.load(resume)
        echo(f"resuming {run.suite} in {run.path}")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run = new_run(suite, out or Path("results") / f"bench-{Path(suite).stem}-{stamp}", repeats, llm, skip_llm)
        n = len(run.episodes())
        echo(f"{run.suite}: {len(run.cells)} cells, {n} episodes -> {run.path}")
    execute(run, workers=workers, progress=progress, echo=echo, executor=executor, address=address,
            lockstep=lockstep)
    if report:
        from fbenv.baselines.report import write_report

        paths = write_report(run.path, echo=echo)
        echo((paths["md"]).read_text())
    return run.path


def rows_of(run_dir: "str | Path") -> list[dict[str, Any]]:
    with Store(Path(run_dir) / "results.sqlite") as store:
        return store.rows()


def cells_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["cell"], []).append(r)
    return out
