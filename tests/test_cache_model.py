"""Model-based tests: a hypothesis state machine against a reference model on each backend,
and a differential run of one operation script on both backends.

The model is a dict, a recency list, a set-order list and a fake clock. After every step the
cache's ``_check()`` must pass and everything observable must equal the model.
"""

from __future__ import annotations

import importlib
import os
import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from conftest import CYTHON_BACKEND, FakeClock

LONG = os.environ.get("PRODFAST_LONG_TESTS") == "1"
KEYS = st.integers(0, 7)
VALUES = st.integers(0, 30)


def _size(value):
    return value % 4  # 0..3: zero-sized values too


class Model:
    def __init__(self, maxsize, ttl, sized):
        self.maxsize, self.ttl, self.sized = maxsize, ttl, sized
        self.data = {}  # key -> (value, size, expires)
        self.order = []  # recency, LRU first
        self.xorder = []  # set order (= expiry order)
        self.hits = self.misses = self.evictions = self.expirations = 0
        self.evicted = []

    def alive(self, key, now):
        return key in self.data and (self.ttl is None or now < self.data[key][2])

    def _remove(self, key):
        value = self.data.pop(key)[0]
        self.order.remove(key)
        self.xorder.remove(key)
        return value

    def expire(self, now):
        out = []
        if self.ttl is None:
            return out
        while self.xorder and not now < self.data[self.xorder[0]][2]:
            key = self.xorder[0]
            out.append((key, self._remove(key)))
        self.expirations += len(out)
        self.evicted.extend(out)
        return out

    def currsize(self, now):
        return sum(s for k, (v, s, e) in self.data.items() if self.alive(k, now))

    def live(self, now):
        return [(k, self.data[k][0]) for k in self.order if self.alive(k, now)]

    def set(self, key, value, now):
        size = _size(value) if self.sized else 1
        if size > self.maxsize:
            raise ValueError("value too large")
        self.expire(now)
        expires = None if self.ttl is None else now + self.ttl
        total = sum(s for (_, s, _) in self.data.values())
        if key in self.data:
            self.order.remove(key)
            self.order.append(key)
            total -= self.data[key][1]
        while total + size > self.maxsize:
            victim = self.order[0]
            total -= self.data[victim][1]
            self.evicted.append((victim, self._remove(victim)))
            self.evictions += 1
        if key in self.data:
            self.xorder.remove(key)
        else:
            self.order.append(key)
        self.xorder.append(key)
        self.data[key] = (value, size, expires)

    def lookup(self, key, now):
        if self.alive(key, now):
            self.hits += 1
            self.order.remove(key)
            self.order.append(key)
            return self.data[key][0]
        self.misses += 1
        return None


def make_machine(core, maxsize, ttl, sized):
    class CacheMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            self.clock = FakeClock(100.0)
            self.evicted = []
            kw = {"getsizeof": _size} if sized else {}
            cb = lambda k, v: self.evicted.append((k, v))  # noqa: E731
            if ttl is None:
                self.cache = core.LRUCache(maxsize, on_evict=cb, **kw)
            else:
                self.cache = core.TTLCache(maxsize, ttl, self.clock, on_evict=cb, **kw)
            self.model = Model(maxsize, ttl, sized)

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
                m.order.remove(key)
                m.order.append(key)
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
                self.model._remove(key)
            else:
                with pytest.raises(KeyError):
                    del self.cache[key]

        @rule(key=KEYS)
        def pop(self, key):
            expected = self.model._remove(key) if self.model.alive(key, self.now) else "D"
            assert self.cache.pop(key, "D") == expected

        @rule()
        def popitem(self):
            self.model.expire(self.now)
            if not self.model.order:
                with pytest.raises(KeyError):
                    self.cache.popitem()
            else:
                key = self.model.order[0]
                assert self.cache.popitem() == (key, self.model._remove(key))

        @rule(dt=st.sampled_from([0.5, 1.0, 2.5, 4.0]))
        def tick(self, dt):
            self.clock.tick(dt)

        @rule()
        def expire(self):
            if ttl is not None:
                assert self.cache.expire() == self.model.expire(self.now)

        @rule()
        def clear(self):
            self.cache.clear()
            self.model.data.clear()
            self.model.order.clear()
            self.model.xorder.clear()

        @rule()
        def reset_stats(self):
            self.cache.reset_stats()
            m = self.model
            m.hits = m.misses = m.evictions = m.expirations = 0

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
                "ttl": ttl,
                "evictions": m.evictions,
                "expirations": m.expirations,
            }
            assert self.evicted == m.evicted

    return CacheMachine


CONFIGS = [
    pytest.param(4, None, False, id="lru"),
    pytest.param(6, None, True, id="lru-sized"),
    pytest.param(4, 5.0, False, id="ttl"),
    pytest.param(6, 5.0, True, id="ttl-sized"),
    pytest.param(0, 3.0, True, id="ttl-zero"),
]


@pytest.mark.parametrize(("maxsize", "ttl", "sized"), CONFIGS)
def test_state_machine(core, maxsize, ttl, sized):
    machine = make_machine(core, maxsize, ttl, sized)
    machine.TestCase.settings = settings(
        max_examples=400 if LONG else 40,
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


def _run(module, config, ops):
    maxsize, ttl, sized = config
    clock = FakeClock()
    log = []
    kw = {"getsizeof": _size} if sized else {}
    cb = lambda k, v: log.append(("evict", k, v))  # noqa: E731
    if ttl is None:
        c = module.LRUCache(maxsize, on_evict=cb, **kw)
    else:
        c = module.TTLCache(maxsize, ttl, clock, on_evict=cb, **kw)
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
                r = c.expire() if ttl is not None else None
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
@pytest.mark.parametrize(("maxsize", "ttl", "sized"), CONFIGS)
@pytest.mark.parametrize("seed", range(6 if not LONG else 60))
def test_differential_cython_vs_python(maxsize, ttl, sized, seed):
    cy = importlib.import_module("prodfast._core")
    py = importlib.import_module("prodfast._core_py")
    ops = _script(random.Random(seed * 7919 + maxsize), 300)
    config = (maxsize, ttl, sized)
    a = _run(cy, config, ops)
    b = _run(py, config, ops)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == y, f"step {i}: {ops[i] if i < len(ops) else ''}"


# ---------------------------------------------------------------- one pickle state for both


def _filled(module, kind):
    clock = FakeClock()
    if kind == "lru":
        c = module.LRUCache(5, getsizeof=_size)
    else:
        c = module.TTLCache(5, 4.0, clock)
    for i in range(8):
        c[i] = i + 1
        clock.tick(1.0)
        c.get(i - 2)
    return c


@CYTHON_BACKEND
@pytest.mark.parametrize("kind", ["lru", "ttl"])
@pytest.mark.parametrize("direction", ["cy->py", "py->cy"])
def test_state_loads_across_backends(kind, direction):
    cy = importlib.import_module("prodfast._core")
    py = importlib.import_module("prodfast._core_py")
    src, dst = (cy, py) if direction == "cy->py" else (py, cy)
    a = _filled(src, kind)
    state = a.__reduce__()[2]
    cls = dst.LRUCache if kind == "lru" else dst.TTLCache
    b = cls.__new__(cls)
    b.__setstate__(state)
    b._check()
    assert list(b.items()) == list(a.items())
    assert b.stats() == a.stats()
    assert b.currsize == a.currsize
    a[100] = 1
    b[100] = 1
    assert list(b.items()) == list(a.items())
    if kind == "ttl":
        assert b.expire(50.0) == a.expire(50.0)


# ---------------------------------------------------------------- same surface, same errors


def _public(cls):
    return {n for n in dir(cls) if not n.startswith("_") or n in ("__missing__",)}


@CYTHON_BACKEND
@pytest.mark.parametrize("name", ["LRUCache", "TTLCache"])
def test_same_public_surface(name):
    cy = getattr(importlib.import_module("prodfast._core"), name)
    py = getattr(importlib.import_module("prodfast._core_py"), name)
    assert _public(cy) == _public(py)
    for attr in ("_check", "__reduce__", "__setstate__", "__class_getitem__", "__copy__"):
        assert hasattr(cy, attr) and hasattr(py, attr), attr


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
