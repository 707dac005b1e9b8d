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

Beyond deciding, every limiter

- reserves: ``reserve(cost)`` takes an estimate under acquire's waiting rules and returns a
  :class:`Reservation`, settled later with the real cost (a debt may leave a bucket below zero
  or a window above ``max_calls``; later callers wait it off);
- observes: ``observe(headers, resource)`` takes a provider's rate-limit headers as the truth:
  until the provider's reset, grants never total more than its ``remaining``, and after a 429
  nothing is granted until the retry time (:class:`_RLObserved`);
- can sit in a LimiterGroup, whose engine (:class:`_RLGroupEngine`) checks every member and
  then takes from each, all-or-nothing, never taking and giving back.

The compiled core imports the argument checks, the trace checks of ``simulate``, the waiting
logic of ``acquire``/``acquire_async``/``reserve`` and the observation rules from here, so both
twins accept, reject and wait alike. See ``prodfast._limiter_protocol`` for the protocol every
limiter (these, the Redis ones, groups) follows.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections import deque
from contextlib import ExitStack

import numpy as np

from ._limiter_protocol import RateLimitError
from ._rl_checks import (
    check_actual,
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
from ._rl_headers import check_resource, read_observation

__all__ = ["TokenBucket", "LeakyBucket", "SlidingWindowLimiter", "Reservation"]

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


def _rl_calls_actual(actual, reserved):
    """A sliding window's settled cost: a whole number of calls (more than reserved: a debt)."""
    a = check_actual(actual)
    if not a.is_integer():
        raise ValueError(f"actual must be a whole number of calls, got {actual!r}")
    return int(a)


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
    """The first-come first-served queues of one limiter's blocked acquirers.

    Only the head of a queue decides; the others sleep until it leaves. The head sleeps for the
    wait the limiter computed, then decides again (another caller of try_acquire may have taken
    what it waited for) -- or sooner, when a reservation gives tokens back (:meth:`wake`).
    Blocked threads share one queue; blocked asyncio tasks have one queue per event loop, whose
    entries only that loop's tasks create and resolve (loops in several threads may share one
    limiter; a give-back from another thread reaches a loop through ``call_soon_threadsafe``).
    ``groups`` holds the gates of the LimiterGroups a limiter belongs to: a give-back to the
    limiter wakes their heads too.
    """

    __slots__ = ("cond", "queue", "aqueues", "groups", "gen", "sleepers", "asleepers", "__weakref__")

    def __init__(self):
        # reentrant: a give-back from user code the head runs while deciding (its clock) must
        # not deadlock on the condition the head holds
        self.cond = threading.Condition(threading.RLock())
        self.queue: deque = deque()  # tickets of blocked threads
        self.aqueues: dict = {}  # event loop -> deque of _RLAWaiter of its blocked tasks
        self.groups = None  # a WeakSet of the gates of the groups over this limiter, once any
        # waiting that is not first come, first served (the Redis limiters, async Redis
        # groups): the give-backs so far, the threads in sleep(), the futures from watch()
        self.gen = 0
        self.sleepers = 0
        self.asleepers: set = set()

    def link(self, group_gate):
        """Wake ``group_gate`` (a LimiterGroup's) whenever this limiter is given something back."""
        with self.cond:
            if self.groups is None:
                self.groups = weakref.WeakSet()
            self.groups.add(group_gate)

    def wake(self):
        """Something was given back: every head decides again at once (threads are notified;
        each loop's head is resolved through its loop), and so do the groups' heads."""
        with self.cond:  # the dict and the set are shared by the threads of every loop
            self.gen += 1
            if self.queue or self.sleepers:
                self.cond.notify_all()
            futs = [q[0].fut for q in self.aqueues.values() if q]
            if self.asleepers:
                futs.extend(self.asleepers)
        for fut in futs:
            try:
                fut.get_loop().call_soon_threadsafe(_rl_resolve, fut)
            except RuntimeError:  # that loop is closed: its waiters are gone with it
                pass
        groups = self.groups
        if groups is not None:
            for g in list(groups):
                g.wake()

    def sleep(self, seen, seconds):
        """Sleep ``seconds`` (a thread that waits outside the queue), or less when something
        is given back; at once if it was after ``seen`` (``gen`` read before deciding)."""
        with self.cond:
            if self.gen != seen:
                return
            self.sleepers += 1
            try:
                self.cond.wait(_rl_nap(seconds))
            finally:
                self.sleepers -= 1

    def watch(self, loop):
        """A future of ``loop`` that the next give-back resolves (an asyncio waiter outside the
        queues: make it before deciding, ``await asyncio.wait((fut,), timeout=...)``, then
        ``unwatch`` it)."""
        fut = loop.create_future()
        with self.cond:
            self.asleepers.add(fut)
        return fut

    def unwatch(self, fut):
        with self.cond:
            self.asleepers.discard(fut)


def _rl_wake(gate):
    """``gate.wake()`` if anyone could be waiting on it (the cheap test first)."""
    if gate.queue or gate.aqueues or gate.groups is not None:
        gate.wake()


class _RLAWaiter:
    """A blocked task's place in its loop's queue: ``fut`` is what it sleeps on now (resolved
    when it becomes the head, or, as the head, when something is given back)."""

    __slots__ = ("fut",)

    def __init__(self, fut):
        self.fut = fut


def _rl_resolve(fut):
    if not fut.done():
        fut.set_result(None)


def _rl_nap(seconds):
    """A sleep threading can do: a wait above TIMEOUT_MAX sleeps TIMEOUT_MAX, then decides again."""
    return seconds if seconds is None or seconds <= threading.TIMEOUT_MAX else threading.TIMEOUT_MAX


def _rl_wait_for(lim, cost, timeout):
    """Wait, first come first served, until ``lim._take(cost)`` grants; return its receipt, or
    None when ``timeout`` runs out first (at once when the computed wait already exceeds it, or
    is infinite: never). ``_take`` returns the seconds to wait (a float) or a receipt; it counts
    nothing. The head sleeps on the gate's condition, so a give-back (which notifies it) makes
    it decide again at once; it decides with the condition held, so no give-back is missed."""
    gate = lim._gate
    deadline = None if timeout is None else time.monotonic() + timeout
    with gate.cond:
        queue = gate.queue
        if not queue:
            r = lim._take(cost)
            if type(r) is not float:
                lim._note(True)
                return r
            if r == math.inf or (timeout is not None and r > timeout):
                lim._note(False)  # never (a Redis outage with on_error="deny"), or too late
                return None
        ticket = object()
        queue.append(ticket)
        try:
            while True:
                wait = None  # not our turn: sleep until the head leaves
                if queue[0] is ticket:
                    r = lim._take(cost)
                    if type(r) is not float:
                        lim._note(True)
                        return r
                    if r == math.inf:
                        lim._note(False)
                        return None
                    wait = r
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0.0 or (wait is not None and wait > remaining):
                        lim._note(False)
                        return None
                    gate.cond.wait(_rl_nap(remaining if wait is None else wait))
                else:
                    gate.cond.wait(_rl_nap(wait))
        finally:
            queue.remove(ticket)
            gate.cond.notify_all()


async def _rl_wait_for_async(lim, cost, timeout):
    """:func:`_rl_wait_for` for asyncio: sleeps on the running loop, in that loop's queue. The
    head sleeps on a fresh future (made before it decides, so a give-back made after its
    decision resolves it) with the computed wait as the timeout."""
    gate = lim._gate
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    queues = gate.aqueues
    if not queues.get(loop):
        r = lim._take(cost)
        if type(r) is not float:
            lim._note(True)
            return r
        if r == math.inf or (timeout is not None and r > timeout):
            lim._note(False)
            return None
    me = _RLAWaiter(loop.create_future())
    with gate.cond:  # the dict is shared by the threads of every loop
        queue = queues.get(loop)
        if queue is None:
            queue = queues[loop] = deque()
        queue.append(me)
    try:
        while True:
            wait = None
            if queue[0] is me:
                me.fut = loop.create_future()  # before deciding: a later give-back resolves it
                r = lim._take(cost)
                if type(r) is not float:
                    lim._note(True)
                    return r
                if r == math.inf:
                    lim._note(False)
                    return None
                wait = r
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0.0 or (wait is not None and wait > remaining):
                    lim._note(False)
                    return None
                delay = remaining if wait is None else wait
            else:
                delay = wait
            # not the head: the head resolves us when it leaves; the head: a give-back does
            await asyncio.wait((me.fut,), timeout=_rl_nap(delay))
    finally:
        with gate.cond:
            was_head = queue[0] is me
            queue.remove(me)
            if not queue:
                del queues[loop]
            successor = queue[0] if queue else None
        if was_head and successor is not None:
            _rl_resolve(successor.fut)


def _rl_acquire(lim, cost, timeout) -> bool:
    return _rl_wait_for(lim, cost, timeout) is not None


async def _rl_acquire_async(lim, cost, timeout) -> bool:
    return (await _rl_wait_for_async(lim, cost, timeout)) is not None


def _rl_refused(lim, cost):
    return RateLimitError(retry_after=lim.wait_time(cost))


def _rl_reserve(lim, cost, timeout, make):
    """``lim.reserve``: wait as acquire, then ``make(lim, cost, receipt)``; RateLimitError on
    timeout."""
    receipt = _rl_wait_for(lim, cost, timeout)
    if receipt is None:
        raise _rl_refused(lim, cost)
    return make(lim, cost, receipt)


async def _rl_reserve_async(lim, cost, timeout, make):
    receipt = await _rl_wait_for_async(lim, cost, timeout)
    if receipt is None:
        raise _rl_refused(lim, cost)
    return make(lim, cost, receipt)


# ---- what the provider said (observe) -------------------------------------------------------


_RL_SAME_WINDOW = 1e-3  # resets this close to the active budget's end: the same window


class _RLObserved:
    """A limiter's extra constraints from the provider's headers (shared with the compiled twin).

    Until ``until``, grants never total more than ``left`` (the provider's ``remaining`` when
    observed); until ``hold`` (a 429's retry time), nothing is granted. A report whose reset
    falls within the active budget (1 ms slack) only lowers ``left``; one that resets later
    replaces the budget. ``gen`` counts the budgets, so a reservation made under an older
    budget does not settle into a newer one.
    """

    __slots__ = ("left", "top", "until", "hold", "gen")

    def __init__(self):
        self.left = self.top = math.inf
        self.until = self.hold = -math.inf
        self.gen = 0

    @property
    def guard(self):
        """Before this time the constraints apply; from then on the limiter is on its own."""
        return self.until if self.until > self.hold else self.hold

    def apply(self, now, budget, retry_after):
        if budget is not None:
            remaining, reset_after = budget
            until = now + reset_after
            if now < self.until and until <= self.until + _RL_SAME_WINDOW:
                # an answer for the active budget's window, maybe older than the one that set
                # it (answers arrive out of order): it can only tighten the budget
                if remaining < self.left:
                    self.left = remaining
            else:  # a window that resets later: the newest truth
                self.gen += 1
                self.left = self.top = remaining
                self.until = until
        if retry_after is not None and now + retry_after > self.hold:
            self.hold = now + retry_after

    def wait(self, now, cost):
        if now < self.hold:
            return self.hold - now
        if now < self.until and cost > self.left:
            return self.until - now
        return 0.0

    def take(self, now, cost):
        if now < self.until:
            self.left -= cost

    def settle(self, now, more, gen):
        """``more`` (actual - reserved) is taken from (or, negative, given back to) the budget."""
        if gen == self.gen and now < self.until:
            left = self.left - more
            self.left = left if left < self.top else self.top


# ---- reservations ---------------------------------------------------------------------------

_settle_lock = threading.Lock()


class Reservation:
    """A cost taken ahead of a call whose real cost is known only afterwards (see ``reserve``).

    ``settle(actual)`` gives back (``actual < cost``) or takes (``actual > cost``, a debt that
    may leave a bucket below zero, so later callers wait it off) the difference; ``cancel()``
    gives it all back. It settles once (RuntimeError after). As a context manager (``with`` or
    ``async with``) it keeps the estimate when the block settled nothing, also on an exception:
    the provider may have counted the call.
    """

    __slots__ = ("_limiter", "_cost", "_receipt", "_settled")

    def __init__(self, limiter, cost, receipt):
        self._limiter = limiter
        self._cost = cost
        self._receipt = receipt
        self._settled = False

    @property
    def limiter(self):
        return self._limiter

    @property
    def cost(self):
        """The reserved cost."""
        return self._cost

    @property
    def settled(self):
        return self._settled

    def __repr__(self):
        state = "settled" if self._settled else "open"
        return f"<Reservation cost={self._cost!r} {state} of {self._limiter!r}>"

    def _close(self):
        with _settle_lock:
            if self._settled:
                raise RuntimeError("reservation already settled")
            self._settled = True

    def settle(self, actual):
        """The call's real cost: give back or take the difference from the estimate."""
        lim = self._limiter
        a = lim._check_actual(actual, self._cost)
        now = _rl_read(lim._clock)
        self._close()
        lim._settle_at(self._cost, a, self._receipt, now)

    def cancel(self):
        """Give the whole reservation back (the call did not happen)."""
        lim = self._limiter
        now = _rl_read(lim._clock)
        self._close()
        lim._settle_at(self._cost, 0, self._receipt, now)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        with _settle_lock:
            self._settled = True
        return False

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        return self.__exit__(exc_type, exc, tb)


# ---- the limiters ---------------------------------------------------------------------------


class _Limiter:
    """What the three limiters share: counting, the clock, waiting, reservations, headers.

    Each limiter defines, with its ``_lock`` held and ``now`` read: ``_wait_locked(cost, now)``
    (brings the state to ``now``; 0.0 if ``cost`` would be granted, else the seconds to wait),
    ``_commit_locked(cost, now)`` (takes it, right after a 0.0 wait; returns the receipt
    ``(time, budget generation)``) and ``_settle_locked``. LimiterGroup's engine calls them with
    every member's lock held, so a group decides all-or-nothing without ever giving back.
    """

    __slots__ = ()
    limiter_kind = "both"  # plain methods, plus acquire_async/reserve_async (see _limiter_protocol)

    @property
    def clock(self):
        return self._clock

    def _take(self, cost):
        """Decide once without counting: a receipt if granted, else the seconds to wait."""
        now = _rl_read(self._clock)
        with self._lock:
            wait = self._wait_locked(cost, now)
            if wait > 0.0:
                return wait
            return self._commit_locked(cost, now)

    def _note(self, granted):
        with self._lock:
            if granted:
                self._allowed += 1
            else:
                self._denied += 1

    def _observed_wait(self, wait, cost, now):
        """``wait`` lengthened by what the provider said (only before the guard time)."""
        if now < self._guard:
            extra = self._obs.wait(now, cost)
            if extra > wait:
                return extra
        return wait

    def _receipt(self, cost, now):
        obs = self._obs
        if obs is None:
            return (now, 0)
        obs.take(now, cost)
        return (now, obs.gen)

    def _check_actual(self, actual, reserved):
        return check_actual(actual)

    def _settle(self, reserved, actual, receipt):
        self._settle_at(reserved, actual, receipt, _rl_read(self._clock))

    def _settle_at(self, reserved, actual, receipt, now):
        with self._lock:
            self._settle_locked(reserved, actual, receipt, now)
            if self._obs is not None:
                self._obs.settle(now, actual - reserved, receipt[1])
        if actual < reserved:  # a give-back: the waiting heads decide again now
            _rl_wake(self._gate)

    def _apply_observation(self, budget, retry_after):
        if budget is None and retry_after is None:
            return
        now = _rl_read(self._clock)
        with self._lock:
            obs = self._obs
            if obs is None:
                obs = self._obs = _RLObserved()
            obs.apply(now, budget, retry_after)
            self._guard = obs.guard

    def acquire(self, cost=1, timeout=None):
        """Block (sleeping) until ``cost`` is granted; False if ``timeout`` seconds run out first.

        Blocked callers are served first come, first served. Returns False at once when the
        computed wait already exceeds ``timeout``. ``timeout=None`` (or inf) waits for ever.
        """
        return _rl_acquire(self, self._check(cost), _rl_timeout(timeout))

    def acquire_async(self, cost=1, timeout=None):
        """:meth:`acquire` for asyncio: returns an awaitable; bad arguments raise at the call."""
        return _rl_acquire_async(self, self._check(cost), _rl_timeout(timeout))

    def reserve(self, cost=1, timeout=None):
        """Take the estimated ``cost`` now, waiting as :meth:`acquire`, and return a
        :class:`Reservation` to settle with the real cost; RateLimitError (with retry_after)
        if ``timeout`` runs out first (``timeout=0``: decide once)."""
        c = self._check(cost)
        if timeout is None and not self._gate.queue:  # granted now, nobody queued
            receipt = self._take(c)
            if type(receipt) is not float:
                self._note(True)
                return Reservation(self, c, receipt)
        return _rl_reserve(self, c, _rl_timeout(timeout), Reservation)

    def reserve_async(self, cost=1, timeout=None):
        """:meth:`reserve` for asyncio (an awaitable of the Reservation)."""
        return _rl_reserve_async(self, self._check(cost), _rl_timeout(timeout), Reservation)

    def observe(self, headers, resource="requests", status=None):
        """Take the provider's word from a response's ``headers`` (see prodfast._rl_headers).

        ``resource`` names the headers this limiter follows ("requests", "tokens",
        "input-tokens" or "output-tokens"). Until the provider's reset, grants never total
        more than its ``remaining``; after a 429 (``status``; or whenever retry-after is present
        and ``status`` is None) nothing is granted until the retry time. Headers that cannot be
        read change nothing and are warned about once. Returns the parsed report.
        """
        check_resource(resource)
        report, (budget,), retry_after = read_observation(headers, (resource,), status)
        self._apply_observation(budget, retry_after)
        return report


class TokenBucket(_Limiter):
    """Token bucket: ``tokens = min(capacity, tokens + rate*dt)``; allow iff ``tokens >= cost``.

    ``rate`` tokens per second refill a bucket of ``capacity`` tokens, which starts with
    ``initial`` tokens (full by default). Bursts up to ``capacity`` pass at once; over any
    interval of length T at most ``capacity + rate*T`` tokens are granted.
    """

    __slots__ = (
        "_rate", "_capacity", "_initial", "_clock", "_tokens", "_last", "_created",
        "_allowed", "_denied", "_lock", "_gate", "_obs", "_guard",
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
        self._obs = None  # what the provider said, once observe() learned something
        self._guard = -math.inf  # before this time, ask self._obs too

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

    def _wait_locked(self, cost, now):
        t = self._available(now)
        if now > self._last:
            self._tokens, self._last = t, now
        wait = 0.0 if t >= cost else (cost - t) / self._rate
        return self._observed_wait(wait, cost, now)

    def _commit_locked(self, cost, now):
        self._tokens -= cost
        return self._receipt(cost, now)

    def _settle_locked(self, reserved, actual, receipt, now):
        """Give back ``reserved - actual`` (never above capacity) or take the excess (a debt:
        the tokens may go below zero, and later callers wait until they refill)."""
        t = self._available(now)
        if now > self._last:
            self._last = now
        back = reserved - actual
        t += back
        self._tokens = t if back <= 0 or t < self._capacity else self._capacity

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
            if t < c or (now < self._guard and self._obs.wait(now, c) > 0.0):
                self._denied += 1
                return False
            self._tokens = t - c
            if now < self._guard:
                self._obs.take(now, c)
            self._allowed += 1
            return True

    def wait_time(self, cost=1):
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if it would now)."""
        c = _rl_cost_within(cost, self._capacity)
        now = _rl_read(self._clock)
        with self._lock:
            t = self._available(now)
            wait = 0.0 if t >= c else (c - t) / self._rate
            return self._observed_wait(wait, c, now)

    def stats(self):
        """Counters since creation or :meth:`reset`, measured rates, and the bucket's state."""
        now = _rl_read(self._clock)
        with self._lock:
            out = _rl_measured(self._allowed, self._denied, self._created, now)
            out.update(rate=self._rate, capacity=self._capacity, tokens=self._available(now))
        return out

    def reset(self):
        """Back to the initial state (``initial`` tokens) with zeroed counters, forgetting
        what the provider said."""
        now = _rl_read(self._clock)
        with self._lock:
            self._tokens = self._initial
            self._last = self._created = now
            self._allowed = self._denied = 0
            self._obs, self._guard = None, -math.inf

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
        "_allowed", "_denied", "_lock", "_gate", "_obs", "_guard",
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
        self._obs = None
        self._guard = -math.inf

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

    def _wait_locked(self, cost, now):
        v = self._current(now)
        if now > self._last:
            self._level, self._last = v, now
        excess = v + cost - self._capacity
        return self._observed_wait(0.0 if excess <= 0.0 else excess / self._rate, cost, now)

    def _commit_locked(self, cost, now):
        self._level += cost
        return self._receipt(cost, now)

    def _settle_locked(self, reserved, actual, receipt, now):
        """Drain ``reserved - actual`` (never below empty) or add the excess (a debt: the level
        may rise above capacity, and later callers wait until it drains)."""
        v = self._current(now)
        if now > self._last:
            self._last = now
        v -= reserved - actual
        self._level = v if v > 0.0 else 0.0

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
            if v + c > cap or (now < self._guard and self._obs.wait(now, c) > 0.0):
                self._denied += 1
                return False
            self._level = v + c
            if now < self._guard:
                self._obs.take(now, c)
            self._allowed += 1
            return True

    def wait_time(self, cost=1):
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if it would now)."""
        c = _rl_cost_within(cost, self._capacity)
        now = _rl_read(self._clock)
        with self._lock:
            excess = self._current(now) + c - self._capacity
            wait = 0.0 if excess <= 0.0 else excess / self._rate
            return self._observed_wait(wait, c, now)

    def stats(self):
        """Counters since creation or :meth:`reset`, measured rates, and the current level."""
        now = _rl_read(self._clock)
        with self._lock:
            out = _rl_measured(self._allowed, self._denied, self._created, now)
            out.update(rate=self._rate, capacity=self._capacity, level=self._current(now))
        return out

    def reset(self):
        """Empty the bucket and zero the counters, forgetting what the provider said."""
        now = _rl_read(self._clock)
        with self._lock:
            self._level = 0.0
            self._last = self._created = now
            self._allowed = self._denied = 0
            self._obs, self._guard = None, -math.inf

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
        "_allowed", "_denied", "_lock", "_gate", "_obs", "_guard",
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
        self._obs = None
        self._guard = -math.inf

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

    def _check_actual(self, actual, reserved):
        return _rl_calls_actual(actual, reserved)

    def _wait_locked(self, k, now):
        now = self._purge(now)
        log = self._log
        over = len(log) + k - self._max_calls
        wait = log[over - 1] + self._window - now if over > 0 else 0.0
        return self._observed_wait(wait, k, now)

    def _commit_locked(self, k, now):
        now = self._last
        self._log.extend([now] * k)
        return self._receipt(k, now)

    def _settle_locked(self, reserved, actual, receipt, now):
        """Remove ``reserved - actual`` of the calls logged at the receipt's time (later calls
        stay in order; calls that already left the window are not there to remove), or log the
        calls made beyond the reservation now, even above max_calls (a debt: later callers
        wait until enough calls have left the window)."""
        if actual > reserved:
            if now > self._last:
                self._last = now
            self._log.extend([self._last] * (actual - reserved))
            return
        k, stamp = reserved - actual, receipt[0]
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
            if len(log) + k > self._max_calls or (
                now < self._guard and self._obs.wait(now, k) > 0.0
            ):
                self._denied += 1
                return False
            if now < self._guard:
                self._obs.take(now, k)
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
            w = self._log[over - 1] + self._window - now if over > 0 else 0.0
            return self._observed_wait(w if w > 0.0 else 0.0, k, now)

    def stats(self):
        """Counters since creation or :meth:`reset`, measured rates, and the calls in the window."""
        now = _rl_read(self._clock)
        with self._lock:
            out = _rl_measured(self._allowed, self._denied, self._created, now)
            self._purge(now)
            out.update(max_calls=self._max_calls, window=self._window, in_window=len(self._log))
        return out

    def reset(self):
        """Forget every logged call and zero the counters, and what the provider said."""
        now = _rl_read(self._clock)
        with self._lock:
            self._log = deque()
            self._last = self._created = now
            self._allowed = self._denied = 0
            self._obs, self._guard = None, -math.inf

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


# ---- LimiterGroup's engine over these limiters ----------------------------------------------


class _RLGroupEngine:
    """All-or-nothing decisions over pure-Python limiters (see _limiter_protocol.GroupEngine).

    Every member's clock is read, then every member's lock taken (in one global order, so two
    groups sharing members cannot deadlock): each member is brought to its ``now`` and asked
    whether it would grant, and only if all would does each take its cost. Nothing is ever taken
    and given back, so no other user of a member can see (or be refunded) a partial take.
    """

    kind = "both"

    def check_members(self, members):
        return None  # any distinct pure-Python limiters can be decided together

    def take(self, members, costs):
        nows = [_rl_read(m._clock) for m in members]
        with ExitStack() as held:
            for m in sorted(members, key=id):
                held.enter_context(m._lock)
            wait = 0.0
            for m, c, now in zip(members, costs, nows, strict=True):
                w = m._wait_locked(c, now)
                if w > wait:
                    wait = w
            if wait > 0.0:
                return wait
            return [m._commit_locked(c, now) for m, c, now in zip(members, costs, nows, strict=True)]


_rl_group_engine = _RLGroupEngine()
_Limiter._rl_group_engine = _rl_group_engine
