"""The stock callbacks: latency, errors, a rate-limit gate and token usage, in O(1) memory.

Their statistics come from the active backend's primitives (``LatencySummary``,
``TokenBucket``), so each holds a fixed amount of memory however many calls it sees, and every
one of them is safe to share between threads.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from .._backend import impl
from .._limiter_protocol import ASYNC, SYNC, check_limiter, limiter_kind
from .._rl_checks import check_block, check_timeout
from .hooks import BaseCallback, _make_refusal
from .usage import _normalize_usage

__all__ = ["TimingCallback", "ErrorTrackingCallback", "RateLimitingCallback", "TokenUsageCallback"]


def _empty_snapshot(factory) -> dict:
    return factory().snapshot()


class TimingCallback(BaseCallback, impl._TimingCore):
    """Latency statistics of successful calls in O(1) memory (the seed stored every timing).

    ``get_stats()`` -> ``count, mean, std_dev, min, max, p50, p95, p99`` (seconds; std_dev is
    the sample standard deviation, n - 1; the percentiles are P-square estimates, exact up to
    five calls). Streamed calls also feed ``get_ttft_stats()``: time to the first token.
    Latency comes from the manager (the ``latency=`` keyword of ``on_llm_end``); a failed call
    is not a latency sample (ErrorTrackingCallback counts it).

    ``summary_factory`` builds the two summaries (default: ``prodfast.LatencySummary`` of the
    active backend).
    """

    def __init__(self, *, summary_factory: Callable[[], Any] | None = None) -> None:
        if summary_factory is None:
            summary_factory = impl.LatencySummary
        elif not callable(summary_factory):
            raise TypeError("summary_factory must be callable")
        self._factory = summary_factory
        self._lock = threading.Lock()
        self._latency = summary_factory()
        self._ttft = summary_factory()

    def on_llm_end(self, model, response, tokens_used, **kwargs):
        latency = kwargs.get("latency")
        if latency is None:
            raise TypeError(
                "TimingCallback.on_llm_end needs latency= (seconds); a CallbackManager passes it"
            )
        self._fast_end(model, response, tokens_used, None, latency, kwargs.get("ttft"), None, 0)

    _fast_end = impl._TimingCore._fast_end  # the end hook's positional twin (the backend's)

    def get_stats(self) -> dict:
        """``count, mean, std_dev, min, max, p50, p95, p99`` of call latency, in seconds."""
        with self._lock:
            return self._latency.snapshot()

    def get_ttft_stats(self) -> dict:
        """The same statistics of time to first token, over streamed calls."""
        with self._lock:
            return self._ttft.snapshot()

    def reset(self) -> None:
        """Forget every sample."""
        with self._lock:
            self._latency = self._factory()
            self._ttft = self._factory()


class ErrorTrackingCallback(BaseCallback, impl._ErrorsCore):
    """Error rate E = errors / total (0.0 before any call), reliability R = 1 - E, errors by type."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._errors = 0
        self._by_type: dict[str, int] = {}

    def on_llm_end(self, model, response, tokens_used, **kwargs):
        with self._lock:
            self._total += 1

    def on_llm_error(self, model, error, **kwargs):
        self._fast_error(model, error, None, 0.0, type(error).__name__)

    _fast_end = impl._ErrorsCore._fast_end  # the end hook's positional twin (the backend's)

    def _fast_error(self, model, error, run_id, latency, error_type):
        with self._lock:
            self._total += 1
            self._errors += 1
            self._by_type[error_type] = self._by_type.get(error_type, 0) + 1


    @property
    def total_requests(self) -> int:
        return self._total

    @property
    def errors(self) -> int:
        return self._errors

    def get_error_rate(self) -> float:
        """E = errors / total requests, 0.0 when there were none."""
        with self._lock:
            return self._errors / self._total if self._total else 0.0

    def get_reliability(self) -> float:
        """R = 1 - E."""
        return 1.0 - self.get_error_rate()

    def get_errors_by_type(self) -> dict[str, int]:
        """How many calls failed with each exception class (by class name)."""
        with self._lock:
            return dict(self._by_type)

    def get_stats(self) -> dict:
        """``total, errors, error_rate, reliability, errors_by_type``."""
        with self._lock:
            total, errors, by_type = self._total, self._errors, dict(self._by_type)
        rate = errors / total if total else 0.0
        return {
            "total": total,
            "errors": errors,
            "error_rate": rate,
            "reliability": 1.0 - rate,
            "errors_by_type": by_type,
        }

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._errors = 0
            self._by_type = {}


def _refusing(exc: Exception) -> Exception:
    """Mark ``exc`` as refusing the call: the manager raises it to the caller and the call does
    not run (a bad cost or a wrong call path must never be logged while the call runs)."""
    exc.refuses_call = True  # type: ignore[attr-defined]
    return exc


class RateLimitingCallback(BaseCallback, impl._GateCore):
    """A rate limiter in front of every call (the seed's ``RateLimitingCallback``).

    Each call takes ``cost`` from ``bucket``, by default a ``prodfast.TokenBucket(rate,
    capacity)``. With ``block=True`` the call waits for it (sleeping in a thread, ``await``-ing
    in async calls, so the event loop keeps running); with ``block=False``, or when ``timeout``
    seconds of waiting are not enough (None or inf: wait for ever), it raises
    ``RateLimitError`` (with ``retry_after``), which the manager passes to the caller and
    counts as an error. A call may name its own cost:
    ``manager.track(model, prompt, cost=estimated_tokens)``; a cost the bucket cannot grant
    (negative, NaN, not a number, above its capacity) refuses the call with the bucket's
    ValueError/TypeError, and the call does not run.

    ``bucket`` replaces the bucket built from ``rate``/``capacity``/``clock`` by any limiter of
    the limiter protocol (``prodfast._limiter_protocol``): an in-memory limiter or
    ``LimiterGroup`` (sync and async calls), a ``RedisTokenBucket`` or ``RedisSlidingWindow``
    (sync calls only: an async call would block its event loop) or their ``AsyncRedis*`` twins
    (async calls only). ``call_paths`` says which; a call on the other path raises TypeError
    before it runs. Over a ``LimiterGroup``, ``cost`` is the group's costs (one per limiter, or
    one number for each).

    ``get_stats()`` -> ``rate, capacity, current_tokens, throughput, arrival_rate, allowed,
    denied``, read from the bucket's ``stats()`` (None where it has no such figure, e.g. a
    group's rate): throughput and arrival rate are measured (calls per second since creation),
    and over a long run throughput approaches the seed's min(rate, arrival_rate).
    """

    def __init__(
        self,
        rate: float = 10.0,
        capacity: float = 20.0,
        *,
        block: bool = True,
        timeout: float | None = None,
        cost: Any = 1,
        clock: Callable[[], float] = time.monotonic,
        bucket: Any = None,
    ) -> None:
        self.block = check_block(block)
        self._timeout = check_timeout(timeout)
        if bucket is None:
            bucket = impl.TokenBucket(rate, capacity, clock=clock)
        kind = limiter_kind(bucket, "bucket")
        self.bucket = bucket
        self._kind = kind
        # a fixed cost is checked now, once (by the bucket's own rules)
        check = getattr(bucket, "_check", None)
        if callable(check):
            check(cost)
        elif kind != ASYNC:
            bucket.wait_time(cost)
        self._cost = cost
        paths = {"sync", "async"}
        if kind == SYNC:
            paths = {"sync"}
        elif kind == ASYNC:
            paths = {"async"}
        self.call_paths = frozenset(paths)

    def path_error(self, asynchronous: bool) -> TypeError | None:
        """The TypeError a call on a path the bucket cannot serve raises before it runs (an
        async call when ``asynchronous``), or None when the bucket serves that path."""
        try:
            check_limiter(self.bucket, name="bucket", sync=not asynchronous, asynchronous=asynchronous)
        except TypeError as exc:
            return _refusing(TypeError(f"RateLimitingCallback: {exc}"))
        return None

    @property
    def rate(self) -> float | None:
        """Tokens per second (the seed's attribute)."""
        return self._stats().get("rate")

    @property
    def capacity(self) -> float | None:
        """The bucket's size (the seed's attribute)."""
        return self._stats().get("capacity")

    @property
    def tokens(self) -> float | None:
        """Tokens available now (the seed's attribute)."""
        return self._stats().get("tokens")

    def _stats(self) -> dict:
        s = self.bucket.stats()
        if inspect.isawaitable(s):  # an async group's stats(): read its counters in async code
            s.close()  # type: ignore[attr-defined]
            return {}
        return s

    def allow_request(self, cost: float = 1.0) -> bool:
        """The seed's non-blocking check: take ``cost`` tokens if they are there (sync buckets)."""
        if self._kind == ASYNC:
            raise self.path_error(False)  # type: ignore[misc]
        return self.bucket.try_acquire(cost)

    def on_llm_start(self, model, prompt, **kwargs):
        self._fast_start(model, prompt, kwargs)

    _fast_start = impl._GateCore._fast_start  # the start hook's positional twin (the backend's)

    def _wrong_path(self):
        return self.path_error(False)

    @staticmethod
    def _refused(exc):
        return _refusing(exc)

    def _denied(self, cost):
        return _make_refusal(self.bucket.wait_time(cost))

    async def on_llm_start_async(self, model, prompt, **kwargs):
        kind = self._kind
        if kind == SYNC:
            raise self.path_error(True)  # type: ignore[misc]
        cost = kwargs.get("cost", self._cost)
        bucket = self.bucket
        try:
            if kind == ASYNC:
                if self.block:
                    if await bucket.acquire(cost, self._timeout):
                        return
                elif await bucket.try_acquire(cost):
                    return
                raise _make_refusal(await bucket.wait_time(cost))
            if self.block:
                if await bucket.acquire_async(cost, self._timeout):
                    return
            elif bucket.try_acquire(cost):
                return
        except (TypeError, ValueError) as exc:
            raise _refusing(exc) from None
        raise _make_refusal(bucket.wait_time(cost))

    def get_stats(self) -> dict:
        """``rate, capacity, current_tokens, throughput, arrival_rate, allowed, denied``."""
        s = self._stats()
        return {
            "rate": s.get("rate"),
            "capacity": s.get("capacity"),
            "current_tokens": s.get("tokens"),
            "throughput": s.get("throughput"),
            "arrival_rate": s.get("arrival_rate"),
            "allowed": s.get("allowed"),
            "denied": s.get("denied"),
        }


class TokenUsageCallback(BaseCallback, impl._TokensCore):
    """Prompt, completion and total tokens over successful calls, and output tokens per second.

    Counts come from ``usage=`` (the manager reads it from the result, OpenAI style); a call
    that reports only ``tokens_used`` adds to the total. Streamed chunks are counted as
    ``chunks``, never as tokens (a chunk may hold any number of tokens, or none): a stream that
    reports no usage adds chunks and no tokens. ``output_tokens_per_second`` is completion
    tokens over the summed latency of the calls counted (0.0 before any time).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._prompt = 0
        self._completion = 0
        self._total = 0
        self._chunks = 0
        self._seconds = 0.0

    def on_llm_end(self, model, response, tokens_used, **kwargs):
        usage = kwargs.get("usage")
        if usage is not None:
            usage = _normalize_usage(usage)
        self._fast_end(
            model, response, tokens_used, None, kwargs.get("latency"), None, usage,
            kwargs.get("streamed_tokens"),
        )

    _fast_end = impl._TokensCore._fast_end  # the end hook's positional twin (the backend's)

    def get_stats(self) -> dict:
        """``calls, prompt_tokens, completion_tokens, total_tokens, chunks,
        output_tokens_per_second``."""
        with self._lock:
            seconds = self._seconds
            return {
                "calls": self._calls,
                "prompt_tokens": self._prompt,
                "completion_tokens": self._completion,
                "total_tokens": self._total,
                "chunks": self._chunks,
                "output_tokens_per_second": self._completion / seconds if seconds > 0.0 else 0.0,
            }

    def reset(self) -> None:
        with self._lock:
            self._calls = self._prompt = self._completion = self._total = self._chunks = 0
            self._seconds = 0.0
