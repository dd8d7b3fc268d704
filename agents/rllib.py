"""RLlib on the multi-agent tasks: PPO on the discrete view, one policy per seat type.

A multi-agent task is a PettingZoo ``ParallelEnv``; RLlib takes it through its
``ParallelPettingZooEnv`` wrapper. This module registers a task under an RLlib env name
(:func:`register`), maps every seat to the policy of its type, the seat name without its
index (``buyer_0`` -> ``buyer``, ``agent_0`` ... ``agent_3`` share ``agent``), and trains
PPO (new API stack, torch) for a few iterations (:func:`train`). :func:`rollout` plays the
trained modules on fresh seeds and reports each seat's feedback return beside its true
utility, read from the env's own ``info``.

Turn-based tasks (Negotiation, SafetyWaltz) ask every learnable seat for an action each
step and ignore the seats not on turn. By default (``turns=True``) only the seats to act
get an observation, RLlib's own convention for turn-based games: a seat's policy then
learns from its moves only, and the rewards it gets off turn are added to its next move.

Needs Ray's RLlib requirements without the ``ray[rllib]`` extra, which pins an older
Gymnasium: ``pip install 'fbenv[rllib]'``. Example::

    from fbenv.agents.rllib import rollout, train

    run = train("fbenv/SafetyWaltz-v0", iterations=5)
    print(run.returns)                       # per iteration: {seat: mean episode return}
    print(rollout(run.modules, "fbenv/SafetyWaltz-v0", episodes=20, seed=10_000))
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

import fbenv
from fbenv import truth as keys
from fbenv.episodes import EpisodeResult
from fbenv.errors import InvalidArgumentError, MissingExtraError, check_int, check_type

if TYPE_CHECKING:
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

__all__ = ["IterationStats", "SeatResult", "TrainRun", "env_name", "make_env", "policy_mapping_fn", "ppo_config",
           "register", "rollout", "seat_type", "train"]

#: what RLlib needs besides core Ray; the ``ray[rllib]`` extra would also pin gymnasium
EXTRA = "rllib"


def _rllib():
    try:
        from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
    except ImportError as exc:
        raise MissingExtraError("ray[rllib]", EXTRA, "Training with RLlib") from exc
    return ParallelPettingZooEnv


def seat_type(seat: str) -> str:
    """A seat's type, its name without the index: ``buyer_0`` -> ``buyer``."""
    head, _, index = seat.rpartition("_")
    return head if head and index.isdigit() else seat


def policy_mapping_fn(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """RLlib's ``policy_mapping_fn``: every seat plays the policy of its type."""
    return seat_type(agent_id)


def env_name(env_id: str, turns: bool = True) -> str:
    """The RLlib env name :func:`register` gives ``env_id``."""
    name = fbenv.spec(env_id).id.rpartition("/")[2]
    return f"fbenv-{name}" if turns else f"fbenv-{name}-all-seats"


def make_env(env_id: str, turns: bool = True, **env_kwargs: Any):
    """``env_id``'s discrete view as an RLlib ``MultiAgentEnv`` (through ``ParallelPettingZooEnv``)."""
    check_type("turns", turns, bool)
    if not fbenv.spec(env_id).multi_agent:
        raise InvalidArgumentError(f"{env_id}: expects a multi-agent task; train single-agent ones with Gymnasium tools")
    if env_kwargs.get("interface", "discrete") != "discrete":
        raise InvalidArgumentError(f"interface: RLlib trains the discrete view, actual {env_kwargs['interface']!r}")
    wrapper = _wrapper_class() if turns else _rllib()
    return wrapper(fbenv.make(env_id, **{**env_kwargs, "interface": "discrete"}))


def register(env_id: str, turns: bool = True) -> str:
    """Register ``env_id`` with RLlib (``env_config`` = the task's kwargs); returns its name."""
    from ray.tune.registry import register_env

    name = env_name(env_id, turns)
    register_env(name, lambda config: make_env(env_id, turns=turns, **dict(config)))
    return name


_TURNS = None


def _wrapper_class():
    """``ParallelPettingZooEnv`` that shows a turn-based task's board only to the seats to act."""
    global _TURNS
    if _TURNS is not None:
        return _TURNS
    base_cls = _rllib()

    class TurnParallelPettingZooEnv(base_cls):
        def _on_turn(self, obs: dict, infos: dict, done: bool):
            task = self.par_env
            if done or not getattr(task, "turn_based", False):
                return obs, infos
            on = set(task.to_act()) & set(obs)
            # the base guarantees a learnable seat is to act while the game runs; keep all otherwise
            if not on:
                return obs, infos
            return {a: o for a, o in obs.items() if a in on}, {a: i for a, i in infos.items() if a in on}

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            obs, infos = super().reset(seed=seed, options=options)
            return self._on_turn(obs, infos, done=False)

        def step(self, action_dict):
            # the task wants every live seat's action; an off-turn seat's is ignored, so any will do
            actions = {a: action_dict.get(a, 0) for a in self.par_env.agents}
            obs, rewards, terms, truncs, infos = super().step(actions)
            done = terms["__all__"] or truncs["__all__"] or not self.par_env.agents
            obs, infos = self._on_turn(obs, infos, done)
            return obs, rewards, terms, truncs, infos

    _TURNS = TurnParallelPettingZooEnv
    return _TURNS


def _seat_types(env_id: str, env_kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    env = fbenv.make(env_id, **{**env_kwargs, "interface": "discrete"})
    try:
        return tuple(sorted({seat_type(a) for a in env.possible_agents}))
    finally:
        env.close()


def ppo_config(env_id: str, *, seed: int = 0, turns: bool = True, train_batch: int = 256, minibatch: int = 64,
               epochs: int = 4, lr: float = 1e-3, hidden: Sequence[int] = (64,), num_env_runners: int = 0,
               **env_kwargs: Any) -> "PPOConfig":
    """A small PPO config (new API stack, torch, CPU) with one policy per seat type."""
    _rllib()
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    check_int("train_batch", train_batch, minimum=1)
    check_int("minibatch", minibatch, minimum=1)
    check_int("num_env_runners", num_env_runners, minimum=0)
    types = _seat_types(env_id, env_kwargs)
    model = {"fcnet_hiddens": [int(h) for h in hidden], "fcnet_activation": "tanh"}
    return (
        PPOConfig()
        .environment(register(env_id, turns), env_config=dict(env_kwargs))
        .framework("torch")
        .env_runners(num_env_runners=num_env_runners, rollout_fragment_length="auto")
        .training(train_batch_size_per_learner=train_batch, minibatch_size=min(minibatch, train_batch),
                  num_epochs=epochs, lr=lr)
        .multi_agent(policies=set(types), policy_mapping_fn=policy_mapping_fn)
        .rl_module(rl_module_spec=MultiRLModuleSpec(
            rl_module_specs={t: RLModuleSpec(model_config=dict(model)) for t in types}))
        .debugging(seed=seed)
    )


@dataclass(frozen=True)
class IterationStats:
    """One training iteration."""

    iteration: int
    returns: Mapping[str, float]  # seat -> mean episode return (feedback reward) of the episodes sampled
    env_steps: int  # env steps sampled this iteration
    episodes: int
    losses: Mapping[str, float]  # policy (seat type) -> total loss


@dataclass(frozen=True)
class TrainRun:
    """What :func:`train` gives back: the iterations and the trained modules (CPU, torch; for acting)."""

    env_id: str
    iterations: tuple[IterationStats, ...]
    modules: "MultiRLModule" = field(repr=False)

    @property
    def returns(self) -> list[dict[str, float]]:
        """Per iteration, each seat's mean episode return."""
        return [dict(it.returns) for it in self.iterations]


def _number(value: Any) -> float:
    return float(np.asarray(value).mean()) if value is not None else math.nan


def _stats(i: int, result: Mapping[str, Any]) -> IterationStats:
    runners = result.get("env_runners", {})
    learners = result.get("learners", {})
    return IterationStats(
        iteration=i,
        returns={str(a): _number(v) for a, v in sorted(runners.get("agent_episode_returns_mean", {}).items())},
        env_steps=int(runners.get("num_env_steps_sampled", 0)),
        episodes=int(runners.get("num_episodes", 0)),
        losses={str(m): _number(d["total_loss"]) for m, d in sorted(learners.items())
                if isinstance(d, Mapping) and "total_loss" in d},
    )


def train(env_id: str, iterations: int = 3, *, seed: int = 0, turns: bool = True, config: "PPOConfig | None" = None,
          **env_kwargs: Any) -> TrainRun:
    """Train PPO on ``env_id``'s discrete view for ``iterations`` iterations, one policy per
    seat type; ``env_kwargs`` go to the task (``learnable=`` picks the seats trained). Starts a
    local Ray instance if none runs (and stops it after). ``config`` (from :func:`ppo_config`)
    replaces the defaults; it carries the task's kwargs, ``seed`` and ``turns`` itself."""
    check_int("iterations", iterations, minimum=1)
    if config is not None and env_kwargs:
        raise InvalidArgumentError(f"train: the task's kwargs go into ppo_config(...) when a config is given, "
                                   f"actual {sorted(env_kwargs)}")
    import ray

    cfg = config if config is not None else ppo_config(env_id, seed=seed, turns=turns, **env_kwargs)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=cfg.num_env_runners + 1, include_dashboard=False, log_to_driver=False)
    with warnings.catch_warnings():
        # RLlib registers its own multi-agent wrapper with Gymnasium again for every algorithm it builds
        warnings.filterwarnings("ignore", message=".*rllib-multi-agent-env-v0 already in registry")
        algo = cfg.build_algo()
    try:
        stats = tuple(_stats(i, algo.train()) for i in range(iterations))
        # the local env runner's modules with the learner's last policy weights: RLlib syncs only the
        # runners that sample, not the local one when remote runners exist (the critic may lag: acting only)
        algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)
        modules = algo.env_runner.module
    finally:
        algo.stop()
        if started:
            ray.shutdown()
    return TrainRun(env_id=env_id, iterations=stats, modules=modules)


@dataclass(frozen=True)
class SeatResult:
    """A seat's mean over evaluation episodes, from the env's info (``info["episode_result"]``)."""

    reward: float  # feedback return
    true_utility: float  # the hidden objective, summed over the episode
    success_rate: float
    episodes: int
    outcomes: Mapping[str, float] = field(default_factory=dict)  # numeric outcomes, averaged


def rollout(modules: "MultiRLModule", env_id: str, episodes: int = 10, *, seed: int = 0, greedy: bool = True,
            max_steps: int = 1000, **env_kwargs: Any) -> dict[str, SeatResult]:
    """Play ``episodes`` episodes (seeds ``seed``, ``seed + 1``...) of the discrete view, every
    learnable seat acting by its type's module (greedy or sampled), and average each seat's
    end-of-episode result. Off-turn seats of a turn-based task act too; their actions are ignored."""
    import torch

    check_int("episodes", episodes, minimum=1)
    check_int("max_steps", max_steps, minimum=1)
    env = fbenv.make(env_id, **{**env_kwargs, "interface": "discrete"})
    rng = np.random.default_rng(seed)
    per_seat: dict[str, list[EpisodeResult]] = {a: [] for a in env.possible_agents}
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=seed + k)
            for _ in range(max_steps):
                if not env.agents:
                    break
                actions = {}
                with torch.no_grad():
                    for a in env.agents:
                        batch = {"obs": torch.as_tensor(np.asarray(obs[a], dtype=np.float32))[None]}
                        logits = modules[seat_type(a)].forward_inference(batch)["action_dist_inputs"][0].numpy()
                        if greedy:
                            actions[a] = int(np.argmax(logits))
                        else:
                            p = np.exp(logits - logits.max())
                            actions[a] = int(rng.choice(len(p), p=p / p.sum()))
                obs, _r, _te, _tr, infos = env.step(actions)
                for a, info in infos.items():
                    if keys.EPISODE in info:
                        per_seat[a].append(EpisodeResult.from_info(info[keys.EPISODE]))
    finally:
        env.close()
    return {a: _mean(rs) for a, rs in per_seat.items() if rs}


def _mean(results: Sequence[EpisodeResult]) -> SeatResult:
    outcomes: dict[str, list[float]] = {}
    for r in results:
        for k, v in r.outcomes.items():
            if isinstance(v, (bool, int, float)) and not isinstance(v, complex):
                outcomes.setdefault(k, []).append(float(v))
    return SeatResult(
        reward=float(np.mean([r.reward for r in results])),
        true_utility=float(np.mean([r.true_utility for r in results])),
        success_rate=float(np.mean([r.is_success for r in results])),
        episodes=len(results),
        outcomes={k: float(np.mean(v)) for k, v in outcomes.items()},
    )
