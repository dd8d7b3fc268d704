"""A shipped bank of small Python problems with hidden tests and typical buggy programs.

Shared data of the code tasks (CodeFeedback, Tutor): not a task itself. Each
:class:`Problem` has a function signature, a docstring-style statement, a reference
solution, hidden tests whose expected values come from running the reference, 2-3
:class:`Bug` records (a buggy program that differs from the reference in ONE line, the bug
type, that line's number, the buggy and the correct line, and a short description of the
fix) and a ``split``: "train" or "test" (held out; every fourth problem of the bank).

Problems are generated from families (string, list, arithmetic and small-algorithm tasks),
several of them procedurally varied by a parameter baked into the statement and the code
(the shift of a Caesar cipher, the divisor of a sum of multiples, ...). The hidden inputs are
drawn once from a fixed-seed generator per problem, so the bank is the same on every
machine and in every process; episodes pick problems with their own ``np_random``.

Usage::

    from fbenv.envs.code_problems import problems, get
    p = get("caesar/13")
    result = p.run(agent_code)           # fbenv.sandbox.RunResult over the hidden tests
    bug = p.bugs[0]                      # bug.code fails at least one hidden test
    results = run_bank(train)            # many programs, one sandboxed interpreter

Every reference passes its hidden tests and every buggy program fails at least one, in
the sandbox (tests/envs/test_code_problems.py checks the whole bank).
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fbenv.errors import UnknownNameError, check_choice
from fbenv.sandbox import Limits, Program, RunResult, TestCase, run_many, run_tests

__all__ = ["BUG_TYPES", "SPLITS", "TOPICS", "Bug", "Problem", "get", "problems", "run_bank"]

SPLITS = ("train", "test")
TOPICS = ("string", "list", "arithmetic", "algorithm")
BUG_TYPES = (
    "off_by_one",  # a range bound or index one too far or too short
    "wrong_comparison",  # <, <=, >, >=, == or != swapped
    "missed_edge_case",  # empty input, negatives, upper case, wrap-around ... not handled
    "wrong_initial_value",  # an accumulator or best-so-far starts wrong
    "wrong_update",  # the loop updates the wrong thing, or forgets to
    "wrong_operator",  # //, -, or a logical operator where another belongs
    "wrong_return",  # returns the wrong variable or value
)


@dataclass(frozen=True)
class Bug:
    """A typical mistake: ``code`` is the reference with line ``line`` replaced."""

    code: str
    bug_type: str
    line: int  # 1-based, the same line number in ``code`` and in the reference
    buggy_line: str  # the line as written in ``code`` (stripped)
    fixed_line: str  # the reference's line (stripped): the fix, verbatim
    fix: str  # the fix in words, for expert feedback and hints


@dataclass(frozen=True)
class Problem:
    """One exercise. ``tests`` are hidden; ``examples`` are the first two, fit to show."""

    id: str  # "family/parameter", e.g. "caesar/13"
    family: str
    topic: str
    entry: str  # the function the tests call
    signature: str  # "def caesar(s):"
    statement: str  # what the function must do, in words
    reference: str  # a correct program
    tests: tuple[TestCase, ...]
    bugs: tuple[Bug, ...]
    split: str

    @property
    def examples(self) -> tuple[TestCase, ...]:
        return self.tests[:2]

    @property
    def prompt(self) -> str:
        """The statement as a programmer would be given it: signature, docstring, examples."""
        shown = "\n".join(f"    >>> {self.entry}({', '.join(map(repr, t.args))})\n    {t.expected!r}"
                          for t in self.examples)
        return f'{self.signature}\n    """{self.statement}\n\n{shown}\n    """\n'

    def program(self, code: str | None = None) -> Program:
        """A sandbox Program of ``code`` (default: the reference) on the hidden tests."""
        return Program(self.reference if code is None else code, self.entry, self.tests)

    def run(self, code: str, limits: Limits | None = None, isolation: str = "auto") -> RunResult:
        """Run ``code`` on the hidden tests in the sandbox (one interpreter)."""
        return run_tests(code, self.entry, self.tests, limits, isolation)


def run_bank(programs: Sequence[tuple[Problem, str]], limits: Limits | None = None,
             isolation: str = "auto") -> list[RunResult]:
    """Run trusted (problem, code) pairs in ONE sandboxed interpreter (see sandbox.run_many)."""
    batch = [p.program(code) for p, code in programs]
    limits = limits or Limits(cpu_s=30, wall_s=60.0, test_s=2.0)
    return run_many(batch, limits, isolation)


# ---------------------------------------------------------------- families

# a family: (name, topic, entry, statement, reference template, bugs, inputs, params)
# where bugs are (old line text, new line text, bug type, fix) applied to the formatted
# reference, and inputs(rng, param) lists the hidden argument tuples (edge cases first
# after two plain examples).

BugSpec = tuple[str, str, str, str]


@dataclass(frozen=True)
class _Family:
    name: str
    topic: str
    entry: str
    statement: str
    reference: str
    bugs: tuple[BugSpec, ...]
    inputs: Callable[[random.Random, dict[str, Any]], list[tuple[Any, ...]]]
    params: tuple[dict[str, Any], ...] = ({},)
    key: str = ""  # the parameter that names a variant in the id

    def ident(self, param: dict[str, Any]) -> str:
        return f"{self.name}/{param[self.key]}" if self.key else self.name


def _ints(rng: random.Random, n: int, lo: int = -20, hi: int = 20) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def _words(rng: random.Random, n: int) -> list[str]:
    pool = ["apple", "Bee", "cat", "delta", "echo", "fig", "Grape", "hat", "ice", "jolly", "kiwi", "Lemon"]
    return [rng.choice(pool) for _ in range(n)]


_FAMILIES: tuple[_Family, ...] = (
    _Family(
        "sum_multiples", "arithmetic", "sum_multiples",
        "Return the sum of the integers i with 1 <= i < n that are divisible by {k}.",
        "def sum_multiples(n):\n"
        "    total = 0\n"
        "    for i in range(1, n):\n"
        "        if i % {k} == 0:\n"
        "            total += i\n"
        "    return total\n",
        (("for i in range(1, n):", "for i in range(1, n + 1):", "off_by_one",
          "the range must stop before n: use range(1, n), n itself is excluded"),
         ("if i % {k} == 0:", "if i % {k} != 0:", "wrong_comparison",
          "keep the numbers divisible by {k}: the test is i % {k} == 0"),
         ("total += i", "total += 1", "wrong_update", "add the number itself (total += i), not 1")),
        lambda rng, p: [(10,), (20,), (0,), (1,), (p["k"],), (p["k"] + 1,), (3 * p["k"],)]
        + [(rng.randint(2, 200),) for _ in range(4)],
        ({"k": 3}, {"k": 5}, {"k": 7}), "k",
    ),
    _Family(
        "count_greater", "list", "count_greater",
        "Return how many numbers in the list nums are strictly greater than {t}.",
        "def count_greater(nums):\n"
        "    count = 0\n"
        "    for x in nums:\n"
        "        if x > {t}:\n"
        "            count += 1\n"
        "    return count\n",
        (("if x > {t}:", "if x >= {t}:", "wrong_comparison",
          "strictly greater: use x > {t}, a number equal to {t} does not count"),
         ("count = 0", "count = 1", "wrong_initial_value", "start counting from 0")),
        lambda rng, p: [([p["t"] + 1, p["t"] - 1, p["t"] + 5],), ([p["t"] - 3],), ([],), ([p["t"]],),
                        ([p["t"], p["t"] + 1, p["t"]],)] + [(_ints(rng, 6, p["t"] - 10, p["t"] + 10),)
                                                            for _ in range(4)],
        ({"t": 0}, {"t": 10}), "t",
    ),
    _Family(
        "extreme", "list", "extreme",
        "Return the {word} number in the list nums, or None if the list is empty.",
        "def extreme(nums):\n"
        "    if not nums:\n"
        "        return None\n"
        "    best = nums[0]\n"
        "    for x in nums[1:]:\n"
        "        if x {op} best:\n"
        "            best = x\n"
        "    return best\n",
        (("if not nums:", "if nums is None:", "missed_edge_case",
          "an empty list must return None: test `if not nums:` before reading nums[0]"),
         ("best = nums[0]", "best = 0", "wrong_initial_value",
          "start from the first element (best = nums[0]), not 0, which may not be in the list"),
         ("if x {op} best:", "if x {bad} best:", "wrong_comparison",
          "keep x when it is {word}: compare with x {op} best")),
        lambda rng, p: [([3, 9, 4],), ([-2, 5, 1],), ([],), ([-5, -3, -9],), ([4, 8, 1],), ([7],)]
        + [(_ints(rng, 5, 1, 30),) for _ in range(3)],
        ({"word": "largest", "op": ">", "bad": "<"}, {"word": "smallest", "op": "<", "bad": ">"}), "word",
    ),
    _Family(
        "reverse_words", "string", "reverse_words",
        "Return the words of s (separated by any whitespace) in reverse order, joined by {sep!r}.",
        "def reverse_words(s):\n"
        "    words = s.split()\n"
        "    out = []\n"
        "    for i in range(len(words) - 1, -1, -1):\n"
        "        out.append(words[i])\n"
        "    return {sep!r}.join(out)\n",
        (("for i in range(len(words) - 1, -1, -1):", "for i in range(len(words) - 1, 0, -1):", "off_by_one",
          "the loop must reach index 0, the first word: stop the range at -1"),
         ("words = s.split()", "words = s.split(' ')", "missed_edge_case",
          "split on any whitespace with s.split(), so repeated spaces make no empty words")),
        lambda rng, p: [("hello big world",), ("one",), ("",), ("a  b   c",), ("  lead and trail  ",)]
        + [(" ".join(_words(rng, rng.randint(2, 5))),) for _ in range(3)],
        ({"sep": " "}, {"sep": "-"}), "sep",
    ),
    _Family(
        "palindrome", "string", "is_palindrome",
        "Return True if s reads the same backwards, ignoring case and every character that is "
        "not a letter or a digit.",
        "def is_palindrome(s):\n"
        "    chars = [c.lower() for c in s if c.isalnum()]\n"
        "    i, j = 0, len(chars) - 1\n"
        "    while i < j:\n"
        "        if chars[i] != chars[j]:\n"
        "            return False\n"
        "        i += 1\n"
        "        j -= 1\n"
        "    return True\n",
        (("chars = [c.lower() for c in s if c.isalnum()]", "chars = [c for c in s if c.isalnum()]",
          "missed_edge_case", "ignore case: lower-case every character (c.lower())"),
         ("while i < j:", "while i < j - 1:", "off_by_one",
          "compare until the two ends meet: loop while i < j")),
        lambda rng, p: [("racecar",), ("hello",), ("",), ("Aba",), ("ab",), ("A man, a plan, a canal: Panama",),
                        ("No lemon, no melon",), ("abca",)],
    ),
    _Family(
        "count_vowels", "string", "count_vowels",
        "Return how many characters of s are vowels ({v}), upper or lower case.",
        "def count_vowels(s):\n"
        "    count = 0\n"
        "    for ch in s.lower():\n"
        "        if ch in {v!r}:\n"
        "            count += 1\n"
        "    return count\n",
        (("for ch in s.lower():", "for ch in s:", "missed_edge_case",
          "upper-case vowels count too: loop over s.lower()"),
         ("count += 1", "count = 1", "wrong_update", "add one per vowel (count += 1), do not reset to 1")),
        lambda rng, p: [("banana",), ("sky",), ("",), ("AEIOU yes",), ("Rhythm and Yoga",)]
        + [(" ".join(_words(rng, 3)),) for _ in range(3)],
        ({"v": "aeiou"}, {"v": "aeiouy"}), "v",
    ),
    _Family(
        "caesar", "string", "caesar",
        "Shift every letter of s forward by {k} places in the alphabet, wrapping from z to a "
        "(and Z to A); keep case, and leave other characters unchanged.",
        "def caesar(s):\n"
        "    out = []\n"
        "    for ch in s:\n"
        "        if 'a' <= ch <= 'z':\n"
        "            out.append(chr((ord(ch) - 97 + {k}) % 26 + 97))\n"
        "        elif 'A' <= ch <= 'Z':\n"
        "            out.append(chr((ord(ch) - 65 + {k}) % 26 + 65))\n"
        "        else:\n"
        "            out.append(ch)\n"
        "    return ''.join(out)\n",
        (("out.append(chr((ord(ch) - 97 + {k}) % 26 + 97))", "out.append(chr(ord(ch) + {k}))",
          "missed_edge_case", "wrap around the end of the alphabet: (ord(ch) - 97 + {k}) % 26 + 97"),
         ("elif 'A' <= ch <= 'Z':", "elif 'A' < ch <= 'Z':", "wrong_comparison",
          "include 'A' itself: the upper-case test is 'A' <= ch <= 'Z'")),
        lambda rng, p: [("abc",), ("Hello, World!",), ("",), ("xyz",), ("ABBA",), ("Zebra 42",)]
        + [(" ".join(_words(rng, 2)),) for _ in range(2)],
        ({"k": 3}, {"k": 13}), "k",
    ),
    _Family(
        "fizzbuzz", "arithmetic", "fizzbuzz",
        "Return a list of strings for i = 1..n: 'FizzBuzz' if i is divisible by both {a} and {b}, "
        "'Fizz' if only by {a}, 'Buzz' if only by {b}, else str(i).",
        "def fizzbuzz(n):\n"
        "    out = []\n"
        "    for i in range(1, n + 1):\n"
        "        if i % {a} == 0 and i % {b} == 0:\n"
        "            out.append('FizzBuzz')\n"
        "        elif i % {a} == 0:\n"
        "            out.append('Fizz')\n"
        "        elif i % {b} == 0:\n"
        "            out.append('Buzz')\n"
        "        else:\n"
        "            out.append(str(i))\n"
        "    return out\n",
        (("for i in range(1, n + 1):", "for i in range(1, n):", "off_by_one",
          "include n itself: range(1, n + 1)"),
         ("if i % {a} == 0 and i % {b} == 0:", "if i % {a} == 0 or i % {b} == 0:", "wrong_operator",
          "FizzBuzz needs both divisors: join the tests with `and`, not `or`")),
        lambda rng, p: [(5,), (1,), (0,), (p["a"],), (p["a"] * p["b"],), (rng.randint(16, 30),)],
        ({"a": 3, "b": 5, "ab": "3-5"}, {"a": 2, "b": 7, "ab": "2-7"}), "ab",
    ),
    _Family(
        "digit_sum", "arithmetic", "digit_sum",
        "Return the sum of the digits of abs(n) written in base {b}.",
        "def digit_sum(n):\n"
        "    n = abs(n)\n"
        "    total = 0\n"
        "    while n > 0:\n"
        "        total += n % {b}\n"
        "        n //= {b}\n"
        "    return total\n",
        (("n = abs(n)", "n = n", "missed_edge_case", "negative numbers: take abs(n) first"),
         ("while n > 0:", "while n > {b}:", "off_by_one",
          "keep going while any digit is left: loop while n > 0")),
        lambda rng, p: [(123,), (7,), (0,), (-45,), (p["b"],), (p["b"] ** 3,)]
        + [(rng.randint(-999, 9999),) for _ in range(3)],
        ({"b": 10}, {"b": 2}), "b",
    ),
    _Family(
        "running", "list", "running",
        "Return the running {word} of nums: element i is the {word} of nums[0..i].",
        "def running(nums):\n"
        "    out = []\n"
        "    total = {unit}\n"
        "    for x in nums:\n"
        "        total {op}= x\n"
        "        out.append(total)\n"
        "    return out\n",
        (("total {op}= x", "total = x", "wrong_update", "accumulate: total {op}= x, not total = x"),
         ("total = {unit}", "total = {bad_unit}", "wrong_initial_value",
          "start the {word} at {unit}, its neutral value")),
        lambda rng, p: [([1, 2, 3],), ([4],), ([],), ([2, -1, 3, 2],), ([5, 0, 2],)]
        + [(_ints(rng, 4, -5, 6),) for _ in range(3)],
        ({"word": "sum", "op": "+", "unit": 0, "bad_unit": 1}, {"word": "product", "op": "*", "unit": 1,
                                                                 "bad_unit": 0}), "word",
    ),
    _Family(
        "second_largest", "list", "second_largest",
        "Return the second largest DISTINCT value in nums, or None if there are fewer than two "
        "distinct values.",
        "def second_largest(nums):\n"
        "    first = second = None\n"
        "    for x in nums:\n"
        "        if first is None or x > first:\n"
        "            first, second = x, first\n"
        "        elif x != first and (second is None or x > second):\n"
        "            second = x\n"
        "    return second\n",
        (("elif x != first and (second is None or x > second):", "elif second is None or x > second:",
          "missed_edge_case", "a copy of the largest is not a second value: skip x == first"),
         ("if first is None or x > first:", "if first is None or x >= first:", "wrong_comparison",
          "only a strictly larger x replaces first: compare with x > first")),
        lambda rng, p: [([3, 1, 2],), ([5, 5],), ([],), ([5, 5, 3],), ([3, 5, 5],), ([1, 9, 9, 4],)]
        + [(_ints(rng, 5, 0, 9),) for _ in range(3)],
    ),
    _Family(
        "run_length", "string", "run_length",
        "Return the run-length encoding of s: a list of (character, count) pairs, one per run of "
        "equal characters, in order.",
        "def run_length(s):\n"
        "    out = []\n"
        "    i = 0\n"
        "    while i < len(s):\n"
        "        j = i\n"
        "        while j < len(s) and s[j] == s[i]:\n"
        "            j += 1\n"
        "        out.append((s[i], j - i))\n"
        "        i = j\n"
        "    return out\n",
        (("out.append((s[i], j - i))", "out.append((s[i], j - i + 1))", "off_by_one",
          "the run is s[i:j], so its length is j - i"),
         ("while i < len(s):", "while i < len(s) - 1:", "off_by_one",
          "the last run matters too: loop while i < len(s)")),
        lambda rng, p: [("aaabcc",), ("x",), ("",), ("abab",), ("zzzz",)]
        + [("".join(rng.choice("ab") for _ in range(rng.randint(3, 8))),) for _ in range(3)],
    ),
    _Family(
        "rotate_left", "list", "rotate_left",
        "Return nums rotated left by {k} places (the first {k} elements move to the end; the "
        "shift wraps around for short lists); an empty list stays empty.",
        "def rotate_left(nums):\n"
        "    if not nums:\n"
        "        return []\n"
        "    k = {k} % len(nums)\n"
        "    return nums[k:] + nums[:k]\n",
        (("if not nums:", "if nums is None:", "missed_edge_case",
          "an empty list must return [] before dividing by len(nums)"),
         ("return nums[k:] + nums[:k]", "return nums[k:] + nums[:k - 1]", "off_by_one",
          "the moved part is nums[:k], all k elements")),
        lambda rng, p: [([1, 2, 3, 4, 5],), ([1, 2],), ([],), ([7],), (list(range(p["k"] + 2)),)]
        + [(_ints(rng, rng.randint(2, 6)),) for _ in range(3)],
        ({"k": 1}, {"k": 3}), "k",
    ),
    _Family(
        "binary_search", "algorithm", "find_index",
        "nums is sorted in ascending order with distinct values. Return the index of target in "
        "nums, or -1 if it is absent, in O(log n).",
        "def find_index(nums, target):\n"
        "    lo, hi = 0, len(nums) - 1\n"
        "    while lo <= hi:\n"
        "        mid = (lo + hi) // 2\n"
        "        if nums[mid] == target:\n"
        "            return mid\n"
        "        if nums[mid] < target:\n"
        "            lo = mid + 1\n"
        "        else:\n"
        "            hi = mid - 1\n"
        "    return -1\n",
        (("while lo <= hi:", "while lo < hi:", "off_by_one",
          "a one-element range still needs a look: loop while lo <= hi"),
         ("if nums[mid] < target:", "if nums[mid] > target:", "wrong_comparison",
          "go right when nums[mid] < target (the target is larger)"),
         ("return -1", "return None", "wrong_return", "an absent target returns -1, not None")),
        lambda rng, p: [([1, 3, 5, 7], 5), ([1, 3, 5, 7], 4), ([], 3), ([4], 4), ([1, 3, 5, 7, 9], 9),
                        ([1, 3, 5, 7, 9], 1), ([2, 4, 6, 8], 8), ([2, 4, 6], 10)],
    ),
    _Family(
        "gcd", "arithmetic", "gcd",
        "Return the greatest common divisor of a and b (always >= 0; gcd(0, 0) is 0).",
        "def gcd(a, b):\n"
        "    a, b = abs(a), abs(b)\n"
        "    while b:\n"
        "        a, b = b, a % b\n"
        "    return a\n",
        (("a, b = abs(a), abs(b)", "a, b = a, b", "missed_edge_case",
          "negative inputs: work on abs(a) and abs(b)"),
         ("return a", "return b", "wrong_return", "when b reaches 0 the answer is in a: return a")),
        lambda rng, p: [(12, 18), (7, 5), (0, 0), (-12, 18), (0, 9), (21, -14)]
        + [(rng.randint(1, 200), rng.randint(1, 200)) for _ in range(3)],
    ),
    _Family(
        "is_prime", "arithmetic", "is_prime",
        "Return True if n is a prime number, else False (numbers below 2 are not prime).",
        "def is_prime(n):\n"
        "    if n < 2:\n"
        "        return False\n"
        "    d = 2\n"
        "    while d * d <= n:\n"
        "        if n % d == 0:\n"
        "            return False\n"
        "        d += 1\n"
        "    return True\n",
        (("if n < 2:", "if n < 1:", "off_by_one", "1 is not prime: reject every n < 2"),
         ("while d * d <= n:", "while d * d < n:", "wrong_comparison",
          "a square like 9 has its divisor at d * d == n: loop while d * d <= n")),
        lambda rng, p: [(7,), (10,), (1,), (0,), (2,), (9,), (25,), (97,), (-3,)],
    ),
    _Family(
        "count_long_words", "string", "count_long_words",
        "Return how many words of s (split on whitespace) have more than {n} characters.",
        "def count_long_words(s):\n"
        "    count = 0\n"
        "    for word in s.split():\n"
        "        if len(word) > {n}:\n"
        "            count += 1\n"
        "    return count\n",
        (("if len(word) > {n}:", "if len(word) >= {n}:", "wrong_comparison",
          "more than {n} characters: len(word) > {n}, a word of exactly {n} does not count"),
         ("count = 0", "count = 1", "wrong_initial_value", "start counting from 0")),
        lambda rng, p: [("the quick brown fox",), ("a",), ("",), ("x" * p["n"] + " " + "y" * (p["n"] + 1),)]
        + [(" ".join(_words(rng, 4)),) for _ in range(3)],
        ({"n": 3}, {"n": 5}), "n",
    ),
    _Family(
        "dedupe", "list", "dedupe",
        "Return nums without repeated values, keeping the first occurrence of each, in order.",
        "def dedupe(nums):\n"
        "    seen = set()\n"
        "    out = []\n"
        "    for x in nums:\n"
        "        if x not in seen:\n"
        "            seen.add(x)\n"
        "            out.append(x)\n"
        "    return out\n",
        (("if x not in seen:", "if x not in out[-1:]:", "missed_edge_case",
          "repeats need not be adjacent: check every value seen so far"),
         ("seen.add(x)", "seen = {{x}}", "wrong_update", "remember every value: seen.add(x), do not replace the set")),
        lambda rng, p: [([1, 2, 2, 3],), ([4, 4, 4],), ([],), ([1, 2, 1],), ([3, 1, 3, 2, 1],)]
        + [(_ints(rng, 6, 0, 4),) for _ in range(3)],
    ),
    _Family(
        "average", "arithmetic", "average",
        "Return the mean of nums rounded to {d} decimal places, or None for an empty list.",
        "def average(nums):\n"
        "    if len(nums) == 0:\n"
        "        return None\n"
        "    return round(sum(nums) / len(nums), {d})\n",
        (("if len(nums) == 0:", "if len(nums) == 1:", "wrong_comparison",
          "the special case is the empty list: len(nums) == 0"),
         ("return round(sum(nums) / len(nums), {d})", "return round(sum(nums) // len(nums), {d})",
          "wrong_operator", "divide with /, not //, which drops the fraction")),
        lambda rng, p: [([1, 2, 3, 4],), ([5],), ([],), ([1, 2],), ([-3, 4, 10],)]
        + [(_ints(rng, 5, -9, 9),) for _ in range(3)],
        ({"d": 1}, {"d": 2}), "d",
    ),
    _Family(
        "factorial", "arithmetic", "factorial",
        "Return n! for n >= 0 (0! is 1).",
        "def factorial(n):\n"
        "    result = 1\n"
        "    for i in range(2, n + 1):\n"
        "        result *= i\n"
        "    return result\n",
        (("for i in range(2, n + 1):", "for i in range(2, n):", "off_by_one", "multiply by n too: range(2, n + 1)"),
         ("result = 1", "result = 0", "wrong_initial_value", "a product starts at 1, not 0")),
        lambda rng, p: [(5,), (3,), (0,), (1,), (2,), (10,)],
    ),
    _Family(
        "count_pairs", "algorithm", "count_pairs",
        "Return the number of index pairs i < j with nums[i] + nums[j] == target.",
        "def count_pairs(nums, target):\n"
        "    count = 0\n"
        "    for i in range(len(nums)):\n"
        "        for j in range(i + 1, len(nums)):\n"
        "            if nums[i] + nums[j] == target:\n"
        "                count += 1\n"
        "    return count\n",
        (("for j in range(i + 1, len(nums)):", "for j in range(i, len(nums)):", "off_by_one",
          "a pair needs two different indices: start j at i + 1"),
         ("if nums[i] + nums[j] == target:", "if nums[i] + nums[j] >= target:", "wrong_comparison",
          "count only exact sums: == target")),
        lambda rng, p: [([1, 2, 3, 4], 5), ([1, 1], 2), ([], 0), ([3], 6), ([2, 2, 2], 4), ([5, 6], 3)]
        + [(_ints(rng, 5, 0, 6), rng.randint(3, 9)) for _ in range(3)],
    ),
    _Family(
        "title_case", "string", "title_case",
        "Return s with the first character of every space-separated word upper-cased and the rest "
        "lower-cased; keep the spaces exactly as they are.",
        "def title_case(s):\n"
        "    words = s.split(' ')\n"
        "    out = []\n"
        "    for w in words:\n"
        "        out.append(w[:1].upper() + w[1:].lower())\n"
        "    return ' '.join(out)\n",
        (("out.append(w[:1].upper() + w[1:].lower())", "out.append(w[0].upper() + w[1:].lower())",
          "missed_edge_case", "an empty word (two spaces, or an empty s) has no w[0]: use w[:1]"),
         ("out.append(w[:1].upper() + w[1:].lower())", "out.append(w[:1].upper() + w[1:])",
          "missed_edge_case", "the rest of the word must be lower-cased: w[1:].lower()")),
        lambda rng, p: [("hello world",), ("PYTHON",), ("",), ("a  b",), ("mIxEd CaSe",)],
    ),
    _Family(
        "transpose", "list", "transpose",
        "Return the transpose of the rectangular matrix m (a list of rows); [] stays [].",
        "def transpose(m):\n"
        "    if not m:\n"
        "        return []\n"
        "    rows, cols = len(m), len(m[0])\n"
        "    return [[m[r][c] for r in range(rows)] for c in range(cols)]\n",
        (("if not m:", "if m is None:", "missed_edge_case", "an empty matrix has no m[0]: return [] first"),
         ("return [[m[r][c] for r in range(rows)] for c in range(cols)]",
          "return [[m[r][c] for c in range(cols)] for r in range(rows)]", "wrong_update",
          "the outer loop must run over columns: row c of the result is column c of m")),
        lambda rng, p: [([[1, 2], [3, 4]],), ([[1, 2, 3]],), ([],), ([[5]],), ([[1], [2], [3]],)],
    ),
    _Family(
        "merge_sorted", "algorithm", "merge_sorted",
        "a and b are sorted ascending. Return one sorted list of all their elements, in O(len(a) + len(b)).",
        "def merge_sorted(a, b):\n"
        "    i = j = 0\n"
        "    out = []\n"
        "    while i < len(a) and j < len(b):\n"
        "        if a[i] <= b[j]:\n"
        "            out.append(a[i])\n"
        "            i += 1\n"
        "        else:\n"
        "            out.append(b[j])\n"
        "            j += 1\n"
        "    out.extend(a[i:])\n"
        "    out.extend(b[j:])\n"
        "    return out\n",
        (("out.extend(b[j:])", "pass", "missed_edge_case", "after the loop, append what is left of b too"),
         ("if a[i] <= b[j]:", "if a[i] >= b[j]:", "wrong_comparison", "take the smaller head first: a[i] <= b[j]")),
        lambda rng, p: [([1, 4, 6], [2, 3, 7]), ([1], [2]), ([], []), ([], [1, 2]), ([5, 6], [1])]
        + [(sorted(_ints(rng, 3)), sorted(_ints(rng, 4))) for _ in range(2)],
    ),
    _Family(
        "count_overlapping", "string", "count_overlapping",
        "Return how many times sub occurs in s, counting overlapping occurrences; an empty sub "
        "occurs 0 times.",
        "def count_overlapping(s, sub):\n"
        "    if not sub:\n"
        "        return 0\n"
        "    count = 0\n"
        "    for i in range(len(s) - len(sub) + 1):\n"
        "        if s[i:i + len(sub)] == sub:\n"
        "            count += 1\n"
        "    return count\n",
        (("for i in range(len(s) - len(sub) + 1):", "for i in range(len(s) - len(sub)):", "off_by_one",
          "the last start position is len(s) - len(sub): range(len(s) - len(sub) + 1)"),
         ("if not sub:", "if sub is None:", "missed_edge_case", "an empty sub must return 0 first")),
        lambda rng, p: [("aaaa", "aa"), ("banana", "ana"), ("", "a"), ("abc", ""), ("abc", "c"), ("abab", "ab")],
    ),
    _Family(
        "clamp_all", "list", "clamp_all",
        "Return nums with every value below {lo} replaced by {lo} and every value above {hi} by {hi}.",
        "def clamp_all(nums):\n"
        "    out = []\n"
        "    for x in nums:\n"
        "        if x < {lo}:\n"
        "            out.append({lo})\n"
        "        elif x > {hi}:\n"
        "            out.append({hi})\n"
        "        else:\n"
        "            out.append(x)\n"
        "    return out\n",
        (("elif x > {hi}:", "elif x > {hi} + 1:", "off_by_one", "clamp everything above {hi}: x > {hi}"),
         ("out.append({hi})", "out.append({lo})", "wrong_return", "a value above the range becomes {hi}, the top")),
        lambda rng, p: [([p["lo"] - 5, p["hi"] + 5, p["lo"] + 1],), ([p["hi"] + 1],), ([],)]
        + [(_ints(rng, 5, p["lo"] - 8, p["hi"] + 8),) for _ in range(3)],
        ({"lo": 0, "hi": 10, "range": "0-10"}, {"lo": -5, "hi": 5, "range": "-5-5"}), "range",
    ),
    _Family(
        "every_nth", "list", "every_nth",
        "Return every {k}th element of nums: the elements at positions {k}, {k2}, ... counting from 1.",
        "def every_nth(nums):\n"
        "    out = []\n"
        "    for i in range({k} - 1, len(nums), {k}):\n"
        "        out.append(nums[i])\n"
        "    return out\n",
        (("for i in range({k} - 1, len(nums), {k}):", "for i in range({k}, len(nums), {k}):", "off_by_one",
          "position {k} counting from 1 is index {k} - 1: start the range there"),
         ("for i in range({k} - 1, len(nums), {k}):", "for i in range({k} - 1, len(nums), {k} - 1):",
          "wrong_update", "step by {k} between picks")),
        lambda rng, p: [(list(range(1, 10)),), ([5, 6],), ([],), (list(range(20, 20 + 3 * p["k"])),)],
        ({"k": 2, "k2": 4}, {"k": 3, "k2": 6}), "k",
    ),
)


def _build(family: _Family, param: dict[str, Any], index: int) -> Problem:
    fmt = functools.partial(str.format, **param)
    reference = fmt(family.reference)
    lines = reference.splitlines()
    bugs = []
    for old, new, bug_type, fix in family.bugs:
        old, new = fmt(old), fmt(new)
        where = [k for k, text in enumerate(lines) if text.strip() == old]
        if len(where) != 1:
            raise AssertionError(f"{family.name}: bug line {old!r} found {len(where)} times")
        k = where[0]
        indent = lines[k][: len(lines[k]) - len(lines[k].lstrip())]
        code_lines = list(lines)
        code_lines[k] = indent + new
        bugs.append(Bug("\n".join(code_lines) + "\n", bug_type, k + 1, new, old, fmt(fix)))
    namespace: dict[str, Any] = {}
    exec(compile(reference, f"<reference {family.name}>", "exec"), namespace)  # our own code
    fn = namespace[family.entry]
    rng = random.Random(f"fbenv-code-problems/{family.ident(param)}")
    tests = tuple(TestCase(tuple(args), fn(*copy.deepcopy(args))) for args in family.inputs(rng, param))
    return Problem(
        id=family.ident(param), family=family.name, topic=family.topic, entry=family.entry,
        signature=lines[0], statement=fmt(family.statement), reference=reference, tests=tests,
        bugs=tuple(bugs), split="test" if index % 4 == 3 else "train",
    )


@functools.lru_cache(maxsize=1)
def _bank() -> tuple[Problem, ...]:
    out = []
    for family in _FAMILIES:
        for param in family.params:
            out.append(_build(family, param, len(out)))
    return tuple(out)


def problems(split: str | None = None, topic: str | None = None) -> tuple[Problem, ...]:
    """The bank in a fixed order, optionally one split ("train"/"test") or one topic."""
    bank = _bank()
    if split is not None:
        split = check_choice("split", split, SPLITS)
        bank = tuple(p for p in bank if p.split == split)
    if topic is not None:
        topic = check_choice("topic", topic, TOPICS)
        bank = tuple(p for p in bank if p.topic == topic)
    return bank


def get(problem_id: str) -> Problem:
    """The problem with this id, e.g. ``get("caesar/13")``."""
    for p in _bank():
        if p.id == problem_id:
            return p
    raise UnknownNameError("problem id", problem_id, [p.id for p in _bank()])
