"""Model-based tests: a hypothesis state machine against a reference model on each backend,
and a differential run of one operation script on both backends.

The model is a dict, a recency list, a set-order list and a fake clock. After every step the
cache's ``_check()`` must pass and everything observable must equal the model.
"""

from __future__ import annotations

import copy
import importlib
import math
import os
import pickle
import random
import types

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from conftest import CYTHON_BACKEND, FakeClock

LONG = os.environ.get("PRODFAST_LONG_TESTS") == "1"
KEYS = st.integers(0, 7)
VALUES = st.integers(0, 30)

KINDS = ("Cache", "FIFOCache", "LFUCache", "LRUCache", "RRCache", "TTLCache", "TLRUCache")
TIMED = ("TTLCache", "TLRUCache")
TTL = 5.0


def _size(value):
    return value % 4  # 0..3: zero-sized values too


def _ttu(key, value, now):
    return now + value % 5  # value % 5 == 0: stored already expired, so dropped


def _first(keys):
    return keys[0]


def make_cache(core, kind, maxsize, clock, sized, on_evict, choice=min):
    kw = {"getsizeof": _size} if sized else {}
    cls = getattr(core, kind)
    if kind == "RRCache":
        return cls(maxsize, choice, on_evict=on_evict, **kw)
    if kind == "TTLCache":
        return cls(maxsize, TTL, clock, on_evict=on_evict, **kw)
    if kind == "TLRUCache":
        return cls(maxsize, _ttu, clock, on_evict=on_evict, **kw)
    return cls(maxsize, on_evict=on_evict, **kw)


class Model:
    """A dict in insertion order (= iteration order) plus each policy spelled out in lists."""

    def __init__(self, kind, maxsize, sized):
        self.kind, self.maxsize, self.sized = kind, maxsize, sized
        self.data = {}  # key -> [value, size, expires, stamp]
        self.order = []  # FIFO/LRU/TTL/TLRU: next victim first
        self.count = {}  # LFU: use count
        self.entered = {}  # LFU: when the key reached its count (ties: earliest goes first)
        self.seq = 0
        self.hits = self.misses = self.evictions = self.expirations = 0
        self.evicted = []

    def next_seq(self):
        self.seq += 1
        return self.seq

    def alive(self, key, now):
        if key not in self.data:
            return False
        return self.kind not in TIMED or now < self.data[key][2]

    def remove(self, key):
        value = self.data.pop(key)[0]
        if key in self.order:
            self.order.remove(key)
        self.count.pop(key, None)
        self.entered.pop(key, None)
        return value

    def expire(self, now):
        if self.kind not in TIMED:
            return []
        gone = sorted((k for k in self.data if not self.alive(k, now)), key=lambda k: self.data[k][2:])
        out = [(k, self.remove(k)) for k in gone]
        self.expirations += len(out)
        self.evicted.extend(out)
        return out

    def currsize(self, now):
        return sum(v[1] for k, v in self.data.items() if self.alive(k, now))

    def live(self, now):
        return [(k, v[0]) for k, v in self.data.items() if self.alive(k, now)]

    def use(self, key):
        # a hit of c[k] / get / setdefault
        if self.kind in ("LRUCache", *TIMED):
            self.order.remove(key)
            self.order.append(key)
        elif self.kind == "LFUCache":
            self.count[key] += 1
            self.entered[key] = self.next_seq()

    def victim(self, keep):
        others = [k for k in self.data if k != keep]
        if self.kind == "Cache":
            return others[0]
        if self.kind == "RRCache":
            return min(others)
        if self.kind == "LFUCache":
            return min(others, key=lambda k: (self.count[k], self.entered[k]))
        return next(k for k in self.order if k != keep)

    def set(self, key, value, now):
        size = _size(value) if self.sized else 1
        if size > self.maxsize:
            raise ValueError("value too large")
        expires = {"TTLCache": now + TTL, "TLRUCache": _ttu(key, value, now)}.get(self.kind)
        self.expire(now)
        if self.kind == "TLRUCache" and not now < expires:
            if key in self.data:
                self.remove(key)
            return
        present = key in self.data
        if present:
            if self.kind in ("FIFOCache", "LRUCache", *TIMED):
                self.order.remove(key)
                self.order.append(key)
            elif self.kind == "LFUCache":
                self.count[key] += 1
                self.entered[key] = self.next_seq()
        total = sum(v[1] for v in self.data.values()) - (self.data[key][1] if present else 0)
        while total + size > self.maxsize:
            victim = self.victim(key if present else None)
            total -= self.data[victim][1]
            self.evicted.append((victim, self.remove(victim)))
            self.evictions += 1
        if present:
            self.data[key][:] = [value, size, expires, self.next_seq()]
            return
        self.data[key] = [value, size, expires, self.next_seq()]
        if self.kind in ("FIFOCache", "LRUCache", *TIMED):
            self.order.append(key)
        elif self.kind == "LFUCache":
            self.count[key] = 1
            self.entered[key] = self.next_seq()

    def lookup(self, key, now):
        if self.alive(key, now):
            self.hits += 1
            self.use(key)
            return self.data[key][0]
        self.misses += 1
        return None

    def popitem(self, now):
        self.expire(now)
        if not self.data:
            return None
        key = self.victim(None)
        return key, self.remove(key)


def make_machine(core, kind, maxsize, sized):
    class CacheMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            self.clock = FakeClock(100.0)
            self.evicted = []
            cb = lambda k, v: self.evicted.append((k, v))  # noqa: E731
            self.cache = make_cache(core, kind, maxsize, self.clock, sized, cb)
            self.model = Model(kind, maxsize, sized)

        @property
        def now(self):
            return self.clock.now

        @rule(key=KEYS, value=VALUES)
        def set(self, key, value):
            try:
                self.model.set(key, value, self.now)
            except ValueError:
                with pytest.raises(ValueError, match="value too large"):
                    self.cache[key] = value
            else:
                self.cache.set(key, value)

        @rule(key=KEYS)
        def get(self, key):
            assert self.cache.get(key, None) == self.model.lookup(key, self.now)

        @rule(key=KEYS)
        def getitem(self, key):
            expected = self.model.lookup(key, self.now)
            if expected is None:
                with pytest.raises(KeyError):
                    self.cache[key]
            else:
                assert self.cache[key] == expected

        @rule(key=KEYS)
        def contains_and_peek(self, key):
            alive = self.model.alive(key, self.now)
            assert (key in self.cache) == alive
            assert self.cache.peek(key, "D") == (self.model.data[key][0] if alive else "D")

        @rule(key=KEYS, value=VALUES)
        def setdefault(self, key, value):
            m = self.model
            if m.alive(key, self.now):
                m.use(key)
                assert self.cache.setdefault(key, value) == m.data[key][0]
                return
            try:
                m.set(key, value, self.now)
            except ValueError:
                with pytest.raises(ValueError, match="value too large"):
                    self.cache.setdefault(key, value)
            else:
                assert self.cache.setdefault(key, value) == value

        @rule(key=KEYS)
        def delete(self, key):
            if self.model.alive(key, self.now):
                del self.cache[key]
                self.model.remove(key)
            else:
                with pytest.raises(KeyError):
                    del self.cache[key]

        @rule(key=KEYS)
        def pop(self, key):
            expected = self.model.remove(key) if self.model.alive(key, self.now) else "D"
            assert self.cache.pop(key, "D") == expected

        @rule()
        def popitem(self):
            expected = self.model.popitem(self.now)
            if expected is None:
                with pytest.raises(KeyError):
                    self.cache.popitem()
            else:
                assert self.cache.popitem() == expected

        @rule(dt=st.sampled_from([0.5, 1.0, 2.5, 4.0]))
        def tick(self, dt):
            self.clock.tick(dt)

        @rule()
        def expire(self):
            if kind in TIMED:
                assert self.cache.expire() == self.model.expire(self.now)

        @rule()
        def clear(self):
            self.cache.clear()
            m = self.model
            for table in (m.data, m.count, m.entered):
                table.clear()
            m.order.clear()

        @rule()
        def reset_stats(self):
            self.cache.reset_stats()
            m = self.model
            m.hits = m.misses = m.evictions = m.expirations = 0

        @rule()
        def update_from_itself(self):
            # dict.update(self) semantics: every live key set again to its own value, in order
            m = self.model
            for key, value in m.live(self.now):
                m.lookup(key, self.now)
                m.set(key, value, self.now)
            self.cache.update(self.cache)

        @invariant()
        def agrees(self):
            if not hasattr(self, "cache"):
                return
            c, m, now = self.cache, self.model, self.now
            c._check()
            live = m.live(now)
            assert list(c.items()) == live
            assert list(c) == [k for k, _ in live]
            assert len(c) == len(live)
            assert c.currsize == m.currsize(now)
            s = c.stats()
            total = m.hits + m.misses
            assert s == {
                "hits": m.hits,
                "misses": m.misses,
                "hit_rate": m.hits / total if total else 0.0,
                "size": len(live),
                "max_size": maxsize,
                "ttl": TTL if kind == "TTLCache" else None,
                "evictions": m.evictions,
                "expirations": m.expirations,
            }
            assert self.evicted == m.evicted

    return CacheMachine


CONFIGS = [
    pytest.param(kind, maxsize, sized, id=f"{kind}-{maxsize}{'-sized' if sized else ''}")
    for kind in KINDS
    for maxsize, sized in ((4, False), (6, True))
] + [pytest.param("TTLCache", 0, True, id="TTLCache-0-sized")]


@pytest.mark.parametrize(("kind", "maxsize", "sized"), CONFIGS)
def test_state_machine(core, kind, maxsize, sized):
    machine = make_machine(core, kind, maxsize, sized)
    machine.TestCase.settings = settings(
        max_examples=400 if LONG else 25,
        stateful_step_count=60 if LONG else 30,
        deadline=None,
    )
    machine.TestCase().runTest()


# ---------------------------------------------------------------- differential: cy vs py


def _script(rng, n):
    ops = []
    for _ in range(n):
        r = rng.random()
        k = rng.randrange(12)
        if r < 0.35:
            ops.append(("set", k, rng.randrange(40)))
        elif r < 0.55:
            ops.append(("get", k))
        elif r < 0.62:
            ops.append(("getitem", k))
        elif r < 0.67:
            ops.append(("contains", k))
        elif r < 0.71:
            ops.append(("peek", k))
        elif r < 0.75:
            ops.append(("pop", k))
        elif r < 0.78:
            ops.append(("del", k))
        elif r < 0.81:
            ops.append(("popitem",))
        elif r < 0.84:
            ops.append(("setdefault", k, rng.randrange(40)))
        elif r < 0.87:
            ops.append(("expire",))
        elif r < 0.97:
            ops.append(("tick", rng.choice([0.25, 1.0, 3.0])))
        elif r < 0.99:
            ops.append(("len",))
        else:
            ops.append(("clear",))
    return ops


def _run(module, config, ops, choice=min):
    kind, maxsize, sized = config
    clock = FakeClock()
    log = []
    cb = lambda k, v: log.append(("evict", k, v))  # noqa: E731
    c = make_cache(module, kind, maxsize, clock, sized, cb, choice)
    for op in ops:
        name = op[0]
        try:
            if name == "set":
                c[op[1]] = op[2]
                r = None
            elif name == "get":
                r = c.get(op[1], "D")
            elif name == "getitem":
                r = c[op[1]]
            elif name == "contains":
                r = op[1] in c
            elif name == "peek":
                r = c.peek(op[1], "D")
            elif name == "pop":
                r = c.pop(op[1], "D")
            elif name == "del":
                del c[op[1]]
                r = None
            elif name == "popitem":
                r = c.popitem()
            elif name == "setdefault":
                r = c.setdefault(op[1], op[2])
            elif name == "expire":
                r = c.expire() if kind in TIMED else None
            elif name == "tick":
                r = clock.tick(op[1])
            elif name == "len":
                r = (len(c), c.currsize)
            else:
                r = c.clear()
        except (KeyError, ValueError) as exc:
            r = (type(exc).__name__, str(exc))
        log.append((op, r, list(c.items()), c.stats()))
        c._check()
    return log


@CYTHON_BACKEND
@pytest.mark.parametrize(("kind", "maxsize", "sized"), CONFIGS)
@pytest.mark.parametrize("seed", range(3 if not LONG else 60))
def test_differential_cython_vs_python(kind, maxsize, sized, seed):
    cy = importlib.import_module("prodfast._core")
    py = importlib.import_module("prodfast._core_py")
    ops = _script(random.Random(seed * 7919 + maxsize), 300)
    config = (kind, maxsize, sized)
    a = _run(cy, config, ops)
    b = _run(py, config, ops)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == y, f"step {i}: {ops[i] if i < len(ops) else ''}"


@CYTHON_BACKEND
@pytest.mark.parametrize("sized", [False, True])
@pytest.mark.parametrize("seed", range(4 if not LONG else 40))
def test_rr_slot_order_is_the_same_on_both_backends(sized, seed):
    # a choice that depends on the order of the sequence it gets: the slot order must agree
    cy = importlib.import_module("prodfast._core")
    py = importlib.import_module("prodfast._core_py")
    ops = _script(random.Random(seed), 300)
    config = ("RRCache", 6, sized)
    a = _run(cy, config, ops, _first)
    b = _run(py, config, ops, _first)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == y, f"step {i}: {ops[i] if i < len(ops) else ''}"


# ---------------------------------------------------------------- one pickle state for both


def _filled(module, kind):
    clock = FakeClock()
    c = make_cache(module, kind, 5, clock, kind in ("LRUCache", "LFUCache", "RRCache"), None)
    for i in range(8):
        c[i] = i + 1
        clock.tick(1.0)
        c.get(i - 2)
        c.get(i - 3)
    return c, clock


@CYTHON_BACKEND
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("direction", ["cy->py", "py->cy"])
def test_state_loads_across_backends(kind, direction):
    cy = importlib.import_module("prodfast._core")
    py = importlib.import_module("prodfast._core_py")
    src, dst = (cy, py) if direction == "cy->py" else (py, cy)
    a, clock = _filled(src, kind)
    state = a.__reduce__()[2]
    cls = getattr(dst, kind)
    b = cls.__new__(cls)
    b.__setstate__(state)
    b._check()
    assert list(b.items()) == list(a.items())
    assert b.stats() == a.stats()
    assert b.currsize == a.currsize
    for i in (100, 101, 102):
        a[i] = 1
        b[i] = 1
        assert list(b.items()) == list(a.items())
    if kind in TIMED:
        assert b.expire(50.0) == a.expire(50.0)
    assert [b.popitem() for _ in range(len(b))] == [a.popitem() for _ in range(len(a))]


# ---------------------------------------------------------------- same surface, same errors


def _public(cls):
    return {n for n in dir(cls) if not n.startswith("_") or n in ("__missing__",)}


@CYTHON_BACKEND
@pytest.mark.parametrize("name", KINDS)
def test_same_public_surface(name):
    cy = getattr(importlib.import_module("prodfast._core"), name)
    py = getattr(importlib.import_module("prodfast._core_py"), name)
    assert _public(cy) == _public(py)
    # the private protocol both twins keep: _check, pickling, copying, subscripting
    for module in (importlib.import_module("prodfast._core"), importlib.import_module("prodfast._core_py")):
        c = make_cache(module, name, 4, FakeClock(), False, None)
        for k in range(6):
            c[k] = k * 10
        assert c._check() is None
        for again in (copy.copy(c), pickle.loads(pickle.dumps(c))):
            assert type(again) is type(c) and list(again.items()) == list(c.items()), name
            assert again._check() is None
        alias = getattr(module, name)[int, int]
        assert isinstance(alias, types.GenericAlias) and alias.__origin__ is getattr(module, name)


BAD_CALLS = [
    ("LRUCache", (-1,), {}),
    ("LRUCache", (1.5,), {}),
    ("LRUCache", (True,), {}),
    ("LRUCache", ("3",), {}),
    ("LRUCache", (None,), {}),
    ("LRUCache", (3,), {"getsizeof": 3}),
    ("LRUCache", (3,), {"on_evict": "x"}),
    ("TTLCache", (3, 0), {}),
    ("TTLCache", (3, -2.5), {}),
    ("TTLCache", (3, float("nan")), {}),
    ("TTLCache", (3, "1"), {}),
    ("TTLCache", (3, True), {}),
    ("TTLCache", (3, 1), {"timer": 1}),
    ("TTLCache", (-3, 1), {}),
    ("TTLCache", (3, 1), {"on_evict": 1}),
    ("TTLCache", (-math.inf, 1), {}),
    ("Cache", (-1,), {}),
    ("Cache", (-math.inf,), {}),
    ("FIFOCache", (2.5,), {}),
    ("LFUCache", (3,), {"getsizeof": 1}),
    ("RRCache", (3, 5), {}),
    ("RRCache", (3,), {"choice": None}),
    ("TLRUCache", (3, None), {}),
    ("TLRUCache", (3, "ttu"), {}),
    ("TLRUCache", (3, max), {"timer": 0}),
    ("TLRUCache", (-1, max), {}),
]


@CYTHON_BACKEND
@pytest.mark.parametrize(("name", "args", "kwargs"), BAD_CALLS)
def test_same_errors_for_bad_arguments(name, args, kwargs):
    outcomes = []
    for mod in ("prodfast._core", "prodfast._core_py"):
        cls = getattr(importlib.import_module(mod), name)
        with pytest.raises((TypeError, ValueError)) as info:
            cls(*args, **kwargs)
        outcomes.append((info.type, str(info.value)))
    assert outcomes[0] == outcomes[1]


def _bad_operations(m):
    c = m.LRUCache(4, getsizeof=lambda v: v)
    ops = (lambda: c.__setitem__("a", 5), lambda: c.__setitem__("a", -1),
           lambda: c.__setitem__("a", "x"), lambda: c.popitem(),
           lambda: c.__setitem__([], 1), lambda: c["missing"],
           lambda: m.LRUCache(0).__setitem__(1, 1))
    out = []
    for op in ops:
        try:
            op()
            out.append(None)
        except Exception as exc:
            out.append((type(exc), str(exc)))
    return out


@CYTHON_BACKEND
def test_same_errors_for_bad_operations():
    cy = _bad_operations(importlib.import_module("prodfast._core"))
    py = _bad_operations(importlib.import_module("prodfast._core_py"))
    assert cy == py
    assert all(r is not None for r in py)
