"""Re-entrancy scenarios for the caches, run in a child process by test_cache_reentrancy.py.

Usage: python _cache_reentrancy_cases.py MODULE [SCENARIO]

Each scenario runs user code (__hash__, __eq__, __del__, timers, getsizeof, on_evict, an
overriding popitem) that mutates the same cache while the cache is working. Allowed outcomes:
the operation completes, or raises RuntimeError (or the error the user code raised). Required:
no crash, and ``_check()`` passes afterwards. Prints one JSON line per scenario.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import traceback

ALLOWED = (RuntimeError, KeyError)
SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


class Guard:
    """Lets user code re-enter only once at a time (no infinite recursion)."""

    def __init__(self):
        self.depth = 0

    def __enter__(self):
        self.depth += 1
        return self.depth == 1

    def __exit__(self, *exc):
        self.depth -= 1


def attempt(fn, *args, allowed=ALLOWED):
    try:
        return fn(*args)
    except allowed as exc:
        return exc


KINDS = ("lru", "ttl", "cache", "fifo", "lfu", "rr", "tlru")
TIMED = ("ttl", "tlru")
CLASSES = {"lru": "LRUCache", "ttl": "TTLCache", "cache": "Cache", "fifo": "FIFOCache",
           "lfu": "LFUCache", "rr": "RRCache", "tlru": "TLRUCache"}


def first(seq):
    """RRCache's choice in these scenarios: deterministic, for keys of any type."""
    return seq[0]


def make(mod, kind, maxsize=4, **kw):
    cls = getattr(mod, CLASSES[kind])
    if kind in TIMED:
        t = [0.0]
        param = 10.0 if kind == "ttl" else (lambda k, v, now: now + 10.0)
        return cls(maxsize, param, timer=kw.pop("timer", lambda: t[0]), **kw)
    if kind == "rr":
        return cls(maxsize, choice=first, **kw)
    return cls(maxsize, **kw)


# ------------------------------------------------------------------ keys


class HashMutator:
    """A key whose __hash__ runs `action(cache)` first."""

    def __init__(self, cache, action, h=1):
        self.cache, self.action, self.h, self.guard = cache, action, h, Guard()

    def __hash__(self):
        with self.guard as ok:
            if ok:
                self.action(self.cache)
        return self.h

    def __eq__(self, other):
        return self is other


class EqMutator:
    """A key colliding with every int key 1 whose __eq__ runs `action(cache)`."""

    def __init__(self, cache, action):
        self.cache, self.action, self.guard = cache, action, Guard()

    def __hash__(self):
        return hash(1)

    def __eq__(self, other):
        with self.guard as ok:
            if ok:
                self.action(self.cache)
        return False


ACTIONS = {
    "insert": lambda c: c.__setitem__(object(), 0),
    "insert_many": lambda c: [c.__setitem__(("m", i), i) for i in range(50)],
    "clear": lambda c: c.clear(),
    "delete": lambda c: [c.pop(k, None) for k in list(c)],
    "lookup": lambda c: [c.get(k) for k in list(c)],
    "popitem": lambda c: c.popitem() if len(c) else None,
}

OPS = {
    "set": lambda c, k: c.__setitem__(k, "v"),
    "get": lambda c, k: c.get(k),
    "getitem": lambda c, k: c[k],
    "contains": lambda c, k: k in c,
    "peek": lambda c, k: c.peek(k),
    "pop": lambda c, k: c.pop(k, None),
    "del": lambda c, k: c.__delitem__(k),
    "setdefault": lambda c, k: c.setdefault(k, 1),
}


def _key_scenario(kind, keycls, action, op):
    def run(mod):
        c = make(mod, kind, maxsize=8)
        for i in range(1, 5):
            c[i] = i
        key = keycls(c, ACTIONS[action])
        attempt(OPS["set"], c, key)
        c._check()
        attempt(OPS[op], c, key)
        c._check()
        attempt(OPS[op], c, key)
        return c

    return run


for _kind in KINDS:
    for _cls in (HashMutator, EqMutator):
        for _action in ACTIONS:
            for _op in OPS:
                SCENARIOS[f"{_kind}-{_cls.__name__}-{_action}-{_op}"] = _key_scenario(
                    _kind, _cls, _action, _op
                )


# ------------------------------------------------------------------ values and callbacks


class DelMutator:
    def __init__(self, cache_ref, action):
        self.cache_ref, self.action = cache_ref, action

    def __del__(self):
        c = self.cache_ref[0]
        if c is not None:
            try:
                self.action(c)
            except RuntimeError:
                pass


def _del_scenario(kind, action):
    def run(mod):
        ref = [None]
        c = make(mod, kind, maxsize=3)
        ref[0] = c
        for i in range(6):
            attempt(c.__setitem__, i, DelMutator(ref, ACTIONS[action]))
            c._check()
        attempt(c.__setitem__, 0, DelMutator(ref, ACTIONS[action]))  # replaced value dies
        c._check()
        attempt(c.pop, 0, None)
        c._check()
        attempt(c.popitem)
        c._check()
        attempt(c.clear)
        c._check()
        for i in range(6):
            attempt(c.__setitem__, i, DelMutator(ref, ACTIONS[action]))
        ref[0] = None
        return c

    return run


for _kind in KINDS:
    for _action in ACTIONS:
        SCENARIOS[f"{_kind}-del-{_action}"] = _del_scenario(_kind, _action)


def _callback_scenario(kind, where, action):
    def run(mod):
        box = [None]
        guard = Guard()

        def hook(*args):
            with guard as ok:
                if ok:
                    ACTIONS[action](box[0])
            return 1 if where == "getsizeof" else None

        kw = {}
        if where == "on_evict":
            kw["on_evict"] = hook
        elif where == "getsizeof":
            kw["getsizeof"] = hook
        elif where == "timer":
            t = [0.0]

            def timer():
                hook()
                t[0] += 0.5
                return t[0]

            kw["timer"] = timer
        c = make(mod, kind, maxsize=3, **kw)
        box[0] = c
        for i in range(10):
            attempt(c.__setitem__, i, i)
            c._check()
            attempt(c.get, i - 1)
            c._check()
        if kind in TIMED:
            attempt(c.expire)
            c._check()
        return c

    return run


for _kind in KINDS:
    for _where in ("on_evict", "getsizeof", "timer"):
        if _kind not in TIMED and _where == "timer":
            continue
        for _action in ACTIONS:
            SCENARIOS[f"{_kind}-{_where}-{_action}"] = _callback_scenario(_kind, _where, _action)


def _popitem_scenario(kind, action):
    def run(mod):
        base = getattr(mod, CLASSES[kind])
        guard = Guard()

        class Odd(base):
            def popitem(self):
                with guard as ok:
                    if ok:
                        attempt(ACTIONS[action], self)
                return super().popitem()

        if kind in TIMED:
            c = Odd(3, 10.0 if kind == "ttl" else (lambda k, v, now: now + 10.0), timer=lambda: 0.0)
        else:
            c = Odd(3, first) if kind == "rr" else Odd(3)
        for i in range(10):
            attempt(c.__setitem__, i, i)
            c._check()
        return c

    return run


for _kind in KINDS:
    for _action in ACTIONS:
        SCENARIOS[f"{_kind}-popitem-{_action}"] = _popitem_scenario(_kind, _action)


@scenario
def raising_hash_and_eq(mod):
    class BadHash:
        def __hash__(self):
            raise ZeroDivisionError

    class BadEq:
        def __hash__(self):
            return hash(1)

        def __eq__(self, other):
            raise ZeroDivisionError

    for kind in KINDS:
        c = make(mod, kind)
        c[1] = 1
        before = list(c.items())
        for k in (BadHash(), BadEq()):
            for op in OPS.values():
                try:
                    op(c, k)
                except ZeroDivisionError:
                    pass
                else:
                    raise AssertionError("the key's error was swallowed")
                c._check()
                if list(c.items()) != before:
                    raise AssertionError("a failed operation changed the cache")
    return c


@scenario
def on_evict_raises_every_time(mod):
    def boom(k, v):
        raise ValueError("boom")

    for kind in KINDS:
        c = make(mod, kind, maxsize=2, on_evict=boom)
        for i in range(20):
            try:
                c[i] = i
            except ValueError:
                pass
            c._check()
            if c.peek(i) != i:
                raise AssertionError("the item was not stored when on_evict raised")
    return c


@scenario
def gc_cycles_during_operations(mod):
    # cyclic garbage whose finalizer uses the cache, collected at arbitrary points
    box = [None]

    class Cyc:
        def __init__(self):
            self.me = self

        def __del__(self):
            c = box[0]
            if c is not None:
                attempt(c.__setitem__, ("gc", id(self)), 1)
                attempt(c.get, 0)

    for kind in KINDS:
        c = make(mod, kind, maxsize=16)
        box[0] = c
        gc.set_threshold(5, 1, 1)
        try:
            for i in range(2000):
                Cyc()
                attempt(c.__setitem__, i % 40, [i])
                attempt(c.get, (i * 7) % 40)
                if i % 97 == 0:
                    c._check()
        finally:
            gc.set_threshold(700, 10, 10)
            box[0] = None
        gc.collect()
        c._check()
    return c


def main():
    mod = importlib.import_module(sys.argv[1])
    names = sys.argv[2:] or list(SCENARIOS)
    unraisable = []
    sys.unraisablehook = lambda u: unraisable.append(repr(u.exc_value))
    for name in names:
        try:
            c = SCENARIOS[name](mod)
            c._check()
            result = {"name": name, "ok": True}
        except Exception:
            result = {"name": name, "ok": False, "error": traceback.format_exc(limit=6)}
        print(json.dumps(result), flush=True)
    print(json.dumps({"name": "<unraisable>", "ok": True, "count": len(unraisable)}), flush=True)


if __name__ == "__main__":
    main()
