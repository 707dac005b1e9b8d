"""The pure-Python caches: the readable reference twin of the compiled ones.

Seven classes with cachetools 8's constructors and semantics, each a ``MutableMapping``:

    Cache      evicts the first inserted key (an update keeps the key's place)
    FIFOCache  evicts the first inserted key (an update re-queues the key at the back)
    LFUCache   evicts the least frequently used key, the least recently used among equals
    LRUCache   evicts the least recently used key
    RRCache    evicts ``choice(keys)`` (``random.choice`` by default)
    TTLCache   an LRUCache whose items expire ``ttl`` after they were set
    TLRUCache  an LRUCache whose items expire at ``ttu(key, value, now)``

Layout of one cache::

    _map    dict  key -> _Node(key, value, size, expires, linked, aux)
            the only table hashing user keys; its order (first insertion) is the iteration order
    policy  FIFO/LRU/TTL/TLRU: ``_order`` OrderedDict[_Node, None], next victim first
            LFU: a ring of _Bucket(count, nodes) in ascending count, ``node.aux`` its bucket
            RR: ``_slots`` list of nodes, ``node.aux`` its index (swap-remove)
    expiry  TTL: ``_xorder`` OrderedDict[_Node, None] in set order = expiry order
            TLRU: ``_heap`` of [expires, seq, node] (a removed item leaves node None)

Nodes hash by identity, so moving a node in the policy structures never runs user code.
User code can run inside ``_map`` lookups (``__hash__``/``__eq__``), in the timer, ``ttu``,
``choice``, ``getsizeof``, ``on_evict``, ``__missing__``, an overriding ``popitem`` and the
``__del__`` of a released key or value. The rules that keep the cache consistent whatever that
code does:

* Structural changes bump ``_version``; a lookup that ran user code re-checks it and raises
  RuntimeError if it moved.
* While a method is rewiring the structure (``_busy``), a re-entrant mutation from the same
  thread raises RuntimeError instead of interleaving with half-done work.
* Removed keys and values are released, and ``on_evict`` is called, only after the structure is
  consistent again and the lock is released.
* One ``threading.RLock`` serialises threads; the same thread may re-enter it.
* Iteration walks a snapshot of the nodes taken at its start and yields those still linked (and
  alive at the time read then), so changing the cache while iterating is allowed: keys added
  meanwhile are not visited, removed ones are skipped.

Timed caches: an item is valid while ``timer() < expires``. A timer that goes backwards is
treated as "no time passed" (times are clamped to the latest one seen), so TTLCache's expiry
order is always sorted and its expired items are a prefix of ``_xorder``. A float reading that is
NaN or infinite is refused.
"""

from __future__ import annotations

import collections
import copyreg
import fractions
import heapq
import math
import numbers
import random
import reprlib
import threading
import time
import types
from collections.abc import ItemsView, KeysView, MutableMapping, Sequence, ValuesView

__all__ = ["Cache", "FIFOCache", "LFUCache", "LRUCache", "RRCache", "TLRUCache", "TTLCache"]

_MISSING = object()
_STATE_TAG = "prodfast.cache"
_STATE_VERSION = 2


class _Node:
    __slots__ = ("key", "value", "size", "expires", "linked", "aux")

    def __init__(self, key, value, size, expires):
        self.key = key
        self.value = value
        self.size = size
        self.expires = expires
        self.linked = True
        self.aux = None  # LFU: its _Bucket; RR: its index in _slots; TLRU: its heap entry


def _default_getsizeof(value):
    """The size of every value of a cache without a getsizeof function: 1."""
    return 1


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


# ---------------------------------------------------------------------- argument checks


def _check_maxsize(maxsize):
    if isinstance(maxsize, bool) or not (
        isinstance(maxsize, int) or (isinstance(maxsize, float) and math.isinf(maxsize))
    ):
        raise TypeError(f"maxsize must be a non-negative int or math.inf, got {maxsize!r}")
    if maxsize < 0:
        raise ValueError(f"maxsize must be a non-negative int or math.inf, got {maxsize!r}")


def _check_callable(name, fn):
    if fn is not None and not callable(fn):
        raise TypeError(f"{name} must be callable or None, got {fn!r}")


def _check_required_callable(name, fn):
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {fn!r}")


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
    # getsizeof(value) must give a finite, non-negative real number no larger than maxsize.
    # Returns the size as a plain int, float or Fraction: a subclass's arithmetic is user code,
    # which must not run while currsize is updated in the middle of a structural change.
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise TypeError(f"getsizeof must return a non-negative number, got {size!r}")
    if size > maxsize:
        raise ValueError("value too large")
    if not size >= 0:
        raise ValueError("value size must be non-negative")
    if size == math.inf:
        raise ValueError("value size must be finite")
    if type(size) in (int, float, fractions.Fraction):
        return size
    if isinstance(size, int):
        return int(size)
    if isinstance(size, fractions.Fraction):
        return fractions.Fraction(size.numerator, size.denominator)
    return float(size)


def _check_time(now):
    if isinstance(now, float) and not math.isfinite(now):
        raise ValueError(f"timer must return a finite time, got {now!r}")


# ---------------------------------------------------------------------- views


class _CacheValuesView(ValuesView):
    """Values in iteration order; reading them does not touch recency or the counters."""

    __slots__ = ()

    def __iter__(self):
        for _key, value in self._mapping._iter_items():
            yield value

    def __contains__(self, value):
        return any(v is value or v == value for v in self)


class _CacheItemsView(ItemsView):
    """(key, value) pairs in iteration order; reading them does not touch recency or counters."""

    __slots__ = ()

    def __iter__(self):
        return self._mapping._iter_items()

    def __contains__(self, item):
        key, value = item
        v = self._mapping.peek(key, _MISSING)
        return v is not _MISSING and (v is value or v == value)


class _RRKeys(Sequence):
    """The keys an RRCache's ``choice`` picks from: a read-only view of its slots.

    With ``keep`` (the node of a key being updated) the view leaves that key out: the last slot's
    key stands in its place, so the view has one key fewer and no slot moves.
    """

    __slots__ = ("_slots", "_keep")

    def __init__(self, slots, keep):
        self._slots = slots
        self._keep = keep

    def __len__(self):
        return len(self._slots) - (self._keep is not None)

    def _key_at(self, i):
        keep = self._keep
        if keep is not None and i == keep.aux:
            return self._slots[-1].key
        return self._slots[i].key

    def __getitem__(self, i):
        n = len(self)
        if isinstance(i, slice):
            return [self._key_at(j) for j in range(*i.indices(n))]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("index out of range")
        return self._key_at(i)


class _Bucket:
    """LFUCache: the nodes used ``count`` times, least recently used first; a ring link."""

    __slots__ = ("count", "nodes", "prev", "next")

    def __init__(self, count):
        self.count = count
        self.nodes = collections.OrderedDict()
        self.prev = self.next = self

    def insert_after(self, prev):
        self.prev = prev
        self.next = nxt = prev.next
        prev.next = nxt.prev = self

    def unlink(self):
        self.prev.next = self.next
        self.next.prev = self.prev


# ---------------------------------------------------------------------- the base class


class Cache(MutableMapping):
    """A mapping that keeps at most ``maxsize`` worth of items, evicting the first inserted.

    ``Cache(maxsize, getsizeof=None, *, on_evict=None)`` is a drop-in for ``cachetools.Cache``
    and the base of every prodfast cache. ``maxsize`` is an int >= 0 or ``math.inf``;
    ``getsizeof(value)`` gives each value's size (a finite number >= 0; 1 when omitted, and a
    subclass may override the ``getsizeof`` method instead) and ``currsize`` their sum; a value
    larger than ``maxsize`` raises ``ValueError("value too large")``. ``cache.getsizeof`` is the
    function given (or one returning 1). ``on_evict(key, value)`` is called for each item removed
    to make room or, in timed caches, because it expired (not by ``del``, ``pop``, ``popitem`` or
    ``clear``), after the cache is consistent again; an exception it raises reaches the caller.

    Iteration yields the keys in first-insertion order, as a dict does (an update keeps the key's
    place; reads never move it). It walks a snapshot: the cache may change meanwhile, keys added
    are not visited, removed ones are skipped. ``k in c``, ``peek``, ``len`` and iteration never
    touch the eviction order or the counters; ``stats()`` counts lookups (``c[k]`` and ``get``).
    Updating an existing key evicts other keys only when ``getsizeof`` makes the new value larger
    than the room left, and never the key itself.

    A subclass may define ``__missing__(key)`` (called by ``c[k]`` on a miss, never by ``get``,
    ``pop`` or ``setdefault``) and may override ``popitem()``: every eviction for room then goes
    through it, as in cachetools. The cache is thread-safe and safe against re-entrant user code.
    """

    __class_getitem__ = classmethod(types.GenericAlias)
    __slots__ = (
        "_maxsize", "_getsizeof", "_size_fn", "_on_evict", "_map", "_currsize", "_hits",
        "_misses", "_evictions", "_expirations", "_version", "_busy", "_lock", "_hook",
        "_has_missing",
    )

    _timed = False

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
        self._currsize = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._version = 0
        self._busy = False
        self._lock = threading.RLock()
        cls = type(self)
        if getsizeof is not None:
            self._size_fn = getsizeof
        elif cls.getsizeof is not Cache.getsizeof:  # a subclass overrides the method
            self._size_fn = self.getsizeof
        else:
            self._size_fn = None
        self._hook = cls.popitem is not Cache.popitem
        # c[k] calls __missing__ on a miss only when a subclass overrides it (the base's raises
        # KeyError(key), which c[k] raises itself)
        self._has_missing = getattr(cls, "__missing__", None) is not Cache.__missing__
        self._setup_policy()

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
        # Remove node from every structure; only the map deletion may run user code (the key's
        # __hash__/__eq__), and it comes first, so a failure there changes nothing.
        del self._map[node.key]
        self._unlink_policy(node)
        self._unlink_expiry(node)
        node.linked = False
        self._currsize -= node.size
        self._version += 1

    def _size_of(self, value):
        fn = self._size_fn
        if fn is None:
            if self._maxsize < 1:
                raise ValueError("value too large")
            return 1
        return _check_size(fn(value), self._maxsize)

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

    # policy hooks: Cache itself evicts in first-insertion order, which is _map's own order

    def _setup_policy(self):
        pass

    def _link_policy(self, node):
        pass

    def _unlink_policy(self, node):
        pass

    def _clear_policy(self):
        pass

    def _on_read(self, node):
        # a hit of c[k], get or setdefault
        pass

    def _on_update(self, node):
        # c[k] = v of a present key, before any eviction for room
        pass

    def _victim(self, keep):
        # The node to evict next, never ``keep`` (the key being updated).
        for node in self._map.values():
            if node is not keep:
                return node
        raise KeyError(f"{type(self).__name__} is empty")

    def _policy_order(self):
        # the nodes in eviction order (for pickling and _check)
        return list(self._map.values())

    # timed hooks, filled in by TTLCache and TLRUCache

    def _now(self):
        return None

    def _alive(self, node, now):
        return True

    def _expires_for(self, key, value, now):
        return None

    def _expire_into(self, now, evicted):
        pass

    def _link_expiry(self, node):
        pass

    def _prepare_expiry(self, expires):
        # Before a set's structural change: anything its expiry order needs that runs user code
        pass

    def _unlink_expiry(self, node):
        pass

    def _restamp(self, node, expires):
        pass

    def _clear_expiry(self):
        pass

    # ------------------------------------------------------------------ properties

    @property
    def maxsize(self):
        """The maximum size of the cache (an int or math.inf)."""
        return self._maxsize

    @property
    def currsize(self):
        """The total size of the items held (timed caches: of the items not yet expired)."""
        return self._currsize

    @property
    def getsizeof(self):
        """The function giving a value's size: the ``getsizeof`` passed in, or one returning 1."""
        fn = self._getsizeof
        return _default_getsizeof if fn is None else fn

    @property
    def on_evict(self):
        """The eviction callback, or None."""
        return self._on_evict

    # ------------------------------------------------------------------ lookups

    def __getitem__(self, key):
        with self._lock:
            now = self._now()
            node = self._lookup(key)
            if node is not None and self._alive(node, now):
                if not self._busy:  # a lookup from user code amid a change (a __del__) does not reorder
                    self._on_read(node)
                self._hits += 1
                return node.value
            self._misses += 1
        if self._has_missing:
            return self.__missing__(key)
        raise KeyError(key)

    def __missing__(self, key):
        """Called by ``c[key]`` on a miss: raises KeyError(key) (a subclass may return a value)."""
        raise KeyError(key)

    def get(self, key, default=None):
        """The value for key (a use of it, counted in stats), or default; never __missing__."""
        with self._lock:
            now = self._now()
            node = self._lookup(key)
            if node is not None and self._alive(node, now):
                if not self._busy:  # a lookup from user code amid a change (a __del__) does not reorder
                    self._on_read(node)
                self._hits += 1
                return node.value
            self._misses += 1
            return default

    def peek(self, key, default=None):
        """The value for key, or default, without using it or counting a lookup."""
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
            now = self._now()
            nodes = list(self._map.values())
        for node in nodes:
            if node.linked and self._alive(node, now):
                yield node

    def _iter_items(self):
        for node in self._iter_nodes():
            yield node.key, node.value

    def keys(self):
        """A view of the keys, in first-insertion order."""
        return KeysView(self)

    def values(self):
        """A view of the values, in first-insertion order (does not use them)."""
        return _CacheValuesView(self)

    def items(self):
        """A view of the (key, value) pairs, in first-insertion order (does not use them)."""
        return _CacheItemsView(self)

    # ------------------------------------------------------------------ insertion

    def __setitem__(self, key, value):
        evicted = []  # released (and reported to on_evict) after the lock is dropped
        try:
            with self._lock:
                if self._hook and self._timed:
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
        now = self._now()
        size = self._size_of(value)
        expires = self._expires_for(key, value, now)  # TLRU: ttu(); may raise: nothing changed
        if self._timed:
            self._expire_into(now, evicted)
            if not now < expires:  # TLRU: stored already expired: drop the key, store nothing
                return self._drop(key)
        if self._hook:
            return self._set_hooked(key, value, size, expires, evicted)
        self._prepare_expiry(expires)
        # User code below: __hash__/__eq__ of keys and RRCache's choice; mutations refused: busy.
        self._enter()
        try:
            node = self._map.get(key)
            if node is not None:
                # Update in place, used first: evicting for extra room (only when the new value
                # is larger) then never picks the key itself.
                self._on_update(node)
                self._restamp(node, expires)
                diff = size - node.size
            else:
                diff = size
            while self._currsize + diff > self._maxsize:
                victim = self._victim(node)
                self._unlink(victim)
                self._evictions += 1
                evicted.append((victim.key, victim.value))
            if node is not None:
                old = node.value
                node.value = value
                node.size = size
                self._currsize += diff
                return old
            node = _Node(key, value, size, expires)
            self._map[key] = node  # may run __hash__/__eq__ again
            self._link_policy(node)
            self._link_expiry(node)
            self._currsize += size
            self._version += 1
            return None
        finally:
            self._busy = False

    def _drop(self, key):
        node = self._lookup(key)
        if node is None:
            return None
        self._enter()
        try:
            self._unlink(node)
        finally:
            self._busy = False
        return node.value

    def _set_hooked(self, key, value, size, expires, evicted):
        # __setitem__ of a subclass that overrides popitem(): every eviction goes through it.
        maxsize = self._maxsize
        node = self._lookup(key)
        if node is not None:
            self._prepare_expiry(expires)
            self._enter()
            try:
                self._on_update(node)
                self._restamp(node, expires)
            finally:
                self._busy = False
            diff = size - node.size
            while self._currsize + diff > maxsize:
                self._evict_one(evicted)
                node = self._lookup(key)
                if node is None:  # the overriding popitem() removed it after all
                    diff = size
                    break
            if node is not None:
                self._enter()
                try:
                    old = node.value
                    node.value = value
                    node.size = size
                    self._currsize += diff
                finally:
                    self._busy = False
                return old
        while self._currsize + size > maxsize:
            self._evict_one(evicted)
        if self._lookup(key) is not None:
            # the overriding popitem() stored key meanwhile
            raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        node = _Node(key, value, size, expires)
        self._prepare_expiry(expires)
        self._enter()
        try:
            self._map[key] = node  # may run __hash__/__eq__ again (mutations refused: busy)
            self._link_policy(node)
            self._link_expiry(node)
            self._currsize += size
            self._version += 1
        finally:
            self._busy = False
        return None

    def _evict_one(self, evicted):
        # Make room through the overriding popitem().
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
        self._evictions += 1
        evicted.append((key, value))

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
        """The value for key if present (a use of it, not counted in stats), else store default."""
        with self._lock:
            now = self._now()
            node = self._lookup(key)
            if node is not None and self._alive(node, now):
                if not self._busy:  # a lookup from user code amid a change (a __del__) does not reorder
                    self._on_read(node)
                return node.value
        self._store_at(key, default, now)  # outside the lock: it may call on_evict
        return default

    def _store_at(self, key, value, now):
        # __setitem__ at an already-read time (timed caches: no second timer read)
        self[key] = value

    def popitem(self):
        """Remove and return the ``(key, value)`` pair the policy evicts next.

        Timed caches first remove the expired items (reported to on_evict).
        """
        evicted = []
        try:
            with self._lock:
                if self._timed:
                    self._expire_into(self._now(), evicted)
                if not self._map:
                    raise KeyError(f"{type(self).__name__} is empty") from None
                self._enter()
                try:
                    node = self._victim(None)
                    self._unlink(node)
                finally:
                    self._busy = False
                return node.key, node.value
        finally:
            self._notify(evicted)

    def clear(self):
        """Remove every item (counters are kept; see reset_stats)."""
        with self._lock:
            self._enter()
            try:
                old = self._map
                self._map = {}
                for node in old.values():
                    node.linked = False
                self._clear_policy()
                self._clear_expiry()
                self._currsize = 0
                self._version += 1
            finally:
                self._busy = False
        del old  # keys and values released outside the lock

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
        """``(tag, version, settings, items, order, timing, counters, attributes)``.

        settings: (maxsize, getsizeof or None, on_evict, param, timer) where param is RRCache's
        choice, TTLCache's ttl or TLRUCache's ttu (else None) and timer the user's timer (else
        None); items: [(key, value, size), ...] in iteration order; order: the item indices in
        eviction order (LFUCache: [(index, count), ...]; Cache and RRCache: None); timing: None,
        or (expires per item, the item indices in expiry order, the latest time read);
        counters: (hits, misses, evictions, expirations); attributes: a subclass instance's
        __dict__, or None.
        """
        with self._lock:
            nodes = list(self._map.values())
            index = {id(node): i for i, node in enumerate(nodes)}
            return (
                _STATE_TAG,
                _STATE_VERSION,
                self._settings(),
                [(n.key, n.value, n.size) for n in nodes],
                self._order_state(index),
                self._timing_state(nodes, index),
                (self._hits, self._misses, self._evictions, self._expirations),
                getattr(self, "__dict__", None) or None,
            )

    def _settings(self):
        return (self._maxsize, self._getsizeof, self._on_evict, None, None)

    def _order_state(self, index):
        return None

    def _timing_state(self, nodes, index):
        return None

    def __setstate__(self, state):
        """Restore a state made by ``__getstate__``; an invalid one raises and changes nothing."""
        cls = type(self)
        invalid = f"invalid {cls.__name__} state"
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == _STATE_TAG):
            raise TypeError(invalid)
        if state[1] != _STATE_VERSION:
            raise ValueError(f"unsupported {cls.__name__} state version {state[1]!r}")
        _, _, settings, items, order, timing, counters, attributes = state
        if not (isinstance(settings, tuple) and len(settings) == 5):
            raise ValueError(invalid)
        maxsize, getsizeof, on_evict, param, timer = settings
        _check_maxsize(maxsize)
        _check_callable("getsizeof", getsizeof)
        _check_callable("on_evict", on_evict)
        self._check_settings(param, timer)
        if not (isinstance(counters, tuple) and len(counters) == 4 and all(
            type(n) is int and n >= 0 for n in counters
        )):
            raise ValueError(invalid)
        if attributes is not None and not isinstance(attributes, dict):
            raise ValueError(invalid)
        if not isinstance(items, list):
            raise ValueError(invalid)
        # Build the whole new structure aside: user __hash__/__eq__ run here, before any change.
        unit_sizes = getsizeof is None and cls.getsizeof is Cache.getsizeof
        table = {}
        total = 0
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 3):
                raise ValueError(invalid)
            key, value, size = item
            if unit_sizes and not (type(size) is int and size == 1):
                raise ValueError(invalid)
            try:
                size = _check_size(size, maxsize)
            except (TypeError, ValueError):
                raise ValueError(invalid) from None
            table[key] = _Node(key, value, size, None)
            total += size
        if len(table) != len(items) or total > maxsize:
            raise ValueError(invalid)
        nodes = list(table.values())
        new = cls.__new__(cls)
        Cache._setup_fields(new, maxsize, getsizeof, on_evict, param, timer)
        new._map = table
        new._currsize = total
        new._restore_order(nodes, order, invalid)
        new._restore_timing(nodes, timing, invalid)
        new._hits, new._misses, new._evictions, new._expirations = counters
        # Everything checked: swap the new structure in at once.
        lock = getattr(self, "_lock", None) or new._lock
        with lock:
            if getattr(self, "_busy", False):
                raise RuntimeError(f"{cls.__name__} changed size during key lookup")
            old = getattr(self, "_map", None)
            version = getattr(self, "_version", 0)
            for name in _all_slots(cls):
                if name != "_lock":
                    setattr(self, name, getattr(new, name))
            self._lock = lock
            self._version = version + 1
            if self._size_fn is not None and getsizeof is None:
                self._size_fn = self.getsizeof  # the subclass's method, bound to self
            if old is not None:
                for node in old.values():
                    node.linked = False
            if attributes:
                self.__dict__.update(attributes)
        del old

    @staticmethod
    def _setup_fields(new, maxsize, getsizeof, on_evict, param, timer):
        new._set_params(param, timer)
        new._setup(maxsize, getsizeof, on_evict)

    def _check_settings(self, param, timer):
        if param is not None or timer is not None:
            raise ValueError(f"invalid {type(self).__name__} state")

    def _set_params(self, param, timer):
        pass

    def _restore_order(self, nodes, order, invalid):
        if order is not None:
            raise ValueError(invalid)

    def _restore_timing(self, nodes, timing, invalid):
        if timing is not None:
            raise ValueError(invalid)

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
            # busy while checking: a finalizer run by the garbage collector meanwhile must not
            # change the cache under the check (its lookups still work)
            self._busy = True
            try:
                self._check_locked()
            finally:
                self._busy = False

    def _check_locked(self):
        # identity checks only: _check() never runs user __hash__/__eq__
        total = 0
        for key, node in self._map.items():
            if node.key is not key:
                raise AssertionError(f"map key {key!r} and its node disagree")
            if not node.linked:
                raise AssertionError(f"node {key!r} in the map is marked unlinked")
            total += node.size
        if total != self._currsize:
            raise AssertionError(f"currsize {self._currsize!r} != sum of sizes {total!r}")
        if self._currsize > self._maxsize:
            raise AssertionError(f"currsize {self._currsize!r} > maxsize {self._maxsize!r}")
        in_map = {id(node) for node in self._map.values()}
        order = self._policy_order()
        if len(order) != len(in_map) or {id(node) for node in order} != in_map:
            raise AssertionError("eviction order and map hold different nodes")
        for name in ("_hits", "_misses", "_evictions", "_expirations"):
            if getattr(self, name) < 0:
                raise AssertionError(f"{name} is negative")
        self._check_policy()
        self._check_expiry(in_map)

    def _check_policy(self):
        pass

    def _check_expiry(self, in_map):
        pass


def _all_slots(cls):
    names = []
    for klass in reversed(cls.__mro__):
        if klass.__module__ != __name__:
            continue
        for name in klass.__dict__.get("__slots__", ()):
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return names


def _index_list(order, n, invalid):
    # order must be a permutation of range(n)
    if not (isinstance(order, list) and len(order) == n and all(type(i) is int for i in order)):
        raise ValueError(invalid)
    if sorted(order) != list(range(n)):
        raise ValueError(invalid)
    return order


# ---------------------------------------------------------------------- FIFO and LRU


class _OrderedCache(Cache):
    """A cache whose victim is the first node of ``_order``; subclasses say what moves a node."""

    __slots__ = ("_order",)

    def _setup_policy(self):
        self._order = collections.OrderedDict()

    def _link_policy(self, node):
        self._order[node] = None

    def _unlink_policy(self, node):
        del self._order[node]

    def _clear_policy(self):
        self._order = collections.OrderedDict()

    def _victim(self, keep):
        for node in self._order:
            if node is not keep:
                return node
        raise KeyError(f"{type(self).__name__} is empty")

    def _policy_order(self):
        return list(self._order)

    def _order_state(self, index):
        return [index[id(node)] for node in self._order]

    def _restore_order(self, nodes, order, invalid):
        for i in _index_list(order, len(nodes), invalid):
            self._order[nodes[i]] = None


class FIFOCache(_OrderedCache):
    """A cache that evicts the item first inserted: ``FIFOCache(maxsize, getsizeof=None, *,
    on_evict=None)``, a drop-in for ``cachetools.FIFOCache``.

    Setting a present key re-queues it at the back (as cachetools does); reads never move it.
    Everything else is as in :class:`Cache`.
    """

    __slots__ = ()

    def _on_update(self, node):
        self._order.move_to_end(node)


class LRUCache(_OrderedCache):
    """A cache that evicts the least recently used item: ``LRUCache(maxsize, getsizeof=None, *,
    on_evict=None)``, a drop-in for ``cachetools.LRUCache``.

    ``c[k]``, ``c.get(k)``, ``c.setdefault(k)`` of a present key and ``c[k] = v`` make ``k`` the
    most recently used; ``k in c``, ``peek``, ``len`` and iteration do not. ``popitem()`` removes
    the least recently used item. Everything else is as in :class:`Cache`.
    """

    __slots__ = ()

    def _on_read(self, node):
        self._order.move_to_end(node)

    def _on_update(self, node):
        self._order.move_to_end(node)


# ---------------------------------------------------------------------- LFU


class LFUCache(Cache):
    """A cache that evicts the least frequently used item: ``LFUCache(maxsize, getsizeof=None,
    *, on_evict=None)``, a drop-in for ``cachetools.LFUCache``.

    A new key has count 1; each hit of ``c[k]``/``get``/``setdefault`` and each update adds 1.
    The victim is the least recently used key among those with the lowest count. O(1): the keys
    sit in buckets of equal count, a ring in ascending count order.
    """

    __slots__ = ("_root",)

    def _setup_policy(self):
        self._root = _Bucket(0)  # sentinel: root.next is the lowest count

    def _link_policy(self, node):
        root = self._root
        bucket = root.next
        if bucket.count != 1:
            bucket = _Bucket(1)
            bucket.insert_after(root)
        bucket.nodes[node] = None
        node.aux = bucket

    def _unlink_policy(self, node):
        bucket = node.aux
        del bucket.nodes[node]
        if not bucket.nodes:
            bucket.unlink()
        node.aux = None

    def _clear_policy(self):
        self._root = _Bucket(0)

    def _touch(self, node):
        bucket = node.aux
        nxt = bucket.next
        if nxt.count != bucket.count + 1:
            if len(bucket.nodes) == 1:
                bucket.count += 1  # alone in its bucket: the bucket moves up with it
                return
            nxt = _Bucket(bucket.count + 1)
            nxt.insert_after(bucket)
        del bucket.nodes[node]
        nxt.nodes[node] = None
        node.aux = nxt
        if not bucket.nodes:
            bucket.unlink()

    _on_read = _touch
    _on_update = _touch

    def _victim(self, keep):
        root = self._root
        bucket = root.next
        while bucket is not root:
            for node in bucket.nodes:
                if node is not keep:
                    return node
            bucket = bucket.next
        raise KeyError(f"{type(self).__name__} is empty")

    def _buckets(self):
        root = self._root
        bucket = root.next
        while bucket is not root:
            yield bucket
            bucket = bucket.next

    def _policy_order(self):
        return [node for bucket in self._buckets() for node in bucket.nodes]

    def _order_state(self, index):
        return [(index[id(node)], b.count) for b in self._buckets() for node in b.nodes]

    def _restore_order(self, nodes, order, invalid):
        if not (isinstance(order, list) and all(
            isinstance(p, tuple) and len(p) == 2 and type(p[1]) is int and p[1] >= 1 for p in order
        )):
            raise ValueError(invalid)
        _index_list([p[0] for p in order], len(nodes), invalid)
        counts = [p[1] for p in order]
        if counts != sorted(counts):
            raise ValueError(invalid)
        root = self._root
        for i, count in order:
            last = root.prev
            if last.count != count:
                last = _Bucket(count)
                last.insert_after(root.prev)
            last.nodes[nodes[i]] = None
            nodes[i].aux = last

    def _check_policy(self):
        prev = 0
        for bucket in self._buckets():
            if not bucket.nodes:
                raise AssertionError(f"empty bucket of count {bucket.count}")
            if bucket.count <= prev:
                raise AssertionError("buckets are not in ascending count order")
            prev = bucket.count
            for node in bucket.nodes:
                if node.aux is not bucket:
                    raise AssertionError(f"node {node.key!r} points at another bucket")


# ---------------------------------------------------------------------- RR


class RRCache(Cache):
    """A cache that evicts a randomly chosen item: ``RRCache(maxsize, choice=random.choice,
    getsizeof=None, *, on_evict=None)``, a drop-in for ``cachetools.RRCache``.

    To make room, ``choice(keys)`` picks the victim from a read-only sequence of the keys in
    slot order (when updating a key, of the other keys: the last slot's key stands in the updated
    key's place); a removal moves the last slot's key into the freed slot. ``cache.choice`` is
    the function given. An
    exception from ``choice`` reaches the caller and stores nothing. O(1) apart from choice.
    """

    __slots__ = ("_choice", "_slots")

    def __init__(self, maxsize, choice=random.choice, getsizeof=None, *, on_evict=None):
        _check_maxsize(maxsize)
        _check_required_callable("choice", choice)
        _check_callable("getsizeof", getsizeof)
        _check_callable("on_evict", on_evict)
        self._choice = choice
        self._setup(maxsize, getsizeof, on_evict)

    @property
    def choice(self):
        """The function that picks the key to evict."""
        return self._choice

    def _setup_policy(self):
        self._slots = []

    def _link_policy(self, node):
        node.aux = len(self._slots)
        self._slots.append(node)

    def _unlink_policy(self, node):
        slots = self._slots
        i = node.aux
        last = slots.pop()
        if last is not node:
            slots[i] = last
            last.aux = i
        node.aux = None

    def _clear_policy(self):
        self._slots = []

    def _victim(self, keep):
        if len(self._slots) - (keep is not None) <= 0:
            raise KeyError(f"{type(self).__name__} is empty")
        key = self._choice(_RRKeys(self._slots, keep))
        node = self._map.get(key)
        if node is None or node is keep:
            raise KeyError(key)
        return node

    def _policy_order(self):
        return list(self._slots)

    def _settings(self):
        return (self._maxsize, self._getsizeof, self._on_evict, self._choice, None)

    def _check_settings(self, param, timer):
        if timer is not None:
            raise ValueError(f"invalid {type(self).__name__} state")
        _check_required_callable("choice", param)

    def _set_params(self, param, timer):
        self._choice = param

    def _restore_order(self, nodes, order, invalid):
        if order is not None:
            raise ValueError(invalid)
        for node in nodes:
            self._link_policy(node)

    def _check_policy(self):
        for i, node in enumerate(self._slots):
            if node.aux != i:
                raise AssertionError(f"node {node.key!r} has slot {node.aux}, not {i}")


# ---------------------------------------------------------------------- timed caches


class _TimedCache(_OrderedCache):
    """LRU order plus expiry; the timer wrapper, the clamp and the timed views of len/currsize."""

    __slots__ = ("_timer", "_last")

    _timed = True

    def _setup_policy(self):
        _OrderedCache._setup_policy(self)
        self._last = None  # latest time read: a timer that goes backwards is clamped to it
        self._setup_expiry()

    def _on_read(self, node):
        self._order.move_to_end(node)

    def _on_update(self, node):
        self._order.move_to_end(node)

    @property
    def timer(self):
        """The timer wrapper: ``cache.timer()`` reads it; ``with cache.timer as now:`` freezes it."""
        return self._timer

    # one timer read per operation; the clamp keeps expiry times non-decreasing
    def _now(self):
        now = self._timer()
        _check_time(now)
        last = self._last
        if last is not None and now < last:
            return last
        self._last = now
        return now

    def _alive(self, node, now):
        return now < node.expires

    def _store_at(self, key, value, now):
        timer = self._timer
        with self._lock:
            if not timer._nesting:
                timer._time = now
            timer._nesting += 1
        try:
            self[key] = value
        finally:
            timer._nesting -= 1

    def __len__(self):
        with self._lock:
            if not self._map:
                return 0
            return len(self._map) - self._expired(self._now())[0]

    @property
    def currsize(self):
        """The total size of the items not yet expired."""
        with self._lock:
            if not self._map:
                return self._currsize
            return self._currsize - self._expired(self._now())[1]

    def expire(self, time=None):
        """Remove the items expired at ``time`` (default: now); return the removed pairs."""
        evicted = []
        try:
            with self._lock:
                if time is None:
                    time = self._now()
                else:
                    _check_time(time)
                self._expire_into(time, evicted)
        finally:
            self._notify(evicted)
        return list(evicted)

    def _expire_into(self, now, evicted):
        victim = self._first_expired(now)
        if victim is None:
            return
        self._enter()
        try:
            while victim is not None:
                self._unlink(victim)
                self._expirations += 1
                evicted.append((victim.key, victim.value))
                victim = self._first_expired(now)
        finally:
            self._busy = False

    def _settings(self):
        return (self._maxsize, self._getsizeof, self._on_evict, self._param(), self._timer._timer)

    def _check_settings(self, param, timer):
        _check_required_callable("timer", timer)
        self._check_param(param)

    def _timing_state(self, nodes, index):
        return ([n.expires for n in nodes], [index[id(n)] for n in self._expiry_order()], self._last)

    def _restore_timing(self, nodes, timing, invalid):
        if not (isinstance(timing, tuple) and len(timing) == 3):
            raise ValueError(invalid)
        expires, xorder, last = timing
        if not (isinstance(expires, list) and len(expires) == len(nodes)):
            raise ValueError(invalid)
        _index_list(xorder, len(nodes), invalid)
        for i in range(1, len(xorder)):
            if expires[xorder[i]] < expires[xorder[i - 1]]:
                raise ValueError(invalid)
        if any(isinstance(x, float) and math.isnan(x) for x in expires):
            raise ValueError(invalid)
        for node, exp in zip(nodes, expires, strict=True):
            node.expires = exp
        for i in xorder:
            self._link_expiry(nodes[i])
        self._last = last

    def _check_expiry(self, in_map):
        order = self._expiry_order()
        if len(order) != len(in_map) or {id(node) for node in order} != in_map:
            raise AssertionError("expiry order and map hold different nodes")
        prev = None
        for node in order:
            if prev is not None and node.expires < prev:
                raise AssertionError("expiry order is not sorted")
            prev = node.expires


class TTLCache(_TimedCache):
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
    ``timedelta`` ttl); a float reading that is NaN or infinite raises ValueError and changes
    nothing. ``cache.timer`` wraps it (``with cache.timer as now:`` freezes time for the block).
    Each operation reads the timer once.
    """

    __slots__ = ("_ttl", "_xorder")

    def __init__(self, maxsize, ttl, timer=time.monotonic, getsizeof=None, *, on_evict=None):
        _check_maxsize(maxsize)
        _check_ttl(ttl)
        _check_required_callable("timer", timer)
        _check_callable("getsizeof", getsizeof)
        _check_callable("on_evict", on_evict)
        self._set_params(ttl, timer)
        self._setup(maxsize, getsizeof, on_evict)

    def _set_params(self, ttl, timer):
        self._ttl = ttl
        self._timer = _Timer(timer)

    def _param(self):
        return self._ttl

    def _check_param(self, ttl):
        _check_ttl(ttl)

    @property
    def ttl(self):
        """The time-to-live of every item."""
        return self._ttl

    def _expires_for(self, key, value, now):
        return now + self._ttl

    def _setup_expiry(self):
        self._xorder = collections.OrderedDict()

    def _restamp(self, node, expires):
        node.expires = expires
        self._xorder.move_to_end(node)

    def _link_expiry(self, node):
        self._xorder[node] = None

    def _unlink_expiry(self, node):
        del self._xorder[node]

    def _clear_expiry(self):
        self._xorder = collections.OrderedDict()

    def _expiry_order(self):
        return list(self._xorder)

    def _stats_ttl(self):
        return self._ttl

    def _first_expired(self, now):
        for node in self._xorder:
            return None if now < node.expires else node
        return None

    def _expired(self, now):
        # (count, total size) of the expired items: a prefix of the expiry order
        count = 0
        size = 0
        for node in self._xorder:
            if now < node.expires:
                break
            count += 1
            size += node.size
        return count, size


class TLRUCache(_TimedCache):
    """An LRUCache whose items expire at a time chosen per item.

    ``TLRUCache(maxsize, ttu, timer=time.monotonic, getsizeof=None, *, on_evict=None)`` matches
    ``cachetools.TLRUCache``: each set stores its item until ``ttu(key, value, now)`` (the
    "time to use", a time on the timer's scale); the item is valid while ``timer() < expires``.
    A set whose ``ttu`` gives a time not after ``now`` removes the key and stores nothing; a NaN
    ``ttu`` raises ValueError and changes nothing. Expiry, ``len``, iteration, ``popitem``,
    ``expire()`` and the timer behave as in :class:`TTLCache`; the expiry order is a binary heap,
    so a set is O(log n) and removing an expired item O(log n).
    """

    __slots__ = ("_ttu", "_heap", "_seq", "_removed", "_hver", "_plan")

    def __init__(self, maxsize, ttu, timer=time.monotonic, getsizeof=None, *, on_evict=None):
        _check_maxsize(maxsize)
        _check_required_callable("ttu", ttu)
        _check_required_callable("timer", timer)
        _check_callable("getsizeof", getsizeof)
        _check_callable("on_evict", on_evict)
        self._set_params(ttu, timer)
        self._setup(maxsize, getsizeof, on_evict)

    def _set_params(self, ttu, timer):
        self._ttu = ttu
        self._timer = _Timer(timer)

    def _param(self):
        return self._ttu

    def _check_param(self, ttu):
        _check_required_callable("ttu", ttu)

    @property
    def ttu(self):
        """The function ``ttu(key, value, now)`` giving each item's expiry time."""
        return self._ttu

    def _expires_for(self, key, value, now):
        expires = self._ttu(key, value, now)
        if expires != expires:  # NaN (of any type): no place in the expiry order
            raise ValueError(f"ttu must not return NaN, got {expires!r}")
        return expires

    def _setup_expiry(self):
        self._heap = []  # [expires, seq, node]; node is None once the item left
        self._seq = 0
        self._removed = 0
        self._hver = getattr(self, "_hver", 0) + 1  # changes of the heap
        self._plan = None

    # Comparing expiries is user code: a set finds its record's place (and compacts the heap
    # when due) in _prepare_expiry(), before its structural change, so that the change itself
    # moves records without comparing any.

    def _prepare_expiry(self, expires):
        heap = self._heap
        version = self._hver
        if self._removed > len(self._map):  # more dead entries than live ones: rebuild
            new = [entry for entry in heap if entry[2] is not None]
            heapq.heapify(new)  # a private list: the comparisons cannot disturb the cache
            if self._hver != version:
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
            self._heap = heap = new
            self._removed = 0
            self._hver = version = version + 1
        entry = [expires, self._seq]
        pos = len(heap)
        while pos:
            parent = (pos - 1) >> 1
            before = entry < heap[parent][:2]
            if self._hver != version:
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
            if not before:
                break
            pos = parent
        self._plan = (version, pos)

    def _push(self, node):
        entry = [node.expires, self._seq, node]
        self._seq += 1
        heap = self._heap
        plan, self._plan = self._plan, None
        if plan is None or plan[0] != self._hver:
            heapq.heappush(heap, entry)  # not planned (a restore into a fresh cache)
        else:
            hole = len(heap)
            heap.append(entry)
            while hole > plan[1]:
                parent = (hole - 1) >> 1
                heap[hole] = heap[parent]
                hole = parent
            heap[hole] = entry
        self._hver += 1
        node.aux = entry

    def _link_expiry(self, node):
        self._push(node)

    def _unlink_expiry(self, node):
        entry = node.aux
        if entry is not None:
            entry[2] = None
            node.aux = None
            self._removed += 1

    def _restamp(self, node, expires):
        self._unlink_expiry(node)
        node.expires = expires
        self._push(node)

    def _clear_expiry(self):
        self._setup_expiry()

    def _expiry_order(self):
        return [entry[2] for entry in sorted(self._heap) if entry[2] is not None]

    def _first_expired(self, now):
        heap = self._heap
        while heap:
            entry = heap[0]
            if entry[2] is None:
                heapq.heappop(heap)
                self._hver += 1
                self._removed -= 1
                continue
            return None if now < entry[0] else entry[2]
        return None

    def _expired(self, now):
        # (count, total size) of the expired items: the heap's nodes not after now
        heap = self._heap
        count = 0
        size = 0
        stack = [0] if heap else []
        while stack:
            i = stack.pop()
            entry = heap[i]
            if now < entry[0]:
                continue  # its children expire later still
            if entry[2] is not None:
                count += 1
                size += entry[2].size
            stack.extend(j for j in (2 * i + 1, 2 * i + 2) if j < len(heap))
        return count, size

    def _check_expiry(self, in_map):
        _TimedCache._check_expiry(self, in_map)
        heap = self._heap
        for i in range(1, len(heap)):
            if heap[i][:2] < heap[(i - 1) // 2][:2]:
                raise AssertionError("expiry heap order broken")
        dead = sum(entry[2] is None for entry in heap)
        if dead != self._removed:
            raise AssertionError(f"{dead} dead heap entries, counted {self._removed}")
        for entry in heap:
            if entry[2] is not None and (entry[2].aux is not entry or entry[0] != entry[2].expires):
                raise AssertionError(f"heap entry of {entry[2].key!r} disagrees with its node")
