"""Clicks against satisfaction, on Recommend: scripted and learning recommenders.

The feedback a recommender logs is engagement (clicks, carts, purchases); what the user
gets is satisfaction. Clickbait (sensational, popular, poor) is clicked and regretted, and
the top slot is clicked whatever it holds (missing not at random). Rows:

- **random**: a uniform candidate on top;
- **linucb**: disjoint LinUCB on the engagement reward, one row of features per candidate,
  learning online over the training episodes, then judged on held-out ones;
- **click-greedy** / **satisfaction-greedy**: read the hidden user and put on top the
  candidate it is likeliest to click / most satisfied by.

Each row reports the click rate, satisfaction, purchase rate and the exposure figures. The
LLM rows put the scripted policies in front of the LLM-simulated user (episodes run
concurrently, so its calls reach the backend as batches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from fbenv.agents.bandits import LinUCB
from fbenv.agents.base import Transition
from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.envs.recommend import ITEM_FEATURES, POLICIES, SESSION_FEATURES, play, random_policy
from fbenv.episodes import EpisodeResult, run_episode
from fbenv.llm.base import Backend

ENV_ID = "fbenv/Recommend-v0"
TRAIN_EPISODES = 150
HELD_OUT = 10_000  # evaluation seeds start here


@dataclass(frozen=True)
class Row:
    simulator: str
    policy: str
    episodes: int
    click_rate: float
    satisfaction: float  # per step: the mean true utility
    purchase_rate: float
    hit_rate: float
    top_click_share: float
    clickbait_clicks: float
    reward: float  # per episode
    llm_fallbacks: float = 0.0


def _row(simulator: str, policy: str, results: Sequence[EpisodeResult]) -> Row:
    def m(key: str) -> float:
        return float(np.mean([r.outcomes[key] for r in results]))

    return Row(simulator, policy, len(results), m("click_rate"), m("satisfaction"), m("purchase_rate"),
               m("hit_rate"), m("top_click_share"), m("clickbait_clicks"),
               float(np.mean([r.reward for r in results])), float(np.mean([r.fallbacks for r in results])))


def arm_features(obs: np.ndarray, n_candidates: int) -> np.ndarray:
    """One row per candidate: its features, the session's, and a constant."""
    items = np.asarray(obs[: n_candidates * ITEM_FEATURES]).reshape(n_candidates, ITEM_FEATURES)
    session = np.broadcast_to(obs[n_candidates * ITEM_FEATURES:], (n_candidates, SESSION_FEATURES))
    return np.hstack([items, session, np.ones((n_candidates, 1))])


def linucb_results(seeds: Sequence[int], train: int = TRAIN_EPISODES, alpha: float = 0.5) -> list[EpisodeResult]:
    """LinUCB trained online on ``train`` episodes (seeds 0, 1, ...), then frozen and run on ``seeds``."""
    env = gym.make(ENV_ID, interface="discrete")
    k = env.unwrapped.n_candidates
    agent = LinUCB(k, ITEM_FEATURES + SESSION_FEATURES + 1, alpha=alpha)
    agent.reset(0)
    for seed in range(train):
        obs, info = env.reset(seed=seed)
        done = False
        while not done:
            x = arm_features(obs, k)
            action = agent.act(x, info)
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            agent.update(Transition(x, action, reward, arm_features(obs, k), terminated, truncated, info))
    out = [run_episode(env, lambda obs, info: agent.act(arm_features(obs, k), info), seed) for seed in seeds]
    env.close()
    return out


def rule_rows(seeds: Sequence[int]) -> list[Row]:
    env = gym.make(ENV_ID, interface="discrete")
    rows = [_row("rule", "random", [run_episode(env, random_policy(env), s) for s in seeds])]
    rows.append(_row("rule", "linucb", linucb_results(seeds)))
    for name, p in POLICIES.items():
        rows.append(_row("rule", name, [run_episode(env, play(p)(env), s) for s in seeds]))
    env.close()
    return rows


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    rows = []
    factories: dict[str, Callable] = {"random": random_policy, **{n: play(p) for n, p in POLICIES.items()}}
    for name, factory in factories.items():
        results = play_lockstep(ENV_ID, factory, seeds, simulator="llm", llm=llm, llm_cache=llm_cache)
        rows.append(_row("llm", name, results))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'policy':<20} {'n':>4} {'clicks':>7} {'satisf':>7} {'buys':>6} {'hits':>6} "
            f"{'top/clk':>7} {'bait/clk':>8} {'reward':>7} {'fallback':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.simulator:<9} {r.policy:<20} {r.episodes:>4} {r.click_rate:>7.3f} {r.satisfaction:>7.3f} "
                     f"{r.purchase_rate:>6.3f} {r.hit_rate:>6.3f} {r.top_click_share:>7.3f} "
                     f"{r.clickbait_clicks:>8.3f} {r.reward:>7.2f} {r.llm_fallbacks:>8.2f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench recommend`` runs: the tables, then the rows saved as JSON."""
    seeds = list(range(HELD_OUT, HELD_OUT + max(episodes, 100)))
    tables = [("Rule user: click rate (the feedback) against satisfaction (true utility), per recommender",
               lambda: rule_rows(seeds))]
    if not skip_llm:
        tables.append((f"LLM user ({llm}): the scripted recommenders", lambda: llm_rows(llm, seeds[:episodes])))
    return print_and_save(tables, format_table, out or "results/bench-recommend.json", echo)
