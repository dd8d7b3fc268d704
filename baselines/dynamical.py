"""The Dynamical Linear Bandits study on DynamicalBandit: DynLin-UCB against myopic learners.

What *Dynamical Linear Bandits* (Mussi, Metelli & Restelli) shows is that when a hidden
state carries each action's effect forward, a bandit that judges an arm by its immediate
reward settles on the wrong arm, and DynLin-UCB, which holds each arm long enough for the
transient to fade and regresses only the settled reward, does not. Here, on the rule
model (the task has no LLM simulator), each agent plays whole episodes of ``horizon``
rounds, one hidden system per seed:

- ``dynlinucb``: :class:`fbenv.agents.bandits.DynLinUCB`, told the env's ``rho``;
- ``linucb``: :class:`fbenv.agents.bandits.LinUCB` on the discrete observation (last arm,
  last reward, time): it models the immediate reward, so it ignores where the state goes;
- ``random``: a uniformly random arm each round;
- two scripted references that know the hidden system: ``hold-best`` always pulls the
  best arm to hold (the comparator of the regret) and ``hold-myopic`` always pulls the
  trap (the arm with the largest immediate payoff).

The table gives the cumulative reward and the cumulative regret against holding the best
arm in steady state (in each half of the episode), and the shares of rounds on the best
arm and on the trap, for ``rho`` in 0, 0.7 and 0.95. At ``rho = 0`` a pull still moves the
next round's reward (``x(t+1) = B u(t)``), but DynLin-UCB's window is then a single round,
so it judges each arm by a reward that the previous arm shaped and is about as myopic as
LinUCB: the row shows where the algorithm's epoch rule stops helping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.baselines.results import print_and_save

from fbenv.agents.bandits import DynLinUCB, LinUCB
from fbenv.agents.base import Agent, Transition
from fbenv.errors import UnknownNameError

ENV_ID = "fbenv/DynamicalBandit-v0"
AGENTS = ("dynlinucb", "linucb", "random", "hold-best", "hold-myopic")
RHOS = (0.0, 0.7, 0.95)


class UniformRandom(Agent):
    """A uniformly random arm each round."""

    name = "random"

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.n_actions = n_actions

    def act(self, observation: Any, info: dict) -> int:
        return int(self.np_random.integers(self.n_actions))


class Hold(Agent):
    """Always the same arm, read from the env's hidden system when the episode starts."""

    def __init__(self, env: gym.Env, which: str) -> None:
        super().__init__()
        self.env, self.which = env, which
        self.name = f"hold-{which}"

    def act(self, observation: Any, info: dict) -> int:
        task = self.env.unwrapped.hidden_task()
        return task.best_arm if self.which == "best" else task.myopic_arm


def make_agent(name: str, env: gym.Env) -> Agent:
    """A fresh agent ``name`` for the discrete view of ``env``."""
    u = env.unwrapped
    k = u.n_arms
    if name == "dynlinucb":
        return DynLinUCB(k, k, rho=u.rho)
    if name == "linucb":
        return LinUCB(k, u.n_features)
    if name == "random":
        return UniformRandom(k)
    if name in ("hold-best", "hold-myopic"):
        return Hold(env, name.removeprefix("hold-"))
    raise UnknownNameError("DynamicalBandit bench agent", name, AGENTS)


@dataclass(frozen=True)
class Episode:
    """One agent's episode from one seed."""

    reward: float  # the feedback return
    true_utility: float  # the expected return
    regret: float  # cumulative regret against holding the best arm in steady state
    regret_first_half: float
    best_arm_share: float
    myopic_arm_share: float


def play(env: gym.Env, agent: Agent, seed: int) -> Episode:
    """One episode of ``agent`` (learning as it goes) from ``reset(seed)``.

    The agent is reseeded with ``seed + 10_000``: equal seeds would give the agent and the
    env the same random stream."""
    agent.reset(seed + 10_000)
    obs, info = env.reset(seed=seed)
    reward = utility = 0.0
    regrets = []
    while True:
        action = agent.act(obs, info)
        next_obs, r, terminated, truncated, info = env.step(action)
        agent.update(Transition(obs, action, r, next_obs, terminated, truncated, info))
        reward += r
        utility += info["true_utility"]
        regrets.append(info["regret"])
        obs = next_obs
        if terminated or truncated:
            break
    half = len(regrets) // 2
    return Episode(reward, utility, float(info["cumulative_regret"]), float(sum(regrets[:half])),
                   float(info["best_arm_share"]), float(info["myopic_arm_share"]))


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (rho, agent) cell."""

    rho: float
    agent: str
    episodes: int
    horizon: int
    reward: float
    true_utility: float
    regret: float
    regret_first_half: float
    regret_second_half: float
    best_arm_share: float
    myopic_arm_share: float


def rule_rows(seeds: Sequence[int], horizon: int = 1000, rhos: Sequence[float] = RHOS, n_arms: int = 3) -> list[Row]:
    rows = []
    for rho in rhos:
        env = gym.make(ENV_ID, interface="discrete", horizon=horizon, rho=rho, n_arms=n_arms)
        for name in AGENTS:
            eps = [play(env, make_agent(name, env), seed) for seed in seeds]
            m = np.mean([(e.reward, e.true_utility, e.regret, e.regret_first_half, e.regret - e.regret_first_half,
                          e.best_arm_share, e.myopic_arm_share) for e in eps], axis=0)
            rows.append(Row(rho, name, len(seeds), horizon, *map(float, m)))
        env.close()
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'rho':>5} {'agent':<12} {'n':>3} {'T':>5} {'reward':>8} {'true_u':>8} {'regret':>7} "
            f"{'1st half':>8} {'2nd half':>8} {'best%':>6} {'trap%':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.rho:>5.2f} {r.agent:<12} {r.episodes:>3} {r.horizon:>5} {r.reward:>8.1f} "
                     f"{r.true_utility:>8.1f} {r.regret:>7.1f} {r.regret_first_half:>8.1f} "
                     f"{r.regret_second_half:>8.1f} {100 * r.best_arm_share:>6.1f} {100 * r.myopic_arm_share:>6.1f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench dynamical`` runs: the table, then the rows saved as JSON.

    ``llm`` and ``skip_llm`` are part of every suite's signature; this task has no LLM
    simulator, so they change nothing."""
    seeds = list(range(max(episodes, 10)))
    title = "DynamicalBandit (rule model, 3 arms, 1000 rounds): DynLin-UCB vs myopic LinUCB vs random"
    if not skip_llm:
        title += f"\n(no LLM simulator in this task: {llm!r} is not used)"
    return print_and_save([(title, lambda: rule_rows(seeds))], format_table, out or "results/bench-dynamical.json", echo)
