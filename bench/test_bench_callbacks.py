"""Overhead of monitoring one LLM call: prodfast's track() with the four stock callbacks.

Goal: 2.5 us per call on the compiled core with per-call attributes; exporting 100 attribute
sets to Prometheus or OpenTelemetry within 5 ms per scrape. Each prodfast benchmark takes ``core`` so
the [cy] and [py] statistics/limiter primitives run side by side with the peers in one run;
the "call" itself does nothing, so what is measured is pure monitoring overhead.

Peers: prometheus_client's Histogram + Counter (what a service instruments by hand: two
clock reads, one observe, one or two counter increments; it keeps buckets, not quantiles)
and a bare ``with`` of a no-op context manager (the floor).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from prodfast.callbacks import (
    CallbackManager,
    ErrorTrackingCallback,
    RateLimitingCallback,
    TimingCallback,
    TokenUsageCallback,
)

RESPONSE = {"text": "ok", "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}}


def four_stock(core):
    """The four stock callbacks over ``core``'s primitives; the gate never has to wait."""
    return [
        RateLimitingCallback(bucket=core.TokenBucket(1e12, 1e12)),
        TimingCallback(summary_factory=core.LatencySummary),
        ErrorTrackingCallback(),
        TokenUsageCallback(),
    ]


@pytest.mark.benchmark(group="callbacks: one tracked call")
def test_track_four_stock_callbacks(benchmark, core):
    m = CallbackManager(four_stock(core))
    track = m.track

    def call():
        with track("gpt-4o", "prompt") as run:
            run.set_response(RESPONSE)

    benchmark(call)
    assert m.metrics()["calls"] >= 1
    assert m.metrics()["tokens"]["total_tokens"] == 42 * m.metrics()["calls"]


@pytest.mark.benchmark(group="callbacks: one tracked call")
def test_track_four_stock_callbacks_with_attributes(benchmark, core):
    m = CallbackManager(four_stock(core), provider="openai", sketch_factory=core.QuantileSketch)
    track = m.track
    response = {**RESPONSE, "model": "gpt-4o-2024-08-06"}

    def call():
        with track("gpt-4o", "prompt", operation="chat") as run:
            run.set_response(response)

    benchmark(call)
    (series,) = m.metrics()["by_attributes"]
    assert series["attributes"]["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert series["calls"] == m.metrics()["calls"] >= 1


@pytest.mark.benchmark(group="callbacks: one tracked call")
def test_instrument_sync_four_stock_callbacks(benchmark, core):
    m = CallbackManager(four_stock(core))

    @m.instrument(model="gpt-4o")
    def complete(prompt):
        return RESPONSE

    benchmark(complete, "prompt")
    assert m.metrics()["latency"]["count"] >= 1


@pytest.mark.benchmark(group="callbacks: one tracked call")
def test_track_no_callbacks(benchmark, core):
    m = CallbackManager([])

    def call():
        with m.track("gpt-4o", "prompt") as run:
            run.set_response(RESPONSE)

    benchmark(call)
    assert m.metrics()["calls"] >= 1


@pytest.mark.benchmark(group="callbacks: one tracked call")
def test_peer_prometheus_client_histogram(benchmark):
    registry = CollectorRegistry()
    duration = Histogram("op_duration_seconds", "d", registry=registry)
    calls = Counter("op_calls", "c", registry=registry)
    tokens = Counter("op_tokens", "t", ["type"], registry=registry)
    inp, out = tokens.labels("input"), tokens.labels("output")
    clock = time.perf_counter

    def call():
        t0 = clock()
        response = RESPONSE
        duration.observe(clock() - t0)
        calls.inc()
        usage = response["usage"]
        inp.inc(usage["prompt_tokens"])
        out.inc(usage["completion_tokens"])

    benchmark(call)
    assert calls._value.get() >= 1


@pytest.mark.benchmark(group="callbacks: one tracked call")
def test_peer_bare_with(benchmark):
    cm = contextlib.nullcontext()

    def call():
        with cm:
            pass

    benchmark(call)


@pytest.mark.benchmark(group="callbacks: streamed call, 20 tokens")
def test_stream_twenty_tokens(benchmark, core):
    m = CallbackManager(four_stock(core))
    tokens = ["tok"] * 20

    @m.instrument(model="gpt-4o")
    def stream(prompt):
        yield from tokens

    def call():
        for _ in stream("prompt"):
            pass

    benchmark(call)
    assert m.metrics()["ttft"]["count"] >= 1


@pytest.mark.benchmark(group="callbacks: async call")
def test_async_instrument_four_stock_callbacks(benchmark, core):
    m = CallbackManager(four_stock(core))

    @m.instrument(model="gpt-4o")
    async def complete(prompt):
        return RESPONSE

    async def hundred():
        for _ in range(100):
            await complete("prompt")

    loop = asyncio.new_event_loop()
    try:
        benchmark(lambda: loop.run_until_complete(hundred()))
    finally:
        loop.close()
    assert m.metrics()["calls"] >= 100


N_REPORT = 10_000


@pytest.mark.benchmark(group="callbacks: latency report after 10k calls")
def test_metrics_report(benchmark, core):
    m = CallbackManager(four_stock(core))
    for _ in range(N_REPORT):
        with m.track("gpt-4o") as run:
            run.set_response(RESPONSE)
    out = benchmark(m.metrics)
    assert out["calls"] == N_REPORT and out["latency"]["count"] == N_REPORT


@pytest.mark.benchmark(group="callbacks: latency report after 10k calls")
def test_peer_seed_timing_stats(benchmark):
    """The seed's TimingCallback.get_stats: every timing kept, sorted for p95 on each report."""
    rng = random.Random(1)
    timings = [rng.lognormvariate(-3.0, 0.5) for _ in range(N_REPORT)]

    def get_stats():
        mean = sum(timings) / len(timings)
        variance = sum((x - mean) ** 2 for x in timings) / (len(timings) - 1)
        return {
            "mean": mean,
            "std_dev": variance**0.5,
            "min": min(timings),
            "max": max(timings),
            "p95": sorted(timings)[int(len(timings) * 0.95)],
        }

    out = benchmark(get_stats)
    assert out["min"] <= out["p95"] <= out["max"]


def hundred_sets(core):
    m = CallbackManager(four_stock(core), provider="openai", sketch_factory=core.QuantileSketch)
    rng = random.Random(3)
    for i in range(100):
        for _ in range(20):
            with m.track(f"model-{i}") as run:
                run.set_response(RESPONSE)
    assert len(m.metrics()["by_attributes"]) == 100
    for _ in range(rng.randrange(1, 5)):
        with m.track("model-0") as run:
            run.new_token("a")
            run.new_token("b")
    return m


@pytest.mark.benchmark(group="callbacks: export 100 attribute sets")
def test_prometheus_collect_100_sets(benchmark, core):
    from prodfast.integrations.prometheus import PrometheusCollector

    collector = PrometheusCollector(hundred_sets(core))
    families = benchmark(lambda: list(collector.collect()))
    assert sum(len(f.samples) for f in families) > 100 * 20


@pytest.mark.benchmark(group="callbacks: export 100 attribute sets")
def test_prometheus_scrape_text_100_sets(benchmark, core):
    from prometheus_client import generate_latest

    from prodfast.integrations.prometheus import PrometheusCollector

    registry = CollectorRegistry()
    registry.register(PrometheusCollector(hundred_sets(core)))
    text = benchmark(generate_latest, registry)
    assert text.count(b"gen_ai_client_operation_duration_seconds_count{") == 100


@pytest.mark.benchmark(group="callbacks: export 100 attribute sets")
def test_otel_collect_100_sets(benchmark, core):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from prodfast.integrations.otel import OpenTelemetryBridge

    reader = InMemoryMetricReader()
    MeterProvider(metric_readers=[reader])
    OpenTelemetryBridge(hundred_sets(core)).attach(reader)
    data = benchmark(reader.get_metrics_data)
    (duration,) = [m for m in data.resource_metrics[0].scope_metrics[0].metrics
                   if m.name == "gen_ai.client.operation.duration"]
    assert len(duration.data.data_points) == 100
