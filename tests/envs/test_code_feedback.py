"""CodeFeedback (ConvCodeWorld): nine feedback combinations, live and static, the rule and the LLM user."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.stats import spearmanr

import fbenv
from fbenv.envs import code_feedback as C
from fbenv.envs.code_problems import get, problems
from fbenv.episodes import run_episode
from fbenv.feedback import Source
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult

ENV_ID = "fbenv/CodeFeedback-v0"
SEEDS = range(60)
FOLLOWERS = ("expert-follower", "novice-follower", "no-feedback")


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", "split": "all", **kw})


def episodes(policy, seeds=SEEDS, **kw):
    env = make(**kw)
    return [run_episode(env, C.play(C.POLICIES[policy])(env), s) for s in seeds]


class Faithful(Backend):
    """Picks the phrasing a careful reader of the prompt would: the novice's symptom from
    what the run showed; the expert's first failing case and the fix of a line where the
    code differs from the reference (ties broken by the tokens that differ there)."""

    spec = model = "faithful"
    scores_choices = True

    def _generate(self, requests):
        out = []
        for req in requests:
            choices, text = req.sampling.choices, req.messages[-1].content
            scores = np.zeros(len(choices))
            ran = text.split("When you ran it:\n", 1)[-1].split("\n\n", 1)[0].split("A correct solution")[0]
            if "not a programmer" in req.messages[0].content:
                want = ("syntax" if "does not compile" in ran else
                        "hang" if "hangs" in ran else
                        "wrong+crash" if "raises" in ran and "returns" in ran else "crash" if "raises" in ran else "wrong")
                scores = np.array([float(c == C.NOVICE_PHRASES[want]) for c in choices])
            elif "Your feedback" in text:
                blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
                code, ref = blocks[0].splitlines(), blocks[1].splitlines()
                first = re.match(r"- (\S.*?\)): expected", ran)
                for i, c in enumerate(choices):
                    if first and first.group(1) in c:
                        scores[i] += 10
                    for m in re.finditer(r"line (\d+)", c):
                        n = int(m.group(1))
                        if n == 1 and "syntax" in c:
                            continue
                        a = code[n - 1] if n <= len(code) else ""
                        b = ref[n - 1] if n <= len(ref) else ""
                        if a.strip() != b.strip():
                            scores[i] += 5
                            diff = set(re.findall(r"[\w\[\]:.+\-<>=!]+", a)) ^ set(re.findall(r"[\w\[\]:.+\-<>=!]+", b))
                            scores[i] += sum(tok in c for tok in diff) * 0.1
            p = np.exp(scores - scores.max()) if len(choices) else scores
            p = p / p.sum() if len(choices) else p
            pick = int(np.argmax(scores)) if len(choices) else 0
            out.append(ChatResult(choices[pick] if choices else "N/A",
                                  choice_logprobs=tuple(np.log(np.maximum(p, 1e-12))) if len(choices) else None))
        return out


# ---------------------------------------------------------------- the known answers


def test_expert_feedback_beats_novice_beats_none_by_turn_three():
    expert = episodes("expert-follower", user_expertise="expert", test_coverage="none")
    novice = episodes("novice-follower", user_expertise="novice", test_coverage="none")
    blind = episodes("no-feedback", user_expertise="none", test_coverage="none")
    p3 = [C.pass_at(r, 3) for r in (expert, novice, blind)]
    assert p3[0] > p3[1] + 0.05 and p3[1] > p3[2] + 0.3, p3
    assert C.mrr(expert) > C.mrr(novice) > C.mrr(blind)
    # the same seeds draw the same first programs: every difference is the feedback's
    assert C.pass_at(expert, 1) == C.pass_at(novice, 1) == C.pass_at(blind, 1) > 0
    # within one combination the solver's reading matters the same way
    same = {n: C.pass_at(episodes(n, user_expertise="expert"), 3) for n in FOLLOWERS}
    assert same["expert-follower"] > same["novice-follower"] > same["no-feedback"]


def test_more_test_coverage_helps_and_partial_coverage_misleads():
    by = {cov: episodes("novice-follower", user_expertise="none", test_coverage=cov) for cov in C.COVERAGES}
    p3 = {cov: C.pass_at(rs, 3) for cov, rs in by.items()}
    assert p3["none"] < p3["partial"] < p3["full"], p3
    misled = [r for r in by["partial"] if r.outcomes["misled"]]
    assert misled and all(r.reward == 1.0 and r.true_utility < 1.0 and not r.is_success for r in misled)
    assert not any(r.outcomes["misled"] for r in by["full"])
    gap = np.mean([r.reward - r.true_utility for r in by["partial"]])
    assert gap > 0.0 and np.mean([r.reward - r.true_utility for r in by["full"]]) <= 0.0


def test_all_nine_combinations_give_their_feedback():
    p = get("sum_multiples/3")
    bug = p.bugs[2].code  # total += 1: wrong values on most inputs
    for cov in C.COVERAGES:
        for ex in C.EXPERTISE:
            env = fbenv.make(ENV_ID, test_coverage=cov, user_expertise=ex, split="all")
            env.reset(seed=0)
            env.unwrapped.task = C.CodeTask(p.id, C.program_ids(p), 1)
            _, r, term, trunc, info = env.step(f"```python\n{bug}```")
            kinds = [f.source for f in info["feedback"]]
            assert (Source.EXECUTION in kinds) == (cov != "none"), (cov, ex)
            assert (Source.USER in kinds) == (ex != "none"), (cov, ex)
            text = {f.source: f.text for f in info["feedback"]}
            if cov == "full":
                assert "expected" in text[Source.EXECUTION] and "sum_multiples(10)" in text[Source.EXECUTION]
            if cov == "partial":
                assert "first 3 tests" in text[Source.EXECUTION] and "expected" not in text[Source.EXECUTION]
            if ex == "novice":
                assert text[Source.USER] == C.NOVICE_PHRASES["wrong"]
            if ex == "expert":
                assert "sum_multiples(10)" in text[Source.USER] and p.bugs[2].fix in text[Source.USER]
            assert info["program"] == "bug2" and info["isolation"] in ("bwrap", "rlimit") and not info["leaked"]
            assert r == 0.0 and not (term or trunc) and info["hidden_pass_rate"] < 1.0


def test_static_mode_ranks_solvers_like_live_and_replays_the_log():
    kw = {"user_expertise": "expert", "test_coverage": "partial"}
    for ex in ("novice", "expert"):
        kw["user_expertise"] = ex
        live = [C.mrr(episodes(n, **kw)) for n in FOLLOWERS]
        static = [C.mrr(episodes(n, mode="static", **kw)) for n in FOLLOWERS]
        assert spearmanr(live, static).statistic == pytest.approx(1.0), (ex, live, static)
        assert live[0] >= live[1] > live[2] and static[0] >= static[1] > static[2]
    a, b = (episodes("novice-follower", range(10), mode="static") for _ in range(2))
    assert [(r.reward, r.outcomes) for r in a] == [(r.reward, r.outcomes) for r in b]
    env = fbenv.make(ENV_ID, mode="static", split="all")
    env.reset(seed=3)
    u = env.unwrapped
    wrong = next(c for c in u.candidate_codes() if C.identify(u.problem, c).startswith("bug"))
    *_, info = env.step(wrong)
    logged = C.shipped_log()["problems"][u.problem.id]
    assert info["messages"][-3]["content"].startswith("[Logged turn 1]")
    said = [f.text for f in info["feedback"] if f.source is Source.USER]
    assert said == [logged["verbal"]["expert"][logged["programs"][0]]]
    assert u.discussed.pid == logged["programs"][0]


def test_the_shipped_log_is_what_the_rule_user_writes():
    assert C.shipped_log() == C.generate_log()
    log = C.shipped_log()
    assert set(log["problems"]) == {p.id for p in problems()}
    assert all("ref" not in e["programs"] for e in log["problems"].values())


def test_the_leak_check_flags_a_pasted_reference_and_never_the_rule_user():
    for p in problems():
        for pid in C.program_ids(p)[1:]:
            code = C.program_code(p, pid)
            for ex in ("novice", "expert"):
                assert not C.is_leak(p, C.USER.rule(C.Asking(p, code, C.run_program(p, code), ex)).text)
        assert C.is_leak(p, "Just use this:\n" + p.reference)
    paste = ScriptedBackend([(r"```python\n(?:.*?)```.*?```python\n(.*?)```", "Use this: {0}")], default="Wrong.")
    env = make(simulator="llm", llm=paste, user_expertise="expert")
    env.reset(seed=0)
    u = env.unwrapped
    bug = next(i for i, pid in enumerate(u.task.order) if pid.startswith("bug"))
    *_, info = env.step(bug)
    assert info["leaked"] and any(f.source is Source.ORACLE and f.scalar == 1.0 for f in info["feedback"])
    user = next(f for f in info["feedback"] if f.source is Source.USER)
    assert user.simulator == "llm" and user.parsed and "Use this" in user.text
    honest = ScriptedBackend([(r"Your feedback", "It fails on an empty list; check your first line.")])
    env = make(simulator="llm", llm=honest, user_expertise="expert", max_turns=2)
    env.reset(seed=0)
    *_, info = env.step(bug)
    assert not info["leaked"] and not any(f.source is Source.ORACLE for f in info["feedback"])
    *_, info = env.step(bug)
    assert info["episode_result"]["outcomes"]["leaks"] == 0


# ---------------------------------------------------------------- the LLM user


def test_a_faithful_reader_chooses_the_rule_users_phrasing():
    for ex in ("novice", "expert"):
        for name in ("expert-follower", "novice-follower", "random"):
            rule = episodes(name, range(40), user_expertise=ex)
            llm = episodes(name, range(40), user_expertise=ex, simulator="llm", llm=Faithful())
            assert all(r.fallbacks == 0 and r.parse_failures == 0 for r in llm)
            same = np.mean([a.outcomes == b.outcomes for a, b in zip(rule, llm)])
            assert same >= 0.95, (ex, name, same)


def test_the_choosing_backend_path_parses_and_repeats():
    backend = ChoosingBackend()
    env = make(simulator="llm", llm=backend, user_expertise="expert")
    env.reset(seed=1)
    u = env.unwrapped
    bug = next(i for i, pid in enumerate(u.task.order) if pid.startswith("bug"))
    *_, info = env.step(bug)
    (user,) = [f for f in info["feedback"] if f.source is Source.USER]
    assert user.simulator == "llm" and user.parsed and user.fallback is None
    asked = [r for r in backend.calls if r.messages[-1].content != "N/A"]
    assert len(asked) == 1 and u.problem.reference.strip() in asked[0].messages[-1].content
    assert len(asked[0].sampling.choices) >= 3 and user.text in asked[0].sampling.choices
    runs = [[(r.reward, r.outcomes) for r in episodes("expert-follower", range(8), simulator="llm", llm="choosing")]
            for _ in range(2)]
    assert runs[0] == runs[1]
    novice = C.USER.prompt(C.Asking(u.problem, u.candidate_codes()[bug], C.run_program(u.problem, u.candidate_codes()[bug]),
                                    "novice"))
    assert u.problem.reference.strip() not in novice.messages[-1].content  # a novice has no reference
    assert novice.read("It crashed twice.").text == "It crashed twice." and novice.read("  ") is None


def test_fidelity_with_a_faithful_reader_shows_the_direction():
    from fbenv import fidelity as fid

    report = fid.measure(ENV_ID, llm=Faithful(), seeds=range(6))
    for v in report.variants:
        assert v.direction_rule > 0 and v.direction_holds, v.variant
        assert v.llm_fallbacks == 0


# ---------------------------------------------------------------- views, episode end, arguments


def test_text_view_reads_code_blocks_and_flags_bad_input():
    env = fbenv.make(ENV_ID, split="all")
    obs, info = env.reset(seed=2)
    u = env.unwrapped
    p = u.problem
    assert p.prompt in obs and p.reference not in obs
    _, r, term, trunc, info = env.step(C.KEEP)
    assert info["invalid_action"] and r == 0.0 and not (term or trunc) and info["feedback"] == ()
    _, r, term, trunc, info = env.step("   ")
    assert info["invalid_action"] and "could not find" in info["messages"][-1]["content"]
    _, r, term, trunc, info = env.step("Here you go:\n```python\ndef nope(:\n```\nThanks")
    assert info["syntax_error"] and "Compilation failed" in info["feedback"][0].text and info["isolation"] == "none"
    _, r, term, trunc, info = env.step(f"Sure!\n```python\n{p.reference}```")
    assert term and not trunc and r == 1.0 and info["true_utility"] == 1.0 and info["is_success"]
    o = info["episode_result"]["outcomes"]
    assert set(o) == set(fbenv.spec(ENV_ID).outcomes)
    assert o["solved_at_turn"] == 4 and o["reciprocal_rank"] == 0.25 and o["pass_at_turn"] == (False,) * 3 + (True,) * 2
    assert o["syntax_errors"] == 1 and o["turns_used"] == 4 and not o["misled"]
    with pytest.raises(fbenv.InvalidArgumentError, match="expects a str"):
        env.step(1)


def test_hostile_code_is_feedback_and_the_episode_truncates():
    env = fbenv.make(ENV_ID, max_turns=2, user_expertise="novice", split="all")
    env.reset(seed=0)
    entry = env.unwrapped.problem.entry
    _, r, term, trunc, info = env.step(f"def {entry}(*a):\n    while True:\n        pass\n")
    assert info["run"]["outcome"] == "timeout" and r == 0.0 and not (term or trunc)
    assert info["feedback"][-1].text == C.NOVICE_PHRASES["hang"]
    _, r, term, trunc, info = env.step(f"import os\ndef {entry}(*a):\n    return os.environ.get('HOME')\n")
    assert trunc and not term and r == 0.0 and info["true_utility"] == info["hidden_pass_rate"] < 1.0


def test_discrete_view_candidates_are_real_programs_and_features_show_feedback():
    env = make(user_expertise="expert", test_coverage="full")
    obs, _ = env.reset(seed=5)
    u = env.unwrapped
    assert obs.shape == (C.N_FEATURES,) and obs[:20].sum() == 0
    assert sorted(u.task.order) == sorted(C.program_ids(u.problem)) and len(u.candidate_replies()) == C.N_ACTIONS
    assert C.identify(u.problem, u.candidate_codes()[u.task.order.index("ref")]) == "ref"
    bug = next(i for i, pid in enumerate(u.task.order) if pid == "bug0")
    obs, *_ = env.step(bug)
    ref = u.task.order.index("ref")
    assert obs[bug] == 1.0 and obs[5 + bug] == 1.0 and obs[10 + bug] == 1.0 and obs[15 + ref] == 1.0
    assert obs[10 + ref] == 0.0  # the reference is never ruled out
    _, r, term, *_ = env.step(C.N_PROGRAMS)  # keep: the same failing program
    assert r == 0.0 and not term
    text, disc = fbenv.make(ENV_ID, split="all"), make()
    for seed in range(4):
        text.reset(seed=seed)
        disc.reset(seed=seed)
        assert text.unwrapped.hidden_task() == disc.unwrapped.hidden_task()
        for a in (seed % 5, (seed + 2) % 5, 5):
            rt, rd = text.step(text.unwrapped.candidate_replies()[a]), disc.step(a)
            assert rt[1:4] == rd[1:4] and rt[4]["hidden_pass_rate"] == rd[4]["hidden_pass_rate"]
            if rt[2] or rt[3]:
                break


def test_split_keeps_held_out_problems_apart():
    seen = {s: set() for s in ("train", "test")}
    for split in seen:
        env = make(split=split)
        for seed in range(60):
            env.reset(seed=seed)
            seen[split].add(env.unwrapped.problem.id)
    assert seen["test"] <= {p.id for p in problems("test")} and len(seen["test"]) >= 8
    assert seen["train"] <= {p.id for p in problems("train")} and not seen["train"] & seen["test"]


def test_bad_arguments_are_typed():
    for bad, match in [({"test_coverage": "most"}, "test_coverage"), ({"user_expertise": "guru"}, "user_expertise"),
                       ({"mode": "replay"}, "mode"), ({"split": "dev"}, "split"), ({"max_turns": 0}, "max_turns"),
                       ({"max_turns": 2.0}, "max_turns")]:
        with pytest.raises((fbenv.InvalidArgumentError, fbenv.UnknownNameError), match=match):
            make(**bad)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'user'"):
        make(simulator={"usr": "llm"})


def test_the_bench_suite_runs(tmp_path):
    from fbenv.baselines import code_feedback as B

    lines: list[str] = []
    B.bench(3, "choosing", True, str(tmp_path / "c.json"), lines.append)
    text = "\n".join(lines)
    assert "expert-follower" in text and "static" in text and (tmp_path / "c.json").exists()
    rows = B.llm_rows(ChoosingBackend(), [0, 1])
    assert rows and all(r.simulator == "llm" and r.llm_fallbacks == 0 for r in rows)
