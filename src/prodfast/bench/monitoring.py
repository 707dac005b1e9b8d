"""Monitoring: the overhead of tracking one LLM call with prodfast's ``CallbackManager`` and the
four stock callbacks, the latency report, and exporting 100 attribute sets.

The "call" itself does nothing, so what is measured is the monitoring alone. Each prodfast case
runs over the statistics and limiter primitives of one backend ([cy] or [py]); the manager is
the same Python code for both. Peers: prometheus_client's Histogram + Counters by hand (two
clock reads, one observe, three increments; it keeps buckets, not quantiles), a bare ``with``
of a no-op context manager (the floor) and the seed's keep-every-timing report.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator

from .runner import BACKENDS, FLOOR, PEER, PRODFAST, Case, Group, Settings, Timed, expect, require

AREA = "monitoring"
RESPONSE = {
    "text": "ok",
    "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
}
CALLS = 100  # tracked calls per run
REPORT_CALLS = 10_000  # calls behind the latency report


def _callbacks():
    return require("prodfast.callbacks")


def four_stock(core):
    """The four stock callbacks over ``core``'s primitives; the gate never has to wait."""
    cb = _callbacks()
    return [
        cb.RateLimitingCallback(bucket=core.TokenBucket(1e12, 1e12)),
        cb.TimingCallback(summary_factory=core.LatencySummary),
        cb.ErrorTrackingCallback(),
        cb.TokenUsageCallback(),
    ]


def _calls_check(m, expected: int, tokens: bool = True) -> Callable[[], None]:
    def check() -> None:
        got = m.metrics()
        expect(got["calls"] == expected, f"metrics() counts {got['calls']} calls, not {expected}")
        if tokens:  # the TokenUsageCallback's count
            total = got["tokens"]["total_tokens"]
            expect(total == 42 * expected, f"{total} tokens counted, not {42 * expected}")

    return check


def _track(module: str, how: str, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        core = require(module)
        cb = _callbacks()
        if how == "no callbacks":
            m = cb.CallbackManager([])
        elif how == "attributes":
            m = cb.CallbackManager(four_stock(core), provider="openai", sketch_factory=core.QuantileSketch)
        else:
            m = cb.CallbackManager(four_stock(core))
        track = m.track
        response = {**RESPONSE, "model": "gpt-4o-2024-08-06"} if how == "attributes" else RESPONSE

        if how == "instrument":

            @m.instrument(model="gpt-4o")
            def complete(prompt):
                return response

            def run() -> None:
                for _ in range(n):
                    complete("prompt")

        elif how == "attributes":

            def run() -> None:
                for _ in range(n):
                    with track("gpt-4o", "prompt", operation="chat") as call:
                        call.set_response(response)

        else:

            def run() -> None:
                for _ in range(n):
                    with track("gpt-4o", "prompt") as call:
                        call.set_response(response)

        check = _calls_check(m, n, tokens=how != "no callbacks")
        if how == "attributes":

            def check() -> None:  # noqa: F811 - the attribute series, too
                _calls_check(m, n)()
                (series,) = m.metrics()["by_attributes"]
                model = series["attributes"].get("gen_ai.response.model")
                expect(model == "gpt-4o-2024-08-06", f"response model attribute {model!r}")

        return Timed(run, n, check)

    return setup


def _prometheus_by_hand(n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        prom = require("prometheus_client", dist="prometheus-client")
        registry = prom.CollectorRegistry()
        duration = prom.Histogram("op_duration_seconds", "d", registry=registry)
        calls = prom.Counter("op_calls", "c", registry=registry)
        tokens = prom.Counter("op_tokens", "t", ["type"], registry=registry)
        inp, out = tokens.labels("input"), tokens.labels("output")
        clock = time.perf_counter

        def run() -> None:
            for _ in range(n):
                t0 = clock()
                response = RESPONSE
                duration.observe(clock() - t0)
                calls.inc()
                usage = response["usage"]
                inp.inc(usage["prompt_tokens"])
                out.inc(usage["completion_tokens"])

        def check() -> None:
            got = registry.get_sample_value("op_calls_total")
            expect(got == n, f"the counter says {got} calls, not {n}")
            got = registry.get_sample_value("op_duration_seconds_count")
            expect(got == n, f"the histogram counts {got} calls, not {n}")

        return Timed(run, n, check)

    return setup


def _bare_with(n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        cm = contextlib.nullcontext()

        def run() -> None:
            for _ in range(n):
                with cm:
                    pass

        def check() -> None:  # the same loop over the same context manager, counted
            entered = 0
            for _ in range(n):
                with cm:
                    entered += 1
            expect(entered == n, f"entered {entered} times, not {n}")

        return Timed(run, n, check)

    return setup


def _stream(module: str, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        m = _callbacks().CallbackManager(four_stock(require(module)))
        tokens = ["tok"] * 20

        @m.instrument(model="gpt-4o")
        def stream(prompt):
            yield from tokens

        def run() -> None:
            for _ in range(n):
                for _ in stream("prompt"):
                    pass

        def check() -> None:
            got = m.metrics()
            expect(got["calls"] == n, f"metrics() counts {got['calls']} streamed calls, not {n}")
            expect(got["ttft"]["count"] == n, f"{got['ttft']['count']} first tokens timed, not {n}")

        return Timed(run, n, check)

    return setup


def _async_calls(module: str, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        m = _callbacks().CallbackManager(four_stock(require(module)))

        @m.instrument(model="gpt-4o")
        async def complete(prompt):
            return RESPONSE

        async def many() -> None:
            for _ in range(n):
                await complete("prompt")

        loop = asyncio.new_event_loop()
        return Timed(lambda: loop.run_until_complete(many()), n, _calls_check(m, n), loop.close)

    return setup


def _report(module: str) -> Callable[[], Timed]:
    def setup() -> Timed:
        m = _callbacks().CallbackManager(four_stock(require(module)))
        for _ in range(REPORT_CALLS):
            with m.track("gpt-4o") as call:
                call.set_response(RESPONSE)
        last: list = []

        def run() -> None:
            for _ in range(10):
                last[:] = [m.metrics()]

        def check() -> None:
            out = last[0]
            expect(out["calls"] == REPORT_CALLS, f"the report counts {out['calls']} calls")
            expect(out["latency"]["count"] == REPORT_CALLS, "the report's latency count is off")

        return Timed(run, 10, check)

    return setup


def _seed_report() -> Timed:
    """The seed's TimingCallback.get_stats: every timing kept, sorted for p95 on each report."""
    rng = random.Random(1)
    timings = [rng.lognormvariate(-3.0, 0.5) for _ in range(REPORT_CALLS)]
    last: list = []

    def get_stats():
        mean = sum(timings) / len(timings)
        variance = sum((x - mean) ** 2 for x in timings) / (len(timings) - 1)
        return {
            "count": len(timings),
            "mean": mean,
            "std_dev": variance**0.5,
            "min": min(timings),
            "max": max(timings),
            "p95": sorted(timings)[int(len(timings) * 0.95)],
        }

    def run() -> None:
        for _ in range(10):
            last[:] = [get_stats()]

    def check() -> None:
        out = last[0]
        expect(out["count"] == REPORT_CALLS and out["min"] <= out["p95"] <= out["max"], "bad report")

    return Timed(run, 10, check)


def hundred_sets(core):
    """A manager with 100 attribute sets (20 calls each, a few streamed)."""
    m = _callbacks().CallbackManager(four_stock(core), provider="openai", sketch_factory=core.QuantileSketch)
    for i in range(100):
        for _ in range(20):
            with m.track(f"model-{i}") as call:
                call.set_response(RESPONSE)
    for _ in range(3):
        with m.track("model-0") as call:
            call.new_token("a")
            call.new_token("b")
    return m


def _one_call_per_set(manager) -> None:
    for i in range(100):
        with manager.track(f"model-{i}") as call:
            call.set_response(RESPONSE)


def _export(module: str, how: str, changed: bool = False) -> Callable[[], Timed]:
    """One export of the 100 sets (``how``: "otel", "collect", "exposition" or "scrape", the
    last two the whole Prometheus scrape, what a /metrics endpoint costs); ``changed``: after
    one new call in each set (what a real scrape sees: every histogram changed since the last
    one), the 100 calls included."""

    def setup() -> Timed:
        manager = hundred_sets(require(module))
        last: list = []
        before = _one_call_per_set if changed else (lambda manager: None)
        if how == "otel":
            require("opentelemetry.sdk.metrics", dist="opentelemetry-sdk")
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader

            from prodfast.integrations.otel import OpenTelemetryBridge

            reader = InMemoryMetricReader()
            MeterProvider(metric_readers=[reader])
            OpenTelemetryBridge(manager).attach(reader)

            def run() -> None:
                before(manager)
                last[:] = [reader.get_metrics_data()]

            def check() -> None:
                metrics = last[0].resource_metrics[0].scope_metrics[0].metrics
                (duration,) = [x for x in metrics if x.name == "gen_ai.client.operation.duration"]
                points = len(duration.data.data_points)
                expect(points == 100, f"{points} duration series exported, not 100")

            return Timed(run, 1, check)
        prom = require("prometheus_client", dist="prometheus-client")
        from prodfast.integrations.prometheus import PrometheusCollector

        collector = PrometheusCollector(manager)
        if how == "collect":

            def run() -> None:
                before(manager)
                last[:] = [list(collector.collect())]

            def check() -> None:
                samples = sum(len(f.samples) for f in last[0])
                expect(samples > 100 * 20, f"only {samples} samples collected")

            return Timed(run, 1, check)
        registry = prom.CollectorRegistry()
        registry.register(collector)
        scrape = collector.exposition if how == "exposition" else (
            lambda: prom.generate_latest(registry))  # fmt: skip

        def run() -> None:
            before(manager)
            last[:] = [scrape()]

        def check() -> None:
            series = last[0].count(b"gen_ai_client_operation_duration_seconds_count{")
            expect(series == 100, f"{series} duration series in the scrape, not 100")
            if how == "exposition":  # what prometheus_client writes of the same numbers
                expect(last[0] == prom.generate_latest(registry),
                       "exposition() differs from generate_latest of the registry")

        return Timed(run, 1, check)

    return setup


def _calls_only(module: str) -> Callable[[], Timed]:
    def setup() -> Timed:
        manager = hundred_sets(require(module))

        def run() -> None:
            _one_call_per_set(manager)

        def check() -> None:
            count = manager.metrics()["calls"]
            expect(count >= 100 * 21, f"{count} calls counted")

        return Timed(run, 1, check)

    return setup


def groups(settings: Settings) -> Iterator[Group]:
    n = min(CALLS, settings.batch)
    cases = [Case("empty with (nullcontext)", FLOOR, _bare_with(n))]
    for tag, module in BACKENDS:
        cases += [
            Case(f"prodfast track(), 4 callbacks [{tag}]", PRODFAST, _track(module, "plain", n)),
            Case(f"prodfast track(), 4 callbacks + attributes [{tag}]", PRODFAST, _track(module, "attributes", n)),
            Case(f"prodfast instrument(), 4 callbacks [{tag}]", PRODFAST, _track(module, "instrument", n)),
        ]
    cases.append(Case("prodfast track(), no callbacks", PRODFAST, _track(BACKENDS[0][1], "no callbacks", n)))
    cases.append(Case("prometheus_client Histogram + Counters", PEER, _prometheus_by_hand(n)))
    yield Group(AREA, "one tracked call", cases, unit="call")
    yield Group(
        AREA,
        "streamed call, 20 tokens",
        [Case(f"prodfast instrument() stream [{tag}]", PRODFAST, _stream(m, n)) for tag, m in BACKENDS],
        unit="call",
    )
    yield Group(
        AREA,
        "async call",
        [Case(f"prodfast instrument() async [{tag}]", PRODFAST, _async_calls(m, n)) for tag, m in BACKENDS],
        unit="call",
    )
    yield Group(
        AREA,
        f"latency report after {REPORT_CALLS:,} calls",
        [
            *(Case(f"prodfast metrics() [{tag}]", PRODFAST, _report(m)) for tag, m in BACKENDS),
            Case("seed TimingCallback.get_stats", PEER, _seed_report),
        ],
        unit="report",
    )
    cy = BACKENDS[0][1]
    yield Group(
        AREA,
        "export 100 attribute sets",
        [
            Case("prodfast OpenTelemetry collect [cy]", PRODFAST, _export(cy, "otel")),
            Case("prodfast Prometheus collect() [cy]", PRODFAST, _export(cy, "collect")),
            Case("prodfast Prometheus exposition() [cy]", PRODFAST, _export(cy, "exposition")),
            Case("prometheus_client generate_latest of it [cy]", PEER, _export(cy, "scrape")),
        ],
        unit="export",
    )
    yield Group(
        AREA,
        "export 100 attribute sets, each changed (100 calls + export)",
        [
            Case("100 tracked calls alone [cy]", FLOOR, _calls_only(cy)),
            Case("prodfast OpenTelemetry collect [cy]", PRODFAST, _export(cy, "otel", changed=True)),
            Case("prodfast Prometheus collect() [cy]", PRODFAST, _export(cy, "collect", changed=True)),
            Case("prodfast Prometheus exposition() [cy]", PRODFAST, _export(cy, "exposition", changed=True)),
            Case("prometheus_client generate_latest of it [cy]", PEER, _export(cy, "scrape", changed=True)),
        ],
        unit="export",
    )
