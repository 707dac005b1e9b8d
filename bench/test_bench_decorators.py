"""Decorators (``prodfast.bench.decorators``): a hit through lru_cache, cached and cachedmethod
beside functools and cachetools.

    pytest bench/test_bench_decorators.py --benchmark-only --benchmark-group-by=group

Every case is defined once, in ``prodfast.bench``; see bench/conftest.py for the glue.
"""

AREA = "decorators"


def test_decorators(bench_case, bench_run):
    bench_run(bench_case)
