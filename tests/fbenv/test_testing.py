"""The checker itself: a well-behaved toy env passes, a broken one fails with a reason."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from fbenv.feedback import Feedback, Source
from fbenv.spaces import FreeText
from fbenv.testing import check_fbenv_parallel_env


class PraiseGame(ParallelEnv):
    """Two speakers each pick a compliment; a simulated listener praises the better one."""

    metadata = {"name": "praise_v0", "render_modes": []}

    def __init__(self, max_cycles: int = 3, report_truth: bool = True):
        self.possible_agents = ["speaker_0", "speaker_1"]
        self.max_cycles, self.report_truth = max_cycles, report_truth
        self.np_random = np.random.default_rng()

    @functools.lru_cache(maxsize=None)  # noqa: B019 - one space object per agent and instance
    def observation_space(self, agent):
        return spaces.Dict({"text": FreeText(64)})

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def action_space(self, agent):
        return spaces.Discrete(3)

    def _info(self, agent, praised: bool | None = None):
        info = {"feedback": () if praised is None else (Feedback(Source.PEER, scalar=float(praised)),)}
        if self.report_truth:
            info.update(true_utility=float(self.taste[self.possible_agents.index(agent)]), is_success=bool(praised))
        return info

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.taste = self.np_random.random(3)
        self.t = 0
        return {a: {"text": "speak"} for a in self.agents}, {a: self._info(a) for a in self.agents}

    def step(self, actions):
        self.t += 1
        score = {a: self.taste[actions[a]] + 0.1 * self.np_random.random() for a in self.agents}
        best = max(score, key=score.get)
        rewards = {a: float(a == best) for a in self.agents}
        trunc = {a: self.t >= self.max_cycles for a in self.agents}
        term = {a: False for a in self.agents}
        infos = {a: self._info(a, a == best) for a in self.agents}
        obs = {a: {"text": f"{best} was praised"} for a in self.agents}
        if self.t >= self.max_cycles:
            self.agents = []
        return obs, rewards, term, trunc, infos

    def close(self):
        pass


def test_well_behaved_parallel_env_passes():
    check_fbenv_parallel_env(PraiseGame, num_cycles=5)


def test_env_without_the_hidden_objective_fails_with_a_reason():
    with pytest.raises(AssertionError, match="lacks 'true_utility'"):
        check_fbenv_parallel_env(lambda: PraiseGame(report_truth=False), num_cycles=5)
