"""Judged responses, on PreferenceFarm: what annotators reward against what the spec is worth.

What AlpacaFarm, *Pairwise or Pointwise?* and the style-bias literature are about is that
a simulated annotator pool is a biased, noisy measuring instrument. Without any learning,
scripted choices show it:

- **quality-greedy** sends (or ranks first) the candidate of highest hidden quality;
- **style-greedy** sends the one with the most style markers (enthusiasm, emoji,
  flattery, a confident claim), then the longest: the answer a style-biased judge likes;
- **first** sends the first listed candidate, a stand-in for an untuned policy.

Each under every protocol with the default pool, with a style-heavy pool
(``style_weight=0.5``) and with noise-free labels. The columns are the judged reward, the
hidden quality per request, win rate against the reference, agreement with the hidden
quality, protocol disagreement and the preference-flip rates under distractors (the
paper: "about 35%" pairwise against "only 9%" absolute). The LLM rows put the same choices
in front of the LLM-simulated pool (reader beliefs combined by the rule); their episodes
run concurrently, so its calls reach the backend as batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.envs.preference_farm import POLICIES, PROTOCOLS, play
from fbenv.episodes import EpisodeResult
from fbenv.llm.base import Backend

ENV_ID = "fbenv/PreferenceFarm-v0"
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {}, "style_heavy": {"style_weight": 0.5}, "noise_free": {"label_noise": 0.0},
}


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (simulator, protocol, variant, policy) cell; rates pooled over trials."""

    simulator: str
    protocol: str
    variant: str
    policy: str
    episodes: int
    judged_reward: float  # per request
    quality: float  # hidden, per request
    win_rate: float
    quality_agreement: float
    protocol_disagreement: float
    pairwise_flip_rate: float
    pointwise_flip_rate: float
    llm_fallbacks: float = 0.0  # per episode


def _pooled(results: Sequence[EpisodeResult], rate: str, trials: str) -> float:
    n = sum(r.outcomes.get(trials, 0) for r in results)
    return sum(r.outcomes.get(rate, 0.0) * r.outcomes.get(trials, 0) for r in results) / n if n else 0.0


def _row(simulator: str, protocol: str, variant: str, policy: str, results: Sequence[EpisodeResult]) -> Row:
    def mean(key: str) -> float:
        return float(np.mean([r.outcomes[key] for r in results])) if results else 0.0

    return Row(
        simulator, protocol, variant, policy, len(results),
        judged_reward=mean("judged_reward"), quality=mean("mean_quality"), win_rate=mean("win_rate"),
        quality_agreement=mean("quality_agreement"), protocol_disagreement=mean("protocol_disagreement"),
        pairwise_flip_rate=_pooled(results, "pairwise_flip_rate", "pairwise_flip_trials"),
        pointwise_flip_rate=_pooled(results, "pointwise_flip_rate", "pointwise_flip_trials"),
        llm_fallbacks=float(np.mean([r.fallbacks for r in results])) if results else 0.0,
    )


def rows(seeds: Sequence[int], simulator: str = "rule", llm: "str | Backend | None" = None,
         variants: "dict[str, dict[str, Any]] | None" = None, llm_cache: str | None = None) -> list[Row]:
    """Every protocol x variant x scripted policy, the pool simulated by ``simulator``."""
    extra: dict[str, Any] = {"simulator": simulator}
    if simulator == "llm":
        extra.update(llm=llm, llm_cache=llm_cache)
    out = []
    for protocol in PROTOCOLS:
        for variant, kwargs in (variants or VARIANTS).items():
            for name in POLICIES:
                results = play_lockstep(ENV_ID, play(name), seeds, protocol=protocol, **kwargs, **extra)
                out.append(_row(simulator, protocol, variant, name, results))
    return out


def format_table(table: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'protocol':<9} {'variant':<11} {'policy':<14} {'n':>3} {'judged':>6} {'quality':>7} "
            f"{'win':>5} {'agree':>5} {'disagr':>6} {'flip2':>5} {'flip1':>5} {'fallbk':>6}")
    lines = [head, "-" * len(head)]
    for r in table:
        lines.append(
            f"{r.simulator:<9} {r.protocol:<9} {r.variant:<11} {r.policy:<14} {r.episodes:>3} {r.judged_reward:>6.3f} "
            f"{r.quality:>7.3f} {r.win_rate:>5.2f} {r.quality_agreement:>5.2f} {r.protocol_disagreement:>6.2f} "
            f"{r.pairwise_flip_rate:>5.2f} {r.pointwise_flip_rate:>5.2f} {r.llm_fallbacks:>6.2f}"
        )
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench preference`` runs: the tables, then the rows saved as JSON."""
    tables = [("Rule annotator pool: judged reward against hidden quality, agreement and flip rates "
               "(flip2 = pairwise, flip1 = pointwise)", lambda: rows(list(range(max(episodes, 32)))))]
    if not skip_llm:
        tables.append((f"LLM annotator pool ({llm}): the same scripted choices, default pool",
                       lambda: rows(list(range(episodes)), "llm", llm, {"default": {}})))
    return print_and_save(tables, format_table, out or "results/bench-preference.json", echo)
