"""prodfast.integrations.otel: the manager's data through a MeterProvider, read back with the
SDK's InMemoryMetricReader (and a PeriodicExportingMetricReader with an in-memory exporter)."""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from conftest import FakeClock
from prodfast.integrations.otel import (
    OPERATION_DURATION,
    TIME_PER_OUTPUT_CHUNK,
    TIME_TO_FIRST_CHUNK,
    TOKEN_USAGE,
    OpenTelemetryBridge,
)
from prodfast.monitor import CallbackManager
from prodfast.monitor.series import DURATION_BUCKETS, TOKEN_BUCKETS


def workload(core):
    clock = FakeClock()
    m = CallbackManager([], clock=clock, provider="openai", sketch_factory=core.QuantileSketch)
    latencies = [0.05, 0.3, 1.2, 0.7, 0.01, 6.0, 0.33]
    for i, lat in enumerate(latencies):
        clock.now = 0.0
        with m.track("gpt-4o") as run:
            if i < 3:
                clock.now = lat / 2
                run.new_token("a")
                run.new_token("b")
            clock.now = lat
            run.set_response({"model": "gpt-4o-x", "usage": {"prompt_tokens": 100 * i,
                                                             "completion_tokens": 7 * i}})
    clock.now = 0.0
    with pytest.raises(TimeoutError):
        with m.track("gpt-4o", operation="embeddings"):
            clock.now = 2.5
            raise TimeoutError
    return m, latencies


def by_name(data):
    out = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = (sm.scope.name, rm.resource, metric)
    return out


def test_in_memory_reader_sees_the_genai_histograms(core):
    m, latencies = workload(core)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    # the SDK's own instruments still work beside the bridge
    provider.get_meter("app").create_counter("app.requests").add(3)
    OpenTelemetryBridge(m, attributes={"service.name": "api"}).attach(reader)
    metrics = by_name(reader.get_metrics_data())
    assert set(metrics) == {"app.requests", OPERATION_DURATION, TIME_TO_FIRST_CHUNK,
                            TIME_PER_OUTPUT_CHUNK, TOKEN_USAGE}
    scope, _, duration = metrics[OPERATION_DURATION]
    assert scope == "prodfast" and duration.unit == "s"
    assert duration.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    points = {(p.attributes.get("gen_ai.operation.name"), p.attributes.get("error.type")): p
              for p in duration.data.data_points}
    ok = points[("chat", None)]
    assert dict(ok.attributes) == {
        "service.name": "api", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-x"}
    assert list(ok.explicit_bounds) == list(DURATION_BUCKETS)
    want = np.bincount(np.searchsorted(DURATION_BUCKETS, latencies, side="left"),
                       minlength=len(DURATION_BUCKETS) + 1)
    assert list(ok.bucket_counts) == want.tolist()
    assert ok.count == len(latencies) and ok.sum == pytest.approx(sum(latencies))
    assert (ok.min, ok.max) == (min(latencies), max(latencies))
    failed = points[("embeddings", "TimeoutError")]
    assert failed.count == 1 and failed.sum == 2.5

    _, _, tokens = metrics[TOKEN_USAGE]
    assert tokens.unit == "{token}"
    sums = {p.attributes["gen_ai.token.type"]: p for p in tokens.data.data_points}
    assert sums["input"].sum == sum(100 * i for i in range(7))
    assert sums["output"].sum == sum(7 * i for i in range(7))
    assert list(sums["input"].explicit_bounds) == list(TOKEN_BUCKETS)
    _, _, ttfc = metrics[TIME_TO_FIRST_CHUNK]
    (p,) = ttfc.data.data_points
    assert p.count == 3 and p.sum == pytest.approx(sum(latencies[:3]) / 2)
    _, _, tpoc = metrics[TIME_PER_OUTPUT_CHUNK]
    (p,) = tpoc.data.data_points
    assert p.count == 3 and p.sum == 0.0  # the two chunks of each stream came at one instant

    # cumulative: a second collection after one more call has everything, once
    with m.track("gpt-4o") as run:
        run.set_response({"model": "gpt-4o-x"})
    _, _, duration = by_name(reader.get_metrics_data())[OPERATION_DURATION]
    counts = sorted(p.count for p in duration.data.data_points)
    assert counts == [1, len(latencies) + 1]


def test_a_collection_with_nothing_from_the_sdk_uses_the_given_resource(core):
    m, _ = workload(core)
    reader = InMemoryMetricReader()
    MeterProvider(metric_readers=[reader])
    resource = Resource.create({"service.name": "bridge-only"})
    OpenTelemetryBridge(m, resource=resource).attach(reader)
    metrics = by_name(reader.get_metrics_data())
    _, got_resource, _ = metrics[OPERATION_DURATION]
    assert got_resource.attributes["service.name"] == "bridge-only"


class Collect(MetricExporter):
    def __init__(self):
        super().__init__()
        self.exported = []

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        pass


def test_periodic_reader_exports_them(core):
    m, latencies = workload(core)
    exporter = Collect()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=10**9)
    provider = MeterProvider(metric_readers=[reader])
    OpenTelemetryBridge(m).attach(reader)
    provider.force_flush()
    assert exporter.exported
    _, _, duration = by_name(exporter.exported[-1])[OPERATION_DURATION]
    assert sum(p.count for p in duration.data.data_points) == len(latencies) + 1
    provider.shutdown()


def test_bridge_checks(core):
    m, _ = workload(core)
    with pytest.raises(TypeError, match="manager"):
        OpenTelemetryBridge(object())
    with pytest.raises(ValueError, match="per-call"):
        OpenTelemetryBridge(m, attributes={"gen_ai.request.model": "x"})
    with pytest.raises(TypeError, match="attributes"):
        OpenTelemetryBridge(m, attributes=[1])
    with pytest.raises(TypeError, match="resource"):
        OpenTelemetryBridge(m, resource={"a": 1})
    bridge = OpenTelemetryBridge(m, attributes={"deployment": "a"})
    with pytest.raises(ValueError, match="differ"):
        bridge.add(m, {"deployment": "a"})
    attached = InMemoryMetricReader()
    MeterProvider(metric_readers=[attached])
    bridge.attach(attached)
    with pytest.raises(ValueError, match="already"):
        OpenTelemetryBridge(m).attach(attached)
    with pytest.raises(ValueError, match="registered"):
        bridge.attach(InMemoryMetricReader())
    with pytest.raises(TypeError, match="reader"):
        bridge.attach(object())
    delta = InMemoryMetricReader(
        preferred_temporality={HistogramInstrument: AggregationTemporality.DELTA})
    MeterProvider(metric_readers=[delta])
    with pytest.raises(ValueError, match="cumulative"):
        bridge.attach(delta)


def test_recording_makes_no_sdk_call(core, monkeypatch):
    """The SDK is reached only at collection: recording never touches it."""
    m, _ = workload(core)
    reader = InMemoryMetricReader()
    MeterProvider(metric_readers=[reader])
    bridge = OpenTelemetryBridge(m)
    bridge.attach(reader)
    calls = []
    original = bridge.metrics
    monkeypatch.setattr(bridge, "metrics", lambda: calls.append(1) or original())
    for _ in range(50):
        with m.track("gpt-4o"):
            pass
    assert calls == []
    reader.get_metrics_data()
    assert calls == [1]
