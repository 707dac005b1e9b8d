"""Behaviour of LRUCache and TTLCache on both backends (API.md section 1)."""

from __future__ import annotations

import collections.abc
import copy
import datetime
import gc
import inspect
import math
import pickle
import random
import sys
import tracemalloc
from fractions import Fraction

import cachetools
import pytest

from conftest import FakeClock

STATS_KEYS = {"hits", "misses", "hit_rate", "size", "max_size", "ttl", "evictions", "expirations"}


def snapshot(c):
    """Everything observable without touching recency: (items in order, stats, currsize)."""
    return list(c.items()), c.stats(), c.currsize, len(c)


def lru(core, n=3, **kw):
    c = core.LRUCache(n, **kw)
    for i in range(n):
        c[f"k{i}"] = i
    return c


# ---------------------------------------------------------------- construction and validation


@pytest.mark.parametrize("bad", [-1, -10, -math.inf])
def test_negative_maxsize_is_value_error(core, bad):
    with pytest.raises(ValueError, match="maxsize"):
        core.LRUCache(bad)
    with pytest.raises(ValueError, match="maxsize"):
        core.TTLCache(bad, 1)


@pytest.mark.parametrize("bad", [1.5, "3", None, True, False, [3], float("nan")])
def test_non_int_maxsize_is_type_error(core, bad):
    with pytest.raises(TypeError, match="maxsize"):
        core.LRUCache(bad)
    with pytest.raises(TypeError, match="maxsize"):
        core.TTLCache(bad, 1)


def test_maxsize_accepts_int_subclasses_and_inf(core):
    assert core.LRUCache(0).maxsize == 0
    assert core.LRUCache(math.inf).maxsize == math.inf
    c = core.TTLCache(math.inf, 10)
    for i in range(1000):
        c[i] = i
    assert len(c) == 1000 and c.currsize == 1000


@pytest.mark.parametrize("bad", [0, -1, -0.5, float("nan"), datetime.timedelta(0), datetime.timedelta(seconds=-1)])
def test_bad_ttl_is_value_error(core, bad):
    with pytest.raises(ValueError, match="ttl"):
        core.TTLCache(3, bad)


@pytest.mark.parametrize("bad", ["10", None, True, [1], object()])
def test_non_numeric_ttl_is_type_error(core, bad):
    with pytest.raises(TypeError, match="ttl"):
        core.TTLCache(3, bad)


def test_bad_callables(core):
    with pytest.raises(TypeError, match="timer"):
        core.TTLCache(3, 1, timer=5)
    with pytest.raises(TypeError, match="getsizeof"):
        core.LRUCache(3, getsizeof=5)
    with pytest.raises(TypeError, match="getsizeof"):
        core.TTLCache(3, 1, getsizeof="len")
    with pytest.raises(TypeError, match="on_evict"):
        core.LRUCache(3, on_evict=1)
    with pytest.raises(TypeError, match="on_evict"):
        core.TTLCache(3, 1, on_evict=1)


CACHE_CLASSES = ("Cache", "FIFOCache", "LFUCache", "LRUCache", "RRCache", "TTLCache", "TLRUCache")
SHARED_METHODS = ("get", "pop", "setdefault", "popitem", "clear", "__getitem__", "__setitem__",
                  "__delitem__", "__contains__")


def _params(fn, drop_self=True):
    """(name, kind, default) of each parameter; a private sentinel default shows as "<sentinel>"."""
    out = []
    for p in inspect.signature(fn).parameters.values():
        if drop_self and p.name == "self":
            continue
        if p.name.startswith("cache_"):  # cachetools' own `cache_setitem=Cache.__setitem__` trick
            continue
        default = p.default
        if default is not p.empty and type(default) is object:
            default = "<sentinel>"
        out.append((p.name, p.kind, default))
    return out


@pytest.mark.parametrize("name", CACHE_CLASSES)
def test_signatures_match_cachetools(core, name):
    ours, theirs = getattr(core, name), getattr(cachetools, name)
    # the constructor: cachetools' parameters, in its order and with its defaults, then prodfast's
    # keyword-only on_evict
    sig = _params(ours)
    assert sig[:-1] == _params(theirs)
    assert sig[-1] == ("on_evict", inspect.Parameter.KEYWORD_ONLY, None)
    methods = SHARED_METHODS + (("expire",) if name in ("TTLCache", "TLRUCache") else ())
    for method in methods:
        reference = getattr(theirs, method)
        if any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(reference).parameters.values()):
            reference = getattr(cachetools.Cache, method)  # _TimedCache's pass-through wrappers
        mine, expected = _params(getattr(ours, method)), _params(reference)
        if method.startswith("__"):
            # a C type's slot wrapper takes its operands positionally, as dict.__getitem__ does
            mine = [(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, d) for n, _, d in mine]
        assert mine == expected, method
    valid = {"maxsize": 5, "ttl": 1, "ttu": lambda k, v, now: now + 1, "timer": FakeClock(),
             "choice": min, "getsizeof": len}
    args = [valid[p] for p, kind, _ in sig if kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    c = ours(*args)
    assert c.maxsize == 5 and c.getsizeof is len
    with pytest.raises(TypeError):
        ours(*args, None)  # on_evict is keyword-only


def test_getsizeof_is_the_function_given(core):
    c = core.LRUCache(5, len, on_evict=None)
    assert c.getsizeof is len and c.getsizeof("abc") == 3
    t = core.TTLCache(5, 2.5, FakeClock(), len)
    assert t.ttl == 2.5 and t.getsizeof is len
    assert core.LRUCache(4).getsizeof("anything") == 1

    class Doubling(core.LRUCache):
        @staticmethod
        def getsizeof(value):
            return 2 * len(value)

    d = Doubling(10)
    d["a"] = "xyz"
    assert d.currsize == 6 and d.getsizeof("ab") == 4


def test_is_mutable_mapping(core):
    assert isinstance(core.LRUCache(1), collections.abc.MutableMapping)
    assert isinstance(core.TTLCache(1, 1), collections.abc.MutableMapping)


def test_generic_subscription(core):
    alias = core.LRUCache[str, list]
    c = alias(maxsize=10)
    assert isinstance(c, core.LRUCache)
    talias = core.TTLCache[str, int, float]
    assert talias.__args__ == (str, int, float)
    assert isinstance(talias(3, 1.0), core.TTLCache)


# ---------------------------------------------------------------- recency and order


def eviction_order(c):
    """The keys in the order the cache would evict them: popitem() on a copy."""
    other = copy.copy(c)
    return [other.popitem()[0] for _ in range(len(other))]


def test_iteration_is_insertion_order_and_lookups_reorder_eviction(core):
    c = lru(core, 3)
    assert list(c) == eviction_order(c) == ["k0", "k1", "k2"]
    assert c["k0"] == 0
    assert eviction_order(c) == ["k1", "k2", "k0"]
    assert c.get("k1") == 1
    assert eviction_order(c) == ["k2", "k0", "k1"]
    c["k2"] = 20
    assert eviction_order(c) == ["k0", "k1", "k2"]
    # iteration keeps the first-insertion order (as dict and cachetools do)
    assert list(c) == ["k0", "k1", "k2"]
    assert list(c.items()) == [("k0", 0), ("k1", 1), ("k2", 20)]
    assert list(c.values()) == [0, 1, 20]
    assert list(c.keys()) == ["k0", "k1", "k2"]


def test_passive_reads_do_not_reorder_or_count(core):
    c = lru(core, 3)
    before = c.stats()
    assert "k0" in c and "zz" not in c
    assert c.peek("k0") == 0 and c.peek("zz") is None and c.peek("zz", 7) == 7
    assert len(c) == 3
    assert list(c.items()) == [("k0", 0), ("k1", 1), ("k2", 2)]
    assert ("k0", 0) in c.items() and ("k0", 1) not in c.items()
    assert 2 in c.values() and 5 not in c.values()
    assert list(c) == ["k0", "k1", "k2"]
    assert c.stats() == before
    c["new"] = 9  # evicts k0: peek/in did not save it
    assert "k0" not in c


def test_eviction_is_lru(core):
    evicted = []
    c = core.LRUCache(3, on_evict=lambda k, v: evicted.append((k, v)))
    for k in "abc":
        c[k] = k.upper()
    c["a"]
    c["d"] = "D"
    assert list(c) == ["a", "c", "d"] and eviction_order(c) == ["c", "a", "d"]
    assert evicted == [("b", "B")]
    c._check()


def test_update_never_evicts_another_key(core):
    evicted = []
    c = core.LRUCache(3, on_evict=lambda k, v: evicted.append(k))
    for k in "abc":
        c[k] = 1
    c["a"] = 2
    c.set("b", 3)
    assert len(c) == 3 and evicted == []
    assert list(c.items()) == [("a", 2), ("b", 3), ("c", 1)]
    assert eviction_order(c) == ["c", "a", "b"]
    assert c.stats()["evictions"] == 0


def test_set_is_setitem(core):
    c = core.LRUCache(2)
    assert c.set("x", 1) is None
    assert c["x"] == 1


def test_keys_behave_as_dict_keys(core):
    c = core.LRUCache(5)
    c[1] = "int"
    c[1.0] = "float"
    c[True] = "bool"
    assert len(c) == 1 and c[1] == "bool"
    assert list(c) == [1]  # the first key object is kept, as in a dict
    c[(1, 2)] = "t"
    assert c[(1.0, 2)] == "t"
    c[float("nan")] = 1  # NaN keys work by identity, like a dict
    assert len(c) == 3


def test_unhashable_key_changes_nothing(core):
    c = lru(core, 3)
    before = snapshot(c)
    for op in (lambda: c.__setitem__([1], 1), lambda: c[[1]], lambda: c.get({}), lambda: [] in c,
               lambda: c.peek([]), lambda: c.pop([]), lambda: c.__delitem__([])):
        with pytest.raises(TypeError, match="unhashable"):
            op()
    assert snapshot(c) == before
    c._check()


def test_mapping_methods(core):
    c = core.LRUCache(4)
    c.update({"a": 1, "b": 2})
    c.update(c=3)
    assert c.setdefault("a", 9) == 1
    assert eviction_order(c) == ["b", "c", "a"]  # setdefault of a present key is a use
    assert c.setdefault("d", 4) == 4
    assert c.pop("b") == 2
    assert c.pop("b", "dflt") == "dflt"
    with pytest.raises(KeyError):
        c.pop("b")
    del c["c"]
    with pytest.raises(KeyError):
        del c["c"]
    assert dict(c) == {"a": 1, "d": 4}
    assert c == {"a": 1, "d": 4}
    assert c.popitem() == ("a", 1)
    c.clear()
    assert len(c) == 0 and c.currsize == 0 and list(c) == []
    with pytest.raises(KeyError, match="LRUCache is empty"):
        c.popitem()
    c._check()


def test_getitem_missing_raises_keyerror_with_key(core):
    c = core.LRUCache(2)
    with pytest.raises(KeyError) as info:
        c["nope"]
    assert info.value.args == ("nope",)
    assert c.stats()["misses"] == 1


def test_repr(core):
    c = core.LRUCache(3)
    c["a"] = 1
    c["b"] = [2]
    assert repr(c) == "LRUCache({'a': 1, 'b': [2]}, maxsize=3, currsize=2)"
    t = core.TTLCache(2, 10, timer=FakeClock())
    t[1] = 1
    assert repr(t) == "TTLCache({1: 1}, maxsize=2, currsize=1)"


def test_iteration_is_a_snapshot(core):
    # keys added while iterating are not visited, removed ones are skipped, lookups and updates
    # are allowed: never "changed during iteration"
    c = lru(core, 3)
    seen = []
    for k in c:
        seen.append(k)
        c[k + "x"] = 1  # evicts the least recently used, k0 first
    assert seen == ["k0", "k1", "k2"]  # each still present when its turn came
    assert list(c) == ["k0x", "k1x", "k2x"]
    c._check()
    c = lru(core, 3)
    seen = []
    for k in c:
        seen.append((k, c[k]))  # a lookup moves k in the eviction order only
        c[k] = c[k] * 10
    assert seen == [("k0", 0), ("k1", 1), ("k2", 2)]
    assert list(c.items()) == [("k0", 0), ("k1", 10), ("k2", 20)]
    c._check()
    c = lru(core, 3)
    seen = []
    for k in c:
        seen.append(k)
        c.pop("k1", None)
    assert seen == ["k0", "k2"]
    c._check()


@pytest.mark.parametrize("kind", ["Cache", "FIFOCache", "LFUCache", "LRUCache", "RRCache", "TTLCache"])
def test_update_from_another_cache_and_itself(core, kind):
    def make():
        cls = getattr(core, kind)
        return cls(4, 100, FakeClock()) if kind == "TTLCache" else cls(4)

    a, b = make(), make()
    a.update({1: "a", 2: "b"})
    b.update(a)
    assert dict(b) == {1: "a", 2: "b"}
    b.update(b)
    assert dict(b) == {1: "a", 2: "b"} and len(b) == 2
    b.update(a, x=3)
    assert dict(b) == {1: "a", 2: "b", "x": 3}
    a._check()
    b._check()


# ---------------------------------------------------------------- stats and on_evict


def test_stats_keys_and_counting(core):
    c = core.LRUCache(2)
    s = c.stats()
    assert set(s) == STATS_KEYS
    assert s == {"hits": 0, "misses": 0, "hit_rate": 0.0, "size": 0, "max_size": 2, "ttl": None,
                 "evictions": 0, "expirations": 0}
    c["a"] = 1
    c["b"] = 2
    c["a"]
    c.get("b")
    c.get("zz")
    with pytest.raises(KeyError):
        c["zz"]
    assert "a" in c
    c.peek("a")
    c.setdefault("a", 0)
    c.pop("b")
    c["c"] = 3
    c["d"] = 4  # evicts a
    s = c.stats()
    assert (s["hits"], s["misses"], s["evictions"], s["size"]) == (2, 2, 1, 2)
    assert s["hit_rate"] == 0.5
    c.reset_stats()
    assert c.stats() == {"hits": 0, "misses": 0, "hit_rate": 0.0, "size": 2, "max_size": 2,
                         "ttl": None, "evictions": 0, "expirations": 0}
    assert list(c) == ["c", "d"]  # reset_stats leaves the contents alone


def test_ttl_stats(core, clock):
    c = core.TTLCache(2, 5, timer=clock)
    assert c.stats()["ttl"] == 5
    c["a"] = 1
    clock.tick(5)
    c["b"] = 2
    assert c.stats()["expirations"] == 1
    assert c.stats()["evictions"] == 0


def test_on_evict_not_called_by_del_pop_clear_popitem(core):
    calls = []
    c = core.LRUCache(5, on_evict=lambda k, v: calls.append(k))
    for k in "abcde":
        c[k] = 1
    del c["a"]
    c.pop("b")
    c.popitem()
    c.clear()
    assert calls == []


def test_on_evict_exception_reaches_caller_cache_consistent(core):
    def boom(k, v):
        raise ZeroDivisionError(k)

    c = core.LRUCache(2, on_evict=boom)
    c["a"] = 1
    c["b"] = 2
    with pytest.raises(ZeroDivisionError):
        c["c"] = 3
    c._check()
    assert list(c.items()) == [("b", 2), ("c", 3)]
    assert c.stats()["evictions"] == 1


def test_on_evict_sees_consistent_cache(core):
    seen = []

    def cb(k, v):
        seen.append((k, v, k in c, len(c)))
        c._check()

    c = core.LRUCache(2, on_evict=cb)
    c["a"] = 1
    c["b"] = 2
    c["c"] = 3
    assert seen == [("a", 1, False, 2)] or seen == [("a", 1, False, 1)]


def test_on_evict_may_use_the_cache(core):
    log = []
    c = core.LRUCache(2, on_evict=lambda k, v: log.append((k, c.get("b"), len(c))))
    c["a"] = 1
    c["b"] = 2
    c["c"] = 3
    assert log[0][:2] == ("a", 2)
    c._check()


# ---------------------------------------------------------------- sizes


def test_getsizeof_and_currsize(core):
    c = core.LRUCache(10, getsizeof=len)
    c["a"] = "xxx"
    c["b"] = "yyyy"
    assert c.currsize == 7 and len(c) == 2
    c["a"] = "z"
    assert c.currsize == 5
    c["c"] = "wwwww"  # 5 + 5 = 10 fits exactly
    assert c.currsize == 10 and len(c) == 3
    c["d"] = "v"  # needs room: evicts the LRU (b)
    assert "b" not in c and c.currsize == 7
    c._check()


def test_value_too_large_changes_nothing(core):
    c = core.LRUCache(5, getsizeof=len)
    c["a"] = "xx"
    c["b"] = "yy"
    before = snapshot(c)
    with pytest.raises(ValueError, match="value too large"):
        c["c"] = "123456"
    with pytest.raises(ValueError, match="value too large"):
        c["a"] = "123456"  # an update too
    assert snapshot(c) == before
    z = core.LRUCache(0)
    with pytest.raises(ValueError, match="value too large"):
        z["a"] = 1
    assert len(z) == 0
    t = core.TTLCache(0, 10)
    with pytest.raises(ValueError, match="value too large"):
        t["a"] = 1


def test_zero_sized_values_fit_in_zero_cache(core):
    c = core.LRUCache(0, getsizeof=lambda v: 0)
    c["a"] = 1
    assert c["a"] == 1 and c.currsize == 0


def test_negative_size_is_value_error(core):
    c = core.LRUCache(10, getsizeof=lambda v: v)
    c["a"] = 3
    with pytest.raises(ValueError, match="non-negative"):
        c["b"] = -1
    assert list(c.items()) == [("a", 3)] and c.currsize == 3


def test_growing_update_evicts_others_not_itself(core):
    evicted = []
    c = core.LRUCache(10, getsizeof=len, on_evict=lambda k, v: evicted.append(k))
    c["a"] = "aaa"
    c["b"] = "bbb"
    c["c"] = "ccc"
    c["a"] = "aaaaaaaa"  # 5 more with 1 free: b and c must go, a stays (now most recent)
    assert evicted == ["b", "c"]
    assert list(c.items()) == [("a", "aaaaaaaa")]
    assert c.currsize == 8
    c._check()


def test_getsizeof_error_changes_nothing(core):
    def size(v):
        if v == "bad":
            raise LookupError("no size")
        return 1

    c = core.LRUCache(3, getsizeof=size)
    c["a"] = "x"
    before = snapshot(c)
    with pytest.raises(LookupError):
        c["b"] = "bad"
    with pytest.raises(LookupError):
        c["a"] = "bad"
    assert snapshot(c) == before


# ---------------------------------------------------------------- subclass hooks


def test_missing_is_honoured(core):
    class Squares(core.LRUCache):
        def __missing__(self, key):
            self[key] = key * key
            return key * key

    c = Squares(2)
    assert c[3] == 9 and c[3] == 9
    assert c.get(4) is None  # get() does not call __missing__, as in cachetools
    assert list(c) == [3]
    s = c.stats()
    assert (s["hits"], s["misses"]) == (1, 2)

    class TSquares(core.TTLCache):
        def __missing__(self, key):
            return -1

    t = TSquares(2, 10, timer=FakeClock())
    assert t["x"] == -1 and len(t) == 0


@pytest.mark.parametrize("kind", CACHE_CLASSES)
def test_base_missing_raises_keyerror_for_super(core, kind):
    # cachetools: Cache.__missing__(key) raises KeyError(key), so a subclass may fall back to it
    args = {"TTLCache": (10,), "TLRUCache": (lambda k, v, now: now + 10,)}.get(kind, ())
    cls = getattr(core, kind)

    class Fallback(cls):
        def __missing__(self, key):
            if isinstance(key, int):
                return key + 1
            return super().__missing__(key)

    c = Fallback(3, *args)
    assert c[1] == 2
    with pytest.raises(KeyError) as err:
        c["absent"]
    assert err.value.args == ("absent",)
    with pytest.raises(KeyError) as err:
        cls.__missing__(cls(3, *args), ("t", 1))
    assert err.value.args == (("t", 1),)
    assert c.get("absent", 0) == 0 and len(c) == 0
    s = c.stats()
    assert (s["hits"], s["misses"]) == (0, 3)


@pytest.mark.parametrize("kind", ["lru", "ttl"])
def test_popitem_override_sees_every_capacity_eviction(core, kind):
    base = core.LRUCache if kind == "lru" else core.TTLCache
    args = () if kind == "lru" else (100, FakeClock())

    class Logged(base):
        def __init__(self, maxsize, *a, **kw):
            super().__init__(maxsize, *a, **kw)
            self.popped = []

        def popitem(self):
            kv = super().popitem()
            self.popped.append(kv)
            return kv

    evicted = []
    c = Logged(2, *args, on_evict=lambda k, v: evicted.append((k, v)))
    for i in range(5):
        c[i] = i * 10
    assert c.popped == [(0, 0), (1, 10), (2, 20)]
    assert evicted == c.popped
    assert c.stats()["evictions"] == 3
    assert list(c) == [3, 4]
    c._check()
    s = Logged(10, *args, getsizeof=len)
    s["a"] = "xxxx"
    s["b"] = "yyyy"
    s["c"] = "zzzzzz"
    assert s.popped == [("a", "xxxx")]


# ---------------------------------------------------------------- TTL


def test_ttl_boundary_valid_iff_age_below_ttl(core, clock):
    c = core.TTLCache(10, 10, timer=clock)
    clock.set(100.0)
    c["a"] = 1
    clock.set(109.999)
    assert "a" in c and c["a"] == 1 and c.get("a") == 1 and c.peek("a") == 1
    assert len(c) == 1 and list(c) == ["a"] and c.currsize == 1
    clock.set(110.0)
    assert "a" not in c
    assert c.get("a") is None and c.peek("a") is None
    with pytest.raises(KeyError):
        c["a"]
    assert len(c) == 0 and list(c) == [] and c.currsize == 0 and dict(c) == {}


def test_ttl_reads_do_not_extend_life_but_sets_do(core, clock):
    c = core.TTLCache(10, 10, timer=clock)
    c["a"] = 1
    c["b"] = 1
    for _ in range(9):
        clock.tick(1)
        c["a"]
    c["b"] = 2  # re-set at t=9: lives until 19
    clock.tick(1)  # t = 10
    assert "a" not in c and c["b"] == 2
    clock.set(18.9)
    assert "b" in c
    clock.set(19)
    assert "b" not in c


def test_ttl_one_timer_read_per_operation(core, clock):
    c = core.TTLCache(10, 10, timer=clock)
    c["x"] = 0
    ops = [
        lambda: c.__setitem__("a", 1),
        lambda: c.set("a", 2),
        lambda: c["a"],
        lambda: c.get("a"),
        lambda: c.get("zz"),
        lambda: "a" in c,
        lambda: c.peek("a"),
        lambda: len(c),
        lambda: c.currsize,
        lambda: c.expire(),
        lambda: c.pop("a"),
        lambda: c.setdefault("b", 1),
        lambda: c.__delitem__("b"),
        lambda: c.popitem(),
        lambda: list(c),
    ]
    for op in ops:
        before = clock.reads
        op()
        assert clock.reads - before == 1, op
    before = clock.reads
    c.expire(5.0)
    assert clock.reads == before


def test_len_and_iteration_skip_expired_without_removing(core, clock):
    evicted = []
    c = core.TTLCache(10, 10, timer=clock, on_evict=lambda k, v: evicted.append(k))
    c["a"] = 1
    clock.tick(5)
    c["b"] = 2
    clock.tick(5)
    assert len(c) == 1 and list(c) == ["b"] and c.currsize == 1
    assert evicted == [] and c.stats()["expirations"] == 0
    assert c.expire() == [("a", 1)]
    assert evicted == ["a"] and c.stats()["expirations"] == 1
    assert c.expire() == []


def test_del_pop_of_expired_key_raise_keyerror(core, clock):
    c = core.TTLCache(10, 10, timer=clock)
    c["a"] = 1
    clock.tick(10)
    with pytest.raises(KeyError):
        del c["a"]
    with pytest.raises(KeyError):
        c.pop("a")
    assert c.pop("a", None) is None
    assert c.expire() == [("a", 1)]  # still there, just invisible


def test_expire_explicit_time_and_order(core, clock):
    c = core.TTLCache(10, 10, timer=clock)
    for i in range(5):
        c[i] = i
        clock.tick(1)
    c[0] = "again"  # set at t=5: expires at 15
    got = c.expire(12.0)
    assert isinstance(got, list)
    assert got == [(1, 1), (2, 2)]
    assert c.expire(14.5) == [(3, 3), (4, 4)]
    assert list(c.items()) == [(0, "again")]
    assert c.stats()["expirations"] == 4


def test_full_cache_drops_expired_before_live(core, clock):
    evicted = []
    c = core.TTLCache(3, 10, timer=clock, on_evict=lambda k, v: evicted.append(k))
    c["old"] = 1
    clock.tick(1)
    c["mid"] = 2
    c["new"] = 3
    c["old"]  # the most recent, but expires first
    clock.set(10)
    c["x"] = 4
    assert evicted == ["old"]
    assert list(c) == ["mid", "new", "x"]
    s = c.stats()
    assert (s["expirations"], s["evictions"]) == (1, 0)


def test_ttl_popitem_skips_expired(core, clock):
    evicted = []
    c = core.TTLCache(10, 10, timer=clock, on_evict=lambda k, v: evicted.append(k))
    c["a"] = 1
    clock.set(5)
    c["b"] = 2
    c["a"]  # a is now the most recent, b the least
    clock.set(10)  # a expired, b still live
    assert c.popitem() == ("b", 2)
    assert evicted == ["a"] and c.stats()["expirations"] == 1
    with pytest.raises(KeyError, match="TTLCache is empty"):
        c.popitem()
    c._check()


def test_timer_wrapper(core, clock):
    c = core.TTLCache(10, 10, timer=clock)
    assert c.timer() == clock.now
    assert c.timer.now == clock.now  # attribute access forwarded to the user's timer
    clock.set(3)
    with c.timer as now:
        assert now == 3
        clock.set(50)
        assert c.timer() == 3
        c["a"] = 1  # stored at the frozen time
        with c.timer as inner:
            assert inner == 3
        assert c.timer() == 3
    assert c.timer() == 50
    assert "a" not in c
    assert c.expire(12.999) == []
    assert c.expire(13) == [("a", 1)]


def test_datetime_timer_with_timedelta_ttl(core):
    c = core.TTLCache(5, datetime.timedelta(seconds=30), timer=datetime.datetime.now)
    c["a"] = 1
    assert c["a"] == 1 and len(c) == 1
    later = datetime.datetime.now() + datetime.timedelta(seconds=31)
    assert c.expire(later) == [("a", 1)]


def test_generic_timer_overflow_changes_nothing(core):
    now = [datetime.datetime(2020, 1, 1)]
    c = core.TTLCache(5, datetime.timedelta(days=1), timer=lambda: now[0])
    c["a"] = 1
    before = snapshot(c)
    stats = c.stats()
    now[0] = datetime.datetime.max - datetime.timedelta(hours=1)
    with pytest.raises(OverflowError):
        c["b"] = 2
    c._check()
    assert c.stats()["evictions"] == stats["evictions"]
    assert c.expire(datetime.datetime(2020, 1, 1, 12)) == []  # a was kept ...
    assert c.expire() == [("a", 1)]  # ... and b never stored
    assert before[0] == [("a", 1)]


def test_real_ttl_with_incompatible_timer_changes_nothing(core):
    c = core.TTLCache(5, 10, timer=lambda: "noon")
    with pytest.raises(TypeError):
        c["a"] = 1
    c._check()
    assert list(c.items()) == [] and c.currsize == 0


def test_clock_going_backwards_is_no_time_passed(core, clock):
    c = core.TTLCache(5, 10, timer=clock)
    clock.set(100)
    c["a"] = 1
    clock.set(50)  # backwards: treated as still 100
    c["b"] = 2  # so b expires at 110, not 60
    clock.set(105)
    assert list(c) == ["a", "b"]
    clock.set(110)
    assert list(c) == []
    c._check()


def test_integer_timer_and_ttl(core):
    t = [0]
    c = core.TTLCache(3, 2, timer=lambda: t[0])
    c["a"] = 1
    t[0] = 1
    assert c["a"] == 1
    t[0] = 2
    assert "a" not in c


# ---------------------------------------------------------------- parity with cachetools


def _ref_items(ref):
    # cachetools' own items() reorders an LRUCache (it reads through __getitem__): peek instead
    return {k: cachetools.Cache.__getitem__(ref, k) for k in list(ref)}


def _run_parity(ours, ref, rng, n_ops, keyspace, tick=None, size=None):
    for _ in range(n_ops):
        op = rng.random()
        k = rng.randrange(keyspace)
        if tick is not None and rng.random() < 0.3:
            tick(rng.choice([0.5, 1, 2, 5]))
        if op < 0.45:
            v = rng.randrange(100)
            if size is not None and k in ref and size(v) > size(cachetools.Cache.__getitem__(ref, k)):
                # a growing update: prodfast evicts others, cachetools may evict the key itself
                continue
            ours[k] = v
            ref[k] = v
        elif op < 0.75:
            assert ours.get(k, "D") == ref.get(k, "D")
        elif op < 0.85:
            assert (k in ours) == (k in ref)
        elif op < 0.92:
            assert ours.pop(k, "D") == ref.pop(k, "D")
        else:
            if len(ref):
                assert ours.popitem() == ref.popitem()
        assert dict(ours.items()) == _ref_items(ref)
        assert len(ours) == len(ref)
        assert ours.currsize == ref.currsize
    ours._check()


@pytest.mark.parametrize("seed", range(3))
def test_lru_parity_with_cachetools(core, seed):
    rng = random.Random(seed)
    _run_parity(core.LRUCache(8), cachetools.LRUCache(8), rng, 1500, 20)


@pytest.mark.parametrize("seed", range(3))
def test_lru_getsizeof_parity_with_cachetools(core, seed):
    rng = random.Random(seed)

    def size(v):
        return v % 7 + 1

    _run_parity(core.LRUCache(20, size), cachetools.LRUCache(20, size), rng, 1500, 20, size=size)


@pytest.mark.parametrize("seed", range(3))
def test_ttl_parity_with_cachetools(core, seed):
    rng = random.Random(seed)
    clock = FakeClock()
    _run_parity(core.TTLCache(8, 6, clock), cachetools.TTLCache(8, 6, clock), rng, 1500, 20, clock.tick)


# ---------------------------------------------------------------- pickling and copying


def _evict_log(k, v):
    pass


class _PickleSub:
    pass


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_roundtrip_lru(core, proto):
    c = core.LRUCache(10, getsizeof=len, on_evict=_evict_log)
    for k in ["a", "bb", "c"]:
        c[k] = k * 2
    c["a"]
    c.get("zz")
    c["dd"] = "xxxx"  # 8 + 4 > 10: evicts bb, the least recent
    assert list(c) == ["a", "c", "dd"] and eviction_order(c) == ["c", "a", "dd"]
    c2 = pickle.loads(pickle.dumps(c, proto))
    assert type(c2) is core.LRUCache
    assert list(c2.items()) == list(c.items())
    assert c2.stats() == c.stats()
    assert (c2.maxsize, c2.currsize, c2.on_evict) == (c.maxsize, c.currsize, _evict_log)
    c2._check()
    c2["new"] = "n"  # still works and evicts in the same order as the original
    c["new"] = "n"
    assert list(c2.items()) == list(c.items())
    assert eviction_order(c2) == eviction_order(c)


@pytest.mark.parametrize("proto", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_roundtrip_ttl(core, proto):
    clock = FakeClock()
    c = core.TTLCache(5, 10, timer=clock)
    for i in range(4):
        c[i] = str(i)
        clock.tick(1)
    c[0] = "zero"
    c[1]
    clock.tick(7)  # t = 11: item 2 (set at 2) valid until 12
    c2 = pickle.loads(pickle.dumps(c, proto))
    assert list(c.items()) == [(0, "zero"), (2, "2"), (3, "3")]  # 1 expired at 11
    assert list(c2.items()) == list(c.items())
    assert c2.stats() == c.stats()
    assert c2.ttl == 10
    c2._check()
    assert c2.expire(13.5) == c.expire(13.5)


def test_pickle_does_not_call_subclass_init(core):
    class Sub(core.LRUCache):
        inits = 0

        def __init__(self, *a, **kw):
            type(self).inits += 1
            super().__init__(*a, **kw)

    globals()["_Sub"] = Sub
    Sub.__qualname__ = "_Sub"
    Sub.__module__ = __name__
    c = Sub(3)
    c["a"] = 1
    c2 = pickle.loads(pickle.dumps(c))
    assert Sub.inits == 1
    assert type(c2) is Sub and list(c2.items()) == [("a", 1)]
    c3 = copy.copy(c)
    assert Sub.inits == 1 and list(c3.items()) == [("a", 1)]


def test_pickle_large_cache(core):
    n = 200_000
    c = core.LRUCache(n)
    for i in range(n):
        c[i] = i
    c[0]
    data = pickle.dumps(c, pickle.HIGHEST_PROTOCOL)
    c2 = pickle.loads(data)
    assert len(c2) == n
    it = iter(c2)
    assert next(it) == 0
    assert c2.peek(n - 1) == n - 1
    assert list(c2)[-1] == n - 1
    assert c2.popitem() == (1, 1)  # the eviction order survives: 0 was used last


def test_copy_and_deepcopy(core, clock):
    c = core.TTLCache(3, 10, timer=clock)
    c["a"] = [1]
    c["b"] = [2]
    shallow = copy.copy(c)
    deep = copy.deepcopy(c)
    assert list(shallow.items()) == list(c.items()) == list(deep.items())
    assert shallow["a"] is c["a"] and deep["a"] is not c["a"]
    shallow["c"] = 3
    assert "c" not in c


# ---------------------------------------------------------------- references and memory


class _Obj:
    pass


def _size_two(value):
    return 2


@pytest.mark.parametrize("kind", ["lru", "ttl", "sized"])
def test_no_reference_leaks(core, kind):
    def make():
        if kind == "lru":
            return core.LRUCache(4)
        if kind == "ttl":
            return core.TTLCache(4, 10, timer=FakeClock())
        return core.LRUCache(8, getsizeof=_size_two)

    key, value = _Obj(), _Obj()
    rk, rv = sys.getrefcount(key), sys.getrefcount(value)
    for _ in range(50):
        c = make()
        c[key] = value
        c[key] = value
        assert c[key] is value and c.get(key) is value and c.peek(key) is value
        for i in range(10):  # evicts key
            c[i] = value
        c[key] = value
        c.pop(key)
        c[key] = value
        del c[key]
        c[key] = value
        c.setdefault(key, value)
        list(c.items())
        c.clear()
        c[key] = value
        pickle.loads(pickle.dumps(c))
        c.popitem()
        del c
    gc.collect()
    assert sys.getrefcount(key) == rk
    assert sys.getrefcount(value) == rv


def test_memory_bounded_over_cycles(core):
    c = core.TTLCache(1000, 10, timer=FakeClock())
    for i in range(3000):
        c[i] = str(i)
    gc.collect()
    tracemalloc.start()
    try:
        first = None
        for cycle in range(4):
            for i in range(2500):
                c[(cycle, i)] = str(i)
                c.get((cycle, i - 1))
            c.clear()
            gc.collect()
            cur, _ = tracemalloc.get_traced_memory()
            if first is None:
                first = cur
        assert cur <= first + 64 * 1024
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- RRCache's default choice


def _rr_run(module, seed, n, ops):
    """(contents after each step, the generator's state after) of RRCache(n) with random.choice."""
    random.seed(seed)
    c = module.RRCache(n)
    seen = []
    for i in range(ops):
        c[i] = i
        if i % 7 == 3 and (i - 2) in c:
            del c[i - 2]
        if i % 11 == 5:
            c.popitem()
        seen.append(tuple(c))
    return seen, random.getstate()


@pytest.mark.parametrize("n", [1, 2, 5, 100, 700])
def test_rr_default_choice_replays_random_choice(n):
    # The compiled eviction draws on random's generator directly: the victims and the state it
    # leaves are random.choice's, as the pure-Python twin (which calls it) has them.
    import prodfast._cache_py as py
    import prodfast._core as cy

    ops = 3 * n + 2000     # past several refills of the generator's 624 words
    assert _rr_run(cy, 1234 + n, n, ops) == _rr_run(py, 1234 + n, n, ops)


def test_rr_default_choice_follows_random_state(core):
    # seeding or restoring random's state between evictions is seen by the next eviction
    c = core.RRCache(50)
    for i in range(50):
        c[i] = i
    state = random.getstate()
    c[50] = 50
    first = set(c)
    for i in range(51, 60):
        c[i] = i
    random.setstate(state)
    d = core.RRCache(50)
    for i in range(50):
        d[i] = i
    d[50] = 50
    assert set(d) == first


# ---------------------------------------------------------------- TLRUCache with a user timer


class _CountingTime:
    """A time on a user timer's scale whose comparisons are counted (and are Python code)."""

    compares = 0
    __slots__ = ("t",)

    def __init__(self, t):
        self.t = t

    def __lt__(self, other):
        _CountingTime.compares += 1
        return self.t < other.t

    def __eq__(self, other):
        return isinstance(other, _CountingTime) and self.t == other.t

    def __add__(self, dt):
        return _CountingTime(self.t + dt)

    __hash__ = None


def test_tlru_user_timer_expiry_is_logarithmic(core):
    # Items whose expiries come in random order: a sorted list compares each insert with about
    # half of the items, the heap with about log2(n) of them.
    now = [_CountingTime(0.0)]
    rng = random.Random(7)
    n = 2000
    c = core.TLRUCache(n, lambda k, v, t: t + rng.uniform(1, 1000), timer=lambda: now[0])
    _CountingTime.compares = 0
    for i in range(n):
        c[i] = i
    per_insert = _CountingTime.compares / n
    assert per_insert < 40, per_insert
    _CountingTime.compares = 0
    now[0] = _CountingTime(500.0)
    expired = c.expire()
    assert expired and all(rng is not None for _ in expired)
    assert len(c) == n - len(expired)
    assert _CountingTime.compares < 40 * (len(expired) + 1) + 4 * n, _CountingTime.compares


def _tlru_script(module, seed):
    from fractions import Fraction

    rng = random.Random(seed)
    clock = [Fraction(0)]
    c = module.TLRUCache(12, lambda k, v, t: t + Fraction(rng.randrange(1, 40), 4),
                         timer=lambda: clock[0])
    out = []
    for step in range(1500):
        op = rng.random()
        k = rng.randrange(30)
        if op < 0.45:
            c[k] = step
        elif op < 0.6:
            out.append(c.get(k))
        elif op < 0.7:
            out.append(c.pop(k, None))
        elif op < 0.75 and len(c):
            out.append(c.popitem())
        elif op < 0.85:
            clock[0] += Fraction(rng.randrange(0, 12), 4)
        elif op < 0.9:
            out.append(c.expire())
        else:
            out.append((len(c), list(c.items())))
        c._check()
    d = copy.copy(c)
    d.__setstate__(c.__getstate__())
    d._check()
    out.append(d.expire(clock[0] + 100))
    return out, list(c.items()), c.stats()


@pytest.mark.parametrize("seed", range(4))
def test_tlru_user_timer_heap_matches_twin(seed):
    # Out-of-order expiries, updates, removals and dead heap records: the compiled heap and the
    # twin's heapq agree on everything observable
    import prodfast._cache_py as py
    import prodfast._core as cy

    assert _tlru_script(cy, seed) == _tlru_script(py, seed)


def test_tlru_user_timer_comparison_that_writes_is_refused(core):
    # an expiry comparison (user code) that sets another key: refused, the cache left intact
    class Sneaky(_CountingTime):
        __slots__ = ()
        armed = None        # the expiry whose comparison writes (once)

        def __lt__(self, other):
            if Sneaky.armed is not None and self.t == Sneaky.armed:
                Sneaky.armed = None
                c["intruder"] = 0
            return self.t < other.t

    now = [Sneaky(0.0)]
    c = core.TLRUCache(10, lambda k, v, t: Sneaky(t.t + 10 - (k if isinstance(k, int) else 0)), timer=lambda: now[0])
    for i in range(5):
        c[i] = i
    Sneaky.armed = 4.0      # key 6's expiry, compared while its place is found
    with pytest.raises(RuntimeError, match="changed size"):
        c[6] = 6
    c._check()
    assert set(c) <= {0, 1, 2, 3, 4, 6, "intruder"}
    now[0] = Sneaky(100.0)
    c.expire()
    assert len(c) == 0
    c._check()


class _FewHashes:
    """A key with one of three hashes: probe runs far longer than usual"""

    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __hash__(self):
        return self.k % 3

    def __eq__(self, other):
        return isinstance(other, _FewHashes) and other.k == self.k


@pytest.mark.parametrize("maxsize", [150, 2**28, math.inf])
@pytest.mark.parametrize("kind", ["LRUCache", "FIFOCache", "RRCache"])
def test_long_probe_runs_survive_deletions(core, kind, maxsize):
    # Colliding keys among plain ones: entries sit further from their home slot than the
    # compiled index records in a slot (at every width: maxsize picks how many bits are left),
    # and deletions, evictions and growth shift them back; every key stays findable
    rng = random.Random(11)
    c = getattr(core, kind)(maxsize)
    for step in range(2500):
        k = _FewHashes(rng.randrange(300)) if rng.random() < 0.6 else rng.randrange(300)
        if rng.random() < 0.7:
            c[k] = step
            assert c[k] == step
        else:
            c.pop(k, None)
            assert k not in c
        if step % 100 == 0:
            c._check()
    keys = list(c)
    assert len(keys) == len(c) and all(k in c for k in keys)
    c._check()


@pytest.mark.parametrize(
    "build",
    [
        lambda core, n, clock: core.LFUCache(n, getsizeof=lambda v: 1),
        lambda core, n, clock: core.TTLCache(n, Fraction(1000), timer=clock),
        lambda core, n, clock: core.TLRUCache(n, lambda k, v, now: now + 1000),
        lambda core, n, clock: core.TLRUCache(n, lambda k, v, now: now + 1000, timer=clock),
    ],
    ids=["LFU+getsizeof", "TTL-objects", "TLRU-heap", "TLRU-objects"],
)
def test_arrays_grown_past_a_mebibyte_keep_every_item(core, build, clock):
    # From 1 MiB on, the compiled core grows an array by copying it into a fresh block (advised
    # for huge pages) rather than by realloc: 2**18 items take every array of these classes
    # (entries, LFU counts and buckets, sizes, expiry lists and heaps) past that size. The twin
    # keeps Python lists, so a smaller cache tells it as much
    n = 1 << 18 if core.__name__ == "prodfast._core" else 1 << 12
    c = build(core, n, clock)
    for i in range(n):
        c[i] = -i
    c._check()
    assert len(c) == n and list(c) == list(range(n))
    assert all(c.peek(i) == -i for i in range(0, n, 7))
    c[n] = 0  # full: evicts one
    assert len(c) == n
    c._check()
