"""What every Redis-backed object of prodfast.redis shares."""

from __future__ import annotations

from typing import Any

__all__ = ["BackendUnavailable"]


class BackendUnavailable(Exception):
    """Redis could not be reached or did not answer in time.

    ``cause`` (also ``__cause__``) is the redis-py exception; ``key`` is the limiter's key.
    """

    def __init__(self, message: str, cause: BaseException | None = None, key: Any = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.key = key
