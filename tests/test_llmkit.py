"""prodfast.compat.llmkit: the seed's cache classes (get/set/stats/get_stats)."""

from __future__ import annotations

import pytest

from conftest import FakeClock
from prodfast import _backend
from prodfast.compat.llmkit import EmbeddingCache, NodeCache, PromptCache

SEED_KEYS = {"hits", "misses", "hit_rate", "size", "max_size", "ttl"}


@pytest.mark.parametrize("cls", [EmbeddingCache, PromptCache, NodeCache])
def test_seed_defaults_and_keys(cls):
    c = cls()
    assert (c.ttl, c.max_size) == (3600, 10000)
    s = c.stats()
    assert set(s) == SEED_KEYS and set(c.get_stats()) == SEED_KEYS
    assert s == {"hits": 0, "misses": 0, "hit_rate": 0.0, "size": 0, "max_size": 10000, "ttl": 3600}
    assert isinstance(c.cache, _backend.impl.TTLCache)


def test_worked_example_through_seed_api():
    c = EmbeddingCache(ttl=3600, max_size=3, timer=FakeClock())
    for text in ("text1", "text2", "text3"):
        c.set(text, [1.0, 2.0])
    assert c.get("text1") == [1.0, 2.0]
    assert c.stats()["hit_rate"] == 1.0
    assert c.get("text4") is None
    c.set("text4", [4.0])
    assert c.stats()["hit_rate"] == 0.5
    assert list(c.cache) == ["text1", "text3", "text4"]  # insertion order; text2 was evicted
    assert c.get("text2") is None
    c.set("text2", [2.0])
    assert list(c.cache) == ["text1", "text4", "text2"]  # text3, least recently used, evicted
    s = c.get_stats()
    assert s == {"hits": 1, "misses": 2, "hit_rate": pytest.approx(1 / 3), "size": 3,
                 "max_size": 3, "ttl": 3600}
    assert (c.hits, c.misses, len(c)) == (1, 2, 3)
    assert "text2" in c and "text3" not in c


def test_ttl_expiry_through_seed_api():
    clock = FakeClock()
    c = PromptCache(ttl=60, max_size=10, timer=clock)
    c.set("p", "answer")
    clock.tick(59.9)
    assert c.get("p") == "answer"
    clock.tick(0.1)
    assert c.get("p") is None
    assert c.stats()["size"] == 0
    assert (c.hits, c.misses) == (1, 1)
    c.set("p", "again")
    c.clear()
    assert len(c) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="ttl"):
        NodeCache(ttl=0)
    with pytest.raises(ValueError, match="max_size"):
        NodeCache(max_size=-1)
    with pytest.raises(TypeError, match="max_size"):
        NodeCache(max_size="10")
