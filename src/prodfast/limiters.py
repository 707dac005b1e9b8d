"""Python layers over the rate limiters of the active backend (and over the Redis limiters).

- :class:`RateLimitError` -- raised when a request is refused, with ``retry_after`` seconds.
- :func:`rate_limit` -- a decorator for sync and async functions (wait, or raise); the cost may
  be computed from each call's arguments.
- :func:`parse_rate` -- ``"100/minute"`` -> ``(100, 60.0)``.
- :class:`LimiterGroup` -- all-or-nothing decisions across several limiters (requests per
  minute AND tokens per minute, as LLM APIs impose them), with reservations
  (:class:`GroupReservation`) and the provider's headers mapped onto its members; over async
  Redis limiters it is an :class:`AsyncLimiterGroup`, whose methods are coroutines (its
  reservations: :class:`AsyncGroupReservation`).
- :class:`AsyncLimiter` -- a drop-in for ``aiolimiter.AsyncLimiter``.
- :func:`check_limiter`, :func:`limiter_kind` -- the limiter protocol's checks, for layers
  (see ``prodfast._limiter_protocol``).
- :class:`ProviderReport` -- what every limiter's ``observe(headers)`` returns: the provider's
  limits (:class:`ProviderLimit` per resource), its retry time and the headers it could not read
  (each warned once as :class:`RateLimitHeaderWarning`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import os
import re
import sys
import threading
import time
import warnings
from contextlib import AbstractAsyncContextManager
from heapq import heappop, heappush
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._limiter_protocol import ASYNC, BOTH, SYNC, RateLimitError, check_limiter, limiter_kind
from ._ratelimit_py import (
    _rl_acquire_async,
    _rl_measured,
    _rl_nap,
    _rl_read,
    _rl_real,
    _rl_reserve,
    _rl_reserve_async,
    _rl_timeout,
    _rl_wait_for,
    _RLGate,
)
from ._rl_checks import check_block
from ._rl_headers import (
    ProviderLimit,
    ProviderReport,
    RateLimitHeaderWarning,
    check_resource,
    read_observation,
)

if TYPE_CHECKING:  # the types the annotations below name
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
    from types import TracebackType
    from typing import TypeAlias

    from typing_extensions import ParamSpec, Self

    from .redis.limiters import _Async

    _P = ParamSpec("_P")
    _Costs = float | Sequence[float]  # one per member, or one number used for each
    # what makes an async group: AsyncRedisTokenBucket, AsyncRedisSlidingWindow (their base, so
    # that a list of both, which mypy types as a list of their join, matches too)
    _AsyncMember: TypeAlias = _Async
    _Resources = Iterable[str | None] | None

_R = TypeVar("_R")

__all__ = [
    "RateLimitError",
    "rate_limit",
    "parse_rate",
    "LimiterGroup",
    "GroupReservation",
    "AsyncLimiterGroup",
    "AsyncGroupReservation",
    "AsyncLimiter",
    "check_limiter",
    "limiter_kind",
    "ProviderReport",
    "ProviderLimit",
    "RateLimitHeaderWarning",
]


# ---- parse_rate -----------------------------------------------------------------------------

_UNITS = {
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_RATE_RE = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(?:/|per)\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.IGNORECASE
)


def parse_rate(text: str) -> tuple[int | float, float]:
    """Parse ``"<count>/<period>"``: ``"100/minute"`` -> ``(100, 60.0)``, ``"5/10s"`` ->
    ``(5, 10.0)``. Units: second, minute, hour, day (also s, sec, m, min, h, hr, d, plurals);
    ``"per"`` may stand for ``/``. The count is an int when written as one.
    """
    if not isinstance(text, str):
        raise TypeError(f"rate must be a string like '100/minute', not {type(text).__name__}")
    m = _RATE_RE.match(text)
    unit = _UNITS.get(m.group(3).lower()) if m else None
    if m is None or unit is None:
        raise ValueError(f"rate must look like '100/minute' or '5/10s', got {text!r}")
    num, mult = m.group(1), m.group(2)
    amount: int | float = float(num) if "." in num else int(num)
    period = unit * (float(mult) if mult else 1.0)
    if not amount > 0 or not period > 0:
        raise ValueError(f"rate must have a count and a period > 0, got {text!r}")
    return amount, period


# ---- rate_limit decorator -------------------------------------------------------------------


def rate_limit(
    limiter: Any,
    *,
    cost: float | Sequence[float] | Callable[..., float | Sequence[float]] = 1,
    block: bool = True,
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a sync or async function so each call first acquires ``cost`` from ``limiter``
    (any limiter of the protocol: in-memory, Redis sync or async, or a LimiterGroup).

    ``cost`` is a number (one per member for a group) or a callable computing it from the call's
    arguments (``cost=lambda prompt, **kw: len(prompt) // 4``); a cost the limiter rejects
    raises its TypeError/ValueError before the call runs (at decoration for a fixed cost). With
    ``block=True`` a call waits until allowed (an async function awaits); otherwise a refused
    call raises :class:`RateLimitError` with ``retry_after``, as does a blocking call the limiter
    refuses outright (a Redis limiter with ``on_error="deny"`` during an outage).

    A sync function needs a limiter that is not async-only, an async function one that is not
    sync-only (``limiter_kind``): any other pairing is a TypeError when the function is
    decorated.
    """
    kind = limiter_kind(limiter)
    check_block(block)
    per_call = callable(cost)
    if not per_call:
        limiter._check(cost)
    sync_waits = kind != ASYNC

    def decorate(func: Callable[_P, _R]) -> Callable[_P, _R]:
        is_async = inspect.iscoroutinefunction(func)
        check_limiter(limiter, sync=not is_async, asynchronous=is_async)

        if is_async:

            @functools.wraps(func)
            async def async_wrapper(*args, **kwargs):
                c = cost(*args, **kwargs) if per_call else cost
                if block:
                    granted = await limiter.acquire_async(c)
                elif sync_waits:
                    granted = limiter.try_acquire(c)
                else:
                    granted = await limiter.try_acquire(c)
                if not granted:
                    wait = limiter.wait_time(c) if sync_waits else await limiter.wait_time(c)
                    raise RateLimitError(retry_after=wait)
                return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            c = cost(*args, **kwargs) if per_call else cost
            granted = limiter.acquire(c) if block else limiter.try_acquire(c)
            if not granted:
                raise RateLimitError(retry_after=limiter.wait_time(c))
            return func(*args, **kwargs)

        return wrapper

    return decorate


# ---- LimiterGroup ---------------------------------------------------------------------------


class LimiterGroup:
    """All-or-nothing decisions across several limiters.

    ``try_acquire(costs)`` grants a request only if every limiter grants its cost; a refused
    request changes nothing in any limiter (their counters included), and a granted one never
    takes and gives back, so nobody else sees a partial take. ``costs`` has one cost per
    limiter, or is one number used for each. The group keeps its own counters in ``stats()``;
    its limiters count the grants made through it.

    Members: distinct limiters that one engine can decide together (``_rl_group_engine``): the
    in-memory limiters of one backend, or Redis limiters of one kind on one client (one atomic
    script over all their keys, so the group is all-or-nothing across processes). The group's
    ``limiter_kind`` is theirs; over async Redis limiters the group is an
    :class:`AsyncLimiterGroup` (a subclass), whose every method is a coroutine.

    Headers: ``resources`` names, per member, which of the provider's limits it follows
    ("requests", "tokens", "input-tokens", "output-tokens", or None for none), e.g.
    ``LimiterGroup([rpm, tpm], resources=("requests", "tokens"))``; ``observe(headers)`` applies
    each member's budget, and a 429's retry time to every member.
    """

    # For type checkers, a group of async Redis limiters is an AsyncLimiterGroup, as at run time:
    # pyright reads that from __new__'s overloads, mypy from __init__'s (the type of self).
    @overload
    def __new__(
        cls, limiters: Iterable[_AsyncMember], *, resources: _Resources = None
    ) -> AsyncLimiterGroup: ...
    @overload
    def __new__(cls, limiters: Iterable[Any] = (), *, resources: _Resources = None) -> Self: ...
    def __new__(cls, limiters: Iterable[Any] = (), *, resources: _Resources = None) -> Any:
        if cls is LimiterGroup:
            members = list(limiters)
            engine = getattr(members[0], "_rl_group_engine", None) if members else None
            if getattr(engine, "kind", None) == ASYNC:
                cls = AsyncLimiterGroup
            limiters = members
        group = super().__new__(cls)
        group._given = limiters  # so __init__ sees the same members when given an iterator
        return group

    @overload
    def __init__(  # type: ignore[misc]  # self: a subclass, on purpose (see above)
        self: AsyncLimiterGroup, limiters: Iterable[_AsyncMember], *, resources: _Resources = None
    ) -> None: ...
    @overload
    def __init__(self, limiters: Iterable[Any] = (), *, resources: _Resources = None) -> None: ...
    def __init__(self, limiters: Iterable[Any] = (), *, resources: _Resources = None) -> None:
        members = list(self.__dict__.pop("_given", limiters))
        if not members:
            raise ValueError("limiters must contain at least one limiter")
        for m in members:
            limiter_kind(m, "limiters")
            if not hasattr(m, "_rl_group_engine"):
                raise TypeError(
                    f"limiters must be limiters a group can decide together (TokenBucket, "
                    f"LeakyBucket, SlidingWindowLimiter or a Redis limiter), not {type(m).__name__}"
                )
        if len({id(m) for m in members}) != len(members):
            raise ValueError("limiters must be distinct: the same limiter appears twice")
        engine = members[0]._rl_group_engine
        for m in members[1:]:
            if m._rl_group_engine is not engine:
                raise TypeError(
                    "limiters must all be in-memory limiters of one backend, or all Redis "
                    f"limiters of one kind: got {type(members[0]).__name__} "
                    f"({type(members[0]).__module__}) and {type(m).__name__} ({type(m).__module__})"
                )
        engine.check_members(members)
        if isinstance(self, AsyncLimiterGroup) and engine.kind != ASYNC:
            raise TypeError(
                "limiters must be async Redis limiters (AsyncRedisTokenBucket, "
                "AsyncRedisSlidingWindow) for an AsyncLimiterGroup: LimiterGroup(limiters) makes "
                "the group their kind needs"
            )
        if resources is not None:
            resources = tuple(resources)
            if len(resources) != len(members):
                raise ValueError(
                    f"resources must name one resource (or None) per limiter: got "
                    f"{len(resources)} for {len(members)} limiters"
                )
            for r in resources:
                if r is not None:
                    check_resource(r, "resources")
        self._members = tuple(members)
        self._engine = engine
        self._resources = resources
        self.limiter_kind = engine.kind
        self._clock = getattr(members[0], "clock", time.monotonic)
        self._lock = threading.RLock()
        self._gate = _RLGate()
        for m in members:  # a give-back to a member wakes the group's waiting head too
            gate = getattr(m, "_gate", None)
            if gate is not None:
                gate.link(self._gate)
        self._created = _rl_read(self._clock)
        self._allowed = self._denied = 0

    @property
    def limiters(self) -> tuple[Any, ...]:
        return self._members

    @property
    def resources(self) -> tuple[str | None, ...] | None:
        return self._resources

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._members)!r})"

    def _split(self, values, name: str) -> list:
        n = len(self._members)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            return [values] * n
        each = list(values)
        if len(each) != n:
            raise ValueError(
                f"{name} must have one cost per limiter: got {len(each)} {name} for {n} limiters"
            )
        return each

    def _check(self, costs) -> list:
        return [m._check(c) for m, c in zip(self._members, self._split(costs, "costs"), strict=True)]

    def _check_actual(self, actuals, reserved) -> list:
        each = self._split(actuals, "actuals")
        return [
            m._check_actual(a, r) for m, a, r in zip(self._members, each, reserved, strict=True)
        ]

    def _take(self, costs):
        """Take every cost or none: the members' receipts, or the seconds to wait."""
        return self._engine.take(self._members, costs)

    def _note(self, granted: bool) -> None:
        with self._lock:
            if granted:
                self._allowed += 1
            else:
                self._denied += 1
        if granted:
            for m in self._members:
                m._note(True)

    def _settle(self, reserved, actuals, receipts, close) -> None:
        """Settle every member's share; ``close()`` marks the reservation settled once nothing
        can fail any more (in-memory: after every member's clock was read)."""
        members = self._members
        if self.limiter_kind == BOTH:
            nows = [_rl_read(m.clock) for m in members]
            close()
            for m, r, a, receipt, now in zip(members, reserved, actuals, receipts, nows, strict=True):
                m._settle_at(r, a, receipt, now)
            return
        close()
        for m, r, a, receipt in zip(members, reserved, actuals, receipts, strict=True):
            m._settle(r, a, receipt)

    def _observation(self, headers, resources, status):
        if resources is None:
            resources = self._resources
        if resources is None:
            raise ValueError(
                "resources: say which provider limit each limiter follows, e.g. "
                "LimiterGroup([rpm, tpm], resources=('requests', 'tokens'))"
            )
        resources = tuple(resources)
        if len(resources) != len(self._members):
            raise ValueError(
                f"resources must name one resource (or None) per limiter: got "
                f"{len(resources)} for {len(self._members)} limiters"
            )
        for r in resources:
            if r is not None:
                check_resource(r, "resources")
        return read_observation(headers, resources, status)

    def try_acquire(self, costs: _Costs = 1) -> bool:
        """Grant every limiter its cost now, or none of them; never blocks."""
        cs = self._check(costs)
        granted = type(self._take(cs)) is not float
        self._note(granted)
        return granted

    def wait_time(self, costs: _Costs = 1) -> float:
        """Seconds until every limiter would grant its cost (the longest of their waits)."""
        cs = self._check(costs)
        return max(m.wait_time(c) for m, c in zip(self._members, cs, strict=True))

    def acquire(self, costs: _Costs = 1, timeout: float | None = None) -> bool:
        """Block until the whole request is granted; False if ``timeout`` runs out first."""
        cs = self._check(costs)
        return _rl_wait_for(self, cs, _rl_timeout(timeout)) is not None

    def acquire_async(self, costs: _Costs = 1, timeout: float | None = None) -> Awaitable[bool]:
        """:meth:`acquire` for asyncio (an awaitable); in-memory members only."""
        self._async_path()
        cs = self._check(costs)
        return _rl_acquire_async(self, cs, _rl_timeout(timeout))

    def reserve(self, costs: _Costs = 1, timeout: float | None = None) -> GroupReservation:
        """Take every estimated cost, waiting as :meth:`acquire`, and return a reservation whose
        ``settle(actuals)`` (one per limiter, or one number for each) gives back or takes each
        member's difference; RateLimitError (with retry_after) if ``timeout`` runs out."""
        cs = self._check(costs)
        return _rl_reserve(self, cs, _rl_timeout(timeout), GroupReservation)

    def reserve_async(
        self, costs: _Costs = 1, timeout: float | None = None
    ) -> Awaitable[GroupReservation]:
        """:meth:`reserve` for asyncio (an awaitable); in-memory members only."""
        self._async_path()
        cs = self._check(costs)
        return _rl_reserve_async(self, cs, _rl_timeout(timeout), GroupReservation)

    def _async_path(self) -> None:
        if self.limiter_kind == SYNC:
            check_limiter(self, name="LimiterGroup", asynchronous=True)

    def observe(
        self,
        headers: Mapping[str, str],
        resources: Iterable[str | None] | None = None,
        status: int | None = None,
    ) -> ProviderReport:
        """Apply the provider's headers to the members: each follows its resource (``resources``
        here, else the group's), and a 429's retry time holds every member. Returns the report."""
        report, budgets, retry_after = self._observation(headers, resources, status)
        for m, budget in zip(self._members, budgets, strict=True):
            m._apply_observation(budget, retry_after)
        return report

    def stats(self) -> dict[str, Any]:
        """The group's own counters and rates (clock of its first limiter), and each limiter's."""
        now = _rl_read(self._clock)
        with self._lock:
            out = _rl_measured(self._allowed, self._denied, self._created, now)
        out["limiters"] = [m.stats() for m in self._members]
        return out

    def reset(self) -> None:
        """Zero the group's counters and reset every limiter."""
        with self._lock:
            for m in self._members:
                m.reset()
            self._created = _rl_read(self._clock)
            self._allowed = self._denied = 0


class AsyncLimiterGroup(LimiterGroup):
    """A LimiterGroup over async-only limiters (async Redis): every method is a coroutine.

    ``LimiterGroup(limiters)`` makes one when its limiters are async Redis limiters (and type
    checkers see it so); ``reserve`` gives an :class:`AsyncGroupReservation`.

    Waiting is not first come, first served (the members' own rule): whoever asks first once
    the whole request fits gets it. A waiter sleeps the computed wait, or less when a member
    is given something back in this process (another process's give-back is seen at the
    next decision).
    """

    async def _wait(self, cs, timeout):
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        gate = self._gate
        while True:
            woken = gate.watch(loop)  # before deciding: a give-back after it resolves it
            try:
                r = await self._engine.take(self._members, cs)
                if type(r) is not float:
                    await self._note_async(True)
                    return r
                if math.isinf(r) or (deadline is not None and r > deadline - loop.time()):
                    await self._note_async(False)
                    return None
                await asyncio.wait((woken,), timeout=_rl_nap(r))
            finally:
                gate.unwatch(woken)

    async def _note_async(self, granted: bool) -> None:
        with self._lock:
            if granted:
                self._allowed += 1
            else:
                self._denied += 1
        if granted:
            for m in self._members:
                m._note(True)

    # The overrides below are coroutines where the base's methods are plain: type checkers are
    # told (type: ignore[override]), and LimiterGroup's overloaded constructor gives this type.
    async def try_acquire(self, costs: _Costs = 1) -> bool:  # type: ignore[override]
        """:meth:`LimiterGroup.try_acquire`, awaited."""
        return (await self._wait(self._check(costs), 0.0)) is not None

    async def wait_time(self, costs: _Costs = 1) -> float:  # type: ignore[override]
        """:meth:`LimiterGroup.wait_time`, awaited."""
        cs = self._check(costs)
        return max([await m.wait_time(c) for m, c in zip(self._members, cs, strict=True)])

    async def acquire(  # type: ignore[override]
        self, costs: _Costs = 1, timeout: float | None = None
    ) -> bool:
        """:meth:`LimiterGroup.acquire`, awaited: False if ``timeout`` runs out first."""
        return (await self._wait(self._check(costs), _rl_timeout(timeout))) is not None

    if TYPE_CHECKING:  # the same coroutine functions (pyright would keep the base's types)

        async def acquire_async(self, costs: _Costs = 1, timeout: float | None = None) -> bool: ...
    else:
        acquire_async = acquire

    async def reserve(  # type: ignore[override]
        self, costs: _Costs = 1, timeout: float | None = None
    ) -> AsyncGroupReservation:
        """:meth:`LimiterGroup.reserve`, awaited: an :class:`AsyncGroupReservation`."""
        cs = self._check(costs)
        receipts = await self._wait(cs, _rl_timeout(timeout))
        if receipts is None:
            raise RateLimitError(retry_after=await self.wait_time(cs))
        return AsyncGroupReservation(self, cs, receipts)

    if TYPE_CHECKING:

        async def reserve_async(
            self, costs: _Costs = 1, timeout: float | None = None
        ) -> AsyncGroupReservation: ...
    else:
        reserve_async = reserve

    async def _settle(self, reserved, actuals, receipts, close) -> None:
        close()
        for m, r, a, receipt in zip(self._members, reserved, actuals, receipts, strict=True):
            await m._settle(r, a, receipt)

    async def observe(  # type: ignore[override]
        self,
        headers: Mapping[str, str],
        resources: Iterable[str | None] | None = None,
        status: int | None = None,
    ) -> ProviderReport:
        """:meth:`LimiterGroup.observe`, awaited (each member stores its budget in Redis)."""
        report, budgets, retry_after = self._observation(headers, resources, status)
        for m, budget in zip(self._members, budgets, strict=True):
            await m._apply_observation(budget, retry_after)
        return report

    async def stats(self) -> dict[str, Any]:  # type: ignore[override]
        """:meth:`LimiterGroup.stats`, awaited."""
        now = _rl_read(self._clock)
        with self._lock:
            out = _rl_measured(self._allowed, self._denied, self._created, now)
        out["limiters"] = [await m.stats() for m in self._members]
        return out

    async def reset(self) -> None:  # type: ignore[override]
        """:meth:`LimiterGroup.reset`, awaited."""
        for m in self._members:
            await m.reset()
        with self._lock:
            self._created = _rl_read(self._clock)
            self._allowed = self._denied = 0


class GroupReservation:
    """A LimiterGroup's reservation: ``settle(actuals)`` (one per limiter, or one number for
    each), ``cancel()``, context manager; the rules of :class:`prodfast.Reservation`."""

    __slots__ = ("_group", "_cost", "_receipts", "_settled", "_lock")

    def __init__(self, group, cost, receipts) -> None:
        self._group = group
        self._cost = tuple(cost)
        self._receipts = receipts
        self._settled = False
        self._lock = threading.Lock()

    @property
    def cost(self) -> tuple[float, ...]:
        return self._cost

    @property
    def settled(self) -> bool:
        return self._settled

    def _close(self) -> None:
        with self._lock:
            if self._settled:
                raise RuntimeError("reservation already settled")
            self._settled = True

    def settle(self, actuals: _Costs) -> None:
        """The call's real costs: give back or take each member's difference."""
        each = self._group._check_actual(actuals, self._cost)
        return self._group._settle(self._cost, each, self._receipts, self._close)

    def cancel(self) -> None:
        """Give every member its whole reservation back."""
        return self._group._settle(self._cost, [0] * len(self._cost), self._receipts, self._close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        with self._lock:
            self._settled = True
        return False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self.__exit__(exc_type, exc, tb)


class AsyncGroupReservation(GroupReservation):
    """An async group's reservation: ``settle`` and ``cancel`` are coroutines."""

    __slots__ = ()

    async def settle(self, actuals: _Costs) -> None:  # type: ignore[override]
        """The call's real costs, awaited: give back or take each member's difference."""
        await super().settle(actuals)

    async def cancel(self) -> None:  # type: ignore[override]
        """Give every member its whole reservation back, awaited."""
        await super().cancel()


# ---- AsyncLimiter ---------------------------------------------------------------------------

LIMITER_REUSED_ACROSS_LOOPS_WARNING = (
    "This AsyncLimiter instance is being re-used across loops. Please create "
    "a new limiter per event loop as re-use can lead to undefined behaviour."
)

if sys.version_info >= (3, 12):  # pragma: no cover
    _warn_reuse = functools.partial(
        warnings.warn,
        message=LIMITER_REUSED_ACROSS_LOOPS_WARNING,
        category=RuntimeWarning,
        skip_file_prefixes=(os.path.dirname(__file__),),
    )
else:  # pragma: no cover
    _warn_reuse = functools.partial(
        warnings.warn,
        message=LIMITER_REUSED_ACROSS_LOOPS_WARNING,
        category=RuntimeWarning,
        stacklevel=0,
    )


def _al_positive(value, name: str) -> float:
    v = _rl_real(value, name)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return value


class AsyncLimiter(AbstractAsyncContextManager):
    """A leaky bucket for asyncio, compatible with ``aiolimiter.AsyncLimiter`` 1.x.

    Up to ``max_rate`` acquisitions pass at once (the bucket starts empty), then the level
    drains at ``max_rate / time_period`` per second. ``await acquire(amount)`` waits for room;
    ``has_capacity(amount)`` checks; ``async with limiter:`` acquires 1. Waiters are woken
    smallest amount first, then in arrival order, and an acquire that fits now is never held
    behind one that waits. The running loop's ``loop.time()`` is read on every call; reusing a
    limiter on a new loop (after the old one closed) warns with RuntimeWarning, as aiolimiter.

    Unlike aiolimiter, ``max_rate`` and ``time_period`` are checked: finite and > 0.
    """

    __slots__ = (
        "_event_loop", "_last_check", "_level", "_next_count", "_rate_per_sec", "_waiters",
        "_waker_handle", "_ready", "max_rate", "time_period",
    )  # fmt: skip

    def __init__(self, max_rate: float, time_period: float = 60) -> None:
        self.max_rate = _al_positive(max_rate, "max_rate")
        self.time_period = _al_positive(time_period, "time_period")
        self._rate_per_sec = max_rate / time_period
        self._level = 0.0
        self._last_check = 0.0
        self._waker_handle: asyncio.TimerHandle | None = None
        self._waiters: list = []  # min-heap of (amount, order, future)
        self._next_count = functools.partial(next, count())
        self._ready = None  # a finished future: what `async with` awaits when no wait is needed
        self._event_loop: asyncio.AbstractEventLoop | None = None

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        try:
            loop = self._event_loop
            if loop is None:
                raise AttributeError("_event_loop")
            if loop.is_closed():
                # reused across loops: keep only the waiters of the new loop, as aiolimiter
                loop = self._event_loop = asyncio.get_running_loop()
                self._waiters = [(a, c, f) for a, c, f in self._waiters if f.get_loop() == loop]
                _warn_reuse()
        except AttributeError:
            loop = self._event_loop = asyncio.get_running_loop()
        return loop

    def _leak(self) -> None:
        now = self._loop.time()
        if self._level:
            elapsed = now - self._last_check
            decrement = elapsed * self._rate_per_sec
            self._level = max(self._level - decrement, 0)
        self._last_check = now

    def has_capacity(self, amount: float = 1) -> bool:
        """True if ``amount`` fits in the bucket now."""
        self._leak()
        return self._level + amount <= self.max_rate

    async def acquire(self, amount: float = 1) -> None:
        """Wait until ``amount`` fits, then take it. ValueError unless 0 <= amount <= max_rate."""
        if not 0 <= amount <= self.max_rate:
            raise ValueError("Amount must be a number between 0 and the maximum capacity")
        loop = self._loop
        while not self.has_capacity(amount):
            fut = loop.create_future()
            fut.add_done_callback(functools.partial(loop.call_soon, self._wake_next))
            heappush(self._waiters, (amount, self._next_count(), fut))
            self._wake_next()
            await fut
        self._level += amount
        self._wake_next()

    def _wake_next(self, *_args: object) -> None:
        heap, handle, self._waker_handle = self._waiters, self._waker_handle, None
        if handle is not None:
            handle.cancel()
        while heap and heap[0][-1].done():
            heappop(heap)
        if not heap:
            return
        amount, _, fut = heap[0]
        self._leak()
        needed = amount - self.max_rate + self._level
        if needed <= 0:
            heappop(heap)
            fut.set_result(None)
            return
        wake_next_at = self._last_check + (1 / self._rate_per_sec * needed)
        self._waker_handle = self._loop.call_at(wake_next_at, self._wake_next)

    def __repr__(self) -> str:
        args = f"max_rate={self.max_rate!r}, time_period={self.time_period!r}"
        state = f"level: {self._level:f}, waiters: {len(self._waiters)}"
        return f"<AsyncLimiter({args}) at {id(self):#x} [{state}]>"

    def __aenter__(self) -> Awaitable[None]:
        # Fast path of `await self.acquire()`: nobody waits and 1 fits now. Same reads of
        # loop.time() and the same arithmetic as acquire(), without creating a coroutine.
        if self._waiters or self._waker_handle is not None or not 1 <= self.max_rate:
            return self.acquire()
        loop = _get_running_loop()
        if loop is not self._event_loop:  # first use, or another loop: the checks of _loop
            loop = self._loop
        now = loop.time()  # at every call: a test may patch the loop's clock at any time
        level = self._level
        if level:
            level = level - (now - self._last_check) * self._rate_per_sec
            if level < 0:  # as aiolimiter's max(level - decrement, 0)
                level = 0
            self._level = level
        self._last_check = now
        if level + 1 > self.max_rate:
            return self._acquire_rest(loop)
        self._level = level + 1
        ready = self._ready
        if ready is None:
            ready = self._ready = loop.create_future()
            ready.set_result(None)
        return ready

    async def _acquire_rest(self, loop) -> None:
        # acquire(1) after has_capacity(1) came out False: wait as aiolimiter does
        while True:
            fut = loop.create_future()
            fut.add_done_callback(functools.partial(loop.call_soon, self._wake_next))
            heappush(self._waiters, (1, self._next_count(), fut))
            self._wake_next()
            await fut
            if self.has_capacity(1):
                break
        self._level += 1
        self._wake_next()

    def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Awaitable[None]:
        ready = self._ready
        if ready is None:  # only if __aenter__ never ran: an async no-op as aiolimiter's
            return _noop()
        return ready


_get_running_loop = asyncio.get_running_loop


async def _noop() -> None:
    return None
