"""The two views of one task: ``text`` for LLM policies, ``discrete`` for classic RL.

An :class:`Interface` owns the observation and action spaces of one view, validates an
action with a typed error, and turns any action into the text the task reads: a text
action is the reply itself (cut to ``max_action_chars``), a discrete action ``i`` is the
task's ``i``-th candidate reply. So both views are one task with one set of dynamics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from fbenv.errors import InvalidArgumentError, check_choice
from fbenv.options import INTERFACES
from fbenv.spaces import FreeText


@dataclass
class Interface:
    kind: str
    observation_space: spaces.Space
    action_space: spaces.Space
    owner: str = "env"
    max_action_chars: int = 2000
    max_obs_chars: int = 8192

    @classmethod
    def of(
        cls,
        kind: str,
        *,
        n_actions: int,
        n_features: int,
        low: float = 0.0,
        high: float = 1.0,
        max_obs_chars: int = 8192,
        max_action_chars: int = 2000,
        text_in_dict: bool = False,
        owner: str = "env",
    ) -> "Interface":
        """The spaces of view ``kind``. ``text_in_dict`` wraps a text observation as
        ``Dict({"text": ...})`` (PettingZoo's AEC tests read ``.dtype`` of raw str observations)."""
        check_choice("interface", kind, INTERFACES)
        if kind == "text":
            obs: spaces.Space = FreeText(max_length=max_obs_chars)
            if text_in_dict:
                obs = spaces.Dict({"text": obs})
            return cls(kind, obs, FreeText(max_length=max_action_chars), owner, max_action_chars, max_obs_chars)
        if n_actions < 1 or n_features < 1:
            raise InvalidArgumentError(f"{owner}: the discrete view needs n_actions and n_features >= 1")
        box = spaces.Box(low, high, shape=(n_features,), dtype=np.float32)
        return cls(kind, box, spaces.Discrete(n_actions), owner, max_action_chars, max_obs_chars)

    def action_text(self, action: Any, reply: Callable[[int], str]) -> tuple[str, dict[str, Any]]:
        """The text ``action`` says, and notes for info (``action_text``, ``action_truncated``).

        ``reply(i)`` is what discrete action ``i`` says (only the chosen reply is written)."""
        if self.kind == "discrete":
            n = int(self.action_space.n)
            if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):  # scalars only
                raise InvalidArgumentError(
                    f"{self.owner}.step: expects an int in [0, {n}) (Discrete), actual {type(action).__name__} {action!r}"
                )
            if not 0 <= int(action) < n:
                raise InvalidArgumentError(f"{self.owner}.step: expects an int in [0, {n}), actual {int(action)}")
            text = reply(int(action))
            return text, {"action_text": text}
        if not isinstance(action, str):
            raise InvalidArgumentError(
                f"{self.owner}.step: expects a str action (text interface), actual {type(action).__name__}"
            )
        if len(action) > self.max_action_chars:
            return action[: self.max_action_chars], {"action_truncated": True}
        return action, {}

    def observe(self, text: Callable[[], str], features: Callable[[], np.ndarray]) -> Any:
        """The observation; a text longer than the space allows keeps its most recent end."""
        if self.kind == "discrete":
            return np.asarray(features(), dtype=np.float32)
        t = text()
        if len(t) > self.max_obs_chars:
            t = t[-self.max_obs_chars :]
        return {"text": t} if isinstance(self.observation_space, spaces.Dict) else t
