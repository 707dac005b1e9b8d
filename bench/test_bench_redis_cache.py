"""Shared caches (``prodfast.bench.shared_caches``): a hit on TieredCache's local tier beside
LRUCache, through cached(), remote hits and misses, sync and async, beside redis-py's client-
side cache, cashews and aiocache. Skipped with the reason when no redis-server can be started.

    pytest bench/test_bench_redis_cache.py --benchmark-only --benchmark-group-by=group

Every case is defined once, in ``prodfast.bench``; see bench/conftest.py for the glue.
"""

AREA = "shared-caches"


def test_shared_caches(bench_case, bench_run):
    bench_run(bench_case)
