"""Merge the LLM calls of envs stepping concurrently into batched backend calls.

A :class:`BatchGroup` has one participant per sub-env. Each participant runs in its own
thread; when it calls :meth:`Backend.chat` the call waits in the group. Once every
participant still stepping is waiting (or has finished its step), the group sends the
waiting requests to each backend as one batch, ordered by participant index. Flushes
never depend on timing, so batch composition, and hence output, is reproducible.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from fbenv.llm.base import Backend, ChatRequest, ChatResult, joined

T = TypeVar("T")


@dataclass
class _Pending:
    index: int
    backend: Backend
    requests: list[ChatRequest]
    results: list[ChatResult] | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Membership:
    """One participant's :class:`~fbenv.llm.base.BatchMembership` in a group."""

    group: BatchGroup
    index: int

    def submit(self, backend: Backend, requests: list[ChatRequest]) -> list[ChatResult]:
        return self.group._submit(self.index, backend, requests)


@dataclass
class BatchGroup:
    """Runs ``fn(i)`` for each participant in threads and batches their LLM calls."""

    max_workers: int
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _active: int = 0
    _pending: list[_Pending] = field(default_factory=list)
    flushes: int = 0

    def run(self, fns: Sequence[Callable[[], T]]) -> list[T]:
        """Call every function concurrently, each as a participant; return their values in order."""
        n = len(fns)
        if n == 0:
            return []
        if n == 1:  # nothing to merge with: run inline, no thread
            return [fns[0]()]
        out: list = [None] * n
        errors: list[BaseException | None] = [None] * n
        with self._cond:
            self._active = n

        def worker(i: int) -> None:
            try:
                with joined(_Membership(self, i)):
                    out[i] = fns[i]()
            except BaseException as exc:  # re-raised in the caller's thread below
                errors[i] = exc
            finally:
                with self._cond:
                    self._active -= 1
                    self._maybe_flush_locked()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for exc in errors:
            if exc is not None:
                raise exc
        return out

    def _submit(self, index: int, backend: Backend, requests: list[ChatRequest]) -> list[ChatResult]:
        item = _Pending(index, backend, requests)
        with self._cond:
            self._pending.append(item)
            self._maybe_flush_locked()
            while not item.done:
                self._cond.wait()
        if item.error is not None:
            raise item.error
        assert item.results is not None  # set whenever done without error
        return item.results

    def _maybe_flush_locked(self) -> None:
        waiting = [p for p in self._pending if not p.done]
        if not waiting or len(waiting) < self._active:
            return
        self._pending = []
        # Generation happens while holding the lock: every participant is waiting anyway.
        self.flushes += 1
        by_backend: dict[int, list[_Pending]] = {}
        for p in sorted(waiting, key=lambda p: p.index):
            by_backend.setdefault(id(p.backend), []).append(p)
        for items in by_backend.values():
            batch = [r for p in items for r in p.requests]
            try:
                results = items[0].backend.generate_batch(batch)
            except BaseException as exc:  # delivered to every caller in this batch
                for p in items:
                    p.error, p.done = exc, True
                continue
            pos = 0
            for p in items:
                p.results = results[pos : pos + len(p.requests)]
                pos += len(p.requests)
                p.done = True
        self._cond.notify_all()


def no_group():
    """Run the body outside any batch group (used by backends that call other backends)."""
    return joined(None)
