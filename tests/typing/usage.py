"""Typed use of prodfast's public names, checked by ``mypy --strict`` and pyright
(tests/test_typing.py). Every line here must type-check; mistakes.py holds the ones that must not.

Not imported by the test suite: the type checkers read it, and ``assert_type`` states what each
expression's type must be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import assert_type

import prodfast
from prodfast import (
    AsyncLimiter,
    LatencySummary,
    LeakyBucket,
    LRUCache,
    P2Quantile,
    Quantiles,
    RateLimitError,
    RunningStats,
    SlidingWindowLimiter,
    TokenBucket,
    TTLCache,
    parse_rate,
)

# ---- which backend ----------------------------------------------------------------------------

backend: str = prodfast.BACKEND
error: str | None = prodfast.BACKEND_ERROR

# ---- caches: generic in key and value (and the timer's time for TTLCache) ---------------------

lru: LRUCache[str, int] = LRUCache(128)
lru["a"] = 1
assert_type(lru["a"], int)
assert_type(lru.get("a"), int | None)
assert_type(lru.get("a", 0), int)
assert_type(lru.get("a", "none"), int | str)
assert_type(lru.peek("a"), int | None)
assert_type(lru.pop("a"), int)
assert_type(lru.pop("a", None), int | None)
assert_type(lru.setdefault("b", 2), int)
assert_type(lru.popitem(), tuple[str, int])
assert_type(iter(lru), Iterator[str])
assert_type(list(lru.items()), list[tuple[str, int]])
assert_type(lru.maxsize, float)
assert_type(lru.currsize, float)
assert_type(lru.stats(), dict[str, Any])
lru.update({"c": 3})
del lru["c"]
assert_type("a" in lru, bool)
sized = LRUCache[str, bytes](1 << 20, getsizeof=len, on_evict=lambda key, value: None)
sized.set("blob", b"\0" * 10)

ttl = TTLCache[str, list[int], float](100, ttl=30.0, timer=time.monotonic)
ttl["k"] = [1, 2]
assert_type(ttl.get("k"), list[int] | None)
assert_type(ttl.timer(), float)
with ttl.timer as frozen:
    assert_type(frozen, float)
assert_type(ttl.expire(), list[tuple[str, list[int]]])
assert_type(ttl.expire(frozen + 60.0), list[tuple[str, list[int]]])
ttl_by_default: TTLCache[int, str, float] = TTLCache(10, 5.0)

# ---- rate limiters ---------------------------------------------------------------------------

bucket = TokenBucket(rate=10, capacity=20.0, initial=5)
assert_type(bucket.try_acquire(), bool)
assert_type(bucket.try_acquire(2.5), bool)
assert_type(bucket.wait_time(3), float)
assert_type(bucket.acquire(1, timeout=0.5), bool)
assert_type(bucket.acquire_async(1), Awaitable[bool])
assert_type(bucket.rate, float)
assert_type(bucket.simulate(np.arange(10.0)), npt.NDArray[np.bool_])
leaky = LeakyBucket(5, 10, clock=time.monotonic)
assert_type(leaky.try_acquire(1), bool)
window = SlidingWindowLimiter(max_calls=100, window=60)
assert_type(window.max_calls, int)
assert_type(window.wait_time(), float)
window.reset()


async def limited() -> None:
    granted: bool = await bucket.acquire_async(1, timeout=1.0)
    limiter = AsyncLimiter(10, 1.0)
    async with limiter:
        assert_type(limiter.has_capacity(), bool)
    await limiter.acquire()
    assert granted


asyncio.run(limited())
assert_type(parse_rate("100/min"), tuple[int | float, float])
try:
    raise RateLimitError(retry_after=1.5)
except RateLimitError as exc:
    assert_type(exc.retry_after, float)

# ---- streaming statistics --------------------------------------------------------------------

stats = RunningStats()
stats.push(1)
stats.push(2.5)
stats.push(np.float32(3.0))
stats.push_many(np.arange(10.0))
stats.push_many([1, 2, 3])
assert_type(stats.mean, float)
assert_type(stats.count, int)
assert_type(stats + RunningStats(), RunningStats)
median = P2Quantile(0.5)
median.push(4)
assert_type(median.value, float)
quantiles = Quantiles((0.5, 0.99))
assert_type(quantiles.values, dict[float, float])
latency = LatencySummary()
latency.push(0.25)
assert_type(latency.snapshot(), dict[str, float])
