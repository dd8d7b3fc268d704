"""LLM backends behind one batched protocol: ``backend.chat(requests) -> results``."""

from fbenv.llm.base import Backend, ChatRequest, ChatResult, Message, Sampling
from fbenv.llm.batching import BatchGroup
from fbenv.llm.cache import CACHE_MODES, CachedBackend
from fbenv.llm.registry import BACKEND_KINDS, build_backend, clear_shared, get_backend
from fbenv.llm.scripted import ChoosingBackend, ScriptedBackend

__all__ = [
    "BACKEND_KINDS",
    "CACHE_MODES",
    "Backend",
    "BatchGroup",
    "CachedBackend",
    "ChatRequest",
    "ChoosingBackend",
    "ChatResult",
    "Message",
    "Sampling",
    "ScriptedBackend",
    "build_backend",
    "clear_shared",
    "get_backend",
]
