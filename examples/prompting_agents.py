"""Zero-shot vs Reflexion prompting agents on Advisor, rated with hindsight.

Both agents advise the same customers (the same env seeds). The zero-shot agent answers
from the transcript alone; the Reflexion agent writes a lesson from each episode's
feedback (the customer's decision, the hindsight outcome, the rating) and keeps the last
few in its system prompt. Each line prints the feedback reward beside the true utility
the feedback is supposed to track.

    python examples/prompting_agents.py                    # the embedded SmolLM2 model
    python examples/prompting_agents.py --llm openai:Qwen2.5-7B-Instruct@http://localhost:8000/v1
    python examples/prompting_agents.py --reflection feedback --episodes 6

The embedded model is tiny (135M parameters): expect fluent but unreliable advice. The
point of the script is the loop, which works unchanged with any backend spec.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fbenv
from fbenv.agents.base import Agent, Transition
from fbenv.agents.prompting import ReflexionAgent, ZeroShotAgent

SYSTEM_PROMPT = (
    "You are a shop assistant. Recommend one product by its letter and say truthfully which of the "
    "customer's needs it meets, using only the catalogue. Answer in one or two sentences."
)


def run(agent: Agent, env, episodes: int, seed: int) -> list[tuple[float, float, int]]:
    """Play ``episodes`` episodes; return (reward, true utility, turns) for each."""
    agent.reset(seed=seed)
    out = []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        total, turns, done = 0.0, 0, False
        while not done:
            action = agent.act(obs, info)
            next_obs, reward, terminated, truncated, info = env.step(action)
            agent.update(Transition(obs, action, reward, next_obs, terminated, truncated, info))
            total, turns, obs = total + reward, turns + 1, next_obs
            done = terminated or truncated
        truth = info["episode_result"]["true_utility"]  # summed over the episode by the env
        out.append((total, truth, turns))
        print(
            f"  {agent.name:<10} episode {ep}: reward {total:.3f}  true utility {truth:.3f}  "
            f"turns {turns}  decision {info.get('decision')}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default="embedded", help="backend spec of the agents (default: embedded)")
    parser.add_argument("--cache", default=None, choices=("off", "readwrite", "replay"), help="LLM cache mode")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing", default="hindsight", choices=("foresight", "partial_hindsight", "hindsight"))
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--memory", type=int, default=3, help="lessons the Reflexion agent keeps")
    parser.add_argument("--reflection", default="llm", choices=("llm", "feedback"))
    args = parser.parse_args()

    env = fbenv.make("fbenv/Advisor-v0", feedback_timing=args.timing)
    common = dict(llm_cache=args.cache, system_prompt=SYSTEM_PROMPT, max_tokens=args.max_tokens)
    agents = [
        ZeroShotAgent(args.llm, **common),
        ReflexionAgent(args.llm, **common, memory_size=args.memory, reflection=args.reflection,
                       reflection_max_tokens=40),
    ]
    print(f"Advisor-v0, {args.timing} feedback, {args.episodes} episodes, agents on {args.llm!r}")
    summary = []
    for agent in agents:
        start = time.perf_counter()
        rows = np.array(run(agent, env, args.episodes, args.seed))
        summary.append((agent.name, rows[:, 0].mean(), rows[:, 1].mean(), time.perf_counter() - start))
        if isinstance(agent, ReflexionAgent):
            print("  lessons in memory:")
            for lesson in agent.memory:
                print(f"    - {lesson}")
    print(f"\n{'agent':<12}{'mean reward':>12}{'mean true utility':>20}{'seconds':>10}")
    for name, reward, utility, seconds in summary:
        print(f"{name:<12}{reward:>12.3f}{utility:>20.3f}{seconds:>10.1f}")
    env.close()


if __name__ == "__main__":
    main()
