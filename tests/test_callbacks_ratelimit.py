"""RateLimitingCallback: a token-bucket gate in front of every call, sync and async."""

from __future__ import annotations

import asyncio
import threading

import pytest

import prodfast
from conftest import FakeClock
from prodfast.callbacks import (
    BaseCallback,
    CallbackManager,
    ErrorTrackingCallback,
    RateLimitingCallback,
    TimingCallback,
)


class Starts(BaseCallback):
    def __init__(self):
        self.starts = 0
        self.errors = []

    def on_llm_start(self, model, prompt, **kw):
        self.starts += 1

    def on_llm_error(self, model, error, **kw):
        self.errors.append(type(error).__name__)


def gate(core, clock, rate=1.0, capacity=2.0, **kwargs):
    return RateLimitingCallback(bucket=core.TokenBucket(rate, capacity, clock=clock), **kwargs)


def test_defaults_build_the_active_backends_bucket():
    g = RateLimitingCallback()
    assert type(g.bucket) is prodfast.TokenBucket
    assert g.block is True
    stats = g.get_stats()
    assert set(stats) == {"rate", "capacity", "current_tokens", "throughput", "arrival_rate",
                          "allowed", "denied"}
    assert (stats["rate"], stats["capacity"], stats["current_tokens"]) == (10.0, 20.0, 20.0)


def test_refusal_reaches_the_caller_and_counts_as_an_error(core):
    clock = FakeClock()
    g = gate(core, clock, block=False)
    errors = ErrorTrackingCallback()
    later = Starts()
    m = CallbackManager([g, errors, later], clock=clock)
    ran = []

    @m.instrument(model="m")
    def call(prompt):
        ran.append(prompt)
        return prompt

    assert call("a") == "a" and call("b") == "b"
    with pytest.raises(prodfast.RateLimitError) as info:
        call("c")
    assert info.value.retry_after == pytest.approx(1.0)
    assert "Wait 1.00s" in str(info.value)
    assert ran == ["a", "b"]  # the refused call never ran
    assert errors.get_errors_by_type() == {"RateLimitError": 1}
    assert errors.get_error_rate() == 1 / 3
    # the gate came first, so the refused call started nothing in the later callback
    assert later.starts == 2 and later.errors == ["RateLimitError"]
    metrics = m.metrics()
    assert metrics["errors_by_type"] == {"RateLimitError": 1} and metrics["calls"] == 3
    assert metrics["rate_limit"]["denied"] == 1 and metrics["rate_limit"]["allowed"] == 2
    clock.tick(1.0)
    assert call("d") == "d"


def test_refusal_in_a_with_block_skips_the_body(core):
    clock = FakeClock()
    m = CallbackManager([gate(core, clock, capacity=1.0, block=False)], clock=clock)
    with m.track("m"):
        pass
    body = []
    with pytest.raises(prodfast.RateLimitError):
        with m.track("m"):
            body.append(1)
    assert body == []


def test_a_refusal_is_not_logged_as_a_callback_failure(core, caplog):
    clock = FakeClock()
    m = CallbackManager([gate(core, clock, capacity=1.0, block=False)], clock=clock)
    m.start("m").end()
    with pytest.raises(prodfast.RateLimitError):
        m.start("m")
    assert [r for r in caplog.records if r.name == "prodfast.callbacks"] == []


def test_the_seeds_token_bucket_example(core):
    """Example 2.1.1: rate 10, capacity 20; costs 5, 5, 10, 15 pass, 20 at t=5 is refused."""
    clock = FakeClock()
    g = RateLimitingCallback(block=False, bucket=core.TokenBucket(10.0, 20.0, clock=clock))
    m = CallbackManager([g, ErrorTrackingCallback()], clock=clock)
    results = []
    for t, cost in [(1.0, 5), (2.0, 5), (3.0, 10), (4.0, 15), (5.0, 20)]:
        clock.set(t)
        try:
            with m.track("m", cost=cost):
                pass
            results.append(True)
        except prodfast.RateLimitError:
            results.append(False)
    assert results == [True, True, True, True, False]
    stats = g.get_stats()
    assert stats["current_tokens"] == 15.0
    assert stats["throughput"] == pytest.approx(4 / 5)  # 0.8 req/sec, as the seed computes
    assert stats["arrival_rate"] == pytest.approx(5 / 5)
    assert stats["throughput"] <= min(stats["rate"], stats["arrival_rate"])


def test_blocking_gate_waits_instead_of_refusing(core):
    g = RateLimitingCallback(bucket=core.TokenBucket(500.0, 1.0))
    errors = ErrorTrackingCallback()
    m = CallbackManager([g, errors])
    for _ in range(4):
        with m.track("m"):
            pass
    assert errors.get_stats()["errors"] == 0
    assert g.get_stats()["allowed"] == 4 and g.get_stats()["denied"] == 0


def test_blocking_gate_with_a_timeout_too_short_refuses(core):
    clock = FakeClock()
    g = gate(core, clock, rate=1.0, capacity=1.0, timeout=0.0)
    m = CallbackManager([g], clock=clock)
    m.start("m").end()
    with pytest.raises(prodfast.RateLimitError) as info:
        m.start("m")
    assert info.value.retry_after == pytest.approx(1.0)


def test_seed_allow_request(core):
    clock = FakeClock()
    g = gate(core, clock, rate=1.0, capacity=2.0)
    assert (g.rate, g.capacity, g.tokens) == (1.0, 2.0, 2.0)
    assert [g.allow_request(1.0) for _ in range(3)] == [True, True, False]
    assert g.tokens == 0.0
    clock.tick(0.5)
    assert g.tokens == 0.5
    assert g.allow_request(0.5) is True


class SpyBucket:
    """Delegates to a real bucket and notes which methods the gate used, and whether other
    tasks ran while it waited."""

    limiter_kind = "both"

    def __init__(self, bucket, ticks):
        self.bucket = bucket
        self.ticks = ticks
        self.used = []
        self.ticks_while_waiting = []

    def try_acquire(self, cost=1):
        self.used.append("try_acquire")
        return self.bucket.try_acquire(cost)

    def acquire(self, cost=1, timeout=None):
        self.used.append("acquire")
        return self.bucket.acquire(cost, timeout)

    async def acquire_async(self, cost=1, timeout=None):
        self.used.append("acquire_async")
        before = self.ticks[0]
        ok = await self.bucket.acquire_async(cost, timeout)
        self.ticks_while_waiting.append(self.ticks[0] - before)
        return ok

    def wait_time(self, cost=1):
        return self.bucket.wait_time(cost)

    def stats(self):
        return self.bucket.stats()


def test_async_calls_wait_without_blocking_the_loop(core):
    ticks = [0]
    spy = SpyBucket(core.TokenBucket(40.0, 1.0), ticks)
    g = RateLimitingCallback(bucket=spy)
    timing = TimingCallback(summary_factory=core.LatencySummary)
    m = CallbackManager([g, timing])

    @m.instrument(model="m")
    async def call(i):
        return i

    async def main():
        done = False

        async def ticker():
            while not done:
                ticks[0] += 1
                await asyncio.sleep(0.001)

        t = asyncio.ensure_future(ticker())
        results = await asyncio.gather(*(call(i) for i in range(3)))
        done = True
        await t
        return results

    assert asyncio.run(main()) == [0, 1, 2]
    assert spy.used == ["acquire_async"] * 3
    # the first call had a token; the others waited ~25 ms each while the ticker kept running
    assert max(spy.ticks_while_waiting) > 0
    assert timing.get_stats()["count"] == 3


def test_async_refusal(core):
    clock = FakeClock()
    g = gate(core, clock, capacity=1.0, block=False)
    errors = ErrorTrackingCallback()
    m = CallbackManager([g, errors], clock=clock)

    @m.instrument
    async def call():
        return "ok"

    async def main():
        first = await call()
        with pytest.raises(prodfast.RateLimitError):
            await call()
        with pytest.raises(prodfast.RateLimitError):
            async with m.track("m"):
                pass
        return first

    assert asyncio.run(main()) == "ok"
    assert errors.get_errors_by_type() == {"RateLimitError": 2}


def test_async_stream_refused_before_the_first_token(core):
    clock = FakeClock()
    m = CallbackManager([gate(core, clock, capacity=1.0, block=False)], clock=clock)
    produced = []

    @m.instrument
    async def stream():
        produced.append(1)
        yield "a"

    async def main():
        assert [t async for t in stream()] == ["a"]
        with pytest.raises(prodfast.RateLimitError):
            async for _ in stream():
                pass

    asyncio.run(main())
    assert produced == [1]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"block": 1}, TypeError, "block"),
        ({"timeout": -1.0}, ValueError, "timeout"),
        ({"timeout": "1"}, TypeError, "timeout"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"rate": 0.0}, ValueError, "rate"),
        ({"capacity": -1.0}, ValueError, "capacity"),
        ({"cost": 50.0}, ValueError, "cost"),
        ({"bucket": object()}, TypeError, "bucket"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RateLimitingCallback(**kwargs)


def test_throughput_approaches_min_of_rate_and_arrival_rate(core):
    """Over a long trace of arrivals at 20/s through a 5/s gate, throughput -> 5/s."""
    clock = FakeClock()
    g = gate(core, clock, rate=5.0, capacity=5.0, block=False)
    m = CallbackManager([g], clock=clock)
    for _ in range(2000):
        clock.tick(0.05)
        try:
            with m.track("m"):
                pass
        except prodfast.RateLimitError:
            pass
    stats = g.get_stats()
    assert stats["arrival_rate"] == pytest.approx(20.0, rel=1e-6)
    assert stats["throughput"] == pytest.approx(5.0, rel=0.01)
    assert m.metrics()["errors"] == stats["denied"]



def test_threads_through_a_gate_never_get_more_than_the_bucket_holds(core):
    """Clock frozen: 8 threads x 20 calls against 50 tokens; exactly 50 run, 110 are refused."""
    clock = FakeClock()
    g = gate(core, clock, rate=1.0, capacity=50.0, block=False)
    errors = ErrorTrackingCallback()
    m = CallbackManager([g, errors], clock=clock)
    ran = []
    barrier = threading.Barrier(8)

    @m.instrument(model="m")
    def call(i):
        ran.append(i)

    def worker():
        barrier.wait()
        for i in range(20):
            try:
                call(i)
            except prodfast.RateLimitError:
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ran) == 50
    assert errors.get_stats()["total"] == 160
    assert errors.get_errors_by_type() == {"RateLimitError": 110}
    stats = g.get_stats()
    assert (stats["allowed"], stats["denied"]) == (50, 110)
    assert m.metrics()["calls"] == 160 and m.metrics()["errors"] == 110


BAD_COSTS = [
    (3.0, ValueError, "exceeds capacity"),
    (-1, ValueError, "cost must be finite and >= 0"),
    (float("nan"), ValueError, "cost must be finite and >= 0"),
    ("2", TypeError, "cost must be a real number"),
]


@pytest.mark.parametrize(("cost", "exc", "match"), BAD_COSTS)
def test_a_call_cost_the_bucket_refuses_refuses_the_call(core, cost, exc, match):
    # regression: the bucket's error was logged as a callback bug and the call ran unthrottled
    g = gate(core, FakeClock(), block=False)
    with pytest.raises(exc, match=match) as info:
        g.on_llm_start("m", "p", cost=cost)
    assert info.value.refuses_call is True  # the manager raises it instead of logging it
    assert g.get_stats()["allowed"] == 0 and g.get_stats()["current_tokens"] == 2.0

    async def main():
        with pytest.raises(exc, match=match):
            await g.on_llm_start_async("m", "p", cost=cost)

    asyncio.run(main())


@pytest.mark.parametrize(("cost", "exc", "match"), BAD_COSTS)
def test_a_manager_never_runs_a_call_whose_cost_the_gate_refuses(core, cost, exc, match):
    # regression: 7 of 8 such calls ran unthrottled (the error was logged as a callback bug)
    m = CallbackManager([gate(core, FakeClock(), block=False), ErrorTrackingCallback()])
    ran = []
    for i in range(4):
        with pytest.raises(exc, match=match):
            with m.track("m", cost=cost):
                ran.append(i)
    with pytest.raises(exc, match=match):
        asyncio.run(_in_async_track(m, cost, ran))
    assert ran == []
    assert m.metrics()["errors_by_type"] == {exc.__name__: 5}
    with m.track("m", cost=1):  # a good cost still passes
        ran.append("ok")
    assert ran == ["ok"]


async def _in_async_track(m, cost, ran):
    async with m.track("m", cost=cost):
        ran.append("async")
