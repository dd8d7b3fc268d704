"""RLlib PPO on the discrete views of the social games, one policy per seat type (fbenv.agents.rllib)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fbenv
from fbenv.errors import InvalidArgumentError, UnknownNameError

pytest.importorskip("ray.rllib", reason="RLlib is not importable: pip install 'fbenv[rllib]'")
pytest.importorskip("torch", reason="RLlib's PPO here runs on torch")

from fbenv.agents import rllib  # noqa: E402

# each game with every seat learnable, kept short so a run takes seconds
GAMES = {
    "SafetyWaltz-v0": {"n_prompts": 4},
    "Negotiation-v0": {"learnable": ("buyer_0", "seller_0", "coach_0"), "coach": "buyer_0", "games": 2},
    "Commons-v0": {"max_cycles": 16},
}
ITERATIONS = 2


def registered(env_id):
    try:
        return fbenv.spec(env_id).multi_agent
    except UnknownNameError:
        return False


@pytest.fixture(scope="module")
def ray_local():
    import ray

    started = not ray.is_initialized()
    if started:  # one local instance for the module: starting Ray costs ~10 s
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_policy_per_seat_type():
    assert rllib.seat_type("buyer_0") == rllib.seat_type("buyer_12") == "buyer"
    assert rllib.policy_mapping_fn("agent_3", None) == "agent"
    assert rllib.seat_type("solo") == "solo"


def test_make_env_rejects_what_rllib_cannot_train():
    with pytest.raises(InvalidArgumentError):
        rllib.make_env("fbenv/Advisor-v0")  # single-agent: Gymnasium tools train it
    with pytest.raises(InvalidArgumentError):
        rllib.make_env("fbenv/Commons-v0", interface="text")


@pytest.mark.parametrize("env_id", ["SafetyWaltz-v0", "Negotiation-v0"])
def test_turn_based_games_show_the_board_to_the_seat_to_act(env_id):
    if not registered(env_id):
        pytest.skip(f"{env_id} is not registered")
    env = rllib.make_env(env_id, **GAMES[env_id])
    task = env.par_env
    obs, infos = env.reset(seed=3)
    rng = np.random.default_rng(0)
    seen, steps = set(), 0
    while True:
        assert set(obs) == set(infos) == set(task.to_act()) & set(task.possible_agents)
        seen |= set(obs)
        # RLlib sends actions only for the seats it observed; the wrapper fills in the rest
        obs, rewards, terms, truncs, infos = env.step({a: int(rng.integers(env.action_space[a].n)) for a in obs})
        steps += 1
        if terms["__all__"] or truncs["__all__"]:
            break
        assert steps < 500
    assert seen == set(task.possible_agents)  # every seat moved
    assert set(obs) == set(task.possible_agents)  # the last board goes to every seat
    assert all("episode_result" in infos[a] for a in task.possible_agents)


def test_all_seats_view_is_plain_parallel_pettingzoo():
    env = rllib.make_env("SafetyWaltz-v0", turns=False)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"assistant_0", "feedback_0"}
    assert rllib.env_name("SafetyWaltz-v0", turns=False) != rllib.env_name("SafetyWaltz-v0")


@pytest.mark.parametrize("env_id", list(GAMES))
def test_ppo_trains_a_policy_per_seat_type(ray_local, env_id):
    if not registered(env_id):
        pytest.skip(f"{env_id} is not registered")
    kwargs = GAMES[env_id]
    seats = fbenv.make(env_id, interface="discrete", **kwargs).possible_agents
    types = {rllib.seat_type(s) for s in seats}
    config = rllib.ppo_config(env_id, train_batch=128, minibatch=64, epochs=2, hidden=(32,), **kwargs)
    run = rllib.train(env_id, ITERATIONS, config=config)

    assert len(run.iterations) == ITERATIONS
    assert set(run.modules.keys()) == types
    for it in run.iterations:
        assert it.env_steps > 0
        assert set(it.losses) == types
        assert all(math.isfinite(v) for v in it.losses.values()), it.losses
    assert sum(it.episodes for it in run.iterations) > 0
    # every seat finished episodes, and RLlib's returns are the env's feedback rewards: finite numbers
    assert set().union(*(r.keys() for r in run.returns)) == set(seats)
    assert all(math.isfinite(v) for r in run.returns for v in r.values())

    results = rllib.rollout(run.modules, env_id, episodes=2, seed=1000, **kwargs)
    assert set(results) == set(seats)
    for seat, r in results.items():
        assert r.episodes == 2
        assert math.isfinite(r.reward) and math.isfinite(r.true_utility)
        assert set(r.outcomes) <= set(fbenv.spec(env_id).outcomes)
    # the rollout's numbers are the env's own: the same greedy play replayed by hand gives them
    env = fbenv.make(env_id, interface="discrete", **kwargs)
    obs, _ = env.reset(seed=1000)
    import torch

    with torch.no_grad():
        while env.agents:
            acts = {}
            for a in env.agents:
                out = run.modules[rllib.seat_type(a)].forward_inference({"obs": torch.as_tensor(obs[a])[None]})
                acts[a] = int(out["action_dist_inputs"][0].argmax())
            obs, _, _, _, infos = env.step(acts)
    first = {a: infos[a]["episode_result"]["true_utility"] for a in seats}
    again = rllib.rollout(run.modules, env_id, episodes=1, seed=1000, **kwargs)
    assert {a: again[a].true_utility for a in seats} == pytest.approx(first)
