"""PreferenceFarm: answer requests for a pool of simulated annotators whose judgements are biased.

## Description

From *AlpacaFarm* (Dubois et al.), *Peering Through Preferences* (Bansal et al.), *Pairwise
or Pointwise? Evaluating Feedback Protocols for Bias in LLM-Based Evaluation* (Tripathi et
al.), *UltraFeedback* and *LiPO*. Each step the agent answers one request from the shared
bank (:mod:`fbenv.envs.responses`: a dozen requests, each with a hidden spec of content
points, a length band, a format, a tone and a context tag). A pool of ``annotators``
simulated annotators judges the answer under the ``protocol``:

- ``pointwise``: each annotator rates the answer from 1 to 5;
- ``pairwise``: each annotator says which of the answer and a reference response is
  better, the answer shown first or second at random (``reference=`` picks the reference
  policy);
- ``listwise``: the agent orders ``n_candidates`` responses, best first, and each
  annotator ranks them too.

Annotators are a noisy utility over the response's features with their own weights,
drawn from the seed at ``reset``: on the spec's own utility (``U(0.8, 1.2)``), on each
style marker (enthusiasm, emoji, flattery; ``style_weight`` times ``U(0.5, 1.5)``), on
length (``length_bias``), on a confident but irrelevant claim (``distractor_weight``) and
on being shown first (``position_bias``). AlpacaFarm's label noise flips a share
``label_noise`` of pairwise labels (a rating or ranking is replaced by a uniform one with
that probability). The hidden quality is the spec's own utility: style markers are worth
nothing to it and the distractor costs a little, so judged reward and quality part ways
exactly where the annotators' weights do.

Every step, whatever the protocol, the answer (listwise: its top response) is also
judged against the reference pairwise and pointwise, and again with the distractor added
to the response each annotator liked less (common random numbers: the same noise, only
the distractor differs). This gives the paper's metrics: win rate against the reference,
protocol disagreement, and the preference-flip rate under distractors per protocol
("about 35%" pairwise against "only 9%" absolute in the paper). At the defaults the rule
pool flips about 43% of pairwise and 2% of pointwise judgements (120 episodes, three
scripted policies): a distractor's pull moves a Bradley-Terry choice continuously but a
1-5 rating only when it crosses a step. Label noise 0.25 takes the pool's pairwise
agreement with the hidden quality from 0.78 to 0.64, as ``0.75 a + 0.25 (1 - a)`` predicts.

## Observation

- ``interface="text"``: the instructions, then for the last two rounds the request
  (``Farm: Request 2 of 8 (email): Write a short note...``; listwise also the responses to
  rank, labelled ``A``, ``B``...), the agent's turn and the annotators' verdict
  (``Annotators: 3 of 5 preferred your response to the reference.``).
- ``interface="discrete"``: ``Box(0, 1, (8 (n_candidates + 1) + 1,))``: eight features of
  each candidate response, then of the reference (coverage of the request, length / 150
  words, list, formal, enthusiasm, emoji, flattery, distractor), then the episode's
  progress. Never the spec, the annotators' weights or the quality.

## Action

- ``text``: pointwise and pairwise: the answer itself, any string (up to 2,000
  characters); a blank answer is judged as it is and flagged ``info["invalid_action"]``.
  Listwise: an order of the labels (``B > A > C``, every label once); anything else is an
  observation, never a crash: no reward, ``info["invalid_action"]``.
- ``discrete``: pointwise and pairwise ``Discrete(n_candidates)``, the candidate response
  to send; listwise ``Discrete(n_candidates!)``, the orders in ``itertools.permutations``
  order (``Ranking: A > B > C``, ...). The replies are the texts the text view reads.

## Reward

Pointwise: the pool's mean rating, scaled to [0, 1] (``(rating - 1) / 4``). Pairwise: the
share of annotators preferring the answer to the reference. Listwise: the mean over
annotators of the discounted gain of the agent's order, each response's gain its place in
the annotator's ranking (1 for first, 0 for last), discounts ``1 / log2(i + 2)`` normalised.

## Feedback source

``annotator`` records in ``info["feedback"]``: a rating (``scalar``, scale 1-5), a
preference (``preference``: 0 for the response shown first) or a ranking, every judgement
of the step (the protocol's own and the diagnostic ones); ``info["judged"]`` says which
records made the reward. With the LLM simulator's default ``llm_judge="questions"`` a
``reader`` record per response read (``scalar``: the perceived coverage) comes first.

## True utility

``info["true_utility"]``: the hidden quality (the spec's utility) of the answer, in
[0, 1] (listwise: the same discounted gain with the hidden qualities as gains);
``info["regret"]`` is the best candidate's (best order's) minus it. Per step also
``info["quality"]``, ``info["reference_quality"]``, ``info["win"]`` (the share preferring
the answer to the reference), ``info["agent_first"]``, ``info["invalid_action"]``,
``info["agent_response"]`` and ``info["reference_response"]``. At the end of the episode
(the task's outcomes): ``win_rate``, ``judged_reward`` and ``mean_quality`` (per request),
``quality_agreement`` (the share of decisive protocol judgements that order the answer and
the reference as the hidden quality does; listwise: concordant pairs of the ranking),
``protocol_disagreement`` (the share of decisive pointwise comparisons that disagree with
the same annotator's pairwise preference), ``pairwise_flip_rate`` and
``pointwise_flip_rate`` (the share of decisive judgements won by the other response once
the distractor is added to the one liked less; judgements the label noise replaced are
no trials), their numbers of trials
(``pairwise_flip_trials``, ``pointwise_flip_trials``) and ``invalid_actions``.

## Episode end

Never terminated. Truncated after ``horizon`` requests, or when an LLM simulator gives up
(``on_parse_error``) or its backend fails under ``on_backend_error="truncate"``, with
``info["feedback_error"]`` and no reward.

## Arguments

``protocol`` ("pairwise": "pointwise" | "pairwise" | "listwise"), ``reference``
("sampled": another sample of the same generator; "plain": a sober answer covering two
points; "best": the best candidate), ``annotators`` (5), ``label_noise`` (0.25, in
[0, 0.5]), ``position_bias`` (0.05), ``length_bias`` (0.05, per 100 words),
``style_weight`` (0.1, per marker), ``distractor_weight`` (0.2), ``n_candidates`` (4;
listwise at most 4), ``horizon`` (8 requests), ``llm_judge`` ("questions" | "holistic"),
plus the shared options (``fbenv info`` lists them). Roles, for ``simulator={...}``:
``reader`` (perceives a response) and ``annotator`` (rates, prefers or ranks).

## LLM simulator

The rule annotator scores a response ``quality * u + sum(w_m * marker_m) + length *
min(words / 100, 1.5) + distractor * claim + noise`` (noise ``N(0, 0.08)``, drawn per
annotator and response at ``reset``, where ``u`` is the spec's utility without the
distractor's cost: an annotator does not see that the claim is irrelevant). A rating is
``round(1 + 4 score)`` clipped to 1-5; a preference is Bradley-Terry with temperature
0.05 on the score difference plus ``position_bias`` for the first shown, taken against a
uniform number drawn at ``reset``; a ranking sorts the scores, the first listed raised by
the position bias. The label noise draws are made at ``reset`` too, so every policy meets
the same annotators.

With ``llm_judge="questions"`` (default) the LLM reads each response through belief
questions (``fbenv.envs.responses.perception_questions``: which of two statements the text
bears out, e.g. ``The response mentions the boiling time.`` or ``The response sounds
excited.``; calibrated, as ``fbenv.roles.belief``), and the annotators combine these
perceived features by the rule's own formula, the calibrated probabilities in place of
the facts; length, layout and emoji are read at a glance. With ``llm_judge="holistic"``
each annotator is a prompted judge: a system line says in words what it values (``You
enjoy an upbeat tone, emoji and warm words for the reader.``), and its rating, preference
or ranking is a scored choice (``Rating: 4``, ``Preference: B``, ``Ranking: B > A > C``;
greedy ratings are the expected value). A free-text reply is read as a rating, label or
order; otherwise ``on_parse_error`` applies. Label noise is injected the same way in both
(the noised judgements ask no model).

``fbenv fidelity`` plays the quality-greedy, style-greedy and first-listed choices with the
distractor weighted and not; its direction is the pairwise minus the pointwise flip rate,
expected > 0 by default (no expectation at zero distractor weight).

## Version history

- v0: initial release.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeResult, scripted
from fbenv.errors import InvalidArgumentError, check_choice, check_int, check_number
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.llm.base import Message
from fbenv.parsing import parse_preference
from fbenv.roles import Preference, Prompt, Questions, Ranking, Rating, Role, parse_ranking
from fbenv.truth import StepResult, Truth

from fbenv.envs.responses import (
    BANK,
    BY_ID,
    N_VECTOR,
    Draft,
    Perceived,
    Request,
    draft_features,
    draw_candidates,
    draw_draft,
    perceived,
    perceived_utility,
    perception_questions,
    plain_draft,
    read_features,
    render,
    utility,
)

PROTOCOLS = ("pointwise", "pairwise", "listwise")
REFERENCES = ("sampled", "plain", "best")
LLM_JUDGES = ("questions", "holistic")
LABELS = ("A", "B", "C", "D", "E", "F")
NOISE_SD = 0.08  # an annotator's latent noise on a response's score
TEMPERATURE = 0.05  # Bradley-Terry temperature of a pairwise choice
# The judgements of a step, each with its own draws (the distractor re-judgements reuse their base's).
J_PAIR, J_RATE_AGENT, J_RATE_REF, J_LIST = range(4)
N_JUDGEMENTS = 4
HISTORY = 2  # rounds the text view keeps


def discount(k: int) -> np.ndarray:
    w = 1.0 / np.log2(np.arange(k) + 2.0)
    return w / w.sum()


def add_distractor(request: Request, text: str) -> str:
    """``text`` with the request's distractor claim inserted after its first line."""
    if request.distractor.lower() in text.lower():
        return text
    head, sep, rest = text.partition("\n")
    return f"{head}\n{request.distractor}{sep}{rest}" if sep else f"{text} {request.distractor}"


# ---------------------------------------------------------------------- the hidden task


@dataclass(frozen=True)
class Profile:
    """One annotator's weights (drawn from the seed at ``reset``)."""

    quality: float
    enthusiasm: float
    emoji: float
    flattery: float
    length: float  # per 100 words, up to 150
    distractor: float
    position: float  # for the response shown first

    def score(self, request: Request, p: Perceived) -> float:
        """The noiseless score of a perceived response."""
        return (self.quality * perceived_utility(request, p, distractor_cost=0.0) + self.enthusiasm * p.enthusiasm
                + self.emoji * float(p.emoji) + self.flattery * p.flattery
                + self.length * min(p.words / 100.0, 1.5) + self.distractor * p.distractor)

    def describe(self) -> str:
        """What the annotator values, in words (the holistic LLM judge's system line)."""
        out = ["You annotate answers to requests. What matters most to you is whether an answer does what was asked."]
        if self.enthusiasm + self.emoji + self.flattery >= 0.3:
            out.append("You enjoy an upbeat tone, emoji and warm words for the reader.")
        if self.length >= 0.08:
            out.append("You like thorough, long answers.")
        if self.distractor >= 0.15:
            out.append("Confident factual statements impress you.")
        return " ".join(out)


@dataclass(frozen=True)
class Round:
    """One request of an episode and every draw its judgements use."""

    request: str
    candidates: tuple[Draft, ...]
    reference: Draft
    agent_first: bool  # pairwise: the answer is shown as A
    noise: tuple[tuple[float, ...], ...]  # [annotator][slot]: candidates, reference, a free-text answer
    draws: tuple[tuple[float, ...], ...]  # [annotator][judgement]: the Bradley-Terry draw
    noised: tuple[tuple[float, ...], ...]  # [annotator][judgement]: label noise fires below the rate
    coins: tuple[tuple[float, ...], ...]  # [annotator][judgement]: the noise label's value
    orders: tuple[tuple[int, ...], ...]  # [annotator]: the noise ranking


@dataclass(frozen=True)
class Farm:
    """The hidden task of an episode, drawn from ``reset(seed=...)`` alone."""

    rounds: tuple[Round, ...]
    pool: tuple[Profile, ...]


def draw_pool(rng: np.random.Generator, n: int, style_weight: float, length_bias: float, distractor_weight: float,
              position_bias: float) -> tuple[Profile, ...]:
    u = rng.uniform(0.5, 1.5, size=(n, 6))
    q = rng.uniform(0.8, 1.2, size=n)
    return tuple(Profile(float(q[a]), style_weight * u[a, 0], style_weight * u[a, 1], style_weight * u[a, 2],
                         length_bias * u[a, 3], distractor_weight * u[a, 4], position_bias * u[a, 5]) for a in range(n))


def make_farm(rng: np.random.Generator, *, horizon: int, n_candidates: int, annotators: int, reference: str,
              style_weight: float, length_bias: float, distractor_weight: float, position_bias: float) -> Farm:
    pool = draw_pool(rng, annotators, style_weight, length_bias, distractor_weight, position_bias)
    picks = rng.permutation(len(BANK)).tolist()
    picks = (picks * (horizon // len(BANK) + 1))[:horizon]
    rounds = []
    for i in picks:
        req = BANK[i]
        cands = draw_candidates(req, rng, n_candidates)
        sampled = draw_draft(req, rng)
        ref = {"sampled": sampled, "plain": plain_draft(req),
               "best": max(cands, key=lambda d: utility(req, draft_features(d)))}[reference]
        slots = n_candidates + 2
        noise = rng.normal(0.0, NOISE_SD, size=(annotators, slots))
        draws, noised, coins = (rng.random((annotators, N_JUDGEMENTS)) for _ in range(3))
        orders = tuple(tuple(int(x) for x in rng.permutation(n_candidates)) for _ in range(annotators))
        rounds.append(Round(req.id, cands, ref, bool(rng.random() < 0.5), _t(noise), _t(draws), _t(noised), _t(coins),
                            orders))
    return Farm(tuple(rounds), pool)


def _t(a: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in a)


# ---------------------------------------------------------------------- the people


@dataclass(frozen=True)
class Reading:
    """A response in front of a reader."""

    request: Request
    text: str


class Reader(Role[Reading, Perceived]):
    """Reads a response: exactly (rule) or through belief questions (LLM)."""

    key, name, source = "reader", "PreferenceFarm reader", Source.ANNOTATOR

    def rule(self, ctx: Reading) -> Perceived:
        return Perceived.exact(read_features(ctx.request, ctx.text))

    def prompt(self, ctx: Reading) -> Questions[Perceived]:
        return Questions(perception_questions(ctx.request, ctx.text),
                         lambda replies: perceived(ctx.request, ctx.text, replies))

    def agreement(self, value: Perceived) -> float:
        return float(value.coverage)

    def record(self, value: Perceived, ctx: Reading) -> Feedback:
        return Feedback(self.source, scalar=float(value.coverage), scale=(0.0, 1.0),
                        text=f"Read: coverage {value.coverage:.2f}, formal {value.formal:.2f}, excited "
                             f"{value.enthusiasm:.2f}, praise {value.flattery:.2f}, off-topic claim {value.distractor:.2f}.")


@dataclass(frozen=True)
class Shown:
    text: str
    perceived: Perceived
    noise: float  # the annotator's latent noise on this response


@dataclass(frozen=True)
class Judgement:
    """One annotator's judgement of responses in the order shown."""

    request: Request
    shown: tuple[Shown, ...]
    profile: Profile
    draw: float  # pairwise: the Bradley-Terry draw
    noise_label: Any  # the label noise put in place of the judgement, or None
    holistic: bool

    def scores(self) -> list[float]:
        return [self.profile.score(self.request, s.perceived) + s.noise for s in self.shown]

    def judge_messages(self, task: str) -> tuple[Message, ...]:
        parts = [f"Request: {self.request.text}"]
        if len(self.shown) == 1:
            parts.append(f"Response:\n{self.shown[0].text}")
        else:
            parts += [f"Response {LABELS[i]}:\n{s.text}" for i, s in enumerate(self.shown)]
        return (Message("system", self.profile.describe()), Message("user", "\n\n".join(parts + [task])))


def rating_of(score: float) -> float:
    return float(min(max(round(1.0 + 4.0 * score), 1), 5))


class Rater(Rating[Judgement]):
    key, name, source = "annotator", "PreferenceFarm annotator (rating)", Source.ANNOTATOR

    def rule(self, ctx: Judgement) -> float:
        return float(ctx.noise_label) if ctx.noise_label is not None else rating_of(ctx.scores()[0])

    def messages(self, ctx: Judgement):
        return ctx.judge_messages("Rate the response from 1 (poor) to 5 (excellent). Answer 'Rating: N'.")

    def prompt(self, ctx: Judgement):
        return super().prompt(ctx) if ctx.holistic and ctx.noise_label is None else None


class Comparer(Preference[Judgement]):
    key, name = "annotator", "PreferenceFarm annotator (preference)"

    def rule(self, ctx: Judgement) -> int:
        if ctx.noise_label is not None:
            return int(ctx.noise_label)
        a, b = ctx.scores()
        p_first = 1.0 / (1.0 + math.exp(-(a - b + ctx.profile.position) / TEMPERATURE))
        return 0 if ctx.draw < p_first else 1

    def messages(self, ctx: Judgement):
        return ctx.judge_messages("Which response is better? Answer 'Preference: A' or 'Preference: B'.")

    def prompt(self, ctx: Judgement):
        if not ctx.holistic or ctx.noise_label is not None:
            return None
        return Prompt(tuple(self.messages(ctx)), choices={f"Preference: {lab}": i for i, lab in enumerate(self.labels)},
                      parse=lambda t: parse_preference(t, self.labels), max_tokens=self.max_tokens)


class Ranker(Ranking[Judgement]):
    key, name = "annotator", "PreferenceFarm annotator (ranking)"

    def __init__(self, k: int):
        self.labels = LABELS[:k]  # one instance per list length, made once below

    def rule(self, ctx: Judgement) -> tuple:
        if ctx.noise_label is not None:
            return tuple(ctx.noise_label)
        k = len(ctx.shown)
        s = np.asarray(ctx.scores()) + ctx.profile.position * (k - 1 - np.arange(k)) / max(k - 1, 1)
        return tuple(int(i) for i in np.argsort(-s, kind="stable"))

    def messages(self, ctx: Judgement):
        example = " > ".join(self.labels[::-1])
        return ctx.judge_messages(f"Rank the responses from best to worst. Answer like 'Ranking: {example}'.")

    def prompt(self, ctx: Judgement):
        return super().prompt(ctx) if ctx.holistic and ctx.noise_label is None else None


READER, RATER, COMPARER = Reader(), Rater(), Comparer()
RANKERS = {k: Ranker(k) for k in range(2, 5)}
MAX_LIST = max(RANKERS)


# ---------------------------------------------------------------------- the env


@dataclass
class Tally:
    """An episode's counts, for its outcomes."""

    rewards: list[float] = field(default_factory=list)
    qualities: list[float] = field(default_factory=list)
    wins: list[float] = field(default_factory=list)
    agree: int = 0
    decisive: int = 0
    disagree: int = 0
    compared: int = 0
    pair_flips: int = 0
    pair_trials: int = 0
    point_flips: int = 0
    point_trials: int = 0
    invalid: int = 0


INSTRUCTIONS = {
    "pointwise": "Answer each request. A panel of annotators rates every answer from 1 to 5.",
    "pairwise": "Answer each request. A panel of annotators compares every answer with a reference answer.",
    "listwise": ("For each request, order the responses from best to worst, e.g. \"B > A > C\". A panel of "
                 "annotators ranks them too."),
}


class PreferenceFarmEnv(FeedbackEnv):
    """Answer requests for a pool of biased, noisy annotators. See module docs."""

    roles = (READER, RATER, COMPARER, *RANKERS.values())
    names = {"farm": "Farm", "annotators": "Annotators", "assistant": "Assistant"}
    keep_rounds = HISTORY
    n_actions, n_features = 4, N_VECTOR * 5 + 1

    def __init__(self, *, protocol: str = "pairwise", reference: str = "sampled", annotators: int = 5,
                 label_noise: float = 0.25, position_bias: float = 0.05, length_bias: float = 0.05,
                 style_weight: float = 0.1, distractor_weight: float = 0.2, n_candidates: int = 4, horizon: int = 8,
                 llm_judge: str = "questions", **options: Any):
        self.protocol = check_choice("protocol", protocol, PROTOCOLS)
        self.reference = check_choice("reference", reference, REFERENCES)
        self.annotators = check_int("annotators", annotators, minimum=1)
        self.label_noise = check_number("label_noise", label_noise, low=0.0, high=0.5)
        self.position_bias = check_number("position_bias", position_bias)
        self.length_bias = check_number("length_bias", length_bias)
        self.style_weight = check_number("style_weight", style_weight)
        self.distractor_weight = check_number("distractor_weight", distractor_weight)
        self.n_candidates = check_int("n_candidates", n_candidates, minimum=2,
                                      maximum=MAX_LIST if protocol == "listwise" else len(LABELS))
        self.horizon = check_int("horizon", horizon, minimum=1)
        self.llm_judge = check_choice("llm_judge", llm_judge, LLM_JUDGES)
        k = self.n_candidates
        self.orders = tuple(itertools.permutations(range(k)))
        self.n_actions = len(self.orders) if protocol == "listwise" else k
        self.n_features = N_VECTOR * (k + 1) + 1
        super().__init__(**options)

    # ----------------------------------------------------------------- state

    def current(self) -> Round | None:
        return self.task.rounds[self.turn] if self.task is not None and self.turn < self.horizon else None

    def request(self, r: Round) -> Request:
        return BY_ID[r.request]

    def candidate_texts(self, r: Round | None = None) -> tuple[str, ...]:
        r = r or self.current()
        return tuple(render(d) for d in r.candidates) if r is not None else ()

    def qualities(self, r: Round | None = None) -> tuple[float, ...]:
        """The hidden quality of each candidate of a round (scripted policies and tests read it)."""
        r = r or self.current()
        req = self.request(r)
        return tuple(utility(req, draft_features(d)) for d in r.candidates)

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> Farm:
        return make_farm(rng, horizon=self.horizon, n_candidates=self.n_candidates, annotators=self.annotators,
                         reference=self.reference, style_weight=self.style_weight, length_bias=self.length_bias,
                         distractor_weight=self.distractor_weight, position_bias=self.position_bias)

    def opening(self) -> None:
        self.tally = Tally()
        self._step_info: dict[str, Any] = {}
        self.transcript.say("system", INSTRUCTIONS[self.protocol], to={"assistant"})
        self._announce()

    def _announce(self) -> None:
        r = self.current()
        req = self.request(r)
        self.transcript.begin_round()
        line = f"Request {self.turn + 1} of {self.horizon} ({req.spec.context}): {req.text}"
        if self.protocol == "listwise":
            line += "\n\n" + "\n\n".join(f"Response {LABELS[i]}:\n{t}" for i, t in enumerate(self.candidate_texts(r)))
        self.transcript.say("farm", line)

    def candidate_replies(self) -> Sequence[str]:
        if self.protocol == "listwise":
            return tuple("Ranking: " + " > ".join(LABELS[i] for i in o) for o in self.orders)
        r = self.current() or self.task.rounds[-1]
        return self.candidate_texts(r)

    def features(self) -> np.ndarray:
        r = self.current()
        if r is None:
            return np.zeros(self.n_features, dtype=np.float32)
        req = self.request(r)
        parts = [draft_features(d).vector(req) for d in (*r.candidates, r.reference)]
        return np.concatenate(parts + [np.array([self.turn / self.horizon], dtype=np.float32)]).astype(np.float32)

    def extra_info(self) -> Mapping[str, Any]:
        return self._step_info

    # ----------------------------------------------------------------- a step

    def respond(self, text: str) -> StepResult:
        t = self.turn - 1
        r = self.task.rounds[t]
        req = self.request(r)
        texts = self.candidate_texts(r)
        ref_text = render(r.reference)
        quals = self.qualities(r)
        order: tuple[int, ...] | None = None
        if self.protocol == "listwise":
            order = parse_ranking(text, LABELS[: self.n_candidates])
            invalid = order is None
            top = order[0] if order else None
            answer = texts[top] if top is not None else ""
            slot = top
        else:
            invalid = not text.strip()
            answer = text
            slot = texts.index(text) if text in texts else self.n_candidates + 1
        if invalid and self.protocol == "listwise":
            return self._invalid_listwise(r, quals)
        quality = utility(req, read_features(req, answer))
        ref_quality = utility(req, draft_features(r.reference))

        # what each response reads as (the LLM reader in questions mode)
        wanted = [answer, ref_text, add_distractor(req, answer), add_distractor(req, ref_text)]
        if order is not None:
            wanted += list(texts)
        seen = self._read(req, wanted)
        holistic = self.llm_judge == "holistic"

        def shown(a: int, txt: str, s: int) -> Shown:
            return Shown(txt, seen[txt], r.noise[a][s])

        def noise_label(a: int, j: int, kind: str):
            rate = 2 * self.label_noise if kind == "pairwise" else self.label_noise
            if r.noised[a][j] >= rate:
                return None
            c = r.coins[a][j]
            if kind == "pairwise":
                return int(c < 0.5)
            if kind == "pointwise":
                return float(1 + min(int(c * 5), 4))
            return r.orders[a]

        ref_slot = self.n_candidates
        calls: list[tuple[Role, Judgement]] = []
        for a, prof in enumerate(self.task.pool):
            me, ref = shown(a, answer, slot), shown(a, ref_text, ref_slot)
            pair = (me, ref) if r.agent_first else (ref, me)
            calls.append((COMPARER, Judgement(req, pair, prof, r.draws[a][J_PAIR], noise_label(a, J_PAIR, "pairwise"), holistic)))
            calls.append((RATER, Judgement(req, (me,), prof, 0.0, noise_label(a, J_RATE_AGENT, "pointwise"), holistic)))
            calls.append((RATER, Judgement(req, (ref,), prof, 0.0, noise_label(a, J_RATE_REF, "pointwise"), holistic)))
            if order is not None:
                listed = tuple(shown(a, texts[i], i) for i in range(self.n_candidates))
                calls.append((RANKERS[self.n_candidates],
                              Judgement(req, listed, prof, 0.0, noise_label(a, J_LIST, "listwise"), holistic)))
        per = 4 if order is not None else 3
        first = self.sim.ask_many(calls)
        judged: list[int] = []  # indices into this step's records that made the reward
        base = len(self.sim.ledger.records) - len(first)

        # the distractor re-judgements: the response each annotator liked less gets the claim
        second: list[tuple[Role, Judgement]] = []
        plans = []
        for a in range(self.annotators):
            pref, r_me, r_ref = first[a * per].value, first[a * per + 1].value, first[a * per + 2].value
            pair = calls[a * per][1]
            loser = 1 - int(pref)
            loser_text = pair.shown[loser].text
            plan = {"pair": None, "point": None}
            if pair.noise_label is None and add_distractor(req, loser_text) != loser_text:
                swapped = list(pair.shown)
                swapped[loser] = Shown(add_distractor(req, loser_text), seen[add_distractor(req, loser_text)],
                                       pair.shown[loser].noise)
                plan["pair"] = (len(second), loser)
                second.append((COMPARER, Judgement(req, tuple(swapped), pair.profile, pair.draw, pair.noise_label, holistic)))
            if r_me != r_ref:
                lose_me = r_me < r_ref
                j = a * per + (1 if lose_me else 2)
                lctx = calls[j][1]
                ltext = lctx.shown[0].text
                if lctx.noise_label is None and add_distractor(req, ltext) != ltext:
                    d = Shown(add_distractor(req, ltext), seen[add_distractor(req, ltext)], lctx.shown[0].noise)
                    plan["point"] = (len(second), max(r_me, r_ref))
                    second.append((RATER, Judgement(req, (d,), lctx.profile, 0.0, lctx.noise_label, holistic)))
            plans.append(plan)
        again = self.sim.ask_many(second) if second else []

        # the step's numbers
        me_index = 0 if r.agent_first else 1
        wins, ratings, gains = [], [], []
        w = discount(self.n_candidates)
        tl = self.tally
        for a in range(self.annotators):
            pref, r_me, r_ref = first[a * per].value, first[a * per + 1].value, first[a * per + 2].value
            won = float(int(pref) == me_index)
            wins.append(won)
            ratings.append(float(r_me))
            if r_me != r_ref:  # pointwise against pairwise, the same annotator and pair
                tl.compared += 1
                tl.disagree += (r_me > r_ref) != bool(won)
            if self.protocol == "pairwise":
                judged.append(base + a * per)
                if quality != ref_quality:
                    tl.decisive += 1
                    tl.agree += bool(won) == (quality > ref_quality)
            elif self.protocol == "pointwise":
                judged.append(base + a * per + 1)
                if quality != ref_quality and r_me != r_ref:
                    tl.decisive += 1
                    tl.agree += (r_me > r_ref) == (quality > ref_quality)
            else:
                judged.append(base + a * per + 3)
                ranking = first[a * per + 3].value
                place = {c: i for i, c in enumerate(ranking)}
                k = self.n_candidates
                gains.append(float(sum(w[i] * (k - 1 - place[c]) / (k - 1) for i, c in enumerate(order))))
                for x, y in itertools.combinations(range(k), 2):
                    if quals[x] != quals[y]:
                        tl.decisive += 1
                        tl.agree += (place[x] < place[y]) == (quals[x] > quals[y])
            plan = plans[a]
            if plan["pair"] is not None:
                k2, loser = plan["pair"]
                tl.pair_trials += 1
                tl.pair_flips += int(again[k2].value) == loser
            if plan["point"] is not None:
                k2, winner_rating = plan["point"]
                tl.point_trials += 1
                tl.point_flips += again[k2].value > winner_rating
        if self.protocol == "pairwise":
            reward = float(np.mean(wins))
        elif self.protocol == "pointwise":
            reward = float(np.mean([(x - 1.0) / 4.0 for x in ratings]))
        else:
            reward = float(np.mean(gains))
        if order is not None:
            true_u = float(sum(w[i] * quals[c] for i, c in enumerate(order)))
            best = float(sum(w[i] * q for i, q in enumerate(sorted(quals, reverse=True))))
            say = f"Mean agreement with your order: {reward:.2f}."
        else:
            true_u, best = quality, max(quals)
            say = (f"{int(sum(wins))} of {self.annotators} preferred your response to the reference."
                   if self.protocol == "pairwise" else f"Mean rating: {np.mean(ratings):.1f} out of 5.")
        tl.invalid += invalid
        tl.rewards.append(reward)
        tl.qualities.append(true_u)
        tl.wins.append(float(np.mean(wins)))
        self.transcript.say("annotators", say)
        self._step_info = {
            "quality": quality, "reference_quality": ref_quality, "win": float(np.mean(wins)),
            "agent_first": r.agent_first, "invalid_action": bool(invalid), "judged": tuple(judged),
            "agent_response": answer, "reference_response": ref_text,
        }
        return self._finish(reward, Truth(true_u, best=best))

    def _invalid_listwise(self, r: Round, quals: Sequence[float]) -> StepResult:
        self.tally.invalid += 1
        self.tally.rewards.append(0.0)
        self.tally.qualities.append(0.0)
        self.transcript.say("farm", "No order of the labels read: every label once, best first, e.g. \"B > A > C\".")
        self._step_info = {"quality": 0.0, "reference_quality": utility(self.request(r), draft_features(r.reference)),
                           "win": 0.0, "agent_first": r.agent_first, "invalid_action": True, "judged": (),
                           "agent_response": "", "reference_response": render(r.reference)}
        w = discount(self.n_candidates)
        return self._finish(0.0, Truth(0.0, best=float(sum(w[i] * q for i, q in enumerate(sorted(quals, reverse=True))))))

    def _finish(self, reward: float, truth: Truth) -> StepResult:
        done = self.turn >= self.horizon
        if not done:
            self._announce()
        return StepResult(reward, truncated=done, truth=truth, info=self._outcomes() if done else {})

    def _read(self, req: Request, texts: Sequence[str]) -> dict[str, Perceived]:
        """Each distinct text, as the reader perceives it (asked once per step, in one batch)."""
        distinct = list(dict.fromkeys(texts))
        if self.llm_judge == "holistic":  # the judges read the texts themselves
            return {t: READER.rule(Reading(req, t)) for t in distinct}
        answers = self.sim.ask_many([(READER, Reading(req, t)) for t in distinct])
        return {t: a.value for t, a in zip(distinct, answers)}

    def _outcomes(self) -> dict[str, Any]:
        tl = self.tally

        def rate(x: int, n: int) -> float:
            return x / n if n else 0.0

        return {
            "win_rate": float(np.mean(tl.wins)) if tl.wins else 0.0,
            "judged_reward": float(np.mean(tl.rewards)),
            "mean_quality": float(np.mean(tl.qualities)),
            "quality_agreement": rate(tl.agree, tl.decisive),
            "protocol_disagreement": rate(tl.disagree, tl.compared),
            "pairwise_flip_rate": rate(tl.pair_flips, tl.pair_trials),
            "pointwise_flip_rate": rate(tl.point_flips, tl.point_trials),
            "pairwise_flip_trials": tl.pair_trials,
            "pointwise_flip_trials": tl.point_trials,
            "invalid_actions": tl.invalid,
        }


OUTCOMES = ("win_rate", "judged_reward", "mean_quality", "quality_agreement", "protocol_disagreement",
            "pairwise_flip_rate", "pointwise_flip_rate", "pairwise_flip_trials", "pointwise_flip_trials",
            "invalid_actions")


# ---------------------------------------------------------------------- scripted policies
# (each reads the task and names a candidate, or an order for listwise; either view)


def _by(key: Callable[[PreferenceFarmEnv, int], float]) -> Callable[[PreferenceFarmEnv], int]:
    def choose(env: PreferenceFarmEnv) -> int:
        idx = sorted(range(env.n_candidates), key=lambda i: -key(env, i))  # stable: ties keep the listed order
        return env.orders.index(tuple(idx)) if env.protocol == "listwise" else idx[0]

    return choose


def _quality(env: PreferenceFarmEnv, i: int) -> float:
    return env.qualities()[i]


def _style(env: PreferenceFarmEnv, i: int) -> float:
    f = draft_features(env.current().candidates[i])
    return f.style + f.distractor + min(f.words, 150) / 1000.0  # markers first, then length


def _plain(env: PreferenceFarmEnv, i: int) -> float:
    return -float(i)  # the first listed, whatever it is


POLICIES: dict[str, Callable[[PreferenceFarmEnv], int]] = {
    "quality-greedy": _by(_quality), "style-greedy": _by(_style), "first": _by(_plain),
}


def play(name: str):
    """A scripted policy by name as a policy factory: ``(env) -> (obs, info) -> action``, either view."""
    return scripted(POLICIES[name])


def flip_gap(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The paper's direction: the pairwise minus the pointwise flip rate under distractors, over every episode."""
    runs = [r for rs in results.values() for r in rs]
    pf = sum(r.outcomes.get("pairwise_flip_rate", 0.0) * r.outcomes.get("pairwise_flip_trials", 0) for r in runs)
    pt = sum(r.outcomes.get("pairwise_flip_trials", 0) for r in runs)
    qf = sum(r.outcomes.get("pointwise_flip_rate", 0.0) * r.outcomes.get("pointwise_flip_trials", 0) for r in runs)
    qt = sum(r.outcomes.get("pointwise_flip_trials", 0) for r in runs)
    return (pf / pt if pt else 0.0) - (qf / qt if qt else 0.0)


def fidelity_probe() -> Probe:
    return Probe(
        policies={name: play(name) for name in POLICIES},
        variants={"default": {}, "no_distractor_weight": {"distractor_weight": 0.0}},
        direction=flip_gap,
        direction_doc="pairwise minus pointwise preference-flip rate when a distractor is added (> 0 by default)",
        expected_sign={"default": 1},
    )


# ---------------------------------------------------------------------- DPO export


@dataclass(frozen=True)
class Exported:
    path: Path
    pairs: int
    wrongly_ordered: int  # chosen has lower hidden quality than rejected
    skipped_ties: int


def export_pairs(env: Any, n: int, path: "str | Path", seed: int = 0) -> Exported:
    """Write ``n`` chosen/rejected pairs as JSONL in TRL's DPO dataset format.

    Each row: ``prompt`` (the request), ``chosen`` and ``rejected`` (response texts),
    ``chosen_quality`` and ``rejected_quality`` (the hidden quality of each side), ``votes``
    (the share of annotators preferring ``chosen``) and ``request_id``. A pair is a
    candidate picked at random (seeded by ``seed``) against the round's reference, ordered by
    the pool's majority preference (ties skipped): exactly the labels the env's annotators
    give, noise and biases included, so ``wrongly_ordered`` counts what a DPO run would learn
    backwards. Episodes are played from ``reset(seed=seed)``, ``seed + 1``, ...
    """
    n = check_int("n", n, minimum=1)
    base = getattr(env, "unwrapped", env)
    if not isinstance(base, PreferenceFarmEnv):
        raise InvalidArgumentError(f"export_pairs: expects a PreferenceFarm env, actual {type(base).__name__}")
    rng = np.random.default_rng(seed)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = wrong = ties = 0
    episode = seed
    with out.open("w", encoding="utf-8") as fh:
        while written < n:
            env.reset(seed=episode)
            episode += 1
            done = False
            while not done and written < n:
                req = base.request(base.current())
                a = int(rng.integers(base.n_actions))
                action = a if base.interface == "discrete" else base.candidate_replies()[a]
                _, _, term, trunc, info = env.step(action)
                done = term or trunc
                if info.get("feedback_error") or info["invalid_action"]:
                    continue
                win = info["win"]
                if win == 0.5 or info["agent_response"] == info["reference_response"]:
                    ties += 1
                    continue
                me = (info["agent_response"], info["quality"])
                ref = (info["reference_response"], info["reference_quality"])
                chosen, rejected = (me, ref) if win > 0.5 else (ref, me)
                wrong += chosen[1] < rejected[1]
                fh.write(json.dumps({
                    "prompt": req.text, "chosen": chosen[0], "rejected": rejected[0],
                    "chosen_quality": chosen[1], "rejected_quality": rejected[1],
                    "votes": win if win > 0.5 else 1.0 - win, "request_id": req.id,
                }, ensure_ascii=False) + "\n")
                written += 1
    return Exported(out, written, int(wrong), ties)


__all__ = [
    "COMPARER", "Exported", "Farm", "Judgement", "LLM_JUDGES", "OUTCOMES", "POLICIES", "PROTOCOLS", "PreferenceFarmEnv",
    "Profile", "RANKERS", "RATER", "READER", "REFERENCES", "Rater", "Comparer", "Ranker", "Reader", "Reading", "Round",
    "Shown", "add_distractor", "export_pairs", "fidelity_probe", "flip_gap", "make_farm", "play",
]
