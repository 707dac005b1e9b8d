"""What every Redis-backed object of prodfast.redis shares."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

__all__ = ["BackendUnavailable", "check_client"]


class BackendUnavailable(Exception):
    """Redis could not be reached or did not answer in time.

    ``cause`` (also ``__cause__``) is the redis-py exception; ``key`` is the key of the limiter or cache item concerned.
    """

    def __init__(self, message: str, cause: BaseException | None = None, key: Any = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.key = key


def check_client(client: Any, asynchronous: bool, cls: str, methods: Iterable[str]) -> None:
    """Refuse anything but a redis-py client of the right kind (sync or asyncio) for ``cls``."""
    for attr in methods:
        if not callable(getattr(client, attr, None)):
            want = "redis.asyncio.Redis" if asynchronous else "redis.Redis"
            raise TypeError(f"client must be a {want}, got {type(client).__name__}")
    is_async = inspect.iscoroutinefunction(client.execute_command)
    if is_async and not asynchronous:
        raise TypeError(
            f"client must be a synchronous redis.Redis, got the asyncio client "
            f"{type(client).__name__}; use Async{cls} with it"
        )
    if asynchronous and not is_async:
        raise TypeError(
            f"client must be a redis.asyncio.Redis, got the synchronous client "
            f"{type(client).__name__}; use {cls[len('Async') :]} with it"
        )
