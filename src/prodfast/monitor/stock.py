"""The stock callbacks: latency, errors, a rate-limit gate and token usage, in O(1) memory.

Their statistics come from the active backend's primitives (``LatencySummary``,
``TokenBucket``), so each holds a fixed amount of memory however many calls it sees, and every
one of them is safe to share between threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from .._backend import impl
from .hooks import BaseCallback, _make_refusal
from .usage import _normalize_usage, _token_count

__all__ = ["TimingCallback", "ErrorTrackingCallback", "RateLimitingCallback", "TokenUsageCallback"]


def _empty_snapshot(factory) -> dict:
    return factory().snapshot()


class TimingCallback(BaseCallback):
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

    def _fast_end(self, model, response, tokens_used, run_id, latency, ttft, usage, streamed):
        lock = self._lock
        lock.acquire()  # not `with`: a third cheaper on the hot path, the same guarantee
        try:
            self._latency.push(latency)
            if ttft is not None:
                self._ttft.push(ttft)
        finally:
            lock.release()


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


class ErrorTrackingCallback(BaseCallback):
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

    def _fast_end(self, model, response, tokens_used, run_id, latency, ttft, usage, streamed):
        lock = self._lock
        lock.acquire()
        try:
            self._total += 1
        finally:
            lock.release()

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


def _check_timeout(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number or None, got {type(timeout).__name__}")
    timeout = float(timeout)
    if not (timeout >= 0.0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be finite and >= 0, got {timeout!r}")
    return timeout


class RateLimitingCallback(BaseCallback):
    """A token bucket in front of every call (the seed's ``RateLimitingCallback``).

    Each call takes ``cost`` tokens from a ``prodfast.TokenBucket(rate, capacity)``. With
    ``block=True`` the call waits for them (sleeping in a thread, ``await``-ing in async
    calls, so the event loop keeps running); with ``block=False``, or when ``timeout``
    seconds of waiting are not enough, it raises ``RateLimitError`` (with ``retry_after``),
    which the manager passes to the caller and counts as an error. A call may name its own
    cost: ``manager.track(model, prompt, cost=estimated_tokens)``.

    ``get_stats()`` -> ``rate, capacity, current_tokens, throughput, arrival_rate, allowed,
    denied``: throughput and arrival rate are measured (calls per second since creation),
    and over a long run throughput approaches the seed's min(rate, arrival_rate).

    ``bucket`` replaces the bucket built from ``rate``/``capacity``/``clock`` by your own
    (any object with TokenBucket's ``try_acquire``, ``acquire``, ``acquire_async``,
    ``wait_time`` and ``stats``), e.g. a shared one or a Redis-backed one.
    """

    def __init__(
        self,
        rate: float = 10.0,
        capacity: float = 20.0,
        *,
        block: bool = True,
        timeout: float | None = None,
        cost: float = 1,
        clock: Callable[[], float] = time.monotonic,
        bucket: Any = None,
    ) -> None:
        if not isinstance(block, bool):
            raise TypeError(f"block must be a bool, got {type(block).__name__}")
        self._timeout = _check_timeout(timeout)
        if bucket is None:
            bucket = impl.TokenBucket(rate, capacity, clock=clock)
        else:
            for attr in ("try_acquire", "acquire", "wait_time", "stats"):
                if not callable(getattr(bucket, attr, None)):
                    raise TypeError(f"bucket must have a {attr}() method")
        self.bucket = bucket
        # the bucket validates cost the same way for every call: check it once here
        bucket.wait_time(cost)
        self._cost = cost
        self.block = block

    @property
    def rate(self) -> float:
        """Tokens per second (the seed's attribute)."""
        return self.bucket.stats()["rate"]

    @property
    def capacity(self) -> float:
        """The bucket's size (the seed's attribute)."""
        return self.bucket.stats()["capacity"]

    @property
    def tokens(self) -> float:
        """Tokens available now (the seed's attribute)."""
        return self.bucket.stats()["tokens"]

    def _refuse(self, cost):
        retry_after = self.bucket.wait_time(cost)
        raise _make_refusal(retry_after)

    def allow_request(self, cost: float = 1.0) -> bool:
        """The seed's non-blocking check: take ``cost`` tokens if they are there."""
        return self.bucket.try_acquire(cost)

    def on_llm_start(self, model, prompt, **kwargs):
        self._fast_start(model, prompt, kwargs)

    def _fast_start(self, model, prompt, extra):
        cost = extra.get("cost", self._cost) if extra else self._cost
        if self.block:
            if self.bucket.acquire(cost, self._timeout):
                return
        elif self.bucket.try_acquire(cost):
            return
        self._refuse(cost)


    async def on_llm_start_async(self, model, prompt, **kwargs):
        cost = kwargs.get("cost", self._cost)
        if self.block:
            acquire_async = getattr(self.bucket, "acquire_async", None)
            if acquire_async is None:
                raise TypeError(
                    "an async call through RateLimitingCallback needs a bucket with acquire_async()"
                )
            if await acquire_async(cost, self._timeout):
                return
        elif self.bucket.try_acquire(cost):
            return
        self._refuse(cost)

    def get_stats(self) -> dict:
        """``rate, capacity, current_tokens, throughput, arrival_rate, allowed, denied``."""
        s = self.bucket.stats()
        return {
            "rate": s["rate"],
            "capacity": s["capacity"],
            "current_tokens": s["tokens"],
            "throughput": s["throughput"],
            "arrival_rate": s["arrival_rate"],
            "allowed": s["allowed"],
            "denied": s["denied"],
        }


class TokenUsageCallback(BaseCallback):
    """Prompt, completion and total tokens over successful calls, and output tokens per second.

    Counts come from ``usage=`` (the manager reads it from the result, OpenAI style); a call
    that reports only ``tokens_used`` adds to the total; a streamed call that reports nothing
    counts each streamed token as one completion token. ``output_tokens_per_second`` is
    completion tokens over the summed latency of the calls counted (0.0 before any time).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._prompt = 0
        self._completion = 0
        self._total = 0
        self._seconds = 0.0

    def on_llm_end(self, model, response, tokens_used, **kwargs):
        usage = kwargs.get("usage")
        if usage is not None:
            usage = _normalize_usage(usage)
        self._fast_end(
            model, response, tokens_used, None, kwargs.get("latency"), None, usage,
            kwargs.get("streamed_tokens"),
        )

    def _fast_end(self, model, response, tokens_used, run_id, latency, ttft, usage, streamed):
        # from the manager: ``usage`` is None or already normalized (three non-negative ints)
        if usage is not None:
            prompt = usage["prompt_tokens"]
            completion = usage["completion_tokens"]
            total = usage["total_tokens"]
        elif tokens_used is not None:
            prompt = completion = 0
            total = _token_count(tokens_used, "tokens_used")
        else:
            prompt = 0
            completion = total = streamed or 0
        lock = self._lock
        lock.acquire()
        try:
            self._calls += 1
            self._prompt += prompt
            self._completion += completion
            self._total += total
            self._seconds += latency or 0.0
        finally:
            lock.release()


    def get_stats(self) -> dict:
        """``calls, prompt_tokens, completion_tokens, total_tokens, output_tokens_per_second``."""
        with self._lock:
            seconds = self._seconds
            return {
                "calls": self._calls,
                "prompt_tokens": self._prompt,
                "completion_tokens": self._completion,
                "total_tokens": self._total,
                "output_tokens_per_second": self._completion / seconds if seconds > 0.0 else 0.0,
            }

    def reset(self) -> None:
        with self._lock:
            self._calls = self._prompt = self._completion = self._total = 0
            self._seconds = 0.0
