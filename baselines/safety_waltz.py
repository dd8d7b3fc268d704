"""The Alignment Waltz on SafetyWaltz: unsafe and overrefusal rates per feedback agent, and a learned one.

What *The Alignment Waltz* is about is that a feedback agent which speaks only when a
response is unsafe or overrefuses, and is rewarded by the improvement its feedback brings
(the Dynamic Improvement Reward, penalized on responses that were already fine), lowers
both the unsafe and the overrefusal rate of a conversation agent (the paper: unsafe 39.0%
to 4.6%, overrefusal 45.3% to 9.9%) without intervening everywhere. Against the simulated
rule assistant (39% unsafe on harmful requests, 45% overrefusal on sensitive ones):

- scripted feedback agents: **silent** (no feedback: the baseline), **oracle** (speaks only
  on wrong responses, with the fixing suggestion), **everywhere** (suggests the best act on
  every response), **cautious** (reads alarming words as harm), **random**;
- scripted assistants against the simulated (oracle) feedback agent: always comply, always
  refuse, always safe-complete, the ideal act per label, and the rule assistant's follower;
- a learning baseline: SB3 PPO on the feedback seat's discrete view (the assistant
  simulated) through :class:`SingleSeat`, with the DIR's penalty and without it, evaluated
  on held-out seeds beside the silent and oracle agents;
- the LLM rows (without ``skip_llm``): the oracle and silent agents against the LLM
  assistant (``llm``), and the LLM feedback agent against the rule assistant.

Rates are pooled over episodes from the counts; ``feedback r`` is the feedback seat's
return (the DIR), ``quality`` the true score of the final responses per request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.baselines.results import print_and_save
from fbenv.envs.safety_waltz import ASSISTANT, FEEDBACK, SafetyWaltzEnv, play, pooled
from fbenv.episodes import EpisodeResult, run_parallel_episode
from fbenv.llm.base import Backend
from fbenv.wrappers import SingleSeat

N_PROMPTS = 6


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (assistant, feedback agent) cell; rates pooled."""

    assistant: str
    feedback: str
    episodes: int
    unsafe: float
    overrefusal: float
    first_unsafe: float
    first_overrefusal: float
    intervention_rate: float
    needless: float  # interventions on fine responses, per episode
    feedback_reward: float  # the feedback seat's return (the DIR); nan when the seat was simulated
    assistant_reward: float  # the assistant seat's return (the judge); nan when simulated
    quality: float  # true score of the final responses, per request
    llm_fallbacks: float = 0.0


def _row(assistant: str, feedback: str, results: Sequence[EpisodeResult], feedback_reward: float = float("nan"),
         assistant_reward: float = float("nan")) -> Row:
    o = [r.outcomes for r in results]
    return Row(assistant, feedback, len(results), pooled(results, "unsafe"), pooled(results, "overrefusal"),
               pooled(results, "first_unsafe"), pooled(results, "first_overrefusal"),
               float(np.mean([x["intervention_rate"] for x in o])), float(np.mean([x["needless"] for x in o])),
               feedback_reward, assistant_reward, float(np.mean([x["mean_quality"] for x in o])),
               float(np.mean([r.fallbacks for r in results])))


def _episodes(policy, seeds: Sequence[int], **kw: Any) -> list[EpisodeResult]:
    env = SafetyWaltzEnv(interface="discrete", n_prompts=N_PROMPTS, **kw)
    try:
        act = policy(env)
        return [run_parallel_episode(env, act, s) for s in seeds]
    finally:
        env.close()


def feedback_rows(seeds: Sequence[int], **kw: Any) -> list[Row]:
    """Every scripted feedback agent against the simulated rule assistant."""
    rows = []
    for name in ("silent", "oracle", "everywhere", "cautious", "random"):
        results = _episodes(play(name), seeds, learnable=FEEDBACK, **kw)
        rows.append(_row("rule", name, results, feedback_reward=float(np.mean([r.reward for r in results]))))
    return rows


def assistant_rows(seeds: Sequence[int]) -> list[Row]:
    """Scripted assistants against the simulated (oracle) feedback agent."""
    rows = []
    for name in ("comply", "refuse", "safe", "ideal", "follower"):
        results = _episodes(play("oracle", name), seeds, learnable=ASSISTANT)
        rows.append(_row(name, "rule", results, assistant_reward=float(np.mean([r.reward for r in results]))))
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    """The oracle and silent agents against the LLM assistant; the LLM feedback agent against the rule one."""
    rows = []
    for name in ("oracle", "silent"):
        results = _episodes(play(name), seeds, learnable=FEEDBACK, simulator={"assistant": "llm", "judge": "llm"},
                            llm=llm, llm_cache=llm_cache)
        rows.append(_row("llm", name, results, feedback_reward=float(np.mean([r.reward for r in results]))))
    results = _episodes(play("oracle", "follower"), seeds, learnable=ASSISTANT, simulator={"feedback": "llm"},
                        llm=llm, llm_cache=llm_cache)
    rows.append(_row("follower", "llm", results, assistant_reward=float(np.mean([r.reward for r in results]))))
    return rows


# ---------------------------------------------------------------------- learning


@dataclass(frozen=True)
class PPOFeedback:
    """A trained PPO feedback agent as a seat policy factory (greedy actions)."""

    model: Any

    def __call__(self, env: Any) -> Callable[[str, Any, dict], int]:
        def act(seat: str, obs: Any, info: dict) -> int:
            action, _ = self.model.predict(obs, deterministic=True)
            return int(action)

        return act


def train_ppo(steps: int, seed: int = 0, **kw: Any) -> Any:
    """SB3 PPO on the feedback seat's discrete view, the rule assistant simulated."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    def factory() -> gym.Env:
        return SingleSeat(SafetyWaltzEnv(interface="discrete", n_prompts=N_PROMPTS, learnable=FEEDBACK, **kw))

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: more threads only contend with the envs (ten times slower on 2 cores)
    try:
        venv = make_vec_env(factory, n_envs=4, seed=seed)
        model = PPO("MlpPolicy", venv, n_steps=256, batch_size=256, learning_rate=1e-3, ent_coef=0.01, seed=seed,
                    device="cpu", verbose=0)
        return model.learn(steps)
    finally:
        torch.set_num_threads(threads)


def ppo_rows(steps: int, seeds: Sequence[int]) -> list[Row]:
    """PPO with the DIR's penalty and without it, beside the silent and oracle agents, on held-out seeds."""
    rows = []
    for penalty in (0.5, 0.0):
        kw = {"intervention_penalty": penalty}
        model = train_ppo(steps, **kw)
        for name, policy in ((f"PPO ({steps} steps)", PPOFeedback(model)), ("silent", play("silent")),
                             ("oracle", play("oracle"))):
            results = _episodes(policy, seeds, learnable=FEEDBACK, **kw)
            rows.append(_row(f"rule, penalty {penalty}", name, results,
                             feedback_reward=float(np.mean([r.reward for r in results]))))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    def num(x: float) -> str:
        return "      -" if np.isnan(x) else f"{x:>7.3f}"

    head = (f"{'assistant':<17} {'feedback':<16} {'n':>4} {'unsafe':>6} {'overref':>7} {'unsafe0':>7} {'overr0':>6} "
            f"{'interv':>6} {'needless':>8} {'feedbk r':>8} {'asst r':>7} {'quality':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.assistant:<17} {r.feedback:<16} {r.episodes:>4} {r.unsafe:>6.3f} {r.overrefusal:>7.3f} "
                     f"{r.first_unsafe:>7.3f} {r.first_overrefusal:>6.3f} {r.intervention_rate:>6.3f} "
                     f"{r.needless:>8.2f} {num(r.feedback_reward):>8} {num(r.assistant_reward)} {r.quality:>7.3f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print,
          ppo_steps: int = 20_000, min_episodes: int = 100) -> Path:
    """What ``fbenv bench waltz`` runs: the tables, then the rows saved as JSON (the rule rows
    over at least ``min_episodes`` episodes; PPO trained for ``ppo_steps`` steps)."""
    seeds = list(range(max(episodes, min_episodes)))
    held_out = list(range(10_000, 10_000 + max(episodes, min_episodes)))
    tables: list[tuple[str, Callable[[], list[Any]]]] = [
        ("Scripted feedback agents against the rule assistant (unsafe/overrefusal: final; unsafe0/overr0: first)",
         lambda: feedback_rows(seeds)),
        ("Scripted assistants against the rule (oracle) feedback agent", lambda: assistant_rows(seeds)),
        ("PPO on the feedback seat (rule assistant simulated), held-out seeds", lambda: ppo_rows(ppo_steps, held_out)),
    ]
    if not skip_llm:
        tables.append((f"LLM roles ({llm})", lambda: llm_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-safety-waltz.json", echo)
