"""One simulation object per env: it asks the roles and books everything they cost.

:class:`Simulation` is how a task asks its simulated people, single- or multi-agent:
``sim.ask(role, ctx)`` or, for several roles at once (the simulated seats of a
multi-agent env), ``sim.ask_many([(role, ctx), ...])``, which sends every LLM prompt in
one batched backend call. For each call it

- picks the rule or the LLM version (``simulator=``, per role);
- draws the call's seed from the env's ``np_random`` (so same seed, same replies);
- reads the reply (an exact choice, else the free-text parser) and asks follow-ups;
- applies ``on_parse_error`` (``retry`` with new seeds, ``fallback`` to the rule
  version, ``truncate``) and ``on_backend_error`` (``raise`` or ``truncate``);
- writes the record, seeds and usage into the step's :class:`StepLedger`, which the
  env base turns into ``info["feedback"]``, ``info["llm_seeds"]`` and ``info["usage"]``.

A task cannot forget a seed or a token count: it never sees either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import numpy as np

from fbenv.errors import BackendError
from fbenv.feedback import Feedback, Usage
from fbenv.llm.base import Backend, ChatRequest, ChatResult, Sampling
from fbenv.llm.registry import get_backend
from fbenv.options import Options
from fbenv.roles import BackendGaveUp, ParseStats, Prompt, Role, SimulatorGaveUp

T = TypeVar("T")
MAX_RETRIES = 2  # extra attempts under on_parse_error="retry"
RETRY_TEMPERATURE = 0.7  # a greedy retry would repeat the same reply: warm it up a little


def usage_of(results: Sequence[ChatResult]) -> Usage:
    return Usage(
        calls=sum(0 if r.cached else 1 for r in results),
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        latency_s=sum(r.latency_s for r in results),
        cache_hits=sum(1 for r in results if r.cached),
    )


@dataclass
class StepLedger:
    """What one reset or step cost and produced: its records, its LLM seeds, its usage."""

    records: list[Feedback] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)

    def add(self, record: Feedback) -> None:
        """Book a record that no role produced (an execution result, an oracle's check)."""
        self.records.append(record)


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A role's answer and the record it became."""

    value: T
    feedback: Feedback

    @property
    def by_llm(self) -> bool:
        """The LLM answered and its reply was used (not the rule fallback)."""
        return self.feedback.simulator == "llm" and self.feedback.fallback is None


@dataclass
class _Call:
    role: Role
    ctx: Any
    prompt: Prompt | None = None
    attempt: int = 1
    seeds: list[int] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    raw: str = ""
    logprobs: tuple[float, ...] | None = None
    value: Any = None
    done: bool = False
    failed: bool = False


class Simulation:
    """Asks roles for one env (see the module docs). ``rng`` returns the env's ``np_random``."""

    def __init__(self, options: Options, rng: Callable[[], np.random.Generator]):
        self.options = options
        self._rng = rng
        self._backend: Backend | None = None
        self.stats = ParseStats()
        self.episode_usage = Usage()
        self.ledger = StepLedger()

    @property
    def backend(self) -> Backend:
        """The shared LLM backend, resolved on first use (constructors never load models)."""
        if self._backend is None:
            o = self.options
            self._backend = get_backend(o.llm, cache=o.llm_cache, cache_path=o.llm_cache_path)
        return self._backend

    def begin_episode(self) -> None:
        self.episode_usage = Usage()
        self.ledger = StepLedger()

    def begin_step(self) -> StepLedger:
        self.ledger = StepLedger()
        return self.ledger

    def uses_llm(self, role: Role) -> bool:
        return self.options.simulator_of(role.key) == "llm"

    def ask(self, role: Role[Any, T], ctx: Any) -> Answer[T]:
        """Ask one role (rule or LLM per the options) and book its record."""
        return self.ask_many([(role, ctx)])[0]

    def ask_many(self, calls: Sequence[tuple[Role, Any]]) -> list[Answer]:
        """Ask several roles at once: their LLM prompts go out as one batched call per round."""
        jobs = [_Call(role, ctx) for role, ctx in calls]
        for job in jobs:
            if self.uses_llm(job.role):
                job.prompt = job.role.prompt(job.ctx)
            if job.prompt is None:  # the rule version (also when the LLM has nothing to add)
                job.value, job.done = job.role.rule(job.ctx), True
        tries = 1 + (MAX_RETRIES if self.options.on_parse_error == "retry" else 0)
        while pending := [j for j in jobs if not j.done]:
            self._round(pending, tries)
        answers, gave_up = [], None
        for job in jobs:
            if job.failed:
                if self.options.on_parse_error != "fallback":
                    self.stats.give_ups += 1
                    gave_up = gave_up or SimulatorGaveUp(job.role.name, job.raw, job.attempt)
                    continue
                self.stats.fallbacks += 1
                job.value = job.role.rule(job.ctx)
            answers.append(self._book(job))
        if gave_up is not None:
            raise gave_up
        return answers

    def _round(self, pending: list[_Call], tries: int) -> None:
        requests = []
        temperature = self.options.llm_temperature
        for job in pending:
            seed = int(self._rng().integers(0, 2**31 - 1))
            job.seeds.append(seed)
            self.ledger.seeds.append(seed)
            p = job.prompt
            sampling = Sampling(
                max_tokens=p.max_tokens, stop=p.stop, choices=tuple(p.choices), seed=seed,
                temperature=temperature or (RETRY_TEMPERATURE if job.attempt > 1 else 0.0),
            )
            requests.append(ChatRequest(p.messages, sampling))
        try:
            results = self.backend.chat(requests)
        except BackendError as exc:
            self.stats.backend_errors += 1
            if self.options.on_backend_error == "raise":
                raise
            raise BackendGaveUp([j.role.name for j in pending], exc) from exc
        for job, result in zip(pending, results):
            spent = usage_of([result])
            job.usage = job.usage + spent
            self.ledger.usage = self.ledger.usage + spent
            self.episode_usage = self.episode_usage + spent
            job.raw, job.logprobs = result.text, result.choice_logprobs
            self.stats.calls += 1
            value = job.prompt.read(result.text)
            if isinstance(value, Prompt):  # a follow-up question
                job.prompt, job.attempt = value, 1
            elif value is not None:
                job.value, job.done = value, True
            else:
                self.stats.failures += 1
                if job.attempt < tries:
                    job.attempt += 1
                else:
                    job.done = job.failed = True

    def _book(self, job: _Call) -> Answer:
        record = job.role.record(job.value, job.ctx)
        if job.seeds:  # the LLM was asked
            distribution = None
            if not job.failed and job.logprobs is not None:
                probs = tuple(float(np.exp(lp)) for lp in job.logprobs)
                job.value, distribution = job.role.scored(job.value, probs, self.options.llm_temperature == 0)
                record = job.role.record(job.value, job.ctx)
            record = replace(
                record, parsed=not job.failed, raw=job.raw, fallback="rule" if job.failed else None,
                simulator="llm", seed=job.seeds[-1], usage=job.usage,
                distribution=distribution if distribution is not None else record.distribution,
            )
        self.ledger.records.append(record)
        return Answer(job.value, record)
