"""Rate limiters whose state lives in Redis, shared by many processes and hosts.

``RedisTokenBucket`` and ``RedisSlidingWindow`` take a ``redis.Redis`` client;
``AsyncRedisTokenBucket`` and ``AsyncRedisSlidingWindow`` take a ``redis.asyncio.Redis``
client and make every method that talks to Redis a coroutine.  They implement the limiter
protocol of ``prodfast._limiter_protocol`` (``limiter_kind`` "sync" and "async") and follow the
in-memory limiters' rules (API section 2):

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

``reserve(cost=1, timeout=None)`` takes an estimate as ``acquire`` would and returns a
reservation; ``settle(actual)`` gives back or takes the difference on the server (a token
bucket may go negative: later callers wait the debt off; a window gives back calls, never takes
more than it reserved), ``cancel()`` gives it all back.  ``observe(headers, resource=...,
status=None)`` stores what the provider reported in Redis, so every worker learns at once: no
grant beyond the remaining budget until its reset, and nothing at all until ``retry-after``.
``LimiterGroup`` over Redis limiters of one client decides all-or-nothing in one script.

How a decision is made
----------------------
Every decision is ONE atomic Lua script run on the server (``prodfast.redis._script``, one
script for every operation and for groups), so processes on any number of hosts see one
consistent limiter.  The script is sent once per server and then called by its SHA1 with
``EVALSHA``; when the server answers ``NOSCRIPT`` (after a restart or ``SCRIPT FLUSH`` emptied
its script cache) the call is retried once with ``EVAL``, which sends the script with the call
and caches it again (so no flush can come between a reload and a retry).  One limiter's
``try_acquire``, ``acquire``, ``wait_time`` and ``reserve`` use the script's short form (one
argument, a one-string reply, the token bucket's one key), sent with ``execute_command``: the
client packs and parses less, which is most of a decision's CPU time.  Time is the Redis
server's clock (``redis.call('TIME')``, microseconds), never the client's, so clients with
skewed clocks still agree.  A server clock that steps backwards is treated as "no time passed".
Every write sets ``PEXPIRE``: a key disappears by itself once it holds nothing a fresh key
would not (the bucket would be full again / the window is empty / the provider's budget reset).

Each limiter names two keys: ``key`` (its state; a token bucket keeps the budget and hold
``observe`` stored in the same hash, so a decision reads one hash) and ``key + ":provider"`` (a
sliding window's budget and hold; usually absent).  In Redis Cluster give ``key`` a hash tag
(``{name}``) so both, and every member of a group, live in one slot.

Token bucket: one hash ``{tokens, ts}`` per key (``ts`` in server microseconds; plus ``{left,
top, until, hold, gen}`` while a provider budget or hold is in force).  O(1) time and
memory per decision.  The key expires when the bucket would be full again,
``ceil(1000 * (capacity - tokens) / rate)`` milliseconds after the last grant; a grant that
leaves the bucket full deletes the key.

Sliding window: an exact log, kept as a sorted set with one member per granted call, scored by
the server time of the call in microseconds.  Members are ``"<time>:~<i>"``, ``i`` zero-padded
to 16 digits and one more than the newest member of the same time, so two calls in one
microsecond never collide (the script's "now" never decreases), not even after a give-back
removed some or next to members an earlier version named ``"<time>:<i>"``.  A decision runs ``ZRANGE -1 -1`` (the newest entry, to keep time monotonic),
``ZREMRANGEBYSCORE -inf now-window`` (forget calls that left the window), ``ZCARD`` and, when
granted, one ``ZADD`` of ``cost`` members; a denial reads the entry whose departure would make
room with one ``ZRANGE`` by rank to compute the wait.  Cost per decision: O((k + 1) log n + m)
server time and one round trip, where n <= max_calls is the log's size, k = cost and m the
number of expired entries removed (each entry is removed once, so m is O(1) amortized).
Memory: at most ``max_calls`` members, and only for calls still in the window; measured on
Redis 7 (``MEMORY USAGE``) about 52 bytes per call while the set is small (listpack encoding,
up to 128 members by default) and 135-170 bytes per call above that (skiplist: 135 at 1,000
calls, 169 at 10,000), against 80 bytes for a whole token bucket.  The key expires ``window``
after the newest call.

Leases (``lease=``)
-------------------
A round trip costs about 160 µs, so one process makes about 6,000 decisions per second.  With
``lease=n`` a limiter takes up to ``n`` tokens (calls) in one round trip and spends them
locally, in an in-memory limiter of the active backend, at in-memory speed; when they run out it
gives back what is left and takes a new lease in the same round trip.  A lease is given back
(what it did not spend) after ``lease_ttl`` seconds, by ``close()`` (also ``with limiter:``;
for the async twins ``await close()`` and ``async with``), when ``observe`` learns something,
and, for the sync limiters, at interpreter exit (even when the limiter itself was dropped: a
background thread keeps each lease until it is given back; an async limiter's lease left at
exit is lost, which only under-uses the limit).  A forked child never spends its parent's
lease.  The bound: the server debits a lease when it grants it, so the total granted never
exceeds the limiter's own bound (``capacity + rate * elapsed`` since the key was fresh); over
any shorter interval, and for the sliding window over any window, grants exceed the limit by at
most the leases outstanding at its start (at most ``n`` per process).  A window's
``lease_ttl`` must be below its ``window``.  Decisions made from a lease are counted in
``stats()`` but do not refresh ``tokens``/``in_window`` (the server's state); ``reserve`` and
groups always ask the server, and ``wait_time`` does unless the lease covers the cost.

When Redis is unreachable or slow
---------------------------------
``on_error`` says what a decision returns when redis-py raises ``ConnectionError`` or
``TimeoutError``:

* ``"raise"`` (default): raise ``BackendUnavailable``, whose ``__cause__`` and ``.cause`` are the
  redis-py exception;
* ``"allow"`` (fail open): ``try_acquire``/``acquire``/``reserve`` grant, ``wait_time`` returns
  0.0;
* ``"deny"`` (fail closed): ``try_acquire``/``acquire`` return False (``acquire`` at once,
  without waiting), ``reserve`` raises ``RateLimitError``, ``wait_time`` returns ``math.inf``.

A group follows its strictest member ("raise", then "deny", then "allow").  "Slow" is defined
by the client: give it ``socket_timeout`` / ``socket_connect_timeout``.  redis-py retries failed
commands on its own first (by default several times with exponential backoff); pass
``retry=Retry(NoBackoff(), 0)`` to the client to let ``on_error`` act at once.  Other Redis
errors (a key of the wrong type, a read-only replica, auth) are not outages and propagate
unchanged.  ``reset()``, ``settle()``/``cancel()`` and ``close()`` are not decisions: they
always raise ``BackendUnavailable`` when they cannot reach the server (a reservation then stays
unsettled, to be settled again).  ``observe`` follows ``on_error`` ("allow"/"deny": the report is
dropped and counted in ``errors``).

Expiry times are capped at 2**52 ms (about 140,000 years).  Needs Redis 5 or later (scripts
that read ``TIME`` and then write rely on effects replication).

Two limiters of different kinds must not share a key (Redis would answer ``WRONGTYPE``).
Limiters of the same kind sharing a key must be built with the same parameters.
"""

from __future__ import annotations

import asyncio
import atexit
import heapq
import itertools
import math
import numbers
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import redis
import redis.exceptions

from .. import _backend
from .._limiter_protocol import ASYNC, SYNC, RateLimitError
from .._ratelimit_py import _RLGate
from .._rl_checks import (
    check_actual,
    check_calls,
    check_cost_within,
    check_max_calls,
    check_positive,
    check_timeout,
)
from . import _script
from ._common import BackendUnavailable, check_client

__all__ = [
    "AsyncRedisSlidingWindow",
    "AsyncRedisTokenBucket",
    "BackendUnavailable",
    "RedisReservation",
    "AsyncRedisReservation",
    "RedisSlidingWindow",
    "RedisTokenBucket",
]


# redis-py's outage errors (ConnectionError also covers BusyLoadingError, a server still loading).
_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_ON_ERROR = ("raise", "allow", "deny")
_STRICTNESS = {"raise": 0, "deny": 1, "allow": 2}


def _key_encoding(client: Any) -> tuple[str, str]:
    """The encoding and error handler redis-py's client encodes str arguments with."""
    get_encoder = getattr(client, "get_encoder", None)
    encoding, errors = "utf-8", "strict"
    if callable(get_encoder):
        encoder = get_encoder()
        encoding = getattr(encoder, "encoding", encoding)
        errors = getattr(encoder, "encoding_errors", errors)
    return encoding, errors


def _encode_key(key: str, client: Any) -> bytes:
    return key.encode(*_key_encoding(client))


def _check_key(key: Any, client: Any) -> str | bytes:
    if not isinstance(key, (str, bytes)):
        raise TypeError(f"key must be str or bytes, got {type(key).__name__}")
    if not key:
        raise ValueError("key must not be empty")
    if isinstance(key, str):
        # encoded as redis-py would encode it on every call, so a key it cannot send is refused now
        encoding, errors = _key_encoding(client)
        try:
            key.encode(encoding, errors)
        except UnicodeError as exc:
            raise ValueError(f"key {key!r} cannot be encoded as {encoding}: {exc}") from None
    return key


def _check_client(client: Any, asynchronous: bool, cls: str) -> None:
    check_client(client, asynchronous, cls, ("execute_command", "evalsha", "eval"))


def _check_on_error(on_error: Any) -> str:
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'raise', 'allow' or 'deny', got {on_error!r}")
    return on_error


def _num(x: float | int) -> bytes:
    return repr(float(x)).encode()


_OPS = {op: op.encode() for op in ("look", "take", "lease", "adjust", "observe")}
_COUNTS = [str(n).encode() for n in range(64)]


def _pack(op: str, members: Sequence[_Limiter], args: Sequence[tuple[bytes, ...]]) -> tuple:
    """KEYS and ARGV of one script call over ``members`` (their own arguments in ``args``),
    already bytes, so redis-py has nothing to encode on the hot path."""
    keys: list[Any] = []
    n = len(members)
    argv: list[bytes] = [_OPS[op], _COUNTS[n] if n < 64 else str(n).encode()]
    for m, a in zip(members, args, strict=True):
        keys.extend(m._keys)
        argv.extend(m._params)
        argv.extend(a)
    return keys, argv


def _parse(reply: Any) -> tuple[bool, float, list[tuple[float, str, float]]]:
    """(granted, wait, per member (state, stamp, amount)) from the script's reply."""
    members = []
    for i in range(2, len(reply), 3):
        stamp = reply[i + 1]
        members.append(
            (float(reply[i]), stamp.decode() if isinstance(stamp, bytes) else stamp,
             float(reply[i + 2]))
        )
    return int(reply[0]) == 1, float(reply[1]), members


def _group_outage(members: Sequence[_Limiter], exc: BaseException) -> list | float:
    """A group's answer to an outage: its strictest member's on_error."""
    for m in members:
        with m._lock:
            m._errors += 1
    strictest = min(members, key=lambda m: _STRICTNESS[m._on_error])
    if strictest._on_error == "raise":
        raise strictest._unavailable(exc) from exc
    if strictest._on_error == "deny":
        return math.inf
    return [None] * len(members)


class _Limiter:
    """What the four classes share: validation, script arguments, replies, counters."""

    _KIND: str
    limiter_kind: str

    def __init__(self, client: Any, key: Any, on_error: Any, asynchronous: bool) -> None:
        _check_client(client, asynchronous, type(self).__name__)
        self._client = client
        self._key = _check_key(key, client)
        raw = self._key if isinstance(self._key, bytes) else _encode_key(self._key, client)
        self._keys = (raw, raw + b":provider")
        self._on_error = _check_on_error(on_error)
        self._lock = threading.Lock()
        self._allowed = 0
        self._denied = 0
        self._errors = 0
        self._script_loads = 0
        self._round_trips = 0
        self._last_state: float | int | None = None
        self._since = time.monotonic()
        self._pool: Any = None  # the local lease (sync limiters built with lease=)
        self._spend: Any = None  # its try_acquire
        # this process's waiters: a give-back made here wakes them (one from another process is
        # seen at their next decision); LimiterGroups over this limiter link their own gates
        self._gate = _RLGate()

    # Subclasses provide _check(cost), _check_actual(actual, reserved), _params, _state_stats().

    @property
    def key(self) -> str | bytes:
        return self._key

    @property
    def on_error(self) -> str:
        return self._on_error

    def _remember(self, state: float) -> None:
        with self._lock:
            self._last_state = state

    def _note(self, allowed: bool) -> bool:
        """Count one try_acquire / acquire call (acquire counts once, however long it waited)."""
        with self._lock:
            if allowed:
                self._allowed += 1
            else:
                self._denied += 1
        return allowed

    def _outage(self, exc: BaseException) -> tuple[bool, float, None]:
        with self._lock:
            self._errors += 1
        if self._on_error == "raise":
            raise self._unavailable(exc) from exc
        if self._on_error == "allow":
            return True, 0.0, None
        return False, math.inf, None

    def _answer(self, reply: Any) -> tuple[bool, float, str]:
        """(granted, wait, receipt) from a reply about this limiter alone."""
        stamp = reply[3]
        self._remember(float(reply[2]))
        return int(reply[0]) == 1, float(reply[1]), stamp.decode() if type(stamp) is bytes else stamp

    def _short(self, take: bytes, look: bytes, keys: tuple[bytes, ...]) -> None:
        """The short form of this limiter's look and take (see ``_script``): the EVALSHA
        arguments up to the one script argument, and that argument's start (the cost follows)."""
        p1, p2 = self._params[1:]
        self._short_call = ("EVALSHA", _script.SHA, len(keys), *keys)
        self._short_argv = {
            "take": b"%s %s %s " % (take, p1, p2),
            "look": b"%s %s %s " % (look, p1, p2),
        }
        try:  # the argument of the usual try_acquire(), cost 1, once for all
            self._take1: bytes | None = self._short_argv["take"] + _num(self._check(1))
        except ValueError:  # a capacity below 1: refused, with its message, on every call
            self._take1 = None

    def _short_answer(self, reply: Any, count: bool) -> tuple[bool, float, Any]:
        """(granted, wait, receipt as sent) from a short reply "<granted> <wait> <state>
        <receipt>"; ``count``: count it as a try_acquire call."""
        granted, wait, state, stamp = reply.split()
        allowed = granted == b"1" or granted == "1"
        with self._lock:
            self._round_trips += 1
            self._last_state = float(state)
            if count:
                if allowed:
                    self._allowed += 1
                else:
                    self._denied += 1
        return allowed, float(wait), stamp

    def _short_failed(self, exc: BaseException, count: bool) -> tuple[bool, float, None]:
        """The answer to a short call that raised ``exc`` (``on_error`` for an outage)."""
        with self._lock:
            self._round_trips += 1
        if not isinstance(exc, _OUTAGE):
            raise exc
        answer = self._outage(exc)
        if count:
            self._note(answer[0])
        return answer

    def _pool_allowed(self) -> int:
        return 0

    def stats(self) -> dict[str, Any]:
        """Counters as seen by this client (other clients' grants are not included).

        ``allowed``/``denied`` count ``try_acquire``, ``acquire`` and ``reserve`` calls (an
        ``acquire`` counts once, however many times it asked; calls answered by ``on_error``
        count too), ``errors`` counts outages, ``script_loads`` the times this client sent its
        script again, and ``arrival_rate``/``throughput`` are requests and grants per second
        since creation, ``reset()`` or ``reset_stats()``.  The shared state (``tokens`` /
        ``in_window``) is the value the last reply from the server carried, or None before
        the first one.
        """
        pooled = self._pool_allowed()
        with self._lock:
            allowed, denied = self._allowed + pooled, self._denied
            errors, loads, trips = self._errors, self._script_loads, self._round_trips
            elapsed = time.monotonic() - self._since
        out: dict[str, Any] = {
            "allowed": allowed,
            "denied": denied,
            "errors": errors,
            "script_loads": loads,
            "round_trips": trips,
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
            self._round_trips = 0
            self._since = time.monotonic()

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"Redis unavailable for limiter key {self._key!r}: {exc}", exc, self._key
        )

    @staticmethod
    def _args(a: Any) -> tuple[bytes]:
        """A member's arguments for ``look`` and ``take``: its cost."""
        return (_num(a),)

    @staticmethod
    def _args4(a: Any, b: bytes, c: bytes, d: str | None) -> tuple[bytes, ...]:
        """A member's arguments for ``lease`` and ``adjust`` (``d``: a receipt)."""
        return (_num(a), b, c, (d or "0/").encode())

    @staticmethod
    def _observation_args(budget: Any, retry_after: Any) -> tuple[bytes, ...] | None:
        """The script's arguments for a provider report, or None when nothing applies."""
        if budget is None and retry_after is None:
            return None
        remaining, reset_after = budget if budget is not None else (0.0, 0.0)
        return (
            b"" if budget is None else _num(max(0.0, remaining)),
            b"" if budget is None else _num(max(0.0, reset_after)),
            b"" if retry_after is None else _num(max(0.0, retry_after)),
            b"",
        )


class _TokenBucketConfig(_Limiter):
    _KIND = "tb"

    def _setup(self, rate: Any, capacity: Any) -> None:
        self._rate = check_positive(rate, "rate")
        self._capacity = check_positive(capacity, "capacity")
        self._params = (b"tb", repr(self._rate).encode(), repr(self._capacity).encode())
        self._short(b"T", b"t", self._keys[:1])  # a bucket keeps its budget in its own hash

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def capacity(self) -> float:
        return self._capacity

    def _check(self, cost: Any) -> float:
        return check_cost_within(cost, self._capacity)

    def _check_actual(self, actual: Any, reserved: float) -> float:
        return check_actual(actual)

    def _state_stats(self) -> dict[str, Any]:
        return {"rate": self._rate, "capacity": self._capacity, "tokens": self._last_state}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(key={self._key!r}, rate={self._rate!r}, "
            f"capacity={self._capacity!r}, on_error={self._on_error!r})"
        )


class _SlidingWindowConfig(_Limiter):
    _KIND = "sw"

    def _setup(self, max_calls: Any, window: Any) -> None:
        self._max_calls = check_max_calls(max_calls)
        self._window = check_positive(window, "window")
        self._params = (b"sw", str(self._max_calls).encode(), repr(self._window * 1e6).encode())
        self._short(b"W", b"w", self._keys)

    @property
    def max_calls(self) -> int:
        return self._max_calls

    @property
    def window(self) -> float:
        return self._window

    def _check(self, cost: Any) -> int:
        return check_calls(cost, self._max_calls)

    def _check_actual(self, actual: Any, reserved: float) -> int:
        a = check_actual(actual)
        if not a.is_integer():
            raise ValueError(f"actual must be a whole number of calls, got {actual!r}")
        if a > reserved:
            raise ValueError(
                f"actual {actual!r} exceeds the {int(reserved)} calls reserved: a window cannot "
                "log calls it did not grant"
            )
        return int(a)

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


# ---- reservations ---------------------------------------------------------------------------


class _ReservationBase:
    __slots__ = ("_limiter", "_cost", "_stamp", "_settled", "_lock")

    def __init__(self, limiter: Any, cost: float | int, stamp: str | None) -> None:
        self._limiter = limiter
        self._cost = cost
        self._stamp = stamp  # None: granted by on_error="allow", nothing was taken
        self._settled = False
        self._lock = threading.Lock()

    @property
    def cost(self) -> float | int:
        """The estimate taken by ``reserve``."""
        return self._cost

    @property
    def settled(self) -> bool:
        return self._settled

    def _close(self, actual: Any) -> float | None:
        """Check ``actual`` and mark the reservation settled -> the difference to apply on the
        server (None: nothing was taken); ``_reopen`` if applying it fails."""
        a = self._limiter._check_actual(actual, self._cost)
        with self._lock:
            if self._settled:
                raise RuntimeError("reservation already settled")
            self._settled = True
        return None if self._stamp is None else a - self._cost

    def _reopen(self) -> None:
        with self._lock:
            self._settled = False

    def __repr__(self) -> str:
        state = "settled" if self._settled else "open"
        return f"<{type(self).__name__} cost={self._cost!r} {state} on {self._limiter!r}>"


class RedisReservation(_ReservationBase):
    """An estimate taken from a sync Redis limiter, settled on the server when the cost is known.

    ``settle(actual)`` gives back or takes the difference, ``cancel()`` gives it all back (both
    one round trip, once).  ``with limiter.reserve(n) as r:`` — leaving the block without
    settling keeps the estimate.
    """

    __slots__ = ()

    def settle(self, actual: Any) -> None:
        delta = self._close(actual)
        if delta:
            try:
                self._limiter._adjust(delta, self._stamp)
            except BaseException:
                self._reopen()
                raise

    def cancel(self) -> None:
        self.settle(0)

    def __enter__(self) -> RedisReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._settled = True


class AsyncRedisReservation(_ReservationBase):
    """``RedisReservation`` of an async limiter: ``await settle(actual)``, ``await cancel()``,
    ``async with``."""

    __slots__ = ()

    async def settle(self, actual: Any) -> None:
        delta = self._close(actual)
        if delta:
            try:
                await self._limiter._adjust(delta, self._stamp)
            except BaseException:
                self._reopen()
                raise

    async def cancel(self) -> None:
        await self.settle(0)

    async def __aenter__(self) -> AsyncRedisReservation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with self._lock:
            self._settled = True


# ---- group engines --------------------------------------------------------------------------


class _Engine:
    """LimiterGroup's seam: one script over every member's keys, all-or-nothing."""

    kind: str
    _cls: type

    def check_members(self, members: Sequence[Any]) -> None:
        clients = {id(m._client) for m in members if isinstance(m, self._cls)}
        if len(clients) != 1 or not all(isinstance(m, self._cls) for m in members):
            raise TypeError(
                "limiters of a group of Redis limiters must all be "
                f"{'async' if self.kind == ASYNC else 'sync'} Redis limiters over one client"
            )
        keys = [m._key for m in members]
        if len(set(keys)) != len(keys):
            raise ValueError("limiters of a group must have distinct keys")

    @staticmethod
    def _receipts(members: Sequence[Any], reply: Any) -> list | float:
        granted, wait, per = _parse(reply)
        for m, (state, _, _) in zip(members, per, strict=True):
            m._remember(state)
        if not granted:
            return wait
        return [stamp for _, stamp, _ in per]


class _SyncEngine(_Engine):
    kind = SYNC

    def take(self, members: Sequence[Any], costs: Sequence[Any]) -> list | float:
        keys, argv = _pack("take", members, [m._args(c) for m, c in zip(members, costs, strict=True)])
        try:
            reply = members[0]._run(keys, argv)
        except _OUTAGE as exc:
            return _group_outage(members, exc)
        return self._receipts(members, reply)


class _AsyncEngine(_Engine):
    kind = ASYNC

    async def take(self, members: Sequence[Any], costs: Sequence[Any]) -> list | float:
        keys, argv = _pack("take", members, [m._args(c) for m, c in zip(members, costs, strict=True)])
        try:
            reply = await members[0]._run(keys, argv)
        except _OUTAGE as exc:
            return _group_outage(members, exc)
        return self._receipts(members, reply)


_SYNC_ENGINE = _SyncEngine()
_ASYNC_ENGINE = _AsyncEngine()


# ---- leases ---------------------------------------------------------------------------------


class _Reaper:
    """One daemon thread giving back leases whose time is up, and every lease still out at exit.

    Its heap holds each outstanding lease with its limiter until the lease's deadline, so a
    limiter dropped by its owner still gives its lease back.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, deadline: float, limiter: Any, pool: Any) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._order), limiter, pool))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="prodfast-redis-leases", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    delay = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(delay)
                _, _, limiter, pool = heapq.heappop(self._heap)
            limiter._give_back_lease(pool, quiet=True)

    def _outstanding(self) -> list:
        with self._cond:
            return [(limiter, pool) for _, _, limiter, pool in self._heap]

    def after_fork(self) -> None:
        outstanding = [(limiter, pool) for _, _, limiter, pool in self._heap]
        self._cond = threading.Condition()
        self._heap = []
        self._thread = None
        for limiter, _ in outstanding:
            limiter._forget_lease()  # the parent spends and gives back its own leases
        for limiter in list(_ASYNC_LEASED):
            limiter._forget_lease()

    def at_exit(self) -> None:
        for limiter, pool in self._outstanding():
            limiter._give_back_lease(pool, quiet=True)


_REAPER = _Reaper()
atexit.register(_REAPER.at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_REAPER.after_fork)


def _lease_size(value: Any, limiter: Any) -> float | int | None:
    """The lease size: None (no leases), or a cost the limiter can grant, > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"lease must be a number or None, not {type(value).__name__}")
    try:
        size = limiter._check(value)
    except ValueError as exc:
        raise ValueError(f"lease must be a cost the limiter can grant: {exc}") from None
    if not size > 0:
        raise ValueError(f"lease must be > 0, got {value!r}")
    return size


class _Leasing:
    """Lease bookkeeping shared by the sync and async limiters (see the module's "Leases")."""

    def _setup_lease(self: Any, lease: Any, lease_ttl: Any) -> None:
        size = _lease_size(lease, self)
        ttl = check_positive(lease_ttl, "lease_ttl")
        if isinstance(self, _SlidingWindowConfig) and ttl >= self._window:
            raise ValueError(
                f"lease_ttl must be below the window ({self._window!r} s), got {lease_ttl!r}"
            )
        self._lease = size
        self._lease_ttl = ttl
        if size is None:
            return
        self._lease_lock = self._new_lease_lock()
        self._retired_allowed = 0
        self._retire(self._new_pool(0, None))

    @property
    def lease(self: Any) -> float | int | None:
        """Tokens (calls) taken per round trip, or None without leases."""
        return self._lease

    @property
    def lease_ttl(self: Any) -> float:
        return self._lease_ttl

    def _new_pool(self: Any, size: float | int, stamp: str | None) -> _Pool:
        return _Pool(self, size, stamp)

    def _pool_allowed(self: Any) -> int:
        pool = self._pool
        if pool is None:
            return 0
        return self._retired_allowed + pool.allowed()

    def _retire(self: Any, new_pool: _Pool) -> None:
        """Swap in ``new_pool``, keeping the count of the grants the old one made."""
        old = self._pool
        self._pool = new_pool
        # an empty lease grants nothing, not even a cost of 0 (the server decides that one)
        self._spend = new_pool.try_acquire if new_pool.size else _NOTHING_LEASED
        if old is not None:
            self._retired_allowed += old.allowed()

    def _forget_lease(self: Any) -> None:
        """Drop the lease without giving it back (a forked child; reset)."""
        self._pool.drain()
        self._lease_lock = self._new_lease_lock()
        self._retire(self._new_pool(0, None))
        self._retired_allowed = 0


# ---- waiting: the computed wait, cut short by a give-back made in this process -----------


def _sleep(gate: Any, seen: int, seconds: float) -> None:
    """A thread's wait: ``seconds``, or until a give-back after ``gate.gen`` was ``seen``."""
    gate.sleep(seen, seconds)


async def _asleep(woken: Any, seconds: float) -> None:
    """A task's wait: ``seconds``, or until a give-back resolves ``woken`` (``gate.watch``)."""
    await asyncio.wait((woken,), timeout=seconds)


# ---- sync -----------------------------------------------------------------------------------


class _Sync(_Leasing):
    """Talks to a redis.Redis: one EVALSHA per decision, EVAL on NOSCRIPT; optional leases."""

    limiter_kind = SYNC
    _rl_group_engine = _SYNC_ENGINE
    _new_lease_lock = staticmethod(threading.Lock)

    def _run(self: Any, keys: Sequence[Any], argv: Sequence[str]) -> Any:
        client = self._client
        with self._lock:
            self._round_trips += 1
        try:
            return client.execute_command("EVALSHA", _script.SHA, len(keys), *keys, *argv)
        except redis.exceptions.NoScriptError:
            pass
        with self._lock:
            self._script_loads += 1
        # EVAL sends the script with the call (and caches it): no flush can come in between
        return client.execute_command("EVAL", _script.LUA, len(keys), *keys, *argv)

    def _decide(self: Any, arg: bytes, count: bool = False) -> tuple[bool, float, Any]:
        """One short look or take by this limiter alone (the hot path): ``arg`` is the script's
        argument; the receipt comes back as sent (bytes or str)."""
        call = self._short_call
        try:
            try:
                reply = self._client.execute_command(*call, arg)
            except redis.exceptions.NoScriptError:
                with self._lock:
                    self._script_loads += 1
                # EVAL sends the script with the call (and caches it): no flush can come between
                reply = self._client.execute_command("EVAL", _script.LUA, *call[2:], arg)
        except Exception as exc:
            return self._short_failed(exc, count)
        return self._short_answer(reply, count)

    def _adjust(self: Any, delta: float, stamp: str | None) -> None:
        keys, argv = _pack("adjust", (self,), (self._args4(delta, b"", b"", stamp),))
        try:
            self._answer(self._run(keys, argv))
        except _OUTAGE as exc:
            raise self._unavailable(exc) from exc
        if delta < 0:  # a give-back: this process's waiters decide again now
            self._gate.wake()

    def _settle(self: Any, reserved: Any, actual: Any, receipt: Any) -> None:
        """One member's share of a settled group reservation."""
        a = self._check_actual(actual, reserved)
        if receipt is not None and a != reserved:
            self._adjust(a - reserved, receipt)

    # -- the protocol

    def try_acquire(self: Any, cost: Any = 1) -> bool:
        """Take ``cost`` now if the shared limit allows it; never waits. One round trip
        (none while a lease lasts)."""
        spend = self._spend  # the lease's own try_acquire (in memory), or None
        if spend is not None:
            try:
                if spend(cost):
                    return True
            except (TypeError, ValueError):
                pass  # checked, with this limiter's message, below
            granted, _, asked = self._from_lease(self._check(cost))
            return self._note(granted) if asked else granted
        if type(cost) is int and cost == 1 and self._take1 is not None:
            return self._decide(self._take1, True)[0]
        return self._decide(self._short_argv["take"] + _num(self._check(cost)), True)[0]

    def wait_time(self: Any, cost: Any = 1) -> float:
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if now), by the server's clock."""
        c = self._check(cost)
        pool = self._pool
        if pool is not None and c <= pool.capacity_left():
            return 0.0
        allowed, wait, _ = self._decide(self._short_argv["look"] + _num(c))
        return 0.0 if allowed else wait

    def _wait_for(self: Any, cost: float | int, timeout: Any) -> tuple[bool, float, str | None]:
        """Take ``cost`` (sleeping as needed) -> (granted, wait when refused, stamp)."""
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        arg = self._short_argv["take"] + _num(cost)
        gate = self._gate
        while True:
            seen = gate.gen  # before deciding: a give-back after it cuts the sleep short
            allowed, wait, stamp = self._decide(arg)
            if allowed:
                return True, 0.0, stamp.decode() if type(stamp) is bytes else stamp
            if math.isinf(wait) or (deadline is not None and wait > deadline - time.monotonic()):
                return False, wait, None
            _sleep(gate, seen, wait)

    def acquire(self: Any, cost: Any = 1, timeout: Any = None) -> bool:
        """Sleep until ``cost`` is granted; False when ``timeout`` seconds would not suffice."""
        c = self._check(cost)
        if self._pool is None:
            return self._note(self._wait_for(c, timeout)[0])
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        gate = self._gate
        while True:
            seen = gate.gen
            granted, wait, asked = self._from_lease(c)
            if granted:
                return self._note(True) if asked else True
            if math.isinf(wait) or (deadline is not None and wait > deadline - time.monotonic()):
                return self._note(False)
            _sleep(gate, seen, wait)

    def reserve(self: Any, cost: Any = 1, timeout: Any = None) -> RedisReservation:
        """Take ``cost`` as ``acquire`` would and return a :class:`RedisReservation`;
        ``RateLimitError`` (with ``retry_after``) when ``timeout`` seconds would not suffice."""
        c = self._check(cost)
        granted, wait, stamp = self._wait_for(c, timeout)
        self._note(granted)
        if not granted:
            raise RateLimitError(retry_after=wait)
        return RedisReservation(self, c, stamp)

    def observe(self: Any, headers: Any, resource: Any = "requests", status: Any = None) -> Any:
        """Store what the provider reported (``prodfast._rl_headers``) for every client: grants
        for ``resource`` stay within the remaining budget until its reset, and a retry-after
        holds everyone.  Returns the parsed report; a lease held here is given back."""
        from .._rl_headers import check_resource, read_observation

        check_resource(resource)
        report, (budget,), retry_after = read_observation(headers, (resource,), status)
        self._apply_observation(budget, retry_after)
        return report

    def _apply_observation(self: Any, budget: Any, retry_after: Any) -> None:
        args = self._observation_args(budget, retry_after)
        if args is None:
            return
        keys, argv = _pack("observe", (self,), (args,))
        try:
            self._run(keys, argv)
        except _OUTAGE as exc:
            self._outage(exc)
            return
        if self._pool is not None:
            self._give_back_lease(self._pool, quiet=False)

    def reset(self: Any) -> None:
        """Delete the shared state (a full bucket / an empty window for everyone, no provider
        budget) and this client's counters and lease."""
        if self._pool is not None:
            self._forget_lease()
        try:
            self._client.delete(*self._keys)
        except _OUTAGE as exc:
            raise self._unavailable(exc) from exc
        self.reset_stats()

    # -- leases (shared bookkeeping in _Leasing)

    def _from_lease(self: Any, cost: float | int) -> tuple[bool, float, bool]:
        """Spend ``cost`` from the lease, or give its rest back and take a new one in the same
        round trip -> (granted, wait when refused, whether the server was asked)."""
        with self._lease_lock:
            pool = self._pool
            if pool.take(cost):  # another thread took a new lease meanwhile
                return True, 0.0, False
            left = pool.drain()
            self._retire(self._new_pool(0, None))
            batch = max(self._lease, cost)
            deadline = time.monotonic() + self._lease_ttl
            args = self._args4(cost, _num(batch), _num(left), pool.stamp)
            keys, argv = _pack("lease", (self,), (args,))
            try:
                reply = self._run(keys, argv)
            except _OUTAGE as exc:
                granted, wait, _ = self._outage(exc)  # what was left is lost: under-use only
                return granted, wait, True
            granted, wait, ((state, stamp, amount),) = _parse(reply)
            self._remember(state)
            if granted and amount > cost:
                rest = amount - cost
                self._retire(self._new_pool(rest if self._KIND == "tb" else int(rest), stamp))
                _REAPER.schedule(deadline, self, self._pool)
            return granted, wait, True

    def _give_back_lease(self: Any, pool: Any, quiet: bool) -> None:
        """Give back what ``pool`` did not spend (nothing if it was drained already)."""
        with self._lease_lock:
            left = pool.drain()
            if self._pool is pool:
                self._retire(self._new_pool(0, None))
        if left and pool.stamp is not None:
            try:
                self._adjust(-left, pool.stamp)
            except BackendUnavailable:
                if not quiet:
                    raise

    def close(self: Any) -> None:
        """Give back what the current lease did not spend (a later decision takes a new one)."""
        if self._pool is not None:
            self._give_back_lease(self._pool, quiet=False)

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self: Any, *exc: object) -> None:
        self.close()


_NOTHING_LEASED = frozenset().__contains__  # False for every cost, at C speed


class _Pool:
    """A lease held locally: an in-memory limiter of the active backend whose clock stands still
    (``clock=float`` always reads 0.0), so it never refills; ``size`` tokens or calls in it."""

    __slots__ = ("try_acquire", "size", "stamp", "_limiter", "_kind", "_not_decisions")

    def __init__(self, limiter: Any, size: float | int, stamp: str | None) -> None:
        impl = _backend.impl
        self._kind = limiter._KIND
        self.size = size
        self.stamp = stamp
        self._not_decisions = 0  # grants of its own (emptying, draining), not callers' decisions
        if self._kind == "tb":
            self._limiter = impl.TokenBucket(1.0, limiter._capacity, initial=size, clock=float)
        else:  # a window of max(size, 1) calls that never move out (time stands still)
            self._limiter = impl.SlidingWindowLimiter(max(int(size), 1), 1.0, clock=float)
            if size == 0:
                self._limiter.try_acquire(1)
                self._not_decisions = 1
        self.try_acquire = self._limiter.try_acquire

    def take(self, cost: float | int) -> bool:
        if not self.size:
            return False
        try:
            return bool(self.try_acquire(cost))
        except ValueError:  # more calls than this window holds
            return False

    def capacity_left(self) -> float:
        s = self._limiter.stats()
        return s["tokens"] if self._kind == "tb" else s["max_calls"] - s["in_window"]

    def drain(self) -> float | int:
        """Take everything left (atomically against other threads) and say how much it was."""
        while True:
            left = self.capacity_left()
            if left <= 0:
                return 0
            if self._limiter.try_acquire(left):
                self._not_decisions += 1
                return left

    def allowed(self) -> int:
        return self._limiter.stats()["allowed"] - self._not_decisions


class _AsyncLeases:
    """The async limiters' lease traffic (mixed into _Async): an asyncio.Lock around taking a
    new lease, the give-back on expiry scheduled on the event loop (``loop.call_later``)."""

    _new_lease_lock = staticmethod(asyncio.Lock)

    async def _from_lease(self: Any, cost: float | int) -> tuple[bool, float, bool]:
        async with self._lease_lock:
            pool = self._pool
            if pool.take(cost):
                return True, 0.0, False
            left = pool.drain()
            self._retire(self._new_pool(0, None))
            batch = max(self._lease, cost)
            loop = asyncio.get_running_loop()
            args = self._args4(cost, _num(batch), _num(left), pool.stamp)
            keys, argv = _pack("lease", (self,), (args,))
            try:
                reply = await self._run(keys, argv)
            except _OUTAGE as exc:
                granted, wait, _ = self._outage(exc)
                return granted, wait, True
            granted, wait, ((state, stamp, amount),) = _parse(reply)
            self._remember(state)
            if granted and amount > cost:
                rest = amount - cost
                new = self._new_pool(rest if self._KIND == "tb" else int(rest), stamp)
                self._retire(new)
                loop.call_later(self._lease_ttl, self._expire, new)
                _ASYNC_LEASED.add(self)
            return granted, wait, True

    def _expire(self: Any, pool: Any) -> None:
        task = asyncio.ensure_future(self._give_back_lease(pool, quiet=True))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _give_back_lease(self: Any, pool: Any, quiet: bool) -> None:
        """Give back what ``pool`` did not spend (nothing if it was drained already)."""
        left = pool.drain()
        if self._pool is pool:
            self._retire(self._new_pool(0, None))
        if left and pool.stamp is not None:
            try:
                await self._adjust(-left, pool.stamp)
            except BackendUnavailable:
                if not quiet:
                    raise

    async def close(self: Any) -> None:
        """Give back what the current lease did not spend (a later decision takes a new one).
        An async limiter's lease is not given back at interpreter exit (its event loop is gone
        by then): close it, or let it expire."""
        if self._pool is not None:
            await self._give_back_lease(self._pool, quiet=False)

    async def __aenter__(self: Any) -> Any:
        return self

    async def __aexit__(self: Any, *exc: object) -> None:
        await self.close()


_ASYNC_LEASED: weakref.WeakSet = weakref.WeakSet()  # a forked child forgets their leases too


# ---- async ----------------------------------------------------------------------------------


class _Async(_AsyncLeases, _Leasing):
    """Talks to a redis.asyncio.Redis: the same protocol, awaited."""

    limiter_kind = ASYNC
    _rl_group_engine = _ASYNC_ENGINE

    async def _run(self: Any, keys: Sequence[Any], argv: Sequence[str]) -> Any:
        client = self._client
        with self._lock:
            self._round_trips += 1
        try:
            return await client.execute_command("EVALSHA", _script.SHA, len(keys), *keys, *argv)
        except redis.exceptions.NoScriptError:
            pass
        with self._lock:
            self._script_loads += 1
        return await client.execute_command("EVAL", _script.LUA, len(keys), *keys, *argv)

    async def _decide(self: Any, arg: bytes, count: bool = False) -> tuple[bool, float, Any]:
        call = self._short_call
        try:
            try:
                reply = await self._client.execute_command(*call, arg)
            except redis.exceptions.NoScriptError:
                with self._lock:
                    self._script_loads += 1
                reply = await self._client.execute_command("EVAL", _script.LUA, *call[2:], arg)
        except Exception as exc:
            return self._short_failed(exc, count)
        return self._short_answer(reply, count)

    async def _adjust(self: Any, delta: float, stamp: str | None) -> None:
        keys, argv = _pack("adjust", (self,), (self._args4(delta, b"", b"", stamp),))
        try:
            self._answer(await self._run(keys, argv))
        except _OUTAGE as exc:
            raise self._unavailable(exc) from exc
        if delta < 0:  # a give-back: this process's waiters decide again now
            self._gate.wake()

    async def _settle(self: Any, reserved: Any, actual: Any, receipt: Any) -> None:
        """One member's share of a settled group reservation."""
        a = self._check_actual(actual, reserved)
        if receipt is not None and a != reserved:
            await self._adjust(a - reserved, receipt)

    async def try_acquire(self: Any, cost: Any = 1) -> bool:
        """Take ``cost`` now if the shared limit allows it; never waits. One round trip
        (none while a lease lasts)."""
        spend = self._spend
        if spend is not None:
            try:
                if spend(cost):
                    return True
            except (TypeError, ValueError):
                pass  # checked, with this limiter's message, below
            granted, _, asked = await self._from_lease(self._check(cost))
            return self._note(granted) if asked else granted
        if type(cost) is int and cost == 1 and self._take1 is not None:
            return (await self._decide(self._take1, True))[0]
        return (await self._decide(self._short_argv["take"] + _num(self._check(cost)), True))[0]

    async def wait_time(self: Any, cost: Any = 1) -> float:
        """Seconds until ``try_acquire(cost)`` would succeed (0.0 if now), by the server's clock."""
        c = self._check(cost)
        pool = self._pool
        if pool is not None and c <= pool.capacity_left():
            return 0.0
        allowed, wait, _ = await self._decide(self._short_argv["look"] + _num(c))
        return 0.0 if allowed else wait

    async def _wait_for(self: Any, cost: float | int, timeout: Any) -> tuple[bool, float, str | None]:
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        arg = self._short_argv["take"] + _num(cost)
        gate, loop = self._gate, asyncio.get_running_loop()
        while True:
            woken = gate.watch(loop)  # before deciding: a give-back after it resolves it
            try:
                allowed, wait, stamp = await self._decide(arg)
                if allowed:
                    return True, 0.0, stamp.decode() if type(stamp) is bytes else stamp
                if math.isinf(wait) or (deadline is not None and wait > deadline - time.monotonic()):
                    return False, wait, None
                await _asleep(woken, wait)
            finally:
                gate.unwatch(woken)

    async def acquire(self: Any, cost: Any = 1, timeout: Any = None) -> bool:
        """Sleep until ``cost`` is granted; False when ``timeout`` seconds would not suffice."""
        c = self._check(cost)
        if self._pool is None:
            check_timeout(timeout)
            return self._note((await self._wait_for(c, timeout))[0])
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        gate, loop = self._gate, asyncio.get_running_loop()
        while True:
            woken = gate.watch(loop)
            try:
                granted, wait, asked = await self._from_lease(c)
                if granted:
                    return self._note(True) if asked else True
                if math.isinf(wait) or (deadline is not None and wait > deadline - time.monotonic()):
                    return self._note(False)
                await _asleep(woken, wait)
            finally:
                gate.unwatch(woken)

    async def acquire_async(self: Any, cost: Any = 1, timeout: Any = None) -> bool:
        """The same as ``acquire`` (section 2's asyncio name)."""
        return await self.acquire(cost, timeout)

    async def reserve(self: Any, cost: Any = 1, timeout: Any = None) -> AsyncRedisReservation:
        """Take ``cost`` as ``acquire`` would and return an :class:`AsyncRedisReservation`;
        ``RateLimitError`` (with ``retry_after``) when ``timeout`` seconds would not suffice."""
        c = self._check(cost)
        check_timeout(timeout)
        granted, wait, stamp = await self._wait_for(c, timeout)
        self._note(granted)
        if not granted:
            raise RateLimitError(retry_after=wait)
        return AsyncRedisReservation(self, c, stamp)

    async def reserve_async(self: Any, cost: Any = 1, timeout: Any = None) -> AsyncRedisReservation:
        """The same as ``reserve``."""
        return await self.reserve(cost, timeout)

    async def observe(self: Any, headers: Any, resource: Any = "requests", status: Any = None) -> Any:
        """Store what the provider reported for every client (see ``RedisTokenBucket.observe``)."""
        from .._rl_headers import check_resource, read_observation

        check_resource(resource)
        report, (budget,), retry_after = read_observation(headers, (resource,), status)
        await self._apply_observation(budget, retry_after)
        return report

    async def _apply_observation(self: Any, budget: Any, retry_after: Any) -> None:
        args = self._observation_args(budget, retry_after)
        if args is None:
            return
        keys, argv = _pack("observe", (self,), (args,))
        try:
            await self._run(keys, argv)
        except _OUTAGE as exc:
            self._outage(exc)
            return
        if self._pool is not None:
            await self._give_back_lease(self._pool, quiet=False)

    async def reset(self: Any) -> None:
        """Delete the shared state (a full bucket / an empty window for everyone, no provider
        budget) and this client's counters and lease."""
        if self._pool is not None:
            self._forget_lease()
        try:
            await self._client.delete(*self._keys)
        except _OUTAGE as exc:
            raise self._unavailable(exc) from exc
        self.reset_stats()


class RedisTokenBucket(_Sync, _TokenBucketConfig):
    """Token bucket shared through Redis: ``rate`` tokens per second, at most ``capacity``.

    ``RedisTokenBucket(client, key, rate, capacity, *, on_error="raise", lease=None,
    lease_ttl=1.0)`` over a ``redis.Redis``.  A key nobody used yet (or that expired) is a full
    bucket.  ``lease=n`` spends up to ``n`` tokens per round trip locally (see the module's
    "Leases").
    """

    def __init__(
        self,
        client: Any,
        key: str | bytes,
        rate: float,
        capacity: float,
        *,
        on_error: str = "raise",
        lease: float | None = None,
        lease_ttl: float = 1.0,
    ) -> None:
        _Limiter.__init__(self, client, key, on_error, False)
        self._setup(rate, capacity)
        self._setup_lease(lease, lease_ttl)


class RedisSlidingWindow(_Sync, _SlidingWindowConfig):
    """Exact sliding-window log shared through Redis: at most ``max_calls`` per ``window`` s.

    ``RedisSlidingWindow(client, key, max_calls, window, *, on_error="raise", lease=None,
    lease_ttl=None)`` over a ``redis.Redis``.  A call made at server time ``c`` counts while
    ``now - c < window``.  ``lease=n`` spends up to ``n`` calls per round trip locally;
    ``lease_ttl`` (default: a tenth of the window, at most 1 s) must be below ``window``.
    """

    def __init__(
        self,
        client: Any,
        key: str | bytes,
        max_calls: int,
        window: float,
        *,
        on_error: str = "raise",
        lease: int | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        _Limiter.__init__(self, client, key, on_error, False)
        self._setup(max_calls, window)
        self._setup_lease(lease, min(1.0, self._window / 10) if lease_ttl is None else lease_ttl)


class AsyncRedisTokenBucket(_Async, _TokenBucketConfig):
    """``RedisTokenBucket`` over a ``redis.asyncio.Redis``; its Redis methods are coroutines
    (``close`` too, and ``async with limiter:``)."""

    def __init__(
        self,
        client: Any,
        key: str | bytes,
        rate: float,
        capacity: float,
        *,
        on_error: str = "raise",
        lease: float | None = None,
        lease_ttl: float = 1.0,
    ) -> None:
        _Limiter.__init__(self, client, key, on_error, True)
        self._setup(rate, capacity)
        self._expiring: set = set()
        self._setup_lease(lease, lease_ttl)


class AsyncRedisSlidingWindow(_Async, _SlidingWindowConfig):
    """``RedisSlidingWindow`` over a ``redis.asyncio.Redis``; its Redis methods are coroutines
    (``close`` too, and ``async with limiter:``)."""

    def __init__(
        self,
        client: Any,
        key: str | bytes,
        max_calls: int,
        window: float,
        *,
        on_error: str = "raise",
        lease: int | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        _Limiter.__init__(self, client, key, on_error, True)
        self._setup(max_calls, window)
        self._expiring: set = set()
        self._setup_lease(lease, min(1.0, self._window / 10) if lease_ttl is None else lease_ttl)


_SyncEngine._cls = _Sync
_AsyncEngine._cls = _Async
