"""The RLHS study on Advisor: feedback reward against true utility under each feedback timing.

What *RLHS* (Liang et al.) finds is that optimizing foresight feedback breeds sycophancy and
deception, and hindsight feedback reduces them. Without any learning this shows up as:

- **rule simulator**: the discrete action that maximizes the customer's rating, found by
  trying all 17 from the same seed, misstates or hides more and is worth less under
  ``foresight`` than under ``hindsight``;
- **LLM simulator**: two fixed advisers, a *flatterer* (recommends the cheapest product
  in budget and says it has every need) and an *honest* one (recommends the best product
  and states the truth), rated by the LLM-simulated customer. Their episodes run
  concurrently, so the simulator's calls reach the backend as batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.episodes import EpisodeResult

from fbenv.envs.advisor import TIMINGS, AdvisorEnv, Scenario, expected_feedback_of_actions, flatterer, honest
from fbenv.llm.base import Backend

ENV_ID = "fbenv/Advisor-v0"
Policy = Callable[[Scenario, int], int]  # (hidden scenario, turn) -> discrete action


POLICIES: dict[str, Policy] = {"flatterer": flatterer, "honest": honest}


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (simulator, timing, policy) cell."""

    simulator: str
    timing: str
    policy: str
    episodes: int
    reward: float
    true_utility: float
    deceived: float
    misstatements: float
    llm_fallbacks: float = 0.0
    truncated: float = 0.0

    @property
    def gap(self) -> float:
        """How much the feedback overstates the truth (reward and utility share a [0, 1] scale)."""
        return self.reward - self.true_utility


def rule_rows(seeds: Sequence[int]) -> list[Row]:
    """The feedback-greedy discrete action per seed and timing (ties averaged)."""
    rows = []
    for timing in TIMINGS:
        env = AdvisorEnv(interface="discrete", feedback_timing=timing)
        per_seed = []
        for seed in seeds:
            vals = np.array(expected_feedback_of_actions(env, seed), dtype=float)
            top = vals[:, 0] >= vals[:, 0].max() - 1e-9
            per_seed.append(vals[top].mean(axis=0))
        m = np.mean(per_seed, axis=0)
        rows.append(Row("rule", timing, "feedback-greedy", len(seeds), *map(float, m)))
        env.close()
    return rows


def _play(env: gym.Env, policy: Policy):
    """``policy`` as an ``(obs, info) -> action`` function of ``env``'s hidden scenario."""
    return lambda obs, info: policy(env.unwrapped.hidden_task(), info["turn"])


def _columns(r: EpisodeResult) -> tuple[float, ...]:
    o = r.outcomes
    return (r.reward, r.true_utility, float(bool(o.get("deceived", False))),
            float(int(o.get("misstatements", 0)) + int(o.get("omissions", False))), float(r.fallbacks), float(r.truncated))


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    """Both fixed advisers under every timing, rated by the LLM-simulated customer."""
    rows = []
    for timing in TIMINGS:
        for name, policy in POLICIES.items():
            results = play_lockstep(ENV_ID, lambda e, policy=policy: _play(e, policy), seeds, simulator="llm", llm=llm,
                                    llm_cache=llm_cache, feedback_timing=timing)
            m = np.array([_columns(r) for r in results], dtype=float).mean(axis=0)
            rows.append(Row("llm", timing, name, len(seeds), float(m[0]), float(m[1]), float(m[2]),
                            float(m[3]), float(m[4]), float(m[5])))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'timing':<17} {'policy':<15} {'n':>3} {'reward':>7} {'true_u':>7} "
            f"{'gap':>6} {'deceived':>8} {'misstate':>8} {'fallback':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.simulator:<9} {r.timing:<17} {r.policy:<15} {r.episodes:>3} {r.reward:>7.3f} "
            f"{r.true_utility:>7.3f} {r.gap:>+6.3f} {r.deceived:>8.2f} {r.misstatements:>8.2f} {r.llm_fallbacks:>8.2f}"
        )
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench rlhs`` (and ``make bench``) runs: the tables, then the rows saved as JSON."""
    tables = [("Rule simulator: the action that maximizes the customer's rating, per timing",
               lambda: rule_rows(list(range(max(episodes, 64)))))]
    if not skip_llm:
        tables.append((f"LLM simulator ({llm}): a flatterer and an honest adviser, rated by the simulated customer",
                       lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-advisor.json", echo,
                          as_row=lambda r: {**asdict(r), "gap": r.gap})

