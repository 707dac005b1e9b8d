"""Mistakes a type checker must flag: each line marked ``# mistake`` must get an error from
both mypy --strict and pyright, and no other line may (tests/test_typing.py)."""

from __future__ import annotations

import time
from typing import Any

from prodfast import (
    AsyncLimiter,
    CallbackManager,
    FIFOCache,
    LatencySummary,
    LimiterGroup,
    LRUCache,
    P2Quantile,
    ProviderReport,
    Quantiles,
    QuantileSketch,
    RunningStats,
    SlidingWindowLimiter,
    TLRUCache,
    TokenBucket,
    TTLCache,
    cached,
    keys,
    lru_cache,
    parse_rate,
    rate_limit,
)
from prodfast.compat.cachetools import func
from prodfast.integrations.prometheus import PrometheusCollector
from prodfast.redis import AsyncRedisTokenBucket, RedisCache, RedisTokenBucket

cache: LRUCache[str, int] = LRUCache(10)
cache["b"] = "x"  # mistake
cache[1] = 1  # mistake
missing_is_none: int = cache.get("a")  # mistake
popped: str = cache.pop("a")  # mistake
LRUCache[str, int]("ten")  # mistake
LRUCache[str, int](10, getsizeof="len")  # mistake
LRUCache[str, int](10, None, None)  # mistake
timed = TTLCache[str, int, float](10, 1.0, time.monotonic)
timed.expire("now")  # mistake
stamp: str = timed.timer()  # mistake
TokenBucket(1, 2).try_acquire("1")  # mistake
TokenBucket(1, 2, clock=time.monotonic())  # mistake
TokenBucket(1)  # mistake
allowed: str = SlidingWindowLimiter(10, 1.0).try_acquire()  # mistake
RunningStats().push("3")  # mistake
mean: str = RunningStats().mean  # mistake
P2Quantile()  # mistake
Quantiles().values["p50"]  # mistake
LatencySummary().snapshot()["p50"].upper()  # mistake
parse_rate(100)  # mistake
fifo: FIFOCache[str, int] = FIFOCache(10)
fifo["k"] = b"v"  # mistake
TLRUCache[str, int, float](10, ttu=lambda key: 1.0)  # mistake
QuantileSketch().quantile("p99")  # mistake
TokenBucket(1, 2).reserve(1).settle("all")  # mistake

# limiter groups and rate_limit: costs are numbers, one per member or one for all
rpm, tpm = TokenBucket(10, 10), TokenBucket(1000, 1000)
group = LimiterGroup([rpm, tpm])
group.try_acquire("1")  # mistake
group.acquire([1, "1200"])  # mistake
group.reserve([1, 10]).settle("all")  # mistake
granted: str = group.try_acquire([1, 10])  # mistake
group.observe({}).retry_after = 0.0  # mistake
ProviderReport(limits={"requests": 500})  # mistake
rate_limit(rpm, cost="3")  # mistake
AsyncLimiter("10")  # mistake


@rate_limit(group, cost=lambda prompt: [1, len(prompt)])
def ask(prompt: str) -> str:
    return prompt


ask(42)  # mistake
answer: int = ask("hi")  # mistake

# decorators keep the function's signature
@cached(LRUCache[Any, int](10))
def double(x: int) -> int:
    return 2 * x


double("2")  # mistake
double.cache_info()  # mistake


@lru_cache(maxsize=10)
def triple(x: int) -> int:
    return 3 * x


triple(1, 2)  # mistake
keys.hashkey([1, 2])  # mistake


@func.ttl_cache(maxsize=10, ttl=60)
def quadruple(x: int) -> int:
    return 4 * x


quadruple(x="4")  # mistake

# monitoring
manager = CallbackManager(raise_errors="yes")  # mistake
manager.track(42)  # mistake
with manager.track("gpt-4o") as run:
    run.set_result("done")  # mistake


@manager.instrument(model="gpt-4o")
def chat(prompt: str) -> str:
    return prompt


chat(prompt=1)  # mistake
PrometheusCollector("manager")  # mistake

# Redis (never run: type-checked only)
def shared(client: Any) -> None:
    RedisCache(client, 1)  # mistake
    RedisTokenBucket(client, "rpm", rate="10", capacity=20)  # mistake


async def shared_async(client: Any) -> None:  # an async group's methods must be awaited
    group = LimiterGroup([AsyncRedisTokenBucket(client, "tpm", rate=10, capacity=20)])
    allowed_now: bool = group.try_acquire(1)  # mistake
    assert allowed_now
    group.acquire(1)  # mistake
    with group.reserve(1) as held:  # mistake
        assert held
    (await group.reserve(1)).settle(1)  # mistake
    assert group.observe({"retry-after": "1"}, status=429).retry_after  # mistake
