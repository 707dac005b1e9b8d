"""A tracked call's hot path (``_RunCore``) on both backends: the compiled one (``_monitor.pxi``)
and its pure-Python twin (``prodfast._monitor_py``) do the same things, in the same order, with
the same errors. Each test builds its managers over ``core``'s ``_RunCore``.
"""

from __future__ import annotations

import threading
import types

import pytest

from conftest import FakeClock
from prodfast._monitor_py import PENDING_LIMIT
from prodfast.callbacks import (
    BaseCallback,
    CallbackManager,
    ErrorTrackingCallback,
    RateLimitingCallback,
    TimingCallback,
    TokenUsageCallback,
)
from prodfast.limiters import RateLimitError
from prodfast.monitor.run import run_type


def manager(core, callbacks=(), **kwargs):
    m = CallbackManager(callbacks, sketch_factory=core.QuantileSketch, **kwargs)
    m._run_type = run_type(core)
    return m


class Recorder(BaseCallback):
    """Every hook's arguments, in order."""

    def __init__(self):
        self.seen = []

    def on_llm_start(self, model, prompt, **kw):
        self.seen.append(("start", model, prompt, kw))

    def on_llm_new_token(self, model, token, **kw):
        self.seen.append(("token", model, token, kw))

    def on_llm_end(self, model, response, tokens_used, **kw):
        self.seen.append(("end", model, response, tokens_used, kw))

    def on_llm_error(self, model, error, **kw):
        self.seen.append(("error", model, type(error).__name__, kw))


def test_the_run_is_the_backends(core):
    m = manager(core)
    run = m.track("m")
    assert isinstance(run, core._RunCore)
    assert type(run).__mro__[-2] is core._RunCore


@pytest.mark.parametrize(
    "response, usage, model",
    [
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, "model": "x-1"},
         {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, "x-1"),
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 4}},
         {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, None),
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": None}},
         {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, None),
        ({"usage": {"input_tokens": 2, "output_tokens": 5}, "model": ""},
         {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}, None),
        ({"usage": {"prompt_tokens": True, "completion_tokens": 4}, "model": 3}, None, None),
        ({"usage": {"prompt_tokens": -1, "completion_tokens": 4}}, None, None),
        ({"usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": "5"}}, None, None),
        ({"usage": None, "model": "y"}, None, "y"),
        (types.SimpleNamespace(usage=types.SimpleNamespace(prompt_tokens=1, completion_tokens=1),
                               model="z"),
         {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}, "z"),
        ("plain text", None, None),
        (None, None, None),
    ],
)
def test_usage_and_response_model_read_from_the_result(core, response, usage, model):
    rec = Recorder()
    clock = FakeClock()
    m = manager(core, [rec], clock=clock)
    with m.track("gpt", "p", run_id="r1") as run:
        clock.tick(0.25)
        run.set_response(response)
    assert run.response_model == model
    kind, name, got, tokens_used, kw = rec.seen[-1]
    assert (kind, name, got) == ("end", "gpt", response)
    assert kw == {"run_id": "r1", "latency": 0.25, "ttft": None, "usage": usage,
                  "streamed_tokens": 0}
    assert tokens_used == (None if usage is None else usage["total_tokens"])
    (series,) = m.metrics()["by_attributes"]
    assert series["attributes"].get("gen_ai.response.model") == model
    assert series["input_tokens"]["count"] == (0 if usage is None else 1)


def test_streamed_chunks_set_ttft_and_gaps(core):
    rec = Recorder()
    clock = FakeClock()
    timing = TimingCallback(summary_factory=core.LatencySummary)
    usage = TokenUsageCallback()
    m = manager(core, [rec, timing, usage], clock=clock)
    with m.track("gpt") as run:
        clock.tick(0.1)
        run.new_token("a")
        clock.tick(0.05)
        run.new_token("b")
        clock.tick(0.02)
        run.new_token("c")
        clock.tick(0.01)
    assert [e[0] for e in rec.seen] == ["start", "token", "token", "token", "end"]
    end = rec.seen[-1][4]
    assert end["streamed_tokens"] == 3 and end["ttft"] == pytest.approx(0.1)
    assert end["latency"] == pytest.approx(0.18)
    assert run._gaps == pytest.approx([0.05, 0.02])
    assert usage.get_stats()["chunks"] == 3 and usage.get_stats()["total_tokens"] == 0
    (series,) = m.metrics()["by_attributes"]
    assert series["time_per_output_chunk"]["count"] == 2
    assert timing.get_ttft_stats()["count"] == 1
    with pytest.raises(RuntimeError, match="is not running"):
        run.new_token("late")


def test_state_errors(core):
    m = manager(core)
    run = m.track("gpt")
    with pytest.raises(RuntimeError, match=r"run \d+ is not running \(it was not started\)"):
        run.end("x")
    with run:
        with pytest.raises(RuntimeError, match="was already started"):
            run.__enter__()
    assert run.__exit__(None, None, None) is False  # finished: nothing more
    with pytest.raises(RuntimeError, match="already started"):
        run._start_sync()
    with pytest.raises(TypeError, match="response_model must be a str or None, got int"):
        m.track("gpt").set_response("x", response_model=3)
    with pytest.raises(TypeError, match="tokens_used must be an int, got float"):
        m.track("gpt").set_response("x", tokens_used=1.5)
    with pytest.raises(TypeError, match="usage must report prompt_tokens"):
        m.track("gpt").set_response("x", usage={"nothing": 1})
    assert m.metrics()["calls"] == 1


def test_given_usage_and_tokens_win_over_the_response(core):
    rec = Recorder()
    m = manager(core, [rec])
    with m.track("gpt") as run:
        run.set_response({"usage": {"prompt_tokens": 9, "completion_tokens": 9}, "model": "r"},
                         tokens_used=5, usage={"input_tokens": 1, "output_tokens": 2},
                         response_model="given")
    kw = rec.seen[-1][4]
    assert rec.seen[-1][3] == 5
    assert kw["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert run.response_model == "given"


def test_an_error_leaving_the_block_is_counted_and_raised(core):
    rec = Recorder()
    clock = FakeClock()
    errors = ErrorTrackingCallback()
    m = manager(core, [rec, errors], clock=clock)
    with pytest.raises(KeyError):
        with m.track("gpt", run_id=7):
            clock.tick(0.5)
            raise KeyError("k")
    assert rec.seen[-1] == ("error", "gpt", "KeyError",
                            {"run_id": 7, "latency": 0.5, "error_type": "KeyError"})
    assert errors.get_errors_by_type() == {"KeyError": 1}
    (series,) = m.metrics()["by_attributes"]
    assert series["attributes"]["error.type"] == "KeyError" and series["duration"]["sum"] == 0.5


def test_a_refused_start_ends_the_run_once(core):
    rec = Recorder()
    gate = RateLimitingCallback(bucket=core.TokenBucket(1.0, 1.0), block=False)
    m = manager(core, [gate, rec])
    with m.track("gpt"):
        pass
    with pytest.raises(RateLimitError):
        with m.track("gpt"):
            raise AssertionError("the refused call must not run")
    assert [e[0] for e in rec.seen] == ["start", "end", "error"]
    assert rec.seen[-1][2] == "RateLimitError"
    out = m.metrics()
    assert out["calls"] == 2 and out["errors_by_type"] == {"RateLimitError": 1}


def test_end_hook_failures_are_logged_or_raised_after_every_hook_ran(core, caplog):
    class Broken(BaseCallback):
        def on_llm_end(self, model, response, tokens_used, **kw):
            raise ValueError("broken")

    for raise_errors in (False, True):
        rec = Recorder()
        usage = TokenUsageCallback()
        m = manager(core, [Broken(), rec, usage], raise_errors=raise_errors)
        if raise_errors:
            with pytest.raises(ValueError, match="broken"):
                with m.track("gpt") as run:
                    run.set_response({"usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        else:
            with m.track("gpt") as run:
                run.set_response({"usage": {"prompt_tokens": 1, "completion_tokens": 1}})
            assert "broken" in caplog.text
        assert rec.seen[-1][0] == "end" and usage.get_stats()["total_tokens"] == 2
        assert m.metrics()["calls"] == 1


def test_the_queue_is_aggregated_when_it_is_full(core):
    m = manager(core)
    for _ in range(PENDING_LIMIT + 5):
        with m.track("gpt"):
            pass
    assert len(m._pending) < PENDING_LIMIT
    assert m.metrics()["calls"] == PENDING_LIMIT + 5


def test_an_int_clock_gives_the_same_numbers(core):
    ticks = iter(range(0, 1000, 10))
    rec = Recorder()
    m = manager(core, [rec], clock=lambda: next(ticks))
    with m.track("gpt") as run:
        run.new_token("a")
        run.new_token("b")
    kw = rec.seen[-1][4]
    assert (kw["latency"], kw["ttft"]) == (30, 10)
    assert type(kw["latency"]) is int and run._gaps == [10]


def _locked(obj, **fields):
    obj._lock = threading.Lock()
    for name, value in fields.items():
        setattr(obj, name, value)
    return obj


def test_stock_end_hooks(core):
    """The stock callbacks' positional end hooks, as the manager calls them."""
    timing = _locked(core._TimingCore(), _latency=core.LatencySummary(), _ttft=core.LatencySummary())
    timing._fast_end("m", None, None, 1, 0.5, None, None, 0)
    timing._fast_end("m", None, None, 2, 0.25, 0.125, None, 3)
    assert timing._latency.snapshot()["count"] == 2 and timing._latency.snapshot()["mean"] == 0.375
    assert timing._ttft.snapshot()["count"] == 1 and timing._ttft.snapshot()["max"] == 0.125

    errors = _locked(core._ErrorsCore(), _total=0, _errors=0, _by_type={})
    for _ in range(3):
        errors._fast_end("m", None, None, 1, 0.5, None, None, 0)
    assert (errors._total, errors._errors) == (3, 0)

    tokens = _locked(core._TokensCore(), _calls=0, _prompt=0, _completion=0, _total=0,
                     _chunks=0, _seconds=0.0)
    usage = {"prompt_tokens": 2**70, "completion_tokens": 3, "total_tokens": 2**70 + 3}
    tokens._fast_end("m", None, None, 1, 0.5, None, usage, 0)
    tokens._fast_end("m", None, 7, 2, None, None, None, 4)  # only tokens_used, streamed
    tokens._fast_end("m", None, None, 3, 0.25, None, None, 0)
    assert (tokens._calls, tokens._prompt, tokens._completion, tokens._total, tokens._chunks,
            tokens._seconds) == (3, 2**70, 3, 2**70 + 10, 4, 0.75)
    with pytest.raises(TypeError, match="tokens_used must be an int, got str"):
        tokens._fast_end("m", None, "7", 4, 0.5, None, None, 0)
    with pytest.raises(ValueError, match="tokens_used must be >= 0, got -1"):
        tokens._fast_end("m", None, -1, 4, 0.5, None, None, 0)
    assert tokens._calls == 3  # a refused count changes nothing


def test_stock_callbacks_keep_their_fast_end_hooks():
    m = CallbackManager([TimingCallback(), ErrorTrackingCallback(), TokenUsageCallback()])
    assert [fast for _, fast in m._tables[1][2][0]] == [True, True, True]

    class Mine(TokenUsageCallback):
        def on_llm_end(self, model, response, tokens_used, **kwargs):
            super().on_llm_end(model, response, tokens_used, **kwargs)

    mine = Mine()
    m = CallbackManager([mine])
    assert [fast for _, fast in m._tables[1][2][0]] == [False]
    with m.track("gpt") as run:
        run.set_response({"usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    assert mine.get_stats()["total_tokens"] == 3


def test_track_checks_its_arguments_and_takes_the_managers_defaults(core):
    m = manager(core, provider="openai", operation="chat")
    track = types.MethodType(core._track, m)
    run = track("gpt", "p", run_id=3, cost=2)
    assert (run.model, run.prompt, run.run_id, run.operation, run.provider, run._extra) == (
        "gpt", "p", 3, "chat", "openai", {"cost": 2})
    assert isinstance(run, core._RunCore)

    class Name(str):
        pass

    run = track("gpt", operation=Name("embeddings"), provider="azure")
    assert type(run.operation) is str and (run.operation, run.provider) == ("embeddings", "azure")
    assert track("gpt")._extra == {}
    with pytest.raises(TypeError, match="model must be a str, got int"):
        track(3)
    with pytest.raises(TypeError, match="operation must be a str or None, got int"):
        track("gpt", operation=1)
    with pytest.raises(TypeError, match="provider must be a str or None, got bytes"):
        track("gpt", provider=b"x")
    with pytest.raises(TypeError):
        track("gpt", "p", 3)  # run_id is keyword-only


def test_gate_start_hook(core):
    class Gate(core._GateCore):
        def _wrong_path(self):
            return TypeError("wrong path")

        @staticmethod
        def _refused(exc):
            return RuntimeError(f"refused: {exc}")

        def _denied(self, cost):
            return RateLimitError(retry_after=self.bucket.wait_time(cost))

    def gate(block, kind="both", cost=1, timeout=None):
        g = Gate()
        g.bucket, g.block, g._timeout, g._cost, g._kind = (
            core.TokenBucket(1.0, 3.0, clock=FakeClock()), block, timeout, cost, kind)
        return g

    g = gate(True)
    g._fast_start("m", "p", None)
    g._fast_start("m", "p", {"cost": 2})
    assert g.bucket.stats()["allowed"] == 2
    g = gate(True, timeout=0.0, cost=3)
    g._fast_start("m", "p", {})
    with pytest.raises(RateLimitError):  # blocking, but it cannot be granted in time
        g._fast_start("m", "p", {})
    g = gate(False)
    g._fast_start("m", "p", {"cost": 3})
    with pytest.raises(RateLimitError) as denied:
        g._fast_start("m", "p", {})
    assert denied.value.retry_after == pytest.approx(1.0)
    with pytest.raises(RuntimeError, match="refused: "):
        g._fast_start("m", "p", {"cost": -1})
    with pytest.raises(TypeError, match="wrong path"):
        gate(True, kind="async")._fast_start("m", "p", None)
