"""DynamicalBandit: arms whose effects outlast the round (Dynamical Linear Bandits).

## Description

From *Dynamical Linear Bandits* (Mussi, Metelli & Restelli, ICML 2023). Each round the
agent pulls one of ``n_arms`` arms (say, which of K campaigns to run this week). A hidden
state ``x`` in R^d (the audience's disposition) carries the effect of every pull forward:

    x(t+1) = A x(t) + B u(t) + xi(t)        r(t) = w . x(t) + theta . u(t) + eta(t)

with ``u(t)`` the one-hot vector of the arm pulled, ``A`` symmetric with spectral radius
``rho`` (the state forgets at rate ``rho`` per round) and ``xi``, ``eta`` bounded noise.
Holding arm ``a`` settles the state at ``(I - A)^-1 B u_a`` and pays its steady-state gain
``h_a = theta_a + w . (I - A)^-1 B u_a`` per round. The hidden parameters are drawn from
``reset(seed=...)`` so that the myopic arm (largest immediate payoff ``theta_a``) is a
trap: it adds nothing to the state, and held it pays about 0.25 per round less than the
best arm to hold, while it pays about 0.17 more at once than the next arm (medians at the
default noise; over 800 sampled systems of 2 to 26 arms and ``rho`` up to 0.999 the gaps
never fell below 0.18 and 0.09, nor below 0.09 and 0.04 at ``noise=0.2``). An investment
arm pays little now but builds the state up. Agents that chase the immediate reward (LinUCB, UCB1) settle on the trap; one
that waits for the transient to fade before judging an arm (DynLin-UCB) finds the arm
to hold.

There is no simulated person in this task: the feedback is the numeric outcome of the
linear system (a measurement such as conversions), simulated exactly by the rule model.
It has no LLM simulator and no roles (``simulator`` accepts ``"rule"`` only).

## Observation

- ``interface="text"``: the instructions (the arms, the number of rounds, and that a
  hidden state moved by past pulls drives later rewards), the agent's last reply and the
  outcome of the last round, which recalls the last 10 rounds: ``Outcome: Round 17: Arm B
  paid 0.734. Last 10 rounds, oldest first: A 0.612, ..., B 0.734.`` ``info["messages"]``
  has the same as chat messages. Older rounds drop out of the transcript, so a step
  costs the same at round 1 and round 1,000.
- ``interface="discrete"``: ``Box(0, 1, (n_arms + 3,))``: a constant 1, the one-hot last
  arm (zeros before the first pull and after a round with no arm), the last reward and
  the share of the horizon elapsed (``t / horizon``). It never shows the hidden state.

## Action

- ``discrete``: ``Discrete(n_arms)``: pull arm ``i`` (said as ``"Arm <letter>."``, A for 0).
- ``text``: any string; it pulls the one arm it names (``"Arm C"``, ``"arm c please"``, or
  a lone letter ``"C"``). A reply that names no arm, several arms or a letter beyond the
  arms is an observation, not a crash: nothing is pulled that round (``u = 0``), the
  system moves on, the reward is what the state alone pays, and the outcome says how to
  name an arm.

## Reward

The noisy reward ``r(t)``, in [0, 1] by construction: the hidden parameters are scaled so
that the expected reward stays in ``[noise, 1 - noise]`` for every sequence of pulls and
every noise draw, and ``eta`` is uniform on ``[-noise, noise]``. Bandit agents that
expect [0, 1] rewards take it as is.

## Feedback source

One ``execution`` record per step in ``info["feedback"]``: the measured outcome
(``scalar`` = the reward, ``scale`` = (0, 1)), produced by the rule model. No LLM role.

## True utility

``info["true_utility"]``: the noise-free expected reward of the step, ``w . x(t) +
theta . u(t)`` (summed over an episode: the expected return). The best achievable is
the steady-state gain of the best arm to hold, ``max_a h_a``, so ``info["regret"]`` is
``max_a h_a - true_utility`` and sums to the paper's cumulative regret against holding
the best fixed arm in steady state (one step can have negative regret: the trap pays
more than the best gain once, right after the state was built up). ``info["is_success"]``:
the arm pulled is the best arm to hold. Every step also reports ``info["arm"]`` (the arm
pulled, -1 for none) and the running outcomes ``info["cumulative_regret"]``,
``info["best_arm_share"]`` (share of rounds on the best arm to hold),
``info["myopic_arm_share"]`` (share on the trap) and ``info["idle_rounds"]`` (text
rounds that named no arm).

## Episode end

Never terminated (a bandit has no terminal outcome). Truncated after ``horizon`` rounds.
A learner learns within the episode: each reset draws a new hidden system.

## Arguments

``n_arms`` (3; 2 to 26), ``horizon`` (1000 rounds), ``rho`` (0.7: the spectral radius of
``A``, in [0, 0.999]; the larger, the longer a pull's effect lasts; DynLin-UCB needs it),
``state_dim`` (2: the dimension ``d`` of the hidden state, 1 to 16), ``noise`` (0.05, in
[0, 0.2]: the half-width of the uniform reward noise; each state component gets uniform
noise of half-width ``noise * (1 - rho)``, in units where ``|w| = 1`` before scaling, so
its accumulated effect does not grow as ``rho`` nears 1). The shared LLM options are
validated but unused.

## Version history

- v0: initial release.
"""

from __future__ import annotations

import re
import string
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.errors import check_int, check_number
from fbenv.feedback import Feedback, Source
from fbenv.truth import StepResult, Truth

LETTERS = string.ascii_uppercase
MAX_ARMS = len(LETTERS)
MAX_STATE_DIM = 16
MAX_NOISE = 0.2
MAX_RHO = 0.999  # beyond it the transient outlasts any horizon (and the range sums grow long)
WINDOW = 10  # rounds recalled in each outcome message
IDLE = -1  # info["arm"] of a round in which no arm was pulled
SCALE = (0.0, 1.0)
_TAIL = 1e-12  # the series of A^k are summed until rho^k falls below this
_ARM = re.compile(r"\barm\s*[:#]?\s*([a-z])\b", re.I)
_LONE = re.compile(r"^\W*([a-z])\W*$", re.I)

# Hidden-parameter design, in raw units before scaling (see make_dynamics).
_TRAP_THETA, _TRAP_GAIN = 1.0, 0.0  # the myopic arm: pays most now, adds nothing to the state
_INVEST_THETA, _INVEST_GAIN = (0.0, 0.3), 1.6  # the investment arm: pays little now, builds the state
_OTHER_THETA, _OTHER_GAIN = (0.0, 0.7), (0.0, 1.2)


@dataclass(frozen=True, eq=False)
class Dynamics:
    """The hidden linear system of an episode, already scaled to rewards in [0, 1]."""

    A: np.ndarray  # (d, d), symmetric, spectral radius rho
    B: np.ndarray  # (K, d): row a is the state input of arm a (column a of the paper's B)
    w: np.ndarray  # (d,): how the state pays
    theta: np.ndarray  # (K,): what each arm pays at once
    offset: float  # what a round pays with no arm pulled, beside w . x (folded into theta)
    gain: np.ndarray  # (K,): steady-state gain h_a of holding arm a
    best_arm: int  # argmax gain: the arm to hold
    myopic_arm: int  # argmax theta: the trap

    @property
    def best_gain(self) -> float:
        return float(self.gain[self.best_arm])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dynamics):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in ("A", "B", "w", "theta", "offset", "gain", "best_arm", "myopic_arm")
        )

    __hash__ = None  # type: ignore[assignment]


def make_dynamics(rng: np.random.Generator, n_arms: int, state_dim: int, rho: float, noise: float) -> Dynamics:
    """Draw a system whose myopic arm is a trap, from ``rng`` alone.

    In raw units: the trap arm pays ``theta = 1`` now and adds nothing to the steady
    state; an investment arm pays at most 0.3 now and adds 1.6 in steady state; the other
    arms fall in between. ``B`` is built so that each arm's steady-state contribution
    ``w . (I - A)^-1 B u_a`` is exactly its designed value (plus a random part that only
    moves the transient, kept at the scale of the designed part). Then rewards are scaled
    so that every reachable expected reward (any pull sequence from ``x = 0``, any noise)
    lies in ``[noise, 1 - noise]``: the extremes of ``sum_k w . A^k B u(t-1-k)`` are sums
    of per-lag extremes, since each lag's arm is chosen independently.
    """
    k, d = n_arms, state_dim
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))  # a uniformly random rotation
    lam = rho * np.concatenate([[1.0], rng.uniform(0.2, 1.0, d - 1)])
    A = (q * lam) @ q.T
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    resolvent = np.linalg.inv(np.eye(d) - A)  # (I - A)^-1, symmetric
    g = resolvent @ w  # steady-state value of a unit of input
    trap, invest = (int(i) for i in rng.choice(k, size=2, replace=False))
    theta = rng.uniform(*_OTHER_THETA, k)
    target = rng.uniform(*_OTHER_GAIN, k)
    theta[trap], target[trap] = _TRAP_THETA, _TRAP_GAIN
    theta[invest], target[invest] = rng.uniform(*_INVEST_THETA), _INVEST_GAIN
    # B's scale is (1 - rho) * target / |w|-ish: the random part, which moves only the
    # transient, is kept to the same scale so the transient stays comparable to the steady state
    z = 0.5 * (1.0 - rho) * rng.standard_normal((k, d))
    z -= np.outer(z @ g, g) / (g @ g)  # the part that leaves the steady state alone
    B = z + np.outer(target, g) / (g @ g)  # so that g . B[a] == target[a]
    # every reachable expected reward: theta_a + sum_k w . A^k (B u + xi), idle arm included
    n = 1 if rho == 0.0 else int(np.ceil(np.log(_TAIL) / np.log(rho))) + 1
    powers = lam[None, :] ** np.arange(n)[:, None]  # (n, d): eigenvalues of A^k
    wq = w @ q
    c = (powers * wq) @ (q.T @ B.T)  # (n, K): w . A^k B[a]
    state_noise = noise * (1.0 - rho) * np.abs((powers * wq) @ q.T).sum()
    low = np.minimum(c.min(axis=1), 0.0).sum() - state_noise
    high = np.maximum(c.max(axis=1), 0.0).sum() + state_noise + theta.max()
    scale = (1.0 - 2.0 * noise) / (high - low)
    theta = (theta - low) * scale + noise
    offset = float(noise - low * scale)
    w, g = w * scale, g * scale
    gain = theta + B @ g
    return Dynamics(
        A=A, B=B, w=w, theta=theta, offset=offset, gain=gain,
        best_arm=int(np.argmax(gain)), myopic_arm=int(np.argmax(theta)),
    )


def read_arm(text: str, n_arms: int) -> int | None:
    """The one arm a reply names (``Arm C``, ``arm c``, a lone ``C``), else None."""
    named = {m.upper() for m in _ARM.findall(text)}
    if not named:
        lone = _LONE.match(text)
        named = {lone.group(1).upper()} if lone else set()
    if len(named) != 1:
        return None
    i = LETTERS.index(named.pop())
    return i if i < n_arms else None


class DynamicalBanditEnv(FeedbackEnv):
    """Dynamical linear bandit: a hidden state carries each pull's effect (see module docs)."""

    roles = ()
    names = {"assistant": "Agent", "outcome": "Outcome"}
    keep_rounds = 1  # the instructions and the last round (the outcome recalls the recent ones)

    def __init__(
        self,
        n_arms: int = 3,
        horizon: int = 1000,
        rho: float = 0.7,
        state_dim: int = 2,
        noise: float = 0.05,
        **options: Any,
    ):
        self.n_arms = check_int("DynamicalBanditEnv(n_arms)", n_arms, 2, MAX_ARMS)
        self.horizon = check_int("DynamicalBanditEnv(horizon)", horizon, 1)
        self.rho = check_number("DynamicalBanditEnv(rho)", rho, 0.0, MAX_RHO)
        self.state_dim = check_int("DynamicalBanditEnv(state_dim)", state_dim, 1, MAX_STATE_DIM)
        self.noise = check_number("DynamicalBanditEnv(noise)", noise, 0.0, MAX_NOISE)
        self._state_noise = self.noise * (1.0 - self.rho)
        self.n_actions = self.n_arms
        self.n_features = self.n_arms + 3
        super().__init__(**options)
        self._replies = tuple(f"Arm {LETTERS[i]}." for i in range(self.n_arms))
        self._reply_index = {reply: i for i, reply in enumerate(self._replies)}
        self._x = np.zeros(self.state_dim)
        self._counts = [0] * self.n_arms

    # ------------------------------------------------------------------ hooks

    def new_task(self, rng: np.random.Generator) -> Dynamics:
        task = make_dynamics(rng, self.n_arms, self.state_dim, self.rho, self.noise)
        self._x = np.zeros(self.state_dim)
        self._counts = [0] * self.n_arms
        self._theta = task.theta.tolist()  # plain floats: cheaper per step than numpy scalars
        self._best = task.best_gain
        self._last_arm = IDLE
        self._last_reward = 0.0
        self._utility_sum = 0.0
        self._idle = 0
        self._recent: deque[str] = deque(maxlen=WINDOW)
        return task

    def opening(self) -> None:
        arms = ", ".join(LETTERS[: self.n_arms - 1]) + f" or {LETTERS[self.n_arms - 1]}"
        self.transcript.say(
            "system",
            f"Each round, pull one of {self.n_arms} arms: {arms}. Reply with the arm, e.g. "
            f"\"Arm {LETTERS[0]}.\". The game lasts {self.horizon} rounds; your total reward is what "
            "counts. Rewards depend on the arm you pull and on a hidden state that your past pulls "
            "have moved: the arm that pays most right now need not be the best one to keep pulling.",
        )

    def respond(self, text: str) -> StepResult:
        task = self.task
        arm = self._reply_index.get(text)
        if arm is None:
            arm = read_arm(text, self.n_arms)
        x = self._x
        if arm is None:
            mean = task.offset + float(task.w @ x)
            arm = IDLE
            self._idle += 1
        else:
            mean = self._theta[arm] + float(task.w @ x)
            self._counts[arm] += 1
        if self.noise:
            eps = self.np_random.uniform(-1.0, 1.0, self.state_dim + 1)
            # clipping only absorbs round-off: mean is in [noise, 1 - noise]
            reward = min(max(mean + self.noise * float(eps[0]), 0.0), 1.0)
            x = task.A @ x + self._state_noise * eps[1:]
        else:
            reward = mean
            x = task.A @ x
        if arm != IDLE:
            x += task.B[arm]
        self._x = x
        self._last_arm, self._last_reward = arm, reward
        self._utility_sum += mean
        self.sim.ledger.add(Feedback(Source.EXECUTION, scalar=reward, scale=SCALE))
        t = self.turn
        label = "-" if arm == IDLE else LETTERS[arm]
        self._recent.append(f"{label} {reward:.3f}")
        if arm == IDLE:
            said = (f"Round {t}: no arm named (reply like \"Arm {LETTERS[0]}.\"); nothing was pulled, "
                    f"the round paid {reward:.3f}.")
        else:
            said = f"Round {t}: Arm {label} paid {reward:.3f}."
        self._say(f"{said} Last {len(self._recent)} rounds, oldest first: {', '.join(self._recent)}.")
        best = self._best
        return StepResult(
            reward,
            truncated=t >= self.horizon,
            truth=Truth(mean, best, success=arm == task.best_arm),
            info={
                "arm": arm,
                "cumulative_regret": t * best - self._utility_sum,
                "best_arm_share": self._counts[task.best_arm] / t,
                "myopic_arm_share": self._counts[task.myopic_arm] / t,
                "idle_rounds": self._idle,
            },
        )

    def candidate_replies(self) -> tuple[str, ...]:
        return self._replies

    def features(self) -> np.ndarray:
        f = np.zeros(self.n_features, dtype=np.float32)
        f[0] = 1.0
        if self._last_arm != IDLE:
            f[1 + self._last_arm] = 1.0
        f[-2] = self._last_reward
        f[-1] = min(self.turn / self.horizon, 1.0)
        return f

    # ------------------------------------------------------------------ helpers

    def _say(self, text: str) -> None:
        """The outcome of a round (the transcript keeps only the last round: ``keep_rounds``)."""
        self.transcript.say("outcome", text)
