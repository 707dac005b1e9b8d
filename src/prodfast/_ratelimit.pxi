# Rate limiters: the compiled twin of prodfast._ratelimit_py (the reference, with the docs).
#
# The arithmetic is the nogil kernels of _core.pxd over plain C structs. A decision from Python
# is: parse the cost (C fast path for exact int/float), read the clock (the core's C clock of
# _clock.pxi for the default time.monotonic, else one call of the user's clock), run the kernel,
# count.
# Everything that is not on that path -- argument errors, simulate()'s trace checks, blocking
# and async waiting -- reuses the pure-Python twin's helpers, so messages and waiting agree.

from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble, PyLong_AsSsize_t
from libc.math cimport INFINITY, floor, isfinite
from libc.stdlib cimport free, malloc

import time as _rl_timemod

import numpy as _rl_np

from prodfast._ratelimit_py import (
    _RL_SAME_WINDOW,
    _RLGate,
    _rl_acquire,
    _rl_acquire_async,
    _rl_calls,
    _rl_calls_actual,
    _rl_clock,
    _rl_cost_within,
    _rl_initial,
    _rl_max_calls,
    _rl_measured,
    _rl_positive,
    _rl_reserve,
    _rl_reserve_async,
    _rl_time,
    _rl_timeout,
    _rl_trace_arrays,
    _rl_trace_raise,
)
from prodfast._rl_checks import check_actual
from prodfast._rl_headers import check_resource, read_observation

cdef object _rl_monotonic = _rl_timemod.monotonic
cdef object _rl_one = 1  # the default cost: the same cached int object as `cost=1` below


cdef inline double _rl_read(bint cclock, object clock) except? -1.0:
    """One reading of the limiter's clock: the core's clock (_clock.pxi), or the user's clock checked."""
    cdef double v
    if cclock:
        return _clock_now()
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


# ---- what the three limiters share (one copy of the bookkeeping) ----------------------------


cdef class _RLBase:
    """Counters, the clock, waiting, reservations and what the provider said (observe).

    Subclasses implement the kernels' view of a decision: ``_wait_c`` (0.0 if ``cost`` fits at
    ``now``, else the seconds to wait, the provider's constraints included), ``_prepare_c``
    (memory a commit will need; -1 if there is none), ``_commit_c`` (take ``cost``, right after a
    0.0 wait at the same ``now``), ``_stamp_c`` (the receipt's time) and ``_settle_c``. None of
    them runs Python code, so LimiterGroup's engine decides for all its members in one step no
    other thread can interleave.

    The provider's constraints mirror _ratelimit_py._RLObserved: until ``_until`` grants never
    total more than ``_left``; until ``_hold`` nothing is granted; ``_guard`` is the later of the
    two, so a decision after it pays one comparison.
    """

    cdef double _created
    cdef object _clock
    cdef bint _cclock
    cdef unsigned long long _allowed
    cdef unsigned long long _denied
    cdef readonly object _gate
    cdef object _waiting  # _gate.queue: blocked threads, served before a new reservation
    cdef object _awaiting  # _gate.aqueues: blocked asyncio tasks, per event loop
    cdef double _guard
    cdef double _left
    cdef double _top
    cdef double _until
    cdef double _hold
    cdef long long _gen
    cdef bint _whole  # costs are whole numbers of calls (the sliding window)

    limiter_kind = "both"

    @property
    def _rl_group_engine(self):
        return _rl_c_group_engine

    cdef double _start(self, object clock) except? -1.0:
        _rl_clock(clock)
        self._cclock = clock is _rl_monotonic
        self._clock = clock
        cdef double now = _rl_read(self._cclock, clock)
        self._gate = _RLGate()
        self._waiting = self._gate.queue
        self._awaiting = self._gate.aqueues
        self._restart(now)
        return now

    cdef void _restart(self, double now) noexcept:
        self._created = now
        self._allowed = 0
        self._denied = 0
        self._guard = self._until = self._hold = -INFINITY
        self._left = self._top = INFINITY
        self._gen = 0

    cdef inline double _now(self) except? -1.0:
        return _rl_read(self._cclock, self._clock)

    cdef double _wait_c(self, double cost, double now) noexcept:
        return 0.0

    cdef int _prepare_c(self, double cost) noexcept:
        return 0

    cdef void _commit_c(self, double cost, double now) noexcept:
        pass

    cdef double _stamp_c(self, double now) noexcept:
        return now

    cdef void _settle_c(self, double reserved, double actual, double stamp, double now) noexcept:
        pass

    cdef inline double _observed_wait(self, double wait, double cost, double now) noexcept:
        cdef double extra = 0.0
        if now < self._guard:
            if now < self._hold:
                extra = self._hold - now
            elif now < self._until and cost > self._left:
                extra = self._until - now
        return extra if extra > wait else wait

    cdef inline void _observed_take(self, double cost, double now) noexcept:
        if now < self._until:
            self._left -= cost

    cdef inline int _wake(self) except -1:
        """A give-back: the heads waiting on this limiter (and its groups) decide again now."""
        if self._waiting or self._awaiting or self._gate.groups is not None:
            self._gate.wake()
        return 0

    cdef inline void _observed_settle(self, double more, long long gen, double now) noexcept:
        cdef double left
        if gen == self._gen and now < self._until:
            left = self._left - more
            self._left = left if left < self._top else self._top

    cdef object _take_c(self, double cost, double now):
        """A receipt (time, budget generation) if granted (counting nothing), else the wait."""
        cdef double wait = self._wait_c(cost, now)
        if wait > 0.0:
            return wait
        if self._prepare_c(cost) < 0:
            raise MemoryError()
        self._commit_c(cost, now)
        return (self._stamp_c(now), self._gen)

    cdef bint _grant_c(self, double cost, double now) except -1:
        """Take ``cost`` if it fits at ``now`` (the provider's constraints included); counts
        nothing. Buckets override it with their kernel's one-step decision."""
        if self._wait_c(cost, now) > 0.0:
            return False
        if self._prepare_c(cost) < 0:
            raise MemoryError()
        self._commit_c(cost, now)
        return True

    cdef bint _try_observed(self, double cost, double now) except -1:
        """try_acquire while the provider's constraints apply (before ``_guard``)."""
        if _RLBase._grant_c(self, cost, now):
            self._allowed += 1
            return True
        self._denied += 1
        return False

    @property
    def clock(self):
        return self._clock

    def _take(self, cost):
        return self._take_c(cost, self._now())

    def _note(self, bint granted):
        if granted:
            self._allowed += 1
        else:
            self._denied += 1

    def _check_actual(self, actual, reserved):
        return check_actual(actual)

    def _settle(self, reserved, actual, tuple receipt):
        self._settle_at(reserved, actual, receipt, self._now())

    def _settle_at(self, reserved, actual, tuple receipt, double now):
        cdef double r = reserved, a = actual
        if a > r and self._prepare_c(a - r) < 0:
            raise MemoryError()
        self._settle_c(r, a, receipt[0], now)
        self._observed_settle(a - r, receipt[1], now)
        if a < r:
            self._wake()

    def _apply_observation(self, budget, retry_after):
        if budget is None and retry_after is None:
            return
        cdef double now = self._now()
        cdef double remaining, until
        if budget is not None:
            remaining, until = budget[0], now + budget[1]
            if now < self._until and until <= self._until + _RL_SAME_WINDOW:
                if remaining < self._left:  # the active budget's window: only tightens
                    self._left = remaining
            else:
                self._gen += 1
                self._left = self._top = remaining
                self._until = until
        if retry_after is not None and now + retry_after > self._hold:
            self._hold = now + retry_after
        self._guard = self._until if self._until > self._hold else self._hold

    def acquire(self, cost=1, timeout=None):
        """Sleep until ``cost`` is granted (first come, first served); False on timeout."""
        cdef double c
        cdef double now
        if timeout is None and not self._waiting:
            c = self._cost_c(cost)
            now = self._now()
            if self._grant_c(c, now):  # the fast path: granted now, nobody queued
                self._allowed += 1
                return True
        return _rl_acquire(self, self._check(cost), _rl_timeout(timeout))

    def acquire_async(self, cost=1, timeout=None):
        """``acquire`` for asyncio: an awaitable of True, or False on timeout."""
        return _rl_acquire_async(self, self._check(cost), _rl_timeout(timeout))

    cdef double _cost_c(self, object cost) except? -1.0:
        """The checked cost, as a C double (whole for a window): ``_check`` without a call."""
        return 0.0

    def reserve(self, cost=1, timeout=None):
        """Take the estimated ``cost`` (waiting as ``acquire``): a Reservation to settle."""
        cdef double c = self._cost_c(cost)
        cdef double now
        if timeout is None and not self._waiting:
            now = self._now()
            if self._grant_c(c, now):  # the fast path: granted now, nobody queued
                self._allowed += 1
                return _rl_reservation(self, c, self._stamp_c(now))
        return _rl_reserve(self, self._check(cost), _rl_timeout(timeout), Reservation)

    def reserve_async(self, cost=1, timeout=None):
        """``reserve`` for asyncio: an awaitable of the Reservation."""
        return _rl_reserve_async(self, self._check(cost), _rl_timeout(timeout), Reservation)

    def observe(self, headers, resource="requests", status=None):
        """Take the provider's word from a response's headers (see _ratelimit_py)."""
        check_resource(resource)
        report, budgets, retry_after = read_observation(headers, (resource,), status)
        self._apply_observation(budgets[0], retry_after)
        return report


cdef class Reservation


cdef inline double _rl_actual(Reservation r, object actual) except? -1.0:
    """A checked settled cost; a C fast path for a plain int/float on a bucket."""
    cdef _RLBase lim = r._lim
    cdef double a = -1.0
    if not lim._whole:
        if type(actual) is float:
            a = PyFloat_AS_DOUBLE(actual)
        elif type(actual) is int:
            try:
                a = PyLong_AsDouble(actual)
            except OverflowError:
                a = -1.0
        if a >= 0.0 and a - a == 0.0:
            return a
    return lim._check_actual(actual, r._cost_value())


cdef inline Reservation _rl_reservation(_RLBase lim, double c, double stamp):
    cdef Reservation r = Reservation.__new__(Reservation)
    r._lim = lim
    r._c = c
    r._stamp = stamp
    r._gen = lim._gen
    r._settled = False
    return r


@cython.final
@cython.freelist(16)
@cython.no_gc  # it only refers to its limiter, which never refers back: no cycle to collect
cdef class Reservation:
    """A cost taken ahead of a call whose real cost is known later (see _ratelimit_py)."""

    cdef _RLBase _lim
    cdef double _c  # the reserved cost (a whole number for a window)
    cdef double _stamp
    cdef long long _gen
    cdef bint _settled

    def __init__(self, limiter, cost, receipt):
        self._lim = limiter
        self._c = cost
        self._stamp = receipt[0]
        self._gen = receipt[1]
        self._settled = False

    @property
    def limiter(self):
        return self._lim

    @property
    def cost(self):
        """The reserved cost."""
        return self._cost_value()

    cdef object _cost_value(self):
        return <Py_ssize_t>self._c if self._lim._whole else self._c

    @property
    def settled(self):
        return self._settled

    def __repr__(self):
        state = "settled" if self._settled else "open"
        return f"<Reservation cost={self._cost_value()!r} {state} of {self._lim!r}>"

    cdef void _apply(self, double actual, double now) noexcept:
        self._settled = True
        self._lim._settle_c(self._c, actual, self._stamp, now)
        self._lim._observed_settle(actual - self._c, self._gen, now)

    def settle(self, actual):
        """The call's real cost: give back or take the difference from the estimate."""
        cdef double a = _rl_actual(self, actual)
        cdef double now = self._lim._now()
        if self._settled:
            raise RuntimeError("reservation already settled")
        if a > self._c and self._lim._prepare_c(a - self._c) < 0:
            raise MemoryError()
        self._apply(a, now)
        if a < self._c:
            self._lim._wake()

    def cancel(self):
        """Give the whole reservation back (the call did not happen)."""
        cdef double now = self._lim._now()
        if self._settled:
            raise RuntimeError("reservation already settled")
        self._apply(0.0, now)
        if self._c > 0.0:
            self._lim._wake()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._settled = True
        return False

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        self._settled = True
        return False


@cython.final
cdef class TokenBucket(_RLBase):
    """Token bucket: tokens = min(capacity, tokens + rate*dt); allow iff tokens >= cost."""

    cdef rl_bucket _s
    cdef double _initial

    def __init__(self, rate, capacity, *, clock=_rl_timemod.monotonic, initial=None):
        cdef double r = _rl_positive(rate, "rate")
        cdef double cap = _rl_positive(capacity, "capacity")
        cdef double init = _rl_initial(initial, cap)
        cdef double now = self._start(clock)
        self._initial = init
        rl_bucket_init(&self._s, r, cap, init, now)

    @property
    def rate(self):
        return self._s.rate

    @property
    def capacity(self):
        return self._s.capacity

    def __repr__(self):
        return f"TokenBucket(rate={self._s.rate!r}, capacity={self._s.capacity!r})"

    cdef double _wait_c(self, double cost, double now) noexcept:
        return self._observed_wait(rl_bucket_wait(&self._s, now, cost), cost, now)

    cdef void _commit_c(self, double cost, double now) noexcept:
        rl_bucket_try(&self._s, now, cost)
        self._observed_take(cost, now)

    cdef bint _grant_c(self, double cost, double now) except -1:
        if now < self._guard:
            return _RLBase._grant_c(self, cost, now)
        return rl_bucket_try(&self._s, now, cost)

    cdef void _settle_c(self, double reserved, double actual, double stamp, double now) noexcept:
        # give back (never above capacity) or take the excess (tokens may go below zero)
        cdef double back = reserved - actual
        cdef double t = rl_bucket_tokens(&self._s, now) + back
        if now > self._s.last:
            self._s.last = now
        self._s.tokens = t if back <= 0.0 or t < self._s.capacity else self._s.capacity

    cdef double _cost_c(self, object cost) except? -1.0:
        if cost is _rl_one and self._s.capacity >= 1.0:
            return 1.0
        return _rl_cost(cost, self._s.capacity)

    def _check(self, cost):
        return _rl_cost(cost, self._s.capacity)

    def try_acquire(self, cost=1):
        """Decide now, never blocking: True (and take ``cost``) or False (nothing taken)."""
        cdef double c
        if cost is _rl_one and self._s.capacity >= 1.0:
            c = 1.0
        else:
            c = _rl_cost(cost, self._s.capacity)
        cdef double now = _clock_now() if self._cclock else _rl_read(False, self._clock)
        if now < self._guard:
            return self._try_observed(c, now)
        if rl_bucket_try(&self._s, now, c):
            self._allowed += 1
            return True
        self._denied += 1
        return False

    def wait_time(self, cost=1):
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if it would now)."""
        cdef double c = _rl_cost(cost, self._s.capacity)
        return self._wait_c(c, self._now())

    def stats(self):
        """allowed, denied, arrival_rate, throughput and the limiter's own state."""
        cdef double now = self._now()
        out = _rl_measured(self._allowed, self._denied, self._created, now)
        out.update(rate=self._s.rate, capacity=self._s.capacity,
                   tokens=rl_bucket_tokens(&self._s, now))
        return out

    def reset(self):
        """Back to the initial state, with zeroed counters and nothing observed."""
        cdef double now = self._now()
        rl_bucket_init(&self._s, self._s.rate, self._s.capacity, self._initial, now)
        self._restart(now)

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
cdef class LeakyBucket(_RLBase):
    """Leaky bucket meter: level = max(0, level - rate*dt); allow iff level + cost <= capacity."""

    cdef rl_leaky _s

    def __init__(self, rate, capacity, *, clock=_rl_timemod.monotonic):
        cdef double r = _rl_positive(rate, "rate")
        cdef double cap = _rl_positive(capacity, "capacity")
        cdef double now = self._start(clock)
        rl_leaky_init(&self._s, r, cap, now)

    @property
    def rate(self):
        return self._s.rate

    @property
    def capacity(self):
        return self._s.capacity

    def __repr__(self):
        return f"LeakyBucket(rate={self._s.rate!r}, capacity={self._s.capacity!r})"

    cdef double _wait_c(self, double cost, double now) noexcept:
        return self._observed_wait(rl_leaky_wait(&self._s, now, cost), cost, now)

    cdef void _commit_c(self, double cost, double now) noexcept:
        rl_leaky_try(&self._s, now, cost)
        self._observed_take(cost, now)

    cdef bint _grant_c(self, double cost, double now) except -1:
        if now < self._guard:
            return _RLBase._grant_c(self, cost, now)
        return rl_leaky_try(&self._s, now, cost)

    cdef void _settle_c(self, double reserved, double actual, double stamp, double now) noexcept:
        # drain (never below empty) or add the excess (the level may rise above capacity)
        cdef double v = rl_leaky_level(&self._s, now) - (reserved - actual)
        if now > self._s.last:
            self._s.last = now
        self._s.level = v if v > 0.0 else 0.0

    cdef double _cost_c(self, object cost) except? -1.0:
        if cost is _rl_one and self._s.capacity >= 1.0:
            return 1.0
        return _rl_cost(cost, self._s.capacity)

    def _check(self, cost):
        return _rl_cost(cost, self._s.capacity)

    def try_acquire(self, cost=1):
        """Decide now, never blocking: True (and take ``cost``) or False (nothing taken)."""
        cdef double c
        if cost is _rl_one and self._s.capacity >= 1.0:
            c = 1.0
        else:
            c = _rl_cost(cost, self._s.capacity)
        cdef double now = _clock_now() if self._cclock else _rl_read(False, self._clock)
        if now < self._guard:
            return self._try_observed(c, now)
        if rl_leaky_try(&self._s, now, c):
            self._allowed += 1
            return True
        self._denied += 1
        return False

    def wait_time(self, cost=1):
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if it would now)."""
        cdef double c = _rl_cost(cost, self._s.capacity)
        return self._wait_c(c, self._now())

    def stats(self):
        """allowed, denied, arrival_rate, throughput and the limiter's own state."""
        cdef double now = self._now()
        out = _rl_measured(self._allowed, self._denied, self._created, now)
        out.update(rate=self._s.rate, capacity=self._s.capacity,
                   level=rl_leaky_level(&self._s, now))
        return out

    def reset(self):
        """Back to the initial state, with zeroed counters and nothing observed."""
        cdef double now = self._now()
        rl_leaky_init(&self._s, self._s.rate, self._s.capacity, now)
        self._restart(now)

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
cdef class SlidingWindowLimiter(_RLBase):
    """Sliding log: at most max_calls calls in any window seconds (a call at c counts while
    now - c < window); the ring of call times grows as needed up to max_calls."""

    cdef rl_window _w

    def __cinit__(self):
        self._w.buf = NULL
        self._w.size = 0

    def __dealloc__(self):
        rl_window_free(&self._w)

    def __init__(self, max_calls, window, *, clock=_rl_timemod.monotonic):
        cdef Py_ssize_t m = _rl_max_calls(max_calls)
        cdef double w = _rl_positive(window, "window")
        cdef double now = self._start(clock)
        self._whole = True
        rl_window_free(&self._w)
        rl_window_init(&self._w, m, w, now)

    @property
    def max_calls(self):
        return self._w.max_calls

    @property
    def window(self):
        return self._w.window

    def __repr__(self):
        return f"SlidingWindowLimiter(max_calls={self._w.max_calls!r}, window={self._w.window!r})"

    cdef double _wait_c(self, double cost, double now) noexcept:
        cdef double w = rl_window_wait(&self._w, now, <Py_ssize_t>cost)
        return self._observed_wait(w, cost, self._w.last)

    cdef int _prepare_c(self, double cost) noexcept:
        return rl_window_reserve(&self._w, self._w.count + <Py_ssize_t>cost)

    cdef void _commit_c(self, double cost, double now) noexcept:
        rl_window_try(&self._w, now, <Py_ssize_t>cost)
        self._observed_take(cost, self._w.last)

    cdef double _stamp_c(self, double now) noexcept:
        return self._w.last

    cdef void _settle_c(self, double reserved, double actual, double stamp, double now) noexcept:
        # fewer calls: unlog them; more: log them now, above max_calls if need be (memory for
        # them was reserved by _prepare_c before the reservation was marked settled)
        if actual > reserved:
            rl_window_add(&self._w, now, <Py_ssize_t>(actual - reserved))
        else:
            _rl_window_unlog(&self._w, <Py_ssize_t>(reserved - actual), stamp)

    cdef double _cost_c(self, object cost) except? -1.0:
        return 1.0 if cost is _rl_one else <double>_rl_whole(cost, self._w.max_calls)

    def _check(self, cost):
        return _rl_whole(cost, self._w.max_calls)

    def _check_actual(self, actual, reserved):
        return _rl_calls_actual(actual, reserved)

    def try_acquire(self, cost=1):
        """Decide now, never blocking: True (and take ``cost``) or False (nothing taken)."""
        cdef Py_ssize_t k = 1 if cost is _rl_one else _rl_whole(cost, self._w.max_calls)
        cdef double now = _clock_now() if self._cclock else _rl_read(False, self._clock)
        if now < self._guard:
            return self._try_observed(k, now)
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
        return self._wait_c(k, self._now())

    def stats(self):
        """allowed, denied, arrival_rate, throughput and the limiter's own state."""
        cdef double now = self._now()
        out = _rl_measured(self._allowed, self._denied, self._created, now)
        out.update(max_calls=self._w.max_calls, window=self._w.window,
                   in_window=rl_window_in_window(&self._w, now))
        return out

    def reset(self):
        """Back to the initial state, with zeroed counters and nothing observed."""
        cdef double now = self._now()
        rl_window_free(&self._w)
        rl_window_init(&self._w, self._w.max_calls, self._w.window, now)
        self._restart(now)

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



# ---- LimiterGroup's engine over these limiters ----------------------------------------------


@cython.final
cdef class _RLCGroupEngine:
    """All-or-nothing decisions over compiled limiters (see _limiter_protocol.GroupEngine).

    Every member's clock is read first (a user clock is Python code); then, without running any
    Python code (so no other thread can come in between), every member is asked whether it
    would grant and, only if all would, each takes its cost. Nothing is taken and given back.
    """

    cdef readonly str kind

    def __init__(self):
        self.kind = "both"

    def check_members(self, members):
        for m in members:
            if not isinstance(m, _RLBase):
                raise TypeError(f"limiters must be compiled prodfast limiters, not {type(m).__name__}")

    def take(self, members, costs):
        cdef tuple ms = tuple(members)
        cdef Py_ssize_t i, n = len(ms)
        cdef double wait = 0.0, w
        cdef _RLBase m
        cdef double* nows = <double*>malloc(<size_t>(2 * n + 1) * sizeof(double))
        if nows == NULL:
            raise MemoryError()
        cdef double* cs = nows + n
        try:
            for i in range(n):
                cs[i] = costs[i]
                nows[i] = (<_RLBase>ms[i])._now()
            for i in range(n):
                w = (<_RLBase>ms[i])._wait_c(cs[i], nows[i])
                if w > wait:
                    wait = w
            if wait > 0.0:
                return wait
            for i in range(n):
                if (<_RLBase>ms[i])._prepare_c(cs[i]) < 0:
                    raise MemoryError()
            for i in range(n):
                m = <_RLBase>ms[i]
                m._commit_c(cs[i], nows[i])
                nows[i] = m._stamp_c(nows[i])
            return [(nows[i], (<_RLBase>ms[i])._gen) for i in range(n)]
        finally:
            free(nows)


cdef _RLCGroupEngine _rl_c_group_engine = _RLCGroupEngine()
