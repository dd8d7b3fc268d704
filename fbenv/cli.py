"""The ``fbenv`` command: ``list``, ``info ENV``, ``play ENV``, ``perf``, ``fidelity ENV``, ``bench``, ``report``.

Every command resolves envs through the registry; a typo in an id or option is a one-line
typed error with the closest valid name, not a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from fbenv.errors import FbenvError, InvalidArgumentError
from fbenv.registry import REGISTRY, spec

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    """Turn fbenv's typed errors into a one-line message and exit status 2."""
    import functools

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FbenvError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return run  # type: ignore[return-value]


def parse_options(options: list[str]) -> dict[str, Any]:
    """``["max_turns=2", "feedback_timing=hindsight"]`` -> kwargs; values are JSON when they parse."""
    out: dict[str, Any] = {}
    for item in options:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(f"--option: expects KEY=VALUE, actual {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


@app.command("list")
def list_envs() -> None:
    """Every registered env with its capabilities."""
    for s in REGISTRY:
        kind = "multi-agent" if s.multi_agent else "single-agent"
        typer.echo(f"{s.id:<28} {kind:<12} interfaces={','.join(s.interfaces):<13} "
                   f"simulators={','.join(s.simulators):<9} {s.summary}")


@app.command()
@_friendly
def info(env_id: str = typer.Argument(..., help="e.g. fbenv/Advisor-v0")) -> None:
    """An env's spec card, capabilities and spaces."""
    import gymnasium as gym

    s = spec(env_id)
    typer.echo(f"{s.id}: {s.summary}")
    typer.echo(f"entry point: {s.entry_point}; multi-agent: {s.multi_agent}; deterministic: {s.deterministic}")
    typer.echo(f"interfaces: {', '.join(s.interfaces)}; simulators: {', '.join(s.simulators)}")
    cls = s.load()
    roles = ", ".join(f"{r.key} ({r.name})" for r in getattr(cls, "roles", ()))
    typer.echo(f"roles (simulator={{role: 'rule'|'llm'}}): {roles or 'none'}; outcomes: {', '.join(s.outcomes) or 'none'}")
    if s.discrete_id:
        typer.echo(f"discrete twin: {s.discrete_id}")
    if not s.multi_agent:
        for interface in s.interfaces:
            env = gym.make(s.id, interface=interface)
            typer.echo(f"[{interface}] observation: {env.observation_space}; action: {env.action_space}")
            env.close()
    from fbenv.registry import spec_card

    typer.echo("\n" + spec_card(s))


def _show_step(reward: float, info: dict[str, Any]) -> None:
    said = {m["content"] for m in info.get("messages", ())}
    for record in info.get("feedback", ()):
        if record.scalar is None and record.parsed and record.text in said:
            continue  # a reply already shown as a chat turn
        parts = [f"[{record.source.value}/{record.simulator}]"]
        if record.scalar is not None:
            scale = f" on {record.scale[0]:g}-{record.scale[1]:g}" if record.scale else ""
            parts.append(f"score {record.scalar:.2f}{scale}")
        if record.text and record.scalar is None:
            parts.append(record.text)
        if not record.parsed:
            parts.append(f"(unparsed reply {record.raw!r}; fallback: {record.fallback})")
        typer.echo("  feedback " + " ".join(parts))
    typer.echo(f"  reward {reward:.3f}   true utility {float(info.get('true_utility', 0.0)):.3f}")


@app.command()
@_friendly
def play(
    env_id: str = typer.Argument(..., help="e.g. fbenv/Advisor-v0"),
    interface: str = typer.Option("text", help="text: type replies; discrete: type an action number"),
    simulator: str = typer.Option("rule", help="rule or llm"),
    llm: str = typer.Option("embedded", help="backend spec for the LLM simulator"),
    seed: int = typer.Option(0, help="seed of the first episode"),
    episodes: int = typer.Option(1, min=1),
    option: list[str] = typer.Option([], "--option", "-o", help="extra env kwarg KEY=VALUE (repeatable)"),
) -> None:
    """Take the agent's seat: you write the turns, simulated people answer and give feedback."""
    import gymnasium as gym

    s = spec(env_id)
    if s.multi_agent:
        raise InvalidArgumentError(f"play: expects a single-agent env, actual multi-agent {s.id!r}")
    env = gym.make(s.id, interface=interface, simulator=simulator, llm=llm, render_mode="ansi",
                   **parse_options(option))
    try:
        for episode in range(episodes):
            obs, info = env.reset(seed=seed + episode)
            typer.echo(f"\n=== {s.id} episode {episode + 1} (seed {seed + episode}) ===")
            typer.echo(env.render() or str(obs))
            shown = len(info.get("messages", ()))
            done = False
            while not done:
                action = _read_action(env, interface)
                if action is None:
                    typer.echo("bye")
                    return
                obs, reward, terminated, truncated, info = env.step(action)
                messages = info.get("messages", ())
                for m in messages[shown + 1 :]:  # the agent's own turn was just typed
                    typer.echo(f"{m['role']}: {m['content']}")
                shown = len(messages)
                _show_step(float(reward), info)
                if info.get("feedback_error"):
                    typer.echo(f"  simulator gave up: {info['feedback_error']}")
                done = terminated or truncated
            summary = {k: info[k] for k in ("is_success", "regret", *s.outcomes) if k in info}
            typer.echo(f"episode over ({'terminated' if terminated else 'truncated'}): {summary}")
    finally:
        env.close()


def _read_action(env: Any, interface: str) -> Any:
    """The next action from standard input; None at end of input or on 'quit'."""
    if interface == "discrete":
        meanings = getattr(env.unwrapped, "get_action_meanings", lambda: None)()
        if meanings:
            for i, m in enumerate(meanings):
                typer.echo(f"  {i:>2}: {m}")
    while True:
        typer.echo("you> ", nl=False)
        line = sys.stdin.readline()
        if not line or line.strip().lower() in {"quit", "exit"}:
            return None
        line = line.rstrip("\n")
        if interface != "discrete":
            return line
        if line.strip().isdigit() and env.action_space.contains(int(line)):
            return int(line)
        typer.echo(f"  expects an action number in {env.action_space}, actual {line!r}")


@app.command()
@_friendly
def perf(
    env_id: str = typer.Option("", "--env", help="default: the first registered single-agent task with an LLM simulator"),
    llm: str = typer.Option("embedded", help="backend spec (the model is loaded once)"),
    num_envs: int = typer.Option(8, min=1),
    steps: int = typer.Option(3, min=1, help="vector steps timed per measurement"),
    seed: int = 0,
    rule_only: bool = typer.Option(False, help="only the rule simulators of every task (no model)"),
    option: list[str] = typer.Option(
        [], "--option", "-o",
        help="env option KEY=VALUE; by default the discrete interface, whose actions are the task's own "
        "sentences (random text actions are character soup, thousands of tokens long), and the task's "
        "TaskSpec.perf_variant",
    ),
) -> None:
    """Throughput: batched vs SyncVectorEnv, env overhead over raw backend time, model load time."""
    from fbenv import perf as p
    from fbenv.llm.registry import build_backend

    cartpole = p.measure_cartpole_steps(seed=seed)
    typer.echo(f"rule simulators, 1 env each, against CartPole-v1 via gym.make in this run ({cartpole:,.0f} steps/s):")
    for t in REGISTRY:
        if env_id and t.id != spec(env_id).id:
            continue
        view = {"interface": "discrete"} if "discrete" in t.interfaces else {}
        measure = p.measure_parallel_steps if t.multi_agent else p.measure_rule_steps
        rate = measure(t.id, seed=seed, **view, **t.perf_variant)
        typer.echo(f"  {t.id:<28} {rate:>9,.0f} steps/s  {rate / cartpole:.3f}x CartPole"
                   + ("  (every seat learnable)" if t.multi_agent else ""))
    if not env_id:
        from fbenv import sandbox

        ms = sandbox.measure_ms()
        typer.echo(f"code sandbox ({sandbox.available_isolation()}): {ms:.1f} ms median per hidden-test run "
                   "(10 tests, one interpreter)")
    if rule_only:
        return
    s = spec(env_id) if env_id else next(t for t in REGISTRY if not t.multi_agent and "llm" in t.simulators)
    env_id = s.id
    kwargs = parse_options(option) if option else {
        **({"interface": "discrete"} if "discrete" in s.interfaces else {}), **s.perf_variant
    }
    backend = build_backend(llm)  # uncached: every timed call reaches the model
    load_s = p.measure_load(lambda: build_backend(llm))
    typer.echo(f"{llm}: a second load of the backend took {load_s:.2f} s")
    v = p.measure_vector(env_id, backend, num_envs=num_envs, steps=steps, seed=seed, **kwargs)
    typer.echo(
        f"{num_envs} envs x {steps} steps, LLM simulator: batched {v.batched_steps_per_s:.2f} steps/s "
        f"({v.batched_calls} backend calls), SyncVectorEnv {v.sync_steps_per_s:.2f} steps/s "
        f"({v.sync_calls} calls): speed-up {v.speedup:.2f}x"
    )
    o = p.measure_overhead(env_id, backend, num_envs=num_envs, steps=steps, seed=seed, **kwargs)
    typer.echo(
        f"overhead: env {o.env_s:.2f} s / raw backend {o.backend_s:.2f} s for the same {o.requests} prompts "
        f"in {o.batches} batches = {o.ratio:.3f}"
    )


@app.command()
@_friendly
def fidelity(
    env_id: str = typer.Argument(..., help="e.g. fbenv/Advisor-v0, or 'all' for every registered task"),
    llm: str = typer.Option("embedded", help="backend spec of the LLM simulator being measured"),
    seeds: int = typer.Option(10, min=3, help="seeds per (variant, policy)"),
    variant: list[str] = typer.Option([], "--variant", "-v", help="probe variant to run (repeatable; default all)"),
    option: list[str] = typer.Option([], "--option", "-o", help="extra env kwarg KEY=VALUE for every episode"),
    out: str = typer.Option("", help="save the report as JSON here"),
) -> None:
    """Rule vs LLM simulator on the same episodes: agreement per role, reward rank correlation,
    parse failures and fallbacks, and the paper's direction under each."""
    from fbenv import fidelity as fid

    ids = [s.id for s in REGISTRY if "llm" in s.simulators] if env_id == "all" else [spec(env_id).id]
    reports = []
    for one in ids:
        report = fid.measure(one, llm=llm, seeds=range(seeds), variants=variant or None,
                             extra=parse_options(option))
        typer.echo(fid.format_report(report) + "\n")
        reports.append(report)
    if out:
        from pathlib import Path

        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([r.as_dict() for r in reports], indent=2, default=str))
        typer.echo(f"saved {path}")


@app.command()
@_friendly
def bench(
    suite: str = typer.Argument("rlhs", help="which suite (fbenv.baselines.SUITES)"),
    episodes: int = typer.Option(16, min=1, help="seeds per cell"),
    llm: str = typer.Option("embedded", help="backend spec of the LLM-simulated people"),
    skip_llm: bool = typer.Option(False, help="rule simulators only"),
    out: str = typer.Option("", help="where the rows are saved as JSON (default: the suite's own file under results/); "
                            "with --suite, the run directory"),
    grid_suite: str = typer.Option("", "--suite", help="a harness suite: quick, full or a TOML path "
                                   "(one SQLite row per episode, a report at the end)"),
    resume: str = typer.Option("", help="continue the harness run in this directory"),
    repeats: int = typer.Option(1, min=1, help="with --suite: play every (cell, seed) this many times"),
    workers: int = typer.Option(1, min=1, help="with --suite: local worker processes"),
    executor: str = typer.Option("local", help="with --suite: local (worker processes) or ray (a Ray cluster)"),
    address: str = typer.Option("", help="with --executor ray: the cluster (auto, host:port, ray://host:10001); "
                                "default: a Ray instance on this machine"),
    lockstep: int = typer.Option(16, min=1, help="with --suite: LLM-simulated episodes of a cell played together, "
                                 "their simulator calls batched (1: one at a time)"),
) -> None:
    """A benchmark suite; the default, rlhs, is Advisor under foresight, partial and full hindsight.
    With --suite (or --resume), the grid harness of fbenv.baselines.harness."""
    import importlib

    from fbenv.errors import UnknownNameError

    if grid_suite or resume:
        from fbenv.baselines.harness import bench as run_grid

        run_grid(grid_suite, out=out or None, resume=resume or None, repeats=repeats, workers=workers, llm=llm,
                 skip_llm=skip_llm, echo=typer.echo, executor=executor, address=address or None, lockstep=lockstep)
        return
    suites = importlib.import_module("fbenv.baselines").SUITES
    if suite not in suites:
        raise UnknownNameError("bench suite", suite, suites)
    module, _, fn = suites[suite].partition(":")
    run = getattr(importlib.import_module(module), fn)
    run(episodes, llm, skip_llm, out or None, typer.echo)


@app.command()
@_friendly
def report(
    run_dir: str = typer.Argument(..., help="a directory written by `fbenv bench --suite`"),
    mix_fingerprints: bool = typer.Option(False, help="put rows from different feedback sources in one column"),
    plots: bool = typer.Option(True, help="a bar chart per task (matplotlib)"),
    screenshot: str = typer.Option("", help="also save a PNG of report.html here (headless Chromium), "
                                   "e.g. the README's picture"),
) -> None:
    """Leaderboard (Markdown, CSV), charts and report.html of a bench run."""
    from fbenv.baselines.report import write_report

    paths = write_report(run_dir, mix_fingerprints=mix_fingerprints, plots=plots, echo=typer.echo)
    typer.echo(paths["md"].read_text())
    if screenshot:
        from fbenv.baselines.html import screenshot as shoot

        typer.echo(f"saved {shoot(paths['html'], screenshot)}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
