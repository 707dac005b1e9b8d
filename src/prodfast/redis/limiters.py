"""Rate limiters whose state lives in Redis, shared by many processes and hosts.

``RedisTokenBucket`` and ``RedisSlidingWindow`` take a ``redis.Redis`` client;
``AsyncRedisTokenBucket`` and ``AsyncRedisSlidingWindow`` take a ``redis.asyncio.Redis``
client and make every method that talks to Redis a coroutine.  They follow the in-memory
limiters' rules (API section 2):

* token bucket: ``tokens = min(capacity, tokens + rate * dt)``, allow iff ``tokens >= cost``,
  then debit; a bucket nobody has used yet is full;
* sliding window: allow iff ``in_window + cost <= max_calls``, where a call made at time ``c``
  counts while ``now - c < window``; ``cost`` is a whole number of calls.

``try_acquire(cost=1)`` decides, ``wait_time(cost=1)`` says how many seconds until
``try_acquire(cost)`` would succeed (0.0 if now), ``acquire(cost=1, timeout=None)`` sleeps until
allowed (never spins) and returns False at once when the wait it is told already exceeds the
timeout.  A denied request changes nothing.  Unlike the in-memory limiters, waiters are not
served first come, first served: clients on other hosts cannot share a queue, so whoever asks
first once the tokens are back gets them.

How a decision is made
----------------------
Every decision is ONE atomic Lua script run on the server, so processes on any number of hosts
see one consistent limiter.  Each script is sent once per server and then
called by its SHA1 with ``EVALSHA``; when the server answers ``NOSCRIPT`` (after a restart or
``SCRIPT FLUSH`` emptied its script cache) the call is retried once with ``EVAL``, which sends
the script with the call and caches it again (so no flush can come between a reload and a retry).
Time is the Redis server's clock (``redis.call('TIME')``, microseconds), never the client's, so
clients with skewed clocks still agree.  A server clock that steps backwards is treated as "no
time passed".  Every write sets ``PEXPIRE``: a key disappears by itself once it holds nothing
a fresh key would not (the bucket would be full again / the window is empty).

Token bucket: one hash ``{tokens, ts}`` per key (``ts`` in server microseconds).  O(1) time and
memory per decision.  The key expires when the bucket would be full again,
``ceil(1000 * (capacity - tokens) / rate)`` milliseconds after the last grant; a grant that leaves the
bucket full deletes the key.

Sliding window: an exact log, kept as a sorted set with one member per granted call, scored by
the server time of the call in microseconds.  Members are ``"<time>:<i>"``, where ``i`` is the
number of calls in the window before this one (plus its index within a multi-call cost).  Two
calls in one microsecond therefore never collide: the script's "now" never decreases, and
between two decisions at the same "now" nothing can leave the window, so ``i`` only grows.
A decision runs ``ZRANGE -1 -1`` (the newest entry, to keep time monotonic),
``ZREMRANGEBYSCORE -inf now-window`` (forget calls that left the window), ``ZCARD`` and, when
granted, one ``ZADD`` of ``cost`` members; a denial reads the entry whose departure would make
room with one ``ZRANGE`` by rank to compute the wait.  Cost per decision:
O((k + 1) log n + m) server time and one round trip, where n <= max_calls is the log's size,
k = cost and m the number of expired entries removed (each entry is removed once, so m is O(1)
amortized); a denial is O(log n + m).  Memory: at most
``max_calls`` members, and only for calls still in the window; measured on Redis 7 (``MEMORY
USAGE``) about 36 bytes per call while the set is small (listpack encoding, up to 128 members by
default) and about 120-130 bytes per call above that (skiplist), against about 80 bytes for a
whole token bucket.  The key expires ``window`` after the newest call.  An exact log is what
``SlidingWindowLimiter`` keeps too; a fixed-window counter pair would be O(1) but approximate.

When Redis is unreachable or slow
---------------------------------
``on_error`` says what a decision returns when redis-py raises ``ConnectionError`` or
``TimeoutError``:

* ``"raise"`` (default): raise ``BackendUnavailable``, whose ``__cause__`` and ``.cause`` are the
  redis-py exception;
* ``"allow"`` (fail open): ``try_acquire``/``acquire`` return True, ``wait_time`` returns 0.0;
* ``"deny"`` (fail closed): ``try_acquire``/``acquire`` return False (``acquire`` at once,
  without waiting), ``wait_time`` returns ``math.inf``.

"Slow" is defined by the client: give it ``socket_timeout`` / ``socket_connect_timeout``.
redis-py retries failed commands on its own first (by default several times with exponential
backoff); pass ``retry=Retry(NoBackoff(), 0)`` to the client to let ``on_error`` act at once.
Other Redis errors (a key of the wrong type, a read-only replica, auth) are not outages and
propagate unchanged.  ``reset()`` and ``reset_stats()`` are not decisions: ``reset()`` always
raises ``BackendUnavailable`` when it cannot reach the server.

Expiry times are capped at 2**52 ms (about 140,000 years).  Needs Redis 5 or later (scripts
that read ``TIME`` and then write rely on effects replication).

Two limiters of different kinds must not share a key (Redis would answer ``WRONGTYPE``).
Limiters of the same kind sharing a key must be built with the same parameters.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import math
import numbers
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.exceptions

from ._common import BackendUnavailable

__all__ = [
    "AsyncRedisSlidingWindow",
    "AsyncRedisTokenBucket",
    "BackendUnavailable",
    "RedisSlidingWindow",
    "RedisTokenBucket",
]


# redis-py's outage errors (ConnectionError also covers BusyLoadingError, a server still loading).
_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_ON_ERROR = ("raise", "allow", "deny")

# KEYS[1] = bucket; ARGV = rate (tokens/s), capacity, cost, "1" to debit on success ("0": only look).
# Returns {allowed 0|1, tokens after the decision, seconds to wait (0 when allowed)}.
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local debit = ARGV[4] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tokens = cap
local last = now
local st = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
if st[1] then
  tokens = tonumber(st[1])
  last = tonumber(st[2])
  if now > last then
    tokens = math.min(cap, tokens + rate * (now - last) / 1000000)
    last = now
  end
end
if tokens >= cost then
  if debit and cost > 0 then
    tokens = tokens - cost
    local ttl = math.min(math.ceil((cap - tokens) / rate * 1000 + (last - now) / 1000), 2^52)
    if ttl > 0 then
      redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
                 'ts', string.format('%.17g', last))
      redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
    else
      redis.call('DEL', KEYS[1])
    end
  end
  return {1, string.format('%.17g', tokens), '0'}
end
return {0, string.format('%.17g', tokens), string.format('%.17g', (cost - tokens) / rate)}
"""

# KEYS[1] = log; ARGV = max_calls, window (microseconds), cost (whole calls), "1" to log on success.
# Returns {allowed 0|1, calls in the window after the decision, seconds to wait (0 when allowed)}.
_SLIDING_WINDOW_LUA = """
local max_calls = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local debit = ARGV[4] == '1'
local t = redis.call('TIME')
local real = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = real
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] then
  local n = tonumber(newest[2])
  if n > now then now = n end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now - window))
local count = redis.call('ZCARD', KEYS[1])
if count + cost <= max_calls then
  if debit and cost > 0 then
    local stamp = string.format('%.17g', now)
    local args = {}
    for i = 0, cost - 1 do
      args[#args + 1] = stamp
      args[#args + 1] = stamp .. ':' .. string.format('%d', count + i)
      if #args >= 2000 then
        redis.call('ZADD', KEYS[1], unpack(args))
        args = {}
      end
    end
    if #args > 0 then redis.call('ZADD', KEYS[1], unpack(args)) end
    local ttl = math.min(math.ceil((now + window - real) / 1000), 2^52)
    redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
    count = count + cost
  end
  return {1, count, '0'}
end
local oldest = redis.call('ZRANGE', KEYS[1], count + cost - max_calls - 1,
                          count + cost - max_calls - 1, 'WITHSCORES')
return {0, count, string.format('%.17g', (tonumber(oldest[2]) + window - now) / 1000000)}
"""


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


# Argument checks: the same rules and messages as the in-memory limiters (API section 2).


def _real(name: str, value: Any) -> float:
    if type(value) is float:
        return value
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    big: Any = value
    try:
        return float(big)
    except OverflowError:  # an int too large for a float
        return math.inf if big > 0 else -math.inf


def _positive(name: str, value: Any) -> float:
    v = _real(name, value)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def _cost(cost: Any) -> float:
    c = _real("cost", cost)
    if not (math.isfinite(c) and c >= 0.0):
        raise ValueError(f"cost must be finite and >= 0, got {cost!r}")
    return c


def _max_calls(value: Any) -> int:
    if isinstance(value, numbers.Integral):
        m = int(value)
    else:
        v = _real("max_calls", value)
        if not (math.isfinite(v) and v.is_integer()):
            raise ValueError(f"max_calls must be a whole number, got {value!r}")
        m = int(v)
    if not 0 < m <= 2**53:
        raise ValueError(f"max_calls must be > 0 and at most 2**53, got {value!r}")
    return m


def _timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    v = _real("timeout", timeout)
    if math.isnan(v) or v < 0.0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
    return None if v == math.inf else v


def _check_key(key: Any, client: Any) -> str | bytes:
    if not isinstance(key, (str, bytes)):
        raise TypeError(f"key must be str or bytes, got {type(key).__name__}")
    if not key:
        raise ValueError("key must not be empty")
    if isinstance(key, str):
        # encoded as redis-py will encode it on every call, so a key it cannot send is refused now
        get_encoder = getattr(client, "get_encoder", None)
        encoding, errors = "utf-8", "strict"
        if callable(get_encoder):
            encoder = get_encoder()
            encoding = getattr(encoder, "encoding", encoding)
            errors = getattr(encoder, "encoding_errors", errors)
        try:
            key.encode(encoding, errors)
        except UnicodeError as exc:
            raise ValueError(f"key {key!r} cannot be encoded as {encoding}: {exc}") from None
    return key


def _check_client(client: Any, asynchronous: bool, cls: str) -> None:
    for attr in ("execute_command", "evalsha", "eval"):
        if not callable(getattr(client, attr, None)):
            want = "redis.asyncio.Redis" if asynchronous else "redis.Redis"
            raise TypeError(f"client must be a {want}, got {type(client).__name__}")
    is_async = inspect.iscoroutinefunction(client.execute_command)
    if is_async and not asynchronous:
        raise TypeError(
            f"client must be a synchronous redis.Redis, got the asyncio client "
            f"{type(client).__name__}; use Async{cls} with it"
        )
    if asynchronous and not is_async:
        raise TypeError(
            f"client must be a redis.asyncio.Redis, got the synchronous client "
            f"{type(client).__name__}; use {cls[len('Async'):]} with it"
        )


def _check_on_error(on_error: Any) -> str:
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'raise', 'allow' or 'deny', got {on_error!r}")
    return on_error


class _Limiter:
    """What the four classes share: validation, script arguments, replies, counters."""

    _LUA: str
    _SHA: str

    def __init__(self, client: Any, key: Any, on_error: Any, asynchronous: bool) -> None:
        _check_client(client, asynchronous, type(self).__name__)
        self._client = client
        self._key = _check_key(key, client)
        self._on_error = _check_on_error(on_error)
        self._lock = threading.Lock()
        self._allowed = 0
        self._denied = 0
        self._errors = 0
        self._script_loads = 0
        self._last_state: float | int | None = None
        self._since = time.monotonic()

    # Subclasses provide _check_cost(cost), _argv(cost, debit) and _state_stats().
    _state_stats: Callable[[], dict[str, Any]]

    # -- shared -----------------------------------------------------------------------------

    @property
    def key(self) -> str | bytes:
        return self._key

    @property
    def on_error(self) -> str:
        return self._on_error

    def _reply(self, reply: Any) -> tuple[bool, float]:
        allowed = int(reply[0]) == 1
        state = float(reply[1])
        wait = float(reply[2])
        with self._lock:
            self._last_state = state
        return allowed, wait

    def _note(self, allowed: bool) -> bool:
        """Count one try_acquire / acquire call (acquire counts once, however long it waited)."""
        with self._lock:
            if allowed:
                self._allowed += 1
            else:
                self._denied += 1
        return allowed

    def _outage(self, exc: BaseException) -> tuple[bool, float]:
        with self._lock:
            self._errors += 1
        if self._on_error == "raise":
            raise self._unavailable(exc) from exc
        if self._on_error == "allow":
            return True, 0.0
        return False, math.inf

    def stats(self) -> dict[str, Any]:
        """Counters as seen by this client (other clients' grants are not included).

        ``allowed``/``denied`` count ``try_acquire`` and ``acquire`` calls (an ``acquire`` counts
        once, however many times it asked; calls answered by ``on_error`` count too), ``errors``
        counts outages, ``script_loads`` the times this client (re)loaded its script, and
        ``arrival_rate``/``throughput`` are requests and grants per second since creation,
        ``reset()`` or ``reset_stats()``.  The shared state
        (``tokens`` / ``in_window``) is the value the last reply from the server carried, or
        None before the first one.
        """
        with self._lock:
            allowed, denied = self._allowed, self._denied
            errors, loads = self._errors, self._script_loads
            elapsed = time.monotonic() - self._since
        out: dict[str, Any] = {
            "allowed": allowed,
            "denied": denied,
            "errors": errors,
            "script_loads": loads,
            "arrival_rate": (allowed + denied) / elapsed if elapsed > 0 else 0.0,
            "throughput": allowed / elapsed if elapsed > 0 else 0.0,
            "key": self._key,
            "on_error": self._on_error,
        }
        out.update(self._state_stats())
        return out

    def reset_stats(self) -> None:
        """Zero this client's counters; the shared state in Redis is untouched."""
        with self._lock:
            self._allowed = self._denied = self._errors = self._script_loads = 0
            self._since = time.monotonic()

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"Redis unavailable for limiter key {self._key!r}: {exc}", exc, self._key
        )


class _TokenBucketConfig(_Limiter):
    _LUA = _TOKEN_BUCKET_LUA
    _SHA = _sha1(_TOKEN_BUCKET_LUA)

    def _setup(self, rate: Any, capacity: Any) -> None:
        self._rate = _positive("rate", rate)
        self._capacity = _positive("capacity", capacity)
        self._rate_arg = repr(self._rate)
        self._capacity_arg = repr(self._capacity)

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def capacity(self) -> float:
        return self._capacity

    def _check_cost(self, cost: Any) -> float:
        c = _cost(cost)
        if c > self._capacity:
            raise ValueError(
                f"cost {cost!r} exceeds capacity {self._capacity!r}: the request can never succeed"
            )
        return c

    def _argv(self, cost: float | int, debit: bool) -> tuple[str, ...]:
        return (self._rate_arg, self._capacity_arg, repr(float(cost)), "1" if debit else "0")

    def _state_stats(self) -> dict[str, Any]:
        return {"rate": self._rate, "capacity": self._capacity, "tokens": self._last_state}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(key={self._key!r}, rate={self._rate!r}, "
            f"capacity={self._capacity!r}, on_error={self._on_error!r})"
        )


class _SlidingWindowConfig(_Limiter):
    _LUA = _SLIDING_WINDOW_LUA
    _SHA = _sha1(_SLIDING_WINDOW_LUA)

    def _setup(self, max_calls: Any, window: Any) -> None:
        self._max_calls = _max_calls(max_calls)
        self._window = _positive("window", window)
        self._max_calls_arg = str(self._max_calls)
        self._window_arg = repr(self._window * 1e6)

    @property
    def max_calls(self) -> int:
        return self._max_calls

    @property
    def window(self) -> float:
        return self._window

    def _check_cost(self, cost: Any) -> int:
        c = _cost(cost)
        if not c.is_integer():
            raise ValueError(f"cost must be a whole number of calls, got {cost!r}")
        if c > self._max_calls:
            raise ValueError(
                f"cost {cost!r} exceeds max_calls {self._max_calls!r}: the request can never succeed"
            )
        return int(c)

    def _argv(self, cost: float | int, debit: bool) -> tuple[str, ...]:
        return (self._max_calls_arg, self._window_arg, str(int(cost)), "1" if debit else "0")

    def _state_stats(self) -> dict[str, Any]:
        state = self._last_state
        return {
            "max_calls": self._max_calls,
            "window": self._window,
            "in_window": None if state is None else int(state),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(key={self._key!r}, max_calls={self._max_calls!r}, "
            f"window={self._window!r}, on_error={self._on_error!r})"
        )


class _Sync:
    """Talks to a redis.Redis: one EVALSHA per decision, EVAL on NOSCRIPT."""

    def _eval(self: Any, cost: float | int, debit: bool) -> Any:
        args = self._argv(cost, debit)
        client = self._client
        try:
            return client.evalsha(self._SHA, 1, self._key, *args)
        except redis.exceptions.NoScriptError:
            pass
        with self._lock:
            self._script_loads += 1
        # EVAL sends the script with the call (and caches it): no flush can come in between
        return client.eval(self._LUA, 1, self._key, *args)

    def _decide(self: Any, cost: float | int, debit: bool) -> tuple[bool, float]:
        try:
            reply = self._eval(cost, debit)
        except _OUTAGE as exc:
            return self._outage(exc)
        return self._reply(reply)

    def try_acquire(self: Any, cost: Any = 1) -> bool:
        """Take ``cost`` now if the shared limit allows it; never blocks. One round trip."""
        return self._note(self._decide(self._check_cost(cost), True)[0])

    def wait_time(self: Any, cost: Any = 1) -> float:
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if now), by the server's clock."""
        allowed, wait = self._decide(self._check_cost(cost), False)
        return 0.0 if allowed else wait

    def acquire(self: Any, cost: Any = 1, timeout: Any = None) -> bool:
        """Sleep until ``cost`` is granted; False when ``timeout`` seconds would not suffice."""
        cost = self._check_cost(cost)
        timeout = _timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            allowed, wait = self._decide(cost, True)
            if allowed:
                return self._note(True)
            if math.isinf(wait):  # on_error="deny" during an outage
                return self._note(False)
            if deadline is not None and wait > deadline - time.monotonic():
                return self._note(False)
            time.sleep(wait)

    def reset(self: Any) -> None:
        """Delete the shared state (a full bucket / an empty window for everyone) and the counters."""
        try:
            self._client.delete(self._key)
        except _OUTAGE as exc:
            raise self._unavailable(exc) from exc
        self.reset_stats()


class _Async:
    """Talks to a redis.asyncio.Redis: the same protocol, awaited."""

    async def _eval(self: Any, cost: float | int, debit: bool) -> Any:
        args = self._argv(cost, debit)
        client = self._client
        try:
            return await client.evalsha(self._SHA, 1, self._key, *args)
        except redis.exceptions.NoScriptError:
            pass
        with self._lock:
            self._script_loads += 1
        return await client.eval(self._LUA, 1, self._key, *args)

    async def _decide(self: Any, cost: float | int, debit: bool) -> tuple[bool, float]:
        try:
            reply = await self._eval(cost, debit)
        except _OUTAGE as exc:
            return self._outage(exc)
        return self._reply(reply)

    async def try_acquire(self: Any, cost: Any = 1) -> bool:
        """Take ``cost`` now if the shared limit allows it; never waits. One round trip."""
        return self._note((await self._decide(self._check_cost(cost), True))[0])

    async def wait_time(self: Any, cost: Any = 1) -> float:
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if now), by the server's clock."""
        allowed, wait = await self._decide(self._check_cost(cost), False)
        return 0.0 if allowed else wait

    async def acquire(self: Any, cost: Any = 1, timeout: Any = None) -> bool:
        """Sleep until ``cost`` is granted; False when ``timeout`` seconds would not suffice."""
        cost = self._check_cost(cost)
        timeout = _timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            allowed, wait = await self._decide(cost, True)
            if allowed:
                return self._note(True)
            if math.isinf(wait):  # on_error="deny" during an outage
                return self._note(False)
            if deadline is not None and wait > deadline - time.monotonic():
                return self._note(False)
            await asyncio.sleep(wait)

    async def acquire_async(self: Any, cost: Any = 1, timeout: Any = None) -> bool:
        """The same as ``acquire`` (section 2's asyncio name)."""
        return await self.acquire(cost, timeout)

    async def reset(self: Any) -> None:
        """Delete the shared state (a full bucket / an empty window for everyone) and the counters."""
        try:
            await self._client.delete(self._key)
        except _OUTAGE as exc:
            raise self._unavailable(exc) from exc
        self.reset_stats()


class RedisTokenBucket(_Sync, _TokenBucketConfig):
    """Token bucket shared through Redis: ``rate`` tokens per second, at most ``capacity``.

    ``RedisTokenBucket(client, key, rate, capacity, *, on_error="raise")`` over a
    ``redis.Redis``.  A key nobody used yet (or that expired) is a full bucket.
    """

    def __init__(
        self, client: Any, key: str | bytes, rate: float, capacity: float, *, on_error: str = "raise"
    ) -> None:
        _Limiter.__init__(self, client, key, on_error, False)
        self._setup(rate, capacity)


class RedisSlidingWindow(_Sync, _SlidingWindowConfig):
    """Exact sliding-window log shared through Redis: at most ``max_calls`` per ``window`` s.

    ``RedisSlidingWindow(client, key, max_calls, window, *, on_error="raise")`` over a
    ``redis.Redis``.  A call made at server time ``c`` counts while ``now - c < window``.
    """

    def __init__(
        self, client: Any, key: str | bytes, max_calls: int, window: float, *, on_error: str = "raise"
    ) -> None:
        _Limiter.__init__(self, client, key, on_error, False)
        self._setup(max_calls, window)


class AsyncRedisTokenBucket(_Async, _TokenBucketConfig):
    """``RedisTokenBucket`` over a ``redis.asyncio.Redis``; its Redis methods are coroutines."""

    def __init__(
        self, client: Any, key: str | bytes, rate: float, capacity: float, *, on_error: str = "raise"
    ) -> None:
        _Limiter.__init__(self, client, key, on_error, True)
        self._setup(rate, capacity)


class AsyncRedisSlidingWindow(_Async, _SlidingWindowConfig):
    """``RedisSlidingWindow`` over a ``redis.asyncio.Redis``; its Redis methods are coroutines."""

    def __init__(
        self, client: Any, key: str | bytes, max_calls: int, window: float, *, on_error: str = "raise"
    ) -> None:
        _Limiter.__init__(self, client, key, on_error, True)
        self._setup(max_calls, window)
