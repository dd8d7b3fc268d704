"""The bench harness: suites cover the registry, a killed run resumes exactly, workers change
nothing, fingerprints keep feedback sources apart, the report is written.

Rule simulators only, plus LLM rows on ``choosing`` (no model is loaded)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fbenv.baselines import harness, report
from fbenv.baselines.store import Store, comparable
from fbenv.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
name = "tiny"
[[grid]]
name = "bandit"
seeds = {bandit_seeds}
envs = [{{ id = "fbenv/DynamicalBandit-v0" }}]
agents = [{{ name = "ucb1" }}, {{ name = "random" }}]
[[grid]]
name = "advisor"
seeds = 6
envs = [{{ id = "fbenv/Advisor-v0", kwargs = {{ feedback_timing = "hindsight" }} }}]
agents = [{{ name = "probe:honest" }}, {{ name = "probe:flatterer" }}, {{ name = "random" }}]
"""


def _suite(tmp_path: Path, bandit_seeds: int) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(SUITE.format(bandit_seeds=bandit_seeds))
    return str(path)


@pytest.fixture
def suite(tmp_path: Path) -> str:
    return _suite(tmp_path, 4)


def _uninterrupted(suite: str, out: Path, workers: int = 1, repeats: int = 1) -> list[dict]:
    run = harness.new_run(suite, out, repeats=repeats)
    harness.execute(run, workers=workers, progress=False)
    return harness.rows_of(out)


def test_quick_suite_covers_every_registered_task_with_llm_rows() -> None:
    cells = harness.expand(harness.load_suite("quick"), llm="choosing")
    envs = {c.env for c in cells}
    for task in REGISTRY:
        assert task.id in envs, task.id
        if "llm" in task.simulators:
            llm_cells = [c for c in cells if c.env == task.id and c.uses_llm]
            assert llm_cells and all(len(c.seeds) <= 2 for c in llm_cells), task.id
    agents = {c.agent for c in cells}
    assert {"random", "ppo", "ucb1"} <= agents and any(a.startswith("probe:") for a in agents)
    assert not any(c.uses_llm for c in harness.expand(harness.load_suite("quick"), skip_llm=True))
    # every task's LLM row plays (the choosing backend answers; nothing is loaded)
    for c in cells:
        if c.uses_llm:
            row = harness.play(c.as_dict(), c.seeds[0], 0)
            assert row["prompt_tokens"] > 0 and row["fingerprint_json"]["backend"] == "choosing", c


def test_killed_run_resumes_without_losing_or_repeating_an_episode(tmp_path: Path) -> None:
    suite = _suite(tmp_path, 25)
    killed = tmp_path / "killed"
    total = 25 * 2 + 6 * 3
    proc = subprocess.Popen(
        [sys.executable, "-m", "fbenv.cli", "bench", "--suite", suite, "--out", str(killed), "--llm", "choosing"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    db = killed / "results.sqlite"
    deadline = time.monotonic() + 600  # a loaded machine may take minutes to start the run
    count = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                count = sqlite3.connect(db).execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
            except sqlite3.OperationalError:  # the table is being created
                count = 0
            if count >= 10:
                break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 10 <= count < total, f"killed after {count} of {total} episodes: not mid-way"

    harness.execute(harness.Run.load(killed), progress=False)
    resumed = harness.rows_of(killed)
    keys = [(r["cell"], r["seed"], r["repeat"]) for r in resumed]
    assert len(keys) == len(set(keys)) == total
    assert comparable(resumed) == comparable(_uninterrupted(suite, tmp_path / "whole"))
    with pytest.raises(Exception, match="already holds a run"):
        harness.new_run(suite, killed)


def test_workers_and_repeats_give_the_same_rows(suite: str, tmp_path: Path) -> None:
    one = _uninterrupted(suite, tmp_path / "one", repeats=2)
    two = _uninterrupted(suite, tmp_path / "two", workers=2, repeats=2)
    assert len(one) == (4 * 2 + 6 * 3) * 2
    assert comparable(one) == comparable(two)


def test_fingerprint_records_what_produced_the_feedback() -> None:
    base = harness.fingerprint("fbenv/Advisor-v0", {"simulator": "llm", "llm": "choosing"})
    assert {"env_version", "simulator", "backend", "model", "prompts", "sampling", "fbenv"} <= set(base)
    variants = [
        harness.fingerprint("fbenv/Advisor-v0", {"simulator": "llm", "llm": "choosing:blind"}),
        harness.fingerprint("fbenv/Advisor-v0", {"simulator": "llm", "llm": "choosing", "llm_temperature": 0.7}),
        harness.fingerprint("fbenv/Advisor-v0", {"simulator": "rule"}),
        harness.fingerprint("fbenv/Shop-v0", {"simulator": "llm", "llm": "choosing"}),
    ]
    keys = {harness.fingerprint_key(f) for f in [base, *variants]}
    assert len(keys) == 5
    assert harness.prompt_hash(REGISTRY[0].entry_point) != harness.prompt_hash(REGISTRY[1].entry_point)


def test_report_writes_leaderboard_and_refuses_mixed_fingerprints(suite: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _uninterrupted(suite, out, repeats=2)
    paths = report.write_report(out, echo=lambda s: None)
    md = paths["md"].read_text()
    assert "fbenv/DynamicalBandit-v0" in md and "Smallest resolvable" in md and "pass^k" in md
    assert (out / "plots" / "Advisor-v0.png").stat().st_size > 0
    lines = paths["csv"].read_text().splitlines()
    assert len(lines) == 1 + 5
    # Advisor under hindsight: the honest adviser is worth more than the flatterer
    es = {e.agent: e for e in report.entries(harness.rows_of(out)) if e.task == "fbenv/Advisor-v0"}
    assert es["probe:honest"].true_utility > es["probe:flatterer"].true_utility

    # one row claims another model: the report names the difference and refuses
    db = sqlite3.connect(out / "results.sqlite")
    fp = {**json.loads(db.execute("SELECT fingerprint_json FROM episodes LIMIT 1").fetchone()[0]), "simulator": "llm"}
    with db:
        db.execute("UPDATE episodes SET fingerprint = 'other', fingerprint_json = ? WHERE rowid = 1", (json.dumps(fp),))
    with pytest.raises(report.FingerprintMixError, match="simulator: 'rule' vs 'llm'|simulator: 'llm' vs 'rule'"):
        report.write_report(out, echo=lambda s: None)
    assert report.write_report(out, mix_fingerprints=True, plots=False, echo=lambda s: None)["md"].exists()


def test_pass_hat_k_and_bootstrap() -> None:
    assert report.pass_hat_k([[True, True], [True, False]], 1) == pytest.approx(0.75)
    assert report.pass_hat_k([[True, True], [True, False]], 2) == pytest.approx(0.5)
    lo, hi = report.bootstrap_ci([0.0, 1.0] * 10)
    assert lo < 0.5 < hi and report.bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    with Store(":memory:") as store:
        assert store.done() == set()
