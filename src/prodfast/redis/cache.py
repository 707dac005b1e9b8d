"""Caches shared by many worker processes and hosts through Redis.

An LLM service runs many workers (gunicorn/uvicorn processes, pods).  With a local cache each
worker pays for the same embedding or completion again, and N workers that meet one cold key at
once call the model N times.  ``prodfast.redis`` offers three layers, each with an asyncio twin:

* ``RedisCache(client, namespace)`` (``AsyncRedisCache``): a mapping whose items live in Redis,
  seen alike by every process that uses the same server and namespace;
* ``TieredCache(local, remote)`` (``AsyncTieredCache``): a prodfast ``LRUCache``/``TTLCache`` in
  front of a ``RedisCache``, so a repeated key costs a local lookup, not a round trip, while a
  write or delete anywhere drops the stale local copies everywhere;
* ``get_or_compute(key, compute)`` on both (``aget_or_compute`` on the twins): a cold key is
  computed by one process while the others wait for its value.  ``cached(...)`` uses it when it
  is given one of these caches, so a decorated function runs once per key across all workers.

Sharing a cache across workers
------------------------------
::

    import redis
    from prodfast import LRUCache, cached
    from prodfast.redis import RedisCache, TieredCache

    client = redis.Redis(host="cache", socket_timeout=1.0)
    embeddings = TieredCache(LRUCache(10_000), RedisCache(client, "emb", ttl=86_400))

    @cached(embeddings)
    def embed(text: str) -> list[float]:
        ...  # runs once per text, whichever worker asks first

Every worker builds the same objects at start-up.  A ``TieredCache`` made before a fork
(``gunicorn --preload``) empties its local tier in the child and starts the child's own
listener (redis-py opens new connections in a child by itself).  Processes share items when
they use the same Redis database and ``namespace``; different namespaces never see each
other's items.

RedisCache
----------
``RedisCache(client, namespace, *, ttl=None, serializer="pickle", on_error="raise",
lease=30.0, wait_timeout=None)`` over a ``redis.Redis`` created with
``decode_responses=False`` (the default).  It is a ``MutableMapping``: ``cache[key]``,
``cache.get(key, default)``, ``cache[key] = value``, ``cache.set(key, value, ttl=None)``,
``del cache[key]``, ``cache.delete(key)``, ``key in cache``, ``pop``, ``clear()``, and
``get_many(keys)`` / ``set_many(mapping, ttl=None)`` in one round trip each.  Each item is one
Redis string at ``<namespace>:<encoded key>``.

* Keys: str, bytes, int, float, bool, None, classes importable by name, and tuples of them
  (what the decorators' key functions build, typed keys included).  A str key is stored as its
  UTF-8 text; others as a canonical literal (``1``, ``1.0`` and ``True`` name one item, as they
  do in a dict).  Any other key is a ``TypeError`` naming the key.  ``namespace`` is made of
  letters, digits and ``. _ - /`` (so no namespace is a prefix of another's keys).
* TTL: ``ttl`` seconds (default: none) applies to every write; ``set(key, value, ttl=s)``
  overrides it for one item.  Expiry is Redis's own (``SET ... PX``): exact to the millisecond
  on reads, whichever process wrote the item.
* Values are turned into bytes by ``serializer``: ``"pickle"`` (default, any picklable value),
  ``"json"`` or ``"msgpack"`` (needs ``pip install msgpack``), or any object with
  ``dumps(value) -> bytes`` and ``loads(bytes) -> value``.  **pickle runs code while it loads:
  use it only when every writer to the Redis server is trusted**; otherwise use json or msgpack.
  A stored value that fails to load (corrupt bytes, another serializer, a class that no longer
  imports) is a miss plus one logged warning (logger ``prodfast.redis``), never an exception.
* ``len(cache)``, iteration, ``keys()``/``items()``/``values()``, ``clear()`` and the ``size`` in
  ``stats()`` walk the namespace with ``SCAN MATCH <namespace>:*``: O(number of keys in the whole
  database) server work spread over many round trips, for inspection and maintenance, not for
  the request path.  They see a moving keyspace as ``SCAN`` does (an item present throughout is
  seen once; items written meanwhile may or may not be).
* ``stats()``: ``hits``, ``misses``, ``hit_rate``, ``size``, ``ttl``, ``sets``, ``deletes``,
  ``errors`` (outages), ``decode_errors``, ``computed`` / ``waited`` / ``lease_timeouts``
  (single-flight, below), as counted by this process's object.

TieredCache and its staleness bound
-----------------------------------
``TieredCache(local, remote, *, health_interval=1.0, health_timeout=1.0)`` puts any prodfast
local cache in front of a ``RedisCache``.  A read looks in ``local`` first (a C-speed lookup
with the compiled core), then in Redis, and copies what it found into ``local``.  A write goes
to ``local`` and then Redis; a delete to both.  The local tier's own policy (size bound,
``TTLCache`` ttl) still applies to the copies it keeps.

Invalidation uses Redis's server-assisted client tracking in broadcast mode: each
``TieredCache`` keeps one extra connection (named ``prodfast-tracking:<namespace>`` in ``CLIENT
LIST``) on which it ran ``CLIENT TRACKING ON BCAST PREFIX <namespace>: REDIRECT <its own id>``
and subscribed to ``__redis__:invalidate``; a background thread reads it.  Redis then
announces every change to a key of the namespace, whoever made it: a write or delete by any
process, an item that expired or was evicted, ``FLUSHDB``.  The thread
drops the named keys (on a flush, everything) from the local tier.  A process's own writes are
announced back to it as well, so after ``set`` the local copy lives until that echo arrives and
the next read fetches the item once from Redis.  A local miss that reads Redis while an
announcement for that key arrives does not store what it read (it may be the old value).

Staleness bound: once a write or delete to Redis has returned, another process's local tier can
serve the old value only until the announcement reaches it.  Redis queues the announcement
before it answers the writer, so it usually lands before the writer has its answer.  Measured
with ``tests/test_redis_cache.py::test_invalidation_reaches_every_process`` (4 processes on one
host over loopback, a 2-core machine with a load average of 6-7; 45 copies per run, 6 runs):
from the return of the writer's ``set()`` to the copy leaving the other processes' local tiers,
median -0.1 to +0.2 ms, max 0.1 to 7 ms; from the start of the ``set()``, median 0.6 to 0.8 ms.
A busy process adds up to ``sys.getswitchinterval()`` (5 ms) before its listener thread runs
(longer while a C extension holds the GIL).
Whatever the network does, the thread also sends ``PING`` on the connection when it has been
quiet for ``health_interval`` seconds and must read the answer within ``health_timeout``
seconds; as announcements and answers arrive in order, an answer proves that every change made
before the ``PING`` has been applied.  So the bound is ``health_interval + health_timeout``
seconds (default 2 s) in the worst case, and about a millisecond in practice.

When the connection fails (Redis restarted or stopped, a timeout, a network cut), the local tier
is flushed at once and then **bypassed**: every read goes to Redis (following ``on_error``) and
nothing is copied into ``local`` until the thread has reconnected and re-enabled tracking, when
the tier is flushed once more and used again.  Reconnection is retried with backoff (from
50 ms up to 1 s).  The constructor waits up to ``health_timeout`` for the first connection.
Tracking needs Redis 6 or later; a server that refuses it (older, or an ACL without ``CLIENT``)
leaves the local tier bypassed, with one logged warning, and the cache works through Redis
alone.  ``stats()`` has ``hits``/``misses``/``hit_rate`` of the tier as a whole,
``local_hits``, ``remote_hits``, ``size`` (of the local tier), ``invalidations``, ``flushes``,
``tracking`` (whether the local tier is in use) and both caches' own ``stats()`` under
``local`` and ``remote``.  ``close()`` (or ``with``) stops the thread and closes its connection.
``AsyncTieredCache`` has the same listener thread; its methods that may reach Redis are
coroutines.

Expiry is Redis's: Redis announces an expired item when it deletes it (on access, or by its
background sampling, normally within about 100 ms, longer in a huge keyspace).  When a local
copy must never outlive the item's TTL, use a ``TTLCache`` with that ttl as the local tier.
The local tier must not define ``__missing__`` (a hit is ``local[key]``).

Single-flight across processes
------------------------------
``get_or_compute(key, compute)`` returns the stored value or calls ``compute()`` (a zero-argument
callable; for ``aget_or_compute`` it returns an awaitable), stores and returns its result.  An
exception from ``compute`` propagates and nothing is stored.  One Lua script per attempt reads the
value and, if it is missing, takes a lease on it: ``SET <namespace>#lease:<key> <token> NX PX
<lease>``.  The process that holds the lease computes; storing the value and releasing the lease
(only if the token is still its own) is a second script.  The others poll with the same script,
sleeping 2 ms, 4 ms, ... up to 50 ms (never past the lease's remaining time) until the value
appears, or the lease is gone (its owner failed or crashed: the next poller takes the lease and
computes).  A crashed owner therefore blocks its key for at most ``lease`` seconds (default 30):
choose a lease longer than the computation, because a computation that outlives its lease may
run a second time in another process.  A waiter that has waited ``wait_timeout`` seconds
(default: twice ``lease``, so that the lease of a crashed owner expires and is taken over by one
waiter first) stops waiting, computes the value itself and stores it (counted in
``lease_timeouts``).  Threads of one process coordinate the same way.

When Redis is unreachable or slow
---------------------------------
``on_error`` applies when redis-py raises ``ConnectionError`` or ``TimeoutError`` (give the
client ``socket_timeout``; pass ``retry=Retry(NoBackoff(), 0)`` to skip redis-py's own retries):

* ``"raise"`` (default): raise ``prodfast.redis.BackendUnavailable`` (``.cause`` and
  ``__cause__`` are the redis-py error, ``.key`` the cache key), also when the outage comes
  while ``get_or_compute`` stores the value it computed (its lease then expires by itself);
* ``"miss"``: reads behave as misses (``get`` returns the default, ``key in cache`` is False,
  ``get_or_compute`` calls ``compute()`` without storing), writes (``set``, ``set_many``) are
  skipped and return False (a ``TieredCache`` then keeps no local copy either), ``len`` is 0.
  Deletes (``del``, ``delete``, ``pop``, ``clear``) still raise ``BackendUnavailable``:
  skipping one would let a value the caller removed come back.

Other Redis errors (a key of another type, a read-only replica, auth) propagate unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import numbers
import os
import pickle
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import redis
import redis.connection
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._backend import impl as _impl
from ._common import BackendUnavailable, check_client
from ._keys import decode_key, encode_key

__all__ = ["AsyncRedisCache", "AsyncTieredCache", "RedisCache", "TieredCache"]

log = logging.getLogger("prodfast.redis")

_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_ON_ERROR = ("raise", "miss")
_MISSING: Any = object()
if TYPE_CHECKING:

    class _TierFront:
        """TieredCache's compiled base (prodfast._core._TierFront, or its twin), as typed."""

        local: Any
        _missing: Any

        def get(self, key: Any, default: Any = None) -> Any: ...
        def __getitem__(self, key: Any) -> Any: ...

else:
    _TierFront = _impl._TierFront
_DOWN: Any = object()  # what a guarded call returns during an outage under on_error="miss"
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-/]+")
_SCAN_COUNT = 1000
_POLL_FIRST, _POLL_MAX = 0.002, 0.05

# KEYS = value, lease; ARGV = token, lease ms.  {1, value} | {2} lease taken | {0, lease ms left}
_CLAIM_LUA = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0, redis.call('PTTL', KEYS[2])}
"""
# KEYS = value, lease; ARGV = token, value bytes, px ('0': no expiry).  Stores, then releases.
_FULFIL_LUA = """
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""
# KEYS = lease; ARGV = token.  Releases the lease if it is still ours.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# -- serializers -------------------------------------------------------------------------------


class _Serializer:
    __slots__ = ("name", "dumps", "loads")

    def __init__(self, name: str, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]):
        self.name = name
        self.dumps = dumps
        self.loads = loads


def _pickle_dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode()


def _make_serializer(serializer: Any) -> _Serializer:
    if serializer == "pickle":
        return _Serializer("pickle", _pickle_dumps, pickle.loads)
    if serializer == "json":
        return _Serializer("json", _json_dumps, json.loads)
    if serializer == "msgpack":
        try:
            import msgpack  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError as exc:
            raise ImportError("serializer='msgpack' needs msgpack: pip install msgpack") from exc

        def dumps(value: Any) -> bytes:
            return msgpack.packb(value, use_bin_type=True)

        def loads(data: bytes) -> Any:
            return msgpack.unpackb(data, raw=False)

        return _Serializer("msgpack", dumps, loads)
    if isinstance(serializer, str):
        raise ValueError(
            f"serializer must be 'pickle', 'json', 'msgpack' or an object with dumps and loads, "
            f"got {serializer!r}"
        )
    dumps_ = getattr(serializer, "dumps", None)
    loads_ = getattr(serializer, "loads", None)
    if not (callable(dumps_) and callable(loads_)):
        raise TypeError(
            f"serializer must be 'pickle', 'json', 'msgpack' or an object with dumps and loads, "
            f"got {type(serializer).__name__}"
        )
    return _Serializer(getattr(serializer, "__name__", type(serializer).__name__), dumps_, loads_)


# -- argument checks ---------------------------------------------------------------------------


def _check_client(client: Any, asynchronous: bool, cls: str) -> None:
    check_client(client, asynchronous, cls, ("execute_command", "get", "set", "register_script"))
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {})
    if kwargs.get("decode_responses"):
        raise ValueError(
            "client must be created with decode_responses=False: the cache stores bytes"
        )


def _check_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, got {type(namespace).__name__}")
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"namespace must be non-empty letters, digits and . _ - /, got {namespace!r}"
        )
    return namespace


def _seconds(name: str, value: Any, *, none_ok: bool = False) -> float:
    """A finite number of seconds > 0 (TypeError/ValueError naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        want = "None or a number of seconds" if none_ok else "a number of seconds"
        raise TypeError(f"{name} must be {want}, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:  # an int too large for a float
        v = math.inf
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def _optional_seconds(name: str, value: Any) -> float | None:
    return None if value is None else _seconds(name, value, none_ok=True)


def _px(ttl: float | None) -> int:
    """Milliseconds for SET PX (at least 1), or 0 for no expiry."""
    return 0 if ttl is None else max(1, math.ceil(ttl * 1000.0))


def _check_on_error(on_error: Any) -> str:
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'raise' or 'miss', got {on_error!r}")
    return on_error


def _check_compute(compute: Any) -> None:
    if not callable(compute):
        raise TypeError(f"compute must be a zero-argument callable, got {type(compute).__name__}")


def _as_dict(other: Any, kwargs: dict[str, Any]) -> dict[Any, Any]:
    items = dict(other.items() if isinstance(other, Mapping) else other)
    items.update(kwargs)
    return items


# -- RedisCache: what the sync and async classes share ------------------------------------------


class _RedisCacheBase:
    def __init__(
        self,
        client: Any,
        namespace: Any,
        ttl: Any,
        serializer: Any,
        on_error: Any,
        lease: Any,
        wait_timeout: Any,
        asynchronous: bool,
    ) -> None:
        _check_client(client, asynchronous, type(self).__name__)
        self._namespace = _check_namespace(namespace)
        self._ttl = _optional_seconds("ttl", ttl)
        self._serializer = _make_serializer(serializer)
        self._on_error = _check_on_error(on_error)
        self._lease = _seconds("lease", lease)
        wait = _optional_seconds("wait_timeout", wait_timeout)
        self._wait_timeout = 2.0 * self._lease if wait is None else wait
        self._client = client
        self._prefix = namespace.encode() + b":"
        self._lease_prefix = namespace.encode() + b"#lease:"
        self._claim = client.register_script(_CLAIM_LUA)
        self._fulfil = client.register_script(_FULFIL_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._counts_lock = threading.Lock()
        self._zero_counts()

    def _zero_counts(self) -> None:
        self._hits = self._misses = self._sets = self._deletes = 0
        self._errors = self._decode_errors = 0
        self._computed = self._waited = self._lease_timeouts = 0

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            setattr(self, name, getattr(self, name) + n)

    # -- properties --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        return self._client

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def ttl(self) -> float | None:
        return self._ttl

    @property
    def on_error(self) -> str:
        return self._on_error

    @property
    def serializer(self) -> str:
        return self._serializer.name

    @property
    def lease(self) -> float:
        return self._lease

    @property
    def wait_timeout(self) -> float:
        return self._wait_timeout

    def redis_key(self, key: Any) -> bytes:
        """The Redis key that holds ``key``'s value: ``<namespace>:<encoded key>``."""
        return self._prefix + encode_key(key)

    def _lease_key(self, rkey: bytes) -> bytes:
        return self._lease_prefix + rkey[len(self._prefix) :]

    def _key_of(self, rkey: bytes) -> Any:
        """The cache key of a Redis key of this namespace, or _MISSING for a foreign one."""
        if not rkey.startswith(self._prefix):
            return _MISSING
        try:
            return decode_key(rkey[len(self._prefix) :])
        except ValueError:
            return _MISSING

    # -- values ------------------------------------------------------------------------------

    def _dumps(self, value: Any) -> bytes:
        data = self._serializer.dumps(value)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"serializer {self._serializer.name!r} returned {type(data).__name__}, not bytes"
            )
        return bytes(data)

    def _loads(self, key: Any, data: bytes) -> Any:
        """The value stored as ``data``, or _MISSING (and one warning) when it does not load."""
        try:
            return self._serializer.loads(data)
        except Exception as exc:  # corrupt bytes must never break the caller: treat as a miss
            self._count("_decode_errors")
            log.warning(
                "prodfast.redis: could not load the value of key %r in namespace %r with %s "
                "(%s: %s); treated as a miss",
                key,
                self._namespace,
                self._serializer.name,
                type(exc).__name__,
                exc,
            )
            return _MISSING

    def _found(self, key: Any, data: Any) -> Any:
        """Count a lookup whose reply was ``data`` (None: absent) and return value or _MISSING."""
        value = _MISSING if data is None else self._loads(key, data)
        self._count("_misses" if value is _MISSING else "_hits")
        return value

    def _ttl_arg(self, ttl: Any) -> int:
        return _px(self._ttl if ttl is None else _seconds("ttl", ttl))

    # -- outages -----------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException, key: Any) -> BackendUnavailable:
        return BackendUnavailable(
            f"Redis unavailable for cache namespace {self._namespace!r}: {exc}", exc, key
        )

    def _outage(self, exc: BaseException, key: Any, *, strict: bool = False) -> Any:
        """An outage: raise under "raise" (or when ``strict``), else return _DOWN."""
        self._count("_errors")
        if strict or self._on_error == "raise":
            raise self._unavailable(exc, key) from exc
        return _DOWN

    # -- statistics --------------------------------------------------------------------------

    def _stats(self, size: int | None) -> dict[str, Any]:
        with self._counts_lock:
            hits, misses = self._hits, self._misses
            out = {
                "hits": hits,
                "misses": misses,
                "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
                "size": size,
                "ttl": self._ttl,
                "sets": self._sets,
                "deletes": self._deletes,
                "errors": self._errors,
                "decode_errors": self._decode_errors,
                "computed": self._computed,
                "waited": self._waited,
                "lease_timeouts": self._lease_timeouts,
                "namespace": self._namespace,
                "on_error": self._on_error,
            }
        return out

    def reset_stats(self) -> None:
        """Zero this object's counters; the items in Redis are untouched."""
        with self._counts_lock:
            self._zero_counts()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(namespace={self._namespace!r}, ttl={self._ttl!r}, "
            f"serializer={self._serializer.name!r}, on_error={self._on_error!r})"
        )

    def _scan_args(self) -> dict[str, Any]:
        return {"match": self._prefix + b"*", "count": _SCAN_COUNT}

    def _new_token(self) -> bytes:
        return uuid.uuid4().hex.encode()

    def _claimed(self, key: Any, reply: Any) -> tuple[int, Any]:
        """(state, value or ms left) from the claim script's reply; state 1 only if it loaded."""
        state = int(reply[0])
        if state == 1:
            value = self._loads(key, reply[1])
            if value is _MISSING:  # a stored value that does not load: recompute, as for a miss
                return 3, None
            return 1, value
        if state == 0:
            return 0, max(0, int(reply[1]))
        return 2, None


class RedisCache(_RedisCacheBase, MutableMapping):
    """A mapping whose items live in Redis under ``<namespace>:``, shared by every process.

    ``RedisCache(client, namespace, *, ttl=None, serializer="pickle", on_error="raise",
    lease=30.0, wait_timeout=None)`` over a ``redis.Redis``.  The module docstring of
    ``prodfast.redis.cache`` explains keys, TTLs, serializers (pickle: trusted data only),
    ``on_error`` and ``get_or_compute``.
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        *,
        ttl: float | None = None,
        serializer: Any = "pickle",
        on_error: str = "raise",
        lease: float = 30.0,
        wait_timeout: float | None = None,
    ) -> None:
        _RedisCacheBase.__init__(
            self, client, namespace, ttl, serializer, on_error, lease, wait_timeout, False
        )

    # Equal only to itself, and hashable: comparing contents would scan Redis.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    # -- guarded calls -----------------------------------------------------------------------

    def _call(
        self, key: Any, fn: Callable[..., Any], *args: Any, strict: bool = False, **kw: Any
    ) -> Any:
        try:
            return fn(*args, **kw)
        except _OUTAGE as exc:
            return self._outage(exc, key, strict=strict)

    def _fetch(self, key: Any) -> Any:
        """The value for key, or _MISSING (absent, unloadable, or Redis down under "miss")."""
        rkey = self.redis_key(key)
        data = self._call(key, self._client.get, rkey)
        if data is _DOWN:
            self._count("_misses")
            return _MISSING
        return self._found(key, data)

    # -- mapping -----------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        value = self._fetch(key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        """The value for key, or default.  One round trip."""
        value = self._fetch(key)
        return default if value is _MISSING else value

    def __contains__(self, key: Any) -> bool:
        reply = self._call(key, self._client.exists, self.redis_key(key))
        return reply is not _DOWN and int(reply) > 0

    def __setitem__(self, key: Any, value: Any) -> None:
        self.set(key, value)

    def set(self, key: Any, value: Any, ttl: float | None = None) -> bool:
        """Store value for key, expiring after ``ttl`` seconds (None: the cache's ttl).

        True when stored; False when skipped (``on_error="miss"`` during an outage).
        """
        rkey = self.redis_key(key)
        px = self._ttl_arg(ttl)
        data = self._dumps(value)
        if self._call(key, self._client.set, rkey, data, px=px or None) is _DOWN:
            return False
        self._count("_sets")
        return True

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def delete(self, key: Any) -> bool:
        """Remove key; True if it was there.  Raises BackendUnavailable in an outage."""
        removed = int(self._call(key, self._client.delete, self.redis_key(key), strict=True))
        if removed:
            self._count("_deletes")
        return removed > 0

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove key and return its value (GETDEL: one atomic round trip)."""
        data = self._call(key, self._client.getdel, self.redis_key(key), strict=True)
        value = _MISSING if data is None else self._loads(key, data)
        if data is not None:
            self._count("_deletes")
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return value

    def _scan(self, strict: bool) -> Iterator[bytes]:
        try:
            yield from self._client.scan_iter(**self._scan_args())
        except _OUTAGE as exc:
            self._outage(exc, None, strict=strict)

    def __iter__(self) -> Iterator[Any]:
        for rkey in self._scan(False):
            key = self._key_of(rkey)
            if key is not _MISSING:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self._scan(False))

    def clear(self) -> None:
        """Delete every item of the namespace (SCAN + UNLINK, in batches)."""
        batch: list[bytes] = []
        for rkey in self._scan(True):
            batch.append(rkey)
            if len(batch) >= _SCAN_COUNT:
                self._call(None, self._client.unlink, *batch, strict=True)
                batch = []
        if batch:
            self._call(None, self._client.unlink, *batch, strict=True)

    # -- batches -----------------------------------------------------------------------------

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The items found among ``keys`` as a dict (MGET: one round trip)."""
        keys = list(keys)
        if not keys:
            return {}
        rkeys = [self.redis_key(k) for k in keys]
        replies = self._call(keys, self._client.mget, rkeys)
        if replies is _DOWN:
            self._count("_misses", len(keys))
            return {}
        out = {}
        for key, data in zip(keys, replies, strict=True):
            value = self._found(key, data)
            if value is not _MISSING:
                out[key] = value
        return out

    def set_many(self, mapping: Mapping[Any, Any], ttl: float | None = None) -> bool:
        """Store every item of ``mapping`` (one pipelined round trip, not a transaction).

        True when stored; False when skipped (``on_error="miss"`` during an outage).
        """
        px = self._ttl_arg(ttl)
        items = [(self.redis_key(k), self._dumps(v)) for k, v in mapping.items()]
        if not items:
            return True
        pipe = self._client.pipeline(transaction=False)
        for rkey, data in items:
            pipe.set(rkey, data, px=px or None)
        if self._call(list(mapping), pipe.execute) is _DOWN:
            return False
        self._count("_sets", len(items))
        return True

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """``dict.update`` in one round trip (``set_many``)."""
        self.set_many(_as_dict(other, kwargs))

    # -- single flight -----------------------------------------------------------------------

    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The value for key, or ``compute()``'s result, computed once across all processes."""
        _check_compute(compute)
        return self._get_or_compute(key, compute)[0]

    def _get_or_compute(self, key: Any, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """(value, whether this call ran compute)."""
        rkey = self.redis_key(key)
        lease_key = self._lease_key(rkey)
        token = self._new_token()
        lease_ms = _px(self._lease)
        deadline = time.monotonic() + self._wait_timeout
        delay = _POLL_FIRST
        waited = False
        while True:
            reply = self._call(key, self._claim, keys=[rkey, lease_key], args=[token, lease_ms])
            if reply is _DOWN:  # on_error="miss": compute, store nothing
                self._count("_misses")
                return compute(), True
            state, got = self._claimed(key, reply)
            if state == 1:
                self._count("_hits")
                if waited:
                    self._count("_waited")
                return got, False
            if state == 2:
                self._count("_misses")
                return self._compute_and_store(key, rkey, lease_key, token, compute), True
            if state == 3:  # bytes that do not load: drop them, then claim the key as missing
                self._call(key, self._client.delete, rkey)
            left = deadline - time.monotonic()
            if left <= 0:
                self._count("_misses")
                self._count("_lease_timeouts")
                return self._compute_and_store(key, rkey, lease_key, None, compute), True
            if state == 0:
                waited = True
                time.sleep(min(delay, left, max(got, 1) / 1000.0))
                delay = min(delay * 2, _POLL_MAX)

    def _compute_and_store(
        self,
        key: Any,
        rkey: bytes,
        lease_key: bytes,
        token: bytes | None,
        compute: Callable[[], Any],
    ) -> Any:
        try:
            value = compute()
        except BaseException:
            if token is not None:
                self._call(key, self._release, keys=[lease_key], args=[token])
            raise
        self._count("_computed")
        data = self._dumps(value)
        px = _px(self._ttl)
        if token is None:
            reply = self._call(key, self._client.set, rkey, data, px=px or None)
        else:  # store and give the lease back in one script
            reply = self._call(key, self._fulfil, keys=[rkey, lease_key], args=[token, data, px])
        if reply is not _DOWN:
            self._count("_sets")
        return value

    # -- statistics --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This object's counters, plus ``size`` (a SCAN of the namespace; None in an outage)."""
        try:
            size: int | None = sum(1 for _ in self._client.scan_iter(**self._scan_args()))
        except _OUTAGE:
            size = None
        return self._stats(size)


class AsyncRedisCache(_RedisCacheBase):
    """``RedisCache`` over a ``redis.asyncio.Redis``: every method that talks to Redis is a
    coroutine (``await cache.get(key)``, ``await cache.set(key, value)``, ``await
    cache.delete(key)``, ``await cache.contains(key)``, ``await cache.size()``, ``async for key in
    cache.keys()``, ``await cache.clear()``, ``get_many``, ``set_many``, ``aget_or_compute``)."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        *,
        ttl: float | None = None,
        serializer: Any = "pickle",
        on_error: str = "raise",
        lease: float = 30.0,
        wait_timeout: float | None = None,
    ) -> None:
        _RedisCacheBase.__init__(
            self, client, namespace, ttl, serializer, on_error, lease, wait_timeout, True
        )

    async def _call(
        self, key: Any, fn: Callable[..., Any], *args: Any, strict: bool = False, **kw: Any
    ) -> Any:
        try:
            return await fn(*args, **kw)
        except _OUTAGE as exc:
            return self._outage(exc, key, strict=strict)

    async def _fetch(self, key: Any) -> Any:
        rkey = self.redis_key(key)
        data = await self._call(key, self._client.get, rkey)
        if data is _DOWN:
            self._count("_misses")
            return _MISSING
        return self._found(key, data)

    async def get(self, key: Any, default: Any = None) -> Any:
        """The value for key, or default.  One round trip."""
        value = await self._fetch(key)
        return default if value is _MISSING else value

    async def contains(self, key: Any) -> bool:
        reply = await self._call(key, self._client.exists, self.redis_key(key))
        return reply is not _DOWN and int(reply) > 0

    async def set(self, key: Any, value: Any, ttl: float | None = None) -> bool:
        """Store value for key, expiring after ``ttl`` seconds (None: the cache's ttl).

        True when stored; False when skipped (``on_error="miss"`` during an outage).
        """
        rkey = self.redis_key(key)
        px = self._ttl_arg(ttl)
        data = self._dumps(value)
        if await self._call(key, self._client.set, rkey, data, px=px or None) is _DOWN:
            return False
        self._count("_sets")
        return True

    async def delete(self, key: Any) -> bool:
        """Remove key; True if it was there.  Raises BackendUnavailable in an outage."""
        removed = int(await self._call(key, self._client.delete, self.redis_key(key), strict=True))
        if removed:
            self._count("_deletes")
        return removed > 0

    async def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove key and return its value (GETDEL: one atomic round trip)."""
        data = await self._call(key, self._client.getdel, self.redis_key(key), strict=True)
        value = _MISSING if data is None else self._loads(key, data)
        if data is not None:
            self._count("_deletes")
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return value

    async def _scan(self, strict: bool) -> Any:
        try:
            async for rkey in self._client.scan_iter(**self._scan_args()):
                yield rkey
        except _OUTAGE as exc:
            self._outage(exc, None, strict=strict)

    async def keys(self) -> Any:
        """The keys of the namespace (an async iterator over SCAN)."""
        async for rkey in self._scan(False):
            key = self._key_of(rkey)
            if key is not _MISSING:
                yield key

    async def size(self) -> int:
        """The number of items in the namespace (a SCAN)."""
        n = 0
        async for _ in self._scan(False):
            n += 1
        return n

    async def clear(self) -> None:
        """Delete every item of the namespace (SCAN + UNLINK, in batches)."""
        batch: list[bytes] = []
        async for rkey in self._scan(True):
            batch.append(rkey)
            if len(batch) >= _SCAN_COUNT:
                await self._call(None, self._client.unlink, *batch, strict=True)
                batch = []
        if batch:
            await self._call(None, self._client.unlink, *batch, strict=True)

    async def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The items found among ``keys`` as a dict (MGET: one round trip)."""
        keys = list(keys)
        if not keys:
            return {}
        rkeys = [self.redis_key(k) for k in keys]
        replies = await self._call(keys, self._client.mget, rkeys)
        if replies is _DOWN:
            self._count("_misses", len(keys))
            return {}
        out = {}
        for key, data in zip(keys, replies, strict=True):
            value = self._found(key, data)
            if value is not _MISSING:
                out[key] = value
        return out

    async def set_many(self, mapping: Mapping[Any, Any], ttl: float | None = None) -> bool:
        """Store every item of ``mapping`` (one pipelined round trip, not a transaction).

        True when stored; False when skipped (``on_error="miss"`` during an outage).
        """
        px = self._ttl_arg(ttl)
        items = [(self.redis_key(k), self._dumps(v)) for k, v in mapping.items()]
        if not items:
            return True
        pipe = self._client.pipeline(transaction=False)
        for rkey, data in items:
            pipe.set(rkey, data, px=px or None)
        if await self._call(list(mapping), pipe.execute) is _DOWN:
            return False
        self._count("_sets", len(items))
        return True

    async def aget_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The value for key, or ``await compute()``, computed once across all processes."""
        _check_compute(compute)
        return (await self._aget_or_compute(key, compute))[0]

    async def _aget_or_compute(self, key: Any, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """(value, whether this call ran compute)."""
        rkey = self.redis_key(key)
        lease_key = self._lease_key(rkey)
        token = self._new_token()
        lease_ms = _px(self._lease)
        deadline = time.monotonic() + self._wait_timeout
        delay = _POLL_FIRST
        waited = False
        while True:
            reply = await self._call(
                key, self._claim, keys=[rkey, lease_key], args=[token, lease_ms]
            )
            if reply is _DOWN:
                self._count("_misses")
                return await compute(), True
            state, got = self._claimed(key, reply)
            if state == 1:
                self._count("_hits")
                if waited:
                    self._count("_waited")
                return got, False
            if state == 2:
                self._count("_misses")
                return await self._compute_and_store(key, rkey, lease_key, token, compute), True
            if state == 3:
                await self._call(key, self._client.delete, rkey)
            left = deadline - time.monotonic()
            if left <= 0:
                self._count("_misses")
                self._count("_lease_timeouts")
                return await self._compute_and_store(key, rkey, lease_key, None, compute), True
            if state == 0:
                waited = True
                await asyncio.sleep(min(delay, left, max(got, 1) / 1000.0))
                delay = min(delay * 2, _POLL_MAX)

    async def _compute_and_store(
        self,
        key: Any,
        rkey: bytes,
        lease_key: bytes,
        token: bytes | None,
        compute: Callable[[], Any],
    ) -> Any:
        try:
            value = await compute()
        except BaseException:
            if token is not None:
                await self._call(key, self._release, keys=[lease_key], args=[token])
            raise
        self._count("_computed")
        data = self._dumps(value)
        px = _px(self._ttl)
        if token is None:
            reply = await self._call(key, self._client.set, rkey, data, px=px or None)
        else:
            reply = await self._call(
                key, self._fulfil, keys=[rkey, lease_key], args=[token, data, px]
            )
        if reply is not _DOWN:
            self._count("_sets")
        return value

    async def stats(self) -> dict[str, Any]:
        """This object's counters, plus ``size`` (a SCAN of the namespace; None in an outage)."""
        try:
            size: int | None = 0
            async for _ in self._client.scan_iter(**self._scan_args()):
                size += 1  # type: ignore[operator]
        except _OUTAGE:
            size = None
        return self._stats(size)


# -- the invalidation listener -----------------------------------------------------------------

_TRACKING_CHANNEL = b"__redis__:invalidate"
_SYNC_CONNECTIONS = {
    "Connection": redis.connection.Connection,
    "SSLConnection": redis.connection.SSLConnection,
    "UnixDomainSocketConnection": redis.connection.UnixDomainSocketConnection,
}
# what the dedicated connection takes over from the client's pool (plus every ssl_* setting);
# the rest (protocol, timeouts, retries, RESP3-only features) it sets for itself
_PORTABLE = (
    "host",
    "port",
    "path",
    "db",
    "username",
    "password",
    "credential_provider",
    "socket_connect_timeout",
    "socket_keepalive",
    "socket_keepalive_options",
    "client_name",
)


def _listener_factory(client: Any, timeout: float, name: str) -> Callable[[], Any]:
    """Makes dedicated RESP2 connections to the client's server (sync, whatever the client),
    named ``name`` in ``CLIENT LIST``."""
    pool = client.connection_pool
    cls = pool.connection_class
    if inspect.iscoroutinefunction(client.execute_command):
        cls = _SYNC_CONNECTIONS.get(cls.__name__, redis.connection.Connection)
    kwargs = {
        k: v for k, v in pool.connection_kwargs.items() if k in _PORTABLE or k.startswith("ssl_")
    }
    kwargs.update(
        protocol=2,
        decode_responses=False,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name=name,
    )
    if kwargs.get("socket_connect_timeout") is None:
        kwargs["socket_connect_timeout"] = timeout

    def connect() -> Any:
        conn = cls(**kwargs)
        conn.connect()
        return conn

    return connect


class _Tier:
    """The local tier with its invalidation listener (what the sync and async caches share).

    The listener thread holds only a weak reference to the cache object, so a cache that is
    dropped without ``close()`` still lets its thread end (within ``health_interval``).
    """

    def __init__(self, local: Any, remote: Any, health_interval: Any, health_timeout: Any) -> None:
        if not isinstance(local, MutableMapping) or not callable(getattr(local, "get", None)):
            raise TypeError(f"local must be a prodfast local cache, got {type(local).__name__}")
        self._health_interval = _seconds("health_interval", health_interval)
        self._health_timeout = _seconds("health_timeout", health_timeout)
        self.local: Any = local
        self.remote: Any = remote
        self._local_get = local.get
        # re-entrant: the local tier's on_evict (user code) runs inside clear()/pop() under it
        self._lock = threading.RLock()
        self._filling: dict[Any, object] = {}
        self._tracking = False  # the local tier is used only while the listener is connected
        self._invalidations = self._flushes = self._remote_hits = self._misses = 0
        self._local_hits_base = _local_hits(local)
        self._connection: Any = None
        self._factory = _listener_factory(
            remote.client, self._health_timeout, f"prodfast-tracking:{remote.namespace}"
        )
        self._start_listener()
        _TIERS.add(self)
        self._ready.wait(self._health_timeout)

    def _start_listener(self) -> None:
        self._closed = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=_listen,
            args=(
                weakref.ref(self),
                self._factory,
                self.remote._prefix,
                self._health_interval,
                self._closed,
                self.remote.namespace,
            ),
            name=f"prodfast-tracking-{self.remote.namespace}",
            daemon=True,
        )
        self._thread.start()

    def _after_fork(self) -> None:
        """In a forked child: the listener thread is gone and its socket is the parent's."""
        self._lock = threading.RLock()  # another thread of the parent may have held it
        self._tracking = False
        self._connection = None  # never read nor close the parent's connection
        self._filling = {}
        self.local.clear()
        if not self._closed.is_set():
            self._start_listener()

    # -- called by the listener thread -------------------------------------------------------

    def _connected(self, conn: Any) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._connection = conn
            self._filling.clear()
            self.local.clear()  # announcements were lost while disconnected
            self._flushes += 1
            self._tracking = True
        self._ready.set()

    def _lost(self) -> None:
        with self._lock:
            was = self._tracking
            self._tracking = False
            self._connection = None
            self._filling.clear()
            self.local.clear()
            if was:
                self._flushes += 1
                log.warning(
                    "prodfast.redis: invalidation channel of namespace %r lost; local tier "
                    "flushed and bypassed until it is back",
                    self.remote.namespace,
                )
        self._ready.set()

    def _invalidate(self, rkeys: Any) -> None:
        if rkeys is None:  # FLUSHDB / FLUSHALL
            with self._lock:
                self._filling.clear()
                self.local.clear()
                self._flushes += 1
            return
        keys = [self.remote._key_of(rk) for rk in rkeys]
        with self._lock:
            for key in keys:
                if key is _MISSING:
                    continue
                self._filling.pop(key, None)
                self.local.pop(key, None)
            self._invalidations += len(keys)

    # -- used by the cache methods -----------------------------------------------------------

    def _begin_fill(self, key: Any) -> object | None:
        """A token that stays valid until an announcement for key arrives (None: bypassed)."""
        with self._lock:
            if not self._tracking:
                return None
            token = object()
            self._filling[key] = token
            return token

    def _end_fill(self, key: Any, token: object | None, value: Any) -> None:
        if token is None:
            return
        with self._lock:
            if self._filling.get(key) is not token:
                return
            del self._filling[key]
            try:
                self.local[key] = value
            except ValueError:  # larger than the local tier allows
                pass

    def _cancel_fill(self, key: Any, token: object | None) -> None:
        if token is None:
            return
        with self._lock:
            if self._filling.get(key) is token:
                del self._filling[key]

    def _write_local(self, key: Any, value: Any) -> None:
        with self._lock:
            self._filling.pop(key, None)  # a read in flight must not store its older value
            if self._tracking:
                try:
                    self.local[key] = value
                except ValueError:
                    self.local.pop(key, None)

    def _drop_local(self, key: Any) -> None:
        with self._lock:
            self._filling.pop(key, None)
            self.local.pop(key, None)

    def _count_remote(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self._remote_hits += 1
            else:
                self._misses += 1

    @property
    def tracking(self) -> bool:
        """True while the invalidation channel is up (and the local tier in use)."""
        return self._tracking

    def _tier_stats(self, remote_stats: dict[str, Any]) -> dict[str, Any]:
        local_stats = self.local.stats() if callable(getattr(self.local, "stats", None)) else {}
        local_hits = _local_hits(self.local) - self._local_hits_base
        with self._lock:
            remote_hits, misses = self._remote_hits, self._misses
            out: dict[str, Any] = {
                "hits": local_hits + remote_hits,
                "misses": misses,
                "hit_rate": (local_hits + remote_hits) / (local_hits + remote_hits + misses)
                if local_hits + remote_hits + misses
                else 0.0,
                "size": len(self.local),
                "local_hits": local_hits,
                "remote_hits": remote_hits,
                "invalidations": self._invalidations,
                "flushes": self._flushes,
                "tracking": self._tracking,
            }
        out["local"] = local_stats
        out["remote"] = remote_stats
        return out

    def reset_stats(self) -> None:
        """Zero the tier's counters (the local and remote caches keep their own)."""
        with self._lock:
            self._invalidations = self._flushes = self._remote_hits = self._misses = 0
            self._local_hits_base = _local_hits(self.local)

    def close(self) -> None:
        """Stop the invalidation listener and bypass the local tier from now on."""
        self._closed.set()
        with self._lock:
            self._tracking = False
            self.local.clear()
            conn = self._connection
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: S110 - already gone
                pass
        if self._thread is not threading.current_thread():
            self._thread.join(self._health_interval + self._health_timeout + 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(local={self.local!r}, remote={self.remote!r})"


_TIERS: weakref.WeakSet[_Tier] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tier in list(_TIERS):
        tier._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _local_hits(local: Any) -> int:
    stats = getattr(local, "stats", None)
    if callable(stats):
        return int(stats().get("hits", 0))
    return 0


def _listen(
    ref: Callable[[], _Tier | None],
    factory: Callable[[], Any],
    prefix: bytes,
    interval: float,
    closed: threading.Event,
    namespace: str,
) -> None:
    """The listener thread: (re)connect, enable tracking, apply announcements, send PINGs."""
    backoff = 0.05
    refusal = None
    while not closed.is_set():
        conn = None
        try:
            conn = factory()
            conn.send_command("CLIENT", "ID")
            client_id = conn.read_response()
            conn.send_command(
                "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", prefix
            )
            if conn.read_response() != b"OK":
                raise redis.exceptions.ConnectionError("CLIENT TRACKING was refused")
            conn.send_command("SUBSCRIBE", _TRACKING_CHANNEL)
            conn.read_response()  # [b'subscribe', channel, 1]
            tier = ref()
            if tier is None:
                return
            tier._connected(conn)
            del tier
            backoff = 0.05
            _pump(ref, conn, interval, closed)
        except redis.exceptions.ResponseError as exc:  # no CLIENT TRACKING (Redis < 6), an ACL
            if str(exc) != refusal:
                refusal = str(exc)
                log.warning(
                    "prodfast.redis: Redis refused invalidation tracking for namespace %r (%s); "
                    "the local tier stays bypassed while it does",
                    namespace,
                    exc,
                )
        except (redis.exceptions.RedisError, OSError, ValueError):
            pass  # the connection failed: flush, bypass, reconnect
        except Exception:  # never let the thread die (close() may pull the socket away)
            if not closed.is_set():
                log.warning("prodfast.redis: invalidation listener error", exc_info=True)
        finally:
            if conn is not None:
                try:
                    conn.disconnect()
                except Exception:  # noqa: S110
                    pass
        tier = ref()
        if tier is None:
            return
        tier._lost()
        del tier
        closed.wait(backoff)
        backoff = min(backoff * 2, 1.0)


def _pump(
    ref: Callable[[], _Tier | None], conn: Any, interval: float, closed: threading.Event
) -> None:
    """Read announcements until the connection fails (raises) or the cache is closed/dropped."""
    pinged = False
    while not closed.is_set():
        if not pinged and not conn.can_read(timeout=interval):
            conn.send_command("PING")  # the answer proves every earlier announcement arrived
            pinged = True
            continue
        reply = conn.read_response()  # bounded by socket_timeout = health_timeout
        if not isinstance(reply, list) or not reply:
            raise redis.exceptions.ConnectionError(
                f"unexpected reply on the tracking channel: {reply!r}"
            )
        kind = reply[0]
        if kind == b"pong":
            pinged = False
        elif kind == b"message" and reply[1] == _TRACKING_CHANNEL:
            tier = ref()
            if tier is None:
                return
            tier._invalidate(reply[2])
            del tier
        if ref() is None:
            return


# -- the tiered caches -------------------------------------------------------------------------


class TieredCache(_TierFront, _Tier, MutableMapping):
    """A prodfast local cache in front of a ``RedisCache``, kept coherent across processes.

    ``TieredCache(local, remote, *, health_interval=1.0, health_timeout=1.0)``.  Reads try
    ``local``, then Redis (filling ``local``); writes and deletes go to both; Redis's client
    tracking drops other processes' local copies.  See the module docstring of
    ``prodfast.redis.cache`` for the staleness bound and the failure behaviour.  Call ``close()``
    (or use ``with``) to stop its listener thread.
    """

    def __init__(
        self,
        local: Any,
        remote: RedisCache,
        *,
        health_interval: float = 1.0,
        health_timeout: float = 1.0,
    ) -> None:
        if not isinstance(remote, RedisCache):
            raise TypeError(f"remote must be a RedisCache, got {type(remote).__name__}")
        self._missing = _MISSING
        _Tier.__init__(self, local, remote, health_interval, health_timeout)

    # Equal only to itself, and hashable: comparing contents would scan Redis.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __enter__(self) -> TieredCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # get(key, default=None) and [] come from _TierFront: a local hit is answered in the compiled
    # core (or its twin); a miss calls _get_remote. `get` is also bound here, at the head of the
    # MRO, so finding it never walks the mapping ABCs when the type attribute cache misses.
    get = _TierFront.get

    def _get_remote(self, key: Any) -> Any:
        token = self._begin_fill(key)
        try:
            value = self.remote._fetch(key)
        except BaseException:
            self._cancel_fill(key, token)
            raise
        self._count_remote(value is not _MISSING)
        if value is _MISSING:
            self._cancel_fill(key, token)
        else:
            self._end_fill(key, token, value)
        return value

    def __contains__(self, key: Any) -> bool:
        return key in self.local or key in self.remote

    def __setitem__(self, key: Any, value: Any) -> None:
        self.set(key, value)

    def set(self, key: Any, value: Any, ttl: float | None = None) -> bool:
        """Store in the local tier, then in Redis (``ttl`` and the result as for
        ``RedisCache.set``; a write Redis did not take leaves no local copy)."""
        self.remote.redis_key(key)  # validate the key before touching either tier
        self.remote._ttl_arg(ttl)
        self._write_local(key, value)
        try:
            stored = self.remote.set(key, value, ttl)
        except BaseException:
            self._drop_local(key)
            raise
        if not stored:  # skipped in an outage: keep no copy Redis does not have
            self._drop_local(key)
        return stored

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def delete(self, key: Any) -> bool:
        """Remove key from both tiers; True if Redis had it."""
        self.remote.redis_key(key)
        self._drop_local(key)
        return self.remote.delete(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        self.remote.redis_key(key)
        self._drop_local(key)
        return self.remote.pop(key, default)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.remote)

    def __len__(self) -> int:
        return len(self.remote)

    def clear(self) -> None:
        """Empty both tiers (the remote one for every process)."""
        with self._lock:
            self._filling.clear()
            self.local.clear()
        self.remote.clear()

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The items found among ``keys``: local ones, the rest in one MGET."""
        out: dict[Any, Any] = {}
        rest = []
        for key in keys:
            value = self._local_get(key, _MISSING)
            if value is _MISSING:
                rest.append(key)
            else:
                out[key] = value
        if rest:
            tokens = [(key, self._begin_fill(key)) for key in rest]
            try:
                found = self.remote.get_many(rest)
            except BaseException:
                for key, token in tokens:
                    self._cancel_fill(key, token)
                raise
            for key, token in tokens:
                if key in found:
                    self._count_remote(True)
                    self._end_fill(key, token, found[key])
                    out[key] = found[key]
                else:
                    self._count_remote(False)
                    self._cancel_fill(key, token)
        return out

    def set_many(self, mapping: Mapping[Any, Any], ttl: float | None = None) -> bool:
        """Store every item in both tiers (one round trip to Redis)."""
        for key in mapping:
            self.remote.redis_key(key)
        self.remote._ttl_arg(ttl)
        for key, value in mapping.items():
            self._write_local(key, value)
        try:
            stored = self.remote.set_many(mapping, ttl)
        except BaseException:
            stored = False
            raise
        finally:
            if not stored:
                for key in mapping:
                    self._drop_local(key)
        return stored

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """``dict.update`` through ``set_many`` (one round trip to Redis)."""
        self.set_many(_as_dict(other, kwargs))

    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The local value, else ``RedisCache.get_or_compute`` (one ``compute()`` across all
        processes), copied into the local tier."""
        try:
            return self.local[key]
        except KeyError:
            pass
        return self._get_or_compute_remote(key, compute)

    def _hit_tier(self) -> tuple[Any, Callable[[Any, Callable[[], Any]], Any]]:
        """``(local, after_miss)``: ``get_or_compute`` is a hit in ``local``, else
        ``after_miss(key, compute)``; the decorators (``prodfast.decorators``) look in the local
        tier themselves, at the cost of a plain cache hit."""
        return self.local, self._get_or_compute_remote

    def _get_or_compute_remote(self, key: Any, compute: Callable[[], Any]) -> Any:
        # get_or_compute after a miss in the local tier
        _check_compute(compute)
        token = self._begin_fill(key)
        try:
            value, computed = self.remote._get_or_compute(key, compute)
        except BaseException:
            self._cancel_fill(key, token)
            raise
        self._count_remote(not computed)
        self._end_fill(key, token, value)
        return value

    def stats(self) -> dict[str, Any]:
        """Tier counters (``local_hits``, ``remote_hits``, ``misses``, ``invalidations``,
        ``flushes``, ``tracking``), ``size`` of the local tier, and both caches' own stats."""
        return self._tier_stats(self.remote.stats())


class AsyncTieredCache(_Tier):
    """``TieredCache`` over an ``AsyncRedisCache``: ``await cache.get(key)``, ``set``,
    ``delete``, ``pop``, ``contains``, ``get_many``, ``set_many``, ``clear``,
    ``aget_or_compute`` and ``stats``.  The invalidation listener is a thread, as for
    ``TieredCache``; ``close()`` (or ``async with``) stops it."""

    def __init__(
        self,
        local: Any,
        remote: AsyncRedisCache,
        *,
        health_interval: float = 1.0,
        health_timeout: float = 1.0,
    ) -> None:
        if not isinstance(remote, AsyncRedisCache):
            raise TypeError(f"remote must be an AsyncRedisCache, got {type(remote).__name__}")
        _Tier.__init__(self, local, remote, health_interval, health_timeout)

    async def __aenter__(self) -> AsyncTieredCache:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    async def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self.local[key]
        except KeyError:
            pass
        token = self._begin_fill(key)
        try:
            value = await self.remote._fetch(key)
        except BaseException:
            self._cancel_fill(key, token)
            raise
        self._count_remote(value is not _MISSING)
        if value is _MISSING:
            self._cancel_fill(key, token)
            return default
        self._end_fill(key, token, value)
        return value

    async def contains(self, key: Any) -> bool:
        return key in self.local or await self.remote.contains(key)

    async def set(self, key: Any, value: Any, ttl: float | None = None) -> bool:
        """Store in the local tier, then in Redis (``ttl`` and the result as for
        ``RedisCache.set``; a write Redis did not take leaves no local copy)."""
        self.remote.redis_key(key)
        self.remote._ttl_arg(ttl)
        self._write_local(key, value)
        try:
            stored = await self.remote.set(key, value, ttl)
        except BaseException:
            self._drop_local(key)
            raise
        if not stored:  # skipped in an outage: keep no copy Redis does not have
            self._drop_local(key)
        return stored

    async def delete(self, key: Any) -> bool:
        """Remove key from both tiers; True if Redis had it."""
        self.remote.redis_key(key)
        self._drop_local(key)
        return await self.remote.delete(key)

    async def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove key from both tiers and return Redis's value (or default; KeyError)."""
        self.remote.redis_key(key)
        self._drop_local(key)
        return await self.remote.pop(key, default)

    async def clear(self) -> None:
        """Empty both tiers (the remote one for every process)."""
        with self._lock:
            self._filling.clear()
            self.local.clear()
        await self.remote.clear()

    async def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The items found among ``keys``: local ones, the rest in one MGET."""
        out: dict[Any, Any] = {}
        rest = []
        for key in keys:
            value = self._local_get(key, _MISSING)
            if value is _MISSING:
                rest.append(key)
            else:
                out[key] = value
        if rest:
            tokens = [(key, self._begin_fill(key)) for key in rest]
            try:
                found = await self.remote.get_many(rest)
            except BaseException:
                for key, token in tokens:
                    self._cancel_fill(key, token)
                raise
            for key, token in tokens:
                if key in found:
                    self._count_remote(True)
                    self._end_fill(key, token, found[key])
                    out[key] = found[key]
                else:
                    self._count_remote(False)
                    self._cancel_fill(key, token)
        return out

    async def set_many(self, mapping: Mapping[Any, Any], ttl: float | None = None) -> bool:
        """Store every item in both tiers (one round trip to Redis)."""
        for key in mapping:
            self.remote.redis_key(key)
        self.remote._ttl_arg(ttl)
        for key, value in mapping.items():
            self._write_local(key, value)
        try:
            stored = await self.remote.set_many(mapping, ttl)
        except BaseException:
            stored = False
            raise
        finally:
            if not stored:
                for key in mapping:
                    self._drop_local(key)
        return stored

    async def aget_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The local value, else ``AsyncRedisCache.aget_or_compute``, copied into the local tier."""
        try:
            return self.local[key]
        except KeyError:
            pass
        return await self._aget_or_compute_remote(key, compute)

    def _hit_tier(self) -> tuple[Any, Callable[[Any, Callable[[], Any]], Any]]:
        """``(local, after_miss)`` as for ``TieredCache``, ``after_miss`` a coroutine function."""
        return self.local, self._aget_or_compute_remote

    async def _aget_or_compute_remote(self, key: Any, compute: Callable[[], Any]) -> Any:
        # aget_or_compute after a miss in the local tier
        _check_compute(compute)
        token = self._begin_fill(key)
        try:
            value, computed = await self.remote._aget_or_compute(key, compute)
        except BaseException:
            self._cancel_fill(key, token)
            raise
        self._count_remote(not computed)
        self._end_fill(key, token, value)
        return value

    async def stats(self) -> dict[str, Any]:
        """As ``TieredCache.stats()``."""
        return self._tier_stats(await self.remote.stats())
