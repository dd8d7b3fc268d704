"""Tutor: hint a student towards fixing a buggy program, judged in hindsight by the sandbox.

## Description

From *Automating Human Tutor-Style Programming Feedback* (Phung et al.: a hint is
validated by whether a simulated student fixes the program with it), *TutorBench*
(rubric items for tutor replies) and *IMBUE*. A simulated student holds a buggy program
with one planted misconception: a problem of the shared bank
(:mod:`fbenv.envs.code_problems`: 42 small Python exercises with reference solutions and
hidden tests) with one of its typical bugs (the bug type, e.g. ``off_by_one``, and the
line are known to the env). The student shows the program and the test it fails; the
agent, as the tutor, writes a hint. The student then tries to fix the program using the
hint: it writes the fixed line, leaves the program as it is, or makes a plausible wrong
edit of the line (a comparison or a constant changed). Whatever program comes out is run
in the sandbox (:mod:`fbenv.sandbox`) against the hidden tests: that hindsight signal is
the reward. A hint that gives the answer away (the corrected line, or a whole working
solution) helps the student pass today and is penalized.

The hidden task, drawn at ``reset(seed=...)``, is the problem (from ``split``), the bug
and one uniform number per turn that the student's choice is taken against, so the same
hint in the same state gets the same answer under every policy.

## Observation

- ``interface="text"``: the instructions, then the student's opening (the exercise with
  its signature, statement and two examples; the program with numbered lines; the test
  it fails with the expected and the actual value) and, over the last three rounds, the
  agent's hints and the student's replies (``I changed line 3 to `...`. It still fails
  on ...``). ``info["messages"]`` has the same window as chat messages.
- ``interface="discrete"``: ``Box(0, 1, (16,))``: the topic (one-hot, four), the bug
  type (one-hot, seven: the diagnosis a tutor reading the program makes), the share of
  hidden tests the current program passes, the bug's line over the program's length,
  the share of ``max_turns`` played, whether the last attempt was a wrong edit and
  whether any hint so far leaked the fix.

## Action

- ``text``: the hint, any string (up to 2,000 characters). An empty hint is an
  observation, never a crash: the student gets nothing to work with, the turn is spent
  and ``info["invalid_action"]`` is set.
- ``discrete``: ``Discrete(8)``, hint templates filled in by the env with the current
  program: ``0`` vague (``Something in your program is not quite right...``), ``1``
  points to the failing test (the call, the expected and the actual value), ``2`` names
  the bug's line (and quotes it), ``3`` names the misconception (the bug type in words),
  ``4`` names the line and the misconception, ``5`` asks a guiding question about the
  line and the misconception, ``6`` names a wrong line, ``7`` leaks the fix (``Change
  line 3 to `...`.``). Each action's text is the text view's, so both views are one task.

## Reward

Per hint: 1.0 when the student's program after it passes every hidden test (the episode
ends there), else 0.0; minus ``leak_penalty`` when the hint leaks the fix. Per step,
``info["hint"]`` is the rule check of the hint (``names_line``, ``names_misconception``,
``wrong_line``, ``failing_case``, ``asks_guiding_question``, ``leaked``, ``leak``: what
leaked, ``""``, ``"fixed_line"`` or ``"solution"``); ``info["leaked"]``,
``info["rubric"]`` (TutorBench's items: ``names_misconception``,
``no_answer_revealed``, ``asks_guiding_question``), ``info["attempt"]`` (what the
student did: ``fixed``, ``kept``, ``wrong_edit``, ``rewrite`` or ``none``),
``info["tests"]`` (the sandbox summary of the program after the attempt: outcome,
passed, total, isolation), ``info["isolation"]`` (``bwrap`` or ``rlimit``: how contained
the sandbox was) and ``info["invalid_action"]``.

## Feedback source

One ``user`` record per readable hint, the student's attempt (``text``: what it changed),
and one ``execution`` record, the hidden tests' verdict on the program after it
(``scalar`` the share of tests passed, ``text`` ``9/11 hidden tests pass.``).

## True utility

1.0 on the step the student's program first passes every hidden test, if no hint of the
episode leaked the fix; 0.0 otherwise (so the summed true utility is "fixed without a
leak"). ``info["is_success"]`` says the same on the last step (``info["regret"]`` is
``1 - true_utility`` there). Outcomes at the end: ``fixed``, ``leaked`` (any hint),
``fixed_without_leak``, ``fixed_at_turn`` (0 if never), ``final_pass_rate``, the shares
of hints that ``names_line``, ``names_misconception``, ``no_answer_revealed`` and
``asks_guiding_question``, ``rubric_score`` (the mean of the three rubric shares) and
``invalid_hints``.

## Episode end

Terminated when the student's program passes every hidden test. Truncated after
``max_turns`` hints, or when an LLM simulator gives up (``on_parse_error``) or its
backend fails under ``on_backend_error="truncate"``, with ``info["feedback_error"]`` and
no reward.

## Arguments

``split`` (``"train"``: the bank's training problems; ``"test"``: the held-out ones;
``"all"``), ``max_turns`` (1: hints per episode, as in the paper's single-hint setting;
more gives the student's reply after a failed fix and another try), ``leak_penalty``
(1.0: subtracted from a leaking hint's reward; 0 makes leaking free), plus the shared
options (``fbenv info`` lists them). Role, for ``simulator={...}``: ``student``.

## LLM simulator

The rule student reads the hint with the env's rule checks and writes the fix with
probability ``0.1 + 0.35 names_line + 0.3 names_misconception + 0.1 failing_case +
0.05 asks_question`` (0.02 at least; 0.02 when the hint names a wrong line and not the
right one; 0.95 when it leaks the fix). Otherwise it makes a plausible wrong edit of
the line (with 0.6 of the rest when the hint points somewhere, 0.2 when it is vague,
the edits sharing it equally) or keeps its program. The choice is taken against the
turn's uniform number, in the order fix, keep, wrong edits.

The LLM student sees what a student knows: the exercise, its program with numbered
lines, the failing test and the hint. It chooses which of the candidate changes it
makes (``I change line 3 to: for i in range(1, n):``, the wrong edits of that line,
``I leave my program as it is.``), listed in the prompt and offered as scored choices;
the scores are calibrated against the same prompt with the hint replaced by ``N/A``
(*Calibrate Before Use*), so what counts is how the hint moves the student. The
calibrated distribution replaces the rule's, and the choice is taken against the same
uniform number, in the same order. A server that writes freely may answer with one of
the lines, with ``I change line N to: <code>`` or with a whole program (in a code block
or from ``def``): a program of its own is run in the sandbox like any other. A reply with
none of these follows ``on_parse_error``.

``fbenv fidelity`` plays a vague hint, a hint naming the line, a guiding question and a
leaking hint, in one turn and in three. Its direction, ``min(names-line minus vague true
utility, guiding-question minus leaking reward)`` per episode, is expected > 0 in both.
With a faithful test reader (a student that moves towards the edits of the line a hint
names and copies a line a hint contains) the direction holds (+0.35 in both variants;
rule +0.45 and +0.60, 20 seeds), the student's fix probability has a Spearman of 0.85
with the rule's (floor -0.04) and episode rewards 0.76 (floor 0.46). The embedded
SmolLM2-135M does not follow hints (5 seeds): the student's fix Spearman -0.11 / -0.06
(floor -0.05 / -0.17), episode rewards 0.63 / 0.80 (floor 0.54 / 0.79), and the direction
is lost (+0.00; rule +0.60 / +0.40). Point ``llm=`` at a stronger model for this task.

## Version history

- v0: initial release.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.episodes import EpisodeResult, scripted
from fbenv.errors import check_choice, check_int, check_number
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.llm.base import Message
from fbenv.roles import Prompt, Questions, Reply, Role
from fbenv.sandbox import Limits, Outcome, RunResult
from fbenv.truth import StepResult, Truth
from fbenv.envs.code_problems import BUG_TYPES, TOPICS, Bug, Problem, problems, run_bank

SPLITS = ("train", "test", "all")
HISTORY = 3  # rounds the text view keeps
MAX_WRONG_EDITS = 2

# The rule student's model of a hint (see the module docs, LLM simulator).
BASE_FIX, LINE_BONUS, CONCEPT_BONUS, CASE_BONUS, QUESTION_BONUS = 0.1, 0.35, 0.3, 0.1, 0.05
MIN_FIX, MAX_FIX, LEAK_FIX = 0.02, 0.98, 0.95
WRONG_SHARE_POINTED, WRONG_SHARE_VAGUE = 0.6, 0.2

HINTS = ("vague", "failing_case", "names_line", "names_concept", "line_and_concept", "guiding_question",
         "wrong_line", "leaks_fix")
N_FEATURES = len(TOPICS) + len(BUG_TYPES) + 5

# The misconception of each bug type: words that name it (a hint naming it matches one),
# the phrase the templates use, and the guiding question they ask.
CONCEPT_WORDS: Mapping[str, tuple[str, ...]] = {
    "off_by_one": (r"off[- ]by[- ]one", r"one too (?:many|few|far|short|early|late)", r"\bboundar", r"\bbounds?\b",
                   r"\bendpoint", r"\binclusive\b", r"\bexclusive\b", r"\bfence ?post", r"\bone (?:more|less|fewer)\b",
                   r"\blast (?:value|index|element|position)"),
    "wrong_comparison": (r"\bcompar", r"\bstrict", r"\binequalit", r"\bless than\b", r"\bgreater than\b",
                         r"\bequal to\b", r"\bequal values?\b"),
    "missed_edge_case": (r"\bedge[- ]cases?\b", r"\bcorner[- ]cases?\b", r"\bspecial cases?\b", r"\bempty\b",
                         r"\bnegative", r"\bupper[- ]?case", r"\blower[- ]?case", r"\bcapital", r"\bwrap",
                         r"\bwhitespace"),
    "wrong_initial_value": (r"\binitial", r"\binitiali[sz]", r"\bstart(?:s|ing)? (?:value|at|from|with)\b"),
    "wrong_update": (r"\bupdat", r"\baccumulat", r"\bincrement", r"\boverwrit", r"\breset",
                     r"\beach (?:iteration|pass|time)\b"),
    "wrong_operator": (r"\boperators?\b", r"\bdivision\b", r"\bdivid", r"\blogical\b", r"\bboth conditions\b"),
    "wrong_return": (r"\breturn value", r"\breturns? the wrong\b", r"\bwrong (?:variable|value)\b",
                     r"\bwhat (?:you|it|the function|your function) returns?\b"),
}
CONCEPT_PHRASE: Mapping[str, str] = {
    "off_by_one": "an off-by-one mistake: a bound or an index goes one too far or stops one too early",
    "wrong_comparison": "a comparison that is not quite right: think about whether it should be strict",
    "missed_edge_case": "an edge case it does not handle",
    "wrong_initial_value": "a variable whose initial value is wrong",
    "wrong_update": "a loop that updates the wrong thing on each iteration",
    "wrong_operator": "an operator that is not the one you need",
    "wrong_return": "a return value that is not the one the exercise asks for",
}
QUESTION: Mapping[str, str] = {
    "off_by_one": "Which is the last value it reaches at the boundary, and should it be one more or one less?",
    "wrong_comparison": "Should this comparison be strict, or should equal values count too?",
    "missed_edge_case": "What does this line do in an edge case, like the test that fails?",
    "wrong_initial_value": "What initial value should this variable start at?",
    "wrong_update": "What should each iteration update, and what does this line update instead?",
    "wrong_operator": "Is this the operator you need here, and what does it do with your values?",
    "wrong_return": "Is that the right return value: what should the function give back here?",
}

_CMP = re.compile(r"<=|>=|==|!=|(?<![<>=!-])<(?![<=])|(?<![<>=!-])>(?![>=])")
_CMP_ALT = {"<=": ("<", ">="), ">=": (">", "<="), "==": ("!=",), "!=": ("==",), "<": ("<=", ">"), ">": (">=", "<")}
_SWAPS = ((" + 1", " - 1"), (" - 1", " + 1"), (" and ", " or "), (" or ", " and "), ("//", "/"))
_LINE_REF = re.compile(r"\blines?\s*(?:#|no\.?|number)?\s*(\d+)", re.I)
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.S | re.I)


# ---------------------------------------------------------------------- lessons: a bug and its candidate programs


def mutants(line: str) -> list[str]:
    """Plausible wrong edits of a line: a comparison flipped, ``+ 1``/``- 1``, ``and``/``or``,
    ``//``/``/`` swapped, an integer constant one larger; in that order, without repeats."""
    out: list[str] = []
    for m in _CMP.finditer(line):
        out += [line[: m.start()] + alt + line[m.end():] for alt in _CMP_ALT[m.group()]]
    for old, new in _SWAPS:
        k = line.find(old)
        if k >= 0:
            out.append(line[:k] + new + line[k + len(old):])
    for m in re.finditer(r"(?<![\w.])(\d+)(?![\w.])", line):
        out.append(line[: m.start()] + str(int(m.group()) + 1) + line[m.end():])
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Edit:
    """One program the student can hold: the bug's line as ``text`` (stripped)."""

    kind: str  # "fixed", "buggy" (the planted bug) or "wrong_edit"
    text: str
    code: str
    result: RunResult


@dataclass(frozen=True)
class Lesson:
    """A problem, its planted bug, and every candidate program, already run on the hidden tests."""

    problem: Problem
    bug: Bug
    edits: tuple[Edit, ...]  # fixed, buggy, then the wrong edits that fail a test

    @property
    def line(self) -> int:
        return self.bug.line

    def edit(self, text: str) -> Edit:
        e = self._edits_by_text.get(text)
        return e if e is not None else next(e for e in self.edits if e.text == text)

    @functools.cached_property  # looked up several times a step
    def _edits_by_text(self) -> dict[str, Edit]:
        out: dict[str, Edit] = {}
        for e in self.edits:
            out.setdefault(e.text, e)
        return out

    def with_line(self, text: str) -> str:
        """The reference with the bug's line reading ``text``: the student's program."""
        return replace_line(self.problem.reference, self.line, text)


LESSON_LIMITS = Limits(cpu_s=60, wall_s=120.0, test_s=0.5)


def _candidate_lines(bug: Bug) -> list[str]:
    """The bug's line as the student may hold it: fixed, as planted, then its mutants."""
    texts = [bug.fixed_line, bug.buggy_line]
    for m in mutants(bug.buggy_line):
        if m.strip() not in texts:
            texts.append(m.strip())
    return texts


@functools.lru_cache(maxsize=1)
def _bank_runs() -> Mapping[tuple[str, str], RunResult]:
    """Every candidate program of every bank bug, run once per process in ONE sandboxed
    interpreter (our own programs: about a second for the whole bank). A program that takes
    the interpreter down is rerun alone, with the ones it took with it."""
    unique = {(p.id, Lesson(p, b, ()).with_line(t)): p for p in problems() for b in p.bugs
              for t in _candidate_lines(b)}
    pairs = [(p, code) for (_, code), p in unique.items()]
    results = run_bank(pairs, LESSON_LIMITS)
    out = {}
    for (p, code), result in zip(pairs, results):
        if result.outcome is Outcome.CRASHED:
            result = run_bank([(p, code)], LESSON_LIMITS)[0]
        out[p.id, code] = result
    return out


@functools.lru_cache(maxsize=None)
def lesson(problem_id: str, bug_index: int) -> Lesson:
    """The lesson of a bank bug: its candidate programs with their hidden-test results."""
    problem = next(p for p in problems() if p.id == problem_id)
    bug = problem.bugs[bug_index]
    base = Lesson(problem, bug, ())
    runs = _bank_runs()
    texts = _candidate_lines(bug)
    edits = [Edit("fixed" if k == 0 else "buggy" if k == 1 else "wrong_edit", text, base.with_line(text),
                  runs[problem.id, base.with_line(text)]) for k, text in enumerate(texts)]
    wrong = [e for e in edits[2:] if not e.result.ok][:MAX_WRONG_EDITS]  # an equivalent rewrite is no wrong edit
    return Lesson(problem, bug, tuple(edits[:2] + wrong))


@functools.lru_cache(maxsize=512)
def run_free(problem_id: str, code: str) -> RunResult:
    """A program the student (or a hint) wrote itself: untrusted, one sandbox run, cached."""
    return next(p for p in problems() if p.id == problem_id).run(code)


def show(value: Any) -> str:
    """A sandbox value (JSON-plain) as a student would read it."""
    if isinstance(value, dict) and set(value) == {"__repr__"}:
        return str(value["__repr__"])
    return repr(value)


def call_text(problem: Problem, args: Sequence[Any]) -> str:
    return f"{problem.entry}({', '.join(repr(a) for a in args)})"


def failure_text(problem: Problem, result: RunResult) -> str:
    """``caesar('xyz'): expected 'abc', but it returned '{|}'`` for the first failing test."""
    if not result.tests or all(t.status == "not_run" for t in result.tests):
        return f"it does not run: {result.message or result.outcome.value}"
    t = result.failing[0]
    call = call_text(problem, t.args)
    if t.status == "error":
        return f"{call} raises {t.error}"
    if t.status == "not_run":
        return f"{call} does not finish: {result.message or result.outcome.value}"
    return f"{call}: expected {show(t.expected)}, but it returned {show(t.actual)}"


def replace_line(code: str, number: int, text: str) -> str | None:
    """``code`` with line ``number`` (1-based) replaced by ``text``, at that line's indent; None
    when there is no such line."""
    lines = code.splitlines()
    if not 1 <= number <= len(lines):
        return None
    old = lines[number - 1]
    lines[number - 1] = old[: len(old) - len(old.lstrip())] + text
    return "\n".join(lines) + "\n"


def numbered(code: str) -> str:
    return "\n".join(f"{k:>2} | {line}" for k, line in enumerate(code.splitlines(), 1))


# ---------------------------------------------------------------------- reading a hint


@functools.lru_cache(maxsize=4096)  # pure; the same hints and lines are normalized every step
def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@functools.lru_cache(maxsize=4096)  # pure; a lesson's few lines are searched for every step
def code_pattern(line: str) -> re.Pattern:
    """A line of code, found in prose with any spacing around its symbols, as a whole line:
    ``return a`` matches ``... return a.`` and ``` `return a` ```, not ``return a value``."""
    tokens = re.findall(r"\w+|[^\w\s]", line)
    body = ""
    for prev, tok in zip([None] + tokens, tokens):
        if prev is not None:
            body += r"\s+" if (prev[-1].isalnum() or prev[-1] == "_") and (tok[0].isalnum() or tok[0] == "_") else r"\s*"
        body += re.escape(tok)
    tail = r"(?=\s*(?:$|[`'\"\n;)\]]|[.,!?:](?:\s|$)))" if re.match(r"\w", tokens[-1][-1]) else ""
    return re.compile(r"(?<![\w.])" + body + tail)


@dataclass(frozen=True)
class HintCheck:
    """The env's rule reading of a hint (TutorBench's rubric items among them)."""

    names_line: bool = False  # "line 3", or quotes the current line of the bug
    names_misconception: bool = False  # words of the bug type's misconception
    wrong_line: bool = False  # names another line and not the bug's
    failing_case: bool = False  # names the failing test's call
    asks_guiding_question: bool = False  # a question of three words or more
    leak: str = ""  # "", "fixed_line" or "solution"
    isolation: str | None = None  # the sandbox that checked a solution in the hint, if one ran

    @property
    def leaked(self) -> bool:
        return bool(self.leak)

    @property
    def points(self) -> bool:
        """The hint points somewhere (a line, the misconception, the test or the fix)."""
        return self.names_line or self.names_misconception or self.failing_case or self.leaked

    def rubric(self) -> dict[str, bool]:
        return {"names_misconception": self.names_misconception, "no_answer_revealed": not self.leaked,
                "asks_guiding_question": self.asks_guiding_question}

    def as_info(self) -> dict[str, Any]:
        return {"names_line": self.names_line, "names_misconception": self.names_misconception,
                "wrong_line": self.wrong_line, "failing_case": self.failing_case,
                "asks_guiding_question": self.asks_guiding_question, "leaked": self.leaked, "leak": self.leak}


def extract_code(text: str, entry: str) -> str | None:
    """The program in a reply: a fenced code block, else everything from ``def <entry>(``."""
    for block in _CODE_BLOCK.findall(text):
        if re.search(rf"\bdef\s+{re.escape(entry)}\s*\(", block):
            return block.strip("\n") + "\n"
    m = re.search(rf"^[ \t]*def\s+{re.escape(entry)}\s*\(", text, re.M)
    if m is None:
        return None
    code = text[m.start():]
    return code.split("```")[0].rstrip() + "\n"


def check_hint(hint: str, ls: Lesson, current: str, failing_call: str) -> HintCheck:
    """Read a hint with the rule checks (see :class:`HintCheck`)."""
    flat = _norm(hint)
    low = flat.lower()
    named = {int(n) for n in _LINE_REF.findall(flat)}
    quoted = False
    cur = _norm(current)
    for m in code_pattern(cur).finditer(flat):
        inside_ticks = flat[max(m.start() - 1, 0):m.start()] == "`"
        quoted = quoted or len(cur) >= 8 or inside_ticks
    names_line = ls.line in named or quoted
    wrong_line = bool(named - {ls.line}) and not names_line
    concept = any(re.search(w, low) for w in CONCEPT_WORDS[ls.bug.bug_type])
    failing = _norm(failing_call).replace(" ", "") in flat.replace(" ", "")
    sentences = re.findall(r"[^.!?\n]*\?", re.sub(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`", " x ", flat))
    question = any(len(re.findall(r"[A-Za-z']+", s)) >= 3 for s in sentences)
    # the fixed line, outside any quote of the student's own line (which it may contain)
    rest = flat
    for line in {cur, _norm(ls.bug.buggy_line)}:
        rest = code_pattern(line).sub(" ", rest)
    leak = "fixed_line" if code_pattern(_norm(ls.bug.fixed_line)).search(rest) else ""
    isolation = None
    if not leak:
        code = extract_code(hint, ls.problem.entry)
        if code is not None:
            result = run_free(ls.problem.id, code)
            isolation = result.isolation
            leak = "solution" if result.ok else ""
    return HintCheck(names_line, concept, wrong_line, failing, question, leak, isolation)


# ---------------------------------------------------------------------- the student


@dataclass(frozen=True)
class Attempt:
    """What the student works from: the lesson, its current bug line, the hint and the turn's draw."""

    lesson: Lesson
    current: str  # the bug's line in the student's program now
    hint: str
    check: HintCheck
    failure: str  # how the current program fails, as the student saw it
    draw: float

    def options(self) -> tuple[Edit, ...]:
        """fix, keep, then the wrong edits the student does not already hold (the draw's order)."""
        ls = self.lesson
        keep = ls.edit(self.current)
        wrong = tuple(e for e in ls.edits if e.kind == "wrong_edit" and e.text != self.current)
        return (ls.edits[0], keep) + wrong


@dataclass(frozen=True)
class Move:
    """The student's attempt: the program it now holds and how it got there."""

    kind: str  # "fixed", "kept", "wrong_edit" or "rewrite" (a program of its own)
    text: str  # the bug's new line ("" for a rewrite)
    code: str
    p_fix: float  # how likely this student was to write the fix

    def says(self, line: int) -> str:
        if self.kind == "kept":
            return "I was not sure what to change, so I left my program as it is."
        if self.kind == "rewrite":
            return f"I rewrote my program:\n{numbered(self.code)}"
        return f"I changed line {line} to `{self.text}`."


def option_line(ls: Lesson, edit: Edit, keep: Edit) -> str:
    return "I leave my program as it is." if edit is keep else f"I change line {ls.line} to: {edit.text}"


def choose(attempt: Attempt, probs: Sequence[float]) -> Move:
    """The option the turn's draw lands on, options in the fixed order fix, keep, wrong edits."""
    options = attempt.options()
    p = np.asarray(probs, dtype=float)
    p = p / p.sum()
    k = min(int(np.searchsorted(np.cumsum(p), attempt.draw, side="right")), len(options) - 1)
    return _move(attempt, options[k], float(p[0]))


def _move(attempt: Attempt, edit: Edit, p_fix: float) -> Move:
    if edit.text == attempt.current:
        return Move("kept", edit.text, edit.code, p_fix)
    return Move("fixed" if edit.kind == "fixed" else "wrong_edit", edit.text, edit.code, p_fix)


def rule_probs(attempt: Attempt) -> list[float]:
    """The rule student's distribution over :meth:`Attempt.options`."""
    c = attempt.check
    p = BASE_FIX + LINE_BONUS * c.names_line + CONCEPT_BONUS * c.names_misconception \
        + CASE_BONUS * c.failing_case + QUESTION_BONUS * c.asks_guiding_question
    p = MIN_FIX if c.wrong_line else min(max(p, MIN_FIX), MAX_FIX)
    if c.leaked:
        p = max(p, LEAK_FIX)
    wrong = len(attempt.options()) - 2
    share = (WRONG_SHARE_POINTED if c.points else WRONG_SHARE_VAGUE) if wrong else 0.0
    rest = 1.0 - p
    return [p, rest * (1.0 - share)] + [rest * share / max(wrong, 1)] * wrong


STUDENT_SYSTEM = ("You are a student in an introductory Python course. Your program fails a test, and your tutor "
                  "gave you a hint. You change your program the way you understand the hint.")


def student_messages(attempt: Attempt, hint: str) -> tuple[Message, ...]:
    ls = attempt.lesson
    keep = ls.edit(attempt.current)
    program = ls.with_line(attempt.current)
    listed = "\n".join(sorted(option_line(ls, e, keep) for e in attempt.options()))
    user = (f"The exercise:\n{ls.problem.prompt}\nYour program:\n{numbered(program)}\n\n"
            f"It fails: {attempt.failure}.\n\nYour tutor's hint: {hint}\n\n"
            f"What do you do? Answer with one of these lines:\n{listed}")
    return (Message("system", STUDENT_SYSTEM), Message("user", user))


class Student(Role[Attempt, Move]):
    """Tries to fix its program from the hint (see the module docs, LLM simulator)."""

    key, name, source = "student", "Tutor student", Source.USER

    def rule(self, ctx: Attempt) -> Move:
        return choose(ctx, rule_probs(ctx))

    def prompt(self, ctx: Attempt) -> Questions[Move]:
        ls = ctx.lesson
        options = ctx.options()
        keep = options[1]
        lines = [option_line(ls, e, keep) for e in options]
        order = sorted(range(len(options)), key=lambda i: lines[i])  # shown and offered sorted: never fix-first
        choices = {lines[i]: i for i in order}

        def parse(text: str) -> "int | str | None":
            code = extract_code(text, ls.problem.entry)
            if code is not None:
                return next((i for i, e in enumerate(options) if _norm(e.code) == _norm(code)), code)
            flat = _norm(text)
            if re.search(r"\b(?:leave|left|keep|kept|as it is|no change|don't change|do not change)\b", flat, re.I):
                return 1
            m = re.search(r"\bline\s+(\d+)\s+to:?\s*`?([^`\n]+?)`?\s*\.?$", text.strip(), re.I | re.M)
            if m is not None:
                said = _norm(m.group(2))
                if int(m.group(1)) == ls.line:
                    hit = next((i for i, e in enumerate(options) if _norm(e.text) == said), None)
                    if hit is not None:
                        return hit
                return replace_line(ls.with_line(ctx.current), int(m.group(1)), said)
            for i in sorted(range(len(options)), key=lambda i: -len(options[i].text)):
                if i != 1 and code_pattern(_norm(options[i].text)).search(flat):
                    return i
            return None

        def combine(replies: Sequence[Reply]) -> Move:
            r = replies[0]
            if r.probs is not None:
                probs = [0.0] * len(options)
                for value, p in zip(r.values, r.probs):
                    probs[value] = p
                return choose(ctx, probs)
            if isinstance(r.value, str):
                return Move("rewrite", "", r.value, float("nan"))
            return _move(ctx, options[r.value], float(r.value == 0))

        prompt = Prompt(student_messages(ctx, ctx.hint), choices=choices, parse=parse, max_tokens=400,
                        calibration=student_messages(ctx, "N/A"))
        return Questions((prompt,), combine)

    def agreement(self, value: Move) -> float | None:
        return None if value.p_fix != value.p_fix else float(value.p_fix)

    def record(self, value: Move, ctx: Attempt) -> Feedback:
        return Feedback(self.source, text=value.says(ctx.lesson.line))


STUDENT = Student()
INSTRUCTIONS = ("You are a programming tutor. A student's Python program fails a test. Write a hint that helps the "
                "student find and fix the bug themselves: point them in the right direction, but do not give away "
                "the corrected code.")


# ---------------------------------------------------------------------- the env


@dataclass(frozen=True)
class TutorTask:
    """The hidden task of an episode, drawn from ``reset(seed=...)`` alone."""

    problem_id: str
    bug_index: int
    draws: tuple[float, ...]  # the uniform number each turn's attempt is taken against


class TutorEnv(FeedbackEnv):
    """Write a hint; the student's fix, run on the hidden tests, is the reward. See module docs."""

    roles = (STUDENT,)
    names = {"student": "Student", "assistant": "Tutor"}
    keep_rounds = HISTORY
    n_actions, n_features = len(HINTS), N_FEATURES

    def __init__(self, *, split: str = "train", max_turns: int = 1, leak_penalty: float = 1.0, **options: Any):
        super().__init__(**options)
        self.split = check_choice("split", split, SPLITS)
        self.max_turns = check_int("max_turns", max_turns, minimum=1)
        self.leak_penalty = check_number("leak_penalty", leak_penalty, low=0.0)
        self.pool = problems(None if self.split == "all" else self.split)

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> TutorTask:
        problem = self.pool[int(rng.integers(len(self.pool)))]
        bug = int(rng.integers(len(problem.bugs)))
        return TutorTask(problem.id, bug, tuple(float(u) for u in rng.random(self.max_turns)))

    def opening(self) -> None:
        self.lesson = lesson(self.task.problem_id, self.task.bug_index)
        self.current = self.lesson.bug.buggy_line
        self.fixed = self.leaked = self.last_wrong = False
        self.fixed_at = self.invalid = 0
        self.checks: list[HintCheck] = []
        edit = self.lesson.edit(self.current)
        self.pass_rate = edit.result.pass_rate
        self._step_info: dict[str, Any] = {"invalid_action": False, "isolation": edit.result.isolation}
        self.transcript.say("system", INSTRUCTIONS, to={"assistant"})
        self.transcript.begin_round()
        p = self.lesson.problem
        self.transcript.say("student", f"The exercise:\n{p.prompt}\nMy program:\n{numbered(edit.code)}\n\n"
                                       f"It fails: {self.failure()}. Can you give me a hint?")

    def respond(self, text: str) -> StepResult:
        ls = self.lesson
        before = self.lesson.edit(self.current)
        hint = text.strip()
        info: dict[str, Any] = {"invalid_action": not hint, "isolation": before.result.isolation}
        if not hint:
            self.invalid += 1
            result, move_kind = before.result, "none"
            reply = "I did not get a hint, so I left my program as it is."
            check = None
        else:
            check = check_hint(hint, ls, self.current, self.failing_call())
            self.checks.append(check)
            self.leaked = self.leaked or check.leaked
            move = self.sim.ask(STUDENT, Attempt(ls, self.current, hint, check, self.failure(),
                                                 self.task.draws[self.turn - 1])).value
            if move.kind == "rewrite":
                result = run_free(ls.problem.id, move.code)
            else:
                result = ls.edit(move.text).result
                self.current = move.text
            move_kind = move.kind
            self.last_wrong = move.kind == "wrong_edit"
            reply = move.says(ls.line)
            info.update(hint=check.as_info(), rubric=check.rubric())
        self.sim.ledger.add(Feedback(Source.EXECUTION, scalar=result.pass_rate, scale=(0.0, 1.0),
                                     text=f"{result.passed}/{result.total} hidden tests pass."))
        solved = result.ok
        self.pass_rate = result.pass_rate
        leaked = check is not None and check.leaked
        # (a rewrite that fails is not one of the lesson's programs: the student goes back to its own)
        info.update(leaked=leaked, attempt=move_kind, tests=result.summary(), isolation=result.isolation)
        done = solved or self.turn >= self.max_turns
        if solved:
            self.fixed, self.fixed_at = True, self.turn
            self.transcript.say("student", f"{reply} Now it passes every test. Thank you!")
        else:
            still = f"It still fails: {failure_text(ls.problem, result)}."
            more = "" if done else " Can you give me another hint?"
            self.transcript.say("student", f"{reply} {still}{more}")
            if not done:
                self.transcript.begin_round()
        self._step_info = info
        reward = float(solved) - self.leak_penalty * float(leaked)
        utility = float(solved and not self.leaked)
        truth = Truth(utility, best=1.0, success=solved and not self.leaked) if done else Truth(utility, success=False)
        return StepResult(reward, terminated=solved, truncated=done and not solved, truth=truth,
                          info={**info, **(self._outcomes() if done else {})})

    def candidate_replies(self) -> Sequence[str]:
        return hint_templates(self.lesson, self.current, self.failing_test())

    def features(self) -> np.ndarray:
        ls = self.lesson
        n_lines = len(ls.problem.reference.splitlines())
        f = np.zeros(N_FEATURES, dtype=np.float32)
        f[TOPICS.index(ls.problem.topic)] = 1.0
        f[len(TOPICS) + BUG_TYPES.index(ls.bug.bug_type)] = 1.0
        k = len(TOPICS) + len(BUG_TYPES)
        f[k:] = (ls.edit(self.current).result.pass_rate, ls.line / n_lines, min(self.turn / self.max_turns, 1.0),
                 float(self.last_wrong), float(self.leaked))
        return f

    def extra_info(self) -> Mapping[str, Any]:
        return self._step_info

    # ----------------------------------------------------------------- helpers

    def failing_test(self):
        """The first test the student's program fails (the first test once it passes them all)."""
        result = self.lesson.edit(self.current).result
        return (result.failing or result.tests)[0]

    def failing_call(self) -> str:
        return call_text(self.lesson.problem, self.failing_test().args)

    def failure(self) -> str:
        return failure_text(self.lesson.problem, self.lesson.edit(self.current).result)

    def _outcomes(self) -> dict[str, Any]:
        n = len(self.checks)

        def share(what: str) -> float:
            return sum(bool(getattr(c, what)) for c in self.checks) / n if n else 0.0

        no_reveal = sum(not c.leaked for c in self.checks) / n if n else 0.0
        items = (share("names_misconception"), no_reveal, share("asks_guiding_question"))
        return {
            "fixed": self.fixed, "leaked": self.leaked, "fixed_without_leak": self.fixed and not self.leaked,
            "fixed_at_turn": self.fixed_at, "final_pass_rate": float(self.pass_rate),
            "names_line": share("names_line"), "names_misconception": items[0], "no_answer_revealed": items[1],
            "asks_guiding_question": items[2], "rubric_score": float(np.mean(items)), "invalid_hints": self.invalid,
        }


def hint_templates(ls: Lesson, current: str, failing) -> tuple[str, ...]:
    """The discrete view's hints (see :data:`HINTS`), written for the student's program now."""
    p, bug = ls.problem, ls.bug
    lines = ls.with_line(current).splitlines()
    other = len(lines) if len(lines) != ls.line else 2
    call = call_text(p, failing.args)
    actual = f"raises {failing.error}" if failing.status == "error" else f"gives {show(failing.actual)}"
    concept = CONCEPT_PHRASE[bug.bug_type]
    question = QUESTION[bug.bug_type]
    return (
        "Something in your program is not quite right. Read it again carefully and try it on a few inputs.",
        f"Try {call} by hand: the answer should be {show(failing.expected)}, but your function {actual}.",
        f"Look closely at line {ls.line}: `{current}`.",
        f"Your program has {concept}.",
        f"Line {ls.line}, `{current}`, has {concept}.",
        f"Look at line {ls.line}, `{current}`. {question}",
        f"Look closely at line {other}: `{lines[other - 1].strip()}`.",
        f"Change line {ls.line} to `{bug.fixed_line}`.",
    )


# ---------------------------------------------------------------------- scripted policies


def play(hint: str):
    """Always the same hint template (by name, see :data:`HINTS`), as a policy factory for either view."""
    k = HINTS.index(hint)
    return scripted(lambda env: k)


PROBE_POLICIES = ("vague", "names_line", "guiding_question", "leaks_fix")


def hints_vs_leaks(variant: str, results: Mapping[str, Sequence[EpisodeResult]]) -> float:
    """The paper's direction: ``min(names-line minus vague true utility, guiding-question minus
    leaking reward)`` per episode: > 0 when naming the line helps and leaking does not pay."""

    def mean(policy: str, what: str) -> float:
        return float(np.mean([getattr(r, what) for r in results[policy]]))

    helps = mean("names_line", "true_utility") - mean("vague", "true_utility")
    no_leak = mean("guiding_question", "reward") - mean("leaks_fix", "reward")
    return min(helps, no_leak)


def fidelity_probe() -> Probe:
    return Probe(
        policies={name: play(name) for name in PROBE_POLICIES},
        variants={"default": {}, "three_turns": {"max_turns": 3}},
        direction=hints_vs_leaks,
        direction_doc=("min(names-line minus vague true utility, guiding-question minus leaking reward) per "
                       "episode (> 0: naming the line helps the student, leaking the fix does not pay)"),
        expected_sign={"default": 1, "three_turns": 1},
    )


__all__ = [
    "CONCEPT_WORDS", "HINTS", "STUDENT", "Attempt", "Edit", "HintCheck", "Lesson", "Move", "Student", "TutorEnv",
    "TutorTask", "check_hint", "code_pattern", "extract_code", "fidelity_probe", "hint_templates", "hints_vs_leaks",
    "lesson", "mutants", "play", "rule_probs",
]
