"""Shop (WebShop-like): the catalogue, the goal, the store's pages and masks, the shopper, the direction."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import fbenv
from fbenv import fidelity as fid
from fbenv.envs import shop as S
from fbenv.episodes import run_episode
from fbenv.feedback import Source
from fbenv.llm import ScriptedBackend
from tests.fbenv.readers import Reader

ENV_ID = "fbenv/Shop-v0"


def make(**kw):
    return fbenv.make(ENV_ID, **kw)


def goal(seed: int, **kw) -> S.Goal:
    env = make(interface="discrete", **kw)
    env.reset(seed=seed)
    return env.unwrapped.hidden_task()


def product(pid: str) -> S.Product:
    return next(p for p in S.catalogue() if p.pid == pid)


def slot_of(env, text: str) -> int:
    return list(env.unwrapped.candidate_replies()).index(text)


# ---------------------------------------------------------------- the catalogue and the goal


def test_catalogue_is_generated_once_and_is_what_the_card_says():
    cat = S.catalogue()
    assert cat is S.catalogue() and len(cat) == 6 * 25 and len({p.pid for p in cat}) == 150
    for p in cat:
        c = S.CATEGORIES[p.category]
        assert len(p.attributes) == 3 and set(p.attributes) <= set(c.attributes)
        assert len(p.colours) == 3 and set(p.colours) <= set(S.COLOURS)
        assert 2 <= len(p.sizes) <= 3 and set(p.sizes) <= set(c.sizes)
        assert 0.6 * c.base_price - 0.01 <= p.price <= 1.6 * c.base_price + 0.01


def test_goal_is_drawn_from_the_seed_and_its_target_matches_fully():
    goals = [goal(s) for s in range(40)]
    assert goals == [goal(s) for s in range(40)] and len(set(goals)) > 30
    for g in goals:
        p = product(g.target)
        assert p.category == g.category and set(g.attributes) <= set(p.attributes) and len(g.attributes) == 2
        assert g.colour in p.colours and g.size in p.sizes and p.price * 1.05 <= g.budget <= p.price * 1.4 + 1
        assert S.match(g, p, g.colour, g.size) == 1.0
    assert len({g.category for g in goals}) == 6 and len({g.template for g in goals}) == 3


def test_reward_is_webshops_attribute_match():
    g = goal(3)
    p = product(g.target)
    other_colour = next(c for c in p.colours if c != g.colour)
    assert S.match(g, p, other_colour, g.size) == pytest.approx(4 / 5)
    assert S.match(g, p, None, None) == pytest.approx(3 / 5)
    pricey = p._replace(price=g.budget + 1.0)
    assert S.match(g, pricey, g.colour, g.size) == pytest.approx(4 / 5)
    elsewhere = next(q for q in S.catalogue() if q.category != g.category and q.price <= g.budget)
    assert S.match(g, elsewhere, None, None) <= 0.1 * 5 / 5 + 1e-12


def test_search_ranks_by_matched_words_and_reads_a_price_limit():
    hits = S.search("waterproof lightweight blue backpack")
    assert 0 < len(hits) <= 5
    score = [len({"waterproof", "lightweight", "blue", "backpack"} & p.words) for p in hits]
    assert score == sorted(score, reverse=True) and score[0] == 4
    cheap = S.search("backpack under 40")
    assert cheap and all(p.price <= 40 for p in cheap)
    assert S.search("zzz qqq") == ()


# ---------------------------------------------------------------- the store


def test_oracle_assistant_buys_a_full_match_and_first_result_does_not():
    for kw in ({}, {"hidden_option": "none"}):
        for interface in ("discrete", "text"):
            env = make(interface=interface, **kw)
            oracle = [run_episode(env, S.POLICIES["oracle"](env), s) for s in range(30)]
            first = [run_episode(env, S.POLICIES["first-result"](env), s) for s in range(30)]
            assert all(r.is_success and r.terminated and r.reward == 1.0 for r in oracle)
            assert all(r.outcomes["success"] == 1.0 and r.outcomes["invalid_actions"] == 0 for r in oracle)
            assert np.mean([r.reward for r in first]) < 0.6 and not any(r.is_success for r in first)
    env = make(interface="discrete")
    assert run_episode(env, S.POLICIES["oracle"](env), 0).turns == 6  # ask, search, click, colour, size, buy


def test_the_size_is_withheld_until_asked_and_answered_exactly():
    env = make()
    obs, info = env.reset(seed=5)
    g = env.unwrapped.task
    assert g.colour in obs and str(g.budget) in obs and S.size_words(g) not in obs
    assert info["feedback"][0].source is Source.USER and info["feedback"][0].text in obs
    obs, reward, terminated, truncated, info = env.step("ask[Which size would you like?]")
    assert info["action_valid"] and reward == 0.0 and not (terminated or truncated)
    assert info["feedback"][0].text == info["messages"][-2]["content"] and g.size in info["feedback"][0].text
    assert env.unwrapped.known.size == g.size and f"Shopper: {info['feedback'][0].text}" in obs
    _, _, _, _, info = env.step("ask[And the colour?]")
    assert not info["action_valid"] and info["feedback"] == ()  # one question per episode
    for question, expected in (("what colour?", g.colour), ("how much can you spend?", f"${g.budget}"),
                               ("anything else?", g.size)):
        env.reset(seed=5)
        _, _, _, _, info = env.step(f"ask[{question}]")
        assert expected in info["feedback"][0].text
    stated = make(hidden_option="none")
    obs, _ = stated.reset(seed=5)
    assert S.size_words(g) in obs and stated.unwrapped.known.size == g.size
    _, _, _, _, info = stated.step("ask[anything else?]")
    assert "Nothing else" in info["feedback"][0].text


def test_invalid_actions_are_observations_flagged_per_step():
    env = make(max_steps=30)
    obs0, _ = env.reset(seed=2)
    for bad in ("buy", "back", "click[P0000]", "hello", "search[]", "click[blue]"):
        obs, reward, terminated, truncated, info = env.step(bad)
        assert not info["action_valid"] and reward == 0.0 and not terminated and info["page"] == "search"
        assert "Invalid action" in obs
    env.step("search[t-shirt]")
    _, _, _, _, info = env.step("search[mug]")
    assert not info["action_valid"] and info["page"] == "results"
    env.step("click[P0000]")
    _, _, _, _, info = env.step("click[P0000]")
    assert not info["action_valid"] and info["page"] == "item"
    _, reward, terminated, _, info = env.step("click[buy now]")
    assert terminated and info["action_valid"] and info["invalid_actions"] == 8
    assert info["episode_result"]["outcomes"]["invalid_actions"] == 8


def test_the_action_mask_says_exactly_which_slots_are_valid():
    env = make(interface="discrete", max_steps=40)
    rng = np.random.default_rng(0)
    seen_valid = seen_invalid = 0
    for seed in range(15):
        _, info = env.reset(seed=seed)
        for _ in range(40):
            mask = info["action_mask"]
            assert mask.dtype == bool and mask.shape == (S.N_ACTIONS,) and mask.any()
            assert np.array_equal(mask, env.unwrapped.action_masks())
            a = int(rng.integers(S.N_ACTIONS))
            before = env.unwrapped.features().copy()
            obs, _, terminated, truncated, info = env.step(a)
            assert info["action_valid"] == mask[a]
            seen_valid += mask[a]
            seen_invalid += not mask[a]
            if not mask[a]:
                assert np.array_equal(obs[:5], before[:5]) and obs[26] == 0.0
            if terminated or truncated:
                break
    assert seen_valid > 50 and seen_invalid > 50


def test_both_views_are_one_task():
    text, disc = make(), make(interface="discrete")
    for seed in range(5):
        text.reset(seed=seed)
        disc.reset(seed=seed)
        rng = np.random.default_rng(seed)
        for _ in range(15):
            valid = np.flatnonzero(disc.unwrapped.action_masks())
            a = int(valid[rng.integers(len(valid))])
            said = disc.unwrapped.candidate_replies()[a]
            ot, rt, tt, ut, it = text.step(said)
            od, rd, td, ud, id_ = disc.step(a)
            assert (rt, tt, ut) == (rd, td, ud) and it["action_valid"] and id_["action_valid"]
            assert ot.endswith(text.unwrapped.page_text())
            if td or ud:
                assert it["true_utility"] == id_["true_utility"]
                break


def test_truncated_at_the_step_budget_with_outcomes_and_no_reward():
    env = make(interface="discrete", max_steps=4)
    env.reset(seed=0)
    for t in range(4):
        _, reward, terminated, truncated, info = env.step(S.SLOT_BACK)  # invalid on the search page
        assert reward == 0.0 and not terminated and truncated == (t == 3)
    assert info["episode_result"]["outcomes"] == {"success": 0.0, "match": 0.0, "steps": 4, "invalid_actions": 4}
    assert info["true_utility"] == 0.0 and not info["is_success"]


def test_buying_ends_the_episode_with_the_match_as_reward_and_true_utility():
    env = make()
    env.reset(seed=1)
    g = env.unwrapped.task
    env.step(f"search[{g.category_name}]")
    first = env.unwrapped.page.results[0]
    env.step(f"click[{first.pid}]")
    _, reward, terminated, truncated, info = env.step("buy")
    expected = S.match(g, first, None, None)
    assert terminated and not truncated and reward == pytest.approx(expected) == info["true_utility"]
    assert info["regret"] == pytest.approx(1 - expected) and not info["is_success"]
    oracle_record = info["feedback"][-1]
    assert oracle_record.source is Source.ORACLE and oracle_record.scalar == pytest.approx(expected)


def test_progress_hook_rises_toward_a_full_match():
    env = make()
    env.reset(seed=4)
    base = env.unwrapped
    seen = [base.progress()]
    policy = S.POLICIES["oracle"](env)
    obs, info = None, {}
    while True:
        if base.page.kind == "item" and policy(obs, info) == "buy":
            break
        obs, _, _, _, info = env.step(policy(obs, info))
        seen.append(base.progress())
    assert seen[0] == 0.0 and seen == sorted(seen) and seen[-1] == pytest.approx(0.9)
    assert all(0.0 <= p <= 1.0 for p in seen)


def test_subgoals_name_what_the_oracle_reaches():
    env = make()
    env.reset(seed=4)
    policy = S.POLICIES["oracle"](env)
    reached, obs, info = set(), None, {}
    for _ in range(5):
        obs, _, _, _, info = env.step(policy(obs, info))
        reached |= {name for name, pred in S.SUBGOALS.items() if pred(env, info)}
    assert reached == set(S.SUBGOALS)


def test_same_seed_same_episode():
    runs = []
    for _ in range(2):
        env = make(interface="discrete")
        env.action_space.seed(0)
        env.reset(seed=9)
        runs.append([env.step(env.action_space.sample())[:4] for _ in range(10)])
    assert str(runs[0]) == str(runs[1])


def test_bad_arguments_are_typed():
    with pytest.raises(fbenv.InvalidArgumentError, match="max_steps"):
        make(max_steps=0)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'none'"):
        make(hidden_option="nonee")
    with pytest.raises(fbenv.UnknownNameError):
        make(max_step=5)
    env = make(interface="discrete")
    env.reset(seed=0)
    with pytest.raises(fbenv.InvalidArgumentError, match=r"\[0, 19\)"):
        env.step(19)


# ---------------------------------------------------------------- the LLM shopper


def test_a_faithful_reader_answers_like_the_rule_shopper():
    for seed in range(12):
        rule, llm = make(), make(simulator="llm", llm=Reader())
        _, ri = rule.reset(seed=seed)
        _, li = llm.reset(seed=seed)
        g = llm.unwrapped.task
        request = li["feedback"][0]
        assert request.simulator == "llm" and request.parsed and request.text == S.phrase(g, 0, False)
        for question in ("what size?", "which colour?"):
            rule.reset(seed=seed)
            llm.reset(seed=seed)
            a = rule.step(f"ask[{question}]")[4]["feedback"][0]
            b = llm.step(f"ask[{question}]")[4]["feedback"][0]
            assert a.text == b.text and b.simulator == "llm" and b.fallback is None


def test_llm_shopper_chooses_among_its_values_in_one_calibrated_question():
    g = goal(6)
    p = S.CLARIFY.prompt(S.Question(g, "size", True))
    sizes = S.CATEGORIES[g.category].sizes
    assert p.calibration is not None and [s.value for s in p.choices.values()] == list(sizes)
    assert all(v in c for c, v in zip(p.choices, sizes)) and g.size in p.messages[-1].content
    assert g.target not in p.messages[-1].content and str(g.budget) not in p.messages[-1].content
    assert S.CLARIFY.prompt(S.Question(g, "budget", True)) is None  # the rule states the number


def test_a_blind_shopper_names_the_first_size_and_the_oracle_pays_for_it():
    blind = make(interface="discrete", simulator="llm", llm="choosing:blind")
    rule = make(interface="discrete")
    rb = [run_episode(blind, S.POLICIES["oracle"](blind), s) for s in range(30)]
    rr = [run_episode(rule, S.POLICIES["oracle"](rule), s) for s in range(30)]
    assert np.mean([r.reward for r in rb]) < np.mean([r.reward for r in rr]) == 1.0
    assert all(r.fallbacks == 0 for r in rb)


def test_free_text_replies_parse_and_unreadable_ones_follow_the_policy():
    rule = make()
    rule.reset(seed=0)
    size = rule.unwrapped.task.size
    env = make(simulator="llm", llm=ScriptedBackend([(r"Which size", f"I need {size}, please.")], default="mmm"))
    env.reset(seed=0)
    _, _, _, truncated, info = env.step("ask[size?]")
    assert not truncated and info["feedback"][0].parsed
    env = make(simulator={"clarify": "llm"}, llm=ScriptedBackend([], default="mmm"), on_parse_error="truncate")
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step("ask[size?]")
    assert truncated and not terminated and reward == 0.0 and "unparseable" in info["feedback_error"]


# ---------------------------------------------------------------- the direction, learners, bench


def test_probe_direction_is_positive_under_the_rule_shopper():
    probe = S.fidelity_probe()
    for name, kwargs in probe.variants.items():
        env = make(interface="discrete", **kwargs)
        results = {p: [run_episode(env, f(env), s) for s in range(20)] for p, f in probe.policies.items()}
        assert probe.direction(name, results) * probe.expected_sign[name] > 0.3


def test_fidelity_tells_a_faithful_reader_from_a_blind_one():
    faithful = fid.measure(ENV_ID, llm=Reader(), seeds=range(6), variants=["default"]).variants[0]
    blind = fid.measure(ENV_ID, llm="choosing:blind", seeds=range(6), variants=["default"]).variants[0]
    clarify = {r.role: r for r in faithful.roles}["clarify"]
    assert clarify.agreement == 1.0 and faithful.direction_llm == pytest.approx(faithful.direction_rule)
    assert blind.direction_llm < faithful.direction_llm


def test_maskable_ppo_reads_the_action_masks():
    sb3c = pytest.importorskip("sb3_contrib")
    env = gym.make(ENV_ID, interface="discrete")
    model = sb3c.MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0)
    model.learn(128)
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        mask = env.unwrapped.action_masks()
        action, _ = model.predict(obs, deterministic=True, action_masks=mask)
        assert mask[int(action)]
        obs, _, terminated, truncated, info = env.step(int(action))
        assert info["action_valid"]
        if terminated or truncated:
            break


def test_bench_reports_scripted_assistants(tmp_path):
    from fbenv.baselines import SUITES
    from fbenv.baselines import shop as B

    assert SUITES["shop"] == "fbenv.baselines.shop:bench"
    lines = []
    path = B.bench(5, "choosing", skip_llm=False, out=str(tmp_path / "shop.json"), echo=lines.append, ppo_steps=0)
    rows = {(r["simulator"], r["policy"]): r for r in __import__("json").loads(path.read_text())}
    assert rows[("rule", "oracle")]["success_rate"] == 1.0
    assert rows[("rule", "first-result")]["match"] < rows[("rule", "oracle")]["match"]
    assert ("llm", "oracle") in rows and "success" in lines[1]
