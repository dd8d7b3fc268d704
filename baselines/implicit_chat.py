"""Love reactions against helpfulness, on ImplicitChat: scripted choices and a love-trained bandit.

RLUF's warning is that a policy optimized for users' "love" reactions learns what users
react to, not what helps them: the reaction rate rises while helpfulness stalls (and
adversarial users pull toward unsafe or useless answers). Rows:

- **love-greedy** reads the hidden user and sends the candidate it is likeliest to love:
  what a love-trained policy converges to with a perfect user model;
- **helpfulness-greedy** sends the most helpful safe candidate (the hidden true utility);
- **random**: a uniform candidate, the untrained policy;
- **linucb-love** / **linucb-follow-up**: LinUCB over each candidate's features (one linear model
  per slot; the slots are shuffled, so every slot's model learns from every step) trained online on the love reward (sparse: observed with probability
  ``observe_prob``) or on the follow-up likelihood, then frozen and judged on held-out
  sessions. The learning curve rows (``curve``) give love rate and helpfulness per block of
  training sessions.

Columns: love rate (observed or not), observed love rate, follow-up satisfied likelihood,
helpfulness, safety, true utility (helpfulness gated by safety), abandonment and the share
of personas whose love-maximizing candidate is not the most helpful. The LLM rows put the
scripted choices in front of the LLM-simulated user (episodes run concurrently, so its calls
reach the backend as batches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.agents.bandits import LinUCB
from fbenv.agents.base import Transition
from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.envs.implicit_chat import N_CAND_FEATURES, POLICIES, play
from fbenv.episodes import EpisodeResult, run_episode
from fbenv.llm.base import Backend

ENV_ID = "fbenv/ImplicitChat-v0"
TRAIN_EPISODES = 400
HELD_OUT = 10_000  # evaluation seeds start here
BLOCKS = 8


@dataclass(frozen=True)
class Row:
    simulator: str
    policy: str
    episodes: int
    love_rate: float
    observed_love_rate: float
    follow_up_likelihood: float
    helpfulness: float
    safety: float
    true_utility: float
    abandoned: float
    love_mismatch_share: float
    llm_fallbacks: float = 0.0


def _row(simulator: str, policy: str, results: Sequence[EpisodeResult]) -> Row:
    def m(key: str) -> float:
        return float(np.mean([float(r.outcomes[key]) for r in results]))

    return Row(simulator, policy, len(results), m("love_rate"), m("observed_love_rate"), m("follow_up_likelihood"),
               m("helpfulness"), m("safety"), m("mean_true_utility"), m("abandoned"), m("love_mismatch_share"),
               float(np.mean([r.fallbacks for r in results])))


def arm_features(obs: np.ndarray, n_candidates: int) -> np.ndarray:
    """One row per candidate: its features (the bank's eight and the harmful tip) and a constant."""
    rows = np.asarray(obs[: n_candidates * N_CAND_FEATURES]).reshape(n_candidates, N_CAND_FEATURES)
    return np.hstack([rows, np.ones((n_candidates, 1))])


@dataclass(frozen=True)
class Curve:
    """Per block of training sessions: the love rate (observed or not) and helpfulness per turn."""

    block: int
    sessions: int
    love_rate: float
    helpfulness: float
    safety: float


def train_linucb(train: int = TRAIN_EPISODES, alpha: float = 0.5, seed: int = 0, blocks: int = BLOCKS,
                 **env_kwargs: Any) -> tuple[LinUCB, list[Curve], gym.Env]:
    """LinUCB trained online on ``train`` sessions (seeds ``seed``, ``seed + 1``...) on the env's
    reward; returns the agent, its learning curve and the env (for evaluation)."""
    env = gym.make(ENV_ID, interface="discrete", **env_kwargs)
    k = env.unwrapped.n_candidates
    agent = LinUCB(k, N_CAND_FEATURES + 1, alpha=alpha)
    agent.reset(seed)
    per: list[tuple[float, float, float]] = []  # per session: love, helpfulness, safety per turn
    for s in range(seed, seed + train):
        obs, info = env.reset(seed=s)
        done, got = False, []
        while not done:
            x = arm_features(obs, k)
            action = agent.act(x, info)
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            # the slots are exchangeable (shuffled candidates): every slot's model learns from the step
            seen = np.broadcast_to(x[action], x.shape)
            for slot in range(k):
                agent.update(Transition(seen, slot, reward, arm_features(obs, k), terminated, truncated, info))
            got.append((float(info["love"]), info["helpfulness"], info["safety"]))
        per.append(tuple(np.mean(got, axis=0)))
    size = max(1, train // blocks)
    curve = [Curve(b, len(part), *(float(x) for x in np.mean(part, axis=0)))
             for b in range(blocks) if (part := per[b * size:(b + 1) * size])]
    return agent, curve, env


def linucb_results(seeds: Sequence[int], train: int = TRAIN_EPISODES, blocks: int = BLOCKS, **env_kwargs: Any
                   ) -> tuple[list[EpisodeResult], list[Curve]]:
    """The trained LinUCB, frozen (acting greedily on what it learned), on held-out ``seeds``."""
    agent, curve, env = train_linucb(train, blocks=blocks, **env_kwargs)
    k = env.unwrapped.n_candidates
    agent.alpha = 0.0  # exploit: no optimism bonus at evaluation

    def act(obs, info):
        return agent.act(arm_features(obs, k), info)

    out = [run_episode(env, act, s) for s in seeds]
    env.close()
    return out, curve


def rule_rows(seeds: Sequence[int], train: int = TRAIN_EPISODES) -> tuple[list[Row], list[Curve]]:
    env = gym.make(ENV_ID, interface="discrete")
    rows = [_row("rule", name, [run_episode(env, play(name)(env), s) for s in seeds]) for name in POLICIES]
    env.close()
    love, curve = linucb_results(seeds, train)
    rows.append(_row("rule", "linucb-love", love))
    follow, _ = linucb_results(seeds, train, reward="follow_up")
    rows.append(_row("rule", "linucb-follow-up", follow))
    return rows, curve


def llm_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    return [_row("llm", name, play_lockstep(ENV_ID, play(name), seeds, simulator="llm", llm=llm, llm_cache=llm_cache))
            for name in POLICIES]


def format_table(rows: Sequence[Any]) -> str:
    if rows and isinstance(rows[0], Curve):
        head = f"{'block':>5} {'sessions':>8} {'love':>6} {'helpful':>7} {'safety':>6}"
        return "\n".join([head, "-" * len(head)] + [
            f"{c.block:>5} {c.sessions:>8} {c.love_rate:>6.3f} {c.helpfulness:>7.3f} {c.safety:>6.3f}" for c in rows])
    head = (f"{'simulator':<9} {'policy':<19} {'n':>4} {'love':>6} {'obs':>6} {'follow':>6} {'helpful':>7} "
            f"{'safety':>6} {'utility':>7} {'abandon':>7} {'mismatch':>8} {'fallbk':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.simulator:<9} {r.policy:<19} {r.episodes:>4} {r.love_rate:>6.3f} {r.observed_love_rate:>6.3f} "
                     f"{r.follow_up_likelihood:>6.3f} {r.helpfulness:>7.3f} {r.safety:>6.3f} {r.true_utility:>7.3f} "
                     f"{r.abandoned:>7.2f} {r.love_mismatch_share:>8.2f} {r.llm_fallbacks:>6.2f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench implicit`` runs: the tables, then the rows saved as JSON."""
    seeds = list(range(HELD_OUT, HELD_OUT + max(episodes, 100)))
    cache: dict[str, Any] = {}

    def rule() -> list[Row]:
        cache["rows"], cache["curve"] = rule_rows(seeds)
        return cache["rows"]

    tables: list[tuple[str, Callable[[], list]]] = [
        ("Rule users: love reactions (the feedback) against helpfulness and safety (hidden), per policy", rule),
        (f"LinUCB trained on love reactions: per block of {TRAIN_EPISODES // BLOCKS} training sessions",
         lambda: cache["curve"]),
    ]
    if not skip_llm:
        tables.append((f"LLM users ({llm}): the scripted policies", lambda: llm_rows(llm, seeds[:episodes])))
    return print_and_save(tables, format_table, out or "results/bench-implicit.json", echo)
