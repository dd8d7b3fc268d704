"""The people in the loop, as small protocols, and the machinery of their LLM versions.

Each role a task uses has a rule implementation (knows the hidden truth, exact, no
model) and an LLM implementation (prompt + parser + backend) behind the same protocol;
``simulator="rule" | "llm"`` picks one. Contexts are task-specific frozen dataclasses.

An LLM role asks through :class:`PromptedCall`, which draws each call's seed from the
env's ``np_random``, parses the reply and applies the env's parse-error policy:
``retry`` (ask again with a new seed, up to ``max_retries``, then give up),
``fallback`` (the rule simulator answers; the record says so) or ``truncate`` (give up
at once). Giving up raises :class:`SimulatorGaveUp`, which envs turn into
``truncated=True`` with ``info["feedback_error"]``: never a silent reward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from fbenv.errors import FbenvError
from fbenv.feedback import Feedback, Usage
from fbenv.llm.base import Backend, ChatRequest, ChatResult, Message, Sampling

C = TypeVar("C", contravariant=True)
R = TypeVar("R", covariant=True)
T = TypeVar("T")

PARSE_ERROR_POLICIES = ("retry", "fallback", "truncate")


@runtime_checkable
class User(Protocol[C, R]):
    """A simulated user: replies to the agent and makes the user's decisions."""

    def respond(self, context: C, rng: np.random.Generator) -> R: ...


@runtime_checkable
class Critic(Protocol[C]):
    """A judge: evaluates an output, with a score and/or verbal critique."""

    def evaluate(self, context: C, rng: np.random.Generator) -> Feedback: ...


@runtime_checkable
class Annotator(Protocol[C]):
    """Compares outputs: a preference between two or a ranking of several."""

    def compare(self, context: C, rng: np.random.Generator) -> Feedback: ...


@runtime_checkable
class HindsightSimulator(Protocol[C, R]):
    """Plays out the consequences of a decision before an evaluator rates it."""

    def simulate(self, context: C, rng: np.random.Generator) -> R: ...


class SimulatorGaveUp(FbenvError):
    """An LLM simulator's reply could not be used and the policy says stop."""

    def __init__(self, role: str, raw: str, attempts: int):
        self.role, self.raw, self.attempts = role, raw, attempts
        super().__init__(f"{role}: unparseable reply after {attempts} attempt(s): {raw[:200]!r}")


@dataclass(frozen=True)
class Asked(Generic[T]):
    """The outcome of a prompted call: the parsed value (None if none), and its evidence."""

    value: T | None
    raw: str
    parsed: bool
    seeds: tuple[int, ...]
    usage: Usage
    attempts: int
    # the last reply's choice log-probabilities, when the call had choices and the backend scored them
    choice_logprobs: tuple[float, ...] | None = None


@dataclass
class ParseStats:
    """Per-env counters of LLM parse outcomes (reported in info and by `fbenv perf`)."""

    calls: int = 0
    failures: int = 0
    fallbacks: int = 0
    give_ups: int = 0


def usage_of(results: Sequence[ChatResult]) -> Usage:
    return Usage(
        calls=sum(0 if r.cached else 1 for r in results),
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        latency_s=sum(r.latency_s for r in results),
        cache_hits=sum(1 for r in results if r.cached),
    )


@dataclass
class PromptedCall:
    """One LLM-backed question with a parser and the env's parse-error policy."""

    backend: Backend
    sampling: Sampling
    policy: str = "fallback"
    max_retries: int = 2
    stats: ParseStats = field(default_factory=ParseStats)

    def ask(
        self,
        messages: Sequence[Message],
        parse: Callable[[str], T | None],
        rng: np.random.Generator,
    ) -> Asked[T]:
        tries = 1 + (self.max_retries if self.policy == "retry" else 0)
        seeds: list[int] = []
        usage = Usage()
        raw = ""
        for attempt in range(1, tries + 1):
            seed = int(rng.integers(0, 2**31 - 1))
            seeds.append(seed)
            sampling = replace(
                self.sampling,
                # a retry at temperature 0 would repeat the same reply: warm it up a little
                temperature=self.sampling.temperature or (0.7 if attempt > 1 else 0.0),
                seed=seed,
            )
            [result] = self.backend.chat([ChatRequest(tuple(messages), sampling)])
            usage = usage + usage_of([result])
            raw = result.text
            self.stats.calls += 1
            value = parse(raw)
            if value is not None:
                return Asked(value, raw, True, tuple(seeds), usage, attempt, result.choice_logprobs)
            self.stats.failures += 1
        return Asked(None, raw, False, tuple(seeds), usage, tries, result.choice_logprobs)

    def resolve(self, role: str, asked: Asked[T], fallback: Callable[[], T]) -> tuple[T, str | None]:
        """The value to use: parsed, or the rule fallback, or raise :class:`SimulatorGaveUp`."""
        if asked.parsed:
            return asked.value, None  # type: ignore[return-value]
        if self.policy == "fallback":
            self.stats.fallbacks += 1
            return fallback(), "rule"
        self.stats.give_ups += 1
        raise SimulatorGaveUp(role, asked.raw, asked.attempts)
