"""Base class of fbenv's single-agent envs: options checking, simulator choice, LLM plumbing.

Subclasses get typed errors for unknown or mistyped options, a lazily resolved LLM
backend (no model is loaded in a constructor), per-call seeds drawn from
``self.np_random``, per-episode usage accounting, and an idempotent ``close``.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any

import gymnasium as gym

from fbenv.errors import UnknownNameError, check_choice, check_type
from fbenv.feedback import Usage
from fbenv.llm.base import Backend, Sampling
from fbenv.llm.cache import CACHE_MODES
from fbenv.registry import INTERFACES, SIMULATORS
from fbenv.roles import PARSE_ERROR_POLICIES, ParseStats, PromptedCall


def _reject_unknown_options(cls: type) -> None:
    init = cls.__dict__.get("__init__")
    if init is None:
        return
    params = inspect.signature(init).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if n != "self" and p.kind is not p.VAR_POSITIONAL]

    @functools.wraps(init)
    def checked_init(self, *args: Any, **kwargs: Any) -> None:
        for name in kwargs:
            if name not in params:
                raise UnknownNameError(f"option of {cls.__name__}", name, valid)
        init(self, *args, **kwargs)

    cls.__init__ = checked_init  # type: ignore[method-assign]


class FeedbackEnv(gym.Env):
    """Shared options of every single-agent fbenv env.

    Args:
        interface: ``"text"`` (str observations and actions) or ``"discrete"`` (Box
            features and ``Discrete(K)`` over the task's candidate actions).
        simulator: ``"rule"`` (exact, knows the hidden truth) or ``"llm"``.
        llm: backend spec (``"embedded"``, ``"openai:<model>@<url>"``...) or a Backend.
        llm_cache: ``"off"``, ``"readwrite"`` or ``"replay"``; default from
            ``$FBENV_LLM_CACHE`` (else ``readwrite``).
        llm_cache_path: the record/replay file (SQLite); default
            ``<cache dir>/llm.sqlite``. Ship one with a study to replay it without a model.
        llm_temperature: sampling temperature of the simulated people (0 = greedy).
        on_parse_error: what happens when an LLM reply cannot be read: ``"fallback"``
            to the rule simulator, ``"retry"`` then give up, or ``"truncate"`` at once.
        render_mode: ``None`` or ``"ansi"`` (the transcript as text).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 1}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _reject_unknown_options(cls)

    def __init__(
        self,
        *,
        interface: str = "text",
        simulator: str = "rule",
        llm: "str | Backend" = "embedded",
        llm_cache: str | None = None,
        llm_cache_path: str | None = None,
        llm_temperature: float = 0.0,
        on_parse_error: str = "fallback",
        render_mode: str | None = None,
    ):
        self.interface = check_choice("interface", interface, INTERFACES)
        self.simulator = check_choice("simulator", simulator, SIMULATORS)
        check_type("llm", llm, (str, Backend))
        self.llm_spec = llm
        self.llm_cache = None if llm_cache is None else check_choice("llm_cache", llm_cache, CACHE_MODES)
        if llm_cache_path is not None:
            check_type("llm_cache_path", llm_cache_path, (str, os.PathLike))
        self.llm_cache_path = llm_cache_path
        check_type("llm_temperature", llm_temperature, (int, float))
        self.llm_temperature = float(llm_temperature)
        self.on_parse_error = check_choice("on_parse_error", on_parse_error, PARSE_ERROR_POLICIES)
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
        self.render_mode = render_mode
        self.parse_stats = ParseStats()
        self.episode_usage = Usage()
        self._backend: Backend | None = None
        self._closed = False

    @property
    def backend(self) -> Backend:
        """The shared LLM backend, resolved on first use (constructors never load models)."""
        if self._backend is None:
            from fbenv.llm.registry import get_backend

            self._backend = get_backend(self.llm_spec, cache=self.llm_cache, cache_path=self.llm_cache_path)
        return self._backend

    def prompted(self, max_tokens: int, stop: tuple[str, ...] = (), choices: tuple[str, ...] = ()) -> PromptedCall:
        return PromptedCall(
            backend=self.backend,
            sampling=Sampling(max_tokens=max_tokens, temperature=self.llm_temperature, stop=stop, choices=choices),
            policy=self.on_parse_error,
            stats=self.parse_stats,
        )

    def hidden_task(self) -> Any:
        """The hidden task drawn at the last reset (comparable with ``==``).

        Used by the checker to show both interfaces draw the same task from a seed.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement hidden_task()")

    def get_action_meanings(self) -> list[str] | None:
        """What each discrete action says in the current state (``fbenv play``, debugging)."""
        return None

    def close(self) -> None:
        # The backend is shared by every env naming the same spec: it is not ours to close.
        self._closed = True
        super().close()
