"""Decorator benchmarks: a cache hit through prodfast's decorators beside functools and cachetools.

Each case calls a memoized one-argument function BATCH times over 100 keys already cached (every
call a hit; ns per hit = median / BATCH), on the active backend (``prodfast.BACKEND``):

* ``lru_cache``     ``functools.lru_cache`` / ``prodfast.lru_cache`` / ``cachetools.func.lru_cache``
* ``cached``        ``cachetools.cached(cachetools.LRUCache)`` / ``prodfast.cached(prodfast.LRUCache)``,
  also with ``lock=threading.Lock()``
* ``cachedmethod``  ``cachetools.cachedmethod`` / ``prodfast.cachedmethod`` over an LRUCache

Goals (issue 10): a hit through ``cached``/``cachedmethod`` at least 3x faster than through
cachetools' decorators; a ``lru_cache`` hit within 1.5x of functools.lru_cache's.
Run ``pytest bench/test_bench_decorators.py --benchmark-only --benchmark-group-by=group
--benchmark-columns=median,iqr,rounds``; with ``--benchmark-disable`` each case runs once, as a
correctness check.
"""

from __future__ import annotations

import functools
import threading

import cachetools
import cachetools.func
import pytest

import prodfast
import prodfast.compat.cachetools as compat

BATCH = 1_000
KEYS = list(range(100)) * (BATCH // 100)


def _identity(x):
    return x


def _lru_cases():
    return {
        "functools.lru_cache": functools.lru_cache(maxsize=1000)(_identity),
        "prodfast.lru_cache": prodfast.lru_cache(maxsize=1000)(_identity),
        "prodfast.lru_cache(ttl)": prodfast.lru_cache(maxsize=1000, ttl=3600)(_identity),
        "cachetools.func.lru_cache": cachetools.func.lru_cache(maxsize=1000)(_identity),
        "prodfast compat func.lru_cache": compat.func.lru_cache(maxsize=1000)(_identity),
    }


def _cached_cases():
    return {
        "cachetools.cached": cachetools.cached(cachetools.LRUCache(1000))(_identity),
        "prodfast.cached": prodfast.cached(prodfast.LRUCache(1000))(_identity),
        "prodfast.cached(info)": prodfast.cached(prodfast.LRUCache(1000), info=True)(_identity),
        "cachetools.cached(lock)": cachetools.cached(cachetools.LRUCache(1000), lock=threading.Lock())(
            _identity
        ),
        "prodfast.cached(lock)": prodfast.cached(prodfast.LRUCache(1000), lock=threading.Lock())(_identity),
    }


class _Service:
    def __init__(self):
        self.theirs = cachetools.LRUCache(1000)
        self.ours = prodfast.LRUCache(1000)

    @cachetools.cachedmethod(lambda self: self.theirs)
    def cachetools_method(self, x):
        return x

    @prodfast.cachedmethod(lambda self: self.ours)
    def prodfast_method(self, x):
        return x


def _method_cases():
    svc = _Service()
    return {"cachetools.cachedmethod": svc.cachetools_method, "prodfast.cachedmethod": svc.prodfast_method}


CASES = {"lru_cache": _lru_cases, "cached": _cached_cases, "cachedmethod": _method_cases}
PARAMS = [
    pytest.param(group, name, id=f"{group}-{name}")
    for group, make in CASES.items()
    for name in make()
]


def _hits(fn):
    def run():
        for k in KEYS:
            fn(k)

    return run


@pytest.mark.parametrize(("group", "name"), PARAMS)
def test_decorator_hit(benchmark, group, name):
    fn = CASES[group]()[name]
    for k in KEYS[:100]:
        assert fn(k) == k  # the misses that fill the cache
    benchmark.group = f"decorator hit: {group} ({prodfast.BACKEND})"
    benchmark.extra_info.update(group=group, contender=name, batch=BATCH)
    benchmark(_hits(fn))
    assert all(fn(k) == k for k in KEYS[:100])
