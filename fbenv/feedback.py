"""The one record every simulated signal becomes.

A step's records go to ``info["feedback"]`` as a tuple of :class:`Feedback`. A record
whose LLM output did not parse keeps ``parsed=False`` and the raw text, so a failure is
counted and visible instead of becoming a silent 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Source(str, Enum):
    """Who produced a signal."""

    USER = "user"
    CRITIC = "critic"
    ANNOTATOR = "annotator"
    HINDSIGHT = "hindsight"
    EXECUTION = "execution"
    ORACLE = "oracle"
    PEER = "peer"


@dataclass(frozen=True)
class Usage:
    """LLM cost of producing a record (zeros for rule simulators)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cache_hits: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            latency_s=self.latency_s + other.latency_s,
            cache_hits=self.cache_hits + other.cache_hits,
        )


@dataclass(frozen=True)
class Feedback:
    """One signal from a simulated person.

    ``scalar`` is in the source's own scale (``scale`` says which); ``text`` is verbal
    feedback; ``preference`` is the index preferred in a comparison and ``ranking`` the
    order of a listwise judgement. ``parsed`` is False when an LLM reply could not be
    read; ``fallback`` names what stood in for it (e.g. ``"rule"``).
    """

    source: Source
    scalar: float | None = None
    scale: tuple[float, float] | None = None
    text: str | None = None
    preference: int | None = None
    ranking: tuple[int, ...] | None = None
    parsed: bool = True
    raw: str | None = None
    fallback: str | None = None
    simulator: str = "rule"
    seed: int | None = None
    usage: Usage = field(default_factory=Usage)
    # an LLM rater's probability of each point of the scale, when its backend scored them
    distribution: tuple[float, ...] | None = None

    def normalized(self) -> float | None:
        """``scalar`` mapped from ``scale`` to [0, 1], or None without a scalar."""
        if self.scalar is None:
            return None
        if self.scale is None:
            return float(self.scalar)
        lo, hi = self.scale
        return (float(self.scalar) - lo) / (hi - lo)
