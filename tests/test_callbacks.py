"""prodfast.callbacks: the manager, the four stock callbacks and the seed's formulas.

Each test that builds a statistic takes ``core`` and hands the stock callbacks that backend's
primitives (``summary_factory=core.LatencySummary``, ``bucket=core.TokenBucket(...)``), so
the callbacks are checked over the compiled and the pure-Python core alike.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import statistics
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prodfast
from conftest import FakeClock
from prodfast.callbacks import (
    BaseCallback,
    CallbackManager,
    ErrorTrackingCallback,
    Run,
    TimingCallback,
    TokenUsageCallback,
    extract_usage,
)

LONG = os.environ.get("PRODFAST_LONG_TESTS") == "1"
EXAMPLES = 300 if LONG else 40


class Recorder(BaseCallback):
    """Writes down every hook call with its keyword arguments."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def _add(self, *event):
        with self.lock:
            self.events.append(event)

    def on_llm_start(self, model, prompt, **kw):
        self._add("start", model, prompt, kw)

    def on_llm_new_token(self, model, token, **kw):
        self._add("token", model, token, kw)

    def on_llm_end(self, model, response, tokens_used, **kw):
        self._add("end", model, response, tokens_used, kw)

    def on_llm_error(self, model, error, **kw):
        self._add("error", model, error, kw)

    def kinds(self):
        return [e[0] for e in self.events]


def stock(core):
    timing = TimingCallback(summary_factory=core.LatencySummary)
    errors = ErrorTrackingCallback()
    usage = TokenUsageCallback()
    return timing, errors, usage


def reference_snapshot(core, values):
    ref = core.LatencySummary()
    for v in values:
        ref.push(v)
    return ref.snapshot()


def assert_snapshot_close(got, want):
    assert set(got) == {"count", "mean", "std_dev", "min", "max", "p50", "p95", "p99"}
    assert got["count"] == want["count"]
    for key in ("mean", "std_dev", "min", "max", "p50", "p95", "p99"):
        if math.isnan(want[key]):
            assert math.isnan(got[key]), key
        else:
            assert math.isclose(got[key], want[key], rel_tol=1e-12, abs_tol=1e-12), key


# ---------------------------------------------------------------------------------------------
# the seed's formulas


def test_error_rate_is_zero_with_no_requests():
    e = ErrorTrackingCallback()
    assert e.get_error_rate() == 0.0
    assert e.get_reliability() == 1.0
    assert e.get_stats() == {
        "total": 0, "errors": 0, "error_rate": 0.0, "reliability": 1.0, "errors_by_type": {},
    }
    m = CallbackManager([e])
    metrics = m.metrics()
    assert metrics["calls"] == 0 and metrics["error_rate"] == 0.0 and metrics["throughput"] == 0.0


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.sampled_from([None, ValueError, KeyError, TimeoutError]), max_size=60))
def test_error_rate_and_reliability_match_the_seed(outcomes):
    errors = ErrorTrackingCallback()
    m = CallbackManager([errors])
    for outcome in outcomes:
        if outcome is None:
            with m.track("m", "p"):
                pass
        else:
            with pytest.raises(outcome):
                with m.track("m", "p"):
                    raise outcome("boom")
    n_err = sum(o is not None for o in outcomes)
    total = len(outcomes)
    e = n_err / total if total else 0.0
    assert errors.total_requests == total
    assert errors.errors == n_err
    assert errors.get_error_rate() == e
    assert errors.get_reliability() == 1.0 - e
    want_types = {}
    for o in outcomes:
        if o is not None:
            want_types[o.__name__] = want_types.get(o.__name__, 0) + 1
    assert errors.get_errors_by_type() == want_types
    metrics = m.metrics()
    assert (metrics["calls"], metrics["errors"]) == (total, n_err)
    assert metrics["error_rate"] == e and metrics["reliability"] == 1.0 - e
    assert metrics["errors_by_type"] == want_types


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=0, max_size=40))
def test_latency_statistics_against_numpy(core, latencies):
    clock = FakeClock(100.0)
    timing, errors, usage = stock(core)
    m = CallbackManager([timing, errors, usage], clock=clock)
    for lat in latencies:
        with m.track("m", "p"):
            clock.tick(lat)
    stats = timing.get_stats()
    # the clock's float additions are what the manager measures
    measured = []
    t = 100.0
    for lat in latencies:
        measured.append((t + lat) - t)
        t += lat
    assert_snapshot_close(stats, reference_snapshot(core, measured))
    assert stats["count"] == len(latencies)
    if latencies:
        xs = np.array(measured)
        assert math.isclose(stats["mean"], xs.mean(), rel_tol=1e-9, abs_tol=1e-12)
        assert stats["min"] == xs.min() and stats["max"] == xs.max()
    if len(latencies) >= 2:
        # sample variance, n - 1, as the seed
        assert math.isclose(stats["std_dev"], statistics.stdev(measured), rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(stats["std_dev"], xs.std(ddof=1), rel_tol=1e-9, abs_tol=1e-9)
    if 1 <= len(latencies) <= 5:
        for p, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            assert math.isclose(stats[key], float(np.quantile(xs, p)), rel_tol=1e-9, abs_tol=1e-12)


def test_latency_percentiles_follow_a_distribution(core):
    rng = np.random.default_rng(7)
    values = rng.lognormal(mean=-1.0, sigma=0.5, size=4000)
    clock = FakeClock()
    timing = TimingCallback(summary_factory=core.LatencySummary)
    m = CallbackManager([timing], clock=clock)
    measured = []
    for v in values:
        start = clock.now
        with m.track("m"):
            clock.tick(float(v))
        measured.append(clock.now - start)
    stats = timing.get_stats()
    assert_snapshot_close(stats, reference_snapshot(core, measured))
    for p, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert stats[key] == pytest.approx(np.quantile(measured, p), rel=0.05), key


def test_failed_calls_are_not_latency_samples(core):
    clock = FakeClock()
    timing, errors, _ = stock(core)
    m = CallbackManager([timing, errors], clock=clock)
    with m.track("m"):
        clock.tick(2.0)
    with pytest.raises(RuntimeError):
        with m.track("m"):
            clock.tick(50.0)
            raise RuntimeError("down")
    assert timing.get_stats()["count"] == 1
    assert timing.get_stats()["max"] == 2.0
    assert errors.get_stats()["errors"] == 1


def test_empty_timing_stats(core):
    timing = TimingCallback(summary_factory=core.LatencySummary)
    stats = timing.get_stats()
    assert stats["count"] == 0
    assert math.isnan(stats["mean"]) and math.isnan(stats["p99"])
    assert timing.get_ttft_stats()["count"] == 0


# ---------------------------------------------------------------------------------------------
# per-call run ids: concurrent calls time correctly


def test_interleaved_threads_time_each_call(core):
    """Thread A runs 0 -> 5, thread B runs 1 -> 3. The seed's single start_time gives 4 and 2."""
    clock = FakeClock()
    timing = TimingCallback(summary_factory=core.LatencySummary)
    rec = Recorder()
    m = CallbackManager([timing, rec], clock=clock)
    entered = {"A": threading.Event(), "B": threading.Event()}
    release = {"A": threading.Event(), "B": threading.Event()}
    done = {"A": threading.Event(), "B": threading.Event()}

    def worker(name):
        with m.track("m", name):
            entered[name].set()
            assert release[name].wait(10)
        done[name].set()

    a = threading.Thread(target=worker, args=("A",))
    b = threading.Thread(target=worker, args=("B",))
    a.start()
    assert entered["A"].wait(10)
    clock.set(1.0)
    b.start()
    assert entered["B"].wait(10)
    clock.set(3.0)
    release["B"].set()
    assert done["B"].wait(10)
    clock.set(5.0)
    release["A"].set()
    a.join(10)
    b.join(10)
    stats = timing.get_stats()
    assert stats["count"] == 2
    assert (stats["min"], stats["max"]) == (2.0, 5.0)
    latency_by_prompt = {}
    run_by_prompt = {}
    for e in rec.events:
        if e[0] == "start":
            run_by_prompt[e[2]] = e[3]["run_id"]
    for e in rec.events:
        if e[0] == "end":
            latency_by_prompt[e[4]["run_id"]] = e[4]["latency"]
    assert latency_by_prompt[run_by_prompt["A"]] == 5.0
    assert latency_by_prompt[run_by_prompt["B"]] == 2.0
    assert run_by_prompt["A"] != run_by_prompt["B"]


def test_many_threads_lose_no_count(core):
    """Each thread reads its own fake time, so every latency is known; nothing may be lost."""
    local = threading.local()

    def clock():
        return getattr(local, "t", 0.0)

    timing, errors, usage = stock(core)
    m = CallbackManager([timing, errors, usage], clock=clock)
    n_threads, per_thread = 6, 300
    barrier = threading.Barrier(n_threads)

    def worker(k):
        local.t = 0.0
        barrier.wait()
        for i in range(per_thread):
            lat = (k + 1) * 0.001 * (i % 7 + 1)
            if i % 10 == 9:
                try:
                    with m.track("m"):
                        local.t += lat
                        raise ConnectionError("x")
                except ConnectionError:
                    pass
            else:
                with m.track("m") as run:
                    local.t += lat
                    run.set_response({"usage": {"prompt_tokens": 2, "completion_tokens": k + 1}})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    expected = [
        (k + 1) * 0.001 * (i % 7 + 1)
        for k in range(n_threads)
        for i in range(per_thread)
        if i % 10 != 9
    ]
    stats = timing.get_stats()
    assert stats["count"] == len(expected)
    assert stats["mean"] == pytest.approx(float(np.mean(expected)), rel=1e-6)
    assert stats["min"] == pytest.approx(min(expected)) and stats["max"] == pytest.approx(max(expected))
    n_err = n_threads * (per_thread // 10)
    assert errors.get_stats()["errors"] == n_err
    assert errors.get_stats()["total"] == n_threads * per_thread
    tok = usage.get_stats()
    ok_per_thread = per_thread - per_thread // 10
    assert tok["calls"] == len(expected)
    assert tok["prompt_tokens"] == 2 * len(expected)
    assert tok["completion_tokens"] == sum((k + 1) * ok_per_thread for k in range(n_threads))
    assert m.metrics()["errors_by_type"] == {"ConnectionError": n_err}


def test_interleaved_asyncio_tasks_time_each_call(core):
    clock = FakeClock()
    timing = TimingCallback(summary_factory=core.LatencySummary)
    m = CallbackManager([timing], clock=clock)

    async def main():
        release = {"A": asyncio.Event(), "B": asyncio.Event()}

        async def call(name):
            async with m.track("m", name) as run:
                await release[name].wait()
                run.set_response(name)

        a = asyncio.ensure_future(call("A"))
        await asyncio.sleep(0)
        clock.set(1.0)
        b = asyncio.ensure_future(call("B"))
        await asyncio.sleep(0)
        clock.set(3.0)
        release["B"].set()
        await b
        clock.set(7.0)
        release["A"].set()
        await a

    asyncio.run(main())
    stats = timing.get_stats()
    assert stats["count"] == 2
    assert (stats["min"], stats["max"]) == (2.0, 7.0)


def test_instrumented_async_calls_under_gather(core):
    clock = FakeClock()
    timing, errors, usage = stock(core)
    m = CallbackManager([timing, errors, usage], clock=clock)

    @m.instrument(model="fake")
    async def call(prompt, steps):
        for _ in range(steps):
            await asyncio.sleep(0)
        if prompt == "bad":
            raise TimeoutError("slow")
        return {"text": prompt, "usage": {"prompt_tokens": 1, "completion_tokens": steps}}

    async def ticker():
        for _ in range(100):
            clock.tick(1.0)
            await asyncio.sleep(0)

    async def main():
        t = asyncio.ensure_future(ticker())
        results = await asyncio.gather(
            call("a", 3), call("b", 10), call("bad", 5), return_exceptions=True
        )
        await t
        return results

    results = asyncio.run(main())
    assert isinstance(results[2], TimeoutError)
    assert results[0]["text"] == "a"
    stats = timing.get_stats()
    assert stats["count"] == 2
    # each call's latency is the ticks that happened while it waited, not a shared start
    assert stats["min"] < stats["max"]
    assert errors.get_errors_by_type() == {"TimeoutError": 1}
    assert usage.get_stats()["completion_tokens"] == 13


# ---------------------------------------------------------------------------------------------
# hooks, run ids, keyword arguments


def test_hooks_receive_the_documented_keywords():
    clock = FakeClock()
    rec = Recorder()
    m = CallbackManager([rec], clock=clock)
    with m.track("gpt", "hello", user="u1") as run:
        clock.tick(0.25)
        run.new_token("Hi")
        clock.tick(0.75)
        run.set_response({"usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    kinds = rec.kinds()
    assert kinds == ["start", "token", "end"]
    start, token, end = rec.events
    rid = start[3]["run_id"]
    assert start[1:3] == ("gpt", "hello") and start[3] == {"run_id": rid, "user": "u1"}
    assert token[1:] == ("gpt", "Hi", {"run_id": rid})
    assert end[1] == "gpt" and end[3] == 12
    assert end[4] == {
        "run_id": rid,
        "latency": 1.0,
        "ttft": 0.25,
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        "streamed_tokens": 1,
    }
    assert run.run_id == rid


def test_run_ids_are_unique_and_custom_ones_are_kept():
    rec = Recorder()
    m = CallbackManager([rec])
    for _ in range(5):
        with m.track("m"):
            pass
    with m.track("m", run_id="abc"):
        pass
    ids = [e[3]["run_id"] for e in rec.events if e[0] == "start"]
    assert len(set(ids)) == 6 and ids[-1] == "abc"
    ends = [e[4]["run_id"] for e in rec.events if e[0] == "end"]
    assert ends == ids


def test_error_hook_gets_the_exception_and_it_is_reraised():
    clock = FakeClock()
    rec = Recorder()
    m = CallbackManager([rec], clock=clock)
    err = ValueError("bad")
    with pytest.raises(ValueError) as info:
        with m.track("m", "p"):
            clock.tick(1.5)
            raise err
    assert info.value is err
    assert rec.kinds() == ["start", "error"]
    _, model, got, kw = rec.events[1]
    assert got is err and kw["latency"] == 1.5 and kw["error_type"] == "ValueError"


def test_start_and_end_outside_a_with_block():
    rec = Recorder()
    m = CallbackManager([rec])
    run = m.start("m", "p", run_id=7)
    assert isinstance(run, Run)
    run.new_token("a")
    run.end("a", tokens_used=3)
    with pytest.raises(RuntimeError, match="already finished"):
        run.end("again")
    with pytest.raises(RuntimeError, match="not running"):
        run.new_token("late")
    run2 = m.start("m")
    run2.error(KeyError("k"))
    assert rec.kinds() == ["start", "token", "end", "start", "error"]
    assert m.metrics()["calls"] == 2 and m.metrics()["errors_by_type"] == {"KeyError": 1}
    pending = m.track("m")
    with pytest.raises(RuntimeError, match="not started"):
        pending.end()
    with pending:
        with pytest.raises(RuntimeError, match="already started"):
            pending.__enter__()


def test_base_callback_hooks_are_skipped_and_partial_callbacks_work():
    class OnlyEnd(BaseCallback):
        def __init__(self):
            self.ends = 0

        def on_llm_end(self, model, response, tokens_used, **kw):
            self.ends += 1

    class Duck:  # not a BaseCallback: any object with a hook will do
        def __init__(self):
            self.errors = []

        def on_llm_error(self, model, error, **kw):
            self.errors.append(type(error))

    only, duck = OnlyEnd(), Duck()
    m = CallbackManager([only, duck, BaseCallback()])
    with m.track("m"):
        pass
    with pytest.raises(KeyError):
        with m.track("m"):
            raise KeyError
    assert only.ends == 1 and duck.errors == [KeyError]
    # the base class's no-op hooks are not dispatched at all
    assert m._tables[1][0] == ((), False)


# ---------------------------------------------------------------------------------------------
# a raising callback


class Broken(BaseCallback):
    def __init__(self, hook):
        self.hook = hook

    def _maybe(self, hook):
        if hook == self.hook:
            raise ZeroDivisionError(f"broken {hook}")

    def on_llm_start(self, model, prompt, **kw):
        self._maybe("start")

    def on_llm_new_token(self, model, token, **kw):
        self._maybe("token")

    def on_llm_end(self, model, response, tokens_used, **kw):
        self._maybe("end")

    def on_llm_error(self, model, error, **kw):
        self._maybe("error")


@pytest.mark.parametrize("hook", ["start", "token", "end"])
def test_a_raising_callback_is_logged_and_the_call_goes_on(core, caplog, hook):
    timing, errors, usage = stock(core)
    m = CallbackManager([Broken(hook), timing, errors, usage])
    with caplog.at_level(logging.ERROR, logger="prodfast.callbacks"):
        with m.track("m", "p") as run:
            run.new_token("t")
            run.set_response("ok")
    assert errors.get_stats() == {
        "total": 1, "errors": 0, "error_rate": 0.0, "reliability": 1.0, "errors_by_type": {},
    }
    assert timing.get_stats()["count"] == 1
    records = [r for r in caplog.records if r.name == "prodfast.callbacks"]
    assert len(records) == 1
    assert "Broken" in records[0].getMessage() and f"on_llm_{'new_token' if hook == 'token' else hook}" in records[0].getMessage()
    assert isinstance(records[0].exc_info[1], ZeroDivisionError)


def test_a_raising_error_hook_keeps_the_original_exception(caplog):
    m = CallbackManager([Broken("error")])
    with caplog.at_level(logging.ERROR, logger="prodfast.callbacks"):
        with pytest.raises(KeyError):
            with m.track("m"):
                raise KeyError("original")
    assert len(caplog.records) == 1


def test_a_raising_callback_in_an_instrumented_function_is_logged(caplog):
    m = CallbackManager([Broken("end")])

    @m.instrument
    def f(x):
        return x * 2

    with caplog.at_level(logging.ERROR, logger="prodfast.callbacks"):
        assert f(21) == 42
    assert len(caplog.records) == 1


@pytest.mark.parametrize("hook", ["start", "token", "end", "error"])
def test_raise_errors_propagates_after_the_other_callbacks_ran(hook):
    rec = Recorder()
    m = CallbackManager([Broken(hook), rec], raise_errors=True)
    assert m.raise_errors is True
    with pytest.raises(ZeroDivisionError, match=f"broken {hook}"):
        with m.track("m") as run:
            run.new_token("t")
            if hook == "error":
                raise KeyError("call failed")
    # the second callback still saw the hook the first one broke in
    assert {"start": "start", "token": "token", "end": "end", "error": "error"}[hook] in rec.kinds()


def test_raise_errors_in_async_calls():
    m = CallbackManager([Broken("end")], raise_errors=True)

    @m.instrument
    async def f():
        return 1

    with pytest.raises(ZeroDivisionError):
        asyncio.run(f())


# ---------------------------------------------------------------------------------------------
# streaming: time to first token


def test_async_generator_records_time_to_first_token(core):
    clock = FakeClock()
    timing, errors, usage = stock(core)
    rec = Recorder()
    m = CallbackManager([timing, errors, usage, rec], clock=clock)

    @m.instrument(model="streamer")
    async def stream(prompt):
        clock.tick(0.4)  # waiting for the first token
        for tok in ["Hel", "lo", "!"]:
            await asyncio.sleep(0)
            yield tok
            clock.tick(0.1)

    async def consume():
        return [t async for t in stream("hi")]

    assert asyncio.run(consume()) == ["Hel", "lo", "!"]
    ttft = timing.get_ttft_stats()
    assert ttft["count"] == 1 and ttft["mean"] == pytest.approx(0.4)
    lat = timing.get_stats()
    assert lat["count"] == 1 and lat["mean"] == pytest.approx(0.7)
    end = [e for e in rec.events if e[0] == "end"][0]
    assert end[2] == "Hello!" and end[4]["streamed_tokens"] == 3
    assert [e[2] for e in rec.events if e[0] == "token"] == ["Hel", "lo", "!"]
    # no usage reported: the stream's chunks are counted as chunks, not as tokens
    assert usage.get_stats()["chunks"] == 3
    assert usage.get_stats()["completion_tokens"] == 0 == usage.get_stats()["total_tokens"]
    assert m.metrics()["ttft"]["count"] == 1


def test_sync_generator_streams_and_reads_usage_from_the_last_chunk(core):
    clock = FakeClock()
    timing, _, usage = stock(core)
    m = CallbackManager([timing, usage], clock=clock)

    @m.instrument
    def stream(prompt):
        clock.tick(0.2)
        yield {"delta": "a", "usage": None}
        clock.tick(0.3)
        yield {"delta": "b", "usage": None}
        yield {"delta": "", "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}

    chunks = list(stream("p"))
    assert len(chunks) == 3
    assert timing.get_ttft_stats()["mean"] == pytest.approx(0.2)
    assert timing.get_stats()["mean"] == pytest.approx(0.5)
    assert usage.get_stats() == {
        "calls": 1, "prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
        "chunks": 3, "output_tokens_per_second": pytest.approx(4.0),
    }


def test_a_stream_that_fails_midway_is_an_error(core):
    clock = FakeClock()
    timing, errors, _ = stock(core)
    m = CallbackManager([timing, errors], clock=clock)

    @m.instrument
    async def stream(prompt):
        yield "a"
        raise ConnectionResetError("dropped")

    async def consume():
        out = []
        with pytest.raises(ConnectionResetError):
            async for t in stream("p"):
                out.append(t)
        return out

    assert asyncio.run(consume()) == ["a"]
    assert errors.get_errors_by_type() == {"ConnectionResetError": 1}
    assert timing.get_stats()["count"] == 0


def test_a_stream_closed_early_ends_with_what_was_taken():
    rec = Recorder()
    m = CallbackManager([rec])

    @m.instrument
    def stream(prompt):
        yield from ["a", "b", "c", "d"]

    gen = stream("p")
    assert next(gen) == "a" and next(gen) == "b"
    gen.close()
    end = [e for e in rec.events if e[0] == "end"]
    assert len(end) == 1 and end[0][2] == "ab"

    @m.instrument
    async def astream(prompt):
        for t in ["x", "y", "z"]:
            yield t

    async def take_one():
        agen = astream("p")
        first = await agen.__anext__()
        await agen.aclose()
        return first

    assert asyncio.run(take_one()) == "x"
    end = [e for e in rec.events if e[0] == "end"]
    assert len(end) == 2 and end[1][2] == "x"


# ---------------------------------------------------------------------------------------------
# usage


@pytest.mark.parametrize(
    "result",
    [
        {"text": "x", "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
        SimpleNamespace(usage=SimpleNamespace(prompt_tokens=3, completion_tokens=4, total_tokens=7)),
        SimpleNamespace(usage={"input_tokens": 3, "output_tokens": 4}),
        {"usage": SimpleNamespace(prompt_tokens=3, completion_tokens=4, total_tokens=None)},
    ],
    ids=["dict-key", "attribute", "anthropic-names", "object-in-dict"],
)
def test_usage_read_openai_style(result):
    assert extract_usage(result) == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    clock = FakeClock()
    usage = TokenUsageCallback()
    rec = Recorder()
    m = CallbackManager([usage, rec], clock=clock)

    @m.instrument(model="m")
    def call(prompt):
        clock.tick(2.0)
        return result

    assert call("p") is result
    assert rec.events[-1][3] == 7  # tokens_used = total
    assert usage.get_stats() == {
        "calls": 1, "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
        "chunks": 0, "output_tokens_per_second": 2.0,
    }


@pytest.mark.parametrize(
    "result", ["plain text", None, 42, {"usage": None}, {"usage": {"prompt_tokens": "many"}},
               {"usage": {"prompt_tokens": -1}}, SimpleNamespace(usage=object())],
)
def test_results_without_readable_usage(result):
    assert extract_usage(result) is None
    usage = TokenUsageCallback()
    m = CallbackManager([usage])
    with m.track("m") as run:
        run.set_response(result)
    assert usage.get_stats()["calls"] == 1 and usage.get_stats()["total_tokens"] == 0


def test_tokens_per_second_over_summed_call_time():
    clock = FakeClock()
    usage = TokenUsageCallback()
    m = CallbackManager([usage], clock=clock)
    for seconds, completion in [(1.0, 10), (3.0, 30), (0.5, 0)]:
        with m.track("m") as run:
            clock.tick(seconds)
            run.set_response(None, usage={"prompt_tokens": 1, "completion_tokens": completion})
    with m.track("m") as run:  # only a total reported
        run.set_response(None, tokens_used=5)
    stats = usage.get_stats()
    assert stats == {
        "calls": 4, "prompt_tokens": 3, "completion_tokens": 40, "total_tokens": 48,
        "chunks": 0, "output_tokens_per_second": 40 / 4.5,
    }
    assert m.metrics()["tokens"] == stats
    usage.reset()
    assert usage.get_stats()["calls"] == 0 and usage.get_stats()["output_tokens_per_second"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"tokens_used": "7"}, TypeError, "tokens_used"),
        ({"tokens_used": -1}, ValueError, "tokens_used"),
        ({"tokens_used": 1.5}, TypeError, "tokens_used"),
        ({"usage": {"prompt_tokens": 1.5}}, TypeError, "usage"),
        ({"usage": {"completion_tokens": -3}}, ValueError, "usage"),
        ({"usage": {"unrelated": 1}}, TypeError, "usage"),
    ],
)
def test_bad_usage_is_rejected_and_changes_nothing(kwargs, exc, match):
    rec = Recorder()
    m = CallbackManager([rec])
    run = m.start("m")
    with pytest.raises(exc, match=match):
        run.end("r", **kwargs)
    with pytest.raises(exc, match=match):
        run.set_response("r", **kwargs)
    run.end("r")  # the run was left running and ends normally
    assert rec.kinds() == ["start", "end"]


# ---------------------------------------------------------------------------------------------
# async twins


class AsyncAware(BaseCallback):
    def __init__(self):
        self.sync_calls = []
        self.async_calls = []

    def on_llm_start(self, model, prompt, **kw):
        self.sync_calls.append("start")

    async def on_llm_start_async(self, model, prompt, **kw):
        await asyncio.sleep(0)
        self.async_calls.append("start")

    def on_llm_end(self, model, response, tokens_used, **kw):
        self.sync_calls.append("end")

    async def on_llm_end_async(self, model, response, tokens_used, **kw):
        self.async_calls.append("end")


def test_async_calls_await_async_twins_and_sync_calls_use_plain_hooks():
    cb = AsyncAware()
    m = CallbackManager([cb])

    @m.instrument
    async def acall():
        return 1

    @m.instrument
    def call():
        return 1

    asyncio.run(acall())
    assert cb.async_calls == ["start", "end"] and cb.sync_calls == []
    call()
    assert cb.sync_calls == ["start", "end"] and cb.async_calls == ["start", "end"]


def test_async_only_callback_is_ignored_by_sync_calls():
    class AsyncOnly:
        def __init__(self):
            self.n = 0

        async def on_llm_end_async(self, model, response, tokens_used, **kw):
            self.n += 1

    cb = AsyncOnly()
    m = CallbackManager([cb])
    with m.track("m"):
        pass

    async def main():
        async with m.track("m"):
            pass

    asyncio.run(main())
    assert cb.n == 1


# ---------------------------------------------------------------------------------------------
# the decorator


def test_instrument_keeps_the_function_and_finds_model_and_prompt():
    rec = Recorder()
    m = CallbackManager([rec])

    def original(prompt, *, model="default-model"):
        """Doc."""
        return prompt.upper()

    complete = m.instrument(original)
    assert complete.__name__ == "original" and complete.__doc__ == "Doc."
    assert complete.__wrapped__ is original
    assert complete("hi") == "HI"
    assert complete(prompt="yo", model="gpt-x") == "YO"
    starts = [(e[1], e[2]) for e in rec.events if e[0] == "start"]
    assert starts == [("original", "hi"), ("gpt-x", "yo")]

    @m.instrument(model="fixed")
    def other(prompt, model="ignored"):
        return prompt

    other("p", model="m2")
    assert [e[1] for e in rec.events if e[0] == "start"][-1] == "fixed"


def test_instrument_rejects_bad_arguments():
    m = CallbackManager()
    with pytest.raises(TypeError, match="model"):
        m.instrument(model=3)
    with pytest.raises(TypeError, match="callable"):
        m.instrument(model="m")(42)


def test_instrumented_call_counts_and_reraises():
    errors = ErrorTrackingCallback()
    m = CallbackManager([errors])

    @m.instrument
    def flaky(n):
        if n % 3 == 0:
            raise ValueError(n)
        return n

    out = []
    for n in range(1, 10):
        try:
            out.append(flaky(n))
        except ValueError:
            pass
    assert out == [1, 2, 4, 5, 7, 8]
    assert errors.get_error_rate() == 3 / 9


# ---------------------------------------------------------------------------------------------
# the manager


def test_metrics_shape_and_throughput(core):
    clock = FakeClock(10.0)
    timing, errors, usage = stock(core)
    m = CallbackManager([timing, errors, usage], clock=clock)
    for _ in range(8):
        with m.track("m"):
            clock.tick(0.5)
    with pytest.raises(OSError):
        with m.track("m"):
            raise OSError("io")
    metrics = m.metrics()
    assert {"calls", "errors", "error_rate", "errors_by_type", "latency", "ttft", "tokens",
            "throughput"} <= set(metrics)
    assert metrics["calls"] == 9 and metrics["errors"] == 1
    assert metrics["throughput"] == 9 / 4.0
    assert metrics["uptime"] == 4.0
    assert metrics["latency"]["count"] == 8 and metrics["latency"]["mean"] == 0.5
    assert metrics["tokens"]["calls"] == 8
    assert "rate_limit" not in metrics
    m.reset()
    after = m.metrics()
    assert after["calls"] == 0 and after["latency"]["count"] == 0 and after["errors_by_type"] == {}
    assert errors.get_stats()["total"] == 0


def test_metrics_without_stock_callbacks():
    m = CallbackManager([Recorder()])
    with m.track("m"):
        pass
    metrics = m.metrics()
    assert metrics["calls"] == 1
    assert metrics["latency"]["count"] == 0 and metrics["tokens"]["calls"] == 0


def test_add_and_remove_callbacks():
    m = CallbackManager()
    rec = Recorder()
    m.add_callback(rec)
    assert m.callbacks == (rec,)
    with m.track("m"):
        pass
    m.remove_callback(rec)
    with m.track("m"):
        pass
    assert rec.kinds() == ["start", "end"]
    with pytest.raises(ValueError, match="callback"):
        m.remove_callback(rec)
    with pytest.raises(TypeError, match="callbacks"):
        m.add_callback(object())


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"callbacks": "abc"}, TypeError, "callbacks"),
        ({"callbacks": 5}, TypeError, "callbacks"),
        ({"callbacks": [object()]}, TypeError, "callbacks"),
        ({"raise_errors": 1}, TypeError, "raise_errors"),
        ({"clock": 3.0}, TypeError, "clock"),
    ],
)
def test_manager_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        CallbackManager(**kwargs)


def test_timing_callback_arguments():
    with pytest.raises(TypeError, match="summary_factory"):
        TimingCallback(summary_factory=3)
    t = TimingCallback()
    assert type(t._latency) is prodfast.LatencySummary  # the active backend by default
    with pytest.raises(TypeError, match="latency"):
        t.on_llm_end("m", "r", None)
    t.on_llm_end("m", "r", None, latency=0.5)
    assert t.get_stats()["count"] == 1
    t.reset()
    assert t.get_stats()["count"] == 0


def test_callbacks_may_reenter_the_manager():
    """A hook that tracks a call of its own and reads metrics must not deadlock or corrupt."""
    errors = ErrorTrackingCallback()

    class Nested(BaseCallback):
        def __init__(self):
            self.depth = 0
            self.seen = []

        def on_llm_end(self, model, response, tokens_used, **kw):
            self.seen.append(m.metrics()["calls"])
            if self.depth == 0:
                self.depth += 1
                with m.track("inner"):
                    pass
                self.depth -= 1

    nested = Nested()
    m = CallbackManager([nested, errors])
    with m.track("outer"):
        pass
    assert errors.total_requests == 2
    assert m.metrics()["calls"] == 2
    assert nested.seen == [1, 2]


def test_a_subclass_overriding_a_stock_hook_is_called(core):
    class MyTiming(TimingCallback):
        def __init__(self):
            super().__init__(summary_factory=core.LatencySummary)
            self.seen = []

        def on_llm_end(self, model, response, tokens_used, **kw):
            self.seen.append((kw["run_id"], kw["latency"]))
            super().on_llm_end(model, response, tokens_used, **kw)

    class MyErrors(ErrorTrackingCallback):
        def on_llm_error(self, model, error, **kw):
            super().on_llm_error(model, error, **kw)
            self.last = kw["error_type"]

    clock = FakeClock()
    t, e = MyTiming(), MyErrors()
    m = CallbackManager([t, e], clock=clock)
    with m.track("m", run_id="r1"):
        clock.tick(0.5)
    with pytest.raises(LookupError):
        with m.track("m"):
            raise LookupError
    assert t.seen == [("r1", 0.5)] and t.get_stats()["count"] == 1
    assert e.last == "LookupError" and e.get_errors_by_type() == {"LookupError": 1}


def test_stock_callbacks_driven_by_hand():
    """The public hooks work without a manager, with the keywords the manager would pass."""
    u = TokenUsageCallback()
    u.on_llm_end("m", None, None, usage=SimpleNamespace(input_tokens=2, output_tokens=3), latency=1.0)
    u.on_llm_end("m", None, 10, latency=1.0)
    u.on_llm_end("m", None, None, streamed_tokens=4, latency=2.0)
    assert u.get_stats() == {"calls": 3, "prompt_tokens": 2, "completion_tokens": 3,
                             "total_tokens": 15, "chunks": 4, "output_tokens_per_second": 3 / 4.0}
    with pytest.raises(ValueError, match="usage"):
        u.on_llm_end("m", None, None, usage={"prompt_tokens": -1}, latency=1.0)
    with pytest.raises(TypeError, match="tokens_used"):
        u.on_llm_end("m", None, "many", latency=1.0)
    assert u.get_stats()["calls"] == 3
    e = ErrorTrackingCallback()
    e.on_llm_end("m", "r", None)
    e.on_llm_error("m", KeyError("k"))
    assert e.get_stats()["errors_by_type"] == {"KeyError": 1} and e.get_error_rate() == 0.5


def test_instrument_finds_the_prompt_of_methods_and_named_parameters():
    rec = Recorder()
    m = CallbackManager([rec])

    class Client:
        @m.instrument(model="c")
        def complete(self, prompt, temperature=0.0):
            return prompt

        @m.instrument(model="c", prompt_arg="messages")
        def chat(self, system, messages):
            return messages

    c = Client()
    c.complete("hello")
    c.complete(prompt="kw")
    c.chat("sys", [{"role": "user", "content": "hi"}])
    c.chat("sys", messages=["m"])

    @m.instrument
    def no_args():
        return 1

    no_args()
    starts = [e[2] for e in rec.events if e[0] == "start"]
    assert starts == ["hello", "kw", [{"role": "user", "content": "hi"}], ["m"], None]
    with pytest.raises(TypeError, match="prompt_arg"):
        m.instrument(prompt_arg=1)


def test_a_clock_that_goes_backwards_gives_zero_not_negative_times(core):
    clock = FakeClock(10.0)
    timing = TimingCallback(summary_factory=core.LatencySummary)
    rec = Recorder()
    m = CallbackManager([timing, rec], clock=clock)
    with m.track("m") as run:
        clock.set(9.0)
        run.new_token("t")
        clock.set(8.0)
    with pytest.raises(KeyError):
        with m.track("m"):
            clock.set(1.0)
            raise KeyError
    end = [e for e in rec.events if e[0] == "end"][0][4]
    err = [e for e in rec.events if e[0] == "error"][0][3]
    assert (end["latency"], end["ttft"], err["latency"]) == (0.0, 0.0, 0.0)
    assert timing.get_stats()["min"] == 0.0
    assert m.metrics()["throughput"] == 0.0 and m.metrics()["uptime"] == 0.0


def test_manager_rejects_a_clock_that_does_not_return_seconds():
    with pytest.raises(TypeError, match="clock"):
        CallbackManager(clock=lambda: "now")


def test_model_must_be_a_string():
    rec = Recorder()
    m = CallbackManager([rec])
    with pytest.raises(TypeError, match="model"):
        m.track(42)
    with pytest.raises(TypeError, match="model"):
        m.start(None)

    async def main():
        with pytest.raises(TypeError, match="model"):
            await m.astart(b"gpt")

    asyncio.run(main())
    assert rec.events == [] and m.metrics()["calls"] == 0

    @m.instrument
    def call(prompt, model="x"):
        return prompt

    call("p", model=7)  # a non-str model= argument is reported by its str()
    assert rec.events[0][1] == "7"
