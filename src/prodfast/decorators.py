"""Memoizing decorators: cachetools 8's ``cached`` and ``cachedmethod``, and ``lru_cache``.

``cached(cache, key=keys.hashkey, lock=None, condition=None, info=False)`` and
``cachedmethod(cache, key=keys.methodkey, lock=None, condition=None, info=False)`` have
cachetools 8's signatures and semantics (the wrapper's ``cache``, ``cache_key``, ``cache_lock``,
``cache_condition``, ``cache_clear()``, ``cache_info()`` with ``info=True``, ``__wrapped__``;
the same lock and condition protocol, call for call). prodfast adds:

* ``async def`` functions and methods: the *result* is cached (never the coroutine object),
  concurrent awaits of one key share a single in-flight call (callers that join it count as
  hits), cancelling one caller does not cancel the call for the others, exceptions are not
  cached. A call that awaits itself with the same key (directly, or through a cycle of in-flight
  calls) runs undeduplicated, so it fails as the undecorated function would instead of waiting
  forever on itself.
* Threads: without a ``lock`` or ``condition`` (which keep cachetools' protocols exactly),
  concurrent calls of one cold key in several threads run the function once and share its
  result or its exception (a thread re-entering its own call, or closing a cycle of waits, runs
  the function itself instead of waiting). With a ``condition``, a thread re-entering its own
  pending key runs the function instead of waiting for itself.
* Shared caches: a cache with ``get_or_compute(key, compute)`` (sync functions) or
  ``aget_or_compute(key, compute)`` (async functions) does the whole lookup itself, once across
  every process sharing it (without a lock or condition, a hit in a ``TieredCache``'s local tier
  is read by the decorator itself, at a plain cache hit's cost); ``cache_info()`` counts a miss
  when the decorator's ``compute`` ran (its currsize is None for an asyncio cache without
  ``__len__``), and when the cache's ``clear()`` is a coroutine, ``cache_clear()`` returns it:
  ``await f.cache_clear()``.

``lru_cache(maxsize=128, typed=False, *, ttl=None, timer=time.monotonic)`` is
``functools.lru_cache`` over an LRUCache (a TTLCache with ``ttl``), with the same protections.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
import time
import types
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

from . import _backend, _cache_py
from .keys import _kwmark, hashkey, methodkey

if TYPE_CHECKING:  # what type checkers see of the wrappers (the runtime classes are below)
    from collections.abc import Callable, Hashable, MutableMapping
    from contextlib import AbstractContextManager
    from typing import Concatenate, Generic, ParamSpec, Protocol, TypeVar

    _P = ParamSpec("_P")
    _R = TypeVar("_R")
    _R_co = TypeVar("_R_co", covariant=True)
    _S = TypeVar("_S")

    class CachedFunction(Protocol[_P, _R_co]):
        """What ``@cached(...)`` returns: the function's own signature plus the cache attributes."""

        cache: MutableMapping[Any, Any]
        cache_key: Callable[..., Hashable]
        cache_lock: AbstractContextManager[Any] | None
        cache_condition: Any

        @property
        def __wrapped__(self) -> Callable[_P, _R_co]: ...
        def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R_co: ...
        def cache_clear(self) -> Any: ...

    class CachedFunctionInfo(CachedFunction[_P, _R_co], Protocol[_P, _R_co]):
        def cache_info(self) -> CacheInfo: ...

    class LRUFunction(CachedFunctionInfo[_P, _R_co], Protocol[_P, _R_co]):
        """What ``@lru_cache`` returns."""

        def cache_parameters(self) -> dict[str, Any]: ...

    class CachedMethod(Generic[_S, _P, _R]):
        """What ``@cachedmethod(...)`` puts in the class: bound, the cached callable."""

        @overload
        def __get__(self, obj: None, objtype: type[_S] | None = None) -> Callable[Concatenate[_S, _P], _R]: ...
        @overload
        def __get__(self, obj: _S, objtype: type[_S] | None = None) -> CachedFunction[_P, _R]: ...
        def __get__(self, obj: _S | None, objtype: type[_S] | None = None) -> Any: ...

    class CachedMethodInfo(CachedMethod[_S, _P, _R]):
        """What ``@cachedmethod(..., info=True)`` puts in the class: bound, with cache_info()."""

        @overload  # type: ignore[override]
        def __get__(self, obj: None, objtype: type[_S] | None = None) -> Callable[Concatenate[_S, _P], _R]: ...
        @overload
        def __get__(self, obj: _S, objtype: type[_S] | None = None) -> CachedFunctionInfo[_P, _R]: ...
        def __get__(self, obj: _S | None, objtype: type[_S] | None = None) -> Any: ...

__all__ = ["CacheInfo", "cached", "cachedmethod", "lru_cache"]


class CacheInfo(NamedTuple):
    """The statistics of one decorated function: hits, misses, maxsize, currsize (the last two
    None where the cache has no size, as in cachetools)."""

    hits: int
    misses: int
    maxsize: float | None
    currsize: float | None


def _make_info(cache, hits, misses):
    # cachetools: a Cache reports maxsize and currsize, any other mapping None and len(); an
    # asyncio shared cache (aget_or_compute, no __len__: its size is a coroutine) reports None
    if isinstance(cache, (_backend.impl.Cache, _cache_py.Cache)) or _is_cachetools_cache(cache):
        return CacheInfo(hits, misses, cache.maxsize, cache.currsize)
    if not hasattr(cache, "__len__") and callable(getattr(cache, "aget_or_compute", None)):
        return CacheInfo(hits, misses, None, None)
    return CacheInfo(hits, misses, None, len(cache))


def _is_cachetools_cache(cache):
    cls = type(cache)
    return any(
        klass.__module__ == "cachetools" and klass.__name__ == "Cache" for klass in cls.__mro__
    )


# ---------------------------------------------------------------------- single flight (threads)

_flight_lock = threading.Lock()  # guards every _Flight and _thread_waits
_thread_waits = {}  # thread id -> id of the thread whose call it waits for


class _Flight:
    """One call of the function for one key, shared by the threads that ask meanwhile."""

    __slots__ = ("owner", "done", "value", "error")

    def __init__(self, owner):
        self.owner = owner
        self.done = threading.Event()
        self.value = None
        self.error = None


def _closes_cycle(owner, me):
    # True when the thread `owner` waits, directly or through others, for thread `me`
    seen = 0
    while owner is not None and seen <= len(_thread_waits):
        if owner == me:
            return True
        owner = _thread_waits.get(owner)
        seen += 1
    return False


def _single_flight(flights, key, compute, store):
    """``(value, joined)``: run ``compute()`` and ``store(value)`` once per key across threads.

    The owner's exception reaches every thread that joined its call. A thread that asks again
    for the key it is computing (recursion), or whose wait would close a cycle, computes itself.
    """
    me = threading.get_ident()
    with _flight_lock:
        flight = flights.get(key)
        if flight is None:
            flight = flights[key] = _Flight(me)
            owner = True
        elif _closes_cycle(flight.owner, me):
            owner = None
        else:
            owner = False
            _thread_waits[me] = flight.owner
    if owner is None:
        return store(compute()), False
    if owner is False:
        try:
            flight.done.wait()
        finally:
            with _flight_lock:
                del _thread_waits[me]
        if flight.error is not None:
            raise flight.error
        return flight.value, True
    try:
        flight.value = store(compute())
        return flight.value, False
    except BaseException as exc:  # noqa: B036 - handed to the joined threads, then re-raised
        flight.error = exc
        raise
    finally:
        with _flight_lock:
            del flights[key]
        flight.done.set()


# ---------------------------------------------------------------------- in-flight calls (asyncio)

_task_waits = {}  # task -> the in-flight task it awaits (one event loop thread at a time each)


def _task_closes_cycle(task, me):
    seen = 0
    while task is not None and seen <= len(_task_waits):
        if task is me:
            return True
        task = _task_waits.get(task)
        seen += 1
    return False


def _retrieve(task):
    # Mark the in-flight task's exception as retrieved, so an abandoned failure logs nothing.
    if not task.cancelled():
        task.exception()


async def _join(task):
    me = asyncio.current_task()
    _task_waits[me] = task
    try:
        return await asyncio.shield(task)
    finally:
        del _task_waits[me]


async def _async_flight(inflight, key, compute, store):
    """``(value, joined)``: one in-flight ``compute()`` per key; joiners await it shielded."""
    loop = asyncio.get_running_loop()
    task = inflight.get(key)
    if task is not None and task.get_loop() is loop and not task.done():
        if _task_closes_cycle(task, asyncio.current_task()):
            return store(await compute()), False  # awaiting itself: run as the undecorated would
        return await _join(task), True

    async def run():
        try:
            return store(await compute())
        finally:
            if inflight.get(key) is task:
                del inflight[key]

    task = loop.create_task(run())
    task.add_done_callback(_retrieve)
    inflight[key] = task
    return await _join(task), False


# ---------------------------------------------------------------------- the lookup protocol


class _Memo:
    """The hit/miss counters and the in-flight bookkeeping of one memoized callable.

    ``_lookup(cache, key, lock, cond, compute)`` is cachetools' protocol for each combination of
    lock and condition (the same lock and condition calls), plus single flight without a
    condition and the shared-cache protocol.
    """

    def _memo_init(self, info):
        self._info = info
        self._hits = 0
        self._misses = 0
        self._pending = {}  # condition protocol: key -> thread id of the computing thread
        self._flights = {}  # single flight (threads): key -> _Flight
        self._inflight = {}  # asyncio: key -> task

    def _count(self, hit):
        if hit:
            self._hits += 1
        else:
            self._misses += 1

    def _clear(self, cache, lock):
        # An asyncio cache's clear() is a coroutine: it is returned, for the caller to await.
        if lock is None:
            done = cache.clear()
            self._hits = self._misses = 0
        else:
            with lock:
                done = cache.clear()
                self._hits = self._misses = 0
        return done if inspect.isawaitable(done) else None

    # the continuations of the compiled hit path's misses under a lock (_cached.pxi)

    def _finish_locked(self, cache, key, args, kwargs):
        value = self._compute(args, kwargs)
        with self.cache_lock:
            try:
                # another thread may have stored a value meanwhile: prefer it, as cachetools
                return cache.setdefault(key, value)
            except ValueError:  # too large for the cache
                return value

    def _finish_condition(self, cache, key, args, kwargs, owner):
        lock = self.cache_lock
        try:
            value = self._compute(args, kwargs)
            with lock:
                _store(cache, key, value)
            return value
        finally:
            if owner:
                with lock:
                    del self._pending[key]
                    self.cache_condition.notify_all()

    def _info_of(self, cache, lock):
        if lock is None:
            return _make_info(cache, self._hits, self._misses)
        with lock:
            return _make_info(cache, self._hits, self._misses)

    # sync

    def _lookup(self, cache, key, lock, cond, compute):
        if cond is not None:
            return self._lookup_condition(cache, key, lock or cond, cond, compute)
        if lock is not None:
            return self._lookup_locked(cache, key, lock, compute)
        try:
            value = cache[key]
        except KeyError:
            pass
        else:
            self._hits += 1
            return value
        value, joined = _single_flight(self._flights, key, compute, functools.partial(_store, cache, key))
        self._count(joined)
        return value

    def _lookup_locked(self, cache, key, lock, compute):
        with lock:
            try:
                value = cache[key]
            except KeyError:
                self._misses += 1
            else:
                self._hits += 1
                return value
        # cachetools' lock protocol: every thread that missed calls the function
        value = compute()
        with lock:
            try:
                # another thread may have stored a value meanwhile: prefer it, as cachetools
                return cache.setdefault(key, value)
            except ValueError:  # too large for the cache
                return value

    def _lookup_condition(self, cache, key, lock, cond, compute):
        me = threading.get_ident()
        pending = self._pending
        with lock:
            while key in pending and pending[key] != me:
                cond.wait()
            try:
                value = cache[key]
            except KeyError:
                owner = key not in pending
                if owner:
                    pending[key] = me
                self._misses += 1
            else:
                self._hits += 1
                return value
        try:
            value = compute()
            with lock:
                _store(cache, key, value)
            return value
        finally:
            if owner:
                with lock:
                    del pending[key]
                    cond.notify_all()

    def _lookup_shared(self, cache, key, lock, cond, compute, after_miss=None):
        ran = []

        def counted():
            ran.append(True)
            return compute()

        if cond is None and lock is None:
            value = (after_miss or cache.get_or_compute)(key, counted)
            self._count(not ran)
            return value
        if cond is None:
            with lock:
                value = cache.get_or_compute(key, counted)
                self._count(not ran)
                return value
        lock = lock or cond
        pending = self._pending
        me = threading.get_ident()
        with lock:
            while key in pending and pending[key] != me:
                cond.wait()
            owner = key not in pending
            if owner:
                pending[key] = me
        try:
            value = cache.get_or_compute(key, counted)
            with lock:
                self._count(not ran)
            return value
        finally:
            if owner:
                with lock:
                    del pending[key]
                    cond.notify_all()

    # async

    async def _alookup(self, cache, key, lock, compute):
        if lock is None:
            try:
                value = cache[key]
            except KeyError:
                pass
            else:
                self._hits += 1
                return value
        else:
            with lock:
                try:
                    value = cache[key]
                except KeyError:
                    pass
                else:
                    self._hits += 1
                    return value

        def store(value):
            if lock is None:
                return _store(cache, key, value)
            with lock:
                return _store(cache, key, value)

        value, joined = await _async_flight(self._inflight, key, compute, store)
        self._count(joined)
        return value

    async def _alookup_shared(self, cache, key, lock, compute, after_miss=None):
        ran = []

        def counted():
            ran.append(True)
            return compute()

        value = await (after_miss or cache.aget_or_compute)(key, counted)
        if lock is None:
            self._count(not ran)
        else:
            with lock:
                self._count(not ran)
        return value


def _hit_tier(cache):
    # A shared cache whose get_or_compute()/aget_or_compute() first returns a hit in a local
    # cache gives (local, after_miss) from _hit_tier() (TieredCache: its local tier, and the rest
    # of get_or_compute): the decorators look in `local` themselves, at the cost of a plain cache
    # hit, and call after_miss(key, compute) on a miss there (a lookup counted once).
    tier = getattr(cache, "_hit_tier", None)
    return tier() if callable(tier) else (None, None)


def _store(cache, key, value):
    try:
        cache[key] = value
    except ValueError:  # too large for the cache: returned uncached, as cachetools does
        pass
    return value


# ---------------------------------------------------------------------- cached


@_backend.impl._fast_call
class _CachedFunction(_backend.impl._CachedCall, _Memo):
    """What ``cached(...)`` returns for a plain function: callable, a descriptor like a function,
    copied and pickled by reference (by its qualified name). The hit path is the compiled base's
    ``__call__`` (see _cached.pxi); ``_miss`` and ``_call`` are the rest."""

    def __init__(self, func, cache, key, lock, cond, info):
        # Update first, so func.__dict__ (a stacked wrapper's) cannot override our state.
        functools.update_wrapper(self, func)
        local = self._after_miss = None
        if callable(getattr(cache, "get_or_compute", None)):
            if lock is None and cond is None:
                local, self._after_miss = _hit_tier(cache)
            mode = 0 if local is None else 4  # the shared-cache protocol: self._call
        else:
            mode = 3 if cond is not None else 2 if lock is not None else 1
        key_kind = 1 if key is hashkey else 2 if key is _call_key else 0
        _backend.impl._CachedCall.__init__(self, cache, key, key_kind, mode, lock, cond, local)
        self._func = func
        self._memo_init(info)

    def _compute(self, args, kwargs):
        return self._func(*args, **kwargs)

    def _miss(self, key, args, kwargs):
        func = self._func
        value, joined = _single_flight(
            self._flights, key, lambda: func(*args, **kwargs), functools.partial(_store, self.cache, key)
        )
        self._count(joined)
        return value

    def _call(self, args, kwargs):
        func = self._func
        key = self.cache_key(*args, **kwargs)
        return self._lookup_shared(
            self.cache, key, self.cache_lock, self.cache_condition, lambda: func(*args, **kwargs),
            self._after_miss,  # mode 4: the local tier has just missed
        )

    def cache_clear(self):
        """Remove every entry from the cache (and, with ``info=True``, reset the counters)."""
        return self._clear(self.cache, self.cache_lock)

    def __get__(self, obj, objtype=None):
        return self if obj is None else types.MethodType(self, obj)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return self.__qualname__

    def __repr__(self):
        return f"<cached {self.__wrapped__!r}>"


@_backend.impl._fast_call
class _CachedFunctionInfo(_CachedFunction):
    def cache_info(self):
        """``CacheInfo(hits, misses, maxsize, currsize)`` of this function's calls."""
        return self._info_of(self.cache, self.cache_lock)


def _async_cached(func, cache, key, lock, cond, info):
    # An ``async def`` wrapper, so inspect.iscoroutinefunction() sees one; ``cond`` serves as the
    # lock around cache access (in-flight sharing already makes waiting unnecessary).
    memo = _Memo()
    memo._memo_init(info)
    guard = lock if lock is not None else cond
    shared = callable(getattr(cache, "aget_or_compute", None))
    local, after_miss = _hit_tier(cache) if shared and guard is None else (None, None)

    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        k = key(*args, **kwargs)
        if local is not None:
            try:  # what aget_or_compute does first, without its coroutine and counting closure
                value = local[k]
            except KeyError:
                pass
            else:
                memo._hits += 1
                return value
        if shared:
            return await memo._alookup_shared(cache, k, guard, lambda: func(*args, **kwargs), after_miss)
        return await memo._alookup(cache, k, guard, lambda: func(*args, **kwargs))

    wrapper.cache = cache
    wrapper.cache_key = key
    wrapper.cache_lock = lock if lock is not None else cond
    wrapper.cache_condition = cond
    wrapper.cache_clear = lambda: memo._clear(cache, guard)
    wrapper._inflight = memo._inflight
    if info:
        wrapper.cache_info = lambda: memo._info_of(cache, guard)
    return wrapper


@overload
def cached(
    cache: MutableMapping[Any, Any],
    key: Callable[..., Hashable] = ...,
    lock: AbstractContextManager[Any] | None = None,
    condition: Any = None,
    info: Literal[False] = False,
) -> Callable[[Callable[_P, _R]], CachedFunction[_P, _R]]: ...
@overload
def cached(
    cache: MutableMapping[Any, Any],
    key: Callable[..., Hashable] = ...,
    lock: AbstractContextManager[Any] | None = None,
    condition: Any = None,
    *,
    info: Literal[True],
) -> Callable[[Callable[_P, _R]], CachedFunctionInfo[_P, _R]]: ...
def cached(cache, key=hashkey, lock=None, condition=None, info=False):
    """Decorator: memoize a function's results in ``cache`` (cachetools 8's ``cached``).

    ``cache`` is any mutable mapping (a prodfast or cachetools cache, a dict, ...); misses are
    its KeyError. ``key(*args, **kwargs)`` makes the cache key (default ``keys.hashkey``).
    ``lock`` (a context manager) guards every access to the cache, the function runs outside
    it; with ``condition`` (a ``threading.Condition``, also the lock when ``lock`` is None)
    threads asking for a key being computed wait for it. ``info=True`` adds ``cache_info()``.
    A value the cache refuses as too large is returned uncached. See the module docstring for
    async functions, single flight and shared caches.
    """
    if cache is None:
        raise TypeError("cache must not be None")
    if not callable(key):
        raise TypeError(f"key must be callable, got {key!r}")

    def decorator(func):
        if inspect.iscoroutinefunction(func):
            return _async_cached(func, cache, key, lock, condition, info)
        cls = _CachedFunctionInfo if info else _CachedFunction
        return cls(func, cache, key, lock if lock is not None else condition, condition, info)

    return decorator


# ---------------------------------------------------------------------- cachedmethod
#
# The descriptor design follows cachetools 8 (``_descriptor.py``): on first access through an
# instance, the descriptor stores a per-instance wrapper in the instance's __dict__ under its
# own name, so later accesses are plain attribute lookups; a super() lookup (the name in the
# instance dict belongs to an override) keeps its wrapper in __dict__["__cachetools_cachedmethods"].

_WRAPPERS_ATTR = "__cachetools_cachedmethods"


@_backend.impl._fast_call
class _MethodWrapper(_backend.impl._CachedMethodCall, _Memo):
    """The per-instance callable of a ``cachedmethod``: looks the cache, lock and condition up
    on the instance at every call, as cachetools does. The hit path is the compiled base's
    ``__call__`` (see _cached.pxi); ``_miss`` and ``_call`` are the rest."""

    def __init__(self, obj, descriptor, method, cache, key, lock, cond, info):
        if not callable(key):
            raise TypeError(f"key must be callable, got {key!r}")
        functools.update_wrapper(self, method)
        if descriptor._is_async:
            mode = 0  # self._call
        else:
            mode = 3 if cond is not None else 2 if lock is not None else 1
        _backend.impl._CachedMethodCall.__init__(
            self, obj, cache, lock, cond, key, int(key is methodkey), mode
        )
        self._descriptor = descriptor
        self._method = method
        self.cache_key = functools.partial(key, obj)
        self._memo_init(info)

    def _compute(self, args, kwargs):
        return self._method(self._obj, *args, **kwargs)

    @property
    def cache(self):
        return self._cache_of(self._obj)

    @property
    def cache_lock(self):
        lock_of = self._lock_of
        if lock_of is None:
            cond_of = self._cond_of
            return None if cond_of is None else cond_of(self._obj)
        return lock_of(self._obj)

    @property
    def cache_condition(self):
        cond_of = self._cond_of
        return None if cond_of is None else cond_of(self._obj)

    def _miss(self, cache, key, args, kwargs):
        method, obj = self._method, self._obj
        value, joined = _single_flight(
            self._flights, key, lambda: method(obj, *args, **kwargs), functools.partial(_store, cache, key)
        )
        self._count(joined)
        return value

    def _call(self, cache, args, kwargs):
        obj, method = self._obj, self._method
        key = self._key(obj, *args, **kwargs)

        def compute():
            return method(obj, *args, **kwargs)

        if self._descriptor._is_async:
            if callable(getattr(cache, "aget_or_compute", None)):
                return self._alookup_shared(cache, key, self.cache_lock, compute)
            return self._alookup(cache, key, self.cache_lock, compute)
        lock, cond = self.cache_lock, self.cache_condition
        if callable(getattr(cache, "get_or_compute", None)):
            return self._lookup_shared(cache, key, lock, cond, compute)
        self._plain_type = type(cache)  # the compiled hit path serves this type from now on
        return self._lookup(cache, key, lock, cond, compute)

    def cache_clear(self):
        """Remove every entry from this instance's cache (with info, reset the counters)."""
        return self._clear(self.cache, self.cache_lock)

    def __reduce__(self):
        # rebuilt through the descriptor (the counters start again from zero)
        return self._descriptor.__get__, (self._obj,)

    def __repr__(self):
        return f"<cachedmethod {self.__wrapped__!r} of {object.__repr__(self._obj)}>"


@_backend.impl._fast_call
class _MethodWrapperInfo(_MethodWrapper):
    def cache_info(self):
        """``CacheInfo(hits, misses, maxsize, currsize)`` of this instance's calls."""
        return self._info_of(self.cache, self.cache_lock)


class _MethodDescriptor:
    """What ``cachedmethod(...)`` returns: a descriptor creating one wrapper per instance."""

    def __init__(self, method, cache, key, lock, cond, info):
        functools.update_wrapper(self, method)
        self._method = method
        self._make = functools.partial(
            _MethodWrapperInfo if info else _MethodWrapper,
            method=method, cache=cache, key=key, lock=lock, cond=cond, info=info,
        )
        self._is_async = inspect.iscoroutinefunction(method)
        self._owner = None
        self._name = None
        self._unbound = None

    def __set_name__(self, owner, name):
        if self._name is None:
            self._owner = owner
            self._name = name
        elif name != self._name:
            raise TypeError(
                "Cannot assign the same descriptor to two different names "
                f"({self._name!r} and {name!r})."
            )

    def __get__(self, obj, objtype=None):
        name = self._name
        if name is None:
            if isinstance(obj, type):  # classmethod before Python 3.13 calls __get__(cls)
                self.__call__()
            raise TypeError("Cannot use descriptor instance without calling __set_name__ on it")
        if obj is None:
            if self._unbound is None:
                self._unbound = _Unbound(self)
            return self._unbound
        for cls in type(obj).__mro__:
            if name in cls.__dict__:
                found = cls.__dict__[name]
                break
        else:
            found = None  # removed from the class after __set_name__
        try:
            if found is self:
                # the instance's own attribute from now on; a racing thread's wrapper wins
                return obj.__dict__.setdefault(name, self._make(obj, self))
            wrappers = obj.__dict__.setdefault(_WRAPPERS_ATTR, {})
        except (AttributeError, TypeError) as exc:
            raise self._dict_error(obj, exc) from None
        wrapper = wrappers.get(self)
        if wrapper is None:
            wrapper = wrappers.setdefault(self, self._make(obj, self))
        return wrapper

    def _dict_error(self, obj, exc):
        cls = type(obj).__name__
        if isinstance(exc, AttributeError):
            return TypeError(f"No '__dict__' attribute on {cls!r} instance to cache {self._name!r}")
        return TypeError(
            f"The '__dict__' attribute on {cls!r} instance does not support item assignment "
            f"for caching {self._name!r}"
        )

    def __reduce__(self):
        return _lookup_descriptor, (self._owner, self._name)

    def __call__(self, /, *args, **kwargs):
        # reached when another decorator (classmethod, staticmethod, property...) wraps this one
        raise TypeError(
            "Cannot call @cachedmethod descriptor directly: @cachedmethod must be the outermost "
            "decorator, and decorating class methods, static methods or properties is not supported"
        )


def _lookup_descriptor(owner, name):
    return owner.__dict__[name]


class _Unbound:
    """``Class.method``: calls through the class take the instance as first argument.

    Not a function, so ``unittest.mock.create_autospec`` leaves the receiver out of an
    autospec'd instance's signature.
    """

    def __init__(self, descriptor):
        functools.update_wrapper(self, descriptor.__wrapped__)
        self._descriptor = descriptor
        self._receiver = None

    def __reduce__(self):
        return self._descriptor.__get__, (None,)

    def __repr__(self):
        return f"<cachedmethod {self.__wrapped__!r}>"

    def __get__(self, obj, objtype=None):
        return self if obj is None else self._descriptor.__get__(obj)

    def __call__(self, /, *args, **kwargs):
        if args:
            obj, *args = args
        else:
            obj = kwargs.pop(self._receiver_name(), _NO_RECEIVER)
            if obj is _NO_RECEIVER:
                raise TypeError("Cannot call @cachedmethod through the class without an instance")
        return self._descriptor.__get__(obj)(*args, **kwargs)

    def _receiver_name(self):
        if self._receiver is None:
            self._receiver = ""
            try:
                first = next(iter(inspect.signature(self).parameters.values()))
            except (ValueError, StopIteration):
                pass
            else:
                if first.kind is first.POSITIONAL_OR_KEYWORD:
                    self._receiver = first.name
        return self._receiver


_NO_RECEIVER = object()


@overload
def cachedmethod(
    cache: Callable[[Any], MutableMapping[Any, Any]],
    key: Callable[..., Hashable] = ...,
    lock: Callable[[Any], AbstractContextManager[Any]] | None = None,
    condition: Callable[[Any], Any] | None = None,
    info: Literal[False] = False,
) -> Callable[[Callable[Concatenate[_S, _P], _R]], CachedMethod[_S, _P, _R]]: ...
@overload
def cachedmethod(
    cache: Callable[[Any], MutableMapping[Any, Any]],
    key: Callable[..., Hashable] = ...,
    lock: Callable[[Any], AbstractContextManager[Any]] | None = None,
    condition: Callable[[Any], Any] | None = None,
    *,
    info: Literal[True],
) -> Callable[[Callable[Concatenate[_S, _P], _R]], CachedMethodInfo[_S, _P, _R]]: ...
def cachedmethod(cache, key=methodkey, lock=None, condition=None, info=False):
    """Decorator: memoize a method's results (cachetools 8's ``cachedmethod``).

    ``cache(self)`` returns the cache to use (looked up at every call), ``key(self, *args,
    **kwargs)`` the key (default ``keys.methodkey``, which leaves ``self`` out, so instances
    sharing a cache share results); ``lock(self)`` and ``condition(self)`` as in ``cached``.
    ``instance.method`` is a per-instance wrapper with ``cache``, ``cache_key``, ``cache_lock``,
    ``cache_condition``, ``cache_clear()`` and, with ``info=True``, ``cache_info()`` (counted per
    instance); the class needs a writable ``__dict__``. ``async def`` methods work as in
    ``cached``.
    """
    if not callable(cache):
        raise TypeError("cache must be callable")

    def decorator(method):
        return _MethodDescriptor(method, cache, key, lock, condition, info)

    return decorator


# ---------------------------------------------------------------------- lru_cache


# lru_cache's keys: keyword arguments in call order (f(x=1, y=2) and f(y=2, x=1) are two
# entries in functools.lru_cache, so here too); without them, the argument tuple, except that a
# single argument that is not a tuple is its own key (as functools does for an int or a str):
# it equals another such key exactly when the one-element tuples would, so f(1) and f(1.0) still
# share one entry, and it never equals a tuple key
def _call_key(*args, **kwargs):
    if kwargs:
        return args + _kwmark + tuple(kwargs.items())
    if len(args) == 1 and not isinstance(args[0], tuple):
        return args[0]
    return args


def _typed_call_key(*args, **kwargs):
    if kwargs:
        return args + _kwmark + tuple(kwargs.items()) + tuple(map(type, args)) + tuple(
            map(type, kwargs.values())
        )
    return args + tuple(map(type, args))


@overload
def lru_cache(maxsize: Callable[_P, _R], /) -> LRUFunction[_P, _R]: ...
@overload
def lru_cache(
    maxsize: int | None = 128,
    typed: bool = False,
    *,
    ttl: Any = None,
    timer: Callable[[], Any] = ...,
) -> Callable[[Callable[_P, _R]], LRUFunction[_P, _R]]: ...
def lru_cache(maxsize=128, typed=False, *, ttl=None, timer=time.monotonic):
    """``functools.lru_cache`` (same arguments, positional ``typed`` included) plus a time-to-live.

    Usable bare (``@lru_cache``) or called (``@lru_cache(1024)``, ``@lru_cache(maxsize=1024,
    ttl=60)``). ``maxsize`` None means unbounded; 0 caches nothing. With ``ttl`` the entries
    expire ``ttl`` after they were stored (read from ``timer``). ``typed=True`` keeps ``f(1)``
    and ``f(1.0)`` apart. The wrapper has ``cache_info()`` -> CacheInfo(hits, misses, maxsize,
    currsize), ``cache_clear()``, ``cache_parameters()``, ``__wrapped__`` and ``cache`` (the
    LRUCache or TTLCache). Thread-safe with single flight; works for ``async def`` functions too.
    """
    if callable(maxsize) and not isinstance(maxsize, (int, float)):
        return lru_cache()(maxsize)
    if maxsize is None:
        size = math.inf
    elif isinstance(maxsize, bool) or not isinstance(maxsize, int):
        raise TypeError(f"maxsize must be an int or None, got {maxsize!r}")
    else:
        size = maxsize = max(maxsize, 0)  # functools treats a negative maxsize as 0
    if not isinstance(typed, bool):
        raise TypeError(f"typed must be a bool, got {typed!r}")
    impl = _backend.impl
    cache = impl.LRUCache(size) if ttl is None else impl.TTLCache(size, ttl, timer)
    key = _typed_call_key if typed else _call_key

    def decorating_function(user_function):
        if not callable(user_function):
            raise TypeError(f"lru_cache expects a callable, got {user_function!r}")
        wrapper = cached(cache, key=key, info=True)(user_function)
        info = wrapper.cache_info

        def cache_info():
            hits, misses, _, currsize = info()
            return CacheInfo(hits, misses, maxsize, currsize)

        def cache_parameters():
            return {"maxsize": maxsize, "typed": typed, "ttl": ttl}

        wrapper.cache_info = cache_info
        wrapper.cache_parameters = cache_parameters
        return wrapper

    return decorating_function
