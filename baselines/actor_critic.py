"""Critique-RL on ActorCritic: verdict accuracy and helpfulness of scripted critics against the rule actor.

What *Critique-RL* (and DeepCritic, AutoMathCritique) is about is that a critic must do
two things: tell right answers from wrong ones (discrimination) and write critiques that
make the actor right (helpfulness), and that the first does not give the second. Without
any learning, scripted critics against the simulated rule actor (injected errors, fixes
the step a critique names) show it:

- **always-correct**: at chance (the actor's first-answer accuracy), never helps;
- **oracle**: reads the truth and names the wrong step: full accuracy, helps;
- **misplaced** (right verdict, names another step) and **unlocated** (right verdict, no
  step): full accuracy, no help;
- **reader**: trusts its own noisy reading of each step (the discrete critic's features);
  **rule**: the simulated critic (the bank's, noisy); **random**.

Then the seats swapped: scripted actors (a critique-follower, an ignorer, random) under
the simulated critic. The LLM rows (without ``skip_llm``): the oracle and always-correct
critics against the LLM actor (prompted with the critique), and the follower under the
LLM critic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fbenv.baselines.results import print_and_save
from fbenv.envs.actor_critic import ACTORS, CRITICS, play
from fbenv.llm.base import Backend
from fbenv.registry import make

ENV_ID = "fbenv/ActorCritic-v0"


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (simulator, learnable seat, critic, actor) cell."""

    simulator: str
    seat: str  # the scripted (learnable) seat; the other is simulated
    critic: str
    actor: str
    episodes: int
    verdict_accuracy: float
    helpfulness: float
    fixed: float
    broken: float
    first_correct: float
    solved: float
    reward: float  # the learnable seat's feedback return
    llm_fallbacks: float = 0.0


def run(critic: str, actor: str, seat: str, seeds: Sequence[int], **kwargs: Any) -> list[dict[str, Any]]:
    """One episode per seed with the scripted ``seat`` learnable: its end-of-episode result."""
    env = make(ENV_ID, interface="discrete", learnable=seat, **kwargs)
    policy = play(critic, actor)(env)
    out = []
    try:
        for seed in seeds:
            obs, infos = env.reset(seed=seed)
            while env.agents:
                obs, _, _, _, infos = env.step({a: policy(a, obs[a], infos[a]) for a in env.agents})
                if seat in infos and "episode_result" in infos[seat]:
                    out.append(infos[seat]["episode_result"])
    finally:
        env.close()
    return out


def _row(simulator: str, seat: str, critic: str, actor: str, results: Sequence[dict[str, Any]]) -> Row:
    def mean(key: str) -> float:
        return float(np.mean([float(r["outcomes"][key]) for r in results])) if results else 0.0

    return Row(simulator, seat, critic, actor, len(results), mean("verdict_accuracy"), mean("helpfulness"),
               mean("fixed"), mean("broken"), mean("first_correct"), mean("solved"),
               float(np.mean([r["reward"] for r in results])) if results else 0.0,
               float(np.mean([r["fallbacks"] for r in results])) if results else 0.0)


def critic_rows(seeds: Sequence[int], critics: Sequence[str] = tuple(CRITICS)) -> list[Row]:
    """Every scripted critic against the simulated rule actor."""
    return [_row("rule", "critic_0", c, "rule", run(c, "follower", "critic_0", seeds)) for c in critics]


def actor_rows(seeds: Sequence[int]) -> list[Row]:
    """Every scripted actor under the simulated rule critic."""
    return [_row("rule", "actor_0", "rule", a, run("rule", a, "actor_0", seeds)) for a in ACTORS]


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    """Scripted critics against the LLM actor, and the scripted follower under the LLM critic."""
    kw = {"simulator": "llm", "llm": llm, "llm_cache": llm_cache}
    rows = [_row("llm", "critic_0", c, "llm", run(c, "follower", "critic_0", seeds, **kw))
            for c in ("oracle", "always-correct", "misplaced")]
    rows.append(_row("llm", "actor_0", "llm", "follower", run("rule", "follower", "actor_0", seeds, **kw)))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'seat':<8} {'critic':<14} {'actor':<9} {'n':>4} {'accuracy':>8} {'helpful':>7} "
            f"{'fixed':>6} {'broken':>6} {'first':>6} {'solved':>6} {'reward':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.simulator:<9} {r.seat:<8} {r.critic:<14} {r.actor:<9} {r.episodes:>4} {r.verdict_accuracy:>8.3f} "
                     f"{r.helpfulness:>7.3f} {r.fixed:>6.3f} {r.broken:>6.3f} {r.first_correct:>6.3f} {r.solved:>6.3f} "
                     f"{r.reward:>6.3f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench actor_critic`` runs: the tables, then the rows saved as JSON."""
    n = max(episodes, 200)
    tables: list[tuple[str, Callable[[], list[Any]]]] = [
        ("Scripted critics against the rule actor: verdict accuracy and helpfulness",
         lambda: critic_rows(list(range(n)))),
        ("Scripted actors under the rule critic", lambda: actor_rows(list(range(n))))]
    if not skip_llm:
        tables.append((f"LLM simulators ({llm}): scripted critics against the LLM actor, the follower under the LLM critic",
                       lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-actor_critic.json", echo)
