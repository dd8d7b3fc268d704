"""The people in the loop: roles with a rule version and an LLM version.

A :class:`Role` is one simulated person's job in a task (the customer deciding, the
rater rating, the narrator telling what happened next). It has

- a **rule** version, :meth:`Role.rule`: exact, no model, knows the hidden truth; it is
  also the fallback when an LLM reply cannot be read;
- an **LLM** version, :meth:`Role.prompt`: a :class:`Prompt` (messages, the exact replies
  offered as scored ``choices`` mapped to values, a free-text parser for servers that
  reply freely, max tokens, stop strings);
- :meth:`Role.record`: the :class:`~fbenv.feedback.Feedback` its answer becomes.

Roles never call a backend themselves: :class:`fbenv.sim.Simulation` asks them, seeds
every call from the env's ``np_random``, parses, applies the parse and backend error
policies and books the records. Ready-made roles cover what many tasks need:
:class:`Rating` (a point on a scale; greedy = the expected value over scored choices,
as in G-Eval, with the distribution kept), :class:`Preference` (which of two),
:class:`Ranking` (an order of k), :class:`Verdict` (a judgement and its critique) and
:class:`Narration` (any non-empty text).

Small models (the embedded 135M one) cannot weigh a whole situation in one scored
answer: a role's LLM version may instead return :class:`Questions`, short questions
about text in front of the model (:func:`belief`: which of two statements the text bears
out, calibrated against a content-free prompt), combined by the role's own rule. `fbenv
fidelity` measures how far either kind agrees with the rule version.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from fbenv.errors import FbenvError, InvalidArgumentError
from fbenv.feedback import Feedback, Source
from fbenv.llm.base import Message
from fbenv.parsing import parse_preference, parse_rating

C = TypeVar("C")
T = TypeVar("T")


class FeedbackFailure(FbenvError):
    """A simulated person could not answer and the env's policy says stop the episode.

    Envs turn it into ``truncated=True`` with ``info["feedback_error"]`` and no reward.
    """

    kind = "simulator"


class SimulatorGaveUp(FeedbackFailure):
    """An LLM role's reply could not be read and ``on_parse_error`` says give up."""

    kind = "parse"

    def __init__(self, role: str, raw: str, attempts: int):
        self.role, self.raw, self.attempts = role, raw, attempts
        super().__init__(f"{role}: unparseable reply after {attempts} attempt(s): {raw[:200]!r}")


class BackendGaveUp(FeedbackFailure):
    """The backend failed a role's call and ``on_backend_error="truncate"``."""

    kind = "backend"

    def __init__(self, roles: Sequence[str], error: BaseException):
        self.roles, self.error = tuple(roles), error
        super().__init__(f"{', '.join(self.roles)}: backend failed: {error}")


@dataclass(frozen=True)
class Prompt(Generic[T]):
    """What an LLM role asks, and how its reply becomes a value.

    A reply that is exactly one of ``choices`` (after stripping) maps to its value;
    otherwise ``parse`` reads it (None: unreadable). A value may itself be a
    :class:`Prompt`: the role then asks that follow-up (e.g. "I have a question." and
    then which question), and the last answer is the role's value.
    """

    messages: tuple[Message, ...]
    choices: Mapping[str, Any] = field(default_factory=dict)
    parse: Callable[[str], Any] | None = None
    max_tokens: int = 40
    stop: tuple[str, ...] = ()
    #: the same prompt with its content replaced by ``"N/A"``: scored choices are divided by
    #: the model's prior on it (Zhao et al., *Calibrate Before Use*, 2021)
    calibration: tuple[Message, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(self.messages))
        if not self.messages or not all(isinstance(m, Message) for m in self.messages):
            raise InvalidArgumentError(f"Prompt.messages: expects Message records, actual {self.messages!r}")
        if not self.choices and self.parse is None:
            raise InvalidArgumentError("Prompt: expects choices, a parser or both (nothing could read a reply)")
        if self.calibration is not None:
            object.__setattr__(self, "calibration", tuple(self.calibration))
            if not self.choices or not all(isinstance(m, Message) for m in self.calibration):
                raise InvalidArgumentError("Prompt.calibration: expects Message records, and choices to calibrate")

    def read(self, text: str) -> Any:
        """The value of reply ``text``, a follow-up :class:`Prompt`, or None if unreadable."""
        exact = text.strip()
        if exact in self.choices:
            return self.choices[exact]
        return self.parse(text) if self.parse is not None else None


@dataclass(frozen=True)
class Reply:
    """One answered sub-question of :class:`Questions`: the value read and, when the
    backend scored the choices, the (calibrated) probability of each choice's value."""

    value: Any
    values: tuple[Any, ...] = ()  # the values of the prompt's choices, in order
    probs: tuple[float, ...] | None = None

    @property
    def expected(self) -> Any:
        """The mean of the choice values under ``probs`` (e.g. P(yes) for yes=1/no=0);
        the value itself when there is no distribution or the values are not numbers."""
        numeric = self.values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)
        if self.probs is None or not numeric:
            return self.value
        return float(np.dot(self.probs, np.asarray(self.values, dtype=float)))


@dataclass(frozen=True)
class Questions(Generic[T]):
    """A judgement decomposed into short questions, combined by the role's own rule.

    A small model cannot weigh a whole situation at once, but it can answer one question
    about text in front of it ("Does the Nova 5 have a touchscreen?"). A role's
    :meth:`Role.prompt` may return a ``Questions``: every prompt is asked (in the same
    batched call as the other roles of the step), and ``combine`` turns the
    :class:`Reply` of each, in order, into the role's value. If any question cannot be
    read, the whole role counts as one parse failure (and the env's policy applies).
    """

    prompts: tuple[Prompt, ...]
    combine: Callable[[Sequence[Reply]], T]

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(self.prompts))
        if not self.prompts or not all(isinstance(p, Prompt) for p in self.prompts):
            raise InvalidArgumentError(f"Questions.prompts: expects one or more Prompt, actual {self.prompts!r}")


def belief(context: str, question: str, holds: str, fails: str, system: str | None = None,
           max_tokens: int = 24) -> Prompt[float]:
    """Which of two statements the text in front of the model supports: 1.0 (``holds``) or 0.0.

    Small models cannot answer "Yes"/"No" about a text (SmolLM2-135M's yes-probability
    does not move with the evidence), but they can tell which of two sentences the text
    bears out, by copying. The choices are the two statements; the prompt is calibrated
    against the same question about ``"N/A"``, so through :attr:`Reply.expected` a role
    reads the calibrated probability that ``holds`` is true. A server that writes freely
    may answer with either statement or with yes/no.
    """
    def messages(text: str) -> tuple[Message, ...]:
        head = (Message("system", system),) if system else ()
        return head + (Message("user", f"{text}\n\n{question}"),)

    def parse(text: str) -> float | None:
        t = text.strip().lower()
        for statement, value in ((fails, 0.0), (holds, 1.0)):  # the negation contains the claim: it first
            if statement.lower().rstrip(".") in t:
                return value
        m = re.match(r"^\W*(yes|no)\b", t)
        return None if m is None else float(m.group(1) == "yes")

    return Prompt(messages(context), choices={holds: 1.0, fails: 0.0}, parse=parse, max_tokens=max_tokens,
                  stop=("\n",), calibration=messages("N/A"))


class Role(Generic[C, T]):
    """One simulated person's job. Subclass it; instances are stateless.

    ``key`` names the role in ``simulator={"<key>": "llm"}``; ``name`` is what errors
    and records say ("Advisor rating").
    """

    key: ClassVar[str] = "role"
    name: ClassVar[str] = "role"
    source: ClassVar[Source] = Source.USER

    def rule(self, ctx: C) -> T:
        raise NotImplementedError(f"{type(self).__name__} must implement rule()")

    def prompt(self, ctx: C) -> "Prompt[T] | Questions[T] | None":
        """The LLM version's question (or :class:`Questions`), or None when the rule answer
        needs no model here."""
        raise NotImplementedError(f"{type(self).__name__} must implement prompt()")

    def agreement(self, value: T) -> Any:
        """What `fbenv fidelity` compares between the rule and the LLM version: a number
        (rank-correlated), a hashable label (agreement rate), or None (free text: not compared)."""
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, (tuple, frozenset)):
            return value
        return None

    def record(self, value: T, ctx: C) -> Feedback:
        return Feedback(self.source, text=str(value))

    def scored(self, value: T, probs: tuple[float, ...], greedy: bool) -> tuple[T, tuple[float, ...] | None]:
        """The value and kept distribution when the backend scored the offered choices."""
        return value, None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r})"


class Rating(Role[C, float]):
    """A rating on an integer scale, offered as ``"Rating: 1"`` ... ``"Rating: 5"``.

    Subclasses write :meth:`messages` and :meth:`rule`. With scored choices, a greedy
    rating is the expected value of the model's distribution (G-Eval): a small model's
    argmax flips between the ends of the scale. The distribution goes into
    ``Feedback.distribution``; a sampled rating is a point drawn from it.
    """

    scale: ClassVar[tuple[int, int]] = (1, 5)
    label: ClassVar[str] = "Rating"
    max_tokens: ClassVar[int] = 12

    def messages(self, ctx: C) -> Sequence[Message]:
        raise NotImplementedError(f"{type(self).__name__} must implement messages()")

    def choices(self) -> dict[str, float]:
        lo, hi = self.scale
        return {f"{self.label}: {n}": float(n) for n in range(lo, hi + 1)}

    def prompt(self, ctx: C) -> "Prompt[float] | None":
        lo, hi = self.scale
        return Prompt(tuple(self.messages(ctx)), choices=self.choices(),
                      parse=lambda t: parse_rating(t, lo, hi), max_tokens=self.max_tokens)

    def scored(self, value, probs, greedy):
        lo, hi = self.scale
        if greedy:
            value = float(np.dot(probs, np.arange(lo, hi + 1)))
        return value, probs

    def record(self, value: float, ctx: C) -> Feedback:
        return Feedback(self.source, scalar=float(value), scale=(float(self.scale[0]), float(self.scale[1])),
                        text=f"{self.label}: {float(value):.2f}")


class Preference(Role[C, int]):
    """Which of two (or more) responses is better: the index into ``labels``.

    Offered as ``"Preference: A"`` / ``"Preference: B"``; free text is read by
    :func:`fbenv.parsing.parse_preference`. With scored choices the distribution is
    kept (``Feedback.distribution``: the probability of each label), which is what a
    Bradley-Terry reward model trains on.
    """

    source = Source.ANNOTATOR
    labels: ClassVar[tuple[str, ...]] = ("A", "B")
    max_tokens: ClassVar[int] = 12

    def messages(self, ctx: C) -> Sequence[Message]:
        raise NotImplementedError(f"{type(self).__name__} must implement messages()")

    def prompt(self, ctx: C) -> "Prompt[int] | None":
        return Prompt(tuple(self.messages(ctx)), choices={f"Preference: {lab}": i for i, lab in enumerate(self.labels)},
                      parse=lambda t: parse_preference(t, self.labels), max_tokens=self.max_tokens)

    def scored(self, value, probs, greedy):
        return value, probs

    def agreement(self, value: int) -> Any:
        return self.labels[int(value)]

    def record(self, value: int, ctx: C) -> Feedback:
        return Feedback(self.source, preference=int(value), text=f"Preference: {self.labels[int(value)]}")


def parse_ranking(text: str, labels: Sequence[str]) -> tuple[int, ...] | None:
    """``"B > A > C"`` (or ``"B, A, C"``) -> ``(1, 0, 2)``: every label exactly once, else None."""
    alt = "|".join(re.escape(label) for label in labels)
    found = re.findall(rf"(?<![\w'])({alt})(?![\w'])", text)
    if sorted(found) != sorted(labels):
        return None
    return tuple(list(labels).index(x) for x in found)


class Ranking(Role[C, tuple]):
    """An order of k responses, best first, as indices into ``labels``.

    Up to four responses every order is offered as a scored choice (``"Ranking: B > A"``);
    beyond that the model writes the order freely and :func:`parse_ranking` reads it.
    """

    source = Source.ANNOTATOR
    labels: ClassVar[tuple[str, ...]] = ("A", "B", "C")
    max_tokens: ClassVar[int] = 24

    def messages(self, ctx: C) -> Sequence[Message]:
        raise NotImplementedError(f"{type(self).__name__} must implement messages()")

    def prompt(self, ctx: C) -> "Prompt[tuple] | None":
        choices = {}
        if len(self.labels) <= 4:
            for order in itertools.permutations(range(len(self.labels))):
                choices["Ranking: " + " > ".join(self.labels[i] for i in order)] = tuple(order)
        return Prompt(tuple(self.messages(ctx)), choices=choices,
                      parse=lambda t: parse_ranking(t, self.labels), max_tokens=self.max_tokens)

    def record(self, value: tuple, ctx: C) -> Feedback:
        return Feedback(self.source, ranking=tuple(int(i) for i in value),
                        text="Ranking: " + " > ".join(self.labels[i] for i in value))


@dataclass(frozen=True)
class VerdictValue:
    """A judgement (``ok``: the answer is right / acceptable) and the critique given with it."""

    ok: bool
    critique: str = ""


class Verdict(Role[C, VerdictValue]):
    """A judge's verdict, then its critique: two questions, one role.

    The verdict is a scored choice (``"Verdict: correct"`` / ``"Verdict: incorrect"``);
    the critique that follows is free text (any non-empty reply). The record's scalar is
    1.0 for ``ok`` and 0.0 otherwise; its text is the critique.
    """

    source = Source.CRITIC
    verdicts: ClassVar[tuple[str, str]] = ("correct", "incorrect")
    critique_tokens: ClassVar[int] = 80

    def messages(self, ctx: C) -> Sequence[Message]:
        raise NotImplementedError(f"{type(self).__name__} must implement messages()")

    def critique_request(self, ctx: C, ok: bool) -> str:
        return "Explain your verdict in one or two sentences."

    def prompt(self, ctx: C) -> "Prompt[VerdictValue] | None":
        base = tuple(self.messages(ctx))

        def follow_up(ok: bool) -> Prompt:
            said = Message("assistant", f"Verdict: {self.verdicts[0 if ok else 1]}")
            return Prompt(base + (said, Message("user", self.critique_request(ctx, ok))),
                          parse=lambda t: VerdictValue(ok, t.strip()) if t.strip() else None,
                          max_tokens=self.critique_tokens, stop=("\n\n",))

        def parse(text: str):
            t = text.lower()
            bad = re.search(rf"\b{re.escape(self.verdicts[1])}\b", t)
            good = re.search(rf"\b{re.escape(self.verdicts[0])}\b", t)
            if bool(good) == bool(bad):
                return None
            return follow_up(bool(good))

        return Prompt(base, choices={f"Verdict: {self.verdicts[0]}": follow_up(True),
                                     f"Verdict: {self.verdicts[1]}": follow_up(False)},
                      parse=parse, max_tokens=8)

    def agreement(self, value: VerdictValue) -> Any:
        return "ok" if value.ok else "not ok"

    def record(self, value: VerdictValue, ctx: C) -> Feedback:
        return Feedback(self.source, scalar=1.0 if value.ok else 0.0, scale=(0.0, 1.0), text=value.critique or None)


class Narration(Role[C, str]):
    """Free text: a hindsight story, a user's reply, a verbal critique. Any non-empty reply."""

    max_tokens: ClassVar[int] = 60
    stop: ClassVar[tuple[str, ...]] = ("\n\n",)

    def messages(self, ctx: C) -> Sequence[Message]:
        raise NotImplementedError(f"{type(self).__name__} must implement messages()")

    def finish(self, text: str, ctx: C) -> str:
        """The value of a non-empty reply (e.g. the reply with the facts appended)."""
        return text

    def prompt(self, ctx: C) -> "Prompt[str] | None":
        return Prompt(tuple(self.messages(ctx)), parse=lambda t: self.finish(t.strip(), ctx) if t.strip() else None,
                      max_tokens=self.max_tokens, stop=self.stop)

    def record(self, value: str, ctx: C) -> Feedback:
        return Feedback(self.source, text=value)


@dataclass
class ParseStats:
    """Per-env counters of LLM outcomes (reported by `fbenv perf` and the episode stats)."""

    calls: int = 0
    failures: int = 0
    fallbacks: int = 0
    give_ups: int = 0
    backend_errors: int = 0
