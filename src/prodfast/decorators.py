"""Memoizing decorators over prodfast's caches: ``lru_cache`` and ``cached``.

Both work on plain and on ``async def`` functions and use the active backend's cache classes.
For coroutine functions the *result* is cached (never the coroutine object), concurrent awaits
of one key share a single in-flight call (callers that join it count as hits), cancelling one
caller does not cancel the call for the others, and exceptions are not cached.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import time
from collections import namedtuple

from . import _backend

__all__ = ["CacheInfo", "cached", "lru_cache"]

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])

_SENTINEL = object()
_make_key = functools._make_key  # the exact key functools.lru_cache builds


def _default_key(*args, **kwargs):
    """The untyped key of a call: the positional arguments tuple, or functools.lru_cache's key
    when there are keyword arguments (in call order). Equal calls give equal keys, as in
    functools: ``f(1)`` and ``f(1.0)`` share one entry; ``f(1)`` and ``f((1,))`` do not."""
    return _make_key(args, kwargs, False) if kwargs else args


def _retrieve(task):
    # Mark the in-flight task's exception as retrieved, so an abandoned failure logs nothing.
    if not task.cancelled():
        task.exception()


def _wrap_async(func, cache, key_of):
    """The async wrapper shared by both decorators: cached results, one in-flight call per key."""
    get = cache.get
    inflight = {}

    async def run(key, args, kwargs):
        try:
            result = await func(*args, **kwargs)
            try:
                cache[key] = result
            except ValueError:  # too large for the cache: return it uncached, as cachetools does
                pass
            return result
        finally:
            if inflight.get(key) is asyncio.current_task():
                del inflight[key]

    async def wrapper(*args, **kwargs):
        key = key_of(args, kwargs)
        loop = asyncio.get_running_loop()
        task = inflight.get(key)
        if task is not None and task.get_loop() is loop and not task.done():
            # join the call already running; a value it stored makes this a hit
            result = await asyncio.shield(task)
            get(key, _SENTINEL)
            return result
        result = get(key, _SENTINEL)
        if result is not _SENTINEL:
            return result
        task = loop.create_task(run(key, args, kwargs))
        task.add_done_callback(_retrieve)
        inflight[key] = task
        return await asyncio.shield(task)

    wrapper._inflight = inflight
    return wrapper


def _key_maker(typed):
    # (args, kwargs) -> key
    if typed:
        def key_of(args, kwargs):
            return _make_key(args, kwargs, True)
    else:
        def key_of(args, kwargs):
            return _make_key(args, kwargs, False) if kwargs else args
    return key_of


def lru_cache(maxsize=128, *, ttl=None, typed=False, timer=time.monotonic):
    """``functools.lru_cache`` plus an optional time-to-live.

    Usable bare (``@lru_cache``) or called (``@lru_cache(maxsize=1024, ttl=60)``). ``maxsize``
    None means unbounded; 0 caches nothing. With ``ttl`` the entries expire ``ttl`` after they
    were stored (read from ``timer``). The wrapper has ``cache_info()`` -> CacheInfo(hits,
    misses, maxsize, currsize), ``cache_clear()``, ``cache_parameters()``, ``__wrapped__`` and
    ``cache`` (the underlying LRUCache/TTLCache). Works for ``async def`` functions too.
    """
    if callable(maxsize) and not isinstance(maxsize, (int, float)):
        return lru_cache()(maxsize)
    if maxsize is None:
        size = math.inf
    elif isinstance(maxsize, bool) or not isinstance(maxsize, int):
        raise TypeError(f"maxsize must be an int or None, got {maxsize!r}")
    elif maxsize < 0:
        raise ValueError(f"maxsize must be non-negative or None, got {maxsize!r}")
    else:
        size = maxsize
    if not isinstance(typed, bool):
        raise TypeError(f"typed must be a bool, got {typed!r}")
    impl = _backend.impl
    if ttl is None:
        cache = impl.LRUCache(size)
    else:
        cache = impl.TTLCache(size, ttl, timer)

    def decorating_function(user_function):
        if not callable(user_function):
            raise TypeError(f"lru_cache expects a callable, got {user_function!r}")
        key_of = _key_maker(typed)
        if inspect.iscoroutinefunction(user_function):
            wrapper = _wrap_async(user_function, cache, key_of)
        elif size == 0:
            get = cache.get

            def wrapper(*args, **kwargs):
                get(key_of(args, kwargs), None)  # counts the miss
                return user_function(*args, **kwargs)
        elif typed:
            wrapper = _sync_wrapper(user_function, cache, key_of)
        else:
            get = cache.get

            def wrapper(*args, **kwargs):
                # the hot path: a tuple key needs no Python-level work beyond the call itself
                key = _make_key(args, kwargs, False) if kwargs else args
                result = get(key, _SENTINEL)
                if result is not _SENTINEL:
                    return result
                result = user_function(*args, **kwargs)
                cache[key] = result
                return result

        def cache_info():
            stats = cache.stats()
            return CacheInfo(stats["hits"], stats["misses"], maxsize, cache.currsize)

        def cache_clear():
            cache.clear()
            cache.reset_stats()

        def cache_parameters():
            return {"maxsize": maxsize, "typed": typed, "ttl": ttl}

        functools.update_wrapper(wrapper, user_function)
        wrapper.cache = cache
        wrapper.cache_info = cache_info
        wrapper.cache_clear = cache_clear
        wrapper.cache_parameters = cache_parameters
        return wrapper

    return decorating_function


def _sync_wrapper(func, cache, key_of):
    get = cache.get

    def wrapper(*args, **kwargs):
        key = key_of(args, kwargs)
        result = get(key, _SENTINEL)
        if result is not _SENTINEL:
            return result
        result = func(*args, **kwargs)
        try:
            cache[key] = result
        except ValueError:  # too large for the cache: return it uncached, as cachetools does
            pass
        return result

    return wrapper


def cached(cache, *, key=None):
    """Memoize a function in ``cache``, any mapping with ``get`` (an LRUCache, TTLCache, dict...).

    ``key(*args, **kwargs)`` makes the cache key (default: the arguments tuple, or
    functools.lru_cache's untyped key when there are keyword arguments).
    Lookups go through ``cache.get``, so a prodfast cache counts them in ``stats()``. The
    wrapper has ``cache``, ``cache_key``, ``cache_clear()`` and, when the cache has
    ``stats()``, ``cache_info()``. Works for ``async def`` functions too.
    """
    if not (hasattr(cache, "get") and hasattr(cache, "__setitem__")):
        raise TypeError(f"cache must be a mapping with get() and item assignment, got {cache!r}")
    if key is not None and not callable(key):
        raise TypeError(f"key must be callable or None, got {key!r}")

    if key is None:
        key_fn = _default_key
        key_of = _key_maker(False)
    else:
        key_fn = key

        def key_of(args, kwargs):
            return key(*args, **kwargs)

    def decorator(func):
        if not callable(func):
            raise TypeError(f"cached expects a callable, got {func!r}")
        if inspect.iscoroutinefunction(func):
            wrapper = _wrap_async(func, cache, key_of)
        else:
            wrapper = _sync_wrapper(func, cache, key_of)
        functools.update_wrapper(wrapper, func)
        wrapper.cache = cache
        wrapper.cache_key = key_fn
        wrapper.cache_clear = cache.clear
        if hasattr(cache, "stats"):

            def cache_info():
                stats = cache.stats()
                return CacheInfo(
                    stats["hits"], stats["misses"], stats["max_size"], cache.currsize
                )

            wrapper.cache_info = cache_info
        return wrapper

    return decorator
