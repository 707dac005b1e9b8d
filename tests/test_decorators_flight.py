"""Single flight in the decorators: threads, asyncio, self-awaiting calls and shared caches."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import prodfast
import prodfast.compat.cachetools as compat
from prodfast import cached, cachedmethod, lru_cache

THREADS = 8


def finishes(fn, timeout=20.0):
    """Run fn in a thread; return (result, exception) or fail if it is still running."""
    out = {}

    def target():
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: B036 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the call hangs"
    return out.get("result"), out.get("error")


def run_threads(fn, n=THREADS):
    barrier = threading.Barrier(n)
    results, errors = [None] * n, [None] * n

    def worker(i):
        barrier.wait()
        try:
            results[i] = fn()
        except Exception as exc:
            errors[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    return results, errors


DECORATORS = {
    "lru_cache": lambda: lru_cache(maxsize=16),
    "lru_cache-ttl": lambda: lru_cache(maxsize=16, ttl=60),
    "cached-lru": lambda: cached(prodfast.LRUCache(16), info=True),
    "cached-ttl": lambda: cached(prodfast.TTLCache(16, 60), info=True),
    "cached-dict": lambda: cached({}, info=True),
    "func.lru_cache": lambda: compat.func.lru_cache(16),
    "func.ttl_cache": lambda: compat.func.ttl_cache(16, ttl=60),
}


@pytest.mark.parametrize("make", DECORATORS.values(), ids=DECORATORS.keys())
def test_threads_asking_for_one_cold_key_call_once(make):
    calls = []

    @make()
    def slow(x):
        calls.append(x)
        time.sleep(0.05)
        return object()

    results, errors = run_threads(lambda: slow(1))
    assert errors == [None] * THREADS
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    info = slow.cache_info()
    assert (info.hits, info.misses) == (THREADS - 1, 1)


def test_threads_share_the_exception_which_is_not_cached():
    calls = []

    @lru_cache(maxsize=4)
    def failing(x):
        calls.append(x)
        time.sleep(0.05)
        raise LookupError("backend down")

    _, errors = run_threads(lambda: failing(1))
    assert len(calls) == 1
    assert all(isinstance(e, LookupError) for e in errors)
    with pytest.raises(LookupError):
        failing(1)
    assert len(calls) == 2 and len(failing.cache) == 0


@pytest.mark.parametrize("make", DECORATORS.values(), ids=DECORATORS.keys())
def test_sync_recursion_on_the_same_key_fails_like_the_undecorated(make):
    @make()
    def forever(x):
        return forever(x)

    _, error = finishes(lambda: forever(1))
    assert isinstance(error, RecursionError)


def test_a_cycle_of_waiting_threads_is_broken():
    # thread A computes 1 and then needs 2, thread B computes 2 and then needs 1: waiting for each
    # other would be a deadlock the undecorated function does not have
    entered = set()
    barrier = threading.Barrier(2)

    @cached(prodfast.LRUCache(8))
    def f(k):
        first = k not in entered
        entered.add(k)
        if first:
            barrier.wait(10)
            return ("via", f(3 - k))
        return ("leaf", k)

    out = {}
    threads = [threading.Thread(target=lambda k=k: out.__setitem__(k, f(k))) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    assert set(out) == {1, 2}
    assert {out[1][1][0], out[2][1][0]} <= {"via", "leaf"}


# ---------------------------------------------------------------- asyncio


ASYNC_DECORATORS = {
    "lru_cache": lambda: lru_cache(maxsize=16),
    "cached": lambda: cached(prodfast.LRUCache(16), info=True),
    "cached-ttl": lambda: cached(prodfast.TTLCache(16, 60), info=True),
}


@pytest.mark.parametrize("make", ASYNC_DECORATORS.values(), ids=ASYNC_DECORATORS.keys())
def test_async_function_awaiting_itself_fails_like_the_undecorated(make):
    async def undecorated(x):
        return await undecorated(x)

    @make()
    async def decorated(x):
        return await decorated(x)

    for fn in (undecorated, decorated):
        _, error = finishes(lambda fn=fn: asyncio.run(asyncio.wait_for(fn(1), 15)))
        assert isinstance(error, RecursionError), (fn, error)


def test_async_cycle_through_two_keys_fails_like_the_undecorated():
    @lru_cache(maxsize=16)
    async def ping(x):
        return await pong(x)

    @lru_cache(maxsize=16)
    async def pong(x):
        return await ping(x)

    _, error = finishes(lambda: asyncio.run(asyncio.wait_for(ping(1), 15)))
    assert isinstance(error, RecursionError)
    assert ping._inflight == {} and pong._inflight == {}


def test_async_method_cached_per_key_and_shared_in_flight():
    class Service:
        def __init__(self):
            self.cache = prodfast.LRUCache(8)
            self.calls = 0

        @cachedmethod(lambda self: self.cache, info=True)
        async def fetch(self, x):
            self.calls += 1
            await asyncio.sleep(0.01)
            return x * 2

    async def main(svc):
        first = await asyncio.gather(*(svc.fetch(3) for _ in range(5)))
        return first, await svc.fetch(3)

    svc = Service()
    first, again = asyncio.run(main(svc))
    assert first == [6] * 5 and again == 6 and svc.calls == 1
    assert svc.fetch.cache_info() == (5, 1, 8, 1)


def test_positional_typed_as_in_functools():
    @lru_cache(4, True)
    def f(x):
        return type(x).__name__

    assert f(1) == "int" and f(1.0) == "float"
    assert f.cache_info().currsize == 2
    assert f.cache_parameters() == {"maxsize": 4, "typed": True, "ttl": None}


# ---------------------------------------------------------------- the shared-cache protocol


class FakeShared:
    """A cache shared by processes, reduced to the protocol: the decorator must use it alone."""

    def __init__(self):
        self.data = {}
        self.computed = 0

    def get_or_compute(self, key, compute):
        if key not in self.data:
            value = compute()  # an exception propagates and nothing is stored
            self.computed += 1
            self.data[key] = value
        return self.data[key]

    async def aget_or_compute(self, key, compute):
        if key not in self.data:
            value = await compute()
            self.computed += 1
            self.data[key] = value
        return self.data[key]

    def __getitem__(self, key):
        raise AssertionError("the decorator bypassed get_or_compute")

    __setitem__ = __getitem__

    def __len__(self):
        return len(self.data)

    def clear(self):
        self.data.clear()


class CountedLock:
    def __init__(self):
        self.count = 0
        self._lock = threading.RLock()

    def __enter__(self):
        self.count += 1
        self._lock.acquire()

    def __exit__(self, *exc):
        self._lock.release()


def test_shared_cache_sync_protocol():
    shared = FakeShared()
    lock = CountedLock()
    calls = []

    @cached(shared, lock=lock, info=True)
    def f(x):
        calls.append(x)
        if x < 0:
            raise ValueError("negative")
        return x * 10

    assert f(1) == 10 and f(1) == 10 and f(2) == 20
    assert calls == [1, 2] and shared.computed == 2
    assert f.cache_info() == (1, 2, None, 2)
    with pytest.raises(ValueError, match="negative"):
        f(-1)
    assert -1 not in shared.data and (-1,) not in shared.data
    assert lock.count == 4 + 1  # around each call, and cache_info()
    f.cache_clear()
    assert shared.data == {} and f.cache_info() == (0, 0, None, 0)


def test_shared_cache_with_condition_and_method():
    shared = FakeShared()

    class Model:
        cond = threading.Condition()

        @cachedmethod(lambda self: shared, condition=lambda self: self.cond, info=True)
        def predict(self, x):
            return -x

    m = Model()
    assert m.predict(3) == -3 and m.predict(3) == -3
    assert m.predict.cache_info() == (1, 1, None, 1) and shared.computed == 1


def test_shared_cache_async_protocol():
    shared = FakeShared()
    calls = []

    @cached(shared, info=True)
    async def embed(text):
        calls.append(text)
        await asyncio.sleep(0)
        return len(text)

    async def main():
        return [await embed("ab"), await embed("ab"), await embed("abc")]

    assert asyncio.run(main()) == [2, 2, 3]
    assert calls == ["ab", "abc"] and shared.computed == 2
    assert embed.cache_info() == (1, 2, None, 2)
