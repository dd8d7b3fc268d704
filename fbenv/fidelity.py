"""How faithful is an LLM-simulated person? The same episodes, rule and LLM, compared.

`fbenv fidelity ENV` (and the ``fidelity`` bench suite) measures each task two ways:

- **per role, on identical contexts** (shadow mode, :meth:`fbenv.sim.Simulation.shadow`):
  the episodes run on the rule simulator, and every call of every role is also put to the
  LLM version with the same context. Numeric answers (ratings, probabilities) give a
  Spearman rank correlation and a mean absolute difference; labelled answers (decisions,
  preferences, verdicts) an agreement rate; free text is not compared. The LLM version's
  parse-failure rate comes with it.
- **the floor**: both again with a simulator that reads nothing (``choosing:blind``: every
  scored choice equally likely). A decomposed role combines its answers by the rule's own
  formula, so part of its agreement comes from that formula alone (a price, a budget);
  the floor says how much, and the LLM's figure means something only above it.
- **end to end**: the same (seed, scripted policy) episodes run once under the rule
  simulator and once under the LLM simulator. The Spearman correlation of their episode
  rewards is the task's headline agreement; the LLM run's fallbacks and parse failures
  per episode are reported; and the paper's direction (a number the task computes from
  its episodes, e.g. Advisor's flatterer-minus-honest reward gap) is computed for both.

A task declares how it is probed with a :class:`Probe`, returned by a ``fidelity_probe()``
function in its module (or an attribute of that name on its env class): named variants
(kwargs), scripted policies whose right answer is known, and the direction check. Tasks
without one are probed with seeded random discrete actions.
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from scipy.stats import spearmanr

from fbenv.episodes import EpisodeResult, lockstep_episodes, run_parallel_episode
from fbenv.errors import InvalidArgumentError
from fbenv.llm.base import Backend
from fbenv.registry import TaskSpec, spec

# (env) -> (observation, info) -> action; multi-agent: (env) -> (seat, observation, info) -> action
PolicyFactory = Callable[[Any], Callable[..., Any]]
BLIND = "choosing:blind"  # reads nothing: every scored choice equally likely


@dataclass(frozen=True)
class Probe:
    """How `fbenv fidelity` exercises one task.

    ``direction(variant, results)`` gets each policy's episode results under one variant
    and returns the number the paper's finding is about; ``expected_sign[variant]`` says
    which sign it should have there (+1, -1; a variant not listed has no expectation).
    """

    policies: Mapping[str, PolicyFactory]
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    direction: Callable[[str, Mapping[str, Sequence[EpisodeResult]]], float] | None = None
    direction_doc: str = ""
    expected_sign: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.policies or not self.variants:
            raise InvalidArgumentError("Probe: expects at least one policy and one variant")


@dataclass(frozen=True)
class RoleFidelity:
    """One role's LLM version against its rule version on identical contexts."""

    role: str
    calls: int
    kind: str  # "numeric" | "label" | "text"
    spearman: float | None = None  # numeric answers
    mean_abs_diff: float | None = None  # numeric answers
    agreement: float | None = None  # labelled answers: share of identical labels
    parse_failure_rate: float = 0.0
    floor: float | None = None  # the same figure (Spearman or agreement) for a simulator that reads nothing

    @property
    def score(self) -> float | None:
        return self.spearman if self.kind == "numeric" else self.agreement


@dataclass(frozen=True)
class VariantFidelity:
    variant: str
    kwargs: Mapping[str, Any]
    episodes: int
    reward_spearman: float | None  # rule vs LLM episode rewards, same (seed, policy) episodes
    rule_reward: float
    llm_reward: float
    llm_fallbacks: float  # per episode
    llm_parse_failures: float  # per episode
    llm_truncated: float  # share of episodes a simulator give-up or backend failure cut
    roles: tuple[RoleFidelity, ...]
    direction_rule: float | None = None
    direction_llm: float | None = None
    expected_sign: int = 0
    reward_spearman_floor: float | None = None  # the same for a simulator that reads nothing

    @property
    def direction_holds(self) -> bool | None:
        """The LLM simulator shows the paper's direction (None: no expectation here)."""
        if not self.expected_sign or self.direction_llm is None:
            return None
        return self.direction_llm * self.expected_sign > 0


@dataclass(frozen=True)
class FidelityReport:
    env_id: str
    llm: str
    seeds: tuple[int, ...]
    direction_doc: str
    variants: tuple[VariantFidelity, ...]

    @property
    def agreement(self) -> float | None:
        """The headline figure: the lowest rule-vs-LLM Spearman of episode rewards over variants."""
        values = [v.reward_spearman for v in self.variants if v.reward_spearman is not None]
        return min(values) if values else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agreement": self.agreement}

    def save(self, path: "str | Path") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str))
        return path


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho; None when either side is constant or there are under 3 pairs."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    rho = float(spearmanr(a, b).statistic)
    return None if math.isnan(rho) else rho


# ---------------------------------------------------------------------- probes


def _random_policy(env: Any) -> Callable[..., Any]:
    """Seeded random actions. The generator is seeded from the hidden task at each episode's
    first step, so the rule and the LLM run of one seed play the same actions."""
    state: dict[str, Any] = {}

    def act(*args: Any) -> Any:
        *seat, _obs, info = args
        if "rng" not in state or info.get("turn") == 0:
            state["rng"] = np.random.default_rng(zlib.crc32(repr(_base(env).hidden_task()).encode()))
        space = env.action_space(seat[0]) if seat else env.action_space
        n = getattr(space, "n", None)
        if n is not None:
            return int(state["rng"].integers(n))
        return "I think so."

    return act


def default_probe(task_spec: TaskSpec) -> Probe:
    """Seeded random discrete actions; for multi-agent tasks, each seat learnable in turn
    (the others are the simulated people being measured)."""
    variants: dict[str, Mapping[str, Any]] = {}
    for kwargs in task_spec.variants:
        base = ",".join(f"{k}={v}" for k, v in sorted(kwargs.items())) or "default"
        if task_spec.multi_agent:
            for seat in task_spec.load().seats:
                variants[f"{base}|learn {seat}"] = {**kwargs, "learnable": seat}
        else:
            variants[base] = dict(kwargs)
    return Probe(policies={"random": _random_policy}, variants=variants)


def probe_of(task_spec: TaskSpec) -> Probe:
    """The task's own probe (its env class's, else its module's ``fidelity_probe()``), or the default."""
    cls = task_spec.load()
    make_probe = getattr(cls, "fidelity_probe", None) or getattr(sys.modules[cls.__module__], "fidelity_probe", None)
    return make_probe() if make_probe is not None else default_probe(task_spec)


# ---------------------------------------------------------------------- running


def _base(env: Any) -> Any:
    """The fbenv env under any Gymnasium wrappers (PettingZoo envs come unwrapped)."""
    return env.unwrapped if isinstance(env, gym.Env) else env


def _make(task_spec: TaskSpec, kwargs: Mapping[str, Any], simulator: str, llm: "str | Backend",
          llm_cache: str | None) -> Any:
    interface = "discrete" if "discrete" in task_spec.interfaces else "text"
    options = dict(interface=interface, simulator=simulator, llm=llm, llm_cache=llm_cache, **kwargs)
    if task_spec.multi_agent:
        return task_spec.load()(**options)
    return gym.make(task_spec.id, **options)


_run_parallel = run_parallel_episode  # the old private name, still imported by others


def _episodes(task_spec: TaskSpec, envs: Sequence[Any], policies: Sequence[Callable[..., Any]],
              seeds: Sequence[int]) -> list[EpisodeResult]:
    """All episodes at once, their simulator calls batched (multi-agent ones too, outcomes kept)."""
    return lockstep_episodes(envs, list(policies), list(seeds))


def _role_fidelity(role: str, pairs: Sequence[Any]) -> RoleFidelity:
    read = [p for p in pairs if p.parsed]
    failure = 1.0 - len(read) / len(pairs)
    sample = next((p.rule for p in pairs if p.rule is not None), None)
    if sample is None:
        return RoleFidelity(role, len(pairs), "text", parse_failure_rate=failure)
    if isinstance(sample, float):
        a = [p.rule for p in read]
        b = [p.llm for p in read]
        mad = float(np.mean(np.abs(np.subtract(a, b)))) if read else None
        return RoleFidelity(role, len(pairs), "numeric", spearman=spearman(a, b), mean_abs_diff=mad,
                            parse_failure_rate=failure)
    agree = float(np.mean([p.rule == p.llm for p in read])) if read else None
    return RoleFidelity(role, len(pairs), "label", agreement=agree, parse_failure_rate=failure)


def _roles(pairs: Sequence[Any]) -> list[RoleFidelity]:
    by_role: dict[str, list[Any]] = {}
    for pair in pairs:
        by_role.setdefault(pair.role, []).append(pair)
    return [_role_fidelity(r, ps) for r, ps in by_role.items()]


def measure(
    env_id: str,
    llm: "str | Backend" = "embedded",
    seeds: Sequence[int] = tuple(range(10)),
    variants: Sequence[str] | None = None,
    llm_cache: str | None = None,
    echo: Callable[[str], None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> FidelityReport:
    """Rule vs LLM simulator on ``env_id`` (see the module docs)."""
    task_spec = spec(env_id)
    if "llm" not in task_spec.simulators:
        raise InvalidArgumentError(f"fidelity: {task_spec.id} has no LLM simulator to measure")
    probe = probe_of(task_spec)
    names = list(probe.variants) if variants is None else list(variants)
    for name in names:
        if name not in probe.variants:
            raise InvalidArgumentError(f"fidelity: {task_spec.id} has no probe variant {name!r}; "
                                       f"expects one of {list(probe.variants)}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise InvalidArgumentError("fidelity: expects at least one seed")
    out = []
    for name in names:
        kwargs = {**probe.variants[name], **(extra or {})}
        cells = [(policy, seed) for policy in probe.policies for seed in seeds]

        def batch(simulator: str, shadow: bool, backend: "str | Backend" = llm) -> tuple[list[EpisodeResult], list[Any]]:
            envs = [_make(task_spec, kwargs, simulator, backend, llm_cache) for _ in cells]
            if shadow:  # the LLM's seeds come from their own generator: the rule episode is untouched
                for k, e in enumerate(envs):
                    _base(e).sim.shadow(seed=10_007 * cells[k][1] + k)
            policies = [probe.policies[p](e) for e, (p, _) in zip(envs, cells)]
            results = _episodes(task_spec, envs, policies, [s for _, s in cells])
            logs = [_base(e).sim.shadow_log or [] for e in envs]
            for e in envs:
                e.close()
            return results, [pair for log in logs for pair in log]

        rule_results, pairs = batch("rule", shadow=True)
        llm_results, _ = batch("llm", shadow=False)
        _, blind_pairs = batch("rule", shadow=True, backend=BLIND)
        blind_results, _ = batch("llm", shadow=False, backend=BLIND)
        floors = {r.role: r.score for r in _roles(blind_pairs)}
        roles = tuple(replace(r, floor=floors.get(r.role)) for r in _roles(pairs))

        def per_policy(results: Sequence[EpisodeResult]) -> dict[str, list[EpisodeResult]]:
            grouped: dict[str, list[EpisodeResult]] = {}
            for (policy, _), r in zip(cells, results):
                grouped.setdefault(policy, []).append(r)
            return grouped

        direction = probe.direction
        row = VariantFidelity(
            variant=name, kwargs=dict(kwargs), episodes=len(cells),
            reward_spearman=spearman([r.reward for r in rule_results], [r.reward for r in llm_results]),
            rule_reward=float(np.mean([r.reward for r in rule_results])),
            llm_reward=float(np.mean([r.reward for r in llm_results])),
            llm_fallbacks=float(np.mean([r.fallbacks for r in llm_results])),
            llm_parse_failures=float(np.mean([r.parse_failures for r in llm_results])),
            llm_truncated=float(np.mean([r.truncated and r.feedback_error is not None for r in llm_results])),
            roles=roles,
            direction_rule=None if direction is None else float(direction(name, per_policy(rule_results))),
            direction_llm=None if direction is None else float(direction(name, per_policy(llm_results))),
            expected_sign=int(probe.expected_sign.get(name, 0)),
            reward_spearman_floor=spearman([r.reward for r in rule_results], [r.reward for r in blind_results]),
        )
        out.append(row)
        if echo is not None:
            echo(format_variant(row))
    spec_str = llm if isinstance(llm, str) else (llm.spec or type(llm).__name__)
    return FidelityReport(task_spec.id, spec_str, seeds, probe.direction_doc, tuple(out))


def _f(x: float | None, fmt: str = "+.2f") -> str:
    return "  n/a" if x is None else format(x, fmt)


def format_variant(v: VariantFidelity) -> str:
    lines = [
        f"[{v.variant}] {v.episodes} episodes: reward Spearman rule vs LLM {_f(v.reward_spearman)} "
        f"(floor {_f(v.reward_spearman_floor)}); "
        f"mean reward rule {v.rule_reward:.3f}, LLM {v.llm_reward:.3f}; LLM fallbacks/episode {v.llm_fallbacks:.2f}, "
        f"parse failures/episode {v.llm_parse_failures:.2f}, truncated {v.llm_truncated:.2f}"
    ]
    if v.direction_rule is not None:
        want = {1: "> 0", -1: "< 0"}.get(v.expected_sign, "no expectation")
        holds = {True: "holds", False: "does NOT hold", None: ""}[v.direction_holds]
        lines.append(f"  direction (want {want}): rule {_f(v.direction_rule, '+.3f')}, "
                     f"LLM {_f(v.direction_llm, '+.3f')} {holds}".rstrip())
    for r in v.roles:
        if r.kind == "numeric":
            what = f"Spearman {_f(r.spearman)}, mean |diff| {_f(r.mean_abs_diff, '.2f')}"
        elif r.kind == "label":
            what = f"agreement {_f(r.agreement, '.2f')}"
        else:
            what = "free text (not compared)"
        floor = "" if r.kind == "text" else f" (floor {_f(r.floor)})"
        lines.append(f"  role {r.role:<12} {r.calls:>4} calls: {what}{floor}; parse failures {r.parse_failure_rate:.2f}")
    return "\n".join(lines)


def format_report(report: FidelityReport) -> str:
    head = f"{report.env_id}, LLM {report.llm}, seeds {report.seeds[0]}..{report.seeds[-1]}"
    if report.direction_doc:
        head += f"\ndirection: {report.direction_doc}"
    body = "\n".join(format_variant(v) for v in report.variants)
    return f"{head}\n{body}\nagreement (lowest reward Spearman over variants): {_f(report.agreement)}"
