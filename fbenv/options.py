"""The options every fbenv task shares, validated once at construction.

A task's ``__init__`` declares only its own kwargs and passes ``**options`` on; the base
class turns them into one frozen :class:`Options` record, checked against the task's
:class:`~fbenv.registry.TaskSpec` (its interfaces and simulators) and its roles, so a
misspelt backend kind or a negative temperature fails at ``make()``, not at the first step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from fbenv.errors import InvalidArgumentError, UnknownNameError, check_choice, check_type
from fbenv.llm.base import Backend
from fbenv.llm.cache import CACHE_MODES
from fbenv.llm.registry import check_spec

INTERFACES = ("text", "discrete")
SIMULATORS = ("rule", "llm")
PARSE_ERROR_POLICIES = ("retry", "fallback", "truncate")
BACKEND_ERROR_POLICIES = ("raise", "truncate")

# One line per shared option: what the generated part of every spec card's Arguments says.
OPTION_DOCS: dict[str, str] = {
    "interface": '``"text"`` (str observations and actions, the transcript in ``info["messages"]``) '
    'or ``"discrete"`` (a ``Box`` of features and ``Discrete(K)`` over the task\'s candidate replies)',
    "simulator": '``"rule"`` (exact, knows the hidden truth) or ``"llm"`` for every role, or a mapping '
    'from role name to either (e.g. ``{"rater": "llm"}``; unnamed roles stay ``"rule"``)',
    "llm": 'backend spec (``"embedded"``, ``"transformers:<path>"``, ``"openai:<model>@<url>"``, '
    '``"vllm:<model>"``, ``"scripted"``) or a ``Backend`` instance',
    "llm_cache": '``"off"``, ``"readwrite"`` or ``"replay"`` (default ``$FBENV_LLM_CACHE``, else ``readwrite``)',
    "llm_cache_path": "the record/replay SQLite file (default ``<cache dir>/llm.sqlite``)",
    "llm_temperature": "sampling temperature of the simulated people (0 = greedy; >= 0)",
    "on_parse_error": 'an unreadable LLM reply: ``"fallback"`` to the rule role, ``"retry"`` twice '
    'with new seeds then give up, or ``"truncate"`` at once (giving up truncates with ``info["feedback_error"]``)',
    "on_backend_error": 'a failed backend call (server error, timeout, malformed body): ``"raise"`` a '
    '``BackendError``, or ``"truncate"`` the episode with ``info["feedback_error"]`` and no reward',
    "render_mode": '``None`` or ``"ansi"`` (the transcript as text)',
}


def shared_options_doc() -> str:
    """The shared-options part of a spec card's Arguments section (generated, never hand-copied)."""
    return "Shared options (every task):\n\n" + "\n".join(f"- ``{k}``: {v}" for k, v in OPTION_DOCS.items())


@dataclass(frozen=True)
class Options:
    """The shared options of one env, already validated (build with :meth:`check`)."""

    interface: str = "text"
    simulator: "str | Mapping[str, str]" = "rule"
    llm: "str | Backend" = "embedded"
    llm_cache: str | None = None
    llm_cache_path: "str | os.PathLike | None" = None
    llm_temperature: float = 0.0
    on_parse_error: str = "fallback"
    on_backend_error: str = "raise"
    render_mode: str | None = None
    # role name -> "rule" | "llm", resolved from ``simulator``
    per_role: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def check(
        cls,
        owner: str,
        given: Mapping[str, Any],
        *,
        own_kwargs: Iterable[str] = (),
        interfaces: Iterable[str] = INTERFACES,
        simulators: Iterable[str] = SIMULATORS,
        roles: Iterable[str] = (),
        render_modes: Iterable[str] = ("ansi",),
    ) -> "Options":
        """Validate ``given`` (the kwargs a task did not declare itself) for ``owner``."""
        names = [f.name for f in fields(cls) if f.name != "per_role"]
        for key in given:
            if key not in names:
                raise UnknownNameError(f"option of {owner}", key, [*own_kwargs, *names])
        o = {**{f.name: f.default for f in fields(cls) if f.name != "per_role"}, **given}
        interface = check_choice("interface", o["interface"], tuple(interfaces))
        roles = tuple(roles)
        simulators = tuple(simulators)
        simulator = o["simulator"]
        if isinstance(simulator, Mapping):
            for role, value in simulator.items():
                if role not in roles:
                    raise UnknownNameError(f"role of {owner} (simulator=...)", str(role), roles)
                check_choice(f"simulator[{role!r}]", value, simulators)
            per_role = {r: simulator.get(r, "rule") for r in roles}
            simulator = dict(simulator)
        else:
            simulator = check_choice("simulator", simulator, simulators)
            per_role = {r: simulator for r in roles}
        check_type("llm", o["llm"], (str, Backend))
        if isinstance(o["llm"], str):
            check_spec(o["llm"])
        if o["llm_cache"] is not None:
            check_choice("llm_cache", o["llm_cache"], CACHE_MODES)
        if o["llm_cache_path"] is not None:
            check_type("llm_cache_path", o["llm_cache_path"], (str, os.PathLike))
        check_type("llm_temperature", o["llm_temperature"], (int, float))
        if not (math.isfinite(o["llm_temperature"]) and o["llm_temperature"] >= 0):
            raise InvalidArgumentError(f"llm_temperature: expects a finite number >= 0, actual {o['llm_temperature']}")
        check_choice("on_parse_error", o["on_parse_error"], PARSE_ERROR_POLICIES)
        check_choice("on_backend_error", o["on_backend_error"], BACKEND_ERROR_POLICIES)
        if o["render_mode"] is not None:
            check_choice("render_mode", o["render_mode"], tuple(render_modes))
        return cls(
            interface=interface, simulator=simulator, llm=o["llm"], llm_cache=o["llm_cache"],
            llm_cache_path=o["llm_cache_path"], llm_temperature=float(o["llm_temperature"]),
            on_parse_error=o["on_parse_error"], on_backend_error=o["on_backend_error"],
            render_mode=o["render_mode"], per_role=per_role,
        )

    def simulator_of(self, role: str) -> str:
        """``"rule"`` or ``"llm"``: who plays ``role`` in this env."""
        if role in self.per_role:
            return self.per_role[role]
        return self.simulator if isinstance(self.simulator, str) else "rule"

    @property
    def uses_llm(self) -> bool:
        return "llm" in self.per_role.values() or self.simulator == "llm"
