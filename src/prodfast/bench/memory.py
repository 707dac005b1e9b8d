"""Bytes per cache entry, beyond the key and value objects, each contender in a fresh interpreter.

Not a timing (so not an area of ``python -m prodfast.bench``): ``pytest bench/test_bench_cache.py
-k memory --benchmark-only`` reports it per contender (``extra_info``), at N = 1e6 (1e4 with
``--benchmark-disable``), and holds the compiled classes to ``MEMORY_BOUNDS``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SIZE = 1_000_000

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


