"""Typed errors for a caller's mistakes and for simulator failures.

Each message says what was expected and what was received, with the closest valid
name where there is one, so a typo costs seconds rather than a debugging session.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FbenvError(Exception):
    """Base class of every error fbenv raises on purpose."""


class UnknownNameError(FbenvError, KeyError):
    """A name (env id, backend kind, option value) that fbenv does not know."""

    def __init__(self, what: str, actual: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(str(actual), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        self.message = f"Unknown {what}: expects one of {valid}, actual {actual!r}.{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class InvalidArgumentError(FbenvError, ValueError):
    """An argument of the right name but the wrong type or value."""


class MissingExtraError(FbenvError, ImportError):
    """An optional dependency is missing; the message says which extra installs it."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{package}' package: pip install 'fbenv[{extra}]'"
        )


class ReplayMissError(FbenvError, LookupError):
    """A replay-only LLM cache was asked for a completion it never recorded."""


class BackendError(FbenvError, RuntimeError):
    """An LLM backend failed to produce a completion (after its own retries)."""


def check_choice(what: str, actual: object, valid: Iterable[str]) -> str:
    """Return `actual` if it is one of `valid`, else raise a typed error naming them."""
    valid = tuple(valid)
    if not isinstance(actual, str):
        raise InvalidArgumentError(
            f"{what}: expects a str, one of {list(valid)}, actual {type(actual).__name__} {actual!r}"
        )
    if actual not in valid:
        raise UnknownNameError(what, actual, valid)
    return actual


def check_type(what: str, actual: object, expected: type | tuple[type, ...]) -> None:
    """Raise a typed error unless `actual` is an instance of `expected` (bools are not ints)."""
    exp = expected if isinstance(expected, tuple) else (expected,)
    is_bool_as_number = isinstance(actual, bool) and bool not in exp
    if is_bool_as_number or not isinstance(actual, exp):
        names = " or ".join(t.__name__ for t in exp)
        raise InvalidArgumentError(
            f"{what}: expects {names}, actual {type(actual).__name__} {actual!r}"
        )
