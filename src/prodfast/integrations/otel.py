"""Export a CallbackManager's metrics through an OpenTelemetry MeterProvider.

::

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from prodfast.integrations.otel import OpenTelemetryBridge

    reader = PeriodicExportingMetricReader(exporter)      # OTLP, console, ...
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    OpenTelemetryBridge(manager, resource=resource).attach(reader)

Every collection of ``reader`` (periodic, or ``reader.collect()``) then carries, beside the
SDK's own metrics, the manager's data under the GenAI semantic-convention names and units, one
data point per attribute set (the attributes of :mod:`prodfast.monitor.series`):

- ``gen_ai.client.operation.duration`` (``s``): every call, failed ones with ``error.type``;
- ``gen_ai.client.operation.time_to_first_chunk`` (``s``) and
  ``gen_ai.client.operation.time_per_output_chunk`` (``s``): streamed calls;
- ``gen_ai.client.token.usage`` (``{token}``), by ``gen_ai.token.type`` = ``input``/``output``.

They are explicit-bucket histograms with the recommended boundaries (the advice of the
conventions), cumulative, with exact counts, sums, min and max, in the instrumentation scope
``prodfast``.

How: the manager aggregates every call itself (no SDK call on the recording path: the SDK's
``Histogram.record`` costs ~16 us a call) and the bridge hands OpenTelemetry the aggregate at
collection time. The SDK has no hook for pre-aggregated histograms (no ``MetricProducer``;
observable instruments are counters and gauges only), so :meth:`OpenTelemetryBridge.attach`
wraps the reader's collection: the one place that touches SDK internals.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping

try:
    from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Histogram,
        HistogramDataPoint,
        Metric,
        MetricReader,
        MetricsData,
        ResourceMetrics,
        ScopeMetrics,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "prodfast.integrations.otel needs the OpenTelemetry SDK: pip install 'prodfast[otel]'"
    ) from exc

from ..monitor import CallbackManager

__all__ = ["OpenTelemetryBridge", "OPERATION_DURATION", "TIME_TO_FIRST_CHUNK",
           "TIME_PER_OUTPUT_CHUNK", "TOKEN_USAGE"]  # fmt: skip

OPERATION_DURATION = "gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"
TOKEN_USAGE = "gen_ai.client.token.usage"

_DESCRIPTION = {
    OPERATION_DURATION: "GenAI operation duration.",
    TIME_TO_FIRST_CHUNK: "Time to receive the first chunk, measured from when the client "
                         "issues the generation request to when the first chunk is received "
                         "in the response stream.",
    TIME_PER_OUTPUT_CHUNK: "Time per output chunk, recorded for each chunk received after the "
                           "first one, measured as the time elapsed from the end of the previous "
                           "chunk to the end of the current chunk.",
    TOKEN_USAGE: "Number of input and output tokens used.",
}  # fmt: skip
_UNIT = {OPERATION_DURATION: "s", TIME_TO_FIRST_CHUNK: "s", TIME_PER_OUTPUT_CHUNK: "s",
         TOKEN_USAGE: "{token}"}  # fmt: skip
_SCOPE = InstrumentationScope("prodfast")
_ATTACHED: weakref.WeakSet = weakref.WeakSet()  # readers with a bridge


def _histograms_of(series):
    return (
        (OPERATION_DURATION, None, series.duration),
        (TIME_TO_FIRST_CHUNK, None, series.time_to_first_chunk),
        (TIME_PER_OUTPUT_CHUNK, None, series.time_per_output_chunk),
        (TOKEN_USAGE, "input", series.input_tokens),
        (TOKEN_USAGE, "output", series.output_tokens),
    )


class OpenTelemetryBridge:
    """Hands one or more CallbackManagers' aggregates to OpenTelemetry at collection time.

    ``manager``: the manager to export (``add()`` exports more, with the same metric names;
    give them different ``attributes``); ``attributes``: constant attributes added to every
    data point of this manager; ``resource``: the resource of a collection in which the SDK
    itself had nothing to report (otherwise the SDK's own resource is used; pass the
    MeterProvider's).
    """

    def __init__(self, manager: CallbackManager, *, attributes: Mapping[str, object] | None = None,
                 resource: Resource | None = None) -> None:
        if resource is not None and not isinstance(resource, Resource):
            raise TypeError(f"resource must be an opentelemetry Resource, got {type(resource).__name__}")
        self._resource = resource if resource is not None else Resource.create()
        self._start_ns = time.time_ns()
        self._sources: list[tuple[CallbackManager, dict]] = []
        self.add(manager, attributes)

    def add(self, manager: CallbackManager, attributes: Mapping[str, object] | None = None) -> None:
        """Export ``manager`` too, with its own constant ``attributes``."""
        if not isinstance(manager, CallbackManager):
            raise TypeError(f"manager must be a CallbackManager, got {type(manager).__name__}")
        if attributes is None:
            attributes = {}
        if not isinstance(attributes, Mapping):
            raise TypeError(f"attributes must be a mapping, got {type(attributes).__name__}")
        constant = {}
        for key, value in attributes.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"attributes keys must be non-empty str, got {key!r}")
            if key.startswith("gen_ai.") or key in ("error.type", "otel.metric.overflow"):
                raise ValueError(f"attributes key {key!r} is a per-call attribute: it comes from "
                                 f"each call (track(), instrument(), the manager)")
            if not isinstance(value, (str, bool, int, float)):
                raise TypeError(f"attributes[{key!r}] must be a str, bool, int or float")
            constant[key] = value
        if any(existing == constant for _, existing in self._sources):
            raise ValueError("attributes must differ from every other source's")
        self._sources.append((manager, constant))

    def metrics(self) -> list[Metric]:
        """The managers' data now, as OpenTelemetry SDK metrics (cumulative histograms)."""
        now = time.time_ns()
        start = self._start_ns
        points: dict[str, list] = {name: [] for name in _UNIT}
        bounds_lists: dict[tuple, list] = {}

        def bounds_list(bounds):
            found = bounds_lists.get(bounds)
            if found is None:
                found = bounds_lists[bounds] = list(bounds)
            return found

        for manager, constant in self._sources:
            series_list, _ = manager.series()
            for series in series_list:
                attributes = {**constant, **series.attributes}
                for name, token_type, h in _histograms_of(series):
                    if not h.count:
                        continue
                    attrs = attributes if token_type is None else {**attributes,
                                                                   "gen_ai.token.type": token_type}
                    points[name].append(HistogramDataPoint(
                        attributes=attrs, start_time_unix_nano=start, time_unix_nano=now,
                        count=h.count, sum=h.sum, bucket_counts=h.counts,
                        explicit_bounds=bounds_list(h.bounds), min=h.min, max=h.max,
                    ))  # fmt: skip
        return [
            Metric(name=name, description=_DESCRIPTION[name], unit=_UNIT[name],
                   data=Histogram(data_points=data,
                                  aggregation_temporality=AggregationTemporality.CUMULATIVE))
            for name, data in points.items() if data
        ]  # fmt: skip

    def _merge_into(self, data):
        ours = self.metrics()
        if not ours:
            return data
        scope = ScopeMetrics(scope=_SCOPE, metrics=ours, schema_url="")
        if data is None or not data.resource_metrics:
            return MetricsData(resource_metrics=[
                ResourceMetrics(resource=self._resource, scope_metrics=[scope], schema_url="")])
        first, *rest = data.resource_metrics
        first = ResourceMetrics(resource=first.resource,
                                scope_metrics=[*first.scope_metrics, scope],
                                schema_url=first.schema_url)  # fmt: skip
        return MetricsData(resource_metrics=[first, *rest])

    def attach(self, reader: MetricReader) -> None:
        """Add this bridge's metrics to every collection of ``reader``, which must already be
        registered with a MeterProvider (``MeterProvider(metric_readers=[reader])``)."""
        if not isinstance(reader, MetricReader):
            raise TypeError(f"reader must be an OpenTelemetry MetricReader, got {type(reader).__name__}")
        collect = getattr(reader, "_collect", None)
        if collect is None:
            raise ValueError("reader is not registered with a MeterProvider yet: build "
                             "MeterProvider(metric_readers=[reader]) first")
        temporality = getattr(reader, "_instrument_class_temporality", {})
        for cls, value in temporality.items():
            if issubclass(cls, HistogramInstrument) and value is not AggregationTemporality.CUMULATIVE:
                raise ValueError("the reader asks for delta histograms; prodfast exports "
                                 "cumulative ones")

        if reader in _ATTACHED:
            raise ValueError("reader already has a prodfast bridge: add() the other managers to it")

        def collect_with_prodfast(metric_reader, timeout_millis=10_000):
            return self._merge_into(collect(metric_reader, timeout_millis=timeout_millis))

        reader._set_collect_callback(collect_with_prodfast)
        _ATTACHED.add(reader)
