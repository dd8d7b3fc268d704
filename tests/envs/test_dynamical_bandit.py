"""DynamicalBandit (Dynamical Linear Bandits): the hidden system, both views, the paper's direction."""

from __future__ import annotations

import numpy as np
import pytest

import fbenv
from fbenv.agents.bandits import DynLinUCB, LinUCB
from fbenv.agents.base import Transition
from fbenv.envs.dynamical_bandit import IDLE, LETTERS, WINDOW, DynamicalBanditEnv, make_dynamics, read_arm
from fbenv.feedback import Source

ENV_ID = "fbenv/DynamicalBandit-v0"


def make(**kw):
    return fbenv.make(ENV_ID, **kw)


def hold(env, arm, seed):
    """Pull ``arm`` every round of one episode from ``reset(seed)``: (rewards, utilities, last info)."""
    env.reset(seed=seed)
    rewards, utilities = [], []
    while True:
        _, r, terminated, truncated, info = env.step(arm(env.unwrapped.hidden_task()))
        rewards.append(r)
        utilities.append(info["true_utility"])
        assert not terminated
        if truncated:
            return np.array(rewards), np.array(utilities), info


# ---------------------------------------------------------------------- the hidden system


@pytest.mark.parametrize("kw", [
    {"n_arms": 2, "state_dim": 1, "rho": 0.0},
    {"n_arms": 3, "state_dim": 2, "rho": 0.7},
    {"n_arms": 6, "state_dim": 4, "rho": 0.95},
    {"n_arms": 26, "state_dim": 16, "rho": 0.999},
])
def test_the_myopic_arm_is_a_trap_with_a_clear_margin(kw):
    for seed in range(60):
        t = make_dynamics(np.random.default_rng(seed), noise=0.05, **kw)
        assert t.myopic_arm != t.best_arm
        theta = np.sort(t.theta)
        assert theta[-1] - theta[-2] >= 0.08  # the trap pays clearly more at once...
        assert t.best_gain - t.gain[t.myopic_arm] >= 0.15  # ...and clearly less when held
        assert np.max(np.abs(np.linalg.eigvalsh(t.A))) == pytest.approx(kw["rho"])  # spectral radius
        np.testing.assert_allclose(t.A, t.A.T)


def test_gain_is_what_holding_an_arm_pays_in_steady_state():
    env = make(interface="discrete", noise=0.0, rho=0.8, n_arms=4, state_dim=3, horizon=400).unwrapped
    for seed in range(3):
        for arm in range(4):
            _, utilities, _ = hold(env, lambda t, a=arm: a, seed)
            assert utilities[-1] == pytest.approx(env.task.gain[arm], abs=1e-9)
            assert utilities[0] == pytest.approx(env.task.theta[arm] + 0.0)  # x(0) = 0: the immediate payoff


def test_holding_the_best_arm_beats_holding_the_myopic_arm():
    """The scripted right answer: over the horizon the arm to hold earns more, though it
    pays less in the first round."""
    env = make(interface="discrete")
    for seed in range(5):
        best_r, best_u, best_info = hold(env, lambda t: t.best_arm, seed)
        trap_r, trap_u, trap_info = hold(env, lambda t: t.myopic_arm, seed)
        assert trap_u[0] > best_u[0] + 0.08  # myopically, the trap is right
        assert best_r.sum() > trap_r.sum() + 0.15 * len(best_r)  # over the horizon it is not
        assert best_info["best_arm_share"] == 1.0 and best_info["is_success"]
        assert trap_info["myopic_arm_share"] == 1.0 and not trap_info["is_success"]
        assert best_info["cumulative_regret"] < 5.0 < 0.15 * len(trap_r) < trap_info["cumulative_regret"]


# ---------------------------------------------------------------------- reward, truth, episode


def test_rewards_truth_and_episode_end():
    env = make(interface="discrete", horizon=300, noise=0.2, rho=0.9, n_arms=4, state_dim=3)
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=7)
    regrets = []
    for t in range(1, 301):
        _, r, terminated, truncated, info = env.step(int(rng.integers(4)))
        assert 0.0 <= r <= 1.0
        assert 0.2 - 1e-12 <= info["true_utility"] <= 0.8 + 1e-12  # in [noise, 1 - noise]
        assert abs(r - info["true_utility"]) <= 0.2 + 1e-12
        assert info["regret"] == pytest.approx(env.unwrapped.task.best_gain - info["true_utility"])
        assert info["is_success"] == (info["arm"] == env.unwrapped.task.best_arm)
        (record,) = info["feedback"]
        assert record.source is Source.EXECUTION and record.scalar == r and record.scale == (0.0, 1.0)
        regrets.append(info["regret"])
        assert not terminated and truncated == (t == 300)
    assert info["cumulative_regret"] == pytest.approx(sum(regrets))
    result = info["episode_result"]
    assert result["turns"] == 300 and result["truncated"] and not result["terminated"]
    assert set(result["outcomes"]) == {"cumulative_regret", "best_arm_share", "myopic_arm_share", "idle_rounds"}


def test_discrete_observation_shows_the_last_pull_never_the_state():
    env = make(interface="discrete", n_arms=4, horizon=50)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.shape == (7,) and env.action_space.n == 4
    np.testing.assert_array_equal(obs, [1, 0, 0, 0, 0, 0, 0])
    for t, arm in enumerate([2, 2, 0, 3], start=1):
        obs, r, *_ = env.step(arm)
        assert obs in env.observation_space
        expected = np.zeros(7, dtype=np.float32)
        expected[0], expected[1 + arm], expected[5], expected[6] = 1.0, 1.0, r, t / 50
        np.testing.assert_array_equal(obs, expected)
    # two different hidden systems, the same pulls: the observation is the same function of (arm, reward, t)
    other = make(interface="discrete", n_arms=4, horizon=50)
    other.reset(seed=4)
    o2, r2, *_ = other.step(1)
    assert other.unwrapped.hidden_task() != env.unwrapped.hidden_task()
    np.testing.assert_array_equal(o2[:5], [1, 0, 1, 0, 0])


# ---------------------------------------------------------------------- the text view


def test_read_arm():
    assert read_arm("Arm B.", 3) == 1
    assert read_arm("arm c please", 3) == 2
    assert read_arm("I'll go with ARM: a", 3) == 0
    assert read_arm("  C! ", 3) == 2
    assert read_arm("Arm B, then arm B again", 3) == 1
    for text in ("", "hello", "Arm A or arm B", "Arm D", "D", "alarm", "a b"):
        assert read_arm(text, 3) is None, text


def test_text_view_is_the_same_task_and_a_non_answer_is_an_observation():
    text, disc = make(interface="text", horizon=40), make(interface="discrete", horizon=40)
    _, info = text.reset(seed=5)
    disc.reset(seed=5)
    assert text.unwrapped.hidden_task() == disc.unwrapped.hidden_task()
    assert "Arm A" in info["messages"][0]["content"] and "40 rounds" in info["messages"][0]["content"]
    replies = ["Arm B.", "arm c please", "A", "Arm B."]
    for reply, action in zip(replies, [1, 2, 0, 1]):
        obs_t, r_t, _, _, info_t = text.step(reply)
        _, r_d, _, _, info_d = disc.step(action)
        assert r_t == r_d and info_t["true_utility"] == info_d["true_utility"] and info_t["arm"] == action
    assert f"Arm {LETTERS[1]} paid {r_t:.3f}" in obs_t
    # no arm named: nothing pulled, the system still moves and pays, no crash
    u = text.unwrapped
    x_before = u._x.copy()
    for reply in ("What are the arms?", "Arm A or arm B", "Arm Q", 3000 * "x"):
        obs, r, terminated, truncated, info = text.step(reply)
        assert info["arm"] == IDLE and 0.0 <= r <= 1.0 and not (terminated or truncated)
        assert info["true_utility"] == pytest.approx(u.task.offset + float(u.task.w @ x_before))
        assert "nothing was pulled" in obs and not info["is_success"]
        x_before = u._x.copy()
    assert info["idle_rounds"] == 4


def test_transcript_stays_short_and_recalls_recent_rounds():
    env = make(horizon=200)
    env.reset(seed=0)
    for t in range(1, 150):
        obs, r, _, _, info = env.step(f"Arm {LETTERS[t % 3]}.")
    assert len(info["messages"]) == 3  # instructions, the last reply, its outcome
    assert [m["role"] for m in info["messages"]] == ["system", "assistant", "user"]
    recent = obs.split("oldest first: ")[1].rstrip(".").split(", ")
    assert len(recent) == WINDOW and recent[-1] == f"{LETTERS[149 % 3]} {r:.3f}"
    assert "Round 149" in obs


# ---------------------------------------------------------------------- determinism


def test_same_seed_same_episode_other_seed_other_system():
    def trace(seed, interface="discrete"):
        env = make(interface=interface, horizon=60)
        env.reset(seed=seed)
        rng = np.random.default_rng(1)
        out = []
        for _ in range(60):
            a = int(rng.integers(3))
            obs, r, _, _, info = env.step(a if interface == "discrete" else f"Arm {LETTERS[a]}.")
            out.append((r, info["true_utility"], info["arm"]))
        return out, env.unwrapped.hidden_task()

    first, task = trace(11)
    again, task_again = trace(11)
    assert first == again and task == task_again
    as_text, _ = trace(11, "text")
    assert as_text == first
    other, other_task = trace(12)
    assert other != first and other_task != task


# ---------------------------------------------------------------------- the paper's direction


def run_agent(env, agent, seed):
    agent.reset(seed + 10_000)  # not the env's seed: the same stream would correlate them
    obs, info = env.reset(seed=seed)
    total = 0.0
    while True:
        action = agent.act(obs, info)
        next_obs, r, terminated, truncated, info = env.step(action)
        agent.update(Transition(obs, action, r, next_obs, terminated, truncated, info))
        total += r
        obs = next_obs
        if terminated or truncated:
            return total, info


def test_dynlinucb_beats_myopic_linucb():
    """Mussi et al.: DynLin-UCB, which waits for the transient before judging an arm, earns
    more than LinUCB, which models only the immediate reward and so settles on the trap."""
    env = make(interface="discrete", horizon=1000, rho=0.7)
    u = env.unwrapped
    seeds = range(4)
    dyn = [run_agent(env, DynLinUCB(u.n_arms, u.n_arms, rho=u.rho), s) for s in seeds]
    lin = [run_agent(env, LinUCB(u.n_arms, u.n_features), s) for s in seeds]
    dyn_reward, lin_reward = np.mean([r for r, _ in dyn]), np.mean([r for r, _ in lin])
    assert dyn_reward > lin_reward + 80, (dyn_reward, lin_reward)  # > 0.08 per round
    dyn_regret = np.mean([i["cumulative_regret"] for _, i in dyn])
    lin_regret = np.mean([i["cumulative_regret"] for _, i in lin])
    assert dyn_regret < 0.5 * lin_regret, (dyn_regret, lin_regret)
    assert np.mean([i["myopic_arm_share"] for _, i in lin]) > 0.6  # LinUCB falls into the trap
    assert np.mean([i["best_arm_share"] for _, i in dyn]) > 0.4 > np.mean([i["best_arm_share"] for _, i in lin])


# ---------------------------------------------------------------------- caller mistakes


@pytest.mark.parametrize("kw, match", [
    ({"n_arms": 1}, "n_arms"),
    ({"n_arms": 27}, "n_arms"),
    ({"n_arms": 3.0}, "n_arms"),
    ({"n_arms": True}, "n_arms"),
    ({"horizon": 0}, "horizon"),
    ({"horizon": "10"}, "horizon"),
    ({"rho": 1.0}, "rho"),
    ({"rho": -0.1}, "rho"),
    ({"rho": float("nan")}, "rho"),
    ({"rho": "0.5"}, "rho"),
    ({"state_dim": 0}, "state_dim"),
    ({"state_dim": 17}, "state_dim"),
    ({"noise": 0.3}, "noise"),
    ({"noise": -0.01}, "noise"),
])
def test_bad_kwargs_are_typed_errors(kw, match):
    with pytest.raises(fbenv.InvalidArgumentError, match=match):
        make(**kw)


def test_other_caller_mistakes():
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'n_arms'"):
        make(n_arm=3)
    with pytest.raises(fbenv.UnknownNameError, match="simulator"):
        make(simulator="llm")  # no LLM simulator in this task
    env = make(interface="discrete")
    env.reset(seed=0)
    for bad in (3, -1, 1.0, "Arm A."):
        with pytest.raises(fbenv.InvalidArgumentError):
            env.step(bad)
    with pytest.raises(fbenv.InvalidArgumentError, match="reset"):
        DynamicalBanditEnv().step("Arm A.")
