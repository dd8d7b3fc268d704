"""Commons: a gathering (or cleanup) gridworld, a sequential social dilemma with sparse or dense feedback.

## Description

From *Cooperation and Exploitation in LLM Policy Synthesis for Sequential Social
Dilemmas* (after the Harvest and Cleanup games of Perolat et al., 2017 and Hughes et
al., 2018). ``n_agents`` seats, ``agent_0`` ... ``agent_{N-1}``, each learnable or
simulated, move at once on a small grid and eat apples (+1 each). In ``game="harvest"``
an empty apple cell regrows with a probability that grows with the apples within two
cells of it (none near: it never regrows), so a population that eats every apple it
sees empties the orchard for good, and one that leaves the apples with few neighbours
keeps it growing. In ``game="cleanup"`` apples grow anywhere in the orchard at a rate
that falls as waste fills the river: someone must walk to the river and clean, at the
cost of eating. Any seat may zap another within reach, freezing it for ``freeze``
steps. After each episode (or every ``feedback_every`` steps) every seat is told how it
did: its return (``feedback="sparse"``), or its return and the group's efficiency,
equality, sustainability and peace (``"dense"``), the paper's two feedback regimes.

Simultaneous play: every seat acts each step; the moves resolve in a random order
(a move into a wall or a seat fails), zaps first, then cleaning, then moves and eating.

## Observation

- ``interface="discrete"`` (every seat): ``Box(0, 1, (5 * (2 * view + 1) ** 2 + 12,))``:
  the egocentric window of radius ``view`` (default 2: 5 x 5) as five flat channels
  (apple, other seat, wall or outside, waste, river), then the seat's own state: frozen
  (share of ``freeze`` left), position (row, column shares), the share of the episode
  used, its return so far over ``max_cycles``, whether a report has come, the last
  report's return (per step of its window), efficiency, equality, sustainability and
  peace (the last four 0 under sparse feedback), and whether the game is cleanup.
- ``interface="text"`` (``Dict({"text": ...})``): the local window drawn in characters
  (``@`` the seat, ``A`` apple, ``P`` another seat, ``F`` a frozen one, ``#`` outside,
  ``~`` river, ``w`` waste, ``.`` empty; north is up), the seat's status, its latest
  report in words, and the moves.

## Action

``Discrete(7)`` / text: ``stay``, ``move up``, ``move down``, ``move left``,
``move right``, ``zap`` (freezes the nearest unfrozen seat within ``zap_range`` cells,
Chebyshev), ``clean`` (removes the waste within one cell; nothing in harvest). A text
is read by its first move word (``up``, ``north``, ``zap``, ``clean``...); one with
none is an observation: the seat stays and ``info["invalid_action"]`` is set. A frozen
seat's action is not played.

## Reward

Each seat's own apples eaten this step (+1 each): the selfish reward of the dilemma.

## Feedback source

The game's score report, one ``execution`` record per seat per report (``scalar`` the
seat's return over the report's window, ``text`` the report: sparse, the return;
dense, also the group's efficiency, equality, sustainability and peace over the
window), booked on the step it comes and given to the seat as ``info["report"]``
(``info["report_due"]`` is True on that step) and as text (its observation and its
chat view). A simulated seat's move is a ``peer`` record (``text`` the move).

## True utility

The group's welfare per seat: every seat's ``true_utility`` is the apples all seats ate
this step over ``n_agents``, so a seat's feedback return (its own apples) and the group's
good can come apart (a zapper gains by freezing others; a greedy population ends
poorer). Every step's ``info`` carries the social outcomes so far: ``efficiency``
(apples per seat per step), ``equality`` (1 - Gini of the seats' returns), ``sustainability``
(the mean step of the apples eaten over the steps played: 0.5 for a steady harvest,
lower when the harvest stopped early), ``peace`` (1 - the share of seat-steps spent
frozen) and ``apples`` (on the grid now). Outcomes at the end: those, and
``total_return``, ``depleted`` (no apple left and none can regrow), ``zaps``,
``cleaned`` and ``invalid_actions``.

## Episode end

Truncated after ``max_cycles`` steps (default 200) for every seat, or when an LLM
simulator gives up (``on_parse_error``) or its backend fails under
``on_backend_error="truncate"``, with ``info["feedback_error"]``. Nothing terminates.

## Arguments

``n_agents`` (4), ``game`` ("harvest" | "cleanup"), ``size`` ((9, 13): rows, columns),
``view`` (2), ``feedback`` ("sparse" | "dense"), ``feedback_every`` (None: once, at the
end of the episode), ``population`` (the rule policy of each simulated seat: one name
for all or one per seat; "greedy", "restrained", "cleaner", "zapper", "adaptive";
default "restrained"), ``restraint`` (3: a restrained harvester eats an apple only when
at least this many other apples are within two cells of it), ``regrowth`` (1.0: a
factor on the harvest regrowth rates 0.01 / 0.05 / 0.1 for 1-2 / 3-4 / 5+ apples near),
``zap_range`` (2), ``freeze`` (5 steps), ``pollution`` (0.04: the chance a clean river
cell fouls each step), ``apple_rate`` (0.06: an orchard cell's chance to grow an apple
each step with a clean river). Role key, for ``simulator={...}``: ``agent``.

## LLM simulator

A simulated seat is the ``agent`` role. The rule plays the seat's policy in
``population``: ``greedy`` walks to the nearest apple and eats; ``restrained`` eats only
apples with at least ``restraint`` apples near (it leaves the few that reseed the
orchard); ``cleaner`` cleans the river while it has waste (restrained otherwise);
``zapper`` zaps any unfrozen seat within reach, greedy otherwise; ``adaptive`` is a
restrained harvester whose restraint starts at 0 and moves with its reports: with dense
feedback it restrains more when sustainability falls below 0.45 and less above 0.55;
with sparse feedback it only sees its return and climbs it (it keeps the direction
that raised its return, else turns). The LLM is told its surroundings in words (where
the nearest apple is and how many apples are near it, the river's waste, the nearest
seat, its apples so far, its latest report) and picks its move among the legal moves as
scored choices; a free-text reply is read by its move word.

``fbenv fidelity`` plays a greedy, a restrained and an adaptive learnable ``agent_0``
beside the simulated population: the direction is the restrained population's total
return minus the greedy one's over the horizon (> 0: restraint sustains the commons).

## Version history

- v0: initial release.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fbenv.episodes import EpisodeResult
from fbenv.errors import InvalidArgumentError, check_choice, check_int, check_number, check_type
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.llm.base import Message
from fbenv.parallel import FeedbackParallelEnv
from fbenv.roles import Prompt, Role
from fbenv.truth import StepResult, Truth

GAMES = ("harvest", "cleanup")
FEEDBACKS = ("sparse", "dense")
POLICIES = ("greedy", "restrained", "cleaner", "zapper", "adaptive")
MOVES = ("stay", "move up", "move down", "move left", "move right", "zap", "clean")
STAY, UP, DOWN, LEFT, RIGHT, ZAP, CLEAN = range(7)
DELTAS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
N_MOVES = len(MOVES)
N_CHANNELS = 5  # apple, other seat, wall/outside, waste, river
N_STATE = 12
DEFAULT_AGENTS = 4
MAX_RESTRAINT = 8
RIVER_COLS = 2  # cleanup: the river's columns, on the left
_WORDS = (
    (re.compile(r"\b(zap|freeze|fire)\b"), ZAP), (re.compile(r"\b(clean|cleans|cleaning)\b"), CLEAN),
    (re.compile(r"\b(up|north)\b"), UP), (re.compile(r"\b(down|south)\b"), DOWN),
    (re.compile(r"\b(left|west)\b"), LEFT), (re.compile(r"\b(right|east)\b"), RIGHT),
    (re.compile(r"\b(stay|wait|stop|still)\b"), STAY),
)


def read_move(text: str) -> int | None:
    """The move a text names: the earliest move word in it (None: none)."""
    t = text.lower()
    found = [(m.start(), move) for rx, move in _WORDS if (m := rx.search(t))]
    return min(found)[1] if found else None


def gini(x: np.ndarray) -> float:
    """The Gini coefficient of non-negative returns (0 when nobody has anything)."""
    x = np.asarray(x, dtype=float)
    total = x.sum()
    if total <= 0:
        return 0.0
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) * total))


def neighbour_counts(apples: np.ndarray) -> np.ndarray:
    """Per cell, the apples within two cells (a disk of radius 2, the cell itself excluded)."""
    h, w = apples.shape
    pad = np.pad(apples.astype(np.int16), 2)
    out = np.zeros((h, w), dtype=np.int16)
    for dr, dc in _DISK:
        out += pad[2 + dr:2 + dr + h, 2 + dc:2 + dc + w]
    return out


def disk_matrix(rows: int, cols: int) -> np.ndarray:
    """The (cells x cells) matrix of :func:`neighbour_counts`: one product per step instead of 12 shifts."""
    idx = np.arange(rows * cols)
    r, c = idx // cols, idx % cols
    d2 = (r[:, None] - r[None, :]) ** 2 + (c[:, None] - c[None, :]) ** 2
    return ((d2 > 0) & (d2 <= 4)).astype(np.float32)


_DISK = tuple((dr, dc) for dr in range(-2, 3) for dc in range(-2, 3) if 0 < dr * dr + dc * dc <= 4)
REGROWTH = np.array([0.0, 0.01, 0.01, 0.05, 0.05] + [0.1] * (len(_DISK) - 4))  # by apples near (Harvest)


# ---------------------------------------------------------------------- social outcomes


@dataclass
class Window:
    """What happened over a span of steps: each seat's apples, when they were eaten, frozen steps."""

    start: int
    n: int
    returns: np.ndarray = field(init=False)
    eaten: int = 0
    time_sum: float = 0.0
    frozen: int = 0

    def __post_init__(self) -> None:
        self.returns = np.zeros(self.n)

    def add(self, t: int, gains: np.ndarray, frozen: int) -> None:
        self.returns += gains
        k = int(gains.sum())
        self.eaten += k
        self.time_sum += k * (t - self.start)
        self.frozen += frozen

    def metrics(self, t: int) -> dict[str, float]:
        steps = max(t - self.start, 1)
        return {
            "efficiency": float(self.eaten / (self.n * steps)),
            "equality": 1.0 - gini(self.returns),
            "sustainability": float(self.time_sum / self.eaten / steps) if self.eaten else 0.0,
            "peace": 1.0 - self.frozen / (self.n * steps),
        }


def report_text(seat: str, first: int, last: int, own: float, metrics: Mapping[str, float] | None) -> str:
    """A report in words: the seat's return, and under dense feedback the group's outcomes."""
    text = f"Report for {seat}, steps {first}-{last}: you ate {own:g} apples."
    if metrics is not None:
        text += (f" The group: efficiency {metrics['efficiency']:.2f} apples per agent per step, equality "
                 f"{metrics['equality']:.2f}, sustainability {metrics['sustainability']:.2f}, "
                 f"peace {metrics['peace']:.2f}.")
    return text


# ---------------------------------------------------------------------- the simulated seats


@dataclass(frozen=True)
class Seeing:
    """What a simulated seat is asked with: the env (for the rule, which reads the grid)
    and the seat; the LLM is told only :meth:`CommonsEnv.describe` in words."""

    env: Any
    seat: str


def restrained_move(env: "CommonsEnv", i: int, restraint: int) -> int:
    """Walk to the nearest apple with at least ``restraint`` apples near and eat it (stay if none)."""
    targets = env.apples & (env.near() >= restraint) if restraint > 0 else env.apples
    return env.step_toward(i, targets)


def policy_move(env: "CommonsEnv", i: int, kind: str) -> int:
    """The move rule policy ``kind`` makes for seat ``i`` now."""
    if kind == "greedy":
        return restrained_move(env, i, 0)
    if kind == "zapper":
        return ZAP if env.zap_target(i) is not None else restrained_move(env, i, 0)
    if kind == "cleaner" and env.game == "cleanup" and env.waste.any():
        if env.waste_near(i):
            return CLEAN
        return env.step_toward(i, env.waste, reach=1)
    if kind == "adaptive":
        return restrained_move(env, i, int(env.restraints[i].level))
    return restrained_move(env, i, env.restraint)


class Agent(Role[Seeing, str]):
    """A simulated seat: the rule plays its population policy; the LLM picks among the legal moves."""

    key, name, source = "agent", "Commons agent", Source.PEER

    def rule(self, ctx: Seeing) -> str:
        env = ctx.env
        i = env.index[ctx.seat]
        return MOVES[policy_move(env, i, env.population[i])]

    def prompt(self, ctx: Seeing) -> Prompt[str] | None:
        env = ctx.env
        i = env.index[ctx.seat]
        if env.frozen[i] > 0:
            return None  # a frozen seat's move is not played: no model is asked
        legal = env.legal_moves(i)
        system = ("You gather apples in an orchard shared with other agents; each apple you eat is worth 1. "
                  "Apples regrow only near other apples" if env.game == "harvest" else
                  "You gather apples in an orchard shared with other agents; each apple you eat is worth 1. "
                  "Apples grow only while the river is clean: anyone can clean it")
        system += ", so eating every apple leaves none for later. You can zap a nearby agent to freeze it."
        user = env.describe(i) + "\n\nWhat do you do next?"
        return Prompt((Message("system", system), Message("user", user)),
                      choices={MOVES[m]: MOVES[m] for m in legal},
                      parse=lambda t: MOVES[m] if (m := read_move(t)) is not None else None, max_tokens=8,
                      stop=("\n",))

    def agreement(self, value: str) -> Any:
        return value

    def record(self, value: str, ctx: Seeing) -> Feedback:
        return Feedback(self.source, text=f"{ctx.seat}: {value}")


AGENT = Agent()


# ---------------------------------------------------------------------- the env


@dataclass(frozen=True)
class CommonsTask:
    """The hidden task: the grid's layout and the seats' starting cells (the world's own
    randomness comes from ``world_seed``, so LLM seeds drawn later shift nothing)."""

    orchard: tuple[tuple[int, int], ...]  # harvest: the apple cells at the start; cleanup: where apples may grow
    starts: tuple[tuple[int, int], ...]
    world_seed: int


def seat_names(n: int) -> tuple[str, ...]:
    return tuple(f"agent_{i}" for i in range(n))


def window_features(view: int) -> int:
    return N_CHANNELS * (2 * view + 1) ** 2 + N_STATE


class CommonsEnv(FeedbackParallelEnv):
    """A gathering/cleanup commons of ``n_agents`` simultaneous seats. See the module docs."""

    metadata = {"name": "commons_v0", "render_modes": ["ansi"], "is_parallelizable": True}
    seats = seat_names(DEFAULT_AGENTS)
    roles = (AGENT,)
    seat_roles = {s: AGENT for s in seats}
    names = {s: s for s in seats}
    n_actions = {s: N_MOVES for s in seats}
    n_features = {s: window_features(2) for s in seats}
    keep_rounds = 1

    def __init__(self, *, n_agents: int = DEFAULT_AGENTS, game: str = "harvest", size: Sequence[int] = (9, 13),
                 view: int = 2, feedback: str = "sparse", feedback_every: int | None = None,
                 population: "str | Sequence[str]" = "restrained", restraint: int = 3, regrowth: float = 1.0,
                 zap_range: int = 2, freeze: int = 5, pollution: float = 0.04, apple_rate: float = 0.06,
                 max_cycles: int = 200, **options: Any):
        n = check_int("n_agents", n_agents, minimum=1, maximum=16)
        self.game = check_choice("game", game, GAMES)
        check_type("size", size, (tuple, list))
        if len(size) != 2:
            raise InvalidArgumentError(f"size: expects (rows, columns), actual {size!r}")
        self.size = (check_int("size[0]", size[0], minimum=5, maximum=64), check_int("size[1]", size[1], minimum=5, maximum=64))
        self.view = check_int("view", view, minimum=1, maximum=6)
        self.feedback = check_choice("feedback", feedback, FEEDBACKS)
        self.feedback_every = None if feedback_every is None else check_int("feedback_every", feedback_every, minimum=1)
        kinds = (population,) * n if isinstance(population, str) else tuple(population)
        if len(kinds) != n:
            raise InvalidArgumentError(f"population: expects one policy or {n} (one per seat), actual {len(kinds)}")
        self.population = tuple(check_choice("population", k, POLICIES) for k in kinds)
        self.restraint = check_int("restraint", restraint, minimum=0, maximum=MAX_RESTRAINT)
        self.regrowth = check_number("regrowth", regrowth, 0.0, 10.0)
        self.zap_range = check_int("zap_range", zap_range, minimum=1, maximum=8)
        self.freeze = check_int("freeze", freeze, minimum=1, maximum=100)
        self.pollution = check_number("pollution", pollution, 0.0, 1.0)
        self.apple_rate = check_number("apple_rate", apple_rate, 0.0, 1.0)
        rows, cols = self.size
        cells = rows * cols - (rows * RIVER_COLS if self.game == "cleanup" else 0)
        if n > cells // 2:
            raise InvalidArgumentError(f"n_agents: expects at most {cells // 2} on a {rows}x{cols} grid, actual {n}")
        # the seats depend on n_agents: instance attributes the base reads
        self.seats = seat_names(n)
        self.seat_roles = {s: AGENT for s in self.seats}
        self.names = {s: s for s in self.seats}
        self.n_actions = {s: N_MOVES for s in self.seats}
        self.n_features = {s: window_features(self.view) for s in self.seats}
        self.index = {s: i for i, s in enumerate(self.seats)}
        self.n = n
        self._disk = disk_matrix(*self.size)
        super().__init__(max_cycles=max_cycles, **options)

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> CommonsTask:
        rows, cols = self.size
        if self.game == "harvest":
            orchard = harvest_layout(rows, cols)
        else:
            orchard = tuple((r, c) for r in range(rows) for c in range(cols) if c >= cols // 2)
        taken = set(orchard) if self.game == "harvest" else set()
        free = [(r, c) for r in range(rows) for c in range(cols) if (r, c) not in taken
                and not (self.game == "cleanup" and c < RIVER_COLS)]
        if len(free) < self.n:
            free = [(r, c) for r in range(rows) for c in range(cols)]
        picks = rng.choice(len(free), size=self.n, replace=False)
        return CommonsTask(orchard, tuple(free[int(k)] for k in picks), int(rng.integers(2**63 - 1)))

    def opening(self) -> None:
        rows, cols = self.size
        t = self.task
        self.world = np.random.default_rng(t.world_seed)
        self.apples = np.zeros((rows, cols), dtype=bool)
        self.orchard = np.zeros((rows, cols), dtype=bool)
        for r, c in t.orchard:
            self.orchard[r, c] = True
        self.river = np.zeros((rows, cols), dtype=bool)
        self.waste = np.zeros((rows, cols), dtype=bool)
        if self.game == "harvest":
            self.apples[:] = self.orchard
        else:
            self.river[:, :RIVER_COLS] = True
            self.waste[:] = self.river & (self.world.random((rows, cols)) < 0.3)  # a river already half fouled
            self.apples[:] = self.orchard & (self.world.random((rows, cols)) < 0.25)
        self.pos = np.array(t.starts, dtype=np.int64)
        self.frozen = np.zeros(self.n, dtype=np.int64)
        self.returns = np.zeros(self.n)
        self.restraints = [Restraint() for _ in range(self.n)]  # the adaptive seats' (within the episode)
        self.episode = Window(0, self.n)
        self.window = Window(0, self.n)
        self.reports: dict[str, Feedback] = {}
        self.report_metrics: dict[str, float] | None = None
        self.last_report = np.zeros((self.n, 6), dtype=np.float32)
        self.report_texts = [""] * self.n
        self.zaps = self.cleaned = self.invalid = 0
        self._near: np.ndarray | None = None
        self._occupied: np.ndarray | None = None
        self._step_info: dict[str, dict[str, Any]] = {}
        intro = ("You are {seat}, one of {n} agents gathering apples (+1 each). " +
                 ("Apples regrow only near other apples." if self.game == "harvest"
                  else "Apples grow only while the river (left) is clean; 'clean' removes waste within one cell."))
        for seat in self.seats:
            self.transcript.say("system", intro.format(seat=seat, n=self.n), to=(seat,))

    def seat_context(self, seat: str) -> Seeing:
        return Seeing(self, seat)

    def publish(self, texts: Mapping[str, str]) -> None:
        """The grid is the record of play: moves are not written into the transcript (reports are)."""

    def respond(self, texts: Mapping[str, str]) -> Mapping[str, StepResult]:
        moves = np.zeros(self.n, dtype=np.int64)
        invalid = np.zeros(self.n, dtype=bool)
        for seat, text in texts.items():
            i = self.index[seat]
            m = read_move(text)
            if m is None:
                invalid[i], m = True, STAY
            moves[i] = m
        gains, frozen_now = self._advance(moves)
        t = self.cycles
        self.episode.add(t, gains, frozen_now)
        self.window.add(t, gains, frozen_now)
        due = t >= self.max_cycles or (self.feedback_every is not None and t % self.feedback_every == 0)
        if due:
            self._report(t)
        self.invalid += int(invalid.sum())
        welfare = float(gains.sum()) / self.n
        end = t >= self.max_cycles
        social = self.social()
        outcomes = self._outcomes(social) if end else {}
        out = {}
        for seat in self.possible_agents:
            i = self.index[seat]
            info = {"invalid_action": bool(invalid[i]), "move": MOVES[moves[i]], "frozen": int(self.frozen[i]),
                    "report_due": due, "report": self.reports.get(seat) if due else None,
                    "report_metrics": self.report_metrics if due else None, **social, **outcomes}
            out[seat] = StepResult(float(gains[i]), truncated=end, truth=Truth(welfare), info=info)
        return out

    # ----------------------------------------------------------------- the dynamics

    def _advance(self, moves: np.ndarray) -> tuple[np.ndarray, int]:
        """One simultaneous step: zaps, cleaning, moves and eating in a random order, regrowth."""
        rows, cols = self.size
        active = self.frozen == 0
        order = self.world.permutation(self.n)
        for i in order:  # zaps see the positions at the step's start
            if active[i] and moves[i] == ZAP and (j := self.zap_target(i)) is not None:
                self.frozen[j] = self.freeze + 1  # counted down below, at this step's end
                self.zaps += 1
        for i in order:
            if active[i] and moves[i] == CLEAN and self.game == "cleanup":
                r, c = self.pos[i]
                box = self.waste[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
                self.cleaned += int(box.sum())
                box[:] = False
        gains = np.zeros(self.n)
        occupied = {tuple(p) for p in self.pos.tolist()}
        for i in order:
            if not active[i] or self.frozen[i] > 0:
                continue
            m = int(moves[i])
            if m <= RIGHT and m != STAY:
                r, c = int(self.pos[i, 0]) + DELTAS[m][0], int(self.pos[i, 1]) + DELTAS[m][1]
                if 0 <= r < rows and 0 <= c < cols and (r, c) not in occupied:
                    occupied.discard((int(self.pos[i, 0]), int(self.pos[i, 1])))
                    occupied.add((r, c))
                    self.pos[i] = (r, c)
            r, c = self.pos[i]
            if self.apples[r, c]:
                self.apples[r, c] = False
                gains[i] = 1.0
        self.returns += gains
        frozen_now = int((self.frozen > 0).sum())
        self.frozen = np.maximum(self.frozen - 1, 0)
        self._grow()
        self._near = self._occupied = None
        return gains, frozen_now

    def _grow(self) -> None:
        rows, cols = self.size
        u = self.world.random((rows, cols))
        here = np.zeros((rows, cols), dtype=bool)
        here[self.pos[:, 0], self.pos[:, 1]] = True
        if self.game == "harvest":
            p = np.minimum(REGROWTH[self._counts()] * self.regrowth, 1.0)
        else:
            p = np.full((rows, cols), self.apple_rate * max(0.0, 1.0 - self.waste_share() / 0.5))
            self.waste |= self.river & (u < self.pollution)
            u = self.world.random((rows, cols))
        self.apples |= self.orchard & ~here & (u < p)

    def waste_share(self) -> float:
        return float(self.waste.sum() / max(self.river.sum(), 1))

    # ----------------------------------------------------------------- what policies read

    def near(self) -> np.ndarray:
        """Per cell, the apples within two cells (cached for the step)."""
        if self._near is None:
            self._near = self._counts()
        return self._near

    def _counts(self) -> np.ndarray:
        return (self._disk @ self.apples.ravel().astype(np.float32)).astype(np.int64).reshape(self.size)

    def occupied(self) -> np.ndarray:
        if self._occupied is None:
            self._occupied = np.zeros(self.size, dtype=bool)
            self._occupied[self.pos[:, 0], self.pos[:, 1]] = True
        return self._occupied

    def step_toward(self, i: int, targets: np.ndarray, reach: int = 0) -> int:
        """The move that brings seat ``i`` nearest to the nearest target cell (Manhattan); stay
        when it is on one (or within ``reach`` of one) or there is none."""
        cells = np.argwhere(targets)
        if not len(cells):
            return STAY
        r, c = int(self.pos[i, 0]), int(self.pos[i, 1])
        d = np.abs(cells[:, 0] - r) + np.abs(cells[:, 1] - c)
        k = int(np.argmin(d))
        if d[k] <= reach:
            return STAY
        tr, tc = int(cells[k, 0]), int(cells[k, 1])
        occupied = self.occupied()
        options = []
        if tr != r:
            options.append(DOWN if tr > r else UP)
        if tc != c:
            options.append(RIGHT if tc > c else LEFT)
        if abs(tc - c) > abs(tr - r):
            options.reverse()
        for m in options:
            nr, nc = r + DELTAS[m][0], c + DELTAS[m][1]
            if not occupied[nr, nc]:
                return m
        return options[0]

    def zap_target(self, i: int) -> int | None:
        """The nearest unfrozen other seat within ``zap_range`` (Chebyshev; ties: the lower seat)."""
        d = np.abs(self.pos - self.pos[i]).max(axis=1)
        d[i] = 10**6
        d[self.frozen > 0] = 10**6
        j = int(np.argmin(d))
        return j if d[j] <= self.zap_range else None

    def waste_near(self, i: int) -> bool:
        r, c = self.pos[i]
        return bool(self.waste[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any())

    def legal_moves(self, i: int) -> list[int]:
        """The moves that do something for seat ``i`` now (``stay`` always)."""
        rows, cols = self.size
        r, c = int(self.pos[i, 0]), int(self.pos[i, 1])
        occupied = self.occupied()
        out = [STAY]
        for m in (UP, DOWN, LEFT, RIGHT):
            nr, nc = r + DELTAS[m][0], c + DELTAS[m][1]
            if 0 <= nr < rows and 0 <= nc < cols and not occupied[nr, nc]:
                out.append(m)
        if self.zap_target(i) is not None:
            out.append(ZAP)
        if self.game == "cleanup" and self.waste_near(i):
            out.append(CLEAN)
        return out

    def social(self) -> dict[str, float]:
        """The social outcomes of the episode so far (and the apples on the grid)."""
        return {**self.episode.metrics(self.cycles), "apples": int(self.apples.sum())}

    def depleted(self) -> bool:
        if self.apples.any():
            return False
        return self.game == "harvest" or self.waste_share() >= 0.5 or self.apple_rate == 0

    def _outcomes(self, social: Mapping[str, float]) -> dict[str, Any]:
        return {**social, "total_return": float(self.returns.sum()), "depleted": self.depleted(), "zaps": self.zaps,
                "cleaned": self.cleaned, "invalid_actions": self.invalid}

    # ----------------------------------------------------------------- feedback

    def _report(self, t: int) -> None:
        """Every seat's report over the window that ends now; the adaptive seats update on theirs."""
        w = self.window
        metrics = w.metrics(t)
        steps = max(t - w.start, 1)
        dense = self.feedback == "dense"
        self.reports = {}
        self.report_metrics = dict(metrics) if dense else None
        for seat in self.seats:
            i = self.index[seat]
            own = float(w.returns[i])
            text = report_text(seat, w.start + 1, t, own, metrics if dense else None)
            record = Feedback(Source.EXECUTION, scalar=own, text=text)
            self.sim.ledger.add(record)
            self.reports[seat] = record
            self.report_texts[i] = text
            m = [metrics[k] for k in ("efficiency", "equality", "sustainability", "peace")] if dense else [0.0] * 4
            self.last_report[i] = (1.0, min(own / steps, 1.0), *m)
            self.restraints[i].update(own, metrics if dense else None)
            self.transcript.say("system", text, to=(seat,))
        self.window = Window(t, self.n)

    # ----------------------------------------------------------------- views

    def candidate_replies(self, seat: str) -> Sequence[str]:
        return MOVES

    def features(self, seat: str) -> np.ndarray:
        i = self.index[seat]
        v = self.view
        rows, cols = self.size
        r, c = int(self.pos[i, 0]), int(self.pos[i, 1])
        k = 2 * v + 1
        win = np.zeros((N_CHANNELS, k, k), dtype=np.float32)
        r0, r1, c0, c1 = r - v, r + v + 1, c - v, c + v + 1
        gr0, gr1, gc0, gc1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
        sl = (slice(gr0 - r0, gr1 - r0), slice(gc0 - c0, gc1 - c0))
        grid = (slice(gr0, gr1), slice(gc0, gc1))
        win[0][sl] = self.apples[grid]
        others = self.occupied().copy()
        others[r, c] = False
        win[1][sl] = others[grid]
        win[2][:] = 1.0
        win[2][sl] = 0.0
        win[3][sl] = self.waste[grid]
        win[4][sl] = self.river[grid]
        state = np.array([self.frozen[i] / self.freeze, r / max(rows - 1, 1), c / max(cols - 1, 1),
                          self.cycles / self.max_cycles, min(self.returns[i] / self.max_cycles, 1.0),
                          *self.last_report[i], float(self.game == "cleanup")], dtype=np.float32)
        return np.clip(np.concatenate([win.ravel(), state]), 0.0, 1.0)

    def local_grid(self, i: int) -> list[str]:
        """The window around seat ``i`` in characters (see the module docs)."""
        v, (rows, cols) = self.view, self.size
        r, c = int(self.pos[i, 0]), int(self.pos[i, 1])
        at = {tuple(p): j for j, p in enumerate(self.pos.tolist())}
        lines = []
        for rr in range(r - v, r + v + 1):
            row = []
            for cc in range(c - v, c + v + 1):
                if not (0 <= rr < rows and 0 <= cc < cols):
                    ch = "#"
                elif (rr, cc) == (r, c):
                    ch = "@"
                elif (rr, cc) in at:
                    ch = "F" if self.frozen[at[(rr, cc)]] else "P"
                elif self.apples[rr, cc]:
                    ch = "A"
                elif self.waste[rr, cc]:
                    ch = "w"
                elif self.river[rr, cc]:
                    ch = "~"
                else:
                    ch = "."
                row.append(ch)
            lines.append("".join(row))
        return lines

    def text_observation(self, seat: str) -> str:
        i = self.index[seat]
        head = self.transcript.render(self.names, seat=seat, include_system=True)
        status = (f"Step {self.cycles} of {self.max_cycles}. You have eaten {self.returns[i]:g} apples."
                  + (f" You are frozen for {self.frozen[i]} more steps." if self.frozen[i] else ""))
        grid = "\n".join(self.local_grid(i))
        legend = "(@ you, A apple, P agent, F frozen agent, # outside, ~ river, w waste, . empty; north is up)"
        return (f"{head}\n\n{status}\n{grid}\n{legend}\n{self.describe(i)}\n"
                f"Moves: {', '.join(MOVES)}.")

    def describe(self, i: int) -> str:
        """Seat ``i``'s surroundings in words: what a person there would see (no hidden numbers)."""
        r, c = int(self.pos[i, 0]), int(self.pos[i, 1])
        parts = []
        cells = np.argwhere(self.apples)
        if len(cells):
            d = np.abs(cells[:, 0] - r) + np.abs(cells[:, 1] - c)
            k = int(np.argmin(d))
            ar, ac = int(cells[k, 0]), int(cells[k, 1])
            if d[k] == 0:
                where = "You are standing on an apple"
            else:
                where = "The nearest apple is " + _offset(ar - r, ac - c)
            near = int(self.near()[ar, ac])
            parts.append(f"{where}; it has {near} other apple{'s' if near != 1 else ''} near it.")
            parts.append(f"There are {int(self.apples.sum())} apples in the orchard.")
        else:
            parts.append("There are no apples left in the orchard.")
        if self.game == "cleanup":
            parts.append(f"The river is {_share_words(self.waste_share())} fouled with waste"
                         + (", and there is waste within reach to clean." if self.waste_near(i) else "."))
        j = self.zap_target(i)
        if j is not None:
            parts.append(f"{self.seats[j]} is close, " + _offset(*(self.pos[j] - self.pos[i]).tolist()) + ".")
        if self.frozen[i]:
            parts.append(f"You are frozen for {self.frozen[i]} more steps.")
        parts.append(f"You have eaten {self.returns[i]:g} apples so far.")
        if self.report_texts[i]:
            parts.append("Latest " + self.report_texts[i][0].lower() + self.report_texts[i][1:])
        return " ".join(parts)

    def extra_info(self, seat: str) -> dict[str, Any]:
        return {}


def _offset(dr: int, dc: int) -> str:
    bits = []
    if dr:
        bits.append(f"{abs(dr)} step{'s' if abs(dr) != 1 else ''} {'down' if dr > 0 else 'up'}")
    if dc:
        bits.append(f"{abs(dc)} step{'s' if abs(dc) != 1 else ''} {'right' if dc > 0 else 'left'}")
    return " and ".join(bits) if bits else "here"


def _share_words(x: float) -> str:
    return "barely" if x < 0.15 else "partly" if x < 0.35 else "mostly" if x < 0.6 else "heavily"


def harvest_layout(rows: int, cols: int) -> tuple[tuple[int, int], ...]:
    """The apple patches: diamonds of radius 1 (five cells) on a regular lattice, as in Harvest."""
    cells = set()
    for pr in range(2, rows - 1, 4):
        for pc in range(2 + (pr // 4 % 2) * 2, cols - 1, 4):
            for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
                r, c = pr + dr, pc + dc
                if 0 <= r < rows and 0 <= c < cols:
                    cells.add((r, c))
    return tuple(sorted(cells))


@dataclass
class Restraint:
    """The adaptive policy's restraint and how it moves with the reports.

    Dense: a threshold controller on the group's outcomes: nobody ate (efficiency or
    sustainability 0) means too much restraint, so one less; a harvest that stopped early
    (sustainability below 0.3) means the stock is shrinking, so one more. Sparse: only its
    own return, so it climbs that: keep the direction that raised it, else turn (starting
    towards greed, the dilemma's temptation).
    """

    level: float = 0.0
    climb: float = -1.0
    last: float | None = None

    def update(self, own: float, metrics: Mapping[str, float] | None) -> float:
        if metrics is not None:
            idle = metrics["efficiency"] == 0 or metrics["sustainability"] == 0
            step = -1.0 if idle else 1.0 if metrics["sustainability"] < 0.3 else 0.0
        else:
            if self.last is not None and own < self.last:
                self.climb = -self.climb
            self.last, step = own, self.climb
        self.level = float(np.clip(self.level + step, 0, MAX_RESTRAINT))
        return self.level


class Synthesizer:
    """A feedback-reading rule policy across episodes (the paper's loop: play, read the
    report, revise the policy): a restrained harvester per seat whose restraint each
    episode's report moves (:class:`Restraint`). Use one instance for a run of episodes:
    ``policy = Synthesizer(env)``, then ``policy(seat, obs, info)`` for every step."""

    def __init__(self, env: Any):
        self.env = getattr(env, "unwrapped", env)
        self.state = {s: Restraint() for s in self.env.possible_agents}

    def __call__(self, seat: str, obs: Any, info: dict) -> Any:
        env, state = self.env, self.state[seat]
        self.read(seat, info)  # a report of the step before (the last step's: see :func:`synthesis`)
        move = restrained_move(env, env.index[seat], int(state.level))
        return move if env.interface == "discrete" else MOVES[move]

    def read(self, seat: str, info: Mapping[str, Any]) -> None:
        """Read a step's info: a report, when one came, moves the restraint."""
        report = info.get("report")
        if report is not None:
            self.state[seat].update(float(report.scalar), info.get("report_metrics"))

    def levels(self) -> dict[str, float]:
        return {s: st.level for s, st in self.state.items()}


def synthesis(env: Any, seeds: Sequence[int], policy: "Synthesizer | None" = None) -> list[dict[str, Any]]:
    """Episodes in a row played by one :class:`Synthesizer` (every learnable seat), each
    episode's last report read before the next: per episode, the first seat's outcomes
    and the seats' restraint levels while it was played."""
    policy = policy or Synthesizer(env)
    out = []
    for seed in seeds:
        levels = policy.levels()
        obs, infos = env.reset(seed=seed)
        while env.agents:
            obs, _, _, _, infos = env.step({a: policy(a, obs[a], infos[a]) for a in env.agents})
        for seat, info in infos.items():
            policy.read(seat, info)
        first = infos[env.possible_agents[0]]["episode_result"]
        out.append({**first["outcomes"], "levels": levels})
    return out


# ---------------------------------------------------------------------- scripted seats and the paper's direction


def play(kind: str = "greedy") -> Callable[[Any], Any]:
    """Every learnable seat plays rule policy ``kind`` (the simulated seats' policies, see
    :func:`policy_move`): ``(env) -> (seat, obs, info) -> action`` for either view."""
    check_choice("kind", kind, POLICIES)

    def factory(env: Any) -> Callable[[str, Any, dict], Any]:
        base = getattr(env, "unwrapped", env)

        def act(seat: str, obs: Any, info: dict) -> Any:
            move = policy_move(base, base.index[seat], kind)
            return move if base.interface == "discrete" else MOVES[move]

        return act

    return factory


def total_return(results: Sequence[EpisodeResult]) -> float:
    """The mean over episodes of every seat's apples (the group's return over the horizon)."""
    return float(np.mean([r.outcomes["total_return"] for r in results])) if results else 0.0


def restraint_gain(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """A restrained learnable seat's group total return minus a greedy one's (> 0: restraint sustains)."""
    return total_return(results["restrained"]) - total_return(results["greedy"])


def fidelity_probe() -> Probe:
    return Probe(
        policies={"greedy": play("greedy"), "restrained": play("restrained"), "adaptive": play("adaptive")},
        variants={"harvest": {"learnable": "agent_0", "max_cycles": 100},
                  "dense": {"learnable": "agent_0", "max_cycles": 100, "feedback": "dense", "feedback_every": 25}},
        direction=restraint_gain,
        direction_doc="a restrained learnable seat's group total return minus a greedy one's, beside the simulated seats (> 0)",
        expected_sign={"harvest": 1, "dense": 1},
    )


__all__ = [
    "AGENT", "MOVES", "POLICIES", "Agent", "CommonsEnv", "CommonsTask", "Restraint", "Synthesizer", "Window",
    "fidelity_probe", "gini", "harvest_layout", "neighbour_counts", "play", "policy_move", "read_move",
    "report_text", "restrained_move", "restraint_gain", "synthesis", "total_return",
]
