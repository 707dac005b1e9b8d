"""Drop-in replacements for the seed toolkit (llmkit) classes, built on prodfast's primitives.

Caching: ``EmbeddingCache(ttl=3600, max_size=10000)``, ``PromptCache`` and ``NodeCache`` with the
seed's ``get(text)`` (the value or None), ``set(text, value)`` and ``stats()``/``get_stats()``,
on the active backend's TTLCache.

Rate limiting: ``RateLimitConfig``, ``RateLimiter`` (``.call(func, *args, **kwargs)``) and the
``@rate_limit`` decorator, with the seed's rule -- at most ``max_calls`` calls in any
``time_window`` seconds, a call counting while ``now - c < time_window`` -- and its message
``"Rate limit exceeded. Wait X.XXs before retry."``. They run on prodfast's
SlidingWindowLimiter, on the monotonic clock (the seed read the wall clock).
"""

from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass

from .. import SlidingWindowLimiter, TTLCache
from .._ratelimit_py import _rl_max_calls, _rl_positive
from ..limiters import RateLimitError

__all__ = [
    "EmbeddingCache",
    "PromptCache",
    "NodeCache",
    "RateLimitConfig",
    "RateLimiter",
    "RateLimitError",
    "rate_limit",
]


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
        self.cache = TTLCache(max_size, ttl, timer)
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


@dataclass
class RateLimitConfig:
    """At most ``max_calls`` calls in any ``time_window`` seconds."""

    max_calls: int = 10
    time_window: float = 60.0

    def __post_init__(self) -> None:
        _rl_max_calls(self.max_calls)
        _rl_positive(self.time_window, "time_window")


class RateLimiter:
    """The seed's sliding-window rate limiter: ``call`` runs a function or raises
    :class:`RateLimitError` ("Rate limit exceeded. Wait X.XXs before retry.")."""

    def __init__(self, config: RateLimitConfig | None = None, *, clock=time.monotonic) -> None:
        self.config = config or RateLimitConfig()
        self.limiter = SlidingWindowLimiter(
            self.config.max_calls, self.config.time_window, clock=clock
        )

    def _check(self) -> None:
        if not self.limiter.try_acquire():
            raise RateLimitError(retry_after=self.limiter.wait_time())

    def call(self, func, *args, **kwargs):
        """Record a call and run ``func(*args, **kwargs)``, or raise RateLimitError."""
        self._check()
        return func(*args, **kwargs)

    def wait_time(self) -> float:
        """Seconds until the next call would be allowed (0.0 if now)."""
        return self.limiter.wait_time()

    def stats(self) -> dict:
        return self.limiter.stats()


def rate_limit(max_calls=10, time_window=60.0, *, config=None, clock=time.monotonic):
    """Decorator: at most ``max_calls`` calls of the function in any ``time_window`` seconds;
    a call over the limit raises RateLimitError. Usable bare (``@rate_limit``), called
    (``@rate_limit(5, 1.0)``) or with a ``RateLimitConfig``; works on async functions too."""
    if callable(max_calls):  # bare @rate_limit
        return rate_limit()(max_calls)
    limiter = RateLimiter(config or RateLimitConfig(max_calls, time_window), clock=clock)

    def decorate(func):
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args, **kwargs):
                limiter._check()
                return await func(*args, **kwargs)

            async_wrapper.rate_limiter = limiter
            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            limiter._check()
            return func(*args, **kwargs)

        wrapper.rate_limiter = limiter
        return wrapper

    return decorate
