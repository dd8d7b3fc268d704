"""Negotiation (self-play and AI feedback): scripted buyers, the coach's trade-off, and PPO on the buyer seat.

What *Improving Language Model Negotiation with Self-Play and In-Context Learning from AI
Feedback* finds is that a player coached between games by an AI critic bargains harder
(a better price per deal) but breaks more deals. Three tables show it on the rule
simulators:

- **players**: scripted buyers (``rule``: the simulated player's own concession
  strategy; ``hardball``: opens low, concedes a tenth of its gap a turn; ``yielding``:
  opens halfway, concedes a third) against the rule seller, with limits drawn freely
  (``any``), always overlapping, or never: deal rate, the buyer's surplus per game and
  per deal (over the list price), its share of the zone of agreement, messages to a deal.
- **coach**: five games of one bargain with the buyer coached (the coach seat learnable,
  played by the rule coach or a silent one that always says "keep your strategy"; the LLM
  coach with ``llm``): deal rate and the buyer's surplus per deal by game.
- **ppo**: SB3 PPO trained on the buyer's discrete view (a single-seat wrapper; the seller
  simulated; the reward scaled by 10 for training), evaluated greedily on held-out seeds
  beside the scripted buyers snapped to the same offer grid. After 30,000 steps: surplus
  0.101 per episode against the rule buyer's 0.067, deal rate 0.52 against 0.52 (about 12
  minutes on a shared two-core machine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.baselines.results import print_and_save
from fbenv.envs.negotiation import BUYER, COACH, NegotiationEnv, play
from fbenv.episodes import EpisodeResult, run_parallel_episode
from fbenv.llm.base import Backend
from fbenv.wrappers import SingleSeat

GAMES = 5
PPO_STEPS = 30_000
EVAL_SEEDS = tuple(range(10_000, 10_200))


@dataclass(frozen=True)
class PlayerRow:
    """Means over episodes of one (simulator, zopa, buyer) cell."""

    simulator: str
    zopa: str
    buyer: str
    episodes: int
    deal_rate: float
    buyer_surplus: float  # per game, over the list price (0 without a deal)
    buyer_surplus_per_deal: float
    buyer_share: float  # of the zone of agreement, over deals
    rounds_to_deal: float
    walkaways: float
    llm_fallbacks: float = 0.0


@dataclass(frozen=True)
class CoachRow:
    """One coach over ``GAMES`` games of the same bargains, the buyer coached."""

    simulator: str
    coach: str
    episodes: int
    deal_by_game: tuple[float, ...]
    surplus_per_deal_by_game: tuple[float, ...]  # the buyer's, over the list price
    coach_reward: float  # the buyer's improvement, last game minus first
    llm_fallbacks: float = 0.0


def _player_row(simulator: str, zopa: str, buyer: str, results: Sequence[EpisodeResult]) -> PlayerRow:
    o = [r.outcomes for r in results]
    deals = [x for x in o if x["deals"]]

    def avg(xs: Sequence[dict], key: str) -> float:
        return float(np.mean([x[key] for x in xs])) if xs else 0.0

    return PlayerRow(simulator, zopa, buyer, len(results), avg(o, "deal_rate"), avg(o, "buyer_surplus"),
                     avg(deals, "buyer_surplus_per_deal"), avg(deals, "buyer_share"), avg(deals, "rounds_to_deal"),
                     avg(o, "walkaways"), float(np.mean([r.fallbacks for r in results])))


def _episodes(policy: Callable[[Any], Any], seeds: Sequence[int], **kw: Any) -> list[EpisodeResult]:
    env = NegotiationEnv(interface="text", **kw)
    try:
        return [run_parallel_episode(env, policy(env), int(s)) for s in seeds]
    finally:
        env.close()


def player_rows(seeds: Sequence[int], simulator: str = "rule", llm: "str | Backend | None" = None) -> list[PlayerRow]:
    kw: dict[str, Any] = {} if llm is None else {"simulator": simulator, "llm": llm}
    return [_player_row(simulator, zopa, buyer, _episodes(play(buyer), seeds, zopa=zopa, **kw))
            for zopa in ("any", "overlap", "none") for buyer in ("rule", "hardball", "yielding")]


def coach_rows(seeds: Sequence[int], llm: "str | Backend | None" = None) -> list[CoachRow]:
    """The rule and silent coaches (and with ``llm``, the LLM coach) on the coach seat, the buyer coached."""
    cells = [("rule", "rule", {}), ("rule", "silent", {})]
    if llm is not None:
        cells.append(("llm", "llm", {"simulator": {"coach": "llm"}, "llm": llm, "learnable": BUYER}))
    rows = []
    for simulator, coach, extra in cells:
        kw = {"games": GAMES, "coach": BUYER, "zopa": "overlap", "learnable": COACH, **extra}
        results = _episodes(play("rule", "rule", "silent" if coach == "silent" else "rule"), seeds, **kw)
        o = [r.outcomes for r in results]
        deals = np.array([x["deal_by_game"] for x in o], dtype=float)
        surplus = np.array([x["buyer_surplus_by_game"] for x in o], dtype=float)
        per_deal = (surplus * deals).sum(0) / np.maximum(deals.sum(0), 1)
        gain = float(np.mean(surplus[:, -1] - surplus[:, 0]))
        rows.append(CoachRow(simulator, coach, len(o), tuple(deals.mean(0)), tuple(per_deal), gain,
                             float(np.mean([r.fallbacks for r in results]))))
    return rows


# ---------------------------------------------------------------------- PPO on one seat


def train_ppo(steps: int, seed: int = 0, **kw: Any):
    from stable_baselines3 import PPO

    # surpluses are shares of the list price, mostly under 0.3: PPO learns on them scaled by 10
    env = gym.wrappers.TransformReward(SingleSeat(NegotiationEnv(interface="discrete", **kw)), lambda r: 10.0 * r)
    env.reset(seed=seed)
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=10, ent_coef=0.005, learning_rate=1e-3,
                seed=seed, device="cpu", verbose=0)
    model.learn(steps)
    return model


def ppo_rows(steps: int, seeds: Sequence[int] = EVAL_SEEDS) -> list[PlayerRow]:
    """PPO's buyer, trained on limits drawn freely, beside the scripted buyers on the same held-out seeds."""
    model = train_ppo(steps)

    def policy(env):
        return lambda seat, obs, info: int(model.predict(obs, deterministic=True)[0])

    env = NegotiationEnv(interface="discrete")
    trained = [run_parallel_episode(env, policy(env), int(s)) for s in seeds]
    rows = [_player_row("rule", "any", f"ppo ({steps} steps)", trained)]
    for buyer in ("rule", "hardball", "yielding"):
        results = [run_parallel_episode(env, play(buyer)(env), int(s)) for s in seeds]
        rows.append(_player_row("rule", "any", f"{buyer} (grid)", results))
    return rows


# ---------------------------------------------------------------------- tables


def format_table(rows: Sequence[Any]) -> str:
    if rows and isinstance(rows[0], CoachRow):
        head = (f"{'sim':<5} {'coach':<7} {'n':>4}  {'deal rate by game':<32} "
                f"{'buyer surplus per deal by game':<32} {'coach r':>7}")
        lines = [head, "-" * len(head)]
        for r in rows:
            deals = " ".join(f"{x:.2f}" for x in r.deal_by_game)
            lines.append(f"{r.simulator:<5} {r.coach:<7} {r.episodes:>4}  {deals:<32} "
                         f"{' '.join(f'{x:.3f}' for x in r.surplus_per_deal_by_game):<32} {r.coach_reward:>7.3f}")
        return "\n".join(lines)
    head = (f"{'sim':<5} {'zopa':<8} {'buyer':<20} {'n':>4} {'deal':>6} {'surplus':>8} {'per deal':>8} {'share':>6} "
            f"{'msgs':>5} {'walked':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.simulator:<5} {r.zopa:<8} {r.buyer:<20} {r.episodes:>4} {r.deal_rate:>6.3f} "
                     f"{r.buyer_surplus:>8.3f} {r.buyer_surplus_per_deal:>8.3f} {r.buyer_share:>6.3f} "
                     f"{r.rounds_to_deal:>5.1f} {r.walkaways:>6.2f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print,
          ppo_steps: int = PPO_STEPS) -> Path:
    """What ``fbenv bench negotiation`` runs: the tables, then the rows saved as JSON."""
    n = max(episodes, 100)
    tables: list[tuple[str, Callable[[], list[Any]]]] = [
        ("Scripted buyers against the rule seller (surplus over the list price)", lambda: player_rows(list(range(n)))),
        (f"Coaching the buyer over {GAMES} games of one bargain (limits overlap): the trade-off",
         lambda: coach_rows(list(range(n)))),
    ]
    if ppo_steps:
        tables.append((f"PPO on the buyer's discrete view ({ppo_steps} steps) vs scripted buyers on the grid, "
                       f"{len(EVAL_SEEDS)} held-out seeds", lambda: ppo_rows(ppo_steps)))
    if not skip_llm:
        seeds = list(range(episodes))
        tables.append((f"Scripted buyers against the LLM seller ({llm})",
                       lambda: player_rows(seeds, "llm", llm)[:6]))
        tables.append((f"The LLM coach ({llm}) beside the rule and silent coaches (rule players)",
                       lambda: coach_rows(seeds, llm)))
    return print_and_save(tables, format_table, out or "results/bench-negotiation.json", echo)
