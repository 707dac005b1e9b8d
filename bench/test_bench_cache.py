"""Cache benchmarks: prodfast's cache classes ([cy] and [py]) beside their peers, in one run.

Operations, each timed as a loop over a fixed batch of BATCH keys (ns/op = median / BATCH):

* ``hit``          ``c[k]`` for keys in the cache (functools.lru_cache: a call that hits)
* ``get``          ``c.get(k)`` for keys in the cache (the seed's cache: ``get(k)``)
* ``miss``         ``c.get(k)`` for keys not in the cache
* ``set_existing`` ``c[k] = v`` for keys in the cache
* ``set_evict``    ``c[k] = v`` for new keys into a full cache (each one evicts the LRU item)

at N = 1e3, 1e5 and 1e6 items, with shuffled str and int keys. Peers: dict (the floor),
functools.lru_cache, cachetools, lru-dict, cachebox and the seed's OrderedDict EmbeddingCache;
FIFO, LFU, RR and TLRU (against cachebox's VTTLCache) beside the same policy of cachetools and
cachebox. Set-evict evicts by each class's own policy.
``test_cache_memory`` reports bytes per entry at N (beyond the key and value objects).

Run ``make bench`` (or ``pytest bench/test_bench_cache.py --benchmark-only
--benchmark-json=cache.json``) and ``python bench/cache_report.py cache.json`` for the ns/op
table, the speed-goal ratios and the O(1) check. With ``--benchmark-disable`` every case runs
once on a small cache, as a correctness check.
"""

from __future__ import annotations

import functools
import json
import random
import subprocess
import sys
import textwrap
from typing import Any

import cachebox
import cachetools
import lru
import pytest

from prodfast.bench.peers import EmbeddingCache

SIZES = (1_000, 100_000, 1_000_000)
KINDS = ("str", "int")
OPS = ("hit", "get", "miss", "set_existing", "set_evict")
BATCH = 1_000
SMALL_N = 2_000  # the cache size used when benchmarks are disabled (a quick correctness run)
TTL = 3600.0


# ---------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=4)
def _keyset(n: int, kind: str) -> tuple[list, list, list]:
    """(keys in the cache, BATCH absent keys, BATCH extra keys for eviction), shuffled."""
    rng = random.Random(f"{n}-{kind}")
    total = n + 2 * BATCH
    if kind == "str":
        keys = [f"user:{i:x}:embedding" for i in rng.sample(range(1 << 40), total)]
    else:
        keys = rng.sample(range(1 << 62), total)
    return keys[:n], keys[n : n + BATCH], keys[n + BATCH :]


def _batch(keys: list) -> list:
    rng = random.Random(len(keys))
    if len(keys) >= BATCH:
        return rng.sample(keys, BATCH)
    return [rng.choice(keys) for _ in range(BATCH)]


# ---------------------------------------------------------------------------- implementations

def _ttu(_key, _value, now):
    return now + TTL


# name -> (factory(core, n), operations it takes part in)
_ALL = frozenset(OPS)
IMPLS: dict[str, tuple[Any, frozenset]] = {
    "prodfast.LRUCache": (lambda core, n: core.LRUCache(n), _ALL),
    "prodfast.TTLCache": (lambda core, n: core.TTLCache(n, TTL), _ALL),
    "prodfast.FIFOCache": (lambda core, n: core.FIFOCache(n), _ALL),
    "prodfast.LFUCache": (lambda core, n: core.LFUCache(n), _ALL),
    "prodfast.RRCache": (lambda core, n: core.RRCache(n), _ALL),
    "prodfast.TLRUCache": (lambda core, n: core.TLRUCache(n, _ttu), _ALL),
    "dict": (lambda core, n: {}, frozenset({"hit", "get", "miss", "set_existing"})),
    "functools.lru_cache": (None, frozenset({"hit"})),
    "cachetools.LRUCache": (lambda core, n: cachetools.LRUCache(n), _ALL),
    "cachetools.TTLCache": (lambda core, n: cachetools.TTLCache(n, TTL), _ALL),
    "lru-dict": (lambda core, n: lru.LRU(n), _ALL),
    "cachebox.LRUCache": (lambda core, n: cachebox.LRUCache(n), _ALL),
    "cachebox.TTLCache": (lambda core, n: cachebox.TTLCache(n, TTL), _ALL),
    "cachetools.FIFOCache": (lambda core, n: cachetools.FIFOCache(n), _ALL),
    "cachetools.LFUCache": (lambda core, n: cachetools.LFUCache(n), _ALL),
    "cachetools.RRCache": (lambda core, n: cachetools.RRCache(n), _ALL),
    "cachetools.TLRUCache": (lambda core, n: cachetools.TLRUCache(n, _ttu), _ALL),
    "cachebox.FIFOCache": (lambda core, n: cachebox.FIFOCache(n), _ALL),
    "cachebox.LFUCache": (lambda core, n: cachebox.LFUCache(n), _ALL),
    "cachebox.RRCache": (lambda core, n: cachebox.RRCache(n), _ALL),
    # per-item ttl; ``c[k] = v`` stores without one (cachebox's interface)
    "cachebox.VTTLCache": (lambda core, n: cachebox.VTTLCache(n), _ALL),
    "seed.EmbeddingCache": (
        lambda core, n: EmbeddingCache(ttl=3600, max_size=n),
        frozenset({"get", "miss", "set_existing", "set_evict"}),
    ),
}
PRODFAST = [name for name in IMPLS if name.startswith("prodfast.")]
PEERS = [name for name in IMPLS if not name.startswith("prodfast.")]

_built: dict[tuple, Any] = {}


def _filled(impl: str, core, n: int, kind: str):
    """A cache of impl holding the n keys (value = key); one is kept alive at a time."""
    tag = (impl, getattr(core, "__name__", None), n, kind)
    if tag not in _built:
        _built.clear()
        keys, _, _ = _keyset(n, kind)
        factory = IMPLS[impl][0]
        if factory is None:  # functools.lru_cache: the cache lives in the wrapper
            cache = functools.lru_cache(maxsize=n)(lambda k: k)
            for k in keys:
                cache(k)
        else:
            cache = factory(core, n)
            put = cache.set if impl == "seed.EmbeddingCache" else cache.__setitem__
            for k in keys:
                put(k, k)
        _built[tag] = cache
    return _built[tag]


def _operation(impl: str, op: str, cache, n: int, kind: str):
    """(the benchmarked function, a check of one call's result)."""
    keys, absent, extra = _keyset(n, kind)
    batch = _batch(keys)
    seed = impl == "seed.EmbeddingCache"
    if op == "hit":
        if impl == "functools.lru_cache":

            def run():
                for k in batch:
                    v = cache(k)
                return v

        else:

            def run():
                for k in batch:
                    v = cache[k]
                return v

        return run, lambda v: v == batch[-1]
    if op == "get":
        get = cache.get

        def run():
            for k in batch:
                v = get(k)
            return v

        return run, lambda v: v == batch[-1]
    if op == "miss":
        get = cache.get

        def run():
            for k in absent:
                v = get(k)
            return v

        return run, lambda v: v is None
    if op == "set_existing":
        put = cache.set if seed else cache.__setitem__
        if not seed:

            def run():
                for k in batch:
                    cache[k] = k
                return len(cache)

        else:

            def run():
                for k in batch:
                    put(k, k)
                return len(cache.cache)

        if seed:  # the seed's set() evicts even when the key is present (its known bug)
            return run, lambda size: 0 < size <= n
        return run, lambda size: size == n
    # set_evict: cycle through a pool of n + BATCH keys; the cache holds the n most recently
    # inserted ones, so the next BATCH keys of the cycle are always absent.
    pool = keys + extra[:BATCH]
    state = {"pos": n}

    if seed:
        put = cache.set

        def run():
            pos = state["pos"]
            chunk = pool[pos : pos + BATCH]
            for k in chunk:
                put(k, k)
            state["pos"] = (pos + BATCH) % len(pool)
            return len(cache.cache), chunk[-1] in cache.cache

    else:

        def run():
            pos = state["pos"]
            chunk = pool[pos : pos + BATCH]
            for k in chunk:
                cache[k] = k
            state["pos"] = (pos + BATCH) % len(pool)
            return len(cache), chunk[-1] in cache

    return run, lambda res: res == (n, True)


def _cases(names):
    for n in SIZES:
        for kind in KINDS:
            for impl in names:
                for op in OPS:
                    if op in IMPLS[impl][1]:
                        yield pytest.param(impl, op, n, kind, id=f"{op}-{kind}-N={n}-{impl}")


def _run(benchmark, impl, op, n, kind, core=None):
    if benchmark.disabled:
        n = SMALL_N
    benchmark.group = f"cache {op} {kind} N={n}"
    benchmark.extra_info.update(impl=impl, op=op, kind=kind, n=n, batch=BATCH)
    cache = _filled(impl, core, n, kind)
    fn, check = _operation(impl, op, cache, n, kind)
    result = benchmark(fn)
    assert check(result), (impl, op, result)
    if op == "set_evict":  # it changed the contents: build afresh next time
        _built.clear()


@pytest.mark.parametrize(("impl", "op", "n", "kind"), list(_cases(PRODFAST)))
def test_cache_prodfast(benchmark, core, impl, op, n, kind):
    _run(benchmark, impl, op, n, kind, core)


@pytest.mark.parametrize(("impl", "op", "n", "kind"), list(_cases(PEERS)))
def test_cache_peer(benchmark, impl, op, n, kind):
    _run(benchmark, impl, op, n, kind)


# ---------------------------------------------------------------------------- memory

_MEMORY_SCRIPT = textwrap.dedent(
    """
    import gc, json, os, sys, tracemalloc
    impl, n = sys.argv[1], int(sys.argv[2])
    import functools, cachebox, cachetools, lru
    from prodfast import _core, _core_py
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    factories = {
        "prodfast.LRUCache[cy]": lambda: _core.LRUCache(n),
        "prodfast.TTLCache[cy]": lambda: _core.TTLCache(n, 3600),
        "prodfast.FIFOCache[cy]": lambda: _core.FIFOCache(n),
        "prodfast.LFUCache[cy]": lambda: _core.LFUCache(n),
        "prodfast.RRCache[cy]": lambda: _core.RRCache(n),
        "prodfast.TLRUCache[cy]": lambda: _core.TLRUCache(n, lambda k, v, now: now + 3600),
        "prodfast.LRUCache[py]": lambda: _core_py.LRUCache(n),
        "prodfast.TTLCache[py]": lambda: _core_py.TTLCache(n, 3600),
        "dict": dict,
        "cachetools.LRUCache": lambda: cachetools.LRUCache(n),
        "cachetools.TTLCache": lambda: cachetools.TTLCache(n, 3600),
        "lru-dict": lambda: lru.LRU(n),
        "cachebox.LRUCache": lambda: cachebox.LRUCache(n),
        "cachebox.TTLCache": lambda: cachebox.TTLCache(n, 3600),
        "cachebox.FIFOCache": lambda: cachebox.FIFOCache(n),
        "cachebox.LFUCache": lambda: cachebox.LFUCache(n),
        "cachebox.RRCache": lambda: cachebox.RRCache(n),
        "cachebox.VTTLCache": lambda: cachebox.VTTLCache(n),
    }
    keys = [f"user:{i:x}:embedding" for i in range(n)]
    value = "v"
    gc.collect()
    gc.disable()
    tracemalloc.start()
    r0, t0 = rss(), tracemalloc.get_traced_memory()[0]
    if impl == "functools.lru_cache":
        f = functools.lru_cache(maxsize=n)(lambda k: value)
        for k in keys:
            f(k)
    else:
        c = factories[impl]()
        for k in keys:
            c[k] = value
    t1, r1 = tracemalloc.get_traced_memory()[0], rss()
    print(json.dumps({"traced": (t1 - t0) / n, "rss": (r1 - r0) / n}))
    """
)
# the bounds on the compiled classes, in bytes per entry beyond the key and value
MEMORY_BOUNDS = {
    "prodfast.LRUCache[cy]": 56,
    "prodfast.FIFOCache[cy]": 56,
    "prodfast.RRCache[cy]": 56,
    "prodfast.LFUCache[cy]": 72,
    "prodfast.TTLCache[cy]": 72,
    "prodfast.TLRUCache[cy]": 72,
}
MEMORY_IMPLS = (
    *MEMORY_BOUNDS,
    "prodfast.LRUCache[py]",
    "prodfast.TTLCache[py]",
    "dict",
    "functools.lru_cache",
    "cachetools.LRUCache",
    "cachetools.TTLCache",
    "lru-dict",
    "cachebox.LRUCache",
    "cachebox.TTLCache",
    "cachebox.FIFOCache",
    "cachebox.LFUCache",
    "cachebox.RRCache",
    "cachebox.VTTLCache",
)


def measure_bytes_per_entry(impl: str, n: int) -> dict:
    """Bytes per entry of a cache of n str keys sharing one value, in a fresh interpreter.

    ``traced`` counts what Python's allocators hand out (tracemalloc); ``rss`` is the growth of
    the resident set, which also sees allocators Python does not trace (cachebox's Rust heap).
    ``bytes`` is the traced figure unless it missed the allocations, then the RSS one.
    """
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, impl, str(n)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    res = json.loads(out.stdout)
    res["bytes"] = res["traced"] if res["traced"] >= 1.0 else res["rss"]
    return res


@pytest.mark.parametrize("n", [SIZES[-1]])
@pytest.mark.parametrize("impl", MEMORY_IMPLS)
def test_cache_memory(benchmark, impl, n):
    """Bytes per entry at N=1e6 (1e4 with --benchmark-disable); the timed part is one lookup
    batch, so that the case also runs under --benchmark-only."""
    if benchmark.disabled:
        n = 10_000
    res = measure_bytes_per_entry(impl, n)
    benchmark.group = f"cache memory N={n}"
    benchmark.extra_info.update(impl=impl, n=n, bytes_per_entry=round(res["bytes"], 1), **res)
    keys = list(range(BATCH))
    probe = dict.fromkeys(keys)
    benchmark(lambda: [probe[k] for k in keys])
    assert res["bytes"] > 0
    if impl in MEMORY_BOUNDS:
        # the bounds hold at N=1e6; at 1e4 the index table (a power of two) is fuller per entry
        slack = 0 if n == SIZES[-1] else 8
        assert res["traced"] <= MEMORY_BOUNDS[impl] + slack, res
