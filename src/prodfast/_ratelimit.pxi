# Rate limiters: the compiled twin of prodfast._ratelimit_py (the reference, with the docs).
#
# The arithmetic is the nogil kernels of _core.pxd over plain C structs. A decision from Python
# is: parse the cost (C fast path for exact int/float), read the clock (clock_gettime in C for
# the default time.monotonic, else one call of the user's clock), run the kernel, count.
# Everything that is not on that path -- argument errors, simulate()'s trace checks, blocking
# and async waiting -- reuses the pure-Python twin's helpers, so messages and waiting agree.

from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble, PyLong_AsSsize_t
from libc.math cimport floor, isfinite
from libc.stdlib cimport free, malloc

import time as _rl_timemod

import numpy as _rl_np

from prodfast._ratelimit_py import (
    _RLGate,
    _rl_acquire,
    _rl_acquire_async,
    _rl_calls,
    _rl_clock,
    _rl_cost_within,
    _rl_initial,
    _rl_max_calls,
    _rl_measured,
    _rl_positive,
    _rl_time,
    _rl_timeout,
    _rl_trace_arrays,
    _rl_trace_raise,
)

cdef object _rl_monotonic = _rl_timemod.monotonic
cdef object _rl_one = 1  # the default cost: the same cached int object as `cost=1` below


cdef inline double _rl_read(bint cclock, object clock) except? -1.0:
    """One reading of the limiter's clock: C CLOCK_MONOTONIC, or the user's clock checked."""
    cdef double v
    if cclock:
        return rl_now()
    t = clock()
    if type(t) is float:
        v = PyFloat_AS_DOUBLE(t)
        if v - v == 0.0:  # finite
            return v
    return _rl_time(t)


cdef inline double _rl_cost(object cost, double capacity) except? -1.0:
    """A checked cost within capacity; errors (and unusual types) go through the shared helper."""
    cdef double c
    if type(cost) is int:
        try:
            c = PyLong_AsDouble(cost)
        except OverflowError:
            return _rl_cost_within(cost, capacity)
        if 0.0 <= c <= capacity:
            return c
    elif type(cost) is float:
        c = PyFloat_AS_DOUBLE(cost)
        if 0.0 <= c <= capacity:
            return c
    return _rl_cost_within(cost, capacity)


cdef inline Py_ssize_t _rl_whole(object cost, Py_ssize_t max_calls) except? -1:
    """A checked whole number of calls, 0..max_calls."""
    cdef Py_ssize_t k
    cdef double c
    if type(cost) is int:
        try:
            k = PyLong_AsSsize_t(cost)
        except OverflowError:
            return _rl_calls(cost, max_calls)
        if 0 <= k <= max_calls:
            return k
    elif type(cost) is float:
        c = PyFloat_AS_DOUBLE(cost)
        if 0.0 <= c <= <double>max_calls and c == floor(c):
            return <Py_ssize_t>c
    return _rl_calls(cost, max_calls)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef _rl_trace(times, costs, double limit, str limit_name, bint whole):
    """simulate()'s trace checks in one C pass per array; same errors as _ratelimit_py."""
    t, c = _rl_trace_arrays(times, costs)
    cdef const double[::1] tv = t
    cdef const double[::1] cv
    cdef Py_ssize_t i, n = tv.shape[0]
    cdef bint nonfinite = False, decreasing = False, bad = False, fraction = False, over = False
    cdef double x
    with nogil:
        for i in range(n):
            if not isfinite(tv[i]):
                nonfinite = True
            if i > 0 and tv[i] < tv[i - 1]:
                decreasing = True
    if c is not None:
        cv = c
        with nogil:
            for i in range(n):
                x = cv[i]
                if not (isfinite(x) and x >= 0.0):
                    bad = True
                if whole and x != floor(x):
                    fraction = True
                if x > limit:
                    over = True
    _rl_trace_raise(nonfinite, decreasing, bad, fraction, over, limit, limit_name)
    return t, c


@cython.final
cdef class TokenBucket:
    """Token bucket: tokens = min(capacity, tokens + rate*dt); allow iff tokens >= cost."""

    limiter_kind = "both"

    cdef rl_bucket _s
    cdef double _initial
    cdef double _created
    cdef object _clock
    cdef bint _cclock
    cdef unsigned long long _allowed
    cdef unsigned long long _denied
    cdef readonly object _gate

    def __init__(self, rate, capacity, *, clock=_rl_timemod.monotonic, initial=None):
        cdef double r = _rl_positive(rate, "rate")
        cdef double cap = _rl_positive(capacity, "capacity")
        cdef double init = _rl_initial(initial, cap)
        _rl_clock(clock)
        cdef bint cclock = clock is _rl_monotonic
        cdef double now = _rl_read(cclock, clock)
        self._clock = clock
        self._cclock = cclock
        self._initial = init
        self._gate = _RLGate()
        rl_bucket_init(&self._s, r, cap, init, now)
        self._created = now
        self._allowed = 0
        self._denied = 0

    @property
    def rate(self):
        return self._s.rate

    @property
    def capacity(self):
        return self._s.capacity

    @property
    def clock(self):
        return self._clock

    def __repr__(self):
        return f"TokenBucket(rate={self._s.rate!r}, capacity={self._s.capacity!r})"

    def _attempt(self, double cost):
        cdef double now = _rl_read(self._cclock, self._clock)
        if rl_bucket_try(&self._s, now, cost):
            return -1.0
        return rl_bucket_wait(&self._s, now, cost)

    def _note(self, bint granted):
        if granted:
            self._allowed += 1
        else:
            self._denied += 1

    # LimiterGroup's two-phase protocol (see _ratelimit_py)
    def _check(self, cost):
        return _rl_cost(cost, self._s.capacity)

    def _take(self, double cost):
        cdef double now = _rl_read(self._cclock, self._clock)
        cdef double before = rl_bucket_tokens(&self._s, now)
        if not rl_bucket_try(&self._s, now, cost):
            return rl_bucket_wait(&self._s, now, cost)
        return (before, self._s.tokens, self._s.last)

    def _give_back(self, double cost, tuple receipt):
        if self._s.tokens == <double>receipt[1] and self._s.last == <double>receipt[2]:
            self._s.tokens = receipt[0]  # untouched since: as if it had been denied
        else:
            self._s.tokens = min(self._s.capacity, self._s.tokens + cost)

    def try_acquire(self, cost=1):
        """Decide now, never blocking: True (and take ``cost``) or False (nothing taken)."""
        cdef double c
        if cost is _rl_one and self._s.capacity >= 1.0:
            c = 1.0
        else:
            c = _rl_cost(cost, self._s.capacity)
        cdef double now = rl_now() if self._cclock else _rl_read(False, self._clock)
        if rl_bucket_try(&self._s, now, c):
            self._allowed += 1
            return True
        self._denied += 1
        return False

    def wait_time(self, cost=1):
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if it would now)."""
        cdef double c = _rl_cost(cost, self._s.capacity)
        return rl_bucket_wait(&self._s, _rl_read(self._cclock, self._clock), c)

    def acquire(self, cost=1, timeout=None):
        """Sleep until ``cost`` is granted (first come, first served); False on timeout."""
        cdef double c = _rl_cost(cost, self._s.capacity)
        return _rl_acquire(self, c, _rl_timeout(timeout))

    def acquire_async(self, cost=1, timeout=None):
        """``acquire`` for asyncio: an awaitable of True, or False on timeout."""
        cdef double c = _rl_cost(cost, self._s.capacity)
        return _rl_acquire_async(self, c, _rl_timeout(timeout))

    def stats(self):
        """allowed, denied, arrival_rate, throughput and the limiter's own state."""
        cdef double now = _rl_read(self._cclock, self._clock)
        out = _rl_measured(self._allowed, self._denied, self._created, now)
        out.update(rate=self._s.rate, capacity=self._s.capacity,
                   tokens=rl_bucket_tokens(&self._s, now))
        return out

    def reset(self):
        """Back to the initial state, with zeroed counters."""
        cdef double now = _rl_read(self._cclock, self._clock)
        rl_bucket_init(&self._s, self._s.rate, self._s.capacity, self._initial, now)
        self._created = now
        self._allowed = 0
        self._denied = 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def simulate(self, times, costs=None):
        """Replay a trace through a fresh copy of this configuration: one bool per request."""
        t, c = _rl_trace(times, costs, self._s.capacity, "capacity", False)
        cdef const double[::1] tv = t
        cdef const double[::1] cv
        cdef Py_ssize_t i, n = tv.shape[0]
        out = _rl_np.zeros(n, dtype=_rl_np.uint8)
        cdef unsigned char[::1] ov = out
        cdef rl_bucket s
        cdef bint unit = c is None
        if n == 0:
            return out.view(bool)
        if not unit:
            cv = c
        rl_bucket_init(&s, self._s.rate, self._s.capacity, self._initial, tv[0])
        with nogil:
            if unit:
                for i in range(n):
                    ov[i] = rl_bucket_try(&s, tv[i], 1.0)
            else:
                for i in range(n):
                    ov[i] = rl_bucket_try(&s, tv[i], cv[i])
        return out.view(bool)


@cython.final
cdef class LeakyBucket:
    """Leaky bucket meter: level = max(0, level - rate*dt); allow iff level + cost <= capacity."""

    limiter_kind = "both"

    cdef rl_leaky _s
    cdef double _created
    cdef object _clock
    cdef bint _cclock
    cdef unsigned long long _allowed
    cdef unsigned long long _denied
    cdef readonly object _gate

    def __init__(self, rate, capacity, *, clock=_rl_timemod.monotonic):
        cdef double r = _rl_positive(rate, "rate")
        cdef double cap = _rl_positive(capacity, "capacity")
        _rl_clock(clock)
        cdef bint cclock = clock is _rl_monotonic
        cdef double now = _rl_read(cclock, clock)
        self._clock = clock
        self._cclock = cclock
        self._gate = _RLGate()
        rl_leaky_init(&self._s, r, cap, now)
        self._created = now
        self._allowed = 0
        self._denied = 0

    @property
    def rate(self):
        return self._s.rate

    @property
    def capacity(self):
        return self._s.capacity

    @property
    def clock(self):
        return self._clock

    def __repr__(self):
        return f"LeakyBucket(rate={self._s.rate!r}, capacity={self._s.capacity!r})"

    def _attempt(self, double cost):
        cdef double now = _rl_read(self._cclock, self._clock)
        if rl_leaky_try(&self._s, now, cost):
            return -1.0
        return rl_leaky_wait(&self._s, now, cost)

    def _note(self, bint granted):
        if granted:
            self._allowed += 1
        else:
            self._denied += 1

    def _check(self, cost):
        return _rl_cost(cost, self._s.capacity)

    def _take(self, double cost):
        cdef double now = _rl_read(self._cclock, self._clock)
        cdef double before = rl_leaky_level(&self._s, now)
        if not rl_leaky_try(&self._s, now, cost):
            return rl_leaky_wait(&self._s, now, cost)
        return (before, self._s.level, self._s.last)

    def _give_back(self, double cost, tuple receipt):
        if self._s.level == <double>receipt[1] and self._s.last == <double>receipt[2]:
            self._s.level = receipt[0]
        else:
            self._s.level = max(0.0, self._s.level - cost)

    def try_acquire(self, cost=1):
        """Decide now, never blocking: True (and take ``cost``) or False (nothing taken)."""
        cdef double c
        if cost is _rl_one and self._s.capacity >= 1.0:
            c = 1.0
        else:
            c = _rl_cost(cost, self._s.capacity)
        cdef double now = rl_now() if self._cclock else _rl_read(False, self._clock)
        if rl_leaky_try(&self._s, now, c):
            self._allowed += 1
            return True
        self._denied += 1
        return False

    def wait_time(self, cost=1):
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if it would now)."""
        cdef double c = _rl_cost(cost, self._s.capacity)
        return rl_leaky_wait(&self._s, _rl_read(self._cclock, self._clock), c)

    def acquire(self, cost=1, timeout=None):
        """Sleep until ``cost`` is granted (first come, first served); False on timeout."""
        cdef double c = _rl_cost(cost, self._s.capacity)
        return _rl_acquire(self, c, _rl_timeout(timeout))

    def acquire_async(self, cost=1, timeout=None):
        """``acquire`` for asyncio: an awaitable of True, or False on timeout."""
        cdef double c = _rl_cost(cost, self._s.capacity)
        return _rl_acquire_async(self, c, _rl_timeout(timeout))

    def stats(self):
        """allowed, denied, arrival_rate, throughput and the limiter's own state."""
        cdef double now = _rl_read(self._cclock, self._clock)
        out = _rl_measured(self._allowed, self._denied, self._created, now)
        out.update(rate=self._s.rate, capacity=self._s.capacity,
                   level=rl_leaky_level(&self._s, now))
        return out

    def reset(self):
        """Back to the initial state, with zeroed counters."""
        cdef double now = _rl_read(self._cclock, self._clock)
        rl_leaky_init(&self._s, self._s.rate, self._s.capacity, now)
        self._created = now
        self._allowed = 0
        self._denied = 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def simulate(self, times, costs=None):
        """Replay a trace through a fresh copy of this configuration: one bool per request."""
        t, c = _rl_trace(times, costs, self._s.capacity, "capacity", False)
        cdef const double[::1] tv = t
        cdef const double[::1] cv
        cdef Py_ssize_t i, n = tv.shape[0]
        out = _rl_np.zeros(n, dtype=_rl_np.uint8)
        cdef unsigned char[::1] ov = out
        cdef rl_leaky s
        cdef bint unit = c is None
        if n == 0:
            return out.view(bool)
        if not unit:
            cv = c
        rl_leaky_init(&s, self._s.rate, self._s.capacity, tv[0])
        with nogil:
            if unit:
                for i in range(n):
                    ov[i] = rl_leaky_try(&s, tv[i], 1.0)
            else:
                for i in range(n):
                    ov[i] = rl_leaky_try(&s, tv[i], cv[i])
        return out.view(bool)


cdef void _rl_window_unlog(rl_window* w, Py_ssize_t k, double stamp) noexcept nogil:
    """Remove k logged calls made at ``stamp``; the later calls keep their order."""
    cdef Py_ssize_t newer = 0, same = 0, i, src, dst
    while newer < w.count and w.buf[(w.head + w.count - 1 - newer) % w.size] > stamp:
        newer += 1
    while (same < k and newer + same < w.count
           and w.buf[(w.head + w.count - 1 - newer - same) % w.size] == stamp):
        same += 1
    for i in range(newer):
        src = (w.head + w.count - newer + i) % w.size
        dst = (w.head + w.count - newer - same + i) % w.size
        w.buf[dst] = w.buf[src]
    w.count -= same


@cython.final
cdef class SlidingWindowLimiter:
    """Sliding log: at most max_calls calls in any window seconds (a call at c counts while
    now - c < window); the ring of call times grows as needed up to max_calls."""

    limiter_kind = "both"

    cdef rl_window _w
    cdef double _created
    cdef object _clock
    cdef bint _cclock
    cdef unsigned long long _allowed
    cdef unsigned long long _denied
    cdef readonly object _gate

    def __cinit__(self):
        self._w.buf = NULL
        self._w.size = 0

    def __dealloc__(self):
        rl_window_free(&self._w)

    def __init__(self, max_calls, window, *, clock=_rl_timemod.monotonic):
        cdef Py_ssize_t m = _rl_max_calls(max_calls)
        cdef double w = _rl_positive(window, "window")
        _rl_clock(clock)
        cdef bint cclock = clock is _rl_monotonic
        cdef double now = _rl_read(cclock, clock)
        self._clock = clock
        self._cclock = cclock
        self._gate = _RLGate()
        rl_window_free(&self._w)
        rl_window_init(&self._w, m, w, now)
        self._created = now
        self._allowed = 0
        self._denied = 0

    @property
    def max_calls(self):
        return self._w.max_calls

    @property
    def window(self):
        return self._w.window

    @property
    def clock(self):
        return self._clock

    def __repr__(self):
        return f"SlidingWindowLimiter(max_calls={self._w.max_calls!r}, window={self._w.window!r})"

    def _attempt(self, Py_ssize_t cost):
        cdef double now = _rl_read(self._cclock, self._clock)
        cdef int r = rl_window_try(&self._w, now, cost)
        if r < 0:
            raise MemoryError()
        if r:
            return -1.0
        return rl_window_wait(&self._w, now, cost)

    def _note(self, bint granted):
        if granted:
            self._allowed += 1
        else:
            self._denied += 1

    def _check(self, cost):
        return _rl_whole(cost, self._w.max_calls)

    def _take(self, Py_ssize_t k):
        cdef double now = _rl_read(self._cclock, self._clock)
        cdef int r = rl_window_try(&self._w, now, k)
        if r < 0:
            raise MemoryError()
        if r == 0:
            return rl_window_wait(&self._w, now, k)
        return (self._w.last,)

    def _give_back(self, Py_ssize_t k, tuple receipt):
        _rl_window_unlog(&self._w, k, receipt[0])

    def try_acquire(self, cost=1):
        """Decide now, never blocking: True (and take ``cost``) or False (nothing taken)."""
        cdef Py_ssize_t k = 1 if cost is _rl_one else _rl_whole(cost, self._w.max_calls)
        cdef double now = rl_now() if self._cclock else _rl_read(False, self._clock)
        cdef int r = rl_window_try(&self._w, now, k)
        if r > 0:
            self._allowed += 1
            return True
        if r < 0:
            raise MemoryError()
        self._denied += 1
        return False

    def wait_time(self, cost=1):
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if it would now)."""
        cdef Py_ssize_t k = _rl_whole(cost, self._w.max_calls)
        return rl_window_wait(&self._w, _rl_read(self._cclock, self._clock), k)

    def acquire(self, cost=1, timeout=None):
        """Sleep until ``cost`` is granted (first come, first served); False on timeout."""
        cdef Py_ssize_t k = _rl_whole(cost, self._w.max_calls)
        return _rl_acquire(self, k, _rl_timeout(timeout))

    def acquire_async(self, cost=1, timeout=None):
        """``acquire`` for asyncio: an awaitable of True, or False on timeout."""
        cdef Py_ssize_t k = _rl_whole(cost, self._w.max_calls)
        return _rl_acquire_async(self, k, _rl_timeout(timeout))

    def stats(self):
        """allowed, denied, arrival_rate, throughput and the limiter's own state."""
        cdef double now = _rl_read(self._cclock, self._clock)
        out = _rl_measured(self._allowed, self._denied, self._created, now)
        out.update(max_calls=self._w.max_calls, window=self._w.window,
                   in_window=rl_window_in_window(&self._w, now))
        return out

    def reset(self):
        """Back to the initial state, with zeroed counters."""
        cdef double now = _rl_read(self._cclock, self._clock)
        rl_window_free(&self._w)
        rl_window_init(&self._w, self._w.max_calls, self._w.window, now)
        self._created = now
        self._allowed = 0
        self._denied = 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def simulate(self, times, costs=None):
        """Replay a trace through a fresh copy of this configuration: one bool per request."""
        # Not the live kernel but an equivalent rule without a purge loop: with `total` calls
        # logged so far (times non-decreasing), k more fit iff total + k <= max_calls or the
        # call at index total - max_calls + k - 1 has left the window. Only the last max_calls
        # call times matter: a ring of min(max_calls, calls in the trace) slots holds them.
        # (tests check simulate() against replaying try_acquire.)
        t, c = _rl_trace(times, costs, <double>self._w.max_calls, "max_calls", True)
        cdef const double[::1] tv = t
        cdef const double[::1] cv
        cdef Py_ssize_t i, j, k, n = tv.shape[0]
        cdef Py_ssize_t m = self._w.max_calls, size, pos = 0, total = 0
        cdef double span = self._w.window, now
        cdef double* ring
        out = _rl_np.zeros(n, dtype=_rl_np.uint8)
        cdef unsigned char[::1] ov = out
        cdef bint unit = c is None
        if n == 0:
            return out.view(bool)
        if not unit:
            cv = c
        size = min(m, n if unit else int(c.sum()))
        if size < 1:
            size = 1
        ring = <double*>malloc(<size_t>size * sizeof(double))
        if ring == NULL:
            raise MemoryError()
        with nogil:
            for i in range(n):
                now = tv[i]
                k = 1 if unit else <Py_ssize_t>cv[i]
                if k == 0:
                    ov[i] = 1
                    continue
                if total + k > m:  # then size == m: look at the call that must have left
                    j = pos + k - 1
                    if j >= size:
                        j -= size
                    if now - ring[j] < span:
                        continue
                ov[i] = 1
                total += k
                for j in range(k):
                    ring[pos] = now
                    pos += 1
                    if pos == size:
                        pos = 0
        free(ring)
        return out.view(bool)
