"""The batched chat protocol every LLM backend implements.

A backend takes a list of :class:`ChatRequest` and returns one :class:`ChatResult` per
request, in order. Requests carry their own sampling settings, seed included, so a
batch may mix them and the same request always asks for the same thing.

This module is the floor the other LLM modules stand on, and imports none of them. It
holds the two seams through which they plug in: the calling thread's batch membership
(set by :mod:`fbenv.llm.batching`, read by :meth:`Backend.chat`) and the function that
rebuilds a pickled backend from its spec (installed by :mod:`fbenv.llm.registry`).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from fbenv.errors import BackendError, FbenvError, InvalidArgumentError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidArgumentError(f"Message.role: expects one of {ROLES}, actual {self.role!r}")
        if not isinstance(self.content, str):
            raise InvalidArgumentError(
                f"Message.content: expects str, actual {type(self.content).__name__}"
            )

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. ``temperature == 0`` means greedy; ``seed`` makes sampling repeatable.

    ``choices`` constrains the reply to one of the given strings (vLLM's *guided choice*):
    backends that can score them (the local transformers ones) return the chosen string
    with every choice's log-probability in :attr:`ChatResult.choice_logprobs`, greedy
    taking the likeliest and sampling drawing from their distribution; vLLM constrains
    decoding; backends that can do neither generate freely, and the caller's parser reads
    the text as usual.
    """

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.choices, tuple) or not all(isinstance(c, str) and c for c in self.choices):
            raise InvalidArgumentError(f"Sampling.choices: expects a tuple of non-empty str, actual {self.choices!r}")
        if len(set(self.choices)) != len(self.choices):
            raise InvalidArgumentError(f"Sampling.choices: expects distinct strings, actual {self.choices!r}")
        if self.max_tokens < 1:
            raise InvalidArgumentError(f"Sampling.max_tokens: expects >= 1, actual {self.max_tokens}")
        if self.temperature < 0:
            raise InvalidArgumentError(f"Sampling.temperature: expects >= 0, actual {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidArgumentError(f"Sampling.top_p: expects in (0, 1], actual {self.top_p}")

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    sampling: Sampling = field(default_factory=Sampling)

    @classmethod
    def of(cls, messages: Sequence[Message | dict[str, str]], **sampling: object) -> "ChatRequest":
        msgs = tuple(m if isinstance(m, Message) else Message(**m) for m in messages)
        return cls(msgs, Sampling(**sampling))  # type: ignore[arg-type]

    def as_dicts(self) -> list[dict[str, str]]:
        return [m.as_dict() for m in self.messages]


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    finish_reason: str = "stop"
    # for requests with ``choices``, when the backend scores them: the log-probability of
    # each choice (normalized over the choices, in their order)
    choice_logprobs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.choice_logprobs is not None and not isinstance(self.choice_logprobs, tuple):
            object.__setattr__(self, "choice_logprobs", tuple(self.choice_logprobs))  # e.g. read back from JSON


class BatchMembership(Protocol):
    """A thread's place in a batch group: where :meth:`Backend.chat` sends its requests."""

    def submit(self, backend: Backend, requests: list[ChatRequest]) -> list[ChatResult]: ...


_local = threading.local()


def current_group() -> BatchMembership | None:
    """The calling thread's batch membership, or None outside any group."""
    return getattr(_local, "membership", None)


@contextmanager
def joined(membership: BatchMembership | None) -> Iterator[None]:
    """Run the body with ``membership`` as the calling thread's (None: in no group)."""
    saved = current_group()
    _local.membership = membership
    try:
        yield
    finally:
        _local.membership = saved


# How a backend pickled as its spec comes back. The registry, which imports this
# module, installs its ``get_backend`` here; a function pickles by module and name, so
# the pickle names ``fbenv.llm.registry.get_backend`` and the loading process resolves
# the spec through its own shared registry.
_rebuild: Callable[..., Backend] | None = None


def install_rebuild(rebuild: Callable[..., Backend]) -> None:
    """Set the function that unpickling calls with a backend's spec arguments."""
    global _rebuild
    _rebuild = rebuild


def pickled_as(*spec_args: object) -> tuple[Callable[..., Backend], tuple[object, ...]]:
    """A ``__reduce__`` value: rebuild through the registry from ``spec_args``."""
    if _rebuild is None:  # only if base.py were loaded without the fbenv.llm package
        raise pickle.PicklingError("LLM backends pickle through fbenv.llm.registry: import it first")
    return _rebuild, spec_args


class Backend:
    """Base class: subclasses implement :meth:`_generate`; callers use :meth:`chat`.

    :meth:`chat` joins the calling thread's batch group when there is one (see
    :mod:`fbenv.llm.batching`), so requests from many envs stepping at once reach
    :meth:`_generate` as one batch. ``spec`` is the string that recreates the backend;
    pickling keeps only it, so Ray workers and subprocesses rebuild their own through
    the registry's ``get_backend``.
    """

    spec: str = ""
    model: str = ""
    #: the backend scores ``Sampling.choices`` (fills ``ChatResult.choice_logprobs``); the
    #: simulation sends content-free calibration prompts only to such backends
    scores_choices: bool = False

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        requests = list(requests)
        if not requests:
            return []
        group = current_group()
        if group is not None:
            return group.submit(self, requests)
        return self.generate_batch(requests)

    def generate_batch(self, requests: list[ChatRequest]) -> list[ChatResult]:
        """Run one batch now (no grouping), timing it and checking the results.

        Whatever the subclass, a failed batch raises a typed error: an exception from
        :meth:`_generate` that is not an :class:`~fbenv.errors.FbenvError` becomes a
        :class:`~fbenv.errors.BackendError` chained to it, and so does a result that is
        not one :class:`ChatResult` per request. ``FbenvError`` subclasses (a replay
        miss, a bad argument) pass through unchanged, as do KeyboardInterrupt and SystemExit.
        """
        start = time.perf_counter()
        who = f"{type(self).__name__} ({self.spec or 'no spec'})"
        try:
            results = self._generate(requests)
        except FbenvError:
            raise
        except Exception as exc:
            raise BackendError(f"{who}: {type(exc).__name__}: {str(exc)[:2000]}") from exc
        if not isinstance(results, (list, tuple)) or len(results) != len(requests):
            got = f"{len(results)} results" if isinstance(results, (list, tuple)) else f"a {type(results).__name__}"
            raise BackendError(
                f"{who}: _generate returned {got} for {len(requests)} requests, "
                "expects a list of one ChatResult per request"
            )
        wrong = next((r for r in results if not isinstance(r, ChatResult)), None)
        if wrong is not None:
            raise BackendError(f"{who}: _generate returned a {type(wrong).__name__} among its results, expects ChatResult")
        elapsed = time.perf_counter() - start
        self.stats.add(len(requests), elapsed)
        return list(results)

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        raise NotImplementedError

    @property
    def stats(self) -> "BackendStats":
        stats = self.__dict__.get("_stats")
        if stats is None:
            stats = self.__dict__["_stats"] = BackendStats()
        return stats

    def close(self) -> None:
        """Release resources; the shared instance may be rebuilt by a later lookup."""

    def __reduce__(self):  # pickles as its spec, never as weights or connections
        return pickled_as(self.spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


@dataclass
class BackendStats:
    """Counts of real (uncached) generate calls, for `fbenv perf` and tests of batching."""

    batches: int = 0
    requests: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n: int, seconds: float) -> None:
        with self._lock:
            self.batches += 1
            self.requests += n
            self.seconds += seconds

    def reset(self) -> None:
        with self._lock:
            self.batches = self.requests = 0
            self.seconds = 0.0
