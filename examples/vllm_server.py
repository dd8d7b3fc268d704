"""Simulated customers served by an OpenAI-compatible server (vLLM, llama.cpp, or OpenAI).

On a GPU machine, start a server, then point the env at it:

    vllm serve HuggingFaceTB/SmolLM2-1.7B-Instruct --port 8000
    python examples/vllm_server.py --llm openai:HuggingFaceTB/SmolLM2-1.7B-Instruct@http://localhost:8000/v1

Eight envs step at once and their customers' prompts reach the server concurrently, where
vLLM batches them. Every request carries a seed drawn from the env's ``reset(seed=...)``,
so a rerun against the same server and model repeats. Without a server, ``--llm embedded``
runs the same script on the CPU.
"""

from __future__ import annotations

import argparse

import numpy as np

import fbenv
from fbenv.baselines.rlhs import POLICIES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default="embedded", help="backend spec, e.g. openai:<model>@<base_url>")
    parser.add_argument("--timing", default="hindsight", choices=["foresight", "partial_hindsight", "hindsight"])
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    vec = fbenv.make_vec("fbenv/Advisor-v0", args.num_envs, interface="discrete", simulator="llm",
                         llm=args.llm, feedback_timing=args.timing)
    for name, policy in POLICIES.items():
        vec.reset(seed=args.seed)
        scenarios = [e.unwrapped.hidden_task() for e in vec.envs]
        done = np.zeros(args.num_envs, dtype=bool)
        reward = np.zeros(args.num_envs)
        utility = np.zeros(args.num_envs)
        turn = 0
        while not done.all():
            actions = [policy(s, turn) for s in scenarios]
            _, r, term, trunc, info = vec.step(actions)
            live = ~done
            reward[live] += r[live]
            utility[live] += np.asarray(info["true_utility"], dtype=float)[live]
            done |= term | trunc
            turn += 1
        print(f"{name:<10} reward {reward.mean():.3f}  true utility {utility.mean():.3f}")
    fallbacks = sum(e.unwrapped.parse_stats.fallbacks for e in vec.envs)
    print(f"unparseable simulator replies replaced by the rule customer: {fallbacks}")
    vec.close()


if __name__ == "__main__":
    main()
