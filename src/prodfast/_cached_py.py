"""The hit path of the memoizing decorators: the pure-Python twin of ``_cached.pxi``.

Two bases for the callables decorators.py builds: a hit is one key and one cache lookup here;
misses, locks and conditions, single flight and shared caches are the subclasses' ``_call`` and
``_miss``.
"""

from __future__ import annotations


class _CachedCall:
    """Base of the callable ``cached``/``lru_cache`` return.

    ``key_kind`` 0 calls ``cache_key(*args, **kwargs)``; 1 takes the argument tuple as the key
    when there are no keyword arguments (what ``keys.hashkey`` returns then). With ``fast`` false every call goes to
    ``self._call(args, kwargs)``; a miss goes to ``self._miss(key, args, kwargs)``.
    """

    def __init__(self, cache, cache_key, key_kind, fast):
        self.cache = cache
        self.cache_key = cache_key
        self._hits = 0
        self._misses = 0
        self._key_kind = key_kind
        self._fast = fast

    def __call__(self, /, *args, **kwargs):
        if not self._fast:
            return self._call(args, kwargs)
        if kwargs or self._key_kind == 0:
            key = self.cache_key(*args, **kwargs)
        else:
            key = args
        try:
            value = self.cache[key]
        except KeyError:
            return self._miss(key, args, kwargs)
        self._hits += 1
        return value


class _CachedMethodCall:
    """Base of the per-instance callable of ``cachedmethod``.

    ``cache_of(obj)`` gives the cache at each call; ``key(obj, *args, **kwargs)`` the key
    (``key_kind`` 1: the argument tuple without keyword arguments, as ``keys.methodkey``). A call
    takes the hit path when ``fast`` is true and the cache's type is the last one found plain
    (``_plain_type``, kept by the subclass); otherwise ``self._call(cache, args, kwargs)``.
    """

    def __init__(self, obj, cache_of, key, key_kind, fast):
        self._obj = obj
        self._cache_of = cache_of
        self._key = key
        self._hits = 0
        self._misses = 0
        self._key_kind = key_kind
        self._fast = fast
        self._plain_type = None

    def __call__(self, /, *args, **kwargs):
        obj = self._obj
        cache = self._cache_of(obj)
        if not self._fast or type(cache) is not self._plain_type:
            return self._call(cache, args, kwargs)
        if kwargs or self._key_kind == 0:
            key = self._key(obj, *args, **kwargs)
        else:
            key = args
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
