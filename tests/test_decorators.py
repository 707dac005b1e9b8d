"""lru_cache and cached over the active backend: sync and async."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random

import cachetools
import pytest

import prodfast
from conftest import FakeClock
from prodfast import cached, lru_cache
from prodfast.decorators import CacheInfo

# ---------------------------------------------------------------- lru_cache, sync


def test_bare_and_called_forms():
    @lru_cache
    def double(x):
        """Twice x."""
        return 2 * x

    @lru_cache(maxsize=4, typed=True)
    def triple(x):
        return 3 * x

    assert double(2) == 4 and double(2) == 4
    assert double.cache_info() == CacheInfo(1, 1, 128, 1)
    assert double.__name__ == "double" and double.__doc__ == "Twice x."
    assert double.__wrapped__(5) == 10
    assert triple(1) == 3 and triple(1.0) == 3.0
    assert triple.cache_info() == CacheInfo(0, 2, 4, 2)
    assert double.cache_parameters() == {"maxsize": 128, "typed": False, "ttl": None}
    assert triple.cache_parameters() == {"maxsize": 4, "typed": True, "ttl": None}
    assert isinstance(double.cache, prodfast.LRUCache)


@pytest.mark.parametrize("maxsize", [1, 3, 10, None])
@pytest.mark.parametrize("typed", [False, True])
def test_parity_with_functools(maxsize, typed):
    calls = {"ours": 0, "ref": 0}

    def make(name):
        def f(*args, **kwargs):
            calls[name] += 1
            return (args, tuple(kwargs.items()))

        return f

    ours = lru_cache(maxsize=maxsize, typed=typed)(make("ours"))
    ref = functools.lru_cache(maxsize=maxsize, typed=typed)(make("ref"))
    rng = random.Random(maxsize or 0)
    for _ in range(600):
        r = rng.random()
        a = rng.randrange(6)
        if r < 0.3:
            args, kwargs = (a,), {}
        elif r < 0.45:
            # functools' untyped key keeps f(1) and f(1.0) apart by accident (its int/str
            # fast path); ours treats them as the equal calls they are: compare typed only
            args, kwargs = ((float(a),) if typed else (-a,)), {}
        elif r < 0.6:
            args, kwargs = (str(a),), {}
        elif r < 0.75:
            args, kwargs = (a, a % 2), {}
        elif r < 0.85:
            args, kwargs = (), {"x": a, "y": 1}
        elif r < 0.95:
            args, kwargs = (), {"y": 1, "x": a}
        else:
            args, kwargs = ((a,),), {}
        assert ours(*args, **kwargs) == ref(*args, **kwargs)
        info, rinfo = ours.cache_info(), ref.cache_info()
        assert (info.hits, info.misses, info.currsize) == (rinfo.hits, rinfo.misses, rinfo.currsize)
    assert calls["ours"] == calls["ref"]
    assert ours.cache_info().maxsize == maxsize


def test_untyped_merges_equal_arguments_typed_separates():
    @lru_cache
    def f(x):
        return type(x)

    @lru_cache(typed=True)
    def g(x):
        return type(x)

    assert f(1) is int and f(1.0) is int and f(True) is int
    assert f.cache_info().currsize == 1
    assert g(1) is int and g(1.0) is float and g(True) is bool
    assert g.cache_info().currsize == 3
    assert f((1,)) is tuple and f.cache_info().currsize == 2


def test_maxsize_zero_caches_nothing():
    n = []

    @lru_cache(maxsize=0)
    def f(x):
        n.append(x)
        return x

    f(1)
    f(1)
    assert n == [1, 1]
    assert f.cache_info() == CacheInfo(0, 2, 0, 0)


def test_cache_clear():
    @lru_cache(maxsize=2)
    def f(x):
        return x

    f(1)
    f(1)
    f.cache_clear()
    assert f.cache_info() == CacheInfo(0, 0, 2, 0)
    f(1)
    assert f.cache_info() == CacheInfo(0, 1, 2, 1)


def test_ttl_with_fake_timer():
    clock = FakeClock()
    n = []

    @lru_cache(maxsize=10, ttl=5, timer=clock)
    def f(x):
        n.append(x)
        return len(n)

    assert f(1) == 1 and f(1) == 1
    clock.tick(4.999)
    assert f(1) == 1
    clock.tick(0.001)
    assert f(1) == 2  # expired at age 5: recomputed
    assert f.cache_info() == CacheInfo(2, 2, 10, 1)
    assert f.cache_parameters()["ttl"] == 5
    assert isinstance(f.cache, prodfast.TTLCache)


def test_exceptions_are_not_cached():
    n = []

    @lru_cache
    def flaky(x):
        n.append(x)
        if len(n) == 1:
            raise ValueError("first call fails")
        return x

    with pytest.raises(ValueError):
        flaky(1)
    assert flaky(1) == 1 and flaky(1) == 1
    assert len(n) == 2


def test_bad_arguments():
    with pytest.raises(TypeError, match="maxsize"):
        lru_cache(maxsize="big")
    with pytest.raises(ValueError, match="ttl"):
        lru_cache(ttl=0)
    with pytest.raises(TypeError, match="typed"):
        lru_cache(typed="yes")
    with pytest.raises(TypeError, match="cache must not be None"):
        cached(None)
    with pytest.raises(TypeError, match="key"):
        cached({}, key=3)


def test_negative_maxsize_is_zero_as_in_functools():
    ours = lru_cache(maxsize=-1)(lambda x: x)
    ref = functools.lru_cache(maxsize=-1)(lambda x: x)
    for f in (ours, ref):
        assert f(1) == 1 and f(1) == 1
    assert ours.cache_info() == ref.cache_info() == (0, 2, 0, 0)


def test_unhashable_arguments_raise():
    @lru_cache
    def f(x):
        return x

    with pytest.raises(TypeError, match="unhashable"):
        f([1])


# ---------------------------------------------------------------- cached, sync


@pytest.mark.parametrize(
    "make_cache",
    [lambda: prodfast.LRUCache(2), lambda: prodfast.TTLCache(2, 60), dict,
     lambda: cachetools.LRUCache(2)],
    ids=["lru", "ttl", "dict", "cachetools"],
)
def test_cached_over_any_cache(make_cache):
    cache = make_cache()
    n = []

    @cached(cache)
    def f(x, y=0):
        n.append((x, y))
        return x + y

    assert f(1) == 1 and f(1) == 1 and f(1, y=2) == 3 and f(1, y=2) == 3
    assert n == [(1, 0), (1, 2)]
    assert f.cache is cache
    f.cache_clear()
    assert len(cache) == 0


def test_cached_counts_in_cache_stats_and_custom_key():
    cache = prodfast.LRUCache(10)

    @cached(cache, key=lambda x, scale=1: x, info=True)
    def f(x, scale=1):
        return x * scale

    assert f(2) == 2
    assert f(2, scale=5) == 2  # same key: served from the cache
    s = cache.stats()
    assert (s["hits"], s["misses"]) == (1, 1)
    assert f.cache_info() == CacheInfo(1, 1, 10, 1)
    assert f.cache_key(2, scale=9) == 2


# ---------------------------------------------------------------- async


def test_async_result_cached_and_calls_shared():
    calls = []

    @lru_cache(maxsize=8)
    async def fetch(x):
        calls.append(x)
        await asyncio.sleep(0.01)
        return x * 10

    async def main():
        results = await asyncio.gather(*[fetch(1) for _ in range(10)], fetch(2))
        assert results == [10] * 10 + [20]
        assert await fetch(1) == 10

    asyncio.run(main())
    assert calls == [1, 2]
    info = fetch.cache_info()
    assert (info.hits, info.misses, info.currsize) == (10, 2, 2)  # 9 joiners + 1 later hit


def test_async_cancelling_one_caller_does_not_cancel_the_call():
    started, finished = [], []

    @lru_cache
    async def slow(x):
        started.append(x)
        await asyncio.sleep(0.05)
        finished.append(x)
        return x + 1

    async def main():
        first = asyncio.ensure_future(slow(1))
        second = asyncio.ensure_future(slow(1))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await second == 2
        assert await slow(1) == 2

    asyncio.run(main())
    assert started == [1] and finished == [1]


def test_async_owner_cancelled_alone_still_caches():
    calls = []

    @lru_cache
    async def slow(x):
        calls.append(x)
        await asyncio.sleep(0.02)
        return x

    async def main():
        t = asyncio.ensure_future(slow(3))
        await asyncio.sleep(0.005)
        t.cancel()
        await asyncio.sleep(0.05)  # the shared call runs to completion and stores its result
        assert await slow(3) == 3

    asyncio.run(main())
    assert calls == [3]


def test_async_exceptions_not_cached_and_shared_by_joiners():
    calls = []

    @lru_cache
    async def flaky(x):
        calls.append(x)
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise KeyError("first")
        return x

    async def main():
        results = await asyncio.gather(flaky(1), flaky(1), return_exceptions=True)
        assert all(isinstance(r, KeyError) for r in results)
        assert await flaky(1) == 1
        assert await flaky(1) == 1

    asyncio.run(main())
    assert calls == [1, 1]


def test_async_cached_with_ttl_and_custom_cache():
    clock = FakeClock()
    cache = prodfast.TTLCache(4, 10, timer=clock)
    calls = []

    @cached(cache)
    async def get(x):
        calls.append(x)
        return [x]

    async def main():
        a = await get(1)
        assert await get(1) is a
        clock.tick(10)
        assert await get(1) is not a

    asyncio.run(main())
    assert calls == [1, 1]
    assert inspect.iscoroutinefunction(get)


def test_async_works_across_event_loops():
    @lru_cache
    async def f(x):
        await asyncio.sleep(0)
        return x

    assert asyncio.run(f(1)) == 1
    assert asyncio.run(f(1)) == 1
    assert f.cache_info().hits == 1


def test_recursive_function():
    @lru_cache(maxsize=None)
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(80) == 23416728348467685
    info = fib.cache_info()
    assert (info.misses, info.currsize) == (81, 81)
    assert info.hits == 78


def test_methods_and_async_wrapper_attributes():
    class Svc:
        def __init__(self):
            self.calls = 0

        @lru_cache(maxsize=4)
        def area(self, r):
            self.calls += 1
            return r * r

        @lru_cache(ttl=30)
        async def fetch(self, r):
            """Fetch r."""
            return r

    s = Svc()
    assert s.area(3) == 9 and s.area(3) == 9 and s.calls == 1
    assert Svc.fetch.__doc__ == "Fetch r." and Svc.fetch.__name__ == "fetch"
    assert inspect.iscoroutinefunction(Svc.fetch.__wrapped__)
    assert asyncio.run(s.fetch(2)) == 2
    assert Svc.fetch.cache_parameters() == {"maxsize": 128, "typed": False, "ttl": 30}
