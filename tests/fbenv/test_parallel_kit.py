"""The multi-agent base's turn-based mode, keep_rounds, and the multi-agent episode runner, on a tiny toy.

Relay: ``lead_0`` says the round, then ``left_0`` and ``right_0`` echo it at once; three rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import fbenv.fidelity
from fbenv.episodes import lockstep_episodes, run_episode, run_parallel_episode, scripted_seats
from fbenv.parallel import IGNORED_ACTION, FeedbackParallelEnv
from fbenv.registry import TaskSpec
from fbenv.roles import Role
from fbenv.testing import check_fbenv_parallel_env
from fbenv.truth import StepResult, Truth
from tests.toys.hint import HintEnv

LEAD, LEFT, RIGHT = "lead_0", "left_0", "right_0"
ROUNDS = 3
SPEC = TaskSpec(id="toy/Relay-v0", entry_point="tests.fbenv.test_parallel_kit:RelayEnv", multi_agent=True,
                summary="A lead and two echoes, turn by turn.", outcomes=("echoes", "rounds"))


@dataclass(frozen=True)
class Heard:
    said: str
    moves: int  # moves played when the context was taken


class Lead(Role):
    key, name = "lead", "Lead"

    def rule(self, ctx: Heard) -> int:
        return ctx.moves // 3  # an index: the base turns it into the candidate reply

    def prompt(self, ctx: Heard):
        return None


class Echo(Role):
    key, name = "echo", "Echo"

    def rule(self, ctx: Heard) -> str:
        return f"Heard {ctx.said}"

    def prompt(self, ctx: Heard):
        return None


class RelayEnv(FeedbackParallelEnv):
    metadata = {"name": "relay_v0", "render_modes": ["ansi"], "is_parallelizable": True}
    seats, roles = (LEAD, LEFT, RIGHT), (Lead(), Echo())
    seat_roles = {LEAD: roles[0], LEFT: roles[1], RIGHT: roles[1]}
    n_actions, n_features = {s: ROUNDS for s in seats}, {s: 2 for s in seats}
    keep_rounds = 2
    turn_based = True

    def new_task(self, rng):
        return int(rng.integers(ROUNDS))  # unused: the relay has nothing hidden

    def opening(self):
        self.round, self.said, self.moves, self.echoes, self.heard = 0, "", 0, 0, set()
        self.steps = 0
        self.transcript.say("system", "Relay the lead's words.")

    def to_act(self):
        if self.round >= ROUNDS:
            return ()
        return (LEAD,) if not self.said else (LEFT, RIGHT)

    def seat_context(self, seat):
        return Heard(self.said, self.moves)

    def play_turn(self, seat, move):
        self.moves += 1
        if seat == LEAD:
            self.transcript.begin_round()
            self.said = move
        else:
            self.echoes += move == f"Heard {self.said}"
            self.heard.add(seat)
        self.transcript.say(seat, move)
        if self.heard == {LEFT, RIGHT}:
            self.round, self.said, self.heard = self.round + 1, "", set()

    def begin_turns(self):
        self.steps += 1

    def respond(self, turns):
        self.turns = list(turns)
        over = self.round >= ROUNDS
        info = {"echoes": self.echoes, "rounds": self.round} if over else {}
        return {s: StepResult(float(len(turns)), terminated=over, truth=Truth(float(self.echoes)), info=info)
                for s in self.possible_agents}

    def candidate_replies(self, seat):
        return [f"Round {k}." for k in range(ROUNDS)] if seat == LEAD else [f"Heard Round {k}." for k in range(ROUNDS)]

    def features(self, seat):
        return np.array([self.round / ROUNDS, float(seat in self.to_act())], dtype=np.float32)


def relay(**kw):
    env = RelayEnv(**{"interface": "text", **kw})
    env.task_spec = SPEC  # its outcomes, without registering a toy for every registry test
    return env


def spy_batches(env):
    """Record every batched simulator call: the seats' contexts per call."""
    calls, ask_many = [], env.sim.ask_many

    def spy(pairs):
        calls.append([ctx for _, ctx in pairs])
        return ask_many(pairs)

    env.sim.ask_many = spy
    return calls


def test_a_learnable_lead_acts_then_the_simulated_echoes_answer_at_once_in_one_batch():
    env = relay(learnable=LEAD)
    calls = spy_batches(env)
    obs, infos = env.reset(seed=0)
    assert env.to_act() == (LEAD,) and calls == [] and infos[LEAD][IGNORED_ACTION] is False
    _, rewards, terms, _, infos = env.step({LEAD: "Round 0."})
    assert env.turns == [(LEAD, "Round 0."), (LEFT, "Heard Round 0."), (RIGHT, "Heard Round 0.")]
    assert calls == [[Heard("Round 0.", 1), Heard("Round 0.", 1)]]  # one batch, contexts taken before either moved
    assert rewards == {LEAD: 3.0} and not terms[LEAD] and env.to_act() == (LEAD,) and env.steps == 1
    assert not infos[LEAD][IGNORED_ACTION] and [r.text for r in infos[LEAD]["feedback"]] == ["Heard Round 0."] * 2


def test_simulated_seats_move_at_reset_and_beside_a_learnable_seat_of_their_group():
    env = relay(learnable=LEFT)
    obs, infos = env.reset(seed=0)
    assert env.said == "Round 0." and "Round 0." in obs[LEFT]["text"]  # the simulated lead opened
    assert env.steps == 0 and env.to_act() == (LEFT, RIGHT)
    env.step({LEFT: "Heard Round 0."})
    # the learnable left, then its group's simulated right, then the next round's simulated lead
    assert env.turns == [(LEFT, "Heard Round 0."), (RIGHT, "Heard Round 0."), (LEAD, "Round 1.")]


def test_off_turn_actions_are_ignored_and_flagged_under_one_key():
    env = relay()  # every seat learnable
    obs, infos = env.reset(seed=0)
    assert all(info[IGNORED_ACTION] is False for info in infos.values())
    _, _, _, _, infos = env.step({LEAD: "Round 0.", LEFT: "Heard Round 2.", RIGHT: "Heard Round 2."})
    assert env.turns == [(LEAD, "Round 0.")] and env.echoes == 0
    assert {s: i[IGNORED_ACTION] for s, i in infos.items()} == {LEAD: False, LEFT: True, RIGHT: True}
    _, _, _, _, infos = env.step({LEAD: "Round 2.", LEFT: "Heard Round 0.", RIGHT: "Heard Round 1."})
    assert env.turns == [(LEFT, "Heard Round 0."), (RIGHT, "Heard Round 1.")] and env.said == ""
    assert env.echoes == 1
    assert {s: i[IGNORED_ACTION] for s, i in infos.items()} == {LEAD: True, LEFT: False, RIGHT: False}


def test_keep_rounds_is_honoured_in_both_modes():
    env = relay(learnable=LEAD)
    env.reset(seed=0)
    for k in range(ROUNDS):
        obs, _, terms, _, _ = env.step({LEAD: f"Round {k}."})
    assert terms[LEAD] and env.transcript.keep_rounds == 2
    text = obs[LEAD]["text"]
    assert "Relay the lead's words." in text and "Heard Round 2." in text and "Heard Round 1." in text
    assert "Round 0." not in text

    class ShortHint(HintEnv):
        keep_rounds = 1

    hint = ShortHint(learnable="guesser_0")
    hint.reset(seed=0)
    assert hint.transcript.keep_rounds == 1 and HintEnv(learnable="guesser_0").transcript.keep_rounds is None


@pytest.mark.parametrize("interface", ["text", "discrete"])
def test_scripted_seats_and_the_episode_runner_keep_the_outcomes(interface):
    def left(env):
        assert LEFT in env.to_act(), "asked off turn"
        return f"Heard {env.said}"  # by text

    policy = scripted_seats({LEAD: lambda env: env.round, LEFT: left})  # the lead by index
    env = relay(learnable=(LEAD, LEFT), interface=interface)
    result = run_parallel_episode(env, policy(env), seed=1)
    assert result.outcomes == {"echoes": 2 * ROUNDS, "rounds": ROUNDS}
    assert result.terminated and not result.truncated and result.turns == 2 * ROUNDS
    assert result.reward == 2 * (1.0 + 2.0) * ROUNDS  # both seats' rewards: 1 move, then 2, each round
    assert run_episode(env, policy(env), seed=1) == result
    envs = [relay(learnable=(LEAD, LEFT), interface=interface) for _ in range(2)]
    assert lockstep_episodes(envs, [policy(e) for e in envs], [1, 1]) == [result, result]
    assert fbenv.fidelity._run_parallel is run_parallel_episode
    cut = run_parallel_episode(env, policy(env), seed=1, max_cycles=2)
    assert cut.truncated and not cut.terminated and cut.outcomes == {}
    with pytest.raises(fbenv.InvalidArgumentError, match="missing"):
        scripted_seats({LEAD: lambda env: 0})(env)


@pytest.mark.parametrize("learnable", [(LEAD,), (LEFT,), (LEAD, RIGHT), (LEAD, LEFT, RIGHT)])
def test_the_toy_passes_the_parallel_api_checks(learnable):
    for interface in ("text", "discrete"):
        check_fbenv_parallel_env(lambda: relay(learnable=learnable, interface=interface))
