"""Every limiter in every layer, sync and async: it limits, or the pairing is refused up front.

Limiters: the in-memory ones (both backends), a group of them, the Redis limiters (sync, leased,
async) and groups of those. Layers: ``rate_limit``, ``RateLimitingCallback`` (its hooks),
``CallbackManager`` (``instrument`` and ``track``) and ``LimiterGroup`` (as a member). Each
limiter grants 2 calls and then refuses (no refill during a test): the third call must be
refused with RateLimitError and must not run. A pairing that cannot work (an async-only limiter
on a sync path, a sync-only one on an async path) raises TypeError when it is built (a decorated
function), or for a manager used through ``track``, when the call starts: the call never runs
and the manager counts the refusal as an error.
"""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

import prodfast
from prodfast import LimiterGroup, RateLimitError, rate_limit
from prodfast.monitor import CallbackManager, RateLimitingCallback

pytest.importorskip("redis")
import redis  # noqa: E402
import redis.asyncio  # noqa: E402
import test_redis  # noqa: E402
from test_redis import _fast_client_kwargs, _new_key  # noqa: E402

from prodfast.redis import (  # noqa: E402
    AsyncRedisSlidingWindow,
    AsyncRedisTokenBucket,
    RedisSlidingWindow,
    RedisTokenBucket,
)

redis_binary = test_redis.redis_binary
server = test_redis.server

SLOW = 1e-9  # a refill rate that gives nothing back during a test

IN_MEMORY = ["TokenBucket", "LeakyBucket", "SlidingWindowLimiter", "group"]
REDIS_SYNC = ["RedisTokenBucket", "RedisSlidingWindow", "RedisTokenBucket+lease", "redis group"]
REDIS_ASYNC = [
    "AsyncRedisTokenBucket", "AsyncRedisSlidingWindow", "AsyncRedisTokenBucket+lease",
    "async redis group",
]
ALL = IN_MEMORY + REDIS_SYNC + REDIS_ASYNC


def _sync_works(name):
    return name not in REDIS_ASYNC


def _async_works(name):
    return name not in REDIS_SYNC


def make(name, core, sync_client, async_client):
    """A limiter called ``name`` granting exactly 2 calls of cost 1."""
    if name == "TokenBucket":
        return core.TokenBucket(SLOW, 2)
    if name == "LeakyBucket":
        return core.LeakyBucket(SLOW, 2)
    if name == "SlidingWindowLimiter":
        return core.SlidingWindowLimiter(2, 3600)
    if name == "group":
        return LimiterGroup([core.TokenBucket(SLOW, 5), core.SlidingWindowLimiter(2, 3600)])
    if name == "RedisTokenBucket":
        return RedisTokenBucket(sync_client, _new_key(), SLOW, 2)
    if name == "RedisSlidingWindow":
        return RedisSlidingWindow(sync_client, _new_key(), 2, 3600)
    if name == "RedisTokenBucket+lease":
        return RedisTokenBucket(sync_client, _new_key(), SLOW, 2, lease=2)
    if name == "redis group":
        return LimiterGroup([
            RedisTokenBucket(sync_client, _new_key(), SLOW, 5),
            RedisSlidingWindow(sync_client, _new_key(), 2, 3600),
        ])
    if name == "AsyncRedisTokenBucket":
        return AsyncRedisTokenBucket(async_client, _new_key(), SLOW, 2)
    if name == "AsyncRedisSlidingWindow":
        return AsyncRedisSlidingWindow(async_client, _new_key(), 2, 3600)
    if name == "AsyncRedisTokenBucket+lease":
        return AsyncRedisTokenBucket(async_client, _new_key(), SLOW, 2, lease=2)
    assert name == "async redis group"
    return LimiterGroup([
        AsyncRedisTokenBucket(async_client, _new_key(), SLOW, 5),
        AsyncRedisSlidingWindow(async_client, _new_key(), 2, 3600),
    ])


def partner(lim, core, sync_client, async_client):
    """A roomy limiter that can share a LimiterGroup with ``lim``."""
    if lim.limiter_kind == "both":
        return core.TokenBucket(SLOW, 100)
    if lim.limiter_kind == "sync":
        return RedisTokenBucket(lim._client, _new_key(), SLOW, 100)
    return AsyncRedisTokenBucket(lim._client, _new_key(), SLOW, 100)


@pytest.fixture
def clients(server):
    sync_client = redis.Redis(**_fast_client_kwargs(server.port))
    async_client = redis.asyncio.Redis(**_fast_client_kwargs(server.port))
    yield sync_client, async_client
    sync_client.close()


# ---- sync call paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_rate_limit_sync(core, clients, name):
    lim = make(name, core, *clients)
    ran = []

    def call(i):
        ran.append(i)

    if not _sync_works(name):
        with pytest.raises(TypeError, match="async-only"):
            rate_limit(lim, block=False)(call)
        return
    limited = rate_limit(lim, block=False)(call)
    limited(1)
    limited(2)
    with pytest.raises(RateLimitError):
        limited(3)
    assert ran == [1, 2]


@pytest.mark.parametrize("name", ALL)
def test_callback_hooks_sync(core, clients, name):
    lim = make(name, core, *clients)
    gate = RateLimitingCallback(bucket=lim, block=False)
    if not _sync_works(name):
        assert gate.call_paths == {"async"}
        with pytest.raises(TypeError, match="async-only"):
            gate.on_llm_start("m", "p")
        return
    gate.on_llm_start("m", "p")
    gate.on_llm_start("m", "p")
    with pytest.raises(RateLimitError):
        gate.on_llm_start("m", "p")


@pytest.mark.parametrize("name", ALL)
def test_manager_sync(core, clients, name):
    lim = make(name, core, *clients)
    manager = CallbackManager([RateLimitingCallback(bucket=lim, block=False)])
    ran = []

    def call(i):
        ran.append(i)

    if not _sync_works(name):  # refused when decorated, or when the call starts: never run
        with pytest.raises(TypeError, match="async-only"):
            manager.instrument(model="m")(call)
        with pytest.raises(TypeError, match="async-only"):
            with manager.track("m"):
                ran.append("ran")
        assert ran == []
        assert manager.metrics()["errors_by_type"] == {"TypeError": 1}
        return
    instrumented = manager.instrument(model="m")(call)
    instrumented(1)
    with manager.track("m"):
        ran.append(2)
    with pytest.raises(RateLimitError):
        instrumented(3)
    with pytest.raises(RateLimitError):
        with manager.track("m"):
            ran.append(4)
    assert ran == [1, 2]
    assert manager.metrics()["errors_by_type"] == {"RateLimitError": 2}


@pytest.mark.parametrize("name", [n for n in ALL if "group" not in n])
def test_group_member_sync(core, clients, name):
    lim = make(name, core, *clients)
    group = LimiterGroup([partner(lim, core, *clients), lim])
    if not _sync_works(name):
        assert group.limiter_kind == "async"
        with pytest.raises(TypeError, match="async-only"):
            rate_limit(group)(lambda: None)
        return
    assert [group.try_acquire(), group.try_acquire(), group.try_acquire()] == [True, True, False]


# ---- async call paths --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def aclients(server):
    sync_client = redis.Redis(**_fast_client_kwargs(server.port))
    async_client = redis.asyncio.Redis(**_fast_client_kwargs(server.port))
    yield sync_client, async_client
    sync_client.close()
    await async_client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ALL)
async def test_rate_limit_async(core, aclients, name):
    lim = make(name, core, *aclients)
    ran = []

    async def call(i):
        ran.append(i)

    if not _async_works(name):
        with pytest.raises(TypeError, match="sync-only"):
            rate_limit(lim, block=False)(call)
        return
    for block in (False, True):
        if block:
            lim = make(name, core, *aclients)
        limited = rate_limit(lim, block=block)(call)
        await limited(1)
        await limited(2)
        if block:  # waits for a refill that does not come in time
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(limited(3), 0.05)
        else:
            with pytest.raises(RateLimitError):
                await limited(3)
    assert ran == [1, 2, 1, 2]


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ALL)
async def test_callback_hooks_async(core, aclients, name):
    lim = make(name, core, *aclients)
    gate = RateLimitingCallback(bucket=lim, block=False)
    if not _async_works(name):
        assert gate.call_paths == {"sync"}
        with pytest.raises(TypeError, match="sync-only"):
            await gate.on_llm_start_async("m", "p")
        return
    await gate.on_llm_start_async("m", "p")
    await gate.on_llm_start_async("m", "p")
    with pytest.raises(RateLimitError):
        await gate.on_llm_start_async("m", "p")


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ALL)
async def test_manager_async(core, aclients, name):
    lim = make(name, core, *aclients)
    manager = CallbackManager([RateLimitingCallback(bucket=lim, block=False)])
    ran = []

    async def call(i):
        ran.append(i)

    if not _async_works(name):  # refused when decorated, or when the call starts: never run
        with pytest.raises(TypeError, match="sync-only"):
            manager.instrument(model="m")(call)
        with pytest.raises(TypeError, match="sync-only"):
            async with manager.track("m"):
                ran.append("ran")
        assert ran == []
        assert manager.metrics()["errors_by_type"] == {"TypeError": 1}
        return
    instrumented = manager.instrument(model="m")(call)
    await instrumented(1)
    async with manager.track("m"):
        ran.append(2)
    with pytest.raises(RateLimitError):
        await instrumented(3)
    with pytest.raises(RateLimitError):
        async with manager.track("m"):
            ran.append(4)
    assert ran == [1, 2]
    assert manager.metrics()["errors_by_type"] == {"RateLimitError": 2}


@pytest.mark.asyncio
@pytest.mark.parametrize("name", [n for n in ALL if "group" not in n])
async def test_group_member_async(core, aclients, name):
    lim = make(name, core, *aclients)
    group = LimiterGroup([partner(lim, core, *aclients), lim])
    if group.limiter_kind == "sync":
        with pytest.raises(TypeError, match="sync-only"):
            rate_limit(group)(_coroutine_function)
        return
    if group.limiter_kind == "async":
        got = [await group.try_acquire(), await group.try_acquire(), await group.try_acquire()]
    else:
        got = [await group.acquire_async(timeout=0) for _ in range(3)]
    assert got == [True, True, False]


async def _coroutine_function():
    return None


def test_every_layer_accepts_the_protocol_kinds():
    assert {prodfast.TokenBucket.limiter_kind, RedisTokenBucket.limiter_kind,
            AsyncRedisTokenBucket.limiter_kind} == {"both", "sync", "async"}
