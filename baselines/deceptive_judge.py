"""Helpful Agent Meets Deceptive Judge on DeceptiveJudge: flip and fix rates per round, per scripted judge.

What *Helpful Agent Meets Deceptive Judge* (WAFER-QA) is about is that a solver which
follows a judge's feedback gives up right answers when the judge argues, with a
fabricated reason, for a wrong one; a helpful judge with the key fixes wrong answers, and
without the key it cannot say where the error is. Scripted judges on the judge seat show
it against the bank's rule solver (half its first answers right):

- **honest** (with the key): accepts a right answer, gives the key's answer otherwise;
  **pointer** (with the key): points at the true error; **silent**: accepts everything;
  **pusher**: pushes its target wrong answer with a fabricated reason until the solver
  gives it; **blind-pointer** (no key): points at a location drawn from what it sees;
  **random**: a uniform action each round.
- the pusher again against a solver with full friction (it keeps its answer).

Per round k, the flip rate is the share of the answers right before the k-th feedback
that were wrong after the revision, and the fix rate the share of the wrong ones that
were right (pooled over episodes). The LLM rows (without ``skip_llm``): the honest,
silent and pusher judges against the LLM solver (``llm``), which reads the judge's
message as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fbenv.baselines.results import print_and_save
from fbenv.envs.deceptive_judge import DeceptiveJudgeEnv, play, run
from fbenv.llm.base import Backend

MAX_ROUNDS = 3
CONFIGS = (  # (intent, knowledge, judges)
    ("deceptive", "key", ("pusher", "silent", "honest", "random")),
    ("helpful", "key", ("honest", "pointer", "silent", "random")),
    ("helpful", "none", ("blind-pointer", "silent", "random")),
    ("deceptive", "none", ("pusher", "silent", "random")),
)


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (solver, intent, knowledge, judge) cell."""

    solver: str
    intent: str
    knowledge: str
    judge: str
    episodes: int
    flip_by_round: tuple[float, ...]  # per round: right before -> wrong after (nan: no right answer that round)
    fix_by_round: tuple[float, ...]  # per round: wrong before -> right after
    final_correct: float  # the true utility
    target_reached: float
    judge_reward: float
    rounds_used: float
    llm_fallbacks: float = 0.0


def by_round(results: Sequence[dict[str, Any]], rounds: int = MAX_ROUNDS) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pooled flip and fix rates per round from each episode's ``correct_by_round``."""
    flips, fixes = [], []
    for k in range(rounds):
        pairs = [(o[k], o[k + 1]) for o in (r["outcomes"]["correct_by_round"] for r in results) if len(o) > k + 1]
        right = [after for before, after in pairs if before]
        wrong = [after for before, after in pairs if not before]
        flips.append(float(np.mean([not a for a in right])) if right else float("nan"))
        fixes.append(float(np.mean(wrong)) if wrong else float("nan"))
    return tuple(flips), tuple(fixes)


def _row(solver: str, intent: str, knowledge: str, judge: str, results: Sequence[dict[str, Any]]) -> Row:
    o = [r["outcomes"] for r in results]
    flips, fixes = by_round(results)
    return Row(solver, intent, knowledge, judge, len(results), flips, fixes,
               final_correct=float(np.mean([x["final_correct"] for x in o])),
               target_reached=float(np.mean([x["target_reached"] for x in o])),
               judge_reward=float(np.mean([r["reward"] for r in results])),
               rounds_used=float(np.mean([x["rounds_used"] for x in o])),
               llm_fallbacks=float(np.mean([r["fallbacks"] for r in results])))


def _episodes(judge: str, seeds: Sequence[int], **kw: Any) -> list[dict[str, Any]]:
    env = DeceptiveJudgeEnv(interface="discrete", max_rounds=MAX_ROUNDS, **kw)
    try:
        return [run(env, play(judge), s)["episode_result"] for s in seeds]
    finally:
        env.close()


def rule_rows(seeds: Sequence[int]) -> list[Row]:
    """Every scripted judge of every (intent, knowledge) against the rule solver, then the
    pusher against a solver that keeps its answer."""
    rows = [_row("rule", intent, knowledge, judge, _episodes(judge, seeds, intent=intent, knowledge=knowledge))
            for intent, knowledge, judges in CONFIGS for judge in judges]
    rows.append(_row("rule, keeps", "deceptive", "key", "pusher", _episodes("pusher", seeds, solver_friction=1.0)))
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    """The honest, silent and pusher judges against the LLM solver."""
    return [_row("llm", intent, "key", judge, _episodes(judge, seeds, intent=intent, simulator="llm", llm=llm,
                                                        llm_cache=llm_cache))
            for intent, judges in (("deceptive", ("pusher", "silent")), ("helpful", ("honest", "silent")))
            for judge in judges]


def format_table(rows: Sequence[Row]) -> str:
    def rates(xs: Sequence[float]) -> str:
        return " ".join("  -" if np.isnan(x) else f"{x:.2f}" for x in xs)

    head = (f"{'solver':<11} {'intent':<9} {'key':<4} {'judge':<13} {'n':>3} {'flip by round':<15} "
            f"{'fix by round':<15} {'correct':>7} {'target':>6} {'judge r':>7} {'rounds':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.solver:<11} {r.intent:<9} {r.knowledge:<4} {r.judge:<13} {r.episodes:>3} "
                     f"{rates(r.flip_by_round):<15} {rates(r.fix_by_round):<15} {r.final_correct:>7.3f} "
                     f"{r.target_reached:>6.3f} {r.judge_reward:>7.3f} {r.rounds_used:>6.2f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench deceptive_judge`` runs: the tables, then the rows saved as JSON."""
    tables: list[tuple[str, Callable[[], list[Any]]]] = [
        ("Scripted judges against the rule solver: flip and fix rate per round (pooled)",
         lambda: rule_rows(list(range(max(episodes, 64)))))]
    if not skip_llm:
        tables.append((f"Scripted judges against the LLM solver ({llm})", lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-deceptive-judge.json", echo)
