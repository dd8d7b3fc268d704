"""Feedback Friction on Refine: solve rate by round and friction, per feedback level.

What *Feedback Friction* is about is that stronger feedback (from a right/wrong verdict
to the location of the error to the answer itself) fixes more wrong answers, yet some stay
wrong even when the solver is told the answer. *Helpful Agent Meets Deceptive Judge*
adds that a solver that follows a deceptive judge's feedback gives up right answers.
Without any learning, scripted solvers show both:

- **follower**: starts with a typical wrong answer and applies the feedback (the bank's
  rule solver); **friction**: the same, stuck on half the problems; **ignorer**: keeps its
  first answer; **random**: a uniform candidate each round;
- under the deceptive judge, **right-follower** (starts right, follows) and
  **right-keeper** (starts right, keeps it).

The LLM rows (without ``skip_llm``): the zero-shot prompting agent
(:class:`fbenv.agents.prompting.ZeroShotAgent`) answering on the text view with ``llm``,
the rule critic judging; and the scripted follower under the LLM critic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fbenv.baselines.results import play_lockstep, print_and_save
from fbenv.envs.problems import LEVELS
from fbenv.envs.refine import POLICIES, play
from fbenv.episodes import EpisodeResult, EpisodeTally, outcomes_of, run_episode
from fbenv.llm.base import Backend

ENV_ID = "fbenv/Refine-v0"
MAX_ROUNDS = 5
HONEST_POLICIES = ("follower", "friction", "ignorer", "random")
DECEPTIVE_POLICIES = ("follower", "right-follower", "right-keeper", "random")


@dataclass(frozen=True)
class Row:
    """Means over episodes of one (simulator, judge, level, policy) cell."""

    simulator: str
    judge: str
    level: str
    policy: str
    episodes: int
    solve_by_round: tuple[float, ...]  # share right after round k (an accepted answer stands)
    solve_rate: float  # the true utility
    reward: float  # the critic's acceptances
    friction: float
    fixed_at_round: float  # mean over episodes that were fixed
    flipped: float  # share of episodes with a right answer replaced by a wrong one
    llm_fallbacks: float = 0.0


def _row(simulator: str, judge: str, level: str, policy: str, results: Sequence[EpisodeResult]) -> Row:
    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values)) if len(values) else 0.0

    o = [r.outcomes for r in results]
    rounds = max((len(x["correct_by_round"]) for x in o), default=0)
    rounds = max(rounds, MAX_ROUNDS) if rounds else 0  # an accepted answer stands for the rounds not played
    by_round = tuple(mean([float(x["correct_by_round"][min(k, len(x["correct_by_round"]) - 1)]) for x in o])
                     for k in range(rounds))
    fixed = [x["fixed_at_round"] for x in o if x["fixed_at_round"]]
    return Row(simulator, judge, level, policy, len(results), by_round,
               solve_rate=mean([float(x["solved"]) for x in o]), reward=mean([r.reward for r in results]),
               friction=mean([x["friction"] for x in o]), fixed_at_round=mean(fixed),
               flipped=mean([float(x["flipped_correct_to_wrong"] > 0) for x in o]),
               llm_fallbacks=mean([r.fallbacks for r in results]))


def rule_rows(seeds: Sequence[int], levels: Sequence[str] = LEVELS) -> list[Row]:
    """Every scripted solver at every level, the honest and the deceptive rule critic judging."""
    rows = []
    for judge, names in (("honest", HONEST_POLICIES), ("deceptive", DECEPTIVE_POLICIES)):
        for level in levels:
            env = gym.make(ENV_ID, interface="discrete", feedback=level, judge=judge, max_rounds=MAX_ROUNDS)
            for name in names:
                act = play(POLICIES[name])(env)
                rows.append(_row("rule", judge, level, name, [run_episode(env, act, s) for s in seeds]))
            env.close()
    return rows


def agent_rows(llm: "str | Backend", seeds: Sequence[int], levels: Sequence[str] = LEVELS,
               llm_cache: str | None = None) -> list[Row]:
    """The zero-shot prompting agent on the text view, one batched call per round, the rule critic judging."""
    from fbenv.agents.prompting import ZeroShotAgent

    rows = []
    for level in levels:
        agent = ZeroShotAgent(llm, llm_cache=llm_cache, max_tokens=160,
                              system_prompt="Solve the problem. Follow the critic's feedback.")
        agent.reset(seed=0)
        envs = [gym.make(ENV_ID, feedback=level, max_rounds=MAX_ROUNDS) for _ in seeds]
        tallies = [EpisodeTally(s, outcomes_of(e)) for e, s in zip(envs, seeds)]
        state = [e.reset(seed=s) for e, s in zip(envs, seeds)]
        live = [True] * len(envs)
        while any(live):
            replies = agent.act_batch([o for o, _ in state], [i for _, i in state], mask=live)
            for k, env in enumerate(envs):
                if not live[k]:
                    continue
                obs, reward, term, trunc, info = env.step(replies[k])
                tallies[k].add(reward, term, trunc, info)
                state[k] = (obs, info)
                live[k] = not (term or trunc)
        for env in envs:
            env.close()
        rows.append(_row("rule", "honest", level, "zero-shot", [t.result() for t in tallies]))
    return rows


def llm_critic_rows(llm: "str | Backend", seeds: Sequence[int], llm_cache: str | None = None) -> list[Row]:
    """The scripted follower under the LLM critic, per level."""
    return [_row("llm", "honest", level, "follower",
                 play_lockstep(ENV_ID, play(POLICIES["follower"]), seeds, simulator="llm", llm=llm, llm_cache=llm_cache,
                               feedback=level, max_rounds=MAX_ROUNDS))
            for level in LEVELS]


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'simulator':<9} {'judge':<9} {'level':<9} {'policy':<14} {'n':>3} {'solve rate by round':<30} "
            f"{'solved':>6} {'reward':>6} {'friction':>8} {'fixed@':>6} {'flipped':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rounds = " ".join(f"{x:.2f}" for x in r.solve_by_round) or "-"
        lines.append(f"{r.simulator:<9} {r.judge:<9} {r.level:<9} {r.policy:<14} {r.episodes:>3} {rounds:<30} "
                     f"{r.solve_rate:>6.3f} {r.reward:>6.3f} {r.friction:>8.3f} {r.fixed_at_round:>6.2f} {r.flipped:>7.3f}")
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None, echo: Callable[[str], None] = print) -> Path:
    """What ``fbenv bench refine`` runs: the tables, then the rows saved as JSON."""
    tables: list[tuple[str, Callable[[], list[Any]]]] = [
        ("Rule critic: solve rate by round and friction per feedback level (honest, then deceptive judge)",
         lambda: rule_rows(list(range(max(episodes, 64)))))]
    if not skip_llm:
        tables.append((f"Zero-shot prompting agent ({llm}) on the text view, rule critic",
                       lambda: agent_rows(llm, list(range(episodes)))))
        tables.append((f"LLM critic ({llm}): the scripted follower", lambda: llm_critic_rows(llm, list(range(episodes)))))
    return print_and_save(tables, format_table, out or "results/bench-refine.json", echo)
