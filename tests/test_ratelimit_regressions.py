"""Regressions found by adversarial testing, on both backends.

- LimiterGroup never takes and gives back: a member shared with other groups and direct users
  never grants more than it holds, and a refused group request leaves it exactly as it was;
- one limiter shared by threads that each run their own event loop: acquire_async waits
  correctly in every loop at once (no deadlock, futures resolved on their own loop);
- a blocking acquire whose wait exceeds threading.TIMEOUT_MAX waits (timeout=None) or returns
  False, never OverflowError.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from conftest import FakeClock
from prodfast._ratelimit_py import _rl_nap
from prodfast.limiters import LimiterGroup


def test_shared_member_never_grants_more_than_it_holds(core):
    clock = FakeClock()  # frozen: nothing refills, so at most the capacity is ever granted
    shared = core.TokenBucket(1, 10, clock=clock)
    granted = [0.0] * 4
    others = [core.TokenBucket(1, 3, clock=clock) for _ in range(2)]
    groups = [LimiterGroup([shared, o]) for o in others]
    start = threading.Barrier(4)

    def through_group(i):
        start.wait()
        for _ in range(300):
            if groups[i].try_acquire([2, 1]):
                granted[i] += 2

    def direct(i):
        start.wait()
        for _ in range(300):
            if shared.try_acquire(1):
                granted[i] += 1

    threads = [threading.Thread(target=f, args=(i,)) for i, f in
               enumerate([through_group, through_group, direct, direct])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) <= 10.0
    assert shared.stats()["tokens"] == 10.0 - sum(granted)
    assert granted[0] + granted[1] <= 6.0  # the others hold 3 each


def test_refused_group_leaves_members_exactly_as_they_were(core):
    """A member's clock that lets another user in while the group decides. The old group took
    from the first member, then gave back min(capacity, tokens + cost) after the refusal: 7
    tokens where a bucket that never saw the group holds 6. Now every clock is read first and
    nothing is taken unless all members grant."""
    t = FakeClock()
    shared = core.TokenBucket(1, 10, clock=t)
    meddle = [False]

    def meddling_clock():
        if meddle[0]:
            t.tick(1.0)  # time passes, and someone else uses the shared member meanwhile
            shared.try_acquire(4)
        return t()

    empty = core.TokenBucket(0.001, 5, clock=meddling_clock, initial=0)
    g = LimiterGroup([shared, empty])
    meddle[0] = True
    assert g.try_acquire([6, 5]) is False
    meddle[0] = False
    assert shared.stats()["tokens"] == 6.0  # full, less the other user's 4
    assert shared.stats()["allowed"] == 1
    assert g.try_acquire([6, 0]) is True
    assert shared.stats()["tokens"] == 0.0


def test_one_limiter_many_event_loops_in_threads(core):
    b = core.TokenBucket(400, 1, initial=0)
    per_loop, loops = 8, 3
    results: list = []
    errors: list = []

    def run_loop():
        async def main():
            got = await asyncio.gather(*(b.acquire_async(1) for _ in range(per_loop)))
            results.extend(got)

        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run_loop, daemon=True) for _ in range(loops)]
    start = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(10.0)
    assert not any(th.is_alive() for th in threads), "acquire_async deadlocked"
    assert errors == []
    assert results == [True] * (per_loop * loops)
    elapsed = time.monotonic() - start
    assert elapsed >= (per_loop * loops - 1) / 400 * 0.9  # they still waited their turns
    assert b.stats()["allowed"] == per_loop * loops
    assert b._gate.aqueues == {}


def test_nap_never_exceeds_timeout_max():
    assert _rl_nap(1e300) == threading.TIMEOUT_MAX
    assert _rl_nap(float("inf")) == threading.TIMEOUT_MAX
    assert _rl_nap(0.5) == 0.5 and _rl_nap(None) is None


def test_acquire_with_a_wait_beyond_timeout_max(core, monkeypatch):
    clock = FakeClock()
    slow = core.TokenBucket(1e-12, 1, clock=clock, initial=0)  # the wait: 1e12 s > TIMEOUT_MAX
    assert slow.wait_time(1) > threading.TIMEOUT_MAX
    assert slow.acquire(1, timeout=1e11) is False  # the wait exceeds the timeout: at once
    assert slow.acquire(1, timeout=0) is False
    # timeout=None (and a finite timeout above the wait) wait in naps of at most TIMEOUT_MAX:
    # shrink TIMEOUT_MAX so the naps are observable, then let the fake clock reach the grant
    monkeypatch.setattr(threading, "TIMEOUT_MAX", 0.02)
    outcome: list = []
    waiters = [
        threading.Thread(target=lambda: outcome.append(slow.acquire(1))),
        threading.Thread(target=lambda: outcome.append(slow.acquire(0, timeout=1e300))),
    ]
    for w in waiters:
        w.start()
    time.sleep(0.1)
    assert outcome == []  # still waiting, no OverflowError
    clock.set(2e12)
    for w in waiters:
        w.join(5.0)
    assert outcome == [True, True]


def test_async_acquire_with_a_wait_beyond_timeout_max(core):
    clock = FakeClock()
    slow = core.TokenBucket(1e-12, 1, clock=clock, initial=0)

    async def main():
        assert await slow.acquire_async(1, timeout=1e11) is False
        task = asyncio.ensure_future(slow.acquire_async(1))
        await asyncio.sleep(0.05)
        assert not task.done()  # sleeping, not raising
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert slow._gate.aqueues == {}


def test_an_infinite_wait_refuses_at_once(core):
    never = core.TokenBucket(5e-324, 1, initial=0)  # (1 - 0) / 5e-324 overflows: never
    assert never.wait_time(1) == float("inf")
    assert never.acquire(1) is False
    assert never.stats()["denied"] == 1
    assert LimiterGroup([never]).acquire(1) is False

    async def main():
        return await never.acquire_async(1)

    assert asyncio.run(main()) is False
