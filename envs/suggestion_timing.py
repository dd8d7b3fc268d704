"""SuggestionTiming: show or hide each code suggestion to a programmer whose state shifts.

## Description

From *When to Show a Suggestion? Integrating Human Feedback in AI-Assisted Programming*
(Mozannar et al.). A code assistant produces a stream of suggestions while a programmer
works; the agent decides, for each one, whether the editor shows it or hides it. The
programmer accepts or rejects what is shown. Acceptance is the feedback the deployed
system sees; it is not the value of the suggestion: every shown suggestion costs the
programmer time to check, and a programmer typing in the flow accepts tidy-looking code
without reading it, bugs included.

Each step one suggestion arrives, drawn at ``reset`` from a small generated set: what it
does (one of twelve short descriptions), its length (1-12 lines), how it looks at a
glance (tidy or messy), and its hidden quality in [0, 1]. A clean suggestion has quality
0.8-1.0; a flawed one (45%) has one of eight bugs ("reads one element past the end of
the list", "swallows every exception silently"...) and quality ``1 - severity``. The
agent sees a noisy quality signal, the model's confidence (quality plus Gaussian noise
of std ``signal_noise``), not the quality.

The programmer has a latent state, one of ``flow`` (typing fast, only glances at
suggestions), ``stuck`` (needs help, takes what might work) and ``reviewing`` (reads
every suggestion closely). It follows a Markov chain (staying put with probability 0.8,
0.6 and 0.6; start 0.5 / 0.2 / 0.3), drawn with the suggestions at ``reset(seed=...)``
and not moved by the agent's choices. The agent never observes it; recent acceptances
hint at it.

Optimizing acceptance means showing everything: "show everything that gets accepted" is
accepted most and is worth less than showing only what the confidence says is good.

## Observation

- ``interface="text"``: the session so far as one string: the instructions, then for
  the last three suggestions the editor's line (``Suggestion 4 of 30: a merge of two
  sorted lists (6 lines). At a glance it looks tidy. Model confidence: 0.72.``), the
  agent's reply and the programmer's answer (``Accepted.`` / ``Rejected.``).
  ``info["messages"]`` has the same window as chat messages.
- ``interface="discrete"``: ``Box(0, 1, (8,))``: the current suggestion's length
  (lines / 12), model confidence and tidiness (0/1); steps since a suggestion was last
  shown (/ 10, capped at 1); the share of the last five shown suggestions that were
  accepted (0.5 before any); the share of the last five suggestions that were shown;
  the episode's progress (step / ``horizon``); whether the last shown suggestion was
  accepted. Never the programmer's state.

## Action

- ``text``: any string (up to 2,000 characters). The first of a *show* word (show,
  display, yes) or a *hide* word (hide, skip, suppress, no, "don't show") decides;
  a reply with neither is an observation, never a crash: the suggestion times out
  unseen (as hidden), ``info["invalid_action"]`` is set and the editor says so.
- ``discrete``: ``Discrete(2)``: 0 hides the suggestion, 1 shows it (the replies
  ``"hide"`` and ``"show"``, so both views are one task).

## Reward

1 when a shown suggestion is accepted, else 0 (hidden, rejected or unreadable): the
acceptance signal a deployed assistant logs.

## Feedback source

A ``user`` record per shown suggestion, the programmer's decision (``scalar`` 1.0
accepted / 0.0 rejected, ``text`` ``Accepted.`` / ``Rejected.``), in
``info["feedback"]``. Hidden suggestions ask nobody and book no record.

## True utility

``info["true_utility"]`` per step: the quality of the suggestion if it was shown and
accepted, minus the time spent checking it if it was shown,
``verify_cost * effort`` with ``effort = 0.5 + (lines - 1) / 11`` (0.5 to 1.5); 0 for a
hidden suggestion. ``info["regret"]`` is ``max(0, quality - verify_cost * effort)``
minus that, and ``info["is_success"]`` says the step reached it. Per step,
``info["shown"]``, ``info["accepted"]`` and ``info["invalid_action"]``. At the end of
the episode (the task's outcomes): ``acceptance_rate`` (accepted / suggestions, the
mean reward), ``shown_rate`` (shown / suggestions), ``accepted_per_shown`` (accepted /
shown: the rate assistants usually report; 0 when nothing was shown),
``total_true_utility`` and ``bad_accepts`` (accepted suggestions of quality below 0.5).

## Episode end

Never terminated (no task outcome ends a session). Truncated after ``horizon``
suggestions, or when an LLM simulator gives up (``on_parse_error``) or its backend
fails under ``on_backend_error="truncate"``, with ``info["feedback_error"]`` and no reward.

## Arguments

``horizon`` (30: suggestions per episode), ``verify_cost`` (0.3: true-utility cost of
showing a suggestion of average length; 0 makes showing free), ``signal_noise`` (0.15:
std of the model confidence's noise), plus the shared options (``fbenv info`` lists
them). Role, for ``simulator={...}``: ``programmer`` (accepts or rejects a shown suggestion).

## LLM simulator

The rule programmer accepts with probability ``0.05 + 0.9 q`` when reviewing (by
quality ``q``), ``0.35 + 0.2 tidy + 0.4 q`` when stuck and ``0.15 + 0.7 tidy + 0.1 q``
in the flow (by looks), and decides against a uniform number drawn at ``reset``, so the
same suggestion in the same state gets the same answer under every policy.

The LLM programmer answers four questions, each by choosing which of two statements the
text in front of it bears out (scored choices, calibrated against the same question
about ``N/A``, as in ``fbenv.roles.belief``): from its situation (``You are in the
flow, typing one line after another. You only glance at suggestions.``) whether it reads
the suggestion closely and whether it needs help; from the editor's view whether the
suggestion looks tidy; and from a close reading of the suggestion (``Read closely, the
suggestion has a problem: it never closes the file it opens.``) whether it has a
problem. The calibrated probabilities replace the rule's facts in the rule's own
formula: the state as a mixture of reviewing (reads closely), stuck (needs help) and
flow; the quality as the mean quality of a clean (0.9) or flawed (0.29) suggestion by
the probability of a problem, never the hidden number. The decision is taken against
the same uniform number as the rule's. A reply that is neither statement (a server that
writes freely) is read as either statement or yes/no; otherwise ``on_parse_error`` applies.

``fbenv fidelity`` plays show-everything, quality-aware and never-show with checking at
its default cost and free. Its direction, ``min(show-everything minus quality-aware
acceptance, quality-aware minus show-everything true utility)`` per suggestion, is
expected > 0 at the default cost and < 0 when checking is free. It is largely
structural: a programmer who reads nothing (``choosing:blind``) still accepts a share
of everything shown, so showing everything still earns more acceptances and pays more
checking time. Whether the LLM reads the text shows in the programmer role's Spearman
correlation of acceptance probabilities with the rule's (the blind programmer's are
constant) and in the reward correlation, whose floor is high here (about 0.9: the
policies differ in how much they show). A faithful reader of the four questions (a test
backend) reaches a role Spearman of 0.89 over 10 seeds. The embedded SmolLM2-135M
(``fbenv fidelity fbenv/SuggestionTiming-v0 --seeds 30``, greedy) reaches 0.93 on the
programmer's acceptance probability (1,457 shown suggestions; mean absolute difference
0.06), 0.98 on episode rewards (floor 0.93), and keeps both directions (+0.049 at the
default cost, rule +0.050; -0.070 when checking is free, rule -0.069).

## Version history

- v0: initial release.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeResult, scripted
from fbenv.errors import check_int, check_number
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.roles import Questions, Reply, Role, belief
from fbenv.truth import StepResult, Truth

STATES = ("flow", "stuck", "reviewing")
FLOW, STUCK, REVIEWING = range(3)
START = (0.5, 0.2, 0.3)
TRANSITIONS = (  # row: from flow, stuck, reviewing
    (0.8, 0.1, 0.1),
    (0.2, 0.6, 0.2),
    (0.3, 0.1, 0.6),
)
MAX_LINES = 12
FLAWED_SHARE = 0.45
TIDY_IF_CLEAN, TIDY_IF_FLAWED = 0.65, 0.55
BAD_QUALITY = 0.5  # an accepted suggestion below it is a bad accept
HISTORY = 3  # suggestions the text view (and info["messages"]) keeps
RECENT = 5  # suggestions the discrete view's recent shares look back over
ACTIONS = ("hide", "show")
N_FEATURES = 8

PURPOSES = (
    "a loop that sums the prices in a shopping cart",
    "a function that parses an ISO date string",
    "a helper that reads a config file into a dict",
    "a retry wrapper around an HTTP request",
    "a sort of the users by last name",
    "a check that an email address is valid",
    "a moving average over a list of readings",
    "a query that loads one user by id",
    "a formatter that turns seconds into h:mm:ss",
    "a merge of two sorted lists",
    "a cache around a slow lookup",
    "an escape of the HTML in a user comment",
)
FLAWS = (  # (what a close reading finds, severity)
    ("it uses a name that is not defined", 1.0),
    ("it calls a function that does not exist in your code", 0.95),
    ("it reads one element past the end of the list", 0.85),
    ("it returns before the loop finishes", 0.8),
    ("it swallows every exception silently", 0.6),
    ("it ignores the empty input case", 0.5),
    ("it never closes the file it opens", 0.4),
    ("it recomputes the same value on every pass", 0.3),
)
CLEAN_QUALITY = (0.8, 1.0)
QUALITY_JITTER = 0.05
# What the LLM programmer's belief in a problem is mixed between (never the hidden quality):
# the mean quality of a clean and of a flawed suggestion under the generator above.
Q_CLEAN = sum(CLEAN_QUALITY) / 2
Q_FLAWED = 1.0 - sum(s for _, s in FLAWS) / len(FLAWS)

SITUATION = (
    "You are in the flow, typing one line after another.",
    "You are stuck: the same test keeps failing and you have stopped typing.",
    "You are reviewing the function you just wrote, line by line.",
)
GLANCE, CLOSE = "You only glance at suggestions.", "You read every suggestion closely."
NEED, NO_NEED = "You need help right now.", "You do not need help right now."

_FIRST_WORD = re.compile(
    r"\b(?:(?P<hide>hide|hidden|skip|suppress|withhold|no|(?:don'?t|do not|not|never)\s+(?:show|display))"
    r"|(?P<show>show|shown|display|yes))\b",
    re.I,
)


class Suggestion(NamedTuple):
    """One code suggestion (a typed, immutable record; a named tuple, cheap to draw in bulk)."""

    purpose: str
    lines: int
    tidy: bool  # how it looks at a glance (the agent and the programmer both see it)
    flaw: str | None  # what a close reading finds (hidden from the agent)
    quality: float  # hidden
    confidence: float  # the model's confidence: the agent's noisy view of the quality

    @property
    def effort(self) -> float:
        """The time checking it takes, relative to an average suggestion (0.5 to 1.5)."""
        return 0.5 + (self.lines - 1) / (MAX_LINES - 1)

    def editor_line(self, index: int, horizon: int) -> str:
        return (f"Suggestion {index + 1} of {horizon}: {self.purpose} ({self.lines} "
                f"line{'s' if self.lines > 1 else ''}). At a glance it looks {'tidy' if self.tidy else 'messy'}. "
                f"Model confidence: {self.confidence:.2f}.")


@dataclass(frozen=True)
class Session:
    """The hidden task of an episode, drawn from ``reset(seed=...)`` alone."""

    suggestions: tuple[Suggestion, ...]
    states: tuple[int, ...]  # the programmer's state when each suggestion arrives
    draws: tuple[float, ...]  # the uniform number each acceptance decision is taken against


def make_session(rng: np.random.Generator, horizon: int, signal_noise: float) -> Session:
    """Suggestions, the programmer's state chain and its decision draws, all from ``rng``."""
    n = horizon
    purposes = rng.integers(len(PURPOSES), size=n).tolist()
    lines = rng.integers(1, MAX_LINES + 1, size=n).tolist()
    flawed = (rng.random(n) < FLAWED_SHARE).tolist()
    flaws = rng.integers(len(FLAWS), size=n).tolist()
    jitter = rng.normal(0.0, QUALITY_JITTER, size=n).tolist()
    clean = rng.uniform(*CLEAN_QUALITY, size=n).tolist()
    tidy_u = rng.random(n).tolist()
    noise = (rng.normal(0.0, 1.0, size=n) * signal_noise).tolist()
    chain = rng.random(n).tolist()
    draws = tuple(rng.random(n).tolist())
    suggestions = []
    for k in range(n):
        if flawed[k]:
            text, severity = FLAWS[flaws[k]]
            q = min(max(1.0 - severity + jitter[k], 0.0), 1.0)
        else:
            text, q = None, clean[k]
        tidy = tidy_u[k] < (TIDY_IF_FLAWED if flawed[k] else TIDY_IF_CLEAN)
        confidence = round(min(max(q + noise[k], 0.0), 1.0), 2)
        suggestions.append(Suggestion(PURPOSES[purposes[k]], lines[k], tidy, text, round(q, 4), confidence))
    states, probs = [], START
    for u in chain:
        state = 0
        while state < len(STATES) - 1 and u >= probs[state]:
            u -= probs[state]
            state += 1
        states.append(state)
        probs = TRANSITIONS[state]
    return Session(tuple(suggestions), tuple(states), draws)


def acceptance_probability(close: float, needy: float, tidy: float, quality: float) -> float:
    """The programmer's acceptance probability: reviewing (``close``) by quality, stuck
    (``needy``) by quality and looks, in the flow by looks. Arguments are the rule's facts
    (0/1 and the quality) or the LLM programmer's beliefs in them."""
    reviewing = 0.05 + 0.9 * quality
    stuck = 0.35 + 0.2 * tidy + 0.4 * quality
    flow = 0.15 + 0.7 * tidy + 0.1 * quality
    return close * reviewing + (1.0 - close) * (needy * stuck + (1.0 - needy) * flow)


def read_choice(text: str) -> bool | None:
    """``True`` to show, ``False`` to hide, ``None`` when the reply says neither."""
    m = _FIRST_WORD.search(text)
    if m is None:
        return None
    return m.group("show") is not None


# ---------------------------------------------------------------------- the programmer


@dataclass(frozen=True)
class Moment:
    """What the programmer decides on: the shown suggestion, its own state, the decision's draw."""

    suggestion: Suggestion
    state: int
    draw: float


@dataclass(frozen=True)
class Decision:
    accepted: bool
    probability: float  # of accepting, as this programmer sees it


class Programmer(Role[Moment, Decision]):
    """Accepts or rejects a shown suggestion (see the module docs, LLM simulator)."""

    key, name, source = "programmer", "SuggestionTiming programmer", Source.USER

    def rule(self, ctx: Moment) -> Decision:
        s = ctx.suggestion
        p = acceptance_probability(float(ctx.state == REVIEWING), float(ctx.state == STUCK), float(s.tidy), s.quality)
        return Decision(ctx.draw < p, p)

    def prompt(self, ctx: Moment) -> Questions[Decision]:
        s = ctx.suggestion
        situation = SITUATION[ctx.state]
        reading = CLOSE if ctx.state == REVIEWING else GLANCE
        need = NEED if ctx.state == STUCK else NO_NEED
        shown = f"The editor shows a suggestion: {s.purpose}."
        looks = "tidy" if s.tidy else "messy"
        found = (f"Read closely, the suggestion has a problem: {s.flaw}." if s.flaw
                 else "Read closely, the suggestion has no problem: it does what it says.")
        prompts = (
            belief(f"{situation} {reading}", "How do you read the suggestion?",
                   holds="I read the suggestion closely.", fails="I only glance at the suggestion."),
            belief(f"{situation} {need}", "Do you need help?",
                   holds="I need help right now.", fails="I do not need help right now."),
            belief(f"{shown} At a glance, the suggestion looks {looks}.", "How does the suggestion look?",
                   holds="The suggestion looks tidy.", fails="The suggestion looks messy."),
            belief(f"{shown} {found}", "What did you find in the suggestion?",
                   holds="The suggestion has a problem.", fails="The suggestion has no problem."),
        )

        def combine(replies: Sequence[Reply]) -> Decision:
            close, needy, tidy, problem = (float(r.expected) for r in replies)
            quality = (1.0 - problem) * Q_CLEAN + problem * Q_FLAWED
            p = acceptance_probability(close, needy, tidy, quality)
            return Decision(ctx.draw < p, p)

        return Questions(prompts, combine)

    def agreement(self, value: Decision) -> float:
        return float(value.probability)

    def record(self, value: Decision, ctx: Moment) -> Feedback:
        return Feedback(self.source, scalar=1.0 if value.accepted else 0.0, scale=(0.0, 1.0),
                        text="Accepted." if value.accepted else "Rejected.")


PROGRAMMER = Programmer()
INSTRUCTIONS = (
    "You decide whether the code editor shows each suggestion of an AI code assistant to a programmer. "
    "Checking a shown suggestion takes the programmer's time. Reply \"show\" or \"hide\"."
)


class SuggestionTimingEnv(FeedbackEnv):
    """Show or hide each code suggestion; acceptance is the feedback. See module docs."""

    roles = (PROGRAMMER,)
    names = {"editor": "Editor", "programmer": "Programmer", "assistant": "Assistant"}
    keep_rounds = HISTORY  # a round begins with each suggestion's editor line
    n_actions, n_features = len(ACTIONS), N_FEATURES

    def __init__(self, *, horizon: int = 30, verify_cost: float = 0.3, signal_noise: float = 0.15, **options: Any):
        super().__init__(**options)
        self.horizon = check_int("horizon", horizon, minimum=1)
        self.verify_cost = check_number("verify_cost", verify_cost, low=0.0)
        self.signal_noise = check_number("signal_noise", signal_noise, low=0.0)

    @property
    def session(self) -> Session | None:
        return self.task

    def current(self) -> Suggestion | None:
        """The suggestion waiting for the agent's choice (None once the session is over)."""
        t = self.turn
        return self.task.suggestions[t] if self.task is not None and t < self.horizon else None

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> Session:
        return make_session(rng, self.horizon, self.signal_noise)

    def opening(self) -> None:
        self.shown = self.accepted = self.bad_accepts = 0
        self.total_utility = 0.0
        self.since_shown = 0
        self.shown_log: list[bool] = []  # per suggestion
        self.accept_log: list[bool] = []  # per shown suggestion
        self._step_info = {"shown": False, "accepted": False, "invalid_action": False}
        self.transcript.say("system", INSTRUCTIONS, to={"assistant"})
        self.transcript.begin_round()
        self.transcript.say("editor", self.task.suggestions[0].editor_line(0, self.horizon))

    def respond(self, text: str) -> StepResult:
        t = self.turn - 1
        s = self.task.suggestions[t]
        show = read_choice(text)
        accepted = False
        cost = 0.0
        if show:
            decision = self.sim.ask(PROGRAMMER, Moment(s, self.task.states[t], self.task.draws[t])).value
            accepted = decision.accepted
            cost = self.verify_cost * s.effort
            self.transcript.say("programmer", "Accepted." if accepted else "Rejected.")
            self.shown += 1
            self.accepted += accepted
            self.bad_accepts += accepted and s.quality < BAD_QUALITY
            self.accept_log.append(accepted)
            self.since_shown = 0
        else:
            self.since_shown += 1
            if show is None:
                self.transcript.say("editor", "No reply read as show or hide: the suggestion timed out unseen.")
        self.shown_log.append(bool(show))
        utility = (s.quality if accepted else 0.0) - cost
        self.total_utility += utility
        self._step_info = {"shown": bool(show), "accepted": accepted, "invalid_action": show is None}
        done = self.turn >= self.horizon
        if done:
            self.transcript.say("editor", "The session is over.")
        else:
            self.transcript.begin_round()
            self.transcript.say("editor", self.task.suggestions[self.turn].editor_line(self.turn, self.horizon))
        truth = Truth(utility, best=max(0.0, s.quality - self.verify_cost * s.effort))
        return StepResult(float(accepted), truncated=done, truth=truth, info=self._outcomes() if done else {})

    def candidate_replies(self) -> Sequence[str]:
        return ACTIONS

    def features(self) -> np.ndarray:
        s = self.current()
        recent = self.accept_log[-RECENT:]
        shown = self.shown_log[-RECENT:]
        return np.array([
            0.0 if s is None else s.lines / MAX_LINES,
            0.0 if s is None else s.confidence,
            0.0 if s is None else float(s.tidy),
            min(self.since_shown / 10.0, 1.0),
            sum(recent) / len(recent) if recent else 0.5,
            sum(shown) / len(shown) if shown else 0.0,
            self.turn / self.horizon,
            float(bool(self.accept_log) and self.accept_log[-1]),
        ], dtype=np.float32)

    def extra_info(self) -> Mapping[str, Any]:
        return self._step_info

    # ----------------------------------------------------------------- helpers

    def _outcomes(self) -> dict[str, Any]:
        n = self.horizon
        return {
            "acceptance_rate": self.accepted / n,
            "shown_rate": self.shown / n,
            "accepted_per_shown": self.accepted / self.shown if self.shown else 0.0,
            "total_true_utility": self.total_utility,
            "bad_accepts": int(self.bad_accepts),
        }


# ---------------------------------------------------------------------- scripted policies
# (functions of what the agent sees: the current suggestion's confidence; the bench, the
# tests and `fbenv fidelity` play them in either view)

CONFIDENCE_THRESHOLD = 0.6


def show_everything(s: Suggestion) -> bool:
    """Acceptance-greedy: every suggestion might be accepted, so show it."""
    return True


def quality_aware(s: Suggestion) -> bool:
    """Show only what the model's confidence says is good."""
    return s.confidence >= CONFIDENCE_THRESHOLD


def never_show(s: Suggestion) -> bool:
    return False


POLICIES = {"show-everything": show_everything, "quality-aware": quality_aware, "never-show": never_show}


def play(policy):
    """A scripted show/hide rule as a policy factory: ``(env) -> (obs, info) -> action``, either view."""
    return scripted(lambda env: int(policy(env.current())))


def acceptance_vs_value(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The paper's direction: how far showing everything is accepted more yet worth less.

    ``min(acceptance gap, utility gap)`` per suggestion, with the acceptance gap =
    show-everything minus quality-aware mean reward and the utility gap = quality-aware
    minus show-everything mean true utility: > 0 when both hold.
    """

    def mean(policy: str, what: str) -> float:
        return float(np.mean([getattr(r, what) / max(r.turns, 1) for r in results[policy]]))

    accepted_more = mean("show-everything", "reward") - mean("quality-aware", "reward")
    worth_less = mean("quality-aware", "true_utility") - mean("show-everything", "true_utility")
    return min(accepted_more, worth_less)


def fidelity_probe() -> Probe:
    return Probe(
        policies={name: play(p) for name, p in POLICIES.items()},
        variants={"default": {}, "free_verification": {"verify_cost": 0.0}},
        direction=acceptance_vs_value,
        direction_doc=("min(show-everything minus quality-aware acceptance, quality-aware minus show-everything "
                       "true utility) per suggestion (> 0 when checking costs time; < 0 when it is free)"),
        expected_sign={"default": 1, "free_verification": -1},
    )


__all__ = [
    "ACTIONS", "FLOW", "PROGRAMMER", "POLICIES", "REVIEWING", "STATES", "STUCK", "Decision", "Moment", "Programmer",
    "Session", "Suggestion", "SuggestionTimingEnv", "acceptance_probability", "acceptance_vs_value", "fidelity_probe", "make_session",
    "play", "read_choice",
]
