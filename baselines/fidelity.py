"""The fidelity suite: every registered task's LLM-simulated people against its rule people.

One row per (task, probe variant): the rule-vs-LLM Spearman of episode rewards on the
same (seed, scripted policy) episodes, beside the floor a simulator that reads nothing
reaches; the paper's direction under the rule and the LLM simulator; the LLM's fallbacks
per episode; and each role's own figure on identical contexts. See :mod:`fbenv.fidelity`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fbenv.baselines.results import save_rows
from fbenv.fidelity import FidelityReport, measure
from fbenv.registry import REGISTRY


def _f(x: "float | None", fmt: str = "+.2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def format_table(reports: list[FidelityReport]) -> str:
    head = (f"{'task':<22} {'variant':<24} {'n':>4} {'reward rho':>10} {'floor':>6} {'dir rule':>8} "
            f"{'dir LLM':>8} {'holds':>5} {'fallbk':>6}  roles (rho or agreement; floor)")
    lines = [head, "-" * len(head)]
    for rep in reports:
        for v in rep.variants:
            holds = {True: "yes", False: "NO", None: "-"}[v.direction_holds]
            roles = ", ".join(f"{r.role} {_f(r.score)} ({_f(r.floor)})" for r in v.roles if r.kind != "text")
            lines.append(
                f"{rep.env_id.split('/')[-1]:<22} {v.variant[:24]:<24} {v.episodes:>4} {_f(v.reward_spearman):>10} "
                f"{_f(v.reward_spearman_floor):>6} {_f(v.direction_rule, '+.3f'):>8} {_f(v.direction_llm, '+.3f'):>8} "
                f"{holds:>5} {v.llm_fallbacks:>6.2f}  {roles}"
            )
    return "\n".join(lines)


def bench(episodes: int, llm: str, skip_llm: bool, out: "str | None" = None,
          echo: Callable[[str], None] = print) -> "Path | None":
    """What ``fbenv bench fidelity`` runs: ``episodes`` seeds per (task, variant, policy)."""
    if skip_llm:
        echo("fidelity: nothing to measure without the LLM simulator (--skip-llm)")
        return None
    reports = []
    for task in REGISTRY:
        if "llm" not in task.simulators:
            continue
        echo(f"measuring {task.id} ...")
        reports.append(measure(task.id, llm=llm, seeds=range(episodes)))
    echo(f"\nRule vs LLM simulator ({llm}), the same episodes: rank correlation of episode rewards")
    echo(format_table(reports))
    path = save_rows([r.as_dict() for r in reports], out or "results/bench-fidelity.json")
    echo(f"\nsaved {path}")
    return path
