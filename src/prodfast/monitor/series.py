"""Per-call dimensions: the statistics of every attribute set a manager has seen.

A call's attributes are the OpenTelemetry GenAI ones: ``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model`` (when the
response reports it) and, for a failed call, ``error.type``. Each distinct set gets a
:class:`Series`: histograms of duration, time to first chunk, time per output chunk and input
and output token usage, with exact counts per bucket (the OpenTelemetry GenAI recommended
boundaries) and a :class:`~prodfast.QuantileSketch` each for p50/p95/p99.

The number of sets is bounded (``max_attribute_sets`` of the manager, :data:`MAX_ATTRIBUTE_SETS`
by default): a call whose set would be one too many is recorded in the overflow set (attribute
``otel.metric.overflow`` = True, as the OpenTelemetry SDK names it) and counted in
``overflow_calls``.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np

from .._backend import impl

__all__ = [
    "DURATION_BUCKETS",
    "TIME_TO_FIRST_CHUNK_BUCKETS",
    "TIME_PER_OUTPUT_CHUNK_BUCKETS",
    "TOKEN_BUCKETS",
    "MAX_ATTRIBUTE_SETS",
    "OVERFLOW_ATTRIBUTES",
    "Histogram",
    "HistogramView",
    "Series",
    "SeriesView",
]

# the explicit bucket boundaries the GenAI semantic conventions recommend (upper bounds, inclusive)
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TIME_TO_FIRST_CHUNK_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TIME_PER_OUTPUT_CHUNK_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

_NAN = math.nan
_BATCH = 16  # from this many values on, record_many goes through numpy

MAX_ATTRIBUTE_SETS = 1000
OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}
OVERFLOW_KEY = ("otel.metric.overflow",)

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
ERROR_TYPE = "error.type"


def attributes_of(key):
    """The attribute dict of a series key ``(operation, provider, model, response_model,
    error_type)``; None members are left out."""
    if key == OVERFLOW_KEY:
        return dict(OVERFLOW_ATTRIBUTES)
    out = {}
    for name, value in zip((OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL, ERROR_TYPE), key, strict=True):
        if value is not None:
            out[name] = value
    return out


class Histogram:
    """Exact counts per explicit bucket, their sum, and a quantile sketch of the same values.

    ``counts[i]`` counts the values ``v`` with ``bounds[i - 1] < v <= bounds[i]`` (the last one:
    above every bound), which is both Prometheus's ``le`` and OpenTelemetry's explicit bucket
    convention. Not locked: the manager records under its own lock.
    """

    __slots__ = ("bounds", "counts", "count", "sum", "sketch", "_edges", "_read")

    def __init__(self, bounds, sketch_factory=None):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.sketch = (impl.QuantileSketch if sketch_factory is None else sketch_factory)()
        self._edges = np.asarray(bounds, dtype=np.float64)
        self._read = (0, None)  # (count, (min, max, quantiles)) as last read from the sketch

    def record(self, value):
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        self.sketch.push(value)

    def record_many(self, values):
        """``record`` each of ``values`` (a list of numbers), in one pass for long lists."""
        n = len(values)
        if n < _BATCH:
            for v in values:
                self.record(v)
            return
        arr = np.asarray(values, dtype=np.float64)
        self.sketch.push_many(arr)  # validates first: nothing recorded if it refuses
        per_bucket = np.bincount(np.searchsorted(self._edges, arr, side="left"),
                                 minlength=len(self.counts))
        self.counts = [a + b for a, b in zip(self.counts, per_bucket.tolist(), strict=True)]
        self.count += n
        self.sum += math.fsum(values)

    def view(self, with_sketch=False):
        """A frozen copy of what exporters read (see :class:`HistogramView`)."""
        count = self.count
        if not count:
            return HistogramView(self.bounds, list(self.counts), 0, 0.0, _NAN, _NAN,
                                 (_NAN, _NAN, _NAN), self.sketch.to_bytes() if with_sketch else None)
        sk = self.sketch
        read = self._read
        if read[0] != count:  # the sketch changed only if values were recorded since
            quantile = sk.quantile
            read = self._read = (count, (sk.min, sk.max,
                                         (quantile(0.5), quantile(0.95), quantile(0.99))))
        mn, mx, quantiles = read[1]
        return HistogramView(self.bounds, list(self.counts), count, self.sum, mn, mx, quantiles,
                             sk.to_bytes() if with_sketch else None)


class HistogramView:
    """A histogram as it was when read: ``bounds``, ``counts`` (per bucket, not cumulative),
    ``count``, ``sum``, ``min``, ``max``, ``quantiles`` (p50, p95, p99; NaN when empty) and
    ``sketch`` (its ``to_bytes()``, when asked for)."""

    __slots__ = ("bounds", "counts", "count", "sum", "min", "max", "quantiles", "sketch")

    def __init__(self, bounds, counts, count, total, mn, mx, quantiles, sketch):
        self.bounds = bounds
        self.counts = counts
        self.count = count
        self.sum = total
        self.min = mn
        self.max = mx
        self.quantiles = quantiles
        self.sketch = sketch

    def snapshot(self) -> dict:
        """``count, sum, min, max, p50, p95, p99, buckets`` (``buckets``: ``(bound, count)``
        pairs, not cumulative, the last bound ``inf``)."""
        p50, p95, p99 = self.quantiles
        return {
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "buckets": list(zip(self.bounds + (math.inf,), self.counts, strict=True)),
        }


class Series:
    """The statistics of one attribute set (``key``: see :func:`attributes_of`); the sketches
    come from ``sketch_factory`` (default: the active backend's QuantileSketch)."""

    __slots__ = ("key", "duration", "time_to_first_chunk", "time_per_output_chunk",
                 "input_tokens", "output_tokens")  # fmt: skip

    def __init__(self, key, sketch_factory=None):
        self.key = key
        self.duration = Histogram(DURATION_BUCKETS, sketch_factory)
        self.time_to_first_chunk = Histogram(TIME_TO_FIRST_CHUNK_BUCKETS, sketch_factory)
        self.time_per_output_chunk = Histogram(TIME_PER_OUTPUT_CHUNK_BUCKETS, sketch_factory)
        self.input_tokens = Histogram(TOKEN_BUCKETS, sketch_factory)
        self.output_tokens = Histogram(TOKEN_BUCKETS, sketch_factory)

    @property
    def attributes(self) -> dict:
        return attributes_of(self.key)

    def histograms(self):
        return (self.duration, self.time_to_first_chunk, self.time_per_output_chunk,
                self.input_tokens, self.output_tokens)  # fmt: skip

    def record_calls(self, calls):
        """Record finished calls: ``(key, duration, ttft, chunk gaps, input tokens, output
        tokens)`` tuples, the last four None when the call had none."""
        self.duration.record_many([c[1] for c in calls])
        ttft = [c[2] for c in calls if c[2] is not None]
        if ttft:
            self.time_to_first_chunk.record_many(ttft)
            gaps = [g for c in calls if c[3] for g in c[3]]
            if gaps:
                self.time_per_output_chunk.record_many(gaps)
        inputs = [c[4] for c in calls if c[4] is not None]
        if inputs:
            self.input_tokens.record_many(inputs)
            self.output_tokens.record_many([c[5] for c in calls if c[5] is not None])

    def view(self, with_sketches=False):
        """A frozen copy: a :class:`SeriesView`."""
        return SeriesView(self.key, *(h.view(with_sketches) for h in self.histograms()))


class SeriesView:
    """A series as it was when read: ``key``, ``attributes`` and one :class:`HistogramView`
    per histogram (``duration``, ``time_to_first_chunk``, ``time_per_output_chunk``,
    ``input_tokens``, ``output_tokens``)."""

    __slots__ = Series.__slots__

    def __init__(self, key, duration, ttfc, tpoc, input_tokens, output_tokens):
        self.key = key
        self.duration = duration
        self.time_to_first_chunk = ttfc
        self.time_per_output_chunk = tpoc
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens

    attributes = Series.attributes
    histograms = Series.histograms

    def snapshot(self) -> dict:
        """``attributes, calls, duration, time_to_first_chunk, time_per_output_chunk,
        input_tokens, output_tokens`` (histogram snapshots)."""
        return {
            "attributes": self.attributes,
            "calls": self.duration.count,
            "duration": self.duration.snapshot(),
            "time_to_first_chunk": self.time_to_first_chunk.snapshot(),
            "time_per_output_chunk": self.time_per_output_chunk.snapshot(),
            "input_tokens": self.input_tokens.snapshot(),
            "output_tokens": self.output_tokens.snapshot(),
        }
