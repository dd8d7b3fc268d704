"""Commons: social outcomes of rule populations, sparse vs dense feedback, and a short PPO seat.

What *Cooperation and Exploitation in LLM Policy Synthesis for Sequential Social
Dilemmas* is about is that agents revising their policies from feedback cooperate when
the feedback tells them the group's outcomes (dense) and exploit the commons when it
tells them only their own return (sparse). Here, with no model:

- **populations**: every seat one rule policy (greedy, restrained, zapper, the adaptive
  one reading reports every 25 steps under sparse and dense feedback; cleanup with and
  without cleaners): total return, efficiency, equality, sustainability, peace, depletion;
- **synthesis**: the paper's loop with a rule reviser (:class:`~fbenv.envs.commons.Synthesizer`):
  episodes in a row, each seat's restraint revised from each episode's report, sparse vs
  dense: the group's outcomes per episode after the first two;
- **learning**: ``agent_0`` trained with SB3 PPO on its discrete view (a single-seat
  wrapper; the other seats simulated restrained), against greedy and restrained scripted
  seats in the same place;
- the LLM rows (without ``skip_llm``): the simulated seats played by the LLM beside a
  restrained scripted ``agent_0``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fbenv.baselines.results import print_and_save
from fbenv.envs.commons import play, synthesis
from fbenv.llm.base import Backend
from fbenv.registry import make
from fbenv.wrappers import SingleSeat

ENV_ID = "fbenv/Commons-v0"
KEYS = ("total_return", "efficiency", "equality", "sustainability", "peace", "depleted", "zaps")


@dataclass(frozen=True)
class Row:
    """Means over episodes of one setting."""

    table: str
    setting: str
    episodes: int
    total_return: float
    efficiency: float
    equality: float
    sustainability: float
    peace: float
    depleted: float
    zaps: float
    own_return: float  # agent_0's


def _row(table: str, setting: str, results: Sequence[dict[str, Any]]) -> Row:
    def mean(key: str) -> float:
        return float(np.mean([float(r[key]) for r in results])) if results else 0.0

    return Row(table, setting, len(results), *(mean(k) for k in KEYS), mean("own_return"))


def run(kind: str, seeds: Sequence[int], **kwargs: Any) -> list[dict[str, Any]]:
    """``agent_0`` plays rule policy ``kind`` beside the simulated population: each episode's outcomes."""
    env = make(ENV_ID, interface="discrete", learnable="agent_0", **{"population": kind, **kwargs})
    policy = play(kind)(env)
    out = []
    for seed in seeds:
        obs, infos = env.reset(seed=seed)
        while env.agents:
            obs, _, _, _, infos = env.step({a: policy(a, obs[a], infos[a]) for a in env.agents})
        r = infos["agent_0"]["episode_result"]
        out.append({**r["outcomes"], "own_return": r["reward"]})
    return out


def population_rows(seeds: Sequence[int]) -> list[Row]:
    rows = [_row("populations", f"harvest {k}", run(k, seeds)) for k in ("greedy", "restrained", "zapper")]
    for fb in ("sparse", "dense"):
        rows.append(_row("populations", f"harvest adaptive ({fb}, every 25)",
                         run("adaptive", seeds, feedback=fb, feedback_every=25)))
    rows.append(_row("populations", "cleanup greedy", run("greedy", seeds, game="cleanup")))
    rows.append(_row("populations", "cleanup 2 greedy + 2 cleaners",
                     run("greedy", seeds, game="cleanup", population=("greedy", "cleaner", "greedy", "cleaner"))))
    return rows


def synthesis_rows(seeds: Sequence[int], runs: int = 4, episodes: int = 10) -> list[Row]:
    rows = []
    for fb in ("sparse", "dense"):
        eps = []
        for k in range(runs):
            env = make(ENV_ID, interface="discrete", feedback=fb)
            got = synthesis(env, [seeds[0] + 1000 * k + e for e in range(episodes)])
            eps += [{**e, "own_return": e["total_return"] / 4} for e in got[2:]]
        rows.append(_row("synthesis", f"rule reviser, {fb} feedback", eps))
    return rows


def learning_rows(seeds: Sequence[int], timesteps: int = 10_000) -> list[Row]:
    """``agent_0`` trained with PPO on its own reward beside restrained seats, then evaluated."""
    try:
        from stable_baselines3 import PPO
    except ImportError:  # the rl extra is not installed: the table says so
        return []
    env = SingleSeat(make(ENV_ID, interface="discrete", learnable="agent_0", max_cycles=200))
    model = PPO("MlpPolicy", env, n_steps=1000, batch_size=250, seed=0, verbose=0)
    model.learn(timesteps)
    out = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(int(model.predict(obs, deterministic=True)[0]))
            done = term or trunc
        out.append({**info["episode_result"]["outcomes"], "own_return": info["episode_result"]["reward"]})
    rows = [_row("learning", f"PPO agent_0 ({timesteps} steps) + 3 restrained", out)]
    for k in ("greedy", "restrained"):
        rows.append(_row("learning", f"{k} agent_0 + 3 restrained", run(k, seeds, population="restrained")))
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    kw = {"simulator": "llm", "llm": llm, "llm_cache": llm_cache, "max_cycles": 60}
    return [_row("llm", f"restrained agent_0 + 3 LLM seats ({fb})", run("restrained", seeds, feedback=fb,
                                                                        feedback_every=20, **kw))
            for fb in ("sparse", "dense")]


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'setting':<44} {'n':>4} {'total':>7} {'effic.':>6} {'equal.':>6} {'sustain.':>8} {'peace':>6} "
            f"{'depleted':>8} {'zaps':>6} {'own':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.setting:<44} {r.episodes:>4} {r.total_return:>7.1f} {r.efficiency:>6.3f} {r.equality:>6.3f} "
                     f"{r.sustainability:>8.3f} {r.peace:>6.3f} {r.depleted:>8.2f} {r.zaps:>6.1f} {r.own_return:>6.1f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench commons`` runs: the tables, then the rows saved as JSON."""
    n = max(episodes, 20)
    seeds = list(range(n))
    tables: list[tuple[str, Callable[[], list[Any]]]] = [
        ("Rule populations (every seat one policy; agent_0 scripted alike): social outcomes",
         lambda: population_rows(seeds)),
        ("Policy revision from each episode's report, sparse vs dense (episodes 3-10 of 4 runs)",
         lambda: synthesis_rows(seeds)),
        ("A learning seat: SB3 PPO agent_0 on its own reward beside restrained seats", lambda: learning_rows(seeds[:10])),
    ]
    if not skip_llm:
        tables.append((f"LLM seats ({llm}) beside a restrained agent_0", lambda: llm_rows(llm, seeds[:max(episodes, 2)])))
    return print_and_save(tables, format_table, out or "results/bench-commons.json", echo)


__all__ = ["Row", "bench", "learning_rows", "llm_rows", "population_rows", "run", "synthesis_rows"]
