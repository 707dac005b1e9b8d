"""Callbacks and monitoring for LLM calls, in O(1) memory.

A :class:`CallbackManager` runs a list of callbacks around every LLM call it sees::

    manager = CallbackManager([RateLimitingCallback(rate=5, capacity=10), TimingCallback(),
                               ErrorTrackingCallback(), TokenUsageCallback()])

    with manager.track("gpt-4o", prompt) as run:        # any sync call
        response = client.chat(prompt)
        run.set_response(response)                       # usage read from response["usage"]

    @manager.instrument(model="gpt-4o")                 # sync, async, or a (async) generator
    async def stream(prompt):                            # whose items are streamed tokens
        async for token in client.stream(prompt):
            yield token

    manager.metrics()    # calls, errors, error_rate, errors_by_type, latency, ttft, tokens, ...

The hooks (:class:`BaseCallback`) are the seed's: ``on_llm_start(model, prompt, **kw)``,
``on_llm_new_token(model, token, **kw)``, ``on_llm_end(model, response, tokens_used, **kw)``
and ``on_llm_error(model, error, **kw)``. The manager passes these keywords:

- every hook: ``run_id`` — one per call, so concurrent calls from threads or asyncio tasks
  never share state (the seed kept one ``start_time`` for all calls);
- ``on_llm_end``: ``latency`` (seconds), ``ttft`` (seconds to the first streamed token, or
  None), ``usage`` (``{"prompt_tokens", "completion_tokens", "total_tokens"}`` or None) and
  ``streamed_tokens`` (how many tokens the call streamed, 0 if it did not stream);
- ``on_llm_error``: ``latency`` and ``error_type`` (the exception's class name).

Latency runs from the moment every ``on_llm_start`` hook has returned (so a rate-limit
gate's waiting is not part of it) to the end of the call, on the manager's ``clock``
(``time.perf_counter`` unless you inject another).

A callback may define async twins (``on_llm_start_async`` and so on); async calls await
them instead of the plain hook, so a gate never blocks the event loop. A callback that
raises is logged (logger ``prodfast.callbacks``) and the call goes on, unless the manager
was built with ``raise_errors=True``. A :class:`~prodfast.RateLimitError` raised by an
``on_llm_start`` hook is a refusal, not a bug: the call does not run, the error hooks see
it (it counts as an error of type ``RateLimitError``) and it reaches the caller.

The statistics come from the active backend's primitives (``prodfast.LatencySummary``,
``prodfast.TokenBucket``), so each stock callback holds a fixed amount of memory however
many calls it sees, and every one of them is safe to share between threads.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "BaseCallback",
    "CallbackManager",
    "Run",
    "TimingCallback",
    "ErrorTrackingCallback",
    "RateLimitingCallback",
    "TokenUsageCallback",
    "extract_usage",
]

logger = logging.getLogger("prodfast.callbacks")

_HOOKS = ("on_llm_start", "on_llm_new_token", "on_llm_end", "on_llm_error")
_START, _TOKEN, _END, _ERROR = range(4)

_PENDING, _RUNNING, _DONE = 0, 1, 2


def _backend():
    """The ``prodfast`` package: its LatencySummary/TokenBucket are the active backend's."""
    import prodfast

    return prodfast


def _rate_limit_error():
    import prodfast

    return prodfast.RateLimitError


def _make_refusal(retry_after: float) -> Exception:
    cls = _rate_limit_error()
    message = f"Rate limit exceeded. Wait {retry_after:.2f}s before retry."
    return cls(message, retry_after=retry_after)


def _is_refusal(exc: BaseException) -> bool:
    try:
        cls = _rate_limit_error()
    except AttributeError:  # pragma: no cover - only while the limiters are not installed
        return False
    return isinstance(exc, cls)


# ---------------------------------------------------------------------------------------------
# usage: OpenAI / Anthropic / LangChain shapes to one dict


_USAGE_KEYS = (
    ("prompt_tokens", "input_tokens"),
    ("completion_tokens", "output_tokens"),
    ("total_tokens", "total_tokens"),
)


def _token_count(value, name):
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _normalize_usage(usage, name="usage"):
    """``usage`` (a mapping or an object) as ``{prompt_tokens, completion_tokens, total_tokens}``.

    Accepts the OpenAI names (``prompt_tokens``, ``completion_tokens``, ``total_tokens``) and
    the Anthropic / LangChain ones (``input_tokens``, ``output_tokens``). Returns None when
    ``usage`` carries none of them; raises TypeError/ValueError naming ``name`` for counts
    that are not non-negative ints.
    """
    if usage is None:
        return None
    if isinstance(usage, Mapping):
        get = usage.get
    else:

        def get(key, _u=usage):
            return getattr(_u, key, None)

    found = False
    out = []
    for primary, alternative in _USAGE_KEYS:
        value = get(primary)
        if value is None and alternative != primary:
            value = get(alternative)
        if value is not None:
            found = True
        out.append(_token_count(value, f"{name}[{primary!r}]"))
    if not found:
        return None
    prompt, completion, total = (0 if v is None else v for v in out)
    if out[2] is None:
        total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def extract_usage(result) -> dict | None:
    """The token usage an LLM result reports, OpenAI style, or None.

    Reads ``result["usage"]`` (a mapping result) or ``result.usage`` (an object), itself a
    mapping or an object with ``prompt_tokens``/``completion_tokens``/``total_tokens``
    (or ``input_tokens``/``output_tokens``). A result that reports nothing, or reports
    counts that are not non-negative ints, gives None: reading usage never breaks a call.
    """
    t = type(result)
    if t is dict:
        usage = result.get("usage")
    elif result is None or t is str or t is bytes:
        return None
    elif isinstance(result, Mapping):
        try:
            usage = result.get("usage")
        except Exception:
            return None
    else:
        try:
            usage = getattr(result, "usage", None)
        except Exception:
            return None
    if usage is None:
        return None
    if type(usage) is dict:
        # the common OpenAI shape, without the general path's per-key work
        p = usage.get("prompt_tokens")
        c = usage.get("completion_tokens")
        total = usage.get("total_tokens")
        if type(p) is int and type(c) is int and p >= 0 and c >= 0:
            if total is None:
                total = p + c
            if type(total) is int and total >= 0:
                return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": total}
    try:
        return _normalize_usage(usage)
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# the callback interface


class BaseCallback:
    """The four hooks of an LLM call; override the ones you need (the others cost nothing).

    Each hook receives keyword arguments from the manager (``run_id`` always; see the module
    docstring for the rest) and must accept unknown ones (``**kwargs``). A subclass may add
    ``async def on_llm_start_async(...)`` (and the same for the other hooks): async calls
    await it instead of the plain hook.
    """

    def on_llm_start(self, model: str, prompt: Any, **kwargs: Any) -> None:
        """Called before the call runs."""

    def on_llm_new_token(self, model: str, token: Any, **kwargs: Any) -> None:
        """Called for each token a streamed call produces."""

    def on_llm_end(self, model: str, response: Any, tokens_used: int | None, **kwargs: Any) -> None:
        """Called after the call returned ``response``."""

    def on_llm_error(self, model: str, error: BaseException, **kwargs: Any) -> None:
        """Called after the call raised ``error`` (the manager re-raises it afterwards)."""


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
            summary_factory = _backend().LatencySummary
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
            bucket = _backend().TokenBucket(rate, capacity, clock=clock)
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


# ---------------------------------------------------------------------------------------------
# the manager and one call's run


_MISSING: Any = object()
_run_ids = itertools.count(1)


def _joined(parts):
    if parts and all(type(p) is str for p in parts):
        return "".join(parts)
    return list(parts)


class Run:
    """One LLM call seen by a :class:`CallbackManager`: its ``run_id``, and the calls that
    report its progress. ``manager.track()`` returns one, to be used as ``with`` (or
    ``async with``); ``manager.start()`` returns one already started, for code that drives
    the hooks itself (e.g. a framework adapter).

    In a ``with`` block: ``run.new_token(token)`` for each streamed token and
    ``run.set_response(response)`` for the result; leaving the block ends the run (or
    records the error that is leaving it). Outside one: ``run.end(response)`` or
    ``run.error(exc)``, exactly once. Async code uses the ``a``-prefixed twins, which await
    the callbacks' async hooks. A run keeps the callback list it started with, so adding or
    removing callbacks never gives one an end without a start.
    """

    __slots__ = (
        "_manager", "model", "prompt", "run_id", "_extra", "_state", "_start", "_tables",
        "_first_token", "_tokens", "_response", "_tokens_used", "_usage",
    )  # fmt: skip

    def __init__(self, manager, model, prompt, run_id, extra):
        self._manager = manager
        self.model = model
        self.prompt = prompt
        self.run_id = next(_run_ids) if run_id is None else run_id
        self._extra = extra
        self._state = _PENDING
        self._start = 0.0
        self._tables = None
        self._first_token = None
        self._tokens = 0
        self._response = None
        self._tokens_used = None
        self._usage = _MISSING

    def __repr__(self) -> str:
        state = ("pending", "running", "finished")[self._state]
        return f"<Run {self.run_id!r} model={self.model!r} {state}>"

    # -- state

    def _begin(self):
        if self._state != _PENDING:
            raise RuntimeError(f"run {self.run_id!r} was already started")
        self._state = _RUNNING
        tables = self._tables = self._manager._tables
        return tables

    def _finish(self):
        if self._state is not _RUNNING:
            raise RuntimeError(
                f"run {self.run_id!r} is not running"
                + (" (it already finished)" if self._state == _DONE else " (it was not started)")
            )
        self._state = _DONE

    def _start_kwargs(self):
        kw = dict(self._extra) if self._extra else {}
        kw["run_id"] = self.run_id
        return kw

    def _end_args(self, now, response, tokens_used, usage):
        """The end hook's arguments (usage read from the response unless given)."""
        if usage is _MISSING:
            usage = extract_usage(response)
        if tokens_used is None and usage is not None:
            tokens_used = usage["total_tokens"]
        start = self._start
        first = self._first_token
        return (self.model, response, tokens_used), {
            "run_id": self.run_id,
            "latency": now - start if now > start else 0.0,
            "ttft": None if first is None else (first - start if first > start else 0.0),
            "usage": usage,
            "streamed_tokens": self._tokens,
        }

    def _error_kwargs(self, error, now):
        start = self._start
        return {
            "run_id": self.run_id,
            "latency": now - start if now > start else 0.0,
            "error_type": type(error).__name__,
        }

    def _note_token(self):
        if self._state != _RUNNING:
            raise RuntimeError(f"run {self.run_id!r} is not running")
        if self._first_token is None:
            self._first_token = self._manager._clock()
        self._tokens += 1

    @staticmethod
    def _check_result(tokens_used, usage):
        if tokens_used is not None:
            tokens_used = _token_count(tokens_used, "tokens_used")
        if usage is not None and usage is not _MISSING:
            normalized = _normalize_usage(usage)
            if normalized is None:
                raise TypeError(
                    "usage must report prompt_tokens/completion_tokens/total_tokens "
                    "(or input_tokens/output_tokens)"
                )
            usage = normalized
        return tokens_used, usage

    # -- sync

    def _start_sync(self):
        # the hot path: _begin and _start_kwargs inlined
        if self._state is not _PENDING:
            raise RuntimeError(f"run {self.run_id!r} was already started")
        self._state = _RUNNING
        m = self._manager
        tables = self._tables = m._tables
        entries, needs_kw = tables[1][_START]
        if entries:
            extra = self._extra
            kw = None
            if needs_kw:
                kw = dict(extra) if extra else {}
                kw["run_id"] = self.run_id
            try:
                m._fire(entries, _START, (self.model, self.prompt), kw,
                        (self.model, self.prompt, extra))
            except BaseException as exc:
                self._state = _DONE
                if _is_refusal(exc):
                    self._start = 0.0
                    self._error_sync(exc, 0.0)
                raise
        self._start = m._clock()
        return self

    def new_token(self, token) -> None:
        """Report one streamed token (the first one sets time-to-first-token)."""
        self._note_token()
        entries = self._tables[1][_TOKEN][0]
        if entries:
            self._manager._fire(entries, _TOKEN, (self.model, token), {"run_id": self.run_id})

    def set_response(self, response, *, tokens_used=None, usage=_MISSING) -> None:
        """Give the call's result; the run ends with it when the ``with`` block exits.

        ``usage`` defaults to what ``response`` reports (``extract_usage``).
        """
        if tokens_used is not None or usage is not _MISSING:
            tokens_used, usage = self._check_result(tokens_used, usage)
        self._response = response
        self._tokens_used = tokens_used
        self._usage = usage

    def end(self, response=None, *, tokens_used=None, usage=_MISSING) -> None:
        """End the run with ``response`` (``usage`` defaults to what it reports)."""
        if tokens_used is not None or usage is not _MISSING:
            tokens_used, usage = self._check_result(tokens_used, usage)
        if self._state is not _RUNNING:
            self._finish()  # raises: not started, or already finished
        self._response = response
        self._tokens_used = tokens_used
        self._usage = usage
        self.__exit__(None, None, None)

    def error(self, error: BaseException) -> None:
        """End the run with ``error`` (the caller re-raises it; the manager does not)."""
        if not isinstance(error, BaseException):
            raise TypeError(f"error must be an exception, got {type(error).__name__}")
        now = self._manager._clock()
        self._finish()
        self._error_sync(error, now)

    def _error_sync(self, error, now):
        m = self._manager
        m._count(error)
        entries, needs_kw = self._tables[1][_ERROR]
        if entries:
            start = self._start
            latency = now - start if now > start else 0.0
            error_type = type(error).__name__
            kw = None
            if needs_kw:
                kw = {"run_id": self.run_id, "latency": latency, "error_type": error_type}
            m._fire(entries, _ERROR, (self.model, error), kw,
                    (self.model, error, self.run_id, latency, error_type))

    __enter__ = _start_sync

    def __exit__(self, exc_type, exc, tb):
        # the hot path of every tracked call: end, count and dispatch inlined
        if self._state is not _RUNNING:
            return False
        if exc is not None:
            self.error(exc)
            return False
        m = self._manager
        now = m._clock()
        self._state = _DONE
        lock = m._lock
        lock.acquire()
        try:
            m._calls += 1
        finally:
            lock.release()
        entries, needs_kw = self._tables[1][_END]
        if not entries:
            return False
        response = self._response
        usage = self._usage
        tokens_used = self._tokens_used
        if usage is _MISSING:
            usage = extract_usage(response)
        if tokens_used is None and usage is not None:
            tokens_used = usage["total_tokens"]
        start = self._start
        first = self._first_token
        latency = now - start if now > start else 0.0
        ttft = None if first is None else (first - start if first > start else 0.0)
        model = self.model
        kw = None
        if needs_kw:
            kw = {"run_id": self.run_id, "latency": latency, "ttft": ttft, "usage": usage,
                  "streamed_tokens": self._tokens}
        fast_args = (model, response, tokens_used, self.run_id, latency, ttft, usage, self._tokens)
        failed = None
        for fn, fast in entries:
            try:
                if fast:
                    fn(*fast_args)
                else:
                    fn(model, response, tokens_used, **kw)
            except Exception as err:
                failed = m._failed(_END, fn, err, failed)
        if failed is not None:
            raise failed
        return False

    # -- async

    async def _start_async(self):
        tables = self._begin()
        m = self._manager
        pairs = tables[2][_START]
        if pairs:
            try:
                await m._afire(pairs, _START, (self.model, self.prompt), self._start_kwargs())
            except BaseException as exc:
                self._state = _DONE
                if _is_refusal(exc):
                    self._start = 0.0
                    m._count(exc)
                    await m._afire(tables[2][_ERROR], _ERROR, (self.model, exc),
                                   self._error_kwargs(exc, 0.0))
                raise
        self._start = m._clock()
        return self

    async def anew_token(self, token) -> None:
        """``new_token`` for async code: awaits the callbacks' async hooks."""
        self._note_token()
        pairs = self._tables[2][_TOKEN]
        if pairs:
            await self._manager._afire(pairs, _TOKEN, (self.model, token), {"run_id": self.run_id})

    async def aend(self, response=None, *, tokens_used=None, usage=_MISSING) -> None:
        """``end`` for async code."""
        if tokens_used is not None or usage is not _MISSING:
            tokens_used, usage = self._check_result(tokens_used, usage)
        await self._aend(response, tokens_used, usage)

    async def _aend(self, response, tokens_used, usage):
        m = self._manager
        now = m._clock()
        self._finish()
        m._count(None)
        pairs = self._tables[2][_END]
        if pairs:
            args, kw = self._end_args(now, response, tokens_used, usage)
            await m._afire(pairs, _END, args, kw)

    async def aerror(self, error: BaseException) -> None:
        """``error`` for async code."""
        if not isinstance(error, BaseException):
            raise TypeError(f"error must be an exception, got {type(error).__name__}")
        m = self._manager
        now = m._clock()
        self._finish()
        m._count(error)
        await m._afire(self._tables[2][_ERROR], _ERROR, (self.model, error),
                       self._error_kwargs(error, now))

    async def __aenter__(self):
        return await self._start_async()

    async def __aexit__(self, exc_type, exc, tb):
        if self._state != _RUNNING:
            return False
        if exc is None:
            await self._aend(self._response, self._tokens_used, self._usage)
        else:
            await self.aerror(exc)
        return False


_FAST_NAMES = {"on_llm_start": "_fast_start", "on_llm_end": "_fast_end",
               "on_llm_error": "_fast_error"}


def _sync_entry(cb, hook, fn):
    """``(callable, fast)``: a stock callback's positional twin when its hook is not overridden.

    The stock callbacks define ``_fast_end`` & co. next to the public hook they stand for;
    the manager calls them with positional arguments, which saves building and unpacking a
    keyword dict per callback. Only when the class that defines the fast twin also defines
    the hook in use: a subclass that overrides the public hook gets the public hook.
    """
    name = _FAST_NAMES.get(hook)
    if name is not None:
        cls = type(cb)
        for owner in cls.__mro__:
            if name in owner.__dict__:
                if owner.__dict__.get(hook) is getattr(cls, hook, None):
                    return getattr(cb, name), True
                break
    return fn, False


def _check_model(model):
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, got {type(model).__name__}")


def _prompt_index(fn, prompt_arg):
    """Where the prompt sits among ``fn``'s positional arguments (None: nowhere)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return 0
    positional = [
        p for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    for i, p in enumerate(positional):
        if p.name == prompt_arg:
            return i
    skip = 1 if positional and positional[0].name in ("self", "cls") else 0
    if len(positional) > skip or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return skip
    return None


def _hook_is_real(cb, hook):
    fn = getattr(cb, hook, None)
    if fn is None or not callable(fn):
        return None
    if getattr(type(cb), hook, None) is getattr(BaseCallback, hook):
        return None  # the base class's no-op: skip it
    return fn


class CallbackManager:
    """Runs callbacks around LLM calls and keeps the dashboard numbers (``metrics()``).

    ``callbacks``: the callbacks, run in this order (put a rate-limit gate first, so a refused
    call starts nothing in the others). ``raise_errors``: let a callback's exception reach
    the caller (after the other callbacks of that hook ran) instead of logging it.
    ``clock``: the clock latency is measured on, in seconds.
    """

    def __init__(
        self,
        callbacks: Iterable[Any] = (),
        *,
        raise_errors: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not isinstance(raise_errors, bool):
            raise TypeError(f"raise_errors must be a bool, got {type(raise_errors).__name__}")
        if not callable(clock):
            raise TypeError("clock must be callable")
        cbs = self._check_callbacks(callbacks)
        self._raise_errors = raise_errors
        self._clock = clock
        self._lock = threading.Lock()
        self._set_callbacks(cbs)
        self._calls = 0
        self._errors = 0
        self._by_type: dict[str, int] = {}
        since = clock()
        if isinstance(since, bool) or not isinstance(since, (int, float)):
            raise TypeError(f"clock must return a number of seconds, got {type(since).__name__}")
        self._since = since

    # -- configuration

    @staticmethod
    def _check_callbacks(callbacks):
        if callbacks is None:
            return ()
        if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
            raise TypeError(
                f"callbacks must be an iterable of callbacks, got {type(callbacks).__name__}"
            )
        cbs = tuple(callbacks)
        for cb in cbs:
            if not isinstance(cb, BaseCallback) and not any(
                callable(getattr(cb, h, None)) or callable(getattr(cb, h + "_async", None))
                for h in _HOOKS
            ):
                raise TypeError(
                    f"callbacks must be BaseCallback instances or define an on_llm_* hook, "
                    f"got {type(cb).__name__}"
                )
        return cbs

    def _set_callbacks(self, cbs):
        sync_tables = []
        async_tables = []
        for hook in _HOOKS:
            sync_row = []
            async_row = []
            for cb in cbs:
                fn = _hook_is_real(cb, hook)
                afn = getattr(cb, hook + "_async", None)
                afn = afn if callable(afn) else None
                if fn is not None:
                    sync_row.append(_sync_entry(cb, hook, fn))
                if fn is not None or afn is not None:
                    async_row.append((fn, afn))
            # (entries, whether any entry needs the keyword form)
            sync_tables.append((tuple(sync_row), any(not fast for _, fast in sync_row)))
            async_tables.append(tuple(async_row))
        # one tuple swapped in one assignment: a call in another thread sees old or new, whole
        self._tables = (cbs, tuple(sync_tables), tuple(async_tables))

    @property
    def callbacks(self) -> tuple:
        return self._tables[0]

    @property
    def raise_errors(self) -> bool:
        return self._raise_errors

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def add_callback(self, callback) -> None:
        """Append ``callback`` (calls already running keep the list they started with)."""
        (cb,) = self._check_callbacks((callback,))
        with self._lock:
            self._set_callbacks(self._tables[0] + (cb,))

    def remove_callback(self, callback) -> None:
        """Remove ``callback``; ValueError when it is not there."""
        with self._lock:
            cbs = list(self._tables[0])
            for i, cb in enumerate(cbs):
                if cb is callback:
                    del cbs[i]
                    break
            else:
                raise ValueError("callback is not registered with this manager")
            self._set_callbacks(tuple(cbs))

    # -- dispatch

    def _failed(self, hook, fn, exc, first):
        if self._raise_errors:
            return exc if first is None else first
        logger.error(
            "callback %s raised in %s (ignored; build the manager with raise_errors=True to "
            "propagate it)",
            getattr(fn, "__qualname__", repr(fn)),
            _HOOKS[hook],
            exc_info=exc,
        )
        return first

    def _fire(self, entries, hook, args, kwargs, fast_args=None):
        first = None
        for fn, fast in entries:
            try:
                if fast:
                    fn(*fast_args)
                else:
                    fn(*args, **kwargs)
            except Exception as exc:
                if hook == _START and _is_refusal(exc):
                    raise
                first = self._failed(hook, fn, exc, first)
        if first is not None:
            raise first

    async def _afire(self, pairs, hook, args, kwargs):
        first = None
        for fn, afn in pairs:
            try:
                if afn is not None:
                    await afn(*args, **kwargs)
                else:
                    fn(*args, **kwargs)
            except Exception as exc:
                if hook == _START and _is_refusal(exc):
                    raise
                first = self._failed(hook, afn or fn, exc, first)
        if first is not None:
            raise first

    def _count(self, error):
        with self._lock:
            self._calls += 1
            if error is not None:
                self._errors += 1
                name = type(error).__name__
                self._by_type[name] = self._by_type.get(name, 0) + 1

    # -- entry points

    def track(self, model: str, prompt: Any = None, *, run_id: Any = None, **kwargs: Any) -> Run:
        """A context manager (``with`` or ``async with``) around one call; yields its Run.

        Extra keyword arguments reach every ``on_llm_start`` hook.
        """
        if type(model) is not str:
            _check_model(model)
        return Run(self, model, prompt, run_id, kwargs)

    def start(self, model: str, prompt: Any = None, *, run_id: Any = None, **kwargs: Any) -> Run:
        """Start a run now (``on_llm_start``); finish it with ``run.end()`` or ``run.error()``."""
        if type(model) is not str:
            _check_model(model)
        return Run(self, model, prompt, run_id, kwargs)._start_sync()

    async def astart(self, model: str, prompt: Any = None, *, run_id: Any = None, **kwargs: Any) -> Run:
        """``start`` for async code: awaits the async hooks (a gate waits without blocking)."""
        if type(model) is not str:
            _check_model(model)
        return await Run(self, model, prompt, run_id, kwargs)._start_async()

    def instrument(self, model: Any = None, *, prompt_arg: str = "prompt"):
        """Decorator: track every call of a sync or async function, or a (async) generator.

        ``model`` defaults to the call's ``model=`` keyword argument, else the function's
        name. The prompt is the argument named ``prompt_arg`` (by keyword or by position);
        for a function without such a parameter, its first argument that is not ``self`` or
        ``cls``. A function's result is the response (usage read from its ``usage``). A generator's
        items are streamed tokens: the first one sets time-to-first-token, the response is
        their concatenation (strings) or list, and an item reporting ``usage`` gives the
        call's usage. Exceptions reach the caller after the error hooks ran. Usable bare
        (``@manager.instrument``) or called.
        """
        if callable(model):
            return self.instrument(None)(model)
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a str or None, got {type(model).__name__}")
        if not isinstance(prompt_arg, str):
            raise TypeError(f"prompt_arg must be a str, got {type(prompt_arg).__name__}")

        def decorate(fn):
            if not callable(fn):
                raise TypeError(f"instrument() decorates a callable, got {type(fn).__name__}")
            default_model = model if model is not None else getattr(fn, "__name__", repr(fn))
            manager = self
            index = _prompt_index(fn, prompt_arg)

            def describe(args, kwargs):
                name = kwargs.get("model", default_model) if model is None else model
                if type(name) is not str:
                    name = str(name)
                if prompt_arg in kwargs:
                    prompt = kwargs[prompt_arg]
                else:
                    prompt = args[index] if index is not None and len(args) > index else None
                return name, prompt

            if inspect.isasyncgenfunction(fn):

                @functools.wraps(fn)
                async def agen_wrapper(*args, **kwargs):
                    name, prompt = describe(args, kwargs)
                    run = await Run(manager, name, prompt, None, None)._start_async()
                    try:
                        agen = fn(*args, **kwargs)
                    except BaseException as exc:
                        await run.aerror(exc)
                        raise
                    parts = []
                    usage = None
                    try:
                        async for item in agen:
                            found = extract_usage(item)
                            if found is not None:
                                usage = found
                            parts.append(item)
                            await run.anew_token(item)
                            yield item
                    except GeneratorExit:
                        # the consumer stopped early: what it took is the response
                        await agen.aclose()
                        await run.aend(_joined(parts), usage=usage)
                        raise
                    except BaseException as exc:
                        await agen.aclose()
                        if run._state == _RUNNING:
                            await run.aerror(exc)
                        raise
                    await run.aend(_joined(parts), usage=usage)

                return agen_wrapper

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args, **kwargs):
                    name, prompt = describe(args, kwargs)
                    run = await Run(manager, name, prompt, None, None)._start_async()
                    try:
                        result = await fn(*args, **kwargs)
                    except BaseException as exc:
                        await run.aerror(exc)
                        raise
                    await run.aend(result)
                    return result

                return async_wrapper

            if inspect.isgeneratorfunction(fn):

                @functools.wraps(fn)
                def gen_wrapper(*args, **kwargs):
                    name, prompt = describe(args, kwargs)
                    run = Run(manager, name, prompt, None, None)._start_sync()
                    try:
                        gen = fn(*args, **kwargs)
                    except BaseException as exc:
                        run.error(exc)
                        raise
                    parts = []
                    usage = None
                    try:
                        for item in gen:
                            found = extract_usage(item)
                            if found is not None:
                                usage = found
                            parts.append(item)
                            run.new_token(item)
                            yield item
                    except GeneratorExit:
                        gen.close()
                        run.end(_joined(parts), usage=usage)
                        raise
                    except BaseException as exc:
                        gen.close()
                        if run._state == _RUNNING:
                            run.error(exc)
                        raise
                    run.end(_joined(parts), usage=usage)

                return gen_wrapper

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                name, prompt = describe(args, kwargs)
                run = Run(manager, name, prompt, None, None)._start_sync()
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    run.error(exc)
                    raise
                run.end(result)
                return result

            return wrapper

        return decorate

    # -- reporting

    def _first(self, cls):
        for cb in self._tables[0]:
            if isinstance(cb, cls):
                return cb
        return None

    def metrics(self) -> dict:
        """One dict for dashboards.

        ``calls`` (finished calls, failed ones included), ``errors``, ``error_rate`` (E),
        ``reliability`` (1 - E), ``errors_by_type``, ``latency`` and ``ttft`` (LatencySummary
        snapshots from the first TimingCallback; NaN/zero ones without it), ``tokens`` (the
        first TokenUsageCallback's stats, zeros without it), ``throughput`` (calls per second
        on the manager's clock since it was built or reset), ``uptime`` (those seconds) and,
        with a RateLimitingCallback, ``rate_limit`` (its stats).
        """
        with self._lock:
            calls, errors, by_type, since = self._calls, self._errors, dict(self._by_type), self._since
        elapsed = self._clock() - since
        rate = errors / calls if calls else 0.0
        timing = self._first(TimingCallback)
        if timing is not None:
            latency, ttft = timing.get_stats(), timing.get_ttft_stats()
        else:
            factory = _backend().LatencySummary
            latency, ttft = _empty_snapshot(factory), _empty_snapshot(factory)
        usage = self._first(TokenUsageCallback)
        out = {
            "calls": calls,
            "errors": errors,
            "error_rate": rate,
            "reliability": 1.0 - rate,
            "errors_by_type": by_type,
            "latency": latency,
            "ttft": ttft,
            "tokens": usage.get_stats() if usage is not None else TokenUsageCallback().get_stats(),
            "throughput": calls / elapsed if elapsed > 0.0 else 0.0,
            "uptime": elapsed if elapsed > 0.0 else 0.0,
        }
        gate = self._first(RateLimitingCallback)
        if gate is not None:
            out["rate_limit"] = gate.get_stats()
        return out

    def reset(self) -> None:
        """Zero the manager's counters and restart its throughput clock, and ``reset()`` every
        callback that has one (a rate-limit gate's bucket is left as it is)."""
        with self._lock:
            self._calls = 0
            self._errors = 0
            self._by_type = {}
            self._since = self._clock()
        for cb in self._tables[0]:
            if isinstance(cb, RateLimitingCallback):
                continue
            reset = getattr(cb, "reset", None)
            if callable(reset):
                reset()
