"""fbenv's batched vector env: SyncVectorEnv semantics, merged LLM calls."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import fbenv
from fbenv.llm import ScriptedBackend
from fbenv.vector import BatchedVectorEnv
from tests.fbenv.readers import Reader


class CountingPerson(ScriptedBackend):
    def __init__(self):
        super().__init__([(r"Rating: N", "Rating: 4"), (r"assistant says", "BUY B")], default="?")
        self.batch_sizes: list[int] = []

    def _generate(self, requests):
        self.batch_sizes.append(len(requests))
        return super()._generate(requests)


def run(vec, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    obs, info = vec.reset(seed=seed)
    trace = [(obs.copy(), None)]
    for _ in range(steps):
        actions = rng.integers(0, 17, size=vec.num_envs)
        obs, rew, term, trunc, info = vec.step(actions)
        trace.append((obs.copy(), rew.copy(), term.copy(), trunc.copy(), np.asarray(info.get("true_utility"))))
    return trace


class CountingReader(Reader):
    """A faithful reader of the focused prompts' belief questions, counting batch sizes."""

    def __init__(self):
        super().__init__()
        self.batch_sizes = self.batches


@pytest.mark.parametrize("prompting", ["holistic", "focused"])
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_matches_sync_vector_env(mode, prompting):
    kw = dict(interface="discrete", simulator="llm", feedback_timing="hindsight", llm_prompting=prompting)
    person = CountingPerson if prompting == "holistic" else CountingReader
    a_person, b_person = person(), person()
    batched = fbenv.make_vec("fbenv/Advisor-v0", 4, autoreset_mode=mode, llm=a_person, **kw)
    sync = SyncVectorEnv([lambda: gym.make("fbenv/Advisor-v0", llm=b_person, **kw)] * 4, autoreset_mode=mode)
    ta, tb = run(batched, 8), run(sync, 8)
    for x, y in zip(ta, tb):
        for u, v in zip(x, y):
            assert (u is None and v is None) or np.array_equal(u, v)
    # same requests, far fewer backend calls
    assert sum(a_person.batch_sizes) == sum(b_person.batch_sizes)
    assert len(a_person.batch_sizes) < len(b_person.batch_sizes) / 2
    if prompting == "holistic":  # one decision (or rating) per env: a batch is the four envs
        assert max(a_person.batch_sizes) == 4
    else:  # every env's belief questions (and their content-free twins) in one batch
        assert max(a_person.batch_sizes) > 4 * max(b_person.batch_sizes) / 2


def test_gym_make_vec_uses_batched_env():
    vec = gym.make_vec("fbenv/Advisor-v0", num_envs=3, interface="discrete")
    assert isinstance(vec.unwrapped, BatchedVectorEnv)
    obs, info = vec.reset(seed=0)
    assert obs.shape == (3, 44) and "feedback" in info
    vec.close()


def test_text_observations_batch_intact():
    vec = fbenv.make_vec("fbenv/Advisor-v0", 2)
    obs, _ = vec.reset(seed=[5, 6])
    assert isinstance(obs, tuple) and all(isinstance(o, str) and "Customer:" in o for o in obs)
    obs, *_ = vec.step(("I recommend A. A has everything.", "\u00e9\u00e8 recommend B"))
    assert "Assistant: I recommend A." in obs[0]


def test_bad_vector_arguments():
    with pytest.raises(fbenv.InvalidArgumentError, match="num_envs"):
        fbenv.make_vec("fbenv/Advisor-v0", 0)
    with pytest.raises(fbenv.UnknownNameError):
        fbenv.make_vec("fbenv/Adviser-v0", 2)
    vec = fbenv.make_vec("fbenv/Advisor-v0", 2)
    with pytest.raises(fbenv.InvalidArgumentError, match="expects 2 seeds"):
        vec.reset(seed=[1, 2, 3])
