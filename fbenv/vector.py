"""A vector env that steps sub-envs concurrently and batches their simulator calls.

It behaves as Gymnasium's ``SyncVectorEnv`` (same autoreset modes, info batching,
observation concatenation) except that each sub-env's ``reset``/``step`` runs in its
own thread inside a :class:`~fbenv.llm.batching.BatchGroup`: the LLM requests the
sub-envs make at the same moment reach the shared backend as one batched call. One
process, one model: never a process per env with a local model.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import concatenate, iterate

from fbenv.errors import InvalidArgumentError
from fbenv.llm.batching import BatchGroup


class BatchedVectorEnv(SyncVectorEnv):
    """``SyncVectorEnv`` semantics, concurrent sub-env steps, batched LLM calls."""

    def __init__(self, env_fns, *, copy: bool = True, autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP):
        super().__init__(env_fns, copy=copy, observation_mode="same", autoreset_mode=autoreset_mode)
        self._group = BatchGroup(max_workers=self.num_envs)

    @property
    def batch_flushes(self) -> int:
        """How many batched backend calls the sub-envs' requests were merged into."""
        return self._group.flushes

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise InvalidArgumentError(
                f"reset(seed=...): expects {self.num_envs} seeds, actual {len(seeds)}"
            )
        options = dict(options) if options else None
        mask = options.pop("reset_mask", None) if options else None
        if mask is None:
            mask = np.ones(self.num_envs, dtype=np.bool_)
            self._terminations = np.zeros((self.num_envs,), dtype=np.bool_)
            self._truncations = np.zeros((self.num_envs,), dtype=np.bool_)
            self._autoreset_envs = np.zeros((self.num_envs,), dtype=np.bool_)
        else:
            if not (isinstance(mask, np.ndarray) and mask.shape == (self.num_envs,) and mask.dtype == np.bool_ and mask.any()):
                raise InvalidArgumentError(
                    f"options['reset_mask']: expects a bool array of shape ({self.num_envs},) with a True, actual {mask!r}"
                )
            self._terminations[mask] = False
            self._truncations[mask] = False
            self._autoreset_envs[mask] = False
        idx = [i for i in range(self.num_envs) if mask[i]]
        outs = self._group.run(
            [lambda i=i: self.envs[i].reset(seed=seeds[i], options=options) for i in idx]
        )
        infos: dict[str, Any] = {}
        for i, (obs, info) in zip(idx, outs):
            self._env_obs[i] = obs
            infos = self._add_info(infos, info, i)
        self._observations = concatenate(self.single_observation_space, self._env_obs, self._observations)
        return (deepcopy(self._observations) if self.copy else self._observations), infos

    def step(self, actions):
        actions = list(iterate(self.action_space, actions))
        mode = self.autoreset_mode

        def one(i: int):
            if mode == AutoresetMode.NEXT_STEP and self._autoreset_envs[i]:
                obs, info = self.envs[i].reset()
                return obs, 0.0, False, False, info, None
            if mode == AutoresetMode.DISABLED and self._autoreset_envs[i]:
                raise gym.error.ResetNeeded(f"sub-env {i} ended; reset it (autoreset is disabled)")
            obs, reward, terminated, truncated, info = self.envs[i].step(actions[i])
            final = None
            if mode == AutoresetMode.SAME_STEP and (terminated or truncated):
                final = {"final_obs": obs, "final_info": info}
                obs, info = self.envs[i].reset()
            return obs, reward, terminated, truncated, info, final

        outs = self._group.run([lambda i=i: one(i) for i in range(self.num_envs)])
        infos: dict[str, Any] = {}
        for i, (obs, reward, terminated, truncated, info, final) in enumerate(outs):
            self._env_obs[i] = obs
            self._rewards[i] = reward
            self._terminations[i] = terminated
            self._truncations[i] = truncated
            if final is not None:
                infos = self._add_info(infos, final, i)
            infos = self._add_info(infos, info, i)
        self._observations = concatenate(self.single_observation_space, self._env_obs, self._observations)
        self._autoreset_envs = np.logical_or(self._terminations, self._truncations)
        return (
            deepcopy(self._observations) if self.copy else self._observations,
            np.copy(self._rewards),
            np.copy(self._terminations),
            np.copy(self._truncations),
            infos,
        )
