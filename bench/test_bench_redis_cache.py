"""Shared caches: what a lookup costs on each tier, beside the peers, on one redis-server.

Groups (one benchmark call makes ``N`` lookups over ``KEYS`` keys; per lookup = median / N):

- ``redis-cache hit, local tier (sync)``: a plain prodfast ``LRUCache.get`` hit (the goal:
  ``TieredCache.get`` within 1.3x of it), ``TieredCache.get`` and ``get_or_compute`` served by
  the local tier, and redis-py's own client-side cache (RESP3 ``cache_config``) serving
  ``GET`` from its local copy;
- ``redis-cache hit through cached() (sync)``: the same hit through the decorator, over a plain
  ``LRUCache`` and over a ``TieredCache``;
- ``redis-cache remote (sync)``: a hit and a miss that need the round trip: ``RedisCache.get``,
  ``TieredCache.get`` over a local tier that keeps nothing, and the bare ``client.get`` +
  ``pickle.loads`` they are built on;
- ``redis-cache hit|miss (async)``: ``AsyncTieredCache.get`` (a hit is local),
  ``AsyncRedisCache.get``, cashews (plain Redis backend and its ``client_side=True`` cache) and
  aiocache's ``RedisCache``, where installed.

The local-tier benchmarks take the ``core`` fixture (the local cache is the backend's); the
remote and peer ones do not depend on the backend.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import pickle
import sys
import time
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from prodfast._backend import env_flag  # noqa: E402

REQUIRE = env_flag("PRODFAST_REQUIRE_REDIS")
try:
    import redis
    import redis.asyncio
except ImportError:  # pragma: no cover - depends on the environment
    if REQUIRE:
        raise
    pytest.skip(
        "redis-py is not installed (pip install 'prodfast[redis]')", allow_module_level=True
    )

from redis_server import RedisServer, find_redis_server  # noqa: E402

from prodfast.redis import AsyncRedisCache, AsyncTieredCache, RedisCache, TieredCache  # noqa: E402

N_LOCAL = 2000
N_REMOTE = 100
KEYS = [f"key-{i}" for i in range(10)]
VALUE = {"embedding": [0.25] * 16, "model": "m"}


@pytest.fixture(scope="module")
def server():
    path = find_redis_server()
    if path is None:
        if REQUIRE:
            pytest.fail("redis-server not found on PATH (PRODFAST_REQUIRE_REDIS=1)")
        pytest.skip("redis-server not found on PATH")
    srv = RedisServer(path)
    srv.start()
    yield srv
    srv.close()


def _ns() -> str:
    return f"b{uuid.uuid4().hex[:10]}"


def _warm(cache, keys=KEYS):
    """Store the keys and read each until it is served locally (the own-write echo has passed)."""
    for k in keys:
        cache[k] = VALUE
    time.sleep(0.02)
    deadline = time.monotonic() + 5
    while not all(cache.get(k) == VALUE and k in cache.local for k in keys):
        if time.monotonic() > deadline:
            raise RuntimeError("the local tier did not fill")
        time.sleep(0.005)


def _lookups(get, keys, n):
    def run():
        for i in range(n):
            get(keys[i % len(keys)])

    return run


# -- the local tier ----------------------------------------------------------------------------


@pytest.mark.parametrize("lib", ["LRUCache.get", "TieredCache.get", "TieredCache.get_or_compute"])
def test_local_hit_prodfast(benchmark, server, core, lib):
    benchmark.group = "redis-cache hit, local tier (sync)"
    client = redis.Redis(host="127.0.0.1", port=server.port)
    if lib == "LRUCache.get":
        plain = core.LRUCache(1000)
        for k in KEYS:
            plain[k] = VALUE
        benchmark(_lookups(plain.get, KEYS, N_LOCAL))
        assert plain.stats()["hits"] >= N_LOCAL
        return
    with TieredCache(core.LRUCache(1000), RedisCache(client, _ns())) as tc:
        _warm(tc)
        if lib == "TieredCache.get":
            get = tc.get
        else:  # as a decorator calls it, without a Python frame of the benchmark's own
            get = functools.partial(tc.get_or_compute, compute=dict)

        before = tc.remote.stats()["hits"] + tc.remote.stats()["misses"]
        benchmark(_lookups(get, KEYS, N_LOCAL))
        assert tc.remote.stats()["hits"] + tc.remote.stats()["misses"] == before  # all local
        assert tc.get(KEYS[0]) == VALUE
    client.close()


@pytest.mark.parametrize("lib", ["cached(LRUCache)", "cached(TieredCache)"])
def test_decorated_hit(benchmark, server, core, lib):
    """A hit through the decorator, the way most code reaches a cache."""
    from prodfast import cached

    benchmark.group = "redis-cache hit through cached() (sync)"
    client = redis.Redis(host="127.0.0.1", port=server.port)
    calls = []
    tc = None
    if lib == "cached(LRUCache)":
        cache = core.LRUCache(1000)
    else:
        tc = cache = TieredCache(core.LRUCache(1000), RedisCache(client, _ns()))

    @cached(cache)
    def lookup(k):
        calls.append(k)
        return VALUE

    for k in KEYS:
        lookup(k)
    if tc is not None:  # wait until the first calls' own writes are announced, then refill
        time.sleep(0.02)
        deadline = time.monotonic() + 5
        while not all((k,) in tc.local for k in KEYS):  # the decorator keys by argument tuple
            if time.monotonic() > deadline:
                raise RuntimeError("the local tier did not fill")
            for k in KEYS:
                lookup(k)
            time.sleep(0.005)
    benchmark(_lookups(lookup, KEYS, N_LOCAL))
    assert sorted(calls) == sorted(KEYS)  # every benchmarked call was a hit
    if tc is not None:
        tc.close()
    client.close()


def test_local_hit_redis_py_client_side_cache(benchmark, server):
    benchmark.group = "redis-cache hit, local tier (sync)"
    try:
        from redis.cache import CacheConfig
    except ImportError:
        pytest.skip("this redis-py has no client-side cache (cache_config)")
    probe = redis.Redis(host="127.0.0.1", port=server.port)
    version = probe.info("server")["redis_version"]
    probe.close()
    if tuple(int(p) for p in version.split(".")[:2]) < (7, 4):
        pytest.skip(f"redis-py's client-side cache needs Redis 7.4 or later; this is {version}")
    client = redis.Redis(host="127.0.0.1", port=server.port, protocol=3, cache_config=CacheConfig())
    ns = _ns()
    keys = [f"{ns}:{k}" for k in KEYS]
    for k in keys:
        client.set(k, pickle.dumps(VALUE))
        client.get(k)  # now tracked and cached

    def get(k):
        return pickle.loads(client.get(k))  # the same work: bytes to a value on every hit

    benchmark(_lookups(get, keys, N_LOCAL))
    assert get(keys[0]) == VALUE
    client.close()


# -- the round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["hit", "miss"])
@pytest.mark.parametrize(
    "lib", ["RedisCache.get", "TieredCache.get (no local copy)", "client.get+pickle"]
)
def test_remote(benchmark, server, lib, outcome):
    benchmark.group = f"redis-cache remote {outcome} (sync)"
    from prodfast import _core_py

    client = redis.Redis(host="127.0.0.1", port=server.port)
    rc = RedisCache(client, _ns())
    keys = KEYS if outcome == "hit" else [f"absent-{i}" for i in range(10)]
    for k in KEYS:
        rc[k] = VALUE
    tc = None
    if lib == "RedisCache.get":
        get = rc.get
    elif lib == "client.get+pickle":
        rkeys = [rc.redis_key(k) for k in keys]
        keys = rkeys

        def get(rk):
            data = client.get(rk)
            return None if data is None else pickle.loads(data)

    else:
        tc = TieredCache(_core_py.LRUCache(0), rc)  # a local tier that keeps nothing
        get = tc.get
    benchmark(_lookups(get, keys, N_REMOTE))
    assert (get(keys[0]) == VALUE) is (outcome == "hit")
    if tc is not None:
        tc.close()
    client.close()


# -- asyncio, and the asyncio peers ------------------------------------------------------------

ASYNC_LIBS = [
    "AsyncTieredCache.get",
    "AsyncRedisCache.get",
    "cashews (redis)",
    "cashews (client_side)",
    "aiocache RedisCache",
]


async def _async_getter(lib, port, core):
    """(get coroutine function, keys, cleanup coroutine) with KEYS stored and warmed."""
    url = f"redis://127.0.0.1:{port}/0"
    ns = _ns()
    if lib.startswith("Async"):
        client = redis.asyncio.Redis(host="127.0.0.1", port=port)
        remote = AsyncRedisCache(client, ns)
        for k in KEYS:
            await remote.set(k, VALUE)
        if lib == "AsyncTieredCache.get":
            tc = AsyncTieredCache(core.LRUCache(1000), remote)
            await asyncio.sleep(0.02)
            for k in KEYS:
                await tc.get(k)
            assert all(k in tc.local for k in KEYS)

            async def done():
                tc.close()
                await client.aclose()

            return tc.get, KEYS, done

        return remote.get, KEYS, client.aclose
    if lib.startswith("cashews"):
        cashews = pytest.importorskip("cashews")
        cache = cashews.Cache()
        cache.setup(url, client_side="client_side" in lib, prefix=ns)
        await cache.init()
        keys = [f"{ns}:{k}" for k in KEYS]
        for k in keys:
            await cache.set(k, VALUE)
            await cache.get(k)
        return cache.get, keys, cache.close
    aiocache = pytest.importorskip("aiocache")
    from aiocache.serializers import PickleSerializer

    cache = aiocache.RedisCache(
        endpoint="127.0.0.1", port=port, namespace=ns, serializer=PickleSerializer()
    )
    for k in KEYS:
        await cache.set(k, VALUE)
    return cache.get, KEYS, cache.close


# cashews and aiocache call redis-py's deprecated close() when they shut down
@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
@pytest.mark.parametrize("outcome", ["hit", "miss"])
@pytest.mark.parametrize("lib", ASYNC_LIBS)
def test_async(benchmark, server, lib, outcome):
    from prodfast import _backend

    benchmark.group = f"redis-cache {outcome} (async)"
    loop = asyncio.new_event_loop()
    try:
        get, keys, done = loop.run_until_complete(_async_getter(lib, server.port, _backend.impl))
        if outcome == "miss":
            keys = [f"{k}-absent" for k in keys]
        n = N_LOCAL if lib == "AsyncTieredCache.get" and outcome == "hit" else N_REMOTE

        async def many():
            for i in range(n):
                await get(keys[i % len(keys)])

        benchmark(lambda: loop.run_until_complete(many()))
        got = loop.run_until_complete(get(keys[0]))
        assert (got == VALUE) is (outcome == "hit")
        loop.run_until_complete(done())
    finally:
        loop.close()
