"""ActorCritic: an actor answers in numbered steps, a critic judges and points at a step, the actor refines.

## Description

From *Critique-RL*, *Enhancing LLM Reasoning via Critique Models* (AutoMathCritique),
*DeepCritic* and *MMC*. Two seats, ``actor_0`` and ``critic_0``, either learnable or
simulated, play over one problem of the shared bank (:mod:`fbenv.envs.problems`:
arithmetic word problems with four numbered steps, multiple choice over a closed-world
table in two steps, checklist notes with four requirements). A round is an answer and a
critique: the actor answers; the critic gives a verdict (correct / wrong) and a critique
that may name the step (the requirement) in error; the actor refines. The critic is
rewarded for telling right from wrong (discrimination) and for critiques that make the
actor right (helpfulness): a critic that always says "correct" is right as often as the
actor is and never helps; one that names the wrong step helps less than one that names
the right step.

Turns: a step is one turn of a learnable seat; simulated seats speak in between, in the
protocol's order (the simulated actor's first answer is given at reset). With both seats
learnable the steps alternate between them, and the seat whose turn it is not sends an
action that is not read (``info["ignored_action"]``; ``info["on_turn"]`` and the
observation say whose turn it is).

## Observation

- ``interface="text"`` (``Dict({"text": ...})``): the seat's instructions and the problem,
  then the last three rounds of answers and critiques; while it waits, a line saying so.
  ``info["messages"]`` is the seat's chat view.
- ``interface="discrete"``, ``actor_0``: ``Box(0, 1, (26,))``: per candidate answer (five):
  it is the current answer, the critiques so far rule it out (taken at their word), the
  critic called it wrong before; the location the last critique named (four); the last
  critique said wrong; it had no verdict; the family (three); the share of rounds used;
  whether it is the seat's turn.
- ``interface="discrete"``, ``critic_0``: ``Box(0, 1, (16,))``: the critic's own reading of
  the current answer, per location (four; 1 = it looks wrong there; each reading is
  mistaken with probability 0.15, drawn at reset); which locations the problem has (facts
  has two); the family (three); the share of rounds used; whether it is the seat's turn;
  the answer changed since its last critique; its last verdict was "wrong"; the answer is
  one it called wrong before. Never which candidate is right.

## Action

- ``actor_0``, ``text``: an answer (numbered steps and ``Answer: N``; ``Answer: (B) Oslo``;
  the note) or ``Keep my previous answer.``. ``discrete``: ``Discrete(6)``, ``0-4`` the
  problem's candidate answers (the right one and four typical wrong ones, each wrong at one
  location, in a seeded order), ``5`` keep the previous answer (first round: the first
  candidate). An answer the checker cannot read is an observation (``info["invalid_answer"]``):
  the round is spent, the critic is not asked, and it counts as wrong.
- ``critic_0``, ``text``: a verdict (``correct`` / ``wrong`` or ``incorrect``) and
  optionally the location: ``step N``, ``requirement N`` or the requirement's words
  (``Your answer is incorrect. The error is in step 3.``). ``discrete``: ``Discrete(6)``:
  ``0`` correct, ``1`` wrong (no location), ``2-5`` wrong at location 1-4. A location the
  problem does not have counts as none. A text with no verdict is an observation
  (``info["invalid_critique"]``): the actor hears it, no verdict counts, the round goes on.

## Reward

``critic_0``: helpfulness at each refinement (+1 when the actor was wrong before the
critique and is right after it, -1 for the reverse, 0 otherwise), plus, on the episode's
last step, ``discrimination_weight`` x its verdict accuracy (the share of its verdicts
that matched the truth; a mean, so a critic earns no more by keeping the actor wrong for
more rounds).
``actor_0``: the correctness of the final answer, on the episode's last step. Every
seat's ``info`` carries the ground truth: ``correct`` and ``wrong_locations`` (the
checker's, 0-based) of the current answer, and per step ``verdict``, ``verdict_correct``,
``pointed`` (1-based location named, 0 none) and ``helped``.

## Feedback source

One ``critic`` record per critique a simulated critic gives (``scalar`` 1.0 correct / 0.0
wrong, ``text`` the critique), and one ``actor`` record (``text`` the answer) per answer a
simulated actor gives. A learnable seat's turns are in ``info["messages"]``, not records.

## True utility

For both seats, the correctness of the actor's final answer, on the episode's last step
(0 before), so a critic's feedback reward (accurate verdicts) and what it achieved
(a right actor) can come apart. Outcomes (both seats): ``solved``, ``first_correct``,
``rounds_used`` (answers), ``critiques``, ``verdict_accuracy`` (over the critiques; 0 with
none), ``located`` ("wrong" verdicts on wrong answers that named the wrong location),
``helpfulness`` (``fixed`` minus ``broken``), ``fixed``, ``broken``, ``correct_by_round``,
``invalid_answers``, ``invalid_critiques``.

## Episode end

Terminated when the critic says "correct" (the answer stands). Truncated after the
critique of the ``max_rounds``-th answer (or an unreadable ``max_rounds``-th answer), at
``max_cycles`` steps, or when an LLM simulator gives up (``on_parse_error``) or its
backend fails under ``on_backend_error="truncate"``, with ``info["feedback_error"]``.

## Arguments

``max_rounds`` (3: answers the actor may give), ``discrimination_weight`` (1.0),
``actor_skill`` (0.5: the chance the simulated actor's first answer is right; otherwise
it has one injected error, a typical wrong answer), ``fix_rate`` (0.6: the chance the
rule actor fixes its error when the critique names its location), ``sway`` (0.3: the
chance a "wrong" verdict talks the rule actor out of a right answer, breaking the step
named, or a random one), ``critic_noise`` (0.2: the simulated critic's verdict flips with
this chance, the bank's noisy judge), ``family`` (None: all three). Role keys, for
``simulator={...}``: ``actor``, ``critic``.

## LLM simulator

The simulated critic is the bank's critic role at the ``targeted`` level: the rule checks
the answer with the bank's checker and names the first wrong location; the LLM version
answers calibrated belief questions one fact at a time (does the final answer agree with
the reference; for arithmetic, does each step; for a note, does it meet each
requirement), combined by the rule's model. The simulated actor is the bank's solver
role: its first answer is its injected one (no model is asked); after a critique, the
rule fixes location k only when the critique names location k (``fix_rate``) and may be
swayed off a right answer (``sway``); the LLM is prompted with the problem, its previous
answer and the critique, the candidate answers offered as scored choices.

``fbenv fidelity`` plays an oracle critic (it reads the truth), a critic that always says
"correct" and an actor that ignores critiques: with the critic learnable (the actor
simulated), the direction is the oracle's final solve rate minus the always-correct
critic's (> 0); with the actor learnable (the critic simulated), the follower's minus the
ignorer's (> 0).

## Version history

- v0: initial release.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fbenv.envs.problems import (
    CRITIC, FAMILIES, N_CANDIDATES, TARGETED_FIX, Check, Critique, Judging, Problem, Profile, Solver, Solving, change,
    check, check_family, draw_problem, draw_profile, write,
)
from fbenv.envs.refine import KEEP, consistent
from fbenv.episodes import EpisodeResult, scripted_seats
from fbenv.errors import check_int, check_number
from fbenv.feedback import Source
from fbenv.fidelity import Probe
from fbenv.parallel import FeedbackParallelEnv
from fbenv.truth import StepResult, Truth

ACTOR_SEAT, CRITIC_SEAT = "actor_0", "critic_0"
N_LOCATIONS = 4  # the most any family has
N_ACTOR_ACTIONS = N_CANDIDATES + 1
N_CRITIC_ACTIONS = 2 + N_LOCATIONS
N_ACTOR_FEATURES = 3 * N_CANDIDATES + N_LOCATIONS + 2 + len(FAMILIES) + 2
N_CRITIC_FEATURES = 2 * N_LOCATIONS + len(FAMILIES) + 5
READ_NOISE = 0.15  # how often the discrete critic's own reading of a location is mistaken
HISTORY = 3

_WRONG = re.compile(r"\b(incorrect|wrong|not correct|not right|error|mistake|mistaken)\b")
_RIGHT = re.compile(r"\b(correct|right)\b")
_WHERE = re.compile(r"\b(?:step|requirement|item|location)\s*#?\s*(\d+)")


# ---------------------------------------------------------------------- the simulated actor


def refine_answer(p: Problem, current: int, critique: Critique | None, rng: np.random.Generator,
                  fix_rate: float = TARGETED_FIX, sway: float = 0.3) -> int:
    """The rule actor's next answer (a candidate index) after ``critique``.

    It fixes its error only when the critique names its location (with ``fix_rate``); a
    "wrong" verdict on a right answer talks it into an error at the location named (a
    random one when none is) with ``sway``; otherwise it keeps its answer. The same draws
    are made whatever happens, so runs compare draw for draw.
    """
    u, anywhere = rng.random(), int(rng.integers(len(p.locations)))
    if critique is None or critique.ok:
        return current
    slot = critique.slots[0] if critique.slots else None
    error = p.candidates[current].slot
    if error is None:
        return change(p, current, anywhere if slot is None else slot, rng) if u < sway else current
    return p.right if slot == error and u < fix_rate else current


@dataclass(frozen=True)
class Acting(Solving):
    """What the simulated actor is asked with: the bank's solver context and its two rates."""

    fix_rate: float = TARGETED_FIX
    sway: float = 0.3


class Actor(Solver):
    """The simulated actor: the bank's solver with injected errors, refining per critique."""

    key, name, source = "actor", "ActorCritic actor", Source.PEER

    def apply(self, ctx: Acting, critique: Critique) -> int:
        """Fixes step k only when the critique names step k (the bank's solver reads it)."""
        return refine_answer(ctx.problem, ctx.current, critique, np.random.default_rng(ctx.seed), ctx.fix_rate, ctx.sway)


ACTOR = Actor()


# ---------------------------------------------------------------------- reading critiques


def read_critique(p: Problem, text: str) -> Critique | None:
    """A critic's text as a :class:`Critique` (verdict, the location it names), or None without a verdict."""
    t = " ".join(text.lower().split())
    wrong, right = _WRONG.search(t), _RIGHT.search(t)
    if not (wrong or right):
        return None
    if not wrong:
        return Critique(True, text=text.strip())
    slot: int | None = None
    m = _WHERE.search(t)
    if m:
        slot = int(m.group(1)) - 1
    else:
        named = [(t.find(loc.lower()), i) for i, loc in enumerate(p.locations) if loc.lower() in t]
        slot = min(named)[1] if named else None
    slots = (slot,) if slot is not None and 0 <= slot < len(p.locations) else ()
    items = tuple(g for g, cov in enumerate(p.items) if set(cov) & set(slots))
    return Critique(False, slots, items, None, "", text.strip())


def critic_replies(p: Problem) -> list[str]:
    """The discrete critic's six critiques, in the simulated critic's own words."""
    out = [write(p, "targeted", True, (), (), None, "", "honest"), write(p, "binary", False, (), (), None, "", "honest")]
    for k in range(N_LOCATIONS):
        items = tuple(g for g, cov in enumerate(p.items) if k in cov)
        out.append(write(p, "targeted", False, (k,), items, None, "", "honest"))
    return out


def as_candidate(p: Problem, checked: Check) -> int:
    """The candidate an answer is (free text: the one it is wrong like)."""
    if checked.candidate is not None:
        return checked.candidate
    if checked.correct:
        return p.right
    slot = checked.slots[0] if checked.slots else len(p.locations) - 1
    return (p.wrong_at(slot) or [i for i in range(N_CANDIDATES) if i != p.right])[0]


# ---------------------------------------------------------------------- the env


@dataclass(frozen=True)
class ActorCriticTask:
    """The hidden task: the problem, the simulated actor's first answer, and every draw the
    episode may need, made up front (so LLM seeds drawn later shift nothing)."""

    problem: Problem
    profile: Profile
    actor_seeds: tuple[int, ...]  # per refinement: the simulated actor's randomness
    noise: tuple[float, ...]  # per round: < critic_noise flips the simulated critic's verdict
    noise_slots: tuple[int, ...]  # per round: the location a flipped "wrong" names
    reads: tuple[tuple[float, ...], ...]  # per round and location: < READ_NOISE misreads it
    policy_seed: int  # scripted policies' own randomness


class ActorCriticEnv(FeedbackParallelEnv):
    """An actor and a critic over one problem. See the module docs."""

    metadata = {"name": "actor_critic_v0", "render_modes": ["ansi"], "is_parallelizable": True}
    seats = (ACTOR_SEAT, CRITIC_SEAT)
    roles = (ACTOR, CRITIC)
    seat_roles = {ACTOR_SEAT: ACTOR, CRITIC_SEAT: CRITIC}
    names = {ACTOR_SEAT: "Actor", CRITIC_SEAT: "Critic"}
    n_actions = {ACTOR_SEAT: N_ACTOR_ACTIONS, CRITIC_SEAT: N_CRITIC_ACTIONS}
    n_features = {ACTOR_SEAT: N_ACTOR_FEATURES, CRITIC_SEAT: N_CRITIC_FEATURES}
    keep_rounds = HISTORY
    turn_based = True

    def __init__(self, *, max_rounds: int = 3, discrimination_weight: float = 1.0, actor_skill: float = 0.5,
                 fix_rate: float = TARGETED_FIX, sway: float = 0.3, critic_noise: float = 0.2,
                 family: str | None = None, **options: Any):
        super().__init__(**options)
        self.max_rounds = check_int("max_rounds", max_rounds, minimum=1)
        self.discrimination_weight = check_number("discrimination_weight", discrimination_weight, 0.0)
        self.actor_skill = check_number("actor_skill", actor_skill, 0.0, 1.0)
        self.fix_rate = check_number("fix_rate", fix_rate, 0.0, 1.0)
        self.sway = check_number("sway", sway, 0.0, 1.0)
        self.critic_noise = check_number("critic_noise", critic_noise, 0.0, 1.0)
        self.families = check_family(family)

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> ActorCriticTask:
        p = draw_problem(rng, self.families)
        profile = draw_profile(rng, p, p_right=self.actor_skill)
        r = self.max_rounds
        return ActorCriticTask(
            p, profile, tuple(int(x) for x in rng.integers(2**31 - 1, size=r)),
            tuple(float(x) for x in rng.random(r)), tuple(int(x) for x in rng.integers(len(p.locations), size=r)),
            tuple(tuple(float(x) for x in row) for row in rng.random((r, N_LOCATIONS))), int(rng.integers(2**31 - 1)))

    @property
    def problem(self) -> Problem:
        return self.task.problem

    def opening(self) -> None:
        p = self.problem
        self.on_turn = ACTOR_SEAT
        self.answer = ""  # the current answer's text
        self.current: int | None = None  # the candidate it is (free text: the one it is wrong like)
        self.checked: Check | None = None
        self.correct_by_round: list[bool] = []
        self.critique: Critique | None = None  # the last critique read (None: none yet, or no verdict)
        self.critiques: list[tuple[bool | None, tuple[int, ...], bool]] = []  # (verdict, slots, accurate)
        self.fixed = self.broken = self.located = self.invalid_answers = self.invalid_critiques = 0
        self.ruled_out = np.zeros(N_CANDIDATES, dtype=bool)
        self.called_wrong = np.zeros(N_CANDIDATES, dtype=bool)
        self.critiqued: int | None = None  # the candidate the critic last judged
        self.pending_help = False  # a critique awaits the refinement that scores its helpfulness
        self.ended = False
        self._events: dict[str, Any] = {}
        self._acc = self._blank()  # this step's rewards and events (the opening's simulated turns: discarded)
        self._raw_critique = ""
        self.transcript.say("system", (
            "You are the actor. Solve the problem, showing your work as the problem asks. A critic judges each answer; "
            f"refine it after each critique, at most {self.max_rounds} answers in all. Reply with your full answer, "
            f"or \"{KEEP}\"\n\n{p.prompt}"), to=(ACTOR_SEAT,))
        self.transcript.say("system", (
            "You are the critic. Judge the actor's answer to this problem: reply 'Your answer is correct.' or "
            "'Your answer is incorrect.', and name the step (or the requirement) in error, e.g. 'The error is in "
            f"step 2.'\n\n{p.prompt}"), to=(CRITIC_SEAT,))

    def seat_context(self, seat: str) -> Any:
        """What the role playing ``seat`` is asked with now (its context for its next turn)."""
        p, k = self.problem, len(self.correct_by_round)
        if seat == CRITIC_SEAT:
            flip = self.task.noise[k - 1] < self.critic_noise
            return Judging(p, self.answer, self.checked, "targeted", "noisy", 0, flip, self.task.noise_slots[k - 1])
        heard = self.critique if self.critique is not None else Critique(True, text=self._raw_critique)
        return Acting(p, "targeted", self.task.profile, self.current if self.correct_by_round else None,
                      heard if self.correct_by_round else None,
                      self.task.actor_seeds[max(k - 1, 0)], self.fix_rate, self.sway)

    def to_act(self) -> tuple[str, ...]:
        return () if self.ended else (self.on_turn,)

    def begin_turns(self) -> None:
        self._acc = self._blank()

    def play_turn(self, seat: str, move: Any) -> None:
        text = move.text if isinstance(move, Critique) else str(move)
        if seat == ACTOR_SEAT:
            self._answer(text, self._acc)
        else:
            self._critique(text, self._acc)

    def respond(self, turns: Sequence[tuple[str, Any]]) -> Mapping[str, StepResult]:
        if not turns:  # the episode had ended before this step
            return {}
        acc = self._acc
        self._events = acc["events"]
        out = {}
        for seat in self.possible_agents:
            reward = acc["critic"] if seat == CRITIC_SEAT else acc["actor"]
            if not self.ended:
                out[seat] = StepResult(reward, truth=Truth(0.0))
                continue
            solved = bool(self.correct_by_round[-1])
            out[seat] = StepResult(reward, terminated=acc["terminated"], truncated=not acc["terminated"],
                                   truth=Truth(float(solved), best=1.0), info=self._outcomes())
        return out

    # ----------------------------------------------------------------- the protocol

    @staticmethod
    def _blank() -> dict[str, Any]:
        return {"critic": 0.0, "actor": 0.0, "terminated": False,
                "events": {"verdict": None, "verdict_correct": None, "pointed": 0, "helped": 0,
                           "invalid_answer": False, "invalid_critique": False}}

    def _answer(self, text: str, acc: dict[str, Any]) -> None:
        p, ev = self.problem, acc["events"]
        self.transcript.begin_round()
        self.transcript.say(ACTOR_SEAT, text)
        keep = text.strip().lower().rstrip(".") == KEEP.lower().rstrip(".")
        if keep and self.answer:
            text = self.answer
        checked = check(p, text) if not keep or self.answer else Check(False, why="There is no previous answer to keep.")
        was = bool(self.correct_by_round and self.correct_by_round[-1])
        self.correct_by_round.append(bool(checked.correct))
        if self.pending_help:  # the refinement scores the critique before it
            helped = int(checked.correct and not was) - int(was and not checked.correct)
            self.fixed += helped > 0
            self.broken += helped < 0
            acc["critic"] += helped
            ev["helped"] = helped
            self.pending_help = False
        if not checked.readable:
            self.invalid_answers += 1
            ev["invalid_answer"] = True
            self.transcript.say("system", f"The actor's answer could not be read: {checked.why}")
            self.on_turn = ACTOR_SEAT
        else:
            self.answer, self.checked, self.current = text, checked, as_candidate(p, checked)
            self.on_turn = CRITIC_SEAT
        if self.on_turn == ACTOR_SEAT and len(self.correct_by_round) >= self.max_rounds:
            self._end(acc, terminated=False)

    def _critique(self, text: str, acc: dict[str, Any]) -> None:
        p, ev = self.problem, acc["events"]
        self.transcript.say(CRITIC_SEAT, text)
        critique = read_critique(p, text)
        right = bool(self.checked.correct)
        self.critique, self._raw_critique = critique, text
        if critique is None:
            self.invalid_critiques += 1
            ev["invalid_critique"] = True
            self.critiques.append((None, (), False))
        else:
            accurate = critique.ok == right
            ev.update(verdict=critique.ok, verdict_correct=accurate, pointed=critique.slots[0] + 1 if critique.slots else 0)
            self.critiques.append((critique.ok, critique.slots, accurate))
            if not critique.ok and not right and critique.slots and critique.slots[0] in self.checked.slots[:1]:
                self.located += 1
            if not critique.ok:
                self.called_wrong[self.current] = True
                level = "targeted" if critique.slots else "binary"
                self.ruled_out |= ~np.array(consistent(p, self.current, critique, level))
        self.critiqued = self.current
        if critique is not None and critique.ok:
            self._end(acc, terminated=True)
        elif len(self.correct_by_round) >= self.max_rounds:
            self._end(acc, terminated=False)
        else:
            self.pending_help = True
            self.on_turn = ACTOR_SEAT

    def _end(self, acc: dict[str, Any], terminated: bool) -> None:
        self.ended = True
        acc["terminated"] = terminated
        acc["actor"] += float(self.correct_by_round[-1])
        # the mean over the episode's critiques: a critic earns no more by keeping the actor wrong for longer
        acc["critic"] += self.discrimination_weight * self._accuracy()

    def _accuracy(self) -> float:
        return float(np.mean([c[2] for c in self.critiques])) if self.critiques else 0.0

    def _outcomes(self) -> dict[str, Any]:
        rounds, n = self.correct_by_round, len(self.critiques)
        return {"solved": bool(rounds[-1]), "first_correct": bool(rounds[0]), "rounds_used": len(rounds),
                "critiques": n, "verdict_accuracy": self._accuracy(),
                "located": self.located, "helpfulness": self.fixed - self.broken, "fixed": self.fixed,
                "broken": self.broken, "correct_by_round": tuple(rounds), "invalid_answers": self.invalid_answers,
                "invalid_critiques": self.invalid_critiques}

    # ----------------------------------------------------------------- views

    def candidate_replies(self, seat: str) -> Sequence[str]:
        p = self.problem
        if seat == CRITIC_SEAT:
            return critic_replies(p)
        return [c.text for c in p.candidates] + [KEEP if self.answer else p.candidates[0].text]

    def text_observation(self, seat: str) -> str:
        text = super().text_observation(seat)
        if self.ended or seat == self.on_turn:
            return text
        other = self.names[self.on_turn]
        return text + f"\n(Waiting: it is the {other.lower()}'s turn; your reply this step is not read.)"

    def readings(self) -> np.ndarray:
        """The critic's own reading of the current answer: 1 where a location looks wrong."""
        x = np.zeros(N_LOCATIONS, dtype=np.float32)
        if self.checked is None:
            return x
        u = self.task.reads[len(self.correct_by_round) - 1]
        for k in range(len(self.problem.locations)):
            x[k] = float((k in self.checked.slots) != (u[k] < READ_NOISE))
        return x

    def features(self, seat: str) -> np.ndarray:
        p, fam = self.problem, FAMILIES.index(self.problem.family)
        share = min(len(self.correct_by_round) / self.max_rounds, 1.0)
        turn = float(not self.ended and seat == self.on_turn)
        if seat == CRITIC_SEAT:
            x = np.zeros(N_CRITIC_FEATURES, dtype=np.float32)
            x[:N_LOCATIONS] = self.readings()
            x[N_LOCATIONS:N_LOCATIONS + len(p.locations)] = 1.0
            base = 2 * N_LOCATIONS
            x[base + fam] = 1.0
            last = self.critiques[-1][0] if self.critiques else None
            seen = self.current is not None and bool(self.called_wrong[self.current])
            x[base + len(FAMILIES):] = (share, turn, float(self.critiqued is not None and self.critiqued != self.current),
                                        float(last is False), float(seen))
            return x
        x = np.zeros(N_ACTOR_FEATURES, dtype=np.float32)
        k = N_CANDIDATES
        if self.current is not None:
            x[self.current] = 1.0
        x[k:2 * k] = self.ruled_out
        x[2 * k:3 * k] = self.called_wrong
        base = 3 * k
        c = self.critique
        if c is not None and c.slots:
            x[base + c.slots[0]] = 1.0
        base += N_LOCATIONS
        said = bool(self.critiques)
        x[base:base + 2] = (float(said and c is not None and not c.ok), float(said and c is None))
        base += 2
        x[base + fam] = 1.0
        x[base + len(FAMILIES):] = (share, turn)
        return x

    def extra_info(self, seat: str) -> dict[str, Any]:
        c = self.checked
        return {"on_turn": None if self.ended else self.on_turn, "correct": bool(c is not None and c.correct),
                "wrong_locations": () if c is None else c.slots, **self._events}


# ---------------------------------------------------------------------- scripted seats
# (functions of the env; each names a candidate reply of its seat by index)


def _rng(env: ActorCriticEnv, salt: int) -> np.random.Generator:
    return np.random.default_rng([env.task.policy_seed, salt, len(env.correct_by_round)])


def critic_always_correct(env: ActorCriticEnv) -> int:
    return 0


def critic_oracle(env: ActorCriticEnv) -> int:
    """Reads the truth: "correct" on a right answer, else the first wrong location."""
    c = env.checked
    return 0 if c.correct else 2 + (c.slots[0] if c.slots else len(env.problem.locations) - 1)


def critic_misplaced(env: ActorCriticEnv) -> int:
    """The right verdict, but it names a location that is not the error."""
    c, n = env.checked, len(env.problem.locations)
    if c.correct:
        return 0
    error = c.slots[0] if c.slots else n - 1
    return 2 + (error + 1 + int(_rng(env, 3).integers(n - 1))) % n


def critic_unlocated(env: ActorCriticEnv) -> int:
    """The right verdict and no location."""
    return 0 if env.checked.correct else 1


def critic_reader(env: ActorCriticEnv) -> int:
    """Trusts its own reading (the discrete critic's features): the first location that looks wrong."""
    flags = env.readings()[:len(env.problem.locations)]
    return 0 if not flags.any() else 2 + int(np.argmax(flags))


def critic_rule(env: ActorCriticEnv) -> int:
    """What the simulated (rule) critic would say here, as one of the six critiques."""
    said = CRITIC.rule(env.seat_context(CRITIC_SEAT))
    return 0 if said.ok else (2 + said.slots[0] if said.slots else 1)


def critic_random(env: ActorCriticEnv) -> int:
    return int(_rng(env, 5).integers(N_CRITIC_ACTIONS))


def actor_follower(env: ActorCriticEnv) -> int:
    """What the simulated (rule) actor would answer: its injected error, then refinements."""
    text = ACTOR.rule(env.seat_context(ACTOR_SEAT))
    return [c.text for c in env.problem.candidates].index(text)


def actor_ignorer(env: ActorCriticEnv) -> int:
    """Its injected first answer, then keeps it whatever it is told."""
    return env.task.profile.first if not env.correct_by_round else N_CANDIDATES


def actor_random(env: ActorCriticEnv) -> int:
    return int(_rng(env, 7).integers(N_ACTOR_ACTIONS))


CRITICS: dict[str, Callable[[ActorCriticEnv], int]] = {
    "always-correct": critic_always_correct, "oracle": critic_oracle, "misplaced": critic_misplaced,
    "unlocated": critic_unlocated, "reader": critic_reader, "rule": critic_rule, "random": critic_random,
}
ACTORS: dict[str, Callable[[ActorCriticEnv], int]] = {
    "follower": actor_follower, "ignorer": actor_ignorer, "random": actor_random,
}


def play(critic: "str | Callable[[ActorCriticEnv], int]" = "oracle",
         actor: "str | Callable[[ActorCriticEnv], int]" = "follower"):
    """Scripted seats by name (:func:`fbenv.episodes.scripted_seats`): ``(env) -> (seat, obs, info) -> action``."""
    return scripted_seats({CRITIC_SEAT: CRITICS[critic] if isinstance(critic, str) else critic,
                           ACTOR_SEAT: ACTORS[actor] if isinstance(actor, str) else actor})


# ---------------------------------------------------------------------- the paper's direction


def solve_rate(results: Sequence[EpisodeResult]) -> float:
    """The share of episodes whose final answer was right (the true utility, for any seat)."""
    return float(np.mean([r.true_utility > 0.5 for r in results])) if results else 0.0


def critique_gain(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The critic learnable: the oracle's final solve rate minus the always-correct critic's;
    the actor learnable: the follower's minus the ignorer's (both > 0: critiques help)."""
    if variant == "actor":
        return solve_rate(results["oracle"]) - solve_rate(results["ignorer"])
    return solve_rate(results["oracle"]) - solve_rate(results["always-correct"])


def fidelity_probe() -> Probe:
    return Probe(
        policies={"oracle": play("oracle", "follower"), "always-correct": play("always-correct", "follower"),
                  "ignorer": play("oracle", "ignorer")},
        variants={"critic": {"learnable": CRITIC_SEAT}, "actor": {"learnable": ACTOR_SEAT}},
        direction=critique_gain,
        direction_doc=("critic learnable: oracle minus always-correct critic's final solve rate (> 0); "
                       "actor learnable: critique-follower minus ignorer (> 0)"),
        expected_sign={"critic": 1, "actor": 1},
    )


__all__ = [
    "ACTOR", "ACTORS", "ACTOR_SEAT", "CRITICS", "CRITIC_SEAT", "Acting", "Actor", "ActorCriticEnv", "ActorCriticTask",
    "as_candidate", "critic_replies", "critique_gain", "fidelity_probe", "play", "read_critique", "refine_answer",
    "solve_rate",
]
