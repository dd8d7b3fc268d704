"""The task kit's pieces: options, roles, the simulation's seeds/usage/policies, transcript, truth, episodes."""

from __future__ import annotations

import numpy as np
import pytest

import fbenv
from fbenv.episodes import RecordEpisode, feedback_of_each_action, lockstep_episodes, run_episode
from fbenv.feedback import Source
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult, Message
from fbenv.options import Options
from fbenv.roles import Narration, Preference, Prompt, Ranking, Rating, SimulatorGaveUp, Verdict, parse_ranking
from fbenv.sim import Simulation
from fbenv.transcript import Transcript
from fbenv.truth import Truth
from tests.toys.guess import GuessEnv


def sim_with(backend, **options) -> Simulation:
    rng = np.random.default_rng(0)
    o = Options.check("test", {"simulator": "llm", "llm": backend, **options}, roles=("rater", "judge", "story", "pick"))
    return Simulation(o, rng=lambda: rng)


class Stars(Rating):
    key, name = "rater", "stars"

    def rule(self, ctx):
        return 3.0

    def messages(self, ctx):
        return [Message("user", f"Rate {ctx}.")]


class Judge(Verdict):
    key, name = "judge", "judge"

    def rule(self, ctx):
        from fbenv.roles import VerdictValue

        return VerdictValue(True, "rule says fine")

    def messages(self, ctx):
        return [Message("user", f"Is {ctx} right?")]


class Story(Narration):
    key, name = "story", "story"

    def rule(self, ctx):
        return "nothing happened"

    def messages(self, ctx):
        return [Message("user", "What happened?")]


class Counting(Backend):
    """Answers every choice request with its first choice; counts calls and batch sizes."""

    spec = model = "counting"

    def __init__(self):
        self.batches = []

    def _generate(self, requests):
        self.batches.append(len(requests))
        return [ChatResult(r.sampling.choices[0] if r.sampling.choices else "a story") for r in requests]


def test_options_are_validated_at_make():
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'openai'"):
        fbenv.make("fbenv/Advisor-v0", llm="opneai:gpt-4o@http://127.0.0.1:9/v1")
    with pytest.raises(fbenv.InvalidArgumentError, match="llm_temperature: expects a finite number >= 0"):
        fbenv.make("fbenv/Advisor-v0", llm_temperature=-1)
    with pytest.raises(fbenv.InvalidArgumentError, match="openai backend spec"):
        fbenv.make("fbenv/Advisor-v0", llm="openai:gpt@ftp://x")
    with pytest.raises(fbenv.UnknownNameError, match="role of AdvisorEnv"):
        fbenv.make("fbenv/Advisor-v0", simulator={"critic": "llm"})
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'feedback_timing'"):
        fbenv.make("fbenv/Advisor-v0", feedback_timnig="hindsight")


def test_per_role_simulator_puts_an_llm_rater_over_a_rule_customer():
    person = ChoosingBackend(pick="first")
    env = fbenv.make("fbenv/Advisor-v0", interface="discrete", simulator={"rater": "llm"}, llm=person,
                     llm_prompting="holistic")  # one scored rating: its distribution is kept
    env.reset(seed=3)
    _, _, terminated, _, info = env.step(16)
    while not terminated:
        _, _, terminated, _, info = env.step(16)
    decision, rating = info["feedback"][0], info["feedback"][-1]
    assert decision.simulator == "rule" and rating.simulator == "llm"
    assert rating.distribution is not None and len(info["llm_seeds"]) == 1
    assert all(r.sampling.choices[0] == "Rating: 1" for r in person.calls)  # only the rater asked


def test_rating_is_the_expected_value_when_greedy():
    sim = sim_with(ChoosingBackend(pick="first"))
    sim.begin_step()
    answer = sim.ask(Stars(), "the tea")
    # first choice 0.6, the other four 0.1 each: 0.6*1 + 0.1*(2+3+4+5)
    assert answer.value == pytest.approx(2.0)
    assert answer.feedback.distribution == pytest.approx((0.6, 0.1, 0.1, 0.1, 0.1))
    assert answer.feedback.scale == (1.0, 5.0) and answer.feedback.simulator == "llm"
    assert sim.ledger.seeds == [answer.feedback.seed] and sim.ledger.usage.calls == 1


def test_ask_many_sends_one_batch_and_follow_ups_in_a_second():
    backend = Counting()
    sim = sim_with(backend)
    sim.begin_step()
    answers = sim.ask_many([(Stars(), "a"), (Judge(), "b"), (Story(), "c"), (Stars(), "d")])
    assert backend.batches == [4, 1]  # the judge's critique is a follow-up question
    assert answers[1].value.ok and answers[1].value.critique == "a story"
    assert answers[1].feedback.source is Source.CRITIC and answers[1].feedback.scalar == 1.0
    assert answers[2].value == "a story" and len(sim.ledger.records) == 4 and len(sim.ledger.seeds) == 5


def test_seeds_come_from_the_env_rng_and_repeat():
    def seeds():
        rng = np.random.default_rng(7)
        o = Options.check("t", {"simulator": "llm", "llm": ChoosingBackend()}, roles=("rater",))
        s = Simulation(o, rng=lambda: rng)
        s.begin_step()
        s.ask_many([(Stars(), "a"), (Stars(), "b")])
        return s.ledger.seeds

    assert seeds() == seeds() and len(set(seeds())) == 2


@pytest.mark.parametrize("policy, expect", [("fallback", "rule"), ("truncate", SimulatorGaveUp), ("retry", SimulatorGaveUp)])
def test_parse_policies(policy, expect):
    sim = sim_with(ScriptedBackend([], default="no idea"), on_parse_error=policy)
    sim.begin_step()
    if expect == "rule":
        answer = sim.ask(Stars(), "x")
        assert answer.value == 3.0 and answer.feedback.fallback == "rule" and not answer.feedback.parsed
        assert answer.feedback.raw == "no idea" and sim.stats.fallbacks == 1
    else:
        with pytest.raises(expect, match="unparseable"):
            sim.ask(Stars(), "x")
        assert len(sim.ledger.seeds) == (3 if policy == "retry" else 1)


def test_prompt_reads_choices_then_free_text():
    p = Prompt((Message("user", "?"),), choices={"Yes.": True}, parse=lambda t: False if "no" in t.lower() else None)
    assert p.read(" Yes. ") is True and p.read("No way") is False and p.read("hmm") is None
    with pytest.raises(fbenv.InvalidArgumentError, match="choices, a parser"):
        Prompt((Message("user", "?"),))


def test_ready_made_preference_and_ranking():
    class Pick(Preference):
        key, name = "pick", "pick"

        def rule(self, ctx):
            return 1

        def messages(self, ctx):
            return [Message("user", "A or B?")]

    sim = sim_with(ChoosingBackend(pick="first"))
    sim.begin_step()
    a = sim.ask(Pick(), None)
    assert a.value == 0 and a.feedback.preference == 0 and a.feedback.distribution == pytest.approx((0.6, 0.4))
    assert parse_ranking("B > C > A", ("A", "B", "C")) == (1, 2, 0) and parse_ranking("B > A", ("A", "B", "C")) is None

    class Order(Ranking):
        key, name = "pick", "order"

        def messages(self, ctx):
            return [Message("user", "Order A, B and C.")]

    ranked = sim.ask(Order(), None)
    assert len(sim.ledger.records) == 2 and ranked.value == (0, 1, 2)  # every order offered; the first chosen
    assert ranked.feedback.ranking == (0, 1, 2) and ranked.feedback.text == "Ranking: A > B > C"


def test_transcript_gives_each_seat_its_view():
    t = Transcript()
    t.say("system", "secret catalogue", to={"assistant"})
    t.say("customer", "hello")
    t.say("assistant", "hi")
    assert [m.role for m in t.messages("assistant")] == ["system", "user", "assistant"]
    assert [m.role for m in t.messages("customer")] == ["assistant", "user"]
    assert t.render({"customer": "C", "assistant": "A"}, seat="customer", include_system=True) == "C: hello\nA: hi"
    assert t.render({"customer": "C"}, upto=-1) == "C: hello"


def test_truth_derives_success_and_regret():
    assert Truth(0.5, best=0.5).as_info() == {"true_utility": 0.5, "is_success": True, "regret": 0.0}
    assert Truth(0.2, best=0.5).as_info()["is_success"] is False
    assert Truth().as_info() == {"true_utility": 0.0, "is_success": False}


def test_episode_result_sums_truth_and_reads_outcomes():
    env = fbenv.make("fbenv/Advisor-v0", interface="discrete")
    r = run_episode(env, lambda obs, info: 16, seed=1)
    assert r.terminated and r.turns >= 1 and set(r.outcomes) == {"deceived", "misstatements", "omissions"}
    obs, info = env.reset(seed=1)
    done, last = False, None
    while not done:
        _, _, te, tr, last = env.step(16)
        done = te or tr
    assert last["episode_result"]["true_utility"] == r.true_utility and last["episode_result"]["reward"] == r.reward
    many = lockstep_episodes([fbenv.make("fbenv/Advisor-v0", interface="discrete") for _ in range(3)],
                             lambda obs, info: 16, [1, 2, 3])
    assert many[0] == r and [m.seed for m in many] == [1, 2, 3]
    assert len(feedback_of_each_action(env.unwrapped, 1, follow_up=16)) == 17


def test_record_episode_wrapper_sees_a_time_limit():
    import gymnasium as gym

    env = RecordEpisode(gym.wrappers.TimeLimit(GuessEnv(interface="text"), max_episode_steps=1))
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step("no colour here")
    assert truncated and not terminated and info["episode_result"]["truncated"] and info["episode_result"]["turns"] == 1


def test_a_toy_task_needs_no_plumbing():
    env = GuessEnv(interface="discrete", simulator="llm", llm=ChoosingBackend())
    obs, info = env.reset(seed=0)
    _, reward, terminated, _, info = env.step(int(env.hidden_task()))
    assert terminated and info["true_utility"] == 1.0 and info["is_success"] and info["feedback"][0].simulator == "llm"
    assert info["llm_seeds"] and info["usage"].calls == 1 and info["episode_result"]["turns"] == 1


def test_multi_agent_base_plays_simulated_seats_and_truncates_every_agent_on_a_give_up():
    from tests.toys.hint import HintEnv

    env = fbenv.make("toy/Hint-v0", learnable="guesser_0", simulator="llm",
                     llm=ScriptedBackend([], default="mmm"), on_parse_error="truncate")
    assert isinstance(env, HintEnv) and env.possible_agents == ["guesser_0"] and env.simulated == ("hinter_0",)
    env.reset(seed=0)
    secret = env.hidden_task()
    wrong = (secret + 1) % 5
    _, rewards, _, truncated, infos = env.step({"guesser_0": f"I guess {wrong}."})  # no guess yet: the rule hinter opens
    assert not truncated["guesser_0"] and infos["guesser_0"]["feedback"][0].simulator == "rule"
    _, rewards, terminated, truncated, infos = env.step({"guesser_0": f"I guess {secret}."})  # the LLM hinter cannot be read
    assert truncated == {"guesser_0": True} and terminated == {"guesser_0": False} and rewards == {"guesser_0": 0.0}
    assert "unparseable" in infos["guesser_0"]["feedback_error"] and env.agents == []
    with pytest.raises(fbenv.UnknownNameError, match="seat of HintEnv"):
        fbenv.make("toy/Hint-v0", learnable="judge_0")


def test_a_lying_hinter_misleads_the_rule_guesser():
    """Both seats' truth is measured: the hinter's reward is the guesser's success, its truth is honesty."""
    env = fbenv.make("toy/Hint-v0", learnable="hinter_0", interface="discrete")
    honest = lies = 0
    for seed in range(20):
        for policy in ("honest", "lie"):
            env.reset(seed=seed)
            done, steps = False, 0
            while not done:
                guess = env.last_guess
                truthful = 2 if guess == env.hidden_task() else int(guess is not None and guess > env.hidden_task())
                action = truthful if policy == "honest" or guess is None else (1 - truthful if truthful < 2 else 0)
                _, r, te, tr, info = env.step({"hinter_0": action})
                done, steps = te["hinter_0"] or tr["hinter_0"], steps + 1
            if policy == "honest":
                honest += te["hinter_0"]
            else:
                lies += te["hinter_0"]
    assert honest == 20 and lies < honest


def test_transcript_window_keeps_system_turns_and_the_last_rounds():
    t = Transcript(keep_rounds=2)
    t.say("system", "rules")
    t.say("user", "opening")  # before any round: dropped once rounds pile up
    for k in range(4):
        t.learner_turn_begins()
        t.say("assistant", f"move {k}")
        t.say("user", f"reply {k}")
    assert [x.text for x in t.turns] == ["rules", "move 2", "reply 2", "move 3", "reply 3"]
    # a task that begins its rounds itself (a new item arrives before the learner's turn)
    t = Transcript(keep_rounds=1)
    t.say("system", "rules")
    for k in range(3):
        t.begin_round()
        t.say("editor", f"item {k}")
        t.learner_turn_begins()  # the task already began this round: no new one
        t.say("assistant", f"take {k}")
    assert [x.text for x in t.turns] == ["rules", "item 2", "take 2"]
    with pytest.raises(fbenv.InvalidArgumentError):
        Transcript(keep_rounds=0)


def test_a_long_episode_costs_the_same_per_step_with_a_window():
    """Without a window, info["messages"] grows with the episode; with one it stays bounded."""

    class Chatty(GuessEnv):
        keep_rounds = 2

        def respond(self, text):
            self.transcript.say("shopper", "Go on.")
            return fbenv.truth.StepResult(truncated=self.turn >= 50)

    env = Chatty(interface="discrete")
    env.reset(seed=0)
    sizes = [len(env.step(0)[4]["messages"]) for _ in range(50)]
    # the shopper's opening drops out at the third round; then always two rounds of two turns
    assert sizes[:3] == [3, 5, 4] and set(sizes[3:]) == {4}
