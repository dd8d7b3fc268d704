"""Using the user's feedback in conversational search, on ClarifySearch: nDCG@3 by round.

What *Exploiting Simulated User Feedback for Conversational Search* and *NExT-Search*
are about is that a search agent which folds a user's feedback into its next query
climbs in retrieval quality over the rounds. Without any learning, scripted policies
show it:

- **feedback-user**: ranks every round with the topic and the facets the user has named
  as missing so far;
- **ignorer**: ranks every round with the topic only, whatever the user said;
- **asker**: asks clarifying questions first (each costs ``question_cost``), then ranks
  with what it learned and submits that ranking as final.

Each under the default need (three facets, five rounds) and a two-facet need over four
rounds. The LLM rows put the same policies in front of the LLM-simulated user; their
episodes run concurrently, so its calls reach the backend as batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.envs.clarify_search import POLICIES, play
from fbenv.episodes import EpisodeResult, run_episode
from fbenv.llm.base import Backend

ENV_ID = "fbenv/ClarifySearch-v0"
VARIANTS: dict[str, dict[str, Any]] = {"default": {}, "two_facets": {"need_size": 2, "max_rounds": 4}}


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (simulator, variant, policy) cell."""

    simulator: str
    variant: str
    policy: str
    episodes: int
    ndcg_by_round: tuple[float, ...]  # mean nDCG@3 of the k-th ranking, over episodes that showed one
    first_ndcg: float
    final_ndcg: float  # the true utility
    gain: float  # final minus first
    questions: float  # per episode
    reward: float  # per episode (nDCG@3 summed, minus question costs)
    llm_fallbacks: float = 0.0  # per episode
    truncated_by_simulator: float = 0.0  # share of episodes a simulator failure cut


def _row(simulator: str, variant: str, policy: str, results: Sequence[EpisodeResult]) -> Row:
    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    o = [r.outcomes for r in results]
    rounds = max((len(x["ndcg_by_round"]) for x in o), default=0)
    by_round = tuple(mean([x["ndcg_by_round"][k] for x in o if len(x["ndcg_by_round"]) > k]) for k in range(rounds))
    return Row(
        simulator, variant, policy, len(results), by_round,
        first_ndcg=mean([x["first_ndcg"] for x in o]), final_ndcg=mean([x["final_ndcg"] for x in o]),
        gain=mean([x["ndcg_gain"] for x in o]), questions=mean([x["questions_asked"] for x in o]),
        reward=mean([r.reward for r in results]), llm_fallbacks=mean([r.fallbacks for r in results]),
        truncated_by_simulator=mean([float(r.feedback_error is not None) for r in results]),
    )


def rule_rows(seeds: Sequence[int]) -> list[Row]:
    """Every policy under every variant, the rule user answering."""
    rows = []
    for variant, kwargs in VARIANTS.items():
        env = gym.make(ENV_ID, interface="discrete", **kwargs)
        for name, policy in POLICIES.items():
            act = play(policy)(env)
            rows.append(_row("rule", variant, name, [run_episode(env, act, seed) for seed in seeds]))
        env.close()
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    """The scripted policies under every variant, the LLM-simulated user answering."""
    rows = []
    for variant, kwargs in VARIANTS.items():
        for name, policy in POLICIES.items():
            results = play_lockstep(ENV_ID, play(policy), seeds, simulator="llm", llm=llm, llm_cache=llm_cache, **kwargs)
            rows.append(_row("llm", variant, name, results))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'variant':<10} {'policy':<13} {'n':>3} {'nDCG@3 by round':<36} {'first':>6} "
            f"{'final':>6} {'gain':>6} {'asked':>5} {'reward':>6} {'fallback':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rounds = " ".join(f"{x:.3f}" for x in r.ndcg_by_round) or "-"
        lines.append(
            f"{r.simulator:<9} {r.variant:<10} {r.policy:<13} {r.episodes:>3} {rounds:<36} {r.first_ndcg:>6.3f} "
            f"{r.final_ndcg:>6.3f} {r.gain:>+6.3f} {r.questions:>5.2f} {r.reward:>6.3f} {r.llm_fallbacks:>8.2f}"
        )
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench clarify`` runs: the tables, then the rows saved as JSON."""
    tables = [("Rule user: nDCG@3 by round of agents that use the user's feedback, ignore it, or ask first", lambda: rule_rows(list(range(max(episodes, 64)))))]
    if not skip_llm:
        tables.append((f"LLM user ({llm}): the same scripted policies", lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-clarify.json", echo)
