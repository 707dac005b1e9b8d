"""cachetools.func: ``functools.lru_cache``-style decorators over each eviction policy.

``fifo_cache``, ``lfu_cache``, ``lru_cache``, ``rr_cache(maxsize=128, choice=random.choice,
typed=False)`` and ``ttl_cache(maxsize=128, ttl=600, timer=time.monotonic, typed=False)``, with
cachetools 8's arguments and semantics: usable bare (``@lru_cache``), ``maxsize=None`` means
unbounded, each wrapper has ``cache_info()``, ``cache_clear()`` and ``cache_parameters()``, and
threads asking for a key being computed wait for it (a ``threading.Condition``), so the function
runs once per key. ``async def`` functions are cached as by ``prodfast.cached``.
"""

from __future__ import annotations

import math
import random
import time
from threading import Condition
from typing import TYPE_CHECKING, Any, overload

from ... import _backend
from ...decorators import cached
from ...keys import hashkey, typedkey

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import ParamSpec, TypeVar

    from ...decorators import LRUFunction

    _P = ParamSpec("_P")
    _R = TypeVar("_R")

__all__ = ("fifo_cache", "lfu_cache", "lru_cache", "rr_cache", "ttl_cache")


class _UnboundTTLCache(_backend.impl.TTLCache):
    """A TTLCache without a size limit, reporting ``maxsize`` None as cachetools does."""

    def __init__(self, ttl, timer):
        super().__init__(math.inf, ttl, timer)

    @property
    def maxsize(self):
        return None


def _cache(cache, maxsize, typed):
    def decorator(func):
        key = typedkey if typed else hashkey
        wrapper = cached(cache, key=key, condition=Condition(), info=True)(func)
        wrapper.cache_parameters = lambda: {"maxsize": maxsize, "typed": typed}
        return wrapper

    return decorator


def _policy(make, maxsize, typed):
    # maxsize None: an unbounded dict; a callable: the bare decorator with maxsize 128
    if maxsize is None:
        return _cache({}, None, typed)
    if callable(maxsize):
        return _cache(make(128), 128, typed)(maxsize)
    return _cache(make(maxsize), maxsize, typed)


@overload
def fifo_cache(maxsize: Callable[_P, _R], typed: bool = False) -> LRUFunction[_P, _R]: ...
@overload
def fifo_cache(maxsize: int | None = 128, typed: bool = False) -> Callable[[Callable[_P, _R]], LRUFunction[_P, _R]]: ...
def fifo_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Memoize up to ``maxsize`` results, evicting the first stored (FIFO)."""
    return _policy(_backend.impl.FIFOCache, maxsize, typed)


@overload
def lfu_cache(maxsize: Callable[_P, _R], typed: bool = False) -> LRUFunction[_P, _R]: ...
@overload
def lfu_cache(maxsize: int | None = 128, typed: bool = False) -> Callable[[Callable[_P, _R]], LRUFunction[_P, _R]]: ...
def lfu_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Memoize up to ``maxsize`` results, evicting the least frequently used (LFU)."""
    return _policy(_backend.impl.LFUCache, maxsize, typed)


@overload
def lru_cache(maxsize: Callable[_P, _R], typed: bool = False) -> LRUFunction[_P, _R]: ...
@overload
def lru_cache(maxsize: int | None = 128, typed: bool = False) -> Callable[[Callable[_P, _R]], LRUFunction[_P, _R]]: ...
def lru_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Memoize up to ``maxsize`` results, evicting the least recently used (LRU)."""
    return _policy(_backend.impl.LRUCache, maxsize, typed)


@overload
def rr_cache(
    maxsize: Callable[_P, _R], choice: Callable[[Sequence[Any]], Any] = ..., typed: bool = False
) -> LRUFunction[_P, _R]: ...
@overload
def rr_cache(
    maxsize: int | None = 128, choice: Callable[[Sequence[Any]], Any] = ..., typed: bool = False
) -> Callable[[Callable[_P, _R]], LRUFunction[_P, _R]]: ...
def rr_cache(maxsize: Any = 128, choice: Any = random.choice, typed: bool = False) -> Any:
    """Memoize up to ``maxsize`` results, evicting ``choice(keys)`` (random replacement)."""
    return _policy(lambda n: _backend.impl.RRCache(n, choice), maxsize, typed)


@overload
def ttl_cache(
    maxsize: Callable[_P, _R], ttl: float = 600, timer: Callable[[], Any] = ..., typed: bool = False
) -> LRUFunction[_P, _R]: ...
@overload
def ttl_cache(
    maxsize: int | None = 128, ttl: float = 600, timer: Callable[[], Any] = ..., typed: bool = False
) -> Callable[[Callable[_P, _R]], LRUFunction[_P, _R]]: ...
def ttl_cache(
    maxsize: Any = 128, ttl: Any = 600, timer: Any = time.monotonic, typed: bool = False
) -> Any:
    """Memoize up to ``maxsize`` results for ``ttl`` each, evicting the least recently used."""
    if maxsize is None:
        return _cache(_UnboundTTLCache(ttl, timer), None, typed)
    return _policy(lambda n: _backend.impl.TTLCache(n, ttl, timer), maxsize, typed)
