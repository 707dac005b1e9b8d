"""Async waiting (acquire_async, LimiterGroup, AsyncLimiter) driven by a virtual loop clock.

The event loop below never sleeps: when it would wait for the next timer, it moves its own
clock forward by that much instead. Limiters built with ``clock=loop.time`` then see exactly
the times the loop computes, and whole scenarios run in milliseconds, deterministically.
"""

from __future__ import annotations

import asyncio
import math
import os

import aiolimiter
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prodfast
from prodfast.limiters import LimiterGroup

LONG = os.environ.get("PRODFAST_LONG_TESTS") == "1"


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose time() only moves when it would otherwise sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        real_select = self._selector.select

        def select(timeout=None):
            if timeout is None:
                raise RuntimeError("the loop would wait for ever: nothing is scheduled")
            if timeout > 0:
                self.now += timeout
            elif not self._ready:
                # a timer is due right now: let a microsecond pass, as real time would (a
                # waker re-armed for the very same instant would otherwise spin for ever)
                self.now += 1e-6
            return real_select(0)

        self._selector.select = select

    def time(self) -> float:
        return self.now


@pytest.fixture
def vloop():
    loop = VirtualClockLoop()
    yield loop
    loop.close()


def run(loop, coro):
    return loop.run_until_complete(coro)


# ---- acquire_async of the three limiters -----------------------------------------------------


def make_limiters(core, loop):
    return {
        "token": core.TokenBucket(2, 1, clock=loop.time, initial=0),
        "leaky": core.LeakyBucket(2, 1, clock=loop.time),
        "window": core.SlidingWindowLimiter(1, 0.5, clock=loop.time),
    }


@pytest.mark.parametrize("kind", ["token", "leaky", "window"])
def test_acquire_async_sleeps_until_the_computed_time(core, vloop, kind):
    lim = make_limiters(core, vloop)[kind]

    async def main():
        stamps = []
        for _ in range(4):
            assert await lim.acquire_async() is True
            stamps.append(vloop.time())
        return stamps

    stamps = run(vloop, main())
    first = 0.5 if kind == "token" else 0.0
    assert stamps == pytest.approx([first + 0.5 * i for i in range(4)])
    assert lim.stats()["allowed"] == 4


def test_acquire_async_first_come_first_served(core, vloop):
    b = core.TokenBucket(1, 4, clock=vloop.time, initial=0)
    done = []

    async def want(name, cost):
        assert await b.acquire_async(cost)
        done.append((name, vloop.time()))

    async def main():
        await asyncio.gather(want("a", 3), want("b", 1), want("c", 2))

    run(vloop, main())
    # b's single token would be there at t=1, but a queued first and is served first
    assert done == [("a", pytest.approx(3.0)), ("b", pytest.approx(4.0)), ("c", pytest.approx(6.0))]


def test_acquire_async_timeouts(core, vloop):
    b = core.TokenBucket(1, 4, clock=vloop.time, initial=0)

    async def main():
        # the computed wait (2 s) exceeds the timeout: False at once, no sleeping
        assert await b.acquire_async(2, timeout=1.0) is False
        assert vloop.time() == 0.0
        head = asyncio.ensure_future(b.acquire_async(3))
        await asyncio.sleep(0)
        # queued behind the head, gives up when its own timeout runs out
        assert await b.acquire_async(1, timeout=0.5) is False
        assert vloop.time() == pytest.approx(0.5)
        assert await head is True
        assert vloop.time() == pytest.approx(3.0)

    run(vloop, main())
    s = b.stats()
    assert (s["allowed"], s["denied"]) == (1, 2)


def test_acquire_async_cancelled_head_lets_the_next_in(core, vloop):
    b = core.TokenBucket(1, 4, clock=vloop.time, initial=0)

    async def main():
        head = asyncio.ensure_future(b.acquire_async(4))
        second = asyncio.ensure_future(b.acquire_async(1))
        await asyncio.sleep(0.5)
        head.cancel()
        assert await second is True
        assert vloop.time() == pytest.approx(1.0)
        assert head.cancelled()

    run(vloop, main())
    assert b.stats()["allowed"] == 1 and b._gate.aqueues == {}


def test_group_acquire_async(core, vloop):
    rpm = core.SlidingWindowLimiter(2, 10.0, clock=vloop.time)
    tpm = core.TokenBucket(100, 300, clock=vloop.time)
    g = LimiterGroup([rpm, tpm])

    async def main():
        stamps = []
        for tokens in (250, 100, 50, 10):
            assert await g.acquire_async([1, tokens]) is True
            stamps.append(vloop.time())
        return stamps

    # 250 now; 100 tokens need 0.5 s; the third call needs the window (t=10); the fourth too
    assert run(vloop, main()) == pytest.approx([0.0, 0.5, 10.0, 10.5])


# ---- AsyncLimiter: the same observable behaviour as aiolimiter.AsyncLimiter -----------------


def run_script(cls, script, max_rate, period):
    """Run ``script`` (a list of (start delay, op, amount)) against a fresh limiter on a fresh
    virtual loop; return the log of (index, event, time) and the limiter's final level."""
    loop = VirtualClockLoop()
    lim = cls(max_rate, period)
    log = []

    async def actor(i, delay, op, amount):
        await asyncio.sleep(delay)
        if op == "ctx":
            async with lim:
                log.append((i, "in", loop.time()))
            log.append((i, "out", loop.time()))
        elif op == "has":
            log.append((i, lim.has_capacity(amount), loop.time()))
        else:
            await lim.acquire(amount)
            log.append((i, "acq", loop.time()))

    async def main():
        await asyncio.gather(*(actor(i, *s) for i, s in enumerate(script)))

    try:
        loop.run_until_complete(main())
        return log, lim._level
    finally:
        loop.close()


SCRIPT = [
    (0.0, "acq", 3),
    (0.0, "ctx", 1),
    (0.0, "acq", 4),  # must wait
    (0.0, "acq", 1),  # fits now: not held behind the 4
    (0.1, "ctx", 1),
    (0.1, "has", 1),
    (0.2, "acq", 2),
    (0.2, "acq", 1),
    (0.25, "has", 0.5),
    (1.0, "ctx", 1),
    (3.0, "acq", 5),
    (3.0, "has", 5),
]


@pytest.mark.parametrize("max_rate, period", [(5, 2.0), (5.0, 1), (10, 60)])
def test_async_limiter_matches_aiolimiter_script(max_rate, period):
    ours = run_script(prodfast.AsyncLimiter, SCRIPT, max_rate, period)
    theirs = run_script(aiolimiter.AsyncLimiter, SCRIPT, max_rate, period)
    assert ours == theirs
    assert any(ev == "acq" and t > 0 for _, ev, t in ours[0])  # somebody waited


@settings(max_examples=200 if LONG else 25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5, 1.0, 2.5]),
            st.sampled_from(["acq", "ctx", "has"]),
            st.sampled_from([0, 0.5, 1, 2, 3, 4]),
        ),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([(4, 1.0), (4, 2), (6, 0.5)]),
)
def test_async_limiter_matches_aiolimiter_property(script, config):
    assert run_script(prodfast.AsyncLimiter, script, *config) == run_script(
        aiolimiter.AsyncLimiter, script, *config
    )


def test_async_limiter_starts_empty_and_exposes_settings(vloop):
    lim = prodfast.AsyncLimiter(3, 1)
    assert (lim.max_rate, lim.time_period) == (3, 1)

    async def main():
        for _ in range(3):
            async with lim:
                pass
        assert vloop.time() == 0.0  # a full burst at once: the bucket starts empty
        assert not lim.has_capacity()
        async with lim:
            pass
        return vloop.time()

    assert run(vloop, main()) == pytest.approx(1 / 3)


@pytest.mark.parametrize("amount", [-1, math.nan, 11])
def test_async_limiter_value_errors_match(vloop, amount):
    ours, theirs = prodfast.AsyncLimiter(10), aiolimiter.AsyncLimiter(10)

    async def main():
        msgs = []
        for lim in (ours, theirs):
            with pytest.raises(ValueError) as info:
                await lim.acquire(amount)
            msgs.append(str(info.value))
        return msgs

    a, b = run(vloop, main())
    assert a == b == "Amount must be a number between 0 and the maximum capacity"


def test_async_limiter_context_needs_max_rate_of_one(vloop):
    async def main():
        for cls in (prodfast.AsyncLimiter, aiolimiter.AsyncLimiter):
            with pytest.raises(ValueError, match="Amount must be a number"):
                async with cls(0.5):
                    pass

    run(vloop, main())


@pytest.mark.parametrize("cls", [prodfast.AsyncLimiter, aiolimiter.AsyncLimiter])
def test_async_limiter_warns_when_reused_across_loops(cls):
    lim = cls(2, 1)

    async def use():
        async with lim:
            pass

    first = VirtualClockLoop()
    first.run_until_complete(use())
    first.close()
    second = VirtualClockLoop()
    try:
        with pytest.warns(RuntimeWarning, match="re-used across loops"):
            second.run_until_complete(use())
    finally:
        second.close()


def test_async_limiter_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_rate must be finite and > 0, got 0"):
        prodfast.AsyncLimiter(0)
    with pytest.raises(ValueError, match="time_period must be finite and > 0, got -1"):
        prodfast.AsyncLimiter(1, -1)
    with pytest.raises(TypeError, match="max_rate must be a real number, not str"):
        prodfast.AsyncLimiter("1")


def test_async_limiter_on_a_standard_loop():
    """The fast path of `async with` on asyncio's own loop (its clock read without a call)."""
    lim = prodfast.AsyncLimiter(5, 1000)
    ref = aiolimiter.AsyncLimiter(5, 1000)

    async def main():
        for _ in range(5):
            async with lim:
                pass
            async with ref:
                pass
        assert lim._level == pytest.approx(ref._level, abs=1e-3)
        assert not lim.has_capacity() and not ref.has_capacity()
        assert lim.has_capacity(0) and ref.has_capacity(0)

    asyncio.run(main())
