"""Decorators: a cache hit through prodfast's decorators beside functools and cachetools.

Each run calls a memoized one-argument function ``batch`` times over 100 keys already cached
(every call a hit), on the active backend (``prodfast.BACKEND``):

``functools.lru_cache`` is the floor of every group (the cheapest memoized call in Python):

- ``lru_cache``: ``prodfast.lru_cache`` (also with
  ``ttl=``), ``cachetools.func.lru_cache`` and ``prodfast.compat.cachetools.func.lru_cache``;
- ``cached``: ``prodfast.cached(LRUCache)`` beside ``cachetools.cached(cachetools.LRUCache)``,
  also with ``lock=threading.Lock()`` and ``info=True``;
- ``cachedmethod``: ``prodfast.cachedmethod`` beside ``cachetools.cachedmethod``.

The decorated function counts its calls; the check wants it to have run once per key (the
fills) and never during the timed hits.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator

from .runner import FLOOR, PEER, PRODFAST, Case, Group, Settings, Timed, call_each, expect, require

AREA = "decorators"
DISTINCT = 100  # keys cached before timing


def _backend() -> str:
    try:
        return "cy" if require("prodfast").BACKEND == "cython" else "py"
    except Exception:
        return "?"


def _lru(name: str) -> Callable[[Callable], Callable]:
    if name == "functools.lru_cache":
        return functools.lru_cache(maxsize=1000)
    if name == "prodfast lru_cache":
        return require("prodfast", "lru_cache")(maxsize=1000)
    if name == "prodfast lru_cache(ttl=3600)":
        return require("prodfast", "lru_cache")(maxsize=1000, ttl=3600)
    if name == "cachetools.func.lru_cache":
        return require("cachetools.func", dist="cachetools").lru_cache(maxsize=1000)
    return require("prodfast.compat.cachetools").func.lru_cache(maxsize=1000)


def _cached(name: str) -> Callable[[Callable], Callable]:
    if name.startswith("cachetools"):
        ct = require("cachetools")
        lock = {"lock": threading.Lock()} if "lock" in name else {}
        return ct.cached(ct.LRUCache(1000), **lock)
    prodfast = require("prodfast")
    extra: dict = {}
    if "lock" in name:
        extra["lock"] = threading.Lock()
    if "info" in name:
        extra["info"] = True
    return prodfast.cached(prodfast.LRUCache(1000), **extra)


def _method(name: str) -> Callable[[Callable], Callable]:
    """A method memoized by ``name``; the floor: ``functools.lru_cache`` on the method itself
    (keyed by ``self`` and the argument; the cheapest memoized method call in Python)."""
    if name == "functools.lru_cache":
        lib = None
        deco = functools.lru_cache(maxsize=1000)
    else:
        lib = require("cachetools") if name.startswith("cachetools") else require("prodfast")
        deco = lib.cachedmethod(lambda self: self.cache)

    def wrap(f: Callable) -> Callable:
        class Service:
            def __init__(self) -> None:
                self.cache = lib.LRUCache(1000) if lib is not None else None

            m = deco(f)

        return Service().m

    return wrap


def _hits(decorate: Callable[[], Callable[[Callable], Callable]], batch: int, method: bool):
    keys = list(range(DISTINCT)) * max(1, batch // DISTINCT)

    def setup() -> Timed:
        calls: list = []

        if method:

            def identity(self, x):
                calls.append(x)
                return x

        else:

            def identity(x):
                calls.append(x)
                return x

        fn = decorate()(identity)
        for k in range(DISTINCT):  # the misses that fill the cache
            fn(k)

        def check() -> None:
            bad = [k for k in range(DISTINCT) if fn(k) != k]
            expect(not bad, f"{len(bad)} hits returned another value")
            expect(len(calls) == DISTINCT, f"the function ran {len(calls)} times, not {DISTINCT}")

        return Timed(call_each(fn, keys), len(keys), check)

    return setup


def groups(settings: Settings) -> Iterator[Group]:
    tag = _backend()
    batch = settings.batch

    def case(name: str, make, method: bool = False) -> Case:
        role = FLOOR if name == "functools.lru_cache" else PRODFAST if name.startswith("prodfast") else PEER
        label = f"{name} [{tag}]" if name.startswith("prodfast") else name
        return Case(label, role, _hits(make, batch, method))

    lru = (
        "functools.lru_cache",
        "prodfast lru_cache",
        "prodfast lru_cache(ttl=3600)",
        "cachetools.func.lru_cache",
        "prodfast compat.cachetools.func.lru_cache",
    )
    yield Group(AREA, "hit: lru_cache", [case(n, functools.partial(_lru, n)) for n in lru])
    cached = (
        "prodfast cached(LRUCache)",
        "prodfast cached(LRUCache, info=True)",
        "cachetools.cached(LRUCache)",
        "prodfast cached(LRUCache, lock=Lock())",
        "cachetools.cached(LRUCache, lock=Lock())",
    )
    floor = case("functools.lru_cache", functools.partial(_lru, "functools.lru_cache"))
    yield Group(
        AREA, "hit: cached", [floor, *(case(n, functools.partial(_cached, n)) for n in cached)]
    )
    methods = ("functools.lru_cache", "prodfast cachedmethod", "cachetools.cachedmethod")
    yield Group(
        AREA,
        "hit: cachedmethod",
        [case(n, functools.partial(_method, n), True) for n in methods],
    )
