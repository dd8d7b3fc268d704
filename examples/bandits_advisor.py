"""Bandits learning from a simulated customer's ratings: foresight vs hindsight (RLHS).

Advisor's discrete interface has 17 arms: for each product A-D one of four styles
(claim it has every need, disclose the truth, omit, hedge), and 16 = compare every
product truthfully. Each episode is a new customer (env seed), so a non-contextual
bandit learns which *kind* of reply earns the best rating on average.

What this script does about multi-turn episodes: the customer may ask follow-up
questions. The bandit chooses only the first reply (its arm); every follow-up is
answered with the truthful compare action (16), as ``expected_feedback_of_actions`` in
``fbenv.envs.advisor`` does. The bandit is updated once per episode with the episode's
return (the rating mapped to [0, 1], the bandits' reward range).

Expected picture (*RLHS*): ratings given before the consequences (``foresight``) pay as
much for a false "it has everything" as for the truth, so the bandit drifts toward claims
and its feedback reward stays high while the customers' true utility drops; rated after
the consequences (``hindsight``), claims are punished and true utility follows the reward.

    python examples/bandits_advisor.py --episodes 2000 --seeds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fbenv
from fbenv.agents.bandits import EXP3, UCB1, ThompsonSampling
from fbenv.agents.base import Agent, Transition
from fbenv.envs.advisor import COMPARE_ACTION, N_ACTIONS, N_ITEMS, STYLES


class UniformRandom(Agent):
    """The no-learning baseline: every arm with the same probability."""

    name = "uniform_random"

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.n_actions = n_actions

    def act(self, observation, info) -> int:
        return int(self.np_random.integers(self.n_actions))


def arm_name(arm: int) -> str:
    if arm == COMPARE_ACTION:
        return "compare"
    return f"{STYLES[arm // N_ITEMS]} {'ABCD'[arm % N_ITEMS]}"


def make_agents(horizon: int) -> list[Agent]:
    return [
        UCB1(N_ACTIONS),
        ThompsonSampling(N_ACTIONS),
        EXP3(N_ACTIONS, gamma=EXP3.tuned_gamma(N_ACTIONS, horizon)),
        UniformRandom(N_ACTIONS),
    ]


def run(agent: Agent, env, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """One learning run; per-episode arm, reward, true utility and whether the customer was deceived."""
    agent.reset(seed=seed)
    arms, rewards, utilities, deceived = (np.zeros(episodes) for _ in range(4))
    for t in range(episodes):
        obs, info = env.reset(seed=seed * 1_000_003 + t)  # a new customer every episode
        arm = agent.act(obs, info)
        last_obs, total, done, action = obs, 0.0, False, arm
        while not done:
            last_obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            done = terminated or truncated
            action = COMPARE_ACTION  # follow-up questions get the truthful comparison
        agent.update(Transition(obs, arm, total, last_obs, True, False, info))
        result = info["episode_result"]  # the episode's figures, summed by the env
        arms[t], rewards[t], utilities[t], deceived[t] = arm, total, result["true_utility"], result["outcomes"]["deceived"]
    return {"arm": arms, "reward": rewards, "utility": utilities, "deceived": deceived}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2000, help="episodes (customers) per learning run")
    parser.add_argument("--seeds", type=int, default=3, help="independent runs per (timing, agent)")
    parser.add_argument("--timings", nargs="+", default=["foresight", "hindsight"])
    args = parser.parse_args()

    print(
        f"Advisor-v0 discrete, {args.episodes} episodes x {args.seeds} seeds; means over all episodes "
        "(last quarter in brackets), favourite arm = most played in the last quarter"
    )
    header = f"{'timing':<10}{'agent':<18}{'reward':>16}{'true utility':>16}{'deceived':>16}  favourite arm"
    print(header)
    print("-" * len(header))
    tail = slice(-max(1, args.episodes // 4), None)
    for timing in args.timings:
        env = fbenv.make("fbenv/Advisor-v0", interface="discrete", feedback_timing=timing)
        for agent in make_agents(args.episodes):
            start = time.perf_counter()
            runs = [run(agent, env, args.episodes, seed) for seed in range(args.seeds)]
            cells = []
            for key in ("reward", "utility", "deceived"):
                all_mean = np.mean([r[key].mean() for r in runs])
                tail_mean = np.mean([r[key][tail].mean() for r in runs])
                cells.append(f"{all_mean:.3f} [{tail_mean:.3f}]")
            late_arms = np.concatenate([r["arm"][tail] for r in runs]).astype(int)
            counts = np.bincount(late_arms, minlength=N_ACTIONS)
            fav = int(counts.argmax())
            share = counts[fav] / counts.sum()
            print(
                f"{timing:<10}{agent.name:<18}{cells[0]:>16}{cells[1]:>16}{cells[2]:>16}  "
                f"{arm_name(fav)} ({share:.0%})   [{time.perf_counter() - start:.1f} s]"
            )
        env.close()


if __name__ == "__main__":
    main()
