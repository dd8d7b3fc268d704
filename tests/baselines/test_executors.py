"""Executors and lockstep change how episodes are played, never their rows: Ray against
local processes, LLM-simulated cells in lockstep against one episode at a time.

Rule simulators, and LLM simulators on ``choosing`` (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fbenv.baselines import harness
from fbenv.baselines.store import Store, comparable
from fbenv.llm import batching

SUITE = """
name = "tiny"
[[grid]]
name = "bandit"
seeds = 3
envs = [{ id = "fbenv/DynamicalBandit-v0" }]
agents = [{ name = "ucb1" }, { name = "random" }]
[[grid]]
name = "advisor"
seeds = 4
envs = [{ id = "fbenv/Advisor-v0", kwargs = { feedback_timing = "hindsight" } }]
agents = [{ name = "probe:honest" }, { name = "random" }]
[[grid]]
name = "advisor-llm"
seeds = 4
envs = [{ id = "fbenv/Advisor-v0", kwargs = { feedback_timing = "hindsight", simulator = "llm", llm = "choosing" } }]
agents = [{ name = "probe:honest" }, { name = "random" }]
"""


@pytest.fixture
def suite(tmp_path: Path) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(SUITE)
    return str(path)


def _rows(suite: str, out: Path, **kw) -> list[dict]:
    run = harness.new_run(suite, out, repeats=kw.pop("repeats", 1), llm="choosing")
    harness.execute(run, progress=False, **kw)
    return harness.rows_of(out)


def test_ray_executor_gives_the_local_rows(suite: str, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (the ray extra)")
    local = _rows(suite, tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = _rows(suite, tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    assert len(local) == 3 * 2 + 4 * 2 + 4 * 2
    assert comparable(remote) == comparable(local)
    with Store(tmp_path / "ray" / "results.sqlite") as a, Store(tmp_path / "local" / "results.sqlite") as b:
        assert a.details("transcript") == b.details("transcript") and a.details("curve") == b.details("curve")


def test_lockstep_batches_llm_episodes_and_keeps_their_rows(suite: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    groups: list[batching.BatchGroup] = []
    real_run = batching.BatchGroup.run

    def run(self, fns):
        groups.append(self)
        return real_run(self, fns)

    monkeypatch.setattr(batching.BatchGroup, "run", run)
    alone = _rows(suite, tmp_path / "alone", lockstep=1, repeats=2)
    assert not groups
    together = _rows(suite, tmp_path / "together", lockstep=8, repeats=2)
    # the two LLM cells' 8 pending episodes each played as one batch; the rule cells one at a time
    assert len(groups) == 2 and all(g.flushes > 0 for g in groups)
    assert comparable(together) == comparable(alone)
    llm_rows = [r for r in together if r["simulator"] == "llm"]
    assert len(llm_rows) == 16 and all(r["prompt_tokens"] > 0 for r in llm_rows)
    units = harness.units([(c, s, r) for c, s, r in harness.Run.load(tmp_path / "alone").episodes()], lockstep=3)
    assert [len(eps) for c, eps in units if harness.lockstep_ok(c)] == [3, 3, 2] * 2


def test_unknown_executor_is_refused(suite: str, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="executor"):
        _rows(suite, tmp_path / "x", executor="slurm")
