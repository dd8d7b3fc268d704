"""``report.html``: one static page of a bench run, and its screenshot in headless Chromium.

The page has a section per task (``<section class="task" data-task="ENV_ID">``): the
leaderboard table, the bar chart of feedback vs true utility (PNG, embedded), the learning
curves of the agents that learn (bandits: reward by step of the scored episode, averaged
over seeds; PPO: training-episode return by training step), and two example transcripts
(the best and the worst agent by true utility) with each step's feedback records inline.
Everything is inline (no network, no files beside it), so the page can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fbenv.errors import InvalidArgumentError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(b64: str, alt: str) -> str:
    return f'<img class="chart" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    return (c[window:] - c[:-window]) / window


def curves_chart(task: str, curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> str | None:
    """One PNG (base64) of the learning curves of ``{agent label: [curve, ...]}``, or None."""
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({c["kind"] for cs in curves.values() for c in cs})
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for label, cs in sorted(curves.items()):
            cs = [c for c in cs if c["kind"] == kind and c["y"]]
            if not cs:
                continue
            if kind == "episode":  # one per seed, same steps: the mean over seeds, smoothed
                n = min(len(c["y"]) for c in cs)
                y = np.mean([c["y"][:n] for c in cs], axis=0)
                w = max(1, n // 20)
                ys = _smooth(y, w)
                ax.plot(np.arange(len(ys)) + w, ys, label=label)
            else:  # one training run per cell
                c = cs[0]
                ys = _smooth(np.asarray(c["y"], dtype=float), max(1, len(c["y"]) // 15))
                ax.plot(c["x"][len(c["x"]) - len(ys):], ys, label=label)
        ax.set_xlabel(cs[0]["x_label"] if cs else "")
        ax.set_ylabel(cs[0]["y_label"] if cs else "")
        ax.set_title(f"{task}: {'within-episode learning' if kind == 'episode' else 'training'}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _record(r: Mapping[str, Any]) -> str:
    kind = html.escape(str(r.get("source", "feedback")))
    bits = []
    if r.get("scalar") is not None:
        scale = r.get("scale")
        bits.append(f"{r['scalar']:.3g}" + (f" on [{scale[0]:g}, {scale[1]:g}]" if scale else ""))
    if r.get("preference") is not None:
        bits.append(f"prefers #{r['preference']}")
    if r.get("ranking"):
        bits.append("ranks " + " > ".join(str(i) for i in r["ranking"]))
    sim = r.get("simulator", "rule")
    flags = "" if r.get("parsed", True) else " unread"
    flags += f" fallback={r['fallback']}" if r.get("fallback") else ""
    text = f' <q>{html.escape(r["text"])}</q>' if r.get("text") else ""
    return (f'<div class="fb"><span class="src">{kind} ({html.escape(str(sim))}{html.escape(flags)})</span> '
            f'{html.escape(", ".join(bits))}{text}</div>')


def transcript_html(title: str, t: Mapping[str, Any]) -> str:
    parts = [f'<details class="transcript" open><summary>{html.escape(title)}</summary>']
    for m in t.get("prompt") or []:
        parts.append(f'<div class="msg {html.escape(m.get("role", ""))}"><b>{html.escape(m.get("role", ""))}</b> '
                     f'{html.escape(m.get("content", ""))}</div>')
    for k, s in enumerate(t["steps"], 1):
        seat = f' ({html.escape(s["seat"])})' if s.get("seat") else ""
        parts.append(f'<div class="step"><div class="act"><b>step {k}{seat}</b> {html.escape(str(s["action"]))}'
                     f' <span class="num">reward {s["reward"]:.3g}, true utility {float(s["true_utility"] or 0):.3g}'
                     f'</span></div>')
        parts += [_record(r) for r in s["feedback"]]
        if s.get("feedback_error"):
            parts.append(f'<div class="fb err">simulator failed: {html.escape(s["feedback_error"])}</div>')
        parts.append("</div>")
    more = t.get("total_steps", 0) - len(t["steps"])
    if more > 0:
        parts.append(f'<div class="more">… {more} more steps not kept</div>')
    parts.append("</details>")
    return "\n".join(parts)


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f0f0f0}td.n{text-align:right}section.task{border-top:3px solid #446;margin-top:2em}
img.chart{max-width:100%;display:block;margin:.5em 0}.transcript{border:1px solid #ddd;margin:.5em 0;padding:.4em;
font-size:12px}.msg{color:#555;margin:.2em 0}.step{margin:.3em 0;padding:.2em;background:#fafafa}
.fb{margin-left:2em;color:#064}.fb.err{color:#a00}.src{font-weight:bold}.num{color:#666}nav a{margin-right:1em}
"""

# Marks the page rendered: every embedded chart decoded (read by the rendering test).
SCRIPT = """
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.dataset.charts = imgs.filter(i => i.complete && i.naturalWidth > 0).length + '/' + imgs.length;
  document.querySelectorAll('section.task').forEach(s => {
    const r = s.getBoundingClientRect(); if (r.height > 0) s.dataset.rendered = 'yes'; });
});
"""


def page(run_name: str, es: Sequence[Any], charts: Mapping[str, str], curves: Mapping[str, Mapping[str, list]],
         transcripts: Mapping[str, Sequence[tuple[str, Mapping[str, Any]]]], resolvable: Any) -> str:
    """The HTML of the report (``es``: report entries; the rest keyed by task id)."""
    tasks = sorted({e.task for e in es})
    out = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>fbenv bench: {html.escape(run_name)}</title>",
           f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>",
           f"<h1>fbenv bench: {html.escape(run_name)}</h1>",
           f"<p>{len(tasks)} tasks, {len(es)} leaderboard rows. Feedback return is what the simulated people "
           "paid; true utility is the hidden objective. 95% bootstrap intervals over seeds.</p><nav>",
           *(f'<a href="#{html.escape(_anchor(t))}">{html.escape(t.split("/")[-1])}</a>' for t in tasks), "</nav>"]
    for task in tasks:
        group = [e for e in es if e.task == task]
        out.append(f'<section class="task" id="{html.escape(_anchor(task))}" data-task="{html.escape(task)}">')
        out.append(f"<h2>{html.escape(task)}</h2>")
        out.append("<table><tr><th>setting</th><th>agent</th><th>seeds x rep</th><th>feedback [95% CI]</th>"
                   "<th>true utility [95% CI]</th><th>gap</th><th>success</th><th>tokens/ep</th><th>s/ep</th>"
                   "<th>sim fail</th><th>fingerprint</th></tr>")
        for e in group:
            succ = "" if e.success is None else f"{e.success:.2f}"
            out.append(
                f"<tr><td>{html.escape(e.setting)}</td><td>{html.escape(e.label)}</td><td>{e.seeds}x{e.repeats}</td>"
                f"<td class=n>{e.feedback:.3f} [{e.feedback_ci[0]:.3f}, {e.feedback_ci[1]:.3f}]</td>"
                f"<td class=n>{e.true_utility:.3f} [{e.true_ci[0]:.3f}, {e.true_ci[1]:.3f}]</td>"
                f"<td class=n>{e.gap:+.3f}</td><td class=n>{succ}</td><td class=n>{e.tokens:.0f}</td>"
                f"<td class=n>{e.seconds:.3f}</td><td class=n>{e.failure_rate:.2f}</td>"
                f"<td>{html.escape(e.fingerprint)}</td></tr>")
        out.append("</table>")
        d = resolvable(group)
        out.append(f"<p>Smallest resolvable true-utility difference: {'n/a' if d is None else f'{d:.3f}'}</p>")
        if task in charts:
            out.append(_img(charts[task], f"feedback vs true utility, {task}"))
        chart = curves_chart(task, curves.get(task, {}))
        if chart:
            out.append("<h3>Learning curves</h3>" + _img(chart, f"learning curves, {task}"))
        if transcripts.get(task):
            out.append("<h3>Example transcripts</h3>")
            out += [transcript_html(title, t) for title, t in transcripts[task]]
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def _anchor(task: str) -> str:
    return "task-" + task.split("/")[-1]


def chromium() -> str | None:
    """The headless browser's path (``FBENV_CHROMIUM`` first), or None."""
    env = os.environ.get("FBENV_CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _run_chromium(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    binary = chromium()
    if binary is None:
        raise InvalidArgumentError(f"headless Chromium: none of {', '.join(CHROMIUM_NAMES)} is on PATH "
                                   "(Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state, no lock shared between runs
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(html_path: "str | Path", timeout: float = 120) -> str:
    """The page's DOM after it loaded (its script run) in headless Chromium."""
    proc = _run_chromium(["--dump-dom", Path(html_path).resolve().as_uri()], timeout)
    if proc.returncode != 0 or "<body" not in proc.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({proc.returncode}): {proc.stderr[-800:]}")
    return proc.stdout


def screenshot(html_path: "str | Path", png_path: "str | Path", width: int = 1280, height: int = 2400,
               timeout: float = 120) -> Path:
    """A PNG of the page's top ``width`` x ``height`` pixels (the README's picture of the report)."""
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    proc = _run_chromium([f"--screenshot={png}", f"--window-size={width},{height}",
                          Path(html_path).resolve().as_uri()], timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium --screenshot wrote nothing ({proc.returncode}): {proc.stderr[-800:]}")
    return png

