"""Mistakes a type checker must flag: each line marked ``# mistake`` must get an error from
both mypy --strict and pyright, and no other line may (tests/test_typing.py)."""

from __future__ import annotations

import time

from prodfast import (
    LatencySummary,
    LRUCache,
    P2Quantile,
    Quantiles,
    RunningStats,
    SlidingWindowLimiter,
    TokenBucket,
    TTLCache,
    parse_rate,
)

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
