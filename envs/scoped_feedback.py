"""ScopedFeedback: apply a user's standing feedback where it belongs, and nowhere else.

## Description

From *RLVF: Learning from Verbal Feedback without Overgeneralization* (C3PO, Stephan et
al.), *Do LLMs Recognize Your Preferences? Evaluating Personalized Preference Following in
LLMs* (PrefEval, Zhao et al.) and *ConstitutionMaker* (Petridis et al.). An episode is one
multi-turn session with a simulated user. At the start the user says one thing about how it
likes answers, tied to a scope: a rule (``use bullet points``, ``keep the tone formal``,
``add a friendly emoji or two``...) for one kind of request (``when you write my emails or
letters``, ``when I ask about my health or exercise``...). With ``reveal="explicit"`` it is
said outright, as feedback or a stated preference; with ``reveal="implicit"`` it is only
hinted at in an anecdote (PrefEval's two forms: ``My friend laughed at how stiff my last
message about my emails and letters sounded...``). Then ``distance`` filler exchanges
(small talk, answered) push the statement back, and ``horizon`` requests from the shared
bank (:mod:`fbenv.envs.responses`) follow, half of them inside the scope and half outside,
in a shuffled order.

The rule is checkable: it fixes one feature of a response that the bank's mechanical
reader (``read_features``) reads: its layout (list or prose), its tone (formal or casual)
or whether it carries emoji. Every request of a session is one where the rule makes a
difference: inside the scope, applying the rule departs from what the request would get
otherwise (a prose request, for ``use bullet points``); outside it, the request's own spec
wants the opposite, so applying the rule there is overgeneralization (C3PO's failure mode),
not a coincidence. Five rules and five scopes (a partition of the bank's context tags)
give 25 pairs, of which the 18 with such requests both inside and outside their scope are
drawn (uniformly, at ``reset``). A scope may hold only one or two such requests: each pool
is cycled in a fresh order, so a request can come back later in a long session.

## Observation

- ``interface="text"``: the instructions, the user's statement, the filler exchanges and,
  for each request so far, ``User: Request 3 of 8: Write a short note to my manager...``,
  the agent's answer and the user's reaction. The session is short enough to be kept whole
  (at most ``24`` requests and ``40`` filler exchanges): the statement stays in view.
- ``interface="discrete"``: ``Box(0, 1, (5 + 5 + 1 + 11 + 8 n_candidates + 2,))``: the gist
  of what the user said (its rule one-hot, its scope one-hot, 1 for an anecdote), the
  current request's context tag one-hot (what the request is about, as its text shows),
  eight features of each candidate response (coverage, length / 150 words, list, formal,
  enthusiasm, emoji, flattery, distractor), turns since the statement (/ 64) and the
  session's progress. Never whether a request falls in the scope: the agent must match the
  request to the scope it was told about, as a reader of the text must.

## Action

- ``text``: the answer itself, any string (up to 2,000 characters); it is read by the
  bank's mechanical reader. A blank answer is judged as it is and flagged
  ``info["invalid_action"]``.
- ``discrete``: ``Discrete(n_candidates)``, the candidate response to send. The candidates
  come in twins: ``n_candidates / 2`` drafts drawn by the bank's generator, each once with
  the rule applied and once without, in a shuffled order, so the twins differ in the rule's
  feature only and the drafts differ otherwise only as the bank's candidates do.

## Reward

The user's judgement of each answer: 1 when it handles the standing rule as the user
wanted it (applied inside the scope, not applied outside it), else 0.

## Feedback source

A ``user`` record at ``reset`` with the statement (``text``), then one per request with the
judgement (``scalar`` 1.0 / 0.0 and the reaction said, ``Thanks, that is how I like it.`` or
``Hmm, that is not how I wanted it.``). The reaction never restates the rule, so the
distance to the statement stays what ``distance`` made it.

## True utility

``info["true_utility"]``: ``0.5 content + 0.5 right``, with ``right`` 1 when the rule is
applied exactly inside the scope and ``content`` the bank's spec utility of the answer
(coverage, length, format, tone; inside the scope the rule's layout or tone replaces the
spec's). ``info["regret"]`` is the best candidate's minus it. Per step also
``info["in_scope"]`` (hidden: never in the observation), ``info["applied"]`` (the reader's
verdict on the answer), ``info["satisfied"]`` (the user's judgement), ``info["distance"]``
(exchanges since the statement), ``info["request_id"]`` and ``info["invalid_action"]``. At
the end of the episode (the task's outcomes): ``adherence`` (the share of in-scope answers
that apply the rule, read mechanically), ``overgeneralization`` (the share of out-of-scope
answers that apply it), ``judged_satisfaction`` (the mean reward), ``mean_utility``,
``in_scope_requests``, ``out_of_scope_requests``, ``adherence_by_distance`` (a tuple of
``(distance, 1.0 or 0.0)`` per in-scope request, in order) and ``invalid_actions``.

## Episode end

Never terminated. Truncated after ``horizon`` requests, or when an LLM simulator gives up
(``on_parse_error``) or its backend fails under ``on_backend_error="truncate"``, with
``info["feedback_error"]`` and no reward.

## Arguments

``reveal`` ("explicit" | "implicit": PrefEval's stated preference or an anecdote that
hints at it), ``distance`` (4: filler exchanges between the statement and the first
request, 0-40), ``horizon`` (8 requests, 2-24), ``n_candidates`` (4: an even number, 2-8),
plus the shared options (``fbenv info`` lists them). Roles, for ``simulator={...}``:
``statement`` (says the rule) and ``user`` (judges each answer).

## LLM simulator

The rule user says its statement with one of three phrasings (explicit) or two anecdotes
(implicit), drawn at ``reset``, and judges mechanically: the bank's reader reads the rule's
feature of the answer, and the user, who knows its own scope, is satisfied when the rule is
applied exactly when the request is in it.

The LLM user is told what it wants in words (``You want the assistant to use bullet points
whenever you ask about your health or exercise, and only then.``) and says it by choosing
among the same phrasings or anecdotes (scored choices); a server that replies freely says
it in its own words, which go into the transcript as they are. It judges each answer
through one belief question about the response (which of two statements it bears out:
``The response is a bulleted list.`` / ``The response is written as paragraphs.``;
``The response is written formally.`` / ``...casually.``; ``The response contains emoji.``
/ ``The response contains no emoji.``), calibrated against the same question about
``N/A`` as in ``fbenv.roles.belief``; the user's own knowledge of its scope turns the
calibrated probability that the rule was applied into the probability it is satisfied
(satisfied above one half). A reply that is neither statement is read as either statement
or yes/no; otherwise ``on_parse_error`` applies. The metrics (``adherence``,
``overgeneralization``) are always read mechanically; only the reward comes from the user.

``fbenv fidelity`` plays the always-apply, in-scope-only and ignore-the-rule policies with
the statement explicit and implicit. Its direction is ``min(in-scope-only minus
always-apply, in-scope-only minus ignore)`` reward per request, expected > 0 in both:
applying the feedback pays inside its scope and overgeneralizing it costs outside.

## Version history

- v0: initial release.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeResult, scripted
from fbenv.errors import InvalidArgumentError, check_choice, check_int
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.llm.base import Message
from fbenv.roles import Prompt, Questions, Reply, Role, belief
from fbenv.truth import StepResult, Truth

from fbenv.envs.responses import (
    BANK,
    BY_ID,
    N_VECTOR,
    Draft,
    Features,
    Request,
    draft_features,
    draw_draft,
    read_features,
    render,
    utility,
)

REVEALS = ("explicit", "implicit")
MAX_HORIZON = 24
MAX_DISTANCE = 40
MAX_CANDIDATES = 8
DISTANCE_NORM = 64.0  # turns-since-statement feature: distance / 64, capped at 1
W_CONTENT = 0.5  # true utility: 0.5 content + 0.5 right


# ---------------------------------------------------------------------- rules and scopes


@dataclass(frozen=True)
class Rule:
    """A checkable rule: a response applies it when its feature ``attr`` equals ``value``."""

    key: str
    attr: str  # a field of Draft and Features: "is_list" | "formal" | "emoji"
    value: bool
    do: str  # "use bullet points"
    pref: str  # "bullet points" (I prefer ...)
    anecdotes: tuple[str, str]  # hints, with {topic}
    holds: str  # the belief statement saying the feature is there
    fails: str  # ... and that it is not
    question: str

    def applied(self, f: Features) -> bool:
        return bool(getattr(f, self.attr)) == self.value

    def baseline(self, request: Request) -> bool | None:
        """The feature's value the request gets without the rule (None: the spec is silent)."""
        if self.attr == "is_list":
            return request.spec.format == "list"
        if self.attr == "formal":
            return request.spec.tone == "formal"
        return False  # emoji: a plain answer carries none

    def matters(self, request: Request) -> bool:
        """Applying the rule changes what the request would get otherwise."""
        return self.baseline(request) != self.value


_LAYOUT = ("How is the response laid out?", "The response is a bulleted list.", "The response is written as paragraphs.")
_TONE = ("How is the response written?", "The response is written formally.", "The response is written casually.")
_EMOJI = ("What does the response contain?", "The response contains emoji.", "The response contains no emoji.")

RULES: tuple[Rule, ...] = (
    Rule("list", "is_list", True, "use bullet points", "bullet points",
         ("The other day I asked you something about {topic} and got a wall of text; I ended up copying it into "
          "bullet points myself before I could follow it.",
          "Whenever I read anything about {topic}, I skip the long paragraphs and look for the short bulleted bits; "
          "those are the only parts I remember."), _LAYOUT[1], _LAYOUT[2], _LAYOUT[0]),
    Rule("prose", "is_list", False, "write in plain paragraphs, without bullet points", "plain paragraphs to bullet points",
         ("The notes on {topic} I got last week were all choppy bullet points, like a slide deck; I had to rewrite "
          "them as sentences to make sense of them.",
          "My favourite writing about {topic} reads like someone talking me through it in proper paragraphs, not a "
          "list of fragments."), _LAYOUT[1], _LAYOUT[2], _LAYOUT[0]),
    Rule("formal", "formal", True, "keep the tone formal", "a formal tone",
         ("A colleague read over my shoulder while I was dealing with {topic} and said the wording sounded far too "
          "chummy; I was embarrassed.",
          "For {topic} I always end up rewriting anything breezy into something proper and businesslike before I "
          "use it."), _TONE[1], _TONE[2], _TONE[0]),
    Rule("casual", "formal", False, "keep the tone casual and relaxed", "a casual, relaxed tone",
         ("My friend laughed at how stiff my last message about {topic} sounded, like a legal notice; that is not "
          "me at all.",
          "When it comes to {topic}, I like it when things sound like a friend chatting, not a textbook or a lawyer."),
         _TONE[1], _TONE[2], _TONE[0]),
    Rule("emoji", "emoji", True, "add a friendly emoji or two", "a friendly emoji or two",
         ("My sister says that anything I send about {topic} feels cold without a smiley; she is right, a little "
          "emoji makes it friendlier.",
          "I noticed that the things about {topic} I enjoy reading most always have a cheerful emoji or two in them."),
         _EMOJI[1], _EMOJI[2], _EMOJI[0]),
)


@dataclass(frozen=True)
class Scope:
    """A kind of request: a set of the bank's context tags, and how the user names it."""

    key: str
    contexts: frozenset[str]
    when: str  # "you write my emails or letters"
    topic: str  # "my emails and letters"


SCOPES: tuple[Scope, ...] = (
    Scope("mail", frozenset({"email", "writing"}), "you write my emails or letters", "my emails and letters"),
    Scope("home", frozenset({"cooking", "garden"}), "I ask about cooking or gardening", "cooking or gardening"),
    Scope("health", frozenset({"health", "fitness"}), "I ask about my health or exercise", "my health or exercise"),
    Scope("tech", frozenset({"code", "tech"}), "I ask about computers or code", "computers or code"),
    Scope("plans", frozenset({"finance", "study", "travel"}), "I ask about money, studying or travel",
          "money, studying or travel"),
)
CONTEXTS: tuple[str, ...] = tuple(sorted({r.spec.context for r in BANK}))

EXPLICIT = (
    "From now on, {do} whenever {when}.",
    "A note for the future: when {when}, please {do}. Everything else is fine as it is.",
    "I prefer {pref} when {when}.",
)


def phrasings(rule: Rule, scope: Scope, reveal: str) -> tuple[str, ...]:
    """What the user may say: the explicit phrasings or the anecdotes, for this rule and scope."""
    if reveal == "explicit":
        return tuple(t.format(do=rule.do, pref=rule.pref, when=scope.when) for t in EXPLICIT)
    return tuple(a.format(topic=scope.topic) for a in rule.anecdotes)


def in_scope(scope: Scope, request: Request) -> bool:
    return request.spec.context in scope.contexts


def pools(rule: Rule, scope: Scope) -> tuple[tuple[Request, ...], tuple[Request, ...]]:
    """The bank's requests where the rule matters, inside and outside the scope."""
    inside = tuple(r for r in BANK if rule.matters(r) and in_scope(scope, r))
    outside = tuple(r for r in BANK if rule.matters(r) and not in_scope(scope, r))
    return inside, outside


PAIRS: tuple[tuple[int, int], ...] = tuple(
    (i, j) for i, rule in enumerate(RULES) for j, scope in enumerate(SCOPES) if all(pools(rule, scope))
)

FILLERS = (
    ("What's a good name for a goldfish?", "Bubbles is a classic. Captain Fin, if it has attitude."),
    ("Is it going to rain this weekend, do you think?", "I cannot see a forecast, but a quick look at a weather app will tell you."),
    ("What's the capital of Australia?", "Canberra, not Sydney, which surprises a lot of people."),
    ("How many legs does a spider have?", "Eight, unlike insects, which have six."),
    ("Can you suggest a board game for four people?", "Ticket to Ride is easy to learn and plays well with four."),
    ("What does 'ubiquitous' mean?", "Found everywhere, or seeming to be."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci, in the early sixteenth century."),
    ("How long is a marathon?", "Just over forty-two kilometres, or about twenty-six miles."),
    ("What's a quick way to remember the planets?", "My Very Educated Mother Just Served Us Noodles."),
    ("Why is the sky blue?", "Air scatters blue sunlight more than red, so blue reaches your eyes from every direction."),
    ("What's the plural of 'cactus'?", "Cacti, though cactuses is accepted too."),
    ("How do you say thank you in Japanese?", "Arigatou, or arigatou gozaimasu to be more polite."),
)


# ---------------------------------------------------------------------- the hidden task


@dataclass(frozen=True)
class Turn:
    """One later request and its candidate responses."""

    request: str  # request id
    in_scope: bool
    candidates: tuple[Draft, ...]


@dataclass(frozen=True)
class Session:
    """The hidden task of an episode, drawn from ``reset(seed=...)`` alone."""

    rule: int  # index into RULES
    scope: int  # index into SCOPES
    reveal: str
    phrasing: int  # which phrasing the rule user says
    fillers: tuple[int, ...]  # indices into FILLERS
    turns: tuple[Turn, ...]


def twins(request: Request, rule: Rule, rng: np.random.Generator, n: int) -> tuple[Draft, ...]:
    """``n`` candidates: ``n / 2`` bank drafts, each with and without the rule, shuffled."""
    bases: list[Draft] = []
    for _ in range(50 * n):
        d = replace(draw_draft(request, rng), **{rule.attr: False})
        if d not in bases:
            bases.append(d)
        if len(bases) == n // 2:
            break
    while len(bases) < n // 2:  # a tiny bank could run dry: vary the fillers deterministically
        last = bases[-1]
        bases.append(replace(last, fillers=(last.fillers + 1) % (len(request.fillers) + 1)))
    out = [replace(d, **{rule.attr: v}) for d in bases for v in (True, False)]
    order = rng.permutation(len(out)).tolist()
    return tuple(out[i] for i in order)


def make_session(rng: np.random.Generator, *, reveal: str, distance: int, horizon: int, n_candidates: int) -> Session:
    ri, si = PAIRS[int(rng.integers(len(PAIRS)))]
    rule, scope = RULES[ri], SCOPES[si]
    phrasing = int(rng.integers(len(phrasings(rule, scope, reveal))))
    fillers = tuple(int(x) for x in rng.integers(len(FILLERS), size=distance))
    n_in = (horizon + 1) // 2
    flags = [True] * n_in + [False] * (horizon - n_in)
    flags = [flags[i] for i in rng.permutation(horizon).tolist()]
    inside, outside = pools(rule, scope)
    queues = {True: [], False: []}
    turns = []
    for flag in flags:
        pool = inside if flag else outside
        if not queues[flag]:  # each pool cycled in a fresh order before a request repeats
            queues[flag] = [pool[i] for i in rng.permutation(len(pool)).tolist()]
        req = queues[flag].pop()
        turns.append(Turn(req.id, flag, twins(req, rule, rng, n_candidates)))
    return Session(ri, si, reveal, phrasing, fillers, tuple(turns))


_WANTED: dict[tuple[int, Rule, bool], tuple[Request, Request]] = {}  # (id(request), rule, inside) -> wanted


def wanted(request: Request, rule: Rule, inside: bool) -> Request:
    """The request as the user wants it answered: inside the scope, the rule's layout or tone
    replaces the spec's (emoji: the spec is silent). Memoized (a pure function of immutable
    values, asked at every utility): the same object is returned for the same request."""
    key = (id(request), rule, inside)
    hit = _WANTED.get(key)
    if hit is not None and hit[0] is request:
        return hit[1]
    if len(_WANTED) >= 4096:
        _WANTED.clear()
    out = _wanted(request, rule, inside)
    _WANTED[key] = (request, out)
    return out


def _wanted(request: Request, rule: Rule, inside: bool) -> Request:
    if not inside or rule.attr == "emoji":
        return request
    if rule.attr == "is_list":
        spec = replace(request.spec, format="list" if rule.value else "prose")
    else:
        spec = replace(request.spec, tone="formal" if rule.value else "casual")
    return replace(request, spec=spec)


def true_utility(request: Request, rule: Rule, inside: bool, f: Features) -> float:
    right = rule.applied(f) == inside
    return W_CONTENT * utility(wanted(request, rule, inside), f) + (1.0 - W_CONTENT) * float(right)


# ---------------------------------------------------------------------- the people


@dataclass(frozen=True)
class Telling:
    """What the user knows when it states its rule."""

    rule: Rule
    scope: Scope
    reveal: str
    phrasing: int


class Statement(Role[Telling, str]):
    """Says the rule: a phrasing (rule), a scored choice among them or free words (LLM)."""

    key, name, source = "statement", "ScopedFeedback user (statement)", Source.USER

    def rule(self, ctx: Telling) -> str:
        return phrasings(ctx.rule, ctx.scope, ctx.reveal)[ctx.phrasing]

    def prompt(self, ctx: Telling) -> Prompt[str]:
        want = f"You want the assistant to {ctx.rule.do} whenever {you(ctx.scope.when)}, and only then."
        if ctx.reveal == "implicit":
            want += (" You never give instructions: you tell a short story from your life that hints at it.")
        choices = {p: p for p in phrasings(ctx.rule, ctx.scope, ctx.reveal)}
        return Prompt((Message("system", "You are a user of a chat assistant, about to tell it something about yourself."),
                       Message("user", f"{want}\n\nWhich message do you send?")),
                      choices=choices, parse=lambda t: t.strip().splitlines()[0].strip() if t.strip() else None,
                      max_tokens=60, stop=("\n",))

    def agreement(self, value: str) -> Any:
        return None  # a phrasing is style, not content: not compared

    def record(self, value: str, ctx: Telling) -> Feedback:
        return Feedback(self.source, text=value)


def you(when: str) -> str:
    """The scope as the user thinks of it (second person): "I ask about" -> "you ask about"."""
    return when.replace("you write my", "the assistant writes your").replace("I ask about my", "you ask about your") \
        .replace("I ask about", "you ask about")


@dataclass(frozen=True)
class Answered:
    """An answer in front of the user, who knows its rule and whether this request is in its scope."""

    request: Request
    text: str
    rule: Rule
    in_scope: bool


@dataclass(frozen=True)
class Judgement:
    satisfied: bool
    p_satisfied: float  # as this user sees it (0/1 for the rule user)


SATISFIED, UNSATISFIED = "Thanks, that is how I like it.", "Hmm, that is not how I wanted it."


class User(Role[Answered, Judgement]):
    """Judges an answer's handling of the rule (see the module docs, LLM simulator)."""

    key, name, source = "user", "ScopedFeedback user (judgement)", Source.USER

    def rule(self, ctx: Answered) -> Judgement:
        ok = ctx.rule.applied(read_features(ctx.request, ctx.text)) == ctx.in_scope
        return Judgement(ok, float(ok))

    def prompt(self, ctx: Answered) -> Questions[Judgement]:
        r = ctx.rule
        q = belief(f"Request: {ctx.request.text}\n\nResponse: {ctx.text}", r.question, holds=r.holds, fails=r.fails)

        def combine(replies: Sequence[Reply]) -> Judgement:
            present = float(replies[0].expected)  # the feature is there
            applied = present if r.value else 1.0 - present
            p = applied if ctx.in_scope else 1.0 - applied
            return Judgement(p > 0.5, p)

        return Questions((q,), combine)

    def agreement(self, value: Judgement) -> float:
        return float(value.p_satisfied)

    def record(self, value: Judgement, ctx: Answered) -> Feedback:
        return Feedback(self.source, scalar=1.0 if value.satisfied else 0.0, scale=(0.0, 1.0),
                        text=SATISFIED if value.satisfied else UNSATISFIED)


STATEMENT, USER = Statement(), User()
INSTRUCTIONS = ("You are a chat assistant in a long session with one user. Answer each of the user's requests. "
                "Remember what the user tells you about itself.")


# ---------------------------------------------------------------------- the env


@dataclass
class Tally:
    in_applied: list[bool] = field(default_factory=list)
    out_applied: list[bool] = field(default_factory=list)
    by_distance: list[tuple[int, float]] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    utilities: list[float] = field(default_factory=list)
    invalid: int = 0


class ScopedFeedbackEnv(FeedbackEnv):
    """Apply standing verbal feedback inside its scope only. See module docs."""

    roles = (STATEMENT, USER)
    names = {"user": "User", "assistant": "Assistant"}
    keep_rounds = MAX_HORIZON + 1  # the whole session: the statement must stay in view
    max_obs_chars = 65536
    n_actions = 4
    n_features = len(RULES) + len(SCOPES) + 1 + len(CONTEXTS) + 4 * N_VECTOR + 2

    def __init__(self, *, reveal: str = "explicit", distance: int = 4, horizon: int = 8, n_candidates: int = 4,
                 **options: Any):
        self.reveal = check_choice("reveal", reveal, REVEALS)
        self.distance = check_int("distance", distance, minimum=0, maximum=MAX_DISTANCE)
        self.horizon = check_int("horizon", horizon, minimum=2, maximum=MAX_HORIZON)
        self.n_candidates = check_int("n_candidates", n_candidates, minimum=2, maximum=MAX_CANDIDATES)
        if self.n_candidates % 2:
            raise InvalidArgumentError(f"n_candidates: expects an even number (twins), actual {n_candidates}")
        self.n_actions = self.n_candidates
        self.n_features = len(RULES) + len(SCOPES) + 1 + len(CONTEXTS) + self.n_candidates * N_VECTOR + 2
        super().__init__(**options)

    # ----------------------------------------------------------------- state

    @property
    def rule(self) -> Rule:
        return RULES[self.task.rule]

    @property
    def scope(self) -> Scope:
        return SCOPES[self.task.scope]

    def current(self) -> Turn | None:
        return self.task.turns[self.turn] if self.task is not None and self.turn < self.horizon else None

    def request_distance(self, k: int) -> int:
        """Exchanges between the statement and request ``k`` (0-based): the fillers, then the earlier requests."""
        return self.distance + k

    def candidate_texts(self, t: Turn | None = None) -> tuple[str, ...]:
        t = t or self.current() or self.task.turns[-1]
        return tuple(render(d) for d in t.candidates)

    def applies(self, t: Turn | None = None) -> tuple[bool, ...]:
        """Which candidates apply the rule (scripted policies and tests read it)."""
        t = t or self.current()
        return tuple(self.rule.applied(draft_features(d)) for d in t.candidates)

    def utilities(self, t: Turn | None = None) -> tuple[float, ...]:
        """The true utility of each candidate."""
        t = t or self.current()
        req = BY_ID[t.request]
        return tuple(true_utility(req, self.rule, t.in_scope, draft_features(d)) for d in t.candidates)

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> Session:
        return make_session(rng, reveal=self.reveal, distance=self.distance, horizon=self.horizon,
                            n_candidates=self.n_candidates)

    def opening(self) -> None:
        self.tally = Tally()
        self._step_info: dict[str, Any] = {}
        self.transcript.say("system", INSTRUCTIONS, to={"assistant"})
        s = self.task
        said = self.sim.ask(STATEMENT, Telling(self.rule, self.scope, s.reveal, s.phrasing)).value
        self.transcript.say("user", said)
        self.transcript.say("assistant", "Thanks for telling me.")
        for i in s.fillers:
            q, a = FILLERS[i]
            self.transcript.say("user", q)
            self.transcript.say("assistant", a)
        self._announce()

    def _announce(self) -> None:
        t = self.current()
        self.transcript.begin_round()
        self.transcript.say("user", f"Request {self.turn + 1} of {self.horizon}: {BY_ID[t.request].text}")

    def candidate_replies(self) -> Sequence[str]:
        return self.candidate_texts()

    def features(self) -> np.ndarray:
        x = np.zeros(self.n_features, dtype=np.float32)
        s = self.task
        x[s.rule] = 1.0
        x[len(RULES) + s.scope] = 1.0
        k = len(RULES) + len(SCOPES)
        x[k] = float(s.reveal == "implicit")
        k += 1
        t = self.current()
        if t is not None:
            req = BY_ID[t.request]
            x[k + CONTEXTS.index(req.spec.context)] = 1.0
            k += len(CONTEXTS)
            for j, d in enumerate(t.candidates):
                x[k + j * N_VECTOR: k + (j + 1) * N_VECTOR] = draft_features(d).vector(req)
        else:
            k += len(CONTEXTS)
        k += self.n_candidates * N_VECTOR
        x[k] = min(self.request_distance(min(self.turn, self.horizon - 1)) / DISTANCE_NORM, 1.0)
        x[k + 1] = self.turn / self.horizon
        return x

    def extra_info(self) -> Mapping[str, Any]:
        return self._step_info

    # ----------------------------------------------------------------- a step

    def respond(self, text: str) -> StepResult:
        k = self.turn - 1
        t = self.task.turns[k]
        req = BY_ID[t.request]
        rule = self.rule
        invalid = not text.strip()
        f = read_features(req, text)
        applied = rule.applied(f)
        judged = self.sim.ask(USER, Answered(req, text, rule, t.in_scope)).value
        reward = 1.0 if judged.satisfied else 0.0
        u = true_utility(req, rule, t.in_scope, f)
        best = max(self.utilities(t))
        d = self.request_distance(k)
        tl = self.tally
        (tl.in_applied if t.in_scope else tl.out_applied).append(applied)
        if t.in_scope:
            tl.by_distance.append((d, float(applied)))
        tl.rewards.append(reward)
        tl.utilities.append(u)
        tl.invalid += invalid
        self.transcript.say("user", SATISFIED if judged.satisfied else UNSATISFIED)
        self._step_info = {"in_scope": t.in_scope, "applied": applied, "satisfied": judged.satisfied,
                           "distance": d, "request_id": t.request, "invalid_action": invalid}
        done = self.turn >= self.horizon
        if not done:
            self._announce()
        return StepResult(reward, truncated=done, truth=Truth(u, best=best), info=self._outcomes() if done else {})

    def _outcomes(self) -> dict[str, Any]:
        tl = self.tally

        def share(xs: Sequence[bool]) -> float:
            return float(np.mean(xs)) if xs else 0.0

        return {
            "adherence": share(tl.in_applied),
            "overgeneralization": share(tl.out_applied),
            "judged_satisfaction": float(np.mean(tl.rewards)),
            "mean_utility": float(np.mean(tl.utilities)),
            "in_scope_requests": len(tl.in_applied),
            "out_of_scope_requests": len(tl.out_applied),
            "adherence_by_distance": tuple(tl.by_distance),
            "invalid_actions": tl.invalid,
        }


OUTCOMES = ("adherence", "overgeneralization", "judged_satisfaction", "mean_utility", "in_scope_requests",
            "out_of_scope_requests", "adherence_by_distance", "invalid_actions")


# ---------------------------------------------------------------------- scripted policies
# (each reads the task and names a candidate; the best-utility one of the class it wants)


def _best_where(env: ScopedFeedbackEnv, apply: bool) -> int:
    us, ap = env.utilities(), env.applies()
    idx = [i for i in range(env.n_candidates) if ap[i] == apply]
    return max(idx, key=lambda i: (us[i], -i))


def always_apply(env: ScopedFeedbackEnv) -> int:
    """Applies the rule to every request (C3PO's overgeneralizing model)."""
    return _best_where(env, True)


def in_scope_only(env: ScopedFeedbackEnv) -> int:
    """Applies the rule exactly inside its scope."""
    return _best_where(env, env.current().in_scope)


def ignore_rule(env: ScopedFeedbackEnv) -> int:
    """Never applies the rule (the feedback forgotten, or never heard)."""
    return _best_where(env, False)


def forgets_after(window: int) -> Callable[[ScopedFeedbackEnv], int]:
    """In-scope-only while the statement is within ``window`` exchanges, then it ignores the rule:
    a stand-in for a policy with a bounded memory (the bench's adherence-by-distance rows)."""

    def choose(env: ScopedFeedbackEnv) -> int:
        remembers = env.request_distance(env.turn) <= window
        return in_scope_only(env) if remembers else ignore_rule(env)

    return choose


POLICIES: dict[str, Callable[[ScopedFeedbackEnv], int]] = {
    "always-apply": always_apply, "in-scope-only": in_scope_only, "ignore": ignore_rule,
}


def play(name: "str | Callable[[ScopedFeedbackEnv], int]"):
    """A scripted policy (by name or a choose function) as a policy factory, either view."""
    return scripted(POLICIES[name] if isinstance(name, str) else name)


def scope_gain(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The direction: ``min(in-scope-only minus always-apply, in-scope-only minus ignore)`` reward per request."""

    def mean(policy: str) -> float:
        return float(np.mean([r.reward / max(r.turns, 1) for r in results[policy]]))

    scoped = mean("in-scope-only")
    return min(scoped - mean("always-apply"), scoped - mean("ignore"))


def fidelity_probe() -> Probe:
    return Probe(
        policies={name: play(name) for name in POLICIES},
        variants={"explicit": {}, "implicit": {"reveal": "implicit"}},
        direction=scope_gain,
        direction_doc=("min(in-scope-only minus always-apply, in-scope-only minus ignore-the-rule) reward per "
                       "request (> 0: the feedback pays inside its scope and costs outside it)"),
        expected_sign={"explicit": 1, "implicit": 1},
    )


__all__ = [
    "CONTEXTS", "FILLERS", "OUTCOMES", "PAIRS", "POLICIES", "REVEALS", "RULES", "SCOPES", "STATEMENT", "USER",
    "Answered", "Judgement", "Rule", "Scope", "ScopedFeedbackEnv", "Session", "Statement", "Telling", "Turn", "User",
    "always_apply", "fidelity_probe", "forgets_after", "ignore_rule", "in_scope", "in_scope_only", "make_session",
    "phrasings", "play", "pools", "scope_gain", "true_utility", "twins", "wanted",
]
