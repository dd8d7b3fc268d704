"""The base of every single-agent fbenv task: ``reset`` and ``step`` live here.

A task subclasses :class:`FeedbackEnv`, declares its own kwargs in ``__init__`` (the
shared ones arrive as ``**options`` and are validated into :attr:`options`), and writes
hooks:

- :meth:`new_task` draws the hidden task from the rng (``reset(seed=...)`` only);
- :meth:`opening` writes the first turns into :attr:`transcript`;
- :meth:`respond` reacts to the agent's text (asking roles through :attr:`sim`) and
  returns a :class:`~fbenv.truth.StepResult`;
- :meth:`candidate_replies` lists what each discrete action says;
- :meth:`features` encodes the discrete observation;
- :meth:`extra_info` adds the task's own per-step info.

The base does the rest the same way in every task: spaces and action checking (the
:class:`~fbenv.interface.Interface` in :attr:`view`), seeds, usage and records (the
:class:`~fbenv.sim.Simulation`), ``info`` (feedback, truth, messages, seeds, usage), the
parse- and backend-failure policies (truncation with ``info["feedback_error"]``, never a
silent reward), rendering and ``close``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from fbenv import truth as keys
from fbenv.episodes import EpisodeTally
from fbenv.errors import InvalidArgumentError
from fbenv.interface import Interface
from fbenv.options import INTERFACES, SIMULATORS, Options
from fbenv.registry import spec_for_class
from fbenv.roles import FeedbackFailure, ParseStats, Role
from fbenv.sim import Simulation
from fbenv.transcript import Transcript
from fbenv.truth import StepResult, Truth


def own_kwargs(cls: type) -> list[str]:
    """The keyword arguments a task's ``__init__`` declares itself (for error messages)."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass.__module__.startswith("gymnasium") or klass is object:
            continue
        for name, p in inspect.signature(init).parameters.items():
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in names:
                names.append(name)
    return names


def check_options(cls: type, given: Mapping[str, Any], roles: Sequence[Role]) -> tuple[Options, Any]:
    """Validate the shared options of task class ``cls`` against its TaskSpec (if registered)."""
    task_spec = spec_for_class(cls)
    options = Options.check(
        cls.__name__, given, own_kwargs=own_kwargs(cls),
        interfaces=task_spec.interfaces if task_spec else INTERFACES,
        simulators=task_spec.simulators if task_spec else SIMULATORS,
        roles=[r.key for r in roles], render_modes=cls.metadata.get("render_modes", ()),
    )
    return options, task_spec


class FeedbackEnv(gym.Env):
    """A single-agent task whose feedback comes from simulated people (see module docs)."""

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 1}
    #: the roles the task asks (their ``key`` is what ``simulator={...}`` names)
    roles: ClassVar[tuple[Role, ...]] = ()
    #: the seat the learner plays, and the display names of the speakers in rendered text
    learner: ClassVar[str] = "assistant"
    names: ClassVar[Mapping[str, str]] = {}
    #: the discrete view: ``Discrete(n_actions)`` and ``Box(low, high, (n_features,))``
    n_actions: ClassVar[int] = 0
    n_features: ClassVar[int] = 0
    feature_bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    max_obs_chars: ClassVar[int] = 8192
    max_action_chars: ClassVar[int] = 2000
    #: keep only the ``system`` turns and the last N rounds of the transcript (None: all);
    #: long episodes set it so a step's cost and an LLM policy's context stay bounded
    keep_rounds: ClassVar[int | None] = None

    def __init__(self, **options: Any):
        self.options, self.task_spec = check_options(type(self), options, self.roles)
        self.render_mode = self.options.render_mode
        self.interface = self.options.interface  # the view's name, as passed
        self.view = Interface.of(
            self.options.interface, n_actions=self.n_actions, n_features=self.n_features,
            low=self.feature_bounds[0], high=self.feature_bounds[1], max_obs_chars=self.max_obs_chars,
            max_action_chars=self.max_action_chars, owner=type(self).__name__,
        )
        self.observation_space = self.view.observation_space
        self.action_space = self.view.action_space
        self.sim = Simulation(self.options, rng=lambda: self.np_random)
        self.transcript = Transcript(self.keep_rounds)
        self.task: Any = None
        self.turn = 0
        self._failed_at_reset: str | None = None
        self._tally = EpisodeTally()
        self._closed = False

    # ------------------------------------------------------------------ hooks

    def new_task(self, rng: np.random.Generator) -> Any:
        """Draw the hidden task of an episode (comparable with ``==``) from ``rng`` alone."""
        raise NotImplementedError(f"{type(self).__name__} must implement new_task()")

    def opening(self) -> None:
        """Write the episode's first turns into ``self.transcript`` (roles may be asked)."""

    def respond(self, text: str) -> StepResult:
        """React to the agent's turn ``text`` (already in the transcript)."""
        raise NotImplementedError(f"{type(self).__name__} must implement respond()")

    def candidate_replies(self) -> Sequence[str]:
        """What each discrete action says in the current state."""
        raise NotImplementedError(f"{type(self).__name__} must implement candidate_replies()")

    def candidate_reply(self, index: int) -> str:
        """What discrete action ``index`` says now: by default the ``index``-th of
        :meth:`candidate_replies`; a task whose replies are costly to write overrides it to write
        only the one chosen (it must equal ``candidate_replies()[index]``)."""
        return self.candidate_replies()[index]

    def features(self) -> np.ndarray:
        """The discrete view's observation, shape ``(n_features,)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement features()")

    def text_observation(self) -> str:
        """The text view's observation: the learner's view of the transcript, context first."""
        return self.transcript.render(self.names, seat=self.learner, include_system=True)

    def extra_info(self) -> dict[str, Any]:
        """The task's own info keys, at reset and every step."""
        return {}

    # ------------------------------------------------------------------ the template

    @property
    def usage(self):
        return self.sim.episode_usage

    @property
    def parse_stats(self) -> ParseStats:
        return self.sim.stats

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise InvalidArgumentError(f"{type(self).__name__}.reset: expects no options, actual {sorted(options)}")
        self.sim.begin_episode()
        self._tally = EpisodeTally(seed, self.task_spec.outcomes if self.task_spec else ())
        self.transcript = Transcript(self.keep_rounds)
        self.turn = 0
        self.task = self.new_task(self.np_random)
        self._failed_at_reset = None
        try:
            self.opening()
        except FeedbackFailure as exc:  # the first step will truncate, paying nothing
            self._failed_at_reset = str(exc)
        info = self._info(Truth(), {})
        if self._failed_at_reset:
            info[keys.FEEDBACK_ERROR] = self._failed_at_reset
        return self._observe(), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self._step(action)
        self._tally.add(reward, terminated, truncated, info)
        if terminated or truncated:
            info[keys.EPISODE] = self._tally.result().as_info()
        return obs, reward, terminated, truncated, info

    def _step(self, action: Any):
        if self.task is None:
            raise InvalidArgumentError(f"{type(self).__name__}.step: call reset() before step()")
        text, notes = self.view.action_text(action, self.candidate_reply)
        self.sim.begin_step()
        if self._failed_at_reset:
            info = self._info(Truth(), notes)
            info[keys.FEEDBACK_ERROR] = self._failed_at_reset
            return self._observe(), 0.0, False, True, info
        self.transcript.learner_turn_begins()
        self.transcript.say(self.learner, text)
        self.turn += 1
        try:
            result = self.respond(text)
        except FeedbackFailure as exc:
            info = self._info(Truth(), notes)
            info[keys.FEEDBACK_ERROR] = str(exc)
            return self._observe(), 0.0, False, True, info
        if result.terminated and result.truncated:
            raise InvalidArgumentError(f"{type(self).__name__}.respond: a step is terminated or truncated, not both")
        info = self._info(result.truth, {**notes, **result.info})
        return self._observe(), float(result.reward), bool(result.terminated), bool(result.truncated), info

    def _observe(self) -> Any:
        return self.view.observe(self.text_observation, self.features)

    def _info(self, truth: Truth, extra: Mapping[str, Any]) -> dict[str, Any]:
        ledger = self.sim.ledger
        info: dict[str, Any] = {
            keys.FEEDBACK: tuple(ledger.records),
            **truth.as_info(),
            keys.TURN: self.turn,
            keys.MESSAGES: self.transcript.as_info(self.learner),
            keys.LLM_SEEDS: tuple(ledger.seeds),
            keys.USAGE: self.sim.episode_usage,  # the episode's so far
        }
        info.update(self.extra_info())
        info.update(extra)
        return info

    # ------------------------------------------------------------------ views

    def hidden_task(self) -> Any:
        """The hidden task drawn at the last reset (the checker compares both views' tasks)."""
        return self.task

    def get_action_meanings(self) -> list[str] | None:
        """What each discrete action says now (``fbenv play``), in Atari's style."""
        return None if self.task is None else list(self.candidate_replies())

    def render(self) -> str | None:
        if self.render_mode == "ansi" and self.task is not None:
            return self.text_observation()
        return None

    def close(self) -> None:
        # The backend is shared by every env naming the same spec: it is not ours to close.
        self._closed = True
        super().close()
