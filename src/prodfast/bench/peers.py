"""Two peers written here, so that every benchmark run has them: the seed's cache and a plain
pure-Python token bucket.

``EmbeddingCache`` is the seed's OrderedDict LRU + TTL cache as the theory document gives it
(wall clock ``time.time()``, including its habit of evicting on ``set`` of an existing key when
full). It is kept verbatim in behaviour on purpose: it is what prodfast replaces.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any


class EmbeddingCache:
    """The seed's LRU + TTL cache: an OrderedDict of ``text -> (vector, stored_time)``."""

    def __init__(self, ttl: int = 3600, max_size: int = 10000):
        self.cache: OrderedDict[str, tuple[list[float], float]] = OrderedDict()
        self.max_size = max_size
        self.ttl = ttl
        self.hits = 0
        self.misses = 0

    def get(self, text: str) -> list[float] | None:
        if text not in self.cache:
            self.misses += 1
            return None

        vector, stored_time = self.cache[text]

        # TTL check
        if time.time() - stored_time > self.ttl:
            del self.cache[text]
            self.misses += 1
            return None

        # LRU update: the item just used moves to the end
        self.cache.move_to_end(text)
        self.hits += 1

        return vector

    def set(self, text: str, vector: list[float]):
        # size limit: evict the oldest item (the front)
        if len(self.cache) >= self.max_size:
            self.cache.popitem(last=False)

        # add at the end (most recently used)
        self.cache[text] = (vector, time.time())

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        hit_rate = self.hits / total if total > 0 else 0.0

        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": hit_rate,
            "size": len(self.cache),
            "max_size": self.max_size,
            "ttl": self.ttl,
        }


class PureTokenBucket:
    """A plain pure-Python token bucket, the way one writes it without a library."""

    def __init__(self, rate: float, capacity: float, clock=time.monotonic):
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.clock = clock
        self.last = clock()

    def try_acquire(self, cost: float = 1.0) -> bool:
        now = self.clock()
        elapsed = now - self.last
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + self.rate * elapsed)
            self.last = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
