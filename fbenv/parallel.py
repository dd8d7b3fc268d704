"""The base of every multi-agent fbenv task: a PettingZoo ``ParallelEnv``.

It owns the same pieces as the single-agent base: one :class:`~fbenv.sim.Simulation`
(seeds, usage, records, failure policies), one :class:`~fbenv.transcript.Transcript`
(each seat sees its own chat view), one :class:`~fbenv.interface.Interface` per seat and
the :class:`~fbenv.truth.Truth` record. Seats have fixed names (``actor_0``,
``critic_0``...); ``learnable=`` names the seats the learner plays, and every other seat
is played by its role (``seat_roles``), rule or LLM, all of them asked in one batched call
per step (simultaneous play, the default; see turn-based play below). A text observation is ``Dict({"text": ...})`` (PettingZoo's AEC test reads
``.dtype``); AEC comes from ``pettingzoo.utils.conversions.parallel_to_aec``.

A task writes hooks: :meth:`new_task`, :meth:`opening`, :meth:`seat_context` (what a
simulated seat's role is asked with), :meth:`respond` (every seat's text of the step ->
a :class:`~fbenv.truth.StepResult` per learnable seat), :meth:`candidate_replies` and
:meth:`features` per seat, and optionally :meth:`publish` and :meth:`extra_info`.
``keep_rounds`` (as on the single-agent base) keeps the text transcript to its last rounds.

**Turn-based play** (``turn_based = True``): many games are sequential (an answer, a
critique, a revision...), not simultaneous. Such a task says who moves with
:meth:`to_act` (the seats that act now, in order; several act at once; none: the game is
over) and plays each move with :meth:`play_turn` (which writes it into the transcript:
the base publishes nothing). The base plays the simulated seats itself: after
:meth:`opening` and after each step's learnable moves it keeps asking them (the seats of
one group in one batched call, with their contexts taken before any of them moves) until
a learnable seat is to act or the game is over, so a single learnable seat never waits.
A step's actions are read only from the learnable seats in :meth:`to_act`; every other
learnable seat's is ignored and flagged ``info["ignored_action"]`` (:data:`IGNORED_ACTION`).
Then :meth:`respond` gets the step's moves in order and returns the results.
:meth:`begin_turns` is called before each step's moves (reset per-step tallies there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from fbenv import truth as keys
from fbenv.env import check_options
from fbenv.episodes import EpisodeTally
from fbenv.errors import InvalidArgumentError, UnknownNameError, check_type
from fbenv.interface import Interface
from fbenv.roles import FeedbackFailure, ParseStats, Role
from fbenv.sim import Simulation
from fbenv.transcript import Transcript
from fbenv.truth import StepResult, Truth

#: turn-based tasks: the info key flagging a learnable seat whose action this step was not read (not its turn)
IGNORED_ACTION = "ignored_action"


class FeedbackParallelEnv(ParallelEnv):
    """A multi-agent task whose feedback comes from simulated people (see module docs)."""

    metadata: dict[str, Any] = {"name": "fbenv_parallel", "render_modes": ["ansi"], "is_parallelizable": True}
    seats: ClassVar[tuple[str, ...]] = ()
    #: every role the task asks, including those that play seats
    roles: ClassVar[tuple[Role, ...]] = ()
    #: the role that plays each seat when the learner does not
    seat_roles: ClassVar[Mapping[str, Role]] = {}
    names: ClassVar[Mapping[str, str]] = {}
    #: the discrete view per seat
    n_actions: ClassVar[Mapping[str, int]] = {}
    n_features: ClassVar[Mapping[str, int]] = {}
    feature_bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    max_obs_chars: ClassVar[int] = 8192
    max_action_chars: ClassVar[int] = 2000
    #: the text transcript keeps the last this many rounds (None: all), as on the single-agent base
    keep_rounds: ClassVar[int | None] = None
    #: sequential play: :meth:`to_act` says who moves, :meth:`play_turn` plays a move (see module docs)
    turn_based: ClassVar[bool] = False

    def __init__(self, *, learnable: "str | Iterable[str] | None" = None, max_cycles: int = 25, **options: Any):
        owner = type(self).__name__
        self.options, self.task_spec = check_options(type(self), options, self.roles)
        check_type("max_cycles", max_cycles, int)
        if max_cycles < 1:
            raise InvalidArgumentError(f"max_cycles: expects >= 1, actual {max_cycles}")
        self.max_cycles = max_cycles
        chosen = self.seats if learnable is None else ((learnable,) if isinstance(learnable, str) else tuple(learnable))
        for seat in chosen:
            if seat not in self.seats:
                raise UnknownNameError(f"seat of {owner} (learnable=...)", str(seat), self.seats)
        if not chosen or len(set(chosen)) != len(chosen):
            raise InvalidArgumentError(f"learnable: expects distinct seats of {list(self.seats)}, actual {list(chosen)}")
        self.possible_agents = [s for s in self.seats if s in chosen]
        self.simulated = tuple(s for s in self.seats if s not in chosen)
        for seat in self.simulated:
            if seat not in self.seat_roles:
                raise InvalidArgumentError(f"{owner}: seat {seat!r} has no role to play it; it must be learnable")
        self.interface = self.options.interface
        self.render_mode = self.options.render_mode
        self.views = {
            seat: Interface.of(self.interface, n_actions=self.n_actions.get(seat, 0),
                               n_features=self.n_features.get(seat, 0), low=self.feature_bounds[0],
                               high=self.feature_bounds[1], max_obs_chars=self.max_obs_chars,
                               max_action_chars=self.max_action_chars, text_in_dict=True, owner=owner)
            for seat in self.possible_agents
        }
        self.sim = Simulation(self.options, rng=lambda: self.np_random)
        self.np_random: np.random.Generator | None = None
        self.agents: list[str] = []
        self.transcript = Transcript(self.keep_rounds)
        self.task: Any = None
        self.cycles = 0
        self._tallies: dict[str, EpisodeTally] = {}
        self._failed_at_reset: str | None = None

    # spaces are built once per instance: the seed test needs instances not to share them
    def observation_space(self, agent: str):
        return self._view(agent).observation_space

    def action_space(self, agent: str):
        return self._view(agent).action_space

    def _view(self, agent: str) -> Interface:
        if agent not in self.views:
            raise UnknownNameError(f"agent of {type(self).__name__}", str(agent), self.possible_agents)
        return self.views[agent]

    @property
    def parse_stats(self) -> ParseStats:
        return self.sim.stats

    # ------------------------------------------------------------------ hooks

    def new_task(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement new_task()")

    def opening(self) -> None:
        """The first turns and the episode's state."""

    def seat_context(self, seat: str) -> Any:
        """What the role playing simulated ``seat`` is asked with this step."""
        raise NotImplementedError(f"{type(self).__name__} must implement seat_context()")

    def respond(self, texts: Mapping[str, str]) -> Mapping[str, StepResult]:
        """Every seat's text of the step (learnable and simulated) -> a result per learnable seat.

        Turn-based: called after the step's moves with them as ``(seat, move)`` pairs in the
        order played (see :meth:`play_turn`); the moves are already played."""
        raise NotImplementedError(f"{type(self).__name__} must implement respond()")

    def to_act(self) -> Sequence[str]:
        """Turn-based: the seats that act now, in order (none: the game is over)."""
        raise NotImplementedError(f"{type(self).__name__} is turn-based and must implement to_act()")

    def play_turn(self, seat: str, move: Any) -> None:
        """Turn-based: play one move and write it into the transcript. ``move`` is a learnable
        seat's text, or the value a simulated seat's role answered (an index already turned
        into the seat's candidate reply)."""
        raise NotImplementedError(f"{type(self).__name__} is turn-based and must implement play_turn()")

    def begin_turns(self) -> None:
        """Turn-based: called at the start of each step, before its moves (not at reset)."""

    def candidate_replies(self, seat: str) -> Sequence[str]:
        raise NotImplementedError(f"{type(self).__name__} must implement candidate_replies()")

    def candidate_reply(self, seat: str, index: int) -> str:
        """What ``seat``'s discrete action ``index`` says now: by default the ``index``-th of
        :meth:`candidate_replies`; a task whose replies are costly to write overrides it to write
        only the one chosen (it must equal ``candidate_replies(seat)[index]``)."""
        return self.candidate_replies(seat)[index]

    def features(self, seat: str) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement features()")

    def publish(self, texts: Mapping[str, str]) -> None:
        """Write the step's turns into the transcript; by default every seat hears every seat."""
        for seat in self.seats:
            if seat in texts:
                self.transcript.say(seat, texts[seat])

    def text_observation(self, seat: str) -> str:
        return self.transcript.render(self.names, seat=seat, include_system=True)

    def extra_info(self, seat: str) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ the template

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None or self.np_random is None:
            self.np_random, _ = seeding.np_random(seed)
        # ``options`` are read by no task yet; PettingZoo's API test passes arbitrary ones
        self.agents = list(self.possible_agents)
        self.sim.begin_episode()
        self.transcript = Transcript(self.keep_rounds)
        self.cycles = 0
        outcomes = self.task_spec.outcomes if self.task_spec else ()
        self._tallies = {a: EpisodeTally(seed, outcomes) for a in self.agents}
        self.task = self.new_task(self.np_random)
        self._failed_at_reset = None
        try:
            self.opening()
            if self.turn_based:
                self._play_turns({})
        except FeedbackFailure as exc:
            self._failed_at_reset = str(exc)
        flags = {IGNORED_ACTION: False} if self.turn_based else {}
        infos = {a: self._info(a, Truth(), flags) for a in self.agents}
        if self._failed_at_reset:
            for info in infos.values():
                info[keys.FEEDBACK_ERROR] = self._failed_at_reset
        return {a: self._observe(a) for a in self.agents}, infos

    def step(self, actions: Mapping[str, Any]):
        if self.task is None:
            raise InvalidArgumentError(f"{type(self).__name__}.step: call reset() before step()")
        if not isinstance(actions, Mapping) or set(actions) != set(self.agents):
            got = sorted(actions) if isinstance(actions, Mapping) else type(actions).__name__
            raise InvalidArgumentError(f"{type(self).__name__}.step: expects an action for each of {self.agents}, actual {got}")
        texts: dict[str, str] = {}
        notes: dict[str, dict[str, Any]] = {}
        for a in self.agents:
            texts[a], notes[a] = self._view(a).action_text(actions[a], lambda i, a=a: self.candidate_reply(a, i))
        self.sim.begin_step()
        error = self._failed_at_reset
        results: Mapping[str, StepResult] = {}
        if self.turn_based:  # after a failed reset nothing is read and nobody is flagged: feedback_error says why
            on_turn = set(self.to_act()) if error is None else set(self.agents)
            for a in self.agents:
                notes[a][IGNORED_ACTION] = a not in on_turn
            texts = {a: t for a, t in texts.items() if a in on_turn}
        if error is None:
            try:
                if self.turn_based:
                    self.cycles += 1
                    self.begin_turns()
                    results = self.respond(self._play_turns(texts))
                else:
                    texts.update(self._play_simulated())
                    self.publish(texts)
                    self.cycles += 1
                    results = self.respond(texts)
            except FeedbackFailure as exc:
                error = str(exc)
        obs, rewards, terms, truncs, infos = {}, {}, {}, {}, {}
        for a in self.agents:
            r = results.get(a, StepResult())
            if r.terminated and r.truncated:
                raise InvalidArgumentError(f"{type(self).__name__}.respond: {a} is terminated or truncated, not both")
            failed = error is not None
            rewards[a] = 0.0 if failed else float(r.reward)
            terms[a] = not failed and bool(r.terminated)
            truncs[a] = failed or (not terms[a] and (bool(r.truncated) or self.cycles >= self.max_cycles))
            infos[a] = self._info(a, Truth() if failed else r.truth, {**notes[a], **({} if failed else r.info)})
            if failed:
                infos[a][keys.FEEDBACK_ERROR] = error
            obs[a] = self._observe(a)
            self._tallies[a].add(rewards[a], terms[a], truncs[a], infos[a])
            if terms[a] or truncs[a]:
                infos[a][keys.EPISODE] = self._tallies[a].result().as_info()
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, infos

    def _play_simulated(self) -> dict[str, str]:
        """Every simulated seat's turn, asked of their roles in one batched call."""
        return {seat: str(value) for seat, value in zip(self.simulated, self._ask(self.simulated))}

    def _play_turns(self, texts: Mapping[str, str]) -> list[tuple[str, Any]]:
        """Turn-based: the learnable seats' moves in ``texts`` (their group's simulated seats
        beside them), then the simulated seats' groups until a learnable seat is to act."""
        played: list[tuple[str, Any]] = []
        first = bool(texts)
        while group := tuple(self.to_act()):
            if not first and any(s in self.views for s in group):
                break
            first = False
            asked = [s for s in group if s not in self.views]
            answers = dict(zip(asked, self._ask(asked)))
            for seat in group:
                if seat not in answers and seat not in texts:
                    raise InvalidArgumentError(f"{type(self).__name__}.to_act: names {seat!r}, with no action this step")
                move = answers[seat] if seat in answers else texts[seat]
                self.play_turn(seat, move)
                played.append((seat, move))
        return played

    def _ask(self, seats: Sequence[str]) -> list[Any]:
        """The simulated seats' answers, asked in one batched call; an index becomes its candidate reply."""
        if not seats:
            return []
        answers = self.sim.ask_many([(self.seat_roles[s], self.seat_context(s)) for s in seats])
        out = []
        for seat, answer in zip(seats, answers):
            value = answer.value
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                value = self.candidate_reply(seat, int(value))
            out.append(value)
        return out

    def _observe(self, seat: str) -> Any:
        return self._view(seat).observe(lambda: self.text_observation(seat), lambda: self.features(seat))

    def _info(self, seat: str, truth: Truth, extra: Mapping[str, Any]) -> dict[str, Any]:
        ledger = self.sim.ledger
        info: dict[str, Any] = {
            keys.FEEDBACK: tuple(ledger.records),
            **truth.as_info(),
            keys.TURN: self.cycles,
            keys.MESSAGES: self.transcript.as_info(seat, self.names),
            keys.LLM_SEEDS: tuple(ledger.seeds),
            keys.USAGE: self.sim.episode_usage,
        }
        info.update(self.extra_info(seat))
        info.update(extra)
        return info

    def hidden_task(self) -> Any:
        return self.task

    def render(self) -> str | None:
        if self.render_mode == "ansi" and self.task is not None:
            return self.transcript.render(self.names, include_system=True)
        return None

    def close(self) -> None:
        pass
