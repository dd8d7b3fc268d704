"""Record/replay cache for LLM completions, content-addressed and stored as JSON in SQLite.

The key hashes the backend spec (which names the model), the messages and the sampling
settings (seed included). Modes: ``off``; ``readwrite`` (hits are served, misses
generated and stored); ``replay`` (hits only; a miss raises :class:`ReplayMissError`, so
CI can replay recorded episodes with no model at all). Requests that are neither greedy
nor seeded are never cached: their output is not a function of the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from fbenv.errors import ReplayMissError
from fbenv.llm.base import Backend, ChatRequest, ChatResult, pickled_as

CACHE_MODES = ("off", "readwrite", "replay")


def default_cache_dir() -> Path:
    """``$FBENV_CACHE_DIR``, else ``$XDG_CACHE_HOME/fbenv``, else ``~/.cache/fbenv``."""
    if os.environ.get("FBENV_CACHE_DIR"):
        return Path(os.environ["FBENV_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fbenv"


def request_key(backend_spec: str, request: ChatRequest) -> str:
    """The cache key of ``request`` to the backend named by ``backend_spec``."""
    s = request.sampling
    payload = {
        "backend": backend_spec,
        # Always empty: the spec already names the model. The field stays in the hashed
        # payload so that every key recorded so far keeps matching.
        "model": "",
        "messages": request.as_dicts(),
        "sampling": {
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed if s.temperature > 0 else None,  # greedy ignores the seed
            "stop": list(s.stop),
        },
    }
    if s.choices:  # only when set, so keys recorded before choices existed still match
        payload["sampling"]["choices"] = list(s.choices)
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


class CompletionStore:
    """A small thread- and process-safe JSON store (SQLite in WAL mode)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self._conn.commit()

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM completions WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_many(self, items: list[tuple[str, dict]]) -> None:
        with self._lock:
            self._conn.executemany(
                "INSERT OR REPLACE INTO completions (key, value) VALUES (?, ?)",
                [(k, json.dumps(v, ensure_ascii=False)) for k, v in items],
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class CachedBackend(Backend):
    """Wraps a backend spec; the wrapped backend is only resolved on the first miss.

    ``make_inner`` builds the wrapped backend when it is first needed. The registry
    passes one that returns the process's shared uncached instance of the spec, so
    several cache files in front of one model still load it once.
    """

    def __init__(
        self, inner_spec: str, mode: str, path: str | os.PathLike, make_inner: Callable[[], Backend],
        scores_choices: bool = False,
    ):
        self.inner_spec = inner_spec
        self.scores_choices = scores_choices  # the wrapped kind's, known without loading it
        self.mode = mode
        self.path = str(path)
        self.spec = inner_spec
        self.store = CompletionStore(path)
        self._make_inner = make_inner
        self._inner: Backend | None = None
        self.hits = 0
        self.misses = 0

    @property
    def inner(self) -> Backend:
        if self._inner is None:
            self._inner = self._make_inner()
        return self._inner

    @property
    def model(self) -> str:  # type: ignore[override]
        return self._inner.model if self._inner is not None else self.inner_spec

    @property
    def stats(self):  # the real work happens in the wrapped backend
        return self.inner.stats

    def chat(self, requests):
        requests = list(requests)
        keys = [request_key(self.inner_spec, r) for r in requests]
        results: list[ChatResult | None] = [None] * len(requests)
        todo: list[int] = []
        for i, (req, key) in enumerate(zip(requests, keys)):
            cacheable = req.sampling.deterministic
            hit = self.store.get(key) if cacheable else None
            if hit is not None:
                results[i] = ChatResult(**{**hit, "cached": True, "latency_s": 0.0})
                self.hits += 1
            elif self.mode == "replay":
                why = "it was never recorded" if cacheable else "it is neither greedy nor seeded"
                raise ReplayMissError(
                    f"Replay-only cache {self.path} has no completion for a request to "
                    f"{self.inner_spec!r} ({why}); record it first with cache='readwrite'. "
                    f"Last message: {req.messages[-1].content[:200]!r}"
                )
            else:
                todo.append(i)
        if todo:
            self.misses += len(todo)
            fresh = self.inner.chat([requests[i] for i in todo])
            store = []
            for i, res in zip(todo, fresh):
                results[i] = res
                if requests[i].sampling.deterministic:
                    store.append((keys[i], {k: v for k, v in asdict(res).items() if k != "cached"}))
            if store:
                self.store.put_many(store)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.store.close()  # the wrapped backend is shared: the registry closes it

    def __reduce__(self):  # the shared cached instance of (spec, mode, path) over there
        return pickled_as(self.inner_spec, self.mode, self.path)
