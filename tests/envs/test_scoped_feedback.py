"""ScopedFeedback: the known answers of the scripted policies, the scope kept out of the
observation, distance, both views, the LLM user's paths and the fidelity probe."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fbenv
from fbenv.envs import responses as R
from fbenv.envs import scoped_feedback as S
from fbenv.episodes import run_episode
from fbenv.llm import ScriptedBackend
from fbenv.llm.base import Backend, ChatResult
from fbenv.testing import check_spec_card

ENV_ID = "fbenv/ScopedFeedback-v0"
SEEDS = range(30)


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", **kw})


def episodes(policy, seeds=SEEDS, **kw):
    env = make(**kw)
    return [run_episode(env, S.play(policy)(env), seed) for seed in seeds]


def mean(results, key):
    return float(np.mean([r.outcomes[key] for r in results]))


def per_request(results, what):
    return float(np.mean([getattr(r, what) / r.turns for r in results]))


FEATURE_OF = {"The response is a bulleted list.": "is_list", "The response is written formally.": "formal",
              "The response contains emoji.": "emoji"}


class FaithfulUser(Backend):
    """Reads the rule's feature of a response as the mechanical reader does (0.9 / 0.1), an even
    split on the content-free ``N/A`` prompt; a statement request gets its first phrasing."""

    spec = model = "faithful-user"
    scores_choices = True

    def _generate(self, requests):
        out = []
        for req in requests:
            choices = req.sampling.choices
            parts = req.messages[-1].content.split("\n\n")
            probs = np.full(len(choices), 1.0 / len(choices))
            if len(choices) == 2 and parts[0].startswith("Request: "):
                request = next(r for r in R.BANK if parts[0] == f"Request: {r.text}")
                text = "\n\n".join(parts[1:-1]).removeprefix("Response: ")
                present = getattr(R.read_features(request, text), FEATURE_OF[choices[0]])
                probs = np.array([0.9, 0.1] if present else [0.1, 0.9])
            elif parts[0] != "N/A":
                probs = np.array([1.0] + [1e-6] * (len(choices) - 1))
                probs /= probs.sum()
            out.append(ChatResult(choices[int(np.argmax(probs))], choice_logprobs=tuple(np.log(probs))))
        return out


# ---------------------------------------------------------------- the known answers


@pytest.mark.parametrize("kw", [{}, {"reveal": "implicit", "distance": 0}, {"horizon": 5, "n_candidates": 2},
                                {"distance": 20, "n_candidates": 8, "horizon": 12}])
def test_scripted_policies_have_their_known_adherence_and_overgeneralization(kw):
    expected = {"always-apply": (1.0, 1.0), "in-scope-only": (1.0, 0.0), "ignore": (0.0, 0.0)}
    for name, (adherence, over) in expected.items():
        for r in episodes(name, range(12), **kw):
            assert (r.outcomes["adherence"], r.outcomes["overgeneralization"]) == (adherence, over), name
            assert r.outcomes["in_scope_requests"] >= 1 and r.outcomes["out_of_scope_requests"] >= 1


def test_feedback_rewards_the_scoped_policy_and_the_truth_agrees():
    runs = {name: episodes(name) for name in S.POLICIES}
    scoped, always, ignore = (runs[n] for n in ("in-scope-only", "always-apply", "ignore"))
    assert per_request(scoped, "reward") == 1.0 and all(r.regret == pytest.approx(0.0) for r in scoped)
    for other in (always, ignore):  # half the requests are in scope: each wrong on about half
        assert 0.3 < per_request(other, "reward") < 0.7
        assert per_request(scoped, "true_utility") > per_request(other, "true_utility") + 0.2
    assert S.scope_gain("explicit", runs) > 0.3
    random = [run_episode(make(), (lambda rng: lambda o, i: int(rng.integers(4)))(np.random.default_rng(s)), s)
              for s in SEEDS]
    assert 0.3 < mean(random, "adherence") < 0.7 and 0.3 < mean(random, "overgeneralization") < 0.7


def test_every_request_is_one_where_the_rule_matters_and_twins_differ_only_in_it():
    env = make(n_candidates=6, horizon=12)
    base = env.unwrapped
    for seed in range(40):
        env.reset(seed=seed)
        rule, scope = base.rule, base.scope
        for t in base.task.turns:
            req = R.BY_ID[t.request]
            assert rule.matters(req) and S.in_scope(scope, req) == t.in_scope
            for d in t.candidates:
                assert rule.applied(R.read_features(req, R.render(d))) == rule.applied(R.draft_features(d))
                twin = dataclasses.replace(d, **{rule.attr: not getattr(d, rule.attr)})
                assert twin in t.candidates
            assert sum(rule.applied(R.draft_features(d)) for d in t.candidates) == 3
        flags = [t.in_scope for t in base.task.turns]
        assert sum(flags) == 6


# ---------------------------------------------------------------- what the agent may know


def test_the_scope_never_leaks_into_the_discrete_observation():
    env = make()
    base = env.unwrapped
    rows, labels = [], []
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        for _ in range(base.horizon):
            t = base.current()
            # the same state with the request's scope membership flipped: not one number moves
            real = base.task
            base.task = dataclasses.replace(real, turns=tuple(
                dataclasses.replace(x, in_scope=not x.in_scope) if x is t else x for x in real.turns))
            assert np.array_equal(base.features(), obs)
            base.task = real
            rows.append(obs)
            labels.append(t.in_scope)
            obs, *_ = env.step(S.in_scope_only(base))
    rows, labels = np.array(rows), np.array(labels)
    assert not any(np.array_equal(rows[:, j] > 0.5, labels) for j in range(rows.shape[1]))
    # what it does hold is the gist the user said: its rule and its scope
    env.reset(seed=3)
    obs = env.unwrapped.features()
    assert obs[base.task.rule] == 1.0 and obs[len(S.RULES) + base.task.scope] == 1.0


def test_the_text_view_names_the_scope_only_where_the_user_said_it():
    env = fbenv.make(ENV_ID, interface="text", distance=3)
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        base = env.unwrapped
        said = info["feedback"][0].text
        assert said in obs
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(base.candidate_replies()[0])
            done = term or trunc
            assert "scope" not in obs.lower() and "in_scope" not in str(info["messages"])
        rest = obs.replace(said, "")
        if base.reveal == "explicit":
            assert base.scope.when not in rest and base.rule.do not in rest
        assert said in obs  # the whole session stays in view


@pytest.mark.parametrize("reveal", S.REVEALS)
def test_statements_say_the_rule_and_scope_explicitly_or_only_hint(reveal):
    for rule_i, scope_i in S.PAIRS:
        rule, scope = S.RULES[rule_i], S.SCOPES[scope_i]
        for said in S.phrasings(rule, scope, reveal):
            if reveal == "explicit":
                assert scope.when in said and (rule.do in said or rule.pref in said)
            else:
                assert scope.topic in said and rule.do not in said and scope.when not in said


# ---------------------------------------------------------------- distance


def test_distance_counts_exchanges_and_a_bounded_memory_forgets_with_it():
    for distance in (0, 7):
        for r in episodes("in-scope-only", range(5), distance=distance, horizon=10):
            pairs = r.outcomes["adherence_by_distance"]
            assert len(pairs) == r.outcomes["in_scope_requests"] == 5
            assert all(distance <= d < distance + 10 and a == 1.0 for d, a in pairs)
    env = fbenv.make(ENV_ID, interface="text", distance=7)
    obs, _ = env.reset(seed=0)
    assert obs.count("\nAssistant: ") == 8  # the acknowledgement and seven filler answers
    short = [r for r in episodes(S.forgets_after(8), range(20), distance=4, horizon=12)]
    pairs = [p for r in short for p in r.outcomes["adherence_by_distance"]]
    near = np.mean([a for d, a in pairs if d <= 8])
    far = np.mean([a for d, a in pairs if d > 8])
    assert near == 1.0 and far == 0.0


# ---------------------------------------------------------------- both views, bad input


def test_free_text_answers_are_read_and_blank_ones_flagged():
    env = fbenv.make(ENV_ID, interface="text")
    for seed in range(20):
        env.reset(seed=seed)
        base = env.unwrapped
        if base.rule.key == "list":
            break
    assert base.rule.key == "list"
    req = R.BY_ID[base.current().request]
    bullets = "Here you go.\n" + "\n".join(f"- {p.sentence}" for p in req.spec.points)
    _, reward, _, _, info = env.step(bullets)
    assert info["applied"] and reward == float(info["in_scope"]) and not info["invalid_action"]
    _, reward, _, _, info = env.step("   ")
    assert info["invalid_action"] and not info["applied"] and reward == float(not info["in_scope"])


def test_both_views_play_the_same_choices_identically():
    for name in S.POLICIES:
        disc = episodes(name, range(4), reveal="implicit")
        env = fbenv.make(ENV_ID, interface="text", reveal="implicit")
        text = [run_episode(env, S.play(name)(env), s) for s in range(4)]
        assert [r.reward for r in disc] == [r.reward for r in text]
        assert [r.outcomes for r in disc] == [r.outcomes for r in text]


def test_caller_mistakes_are_typed():
    with pytest.raises(fbenv.UnknownNameError, match="reveal"):
        fbenv.make(ENV_ID, reveal="implict")
    with pytest.raises(fbenv.InvalidArgumentError, match="distance"):
        fbenv.make(ENV_ID, distance=41)
    with pytest.raises(fbenv.InvalidArgumentError, match="n_candidates"):
        fbenv.make(ENV_ID, n_candidates=3)
    with pytest.raises(fbenv.InvalidArgumentError, match="horizon"):
        fbenv.make(ENV_ID, horizon=1)


def test_spec_card():
    check_spec_card(fbenv.spec(ENV_ID))


# ---------------------------------------------------------------- the LLM user


def test_llm_user_with_a_faithful_reader_judges_as_the_rule_user():
    for name in S.POLICIES:
        rule = episodes(name, range(8), reveal="implicit")
        llm = episodes(name, range(8), reveal="implicit", simulator="llm", llm=FaithfulUser())
        assert all(r.fallbacks == 0 and r.parse_failures == 0 for r in llm)
        assert [r.reward for r in llm] == [r.reward for r in rule]
        assert [r.outcomes for r in llm] == [r.outcomes for r in rule]  # the metrics are read mechanically
    env = make(simulator="llm", llm=FaithfulUser())
    _, info = env.reset(seed=0)
    assert info["feedback"][0].simulator == "llm" and info["feedback"][0].text == S.phrasings(
        env.unwrapped.rule, env.unwrapped.scope, "explicit")[0]
    _, _, _, _, info = env.step(0)
    record = next(f for f in info["feedback"] if f.simulator == "llm")
    assert record.parsed and record.scalar == float(info["satisfied"])


def test_llm_user_with_a_choosing_backend_parses_everything():
    env = make(simulator="llm", llm="choosing", reveal="implicit")
    for seed in range(3):
        r = run_episode(env, S.play("in-scope-only")(env), seed)
        assert r.fallbacks == 0 and r.parse_failures == 0 and r.turns == 8
    assert env.unwrapped.parse_stats.calls > 0 and env.unwrapped.parse_stats.failures == 0


def test_llm_user_in_its_own_words():
    words = "Honestly, bullet points make my eyes glaze over."
    person = ScriptedBackend([(r"Which message do you send", words),
                              (r"How is the response|What does the response", "Yes.")])
    env = fbenv.make(ENV_ID, interface="text", simulator="llm", llm=person)
    obs, info = env.reset(seed=0)
    assert f"User: {words}" in obs and info["feedback"][0].text == words
    _, _, _, _, info = env.step("Anything.")
    assert all(f.parsed for f in info["feedback"])


def test_fidelity_probe_keeps_the_direction_on_both_users():
    probe = S.fidelity_probe()
    assert set(probe.variants) == {"explicit", "implicit"} and probe.expected_sign == {"explicit": 1, "implicit": 1}
    for kw in ({}, {"simulator": "llm", "llm": FaithfulUser()}):
        for variant, extra in probe.variants.items():
            env = make(**extra, **kw)
            results = {n: [run_episode(env, f(env), s) for s in range(6)] for n, f in probe.policies.items()}
            assert probe.direction(variant, results) > 0.2
