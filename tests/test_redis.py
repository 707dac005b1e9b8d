"""Redis-backed limiters against a real redis-server started by the tests on a loopback port.

Where no redis-server can be found the tests skip with the reason shown; with
PRODFAST_REQUIRE_REDIS=1 (CI) its absence is a failure instead.

Exact checks use a "frozen" server clock: a state seeded with a timestamp an hour ahead of the
server's TIME looks, to the scripts, like a clock that went backwards, so no time passes and
every decision can be compared exactly with a model of the in-memory rules (API section 2).
Checks against the running clock bound the answer between two server TIME reads.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import socket
import threading
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prodfast._backend import env_flag

REQUIRE = env_flag("PRODFAST_REQUIRE_REDIS")

try:
    import redis
    import redis.asyncio
    import redis.exceptions
except ImportError:  # pragma: no cover - depends on the environment
    if REQUIRE:
        raise
    pytest.skip("redis-py is not installed (pip install 'prodfast[redis]')", allow_module_level=True)

import redis_server  # noqa: E402
import redis_workers  # noqa: E402
from redis_server import fast_client_kwargs as _fast_client_kwargs  # noqa: E402

import prodfast.redis.limiters as predis  # noqa: E402
from prodfast.redis import (  # noqa: E402
    AsyncRedisSlidingWindow,
    AsyncRedisTokenBucket,
    BackendUnavailable,
    RedisSlidingWindow,
    RedisTokenBucket,
)

# the Redis test files' one set of fixtures (tests/redis_server.py)
redis_binary, server, own_server = redis_server.redis_binary, redis_server.server, redis_server.own_server
client, aclient = redis_server.client, redis_server.aclient

LONG = env_flag("PRODFAST_LONG_TESTS")
FUTURE_US = 3600 * 1_000_000  # seeded timestamps this far ahead freeze the scripts' clock
MODEL = settings(
    max_examples=300 if LONG else 40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _new_key() -> str:
    return f"prodfast-test:{uuid.uuid4().hex}"


def _server_us(client) -> int:
    sec, usec = client.time()
    return sec * 1_000_000 + usec


def _expiring(pttl: int, max_ms: int) -> bool:
    """The key has a TTL of at most ``max_ms`` ms, or has already expired (a slow machine)."""
    return pttl == -2 or 0 < pttl <= max_ms


def _seed_bucket(client, key, tokens, ahead_us=FUTURE_US):
    ts = _server_us(client) + ahead_us
    client.hset(key, mapping={"tokens": repr(float(tokens)), "ts": str(ts)})
    client.pexpire(key, 10_000)


def _seed_window(client, key, ages_us):
    """Log calls made ``ages_us`` before a frozen "now" an hour ahead; returns (now, scores)."""
    now = _server_us(client) + FUTURE_US
    scores = sorted(float(now - a) for a in [0, *ages_us])  # age 0 pins the frozen "now"
    members = {}
    for s in scores:
        i = sum(1 for m in members.values() if m == s)
        members[f"{int(s)}:{i}"] = s
    client.zadd(key, members)
    client.pexpire(key, 10_000)
    return float(now), scores


class Recorder:
    """Stands in for the waits inside prodfast.redis (``_sleep``, ``_asleep``) and records them."""

    def __init__(self, real_sleep, real_asleep):
        self.sleeps = []
        self._real = real_sleep
        self._areal = real_asleep

    def sync_sleep(self, gate, seen, seconds):
        self.sleeps.append(seconds)
        self._real(gate, seen, seconds)

    async def async_sleep(self, woken, seconds):
        self.sleeps.append(seconds)
        await self._areal(woken, seconds)


@pytest.fixture
def sleeps(monkeypatch):
    rec = Recorder(predis._sleep, predis._asleep)
    monkeypatch.setattr(predis, "_sleep", rec.sync_sleep)
    monkeypatch.setattr(predis, "_asleep", rec.async_sleep)
    return rec


# ---------------------------------------------------------------------------------------------
# The in-memory rules, decision by decision (frozen clock, exact)


@MODEL
@given(
    rate=st.floats(0.01, 1000.0),
    capacity=st.floats(0.5, 100.0),
    fill=st.floats(0.0, 1.0),
    ops=st.lists(st.tuples(st.sampled_from(["try", "wait"]), st.floats(0.0, 1.0)), max_size=12),
)
def test_token_bucket_follows_the_in_memory_rules(client, rate, capacity, fill, ops):
    key = _new_key()
    tokens = capacity * fill
    _seed_bucket(client, key, tokens)
    ts_before = client.hget(key, "ts")
    lim = RedisTokenBucket(client, key, rate, capacity)
    allowed = denied = 0
    for op, frac in ops:
        cost = capacity * frac
        fits = tokens >= cost
        if op == "try":
            assert lim.try_acquire(cost) is fits
            if fits:
                tokens -= cost
                allowed += 1
            else:
                denied += 1
        else:
            expect = 0.0 if fits else (cost - tokens) / rate
            assert lim.wait_time(cost) == pytest.approx(expect, rel=1e-12, abs=1e-12)
        # the stored state is exactly the model's (a denial changes nothing)
        assert float(client.hget(key, "tokens")) == tokens
        assert client.hget(key, "ts") == ts_before
    st_ = lim.stats()
    assert (st_["allowed"], st_["denied"]) == (allowed, denied)
    if ops:
        assert st_["tokens"] == tokens


@MODEL
@given(
    max_calls=st.integers(1, 8),
    window_ms=st.integers(1, 2000),
    ages=st.lists(st.integers(0, 3_000_000), max_size=10),
    ops=st.lists(st.tuples(st.sampled_from(["try", "wait"]), st.integers(0, 8)), max_size=12),
)
def test_sliding_window_follows_the_in_memory_rules(client, max_calls, window_ms, ages, ops):
    key = _new_key()
    now, log = _seed_window(client, key, ages)
    window = window_ms / 1000
    w = window * 1e6
    lim = RedisSlidingWindow(client, key, max_calls, window)
    for op, cost in ops:
        cost = min(cost, max_calls)
        log = [s for s in log if not s <= now - w]  # a call at c counts while now - c < window
        count = len(log)
        fits = count + cost <= max_calls
        if op == "try":
            assert lim.try_acquire(cost) is fits
            if fits:
                log += [now] * cost
            assert lim.stats()["in_window"] == len(log)
        else:
            expect = 0.0 if fits else (log[count + cost - max_calls - 1] + w - now) / 1e6
            assert lim.wait_time(cost) == pytest.approx(expect, rel=1e-12, abs=1e-9)
        assert client.zcard(key) == len(log)
        members = client.zrange(key, 0, -1)
        assert len(set(members)) == len(members)


def test_sliding_window_boundary_a_call_counts_while_younger_than_the_window(client):
    key = _new_key()
    # window 0.5 s: calls exactly 500 ms old have left, 499.999 ms old still count
    now, _ = _seed_window(client, key, [500_000, 500_000, 499_999])
    lim = RedisSlidingWindow(client, key, 3, 0.5)
    assert lim.try_acquire() is True  # in the window: the 0 and the 499.999 ms-old calls
    assert client.zcard(key) == 3
    assert lim.try_acquire() is False
    assert lim.wait_time() == pytest.approx(1e-6)  # the 499.999 ms-old call leaves in 1 us
    assert lim.wait_time(2) == pytest.approx(0.5)


def test_async_twins_give_the_same_answers(client, server):
    """The same frozen scripts through the sync and the asyncio classes give the same answers."""
    ops = [("try", 3), ("try", 2), ("wait", 4), ("try", 1), ("wait", 1), ("try", 5), ("wait", 5)]

    def run_sync(key):
        lim = RedisTokenBucket(client, key, 2.5, 6)
        return [lim.try_acquire(c) if op == "try" else lim.wait_time(c) for op, c in ops]

    async def run_async(key):
        ac = redis.asyncio.Redis(**_fast_client_kwargs(server.port))
        try:
            lim = AsyncRedisTokenBucket(ac, key, 2.5, 6)
            return [await (lim.try_acquire(c) if op == "try" else lim.wait_time(c)) for op, c in ops]
        finally:
            await ac.aclose()

    def run_sync_sw(key):
        lim = RedisSlidingWindow(client, key, 5, 0.25)
        return [lim.try_acquire(c) if op == "try" else lim.wait_time(c) for op, c in ops]

    async def run_async_sw(key):
        ac = redis.asyncio.Redis(**_fast_client_kwargs(server.port))
        try:
            lim = AsyncRedisSlidingWindow(ac, key, 5, 0.25)
            return [await (lim.try_acquire(c) if op == "try" else lim.wait_time(c)) for op, c in ops]
        finally:
            await ac.aclose()

    a, b = _new_key(), _new_key()
    for k in (a, b):
        _seed_bucket(client, k, 4.0)
    sync_answers = run_sync(a)
    assert sync_answers == asyncio.run(run_async(b))
    assert sync_answers == [True, False, pytest.approx(1.2), True, pytest.approx(0.4), False,
                            pytest.approx(2.0)]

    a, b = _new_key(), _new_key()
    _seed_window(client, a, [100_000, 200_000])
    _seed_window(client, b, [100_000, 200_000])
    sync_answers = run_sync_sw(a)
    assert sync_answers == asyncio.run(run_async_sw(b))
    # 3 calls in the log (0, 100 and 200 ms old): 3 more do not fit, 2 do; 4 more need the
    # 4th oldest (0 ms) to leave: 250 ms; 1 more needs the 200 ms-old one to leave: 50 ms
    assert sync_answers[:5] == [False, True, pytest.approx(0.25), False, pytest.approx(0.05)]


# ---------------------------------------------------------------------------------------------
# The running server clock


def test_token_bucket_starts_full_and_refills_at_rate(client):
    key = _new_key()
    lim = RedisTokenBucket(client, key, rate=10.0, capacity=4.0)
    assert client.exists(key) == 0
    assert lim.wait_time(4) == 0.0
    assert client.exists(key) == 0  # looking writes nothing
    t0 = _server_us(client)
    assert lim.try_acquire(4)
    w2 = lim.wait_time(2)
    w05 = lim.wait_time(0.5)
    t1 = _server_us(client)
    span = (t1 - t0) / 1e6
    assert 0.2 - span - 1e-9 <= w2 <= 0.2 + 1e-9  # empty bucket at rate r: c / r
    assert 0.05 - span - 1e-9 <= w05 <= 0.05 + 1e-9
    assert lim.wait_time(0) == 0.0
    assert lim.try_acquire(0) is True


def test_acquire_sleeps_for_the_wait_and_is_granted(client, sleeps):
    key = _new_key()
    lim = RedisTokenBucket(client, key, rate=5.0, capacity=2.0)
    t0 = _server_us(client)
    assert lim.try_acquire(2)
    assert lim.acquire(1) is True
    t1 = _server_us(client)
    assert 1 <= len(sleeps.sleeps) <= 3  # sleeps, does not spin
    assert 0 < sleeps.sleeps[0] <= 0.2 + 1e-9  # one token at 5/s: 200 ms after the grant
    assert (t1 - t0) / 1e6 >= 0.2  # and not granted before the server's clock allowed it
    assert lim.stats()["tokens"] < 0.5  # the refilled token was taken
    assert (lim.stats()["allowed"], lim.stats()["denied"]) == (2, 0)


def test_acquire_timeout_returns_false_at_once(client, sleeps):
    key = _new_key()
    lim = RedisTokenBucket(client, key, rate=1.0, capacity=1.0)
    assert lim.try_acquire()
    assert lim.acquire(1, timeout=0.5) is False  # needs about 1 s
    assert lim.acquire(1, timeout=0) is False
    assert sleeps.sleeps == []
    assert (lim.stats()["allowed"], lim.stats()["denied"]) == (1, 2)
    fast = RedisTokenBucket(client, _new_key(), rate=4.0, capacity=1.0)
    assert fast.try_acquire()
    assert fast.acquire(1, timeout=1.0) is True  # needs about 0.25 s: waits for it
    assert 1 <= len(sleeps.sleeps) <= 3 and all(s <= 0.25 for s in sleeps.sleeps)


def test_sliding_window_counts_calls_in_the_window(client, sleeps):
    key = _new_key()
    lim = RedisSlidingWindow(client, key, max_calls=3, window=0.5)
    t0 = _server_us(client)
    assert [lim.try_acquire() for _ in range(4)] == [True, True, True, False]
    w1 = lim.wait_time()
    w3 = lim.wait_time(3)
    t1 = _server_us(client)
    span = (t1 - t0) / 1e6
    assert 0.5 - span - 1e-9 <= w1 <= 0.5 + 1e-9  # until the oldest call leaves
    assert 0.5 - span - 1e-9 <= w3 <= 0.5 + 1e-9  # until the newest leaves
    assert lim.stats()["in_window"] == 3
    assert lim.acquire(1) is True
    assert 1 <= len(sleeps.sleeps) <= 3
    assert 1 <= client.zcard(key) == lim.stats()["in_window"] <= 3  # the oldest left, one came in
    st_ = lim.stats()
    # one count per call: the waiting acquire is one grant, however often it asked
    assert (st_["allowed"], st_["denied"], st_["max_calls"], st_["window"]) == (4, 1, 3, 0.5)


def test_threads_sharing_one_limiter_get_exactly_the_tokens(client):
    key = _new_key()
    _seed_bucket(client, key, 100.0)  # frozen clock: exactly 100 tokens to share
    lim = RedisTokenBucket(client, key, rate=5.0, capacity=200.0)
    got = []

    def worker():
        got.append(sum(lim.try_acquire() for _ in range(50)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(got) == 100
    st_ = lim.stats()
    assert (st_["allowed"], st_["denied"]) == (100, 100)


# ---------------------------------------------------------------------------------------------
# Several processes sharing one limit


@pytest.fixture(scope="module")
def workers():
    """Four worker processes, spawned once per module, running tasks of redis_workers by name:
    ``workers(task, *args)`` runs it in all four at once and returns their results."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    pipes, procs = [], []
    for _ in range(4):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=redis_workers.serve, args=(child, barrier), daemon=True)
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)

    def run(task, *args):
        for conn in pipes:
            conn.send((task, args))
        return [conn.recv() for conn in pipes]

    yield run
    for conn in pipes:
        conn.send(None)
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()


def _run_processes(server, workers, key, kind, params, duration):
    probe = redis.Redis(**_fast_client_kwargs(server.port))
    try:
        t0 = _server_us(probe)  # before the tasks are sent: no decision has been made yet
        out = workers("hammer", kind, server.port, key, params, duration)
        t1 = _server_us(probe)
    finally:
        probe.close()
    return out, (t1 - t0) / 1e6


def test_four_processes_share_one_token_bucket(server, workers):
    rate, capacity = 20.0, 5.0
    out, elapsed = _run_processes(server, workers, _new_key(), "token_bucket", (rate, capacity), 0.5)
    granted = sum(g for g, _ in out)
    attempts = sum(a for _, a in out)
    assert granted <= capacity + rate * elapsed
    assert capacity < granted < attempts  # it refilled, and it refused some


def test_four_processes_share_one_sliding_window(server, workers):
    max_calls, window = 5, 0.2
    out, elapsed = _run_processes(server, workers, _new_key(), "sliding_window", (max_calls, window), 0.5)
    granted = sum(g for g, _ in out)
    attempts = sum(a for _, a in out)
    # any half-open stretch of one window holds at most max_calls grants
    assert granted <= max_calls * math.ceil(elapsed / window)
    assert max_calls < granted < attempts


def test_four_processes_split_a_frozen_bucket_exactly(server, client, workers):
    key = _new_key()
    _seed_bucket(client, key, 57.0)
    out, _ = _run_processes(server, workers, key, "token_bucket", (1.0, 100.0), 0.3)
    assert sum(g for g, _ in out) == 57


# ---------------------------------------------------------------------------------------------
# Keys expire


def test_token_bucket_key_expires_when_full_again(client):
    key = _new_key()
    lim = RedisTokenBucket(client, key, rate=20.0, capacity=4.0)
    assert lim.try_acquire(0) is True
    assert client.exists(key) == 0  # a full bucket needs no key
    t0 = _server_us(client)
    assert lim.try_acquire(1)
    pttl = client.pttl(key)
    t1 = _server_us(client)
    # full again 1 / 20 s = 50 ms after the grant: never sooner, never much later
    assert 50 - (t1 - t0) / 1000 - 1 <= pttl <= 51
    time.sleep(0.08)
    assert client.exists(key) == 0
    assert lim.try_acquire(4)  # a vanished key is a full bucket
    assert _expiring(client.pttl(key), 200)


def test_sliding_window_key_expires_when_the_window_is_empty(client):
    key = _new_key()
    lim = RedisSlidingWindow(client, key, max_calls=1, window=0.3)
    assert lim.try_acquire()
    assert _expiring(client.pttl(key), 300)
    time.sleep(0.05)
    assert lim.try_acquire() is False
    assert client.pttl(key) <= 250  # a denial does not extend it
    time.sleep(0.3)
    assert client.exists(key) == 0
    assert lim.try_acquire()


# ---------------------------------------------------------------------------------------------
# Outages, restarts, flushed scripts


def test_restart_follows_on_error_and_recovers(own_server, sleeps):
    c = redis.Redis(**_fast_client_kwargs(own_server.port, timeout=1.0))
    try:
        strict = RedisTokenBucket(c, "tb", 1.0, 10.0)
        fail_open = RedisSlidingWindow(c, "sw", 5, 1.0, on_error="allow")
        fail_closed = RedisTokenBucket(c, "tb2", 1.0, 10.0, on_error="deny")
        assert strict.try_acquire() and fail_open.try_acquire() and fail_closed.try_acquire()
        assert strict.stats()["script_loads"] == 1

        own_server.stop()
        with pytest.raises(BackendUnavailable) as info:
            strict.try_acquire()
        assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
        assert info.value.cause is info.value.__cause__
        assert info.value.key == "tb"
        with pytest.raises(BackendUnavailable):
            strict.wait_time()
        with pytest.raises(BackendUnavailable):
            strict.acquire()
        assert fail_open.try_acquire() is True
        assert fail_open.wait_time(5) == 0.0
        assert fail_open.acquire(5, timeout=1) is True
        assert fail_closed.try_acquire() is False
        assert fail_closed.wait_time() == math.inf
        assert fail_closed.acquire() is False  # at once, even without a timeout
        assert sleeps.sleeps == []
        assert strict.stats()["errors"] == 3
        assert fail_open.stats()["allowed"] == 3  # 1 real grant + 2 answered by on_error
        assert fail_closed.stats()["denied"] == 2

        own_server.start()  # same port, empty keyspace, empty script cache
        assert strict.try_acquire() is True
        assert strict.stats()["script_loads"] == 2  # NOSCRIPT, loaded again
        assert [fail_closed.try_acquire(5), fail_closed.try_acquire(5)] == [True, True]
        assert fail_closed.try_acquire(5) is False
        assert fail_open.try_acquire() is True
        assert c.hexists("tb", "tokens")
    finally:
        c.close()


def test_flushed_scripts_are_loaded_again(client):
    lim = RedisSlidingWindow(client, _new_key(), 10, 1.0)
    assert lim.try_acquire()
    loads = lim.stats()["script_loads"]
    client.script_flush()
    assert lim.try_acquire()
    assert lim.stats()["script_loads"] == loads + 1
    assert lim.try_acquire()
    assert lim.stats()["script_loads"] == loads + 1


class FlushingClient(redis.Redis):
    """Flushes the server's script cache before every EVALSHA: every call meets NOSCRIPT."""

    def execute_command(self, *args, **kwargs):
        if args[0] == "EVALSHA":
            self.script_flush()
        return super().execute_command(*args, **kwargs)


class AsyncFlushingClient(redis.asyncio.Redis):
    async def execute_command(self, *args, **kwargs):
        if args[0] == "EVALSHA":
            await self.script_flush()
        return await super().execute_command(*args, **kwargs)


@pytest.mark.parametrize("on_error", ["raise", "allow", "deny"])
def test_a_flush_before_every_evalsha_still_decides(server, on_error):
    # regression: a flush between the reload and the retried EVALSHA raised a bare NoScriptError
    c = FlushingClient(**_fast_client_kwargs(server.port))
    try:
        tb = RedisTokenBucket(c, _new_key(), 0.001, 2.0, on_error=on_error)
        sw = RedisSlidingWindow(c, _new_key(), 2, 60.0, on_error=on_error)
        for lim in (tb, sw):
            assert [lim.try_acquire(), lim.try_acquire(), lim.try_acquire()] == [True, True, False]
            assert lim.wait_time() > 1.0
            assert lim.acquire(timeout=0.01) is False
            assert lim.stats()["errors"] == 0 and lim.stats()["script_loads"] == 5
    finally:
        c.close()


@pytest.mark.asyncio
async def test_async_a_flush_before_every_evalsha_still_decides(server):
    c = AsyncFlushingClient(**_fast_client_kwargs(server.port))
    try:
        for lim in (AsyncRedisTokenBucket(c, _new_key(), 0.001, 2.0),
                    AsyncRedisSlidingWindow(c, _new_key(), 2, 60.0)):
            assert [await lim.try_acquire() for _ in range(3)] == [True, True, False]
            assert await lim.wait_time() > 1.0
    finally:
        await c.aclose()


@pytest.mark.parametrize("cls", [RedisTokenBucket, RedisSlidingWindow])
def test_a_key_the_client_cannot_encode_is_refused_at_construction(client, cls):
    # regression: a lone surrogate was accepted, then every decision raised UnicodeEncodeError
    with pytest.raises(ValueError, match="key 'a\\\\udc80' cannot be encoded as utf-8"):
        cls(client, "a\udc80", 1, 1)
    latin = redis.Redis(port=client.connection_pool.connection_kwargs["port"], encoding="latin-1")
    try:
        with pytest.raises(ValueError, match="cannot be encoded as latin-1"):
            cls(latin, "\u20ac", 1, 1)
        key = "caf\xe9:" + _new_key()
        assert cls(latin, key, 1, 1).try_acquire()
        assert latin.exists(key.encode("latin-1"))
    finally:
        latin.close()


@pytest.mark.parametrize("cls", [AsyncRedisTokenBucket, AsyncRedisSlidingWindow])
def test_async_a_key_the_client_cannot_encode_is_refused(aclient, cls):
    with pytest.raises(ValueError, match="cannot be encoded as utf-8"):
        cls(aclient, "x\ud800y", 1, 1)


def test_a_silent_server_is_a_timeout():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        c = redis.Redis(**_fast_client_kwargs(silent.getsockname()[1], timeout=0.1))
        try:
            strict = RedisTokenBucket(c, "k", 1.0, 1.0)
            with pytest.raises(BackendUnavailable) as info:
                strict.try_acquire()
            assert isinstance(info.value.__cause__, redis.exceptions.TimeoutError)
            assert RedisTokenBucket(c, "k", 1.0, 1.0, on_error="allow").try_acquire() is True
            assert RedisSlidingWindow(c, "k", 1, 1.0, on_error="deny").try_acquire() is False
        finally:
            c.close()


def test_other_redis_errors_propagate(client):
    key = _new_key()
    client.set(key, "not a bucket")
    lim = RedisTokenBucket(client, key, 1.0, 1.0, on_error="allow")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        lim.try_acquire()


def test_reset_deletes_the_shared_state(client):
    key = _new_key()
    lim = RedisSlidingWindow(client, key, 2, 60.0)
    assert lim.try_acquire(2) and not lim.try_acquire()
    lim.reset()
    assert client.exists(key) == 0
    st_ = lim.stats()
    assert (st_["allowed"], st_["denied"]) == (0, 0)
    assert lim.try_acquire(2)


# ---------------------------------------------------------------------------------------------
# Bad configuration


@pytest.mark.parametrize(
    ("cls", "args", "kwargs", "exc", "match"),
    [
        (RedisTokenBucket, ("k", 0, 1), {}, ValueError, "rate"),
        (RedisTokenBucket, ("k", -1.0, 1), {}, ValueError, "rate"),
        (RedisTokenBucket, ("k", math.nan, 1), {}, ValueError, "rate"),
        (RedisTokenBucket, ("k", math.inf, 1), {}, ValueError, "rate"),
        (RedisTokenBucket, ("k", "10", 1), {}, TypeError, "rate"),
        (RedisTokenBucket, ("k", 1, 0), {}, ValueError, "capacity"),
        (RedisTokenBucket, ("k", 1, math.inf), {}, ValueError, "capacity"),
        (RedisTokenBucket, ("k", 1, None), {}, TypeError, "capacity"),
        (RedisTokenBucket, ("", 1, 1), {}, ValueError, "key"),
        (RedisTokenBucket, (7, 1, 1), {}, TypeError, "key"),
        (RedisTokenBucket, ("k", 1, 1), {"on_error": "ignore"}, ValueError, "on_error"),
        (RedisSlidingWindow, ("k", 0, 1.0), {}, ValueError, "max_calls"),
        (RedisSlidingWindow, ("k", 2.5, 1.0), {}, ValueError, "max_calls"),
        (RedisSlidingWindow, ("k", math.inf, 1.0), {}, ValueError, "max_calls"),
        (RedisSlidingWindow, ("k", 5, 0), {}, ValueError, "window"),
        (RedisSlidingWindow, ("k", 5, math.nan), {}, ValueError, "window"),
        (RedisSlidingWindow, ("k", 5, "1s"), {}, TypeError, "window"),
        (RedisSlidingWindow, ("k", 5, 1.0), {"on_error": None}, ValueError, "on_error"),
    ],
)
def test_bad_configuration_is_a_clear_error(client, cls, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(client, *args, **kwargs)


@pytest.mark.asyncio
async def test_clients_of_the_wrong_kind_are_refused(client, aclient):
    with pytest.raises(TypeError, match="client must be a synchronous redis.Redis"):
        RedisTokenBucket(aclient, "k", 1, 1)
    with pytest.raises(TypeError, match=r"client must be a redis.asyncio.Redis"):
        AsyncRedisSlidingWindow(client, "k", 1, 1)
    with pytest.raises(TypeError, match="client"):
        RedisSlidingWindow(object(), "k", 1, 1)


@pytest.mark.parametrize(
    ("kind", "cost", "exc", "match"),
    [
        ("tb", -1, ValueError, "cost"),
        ("tb", math.nan, ValueError, "cost"),
        ("tb", math.inf, ValueError, "cost"),
        ("tb", 5.5, ValueError, "capacity"),
        ("tb", "1", TypeError, "cost"),
        ("sw", 1.5, ValueError, "whole number"),
        ("sw", 6, ValueError, "max_calls"),
        ("sw", -2, ValueError, "cost"),
        ("sw", None, TypeError, "cost"),
    ],
)
def test_bad_cost_is_refused_and_changes_nothing(client, kind, cost, exc, match):
    key = _new_key()
    lim = RedisTokenBucket(client, key, 1, 5) if kind == "tb" else RedisSlidingWindow(client, key, 5, 1)
    for call in (lim.try_acquire, lim.wait_time, lim.acquire):
        with pytest.raises(exc, match=match):
            call(cost)
    assert client.exists(key) == 0
    st_ = lim.stats()
    assert (st_["allowed"], st_["denied"], st_["errors"]) == (0, 0, 0)


@pytest.mark.parametrize(
    ("timeout", "exc"), [(-1, ValueError), (math.nan, ValueError), ("soon", TypeError)]
)
def test_bad_timeout_is_refused(client, timeout, exc):
    key = _new_key()
    lim = RedisTokenBucket(client, key, 1, 5)
    with pytest.raises(exc, match="timeout"):
        lim.acquire(1, timeout)
    assert client.exists(key) == 0


# ---------------------------------------------------------------------------------------------
# The asyncio twins


@pytest.mark.asyncio
async def test_async_token_bucket(aclient, client, sleeps):
    key = _new_key()
    lim = AsyncRedisTokenBucket(aclient, key, rate=4.0, capacity=2.0)
    t0 = _server_us(client)
    assert [await lim.try_acquire() for _ in range(3)] == [True, True, False]
    w = await lim.wait_time(2)
    t1 = _server_us(client)
    assert 0.5 - (t1 - t0) / 1e6 - 1e-9 <= w <= 0.5 + 1e-9
    assert await lim.acquire(1, timeout=0.01) is False
    assert sleeps.sleeps == []
    assert await lim.acquire(1) is True
    assert 1 <= len(sleeps.sleeps) <= 3
    assert await lim.acquire_async(0) is True
    assert _expiring(client.pttl(key), 500)
    with pytest.raises(ValueError, match="capacity"):
        await lim.try_acquire(3)


@pytest.mark.asyncio
async def test_async_sliding_window(aclient, client, sleeps):
    key = _new_key()
    lim = AsyncRedisSlidingWindow(aclient, key, max_calls=2, window=0.5)
    assert [await lim.try_acquire() for _ in range(3)] == [True, True, False]
    assert 0 < await lim.wait_time() <= 0.5
    assert await lim.acquire() is True
    assert len(sleeps.sleeps) >= 1
    assert _expiring(client.pttl(key), 500)
    st_ = lim.stats()
    assert st_["allowed"] == 3 and st_["in_window"] in (1, 2)
    await lim.reset()
    assert client.exists(key) == 0


@pytest.mark.asyncio
async def test_async_tasks_share_one_limit(server, client):
    rate, capacity = 20.0, 5.0
    key = _new_key()
    clients = [redis.asyncio.Redis(**_fast_client_kwargs(server.port)) for _ in range(4)]
    try:
        lims = [AsyncRedisTokenBucket(c, key, rate, capacity) for c in clients]
        loop = asyncio.get_running_loop()

        async def worker(lim):
            granted = attempts = 0
            end = loop.time() + 0.3
            while loop.time() < end:
                attempts += 1
                granted += await lim.try_acquire()
            return granted, attempts

        t0 = _server_us(client)
        out = await asyncio.gather(*(worker(lim) for lim in lims))
        t1 = _server_us(client)
    finally:
        for c in clients:
            await c.aclose()
    granted = sum(g for g, _ in out)
    assert capacity < granted <= capacity + rate * (t1 - t0) / 1e6
    assert granted < sum(a for _, a in out)


@pytest.mark.asyncio
async def test_async_restart_follows_on_error_and_recovers(own_server):
    c = redis.asyncio.Redis(**_fast_client_kwargs(own_server.port, timeout=1.0))
    try:
        strict = AsyncRedisSlidingWindow(c, "sw", 3, 1.0)
        fail_open = AsyncRedisTokenBucket(c, "tb", 10.0, 1.0, on_error="allow")
        fail_closed = AsyncRedisSlidingWindow(c, "sw2", 3, 1.0, on_error="deny")
        assert await strict.try_acquire() and await fail_open.try_acquire()
        own_server.stop()
        with pytest.raises(BackendUnavailable) as info:
            await strict.try_acquire()
        assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
        assert await fail_open.try_acquire() is True
        assert await fail_open.wait_time() == 0.0
        assert await fail_closed.acquire() is False
        assert await fail_closed.wait_time() == math.inf
        with pytest.raises(BackendUnavailable):
            await strict.reset()
        own_server.start()
        assert [await strict.try_acquire(2), await strict.try_acquire(2)] == [True, False]
        assert strict.stats()["script_loads"] == 2
        assert await fail_closed.try_acquire() is True
    finally:
        await c.aclose()


def test_stats_and_repr(client):
    lim = RedisTokenBucket(client, "stats-key", 3.0, 9.0, on_error="deny")
    st_ = lim.stats()
    assert st_["tokens"] is None and st_["allowed"] == 0 and st_["arrival_rate"] == 0.0
    assert lim.try_acquire(4)
    st_ = lim.stats()
    assert st_["tokens"] == pytest.approx(5.0, abs=0.1)
    assert (st_["rate"], st_["capacity"], st_["key"], st_["on_error"]) == (3.0, 9.0, "stats-key", "deny")
    assert st_["throughput"] > 0 and st_["arrival_rate"] >= st_["throughput"]
    lim.reset_stats()
    assert lim.stats()["allowed"] == 0
    assert repr(lim) == "RedisTokenBucket(key='stats-key', rate=3.0, capacity=9.0, on_error='deny')"
    assert (lim.rate, lim.capacity, lim.key, lim.on_error) == (3.0, 9.0, "stats-key", "deny")
    client.delete("stats-key")
    raw = RedisSlidingWindow(client, b"stats-key:\xff", 2, 5.0)  # bytes keys work too
    assert raw.try_acquire(2) and not raw.try_acquire()
    assert client.zcard(b"stats-key:\xff") == 2
    assert repr(raw) == "RedisSlidingWindow(key=b'stats-key:\\xff', max_calls=2, window=5.0, on_error='raise')"
    client.delete(b"stats-key:\xff")


@pytest.mark.parametrize(
    "options", [{"decode_responses": True}, {"protocol": 3}, {"protocol": 3, "decode_responses": True}]
)
def test_any_client_reply_format(server, options):
    c = redis.Redis(**_fast_client_kwargs(server.port), **options)
    try:
        key = _new_key()
        tb = RedisTokenBucket(c, key, 0.1, 2.0)
        assert [tb.try_acquire(1.5), tb.try_acquire(1)] == [True, False]
        assert 0 < tb.wait_time(1) <= 5.0
        sw = RedisSlidingWindow(c, key + ":sw", 1, 1.0)
        t0 = time.monotonic()
        assert [sw.try_acquire(), sw.try_acquire()] == [True, False]
        wait = sw.wait_time()
        assert 1.0 - (time.monotonic() - t0) - 0.01 < wait <= 1.0  # the call left the window's start
        assert sw.stats()["in_window"] == 1
    finally:
        c.close()


def test_extreme_configurations_work(client):
    key = _new_key()
    slow = RedisTokenBucket(client, key, rate=1e-9, capacity=1e9)
    assert slow.try_acquire(1e9) and not slow.try_acquire(1)
    assert slow.wait_time(1) == pytest.approx(1e9, rel=1e-6)
    assert client.pttl(key) > 10**15  # capped, yet effectively forever
    fast = RedisTokenBucket(client, key + ":fast", rate=1e12, capacity=1e-6)
    assert fast.try_acquire(1e-6) and fast.try_acquire(1e-6)  # full again within a microsecond
    long = RedisSlidingWindow(client, key + ":sw", max_calls=2, window=1e12)
    assert long.try_acquire(2) and not long.try_acquire()
    assert long.wait_time() == pytest.approx(1e12, rel=1e-9)
    assert client.pttl(key + ":sw") >= 10**15 - 1000  # the window, in ms
    short = RedisSlidingWindow(client, key + ":short", max_calls=1, window=1e-7)
    assert short.try_acquire()
    assert client.pttl(key + ":short") in (-2, 1)  # gone, or gone within a millisecond
