"""ClarifySearch: find the passages a user needs by asking clarifying questions and using feedback.

## Description

From *Exploiting Simulated User Feedback for Conversational Search* (Owoicho et al.) and
*NExT-Search* (feedback-driven search). A person wants passages about a topic, but only
some aspects (facets) of it matter to them, and they say only the topic. Each turn the
agent either asks a clarifying question about one facet or shows a ranking of passages;
the person answers the question or says which wanted facet the ranking misses. An agent
that folds that feedback into its next query climbs in nDCG@3 over the rounds; one that
ignores it stays where it started.

The corpus is generated once per process by a shipped generator with a fixed seed: 3,200
passages over eight topics (coffee, hiking, python, gardening, cycling, baking,
photography, running), each topic with six candidate facets (coffee: espresso, decaf,
grinder, roast, milk, caffeine). A passage has a topic, 0-3 of its topic's facets (which
it covers: ``It has details on espresso: crema and shot.``), sometimes a facet it
explicitly does not cover (``It does not have details on decaf.``, a lexical trap for
BM25) and filler sentences. Passage ids are ``p0000`` ... ``p3199``.

An information need, drawn at ``reset(seed=...)``, is a topic and ``need_size`` of its six
facets. A passage's relevance grade is the number of wanted facets it covers (0 for a
passage of another topic), and a ranking's nDCG@3 uses gains ``2^grade - 1`` normalized by
the best three passages of the corpus for that need.

The env ranks queries with its own BM25 index (the ``bm25s`` library, built once per
process over the whole corpus).

## Observation

- ``interface="text"``: the conversation as one string: the instructions (the topic's six
  candidate facets and the reply syntax), the person's opening (``I am looking for
  passages about coffee.``) and the last three rounds: the agent's turn, the top three
  passages of a ranking (id and text) and the person's answer or feedback.
  ``info["messages"]`` has the same window as chat messages.
- ``interface="discrete"``: ``Box(0, 1, (24,))``: per candidate facet (six), whether the
  person has said it is wanted (a yes or a "misses" feedback) and whether they have said
  it is not (a no); the topic one-hot (eight); the share of ``max_rounds`` played; the
  share of ``max_rounds`` spent on questions; whether the person said the last ranking
  had everything; whether any ranking was shown. What was learned, never the hidden need.

## Action

- ``text``: ``ask: <facet>`` (a question about one of the six candidate facets),
  ``search: <query>`` (the env's BM25 ranks the query; its top three are the ranking) or
  ``rank: p0012, p0450, p0007`` (the agent's own ranking; the first three valid ids
  count). Prefix a ranking with ``final`` (``final search: ...``, ``final rank: ...``) to
  submit it as the last one. Anything else (no known verb, a facet not among the six, no
  valid id, an empty query) is an observation: the round is spent, nothing is shown or
  asked, ``info["invalid_action"]`` is set.
- ``discrete``: ``Discrete(12)``: ``0-5`` ask about candidate facet ``k``; ``6-8`` rank
  with query strategy ``s``; ``9-11`` the same strategies as the final ranking. The
  strategies: ``0`` the topic only, ``1`` the topic and the facets learned to be wanted,
  ``2`` the topic and every facet not ruled out. Each action's text is the text view's
  (``ask: espresso``, ``search: coffee espresso decaf``), so both views are one task.

## Reward

nDCG@3 of each ranking shown; ``-question_cost`` for a question; 0 for an invalid turn.
``info["ndcg"]`` is the step's nDCG@3 (0 when no ranking), ``info["asked"]`` the facet
asked about (``""`` if none), ``info["missing_facet"]`` the facet the feedback named
(``""`` if none), ``info["invalid_action"]``.

## Feedback source

One ``user`` record per question (``scalar`` 1.0 yes / 0.0 no; text ``Yes, I want
details on espresso.`` / ``No, I do not need details on milk.``) and one per ranking
(text ``These passages have no details on decaf.`` naming the wanted facet covered by the
fewest of the top three, ties by the need's order; or ``These passages have everything I
need.``; ``scalar`` the share of wanted facets covered by all three passages).

## True utility

nDCG@3 of the final ranking, reported on the episode's last step (0 on every earlier
step, so the episode's summed true utility is that nDCG): the ranking submitted with
``final``, or the last ranking shown when the rounds run out (0 if none was shown).
``info["is_success"]`` says it reached 1.0 (``info["regret"] = 1 - true_utility`` on that
step). Outcomes at the end: ``ndcg_by_round`` (a tuple: each ranking's nDCG@3 in order),
``first_ndcg``, ``final_ndcg``, ``ndcg_gain`` (final minus first), ``questions_asked``,
``rankings``.

## Episode end

Terminated when the agent submits a ``final`` ranking. Truncated after ``max_rounds``
turns (questions, rankings and invalid turns all count), or when an LLM simulator gives
up (``on_parse_error``) or its backend fails under ``on_backend_error="truncate"``, with
``info["feedback_error"]`` and no reward.

## Arguments

``max_rounds`` (5: turns per episode), ``need_size`` (3: wanted facets, 1-3),
``question_cost`` (0.05: subtracted from the reward per question; 0 makes asking free),
plus the shared options (``fbenv info`` lists them). Roles, for ``simulator={...}``:
``answerer`` (answers a clarifying question) and ``reviewer`` (gives feedback on a ranking).

## LLM simulator

The rule person knows their need exactly: a question is answered yes when the facet is
wanted; the feedback counts, for each wanted facet, how many of the top three passages
cover it, and names the least covered (ties by the need's order), or says the ranking
has everything when all three cover every wanted facet.

The LLM person asks itself one belief question at a time, each a choice between two
statements about the text in front of it (scored, calibrated against the same question
about ``N/A``, as in ``fbenv.roles.belief``), its persona (``You are a person searching
for passages about coffee.``) in the system message. For a clarifying question about a
facet: from the part of its need description about that facet (``I am looking for
passages about coffee. The answer I want has details on espresso.`` or ``... does not
have details on milk.``), which of ``The answer I want has details on espresso.`` /
``The answer I want does not have details on espresso.`` it bears out; a belief above
0.5 is a yes. For feedback on a ranking: for each wanted facet and each of the top three
passages, from that passage's text alone, which of ``The passage has details on decaf.``
/ ``The passage does not have details on decaf.`` it bears out; a belief above 0.5
counts as covered, and the counts go through the rule's own formula. Its answers are
written by the rule's templates from the decided facts. A reply that is neither
statement (a server that writes freely) is read as either statement or yes/no;
otherwise ``on_parse_error`` applies.

``fbenv fidelity`` plays a feedback-user (ranks with the facets learned so far each
round), an ignorer (ranks with the topic only each round) and an asker (asks about
facets, then ranks). Its direction is the mean nDCG@3 gain from the first to the final
ranking of the feedback-user minus the ignorer's, expected > 0. With a faithful test
reader the LLM person agrees with the rule one on every answer.

## Version history

- v0: initial release.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeResult, scripted
from fbenv.errors import check_int, check_number
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.roles import Questions, Reply, Role, belief
from fbenv.truth import StepResult, Truth

# ---------------------------------------------------------------------- the corpus

# (topic, words that name it, six facets as "keyword related related")
TOPICS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("coffee", ("coffee", "brew", "beans"),
     ("espresso crema shot", "decaf swiss water", "grinder burr setting", "roast dark light", "milk foam latte",
      "caffeine dose jitters")),
    ("hiking", ("hiking", "trail", "walk"),
     ("boots ankle blisters", "water bottle filter", "map compass route", "weather rain forecast",
      "camping tent stove", "altitude summit breathing")),
    ("python", ("python", "code", "program"),
     ("loops iteration range", "classes objects inheritance", "testing pytest assertions", "packaging wheels install",
      "typing annotations hints", "speed profiling numpy")),
    ("gardening", ("gardening", "garden", "plants"),
     ("tomatoes vines ripening", "compost heap worms", "watering hose drip", "pests slugs aphids",
      "seeds sowing germination", "shade borders ferns")),
    ("cycling", ("cycling", "bike", "ride"),
     ("tyres pressure puncture", "gears chain derailleur", "brakes pads levers", "helmet safety fit",
      "commuting traffic lanes", "saddle posture comfort")),
    ("baking", ("baking", "bake", "recipe"),
     ("bread crust loaf", "yeast proofing dough", "oven temperature tray", "sugar sweetness icing",
      "flour protein sifting", "gluten allergy substitute")),
    ("photography", ("photography", "camera", "photos"),
     ("lenses aperture zoom", "lighting flash shadows", "portraits faces posing", "tripod stability exposure",
      "editing colour crop", "film grain darkroom")),
    ("running", ("running", "run", "runners"),
     ("shoes cushioning sizing", "marathon distance training", "injury knees recovery", "stretching warmup muscles",
      "pace tempo splits", "hills incline strength")),
)
N_TOPICS = len(TOPICS)
N_FACETS = 6
MAX_PASSAGE_FACETS = 3
PER_TOPIC = 400
CORPUS_SEED = 20240611
FACET_COUNT_PROBS = (0.1, 0.35, 0.35, 0.2)  # a passage covers 0, 1, 2 or 3 facets
TRAP_PROB = 0.2  # a passage says it does not cover one more facet
K = 3  # nDCG@3: the ranking's depth
STRATEGIES = ("topic only", "topic + learned facets", "topic + facets not ruled out")
N_ACTIONS = N_FACETS + 2 * len(STRATEGIES)
N_FEATURES = 2 * N_FACETS + N_TOPICS + 4
HISTORY = 3  # rounds the text view keeps

OPENERS = ("A short guide to {t}.", "A practical note on {t}.", "A friendly post about {t}.",
           "A detailed review for {t} fans.", "An answer to a common {t} question.", "A beginner's page on {t}.")
SECOND = ("Many people ask about {t}.", "This is about {t} in everyday life.", "It is written by someone who loves {t}.",
          "It covers a corner of {t}.")
COVERS = ("It has details on {k}: {a} and {b}.", "It has details on {k}, with a word on {a}.",
          "It has details on {k} and how {b} matters.")
TRAP = "It does not have details on {k}."
FILLER = ("Written for beginners.", "A quick read over lunch.", "Comments are open below.", "Updated last spring.",
          "Shared by a reader.", "Some photos are included.", "It ends with a short list of links.")
STOP = frozenset("a an and the of on to in for is it its this with by how about has have does not no be are at".split())


def tokens(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP]


def facet_keyword(topic: int, facet: int) -> str:
    return TOPICS[topic][2][facet].split()[0]


@dataclass(frozen=True)
class Corpus:
    """The generated passages and their BM25 index (built once per process, see :func:`corpus`)."""

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    topics: np.ndarray  # (N,) int: each passage's topic
    masks: np.ndarray  # (N,) int: bit f set when the passage covers facet f of its topic
    retriever: Any  # bm25s.BM25 over the passages' tokens

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int = K) -> tuple[int, ...]:
        """The top ``k`` passages (indices) BM25 ranks for ``query`` (ties by index); () when no word matches."""
        words = tokens(query)
        if not words:
            return ()
        scores = self.retriever.get_scores(words)
        if not np.any(scores > 0):
            return ()
        order = np.argsort(-scores, kind="stable")[:k]
        return tuple(int(i) for i in order if scores[i] > 0)


def generate_passages(seed: int = CORPUS_SEED) -> list[tuple[int, int, str]]:
    """(topic, facet mask, text) for every passage, shuffled; deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for t, (_, names, facets) in enumerate(TOPICS):
        for _ in range(PER_TOPIC):
            n = int(rng.choice(len(FACET_COUNT_PROBS), p=FACET_COUNT_PROBS))
            chosen = sorted(int(f) for f in rng.choice(N_FACETS, size=n, replace=False))
            name = names[int(rng.integers(len(names)))]
            parts = [OPENERS[int(rng.integers(len(OPENERS)))].format(t=name)]
            if rng.random() < 0.5:
                parts.append(SECOND[int(rng.integers(len(SECOND)))].format(t=names[int(rng.integers(len(names)))]))
            for f in chosen:
                k, a, b = facets[f].split()
                parts.append(COVERS[int(rng.integers(len(COVERS)))].format(k=k, a=a, b=b))
            if rng.random() < TRAP_PROB and n < N_FACETS:
                rest = [f for f in range(N_FACETS) if f not in chosen]
                parts.append(TRAP.format(k=facets[rest[int(rng.integers(len(rest)))]].split()[0]))
            for _ in range(int(rng.integers(0, 3))):
                parts.append(FILLER[int(rng.integers(len(FILLER)))])
            out.append((t, sum(1 << f for f in chosen), " ".join(parts)))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


@functools.cache
def corpus() -> Corpus:
    """The corpus and its BM25 index, generated on first use and shared by every env of the process."""
    import bm25s

    rows = generate_passages()
    texts = tuple(text for _, _, text in rows)
    retriever = bm25s.BM25()
    retriever.index([tokens(t) for t in texts], show_progress=False)
    return Corpus(
        ids=tuple(f"p{i:04d}" for i in range(len(rows))), texts=texts,
        topics=np.array([t for t, _, _ in rows], dtype=np.int64),
        masks=np.array([m for _, m, _ in rows], dtype=np.int64), retriever=retriever,
    )


# ---------------------------------------------------------------------- needs and relevance


@dataclass(frozen=True)
class Need:
    """The hidden task: a topic and the facets (indices into its six) the person wants, in their order."""

    topic: int
    facets: tuple[int, ...]

    @property
    def mask(self) -> int:
        return sum(1 << f for f in self.facets)

    def describe(self, facet: int) -> str:
        """The part of the person's need description about ``facet``."""
        kw = facet_keyword(self.topic, facet)
        said = "has" if facet in self.facets else "does not have"
        return f"I am looking for passages about {TOPICS[self.topic][0]}. The answer I want {said} details on {kw}."


def draw_need(rng: np.random.Generator, need_size: int) -> Need:
    topic = int(rng.integers(N_TOPICS))
    return Need(topic, tuple(int(f) for f in rng.choice(N_FACETS, size=need_size, replace=False)))


_POPCOUNT = np.array([bin(m).count("1") for m in range(1 << N_FACETS)], dtype=np.int64)


def grades(need: Need, passages: "Sequence[int] | np.ndarray | None" = None) -> np.ndarray:
    """Relevance grades: wanted facets covered, 0 for another topic (every passage when None)."""
    c = corpus()
    idx = np.arange(len(c)) if passages is None else np.asarray(passages, dtype=np.int64)
    overlap = _POPCOUNT[c.masks[idx] & need.mask]
    return np.where(c.topics[idx] == need.topic, overlap, 0)


def dcg(g: Sequence[int] | np.ndarray) -> float:
    g = np.asarray(g, dtype=float)[:K]
    return float(np.sum((2.0 ** g - 1.0) / np.log2(np.arange(2, len(g) + 2))))


@functools.lru_cache(maxsize=4096)
def ideal_dcg(need: Need) -> float:
    return dcg(np.sort(grades(need))[::-1][:K])


def ndcg(need: Need, ranking: Sequence[int]) -> float:
    """nDCG@3 of ``ranking`` (passage indices, best first) for ``need``."""
    if not ranking:
        return 0.0
    best = ideal_dcg(need)
    return dcg(grades(need, list(ranking)[:K])) / best if best > 0 else 0.0


def coverage(need: Need, ranking: Sequence[int]) -> dict[int, int]:
    """For each wanted facet, how many of the top passages cover it."""
    masks = corpus().masks[np.asarray(ranking[:K], dtype=np.int64)] if ranking else np.zeros(0, np.int64)
    topics = corpus().topics[np.asarray(ranking[:K], dtype=np.int64)] if ranking else np.zeros(0, np.int64)
    return {f: int(np.sum(((masks >> f) & 1).astype(bool) & (topics == need.topic))) for f in need.facets}


def least_covered(need: Need, counts: Mapping[int, float], shown: int) -> int | None:
    """The wanted facet the feedback names: the least covered (ties by the need's order);
    None when every shown passage covers every wanted facet."""
    worst = min(need.facets, key=lambda f: (counts[f], need.facets.index(f)))
    return None if counts[worst] >= shown else worst


# ---------------------------------------------------------------------- the person


@dataclass(frozen=True)
class Question:
    need: Need
    facet: int


@dataclass(frozen=True)
class Said:
    wanted: bool
    belief: float  # that the facet is wanted, as this person sees it


@dataclass(frozen=True)
class Shown:
    need: Need
    ranking: tuple[int, ...]  # passage indices, at most K


@dataclass(frozen=True)
class Review:
    missing: int | None  # the wanted facet named as missing; None: the ranking has everything
    covered: float  # share of wanted facets every shown passage covers

    def text(self, topic: int) -> str:
        if self.missing is None:
            return "These passages have everything I need."
        return f"These passages have no details on {facet_keyword(topic, self.missing)}."


def persona(need: Need) -> str:
    return f"You are a person searching for passages about {TOPICS[need.topic][0]}."


class Answerer(Role[Question, Said]):
    """Answers a clarifying question about one facet (see the module docs, LLM simulator)."""

    key, name, source = "answerer", "ClarifySearch answerer", Source.USER

    def rule(self, ctx: Question) -> Said:
        wanted = ctx.facet in ctx.need.facets
        return Said(wanted, float(wanted))

    def prompt(self, ctx: Question) -> Questions[Said]:
        kw = facet_keyword(ctx.need.topic, ctx.facet)
        ask = belief(ctx.need.describe(ctx.facet), f"Do you want details on {kw}?",
                     holds=f"The answer I want has details on {kw}.",
                     fails=f"The answer I want does not have details on {kw}.", system=persona(ctx.need))

        def combine(replies: Sequence[Reply]) -> Said:
            p = float(replies[0].expected)
            return Said(p > 0.5, p)

        return Questions((ask,), combine)

    def agreement(self, value: Said) -> float:
        return float(value.belief)

    def record(self, value: Said, ctx: Question) -> Feedback:
        kw = facet_keyword(ctx.need.topic, ctx.facet)
        text = f"Yes, I want details on {kw}." if value.wanted else f"No, I do not need details on {kw}."
        return Feedback(self.source, scalar=float(value.wanted), scale=(0.0, 1.0), text=text)


class Reviewer(Role[Shown, Review]):
    """Says which wanted facet a ranking misses (see the module docs, LLM simulator)."""

    key, name, source = "reviewer", "ClarifySearch reviewer", Source.USER

    @staticmethod
    def decide(need: Need, counts: Mapping[int, float], shown: int) -> Review:
        full = sum(counts[f] >= shown for f in need.facets) / len(need.facets)
        return Review(least_covered(need, counts, shown), full)

    def rule(self, ctx: Shown) -> Review:
        return self.decide(ctx.need, coverage(ctx.need, ctx.ranking), len(ctx.ranking))

    def prompt(self, ctx: Shown) -> Questions[Review]:
        texts = corpus().texts
        need, shown = ctx.need, ctx.ranking[:K]
        prompts = []
        for f in need.facets:
            kw = facet_keyword(need.topic, f)
            for p in shown:
                prompts.append(belief(texts[p], f"Does the passage have details on {kw}?",
                                      holds=f"The passage has details on {kw}.",
                                      fails=f"The passage does not have details on {kw}.", system=persona(need)))

        def combine(replies: Sequence[Reply]) -> Review:
            counts, n = {}, len(shown)
            for i, f in enumerate(need.facets):
                counts[f] = sum(float(r.expected) > 0.5 for r in replies[i * n:(i + 1) * n])
            return self.decide(need, counts, n)

        return Questions(tuple(prompts), combine)

    def agreement(self, value: Review) -> str:
        return "everything" if value.missing is None else f"facet {value.missing}"

    def record(self, value: Review, ctx: Shown) -> Feedback:
        return Feedback(self.source, scalar=value.covered, scale=(0.0, 1.0), text=value.text(ctx.need.topic))


ANSWERER, REVIEWER = Answerer(), Reviewer()

# ---------------------------------------------------------------------- reading the agent


@dataclass(frozen=True)
class Move:
    """What the agent's turn says: ``kind`` is ask, search, rank or invalid."""

    kind: str
    final: bool = False
    facet: int | None = None  # ask
    query: str = ""  # search
    ranking: tuple[int, ...] = ()  # rank (passage indices)
    why: str = ""  # invalid


_VERB = re.compile(r"^\W*(?P<final>final\b\W*)?(?P<verb>ask|search|query|rank)\b\s*[:\-]?\s*(?P<rest>.*)$", re.I | re.S)
_ID = re.compile(r"\bp?(\d{1,5})\b", re.I)


def read_move(text: str, topic: int, n_passages: int) -> Move:
    """The agent's turn as a :class:`Move` (an unreadable one is ``kind="invalid"``)."""
    m = _VERB.match(text)
    if m is None:
        return Move("invalid", why="Reply with ask: <facet>, search: <query> or rank: <ids>.")
    verb, rest, final = m.group("verb").lower(), m.group("rest").strip(), m.group("final") is not None
    if verb == "ask":
        words = set(re.findall(r"[a-z]+", rest.lower()))
        for f in range(N_FACETS):
            if facet_keyword(topic, f) in words:
                return Move("ask", facet=f)
        options = ", ".join(facet_keyword(topic, f) for f in range(N_FACETS))
        return Move("invalid", why=f"Ask about one of: {options}.")
    if verb in ("search", "query"):
        if not tokens(rest):
            return Move("invalid", why="The search query is empty.")
        return Move("search", final=final, query=rest)
    ranking: list[int] = []
    for g in _ID.findall(rest):
        i = int(g)
        if i < n_passages and i not in ranking:
            ranking.append(i)
    if not ranking:
        return Move("invalid", why="The ranking names no known passage id.")
    return Move("rank", final=final, ranking=tuple(ranking[:K]))


def strategy_query(topic: int, strategy: int, wanted: Sequence[int], unwanted: Sequence[int]) -> str:
    """The query of discrete strategy ``strategy`` given what was learned."""
    words = [TOPICS[topic][0]]
    if strategy == 1:
        words += [facet_keyword(topic, f) for f in sorted(wanted)]
    elif strategy == 2:
        words += [facet_keyword(topic, f) for f in range(N_FACETS) if f not in unwanted]
    return " ".join(words)


# ---------------------------------------------------------------------- the env


class ClarifySearchEnv(FeedbackEnv):
    """Ask clarifying questions or show rankings; the person's feedback names what is missing. See module docs."""

    roles = (ANSWERER, REVIEWER)
    names = {"user": "User", "results": "Results", "assistant": "Assistant"}
    keep_rounds = HISTORY
    n_actions, n_features = N_ACTIONS, N_FEATURES

    def __init__(self, *, max_rounds: int = 5, need_size: int = 3, question_cost: float = 0.05, **options: Any):
        super().__init__(**options)
        self.max_rounds = check_int("max_rounds", max_rounds, minimum=1)
        self.need_size = check_int("need_size", need_size, minimum=1, maximum=MAX_PASSAGE_FACETS)
        self.question_cost = check_number("question_cost", question_cost, low=0.0)
        self.corpus = corpus()

    @property
    def need(self) -> Need | None:
        return self.task

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> Need:
        return draw_need(rng, self.need_size)

    def opening(self) -> None:
        self.wanted: list[int] = []  # learned: a yes, or named as missing (in the order learned)
        self.unwanted: list[int] = []  # learned: a no
        self.ndcgs: list[float] = []
        self.questions = 0
        self.satisfied = False
        self.last_ranking: tuple[int, ...] = ()
        self._step_info = {"invalid_action": False, "ndcg": 0.0, "asked": "", "missing_facet": ""}
        topic = TOPICS[self.task.topic][0]
        facets = ", ".join(facet_keyword(self.task.topic, f) for f in range(N_FACETS))
        self.transcript.say("system", (
            f"You help a person find passages about {topic}. Each turn, either ask about one aspect "
            f"({facets}) with \"ask: <aspect>\", or show a ranking with \"search: <query>\" (a search engine "
            f"ranks the passages) or \"rank: p0012, p0450, p0007\". Start your last ranking with \"final\" "
            f"(\"final search: ...\"). You have {self.max_rounds} turns."), to={"assistant"})
        self.transcript.say("user", f"I am looking for passages about {topic}.")

    def respond(self, text: str) -> StepResult:
        need = self.task
        move = read_move(text, need.topic, len(self.corpus))
        info = {"invalid_action": False, "ndcg": 0.0, "asked": "", "missing_facet": ""}
        reward, final = 0.0, False
        if move.kind == "invalid":
            info["invalid_action"] = True
            self.transcript.say("results", f"Unreadable turn: {move.why}")
        elif move.kind == "ask":
            self.questions += 1
            reward = -self.question_cost
            info["asked"] = facet_keyword(need.topic, move.facet)
            answer = self.sim.ask(ANSWERER, Question(need, move.facet))
            self._learn(move.facet, answer.value.wanted)
            self.transcript.say("user", answer.feedback.text)
        else:
            ranking = self.corpus.search(move.query) if move.kind == "search" else move.ranking
            if not ranking:
                info["invalid_action"] = True
                self.transcript.say("results", "No passage matches the query.")
            else:
                final = move.final
                reward = ndcg(need, ranking)
                info["ndcg"] = reward
                self.ndcgs.append(reward)
                self.last_ranking = ranking
                self.transcript.say("results", "\n".join(f"{self.corpus.ids[p]}: {self.corpus.texts[p]}" for p in ranking))
                review = self.sim.ask(REVIEWER, Shown(need, ranking))
                self.satisfied = review.value.missing is None
                if review.value.missing is not None:
                    info["missing_facet"] = facet_keyword(need.topic, review.value.missing)
                    self._learn(review.value.missing, True)
                self.transcript.say("user", review.feedback.text)
        self._step_info = info
        truncated = not final and self.turn >= self.max_rounds
        if not (final or truncated):
            return StepResult(reward, truth=Truth(0.0))
        utility = ndcg(need, self.last_ranking)
        return StepResult(reward, terminated=final, truncated=truncated, truth=Truth(utility, best=1.0),
                          info=self._outcomes(utility))

    def _learn(self, facet: int, wanted: bool) -> None:
        into, other = (self.wanted, self.unwanted) if wanted else (self.unwanted, self.wanted)
        if facet not in into:
            into.append(facet)
        if facet in other:
            other.remove(facet)

    def query(self, strategy: int) -> str:
        return strategy_query(self.task.topic, strategy, self.wanted, self.unwanted)

    def candidate_replies(self) -> Sequence[str]:
        topic = self.task.topic
        asks = [f"ask: {facet_keyword(topic, f)}" for f in range(N_FACETS)]
        searches = [f"search: {self.query(s)}" for s in range(len(STRATEGIES))]
        return asks + searches + [f"final {s}" for s in searches]

    def features(self) -> np.ndarray:
        x = np.zeros(N_FEATURES, dtype=np.float32)
        for f in self.wanted:
            x[f] = 1.0
        for f in self.unwanted:
            x[N_FACETS + f] = 1.0
        x[2 * N_FACETS + self.task.topic] = 1.0
        base = 2 * N_FACETS + N_TOPICS
        x[base:] = (min(self.turn / self.max_rounds, 1.0), min(self.questions / self.max_rounds, 1.0),
                    float(self.satisfied), float(bool(self.ndcgs)))
        return x

    def extra_info(self) -> Mapping[str, Any]:
        return self._step_info

    def _outcomes(self, final: float) -> dict[str, Any]:
        first = self.ndcgs[0] if self.ndcgs else 0.0
        return {
            "ndcg_by_round": tuple(self.ndcgs), "first_ndcg": first, "final_ndcg": final,
            "ndcg_gain": final - first, "questions_asked": self.questions, "rankings": len(self.ndcgs),
        }


# ---------------------------------------------------------------------- scripted policies
# (functions of what the agent has learned, as the discrete view shows it; either view)

TOPIC_ONLY, LEARNED, NOT_RULED_OUT = range(len(STRATEGIES))


def feedback_user(env: ClarifySearchEnv) -> int:
    """Ranks every round with the topic and every facet learned so far (the named missing ones)."""
    return N_FACETS + LEARNED


def ignorer(env: ClarifySearchEnv) -> int:
    """Ranks every round with the topic only, whatever the person said."""
    return N_FACETS + TOPIC_ONLY


def asker(env: ClarifySearchEnv) -> int:
    """Asks about facets in order until it has found ``need_size`` wanted ones (or asked them all),
    ranks with the learned facets, and submits that ranking as final on the last round."""
    asked = set(env.wanted) | set(env.unwanted)
    if env.turn >= env.max_rounds - 1:
        return N_FACETS + len(STRATEGIES) + LEARNED
    if len(env.wanted) < env.need_size and len(asked) < N_FACETS:
        return next(f for f in range(N_FACETS) if f not in asked)
    return N_FACETS + LEARNED


POLICIES = {"feedback-user": feedback_user, "ignorer": ignorer, "asker": asker}


def play(policy):
    """A scripted policy as a policy factory: ``(env) -> (obs, info) -> action``, either view."""
    return scripted(policy)


def feedback_gain(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The paper's direction: mean nDCG@3 gain (final minus first ranking) of the
    feedback-user minus the ignorer's."""

    def gain(policy: str) -> float:
        return float(np.mean([r.outcomes["ndcg_gain"] for r in results[policy]]))

    return gain("feedback-user") - gain("ignorer")


def fidelity_probe() -> Probe:
    return Probe(
        policies={name: play(p) for name, p in POLICIES.items()},
        variants={"default": {}, "two_facets": {"need_size": 2, "max_rounds": 4}},
        direction=feedback_gain,
        direction_doc="mean nDCG@3 gain from the first to the final ranking, feedback-user minus ignorer (> 0)",
        expected_sign={"default": 1, "two_facets": 1},
    )


__all__ = [
    "ANSWERER", "POLICIES", "REVIEWER", "STRATEGIES", "TOPICS", "Answerer", "ClarifySearchEnv", "Corpus", "Move", "Need",
    "Question", "Review", "Reviewer", "Said", "Shown", "asker", "corpus", "coverage", "dcg", "draw_need",
    "facet_keyword", "feedback_gain", "feedback_user", "fidelity_probe", "generate_passages", "grades", "ideal_dcg",
    "ignorer", "ndcg", "play", "read_move", "strategy_query", "tokens",
]
