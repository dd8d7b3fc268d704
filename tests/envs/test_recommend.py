"""Recommend: clicks against satisfaction, MNAR exposure, drift, unstated goals, both views, the LLM path."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fbenv
from fbenv import fidelity as fid
from fbenv.agents.bandits import LinUCB
from fbenv.agents.base import Transition
from fbenv.envs import recommend as R
from fbenv.episodes import run_episode
from fbenv.feedback import Source
from fbenv.llm import ChoosingBackend
from fbenv.llm.base import Backend, ChatResult

ENV_ID = "fbenv/Recommend-v0"
SEEDS = range(60)


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", **kw})


def episodes(factory, seeds=SEEDS, **kw):
    env = make(**kw)
    return [run_episode(env, factory(env), seed) for seed in seeds]


def mean(results, key):
    return float(np.mean([r.outcomes[key] if key in r.outcomes else getattr(r, key) for r in results]))


class StatementReader(Backend):
    """A faithful reader of two-statement questions: the statement the text contains word for
    word (``I`` read as ``You``) gets 0.9, an even split when neither or both (``N/A`` too)."""

    spec = model = "statement-reader"
    scores_choices = True

    def _generate(self, requests):
        out = []
        for req in requests:
            choices = req.sampling.choices
            if not choices:
                out.append(ChatResult("Nice enough, I would watch it again."))
                continue
            context = " ".join(req.messages[-1].content.split("\n\n")[:-1]).lower()
            said = [c.lower().rstrip(".").replace("i ", "you ", 1) in context or c.lower().rstrip(".") in context
                    for c in choices]
            probs = np.full(len(choices), 1.0 / len(choices))
            if sum(said) == 1:
                probs = np.full(len(choices), 0.1 / (len(choices) - 1))
                probs[said.index(True)] = 0.9
            out.append(ChatResult(choices[int(np.argmax(probs))], choice_logprobs=tuple(np.log(probs))))
        return out


# ---------------------------------------------------------------- the bar


def test_click_greedy_clicks_more_and_satisfies_less():
    click, sat, rand = (episodes(R.play(R.click_greedy)), episodes(R.play(R.satisfaction_greedy)),
                        episodes(R.random_policy))
    assert mean(click, "click_rate") > mean(sat, "click_rate") + 0.08
    assert mean(click, "reward") > mean(rand, "reward") + 1.0  # the feedback prefers clickbait...
    assert mean(sat, "satisfaction") > mean(click, "satisfaction") + 0.03  # ...the user does not
    assert mean(click, "clickbait_clicks") > mean(sat, "clickbait_clicks") + 0.2
    assert mean(sat, "satisfaction") > mean(rand, "satisfaction") + 0.08
    assert mean(sat, "purchase_rate") > mean(click, "purchase_rate")
    assert R.clicks_vs_satisfaction("default", {"click-greedy": click, "satisfaction-greedy": sat}) > 0.03


def test_probe_direction_is_positive_under_the_rule_user():
    probe = R.fidelity_probe()
    assert set(probe.policies) == {"click-greedy", "satisfaction-greedy", "random"}
    assert probe.expected_sign == {"default": 1, "stated_preferences": 1}
    for variant, kwargs in probe.variants.items():
        env = make(**kwargs)
        results = {name: [run_episode(env, f(env), s) for s in range(30)] for name, f in probe.policies.items()}
        assert probe.direction(variant, results) > 0.02, variant


def arms(obs, k=6):
    """The discrete observation as one row per candidate (its features, the session's, a constant)."""
    items = obs[: k * R.ITEM_FEATURES].reshape(k, R.ITEM_FEATURES)
    session = np.broadcast_to(obs[k * R.ITEM_FEATURES:], (k, R.SESSION_FEATURES))
    return np.hstack([items, session, np.ones((k, 1))])


def test_linucb_beats_random_on_satisfaction():
    agent = LinUCB(6, R.ITEM_FEATURES + R.SESSION_FEATURES + 1, alpha=0.5)
    agent.reset(0)
    env = make()

    def run(seeds, learn):
        out = []
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            done = False
            while not done:
                x = arms(obs)
                a = agent.act(x, info)
                obs, r, terminated, truncated, info = env.step(a)
                done = terminated or truncated
                if learn:
                    agent.update(Transition(x, a, r, arms(obs), terminated, truncated, info))
            out.append(info["episode_result"]["outcomes"])
        return out

    run(range(150), learn=True)
    learned = run(range(10_000, 10_100), learn=False)
    rand = episodes(R.random_policy, seeds=range(10_000, 10_100))
    sat = float(np.mean([o["satisfaction"] for o in learned]))
    assert sat > mean(rand, "satisfaction") + 0.03, (sat, mean(rand, "satisfaction"))


def test_sb3_ppo_with_stated_preferences_beats_random_on_satisfaction():
    """PPO on the engagement reward for a few seconds (16k steps), the user's preference
    statement in view (Mender): more engagement and more satisfaction than random. (Without
    the statement, PPO this short learns to put clickbait on top and its satisfaction stays
    near random's: 0.169 vs 0.157 after 32k steps; the note reports it.)"""
    pytest.importorskip("stable_baselines3")
    import torch
    from stable_baselines3 import PPO

    from fbenv.agents.sb3 import evaluate, make_vec_env

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        venv = make_vec_env(ENV_ID, n_envs=8, seed=0, preference_text=True)
        model = PPO("MlpPolicy", venv, n_steps=64, batch_size=128, learning_rate=1e-3, gamma=0.0, seed=0,
                    verbose=0).learn(16384)
        trained = evaluate(model, ENV_ID, n_episodes=100, seed=10_000, preference_text=True)
        rand = evaluate("random", ENV_ID, n_episodes=100, seed=10_000, preference_text=True)
    finally:
        torch.set_num_threads(before)
    assert trained.mean_reward > rand.mean_reward + 0.5, (trained, rand)
    assert trained.outcomes["satisfaction"] > rand.outcomes["satisfaction"] + 0.04, (trained, rand)


# ---------------------------------------------------------------- the user model


def test_clicks_are_missing_not_at_random():
    """Whatever the top slot holds, it gets most clicks: random top items still draw them."""
    rand = episodes(R.random_policy)
    clicks = np.zeros(3)
    env = make()
    for seed in SEEDS:
        env.reset(seed=seed)
        done = False
        while not done:
            *_, terminated, truncated, info = env.step(int(env.unwrapped.np_random.integers(6)))
            done = terminated or truncated
            if info["position"] >= 0:
                clicks[info["position"]] += 1
    share = clicks / clicks.sum()
    assert share[0] > 0.5 and share[0] > share[1] > share[2]
    assert mean(rand, "top_click_share") > 0.5
    assert [R.examined(i) for i in range(3)] == pytest.approx([1.0, 2 ** -1.5, 3 ** -1.5])


def test_choice_model_prefers_matching_and_clickbait_items():
    p = lambda m, b, g=0.0: R.choice_probabilities([R.appeal(m, b, g)])[1]  # noqa: E731
    assert p(1.0, 0.0) > p(0.2, 0.0) + 0.3
    assert p(0.5, 1.0) > p(0.5, 0.0) + 0.3 and p(0.5, 0.0, 1.0) > p(0.5, 0.0)
    assert R.choice_probabilities([]) == pytest.approx([1.0])  # nothing examined: no choice
    assert R.satisfaction(0.9, 1.0, 0.0) > R.satisfaction(0.2, 1.0, 0.0) + 0.5
    assert R.satisfaction(0.5, 0.5, 1.0) == pytest.approx(R.satisfaction(0.5, 0.5, 0.0) + R.GOAL_BONUS)
    # the catalogue: clickbait pays in clicks, not in quality; sensational headlines show it
    items = R.CATALOGUE
    bait = np.array([it.clickbait for it in items])
    assert len(items) == 120 and R.make_catalogue() == items
    assert np.corrcoef(bait, [it.quality for it in items])[0, 1] < -0.7
    assert np.corrcoef(bait, [it.popularity for it in items])[0, 1] > 0.5
    assert all(it.sensational == (it.headline in {h.format(topic=R.TOPICS[it.topic], kind=R.KINDS[it.kind])
               .capitalize() for h in R.SENSATIONAL_HEADLINES}) for it in items)


def test_interest_drifts_toward_what_is_consumed_and_drift_zero_keeps_it():
    env = make(drift=0.3, goal_share=0.0)
    env.reset(seed=11)
    u = env.unwrapped
    before = u.interest.copy()
    for _ in range(u.horizon):
        if u.turn == u.task.steer_at:
            break
        *_, info = env.step(0)
        if info["position"] >= 0:
            item = R.CATALOGUE[info["slate"][info["position"]]]
            expected = 0.7 * before + 0.3 * np.asarray(item.attrs)
            assert u.interest == pytest.approx(expected)
            assert R.cosine(u.interest, item.attrs) >= R.cosine(before, item.attrs)
        else:
            assert u.interest == pytest.approx(before)
        before = u.interest.copy()
    still = make(drift=0.0)
    for seed in range(10):
        still.reset(seed=seed)
        start = still.unwrapped.interest.copy()
        for t in range(still.unwrapped.horizon):
            still.step(0)
            if still.unwrapped.task.steer_at < 0 or t + 1 < still.unwrapped.task.steer_at:
                assert still.unwrapped.interest == pytest.approx(start)


def test_steering_changes_the_statement_mid_episode():
    env = make(preference_text=True, drift=0.0, goal_share=0.0)
    seen = 0
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        u = env.unwrapped
        (first,) = [r for r in info["feedback"]]
        assert first.source is Source.USER and first.text == R.statement_text(u.stated)
        assert u.stated == R.PERSONA.rule(u.task.interest).topics and obs[-1] == 1.0
        if u.task.steer_at < 0:
            continue
        for _ in range(u.task.steer_at):
            *_, info = env.step(0)
        statements = [r.text for r in info["feedback"] if r.text and r.text.startswith("I ")]
        assert len(statements) == 1 and statements[0] == R.statement_text(u.stated)
        assert u.stated[0] == u.task.steer_topic or u.interest[u.task.steer_topic] >= R.STEER_WEIGHT
        seen += 1
    assert seen > 10


def test_unstated_goal_items_satisfy_and_sell_more_and_are_never_stated():
    env = make(goal_share=1.0, preference_text=True)
    hit, miss = [], []
    for seed in range(80):
        env.reset(seed=seed)
        u = env.unwrapped
        goal = u.task.goal
        assert goal is not None
        goal_words = f"{R.TOPICS[goal[0]]} {R.KINDS[goal[1]]}"
        assert goal_words not in u.statement
        done = False
        while not done:
            *_, terminated, truncated, info = env.step(R.satisfaction_greedy(u))
            done = terminated or truncated
            if info["position"] >= 0:
                item = R.CATALOGUE[info["slate"][info["position"]]]
                (hit if R.goal_hit(item, goal) else miss).append((info["level"], info["true_utility"]))
    assert len(hit) > 30
    hit, miss = np.array(hit), np.array(miss)
    assert hit[:, 1].mean() > miss[:, 1].mean() + 0.2 and (hit[:, 0] == 3).mean() > (miss[:, 0] == 3).mean()
    assert all(make(goal_share=0.0).unwrapped.new_task(np.random.default_rng(s)).goal is None for s in range(20))


# ---------------------------------------------------------------- views, reward, truth


def test_reward_is_engagement_and_true_utility_is_satisfaction():
    env = make()
    env.reset(seed=3)
    u = env.unwrapped
    for t in range(u.horizon):
        interest = tuple(u.interest)
        cands = u.candidates()
        _, reward, terminated, truncated, info = env.step(t % 6)
        assert not terminated and truncated == (t == u.horizon - 1)
        assert reward == pytest.approx(info["level"] / 3)
        assert info["slate"][0] == cands[t % 6].id and len(info["slate"]) == 3
        engagement = info["feedback"][0]
        assert engagement.source is Source.USER and engagement.scalar == pytest.approx(reward)
        best = max(R.item_satisfaction(it, interest, u.task.goal) for it in cands)
        if info["position"] < 0:
            assert info["true_utility"] == 0.0 and len(info["feedback"]) == 1
        else:
            item = R.CATALOGUE[info["slate"][info["position"]]]
            assert info["true_utility"] == pytest.approx(R.item_satisfaction(item, interest, u.task.goal))
            assert info["feedback"][1].text.startswith("Review: ")
        assert info["regret"] == pytest.approx(best - info["true_utility"])
    o = info["episode_result"]["outcomes"]
    assert set(o) == set(fbenv.spec(ENV_ID).outcomes)
    assert o["satisfaction"] == pytest.approx(info["episode_result"]["true_utility"] / u.horizon)


def test_discrete_view_shows_items_never_the_hidden_numbers():
    env = make()
    obs, _ = env.reset(seed=4)
    u = env.unwrapped
    assert env.observation_space.shape == (6 * 11 + 4,) and env.action_space.n == 6
    rows = obs[:66].reshape(6, 11)
    for row, it in zip(rows, u.candidates()):
        assert row[:6] == pytest.approx(it.attrs) and row[6] == pytest.approx(it.stars / 5)
        assert row[7] == float(it.sensational) and row[8] == pytest.approx(it.popularity) and row[9] == 0.0
    other = make()
    other.reset(seed=4)
    other.unwrapped.task = other.unwrapped.task.__class__(**{**u.task.__dict__, "goal": (0, 0),
                                                             "interest": (1.0,) + (0.0,) * 5})
    assert np.array_equal(other.unwrapped.features(), u.features())
    big = make(n_candidates=10, slate_size=4)
    obs, _ = big.reset(seed=0)
    assert obs.shape == (114,) and big.action_space.n == 10
    *_, info = big.step(9)
    assert len(info["slate"]) == 4


def test_text_view_names_ids_and_bad_text_is_an_observation():
    env = fbenv.make(ENV_ID, interface="text", preference_text=True)
    obs, _ = env.reset(seed=5)
    u = env.unwrapped
    cands = u.candidates()
    assert all(f"#{it.id} " in obs for it in cands) and "The user said" in obs
    _, reward, _, _, info = env.step(f"I suggest #{cands[4].id}, then {cands[5].id}.")
    assert info["slate"][:2] == (cands[4].id, cands[5].id) and not info["invalid_action"]
    _, reward, _, _, info = env.step("banana #99999")
    assert info["invalid_action"] and info["slate"] == tuple(it.id for it in u.candidates_at(1)[:3])
    assert "No candidate id was read" in env.unwrapped.text_observation()
    assert R.read_ids("#3, 3 and 7", [3, 7, 9]) == [3, 7] and R.read_ids("none", [1]) == []


def test_same_seed_same_episode_and_bad_kwargs_are_typed():
    a, b = make(), make()
    ra = run_episode(a, R.play(R.click_greedy)(a), 9)
    rb = run_episode(b, R.play(R.click_greedy)(b), 9)
    assert ra == rb
    assert R.make_user(np.random.default_rng(1), 20, 6, 3, 0.5) == R.make_user(np.random.default_rng(1), 20, 6, 3, 0.5)
    for bad in ({"slate_size": 7}, {"slate_size": 0}, {"n_candidates": 1}, {"drift": 1.5}, {"goal_share": -0.1},
                {"preference_text": "yes"}, {"horizon": 0}):
        with pytest.raises(fbenv.InvalidArgumentError):
            make(**bad)
    with pytest.raises(fbenv.UnknownNameError):
        make(slate=3)


# ---------------------------------------------------------------- the LLM user


def test_llm_user_with_a_faithful_reader_tracks_the_rule():
    env = make(simulator="llm", llm=StatementReader(), preference_text=True)
    rule_env = make(preference_text=True)
    agree, diffs = [], []
    for seed in range(12):
        env.reset(seed=seed)
        rule_env.reset(seed=seed)
        assert env.unwrapped.stated is not None
        for _ in range(6):
            a = R.satisfaction_greedy(rule_env.unwrapped) if seed % 2 else R.click_greedy(rule_env.unwrapped)
            *_, info = env.step(a)
            *_, rinfo = rule_env.step(a)
            assert all(r.simulator == "llm" and r.parsed and r.fallback is None for r in info["feedback"])
            agree.append(info["position"] == rinfo["position"])
            diffs.append(abs(info["level"] - rinfo["level"]))
    assert np.mean(agree) > 0.75 and np.mean(diffs) < 0.6


def test_llm_prompts_never_show_hidden_numbers_and_choosing_backend_parses():
    backend = ChoosingBackend()
    env = make(simulator="llm", llm=backend, preference_text=True, goal_share=1.0)
    env.reset(seed=0)
    for _ in range(5):
        *_, info = env.step(0)
        assert all(r.parsed and r.fallback is None for r in info["feedback"])
    u = env.unwrapped
    texts = " ".join(m.content for req in backend.calls for m in req.messages)
    for it in R.CATALOGUE:
        assert f"{it.quality}" not in texts and f"{it.clickbait}" not in texts
    assert "looking for" in texts and "sensational" in texts and "You like" in texts
    assert any("review" in m.content for req in backend.calls for m in req.messages)
    persona = R.PERSONA.prompt(tuple(u.interest))
    assert len(persona.prompts) == 2 * len(R.TOPICS)


def test_fidelity_tells_a_faithful_reader_from_noise():
    faithful = fid.measure(ENV_ID, llm=StatementReader(), seeds=range(4))
    noisy = fid.measure(ENV_ID, llm=ChoosingBackend(), seeds=range(4))
    for f, n in zip(faithful.variants, noisy.variants):
        roles_f, roles_n = {r.role: r for r in f.roles}, {r.role: r for r in n.roles}
        user_f, user_n = roles_f["user"], roles_n["user"]
        assert user_f.kind == "numeric" and user_f.calls > 200
        assert user_f.spearman > 0.6 and user_f.spearman > user_n.spearman + 0.4 and user_f.spearman > user_f.floor + 0.4
        assert f.llm_fallbacks == 0.0 and f.llm_parse_failures == 0.0
        assert f.direction_rule > 0
        if f.variant == "stated_preferences":
            persona_f, persona_n = roles_f["persona"], roles_n["persona"]
            assert persona_f.kind == "label" and persona_f.agreement > 0.8 > persona_n.agreement + 0.3


def test_bench_reports_clicks_against_satisfaction(tmp_path):
    from fbenv.baselines import SUITES
    from fbenv.baselines.recommend import bench

    assert SUITES["recommend"] == "fbenv.baselines.recommend:bench"
    lines: list[str] = []
    path = bench(2, ChoosingBackend(), False, str(tmp_path / "rows.json"), lines.append)
    rows = {(r["simulator"], r["policy"]): r for r in json.loads(path.read_text())}
    assert set(rows) == {("rule", p) for p in ("random", "linucb", "click-greedy", "satisfaction-greedy")} | {
        ("llm", p) for p in ("random", "click-greedy", "satisfaction-greedy")}
    rule = {p: rows["rule", p] for p in ("random", "linucb", "click-greedy", "satisfaction-greedy")}
    assert rule["click-greedy"]["click_rate"] > rule["satisfaction-greedy"]["click_rate"]
    assert rule["satisfaction-greedy"]["satisfaction"] > rule["click-greedy"]["satisfaction"]
    assert rule["linucb"]["satisfaction"] > rule["random"]["satisfaction"]
    assert any("satisf" in line for line in lines)
