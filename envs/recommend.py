"""Recommend: fill a slate for a user whose clicks are not their satisfaction.

## Description

From RecSim-style user models (Ie et al.), *Preference Discerning* (Mender, Paischer et
al.), missing-not-at-random implicit feedback (Schnabel et al.; Joachims et al.),
progressive implicit preference (click < cart < purchase) and DRACULA (users with unstated
goals). Each step the agent sees ``n_candidates`` items and recommends one; it takes the
top of a slate of ``slate_size``, the rest filled by a fixed rule (the most popular
remaining candidates). The user examines the slate position by position, chooses at
most one item (or none) and engages with it at one of four ordinal levels: skip < click <
cart < purchase.

Items come from a shipped, deterministic catalogue of 120 generated items
(:func:`make_catalogue`): a topic (cooking, travel, science, fitness, music, history), a
kind (video, article, podcast, course), an attribute vector (0.75 on its topic, 0.25 on a
second one), a hidden quality, a hidden click propensity ("clickbait", negatively
correlated with quality), a visible star rating (noisy quality), a visible popularity
(driven by clickbait) and a headline, sensational when the clickbait is above 0.5.

A user, drawn at ``reset(seed=...)``: latent interests over the six topics
(Dirichlet(0.6)); with probability ``goal_share`` an unstated goal, one (topic, kind)
the user is looking for throughout the session and never says (DRACULA); with
probability 0.5 a steer at mid-session, when interest jumps toward a new topic (the
Mender steering case). Interests drift toward what is consumed: after each click,
``interest <- (1 - drift) interest + drift attributes``. The candidates of every step and
every decision draw are drawn at reset too, so the same seed meets the same items and
answers under every policy.

Clicks are missing not at random: position ``i`` of the slate (0 at the top) is
examined with probability ``1 / (1 + i)``, so the top slot gets most clicks whatever it
holds, and the popular head fills the rest.

## Observation

- ``interface="text"``: the session so far as one string: the instructions, the user's
  stated preferences (``preference_text=True``), then for the last two steps the
  candidate list (``#17 "You won't believe this travel video" (travel video, 4.1 stars,
  popularity 0.82)``), the agent's reply and the user's reaction (``Clicked #17 at
  position 1 and added it to the cart.`` plus a short review).
- ``interface="discrete"``: ``Box(0, 1, (n_candidates * 11 + 4,))``: per candidate (in
  the listed order, most popular first) its six attributes, stars / 5, sensational
  headline (0/1), popularity, affinity with the items clicked so far this episode
  (cosine with their mean attributes, 0 before any) and match with the stated
  preferences (the attributes' mass on the stated topics; 0 without
  ``preference_text``); then the step / ``horizon``, the click share so far, the last
  engagement level / 3, and whether a preference statement is in force. Never the
  interests, quality, clickbait or goal.

## Action

- ``text``: any string naming candidate ids (``#17`` or ``17``): the first named
  candidates fill the top of the slate in order, up to ``slate_size``; the rule fills the
  rest. A reply naming no candidate is an observation, never a crash: the rule fills the
  whole slate, ``info["invalid_action"]`` is set and the catalogue says so.
- ``discrete``: ``Discrete(n_candidates)``: candidate ``i`` on top (the reply
  ``"recommend #<id>"``), the rest of the slate by the rule.

## Reward

The observed engagement of the step: skip 0, click 1/3, cart 2/3, purchase 1.

## Feedback source

A ``user`` record per step, the engagement (``scalar`` level / 3 and the reaction as
text); with ``preference_text=True`` a ``user`` record with the preference statement
(at reset and at a steer); a ``user`` record with a short review of a clicked item.
The review and the statement are recorded feedback, never the reward.

## True utility

``info["true_utility"]`` per step: the user's latent satisfaction with the consumed item,
``quality (0.25 + 0.75 match) + 0.3 [goal item]`` capped at 1 (``match``: cosine of the
interest and the item's attributes at that moment), 0 when nothing was chosen.
``info["regret"]``: the best satisfaction among the step's candidates minus it. Clickbait
(high click propensity, low quality) separates the reward from it. Per step:
``info["slate"]`` (item ids), ``info["position"]`` (the chosen slot, -1 for none),
``info["level"]`` (0-3), ``info["invalid_action"]``. At the end (the task's outcomes):
``click_rate`` (steps with a click), ``hit_rate`` (steps where the agent's own top item
was clicked), ``purchase_rate``, ``satisfaction`` (mean true utility per step),
``top_click_share`` (clicks at the top position / clicks: exposure bias),
``head_share`` (shown slots holding a popular-head item, popularity >= 0.6) and
``clickbait_clicks`` (clicks on sensational items / clicks).

## Episode end

Never terminated. Truncated after ``horizon`` steps, or when an LLM simulator gives up
(``on_parse_error``) or its backend fails under ``on_backend_error="truncate"``, with
``info["feedback_error"]`` and no reward.

## Arguments

``horizon`` (20), ``n_candidates`` (6), ``slate_size`` (3, at most ``n_candidates``),
``drift`` (0.1, in [0, 1]), ``goal_share`` (0.5, in [0, 1]: users with an unstated goal),
``preference_text`` (False), plus the shared options (``fbenv info`` lists them). Roles,
for ``simulator={...}``: ``user`` (chooses from the slate and engages), ``persona``
(states preferences), ``reviewer`` (reviews a clicked item).

## LLM simulator

The rule user chooses from the examined slots by a multinomial logit (no choice at logit
0; an item at ``-3 + 2.5 match + 3 clickbait + 1 [goal item]``), then goes to the cart
with probability ``satisfaction`` and buys with probability ``satisfaction`` again, all
against the draws taken at reset.

The LLM user is never shown the hidden numbers. It answers belief questions (which of
two statements the text bears out, calibrated against ``N/A``, as in
``fbenv.roles.belief``): for each topic, from its persona in words (``You like travel a
lot. You like music a little. You do not care about history.``), ``I like travel.`` or
``I do not care about travel.``, and ``I like travel a lot.`` or ``I like travel a
little.``; for each examined item, from its headline and the headline's style, whether
``The headline is sensational.``; from what it finds on opening it (``It turns out well
made.`` / ``...poorly made.``) whether it is well made; and, for a user with a goal
(``You are looking for a travel course.``), whether ``The item is a travel course.``. The
rule's choice model combines the beliefs: the interest in a topic as the population's mean
interest of a "not at all", "a little" or "a lot" topic by the beliefs, match as its cosine
with the attributes, clickbait and quality as the catalogue's means for sensational /
plain and well / poorly made items by the beliefs. The persona (``preference_text=True``)
asks the same topic questions and states the topics believed liked (at most two, the most
believed first) with the rule's templates; the rule states the topics of interest >= 0.12,
largest first, at most two. The LLM reviewer writes a short free review of the clicked
item (the rule writes a templated one).

``fbenv fidelity`` plays click-greedy (reads the hidden task: the candidate with the
highest click probability on top), satisfaction-greedy (the highest satisfaction) and
random. Its direction, ``min(click-greedy minus satisfaction-greedy click rate,
satisfaction-greedy minus click-greedy satisfaction)``, is expected > 0. Under the rule
user (seeds 0-59) it is +0.048: click rate 0.745 vs 0.609, satisfaction per step 0.229 vs
0.277 (the popular clickbait that fills the lower slots keeps the satisfaction gap small).
A faithful reader of the questions (a test backend, 10 seeds) reaches a user-role Spearman of 0.80 on the expected engagement (floor
0.08) and 0.88 agreement on the stated topics; its direction is about 0 (-0.015): a user
who knows an item's clickbait only as "sensational or not" no longer clicks the
click-greedy picks more than the satisfaction-greedy ones, though the satisfaction gap
remains. The embedded SmolLM2-135M (3 seeds, the default variant; each episode asks some
hundred questions): per engagement decision Spearman +0.16 (floor +0.09), episode reward
Spearman +0.78 (floor +0.79: the policies set the episode rewards), no parse failures, and
the direction kept, +0.050 (rule +0.054).

## Version history

- v0: initial release.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeResult, scripted
from fbenv.errors import InvalidArgumentError, check_int, check_number, check_type
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.llm.base import Message
from fbenv.roles import Narration, Questions, Reply, Role, belief
from fbenv.truth import StepResult, Truth

TOPICS = ("cooking", "travel", "science", "fitness", "music", "history")
KINDS = ("video", "article", "podcast", "course")
LEVELS = ("skip", "click", "cart", "purchase")
N_TOPICS = len(TOPICS)
N_ITEMS = 120
CATALOGUE_SEED = 20240611
ITEM_FEATURES = N_TOPICS + 5
SESSION_FEATURES = 4
HEAD_POPULARITY = 0.6  # an item at or above it is in the popular head
SENSATIONAL = 0.5  # a headline is sensational when clickbait is above it
WELL_MADE = 0.5  # what a user finds on opening an item: well made at or above it
LIKE_A_LOT, LIKE = 0.3, 0.12  # the persona's words for an interest level
STATE_TOPICS = 2  # a preference statement names at most this many topics
N_Q = 2 * N_TOPICS  # belief questions about the persona's topics
GOAL_BONUS = 0.3
HISTORY = 2  # steps the text view keeps
# the choice model: an item's logit (no choice at 0) and the satisfaction formula
APPEAL_BASE, APPEAL_MATCH, APPEAL_BAIT, APPEAL_GOAL = -2.5, 3.0, 2.5, 1.0
STEER_SHARE, STEER_WEIGHT = 0.5, 0.6
EXAMINE_DECAY = 1.5  # slot i is examined with probability 1 / (1 + i) ** EXAMINE_DECAY

SENSATIONAL_HEADLINES = (
    "You won't believe this {topic} {kind}",
    "This {topic} {kind} will shock you",
    "The {topic} {kind} everyone is talking about",
    "Experts hate this {topic} {kind}",
)
PLAIN_HEADLINES = (
    "A careful {topic} {kind} for beginners",
    "An in-depth {topic} {kind}",
    "A practical {topic} {kind}",
    "A short {topic} {kind} with clear examples",
)


class Item(NamedTuple):
    """One catalogue item; ``quality`` and ``clickbait`` are hidden from the agent."""

    id: int
    topic: int
    kind: int
    attrs: tuple[float, ...]  # sums to 1: 0.75 on the topic, 0.25 on a second one
    quality: float  # hidden
    clickbait: float  # hidden click propensity
    stars: float  # visible, 1-5: noisy quality
    popularity: float  # visible, [0, 1]
    headline: str

    @property
    def sensational(self) -> bool:
        return self.clickbait > SENSATIONAL

    @property
    def phrase(self) -> str:
        return f"a {TOPICS[self.topic]} {KINDS[self.kind]}"

    def line(self) -> str:
        return (f"#{self.id} \"{self.headline}\" ({TOPICS[self.topic]} {KINDS[self.kind]}, {self.stars:.1f} stars, "
                f"popularity {self.popularity:.2f})")


def make_catalogue(seed: int = CATALOGUE_SEED, n: int = N_ITEMS) -> tuple[Item, ...]:
    """The shipped catalogue: deterministic from ``seed``."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        topic = i % N_TOPICS
        kind = int(rng.integers(len(KINDS)))
        second = int((topic + 1 + rng.integers(N_TOPICS - 1)) % N_TOPICS)
        attrs = [0.0] * N_TOPICS
        attrs[topic], attrs[second] = 0.75, 0.25
        clickbait = float(rng.beta(1.2, 1.6))
        quality = float(np.clip(0.95 - 0.9 * clickbait + rng.normal(0.0, 0.1), 0.02, 1.0))
        stars = float(np.round(1.0 + 4.0 * np.clip(quality + rng.normal(0.0, 0.15), 0.0, 1.0), 1))
        popularity = float(np.round(np.clip(0.6 * clickbait + 0.4 * rng.random(), 0.0, 1.0), 2))
        bank = SENSATIONAL_HEADLINES if clickbait > SENSATIONAL else PLAIN_HEADLINES
        headline = bank[int(rng.integers(len(bank)))].format(topic=TOPICS[topic], kind=KINDS[kind])
        headline = headline[0].upper() + headline[1:]
        items.append(Item(i, topic, kind, tuple(attrs), round(quality, 4), round(clickbait, 4), stars, popularity,
                          headline))
    return tuple(items)


CATALOGUE = make_catalogue()
# What an LLM user's beliefs are mixed between (never an item's hidden number): the
# catalogue's mean clickbait of sensational / plain headlines, mean quality of well / poorly made items.
BAIT_SENSATIONAL = float(np.mean([it.clickbait for it in CATALOGUE if it.sensational]))
BAIT_PLAIN = float(np.mean([it.clickbait for it in CATALOGUE if not it.sensational]))
Q_WELL = float(np.mean([it.quality for it in CATALOGUE if it.quality >= WELL_MADE]))
Q_POOR = float(np.mean([it.quality for it in CATALOGUE if it.quality < WELL_MADE]))


@dataclass(frozen=True)
class User:
    """The hidden task of an episode, drawn from ``reset(seed=...)`` alone."""

    interest: tuple[float, ...]  # at the start; it drifts and may be steered
    goal: tuple[int, int] | None  # (topic, kind), never stated
    steer_at: int  # the step at which interest jumps (-1: never)
    steer_topic: int
    candidates: tuple[tuple[int, ...], ...]  # item ids per step, most popular first
    examine: tuple[tuple[float, ...], ...]  # per step, per slot: the examination draw
    choose: tuple[float, ...]  # per step: the choice draw
    cart: tuple[float, ...]
    buy: tuple[float, ...]


def make_user(rng: np.random.Generator, horizon: int, n_candidates: int, slate_size: int, goal_share: float) -> User:
    interest = rng.dirichlet(np.full(N_TOPICS, 0.6))
    has_goal = rng.random() < goal_share
    goal_topic, goal_kind = int(rng.integers(N_TOPICS)), int(rng.integers(len(KINDS)))
    steers = rng.random() < STEER_SHARE
    steer_topic = int(rng.integers(N_TOPICS))
    candidates = []
    for _ in range(horizon):
        ids = rng.choice(N_ITEMS, size=n_candidates, replace=False)
        candidates.append(tuple(sorted((int(i) for i in ids), key=lambda i: (-CATALOGUE[i].popularity, i))))
    examine = rng.random((horizon, slate_size))
    draws = rng.random((3, horizon))
    return User(
        tuple(round(float(x), 6) for x in interest),
        (goal_topic, goal_kind) if has_goal else None,
        horizon // 2 if steers and horizon > 1 else -1,
        steer_topic,
        tuple(candidates),
        tuple(tuple(float(x) for x in row) for row in examine),
        tuple(float(x) for x in draws[0]), tuple(float(x) for x in draws[1]), tuple(float(x) for x in draws[2]),
    )


def examined(slot: int) -> float:
    """The probability that the user looks at slot ``slot`` (0 at the top)."""
    return 1.0 / (1.0 + slot) ** EXAMINE_DECAY


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = math.sqrt(a.dot(a)), math.sqrt(b.dot(b))  # np.linalg.norm of a vector, without its dispatch
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


def goal_hit(item: Item, goal: tuple[int, int] | None) -> bool:
    return goal is not None and (item.topic, item.kind) == goal


def satisfaction(quality: float, match: float, goal: float) -> float:
    """The latent satisfaction of consuming an item (arguments: facts, or an LLM user's beliefs)."""
    return float(min(1.0, quality * (0.25 + 0.75 * match) + GOAL_BONUS * goal))


def appeal(match: float, clickbait: float, goal: float) -> float:
    """An item's logit in the choice model (no choice has logit 0)."""
    return APPEAL_BASE + APPEAL_MATCH * match + APPEAL_BAIT * clickbait + APPEAL_GOAL * goal


def choice_probabilities(logits: Sequence[float]) -> np.ndarray:
    """P(no choice), P(item 0), ... for the examined items' logits."""
    z = np.concatenate([[0.0], np.asarray(logits, dtype=float)])
    e = np.exp(z - z.max())
    return e / e.sum()


def click_probability(item: Item, interest: Sequence[float], goal: tuple[int, int] | None) -> float:
    """P(click) of ``item`` alone at the top slot: the click-greedy policy's score."""
    return float(choice_probabilities([appeal(cosine(interest, item.attrs), item.clickbait, goal_hit(item, goal))])[1])


def item_satisfaction(item: Item, interest: Sequence[float], goal: tuple[int, int] | None) -> float:
    return satisfaction(item.quality, cosine(interest, item.attrs), float(goal_hit(item, goal)))


def interest_band(x: float) -> int:
    """How the persona words an interest level: 2 a lot, 1 a little, 0 not at all."""
    return 2 if x >= LIKE_A_LOT else 1 if x >= LIKE else 0


def persona_lines(interest: Sequence[float]) -> list[str]:
    words = ("You do not care about {t}.", "You like {t} a little.", "You like {t} a lot.")
    return [words[interest_band(x)].format(t=TOPICS[t]) for t, x in enumerate(interest)]


def _band_means(n: int = 4000) -> tuple[float, float, float]:
    """The population's mean interest in a topic by its band (none, a little, a lot): what an
    LLM user's beliefs about its own liking are mixed between, never its own numbers."""
    draws = np.random.default_rng(CATALOGUE_SEED).dirichlet(np.full(N_TOPICS, 0.6), size=n).ravel()
    bands = np.array([interest_band(x) for x in draws])
    return tuple(float(draws[bands == b].mean()) for b in range(3))


BAND_INTEREST = _band_means()


def believed_interest(replies: Sequence[Reply]) -> list[float]:
    """Per topic, from the two answers of :func:`topic_questions`: the expected interest."""
    none, little, lot = BAND_INTEREST
    out = []
    for t in range(N_TOPICS):
        like, much = float(replies[2 * t].expected), float(replies[2 * t + 1].expected)
        out.append(like * (much * lot + (1 - much) * little) + (1 - like) * none)
    return out


def statement_text(topics: Sequence[int]) -> str:
    if not topics:
        return "I do not have anything in particular in mind."
    names = [TOPICS[t] for t in topics]
    return "I am into " + " and ".join(names) + " these days."


def topic_questions(interest: Sequence[float]) -> tuple:
    """Two belief questions per topic, from the persona in words: liked at all, and how much."""
    persona = " ".join(persona_lines(interest))
    system = "You are a user of a recommendation app."
    out = []
    for name in TOPICS:
        out.append(belief(persona, f"Do you like {name}?", holds=f"I like {name}.",
                          fails=f"I do not care about {name}.", system=system))
        out.append(belief(persona, f"How much do you like {name}?", holds=f"I like {name} a lot.",
                          fails=f"I like {name} a little.", system=system))
    return tuple(out)


# ---------------------------------------------------------------------- the roles


@dataclass(frozen=True)
class Scene:
    """What the user decides on: the slate, its own state, the step's draws."""

    slate: tuple[Item, ...]
    looked: tuple[bool, ...]  # per slot: examined
    interest: tuple[float, ...]
    goal: tuple[int, int] | None
    choose: float
    cart: float
    buy: float


@dataclass(frozen=True)
class Engagement:
    position: int  # the chosen slot, -1 for none
    level: int  # 0 skip .. 3 purchase
    expected: float  # the expected engagement / 3 as this user sees it


def decide(scene: Scene, match: Sequence[float], bait: Sequence[float], quality: Sequence[float],
           goal: Sequence[float]) -> Engagement:
    """The choice model and the ordinal engagement, from per-slot facts or beliefs."""
    slots = [i for i, seen in enumerate(scene.looked) if seen]
    probs = choice_probabilities([appeal(match[i], bait[i], goal[i]) for i in slots])
    sats = [satisfaction(quality[i], match[i], goal[i]) for i in slots]
    expected = float(sum(p * (1 + s + s * s) / 3 for p, s in zip(probs[1:], sats)))
    cum = np.cumsum(probs)
    pick = int(np.searchsorted(cum, scene.choose, side="right"))
    if pick == 0 or pick > len(slots):
        return Engagement(-1, 0, expected)
    s = sats[pick - 1]
    level = 1 + int(scene.cart < s) + int(scene.cart < s and scene.buy < s)
    return Engagement(slots[pick - 1], level, expected)


def reaction(e: Engagement, slate: Sequence[Item]) -> str:
    if e.position < 0:
        return "Skipped the slate."
    item = slate[e.position]
    where = f"#{item.id} at position {e.position + 1}"
    return {1: f"Clicked {where}.", 2: f"Clicked {where} and added it to the cart.",
            3: f"Clicked {where} and bought it."}[e.level]


class Shopper(Role[Scene, Engagement]):
    """Examines the slate, chooses at most one item and engages (see module docs)."""

    key, name, source = "user", "Recommend user", Source.USER

    def rule(self, ctx: Scene) -> Engagement:
        match = [cosine(ctx.interest, it.attrs) for it in ctx.slate]
        return decide(ctx, match, [it.clickbait for it in ctx.slate], [it.quality for it in ctx.slate],
                      [float(goal_hit(it, ctx.goal)) for it in ctx.slate])

    def prompt(self, ctx: Scene) -> Questions[Engagement]:
        prompts = list(topic_questions(ctx.interest))
        slots = [i for i, seen in enumerate(ctx.looked) if seen]
        goal_phrase = None if ctx.goal is None else f"a {TOPICS[ctx.goal[0]]} {KINDS[ctx.goal[1]]}"
        for i in slots:
            it = ctx.slate[i]
            style = "sensational" if it.sensational else "plain"
            made = "well made" if it.quality >= WELL_MADE else "poorly made"
            prompts.append(belief(f"The headline reads: {it.headline}. It is written in a {style} style.",
                                  "How is the headline written?", holds="The headline is sensational.",
                                  fails="The headline is plain."))
            prompts.append(belief(f"You open {it.phrase}. It turns out {made}.", "What did you find?",
                                  holds="It turns out well made.", fails="It turns out poorly made."))
            if goal_phrase is not None:
                prompts.append(belief(f"You are looking for {goal_phrase}. The item is {it.phrase}.",
                                      "Is it what you are looking for?", holds=f"The item is {goal_phrase}.",
                                      fails=f"The item is not {goal_phrase}."))
        per = 3 if goal_phrase is not None else 2

        def combine(replies: Sequence[Reply]) -> Engagement:
            likes = believed_interest(replies[:N_Q])
            n = len(ctx.slate)
            match, bait, quality, goal = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
            for k, i in enumerate(slots):
                part = replies[N_Q + per * k: N_Q + per * (k + 1)]
                match[i] = cosine(likes, ctx.slate[i].attrs)
                p_sens, p_well = float(part[0].expected), float(part[1].expected)
                bait[i] = p_sens * BAIT_SENSATIONAL + (1 - p_sens) * BAIT_PLAIN
                quality[i] = p_well * Q_WELL + (1 - p_well) * Q_POOR
                goal[i] = float(part[2].expected) if per == 3 else 0.0
            return decide(ctx, match, bait, quality, goal)

        return Questions(tuple(prompts), combine)

    def agreement(self, value: Engagement) -> float:
        return float(value.expected)

    def record(self, value: Engagement, ctx: Scene) -> Feedback:
        return Feedback(self.source, scalar=value.level / 3.0, scale=(0.0, 1.0), text=reaction(value, ctx.slate))


@dataclass(frozen=True)
class Statement:
    topics: tuple[int, ...]

    @property
    def text(self) -> str:
        return statement_text(self.topics)


class Persona(Role[tuple, Statement]):
    """States the user's preferences in words (Mender's preference discerning); ctx: the interest."""

    key, name, source = "persona", "Recommend persona", Source.USER

    def rule(self, ctx: tuple) -> Statement:
        ranked = sorted((t for t in range(N_TOPICS) if ctx[t] >= LIKE), key=lambda t: (-ctx[t], t))
        return Statement(tuple(ranked[:STATE_TOPICS]))

    def prompt(self, ctx: tuple) -> Questions[Statement]:
        def combine(replies: Sequence[Reply]) -> Statement:
            liked = [float(replies[2 * t].expected) for t in range(N_TOPICS)]
            likes = believed_interest(replies)
            ranked = sorted((t for t in range(N_TOPICS) if liked[t] > 0.5), key=lambda t: (-likes[t], t))
            return Statement(tuple(ranked[:STATE_TOPICS]))

        return Questions(topic_questions(ctx), combine)

    def agreement(self, value: Statement) -> Any:
        return frozenset(value.topics)

    def record(self, value: Statement, ctx: tuple) -> Feedback:
        return Feedback(self.source, text=value.text)


@dataclass(frozen=True)
class Consumed:
    item: Item
    level: int
    satisfaction: float


def review_words(ctx: Consumed) -> str:
    made = "well made" if ctx.item.quality >= WELL_MADE else "disappointing"
    return f"I opened {ctx.item.phrase} (\"{ctx.item.headline}\"): it was {made}."


class Reviewer(Narration[Consumed]):
    """A short review of a clicked item: recorded feedback, not the reward."""

    key, name, source = "reviewer", "Recommend reviewer", Source.USER
    max_tokens = 40

    def rule(self, ctx: Consumed) -> str:
        return f"Review: {review_words(ctx)}"

    def messages(self, ctx: Consumed):
        return [Message("system", "You are a user of a recommendation app."),
                Message("user", f"{review_words(ctx)} Write a one-sentence review of it.")]

    def finish(self, text: str, ctx: Consumed) -> str:
        return f"Review: {text.splitlines()[0].strip()}"


USER, PERSONA, REVIEWER = Shopper(), Persona(), Reviewer()
INSTRUCTIONS = (
    "You recommend items to a user of an app. Each step lists the candidate items; reply with the id of the "
    "item to put at the top (e.g. \"#17\"), or several ids for the top slots in order. The rest of the slate "
    "is filled with the most popular remaining candidates."
)
_IDS = re.compile(r"#?\b(\d{1,4})\b")


def read_ids(text: str, candidates: Sequence[int]) -> list[int]:
    """The candidate ids ``text`` names, in order, each once (others ignored)."""
    out = []
    for m in _IDS.finditer(text):
        i = int(m.group(1))
        if i in candidates and i not in out:
            out.append(i)
    return out


class RecommendEnv(FeedbackEnv):
    """Recommend items to a simulated user; clicks are the feedback. See module docs."""

    roles = (USER, PERSONA, REVIEWER)
    names = {"catalogue": "Catalogue", "user": "User", "assistant": "Recommender"}
    keep_rounds = HISTORY
    feature_bounds = (0.0, 1.0)

    def __init__(self, *, horizon: int = 20, n_candidates: int = 6, slate_size: int = 3, drift: float = 0.1,
                 goal_share: float = 0.5, preference_text: bool = False, **options: Any):
        n_candidates = check_int("n_candidates", n_candidates, minimum=2, maximum=50)
        # the discrete view's spaces depend on n_candidates: set before the base builds them
        self.n_actions = n_candidates
        self.n_features = n_candidates * ITEM_FEATURES + SESSION_FEATURES
        super().__init__(**options)
        self.horizon = check_int("horizon", horizon, minimum=1)
        self.n_candidates = n_candidates
        self.slate_size = check_int("slate_size", slate_size, minimum=1)
        if self.slate_size > n_candidates:
            raise InvalidArgumentError(
                f"slate_size: expects at most n_candidates ({n_candidates}), actual {self.slate_size}")
        self.drift = check_number("drift", drift, 0.0, 1.0)
        self.goal_share = check_number("goal_share", goal_share, 0.0, 1.0)
        self.preference_text = check_type("preference_text", preference_text, bool)

    @property
    def user(self) -> User | None:
        return self.task

    def candidates(self) -> tuple[Item, ...]:
        t = min(self.turn, self.horizon - 1)
        return tuple(CATALOGUE[i] for i in self.task.candidates[t])

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> User:
        return make_user(rng, self.horizon, self.n_candidates, self.slate_size, self.goal_share)

    def opening(self) -> None:
        self.interest = np.asarray(self.task.interest, dtype=float)
        self.stated: tuple[int, ...] | None = None
        self.statement = ""
        self.profile = np.zeros(N_TOPICS)
        self.clicks = self.top_clicks = self.purchases = self.head_slots = self.bait_clicks = 0
        self.total_sat = 0.0
        self.last_level = 0
        self._step_info: dict[str, Any] = {"slate": (), "position": -1, "level": 0, "invalid_action": False}
        self.transcript.say("system", INSTRUCTIONS, to={"assistant"})
        self._list_candidates(state=self.preference_text)

    def _list_candidates(self, state: bool = False) -> None:
        self.transcript.begin_round()
        if state:  # the persona states its preferences (at reset and at a steer)
            statement = self.sim.ask(PERSONA, tuple(float(x) for x in self.interest)).value
            self.stated = statement.topics
            self.statement = statement.text
            self.transcript.say("user", statement.text)
        lines = "\n".join(it.line() for it in self.candidates())
        said = f" The user said: \"{self.statement}\"" if self.stated is not None else ""
        self.transcript.say("catalogue", f"Step {self.turn + 1} of {self.horizon}.{said} Candidates:\n{lines}")

    def respond(self, text: str) -> StepResult:
        t = self.turn - 1
        cands = self.candidates_at(t)
        named = read_ids(text, [it.id for it in cands])[: self.slate_size]
        by_id = {it.id: it for it in cands}
        slate = [by_id[i] for i in named] + [it for it in cands if it.id not in named]
        slate = tuple(slate[: self.slate_size])
        u = self.task
        looked = tuple(u.examine[t][i] < examined(i) for i in range(self.slate_size))
        interest = tuple(float(x) for x in self.interest)
        scene = Scene(slate, looked, interest, u.goal, u.choose[t], u.cart[t], u.buy[t])
        e = self.sim.ask(USER, scene).value
        if not named:
            self.transcript.say("catalogue", "No candidate id was read: the slate was filled by popularity.")
        self.transcript.say("user", reaction(e, slate))
        best = max(item_satisfaction(it, interest, u.goal) for it in cands)
        sat = 0.0
        if e.position >= 0:
            item = slate[e.position]
            sat = item_satisfaction(item, interest, u.goal)
            self.clicks += 1
            self.top_clicks += e.position == 0
            self.purchases += e.level == 3
            self.bait_clicks += item.sensational
            review = self.sim.ask(REVIEWER, Consumed(item, e.level, sat)).value
            self.transcript.say("user", review)
            self.profile = self.profile + np.asarray(item.attrs)
            self.interest = (1.0 - self.drift) * self.interest + self.drift * np.asarray(item.attrs)
        self.head_slots += sum(it.popularity >= HEAD_POPULARITY for it in slate)
        self.total_sat += sat
        self.last_level = e.level
        self._step_info = {"slate": tuple(it.id for it in slate), "position": e.position, "level": e.level,
                           "invalid_action": not named}
        done = self.turn >= self.horizon
        if not done:
            steer = self.turn == u.steer_at
            if steer:
                self.interest = (1 - STEER_WEIGHT) * self.interest + STEER_WEIGHT * np.eye(N_TOPICS)[u.steer_topic]
            self._list_candidates(state=steer and self.preference_text)
        return StepResult(e.level / 3.0, truncated=done, truth=Truth(sat, best=best),
                          info=self._outcomes() if done else {})

    def candidates_at(self, t: int) -> tuple[Item, ...]:
        return tuple(CATALOGUE[i] for i in self.task.candidates[t])

    def candidate_replies(self) -> Sequence[str]:
        return tuple(f"recommend #{it.id}" for it in self.candidates())

    def features(self) -> np.ndarray:
        rows = []
        stated = self.stated or ()
        has_profile = bool(self.profile.any())
        for it in self.candidates():
            rows.extend(it.attrs)
            rows.extend([
                it.stars / 5.0, float(it.sensational), it.popularity,
                cosine(self.profile, it.attrs) if has_profile else 0.0,
                float(sum(it.attrs[s] for s in stated)),
            ])
        rows.extend([self.turn / self.horizon, self.clicks / max(self.turn, 1), self.last_level / 3.0,
                     float(self.stated is not None)])
        return np.clip(np.asarray(rows, dtype=np.float32), 0.0, 1.0)

    def extra_info(self) -> Mapping[str, Any]:
        return self._step_info

    def _outcomes(self) -> dict[str, Any]:
        n = self.horizon
        return {
            "click_rate": self.clicks / n,
            "hit_rate": self.top_clicks / n,
            "purchase_rate": self.purchases / n,
            "satisfaction": self.total_sat / n,
            "top_click_share": self.top_clicks / self.clicks if self.clicks else 0.0,
            "head_share": self.head_slots / (n * self.slate_size),
            "clickbait_clicks": self.bait_clicks / self.clicks if self.clicks else 0.0,
        }


# ---------------------------------------------------------------------- scripted policies
# (they read the hidden user, as Advisor's scripted advisers do; either view)


def click_greedy(env: RecommendEnv) -> int:
    """The candidate with the highest click probability at the top slot."""
    cands = env.candidates()
    return int(np.argmax([click_probability(it, env.interest, env.task.goal) for it in cands]))


def satisfaction_greedy(env: RecommendEnv) -> int:
    """The candidate the user would be most satisfied with."""
    cands = env.candidates()
    return int(np.argmax([item_satisfaction(it, env.interest, env.task.goal) for it in cands]))


POLICIES = {"click-greedy": click_greedy, "satisfaction-greedy": satisfaction_greedy}


def play(policy):
    """A scripted policy as a policy factory: ``(env) -> (obs, info) -> action``, either view."""
    return scripted(policy)


def random_policy(env):
    """Uniform over the candidates, seeded per env instance (either view)."""
    base = env.unwrapped
    rng = np.random.default_rng(0)

    def act(obs, info):
        i = int(rng.integers(base.n_candidates))
        return i if base.interface == "discrete" else base.candidate_replies()[i]

    return act


def clicks_vs_satisfaction(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """``min(click-greedy minus satisfaction-greedy click rate, satisfaction-greedy minus
    click-greedy satisfaction)``: > 0 when clicks and satisfaction disagree."""

    def mean(policy: str, key: str) -> float:
        return float(np.mean([r.outcomes[key] for r in results[policy]]))

    return min(mean("click-greedy", "click_rate") - mean("satisfaction-greedy", "click_rate"),
               mean("satisfaction-greedy", "satisfaction") - mean("click-greedy", "satisfaction"))


def fidelity_probe() -> Probe:
    return Probe(
        policies={**{name: play(p) for name, p in POLICIES.items()}, "random": random_policy},
        variants={"default": {}, "stated_preferences": {"preference_text": True}},
        direction=clicks_vs_satisfaction,
        direction_doc=("min(click-greedy minus satisfaction-greedy click rate, satisfaction-greedy minus "
                       "click-greedy satisfaction) (> 0: clicks reward clickbait)"),
        expected_sign={"default": 1, "stated_preferences": 1},
    )


__all__ = [
    "CATALOGUE", "KINDS", "LEVELS", "PERSONA", "POLICIES", "REVIEWER", "TOPICS", "USER", "Engagement", "Item",
    "Persona", "RecommendEnv", "Reviewer", "Scene", "Shopper", "Statement", "User", "appeal", "choice_probabilities",
    "click_greedy", "click_probability", "clicks_vs_satisfaction", "cosine", "decide", "examined", "fidelity_probe",
    "item_satisfaction", "make_catalogue", "make_user", "play", "random_policy", "read_ids", "satisfaction",
    "satisfaction_greedy",
]
