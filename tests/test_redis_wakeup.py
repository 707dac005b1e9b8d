"""A give-back to a Redis limiter made in this process wakes this process's waiters.

The seeded states freeze the scripts' clock (see test_redis.py) and the rates are tiny, so a
waiter's computed wait is ~1000 s: only a wake-up lets it through within the test. A give-back
from another process is seen at the waiter's next decision (not tested: that is the old rule).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from prodfast._backend import env_flag

try:
    import redis  # noqa: F401
    import redis.asyncio  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if env_flag("PRODFAST_REQUIRE_REDIS"):
        raise
    pytest.skip("redis-py is not installed (pip install 'prodfast[redis]')", allow_module_level=True)

import redis_server  # noqa: E402
from test_redis import _new_key, _seed_bucket, _seed_window  # noqa: E402

# the Redis test files' one set of fixtures (tests/redis_server.py)
redis_binary, server = redis_server.redis_binary, redis_server.server
client, aclient = redis_server.client, redis_server.aclient

from prodfast import LimiterGroup  # noqa: E402
from prodfast.redis import (  # noqa: E402
    AsyncRedisTokenBucket,
    RedisSlidingWindow,
    RedisTokenBucket,
)

STUCK = 5.0  # seconds of real time a woken waiter may take


def wait_until(cond):
    pause = threading.Event()
    for _ in range(1000):
        if cond():
            return True
        pause.wait(0.005)
    return cond()


def sleeping(gate):
    return gate.sleepers + len(gate.asleepers) + len(gate.queue) > 0


@pytest.mark.parametrize("give_back", ["settle", "cancel"])
def test_sync_bucket_waiter_is_woken(client, give_back):
    key = _new_key()
    _seed_bucket(client, key, 10.0)
    lim = RedisTokenBucket(client, key, 0.001, 10.0)
    r = lim.reserve(10)
    got = []
    t = threading.Thread(target=lambda: got.append(lim.acquire(4)), daemon=True)
    t.start()
    assert wait_until(lambda: sleeping(lim._gate))
    r.settle(5) if give_back == "settle" else r.cancel()
    t.join(STUCK)
    assert got == [True]


def test_sync_window_waiter_is_woken(client):
    key = _new_key()
    _seed_window(client, key, [])  # one call logged at the frozen "now"
    lim = RedisSlidingWindow(client, key, 3, 1000.0)
    r = lim.reserve(2)
    got = []
    t = threading.Thread(target=lambda: got.append(lim.reserve(1)), daemon=True)
    t.start()
    assert wait_until(lambda: sleeping(lim._gate))
    r.settle(1)
    t.join(STUCK)
    assert len(got) == 1 and got[0].cost == 1


def test_sync_group_waiter_is_woken_by_a_member_give_back(client):
    key = _new_key()
    _seed_bucket(client, key, 10.0)
    tpm = RedisTokenBucket(client, key, 0.001, 10.0)
    group = LimiterGroup([tpm])
    own = tpm.reserve(10)
    got = []
    t = threading.Thread(target=lambda: got.append(group.acquire(4)), daemon=True)
    t.start()
    assert wait_until(lambda: sleeping(group._gate))
    own.settle(6)
    t.join(STUCK)
    assert got == [True]


@pytest.mark.asyncio
async def test_async_bucket_waiter_is_woken(aclient, client):
    key = _new_key()
    _seed_bucket(client, key, 10.0)
    lim = AsyncRedisTokenBucket(aclient, key, 0.001, 10.0)
    r = await lim.reserve(10)
    waiter = asyncio.ensure_future(lim.acquire(4))
    for _ in range(500):
        if sleeping(lim._gate):
            break
        await asyncio.sleep(0.005)
    await r.settle(5)
    assert await asyncio.wait_for(waiter, STUCK) is True
    assert not lim._gate.asleepers


@pytest.mark.asyncio
async def test_async_group_waiter_is_woken_by_a_group_give_back(aclient, client):
    key = _new_key()
    _seed_bucket(client, key, 10.0)
    group = LimiterGroup([AsyncRedisTokenBucket(aclient, key, 0.001, 10.0)])
    gr = await group.reserve(10)
    waiter = asyncio.ensure_future(group.acquire(4))
    for _ in range(500):
        if sleeping(group._gate):
            break
        await asyncio.sleep(0.005)
    await gr.settle(6)
    assert await asyncio.wait_for(waiter, STUCK) is True
    assert not group._gate.asleepers
