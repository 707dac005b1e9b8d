"""Caches (``prodfast.bench.caches``): get-hit, get-miss, update and insert-with-eviction per
policy, prodfast's two backends beside dict, cachebox, cachetools, lru-dict, functools and the
seed's cache; and bytes per entry (``prodfast.bench.memory``).

    pytest bench/test_bench_cache.py --benchmark-only --benchmark-group-by=group
    pytest bench/test_bench_cache.py -k memory --benchmark-only   # bytes per entry at N = 1e6

The side-by-side figures of the README come from ``make bench`` (the same cases, interleaved).
"""

from __future__ import annotations

import pytest

from prodfast.bench.memory import MEMORY_BOUNDS, MEMORY_IMPLS, SIZE, measure_bytes_per_entry

AREA = "caches"


def test_caches(bench_case, bench_run):
    bench_run(bench_case)


@pytest.mark.parametrize("impl", MEMORY_IMPLS)
def test_cache_memory(benchmark, impl):
    """Bytes per entry at N=1e6 (1e4 with --benchmark-disable); the timed part is one lookup
    batch, so that the case also runs under --benchmark-only."""
    n = 10_000 if benchmark.disabled else SIZE
    res = measure_bytes_per_entry(impl, n)
    benchmark.group = f"cache memory N={n}"
    benchmark.extra_info.update(impl=impl, n=n, bytes_per_entry=round(res["bytes"], 1), **res)
    keys = list(range(1000))
    probe = dict.fromkeys(keys)
    benchmark(lambda: [probe[k] for k in keys])
    assert res["bytes"] > 0
    if impl in MEMORY_BOUNDS:
        # the bounds hold at N=1e6; at 1e4 the index table (a power of two) is fuller per entry
        slack = 0 if n == SIZE else 8
        assert res["traced"] <= MEMORY_BOUNDS[impl] + slack, res
