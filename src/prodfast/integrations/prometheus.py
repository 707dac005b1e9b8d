"""Export a CallbackManager's metrics to Prometheus: histograms by call attributes, and quantiles.

One process::

    from prometheus_client import REGISTRY
    from prodfast.integrations.prometheus import PrometheusCollector

    REGISTRY.register(PrometheusCollector(manager))

Several worker processes (prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``
set before the workers start): each worker writes its manager's aggregate into that directory
and the scrape reads every worker's::

    # in each worker, once (e.g. at app start-up)
    writer = MultiProcessWriter(manager)          # flushes every second and at exit

    # in the process that serves /metrics
    registry = multiprocess_registry()            # the documented registry, plus prodfast's sketches
    generate_latest(registry)

The histograms go into prometheus_client's own multiprocess files, so the documented
``MultiProcessCollector`` merges them like its own (bucket counts and sums added over the
workers; a dead worker's counts are kept, as prometheus_client keeps its counters'); the
quantile sketches go into prodfast's files beside them, merged exactly at scrape time by
:class:`MultiProcessSketchCollector` (which :func:`multiprocess_registry` registers with
prometheus_client's collector). A worker's numbers reach the directory at its next flush
(``interval`` seconds, at most; ``writer.flush()`` forces one).

Names follow the OpenTelemetry GenAI semantic conventions, translated the way the
OpenTelemetry-to-Prometheus compatibility rules do (``.`` -> ``_``, a unit becomes a suffix,
an annotation unit in braces adds none, counters get ``_total``):

===================================================  ============================================
OpenTelemetry                                        Prometheus
===================================================  ============================================
``gen_ai.client.operation.duration`` (``s``)         ``gen_ai_client_operation_duration_seconds``
                                                     histogram; failed calls too, by ``error_type``
``gen_ai.client.operation.time_to_first_chunk``      ``..._time_to_first_chunk_seconds`` histogram
``gen_ai.client.operation.time_per_output_chunk``    ``..._time_per_output_chunk_seconds`` histogram
``gen_ai.client.token.usage`` (``{token}``)          ``gen_ai_client_token_usage`` histogram, by
                                                     ``gen_ai_token_type`` = ``input``/``output``
(the sketch of each histogram)                       ``<histogram>_quantile{quantile="0.5"}`` gauge
                                                     (also 0.95, 0.99)
(calls; failed calls)                                ``gen_ai_client_operations_total``,
                                                     ``gen_ai_client_operation_errors_total``
===================================================  ============================================

Every series is labelled with its call's attributes (``gen_ai_operation_name``,
``gen_ai_provider_name``, ``gen_ai_request_model``, ``gen_ai_response_model``, ``error_type``;
see :mod:`prodfast.monitor.series`), the overflow set with ``otel_metric_overflow="true"``.
The buckets are the GenAI recommended boundaries, with exact counts. The quantiles are
:class:`~prodfast.QuantileSketch` estimates, within its relative accuracy (1%).
"""

from __future__ import annotations

import atexit
import glob
import json
import logging
import math
import os
import re
import struct
import threading
import time
import weakref
from collections.abc import Mapping
from itertools import accumulate, repeat

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client import generate_latest as _generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.samples import Sample
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "prodfast.integrations.prometheus needs prometheus_client: "
        "pip install 'prodfast[prometheus]'"
    ) from exc

from .._backend import impl
from ..monitor import CallbackManager
from ..monitor.series import OVERFLOW_KEY

__all__ = [
    "PrometheusCollector",
    "MultiProcessWriter",
    "MultiProcessSketchCollector",
    "multiprocess_registry",
    "prometheus_name",
    "OPERATION_DURATION",
    "TIME_TO_FIRST_CHUNK",
    "TIME_PER_OUTPUT_CHUNK",
    "TOKEN_USAGE",
    "OPERATION_ERRORS",
    "OPERATIONS",
]

logger = logging.getLogger("prodfast.integrations.prometheus")

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
TIME_PER_OUTPUT_CHUNK = prometheus_name("gen_ai.client.operation.time_per_output_chunk", "s")
TOKEN_USAGE = prometheus_name("gen_ai.client.token.usage", "{token}")
OPERATION_ERRORS = "gen_ai_client_operation_errors"  # exported with the counter's _total
OPERATIONS = "gen_ai_client_operations"
_TOKEN_TYPE = prometheus_name("gen_ai.token.type")
_ERROR_TYPE = prometheus_name("error.type")
_QUANTILES = ((0.5, "0.5"), (0.95, "0.95"), (0.99, "0.99"))

_SERIES_LABELS = tuple(prometheus_name(a) for a in (
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
    "gen_ai.response.model", "error.type",
))  # fmt: skip
_RESERVED = frozenset(_SERIES_LABELS) | {_TOKEN_TYPE, "quantile", "le", "otel_metric_overflow"}

_HELP = {
    OPERATION_DURATION: "GenAI operation duration (gen_ai.client.operation.duration).",
    TIME_TO_FIRST_CHUNK: "Time to the first streamed chunk "
                         "(gen_ai.client.operation.time_to_first_chunk).",
    TIME_PER_OUTPUT_CHUNK: "Time per output chunk after the first "
                           "(gen_ai.client.operation.time_per_output_chunk).",
    TOKEN_USAGE: "Number of input and output tokens used (gen_ai.client.token.usage).",
    OPERATIONS: "Finished GenAI operations, failed ones included.",
    OPERATION_ERRORS: "Failed GenAI operations (error.type).",
}  # fmt: skip
_QUANTILE_HELP = " Quantile estimate of the same values (prodfast QuantileSketch)."


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
        if label in _RESERVED or label in out:
            raise ValueError(
                f"{name} key {key!r} maps to a label name already in use: {label!r} (the "
                f"per-call attributes come from each call: track(), instrument(), the manager)"
            )
        out[label] = str(value)
    return out


def _series_labels(key, constant):
    """The labels of a series: the constant ones and the call attributes it has."""
    labels = dict(constant)
    if key == OVERFLOW_KEY:
        labels["otel_metric_overflow"] = "true"
        return labels
    for label, value in zip(_SERIES_LABELS, key, strict=True):
        if value is not None:
            labels[label] = value
    return labels


def _le_strings(bounds):
    return tuple(floatToGoString(b) for b in bounds) + ("+Inf",)


_LE_CACHE: dict[tuple, tuple] = {}


def _les(bounds):
    les = _LE_CACHE.get(bounds)
    if les is None:
        les = _LE_CACHE[bounds] = _le_strings(bounds)
    return les


def _histograms_of(series):
    """``(family name, extra labels, histogram, always)`` for each histogram of a series."""
    return (
        (OPERATION_DURATION, None, series.duration, True),
        (TIME_TO_FIRST_CHUNK, None, series.time_to_first_chunk, False),
        (TIME_PER_OUTPUT_CHUNK, None, series.time_per_output_chunk, False),
        (TOKEN_USAGE, "input", series.input_tokens, False),
        (TOKEN_USAGE, "output", series.output_tokens, False),
    )


_HISTOGRAM_FAMILIES = (OPERATION_DURATION, TIME_TO_FIRST_CHUNK, TIME_PER_OUTPUT_CHUNK, TOKEN_USAGE)


def _new_families():
    hist = {name: Metric(name, _HELP[name], "histogram") for name in _HISTOGRAM_FAMILIES}
    quant = {name: Metric(name + "_quantile", _HELP[name] + _QUANTILE_HELP, "gauge")
             for name in _HISTOGRAM_FAMILIES}  # fmt: skip
    return hist, quant


# Sample(name, labels, value) is built as tuple.__new__(Sample, (name, labels, value) + _REST),
# without the named tuple's keyword-defaults wrapper: a scrape of 100 attribute sets makes
# thousands of them
_REST = (None,) * (len(Sample._fields) - 3)  # timestamp, exemplar, ...: none
_new = tuple.__new__
_SAMPLE = repeat(Sample)
_NONES = (repeat(None),) * len(_REST)


def _histogram_samples(name, labels, h, les_labels):
    """The ``_bucket`` (cumulative), ``_count`` and ``_sum`` samples of ``h``; ``les_labels``:
    the bucket samples' label dicts (``labels`` with each ``le``), built once per series."""
    # zip builds each sample's fields as a tuple in C and tuple.__new__ makes the Sample of it:
    # no bytecode runs per bucket
    samples = list(map(_new, _SAMPLE, zip(repeat(name + "_bucket"), les_labels,
                                          map(float, accumulate(h.counts)), *_NONES)))
    samples.append(_new(Sample, (name + "_count", labels, float(h.count), *_REST)))
    samples.append(_new(Sample, (name + "_sum", labels, float(h.sum), *_REST)))
    return samples


def _quantile_samples(name, q_labels, values):
    return list(map(_new, _SAMPLE, zip(repeat(name), q_labels, values, *_NONES)))


def _with_each(labels, name, texts):
    return [{**labels, name: text} for text in texts]


_Q_TEXTS = tuple(text for _, text in _QUANTILES)


def _add_quantiles(family, labels, values):
    family.samples += _quantile_samples(family.name, _with_each(labels, "quantile", _Q_TEXTS),
                                        values)  # fmt: skip


class _Metrics:
    """A collector of the given metric families, for prometheus_client's ``generate_latest``."""

    __slots__ = ("metrics",)

    def __init__(self, *metrics):
        self.metrics = metrics

    def collect(self):
        return self.metrics


def _text_of(*metrics):
    """What prometheus_client's ``generate_latest`` writes for ``metrics``, as str."""
    return _generate_latest(_Metrics(*metrics)).decode("utf-8")


def _line_heads(name, typ, samples):
    """prometheus_client's text line of each of ``samples`` (all valued 0.0) up to the space
    before the value: ``name{labels}``, its own escaping and label order, read off its output."""
    family = Metric(name, "", typ)
    family.samples = samples
    lines = _text_of(family).split("\n")
    body = lines[2:-1]  # after # HELP and # TYPE; the text ends with a newline
    if len(body) != len(samples) or not all(line.endswith(" 0.0") for line in body):
        raise RuntimeError(f"unexpected prometheus_client text for {name}: {lines!r}")
    return [line[:-4] for line in body]


_HEADERS: dict[tuple, bytes] = {}


def _header(family):
    """The ``# HELP`` and ``# TYPE`` lines of a family (without samples), UTF-8."""
    key = (family.name, family.type)
    text = _HEADERS.get(key)
    if text is None:
        text = _HEADERS[key] = _generate_latest(_Metrics(family))
    return text


# Below this, a count's text in prometheus_client's exposition (floatToGoString(float(n))) is
# str(n) + ".0"; from it on, Go's exponent form.
_SMALL_COUNT = 1_000_000
_INF = math.inf


def _go_str(x):
    """floatToGoString(x) for a sum or a quantile: repr(x) for a float in (-inf, 1e6), as
    floatToGoString writes it there (NaN, the infinities and Go's exponent form from 1e6 on:
    floatToGoString itself)."""
    if type(x) is float and -_INF < x < _SMALL_COUNT:
        return repr(x)
    return floatToGoString(x)


def _pieces(heads, suffixes):
    """The fixed text around a sample group's values: ``heads[i] + " "`` before value i and
    ``suffixes[i] + "\n"`` after it, as the even items of a list whose odd items (None here)
    are the values: ``pieces[1::2] = values; "".join(pieces)``."""
    pieces = []
    for head, suffix in zip(heads, suffixes, strict=True):
        if pieces:
            pieces[-1] += head + " "
        else:
            pieces.append(head + " ")
        pieces += [None, suffix + "\n"]
    return pieces


class _Exported:
    """One histogram of one series as the last scrape exported it: its label dicts (built once,
    reused by every later scrape) and, with the numbers they were made from, its samples: the
    histogram's (reused while its counts and sum are the same) and the quantiles' (while the
    three quantiles are); for ``exposition()``, the same as text (the fixed text of its lines
    built at its first exposition). Each pair is replaced in one assignment."""

    __slots__ = ("name", "labels", "le_labels", "q_labels", "last", "q_last", "pieces", "text",
                 "q_text")  # fmt: skip

    def __init__(self, name, labels, bounds):
        self.name = name
        self.labels = labels
        self.le_labels = _with_each(labels, "le", _les(bounds))
        self.q_labels = _with_each(labels, "quantile", _Q_TEXTS)
        self.last = (None, ())  # ((counts, sum), samples)
        self.q_last = (None, ())  # (quantiles, samples)
        self.pieces = None  # (histogram lines: small counts, large counts; quantile lines)
        self.text = (None, b"")  # ((counts, sum), lines, UTF-8)
        self.q_text = (None, b"")  # (quantiles, lines)

    def samples(self, h):
        """``(histogram samples, quantile samples)`` of ``h``, reused while they are the same."""
        numbers = (h.counts, h.sum)
        last = self.last
        if numbers != last[0]:
            last = self.last = (numbers, _histogram_samples(self.name, self.labels, h,
                                                            self.le_labels))  # fmt: skip
        quantiles = h.quantiles
        q_last = self.q_last
        if quantiles != q_last[0]:
            q_last = self.q_last = (quantiles, _quantile_samples(self.name + "_quantile",
                                                                 self.q_labels, quantiles))  # fmt: skip
        return last[1], q_last[1]

    def _pieces(self):
        name = self.name
        labels = self.labels
        heads = _line_heads(name, "histogram", [
            *(_new(Sample, (name + "_bucket", le, 0.0, *_REST)) for le in self.le_labels),
            _new(Sample, (name + "_count", labels, 0.0, *_REST)),
            _new(Sample, (name + "_sum", labels, 0.0, *_REST)),
        ])  # fmt: skip
        q_heads = _line_heads(name + "_quantile", "gauge", [
            _new(Sample, (name + "_quantile", q, 0.0, *_REST)) for q in self.q_labels])
        small = _pieces(heads, [".0"] * (len(heads) - 1) + [""])  # counts as str(n) + ".0"
        self.pieces = pieces = (small, _pieces(heads, [""] * len(heads)),
                                _pieces(q_heads, [""] * len(q_heads)))  # fmt: skip
        return pieces

    def texts(self, h):
        """``(histogram lines, quantile lines)`` of ``h``, UTF-8, reused while they are the
        same numbers."""
        numbers = (h.counts, h.sum)
        text = self.text
        pieces = self.pieces or self._pieces()
        if numbers != text[0]:
            if h.count < _SMALL_COUNT:
                out = pieces[0].copy()
                out[1::2] = [*map(str, accumulate(h.counts)), str(h.count), _go_str(h.sum)]
            else:
                out = pieces[1].copy()
                out[1::2] = map(floatToGoString, (*accumulate(h.counts), h.count, h.sum))
            text = self.text = (numbers, "".join(out).encode())
        quantiles = h.quantiles
        q_text = self.q_text
        if quantiles != q_text[0]:
            out = pieces[2].copy()
            out[1::2] = map(_go_str, quantiles)
            q_text = self.q_text = (quantiles, "".join(out).encode())
        return text[1], q_text[1]


class _CounterLines:
    """The operations counter line of one series and, for a series of failed calls, the errors
    counter line: their templates, and the last lines made of them."""

    __slots__ = ("calls", "errors", "last")

    def __init__(self, labels):
        sample = [_new(Sample, (OPERATIONS + "_total", labels, 0.0, *_REST))]
        self.calls = _line_heads(OPERATIONS, "counter", sample)[0] + " "
        self.errors = None
        if _ERROR_TYPE in labels:
            sample = [_new(Sample, (OPERATION_ERRORS + "_total", labels, 0.0, *_REST))]
            self.errors = _line_heads(OPERATION_ERRORS, "counter", sample)[0] + " "
        self.last = (None, b"", b"")  # (count, calls line, errors line), UTF-8

    def texts(self, count):
        last = self.last
        if count != last[0]:
            value = (str(count) + ".0" if type(count) is int and 0 <= count < _SMALL_COUNT
                     else floatToGoString(count)) + "\n"  # fmt: skip
            errors = self.errors
            last = self.last = (count, (self.calls + value).encode(),
                                b"" if errors is None else (errors + value).encode())  # fmt: skip
        return last


class PrometheusCollector:
    """A prometheus_client custom collector for one or more CallbackManagers (one process).

    ``manager``: the manager to export; ``attributes``: constant labels for all its series
    (OpenTelemetry spelling, dots mapped to underscores, e.g. ``{"service.name": "api"}``);
    the per-call attributes cannot be among them, they come from the calls. ``add(manager,
    attributes)`` exports another manager in the same metric families; every source must use
    the same attribute keys, and different values. Register it with
    ``registry.register(collector)``.
    """

    def __init__(self, manager: CallbackManager, attributes: Mapping[str, object] | None = None):
        self._sources: list[tuple[CallbackManager, dict[str, str]]] = []
        self._exported: dict[tuple, _Exported] = {}
        self._counters: dict[tuple, _CounterLines] = {}  # exposition()'s, by series
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
        hist, quant = _new_families()
        return [*hist.values(), *quant.values(), Metric(OPERATIONS, _HELP[OPERATIONS], "counter"),
                Metric(OPERATION_ERRORS, _HELP[OPERATION_ERRORS], "counter")]

    def _entries(self):
        """This scrape's histograms: ``(series, counter key, [(name, histogram, entry), ...])``
        for each series of each source, the entries kept from the last scrape or made now;
        the collector then keeps only these (and the counter lines of these series)."""
        last = self._exported
        last_counters = self._counters
        exported = {}  # this scrape's: what no series has any more is dropped with the old dict
        counters = {}
        out = []
        for index, (manager, constant) in enumerate(self._sources):
            series_list, _ = manager.series()
            for series in series_list:
                labels = None
                hists = []
                for name, token_type, h, always in _histograms_of(series):
                    if not (always or h.count):
                        continue
                    key = (index, series.key, name, token_type)
                    entry = last.get(key)
                    if entry is None:
                        if labels is None:
                            labels = _series_labels(series.key, constant)
                        hl = labels if token_type is None else {**labels, _TOKEN_TYPE: token_type}
                        entry = _Exported(name, hl, h.bounds)
                    exported[key] = entry
                    hists.append((name, h, entry))
                key = (index, series.key)
                counter = last_counters.get(key)
                if counter is not None:
                    counters[key] = counter
                out.append((series, key, hists))
        self._exported = exported
        self._counters = counters
        return out

    def collect(self):
        """One consistent copy of every manager's series, as Prometheus metric families.

        The label dicts of a series are built at its first scrape and reused; so are the
        samples of a histogram whose counts, sum and quantiles did not change since the last
        scrape (the samples are immutable tuples, made from exactly those numbers).
        """
        hist, quant = _new_families()
        calls = Metric(OPERATIONS, _HELP[OPERATIONS], "counter")
        errors = Metric(OPERATION_ERRORS, _HELP[OPERATION_ERRORS], "counter")
        calls_samples = calls.samples
        errors_samples = errors.samples
        rest = _REST
        for series, _, hists in self._entries():
            for name, h, entry in hists:
                samples, q_samples = entry.samples(h)
                hist[name].samples += samples
                quant[name].samples += q_samples
            labels = hists[0][2].labels  # the duration's, always first: the series' own labels
            n = float(series.duration.count)
            calls_samples.append(_new(Sample, (OPERATIONS + "_total", labels, n, *rest)))
            if _ERROR_TYPE in labels:
                errors_samples.append(_new(Sample, (OPERATION_ERRORS + "_total", labels, n,
                                                    *rest)))  # fmt: skip
        return [*hist.values(), *quant.values(), calls, errors]

    def exposition(self) -> bytes:
        """The Prometheus text exposition of these metrics: byte for byte what
        prometheus_client's ``generate_latest`` writes for a registry holding only this
        collector, made from cached text.

        Each line's labels are formatted (by prometheus_client itself) at the first scrape
        that has the line, and kept; a histogram that did not change keeps its text, and one
        that did is formatted in one go. For a ``/metrics`` endpoint that also serves other
        metrics: ``generate_latest(REGISTRY) + collector.exposition()``, the collector not
        registered in ``REGISTRY``.
        """
        hist, quant = _new_families()
        calls = Metric(OPERATIONS, _HELP[OPERATIONS], "counter")
        errors = Metric(OPERATION_ERRORS, _HELP[OPERATION_ERRORS], "counter")
        hist_parts = {name: [_header(f)] for name, f in hist.items()}
        quant_parts = {name: [_header(f)] for name, f in quant.items()}
        calls_parts = [_header(calls)]
        errors_parts = [_header(errors)]
        entries = self._entries()
        counters = self._counters  # this scrape's
        for series, key, hists in entries:
            for name, h, entry in hists:
                lines, q_lines = entry.texts(h)
                hist_parts[name].append(lines)
                quant_parts[name].append(q_lines)
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = _CounterLines(hists[0][2].labels)
            _, line, error_line = counter.texts(series.duration.count)
            calls_parts.append(line)
            errors_parts.append(error_line)
        parts = [text for texts in hist_parts.values() for text in texts]
        parts += [text for texts in quant_parts.values() for text in texts]
        return b"".join([*parts, *calls_parts, *errors_parts])


# ---------------------------------------------------------------------------------------------
# several worker processes

_SKETCH_MAGIC = b"PFSKETCH1\n"
_SKETCH_GLOB = "prodfast_sketches_*.bin"
_LEN = struct.Struct("<I")


def _multiprocess_dir(path):
    if path is None:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            raise ValueError("path is None and PROMETHEUS_MULTIPROC_DIR is not set")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"path {path!r} is not a directory")
    return path


class MultiProcessWriter:
    """Writes one worker's manager into the multiprocess directory, for the scrape to merge.

    ``manager``: this worker's CallbackManager; ``path``: the directory (default:
    ``PROMETHEUS_MULTIPROC_DIR``); ``attributes``: constant labels, as for
    :class:`PrometheusCollector`; ``interval``: seconds between background flushes (None: no
    background thread, only ``flush()`` and the flush at exit). Recording costs nothing more:
    a flush copies the manager's series (as a scrape does) and writes the totals.

    Histograms and counters go to ``histogram_prodfast_<pid>.db`` and
    ``counter_prodfast_<pid>.db``, in prometheus_client's own format (its
    ``MultiProcessCollector`` merges them), the sketches to ``prodfast_sketches_<pid>.bin``
    (replaced whole on each flush). Create it in each worker process, after the fork. The
    files hold totals, so ``manager.reset()`` in a worker makes its counters go back, which
    Prometheus reads as a counter reset: leave the managers of exported workers unreset.
    """

    def __init__(self, manager: CallbackManager, path=None, *, attributes=None,
                 interval: float | None = 1.0) -> None:
        if not isinstance(manager, CallbackManager):
            raise TypeError(f"manager must be a CallbackManager, got {type(manager).__name__}")
        if interval is not None:
            if isinstance(interval, bool) or not isinstance(interval, (int, float)):
                raise TypeError(f"interval must be a number or None, got {type(interval).__name__}")
            if not (interval > 0 and math.isfinite(interval)):
                raise ValueError(f"interval must be finite and > 0, got {interval!r}")
        self._labels = _label_map(attributes)
        self._path = _multiprocess_dir(path)
        self._manager = manager
        self._pid = os.getpid()
        self._keep_files_of_an_earlier_process()
        self._lock = threading.Lock()
        self._files: dict[str, MmapedDict] = {}
        self._closed = False
        self._stop = threading.Event()
        self._thread = None
        atexit.register(_close_at_exit, weakref.ref(self))
        if interval is not None:
            self._thread = threading.Thread(target=self._run, args=(float(interval),),
                                            name="prodfast-prometheus-writer", daemon=True)
            self._thread.start()

    @property
    def path(self) -> str:
        return self._path

    def _names(self):
        pid = self._pid
        return [os.path.join(self._path, name) for name in (
            f"histogram_prodfast_{pid}.db", f"counter_prodfast_{pid}.db",
            f"prodfast_sketches_{pid}.bin")]  # fmt: skip

    def _keep_files_of_an_earlier_process(self):
        # a dead worker whose pid this process reuses: keep its totals under another name
        # (the scrape still sums them) rather than overwrite them with this worker's
        stamp = time.time_ns()
        for name in self._names():
            if os.path.exists(name):
                stem, ext = os.path.splitext(name)
                os.replace(name, f"{stem}-{stamp}{ext}")

    def _run(self, interval):
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception:  # keep flushing: one failed write must not end the worker's export
                logger.exception("prodfast: writing the multiprocess metrics failed")

    def _file(self, typ):
        f = self._files.get(typ)
        if f is None:
            name = os.path.join(self._path, f"{typ}_prodfast_{self._pid}.db")
            f = self._files[typ] = MmapedDict(name)
        return f

    def flush(self) -> None:
        """Write this worker's totals now."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the writer is closed")
            if os.getpid() != self._pid:
                raise RuntimeError("a MultiProcessWriter belongs to the process that made it")
            series_list, _ = self._manager.series(with_sketches=True)
            hist_file = self._file("histogram")
            counter_file = self._file("counter")
            blobs = []
            for series in series_list:
                labels = _series_labels(series.key, self._labels)
                names = sorted(labels)
                for name, token_type, h, always in _histograms_of(series):
                    if not (always or h.count):
                        continue
                    hl = labels if token_type is None else {**labels, _TOKEN_TYPE: token_type}
                    hn = names if token_type is None else sorted(hl)
                    values = [hl[k] for k in hn]
                    bucket = name + "_bucket"
                    for le, n in zip(_les(h.bounds), h.counts, strict=True):
                        key = mmap_key(name, bucket, hn + ["le"], values + [le], _HELP[name])
                        hist_file.write_value(key, float(n), 0.0)
                    key = mmap_key(name, name + "_sum", hn, values, _HELP[name])
                    hist_file.write_value(key, float(h.sum), 0.0)
                    blobs.append((json.dumps([name, hl], sort_keys=True).encode(), h.sketch))
                values = [labels[k] for k in names]
                n = float(series.duration.count)
                key = mmap_key(OPERATIONS, OPERATIONS + "_total", names, values, _HELP[OPERATIONS])
                counter_file.write_value(key, n, 0.0)
                if _ERROR_TYPE in labels:
                    key = mmap_key(OPERATION_ERRORS, OPERATION_ERRORS + "_total", names, values,
                                   _HELP[OPERATION_ERRORS])
                    counter_file.write_value(key, n, 0.0)
            self._write_sketches(blobs)

    def _write_sketches(self, blobs):
        parts = [_SKETCH_MAGIC, _LEN.pack(len(blobs))]
        for key, blob in blobs:
            parts += [_LEN.pack(len(key)), key, _LEN.pack(len(blob)), blob]
        final = os.path.join(self._path, f"prodfast_sketches_{self._pid}.bin")
        tmp = final + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"".join(parts))
        os.replace(tmp, final)  # a reader sees the old file or the new one, whole

    def close(self) -> None:
        """Stop the background thread and write a last time (also done at interpreter exit)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            if self._closed:
                return
        if os.getpid() == self._pid:
            self.flush()
        with self._lock:
            self._closed = True
            for f in self._files.values():
                f.close()
            self._files = {}


def _close_at_exit(ref):
    writer = ref()
    if writer is not None:
        writer.close()


def _read_sketch_file(filename):
    """``[(family name, labels, sketch bytes), ...]`` from one worker's sketch file."""
    with open(filename, "rb") as f:
        data = f.read()
    if not data.startswith(_SKETCH_MAGIC):
        raise ValueError("not a prodfast sketch file")
    pos = len(_SKETCH_MAGIC)
    out = []

    def take(n):
        nonlocal pos
        if pos + n > len(data):
            raise ValueError("truncated prodfast sketch file")
        chunk = data[pos:pos + n]
        pos += n
        return chunk

    (count,) = _LEN.unpack(take(4))
    for _ in range(count):
        (n,) = _LEN.unpack(take(4))
        name, labels = json.loads(take(n))
        (n,) = _LEN.unpack(take(4))
        out.append((name, labels, take(n)))
    if pos != len(data):
        raise ValueError("trailing bytes in a prodfast sketch file")
    return out


class MultiProcessSketchCollector:
    """The p50/p95/p99 of every worker's sketches, merged exactly, at each scrape.

    Reads every ``prodfast_sketches_<pid>.bin`` in ``path`` (default:
    ``PROMETHEUS_MULTIPROC_DIR``), a dead worker's included, and exports the
    ``<histogram>_quantile`` gauges. ``registry``: register into it now (as
    prometheus_client's ``MultiProcessCollector`` does). ``sketch_type``: the sketch class
    to read them with (default: the active backend's QuantileSketch). A file that cannot be
    read is left out of the scrape and logged.
    """

    def __init__(self, registry=None, path=None, *, sketch_type=None) -> None:
        self._path = _multiprocess_dir(path)
        self._sketch_type = impl.QuantileSketch if sketch_type is None else sketch_type
        if registry is not None:
            registry.register(self)

    def describe(self):
        return list(_new_families()[1].values())

    def collect(self):
        merged: dict[tuple, tuple] = {}
        from_bytes = self._sketch_type.from_bytes
        for filename in sorted(glob.glob(os.path.join(self._path, _SKETCH_GLOB))):
            try:
                records = [(n, lab, from_bytes(b)) for n, lab, b in _read_sketch_file(filename)]
            except (OSError, ValueError) as exc:
                logger.error("prodfast: skipping the unreadable sketch file %s: %s", filename, exc)
                continue
            for name, labels, sketch in records:
                key = (name, tuple(sorted(labels.items())))
                seen = merged.get(key)
                if seen is None:
                    merged[key] = (labels, sketch)
                else:
                    seen[1].merge(sketch)
        quant = _new_families()[1]
        for (name, _), (labels, sketch) in merged.items():
            _add_quantiles(quant[name], labels, [sketch.quantile(q) for q, _ in _QUANTILES])
        return list(quant.values())


def multiprocess_registry(path=None) -> CollectorRegistry:
    """A registry for the scrape under several workers: prometheus_client's documented
    ``MultiProcessCollector`` (histograms and counters, summed over the workers) and
    :class:`MultiProcessSketchCollector` (the merged quantiles), both over ``path`` (default:
    ``PROMETHEUS_MULTIPROC_DIR``)."""
    path = _multiprocess_dir(path)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    MultiProcessSketchCollector(registry, path)
    return registry
