"""Drop-in replacements for the seed toolkit (llmkit) classes, built on prodfast's primitives."""

from __future__ import annotations

import time

from .. import _backend

# --- caches (issue 2) -------------------------------------------------------------------------


class EmbeddingCache:
    """The seed's LRU + TTL cache with its API: ``get(text)``, ``set(text, value)``, ``stats()``.

    Backed by the active backend's TTLCache, so every operation is O(1) and, unlike the seed,
    updating an existing text never evicts another one. An item is valid while its age is below
    ``ttl`` seconds (the seed's definition); ``get`` of a missing or expired text returns None
    and counts a miss.
    """

    def __init__(self, ttl: float = 3600, max_size: int = 10000, *, timer=time.monotonic):
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError(f"max_size must be a non-negative int, got {max_size!r}")
        if max_size < 0:
            raise ValueError(f"max_size must be a non-negative int, got {max_size!r}")
        self.cache = _backend.impl.TTLCache(max_size, ttl, timer)
        self.max_size = max_size
        self.ttl = ttl

    def get(self, text):
        """The value stored for text (making it most recent), or None on a miss."""
        return self.cache.get(text)

    def set(self, text, value) -> None:
        """Store value for text, evicting the least recently used text when full."""
        self.cache[text] = value

    @property
    def hits(self) -> int:
        return self.cache.stats()["hits"]

    @property
    def misses(self) -> int:
        return self.cache.stats()["misses"]

    def stats(self) -> dict:
        """hits, misses, hit_rate (0.0 before any lookup), size, max_size, ttl."""
        s = self.cache.stats()
        return {
            "hits": s["hits"],
            "misses": s["misses"],
            "hit_rate": s["hit_rate"],
            "size": s["size"],
            "max_size": self.max_size,
            "ttl": self.ttl,
        }

    get_stats = stats

    def clear(self) -> None:
        """Remove every entry (the counters are kept)."""
        self.cache.clear()

    def __len__(self) -> int:
        return len(self.cache)

    def __contains__(self, text) -> bool:
        return text in self.cache


class PromptCache(EmbeddingCache):
    """The seed's prompt cache: the same LRU + TTL cache keyed by prompt text."""


class NodeCache(EmbeddingCache):
    """The seed's graph node cache: the same LRU + TTL cache keyed by node id."""


# --- end caches -------------------------------------------------------------------------------
