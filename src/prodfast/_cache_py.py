"""Pure-Python LRUCache and TTLCache: the readable reference twin of the compiled caches.

Layout of one cache::

    _map    dict      key -> _Node(key, value, size, expires)   the only table hashing user keys
    _order  OrderedDict[_Node, None]   recency, least recently used first
    _xorder OrderedDict[_Node, None]   TTLCache only: expiry order (= order of the last set)

Nodes hash by identity, so moving a node in ``_order``/``_xorder`` never runs user code.
User code can run inside ``_map`` lookups (``__hash__``/``__eq__``), in the timer, in
``getsizeof``, ``on_evict``, ``__missing__``, an overriding ``popitem`` and the ``__del__`` of a
released key or value. The rules that keep the cache consistent whatever that code does:

* Every change bumps ``_mod`` (structure and recency) and structural changes bump ``_version``;
  a lookup that ran user code re-checks ``_version`` and raises RuntimeError if it moved.
* While a method is rewiring the structure (``_busy``), a re-entrant mutation from the same
  thread raises RuntimeError instead of interleaving with half-done work.
* Removed keys and values are released, and ``on_evict`` is called, only after the structure is
  consistent again and the lock is released.
* One ``threading.RLock`` serialises threads; the same thread may re-enter it.

TTL semantics: an item set at time ``t`` is valid while ``timer() < t + ttl``. A timer that goes
backwards is treated as "no time passed" (times are clamped to the latest one seen), so the
expiry order is always sorted and expired items are a prefix of ``_xorder``.
"""

from __future__ import annotations

import collections
import copyreg
import math
import numbers
import reprlib
import threading
import time
import types
from collections.abc import ItemsView, KeysView, MutableMapping, ValuesView

__all__ = ["LRUCache", "TTLCache"]

_MISSING = object()
_STATE_TAG = "prodfast.cache"
_STATE_VERSION = 1


class _Node:
    __slots__ = ("key", "value", "size", "expires")

    def __init__(self, key, value, size, expires):
        self.key = key
        self.value = value
        self.size = size
        self.expires = expires


class _Timer:
    """The ``cache.timer`` wrapper: call it for the time, or ``with cache.timer as now:``.

    Inside a ``with`` block the time is frozen: every read (including the cache's own reads)
    returns the value read on entry, as cachetools' ``_TimedCache._Timer`` does. Attribute
    access is forwarded to the user's timer.
    """

    __slots__ = ("_timer", "_nesting", "_time")

    def __init__(self, timer):
        self._timer = timer
        self._nesting = 0
        self._time = None

    def __call__(self):
        if self._nesting == 0:
            return self._timer()
        return self._time

    def __enter__(self):
        if self._nesting == 0:
            self._time = self._timer()
        self._nesting += 1
        return self._time

    def __exit__(self, *exc):
        self._nesting -= 1

    def __reduce__(self):
        return _Timer, (self._timer,)

    def __getattr__(self, name):
        return getattr(self._timer, name)


def _check_maxsize(maxsize):
    if isinstance(maxsize, bool) or not (
        isinstance(maxsize, int) or (isinstance(maxsize, float) and maxsize == math.inf)
    ):
        raise TypeError(f"maxsize must be a non-negative int or math.inf, got {maxsize!r}")
    if maxsize < 0:
        raise ValueError(f"maxsize must be a non-negative int or math.inf, got {maxsize!r}")


def _check_callable(name, fn):
    if fn is not None and not callable(fn):
        raise TypeError(f"{name} must be callable or None, got {fn!r}")


def _check_ttl(ttl):
    if isinstance(ttl, bool):
        raise TypeError(f"ttl must be a positive number (or a duration the timer's values accept), got {ttl!r}")
    if isinstance(ttl, numbers.Real):
        if not ttl > 0:  # also rejects NaN
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        return
    try:
        zero = ttl - ttl
        positive = bool(ttl > zero)
    except Exception:
        raise TypeError(
            f"ttl must be a positive number (or a duration the timer's values accept), got {ttl!r}"
        ) from None
    if not positive:
        raise ValueError(f"ttl must be positive, got {ttl!r}")


def _check_size(size, maxsize):
    # getsizeof(value) must give a non-negative real number no larger than maxsize
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise TypeError(f"getsizeof must return a non-negative number, got {size!r}")
    if size > maxsize:
        raise ValueError("value too large")
    if not size >= 0:
        raise ValueError("value size must be non-negative")


class _CacheValuesView(ValuesView):
    """Values in recency order; reading them does not touch recency or the counters."""

    __slots__ = ()

    def __iter__(self):
        for _key, value in self._mapping._iter_items():
            yield value

    def __contains__(self, value):
        return any(v is value or v == value for v in self)


class _CacheItemsView(ItemsView):
    """(key, value) pairs in recency order; reading them does not touch recency or the counters."""

    __slots__ = ()

    def __iter__(self):
        return self._mapping._iter_items()

    def __contains__(self, item):
        key, value = item
        v = self._mapping.peek(key, _MISSING)
        return v is not _MISSING and (v is value or v == value)


class LRUCache(MutableMapping):
    """A mapping that keeps at most ``maxsize`` worth of items, evicting the least recently used.

    ``LRUCache(maxsize, getsizeof=None, *, on_evict=None)`` is a drop-in for
    ``cachetools.LRUCache``: ``maxsize`` is an int >= 0 or ``math.inf``; ``getsizeof(value)``
    gives each value's size (1 when omitted) and ``currsize`` their sum; a value larger than
    ``maxsize`` raises ``ValueError("value too large")``. ``on_evict(key, value)`` is called for
    each item removed to make room (not by ``del``, ``pop``, ``popitem`` or ``clear``), after the
    cache is consistent again; an exception it raises reaches the caller.

    Recency: ``c[k]``, ``c.get(k)`` and ``c[k] = v`` make ``k`` the most recent; ``k in c``,
    ``peek``, ``len`` and iteration do not. Iteration yields the least recently used key first.
    Updating an existing key never evicts another one unless ``getsizeof`` makes the new value
    larger than the room left. ``stats()`` counts lookups (``c[k]`` and ``get``) only.

    A subclass may define ``__missing__(key)`` (called by ``c[k]`` on a miss) and may override
    ``popitem()``: every eviction for room then goes through it, as in cachetools.
    """

    __class_getitem__ = classmethod(types.GenericAlias)

    _is_ttl = False

    def __init__(self, maxsize, getsizeof=None, *, on_evict=None):
        _check_maxsize(maxsize)
        _check_callable("getsizeof", getsizeof)
        _check_callable("on_evict", on_evict)
        self._setup(maxsize, getsizeof, on_evict)

    # ------------------------------------------------------------------ set-up and helpers

    def _setup(self, maxsize, getsizeof, on_evict):
        self._maxsize = maxsize
        self._getsizeof = getsizeof
        self._on_evict = on_evict
        self._map = {}
        self._order = collections.OrderedDict()
        self._currsize = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._version = 0
        self._mod = 0
        self._busy = False
        self._lock = threading.RLock()
        cls = type(self)
        self._hook = cls.popitem is not self._base_popitem()
        self._has_missing = hasattr(cls, "__missing__")

    @classmethod
    def _base_popitem(cls):
        return LRUCache.popitem

    def _enter(self):
        # Called with the lock held, before rewiring the structure.
        if self._busy:
            raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        self._busy = True

    def _lookup(self, key):
        # The node for key or None. User __hash__/__eq__ may run; a structural change they make
        # to this cache is reported as RuntimeError rather than acted on.
        version = self._version
        node = self._map.get(key)
        if self._version != version:
            raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        return node

    def _unlink(self, node):
        # Remove node from every structure (the map lookup may run the key's __hash__/__eq__).
        del self._map[node.key]
        del self._order[node]
        self._currsize -= node.size
        self._version += 1
        self._mod += 1

    def _now(self):
        return None

    def _alive(self, node, now):
        return True

    def _notify(self, evicted):
        # Call on_evict for each evicted pair; the first exception is raised after all ran.
        on_evict = self._on_evict
        if on_evict is None or not evicted:
            return
        error = None
        for key, value in evicted:
            try:
                on_evict(key, value)
            except BaseException as exc:  # noqa: B036 - re-raised below
                if error is None:
                    error = exc
        if error is not None:
            try:
                raise error
            finally:
                error = None

    # ------------------------------------------------------------------ properties

    @property
    def maxsize(self):
        """The maximum size of the cache (an int or math.inf)."""
        return self._maxsize

    @property
    def currsize(self):
        """The total size of the items held (for TTLCache: of the items not yet expired)."""
        return self._currsize

    def getsizeof(self, value):
        """The size of value as this cache counts it (1 without a getsizeof function)."""
        if self._getsizeof is None:
            return 1
        return self._getsizeof(value)

    @property
    def on_evict(self):
        """The eviction callback, or None."""
        return self._on_evict

    # ------------------------------------------------------------------ lookups

    def __getitem__(self, key):
        with self._lock:
            now = self._now() if self._is_ttl else None
            version = self._version
            node = self._map.get(key)  # user __hash__/__eq__ may run
            if self._version != version:
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
            if node is not None and (now is None or now < node.expires):
                self._order.move_to_end(node)
                self._mod += 1
                self._hits += 1
                return node.value
            self._misses += 1
        if self._has_missing:
            return self.__missing__(key)
        raise KeyError(key)

    def get(self, key, default=None):
        """The value for key, making it the most recent, or default (counts as a lookup)."""
        with self._lock:
            now = self._now() if self._is_ttl else None
            version = self._version
            node = self._map.get(key)  # user __hash__/__eq__ may run
            if self._version != version:
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
            if node is not None and (now is None or now < node.expires):
                self._order.move_to_end(node)
                self._mod += 1
                self._hits += 1
                return node.value
            self._misses += 1
            return default

    def peek(self, key, default=None):
        """The value for key, or default, without making it most recent or counting a lookup."""
        with self._lock:
            now = self._now()
            node = self._lookup(key)
            if node is not None and self._alive(node, now):
                return node.value
            return default

    def __contains__(self, key):
        with self._lock:
            now = self._now()
            node = self._lookup(key)
            return node is not None and self._alive(node, now)

    def __len__(self):
        return len(self._map)

    def __iter__(self):
        for node in self._iter_nodes():
            yield node.key

    def _iter_nodes(self):
        with self._lock:
            mod = self._mod
            now = self._now()
            it = iter(self._order)
        while True:
            with self._lock:
                if self._mod != mod:
                    raise RuntimeError(f"{type(self).__name__} changed during iteration")
                node = next(it, None)
                if node is None:
                    return
                if not self._alive(node, now):
                    continue
            yield node

    def _iter_items(self):
        for node in self._iter_nodes():
            yield node.key, node.value

    def keys(self):
        """A view of the keys, least recently used first."""
        return KeysView(self)

    def values(self):
        """A view of the values, least recently used first (does not touch recency)."""
        return _CacheValuesView(self)

    def items(self):
        """A view of the (key, value) pairs, least recently used first (does not touch recency)."""
        return _CacheItemsView(self)

    # ------------------------------------------------------------------ insertion

    def __setitem__(self, key, value):
        evicted = []  # released (and reported to on_evict) after the lock is dropped
        try:
            with self._lock:
                if self._hook and self._is_ttl:
                    # an overriding popitem() reads the timer too: freeze it for the operation
                    with self._timer:
                        old = self._set(key, value, evicted)
                else:
                    old = self._set(key, value, evicted)
        finally:
            # on_evict runs even when a later step failed: those items are gone either way
            self._notify(evicted)
        del old  # a replaced value is released last: its __del__ may use the cache

    def set(self, key, value):
        """Store value under key (the seed's name for ``cache[key] = value``)."""
        self[key] = value

    def _set(self, key, value, evicted):
        # Returns the replaced value (released by the caller once everything is done).
        if self._busy:
            raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        is_ttl = self._is_ttl
        if is_ttl:
            now = self._now()
            expires = now + self._ttl  # may raise (overflow): nothing changed yet
        else:
            now = expires = None
        maxsize = self._maxsize
        getsizeof = self._getsizeof
        if getsizeof is None:
            size = 1
            if maxsize < 1:
                raise ValueError("value too large")
        else:
            size = getsizeof(value)
            _check_size(size, maxsize)
        if is_ttl:
            self._expire_into(now, evicted)
        if self._hook:
            return self._set_hooked(key, value, size, expires, evicted)
        # No user code below except the __hash__/__eq__ of keys, which cannot mutate: busy.
        self._enter()
        try:
            node = self._map.get(key)
            order = self._order
            if node is not None:
                # Update in place, most recent first: evicting for extra room (only when the
                # new value is larger) then never picks the key itself.
                order.move_to_end(node)
                if is_ttl:
                    node.expires = expires
                    self._xorder.move_to_end(node)
                diff = size - node.size
            else:
                diff = size
            while self._currsize + diff > maxsize:
                victim = next(iter(order))
                self._unlink(victim)
                self._evictions += 1
                evicted.append((victim.key, victim.value))
            self._mod += 1
            if node is not None:
                old = node.value
                node.value = value
                node.size = size
                self._currsize += diff
                return old
            node = _Node(key, value, size, expires)
            self._map[key] = node  # may run __hash__/__eq__ again
            order[node] = None
            if is_ttl:
                self._xorder[node] = None
            self._currsize += size
            self._version += 1
            return None
        finally:
            self._busy = False

    def _set_hooked(self, key, value, size, expires, evicted):
        # __setitem__ of a subclass that overrides popitem(): every eviction goes through it.
        maxsize = self._maxsize
        node = self._lookup(key)
        if node is not None:
            # Update in place: make it the most recent first, so that evicting for extra room
            # (only possible when the new value is larger) never picks the key itself.
            self._enter()
            try:
                self._order.move_to_end(node)
                self._restamp(node, expires)
                self._mod += 1
            finally:
                self._busy = False
            diff = size - node.size
            while self._currsize + diff > maxsize:
                self._evict_one(evicted)
                node = self._lookup(key)
                if node is None:  # an overriding popitem() removed it after all
                    diff = size
            if node is not None:
                self._enter()
                try:
                    old = node.value
                    node.value = value
                    node.size = size
                    self._currsize += diff
                    self._mod += 1
                finally:
                    self._busy = False
                return old
        if self._currsize + size > maxsize:
            while self._currsize + size > maxsize:
                self._evict_one(evicted)
            if self._hook and self._lookup(key) is not None:
                # the overriding popitem() stored key meanwhile
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        node = _Node(key, value, size, expires)
        self._enter()
        try:
            self._map[key] = node  # may run __hash__/__eq__ again (mutations refused: busy)
            self._order[node] = None
            self._link_expiry(node)
            self._currsize += size
            self._version += 1
            self._mod += 1
        finally:
            self._busy = False
        return None

    def _evict_one(self, evicted):
        # Make room: one item out, through an overriding popitem() when there is one.
        if self._hook:
            busy = self._busy
            self._busy = False
            before = self._version
            try:
                pair = self.popitem()
            finally:
                self._busy = busy
            key, value = pair
            if self._version == before:
                raise RuntimeError(f"{type(self).__name__}.popitem() removed nothing")
        else:
            if not self._order:
                raise KeyError(f"{type(self).__name__} is empty")
            node = next(iter(self._order))
            self._enter()
            try:
                self._unlink(node)
            finally:
                self._busy = False
            key, value = node.key, node.value
        self._evictions += 1
        evicted.append((key, value))

    # hooks filled in by TTLCache
    def _expires_at(self, now):
        return None

    def _expire_into(self, now, evicted):
        pass

    def _restamp(self, node, expires):
        pass

    def _link_expiry(self, node):
        pass

    # ------------------------------------------------------------------ removal

    def __delitem__(self, key):
        with self._lock:
            now = self._now()
            node = self._lookup(key)
            if node is None or not self._alive(node, now):
                raise KeyError(key)
            self._enter()
            try:
                self._unlink(node)
            finally:
                self._busy = False
        del node

    def pop(self, key, default=_MISSING):
        """Remove key and return its value; default (or KeyError) when it is absent or expired."""
        with self._lock:
            now = self._now()
            node = self._lookup(key)
            if node is None or not self._alive(node, now):
                if default is _MISSING:
                    raise KeyError(key)
                return default
            self._enter()
            try:
                self._unlink(node)
            finally:
                self._busy = False
            return node.value

    def setdefault(self, key, default=None):
        """The value for key if present (without counting a lookup), else store default."""
        with self._lock:
            now = self._now()
            node = self._lookup(key)
            if node is not None and self._alive(node, now):
                self._order.move_to_end(node)
                self._mod += 1
                return node.value
        self._store_at(key, default, now)  # outside the lock: it may call on_evict
        return default

    def _store_at(self, key, value, now):
        # __setitem__ at an already-read time (TTLCache: no second timer read)
        self[key] = value

    def popitem(self):
        """Remove and return the least recently used ``(key, value)`` pair."""
        with self._lock:
            if not self._order:
                raise KeyError(f"{type(self).__name__} is empty")
            node = next(iter(self._order))
            self._enter()
            try:
                self._unlink(node)
            finally:
                self._busy = False
            return node.key, node.value

    def clear(self):
        """Remove every item (counters are kept; see reset_stats)."""
        with self._lock:
            self._enter()
            try:
                old = self._map, self._order
                self._map = {}
                self._order = collections.OrderedDict()
                self._clear_expiry()
                self._currsize = 0
                self._version += 1
                self._mod += 1
            finally:
                self._busy = False
        del old  # keys and values released outside the lock

    def _clear_expiry(self):
        pass

    # ------------------------------------------------------------------ statistics

    def stats(self):
        """Counters: hits, misses, hit_rate, size, max_size, ttl, evictions, expirations."""
        with self._lock:
            hits, misses = self._hits, self._misses
            total = hits + misses
            return {
                "hits": hits,
                "misses": misses,
                "hit_rate": hits / total if total else 0.0,
                "size": len(self),
                "max_size": self._maxsize,
                "ttl": self._stats_ttl(),
                "evictions": self._evictions,
                "expirations": self._expirations,
            }

    def _stats_ttl(self):
        return None

    def reset_stats(self):
        """Set hits, misses, evictions and expirations back to zero."""
        with self._lock:
            self._hits = self._misses = self._evictions = self._expirations = 0

    # ------------------------------------------------------------------ repr, copy, pickle

    @reprlib.recursive_repr()
    def __repr__(self):
        with self._lock:
            items = list(self._iter_items())
            currsize = self.currsize
        body = ", ".join(f"{k!r}: {v!r}" for k, v in items)
        return f"{type(self).__name__}({{{body}}}, maxsize={self._maxsize!r}, currsize={currsize!r})"

    def __reduce__(self):
        return copyreg.__newobj__, (type(self),), self.__getstate__()

    def __getstate__(self):
        with self._lock:
            items = [(n.key, n.value, n.size) for n in self._order]
            ttl_part = self._ttl_state()
            return (
                _STATE_TAG,
                _STATE_VERSION,
                self._settings(),
                items,
                ttl_part,
                (self._hits, self._misses, self._evictions, self._expirations),
            )

    def _settings(self):
        return (self._maxsize, self._getsizeof, self._on_evict, None, None)

    def _ttl_state(self):
        return None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 6 and state[0] == _STATE_TAG):
            raise TypeError(f"invalid {type(self).__name__} state")
        if state[1] != _STATE_VERSION:
            raise ValueError(f"unsupported {type(self).__name__} state version {state[1]!r}")
        _, _, settings, items, ttl_part, counters = state
        maxsize, getsizeof, on_evict, ttl, timer = settings
        _check_maxsize(maxsize)
        _check_callable("getsizeof", getsizeof)
        _check_callable("on_evict", on_evict)
        self._restore_settings(ttl, timer)
        self._setup(maxsize, getsizeof, on_evict)
        nodes = []
        for key, value, size in items:
            node = _Node(key, value, size, None)
            self._map[key] = node
            self._order[node] = None
            self._currsize += size
            nodes.append(node)
        self._restore_ttl(nodes, ttl_part)
        self._hits, self._misses, self._evictions, self._expirations = counters

    def _restore_settings(self, ttl, timer):
        pass

    def _restore_ttl(self, nodes, ttl_part):
        pass

    def __copy__(self):
        cls = type(self)
        new = cls.__new__(cls)
        new.__setstate__(self.__getstate__())
        return new

    # ------------------------------------------------------------------ invariants

    def _check(self):
        """Verify the internal invariants; raise AssertionError on the first broken one."""
        with self._lock:
            if self._busy:
                raise AssertionError("busy flag left set")
            if len(self._map) != len(self._order):
                raise AssertionError(f"map has {len(self._map)} items, order {len(self._order)}")
            # identity checks only: _check() never runs user __hash__/__eq__
            for key, node in self._map.items():
                if node.key is not key:
                    raise AssertionError(f"map key {key!r} and its node disagree")
            in_map = {id(node) for node in self._map.values()}
            total = 0
            for node in self._order:
                if id(node) not in in_map:
                    raise AssertionError(f"order node {node.key!r} is not in the map")
                total += node.size
            if total != self._currsize:
                raise AssertionError(f"currsize {self._currsize!r} != sum of sizes {total!r}")
            if self._currsize > self._maxsize:
                raise AssertionError(f"currsize {self._currsize!r} > maxsize {self._maxsize!r}")
            for name in ("_hits", "_misses", "_evictions", "_expirations"):
                if getattr(self, name) < 0:
                    raise AssertionError(f"{name} is negative")
            self._check_expiry()

    def _check_expiry(self):
        pass


class TTLCache(LRUCache):
    """An LRUCache whose items also expire ``ttl`` after they were last set.

    ``TTLCache(maxsize, ttl, timer=time.monotonic, getsizeof=None, *, on_evict=None)`` matches
    ``cachetools.TTLCache``: an item set at time ``t`` is valid while ``timer() < t + ttl``;
    reading it does not extend its life. ``len``, ``currsize``, iteration, ``in`` and ``peek``
    leave expired items out without removing them; ``c[k]``/``get`` of an expired key is a miss;
    ``del``/``pop`` of one raise KeyError (they stay until expired items are removed). Each set
    first removes every expired item (counted in ``expirations``, reported to ``on_evict``), so
    when the cache is full expired items go before any live one. ``expire(time=None)`` removes
    them on demand and returns the removed pairs. ``popitem()`` does the same, then removes the
    least recently used live item.

    The timer may return any ordered value supporting ``+ ttl`` (e.g. ``datetime.now`` with a
    ``timedelta`` ttl); ``cache.timer`` wraps it (``with cache.timer as now:`` freezes time for
    the block). Each operation reads the timer once.
    """

    _is_ttl = True

    def __init__(self, maxsize, ttl, timer=time.monotonic, getsizeof=None, *, on_evict=None):
        _check_maxsize(maxsize)
        _check_ttl(ttl)
        if not callable(timer):
            raise TypeError(f"timer must be callable, got {timer!r}")
        _check_callable("getsizeof", getsizeof)
        _check_callable("on_evict", on_evict)
        self._restore_settings(ttl, timer)
        self._setup(maxsize, getsizeof, on_evict)

    @classmethod
    def _base_popitem(cls):
        return TTLCache.popitem

    def _setup(self, maxsize, getsizeof, on_evict):
        LRUCache._setup(self, maxsize, getsizeof, on_evict)
        self._xorder = collections.OrderedDict()
        self._last = None  # latest time read: a timer that goes backwards is clamped to it

    def _restore_settings(self, ttl, timer):
        _check_ttl(ttl)
        if not callable(timer):
            raise TypeError(f"timer must be callable, got {timer!r}")
        self._ttl = ttl
        self._timer = _Timer(timer)

    @property
    def ttl(self):
        """The time-to-live of every item."""
        return self._ttl

    @property
    def timer(self):
        """The timer wrapper: ``cache.timer()`` reads it; ``with cache.timer as now:`` freezes it."""
        return self._timer

    # one timer read per operation; the clamp keeps expiry times non-decreasing
    def _now(self):
        now = self._timer()
        last = self._last
        if last is not None and now < last:
            return last
        self._last = now
        return now

    def _alive(self, node, now):
        return now < node.expires

    def _expires_at(self, now):
        return now + self._ttl

    def _store_at(self, key, value, now):
        timer = self._timer
        with self._lock:
            frozen = timer._nesting
            if not frozen:
                timer._time = now
            timer._nesting += 1
        try:
            self[key] = value
        finally:
            timer._nesting -= 1

    def _restamp(self, node, expires):
        node.expires = expires
        self._xorder.move_to_end(node)

    def _link_expiry(self, node):
        self._xorder[node] = None

    def _unlink(self, node):
        LRUCache._unlink(self, node)
        del self._xorder[node]

    def _clear_expiry(self):
        self._xorder = collections.OrderedDict()

    def _stats_ttl(self):
        return self._ttl

    def _expired_prefix(self, now):
        # (count, total size) of the expired items at the front of the expiry order
        count = 0
        size = 0
        for node in self._xorder:
            if now < node.expires:
                break
            count += 1
            size += node.size
        return count, size

    def _expire_into(self, now, evicted):
        xorder = self._xorder
        if not xorder:
            return
        first = next(iter(xorder))
        if now < first.expires:
            return
        self._enter()
        try:
            while xorder:
                node = next(iter(xorder))
                if now < node.expires:
                    break
                self._unlink(node)
                self._expirations += 1
                evicted.append((node.key, node.value))
        finally:
            self._busy = False

    def __len__(self):
        with self._lock:
            n = len(self._map)
            if not n:
                return 0
            return n - self._expired_prefix(self._now())[0]

    @property
    def currsize(self):
        """The total size of the items not yet expired."""
        with self._lock:
            if not self._map:
                return self._currsize
            return self._currsize - self._expired_prefix(self._now())[1]

    def expire(self, time=None):
        """Remove the items expired at ``time`` (default: now); return the removed pairs."""
        evicted = []
        try:
            with self._lock:
                if time is None:
                    time = self._now()
                self._expire_into(time, evicted)
        finally:
            self._notify(evicted)
        return list(evicted)

    def popitem(self):
        """Remove expired items, then remove and return the least recently used live pair."""
        evicted = []
        try:
            with self._lock:
                now = self._now()
                self._expire_into(now, evicted)
                if not self._order:
                    raise KeyError(f"{type(self).__name__} is empty")
                node = next(iter(self._order))
                self._enter()
                try:
                    self._unlink(node)
                finally:
                    self._busy = False
                return node.key, node.value
        finally:
            self._notify(evicted)

    # ------------------------------------------------------------------ pickle

    def _settings(self):
        return (self._maxsize, self._getsizeof, self._on_evict, self._ttl, self._timer._timer)

    def _ttl_state(self):
        index = {node: i for i, node in enumerate(self._order)}
        expires = [node.expires for node in self._order]
        xorder = [index[node] for node in self._xorder]
        return (expires, xorder, self._last)

    def _restore_ttl(self, nodes, ttl_part):
        expires, xorder, last = ttl_part
        if len(expires) != len(nodes) or sorted(xorder) != list(range(len(nodes))):
            raise ValueError(f"invalid {type(self).__name__} state")
        for node, exp in zip(nodes, expires, strict=True):
            node.expires = exp
        for i in xorder:
            self._xorder[nodes[i]] = None
        self._last = last

    def _check_expiry(self):
        if len(self._xorder) != len(self._order):
            raise AssertionError(f"expiry order has {len(self._xorder)} items, map {len(self._map)}")
        prev = None
        for node in self._xorder:
            if node not in self._order:
                raise AssertionError(f"expiry node {node.key!r} is not in the recency order")
            if prev is not None and node.expires < prev:
                raise AssertionError("expiry order is not sorted")
            prev = node.expires
