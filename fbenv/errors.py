"""Typed errors for a caller's mistakes and for simulator failures, and the checks that raise them.

Each message says what was expected and what was received, with the closest valid
name where there is one, so a typo costs seconds rather than a debugging session.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


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


def check_type(what: str, actual: T, expected: type | tuple[type, ...]) -> T:
    """Return `actual` if it is an instance of `expected`, else raise a typed error (bools are not ints)."""
    exp = expected if isinstance(expected, tuple) else (expected,)
    is_bool_as_number = isinstance(actual, bool) and bool not in exp
    if is_bool_as_number or not isinstance(actual, exp):
        names = " or ".join(t.__name__ for t in exp)
        raise InvalidArgumentError(
            f"{what}: expects {names}, actual {type(actual).__name__} {actual!r}"
        )
    return actual


def check_number(
    what: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return `value` as a float if it is a finite real number between `low` and `high`.

    Each bound is included unless `low_open` / `high_open`. Ints, floats and numpy
    scalars are numbers; bools are not.
    """
    bounds = _bounds(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(
            f"{what}: expects a finite number{bounds}, actual {type(value).__name__} {value!r}"
        )
    v = float(value)
    above = v > low if low_open else v >= low
    below = v < high if high_open else v <= high
    if not (math.isfinite(v) and above and below):
        raise InvalidArgumentError(f"{what}: expects a finite number{bounds}, actual {value!r}")
    return v


def check_int(what: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return `value` as an int if it is an integer in [`minimum`, `maximum`] (None: unbounded).

    Python and numpy integers are ints; bools and integral floats such as ``2.0`` are not.
    """
    low = -math.inf if minimum is None else minimum
    high = math.inf if maximum is None else maximum
    bounds = _bounds(low, high, False, False)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{what}: expects an int{bounds}, actual {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise InvalidArgumentError(f"{what}: expects an int{bounds}, actual {value!r}")
    return int(value)


def _bounds(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """The interval in the words that follow "expects a number": ' in [0, 1)', ' >= 1' or ''."""

    def show(x: float) -> str:
        return str(x) if isinstance(x, numbers.Integral) else f"{x:g}"

    if math.isinf(low) and math.isinf(high):
        return ""
    if math.isinf(high):
        return f" {'>' if low_open else '>='} {show(low)}"
    if math.isinf(low):
        return f" {'<' if high_open else '<='} {show(high)}"
    return f" in {'(' if low_open else '['}{show(low)}, {show(high)}{')' if high_open else ']'}"
