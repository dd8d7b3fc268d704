"""Bandit agents: one readable class per classic algorithm.

Conventions shared by every agent here (read these before wiring one to an env):

* **Actions** are arm indices ``0 .. n_actions - 1`` returned as a plain ``int`` (a
  Gymnasium ``Discrete(n)`` space with ``start=0``). The dueling agent is the exception:
  it returns a pair ``(i, j)`` (see :class:`DoubleThompsonSampling`).
* **Rewards** are expected in ``[0, 1]``, the range every confidence width, Beta update and
  importance weight below is calibrated for. Give ``reward_range=(lo, hi)`` to map
  another bounded scale linearly onto ``[0, 1]``. A reward outside the range raises
  :class:`~fbenv.errors.InvalidArgumentError` (values within 1e-9 are clipped, to absorb
  float round-off) instead of silently corrupting the estimates.
* **Observations** are ignored by the non-contextual agents; :class:`LinUCB` reads them
  as feature vectors. ``terminated`` / ``truncated`` are ignored: a bandit's knowledge
  carries over episode boundaries (one-step episodes are the common case).
* **Randomness** comes only from ``self.np_random`` (seeded by ``reset(seed)``), so a seed
  fixes the whole action sequence; ``reset`` also forgets everything learned.
* ``update`` must follow the ``act`` that produced its action (EXP3's importance weights
  and DynLinUCB's epochs rely on it); the index-based agents also accept logged data.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from fbenv.agents.base import Agent, Transition
from fbenv.errors import InvalidArgumentError, check_int, check_number, check_type

__all__ = [
    "EpsilonGreedy",
    "UCB1",
    "ThompsonSampling",
    "EXP3",
    "LinUCB",
    "DoubleThompsonSampling",
    "DynLinUCB",
]

_TOL = 1e-9  # rewards this far outside the range are float round-off and get clipped


# --------------------------------------------------------------------------- helpers


def _check_reward_range(what: str, value: object) -> tuple[float, float]:
    if not (isinstance(value, Sequence) and len(value) == 2):
        raise InvalidArgumentError(f"{what}: expects a (low, high) pair, actual {value!r}")
    low = check_number(f"{what}[0]", value[0])
    high = check_number(f"{what}[1]", value[1])
    if not low < high:
        raise InvalidArgumentError(f"{what}: expects low < high, actual {value!r}")
    return low, high


def _as_index(what: str, value: object, n: int) -> int:
    """An arm index from an int, a numpy integer or a one-element integer array."""
    if isinstance(value, np.ndarray) and value.size == 1 and np.issubdtype(value.dtype, np.integer):
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(
            f"{what}: expects an arm index int in [0, {n - 1}], actual {type(value).__name__} {value!r}"
        )
    if not 0 <= value < n:
        raise InvalidArgumentError(f"{what}: expects an arm index in [0, {n - 1}], actual {value!r}")
    return int(value)


def _argmax(values: np.ndarray, rng: np.random.Generator, what: str = "bandit") -> int:
    """Index of the largest value, ties broken at random (a fixed order would bias early play).

    A NaN score is an error, not a choice: NaN compares unequal to everything, so it
    would otherwise leave no arm to pick."""
    if np.isnan(values).any():
        raise InvalidArgumentError(
            f"{what}: expects finite arm scores, actual {values.tolist()} (features or rewards too large for float64?)"
        )
    best = np.flatnonzero(values == values.max())
    return int(best[0] if best.size == 1 else rng.choice(best))


class _BanditAgent(Agent):
    """Shared plumbing: argument checks, reward scaling, ``reset`` -> ``_forget``."""

    def __init__(self, n_actions: int, reward_range: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        cls = type(self).__name__
        self.n_actions = check_int(f"{cls}(n_actions)", n_actions, 1)
        self.reward_range = _check_reward_range(f"{cls}(reward_range)", reward_range)

    def reset(self, seed: int | None = None) -> None:
        """Reseed and forget every statistic learned so far."""
        super().reset(seed)
        self._forget()

    def _forget(self) -> None:
        raise NotImplementedError

    def _action(self, action: object) -> int:
        return _as_index(f"{type(self).__name__}.update: action", action, self.n_actions)

    def _reward(self, reward: object) -> float:
        """The reward mapped from ``reward_range`` onto [0, 1]; out of range is an error."""
        if isinstance(reward, np.ndarray) and reward.size == 1:
            reward = reward.reshape(()).item()
        if not isinstance(reward, (numbers.Real, np.bool_)):
            raise InvalidArgumentError(
                f"{type(self).__name__}.update: expects a real reward, "
                f"actual {type(reward).__name__} {reward!r}"
            )
        low, high = self.reward_range
        scaled = (float(reward) - low) / (high - low)
        if not (math.isfinite(scaled) and -_TOL <= scaled <= 1.0 + _TOL):
            raise InvalidArgumentError(
                f"{type(self).__name__}.update: expects a reward in [{low:g}, {high:g}] "
                f"(pass reward_range=(low, high) for another scale), actual {reward!r}"
            )
        return min(max(scaled, 0.0), 1.0)


# --------------------------------------------------------------------------- K-armed


class EpsilonGreedy(_BanditAgent):
    """Play the best sample mean, but a uniformly random arm with probability ε.

    The simplest agent that learns, and the baseline every other one must beat. With
    ``decay=None`` ε is constant: regret keeps growing by about ε x (mean gap) per step,
    which is the price of staying alert to drifting feedback. With ``decay=d``, after t
    updates ε_t = ε / (1 + d t), a 1/t schedule in the style of Auer et al. (2002). Their
    logarithmic regret bound holds only when the schedule's constant is large enough for
    the smallest gap between arm means (ε_t >= c K / (Δ² t) with c > 5), which this agent
    does not know: decay too fast and a wrong arm can lock in (linear regret); decay too
    slowly and regret grows like the constant-ε case for longer. Untried arms are played
    first so one lucky reward cannot lock in an arm before the others were seen.
    """

    name = "epsilon_greedy"

    def __init__(
        self,
        n_actions: int,
        epsilon: float = 0.1,
        decay: float | None = None,
        reward_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(n_actions, reward_range)
        self.epsilon = check_number("EpsilonGreedy(epsilon)", epsilon, 0.0, 1.0)
        self.decay = None if decay is None else check_number(
            "EpsilonGreedy(decay)", decay, 0.0, low_open=True
        )
        self._forget()

    def _forget(self) -> None:
        self.counts = np.zeros(self.n_actions, dtype=np.int64)
        self.values = np.zeros(self.n_actions)  # sample mean reward per arm
        self.t = 0

    @property
    def current_epsilon(self) -> float:
        """The exploration probability of the next ``act``."""
        return self.epsilon if self.decay is None else self.epsilon / (1.0 + self.decay * self.t)

    def act(self, observation: Any, info: dict) -> int:
        untried = np.flatnonzero(self.counts == 0)
        if untried.size:
            return int(self.np_random.choice(untried))
        if self.np_random.random() < self.current_epsilon:
            return int(self.np_random.integers(self.n_actions))
        return _argmax(self.values, self.np_random)

    def update(self, transition: Transition) -> None:
        a, r = self._action(transition.action), self._reward(transition.reward)
        self.t += 1
        self.counts[a] += 1
        self.values[a] += (r - self.values[a]) / self.counts[a]


class UCB1(_BanditAgent):
    """Optimism in the face of uncertainty: play argmax of mean + c sqrt(ln t / n_a).

    Exploration is directed at arms whose mean is still uncertain rather than spread
    uniformly as in ε-greedy, which gives O(log T) regret with no schedule to tune
    (Auer, Cesa-Bianchi & Fischer 2002). The default ``c = sqrt(2)`` is exactly their
    UCB1 for rewards in [0, 1]; smaller c explores less (often better in practice, no
    longer covered by the proof). Each arm is played once before the index is used.
    """

    name = "ucb1"

    def __init__(
        self,
        n_actions: int,
        c: float = math.sqrt(2.0),
        reward_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(n_actions, reward_range)
        self.c = check_number("UCB1(c)", c, 0.0)
        self._forget()

    def _forget(self) -> None:
        self.counts = np.zeros(self.n_actions, dtype=np.int64)
        self.values = np.zeros(self.n_actions)
        self.t = 0

    def act(self, observation: Any, info: dict) -> int:
        untried = np.flatnonzero(self.counts == 0)
        if untried.size:
            return int(self.np_random.choice(untried))
        index = self.values + self.c * np.sqrt(math.log(self.t) / self.counts)
        return _argmax(index, self.np_random)

    def update(self, transition: Transition) -> None:
        a, r = self._action(transition.action), self._reward(transition.reward)
        self.t += 1
        self.counts[a] += 1
        self.values[a] += (r - self.values[a]) / self.counts[a]


class ThompsonSampling(_BanditAgent):
    """Beta-Bernoulli Thompson sampling: play the arm whose posterior draw is largest.

    Each arm's mean has a Beta(α, β) posterior; sampling from it explores exactly as
    much as the remaining uncertainty warrants (asymptotically optimal for Bernoulli
    rewards, Agrawal & Goyal 2012). A reward r in [0, 1] is added as α += r, β += 1 - r
    (the fractional update, lower variance); ``binarize=True`` instead draws a Bernoulli(r)
    success first, the trick under which the Bernoulli regret bound holds for any
    [0, 1]-valued reward (it uses ``np_random`` in ``update``).
    """

    name = "thompson_sampling"

    def __init__(
        self,
        n_actions: int,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        binarize: bool = False,
        reward_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(n_actions, reward_range)
        self.prior_alpha = check_number("ThompsonSampling(prior_alpha)", prior_alpha, 0.0, low_open=True)
        self.prior_beta = check_number("ThompsonSampling(prior_beta)", prior_beta, 0.0, low_open=True)
        check_type("ThompsonSampling(binarize)", binarize, bool)
        self.binarize = binarize
        self._forget()

    def _forget(self) -> None:
        self.alpha = np.full(self.n_actions, self.prior_alpha)
        self.beta = np.full(self.n_actions, self.prior_beta)

    def act(self, observation: Any, info: dict) -> int:
        return _argmax(self.np_random.beta(self.alpha, self.beta), self.np_random)

    def update(self, transition: Transition) -> None:
        a, r = self._action(transition.action), self._reward(transition.reward)
        if self.binarize:
            r = float(self.np_random.random() < r)
        self.alpha[a] += r
        self.beta[a] += 1.0 - r


class EXP3(_BanditAgent):
    """Exponential weights for adversarial bandits (Auer et al. 2002).

    No stochastic assumption: rewards in [0, 1] may be chosen by an adversary (or by a
    simulated person whose mood drifts), and regret against the best fixed arm is still
    O(sqrt(T K ln K)) for a tuned γ (:meth:`tuned_gamma`). Each step plays
    p_i = (1 - γ) w_i / Σw + γ / K and feeds back the unbiased importance-weighted
    estimate r / p_a, so ``update`` must follow the ``act`` that chose its action.
    Weights are kept in log space so long runs cannot overflow.
    """

    name = "exp3"

    def __init__(
        self,
        n_actions: int,
        gamma: float = 0.1,
        reward_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(n_actions, reward_range)
        self.gamma = check_number("EXP3(gamma)", gamma, 0.0, 1.0, low_open=True)
        self._forget()

    @staticmethod
    def tuned_gamma(n_actions: int, horizon: int) -> float:
        """γ = min(1, sqrt(K ln K / ((e - 1) T))), the choice behind the regret bound."""
        k = check_int("EXP3.tuned_gamma(n_actions)", n_actions, 1)
        t = check_int("EXP3.tuned_gamma(horizon)", horizon, 1)
        return min(1.0, math.sqrt(k * math.log(max(k, 2)) / ((math.e - 1.0) * t)))

    def _forget(self) -> None:
        self.log_weights = np.zeros(self.n_actions)

    @property
    def probabilities(self) -> np.ndarray:
        """The distribution the next ``act`` samples from."""
        w = np.exp(self.log_weights - self.log_weights.max())
        return (1.0 - self.gamma) * w / w.sum() + self.gamma / self.n_actions

    def act(self, observation: Any, info: dict) -> int:
        return int(self.np_random.choice(self.n_actions, p=self.probabilities))

    def update(self, transition: Transition) -> None:
        a, r = self._action(transition.action), self._reward(transition.reward)
        estimate = r / self.probabilities[a]  # weights only change here, so p is act's p
        self.log_weights[a] += self.gamma * estimate / self.n_actions


# --------------------------------------------------------------------------- contextual


class LinUCB(_BanditAgent):
    """Disjoint LinUCB (Li et al. 2010): one ridge regression of reward on features per arm.

    When the best arm depends on the context (who the simulated person is, what they
    asked) a context-free agent can only find the best arm *on average*; LinUCB learns
    E[r | x, a] = θ_a · x and plays argmax θ̂_a · x + α sqrt(x^T A_a^{-1} x).

    The observation is the feature vector: shape ``(n_features,)`` (shared by all arms,
    any shape with that many entries is flattened) or ``(n_actions, n_features)`` (row a
    describes arm a). ``update`` uses ``transition.observation``, the context the action
    was chosen in. Include a constant feature if rewards have an offset. ``A_a^{-1}`` is
    kept up to date with Sherman-Morrison, O(d^2) per step. At large feature scales (say
    1e8) its round-off can cost the inverse its positive-definiteness, which shows as a
    negative ``x^T A_a^{-1} x``; that arm's inverse is then recomputed from ``A_a`` itself
    with its eigenvalues clamped at ``ridge`` (their true lower bound), and the width is
    clamped at 0. Scores that are still NaN raise :class:`~fbenv.errors.InvalidArgumentError`.
    """

    name = "linucb"

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        alpha: float = 1.0,
        ridge: float = 1.0,
        reward_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(n_actions, reward_range)
        self.n_features = check_int("LinUCB(n_features)", n_features, 1)
        self.alpha = check_number("LinUCB(alpha)", alpha, 0.0)
        self.ridge = check_number("LinUCB(ridge)", ridge, 0.0, low_open=True)
        self._forget()

    def _forget(self) -> None:
        eye = np.eye(self.n_features)
        self.A = np.repeat(self.ridge * eye[None], self.n_actions, axis=0)  # (K, d, d): ridge I + sum x x^T
        self.A_inv = np.repeat(eye[None] / self.ridge, self.n_actions, axis=0)  # (K, d, d)
        self.b = np.zeros((self.n_actions, self.n_features))  # (K, d)

    def _features(self, observation: Any) -> np.ndarray:
        """The (n_actions, n_features) matrix of per-arm feature vectors."""
        k, d = self.n_actions, self.n_features
        try:
            x = np.asarray(observation, dtype=float)
        except (TypeError, ValueError) as error:
            raise InvalidArgumentError(
                f"LinUCB: expects a numeric observation, actual {type(observation).__name__}"
            ) from error
        if x.shape == (k, d):
            features = x
        elif x.size == d:
            features = np.broadcast_to(x.reshape(d), (k, d))
        else:
            raise InvalidArgumentError(
                f"LinUCB: expects an observation of shape ({d},) or ({k}, {d}), actual shape {x.shape}"
            )
        if not np.all(np.isfinite(features)):
            raise InvalidArgumentError("LinUCB: expects finite features, actual NaN or inf")
        return features

    def act(self, observation: Any, info: dict) -> int:
        x = self._features(observation)
        with np.errstate(over="ignore", invalid="ignore"):
            quad = np.einsum("ki,kij,kj->k", x, self.A_inv, x)
            for a in np.flatnonzero(~(quad >= 0.0)):  # round-off broke this inverse: rebuild it
                self._rebuild_inverse(int(a))
                quad[a] = x[a] @ self.A_inv[a] @ x[a]
            theta = np.einsum("kij,kj->ki", self.A_inv, self.b)
            scores = np.sum(theta * x, axis=1) + self.alpha * np.sqrt(np.maximum(quad, 0.0))
        return _argmax(scores, self.np_random, "LinUCB.act")

    def update(self, transition: Transition) -> None:
        a, r = self._action(transition.action), self._reward(transition.reward)
        x = self._features(transition.observation)[a]
        a_inv_x = self.A_inv[a] @ x
        with np.errstate(over="ignore", invalid="ignore"):
            quad, outer = x @ a_inv_x, np.outer(x, x)
        if not np.all(np.isfinite(outer)):
            raise InvalidArgumentError(
                "LinUCB.update: expects features whose products stay finite in float64, "
                f"actual max |x| {np.abs(x).max():.3g}"
            )
        self.A[a] += outer
        if quad >= 0.0 and np.isfinite(quad):
            self.A_inv[a] -= np.outer(a_inv_x, a_inv_x) / (1.0 + quad)
        else:  # the inverse had already lost positive-definiteness: Sherman-Morrison would amplify it
            self._rebuild_inverse(a)
        self.b[a] += r * x

    def _rebuild_inverse(self, a: int) -> None:
        """A_a^{-1} from A_a, its eigenvalues clamped at ``ridge`` (A_a's true lower bound)."""
        w, v = np.linalg.eigh(self.A[a])
        self.A_inv[a] = (v / np.maximum(w, self.ridge)) @ v.T


# --------------------------------------------------------------------------- dueling


class DoubleThompsonSampling(Agent):
    """Double Thompson Sampling for dueling bandits (Wu & Liu 2016).

    People compare more reliably than they score, so the feedback here is which of two
    arms won. B[i, j] counts wins of i over j. The first arm is Thompson-sampled among
    the arms that could still be the Copeland winner (RUCB upper bounds with exponent
    ``alpha``); the second is the arm with the largest Thompson sample of P(i beats first)
    among the arms not already known to *beat* the first (lower bound of P(i beats
    first) <= 1/2, Wu & Liu's rule: a duel whose outcome is known teaches nothing); the
    first itself competes with a sample of exactly 1/2. Once the winner is clear, other
    arms' samples fall below 1/2 and it mostly duels itself, the no-regret steady state.

    **Convention.** ``act`` returns a tuple ``(i, j)`` of ints (``i`` may equal ``j``).
    ``update(transition)`` reads ``transition.action`` as that pair (a tuple, list or
    length-2 array, e.g. from ``MultiDiscrete([K, K])``) and the outcome from
    ``transition.info["preference"]``: ``0`` if ``i`` won, ``1`` if ``j`` won, i.e. the
    index *within the pair*, as in :attr:`fbenv.feedback.Feedback.preference`. Without
    that key the first record in ``info["feedback"]`` whose ``preference`` is not None is
    used. ``transition.reward`` is ignored. ``update_duel(winner, loser)`` is the direct
    form. A self-duel (i == j) carries no information and only advances time.
    """

    name = "double_thompson_sampling"

    def __init__(self, n_arms: int, alpha: float = 0.51) -> None:
        super().__init__()
        self.n_arms = check_int("DoubleThompsonSampling(n_arms)", n_arms, 2)
        self.alpha = check_number("DoubleThompsonSampling(alpha)", alpha, 0.0, low_open=True)
        self._forget()

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._forget()

    def _forget(self) -> None:
        self.wins = np.zeros((self.n_arms, self.n_arms))  # wins[i, j]: times i beat j
        self.t = 0  # duels observed

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """RUCB-style upper and lower confidence bounds on P(i beats j)."""
        n = self.wins + self.wins.T
        seen = n > 0
        safe_n = np.where(seen, n, 1.0)
        mean = self.wins / safe_n
        radius = np.sqrt(self.alpha * math.log(self.t + 1) / safe_n)
        upper = np.where(seen, mean + radius, 1.0)
        lower = np.where(seen, mean - radius, 0.0)
        np.fill_diagonal(upper, 0.5)
        np.fill_diagonal(lower, 0.5)
        return upper, lower

    def act(self, observation: Any, info: dict) -> tuple[int, int]:
        k, rng = self.n_arms, self.np_random
        upper, lower = self._bounds()
        # Phase 1: candidates = arms with the largest optimistic Copeland score.
        copeland_upper = (upper > 0.5).sum(axis=1)
        candidates = np.flatnonzero(copeland_upper == copeland_upper.max())
        theta = np.full((k, k), 0.5)
        iu = np.triu_indices(k, 1)
        theta[iu] = rng.beta(self.wins[iu] + 1.0, self.wins.T[iu] + 1.0)
        theta.T[iu] = 1.0 - theta[iu]
        sampled_copeland = (theta > 0.5).sum(axis=1)[candidates]
        first = int(candidates[_argmax(sampled_copeland, rng)])
        # Phase 2: the strongest plausible challenger to `first` (itself if none is left).
        challenger = rng.beta(self.wins[:, first] + 1.0, self.wins[first, :] + 1.0)
        challenger[first] = 0.5
        challenger[lower[:, first] > 0.5] = -np.inf  # known to beat `first`: not a question
        second = _argmax(challenger, rng)
        return first, second

    def update_duel(self, winner: int, loser: int) -> None:
        """Record that ``winner`` beat ``loser``."""
        w = _as_index("DoubleThompsonSampling.update_duel: winner", winner, self.n_arms)
        l_ = _as_index("DoubleThompsonSampling.update_duel: loser", loser, self.n_arms)
        self.t += 1
        if w != l_:
            self.wins[w, l_] += 1.0

    def update(self, transition: Transition) -> None:
        i, j = self._pair(transition.action)
        preference = self._preference(transition.info)
        self.update_duel(*((i, j) if preference == 0 else (j, i)))

    def _pair(self, action: Any) -> tuple[int, int]:
        pair = np.asarray(action).reshape(-1) if not isinstance(action, (tuple, list)) else action
        if len(pair) != 2:
            raise InvalidArgumentError(
                f"DoubleThompsonSampling.update: expects action as a pair (i, j), actual {action!r}"
            )
        what = "DoubleThompsonSampling.update: action"
        return _as_index(what, pair[0], self.n_arms), _as_index(what, pair[1], self.n_arms)

    @staticmethod
    def _preference(info: Any) -> int:
        info = info if isinstance(info, dict) else {}
        preference = info.get("preference")
        if preference is None:
            records = info.get("feedback") or ()
            preference = next(
                (p for p in (getattr(f, "preference", None) for f in records) if p is not None), None
            )
        if isinstance(preference, np.ndarray) and preference.size == 1:
            preference = preference.reshape(()).item()
        if isinstance(preference, (bool, np.bool_)) or preference not in (0, 1):
            raise InvalidArgumentError(
                "DoubleThompsonSampling.update: expects info['preference'] (or a Feedback in "
                "info['feedback'] with .preference) equal to 0 if the first arm won or 1 if the "
                f"second won, actual {preference!r}"
            )
        return int(preference)


# --------------------------------------------------------------------------- dynamical


class DynLinUCB(_BanditAgent):
    """DynLin-UCB for dynamical linear bandits (Mussi, Metelli & Restelli, ICML 2023).

    A hidden state carries each action's effect forward: x_{t+1} = A x_t + B u_t + noise,
    r_t = ω · x_t + θ · u_t + noise, with u_t the played arm's vector and the spectral
    radius of A at most ``rho`` < 1. A myopic agent chases the immediate reward θ · u;
    what matters is the steady-state gain h = θ + B^T (I - A)^{-T} ω of holding an
    action. DynLin-UCB therefore works in epochs: epoch m commits to one arm for
    H_m = 1 + floor(ln m / ln(1/rho)) steps (the window after which the transient from
    earlier actions has shrunk by rho^{H_m} <= 1/m), regresses only the epoch's last
    reward on u (a ridge estimate ĥ of h) and starts the next epoch with the optimistic
    arm argmax ĥ · u + β ||u||_{V^{-1}}. ``rho = 0`` recovers plain LinUCB over arms.

    Arm vectors are rows of ``action_features`` (shape ``(n_actions, n_features)``);
    by default one-hot, which needs ``n_features == n_actions``. The state is hidden, so
    the observation is ignored; the interaction is one continuing stream.

    **Approximation.** The paper's radius β_t = c1 sqrt(λ) + c2 / sqrt(λ) ln(e(t+1)) +
    sqrt(2 σ̄^2 (ln(1/δ) + d/2 ln(1 + t U^2 / (d λ)))) needs bounds on ω, θ, B, Φ(A) and
    the noise. Here β_t = ``alpha`` * sqrt(2 ln(t+1) + d ln(1 + n / (d λ))) with t the
    step, n the regression samples so far and ``alpha`` standing in for σ̄ (1/2 suits
    rewards in [0, 1]); the two bias terms are left to the 1/m decay of the transient.
    """

    name = "dynlinucb"

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        action_features: Any = None,
        rho: float = 0.5,
        alpha: float = 0.5,
        ridge: float = 1.0,
        reward_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(n_actions, reward_range)
        k = self.n_actions
        self.n_features = d = check_int("DynLinUCB(n_features)", n_features, 1)
        self.rho = check_number("DynLinUCB(rho)", rho, 0.0, 1.0, high_open=True)
        self.alpha = check_number("DynLinUCB(alpha)", alpha, 0.0)
        self.ridge = check_number("DynLinUCB(ridge)", ridge, 0.0, low_open=True)
        if action_features is None:
            if d != k:
                raise InvalidArgumentError(
                    f"DynLinUCB(action_features): expects an ({k}, {d}) array, or None for one-hot "
                    f"arms with n_features == n_actions, actual None with n_features={d}"
                )
            action_features = np.eye(k)
        try:
            features = np.asarray(action_features, dtype=float)
        except (TypeError, ValueError) as error:
            raise InvalidArgumentError(
                f"DynLinUCB(action_features): expects a numeric ({k}, {d}) array, "
                f"actual {type(action_features).__name__}"
            ) from error
        if features.shape != (k, d) or not np.all(np.isfinite(features)):
            raise InvalidArgumentError(
                f"DynLinUCB(action_features): expects a finite ({k}, {d}) array, actual shape {features.shape}"
            )
        self.action_features = features
        self._forget()

    def epoch_length(self, m: int) -> int:
        """H_m: how long epoch m (1-based) holds its arm."""
        if self.rho == 0.0:
            return 1
        return 1 + math.floor(math.log(m) / math.log(1.0 / self.rho))

    def _forget(self) -> None:
        self.V = self.ridge * np.eye(self.n_features)
        self.b = np.zeros(self.n_features)
        self.h_hat = np.zeros(self.n_features)  # estimated steady-state gain
        self.t = 0  # steps taken
        self.n_samples = 0  # completed epochs = regression samples
        self.epoch = 0  # epochs started
        self.arm: int | None = None  # the current epoch's arm
        self.steps_left = 0  # steps of the current epoch still to play

    def _optimistic_arm(self) -> int:
        d, u = self.n_features, self.action_features
        beta = self.alpha * math.sqrt(
            2.0 * math.log(self.t + 1) + d * math.log(1.0 + self.n_samples / (d * self.ridge))
        )
        v_inv = np.linalg.inv(self.V)
        width = np.sqrt(np.einsum("ki,ij,kj->k", u, v_inv, u))
        return _argmax(u @ self.h_hat + beta * width, self.np_random)

    def act(self, observation: Any, info: dict) -> int:
        if self.steps_left == 0:
            self.epoch += 1
            self.arm = self._optimistic_arm()
            self.steps_left = self.epoch_length(self.epoch)
        return self.arm  # type: ignore[return-value]

    def update(self, transition: Transition) -> None:
        a, r = self._action(transition.action), self._reward(transition.reward)
        if self.steps_left == 0 or a != self.arm:
            raise InvalidArgumentError(
                f"DynLinUCB.update: expects the action of the last act() (epoch {self.epoch}, "
                f"arm {self.arm}, {self.steps_left} steps left), actual {a}"
            )
        self.t += 1
        self.steps_left -= 1
        if self.steps_left == 0:  # end of the window: the reward is close to steady state
            u = self.action_features[a]
            self.V += np.outer(u, u)
            self.b += r * u
            self.h_hat = np.linalg.solve(self.V, self.b)
            self.n_samples += 1
