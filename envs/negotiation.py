"""Negotiation: a buyer and a seller bargain over one item; a coach advises one of them between games.

## Description

From *Improving Language Model Negotiation with Self-Play and In-Context Learning from AI
Feedback* (Fu et al., 2023). Seats ``buyer_0`` and ``seller_0`` bargain over an item with
a public list price; each has a private reservation value drawn from the seed (the most
the buyer will pay, the least the seller will take), known only to its own seat. The
seller opens; the seats alternate offers until one accepts the other's standing offer,
one walks away, or the deal breaks at the horizon (``max_turns`` messages). With
``coach="buyer_0"`` (or ``"seller_0"``) a third seat, ``coach_0``, plays the paper's AI
critic: an episode is ``games`` games of the same bargain, and between games the coach
gives the coached seat one piece of advice ("anchor lower", "concede slower", "concede
faster", "keep your strategy") read from the last game. A simulated player's concession
strategy (anchor, concession rate) changes with the advice, so coaching raises the price
the coached seat gets and, as the paper finds, the risk that the deal breaks. Any seat can
be learnable or simulated (``learnable=``); the coach may itself be the learnable seat,
rewarded by its player's improvement.

## Observation

- ``interface="text"``: ``Dict({"text": ...})``: the seat's brief (item, list price, its own
  limit in words; the coach: the coached seat's limit), the game banners and the last eight
  messages (a coach's advice only to the coached seat and the coach), and whose turn it
  is. ``info["messages"]`` is the seat's chat view.
- ``interface="discrete"``: ``buyer_0`` / ``seller_0``: ``Box(0, 1, (16,))``: its own
  limit, the other side's last and first offer, its own last offer (prices as a share of
  twice the list price), whether an offer stands, whether it is within its limit, whether
  it was called final, the share of the horizon used, the share of games played, whether
  it is its turn, the last advice it got (one-hot of four), whether the last game closed,
  and the list price (over 200). ``coach_0``: ``Box(0, 1, (12,))``: the last game's end
  (deal, walked away, broke at the horizon), the coached seat's surplus (share of the list
  price), the share of the horizon used, how far its first offer was from its limit, the
  share of games played, its last advice (one-hot), and the coached seat's limit.

## Action

- ``buyer_0`` / ``seller_0``: ``text``: a message the env reads: a price (``"I offer
  $45."``; with ``final`` in it, a final offer), ``"I accept your offer."`` or ``"I walk
  away."``. Text with none of these, or an acceptance with no offer standing, is an
  observation (``info["invalid_move"]``): the turn passes with no offer.
  ``discrete``: ``Discrete(22)``: ``0`` accept, ``1`` walk away, ``2 + 2g`` offer grid
  price ``g`` (0.3 to 1.2 times the list price in tenths), ``3 + 2g`` the same as a final
  offer. Each action's text is the text view's, so both views are one task.
- ``coach_0``: ``text``: advice the env reads by its key word (anchor / slower / faster /
  keep; unreadable: ``info["invalid_advice"]``, taken as "keep"); ``discrete``:
  ``Discrete(4)`` in that order.

A seat not on turn has its action ignored (``info["ignored_action"]``).

## Reward

``buyer_0``: its surplus ``(limit - price) / list price`` at each game that closes, 0.0
when the deal breaks or a side walks away; ``seller_0``: ``(price - limit) / list
price``. ``coach_0``: its player's improvement, the coached seat's surplus in a game
minus its surplus in the game before (from the second game on).

## Feedback source

The simulated players' records (``peer``: ``text`` the message, ``scalar`` the price
offered) and the simulated coach's (``critic``: ``text`` its advice).

## True utility

Every step: the seat's own surplus in the games that closed at it (the coach: the
coached seat's surplus), so a coach rewarded for improvement and the player's total
come apart. ``is_success``: the step closed a game with a deal. Each step's info holds
``zopa`` (the width of the zone of agreement over the list price; negative: no deal is
possible) and ``deal_possible``. Outcomes: ``deal_rate``, ``deals``, ``games``,
``walkaways``, ``broken`` (at the horizon), ``buyer_surplus``, ``seller_surplus`` (means
per game), ``buyer_surplus_per_deal``, ``seller_surplus_per_deal``, ``buyer_share``
(the buyer's share of the zone of agreement, over deals: the surplus split),
``rounds_to_deal`` (messages, over deals; 0.0 when none), ``deal_by_game``,
``buyer_surplus_by_game``, ``seller_surplus_by_game``, ``advice`` (the coach's picks),
``invalid_moves``.

## Episode end

Terminated after the last of ``games`` games (each ends with an acceptance, a walk-away
or at the horizon). Truncated when an LLM simulator gives up (``on_parse_error``) or its
backend fails under ``on_backend_error="truncate"``.

## Arguments

``games`` (1), ``coach`` (None, ``"buyer_0"`` or ``"seller_0"``: the coached seat; adds
``coach_0``), ``max_turns`` (12: messages per game before the deal breaks), ``zopa``
(``"any"``; ``"overlap"``: the limits always leave room for a deal; ``"none"``: never),
``learnable`` (``"buyer_0"``; any of the seats, or several). Roles, for
``simulator={...}``: ``negotiator`` (the buyer and seller seats), ``coach``.

## LLM simulator

A simulated player's rule is a concession strategy: it opens at its anchor (a distance
from its limit, in list prices), concedes a fixed share of the gap to its limit with each
offer, and accepts an offer within its limit that is at least as good as its own next
offer. A final offer it accepts if its schedule would reach that price before the deal
breaks (a slow concession is a firmer stand: the coached player holds out), else it walks
away; it calls its own offer final once it reaches its limit. The LLM player is told the
item, its own limit in words (it knows its own reservation value; never the other's), how
far its own plan goes this game (its strategy's last offer), the coach's advice and the
dialogue, and chooses its next message among candidate moves (accept, when the standing
offer is within its limit; the strategy's next offer, plain and as final; holding its last
offer; walking away) as scored choices; a free-text reply
is read like a learnable seat's (an offer beyond its limit is held at the limit). The rule
coach pushes for a better price after a deal (anchor further, then concede slower, in
turn) and asks to concede faster after a break; the LLM coach reads the last game and its
outcome in words (and its own previous advice) and chooses among the four pieces of advice
as scored choices.

``fbenv fidelity`` plays a hardball buyer (opens at 0.3 of the list price, concedes a
tenth of its gap a turn, calls a final offer at its limit) and a yielding one (opens at
the midpoint of list price and limit, concedes a third); the direction is the hardball
buyer's deal rate minus the yielding one's (< 0) by default, and its surplus per deal
minus the yielding one's (> 0) in the ``surplus`` variant (limits always overlap).

## Version history

- v0: initial release.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fbenv.episodes import EpisodeResult, run_parallel_episode, scripted_seats
from fbenv.errors import check_choice, check_int
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.llm.base import Message
from fbenv.parallel import FeedbackParallelEnv
from fbenv.roles import Prompt, Role
from fbenv.truth import StepResult, Truth

BUYER, SELLER, COACH = "buyer_0", "seller_0", "coach_0"
HOST = "host"  # the game banners: in the dialogue's order, not pinned to the top like system turns
PLAYERS = (BUYER, SELLER)
ZOPAS = ("any", "overlap", "none")
ITEMS = ("a used bicycle", "a desk lamp", "a vintage camera", "a pair of speakers", "a wooden bookshelf",
         "a road atlas collection", "a balloon bouquet", "an espresso machine")
GRID = tuple(round(0.3 + 0.1 * g, 1) for g in range(10))  # offer prices as shares of the list price
ACCEPT, WALK = 0, 1
N_PLAYER_ACTIONS = 2 + 2 * len(GRID)
ANCHOR, SLOWER, FASTER, KEEP = range(4)
N_ADVICE = 4
N_PLAYER_FEATURES = 16
N_COACH_FEATURES = 12
HISTORY = 8  # messages kept in the text view
ACCEPT_TEXT, WALK_TEXT = "I accept your offer.", "I walk away."


@dataclass(frozen=True)
class Strategy:
    """A concession strategy: the opening's distance from the limit (in list prices) and the
    share of the opening-to-limit gap conceded with each offer."""

    anchor: float
    rate: float

    def advised(self, advice: int) -> "Strategy":
        """The strategy after a piece of advice (the coached simulated player's update)."""
        if advice == ANCHOR:
            return replace(self, anchor=min(1.5, self.anchor * 1.5 + 0.05))
        if advice == SLOWER:
            return replace(self, rate=max(0.02, self.rate * 0.6))
        if advice == FASTER:
            return replace(self, rate=min(1.0, self.rate * 1.6))
        return self


@dataclass(frozen=True)
class Bargain:
    """The hidden bargain: the item, its list price, each side's limit and opening strategy."""

    item: str
    list_price: int
    buyer_limit: int  # the most the buyer will pay
    seller_limit: int  # the least the seller will take
    buyer_strategy: Strategy
    seller_strategy: Strategy

    def limit(self, seat: str) -> int:
        return self.buyer_limit if seat == BUYER else self.seller_limit


@dataclass(frozen=True)
class Move:
    """One message: ``kind`` is offer, accept, walk or talk (nothing the env could read)."""

    kind: str
    text: str
    price: int | None = None
    final: bool = False


def offer_text(price: int, final: bool = False) -> str:
    return f"${price} is my final offer." if final else f"I offer ${price}."


def offer(price: int, final: bool = False) -> Move:
    return Move("offer", offer_text(price, final), int(price), final)


_WALK = re.compile(r"\b(walk(?:ing)? away|no deal|i(?:'m| am) out)\b", re.I)
_NOT_ACCEPT = re.compile(r"\b(not|never|won'?t|can'?t|cannot|don'?t)\s+(?:\w+\s+)?accept", re.I)
_ACCEPT = re.compile(r"\b(accept\w*|agreed|it'?s a deal|sold)\b", re.I)
_PRICE = re.compile(r"\$\s*(\d+(?:\.\d+)?)|\b(\d+(?:\.\d+)?)\s*(?:dollars|bucks)\b|\b(\d+(?:\.\d+)?)\b")


def parse_move(text: str) -> Move:
    """A message as the env reads it: walk away, accept, an offer (a price; 'final' in it:
    a final offer), else talk."""
    t = " ".join(str(text).split())
    if _WALK.search(t):
        return Move("walk", t)
    if _ACCEPT.search(t) and not _NOT_ACCEPT.search(t):
        return Move("accept", t)
    m = _PRICE.search(re.sub(r"(?<=\d),(?=\d{3}\b)", "", t))  # $1,200
    if m is not None:
        price = float(next(g for g in m.groups() if g is not None))
        if math.isfinite(price) and 0 < price < 1e7:
            return Move("offer", t, int(round(price)), "final" in t.lower())
    return Move("talk", t)


def better(seat: str, a: int, b: int) -> bool:
    """Whether price ``a`` is at least as good as ``b`` for ``seat``."""
    return a <= b if seat == BUYER else a >= b


def within(seat: str, price: int, limit: int) -> bool:
    return better(seat, price, limit)


def concession(seat: str, strategy: Strategy, limit: int, list_price: int, k: int) -> int:
    """The rule player's ``k``-th offer: from its anchor toward its limit by ``rate`` of the gap per offer."""
    gap = strategy.anchor * list_price
    share = min(1.0, k * strategy.rate)
    if seat == SELLER:
        return max(limit, int(round(limit + gap * (1.0 - share))))
    return min(limit, max(1, int(round(limit - gap * (1.0 - share)))))


# ---------------------------------------------------------------------- the simulated players


@dataclass(frozen=True)
class Bargaining:
    """What a simulated player is asked with: what its person knows (item, list price, its own
    limit and strategy, the offers so far, the coach's advice) and the dialogue in words."""

    seat: str
    item: str
    list_price: int
    limit: int
    strategy: Strategy
    mine: tuple[int, ...]  # its own offers this game
    theirs: tuple[int, ...]  # the other side's offers this game
    standing: int | None  # the other side's offer it may accept (None: none stands)
    standing_final: bool
    last_offer: int  # the index of the last offer it can make before the deal breaks
    advice: str
    dialogue: str


def next_offer(ctx: Bargaining) -> Move:
    price = concession(ctx.seat, ctx.strategy, ctx.limit, ctx.list_price, len(ctx.mine))
    return offer(price, final=price == ctx.limit)


def holds_out_at(ctx: Bargaining) -> int:
    """The furthest its schedule goes before the deal breaks: its limit, or short of it when it
    concedes too slowly to get there (a slow concession is a firmer stand, not just a later one)."""
    return concession(ctx.seat, ctx.strategy, ctx.limit, ctx.list_price, max(ctx.last_offer, len(ctx.mine)))


def rule_move(ctx: Bargaining) -> Move:
    """The concession strategy's move (see the module docs)."""
    mine = next_offer(ctx)
    s = ctx.standing
    take = mine.price if not ctx.standing_final else holds_out_at(ctx)
    if s is not None and within(ctx.seat, s, ctx.limit) and better(ctx.seat, s, take):
        return Move("accept", ACCEPT_TEXT)
    if s is not None and ctx.standing_final:
        return Move("walk", WALK_TEXT)
    return mine


def candidate_moves(ctx: Bargaining) -> list[Move]:
    """The moves a simulated player chooses among: never beyond its own limit."""
    nxt = next_offer(ctx)
    out = []
    if ctx.standing is not None and within(ctx.seat, ctx.standing, ctx.limit):
        out.append(Move("accept", ACCEPT_TEXT))
    out += [offer(nxt.price), offer(nxt.price, True)]
    if ctx.mine and ctx.mine[-1] != nxt.price:
        out.append(offer(ctx.mine[-1]))
    out.append(Move("walk", WALK_TEXT))
    return out


def role_word(seat: str) -> str:
    return "buyer" if seat == BUYER else "seller"


def limit_words(seat: str, limit: int) -> str:
    if seat == BUYER:
        return f"You will pay at most ${limit}, never more."
    return f"You will sell for no less than ${limit}."


class Negotiator(Role[Bargaining, Move]):
    """A simulated buyer or seller: a concession strategy (rule), or an LLM choosing its next
    move among candidate moves (see the module docs)."""

    key, name, source = "negotiator", "Negotiation player", Source.PEER

    def rule(self, ctx: Bargaining) -> Move:
        return rule_move(ctx)

    def prompt(self, ctx: Bargaining) -> Prompt[Move]:
        moves = {m.text: m for m in candidate_moves(ctx)}
        other = "seller" if ctx.seat == BUYER else "buyer"
        brief = (f"You are the {role_word(ctx.seat)} of {ctx.item}, listed at ${ctx.list_price}. "
                 f"{limit_words(ctx.seat, ctx.limit)} Get the best price you can from the {other}. "
                 f"You plan to go no further than ${holds_out_at(ctx)} in this game.")
        if ctx.advice:
            brief += f" Your coach advises: {ctx.advice}"
        talk = ctx.dialogue or "(No messages yet: you speak first.)"

        def parse(text: str) -> Move | None:
            m = parse_move(text)
            if m.kind == "talk" or (m.kind == "accept" and ctx.standing is None):
                return None
            if m.kind == "offer" and not within(ctx.seat, m.price, ctx.limit):
                return offer(ctx.limit, m.final)  # a person does not go beyond their own limit
            return m

        return Prompt((Message("system", brief), Message("user", f"{talk}\n\nWhich message do you send next?")),
                      choices=moves, parse=parse, max_tokens=16, stop=("\n",))

    def agreement(self, value: Move) -> Any:
        return f"{value.kind}:{value.price}" if value.kind == "offer" else value.kind

    def record(self, value: Move, ctx: Bargaining) -> Feedback:
        return Feedback(self.source, scalar=None if value.price is None else float(value.price), text=value.text)


NEGOTIATOR = Negotiator()


# ---------------------------------------------------------------------- the coach


def advice_texts(coached: str) -> tuple[str, ...]:
    anchor = ("Anchor lower: open with a lower offer." if coached == BUYER
              else "Anchor higher: open with a higher asking price.")
    return (anchor, "Concede slower: give up less with each counteroffer.",
            "Concede faster: meet them sooner so the deal does not break.", "Keep your strategy.")


def parse_advice(text: str) -> int | None:
    t = str(text).lower()
    for index, words in ((ANCHOR, ("anchor", "open")), (SLOWER, ("slower", "less")), (FASTER, ("faster", "sooner")),
                         (KEEP, ("keep", "same"))):
        if any(w in t for w in words):
            return index
    return None


@dataclass(frozen=True)
class GameResult:
    """How one game ended: ``end`` is deal, walk (with who walked) or broke."""

    end: str
    price: int | None
    moves: int
    buyer_surplus: float  # over the list price
    seller_surplus: float
    walked_by: str | None = None
    first_offers: tuple[tuple[str, int], ...] = ()

    @property
    def deal(self) -> bool:
        return self.end == "deal"

    def surplus(self, seat: str) -> float:
        return self.buyer_surplus if seat == BUYER else self.seller_surplus


@dataclass(frozen=True)
class Coaching:
    """What the coach is asked with: its player's limit, the last game (as played and how it
    ended) and its previous advice."""

    coached: str
    item: str
    list_price: int
    limit: int
    last: GameResult
    previous: int | None
    dialogue: str


def coach_rule(ctx: Coaching) -> int:
    if not ctx.last.deal:
        return FASTER
    return SLOWER if ctx.previous == ANCHOR else ANCHOR


def outcome_words(ctx: Coaching) -> str:
    r, who = ctx.last, role_word(ctx.coached)
    if r.deal:
        kept = abs(ctx.limit - r.price)
        return f"They made a deal at ${r.price}: the {who} kept ${kept} below its limit." if ctx.coached == BUYER \
            else f"They made a deal at ${r.price}: the {who} got ${kept} above its limit."
    if r.end == "walk":
        return f"The {role_word(r.walked_by)} walked away: no deal."
    return "They ran out of time: the deal broke."


class Coach(Role[Coaching, int]):
    """The AI critic between games: rule advice from the last game, or an LLM choosing among
    the four pieces of advice (see the module docs)."""

    key, name, source = "coach", "Negotiation coach", Source.CRITIC

    def rule(self, ctx: Coaching) -> int:
        return coach_rule(ctx)

    def prompt(self, ctx: Coaching) -> Prompt[int]:
        who = role_word(ctx.coached)
        texts = advice_texts(ctx.coached)
        brief = (f"You coach the {who} of {ctx.item}, listed at ${ctx.list_price}. "
                 + limit_words(ctx.coached, ctx.limit).replace("You will", f"The {who} will")
                 + f" Help the {who} get a better price in the next game.")
        before = f"\nYour advice before it: {texts[ctx.previous]}" if ctx.previous is not None else ""
        body = (f"The last game:\n{ctx.dialogue}\n\n{outcome_words(ctx)}{before}\n\n"
                f"Which advice do you give the {who}?")
        return Prompt((Message("system", brief), Message("user", body)), choices={t: i for i, t in enumerate(texts)},
                      parse=parse_advice, max_tokens=24, stop=("\n",))

    def agreement(self, value: int) -> Any:
        return int(value)

    def record(self, value: int, ctx: Coaching) -> Feedback:
        return Feedback(self.source, text=advice_texts(ctx.coached)[int(value)])


COACH_ROLE = Coach()


# ---------------------------------------------------------------------- the game


class NegotiationEnv(FeedbackParallelEnv):
    """A buyer, a seller and optionally a coach; ``games`` games of one bargain. See the module docs."""

    metadata = {"name": "negotiation_v0", "render_modes": ["ansi"], "is_parallelizable": True}
    seats = PLAYERS  # coach_0 joins with ``coach=``
    roles = (NEGOTIATOR, COACH_ROLE)
    seat_roles = {BUYER: NEGOTIATOR, SELLER: NEGOTIATOR, COACH: COACH_ROLE}
    names = {BUYER: "Buyer", SELLER: "Seller", COACH: "Coach", HOST: "Host"}
    n_actions = {BUYER: N_PLAYER_ACTIONS, SELLER: N_PLAYER_ACTIONS, COACH: N_ADVICE}
    n_features = {BUYER: N_PLAYER_FEATURES, SELLER: N_PLAYER_FEATURES, COACH: N_COACH_FEATURES}
    keep_rounds = HISTORY
    turn_based = True

    def __init__(self, *, games: int = 1, coach: str | None = None, max_turns: int = 12, zopa: str = "any",
                 learnable: "str | Iterable[str] | None" = BUYER, **options: Any):
        self.games = check_int("games", games, minimum=1, maximum=100)
        self.coached = None if coach is None else check_choice("coach", coach, PLAYERS)
        self.max_turns = check_int("max_turns", max_turns, minimum=2, maximum=200)
        self.zopa = check_choice("zopa", zopa, ZOPAS)
        if self.coached is not None:
            self.seats = PLAYERS + (COACH,)
        super().__init__(learnable=learnable, max_cycles=self.games * (self.max_turns + 1) + 1, **options)

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> Bargain:
        item = ITEMS[int(rng.integers(len(ITEMS)))]
        price = int(rng.integers(4, 41)) * 5  # $20 to $200
        a, b = (int(round(price * x)) for x in rng.uniform(0.4, 1.0, size=2))
        if self.zopa == "overlap":
            a, b = min(a, b), max(a, b) + 1  # the seller's limit, then the buyer's: room for a deal
        elif self.zopa == "none":
            a, b = max(a, b) + 1, min(a, b)
        strategies = [Strategy(float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.25, 0.4))) for _ in range(2)]
        return Bargain(item, price, buyer_limit=b, seller_limit=a, buyer_strategy=strategies[0],
                       seller_strategy=strategies[1])

    def opening(self) -> None:
        t = self.task
        self.strategies = {BUYER: t.buyer_strategy, SELLER: t.seller_strategy}
        self.results: list[GameResult] = []
        self.advice: list[int] = []
        self.advice_to: dict[str, int] = {}
        self.invalid_moves = 0
        self.over = False
        self._ended: list[int] = []  # the games that ended this step
        self._step_info: dict[str, dict[str, Any]] = {}  # per seat: its move this step could not be read
        for seat in PLAYERS:
            self.transcript.say("system", self._brief(seat), to=(seat,))
        if self.coached is not None:
            who = role_word(self.coached)
            self.transcript.say("system", (
                f"You coach the {who} of {t.item}, listed at ${t.list_price}. "
                + limit_words(self.coached, t.limit(self.coached)).replace("You will", f"The {who} will")
                + f" After each game give the {who} one piece of advice: "
                + " / ".join(f"'{a}'" for a in advice_texts(self.coached))), to=(COACH,))
        self._start_game()

    def _brief(self, seat: str) -> str:
        t = self.task
        other = "seller" if seat == BUYER else "buyer"
        return (f"You are the {role_word(seat)} of {t.item}, listed at ${t.list_price}. "
                f"{limit_words(seat, t.limit(seat))} "
                f"Bargain with the {other}: offer a price ('I offer $40.'; say 'final' for a final offer), "
                f"'{ACCEPT_TEXT}' or '{WALK_TEXT}' The deal breaks after {self.max_turns} messages; "
                f"{self.games} game(s) of this bargain. The seller speaks first.")

    def _start_game(self) -> None:
        self.moves: list[tuple[str, Move]] = []
        self.turn = SELLER
        self.phase = "play"
        self.transcript.say(HOST, f"Game {len(self.results) + 1} of {self.games} begins.")

    # ----------------------------------------------------------------- turns

    def to_act(self) -> tuple[str, ...]:
        if self.over:
            return ()
        return (COACH,) if self.phase == "coach" else (self.turn,)

    def begin_turns(self) -> None:
        self._ended = []
        self._step_info = {}

    def _offers(self, seat: str) -> tuple[int, ...]:
        return tuple(m.price for s, m in self.moves if s == seat and m.kind == "offer")

    def standing(self, seat: str) -> Move | None:
        """The other side's offer that ``seat`` may accept: its last move, if an offer."""
        if self.moves and self.moves[-1][0] != seat and self.moves[-1][1].kind == "offer":
            return self.moves[-1][1]
        return None

    def own_moves(self, seat: str) -> int:
        """How many messages ``seat`` sends in a game that runs to the horizon (the seller opens)."""
        return (self.max_turns + 1) // 2 if seat == SELLER else self.max_turns // 2

    def dialogue(self) -> str:
        return "\n".join(f"{self.names[s]}: {m.text}" for s, m in self.moves)

    def seat_context(self, seat: str) -> Any:
        t = self.task
        if seat == COACH:
            return Coaching(self.coached, t.item, t.list_price, t.limit(self.coached), self.results[-1],
                            self.advice[-1] if self.advice else None, self._last_dialogue)
        s = self.standing(seat)
        other = SELLER if seat == BUYER else BUYER
        advice = advice_texts(seat)[self.advice_to[seat]] if seat in self.advice_to else ""
        return Bargaining(seat, t.item, t.list_price, t.limit(seat), self.strategies[seat], self._offers(seat),
                          self._offers(other), None if s is None else s.price, bool(s and s.final),
                          self.own_moves(seat) - 1, advice, self.dialogue())

    def play_turn(self, seat: str, move: Any) -> None:
        if seat == COACH:
            self._coach(move)
            return
        m = move if isinstance(move, Move) else parse_move(str(move))
        invalid = m.kind == "talk" or (m.kind == "accept" and self.standing(seat) is None)
        if invalid:
            m = Move("talk", m.text)
            self.invalid_moves += 1
        if invalid:
            self._step_info[seat] = {"invalid_move": True}
        self.transcript.begin_round()
        self.transcript.say(seat, m.text)
        standing = self.standing(seat)
        self.moves.append((seat, m))
        if m.kind == "accept":
            self._end_game("deal", standing.price)
        elif m.kind == "walk":
            self._end_game("walk", None, seat)
        elif len(self.moves) >= self.max_turns:
            self._end_game("broke", None)
        else:
            self.turn = SELLER if seat == BUYER else BUYER

    def _end_game(self, end: str, price: int | None, walked_by: str | None = None) -> None:
        t = self.task
        b = (t.buyer_limit - price) / t.list_price if price is not None else 0.0
        s = (price - t.seller_limit) / t.list_price if price is not None else 0.0
        firsts = tuple((seat, self._offers(seat)[0]) for seat in PLAYERS if self._offers(seat))
        result = GameResult(end, price, len(self.moves), b, s, walked_by, firsts)
        self.results.append(result)
        self._ended.append(len(self.results) - 1)
        self._last_dialogue = self.dialogue()
        said = {"deal": f"Deal at ${price}.", "walk": f"The {role_word(walked_by or BUYER)} walked away: no deal.",
                "broke": "Time is up: the deal broke."}[end]
        self.transcript.say(HOST, f"Game {len(self.results)} ends. {said}")
        if len(self.results) >= self.games:
            self.over = True
        elif self.coached is not None:
            self.phase = "coach"
        else:
            self._start_game()

    def _coach(self, move: Any) -> None:
        index = int(move) if isinstance(move, (int, np.integer)) else parse_advice(str(move))
        if index is None:
            self._step_info[COACH] = {"invalid_advice": True}
        index = KEEP if index is None else index
        text = advice_texts(self.coached)[index]
        self.advice.append(index)
        self.advice_to[self.coached] = index
        self.strategies[self.coached] = self.strategies[self.coached].advised(index)
        self.transcript.begin_round()
        self.transcript.say(COACH, text, to=(self.coached, COACH))
        self._start_game()

    def respond(self, turns: Sequence[tuple[str, Any]]) -> Mapping[str, StepResult]:
        out = {}
        for seat in self.possible_agents:
            reward = utility = 0.0
            for k in self._ended:
                r = self.results[k]
                if seat == COACH:
                    reward += r.surplus(self.coached) - self.results[k - 1].surplus(self.coached) if k else 0.0
                    utility += r.surplus(self.coached)
                else:
                    reward += r.surplus(seat)
                    utility += r.surplus(seat)
            success = bool(self._ended) and self.results[self._ended[-1]].deal
            info = self._outcomes() if self.over else {}
            out[seat] = StepResult(reward, terminated=self.over, truth=Truth(utility, success=success), info=info)
        return out

    def _outcomes(self) -> dict[str, Any]:
        rs, t = self.results, self.task
        deals = [r for r in rs if r.deal]
        zone = t.buyer_limit - t.seller_limit

        def mean(xs: Sequence[float]) -> float:
            return float(np.mean(xs)) if len(xs) else 0.0

        return {
            "deal_rate": len(deals) / len(rs), "deals": len(deals), "games": len(rs),
            "walkaways": sum(r.end == "walk" for r in rs), "broken": sum(r.end == "broke" for r in rs),
            "buyer_surplus": mean([r.buyer_surplus for r in rs]),
            "seller_surplus": mean([r.seller_surplus for r in rs]),
            "buyer_surplus_per_deal": mean([r.buyer_surplus for r in deals]),
            "seller_surplus_per_deal": mean([r.seller_surplus for r in deals]),
            "buyer_share": mean([(t.buyer_limit - r.price) / zone for r in deals]) if zone > 0 else 0.0,
            "rounds_to_deal": mean([r.moves for r in deals]),
            "deal_by_game": tuple(r.deal for r in rs),
            "buyer_surplus_by_game": tuple(r.buyer_surplus for r in rs),
            "seller_surplus_by_game": tuple(r.seller_surplus for r in rs),
            "advice": tuple(self.advice), "invalid_moves": self.invalid_moves,
        }

    # ----------------------------------------------------------------- views

    def candidate_replies(self, seat: str) -> Sequence[str]:
        if seat == COACH:
            return advice_texts(self.coached)
        prices = [max(1, int(round(g * self.task.list_price))) for g in GRID]
        return [ACCEPT_TEXT, WALK_TEXT] + [offer_text(p, final) for p in prices for final in (False, True)]

    def text_observation(self, seat: str) -> str:
        text = super().text_observation(seat)
        if not self.over:
            now = to_act[0] if (to_act := self.to_act()) else None
            text += "\n(Your turn.)" if now == seat else f"\n(Waiting for the {self.names[now].lower()}.)"
        return text

    def features(self, seat: str) -> np.ndarray:
        t = self.task
        scale = 2.0 * t.list_price
        if seat == COACH:
            x = np.zeros(N_COACH_FEATURES, dtype=np.float32)
            if self.results:
                r = self.results[-1]
                x[{"deal": 0, "walk": 1, "broke": 2}[r.end]] = 1.0
                x[3] = np.clip(r.surplus(self.coached), 0.0, 1.0)
                x[4] = r.moves / self.max_turns
                first = dict(r.first_offers).get(self.coached)
                if first is not None:
                    x[5] = np.clip(abs(first - t.limit(self.coached)) / scale, 0.0, 1.0)
            x[6] = len(self.results) / self.games
            if self.advice:
                x[7 + self.advice[-1]] = 1.0
            x[11] = min(t.limit(self.coached) / scale, 1.0)
            return x
        x = np.zeros(N_PLAYER_FEATURES, dtype=np.float32)
        other = SELLER if seat == BUYER else BUYER
        theirs, mine, s = self._offers(other), self._offers(seat), self.standing(seat)
        x[0] = min(t.limit(seat) / scale, 1.0)
        x[1] = min(theirs[-1] / scale, 1.0) if theirs else 0.0
        x[2] = min(mine[-1] / scale, 1.0) if mine else 0.0
        x[3] = min(theirs[0] / scale, 1.0) if theirs else 0.0
        if s is not None:
            x[4], x[5], x[6] = 1.0, float(within(seat, s.price, t.limit(seat))), float(s.final)
        x[7] = len(self.moves) / self.max_turns if self.phase == "play" else 0.0
        x[8] = len(self.results) / self.games
        x[9] = float(seat in self.to_act())
        if seat in self.advice_to:
            x[10 + self.advice_to[seat]] = 1.0
        x[14] = float(bool(self.results) and self.results[-1].deal)
        x[15] = min(t.list_price / 200.0, 1.0)
        return x

    def extra_info(self, seat: str) -> dict[str, Any]:
        t = self.task
        zone = (t.buyer_limit - t.seller_limit) / t.list_price
        last = self.results[-1] if self.results else None
        info = {"zopa": zone, "deal_possible": zone >= 0, "game": len(self.results) + (not self.over),
                "invalid_move": False, "invalid_advice": False,
                "deal_price": last.price if last is not None and last.deal else None}
        info.update(self._step_info.get(seat, {}))
        return {k: v for k, v in info.items() if v is not None}


# ---------------------------------------------------------------------- scripted seats
# (functions of the env returning a text or an action index for the seat on turn)


def _seat_on_turn(env: NegotiationEnv) -> str:
    return env.to_act()[0]


def concede(anchor: float, rate: float, final_at_limit: bool = True):
    """A scripted player with a fixed concession strategy (the rule player's, on any seat)."""

    def choose(env: NegotiationEnv) -> str:
        seat = _seat_on_turn(env)
        ctx = env.seat_context(seat)
        move = rule_move(replace(ctx, strategy=Strategy(anchor, rate)))
        if move.kind == "offer" and not final_at_limit:
            move = offer(move.price)
        return move.text

    return choose


def rule_player(env: NegotiationEnv) -> str:
    """The simulated player's own rule on a learnable seat (coached advice included)."""
    seat = _seat_on_turn(env)
    return rule_move(env.seat_context(seat)).text


def hardball(env: NegotiationEnv) -> str:
    """Opens at 0.3 of the list price (a seller: 1.2), concedes a tenth of its gap a turn."""
    seat = _seat_on_turn(env)
    t = env.task
    anchor = abs(t.limit(seat) - (0.3 if seat == BUYER else 1.2) * t.list_price) / t.list_price
    return concede(anchor, 0.1)(env)


def yielding(env: NegotiationEnv) -> str:
    """Opens halfway between the list price and its limit, concedes a third of its gap a turn."""
    seat = _seat_on_turn(env)
    t = env.task
    return concede(abs(t.list_price - t.limit(seat)) / (2 * t.list_price), 1 / 3)(env)


def rule_coach(env: NegotiationEnv) -> int:
    return coach_rule(env.seat_context(COACH))


def silent_coach(env: NegotiationEnv) -> int:
    return KEEP


PLAYER_POLICIES = {"rule": rule_player, "hardball": hardball, "yielding": yielding}
COACH_POLICIES = {"rule": rule_coach, "silent": silent_coach}


def to_action(env: NegotiationEnv, seat: str, text: str) -> int:
    """A player's message as a discrete action: the grid price nearest it on the seat's own
    side (never past the price said), with its final flag."""
    m = parse_move(text)
    if m.kind in ("accept", "walk"):
        return ACCEPT if m.kind == "accept" else WALK
    if m.kind == "talk":
        return WALK if env.standing(seat) is None else ACCEPT
    prices = [max(1, int(round(g * env.task.list_price))) for g in GRID]
    ok = [g for g, p in enumerate(prices) if better(seat, p, m.price)]
    g = (max(ok) if seat == BUYER else min(ok)) if ok else (0 if seat == BUYER else len(GRID) - 1)
    return 2 + 2 * g + int(m.final)


def play(buyer: str = "rule", seller: str = "rule", coach: str = "rule"):
    """Scripted seats by name for whichever seats are learnable: ``(env) -> (seat, obs, info) -> action``
    (in the discrete view a player's message goes to the grid by :func:`to_action`)."""
    table = {BUYER: PLAYER_POLICIES[buyer], SELLER: PLAYER_POLICIES[seller], COACH: COACH_POLICIES[coach]}

    def factory(env: Any):
        base = getattr(env, "unwrapped", env)

        def on_grid(seat: str):
            def choose(e: NegotiationEnv) -> "int | str":
                pick = table[seat](e)
                return to_action(e, seat, pick) if e.interface == "discrete" and seat != COACH else pick
            return choose

        return scripted_seats({s: on_grid(s) for s in base.possible_agents})(env)

    return factory


def run(env: NegotiationEnv, policy, seed: int) -> dict[str, Any]:
    """``{"episode_result": ...}`` of one episode, the shape the bench suite reads."""
    return {"episode_result": run_parallel_episode(env, policy(env), seed).as_info()}


def _mean(results: Sequence[EpisodeResult], key: str) -> float:
    return float(np.mean([r.outcomes[key] for r in results])) if results else 0.0


def bargaining_effect(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The paper's trade-off on the buyer seat: hardball minus yielding deal rate (< 0), and
    in the ``surplus`` variant, hardball minus yielding surplus per deal (> 0)."""
    if variant == "surplus":
        key = "buyer_surplus_per_deal"
        return _mean(results["hardball"], key) - _mean(results["yielding"], key)
    return _mean(results["hardball"], "deal_rate") - _mean(results["yielding"], "deal_rate")


def fidelity_probe() -> Probe:
    return Probe(
        policies={name: play(name) for name in ("hardball", "yielding", "rule")},
        variants={"default": {}, "surplus": {"zopa": "overlap"}},
        direction=bargaining_effect,
        direction_doc="buyer: hardball minus yielding deal rate (< 0); surplus per deal with overlapping limits (> 0)",
        expected_sign={"default": -1, "surplus": 1},
    )


__all__ = [
    "ACCEPT", "ANCHOR", "BUYER", "COACH", "COACH_ROLE", "FASTER", "KEEP", "NEGOTIATOR", "SELLER", "SLOWER", "WALK",
    "Bargain", "Bargaining", "Coach", "Coaching", "GameResult", "Move", "NegotiationEnv", "Negotiator", "Strategy",
    "advice_texts", "bargaining_effect", "candidate_moves", "concession", "fidelity_probe", "parse_advice",
    "parse_move", "play", "rule_move", "run",
]
