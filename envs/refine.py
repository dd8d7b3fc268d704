"""Refine: solve, hear a critic, retry; feedback of five strengths from honest, noisy or deceptive judges.

## Description

From *Feedback Friction* (Jiang et al.), *RefineBench*, *MINT*, *RLTF* and *Helpful Agent
Meets Deceptive Judge* (WAFER-QA). The agent is the solver of a problem from the shared
bank (:mod:`fbenv.envs.problems`: multi-step arithmetic word problems, multiple choice over
a closed-world table, checklist writing tasks). Each round it answers; a simulated critic
judges the answer and gives feedback at the level ``feedback=``: ``none`` (self-refine:
"try again"), ``binary`` (right or wrong), ``checklist`` (the failed checklist items),
``targeted`` (where the error is: the step or the requirement) or ``answer`` (the complete
right answer, Feedback Friction's strongest level). An agent that applies feedback fixes
more the stronger the feedback is; one with friction stays wrong even when told the
answer. A noisy judge flips its verdict with ``judge_noise``; a deceptive judge argues,
with a fabricated reason, for one specific wrong answer, also when the solver was right.

## Observation

- ``interface="text"``: the instructions and the problem, then the last three rounds (the
  agent's answers and the critic's feedback). ``info["messages"]`` has the same window.
- ``interface="discrete"``: ``Box(0, 1, (31,))``: per candidate answer (five): it is the
  current answer, the critic's feedback so far rules it out (taken at its word), the
  critic suggested it, the critic rejected it before; the level (one-hot, five); the
  family (one-hot, three); the share of rounds used; the last verdict; whether any
  answer was given. Never which candidate is right.

## Action

- ``text``: an answer (numbered steps and ``Answer: N``; ``Answer: (B) Oslo``; the note),
  or ``Keep my previous answer.``. A text the checker cannot read (no final number, no
  option) is an observation: the round is spent, the critic is not asked,
  ``info["invalid_answer"]`` is set, and the answer counts as wrong.
- ``discrete``: ``Discrete(6)``: ``0-4`` the problem's candidate answers in a seeded order
  (the right one and four typical wrong ones, each wrong at one location); ``5`` keep the
  previous answer (the first round: the first candidate). Each action's text is the text
  view's, so both views are one task.

## Reward

The critic's verdict: 1.0 on the step it accepts the answer (the episode ends there),
0.0 otherwise. ``info["verdict"]`` (accepted), ``info["correct"]`` (the truth),
``info["invalid_answer"]``, ``info["wrong_locations"]`` (the checker's).

## Feedback source

One ``critic`` record per readable answer: ``scalar`` 1.0 accepted / 0.0 rejected, ``text``
the feedback at the level (``Your answer is incorrect. The error is in step 2.``).

## True utility

Correctness of the final answer, on the episode's last step (0 on earlier steps, so the
summed true utility is it); ``is_success`` likewise. Under a noisy or deceptive judge the
reward and the truth come apart. Outcomes: ``solved``, ``rounds_used``, ``friction``
(1.0 when still wrong after every round of the budget: Feedback Friction's measure under
``feedback="answer"``), ``fixed_at_round`` (the round a wrong first answer first became
right; 0 if never or right at once), ``flipped_correct_to_wrong`` (right answers replaced
by wrong ones), ``repeated_rejected_answer`` (answers the critic had already rejected,
given again), ``correct_by_round`` (a tuple).

## Episode end

Terminated when the critic accepts an answer, or after one answer at evaluation under
``train_feedback_only`` (``env.unwrapped.training = False``: RLTF's feedback only while
training). Truncated after ``max_rounds`` answers, or when an LLM simulator gives up
(``on_parse_error``) or its backend fails under ``on_backend_error="truncate"``, with
``info["feedback_error"]`` and no reward.

## Arguments

``feedback`` (``"targeted"``: one of ``none``, ``binary``, ``checklist``, ``targeted``,
``answer``), ``judge`` (``"honest"``, ``"noisy"``, ``"deceptive"``), ``judge_noise`` (0.2:
the noisy judge's flip rate), ``max_rounds`` (5), ``family`` (None: all three; or one of
``arithmetic``, ``facts``, ``checklist``), ``train_feedback_only`` (False). Role, for
``simulator={...}``: ``critic``.

## LLM simulator

The rule critic checks the answer against the key with the bank's checker and writes its
feedback from templates (see :mod:`fbenv.envs.problems`). The LLM critic sees the problem,
the reference (the key; for a deceptive judge the wrong answer it is told to push) and the
solver's answer, and answers calibrated belief questions, one fact at a time: does the
solver's final answer agree with the reference; for arithmetic at the checklist and
targeted levels, does each step agree with the reference's; for a note, does the text
meet each requirement (the word count is counted). Its answers are combined by the rule's
model and written by its templates. The noisy judge's flips are drawn by the env for both.

``fbenv fidelity`` plays a feedback-follower, an ignorer (keeps its first, wrong answer)
and a right-starter that follows feedback; the direction is the follower's solve rate
minus the ignorer's, expected > 0 under the honest judge and at most 0 for the
right-starter minus the ignorer under the deceptive one.

## Version history

- v0: initial release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeResult, scripted
from fbenv.errors import check_choice, check_int, check_number, check_type
from fbenv.fidelity import Probe
from fbenv.truth import StepResult, Truth

from fbenv.envs.problems import (
    CRITIC, FAMILIES, JUDGES, LEVELS, N_CANDIDATES, Check, Critique, Judging, Problem, check, check_family,
    draw_problem, revise,
)

KEEP = "Keep my previous answer."
N_ACTIONS = N_CANDIDATES + 1
N_FEATURES = 4 * N_CANDIDATES + len(LEVELS) + len(FAMILIES) + 3
HISTORY = 3


@dataclass(frozen=True)
class RefineTask:
    """The hidden task: the problem, the deceptive judge's target (a wrong candidate) and
    the seed scripted solvers draw their own randomness from."""

    problem: Problem
    target: int
    solver_seed: int
    noise: tuple[float, ...] = ()  # per round: a uniform draw (< judge_noise: the noisy judge flips)
    noise_slots: tuple[int, ...] = ()  # per round: the location a flipped "wrong" names


def differs(p: Problem, a: int, c: int) -> set[int]:
    """The locations where candidates ``a`` and ``c`` differ."""
    sa, sc = p.candidates[a].slot, p.candidates[c].slot
    if a == c:
        return set()
    return {s for s in (sa, sc) if s is not None}


def consistent(p: Problem, current: int, critique: Critique, level: str) -> list[bool]:
    """Which candidates the critique leaves possible, taking the critic at its word."""
    out = []
    for c in range(N_CANDIDATES):
        if critique.ok:
            ok = c == current
        elif level == "none":
            ok = True
        elif level == "answer" and critique.suggested is not None:
            ok = c == critique.suggested
        elif level == "binary":
            ok = c != current
        elif level == "checklist":
            covered = {s for g in critique.items for s in p.items[g]}
            ok = c != current and differs(p, current, c) <= covered
        else:
            ok = c != current and differs(p, current, c) == set(critique.slots)
        out.append(ok)
    return out


class RefineEnv(FeedbackEnv):
    """Answer, hear the critic, retry. See the module docs."""

    roles = (CRITIC,)
    names = {"assistant": "Solver", "critic": "Critic"}
    keep_rounds = HISTORY
    n_actions, n_features = N_ACTIONS, N_FEATURES

    def __init__(self, *, feedback: str = "targeted", judge: str = "honest", judge_noise: float = 0.2,
                 max_rounds: int = 5, family: str | None = None, train_feedback_only: bool = False, **options: Any):
        super().__init__(**options)
        self.feedback = check_choice("feedback", feedback, LEVELS)
        self.judge = check_choice("judge", judge, JUDGES)
        self.judge_noise = check_number("judge_noise", judge_noise, 0.0, 1.0)
        self.max_rounds = check_int("max_rounds", max_rounds, minimum=1)
        self.families = check_family(family)
        self.train_feedback_only = check_type("train_feedback_only", train_feedback_only, bool)
        self.training = True  # RLTF: set False to evaluate (one attempt under train_feedback_only)

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> RefineTask:
        p = draw_problem(rng, self.families)
        wrong = [i for i in range(N_CANDIDATES) if i != p.right]
        # the noise is drawn up front, so LLM seeds drawn later cannot shift it (rule and LLM judges compare)
        return RefineTask(p, wrong[int(rng.integers(len(wrong)))], int(rng.integers(2**31 - 1)),
                          tuple(float(x) for x in rng.random(self.max_rounds)),
                          tuple(int(x) for x in rng.integers(len(p.locations), size=self.max_rounds)))

    @property
    def problem(self) -> Problem:
        return self.task.problem

    @property
    def budget(self) -> int:
        return 1 if self.train_feedback_only and not self.training else self.max_rounds

    def opening(self) -> None:
        self.current: int | None = None  # the candidate the current answer is (None: free text or none yet)
        self.answer = ""
        self.correct_by_round: list[bool] = []
        self.rejected: set[str] = set()
        self.ruled_out = np.zeros(N_CANDIDATES, dtype=bool)
        self.suggested = np.zeros(N_CANDIDATES, dtype=bool)
        self.rejected_candidates = np.zeros(N_CANDIDATES, dtype=bool)
        self.last_critique: Critique | None = None
        self.flips = self.repeats = 0
        self._step_info = {"verdict": False, "correct": False, "invalid_answer": False, "wrong_locations": ()}
        self.transcript.say("system", (
            "Solve the problem. After each answer a critic gives feedback; answer again until it accepts, at most "
            f"{self.budget} times. Reply with your full answer, or \"{KEEP}\"\n\n{self.problem.prompt}"))

    def respond(self, text: str) -> StepResult:
        p = self.problem
        keep = text.strip().lower().rstrip(".") == KEEP.lower().rstrip(".")
        if keep and self.answer:
            text = self.answer
        checked = check(p, text) if not keep or self.answer else Check(False, why="There is no previous answer to keep.")
        info = {"verdict": False, "correct": bool(checked.correct), "invalid_answer": not checked.readable,
                "wrong_locations": checked.slots}
        was_right = bool(self.correct_by_round and self.correct_by_round[-1])
        self.correct_by_round.append(bool(checked.correct))
        self.flips += was_right and not checked.correct
        reward, accepted = 0.0, False
        if not checked.readable:
            self.transcript.say("critic", f"I could not read an answer: {checked.why}")
        else:
            if text in self.rejected:
                self.repeats += 1
            self.answer, self.current = text, checked.candidate
            critique = self.sim.ask(CRITIC, self._judging(text, checked)).value
            self.last_critique = critique
            accepted = critique.ok
            reward = float(accepted)
            info["verdict"] = accepted
            if not accepted:
                self.rejected.add(text)
                if checked.candidate is not None:
                    self.rejected_candidates[checked.candidate] = True
            self._learn(critique)
            self.transcript.say("critic", critique.text)
        self._step_info = info
        over = len(self.correct_by_round) >= self.budget
        if not (accepted or over):
            return StepResult(reward, truth=Truth(0.0))
        terminated = accepted or (self.train_feedback_only and not self.training)
        correct = bool(checked.correct)
        return StepResult(reward, terminated=terminated, truncated=not terminated,
                          truth=Truth(float(correct), best=1.0), info=self._outcomes(correct))

    def _judging(self, text: str, checked: Check) -> Judging:
        k = len(self.correct_by_round) - 1
        flip = self.judge == "noisy" and self.task.noise[k] < self.judge_noise
        slot = self.task.noise_slots[k]
        return Judging(self.problem, text, checked, self.feedback, self.judge, self.task.target, flip, slot)

    def _learn(self, critique: Critique) -> None:
        if self.current is None:
            return
        self.ruled_out |= ~np.array(consistent(self.problem, self.current, critique, self.feedback))
        if critique.ok:
            self.ruled_out[self.current] = False
        self.suggested[:] = False
        if critique.suggested is not None and (self.feedback == "answer" or (self.feedback == "targeted" and critique.claim)):
            self.suggested[critique.suggested] = True

    def candidate_replies(self) -> Sequence[str]:
        return [c.text for c in self.problem.candidates] + [KEEP if self.answer else self.problem.candidates[0].text]

    def features(self) -> np.ndarray:
        x = np.zeros(N_FEATURES, dtype=np.float32)
        if self.current is not None:
            x[self.current] = 1.0
        k = N_CANDIDATES
        x[k:2 * k] = self.ruled_out
        x[2 * k:3 * k] = self.suggested
        x[3 * k:4 * k] = self.rejected_candidates
        base = 4 * k
        x[base + LEVELS.index(self.feedback)] = 1.0
        x[base + len(LEVELS) + FAMILIES.index(self.problem.family)] = 1.0
        tail = base + len(LEVELS) + len(FAMILIES)
        x[tail:] = (min(len(self.correct_by_round) / self.budget, 1.0),
                    float(bool(self.last_critique and self.last_critique.ok)), float(bool(self.correct_by_round)))
        return x

    def extra_info(self) -> Mapping[str, Any]:
        return self._step_info

    def _outcomes(self, correct: bool) -> dict[str, Any]:
        rounds = self.correct_by_round
        fixed = next((i + 1 for i, ok in enumerate(rounds) if ok), 0) if rounds and not rounds[0] else 0
        return {"solved": correct, "rounds_used": len(rounds),
                "friction": float(not correct and len(rounds) >= self.budget), "fixed_at_round": fixed,
                "flipped_correct_to_wrong": int(self.flips), "repeated_rejected_answer": int(self.repeats),
                "correct_by_round": tuple(rounds)}


# ---------------------------------------------------------------------- scripted solvers
# (functions of the task and what the critic said; either view)


def solver(start: str = "wrong", follow: bool = True, friction: float = 0.0):
    """A scripted solver: first a typical wrong answer (its injected error) or the right one;
    then it applies the critic's feedback with the bank's rule solver (:func:`revise`), or
    keeps its answer (``follow=False``). With ``friction`` it is stuck on that share of
    problems: it keeps its answer whatever it is told."""
    check_choice("start", start, ("wrong", "right"))
    check_number("friction", friction, 0.0, 1.0)

    def choose(env: RefineEnv) -> int:
        p, task = env.problem, env.task
        rng = np.random.default_rng([task.solver_seed, len(env.correct_by_round)])
        stuck = bool(np.random.default_rng(task.solver_seed).random() < friction)
        if not env.correct_by_round or env.current is None:  # the first answer (or after an unreadable one)
            wrong = [i for i in range(N_CANDIDATES) if i != p.right]
            return p.right if start == "right" else wrong[task.solver_seed % len(wrong)]
        if not follow:
            return N_CANDIDATES  # keep
        return revise(p, env.current, env.last_critique, env.feedback, rng, stuck)

    return choose


def random_solver(env: RefineEnv) -> int:
    """Uniform over the six actions, from the task's own seed and the round."""
    return int(np.random.default_rng([env.task.solver_seed, 7, len(env.correct_by_round)]).integers(N_ACTIONS))


POLICIES = {
    "follower": solver("wrong", True),
    "ignorer": solver("wrong", False),
    "friction": solver("wrong", True, friction=0.5),
    "right-follower": solver("right", True),
    "right-keeper": solver("right", False),
    "random": random_solver,
}


def play(policy):
    """A scripted policy as a policy factory: ``(env) -> (obs, info) -> action``, either view."""
    return scripted(policy)


def solve_rate(results: Sequence[EpisodeResult]) -> float:
    return float(np.mean([r.outcomes["solved"] for r in results])) if results else 0.0


def feedback_gain(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The paper's direction: the follower's solve rate minus the ignorer's (honest: > 0);
    under the deceptive judge, the right-follower's minus the ignorer's is no gain (<= 0
    relative to starting right)."""
    if variant == "deceptive":
        return solve_rate(results["right-follower"]) - 1.0  # every right-starter began right: the loss
    return solve_rate(results["follower"]) - solve_rate(results["ignorer"])


def fidelity_probe() -> Probe:
    return Probe(
        policies={name: play(POLICIES[name]) for name in ("follower", "ignorer", "right-follower")},
        variants={"default": {}, "answer": {"feedback": "answer"}, "deceptive": {"judge": "deceptive"}},
        direction=feedback_gain,
        direction_doc="follower minus ignorer solve rate (> 0); deceptive: the right-follower's solve rate minus 1 (< 0)",
        expected_sign={"default": 1, "answer": 1, "deceptive": -1},
    )


__all__ = ["KEEP", "POLICIES", "RefineEnv", "RefineTask", "consistent", "feedback_gain", "fidelity_probe", "play",
           "random_solver", "solve_rate", "solver"]
