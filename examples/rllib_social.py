"""RLlib PPO on the social games: one policy per seat type, every seat learnable.

Trains PPO (RLlib's new API stack, torch, CPU) on the discrete view of each multi-agent
game, through RLlib's ``ParallelPettingZooEnv``: SafetyWaltz (an ``assistant`` policy and a
``feedback`` policy), Negotiation with a coach (``buyer``, ``seller`` and ``coach``) and
Commons (one ``agent`` policy shared by the four gatherers). It prints each iteration's
mean episode return per seat, then plays the trained policies greedily on new seeds and
shows each seat's feedback return beside its true utility and the game's social metrics
(unsafe and overrefusal rates, deal rate, sustainability...).

Needs ``pip install 'fbenv[rllib]'`` (RLlib's requirements without the ``ray[rllib]``
extra's Gymnasium pin).

    python examples/rllib_social.py                          # 10 iterations per game
    python examples/rllib_social.py --game Commons-v0 --iterations 50
"""

from __future__ import annotations

import argparse
import time

import ray
import torch

from fbenv.agents.rllib import ppo_config, rollout, train

GAMES = {
    "SafetyWaltz-v0": {},
    "Negotiation-v0": {"learnable": ("buyer_0", "seller_0", "coach_0"), "coach": "buyer_0", "games": 3},
    "Commons-v0": {"max_cycles": 50},
}
# the end-of-episode metrics worth a glance per game
SHOW = {
    "SafetyWaltz-v0": ("unsafe_rate", "overrefusal_rate", "intervention_rate"),
    "Negotiation-v0": ("deal_rate", "buyer_share", "broken"),
    "Commons-v0": ("efficiency", "equality", "sustainability", "peace"),
}


def run(env_id: str, iterations: int, batch: int, episodes: int, seed: int) -> None:
    kwargs = GAMES[env_id]
    start = time.time()
    result = train(env_id, iterations, config=ppo_config(env_id, seed=seed, train_batch=batch, **kwargs))
    print(f"\n== {env_id}  policies: {sorted(result.modules.keys())}  ({time.time() - start:.0f} s)")
    for it in result.iterations:
        returns = "  ".join(f"{seat} {value:+.2f}" for seat, value in it.returns.items())
        print(f"  iter {it.iteration + 1:>3}  steps {it.env_steps:>5}  episodes {it.episodes:>3}  {returns}")
    # held-out seeds: the training episodes were seeded from --seed upwards
    results = rollout(result.modules, env_id, episodes=episodes, seed=1_000_000 + seed, **kwargs)
    print(f"  greedy rollout over {episodes} episodes:")
    for seat, r in results.items():
        metrics = "  ".join(f"{k} {r.outcomes[k]:.2f}" for k in SHOW[env_id] if k in r.outcomes)
        print(f"    {seat:<12} return {r.reward:+.2f}  true utility {r.true_utility:+.2f}  {metrics}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", choices=sorted(GAMES), action="append", help="a game (default: all three)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--batch", type=int, default=512, help="env steps per training iteration")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small MLPs: one thread is fastest
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        for env_id in args.game or list(GAMES):
            run(env_id, args.iterations, args.batch, args.episodes, args.seed)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
