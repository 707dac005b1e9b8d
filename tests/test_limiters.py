"""LimiterGroup, rate_limit, parse_rate and RateLimitError over both backends."""

from __future__ import annotations

import asyncio
import threading

import pytest

from conftest import FakeClock
from prodfast.limiters import (
    AsyncLimiterGroup,
    LimiterGroup,
    RateLimitError,
    parse_rate,
    rate_limit,
)


def member_state(lim) -> dict:
    """What a refused group request must leave untouched: everything but measured rates."""
    s = lim.stats()
    s.pop("arrival_rate")
    s.pop("throughput")
    return s


# ---- LimiterGroup ----------------------------------------------------------------------------


def test_group_is_all_or_nothing(core, clock):
    rpm = core.SlidingWindowLimiter(3, 60.0, clock=clock)  # 3 requests per minute
    tpm = core.TokenBucket(10, 1000, clock=clock)  # 1000 tokens, 10/s refill
    g = LimiterGroup([rpm, tpm])
    assert g.try_acquire([1, 600]) is True
    before = [member_state(rpm), member_state(tpm)]
    assert g.try_acquire([1, 500]) is False  # the window has room, the tokens do not
    assert [member_state(rpm), member_state(tpm)] == before
    assert g.wait_time([1, 500]) == pytest.approx(10.0)
    clock.set(10.0)
    assert g.try_acquire([1, 500]) is True
    assert g.try_acquire([1, 0]) is True
    before = [member_state(rpm), member_state(tpm)]
    assert g.try_acquire([1, 0]) is False  # now the window refuses and the bucket gives back
    assert [member_state(rpm), member_state(tpm)] == before
    s = g.stats()
    assert (s["allowed"], s["denied"]) == (3, 2)
    assert [m["allowed"] for m in s["limiters"]] == [3, 3]
    assert [m["denied"] for m in s["limiters"]] == [0, 0]
    assert s["throughput"] == pytest.approx(3 / 10.0)


def test_group_single_cost_and_bad_costs(core, clock):
    a = core.TokenBucket(1, 5, clock=clock)
    b = core.LeakyBucket(1, 3, clock=clock)
    g = LimiterGroup([a, b])
    assert g.try_acquire(2) is True
    assert (a.stats()["tokens"], b.stats()["level"]) == (3.0, 2.0)
    before = [member_state(a), member_state(b)]
    with pytest.raises(ValueError, match="costs must have one cost per limiter: got 3 costs"):
        g.try_acquire([1, 1, 1])
    with pytest.raises(ValueError, match="cost 4 exceeds capacity 3.0"):
        g.try_acquire([1, 4])
    with pytest.raises(TypeError, match="cost must be a real number, not str"):
        g.try_acquire("2")
    with pytest.raises(ValueError, match="cost must be finite and >= 0"):
        g.acquire([-1, 1])
    assert [member_state(a), member_state(b)] == before
    assert g.stats()["denied"] == 0
    with pytest.raises(ValueError, match="limiters must contain at least one limiter"):
        LimiterGroup([])
    with pytest.raises(TypeError, match="limiters must be a prodfast rate limiter"):
        LimiterGroup([object()])
    assert type(g) is LimiterGroup  # in-memory members: the plain group
    with pytest.raises(TypeError, match="must be async Redis limiters .*AsyncLimiterGroup"):
        AsyncLimiterGroup([core.TokenBucket(1, 5, clock=clock)])


def test_group_acquire_blocks_and_resets(core):
    a = core.TokenBucket(200, 1, initial=0)
    b = core.SlidingWindowLimiter(10, 1.0)
    g = LimiterGroup([a, b])
    assert g.acquire() is True
    assert g.acquire(timeout=2.0) is True
    assert g.acquire(1, timeout=0.0) is False
    assert len(g) == 2 and g.limiters == (a, b)
    g.reset()
    s = g.stats()
    assert (s["allowed"], s["denied"]) == (0, 0)
    assert s["limiters"][1]["in_window"] == 0


def test_group_threads_never_exceed_any_member(core):
    clock = FakeClock(0.0)
    a = core.TokenBucket(1, 300, clock=clock)
    w = core.SlidingWindowLimiter(200, 10.0, clock=clock)
    g = LimiterGroup([w, a])
    granted = [0] * 6

    def hammer(i):
        for n in range(150):
            granted[i] += g.try_acquire([1, 1 + n % 3])

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    s = g.stats()
    assert sum(granted) == s["allowed"] <= 200
    assert s["allowed"] + s["denied"] == 900
    assert w.stats()["in_window"] == s["allowed"]
    assert a.stats()["tokens"] >= 0.0
    assert 300 - a.stats()["tokens"] <= 300


# ---- rate_limit decorator --------------------------------------------------------------------


def test_rate_limit_raising_mode(core, clock):
    b = core.TokenBucket(2, 2, clock=clock)
    calls = []

    @rate_limit(b, block=False)
    def f(x):
        """doc"""
        calls.append(x)
        return x * 2

    assert f.__name__ == "f" and f.__doc__ == "doc"
    assert f(1) == 2 and f(2) == 4
    with pytest.raises(RateLimitError) as info:
        f(3)
    assert info.value.retry_after == pytest.approx(0.5)
    assert str(info.value) == "Rate limit exceeded. Wait 0.50s before retry."
    assert calls == [1, 2]
    clock.tick(0.5)
    assert f(4) == 8


def test_rate_limit_blocking_mode_waits(core):
    b = core.TokenBucket(200, 1, initial=0)

    @rate_limit(b, cost=1)
    def f():
        return "ok"

    assert [f(), f()] == ["ok", "ok"]
    assert b.stats()["allowed"] == 2


def test_rate_limit_async_modes(core):
    b = core.TokenBucket(200, 1, initial=0)
    strict = core.TokenBucket(1, 1)

    @rate_limit(b)
    async def waits():
        return 1

    @rate_limit(strict, block=False)
    async def refuses():
        return 2

    async def main():
        assert await waits() + await waits() == 2
        assert await refuses() == 2
        with pytest.raises(RateLimitError):
            await refuses()

    asyncio.run(main())
    assert b.stats()["allowed"] == 2


def test_rate_limit_checks_arguments(core, clock):
    with pytest.raises(ValueError, match="exceeds capacity"):
        rate_limit(core.TokenBucket(1, 1, clock=clock), cost=2)
    with pytest.raises(TypeError, match="limiter must be a prodfast rate limiter"):
        rate_limit(object())


def test_rate_limit_over_a_group(core, clock):
    g = LimiterGroup([core.SlidingWindowLimiter(1, 1.0, clock=clock)])

    @rate_limit(g, block=False)
    def f():
        return 1

    assert f() == 1
    with pytest.raises(RateLimitError) as info:
        f()
    assert info.value.retry_after == pytest.approx(1.0)


# ---- parse_rate, RateLimitError --------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expect",
    [
        ("100/minute", (100, 60.0)),
        ("5/10s", (5, 10.0)),
        ("1/second", (1, 1.0)),
        ("10 / hour", (10, 3600.0)),
        ("2/day", (2, 86400.0)),
        ("3 per 2 minutes", (3, 120.0)),
        ("0.5/s", (0.5, 1.0)),
        ("7/1.5h", (7, 5400.0)),
    ],
)
def test_parse_rate(text, expect):
    got = parse_rate(text)
    assert got == expect and type(got[0]) is type(expect[0]) and type(got[1]) is float


@pytest.mark.parametrize("text", ["", "100", "100/fortnight", "x/minute", "-1/s", "0/s", "5/0s"])
def test_parse_rate_rejects(text):
    with pytest.raises(ValueError, match="rate must"):
        parse_rate(text)
    with pytest.raises(TypeError, match="rate must be a string"):
        parse_rate(100)


def test_parse_rate_feeds_a_limiter(core, clock):
    n, period = parse_rate("3/10s")
    w = core.SlidingWindowLimiter(n, period, clock=clock)
    assert [w.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_rate_limit_error():
    e = RateLimitError(retry_after=1.234)
    assert isinstance(e, Exception) and e.retry_after == 1.234
    assert str(e) == "Rate limit exceeded. Wait 1.23s before retry."
    assert str(RateLimitError("custom", 2)) == "custom"
    assert RateLimitError().retry_after == 0.0
