"""Shared caches (``prodfast.redis``): what a lookup costs on each tier, beside the peers, on one
redis-server.

- ``hit on the local tier``: ``TieredCache.get`` (and ``get_or_compute``, as a decorator calls
  it) served by its local LRUCache, against a plain ``LRUCache.get`` hit (the floor; the goal is
  within 1.3x of it), and redis-py's own client-side cache (RESP3 ``cache_config``, which needs
  Redis 7.4 or later) serving ``GET`` from its local copy plus the unpickling;
- ``hit through cached()``: the same hit through the decorator over a ``TieredCache``, beside
  ``cached(LRUCache)``;
- ``remote hit`` / ``remote miss``: the round trip: ``RedisCache.get``, ``TieredCache.get``
  over a local tier that keeps nothing, and the bare ``client.get`` + ``pickle.loads`` they are
  built on (the floor);
- ``hit (async)`` / ``miss (async)``: ``AsyncTieredCache.get`` (a hit is local),
  ``AsyncRedisCache.get``, cashews (plain Redis backend, and its ``client_side=True`` cache) and
  aiocache's ``RedisCache``.

Every value is a small dict (an embedding of 16 floats and a model name), pickled. Local hits
cycle over ``KEYS`` keys; the local tiers are those of both backends, the decorator and the
Redis client code are the same for both.
"""

from __future__ import annotations

import asyncio
import functools
import pickle
import time
import uuid
import warnings
from collections.abc import Callable, Iterator

from .runner import (
    BACKENDS,
    FLOOR,
    PEER,
    PRODFAST,
    Case,
    Group,
    Missing,
    Settings,
    Timed,
    expect,
    require,
)
from .servers import RedisServer

AREA = "shared-caches"
KEYS = [f"key-{i}" for i in range(10)]
ABSENT = [f"absent-{i}" for i in range(10)]
VALUE = {"embedding": [0.25] * 16, "model": "m"}
CLIENT_SIDE_VERSION = (7, 4)  # the first Redis whose client tracking redis-py's cache uses


def _ns() -> str:
    return f"b{uuid.uuid4().hex[:10]}"


def _client(server: RedisServer, **kwargs):
    redis = require("redis", dist="redis-py")
    return redis.Redis(host="127.0.0.1", port=server.ensure(), **kwargs)


def _lookups(get: Callable, keys: list, n: int) -> Callable[[], None]:
    cycle = [keys[i % len(keys)] for i in range(n)]

    def run() -> None:
        for k in cycle:
            get(k)

    return run


def _values(get: Callable, keys: list, want) -> Callable[[], None]:
    def check() -> None:
        bad = [k for k in keys if get(k) != want]
        expect(not bad, f"{len(bad)} of {len(keys)} lookups did not return {'the value' if want is not None else 'None'}")

    return check


def _warm(tc) -> None:
    """Store the keys and read each until the local tier serves it (its own write's
    invalidation echo has come back by then)."""
    for k in KEYS:
        tc[k] = VALUE
    deadline = time.monotonic() + 5
    while not all(tc.get(k) == VALUE and k in tc.local for k in KEYS):
        if time.monotonic() > deadline:
            raise RuntimeError("the local tier did not fill")
        time.sleep(0.005)


def _remote_calls(tc) -> int:
    s = tc.remote.stats()
    return s["hits"] + s["misses"]


# -- the local tier ------------------------------------------------------------------------


def _plain_hit(module: str, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        cache = require(module, "LRUCache")(1000)
        for k in KEYS:
            cache[k] = VALUE
        return Timed(_lookups(cache.get, KEYS, n), n, _values(cache.get, KEYS, VALUE))

    return setup


def _tiered_hit(server: RedisServer, module: str, n: int, how: str) -> Callable[[], Timed]:
    def setup() -> Timed:
        from prodfast.redis import RedisCache, TieredCache

        client = _client(server)
        tc = TieredCache(require(module, "LRUCache")(1000), RedisCache(client, _ns()))
        _warm(tc)
        if how == "get":
            get = tc.get
        else:  # as a decorator calls it, without a Python frame of the benchmark's own
            get = functools.partial(tc.get_or_compute, compute=dict)
        before = _remote_calls(tc)

        def check() -> None:
            _values(get, KEYS, VALUE)()
            went = _remote_calls(tc) - before
            expect(went == 0, f"{went} lookups went to Redis: not local-tier hits")

        def close() -> None:
            tc.close()
            client.close()

        return Timed(_lookups(get, KEYS, n), n, check, close)

    return setup


def _client_side_hit(server: RedisServer, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        try:
            from redis.cache import CacheConfig
        except ImportError:
            raise Missing("this redis-py has no client-side cache (cache_config)") from None
        if server.version_tuple() < CLIENT_SIDE_VERSION:
            raise Missing(
                f"redis-py's client-side cache needs Redis 7.4 or later; this server is {server.version}"
            )
        client = _client(server, protocol=3, cache_config=CacheConfig())
        keys = [f"{_ns()}:{k}" for k in KEYS]
        for k in keys:
            client.set(k, pickle.dumps(VALUE))
            client.get(k)  # now tracked and cached

        def get(k):
            return pickle.loads(client.get(k))  # the same work: bytes to a value on every hit

        def check() -> None:
            _values(get, keys, VALUE)()
            cached = client.get_cache().size()
            expect(cached >= len(keys), f"the client-side cache holds {cached} of {len(keys)} keys")

        return Timed(_lookups(get, keys, n), n, check, client.close)

    return setup


def _decorated(server: RedisServer | None, module: str, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        cached = require("prodfast", "cached")
        calls: list = []
        client = tc = None
        local = require(module, "LRUCache")(1000)
        if server is None:
            cache = local
        else:
            from prodfast.redis import RedisCache, TieredCache

            client = _client(server)
            tc = cache = TieredCache(local, RedisCache(client, _ns()))

        @cached(cache)
        def lookup(k):
            calls.append(k)
            return VALUE

        for k in KEYS:
            lookup(k)
        if tc is not None:  # wait until the first calls' own writes are announced, then refill
            deadline = time.monotonic() + 5
            while not all((k,) in tc.local for k in KEYS):  # the decorator keys by argument tuple
                if time.monotonic() > deadline:
                    raise RuntimeError("the local tier did not fill")
                for k in KEYS:
                    lookup(k)
                time.sleep(0.005)

        def check() -> None:
            _values(lookup, KEYS, VALUE)()
            expect(sorted(calls) == sorted(KEYS), f"the function ran {len(calls)} times, not {len(KEYS)}")

        def close() -> None:
            if tc is not None:
                tc.close()
            if client is not None:
                client.close()

        return Timed(_lookups(lookup, KEYS, n), n, check, close)

    return setup


# -- the round trip ------------------------------------------------------------------------


def _remote(server: RedisServer, how: str, outcome: str, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        from prodfast import _core_py
        from prodfast.redis import RedisCache, TieredCache

        client = _client(server)
        rc = RedisCache(client, _ns())
        for k in KEYS:
            rc[k] = VALUE
        keys = KEYS if outcome == "hit" else ABSENT
        closing = [client.close]
        if how == "RedisCache.get":
            get = rc.get
        elif how == "client.get + pickle.loads":
            keys = [rc.redis_key(k) for k in keys]

            def get(rk):
                data = client.get(rk)
                return None if data is None else pickle.loads(data)

        else:
            tc = TieredCache(_core_py.LRUCache(0), rc)  # a local tier that keeps nothing
            get = tc.get
            closing.insert(0, tc.close)

        def close() -> None:
            for f in closing:
                f()

        want = VALUE if outcome == "hit" else None
        return Timed(_lookups(get, keys, n), n, _values(get, keys, want), close)

    return setup


# -- asyncio, and the asyncio peers ----------------------------------------------------------


async def _async_getter(lib: str, port: int):
    """(get coroutine function, keys, cleanup coroutine function) with KEYS stored and warmed."""
    url = f"redis://127.0.0.1:{port}/0"
    ns = _ns()
    if lib.startswith("prodfast"):
        redis_asyncio = require("redis.asyncio", dist="redis-py")
        from prodfast.redis import AsyncRedisCache, AsyncTieredCache

        client = redis_asyncio.Redis(host="127.0.0.1", port=port)
        remote = AsyncRedisCache(client, ns)
        for k in KEYS:
            await remote.set(k, VALUE)
        if "AsyncTieredCache" in lib:
            tc = AsyncTieredCache(require(_module_of(lib), "LRUCache")(1000), remote)
            deadline = time.monotonic() + 5
            while not all(k in tc.local for k in KEYS):
                if time.monotonic() > deadline:
                    raise RuntimeError("the local tier did not fill")
                for k in KEYS:
                    await tc.get(k)
                await asyncio.sleep(0.005)

            async def done() -> None:
                tc.close()
                await client.aclose()

            return tc.get, KEYS, done
        return remote.get, KEYS, client.aclose
    if lib.startswith("cashews"):
        cashews = require("cashews")
        cache = cashews.Cache()
        cache.setup(url, client_side="client_side" in lib, prefix=ns)
        await cache.init()
        keys = [f"{ns}:{k}" for k in KEYS]
        for k in keys:
            await cache.set(k, VALUE)
            await cache.get(k)
        return cache.get, keys, cache.close
    aiocache = require("aiocache")
    from aiocache.serializers import PickleSerializer

    cache = aiocache.RedisCache(
        endpoint="127.0.0.1", port=port, namespace=ns, serializer=PickleSerializer()
    )
    for k in KEYS:
        await cache.set(k, VALUE)
    return cache.get, KEYS, cache.close


def _module_of(lib: str) -> str:
    return dict(BACKENDS)["py" if lib.endswith("[py]") else "cy"]


def _async(server: RedisServer, lib: str, outcome: str, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        port = server.ensure()
        loop = asyncio.new_event_loop()
        try:
            get, keys, done = loop.run_until_complete(_async_getter(lib, port))
        except BaseException:
            loop.close()
            raise
        if outcome == "miss":
            keys = [f"{k}-absent" for k in keys]
        cycle = [keys[i % len(keys)] for i in range(n)]
        want = VALUE if outcome == "hit" else None

        async def many() -> None:
            for k in cycle:
                await get(k)

        async def values() -> list:
            return [await get(k) for k in keys]

        def check() -> None:
            got = loop.run_until_complete(values())
            bad = sum(1 for v in got if v != want)
            expect(not bad, f"{bad} of {len(keys)} lookups did not return {'the value' if want else 'None'}")

        def close() -> None:
            try:
                with warnings.catch_warnings():
                    # cashews and aiocache call redis-py's deprecated close() when they shut down
                    warnings.filterwarnings("ignore", "Call to deprecated close", DeprecationWarning)
                    loop.run_until_complete(done())
            finally:
                loop.close()

        return Timed(lambda: loop.run_until_complete(many()), n, check, close)

    return setup


ASYNC_PEERS = ("cashews (redis)", "cashews (client_side)", "aiocache RedisCache")


def groups(settings: Settings) -> Iterator[Group]:
    """The server starts with the first case that needs it and stops at the end."""
    server = RedisServer()
    local = 2 * settings.batch  # lookups per run on a local tier
    remote = min(100, settings.batch)  # lookups per run that make a round trip
    try:
        cases = [Case("prodfast LRUCache.get (plain) [cy]", FLOOR, _plain_hit("prodfast._core", local))]
        for tag, module in BACKENDS:
            if tag == "py":
                cases.append(Case("prodfast LRUCache.get (plain) [py]", PRODFAST, _plain_hit(module, local)))
            cases.append(Case(f"prodfast TieredCache.get [{tag}]", PRODFAST, _tiered_hit(server, module, local, "get")))
            cases.append(
                Case(
                    f"prodfast TieredCache.get_or_compute [{tag}]",
                    PRODFAST,
                    _tiered_hit(server, module, local, "get_or_compute"),
                )
            )
        cases.append(Case("redis-py client-side cache get + unpickle", PEER, _client_side_hit(server, local)))
        yield Group(AREA, "hit on the local tier", cases)

        cases = []
        for tag, module in BACKENDS:
            cases.append(Case(f"prodfast cached(LRUCache) [{tag}]", FLOOR if tag == "cy" else PRODFAST, _decorated(None, module, local)))
            cases.append(Case(f"prodfast cached(TieredCache) [{tag}]", PRODFAST, _decorated(server, module, local)))
        yield Group(AREA, "hit through cached()", cases)

        for outcome in ("hit", "miss"):
            yield Group(
                AREA,
                f"remote {outcome}",
                [
                    Case("client.get + pickle.loads", FLOOR, _remote(server, "client.get + pickle.loads", outcome, remote)),
                    Case("prodfast RedisCache.get", PRODFAST, _remote(server, "RedisCache.get", outcome, remote)),
                    Case(
                        "prodfast TieredCache.get (no local copy)",
                        PRODFAST,
                        _remote(server, "TieredCache", outcome, remote),
                    ),
                ],
            )

        for outcome in ("hit", "miss"):
            libs = [
                *(f"prodfast AsyncTieredCache.get [{tag}]" for tag, _ in BACKENDS),
                "prodfast AsyncRedisCache.get",
                *ASYNC_PEERS,
            ]
            yield Group(
                AREA,
                f"{outcome} (async)",
                [
                    Case(
                        lib,
                        PRODFAST if lib.startswith("prodfast") else PEER,
                        _async(server, lib, outcome, local if "Tiered" in lib and outcome == "hit" else remote),
                    )
                    for lib in libs
                ],
            )
    finally:
        server.close()
