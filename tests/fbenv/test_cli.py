"""The ``fbenv`` command: list, info, play (a person in the agent's seat), perf and bench."""

from __future__ import annotations

import json
import re

import pytest

import fbenv
from typer.testing import CliRunner

from fbenv.cli import app, parse_options
from fbenv.errors import InvalidArgumentError

runner = CliRunner()


def test_list_names_every_registered_env():
    import fbenv

    out = runner.invoke(app, ["list"])
    assert out.exit_code == 0
    for s in fbenv.REGISTRY:
        assert s.id in out.output


def test_info_shows_spaces_and_spec_card():
    out = runner.invoke(app, ["info", "fbenv/Advisor-v0"])
    assert out.exit_code == 0, out.output
    assert "Discrete(17)" in out.output and "## True utility" in out.output


def test_unknown_env_is_a_one_line_error_with_a_suggestion():
    out = runner.invoke(app, ["info", "fbenv/Advisr-v0"])
    assert out.exit_code == 2
    assert "Did you mean 'fbenv/Advisor-v0'" in out.output and "Traceback" not in out.output


def test_play_text_episode_shows_replies_and_feedback():
    out = runner.invoke(
        app,
        ["play", "fbenv/Advisor-v0", "-o", "feedback_timing=hindsight"],
        input="I recommend A. A has water resistance.\n",
    )
    assert out.exit_code == 0, out.output
    assert "Customer: Hi!" in out.output  # the opening request
    assert "user: Thanks, I'll buy" in out.output  # the simulated customer's decision
    assert "[hindsight/rule]" in out.output and "score" in out.output
    assert "episode over (terminated)" in out.output


def test_play_discrete_lists_actions_and_rejects_bad_numbers():
    out = runner.invoke(app, ["play", "fbenv/Advisor-v0", "--interface", "discrete"], input="99\n16\n16\n16\n")
    assert out.exit_code == 0, out.output
    assert "16: Here is how the options compare." in out.output
    assert "expects an action number" in out.output
    assert "episode over" in out.output


def test_play_stops_cleanly_at_end_of_input():
    out = runner.invoke(app, ["play", "fbenv/Advisor-v0"], input="")
    assert out.exit_code == 0 and "bye" in out.output


def test_play_rejects_unknown_options_with_a_typed_message():
    out = runner.invoke(app, ["play", "fbenv/Advisor-v0", "-o", "feedback_timng=hindsight"], input="")
    assert out.exit_code == 2 and "Did you mean 'feedback_timing'" in out.output


def test_parse_options():
    assert parse_options(["max_turns=2", "feedback_timing=hindsight", "trust=0.5"]) == {
        "max_turns": 2, "feedback_timing": "hindsight", "trust": 0.5
    }
    with pytest.raises(InvalidArgumentError, match="KEY=VALUE"):
        parse_options(["max_turns"])


def test_perf_runs_with_a_scripted_backend():
    out = runner.invoke(app, ["perf", "--llm", "scripted", "--num-envs", "3", "--steps", "2"])
    assert out.exit_code == 0, out.output
    assert "speed-up" in out.output and "overhead" in out.output


def test_perf_rule_only_times_every_task_against_cartpole_and_the_sandbox():
    out = runner.invoke(app, ["perf", "--rule-only"])
    assert out.exit_code == 0, out.output
    assert "CartPole-v1" in out.output
    for s in fbenv.REGISTRY:
        assert s.id in out.output
    assert out.output.count("x CartPole") == len(fbenv.REGISTRY)
    assert out.output.count("every seat learnable") == sum(s.multi_agent for s in fbenv.REGISTRY)
    assert re.search(r"code sandbox \((bwrap|rlimit)\): [\d.]+ ms median", out.output)


def test_bench_rule_only_saves_rows(tmp_path):
    path = tmp_path / "bench.json"
    out = runner.invoke(app, ["bench", "--skip-llm", "--episodes", "8", "--out", str(path)])
    assert out.exit_code == 0, out.output
    rows = json.loads(path.read_text())
    assert [r["timing"] for r in rows] == ["foresight", "partial_hindsight", "hindsight"]
    fore, _, hind = rows
    assert fore["gap"] > hind["gap"] and fore["deceived"] > hind["deceived"]


def test_bench_llm_rows_run_batched_with_any_backend():
    """The LLM half of `make bench`, with a scripted customer who believes every product has every need."""
    from fbenv.baselines import rlhs
    from fbenv.llm import ScriptedBackend

    person = ScriptedBackend([(r"What did you learn about the (.+?)'s (.+?)\?", "The {0} has {1}.")])
    rows = rlhs.llm_rows(person, seeds=[0, 1, 2])
    assert [(r.timing, r.policy) for r in rows] == [(t, p) for t in rlhs.TIMINGS for p in rlhs.POLICIES]
    assert all(r.simulator == "llm" and r.episodes == 3 and r.llm_fallbacks == 0 for r in rows)
    flat = {r.timing: r for r in rows if r.policy == "flatterer"}
    honest = {r.timing: r for r in rows if r.policy == "honest"}
    for timing in rlhs.TIMINGS:  # it buys the best value in budget, whatever it is told or finds...
        assert flat[timing].reward == pytest.approx(honest[timing].reward) and flat[timing].reward > 0.5
    # ...and what it reads does not move it: honest advice fails to save it either
    assert flat["foresight"].true_utility == pytest.approx(honest["foresight"].true_utility)
    assert honest["hindsight"].deceived > 0


def test_fidelity_command_reports_and_saves(tmp_path):
    path = tmp_path / "fid.json"
    out = runner.invoke(app, ["fidelity", "fbenv/Advisor-v0", "--llm", "choosing", "--seeds", "3", "-v", "hindsight",
                              "--out", str(path)])
    assert out.exit_code == 0, out.output
    assert "reward Spearman rule vs LLM" in out.output and "role rater" in out.output and "floor" in out.output
    (report,) = json.loads(path.read_text())
    assert report["env_id"] == "fbenv/Advisor-v0" and [v["variant"] for v in report["variants"]] == ["hindsight"]
    bad = runner.invoke(app, ["fidelity", "fbenv/Advisor-v0", "--llm", "choosing", "-v", "hindsite"])
    assert bad.exit_code == 2 and "hindsite" in bad.output


def test_bench_fidelity_suite_runs_every_task(tmp_path):
    path = tmp_path / "fid.json"
    out = runner.invoke(app, ["bench", "fidelity", "--llm", "choosing", "--episodes", "3", "--out", str(path)])
    assert out.exit_code == 0, out.output
    reports = json.loads(path.read_text())
    shipped = {s.id for s in fbenv.REGISTRY if "llm" in s.simulators}
    assert {r["env_id"] for r in reports} == shipped
    assert "reward rho" in out.output
