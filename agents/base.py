"""The agent interface: ``reset(seed)``, ``act(observation, info) -> action``, ``update(...)``.

Agents are plain objects, not tied to a training library; where a well-kept library does
the learning (SB3, TRL) fbenv adapts to it instead. All of an agent's randomness comes
from ``reset(seed=...)`` through ``self.np_random``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Transition:
    """What an agent learns from after one env step."""

    observation: Any
    action: Any
    reward: float
    next_observation: Any
    terminated: bool
    truncated: bool
    info: dict


class Agent:
    """Base class. Subclasses override :meth:`act` and, if they learn, :meth:`update`."""

    name: str = "agent"

    def __init__(self) -> None:
        self.np_random = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        """Forget everything learned and reseed (``seed=None`` draws fresh entropy)."""
        self.np_random = np.random.default_rng(seed)

    def act(self, observation: Any, info: dict) -> Any:
        raise NotImplementedError

    def update(self, transition: Transition) -> None:
        """Learn from one transition; a non-learning agent ignores it."""
