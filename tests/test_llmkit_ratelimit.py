"""The seed-compatible RateLimitConfig / RateLimiter / @rate_limit of prodfast.compat.llmkit."""

from __future__ import annotations

import asyncio

import pytest

import prodfast
from prodfast.compat.llmkit import RateLimitConfig, RateLimiter, RateLimitError, rate_limit


def test_config_defaults_and_checks():
    c = RateLimitConfig()
    assert (c.max_calls, c.time_window) == (10, 60.0)
    with pytest.raises(ValueError, match="max_calls"):
        RateLimitConfig(max_calls=0)
    with pytest.raises(ValueError, match="time_window must be finite and > 0"):
        RateLimitConfig(time_window=-1)


def test_rate_limiter_call_and_message(clock):
    rl = RateLimiter(RateLimitConfig(max_calls=2, time_window=10.0), clock=clock)
    assert rl.call(lambda a, b=0: a + b, 1, b=2) == 3
    clock.set(4.0)
    assert rl.call(str, 5) == "5"
    clock.set(6.5)
    ran = []
    with pytest.raises(RateLimitError) as info:
        rl.call(ran.append, 1)
    assert ran == []
    # the oldest call (t=0) leaves the window at t=10: 3.5 s from now
    assert str(info.value) == "Rate limit exceeded. Wait 3.50s before retry."
    assert info.value.retry_after == pytest.approx(3.5)
    assert isinstance(info.value, prodfast.RateLimitError)
    clock.set(10.0)  # a call at c counts while now - c < time_window
    assert rl.call(lambda: "ok") == "ok"
    assert rl.wait_time() == pytest.approx(4.0)


def test_rate_limiter_default_config():
    rl = RateLimiter()
    for _ in range(10):
        rl.call(int)
    with pytest.raises(RateLimitError, match=r"^Rate limit exceeded\. Wait \d+\.\d\ds before retry\.$"):
        rl.call(int)


def test_decorator_forms(clock):
    @rate_limit
    def bare():
        return 1

    @rate_limit(2, 1.0, clock=clock)
    def called():
        return 2

    @rate_limit(config=RateLimitConfig(1, 5.0), clock=clock)
    async def coro():
        return 3

    assert [bare() for _ in range(10)] == [1] * 10
    with pytest.raises(RateLimitError):
        bare()
    assert called() + called() == 4
    with pytest.raises(RateLimitError, match="Wait 1.00s"):
        called()
    clock.set(1.0)
    assert called() == 2
    assert called.__name__ == "called" and isinstance(called.rate_limiter, RateLimiter)

    async def main():
        assert await coro() == 3
        with pytest.raises(RateLimitError, match="Wait 5.00s"):
            await coro()

    asyncio.run(main())
