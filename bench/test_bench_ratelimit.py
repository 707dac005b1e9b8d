"""Rate-limiter speed, both backends side by side with the peers, in one run.

    pytest bench/test_bench_ratelimit.py --benchmark-only --benchmark-group-by=group \
        --benchmark-columns=median,iqr,rounds

Groups: one decision (try_acquire with the default clock, vs a bare time.monotonic() call,
limits, pyrate-limiter and a pure-Python token bucket); reserve(1) + settle(1) beside
try_acquire(); a sliding window already holding 1e5
calls (vs limits' moving window); simulate() per 1e5 decisions; AsyncLimiter `async with`
per 1000 entries (vs aiolimiter and an empty async context manager).
"""

from __future__ import annotations

import asyncio
import time

import aiolimiter
import numpy as np
import pytest
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from pyrate_limiter import Duration, Limiter, Rate

import prodfast

BIG = 1e12  # a limit that never refuses: every benchmark measures the allowing path
N_SIM = 100_000
N_ASYNC = 1000


class SeedTokenBucket:
    """The seed's pure-Python token bucket (RateLimitingCallback), on the monotonic clock."""

    def __init__(self, rate: float = 10.0, capacity: float = 20.0) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.last_update = time.monotonic()

    def _refill_tokens(self) -> None:
        now = time.monotonic()
        delta_t = now - self.last_update
        self.tokens = min(self.capacity, self.tokens + self.rate * delta_t)
        self.last_update = now

    def allow_request(self, cost: float = 1.0) -> bool:
        self._refill_tokens()
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


# ---- one decision ----------------------------------------------------------------------------

ONE = pytest.mark.parametrize("n", [1])  # operations per benchmarked call (make bench groups by n)
DECIDE = pytest.mark.benchmark(group="ratelimit: one decision")


@DECIDE
@ONE
def test_bare_monotonic_call(n, benchmark):
    benchmark(time.monotonic)


@DECIDE
@ONE
def test_token_bucket_try_acquire(n, benchmark, core):
    b = core.TokenBucket(BIG, BIG)
    assert benchmark(b.try_acquire) is True


@DECIDE
@ONE
def test_leaky_bucket_try_acquire(n, benchmark, core):
    b = core.LeakyBucket(BIG, BIG)
    assert benchmark(b.try_acquire) is True


@DECIDE
@ONE
def test_sliding_window_try_acquire(n, benchmark, core):
    w = core.SlidingWindowLimiter(10**9, 1e-3)  # calls leave the window as fast as they come
    assert benchmark(w.try_acquire) is True


@DECIDE
@ONE
def test_token_bucket_try_acquire_cost(n, benchmark, core):
    b = core.TokenBucket(BIG, BIG)
    assert benchmark(b.try_acquire, 2.5) is True


@DECIDE
@ONE
def test_pure_python_seed_bucket(n, benchmark):
    b = SeedTokenBucket(BIG, BIG)
    assert benchmark(b.allow_request) is True


@DECIDE
@ONE
def test_limits_fixed_window_hit(n, benchmark):
    limiter = FixedWindowRateLimiter(MemoryStorage())
    item = parse("1000000000/second")
    assert benchmark(limiter.hit, item, "bench") is True


@DECIDE
@ONE
def test_pyrate_limiter_try_acquire(n, benchmark):
    limiter = Limiter(Rate(10**9, Duration.SECOND))
    try:
        assert benchmark(limiter.try_acquire, "bench", blocking=False) is True
    finally:
        limiter.close()


# ---- reserve, then settle ------------------------------------------------------------------

RESERVE = pytest.mark.benchmark(group="ratelimit: reserve() + settle()")


@RESERVE
@ONE
def test_token_bucket_try_acquire_beside_reserve(n, benchmark, core):
    b = core.TokenBucket(BIG, BIG)
    assert benchmark(b.try_acquire) is True


@RESERVE
@ONE
def test_token_bucket_reserve_settle(n, benchmark, core):
    b = core.TokenBucket(BIG, BIG)

    def reserve_settle():
        r = b.reserve(1)
        r.settle(1)
        return r.settled

    assert benchmark(reserve_settle) is True
    assert b.stats()["allowed"] >= 1


# ---- a window already holding 1e5 calls ------------------------------------------------------

# max_time bounds how many more calls the benchmark itself logs (each one stays in the window)
FULL = pytest.mark.benchmark(group="ratelimit: window holding 1e5 calls", max_time=0.2)


@FULL
@ONE
def test_sliding_window_1e5_in_window(n, benchmark, core):
    w = core.SlidingWindowLimiter(10**8, 3600.0)
    for _ in range(100_000):
        w.try_acquire()
    assert w.stats()["in_window"] == 100_000
    assert benchmark(w.try_acquire) is True


@FULL
@ONE
def test_limits_moving_window_1e5(n, benchmark):
    limiter = MovingWindowRateLimiter(MemoryStorage())
    item = parse("10000000/hour")
    for _ in range(100_000):
        limiter.hit(item, "bench")
    assert benchmark(limiter.hit, item, "bench") is True


# ---- simulate ------------------------------------------------------------------------------

SIM = pytest.mark.benchmark(group="ratelimit: simulate 1e5 decisions")


@pytest.fixture(scope="module")
def sim_trace():
    rng = np.random.default_rng(5)
    times = np.cumsum(rng.exponential(0.01, N_SIM))
    return times, rng.integers(1, 4, N_SIM).astype(np.float64)


@SIM
@pytest.mark.parametrize("n", [N_SIM])
@pytest.mark.parametrize("costs_kind", ["unit", "random"])
@pytest.mark.parametrize("kind", ["token", "leaky", "window"])
def test_simulate(n, benchmark, core, sim_trace, kind, costs_kind):
    """About 60 % of these requests are granted; with "random" costs (1..3) the outcome of
    each decision is unpredictable, which costs the CPU a branch misprediction per decision."""
    times, costs = sim_trace
    if costs_kind == "unit":
        costs = None
    lim = {
        "token": lambda: core.TokenBucket(100, 50),
        "leaky": lambda: core.LeakyBucket(100, 50),
        "window": lambda: core.SlidingWindowLimiter(50, 0.5),
    }[kind]()
    out = benchmark(lim.simulate, times, costs)
    assert out.shape == (n,) and 0 < out.sum() < n


# ---- AsyncLimiter ----------------------------------------------------------------------------

ASYNC = pytest.mark.benchmark(group="ratelimit: 1000 x async with")


class EmptyAsyncContext:
    async def __aenter__(self):
        return None

    async def __aexit__(self, *exc):
        return None


def bench_async_with(benchmark, n, make):
    loop = asyncio.new_event_loop()
    try:
        lim = make()

        async def enter_many():
            for _ in range(n):
                async with lim:
                    pass

        benchmark(lambda: loop.run_until_complete(enter_many()))
    finally:
        loop.close()


@ASYNC
@pytest.mark.parametrize("n", [N_ASYNC])
def test_async_limiter_async_with(n, benchmark):
    bench_async_with(benchmark, n, lambda: prodfast.AsyncLimiter(BIG, 1))


@ASYNC
@pytest.mark.parametrize("n", [N_ASYNC])
def test_aiolimiter_async_with(n, benchmark):
    bench_async_with(benchmark, n, lambda: aiolimiter.AsyncLimiter(BIG, 1))


@ASYNC
@pytest.mark.parametrize("n", [N_ASYNC])
def test_empty_async_context_manager(n, benchmark):
    bench_async_with(benchmark, n, EmptyAsyncContext)
