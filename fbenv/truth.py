"""Ground truth beside feedback: one record, derived into info the same way in every task.

A task's step returns a :class:`StepResult`: the feedback reward, whether the task ended,
and a :class:`Truth` (the utility of what happened under the hidden objective and, when
known, the best achievable). ``true_utility``, ``is_success`` and ``regret`` are derived
from it here, so no task computes them its own way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The info keys every env fills.
FEEDBACK = "feedback"
TRUE_UTILITY = "true_utility"
IS_SUCCESS = "is_success"
REGRET = "regret"
MESSAGES = "messages"
LLM_SEEDS = "llm_seeds"
USAGE = "usage"
TURN = "turn"
FEEDBACK_ERROR = "feedback_error"
EPISODE = "episode_result"  # at the end of every episode (see fbenv.episodes)

SUCCESS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Truth:
    """The hidden objective's view of a step: ``utility`` now, ``best`` achievable (if known)."""

    utility: float = 0.0
    best: float | None = None
    success: bool | None = None  # overrides ``utility >= best`` when a task defines success otherwise

    def as_info(self) -> dict[str, Any]:
        u = float(self.utility)
        info: dict[str, Any] = {TRUE_UTILITY: u}
        if self.success is not None:
            info[IS_SUCCESS] = bool(self.success)
        else:
            info[IS_SUCCESS] = self.best is not None and u >= float(self.best) - SUCCESS_TOLERANCE
        if self.best is not None:
            info[REGRET] = float(self.best) - u
        return info


@dataclass(frozen=True)
class StepResult:
    """What a task's ``respond`` hook returns for one step."""

    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False  # the task's own budget or turn limit
    truth: Truth = field(default_factory=Truth)
    info: Mapping[str, Any] = field(default_factory=dict)  # task-specific (outcomes at the end)
