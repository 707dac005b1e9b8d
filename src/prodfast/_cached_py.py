"""The hit path of the memoizing decorators: the pure-Python twin of ``_cached.pxi``.

One key, one cache lookup, under the decorator's lock (and condition) when it has one, with
cachetools' lock protocol call for call. The rest (computing a missed value and storing it,
single flight, shared caches) is the subclasses' ``_call``, ``_miss`` and ``_finish_*``.
"""

from __future__ import annotations

import threading

# modes: what a call does before the cache lookup
_SLOW = 0  # everything in self._call (shared caches, asyncio)
_PLAIN = 1  # no lock: a miss goes to self._miss (single flight)
_LOCKED = 2  # the lookup under the lock; a miss goes to self._finish_locked
_CONDITION = 3  # wait while another thread computes the key; then as _LOCKED, _finish_condition
_LOCAL = 4  # a shared cache's local tier: a hit there is the value, a miss self._call


def _args_key(kind, args):
    # the key of a call without keyword arguments: kind 1 the argument tuple (keys.hashkey's),
    # kind 2 lru_cache's (a single argument that is not a tuple is its own key: it equals
    # another such key exactly when the one-element tuples would, and no tuple key equals it)
    if kind == 2 and len(args) == 1 and not isinstance(args[0], tuple):
        return args[0]
    return args


def _locked_lookup(me, cache, key, lock, cond, pending, mode, args, kwargs):
    # cachetools' protocol: one lock hold for the lookup and, on a miss, its bookkeeping
    thread = None
    owner = False
    with lock:
        if mode == _CONDITION:
            thread = threading.get_ident()
            while key in pending and pending[key] != thread:
                cond.wait()
        try:
            value = cache[key]
        except KeyError:
            me._misses += 1
            if mode == _CONDITION and key not in pending:
                pending[key] = thread
                owner = True
        else:
            me._hits += 1
            return value
    if mode == _LOCKED:
        return me._finish_locked(cache, key, args, kwargs)
    return me._finish_condition(cache, key, args, kwargs, owner)


class _CachedCall:
    """Base of the callable ``cached``/``lru_cache`` return.

    ``key_kind`` 0 calls ``cache_key(*args, **kwargs)``; without keyword arguments, 1 takes the
    argument tuple as the key (what ``keys.hashkey`` returns then) and 2 a single argument that
    is not a tuple itself, else the tuple (``lru_cache``'s key). ``mode``: 0 sends every call to
    ``self._call(args, kwargs)``; 1 looks up without a lock, a miss going to ``self._miss(key,
    args, kwargs)``; 2 looks up under ``cache_lock`` (a miss: ``self._finish_locked(cache, key,
    args, kwargs)``); 3 first waits on ``cache_condition`` while another thread computes the key
    (a miss: ``self._finish_condition(cache, key, args, kwargs, owner)``); 4 looks up in
    ``local`` (a shared cache's local tier), a miss going to ``self._call(args, kwargs)``. Hits
    and misses are counted in ``_hits``/``_misses``.
    """

    def __init__(self, cache, cache_key, key_kind, mode, lock, condition, local=None):
        self.cache = cache
        self._local = local
        self.cache_key = cache_key
        self.cache_lock = lock
        self.cache_condition = condition
        self._pending = {}
        self._hits = 0
        self._misses = 0
        self._key_kind = key_kind
        self._mode = mode

    def __call__(self, /, *args, **kwargs):
        mode = self._mode
        if mode == _SLOW:
            return self._call(args, kwargs)
        if kwargs or self._key_kind == 0:
            key = self.cache_key(*args, **kwargs)
        else:
            key = _args_key(self._key_kind, args)
        if mode == _PLAIN:
            try:
                value = self.cache[key]
            except KeyError:
                return self._miss(key, args, kwargs)
        elif mode == _LOCAL:
            try:
                value = self._local[key]
            except KeyError:
                return self._call(args, kwargs)
        else:
            return _locked_lookup(self, self.cache, key, self.cache_lock, self.cache_condition,
                                  self._pending, mode, args, kwargs)
        self._hits += 1
        return value


class _CachedMethodCall:
    """Base of the per-instance callable of ``cachedmethod``.

    At each call ``cache_of(obj)`` gives the cache, ``lock_of(obj)`` and ``cond_of(obj)`` the lock
    and condition (the condition is the lock when there is no ``lock_of``); ``key(obj, *args,
    **kwargs)`` the key (``key_kind`` 1: the argument tuple without keyword arguments, as
    ``keys.methodkey``). ``mode`` as in ``_CachedCall``, the misses going to ``self._miss(cache,
    key, args, kwargs)`` and the same ``_finish_*``; a call whose cache's type is not
    ``_plain_type`` (kept by the subclass) goes to ``self._call(cache, args, kwargs)``.
    """

    def __init__(self, obj, cache_of, lock_of, cond_of, key, key_kind, mode):
        self._obj = obj
        self._cache_of = cache_of
        self._lock_of = lock_of
        self._cond_of = cond_of
        self._key = key
        self._pending = {}
        self._hits = 0
        self._misses = 0
        self._key_kind = key_kind
        self._mode = mode
        self._plain_type = None

    def __call__(self, /, *args, **kwargs):
        obj = self._obj
        cache = self._cache_of(obj)
        mode = self._mode
        if mode == _SLOW or type(cache) is not self._plain_type:
            return self._call(cache, args, kwargs)
        if kwargs or self._key_kind == 0:
            key = self._key(obj, *args, **kwargs)
        else:
            key = args
        if mode != _PLAIN:
            cond = self._cond_of(obj) if mode == _CONDITION else None
            lock = cond if self._lock_of is None else self._lock_of(obj)
            return _locked_lookup(self, cache, key, lock, cond, self._pending, mode, args, kwargs)
        try:
            value = cache[key]
        except KeyError:
            return self._miss(cache, key, args, kwargs)
        self._hits += 1
        return value


def _fast_call(cls):
    """Class decorator: calls of ``cls`` (a subclass of one of the two bases) take the hit path.

    In pure Python a subclass inherits ``__call__`` as it is, so there is nothing to change; the
    compiled twin installs its C call slot here.
    """
    if not issubclass(cls, (_CachedCall, _CachedMethodCall)):
        raise TypeError(f"_fast_call expects a subclass of _CachedCall or _CachedMethodCall, got {cls!r}")
    return cls


class _TierFront:
    """The base of ``prodfast.redis.TieredCache``: ``get`` and ``[]`` answer a hit in the local
    tier here; a miss goes to the subclass's ``_get_remote(key)``, which returns the value or
    ``_missing``."""

    def get(self, key, default=None):
        try:
            return self.local[key]
        except KeyError:
            pass
        value = self._get_remote(key)
        return default if value is self._missing else value

    def __getitem__(self, key):
        try:
            return self.local[key]
        except KeyError:
            pass
        value = self._get_remote(key)
        if value is self._missing:
            raise KeyError(key)
        return value
