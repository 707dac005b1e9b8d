"""Python layers over the rate limiters of the active backend.

- :class:`RateLimitError` -- raised when a request is refused, with ``retry_after`` seconds.
- :func:`rate_limit` -- a decorator for sync and async functions (wait, or raise).
- :func:`parse_rate` -- ``"100/minute"`` -> ``(100, 60.0)``.
- :class:`LimiterGroup` -- all-or-nothing decisions across several limiters (requests per
  minute AND tokens per minute, as LLM APIs impose them).
- :class:`AsyncLimiter` -- a drop-in for ``aiolimiter.AsyncLimiter``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import os
import re
import sys
import threading
import time
import warnings
from contextlib import AbstractAsyncContextManager
from heapq import heappop, heappush
from itertools import count

from ._limiter_protocol import RateLimitError, check_limiter, limiter_kind  # noqa: F401
from ._ratelimit_py import (
    _rl_acquire,
    _rl_acquire_async,
    _rl_measured,
    _rl_read,
    _rl_real,
    _rl_timeout,
    _RLGate,
)

__all__ = ["RateLimitError", "rate_limit", "parse_rate", "LimiterGroup", "AsyncLimiter"]


# ---- parse_rate -----------------------------------------------------------------------------

_UNITS = {
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_RATE_RE = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(?:/|per)\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.IGNORECASE
)


def parse_rate(text: str) -> tuple[int | float, float]:
    """Parse ``"<count>/<period>"``: ``"100/minute"`` -> ``(100, 60.0)``, ``"5/10s"`` ->
    ``(5, 10.0)``. Units: second, minute, hour, day (also s, sec, m, min, h, hr, d, plurals);
    ``"per"`` may stand for ``/``. The count is an int when written as one.
    """
    if not isinstance(text, str):
        raise TypeError(f"rate must be a string like '100/minute', not {type(text).__name__}")
    m = _RATE_RE.match(text)
    unit = _UNITS.get(m.group(3).lower()) if m else None
    if m is None or unit is None:
        raise ValueError(f"rate must look like '100/minute' or '5/10s', got {text!r}")
    num, mult = m.group(1), m.group(2)
    amount: int | float = float(num) if "." in num else int(num)
    period = unit * (float(mult) if mult else 1.0)
    if not amount > 0 or not period > 0:
        raise ValueError(f"rate must have a count and a period > 0, got {text!r}")
    return amount, period


# ---- rate_limit decorator -------------------------------------------------------------------


def rate_limit(limiter, *, cost=1, block=True):
    """Decorate a sync or async function so each call first acquires ``cost`` from ``limiter``
    (a TokenBucket, LeakyBucket, SlidingWindowLimiter or LimiterGroup).

    With ``block=True`` a call waits until allowed (an async function awaits); otherwise a
    refused call raises :class:`RateLimitError` with ``retry_after``.
    """
    if not hasattr(limiter, "try_acquire") or not hasattr(limiter, "acquire_async"):
        raise TypeError(f"limiter must be a prodfast rate limiter, not {type(limiter).__name__}")
    limiter.wait_time(cost)  # checks cost now, at decoration time

    def refuse():
        raise RateLimitError(retry_after=limiter.wait_time(cost))

    def decorate(func):
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args, **kwargs):
                if block:
                    await limiter.acquire_async(cost)
                elif not limiter.try_acquire(cost):
                    refuse()
                return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if block:
                limiter.acquire(cost)
            elif not limiter.try_acquire(cost):
                refuse()
            return func(*args, **kwargs)

        return wrapper

    return decorate


# ---- LimiterGroup ---------------------------------------------------------------------------


class LimiterGroup:
    """All-or-nothing decisions across several limiters.

    ``try_acquire(costs)`` grants a request only if every limiter grants its cost; a refused
    request changes nothing in any limiter (their counters included). ``costs`` has one cost
    per limiter, or is one number used for each. The group keeps its own counters in
    ``stats()``; its limiters count the grants made through it.
    """

    def __init__(self, limiters) -> None:
        members = list(limiters)
        if not members:
            raise ValueError("limiters must contain at least one limiter")
        for m in members:
            if not all(hasattr(m, a) for a in ("_take", "_give_back", "_check", "_note")):
                raise TypeError(
                    f"limiters must be prodfast TokenBucket, LeakyBucket or "
                    f"SlidingWindowLimiter objects, not {type(m).__name__}"
                )
        self._members = tuple(members)
        self.limiter_kind = "both"
        self._clock = members[0].clock
        self._lock = threading.RLock()
        self._gate = _RLGate()
        self._created = _rl_read(self._clock)
        self._allowed = self._denied = 0

    @property
    def limiters(self) -> tuple:
        return self._members

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"LimiterGroup({list(self._members)!r})"

    def _costs(self, costs) -> list:
        n = len(self._members)
        if isinstance(costs, (str, bytes)) or not hasattr(costs, "__len__"):
            each = [costs] * n
        else:
            each = list(costs)
            if len(each) != n:
                raise ValueError(
                    f"costs must have one cost per limiter: got {len(each)} costs for {n} limiters"
                )
        return [m._check(c) for m, c in zip(self._members, each, strict=True)]

    def _attempt(self, costs) -> float:
        """Take every cost or none: -1.0 if granted, else the longest wait of the members."""
        with self._lock:
            taken: list = []
            for m, c in zip(self._members, costs, strict=True):
                r = m._take(c)
                if isinstance(r, float):  # refused: give back what was taken, newest first
                    for tm, tc, receipt in reversed(taken):
                        tm._give_back(tc, receipt)
                    return max(m.wait_time(c) for m, c in zip(self._members, costs, strict=True))
                taken.append((m, c, r))
            return -1.0

    def _note(self, granted: bool) -> None:
        with self._lock:
            if granted:
                self._allowed += 1
                for m in self._members:
                    m._note(True)
            else:
                self._denied += 1

    def try_acquire(self, costs=1) -> bool:
        """Grant every limiter its cost now, or none of them; never blocks."""
        cs = self._costs(costs)
        granted = self._attempt(cs) < 0.0
        self._note(granted)
        return granted

    def wait_time(self, costs=1) -> float:
        """Seconds until every limiter would grant its cost (the longest of their waits)."""
        cs = self._costs(costs)
        return max(m.wait_time(c) for m, c in zip(self._members, cs, strict=True))

    def acquire(self, costs=1, timeout=None) -> bool:
        """Block until the whole request is granted; False if ``timeout`` runs out first."""
        cs = self._costs(costs)
        return _rl_acquire(self, cs, _rl_timeout(timeout))

    def acquire_async(self, costs=1, timeout=None):
        """:meth:`acquire` for asyncio (an awaitable)."""
        cs = self._costs(costs)
        return _rl_acquire_async(self, cs, _rl_timeout(timeout))

    def stats(self) -> dict:
        """The group's own counters and rates (clock of its first limiter), and each limiter's."""
        now = _rl_read(self._clock)
        with self._lock:
            out = _rl_measured(self._allowed, self._denied, self._created, now)
        out["limiters"] = [m.stats() for m in self._members]
        return out

    def reset(self) -> None:
        """Zero the group's counters and reset every limiter."""
        with self._lock:
            for m in self._members:
                m.reset()
            self._created = _rl_read(self._clock)
            self._allowed = self._denied = 0


# ---- AsyncLimiter ---------------------------------------------------------------------------

LIMITER_REUSED_ACROSS_LOOPS_WARNING = (
    "This AsyncLimiter instance is being re-used across loops. Please create "
    "a new limiter per event loop as re-use can lead to undefined behaviour."
)

if sys.version_info >= (3, 12):  # pragma: no cover
    _warn_reuse = functools.partial(
        warnings.warn,
        message=LIMITER_REUSED_ACROSS_LOOPS_WARNING,
        category=RuntimeWarning,
        skip_file_prefixes=(os.path.dirname(__file__),),
    )
else:  # pragma: no cover
    _warn_reuse = functools.partial(
        warnings.warn,
        message=LIMITER_REUSED_ACROSS_LOOPS_WARNING,
        category=RuntimeWarning,
        stacklevel=0,
    )


def _al_positive(value, name: str) -> float:
    v = _rl_real(value, name)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return value


class AsyncLimiter(AbstractAsyncContextManager):
    """A leaky bucket for asyncio, compatible with ``aiolimiter.AsyncLimiter`` 1.x.

    Up to ``max_rate`` acquisitions pass at once (the bucket starts empty), then the level
    drains at ``max_rate / time_period`` per second. ``await acquire(amount)`` waits for room;
    ``has_capacity(amount)`` checks; ``async with limiter:`` acquires 1. Waiters are woken
    smallest amount first, then in arrival order, and an acquire that fits now is never held
    behind one that waits. The running loop's ``loop.time()`` is read on every call; reusing a
    limiter on a new loop (after the old one closed) warns with RuntimeWarning, as aiolimiter.

    Unlike aiolimiter, ``max_rate`` and ``time_period`` are checked: finite and > 0.
    """

    __slots__ = (
        "_event_loop", "_last_check", "_level", "_next_count", "_rate_per_sec", "_waiters",
        "_waker_handle", "_ready", "_loop_time", "max_rate", "time_period",
    )  # fmt: skip

    def __init__(self, max_rate: float, time_period: float = 60) -> None:
        self.max_rate = _al_positive(max_rate, "max_rate")
        self.time_period = _al_positive(time_period, "time_period")
        self._rate_per_sec = max_rate / time_period
        self._level = 0.0
        self._last_check = 0.0
        self._waker_handle: asyncio.TimerHandle | None = None
        self._waiters: list = []  # min-heap of (amount, order, future)
        self._next_count = functools.partial(next, count())
        self._ready = None  # a finished future: what `async with` awaits when no wait is needed
        self._event_loop: asyncio.AbstractEventLoop | None = None

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        try:
            loop = self._event_loop
            if loop is None:
                raise AttributeError("_event_loop")
            if loop.is_closed():
                # reused across loops: keep only the waiters of the new loop, as aiolimiter
                loop = self._event_loop = asyncio.get_running_loop()
                self._waiters = [(a, c, f) for a, c, f in self._waiters if f.get_loop() == loop]
                _warn_reuse()
        except AttributeError:
            loop = self._event_loop = asyncio.get_running_loop()
        # loop.time, read without a Python-level call when it is asyncio's own (monotonic)
        self._loop_time = _monotonic if type(loop).time is _BASE_TIME else loop.time
        return loop

    def _leak(self) -> None:
        now = self._loop.time()
        if self._level:
            elapsed = now - self._last_check
            decrement = elapsed * self._rate_per_sec
            self._level = max(self._level - decrement, 0)
        self._last_check = now

    def has_capacity(self, amount: float = 1) -> bool:
        """True if ``amount`` fits in the bucket now."""
        self._leak()
        return self._level + amount <= self.max_rate

    async def acquire(self, amount: float = 1) -> None:
        """Wait until ``amount`` fits, then take it. ValueError unless 0 <= amount <= max_rate."""
        if not 0 <= amount <= self.max_rate:
            raise ValueError("Amount must be a number between 0 and the maximum capacity")
        loop = self._loop
        while not self.has_capacity(amount):
            fut = loop.create_future()
            fut.add_done_callback(functools.partial(loop.call_soon, self._wake_next))
            heappush(self._waiters, (amount, self._next_count(), fut))
            self._wake_next()
            await fut
        self._level += amount
        self._wake_next()

    def _wake_next(self, *_args: object) -> None:
        heap, handle, self._waker_handle = self._waiters, self._waker_handle, None
        if handle is not None:
            handle.cancel()
        while heap and heap[0][-1].done():
            heappop(heap)
        if not heap:
            return
        amount, _, fut = heap[0]
        self._leak()
        needed = amount - self.max_rate + self._level
        if needed <= 0:
            heappop(heap)
            fut.set_result(None)
            return
        wake_next_at = self._last_check + (1 / self._rate_per_sec * needed)
        self._waker_handle = self._loop.call_at(wake_next_at, self._wake_next)

    def __repr__(self) -> str:
        args = f"max_rate={self.max_rate!r}, time_period={self.time_period!r}"
        state = f"level: {self._level:f}, waiters: {len(self._waiters)}"
        return f"<AsyncLimiter({args}) at {id(self):#x} [{state}]>"

    def __aenter__(self):
        # Fast path of `await self.acquire()`: nobody waits and 1 fits now. Same reads of
        # loop.time() and the same arithmetic as acquire(), without creating a coroutine.
        if self._waiters or self._waker_handle is not None or not 1 <= self.max_rate:
            return self.acquire()
        loop = _get_running_loop()
        if loop is not self._event_loop:  # first use, or another loop: the checks of _loop
            loop = self._loop
        now = self._loop_time()
        level = self._level
        if level:
            level = level - (now - self._last_check) * self._rate_per_sec
            if level < 0:  # as aiolimiter's max(level - decrement, 0)
                level = 0
            self._level = level
        self._last_check = now
        if level + 1 > self.max_rate:
            return self._acquire_rest(loop)
        self._level = level + 1
        ready = self._ready
        if ready is None:
            ready = self._ready = loop.create_future()
            ready.set_result(None)
        return ready

    async def _acquire_rest(self, loop) -> None:
        # acquire(1) after has_capacity(1) came out False: wait as aiolimiter does
        while True:
            fut = loop.create_future()
            fut.add_done_callback(functools.partial(loop.call_soon, self._wake_next))
            heappush(self._waiters, (1, self._next_count(), fut))
            self._wake_next()
            await fut
            if self.has_capacity(1):
                break
        self._level += 1
        self._wake_next()

    def __aexit__(self, exc_type, exc, tb):
        ready = self._ready
        if ready is None:  # only if __aenter__ never ran: an async no-op as aiolimiter's
            return _noop()
        return ready


_get_running_loop = asyncio.get_running_loop
_monotonic = time.monotonic
_BASE_TIME = asyncio.BaseEventLoop.time


async def _noop() -> None:
    return None
