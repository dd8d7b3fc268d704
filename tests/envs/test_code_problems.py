"""The code problem bank: every reference passes its hidden tests, every planted bug fails one.

The whole bank (references and buggy variants) runs in ONE sandboxed interpreter.
"""

from __future__ import annotations

import ast
from collections import Counter

import pytest

from fbenv.envs.code_problems import BUG_TYPES, SPLITS, TOPICS, get, problems, run_bank
from fbenv.errors import UnknownNameError
from fbenv.sandbox import Outcome


@pytest.fixture(scope="module")
def bank_results():
    bank = problems()
    pairs = [(p, p.reference) for p in bank] + [(p, bug.code) for p in bank for bug in p.bugs]
    return pairs, run_bank(pairs)


def test_bank_size_topics_and_splits() -> None:
    bank = problems()
    assert len(bank) >= 40
    assert len({p.id for p in bank}) == len(bank)
    assert {p.topic for p in bank} == set(TOPICS)
    assert problems("train") and problems("test")
    assert len(problems("train")) + len(problems("test")) == len(bank)
    assert {p.split for p in bank} == set(SPLITS)
    # procedurally varied families give several problems
    assert max(Counter(p.family for p in bank).values()) >= 3


def test_every_problem_is_complete() -> None:
    for p in problems():
        assert p.signature == p.reference.splitlines()[0] and p.signature.startswith(f"def {p.entry}(")
        assert p.statement and "{" not in p.statement.replace("{x}", "")
        assert len(p.tests) >= 4 and 2 <= len(p.bugs) <= 3
        ast.parse(p.reference)
        assert p.prompt.startswith(p.signature) and p.statement in p.prompt
        for bug in p.bugs:
            assert bug.bug_type in BUG_TYPES and bug.fix
            ref_lines, bug_lines = p.reference.splitlines(), bug.code.splitlines()
            differ = [k + 1 for k, (a, b) in enumerate(zip(ref_lines, bug_lines)) if a != b]
            assert differ == [bug.line], p.id
            assert ref_lines[bug.line - 1].strip() == bug.fixed_line
            assert bug_lines[bug.line - 1].strip() == bug.buggy_line
            ast.parse(bug.code)


def test_reference_passes_every_hidden_test(bank_results) -> None:
    pairs, results = bank_results
    for (p, code), r in zip(pairs, results):
        if code == p.reference:
            assert r.outcome is Outcome.OK, (p.id, r.outcome, r.message, r.failing[:1])


def test_each_buggy_variant_fails_at_least_one_hidden_test(bank_results) -> None:
    pairs, results = bank_results
    checked = 0
    for (p, code), r in zip(pairs, results):
        if code != p.reference:
            checked += 1
            assert r.outcome is Outcome.FAILED and r.passed < r.total, (p.id, code)
    assert checked == sum(len(p.bugs) for p in problems())


def test_single_problem_runs_in_the_sandbox() -> None:
    p = get("caesar/13")
    assert p.run(p.reference).ok
    result = p.run(p.bugs[0].code)
    assert not result.ok and result.failing
    assert p.examples == p.tests[:2]


def test_unknown_names_raise_typed_errors() -> None:
    with pytest.raises(UnknownNameError, match="caesar/13"):
        get("caesar/14")
    with pytest.raises(UnknownNameError):
        problems(split="dev")
    with pytest.raises(UnknownNameError):
        problems(topic="graphs")


def test_bank_is_deterministic() -> None:
    from fbenv.envs import code_problems

    first = problems()
    code_problems._bank.cache_clear()
    assert problems() == first
