"""The seed's worked examples (theory doc, example 1.1.1 and definition 1.3.1) on both backends."""

from __future__ import annotations

import copy

import pytest

from conftest import FakeClock


def recency(cache):
    """The seed's recency list, front (next to evict) first: the popitem() order of a copy.
    (Iteration is in insertion order, as in cachetools and dict.)"""
    other = copy.copy(cache)
    return [other.popitem()[0] for _ in range(len(other))]


def seed_get(cache, text):
    """The seed's ``get``: the value or None, counting a hit or a miss."""
    return cache.get(text)


@pytest.mark.parametrize("kind", ["lru", "ttl"])
def test_worked_lru_example(core, kind):
    # max_size = 3, ttl = 3600 (an hour): nothing expires during the example
    if kind == "lru":
        c = core.LRUCache(3)
    else:
        c = core.TTLCache(3, 3600, timer=FakeClock())
    for text in ("text1", "text2", "text3"):
        c.set(text, [float(len(text))])
    assert recency(c) == ["text1", "text2", "text3"]

    # 2. "text1" lookup: hit, moved to the back; hit rate 1/1
    assert seed_get(c, "text1") == [5.0]
    assert recency(c) == ["text2", "text3", "text1"]
    assert c.stats()["hit_rate"] == 1.0

    # 3. "text4": a lookup misses, then it is added and "text2" (the front) is evicted; 1/2
    assert seed_get(c, "text4") is None
    c.set("text4", [4.0])
    assert recency(c) == ["text3", "text1", "text4"]
    assert list(c) == ["text1", "text3", "text4"]  # iteration: insertion order
    assert c.stats()["hit_rate"] == 0.5

    # 4. "text2" was evicted: the lookup misses (1/3) and storing it again evicts "text3"
    assert seed_get(c, "text2") is None
    assert c.stats()["hit_rate"] == pytest.approx(1 / 3)
    assert round(100 * c.stats()["hit_rate"], 1) == 33.3
    c.set("text2", [2.0])
    assert recency(c) == ["text1", "text4", "text2"]

    s = c.stats()
    assert (s["hits"], s["misses"], s["size"], s["max_size"], s["evictions"]) == (1, 2, 3, 3, 2)
    c._check()


def test_seed_diagram_step3_lookup_moves_to_back(core):
    c = core.LRUCache(3)
    for text in ("text1", "text2", "text3"):
        c[text] = text
    c["text1"]
    c["text4"] = "text4"
    assert recency(c) == ["text3", "text1", "text4"]
    c["text3"]
    assert recency(c) == ["text1", "text4", "text3"]


@pytest.mark.parametrize("ttl", [1, 10, 3600, 0.25])
def test_valid_iff_age_below_ttl(core, ttl):
    clock = FakeClock(1000.0)
    c = core.TTLCache(10, ttl, timer=clock)
    c["k"] = "v"
    for age in (0.0, ttl / 2, ttl * 0.999):
        clock.set(1000.0 + age)
        assert c.get("k") == "v", age
        assert "k" in c
    clock.set(1000.0 + ttl)  # age == ttl: no longer valid
    assert c.get("k") is None and "k" not in c and len(c) == 0
    clock.set(1000.0 + ttl * 2)
    assert c.get("k") is None


def test_update_does_not_evict_unlike_seed(core):
    # The seed's set() pops the oldest entry even when the key already exists: a bug.
    c = core.TTLCache(3, 3600, timer=FakeClock())
    for text in ("text1", "text2", "text3"):
        c[text] = 1
    c["text2"] = 2
    assert sorted(c) == ["text1", "text2", "text3"]
    assert c.stats()["evictions"] == 0
