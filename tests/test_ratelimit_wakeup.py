"""A give-back (settle below the estimate, cancel) wakes the callers already waiting.

Without it the head waiter sleeps the wait it computed before the give-back; by the time it
wakes the bucket has often refilled, the refund is capped away, and with callers queued the
throughput follows the estimates, not the settled usage.

- asyncio (a virtual loop clock, so the totals are exact): N reservations of an estimate,
  each settled lower after a while, finish as soon as the settled usage allows;
- threads, and loops in other threads: the limiter's clock stands still, so the computed wait
  is far longer than the test; only a wake-up can let the waiter through;
- LimiterGroup: a member's give-back wakes the group's head, and the group's give-back the
  member's; FIFO order holds after a wake-up.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from conftest import FakeClock
from prodfast.limiters import LimiterGroup
from tests.test_ratelimit_async import VirtualClockLoop

STUCK = 10.0  # seconds of real time a woken waiter may take (its computed wait is ~1000 s)


@pytest.fixture
def vloop():
    loop = VirtualClockLoop()
    yield loop
    loop.close()


# ---- asyncio: the scenario of the report, scaled down ----------------------------------------

RATE, CAPACITY, N, ESTIMATE, ACTUAL, CALL = 600.0, 500.0, 8, 451, 251, 0.05


def settled_bound():
    """When the last of N calls ends if the settled usage is what counts: its reservation is
    granted once capacity + rate x t covers the N - 1 settled calls and its own estimate."""
    last_grant = ((N - 1) * ACTUAL + ESTIMATE - CAPACITY) / RATE
    return last_grant + CALL


def estimates_bound():
    """When it ends if every call kept its estimate (the N - 1 earlier ones and its own)."""
    return (N * ESTIMATE - CAPACITY) / RATE + CALL


def make(core, kind, clock):
    if kind == "token":
        return core.TokenBucket(RATE, CAPACITY, clock=clock)
    if kind == "leaky":
        return core.LeakyBucket(RATE, CAPACITY, clock=clock)
    return LimiterGroup(
        [core.TokenBucket(1000.0, 20, clock=clock), core.TokenBucket(RATE, CAPACITY, clock=clock)]
    )


@pytest.mark.parametrize("kind", ["token", "leaky", "group"])
@pytest.mark.parametrize("how", ["settle", "context"])
def test_queued_reservations_follow_the_settled_usage(core, vloop, kind, how):
    lim = make(core, kind, vloop.time)
    cost = (1, ESTIMATE) if kind == "group" else ESTIMATE
    actual = (1, ACTUAL) if kind == "group" else ACTUAL

    async def call():
        r = await lim.reserve_async(cost)
        if how == "context":
            async with r:
                await asyncio.sleep(CALL)
                r.settle(actual)
        else:
            await asyncio.sleep(CALL)
            r.settle(actual)

    async def main():
        await asyncio.gather(*(call() for _ in range(N)))
        return vloop.time()

    total = vloop.run_until_complete(main())
    # without the wake-ups: about estimates_bound() (4.3 s here); with them, the settled bound
    assert settled_bound() < estimates_bound() - 1.0
    assert total == pytest.approx(settled_bound(), abs=0.02)


def test_queued_window_reservations_follow_the_settled_usage(core, vloop):
    w = core.SlidingWindowLimiter(4, 10.0, clock=vloop.time)
    ends = []

    async def call():
        r = await w.reserve_async(3)  # estimated 3 calls, made 1
        await asyncio.sleep(0.5)
        r.settle(1)
        ends.append(vloop.time())

    async def main():
        await asyncio.gather(*(call() for _ in range(4)))

    vloop.run_until_complete(main())
    # each give-back lets the next reservation of 3 in at once (1 + 3 <= 4, then 2 + 3 > 4:
    # the third waits for the first calls to leave the window at t=10)
    assert ends == pytest.approx([0.5, 1.0, 10.5, 11.0], abs=1e-3)


def test_cancel_wakes_the_head_and_fifo_order_holds(core, vloop):
    b = core.TokenBucket(1.0, 10, clock=vloop.time)
    order = []

    async def want(name, cost):
        assert await b.acquire_async(cost) is True
        order.append((name, vloop.time()))

    async def main():
        r = await b.reserve_async(10)
        waiters = [asyncio.ensure_future(want(n, c)) for n, c in (("a", 6), ("b", 1), ("c", 3))]
        await asyncio.sleep(1.0)
        r.cancel()  # 10 tokens back (capped at capacity: 10)
        await asyncio.gather(*waiters)

    vloop.run_until_complete(main())
    assert order == [("a", pytest.approx(1.0)), ("b", pytest.approx(1.0)), ("c", pytest.approx(1.0))]


def test_a_debt_wakes_nobody_early(core, vloop):
    b = core.TokenBucket(1.0, 10, clock=vloop.time)

    async def main():
        r = await b.reserve_async(10)
        head = asyncio.ensure_future(b.acquire_async(5))
        await asyncio.sleep(1.0)
        r.settle(12)  # 2 more than reserved: the head now waits 2 s longer
        await head
        return vloop.time()

    assert vloop.run_until_complete(main()) == pytest.approx(7.0)


def test_timeout_still_holds_after_a_give_back_too_small(core, vloop):
    b = core.TokenBucket(1.0, 10, clock=vloop.time)

    async def main():
        r = await b.reserve_async(10)
        head = asyncio.ensure_future(b.acquire_async(8, timeout=3.0))
        await asyncio.sleep(1.0)
        r.settle(9)  # 1 back: 2 tokens at t=1, 8 at t=7, beyond the timeout
        granted = await head
        return granted, vloop.time()

    granted, t = vloop.run_until_complete(main())
    assert granted is False and t == pytest.approx(1.0)
    assert b._gate.aqueues == {}


# ---- threads, and loops in other threads: only a wake-up lets the waiter through -------------


def frozen(core, kind, clock):
    """A limiter whose clock stands still, emptied by a reservation: a waiter's computed wait
    is ~1000 s, so it can only get through when the reservation gives back."""
    if kind == "token":
        lim = core.TokenBucket(0.001, 10, clock=clock)
    elif kind == "leaky":
        lim = core.LeakyBucket(0.001, 10, clock=clock)
    elif kind == "window":
        lim = core.SlidingWindowLimiter(10, 1000.0, clock=clock)
    else:
        lim = LimiterGroup([core.TokenBucket(0.001, 10, clock=clock)])
    return lim, lim.reserve(10)


def queued(lim, n):
    gate = lim._gate
    return len(gate.queue) + sum(len(q) for q in gate.aqueues.values()) >= n


def wait_until(cond):
    deadline = threading.Event()
    for _ in range(2000):
        if cond():
            return True
        deadline.wait(0.005)
    return cond()


@pytest.mark.parametrize("kind", ["token", "leaky", "window", "group"])
@pytest.mark.parametrize("give_back", ["settle", "cancel"])
def test_a_blocked_thread_is_woken_by_a_give_back(core, kind, give_back):
    lim, r = frozen(core, kind, FakeClock())
    got = []
    t = threading.Thread(target=lambda: got.append(lim.acquire(4)), daemon=True)
    t.start()
    assert wait_until(lambda: queued(lim, 1))
    r.settle(5) if give_back == "settle" else r.cancel()
    t.join(STUCK)
    assert got == [True]


@pytest.mark.parametrize("kind", ["token", "leaky", "window", "group"])
def test_a_task_on_a_loop_in_another_thread_is_woken_by_a_give_back(core, kind):
    lim, r = frozen(core, kind, FakeClock())
    got = []

    def other_thread():
        got.append(asyncio.run(lim.acquire_async(4)))

    t = threading.Thread(target=other_thread, daemon=True)
    t.start()
    assert wait_until(lambda: queued(lim, 1))
    r.settle(5)  # from this thread: reaches the other loop through call_soon_threadsafe
    t.join(STUCK)
    assert got == [True]


def test_heads_of_several_loops_and_threads_are_all_woken(core):
    lim, r = frozen(core, "token", FakeClock())
    got = []
    lock = threading.Lock()

    def loop_thread():
        ok = asyncio.run(lim.acquire_async(3))
        with lock:
            got.append(ok)

    def plain_thread():
        ok = lim.acquire(3)
        with lock:
            got.append(ok)

    threads = [threading.Thread(target=f, daemon=True) for f in (loop_thread, loop_thread, plain_thread)]
    for t in threads:
        t.start()
    assert wait_until(lambda: queued(lim, 3))
    r.cancel()  # 10 back: 3 + 3 + 3 fit
    for t in threads:
        t.join(STUCK)
    assert got == [True, True, True]
    assert lim._gate.aqueues == {} and not lim._gate.queue


def test_a_member_give_back_wakes_the_group(core):
    clock = FakeClock()
    tpm = core.TokenBucket(0.001, 10, clock=clock)
    group = LimiterGroup([core.TokenBucket(0.001, 100, clock=clock), tpm])
    own = tpm.reserve(10)  # the member's own reservation empties it
    got = []
    t = threading.Thread(target=lambda: got.append(group.acquire((1, 4))), daemon=True)
    t.start()
    assert wait_until(lambda: queued(group, 1))
    own.settle(6)  # 4 back to the member: the group's head takes them
    t.join(STUCK)
    assert got == [True]



def test_a_group_give_back_wakes_a_member_waiter(core):
    clock = FakeClock()
    tpm = core.TokenBucket(0.001, 10, clock=clock)
    group = LimiterGroup([core.TokenBucket(0.001, 100, clock=clock), tpm])
    gr = group.reserve((1, 10))  # empties tpm
    got = []
    t = threading.Thread(target=lambda: got.append(tpm.acquire(4)), daemon=True)
    t.start()
    assert wait_until(lambda: queued(tpm, 1))
    gr.settle((1, 5))
    t.join(STUCK)
    assert got == [True]
