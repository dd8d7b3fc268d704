"""A Text space for LLM text: any ``str`` up to ``max_length`` is a member.

Gymnasium's ``Text.contains`` rejects characters outside the charset, and LLM output is
arbitrary Unicode; a charset of all Unicode would make the space's pickle megabytes
large (vector envs and Ray pickle spaces). So sampling uses a small printable charset
while membership accepts any string. Gymnasium's vector utilities dispatch on ``Text``
subclasses, so batching and ``check_env`` treat it as a Text space.
"""

from __future__ import annotations

import string
from typing import Any

from gymnasium.spaces import Text

SAMPLE_CHARSET = string.ascii_letters + string.digits + " .,!?'-"


class FreeText(Text):
    def __init__(self, max_length: int = 4096, *, min_length: int = 0, seed: int | None = None):
        super().__init__(max_length=max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"FreeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, FreeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )
