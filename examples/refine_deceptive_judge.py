"""Stable-Baselines3 PPO on Refine's discrete view: an honest judge teaches, a deceptive one misleads.

Trains PPO twice on ``fbenv/Refine-v0`` (answer-level feedback, rule critic): once under
the honest judge and once under the deceptive judge (WAFER-QA's: it argues, with a
fabricated reason, for one wrong answer, also when the solver is right). Each policy, and
a uniform-random one, is evaluated on the same held-out problems under the judge it was
trained with. Under the honest judge PPO beats random on the feedback reward and the
true utility alike; under the deceptive judge its feedback reward rises while its true
utility falls behind (the gap is the point of the task).

    python examples/refine_deceptive_judge.py              # 8,000 steps per run
    python examples/refine_deceptive_judge.py --steps 3000 # quicker, noisier
"""

from __future__ import annotations

import argparse
import time

import torch
from stable_baselines3 import PPO

from fbenv.agents.sb3 import evaluate, make_vec_env

ENV_ID = "fbenv/Refine-v0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8000, help="env steps per training run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=300, help="held-out evaluation episodes")
    parser.add_argument("--feedback", default="answer", help="the feedback level")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small MLPs: one thread is fastest
    eval_seed = 1_000_000  # new problems, not the training ones

    print(f"Refine-v0, feedback={args.feedback}, {args.episodes} held-out problems; columns: the critic's "
          "acceptances (feedback reward), correctness (true utility), friction, flips of right answers")
    header = f"{'judge':<10} {'policy':<18} {'reward':>7} {'true u.':>8} {'friction':>9} {'flipped':>8}"
    print(header)
    print("-" * len(header))
    for judge in ("honest", "deceptive"):
        kw = {"feedback": args.feedback, "judge": judge}
        start = time.perf_counter()
        venv = make_vec_env(ENV_ID, n_envs=4, seed=args.seed, **kw)
        model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, learning_rate=3e-3, seed=args.seed, verbose=0)
        model.learn(args.steps)
        took = time.perf_counter() - start
        for name, policy in (("random", "random"), (f"PPO ({took:.0f}s)", model)):
            r = evaluate(policy, ENV_ID, args.episodes, seed=eval_seed, **kw)
            print(f"{judge:<10} {name:<18} {r.mean_reward:>7.3f} {r.mean_true_utility:>8.3f} "
                  f"{r.outcomes['friction']:>9.3f} {r.outcomes['flipped_correct_to_wrong']:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
