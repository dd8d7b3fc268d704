"""The one list of fbenv environments, and how it reaches Gymnasium and PettingZoo.

Each :class:`TaskSpec` names its entry point as a lazy ``"module:Class"`` string and
declares its capabilities. Tests parametrize over :data:`REGISTRY`; nothing else lists
the envs. Registration with Gymnasium gives every single-agent env

- a ``vector_entry_point`` that builds fbenv's batched vector env (:func:`make_vec`);
- a discrete twin, ``fbenv/Name-discrete-vN`` (same dynamics, ``interface="discrete"``),
  for scripts that take nothing but an env id (CleanRL's ``--env-id``).
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from fbenv.errors import InvalidArgumentError, UnknownNameError, check_type
from fbenv.options import INTERFACES, SIMULATORS
from fbenv.vector import BatchedVectorEnv

_ID = re.compile(r"^[A-Za-z][\w.-]*/(?P<name>[A-Za-z][\w.]*)-v(?P<version>\d+)$")


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
    # the task's own end-of-episode metrics, read from the last step's info
    # (``info["episode_result"]["outcomes"]``, the bench, the SB3/TRL/PPO adapters)
    outcomes: tuple[str, ...] = ()
    # kwargs ``fbenv perf`` times by default (the variant whose simulator calls matter most)
    perf_variant: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_type("TaskSpec.id", self.id, str)
        if not _ID.match(self.id) or "-discrete-v" in self.id:
            raise InvalidArgumentError(f"TaskSpec.id: expects 'namespace/Name-vN', actual {self.id!r}")
        if ":" not in self.entry_point:
            raise InvalidArgumentError(f"TaskSpec.entry_point: expects 'module:Class', actual {self.entry_point!r}")
        for what, values, valid in (("interfaces", self.interfaces, INTERFACES), ("simulators", self.simulators, SIMULATORS)):
            if not values or any(v not in valid for v in values):
                raise InvalidArgumentError(f"TaskSpec.{what}: expects a non-empty subset of {valid}, actual {values!r}")
        if not all(isinstance(o, str) for o in self.outcomes):
            raise InvalidArgumentError(f"TaskSpec.outcomes: expects info key names, actual {self.outcomes!r}")

    @property
    def name(self) -> str:
        return self.id.split("/", 1)[-1]

    @property
    def discrete_id(self) -> str | None:
        """The id of the discrete twin (``fbenv/Name-discrete-vN``), if the task has both views."""
        if self.multi_agent or "discrete" not in self.interfaces or "text" not in self.interfaces:
            return None
        m = _ID.match(self.id)
        return self.id[: m.start("name")] + f"{m.group('name')}-discrete-v{m.group('version')}"

    def load(self) -> type:
        module, _, attr = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), attr)


REGISTRY: list[TaskSpec] = []


def register(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to the registry and register it with Gymnasium or PettingZoo.

    Registering the same spec again is a no-op (a module imported twice); another spec
    under a taken id is an error.
    """
    check_type("register(spec)", spec, TaskSpec)
    for s in REGISTRY:
        if s.id == spec.id or spec.id == s.discrete_id:
            if s == spec:
                return s
            raise InvalidArgumentError(f"register: id {spec.id!r} is already registered with a different spec: {s}")
    REGISTRY.append(spec)
    if spec.multi_agent:
        _register_pettingzoo(spec)
        return spec
    for env_id, kwargs in ((spec.id, {}), (spec.discrete_id, {"interface": "discrete"})):
        if env_id is None:
            continue
        gym.registry.pop(env_id, None)  # a spec re-registered after a reload
        gym.register(
            id=env_id,
            entry_point=spec.entry_point,
            vector_entry_point=functools.partial(make_vec, env_id),
            max_episode_steps=spec.max_episode_steps,
            nondeterministic=not spec.deterministic,
            kwargs=kwargs,
        )
    return spec


def _register_pettingzoo(spec: TaskSpec) -> None:
    import pettingzoo

    register_fn = getattr(pettingzoo, "register", None)
    if register_fn is not None:  # PettingZoo >= 1.27 has a registry
        register_fn("parallel", spec.id, entry_point=spec.entry_point)


def spec(env_id: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``env_id`` (or of its discrete twin), or a typed error with the closest id."""
    for s in REGISTRY:
        if env_id in (s.id, s.name, s.discrete_id) or (s.discrete_id and env_id == s.discrete_id.split("/", 1)[-1]):
            return s
    raise UnknownNameError("fbenv env id", env_id, [i for s in REGISTRY for i in (s.id, s.discrete_id) if i])


def gym_id(env_id: str) -> str:
    """The full Gymnasium id ``env_id`` names (``Advisor-v0`` -> ``fbenv/Advisor-v0``)."""
    s = spec(env_id)
    return s.discrete_id if env_id in (s.discrete_id, (s.discrete_id or "").split("/", 1)[-1]) else s.id


def spec_card(task: TaskSpec) -> str:
    """The task module's spec card with the generated shared-options part of its Arguments section."""
    from fbenv.options import shared_options_doc

    card = (importlib.import_module(task.entry_point.partition(":")[0]).__doc__ or "").strip()
    extra = shared_options_doc()
    if task.multi_agent:
        extra += ("\n- ``learnable``: the seats the learner plays (default: every seat); the others are "
                  "played by their roles\n- ``max_cycles``: every agent is truncated after this many steps")
    start = card.find("## Arguments")
    if start < 0:
        return card + "\n\n## Arguments\n\n" + extra
    end = card.find("\n## ", start + 1)
    end = len(card) if end < 0 else end
    return card[:end].rstrip() + "\n\n" + extra + "\n" + card[end:]


def spec_for_class(cls: type) -> TaskSpec | None:
    """The registered spec whose entry point is ``cls`` (None for an unregistered class)."""
    entry = f"{cls.__module__}:{cls.__qualname__}"
    return next((s for s in REGISTRY if s.entry_point == entry), None)


def require_interface(env_id: str, interface: str, user: str, env_kwargs: dict[str, Any]) -> TaskSpec:
    """The spec of a single-agent ``env_id`` offering ``interface``, for an adapter (``user``)
    that sets the interface itself: passing ``interface`` in ``env_kwargs`` is a mistake."""
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
    return gym.make(gym_id(env_id), **kwargs)


def make_vec(
    env_id: str,
    num_envs: int = 1,
    *,
    autoreset_mode: "str | gym.vector.AutoresetMode" = gym.vector.AutoresetMode.NEXT_STEP,
    copy: bool = True,
    **kwargs: Any,
):
    """``num_envs`` copies of ``env_id`` stepping concurrently with batched simulator calls.

    Also every fbenv env's Gymnasium ``vector_entry_point``:
    ``gym.make_vec("fbenv/Advisor-v0", num_envs=8, simulator="llm")`` lands here.
    ``kwargs`` go to each sub-env (``max_episode_steps`` included).
    """
    check_type("num_envs", num_envs, int)
    if num_envs < 1:
        raise InvalidArgumentError(f"num_envs: expects >= 1, actual {num_envs}")
    s = spec(env_id)
    if s.multi_agent:
        raise InvalidArgumentError(f"make_vec: expects a single-agent env id, actual multi-agent {s.id!r}")
    full_id, env_kwargs = gym_id(env_id), dict(kwargs)

    def make_one() -> gym.Env:
        return gym.make(full_id, **env_kwargs)

    return BatchedVectorEnv([make_one] * num_envs, copy=copy, autoreset_mode=autoreset_mode)
