"""Tutor-style hints, on Tutor: fix rate, leak rate and TutorBench's rubric per hint policy.

What *Automating Human Tutor-Style Programming Feedback* is about is that a hint is
worth what a student does with it: the student's fix, run on the hidden tests, is the
hindsight signal. Without any learning, the hint templates of the discrete view show
how the signal ranks hints:

- **vague**, **failing_case**: little to go on; the student mostly stays stuck;
- **names_line**, **names_concept**, **line_and_concept**, **guiding_question**: the
  more a hint localizes the misconception, the more students fix the bug; the guiding
  question also meets every rubric item;
- **wrong_line**: a misleading hint does worse than a vague one;
- **leaks_fix**: the student almost always passes, but the hint gave the answer away:
  flagged, penalized (``leak_penalty``) and worth nothing in true utility.

One hint (the paper's setting) and three turns (the student replies after a failed fix
and gets another hint). The LLM rows put the same policies in front of the LLM-simulated
student; their episodes run concurrently, so its calls reach the backend as batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.envs.tutor import HINTS, PROBE_POLICIES, play
from fbenv.episodes import EpisodeResult, run_episode
from fbenv.llm.base import Backend

ENV_ID = "fbenv/Tutor-v0"
VARIANTS: dict[str, dict[str, Any]] = {"one_hint": {}, "three_turns": {"max_turns": 3}}


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (simulator, variant, hint policy) cell."""

    simulator: str
    variant: str
    policy: str
    episodes: int
    fix_rate: float  # the student's program passed every hidden test
    leak_rate: float  # some hint gave the fix away
    reward: float  # per episode: fixes minus leak penalties
    true_utility: float  # fixed without a leak
    fixed_at_turn: float  # mean over fixed episodes (0 if none)
    names_line: float
    names_misconception: float
    no_answer_revealed: float
    asks_guiding_question: float
    rubric_score: float
    llm_fallbacks: float = 0.0  # per episode
    truncated_by_simulator: float = 0.0  # share of episodes a simulator failure cut


def _row(simulator: str, variant: str, policy: str, results: Sequence[EpisodeResult]) -> Row:
    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values)) if len(values) else 0.0

    o = [r.outcomes for r in results]
    return Row(
        simulator, variant, policy, len(results),
        fix_rate=mean([float(x["fixed"]) for x in o]),
        leak_rate=mean([float(x["leaked"]) for x in o]),
        reward=mean([r.reward for r in results]),
        true_utility=mean([r.true_utility for r in results]),
        fixed_at_turn=mean([x["fixed_at_turn"] for x in o if x["fixed"]]),
        names_line=mean([x["names_line"] for x in o]),
        names_misconception=mean([x["names_misconception"] for x in o]),
        no_answer_revealed=mean([x["no_answer_revealed"] for x in o]),
        asks_guiding_question=mean([x["asks_guiding_question"] for x in o]),
        rubric_score=mean([x["rubric_score"] for x in o]),
        llm_fallbacks=mean([r.fallbacks for r in results]),
        truncated_by_simulator=mean([float(r.feedback_error is not None) for r in results]),
    )


def rule_rows(seeds: Sequence[int], policies: Sequence[str] = HINTS) -> list[Row]:
    """Every hint template under every variant, the rule student answering."""
    rows = []
    for variant, kwargs in VARIANTS.items():
        env = gym.make(ENV_ID, interface="discrete", split="all", **kwargs)
        for name in policies:
            policy = play(name)(env)
            rows.append(_row("rule", variant, name, [run_episode(env, policy, seed) for seed in seeds]))
        env.close()
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int], policies: Sequence[str] = PROBE_POLICIES,
             llm_cache: str | None = None) -> list[Row]:
    """The probe's hint policies under every variant, the LLM-simulated student answering."""
    rows = []
    for variant, kwargs in VARIANTS.items():
        for name in policies:
            results = play_lockstep(ENV_ID, play(name), seeds, simulator="llm", llm=llm, llm_cache=llm_cache,
                                    split="all", **kwargs)
            rows.append(_row("llm", variant, name, results))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'variant':<11} {'policy':<17} {'n':>3} {'fixed':>6} {'leaked':>6} {'reward':>7} "
            f"{'true_u':>6} {'line':>5} {'miscon':>6} {'no-rev':>6} {'quest':>5} {'rubric':>6} {'fallbk':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.simulator:<9} {r.variant:<11} {r.policy:<17} {r.episodes:>3} {r.fix_rate:>6.2f} {r.leak_rate:>6.2f} "
            f"{r.reward:>7.2f} {r.true_utility:>6.2f} {r.names_line:>5.2f} {r.names_misconception:>6.2f} "
            f"{r.no_answer_revealed:>6.2f} {r.asks_guiding_question:>5.2f} {r.rubric_score:>6.2f} "
            f"{r.llm_fallbacks:>6.2f}"
        )
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench tutor`` runs: the tables, then the rows saved as JSON."""
    tables = [("Rule student: fix rate, leak rate and TutorBench rubric per hint template",
               lambda: rule_rows(list(range(max(episodes, 90)))))]
    if not skip_llm:
        tables.append((f"LLM student ({llm}): the probe's hint policies", lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-tutor.json", echo)
