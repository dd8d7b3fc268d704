"""The APOHF study on DuelingPrompts: Double Thompson Sampling against uniform random pairs.

What *Prompt Optimization with Human Feedback* (Lin et al.) shows is that a user's pairwise
preferences alone find the best prompt: a dueling-bandit learner's regret flattens out,
while a learner that does not listen keeps paying. Here:

- **rule simulator** (Bradley-Terry on the hidden utility): Double Thompson Sampling
  (:class:`fbenv.agents.bandits.DoubleThompsonSampling`) and uniform random pairs, each
  over ``horizon`` duels per seed; the table gives the weak regret (1 minus the better
  prompt's utility) in each half of the episode, the strong regret and how often the
  last pair held the best prompt;
- **LLM simulator** (only without ``skip_llm``): the same two agents on shorter episodes
  with the LLM-simulated user; their episodes run concurrently, so its calls reach the
  backend as batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.agents.bandits import DoubleThompsonSampling
from fbenv.agents.base import Transition
from fbenv.baselines.results import print_and_save
from fbenv.episodes import lockstep_episodes
from fbenv.envs.dueling_prompts import pair_action, uniform_random
from fbenv.llm.base import Backend

ENV_ID = "fbenv/DuelingPrompts-v0"
AGENTS = ("dts", "random")


def dts_policy(env: gym.Env, seed: int) -> Callable[[Any, dict], int]:
    """Double Thompson Sampling as an ``(obs, info) -> action`` policy of the discrete view.

    Each call first learns from the step that produced ``info`` (its ``pair`` and
    ``preference``), then picks the next pair, so it runs under :func:`run_episode` and
    :func:`lockstep_episodes` unchanged.
    """
    n = env.unwrapped.n_prompts
    agent = DoubleThompsonSampling(n)
    agent.reset(seed)

    def act(obs: Any, info: dict) -> int:
        if "preference" in info:
            agent.update(Transition(None, info["pair"], 0.0, obs, False, False, info))
        return pair_action(*agent.act(obs, info), n)

    return act


def policy_of(name: str, env: gym.Env, seed: int) -> Callable[[Any, dict], int]:
    return dts_policy(env, seed) if name == "dts" else uniform_random(env)


def regret_curve(env: gym.Env, policy: Callable[[Any, dict], int], seed: int) -> tuple[np.ndarray, dict]:
    """Per-step weak regret of one episode from ``reset(seed)``, and its last info."""
    obs, info = env.reset(seed=seed)
    regrets = []
    while True:
        obs, _, terminated, truncated, info = env.step(policy(obs, info))
        regrets.append(info["regret"])
        if terminated or truncated:
            return np.asarray(regrets), info


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (simulator, agent) cell."""

    simulator: str
    agent: str
    episodes: int
    horizon: int
    regret: float  # cumulative weak regret
    regret_first_half: float
    regret_second_half: float
    strong_regret: float
    best_in_last_pair: float
    llm_fallbacks: float = 0.0


def rule_rows(seeds: Sequence[int], horizon: int = 200, n_prompts: int = 8) -> list[Row]:
    rows = []
    env = gym.make(ENV_ID, interface="discrete", horizon=horizon, n_prompts=n_prompts)
    for name in AGENTS:
        cols = []
        for seed in seeds:
            curve, info = regret_curve(env, policy_of(name, env, seed), seed)
            half = len(curve) // 2
            cols.append((curve.sum(), curve[:half].sum(), curve[half:].sum(), info["cumulative_strong_regret"],
                         float(info["is_success"])))
        m = np.mean(cols, axis=0)
        rows.append(Row("rule", name, len(seeds), horizon, *map(float, m)))
    env.close()
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int], horizon: int = 40, n_prompts: int = 8,
             llm_cache: str | None = None) -> list[Row]:
    rows = []
    for name in AGENTS:
        envs = [gym.make(ENV_ID, interface="discrete", simulator="llm", llm=llm, llm_cache=llm_cache,
                         horizon=horizon, n_prompts=n_prompts) for _ in seeds]
        curves: list[list[float]] = [[] for _ in seeds]

        def watch(policy, curve):
            def act(obs, info):
                if "regret" in info:
                    curve.append(info["regret"])
                return policy(obs, info)
            return act

        policies = [watch(policy_of(name, e, s), c) for e, s, c in zip(envs, seeds, curves)]
        results = lockstep_episodes(envs, policies, list(seeds))
        for e in envs:
            e.close()
        cols = []
        for r, curve in zip(results, curves):
            total = float(r.outcomes["cumulative_regret"])
            curve = curve + [total - sum(curve)]  # the last step's regret (no policy call follows it)
            half = len(curve) // 2
            cols.append((total, sum(curve[:half]), sum(curve[half:]), float(r.outcomes["cumulative_strong_regret"]),
                         float(r.is_success), float(r.fallbacks)))
        m = np.mean(cols, axis=0)
        rows.append(Row("llm", name, len(seeds), horizon, *map(float, m)))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'agent':<7} {'n':>3} {'T':>4} {'regret':>7} {'1st half':>8} {'2nd half':>8} "
            f"{'strong':>7} {'best@T':>6} {'fallback':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.simulator:<9} {r.agent:<7} {r.episodes:>3} {r.horizon:>4} {r.regret:>7.2f} "
                     f"{r.regret_first_half:>8.2f} {r.regret_second_half:>8.2f} {r.strong_regret:>7.2f} "
                     f"{r.best_in_last_pair:>6.2f} {r.llm_fallbacks:>8.2f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench dueling`` runs: the tables, then the rows saved as JSON."""
    tables = [("Rule simulator (Bradley-Terry user): Double Thompson Sampling vs uniform random pairs, 8 prompts", lambda: rule_rows(list(range(max(episodes, 20)))))]
    if not skip_llm:
        tables.append((f"LLM simulator ({llm}): the same agents on 40-duel episodes", lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-dueling.json", echo)
