"""The limiter protocol as rate_limit and LimiterGroup apply it (both backends).

Every limiter says how it is called (``limiter_kind``); a pairing that cannot work is a
TypeError when it is built, never a logged error and an unlimited call; an invalid cost is
refused before the call runs.
"""

from __future__ import annotations

import asyncio
import importlib

import pytest

from prodfast import RateLimitError, check_limiter, limiter_kind
from prodfast.limiters import LimiterGroup, rate_limit


class SyncOnly:
    """A sync-only limiter (as a Redis one is), over an in-memory bucket; ``acquire`` can be
    told to refuse outright (as a Redis limiter with on_error="deny" does in an outage)."""

    limiter_kind = "sync"

    def __init__(self, bucket, refuse=False):
        self.bucket, self.refuse = bucket, refuse

    def _check(self, cost):
        return self.bucket._check(cost)

    def try_acquire(self, cost=1):
        return self.bucket.try_acquire(cost)

    def wait_time(self, cost=1):
        return self.bucket.wait_time(cost)

    def acquire(self, cost=1, timeout=None):
        return False if self.refuse else self.bucket.acquire(cost, timeout)


class AsyncOnly(SyncOnly):
    limiter_kind = "async"

    async def try_acquire(self, cost=1):
        return self.bucket.try_acquire(cost)

    async def wait_time(self, cost=1):
        return self.bucket.wait_time(cost)

    async def acquire(self, cost=1, timeout=None):
        return False if self.refuse else await self.bucket.acquire_async(cost, timeout)

    acquire_async = acquire


def test_every_in_memory_limiter_is_both(core):
    for lim in (core.TokenBucket(1, 1), core.LeakyBucket(1, 1), core.SlidingWindowLimiter(1, 1)):
        assert limiter_kind(lim) == "both"
        assert check_limiter(lim, sync=True, asynchronous=True) == "both"
    assert LimiterGroup([core.TokenBucket(1, 1)]).limiter_kind == "both"


def test_refused_pairings_when_built(core, clock):
    bucket = core.TokenBucket(1, 2, clock=clock)
    with pytest.raises(TypeError, match="limiter must be a prodfast rate limiter"):
        rate_limit(object())
    with pytest.raises(TypeError, match="async-only: a synchronous call cannot await it"):
        rate_limit(AsyncOnly(bucket))(lambda: None)
    with pytest.raises(TypeError, match="sync-only: an async call would block the event loop"):

        @rate_limit(SyncOnly(bucket))
        async def f():
            return None

    with pytest.raises(TypeError, match="block must be a bool"):
        rate_limit(bucket, block=1)
    with pytest.raises(ValueError, match="cost 3 exceeds capacity"):
        rate_limit(bucket, cost=3)
    with pytest.raises(TypeError, match="bucket Mock|bucket must be a prodfast"):
        check_limiter(type("Mock", (), {"limiter_kind": "maybe"})(), name="bucket")


def test_sync_and_async_only_limiters_limit(core, clock):
    bucket = core.TokenBucket(1, 2, clock=clock)
    calls = []

    @rate_limit(SyncOnly(bucket), block=False)
    def f(x):
        calls.append(x)

    f(1)
    f(2)
    with pytest.raises(RateLimitError) as info:
        f(3)
    assert info.value.retry_after == pytest.approx(1.0) and calls == [1, 2]

    @rate_limit(AsyncOnly(bucket), block=False)
    async def g(x):
        calls.append(x)

    clock.tick(1.0)
    asyncio.run(g(4))
    with pytest.raises(RateLimitError):
        asyncio.run(g(5))
    assert calls == [1, 2, 4]


def test_a_limiter_that_refuses_a_blocking_call_refuses_it(core, clock):
    calls = []

    @rate_limit(SyncOnly(core.TokenBucket(1, 2, clock=clock), refuse=True))
    def f():
        calls.append(1)

    @rate_limit(AsyncOnly(core.TokenBucket(1, 2, clock=clock), refuse=True))
    async def g():
        calls.append(2)

    with pytest.raises(RateLimitError):
        f()
    with pytest.raises(RateLimitError):
        asyncio.run(g())
    assert calls == []


def test_cost_from_the_call_arguments(core, clock):
    bucket = core.TokenBucket(1, 100, clock=clock)
    seen = []

    @rate_limit(bucket, cost=lambda prompt, **kw: len(prompt) * kw.get("n", 1), block=False)
    def complete(prompt, n=1):
        seen.append(prompt)
        return prompt.upper()

    assert complete("abcd") == "ABCD"
    assert bucket.stats()["tokens"] == 96.0
    complete("ab", n=10)
    assert bucket.stats()["tokens"] == 76.0
    with pytest.raises(ValueError, match="cost 200 exceeds capacity"):
        complete("x" * 200)  # fail closed: refused before the call runs
    with pytest.raises(RateLimitError):
        complete("x" * 80)
    assert seen == ["abcd", "ab"]

    @rate_limit(bucket, cost=lambda prompt: None)
    async def acomplete(prompt):
        seen.append(prompt)

    with pytest.raises(TypeError, match="cost must be a real number, not NoneType"):
        asyncio.run(acomplete("q"))
    assert seen == ["abcd", "ab"]


def test_rate_limit_over_a_group(core, clock):
    rpm = core.SlidingWindowLimiter(2, 60.0, clock=clock)
    tpm = core.TokenBucket(1, 100, clock=clock)
    group = LimiterGroup([rpm, tpm])

    @rate_limit(group, cost=lambda prompt: (1, len(prompt)), block=False)
    async def call(prompt):
        return prompt

    assert asyncio.run(call("x" * 60)) == "x" * 60
    with pytest.raises(RateLimitError):
        asyncio.run(call("x" * 60))  # the tokens refuse: the requests are left as they were
    assert rpm.stats()["in_window"] == 1
    with pytest.raises(ValueError, match="costs must have one cost per limiter"):
        rate_limit(group, cost=[1, 2, 3])


def test_group_members_must_be_distinct_and_of_one_engine(core):
    a = core.TokenBucket(1, 1)
    with pytest.raises(ValueError, match="limiters must be distinct"):
        LimiterGroup([a, a])
    with pytest.raises(TypeError, match="limiters must be limiters a group can decide together"):
        LimiterGroup([a, LimiterGroup([core.TokenBucket(1, 1)])])
    other = importlib.import_module(
        "prodfast._core_py" if core.__name__.endswith("_core") else "prodfast._core"
    )
    with pytest.raises(TypeError, match="limiters must all be in-memory limiters of one backend"):
        LimiterGroup([a, other.TokenBucket(1, 1)])
    g = LimiterGroup(iter([a, core.LeakyBucket(1, 1)]))  # any iterable
    assert len(g) == 2 and g.limiters[0] is a


def test_async_limiter_reads_the_patched_loop_clock():
    """aiolimiter's tests patch loop.time; ``async with`` must see the patched clock too."""
    from unittest import mock

    from prodfast import AsyncLimiter

    async def main():
        limiter = AsyncLimiter(1, 10)
        loop = asyncio.get_running_loop()
        with mock.patch.object(loop, "time", return_value=0.0) as patched:
            async with limiter:
                pass
            assert not limiter.has_capacity()
            patched.return_value = 10.0
            assert limiter.has_capacity()
            async with limiter:
                pass
            assert limiter._level == pytest.approx(1.0)

    asyncio.run(main())


def test_limiters_and_reservations_have_the_protocols_methods(core, clock):
    from prodfast._limiter_protocol import LimiterProtocol, ReservationProtocol

    for lim in (
        core.TokenBucket(1, 5, clock=clock),
        core.LeakyBucket(1, 5, clock=clock),
        core.SlidingWindowLimiter(5, 1, clock=clock),
        LimiterGroup([core.TokenBucket(1, 5, clock=clock)]),
    ):
        assert isinstance(lim, LimiterProtocol), lim
        assert isinstance(lim.reserve(1), ReservationProtocol)
