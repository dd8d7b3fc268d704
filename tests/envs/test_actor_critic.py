"""ActorCritic: verdict accuracy and helpfulness of scripted critics, turns, both views, the LLM seats."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fbenv
from fbenv.envs import actor_critic as A
from fbenv.envs import problems as P
from fbenv.episodes import run_parallel_episode
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult
from fbenv.testing import check_fbenv_parallel_env
from tests.fbenv.readers import read_critic_question

ENV_ID = "fbenv/ActorCritic-v0"
SEEDS = range(240)


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", **kw})


def episodes(critic="oracle", actor="follower", seeds=SEEDS, **kw):
    """One episode per seed; the end-of-episode info of each seat."""
    env = make(**kw)
    policy = A.play(critic, actor)(env)
    out = []
    for seed in seeds:
        obs, infos = env.reset(seed=seed)
        ends = {}
        while env.agents:
            obs, _, _, _, infos = env.step({a: policy(a, obs[a], infos[a]) for a in env.agents})
            ends.update({a: i["episode_result"] for a, i in infos.items() if "episode_result" in i})
        out.append(ends)
    return out


def mean(results, key, seat="critic_0"):
    return float(np.mean([r[seat]["outcomes"][key] for r in results]))


def reward(results, seat="critic_0"):
    return float(np.mean([r[seat]["reward"] for r in results]))


# ---------------------------------------------------------------- the known answers


def test_an_always_correct_critic_is_at_chance_and_never_helps():
    rs = episodes("always-correct")
    assert 0.42 < mean(rs, "verdict_accuracy") < 0.58  # the actor's first answer is right half the time
    assert mean(rs, "helpfulness") == 0.0 and mean(rs, "fixed") == 0.0 == mean(rs, "broken")
    assert all(r["critic_0"]["outcomes"]["rounds_used"] == 1 and r["critic_0"]["terminated"] for r in rs)
    assert mean(rs, "solved") == mean(rs, "first_correct")


def test_an_oracle_critic_discriminates_and_helps():
    rs = episodes("oracle")
    assert mean(rs, "verdict_accuracy") == 1.0 and mean(rs, "broken") == 0.0
    assert mean(rs, "helpfulness") > 0.3 and mean(rs, "solved") > mean(rs, "first_correct") + 0.3
    wrong_first = [r for r in rs if not r["critic_0"]["outcomes"]["first_correct"]]
    assert all(r["critic_0"]["outcomes"]["located"] == r["critic_0"]["outcomes"]["critiques"] - r["critic_0"]["outcomes"]
               ["solved"] for r in wrong_first)  # every "wrong" verdict named the error
    # the actor's reward and every seat's true utility are the final correctness
    assert all(r[s]["true_utility"] == float(r[s]["outcomes"]["solved"]) for r in rs for s in r)
    assert all(r["actor_0"]["reward"] == r["actor_0"]["true_utility"] for r in rs)
    assert reward(rs) > reward(episodes("always-correct")) + 0.7


def test_naming_the_wrong_step_helps_less_than_naming_the_right_one():
    located, misplaced, unlocated = episodes("oracle"), episodes("misplaced"), episodes("unlocated")
    for rs in (misplaced, unlocated):
        assert mean(rs, "verdict_accuracy") == 1.0  # discrimination alone cannot tell them apart
        assert mean(rs, "helpfulness") == 0.0 and mean(rs, "solved") == mean(rs, "first_correct")
        assert reward(rs) < reward(located) - 0.3
    # with the discrimination reward a mean, keeping the actor wrong for longer earns nothing
    assert reward(misplaced) == pytest.approx(1.0)


def test_a_random_critic_breaks_right_answers_and_the_rule_critic_sits_between():
    rnd, rule, oracle = episodes("random"), episodes("rule"), episodes("oracle")
    assert mean(rnd, "broken") > 0.1 and mean(rnd, "helpfulness") < 0.0 < mean(rule, "helpfulness")
    assert mean(rnd, "verdict_accuracy") < mean(rule, "verdict_accuracy") < mean(oracle, "verdict_accuracy")
    exact = episodes("rule", critic_noise=0.0)
    assert [r["critic_0"]["outcomes"] for r in exact] == [r["critic_0"]["outcomes"] for r in oracle]


def test_the_simulated_critic_helps_an_actor_that_follows_it():
    follow = episodes(actor="follower", learnable="actor_0")
    ignore = episodes(actor="ignorer", learnable="actor_0")
    assert set(follow[0]) == {"actor_0"}
    assert mean(follow, "solved", "actor_0") > mean(ignore, "solved", "actor_0") + 0.15
    assert mean(ignore, "fixed", "actor_0") == 0.0
    assert mean(follow, "first_correct", "actor_0") == mean(ignore, "first_correct", "actor_0")


def test_fidelity_probe_direction_has_the_documented_sign_under_the_rule_simulators():
    probe = A.fidelity_probe()
    for variant, sign in probe.expected_sign.items():
        env = make(**probe.variants[variant])
        results = {n: [run_parallel_episode(env, f(env), s) for s in range(60)] for n, f in probe.policies.items()}
        assert sign * probe.direction(variant, results) > 0.15, variant


# ---------------------------------------------------------------- turns, views, episode end


def test_turns_alternate_and_the_waiting_seat_is_not_read():
    env = fbenv.make(ENV_ID, family="arithmetic", max_rounds=2, sway=0.0, fix_rate=1.0, actor_skill=0.0)
    obs, infos = env.reset(seed=3)
    p = env.problem
    assert infos["actor_0"]["on_turn"] == "actor_0" and p.key not in obs["critic_0"]["text"]
    assert "Waiting" in obs["critic_0"]["text"] and "Waiting" not in obs["actor_0"]["text"]
    wrong = next(c for c in p.candidates if c.slot == 2)
    obs, r, te, tr, infos = env.step({"actor_0": wrong.text, "critic_0": "Your answer is correct."})  # not read
    assert infos["critic_0"]["ignored_action"] and not infos["actor_0"]["ignored_action"]
    assert infos["critic_0"]["on_turn"] == "critic_0" and infos["critic_0"]["wrong_locations"] == (2,)
    assert r == {"actor_0": 0.0, "critic_0": 0.0} and wrong.text in obs["critic_0"]["text"]
    obs, r, te, tr, infos = env.step({"actor_0": "whatever", "critic_0": "Wrong: there is a mistake in step 3."})
    assert infos["actor_0"]["verdict"] is False and infos["actor_0"]["pointed"] == 3 and infos["actor_0"]["verdict_correct"]
    assert "step 3" in obs["actor_0"]["text"] and r["critic_0"] == 0.0
    obs, r, te, tr, infos = env.step({"actor_0": p.key, "critic_0": "x"})
    assert infos["critic_0"]["helped"] == 1 and r["critic_0"] == 1.0 and infos["actor_0"]["correct"]
    obs, r, te, tr, infos = env.step({"actor_0": "x", "critic_0": "Looks correct to me."})
    assert te == {"actor_0": True, "critic_0": True} and r == {"actor_0": 1.0, "critic_0": 1.0}  # its mean verdict accuracy
    o = infos["critic_0"]["episode_result"]["outcomes"]
    assert set(o) == set(fbenv.spec(ENV_ID).outcomes) and env.agents == []
    assert o["correct_by_round"] == (False, True) and o["fixed"] == 1 and o["located"] == 1 and o["critiques"] == 2


def test_bad_turns_are_observations_and_the_budget_truncates():
    env = fbenv.make(ENV_ID, learnable="actor_0", max_rounds=3, family="facts")
    env.reset(seed=0)
    *_, infos = env.step({"actor_0": A.KEEP})
    assert infos["actor_0"]["invalid_answer"] and infos["actor_0"]["feedback"] == ()  # the critic was not asked
    *_, infos = env.step({"actor_0": "I'm not sure 🙂"})
    assert infos["actor_0"]["invalid_answer"] and "could not be read" in infos["actor_0"]["messages"][-1]["content"]
    wrong = next(c.text for c in env.problem.candidates if c.slot is not None)
    _, r, te, tr, infos = env.step({"actor_0": wrong})
    assert tr == {"actor_0": True} and not te["actor_0"] and r["actor_0"] == 0.0
    o = infos["actor_0"]["episode_result"]["outcomes"]
    assert o["invalid_answers"] == 2 and o["rounds_used"] == 3 and o["critiques"] == 1
    critic = fbenv.make(ENV_ID, learnable="critic_0", actor_skill=0.0)
    critic.reset(seed=1)
    _, r, te, tr, infos = critic.step({"critic_0": "Hmm, let me think."})
    assert infos["critic_0"]["invalid_critique"] and not (te["critic_0"] or tr["critic_0"])
    assert infos["critic_0"]["feedback"][0].text == critic.answer  # the actor heard no verdict: it kept its answer
    with pytest.raises(fbenv.InvalidArgumentError, match="expects a str"):
        critic.step({"critic_0": 1})
    d = make()
    d.reset(seed=0)
    with pytest.raises(fbenv.InvalidArgumentError, match=r"\[0, 6\)"):
        d.step({"actor_0": 6, "critic_0": 0})


def test_critiques_are_read_from_free_text_and_the_discrete_ones_read_back():
    for family in P.FAMILIES:
        p = P.problem(7, family)
        replies = A.critic_replies(p)
        assert len(replies) == 6 and len(set(replies)) == 6
        read = [A.read_critique(p, t) for t in replies]
        assert read[0].ok and not read[1].ok and read[1].slots == ()
        for k in range(4):
            assert read[2 + k].slots == ((k,) if k < len(p.locations) else ())  # facts has two locations
    p = P.problem(7, "arithmetic")
    assert A.read_critique(p, "INCORRECT - step #2 is off").slots == (1,)
    assert A.read_critique(p, "That's right.").ok and A.read_critique(p, "No comment.") is None
    q = P.problem(7, "checklist")
    assert A.read_critique(q, f"Wrong: it fails '{q.locations[2]}'.").slots == (2,)


def test_discrete_features_show_the_critique_and_a_noisy_reading_never_the_key():
    env = make(family="arithmetic", actor_skill=0.0)
    readings = []
    for seed in range(80):
        obs, _ = env.reset(seed=seed)
        assert obs["actor_0"].shape == (26,) and obs["critic_0"].shape == (16,) and obs["actor_0"][24] == 0.0
        assert obs["actor_0"][25] == 1.0 and obs["critic_0"][12] == 0.0  # the actor's turn
        p = env.problem
        wrong = next(i for i, c in enumerate(p.candidates) if c.slot is not None)
        obs, *_ = env.step({"actor_0": wrong, "critic_0": 0})
        readings.append(obs["critic_0"][p.candidates[wrong].slot])
        assert list(obs["critic_0"][4:8]) == [1, 1, 1, 1] and obs["critic_0"][12] == 1.0
        slot = p.candidates[wrong].slot
        obs, *_ = env.step({"actor_0": 0, "critic_0": 2 + slot})
        assert obs["actor_0"][wrong] == 1.0 and obs["actor_0"][15 + slot] == 1.0 and obs["actor_0"][19] == 1.0
        assert obs["actor_0"][10 + wrong] == 1.0 and obs["actor_0"][5 + p.right] == 0.0  # the key is not ruled out
    assert 0.75 < np.mean(readings) < 0.95  # the error reads as wrong, up to the reading's noise


def test_both_views_are_one_task_and_same_seed_same_episode():
    text, disc = fbenv.make(ENV_ID), make()
    for seed in range(8):
        text.reset(seed=seed)
        disc.reset(seed=seed)
        assert text.hidden_task() == disc.hidden_task()
        while disc.agents:
            acts = {a: (seed + len(disc.correct_by_round)) % 6 for a in disc.agents}
            rt = text.step({a: text.candidate_replies(a)[i] for a, i in acts.items()})
            rd = disc.step(acts)
            assert rt[1:4] == rd[1:4]
            assert all(rt[4][a]["true_utility"] == rd[4][a]["true_utility"] for a in acts)
    for kw in ({}, {"learnable": "critic_0", "simulator": "llm", "llm": "choosing"}):
        a, b = (episodes("random", "random", range(6), **kw) for _ in range(2))
        assert a == b
    noisy = episodes("random", "random", range(6), learnable="actor_0", critic_noise=0.9)
    assert episodes("random", "random", range(6), learnable="actor_0") != noisy  # the simulated critic's noise


def test_bad_arguments_are_typed():
    for bad, match in [({"max_rounds": 0}, "max_rounds"), ({"max_rounds": 2.0}, "max_rounds"),
                       ({"discrimination_weight": -1.0}, "discrimination_weight"), ({"actor_skill": 1.5}, "actor_skill"),
                       ({"fix_rate": math.nan}, "fix_rate"), ({"sway": "a lot"}, "sway"), ({"critic_noise": 2}, "critic_noise"),
                       ({"family": "poems"}, "family"), ({"learnable": "judge_0"}, "seat of ActorCriticEnv")]:
        with pytest.raises((fbenv.InvalidArgumentError, fbenv.UnknownNameError), match=match):
            make(**bad)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'actor'"):
        make(simulator={"actr": "llm"})


def test_registry_checks_for_a_simulated_llm_actor_on_the_text_view():
    check_fbenv_parallel_env(fbenv.spec(ENV_ID), interface="text", simulator="llm", llm=ChoosingBackend(),
                             learnable="critic_0", family="checklist")


# ---------------------------------------------------------------- the LLM seats


class Faithful(Backend):
    """Reads what is in front of it exactly: the critic's questions about the actor's answer,
    and the actor's questions about the critique it was given."""

    spec = model = "faithful"
    scores_choices = True

    def __init__(self):
        self.env = None
        self.actor_calls = 0

    def _generate(self, requests):
        out = []
        for req in requests:
            choices, text = req.sampling.choices, req.messages[-1].content
            if req.messages[0].content.startswith("You solve problems") and "N/A" not in text:
                self.actor_calls += 1
            probs = read_critic_question(choices, text)
            out.append(ChatResult(choices[int(np.argmax(probs))], choice_logprobs=tuple(np.log(probs))))
        return out


def faithful_episodes(critic, actor, seats, **kw):
    backend = Faithful()
    env = make(simulator="llm", llm=backend, learnable=seats, **kw)
    backend.env = env
    policy = A.play(critic, actor)(env)
    results = [run_parallel_episode(env, policy, s) for s in range(24)]
    return results, backend


@pytest.mark.parametrize("critic", ["oracle", "misplaced", "random"])
def test_a_faithful_llm_actor_refines_like_the_rule_actor(critic):
    kw = {"fix_rate": 1.0, "sway": 0.0, "critic_noise": 0.0}
    rule = [run_parallel_episode(e, A.play(critic)(e), s) for e in [make(learnable="critic_0", **kw)] for s in range(24)]
    llm, backend = faithful_episodes(critic, "follower", "critic_0", **kw)
    assert [(r.reward, r.true_utility) for r in rule] == [(r.reward, r.true_utility) for r in llm]
    assert all(r.fallbacks == 0 == r.parse_failures for r in llm)
    assert backend.actor_calls > 0


def test_a_faithful_llm_critic_judges_like_the_rule_critic():
    kw = {"critic_noise": 0.0}
    for actor in ("follower", "random"):
        rule = [run_parallel_episode(e, A.play("oracle", actor)(e), s) for e in [make(learnable="actor_0", **kw)] for s in range(24)]
        llm, _ = faithful_episodes("oracle", actor, "actor_0", **kw)
        assert [(r.reward, r.true_utility, r.turns) for r in rule] == [(r.reward, r.true_utility, r.turns) for r in llm]
        assert all(r.fallbacks == 0 == r.parse_failures for r in llm)


def test_the_llm_actor_is_prompted_with_the_critique_and_free_text_seats_follow_the_policy():
    backend = ChoosingBackend()
    env = make(learnable="critic_0", simulator="llm", llm=backend, family="arithmetic", actor_skill=0.0)
    env.reset(seed=2)
    assert backend.calls == []  # the injected first answer needs no model
    first = env.answer
    *_, infos = env.step({"critic_0": 3})
    (record,) = infos["critic_0"]["feedback"]
    assert record.simulator == "llm" and record.parsed and record.fallback is None and record.source == "peer"
    asked = [r for r in backend.calls if not r.messages[-1].content.startswith("N/A")]
    assert len(asked) == 2 and all("The error is in step 2." in r.messages[-1].content for r in asked)
    assert all(first in r.messages[-1].content for r in asked)  # it reads the critique of its own answer
    assert set(asked[0].sampling.choices) == {"Your answer is correct.", "Your answer is incorrect."}
    assert "The error is in step 2." in asked[1].sampling.choices
    mute = ScriptedBackend([], default="I like turtles.")
    env = make(learnable="actor_0", simulator="llm", llm=mute, on_parse_error="truncate")
    env.reset(seed=0)
    _, r, te, tr, infos = env.step({"actor_0": 0})
    assert tr == {"actor_0": True} and not te["actor_0"] and r["actor_0"] == 0.0 and "feedback_error" in infos["actor_0"]
    rule = make(learnable="actor_0", family="facts")
    rule.reset(seed=0)
    p = rule.problem
    final = P.check(p, p.candidates[0].text).final
    free = ScriptedBackend([(r"final answer", f"They say {final}."), (r"meet the requirement", "No.")])
    env = make(learnable="actor_0", simulator={"critic": "llm"}, llm=free, family="facts")
    env.reset(seed=0)
    *_, infos = env.step({"actor_0": 0})
    assert infos["actor_0"]["feedback"][0].parsed and infos["actor_0"]["verdict"] is (p.right == 0)


# ---------------------------------------------------------------- the bench suite


def test_the_bench_suite_runs_rule_only(tmp_path):
    from fbenv.baselines import actor_critic as B

    lines: list[str] = []
    B.bench(8, "choosing", True, str(tmp_path / "ac.json"), lines.append)
    text = "\n".join(lines)
    assert "oracle" in text and "always-correct" in text and (tmp_path / "ac.json").exists()
    rows = {r.critic: r for r in B.critic_rows(list(range(60)))}
    assert rows["oracle"].verdict_accuracy == 1.0 and rows["always-correct"].helpfulness == 0.0
    assert rows["oracle"].helpfulness > rows["misplaced"].helpfulness == 0.0
    llm = B.llm_rows("choosing", [0, 1, 2])
    assert llm and all(r.llm_fallbacks == 0 for r in llm)
