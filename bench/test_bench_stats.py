"""Streaming statistics, side by side: prodfast [cy] and [py] next to runstats, ddsketch,
fastdigest, prometheus_client and numpy, one group per operation.

Per-value costs: the push groups time a Python loop over PUSH_N values, so divide the
median by PUSH_N. The batch groups time one pass over the whole array.

    pytest bench/test_bench_stats.py --benchmark-only --benchmark-group-by=group \
        --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import ddsketch
import fastdigest
import numpy as np
import prometheus_client
import pytest
import runstats

PUSH_N = 1000
BIG_N = 10**7  # the compiled core and numpy; the pure-Python twin gets SMALL_N
SMALL_N = 10**5


@pytest.fixture(scope="module")
def values():
    return np.random.default_rng(42).lognormal(-3.0, 0.7, PUSH_N).tolist()


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(7)
    return {BIG_N: rng.lognormal(-3.0, 0.7, BIG_N), SMALL_N: rng.lognormal(-3.0, 0.7, SMALL_N)}


def is_compiled(core):
    return core.__name__ == "prodfast._core"


def loop(push, xs):
    def run():
        for x in xs:
            push(x)

    return run


# ---- RunningStats.push (goal: about 30 ns per value; runstats compiled ~32 ns) -------------


def test_running_stats_push(benchmark, core, values):
    benchmark.group = f"RunningStats.push x{PUSH_N}"
    rs = core.RunningStats()
    benchmark(loop(rs.push, values))
    assert rs.count >= PUSH_N


def test_runstats_statistics_push(benchmark, values):
    benchmark.group = f"RunningStats.push x{PUSH_N}"
    s = runstats.Statistics()
    benchmark(loop(s.push, values))
    assert len(s) >= PUSH_N


# ---- P2Quantile.push (goal: about 40 ns) -------------------------------------------------


def test_p2_push(benchmark, core, values):
    benchmark.group = f"quantile sketch push x{PUSH_N}"
    est = core.P2Quantile(0.99)
    benchmark(loop(est.push, values))
    assert est.count >= PUSH_N


def test_ddsketch_add(benchmark, values):
    benchmark.group = f"quantile sketch push x{PUSH_N}"
    sk = ddsketch.DDSketch()
    benchmark(loop(sk.add, values))
    assert sk.count >= PUSH_N


def test_fastdigest_update(benchmark, values):
    benchmark.group = f"quantile sketch push x{PUSH_N}"
    td = fastdigest.TDigest()
    benchmark(loop(td.update, values))
    assert td.n_values >= PUSH_N


# ---- LatencySummary.push (goal: about 85 ns; prometheus Summary.observe ~700 ns) ----------


def test_latency_summary_push(benchmark, core, values):
    benchmark.group = f"LatencySummary.push x{PUSH_N}"
    ls = core.LatencySummary()
    benchmark(loop(ls.push, values))
    assert ls.snapshot()["count"] >= PUSH_N


def test_prometheus_summary_observe(benchmark, values):
    benchmark.group = f"LatencySummary.push x{PUSH_N}"
    summary = prometheus_client.Summary(
        "bench_latency_seconds", "bench", registry=prometheus_client.CollectorRegistry()
    )
    benchmark(loop(summary.observe, values))


# ---- batches: RunningStats.push_many vs arr.mean() + arr.var() ----------------------------


def test_running_stats_push_many(benchmark, core, arrays):
    n = BIG_N if is_compiled(core) else SMALL_N
    arr = arrays[n]
    benchmark.group = f"mean+variance of n={n}"

    def run():
        rs = core.RunningStats()
        rs.push_many(arr)
        return rs

    rs = benchmark(run)
    assert rs.count == n
    assert abs(rs.mean - arr.mean()) <= 1e-12 * abs(arr.mean())


@pytest.mark.parametrize("n", [BIG_N, SMALL_N])
def test_numpy_mean_var(benchmark, arrays, n):
    arr = arrays[n]
    benchmark.group = f"mean+variance of n={n}"

    def run():
        return arr.mean(), arr.var()

    mean, _ = benchmark(run)
    assert mean > 0.0


# ---- batches: Quantiles((0.5, 0.95, 0.99)).push_many vs np.percentile ---------------------


def test_quantiles_push_many(benchmark, core, arrays):
    n = BIG_N if is_compiled(core) else SMALL_N
    arr = arrays[n]
    benchmark.group = f"p50/p95/p99 of n={n}"

    def run():
        qs = core.Quantiles((0.5, 0.95, 0.99))
        qs.push_many(arr)
        return qs

    qs = benchmark(run)
    assert qs.count == n


@pytest.mark.parametrize("n", [BIG_N, SMALL_N])
def test_numpy_percentile(benchmark, arrays, n):
    arr = arrays[n]
    benchmark.group = f"p50/p95/p99 of n={n}"
    result = benchmark(lambda: np.percentile(arr, [50, 95, 99]))
    assert result[0] < result[1] < result[2]


# ---- QuantileSketch: push, push_many beside np.percentile, merge ---------------------------
# goals (compiled): push <= 40 ns, push_many <= 5 ns per value, merge of two 1e6-value
# sketches <= 10 us; ddsketch's add ~1,100 ns, fastdigest's update ~200 ns


def test_quantile_sketch_push(benchmark, core, values):
    benchmark.group = f"quantile sketch push x{PUSH_N}"
    sk = core.QuantileSketch()
    benchmark(loop(sk.push, values))
    assert sk.count >= PUSH_N


def test_quantile_sketch_push_many(benchmark, core, arrays):
    n = BIG_N if is_compiled(core) else SMALL_N
    arr = arrays[n]
    benchmark.group = f"p50/p95/p99 of n={n}"

    def run():
        sk = core.QuantileSketch()
        sk.push_many(arr)
        return sk

    sk = benchmark(run)
    assert sk.count == n
    exact = np.quantile(arr, 0.99, method="lower")
    assert abs(sk.quantile(0.99) - exact) <= 0.01 * exact


MERGE_N = 10**6


@pytest.fixture(scope="module")
def halves():
    rng = np.random.default_rng(3)
    return rng.lognormal(-3.0, 0.7, MERGE_N), rng.lognormal(-3.0, 0.7, MERGE_N)


def test_quantile_sketch_merge(benchmark, core, halves):
    n = MERGE_N if is_compiled(core) else SMALL_N
    benchmark.group = "merge two sketches"
    a, b = core.QuantileSketch(), core.QuantileSketch()
    a.push_many(halves[0][:n])
    b.push_many(halves[1][:n])
    benchmark(a.merge, b)
    assert a.count >= 2 * n and b.count == n


def test_ddsketch_merge(benchmark, halves):
    benchmark.group = "merge two sketches"
    a, b = ddsketch.DDSketch(), ddsketch.DDSketch()
    for x in halves[0][:SMALL_N].tolist():
        a.add(x)
    for x in halves[1][:SMALL_N].tolist():
        b.add(x)
    benchmark(a.merge, b)
    assert a.count >= 2 * SMALL_N


def test_fastdigest_merge(benchmark, halves):
    benchmark.group = "merge two sketches"
    a = fastdigest.TDigest.from_values(halves[0])
    b = fastdigest.TDigest.from_values(halves[1])
    benchmark(a.merge_inplace, b)
    assert a.n_values >= 2 * MERGE_N
