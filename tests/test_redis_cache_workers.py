"""Bodies of the worker processes that tests/test_redis_cache.py starts (no tests here).

Each function runs in a spawned process of a pool of four; ``init`` gives every worker the
barrier the four of them wait on, so they start a scenario together.
"""

from __future__ import annotations

import asyncio
import statistics
import time

_barrier = None


def init(barrier) -> None:
    global _barrier
    _barrier = barrier


def _client(port):
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)


def _local(backend):
    import importlib

    return importlib.import_module(backend).LRUCache(1000)


def share(port, namespace, backend, index):
    """Write my own key, then read everyone's through a TieredCache (twice: Redis, then local)."""
    from prodfast.redis import RedisCache, TieredCache

    client = _client(port)
    with TieredCache(_local(backend), RedisCache(client, namespace)) as tc:
        tc[f"p{index}"] = {"from": index}
        tc[("shared", index)] = [index] * 3
        _barrier.wait(30)
        first = {i: tc.get(f"p{i}") for i in range(4)}
        second = {i: tc.get(f"p{i}") for i in range(4)}
        tuples = {i: tc.get(("shared", i)) for i in range(4)}
        stats = tc.stats()
    client.close()
    return first, second, tuples, stats["local_hits"]


def watch_invalidations(port, namespace, backend, rounds, bound):
    """Keep key "hot" in the local tier; each round, time when the local copy disappeared,
    from the start and from the return of the writer's set() (``writer:done`` holds both
    time.monotonic() readings: every process on one host reads the same clock)."""
    from prodfast.redis import RedisCache, TieredCache

    client = _client(port)
    delays = []
    with TieredCache(
        _local(backend),
        RedisCache(client, namespace),
        health_interval=bound / 2,
        health_timeout=bound / 2,
    ) as tc:
        for r in range(rounds):
            while not (tc.get("hot") == r and "hot" in tc.local):  # this round's value, local
                time.sleep(0.001)
            _barrier.wait(30)  # the writer now writes r + 1
            deadline = time.monotonic() + 10
            while "hot" in tc.local and time.monotonic() < deadline:
                time.sleep(0.0002)
            gone = time.monotonic()
            _barrier.wait(30)  # the writer has published its time
            started, returned = map(float, client.get(f"{namespace}-writer:done").split())
            delays.append((gone - started, gone - returned))
    client.close()
    return delays


def write_rounds(port, namespace, backend, rounds):
    """The writer of watch_invalidations (worker 0)."""
    from prodfast.redis import RedisCache, TieredCache

    client = _client(port)
    with TieredCache(_local(backend), RedisCache(client, namespace)) as tc:
        tc["hot"] = 0
        for r in range(rounds):
            _barrier.wait(30)
            time.sleep(0.005)  # let the readers settle into their polling loop
            started = time.monotonic()
            tc["hot"] = r + 1
            returned = time.monotonic()
            client.set(f"{namespace}-writer:done", f"{started!r} {returned!r}")
            _barrier.wait(30)
    client.close()
    return None


def invalidation_role(port, namespace, backend, rounds, bound, index):
    if index == 0:
        return write_rounds(port, namespace, backend, rounds)
    return watch_invalidations(port, namespace, backend, rounds, bound)


def _counted(client, namespace, key, pause):
    """A computation that counts its runs in Redis (INCR) and takes ``pause`` seconds."""

    def compute():
        client.incr(f"{namespace}-calls:{key}")
        time.sleep(pause)
        return {"key": key, "pid_free_value": key * 2}

    return compute


def single_flight(port, namespace, backend, kind, keys, pause):
    """All four workers ask for the same cold keys at once; returns what each got."""
    from prodfast.redis import AsyncRedisCache, AsyncTieredCache, RedisCache, TieredCache

    client = _client(port)
    if kind in ("redis", "tiered"):
        remote = RedisCache(client, namespace, lease=5.0)
        cache = TieredCache(_local(backend), remote) if kind == "tiered" else remote
        _barrier.wait(30)
        got = [cache.get_or_compute(k, _counted(client, namespace, k, pause)) for k in keys]
        if kind == "tiered":
            cache.close()
        client.close()
        return got

    import redis.asyncio

    async def main():
        aclient = redis.asyncio.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        remote = AsyncRedisCache(aclient, namespace, lease=5.0)
        cache = AsyncTieredCache(_local(backend), remote) if kind == "atiered" else remote

        def compute_for(k):
            async def compute():
                await aclient.incr(f"{namespace}-calls:{k}")
                await asyncio.sleep(pause)
                return {"key": k, "pid_free_value": k * 2}

            return compute

        await asyncio.get_running_loop().run_in_executor(None, _barrier.wait, 30)
        # every key at once from this process too: tasks and processes share one flight
        got = await asyncio.gather(*(cache.aget_or_compute(k, compute_for(k)) for k in keys))
        if kind == "atiered":
            cache.close()
        await aclient.aclose()
        return list(got)

    result = asyncio.run(main())
    client.close()
    return result


def decorated(port, namespace, backend, kind, keys, pause):
    """``cached(cache)`` on a sync function in four processes (the decorator's delegation)."""
    from prodfast import cached
    from prodfast.redis import RedisCache, TieredCache

    client = _client(port)
    remote = RedisCache(client, namespace, lease=5.0)
    cache = TieredCache(_local(backend), remote) if kind == "tiered" else remote

    @cached(cache)
    def slow_double(k):
        client.incr(f"{namespace}-calls:{k}")
        time.sleep(pause)
        return k * 2

    _barrier.wait(30)
    got = [slow_double(k) for k in keys]
    info = slow_double.cache_info()
    if kind == "tiered":
        cache.close()
    client.close()
    return got, (info.hits, info.misses)


def summary(delays):
    """median and max of a list of seconds, in ms (for the test's report line)."""
    return statistics.median(delays) * 1e3, max(delays) * 1e3
