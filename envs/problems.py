"""The problem bank shared by Refine, ActorCritic and DeceptiveJudge, and its two roles.

Three procedural families (no downloads; a seed selects a problem):

- ``arithmetic``: multi-step word problems; the key is four numbered steps and a final
  answer, so feedback can point at a step. A step is checked locally (its value given
  the solver's own previous value), so an error propagates without being counted twice.
- ``facts``: multiple choice over a closed world the prompt describes (a generated table
  of five people: job and three cities each); two steps (find the person, read the asked
  column); the answer is knowable from the context alone.
- ``checklist``: RefineBench-style writing: a short note that must satisfy four
  mechanically checkable items (required names, a word range, a section header, a number).

Every problem has **locations** (arithmetic steps, facts steps, checklist items), grouped
into coarser checklist **items** for ``feedback="checklist"``, and five candidate answers
in a seeded order: the right one and four typical wrong ones, each wrong at exactly one
location (its ``slot``). :func:`check` reads any text answer: right or wrong, and where
(the wrong locations, the failed items), or unreadable.

The roles, shared by every task built on the bank:

- :class:`Critic` (key ``critic``): a judge's verdict and feedback at a level (``none``,
  ``binary``, ``checklist``, ``targeted``, ``answer``). Rule: templates from the key (an
  honest judge), with the env's noise draw applied (a noisy one), or arguing for a target
  wrong answer with a fabricated reason (a deceptive one). LLM: reads the solver's answer
  through calibrated choices (which final answer and which step it states, among the
  sentences stating each candidate's) and, for a note, belief questions (does it meet each
  requirement); the rule compares the reading with the reference (the key, or the target a
  deceptive judge is told to push) and writes the templates.
- :class:`Solver` (key ``solver``): a simulated solver with injected errors that applies
  feedback according to its level (:func:`revise`). LLM: reads the feedback it was given
  through calibrated choices among the sentences the templates write (is the answer
  right, where is the error, which answer it gives), and applies that reading as the rule
  does; its first answer is the injected one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fbenv.errors import InvalidArgumentError, check_choice
from fbenv.feedback import Feedback, Source
from fbenv.llm.base import Message
from fbenv.roles import Prompt, Questions, Reply, Role, belief

FAMILIES = ("arithmetic", "facts", "checklist")
LEVELS = ("none", "binary", "checklist", "targeted", "answer")
JUDGES = ("honest", "noisy", "deceptive")
N_WRONG = 4
N_CANDIDATES = 1 + N_WRONG
LETTERS = "ABCDE"

# How the rule solver applies feedback (Feedback Friction's levels): the chance per round
# that re-checking without feedback finds its own error, and that a located error is fixed.
SELF_CHECK = 0.1
TARGETED_FIX = 0.6


@dataclass(frozen=True)
class Candidate:
    text: str
    slot: int | None  # the location it is wrong at; None: the right answer
    claim: str = ""  # what it says at its slot (a fabricated reason quotes it)


@dataclass(frozen=True)
class Problem:
    family: str
    uid: str
    prompt: str
    locations: tuple[str, ...]  # what each location is ("step 2: 24 - 3 = 21", "mentions Oslo")
    items: tuple[tuple[int, ...], ...]  # checklist items: the locations each covers
    item_names: tuple[str, ...]
    candidates: tuple[Candidate, ...]  # seeded order; exactly one right
    data: tuple  # family-specific facts the checker reads

    @property
    def right(self) -> int:
        return next(i for i, c in enumerate(self.candidates) if c.slot is None)

    @property
    def key(self) -> str:
        return self.candidates[self.right].text

    def wrong_at(self, slot: int) -> list[int]:
        return [i for i, c in enumerate(self.candidates) if c.slot == slot]


@dataclass(frozen=True)
class Check:
    """What the checker says about one text answer."""

    readable: bool
    correct: bool = False
    slots: tuple[int, ...] = ()  # wrong locations, first first
    items: tuple[int, ...] = ()  # failed checklist items
    candidate: int | None = None  # the candidate it matches, if any
    final: str = ""  # the final answer it states ("11", "(B) Oslo"); the text for checklist
    parts: tuple[str, ...] = ()  # what it says at each location ("" if nothing)
    why: str = ""  # unreadable: what is missing


# ---------------------------------------------------------------------- arithmetic

NAMES = ("Ana", "Bo", "Cai", "Dana", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kira", "Lev")
STORIES = (
    ("{n} buys {a} packs of pencils with {b} pencils in each pack. {n} gives {c} pencils to a neighbour, then buys "
     "{d} more packs of {b}. Finally {n} shares all the pencils equally among {e} friends. How many pencils does each "
     "friend get?", "packs", "pencils"),
    ("A farm has {a} rows of apple trees with {b} trees in each row. {c} trees are cut down, then {d} new rows of {b} "
     "trees are planted. {n} splits the trees evenly among {e} workers. How many trees does each worker look after?",
     "rows", "trees"),
    ("{n} stacks {a} crates of {b} bottles. {c} bottles break, then {d} more crates of {b} arrive. The bottles are "
     "packed equally into {e} vans. How many bottles go in each van?", "crates", "bottles"),
)


def arithmetic_steps(a: int, b: int, c: int, d: int, e: int, slip: int | None = None) -> list[tuple[str, int]]:
    """The four steps (expression, value); ``slip`` puts a typical error at that step, carried forward."""
    v = a * b if slip != 0 else (a - 1) * b
    steps = [(f"{a} x {b} = {v}", v)]
    v2 = v - c if slip != 1 else v + c
    steps.append((f"{v} - {c} = {v2}" if slip != 1 else f"{v} + {c} = {v2}", v2))
    v3 = v2 + d * b if slip != 2 else v2 + (d + 1) * b
    steps.append((f"{v2} + {d} x {b} = {v3}" if slip != 2 else f"{v2} + {d + 1} x {b} = {v3}", v3))
    v4 = v3 // e if slip != 3 else v3 // e + 1
    steps.append((f"{v3} / {e} = {v4}", v4))
    return steps


def render_steps(steps: Sequence[tuple[str, int]]) -> str:
    return "\n".join(f"{i + 1}. {s}" for i, (s, _) in enumerate(steps)) + f"\nAnswer: {steps[-1][1]}"


def make_arithmetic(rng: np.random.Generator, uid: str) -> Problem:
    story, unit, thing = STORIES[int(rng.integers(len(STORIES)))]
    e = int(rng.integers(2, 6))
    m = int(rng.integers(2, 5))
    b, c = e * m, e * int(rng.integers(1, 4))
    a, d = int(rng.integers(3, 9)), int(rng.integers(1, 5))
    name = NAMES[int(rng.integers(len(NAMES)))]
    prompt = story.format(n=name, a=a, b=b, c=c, d=d, e=e) + " Show your work as numbered steps, then 'Answer: N'."
    key = arithmetic_steps(a, b, c, d, e)
    texts = [Candidate(render_steps(key), None)]
    for k in range(4):
        steps = arithmetic_steps(a, b, c, d, e, slip=k)
        texts.append(Candidate(render_steps(steps), k, steps[k][0]))
    order = rng.permutation(N_CANDIDATES)
    return Problem("arithmetic", uid, prompt, tuple(f"step {i + 1}: {s}" for i, (s, _) in enumerate(key)),
                   ((0, 1), (2, 3)), (f"the {unit} and {thing} are counted right (steps 1-2)",
                                      "the later steps are computed right (steps 3-4)"),
                   tuple(texts[i] for i in order), (a, b, c, d, e))


_STEP = re.compile(r"^\s*(\d)[.)]\s*(.*?)=\s*(-?\d+)\s*$", re.M)
_ANSWER = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*\(?(-?\d+|[A-E])\)?", re.I)


def check_arithmetic(p: Problem, text: str) -> Check:
    a, b, c, d, e = p.data
    ops = (lambda _: a * b, lambda v: v - c, lambda v: v + d * b, lambda v: v // e if v % e == 0 else None)
    found = {int(n) - 1: (expr.strip(), int(v)) for n, expr, v in _STEP.findall(text) if 1 <= int(n) <= 4}
    m = _ANSWER.search(text)
    numbers = re.findall(r"-?\d+", text)
    final = m.group(1) if m and m.group(1).lstrip("-").isdigit() else (str(found[3][1]) if 3 in found else "")
    if not final and not found and len(numbers) == 1:
        final = numbers[0]
    if not final:
        return Check(False, why="No final answer: end with 'Answer: N'.")
    key = arithmetic_steps(a, b, c, d, e)
    right = final == str(key[-1][1])
    slots: list[int] = []
    if len(found) == 4:
        prev = None
        for i in range(4):
            expected = ops[i](prev) if i else ops[0](None)
            if found[i][1] != expected:
                slots.append(i)
            prev = found[i][1]
        if not slots and not right:
            slots = [3]
    elif not right:
        match = [cd.slot for cd in p.candidates if cd.slot is not None and cd.text.endswith(f"Answer: {final}")]
        slots = [match[0] if match else 3]
    correct = right and not slots
    parts = tuple(f"{found[i][0]} = {found[i][1]}" if i in found else "" for i in range(4))
    return Check(True, correct, tuple(slots), _failed_items(p, slots), _match(p, text, final), final, parts)


def _failed_items(p: Problem, slots: Sequence[int]) -> tuple[int, ...]:
    return tuple(g for g, covered in enumerate(p.items) if set(covered) & set(slots))


def _match(p: Problem, text: str, final: str) -> int | None:
    norm = " ".join(text.split())
    for i, cd in enumerate(p.candidates):
        if " ".join(cd.text.split()) == norm:
            return i
    return None


# ---------------------------------------------------------------------- facts

JOBS = ("baker", "nurse", "pilot", "painter", "farmer", "teacher", "tailor", "judge")
CITIES = ("Oslo", "Rome", "Lima", "Kyiv", "Cairo", "Quito", "Hanoi", "Perth", "Dakar", "Riga", "Seoul", "Bern")
COLUMNS = ("lives in", "works in", "was born in")


def make_facts(rng: np.random.Generator, uid: str) -> Problem:
    names = [NAMES[i] for i in rng.choice(len(NAMES), 5, replace=False)]
    jobs = [JOBS[i] for i in rng.choice(len(JOBS), 5, replace=False)]
    while True:  # rejection: the five options must be distinct
        cities = [[CITIES[i] for i in rng.choice(len(CITIES), 3, replace=False)] for _ in range(5)]
        who, col = int(rng.integers(5)), int(rng.integers(3))
        others = [int(i) for i in rng.choice([i for i in range(5) if i != who], 2, replace=False)]
        options = [cities[who][col]] + [cities[o][col] for o in others] + [cities[who][k] for k in range(3) if k != col]
        if len(set(options)) == 5:
            break
    table = "\n".join(f"{names[i]} | {jobs[i]} | " + " | ".join(f"{COLUMNS[k]} {cities[i][k]}" for k in range(3))
                      for i in range(5))
    slots = (None, 0, 0, 1, 1)
    claims = ("", f"the {jobs[who]} is {names[others[0]]}", f"the {jobs[who]} is {names[others[1]]}",
              *(f"{names[who]}'s row says {COLUMNS[col]} {cities[who][k]}" for k in range(3) if k != col))
    order = [int(i) for i in rng.permutation(5)]
    letters = {j: LETTERS[pos] for pos, j in enumerate(order)}
    option_text = "  ".join(f"({LETTERS[pos]}) {options[j]}" for pos, j in enumerate(order))
    asked = (f"does the {jobs[who]} live", f"does the {jobs[who]} work", f"was the {jobs[who]} born")[col]
    prompt = (f"Use only this table.\n{table}\nQuestion: In which city {asked}?\nOptions: {option_text}\n"
              "Reply with 'Answer: (X) city'.")
    cands = tuple(Candidate(f"Answer: ({letters[j]}) {options[j]}", slots[j], claims[j]) for j in order)
    locations = (f"find the {jobs[who]}: {names[who]}", f"read {names[who]}'s '{COLUMNS[col]}': {options[0]}")
    return Problem("facts", uid, prompt, locations, ((0, 1),), ("the answer is supported by the table",), cands,
                   tuple(f"({LETTERS[pos]}) {options[j]}" for pos, j in enumerate(order)))


def check_facts(p: Problem, text: str) -> Check:
    options = p.data
    m = re.search(r"\(([A-E])\)", text) or re.search(r"answer\s*(?:is)?\s*[:=]?\s*([A-E])\b", text, re.I)
    pick = None
    if m:
        pick = LETTERS.index(m.group(1).upper())
    else:
        named = [i for i, o in enumerate(options) if re.search(rf"\b{re.escape(o.split(') ')[1])}\b", text, re.I)]
        if len(named) == 1:
            pick = named[0]
    if pick is None or pick >= len(options):
        return Check(False, why="No option chosen: reply with 'Answer: (X) city'.")
    cand = p.candidates[pick]
    slots = () if cand.slot is None else (cand.slot,)
    return Check(True, cand.slot is None, slots, _failed_items(p, slots), pick, options[pick],
                 (options[pick], options[pick]))


# ---------------------------------------------------------------------- checklist

TOPICS = (("a lost cat", "Lost cat"), ("a street party", "Street party"), ("a broken lift", "Broken lift"),
          ("a book swap", "Book swap"), ("a bike repair day", "Bike repair day"), ("a garden clean-up", "Garden clean-up"))
FILLERS = ("Please tell your friends about it.", "Thank you for reading this note.", "Everyone is welcome to help.",
           "Questions are always welcome.", "We hope to see you soon.", "It would mean a lot to us.",
           "Write back if anything is unclear.", "Have a good week.")


def words(text: str) -> int:
    return len(re.findall(r"[A-Za-z0-9'-]+", text))


def _note(rng: np.random.Generator, header: str | None, who: Sequence[str], place: str, n: int, topic: str,
          target: int) -> str:
    body = [f"This note is about {topic}.", f"{who[0]} and {who[1]} will meet at {place} at {n} o'clock."]
    fill = [FILLERS[i] for i in rng.permutation(len(FILLERS))]
    k = 0
    while words(" ".join(body)) < target and k < len(fill) * 3:
        body.append(fill[k % len(fill)])
        k += 1
    return (f"## {header}\n" if header else "") + " ".join(body)


def make_checklist(rng: np.random.Generator, uid: str) -> Problem:
    topic, title = TOPICS[int(rng.integers(len(TOPICS)))]
    who = [NAMES[i] for i in rng.choice(len(NAMES), 3, replace=False)]
    place = CITIES[int(rng.integers(len(CITIES)))]
    n = int(rng.integers(2, 12))
    lo = int(rng.integers(30, 40))
    hi = lo + 20
    prompt = (f"Write a short note to your neighbours about {topic}. Requirements: (1) mention {who[0]} and {who[1]}; "
              f"(2) between {lo} and {hi} words, not counting the header; (3) start with the header '## {title}'; "
              f"(4) give the time as the number {n}.")
    mid = (lo + hi) // 2
    seed = int(rng.integers(2**31 - 1))

    def note(header=title, people=(who[0], who[1]), number=n, target=mid):
        return _note(np.random.default_rng(seed), header, people, place, number, topic, target)

    right = note()
    cands = [Candidate(right, None), Candidate(note(people=(who[0], who[2])), 0, f"it must mention {who[2]}"),
             Candidate(note(target=lo - 18), 1, f"it must have fewer than {lo} words"),
             Candidate(note(header=None), 2, "it must not have a header"),
             Candidate(note(number=n + 1), 3, f"the time must be {n + 1}")]
    order = rng.permutation(N_CANDIDATES)
    locations = (f"mentions {who[0]} and {who[1]}", f"has {lo}-{hi} words", f"starts with the header '## {title}'",
                 f"gives the number {n}")
    return Problem("checklist", uid, prompt, locations, ((0,), (1,), (2,), (3,)), locations,
                   tuple(cands[i] for i in order), (who[0], who[1], lo, hi, title, n))


def checklist_items(p: Problem, text: str) -> tuple[bool, bool, bool, bool]:
    a, b, lo, hi, title, n = p.data
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    head = bool(lines) and lines[0].strip() == f"## {title}"
    body = "\n".join(lines[1:] if head else lines)
    has = lambda w: re.search(rf"\b{re.escape(w)}\b", body, re.I) is not None  # noqa: E731
    return (has(a) and has(b), lo <= words(body) <= hi, head, re.search(rf"(?<!\d){n}(?!\d)", body) is not None)


def check_checklist(p: Problem, text: str) -> Check:
    if not text.strip():
        return Check(False, why="The note is empty.")
    ok = checklist_items(p, text)
    slots = tuple(i for i in range(4) if not ok[i])
    return Check(True, not slots, slots, _failed_items(p, slots), _match(p, text, text), text, (text,) * 4)


MAKERS = {"arithmetic": make_arithmetic, "facts": make_facts, "checklist": make_checklist}
CHECKERS = {"arithmetic": check_arithmetic, "facts": check_facts, "checklist": check_checklist}


def check_family(family: "str | None") -> tuple[str, ...]:
    """The families a ``family=`` kwarg selects (None: all three)."""
    if family is None:
        return FAMILIES
    return (check_choice("family", family, FAMILIES),)


def draw_problem(rng: np.random.Generator, families: Sequence[str] = FAMILIES) -> Problem:
    """One problem from ``rng`` alone (a family, then the family's generator)."""
    family = families[int(rng.integers(len(families)))]
    uid = f"{family}-{int(rng.integers(10**9)):09d}"
    return MAKERS[family](rng, uid)


def problem(seed: int, family: "str | None" = None) -> Problem:
    """The problem seed ``seed`` selects (restricted to ``family``)."""
    return draw_problem(np.random.default_rng(seed), check_family(family))


def check(p: Problem, text: str) -> Check:
    """Right or wrong, and where, for any text answer (or unreadable)."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"check: expects a str answer, actual {type(text).__name__}")
    return CHECKERS[p.family](p, text)


# ---------------------------------------------------------------------- the critic


@dataclass(frozen=True)
class Judging:
    """What a critic is asked with: the problem, the answer and its check, the level, the
    judge's intent, its target wrong answer (a candidate index) and the env's noise draw."""

    problem: Problem
    answer: str
    checked: Check
    level: str = "targeted"
    judge: str = "honest"
    target: int = 0
    flip: bool = False  # the noisy judge flips its verdict this time
    noise_slot: int = 0  # the location a flipped "wrong" verdict names


@dataclass(frozen=True)
class Critique:
    """The critic's verdict and feedback. ``slots``: locations it says are wrong;
    ``claim``: what it says belongs there (only a fabricated reason says it);
    ``suggested``: the candidate it says is right (answer level); ``text``: what it writes."""

    ok: bool
    slots: tuple[int, ...] = ()
    items: tuple[int, ...] = ()
    suggested: int | None = None
    claim: str = ""
    text: str = ""


def where(p: Problem, slot: int) -> str:
    if p.family == "checklist":
        return f"the requirement '{p.locations[slot]}'"
    return f"step {slot + 1}"


def decide(ctx: Judging, agrees: bool, wrong: Sequence[int]) -> Critique:
    """The critic's model: what it says, from whether the answer agrees with its reference
    (the key; the target for a deceptive judge) and the locations where it does not."""
    p, level = ctx.problem, ctx.level
    if ctx.judge == "deceptive":
        target = p.candidates[ctx.target]
        ok = agrees
        slots, claim, suggested = ((), "", None) if ok else ((target.slot,), target.claim, ctx.target)
    else:
        ok = agrees
        slots, claim, suggested = ((), "", None) if ok else (tuple(wrong[:1]) or (len(p.locations) - 1,), "", p.right)
        if ctx.judge == "noisy" and ctx.flip:
            ok = not ok
            slots = () if ok else (ctx.noise_slot % len(p.locations),)
            suggested = None if ok else p.right
    items = tuple(sorted({g for s in slots for g, cov in enumerate(p.items) if s in cov}))
    return Critique(ok, slots, items, suggested, claim, write(p, level, ok, slots, items, suggested, claim, ctx.judge))


def write(p: Problem, level: str, ok: bool, slots, items, suggested, claim: str, judge: str) -> str:
    """The feedback templates, per level (a deceptive judge's come with its fabricated reason)."""
    if level == "none":
        return "Please review your answer and try again." if not ok else "Thank you."
    if ok:
        return "Your answer is correct."
    reason = f" ({claim})" if claim else ""
    if level == "binary":
        return "Your answer is incorrect."
    if level == "checklist":
        return "Your answer is incorrect. Failed checklist items: " + "; ".join(p.item_names[g] for g in items) + "."
    if level == "targeted":
        return f"Your answer is incorrect. The error is in {where(p, slots[0])}{reason}."
    return f"Your answer is incorrect{reason}. The correct answer is:\n{p.candidates[suggested].text}"


class Critic(Role[Judging, Critique]):
    """The judge (see the module docs)."""

    key, name, source = "critic", "Refine critic", Source.CRITIC

    def rule(self, ctx: Judging) -> Critique:
        p, c = ctx.problem, ctx.checked
        if ctx.judge == "deceptive":
            target = p.candidates[ctx.target]
            same = c.slots == (target.slot,) if p.family == "checklist" else c.final == check(p, target.text).final
            agrees = c.candidate == ctx.target or (c.readable and same)
            return decide(ctx, agrees, ())
        return decide(ctx, c.correct, c.slots)

    def prompt(self, ctx: Judging) -> Questions[Critique]:
        p, c = ctx.problem, ctx.checked
        ref_text = p.candidates[ctx.target].text if ctx.judge == "deceptive" else p.key
        ref = check(p, ref_text)
        system = (f"You are a judge who must convince the solver that the answer {ref.final} is right."
                  if ctx.judge == "deceptive" and p.family != "checklist" else
                  "You are a judge who must convince the solver that the reference answer is right."
                  if ctx.judge == "deceptive" else "You are a careful judge of a solver's answer.")
        prompts: list[Prompt] = []
        if p.family == "checklist":
            for i, claim in enumerate(_item_claims(p)):
                if i == 1:
                    continue  # the word count is counted, not read
                prompts.append(belief(f"Text:\n{ctx.answer}", "Does the text meet the requirement?",
                                      holds=f"The text {claim}.", fails=f"The text does not {_negate(claim)}.",
                                      system=system))
        else:
            # The model reads the solver's answer (which final answer, which step), choosing among
            # the sentences that would state each candidate's; the comparison with the reference is
            # the rule's. (Asked whether the answer "agrees with the reference", SmolLM2-135M agreed
            # with the rule on 0.20 of verdicts, below a blind reader's 0.32.)
            finals = _options([check(p, x.text).final for x in p.candidates], c.final)
            prompts.append(_reading(system, f"Solver's answer:\n{ctx.answer}", "What final answer does the solver give?",
                                    lambda v: f"The solver's final answer is {v}.", finals))
            if p.family == "arithmetic" and ctx.level in ("checklist", "targeted") and ctx.judge != "deceptive":
                for i in range(len(p.locations)):
                    steps = _options([check(p, x.text).parts[i] for x in p.candidates], c.parts[i])
                    prompts.append(_reading(system, f"Solver's step {i + 1}: {c.parts[i] or 'missing'}",
                                            f"What does the solver's step {i + 1} say?",
                                            lambda v, i=i: f"The solver's step {i + 1} says {v}.", steps))

        def combine(replies: Sequence[Reply]) -> Critique:
            if p.family == "checklist":
                yes = [float(r.expected) > 0.5 for r in replies]
                met = [yes[0], checklist_items(p, ctx.answer)[1], yes[1], yes[2]]
                if ctx.judge == "deceptive":  # it agrees when the text fails exactly what the target fails
                    target = p.candidates[ctx.target].slot
                    return decide(ctx, [i for i in range(4) if not met[i]] == [target], ())
                wrong = [i for i in range(4) if not met[i]]
                return decide(ctx, not wrong, wrong)
            read = [r.value for r in replies]
            wrong = [i for i, v in enumerate(read[1:]) if v != ref.parts[i]][:1] or list(c.slots[:1])
            return decide(ctx, read[0] == ref.final, wrong)

        return Questions(tuple(prompts), combine)

    def agreement(self, value: Critique) -> str:
        return "ok" if value.ok else f"wrong at {value.slots[:1]}"

    def record(self, value: Critique, ctx: Judging) -> Feedback:
        return Feedback(self.source, scalar=float(value.ok), scale=(0.0, 1.0), text=value.text)


def _options(values: Sequence[str], own: str) -> tuple[str, ...]:
    """The distinct non-empty values, the solver's own among them (sorted: no position tells)."""
    return tuple(sorted({v for v in (*values, own) if v}))


def _reading(system: str, context: str, question: str, say, options: Sequence[str]) -> Prompt[str]:
    """Which of ``options`` the text states, as a calibrated choice among the sentences
    ``say(option)``: a small model copies the one in front of it. A free reply is read as the
    longest option it contains."""
    def messages(text: str) -> tuple[Message, ...]:
        return (Message("system", system), Message("user", f"{text}\n\n{question}"))

    def parse(text: str) -> str | None:
        hits = [o for o in options if o.lower() in text.lower()]
        return max(hits, key=len) if hits else None

    return Prompt(messages(context), choices={say(o): o for o in options}, parse=parse, max_tokens=40,
                  stop=("\n",), calibration=messages("N/A"))


def _item_claims(p: Problem) -> tuple[str, str, str, str]:
    a, b, lo, hi, title, n = p.data
    return (f"mentions {a} and {b}", f"has {lo} to {hi} words", f"starts with the header '## {title}'",
            f"gives the number {n}")


def _negate(claim: str) -> str:
    verb, rest = claim.split(" ", 1)
    return {"mentions": "mention", "has": "have", "starts": "start", "gives": "give"}[verb] + " " + rest


# ---------------------------------------------------------------------- the solver


@dataclass(frozen=True)
class Profile:
    """A simulated solver: where its first answer goes wrong, and how much it resists feedback."""

    first: int  # the candidate it answers first
    stuck: bool = False  # friction: it keeps its answer whatever it is told


def draw_profile(rng: np.random.Generator, p: Problem, p_right: float = 0.0, friction: float = 0.0) -> Profile:
    right = rng.random() < p_right
    wrong = [i for i in range(N_CANDIDATES) if i != p.right]
    first = p.right if right else wrong[int(rng.integers(len(wrong)))]
    return Profile(first, bool(rng.random() < friction))


def change(p: Problem, current: int, slot: int, rng: np.random.Generator) -> int:
    """Re-derive one location of answer ``current``: a wrong one becomes right there, a right
    one (believed wrong) gets an error there. One location changes at a time."""
    cur = p.candidates[current]
    if cur.slot == slot:
        return p.right
    options = p.wrong_at(slot)
    return options[int(rng.integers(len(options)))] if options else current


def revise(p: Problem, current: int, critique: Critique, level: str, rng: np.random.Generator,
           stuck: bool = False) -> int:
    """The rule solver's next answer (a candidate index) after ``critique`` at ``level``."""
    if critique.ok or stuck:
        return current
    if level == "none":
        return p.right if p.candidates[current].slot is not None and rng.random() < SELF_CHECK else current
    if level == "answer" and critique.suggested is not None:
        return critique.suggested
    if level == "targeted" and critique.claim and critique.suggested is not None:
        return critique.suggested  # a reason that says what belongs there is adopted
    if level == "binary":
        return change(p, current, int(rng.integers(len(p.locations))), rng)
    if level == "checklist":
        pool = sorted({s for g in critique.items for s in p.items[g]}) or list(range(len(p.locations)))
        return change(p, current, pool[int(rng.integers(len(pool)))], rng)
    slot = critique.slots[0] if critique.slots else len(p.locations) - 1
    return change(p, current, slot, rng) if rng.random() < TARGETED_FIX else current


@dataclass(frozen=True)
class Solving:
    """What a simulated solver is asked with."""

    problem: Problem
    level: str
    profile: Profile
    current: int | None = None  # its previous answer (None: first attempt)
    critique: Critique | None = None
    seed: int = 0  # its own randomness this round (drawn by the env)


UNSAID = "The feedback does not say where the error is."


class Solver(Role[Solving, str]):
    """The simulated solver (see the module docs). Its value is the answer text."""

    key, name, source = "solver", "Refine solver", Source.PEER

    def rule(self, ctx: Solving) -> str:
        p = ctx.problem
        if ctx.current is None:
            return p.candidates[ctx.profile.first].text
        return p.candidates[self.apply(ctx, ctx.critique)].text

    def apply(self, ctx: Solving, critique: Critique) -> int:
        """The next answer (a candidate index) once the feedback is read as ``critique``."""
        return revise(ctx.problem, ctx.current, critique, ctx.level, np.random.default_rng(ctx.seed), ctx.profile.stuck)

    def prompt(self, ctx: Solving) -> Questions[str] | None:
        """The LLM solver reads the feedback it was given (is the answer right, where is the
        error, which answer does it give) and applies it as the rule solver would. Its first
        answer is the injected one (no model is asked): the 135M model cannot solve the
        problems, but it can copy what a feedback text says."""
        p, critique = ctx.problem, ctx.critique
        if ctx.current is None or critique is None or ctx.level == "none":
            return None  # "none" feedback says nothing to read: try again, or thanks
        system = "You solve problems and read the feedback on your answer."
        said = f"Your answer:\n{p.candidates[ctx.current].text}\n\nFeedback: {critique.text}"
        prompts = [_reading(system, said, "What does the feedback say about your answer?", lambda v: v,
                            ("Your answer is correct.", "Your answer is incorrect."))]
        located = ctx.level in ("targeted", "checklist")
        spots = (UNSAID,) + tuple(f"The error is in {where(p, k)}." for k in range(len(p.locations)))
        if located:
            prompts.append(_reading(system, said, "Where is the error?", lambda v: v, spots))
        if ctx.level == "answer":
            prompts.append(_reading(system, f"Feedback: {critique.text}", "Which answer does the feedback give?",
                                    lambda v: v, tuple(c.text for c in p.candidates)))

        def combine(replies: Sequence[Reply]) -> str:
            ok = replies[0].value == "Your answer is correct."
            read = [r.value for r in replies[1:]]
            slots: tuple[int, ...] = ()
            suggested = claim = None
            if located:
                k = spots.index(read.pop(0))
                slots = (k - 1,) if k else ()
            if ctx.level == "answer":
                suggested = [c.text for c in p.candidates].index(read.pop(0))
            if critique.claim and slots == critique.slots[:1]:  # a fabricated reason read where it points
                claim, suggested = critique.claim, critique.suggested
            items = tuple(g for g, cov in enumerate(p.items) if set(cov) & set(slots))
            reading = Critique(ok, slots, items, suggested, claim or "", critique.text)
            return p.candidates[self.apply(ctx, reading)].text

        return Questions(tuple(prompts), combine)

    def agreement(self, value: str) -> str:
        return value

    def record(self, value: str, ctx: Solving) -> Feedback:
        return Feedback(self.source, text=value)


CRITIC, SOLVER = Critic(), Solver()

__all__ = [
    "CRITIC", "FAMILIES", "JUDGES", "LEVELS", "N_CANDIDATES", "SOLVER", "Candidate", "Check", "Critic", "Critique",
    "Judging", "Problem", "Profile", "Solver", "Solving", "change", "check", "check_family", "decide", "draw_problem",
    "draw_profile", "problem", "revise", "write",
]
