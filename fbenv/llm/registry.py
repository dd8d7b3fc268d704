"""Backend spec strings -> shared backend instances.

``kind[:argument]``: ``embedded``, ``transformers:<path>``, ``vllm:<model>``,
``openai:<model>@<base_url>``, ``scripted``. Kinds resolve lazily from a table, so a
backend's heavy imports happen only when it is used. One instance per (spec, cache) is
shared in a process: N envs naming the same model load it once.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from pathlib import Path

from fbenv.errors import InvalidArgumentError, check_choice
from fbenv.llm.base import Backend, install_rebuild
from fbenv.llm.cache import CACHE_MODES, CachedBackend, default_cache_dir

BACKEND_KINDS: dict[str, str] = {
    "embedded": "fbenv.llm.hf:EmbeddedBackend",
    "transformers": "fbenv.llm.hf:TransformersBackend",
    "vllm": "fbenv.llm.vllm_backend:VLLMBackend",
    "openai": "fbenv.llm.openai_backend:OpenAIBackend",
    "scripted": "fbenv.llm.scripted:ScriptedBackend",
    "choosing": "fbenv.llm.scripted:ChoosingBackend",
}

_shared: dict[tuple[str, str, str], Backend] = {}
_lock = threading.RLock()


def _load(entry: str) -> type:
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def build_backend(spec: str) -> Backend:
    """A new, uncached, unshared backend for ``spec`` (most callers want :func:`get_backend`)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgumentError(f"LLM backend spec: expects a non-empty str, actual {spec!r}")
    kind, _, arg = spec.partition(":")
    check_choice("LLM backend kind", kind, BACKEND_KINDS)
    cls = _load(BACKEND_KINDS[kind])
    backend = cls.from_spec(arg) if hasattr(cls, "from_spec") else cls()
    backend.spec = spec
    return backend


def check_spec(spec: str) -> str:
    """Validate a backend spec without building the backend (no model is loaded, no server asked).

    The kind must be known; an ``openai`` spec's model and base URL are checked too
    (its module imports no client until a backend is built).
    """
    if not isinstance(spec, str) or not spec:
        raise InvalidArgumentError(f"LLM backend spec: expects a non-empty str, actual {spec!r}")
    kind, _, arg = spec.partition(":")
    check_choice("LLM backend kind", kind, BACKEND_KINDS)
    if kind == "openai":
        importlib.import_module(BACKEND_KINDS[kind].partition(":")[0]).parse_spec(arg)
    return spec


def default_cache_mode() -> str:
    return check_choice("FBENV_LLM_CACHE", os.environ.get("FBENV_LLM_CACHE", "readwrite"), CACHE_MODES)


def get_backend(
    spec: "str | Backend", cache: str | None = None, cache_path: "str | os.PathLike | None" = None
) -> Backend:
    """The shared backend for ``spec``, wrapped in the record/replay cache unless ``cache='off'``.

    ``cache`` defaults to ``$FBENV_LLM_CACHE`` or ``readwrite``; ``cache_path`` to
    ``<cache dir>/llm.sqlite``. A :class:`Backend` instance is returned unchanged.
    """
    if isinstance(spec, Backend):
        return spec
    mode = default_cache_mode() if cache is None else check_choice("cache", cache, CACHE_MODES)
    if spec.partition(":")[0] in ("scripted", "choosing"):
        mode = "off"  # already deterministic and free
    path = str(Path(cache_path) if cache_path else default_cache_dir() / "llm.sqlite")
    key = (spec, mode, path if mode != "off" else "")
    with _lock:
        backend = _shared.get(key)
        if backend is None:
            if mode == "off":
                backend = build_backend(spec)
            else:
                kind = check_choice("LLM backend kind", spec.partition(":")[0], BACKEND_KINDS)
                backend = CachedBackend(spec, mode, path, functools.partial(get_backend, spec, cache="off"),
                                        scores_choices=_load(BACKEND_KINDS[kind]).scores_choices)
            _shared[key] = backend
        return backend


install_rebuild(get_backend)  # pickled backends come back through the shared instances


def clear_shared() -> None:
    """Close and forget every shared backend (tests; freeing a model's memory)."""
    with _lock:
        for backend in _shared.values():
            backend.close()
        _shared.clear()
