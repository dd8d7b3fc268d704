"""Stable-Baselines3 on fbenv's discrete interface: vec envs in, reward *and* true utility out.

SB3 takes Gymnasium envs directly; two things need care, and this module handles them:

* SB3's ``make_vec_env("id")`` passes ``render_mode="rgb_array"``, which fbenv envs reject
  (they render ``None`` or ``"ansi"``). :func:`make_vec_env` hands SB3 a picklable env
  factory instead, so SB3 still adds its ``Monitor``, seeding and ``DummyVecEnv`` /
  ``SubprocVecEnv``.
* The feedback reward is not what the env is secretly about. :class:`EpisodeTrueUtility`
  sums ``info["true_utility"]`` over the episode into ``info["episode_true_utility"]``,
  which the ``Monitor`` records next to the return (``model.ep_info_buffer``), and
  :func:`evaluate` reports both on the same seeded episodes for any policy, including a
  uniform-random baseline. ``EvalCallback`` works as is: fbenv envs put
  ``info["is_success"]`` in every step's info.

Example::

    from stable_baselines3 import PPO
    from fbenv.agents.sb3 import evaluate, make_vec_env

    venv = make_vec_env("fbenv/Advisor-v0", n_envs=8, seed=0, feedback_timing="foresight")
    model = PPO("MlpPolicy", venv, seed=0).learn(20_000)
    print(evaluate(model, "fbenv/Advisor-v0", n_episodes=200, feedback_timing="hindsight"))
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

import fbenv
from fbenv.episodes import EpisodeResult, EpisodeTally
from fbenv.errors import InvalidArgumentError, MissingExtraError, check_type

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

__all__ = ["EnvFactory", "EpisodeTrueUtility", "EvalResult", "evaluate", "make_vec_env"]



def _import_sb3():
    try:
        import stable_baselines3
    except ImportError as exc:
        raise MissingExtraError("stable-baselines3", "sb3", "Training with Stable-Baselines3") from exc
    return stable_baselines3


class EpisodeTrueUtility(gym.Wrapper):
    """Adds ``info["episode_true_utility"]``: the sum of ``info["true_utility"]`` so far this episode.

    ``Monitor(info_keywords=("episode_true_utility",))`` reads it at the episode's last
    step, so the hidden objective lands in SB3's episode records beside the return.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._tally = EpisodeTally()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._tally = EpisodeTally(seed)
        info["episode_true_utility"] = 0.0
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._tally.add(reward, terminated, truncated, info)  # the core's episode arithmetic
        info["episode_true_utility"] = self._tally.true_utility
        return obs, reward, terminated, truncated, info


@dataclass(frozen=True)
class EnvFactory:
    """A zero-argument, picklable maker of one discrete-interface env (for SB3 vec envs).

    A dataclass rather than a closure so ``SubprocVecEnv`` can pickle it.
    """

    env_id: str
    env_kwargs: tuple[tuple[str, Any], ...] = ()

    def __call__(self) -> gym.Env:
        return EpisodeTrueUtility(fbenv.make(self.env_id, interface="discrete", **dict(self.env_kwargs)))


def _check_env_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> None:
    from fbenv.registry import require_interface

    require_interface(env_id, "discrete", "SB3", env_kwargs)


def make_vec_env(
    env_id: str,
    n_envs: int = 1,
    *,
    seed: int | None = None,
    vec_env_cls: type | None = None,
    monitor_dir: str | None = None,
    **env_kwargs: Any,
) -> "VecEnv":
    """SB3's ``make_vec_env`` for an fbenv id: discrete interface, Monitor with true utility.

    Args:
        env_id: a registered single-agent id, e.g. ``"fbenv/Advisor-v0"``.
        n_envs: number of copies.
        seed: sub-env ``i`` is reset with ``seed + i`` at the first reset (SB3's rule).
        vec_env_cls: ``DummyVecEnv`` (default) or ``SubprocVecEnv``. With an LLM simulator keep
            ``DummyVecEnv``: one process shares one model.
        monitor_dir: where SB3's Monitor writes CSV logs (default: none written).
        **env_kwargs: env options (``feedback_timing``, ``simulator``...); ``interface`` is fixed.
    """
    check_type("env_id", env_id, str)
    check_type("n_envs", n_envs, int)
    if n_envs < 1:
        raise InvalidArgumentError(f"n_envs: expects >= 1, actual {n_envs}")
    _check_env_kwargs(env_id, env_kwargs)
    _import_sb3()
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    factory = EnvFactory(env_id, tuple(sorted(env_kwargs.items())))
    return sb3_make_vec_env(
        factory,
        n_envs=n_envs,
        seed=seed,
        vec_env_cls=vec_env_cls,
        monitor_dir=monitor_dir,
        monitor_kwargs={"info_keywords": ("episode_true_utility",)},
    )


@dataclass(frozen=True)
class EvalResult:
    """Means over the evaluation episodes; ``outcomes``: the task's own (``TaskSpec.outcomes``) and ``regret``."""

    n_episodes: int
    mean_reward: float
    mean_true_utility: float
    success_rate: float
    outcomes: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = "".join(f", {k} {v:.3f}" for k, v in sorted(self.outcomes.items()))
        return (
            f"reward {self.mean_reward:.3f}, true utility {self.mean_true_utility:.3f}, "
            f"success {self.success_rate:.3f}{extra} ({self.n_episodes} episodes)"
        )


def evaluate(
    policy: Any,
    env_id: str,
    n_episodes: int = 100,
    *,
    seed: int = 0,
    deterministic: bool = True,
    max_steps: int = 1000,
    **env_kwargs: Any,
) -> EvalResult:
    """Run ``policy`` on episodes seeded ``seed, seed + 1, ...`` and report reward and true utility.

    Every policy evaluated with the same ``seed`` meets the same hidden tasks, so
    numbers compare directly.

    Args:
        policy: an SB3 model (anything with ``predict(obs, deterministic=...)``), a
            callable ``obs -> action``, or ``"random"`` (uniform over the action space,
            seeded by ``seed``).
        env_id: a registered single-agent id; built with ``interface="discrete"``.
        n_episodes: number of episodes.
        seed: seed of the first episode (and of the random policy).
        deterministic: passed to ``predict``.
        max_steps: an episode still running after this many steps is an error, not a hang.
        **env_kwargs: env options (``feedback_timing``...).
    """
    check_type("env_id", env_id, str)
    check_type("n_episodes", n_episodes, int)
    check_type("seed", seed, int)
    if n_episodes < 1:
        raise InvalidArgumentError(f"n_episodes: expects >= 1, actual {n_episodes}")
    _check_env_kwargs(env_id, env_kwargs)
    env = EnvFactory(env_id, tuple(sorted(env_kwargs.items())))()
    act = _as_action_fn(policy, env.action_space, seed, deterministic)
    rewards, utilities, successes = [], [], []
    outcomes: dict[str, list[float]] = {}
    try:
        for k in range(n_episodes):
            obs, info = env.reset(seed=seed + k)
            done, steps = False, 0
            while not done:
                obs, reward, terminated, truncated, info = env.step(act(obs))
                done = terminated or truncated
                steps += 1
                if steps >= max_steps and not done:
                    raise InvalidArgumentError(f"evaluate: episode {k} still running after max_steps={max_steps}")
            result = EpisodeResult.from_info(info["episode_result"])
            rewards.append(result.reward)
            utilities.append(result.true_utility)
            successes.append(float(result.is_success))
            # the task's own outcomes, as its TaskSpec names them, and the regret where it is known
            named = {**result.outcomes, **({} if result.regret is None else {"regret": result.regret})}
            for key, value in named.items():
                if isinstance(value, (bool, np.bool_, numbers.Real)):
                    outcomes.setdefault(key, []).append(float(value))
    finally:
        env.close()
    return EvalResult(
        n_episodes=n_episodes,
        mean_reward=float(np.mean(rewards)),
        mean_true_utility=float(np.mean(utilities)),
        success_rate=float(np.mean(successes)),
        outcomes={k: float(np.mean(v)) for k, v in outcomes.items() if math.isfinite(float(np.mean(v)))},
    )


def _as_action_fn(policy: Any, action_space: gym.Space, seed: int, deterministic: bool) -> Callable[[Any], Any]:
    if isinstance(policy, str):
        if policy != "random":
            raise InvalidArgumentError(f"policy: expects 'random', an SB3 model or a callable, actual {policy!r}")
        action_space.seed(seed)  # the evaluation env's own space: seeding it touches nothing else
        return lambda obs: action_space.sample()
    if hasattr(policy, "predict"):
        def act(obs: Any) -> Any:
            action, _ = policy.predict(obs, deterministic=deterministic)
            return action.item() if isinstance(action, np.ndarray) and action.shape == () else action

        return act
    if callable(policy):
        return policy
    raise InvalidArgumentError(
        f"policy: expects 'random', an SB3 model (with predict) or a callable, actual {type(policy).__name__}"
    )
