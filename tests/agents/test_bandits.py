"""Behavioural tests for fbenv.agents.bandits on tiny Gymnasium bandit envs defined here.

Each learning claim is checked against a uniform-random agent at the same horizon and
seeds, using pseudo-regret (the gap of the arm played, no sampling noise) averaged over
three seeds so one unlucky run cannot flip a verdict.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from fbenv.agents.bandits import (
    EXP3,
    UCB1,
    DoubleThompsonSampling,
    DynLinUCB,
    EpsilonGreedy,
    LinUCB,
    ThompsonSampling,
)
from fbenv.agents.base import Agent, Transition
from fbenv.errors import InvalidArgumentError
from fbenv.feedback import Feedback, Source

SEEDS = (0, 1, 2)


# --------------------------------------------------------------------------- test envs


class BernoulliBandit(gym.Env):
    """Stationary K-armed bandit; ``info["regret"]`` is the gap of the arm played."""

    def __init__(self, means=(0.2, 0.35, 0.5, 0.75)):
        self.means = np.asarray(means, dtype=float)
        self.action_space = gym.spaces.Discrete(len(self.means))
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        reward = float(self.np_random.random() < self.means[action])
        info = {"regret": self.means.max() - self.means[action]}
        return np.zeros(1, dtype=np.float32), reward, False, False, info


class LinearContextualBandit(gym.Env):
    """E[r | x, a] = 0.5 + 0.45 z . theta_a with x = [1, z], z a random unit vector.

    With ``per_action=True`` the observation is (K, D): row a is arm a's own feature
    vector and all arms share one theta.
    """

    K, D = 4, 5

    def __init__(self, per_action=False):
        self.per_action = per_action
        theta = np.random.default_rng(7).normal(size=(self.K, self.D - 1))
        self.theta = theta / np.linalg.norm(theta, axis=1, keepdims=True)
        self.action_space = gym.spaces.Discrete(self.K)
        shape = (self.K, self.D) if per_action else (self.D,)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=shape)

    def _context(self):
        n = self.K if self.per_action else 1
        z = self.np_random.normal(size=(n, self.D - 1))
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        if self.per_action:
            self.means = 0.5 + 0.45 * z @ self.theta[0]
        else:
            self.means = 0.5 + 0.45 * self.theta @ z[0]
        x = np.concatenate([np.ones((n, 1)), z], axis=1).astype(np.float32)
        return np.clip(x if self.per_action else x[0], -1.0, 1.0)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._context(), {}

    def step(self, action):
        reward = float(self.np_random.random() < self.means[action])
        info = {"regret": self.means.max() - self.means[action]}
        return self._context(), reward, False, False, info


class DynamicalLinearBandit(gym.Env):
    """Hidden scalar state x: x' = A x + (1 - A) b_a, E[r] = theta_a + w x, x in [0, 1].

    Arm 0 pays best *now* (largest theta) but drains the state; the best arm to hold
    (largest steady-state gain h = theta + w b) pays off only after a while.
    ``info["regret"]`` compares with holding the best arm in steady state.
    """

    def __init__(self, b=(0.0, 0.5, 1.0), theta=(0.3, 0.15, 0.0), w=0.7, a=0.5):
        self.b, self.theta = np.asarray(b, dtype=float), np.asarray(theta, dtype=float)
        self.w, self.a = w, a
        self.gain = self.theta + self.w * self.b  # default [0.3, 0.5, 0.7]
        self.action_space = gym.spaces.Discrete(len(self.b))
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        mean = self.theta[action] + self.w * self.x
        reward = float(self.np_random.random() < mean)
        self.x = self.a * self.x + (1.0 - self.a) * self.b[action]
        info = {"regret": self.gain.max() - mean}
        return np.zeros(1, dtype=np.float32), reward, False, False, info


def pay_now_or_later():
    """Two arms: 0 pays 0.3 now and drains the state, 1 pays 0 now but holds at 0.7."""
    return DynamicalLinearBandit(b=(0.0, 1.0), theta=(0.3, 0.0))


class DuelingBandit(gym.Env):
    """P(i beats j) = 0.5 + (v_i - v_j) / 2; arm 3 is the Condorcet winner.

    Action (i, j); ``info["preference"]`` is 0 if i won, 1 if j won.
    """

    V = np.array([0.5, 0.3, 0.7, 0.9, 0.1])
    WINNER = 3

    def __init__(self):
        self.P = 0.5 + (self.V[:, None] - self.V[None, :]) / 2
        self.action_space = gym.spaces.MultiDiscrete([len(self.V), len(self.V)])
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        i, j = action
        preference = 0 if self.np_random.random() < self.P[i, j] else 1
        reward = float(preference == 0)
        return np.zeros(1, dtype=np.float32), reward, False, False, {"preference": preference}


class UniformRandom(Agent):
    name = "uniform_random"

    def __init__(self, n_actions):
        super().__init__()
        self.n_actions = n_actions

    def act(self, observation, info):
        return int(self.np_random.integers(self.n_actions))


def run(env, agent, steps, seed, env_seed=None):
    """The standard loop; returns (per-step regret or nan, list of actions).

    The env gets a different seed than the agent by default: Gymnasium's ``np_random``
    is the same PCG64 stream as ``default_rng(seed)``, so equal seeds would make the
    agent's coin flips and the env's reward draws identical (a correlated, unfair test).
    """
    agent.reset(seed=seed)
    obs, info = env.reset(seed=seed + 10_000 if env_seed is None else env_seed)
    regrets, actions = np.full(steps, np.nan), []
    for t in range(steps):
        action = agent.act(obs, info)
        next_obs, reward, terminated, truncated, next_info = env.step(action)
        agent.update(Transition(obs, action, reward, next_obs, terminated, truncated, next_info))
        regrets[t] = next_info.get("regret", np.nan)
        actions.append(action)
        obs, info = (env.reset() if terminated or truncated else (next_obs, next_info))
    return regrets, actions


def mean_regret(make_env, make_agent, steps):
    """Mean over SEEDS of (total, first-half, second-half) regret."""
    runs = [run(make_env(), make_agent(), steps, seed)[0] for seed in SEEDS]
    half = steps // 2
    return (
        np.mean([r.sum() for r in runs]),
        np.mean([r[:half].sum() for r in runs]),
        np.mean([r[half:].sum() for r in runs]),
    )


# --------------------------------------------------------------------------- learning


K_ARMED = {
    "epsilon_greedy": lambda: EpsilonGreedy(4, epsilon=0.2, decay=0.01),
    "ucb1": lambda: UCB1(4),
    "thompson": lambda: ThompsonSampling(4),
    "thompson_binarized": lambda: ThompsonSampling(4, binarize=True),
    "exp3": lambda: EXP3(4, gamma=0.1),
}


@pytest.mark.parametrize("name", K_ARMED)
def test_k_armed_regret_far_below_random_and_sublinear(name):
    steps = 3000
    random_total, _, _ = mean_regret(BernoulliBandit, lambda: UniformRandom(4), steps)
    total, first_half, second_half = mean_regret(BernoulliBandit, K_ARMED[name], steps)
    assert random_total > 800  # the env is not trivial: random loses ~0.29 per step
    assert total < 0.3 * random_total, (name, total, random_total)
    assert second_half < first_half, (name, first_half, second_half)


def _feed(agent, pulls):
    obs = np.zeros(1)
    for arm, reward in pulls:
        agent.update(Transition(obs, arm, reward, obs, False, False, {}))


def test_ucb1_is_optimistic_about_rarely_tried_arms():
    agent = UCB1(2)
    agent.reset(seed=0)
    _feed(agent, [(0, 0.5)] + [(1, 0.6)] * 20)  # arm 1 looks better but arm 0 is uncertain
    assert agent.act(np.zeros(1), {}) == 0
    agent = UCB1(2, c=0.0)  # no bonus: greedy
    agent.reset(seed=0)
    _feed(agent, [(0, 0.5)] + [(1, 0.6)] * 20)
    assert agent.act(np.zeros(1), {}) == 1


def test_exp3_uses_importance_weighted_reward_estimates():
    agent = EXP3(4, gamma=0.2)
    agent.reset(seed=0)
    np.testing.assert_allclose(agent.probabilities, 0.25)
    _feed(agent, [(1, 1.0)])  # played with p = 1/4: estimate 4, log-weight += 0.2 * 4 / 4
    np.testing.assert_allclose(agent.log_weights, [0.0, 0.2, 0.0, 0.0])
    p1 = agent.probabilities[1]
    w = np.exp([0.0, 0.2, 0.0, 0.0])
    assert p1 == pytest.approx(0.8 * w[1] / w.sum() + 0.05)
    _feed(agent, [(1, 0.5)])
    assert agent.log_weights[1] == pytest.approx(0.2 + 0.2 * (0.5 / p1) / 4)
    assert EXP3.tuned_gamma(4, 10_000) == pytest.approx(np.sqrt(4 * np.log(4) / ((np.e - 1) * 10_000)))


def test_linucb_beats_random_and_context_free_ucb1():
    steps = 1500
    random_total, _, _ = mean_regret(LinearContextualBandit, lambda: UniformRandom(4), steps)
    ucb_total, _, _ = mean_regret(LinearContextualBandit, lambda: UCB1(4), steps)
    lin_total, lin_first, lin_second = mean_regret(
        LinearContextualBandit, lambda: LinUCB(4, LinearContextualBandit.D), steps
    )
    assert lin_total < 0.3 * random_total, (lin_total, random_total)
    assert lin_total < 0.3 * ucb_total, (lin_total, ucb_total)
    assert lin_second < lin_first


def test_linucb_per_action_features():
    steps = 1000
    make_env = lambda: LinearContextualBandit(per_action=True)  # noqa: E731
    random_total, _, _ = mean_regret(make_env, lambda: UniformRandom(4), steps)
    lin_total, _, _ = mean_regret(make_env, lambda: LinUCB(4, LinearContextualBandit.D), steps)
    assert lin_total < 0.5 * random_total, (lin_total, random_total)


@pytest.mark.parametrize("scale", [1e8, 1e12])
def test_linucb_stays_usable_at_large_feature_scales(scale):
    """Sherman-Morrison round-off at such scales used to break A^-1's positive-definiteness,
    so widths became NaN and act() crashed with numpy's "a cannot be empty"."""
    rng = np.random.default_rng(0)
    agent = LinUCB(3, 4)
    agent.reset(0)
    for _ in range(150):
        x = rng.normal(size=4) * scale
        a = agent.act(x, {})
        assert 0 <= a < 3
        agent.update(Transition(x, a, float(rng.random()), x, True, False, {}))
    # every arm's inverse is still (numerically) positive semi-definite and bounded by 1/ridge
    eig = np.linalg.eigvalsh(agent.A_inv)
    assert np.all(eig >= -1e-9 * eig.max()) and np.all(eig <= 1.0 + 1e-9)


def test_linucb_rejects_what_float64_cannot_hold_with_a_typed_error():
    agent = LinUCB(3, 2)
    agent.reset(0)
    with pytest.raises(InvalidArgumentError, match="LinUCB.update: expects features whose products stay finite"):
        agent.update(Transition(np.full(2, 1e200), 0, 0.5, np.zeros(2), True, False, {}))
    agent.b[1] = np.nan  # a NaN score is an error, never a silent pick (nor numpy's "a cannot be empty")
    with pytest.raises(InvalidArgumentError, match="LinUCB.act: expects finite arm scores"):
        agent.act(np.ones(2), {})


def test_double_thompson_first_arm_is_condorcet_winner_late_in_run():
    steps = 1000
    for seed in SEEDS:
        _, actions = run(DuelingBandit(), DoubleThompsonSampling(5), steps, seed)
        late = np.array(actions[3 * steps // 4 :])
        assert late.shape == (steps // 4, 2)
        assert all(isinstance(a, int) for a in actions[0])
        first_is_winner = np.mean(late[:, 0] == DuelingBandit.WINNER)
        assert first_is_winner > 0.8, (seed, first_is_winner)


def test_double_thompson_feedback_forms():
    agent = DoubleThompsonSampling(3)
    agent.reset(seed=0)
    obs = np.zeros(1)
    # info["preference"]: index within the pair, 1 -> the second arm (2) won
    agent.update(Transition(obs, (0, 2), 0.0, obs, False, False, {"preference": 1}))
    assert agent.wins[2, 0] == 1 and agent.wins[0, 2] == 0
    # a Feedback record with .preference, and a MultiDiscrete-style array action
    record = Feedback(source=Source.USER, preference=0)
    agent.update(Transition(obs, np.array([1, 0]), 0.0, obs, False, False, {"feedback": (record,)}))
    assert agent.wins[1, 0] == 1
    agent.update_duel(winner=2, loser=1)
    assert agent.wins[2, 1] == 1
    agent.update_duel(1, 1)  # a self-duel only advances time
    assert agent.wins.sum() == 3 and agent.t == 4
    with pytest.raises(InvalidArgumentError, match="preference"):
        agent.update(Transition(obs, (0, 1), 1.0, obs, False, False, {}))
    with pytest.raises(InvalidArgumentError, match="pair"):
        agent.update(Transition(obs, 1, 1.0, obs, False, False, {"preference": 0}))


def test_dynlinucb_beats_random_and_myopic_ucb1():
    steps = 3000
    random_total, _, _ = mean_regret(pay_now_or_later, lambda: UniformRandom(2), steps)
    ucb_total, _, _ = mean_regret(pay_now_or_later, lambda: UCB1(2), steps)
    dyn_total, _, _ = mean_regret(pay_now_or_later, lambda: DynLinUCB(2, 2, rho=0.5), steps)
    # the trap is real: chasing the immediate reward does not even halve random's regret
    assert ucb_total > 0.5 * random_total, (ucb_total, random_total)
    assert dyn_total < 0.25 * random_total, (dyn_total, random_total)
    assert dyn_total < 0.25 * ucb_total, (dyn_total, ucb_total)


def test_dynlinucb_three_arms_beats_random():
    steps = 3000
    random_total, _, _ = mean_regret(DynamicalLinearBandit, lambda: UniformRandom(3), steps)
    dyn_total, _, _ = mean_regret(DynamicalLinearBandit, lambda: DynLinUCB(3, 3, rho=0.5), steps)
    assert dyn_total < 0.35 * random_total, (dyn_total, random_total)


def test_dynlinucb_holds_each_arm_for_an_epoch():
    agent = DynLinUCB(3, 3, rho=0.5)
    assert [agent.epoch_length(m) for m in (1, 2, 3, 4, 8, 16)] == [1, 2, 2, 3, 4, 5]
    _, actions = run(DynamicalLinearBandit(), agent, 60, seed=0)
    runs = np.flatnonzero(np.diff(actions)) + 1  # where the arm changes
    boundaries = np.cumsum([agent.epoch_length(m) for m in range(1, 40)])
    assert set(runs) <= set(boundaries)  # switches happen only at epoch ends
    assert agent.epoch_length(1) == DynLinUCB(3, 3, rho=0.0).epoch_length(50) == 1


def test_dynlinucb_regresses_only_the_last_reward_of_each_epoch():
    agent = DynLinUCB(2, 2, rho=0.5, ridge=1.0)
    agent.reset(seed=0)
    obs, ends = np.zeros(1), np.zeros(2)
    for _ in range(12):  # 12 epochs; transient rewards 0, the window's last reward 1
        arm = agent.act(obs, {})
        window = agent.steps_left
        for step in range(window):
            reward = 1.0 if step == window - 1 else 0.0
            agent.update(Transition(obs, arm, reward, obs, False, False, {}))
        ends[arm] += 1
    assert agent.n_samples == 12 and agent.t == sum(agent.epoch_length(m) for m in range(1, 13))
    np.testing.assert_allclose(agent.h_hat, ends / (ends + 1.0))  # ridge estimate of 1.0


# --------------------------------------------------------------------------- determinism


ALL_AGENTS = {
    "epsilon_greedy": (BernoulliBandit, lambda: EpsilonGreedy(4)),
    "ucb1": (BernoulliBandit, lambda: UCB1(4)),
    "thompson": (BernoulliBandit, lambda: ThompsonSampling(4, binarize=True)),
    "exp3": (BernoulliBandit, lambda: EXP3(4)),
    "linucb": (LinearContextualBandit, lambda: LinUCB(4, LinearContextualBandit.D)),
    "double_thompson": (DuelingBandit, lambda: DoubleThompsonSampling(5)),
    "dynlinucb": (DynamicalLinearBandit, lambda: DynLinUCB(3, 3)),
}


@pytest.mark.parametrize("name", ALL_AGENTS)
def test_same_seed_same_actions_other_seed_other_actions(name):
    make_env, make_agent = ALL_AGENTS[name]
    _, first = run(make_env(), make_agent(), 200, seed=3, env_seed=11)
    _, again = run(make_env(), make_agent(), 200, seed=3, env_seed=11)
    _, other = run(make_env(), make_agent(), 200, seed=4, env_seed=11)
    assert first == again
    assert first != other  # the agent's own seed matters, not only the env's


@pytest.mark.parametrize("name", ALL_AGENTS)
def test_reset_forgets_everything(name):
    make_env, make_agent = ALL_AGENTS[name]
    trained = make_agent()
    run(make_env(), trained, 300, seed=0)
    fresh = make_agent()
    # run() calls reset(seed=5) on both: the trained agent must behave like a fresh one
    _, after_reset = run(make_env(), trained, 100, seed=5, env_seed=9)
    _, from_scratch = run(make_env(), fresh, 100, seed=5, env_seed=9)
    assert after_reset == from_scratch


def test_agents_do_not_touch_global_random_state():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    for make_env, make_agent in ALL_AGENTS.values():
        run(make_env(), make_agent(), 30, seed=0)
    assert np.random.random() == expected


# --------------------------------------------------------------------------- validation


BAD_ARGS = [
    (EpsilonGreedy, (0,), {}),
    (EpsilonGreedy, (2.0,), {}),
    (EpsilonGreedy, (True,), {}),
    (EpsilonGreedy, ("3",), {}),
    (EpsilonGreedy, (3,), {"epsilon": 1.5}),
    (EpsilonGreedy, (3,), {"epsilon": -0.1}),
    (EpsilonGreedy, (3,), {"decay": 0.0}),
    (EpsilonGreedy, (3,), {"reward_range": (1.0, 1.0)}),
    (EpsilonGreedy, (3,), {"reward_range": 1.0}),
    (UCB1, (3,), {"c": -1.0}),
    (UCB1, (3,), {"c": float("nan")}),
    (ThompsonSampling, (3,), {"prior_alpha": 0.0}),
    (ThompsonSampling, (3,), {"prior_beta": -1.0}),
    (ThompsonSampling, (3,), {"binarize": 1}),
    (EXP3, (3,), {"gamma": 0.0}),
    (EXP3, (3,), {"gamma": 1.5}),
    (LinUCB, (3, 0), {}),
    (LinUCB, (3, 2), {"alpha": -0.5}),
    (LinUCB, (3, 2), {"ridge": 0.0}),
    (DoubleThompsonSampling, (1,), {}),
    (DoubleThompsonSampling, (3,), {"alpha": 0.0}),
    (DynLinUCB, (3, 2), {}),  # one-hot arms need n_features == n_actions
    (DynLinUCB, (3, 2), {"action_features": np.ones((2, 3))}),
    (DynLinUCB, (3, 3), {"rho": 1.0}),
    (DynLinUCB, (3, 3), {"rho": -0.1}),
    (DynLinUCB, (3, 3), {"ridge": -1.0}),
]


@pytest.mark.parametrize(("cls", "args", "kwargs"), BAD_ARGS)
def test_bad_constructor_args_raise_typed_error(cls, args, kwargs):
    with pytest.raises(InvalidArgumentError, match="expects .* actual"):
        cls(*args, **kwargs)


def test_rewards_outside_range_are_rejected_and_ranges_rescale():
    obs = np.zeros(1)
    step = lambda a, r: Transition(obs, a, r, obs, False, False, {})  # noqa: E731
    agent = UCB1(2)
    agent.update(step(0, 1.0 + 1e-12))  # float round-off is clipped
    assert agent.values[0] == 1.0
    for bad in (1.5, -0.2, float("nan"), "1"):
        with pytest.raises(InvalidArgumentError, match="expects"):
            agent.update(step(1, bad))
    for bad_action in (2, -1, 0.5, None):
        with pytest.raises(InvalidArgumentError, match="arm index"):
            agent.update(step(bad_action, 0.5))
    likert = ThompsonSampling(2, reward_range=(1, 5))
    likert.update(step(np.int64(1), 4))  # 4 on a 1..5 scale is 0.75
    assert likert.alpha[1] == pytest.approx(1.75) and likert.beta[1] == pytest.approx(1.25)
    with pytest.raises(InvalidArgumentError, match=r"\[1, 5\]"):
        likert.update(step(0, 0.5))


def test_contextual_agents_reject_bad_observations_and_actions():
    agent = LinUCB(3, 4)
    with pytest.raises(InvalidArgumentError, match=r"shape \(4,\) or \(3, 4\)"):
        agent.act(np.zeros(5), {})
    with pytest.raises(InvalidArgumentError, match="finite"):
        agent.act(np.array([0.0, np.nan, 0.0, 0.0]), {})
    assert agent.act(np.zeros((1, 4)), {}) in range(3)  # same size as (4,): flattened
    dyn = DynLinUCB(3, 3)
    dyn.reset(seed=0)
    arm = dyn.act(None, {})
    obs = np.zeros(1)
    with pytest.raises(InvalidArgumentError, match="last act"):
        dyn.update(Transition(obs, (arm + 1) % 3, 0.5, obs, False, False, {}))
