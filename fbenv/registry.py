"""The one list of fbenv environments, and how it reaches Gymnasium and PettingZoo.

Each :class:`TaskSpec` names its entry point as a lazy ``"module:Class"`` string and
declares its capabilities. Tests parametrize over :data:`REGISTRY`; nothing else lists
the envs. Registration with Gymnasium gives every single-agent env a
``vector_entry_point`` that builds fbenv's batched vector env.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from fbenv.errors import UnknownNameError

INTERFACES = ("text", "discrete")
SIMULATORS = ("rule", "llm")


@dataclass(frozen=True)
class TaskSpec:
    """Declared facts about one env: where it lives and what it supports."""

    id: str
    entry_point: str
    summary: str
    multi_agent: bool = False
    interfaces: tuple[str, ...] = INTERFACES
    simulators: tuple[str, ...] = SIMULATORS
    deterministic: bool = True
    max_episode_steps: int | None = None
    # kwargs that exercise distinct dynamics; generated tests run each variant
    variants: tuple[dict[str, Any], ...] = field(default_factory=lambda: ({},))

    @property
    def name(self) -> str:
        return self.id.split("/", 1)[-1]

    def load(self) -> type:
        module, _, attr = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), attr)


REGISTRY: list[TaskSpec] = []


def register(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to the registry and register it with Gymnasium or PettingZoo."""
    if any(s.id == spec.id for s in REGISTRY):
        return next(s for s in REGISTRY if s.id == spec.id)
    REGISTRY.append(spec)
    if spec.multi_agent:
        _register_pettingzoo(spec)
    elif spec.id not in gym.registry:
        from fbenv.vector import make_vec

        gym.register(
            id=spec.id,
            entry_point=spec.entry_point,
            vector_entry_point=functools.partial(make_vec, spec.id),
            max_episode_steps=spec.max_episode_steps,
            nondeterministic=not spec.deterministic,
        )
    return spec


def _register_pettingzoo(spec: TaskSpec) -> None:
    import pettingzoo

    register_fn = getattr(pettingzoo, "register", None)
    if register_fn is not None:  # PettingZoo >= 1.27 has a registry
        register_fn("parallel", spec.id, entry_point=spec.entry_point)


def spec(env_id: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``env_id``, or a typed error with the closest id."""
    for s in REGISTRY:
        if s.id == env_id or s.name == env_id:
            return s
    raise UnknownNameError("fbenv env id", env_id, [s.id for s in REGISTRY])


def require_interface(env_id: str, interface: str, user: str, env_kwargs: dict[str, Any]) -> TaskSpec:
    """The spec of a single-agent ``env_id`` offering ``interface``, for an adapter (``user``)
    that sets the interface itself: passing ``interface`` in ``env_kwargs`` is a mistake."""
    from fbenv.errors import InvalidArgumentError

    s = spec(env_id)
    if s.multi_agent:
        raise InvalidArgumentError(f"env_id: {user} expects a single-agent env, actual multi-agent {s.id!r}")
    if interface not in s.interfaces:
        raise InvalidArgumentError(
            f"env_id: {user} needs the {interface} interface, {s.id!r} has {list(s.interfaces)}"
        )
    if "interface" in env_kwargs:
        raise InvalidArgumentError(
            f"interface: {user} sets interface={interface!r}; do not pass it (actual {env_kwargs['interface']!r})"
        )
    return s


def make(env_id: str, **kwargs: Any):
    """Create an env by id (``fbenv/Advisor-v0`` or ``Advisor-v0``).

    Single-agent envs come from ``gymnasium.make`` (so its wrappers apply); multi-agent
    ones are PettingZoo ``ParallelEnv`` instances.
    """
    s = spec(env_id)
    if s.multi_agent:
        return s.load()(**kwargs)
    return gym.make(s.id, **kwargs)
