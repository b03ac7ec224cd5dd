"""One validator per rule for scalar arguments at the public boundary.

Every public function that takes a count, a size, a seed, a probability or a rate checks it here,
so the rule and its one-line message exist once::

    check_int("n_way", 0)                 # ValueError: n_way must be a positive integer, got 0
    check_int("seed", -1, low=0)          # ValueError: seed must be a non-negative integer, got -1
    check_real("alpha", 1.0, low=0, high=1, closed="neither")
                                          # ValueError: alpha must be in (0, 1), got 1.0

Booleans are rejected where an integer is expected (``True`` is an ``int`` in Python, never a
size); NumPy integer and floating scalars are accepted and returned as Python numbers.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

__all__ = ["check_int", "check_real", "check_optional_int"]

Closed = Literal["both", "left", "right", "neither"]


def _int_rule(low: int, high: int | None) -> str:
    if high is not None:
        return f"an integer in [{low}, {high}]"
    if low == 1:
        return "a positive integer"
    if low == 0:
        return "a non-negative integer"
    return f"an integer >= {low}"


def check_int(name: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    """``value`` as a Python ``int``, checked to be an integer in ``[low, high]``.

    Args:
        name: the argument's name, used in the message.
        value: the value given; ``bool`` is rejected, NumPy integers are accepted.
        low: smallest accepted value (default 1: a positive integer).
        high: largest accepted value, or ``None`` (default) for no upper bound.

    Raises:
        ValueError: ``value`` is not an integer or lies outside the range; the message names
            ``name``, the rule and the value, e.g. ``n_way must be a positive integer, got 0``.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and int(value) >= low and (high is None or int(value) <= high)
    if not ok:
        raise ValueError(f"{name} must be {_int_rule(low, high)}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value``, checked to be ``True`` or ``False``.

    Raises:
        ValueError: anything else, e.g. ``fold_batchnorm must be True or False, got 'yes'``.
    """
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_optional_int(name: str, value: Any, *, low: int = 1, high: int | None = None) -> int | None:
    """:func:`check_int`, letting ``None`` through (meaning "not set")."""
    return None if value is None else check_int(name, value, low=low, high=high)


def _interval(low: float | None, high: float | None, closed: Closed) -> str:
    left_closed = closed in ("both", "left")
    right_closed = closed in ("both", "right")
    if low == 0 and high is None:
        return "a positive number" if closed in ("right", "neither") else "a non-negative number"
    if low is not None and high is not None:
        return f"in {'[' if left_closed else '('}{low:g}, {high:g}{']' if right_closed else ')'}"
    if low is not None:
        return f"{'>=' if left_closed else '>'} {low:g}"
    if high is not None:
        return f"{'<=' if right_closed else '<'} {high:g}"
    return "a finite number"


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    closed: Closed = "both",
) -> float:
    """``value`` as a finite Python ``float`` inside an interval.

    Args:
        name: the argument's name, used in the message.
        value: the value given; ``bool`` is rejected, NumPy scalars and integers are accepted.
        low, high: the bounds, ``None`` for unbounded on that side (default: any finite number).
        closed: which bounds belong to the interval: ``"both"`` (default, ``[low, high]``),
            ``"left"`` (``[low, high)``), ``"right"`` (``(low, high]``) or ``"neither"``.

    Raises:
        ValueError: not a real number, NaN/Inf, or outside the interval; the message names
            ``name``, the interval and the value, e.g. ``alpha must be in (0, 1), got 1.0``.
    """
    if closed not in ("both", "left", "right", "neither"):
        raise ValueError(f"closed must be one of both, left, right, neither, got {closed!r}")
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    x = float(value) if ok else math.nan
    ok = ok and math.isfinite(x)
    if ok and low is not None:
        ok = x >= low if closed in ("both", "left") else x > low
    if ok and high is not None:
        ok = x <= high if closed in ("both", "right") else x < high
    if not ok:
        raise ValueError(f"{name} must be {_interval(low, high, closed)}, got {value!r}")
    return x
