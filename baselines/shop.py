"""Shop (WebShop-like): scripted shoppers' assistants and MaskablePPO with and without SPA.

What the credit-assignment papers (SPA-RL, CALM) study on WebShop is how a learner copes
with one sparse reward at the end of a long episode. This suite puts

- **oracle**: asks the shopper, searches everything it knows, opens the best-fitting
  result, selects the stated options, buys (the ceiling under the rule shopper);
- **first-result**: searches the category and buys the first result as it comes;
- **random**: uniformly random valid actions;
- **ppo** and **ppo+spa**: sb3-contrib's ``MaskablePPO`` on the discrete view, trained for
  the same number of steps on the terminal reward alone or through
  :class:`fbenv.wrappers.StepwiseProgress` (the shop's rule progress estimator),
  evaluated greedily on held-out seeds on the terminal reward (success rate = full match);

side by side: success rate, mean match, steps and invalid actions per episode. The LLM
rows put the scripted policies in front of the LLM-simulated shopper (its phrasing and
its answer to the size question).

Measured once (training seeds 0-2, 100 held-out episodes each; mean success rate / mean
match): 2,000 steps: ppo 0.00 / 0.20, ppo+spa 0.00 / 0.60; 5,000: 0.00 / 0.19 against
0.00 / 0.46; 10,000: 0.48 / 0.50 against 0.26 / 0.83; 15,000: 0.98 / 0.98 against
0.85 / 0.95; 20,000 and 30,000: 1.00 / 1.00 both. Stepwise progress makes PPO buy
well-matching items much sooner, but it does not reach a full match (which needs the
clarifying question and the told size) sooner: the success-rate gain SPA-RL reports on
WebShop does not show here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.envs.shop import POLICIES
from fbenv.episodes import EpisodeResult, run_episode
from fbenv.llm.base import Backend
from fbenv.wrappers import StepwiseProgress

ENV_ID = "fbenv/Shop-v0"
EVAL_SEEDS = range(10_000, 10_200)  # held out from training (training resets draw other seeds)


@dataclass(frozen=True)
class Row:
    """Means over the episodes of one (simulator, policy) cell."""

    simulator: str
    policy: str
    episodes: int
    success_rate: float
    match: float
    steps: float
    invalid_actions: float
    train_steps: int = 0
    llm_fallbacks: float = 0.0


def _row(simulator: str, policy: str, results: Sequence[EpisodeResult], train_steps: int = 0) -> Row:
    o = [r.outcomes for r in results]
    return Row(simulator, policy, len(results),
               success_rate=float(np.mean([x.get("success", 0.0) for x in o])),
               match=float(np.mean([x.get("match", 0.0) for x in o])),
               steps=float(np.mean([r.turns for r in results])),
               invalid_actions=float(np.mean([x.get("invalid_actions", 0) for x in o])),
               train_steps=train_steps, llm_fallbacks=float(np.mean([r.fallbacks for r in results])))


def make_env(progress: bool = False, **kwargs: Any) -> gym.Env:
    env = gym.make(ENV_ID, interface="discrete", **kwargs)
    return StepwiseProgress(env) if progress else env


def train_maskable_ppo(progress: bool, steps: int, seed: int = 0, **env_kwargs: Any):
    """``MaskablePPO`` trained ``steps`` steps on the discrete view, on the terminal reward
    alone (``progress=False``) or through :class:`StepwiseProgress` (``progress=True``)."""
    from sb3_contrib import MaskablePPO

    env = make_env(progress, **env_kwargs)
    env.reset(seed=seed)
    model = MaskablePPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=4, gamma=0.99, ent_coef=0.01,
                        learning_rate=1e-3, seed=seed, verbose=0)
    model.learn(steps)
    return model


def ppo_policy(model) -> Callable[[gym.Env], Callable[[Any, dict], Any]]:
    """A trained model as a policy factory (greedy, masked by the env's valid actions)."""

    def factory(env: gym.Env):
        base = env.unwrapped

        def act(obs, info):
            action, _ = model.predict(obs, deterministic=True, action_masks=base.action_masks())
            return int(action)

        return act

    return factory


def evaluate(factory, seeds: Sequence[int] = EVAL_SEEDS, **env_kwargs: Any) -> list[EpisodeResult]:
    """Episodes on the plain env (the terminal reward), one per seed."""
    env = make_env(False, **env_kwargs)
    policy = factory(env)
    out = [run_episode(env, policy, int(s)) for s in seeds]
    env.close()
    return out


def rule_rows(seeds: Sequence[int]) -> list[Row]:
    return [_row("rule", name, evaluate(factory, seeds)) for name, factory in POLICIES.items()]


def ppo_rows(steps: int, seeds: Sequence[int], train_seeds: Sequence[int] = (0,)) -> list[Row]:
    """PPO with and without stepwise progress, the same training budget, mean over training seeds."""
    rows = []
    for progress in (False, True):
        results = []
        for s in train_seeds:
            results += evaluate(ppo_policy(train_maskable_ppo(progress, steps, seed=int(s))), seeds)
        rows.append(_row("rule", "ppo+spa" if progress else "ppo", results, train_steps=steps))
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int]) -> list[Row]:
    rows = []
    for name, factory in POLICIES.items():
        results = play_lockstep(ENV_ID, factory, seeds, simulator="llm", llm=llm)
        rows.append(_row("llm", name, results))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'policy':<13} {'n':>4} {'success':>8} {'match':>6} {'steps':>6} {'invalid':>8} "
            f"{'train':>7} {'fallback':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.simulator:<9} {r.policy:<13} {r.episodes:>4} {r.success_rate:>8.3f} {r.match:>6.3f} "
                     f"{r.steps:>6.2f} {r.invalid_actions:>8.2f} {r.train_steps:>7} {r.llm_fallbacks:>8.2f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print,
          ppo_steps: int = 10_000) -> Path:
    """What ``fbenv bench shop`` runs: the tables, then the rows saved as JSON."""
    seeds = list(EVAL_SEEDS)[: max(episodes, 100)]
    tables = [("Rule shopper: scripted assistants, then MaskablePPO with and without stepwise progress (SPA)",
               lambda: rule_rows(seeds) + (ppo_rows(ppo_steps, seeds) if ppo_steps > 0 else []))]
    if not skip_llm:
        tables.append((f"LLM shopper ({llm}): the same scripted assistants", lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-shop.json", echo)
