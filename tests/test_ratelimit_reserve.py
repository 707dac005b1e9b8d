"""Reserve, then settle: limiters and groups on both backends, with a fake clock.

- ``reserve(cost)`` takes the estimate under acquire's rules; ``settle(actual)`` gives back or
  takes the difference (a debt leaves a bucket below zero, later callers wait it off);
  ``cancel()`` gives it all back; a context manager keeps the estimate when nothing settled;
- the conformance bound holds for settled totals (hypothesis): at every grant, what was settled
  plus what is still reserved never exceeds capacity + rate x elapsed;
- the twins agree on every decision and state.
"""

from __future__ import annotations

import asyncio
import importlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FakeClock
from prodfast import RateLimitError
from prodfast.limiters import GroupReservation, LimiterGroup
from tests.test_ratelimit_async import VirtualClockLoop

LONG = os.environ.get("PRODFAST_LONG_TESTS") == "1"
SETTINGS = settings(max_examples=300 if LONG else 30, deadline=None)
EPS = 1e-9


@pytest.fixture
def vloop():
    loop = VirtualClockLoop()
    yield loop
    loop.close()


def test_settle_gives_back_and_takes_the_difference(core, clock):
    b = core.TokenBucket(1, 10, clock=clock)
    r = b.reserve(6)
    assert (r.cost, r.settled, r.limiter) == (6.0, False, b)
    assert b.stats()["tokens"] == 4.0
    r.settle(2)
    assert r.settled and b.stats()["tokens"] == 8.0
    r = b.reserve(8)
    r.settle(13)  # a debt: the bucket goes below zero
    assert b.stats()["tokens"] == -5.0
    assert b.try_acquire(0) is False  # even a free request waits the debt off
    assert b.wait_time(1) == pytest.approx(6.0)
    clock.tick(6.0)
    assert b.try_acquire(1) is True
    assert b.stats()["allowed"] == 3


def test_refund_never_fills_above_capacity(core, clock):
    b = core.TokenBucket(1, 10, clock=clock)
    r = b.reserve(4)
    clock.tick(100.0)  # the bucket is full again meanwhile
    r.settle(0)
    assert b.stats()["tokens"] == 10.0


def test_leaky_bucket_settles_and_holds_debt(core, clock):
    b = core.LeakyBucket(2, 10, clock=clock)
    r = b.reserve(5)
    r.settle(1)
    assert b.stats()["level"] == 1.0
    b.reserve(5).settle(20)
    assert b.stats()["level"] == 21.0
    assert b.wait_time(1) == pytest.approx(6.0)
    with pytest.raises(RateLimitError):
        b.reserve(0, timeout=0)  # even a free request waits the debt off
    clock.tick(100)
    r = b.reserve(3)
    r.cancel()
    assert b.stats()["level"] == 0.0


def test_window_settles_fewer_and_more_calls(core, clock):
    w = core.SlidingWindowLimiter(5, 10.0, clock=clock)
    r = w.reserve(3)
    clock.set(1.0)
    w.try_acquire(1)  # a later call stays, in order
    r.settle(1)
    assert w.stats()["in_window"] == 2
    with pytest.raises(ValueError, match="actual must be a whole number of calls, got 0.5"):
        w.reserve(1).settle(0.5)  # the reservation (a call at t=1) stays open
    clock.set(2.0)
    w.reserve(1).settle(6)  # the call was retried 5 times: a debt above max_calls
    assert w.stats()["in_window"] == 9
    assert w.try_acquire(0) is False
    assert w.wait_time(1) == pytest.approx(10.0)  # 5 of the 9 must leave: the 5th leaves at 12
    clock.set(10.5)  # the call of t=0 left
    assert w.stats()["in_window"] == 8
    clock.set(12.0)
    assert w.stats()["in_window"] == 0
    assert w.try_acquire(5) is True


def test_cancel_and_settle_once(core, clock):
    b = core.TokenBucket(1, 10, clock=clock)
    r = b.reserve(7)
    r.cancel()
    assert b.stats()["tokens"] == 10.0
    with pytest.raises(RuntimeError, match="reservation already settled"):
        r.settle(1)
    with pytest.raises(RuntimeError, match="reservation already settled"):
        r.cancel()


def test_bad_actual_is_refused_and_changes_nothing(core, clock):
    b = core.TokenBucket(1, 10, clock=clock)
    r = b.reserve(4)
    for bad, exc, msg in [
        (-1, ValueError, "actual must be finite and >= 0"),
        (float("nan"), ValueError, "actual must be finite and >= 0"),
        (float("inf"), ValueError, "actual must be finite and >= 0"),
        ("3", TypeError, "actual must be a real number, not str"),
        (None, TypeError, "actual must be a real number, not NoneType"),
    ]:
        with pytest.raises(exc, match=msg):
            r.settle(bad)
    assert not r.settled and b.stats()["tokens"] == 6.0
    r.settle(4)


def test_context_manager_keeps_the_estimate(core, clock):
    b = core.TokenBucket(1, 10, clock=clock)
    with b.reserve(3) as r:
        pass
    assert r.settled and b.stats()["tokens"] == 7.0
    with pytest.raises(KeyError):
        with b.reserve(2):
            raise KeyError("the call failed: the provider may have counted it")
    assert b.stats()["tokens"] == 5.0
    with b.reserve(5) as r:
        r.settle(1)
    assert b.stats()["tokens"] == 4.0


def test_reserve_waits_and_times_out(core, clock):
    b = core.TokenBucket(1, 10, clock=clock, initial=0)
    with pytest.raises(RateLimitError) as info:
        b.reserve(5, timeout=1.0)
    assert info.value.retry_after == pytest.approx(5.0)
    assert b.stats()["denied"] == 1
    with pytest.raises(ValueError, match="cost 11 exceeds capacity"):
        b.reserve(11)
    with pytest.raises(ValueError, match="timeout must be None or >= 0"):
        b.reserve(1, timeout=-1)
    real = core.TokenBucket(100, 1, initial=0)
    r = real.reserve(1, timeout=2.0)  # sleeps about 10 ms
    assert r.cost == 1.0 and real.stats()["allowed"] == 1


def test_reserve_async(core, vloop):
    b = core.TokenBucket(2, 4, clock=vloop.time, initial=0)

    async def main():
        r = await b.reserve_async(4)
        assert vloop.time() == pytest.approx(2.0)
        async with r:
            r.settle(1)
        with pytest.raises(RateLimitError):
            await b.reserve_async(4, timeout=0.1)

    vloop.run_until_complete(main())
    assert b.stats()["tokens"] == pytest.approx(3.0)


def test_group_reservation(core, clock):
    rpm = core.SlidingWindowLimiter(3, 60.0, clock=clock)
    tpm = core.TokenBucket(10, 100, clock=clock)
    g = LimiterGroup([rpm, tpm])
    r = g.reserve([1, 50])
    assert isinstance(r, GroupReservation) and r.cost == (1, 50.0)
    assert (rpm.stats()["in_window"], tpm.stats()["tokens"]) == (1, 50.0)
    with pytest.raises(ValueError, match="actual must be a whole number of calls"):
        r.settle([0.5, 10])  # nothing applied to any member
    assert (rpm.stats()["in_window"], tpm.stats()["tokens"]) == (1, 50.0)
    r.settle([1, 80])
    assert (rpm.stats()["in_window"], tpm.stats()["tokens"]) == (1, 20.0)
    g.reserve([1, 20]).cancel()
    assert (rpm.stats()["in_window"], tpm.stats()["tokens"]) == (1, 20.0)
    with pytest.raises(RateLimitError):
        g.reserve([1, 30], timeout=0)
    assert g.stats()["allowed"] == 2 and g.stats()["denied"] == 1
    with g.reserve([1, 0]) as r:
        pass
    assert r.settled and rpm.stats()["in_window"] == 2


@pytest.mark.cython_backend
def test_twins_agree_on_reservation_api():
    cy = importlib.import_module("prodfast._core")
    py = importlib.import_module("prodfast._core_py")
    public = sorted(n for n in dir(py.Reservation) if not n.startswith("_"))
    assert public == sorted(n for n in dir(cy.Reservation) if not n.startswith("_"))


    def walk(module):
        # the reservation protocol, end to end: with, async with, settle, cancel
        b = module.TokenBucket(1.0, 10.0, clock=FakeClock())
        seen = []
        with b.reserve(4) as r:
            seen.append((type(r) is module.Reservation, b.stats()["tokens"], r.settled))
            r.settle(1)
        seen.append((r.settled, b.stats()["tokens"]))
        with b.reserve(2) as kept:  # left unsettled: the estimate stays taken
            pass
        seen.append((kept.settled, b.stats()["tokens"]))

        async def held():
            async with b.reserve(3) as r:
                seen.append((type(r) is module.Reservation, b.stats()["tokens"]))
                r.cancel()
            seen.append((r.settled, b.stats()["tokens"]))

        asyncio.run(held())
        return seen

    assert walk(cy) == walk(py) == [
        (True, 6.0, False), (True, 9.0), (True, 7.0), (True, 4.0), (True, 7.0),
    ]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(0.0, 3.0)),
        st.tuples(st.just("reserve"), st.floats(0.0, 1.0)),  # a fraction of capacity
        st.tuples(st.just("settle"), st.floats(0.0, 2.5)),  # a fraction of what was reserved
        st.tuples(st.just("cancel"), st.just(0.0)),
        st.tuples(st.just("try"), st.floats(0.0, 1.0)),
    ),
    min_size=1,
    max_size=40,
)


def _run(core, kind, rate, capacity, steps):
    """Replay ``steps``; check the bound at every grant; return every decision and the state."""
    clock = FakeClock()
    lim = (core.TokenBucket if kind == "token" else core.LeakyBucket)(rate, capacity, clock=clock)
    open_, settled_total, trace = [], 0.0, []
    for op, x in steps:
        if op == "tick":
            clock.tick(x)
            continue
        if op in ("settle", "cancel"):
            if open_:
                r = open_.pop(0)
                actual = 0.0 if op == "cancel" else r.cost * x
                r.settle(actual) if op == "settle" else r.cancel()
                settled_total += actual
            continue
        cost = capacity * x
        outstanding = sum(r.cost for r in open_)
        if op == "try":
            granted = lim.try_acquire(cost)
            if granted:
                settled_total += cost
        else:
            try:
                r = lim.reserve(cost, timeout=0)
            except RateLimitError:
                granted = False
            else:
                granted = True
                open_.append(r)
        if granted:
            taken = settled_total + outstanding + (cost if op == "reserve" else 0.0)
            assert taken <= capacity + rate * clock() + EPS * (1 + taken)
        trace.append(granted)
    state = lim.stats()["tokens" if kind == "token" else "level"]
    return trace, state


@SETTINGS
@given(
    kind=st.sampled_from(["token", "leaky"]),
    rate=st.floats(0.1, 20.0),
    capacity=st.floats(1.0, 40.0),
    steps=ops,
)
def test_settled_totals_conform(core, kind, rate, capacity, steps):
    _run(core, kind, rate, capacity, steps)


@pytest.mark.cython_backend
@SETTINGS
@given(
    kind=st.sampled_from(["token", "leaky"]),
    rate=st.floats(0.1, 20.0),
    capacity=st.floats(1.0, 40.0),
    steps=ops,
)
def test_twins_settle_alike(kind, rate, capacity, steps):
    cy = importlib.import_module("prodfast._core")
    py = importlib.import_module("prodfast._core_py")
    t1, s1 = _run(cy, kind, rate, capacity, steps)
    t2, s2 = _run(py, kind, rate, capacity, steps)
    assert t1 == t2
    assert s1 == pytest.approx(s2, rel=1e-9, abs=1e-9)


def test_reservation_context_manager_is_async_too(core, clock):
    b = core.TokenBucket(1, 10, clock=clock)

    async def main():
        async with b.reserve(2) as r:
            assert not r.settled
        return r

    r = asyncio.run(main())
    assert r.settled and b.stats()["tokens"] == 8.0


def test_group_settle_applies_nothing_when_a_clock_fails(core, clock):
    broken = [False]

    def flaky():
        if broken[0]:
            raise OSError("clock unavailable")
        return clock()

    a = core.TokenBucket(1, 10, clock=clock)
    b = core.TokenBucket(1, 10, clock=flaky)
    g = LimiterGroup([a, b])
    r = g.reserve([5, 5])
    broken[0] = True
    with pytest.raises(OSError):
        r.settle([1, 1])
    assert not r.settled
    assert a.stats()["tokens"] == 5.0  # nothing given back to the first member either
    broken[0] = False
    r.settle([1, 1])
    assert (a.stats()["tokens"], b.stats()["tokens"]) == (9.0, 9.0)
