"""CodeFeedback: write Python against hidden tests; compile, execution and a simulated user's verbal feedback.

## Description

From *ConvCodeWorld* (Han et al., ICLR 2025) and *MINT*. The agent is a programmer given a
problem of the shared bank (:mod:`fbenv.envs.code_problems`: 42 string, list, arithmetic
and small-algorithm problems with a signature, a reference solution and hidden tests). Each
turn it submits a program; the program runs in the sandbox (:mod:`fbenv.sandbox`) on the
hidden tests, and the agent hears ConvCodeWorld's feedback combination:

- **compilation feedback**, always: the syntax error and its line;
- **execution feedback**, ``test_coverage=``: ``none``; ``partial`` (the first three hidden
  tests: which failed, on which input, and what the program returned or raised); ``full``
  (every hidden test: each failing one with its input, the expected and the actual output);
- **verbal feedback** of a simulated user, ``user_expertise=``: ``none``; ``novice`` (the
  user ran the program and says it fails on some inputs, and how: wrong answers, a crash, a
  hang; never which input or why); ``expert`` (reads the code beside the reference: names
  one failing case and the fix of the faulty line, without pasting the reference).

All nine combinations of the paper are the 3 x 3 kwargs. ``mode="static"`` is ConvCodeBench:
from the first turn on, the conversation shown is a shipped log's (a weak reference solver's
programs and their feedback, the verbal part replayed from the log, the rest recomputed
exactly); the agent's own programs are executed for the verdict but not discussed, so runs
are cheap and identical. ``split=`` keeps the held-out problems apart.

## Observation

- ``interface="text"``: the instructions and the problem (signature, statement, two
  examples), then the last two rounds: the program and its feedback. In static mode the
  program discussed is the log's (labelled so). ``info["messages"]`` has the same window.
- ``interface="discrete"``: ``Box(0, 1, (30,))``: per candidate program (five slots):
  it is the program under discussion, the agent submitted it, the feedback so far rules it
  out (taken at its word), the expert's fix leads to it; the coverage and the expertise
  (one-hot, three each); the share of turns used; the last discussed program's visible pass
  rate and whether it failed to compile; static mode. Never which candidate is right.

## Action

- ``text``: a program (a fenced ``python`` block is taken from a longer reply, otherwise
  the whole text), or ``Keep my previous program.``. A reply with no code, or keep before
  any program, is an observation: the turn is spent, nothing runs,
  ``info["invalid_action"]`` is set.
- ``discrete``: ``Discrete(6)``: ``0-4`` the problem's candidate programs in a seeded order
  (the reference, the bank's two or three buggy variants, and drafts of them with a syntax
  error, so five in all), each a real program that is executed; ``5`` keep the previous
  program. Each action's text is the text view's, so both views are one task.

## Reward

The visible feedback's verdict: 1.0 on the turn the program is accepted: it passes every
hidden test (the user accepts it), or, when no user speaks (``user_expertise="none"``), the
execution feedback shows every test it ran passing: under partial coverage a program can
pass the three tests shown and fail hidden ones, and the episode ends rewarded but wrong.
0.0 otherwise. Per step: ``info["verdict"]``, ``info["hidden_pass_rate"]``,
``info["visible_pass_rate"]``, ``info["syntax_error"]``, ``info["program"]`` (the
candidate's name, or None for free code), ``info["leaked"]``, ``info["isolation"]`` and
``info["run"]`` (the sandbox's summary).

## Feedback source

Per readable program: an ``execution`` record (``scalar`` the visible pass rate; ``text``
the compilation and execution feedback), when the combination shows any; a ``user`` record
(the verbal feedback) when ``user_expertise`` is not ``none`` and the program is not
accepted; an ``oracle`` record when the leak check flags the user's feedback.

## True utility

The final program's pass rate on the hidden tests, on the episode's last step (0 before,
so the summed true utility is it); ``is_success``: it passes them all. Outcomes:
``solved``, ``solved_at_turn`` (0: never), ``reciprocal_rank`` (its inverse, 0 if never:
MRR is its mean), ``pass_at_turn`` (solved by turn 1, 2, ... ``max_turns``: a tuple),
``final_pass_rate``, ``misled`` (ended rewarded but failing hidden tests), ``turns_used``,
``syntax_errors``, ``leaks`` (user feedback the leak check flagged).

## Episode end

Terminated when the verdict accepts. Truncated after ``max_turns`` programs, or when an LLM
simulator gives up (``on_parse_error``) or its backend fails under
``on_backend_error="truncate"``, with ``info["feedback_error"]`` and no reward.

## Arguments

``test_coverage`` (``"partial"``: ``none``, ``partial``, ``full``), ``user_expertise``
(``"expert"``: ``none``, ``novice``, ``expert``), ``mode`` (``"live"`` or ``"static"``),
``split`` (``"train"``, ``"test"``: the held-out problems, or ``"all"``), ``max_turns`` (5).
Role, for ``simulator={...}``: ``user``.

## LLM simulator

The rule user writes its feedback from templates over the failing hidden tests and the
reference: the expert names the first failing case and the fix of the bank's bug whose
buggy line the program contains (the bug's recorded fix, with its line), a generic pointer
to the first line that differs from the reference otherwise. The LLM user sees the
problem, the program, up to three failing cases and (expert) the reference, and is asked
to write one or two sentences without pasting the reference. A scoring backend chooses
among the templated phrasings (expert: each of two failing cases with each of the
problem's recorded fixes or the generic pointer; novice: each symptom), calibrated against
a content-free prompt; a server writes freely and its text is the feedback. Whatever the
user says passes the leak check (at least two and at least half of the reference's
lines, verbatim): a flag in ``info["leaked"]``, an ``oracle`` record and the
``leaks`` outcome. Static mode asks no simulator: the log was written by the rule user
(:func:`generate_log`, shipped as ``envs/data/code_feedback_log.json``).

``fbenv fidelity`` plays an expert-feedback follower, a novice-feedback follower and a
solver that reads only compilation feedback; the direction is the follower's MRR minus
the non-reader's (> 0 under both the novice and the expert user).

## Version history

- v0: initial release.
"""

from __future__ import annotations

import ast
import difflib
import json
import random
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeResult, scripted
from fbenv.errors import check_choice, check_int
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.llm.base import Message
from fbenv.roles import Prompt, Role
from fbenv.sandbox import Outcome, RunResult, TestResult, plain
from fbenv.truth import StepResult, Truth

from fbenv.envs.code_problems import Problem, problems, run_bank

COVERAGES = ("none", "partial", "full")
EXPERTISE = ("none", "novice", "expert")
MODES = ("live", "static")
SPLITS = ("train", "test", "all")
KEEP = "Keep my previous program."
PARTIAL_TESTS = 3  # ConvCodeWorld's partial coverage: the first three tests
N_PROGRAMS = 5
N_ACTIONS = N_PROGRAMS + 1
N_FEATURES = 4 * N_PROGRAMS + len(COVERAGES) + len(EXPERTISE) + 4
SHOWN_FAILURES = 8  # at most this many failing tests are listed (full coverage)
LOG_FILE = "code_feedback_log.json"
LOG_VERSION = 1
_CACHE_SIZE = 4096


# ---------------------------------------------------------------------- candidate programs


def program_ids(p: Problem) -> tuple[str, ...]:
    """The five candidate programs of ``p``: the reference, its bugs, syntax-error drafts
    (``syntax0`` is bug 0 with a typo; a problem with two bugs also has ``syntax1``)."""
    bugs = tuple(f"bug{k}" for k in range(len(p.bugs)))
    drafts = ("syntax0",) if len(bugs) == 3 else ("syntax1", "syntax0")
    return ("ref",) + bugs + drafts


def program_code(p: Problem, pid: str) -> str:
    if pid == "ref":
        return p.reference
    k = int(pid[-1])
    code = p.bugs[k].code
    if pid.startswith("syntax"):  # the def line loses its colon: a SyntaxError on line 1
        first, rest = code.split("\n", 1)
        return first.rstrip(":") + "\n" + rest
    return code


def underlying(pid: str) -> str:
    """The program a draft becomes once its typo is fixed."""
    return "bug" + pid[-1] if pid.startswith("syntax") else pid


def _syntax_result(p: Problem, err: BaseException) -> RunResult:
    line = getattr(err, "lineno", None)
    msg = f"{type(err).__name__}: {getattr(err, 'msg', None) or err}"
    tests = tuple(TestResult(k, "not_run", tuple(t.args), plain(t.expected)) for k, t in enumerate(p.tests))
    return RunResult(Outcome.SYNTAX_ERROR, tests, "none", msg, line if isinstance(line, int) else None)


def _compiles(code: str) -> BaseException | None:
    """Parse only (nothing runs): a syntax error is found without starting the sandbox."""
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return exc
    return None


_BANK: dict[tuple[str, str], RunResult] = {}  # every candidate of every problem (trusted, run once)
_RUNS: "OrderedDict[tuple[str, str], RunResult]" = OrderedDict()  # other programs, least recent evicted


def _run_bank_once() -> None:
    """Every candidate of every problem, in one sandboxed interpreter, once per process."""
    if _BANK:
        return
    pairs = [(p, program_code(p, pid)) for p in problems() for pid in program_ids(p)]
    for p, c in pairs:
        if (err := _compiles(c)) is not None:
            _BANK[(p.id, c)] = _syntax_result(p, err)
    runnable = [(p, c) for p, c in pairs if (p.id, c) not in _BANK]
    for (p, c), r in zip(runnable, run_bank(runnable)):
        _BANK[(p.id, c)] = r


def run_program(p: Problem, code: str) -> RunResult:
    """The hidden-test run of ``code``: a bank program or a repeat comes from the cache
    (same code, same tests: the sandbox is deterministic), anything else runs once."""
    _run_bank_once()
    key = (p.id, code)
    if key in _BANK:
        return _BANK[key]
    if key in _RUNS:
        _RUNS.move_to_end(key)
        return _RUNS[key]
    err = _compiles(code)
    result = _syntax_result(p, err) if err is not None else p.run(code)
    _RUNS[key] = result
    while len(_RUNS) > _CACHE_SIZE:
        _RUNS.popitem(last=False)
    return result


def identify(p: Problem, code: str) -> str | None:
    """The candidate ``code`` is (whitespace at the ends ignored), or None for free code."""
    norm = code.strip()
    return next((pid for pid in program_ids(p) if program_code(p, pid).strip() == norm), None)


# ---------------------------------------------------------------------- feedback pieces


def call_text(p: Problem, t: TestResult) -> str:
    return f"{p.entry}({', '.join(map(repr, t.args))})"


def got_text(t: TestResult) -> str:
    if t.status == "error":
        return "it hangs (time limit)" if t.kind == "timeout" else f"it raises {t.error}"
    if t.status == "not_run":
        return "it did not run"
    return f"it returns {t.actual!r}"


def visible_tests(result: RunResult, coverage: str) -> tuple[TestResult, ...]:
    if coverage == "none":
        return ()
    return result.tests[:PARTIAL_TESTS] if coverage == "partial" else result.tests


def compile_text(result: RunResult) -> str:
    line = f" (line {result.line})" if result.line else ""
    return f"Compilation failed: {result.message}{line}."


def execution_text(p: Problem, result: RunResult, coverage: str) -> str:
    """The execution feedback at ``coverage`` (empty under ``none`` or a syntax error)."""
    if coverage == "none" or result.outcome is Outcome.SYNTAX_ERROR:
        return ""
    if result.outcome is Outcome.RUNTIME_ERROR and all(t.status == "not_run" for t in result.tests):
        return f"Running it failed before any test: {result.message}"
    shown = visible_tests(result, coverage)
    passed = sum(t.passed for t in shown)
    scope = f"the first {len(shown)} tests" if coverage == "partial" else f"all {len(shown)} tests"
    if passed == len(shown):
        return f"Tests: ran {scope}; all passed."
    lines = [f"Tests: ran {scope}; {passed} passed, {len(shown) - passed} failed."]
    for t in [t for t in shown if not t.passed][:SHOWN_FAILURES]:
        if coverage == "full":
            lines.append(f"- {call_text(p, t)}: expected {t.expected!r}, but {got_text(t)}.")
        else:
            lines.append(f"- {call_text(p, t)}: {got_text(t)}.")
    return "\n".join(lines)


def symptom(result: RunResult) -> str:
    """What a user who ran the program saw: syntax, crash, hang, wrong, or wrong+crash."""
    if result.outcome is Outcome.SYNTAX_ERROR:
        return "syntax"
    failing = result.failing
    if result.outcome is Outcome.TIMEOUT or any(t.kind == "timeout" for t in failing):
        return "hang"
    errors = any(t.status in ("error", "not_run") for t in failing)
    wrong = any(t.status == "fail" for t in failing)
    return "wrong+crash" if errors and wrong else "crash" if errors else "wrong"


NOVICE_PHRASES = {
    "syntax": "It does not run at all: Python says there is a syntax error. I don't know how to fix it.",
    "crash": "I ran it and it crashes with an error on some inputs. I'm not sure why.",
    "hang": "I ran it and it seems to hang on some inputs. I'm not sure why.",
    "wrong": "I ran it and it gives wrong answers for some inputs. I'm not sure why.",
    "wrong+crash": "I ran it: it gives wrong answers for some inputs and crashes on others. I'm not sure why.",
}


def matched_bug(p: Problem, code: str) -> int | None:
    """The bank bug whose buggy line ``code`` has where the reference has its fixed line."""
    lines = [ln.strip() for ln in code.splitlines()]
    for k, bug in enumerate(p.bugs):
        at = lines[bug.line - 1] if len(lines) >= bug.line else None
        if at == bug.buggy_line:
            return k
    for k, bug in enumerate(p.bugs):  # the line moved (free code): any line that reads the buggy one
        if bug.buggy_line in lines and bug.fixed_line not in lines:
            return k
    return None


def first_difference(p: Problem, code: str) -> int | None:
    """The first line of ``code`` that differs from the reference (1-based), if any."""
    ref, mine = p.reference.strip().splitlines(), code.strip().splitlines()
    for tag, _i1, _i2, j1, j2 in difflib.SequenceMatcher(a=ref, b=mine, autojunk=False).get_opcodes():
        if tag != "equal":
            return min(j1 + 1, max(len(mine), 1))
    return None


def fix_phrase(p: Problem, fix: int | None, code: str) -> str:
    if fix is not None:
        bug = p.bugs[fix]
        return f"On line {bug.line}: {bug.fix}."
    line = first_difference(p, code)
    return f"Check line {line} against the statement." if line else "Check how your code handles that input."


def expert_phrase(p: Problem, result: RunResult, code: str, case: int, fix: int | None) -> str:
    """The expert's templated feedback: failing case ``case`` (index into the failing tests), fix ``fix``."""
    if result.outcome is Outcome.SYNTAX_ERROR:
        head = f"There is a syntax error on line {result.line or 1}: fix it first."
        return head + (f" Then, on line {p.bugs[fix].line}: {p.bugs[fix].fix}." if fix is not None else "")
    failing = result.failing
    if not failing:
        return "It works."
    t = failing[min(case, len(failing) - 1)]
    if t.status == "not_run":
        return f"It fails before any test runs ({result.message}). " + fix_phrase(p, fix, code)
    return f"It fails for {call_text(p, t)}: that should return {t.expected!r}, but {got_text(t)}. " + \
        fix_phrase(p, fix, code)


def leaked_lines(p: Problem, text: str) -> int:
    """How many lines of the reference's body the feedback pastes verbatim (lines under
    eight characters, like ``return []``, do not count: they say nothing alone)."""
    said = text.replace("`", " ")
    return sum(1 for ln in p.reference.splitlines()[1:] if len(ln.strip()) >= 8 and ln.strip() in said)


def is_leak(p: Problem, text: str) -> bool:
    """The leak check: at least two and at least half of the reference's lines pasted
    (the reference itself, not a hint that quotes a fragment of a line)."""
    n = leaked_lines(p, text)
    return n >= 2 and n >= len([ln for ln in p.reference.splitlines()[1:] if len(ln.strip()) >= 8]) / 2


# ---------------------------------------------------------------------- the simulated user


@dataclass(frozen=True)
class Asking:
    """What the user is asked about: the problem, the program, its run, the user's expertise."""

    problem: Problem
    code: str
    result: RunResult
    expertise: str


@dataclass(frozen=True)
class Verbal:
    """The user's feedback: the text, and what it judged (the failing case, the fix; None: not said)."""

    text: str
    case: int | None = None
    fix: int | None = None
    symptom: str | None = None


def _free(ctx: Asking, text: str) -> Verbal | None:
    """A server's own words: the feedback as written; what it judged is read where it can be."""
    t = text.strip()
    if not t or t.upper() == "N/A":
        return None
    p = ctx.problem
    fix = next((k for k, b in enumerate(p.bugs) if b.fix.lower() in t.lower() or f"line {b.line}" in t.lower()), None)
    cases = [call_text(p, x) for x in ctx.result.failing[:2]]
    case = next((i for i, c in enumerate(cases) if c in t), None)
    return Verbal(t[:800], case, fix)


class User(Role[Asking, Verbal]):
    """The simulated user (see the module docs)."""

    key, name, source = "user", "CodeFeedback user", Source.USER

    def rule(self, ctx: Asking) -> Verbal:
        if ctx.expertise == "novice":
            s = symptom(ctx.result)
            return Verbal(NOVICE_PHRASES[s], symptom=s)
        fix = matched_bug(ctx.problem, ctx.code)
        return Verbal(expert_phrase(ctx.problem, ctx.result, ctx.code, 0, fix), 0, fix)

    def options(self, ctx: Asking) -> dict[str, Verbal]:
        """The templated phrasings a scoring model chooses among (the rule's among them)."""
        if ctx.expertise == "novice":
            return {text: Verbal(text, symptom=s) for s, text in NOVICE_PHRASES.items()}
        p, r = ctx.problem, ctx.result
        cases = range(1 if r.outcome is Outcome.SYNTAX_ERROR else min(2, len(r.failing)) or 1)
        out: dict[str, Verbal] = {}
        for c in cases:
            for f in (*range(len(p.bugs)), None):
                out.setdefault(expert_phrase(p, r, ctx.code, c, f), Verbal(expert_phrase(p, r, ctx.code, c, f), c, f))
        return out

    def messages(self, ctx: Asking) -> tuple[Message, ...]:
        p, r = ctx.problem, ctx.result
        if ctx.expertise == "novice":
            system = ("You asked a programmer to write the function below. You are not a programmer: you ran it and "
                      "say what went wrong, in one or two sentences, not why.")
        else:
            system = ("You are an expert Python programmer reviewing a colleague's function. Name one failing case "
                      "and how to fix the faulty line, in one or two sentences. Never paste the correct solution.")
        if r.outcome is Outcome.SYNTAX_ERROR:
            ran = f"It does not compile: {r.message} (line {r.line or 1})."
        else:
            ran = "\n".join(f"- {call_text(p, t)}: expected {t.expected!r}, but {got_text(t)}." for t in r.failing[:3])
        body = f"Task:\n{p.prompt}\nTheir code:\n```python\n{ctx.code.strip()}\n```\nWhen you ran it:\n{ran}\n"
        if ctx.expertise == "expert":
            body += f"A correct solution (do not paste it):\n```python\n{p.reference.strip()}\n```\n"
        return Message("system", system), Message("user", body + "\nYour feedback to the programmer:")

    def prompt(self, ctx: Asking) -> Prompt[Verbal]:
        system = self.messages(ctx)[0]
        return Prompt(self.messages(ctx), choices=self.options(ctx), parse=lambda t: _free(ctx, t), max_tokens=90,
                      stop=("\n\n",), calibration=(system, Message("user", "N/A")))

    def agreement(self, value: Verbal) -> Any:
        if value.symptom is not None:
            return value.symptom
        return None if value.case is None and value.fix is None else f"case {value.case}, fix {value.fix}"

    def record(self, value: Verbal, ctx: Asking) -> Feedback:
        return Feedback(self.source, text=value.text)


USER = User()


# ---------------------------------------------------------------------- the static log (ConvCodeBench)

LOG_TURNS = 4


def generate_log() -> dict[str, Any]:
    """The static log, written by the rule user: per problem, a weak reference solver's
    programs (the four wrong candidates in a fixed-seed order; the solver never gets one
    right) and the novice's and the expert's verbal feedback on each. Regenerate with
    ``python -m fbenv.envs.code_feedback --write-log PATH`` after a bank or template change."""
    out: dict[str, Any] = {"version": LOG_VERSION, "turns": LOG_TURNS, "problems": {}}
    for p in problems():
        wrong = [pid for pid in program_ids(p) if pid != "ref"]
        random.Random(f"fbenv-code-feedback-log/{p.id}").shuffle(wrong)
        verbal = {e: {} for e in ("novice", "expert")}
        for pid in wrong:
            code = program_code(p, pid)
            for e in verbal:
                verbal[e][pid] = USER.rule(Asking(p, code, run_program(p, code), e)).text
        out["problems"][p.id] = {"programs": wrong[:LOG_TURNS], "verbal": verbal}
    return out


def write_log(path: "str | Path") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(generate_log(), indent=1, sort_keys=True) + "\n")
    return path


_LOG: dict[str, Any] | None = None


def shipped_log() -> dict[str, Any]:
    global _LOG
    if _LOG is None:
        _LOG = json.loads(resources.files("fbenv.envs").joinpath("data", LOG_FILE).read_text())
    return _LOG


# ---------------------------------------------------------------------- the env


@dataclass(frozen=True)
class CodeTask:
    """The hidden task: the problem, the seeded order of its candidates, the solvers' seed."""

    problem_id: str
    order: tuple[str, ...]
    solver_seed: int


@dataclass(frozen=True)
class Discussed:
    """The program the feedback of a turn is about (the agent's; in static mode the log's)."""

    code: str
    pid: str | None
    result: RunResult
    execution: str
    verbal: Verbal | None


class CodeFeedbackEnv(FeedbackEnv):
    """Write code, hear compile/execution/verbal feedback, retry. See the module docs."""

    roles = (USER,)
    names = {"assistant": "Programmer", "user": "User", "system": "System"}
    keep_rounds = 2
    n_actions, n_features = N_ACTIONS, N_FEATURES
    max_action_chars = 4000

    def __init__(self, *, test_coverage: str = "partial", user_expertise: str = "expert", mode: str = "live",
                 split: str = "train", max_turns: int = 5, **options: Any):
        super().__init__(**options)
        self.test_coverage = check_choice("test_coverage", test_coverage, COVERAGES)
        self.user_expertise = check_choice("user_expertise", user_expertise, EXPERTISE)
        self.mode = check_choice("mode", mode, MODES)
        self.split = check_choice("split", split, SPLITS)
        self.max_turns = check_int("max_turns", max_turns, minimum=1, maximum=50)
        self.bank = problems(None if self.split == "all" else self.split)

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> CodeTask:
        p = self.bank[int(rng.integers(len(self.bank)))]
        ids = list(program_ids(p))
        order = tuple(ids[i] for i in rng.permutation(len(ids)))
        return CodeTask(p.id, order, int(rng.integers(2**31 - 1)))

    @property
    def problem(self) -> Problem:
        return next(p for p in self.bank if p.id == self.task.problem_id)

    def opening(self) -> None:
        self.code: str | None = None  # the agent's current program
        self.discussed: Discussed | None = None
        self.history: list[Discussed] = []
        self.submitted: set[str] = set()
        self.solved_at = 0
        self.syntax_errors = self.leaks = 0
        self.last_result: RunResult | None = None
        self._step_info: dict[str, Any] = self._blank_info()
        self.transcript.say("system", (
            f"Write the Python function below. After each program you get feedback; you have {self.max_turns} "
            f"turns. Reply with the whole program (a ```python block), or \"{KEEP}\"\n\n{self.problem.prompt}"))

    @staticmethod
    def _blank_info() -> dict[str, Any]:
        return {"verdict": False, "hidden_pass_rate": 0.0, "visible_pass_rate": 0.0, "syntax_error": False,
                "program": None, "invalid_action": False, "leaked": False, "isolation": None, "run": None}

    def respond(self, text: str) -> StepResult:
        p = self.problem
        code = extract_code(text)
        info = self._blank_info()
        if code is None or (code == KEEP and self.code is None):
            info["invalid_action"] = True
            self.transcript.say("system", "I could not find a program in your reply." if code is None
                                else "There is no previous program to keep.")
            self._step_info = info
            return self._end_or_go(info, accepted=False)
        if code == KEEP:
            code = self.code
        self.code = code
        result = run_program(p, code)
        self.last_result = result
        pid = identify(p, code)
        if pid is not None:
            self.submitted.add(pid)
        hidden = result.ok
        shown = visible_tests(result, self.test_coverage)
        visible_ok = result.outcome is not Outcome.SYNTAX_ERROR and bool(shown) and all(t.passed for t in shown)
        accepted = hidden or (self.user_expertise == "none" and self.test_coverage != "none" and visible_ok)
        self.syntax_errors += result.outcome is Outcome.SYNTAX_ERROR
        if hidden and not self.solved_at:
            self.solved_at = self.turn
        info.update(verdict=accepted, hidden_pass_rate=result.pass_rate,
                    visible_pass_rate=(sum(t.passed for t in shown) / len(shown)) if shown else 0.0,
                    syntax_error=result.outcome is Outcome.SYNTAX_ERROR, program=pid, isolation=result.isolation,
                    run=result.summary())
        if hidden:
            self.transcript.say("user", "All hidden tests pass. That works, thanks!")
        elif self.mode == "static":
            self._replay(info)
        else:
            self._discuss(code, pid, result, info, accepted)
        self._step_info = info
        return self._end_or_go(info, accepted)

    def _discuss(self, code: str, pid: str | None, result: RunResult, info: dict[str, Any], accepted: bool) -> None:
        """Live mode: the feedback on the agent's own program."""
        execution = self._execution(result)
        verbal = None
        if self.user_expertise != "none" and not accepted:
            verbal = self.sim.ask(USER, Asking(self.problem, code, result, self.user_expertise)).value
            self._check_leak(verbal, code, info)
        self._show(Discussed(code, pid, result, execution, verbal), own=True)

    def _replay(self, info: dict[str, Any]) -> None:
        """Static mode (ConvCodeBench): the log's program of this turn and its logged feedback."""
        p = self.problem
        entry = shipped_log()["problems"][p.id]
        pid = entry["programs"][(self.turn - 1) % len(entry["programs"])]
        code = program_code(p, pid)
        result = run_program(p, code)
        verbal = None
        if self.user_expertise != "none":
            verbal = Verbal(entry["verbal"][self.user_expertise][pid])
            self.sim.ledger.add(Feedback(Source.USER, text=verbal.text))
            self._check_leak(verbal, code, info)
        self._show(Discussed(code, pid, result, self._execution(result), verbal), own=False)

    def _execution(self, result: RunResult) -> str:
        parts = []
        if result.outcome is Outcome.SYNTAX_ERROR:
            parts.append(compile_text(result))
        if ex := execution_text(self.problem, result, self.test_coverage):
            parts.append(ex)
        text = "\n".join(parts)
        if text:
            shown = visible_tests(result, self.test_coverage)
            ran = shown and result.outcome is not Outcome.SYNTAX_ERROR
            rate = sum(t.passed for t in shown) / len(shown) if ran else 0.0
            self.sim.ledger.add(Feedback(Source.EXECUTION, scalar=rate, scale=(0.0, 1.0), text=text))
        return text

    def _check_leak(self, verbal: Verbal, code: str, info: dict[str, Any]) -> None:
        n = leaked_lines(self.problem, verbal.text)
        if is_leak(self.problem, verbal.text):
            info["leaked"] = True
            self.leaks += 1
            self.sim.ledger.add(Feedback(Source.ORACLE, scalar=1.0, scale=(0.0, 1.0),
                                         text=f"Leak check: the user's feedback pastes {n} lines of the reference."))

    def _show(self, d: Discussed, own: bool) -> None:
        self.discussed = d
        self.history.append(d)
        if not own:
            self.transcript.say("system", f"[Logged turn {self.turn}] program:\n```python\n{d.code.strip()}\n```")
        if d.execution:
            self.transcript.say("system", d.execution)
        if d.verbal is not None:
            self.transcript.say("user", d.verbal.text)
        if not d.execution and d.verbal is None:
            self.transcript.say("system", "Noted.")  # no feedback in this combination: the turn is still marked

    def _end_or_go(self, info: dict[str, Any], accepted: bool) -> StepResult:
        over = self.turn >= self.max_turns
        if not (accepted or over):
            return StepResult(0.0, truth=Truth(0.0))
        final = self.last_result.pass_rate if self.last_result is not None else 0.0
        hidden = bool(self.last_result is not None and self.last_result.ok)
        return StepResult(float(accepted), terminated=accepted, truncated=not accepted,
                          truth=Truth(final, best=1.0, success=hidden), info=self._outcomes(final, hidden, accepted))

    def _outcomes(self, final: float, hidden: bool, accepted: bool) -> dict[str, Any]:
        at = self.solved_at
        return {"solved": hidden, "solved_at_turn": at, "reciprocal_rank": 1.0 / at if at else 0.0,
                "pass_at_turn": tuple(bool(at) and at <= t for t in range(1, self.max_turns + 1)),
                "final_pass_rate": float(final), "misled": bool(accepted and not hidden), "turns_used": self.turn,
                "syntax_errors": self.syntax_errors, "leaks": self.leaks}

    # ----------------------------------------------------------------- views

    def candidate_codes(self) -> list[str]:
        return [program_code(self.problem, pid) for pid in self.task.order]

    def candidate_replies(self) -> Sequence[str]:
        return self.candidate_codes() + [KEEP]

    def features(self) -> np.ndarray:
        x = np.zeros(N_FEATURES, dtype=np.float32)
        k = N_PROGRAMS
        out = ruled_out(self)
        target = expert_target(self)
        for i, pid in enumerate(self.task.order):
            x[i] = float(self.discussed is not None and self.discussed.pid == pid)
            x[k + i] = float(pid in self.submitted)
            x[2 * k + i] = float(pid in out)
            x[3 * k + i] = float(pid == target)
        base = 4 * k
        x[base + COVERAGES.index(self.test_coverage)] = 1.0
        x[base + 3 + EXPERTISE.index(self.user_expertise)] = 1.0
        d = self.discussed
        shown = visible_tests(d.result, self.test_coverage) if d else ()
        x[base + 6:] = (min(self.turn / self.max_turns, 1.0),
                        sum(t.passed for t in shown) / len(shown) if shown else 0.0,
                        float(bool(d and d.result.outcome is Outcome.SYNTAX_ERROR)), float(self.mode == "static"))
        return x

    def extra_info(self) -> Mapping[str, Any]:
        return self._step_info


def extract_code(text: str) -> str | None:
    """The program in a reply: a fenced block if there is one, else the text; KEEP; None if empty."""
    t = text.strip()
    if t.lower().rstrip(".") == KEEP.lower().rstrip("."):
        return KEEP
    m = re.search(r"```(?:python|py)?[ \t]*\n(.*?)```", text, re.DOTALL)
    code = m.group(1) if m else text
    return code if code.strip() else None


# ---------------------------------------------------------------------- reading the feedback
# (what a scripted solver takes from the feedback on the discussed program, taken at its word)


def named_fix(env: CodeFeedbackEnv) -> int | None:
    """The bank fix the last verbal feedback names (by its recorded words), if any."""
    d = env.discussed
    if d is None or d.verbal is None:
        return None
    t = d.verbal.text.lower()
    return next((k for k, b in enumerate(env.problem.bugs) if b.fix.lower() in t), None)


def expert_target(env: CodeFeedbackEnv) -> str | None:
    """The program the named fix leads to: the discussed program with that line fixed."""
    d, k = env.discussed, named_fix(env)
    if d is None or k is None or d.pid is None:
        return None
    return "ref" if underlying(d.pid) == f"bug{k}" else underlying(d.pid)


def ruled_out(env: CodeFeedbackEnv, reads: Sequence[str] = ("execution", "verbal")) -> set[str]:
    """The candidates the feedback so far shows to be wrong: the discussed programs a user
    said fail ("verbal"); those that fail a shown test the same way, or (full coverage) do
    not return the expected value there ("execution")."""
    p = env.problem
    runs = {pid: run_program(p, program_code(p, pid)) for pid in program_ids(p)}
    out: set[str] = set()
    for d in env.history:
        if "verbal" in reads and d.verbal is not None and d.pid is not None:
            out.add(d.pid)
        if "execution" not in reads or env.test_coverage == "none" or d.result.outcome is Outcome.SYNTAX_ERROR:
            continue
        for t in visible_tests(d.result, env.test_coverage):
            if t.passed:
                continue
            for pid, r in runs.items():
                other = r.tests[t.index]
                if env.test_coverage == "full":
                    bad = not other.passed
                else:  # partial: no expected value shown, only what the failing program did
                    bad = (other.status, other.actual, other.kind) == (t.status, t.actual, t.kind)
                if bad:
                    out.add(pid)
    return out


def follower(reads: Sequence[str] = ("execution", "verbal", "fix")):
    """A scripted solver (either view). Its first program comes from the task's seed: right
    one time in five, a syntax-error draft one in five, else a buggy variant. Then it reads
    the feedback on the program under discussion (its own; the log's in static mode):
    compilation errors always (it fixes the typo); with ``"fix"`` it applies a fix the user
    names; with ``"execution"``/``"verbal"`` it drops what the tests/the user showed to be
    wrong and, if the discussed program is, tries another candidate (seeded)."""

    def choose(env: CodeFeedbackEnv) -> int:
        order = env.task.order
        rng = np.random.default_rng([env.task.solver_seed, env.turn])
        d = env.discussed
        if d is None:  # the first program
            first = np.random.default_rng(env.task.solver_seed).random()
            wrong = [pid for pid in order if pid.startswith("bug")]
            drafts = [pid for pid in order if pid.startswith("syntax")]
            pick = "ref" if first < 0.2 else drafts[0] if first < 0.4 else wrong[env.task.solver_seed % len(wrong)]
            return order.index(pick)
        if "fix" in reads and (target := expert_target(env)) is not None:
            return order.index(target)
        out = ruled_out(env, [r for r in reads if r != "fix"])
        if d.pid is not None and d.result.outcome is Outcome.SYNTAX_ERROR and underlying(d.pid) not in out:
            return order.index(underlying(d.pid))
        if d.pid is not None and d.pid not in out and not d.pid.startswith("syntax"):
            return order.index(d.pid)
        pool = [pid for pid in order if pid not in out and not pid.startswith("syntax")] or ["ref"]
        return order.index(pool[int(rng.integers(len(pool)))])

    return choose


def random_solver(env: CodeFeedbackEnv) -> int:
    return int(np.random.default_rng([env.task.solver_seed, 7, env.turn]).integers(N_ACTIONS))


POLICIES = {
    "expert-follower": follower(("execution", "verbal", "fix")),
    "novice-follower": follower(("execution", "verbal")),
    "no-feedback": follower(()),
    "random": random_solver,
}


def play(policy):
    """A scripted policy as a policy factory: ``(env) -> (obs, info) -> action``, either view."""
    return scripted(policy)


def mrr(results: Sequence[EpisodeResult]) -> float:
    return float(np.mean([r.outcomes["reciprocal_rank"] for r in results])) if results else 0.0


def pass_at(results: Sequence[EpisodeResult], t: int) -> float:
    return float(np.mean([r.outcomes["pass_at_turn"][t - 1] for r in results])) if results else 0.0


def feedback_gain(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The paper's direction: the follower's MRR minus the compile-only solver's (> 0)."""
    best = "expert-follower" if variant == "expert" else "novice-follower"
    return mrr(results[best]) - mrr(results["no-feedback"])


def fidelity_probe() -> Probe:
    return Probe(
        policies={name: play(POLICIES[name]) for name in ("expert-follower", "novice-follower", "no-feedback")},
        variants={"expert": {"user_expertise": "expert", "test_coverage": "none"},
                  "novice": {"user_expertise": "novice", "test_coverage": "none"}},
        direction=feedback_gain,
        direction_doc="MRR of the feedback follower minus the compile-only solver's (> 0)",
        expected_sign={"expert": 1, "novice": 1},
    )


__all__ = [
    "COVERAGES", "EXPERTISE", "KEEP", "MODES", "POLICIES", "USER", "Asking", "CodeFeedbackEnv", "CodeTask", "User",
    "Verbal", "expert_phrase", "expert_target", "extract_code", "feedback_gain", "fidelity_probe", "follower",
    "generate_log", "identify", "is_leak", "leaked_lines", "matched_bug", "mrr", "named_fix", "pass_at", "play",
    "program_code", "program_ids", "random_solver", "ruled_out", "run_program", "shipped_log", "write_log",
]


if __name__ == "__main__":  # python -m fbenv.envs.code_feedback --write-log PATH
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--write-log":
        print(write_log(sys.argv[2]))
    else:
        print("usage: python -m fbenv.envs.code_feedback --write-log PATH")
