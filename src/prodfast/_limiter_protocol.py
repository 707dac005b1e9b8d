"""The one limiter protocol: what every prodfast rate limiter implements and every layer accepts.

Every limiter -- TokenBucket, LeakyBucket, SlidingWindowLimiter (both backends), the Redis
limiters, sync and async, and LimiterGroup -- declares how it is called with the attribute
``limiter_kind`` (a class attribute; a group's comes from its members):

``"both"``
    The in-memory limiters and groups of them. Plain methods (``try_acquire``, ``wait_time``,
    ``acquire``, ``reserve``, ``observe``, ``stats``, ``reset``) that never do I/O, plus
    ``acquire_async`` and ``reserve_async``, which return awaitables that sleep on the running
    event loop. Usable from sync and async code.
``"sync"``
    Plain methods that may block on I/O (``RedisTokenBucket``, ``RedisSlidingWindow`` and groups
    of them). No ``acquire_async``/``reserve_async``: an async call path would block its event
    loop for every decision and every wait, so layers refuse them there (TypeError when built).
``"async"``
    Every method that decides, waits, observes or resets is a coroutine function
    (``AsyncRedisTokenBucket``, ``AsyncRedisSlidingWindow`` and groups of them);
    ``acquire_async``/``reserve_async`` are the same coroutines as ``acquire``/``reserve``.
    Usable from async code only.

Layers never guess from method shapes: they call :func:`check_limiter` once, when they are built,
with the call paths they will use, and branch on the kind it returns. A combination that cannot
work is a TypeError then, never a logged error and an unlimited call at run time.

Reservations (``reserve(cost=1, timeout=None)``, ``await reserve_async(cost=1, timeout=None)``,
a group's ``reserve(costs=1, timeout=None)``): take the estimated cost under the limiter's usual
waiting rules (as ``acquire``; ``timeout=0`` decides once) and return a reservation (:class:`ReservationProtocol`);
when the wait would exceed ``timeout`` they raise :class:`RateLimitError` with ``retry_after``.
``settle(actual)`` gives back (``actual < cost``) or takes (``actual > cost``) the difference;
``cancel()`` gives everything back; leaving a ``with`` block that settled nothing keeps the
estimate (fail closed: an exception in the block does not refund what the provider may have
counted). A reservation settles once. From an ``"async"`` limiter, ``settle``/``cancel`` are
coroutines and the reservation is an async context manager.

Provider headers: ``observe(headers, resource="requests", status=None)`` (a group's:
``observe(headers, resources=None, status=None)``, one resource per member) parses the headers
with ``prodfast._rl_headers`` and applies them; see ``_ratelimit_py._Limiter.observe``.

LimiterGroup members: besides the public methods, a limiter that can sit in a LimiterGroup has

``_check(cost)``
    the validated cost (TypeError/ValueError as ``try_acquire`` would raise), no I/O;
``_rl_group_engine``
    an object deciding for a whole group at once (see :class:`GroupEngine`). Every member of one
    group must have the same engine, and the engine may refuse a set of members (TypeError).
``_settle(reserved, actual, receipt)``
    give back or take the difference for one member of a settled group reservation (a
    coroutine for ``"async"`` limiters).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "RateLimitError",
    "SYNC",
    "ASYNC",
    "BOTH",
    "LIMITER_KINDS",
    "LimiterProtocol",
    "ReservationProtocol",
    "GroupEngine",
    "limiter_kind",
    "check_limiter",
]

SYNC = "sync"
ASYNC = "async"
BOTH = "both"
LIMITER_KINDS = (SYNC, ASYNC, BOTH)


class RateLimitError(Exception):
    """A request was refused by a rate limiter; ``retry_after`` is the wait in seconds."""

    def __init__(self, message: str | None = None, retry_after: float = 0.0) -> None:
        self.retry_after = float(retry_after)
        if message is None:
            message = f"Rate limit exceeded. Wait {self.retry_after:.2f}s before retry."
        super().__init__(message)


@runtime_checkable
class ReservationProtocol(Protocol):
    """A cost taken ahead of a call whose real cost is known only afterwards."""

    @property
    def cost(self) -> Any: ...  # what was reserved (a tuple, one per member, for a group)

    @property
    def settled(self) -> bool: ...

    def settle(self, actual: Any) -> Any: ...

    def cancel(self) -> Any: ...


@runtime_checkable
class LimiterProtocol(Protocol):
    """The methods of every limiter. For ``limiter_kind == "async"`` each returns an awaitable."""

    limiter_kind: str

    def try_acquire(self, cost: Any = 1) -> bool | Awaitable[bool]: ...

    def wait_time(self, cost: Any = 1) -> float | Awaitable[float]: ...

    def acquire(self, cost: Any = 1, timeout: float | None = None) -> bool | Awaitable[bool]: ...

    def reserve(self, cost: Any = 1, timeout: float | None = None) -> Any: ...

    def observe(
        self, headers: Mapping[str, str], resource: str = ..., status: int | None = None
    ) -> Any: ...

    def stats(self) -> dict | Awaitable[dict]: ...

    def reset(self) -> Any: ...


class GroupEngine(Protocol):
    """All-or-nothing decisions over several limiters of one kind (the seam of LimiterGroup).

    The in-memory limiters share one engine per backend (every member's state is checked and
    then changed in one step that no other thread can interleave); the Redis limiters' engine
    runs one atomic script over every member's key, so the group is all-or-nothing across
    processes.
    """

    kind: str  # the limiter_kind of a group of these members

    def check_members(self, members: Sequence[Any]) -> None:
        """TypeError if these members cannot be decided together (e.g. two Redis clients)."""

    def take(self, members: Sequence[Any], costs: Sequence[Any]) -> Any:
        """Take ``costs[i]`` (already checked by ``members[i]._check``) from every member, or
        nothing. Returns a list with one receipt per member (passed back to ``_settle``) when
        granted, else the seconds until the whole request could pass (a float, possibly inf).
        A coroutine for ``kind == "async"``. Counts nothing: the group counts."""


def limiter_kind(limiter: Any, name: str = "limiter") -> str:
    """``limiter``'s kind ("sync", "async" or "both"); TypeError if it is not a limiter."""
    kind = getattr(limiter, "limiter_kind", None)
    if kind not in LIMITER_KINDS:
        raise TypeError(
            f"{name} must be a prodfast rate limiter (TokenBucket, LeakyBucket, "
            f"SlidingWindowLimiter, LimiterGroup or a Redis limiter), not {type(limiter).__name__}"
        )
    return kind


def check_limiter(
    limiter: Any, *, name: str = "limiter", sync: bool = False, asynchronous: bool = False
) -> str:
    """Check, when a layer is built, that ``limiter`` can serve the call paths it will use.

    ``sync``: the layer will call it from synchronous code; ``asynchronous``: from coroutines.
    Returns the limiter's kind; raises TypeError naming ``name`` for a combination that cannot
    work: an "async" limiter on a sync path (its coroutines cannot be awaited there), a "sync"
    limiter on an async path (it would block the event loop for every decision and wait).
    """
    kind = limiter_kind(limiter, name)
    cls = type(limiter).__name__
    if sync and kind == ASYNC:
        raise TypeError(
            f"{name} {cls} is async-only: a synchronous call cannot await it; "
            "use a sync limiter (e.g. RedisTokenBucket) or make the call async"
        )
    if asynchronous and kind == SYNC:
        raise TypeError(
            f"{name} {cls} is sync-only: an async call would block the event loop on it; "
            "use its async twin (e.g. AsyncRedisTokenBucket) or an in-memory limiter"
        )
    return kind
