"""The shared argument validators: what they accept, what they return, what they say."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from fbenv.errors import InvalidArgumentError, check_int, check_number, check_type


@pytest.mark.parametrize("value", [0, 0.5, 1, np.float32(0.25), np.int64(1), Fraction(1, 3)])
def test_check_number_returns_a_float(value):
    out = check_number("p", value, 0.0, 1.0)
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize(
    ("kwargs", "value", "message"),
    [
        ({"low": 0.0, "high": 1.0}, 1.5, "p: expects a finite number in [0, 1], actual 1.5"),
        ({"low": 0.0, "high": 1.0, "low_open": True}, 0, "p: expects a finite number in (0, 1], actual 0"),
        ({"low": 0.0, "high": 1.0, "high_open": True}, 1.0, "p: expects a finite number in [0, 1), actual 1.0"),
        ({"low": 0.0}, -0.1, "p: expects a finite number >= 0, actual -0.1"),
        ({"low": 1e-9, "low_open": True}, 1e-9, "p: expects a finite number > 1e-09, actual 1e-09"),
        ({"high": 5}, 6, "p: expects a finite number <= 5, actual 6"),
        ({"high": 5, "high_open": True}, 5, "p: expects a finite number < 5, actual 5"),
        ({}, math.nan, "p: expects a finite number, actual nan"),
        ({}, math.inf, "p: expects a finite number, actual inf"),
        ({"low": 0.0}, "0.1", "p: expects a finite number >= 0, actual str '0.1'"),
        ({}, None, "p: expects a finite number, actual NoneType None"),
    ],
)
def test_check_number_names_the_interval_and_the_value(kwargs, value, message):
    with pytest.raises(InvalidArgumentError) as err:
        check_number("p", value, **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_bools_are_never_numbers(value):
    with pytest.raises(InvalidArgumentError, match="expects a finite number, actual"):
        check_number("p", value)
    with pytest.raises(InvalidArgumentError, match="expects an int, actual"):
        check_int("n", value)


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3)])
def test_check_int_returns_an_int(value):
    out = check_int("n", value, 1, 5)
    assert type(out) is int and out == 3


@pytest.mark.parametrize(
    ("bounds", "value", "message"),
    [
        ((1, None), 0, "n: expects an int >= 1, actual 0"),
        ((None, 5), 6, "n: expects an int <= 5, actual 6"),
        ((1, 5), 7, "n: expects an int in [1, 5], actual 7"),
        ((1, None), 2.0, "n: expects an int >= 1, actual float 2.0"),
        ((None, None), "3", "n: expects an int, actual str '3'"),
        ((1_000_000, None), 999_999, "n: expects an int >= 1000000, actual 999999"),
    ],
)
def test_check_int_names_the_bounds_and_the_value(bounds, value, message):
    with pytest.raises(InvalidArgumentError) as err:
        check_int("n", value, *bounds)
    assert str(err.value) == message


def test_check_int_bounds_are_inclusive_and_optional():
    assert check_int("n", 1, 1, 1) == 1
    assert check_int("n", -(10**30)) == -(10**30)


def test_check_type_returns_what_it_accepts():
    text = "hello"
    assert check_type("s", text, str) is text
    with pytest.raises(InvalidArgumentError, match="s: expects str, actual int 3"):
        check_type("s", 3, str)
    with pytest.raises(InvalidArgumentError, match="expects int, actual bool True"):
        check_type("n", True, int)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        check_number("p", -1, 0.0)
    with pytest.raises(ValueError):
        check_int("n", 0, 1)
