"""When to show a suggestion, on SuggestionTiming: acceptance against true utility.

What *When to Show a Suggestion?* (Mozannar et al.) is about is that accept/reject
feedback from programmers says which suggestions to hide, and that showing a suggestion
costs the programmer time to check it. Without any learning, scripted policies show the
gap between the feedback and the value:

- **show-everything** (acceptance-greedy): the most acceptances per suggestion;
- **quality-aware**: shows only what the model's confidence says is good; fewer
  acceptances, more true utility (checking time saved, fewer bad suggestions let in);
- **never-show**: nothing accepted, nothing spent;
- **oracle** (rule rows only): knows the programmer's state and the quality and shows a
  suggestion when its expected value beats the checking time: the ceiling.

Each under the default checking cost and with checking made free (``verify_cost=0``),
where showing everything is worth the most. The LLM rows put the same policies in front
of the LLM-simulated programmer; their episodes run concurrently, so its calls reach the
backend as batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.envs.suggestion_timing import (
    ACTIONS,
    POLICIES,
    REVIEWING,
    STUCK,
    Suggestion,
    acceptance_probability,
    play,
)
from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.episodes import EpisodeResult, run_episode
from fbenv.llm.base import Backend

ENV_ID = "fbenv/SuggestionTiming-v0"
VARIANTS: dict[str, dict[str, Any]] = {"default": {}, "free_verification": {"verify_cost": 0.0}}


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (simulator, variant, policy) cell."""

    simulator: str
    variant: str
    policy: str
    episodes: int
    acceptance_rate: float  # accepted per suggestion: the mean reward
    accepted_per_shown: float
    shown_rate: float
    true_utility: float  # per episode
    bad_accepts: float  # per episode
    llm_fallbacks: float = 0.0  # per episode
    truncated_by_simulator: float = 0.0  # share of episodes a simulator failure cut


def oracle(env: gym.Env) -> Callable[[Any, dict], Any]:
    """Shows a suggestion when, knowing the state and the quality, it is worth the checking time."""
    base = env.unwrapped

    def act(obs: Any, info: dict) -> Any:
        t = base.turn
        s: Suggestion = base.current()
        state = base.hidden_task().states[t]
        p = acceptance_probability(float(state == REVIEWING), float(state == STUCK), float(s.tidy), s.quality)
        show = p * s.quality > base.verify_cost * s.effort
        return int(show) if base.interface == "discrete" else ACTIONS[int(show)]

    return act


def _row(simulator: str, variant: str, policy: str, results: Sequence[EpisodeResult]) -> Row:
    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    o = [r.outcomes for r in results]
    return Row(
        simulator, variant, policy, len(results),
        acceptance_rate=mean([x["acceptance_rate"] for x in o]),
        accepted_per_shown=mean([x["accepted_per_shown"] for x in o]),
        shown_rate=mean([x["shown_rate"] for x in o]),
        true_utility=mean([r.true_utility for r in results]),
        bad_accepts=mean([x["bad_accepts"] for x in o]),
        llm_fallbacks=mean([r.fallbacks for r in results]),
        truncated_by_simulator=mean([float(r.feedback_error is not None) for r in results]),
    )


def _factories(with_oracle: bool) -> Mapping[str, Callable[[gym.Env], Callable[[Any, dict], Any]]]:
    out: dict[str, Callable[[gym.Env], Callable[[Any, dict], Any]]] = {n: play(p) for n, p in POLICIES.items()}
    if with_oracle:
        out["oracle"] = oracle
    return out


def rule_rows(seeds: Sequence[int]) -> list[Row]:
    """Every policy under every variant, the rule programmer answering."""
    rows = []
    for variant, kwargs in VARIANTS.items():
        env = gym.make(ENV_ID, interface="discrete", **kwargs)
        for name, factory in _factories(with_oracle=True).items():
            policy = factory(env)
            rows.append(_row("rule", variant, name, [run_episode(env, policy, seed) for seed in seeds]))
        env.close()
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    """The scripted policies under every variant, the LLM-simulated programmer answering."""
    rows = []
    for variant, kwargs in VARIANTS.items():
        for name, factory in _factories(with_oracle=False).items():
            results = play_lockstep(ENV_ID, factory, seeds, simulator="llm", llm=llm, llm_cache=llm_cache, **kwargs)
            rows.append(_row("llm", variant, name, results))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'variant':<17} {'policy':<15} {'n':>3} {'accept':>7} {'acc/shown':>9} "
            f"{'shown':>6} {'true_u':>7} {'bad acc':>7} {'fallback':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.simulator:<9} {r.variant:<17} {r.policy:<15} {r.episodes:>3} {r.acceptance_rate:>7.3f} "
            f"{r.accepted_per_shown:>9.3f} {r.shown_rate:>6.2f} {r.true_utility:>7.2f} {r.bad_accepts:>7.2f} "
            f"{r.llm_fallbacks:>8.2f}"
        )
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench suggestion`` runs: the tables, then the rows saved as JSON."""
    tables = [("Rule programmer: acceptance (the feedback) against true utility, per policy and checking cost", lambda: rule_rows(list(range(max(episodes, 64)))))]
    if not skip_llm:
        tables.append((f"LLM programmer ({llm}): the same scripted policies", lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-suggestion.json", echo)
