"""ConvCodeWorld on CodeFeedback: pass@turn and MRR per feedback combination.

What *ConvCodeWorld* is about is that how far a code model gets over turns depends on the
feedback it hears: compilation errors alone barely help, execution feedback helps more the
more tests it covers, and an expert user who names the failing case and the fix helps most;
its static variant (ConvCodeBench: the verbal feedback replayed from a log) ranks models
like the live one. Without any learning, scripted solvers show it, in each of the nine
combinations (``test_coverage`` x ``user_expertise``):

- **expert-follower**: applies a fix the user names, else drops what the tests and the
  user showed to be wrong and tries another candidate;
- **novice-follower**: the same without applying named fixes;
- **no-feedback**: reads compilation errors only (fixes a typo, keeps its program);
- **random**: a uniform candidate program each turn.

Then the same solvers in static mode, for the six combinations with a user. The LLM rows
(without ``skip_llm``) put the expert- and novice-followers in front of the LLM user.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.envs.code_feedback import COVERAGES, EXPERTISE, POLICIES, mrr, pass_at, play
from fbenv.episodes import EpisodeResult, run_episode
from fbenv.llm.base import Backend

ENV_ID = "fbenv/CodeFeedback-v0"
MAX_TURNS = 5


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (mode, simulator, coverage, expertise, policy) cell."""

    mode: str
    simulator: str
    coverage: str
    expertise: str
    policy: str
    episodes: int
    pass_at_turn: tuple[float, ...]  # share solved (every hidden test) by turn 1..MAX_TURNS
    mrr: float
    final_pass_rate: float  # the true utility: hidden tests passed by the last program
    reward: float  # the visible verdict
    misled: float  # share ended rewarded while failing hidden tests
    leaks: float = 0.0  # user feedback flagged by the leak check, per episode
    llm_fallbacks: float = 0.0


def _row(mode: str, simulator: str, coverage: str, expertise: str, policy: str,
         results: Sequence[EpisodeResult]) -> Row:
    def mean(key: str) -> float:
        return float(np.mean([float(r.outcomes[key]) for r in results])) if results else 0.0

    return Row(mode, simulator, coverage, expertise, policy, len(results),
               tuple(pass_at(results, t) for t in range(1, MAX_TURNS + 1)), mrr(results),
               mean("final_pass_rate"), float(np.mean([r.reward for r in results])) if results else 0.0,
               mean("misled"), mean("leaks"), float(np.mean([r.fallbacks for r in results])) if results else 0.0)


def rule_rows(seeds: Sequence[int], mode: str = "live", split: str = "all") -> list[Row]:
    """Every scripted solver in every combination (static mode: the six with a user)."""
    rows = []
    for coverage in COVERAGES:
        for expertise in EXPERTISE:
            if mode == "static" and expertise == "none":
                continue
            env = gym.make(ENV_ID, interface="discrete", test_coverage=coverage, user_expertise=expertise, mode=mode,
                           split=split, max_turns=MAX_TURNS)
            for name, policy in POLICIES.items():
                act = play(policy)(env)
                rows.append(_row(mode, "rule", coverage, expertise, name, [run_episode(env, act, s) for s in seeds]))
            env.close()
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    """The followers under the LLM user (partial coverage), episodes batched."""
    rows = []
    for expertise, name in (("novice", "novice-follower"), ("expert", "expert-follower")):
        results = play_lockstep(ENV_ID, play(POLICIES[name]), seeds, simulator="llm", llm=llm, llm_cache=llm_cache,
                                test_coverage="partial", user_expertise=expertise, split="all", max_turns=MAX_TURNS)
        rows.append(_row("live", "llm", "partial", expertise, name, results))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'mode':<6} {'sim':<4} {'coverage':<8} {'expertise':<9} {'policy':<16} {'n':>3} "
            f"{'pass@1..5':<30} {'MRR':>5} {'final':>5} {'reward':>6} {'misled':>6} {'leaks':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        at = " ".join(f"{x:.2f}" for x in r.pass_at_turn)
        lines.append(f"{r.mode:<6} {r.simulator:<4} {r.coverage:<8} {r.expertise:<9} {r.policy:<16} {r.episodes:>3} "
                     f"{at:<30} {r.mrr:>5.3f} {r.final_pass_rate:>5.3f} {r.reward:>6.3f} {r.misled:>6.3f} {r.leaks:>5.2f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench code`` runs: the tables, then the rows saved as JSON."""
    seeds = list(range(max(episodes, 84)))
    tables: list[tuple[str, Callable[[], list[Any]]]] = [
        ("Live rule user: pass@turn and MRR per feedback combination", lambda: rule_rows(seeds)),
        ("Static (ConvCodeBench): the verbal feedback replayed from the shipped log",
         lambda: rule_rows(seeds, mode="static")),
    ]
    if not skip_llm:
        tables.append((f"LLM user ({llm}), partial coverage", lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-code.json", echo)
