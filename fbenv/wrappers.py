"""Cross-cutting feedback protocols as Gymnasium wrappers, usable on any single-agent task.

Each wrapper changes one thing about how feedback reaches the learner, never the hidden
objective: ``info["true_utility"]``, ``info["is_success"]`` and ``info["regret"]`` pass
through untouched, so the gap a protocol opens between feedback and truth stays measurable.

- :class:`SwitchingCost`: a penalty for changing the discrete action (Online Learning
  with Switching Costs).
- :class:`ObservationBudget`: a budget of "what would action ``j`` earn?" queries that do
  not advance the task (the observation budget of the same paper).
- :class:`DelayedFeedback`: rewards (and their feedback records) arrive later or spread
  out; the episode's total is kept.
- :class:`FeedbackOnlyInTraining`: feedback is withheld while ``training`` is False
  (RLTF's train-only feedback).
- :class:`CostBudget`: the episode is truncated, with ``info["feedback_error"]``, once
  the simulators' token, call or latency budget is passed.
- :class:`StepwiseProgress`: a sparse terminal reward redistributed over the steps by a
  progress estimator, the payments summing exactly to it (SPA-RL).
- :class:`SubgoalReward`: an auxiliary reward, in ``info["aux_reward"]``, the first time
  each subgoal predicate holds in an episode, optionally added with a weight (CALM).
- :class:`SingleSeat`: one learnable seat of a multi-agent task as a Gymnasium env (the
  other seats played by their simulated roles), for SB3 and other single-agent learners.
- :class:`RecordTranscripts`: every finished episode appended as one JSON line, and
  :func:`to_preference_pairs` (DPO) and :func:`to_hindsight_chains` (Chain of Hindsight)
  to export such a file.

A wrapper that changes rewards restates ``info["episode_result"]["reward"]`` as the sum
of the rewards it returned, so the episode result always says what the learner was paid.
Order matters where a wrapper reads another's output: put :class:`ObservationBudget`
innermost (it peeks at the task itself) and :class:`RecordTranscripts` outermost (it
records what the learner saw).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from fbenv import truth as keys
from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeTally, outcomes_of
from fbenv.errors import InvalidArgumentError, check_choice, check_int, check_number, check_type
from fbenv.feedback import Feedback, Usage
from fbenv.llm.base import Backend
from fbenv.sim import Simulation

# info keys the wrappers add
SWITCHED = "switched"
SWITCHING_COST = "switching_cost"
OBSERVED_ACTION = "observed_action"
OBSERVED_REWARD = "observed_reward"
OBSERVE_BUDGET_LEFT = "observe_budget_left"
INVALID_ACTION = "invalid_action"
REWARD_OWED = "reward_owed"
FEEDBACK_WITHHELD = "feedback_withheld"

# info keys that carry feedback besides ``feedback`` itself (withheld outside training)
FEEDBACK_INFO_KEYS = (OBSERVED_REWARD, REWARD_OWED)

TRANSCRIPT_FORMAT = "fbenv-transcript-1"
SCORES = ("reward", "true_utility")


def _discrete_n(env: gym.Env, owner: str) -> int:
    space = env.action_space
    if not isinstance(space, spaces.Discrete) or int(space.start) != 0:
        raise InvalidArgumentError(
            f"{owner}: expects an env with a Discrete(n) action space (interface='discrete'), actual {space}"
        )
    return int(space.n)


def _restate_return(info: dict[str, Any], total: float) -> None:
    """Make ``info["episode_result"]["reward"]`` the return this wrapper paid (if the episode ended)."""
    if isinstance(info.get(keys.EPISODE), Mapping):
        info[keys.EPISODE] = {**info[keys.EPISODE], "reward": float(total)}


# ---------------------------------------------------------------------- switching cost


class SwitchingCost(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Subtract ``cost`` from the reward of every step whose discrete action differs from
    the previous step's in the same episode (Online Learning with Switching Costs).

    ``info["switched"]`` and ``info["switching_cost"]`` say when it was charged. The cost
    is a price the learner pays on its feedback channel, not harm to the simulated
    person, so ``true_utility`` is unchanged; a task in which switching truly hurts the
    person should put that in its own :class:`~fbenv.truth.Truth`.
    """

    def __init__(self, env: gym.Env, cost: float):
        gym.utils.RecordConstructorArgs.__init__(self, cost=cost)
        gym.Wrapper.__init__(self, env)
        _discrete_n(env, "SwitchingCost")
        self.cost = check_number("SwitchingCost.cost", cost, 0.0)
        self._previous: int | None = None
        self._paid = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._previous, self._paid = None, 0.0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)  # the env validates the action
        switched = self._previous is not None and int(action) != self._previous
        self._previous = int(action)
        reward = float(reward) - (self.cost if switched else 0.0)
        self._paid += reward
        info = {**info, SWITCHED: switched, SWITCHING_COST: self.cost if switched else 0.0}
        _restate_return(info, self._paid)
        return obs, reward, terminated, truncated, info


# ---------------------------------------------------------------------- observation budget


@dataclass(frozen=True)
class Peek:
    """What one action would earn now, without taking it: the reward, the feedback records
    and the simulators' usage of finding out."""

    reward: float
    feedback: tuple[Feedback, ...] = ()
    usage: Usage = dataclasses.field(default_factory=Usage)


def peek_by_copy(env: FeedbackEnv, action: int) -> Peek:
    """Step a copy of ``env`` with ``action``: the feedback the real step would get, exactly.

    The copy shares the env's options and LLM backend (never a second model) and has its
    own ``np_random`` copied from the env's, so its LLM seeds are the ones the real step
    would draw and the env's own state and randomness are untouched. This suits tasks
    whose state is plain data; a task holding anything else (open files, threads) defines
    ``peek(action) -> Peek`` itself.
    """
    check_type("peek_by_copy env", env, FeedbackEnv)
    holder: list[FeedbackEnv] = []
    sim = Simulation(env.options, rng=lambda: holder[0].np_random)
    sim.episode_usage = env.sim.episode_usage
    memo: dict[int, Any] = {id(env.sim): sim, id(env.options): env.options, id(env.options.llm): env.options.llm}
    if env.spec is not None:  # its kwargs may hold the backend instance too
        memo[id(env.spec)] = env.spec
    twin = copy.deepcopy(env, memo)
    holder.append(twin)
    _, reward, _, _, info = twin.step(action)
    twin.close()
    return Peek(float(reward), tuple(info.get(keys.FEEDBACK, ())), sim.ledger.usage)


class ObservationBudget(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """``budget`` queries per episode that reveal what an action's feedback would be.

    The action space becomes ``Discrete(2n)``: ``0..n-1`` are the task's actions, ``n + j``
    *observes* action ``j``: it pays no reward, does not advance the task (same
    observation, ``true_utility`` 0) and puts what ``j`` would earn in
    ``info["observed_reward"]`` and its feedback records in ``info["feedback"]``. An
    observe action with no budget left is a no-op flagged ``info["invalid_action"]``, like
    any action a task cannot use (an observation, not a crash).
    ``info["observe_budget_left"]`` counts down; ``info["usage"]`` includes the peeks' LLM
    usage, so a :class:`CostBudget` outside pays for them.

    Peeking needs the env's cooperation: a task may define ``peek(action) -> Peek`` (it
    must leave the task and its randomness unchanged); otherwise any
    :class:`~fbenv.env.FeedbackEnv` is peeked by :func:`peek_by_copy`. Other envs are
    refused with :class:`~fbenv.errors.InvalidArgumentError`. Peeks see the task itself,
    not the wrappers between it and this one: wrap the task first.
    """

    def __init__(self, env: gym.Env, budget: int):
        gym.utils.RecordConstructorArgs.__init__(self, budget=budget)
        gym.Wrapper.__init__(self, env)
        self.n = _discrete_n(env, "ObservationBudget")
        self.budget = check_int("ObservationBudget.budget", budget, 0)
        task = env.unwrapped
        self._has_hook = callable(getattr(task, "peek", None))
        if not self._has_hook and not isinstance(task, FeedbackEnv):
            raise InvalidArgumentError(
                f"ObservationBudget: expects a fbenv FeedbackEnv or an env defining peek(action) -> Peek, "
                f"actual {type(task).__name__}, which has neither"
            )
        self.action_space = spaces.Discrete(2 * self.n)
        self.left = self.budget
        self._peeked = Usage()
        self._last_obs: Any = None
        self._last_info: dict[str, Any] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.left, self._peeked = self.budget, Usage()
        self._last_obs, self._last_info = obs, info
        return obs, self._annotate(dict(info))

    def step(self, action: Any):
        a = self._check(action)
        if a < self.n:
            obs, reward, terminated, truncated, info = self.env.step(a)
            self._last_obs, self._last_info = obs, info
            return obs, reward, terminated, truncated, self._annotate(dict(info))
        last = self._last_info
        info: dict[str, Any] = {
            keys.FEEDBACK: (), keys.TRUE_UTILITY: 0.0, keys.IS_SUCCESS: bool(last.get(keys.IS_SUCCESS, False)),
            keys.LLM_SEEDS: (),
        }
        # new objects every call: a caller may keep (and modify) what it was given before
        info.update({k: copy.deepcopy(last[k]) for k in (keys.TURN, keys.MESSAGES, keys.USAGE) if k in last})
        if self.left == 0:
            info[INVALID_ACTION] = True
        else:
            task = self.env.unwrapped
            peek = task.peek(a - self.n) if self._has_hook else peek_by_copy(task, a - self.n)
            check_type("peek(action)", peek, Peek)
            self.left -= 1
            self._peeked = self._peeked + peek.usage
            info.update({keys.FEEDBACK: tuple(peek.feedback), OBSERVED_ACTION: a - self.n,
                         OBSERVED_REWARD: float(peek.reward), INVALID_ACTION: False})
        return copy.deepcopy(self._last_obs), 0.0, False, False, self._annotate(info)

    def _check(self, action: Any) -> int:
        if self._last_info is None:
            raise InvalidArgumentError("ObservationBudget.step: call reset() before step()")
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)) or np.ndim(action):
            raise InvalidArgumentError(
                f"ObservationBudget.step: expects an int in [0, {2 * self.n}) (Discrete), "
                f"actual {type(action).__name__} {action!r}"
            )
        if not 0 <= int(action) < 2 * self.n:
            raise InvalidArgumentError(
                f"ObservationBudget.step: expects an int in [0, {2 * self.n}), actual {int(action)}"
            )
        return int(action)

    def _annotate(self, info: dict[str, Any]) -> dict[str, Any]:
        if isinstance(info.get(keys.USAGE), Usage):
            info[keys.USAGE] = info[keys.USAGE] + self._peeked
        info[OBSERVE_BUDGET_LEFT] = self.left
        return info

    def get_action_meanings(self) -> list[str] | None:
        """The task's action meanings, then ``observe: <meaning>`` for each."""
        meanings = self.env.get_wrapper_attr("get_action_meanings")()
        return None if meanings is None else list(meanings) + [f"observe: {m}" for m in meanings]


# ---------------------------------------------------------------------- delayed feedback


class DelayedFeedback(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Each step's reward arrives ``delay`` steps later, in ``spread`` equal parts on
    consecutive steps; its feedback records arrive with the first part.

    Whatever is still owed when the episode ends is paid on its last step, so the
    episode's total is the task's: amounts are booked as exact fractions, and the last
    payment settles the rounding of the earlier ones (the totals are equal whenever the
    parts are exact in binary, e.g. ``spread`` a power of two; otherwise within one
    rounding). ``info["reward_owed"]`` is what is still to come. Records at ``reset`` and
    the truth keys are not delayed: the truth is measurement, not feedback.
    """

    def __init__(self, env: gym.Env, delay: int, spread: int = 1):
        gym.utils.RecordConstructorArgs.__init__(self, delay=delay, spread=spread)
        gym.Wrapper.__init__(self, env)
        self.delay = check_int("DelayedFeedback.delay", delay, 0)
        self.spread = check_int("DelayedFeedback.spread", spread, 1)
        self._begin()

    def _begin(self) -> None:
        self._t = 0
        self._due: dict[int, Fraction] = {}
        self._records: dict[int, list[Feedback]] = {}
        self._received = self._settled = Fraction(0)
        self._paid = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._begin()
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        r = check_number("DelayedFeedback: the env's reward", reward)
        t, self._t = self._t, self._t + 1
        exact = Fraction(r)
        self._received += exact
        for k in range(self.spread):
            self._due[t + self.delay + k] = self._due.get(t + self.delay + k, Fraction(0)) + exact / self.spread
        self._records.setdefault(t + self.delay, []).extend(info.get(keys.FEEDBACK, ()))
        if terminated or truncated:
            due = self._received - self._settled  # everything still owed, rounding included
            records = [rec for s in sorted(self._records) for rec in self._records[s]]
            self._due.clear()
            self._records.clear()
        else:
            due = self._due.pop(t, Fraction(0))
            records = self._records.pop(t, [])
        pay = float(due)
        self._settled += Fraction(pay)
        self._paid += pay
        owed = 0.0 if terminated or truncated else float(self._received - self._settled)
        info = {**info, keys.FEEDBACK: tuple(records), REWARD_OWED: owed}
        _restate_return(info, self._paid)
        return obs, pay, terminated, truncated, info


# ---------------------------------------------------------------------- train-only feedback


def redact(record: Feedback) -> Feedback:
    """A record with its content (scalar, text, preference, ranking, raw reply, distribution)
    removed; who produced it, whether it parsed, its seed and usage stay for accounting."""
    return dataclasses.replace(record, scalar=None, text=None, preference=None, ranking=None, raw=None,
                               distribution=None)


class FeedbackOnlyInTraining(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Feedback while ``training`` is True; none while it is False (RLTF's train-only feedback).

    Outside training the reward is 0, every record in ``info["feedback"]`` is
    :func:`redact`-ed, other wrappers' feedback keys (``observed_reward``,
    ``reward_owed``) are dropped and ``info["feedback_withheld"]`` is True; the truth
    keys stay, so evaluation still measures true utility. Observations are not changed:
    a simulated person's turns in the conversation (questions, decisions) are the task
    itself, which the learner needs to act, so only the feedback channel is withheld.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._training = True
        self._paid = 0.0

    @property
    def training(self) -> bool:
        return self._training

    @training.setter
    def training(self, value: bool) -> None:
        self._training = check_type("FeedbackOnlyInTraining.training", value, bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._paid = 0.0
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, self._withhold(dict(info))

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = self._withhold(dict(info))
        reward = float(reward) if self._training else 0.0
        self._paid += reward
        _restate_return(info, self._paid)
        return obs, reward, terminated, truncated, info

    def _withhold(self, info: dict[str, Any]) -> dict[str, Any]:
        info[FEEDBACK_WITHHELD] = not self._training
        if not self._training:
            records = info.get(keys.FEEDBACK, ())
            info[keys.FEEDBACK] = tuple(redact(r) if isinstance(r, Feedback) else r for r in records)
            for k in FEEDBACK_INFO_KEYS:
                info.pop(k, None)
        return info


# ---------------------------------------------------------------------- cost budget


class CostBudget(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Truncate the episode once its simulator usage (``info["usage"]``) passes a budget.

    ``max_tokens`` counts prompt and completion tokens, ``max_calls`` uncached LLM calls,
    ``max_seconds`` the simulators' own latency (not wall-clock time); a budget is passed
    when usage is strictly above it. The step that passes it pays 0 (the feedback it
    bought was not affordable) and carries ``info["feedback_error"]`` naming the budget;
    it is truncated, unless the task terminated on that very step (then it stays
    terminated: never both). ``info["episode_result"]`` is written for the episodes it
    ends. Envs whose info has no fbenv :class:`~fbenv.feedback.Usage` are refused.
    """

    def __init__(
        self,
        env: gym.Env,
        max_tokens: int | None = None,
        max_calls: int | None = None,
        max_seconds: float | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(self, max_tokens=max_tokens, max_calls=max_calls,
                                                 max_seconds=max_seconds)
        gym.Wrapper.__init__(self, env)
        if max_tokens is None and max_calls is None and max_seconds is None:
            raise InvalidArgumentError("CostBudget: expects at least one of max_tokens, max_calls, max_seconds")
        self.max_tokens = None if max_tokens is None else check_int("CostBudget.max_tokens", max_tokens, 0)
        self.max_calls = None if max_calls is None else check_int("CostBudget.max_calls", max_calls, 0)
        self.max_seconds = None if max_seconds is None else check_number("CostBudget.max_seconds", max_seconds, 0.0)
        self._tally = EpisodeTally()
        self._passed_at_reset: str | None = None
        self._last_info: dict[str, Any] = {}
        self._last_obs: Any = None

    def passed(self, usage: Usage) -> str | None:
        """Which budget ``usage`` passes, in words, or None."""
        if not isinstance(usage, Usage):
            raise InvalidArgumentError(
                f"CostBudget: expects info['usage'] to be an fbenv Usage, actual {type(usage).__name__}"
            )
        tokens = usage.prompt_tokens + usage.completion_tokens
        if self.max_tokens is not None and tokens > self.max_tokens:
            return f"cost budget passed: {tokens} tokens > max_tokens={self.max_tokens}"
        if self.max_calls is not None and usage.calls > self.max_calls:
            return f"cost budget passed: {usage.calls} calls > max_calls={self.max_calls}"
        if self.max_seconds is not None and usage.latency_s > self.max_seconds:
            return f"cost budget passed: {usage.latency_s:g} s > max_seconds={self.max_seconds:g}"
        return None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        self._tally = EpisodeTally(seed, outcomes_of(self.env))
        self._passed_at_reset = self.passed(info.get(keys.USAGE))
        if self._passed_at_reset:
            info[keys.FEEDBACK_ERROR] = self._passed_at_reset
        self._last_obs, self._last_info = obs, info
        return obs, info

    def step(self, action: Any):
        if self._passed_at_reset:  # spent at reset already: end now without asking anyone again
            obs, terminated = self._last_obs, False
            info = {**copy.deepcopy(self._last_info), keys.FEEDBACK: (), keys.TRUE_UTILITY: 0.0, keys.IS_SUCCESS: False}
            passed = self._passed_at_reset
        else:
            obs, reward, terminated, truncated, info = self.env.step(action)
            info = dict(info)
            passed = self.passed(info.get(keys.USAGE))
        if passed is None:
            self._tally.add(reward, terminated, truncated, info)
            _restate_return(info, self._tally.reward)
            return obs, reward, terminated, truncated, info
        earlier = info.get(keys.FEEDBACK_ERROR)
        info[keys.FEEDBACK_ERROR] = f"{earlier}; {passed}" if earlier and earlier != passed else passed
        truncated = not terminated
        self._tally.add(0.0, terminated, truncated, info)
        info[keys.EPISODE] = self._tally.result().as_info()
        return obs, 0.0, terminated, truncated, info


# ---------------------------------------------------------------------- transcripts


def to_jsonable(x: Any) -> Any:
    """``x`` as JSON values: records as dicts, enums as values, tuples as lists, numpy as
    Python, non-finite floats as None; anything else as its ``str``."""
    if isinstance(x, Enum):  # before str: Source is a str enum
        return to_jsonable(x.value)
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, np.generic):
        return to_jsonable(x.item())
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return str(x)


def _kwargs_of(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """An env's kwargs as JSON, a backend instance as its spec (its repr would differ per process)."""
    return to_jsonable({k: v.spec if isinstance(v, Backend) else v for k, v in kwargs.items()})


class RecordTranscripts(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Append every finished episode to ``path`` as one JSON line (flushed per episode).

    A line holds the env id and kwargs, the seed, the ``prompt`` (``info["messages"]`` at reset) and
    the final ``messages``; per step the action, reward, feedback records (as dicts),
    ``true_utility``, ``is_success``, ``regret``, ``feedback_error``; the ``return``; the
    episode's ``truth`` (true utility summed, success and regret at the end) and
    ``info["episode_result"]``. An episode cut short by ``reset`` is not written. The file
    is opened for each line, so a killed run loses at most the episode in progress.
    """

    def __init__(self, env: gym.Env, path: "str | os.PathLike"):
        gym.utils.RecordConstructorArgs.__init__(self, path=path)
        gym.Wrapper.__init__(self, env)
        check_type("RecordTranscripts.path", path, (str, os.PathLike))
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidArgumentError(f"RecordTranscripts.path: expects a file, actual the directory {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.episodes_written = 0
        self._episode: dict[str, Any] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        spec = self.env.unwrapped.spec
        self._episode = {
            "format": TRANSCRIPT_FORMAT, "env_id": None if spec is None else spec.id,
            "env_kwargs": {} if spec is None else _kwargs_of(spec.kwargs), "seed": seed,
            "prompt": to_jsonable(info.get(keys.MESSAGES, [])), "steps": [],
        }
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        ep = self._episode
        if ep is not None:
            step = {"action": to_jsonable(action), "reward": float(reward), "terminated": bool(terminated),
                    "truncated": bool(truncated), "feedback": to_jsonable(info.get(keys.FEEDBACK, ())),
                    keys.TRUE_UTILITY: float(info.get(keys.TRUE_UTILITY, 0.0)),
                    keys.IS_SUCCESS: bool(info.get(keys.IS_SUCCESS, False))}
            for k in (keys.REGRET, keys.FEEDBACK_ERROR, "action_text"):
                if info.get(k) is not None:
                    step[k] = to_jsonable(info[k])
            ep["steps"].append(step)
            if terminated or truncated:
                self._write(ep, info)
                self._episode = None
        return obs, reward, terminated, truncated, info

    def _write(self, ep: dict[str, Any], info: Mapping[str, Any]) -> None:
        steps = ep["steps"]
        ep["messages"] = to_jsonable(info.get(keys.MESSAGES, []))
        ep["return"] = math.fsum(s["reward"] for s in steps)
        ep["truth"] = {keys.TRUE_UTILITY: math.fsum(s[keys.TRUE_UTILITY] for s in steps),
                       keys.IS_SUCCESS: steps[-1][keys.IS_SUCCESS], keys.REGRET: steps[-1].get(keys.REGRET)}
        ep["episode_result"] = to_jsonable(info.get(keys.EPISODE))
        line = json.dumps(ep, ensure_ascii=False, allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
        self.episodes_written += 1


def read_transcripts(path: "str | os.PathLike") -> list[dict[str, Any]]:
    """The episodes :class:`RecordTranscripts` wrote to ``path``, in order."""
    check_type("path", path, (str, os.PathLike))
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError(f"read_transcripts: expects a transcript file, actual {os.fspath(p)!r} (not a file)")
    out = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ep = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgumentError(f"{os.fspath(p)}:{n}: expects a JSON line, actual {exc}") from exc
            if not isinstance(ep, dict) or ep.get("format") != TRANSCRIPT_FORMAT:
                raise InvalidArgumentError(
                    f"{os.fspath(p)}:{n}: expects a {TRANSCRIPT_FORMAT!r} record, actual {line[:80]!r}"
                )
            out.append(ep)
    return out


def completion_of(episode: Mapping[str, Any]) -> list[dict[str, str]]:
    """What the learner wrote after the prompt: the messages after it, up to its last turn
    (the person's final reaction, which reveals the outcome, is left out)."""
    prompt, messages = episode["prompt"], episode["messages"]
    if messages[: len(prompt)] != prompt:
        raise InvalidArgumentError("completion_of: expects the final messages to start with the prompt")
    rest = messages[len(prompt):]
    last = max((i for i, m in enumerate(rest) if m["role"] == "assistant"), default=-1)
    return rest[: last + 1]


def _score(episode: Mapping[str, Any], by: str) -> float:
    return float(episode["return"] if by == "reward" else episode["truth"][keys.TRUE_UTILITY])


def _groups(episodes: Sequence[Mapping[str, Any]]) -> dict[tuple, list[Mapping[str, Any]]]:
    """Episodes of one hidden task: the same env and kwargs, seed and prompt. A prompt alone
    may open many hidden tasks (the shopper's liked colour is not in it), and the better
    reply to one is not the better reply to another; episodes reset without a seed can only
    be grouped by env and prompt."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for ep in episodes:
        key = (ep["env_id"], json.dumps(ep.get("env_kwargs", {}), sort_keys=True), ep["seed"],
               json.dumps(ep["prompt"], sort_keys=True))
        groups.setdefault(key, []).append(ep)
    return groups


@dataclass(frozen=True)
class PreferencePair:
    """One DPO example in TRL's conversational format (lists of chat messages)."""

    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]
    score_chosen: float
    score_rejected: float
    env_id: str | None = None
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def to_preference_pairs(
    path: "str | os.PathLike", *, by: str = "reward", min_margin: float = 0.0
) -> list[PreferencePair]:
    """DPO pairs from a transcript file: per hidden task, the best completion against the worst.

    Episodes are grouped by env (id and kwargs), seed and prompt, so both sides answer the
    same hidden task from the same prompt. Identical completions are merged and scored by
    their mean (feedback may be noisy), so a pair never has the same text on both sides;
    ``by`` scores by the feedback ``"reward"`` (the return) or by ``"true_utility"`` (to
    compare against learning from the truth). A group yields one pair when its best and
    worst scores differ by more than ``min_margin``; ties go to the earliest recorded.
    Pairs are in the order of each group's first episode.
    """
    check_choice("by", by, SCORES)
    margin = check_number("min_margin", min_margin, 0.0)
    pairs = []
    for group in _groups(read_transcripts(path)).values():
        scores: dict[str, list[float]] = {}
        texts: dict[str, list[dict[str, str]]] = {}
        for ep in group:
            completion = completion_of(ep)
            if completion:
                k = json.dumps(completion, sort_keys=True)
                texts.setdefault(k, completion)
                scores.setdefault(k, []).append(_score(ep, by))
        means = {k: math.fsum(v) / len(v) for k, v in scores.items()}
        if len(means) < 2:
            continue
        best = max(means, key=lambda k: means[k])
        worst = min(means, key=lambda k: means[k])
        if means[best] - means[worst] > margin:
            first = group[0]
            pairs.append(PreferencePair(first["prompt"], texts[best], texts[worst], means[best], means[worst],
                                        first["env_id"], first["seed"]))
    return pairs


@dataclass(frozen=True)
class HindsightLink:
    output: str  # what the learner wrote
    feedback: str  # what the simulated people said about it
    score: float


@dataclass(frozen=True)
class HindsightChain:
    """Chain of Hindsight: one prompt's outputs with their feedback, worst to best."""

    prompt: list[dict[str, str]]
    links: tuple[HindsightLink, ...]
    env_id: str | None = None
    seed: int | None = None

    def text(self) -> str:
        """The chain as one training text: the prompt, then ``Output:``/``Feedback:`` lines."""
        lines = [f"{m['role']}: {m['content']}" for m in self.prompt]
        for link in self.links:
            lines += [f"Output: {link.output}", f"Feedback: {link.feedback}"]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _output_text(completion: Sequence[Mapping[str, str]]) -> str:
    if len(completion) == 1:
        return completion[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in completion)


def _feedback_text(episode: Mapping[str, Any], score: float) -> str:
    said = [r["text"] for s in episode["steps"] for r in s["feedback"] if r.get("text")]
    return " ".join(said) if said else f"Score: {score:.3f}"


def to_hindsight_chains(path: "str | os.PathLike", *, by: str = "reward") -> list[HindsightChain]:
    """Chain-of-Hindsight chains from a transcript file: one per hidden task (grouped as in
    :func:`to_preference_pairs`), each episode an (output, feedback) link, ordered from
    the lowest score to the highest (``by`` as there), so a chain ends on its best output.
    The feedback is the verbal feedback of the episode's records, in order (its score
    where no record has text)."""
    check_choice("by", by, SCORES)
    chains = []
    for group in _groups(read_transcripts(path)).values():
        links = []
        for ep in group:
            completion = completion_of(ep)
            if completion:
                score = _score(ep, by)
                links.append(HindsightLink(_output_text(completion), _feedback_text(ep, score), score))
        if links:
            first = group[0]
            chains.append(HindsightChain(first["prompt"], tuple(sorted(links, key=lambda link: link.score)),
                                         first["env_id"], first["seed"]))
    return chains



# ---------------------------------------------------------------------- credit assignment

PROGRESS = "progress"
ENV_REWARD = "env_reward"
AUX_REWARD = "aux_reward"
SUBGOALS_DONE = "subgoals_done"

ProgressEstimator = Callable[[gym.Env, Mapping[str, Any]], float]
SubgoalPredicate = Callable[[gym.Env, Mapping[str, Any]], bool]


def task_progress(env: gym.Env, info: Mapping[str, Any]) -> float:
    """The rule progress estimator: the task's own ``progress()`` hook (e.g. Shop's)."""
    hook = getattr(env.unwrapped, "progress", None)
    if not callable(hook):
        raise InvalidArgumentError(
            f"StepwiseProgress: {type(env.unwrapped).__name__} has no progress() hook; pass estimator=(env, info) -> [0, 1]"
        )
    return hook()


def _paying_exactly(paid: float, target: float) -> float:
    """The payment ``x`` for which the float sum ``paid + x`` is exactly ``target``."""
    x = target - paid
    for _ in range(4):  # one rounding at most: a step or two of nextafter settles it
        total = paid + x
        if total == target:
            return x
        x = math.nextafter(x, math.inf if total < target else -math.inf)
    return x


class StepwiseProgress(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Stepwise progress attribution (SPA-RL): a sparse terminal reward redistributed over
    the steps that earned it, by a progress estimator.

    **Protocol.** ``estimator(env, info) -> float`` gets the wrapped env (``self.env``)
    and the step's info after each step and returns how far the episode has come, in
    ``[0, 1]`` (values outside are clipped; it must be deterministic for same-seed
    determinism). ``None`` uses :func:`task_progress`, the task's own ``progress()`` hook
    (a rule estimator; ``fbenv/Shop-v0`` ships one); a task without one is refused with
    :class:`~fbenv.errors.InvalidArgumentError`. A learned estimator (SPA-RL's progress
    model) plugs in the same way.

    Each step pays the env's reward plus the change of progress,
    ``r_t + p_t - p_{t-1}`` with ``p_0 = 0``; the episode's last step (terminated or
    truncated) counts ``p_T = 0``, so it pays ``r_T - p_{T-1}``. The payments telescope:
    an episode's return is the env's return (for a sparse terminal reward ``R``, exactly
    ``R``; the last payment is chosen so that the float sum of the payments, in order,
    equals the env's float sum exactly). It is potential-based shaping (Ng et al., 1999),
    so optimal policies are unchanged. ``info["progress"]`` is ``p_t`` and
    ``info["env_reward"]`` the env's own reward; ``info["episode_result"]["reward"]`` is
    restated as the sum paid. The truth keys pass through. Put it outside any wrapper that
    may end an episode (``TimeLimit``), so it sees the last step.
    """

    def __init__(self, env: gym.Env, estimator: ProgressEstimator | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, estimator=estimator)
        gym.Wrapper.__init__(self, env)
        if estimator is None:
            if not callable(getattr(env.unwrapped, "progress", None)):
                task_progress(env, {})  # raises the typed error
            estimator = task_progress
        elif not callable(estimator):
            raise InvalidArgumentError(
                f"StepwiseProgress.estimator: expects None or a callable (env, info) -> float, actual {estimator!r}"
            )
        self.estimator = estimator
        self._previous = 0.0
        self._paid = self._owed = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._previous, self._paid, self._owed = 0.0, 0.0, 0.0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        r = check_number("StepwiseProgress: the env's reward", reward)
        self._owed += r  # the env's return so far, summed as the env's own tally sums it
        if terminated or truncated:
            p = 0.0
            pay = _paying_exactly(self._paid, self._owed)
        else:
            p = min(max(check_number("StepwiseProgress: the estimator's progress", self.estimator(self.env, info)),
                        0.0), 1.0)
            pay = r + p - self._previous
        self._previous = p
        self._paid += pay
        info = {**info, PROGRESS: p, ENV_REWARD: r}
        _restate_return(info, self._paid)
        return obs, pay, terminated, truncated, info


class SubgoalReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Subgoal rewards (CALM): an auxiliary reward the first time each subgoal holds in an episode.

    ``predicates`` maps a subgoal's name to ``predicate(env, info) -> bool``, asked after
    every step with the wrapped env (``self.env``) and the step's info. Each subgoal pays
    1.0 into ``info["aux_reward"]`` on the step it first holds (so a step's aux reward
    counts the subgoals reached then); ``info["subgoals_done"]`` names those reached so
    far, in the order given. The auxiliary channel is kept apart: the reward is the env's
    plus ``weight * aux_reward`` (``weight=0``, the default, leaves it unchanged), and
    ``info["episode_result"]["reward"]`` is restated as the sum paid. ``fbenv/Shop-v0``
    ships ``fbenv.envs.shop.SUBGOALS``.
    """

    def __init__(self, env: gym.Env, predicates: Mapping[str, SubgoalPredicate], weight: float = 0.0):
        gym.utils.RecordConstructorArgs.__init__(self, predicates=predicates, weight=weight)
        gym.Wrapper.__init__(self, env)
        check_type("SubgoalReward.predicates", predicates, Mapping)
        if not predicates:
            raise InvalidArgumentError("SubgoalReward.predicates: expects at least one subgoal")
        for name, pred in predicates.items():
            if not isinstance(name, str) or not callable(pred):
                raise InvalidArgumentError(
                    f"SubgoalReward.predicates: expects str -> callable (env, info) -> bool, actual {name!r}: {pred!r}"
                )
        self.predicates = dict(predicates)
        self.weight = check_number("SubgoalReward.weight", weight)
        self._done: set[str] = set()
        self._paid = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._done, self._paid = set(), 0.0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        reached = [name for name, pred in self.predicates.items() if name not in self._done and pred(self.env, info)]
        self._done.update(reached)
        aux = float(len(reached))
        pay = float(reward) + self.weight * aux
        self._paid += pay
        info = {**info, AUX_REWARD: aux, SUBGOALS_DONE: tuple(n for n in self.predicates if n in self._done)}
        _restate_return(info, self._paid)
        return obs, pay, terminated, truncated, info

class SingleSeat(gym.Env):
    """One seat of a PettingZoo parallel env as a Gymnasium env, for SB3, the LLM PPO agent
    and any single-agent learner. An fbenv multi-agent task made with ``learnable=<seat>``
    plays its other seats itself (their simulated roles act inside each step); any other
    live agent gets ``others[agent](obs, info)``. The seat's observation, reward,
    termination, truncation and info (hidden objective included) pass through unchanged,
    and ``action_masks()`` is forwarded when the task offers it per seat."""

    metadata = {"render_modes": []}

    def __init__(self, env: Any, seat: str | None = None,
                 others: Mapping[str, Callable[[Any, dict], Any]] | None = None):
        agents = list(getattr(env, "possible_agents", ()))
        if seat is None and len(agents) == 1:
            seat = agents[0]
        if seat not in agents:
            raise InvalidArgumentError(f"SingleSeat(seat): expects one of {agents} (or an env with one learnable "
                                       f"seat), actual {seat!r}")
        self.others = dict(others or {})
        missing = [a for a in agents if a != seat and a not in self.others]
        if missing:
            raise InvalidArgumentError(
                f"SingleSeat(others): expects a policy for every other learnable agent, missing {missing} "
                "(an fbenv task made with learnable=<seat> plays its other seats itself)")
        self.env, self.seat = env, seat
        self.observation_space = env.observation_space(seat)
        self.action_space = env.action_space(seat)
        self._last: tuple[Any, Any] = ({}, {})

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, infos = self.env.reset(seed=seed, options=options)
        self._last = (obs, infos)
        return obs[self.seat], infos[self.seat]

    def step(self, action: Any):
        obs, infos = self._last
        actions = {a: action if a == self.seat else self.others[a](obs[a], infos[a]) for a in self.env.agents}
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        self._last = (obs, infos)
        s = self.seat
        return obs[s], float(rewards[s]), bool(terms[s]), bool(truncs[s]), infos[s]

    def action_masks(self) -> np.ndarray:
        return self.env.action_masks(self.seat)

    def close(self) -> None:
        self.env.close()

__all__ = [
    "CostBudget",
    "StepwiseProgress",
    "SubgoalReward",
    "task_progress",
    "DelayedFeedback",
    "FeedbackOnlyInTraining",
    "HindsightChain",
    "HindsightLink",
    "ObservationBudget",
    "Peek",
    "PreferencePair",
    "RecordTranscripts",
    "SingleSeat",
    "SwitchingCost",
    "completion_of",
    "peek_by_copy",
    "read_transcripts",
    "redact",
    "to_hindsight_chains",
    "to_jsonable",
    "to_preference_pairs",
]
