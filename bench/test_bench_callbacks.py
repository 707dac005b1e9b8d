"""Monitoring (``prodfast.bench.monitoring``): one tracked call with the four stock callbacks
beside prometheus_client by hand, a streamed and an async call, the latency report, exporting
100 attribute sets.

    pytest bench/test_bench_callbacks.py --benchmark-only --benchmark-group-by=group

Every case is defined once, in ``prodfast.bench``; see bench/conftest.py for the glue.
"""

AREA = "monitoring"


def test_monitoring(bench_case, bench_run):
    bench_run(bench_case)
