"""``fbenv report RUN_DIR``: the leaderboard of a bench run (Markdown, CSV), a bar chart per task,
and ``report.html`` (:mod:`fbenv.baselines.html`: all of it with learning curves and transcripts).

Per cell (task, env kwargs, agent, agent kwargs): mean feedback return and mean true utility
with bootstrap 95% confidence intervals over seeds (repeats are averaged within a seed
first), their gap, success rate, the task's numeric outcomes, tokens and seconds per
episode, the simulator failure rate (episodes with a fallback, an unread reply or a
simulator give-up), the spread across repeats, and pass^k where the task reports success.
Per task: the smallest difference in true utility between two agents the data resolves.

Rows whose feedback came from different places (fingerprints: simulator, model and its
weights, prompt templates, sampling, fbenv version) are never averaged together or put side
by side in one task's table unless ``mix_fingerprints``: a simulator swap can move scores
more than any agent does.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fbenv.baselines.harness import cells_of, rows_of
from fbenv.errors import FbenvError

BOOTSTRAP = 2000
Z_POWER = 1.96 + 0.84  # a two-sided 5% test with 80% power


class FingerprintMixError(FbenvError):
    """Rows from different feedback sources would share one comparison."""


def bootstrap_ci(values: Sequence[float], n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of the mean (a fixed generator: the same data, the same interval)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return (float(x.mean()), float(x.mean())) if len(x) else (math.nan, math.nan)
    means = x[np.random.default_rng(seed).integers(0, len(x), (n, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def pass_hat_k(successes_per_seed: Sequence[Sequence[bool]], k: int) -> float:
    """tau-bench's pass^k: the chance that k trials of a task all succeed, estimated per seed
    as C(c, k) / C(n, k) and averaged over seeds."""
    vals = [math.comb(sum(s), k) / math.comb(len(s), k) for s in successes_per_seed if len(s) >= k]
    return float(np.mean(vals)) if vals else math.nan


@dataclass
class Entry:
    task: str
    env_kwargs: dict[str, Any]
    agent: str
    agent_kwargs: dict[str, Any]
    simulator: str
    fingerprint: str
    seeds: int
    repeats: int
    feedback: float
    feedback_ci: tuple[float, float]
    true_utility: float
    true_ci: tuple[float, float]
    gap: float
    success: float | None
    pass_k: dict[int, float]
    outcomes: dict[str, float]
    tokens: float
    seconds: float
    failure_rate: float
    repeat_spread: float | None
    true_se: float
    fingerprint_json: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        parts = [self.agent]
        if self.agent_kwargs:
            parts.append(",".join(f"{k}={v}" for k, v in sorted(self.agent_kwargs.items())))
        return " ".join(parts)

    @property
    def setting(self) -> str:
        kw = {k: v for k, v in self.env_kwargs.items() if k not in ("simulator", "llm")}
        sim = self.simulator + (f" ({self.env_kwargs['llm']})" if "llm" in self.env_kwargs else "")
        return ", ".join([sim, *(f"{k}={v}" for k, v in sorted(kw.items()))])


def _entry(rows: Sequence[Mapping[str, Any]]) -> Entry:
    first = rows[0]
    by_seed: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_seed.setdefault(int(r["seed"]), []).append(r)
    fb = [float(np.mean([r["reward"] for r in rs])) for rs in by_seed.values()]
    tu = [float(np.mean([r["true_utility"] for r in rs])) for rs in by_seed.values()]
    repeats = max(len(rs) for rs in by_seed.values())
    spread = (float(np.mean([np.std([r["true_utility"] for r in rs]) for rs in by_seed.values()]))
              if repeats > 1 else None)
    has_success = any(r["has_success"] for r in rows)
    pass_k = ({k: pass_hat_k([[bool(r["success"]) for r in rs] for rs in by_seed.values()], k)
               for k in range(1, repeats + 1)} if has_success else {})
    numeric: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r["outcomes"].items():
            if isinstance(v, (int, float)):  # bools too: a share
                numeric.setdefault(k, []).append(float(v))
    return Entry(
        task=first["env"], env_kwargs=dict(first["env_kwargs"]), agent=first["agent"],
        agent_kwargs=dict(first["agent_kwargs"]), simulator=first["simulator"], fingerprint=first["fingerprint"],
        seeds=len(by_seed), repeats=repeats, feedback=float(np.mean(fb)), feedback_ci=bootstrap_ci(fb),
        true_utility=float(np.mean(tu)), true_ci=bootstrap_ci(tu), gap=float(np.mean(fb) - np.mean(tu)),
        success=float(np.mean([r["success"] for r in rows])) if has_success else None, pass_k=pass_k,
        outcomes={k: float(np.mean(v)) for k, v in numeric.items()},
        tokens=float(np.mean([r["prompt_tokens"] + r["completion_tokens"] for r in rows])),
        seconds=float(np.mean([r["seconds"] for r in rows])),
        failure_rate=float(np.mean([bool(r["fallbacks"] or r["parse_failures"] or r["feedback_error"]) for r in rows])),
        repeat_spread=spread,
        true_se=float(np.std(tu, ddof=1) / math.sqrt(len(tu))) if len(tu) > 1 else math.nan,
        fingerprint_json=dict(first["fingerprint_json"]),
    )


def _differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            out += _differences(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}: {x!r} vs {y!r}")
    return out


def check_fingerprints(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why rows that would be compared came from different feedback sources ([] if they did not).

    A cell's rows must share one fingerprint (a resumed run whose model changed does not);
    so must the cells of one task that share a simulator setting (the agents' column)."""
    problems = []
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        setting = {k: v for k, v in r["env_kwargs"].items()}
        groups.setdefault(json.dumps([r["env"], setting], sort_keys=True, default=str), []).append(r)
    for key, rs in groups.items():
        fps: dict[str, Mapping[str, Any]] = {}
        for r in rs:
            fps.setdefault(r["fingerprint"], r["fingerprint_json"])
        if len(fps) > 1:
            (k1, a), (k2, b) = list(fps.items())[:2]
            env, setting = json.loads(key)
            problems.append(f"{env} {setting}: {len(fps)} fingerprints ({k1} vs {k2}: "
                            + "; ".join(_differences(a, b)) + ")")
    return problems


def entries(rows: Sequence[Mapping[str, Any]], mix_fingerprints: bool = False) -> list[Entry]:
    problems = check_fingerprints(rows)
    if problems and not mix_fingerprints:
        raise FingerprintMixError(
            "report: rows whose feedback came from different sources would share a column; "
            "scores across them are not comparable (pass --mix-fingerprints to report them anyway):\n  "
            + "\n  ".join(problems))
    out = []
    for rs in cells_of(rows).values():
        if mix_fingerprints:
            out.append(_entry(rs))
        else:
            by_fp: dict[str, list[Mapping[str, Any]]] = {}
            for r in rs:
                by_fp.setdefault(r["fingerprint"], []).append(r)
            out += [_entry(part) for part in by_fp.values()]
    return sorted(out, key=lambda e: (e.task, e.setting, -e.true_utility, e.label))


def resolvable(es: Sequence[Entry]) -> float | None:
    """The smallest true-utility difference between two of these agents a two-sided 5% test
    detects with 80% power, from the median standard error over seeds."""
    se = [e.true_se for e in es if math.isfinite(e.true_se)]
    return Z_POWER * math.sqrt(2) * float(np.median(se)) if se else None


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def markdown(es: Sequence[Entry], mixed: bool = False) -> str:
    lines = ["# Leaderboard", ""]
    if mixed:
        lines += ["**Warning: rows with different fingerprints are mixed (--mix-fingerprints).**", ""]
    for task in sorted({e.task for e in es}):
        lines += [f"## {task}", ""]
        for setting in sorted({e.setting for e in es if e.task == task}):
            group = [e for e in es if e.task == task and e.setting == setting]
            fps = sorted({e.fingerprint for e in group})
            lines += [f"### {setting} (fingerprint {', '.join(fps)})", ""]
            outcome_keys = sorted({k for e in group for k in e.outcomes})
            head = ["agent", "seeds x rep", "feedback [95% CI]", "true utility [95% CI]", "gap", "success", "pass^k",
                    *outcome_keys, "tokens/ep", "s/ep", "sim fail", "rep spread"]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for e in group:
                pk = " ".join(f"{k}:{v:.2f}" for k, v in e.pass_k.items())
                cells = [e.label, f"{e.seeds}x{e.repeats}",
                         f"{e.feedback:.3f} [{_f(e.feedback_ci[0])}, {_f(e.feedback_ci[1])}]",
                         f"{e.true_utility:.3f} [{_f(e.true_ci[0])}, {_f(e.true_ci[1])}]",
                         f"{e.gap:+.3f}", _f(e.success, ".2f"), pk,
                         *(_f(e.outcomes.get(k)) for k in outcome_keys),
                         f"{e.tokens:.0f}", f"{e.seconds:.3f}", f"{e.failure_rate:.2f}", _f(e.repeat_spread)]
                lines.append("| " + " | ".join(cells) + " |")
            d = resolvable(group)
            lines += ["", f"Smallest resolvable true-utility difference between two agents here: "
                          f"{_f(d) or 'n/a (one seed per cell)'} (5% two-sided, 80% power).", ""]
    return "\n".join(lines)


CSV_FIELDS = ("task", "setting", "agent", "agent_kwargs", "env_kwargs", "simulator", "fingerprint", "seeds", "repeats",
              "feedback", "feedback_lo", "feedback_hi", "true_utility", "true_lo", "true_hi", "gap", "success",
              "pass_k", "outcomes", "tokens_per_episode", "seconds_per_episode", "simulator_failure_rate",
              "repeat_spread", "resolvable_difference")


def write_csv(es: Sequence[Entry], path: Path) -> None:
    groups = {(e.task, e.setting) for e in es}
    res = {g: resolvable([e for e in es if (e.task, e.setting) == g]) for g in groups}
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, CSV_FIELDS)
        w.writeheader()
        for e in es:
            w.writerow({
                "task": e.task, "setting": e.setting, "agent": e.agent,
                "agent_kwargs": json.dumps(e.agent_kwargs, sort_keys=True),
                "env_kwargs": json.dumps(e.env_kwargs, sort_keys=True, default=str), "simulator": e.simulator,
                "fingerprint": e.fingerprint, "seeds": e.seeds, "repeats": e.repeats, "feedback": e.feedback,
                "feedback_lo": e.feedback_ci[0], "feedback_hi": e.feedback_ci[1], "true_utility": e.true_utility,
                "true_lo": e.true_ci[0], "true_hi": e.true_ci[1], "gap": e.gap, "success": e.success,
                "pass_k": json.dumps(e.pass_k), "outcomes": json.dumps(e.outcomes, sort_keys=True),
                "tokens_per_episode": e.tokens, "seconds_per_episode": e.seconds,
                "simulator_failure_rate": e.failure_rate, "repeat_spread": e.repeat_spread,
                "resolvable_difference": res[(e.task, e.setting)],
            })


def plot_task(es: Sequence[Entry], path: Path) -> None:
    """Feedback return vs true utility per agent (and simulator setting), with the 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{e.label}\n{e.setting}" for e in es]
    x = np.arange(len(es))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(es) + 2), 4.5))
    for offset, name, mean, ci in ((-0.2, "feedback return", "feedback", "feedback_ci"),
                                   (0.2, "true utility", "true_utility", "true_ci")):
        m = np.array([getattr(e, mean) for e in es])
        lo = np.array([getattr(e, ci)[0] for e in es])
        hi = np.array([getattr(e, ci)[1] for e in es])
        ax.bar(x + offset, m, 0.4, label=name, yerr=np.vstack([m - lo, hi - m]), capsize=3)
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(es[0].task)
    ax.set_ylabel("per episode")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _html_parts(run_dir: Path, rows: Sequence[Mapping[str, Any]], es: Sequence[Entry]):
    """Per task: ``{agent label: [curve, ...]}`` and two example transcripts (the best and the
    worst agent by true utility that kept one), from the store's details."""
    from fbenv.baselines.store import Store

    with Store(run_dir / "results.sqlite") as store:
        curves_by_key, transcripts_by_key = store.details("curve"), store.details("transcript")
    by_cell = {r["cell"]: r for r in rows}
    entry_of = {}
    for e in es:
        for cell, r in by_cell.items():
            if (r["env"], r["agent"], r["env_kwargs"], r["agent_kwargs"]) == (e.task, e.agent, e.env_kwargs, e.agent_kwargs):
                entry_of[cell] = e
    curves: dict[str, dict[str, list]] = {}
    for (cell, _s, _r), c in curves_by_key.items():
        e = entry_of.get(cell)
        if e is not None:
            curves.setdefault(e.task, {}).setdefault(f"{e.label} ({e.setting})", []).append(c)
    results = {(r["cell"], r["seed"], r["repeat"]): r for r in rows}
    transcripts: dict[str, list] = {}
    for task in sorted({e.task for e in es}):
        kept = [(e, k) for k in transcripts_by_key for e in [entry_of.get(k[0])] if e is not None and e.task == task]
        if not kept:
            continue
        ranked = sorted(kept, key=lambda ek: (-ek[0].true_utility, ek[0].label, ek[1]))
        picks = [ranked[0]] + [ek for ek in reversed(ranked) if ek[0] is not ranked[0][0]][:1]
        if len(picks) < 2 and len(ranked) > 1:
            picks.append(ranked[1])
        for e, k in picks:
            r = results[k]
            title = (f"{e.label} ({e.setting}), seed {k[1]}: feedback return {r['reward']:.3f}, "
                     f"true utility {r['true_utility']:.3f}")
            transcripts.setdefault(task, []).append((title, transcripts_by_key[k]))
    return curves, transcripts


def write_html(run_dir: Path, rows: Sequence[Mapping[str, Any]], es: Sequence[Entry], charts: Mapping[str, Path]) -> Path:
    import base64

    from fbenv.baselines import html

    curves, transcripts = _html_parts(run_dir, rows, es)
    b64 = {t: base64.b64encode(p.read_bytes()).decode() for t, p in charts.items()}
    path = run_dir / "report.html"
    path.write_text(html.page(run_dir.name, es, b64, curves, transcripts, resolvable), encoding="utf-8")
    return path


def write_report(run_dir: "str | Path", mix_fingerprints: bool = False, plots: bool = True,
                 echo: Callable[[str], None] = print) -> dict[str, Path]:
    """leaderboard.md, leaderboard.csv, ``plots/<task>.png`` and report.html in ``run_dir``."""
    run_dir = Path(run_dir)
    rows = rows_of(run_dir)
    es = entries(rows, mix_fingerprints)
    md = run_dir / "leaderboard.md"
    md.write_text(markdown(es, mixed=mix_fingerprints and bool(check_fingerprints(rows))))
    csv_path = run_dir / "leaderboard.csv"
    write_csv(es, csv_path)
    out = {"md": md, "csv": csv_path}
    if plots:
        (run_dir / "plots").mkdir(exist_ok=True)
        for task in sorted({e.task for e in es}):
            png = run_dir / "plots" / f"{task.split('/')[-1]}.png"
            plot_task([e for e in es if e.task == task], png)
            out[task] = png
    charts = {t: p for t, p in out.items() if t not in ("md", "csv")}
    out["html"] = write_html(run_dir, rows, es, charts)
    echo(f"wrote {md}, {csv_path}, {out['html']}"
         + (f" and {len(charts)} charts in {run_dir / 'plots'}" if plots else ""))
    return out
