"""ClarifySearch: feedback-driven reformulation climbs in nDCG@3, BM25, grading, both views, the LLM path."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest

import fbenv
from fbenv import fidelity as fid
from fbenv.envs import clarify_search as C
from fbenv.episodes import run_episode
from fbenv.feedback import Source
from fbenv.llm import ChoosingBackend, ScriptedBackend
from tests.fbenv.readers import Reader

ENV_ID = "fbenv/ClarifySearch-v0"
SEEDS = range(60)


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", **kw})


def episodes(policy, seeds=SEEDS, **kw):
    env = make(**kw)
    return [run_episode(env, C.play(policy)(env), seed) for seed in seeds]


def by_round(results, rounds):
    return np.array([r.outcomes["ndcg_by_round"] for r in results if len(r.outcomes["ndcg_by_round"]) == rounds])


# ---------------------------------------------------------------- the bar


def test_ndcg_rises_over_rounds_for_the_feedback_user_and_not_for_the_ignorer():
    user, ignorer = episodes(C.feedback_user), episodes(C.ignorer)
    u, i = by_round(user, 5), by_round(ignorer, 5)
    assert len(u) == len(i) == len(SEEDS)  # one ranking per round
    mu = u.mean(axis=0)
    assert np.all(np.diff(mu[:4]) > 0.05)  # each named facet folded in lifts nDCG@3
    assert mu[-1] > mu[0] + 0.3
    assert np.all(i == i[:, :1])  # the ignorer's ranking never changes
    assert np.all(u[:, 0] == i[:, 0])  # round one is the same topic-only query
    assert all(r.outcomes["ndcg_gain"] >= 0 for r in user) and np.mean([r.outcomes["ndcg_gain"] > 0 for r in user]) > 0.8
    assert C.feedback_gain("x", {"feedback-user": user, "ignorer": ignorer}) > 0.3
    # the true utility is the final ranking's nDCG@3
    assert np.mean([r.true_utility for r in user]) == pytest.approx(mu[-1])
    assert all(r.truncated and not r.terminated for r in user)


def test_probe_direction_has_the_documented_sign_under_the_rule_person():
    probe = C.fidelity_probe()
    assert set(probe.policies) == {"feedback-user", "ignorer", "asker"}
    for variant, sign in probe.expected_sign.items():
        env = make(**probe.variants[variant])
        results = {name: [run_episode(env, factory(env), seed) for seed in range(20)]
                   for name, factory in probe.policies.items()}
        assert sign * probe.direction(variant, results) > 0.1, variant


# ---------------------------------------------------------------- corpus, BM25, relevance


def test_the_corpus_is_generated_once_deterministically_and_says_what_it_is_labelled():
    import bm25s

    assert C.corpus() is C.corpus() and make().unwrapped.corpus is make().unwrapped.corpus  # once per process
    assert isinstance(C.corpus().retriever, bm25s.BM25)
    rows = C.generate_passages()
    assert rows == C.generate_passages() and rows != C.generate_passages(seed=1)
    c = C.corpus()
    assert len(c) == len(rows) == 3200 and c.ids[7] == "p0007"
    for k in range(0, len(c), 37):
        t, mask, text = rows[k]
        assert c.texts[k] == text and c.topics[k] == t and c.masks[k] == mask
        for f in range(C.N_FACETS):
            kw = C.facet_keyword(t, f)
            assert (f"It has details on {kw}" in text) == bool(mask >> f & 1)
    assert np.bincount(c.topics).tolist() == [C.PER_TOPIC] * C.N_TOPICS
    counts = np.bincount([bin(m).count("1") for m in c.masks], minlength=4) / len(c)
    assert np.allclose(counts, C.FACET_COUNT_PROBS, atol=0.03)
    traps = np.mean(["does not have details" in t for t in c.texts])
    assert 0.1 < traps < 0.3


def test_bm25_ranks_a_query_with_the_needs_facets_above_a_topic_only_query():
    with_facets, topic_only, half = [], [], []
    for seed in range(100):
        need = C.draw_need(np.random.default_rng(seed), 3)
        with_facets.append(C.ndcg(need, C.corpus().search(C.strategy_query(need.topic, 1, need.facets, []))))
        half.append(C.ndcg(need, C.corpus().search(C.strategy_query(need.topic, 1, need.facets[:1], []))))
        topic_only.append(C.ndcg(need, C.corpus().search(C.strategy_query(need.topic, 0, [], []))))
    assert np.mean(with_facets) > np.mean(half) + 0.1 > np.mean(topic_only) + 0.2
    assert np.mean(np.array(with_facets) > np.array(topic_only)) > 0.9
    # the top passages are of the topic and cover what the query names
    need = C.Need(0, (0, 1, 2))
    top = C.corpus().search("coffee espresso decaf grinder")
    assert len(top) == 3 and all(C.corpus().topics[p] == 0 for p in top)
    assert C.grades(need, top).min() >= 2
    assert C.corpus().search("zzz qqq") == () and C.corpus().search("the of and") == ()


def test_relevance_is_graded_by_facet_overlap_and_ndcg_is_standard():
    c = C.corpus()
    need = C.Need(2, (1, 4))
    g = C.grades(need)
    for p in range(0, len(c), 11):
        expected = bin(int(c.masks[p]) & (0b10010)).count("1") if c.topics[p] == 2 else 0
        assert g[p] == expected
    assert C.dcg([2, 0, 1]) == pytest.approx(3.0 + 0.0 + 1.0 / 2.0)
    ideal = np.argsort(-g, kind="stable")[:3]
    assert C.ndcg(need, list(ideal)) == pytest.approx(1.0)
    other = [p for p in range(len(c)) if c.topics[p] != 2][:3]
    assert C.ndcg(need, other) == 0.0 and C.ndcg(need, []) == 0.0
    two = next(p for p in range(len(c)) if g[p] == 2)
    none = next(p for p in range(len(c)) if c.topics[p] == 2 and g[p] == 0)
    assert C.ndcg(need, [two, none, none]) > C.ndcg(need, [none, none, two]) > 0.0
    assert C.ndcg(need, [two, none, none, two]) == C.ndcg(need, [two, none, none])  # @3


# ---------------------------------------------------------------- views, reward, truth, episode end


def test_text_view_reads_ask_search_rank_and_anything_else_is_an_observation():
    read = lambda text: C.read_move(text, 0, 3200)  # noqa: E731  (coffee)
    assert read("ask: espresso") == C.Move("ask", facet=0) and read("Ask about the DECAF please").facet == 1
    assert read("search: coffee milk") == C.Move("search", query="coffee milk")
    assert read("final search: coffee milk").final and not read("search: coffee").final
    assert read("rank: p0012, 450, p7, p0012, 99999, p3") == C.Move("rank", ranking=(12, 450, 7))
    assert read("final rank: p1").final
    for bad in ("", "banana", "ask: boots", "search:   the of", "rank: p99999", "\x00🙂", "I would search: x"):
        assert read(bad).kind == "invalid", bad
    env = fbenv.make(ENV_ID)
    obs, _ = env.reset(seed=1)
    topic = C.TOPICS[env.unwrapped.need.topic][0]
    assert isinstance(obs, str) and f"passages about {topic}" in obs and '"ask: <aspect>"' in obs
    for f in env.unwrapped.need.facets:  # the hidden need is not in the observation, only the six candidates
        assert f"details on {C.facet_keyword(env.unwrapped.need.topic, f)}" not in obs
    _, reward, terminated, truncated, info = env.step("lorem ipsum")
    assert info["invalid_action"] and reward == 0.0 and not (terminated or truncated) and info["feedback"] == ()
    assert "Unreadable turn" in info["messages"][-1]["content"]
    kw = C.facet_keyword(env.unwrapped.need.topic, env.unwrapped.need.facets[0])
    _, reward, _, _, info = env.step(f"ask: {kw}?")
    assert reward == -0.05 and info["asked"] == kw and info["feedback"][0].text == f"Yes, I want details on {kw}."
    _, reward, _, _, info = env.step("x" * 5000 + f" search: {topic}")
    assert info["action_truncated"] and info["invalid_action"]
    obs, reward, terminated, truncated, info = env.step(f"final search: {topic} {kw}")
    assert terminated and not truncated and reward == info["ndcg"] == info["true_utility"] > 0
    assert obs.count("p") and info["messages"][-2]["content"].startswith("p")  # the top passages are shown
    with pytest.raises(fbenv.InvalidArgumentError, match="expects a str"):
        env.step(1)
    d = make()
    d.reset(seed=0)
    with pytest.raises(fbenv.InvalidArgumentError, match=r"\[0, 12\)"):
        d.step(12)


def test_reward_truth_and_episode_end():
    env = make(max_rounds=4, question_cost=0.1)
    env.reset(seed=3)
    need = env.unwrapped.need
    wanted, unwanted = need.facets[0], next(f for f in range(6) if f not in need.facets)
    _, r, term, trunc, info = env.step(wanted)
    assert r == pytest.approx(-0.1) and info["true_utility"] == 0.0 and not (term or trunc)
    (record,) = info["feedback"]
    assert record.source is Source.USER and record.scalar == 1.0
    _, r, *_, info = env.step(unwanted)
    assert info["feedback"][0].scalar == 0.0 and info["feedback"][0].text.startswith("No, I do not need")
    obs = env.unwrapped.features()
    assert obs[wanted] == 1.0 and obs[6 + unwanted] == 1.0 and obs.sum() == pytest.approx(3.0 + 2 / 4 + 2 / 4)
    _, r, _, _, info = env.step(6 + 1)  # rank with the learned facets
    ranking = env.unwrapped.last_ranking
    assert r == info["ndcg"] == pytest.approx(C.ndcg(need, ranking)) and info["true_utility"] == 0.0
    assert info["feedback"][0].text in (C.REVIEWER.rule(C.Shown(need, ranking)).text(need.topic),)
    _, r, term, trunc, info = env.step(0)  # the rounds run out on a question
    assert trunc and not term and r == pytest.approx(-0.1)
    assert info["true_utility"] == pytest.approx(C.ndcg(need, ranking)) and "regret" in info
    o = info["episode_result"]["outcomes"]
    assert set(o) == set(fbenv.spec(ENV_ID).outcomes)
    assert o["questions_asked"] == 3 and o["rankings"] == 1 and o["final_ndcg"] == o["first_ndcg"] == o["ndcg_by_round"][0]
    assert info["episode_result"]["true_utility"] == pytest.approx(o["final_ndcg"])
    env.reset(seed=3)
    for _ in range(4):
        *_, trunc, info = env.step(0)
    assert trunc and info["true_utility"] == 0.0 and info["episode_result"]["outcomes"]["rankings"] == 0


def test_the_feedback_names_the_least_covered_wanted_facet():
    c = C.corpus()
    need = C.Need(0, (2, 0))
    only0 = [p for p in range(len(c)) if c.topics[p] == 0 and c.masks[p] == 0b1][:3]
    review = C.REVIEWER.rule(C.Shown(need, tuple(only0)))
    assert review.missing == 2 and review.covered == 0.5
    both = [p for p in range(len(c)) if c.topics[p] == 0 and c.masks[p] & 0b101 == 0b101][:3]
    assert C.REVIEWER.rule(C.Shown(need, tuple(both))) == C.Review(None, 1.0)
    neither = [p for p in range(len(c)) if c.topics[p] == 1][:3]
    assert C.REVIEWER.rule(C.Shown(need, tuple(neither))).missing == 2  # a tie: the need's order


def test_discrete_observation_shows_what_was_learned_never_the_need():
    env = make()
    obs, _ = env.reset(seed=4)
    u = env.unwrapped
    assert env.observation_space.shape == (24,) and env.action_space == gym.spaces.Discrete(12)
    assert obs[:12].sum() == 0 and obs[12 + u.need.topic] == 1.0
    u.task = dataclasses.replace(u.task, facets=tuple(f for f in range(6) if f not in u.need.facets)[:3])
    assert np.array_equal(u.features(), obs)  # another need, same observation
    env.reset(seed=4)
    obs, *_, info = env.step(6)
    if info["missing_facet"]:
        f = [C.facet_keyword(u.need.topic, k) for k in range(6)].index(info["missing_facet"])
        assert obs[f] == 1.0 and f in u.need.facets
    assert u.get_action_meanings()[:2] == [f"ask: {C.facet_keyword(u.need.topic, k)}" for k in range(2)]
    assert u.get_action_meanings()[6] == f"search: {C.TOPICS[u.need.topic][0]}"


def test_both_views_are_one_task():
    text, disc = fbenv.make(ENV_ID), make()
    for seed in range(4):
        text.reset(seed=seed)
        disc.reset(seed=seed)
        assert text.unwrapped.hidden_task() == disc.unwrapped.hidden_task()
        for t in range(5):
            a = int((seed * 5 + t * 7) % 12)
            rt = text.step(text.unwrapped.candidate_replies()[a])
            rd = disc.step(a)
            assert rt[1:4] == rd[1:4] and rt[4]["true_utility"] == rd[4]["true_utility"]
            if rt[2] or rt[3]:
                break


def test_same_seed_same_episode():
    def trace(**kw):
        env = make(**kw)
        env.action_space.seed(11)
        out = []
        for seed in (11, 12):
            obs, _ = env.reset(seed=seed)
            out.append(obs.tolist())
            for _ in range(5):
                obs, r, term, trunc, info = env.step(env.action_space.sample())
                out.append((obs.tolist(), r, term, trunc, info["true_utility"], info["llm_seeds"],
                            [(f.scalar, f.text, f.raw) for f in info["feedback"]]))
                if term or trunc:
                    break
        return out

    assert trace() == trace()
    assert trace(simulator="llm", llm=ChoosingBackend()) == trace(simulator="llm", llm=ChoosingBackend())
    assert trace(need_size=2) != trace()


def test_bad_arguments_are_typed():
    for bad, match in [({"max_rounds": "3"}, "max_rounds: expects an int"), ({"max_rounds": 0}, "max_rounds"),
                       ({"max_rounds": 2.0}, "max_rounds"), ({"need_size": 0}, "need_size"),
                       ({"need_size": 4}, r"need_size: expects an int in \[1, 3\]"), ({"need_size": True}, "need_size"),
                       ({"question_cost": -0.1}, "question_cost: expects a finite number >= 0"),
                       ({"question_cost": math.nan}, "question_cost"), ({"question_cost": "0.1"}, "question_cost")]:
        with pytest.raises(fbenv.InvalidArgumentError, match=match):
            make(**bad)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'max_rounds'"):
        make(max_round=5)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'reviewer'"):
        make(simulator={"reviewr": "llm"})
    with pytest.raises(fbenv.InvalidArgumentError, match="reset"):
        make().unwrapped.step(1)


# ---------------------------------------------------------------- the LLM person


def test_llm_person_asks_calibrated_belief_questions_about_the_text_in_front_of_it():
    backend = ChoosingBackend()
    env = make(simulator="llm", llm=backend)
    env.reset(seed=0)
    need = env.unwrapped.need
    *_, info = env.step(need.facets[1])
    (record,) = info["feedback"]
    assert record.simulator == "llm" and record.parsed and record.fallback is None
    assert len(info["llm_seeds"]) == 1 and info["usage"].calls == 2  # one question and its content-free twin
    (asked,) = [r for r in backend.calls if "N/A" not in r.messages[-1].content]
    kw = C.facet_keyword(need.topic, need.facets[1])
    assert asked.messages[0].role == "system" and C.TOPICS[need.topic][0] in asked.messages[0].content
    assert asked.messages[-1].content.startswith(need.describe(need.facets[1]))
    others = [C.facet_keyword(need.topic, f) for f in range(6) if f != need.facets[1]]
    assert not any(o in asked.messages[-1].content for o in others)  # one fact at a time
    assert set(asked.sampling.choices) == {f"The answer I want has details on {kw}.",
                                           f"The answer I want does not have details on {kw}."}
    backend.calls.clear()
    *_, info = env.step(6 + 2)
    assert len(info["llm_seeds"]) == 9 and len([r for r in backend.calls if "N/A" not in r.messages[-1].content]) == 9
    shown = [C.corpus().texts[p] for p in env.unwrapped.last_ranking]
    for r in backend.calls:
        if "N/A" not in r.messages[-1].content:
            assert r.messages[-1].content.split("\n\n")[0] in shown  # one passage at a time
            assert "The answer I want" not in r.messages[-1].content  # the need stays out of it
    assert info["feedback"][0].text.startswith("These passages have")


def test_a_faithful_reader_answers_like_the_rule_person():
    for seed in range(6):
        rule, llm = make(), make(simulator="llm", llm=Reader())
        rule.reset(seed=seed)
        llm.reset(seed=seed)
        for a in (0, 3, 6, 7, 8):
            x, y = rule.step(a), llm.step(a)
            assert y[4]["feedback"][0].simulator == "llm" and y[4]["feedback"][0].parsed
            assert x[4]["feedback"][0].text == y[4]["feedback"][0].text and x[1] == y[1]
    results = {name: episodes(policy, range(10), simulator="llm", llm=Reader()) for name, policy in C.POLICIES.items()}
    rule = {name: episodes(policy, range(10)) for name, policy in C.POLICIES.items()}
    assert C.feedback_gain("x", results) == pytest.approx(C.feedback_gain("x", rule))
    assert C.feedback_gain("x", results) > 0.3
    assert all(r.fallbacks == 0 and r.parse_failures == 0 for rs in results.values() for r in rs)


def test_free_text_replies_parse_and_unreadable_ones_follow_the_policy():
    person = ScriptedBackend([(r"Do you want details", "Yes."), (r"Does the passage have", "No, it does not.")])
    env = make(simulator="llm", llm=person)
    env.reset(seed=0)
    *_, info = env.step(0)
    assert info["feedback"][0].parsed and info["feedback"][0].text.startswith("Yes")
    *_, info = env.step(6)
    assert info["feedback"][0].parsed and info["feedback"][0].scalar == 0.0  # nothing covered
    mute = ScriptedBackend([], default="I like turtles.")
    env = make(simulator="llm", llm=mute, on_parse_error="fallback")
    env.reset(seed=0)
    *_, info = env.step(0)
    rule = make()
    rule.reset(seed=0)
    (record,) = info["feedback"]
    assert not record.parsed and record.fallback == "rule" and record.text == rule.step(0)[4]["feedback"][0].text
    env = make(simulator="llm", llm=mute, on_parse_error="truncate")
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(6)
    assert truncated and not terminated and reward == 0.0 and "feedback_error" in info


def test_fidelity_with_a_faithful_reader_beats_noise():
    faithful = fid.measure(ENV_ID, llm=Reader(), seeds=range(5), variants=["default"]).variants[0]
    noisy = fid.measure(ENV_ID, llm=ChoosingBackend(), seeds=range(5), variants=["default"]).variants[0]
    roles = {r.role: r for r in faithful.roles}
    assert roles["reviewer"].agreement == 1.0 and roles["answerer"].spearman > 0.99
    assert faithful.reward_spearman > 0.99 and faithful.direction_holds
    assert faithful.direction_llm == pytest.approx(faithful.direction_rule)
    noisy_roles = {r.role: r for r in noisy.roles}
    assert noisy_roles["reviewer"].agreement < 0.8 and noisy.direction_llm < faithful.direction_llm
