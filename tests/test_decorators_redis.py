"""cached() over the shared caches of prodfast.redis: the hit on the local tier, cache_info().

The decorator looks in a TieredCache's local tier itself before the shared-cache protocol (what
get_or_compute/aget_or_compute do first); these tests check that such hits never reach Redis,
that invalidation still reaches the decorated function, and that cache_info() works over every
shared cache, sync and async. Single flight across processes: tests/test_redis_cache_workers.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from prodfast._backend import env_flag

REQUIRE = env_flag("PRODFAST_REQUIRE_REDIS")
try:
    import redis
    import redis.asyncio
except ImportError:  # pragma: no cover - depends on the environment
    if REQUIRE:
        raise
    pytest.skip("redis-py is not installed (pip install 'prodfast[redis]')", allow_module_level=True)

import redis_server  # noqa: E402
from redis_server import fast_client_kwargs  # noqa: E402

import prodfast  # noqa: E402
from prodfast import cached  # noqa: E402
from prodfast.redis import AsyncRedisCache, AsyncTieredCache, RedisCache, TieredCache  # noqa: E402

# the Redis test files' one set of fixtures (tests/redis_server.py)
redis_binary, server, client = redis_server.redis_binary, redis_server.server, redis_server.client

BOUND = 1.0  # seconds within which an invalidation reaches the other tiers in these tests


def _ns():
    return f"d{uuid.uuid4().hex[:10]}"


def _eventually(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _remote_reads(tc):
    stats = tc.remote.stats()
    return stats["hits"] + stats["misses"]


def test_hits_on_the_local_tier_never_reach_redis(client):
    with TieredCache(prodfast.LRUCache(100), RedisCache(client, _ns())) as tc:
        calls = []

        @cached(tc, info=True)
        def double(x):
            calls.append(x)
            return 2 * x

        assert double(1) == 2 and calls == [1]
        # the own write's announcement empties the local copy once; then it is refilled
        assert _eventually(lambda: double(1) == 2 and (1,) in tc.local, BOUND)
        # 50 hits in a row on the local tier (on a loaded machine the announcement may come
        # after the refill and empty the local copy once more: then measure again)
        for _attempt in range(3):
            reads = _remote_reads(tc)
            local_hits = tc.stats()["local_hits"]
            hits = double.cache_info().hits
            for _ in range(50):
                assert double(1) == 2
            if _remote_reads(tc) == reads:
                break
        assert _remote_reads(tc) == reads and calls == [1]
        assert tc.stats()["local_hits"] == local_hits + 50
        assert double.cache_info().hits == hits + 50 and double.cache_info().misses == 1
        assert double.cache_info().currsize == 1

        # another writer: the local copy goes, the next call reads the new value from Redis
        RedisCache(client, tc.remote.namespace)[(1,)] = 99
        assert _eventually(lambda: double(1) == 99, BOUND)
        assert calls == [1]

        # keyword arguments and a miss go through the shared protocol
        assert double(x=3) == 6 and calls == [1, 3]
        assert double(x=3) == 6 and calls == [1, 3]


def test_a_miss_is_one_lookup_in_the_local_tier(client, server):
    with TieredCache(prodfast.LRUCache(100), RedisCache(client, _ns())) as tc:

        @cached(tc)
        def f(x):
            return x

        assert f(5) == 5 and f(6) == 6
        assert tc.local.stats()["misses"] == 2 and tc.stats()["misses"] == 2

    async def main():
        c = redis.asyncio.Redis(**fast_client_kwargs(server.port))
        atc = AsyncTieredCache(prodfast.LRUCache(100), AsyncRedisCache(c, _ns()))
        try:

            @cached(atc)
            async def g(x):
                return x

            assert await g(5) == 5 and await g(6) == 6
            assert atc.local.stats()["misses"] == 2 and (await atc.stats())["misses"] == 2
        finally:
            atc.close()
            await c.aclose()

    asyncio.run(main())


def test_with_a_lock_the_shared_protocol_keeps_the_lock(client):
    class Counted:
        def __init__(self):
            self.enters = 0

        def __enter__(self):
            self.enters += 1

        def __exit__(self, *exc):
            pass

    lock = Counted()
    with TieredCache(prodfast.LRUCache(100), RedisCache(client, _ns())) as tc:

        @cached(tc, lock=lock)
        def f(x):
            return x

        assert f(1) == 1 and f(1) == 1 and lock.enters == 2  # one hold per call, hit or miss


def test_cache_info_over_a_redis_cache(client):
    rc = RedisCache(client, _ns())

    @cached(rc, info=True)
    def f(x):
        return x + 1

    assert f(1) == 2 and f(1) == 2
    assert f.cache_info() == (1, 1, None, 1)
    f.cache_clear()
    assert f.cache_info() == (0, 0, None, 0) and len(rc) == 0


def test_async_hits_on_the_local_tier_and_cache_info(server):
    async def main():
        c = redis.asyncio.Redis(**fast_client_kwargs(server.port))
        tc = AsyncTieredCache(prodfast.LRUCache(100), AsyncRedisCache(c, _ns()))
        calls = []
        try:

            @cached(tc, info=True)
            async def embed(text):
                calls.append(text)
                return len(text)

            assert await embed("ab") == 2
            deadline = time.monotonic() + BOUND
            while ("ab",) not in tc.local and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                assert await embed("ab") == 2
            assert ("ab",) in tc.local
            # 20 hits in a row on the local tier (a late invalidation of the cache's own write
            # may drop the first local copy once on a loaded machine: then measure again)
            for _attempt in range(3):
                before = (await tc.remote.stats())["hits"]
                for _ in range(20):
                    assert await embed("ab") == 2
                if (await tc.remote.stats())["hits"] == before:
                    break
            assert (await tc.remote.stats())["hits"] == before and calls == ["ab"]
            info = embed.cache_info()  # no size without a round trip: None, never a coroutine
            assert info.misses == 1 and info.hits >= 20 and info.currsize is None
            assert await embed("abc") == 3 and calls == ["ab", "abc"]
            await embed.cache_clear()
            assert embed.cache_info() == (0, 0, None, None)
            assert await tc.remote.size() == 0
        finally:
            tc.close()
            await c.aclose()

    asyncio.run(main())


def test_cache_info_over_an_async_redis_cache(server):
    async def main():
        c = redis.asyncio.Redis(**fast_client_kwargs(server.port))
        rc = AsyncRedisCache(c, _ns())
        try:

            @cached(rc, info=True)
            async def f(x):
                return x * 10

            assert await f(1) == 10 and await f(1) == 10
            info = f.cache_info()
            assert info == (1, 1, None, None)
            assert all(not asyncio.iscoroutine(v) for v in info)
            await f.cache_clear()
            assert f.cache_info() == (0, 0, None, None) and await rc.size() == 0
        finally:
            await c.aclose()

    asyncio.run(main())
