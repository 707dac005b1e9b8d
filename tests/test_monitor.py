"""prodfast.monitor: per-call dimensions, exact histograms, streams, and runs that always end.

Every manager here takes ``sketch_factory=core.QuantileSketch`` so both backends' sketches
run under the same tests.
"""

from __future__ import annotations

import ast
import asyncio
import math
import pathlib
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prodfast
from conftest import FakeClock
from prodfast import _core_py
from prodfast.monitor import (
    BaseCallback,
    CallbackManager,
    ErrorTrackingCallback,
    RateLimitingCallback,
    TimingCallback,
    TokenUsageCallback,
)
from prodfast.monitor.series import (
    DURATION_BUCKETS,
    TIME_PER_OUTPUT_CHUNK_BUCKETS,
    TOKEN_BUCKETS,
    Histogram,
)
from prodfast.monitor.usage import extract_response_model


class Recorder(BaseCallback):
    def __init__(self):
        self.events = []

    def on_llm_start(self, model, prompt, **kw):
        self.events.append(("start", kw["run_id"]))

    def on_llm_end(self, model, response, tokens_used, **kw):
        self.events.append(("end", kw["run_id"]))

    def on_llm_error(self, model, error, **kw):
        self.events.append(("error", kw["run_id"], type(error).__name__))


def manager(core, callbacks=(), **kw):
    kw.setdefault("clock", FakeClock())
    return CallbackManager(list(callbacks), sketch_factory=core.QuantileSketch, **kw)


def by_attributes(m):
    return {tuple(sorted(s["attributes"].items())): s for s in m.metrics()["by_attributes"]}


def reference_counts(bounds, values):
    """Counts per bucket, upper bound inclusive (Prometheus ``le``), by numpy."""
    idx = np.searchsorted(np.asarray(bounds, dtype=float), np.asarray(values, dtype=float),
                          side="left")
    return np.bincount(idx, minlength=len(bounds) + 1).tolist()


# -- per-call attributes


def test_attributes_from_the_call_the_response_and_the_manager(core):
    clock = FakeClock()
    m = manager(core, clock=clock, provider="openai")
    with m.track("gpt-4o", "hi") as run:
        clock.tick(0.5)
        run.set_response({"model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 3,
                                                                  "completion_tokens": 5}})
    with m.track("claude", operation="text_completion", provider="anthropic") as run:
        clock.tick(2.0)
        run.set_response(None, response_model="claude-3-5")
    with pytest.raises(KeyError):
        with m.track("gpt-4o"):
            clock.tick(0.25)
            raise KeyError("x")
    sets = by_attributes(m)
    ok = sets[(("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"),
               ("gen_ai.request.model", "gpt-4o"),
               ("gen_ai.response.model", "gpt-4o-2024-08-06"))]
    assert ok["calls"] == 1 and ok["duration"]["sum"] == 0.5
    assert ok["input_tokens"]["sum"] == 3 and ok["output_tokens"]["sum"] == 5
    claude = sets[(("gen_ai.operation.name", "text_completion"),
                   ("gen_ai.provider.name", "anthropic"), ("gen_ai.request.model", "claude"),
                   ("gen_ai.response.model", "claude-3-5"))]
    assert claude["calls"] == 1 and claude["duration"]["p50"] == pytest.approx(2.0, rel=0.01)
    assert claude["input_tokens"]["count"] == 0  # no usage reported: no token sample
    # a failed call records its duration under error.type, as OpenTelemetry specifies
    failed = sets[(("error.type", "KeyError"), ("gen_ai.operation.name", "chat"),
                   ("gen_ai.provider.name", "openai"), ("gen_ai.request.model", "gpt-4o"))]
    assert failed["calls"] == 1 and failed["duration"]["sum"] == 0.25
    out = m.metrics()
    assert out["calls"] == 3 and out["errors"] == 1 and out["overflow_calls"] == 0


def test_instrument_takes_operation_and_provider_and_reads_the_response_model(core):
    m = manager(core)

    @m.instrument(model="gpt-4o", operation="embeddings", provider="azure.ai.openai")
    def embed(prompt):
        return {"model": "text-embedding-3", "usage": {"prompt_tokens": 4, "total_tokens": 4}}

    @m.instrument(model="gpt-4o")
    def stream(prompt):
        yield {"model": "gpt-4o-mini", "delta": "a"}
        yield {"delta": "b"}

    async def astream(prompt):
        yield "x"

    embed("p")
    list(stream("p"))
    assert asyncio.run(_consume(m.instrument(model="m", provider="p")(astream))) == ["x"]
    attrs = [s["attributes"] for s in m.metrics()["by_attributes"]]
    assert attrs == [
        {"gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "azure.ai.openai",
         "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "text-embedding-3"},
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
         "gen_ai.response.model": "gpt-4o-mini"},
        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "p", "gen_ai.request.model": "m"},
    ]


async def _consume(agen_fn):
    return [x async for x in agen_fn("p")]


def test_extract_response_model_shapes():
    class Obj:
        model = "o"

    class Message:
        response_metadata = {"model_name": "lc"}

    assert extract_response_model({"model": "d"}) == "d"
    assert extract_response_model(Obj()) == "o"
    assert extract_response_model(Message()) == "lc"
    for nothing in (None, "text", b"x", [1], {"model": 3}, {"model": ""}, object()):
        assert extract_response_model(nothing) is None

    class Broken:
        @property
        def model(self):
            raise RuntimeError("no")

    assert extract_response_model(Broken()) is None


def test_bad_attributes_are_refused_naming_the_argument(core):
    with pytest.raises(TypeError, match="operation"):
        manager(core, operation=3)
    with pytest.raises(TypeError, match="provider"):
        manager(core, provider=b"x")
    with pytest.raises(TypeError, match="max_attribute_sets"):
        manager(core, max_attribute_sets=1.5)
    with pytest.raises(ValueError, match="max_attribute_sets"):
        manager(core, max_attribute_sets=0)
    with pytest.raises(TypeError, match="sketch_factory"):
        CallbackManager([], sketch_factory=3)
    m = manager(core)
    with pytest.raises(TypeError, match="operation"):
        m.track("m", operation=1)
    with pytest.raises(TypeError, match="provider"):
        m.start("m", provider=1)
    with pytest.raises(TypeError, match="operation"):
        m.instrument(model="m", operation=1)
    with m.track("m") as run:
        with pytest.raises(TypeError, match="response_model"):
            run.set_response(None, response_model=5)
    assert m.metrics()["calls"] == 1


def test_cardinality_is_capped_and_the_overflow_is_counted(core):
    m = manager(core, max_attribute_sets=3)
    for i in range(10):
        for _ in range(2):
            with m.track(f"model-{i}"):
                pass
    out = m.metrics()
    assert len(out["by_attributes"]) == 4
    assert [s["calls"] for s in out["by_attributes"]] == [2, 2, 2, 14]
    assert out["by_attributes"][-1]["attributes"] == {"otel.metric.overflow": True}
    assert out["overflow_calls"] == 14 and out["calls"] == 20
    m.reset()
    assert m.metrics()["by_attributes"] == [] and m.metrics()["overflow_calls"] == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=200.0), min_size=1, max_size=60),
       st.sampled_from(list(DURATION_BUCKETS[:4])))
def test_duration_buckets_are_exact(values, on_a_bound):
    values = values + [on_a_bound]  # a value on a bound belongs to that bound's bucket
    clock = FakeClock()
    latencies = []

    class Latency(BaseCallback):
        def on_llm_end(self, model, response, tokens_used, **kw):
            latencies.append(kw["latency"])

    m = CallbackManager([Latency()], clock=clock, sketch_factory=_core_py.QuantileSketch)
    for v in values:
        with m.track("m"):
            clock.tick(v)
        clock.now = 0.0  # so the latency is v exactly, on a bound too
    assert latencies == values
    (series,) = m.metrics()["by_attributes"]
    got = [n for _, n in series["duration"]["buckets"]]
    assert got == reference_counts(DURATION_BUCKETS, values)
    assert series["duration"]["count"] == len(values)
    assert series["duration"]["sum"] == pytest.approx(sum(values))


def test_histogram_against_numpy(core):
    rng = np.random.default_rng(7)
    values = rng.integers(0, 5_000_000, 500).tolist() + [1, 4, 16, 0]
    values += rng.lognormal(5, 3, 300).tolist()
    h = Histogram(TOKEN_BUCKETS, core.QuantileSketch)
    assert math.isnan(h.view().snapshot()["p50"]) and h.view().count == 0
    for v in values:
        h.record(v)
    view = h.view(with_sketch=True)
    assert view.counts == reference_counts(TOKEN_BUCKETS, values)
    assert view.count == len(values) and view.sum == pytest.approx(sum(values))
    arr = np.asarray(values, dtype=float)
    for q, got in zip((0.5, 0.95, 0.99), view.quantiles, strict=True):
        assert got == pytest.approx(np.quantile(arr, q, method="lower"), rel=0.0101)
    assert (view.min, view.max) == (arr.min(), arr.max())
    assert core.QuantileSketch.from_bytes(view.sketch).count == len(values)
    h.record(1.0)
    assert view.count == len(values)  # a view does not move
    # the batch path (numpy) counts exactly as the one-by-one path, bounds included
    batch = Histogram(TOKEN_BUCKETS, core.QuantileSketch)
    batch.record_many(values + list(TOKEN_BUCKETS) + [1.0])
    one = Histogram(TOKEN_BUCKETS, core.QuantileSketch)
    for v in values + list(TOKEN_BUCKETS) + [1.0]:
        one.record(v)
    assert batch.counts == one.counts and batch.count == one.count
    assert batch.sum == pytest.approx(one.sum)
    assert batch.view().quantiles == one.view().quantiles


# -- streams (item 5)


def test_stream_records_time_per_output_chunk_and_counts_chunks_not_tokens(core):
    clock = FakeClock()
    usage = TokenUsageCallback()
    m = manager(core, [usage], clock=clock)
    gaps = [0.02, 0.33, 0.06, 3.1]  # off the bounds, where float rounding cannot move them

    @m.instrument(model="m")
    def stream(prompt):
        clock.tick(0.7)
        yield " "
        for g in gaps:
            clock.tick(g)
            yield " "  # whitespace chunks: none of them is a token

    assert len(list(stream("p"))) == 5
    (series,) = m.metrics()["by_attributes"]
    tpoc = series["time_per_output_chunk"]
    assert tpoc["count"] == 4 and tpoc["sum"] == pytest.approx(sum(gaps))
    assert [n for _, n in tpoc["buckets"]] == reference_counts(TIME_PER_OUTPUT_CHUNK_BUCKETS, gaps)
    assert series["time_to_first_chunk"]["sum"] == pytest.approx(0.7)
    stats = usage.get_stats()
    assert stats["chunks"] == 5 and stats["completion_tokens"] == 0 and stats["total_tokens"] == 0
    assert series["output_tokens"]["count"] == 0
    assert m.metrics()["tokens"]["chunks"] == 5


def test_a_failed_stream_keeps_its_chunk_timings(core):
    clock = FakeClock()
    m = manager(core, clock=clock)
    with pytest.raises(RuntimeError):
        with m.track("m") as run:
            clock.tick(0.1)
            run.new_token("a")
            clock.tick(0.2)
            run.new_token("b")
            raise RuntimeError("cut")
    (series,) = m.metrics()["by_attributes"]
    assert series["attributes"]["error.type"] == "RuntimeError"
    assert series["time_to_first_chunk"]["count"] == 1
    assert series["time_per_output_chunk"]["sum"] == pytest.approx(0.2)


# -- every started call ends exactly once (issue 13)


class SlowGate(BaseCallback):
    """An async start hook that never lets a call through."""

    async def on_llm_start_async(self, model, prompt, **kw):
        await asyncio.Event().wait()


def test_a_call_cancelled_in_an_async_start_hook_ends_once_as_an_error(core):
    rec = Recorder()
    errors = ErrorTrackingCallback()
    m = manager(core, [rec, SlowGate(), errors])

    @m.instrument(model="m")
    async def call(prompt):
        return "never"

    async def tracked():
        async with m.track("m"):
            pass

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call("p"), 0.01)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(tracked(), 0.01)

    asyncio.run(main())
    kinds = [e[0] for e in rec.events]
    assert kinds == ["start", "error", "start", "error"]
    assert rec.events[0][1] == rec.events[1][1] and rec.events[1][2] == "CancelledError"
    out = m.metrics()
    assert out["calls"] == 2 and out["errors"] == 2
    assert out["errors_by_type"] == {"CancelledError": 2}
    assert errors.get_stats()["errors"] == 2
    (series,) = out["by_attributes"]
    assert series["attributes"]["error.type"] == "CancelledError" and series["calls"] == 2


def test_cancelled_while_the_rate_limit_gate_waits(core):
    bucket = core.TokenBucket(0.001, 1)
    assert bucket.try_acquire(1)  # empty: the next call would wait ~1000 s
    rec = Recorder()
    m = manager(core, [RateLimitingCallback(bucket=bucket), rec, TimingCallback(
        summary_factory=core.LatencySummary)])

    async def main():
        async def one():
            async with m.track("m"):
                pass

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(one(), 0.02)

    asyncio.run(main())
    assert [e[0] for e in rec.events] == ["error"]  # the gate refused before rec's start
    assert m.metrics()["calls"] == 1 and m.metrics()["errors_by_type"] == {"CancelledError": 1}
    assert m.metrics()["latency"]["count"] == 0


def test_a_start_hook_failing_with_raise_errors_ends_the_run(core):
    class Bad(BaseCallback):
        def on_llm_start(self, model, prompt, **kw):
            raise ValueError("bug")

    rec = Recorder()
    m = manager(core, [rec, Bad()], raise_errors=True)
    with pytest.raises(ValueError, match="bug"):
        with m.track("m"):
            pass
    assert [e[0] for e in rec.events] == ["start", "error"]
    assert m.metrics()["errors_by_type"] == {"ValueError": 1}


def test_threads_count_every_call_once(core):
    m = manager(core, clock=__import__("time").perf_counter)

    def work(i):
        for _ in range(300):
            with m.track(f"m{i % 3}"):
                pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = m.metrics()
    assert out["calls"] == 1800 == sum(s["calls"] for s in out["by_attributes"])
    assert all(s["duration"]["count"] == 600 for s in out["by_attributes"])


# -- layout (item 7)


def test_no_monitor_module_imports_the_package_root():
    root = pathlib.Path(prodfast.__file__).parent
    for path in sorted((root / "monitor").glob("*.py")) + sorted((root / "integrations").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
                assert "prodfast" not in names, f"{path.name} imports prodfast"
            elif isinstance(node, ast.ImportFrom):
                assert not (node.level == 0 and node.module == "prodfast"), path.name
                assert not (node.level == 2 and node.module is None), f"{path.name}: from .. import"
    import prodfast.callbacks as legacy
    import prodfast.monitor as monitor

    assert all(getattr(legacy, n) is getattr(monitor, n) for n in legacy.__all__)


def test_the_cap_holds_under_threads(core):
    m = manager(core, clock=__import__("time").perf_counter, max_attribute_sets=5)

    def work(i):
        for j in range(200):
            with m.track(f"m{(i * 7 + j) % 23}"):
                pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = m.metrics()
    sets = out["by_attributes"]
    assert len(sets) == 6 and sets[-1]["attributes"] == {"otel.metric.overflow": True}
    assert sets[-1]["calls"] == out["overflow_calls"]
    assert sum(s["calls"] for s in sets) == out["calls"] == 800


def test_a_sketch_factory_may_call_back_into_the_manager(core):
    seen = []

    def factory():
        if holder:
            seen.append(holder[0].metrics()["calls"])  # would deadlock under the manager's lock
        return core.QuantileSketch()

    holder = []
    m = CallbackManager([], sketch_factory=factory)
    holder.append(m)
    with m.track("a"):
        pass
    assert m.metrics()["by_attributes"][0]["calls"] == 1 and seen
    with pytest.raises(TypeError, match="push"):
        CallbackManager([], sketch_factory=dict)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]),        # model
                          st.sampled_from([None, "openai", "azure"]),   # provider (None: default)
                          st.sampled_from([None, "KeyError", "OSError"]),  # error
                          st.floats(min_value=0.0, max_value=100.0),    # duration
                          st.integers(min_value=0, max_value=3),        # chunks
                          st.one_of(st.none(), st.integers(0, 10**6))),  # usage
                max_size=40),
       st.integers(min_value=1, max_value=6))
def test_series_match_a_model(calls, cap):
    """Every attribute set's counts, sums, buckets and quantiles against a plain-Python model."""
    clock = FakeClock()
    m = CallbackManager([], clock=clock, provider="dflt", max_attribute_sets=cap,
                        sketch_factory=_core_py.QuantileSketch)
    model: dict = {}
    order: list = []
    overflow = 0
    for name, provider, error, duration, chunks, usage in calls:
        clock.now = 0.0
        key = ("chat", provider or "dflt", name, None, error)
        if key not in model and len(order) >= cap:
            key = "overflow"
            overflow += 1
        if key not in model:
            model[key] = {"duration": [], "tokens": [], "chunks": 0}
            if key != "overflow":
                order.append(key)
        try:
            with m.track(name, provider=provider) as run:
                for _ in range(chunks):
                    run.new_token("x")
                clock.now = duration
                if error:
                    raise {"KeyError": KeyError, "OSError": OSError}[error]()
                if usage is not None:
                    run.set_response(None, usage={"prompt_tokens": usage, "completion_tokens": 1})
        except (KeyError, OSError):
            pass
        model[key]["duration"].append(duration)
        if usage is not None and not error:
            model[key]["tokens"].append(usage)
        model[key]["chunks"] += max(chunks - 1, 0)
    out = m.metrics()
    assert out["overflow_calls"] == overflow
    got = out["by_attributes"]
    keys = order + (["overflow"] if "overflow" in model else [])
    assert len(got) == len(keys)
    for key, series in zip(keys, got, strict=True):
        want = model[key]
        if key == "overflow":
            assert series["attributes"] == {"otel.metric.overflow": True}
        else:
            op, provider, name, _, error = key
            assert series["attributes"] == {k: v for k, v in (
                ("gen_ai.operation.name", op), ("gen_ai.provider.name", provider),
                ("gen_ai.request.model", name), ("error.type", error)) if v is not None}
        d = series["duration"]
        assert d["count"] == len(want["duration"]) == series["calls"]
        assert d["sum"] == pytest.approx(sum(want["duration"]))
        assert [n for _, n in d["buckets"]] == reference_counts(DURATION_BUCKETS, want["duration"])
        exact = np.quantile(np.asarray(want["duration"]), 0.5, method="lower")
        assert d["p50"] == pytest.approx(exact, rel=0.0101, abs=1e-12)
        assert series["input_tokens"]["count"] == len(want["tokens"])
        assert series["input_tokens"]["sum"] == sum(want["tokens"])
        assert series["time_per_output_chunk"]["count"] == want["chunks"]


# -- a usage without output tokens (OpenAI embeddings)


def test_a_usage_without_output_tokens_records_no_output_observation(core):
    """An embeddings response reports prompt and total tokens only: its input tokens are
    recorded and no output-token observation (a chat response that reports 0 output tokens
    still records one), on every path a usage comes in by."""
    from types import SimpleNamespace

    usage_cb = TokenUsageCallback()
    seen = []

    class Usage(BaseCallback):
        def on_llm_end(self, model, response, tokens_used, **kw):
            seen.append(kw["usage"])

    m = manager(core, [usage_cb, Usage()])
    embeddings = {"usage": {"prompt_tokens": 8, "total_tokens": 8}}
    with m.track("emb") as run:  # read from the response
        run.set_response(embeddings)
    with m.track("emb") as run:  # given
        run.set_response(None, usage={"prompt_tokens": 8, "total_tokens": 8})
    with m.track("emb") as run:  # an object, Anthropic's names
        run.set_response(SimpleNamespace(usage=SimpleNamespace(input_tokens=8)))
    m.track("emb").__enter__().end(embeddings)

    @m.instrument(model="emb")
    def embed(text):
        return embeddings

    @m.instrument(model="emb")
    def stream(text):  # the usage in the last chunk, as OpenAI streams report it
        yield {"choices": []}
        yield embeddings

    @m.instrument(model="emb")
    async def aembed(text):
        return embeddings

    embed("x")
    assert len(list(stream("x"))) == 2
    asyncio.run(aembed("x"))
    with m.track("chat") as run:
        run.set_response({"usage": {"prompt_tokens": 5, "completion_tokens": 0}})
    with m.track("chat") as run:
        run.set_response({"usage": {"input_tokens": 5, "output_tokens": 2}})
    series = {s["attributes"]["gen_ai.request.model"]: s for s in m.metrics()["by_attributes"]}
    emb, chat = series["emb"], series["chat"]
    assert emb["calls"] == 7 and emb["input_tokens"]["count"] == 7
    assert emb["input_tokens"]["sum"] == 56
    assert emb["output_tokens"]["count"] == 0
    assert chat["output_tokens"]["count"] == 2 and chat["output_tokens"]["sum"] == 2
    assert chat["output_tokens"]["buckets"][0] == (1, 1)  # the reported 0, in le=1
    stats = usage_cb.get_stats()
    assert stats["prompt_tokens"] == 66 and stats["completion_tokens"] == 2
    assert stats["total_tokens"] == 68
    assert seen[:7] == [{"prompt_tokens": 8, "completion_tokens": 0, "total_tokens": 8}] * 7
    assert seen[7] == {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}


def test_prometheus_and_otel_export_no_output_sample_for_embeddings(core):
    pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    from prodfast.integrations.otel import OpenTelemetryBridge
    from prodfast.integrations.prometheus import PrometheusCollector

    m = manager(core)
    with m.track("text-embedding-3-small", operation="embeddings") as run:
        run.set_response({"usage": {"prompt_tokens": 8, "total_tokens": 8}})
    collector = PrometheusCollector(m)
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert 'gen_ai_token_type="input"' in text and 'gen_ai_token_type="output"' not in text
    assert collector.exposition().decode() == text
    reader = InMemoryMetricReader()
    MeterProvider(metric_readers=[reader])
    OpenTelemetryBridge(m).attach(reader)
    metrics = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
    (tokens,) = [x for x in metrics if x.name == "gen_ai.client.token.usage"]
    types = [p.attributes["gen_ai.token.type"] for p in tokens.data.data_points]
    assert types == ["input"]
