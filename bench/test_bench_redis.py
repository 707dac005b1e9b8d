"""Redis limiters (``prodfast.bench.redis_limiters``): a decision from one process and from four
sharing one key, beside pyrate-limiter and limits on the same redis-server; a leased bucket
beside the in-memory one. Skipped with the reason when no redis-server can be started.

    pytest bench/test_bench_redis.py --benchmark-only --benchmark-group-by=group

Every case is defined once, in ``prodfast.bench``; see bench/conftest.py for the glue.
"""

AREA = "redis-limiters"


def test_redis_limiters(bench_case, bench_run):
    bench_run(bench_case)
