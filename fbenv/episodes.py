"""Episode semantics, defined once: what an episode earned, was worth, and cost.

- :class:`EpisodeResult`: the feedback return, the true utility summed over steps,
  success at the end, turns, how it ended, simulator failures (fallbacks, parse
  failures, ``feedback_error``) and the task's own outcomes (``TaskSpec.outcomes``).
- ``info["episode_result"]``: ``EpisodeResult.as_info()`` at the end of every episode,
  like Gymnasium's ``RecordEpisodeStatistics``. The env base writes it for the episodes
  it ends; :class:`RecordEpisode` does the same as a wrapper, for episodes a wrapper
  ends (put it outside a ``TimeLimit``). Gymnasium refuses registered wrappers beside a
  ``vector_entry_point``, so it is not applied by ``gym.make``.
- :func:`scripted`: a scripted policy that reads the task, for either view;
  :func:`scripted_seats`: the same per seat of a multi-agent task;
- :func:`run_episode`, :func:`lockstep_episodes` (many envs at once, their simulator
  calls batched) and :func:`feedback_of_each_action` (try every discrete action from
  one seed) for adapters, baselines, the CLI and tests alike. Given a multi-agent
  (PettingZoo parallel) env, the first two play it with :func:`run_parallel_episode`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from pettingzoo import ParallelEnv

from fbenv import truth as keys
from fbenv.errors import InvalidArgumentError, check_type
from fbenv.feedback import Feedback
from fbenv.llm.batching import BatchGroup

Policy = Callable[[Any, dict], Any]  # (observation, info) -> action
SeatPolicy = Callable[[str, Any, dict], Any]  # multi-agent: (seat, observation, info) -> action


@dataclass(frozen=True)
class EpisodeResult:
    seed: int | None
    reward: float  # the feedback return: the sum of rewards
    true_utility: float  # the hidden objective, summed over steps
    is_success: bool  # at the last step
    turns: int
    terminated: bool
    truncated: bool
    feedback_error: str | None = None
    fallbacks: int = 0  # LLM replies the rule version stood in for
    parse_failures: int = 0  # LLM replies that could not be read (after retries)
    outcomes: Mapping[str, Any] = field(default_factory=dict)
    regret: float | None = None  # best achievable minus utility at the last step, where the task knows the best

    @property
    def gap(self) -> float:
        """How much the feedback overstates the truth."""
        return self.reward - self.true_utility

    def as_info(self) -> dict[str, Any]:
        """The info dict; unknown values (no seed, no error, no regret) are left out rather
        than None, so Gymnasium's vector envs can stack one env's int seed beside another's
        missing one (they mask absent keys; an int array cannot hold None)."""
        d = {
            "seed": self.seed, "reward": self.reward, "true_utility": self.true_utility,
            "is_success": self.is_success, "turns": self.turns, "terminated": self.terminated,
            "truncated": self.truncated, "feedback_error": self.feedback_error, "fallbacks": self.fallbacks,
            "parse_failures": self.parse_failures, "outcomes": dict(self.outcomes), "regret": self.regret,
        }
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_info(cls, d: Mapping[str, Any]) -> "EpisodeResult":
        return cls(**{"seed": None, **d, "outcomes": dict(d.get("outcomes", {}))})


class EpisodeTally:
    """Adds up one episode step by step; :meth:`result` at its end."""

    def __init__(self, seed: int | None = None, outcomes: Sequence[str] = ()):
        self.seed, self.outcome_keys = seed, tuple(outcomes)
        self.reward = self.true_utility = 0.0
        self.turns = self.fallbacks = self.parse_failures = 0
        self.last: Mapping[str, Any] = {}
        self.terminated = self.truncated = False

    def add(self, reward: float, terminated: bool, truncated: bool, info: Mapping[str, Any]) -> None:
        self.reward += float(reward)
        u = float(info.get(keys.TRUE_UTILITY, 0.0))
        if not math.isfinite(u):
            raise InvalidArgumentError(f"info['true_utility']: expects a finite number, actual {u}")
        self.true_utility += u
        self.turns += 1
        for record in info.get(keys.FEEDBACK, ()):
            if isinstance(record, Feedback):
                self.fallbacks += record.fallback is not None
                self.parse_failures += not record.parsed
        self.last, self.terminated, self.truncated = info, bool(terminated), bool(truncated)

    def result(self) -> EpisodeResult:
        info = self.last
        return EpisodeResult(
            seed=self.seed, reward=self.reward, true_utility=self.true_utility,
            is_success=bool(info.get(keys.IS_SUCCESS, False)), turns=self.turns,
            terminated=self.terminated, truncated=self.truncated,
            feedback_error=info.get(keys.FEEDBACK_ERROR), fallbacks=self.fallbacks,
            parse_failures=self.parse_failures,
            outcomes={k: info[k] for k in self.outcome_keys if k in info},
            regret=None if info.get(keys.REGRET) is None else float(info[keys.REGRET]),
        )


def outcomes_of(env: gym.Env) -> tuple[str, ...]:
    task_spec = getattr(env.unwrapped, "task_spec", None)
    return tuple(task_spec.outcomes) if task_spec is not None else ()


class RecordEpisode(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """At the end of every episode, ``info["episode_result"]``: :meth:`EpisodeResult.as_info`."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._tally = EpisodeTally(outcomes=outcomes_of(env))
        self.last_result: EpisodeResult | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._tally = EpisodeTally(seed, outcomes_of(self.env))
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._tally.add(reward, terminated, truncated, info)
        if terminated or truncated:
            self.last_result = self._tally.result()
            info = {**info, keys.EPISODE: self.last_result.as_info()}
        return obs, reward, terminated, truncated, info


def scripted(choose: Callable[[Any], "int | str"]) -> Callable[[gym.Env], Policy]:
    """A scripted policy for either view: ``choose(task_env)`` reads the (unwrapped) task and
    names a candidate reply, by its index or its text; the factory gives each env its
    ``(obs, info) -> action``: the index in the discrete view, the text in the text view."""

    def factory(env: gym.Env) -> Policy:
        base = env.unwrapped

        def act(obs: Any, info: dict) -> Any:
            pick = choose(base)
            if base.interface == "discrete":
                return pick if not isinstance(pick, str) else list(base.candidate_replies()).index(pick)
            return pick if isinstance(pick, str) else base.candidate_replies()[int(pick)]

        return act

    return factory


def scripted_seats(choose: Mapping[str, Callable[[Any], "int | str"]]) -> Callable[[Any], SeatPolicy]:
    """:func:`scripted` for a multi-agent task: ``choose[seat](task_env)`` names a candidate
    reply of ``seat`` (by index or text); the factory gives each env its
    ``(seat, obs, info) -> action`` for either view. A turn-based task's seat that is not
    to act gets the seat's first candidate reply (it is not read) without asking ``choose``."""

    def factory(env: Any) -> SeatPolicy:
        base = getattr(env, "unwrapped", env)
        missing = [s for s in base.possible_agents if s not in choose]
        if missing:
            raise InvalidArgumentError(f"scripted_seats: expects a choice for each learnable seat, missing {missing}")

        def act(seat: str, obs: Any, info: dict) -> Any:
            pick = choose[seat](base) if not base.turn_based or seat in base.to_act() else 0
            if base.interface == "discrete":
                return pick if not isinstance(pick, str) else list(base.candidate_replies(seat)).index(pick)
            return pick if isinstance(pick, str) else base.candidate_replies(seat)[int(pick)]

        return act

    return factory


def run_parallel_episode(env: Any, policy: SeatPolicy, seed: int | None, max_cycles: int = 1000) -> EpisodeResult:
    """One episode of a multi-agent (PettingZoo parallel) env from ``reset(seed=seed)``, each
    live seat acting by ``policy(seat, obs, info)``. The result sums the learnable seats'
    rewards, true utilities, fallbacks and parse failures; it is a success when every seat's
    is; its outcomes are the seats' (the first seat's where they differ). An episode still
    running after ``max_cycles`` steps is cut there and counts as truncated."""
    check_type("max_cycles", max_cycles, int)
    if max_cycles < 1:
        raise InvalidArgumentError(f"max_cycles: expects >= 1, actual {max_cycles}")
    obs, infos = env.reset(seed=seed)
    results: dict[str, EpisodeResult] = {}
    for _ in range(max_cycles):
        if not env.agents:
            break
        actions = {a: policy(a, obs[a], infos[a]) for a in env.agents}
        obs, _rewards, _terms, _truncs, infos = env.step(actions)
        for a, info in infos.items():
            if keys.EPISODE in info:
                results[a] = EpisodeResult.from_info(info[keys.EPISODE])
    cut = bool(env.agents)
    parts = [results[a] for a in env.possible_agents if a in results]
    outcomes: dict[str, Any] = {}
    for r in reversed(parts):
        outcomes.update(r.outcomes)
    return EpisodeResult(
        seed=seed, reward=sum(r.reward for r in parts), true_utility=sum(r.true_utility for r in parts),
        is_success=bool(parts) and all(r.is_success for r in parts), turns=max((r.turns for r in parts), default=0),
        terminated=not cut and all(r.terminated for r in parts), truncated=cut or any(r.truncated for r in parts),
        feedback_error=next((r.feedback_error for r in parts if r.feedback_error), None),
        fallbacks=sum(r.fallbacks for r in parts), parse_failures=sum(r.parse_failures for r in parts),
        outcomes=outcomes,
    )


def run_episode(env: gym.Env, policy: Policy, seed: int | None, max_steps: int = 1000) -> EpisodeResult:
    """Play one episode from ``reset(seed=seed)`` with ``policy(obs, info) -> action``
    (a multi-agent env: :func:`run_parallel_episode`, with a ``(seat, obs, info)`` policy).

    An episode still running after ``max_steps`` steps is cut there and counts as truncated.
    """
    if isinstance(env, ParallelEnv):
        return run_parallel_episode(env, policy, seed, max_steps)  # type: ignore[arg-type]
    check_type("max_steps", max_steps, int)
    if max_steps < 1:
        raise InvalidArgumentError(f"max_steps: expects >= 1, actual {max_steps}")
    tally = EpisodeTally(seed, outcomes_of(env))
    obs, info = env.reset(seed=seed)
    for _ in range(max_steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs, info))
        tally.add(reward, terminated, truncated, info)
        if terminated or truncated:
            return tally.result()
    tally.truncated = True
    return tally.result()


def lockstep_episodes(
    envs: Sequence[gym.Env], policy: "Policy | Sequence[Policy]", seeds: Sequence[int | None], max_steps: int = 1000
) -> list[EpisodeResult]:
    """One episode per (env, seed), run concurrently so their simulator calls reach the
    shared backend as batches; results in order. ``policy`` may be one per env. Multi-agent
    envs take ``(seat, obs, info)`` policies (:func:`run_parallel_episode`)."""
    if len(envs) != len(seeds):
        raise InvalidArgumentError(f"lockstep_episodes: expects one seed per env, actual {len(seeds)} for {len(envs)}")
    policies = list(policy) if isinstance(policy, Sequence) else [policy] * len(envs)
    if len(policies) != len(envs):
        raise InvalidArgumentError(f"lockstep_episodes: expects one policy per env, actual {len(policies)}")
    group = BatchGroup(max_workers=max(1, len(envs)))
    return group.run([lambda e=e, p=p, s=s: run_episode(e, p, s, max_steps) for e, p, s in zip(envs, policies, seeds)])


def feedback_of_each_action(env: gym.Env, seed: int, follow_up: int, max_steps: int = 1000) -> list[EpisodeResult]:
    """For each discrete action ``a``: the episode from ``reset(seed)`` that plays ``a``, then
    ``follow_up`` until it ends. Shows what feedback rewards, without any learning."""
    n = getattr(env.action_space, "n", None)
    if n is None:
        raise InvalidArgumentError(f"feedback_of_each_action: expects a Discrete action space, actual {env.action_space}")
    out = []
    for a in range(int(n)):
        first = [True]

        def policy(obs, info, a=a, first=first):
            if first[0]:
                first[0] = False
                return a
            return follow_up

        out.append(run_episode(env, policy, seed, max_steps))
    return out
