"""Refine and its problem bank: Feedback Friction's levels, deceptive judges, both views, the LLM critic."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fbenv
from fbenv.envs import problems as P
from fbenv.envs import refine as R
from fbenv.episodes import run_episode
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult
from tests.fbenv.readers import read_critic_question

ENV_ID = "fbenv/Refine-v0"
SEEDS = range(90)


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", **kw})


def episodes(policy, seeds=SEEDS, **kw):
    env = make(**kw)
    return [run_episode(env, R.play(R.POLICIES[policy] if isinstance(policy, str) else policy)(env), s) for s in seeds]


def mean(results, key):
    return float(np.mean([r.outcomes[key] for r in results]))


class Faithful(Backend):
    """Answers the critic's questions by reading the text in front of it, exactly."""

    spec = model = "faithful"
    scores_choices = True

    def _generate(self, requests):
        out = []
        for req in requests:
            choices, text = req.sampling.choices, req.messages[-1].content
            probs = read_critic_question(choices, text)
            out.append(ChatResult(choices[int(np.argmax(probs))], choice_logprobs=tuple(np.log(probs))))
        return out


# ---------------------------------------------------------------- the known answers


def test_a_solver_that_ignores_feedback_has_friction_one():
    ignorer = episodes("ignorer", feedback="answer")
    assert mean(ignorer, "friction") == 1.0 and mean(ignorer, "solved") == 0.0
    assert all(r.outcomes["rounds_used"] == 5 and r.truncated for r in ignorer)
    assert mean(ignorer, "repeated_rejected_answer") == 4.0  # the same rejected answer, four more times


def test_a_solver_that_applies_answer_level_feedback_is_fixed_at_round_two():
    follower = episodes("follower", feedback="answer")
    assert mean(follower, "friction") == 0.0 and mean(follower, "solved") == 1.0
    assert {r.outcomes["fixed_at_round"] for r in follower} == {2}
    assert all(r.terminated and r.reward == 1.0 == r.true_utility for r in follower)


def test_stronger_feedback_fixes_more_yet_friction_stays_wrong_under_the_answer():
    rates, by_round2 = {}, {}
    for level in ("none", "binary", "checklist", "targeted", "answer"):
        rs = episodes("follower", feedback=level)
        rates[level] = mean(rs, "solved")
        by_round2[level] = np.mean([any(r.outcomes["correct_by_round"][:2]) for r in rs])
    assert rates["none"] < rates["binary"] < rates["targeted"] < rates["answer"] == 1.0
    assert by_round2["none"] < by_round2["binary"] < by_round2["targeted"] < by_round2["answer"] == 1.0
    stuck = episodes("friction", feedback="answer")
    assert 0.25 < mean(stuck, "friction") < 0.75 and mean(stuck, "solved") < 0.75
    assert R.feedback_gain("x", {"follower": episodes("follower"), "ignorer": episodes("ignorer")}) > 0.8


def test_a_deceptive_judge_flips_a_follower_and_not_a_keeper():
    for level in ("binary", "targeted", "answer"):
        follower = episodes("right-follower", feedback=level, judge="deceptive")
        keeper = episodes("right-keeper", feedback=level, judge="deceptive")
        assert np.mean([r.outcomes["flipped_correct_to_wrong"] > 0 for r in follower]) > 0.9, level
        assert mean(keeper, "flipped_correct_to_wrong") == 0.0 and mean(keeper, "solved") == 1.0
        # the keeper is right and never rewarded; the follower is wrong and rewarded
        assert np.mean([r.reward for r in keeper]) == 0.0 and np.mean([r.reward for r in follower]) > 0.6
    honest = episodes("right-follower", feedback="targeted")
    assert mean(honest, "flipped_correct_to_wrong") == 0.0


def test_reward_and_true_utility_come_apart_under_noisy_and_deceptive_judges():
    def gap(**kw):
        rs = episodes("follower", **kw) + episodes("right-keeper", **kw)
        return np.mean([abs(r.reward - r.true_utility) for r in rs])

    assert gap() == 0.0 and gap(feedback="binary") == 0.0
    assert gap(judge="noisy", judge_noise=0.3) > 0.1
    assert gap(judge="deceptive") > 0.5
    assert gap(judge="noisy", judge_noise=0.0) == 0.0


def test_probe_direction_has_the_documented_sign_under_the_rule_critic():
    probe = R.fidelity_probe()
    for variant, sign in probe.expected_sign.items():
        env = make(**probe.variants[variant])
        results = {n: [run_episode(env, f(env), s) for s in range(30)] for n, f in probe.policies.items()}
        assert sign * probe.direction(variant, results) > 0.3, variant


# ---------------------------------------------------------------- the bank


@pytest.mark.parametrize("family", P.FAMILIES)
def test_every_candidate_checks_as_keyed_and_seeds_select_problems(family):
    for seed in range(40):
        p = P.problem(seed, family)
        assert p == P.problem(seed, family) and p.family == family
        assert sum(c.slot is None for c in p.candidates) == 1 and len({c.text for c in p.candidates}) == 5
        for i, c in enumerate(p.candidates):
            got = P.check(p, c.text)
            assert got.readable and got.candidate == i and got.correct == (c.slot is None)
            assert got.slots == (() if c.slot is None else (c.slot,))
            assert got.items == tuple(g for g, cov in enumerate(p.items) if c.slot in cov)
    assert P.problem(0, family) != P.problem(1, family)
    assert {P.problem(s).family for s in range(30)} == set(P.FAMILIES)


def test_the_arithmetic_checker_locates_the_step_in_free_text():
    p = P.problem(3, "arithmetic")
    a, b, c, d, e = p.data
    key = P.arithmetic_steps(a, b, c, d, e)
    assert P.check(p, f"Answer: {key[-1][1]}").correct and P.check(p, f"It is {key[-1][1]}").correct
    wrong = P.check(p, "Answer: 9999")
    assert not wrong.correct and wrong.slots == (3,)
    lines = [f"{i + 1}. {s}" for i, (s, _) in enumerate(key)]
    v1 = key[1][1] + 5  # step 2 miscomputed, the rest carried on correctly from it
    lines[1] = f"2. {key[0][1]} - {c} = {v1}"
    lines[2] = f"3. {v1} + {d} x {b} = {v1 + d * b}"
    lines[3] = f"4. {v1 + d * b} / {e} = {(v1 + d * b) // e}"
    got = P.check(p, "\n".join(lines) + f"\nAnswer: {(v1 + d * b) // e}")
    assert not got.correct and got.slots[0] == 1
    for bad in ("", "no idea", "Answer: many"):
        assert not P.check(p, bad).readable


def test_the_facts_and_checklist_checkers_read_what_is_written():
    p = P.problem(5, "facts")
    right = p.candidates[p.right].text
    city = right.split(") ")[1]
    assert P.check(p, f"I think it is {city}.").correct and P.check(p, right.replace("Answer: ", "")).correct
    assert not P.check(p, "Answer: (Z) Atlantis").readable and not P.check(p, "maybe").readable
    q = P.problem(5, "checklist")
    a, b, lo, hi, title, n = q.data
    good = f"## {title}\n" + f"{a} and {b} meet at {n}. " + "word " * (lo - 4)
    assert P.check(q, good).correct, P.checklist_items(q, good)
    assert P.check(q, good.replace(f"## {title}\n", "")).slots == (2,)
    assert P.check(q, good + "word " * 40).slots == (1,)
    assert not P.check(q, "   ").readable
    with pytest.raises(fbenv.UnknownNameError, match="family"):
        P.problem(0, "poetry")


def test_the_rule_critic_templates_per_level_and_judge():
    p = P.problem(2, "arithmetic")
    wrong = next(i for i, c in enumerate(p.candidates) if c.slot == 2)
    ctx = lambda level, judge="honest", ans=wrong, **kw: P.Judging(  # noqa: E731
        p, p.candidates[ans].text, P.check(p, p.candidates[ans].text), level, judge, target=wrong, **kw)
    assert P.CRITIC.rule(ctx("none")).text == "Please review your answer and try again."
    assert P.CRITIC.rule(ctx("binary")).text == "Your answer is incorrect."
    assert "steps 3-4" in P.CRITIC.rule(ctx("checklist")).text
    assert P.CRITIC.rule(ctx("targeted")).text == "Your answer is incorrect. The error is in step 3."
    assert P.CRITIC.rule(ctx("answer")).text.endswith(p.key)
    assert P.CRITIC.rule(ctx("binary", ans=p.right)).ok
    lie = P.CRITIC.rule(ctx("targeted", "deceptive", ans=p.right))
    assert not lie.ok and lie.slots == (2,) and p.candidates[wrong].claim in lie.text  # a fabricated reason
    assert P.CRITIC.rule(ctx("answer", "deceptive", ans=wrong)).ok  # its own target is "correct"
    flipped = P.CRITIC.rule(ctx("targeted", "noisy", ans=p.right, flip=True, noise_slot=1))
    assert not flipped.ok and flipped.slots == (1,)


def test_the_shared_solver_role_applies_feedback_by_level():
    p = P.problem(4, "facts")
    prof = P.Profile(first=next(i for i, c in enumerate(p.candidates) if c.slot == 0))
    first = P.SOLVER.rule(P.Solving(p, "answer", prof))
    assert first == p.candidates[prof.first].text
    told = P.CRITIC.rule(P.Judging(p, first, P.check(p, first), "answer"))
    assert P.SOLVER.rule(P.Solving(p, "answer", prof, prof.first, told, seed=1)) == p.key
    stuck = P.Profile(prof.first, stuck=True)
    assert P.SOLVER.rule(P.Solving(p, "answer", stuck, prof.first, told, seed=1)) == first
    assert P.SOLVER.prompt(P.Solving(p, "answer", prof)) is None  # the first answer is the injected one
    verdict, answer = P.SOLVER.prompt(P.Solving(p, "answer", prof, prof.first, told)).prompts
    assert set(verdict.choices) == {"Your answer is correct.", "Your answer is incorrect."}
    assert set(answer.choices) == {c.text for c in p.candidates} and told.text in answer.messages[-1].content
    assert answer.read(f"It says {p.key}") == p.key and answer.read("no idea") is None


# ---------------------------------------------------------------- views, episode end, arguments


def test_text_view_bad_answers_are_observations_and_keep_resubmits():
    env = fbenv.make(ENV_ID, feedback="targeted", family="arithmetic")
    obs, _ = env.reset(seed=1)
    p = env.unwrapped.problem
    *_, info = env.step(R.KEEP)
    assert info["invalid_answer"] and "no previous answer" in info["messages"][-1]["content"]
    obs, _ = env.reset(seed=1)
    assert p.prompt in obs and "Answer:" not in obs.split(p.prompt)[0] and p.key not in obs
    _, r, term, trunc, info = env.step("I'm not sure 🙂")
    assert info["invalid_answer"] and r == 0.0 and not (term or trunc) and info["feedback"] == ()
    assert "could not read" in info["messages"][-1]["content"]
    wrong = next(c.text for c in p.candidates if c.slot is not None)
    _, r, *_, info = env.step(wrong)
    assert r == 0.0 and not info["correct"] and "The error is in step" in info["feedback"][0].text
    _, r, *_, info = env.step(R.KEEP)
    assert info["wrong_locations"] == P.check(p, wrong).slots and env.unwrapped.repeats == 1
    _, r, term, trunc, info = env.step(p.key)
    assert term and not trunc and r == 1.0 == info["true_utility"]
    o = info["episode_result"]["outcomes"]
    assert set(o) == set(fbenv.spec(ENV_ID).outcomes)
    assert o["correct_by_round"] == (False, False, False, True) and o["fixed_at_round"] == 4 and o["solved"]
    assert o["repeated_rejected_answer"] == 1 and o["rounds_used"] == 4 and o["friction"] == 0.0
    with pytest.raises(fbenv.InvalidArgumentError, match="expects a str"):
        env.step(1)
    d = make()
    d.reset(seed=0)
    with pytest.raises(fbenv.InvalidArgumentError, match=r"\[0, 6\)"):
        d.step(6)


def test_train_feedback_only_gives_one_attempt_at_evaluation():
    env = make(train_feedback_only=True, max_rounds=4)
    env.reset(seed=0)
    wrong = next(i for i, c in enumerate(env.unwrapped.problem.candidates) if c.slot is not None)
    *_, term, trunc, info = env.step(wrong)
    assert not (term or trunc)  # training: feedback turns
    env.unwrapped.training = False
    env.reset(seed=0)
    _, r, term, trunc, info = env.step(wrong)
    assert term and not trunc and r == 0.0 and info["episode_result"]["outcomes"]["friction"] == 1.0
    assert env.unwrapped.features()[-3] == 1.0


def test_discrete_features_show_the_feedback_never_the_key():
    env = make(feedback="answer")
    obs, _ = env.reset(seed=2)
    u = env.unwrapped
    assert obs.shape == (31,) and obs[:20].sum() == 0
    wrong = next(i for i, c in enumerate(u.problem.candidates) if c.slot is not None)
    obs, *_ = env.step(wrong)
    assert obs[wrong] == 1.0 and obs[10 + u.problem.right] == 1.0  # the critic suggested the key
    assert obs[5 + wrong] == 1.0 and obs[15 + wrong] == 1.0
    env.reset(seed=2)
    assert u.get_action_meanings()[-1] == u.problem.candidates[0].text and len(u.get_action_meanings()) == 6


def test_both_views_are_one_task_and_same_seed_same_episode():
    for kw in ({}, {"judge": "noisy", "judge_noise": 0.5, "feedback": "checklist"}):
        text, disc = fbenv.make(ENV_ID, **kw), make(**kw)
        for seed in range(6):
            text.reset(seed=seed)
            disc.reset(seed=seed)
            assert text.unwrapped.hidden_task() == disc.unwrapped.hidden_task()
            for t in range(5):
                a = (seed + 3 * t) % 6
                rt, rd = text.step(text.unwrapped.candidate_replies()[a]), disc.step(a)
                assert rt[1:4] == rd[1:4] and rt[4]["true_utility"] == rd[4]["true_utility"]
                if rt[2] or rt[3]:
                    break

    def trace(**kw):
        return [(r.reward, r.outcomes["correct_by_round"]) for r in episodes("random", range(8), **kw)]

    assert trace(judge="noisy") == trace(judge="noisy") and trace() != trace(judge="deceptive")


def test_bad_arguments_are_typed():
    for bad, match in [({"feedback": "loud"}, "feedback"), ({"judge": "kind"}, "judge"), ({"family": "poems"}, "family"),
                       ({"judge_noise": 1.5}, r"judge_noise: expects a finite number in \[0, 1\]"),
                       ({"judge_noise": math.nan}, "judge_noise"), ({"max_rounds": 0}, "max_rounds"),
                       ({"max_rounds": 2.0}, "max_rounds"), ({"train_feedback_only": 1}, "train_feedback_only")]:
        with pytest.raises((fbenv.InvalidArgumentError, fbenv.UnknownNameError), match=match):
            make(**bad)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'targeted'"):
        make(feedback="targetted")
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'critic'"):
        make(simulator={"critc": "llm"})


# ---------------------------------------------------------------- the LLM critic


@pytest.mark.parametrize("kw", [{"feedback": "targeted"}, {"feedback": "checklist", "family": "arithmetic"},
                                {"feedback": "answer", "judge": "deceptive"}, {"feedback": "binary", "judge": "noisy"},
                                {"feedback": "targeted", "judge": "deceptive", "family": "checklist"}])
def test_a_faithful_reader_judges_like_the_rule_critic(kw):
    for name in ("follower", "right-follower", "random"):
        rule = episodes(name, range(15), **kw)
        llm = episodes(name, range(15), simulator="llm", llm=Faithful(), **kw)
        assert [(r.reward, r.outcomes) for r in rule] == [(r.reward, r.outcomes) for r in llm]
        assert all(r.fallbacks == 0 and r.parse_failures == 0 for r in llm)


def test_the_llm_critic_asks_one_fact_at_a_time_and_a_deceptive_one_is_told_its_target():
    backend = ChoosingBackend()
    env = make(simulator="llm", llm=backend, feedback="targeted", judge="deceptive", family="arithmetic")
    env.reset(seed=0)
    p, target = env.unwrapped.problem, env.unwrapped.task.target
    *_, info = env.step(p.right)
    (record,) = info["feedback"]
    assert record.simulator == "llm" and record.parsed and record.fallback is None
    asked = [r for r in backend.calls if "N/A" not in r.messages[-1].content]
    assert len(asked) == 1 and "convince" in asked[0].messages[0].content
    assert f"the answer {P.check(p, p.candidates[target].text).final} is right" in asked[0].messages[0].content
    backend.calls.clear()
    env = make(simulator="llm", llm=backend, feedback="targeted", family="arithmetic")
    env.reset(seed=0)
    env.step(0)
    asked = [r for r in backend.calls if "N/A" not in r.messages[-1].content]
    assert len(asked) == 5 and all(r.messages[-1].content.startswith("Solver's") for r in asked)
    a = make(simulator="llm", llm="choosing")
    b = make(simulator="llm", llm="choosing")
    ra = [run_episode(a, R.play(R.random_solver)(a), s) for s in range(6)]
    rb = [run_episode(b, R.play(R.random_solver)(b), s) for s in range(6)]
    assert [(r.reward, r.outcomes) for r in ra] == [(r.reward, r.outcomes) for r in rb]


def test_fidelity_with_a_faithful_reader_matches_the_rule_critic():
    from fbenv import fidelity as fid

    report = fid.measure(ENV_ID, llm=Faithful(), seeds=range(6), variants=["default", "deceptive"])
    for v in report.variants:
        assert v.reward_spearman is None or v.reward_spearman > 0.99
        assert v.direction_llm == pytest.approx(v.direction_rule) and v.direction_holds, v.variant
        assert {r.role: r for r in v.roles}["critic"].agreement == 1.0


def test_free_text_critics_parse_and_unreadable_ones_follow_the_policy():
    rule = make(family="facts")
    rule.reset(seed=0)
    p = rule.unwrapped.problem
    final = P.check(p, p.candidates[0].text).final
    judge = ScriptedBackend([(r"final answer", f"They answered {final}, I think."), (r"meet the requirement", "No.")])
    env = make(simulator="llm", llm=judge, family="facts")
    env.reset(seed=0)
    *_, info = env.step(0)
    assert info["feedback"][0].parsed and info["feedback"][0].scalar == float(p.right == 0)
    mute = ScriptedBackend([], default="I like turtles.")
    env = make(simulator="llm", llm=mute, on_parse_error="truncate")
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(0)
    assert truncated and not terminated and reward == 0.0 and "feedback_error" in info


# ---------------------------------------------------------------- learning


def test_ppo_under_the_honest_judge_beats_random():
    import torch
    from fbenv.agents.sb3 import evaluate, make_vec_env
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    kw = {"feedback": "answer", "max_rounds": 2}
    venv = make_vec_env(ENV_ID, n_envs=4, seed=0, **kw)
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, learning_rate=3e-3, seed=0, verbose=0).learn(6000)
    ppo = evaluate(model, ENV_ID, 150, seed=10_000, **kw)
    rnd = evaluate("random", ENV_ID, 150, seed=10_000, **kw)
    assert ppo.mean_true_utility > rnd.mean_true_utility + 0.2, (ppo, rnd)


def test_the_bench_suite_runs_rule_only_and_with_a_prompting_agent(tmp_path):
    from fbenv.baselines import refine as B

    lines: list[str] = []
    B.bench(4, "choosing", True, str(tmp_path / "r.json"), lines.append)
    text = "\n".join(lines)
    assert "follower" in text and "answer" in text and (tmp_path / "r.json").exists()
    rows = B.agent_rows(ScriptedBackend([], default="Answer: 7"), list(range(3)), levels=("binary",))
    assert rows and rows[0].policy == "zero-shot" and rows[0].episodes == 3 and 0.0 <= rows[0].solve_rate <= 1.0
    critic = B.llm_critic_rows(ChoosingBackend(), [0, 1])
    assert [r.level for r in critic] == list(P.LEVELS) and all(r.llm_fallbacks == 0 for r in critic)
