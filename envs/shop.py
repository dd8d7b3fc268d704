"""Shop: find and buy what a simulated shopper asked for in a small WebShop-like store.

## Description

From *WebShop* (Yao et al.), as used by *SPA-RL* (stepwise progress attribution), *CALM*
(subgoal rewards) and *Review, Refine, Repeat*: a shopper gives an instruction ("i am
looking for a waterproof, lightweight backpack in blue, and price lower than 48
dollars"), and the agent searches a catalogue, opens items, picks options and buys. The
only reward is at the end: how well the purchase matches what the shopper wanted. It is
the host task for the credit-assignment wrappers :class:`fbenv.wrappers.StepwiseProgress`
and :class:`fbenv.wrappers.SubgoalReward`.

The catalogue is generated once (a fixed seed, cached per process): six categories
(t-shirt, running shoes, backpack, coffee mug, desk lamp, yoga mat), 25 products each,
every product with three of its category's six attributes, three of six colours, two or
three of its category's sizes and a price around the category's base price. At
``reset(seed=...)`` the shopper's hidden goal is drawn from a target product: its
category, two of its attributes, one of its colours and sizes, and a budget 5-40% above
its price. So at least one product matches fully; others may too.

The shopper does not say everything: by default (``hidden_option="size"``) the
instruction leaves the size out, and the agent may ask one clarifying question
(``ask[...]``), which the shopper answers. With ``hidden_option="none"`` the instruction
states the size as well (plain WebShop).

## Observation

- ``interface="text"``: the current page as text, WebShop-style: the instruction (and the
  shopper's answer, once given), then the search box, a result list (``[P0412] Nordic
  backpack, waterproof - $41.30``) or an item page (features, price, colour and size
  options with the current selection), then the actions available on it.
  ``info["messages"]`` has the shopper's turns and the recent pages as chat messages.
- ``interface="discrete"``: ``Box(0, 1, (27,))``, computed from what the agent can see
  (the instruction and the answer, never the hidden goal): the page (search, results,
  item; one-hot), whether the question was asked and the size is known, the step
  (/ ``max_steps``); for each of the five result slots whether it holds a product and how
  well that product visibly fits what is known (the share of: category, each stated
  attribute, the colour offered, the known size offered, the price within the budget);
  on an item page the same fit of the item, whether the selected colour and size are the
  stated ones, and for each of seven option slots 0 (empty), 0.5 (another value) or 1
  (the stated colour or known size); and whether the last action was valid.

## Action

- ``text``: WebShop's action strings. ``search[query]`` (on the search page; the engine
  ranks products by how many query words their text contains, and reads ``under N`` /
  ``under $N`` / ``lower than N dollars`` as a price limit), ``click[P0412]`` (a listed
  result, by id or title), ``click[blue]`` / ``click[medium]`` (an option on an item
  page), ``back`` (item page to results, results to search; also ``click[back]``),
  ``buy`` (on an item page; also ``click[buy now]``) and ``ask[question]`` (once per
  episode, on any page). Anything else, or an action the page does not offer, is an
  observation: the page stays, the shop says the action is invalid,
  ``info["action_valid"]`` is False and the ``invalid_actions`` count grows.
- ``discrete``: ``Discrete(19)`` slots whose meaning depends on the page: 0-2 search
  with query strategy k (the category; the category and stated attributes; everything
  known: attributes, colour, category, the size once known, ``under`` the budget),
  3-7 click result i, 8-14 click option j (the item's colours, then its sizes), 15
  back, 16 buy, 17 ask the size, 18 ask whether there is anything else (answered like
  any question that names no detail). ``info["action_mask"]`` (a numpy bool array of
  length 19) and the ``action_masks()`` method (what sb3-contrib's ``MaskablePPO``
  reads) say which slots are valid now; an invalid slot is an observation as above.
  ``get_action_meanings()`` gives each slot's action string.

## Reward

0 on every step but the purchase; at ``buy``, WebShop's attribute match of the bought
product ``y`` with the selected options against the goal ``u``:
``r_type * (|u_att & y_att| + |u_opt & y_opt| + [price <= budget]) / (|u_att| + |u_opt| + 1)``
with ``r_type`` 1 for the goal's category and 0.1 otherwise, and an option counted only
when it was selected. No purchase (truncation) earns 0.

## Feedback source

The shopper (``user`` records): the instruction at ``reset`` (``info["feedback"]`` of
``reset``), and the answer to the clarifying question on the step it is asked. The
purchase's match is the environment's own scorer, booked as an ``oracle`` record with
the score as ``scalar`` on the buying step.

## True utility

``info["true_utility"]``: the attribute match of the purchase on the buying step, 0
elsewhere; ``info["is_success"]`` is a full match (1.0) and ``info["regret"]`` is
``1 - match`` on the buying step. Per step ``info["action_valid"]``, ``info["page"]``
and, in the discrete view, ``info["action_mask"]``. At the episode's end (the task's
outcomes): ``success`` (1.0 full match, else 0.0), ``match`` (the purchase's match, 0
without one), ``steps`` and ``invalid_actions``. The env also exposes ``progress()``, a
rule estimate in [0, 1] of how far the episode has come (it knows the goal), which
:class:`fbenv.wrappers.StepwiseProgress` uses by default, and :data:`SUBGOALS` for
:class:`fbenv.wrappers.SubgoalReward`.

## Episode end

Terminated by ``buy`` on an item page. Truncated after ``max_steps`` steps without a
purchase, or when an LLM simulator gives up (``on_parse_error``) or its backend fails
under ``on_backend_error="truncate"``, with ``info["feedback_error"]`` and no reward.

## Arguments

``max_steps`` (15: the step budget), ``hidden_option`` (``"size"``: the instruction
leaves the size out until asked; ``"none"``: it states everything), plus the shared
options (``fbenv info`` lists them). Roles, for ``simulator={...}``: ``request`` (phrases
the instruction) and ``clarify`` (answers the clarifying question).

## LLM simulator

The rule shopper phrases the instruction with one of three templates (drawn at
``reset``) and answers the question exactly: the size, the colour or the budget it was
asked about (a question naming none of them gets the withheld detail, or "nothing else"
when nothing is withheld).

The LLM shopper phrases the instruction by choosing among the same three templated
phrasings (scored choices; every phrasing states the same facts, so the choice is style,
not content). It answers a question about the size or the colour with one scored choice
among the values the catalogue has for it, each as the sentence the shopper would say
("The backpack I want has size 30 litre."), after its own need ("The backpack you want has
size 20 litre."), calibrated against the same question about ``N/A``. (Belief questions,
one per value, failed here: SmolLM2-135M took every "has size ..." statement as borne out
and named the right size 0 times in 19; the choice among the sentences names it 19 times
in 19.) The need is what the shopper itself knows, never the catalogue or the product. A
question about the budget is answered by the rule (a number the shopper states as it
is). A free reply is read when it names exactly one of the values; otherwise
``on_parse_error`` applies.

``fbenv fidelity`` plays an oracle shopper's assistant (asks, searches for everything
it knows, opens the best-fitting result, selects the stated colour and the size it was
told, buys), a first-result one (searches the category, buys the first result as it
comes) and random valid actions. Its direction, the oracle's mean match minus the
first-result one's, is expected > 0; with an LLM shopper it shrinks when the shopper
names the wrong size. Embedded SmolLM2-135M, 10 seeds: the shopper's answers agree with
the rule's 19 of 19 times (floor 0.11), reward Spearman 1.00, direction +0.54 as under
the rule (with the per-value belief questions it was +0.34).

## Version history

- v0: initial release.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeResult, scripted
from fbenv.errors import check_choice, check_int
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.llm.base import Message
from fbenv.roles import Prompt, Role
from fbenv.truth import StepResult, Truth

CATALOGUE_SEED = 20240611
PER_CATEGORY = 25
N_RESULTS = 5
N_OPTIONS = 7  # up to three colours and four sizes on an item page
N_QUERIES = 3
R_TYPE_MISMATCH = 0.1
COLOURS = ("black", "white", "blue", "red", "green", "grey")
HIDDEN_OPTIONS = ("size", "none")


class Category(NamedTuple):
    name: str
    attributes: tuple[str, ...]
    sizes: tuple[str, ...]
    base_price: float
    brands: tuple[str, ...]


CATEGORIES = (
    Category("t-shirt", ("cotton", "slim fit", "long sleeve", "machine washable", "v-neck", "organic"),
             ("small", "medium", "large", "x-large"), 22.0, ("Hanover", "Brisk", "Tallow", "Ridge")),
    Category("running shoes", ("waterproof", "lightweight", "breathable", "non-slip", "memory foam", "wide fit"),
             ("size 7", "size 8", "size 9", "size 10"), 70.0, ("Stride", "Kestrel", "Pace", "Arc")),
    Category("backpack", ("waterproof", "laptop sleeve", "lightweight", "anti-theft", "usb charging", "padded straps"),
             ("15 litre", "20 litre", "30 litre"), 45.0, ("Nordic", "Trail", "Urbane", "Carry")),
    Category("coffee mug", ("ceramic", "dishwasher safe", "microwave safe", "insulated", "with lid", "large handle"),
             ("8 oz", "12 oz", "16 oz"), 14.0, ("Hearth", "Kiln", "Morning", "Dune")),
    Category("desk lamp", ("led", "dimmable", "usb charging", "adjustable arm", "touch control", "clamp mount"),
             ("small", "medium", "large"), 35.0, ("Lumen", "Halo", "Beam", "Arbor")),
    Category("yoga mat", ("non-slip", "extra thick", "eco friendly", "with strap", "foldable", "sweat resistant"),
             ("4 mm", "6 mm", "8 mm"), 30.0, ("Lotus", "Balance", "Grounded", "Calm")),
)


class Product(NamedTuple):
    """One catalogue product (immutable, generated once)."""

    pid: str
    category: int
    title: str
    attributes: tuple[str, ...]
    colours: tuple[str, ...]
    sizes: tuple[str, ...]
    price: float
    words: frozenset[str]  # what the search engine matches a query against

    @property
    def options(self) -> tuple[str, ...]:
        return self.colours + self.sizes

    def result_line(self) -> str:
        return f"[{self.pid}] {self.title} - ${self.price:.2f}"


_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@functools.lru_cache(maxsize=1)
def catalogue() -> tuple[Product, ...]:
    """The generated catalogue (deterministic, built once per process)."""
    rng = np.random.default_rng(CATALOGUE_SEED)
    out = []
    for c, cat in enumerate(CATEGORIES):
        for k in range(PER_CATEGORY):
            attrs = tuple(sorted(rng.choice(len(cat.attributes), size=3, replace=False).tolist()))
            attributes = tuple(cat.attributes[a] for a in attrs)
            colours = tuple(COLOURS[i] for i in sorted(rng.choice(len(COLOURS), size=3, replace=False).tolist()))
            n_sizes = int(rng.integers(2, 4))
            sizes = tuple(cat.sizes[i] for i in sorted(rng.choice(len(cat.sizes), size=min(n_sizes, len(cat.sizes)),
                                                                   replace=False).tolist()))
            price = round(float(cat.base_price * rng.uniform(0.6, 1.6)), 2)
            brand = cat.brands[int(rng.integers(len(cat.brands)))]
            title = f"{brand} {cat.name}, {attributes[int(rng.integers(3))]}"
            text = " ".join((title, cat.name, *attributes, *colours, *sizes))
            out.append(Product(f"P{c}{k:03d}", c, title, attributes, colours, sizes, price, frozenset(words(text))))
    return tuple(out)


def by_category(c: int) -> tuple[Product, ...]:
    return catalogue()[c * PER_CATEGORY:(c + 1) * PER_CATEGORY]


@dataclass(frozen=True)
class Goal:
    """The shopper's hidden goal, drawn from ``reset(seed=...)`` alone."""

    target: str  # the product the goal was drawn from (one full match; there may be others)
    category: int
    attributes: tuple[str, ...]
    colour: str
    size: str
    budget: int
    template: int  # how the rule shopper phrases it

    @property
    def category_name(self) -> str:
        return CATEGORIES[self.category].name


def draw_goal(rng: np.random.Generator) -> Goal:
    c = int(rng.integers(len(CATEGORIES)))
    p = by_category(c)[int(rng.integers(PER_CATEGORY))]
    attrs = tuple(sorted(rng.choice(3, size=2, replace=False).tolist()))
    colour = p.colours[int(rng.integers(len(p.colours)))]
    size = p.sizes[int(rng.integers(len(p.sizes)))]
    budget = int(math.ceil(p.price * rng.uniform(1.05, 1.4)))
    return Goal(p.pid, c, tuple(p.attributes[a] for a in attrs), colour, size, budget,
                int(rng.integers(len(TEMPLATES))))


def match(goal: Goal, product: Product, colour: str | None, size: str | None) -> float:
    """WebShop's attribute match of buying ``product`` with the selected options (see Reward)."""
    hits = sum(a in product.attributes for a in goal.attributes)
    hits += (colour == goal.colour) + (size == goal.size) + (product.price <= goal.budget)
    r_type = 1.0 if product.category == goal.category else R_TYPE_MISMATCH
    return r_type * hits / (len(goal.attributes) + 2 + 1)


def best_match(goal: Goal, product: Product) -> float:
    """The match of ``product`` with its best options selected."""
    colour = goal.colour if goal.colour in product.colours else None
    size = goal.size if goal.size in product.sizes else None
    return match(goal, product, colour, size)


# ---------------------------------------------------------------------- the instruction

TEMPLATES = (
    "i am looking for a {attrs} {cat} in {colour}{size}, and price lower than {budget} dollars",
    "Find me a {cat} that is {attrs}, colour {colour}{size}, for less than ${budget}.",
    "I need a {colour} {cat}{size}: {attrs}. My budget is ${budget}.",
)


def phrase(goal: Goal, template: int, with_size: bool) -> str:
    size = f", {size_words(goal)}" if with_size else ""
    return TEMPLATES[template].format(attrs=" and ".join(goal.attributes), cat=goal.category_name,
                                      colour=goal.colour, size=size, budget=goal.budget)


def size_words(goal: Goal) -> str:
    return goal.size if goal.size.startswith("size ") else f"size {goal.size}"


@dataclass(frozen=True)
class Request:
    """What the shopper phrases at ``reset``: its goal, and whether the size is withheld."""

    goal: Goal
    with_size: bool


class RequestRole(Role[Request, int]):
    """Phrases the instruction: the index of the template used (see module docs)."""

    key, name, source = "request", "Shop shopper (request)", Source.USER

    def rule(self, ctx: Request) -> int:
        return ctx.goal.template

    def prompt(self, ctx: Request) -> Prompt[int]:
        g = ctx.goal
        need = (f"You want a {g.category_name}. It must be {' and '.join(g.attributes)}, colour {g.colour}"
                f"{', ' + size_words(g) if ctx.with_size else ''}, at most ${g.budget}.")
        choices = {phrase(g, k, ctx.with_size): k for k in range(len(TEMPLATES))}
        return Prompt((Message("system", "You are a shopper writing one request to an online shop."),
                       Message("user", f"{need}\n\nWhich request do you send?")),
                      choices=choices, max_tokens=60, stop=("\n",))

    def agreement(self, value: int) -> Any:
        return None  # a phrasing is style, not content: not compared

    def record(self, value: int, ctx: Request) -> Feedback:
        return Feedback(self.source, text=phrase(ctx.goal, value, ctx.with_size))


@dataclass(frozen=True)
class Question:
    """A clarifying question: its topic (``size``, ``colour``, ``budget`` or ``other``)."""

    goal: Goal
    topic: str
    withheld: bool  # the size was left out of the instruction


@dataclass(frozen=True)
class Said:
    """The shopper's answer: the topic answered and the value it names (None: nothing)."""

    topic: str
    value: str | None

    def text(self) -> str:
        if self.value is None:
            return "Nothing else, thanks: everything is in my request."
        if self.topic == "budget":
            return f"My budget is ${self.value}."
        if self.topic == "colour":
            return f"I want {self.value}."
        return f"I need {self.value if self.value.startswith('size ') else 'size ' + self.value}."


def topic_of(question: str) -> str:
    q = question.lower()
    for topic, pattern in (("size", r"\bsize|\bbig|\bsmall|\blarge|\blitre|\boz\b|\bmm\b"),
                           ("colour", r"\bcolou?r"), ("budget", r"\bbudget|\bprice|\bcost|\bspend|\$")):
        if re.search(pattern, q):
            return topic
    return "other"


def answer_topic(ctx: Question) -> str:
    if ctx.topic == "other":
        return "size" if ctx.withheld else "none"
    return ctx.topic


class ClarifyRole(Role[Question, Said]):
    """Answers one clarifying question about the shopper's own need (see module docs)."""

    key, name, source = "clarify", "Shop shopper (clarify)", Source.USER

    def rule(self, ctx: Question) -> Said:
        g, topic = ctx.goal, answer_topic(ctx)
        value = {"size": g.size, "colour": g.colour, "budget": str(g.budget)}.get(topic)
        return Said(topic, value)

    def prompt(self, ctx: Question) -> Prompt[Said] | None:
        g, topic = ctx.goal, answer_topic(ctx)
        if topic not in ("size", "colour"):
            return None  # the budget is a number the shopper states as it is; "nothing else" needs no model
        cat = g.category_name
        if topic == "size":
            values, mine = CATEGORIES[g.category].sizes, g.size
            fact = "size"
        else:
            values, mine = COLOURS, g.colour
            fact = "the colour"
        # One scored choice among the values, each stated as the sentence the shopper would say:
        # the 135M model copies the one its need states. (Belief questions, one per value, read
        # every "has size ..." statement as borne out and agreed with the rule 0 of 19 times.)
        statements = {f"The {cat} I want has {fact} {v}.": Said(topic, v) for v in values}

        def messages(text: str) -> tuple[Message, ...]:
            return (Message("system", "You are a shopper answering the shop assistant's question about what you want."),
                    Message("user", f"{text}\n\nWhich {topic} do you want? Answer with one sentence."))

        def parse(text: str) -> Said | None:
            named = [v for v in values if re.search(rf"(?<![\w.]){re.escape(v)}(?!\w)", text, re.I)]
            return Said(topic, named[0]) if len(named) == 1 else None

        return Prompt(messages(f"The {cat} you want has {fact} {mine}."), choices=statements, parse=parse,
                      max_tokens=24, stop=("\n",), calibration=messages("N/A"))

    def agreement(self, value: Said) -> Any:
        return value.value

    def record(self, value: Said, ctx: Question) -> Feedback:
        return Feedback(self.source, text=value.text())


REQUEST, CLARIFY = RequestRole(), ClarifyRole()


# ---------------------------------------------------------------------- the store

SEARCH, RESULTS, ITEM = "search", "results", "item"
PAGES = (SEARCH, RESULTS, ITEM)
SLOT_SEARCH = 0
SLOT_RESULT = SLOT_SEARCH + N_QUERIES
SLOT_OPTION = SLOT_RESULT + N_RESULTS
SLOT_BACK = SLOT_OPTION + N_OPTIONS
SLOT_BUY = SLOT_BACK + 1
SLOT_ASK_SIZE = SLOT_BUY + 1
SLOT_ASK_OTHER = SLOT_ASK_SIZE + 1
N_ACTIONS = SLOT_ASK_OTHER + 1
N_FEATURES = 27
ASK_SIZE = "ask[What size do you need?]"
ASK_OTHER = "ask[Is there anything else I should know?]"

_ACTION = re.compile(r"^\s*(?P<verb>search|click|ask)\s*\[(?P<arg>.*)\]\s*$|^\s*(?P<bare>back|buy)\s*$", re.I | re.S)
_PRICE = re.compile(r"\b(?:under|below|less than|lower than|at most|max)\s*\$?\s*(\d+(?:\.\d+)?)", re.I)


def search(query: str) -> tuple[Product, ...]:
    """The top results for ``query``: most query words matched first (ties: catalogue order);
    a price limit in the query (``under 40``) excludes dearer products."""
    qwords = set(words(_PRICE.sub(" ", query)))
    m = _PRICE.search(query)
    limit = float(m.group(1)) if m else math.inf
    scored = [(-len(qwords & p.words), i) for i, p in enumerate(catalogue()) if p.price <= limit]
    scored = [s for s in scored if s[0] < 0]
    scored.sort()
    return tuple(catalogue()[i] for _, i in scored[:N_RESULTS])


@dataclass
class Known:
    """What the agent has been told: the stated goal, and the size once it is known."""

    category: int
    attributes: tuple[str, ...]
    colour: str
    budget: int
    size: str | None = None

    def fit(self, p: Product) -> float:
        """How well ``p`` visibly fits what is known (the share of facts it meets)."""
        facts = [p.category == self.category, *(a in p.attributes for a in self.attributes),
                 self.colour in p.colours, p.price <= self.budget]
        if self.size is not None:
            facts.append(self.size in p.sizes)
        return sum(facts) / len(facts)

    def queries(self) -> tuple[str, ...]:
        cat = CATEGORIES[self.category].name
        full = " ".join((*self.attributes, self.colour, cat, *((self.size,) if self.size else ())))
        return (cat, f"{' '.join(self.attributes)} {cat}", f"{full} under {self.budget}")


@dataclass
class Page:
    kind: str = SEARCH
    query: str = ""
    results: tuple[Product, ...] = ()
    item: Product | None = None
    colour: str | None = None
    size: str | None = None
    notes: list[str] = field(default_factory=list)


class ShopEnv(FeedbackEnv):
    """Search, open, choose options and buy what a simulated shopper asked for. See module docs."""

    roles = (REQUEST, CLARIFY)
    names = {"shopper": "Shopper", "shop": "Shop", "assistant": "Assistant"}
    keep_rounds = 2
    n_actions, n_features = N_ACTIONS, N_FEATURES

    def __init__(self, *, max_steps: int = 15, hidden_option: str = "size", **options: Any):
        super().__init__(**options)
        self.max_steps = check_int("max_steps", max_steps, minimum=1)
        self.hidden_option = check_choice("hidden_option", hidden_option, HIDDEN_OPTIONS)

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> Goal:
        return draw_goal(rng)

    def opening(self) -> None:
        g = self.task
        stated = self.hidden_option == "none"
        self.known = Known(g.category, g.attributes, g.colour, g.budget, g.size if stated else None)
        self.page = Page()
        self.asked = False
        self.answer: Said | None = None
        self.invalid = 0
        self.purchase: tuple[Product, str | None, str | None] | None = None
        self._valid = True
        self._mask_cache: np.ndarray | None = None
        request = self.sim.ask(REQUEST, Request(g, stated))
        self.instruction = phrase(g, request.value, stated)
        self.transcript.say("system", "You shop for the shopper in a web store. Actions: search[query], "
                            "click[item id], click[option], back, buy, ask[question] (once).", to={"assistant"})
        self.transcript.say("shopper", self.instruction)
        self.transcript.begin_round()
        self.transcript.say("shop", self.page_text())

    def respond(self, text: str) -> StepResult:
        self._mask_cache = None
        self.page.notes = []
        outcome = self._act(text)
        self._valid = outcome is not False
        if outcome is False:
            self.invalid += 1
            self.page.notes.append(f"Invalid action: {text.strip()[:80]!r} is not available on this page.")
        if isinstance(outcome, float):  # bought
            self.transcript.say("shop", f"Thank you for your purchase. Match: {outcome:.3f}.")
            truth = Truth(outcome, best=1.0)
            return StepResult(outcome, terminated=True, truth=truth, info=self._outcomes(outcome))
        self.transcript.begin_round()
        self.transcript.say("shop", self.page_text())
        if self.turn >= self.max_steps:
            return StepResult(0.0, truncated=True, info=self._outcomes(0.0))
        return StepResult(0.0)

    def text_observation(self) -> str:
        head = f"Instruction: {self.instruction}"
        if self.answer is not None:
            head += f"\nShopper: {self.answer.text()}"
        return f"{head}\n{self.page_text()}"

    def candidate_replies(self) -> Sequence[str]:
        page, queries = self.page, self.known.queries()
        out = [f"search[{q}]" for q in queries]
        out += [f"click[{page.results[i].pid}]" if page.kind == RESULTS and i < len(page.results)
                else f"click[result {i + 1}]" for i in range(N_RESULTS)]
        opts = page.item.options if page.kind == ITEM and page.item is not None else ()
        out += [f"click[{opts[j]}]" if j < len(opts) else f"click[option {j + 1}]" for j in range(N_OPTIONS)]
        return out + ["back", "buy", ASK_SIZE, ASK_OTHER]

    def action_masks(self) -> np.ndarray:
        """Which discrete slots are valid now (sb3-contrib's ``MaskablePPO`` reads it)."""
        if self._mask_cache is None:
            page, m = self.page, np.zeros(N_ACTIONS, dtype=bool)
            if page.kind == SEARCH:
                m[SLOT_SEARCH:SLOT_SEARCH + N_QUERIES] = True
            elif page.kind == RESULTS:
                m[SLOT_RESULT:SLOT_RESULT + len(page.results)] = True
                m[SLOT_BACK] = True
            else:
                m[SLOT_OPTION:SLOT_OPTION + len(page.item.options)] = True
                m[SLOT_BACK] = m[SLOT_BUY] = True
            m[SLOT_ASK_SIZE] = m[SLOT_ASK_OTHER] = not self.asked
            self._mask_cache = m
        return self._mask_cache.copy()

    def features(self) -> np.ndarray:
        page, known = self.page, self.known
        x = np.zeros(N_FEATURES, dtype=np.float32)
        x[PAGES.index(page.kind)] = 1.0
        x[3], x[4] = float(self.asked), float(known.size is not None)
        x[5] = min(self.turn / self.max_steps, 1.0)
        if page.kind == RESULTS:
            for i, p in enumerate(page.results):
                x[6 + i], x[11 + i] = 1.0, known.fit(p)
        if page.kind == ITEM:
            item = page.item
            x[16] = known.fit(item)
            x[17] = float(page.colour is not None and page.colour == known.colour)
            x[18] = float(page.size is not None and page.size == known.size)
            for j, o in enumerate(item.options):
                x[19 + j] = 1.0 if o in (known.colour, known.size) else 0.5
        x[26] = float(self._valid)
        return x

    def extra_info(self) -> Mapping[str, Any]:
        info: dict[str, Any] = {"action_valid": self._valid, "page": self.page.kind}
        if self.interface == "discrete":
            info["action_mask"] = self.action_masks()
        return info

    # ----------------------------------------------------------------- the store's logic

    def _act(self, text: str) -> "bool | float":
        """Apply the action: True (done), False (invalid here) or the purchase's match."""
        m = _ACTION.match(text)
        if m is None:
            return False
        page = self.page
        verb = (m.group("verb") or m.group("bare")).lower()
        arg = (m.group("arg") or "").strip()
        if verb == "click" and arg.lower() in ("back", "back to search", "< prev"):
            verb = "back"
        elif verb == "click" and arg.lower() in ("buy", "buy now"):
            verb = "buy"
        if verb == "ask":
            return self._ask(arg)
        if verb == "search":
            if page.kind != SEARCH or not arg:
                return False
            self.page = Page(RESULTS, arg, search(arg))
            return True
        if verb == "back":
            if page.kind == ITEM:
                self.page = Page(RESULTS, page.query, page.results)
            elif page.kind == RESULTS:
                self.page = Page()
            else:
                return False
            return True
        if verb == "buy":
            if page.kind != ITEM:
                return False
            self.purchase = (page.item, page.colour, page.size)
            return match(self.task, page.item, page.colour, page.size)
        return self._click(arg.lower())

    def _click(self, arg: str) -> bool:
        page = self.page
        if page.kind == RESULTS:
            for p in page.results:
                if arg in (p.pid.lower(), p.title.lower()):
                    self.page = Page(ITEM, page.query, page.results, p)
                    return True
        elif page.kind == ITEM:
            if arg in page.item.colours:
                page.colour = arg
                return True
            if arg in page.item.sizes:
                page.size = arg
                return True
        return False

    def _ask(self, question: str) -> bool:
        if self.asked or not question:
            return False
        self.asked = True
        ctx = Question(self.task, topic_of(question), self.hidden_option == "size")
        said = self.sim.ask(CLARIFY, ctx).value
        self.answer = said
        if said.topic == "size" and said.value is not None:
            self.known.size = said.value
        self.transcript.say("shopper", said.text())
        return True

    def page_text(self) -> str:
        page = self.page
        lines = [f"Page: {page.kind}."] + page.notes
        if page.kind == SEARCH:
            lines.append("Type a search: search[query].")
            actions = ["search[...]"]
        elif page.kind == RESULTS:
            lines.append(f"Results for {page.query!r}:" if page.results else f"No results for {page.query!r}.")
            lines += [p.result_line() for p in page.results]
            actions = [f"click[{p.pid}]" for p in page.results] + ["back"]
        else:
            p = page.item
            lines += [f"[{p.pid}] {p.title}", f"Features: {', '.join(p.attributes)}", f"Price: ${p.price:.2f}",
                      f"Colour: {' | '.join(p.colours)} (selected: {page.colour or 'none'})",
                      f"Size: {' | '.join(p.sizes)} (selected: {page.size or 'none'})"]
            actions = [f"click[{o}]" for o in p.options] + ["buy", "back"]
        if not self.asked:
            actions.append("ask[...]")
        lines.append("Actions: " + ", ".join(actions))
        return "\n".join(lines)

    def _outcomes(self, score: float) -> dict[str, Any]:
        if self.purchase is not None:
            self.sim.ledger.add(Feedback(Source.ORACLE, scalar=score, scale=(0.0, 1.0),
                                         text=f"Purchase match: {score:.3f}"))
        return {"success": float(score >= 1.0), "match": float(score), "steps": self.turn,
                "invalid_actions": self.invalid}

    # ----------------------------------------------------------------- hooks for the wrappers

    def progress(self) -> float:
        """A rule estimate in [0, 1] of how far the episode has come toward a full match
        (it knows the goal): 0.1 once the size is known, plus 0.3 x the best match among
        the listed results (results page) or 0.3 x the item's best match and 0.5 x its
        match with the current selection (item page). At most 0.9 before buying."""
        g, page = self.task, self.page
        p = 0.1 * (self.known.size is not None)
        if page.kind == RESULTS and page.results:
            p += 0.3 * max(best_match(g, r) for r in page.results)
        elif page.kind == ITEM:
            p += 0.3 * best_match(g, page.item) + 0.5 * match(g, page.item, page.colour, page.size)
        return float(p)


# ---------------------------------------------------------------------- subgoals (CALM)


def _shop(env: Any) -> ShopEnv:
    return env.unwrapped


SUBGOALS: Mapping[str, Callable[[Any, Mapping[str, Any]], bool]] = {
    "asked": lambda env, info: _shop(env).asked,
    "searched": lambda env, info: _shop(env).page.kind != SEARCH,
    "opened_category": lambda env, info: (_shop(env).page.kind == ITEM
                                          and _shop(env).page.item.category == _shop(env).task.category),
    "chose_colour": lambda env, info: _shop(env).page.kind == ITEM and _shop(env).page.colour == _shop(env).task.colour,
    "chose_size": lambda env, info: _shop(env).page.kind == ITEM and _shop(env).page.size == _shop(env).task.size,
}


# ---------------------------------------------------------------------- scripted policies


def oracle_steps(env: ShopEnv) -> str:
    """What an assistant that uses everything it is told does next (a text action)."""
    page, known = env.page, env.known
    if known.size is None and not env.asked:
        return ASK_SIZE
    if page.kind == SEARCH:
        return f"search[{known.queries()[-1]}]"
    if page.kind == RESULTS:
        if not page.results:
            return "back"
        best = max(page.results, key=lambda p: (known.fit(p), -page.results.index(p)))
        return f"click[{best.pid}]"
    item = page.item
    if known.colour in item.colours and page.colour != known.colour:
        return f"click[{known.colour}]"
    if known.size is not None and known.size in item.sizes and page.size != known.size:
        return f"click[{known.size}]"
    return "buy"


def first_result_steps(env: ShopEnv) -> str:
    """Searches the category and buys the first result as it comes."""
    page = env.page
    if page.kind == SEARCH:
        return f"search[{env.known.queries()[0]}]"
    if page.kind == RESULTS:
        return f"click[{page.results[0].pid}]" if page.results else "back"
    return "buy"


def play(steps: Callable[[ShopEnv], str]):
    """A scripted policy as a policy factory: ``(env) -> (obs, info) -> action``, either view."""
    return scripted(steps)


def random_valid(env):
    """A policy factory: uniformly random valid slots (seeded by the episode's own rng state)."""
    base = env.unwrapped

    def act(obs, info):
        valid = np.flatnonzero(base.action_masks())
        rng = np.random.default_rng([base.turn, base.invalid, len(valid), int(base.task.target[1:])])
        slot = int(valid[rng.integers(len(valid))])
        return slot if base.interface == "discrete" else base.candidate_replies()[slot]

    return act


POLICIES = {"oracle": play(oracle_steps), "first-result": play(first_result_steps), "random": random_valid}


def oracle_minus_first(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The direction: the oracle's mean purchase match minus the first-result policy's."""

    def mean(policy: str) -> float:
        return float(np.mean([r.outcomes.get("match", 0.0) for r in results[policy]]))

    return mean("oracle") - mean("first-result")


def fidelity_probe() -> Probe:
    return Probe(
        policies=POLICIES,
        variants={"default": {}, "all_stated": {"hidden_option": "none"}},
        direction=oracle_minus_first,
        direction_doc="oracle mean purchase match minus first-result mean purchase match (> 0)",
        expected_sign={"default": 1, "all_stated": 1},
    )


__all__ = [
    "CATEGORIES", "CLARIFY", "COLOURS", "N_ACTIONS", "POLICIES", "REQUEST", "SUBGOALS", "TEMPLATES", "ClarifyRole",
    "Goal", "Known", "Product", "Question", "Request", "RequestRole", "Said", "ShopEnv", "best_match", "catalogue",
    "draw_goal", "fidelity_probe", "first_result_steps", "match", "oracle_minus_first", "oracle_steps", "phrase",
    "play", "random_valid", "search", "topic_of",
]
