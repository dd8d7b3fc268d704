"""One simulation object per env: it asks the roles and books everything they cost.

:class:`Simulation` is how a task asks its simulated people, single- or multi-agent:
``sim.ask(role, ctx)`` or, for several roles at once (the simulated seats of a
multi-agent env), ``sim.ask_many([(role, ctx), ...])``, which sends every LLM prompt in
one batched backend call. For each call it

- picks the rule or the LLM version (``simulator=``, per role);
- draws the call's seed from the env's ``np_random`` (so same seed, same replies);
- reads the reply (an exact choice, else the free-text parser) and asks follow-ups;
- decomposed roles (:class:`~fbenv.roles.Questions`) ask each short question in the same
  batch and combine the answers; a prompt with a ``calibration`` (content-free) version
  has its scored choices divided by the model's prior on it;
- applies ``on_parse_error`` (``retry`` with new seeds, ``fallback`` to the rule
  version, ``truncate``) and ``on_backend_error`` (``raise`` or ``truncate``);
- writes the record, seeds and usage into the step's :class:`StepLedger`, which the
  env base turns into ``info["feedback"]``, ``info["llm_seeds"]`` and ``info["usage"]``.

A task cannot forget a seed or a token count: it never sees either.

**Shadow mode** (:meth:`Simulation.shadow`) is how `fbenv fidelity` measures a role: the
episode runs on the rule versions, and every call is also put to the LLM version on the
very same context, with seeds from a separate generator so the episode's own randomness
is untouched. The pairs land in :attr:`Simulation.shadow_log`.
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
from fbenv.roles import BackendGaveUp, ParseStats, Prompt, Questions, Reply, Role, SimulatorGaveUp

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


@dataclass(frozen=True)
class ShadowPair:
    """One role call answered by both versions on the same context (shadow mode)."""

    role: str
    rule: Any  # Role.agreement of the rule value
    llm: Any  # Role.agreement of the LLM value; None when it could not be read
    parsed: bool
    raw: str
    usage: Usage


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
    shadow: bool = False  # asked for shadow mode only: its seeds and usage stay off the ledger
    questions: Questions | None = None
    parts: list["_Call"] = field(default_factory=list)


def calibrated(logprobs: Sequence[float], prior: Sequence[float]) -> np.ndarray:
    """Choice log-probabilities divided by the content-free prior, renormalized (Calibrate Before Use)."""
    x = np.asarray(logprobs, dtype=float) - np.asarray(prior, dtype=float)
    x -= x.max()
    return x - np.log(np.exp(x).sum())


class Simulation:
    """Asks roles for one env (see the module docs). ``rng`` returns the env's ``np_random``."""

    def __init__(self, options: Options, rng: Callable[[], np.random.Generator]):
        self.options = options
        self._rng = rng
        self._backend: Backend | None = None
        self.stats = ParseStats()
        self.episode_usage = Usage()
        self.ledger = StepLedger()
        self.shadow_log: list[ShadowPair] | None = None
        self._shadow_rng: np.random.Generator | None = None

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
        if self.shadow_log is None and not any(self.uses_llm(role) for role, _ in calls):
            return self._ask_rules(calls)
        jobs = [_Call(role, ctx) for role, ctx in calls]
        shadows: list[_Call] = []
        for job in jobs:
            if self.uses_llm(job.role):
                self._prepare(job, job.role.prompt(job.ctx))
            if job.prompt is None and job.questions is None:  # the rule version (also when the LLM has nothing to add)
                job.value, job.done = job.role.rule(job.ctx), True
                if self.shadow_log is not None:
                    twin = _Call(job.role, job.ctx, shadow=True)
                    self._prepare(twin, job.role.prompt(job.ctx))
                    if twin.prompt is not None or twin.questions is not None:
                        shadows.append(twin)
        tries = 1 + (MAX_RETRIES if self.options.on_parse_error == "retry" else 0)
        leaves = [leaf for job in jobs + shadows for leaf in (job.parts or [job])]
        while pending := [j for j in leaves if not j.done]:
            self._round(pending, tries)
        for job in jobs + shadows:
            if job.questions is not None:
                self._combine(job)
        for twin in shadows:
            self._log_shadow(twin)
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

    def _ask_rules(self, calls: Sequence[tuple[Role, Any]]) -> list[Answer]:
        """Every role on its rule version: the answers first, then their records (the order
        of the general path, should a role's record read state its rule set)."""
        values = [role.rule(ctx) for role, ctx in calls]
        records = self.ledger.records
        answers = []
        for (role, ctx), value in zip(calls, values):
            record = role.record(value, ctx)
            records.append(record)
            answers.append(Answer(value, record))
        return answers

    # ------------------------------------------------------------------ shadow mode

    def shadow(self, seed: int) -> None:
        """From now on, also put every rule call to the LLM version (see the module docs)."""
        self.shadow_log = []
        self._shadow_rng = np.random.default_rng(seed)

    def _log_shadow(self, twin: _Call) -> None:
        rule = twin.role.rule(twin.ctx)
        llm = None if twin.failed else twin.role.agreement(self._scored_value(twin))
        self.shadow_log.append(ShadowPair(twin.role.key, twin.role.agreement(rule), llm, not twin.failed,
                                          twin.raw, twin.usage))

    # ------------------------------------------------------------------ the calls

    @staticmethod
    def _prepare(job: _Call, asked: "Prompt | Questions | None") -> None:
        if isinstance(asked, Questions):
            job.questions = asked
            job.parts = [_Call(job.role, job.ctx, prompt=p, shadow=job.shadow) for p in asked.prompts]
        else:
            job.prompt = asked

    def _combine(self, job: _Call) -> None:
        """A decomposed role's value from its answered questions (or its failure)."""
        parts = job.parts
        job.seeds = [s for p in parts for s in p.seeds]
        job.usage = sum((p.usage for p in parts), Usage())
        job.raw = " | ".join(p.raw.strip() for p in parts)
        job.attempt = max(p.attempt for p in parts)
        job.done = True
        if any(p.failed for p in parts):
            job.failed = True
            return
        replies = []
        for p in parts:
            values = tuple(p.prompt.choices.values())
            probs = None if p.logprobs is None else tuple(float(np.exp(lp)) for lp in p.logprobs)
            replies.append(Reply(p.value, values, probs))
        job.value = job.questions.combine(replies)

    def _round(self, pending: list[_Call], tries: int) -> None:
        requests: list[ChatRequest] = []
        slots: list[tuple[int, int | None]] = []  # per job: its request's index, its prior's (if any)
        temperature = self.options.llm_temperature
        for job in pending:
            rng = self._shadow_rng if job.shadow else self._rng()
            seed = int(rng.integers(0, 2**31 - 1))
            job.seeds.append(seed)
            if not job.shadow:
                self.ledger.seeds.append(seed)
            p = job.prompt
            sampling = Sampling(
                max_tokens=p.max_tokens, stop=p.stop, choices=tuple(p.choices), seed=seed,
                temperature=temperature or (RETRY_TEMPERATURE if job.attempt > 1 else 0.0),
            )
            requests.append(ChatRequest(p.messages, sampling))
            slots.append((len(requests) - 1, None))
            if p.calibration is not None and self.backend.scores_choices:
                # greedy and unseeded: the same prior every time (cacheable)
                slots[-1] = (len(requests) - 1, len(requests))
                requests.append(ChatRequest(p.calibration, Sampling(max_tokens=p.max_tokens, stop=p.stop,
                                                                    choices=tuple(p.choices))))
        try:
            results = self.backend.chat(requests)
        except BackendError as exc:
            self.stats.backend_errors += 1
            if self.options.on_backend_error == "raise":
                raise
            raise BackendGaveUp([j.role.name for j in pending], exc) from exc
        for job, (k, kp) in zip(pending, slots):
            result, prior = results[k], (None if kp is None else results[kp])
            spent = usage_of([result] + ([prior] if prior is not None else []))
            job.usage = job.usage + spent
            if not job.shadow:
                self.ledger.usage = self.ledger.usage + spent
                self.episode_usage = self.episode_usage + spent
            job.raw, job.logprobs = result.text, result.choice_logprobs
            text = result.text
            if job.logprobs is not None and prior is not None and prior.choice_logprobs is not None:
                job.logprobs = tuple(float(x) for x in calibrated(job.logprobs, prior.choice_logprobs))
                text = self._pick(job.prompt, job.logprobs, job.seeds[-1], temperature)
            if not job.shadow:
                self.stats.calls += 1
            value = job.prompt.read(text)
            if isinstance(value, Prompt):  # a follow-up question
                job.prompt, job.attempt = value, 1
            elif value is not None:
                job.value, job.done = value, True
            else:
                if not job.shadow:
                    self.stats.failures += 1
                if job.attempt < tries:
                    job.attempt += 1
                else:
                    job.done = job.failed = True

    @staticmethod
    def _pick(prompt: Prompt, logprobs: Sequence[float], seed: int, temperature: float) -> str:
        """The choice a calibrated distribution gives: its likeliest (greedy) or a seeded draw."""
        choices = tuple(prompt.choices)
        if temperature == 0:
            return choices[int(np.argmax(logprobs))]
        p = np.exp(np.asarray(logprobs) / temperature)
        return choices[int(np.random.default_rng(seed).choice(len(choices), p=p / p.sum()))]

    def _scored_value(self, job: _Call) -> Any:
        if job.logprobs is None:
            return job.value
        probs = tuple(float(np.exp(lp)) for lp in job.logprobs)
        return job.role.scored(job.value, probs, self.options.llm_temperature == 0)[0]

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
