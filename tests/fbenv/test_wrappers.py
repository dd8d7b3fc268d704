"""fbenv.wrappers: the Gymnasium API and determinism around two tasks, and each protocol's known answers."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from fractions import Fraction

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import fbenv
from fbenv.env import FeedbackEnv
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult, Message
from fbenv.roles import Rating
from fbenv.testing import check_lockstep
from fbenv.truth import StepResult, Truth
from fbenv.wrappers import (
    CostBudget,
    DelayedFeedback,
    FeedbackOnlyInTraining,
    ObservationBudget,
    Peek,
    RecordTranscripts,
    SwitchingCost,
    read_transcripts,
    to_hindsight_chains,
    to_preference_pairs,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")


# ---------------------------------------------------------------------- a multi-step toy with known rewards


class Stars(Rating):
    key, name = "rater", "Chat rating"

    def rule(self, ctx):  # reply i is rated 1 + i: reward i / 4, exact in binary
        _, i = ctx
        return 1.0 + i

    def messages(self, ctx):
        return [Message("user", "Rate the reply.")]


STARS = Stars()


class ChatEnv(FeedbackEnv):
    """``length`` rated replies; reply ``i`` earns ``i / 4`` from the rule rater; the truth
    is whether it was the reply the user needed (drawn from the seed)."""

    roles = (STARS,)
    names = {"user": "User", "assistant": "Assistant"}
    n_actions, n_features = 5, 1

    def __init__(self, *, length: int = 5, greet: bool = False, **options):
        super().__init__(**options)
        self.length, self.greet = length, greet

    def new_task(self, rng):
        return int(rng.integers(5))

    def opening(self):
        if self.greet:  # a rating already at reset (it costs usage before the first step)
            self.sim.ask(STARS, (self, 0))
        self.transcript.say("user", "Talk to me.")

    def respond(self, text):
        digits = re.findall(r"\d", text)
        i = int(digits[-1]) % 5 if digits else 0
        rating = self.sim.ask(STARS, (self, i)).feedback
        self.transcript.say("user", f"Noted {i}.")
        return StepResult(rating.normalized(), terminated=self.turn >= self.length,
                          truth=Truth(float(i == self.task), best=1.0))

    def candidate_replies(self):
        return [f"Reply {i}" for i in range(5)]

    def features(self):
        return np.array([min(self.turn / self.length, 1.0)], dtype=np.float32)


class Metered(Backend):
    """Every call: the reply "Rating: 4" for 10 prompt + 2 completion tokens and 0.25 s."""

    spec = model = "metered"

    def _generate(self, requests):
        return [ChatResult("Rating: 4", prompt_tokens=10, completion_tokens=2, latency_s=0.25) for _ in requests]


def chat(**kw) -> ChatEnv:
    return ChatEnv(interface="discrete", **kw)


def play(env, actions, seed=0):
    """(rewards, infos) of one episode playing ``actions`` until it ends."""
    _, info = env.reset(seed=seed)
    rewards, infos = [], [info]
    for a in actions:
        _, r, terminated, truncated, info = env.step(a)
        rewards.append(r)
        infos.append(info)
        if terminated or truncated:
            break
    return rewards, infos


# ---------------------------------------------------------------------- API and determinism around two tasks

TASKS = {
    "advisor": lambda: fbenv.make("fbenv/Advisor-v0", interface="discrete"),
    "advisor-llm": lambda: fbenv.make("fbenv/Advisor-v0", interface="discrete", simulator="llm", llm=ChoosingBackend()),
    "guess": lambda: fbenv.make("toy/Guess-v0", interface="discrete"),
    "guess-llm": lambda: fbenv.make("toy/Guess-v0", interface="discrete", simulator="llm", llm=ChoosingBackend()),
    # long episodes, every step rewarded: the shipped bandit tasks
    "dueling": lambda: fbenv.make("fbenv/DuelingPrompts-v0", interface="discrete", horizon=12),
    "suggestion": lambda: fbenv.make("fbenv/SuggestionTiming-v0", interface="discrete", horizon=12),
}
_files = itertools.count()


def _eval_only(env):
    env = FeedbackOnlyInTraining(env)
    env.training = False
    return env


WRAPPERS = {
    "switching": lambda env, tmp: SwitchingCost(env, 0.1),
    "observe": lambda env, tmp: ObservationBudget(env, 2),
    "delayed": lambda env, tmp: DelayedFeedback(env, 1, spread=2),
    "training": lambda env, tmp: FeedbackOnlyInTraining(env),
    "eval": lambda env, tmp: _eval_only(env),
    "cost": lambda env, tmp: CostBudget(env, max_tokens=10**6, max_calls=10**4, max_seconds=1e6),
    "record": lambda env, tmp: RecordTranscripts(env, tmp / f"t{next(_files)}.jsonl"),
}


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_gymnasium_check_env_and_same_seed_lockstep(wrapper, task, tmp_path):
    def make():
        return WRAPPERS[wrapper](TASKS[task](), tmp_path)

    env = make()
    check_env(env, skip_render_check=True)
    env.close()
    check_lockstep(make, seed=3, steps=12)  # two envs, same seed, same actions: identical obs, rewards, infos


# ---------------------------------------------------------------------- SwitchingCost


def test_switching_cost_is_charged_exactly_on_switches_and_leaves_the_truth():
    actions = [0, 0, 1, 1, 0, 4]
    base, base_infos = play(chat(length=6), actions)
    env = SwitchingCost(chat(length=6), 0.3)
    got, infos = play(env, actions)
    switched = [False, False, True, False, True, True]
    assert [i["switched"] for i in infos[1:]] == switched
    assert got == [b - (0.3 if s else 0.0) for b, s in zip(base, switched)]
    assert [i["switching_cost"] for i in infos[1:]] == [0.3 if s else 0.0 for s in switched]
    assert [i["true_utility"] for i in infos[1:]] == [i["true_utility"] for i in base_infos[1:]]
    assert infos[-1]["episode_result"]["reward"] == pytest.approx(sum(got))
    assert infos[-1]["episode_result"]["true_utility"] == base_infos[-1]["episode_result"]["true_utility"]
    # a new episode starts with no previous action: its first step is never a switch
    env.reset(seed=1)
    _, reward, _, _, info = env.step(2)
    assert not info["switched"] and reward == 0.5


def test_switching_cost_validates():
    with pytest.raises(fbenv.InvalidArgumentError, match="cost: expects a finite number >= 0"):
        SwitchingCost(chat(), -1)
    with pytest.raises(fbenv.InvalidArgumentError, match="Discrete"):
        SwitchingCost(ChatEnv(interface="text"), 0.1)


# ---------------------------------------------------------------------- ObservationBudget


def test_a_peek_is_exactly_the_feedback_of_the_step_it_previews():
    env = ObservationBudget(fbenv.make("fbenv/Advisor-v0", interface="discrete", simulator="llm",
                                       llm=ChoosingBackend()), budget=1)
    n = 17
    assert env.action_space == gym.spaces.Discrete(2 * n)
    for seed, action in [(0, 0), (1, 5), (2, 16), (3, 9)]:
        obs, _ = env.reset(seed=seed)
        peek_obs, reward, terminated, truncated, peek = env.step(n + action)
        assert np.array_equal(peek_obs, obs) and reward == 0.0 and not terminated and not truncated
        assert peek["observed_action"] == action and peek["observe_budget_left"] == 0 and not peek["invalid_action"]
        assert peek["true_utility"] == 0.0 and peek["turn"] == 0
        _, reward, _, _, real = env.step(action)
        assert real["feedback"] and peek["feedback"] == real["feedback"]  # same records, LLM seeds included
        assert peek["observed_reward"] == reward


def test_peeking_leaves_the_episode_unchanged():
    def make():
        return fbenv.make("fbenv/Advisor-v0", interface="discrete", simulator="llm", llm=ChoosingBackend())

    for seed in range(4):
        plain, peeking = make(), ObservationBudget(make(), budget=12)
        plain.reset(seed=seed)
        peeking.reset(seed=seed)
        for action in (3, 16, 16, 16):
            for j in (0, 16, 7):
                peeking.step(17 + j)
            a = plain.step(action)
            b = peeking.step(action)
            assert a[1] == b[1] and a[2:4] == b[2:4]
            assert a[4]["feedback"] == b[4]["feedback"] and a[4]["llm_seeds"] == b[4]["llm_seeds"]
            if a[2] or a[3]:
                break


def test_observe_actions_past_the_budget_are_flagged_no_ops():
    env = ObservationBudget(chat(length=3), budget=2)
    obs, info = env.reset(seed=0)
    assert info["observe_budget_left"] == 2
    lefts, flags = [], []
    for _ in range(3):
        o, r, te, tr, info = env.step(5 + 4)
        assert np.array_equal(o, obs) and r == 0.0 and not te and not tr and info["turn"] == 0
        lefts.append(info["observe_budget_left"])
        flags.append(info["invalid_action"])
    assert lefts == [1, 0, 0] and flags == [False, False, True]
    assert "observed_reward" not in info and info["feedback"] == ()
    _, r, _, _, info = env.step(4)  # the task's own actions still work
    assert r == 1.0 and info["turn"] == 1 and info["observe_budget_left"] == 0
    _, info = env.reset(seed=0)
    assert info["observe_budget_left"] == 2  # per episode


def test_peeks_are_paid_for_in_usage():
    env = ObservationBudget(chat(length=3, simulator="llm", llm=Metered()), budget=2)
    env.reset(seed=0)
    _, _, _, _, info = env.step(5 + 1)
    assert info["usage"].calls == 1 and env.unwrapped.usage.calls == 0 and info["observed_reward"] == 0.75
    _, _, _, _, info = env.step(1)
    assert info["usage"].calls == 2 and info["usage"].prompt_tokens == 20


class HookEnv(gym.Env):
    """Not a FeedbackEnv: peeking works through its own ``peek`` hook."""

    observation_space = gym.spaces.Box(0, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), float(action), True, False, {}

    def peek(self, action):
        return Peek(float(action) * 10)


def test_observation_budget_uses_a_peek_hook_and_refuses_envs_without_one():
    env = ObservationBudget(HookEnv(), budget=1)
    env.reset(seed=0)
    assert env.step(3 + 2)[4]["observed_reward"] == 20.0
    no_hook = HookEnv()
    no_hook.peek = None
    with pytest.raises(fbenv.InvalidArgumentError, match="peek\\(action\\) -> Peek"):
        ObservationBudget(no_hook, budget=1)
    with pytest.raises(fbenv.InvalidArgumentError, match="Discrete"):
        ObservationBudget(ChatEnv(interface="text"), budget=1)
    with pytest.raises(fbenv.InvalidArgumentError, match="budget: expects an int >= 0"):
        ObservationBudget(chat(), budget=-1)
    env = ObservationBudget(chat(), budget=1)
    with pytest.raises(fbenv.InvalidArgumentError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(fbenv.InvalidArgumentError, match=r"expects an int in \[0, 10\), actual 10"):
        env.step(10)
    assert env.get_action_meanings()[5:7] == ["observe: Reply 0", "observe: Reply 1"]


# ---------------------------------------------------------------------- DelayedFeedback

ACTIONS = [1, 4, 0, 3, 2, 4]  # rewards 0.25, 1, 0, 0.75, 0.5, 1


def expected_payments(rewards, delay, spread):
    """Written out independently: part k of reward t is due at t + delay + k; the last step settles the rest."""
    pay = [Fraction(0)] * len(rewards)
    for t, r in enumerate(rewards):
        for k in range(spread):
            if t + delay + k < len(rewards) - 1:
                pay[t + delay + k] += Fraction(r) / spread
    pay[-1] = sum(map(Fraction, rewards)) - sum(pay[:-1])
    return [float(p) for p in pay]


@pytest.mark.parametrize("delay", [0, 1, 2, 7])
@pytest.mark.parametrize("spread", [1, 2, 4])
def test_delayed_rewards_arrive_on_time_and_the_total_is_exact(delay, spread):
    base, base_infos = play(chat(length=6), ACTIONS)
    got, infos = play(DelayedFeedback(chat(length=6), delay, spread), ACTIONS)
    assert got == expected_payments(base, delay, spread)
    assert sum(got) == sum(base) == 3.5  # exact: the parts are exact in binary
    assert infos[-1]["reward_owed"] == 0.0 and infos[-1]["episode_result"]["reward"] == 3.5
    # the records travel with the first part of their reward; all arrive by the end
    for t in range(len(ACTIONS) - 1):
        expect = base_infos[1 + t - delay]["feedback"] if t >= delay else ()
        assert infos[1 + t]["feedback"] == expect
    assert [r for i in infos[1:] for r in i["feedback"]] == [r for i in base_infos[1:] for r in i["feedback"]]
    assert [i["true_utility"] for i in infos] == [i["true_utility"] for i in base_infos]  # the truth is not delayed


def test_an_uneven_spread_keeps_the_total_up_to_one_rounding():
    base, _ = play(chat(length=6), ACTIONS)
    got, infos = play(DelayedFeedback(chat(length=6), 1, spread=3), ACTIONS)
    assert got[:2] == [0.0, 0.25 / 3] and got[2] == pytest.approx((0.25 + 1.0) / 3)
    paid, owed = sum(map(Fraction, got)), sum(map(Fraction, base))
    assert abs(paid - owed) <= Fraction(math.ulp(got[-1]))
    assert [i["reward_owed"] for i in infos[1:]][-1] == 0.0


def test_delayed_feedback_settles_when_a_time_limit_cuts_the_episode():
    env = DelayedFeedback(gym.wrappers.TimeLimit(chat(length=6), max_episode_steps=3), delay=5)
    got, infos = play(env, ACTIONS)
    assert got == [0.0, 0.0, 1.25]  # cut after three steps: everything owed is paid on the last
    assert len(infos[-1]["feedback"]) == 3 and infos[-1]["reward_owed"] == 0.0
    with pytest.raises(fbenv.InvalidArgumentError, match="spread: expects an int >= 1"):
        DelayedFeedback(chat(), 1, spread=0)
    with pytest.raises(fbenv.InvalidArgumentError, match="delay: expects an int >= 0"):
        DelayedFeedback(chat(), 1.5)


# ---------------------------------------------------------------------- FeedbackOnlyInTraining


def test_feedback_is_withheld_outside_training_and_the_truth_stays():
    actions = [4, 2, 0]
    base, base_infos = play(chat(length=3), actions, seed=2)
    env = FeedbackOnlyInTraining(chat(length=3))
    assert env.training is True
    got, infos = play(env, actions, seed=2)
    assert got == base and [i["feedback"] for i in infos] == [i["feedback"] for i in base_infos]
    assert not infos[-1]["feedback_withheld"]

    env.training = False
    got, infos = play(env, actions, seed=2)
    assert got == [0.0, 0.0, 0.0] and all(i["feedback_withheld"] for i in infos)
    for mine, theirs in zip(infos[1:], base_infos[1:]):
        assert [r.source for r in mine["feedback"]] == [r.source for r in theirs["feedback"]]
        assert all(r.scalar is None and r.text is None and r.raw is None for r in mine["feedback"])
        assert {k: mine[k] for k in ("true_utility", "is_success", "regret")} == \
               {k: theirs[k] for k in ("true_utility", "is_success", "regret")}
    assert infos[-1]["episode_result"]["reward"] == 0.0
    assert infos[-1]["episode_result"]["true_utility"] == base_infos[-1]["episode_result"]["true_utility"]

    env.training = True
    assert play(env, actions, seed=2)[0] == base
    with pytest.raises(fbenv.InvalidArgumentError, match="training: expects bool"):
        env.training = "no"


def test_withholding_covers_peeks_and_owed_rewards():
    env = _eval_only(DelayedFeedback(ObservationBudget(chat(length=3), budget=1), delay=1))
    env.reset(seed=0)
    _, r, _, _, info = env.step(5 + 4)
    assert r == 0.0 and "observed_reward" not in info and "reward_owed" not in info
    assert info["observed_action"] == 4  # which action was observed is not feedback


# ---------------------------------------------------------------------- CostBudget


@pytest.mark.parametrize("budget, cut_at, words", [
    ({"max_calls": 3}, 4, "4 calls > max_calls=3"),
    ({"max_tokens": 36}, 4, "48 tokens > max_tokens=36"),  # 36 after 3 steps is not past the budget
    ({"max_seconds": 0.5}, 3, "0.75 s > max_seconds=0.5"),
])
def test_cost_budget_truncates_on_the_step_that_passes_it(budget, cut_at, words):
    env = CostBudget(chat(length=6, simulator="llm", llm=Metered()), **budget)
    rewards, infos = play(env, [1] * 6)
    assert len(rewards) == cut_at and rewards == [0.75] * (cut_at - 1) + [0.0]
    last = infos[-1]
    assert words in last["feedback_error"] and "cost budget passed" in last["feedback_error"]
    assert all("feedback_error" not in i for i in infos[:-1])
    result = last["episode_result"]
    assert result["truncated"] and not result["terminated"] and result["turns"] == cut_at
    assert result["reward"] == 0.75 * (cut_at - 1) and result["feedback_error"] == last["feedback_error"]


def test_cost_budget_on_a_terminal_step_keeps_it_terminated():
    env = CostBudget(chat(length=3, simulator="llm", llm=Metered()), max_calls=2)
    env.reset(seed=0)
    env.step(1)
    env.step(1)
    _, reward, terminated, truncated, info = env.step(1)
    assert terminated and not truncated and reward == 0.0 and "max_calls=2" in info["feedback_error"]
    assert info["episode_result"]["reward"] == 1.5


def test_cost_budget_spent_at_reset_ends_the_first_step_without_asking_again():
    env = CostBudget(chat(length=3, greet=True, simulator="llm", llm=Metered()), max_calls=0)
    _, info = env.reset(seed=0)
    assert "max_calls=0" in info["feedback_error"]
    _, reward, terminated, truncated, info = env.step(1)
    assert truncated and not terminated and reward == 0.0 and env.unwrapped.turn == 0
    assert info["feedback"] == () and info["episode_result"]["truncated"]


def test_cost_budget_within_budget_changes_nothing_and_validates():
    base, base_infos = play(chat(length=3, simulator="llm", llm=Metered()), [1, 2, 3])
    got, infos = play(CostBudget(chat(length=3, simulator="llm", llm=Metered()), max_calls=3), [1, 2, 3])
    assert got == base and infos[-1]["episode_result"] == base_infos[-1]["episode_result"]
    with pytest.raises(fbenv.InvalidArgumentError, match="at least one of"):
        CostBudget(chat())
    with pytest.raises(fbenv.InvalidArgumentError, match="max_tokens: expects an int >= 0"):
        CostBudget(chat(), max_tokens=-5)
    with pytest.raises(fbenv.InvalidArgumentError, match="info\\['usage'\\] to be an fbenv Usage"):
        CostBudget(HookEnv(), max_calls=1).reset(seed=0)


# ---------------------------------------------------------------------- RecordTranscripts and exporters


def test_every_finished_episode_is_one_json_line(tmp_path):
    path = tmp_path / "runs" / "advisor.jsonl"
    env = RecordTranscripts(fbenv.make("fbenv/Advisor-v0", interface="discrete"), path)
    seen = []
    for seed, action in [(0, 0), (0, 16), (1, 4)]:
        _, info = env.reset(seed=seed)
        prompt, steps, done = info["messages"], [], False
        while not done:
            _, r, te, tr, info = env.step(action if not steps else 16)
            steps.append((r, info))
            done = te or tr
        seen.append((seed, prompt, steps, info))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and env.episodes_written == 3
    for line, (seed, prompt, steps, last) in zip(lines, seen):
        ep = json.loads(line)
        assert ep["env_id"] == "fbenv/Advisor-v0" and ep["seed"] == seed and ep["prompt"] == prompt
        assert ep["env_kwargs"]["interface"] == "discrete"
        assert ep["messages"] == last["messages"] and ep["episode_result"] == json.loads(json.dumps(last["episode_result"]))
        assert ep["return"] == sum(r for r, _ in steps)
        assert ep["truth"] == {"true_utility": last["episode_result"]["true_utility"],
                               "is_success": last["is_success"], "regret": last["regret"]}
        for step, (r, info) in zip(ep["steps"], steps):
            assert step["reward"] == r and step["true_utility"] == info["true_utility"]
            as_json = json.loads(json.dumps([{**dataclasses.asdict(f), "source": f.source.value} for f in info["feedback"]]))
            assert step["feedback"] == as_json and as_json
    # append-only: a second recorder on the same file adds lines
    again = RecordTranscripts(fbenv.make("fbenv/Advisor-v0", interface="discrete"), path)
    again.reset(seed=2)
    while not any(again.step(16)[2:4]):
        pass
    assert len(read_transcripts(path)) == 4 and json.loads(path.read_text().splitlines()[0]) == json.loads(lines[0])


def record_chats(path, plays, length=1):
    env = RecordTranscripts(chat(length=length), path)
    for seed, actions in plays:
        play(env, actions, seed=seed)
    return path


def test_an_episode_cut_short_by_reset_is_not_written(tmp_path):
    path = tmp_path / "t.jsonl"
    env = RecordTranscripts(chat(length=3), path)
    env.reset(seed=0)
    env.step(1)
    env.reset(seed=1)
    assert not path.exists() and env.episodes_written == 0
    play(env, [1, 2, 3], seed=1)
    assert [ep["seed"] for ep in read_transcripts(path)] == [1] and env.episodes_written == 1


def test_preference_pairs_pair_the_best_and_worst_completion_of_a_hidden_task(tmp_path):
    path = record_chats(tmp_path / "t.jsonl", [(0, [4]), (0, [1]), (0, [2]), (1, [3]), (1, [3]), (2, [2])])
    pairs = to_preference_pairs(path)
    assert len(pairs) == 1  # seed 1: one completion twice; seed 2: one episode; same prompt, other tasks
    p = pairs[0]
    assert p.seed == 0 and p.env_id is None and p.prompt == [{"role": "user", "content": "Talk to me."}]
    assert p.chosen == [{"role": "assistant", "content": "Reply 4"}] and p.score_chosen == 1.0
    assert p.rejected == [{"role": "assistant", "content": "Reply 1"}] and p.score_rejected == 0.25
    assert set(p.as_dict()) >= {"prompt", "chosen", "rejected"}
    assert to_preference_pairs(path, min_margin=0.75) == []  # 1.0 - 0.25 is not more than 0.75
    # by the truth: the reply the seed-0 user needed wins, whatever the rater said
    needed = ChatEnv(interface="discrete")
    needed.reset(seed=0)
    truth_pairs = to_preference_pairs(path, by="true_utility")
    if needed.hidden_task() in (4, 1, 2):
        assert truth_pairs[0].chosen[0]["content"] == f"Reply {needed.hidden_task()}"
    else:
        assert truth_pairs == []


def test_completions_stop_before_the_persons_last_reaction(tmp_path):
    path = record_chats(tmp_path / "t.jsonl", [(0, [4, 0]), (0, [1, 1])], length=2)
    p = to_preference_pairs(path)[0]
    assert [m["role"] for m in p.chosen] == ["assistant", "user", "assistant"]
    assert p.chosen[1]["content"] == "Noted 4." and p.score_chosen == 1.0 and p.score_rejected == 0.5


def test_hindsight_chains_run_from_worst_to_best_with_the_feedback_said(tmp_path):
    path = record_chats(tmp_path / "t.jsonl", [(0, [4]), (0, [1]), (0, [2]), (1, [3])])
    chains = to_hindsight_chains(path)
    assert [len(c.links) for c in chains] == [3, 1]
    links = chains[0].links
    assert [link.output for link in links] == ["Reply 1", "Reply 2", "Reply 4"]
    assert [link.feedback for link in links] == ["Rating: 2.00", "Rating: 3.00", "Rating: 5.00"]
    assert [link.score for link in links] == [0.25, 0.5, 1.0]
    assert chains[0].text().splitlines() == ["user: Talk to me.", "Output: Reply 1", "Feedback: Rating: 2.00",
                                             "Output: Reply 2", "Feedback: Rating: 3.00",
                                             "Output: Reply 4", "Feedback: Rating: 5.00"]


def test_pairs_from_a_real_task_prefer_the_higher_return(tmp_path):
    from fbenv.envs.advisor import flatterer, honest

    path = tmp_path / "advisor.jsonl"
    env = RecordTranscripts(fbenv.make("fbenv/Advisor-v0", interface="discrete"), path)
    for seed in range(6):
        for adviser in (flatterer, honest):
            _, info = env.reset(seed=seed)
            done = False
            while not done:
                _, _, te, tr, info = env.step(adviser(env.unwrapped.hidden_task(), info["turn"]))
                done = te or tr
    episodes = read_transcripts(path)
    pairs = to_preference_pairs(path)
    assert pairs and len(pairs) <= 6
    for p in pairs:
        assert p.score_chosen > p.score_rejected and p.chosen != p.rejected and p.chosen[-1]["role"] == "assistant"
        ours = [e for e in episodes if e["seed"] == p.seed]
        assert {p.score_chosen, p.score_rejected} == {e["return"] for e in ours}


def test_transcript_files_are_read_loudly(tmp_path):
    with pytest.raises(fbenv.InvalidArgumentError, match="not a file"):
        to_preference_pairs(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "fbenv-transcript-1"\n')
    with pytest.raises(fbenv.InvalidArgumentError, match="bad.jsonl:1: expects a JSON line"):
        to_hindsight_chains(bad)
    bad.write_text('{"some": "other log"}\n')
    with pytest.raises(fbenv.InvalidArgumentError, match="fbenv-transcript-1"):
        read_transcripts(bad)
    with pytest.raises(fbenv.UnknownNameError):
        to_preference_pairs(bad, by="rating")
    with pytest.raises(fbenv.InvalidArgumentError, match="expects a file"):
        RecordTranscripts(chat(), tmp_path)


def test_scripted_llm_feedback_is_recorded_as_json(tmp_path):
    """LLM records (raw replies, seeds, usage) survive the trip to JSON."""
    path = tmp_path / "g.jsonl"
    env = RecordTranscripts(fbenv.make("toy/Guess-v0", interface="text", simulator="llm",
                                       llm=ScriptedBackend([("", "Rating: 5")])), path)
    env.reset(seed=0)
    env.step("Buy the red one.")
    (ep,) = read_transcripts(path)
    (record,) = ep["steps"][0]["feedback"]
    assert record["simulator"] == "llm" and record["raw"] == "Rating: 5" and record["scalar"] == 5.0
    assert record["usage"]["calls"] == 1 and isinstance(record["seed"], int) and record["scale"] == [1.0, 5.0]
    assert ep["env_kwargs"] == {"interface": "text", "simulator": "llm", "llm": "scripted"}  # a backend by its spec


def test_single_seat_trains_one_seat_of_a_multi_agent_task():
    """Gymnasium's checker passes around one seat of a PettingZoo task, the other seats
    simulated, and the seat's reward and hidden objective pass through unchanged."""
    from gymnasium.utils.env_checker import check_env

    from fbenv.wrappers import SingleSeat

    make = lambda: fbenv.make("fbenv/ActorCritic-v0", interface="discrete", learnable="critic_0")  # noqa: E731
    env = SingleSeat(make())
    check_env(env, skip_render_check=True)
    raw = make()
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        robs, rinfos = raw.reset(seed=seed)
        assert np.array_equal(obs, robs["critic_0"]) and info.keys() == rinfos["critic_0"].keys()
        done = False
        while not done:
            obs, r, term, trunc, info = env.step(1)
            robs, rr, rterm, rtrunc, rinfos = raw.step({"critic_0": 1})
            assert r == rr["critic_0"] and info["true_utility"] == rinfos["critic_0"]["true_utility"]
            done = term or trunc
    with pytest.raises(fbenv.InvalidArgumentError, match="one learnable seat"):
        SingleSeat(fbenv.make("fbenv/ActorCritic-v0", interface="discrete"))
    with pytest.raises(fbenv.InvalidArgumentError, match=r"missing \['critic_0'\]"):
        SingleSeat(fbenv.make("fbenv/ActorCritic-v0", interface="discrete"), "actor_0")
