"""The optional integrations: the Prometheus collector and the LangChain handler.

prometheus_client and langchain-core are installed by the test set-up, so they are imported
directly; one test checks in a fresh process that prodfast works without them.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeListChatModelError,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import prodfast
from conftest import FakeClock
from prodfast.callbacks import (
    CallbackManager,
    ErrorTrackingCallback,
    RateLimitingCallback,
    TimingCallback,
    TokenUsageCallback,
)
from prodfast.integrations.langchain import AsyncProdfastCallbackHandler, ProdfastCallbackHandler
from prodfast.integrations.prometheus import (
    OPERATION_DURATION,
    TIME_PER_OUTPUT_CHUNK,
    TIME_TO_FIRST_CHUNK,
    TOKEN_USAGE,
    PrometheusCollector,
    prometheus_name,
)
from prodfast.monitor.series import DURATION_BUCKETS


def stock_manager(core, clock=None, **kwargs):
    timing = TimingCallback(summary_factory=core.LatencySummary)
    errors = ErrorTrackingCallback()
    usage = TokenUsageCallback()
    if clock is not None:
        kwargs["clock"] = clock
    m = CallbackManager([timing, errors, usage], sketch_factory=core.QuantileSketch, **kwargs)
    return m, timing, errors, usage


def scrape(*collectors):
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)
    text = generate_latest(registry).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def samples(family, name=None, **labels):
    return [
        s for s in family.samples
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]


# ---------------------------------------------------------------------------------------------
# Prometheus


def test_prometheus_names_follow_the_otel_mapping():
    assert OPERATION_DURATION == "gen_ai_client_operation_duration_seconds"
    assert TIME_TO_FIRST_CHUNK == "gen_ai_client_operation_time_to_first_chunk_seconds"
    assert TIME_PER_OUTPUT_CHUNK == "gen_ai_client_operation_time_per_output_chunk_seconds"
    assert TOKEN_USAGE == "gen_ai_client_token_usage"
    assert prometheus_name("gen_ai.client.operation.duration", "s") == OPERATION_DURATION
    assert prometheus_name("gen_ai.client.token.usage", "{token}") == TOKEN_USAGE
    assert prometheus_name("gen_ai.token.type") == "gen_ai_token_type"
    assert prometheus_name("error.type") == "error_type"
    assert prometheus_name("http.server.duration_seconds", "s") == "http_server_duration_seconds"
    assert prometheus_name("9lives-x") == "_9lives_x"
    with pytest.raises(TypeError, match="otel_name"):
        prometheus_name("")


def test_prometheus_exposition_parses_back_as_histograms_by_call_attributes(core):
    clock = FakeClock()
    m, timing, errors, usage = stock_manager(core, clock, provider="openai")
    latencies = [0.12, 0.31, 0.08, 0.55, 0.27, 0.9, 0.16, 0.41, 0.22, 0.35, 1.7, 0.05]
    seen = []
    for i, lat in enumerate(latencies):
        start = clock.now
        with m.track("gpt-4o", "p") as run:
            if i % 3 == 0:  # a streamed call
                clock.tick(lat / 4)
                run.new_token("x")
                clock.tick(lat / 4)
                run.new_token("y")
            clock.tick(lat - (lat / 2 if i % 3 == 0 else 0.0))
            run.set_response({"model": "gpt-4o-2024", "usage": {"prompt_tokens": 10 + i,
                                                                "completion_tokens": i}})
        seen.append(clock.now - start)
    for exc in (TimeoutError("t"), TimeoutError("t"), ValueError("v")):
        with pytest.raises(type(exc)):
            with m.track("gpt-4o"):
                clock.tick(0.5)
                raise exc

    collector = PrometheusCollector(m, attributes={"service.name": "api"})
    text, families = scrape(collector)
    labels = {"service_name": "api", "gen_ai_request_model": "gpt-4o",
              "gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
              "gen_ai_response_model": "gpt-4o-2024"}

    duration = families[OPERATION_DURATION]
    assert duration.type == "histogram"
    ok = [s for s in duration.samples if "error_type" not in s.labels]
    buckets = {float(s.labels["le"]): s.value for s in ok if s.name.endswith("_bucket")}
    assert list(buckets) == [*DURATION_BUCKETS, math.inf]
    for le, n in buckets.items():  # cumulative, exact
        assert n == sum(1 for v in seen if v <= le), le
    (count,) = samples(duration, OPERATION_DURATION + "_count", **labels)
    (total,) = samples(duration, OPERATION_DURATION + "_sum", **labels)
    assert count.value == len(latencies)
    assert total.value == pytest.approx(sum(latencies), rel=1e-9)
    # failed calls: their duration, labelled error_type, without a response model
    (failed,) = samples(duration, OPERATION_DURATION + "_count", error_type="TimeoutError")
    assert failed.value == 2 and "gen_ai_response_model" not in failed.labels

    quantiles = families[OPERATION_DURATION + "_quantile"]
    assert quantiles.type == "gauge"
    for q in (0.5, 0.95, 0.99):
        (s,) = samples(quantiles, quantile=str(q), **labels)
        exact = float(np.quantile(np.asarray(seen), q, method="lower"))
        assert s.value == pytest.approx(exact, rel=0.0101)

    ttft = families[TIME_TO_FIRST_CHUNK]
    (tcount,) = samples(ttft, TIME_TO_FIRST_CHUNK + "_count")
    assert tcount.value == 4
    (tsum,) = samples(ttft, TIME_TO_FIRST_CHUNK + "_sum")
    assert tsum.value == pytest.approx(sum(latencies[i] / 4 for i in range(0, 12, 3)))
    tpoc = families[TIME_PER_OUTPUT_CHUNK]
    (pcount,) = samples(tpoc, TIME_PER_OUTPUT_CHUNK + "_count")
    assert pcount.value == 4

    tokens = families[TOKEN_USAGE]
    assert tokens.type == "histogram"
    (inp,) = samples(tokens, TOKEN_USAGE + "_sum", gen_ai_token_type="input")
    (out,) = samples(tokens, TOKEN_USAGE + "_sum", gen_ai_token_type="output")
    (calls_in,) = samples(tokens, TOKEN_USAGE + "_count", gen_ai_token_type="input")
    assert (inp.value, out.value, calls_in.value) == (sum(10 + i for i in range(12)), sum(range(12)), 12)

    errs = families["gen_ai_client_operation_errors"]
    assert errs.type == "counter"
    by_type = {s.labels["error_type"]: s.value for s in errs.samples if s.name.endswith("_total")}
    assert by_type == {"TimeoutError": 2.0, "ValueError": 1.0}
    ops = families["gen_ai_client_operations"]
    assert sum(s.value for s in ops.samples if s.name.endswith("_total")) == 15
    # no OpenTelemetry dot survives in a name or label name
    for fam in families.values():
        for s in fam.samples:
            assert "." not in s.name and not any("." in k for k in s.labels)
    assert "gen_ai_client_operation_duration_seconds_bucket{" in text


def test_prometheus_without_calls_exports_empty_families(core):
    m, *_ = stock_manager(core)
    _, families = scrape(PrometheusCollector(m))
    assert all(f.samples == [] for f in families.values())


def test_prometheus_overflow_set_is_labelled(core):
    m, *_ = stock_manager(core, max_attribute_sets=2)
    for name in "abcd":
        with m.track(name):
            pass
    _, families = scrape(PrometheusCollector(m))
    counts = {s.labels.get("gen_ai_request_model", s.labels.get("otel_metric_overflow")): s.value
              for s in samples(families[OPERATION_DURATION], OPERATION_DURATION + "_count")}
    assert counts == {"a": 1, "b": 1, "true": 2}


def test_prometheus_several_managers_in_one_family(core):
    a, *_ = stock_manager(core)
    b, *_ = stock_manager(core)
    for _ in range(3):
        with a.track("a"):
            pass
    with b.track("b"):
        pass
    collector = PrometheusCollector(a, {"service.name": "a"})
    collector.add(b, {"service.name": "b"})
    _, families = scrape(collector)
    counts = {
        (s.labels["service_name"], s.labels["gen_ai_request_model"]): s.value
        for s in samples(families[OPERATION_DURATION], OPERATION_DURATION + "_count")
    }
    assert counts == {("a", "a"): 3, ("b", "b"): 1}
    with pytest.raises(ValueError, match="same keys"):
        collector.add(b, {"deployment": "x"})
    with pytest.raises(ValueError, match="differ"):
        collector.add(b, {"service.name": "a"})
    with pytest.raises(TypeError, match="manager"):
        PrometheusCollector(object())
    with pytest.raises(TypeError, match="attributes"):
        PrometheusCollector(a, ["x"])
    for per_call in ("error.type", "gen_ai.request.model", "gen_ai.provider.name"):
        with pytest.raises(ValueError, match="per-call"):
            PrometheusCollector(a, {per_call: "x"})
    with pytest.raises(ValueError, match="attributes"):
        PrometheusCollector(a, {"a.b": 1, "a_b": 2})


def test_prometheus_later_scrapes_show_new_calls_and_only_them(core):
    """A collector reuses what did not change between scrapes; each scrape is still exactly
    a fresh collector's (new calls, new sets, a reset manager, the same numbers after a reset)."""
    clock = FakeClock()
    m, *_ = stock_manager(core, clock)
    collector = PrometheusCollector(m)

    def call(model, seconds, prompt_tokens):
        with m.track(model) as run:
            clock.tick(seconds)
            run.set_response({"usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1}})

    def same_as_fresh():
        text, families = scrape(collector)
        assert text == scrape(PrometheusCollector(m))[0]
        return families

    call("a", 0.05, 3)
    call("b", 0.5, 5)
    first = same_as_fresh()
    assert same_as_fresh() == first  # nothing new: the same scrape
    call("a", 3.0, 100)
    call("c", 0.05, 1)
    later = same_as_fresh()
    count = {s.labels["gen_ai_request_model"]: s.value
             for s in samples(later[OPERATION_DURATION], OPERATION_DURATION + "_count")}
    assert count == {"a": 2, "b": 1, "c": 1}
    (top,) = samples(later[OPERATION_DURATION], OPERATION_DURATION + "_bucket",
                     gen_ai_request_model="a", le="2.56")
    assert top.value == 1
    m.reset()
    call("b", 0.05, 5)  # as many calls as before the reset, with other values
    after = same_as_fresh()
    (b,) = samples(after[OPERATION_DURATION], OPERATION_DURATION + "_bucket", le="0.08")
    assert b.value == 1 and b.labels["gen_ai_request_model"] == "b"
    assert not samples(after[OPERATION_DURATION], gen_ai_request_model="a")


def test_registering_the_collector_does_not_read_the_metrics(core):
    m, *_ = stock_manager(core)
    reads = []
    original = m.series
    m.series = lambda: reads.append(1) or original()
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(m))
    assert reads == []
    generate_latest(registry)
    assert reads == [1]


# ---------------------------------------------------------------------------------------------
# LangChain


def test_langchain_invoke_feeds_the_manager(core):
    m, timing, errors, usage = stock_manager(core)
    handler = ProdfastCallbackHandler(m)
    model = GenericFakeChatModel(messages=iter([
        AIMessage(content="hello world",
                  usage_metadata={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}),
        AIMessage(content="second",
                  usage_metadata={"input_tokens": 4, "output_tokens": 1, "total_tokens": 5},
                  response_metadata={"model_name": "fake-2024"}),
    ]))
    assert model.invoke("hi", config={"callbacks": [handler]}).content == "hello world"
    assert model.invoke("again", config={"callbacks": [handler]}).content == "second"
    # the model that answered, when the message names it, becomes gen_ai.response.model
    responded = [s["attributes"].get("gen_ai.response.model") for s in m.metrics()["by_attributes"]]
    assert sorted(responded, key=str) == [None, "fake-2024"]
    assert usage.get_stats()["prompt_tokens"] == 7
    assert usage.get_stats()["completion_tokens"] == 3
    assert usage.get_stats()["total_tokens"] == 10
    assert timing.get_stats()["count"] == 2 and timing.get_stats()["min"] >= 0.0
    assert timing.get_ttft_stats()["count"] == 0
    assert errors.get_error_rate() == 0.0
    assert handler.in_flight == 0


def test_langchain_stream_records_time_to_first_token(core):
    m, timing, _, usage = stock_manager(core)
    seen = []

    class Tokens(ErrorTrackingCallback):
        def on_llm_new_token(self, model, token, **kw):
            seen.append((model, token))

    m.add_callback(Tokens())
    handler = ProdfastCallbackHandler(m)
    model = GenericFakeChatModel(messages=iter(["two streamed words"]))
    chunks = [c.content for c in model.stream("go", config={"callbacks": [handler]})]
    assert "".join(chunks) == "two streamed words"
    assert [t for _, t in seen] == chunks
    assert {name for name, _ in seen} == {"GenericFakeChatModel"}
    assert timing.get_ttft_stats()["count"] == 1
    assert timing.get_ttft_stats()["max"] <= timing.get_stats()["max"]
    # no usage reported by this model: the streamed chunks are counted as chunks, not tokens
    assert usage.get_stats()["chunks"] == len(chunks)
    assert usage.get_stats()["completion_tokens"] == 0


def test_langchain_async_runs_and_errors(core):
    m, timing, errors, _ = stock_manager(core)
    handler = ProdfastCallbackHandler(m)
    good = FakeListChatModel(responses=["abc", "defg"])
    bad = FakeListChatModel(responses=["abcdef"], error_on_chunk_number=2)

    async def main():
        results = await asyncio.gather(
            good.ainvoke("x", config={"callbacks": [handler]}),
            good.ainvoke("y", config={"callbacks": [handler]}),
        )
        streamed = []
        with pytest.raises(FakeListChatModelError):
            async for chunk in bad.astream("z", config={"callbacks": [handler]}):
                streamed.append(chunk.content)
        return results, streamed

    results, streamed = asyncio.run(main())
    assert sorted(r.content for r in results) == ["abc", "defg"]
    assert streamed == ["a", "b"]
    assert timing.get_stats()["count"] == 2
    assert errors.get_errors_by_type() == {"FakeListChatModelError": 1}
    metrics = m.metrics()
    assert metrics["calls"] == 3 and metrics["errors"] == 1
    assert handler.in_flight == 0


def test_langchain_model_name_from_metadata(core):
    m, *_ = stock_manager(core)
    names = []

    class Names(ErrorTrackingCallback):
        def on_llm_start(self, model, prompt, **kw):
            names.append(model)

    m.add_callback(Names())
    handler = ProdfastCallbackHandler(m)
    model = FakeListChatModel(responses=["ok"])
    model.invoke("x", config={"callbacks": [handler], "metadata": {"ls_model_name": "gpt-4o-mini"}})
    model.invoke("x", config={"callbacks": [handler]})
    assert names == ["gpt-4o-mini", "FakeListChatModel"]
    with pytest.raises(TypeError, match="manager"):
        ProdfastCallbackHandler(object())


# ---------------------------------------------------------------------------------------------
# the core does not need the integrations' dependencies


def test_prodfast_imports_without_the_optional_dependencies():
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("prometheus_client", "langchain_core", "opentelemetry"):
                    raise ImportError("blocked: " + name)
                return None

        sys.meta_path.insert(0, Block())
        import prodfast
        import prodfast.callbacks
        import prodfast.integrations
        m = prodfast.CallbackManager([prodfast.TimingCallback()])
        with m.track("m"):
            pass
        assert m.metrics()["calls"] == 1
        for mod in ("prodfast.integrations.prometheus", "prodfast.integrations.langchain",
                    "prodfast.integrations.otel"):
            try:
                __import__(mod)
            except ImportError as exc:
                assert "pip install" in str(exc), exc
            else:
                raise SystemExit(mod + " imported without its dependency")
        assert "prometheus_client" not in sys.modules and "langchain_core" not in sys.modules
        assert "opentelemetry" not in sys.modules
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_langchain_async_handler_awaits_the_gate(core):
    """An async chain through a non-blocking gate: the refusal reaches the caller and counts."""
    clock = FakeClock()
    gate = RateLimitingCallback(block=False, bucket=core.TokenBucket(1.0, 2.0, clock=clock))
    timing = TimingCallback(summary_factory=core.LatencySummary)
    errors = ErrorTrackingCallback()
    m = CallbackManager([gate, timing, errors])
    handler = AsyncProdfastCallbackHandler(m)
    model = FakeListChatModel(responses=["one", "two", "three"])

    async def main():
        first = await model.ainvoke("a", config={"callbacks": [handler]})
        chunks = [c.content async for c in model.astream("b", config={"callbacks": [handler]})]
        with pytest.raises(prodfast.RateLimitError):
            await model.ainvoke("c", config={"callbacks": [handler]})
        return first.content, "".join(chunks)

    assert asyncio.run(main()) == ("one", "two")
    assert timing.get_stats()["count"] == 2 and timing.get_ttft_stats()["count"] == 1
    assert errors.get_errors_by_type() == {"RateLimitError": 1}
    assert m.metrics()["rate_limit"]["denied"] == 1
    assert handler.in_flight == 0
    with pytest.raises(TypeError, match="manager"):
        AsyncProdfastCallbackHandler(None)


def test_langchain_sync_handler_refusal_reaches_the_caller(core):
    clock = FakeClock()
    gate = RateLimitingCallback(block=False, bucket=core.TokenBucket(1.0, 1.0, clock=clock))
    errors = ErrorTrackingCallback()
    m = CallbackManager([gate, errors])
    handler = ProdfastCallbackHandler(m)
    model = FakeListChatModel(responses=["ok"])
    assert model.invoke("x", config={"callbacks": [handler]}).content == "ok"
    with pytest.raises(prodfast.RateLimitError):
        model.invoke("y", config={"callbacks": [handler]})
    assert errors.get_errors_by_type() == {"RateLimitError": 1}
    assert handler.in_flight == 0
