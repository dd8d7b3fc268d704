"""report.html: every task's section, the charts, learning curves and transcripts with their
feedback records; rendered in headless Chromium, which saves a screenshot.

Rule simulators, and LLM simulators on ``choosing`` (no model is loaded)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fbenv.baselines import harness, html, report

SUITE = """
name = "html"
[[grid]]
name = "learners"
seeds = 2
envs = [{ id = "fbenv/DynamicalBandit-v0" }]
agents = [{ name = "ucb1" }, { name = "random" }]
[[grid]]
name = "ppo"
seeds = 2
envs = [{ id = "fbenv/Advisor-v0", kwargs = { feedback_timing = "hindsight" } }]
agents = [{ name = "ppo", kwargs = { steps = 256, n_steps = 128, train_seed = 0 } }, { name = "probe:flatterer" }]
[[grid]]
name = "llm"
seeds = 3
envs = [{ id = "fbenv/Advisor-v0", kwargs = { feedback_timing = "hindsight", simulator = "llm" } }]
agents = [{ name = "probe:honest" }]
[[grid]]
name = "multi"
seeds = 2
envs = [{ id = "fbenv/DeceptiveJudge-v0" }]
agents = [{ name = "random" }]
"""
TASKS = ("fbenv/DynamicalBandit-v0", "fbenv/Advisor-v0", "fbenv/DeceptiveJudge-v0")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    (tmp / "html.toml").write_text(SUITE)
    run = harness.new_run(str(tmp / "html.toml"), tmp / "run", llm="choosing")
    harness.execute(run, progress=False)
    report.write_report(run.path, echo=lambda s: None)
    return run.path


def test_page_has_every_task_with_charts_curves_and_transcripts(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    sections = re.findall(r'<section class="task" id="[^"]+" data-task="([^"]+)">(.*?)</section>', page, re.S)
    assert sorted(t for t, _ in sections) == sorted(TASKS)
    body = dict(sections)
    for task in TASKS:
        assert "data:image/png;base64," in body[task], task  # the bar chart, embedded
        assert body[task].count('class="transcript"') == 2, task
    # the learners' curves: the bandit's within its episode, PPO's over its training
    assert "learning curves, fbenv/DynamicalBandit-v0" in body["fbenv/DynamicalBandit-v0"]
    assert "learning curves, fbenv/Advisor-v0" in body["fbenv/Advisor-v0"]
    assert "learning curves" not in body["fbenv/DeceptiveJudge-v0"]
    with harness.Store(run_dir / "results.sqlite") as store:
        curves = store.details("curve")
        kinds = {c["kind"] for c in curves.values()}
        assert kinds == {"episode", "training"}
        assert all(len(c["x"]) == len(c["y"]) > 0 for c in curves.values())
    # feedback records inline, in the step that drew them
    assert re.search(r'class="step">.*?class="fb"><span class="src">', body["fbenv/Advisor-v0"], re.S)
    assert "(llm)" in body["fbenv/Advisor-v0"] or "(rule)" in body["fbenv/Advisor-v0"]


@pytest.mark.skipif(html.chromium() is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")
def test_chromium_renders_every_task_section_and_saves_a_screenshot(run_dir: Path) -> None:
    dom = html.dump_dom(run_dir / "report.html")
    rendered = re.findall(r'<section class="task" id="[^"]+" data-task="([^"]+)" data-rendered="yes">', dom)
    assert sorted(rendered) == sorted(TASKS)
    loaded, total = map(int, re.search(r'data-charts="(\d+)/(\d+)"', dom).groups())
    assert loaded == total >= len(TASKS) + 2  # every bar chart and both curve charts decoded
    png = html.screenshot(run_dir / "report.html", run_dir / "report.png", height=1600)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
