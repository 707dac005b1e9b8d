"""Limiters (``prodfast.bench.limiters``): one decision, reserve() + settle(), a sliding window
already holding many calls, simulate() per decision and ``async with``, beside limits, pyrate-
limiter, aiolimiter and a pure-Python bucket.

    pytest bench/test_bench_ratelimit.py --benchmark-only --benchmark-group-by=group

Every case is defined once, in ``prodfast.bench``; see bench/conftest.py for the glue.
"""

AREA = "limiters"


def test_limiters(bench_case, bench_run):
    bench_run(bench_case)
