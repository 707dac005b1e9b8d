"""Streaming statistics (``prodfast.bench.stats``): push(x) and batch updates beside runstats,
ddsketch, fastdigest, prometheus_client and numpy.

    pytest bench/test_bench_stats.py --benchmark-only --benchmark-group-by=group

Every case is defined once, in ``prodfast.bench``; see bench/conftest.py for the glue.
"""

AREA = "stats"


def test_stats(bench_case, bench_run):
    bench_run(bench_case)
