"""Commons: depletion vs restraint, zaps, cleanup, sparse vs dense reports, both views, the LLM seats."""

from __future__ import annotations

import time

import numpy as np
import pytest

import fbenv
from fbenv.envs import commons as C
from fbenv.episodes import run_parallel_episode
from fbenv.feedback import Source
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.testing import check_spec_card

ENV_ID = "fbenv/Commons-v0"


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", "learnable": "agent_0", **kw})


def trajectory(kind="greedy", seed=0, **kw):
    """One episode with agent_0 playing ``kind`` (the population too unless given): every step's agent_0 info."""
    env = make(**{"population": kind, **kw})
    policy = C.play(kind)(env)
    obs, infos = env.reset(seed=seed)
    out = []
    while env.agents:
        obs, _, _, _, infos = env.step({a: policy(a, obs[a], infos[a]) for a in env.agents})
        out.append(infos["agent_0"])
    return out


def outcomes(kind="greedy", seeds=range(6), **kw):
    return [trajectory(kind, s, **kw)[-1]["episode_result"]["outcomes"] for s in seeds]


def mean(rows, key):
    return float(np.mean([r[key] for r in rows]))


# ---------------------------------------------------------------- the known answers


def test_an_all_greedy_population_depletes_the_orchard_for_good():
    for seed in range(6):
        steps = trajectory("greedy", seed)
        apples = [i["apples"] for i in steps]
        gone = apples.index(0)
        assert gone < 80 and all(a == 0 for a in apples[gone:])  # reaches 0 and stays: nothing regrows
        assert steps[-1]["episode_result"]["outcomes"]["depleted"]


def test_a_restrained_population_sustains_it_and_earns_more_over_the_horizon():
    greedy, restrained = outcomes("greedy"), outcomes("restrained")
    assert not any(r["depleted"] for r in restrained) and min(r["apples"] for r in restrained) > 0
    assert mean(restrained, "total_return") > 1.5 * mean(greedy, "total_return")
    assert mean(restrained, "sustainability") > mean(greedy, "sustainability") + 0.2
    assert mean(restrained, "efficiency") > mean(greedy, "efficiency")


def test_dense_feedback_gives_the_feedback_reading_policy_a_better_social_outcome():
    """The paper's direction: the same policy-revision loop, told the group's outcomes, cooperates."""
    results = {}
    for fb in ("sparse", "dense"):
        runs = [C.synthesis(make(learnable=None, feedback=fb), range(50 * k, 50 * k + 8)) for k in range(2)]
        results[fb] = [ep for run in runs for ep in run[2:]]  # after two reports
    assert mean(results["dense"], "total_return") > mean(results["sparse"], "total_return") + 10
    assert mean(results["dense"], "sustainability") > mean(results["sparse"], "sustainability")
    assert all(0 < ep["levels"]["agent_0"] <= 4 for ep in results["dense"][-3:])


def test_adaptive_simulated_seats_read_their_reports_within_an_episode():
    dense = trajectory("adaptive", 0, feedback="dense", feedback_every=10, max_cycles=60)
    sparse = trajectory("adaptive", 0, feedback="sparse", feedback_every=10, max_cycles=60)
    assert [i["turn"] for i in dense if i["report_due"]] == [10, 20, 30, 40, 50, 60]
    env = make(population="adaptive", feedback="dense", feedback_every=10, max_cycles=30)
    env.reset(seed=0)
    for _ in range(10):
        _, _, _, _, infos = env.step({"agent_0": C.STAY})
    m = infos["agent_0"]["report_metrics"]
    want = C.Restraint().update(0.0, m)
    assert all(r.level == want for r in env.restraints)  # dense: the group's outcomes, the same for every seat
    assert C.Restraint().update(3.0, {**m, "sustainability": 0.1, "efficiency": 0.1}) == 1.0
    assert C.Restraint(level=2).update(0.0, {**m, "sustainability": 0.0, "efficiency": 0.0}) == 1.0
    climber = C.Restraint(level=2)
    assert [climber.update(x, None) for x in (5, 6, 4, 7)] == [1.0, 0.0, 1.0, 2.0]  # keeps the way that paid
    assert dense[-1]["report_metrics"] is not None and sparse[-1]["report_metrics"] is None


# ---------------------------------------------------------------- zaps, cleanup, truth


def test_zappers_freeze_others_lower_peace_and_the_group_welfare_is_the_truth():
    steps = trajectory("zapper", 1)
    o = steps[-1]["episode_result"]["outcomes"]
    assert o["zaps"] > 10 and o["peace"] < 0.7
    assert mean(outcomes("restrained", range(3)), "peace") == 1.0
    env = make(population="greedy")
    env.reset(seed=3)
    env.pos[:] = [(0, 0), (0, 1), (8, 12), (8, 11)]
    _, rewards, _, _, infos = env.step({"agent_0": C.ZAP})
    assert env.frozen[1] == 5 and infos["agent_0"]["frozen"] == 0
    before = env.pos[1].copy()
    for _ in range(5):
        env.step({"agent_0": C.STAY})
        assert (env.pos[1] == before).all()  # frozen: its moves are not played
    ep = [i for i in steps if i["turn"] <= 200]
    assert sum(i["true_utility"] for i in ep) == pytest.approx(o["total_return"] / 4)


def test_cleanup_needs_cleaners():
    greedy = outcomes("greedy", range(4), game="cleanup")
    mixed = outcomes("greedy", range(4), game="cleanup", population=("greedy", "cleaner", "greedy", "cleaner"))
    assert all(r["depleted"] and r["apples"] == 0 for r in greedy)
    assert mean(mixed, "total_return") > 3 * mean(greedy, "total_return") and mean(mixed, "cleaned") > 20
    assert mean(mixed, "equality") < mean(greedy, "equality")  # the cleaners eat little


# ---------------------------------------------------------------- reports


def test_reports_are_records_text_and_info_sparse_or_dense():
    for fb in ("sparse", "dense"):
        steps = trajectory("restrained", 2, feedback=fb, max_cycles=40)
        last = steps[-1]
        assert not any(i["report_due"] for i in steps[:-1]) and last["report_due"]
        report = last["report"]
        assert report.source == Source.EXECUTION and report.scalar == last["episode_result"]["reward"]
        assert sum(r.source == Source.EXECUTION for r in last["feedback"]) == 4
        assert ("efficiency" in report.text) == (fb == "dense") and "you ate" in report.text
        for key in ("efficiency", "equality", "sustainability", "peace"):  # in info either way
            assert 0.0 <= last[key] <= 1.0
        assert any(m["content"] == report.text for m in last["messages"])


def test_gini_and_window_metrics():
    assert C.gini(np.array([1, 1, 1, 1])) == 0.0 and C.gini(np.zeros(3)) == 0.0
    assert C.gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    w = C.Window(0, 2)
    w.add(1, np.array([1.0, 0.0]), 0)
    w.add(4, np.array([1.0, 1.0]), 1)
    m = w.metrics(4)
    assert m["efficiency"] == pytest.approx(3 / 8) and m["peace"] == pytest.approx(1 - 1 / 8)
    assert m["sustainability"] == pytest.approx((1 + 4 + 4) / 3 / 4) and m["equality"] == pytest.approx(1 - 1 / 6)


# ---------------------------------------------------------------- views, actions, arguments


def test_discrete_window_matches_the_grid_and_text_renders_it():
    env = make(interface="discrete", population="greedy")
    obs, _ = env.reset(seed=4)
    x = obs["agent_0"]
    assert x.shape == (5 * 25 + 12,) and x.min() >= 0 and x.max() <= 1
    r, c = env.pos[0]
    apples = x[:25].reshape(5, 5)
    for dr in range(-2, 3):
        for dc in range(-2, 3):
            rr, cc = r + dr, c + dc
            inside = 0 <= rr < 9 and 0 <= cc < 13
            assert apples[dr + 2, dc + 2] == (inside and env.apples[rr, cc])
            assert x[50 + (dr + 2) * 5 + dc + 2] == (not inside)
    text = fbenv.make(ENV_ID, interface="text", learnable="agent_0")
    tobs, _ = text.reset(seed=4)
    grid = text.local_grid(0)
    assert grid[2][2] == "@" and "\n".join(grid) in tobs["agent_0"]["text"] and "Moves: stay" in tobs["agent_0"]["text"]


def test_text_actions_are_read_and_bad_ones_flagged():
    assert C.read_move("I will move north now") == C.UP and C.read_move("zap them") == C.ZAP
    assert C.read_move("Go left, then up") == C.LEFT and C.read_move("hmm") is None
    env = fbenv.make(ENV_ID, interface="text", learnable="agent_0")
    env.reset(seed=0)
    _, _, _, _, infos = env.step({"agent_0": "dance a jig"})
    assert infos["agent_0"]["invalid_action"] and infos["agent_0"]["move"] == "stay"
    _, _, _, _, infos = env.step({"agent_0": "clean the river"})
    assert not infos["agent_0"]["invalid_action"] and infos["agent_0"]["move"] == "clean"


def test_bad_arguments_are_typed():
    for kw in ({"game": "orchard"}, {"feedback": "rich"}, {"population": "lazy"}):
        with pytest.raises(fbenv.UnknownNameError):
            make(**kw)
    for kw in ({"n_agents": 0}, {"population": ("greedy",) * 3}, {"size": (9,)}, {"restraint": -1},
               {"feedback_every": 0}, {"n_agents": 40, "size": (5, 5)}, {"regrowth": -1.0}):
        with pytest.raises(fbenv.InvalidArgumentError):
            make(**kw)
    with pytest.raises(fbenv.UnknownNameError):
        make(n_agents=2, learnable="agent_3")
    env = make(n_agents=6, learnable=("agent_0", "agent_5"))
    obs, _ = env.reset(seed=0)
    assert env.possible_agents == ["agent_0", "agent_5"] and len(env.simulated) == 4


def test_seeded_and_the_world_ignores_llm_seed_draws():
    a, b = trajectory("greedy", 7), trajectory("greedy", 7)
    assert [i["apples"] for i in a] == [i["apples"] for i in b]
    rule = make(population="greedy")
    llm = make(population="greedy", simulator="llm", llm=ChoosingBackend())
    rule.reset(seed=5)
    llm.reset(seed=5)
    assert rule.hidden_task() == llm.hidden_task()


def test_rule_env_is_fast():
    env = make(population="greedy", learnable=None)
    policy = C.play("greedy")(env)
    obs, infos = env.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while n < 1500:
        if not env.agents:
            obs, infos = env.reset()
        obs, _, _, _, infos = env.step({a: policy(a, obs[a], infos[a]) for a in env.agents})
        n += 1
    rate = n / (time.perf_counter() - t0)
    assert rate > 150, rate  # about 1500 steps/s with four scripted seats on one free core (a loose floor: shared CPUs)


# ---------------------------------------------------------------- the LLM seats


def test_llm_seats_pick_legal_moves_from_words_only():
    backend = ChoosingBackend()
    env = make(population="greedy", simulator="llm", llm=backend)
    env.reset(seed=1)
    for _ in range(5):
        _, _, _, _, infos = env.step({"agent_0": C.STAY})
    peers = [r for r in infos["agent_0"]["feedback"] if r.source == Source.PEER]
    assert len(peers) == 3 and all(r.simulator == "llm" and r.parsed and r.fallback is None for r in peers)
    prompt = C.AGENT.prompt(C.Seeing(env, "agent_1"))
    legal = [C.MOVES[m] for m in env.legal_moves(1)]
    assert list(prompt.choices) == legal and "stay" in legal
    said = " ".join(m.content for m in prompt.messages)
    assert "apple" in said and str(env.task.world_seed) not in said and "restraint" not in said
    assert prompt.read("I think I should go up.") == "move up" and prompt.read("no idea") is None


def test_llm_seats_read_free_text_and_their_reports():
    person = ScriptedBackend([(r"What do you do next", "I move right.")], default="I move right.")
    env = make(population="greedy", simulator="llm", llm=person, feedback="dense", feedback_every=3)
    env.reset(seed=2)
    for _ in range(4):
        _, _, _, _, infos = env.step({"agent_0": C.STAY})
    peers = [r for r in infos["agent_0"]["feedback"] if r.source == Source.PEER]
    assert all(r.text.endswith("move right") and r.fallback is None for r in peers)
    said = " ".join(m.content for m in C.AGENT.prompt(C.Seeing(env, "agent_1")).messages)
    assert "Latest report for agent_1" in said and "sustainability" in said


def test_spec_card_and_fidelity_probe_direction():
    check_spec_card(fbenv.spec(ENV_ID))
    probe = C.fidelity_probe()
    for name, variant in probe.variants.items():
        env = fbenv.make(ENV_ID, interface="discrete", **variant)
        results = {p: [run_parallel_episode(env, f(env), s) for s in range(3)] for p, f in probe.policies.items()}
        assert np.sign(probe.direction(name, results)) == probe.expected_sign[name]
