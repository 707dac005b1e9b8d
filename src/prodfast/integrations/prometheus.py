"""Export a CallbackManager's metrics to Prometheus, with real quantiles.

prometheus_client's own ``Summary`` exports only ``_sum`` and ``_count``; this collector
reads prodfast's streaming statistics at scrape time and writes the p50/p95/p99 estimates as
``quantile`` samples, in O(1) memory however many calls were seen::

    from prometheus_client import REGISTRY
    from prodfast.integrations.prometheus import PrometheusCollector

    REGISTRY.register(PrometheusCollector(manager, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o"}))

Names follow the OpenTelemetry GenAI semantic conventions, translated the way the
OpenTelemetry-to-Prometheus compatibility rules do, because Prometheus names and label
names may only contain ``[a-zA-Z0-9_]`` (and ``:`` in metric names):

==================================================  ==============================================
OpenTelemetry                                       Prometheus (what this collector exports)
==================================================  ==============================================
``gen_ai.client.operation.duration`` (unit ``s``)   ``gen_ai_client_operation_duration_seconds``
                                                    summary: ``{quantile="0.5|0.95|0.99"}``,
                                                    ``_sum``, ``_count``
``gen_ai.client.operation.time_to_first_chunk``     ``gen_ai_client_operation_time_to_first_chunk_seconds``
(unit ``s``; streamed calls only)                   summary, same samples
``gen_ai.client.token.usage`` (unit ``{token}``)    ``gen_ai_client_token_usage`` summary without
by ``gen_ai.token.type`` = ``input``/``output``     quantiles, ``_sum`` (tokens) and ``_count``
                                                    (calls) by label ``gen_ai_token_type``
``error.type`` attribute                            ``gen_ai_client_operation_errors_total``
                                                    counter by label ``error_type``
(calls)                                             ``gen_ai_client_operations_total`` counter
==================================================  ==============================================

The mapping: every ``.`` (and any other character Prometheus does not allow) becomes
``_``; a unit becomes a suffix (``s`` -> ``_seconds``), while an annotation unit in braces
such as ``{token}`` adds none; counters get ``_total``. Attribute keys you pass in
``attributes`` are mapped the same way (``gen_ai.request.model`` -> ``gen_ai_request_model``).

OpenTelemetry records errors as the ``error.type`` attribute of the duration histogram and
has no error metric of its own; the duration summary here covers successful calls (as
``TimingCallback`` does), so failures are exported as their own counter by ``error_type``.
The quantiles are P-square estimates (exact up to five calls) and, as with any Prometheus
summary, cannot be aggregated across instances; ``_sum`` and ``_count`` can.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

try:
    from prometheus_client.metrics_core import CounterMetricFamily, Metric, SummaryMetricFamily
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "prodfast.integrations.prometheus needs prometheus_client: "
        "pip install 'prodfast[prometheus]'"
    ) from exc

from ..monitor import CallbackManager

__all__ = ["PrometheusCollector", "prometheus_name", "OPERATION_DURATION", "TIME_TO_FIRST_CHUNK",
           "TOKEN_USAGE", "OPERATION_ERRORS", "OPERATIONS"]

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}


def prometheus_name(otel_name: str, unit: str = "") -> str:
    """The Prometheus spelling of an OpenTelemetry metric or attribute name.

    ``prometheus_name("gen_ai.client.operation.duration", "s")`` ->
    ``"gen_ai_client_operation_duration_seconds"``; ``prometheus_name("gen_ai.token.type")``
    -> ``"gen_ai_token_type"``; a unit in braces (``{token}``) adds no suffix.
    """
    if not isinstance(otel_name, str) or not otel_name:
        raise TypeError("otel_name must be a non-empty str")
    name = _INVALID.sub("_", otel_name)
    if name[0].isdigit():
        name = "_" + name
    if unit and not unit.startswith("{"):
        suffix = _UNIT_SUFFIX.get(unit, _INVALID.sub("_", unit))
        if not name.endswith("_" + suffix):
            name += "_" + suffix
    return name


OPERATION_DURATION = prometheus_name("gen_ai.client.operation.duration", "s")
TIME_TO_FIRST_CHUNK = prometheus_name("gen_ai.client.operation.time_to_first_chunk", "s")
TOKEN_USAGE = prometheus_name("gen_ai.client.token.usage", "{token}")
OPERATION_ERRORS = "gen_ai_client_operation_errors"  # exported with the counter's _total
OPERATIONS = "gen_ai_client_operations"
_TOKEN_TYPE = prometheus_name("gen_ai.token.type")
_ERROR_TYPE = prometheus_name("error.type")
_QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))


def _label_map(attributes, name="attributes"):
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(attributes).__name__}")
    out = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{name} keys must be non-empty str, got {key!r}")
        label = prometheus_name(key)
        if label.startswith("__"):
            raise ValueError(f"{name} key {key!r} maps to a reserved label name {label!r}")
        if label in (_TOKEN_TYPE, _ERROR_TYPE, "quantile") or label in out:
            raise ValueError(f"{name} key {key!r} maps to a label name already in use: {label!r}")
        out[label] = str(value)
    return out


class PrometheusCollector:
    """A prometheus_client custom collector for one or more CallbackManagers.

    ``manager``: the manager to export; ``attributes``: constant OpenTelemetry attributes
    for its series (e.g. ``{"gen_ai.request.model": "gpt-4o"}``), dots mapped to
    underscores. ``add(manager, attributes)`` exports another manager in the same metric
    families; every source must use the same attribute keys, and different values.
    Register it with ``registry.register(collector)``.
    """

    def __init__(self, manager: CallbackManager, attributes: Mapping[str, object] | None = None):
        self._sources: list[tuple[CallbackManager, dict[str, str]]] = []
        self.add(manager, attributes)

    def add(self, manager: CallbackManager, attributes: Mapping[str, object] | None = None) -> None:
        """Export ``manager`` too, with its own ``attributes``."""
        if not isinstance(manager, CallbackManager):
            raise TypeError(f"manager must be a CallbackManager, got {type(manager).__name__}")
        labels = _label_map(attributes)
        if self._sources:
            keys = set(self._sources[0][1])
            if set(labels) != keys:
                raise ValueError(
                    f"attributes must have the same keys as the first source's: {sorted(keys)}"
                )
            if any(existing == labels for _, existing in self._sources):
                raise ValueError("attributes must differ from every other source's")
        self._sources.append((manager, labels))

    def describe(self):
        """The metric families (no samples), so registering does not run a collection."""
        return list(self._families([]))

    def collect(self):
        """One read of every manager's metrics, as Prometheus metric families."""
        snapshots = [(m.metrics(), labels) for m, labels in self._sources]
        return self._families(snapshots)

    def _families(self, snapshots):
        keys = sorted(self._sources[0][1])

        duration = Metric(
            OPERATION_DURATION,
            "GenAI operation duration of successful calls (gen_ai.client.operation.duration).",
            "summary",
        )
        ttft = Metric(
            TIME_TO_FIRST_CHUNK,
            "Time to the first streamed chunk (gen_ai.client.operation.time_to_first_chunk).",
            "summary",
        )
        usage = SummaryMetricFamily(
            TOKEN_USAGE,
            "Number of input and output tokens used (gen_ai.client.token.usage).",
            labels=keys + [_TOKEN_TYPE],
        )
        errors = CounterMetricFamily(
            OPERATION_ERRORS,
            "Failed GenAI operations by error type (error.type).",
            labels=keys + [_ERROR_TYPE],
        )
        calls = CounterMetricFamily(
            OPERATIONS, "Finished GenAI operations, failed ones included.", labels=keys
        )
        for metrics, labels in snapshots:
            values = [labels[k] for k in keys]
            _add_summary(duration, metrics["latency"], labels)
            _add_summary(ttft, metrics["ttft"], labels)
            tokens = metrics["tokens"]
            usage.add_metric(values + ["input"], tokens["calls"], tokens["prompt_tokens"])
            usage.add_metric(values + ["output"], tokens["calls"], tokens["completion_tokens"])
            for error_type, count in sorted(metrics["errors_by_type"].items()):
                errors.add_metric(values + [error_type], count)
            calls.add_metric(values, metrics["calls"])
        return iter((duration, ttft, usage, errors, calls))


def _add_summary(family, snapshot, labels):
    count = snapshot["count"]
    for q, key in _QUANTILES:
        family.add_sample(family.name, {**labels, "quantile": q}, snapshot[key] if count else math.nan)
    total = snapshot["mean"] * count if count else 0.0
    family.add_sample(family.name + "_sum", dict(labels), total)
    family.add_sample(family.name + "_count", dict(labels), float(count))

