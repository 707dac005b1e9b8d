"""Threads hammering one cache: no corruption, counters add up."""

from __future__ import annotations

import contextlib
import random
import sys
import threading

import pytest

N_THREADS = 4
N_OPS = 4000


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


class Key:
    """A key with Python-level __hash__/__eq__: thread switches can happen inside lookups."""

    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __hash__(self):
        return hash(self.k)

    def __eq__(self, other):
        return isinstance(other, Key) and other.k == self.k


def hammer(cache, seed, counts, errors, make_key):
    rng = random.Random(seed)
    lookups = 0
    try:
        for _ in range(N_OPS):
            k = make_key(rng.randrange(64))
            r = rng.random()
            if r < 0.4:
                cache[k] = rng.randrange(1000)
            elif r < 0.7:
                cache.get(k)
                lookups += 1
            elif r < 0.8:
                try:
                    cache[k]
                except KeyError:
                    pass
                lookups += 1
            elif r < 0.85:
                cache.pop(k, None)
            elif r < 0.9:
                k in cache  # noqa: B015
                cache.peek(k)
            elif r < 0.93:
                try:
                    cache.popitem()
                except KeyError:
                    pass
            elif r < 0.96:
                list(cache.items())
            elif r < 0.98:
                len(cache)
                cache.stats()
            else:
                cache.setdefault(k, 0)
    except RuntimeError as exc:  # an iteration that saw a concurrent change
        if "iteration" not in str(exc):
            errors.append(exc)
    except Exception as exc:  # pragma: no cover - reported below
        errors.append(exc)
    counts.append(lookups)


def _items_safely(cache):
    while True:
        try:
            return list(cache.items())
        except RuntimeError:
            continue


def first(seq):
    return seq[0]


KINDS = ["lru", "ttl", "sized", "cache", "fifo", "lfu", "lfu-sized", "rr", "rr-sized", "tlru", "tlru-sized"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("keys", ["int", "pykey"])
def test_threads_hammer_one_cache(core, kind, keys, fast_switching):
    evicted = []
    lock = threading.Lock()

    def on_evict(k, v):
        with lock:
            evicted.append(k)

    t = [0.0]

    def timer():
        t[0] += 0.001  # time moves on every read, from every thread
        return t[0]

    def size(v):
        return v % 7 + 1

    def ttu(k, v, now):
        return now + 0.1 + (v % 5) * 0.1

    if kind == "lru":
        cache = core.LRUCache(32, on_evict=on_evict)
    elif kind == "ttl":
        cache = core.TTLCache(32, 0.5, timer=timer, on_evict=on_evict)
    elif kind == "sized":
        cache = core.LRUCache(100, getsizeof=size, on_evict=on_evict)
    elif kind == "cache":
        cache = core.Cache(32, on_evict=on_evict)
    elif kind == "fifo":
        cache = core.FIFOCache(32, on_evict=on_evict)
    elif kind.startswith("lfu"):
        cache = core.LFUCache(100, getsizeof=size, on_evict=on_evict) if "sized" in kind else core.LFUCache(32, on_evict=on_evict)
    elif kind.startswith("rr"):
        getsizeof = size if "sized" in kind else None
        cache = core.RRCache(100 if getsizeof else 32, random.choice if getsizeof else first, getsizeof, on_evict=on_evict)
    else:
        getsizeof = size if "sized" in kind else None
        cache = core.TLRUCache(100 if getsizeof else 32, ttu, timer, getsizeof, on_evict=on_evict)
    make_key = int if keys == "int" else Key
    counts, errors = [], []
    threads = [
        threading.Thread(target=hammer, args=(cache, seed, counts, errors, make_key))
        for seed in range(N_THREADS)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    cache._check()
    stats = cache.stats()
    assert stats["hits"] + stats["misses"] == sum(counts)
    assert stats["evictions"] + stats["expirations"] == len(evicted)
    # this timer moves on at every read: items() and len() see one time only with it frozen
    with contextlib.nullcontext() if not hasattr(cache, "timer") else cache.timer:
        items = _items_safely(cache)
        assert len(items) == len(cache) <= 100
    assert cache.currsize <= cache.maxsize


def test_threads_with_iteration_and_clear(core, fast_switching):
    cache = core.LRUCache(50)
    stop = threading.Event()
    errors = []

    def writer():
        i = 0
        while not stop.is_set():
            cache[i % 80] = i
            if i % 500 == 0:
                cache.clear()
            i += 1

    def reader():
        try:
            for _ in range(300):
                try:
                    list(cache)
                    list(cache.values())
                except RuntimeError as exc:
                    assert "iteration" in str(exc)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    w = threading.Thread(target=writer)
    readers = [threading.Thread(target=reader) for _ in range(2)]
    w.start()
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    stop.set()
    w.join()
    assert not errors
    cache._check()
