"""Seed-compatible names of the toolkit prodfast grew out of (llmkit).

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

from .. import SlidingWindowLimiter
from .._ratelimit_py import _rl_max_calls, _rl_positive
from ..limiters import RateLimitError

__all__ = ["RateLimitConfig", "RateLimiter", "RateLimitError", "rate_limit"]


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
