"""Throughput of envs and backends, as ratios measured in the same run (``fbenv perf``).

Timings on shared machines are noisy, so every figure that matters is a ratio against a
baseline timed moments before on the same machine:

- **batched vs sync**: steps/s of :func:`fbenv.make_vec` (sub-envs step concurrently,
  simulator calls merged into one batch) over Gymnasium's ``SyncVectorEnv`` (sub-envs
  step one after another, one request per call) on the same envs, seeds and actions;
- **overhead**: wall time of stepping the batched envs over the time the raw backend
  takes to answer the very same batches of prompts, replayed straight to it.

On a CPU, batching saves on decoding (each step reads the weights once for every row)
but hardly on reading prompts, which is compute-bound either way; a workload of long
prompts and short or scored replies gains less from batching than one that generates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from gymnasium.vector import SyncVectorEnv

from fbenv.errors import InvalidArgumentError
from fbenv.llm.base import Backend, ChatRequest, ChatResult
from fbenv.registry import spec as task_spec
from fbenv.registry import make_vec


class RecordingBackend(Backend):
    """Forwards batches to ``inner`` and keeps each batch with the seconds it took."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.spec = inner.spec
        self.model = inner.model
        self.batches: list[tuple[list[ChatRequest], float]] = []

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        start = time.perf_counter()
        out = self.inner.generate_batch(requests)
        self.batches.append((list(requests), time.perf_counter() - start))
        return out


@dataclass(frozen=True)
class VectorPerf:
    """Batched vs sequential stepping of ``num_envs`` envs over ``steps`` vector steps."""

    num_envs: int
    steps: int
    batched_s: float
    sync_s: float
    batched_calls: int
    sync_calls: int

    @property
    def batched_steps_per_s(self) -> float:
        return self.num_envs * self.steps / self.batched_s

    @property
    def sync_steps_per_s(self) -> float:
        return self.num_envs * self.steps / self.sync_s

    @property
    def speedup(self) -> float:
        return self.sync_s / self.batched_s


@dataclass(frozen=True)
class OverheadPerf:
    """Env wall time over raw backend time for the same batches of prompts."""

    env_s: float
    backend_s: float
    batches: int
    requests: int

    @property
    def ratio(self) -> float:
        return self.env_s / self.backend_s


def _actions(env: gym.vector.VectorEnv, steps: int, seed: int) -> list[Any]:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(steps)]


def _time_rollout(env: gym.vector.VectorEnv, actions: list[Any], seed: int) -> float:
    env.reset(seed=seed)
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return time.perf_counter() - start


def measure_vector(
    env_id: str,
    backend: Backend,
    num_envs: int = 8,
    steps: int = 3,
    seed: int = 0,
    **env_kwargs: Any,
) -> VectorPerf:
    """Time ``steps`` vector steps of the batched env and of ``SyncVectorEnv``, same envs and actions.

    Resets are excluded from the timing; ``env_kwargs`` go to every sub-env (the LLM
    simulator is forced on, it is what batching is about).
    """
    if steps < 1:
        raise InvalidArgumentError(f"steps: expects >= 1, actual {steps}")
    kwargs = {**env_kwargs, "simulator": "llm", "llm": backend, "llm_cache": "off"}
    s = task_spec(env_id)
    batched = make_vec(s.id, num_envs, **kwargs)
    sync = SyncVectorEnv([lambda: gym.make(s.id, **kwargs)] * num_envs)
    try:
        actions = _actions(batched, steps, seed)
        backend.stats.reset()
        batched_s = _time_rollout(batched, actions, seed)
        batched_calls = backend.stats.batches
        backend.stats.reset()
        sync_s = _time_rollout(sync, actions, seed)
        sync_calls = backend.stats.batches
    finally:
        batched.close()
        sync.close()
    return VectorPerf(num_envs, steps, batched_s, sync_s, batched_calls, sync_calls)


def measure_overhead(
    env_id: str,
    backend: Backend,
    num_envs: int = 8,
    steps: int = 3,
    seed: int = 0,
    **env_kwargs: Any,
) -> OverheadPerf:
    """Step the batched envs while recording their batches, then send those batches again, raw."""
    recorder = RecordingBackend(backend)
    kwargs = {**env_kwargs, "simulator": "llm", "llm": recorder, "llm_cache": "off"}
    env = make_vec(task_spec(env_id).id, num_envs, **kwargs)
    try:
        actions = _actions(env, steps, seed)
        env.reset(seed=seed)
        recorder.batches.clear()  # only the timed steps' batches are replayed
        start = time.perf_counter()
        for a in actions:
            env.step(a)
        env_s = time.perf_counter() - start
    finally:
        env.close()
    if not recorder.batches:
        raise InvalidArgumentError(f"{env_id}: the simulator made no LLM calls during the timed steps")
    start = time.perf_counter()
    for requests, _ in recorder.batches:
        backend.generate_batch(requests)
    backend_s = time.perf_counter() - start
    return OverheadPerf(env_s, backend_s, len(recorder.batches), sum(len(r) for r, _ in recorder.batches))


def measure_rule_steps(env_id: str, steps: int = 2000, seed: int = 0, **env_kwargs: Any) -> float:
    """Steps/s of one env with the rule simulator (no model): the cost of the env itself."""
    return _random_steps_per_s(gym.make(task_spec(env_id).id, simulator="rule", **env_kwargs), steps, seed)


def measure_parallel_steps(env_id: str, steps: int = 2000, seed: int = 0, **env_kwargs: Any) -> float:
    """Steps/s of a multi-agent task with the rule simulator, every seat learnable and acting
    at random (a PettingZoo parallel step is one step of every seat)."""
    from fbenv.registry import make

    env = make(task_spec(env_id).id, simulator="rule", **env_kwargs)
    spaces = {a: env.action_space(a) for a in env.possible_agents}
    for i, space in enumerate(spaces.values()):
        space.seed(seed + i)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terms, truncs, _ = env.step({a: spaces[a].sample() for a in env.agents})
        if not env.agents or all(terms[a] or truncs[a] for a in terms):
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def measure_cartpole_steps(steps: int = 20000, seed: int = 0) -> float:
    """Steps/s of Gymnasium's CartPole-v1 through ``gym.make``: the yardstick the rule envs are
    compared with in the same run (timings on a shared machine are only comparable as ratios)."""
    return _random_steps_per_s(gym.make("CartPole-v1"), steps, seed)


def _random_steps_per_s(env: gym.Env, steps: int, seed: int) -> float:
    env.action_space.seed(seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def measure_load(build: Callable[[], Backend]) -> float:
    """Seconds to build a backend (for the embedded model: from its safetensors copy)."""
    start = time.perf_counter()
    build()
    return time.perf_counter() - start


__all__ = [
    "measure_cartpole_steps",
    "OverheadPerf",
    "RecordingBackend",
    "VectorPerf",
    "measure_load",
    "measure_overhead",
    "measure_parallel_steps",
    "measure_rule_steps",
    "measure_vector",
]
