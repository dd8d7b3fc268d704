"""Tutor: hints judged by the student's fix on the hidden tests; leaks flagged and penalized; the LLM student."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fbenv
from fbenv.envs import tutor as T
from fbenv.envs.code_problems import problems
from fbenv.episodes import run_episode
from fbenv.feedback import Source
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult

ENV_ID = "fbenv/Tutor-v0"
SEEDS = range(60)


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", **kw})


def episodes(hint, seeds=SEEDS, **kw):
    env = make(**kw)
    return [run_episode(env, T.play(hint)(env), seed) for seed in seeds]


def seed_for(problem_id, bug, **kw):
    """A seed whose episode holds this bug (``split="all"``)."""
    env = make(split="all", **kw)
    for seed in range(2000):
        env.reset(seed=seed)
        if (env.unwrapped.task.problem_id, env.unwrapped.task.bug_index) == (problem_id, bug):
            return seed
    raise AssertionError(f"no seed draws {problem_id} bug {bug}")


def mean(results, what):
    return float(np.mean([r.outcomes[what] if what in r.outcomes else getattr(r, what) for r in results]))


class HintReader(Backend):
    """A faithful student for tests: copies a line the hint contains; else leans towards the
    edits of the line the hint names (or keeps its program when the hint names none); an even
    split for the content-free ``N/A`` hint."""

    spec = model = "hint-reader"
    scores_choices = True

    def _generate(self, requests):
        out = []
        for req in requests:
            choices = req.sampling.choices
            text = req.messages[-1].content
            hint = re.search(r"Your tutor's hint: (.*?)\n\nWhat do you do\?", text, re.S).group(1)
            named = set(re.findall(r"\bline (\d+)", hint, re.I))
            w = np.ones(len(choices))
            for i, c in enumerate(choices):
                m = re.match(r"I change line (\d+) to: (.*)$", c)
                if hint == "N/A":
                    continue
                if m and f"`{m.group(2)}`" in hint:
                    w[i] = 50.0
                elif m and m.group(1) in named:
                    w[i] = 4.0
                elif not m and not named:
                    w[i] = 3.0
            p = w / w.sum()
            out.append(ChatResult(choices[int(np.argmax(p))], choice_logprobs=tuple(np.log(p))))
        return out


# ---------------------------------------------------------------- the paper's direction


def test_naming_the_bug_line_helps_the_rule_student_more_than_a_vague_hint():
    vague, line = episodes("vague"), episodes("names_line")
    # the same draw decides both: whoever a vague hint gets to the fix, naming the line does too
    assert all(v.outcomes["fixed"] <= n.outcomes["fixed"] for v, n in zip(vague, line))
    assert mean(line, "fixed") > mean(vague, "fixed") + 0.15
    both = episodes("line_and_concept")
    assert mean(both, "fixed") > mean(line, "fixed") + 0.15
    assert mean(episodes("wrong_line"), "fixed") < mean(vague, "fixed")


def test_a_leaking_hint_is_flagged_and_penalized_below_a_good_hint_even_when_it_fixes():
    leak, good = episodes("leaks_fix"), episodes("guiding_question")
    both = [(lk, g) for lk, g in zip(leak, good) if lk.outcomes["fixed"] and g.outcomes["fixed"]]
    assert len(both) > 30
    for lk, g in both:
        assert lk.outcomes["leaked"] and not g.outcomes["leaked"]
        assert lk.reward == 1.0 - 1.0 and g.reward == 1.0 and lk.reward < g.reward
        assert lk.true_utility == 0.0 and g.true_utility == 1.0 and not lk.is_success and g.is_success
        assert lk.outcomes["no_answer_revealed"] == 0.0 and g.outcomes["rubric_score"] == 1.0
    assert mean(leak, "fixed") > mean(good, "fixed")  # leaking gets more students past the tests
    half = episodes("leaks_fix", range(20), leak_penalty=0.5)
    assert {r.reward for r in half if r.outcomes["fixed"]} == {0.5}
    free = episodes("leaks_fix", range(20), leak_penalty=0.0)
    assert all(r.reward == float(r.outcomes["fixed"]) and r.true_utility == 0.0 for r in free)


def test_probe_direction_has_the_documented_sign_under_the_rule_student():
    probe = T.fidelity_probe()
    for variant, kw in probe.variants.items():
        results = {name: episodes(name, range(40), **kw) for name in T.PROBE_POLICIES}
        assert probe.direction(variant, results) * probe.expected_sign[variant] > 0.1, variant


# ---------------------------------------------------------------- the bank's lessons and the rule checks


def test_every_lesson_runs_its_candidates_and_every_template_reads_as_written():
    for p in problems():
        for b, bug in enumerate(p.bugs):
            ls = T.lesson(p.id, b)
            fixed, buggy, *wrong = ls.edits
            assert (fixed.kind, buggy.kind) == ("fixed", "buggy") and fixed.code == p.reference
            assert fixed.result.ok and not buggy.result.ok and buggy.code == bug.code
            assert len(wrong) <= T.MAX_WRONG_EDITS
            for e in wrong:  # plausible wrong edits: that line changed, and it still fails
                assert e.kind == "wrong_edit" and not e.result.ok and e.text not in (bug.fixed_line, bug.buggy_line)
                assert e.code.splitlines()[ls.line - 1].strip() == e.text
            failing = buggy.result.failing[0]
            call = T.call_text(p, failing.args)
            checks = dict(zip(T.HINTS, (T.check_hint(h, ls, bug.buggy_line, call)
                                        for h in T.hint_templates(ls, bug.buggy_line, failing))))
            want = {  # names_line, names_misconception, wrong_line, asks_guiding_question, leaked
                "vague": (False, False, False, False, False), "failing_case": (False, False, False, False, False),
                "names_line": (True, False, False, False, False), "names_concept": (False, True, False, False, False),
                "line_and_concept": (True, True, False, False, False),
                "guiding_question": (True, True, False, True, False), "leaks_fix": (True, None, False, False, True),
                "wrong_line": (False, None, True, False, False),
            }
            for name, c in checks.items():
                got = (c.names_line, c.names_misconception, c.wrong_line, c.asks_guiding_question, c.leaked)
                assert all(w is None or w == g for w, g in zip(want[name], got)), (p.id, b, name, got)
            assert checks["failing_case"].failing_case and checks["leaks_fix"].leak == "fixed_line"


def test_the_leak_check_reads_free_text_and_runs_a_pasted_solution():
    p = next(p for p in problems() if p.id == "gcd")
    ls = T.lesson(p.id, 1)  # return b -> return a
    cur, call = ls.bug.buggy_line, "gcd(12, 18)"
    read = lambda h: T.check_hint(h, ls, cur, call)  # noqa: E731
    assert read("At the end, return a.").leak == "fixed_line"
    assert read("Try this:\n    return   a\n").leak == "fixed_line"
    assert read("You return a value that is wrong: which variable holds the answer?").leak == ""
    assert read("Line 5 says `return b`. Is that the right return value?").leak == ""
    solution = "```python\ndef gcd(a, b):\n    import math\n    return math.gcd(a, b)\n```"
    check = read(f"Here is one way:\n{solution}")
    assert check.leak == "solution" and check.isolation in ("bwrap", "rlimit")
    assert read("```python\ndef gcd(a, b):\n    return 0\n```").leak == ""  # code that does not work gives nothing away
    q = read("What happens to 'a?' here")  # a question mark inside a quote is no question
    assert not q.asks_guiding_question
    assert read("Which of the two variables holds the result when the loop ends?").asks_guiding_question


def test_rule_student_probabilities_follow_the_hint():
    ls = T.lesson("sum_multiples/3", 0)
    cur = ls.bug.buggy_line

    def p_fix(hint):
        check = T.check_hint(hint, ls, cur, "sum_multiples(3)")
        return T.rule_probs(T.Attempt(ls, cur, hint, check, "", 0.5))[0]

    vague = p_fix("Read your program again.")
    assert vague == pytest.approx(T.BASE_FIX)
    assert p_fix("Look at line 3.") == pytest.approx(T.BASE_FIX + T.LINE_BONUS)
    assert p_fix("An off-by-one mistake hides somewhere.") == pytest.approx(T.BASE_FIX + T.CONCEPT_BONUS)
    assert p_fix("Look at line 5.") == pytest.approx(T.MIN_FIX)
    assert p_fix("Use `for i in range(1, n):` instead.") == pytest.approx(T.LEAK_FIX)
    probs = T.rule_probs(T.Attempt(ls, cur, "x", T.HintCheck(), "", 0.5))
    assert sum(probs) == pytest.approx(1.0) and len(probs) == len(ls.edits)


# ---------------------------------------------------------------- episodes, both views


def test_reward_truth_feedback_and_info_of_one_hint():
    env = make()
    _, info = env.reset(seed=3)
    assert info["isolation"] in ("bwrap", "rlimit") and not info["invalid_action"]
    _, reward, terminated, truncated, info = env.step(T.HINTS.index("leaks_fix"))
    assert info["leaked"] and info["hint"]["leak"] == "fixed_line" and info["rubric"]["no_answer_revealed"] is False
    assert terminated != truncated
    user, execution = info["feedback"]
    assert user.source is Source.USER and execution.source is Source.EXECUTION
    assert execution.scalar == pytest.approx(info["tests"]["passed"] / info["tests"]["total"])
    assert reward == float(terminated) - 1.0 and info["true_utility"] == 0.0
    assert info["tests"]["isolation"] == info["isolation"]
    res = info["episode_result"]["outcomes"]
    assert set(res) == set(fbenv.spec(ENV_ID).outcomes) and res["leaked"] and res["invalid_hints"] == 0


def test_text_view_shows_the_program_and_failure_and_an_empty_hint_is_an_observation():
    env = make(interface="text", max_turns=2)
    obs, _ = env.reset(seed=1)
    ls = env.unwrapped.lesson
    assert ls.problem.signature in obs and f"{ls.line:>2} | " in obs and "It fails:" in obs
    assert ls.bug.bug_type not in obs and ls.bug.fixed_line not in obs  # never the hidden diagnosis or fix
    obs, reward, terminated, truncated, info = env.step("   ")
    assert info["invalid_action"] and info["attempt"] == "none" and reward == 0.0 and not (terminated or truncated)
    assert "I did not get a hint" in obs and info["feedback"][0].source is Source.EXECUTION
    _, _, _, truncated, info = env.step("Look again")
    assert info["episode_result"]["outcomes"]["invalid_hints"] == 1


def test_multi_turn_the_student_replies_after_a_failed_fix_and_keeps_its_edit():
    env = make(interface="text", max_turns=3)
    seen_wrong = False
    for seed in range(40):
        env.reset(seed=seed)
        ls = env.unwrapped.lesson
        obs, _, terminated, truncated, info = env.step(f"Look closely at line {ls.line}.")
        if terminated:
            assert "passes every test" in obs and info["true_utility"] == 1.0
            continue
        assert "Can you give me another hint?" in obs and not truncated
        if info["attempt"] == "wrong_edit":
            seen_wrong = True
            assert env.unwrapped.current != ls.bug.buggy_line and f"I changed line {ls.line} to" in obs
            assert env.unwrapped.features()[-2] == 1.0
    assert seen_wrong


def test_same_seed_same_episode_and_both_views_are_one_task():
    a, b = make(interface="text"), make()
    for seed in range(5):
        a.reset(seed=seed)
        b.reset(seed=seed)
        assert a.unwrapped.hidden_task() == b.unwrapped.hidden_task()
        text = a.unwrapped.candidate_replies()[2]
        ra, rb = a.step(text), b.step(2)
        assert ra[1:4] == rb[1:4] and ra[4]["hint"] == rb[4]["hint"] and ra[4]["tests"] == rb[4]["tests"]
    held_out = make(split="test")
    for s in range(10):
        held_out.reset(seed=s)
        assert held_out.unwrapped.lesson.problem.split == "test"


def test_bad_arguments_are_typed():
    with pytest.raises(fbenv.UnknownNameError, match="split"):
        make(split="dev")
    with pytest.raises(fbenv.InvalidArgumentError, match="max_turns"):
        make(max_turns=0)
    with pytest.raises(fbenv.InvalidArgumentError, match="leak_penalty"):
        make(leak_penalty=-1)
    with pytest.raises(fbenv.UnknownNameError):
        make(simulator={"studnet": "llm"})


# ---------------------------------------------------------------- the LLM student


def test_the_llm_student_chooses_among_calibrated_candidate_rewrites():
    backend = ChoosingBackend()
    env = make(simulator="llm", llm=backend)
    env.reset(seed=2)
    ls = env.unwrapped.lesson
    *_, info = env.step(T.HINTS.index("names_line"))
    user = info["feedback"][0]
    assert user.simulator == "llm" and user.parsed and user.fallback is None
    asked = [r for r in backend.calls if "hint: N/A" not in r.messages[-1].content]
    prior = [r for r in backend.calls if "hint: N/A" in r.messages[-1].content]
    assert len(asked) == 1 and len(prior) == 1 and asked[0].sampling.choices == prior[0].sampling.choices
    choices = asked[0].sampling.choices
    assert list(choices) == sorted(choices) and "I leave my program as it is." in choices
    assert f"I change line {ls.line} to: {ls.bug.fixed_line}" in choices and len(choices) == len(ls.edits)
    prompt = asked[0].messages[-1].content
    assert ls.bug.bug_type not in prompt and "fixed" not in prompt.lower() and all(c in prompt for c in choices)
    runs = [[(r.reward, r.outcomes) for r in episodes("vague", range(6), simulator="llm", llm="choosing")]
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_a_faithful_reader_shows_the_direction_and_never_falls_back():
    kw = {"simulator": "llm", "llm": HintReader()}
    vague, line, leak, good = (episodes(h, range(40), **kw) for h in ("vague", "names_line", "leaks_fix",
                                                                      "guiding_question"))
    assert all(r.fallbacks == 0 and r.parse_failures == 0 for r in vague + line + leak + good)
    assert mean(line, "fixed") > mean(vague, "fixed") and mean(leak, "fixed") > 0.8
    results = {"vague": vague, "names_line": line, "leaks_fix": leak, "guiding_question": good}
    assert T.hints_vs_leaks("default", results) > 0


def test_fidelity_probe_runs_with_a_faithful_reader():
    from fbenv import fidelity as fid

    report = fid.measure(ENV_ID, llm=HintReader(), seeds=range(8), variants=["default"])
    (v,) = report.variants
    assert v.direction_rule > 0 and v.direction_holds
    (role,) = v.roles
    assert role.role == "student" and role.kind == "numeric" and role.parse_failure_rate == 0.0


def test_a_server_that_writes_code_is_run_in_the_sandbox():
    ls = T.lesson("factorial", 1)  # result = 0 -> result = 1
    seed = seed_for("factorial", 1)
    writes_fix = ScriptedBackend([(r"hint", f"Here is my new program:\n```python\n{ls.problem.reference}```")])
    env = make(interface="text", simulator="llm", llm=writes_fix, max_turns=2, split="all")
    env.reset(seed=seed)
    _, reward, terminated, _, info = env.step("Look at line 2.")
    assert terminated and reward == 1.0 and info["attempt"] == "fixed"  # the reference is the fixed candidate
    own = ls.problem.reference.replace("result *= i", "result = result * i")
    env = make(interface="text", simulator="llm", llm=ScriptedBackend([(r"hint", f"```\n{own}```")]), max_turns=2,
               split="all")
    env.reset(seed=seed)
    _, reward, terminated, _, info = env.step("Look at line 2.")
    assert terminated and info["attempt"] == "rewrite" and info["tests"]["outcome"] == "ok"
    broken = "def factorial(n):\n    while True:\n        pass\n"
    env = make(interface="text", simulator="llm", llm=ScriptedBackend([(r"hint", broken)]), max_turns=2,
               split="all")
    env.reset(seed=seed)
    obs, reward, terminated, truncated, info = env.step("Look at line 2.")
    assert not terminated and info["attempt"] == "rewrite" and info["tests"]["outcome"] == "timeout"
    assert env.unwrapped.current == ls.bug.buggy_line  # a failed rewrite: back to its own program
    line = ScriptedBackend([(r"hint", "I change line 2 to: result = 1")])
    env = make(interface="text", simulator="llm", llm=line, split="all")
    env.reset(seed=seed)
    *_, info = env.step("Look at line 2.")
    assert info["attempt"] == "fixed" and info["feedback"][0].parsed
    mute = ScriptedBackend([], default="I like turtles.")
    env = make(interface="text", simulator="llm", llm=mute, on_parse_error="truncate", split="all")
    env.reset(seed=seed)
    _, reward, terminated, truncated, info = env.step("Look at line 2.")
    assert truncated and not terminated and reward == 0.0 and "feedback_error" in info


def test_the_bench_suite_runs(tmp_path):
    from fbenv.baselines import tutor as B

    lines: list[str] = []
    B.bench(4, "choosing", True, str(tmp_path / "t.json"), lines.append)
    text = "\n".join(lines)
    assert "guiding_question" in text and "leaks_fix" in text and (tmp_path / "t.json").exists()
    rows = B.llm_rows(ChoosingBackend(), [0, 1], policies=("vague",))
    assert [r.variant for r in rows] == list(B.VARIANTS) and all(r.llm_fallbacks == 0 for r in rows)
