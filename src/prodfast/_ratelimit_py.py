"""Pure-Python rate limiters: the readable reference twin of the compiled ones.

Three limiters share one interface:

- :class:`TokenBucket` -- tokens refill at ``rate`` per second up to ``capacity``; a request
  costing ``cost`` is allowed iff ``tokens >= cost``, and then takes them.
- :class:`LeakyBucket` -- a meter: its level drains at ``rate`` per second; a request is allowed
  iff ``level + cost <= capacity``, and then adds to it.
- :class:`SlidingWindowLimiter` -- an exact log of call times: a call at time ``c`` counts while
  ``now - c < window``; a request for ``cost`` calls is allowed iff they fit under ``max_calls``.

Time comes from an injectable clock (``time.monotonic`` by default), read once per operation. A
clock that goes backwards means that no time passed. A denied request takes nothing: the state
seen from then on (tokens, level, calls in the window, counters but ``denied``) is unchanged.

The compiled core imports the argument checks, the trace checks of ``simulate`` and the waiting
logic of ``acquire``/``acquire_async`` from here, so both twins accept, reject and wait alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

import numpy as np

from ._rl_checks import (
    check_calls,
    check_clock,
    check_cost,
    check_cost_within,
    check_initial,
    check_max_calls,
    check_positive,
    check_real,
    check_time,
    check_timeout,
    read_clock,
)

__all__ = ["TokenBucket", "LeakyBucket", "SlidingWindowLimiter"]

_GRANTED = -1.0

# The argument checks, shared by every limiter and layer (prodfast._rl_checks), under the
# names this module and the compiled twin use.
_rl_real = check_real
_rl_positive = check_positive
_rl_cost = check_cost
_rl_cost_within = check_cost_within
_rl_calls = check_calls
_rl_max_calls = check_max_calls
_rl_initial = check_initial
_rl_clock = check_clock
_rl_time = check_time
_rl_read = read_clock
_rl_timeout = check_timeout


# ---- simulate() trace checks (shared with the compiled twin) ---------------------------------


def _rl_array(values, name: str) -> np.ndarray:
    try:
        arr = np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of real numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _rl_trace_arrays(times, costs):
    """Float64 one-dimensional arrays of a ``simulate`` trace, ``costs`` None or as long."""
    t = _rl_array(times, "times")
    if costs is None:
        return t, None
    c = _rl_array(costs, "costs")
    if c.shape != t.shape:
        raise ValueError(
            f"costs must have one cost per time: {c.shape[0]} costs, {t.shape[0]} times"
        )
    return t, c


def _rl_trace_raise(nonfinite, decreasing, bad, fraction, over, limit, limit_name) -> None:
    """Raise the first error a trace scan found (the twins scan alike, and share the texts)."""
    if nonfinite:
        raise ValueError("times contains NaN or infinity")
    if decreasing:
        raise ValueError("times must be non-decreasing")
    if bad:
        raise ValueError("costs must be finite and >= 0")
    if fraction:
        raise ValueError("costs must be whole numbers of calls")
    if over:
        raise ValueError(
            f"costs contains a cost above {limit_name} {limit!r}: it can never succeed"
        )


def _rl_trace(times, costs, limit: float, limit_name: str, whole: bool):
    """Checked float64 copies of a ``simulate`` trace: (times, costs or None)."""
    t, c = _rl_trace_arrays(times, costs)
    nonfinite = not np.isfinite(t).all()
    decreasing = t.shape[0] > 1 and bool((t[1:] < t[:-1]).any())
    bad = fraction = over = False
    if c is not None:
        bad = not (np.isfinite(c).all() and bool((c >= 0.0).all()))
        fraction = whole and bool((c != np.floor(c)).any())
        over = bool((c > limit).any())
    _rl_trace_raise(nonfinite, decreasing, bad, fraction, over, limit, limit_name)
    return t, c


def _rl_measured(allowed: int, denied: int, created: float, now: float) -> dict:
    elapsed = now - created
    if elapsed > 0.0:
        arrival, throughput = (allowed + denied) / elapsed, allowed / elapsed
    else:
        arrival = throughput = 0.0
    return {
        "allowed": allowed,
        "denied": denied,
        "arrival_rate": arrival,
        "throughput": throughput,
    }


# ---- waiting (shared with the compiled twin) ------------------------------------------------


class _RLGate:
    """The first-come first-served queue of one limiter's blocked acquirers.

    Only the head of a queue decides; the others sleep until it leaves. The head sleeps for the
    wait the limiter computed, then decides again (another caller of try_acquire may have taken
    what it waited for).
    """

    __slots__ = ("cond", "queue", "aqueue")

    def __init__(self):
        self.cond = threading.Condition(threading.Lock())
        self.queue: deque = deque()  # tickets of blocked threads
        self.aqueue: deque = deque()  # futures of blocked asyncio tasks


def _rl_acquire(lim, cost, timeout) -> bool:
    """``lim.acquire``: ``lim._attempt(c)`` decides once (-1.0 if granted, else the wait)."""
    gate = lim._gate
    deadline = None if timeout is None else time.monotonic() + timeout
    with gate.cond:
        queue = gate.queue
        if not queue:
            wait = lim._attempt(cost)
            if wait < 0.0:
                lim._note(True)
                return True
            if timeout is not None and wait > timeout:
                lim._note(False)
                return False
        ticket = object()
        queue.append(ticket)
        try:
            while True:
                if queue[0] is ticket:
                    wait = lim._attempt(cost)
                    if wait < 0.0:
                        lim._note(True)
                        return True
                else:
                    wait = None  # not our turn: sleep until the head leaves
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0.0 or (wait is not None and wait > remaining):
                        lim._note(False)
                        return False
                    gate.cond.wait(remaining if wait is None else wait)
                else:
                    gate.cond.wait(wait)
        finally:
            queue.remove(ticket)
            gate.cond.notify_all()


async def _rl_acquire_async(lim, cost, timeout) -> bool:
    """``lim.acquire_async``: as :func:`_rl_acquire`, sleeping on the running loop."""
    gate = lim._gate
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    queue = gate.aqueue
    if not queue:
        wait = lim._attempt(cost)
        if wait < 0.0:
            lim._note(True)
            return True
        if timeout is not None and wait > timeout:
            lim._note(False)
            return False
    me = loop.create_future()
    queue.append(me)
    try:
        while True:
            if queue[0] is me:
                wait = lim._attempt(cost)
                if wait < 0.0:
                    lim._note(True)
                    return True
            else:
                wait = None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0.0 or (wait is not None and wait > remaining):
                    lim._note(False)
                    return False
                delay = remaining if wait is None else wait
            else:
                delay = wait
            if wait is None:
                await asyncio.wait((me,), timeout=delay)  # the head resolves us when it leaves
            else:
                await asyncio.sleep(delay)
    finally:
        was_head = queue[0] is me
        queue.remove(me)
        if was_head and queue and not queue[0].done():
            queue[0].set_result(None)


# ---- the limiters ---------------------------------------------------------------------------


class _Limiter:
    """What the three limiters share: counting, the clock, and waiting through ``_take``.

    Each limiter defines ``_check(cost)`` (the validated cost), ``_take(cost)`` (a receipt
    tuple if granted, else the seconds to wait; counts nothing) and ``_give_back``, the
    two-phase protocol LimiterGroup uses; blocking and asyncio waiting are built on them.
    """

    __slots__ = ()
    limiter_kind = "both"  # plain methods, plus acquire_async/reserve_async (see _limiter_protocol)

    @property
    def clock(self):
        return self._clock

    def _attempt(self, cost):
        """Decide once without counting: -1.0 if granted, else the seconds to wait."""
        receipt = self._take(cost)
        return _GRANTED if type(receipt) is tuple else receipt

    def _note(self, granted):
        with self._lock:
            if granted:
                self._allowed += 1
            else:
                self._denied += 1

    def acquire(self, cost=1, timeout=None):
        """Block (sleeping) until ``cost`` is granted; False if ``timeout`` seconds run out first.

        Blocked callers are served first come, first served. Returns False at once when the
        computed wait already exceeds ``timeout``.
        """
        return _rl_acquire(self, self._check(cost), _rl_timeout(timeout))

    def acquire_async(self, cost=1, timeout=None):
        """:meth:`acquire` for asyncio: returns an awaitable; bad arguments raise at the call."""
        return _rl_acquire_async(self, self._check(cost), _rl_timeout(timeout))


class TokenBucket(_Limiter):
    """Token bucket: ``tokens = min(capacity, tokens + rate*dt)``; allow iff ``tokens >= cost``.

    ``rate`` tokens per second refill a bucket of ``capacity`` tokens, which starts with
    ``initial`` tokens (full by default). Bursts up to ``capacity`` pass at once; over any
    interval of length T at most ``capacity + rate*T`` tokens are granted.
    """

    __slots__ = (
        "_rate", "_capacity", "_initial", "_clock", "_tokens", "_last", "_created",
        "_allowed", "_denied", "_lock", "_gate",
    )  # fmt: skip

    def __init__(self, rate, capacity, *, clock=time.monotonic, initial=None):
        self._rate = _rl_positive(rate, "rate")
        self._capacity = _rl_positive(capacity, "capacity")
        self._initial = _rl_initial(initial, self._capacity)
        self._clock = _rl_clock(clock)
        self._lock = threading.Lock()
        self._gate = _RLGate()
        now = _rl_read(clock)
        self._tokens = self._initial
        self._last = self._created = now
        self._allowed = self._denied = 0

    @property
    def rate(self):
        return self._rate

    @property
    def capacity(self):
        return self._capacity

    def __repr__(self):
        return f"TokenBucket(rate={self._rate!r}, capacity={self._capacity!r})"

    def _available(self, now):
        t = self._tokens
        dt = now - self._last
        if dt > 0.0:
            t = t + self._rate * dt
            if t > self._capacity:
                t = self._capacity
        return t

    def _check(self, cost):
        return _rl_cost_within(cost, self._capacity)

    def _take(self, cost):
        now = _rl_read(self._clock)
        with self._lock:
            t = self._available(now)
            if now > self._last:
                self._tokens, self._last = t, now
            if t < cost:
                return (cost - t) / self._rate
            self._tokens = t - cost
            return (t, self._tokens, self._last)

    def _give_back(self, cost, receipt):
        with self._lock:
            if self._tokens == receipt[1] and self._last == receipt[2]:
                self._tokens = receipt[0]  # untouched since: as if it had been denied
            else:
                self._tokens = min(self._capacity, self._tokens + cost)

    def try_acquire(self, cost=1):
        """Take ``cost`` tokens if they are there now; never blocks. A denial takes nothing."""
        # the arithmetic of _attempt and _note, inlined: this is the hot path
        cap = self._capacity
        if (type(cost) is int or type(cost) is float) and 0 <= cost <= cap:
            c = cost
        else:
            c = _rl_cost_within(cost, cap)
        now = self._clock()
        if type(now) is not float or now - now != 0.0:
            now = _rl_time(now)
        with self._lock:
            t = self._tokens
            dt = now - self._last
            if dt > 0.0:
                t = t + self._rate * dt
                if t > cap:
                    t = cap
                self._tokens, self._last = t, now
            if t < c:
                self._denied += 1
                return False
            self._tokens = t - c
            self._allowed += 1
            return True

    def wait_time(self, cost=1):
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if it would now)."""
        c = _rl_cost_within(cost, self._capacity)
        now = _rl_read(self._clock)
        with self._lock:
            t = self._available(now)
        return 0.0 if t >= c else (c - t) / self._rate

    def stats(self):
        """Counters since creation or :meth:`reset`, measured rates, and the bucket's state."""
        now = _rl_read(self._clock)
        with self._lock:
            out = _rl_measured(self._allowed, self._denied, self._created, now)
            out.update(rate=self._rate, capacity=self._capacity, tokens=self._available(now))
        return out

    def reset(self):
        """Back to the initial state (``initial`` tokens) with zeroed counters."""
        now = _rl_read(self._clock)
        with self._lock:
            self._tokens = self._initial
            self._last = self._created = now
            self._allowed = self._denied = 0

    def simulate(self, times, costs=None):
        """Replay request ``times`` (non-decreasing) and ``costs`` (default 1 each) through a
        fresh bucket of this configuration, starting at ``times[0]`` with ``initial`` tokens.
        Returns one bool per request; the live bucket is not touched.
        """
        t, c = _rl_trace(times, costs, self._capacity, "capacity", False)
        n = t.shape[0]
        out = np.zeros(n, dtype=bool)
        if n == 0:
            return out
        rate, cap = self._rate, self._capacity
        tokens, last = self._initial, float(t[0])
        tl = t.tolist()
        cl = [1.0] * n if c is None else c.tolist()
        for i in range(n):
            now, cost = tl[i], cl[i]
            v = tokens
            dt = now - last
            if dt > 0.0:
                v = v + rate * dt
                if v > cap:
                    v = cap
            if now > last:
                tokens, last = v, now
            if v >= cost:
                tokens = v - cost
                out[i] = True
        return out


class LeakyBucket(_Limiter):
    """Leaky bucket as a meter: ``level = max(0, level - rate*dt)``; allow iff
    ``level + cost <= capacity``, then the cost is added to the level.

    The bucket starts empty, so ``capacity`` passes at once; after that the level drains at
    ``rate`` per second.
    """

    __slots__ = (
        "_rate", "_capacity", "_clock", "_level", "_last", "_created",
        "_allowed", "_denied", "_lock", "_gate",
    )  # fmt: skip

    def __init__(self, rate, capacity, *, clock=time.monotonic):
        self._rate = _rl_positive(rate, "rate")
        self._capacity = _rl_positive(capacity, "capacity")
        self._clock = _rl_clock(clock)
        self._lock = threading.Lock()
        self._gate = _RLGate()
        now = _rl_read(clock)
        self._level = 0.0
        self._last = self._created = now
        self._allowed = self._denied = 0

    @property
    def rate(self):
        return self._rate

    @property
    def capacity(self):
        return self._capacity

    def __repr__(self):
        return f"LeakyBucket(rate={self._rate!r}, capacity={self._capacity!r})"

    def _current(self, now):
        v = self._level
        dt = now - self._last
        if dt > 0.0:
            v = v - self._rate * dt
            if v < 0.0:
                v = 0.0
        return v


    def _check(self, cost):
        return _rl_cost_within(cost, self._capacity)

    def _take(self, cost):
        now = _rl_read(self._clock)
        with self._lock:
            v = self._current(now)
            if now > self._last:
                self._level, self._last = v, now
            if v + cost > self._capacity:
                return (v + cost - self._capacity) / self._rate
            self._level = v + cost
            return (v, self._level, self._last)

    def _give_back(self, cost, receipt):
        with self._lock:
            if self._level == receipt[1] and self._last == receipt[2]:
                self._level = receipt[0]
            else:
                self._level = max(0.0, self._level - cost)

    def try_acquire(self, cost=1):
        """Add ``cost`` to the level if it fits under capacity now; never blocks."""
        cap = self._capacity
        if (type(cost) is int or type(cost) is float) and 0 <= cost <= cap:
            c = cost
        else:
            c = _rl_cost_within(cost, cap)
        now = self._clock()
        if type(now) is not float or now - now != 0.0:
            now = _rl_time(now)
        with self._lock:
            v = self._level
            dt = now - self._last
            if dt > 0.0:
                v = v - self._rate * dt
                if v < 0.0:
                    v = 0.0
                self._level, self._last = v, now
            if v + c > cap:
                self._denied += 1
                return False
            self._level = v + c
            self._allowed += 1
            return True

    def wait_time(self, cost=1):
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if it would now)."""
        c = _rl_cost_within(cost, self._capacity)
        now = _rl_read(self._clock)
        with self._lock:
            excess = self._current(now) + c - self._capacity
        return 0.0 if excess <= 0.0 else excess / self._rate

    def stats(self):
        """Counters since creation or :meth:`reset`, measured rates, and the current level."""
        now = _rl_read(self._clock)
        with self._lock:
            out = _rl_measured(self._allowed, self._denied, self._created, now)
            out.update(rate=self._rate, capacity=self._capacity, level=self._current(now))
        return out

    def reset(self):
        """Empty the bucket and zero the counters."""
        now = _rl_read(self._clock)
        with self._lock:
            self._level = 0.0
            self._last = self._created = now
            self._allowed = self._denied = 0

    def simulate(self, times, costs=None):
        """Replay a trace through a fresh, empty bucket of this configuration (see
        :meth:`TokenBucket.simulate`)."""
        t, c = _rl_trace(times, costs, self._capacity, "capacity", False)
        n = t.shape[0]
        out = np.zeros(n, dtype=bool)
        if n == 0:
            return out
        rate, cap = self._rate, self._capacity
        level, last = 0.0, float(t[0])
        tl = t.tolist()
        cl = [1.0] * n if c is None else c.tolist()
        for i in range(n):
            now, cost = tl[i], cl[i]
            v = level
            dt = now - last
            if dt > 0.0:
                v = v - rate * dt
                if v < 0.0:
                    v = 0.0
            if now > last:
                level, last = v, now
            if v + cost <= cap:
                level = v + cost
                out[i] = True
        return out


class SlidingWindowLimiter(_Limiter):
    """Sliding log: at most ``max_calls`` calls in any ``window`` seconds.

    A call at time ``c`` counts while ``now - c < window``. A request of ``cost`` calls (a whole
    number) is allowed iff ``in_window + cost <= max_calls``. The log keeps one timestamp per
    call still in the window; it grows as needed and never beyond ``max_calls`` entries.
    """

    __slots__ = (
        "_max_calls", "_window", "_clock", "_log", "_last", "_created",
        "_allowed", "_denied", "_lock", "_gate",
    )  # fmt: skip

    def __init__(self, max_calls, window, *, clock=time.monotonic):
        self._max_calls = _rl_max_calls(max_calls)
        self._window = _rl_positive(window, "window")
        self._clock = _rl_clock(clock)
        self._lock = threading.Lock()
        self._gate = _RLGate()
        now = _rl_read(clock)
        self._log: deque = deque()
        self._last = self._created = now
        self._allowed = self._denied = 0

    @property
    def max_calls(self):
        return self._max_calls

    @property
    def window(self):
        return self._window

    def __repr__(self):
        return f"SlidingWindowLimiter(max_calls={self._max_calls!r}, window={self._window!r})"

    def _purge(self, now):
        """Clamp ``now`` to the latest time seen, drop calls that left the window; return it."""
        if now > self._last:
            self._last = now
        now = self._last
        log, window = self._log, self._window
        while log and now - log[0] >= window:
            log.popleft()
        return now


    def _check(self, cost):
        return _rl_calls(cost, self._max_calls)

    def _take(self, k):
        now = _rl_read(self._clock)
        with self._lock:
            now = self._purge(now)
            log = self._log
            over = len(log) + k - self._max_calls
            if over > 0:
                return log[over - 1] + self._window - now
            log.extend([now] * k)
            return (now,)

    def _give_back(self, k, receipt):
        """Remove k logged calls made at the receipt's time (later calls stay in order)."""
        stamp = receipt[0]
        with self._lock:
            log, newer = self._log, []
            while log and log[-1] > stamp:
                newer.append(log.pop())
            while k and log and log[-1] == stamp:
                log.pop()
                k -= 1
            log.extend(reversed(newer))

    def try_acquire(self, cost=1):
        """Log ``cost`` calls if they fit in the window now; never blocks."""
        if type(cost) is int and 0 <= cost <= self._max_calls:
            k = cost
        else:
            k = _rl_calls(cost, self._max_calls)
        now = self._clock()
        if type(now) is not float or now - now != 0.0:
            now = _rl_time(now)
        with self._lock:
            if now > self._last:
                self._last = now
            now = self._last
            log, window = self._log, self._window
            while log and now - log[0] >= window:
                log.popleft()
            if len(log) + k > self._max_calls:
                self._denied += 1
                return False
            if k == 1:
                log.append(now)
            elif k:
                log.extend([now] * k)
            self._allowed += 1
            return True

    def wait_time(self, cost=1):
        """Seconds until ``cost`` more calls fit in the window (0.0 if they fit now)."""
        k = _rl_calls(cost, self._max_calls)
        now = _rl_read(self._clock)
        with self._lock:
            now = self._purge(now)
            over = len(self._log) + k - self._max_calls
            if over <= 0:
                return 0.0
            w = self._log[over - 1] + self._window - now
        return w if w > 0.0 else 0.0

    def stats(self):
        """Counters since creation or :meth:`reset`, measured rates, and the calls in the window."""
        now = _rl_read(self._clock)
        with self._lock:
            out = _rl_measured(self._allowed, self._denied, self._created, now)
            self._purge(now)
            out.update(max_calls=self._max_calls, window=self._window, in_window=len(self._log))
        return out

    def reset(self):
        """Forget every logged call and zero the counters."""
        now = _rl_read(self._clock)
        with self._lock:
            self._log = deque()
            self._last = self._created = now
            self._allowed = self._denied = 0

    def simulate(self, times, costs=None):
        """Replay a trace through a fresh, empty window of this configuration (see
        :meth:`TokenBucket.simulate`). Costs must be whole numbers of calls."""
        t, c = _rl_trace(times, costs, float(self._max_calls), "max_calls", True)
        n = t.shape[0]
        out = np.zeros(n, dtype=bool)
        if n == 0:
            return out
        m, window = self._max_calls, self._window
        log: deque = deque()
        tl = t.tolist()
        cl = [1] * n if c is None else [int(x) for x in c.tolist()]
        for i in range(n):
            now, k = tl[i], cl[i]
            while log and now - log[0] >= window:
                log.popleft()
            if len(log) + k <= m:
                log.extend([now] * k)
                out[i] = True
        return out
