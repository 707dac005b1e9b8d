"""The argument checks of every rate limiter and every layer over them: one rule, one message.

Used by the in-memory limiters (both backends), the Redis limiters, LimiterGroup, rate_limit
and the callbacks. Each check returns the normalised value or raises TypeError (wrong type) or
ValueError (wrong value) with a message that names the argument. Nothing here has side effects.

The rules:

- a real number is an int, float, bool or numpy scalar (``numbers.Real``); ints too large for a
  float become +-inf (and so fail "finite" checks);
- ``rate``, ``capacity``, ``window``: finite and > 0;
- ``cost``: finite and >= 0, and at most the limiter's capacity / max_calls (a cost above it can
  never succeed); a sliding window's cost is a whole number of calls;
- ``actual`` (a reservation's settled cost): finite and >= 0, above the capacity allowed (a
  debt);
- ``timeout``: None or ``inf`` (wait for ever), else a number >= 0; NaN and negatives refused;
- ``block``: a bool.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "MAX_CALLS",
    "check_real",
    "check_positive",
    "check_cost",
    "check_cost_within",
    "check_calls",
    "check_max_calls",
    "check_actual",
    "check_initial",
    "check_clock",
    "check_time",
    "read_clock",
    "check_timeout",
    "check_block",
]

# Largest max_calls: counts stay exact as floats and fit a C Py_ssize_t.
MAX_CALLS = 2**53


def check_real(value: Any, name: str) -> float:
    """``value`` as a float; TypeError unless it is a real number (int, float, numpy scalar)."""
    if type(value) is float:
        return value
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    big: Any = value
    try:
        return float(big)
    except OverflowError:  # an int too large for a float
        return math.inf if big > 0 else -math.inf


def check_positive(value: Any, name: str) -> float:
    v = check_real(value, name)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def check_cost(cost: Any, name: str = "cost") -> float:
    """A request's cost: a finite real number >= 0."""
    c = check_real(cost, name)
    if not (math.isfinite(c) and c >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {cost!r}")
    return c


def check_cost_within(cost: Any, capacity: float) -> float:
    c = check_cost(cost)
    if c > capacity:
        raise ValueError(
            f"cost {cost!r} exceeds capacity {capacity!r}: the request can never succeed"
        )
    return c


def check_calls(cost: Any, max_calls: int) -> int:
    """A sliding-window request's cost: a whole number of calls, 0..max_calls."""
    c = check_cost(cost)
    if not c.is_integer():
        raise ValueError(f"cost must be a whole number of calls, got {cost!r}")
    if c > max_calls:
        raise ValueError(
            f"cost {cost!r} exceeds max_calls {max_calls!r}: the request can never succeed"
        )
    return int(c)


def check_max_calls(value: Any, name: str = "max_calls") -> int:
    if isinstance(value, numbers.Integral):
        m = int(value)
    else:
        v = check_real(value, name)
        if not (math.isfinite(v) and v.is_integer()):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        m = int(v)
    if not 0 < m <= MAX_CALLS:
        raise ValueError(f"{name} must be > 0 and at most 2**53, got {value!r}")
    return m


def check_actual(actual: Any) -> float:
    """A reservation's real cost: finite and >= 0 (it may exceed the capacity: a debt)."""
    return check_cost(actual, "actual")


def check_initial(value: Any, capacity: float) -> float:
    if value is None:
        return capacity
    v = check_real(value, "initial")
    if not (math.isfinite(v) and 0.0 <= v <= capacity):
        raise ValueError(f"initial must be finite and between 0 and capacity, got {value!r}")
    return v


def check_clock(clock: Any) -> Any:
    if not callable(clock):
        raise TypeError(f"clock must be callable, not {type(clock).__name__}")
    return clock


def check_time(t: Any) -> float:
    """A clock reading, checked: a finite real number."""
    if type(t) is float:
        v = t
    elif isinstance(t, numbers.Real):
        v = float(t)
    else:
        raise TypeError(f"clock must return a real number, not {type(t).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"clock returned {t!r}, not a finite time")
    return v


def read_clock(clock: Any) -> float:
    """One reading of a user clock, as a finite float."""
    return check_time(clock())


def check_timeout(timeout: Any) -> float | None:
    """None (wait for ever; so is ``inf``) or a number of seconds >= 0."""
    if timeout is None:
        return None
    v = check_real(timeout, "timeout")
    if math.isnan(v) or v < 0.0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
    return None if v == math.inf else v


def check_block(block: Any) -> bool:
    if not isinstance(block, bool):
        raise TypeError(f"block must be a bool, not {type(block).__name__}")
    return block
