"""The shared scalar validators of fewshot._validate."""

import re

import numpy as np
import pytest

from fewshot._validate import check_int, check_optional_int, check_real


@pytest.mark.parametrize("value", [1, 5, np.int64(3), np.int32(7)])
def test_check_int_accepts_positive_integers_and_returns_python_int(value):
    out = check_int("n", value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize(
    ("value", "low", "high", "rule"),
    [
        (0, 1, None, "a positive integer"),
        (-1, 0, None, "a non-negative integer"),
        (1, 2, None, "an integer >= 2"),
        (11, 1, 10, r"an integer in \[1, 10\]"),
        (True, 1, None, "a positive integer"),
        (2.0, 1, None, "a positive integer"),
        ("3", 1, None, "a positive integer"),
        (None, 1, None, "a positive integer"),
    ],
)
def test_check_int_rejects_with_the_rule_and_the_value(value, low, high, rule):
    with pytest.raises(ValueError, match=f"^n_way must be {rule}, got {re.escape(repr(value))}$"):
        check_int("n_way", value, low=low, high=high)


def test_check_optional_int():
    assert check_optional_int("k", None) is None
    assert check_optional_int("k", 0, low=0) == 0
    with pytest.raises(ValueError, match="^k must be a positive integer, got 0$"):
        check_optional_int("k", 0)


@pytest.mark.parametrize(
    ("value", "closed", "ok"),
    [
        (0.0, "both", True),
        (1.0, "both", True),
        (0.0, "left", True),
        (1.0, "left", False),
        (0.0, "right", False),
        (1.0, "right", True),
        (0.0, "neither", False),
        (1.0, "neither", False),
        (0.5, "neither", True),
    ],
)
def test_check_real_interval_ends(value, closed, ok):
    if ok:
        assert check_real("p", value, low=0, high=1, closed=closed) == value
    else:
        with pytest.raises(ValueError, match=r"^p must be in [\[(]0, 1[\])], got "):
            check_real("p", value, low=0, high=1, closed=closed)


@pytest.mark.parametrize(
    ("kwargs", "value", "message"),
    [
        ({"low": 0, "high": 1, "closed": "neither"}, 1.0, r"alpha must be in \(0, 1\), got 1.0"),
        ({"low": 0, "closed": "neither"}, 0, r"alpha must be a positive number, got 0"),
        ({"low": 0}, -0.5, r"alpha must be a non-negative number, got -0.5"),
        ({"high": 1, "closed": "left"}, 1, r"alpha must be < 1, got 1"),
        ({"low": 2}, 1.5, r"alpha must be >= 2, got 1.5"),
        ({}, float("nan"), r"alpha must be a finite number, got nan"),
        ({}, True, r"alpha must be a finite number, got True"),
        ({}, "0.1", r"alpha must be a finite number, got '0.1'"),
    ],
)
def test_check_real_messages(kwargs, value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_real("alpha", value, **kwargs)


def test_check_real_returns_python_float_from_numpy_and_int():
    assert type(check_real("x", np.float32(0.25))) is float
    assert check_real("x", 3, low=0) == 3.0


def test_check_real_rejects_unknown_closed():
    with pytest.raises(ValueError, match="closed must be one of"):
        check_real("x", 0.5, closed="open")
