"""Limiters: one allowed decision with the real clock, reserve() then settle() beside it, a
sliding window already holding many calls, simulate() per decision, and ``async with`` on an
asyncio limiter.

Every limiter is configured so that the timed decisions are granted (rates far above what a
loop can ask for): the cost measured is the decision itself, not a refusal. The floor for
a decision is one bare ``time.monotonic()`` call from Python, the least a limiter reading
the time must spend; for ``async with`` it is an empty async context manager.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator

import numpy as np

from .peers import PureTokenBucket
from .runner import (
    BACKENDS,
    FLOOR,
    PEER,
    PRODFAST,
    Case,
    Group,
    Missing,
    Settings,
    Timed,
    expect,
    repeat_calls,
    require,
)

AREA = "limiters"
HUGE = 1e12  # a rate and capacity no benchmark loop can exhaust


def _decisions(make: Callable[[], Callable[[], object]], batch: int) -> Callable[[], Timed]:
    """A setup timing ``batch`` calls of the zero-argument decision that ``make`` returns;
    its check makes ``batch`` more decisions and wants every one granted."""

    def setup() -> Timed:
        decide = make()

        def check() -> None:
            granted = sum(1 for _ in range(batch) if decide() is True)
            expect(granted == batch, f"{batch - granted} of {batch} decisions refused")

        return Timed(repeat_calls(decide, batch), batch, check)

    return setup


def _clock_floor(batch: int) -> Callable[[], Timed]:
    """The floor: ``batch`` bare ``time.monotonic()`` calls; the check wants the clock to move
    forward (or stand still), never back."""

    def setup() -> Timed:
        clock = time.monotonic

        def check() -> None:
            readings = [clock() for _ in range(batch)]
            expect(readings == sorted(readings), "time.monotonic() went back")

        return Timed(repeat_calls(clock, batch), batch, check)

    return setup


def _prodfast_decision(module: str, cls_name: str, *args, fill: int = 0):
    def make():
        limiter = require(module, cls_name)(*args)
        for _ in range(fill):
            if not limiter.try_acquire():
                raise RuntimeError(f"{cls_name} refused while being filled")
        if fill:  # the window really holds the calls it is said to
            held = limiter.stats()["in_window"]
            expect(held >= fill, f"the window holds {held} calls, not {fill}")
        return limiter.try_acquire

    return make


def _limits(strategy: str, limit: str, fill: int = 0):
    def make():
        limits = require("limits")
        limiter = getattr(limits.strategies, strategy)(limits.storage.MemoryStorage())
        item = limits.parse(limit)
        for _ in range(fill):
            limiter.hit(item, "bench")
        if fill:  # the window really holds the calls it is said to
            held = item.amount - limiter.get_window_stats(item, "bench").remaining
            expect(held >= fill, f"the window holds {held} calls, not {fill}")
        return lambda: limiter.hit(item, "bench")

    return make


def _pyrate(limit: int, period: str, fill: int = 0):
    def make():
        pl = require("pyrate_limiter", dist="pyrate-limiter")
        limiter = pl.Limiter(pl.Rate(limit, getattr(pl.Duration, period)))
        for _ in range(fill):
            limiter.try_acquire("bench", blocking=False)
        return lambda: limiter.try_acquire("bench", blocking=False)

    return make


def _pure_bucket():
    return PureTokenBucket(HUGE, HUGE).try_acquire


def decision_cases(settings: Settings) -> list[Case]:
    batch = settings.batch
    cases = [Case("time.monotonic()", FLOOR, _clock_floor(batch))]
    for cls_name, args in (
        ("TokenBucket", (HUGE, HUGE)),
        ("LeakyBucket", (HUGE, HUGE)),
        # a short window: the log stays small however fast the loop asks
        ("SlidingWindowLimiter", (10**9, 0.001)),
    ):
        for tag, module in BACKENDS:
            make = _prodfast_decision(module, cls_name, *args)
            cases.append(Case(f"prodfast {cls_name} [{tag}]", PRODFAST, _decisions(make, batch)))
    cases += [
        Case("pure-Python token bucket", PEER, _decisions(_pure_bucket, batch)),
        Case(
            "limits FixedWindow.hit",
            PEER,
            _decisions(_limits("FixedWindowRateLimiter", "1000000000/second"), batch),
        ),
        Case("pyrate-limiter try_acquire", PEER, _decisions(_pyrate(10**9, "SECOND"), batch)),
    ]
    return cases


def _reserve_settle(module: str, cls_name: str, batch: int) -> Callable[[], Timed]:
    """``batch`` rounds of ``reserve(1).settle(1)`` in the loop itself, as repeat_calls times
    one call per round: no extra Python frame between the two."""

    def setup() -> Timed:
        bucket = require(module, cls_name)(HUGE, HUGE)
        reserve = bucket.reserve

        def run() -> None:
            for _ in itertools.repeat(None, batch):
                reserve(1).settle(1)

        def check() -> None:
            r = reserve(1)  # granted at once, or it would wait (and the check time out)
            r.settle(1)
            expect(r.settled, "the reservation did not settle")
            allowed = bucket.stats()["allowed"]
            expect(allowed >= batch + 1, f"stats() counts {allowed} grants, not {batch + 1}")

        return Timed(run, batch, check)

    return setup


def reserve_cases(settings: Settings) -> list[Case]:
    """reserve(1) then settle(1) (one function call) beside try_acquire() on the same bucket."""
    batch = settings.batch
    cases = [Case("time.monotonic()", FLOOR, _clock_floor(batch))]
    for tag, module in BACKENDS:
        try_make = _prodfast_decision(module, "TokenBucket", HUGE, HUGE)
        cases.append(
            Case(f"prodfast TokenBucket.try_acquire() [{tag}]", PRODFAST, _decisions(try_make, batch))
        )
        cases.append(
            Case(
                f"prodfast TokenBucket.reserve()+settle() [{tag}]",
                PRODFAST,
                _reserve_settle(module, "TokenBucket", batch),
            )
        )
    return cases


def full_window_cases(settings: Settings) -> list[Case]:
    batch, fill = settings.batch, settings.window_fill
    cases = [Case("time.monotonic()", FLOOR, _clock_floor(batch))]
    for tag, module in BACKENDS:
        make = _prodfast_decision(module, "SlidingWindowLimiter", 10**9, 3600.0, fill=fill)
        cases.append(
            Case(f"prodfast SlidingWindowLimiter [{tag}]", PRODFAST, _decisions(make, batch))
        )
    cases += [
        Case(
            "limits MovingWindow.hit",
            PEER,
            _decisions(_limits("MovingWindowRateLimiter", "1000000000/hour", fill), batch),
        ),
        Case("pyrate-limiter try_acquire", PEER, _decisions(_pyrate(10**9, "HOUR", fill), batch)),
    ]
    return cases


def _trace(size: int) -> np.ndarray:
    """Request times of a bursty trace: exponential gaps averaging 1 ms."""
    rng = np.random.default_rng(7)
    return np.cumsum(rng.exponential(0.001, size))


def simulate_cases(settings: Settings) -> list[Case]:
    def prodfast(module: str, size: int):
        def setup() -> Timed:
            bucket = require(module, "TokenBucket")(500.0, 50.0)
            times = _trace(size)

            def check() -> None:
                # 1,000 requests/s against 500/s: about half are granted
                out = bucket.simulate(times)
                expect(out.shape == (size,), f"simulate() returned shape {out.shape}")
                share = float(out.mean())
                expect(0.3 < share < 0.8, f"simulate() granted {share:.0%} of a 2x overload")

            return Timed(lambda: bucket.simulate(times), size, check)

        return setup

    def replay() -> Timed:
        # The same decisions, one Python call each, the trace standing in for the clock.
        times = _trace(settings.pure_array).tolist()

        def run() -> int:
            bucket = PureTokenBucket(500.0, 50.0, clock=iter(times).__next__)
            for _ in itertools.repeat(None, len(times) - 1):
                bucket.try_acquire()
            return 0

        def check() -> None:
            bucket = PureTokenBucket(500.0, 50.0, clock=iter(times).__next__)
            granted = sum(bucket.try_acquire() for _ in range(len(times) - 1))
            share = granted / (len(times) - 1)
            expect(0.3 < share < 0.8, f"the replay granted {share:.0%} of a 2x overload")

        return Timed(run, len(times) - 1, check)

    sizes = {"cy": settings.trace, "py": settings.pure_array}
    return [
        *(
            Case(f"prodfast TokenBucket.simulate [{tag}]", PRODFAST, prodfast(module, sizes[tag]))
            for tag, module in BACKENDS
        ),
        Case("pure-Python token bucket replay", PEER, replay),
    ]


# --- asyncio --------------------------------------------------------------------------


class _Empty:
    async def __aenter__(self):
        return None

    async def __aexit__(self, *exc):
        return None


def _async_with(make: Callable[[], object], batch: int) -> Callable[[], Timed]:
    """A setup timing ``batch`` rounds of ``async with limiter: pass`` inside one coroutine."""

    def setup() -> Timed:
        loop = asyncio.new_event_loop()
        try:
            limiter = loop.run_until_complete(_create(make))
        except BaseException:
            loop.close()
            raise

        async def body() -> None:
            for _ in itertools.repeat(None, batch):
                async with limiter:
                    pass

        async def counted() -> int:
            entered = 0
            for _ in range(batch):
                async with limiter:
                    entered += 1
            return entered

        def check() -> None:
            started = time.perf_counter()
            entered = loop.run_until_complete(asyncio.wait_for(counted(), 10.0))
            expect(entered == batch, f"entered {entered} of {batch} times")
            waited = time.perf_counter() - started
            expect(waited < 5.0, f"{batch} entries took {waited:.1f}s: the limiter made them wait")

        return Timed(lambda: loop.run_until_complete(body()), batch, check, close=loop.close)

    return setup


async def _create(make):
    # Built inside the loop, as an application would (some limiters bind to the running loop).
    return make()


def _find_async_limiter():
    for module in ("prodfast._core", "prodfast.limiters", "prodfast"):
        try:
            return require(module, "AsyncLimiter")
        except Missing:
            continue
    raise Missing("prodfast has no AsyncLimiter")


def _active_backend() -> str:
    """AsyncLimiter is a Python layer over whichever backend prodfast chose at import."""
    try:
        return "cy" if require("prodfast").BACKEND == "cython" else "py"
    except Missing:
        return "?"


def async_cases(settings: Settings) -> list[Case]:
    batch = settings.batch
    return [
        Case("empty async with", FLOOR, _async_with(_Empty, batch)),
        Case(
            f"prodfast AsyncLimiter [{_active_backend()}]",
            PRODFAST,
            _async_with(lambda: _find_async_limiter()(HUGE, 1.0), batch),
        ),
        Case(
            "aiolimiter AsyncLimiter",
            PEER,
            _async_with(lambda: require("aiolimiter", "AsyncLimiter")(HUGE, 1.0), batch),
        ),
    ]


def groups(settings: Settings) -> Iterator[Group]:
    yield Group(AREA, "try_acquire()", decision_cases(settings))
    yield Group(AREA, "reserve() + settle()", reserve_cases(settings))
    yield Group(
        AREA,
        f"try_acquire(), {settings.window_fill:,} calls in window",
        full_window_cases(settings),
    )
    yield Group(AREA, "simulate() per decision", simulate_cases(settings), unit="decision")
    yield Group(AREA, "async with limiter", async_cases(settings))
