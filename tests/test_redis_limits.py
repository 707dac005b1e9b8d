"""Redis limiters beyond one decision: reservations, provider headers, groups, leases.

Against the real redis-server of test_redis.py's fixtures.  Exact checks freeze the scripts'
clock by seeding state an hour ahead of the server's TIME (see test_redis.py), so no token
refills and every call of a window lands at one "now".
"""

from __future__ import annotations

import math
import pathlib
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prodfast._backend import env_flag

try:
    import redis
    import redis.asyncio
except ImportError:  # pragma: no cover - depends on the environment
    if env_flag("PRODFAST_REQUIRE_REDIS"):
        raise
    pytest.skip("redis-py is not installed (pip install 'prodfast[redis]')", allow_module_level=True)

import redis_server  # noqa: E402
import test_redis  # noqa: E402
from redis_server import fast_client_kwargs as _fast_client_kwargs  # noqa: E402
from test_redis import (  # noqa: E402
    _new_key,
    _seed_bucket,
    _seed_window,
    _server_us,
)

from prodfast import (  # noqa: E402
    AsyncGroupReservation,
    AsyncLimiterGroup,
    LimiterGroup,
    RateLimitError,
)
from prodfast._rl_headers import RateLimitHeaderWarning  # noqa: E402
from prodfast.redis import (  # noqa: E402
    AsyncRedisSlidingWindow,
    AsyncRedisTokenBucket,
    BackendUnavailable,
    RedisReservation,
    RedisSlidingWindow,
    RedisTokenBucket,
)

# the Redis test files' one set of fixtures (tests/redis_server.py), and test_redis's workers
redis_binary, server, own_server = redis_server.redis_binary, redis_server.server, redis_server.own_server
client, aclient = redis_server.client, redis_server.aclient
workers = test_redis.workers


def _tokens(client, key) -> float:
    return float(client.hget(key, "tokens"))


# ---- reserve, settle, cancel ------------------------------------------------------------------


def test_token_bucket_settle_gives_back_or_takes_the_difference(client):
    key = _new_key()
    _seed_bucket(client, key, 10.0)  # frozen: no refill
    lim = RedisTokenBucket(client, key, 2.0, 10.0)
    r = lim.reserve(6)
    assert isinstance(r, RedisReservation) and r.cost == 6.0 and not r.settled
    assert _tokens(client, key) == 4.0
    r.settle(2)  # used less: 4 back
    assert r.settled and _tokens(client, key) == 8.0
    with pytest.raises(RuntimeError, match="reservation already settled"):
        r.settle(1)
    with pytest.raises(RuntimeError, match="reservation already settled"):
        r.cancel()
    debt = lim.reserve(8)
    debt.settle(20)  # used more than the capacity: the bucket goes negative
    assert _tokens(client, key) == -12.0
    assert lim.try_acquire(1) is False
    assert lim.wait_time(1) == pytest.approx(13 / 2.0)
    assert lim.stats()["allowed"] == 2 and lim.stats()["denied"] == 1


def test_token_bucket_give_back_never_above_capacity(client):
    key = _new_key()
    _seed_bucket(client, key, 10.0)
    lim = RedisTokenBucket(client, key, 1.0, 10.0)
    r = lim.reserve(5)
    client.hset(key, "tokens", "9")  # someone else's refund, or a refill, meanwhile
    r.cancel()
    assert _tokens(client, key) == 10.0  # never more than the bucket would have had


def test_settle_checks_actual_first_and_changes_nothing(client):
    key = _new_key()
    _seed_bucket(client, key, 10.0)
    lim = RedisTokenBucket(client, key, 1.0, 10.0)
    r = lim.reserve(3)
    for bad, exc in [(-1, ValueError), (math.nan, ValueError), (math.inf, ValueError), ("2", TypeError)]:
        with pytest.raises(exc, match="actual"):
            r.settle(bad)
    assert not r.settled and _tokens(client, key) == 7.0
    with lim.reserve(2) as inner:
        inner.settle(1)
    assert _tokens(client, key) == 6.0
    with lim.reserve(2):
        pass  # leaving without settling keeps the estimate
    assert _tokens(client, key) == 4.0


def test_reserve_waits_like_acquire_and_refuses_past_the_timeout(client):
    key = _new_key()
    _seed_bucket(client, key, 1.0)
    lim = RedisTokenBucket(client, key, 0.5, 10.0)
    with pytest.raises(RateLimitError) as info:
        lim.reserve(5, timeout=1.0)
    assert info.value.retry_after == pytest.approx(8.0)
    with pytest.raises(RateLimitError):
        lim.reserve(2, timeout=0)  # decide once
    assert _tokens(client, key) == 1.0
    assert lim.stats()["denied"] == 2
    fresh = RedisTokenBucket(client, _new_key(), 50.0, 1.0)
    fresh.reserve(1)
    t0 = time.monotonic()
    fresh.reserve(1, timeout=1.0)  # waits ~20 ms for the refill
    assert 0.005 < time.monotonic() - t0 < 1.0


def test_window_settle_gives_back_calls_and_never_logs_more(client):
    key = _new_key()
    _seed_window(client, key, [])  # one call at a frozen "now"
    lim = RedisSlidingWindow(client, key, 6, 60.0)
    r = lim.reserve(4)
    assert client.zcard(key) == 5
    with pytest.raises(ValueError, match="exceeds the 4 calls reserved"):
        r.settle(5)
    with pytest.raises(ValueError, match="whole number"):
        r.settle(1.5)
    r.settle(1)
    assert client.zcard(key) == 2
    # the same frozen microsecond again: new members never collide with the remaining ones
    assert lim.try_acquire(4) is True
    assert client.zcard(key) == 6 and lim.try_acquire() is False
    members = client.zrange(key, 0, -1)
    assert len(set(members)) == 6
    c = lim.reserve(0)
    c.cancel()
    assert client.zcard(key) == 6


def test_window_give_back_of_calls_that_left_the_window_adds_nothing(client):
    lim = RedisSlidingWindow(client, _new_key(), 2, 0.05)
    r = lim.reserve(2)
    time.sleep(0.08)
    assert lim.try_acquire(2)
    r.cancel()  # its calls are gone already: the two new ones still count
    assert lim.try_acquire() is False


def test_settle_during_an_outage_raises_and_stays_open(own_server):
    c = redis.Redis(**_fast_client_kwargs(own_server.port, timeout=0.5))
    try:
        lim = RedisTokenBucket(c, "k", 1.0, 10.0, on_error="allow")
        r = lim.reserve(4)
        own_server.stop()
        with pytest.raises(BackendUnavailable):
            r.settle(1)
        assert not r.settled
        granted_blind = lim.reserve(4)  # on_error="allow": granted, nothing taken
        granted_blind.settle(1)  # nothing to adjust on the server
        assert granted_blind.settled
    finally:
        c.close()


@pytest.mark.asyncio
async def test_async_reservations(aclient, client):
    key = _new_key()
    _seed_bucket(client, key, 10.0)
    lim = AsyncRedisTokenBucket(aclient, key, 1.0, 10.0)
    r = await lim.reserve(6)
    await r.settle(1)
    assert _tokens(client, key) == 9.0
    async with await lim.reserve_async(3) as r2:
        await r2.cancel()
    assert _tokens(client, key) == 9.0
    with pytest.raises(RateLimitError):
        await lim.reserve(10, timeout=0)
    wkey = _new_key()
    _seed_window(client, wkey, [])
    win = AsyncRedisSlidingWindow(aclient, wkey, 3, 60.0)
    r3 = await win.reserve(2)
    await r3.settle(0)
    assert client.zcard(wkey) == 1


# ---- provider headers ------------------------------------------------------------------------

OPENAI = {
    "x-ratelimit-limit-requests": "100",
    "x-ratelimit-remaining-requests": "3",
    "x-ratelimit-reset-requests": "30s",
    "x-ratelimit-limit-tokens": "10000",
    "x-ratelimit-remaining-tokens": "50",
    "x-ratelimit-reset-tokens": "1m0s",
}


def test_observed_budget_holds_every_worker(server, client):
    key = _new_key()
    other = redis.Redis(**_fast_client_kwargs(server.port))  # a second worker
    try:
        a = RedisTokenBucket(client, key, 1000.0, 1000.0)
        b = RedisTokenBucket(other, key, 1000.0, 1000.0)
        report = a.observe(OPENAI)
        assert report.limits["requests"].remaining == 3
        assert [a.try_acquire(), b.try_acquire(), b.try_acquire(), a.try_acquire()] == [
            True, True, True, False,
        ]
        assert 29.0 < b.wait_time() <= 30.0
        tokens = RedisTokenBucket(client, _new_key(), 1000.0, 1000.0)
        tokens.observe(OPENAI, resource="tokens")
        assert tokens.try_acquire(50) and not tokens.try_acquire(1)
        assert 59.0 < tokens.wait_time(1) <= 60.0
    finally:
        other.close()


def test_a_429_holds_every_caller_until_the_retry_time(client):
    key = _new_key()
    a = RedisSlidingWindow(client, key, 100, 60.0)
    b = RedisSlidingWindow(client, key, 100, 60.0)
    a.observe({"retry-after": "0.2"}, status=429)
    assert b.try_acquire() is False and a.acquire(timeout=0.05) is False
    assert 0.1 < b.wait_time() <= 0.2
    t0 = time.monotonic()
    assert b.acquire(timeout=2.0) is True
    assert time.monotonic() - t0 > 0.1


def test_a_cancelled_reservation_gives_the_budget_back(client):
    key = _new_key()
    lim = RedisTokenBucket(client, key, 1000.0, 1000.0)
    lim.observe(OPENAI)
    r = lim.reserve(2)
    assert lim.try_acquire(2) is False
    r.cancel()
    assert lim.try_acquire(3) is True and lim.try_acquire() is False


def test_wrong_or_missing_headers_change_nothing_and_warn_once(client):
    key = _new_key()
    lim = RedisTokenBucket(client, key, 1000.0, 2.0)
    with pytest.warns(RateLimitHeaderWarning):
        lim.observe({"x-ratelimit-remaining-requests": "lots", "x-ratelimit-reset-requests": "1s"})
    assert not client.exists(key)  # nothing stored
    assert lim.try_acquire(2) is True
    with pytest.raises(ValueError, match="resource"):
        lim.observe(OPENAI, resource="calls")


@pytest.mark.asyncio
async def test_async_observe(aclient, client):
    key = _new_key()
    lim = AsyncRedisTokenBucket(aclient, key, 1000.0, 1000.0)
    await lim.observe({"retry-after-ms": "150"}, status=429)
    assert await lim.try_acquire() is False
    assert 0.05 < await lim.wait_time() <= 0.15
    await asyncio_sleep(0.16)
    assert await lim.try_acquire() is True


async def asyncio_sleep(seconds):
    import asyncio

    await asyncio.sleep(seconds)


# ---- groups: one script over every key ---------------------------------------------------------


def test_group_is_all_or_nothing_on_the_server(client):
    rpm_key, tpm_key = _new_key(), _new_key()
    _seed_window(client, rpm_key, [])
    _seed_bucket(client, tpm_key, 100.0)
    rpm = RedisSlidingWindow(client, rpm_key, 4, 60.0)
    tpm = RedisTokenBucket(client, tpm_key, 1.0, 100.0)
    group = LimiterGroup([rpm, tpm], resources=("requests", "tokens"))
    assert group.limiter_kind == "sync"
    assert group.try_acquire([1, 60]) is True
    assert group.try_acquire([1, 60]) is False  # tokens refuse: the window logged nothing
    assert client.zcard(rpm_key) == 2 and _tokens(client, tpm_key) == 40.0
    assert group.try_acquire([2, 10]) is True
    assert group.try_acquire([1, 10]) is False  # the window refuses: no tokens taken
    assert client.zcard(rpm_key) == 4 and _tokens(client, tpm_key) == 30.0
    assert group.wait_time([1, 10]) > 1.0
    stats = group.stats()
    assert (stats["allowed"], stats["denied"]) == (2, 2)
    assert [m["allowed"] for m in stats["limiters"]] == [2, 2]


def test_group_reservation_settles_every_member(client):
    rpm_key, tpm_key = _new_key(), _new_key()
    _seed_window(client, rpm_key, [])
    _seed_bucket(client, tpm_key, 100.0)
    group = LimiterGroup([
        RedisSlidingWindow(client, rpm_key, 10, 60.0),
        RedisTokenBucket(client, tpm_key, 1.0, 100.0),
    ])
    r = group.reserve([1, 50])
    assert client.zcard(rpm_key) == 2 and _tokens(client, tpm_key) == 50.0
    r.settle([1, 20])
    assert _tokens(client, tpm_key) == 80.0
    group.reserve([1, 30]).cancel()
    assert client.zcard(rpm_key) == 2 and _tokens(client, tpm_key) == 80.0


def test_group_observe_stores_each_members_budget(client):
    rpm = RedisSlidingWindow(client, _new_key(), 100, 60.0)
    tpm = RedisTokenBucket(client, _new_key(), 1000.0, 10000.0)
    group = LimiterGroup([rpm, tpm], resources=("requests", "tokens"))
    group.observe(OPENAI)
    assert group.try_acquire([1, 50]) is True
    assert group.try_acquire([1, 1]) is False  # the tokens budget is spent
    assert rpm.try_acquire(2) is True and rpm.try_acquire() is False  # 3 requests in all


def test_group_members_must_share_one_sync_client(server, client, aclient):
    other = redis.Redis(**_fast_client_kwargs(server.port))
    try:
        with pytest.raises(TypeError, match="over one client"):
            LimiterGroup([RedisTokenBucket(client, _new_key(), 1, 1), RedisTokenBucket(other, _new_key(), 1, 1)])
        with pytest.raises(TypeError):
            LimiterGroup([RedisTokenBucket(client, _new_key(), 1, 1), AsyncRedisTokenBucket(aclient, _new_key(), 1, 1)])
        key = _new_key()
        with pytest.raises(ValueError, match="distinct keys"):
            LimiterGroup([RedisTokenBucket(client, key, 1, 1), RedisTokenBucket(client, key, 1, 1)])
    finally:
        other.close()


def test_group_outage_follows_the_strictest_member(own_server):
    c = redis.Redis(**_fast_client_kwargs(own_server.port, timeout=0.5))
    try:
        lenient = RedisTokenBucket(c, "a", 1, 1, on_error="allow")
        closed = RedisTokenBucket(c, "b", 1, 1, on_error="deny")
        strict = RedisTokenBucket(c, "c", 1, 1)
        own_server.stop()
        assert LimiterGroup([lenient, RedisTokenBucket(c, "d", 1, 1, on_error="allow")]).try_acquire() is True
        assert LimiterGroup([lenient, closed]).try_acquire() is False
        with pytest.raises(BackendUnavailable):
            LimiterGroup([lenient, closed, strict]).try_acquire()
    finally:
        c.close()


@pytest.mark.asyncio
async def test_async_group(aclient, client):
    rpm_key, tpm_key = _new_key(), _new_key()
    _seed_window(client, rpm_key, [])
    _seed_bucket(client, tpm_key, 100.0)
    group = LimiterGroup([
        AsyncRedisSlidingWindow(aclient, rpm_key, 3, 60.0),
        AsyncRedisTokenBucket(aclient, tpm_key, 1.0, 100.0),
    ])
    assert group.limiter_kind == "async"
    assert type(group) is AsyncLimiterGroup and isinstance(group, LimiterGroup)
    assert repr(group).startswith("AsyncLimiterGroup([")
    assert await group.try_acquire([1, 60]) is True
    assert await group.try_acquire([1, 60]) is False
    assert client.zcard(rpm_key) == 2 and _tokens(client, tpm_key) == 40.0
    r = await group.reserve([1, 40])
    assert type(r) is AsyncGroupReservation
    await r.settle([1, 10])
    assert _tokens(client, tpm_key) == 30.0
    # the exported class makes the same group; given other limiters it refuses, naming them
    direct = AsyncLimiterGroup([AsyncRedisTokenBucket(aclient, tpm_key, 1.0, 100.0)])
    assert await direct.try_acquire(10) is True and _tokens(client, tpm_key) == 20.0
    with pytest.raises(TypeError, match="limiters must be async Redis limiters"):
        AsyncLimiterGroup([RedisTokenBucket(client, tpm_key, 1.0, 100.0)])


def test_group_is_all_or_nothing_across_four_processes(server, client, workers):
    """4 processes share a frozen window of 50 calls and a frozen bucket of 400 tokens; each
    grant takes 1 call and 7 tokens. All-or-nothing: every grant took both, nothing else did."""
    rpm_key, tpm_key = _new_key(), _new_key()
    _seed_window(client, rpm_key, [])
    _seed_bucket(client, tpm_key, 400.0)
    counts = workers("group_hammer", server.port, (rpm_key, tpm_key), (1, 7), 0.5)
    granted = sum(g for g, _ in counts)
    assert sum(a for _, a in counts) > granted  # they were refused too
    assert granted == min(49, 400 // 7)  # 49 calls left in the window, 57 grants of tokens
    assert client.zcard(rpm_key) == 1 + granted
    assert _tokens(client, tpm_key) == 400.0 - 7 * granted


# ---- leases -----------------------------------------------------------------------------------


def test_lease_spends_locally_and_gives_back_on_close(client):
    key = _new_key()
    _seed_bucket(client, key, 100.0)
    lim = RedisTokenBucket(client, key, 1.0, 100.0, lease=30)
    assert (lim.lease, lim.lease_ttl) == (30.0, 1.0)
    assert all(lim.try_acquire() for _ in range(45))
    assert lim.stats()["round_trips"] == 2  # two leases of 30
    assert _tokens(client, key) == 40.0
    assert lim.stats()["allowed"] == 45
    lim.close()
    assert _tokens(client, key) == 55.0  # the 15 unspent came back
    with lim:
        assert lim.try_acquire(2.5)
    assert _tokens(client, key) == 52.5


def test_lease_takes_what_is_there_and_refuses_like_the_server(client):
    key = _new_key()
    _seed_bucket(client, key, 5.0)
    lim = RedisTokenBucket(client, key, 1.0, 100.0, lease=30)
    # the first takes all 5 (2 for it, 3 kept); the third gives the 1 left back and is refused
    assert [lim.try_acquire(2) for _ in range(3)] == [True, True, False]
    assert _tokens(client, key) == 1.0
    assert lim.stats()["denied"] == 1 and lim.stats()["round_trips"] == 2


def test_lease_expires_and_is_given_back(client):
    key = _new_key()
    _seed_bucket(client, key, 100.0)
    lim = RedisTokenBucket(client, key, 1.0, 100.0, lease=20, lease_ttl=0.1)
    assert lim.try_acquire()
    assert _tokens(client, key) == 80.0
    deadline = time.monotonic() + 5
    while _tokens(client, key) != 99.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _tokens(client, key) == 99.0
    assert lim.try_acquire() and _tokens(client, key) == 79.0  # a new lease


def test_window_lease(client):
    key = _new_key()
    _seed_window(client, key, [])
    lim = RedisSlidingWindow(client, key, 30, 60.0, lease=10)
    assert lim.lease_ttl == 1.0
    assert all(lim.try_acquire() for _ in range(25))
    assert client.zcard(key) == 30  # 1 seeded, leases of 10, 10 and the 9 left
    lim.close()
    assert client.zcard(key) == 26  # the 4 unspent came back
    assert lim.try_acquire(4) and client.zcard(key) == 30
    assert lim.try_acquire() is False


def test_observe_gives_the_lease_back(client):
    key = _new_key()
    _seed_bucket(client, key, 100.0)
    lim = RedisTokenBucket(client, key, 1.0, 100.0, lease=50)
    assert lim.try_acquire()
    lim.observe({"retry-after": "30"}, status=429)
    assert _tokens(client, key) == 99.0
    assert lim.try_acquire() is False


def test_lease_arguments_are_checked(client):
    with pytest.raises(ValueError, match="lease must be a cost the limiter can grant"):
        RedisTokenBucket(client, _new_key(), 1.0, 10.0, lease=11)
    with pytest.raises(ValueError, match="lease must be > 0"):
        RedisTokenBucket(client, _new_key(), 1.0, 10.0, lease=0)
    with pytest.raises(TypeError, match="lease must be a number"):
        RedisTokenBucket(client, _new_key(), 1.0, 10.0, lease=True)
    with pytest.raises(ValueError, match="whole number"):
        RedisSlidingWindow(client, _new_key(), 10, 1.0, lease=2.5)
    with pytest.raises(ValueError, match="lease_ttl must be below the window"):
        RedisSlidingWindow(client, _new_key(), 10, 1.0, lease=2, lease_ttl=1.0)
    with pytest.raises(ValueError, match="lease_ttl must be finite and > 0"):
        RedisTokenBucket(client, _new_key(), 1.0, 10.0, lease=2, lease_ttl=0)
    lim = RedisTokenBucket(client, _new_key(), 1.0, 10.0, lease=2)
    with pytest.raises(ValueError, match="exceeds capacity 10.0"):
        lim.try_acquire(11)
    with pytest.raises(TypeError, match="cost must be a real number"):
        lim.try_acquire("1")


def test_a_lease_is_given_back_at_exit(server, client):
    key = _new_key()
    _seed_bucket(client, key, 100.0)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import redis_workers; "
        "redis_workers.lease_and_exit(int(sys.argv[2]), sys.argv[3], 40)"
    )
    tests_dir = str(pathlib.Path(__file__).parent)
    subprocess.run([sys.executable, "-c", code, tests_dir, str(server.port), key], check=True, timeout=60)
    assert _tokens(client, key) == 99.0  # spent 1 of a lease of 40, the limiter dropped: 39 back


@pytest.mark.parametrize("kind", ["token_bucket", "sliding_window"])
def test_leases_across_four_processes_stay_within_the_bound(server, client, workers, kind):
    """4 processes with leases of 25 on one key, hammering: the server debits every lease, so
    the total granted stays within the limiter's own bound (the window's: max_calls per window
    plus the leases outstanding at its start)."""
    key = _new_key()
    lease = 25
    if kind == "token_bucket":
        rate, capacity = 400.0, 100.0
        params = (rate, capacity)
    else:
        max_calls, window = 100, 0.25
        params = (max_calls, window)
    t0 = _server_us(client)
    counts = workers("lease_hammer", kind, server.port, key, params, lease, 0.6)
    elapsed = (_server_us(client) - t0) / 1e6
    granted = sum(c[0] for c in counts)
    attempts = sum(c[1] for c in counts)
    if kind == "token_bucket":
        assert capacity <= granted <= capacity + rate * elapsed
    else:  # every window of 0.25 s: at most max_calls, plus the leases outstanding at its start
        windows = math.ceil(elapsed / window) + 1
        assert max_calls <= granted <= windows * (max_calls + 4 * lease)
    assert attempts > granted  # the limit was reached: they were refused too


# ---- reservations against a model (frozen clock, exact) ---------------------------------------


@test_redis.MODEL
@given(
    capacity=st.floats(1.0, 100.0),
    ops=st.lists(
        st.tuples(st.sampled_from(["reserve", "settle", "cancel", "try"]),
                  st.floats(0.0, 1.0), st.floats(0.0, 2.5), st.integers(0, 5)),
        max_size=15,
    ),
)
def test_reservations_follow_the_model_and_the_bound(client, capacity, ops):
    """Every grant (reserve or try_acquire) leaves the settled total within capacity (no time
    passes: ``granted <= capacity + rate * 0``); settle and cancel move exactly the difference."""
    key = _new_key()
    _seed_bucket(client, key, capacity)
    lim = RedisTokenBucket(client, key, 1.0, capacity)
    tokens = capacity
    open_ = []
    for op, frac, ratio, pick in ops:
        cost = capacity * frac
        if op in ("reserve", "try"):
            fits = tokens >= cost
            if op == "try":
                assert lim.try_acquire(cost) is fits
            elif fits:
                open_.append(lim.reserve(cost, timeout=0))
            else:
                with pytest.raises(RateLimitError):
                    lim.reserve(cost, timeout=0)
            if fits:
                tokens -= cost
                assert capacity - tokens <= capacity  # the conformance bound at this grant
        elif open_:
            r = open_.pop(pick % len(open_))
            actual = 0.0 if op == "cancel" else r.cost * ratio
            delta = actual - r.cost
            if op == "cancel":
                r.cancel()
            else:
                r.settle(actual)
            if delta > 0:
                tokens -= delta
            elif delta < 0:
                tokens = min(capacity, tokens - delta)
        stored = client.hget(key, "tokens")
        assert (capacity if stored is None else float(stored)) == tokens


@pytest.mark.asyncio
async def test_async_lease(aclient, client):
    key = _new_key()
    _seed_bucket(client, key, 100.0)
    lim = AsyncRedisTokenBucket(aclient, key, 1.0, 100.0, lease=30, lease_ttl=0.1)
    assert all([await lim.try_acquire() for _ in range(45)])
    assert lim.stats()["round_trips"] == 2 and lim.stats()["allowed"] == 45
    assert _tokens(client, key) == 40.0
    await lim.close()
    assert _tokens(client, key) == 55.0
    async with lim:
        assert await lim.acquire(2)
        assert _tokens(client, key) == 25.0
        assert await lim.wait_time(5) == 0.0  # the lease covers it
    assert _tokens(client, key) == 53.0
    assert await lim.try_acquire()  # a new lease of 30: expires after 0.1 s
    for _ in range(100):
        if _tokens(client, key) == 52.0:
            break
        await asyncio_sleep(0.02)
    assert _tokens(client, key) == 52.0
    wkey = _new_key()
    _seed_window(client, wkey, [])
    win = AsyncRedisSlidingWindow(aclient, wkey, 30, 60.0, lease=10)
    assert all([await win.try_acquire() for _ in range(12)])
    assert client.zcard(wkey) == 21
    await win.observe({"retry-after": "30"}, status=429)  # gives the lease back, then holds
    assert client.zcard(wkey) == 13 and await win.try_acquire() is False


@pytest.mark.parametrize("kind", ["token_bucket", "sliding_window"])
def test_a_lease_shared_by_threads_loses_and_makes_nothing(client, kind):
    """8 threads spend one limiter's leases: after close, grants + what the server holds is
    exactly what the limiter started with (no token spent twice, none lost)."""
    key = _new_key()
    if kind == "token_bucket":
        _seed_bucket(client, key, 1000.0)
        lim = RedisTokenBucket(client, key, 1.0, 1000.0, lease=37)
    else:
        _seed_window(client, key, [])  # 1 call logged at a frozen now
        lim = RedisSlidingWindow(client, key, 1000, 3600.0, lease=37)
    granted = []

    def spend():
        granted.append(sum(lim.try_acquire() for _ in range(200)))

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lim.close()
    total = sum(granted)
    assert lim.stats()["allowed"] == total
    if kind == "token_bucket":
        assert total == 1000 and _tokens(client, key) == 0.0
    else:
        assert total == 999 and client.zcard(key) == 1000


def test_after_a_429_a_leased_limiter_holds_even_a_zero_cost(client):
    lim = RedisTokenBucket(client, _new_key(), 1000.0, 1000.0, lease=100)
    assert lim.try_acquire()
    lim.observe({"retry-after": "30"}, status=429)
    assert lim.try_acquire(0) is False and lim.try_acquire() is False
    assert RedisTokenBucket(client, lim.key, 1000.0, 1000.0).try_acquire(0) is False


def test_a_reservation_settles_once_even_from_two_threads(client):
    key = _new_key()
    _seed_bucket(client, key, 10.0)
    lim = RedisTokenBucket(client, key, 1.0, 10.0)
    for _ in range(20):
        r = lim.reserve(4)
        outcomes = []

        def settle(r=r, outcomes=outcomes):
            try:
                r.cancel()
                outcomes.append("settled")
            except RuntimeError:
                outcomes.append("refused")

        threads = [threading.Thread(target=settle) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["refused", "settled"]
        assert _tokens(client, key) == 10.0


def test_an_older_answer_of_the_same_window_only_tightens(client):
    lim = RedisTokenBucket(client, _new_key(), 1000.0, 1000.0)

    def answer(remaining, reset):
        return {"x-ratelimit-remaining-requests": str(remaining),
                "x-ratelimit-reset-requests": reset}

    lim.observe(answer(1, "20s"))
    lim.observe(answer(4, "19s"))  # sent before the first, arrived after it
    assert [lim.try_acquire(), lim.try_acquire()] == [True, False]
    lim.observe(answer(3, "40s"))  # the next window: a new budget
    assert [lim.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_a_group_refused_outright_during_an_outage_does_not_wait(own_server):
    c = redis.Redis(**_fast_client_kwargs(own_server.port, timeout=0.5))
    try:
        group = LimiterGroup([RedisTokenBucket(c, "a", 1, 1, on_error="deny"),
                              RedisTokenBucket(c, "b", 1, 1, on_error="deny")])
        own_server.stop()
        t0 = time.monotonic()
        assert group.acquire() is False
        with pytest.raises(RateLimitError):
            group.reserve()
        assert time.monotonic() - t0 < 2.0
    finally:
        c.close()


@pytest.mark.parametrize("cls", [RedisTokenBucket, RedisSlidingWindow])
def test_a_budget_ends_at_its_reset(client, cls):
    lim = cls(client, _new_key(), 1000, 1000.0)
    lim.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "60ms"})
    assert lim.try_acquire() is False and 0 < lim.wait_time() <= 0.06
    time.sleep(0.1)
    assert [lim.try_acquire(), lim.try_acquire()] == [True, True]  # on its own rules again


def test_window_members_never_collide_with_older_names_at_the_same_time(client):
    # regression: next to "<t>:0", "<t>:1" (an earlier version's names, as _seed_window writes
    # them) a padded "<t>:...2" sorted below "<t>:1", and the next call at t reused its name
    key = _new_key()
    _seed_window(client, key, [0, 0])  # three calls at the frozen now: "<t>:0" .. "<t>:2"
    lim = RedisSlidingWindow(client, key, 10, 60.0)
    for expected in range(4, 8):
        assert lim.try_acquire()
        assert client.zcard(key) == expected
    assert lim.reserve(2).cancel() is None and client.zcard(key) == 7
    assert lim.try_acquire(3) and client.zcard(key) == 10


ROOMY_BUDGET = {"x-ratelimit-remaining-requests": "1000000000", "x-ratelimit-reset-requests": "1h"}


@test_redis.MODEL
@given(
    fill=st.floats(0.0, 1.0),
    ops=st.lists(st.tuples(st.sampled_from(["try", "wait"]), st.integers(0, 8)), max_size=10),
)
def test_the_hot_paths_decide_as_the_general_script(client, fill, ops):
    """A limiter under a budget that never binds takes the script's general path; its twin
    without one takes the hot path: the same answers and the same stored state, decision by
    decision (frozen clocks)."""
    keys = {name: (_new_key(), _new_key()) for name in ("tb", "sw")}
    pairs = {}
    for name, (plain, budgeted) in keys.items():
        if name == "tb":
            for k in (plain, budgeted):
                _seed_bucket(client, k, 8.0 * fill)
            make = lambda k: RedisTokenBucket(client, k, 3.0, 8.0)  # noqa: E731
        else:
            ages = [int(a * 1e5) for a in range(int(8 * fill))]
            for k in (plain, budgeted):
                _seed_window(client, k, ages)
            make = lambda k: RedisSlidingWindow(client, k, 9, 0.5)  # noqa: E731
        pairs[name] = (make(plain), make(budgeted))
        pairs[name][1].observe(ROOMY_BUDGET)
    for op, cost in ops:
        for name, (plain, budgeted) in pairs.items():
            if op == "try":
                assert plain.try_acquire(cost) == budgeted.try_acquire(cost)
            else:
                assert plain.wait_time(cost) == pytest.approx(budgeted.wait_time(cost), abs=1e-6)
            if name == "tb":
                a, b = client.hget(plain.key, "tokens"), client.hget(budgeted.key, "tokens")
                assert (a is None and b is None) or float(a) == float(b)
            else:
                assert client.zcard(plain.key) == client.zcard(budgeted.key)


def _long_form(client, lim, op, cost):
    """One look or take of ``lim`` in the script's long form (as a group of one sends it):
    (granted, wait, state, receipt)."""
    from prodfast.redis import _script

    reply = client.evalsha(_script.SHA, 2, *lim._keys, op, b"1", *lim._params, repr(float(cost)))
    return int(reply[0]), float(reply[1]), float(reply[2]), reply[3].decode()


def _short_form(lim, op, cost):
    arg = lim._short_argv[op] + repr(float(cost)).encode()
    granted, wait, stamp = lim._decide(arg)
    return int(granted), wait, float(lim.stats()["tokens" if lim._KIND == "tb" else "in_window"]), (
        stamp.decode()
    )


@test_redis.MODEL
@given(
    fill=st.floats(0.0, 1.0),
    budget=st.booleans(),
    ops=st.lists(st.tuples(st.sampled_from(["take", "look"]), st.integers(0, 8)), max_size=10),
)
def test_the_short_form_decides_as_the_long_form(client, fill, budget, ops):
    """try_acquire/wait_time/acquire/reserve send one limiter's look or take in the script's
    short form (one argument, one string back); a twin key decided in the long form gives the
    same answer, receipt and stored state call by call (frozen clocks), on the hot path and,
    under a provider budget, on the general one."""
    twins, frozen = {}, {}  # each window key's frozen "now" (seeded one after the other)
    for kind in ("tb", "sw"):
        short_key, long_key = _new_key(), _new_key()
        if kind == "tb":
            for k in (short_key, long_key):
                _seed_bucket(client, k, 8.0 * fill)
            make = lambda k: RedisTokenBucket(client, k, 3.0, 8.0)  # noqa: E731
        else:
            ages = [int(a * 1e5) for a in range(int(8 * fill))]
            for k in (short_key, long_key):
                frozen[k] = _seed_window(client, k, ages)[0]
            make = lambda k: RedisSlidingWindow(client, k, 9, 0.5)  # noqa: E731
        twins[kind] = (make(short_key), make(long_key))
        if budget:
            for lim in twins[kind]:
                lim.observe({"x-ratelimit-remaining-requests": "5",
                             "x-ratelimit-reset-requests": "1h"})
    for op, cost in ops:
        for kind, (short, long_) in twins.items():
            s, g = _short_form(short, op, cost), _long_form(client, long_, op, cost)
            (stamp_s, gen_s), (stamp_l, gen_l) = s[3].split("/"), g[3].split("/")
            assert s[0] == g[0] and s[2] == pytest.approx(g[2], abs=1e-9)
            # a wait for the budget's reset runs on the real clock, a moment apart
            assert s[1] == pytest.approx(g[1], rel=1e-4, abs=1e-9)
            assert (gen_s == "0") == (gen_l == "0")  # the budget's generation: its own key's
            if kind == "tb":
                assert stamp_s == stamp_l == "0"
                a, b = (client.hmget(k, "tokens", "left") for k in (short.key, long_.key))
                assert a == b
            else:  # the same log, relative to each key's frozen "now"
                assert float(stamp_s) - frozen[short.key] == float(stamp_l) - frozen[long_.key]
                logs = [
                    [(m.split(b":")[1], t - frozen[k])
                     for m, t in client.zrange(k, 0, -1, withscores=True)]
                    for k in (short.key, long_.key)
                ]
                assert logs[0] == logs[1]


@pytest.mark.asyncio
async def test_the_default_cost_follows_the_cost_rules(client, aclient):
    # try_acquire() sends an argument built once for a cost of 1; a bucket that can never hold
    # one token refuses it as any other cost above its capacity, and 1.0 / True cost the same
    for lim in (RedisTokenBucket(client, _new_key(), 1.0, 0.5),
                AsyncRedisTokenBucket(aclient, _new_key(), 1.0, 0.5)):
        for cost in (1, 1.0, True):
            with pytest.raises(ValueError, match="exceeds capacity 0.5"):
                out = lim.try_acquire(cost)
                if not isinstance(out, bool):
                    await out
    lim = RedisTokenBucket(client, _new_key(), 0.001, 3.0)
    assert [lim.try_acquire(1), lim.try_acquire(1.0), lim.try_acquire(True)] == [True] * 3
    assert lim.try_acquire() is False and lim.stats()["tokens"] == pytest.approx(0.0, abs=1e-3)
