"""Shared caches (prodfast.redis.cache) against a real redis-server started on a loopback port.

Several processes are real spawned worker processes (a pool of four, tests/
test_redis_cache_workers.py); outages are a stopped, restarted or SIGSTOPped server of the
test's own.  Without redis-server the tests skip with the reason (PRODFAST_REQUIRE_REDIS=1: fail).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
import uuid
import warnings

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
    pytest.skip(
        "redis-py is not installed (pip install 'prodfast[redis]')", allow_module_level=True
    )

import redis_server  # noqa: E402
import test_redis_cache_workers as workers  # noqa: E402
from redis_server import fast_client_kwargs as _fast_client_kwargs  # noqa: E402

import prodfast.redis.cache as cache_module  # noqa: E402
from prodfast.redis import (  # noqa: E402
    AsyncRedisCache,
    AsyncTieredCache,
    BackendUnavailable,
    RedisCache,
    TieredCache,
)
from prodfast.redis._keys import decode_key, encode_key  # noqa: E402

# the Redis test files' one set of fixtures (tests/redis_server.py)
redis_binary, server, own_server = redis_server.redis_binary, redis_server.server, redis_server.own_server
client, aclient = redis_server.client, redis_server.aclient

MODEL = settings(
    max_examples=300 if env_flag("PRODFAST_LONG_TESTS") else 40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
BOUND = 1.0  # health_interval + health_timeout given to the caches below: the staleness bound


def _ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def _eventually(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _announced(tc, n=1):
    """Wait until tc's listener has applied n announcements (writes made before the test reads)."""
    assert _eventually(lambda: tc._invalidations >= n), "no announcement arrived"


@pytest.fixture
def tiered(core, client):
    """A factory of TieredCaches over the test server, closed at the end of the test."""
    made = []

    def make(namespace, maxsize=1000, local=None, **kwargs):
        tc = TieredCache(
            core.LRUCache(maxsize) if local is None else local,
            RedisCache(client, namespace, **kwargs),
            health_interval=BOUND / 2,
            health_timeout=BOUND / 2,
        )
        made.append(tc)
        return tc

    yield make
    for tc in made:
        tc.close()


@pytest.fixture(scope="module")
def pool():
    """Four spawned worker processes that start each scenario together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    with ctx.Pool(4, initializer=workers.init, initargs=(barrier,)) as p:
        yield p


def _on_all(pool, fn, *args, per_worker=None):
    """Run fn(*args[, per_worker(i)]) in the four workers at once; their results in order."""
    calls = [args + ((per_worker(i),) if per_worker else ()) for i in range(4)]
    pending = [pool.apply_async(fn, c) for c in calls]
    return [r.get(timeout=120) for r in pending]


# ---------------------------------------------------------------------------------------------
# Keys: encoding is a faithful, injective name for every supported key

_atoms = st.one_of(
    st.text(max_size=8),
    st.binary(max_size=8),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.sampled_from([int, str, type(None), threading.Thread, functools.partial]),  # typed keys
)
_keys = st.recursive(_atoms, lambda inner: st.tuples(inner, inner) | st.tuples(inner), max_leaves=6)


@MODEL
@given(a=_keys, b=_keys)
def test_key_encoding_round_trips_and_names_equal_keys_alike(a, b):
    for k in (a, b):
        back = decode_key(encode_key(k))
        assert back == k and hash(back) == hash(k)
    assert (encode_key(a) == encode_key(b)) == (a == b)


def test_decorator_keys_round_trip():
    k = functools._make_key((1, "a"), {"x": 2.5, "y": (None,)}, False)
    back = decode_key(encode_key(k))
    assert back == k and hash(back) == hash(k) and type(back) is type(k)
    d = {k: 1}
    assert d[back] == 1


def _local_class():
    class Local:
        pass

    return Local


@pytest.mark.parametrize(
    ("key", "exc"),
    [
        (object(), TypeError),
        ([1], TypeError),
        (frozenset(), TypeError),
        ((1, ...), TypeError),
        (math.nan, ValueError),
        ((1, math.nan), ValueError),
        (1j, TypeError),
        ((1, _local_class()), TypeError),
        ((type(len),), TypeError),
    ],
)
def test_unsupported_keys_are_refused(client, key, exc):
    rc = RedisCache(client, _ns())
    with pytest.raises(exc, match="key"):
        rc[key] = 1
    with pytest.raises(exc, match="key"):
        rc.get(key)
    assert len(rc) == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00(",
        b"\x00__import__('os')",
        b"\xff\xfe",
        b"\x00[1,",
        b"\x00{1}",
        b"\x00{'a','b'}",
        b"\x00{'no_such_module:X'}",
        b"\x00({'builtins:nope'},)",
    ],
)
def test_foreign_keys_do_not_decode(raw):
    with pytest.raises(ValueError, match="not an encoded cache key"):
        decode_key(raw)


# ---------------------------------------------------------------------------------------------
# RedisCache as a mapping, against a dict


_ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "get", "del", "pop", "in", "len", "get_many", "set_many", "update"]),
        st.sampled_from(["a", "b", 1, (1, "x"), b"raw", 2.0, ("typed", int)]),
        st.integers(0, 9),
    ),
    max_size=25,
)


def _check_against_dict(cache, ops):
    model: dict = {}
    for op, key, value in ops:
        if op == "set":
            cache[key] = value
            model[key] = value
        elif op == "get":
            assert cache.get(key, "absent") == model.get(key, "absent")
        elif op == "del":
            if key in model:
                del cache[key]
                del model[key]
            else:
                with pytest.raises(KeyError):
                    del cache[key]
        elif op == "pop":
            assert cache.pop(key, None) == model.pop(key, None)
        elif op == "in":
            assert (key in cache) == (key in model)
        elif op == "len":
            assert len(cache) == len(model)
        elif op == "get_many":
            want = [key, "a", "zz"]
            assert cache.get_many(want) == {k: model[k] for k in want if k in model}
        elif op == "set_many":
            batch = {key: value, "b": value + 1}
            cache.set_many(batch)
            model.update(batch)
        else:
            cache.update([(key, value)], b=value + 2)
            model.update([(key, value)], b=value + 2)
    assert dict(cache.items()) == model
    assert set(cache) == set(model)  # keys come back equal (2.0 comes back as 2)


@MODEL
@given(ops=_ops)
def test_redis_cache_behaves_as_a_dict(client, ops):
    _check_against_dict(RedisCache(client, _ns()), ops)


@MODEL
@given(ops=_ops)
def test_tiered_cache_behaves_as_a_dict(tiered, ops):
    _check_against_dict(tiered(_ns(), maxsize=3), ops)  # a small local tier: evictions too


def test_values_and_stats(client):
    rc = RedisCache(client, _ns(), ttl=60)
    assert rc.stats()["size"] == 0
    rc["x"] = {"nested": [1, 2.5, None]}
    assert rc["x"] == {"nested": [1, 2.5, None]}
    assert rc.get("y") is None and rc.get("y", 7) == 7
    with pytest.raises(KeyError):
        rc["y"]
    s = rc.stats()
    assert (s["hits"], s["misses"], s["size"], s["sets"], s["ttl"]) == (1, 3, 1, 1, 60.0)
    assert s["hit_rate"] == pytest.approx(1 / 4)
    rc.reset_stats()
    assert rc.stats()["hits"] == 0 and rc["x"]
    twin = RedisCache(client, rc.namespace)
    assert rc == rc and rc != twin and len({rc, twin}) == 2  # identity: no scan to compare
    assert (
        repr(rc)
        == f"RedisCache(namespace={rc.namespace!r}, ttl=60.0, serializer='pickle', on_error='raise')"
    )
    assert client.get(rc.redis_key("x")) is not None
    rc.clear()
    assert len(rc) == 0 and client.get(rc.redis_key("x")) is None


def test_namespaces_do_not_collide(client):
    a, ab, a_b = RedisCache(client, "ns"), RedisCache(client, "ns-b"), RedisCache(client, "ns/b")
    for c in (a, ab, a_b):
        c.clear()
    a["b:x"] = 1  # stored at ns:b:x: no other namespace's key can be written there
    ab["x"] = 2
    a_b["x"] = 3
    assert (a.get("x"), ab["x"], a_b["x"], a["b:x"]) == (None, 2, 3, 1)
    assert (len(a), len(ab), len(a_b)) == (1, 1, 1)
    a.get_or_compute("lease-me", lambda: 4)  # its lease key is outside the value namespace
    assert sorted(a) == ["b:x", "lease-me"]
    ab.clear()
    assert (len(a), len(ab), len(a_b)) == (2, 0, 1)
    for c in (a, a_b):
        c.clear()


def test_many_items_scan_clear_and_batches(client):
    rc = RedisCache(client, _ns())
    rc.set_many({i: i * i for i in range(2500)})
    assert len(rc) == 2500
    assert sorted(rc) == list(range(2500))
    assert rc.get_many([0, 5, 2499, 2500]) == {0: 0, 5: 25, 2499: 2499**2}
    rc.clear()  # more than one UNLINK batch
    assert len(rc) == 0
    rc.set_many({})
    assert rc.get_many([]) == {}


@pytest.mark.parametrize("serializer", ["pickle", "json", "msgpack"])
def test_serializers(client, serializer):
    if serializer == "msgpack":
        pytest.importorskip("msgpack")
    rc = RedisCache(client, _ns(), serializer=serializer)
    value = {"text": "héllo", "n": [1, 2.5, None, True]}
    rc["k"] = value
    assert rc["k"] == value and rc.serializer == serializer
    if serializer == "json":
        assert json.loads(client.get(rc.redis_key("k"))) == value


def test_msgpack_missing_names_the_install_command(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "msgpack", None)  # makes `import msgpack` fail
    with pytest.raises(ImportError, match="pip install msgpack"):
        RedisCache(client, "ns", serializer="msgpack")


def test_custom_serializer_and_bad_ones(client):
    class Upper:
        @staticmethod
        def dumps(v):
            return v.upper().encode()

        @staticmethod
        def loads(b):
            return b.decode()

    rc = RedisCache(client, _ns(), serializer=Upper)
    rc["k"] = "abc"
    assert rc["k"] == "ABC"

    class NotBytes:
        dumps = staticmethod(str)
        loads = staticmethod(str)

    bad = RedisCache(client, _ns(), serializer=NotBytes)
    with pytest.raises(TypeError, match="returned str, not bytes"):
        bad["k"] = 1
    assert len(bad) == 0
    with pytest.raises(ValueError, match="serializer"):
        RedisCache(client, "x", serializer="yaml")
    with pytest.raises(TypeError, match="serializer"):
        RedisCache(client, "x", serializer=object())
    js = RedisCache(client, _ns(), serializer="json")
    with pytest.raises(TypeError):
        js["k"] = object()  # json cannot store it: nothing is written
    assert "k" not in js


def test_corrupt_bytes_are_a_miss_and_one_warning(client, caplog, tiered):
    rc = RedisCache(client, _ns())
    client.set(rc.redis_key("k"), b"\x80\x05garbage")
    client.set(rc.redis_key("j"), b"not json")
    with caplog.at_level(logging.WARNING, logger="prodfast.redis"):
        assert rc.get("k", "dflt") == "dflt"
    assert len([r for r in caplog.records if "could not load" in r.getMessage()]) == 1
    assert rc.get_many(["k", "j"]) == {}
    assert rc.stats()["decode_errors"] == 3 and rc.stats()["misses"] == 3
    assert rc.get_or_compute("k", lambda: "fresh") == "fresh"  # replaces the bad bytes
    assert rc["k"] == "fresh"
    js = RedisCache(client, rc.namespace, serializer="json")
    assert js.get("j") is None and js.get("k") is None  # pickle bytes are corrupt to json
    tc = tiered(rc.namespace)
    client.set(rc.redis_key("k"), b"\x00\x01")
    assert _eventually(lambda: "k" not in tc.local)
    assert tc.get("k") is None and "k" not in tc.local


def test_ttls_are_kept_by_redis(client):
    rc = RedisCache(client, _ns(), ttl=0.2)
    rc["default"] = 1
    rc.set("short", 2, ttl=0.03)
    rc.set_many({"m1": 1, "m2": 2}, ttl=0.03)
    assert 0 < client.pttl(rc.redis_key("default")) <= 200
    assert 0 < client.pttl(rc.redis_key("short")) <= 30
    assert 0 < client.pttl(rc.redis_key("m1")) <= 30
    forever = RedisCache(client, rc.namespace)
    forever["f"] = 3
    assert client.pttl(rc.redis_key("f")) == -1
    assert forever.set("tiny", 4, ttl=1e-6) is True and client.pttl(rc.redis_key("tiny")) in (
        -2,
        0,
        1,
    )
    time.sleep(0.06)
    assert rc.get_many(["short", "m1", "m2"]) == {} and rc["default"] == 1
    with pytest.raises(ValueError, match="ttl"):
        rc.set("bad", 1, ttl=0)
    with pytest.raises(TypeError, match="ttl"):
        rc.set("bad", 1, ttl="1")
    assert "bad" not in rc


def test_tiered_local_copy_leaves_when_redis_expires_it(tiered):
    tc = tiered(_ns())
    writer = RedisCache(tc.remote.client, tc.remote.namespace)
    writer.set("k", 1, ttl=0.1)
    _announced(tc)
    assert tc.get("k") == 1 and "k" in tc.local
    assert _eventually(lambda: "k" not in tc.local, timeout=3)  # Redis announced the expiry
    assert tc.get("k") is None and tc.remote.client.exists(tc.remote.redis_key("k")) == 0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"namespace": ""}, ValueError, "namespace"),
        ({"namespace": "a:b"}, ValueError, "namespace"),
        ({"namespace": "a*"}, ValueError, "namespace"),
        ({"namespace": b"ns"}, TypeError, "namespace"),
        ({"ttl": 0}, ValueError, "ttl"),
        ({"ttl": -1}, ValueError, "ttl"),
        ({"ttl": math.inf}, ValueError, "ttl"),
        ({"ttl": "60"}, TypeError, "ttl"),
        ({"ttl": True}, TypeError, "ttl"),
        ({"ttl": 10**400}, ValueError, "ttl"),
        ({"on_error": "allow"}, ValueError, "on_error"),
        ({"lease": 0}, ValueError, "lease"),
        ({"lease": None}, TypeError, "lease"),
        ({"wait_timeout": -1}, ValueError, "wait_timeout"),
    ],
)
def test_bad_configuration_is_a_clear_error(client, kwargs, exc, match):
    args = {"namespace": "ok", **kwargs}
    ns = args.pop("namespace")
    with pytest.raises(exc, match=match):
        RedisCache(client, ns, **args)


@pytest.mark.asyncio
async def test_clients_of_the_wrong_kind_are_refused(server, client, aclient, core):
    with pytest.raises(TypeError, match="synchronous redis.Redis"):
        RedisCache(aclient, "ns")
    with pytest.raises(TypeError, match="redis.asyncio.Redis"):
        AsyncRedisCache(client, "ns")
    with pytest.raises(TypeError, match="client"):
        RedisCache(object(), "ns")
    decoding = redis.Redis(**_fast_client_kwargs(server.port), decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisCache(decoding, "ns")
    decoding.close()
    with pytest.raises(TypeError, match="remote must be a RedisCache"):
        TieredCache(core.LRUCache(2), AsyncRedisCache(aclient, "ns"))
    with pytest.raises(TypeError, match="remote must be an AsyncRedisCache"):
        AsyncTieredCache(core.LRUCache(2), RedisCache(client, "ns"))
    with pytest.raises(TypeError, match="local"):
        TieredCache(object(), RedisCache(client, "ns"))
    with pytest.raises(ValueError, match="health_interval"):
        TieredCache(core.LRUCache(2), RedisCache(client, "ns"), health_interval=0)
    with pytest.raises(TypeError, match="compute"):
        RedisCache(client, "ns").get_or_compute("k", 5)


@pytest.mark.parametrize("options", [{"protocol": 3}, {"protocol": 2}])
def test_either_protocol(server, options, core):
    c = redis.Redis(**_fast_client_kwargs(server.port), **options)
    try:
        with TieredCache(core.LRUCache(10), RedisCache(c, _ns())) as tc:
            assert tc.tracking
            tc["k"] = [1]
            assert tc["k"] == [1] and tc.get_or_compute("j", lambda: 2) == 2
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# TieredCache: local hits, invalidation, the fill race


@settings(MODEL, max_examples=15)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from([0, 1]),
            st.sampled_from(["set", "pop", "get", "get_or_compute"]),
            st.sampled_from(["a", (1, "b")]),
            st.integers(0, 9),
        ),
        max_size=20,
    )
)
def test_two_tiers_agree_once_the_announcements_are_in(tiered, ops):
    ns = _ns()
    tiers = [tiered(ns), tiered(ns)]
    model: dict = {}
    writes = 0  # each write is announced once to every tier (its own included)
    for who, op, key, value in ops:
        tc = tiers[who]
        if op == "set":
            tc[key] = value
            model[key] = value
            writes += 1
        elif op == "pop":
            present = key in model
            assert tc.pop(key, None) == model.pop(key, None)
            writes += present  # deleting nothing changes nothing
        elif op == "get_or_compute":
            computed = key not in model
            assert tc.get_or_compute(key, lambda v=value: v) == model.setdefault(key, value)
            writes += computed
        for t in tiers:
            _announced(t, writes)
        for t in tiers:  # both tiers read the model's value, from either tier
            assert t.get(key, "absent") == model.get(key, "absent")


def test_tiered_reads_local_first_then_redis(tiered, client):
    tc = tiered(_ns())
    other = RedisCache(client, tc.remote.namespace)
    other["k"] = "v"
    _announced(tc)
    assert tc["k"] == "v"  # from Redis, now copied
    assert tc.local.peek("k") == "v"
    for _ in range(5):
        assert tc["k"] == "v"
    s = tc.stats()
    assert (s["remote_hits"], s["local_hits"], s["misses"]) == (1, 5, 0)
    assert tc.get("absent", 0) == 0 and tc.stats()["misses"] == 1
    assert tc.stats()["remote"]["hits"] == 1 and s["tracking"]


def test_a_write_elsewhere_drops_every_local_copy(tiered, client):
    ns = _ns()
    a, b, c = tiered(ns), tiered(ns), tiered(ns)
    a["k"] = 1
    assert all(_eventually(lambda t=t: t.get("k") == 1 and "k" in t.local) for t in (b, c))
    a["k"] = 2  # an overwrite
    assert _eventually(lambda: "k" not in b.local and "k" not in c.local, BOUND)
    assert b["k"] == 2 and c["k"] == 2
    del b["k"]  # a delete
    assert _eventually(lambda: "k" not in a.local and "k" not in c.local, BOUND)
    assert a.get("k") is None and c.get("k") is None
    c["x"] = 1
    assert _eventually(lambda: a.get("x") == 1 and "x" in a.local)
    client.set(a.remote.redis_key("x"), a.remote._dumps(9))  # any writer at all
    assert _eventually(lambda: "x" not in a.local, BOUND) and a["x"] == 9
    assert _eventually(lambda: "x" in a.local)
    client.flushdb()
    assert _eventually(lambda: len(a.local) == 0, BOUND)
    assert a.stats()["invalidations"] >= 3 and a.stats()["flushes"] >= 2


def test_a_read_racing_an_invalidation_does_not_store_the_old_value(tiered, client):
    tc = tiered(_ns())
    writer = RedisCache(client, tc.remote.namespace)
    writer["k"] = "old"
    _announced(tc)
    real_fetch = tc.remote._fetch

    def racing_fetch(key):
        value = real_fetch(key)  # reads "old" ...
        before = tc.stats()["invalidations"]
        writer["k"] = "new"  # ... and the key changes before the reader stores it
        assert _eventually(lambda: tc.stats()["invalidations"] > before)
        return value

    tc.remote._fetch = racing_fetch
    assert tc["k"] == "old"
    tc.remote._fetch = real_fetch
    assert "k" not in tc.local
    assert tc["k"] == "new" and tc.local.peek("k") == "new"


def test_tiered_writes_go_to_both_and_failures_leave_no_local_copy(tiered, client):
    tc = tiered(_ns(), serializer="json")
    tc["k"] = [1]
    assert tc.remote["k"] == [1]
    with pytest.raises(TypeError):
        tc["bad"] = {1, 2}  # json cannot store a set: neither tier keeps it
    assert "bad" not in tc.local and "bad" not in tc.remote
    with pytest.raises(TypeError, match="key"):
        tc[object()] = 1
    with pytest.raises(ValueError, match="ttl"):
        tc.set("t", 1, ttl=-1)
    assert "t" not in tc.local and "t" not in tc.remote
    tc.set_many({"a": 1, "b": 2}, ttl=5)
    assert tc.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert 0 < client.pttl(tc.remote.redis_key("a")) <= 5000
    assert tc.pop("a") == 1 and "a" not in tc.local and tc.pop("a", None) is None
    tc.clear()
    assert len(tc) == 0 and len(tc.local) == 0


def test_a_local_tier_with_its_own_ttl(core, client, clock):
    local = core.TTLCache(10, ttl=5, timer=clock)
    with TieredCache(local, RedisCache(client, _ns())) as tc:
        tc.remote["k"] = 1
        _announced(tc)
        assert tc["k"] == 1 and "k" in local
        clock.tick(6)
        assert "k" not in local and tc["k"] == 1  # the local copy expired; Redis still has it


def test_an_on_evict_that_reads_the_tier_does_not_deadlock(core, client):
    seen = []
    holder = {}

    def on_evict(key, value):
        seen.append((key, value))
        holder["tc"].get("k")  # re-enters the tier while it is storing a copy

    local = core.LRUCache(1, on_evict=on_evict)
    with TieredCache(local, RedisCache(client, _ns())) as tc:
        holder["tc"] = tc
        writer = RedisCache(client, tc.remote.namespace)
        writer.set_many({"k": 1, "j": 2})
        _announced(tc, 2)
        assert tc["k"] == 1 and "k" in local
        assert tc["j"] == 2  # storing j evicts k: on_evict runs inside the tier's fill
    assert seen and seen[0] == ("k", 1)


def test_a_dropped_tiered_cache_stops_its_thread(core, client):
    tc = TieredCache(core.LRUCache(2), RedisCache(client, _ns()), health_interval=0.05)
    thread = tc._thread
    del tc
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_empties_its_local_tier_and_listens_on_its_own(tiered, client, server):
    tc = tiered(_ns())
    writer = RedisCache(client, tc.remote.namespace)
    writer["k"] = 1
    _announced(tc)
    assert tc["k"] == 1 and "k" in tc.local
    with warnings.catch_warnings():  # Python 3.12+ warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        status = 1
        try:
            emptied = "k" not in tc.local
            other = RedisCache(redis.Redis(**_fast_client_kwargs(server.port)), tc.remote.namespace)
            if emptied and _eventually(lambda: tc.tracking, 3):
                ok = _eventually(lambda: tc.get("k") == 1 and "k" in tc.local)
                other["k"] = 2
                if ok and _eventually(lambda: "k" not in tc.local, BOUND) and tc["k"] == 2:
                    status = 0
        finally:
            os._exit(status)
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    assert tc.tracking  # the parent's channel is untouched by the child
    assert _eventually(lambda: tc.get("k") == 2 and "k" in tc.local)
    writer["k"] = 3
    assert _eventually(lambda: "k" not in tc.local, BOUND) and tc["k"] == 3


def test_a_server_that_refuses_tracking_leaves_the_tier_bypassed(core, client, caplog, monkeypatch):
    class Refusing:  # a server without CLIENT TRACKING (Redis < 6), or an ACL that forbids it
        def send_command(self, *args):
            pass

        def read_response(self):
            raise redis.exceptions.ResponseError("ERR unknown subcommand 'TRACKING'")

        def disconnect(self):
            pass

    monkeypatch.setattr(cache_module, "_listener_factory", lambda *args: Refusing)
    with caplog.at_level(logging.WARNING, logger="prodfast.redis"):
        tc = TieredCache(
            core.LRUCache(10), RedisCache(client, _ns()), health_interval=0.05, health_timeout=0.05
        )
        try:
            tc["k"] = 1
            assert tc["k"] == 1 and not tc.tracking and len(tc.local) == 0
            time.sleep(0.2)  # several refusals: one warning
        finally:
            tc.close()
    refusals = [r for r in caplog.records if "refused invalidation tracking" in r.getMessage()]
    assert len(refusals) == 1


# ---------------------------------------------------------------------------------------------
# Single flight in one process (threads), exceptions, leases


def test_threads_compute_once(client, core):
    rc = RedisCache(client, _ns())
    calls = []
    start = threading.Barrier(6)

    def compute():
        calls.append(1)
        time.sleep(0.05)
        return "v"

    results = []

    def run(cache):
        start.wait()
        results.append(cache.get_or_compute("k", compute))

    with TieredCache(core.LRUCache(10), RedisCache(client, rc.namespace)) as tc:
        threads = [threading.Thread(target=run, args=(rc if i % 2 else tc,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == ["v"] * 6 and len(calls) == 1
    assert rc.stats()["waited"] + tc.remote.stats()["waited"] == 5


def test_an_exception_propagates_stores_nothing_and_frees_the_key(client):
    rc = RedisCache(client, _ns())

    def boom():
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError, match="model down"):
        rc.get_or_compute("k", boom)
    assert "k" not in rc
    assert client.exists(rc._lease_key(rc.redis_key("k"))) == 0
    t0 = time.monotonic()
    assert rc.get_or_compute("k", lambda: 1) == 1
    assert time.monotonic() - t0 < 0.5  # nobody waited for a lease
    assert rc.stats()["computed"] == 1


def test_a_crashed_owner_blocks_the_key_for_at_most_the_lease(client):
    rc = RedisCache(client, _ns(), lease=0.3)
    assert rc.wait_timeout == 0.6
    lease_key = rc._lease_key(rc.redis_key("k"))
    client.set(lease_key, b"crashed-owner", px=300)  # an owner that died holding the lease
    t0 = time.monotonic()
    assert rc.get_or_compute("k", lambda: "mine") == "mine"
    waited = time.monotonic() - t0
    assert 0.2 < waited < 1.5
    assert rc.stats()["lease_timeouts"] == 0 and rc.stats()["computed"] == 1


def test_a_waiter_gives_up_after_wait_timeout_and_computes(client):
    rc = RedisCache(client, _ns(), lease=10.0, wait_timeout=0.1)
    client.set(rc._lease_key(rc.redis_key("k")), b"slow-owner", px=10_000)
    t0 = time.monotonic()
    assert rc.get_or_compute("k", lambda: "mine") == "mine"
    assert 0.08 < time.monotonic() - t0 < 1.0
    assert rc.stats()["lease_timeouts"] == 1 and rc["k"] == "mine"


def test_a_waiter_returns_the_owners_value(client):
    rc = RedisCache(client, _ns())
    lease_key = rc._lease_key(rc.redis_key("k"))
    client.set(lease_key, b"other", px=5000)

    def owner_finishes():
        time.sleep(0.1)
        client.set(rc.redis_key("k"), rc._dumps("theirs"))
        client.delete(lease_key)

    t = threading.Thread(target=owner_finishes)
    t.start()
    assert rc.get_or_compute("k", lambda: pytest.fail("must not compute")) == "theirs"
    t.join()
    assert rc.stats()["waited"] == 1 and rc.stats()["computed"] == 0


def test_the_value_gets_the_cache_ttl(client):
    rc = RedisCache(client, _ns(), ttl=30)
    rc.get_or_compute("k", lambda: 1)
    assert 0 < client.pttl(rc.redis_key("k")) <= 30_000


# ---------------------------------------------------------------------------------------------
# Four processes


def test_four_processes_share_values(pool, server, core):
    ns = _ns()
    out = _on_all(pool, workers.share, server.port, ns, core.__name__, per_worker=lambda i: i)
    for first, second, tuples, local_hits in out:
        assert first == second == {i: {"from": i} for i in range(4)}
        assert tuples == {i: [i] * 3 for i in range(4)}
        assert local_hits >= 3  # the second pass (all but, at most, a just-invalidated key)


def test_invalidation_reaches_every_process(pool, server, core):
    ns, rounds = _ns(), 15
    out = _on_all(
        pool,
        workers.invalidation_role,
        server.port,
        ns,
        core.__name__,
        rounds,
        BOUND,
        per_worker=lambda i: i,
    )
    delays = [d for r in out[1:] for d in r]  # worker 0 is the writer
    assert len(delays) == 3 * rounds
    from_start = workers.summary([s for s, _ in delays])
    from_return = workers.summary([r for _, r in delays])
    print(
        f"invalidation delay, {len(delays)} copies, median/max ms: from the write's start "
        f"{from_start[0]:.2f}/{from_start[1]:.2f}, "
        f"from its return {from_return[0]:.2f}/{from_return[1]:.2f}"
    )
    assert from_return[1] < BOUND * 1000


@pytest.mark.parametrize("kind", ["redis", "tiered", "aredis", "atiered"])
def test_four_processes_compute_each_key_once(pool, server, client, core, kind):
    ns, keys = _ns(), [1, 2, 3]
    out = _on_all(pool, workers.single_flight, server.port, ns, core.__name__, kind, keys, 0.05)
    expected = [{"key": k, "pid_free_value": k * 2} for k in keys]
    assert out == [expected] * 4
    assert [int(client.get(f"{ns}-calls:{k}")) for k in keys] == [1, 1, 1]


@pytest.mark.parametrize("kind", ["redis", "tiered"])
def test_cached_runs_once_per_key_across_four_processes(pool, server, client, core, kind):
    ns, keys = _ns(), [1, 2, 3]
    out = _on_all(pool, workers.decorated, server.port, ns, core.__name__, kind, keys, 0.05)
    assert [got for got, _ in out] == [[2, 4, 6]] * 4
    assert [int(client.get(f"{ns}-calls:{k}")) for k in keys] == [1, 1, 1]
    hits = sum(h for _, (h, _m) in out)
    misses = sum(m for _, (_h, m) in out)
    assert (hits, misses) == (9, 3)  # a miss is a call whose own compute ran


@pytest.mark.parametrize("kind", ["aredis", "atiered"])
def test_async_cached_runs_once_per_key_across_four_processes(pool, server, client, core, kind):
    ns, keys = _ns(), [1, 2, 3]
    out = _on_all(pool, workers.adecorated, server.port, ns, core.__name__, kind, keys, 0.05)
    assert out == [[2, 4, 6]] * 4
    assert [int(client.get(f"{ns}-calls:{k}")) for k in keys] == [1, 1, 1]


def test_cached_over_a_tiered_cache_in_one_process(tiered, client):
    from prodfast import cached

    tc = tiered(_ns())
    calls = []

    @cached(tc, info=True)
    def double(x):
        calls.append(x)
        return 2 * x

    assert [double(1), double(1), double(2)] == [2, 2, 4]
    assert calls == [1, 2] and tc.remote[(1,)] == 2
    info = double.cache_info()
    assert (info.hits, info.misses) == (1, 2)
    other = RedisCache(client, tc.remote.namespace)
    other[(1,)] = 99  # a write by anyone reaches the decorated function's view
    assert _eventually(lambda: double(1) == 99, BOUND)
    assert calls == [1, 2]


# ---------------------------------------------------------------------------------------------
# Outages


def test_restart_follows_on_error_and_recovers(own_server, core):
    c = redis.Redis(**_fast_client_kwargs(own_server.port, timeout=0.5))
    strict = RedisCache(c, "ns")
    lenient = RedisCache(c, "ns", on_error="miss")
    tc = TieredCache(
        core.LRUCache(10), RedisCache(c, "ns"), health_interval=0.2, health_timeout=0.2
    )
    try:
        strict["k"] = 1
        _announced(tc)
        assert tc["k"] == 1 and "k" in tc.local
        own_server.stop()
        with pytest.raises(BackendUnavailable) as info:
            strict["k"]
        assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
        assert info.value.cause is info.value.__cause__ and info.value.key == "k"
        for call in (
            lambda: strict.set("k", 2),
            lambda: strict.get_many(["k"]),
            lambda: "k" in strict,
            lambda: len(strict),
            lambda: strict.get_or_compute("k", lambda: 3),
        ):
            with pytest.raises(BackendUnavailable):
                call()
        assert lenient.get("k", "miss") == "miss" and "k" not in lenient and len(lenient) == 0
        lenient["k"] = 5  # skipped
        assert lenient.set("k", 5) is False and lenient.set_many({"a": 1}) is False
        assert lenient.get_many(["k", "a"]) == {}
        assert lenient.get_or_compute("k", lambda: 6) == 6
        with pytest.raises(BackendUnavailable):
            del lenient["k"]  # a delete is never dropped silently
        with pytest.raises(BackendUnavailable):
            lenient.clear()
        assert lenient.stats()["errors"] == 10 and lenient.stats()["size"] is None
        # the listener noticed: the local tier is flushed and bypassed
        assert _eventually(lambda: not tc.tracking, 2) and len(tc.local) == 0
        with pytest.raises(BackendUnavailable):
            tc["k"]
        own_server.start()  # an empty server on the same port
        assert _eventually(lambda: tc.tracking, 3)
        assert strict.get("k") is None and lenient.get("k") is None
        tc["k"] = 7
        assert strict["k"] == 7 and tc["k"] == 7
        assert _eventually(lambda: tc["k"] == 7 and "k" in tc.local)
        strict["k"] = 8  # invalidation works again after the reconnect
        assert _eventually(lambda: "k" not in tc.local, BOUND) and tc["k"] == 8
    finally:
        tc.close()
        c.close()


def test_a_stopped_server_is_a_timeout_and_a_flush(own_server, core):
    c = redis.Redis(**_fast_client_kwargs(own_server.port, timeout=0.2))
    lenient = RedisCache(c, "ns", on_error="miss")
    tc = TieredCache(
        core.LRUCache(10),
        RedisCache(c, "ns", on_error="miss"),
        health_interval=0.2,
        health_timeout=0.2,
    )
    pid = own_server._proc.pid
    try:
        lenient["k"] = 1
        assert _eventually(lambda: tc.get("k") == 1 and "k" in tc.local)
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        assert _eventually(lambda: not tc.tracking, 2)
        assert time.monotonic() - t0 <= 0.4 + 0.3  # health_interval + health_timeout, + slack
        assert len(tc.local) == 0
        assert tc.get("k", "miss") == "miss"  # bypassed; Redis times out: a miss
        assert lenient.stats()["errors"] == 0 and tc.stats()["remote"]["errors"] >= 1
        os.kill(pid, signal.SIGCONT)
        assert _eventually(lambda: tc.tracking, 3)
        assert _eventually(lambda: tc.get("k") == 1 and "k" in tc.local)
    finally:
        os.kill(pid, signal.SIGCONT)
        tc.close()
        c.close()


def test_a_killed_channel_flushes_the_local_tier_and_comes_back(tiered, client):
    tc = tiered(_ns())
    writer = RedisCache(client, tc.remote.namespace)
    writer["k"] = "old"
    _announced(tc)
    assert tc["k"] == "old" and "k" in tc.local
    flushes = tc.stats()["flushes"]
    name = f"prodfast-tracking:{tc.remote.namespace}"
    (listener,) = [c["id"] for c in client.client_list() if c["name"] == name]
    client.client_kill_filter(_id=listener)
    writer["k"] = "new"  # its announcement has nowhere to go
    assert _eventually(lambda: tc.stats()["flushes"] >= flushes + 2, 3)  # lost, then back
    assert tc.tracking and tc["k"] == "new"
    assert _eventually(lambda: tc.get("k") == "new" and "k" in tc.local)
    writer["k"] = "newer"  # tracking was enabled again on the new connection
    assert _eventually(lambda: "k" not in tc.local, BOUND) and tc["k"] == "newer"


def test_a_write_redis_did_not_take_leaves_no_local_copy(tiered, monkeypatch):
    tc = tiered(_ns(), on_error="miss")
    assert tc.set("k", 1) is True and tc.set_many({"m": 1}) is True

    def refused(*args, **kwargs):
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(tc.remote.client, "set", refused)
    monkeypatch.setattr(
        tc.remote.client,
        "pipeline",
        lambda **kw: types.SimpleNamespace(set=lambda *a, **k: None, execute=refused),
    )
    assert tc.set("j", 2) is False and "j" not in tc.local
    assert tc.set_many({"a": 1, "b": 2}) is False and "a" not in tc.local and "b" not in tc.local
    monkeypatch.undo()
    assert tc.get("j") is None and tc.get_many(["a", "b"]) == {}


def test_other_redis_errors_propagate(client):
    rc = RedisCache(client, _ns(), on_error="miss")
    client.rpush(rc.redis_key("k"), b"x")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        rc.get("k")


# ---------------------------------------------------------------------------------------------
# asyncio twins


@pytest.mark.asyncio
async def test_async_redis_cache(aclient, client):
    rc = AsyncRedisCache(aclient, _ns(), ttl=60)
    await rc.set("a", [1])
    await rc.set_many({"b": 2, (3,): 3}, ttl=1)
    assert await rc.get("a") == [1] and await rc.get("zz", 0) == 0
    assert await rc.get_many(["a", "b", (3,), "c"]) == {"a": [1], "b": 2, (3,): 3}
    assert await rc.contains("a") and not await rc.contains("zz")
    assert await rc.size() == 3
    assert sorted([repr(k) async for k in rc.keys()]) == sorted(map(repr, ["a", "b", (3,)]))
    assert await rc.delete("a") and not await rc.delete("a")
    assert await rc.pop("b") == 2 and await rc.pop("b", None) is None
    with pytest.raises(KeyError):
        await rc.pop("b")
    s = await rc.stats()
    assert s["size"] == 1 and s["hits"] == 4 and s["misses"] == 2
    client.set(rc.redis_key("bad"), b"\x80junk")
    assert await rc.get("bad") is None and (await rc.stats())["decode_errors"] == 1
    await rc.clear()
    assert await rc.size() == 0


@pytest.mark.asyncio
async def test_async_tiered_cache_and_single_flight(aclient, client, core):
    ns = _ns()
    async with AsyncTieredCache(core.LRUCache(10), AsyncRedisCache(aclient, ns)) as tc:
        other = RedisCache(client, ns)
        other["k"] = 1
        await asyncio.to_thread(_announced, tc)
        assert await tc.get("k") == 1 and "k" in tc.local
        other["k"] = 2
        assert await asyncio.to_thread(_eventually, lambda: "k" not in tc.local, BOUND)
        assert await tc.get("k") == 2
        await tc.set("j", 3)
        assert other["j"] == 3 and await tc.contains("j")
        assert await tc.get_many(["k", "j", "x"]) == {"k": 2, "j": 3}
        await tc.set_many({"m": 1})
        assert await tc.delete("m") and not await tc.delete("m")
        await tc.set("p", 5)
        assert await tc.pop("p") == 5 and "p" not in tc.local and await tc.pop("p", None) is None
        calls = 0

        async def compute():
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return "v"

        got = await asyncio.gather(*(tc.aget_or_compute("sf", compute) for _ in range(5)))
        assert got == ["v"] * 5 and calls == 1
        with pytest.raises(ZeroDivisionError):
            await tc.aget_or_compute("err", lambda: asyncio.sleep(0, 1 / 0))
        s = await tc.stats()
        assert s["tracking"] and s["remote"]["computed"] == 1
        await tc.clear()
        assert await tc.remote.size() == 0


@pytest.mark.asyncio
async def test_async_restart_follows_on_error_and_recovers(own_server, core):
    c = redis.asyncio.Redis(**_fast_client_kwargs(own_server.port, timeout=0.5))
    strict = AsyncRedisCache(c, "ns")
    lenient = AsyncRedisCache(c, "ns", on_error="miss")
    try:
        await strict.set("k", 1)
        own_server.stop()
        with pytest.raises(BackendUnavailable):
            await strict.get("k")
        with pytest.raises(BackendUnavailable):
            await strict.aget_or_compute("k", lambda: asyncio.sleep(0, 2))
        assert await lenient.get("k", "miss") == "miss"
        assert await lenient.aget_or_compute("k", lambda: asyncio.sleep(0, 2)) == 2
        await lenient.set("k", 3)
        with pytest.raises(BackendUnavailable):
            await lenient.delete("k")
        own_server.start()
        assert await strict.get("k") is None
        await strict.set("k", 4)
        assert await lenient.get("k") == 4
    finally:
        await c.aclose()
