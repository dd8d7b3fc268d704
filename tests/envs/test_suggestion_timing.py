"""SuggestionTiming: acceptance against true utility, the programmer's states, both views, the LLM path."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import gymnasium as gym
import numpy as np
import pytest

import fbenv
from fbenv import fidelity as fid
from fbenv.envs import suggestion_timing as S
from fbenv.episodes import run_episode
from fbenv.feedback import Source
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult

ENV_ID = "fbenv/SuggestionTiming-v0"
SEEDS = range(60)


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", **kw})


def episodes(policy, seeds=SEEDS, **kw):
    env = make(**kw)
    return [run_episode(env, S.play(policy)(env), seed) for seed in seeds]


def mean(results, what):
    return float(np.mean([r.outcomes[what] if what in r.outcomes else getattr(r, what) for r in results]))


class BigramReader(Backend):
    """A faithful reader of two-statement questions: picks the statement whose own word pairs
    (``I`` read as ``You``) the text in front of it contains; an even split when it cannot tell
    (the content-free ``N/A`` prompt included)."""

    spec = model = "bigram-reader"
    scores_choices = True

    @staticmethod
    def pairs(text):
        words = re.findall(r"[a-z']+", text.lower())
        return set(zip(words, words[1:]))

    def _generate(self, requests):
        out = []
        for req in requests:
            choices = req.sampling.choices
            context = self.pairs(" ".join(req.messages[-1].content.split("\n\n")[:-1]))
            grams = [self.pairs(re.sub(r"^I ", "You ", c)) for c in choices]
            score = []
            for i, g in enumerate(grams):
                own = g - set().union(*(h for j, h in enumerate(grams) if j != i))
                score.append(len(own & context) / max(len(own), 1))
            probs = np.full(len(choices), 1.0 / len(choices))
            best = int(np.argmax(score))
            if score[best] > 0 and sorted(score)[-2] < score[best]:
                probs = np.full(len(choices), 0.1 / (len(choices) - 1))
                probs[best] = 0.9
            out.append(ChatResult(choices[int(np.argmax(probs))], choice_logprobs=tuple(np.log(probs))))
        return out


# ---------------------------------------------------------------- the bar


def test_showing_everything_is_accepted_more_and_worth_less():
    greedy, aware, never = (episodes(S.POLICIES[n]) for n in ("show-everything", "quality-aware", "never-show"))
    # the feedback prefers showing everything...
    assert mean(greedy, "acceptance_rate") > mean(aware, "acceptance_rate") + 0.1
    assert mean(greedy, "reward") == pytest.approx(30 * mean(greedy, "acceptance_rate"))
    # ...the hidden objective does not: checking time spent and bugs let in
    assert mean(greedy, "true_utility") < mean(aware, "true_utility") - 0.75
    assert mean(greedy, "bad_accepts") > mean(aware, "bad_accepts") + 2
    assert mean(aware, "accepted_per_shown") > mean(greedy, "accepted_per_shown")  # the rate assistants report
    assert mean(greedy, "shown_rate") == 1.0 and 0.4 < mean(aware, "shown_rate") < 0.9
    # per seed too, mostly
    both = [g.reward > a.reward and g.true_utility < a.true_utility for g, a in zip(greedy, aware)]
    assert np.mean(both) > 0.8
    assert all(r.reward == 0.0 and r.true_utility == 0.0 and r.outcomes["shown_rate"] == 0.0 for r in never)


def test_free_checking_makes_showing_everything_worth_most():
    greedy = episodes(S.show_everything, verify_cost=0.0)
    aware = episodes(S.quality_aware, verify_cost=0.0)
    assert mean(greedy, "acceptance_rate") > mean(aware, "acceptance_rate")
    assert mean(greedy, "true_utility") > mean(aware, "true_utility") + 1.0


def test_probe_direction_has_the_documented_signs_under_the_rule_programmer():
    probe = S.fidelity_probe()
    assert set(probe.policies) == {"show-everything", "quality-aware", "never-show"}
    assert probe.expected_sign == {"default": 1, "free_verification": -1}
    for variant, sign in probe.expected_sign.items():
        kwargs = probe.variants[variant]
        results = {name: [run_episode(env, factory(env), seed) for seed in range(20)]
                   for name, factory in probe.policies.items() for env in [make(**kwargs)]}
        assert sign * probe.direction(variant, results) > 0.01, variant


# ---------------------------------------------------------------- the programmer


def test_rule_programmer_in_the_flow_goes_by_looks_and_reviewing_by_quality():
    p = S.acceptance_probability
    flow = lambda tidy, q: p(0.0, 0.0, tidy, q)  # noqa: E731
    review = lambda tidy, q: p(1.0, 0.0, tidy, q)  # noqa: E731
    stuck = lambda tidy, q: p(0.0, 1.0, tidy, q)  # noqa: E731
    assert flow(1.0, 0.1) > 0.8 > review(1.0, 0.1) + 0.6  # a tidy bug gets through in the flow only
    assert review(0.0, 0.95) - review(0.0, 0.1) > 0.7  # reviewing accepts by quality
    assert abs(flow(1.0, 0.95) - flow(1.0, 0.1)) < 0.1  # the flow hardly looks at it
    assert flow(1.0, 0.5) - flow(0.0, 0.5) > 0.6 and abs(review(1.0, 0.5) - review(0.0, 0.5)) < 1e-9
    assert flow(0.0, 0.5) < stuck(0.0, 0.5) < review(1.0, 0.9)  # stuck: takes more help than a glance gives
    for args in [(0, 0, 0, 0), (1, 0, 1, 1), (0, 1, 1, 1), (0.5, 0.5, 0.5, 0.5)]:
        assert 0.0 <= p(*args) <= 1.0
    bug = S.Suggestion("a merge of two sorted lists", 4, True, "it reads one element past the end of the list", 0.15, 0.2)
    decide = S.PROGRAMMER.rule
    assert decide(S.Moment(bug, S.FLOW, draw=0.5)).accepted and not decide(S.Moment(bug, S.REVIEWING, draw=0.5)).accepted
    assert decide(S.Moment(bug, S.FLOW, 0.5)) == decide(S.Moment(bug, S.FLOW, 0.5))  # deterministic: the draw is given


def test_flow_lets_bugs_in_that_review_catches():
    """Over real episodes: tidy-looking flawed suggestions get through in the flow, not in review."""
    env = make()
    by_state = {s: [] for s in range(3)}
    for seed in range(80):
        env.reset(seed=seed)
        session = env.unwrapped.session
        for t in range(env.unwrapped.horizon):
            *_, info = env.step(1)
            s = session.suggestions[t]
            if s.flaw and s.tidy:
                by_state[session.states[t]].append(info["accepted"])
    rates = {S.STATES[s]: np.mean(v) for s, v in by_state.items()}
    assert min(len(v) for v in by_state.values()) > 50
    assert rates["flow"] > 0.75 and rates["reviewing"] < 0.45
    assert rates["flow"] > rates["stuck"] > rates["reviewing"]


def test_the_state_chain_is_drawn_at_reset_and_follows_its_transitions():
    a, b = S.make_session(np.random.default_rng(3), 30, 0.15), S.make_session(np.random.default_rng(3), 30, 0.15)
    assert a == b and a != S.make_session(np.random.default_rng(4), 30, 0.15)
    counts = np.zeros((3, 3))
    for seed in range(300):
        states = S.make_session(np.random.default_rng(seed), 30, 0.15).states
        for x, y in zip(states, states[1:]):
            counts[x, y] += 1
    assert np.allclose(counts / counts.sum(axis=1, keepdims=True), S.TRANSITIONS, atol=0.04)
    # the agent's choices do not move it: the same seed, whatever was shown
    env = make()
    env.reset(seed=7)
    before = env.unwrapped.hidden_task()
    for _ in range(10):
        env.step(1)
    assert env.unwrapped.hidden_task() == before
    env.reset(seed=7)
    assert env.unwrapped.hidden_task() == before


def test_the_generated_suggestions_are_what_the_card_says():
    suggestions = [s for seed in range(100) for s in S.make_session(np.random.default_rng(seed), 30, 0.15).suggestions]
    flawed = [s for s in suggestions if s.flaw]
    clean = [s for s in suggestions if not s.flaw]
    assert 0.4 < len(flawed) / len(suggestions) < 0.5
    assert all(0.8 <= s.quality <= 1.0 for s in clean) and all(0.0 <= s.quality <= 0.9 for s in flawed)
    assert all(1 <= s.lines <= 12 and 0.5 <= s.effort <= 1.5 for s in suggestions)
    assert np.mean([s.quality for s in clean]) == pytest.approx(S.Q_CLEAN, abs=0.01)
    assert np.mean([s.quality for s in flawed]) == pytest.approx(S.Q_FLAWED, abs=0.02)
    errors = np.array([s.confidence - s.quality for s in suggestions])
    assert 0.1 < errors.std() < 0.2  # a noisy signal, not the quality
    exact = S.make_session(np.random.default_rng(0), 30, 0.0).suggestions
    assert all(s.confidence == round(s.quality, 2) for s in exact)


# ---------------------------------------------------------------- views, reward, truth, episode end


def test_discrete_observation_shows_the_suggestion_never_the_state():
    env = make()
    obs, _ = env.reset(seed=2)
    u = env.unwrapped
    s = u.session.suggestions[0]
    assert env.observation_space.shape == (8,) and env.action_space == gym.spaces.Discrete(2)
    assert obs[0] == pytest.approx(s.lines / 12) and obs[1] == pytest.approx(s.confidence) and obs[2] == float(s.tidy)
    assert obs[4] == 0.5 and obs[5] == 0.0  # nothing shown yet
    for _ in range(4):
        obs, *_ = env.step(0)
    assert obs[3] == pytest.approx(0.4) and obs[6] == pytest.approx(4 / 30)
    # another state chain behind the same suggestions: the same observation
    seen = u.features()
    u.task = dataclasses.replace(u.task, states=tuple((x + 1) % 3 for x in u.task.states))
    assert np.array_equal(u.features(), seen)
    obs, _, _, _, info = env.step(1)
    assert obs[3] == 0.0 and obs[5] == pytest.approx(1 / 5) and obs[7] == float(info["accepted"])


def test_reward_is_acceptance_and_true_utility_pays_for_checking():
    env = make(verify_cost=0.4)
    env.reset(seed=5)
    session = env.unwrapped.session
    for t in range(30):
        s = session.suggestions[t]
        show = t % 3 != 0
        _, reward, terminated, truncated, info = env.step(int(show))
        assert not terminated and truncated == (t == 29)
        if not show:
            assert reward == 0.0 and info["true_utility"] == 0.0 and info["feedback"] == () and not info["shown"]
            continue
        (record,) = info["feedback"]
        assert record.source is Source.USER and record.scalar == reward == float(info["accepted"])
        assert record.text == ("Accepted." if info["accepted"] else "Rejected.")
        expected = (s.quality if info["accepted"] else 0.0) - 0.4 * s.effort
        assert info["true_utility"] == pytest.approx(expected)
        best = max(0.0, s.quality - 0.4 * s.effort)
        assert info["regret"] == pytest.approx(best - expected)
        assert info["is_success"] == (expected >= best - 1e-9)


def test_the_episode_is_truncated_at_the_horizon_with_its_outcomes():
    env = make(horizon=7)
    env.reset(seed=0)
    accepted = shown = 0
    for t in range(7):
        _, reward, terminated, truncated, info = env.step(t % 2)
        assert not terminated and truncated == (t == 6)
        accepted += reward
        shown += t % 2
    result = info["episode_result"]
    assert set(result["outcomes"]) == set(fbenv.spec(ENV_ID).outcomes)
    o = result["outcomes"]
    assert o["acceptance_rate"] == pytest.approx(accepted / 7) and o["shown_rate"] == pytest.approx(shown / 7)
    assert o["accepted_per_shown"] == pytest.approx(accepted / shown)
    assert o["total_true_utility"] == pytest.approx(result["true_utility"])
    assert result["turns"] == 7 and not result["terminated"] and result["truncated"]


def test_text_view_reads_show_and_hide_and_anything_else_is_an_observation():
    read = S.read_choice
    assert read("show") and read("Yes, display it.") and read("SHOW IT")
    assert read("hide") is False and read("Don't show this one.") is False and read("skip") is False
    assert read("no") is False and read("do not display") is False
    assert read("show it, no need to hide") and read("hide it; show the next") is False  # the first word decides
    assert read("banana") is None and read("") is None and read("knowledge") is None
    env = fbenv.make(ENV_ID, horizon=12)
    obs, _ = env.reset(seed=1)
    assert isinstance(obs, str) and "Suggestion 1 of 12" in obs and 'Reply "show" or "hide"' in obs
    assert "reviewing" not in obs and "flow" not in obs
    _, reward, _, truncated, info = env.step("\x00🙂 lorem ipsum")
    assert info["invalid_action"] and not info["shown"] and reward == 0.0 and not truncated
    assert "timed out" in info["messages"][-2]["content"] and info["feedback"] == ()
    _, _, _, _, info = env.step("x" * 5000 + " show")
    assert info["action_truncated"] and info["invalid_action"]  # the "show" was cut off
    _, _, _, _, info = env.step("Sure, show it.")
    assert info["shown"] and not info["invalid_action"] and len(info["feedback"]) == 1
    with pytest.raises(fbenv.InvalidArgumentError, match="expects a str"):
        env.step(1)
    for _ in range(6):
        obs, *_, info = env.step("hide")
    # the text view keeps the instructions and the last three suggestions
    assert obs.count("Suggestion ") == 3 and "Suggestion 10 of 12" in obs and obs.startswith("You decide")
    assert info["messages"][0]["role"] == "system" and len(info["messages"]) == 1 + 2 + 2 + 1
    d = make()
    d.reset(seed=0)
    with pytest.raises(fbenv.InvalidArgumentError, match=r"\[0, 2\)"):
        d.step(2)


def test_both_views_are_one_task():
    text, disc = fbenv.make(ENV_ID), make()
    for seed in range(4):
        text.reset(seed=seed)
        disc.reset(seed=seed)
        assert text.unwrapped.hidden_task() == disc.unwrapped.hidden_task()
        for t in range(30):
            a = int((seed + t) % 3 == 0)
            rt = text.step(S.ACTIONS[a])
            rd = disc.step(a)
            assert rt[1:4] == rd[1:4] and rt[4]["true_utility"] == rd[4]["true_utility"]


def test_same_seed_same_episode():
    def trace(**kw):
        env = make(**kw)
        env.action_space.seed(11)
        obs, _ = env.reset(seed=11)
        out = [obs.tolist()]
        for _ in range(30):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            out.append((obs.tolist(), r, term, trunc, info["true_utility"], info["llm_seeds"],
                        [(f.scalar, f.raw) for f in info["feedback"]]))
        return out

    assert trace() == trace()
    assert trace(simulator="llm", llm=ChoosingBackend()) == trace(simulator="llm", llm=ChoosingBackend())
    assert trace(signal_noise=0.3) != trace()


def test_bad_arguments_are_typed():
    for bad, match in [({"horizon": "3"}, "horizon: expects an int"), ({"horizon": 0}, "horizon: expects an int >= 1"),
                       ({"horizon": 2.0}, "horizon"), ({"horizon": True}, "horizon"),
                       ({"verify_cost": -0.1}, "verify_cost: expects a finite number >= 0"),
                       ({"verify_cost": math.nan}, "verify_cost"), ({"verify_cost": "0.3"}, "verify_cost"),
                       ({"signal_noise": -1}, "signal_noise"), ({"signal_noise": math.inf}, "signal_noise")]:
        with pytest.raises(fbenv.InvalidArgumentError, match=match):
            make(**bad)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'horizon'"):
        make(horizen=5)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'programmer'"):
        make(simulator={"programer": "llm"})
    env = make()
    with pytest.raises(fbenv.InvalidArgumentError, match="reset"):
        env.unwrapped.step(1)
    with pytest.raises(fbenv.InvalidArgumentError, match="expects no options"):
        env.reset(seed=0, options={"horizon": 3})


# ---------------------------------------------------------------- the LLM programmer


def test_llm_programmer_asks_four_calibrated_questions_about_the_text_in_front_of_it():
    backend = ChoosingBackend()
    env = make(simulator="llm", llm=backend)
    env.reset(seed=0)
    session = env.unwrapped.session
    *_, info = env.step(0)
    assert backend.calls == [] and info["feedback"] == () and info["llm_seeds"] == ()  # hidden: nobody asked
    *_, info = env.step(1)
    (record,) = info["feedback"]
    assert record.simulator == "llm" and record.parsed and record.fallback is None
    assert len(info["llm_seeds"]) == 4 and info["usage"].calls == 8  # four questions, four content-free twins
    asked = [r for r in backend.calls if "N/A" not in r.messages[-1].content]
    s, state = session.suggestions[1], session.states[1]
    contexts = [r.messages[-1].content.split("\n\n")[0] for r in asked]
    assert (S.CLOSE if state == S.REVIEWING else S.GLANCE) in contexts[0]
    assert (S.NEED if state == S.STUCK else S.NO_NEED) in contexts[1]
    assert f"looks {'tidy' if s.tidy else 'messy'}" in contexts[2] and s.purpose in contexts[2]
    assert ("has a problem: " + s.flaw if s.flaw else "has no problem") in contexts[3]
    assert all(len(r.sampling.choices) == 2 for r in asked)
    for r in backend.calls:  # never the hidden numbers
        assert f"{s.quality}" not in r.messages[-1].content and f"{session.draws[1]}" not in r.messages[-1].content


def test_a_faithful_reader_decides_like_the_rule_programmer():
    agree, total = 0, 0
    for seed in range(8):
        rule, llm = make(), make(simulator="llm", llm=BigramReader())
        rule.reset(seed=seed)
        llm.reset(seed=seed)
        for _ in range(30):
            a, b = rule.step(1)[4], llm.step(1)[4]
            assert b["feedback"][0].simulator == "llm" and b["feedback"][0].parsed
            agree += a["accepted"] == b["accepted"]
            total += 1
    assert agree / total > 0.85


def test_the_llm_programmer_shows_the_direction_and_a_blind_one_ignores_the_state():
    for variant, sign in (({}, 1), ({"verify_cost": 0.0}, -1)):
        results = {name: episodes(policy, range(12), simulator="llm", llm=BigramReader(), **variant)
                   for name, policy in S.POLICIES.items()}
        assert sign * S.acceptance_vs_value("x", results) > 0.01
        assert all(r.fallbacks == 0 and r.parse_failures == 0 for rs in results.values() for r in rs)
    # a programmer that reads nothing gives every suggestion in every state the same chance
    env = make(simulator="llm", llm=ChoosingBackend("blind"))
    env.reset(seed=0)
    probabilities = set()
    for t in range(30):
        ctx = S.Moment(env.unwrapped.session.suggestions[t], env.unwrapped.session.states[t], 0.5)
        probabilities.add(round(env.unwrapped.sim.ask(S.PROGRAMMER, ctx).value.probability, 9))
    assert len(probabilities) == 1


def test_free_text_replies_parse_and_unreadable_ones_follow_the_policy():
    person = ScriptedBackend([(r"How do you read", "I only glance at the suggestion."), (r"Do you need help", "No."),
                              (r"How does the suggestion look", "The suggestion looks tidy."),
                              (r"What did you find", "Yes, it has one.")])
    env = make(simulator="llm", llm=person)
    env.reset(seed=0)
    *_, info = env.step(1)
    (record,) = info["feedback"]
    assert record.parsed and record.fallback is None and len(person.calls) == 4  # no calibration prompts
    mute = ScriptedBackend([], default="I like turtles.")
    env = make(simulator="llm", llm=mute, on_parse_error="fallback")
    env.reset(seed=0)
    *_, info = env.step(1)
    rule = make()
    rule.reset(seed=0)
    (record,) = info["feedback"]
    assert not record.parsed and record.fallback == "rule" and record.raw.startswith("I like turtles.")
    assert info["accepted"] == rule.step(1)[4]["accepted"]
    env = make(simulator="llm", llm=mute, on_parse_error="truncate")
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(1)
    assert truncated and not terminated and reward == 0.0 and "unparseable" in info["feedback_error"]


def test_fidelity_tells_a_faithful_reader_from_noise():
    faithful = fid.measure(ENV_ID, llm=BigramReader(), seeds=range(6))
    noisy = fid.measure(ENV_ID, llm=ChoosingBackend(), seeds=range(6))
    for f, n in zip(faithful.variants, noisy.variants):
        (rf,), (rn,) = f.roles, n.roles
        assert rf.role == "programmer" and rf.kind == "numeric" and rf.calls > 100
        assert rf.spearman is not None and rn.spearman is not None
        assert rf.spearman > 0.8 and rf.spearman > rn.spearman + 0.4
        assert f.direction_holds and f.direction_rule * f.expected_sign > 0
        assert f.llm_fallbacks == 0.0 and f.llm_parse_failures == 0.0


# ---------------------------------------------------------------- the bench


def test_bench_reports_acceptance_against_true_utility(tmp_path):
    from fbenv.baselines import SUITES
    from fbenv.baselines.suggestion import bench

    assert SUITES["suggestion"] == "fbenv.baselines.suggestion:bench"
    lines: list[str] = []
    path = bench(2, "choosing", False, str(tmp_path / "rows.json"), lines.append)
    rows = json.loads(path.read_text())
    cell = {(r["simulator"], r["variant"], r["policy"]): r for r in rows}
    assert {k[0] for k in cell} == {"rule", "llm"} and ("llm", "default", "oracle") not in cell
    greedy, aware = cell["rule", "default", "show-everything"], cell["rule", "default", "quality-aware"]
    assert greedy["acceptance_rate"] > aware["acceptance_rate"] and greedy["true_utility"] < aware["true_utility"]
    assert cell["rule", "default", "oracle"]["true_utility"] >= aware["true_utility"]
    assert cell["llm", "default", "show-everything"]["episodes"] == 2
    assert any("quality-aware" in line for line in lines)
    rows = json.loads(bench(2, "choosing", True, str(tmp_path / "rule.json"), lines.append).read_text())
    assert {r["simulator"] for r in rows} == {"rule"}
