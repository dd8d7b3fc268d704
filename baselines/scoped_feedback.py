"""Scoped verbal feedback, on ScopedFeedback: adherence against overgeneralization, and distance.

What C3PO (*RLVF*), PrefEval and ConstitutionMaker are about is that a model told "use
bullet points when I ask about my health" must apply it there, many turns later, and
nowhere else. Without any learning, scripted choices among twin candidates (the same
draft with and without the rule) give the task's known answers:

- **always-apply**: the rule everywhere: adherence 1, overgeneralization 1 (C3PO's failure);
- **in-scope-only**: adherence 1, overgeneralization 0, every judgement satisfied;
- **ignore**: adherence 0, overgeneralization 0 (the feedback forgotten);
- **random**: a seeded uniform pick, about one half each.

The second table is adherence as a function of distance: the statement pushed back by
``distance`` filler exchanges, for the in-scope-only and ignore policies (flat: they do not
forget) and **forgets-after-8**, which plays in-scope-only while the statement is within
eight exchanges and ignores it afterwards, a stand-in for a policy with a bounded memory;
its adherence falls with distance the way PrefEval's curves do. The LLM rows put the first
table's choices in front of the LLM-simulated user (its statement a scored choice among
the phrasings, its judgements belief questions); the metrics are read mechanically, so
only the judged satisfaction can move.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.envs.scoped_feedback import POLICIES, forgets_after, play
from fbenv.episodes import EpisodeResult
from fbenv.llm.base import Backend

ENV_ID = "fbenv/ScopedFeedback-v0"
VARIANTS: dict[str, dict[str, Any]] = {"explicit": {}, "implicit": {"reveal": "implicit"}}
DISTANCES = (0, 4, 8, 16, 32)
MEMORY = 8  # forgets-after-8's window, in exchanges


def random_policy(env: Any) -> Callable[[Any, dict], Any]:
    """A uniform pick among the candidates, seeded from the hidden task at each episode's start."""
    base = env.unwrapped
    state: dict[str, np.random.Generator] = {}

    def act(obs: Any, info: dict) -> Any:
        if base.turn == 0 or "rng" not in state:
            state["rng"] = np.random.default_rng(zlib.crc32(repr(base.hidden_task()).encode()))
        i = int(state["rng"].integers(base.n_candidates))
        return i if base.interface == "discrete" else base.candidate_replies()[i]

    return act


def _factories(names: Sequence[str]) -> dict[str, Callable[[Any], Callable[[Any, dict], Any]]]:
    known = {**{n: play(n) for n in POLICIES}, "random": random_policy,
             f"forgets-after-{MEMORY}": play(forgets_after(MEMORY))}
    return {n: known[n] for n in names}


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (simulator, variant, policy) cell."""

    simulator: str
    variant: str
    policy: str
    episodes: int
    adherence: float  # in-scope requests that apply the rule (read mechanically)
    overgeneralization: float  # out-of-scope requests that apply it
    judged_satisfaction: float  # the reward per request: the user's judgements
    true_utility: float  # per request
    llm_fallbacks: float = 0.0  # per episode


@dataclass(frozen=True)
class DistanceRow:
    """In-scope adherence of one policy with the statement ``distance`` exchanges before the first request."""

    policy: str
    distance: int
    episodes: int
    adherence: float  # over every in-scope request
    first_half: float  # in-scope requests among the first half of the session
    second_half: float  # ... among the second half


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else 0.0


def _row(simulator: str, variant: str, policy: str, results: Sequence[EpisodeResult]) -> Row:
    o = [r.outcomes for r in results]
    return Row(simulator, variant, policy, len(results),
               adherence=_mean([x["adherence"] for x in o]), overgeneralization=_mean([x["overgeneralization"] for x in o]),
               judged_satisfaction=_mean([x["judged_satisfaction"] for x in o]),
               true_utility=_mean([x["mean_utility"] for x in o]), llm_fallbacks=_mean([r.fallbacks for r in results]))


def rows(seeds: Sequence[int], simulator: str = "rule", llm: "str | Backend | None" = None,
         llm_cache: str | None = None) -> list[Row]:
    """Every variant x policy (the three scripted ones and random), the user simulated by ``simulator``."""
    extra: dict[str, Any] = {"simulator": simulator}
    if simulator == "llm":
        extra.update(llm=llm, llm_cache=llm_cache)
    out = []
    for variant, kwargs in VARIANTS.items():
        for name, factory in _factories([*POLICIES, "random"]).items():
            results = play_lockstep(ENV_ID, factory, seeds, **kwargs, **extra)
            out.append(_row(simulator, variant, name, results))
    return out


def distance_rows(seeds: Sequence[int], horizon: int = 8) -> list[DistanceRow]:
    """In-scope adherence by distance for the policies that remember, forget, or never listen."""
    out = []
    for name, factory in _factories(["in-scope-only", f"forgets-after-{MEMORY}", "ignore"]).items():
        for distance in DISTANCES:
            results = play_lockstep(ENV_ID, factory, seeds, distance=distance, horizon=horizon)
            pairs = [p for r in results for p in r.outcomes["adherence_by_distance"]]
            half = distance + horizon // 2  # request k sits at distance + k
            out.append(DistanceRow(name, distance, len(results), _mean([a for _, a in pairs]),
                                   _mean([a for d, a in pairs if d < half]), _mean([a for d, a in pairs if d >= half])))
    return out


def format_table(table: Sequence[Any]) -> str:
    if table and isinstance(table[0], DistanceRow):
        head = f"{'policy':<16} {'distance':>8} {'n':>3} {'adherence':>9} {'1st half':>8} {'2nd half':>8}"
        lines = [head, "-" * len(head)]
        for r in table:
            lines.append(f"{r.policy:<16} {r.distance:>8} {r.episodes:>3} {r.adherence:>9.3f} {r.first_half:>8.3f} "
                         f"{r.second_half:>8.3f}")
        return "\n".join(lines)
    head = (f"{'simulator':<9} {'variant':<8} {'policy':<14} {'n':>3} {'adherence':>9} {'overgen':>7} "
            f"{'judged':>6} {'true_u':>6} {'fallbk':>6}")
    lines = [head, "-" * len(head)]
    for r in table:
        lines.append(f"{r.simulator:<9} {r.variant:<8} {r.policy:<14} {r.episodes:>3} {r.adherence:>9.3f} "
                     f"{r.overgeneralization:>7.3f} {r.judged_satisfaction:>6.3f} {r.true_utility:>6.3f} "
                     f"{r.llm_fallbacks:>6.2f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench scoped`` runs: the tables, then the rows saved as JSON."""
    n = max(episodes, 32)
    tables = [
        ("Rule user: in-scope adherence against out-of-scope overgeneralization, per policy and reveal form",
         lambda: rows(list(range(n)))),
        ("Adherence by distance (filler exchanges before the first request; request k sits at distance + k)",
         lambda: distance_rows(list(range(n)))),
    ]
    if not skip_llm:
        tables.append((f"LLM user ({llm}): the same scripted choices", lambda: rows(list(range(episodes)), "llm", llm)))
    return print_and_save(tables, format_table, out or "results/bench-scoped.json", echo)
