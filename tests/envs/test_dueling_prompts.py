"""DuelingPrompts (APOHF): the hidden utility, the Bradley-Terry user, the LLM user, and the paper's direction."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import fbenv
from fbenv.agents.bandits import DoubleThompsonSampling
from fbenv.baselines.dueling import dts_policy, regret_curve
from fbenv.envs import dueling_prompts as D
from fbenv.episodes import run_episode
from fbenv.feedback import Source
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult

ENV_ID = "fbenv/DuelingPrompts-v0"


def make(**kw):
    return fbenv.make(ENV_ID, **kw)


def scenario(seed: int, **kw) -> D.Scenario:
    env = make(interface="discrete", **kw)
    env.reset(seed=seed)
    return env.unwrapped.hidden_task()


# ---------------------------------------------------------------- the hidden task


def test_utility_is_linear_in_the_prompt_features_and_drawn_from_the_seed():
    for seed in range(20):
        s = scenario(seed)
        x = np.asarray(s.traits, dtype=float)
        assert len({tuple(r) for r in s.traits}) == 8  # distinct candidates
        scores = x @ np.asarray(s.weights)
        assert np.allclose(s.utilities, (scores - scores.min()) / (scores.max() - scores.min()))
        assert s.utilities[s.best] == 1.0 and s.utilities[s.worst] == 0.0
        assert s == scenario(seed)  # the seed alone decides it
    assert scenario(0) != scenario(1)
    assert len(scenario(3, n_prompts=32).traits) == 32


def test_same_seed_same_answers_and_both_views_agree():
    text, disc = make(), make(interface="discrete")
    runs = []
    for env in (make(interface="discrete"), disc):
        env.reset(seed=7)
        runs.append([env.step(a)[4]["preference"] for a in range(64)])
    assert runs[0] == runs[1]
    text.reset(seed=7)
    assert [text.step(f"{a // 8} vs {a % 8}")[4]["preference"] for a in range(64)] == runs[0]
    other = make(interface="discrete")
    other.reset(seed=8)
    assert [other.step(a)[4]["preference"] for a in range(64)] != runs[0]


def test_rule_user_is_bradley_terry_on_the_utility_difference():
    env = make(interface="discrete", horizon=3000, beta=4.0).unwrapped
    env.reset(seed=2)
    s = env.task
    # a pair with a middling gap, so the probability is far from 0 and 1
    i, j = min(((a, b) for a in range(8) for b in range(8) if a != b),
               key=lambda p: abs(s.utilities[p[0]] - s.utilities[p[1]] - 0.25))
    p = 1.0 / (1.0 + math.exp(-4.0 * (s.utilities[i] - s.utilities[j])))
    wins, records = [], []
    for _ in range(3000):
        _, reward, _, _, info = env.step(D.pair_action(i, j, 8))
        wins.append(reward)
        records.append(info["feedback"][0])
    assert abs(np.mean(wins) - p) < 0.03
    assert all(r.source is Source.USER and r.distribution == pytest.approx((p, 1 - p)) for r in records)
    assert all(float(r.preference == 0) == w for r, w in zip(records, wins))


def test_truth_regret_and_outcomes():
    env = make(interface="discrete", horizon=5)
    env.reset(seed=0)
    s = env.unwrapped.task
    pairs = [(s.best, s.worst), (s.worst, s.worst), (s.worst, s.best), (0, 1), (s.best, s.best)]
    weak = strong = 0.0
    for n, (i, j) in enumerate(pairs, 1):
        _, reward, terminated, truncated, info = env.step(D.pair_action(i, j, 8))
        better = max(s.utilities[i], s.utilities[j])
        weak += 1 - better
        strong += 1 - (s.utilities[i] + s.utilities[j]) / 2
        assert info["pair"] == (i, j) and reward == float(info["preference"] == 0)
        assert info["true_utility"] == better and info["regret"] == pytest.approx(1 - better)
        assert info["is_success"] == (s.best in (i, j))
        assert info["cumulative_regret"] == pytest.approx(weak)
        assert info["cumulative_strong_regret"] == pytest.approx(strong)
        assert not terminated and truncated == (n == 5)  # a budget: truncated, never terminated
    outcomes = info["episode_result"]["outcomes"]
    assert outcomes == {"cumulative_regret": pytest.approx(weak), "cumulative_strong_regret": pytest.approx(strong),
                        "invalid_actions": 0}


def test_discrete_observation_tracks_the_duels():
    env = make(interface="discrete")
    obs, _ = env.reset(seed=1)
    s = env.unwrapped.task
    assert obs.shape == (57,) and np.array_equal(obs[:40], np.asarray(s.traits, dtype=np.float32).reshape(-1))
    assert np.all(obs[40:48] == 0.5) and np.all(obs[48:] == 0.0)
    obs, *_, info = env.step(D.pair_action(2, 5, 8))
    won, lost = (2, 5) if info["preference"] == 0 else (5, 2)
    assert obs[40 + won] == 1.0 and obs[40 + lost] == 0.0
    assert obs[48 + 2] == obs[48 + 5] == pytest.approx(1 / 200) and obs[-1] == pytest.approx(1 / 200)


def test_a_reply_naming_no_valid_pair_is_an_observation():
    env = make(horizon=4)
    env.reset(seed=0)
    for reply in ("I like the second one", "9 vs 1", "3"):
        obs, reward, terminated, truncated, info = env.step(reply)
        assert info["invalid_action"] and reward == 0.0 and info["regret"] == 1.0
        assert info["feedback"] == () and "preference" not in info
        assert "Please name two prompt ids from 0 to 7" in info["messages"][-1]["content"]
    _, _, _, truncated, info = env.step("Let's try prompt 3 against prompt 5.")
    assert info["pair"] == (3, 5) and truncated and info["invalid_actions"] == 3
    assert "3: " in obs and "Wins/duels so far" in obs
    with pytest.raises(fbenv.InvalidArgumentError, match="expects a str"):
        env.step(3)
    d = make(interface="discrete")
    d.reset(seed=0)
    with pytest.raises(fbenv.InvalidArgumentError, match=r"\[0, 64\)"):
        d.step(64)


def test_transcript_keeps_a_window_of_recent_duels():
    env = make(interface="discrete")
    env.reset(seed=0)
    for a in range(50):
        _, _, _, _, info = env.step(a)
    messages = info["messages"]
    assert messages[0]["role"] == "system" and "Candidate prompts:" in messages[0]["content"]
    assert len(messages) == 1 + 2 * D.MEMORY
    assert messages[-2]["content"] == "6 vs 1"  # action 49


def test_bad_arguments_are_typed():
    for kw, pattern in (({"n_prompts": 1}, "n_prompts"), ({"n_prompts": 33}, "n_prompts"),
                        ({"n_prompts": "8"}, "n_prompts: expects an int"), ({"horizon": 0}, "horizon"),
                        ({"beta": 0}, "beta"), ({"beta": "high"}, "beta: expects a finite number")):
        with pytest.raises(fbenv.InvalidArgumentError, match=pattern):
            make(**kw)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'holistic'"):
        make(llm_prompting="holistc")
    with pytest.raises(fbenv.UnknownNameError):
        make(n_prompt=8)


# ---------------------------------------------------------------- the paper's direction


def test_double_thompson_sampling_finds_the_best_prompt():
    """APOHF: learning from preferences alone, regret flattens out; random pairs keep paying."""
    env = make(interface="discrete", horizon=300)
    rng = np.random.default_rng(0)
    dts, rand = [], []
    for seed in range(8):
        curve, info = regret_curve(env, dts_policy(env, seed), seed)
        dts.append(curve)
        assert info["is_success"]  # the last pair holds the best prompt
        rand.append(regret_curve(env, lambda obs, info: int(rng.integers(64)), seed)[0])
    dts, rand = np.array(dts), np.array(rand)
    first, second = dts[:, :150].sum(1).mean(), dts[:, 150:].sum(1).mean()
    assert second < 0.2 * first  # sublinear: the second half costs far less than the first
    assert dts.sum(1).mean() < 0.2 * rand.sum(1).mean()
    assert rand[:, 150:].sum(1).mean() > 0.8 * rand[:, :150].sum(1).mean()  # random stays linear


def test_dts_reads_the_pair_and_preference_from_info():
    env = make(interface="discrete")
    _, info = env.reset(seed=0)
    agent = DoubleThompsonSampling(8)
    agent.reset(0)
    _, _, _, _, info = env.step(D.pair_action(1, 2, 8))
    agent.update(fbenv.agents.base.Transition(None, info["pair"], 0.0, None, False, False, info))
    won, lost = (1, 2) if info["preference"] == 0 else (2, 1)
    assert agent.wins[won, lost] == 1 and agent.wins.sum() == 1


def test_probe_direction_under_the_rule_user():
    probe = D.fidelity_probe()
    results = {}
    for name, factory in probe.policies.items():
        results[name] = []
        for seed in range(6):
            env = make(interface="discrete", horizon=20)
            results[name].append(run_episode(env, factory(env), seed))
    assert all(r.is_success for r in results["best_first"])
    assert D.preference_gap("focused", results) > 0.5
    again = run_episode(env, probe.policies["random"](env), 5)
    assert again == results["random"][5]  # the random pairs repeat


# ---------------------------------------------------------------- LLM simulator


class TraitReader(Backend):
    """A faithful reader of the trait statements: picks the one the reply text bears out."""

    spec = model = "trait-reader"
    scores_choices = True
    MARKERS = ("For example,", "Step 1:", None, "Great question!", "In summary,")

    def __init__(self):
        self.calls = []

    def _generate(self, requests):
        out = []
        for req in requests:
            self.calls.append(req)
            choices, text = req.sampling.choices, req.messages[-1].content.split("\n\n")[0]
            f = next(n for n, t in enumerate(D.TRAITS) if choices[1] == t[4])  # the "fails" statement
            if text == "N/A":  # the content-free prompt
                probs = (0.5, 0.5)
            else:
                topic = next(t for t in D.TOPICS if any(s in text for s in t.plain + t.technical))
                has = topic.technical[0] in text if f == 2 else self.MARKERS[f] in text
                probs = (1.0 - 1e-9, 1e-9) if has else (1e-9, 1.0 - 1e-9)
            out.append(ChatResult(choices[int(np.argmax(probs))], choice_logprobs=tuple(np.log(probs))))
        return out


def test_templated_responses_show_exactly_their_traits():
    reader = TraitReader()
    for topic in D.TOPICS:
        for combo in range(D.MAX_PROMPTS):
            traits = [(combo >> f) & 1 for f in range(D.N_TRAITS)]
            text = D.response_text(topic, traits)
            for f in range(D.N_TRAITS):
                has = topic.technical[0] in text if f == 2 else reader.MARKERS[f] in text
                assert has == bool(traits[f]), (topic.question, traits, f)
            asks = D.prompt_text(traits)
            assert all((D.TRAITS[f][0] in asks) == bool(traits[f]) for f in range(D.N_TRAITS))


def test_a_faithful_reader_reproduces_the_rule_user():
    rule, llm = make(interface="discrete"), make(interface="discrete", simulator="llm", llm=TraitReader())
    rule.reset(seed=3)
    llm.reset(seed=3)
    for a in range(64):
        r, l_ = rule.step(a)[4], llm.step(a)[4]
        assert r["preference"] == l_["preference"]  # the same coin, the same probability
        pr, pl = r["feedback"][0].distribution[0], l_["feedback"][0].distribution[0]
        assert pl == pytest.approx(pr, abs=1e-6)
        record = l_["feedback"][0]
        if a // 8 != a % 8:
            assert record.simulator == "llm" and record.parsed and record.fallback is None and l_["llm_seeds"]
        else:
            assert record.simulator == "rule" and l_["llm_seeds"] == ()  # one response twice: no model


def test_focused_questions_read_one_response_and_one_trait_at_a_time():
    reader = TraitReader()
    env = make(interface="discrete", simulator="llm", llm=reader)
    env.reset(seed=0)
    s = env.unwrapped.task
    i, j = 0, 1
    env.step(D.pair_action(i, j, 8))
    differ = [f for f in range(D.N_TRAITS) if s.traits[i][f] != s.traits[j][f]]
    asked = [r for r in reader.calls if not r.messages[-1].content.startswith("N/A")]
    assert len(asked) == 2 * len(differ)
    responses = env.unwrapped.responses
    for n, req in enumerate(asked):
        context = req.messages[-1].content.split("\n\n")[0]
        assert context == f"Reply: {responses[(i, j)[n % 2]]}"  # one response in front of the model
        assert req.sampling.choices == D.TRAITS[differ[n // 2]][3:]


class Holistic(Backend):
    """Scores "Preference: A" at ``p_a`` on real replies and 0.5 on the content-free prompt."""

    spec = model = "holistic"
    scores_choices = True

    def __init__(self, p_a: float):
        self.p_a, self.calls = p_a, []

    def _generate(self, requests):
        out = []
        for req in requests:
            self.calls.append(req)
            p = 0.5 if "Reply A: N/A" in req.messages[-1].content else self.p_a
            out.append(ChatResult(req.sampling.choices[0 if p >= 0.5 else 1],
                                  choice_logprobs=(math.log(p), math.log(1 - p))))
        return out


def test_holistic_user_weighs_the_scored_choices_with_the_same_coin():
    backend = Holistic(0.8)
    env = make(interface="discrete", simulator="llm", llm=backend, llm_prompting="holistic")
    env.reset(seed=0)
    coins = np.random.default_rng(env.unwrapped.task.coin_seed).random(20)
    for t in range(20):
        info = env.step(D.pair_action(0, 1, 8))[4]
        record = info["feedback"][0]
        assert record.distribution == pytest.approx((0.8, 0.2)) and record.simulator == "llm"
        assert info["preference"] == (0 if coins[t] < 0.8 else 1)
    req = backend.calls[0]
    assert req.sampling.choices == ("Preference: A", "Preference: B")
    s = env.unwrapped.task
    assert D.TOPICS[s.topic].question in req.messages[0].content
    assert env.unwrapped.responses[0] in req.messages[-1].content
    assert env.unwrapped.responses[1] in req.messages[-1].content
    assert any("Reply A: N/A" in r.messages[-1].content for r in backend.calls)  # calibrated


def test_a_server_that_writes_freely_is_parsed():
    env = make(interface="discrete", simulator="llm", llm_prompting="holistic",
               llm=ScriptedBackend([(r"Reply A", "I prefer B.")]))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(D.pair_action(0, 1, 8))
    assert info["preference"] == 1 and reward == 0.0 and info["feedback"][0].parsed
    env = make(interface="discrete", simulator="llm",
               llm=ScriptedBackend([(r"What did you notice", "Yes.")]))
    env.reset(seed=0)
    record = env.step(D.pair_action(0, 1, 8))[4]["feedback"][0]
    assert record.parsed and record.distribution == (0.5, 0.5)  # "yes" to both replies: no difference seen


def test_a_blind_simulator_flips_fair_coins():
    env = make(interface="discrete", simulator="llm", llm=ChoosingBackend("blind"))
    env.reset(seed=0)
    for a in range(64):
        assert env.step(a)[4]["feedback"][0].distribution == (0.5, 0.5)


def test_unreadable_replies_fall_back_or_truncate():
    env = make(interface="discrete", simulator="llm", llm=ScriptedBackend([], default="mmm"))
    env.reset(seed=0)
    _, _, _, truncated, info = env.step(D.pair_action(0, 1, 8))
    record = info["feedback"][0]
    assert not truncated and not record.parsed and record.fallback == "rule" and record.raw
    assert env.unwrapped.parse_stats.fallbacks == 1
    env = make(interface="discrete", simulator="llm", llm=ScriptedBackend([], default="mmm"), on_parse_error="truncate")
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(D.pair_action(0, 1, 8))
    assert truncated and not terminated and reward == 0.0 and "unparseable" in info["feedback_error"]


def test_sb3_trains_on_the_discrete_view():
    sb3 = pytest.importorskip("stable_baselines3")
    env = gym.make(ENV_ID, interface="discrete", horizon=16)
    model = sb3.PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.learn(64)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))


def test_fidelity_tells_a_faithful_reader_from_noise():
    from fbenv import fidelity as fid

    faithful = fid.measure(ENV_ID, llm=TraitReader(), seeds=range(4), variants=["focused"]).variants[0]
    noisy = fid.measure(ENV_ID, llm=ChoosingBackend(), seeds=range(4), variants=["focused"]).variants[0]
    assert faithful.reward_spearman > 0.99 and faithful.roles[0].spearman > 0.99
    assert faithful.direction_holds and faithful.direction_llm == pytest.approx(faithful.direction_rule)
    assert noisy.roles[0].spearman < 0.5 and noisy.direction_llm < faithful.direction_llm - 0.5
