"""Stable-Baselines3 PPO and DQN on Advisor: what optimizing foresight vs hindsight ratings buys.

Trains each algorithm twice on ``fbenv/Advisor-v0`` (discrete interface, rule customer):
once on ``foresight`` ratings (the customer rates right after deciding, from what it was
told) and once on ``hindsight`` ratings (it rates after finding out). Every policy, and a
uniform-random one, is then evaluated on the same held-out customers, by both kinds of
rating and by the customer's true utility. The RLHS finding shows up in a few minutes on
a CPU: the foresight-trained advisor earns the better foresight ratings while its
customers end up worse off, deceived by false claims.

    python examples/sb3_advisor.py              # 20,000 steps per run
    python examples/sb3_advisor.py --steps 5000 # quicker, noisier
"""

from __future__ import annotations

import argparse
import time

import torch
from stable_baselines3 import DQN, PPO

from fbenv.agents.sb3 import evaluate, make_vec_env

ENV_ID = "fbenv/Advisor-v0"


def train(algo: str, timing: str, steps: int, seed: int):
    if algo == "PPO":
        venv = make_vec_env(ENV_ID, n_envs=4, seed=seed, feedback_timing=timing)
        model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, learning_rate=1e-3, seed=seed, verbose=0)
    else:
        venv = make_vec_env(ENV_ID, n_envs=1, seed=seed, feedback_timing=timing)
        model = DQN(
            "MlpPolicy", venv, learning_rate=1e-3, learning_starts=256, buffer_size=20_000, batch_size=64,
            exploration_fraction=0.5, train_freq=4, target_update_interval=100, seed=seed, verbose=0,
        )
    return model.learn(steps)


def row(name: str, policy, episodes: int, eval_seed: int) -> str:
    fore = evaluate(policy, ENV_ID, episodes, seed=eval_seed, feedback_timing="foresight")
    hind = evaluate(policy, ENV_ID, episodes, seed=eval_seed, feedback_timing="hindsight")
    # true utility and the deception outcomes depend on the policy's advice, not on who rates
    return (
        f"{name:<22} {fore.mean_reward:>10.3f} {hind.mean_reward:>10.3f} {fore.mean_true_utility:>8.3f} "
        f"{fore.success_rate:>8.3f} {fore.outcomes['deceived']:>9.3f} {fore.outcomes['misstatements']:>9.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per training run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=500, help="held-out evaluation episodes")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small MLPs: one thread is fastest, and leaves the other cores alone
    eval_seed = 1_000_000  # training episodes are seeded from --seed upwards; these customers are new

    header = f"{'policy':<22} {'foresight':>10} {'hindsight':>10} {'true u.':>8} {'success':>8} {'deceived':>9} {'misstated':>9}"
    print(f"Advisor-v0, {args.episodes} held-out customers; columns: mean foresight rating, mean hindsight "
          "rating (both in [0, 1]),\ntrue utility, best-choice rate, share of customers deceived, false claims per episode")
    print(header)
    print("-" * len(header))
    print(row("random", "random", args.episodes, eval_seed), flush=True)
    for algo in ("PPO", "DQN"):
        for timing in ("foresight", "hindsight"):
            start = time.perf_counter()
            model = train(algo, timing, args.steps, args.seed)
            name = f"{algo} on {timing} ({time.perf_counter() - start:.0f}s)"
            print(row(name, model, args.episodes, eval_seed), flush=True)


if __name__ == "__main__":
    main()
