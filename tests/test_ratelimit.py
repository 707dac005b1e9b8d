"""Behaviour of TokenBucket, LeakyBucket and SlidingWindowLimiter on both backends."""

from __future__ import annotations

import math
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from conftest import FakeClock

STATE_KEYS = {
    "TokenBucket": {"rate", "capacity", "tokens"},
    "LeakyBucket": {"rate", "capacity", "level"},
    "SlidingWindowLimiter": {"max_calls", "window", "in_window"},
}
MEASURED = {"allowed", "denied", "arrival_rate", "throughput"}


def make(core, kind, clock, **kw):
    if kind == "TokenBucket":
        return core.TokenBucket(kw.get("rate", 10), kw.get("capacity", 20), clock=clock)
    if kind == "LeakyBucket":
        return core.LeakyBucket(kw.get("rate", 10), kw.get("capacity", 20), clock=clock)
    return core.SlidingWindowLimiter(kw.get("max_calls", 20), kw.get("window", 2.0), clock=clock)


KINDS = list(STATE_KEYS)


# ---- the seed's worked example and the boundaries of each rule -------------------------------


def test_seed_token_bucket_table(core, clock):
    """rate 10, capacity 20, full at t=0: costs 5, 5, 10, 15 at t=1..4 pass; 20 at t=5 fails."""
    b = core.TokenBucket(10, 20, clock=clock)
    for t, cost, expect_after in [(1, 5, 15), (2, 5, 15), (3, 10, 10), (4, 15, 5)]:
        clock.set(t)
        assert b.try_acquire(cost) is True
        assert b.stats()["tokens"] == expect_after
    clock.set(5)
    assert b.try_acquire(20) is False
    s = b.stats()
    assert s["tokens"] == 15.0
    assert (s["allowed"], s["denied"]) == (4, 1)
    assert s["throughput"] == pytest.approx(4 / 5)
    assert s["arrival_rate"] == pytest.approx(5 / 5)
    assert b.wait_time(20) == pytest.approx(0.5)


def test_token_bucket_initial_and_refill_cap(core, clock):
    b = core.TokenBucket(4, 8, clock=clock, initial=0)
    assert b.try_acquire() is False
    assert b.wait_time(2) == pytest.approx(0.5)
    clock.set(0.5)
    assert b.try_acquire(2) is True
    assert b.try_acquire(0.001) is False
    clock.set(100.0)  # refill stops at capacity
    assert b.stats()["tokens"] == 8.0
    assert b.try_acquire(8) and not b.try_acquire(0.5)
    assert b.try_acquire(0) is True  # a free request always passes
    assert b.wait_time(0) == 0.0


def test_token_bucket_exact_boundary(core, clock):
    b = core.TokenBucket(1, 3, clock=clock, initial=0)
    clock.set(2.0)
    assert b.try_acquire(2) is True  # tokens == cost passes
    assert b.stats()["tokens"] == 0.0


def test_leaky_bucket_rule_and_boundaries(core, clock):
    lb = core.LeakyBucket(2, 4, clock=clock)  # drains 2/s, holds 4
    assert [lb.try_acquire() for _ in range(5)] == [True] * 4 + [False]
    assert lb.stats()["level"] == 4.0
    assert lb.wait_time() == pytest.approx(0.5)
    assert lb.wait_time(4) == pytest.approx(2.0)
    clock.set(0.25)
    assert lb.try_acquire() is False  # level 3.5 + 1 > 4
    clock.set(0.5)
    assert lb.try_acquire() is True  # level 3 + 1 == 4: allowed at the boundary
    clock.set(10.0)
    assert lb.stats()["level"] == 0.0  # never below empty
    assert lb.try_acquire(4) is True and lb.try_acquire(0.5) is False


def test_sliding_window_rule_and_boundaries(core, clock):
    w = core.SlidingWindowLimiter(2, 1.0, clock=clock)
    assert w.try_acquire() is True
    clock.set(0.5)
    assert w.try_acquire() is True
    assert w.try_acquire() is False
    assert w.wait_time() == pytest.approx(0.5)
    assert w.wait_time(2) == pytest.approx(1.0)
    clock.set(0.999)
    assert w.try_acquire() is False
    clock.set(1.0)  # the call at 0 leaves the window exactly now: now - c < window is false
    assert w.stats()["in_window"] == 1
    assert w.try_acquire() is True
    assert w.try_acquire() is False
    clock.set(2.0)
    assert w.try_acquire(2) is True and w.stats()["in_window"] == 2


def test_sliding_window_whole_costs(core, clock):
    w = core.SlidingWindowLimiter(5, 10.0, clock=clock)
    assert w.try_acquire(3) is True
    assert w.try_acquire(3.0) is False
    assert w.try_acquire(np.int64(2)) is True
    assert w.try_acquire(0) is True
    assert w.stats()["in_window"] == 5
    with pytest.raises(ValueError, match=r"cost must be a whole number of calls, got 1\.5"):
        w.try_acquire(1.5)
    with pytest.raises(ValueError, match="exceeds max_calls 5"):
        w.try_acquire(6)


def test_sliding_window_ring_grows_and_wraps(core, clock):
    """The log grows past its first slots and wraps around; compare with a plain list."""
    m, window = 50, 1.0
    w = core.SlidingWindowLimiter(m, window, clock=clock)
    log: list[float] = []
    rng = np.random.default_rng(7)
    t = 0.0
    for _ in range(3000):
        t += float(rng.exponential(0.01))
        k = int(rng.integers(0, 4))
        clock.set(t)
        log = [c for c in log if t - c < window]
        expect = len(log) + k <= m
        assert w.try_acquire(k) is expect
        if expect:
            log += [t] * k
        assert w.stats()["in_window"] == len(log)


@pytest.mark.parametrize("kind", KINDS)
def test_stats_keys_counters_and_reset(core, clock, kind):
    lim = make(core, kind, clock, rate=1, capacity=2, max_calls=2, window=10.0)
    clock.set(1.0)
    results = [lim.try_acquire() for _ in range(4)]
    assert results == [True, True, False, False]
    clock.set(2.0)
    s = lim.stats()
    assert set(s) == MEASURED | STATE_KEYS[kind]
    assert (s["allowed"], s["denied"]) == (2, 2)
    assert s["arrival_rate"] == pytest.approx(4 / 2.0)
    assert s["throughput"] == pytest.approx(2 / 2.0)
    lim.reset()
    s = lim.stats()
    assert (s["allowed"], s["denied"], s["arrival_rate"], s["throughput"]) == (0, 0, 0.0, 0.0)
    assert s.get("tokens", 2.0) == 2.0 and s.get("level", 0.0) == 0.0
    assert s.get("in_window", 0) == 0
    assert lim.try_acquire() is True


def test_throughput_approaches_min_rate_arrival(core, clock):
    """The seed's Throughput = min(rate, arrival_rate) over a long trace."""
    b = core.TokenBucket(10, 20, clock=clock)
    for _ in range(20000):  # 40 requests/s offered, 10/s allowed
        clock.tick(0.025)
        b.try_acquire()
    s = b.stats()
    assert s["arrival_rate"] == pytest.approx(40, rel=1e-3)
    assert s["throughput"] == pytest.approx(min(10, 40), rel=0.01)


# ---- clocks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_operation_reads_the_clock_once(core, clock, kind):
    lim = make(core, kind, clock)
    for op in (lim.try_acquire, lim.wait_time, lim.stats, lim.reset):
        before = clock.reads
        op()
        assert clock.reads == before + 1


def test_default_clock_is_time_monotonic(core):
    b = core.TokenBucket(1, 1, initial=0)
    assert b.clock is time.monotonic
    t0 = time.monotonic()
    b2 = core.TokenBucket(1.0, 1.0, initial=0)
    w = b2.wait_time()
    t1 = time.monotonic()
    # the bucket started empty between t0 and t1 on the same clock as time.monotonic
    assert 1.0 - (t1 - t0) - 1e-6 <= w <= 1.0


def test_backwards_clock_means_no_time_passed(core, clock):
    b = core.TokenBucket(10, 20, clock=clock)
    clock.set(10.0)
    assert b.try_acquire(20)
    clock.set(5.0)  # backwards: no refill, never negative
    assert b.stats()["tokens"] == 0.0
    assert b.try_acquire(1) is False
    clock.set(10.5)
    assert b.stats()["tokens"] == pytest.approx(5.0)

    lb = core.LeakyBucket(1, 2, clock=clock)
    assert lb.try_acquire(2)
    clock.set(3.0)
    assert lb.stats()["level"] == 2.0 and not lb.try_acquire()
    clock.set(11.0)
    assert lb.stats()["level"] == pytest.approx(1.5)

    w = core.SlidingWindowLimiter(1, 1.0, clock=clock)
    assert w.try_acquire()
    clock.set(0.0)  # far back: the call stays in the window
    assert w.try_acquire() is False
    assert w.stats()["in_window"] == 1
    clock.set(12.0)
    assert w.try_acquire() is True


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "reading, exc, match",
    [
        ("soon", TypeError, "clock must return a real number, not str"),
        (None, TypeError, "clock must return a real number, not NoneType"),
        (math.nan, ValueError, "clock returned nan, not a finite time"),
        (math.inf, ValueError, "clock returned inf, not a finite time"),
    ],
)
def test_bad_clock_readings(core, kind, reading, exc, match):
    value = [0.0]
    lim = make(core, kind, lambda: value[0])
    before = lim.stats()
    value[0] = reading
    with pytest.raises(exc, match=match):
        lim.try_acquire()
    value[0] = 0.0
    assert lim.stats() == before


def test_clock_may_return_any_real(core):
    t = [Fraction(1, 3)]
    b = core.TokenBucket(3, 3, clock=lambda: t[0], initial=0)
    t[0] = Fraction(4, 3)
    assert b.try_acquire(3) is True


def test_reentrant_clock_does_not_corrupt(core):
    """A clock that itself takes from the same bucket: every grant is still accounted for."""
    state = {"t": 0.0, "depth": 0, "inner": 0}

    def clock():
        if state["depth"] == 0 and holder:
            state["depth"] += 1
            try:
                state["inner"] += holder[0].try_acquire()
            finally:
                state["depth"] -= 1
        return state["t"]

    holder: list = []
    b = core.TokenBucket(1, 5, clock=clock)
    holder.append(b)
    outer = sum(b.try_acquire() for _ in range(5))
    assert outer + state["inner"] == 5
    s = b.stats()
    assert s["tokens"] == 0.0 and s["allowed"] == 5


# ---- bad input -------------------------------------------------------------------------------

BAD_NUMBERS = [
    (0, ValueError, "must be finite and > 0"),
    (-1, ValueError, "must be finite and > 0"),
    (math.nan, ValueError, "must be finite and > 0"),
    (math.inf, ValueError, "must be finite and > 0"),
    (10**400, ValueError, "must be finite and > 0"),
    ("10", TypeError, "must be a real number, not str"),
    (None, TypeError, "must be a real number, not NoneType"),
]


@pytest.mark.parametrize("value, exc, match", BAD_NUMBERS)
def test_bad_constructor_arguments(core, value, exc, match):
    with pytest.raises(exc, match="rate " + match):
        core.TokenBucket(value, 1)
    with pytest.raises(exc, match="capacity " + match):
        core.TokenBucket(1, value)
    with pytest.raises(exc, match="rate " + match):
        core.LeakyBucket(value, 1)
    with pytest.raises(exc, match="capacity " + match):
        core.LeakyBucket(1, value)
    with pytest.raises(exc, match="window " + match):
        core.SlidingWindowLimiter(1, value)


@pytest.mark.parametrize(
    "value, exc, match",
    [
        (0, ValueError, r"max_calls must be > 0 and at most 2\*\*53, got 0"),
        (-3, ValueError, "max_calls must be > 0"),
        (2**60, ValueError, "max_calls must be > 0 and at most"),
        (2.5, ValueError, "max_calls must be a whole number, got 2.5"),
        (math.nan, ValueError, "max_calls must be a whole number, got nan"),
        ("3", TypeError, "max_calls must be a real number, not str"),
    ],
)
def test_bad_max_calls(core, value, exc, match):
    with pytest.raises(exc, match=match):
        core.SlidingWindowLimiter(value, 1.0)


def test_constructor_extras(core, clock):
    assert core.SlidingWindowLimiter(3.0, 1, clock=clock).max_calls == 3
    small = core.TokenBucket(1, 0.5, clock=clock)  # the default cost of 1 can never fit
    with pytest.raises(ValueError, match="cost 1 exceeds capacity 0.5"):
        small.try_acquire()
    assert small.try_acquire(0.5) is True
    with pytest.raises(ValueError, match="cost 1 exceeds capacity 0.25"):
        core.LeakyBucket(1, 0.25, clock=clock).try_acquire()
    with pytest.raises(ValueError, match="initial must be finite and between 0 and capacity"):
        core.TokenBucket(1, 2, initial=3)
    with pytest.raises(ValueError, match="initial must be finite"):
        core.TokenBucket(1, 2, initial=-0.5)
    with pytest.raises(TypeError, match="initial must be a real number"):
        core.TokenBucket(1, 2, initial="full")
    with pytest.raises(TypeError, match="clock must be callable, not float"):
        core.TokenBucket(1, 2, clock=1.0)
    with pytest.raises(TypeError):
        core.TokenBucket(1, 2, clock)  # clock is keyword-only
    b = core.TokenBucket(2, 5, clock=clock)
    assert (b.rate, b.capacity, b.clock) == (2.0, 5.0, clock)
    assert repr(b) == "TokenBucket(rate=2.0, capacity=5.0)"
    assert repr(core.LeakyBucket(1, 2, clock=clock)) == "LeakyBucket(rate=1.0, capacity=2.0)"
    assert (
        repr(core.SlidingWindowLimiter(3, 1, clock=clock))
        == "SlidingWindowLimiter(max_calls=3, window=1.0)"
    )


BAD_COSTS = [
    (-1, ValueError, "cost must be finite and >= 0, got -1"),
    (-0.5, ValueError, r"cost must be finite and >= 0, got -0\.5"),
    (math.nan, ValueError, "cost must be finite and >= 0, got nan"),
    (math.inf, ValueError, "cost must be finite and >= 0, got inf"),
    (10**400, ValueError, "cost must be finite and >= 0"),
    ("1", TypeError, "cost must be a real number, not str"),
    (None, TypeError, "cost must be a real number, not NoneType"),
    (21, ValueError, "exceeds .*: the request can never succeed"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cost, exc, match", BAD_COSTS)
def test_bad_costs_change_nothing(core, clock, kind, cost, exc, match):
    lim = make(core, kind, clock)
    lim.try_acquire(3)
    clock.tick(0.1)
    before = lim.stats()
    reads = clock.reads
    for method in (lim.try_acquire, lim.wait_time, lim.acquire):
        with pytest.raises(exc, match=match):
            method(cost)
    with pytest.raises(exc, match=match):
        lim.acquire_async(cost)
    assert clock.reads == reads  # rejected before the clock was even read
    assert lim.stats() == before


@pytest.mark.parametrize("kind", KINDS)
def test_bad_timeout(core, clock, kind):
    lim = make(core, kind, clock)
    with pytest.raises(ValueError, match="timeout must be None or >= 0, got -1"):
        lim.acquire(1, timeout=-1)
    with pytest.raises(ValueError, match="timeout must be None or >= 0, got nan"):
        lim.acquire(1, timeout=math.nan)
    with pytest.raises(TypeError, match="timeout must be a real number, not str"):
        lim.acquire(1, timeout="1")
    assert lim.stats()["allowed"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_costs_accept_numpy_and_fractions(core, clock, kind):
    lim = make(core, kind, clock)
    assert lim.try_acquire(np.float64(2.0)) is True
    assert lim.try_acquire(Fraction(4, 2)) is True
    assert lim.try_acquire(True) is True
    assert lim.stats()["allowed"] == 3


# ---- blocking acquire ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_acquire_returns_at_once_when_wait_exceeds_timeout(core, clock, kind):
    lim = make(core, kind, clock, rate=1, capacity=1, max_calls=1, window=100.0)
    assert lim.try_acquire()
    reads = clock.reads
    assert lim.acquire(1, timeout=0.5) is False  # needs 1 s (or 100 s) of this clock
    assert clock.reads == reads + 1
    assert lim.stats()["denied"] == 1
    assert lim.acquire(0, timeout=0) is True


def test_acquire_sleeps_until_allowed(core):
    b = core.TokenBucket(200, 1, initial=0)  # real clock: one token every 5 ms
    assert b.acquire() is True
    assert b.acquire(1, timeout=1.0) is True
    s = b.stats()
    assert (s["allowed"], s["denied"]) == (2, 0)
    w = core.SlidingWindowLimiter(1, 0.01)
    assert w.acquire() and w.acquire(1, timeout=1.0)
    lb = core.LeakyBucket(100, 1)
    assert lb.acquire() and lb.acquire()


def test_acquire_waits_first_come_first_served(core):
    b = core.TokenBucket(100, 1, initial=0)
    order: list[int] = []
    threads = []
    for i in range(5):
        th = threading.Thread(target=lambda i=i: (b.acquire(), order.append(i)))
        th.start()
        threads.append(th)
        deadline = time.monotonic() + 5.0
        while len(b._gate.queue) < i + 1 and time.monotonic() < deadline:  # queued in turn
            time.sleep(0.0005)
    for th in threads:
        th.join(10)
    assert order == list(range(5))
    assert b.stats()["allowed"] == 5


# ---- threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_threads_get_exactly_what_the_arithmetic_allows(core, kind):
    clock = FakeClock(0.0)  # frozen: no refill, so exactly the capacity is granted
    lim = make(core, kind, clock, rate=1, capacity=500, max_calls=500, window=10.0)
    granted = [0] * 8
    barrier = threading.Barrier(8)

    def hammer(i):
        barrier.wait()
        for _ in range(200):
            granted[i] += lim.try_acquire()

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(granted) == 500
    s = lim.stats()
    assert (s["allowed"], s["denied"]) == (500, 1600 - 500)


def test_threads_with_refill(core):
    """Clock moves under the threads: grants + tokens left = rate x elapsed (never full)."""
    clock = FakeClock(0.0)
    lock = threading.Lock()
    b = core.TokenBucket(100, 10, clock=clock, initial=0)

    def hammer():
        for _ in range(2000):
            with lock:
                clock.tick(0.0001)  # 0.01 token per step
            b.try_acquire()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    s = b.stats()
    assert s["allowed"] + s["tokens"] == pytest.approx(100 * clock.now, abs=1e-6)


# ---- simulate --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_simulate_matches_replay_and_leaves_live_state(core, kind):
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.exponential(0.04, 2000))
    whole = kind == "SlidingWindowLimiter"
    costs = rng.integers(0, 4, 2000).astype(float) if whole else rng.uniform(0, 3, 2000)
    live_clock = FakeClock(123.0)
    lim = make(core, kind, live_clock)
    lim.try_acquire(2)
    before = lim.stats()
    for cs in (None, costs):
        got = lim.simulate(times, cs)
        assert got.dtype == np.bool_ and got.shape == times.shape
        clock = FakeClock(float(times[0]))
        fresh = make(core, kind, clock)
        expect = []
        for i, t in enumerate(times):
            clock.set(float(t))
            expect.append(fresh.try_acquire(1 if cs is None else cs[i]))
        assert got.tolist() == expect
        assert 0 < got.sum() < len(times)
    assert lim.stats() == before


def test_simulate_starts_from_initial(core):
    b = core.TokenBucket(1, 10, initial=2)
    assert b.simulate([5, 5, 5]).tolist() == [True, True, False]
    b.try_acquire(2)  # the live state does not matter
    assert b.simulate([5, 5, 5]).tolist() == [True, True, False]
    lb = core.LeakyBucket(1, 2)
    assert lb.simulate([1, 1, 1, 2]).tolist() == [True, True, False, True]


@pytest.mark.parametrize("kind", KINDS)
def test_simulate_bad_traces(core, kind):
    lim = make(core, kind, FakeClock())
    assert lim.simulate([]).tolist() == []
    with pytest.raises(ValueError, match="times must be non-decreasing"):
        lim.simulate([0, 2, 1])
    with pytest.raises(ValueError, match="times contains NaN or infinity"):
        lim.simulate([0, math.nan])
    with pytest.raises(ValueError, match="times must be one-dimensional"):
        lim.simulate([[0, 1]])
    with pytest.raises(TypeError, match="times must be a sequence of real numbers"):
        lim.simulate(["a"])
    with pytest.raises(ValueError, match="costs must have one cost per time"):
        lim.simulate([0, 1], [1])
    with pytest.raises(ValueError, match="costs must be finite and >= 0"):
        lim.simulate([0, 1], [1, -1])
    with pytest.raises(ValueError, match="it can never succeed"):
        lim.simulate([0, 1], [1, 21])
    assert lim.simulate(np.array([0, 1], dtype=np.int64), (1, 1)).tolist() == [True, True]


def test_simulate_window_costs_must_be_whole(core):
    w = core.SlidingWindowLimiter(3, 1.0)
    with pytest.raises(ValueError, match="costs must be whole numbers of calls"):
        w.simulate([0, 1], [1, 0.5])
    assert w.simulate([0, 0, 0.5, 1.0], [2, 2, 1, 2]).tolist() == [True, False, True, True]


def test_window_simulate_sizes(core):
    """The window's simulate() keeps min(max_calls, calls in the trace) times: huge max_calls,
    free requests and a trace longer than the window's capacity all replay exactly."""
    huge = core.SlidingWindowLimiter(2**40, 1.0)
    assert huge.simulate(np.arange(1000) * 1e-3).all()
    assert core.SlidingWindowLimiter(2, 1.0).simulate([0, 0, 0], [0, 0, 0]).all()
    times = np.repeat(np.arange(10.0), 3) * 0.4
    clock = FakeClock()
    live = core.SlidingWindowLimiter(4, 1.0, clock=clock)
    expect = []
    for t in times:
        clock.set(float(t))
        expect.append(live.try_acquire(2))
    got = core.SlidingWindowLimiter(4, 1.0).simulate(times, np.full(times.shape, 2.0))
    assert got.tolist() == expect and 0 < sum(expect) < len(expect)


@pytest.mark.parametrize("kind", KINDS)
def test_acquire_sleeps_instead_of_spinning(core, kind):
    """Waiting 20 ms costs a handful of clock reads: one sleep for the computed time."""
    reads = [0]

    def clock():
        reads[0] += 1
        return time.monotonic()

    if kind == "TokenBucket":
        lim = core.TokenBucket(50, 1, clock=clock, initial=0)
    elif kind == "LeakyBucket":
        lim = core.LeakyBucket(50, 1, clock=clock)
        lim.try_acquire()
    else:
        lim = core.SlidingWindowLimiter(1, 0.02, clock=clock)
        lim.try_acquire()
    reads[0] = 0
    assert lim.acquire() is True
    assert 2 <= reads[0] <= 5
