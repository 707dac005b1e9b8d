"""The pure-Python twin of ``_monitor.pxi``: reading a call's token usage and response model,
and the hot path of one tracked call (``_RunCore``, the base of ``prodfast.monitor.Run``).

Kept outside ``prodfast.monitor`` so that the compiled core can import it while ``prodfast``
itself is being imported; ``prodfast.monitor.usage`` is the public home of these functions.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping
from typing import Any

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


class InputOnlyUsage(dict):
    """A normalized usage that reports no output tokens (an OpenAI embeddings response:
    ``{"prompt_tokens": n, "total_tokens": n}``): a plain dict of the same three keys,
    ``completion_tokens`` 0, which tells the manager to record no output-token observation
    (OpenTelemetry records token usage only where it is reported)."""

    __slots__ = ()


def _output_tokens(usage):
    """The output-token observation of a normalized ``usage``: None if it reports none."""
    return None if type(usage) is InputOnlyUsage else usage["completion_tokens"]


def _normalize_usage(usage, name="usage"):
    """``usage`` (a mapping or an object) as ``{prompt_tokens, completion_tokens, total_tokens}``.

    Accepts the OpenAI names (``prompt_tokens``, ``completion_tokens``, ``total_tokens``) and
    the Anthropic / LangChain ones (``input_tokens``, ``output_tokens``). Returns None when
    ``usage`` carries none of them; raises TypeError/ValueError naming ``name`` for counts
    that are not non-negative ints.
    """
    if usage is None:
        return None
    if type(usage) is InputOnlyUsage:  # normalized already, and without output tokens
        return InputOnlyUsage(usage)
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
    normalized = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    return normalized if out[1] is not None else InputOnlyUsage(normalized)


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


def extract_response_model(result) -> str | None:
    """The model a result says answered (``result["model"]`` or ``result.model``), or None.

    OpenAI and Anthropic responses (and their stream chunks) carry it as ``model``; LangChain
    messages as ``response_metadata["model_name"]``. Anything that is not a non-empty str
    gives None: reading it never breaks a call.
    """
    t = type(result)
    if t is dict:
        name = result.get("model")
    elif result is None or t is str or t is bytes or t is list:
        return None
    else:
        try:
            if isinstance(result, Mapping):
                name = result.get("model")
            else:
                name = getattr(result, "model", None)
                if name is None:
                    metadata = getattr(result, "response_metadata", None)
                    if isinstance(metadata, Mapping):
                        name = metadata.get("model_name") or metadata.get("model")
        except Exception:
            return None
    return name if type(name) is str and name else None


# ---- one tracked call: the hot path of prodfast.monitor.Run ---------------------------------

_PENDING, _RUNNING, _DONE = 0, 1, 2  # a run's states
_START, _TOKEN, _END, _ERROR = range(4)  # the hooks' rows in a manager's dispatch tables
PENDING_LIMIT = 1024  # finished calls queued before the call that makes them this many aggregates

_MISSING: Any = object()
_run_ids = itertools.count(1)  # shared by both backends: run ids never repeat in a process


def _check_response_model(response_model):
    if response_model is not None and type(response_model) is not str:
        raise TypeError(f"response_model must be a str or None, got {type(response_model).__name__}")
    return response_model


def _check_result(tokens_used, usage):
    """``(tokens_used, usage)`` checked; ``usage`` normalized (``_MISSING`` left as it is)."""
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


def _check_model(model):
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, got {type(model).__name__}")


def _check_attribute(value, name):
    if value is not None and type(value) is not str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        value = str(value)
    return value


def _new_run(manager, model, prompt, run_id, operation, provider, kwargs):
    """A Run of ``manager`` for one call, its attributes checked (``CallbackManager._run``)."""
    if type(model) is not str:
        _check_model(model)
    if operation is None:
        operation = manager._operation
    elif type(operation) is not str:
        operation = _check_attribute(operation, "operation")
    if provider is None:
        provider = manager._provider
    elif type(provider) is not str:
        provider = _check_attribute(provider, "provider")
    return manager._run_type(manager, model, prompt, run_id, kwargs, operation, provider)


def _track(self, model, prompt=None, *, run_id=None, operation=None, provider=None, **kwargs):
    """A context manager (``with`` or ``async with``) around one call; yields its Run.

    ``model`` is the call's ``gen_ai.request.model``; ``operation`` and ``provider`` its
    ``gen_ai.operation.name`` and ``gen_ai.provider.name`` (default: the manager's).
    Extra keyword arguments reach every ``on_llm_start`` hook.
    """
    return _new_run(self, model, prompt, run_id, operation, provider, kwargs)


class _RunCore:
    """The state of one call and its synchronous hot path: start, streamed chunks, the result
    and the successful end. ``prodfast.monitor.Run`` subclasses it with everything else (the
    failures, ``end()``/``error()``, the async twins), which these methods call for the rare
    cases: ``_failed_start``, ``_fire_error`` and ``error``.

    The manager side it reads: ``_tables`` (the dispatch tables: ``(callbacks, sync rows,
    async rows)``, a sync row ``(entries, needs_kw)``, an entry ``(fn, fast)``), ``_clock``,
    ``_fire`` (or, compiled, the same loop in C with ``_failed`` and ``_is_refusal``),
    ``_failed``, ``_pending`` (the queue of finished calls, aggregated later) and
    ``_drain_pending()`` (aggregate it now, taking the lock).
    """

    __slots__ = (
        "_manager", "model", "prompt", "run_id", "operation", "provider", "response_model",
        "_extra", "_state", "_start", "_tables", "_first_token", "_last_token", "_gaps",
        "_tokens", "_response", "_tokens_used", "_usage",
    )  # fmt: skip

    def __init__(self, manager, model, prompt, run_id, extra, operation, provider):
        self._manager = manager
        self.model = model
        self.prompt = prompt
        self.run_id = next(_run_ids) if run_id is None else run_id
        self.operation = operation
        self.provider = provider
        self.response_model = None
        self._extra = extra
        self._state = _PENDING
        self._start = 0.0
        self._tables = None
        self._first_token = None
        self._last_token = 0.0
        self._gaps = None
        self._tokens = 0
        self._response = None
        self._tokens_used = None
        self._usage = _MISSING

    def _start_sync(self):
        """Run the start hooks, then start the clock; returns the run."""
        if self._state != _PENDING:
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
                self._failed_start(exc)
                self._fire_error(exc, 0.0)
                raise
        self._start = m._clock()
        return self

    def __enter__(self):
        return self._start_sync()

    def _note_token(self):
        if self._state != _RUNNING:
            raise RuntimeError(f"run {self.run_id!r} is not running")
        now = self._manager._clock()
        if self._first_token is None:
            self._first_token = now
        else:
            gap = now - self._last_token
            gaps = self._gaps
            if gaps is None:
                self._gaps = [gap if gap > 0.0 else 0.0]
            else:
                gaps.append(gap if gap > 0.0 else 0.0)
        self._last_token = now
        self._tokens += 1

    def new_token(self, token) -> None:
        """Report one streamed chunk (the first one sets time-to-first-chunk, each later one
        a time-per-output-chunk sample)."""
        self._note_token()
        entries = self._tables[1][_TOKEN][0]
        if entries:
            self._manager._fire(entries, _TOKEN, (self.model, token), {"run_id": self.run_id})

    def set_response(self, response, *, tokens_used=None, usage=_MISSING,
                     response_model=None) -> None:
        """Give the call's result; the run ends with it when the ``with`` block exits.

        ``usage`` defaults to what ``response`` reports (``extract_usage``), ``response_model``
        to the model it names (``extract_response_model``).
        """
        if tokens_used is not None or usage is not _MISSING:
            tokens_used, usage = _check_result(tokens_used, usage)
        if response_model is not None:
            self.response_model = _check_response_model(response_model)
        self._response = response
        self._tokens_used = tokens_used
        self._usage = usage

    def __exit__(self, exc_type, exc, tb):
        if self._state != _RUNNING:
            return False
        if exc is not None:
            self.error(exc)
            return False
        m = self._manager
        now = m._clock()
        self._state = _DONE
        response = self._response
        usage = self._usage
        if usage is _MISSING:
            usage = extract_usage(response)
        if self.response_model is None:
            self.response_model = extract_response_model(response)
        start = self._start
        latency = now - start if now > start else 0.0
        first = self._first_token
        ttft = None if first is None else (first - start if first > start else 0.0)
        # the call is queued, and aggregated with the others at the next read (or when
        # PENDING_LIMIT calls are waiting); deque.append is atomic, so no lock here
        key = (self.operation, self.provider, self.model, self.response_model, None)
        pending = m._pending
        if usage is None:
            pending.append((key, latency, ttft, self._gaps, None, None))
        else:
            pending.append((key, latency, ttft, self._gaps, usage["prompt_tokens"],
                            _output_tokens(usage)))
        if len(pending) >= PENDING_LIMIT:
            m._drain_pending()
        entries, needs_kw = self._tables[1][_END]
        if not entries:
            return False
        tokens_used = self._tokens_used
        if tokens_used is None and usage is not None:
            tokens_used = usage["total_tokens"]
        model = self.model
        streamed = self._tokens
        kw = None
        if needs_kw:
            kw = {"run_id": self.run_id, "latency": latency, "ttft": ttft, "usage": usage,
                  "streamed_tokens": streamed}
        failed = None
        for fn, fast in entries:
            try:
                if fast:
                    fn(model, response, tokens_used, self.run_id, latency, ttft, usage, streamed)
                else:
                    fn(model, response, tokens_used, **kw)
            except Exception as err:
                failed = m._failed(_END, fn, err, failed)
        if failed is not None:
            raise failed
        return False


# ---- the stock callbacks' end hooks (their classes are in prodfast.monitor.stock) -----------


class _TimingCore:
    """TimingCallback's state and its end hook: ``_latency`` and ``_ttft`` (the summaries),
    pushed under ``_lock``."""

    __slots__ = ("_lock", "_latency", "_ttft")

    def _fast_end(self, model, response, tokens_used, run_id, latency, ttft, usage, streamed):
        lock = self._lock
        lock.acquire()  # not `with`: a third cheaper on the hot path, the same guarantee
        try:
            self._latency.push(latency)
            if ttft is not None:
                self._ttft.push(ttft)
        finally:
            lock.release()


class _ErrorsCore:
    """ErrorTrackingCallback's counts and its end hook (a successful call: one more total)."""

    __slots__ = ("_lock", "_total", "_errors", "_by_type")

    def _fast_end(self, model, response, tokens_used, run_id, latency, ttft, usage, streamed):
        lock = self._lock
        lock.acquire()
        try:
            self._total += 1
        finally:
            lock.release()


class _TokensCore:
    """TokenUsageCallback's sums and its end hook; ``usage`` is None or already normalized
    (three non-negative ints), as the manager passes it."""

    __slots__ = ("_lock", "_calls", "_prompt", "_completion", "_total", "_chunks", "_seconds")

    def _fast_end(self, model, response, tokens_used, run_id, latency, ttft, usage, streamed):
        if usage is not None:
            prompt = usage["prompt_tokens"]
            completion = usage["completion_tokens"]
            total = usage["total_tokens"]
        elif tokens_used is not None:
            prompt = completion = 0
            total = _token_count(tokens_used, "tokens_used")
        else:
            prompt = completion = total = 0
        lock = self._lock
        lock.acquire()
        try:
            self._calls += 1
            self._prompt += prompt
            self._completion += completion
            self._total += total
            if streamed:
                self._chunks += streamed
            self._seconds += latency or 0.0
        finally:
            lock.release()


class _GateCore:
    """RateLimitingCallback's start hook: take the call's cost from ``bucket`` (``block``: wait
    for it, up to ``_timeout``). The refusals are the subclass's: ``_wrong_path()``,
    ``_refused(exc)`` (a cost the bucket refuses) and ``_denied(cost)`` (no tokens in time)."""

    __slots__ = ("bucket", "block", "_timeout", "_cost", "_kind")

    def _fast_start(self, model, prompt, extra):
        if self._kind == "async":
            raise self._wrong_path()
        cost = extra.get("cost", self._cost) if extra else self._cost
        bucket = self.bucket
        try:  # a cost the bucket refuses (a call's own cost=) refuses the call
            if self.block:
                if bucket.acquire(cost, self._timeout):
                    return
            elif bucket.try_acquire(cost):
                return
        except (TypeError, ValueError) as exc:
            raise self._refused(exc) from None
        raise self._denied(cost)
