"""Redis-backed primitives shared by many processes and hosts (extra: ``prodfast[redis]``).

``prodfast.redis.limiters`` holds the rate limiters; their module docstring explains how each
decision is made on the server and what ``on_error`` does when Redis is unreachable.
``prodfast.redis.cache`` holds the shared caches (``RedisCache``, ``TieredCache`` and their
asyncio twins); its module docstring explains sharing, the staleness bound and outages.
"""

try:
    import redis as _redis  # noqa: F401
except ImportError as exc:  # tests/test_extras.py blocks the import in a child process
    raise ImportError("prodfast.redis needs redis-py: pip install 'prodfast[redis]'") from exc

from ._common import BackendUnavailable
from .cache import AsyncRedisCache, AsyncTieredCache, RedisCache, TieredCache
from .limiters import (
    AsyncRedisReservation,
    AsyncRedisSlidingWindow,
    AsyncRedisTokenBucket,
    RedisReservation,
    RedisSlidingWindow,
    RedisTokenBucket,
)

__all__ = [
    "AsyncRedisCache",
    "AsyncTieredCache",
    "RedisCache",
    "TieredCache",
    "AsyncRedisReservation",
    "AsyncRedisSlidingWindow",
    "AsyncRedisTokenBucket",
    "BackendUnavailable",
    "RedisReservation",
    "RedisSlidingWindow",
    "RedisTokenBucket",
]
