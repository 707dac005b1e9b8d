"""Regression tests for crashes and corruption found by adversarial testing (both backends).

Each scenario runs in a child process (this file, run as a script), so that a segfault or an
endless loop holding the GIL fails one test instead of killing or hanging the test run.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import math
import os
import random
import subprocess
import sys
import threading
import time
from fractions import Fraction

import pytest

HERE = os.path.abspath(__file__)
KINDS = ("Cache", "FIFOCache", "LFUCache", "LRUCache", "RRCache", "TTLCache", "TLRUCache")


def make(core, kind, maxsize, getsizeof=None, timer=None, ttl=1000, on_evict=None):
    cls = getattr(core, kind)
    if kind == "TTLCache":
        return cls(maxsize, ttl, timer or time.monotonic, getsizeof, on_evict=on_evict)
    if kind == "TLRUCache":
        ttu = lambda k, v, now: now + ttl  # noqa: E731
        return cls(maxsize, ttu, timer or time.monotonic, getsizeof, on_evict=on_evict)
    if kind == "RRCache":
        return cls(maxsize, random.choice, getsizeof, on_evict=on_evict)
    return cls(maxsize, getsizeof, on_evict=on_evict)


def run_threads(target, n=4):
    errors = []

    def body(seed):
        try:
            target(seed)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent below
            errors.append(repr(exc))

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    return errors


# ---------------------------------------------------------------------- scenarios (child side)


def fraction_sizes_with_threads(core, kind):
    # getsizeof returns Fractions: adding and comparing them is Python code, where another thread
    # may run; the core must not have located an entry it changes afterwards.
    c = make(core, kind, 20, getsizeof=lambda v: Fraction(v % 5 + 1, 3))

    def work(seed):
        rng = random.Random(seed)
        for _ in range(1500):
            k = rng.randrange(40)
            r = rng.random()
            if r < 0.5:
                c[k] = rng.randrange(100)
            elif r < 0.7:
                c.pop(k, None)
            elif r < 0.9:
                c.get(k)
            else:
                len(c), c.currsize  # noqa: B018

    errors = run_threads(work)
    assert not errors, errors[:3]
    c._check()
    assert c.currsize == sum(Fraction(v % 5 + 1, 3) for v in c.values())


def fraction_size_arithmetic_mutates_cache(core, kind):
    # The size's own arithmetic touches the cache (same thread): refused or finished, never a
    # corrupted structure.
    c = None
    armed = [False]

    def meddle():
        if armed[0] and len(c) > 2:
            armed[0] = False
            try:
                c.pop(next(iter(c)), None)
            finally:
                armed[0] = True

    class Size(Fraction):
        def __add__(self, other):
            meddle()
            return Fraction.__add__(self, other)

        __radd__ = __add__

        def __sub__(self, other):
            meddle()
            return Fraction.__sub__(self, other)

        def __rsub__(self, other):
            meddle()
            return Fraction.__rsub__(self, other)

    c = make(core, kind, 6, getsizeof=lambda v: Size(v % 3 + 1))
    for i in range(200):
        armed[0] = True
        try:
            c[i % 9] = i
            if i % 4 == 0:
                c.pop((i + 3) % 9, None)
        except RuntimeError:
            pass
        armed[0] = False
        c._check()


def hash_during_setstate(core, kind):
    # A key's __hash__ runs while the state is restored: it uses the cache being restored, and
    # another thread uses it too. The restore happens whole or not at all.
    target = make(core, kind, 50)
    state_of = {}

    class Key:
        def __init__(self, k):
            self.k = k

        def __hash__(self):
            if state_of.get("armed"):
                target[("hash", self.k)] = self.k
                target.pop(("hash", self.k - 1), None)
            return hash(self.k)

        def __eq__(self, other):
            return isinstance(other, Key) and other.k == self.k

    source = make(core, kind, 50)
    for i in range(30):
        source[Key(i)] = i
    state = source.__getstate__()
    stop = threading.Event()

    def other():
        rng = random.Random(1)
        while not stop.is_set():
            target[rng.randrange(100)] = 1
            target.pop(rng.randrange(100), None)

    t = threading.Thread(target=other)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    t.start()
    try:
        for _ in range(20):
            state_of["armed"] = True
            try:
                target.__setstate__(state)
            except RuntimeError:
                pass
            state_of["armed"] = False
            target._check()
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    target._check()


def inconsistent_states_change_nothing(core, kind):
    sized = kind in ("LRUCache", "LFUCache")
    c = make(core, kind, 4, getsizeof=len if sized else None)
    c["a"] = "x"
    c["b"] = "yy"
    good = c.__getstate__()
    before = list(c.items())

    def variant(items):
        s = list(good)
        s[3] = items
        n = len(items)
        if s[4] is not None:
            s[4] = [(i, 1) for i in range(n)] if kind == "LFUCache" else list(range(n))
        if s[5] is not None:
            s[5] = ([math.inf] * n, list(range(n)), s[5][2])
        return tuple(s)

    size = (lambda v: len(v)) if sized else (lambda v: 1)
    bad = [
        [("a", "x", size("x")), ("a", "y", size("y"))],  # duplicate keys
        [(f"k{i}", "v", size("v")) for i in range(5)],  # more items than maxsize
    ]
    if sized:
        bad += [
            [("a", "x", -1)],  # negative size
            [("a", "xxxxx", 5)],  # size above maxsize
            [("a", "xxx", 3), ("b", "xx", 2)],  # sizes add up past maxsize
        ]
    for items in bad:
        try:
            c.__setstate__(variant(items))
        except ValueError:
            pass
        else:
            raise AssertionError(f"accepted {items!r}")
        assert list(c.items()) == before
        c._check()
    for i in range(100):  # the next sets finish (an overwritten index spun forever)
        c[i] = "v"
    c._check()


def ttl_insert_order_with_threads(core, kind):
    # The time is read, then user code (getsizeof, __eq__ on a hash collision) runs, then the item
    # is linked: sets of other threads, whose time was read later, must not put the expiry order
    # out of order.
    counter = itertools.count()
    clock = [0.0]

    def timer():
        clock[0] += 1.0 if next(counter) % 3 == 0 else 0.0
        return clock[0]

    class Key:
        __slots__ = ("k",)

        def __init__(self, k):
            self.k = k

        def __hash__(self):
            return self.k % 4  # collisions: __eq__ runs

        def __eq__(self, other):
            return isinstance(other, Key) and other.k == self.k

    def getsizeof(v):
        time.sleep(0)
        return 1

    c = make(core, kind, 1000, getsizeof=getsizeof, timer=timer, ttl=40)

    def work(seed):
        rng = random.Random(seed)
        for _ in range(600):
            c[Key(rng.randrange(200))] = seed

    errors = run_threads(work)
    assert not errors, errors[:3]
    c._check()
    with c.timer as now:
        alive = list(c)
        assert len(c) == len(alive)
        c.expire(now)
        assert len(c) == len(list(c)) == len(alive)
    clock[0] += 1000
    assert len(c) == 0 and list(c) == []
    c.expire()
    c._check()
    assert c.currsize == 0


def fraction_timer_with_threads(core, kind):
    # Fraction times and ttl: comparing them is Python code; no spurious RuntimeErrors.
    def timer():
        return Fraction(time.monotonic_ns(), 10**9)

    if kind == "TTLCache":
        c = core.TTLCache(100, Fraction(1, 20), timer)
    else:
        c = core.TLRUCache(100, lambda k, v, now: now + Fraction(1, 20), timer)

    def work(seed):
        rng = random.Random(seed)
        for _ in range(800):
            k = rng.randrange(150)
            r = rng.random()
            if r < 0.5:
                c[k] = k
            elif r < 0.9:
                c.get(k)
            else:
                len(c), c.currsize, k in c  # noqa: B018

    errors = run_threads(work)
    assert not errors, errors[:3]
    c._check()


def popitem_override_clears_during_growing_update(core, kind):
    # Making room for a key's larger value goes through an overriding popitem(), which empties
    # the cache: the update must not write into the entry it had located before.
    base = getattr(core, kind)

    class Odd(base):
        def popitem(self):
            self.clear()
            return ("gone", 0)

    if kind == "TTLCache":
        c = Odd(10, 100, time.monotonic, lambda v: v)
    elif kind == "TLRUCache":
        c = Odd(10, lambda k, v, now: now + 100, time.monotonic, lambda v: v)
    elif kind == "RRCache":
        c = Odd(10, random.choice, lambda v: v)
    else:
        c = Odd(10, lambda v: v)
    for _ in range(50):
        c["a"] = 5
        c["b"] = 4
        try:
            c["a"] = 9
        except RuntimeError:
            pass
        c._check()
        assert c.currsize <= 10


SCENARIOS = {
    f.__name__: f
    for f in (
        popitem_override_clears_during_growing_update,
        fraction_sizes_with_threads,
        fraction_size_arithmetic_mutates_cache,
        hash_during_setstate,
        inconsistent_states_change_nothing,
        ttl_insert_order_with_threads,
        fraction_timer_with_threads,
    )
}

TIMED = ("TTLCache", "TLRUCache")
CASES = [
    (name, kind)
    for name in SCENARIOS
    for kind in (TIMED if name in ("ttl_insert_order_with_threads", "fraction_timer_with_threads") else KINDS)
]


# ---------------------------------------------------------------------- tests (parent side)


@pytest.mark.parametrize(("scenario", "kind"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_in_child_process(core, scenario, kind):
    proc = subprocess.run(
        [sys.executable, HERE, core.__name__, scenario, kind],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(HERE)),
    )
    assert proc.returncode == 0, f"child failed (code {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip() == "ok"


# In-process regressions (no crash possible, only wrong results).


def test_infinite_size_refused_with_infinite_maxsize(core):
    c = core.LRUCache(math.inf, getsizeof=lambda v: v)
    c["a"] = 2.5
    with pytest.raises(ValueError, match="finite"):
        c["b"] = math.inf
    assert c.currsize == 2.5 and list(c) == ["a"]
    c._check()


@pytest.mark.parametrize("kind", TIMED)
@pytest.mark.parametrize("reading", [math.nan, math.inf, -math.inf])
def test_non_finite_timer_reading_refused(core, kind, reading, clock):
    c = make(core, kind, 10, timer=clock, ttl=10)
    clock.set(100.0)
    c["a"] = 1
    clock.set(reading)
    with pytest.raises(ValueError, match="finite time"):
        c["b"] = 2
    with pytest.raises(ValueError, match="finite time"):
        c.expire(reading)
    clock.set(105.0)
    assert list(c.items()) == [("a", 1)] and len(c) == 1
    c._check()


@pytest.mark.parametrize("kind", KINDS)
def test_update_from_another_cache_and_from_itself(core, kind):
    a = make(core, kind, 10)
    b = make(core, kind, 10)
    for i in range(5):
        a[i] = i * i
    b.update(a)
    assert dict(b.items()) == dict(a.items())
    b.update(b)
    assert dict(b.items()) == {i: i * i for i in range(5)}
    b._check()
    assert copy.copy(b)._check() is None


@pytest.mark.parametrize("kind", KINDS)
def test_zero_maxsize_refuses_values_on_every_set_path(core, kind):
    # with on_evict the set takes the general path; without it, the inline one
    for on_evict in (None, print):
        c = make(core, kind, 0, on_evict=on_evict)
        with pytest.raises(ValueError, match="value too large"):
            c["a"] = 1
        assert len(c) == 0
        c._check()


def test_tlru_expiry_heap_agrees_with_the_twin():
    # With the built-in clock the compiled TLRUCache keeps real expiries in a heap (with another
    # timer, in a sorted list, which the model tests cover). Expiries far apart (1000 s steps)
    # make both backends' results independent of the exact clock readings.
    cy = pytest.importorskip("prodfast._core")
    import prodfast._core_py as py

    def ttu(key, value, now):
        return now + (value % 6) * 1000.0  # value % 6 == 0: expired already, not stored

    rng = random.Random(7)
    caches = [mod.TLRUCache(12, ttu) for mod in (cy, py)]
    for step in range(1500):
        op = rng.random()
        key, value, offset = rng.randrange(30), rng.randrange(60), rng.randrange(3)
        results = []
        for c in caches:
            if op < 0.55:
                c[key] = value
                results.append(None)
            elif op < 0.75:
                results.append(c.get(key))
            elif op < 0.85:
                results.append(c.pop(key, None))
            elif op < 0.95:
                results.append(sorted(c.expire(time.monotonic() + 500.0 + 1000.0 * offset)))
            else:
                results.append(c.popitem() if len(c) else None)
            c._check()
        assert results[0] == results[1], (step, results)
        assert list(caches[0].items()) == list(caches[1].items()), step
        assert caches[0].stats() == caches[1].stats(), step


if __name__ == "__main__":
    module, scenario, kind = sys.argv[1:4]
    if module.endswith("_core_py"):
        os.environ["PRODFAST_PURE_PYTHON"] = "1"
    SCENARIOS[scenario](importlib.import_module(module), kind)
    print("ok")
