"""The decorators' hit path over the active backend: locks, cache subclasses, lru_cache's keys.

The compiled backend reads prodfast caches through the engine's own lookup and takes a plain
threading.Lock or RLock in C; these tests check that each shortcut behaves as the protocol it
replaces (cachetools' ``with lock`` around the lookup, ``cache[key]``).
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

import prodfast
from prodfast import cached, cachedmethod, lru_cache


def _held(lock):
    return lock._is_owned() if isinstance(lock, type(threading.RLock())) else lock.locked()


@pytest.mark.parametrize("make_lock", [threading.Lock, threading.RLock], ids=["Lock", "RLock"])
def test_the_lock_is_free_after_hits_misses_and_errors(make_lock):
    lock = make_lock()
    calls = []

    @cached(prodfast.LRUCache(8), lock=lock, info=True)
    def f(x):
        calls.append(x)
        assert not _held(lock)  # the function runs outside the lock, as in cachetools
        if x == "boom":
            raise ValueError("boom")
        return x

    assert [f(1), f(1), f(2), f(2)] == [1, 1, 2, 2] and calls == [1, 2]
    assert f.cache_info() == (2, 2, 8, 2) and not _held(lock)
    with pytest.raises(ValueError, match="boom"):
        f("boom")
    assert not _held(lock)
    with pytest.raises(TypeError, match="unhashable"):
        f([1])  # the key's hash fails under the lock
    assert not _held(lock)
    assert f(1) == 1 and f.cache_info() == (3, 3, 8, 2)  # the unhashable call counted nothing


class _Collides:
    """Equal hashes; comparing two instances raises."""

    def __init__(self, name):
        self.name = name

    def __hash__(self):
        return 7

    def __eq__(self, other):
        raise RuntimeError(f"compared {self.name}")


@pytest.mark.parametrize("make_lock", [threading.Lock, threading.RLock], ids=["Lock", "RLock"])
def test_a_key_comparison_that_raises_releases_the_lock(make_lock):
    lock = make_lock()

    @cached(prodfast.LRUCache(8), lock=lock)
    def f(x):
        return x.name

    assert f(_Collides("a")) == "a"
    with pytest.raises(RuntimeError, match="compared"):
        f(_Collides("b"))
    assert not _held(lock)


def test_a_lock_held_by_another_thread_makes_the_call_wait():
    lock = threading.Lock()

    @cached(prodfast.LRUCache(8), lock=lock)
    def f(x):
        return x * 2

    assert f(1) == 2
    out = []
    lock.acquire()
    t = threading.Thread(target=lambda: out.append(f(1)))
    t.start()
    time.sleep(0.05)
    assert out == [] and t.is_alive()
    lock.release()
    t.join(5)
    assert out == [2] and not lock.locked()


def test_an_rlock_held_by_the_caller_is_taken_again_and_left_held():
    lock = threading.RLock()

    @cached(prodfast.LRUCache(8), lock=lock)
    def f(x):
        return -x

    with lock:
        assert f(1) == -1 and f(1) == -1
        assert lock._is_owned()
    assert not lock._is_owned()


def test_an_rlock_held_by_another_thread_makes_the_call_wait():
    lock = threading.RLock()

    @cached(prodfast.LRUCache(8), lock=lock)
    def f(x):
        return x + 1

    ready, done, out = threading.Event(), threading.Event(), []

    def holder():
        with lock:
            ready.set()
            done.wait(5)

    h = threading.Thread(target=holder)
    h.start()
    ready.wait(5)
    t = threading.Thread(target=lambda: out.append(f(1)))
    t.start()
    time.sleep(0.05)
    assert out == []
    done.set()
    t.join(5)
    h.join(5)
    assert out == [2] and not lock._is_owned()


def test_many_threads_through_a_lock_count_every_call():
    lock = threading.Lock()

    @cached(prodfast.LRUCache(64), lock=lock, info=True)
    def f(x):
        return x

    def work():
        for i in range(2000):
            assert f(i % 16) == i % 16

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = f.cache_info()
    assert info.hits + info.misses == 8000 and info.currsize == 16 and not lock.locked()


class _CountedLock:
    """A context manager that is not a threading lock: the ``with`` protocol, counted."""

    def __init__(self):
        self.enters = self.exits = 0

    def __enter__(self):
        self.enters += 1

    def __exit__(self, *exc):
        self.exits += 1


def test_any_other_lock_gets_the_with_protocol_as_in_cachetools():
    lock = _CountedLock()

    @cached(prodfast.LRUCache(8), lock=lock)
    def f(x):
        return x

    f(1)  # a miss: one hold for the lookup, one for the store
    f(1)  # a hit: one hold
    assert (lock.enters, lock.exits) == (3, 3)


@pytest.mark.parametrize("make_lock", [threading.Lock, threading.RLock], ids=["Lock", "RLock"])
def test_a_condition_is_held_through_its_own_lock_as_with_condition_does(make_lock):
    # cachetools.func's decorators hold a threading.Condition: `with cond` is `with cond._lock`
    inner = make_lock()
    cond = threading.Condition(inner)
    calls = []

    @cached(prodfast.LRUCache(8), condition=cond, info=True)
    def f(x):
        calls.append(x)
        assert not _held(inner)
        return x * 3

    assert [f(1), f(1), f(2)] == [3, 3, 6] and calls == [1, 2] and not _held(inner)
    assert f.cache_info() == (1, 2, 8, 2)
    with pytest.raises(TypeError, match="unhashable"):
        f([1])
    assert not _held(inner)
    # a hit waits while another thread holds the condition
    out = []
    with cond:
        t = threading.Thread(target=lambda: out.append(f(1)))
        t.start()
        time.sleep(0.05)
        assert out == [] and t.is_alive()
    t.join(5)
    assert out == [3] and not _held(inner) and f.cache_info().hits == 2


def test_a_condition_subclass_gets_the_with_protocol():
    class Counted(threading.Condition):
        enters = 0

        def __enter__(self):
            Counted.enters += 1
            return super().__enter__()

    @cached(prodfast.LRUCache(8), condition=Counted())
    def f(x):
        return x

    f(1)  # a miss: three holds, as in cachetools (the lookup, the store, the wake-up)
    f(1)  # a hit: one hold
    assert Counted.enters == 4


def test_a_cache_subclass_overriding_getitem_is_asked():
    class Logged(prodfast.LRUCache):
        def __init__(self, maxsize):
            super().__init__(maxsize)
            self.asked = []

        def __getitem__(self, key):
            self.asked.append(key)
            return super().__getitem__(key)

    cache = Logged(8)

    @cached(cache, lock=threading.Lock())
    def f(x):
        return x

    @cached(cache)
    def g(x):
        return x

    assert f(1) == 1 and f(1) == 1 and g(2) == 2 and g(2) == 2
    assert cache.asked == [(1,), (1,), (2,), (2,)]


def test_missing_gives_the_value_without_calling_the_function():
    class Default(prodfast.LRUCache):
        def __missing__(self, key):
            return ("default", key)

    calls = []

    @cached(Default(8), info=True)
    def f(x):
        calls.append(x)
        return x

    assert f(1) == ("default", (1,)) and calls == []
    assert f.cache_info().hits == 1 and f.cache.stats()["misses"] == 1


def test_missing_raising_keyerror_is_a_miss():
    class Refusing(prodfast.TTLCache):
        def __missing__(self, key):
            raise KeyError(key)

    @cached(Refusing(8, 60), lock=threading.RLock(), info=True)
    def f(x):
        return x * 3

    assert f(2) == 6 and f(2) == 6 and f.cache_info() == (1, 1, 8, 1)


def test_a_cachedmethod_over_a_lock_and_a_subclass():
    class Logged(prodfast.LRUCache):
        def __getitem__(self, key):
            self.asked = getattr(self, "asked", 0) + 1
            return super().__getitem__(key)

    class Svc:
        def __init__(self):
            self.cache = Logged(8)
            self.lock = threading.RLock()

        @cachedmethod(lambda self: self.cache, lock=lambda self: self.lock, info=True)
        def f(self, x):
            assert not self.lock._is_owned()
            return x * 2

    s = Svc()
    assert s.f(1) == 2 and s.f(1) == 2 and s.cache.asked == 2
    assert s.f.cache_info() == (1, 1, 8, 1) and not s.lock._is_owned()


# ---- lru_cache's keys


def test_lru_cache_keys_a_single_argument_by_itself_and_merges_equal_ones():
    @lru_cache
    def f(*args):
        return args

    assert f(1) == (1,) and f(1.0) == (1,) and f(True) == (1,)
    assert f((1,)) == ((1,),) and f(1, 2) == (1, 2) and f() == ()
    assert f("a") == ("a",) and f(("a",)) == (("a",),)
    assert f.cache_info().currsize == 6
    assert f.cache_info().hits == 2


def test_lru_cache_single_unhashable_argument():
    @lru_cache
    def f(x):
        return x

    with pytest.raises(TypeError, match="unhashable type: 'list'"):
        f([1])


@pytest.mark.skipif(
    prodfast.BACKEND != "cython" or sys.implementation.name != "cpython" or sys.version_info >= (3, 13),
    reason="the C lock path is for CPython 3.8-3.12 with the compiled core",
)
def test_the_compiled_core_drives_threading_locks_in_c():
    import prodfast._core as core

    assert core._CACHED_C_LOCKS is True
