"""One tracked call: :class:`Run`, its state and the hot paths that dispatch its hooks."""

from __future__ import annotations

import itertools
from typing import Any, Literal

from .hooks import _END, _ERROR, _START, _TOKEN
from .usage import _normalize_usage, _token_count, extract_response_model, extract_usage

__all__ = ["Run"]

_PENDING, _RUNNING, _DONE = 0, 1, 2


_MISSING: Any = object()
_run_ids = itertools.count(1)


def _joined(parts):
    if parts and all(type(p) is str for p in parts):
        return "".join(parts)
    return list(parts)


def _check_response_model(response_model):
    if response_model is not None and type(response_model) is not str:
        raise TypeError(f"response_model must be a str or None, got {type(response_model).__name__}")
    return response_model


class Run:
    """One LLM call seen by a :class:`CallbackManager`: its ``run_id``, its attributes
    (``model``, ``operation``, ``provider``, ``response_model``) and the calls that report its
    progress. ``manager.track()`` returns one, to be used as ``with`` (or ``async with``);
    ``manager.start()`` returns one already started, for code that drives the hooks itself
    (e.g. a framework adapter).

    In a ``with`` block: ``run.new_token(chunk)`` for each streamed chunk and
    ``run.set_response(response)`` for the result; leaving the block ends the run (or
    records the error that is leaving it). Outside one: ``run.end(response)`` or
    ``run.error(exc)``, exactly once. Async code uses the ``a``-prefixed twins, which await
    the callbacks' async hooks. A run keeps the callback list it started with, so adding or
    removing callbacks never gives one an end without a start. A run whose start hooks fail
    or are cancelled (an ``asyncio`` cancellation while a gate waits) ends there, as an error
    of that type: every started run ends exactly once, and is counted.
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

    def _key(self, error_type):
        return (self.operation, self.provider, self.model, self.response_model, error_type)

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

    def _ttft(self):
        first = self._first_token
        if first is None:
            return None
        start = self._start
        return first - start if first > start else 0.0

    def _note_response(self, response, response_model):
        if response_model is not None:
            self.response_model = response_model
        elif self.response_model is None:
            self.response_model = extract_response_model(response)

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

    def _failed_start(self, exc):
        """A start hook raised or the start was cancelled: the run ends here, as an error."""
        self._state = _DONE
        self._start = 0.0
        self._manager._record_error(self, exc, 0.0)
        return self._error_kwargs(exc, 0.0)

    # -- sync

    def _start_sync(self) -> Run:
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
                self._failed_start(exc)
                self._fire_error(exc, 0.0)
                raise
        self._start = m._clock()
        return self

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
            tokens_used, usage = self._check_result(tokens_used, usage)
        if response_model is not None:
            self.response_model = _check_response_model(response_model)
        self._response = response
        self._tokens_used = tokens_used
        self._usage = usage

    def end(self, response=None, *, tokens_used=None, usage=_MISSING, response_model=None) -> None:
        """End the run with ``response`` (``usage`` and ``response_model`` default to what it
        reports)."""
        if tokens_used is not None or usage is not _MISSING:
            tokens_used, usage = self._check_result(tokens_used, usage)
        _check_response_model(response_model)
        if self._state is not _RUNNING:
            self._finish()  # raises: not started, or already finished
        self._response = response
        self._tokens_used = tokens_used
        self._usage = usage
        if response_model is not None:
            self.response_model = response_model
        self.__exit__(None, None, None)

    def error(self, error: BaseException) -> None:
        """End the run with ``error`` (the caller re-raises it; the manager does not)."""
        if not isinstance(error, BaseException):
            raise TypeError(f"error must be an exception, got {type(error).__name__}")
        now = self._manager._clock()
        self._finish()
        start = self._start
        latency = now - start if now > start else 0.0
        self._manager._record_error(self, error, latency)
        self._fire_error(error, latency)

    def _fire_error(self, error, latency):
        m = self._manager
        entries, needs_kw = self._tables[1][_ERROR]
        if entries:
            error_type = type(error).__name__
            kw = None
            if needs_kw:
                kw = {"run_id": self.run_id, "latency": latency, "error_type": error_type}
            m._fire(entries, _ERROR, (self.model, error), kw,
                    (self.model, error, self.run_id, latency, error_type))

    __enter__ = _start_sync

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        # the hot path of every tracked call: end, count and dispatch inlined
        if self._state is not _RUNNING:
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
        m._record_end(self, latency, ttft, usage)
        entries, needs_kw = self._tables[1][_END]
        if not entries:
            return False
        tokens_used = self._tokens_used
        if tokens_used is None and usage is not None:
            tokens_used = usage["total_tokens"]
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
                # a refusal, a hook's error (raise_errors=True) or a cancellation while a gate
                # waits: the run ends here, once, and every error hook hears of it
                kw = self._failed_start(exc)
                await m._afire(tables[2][_ERROR], _ERROR, (self.model, exc), kw)
                raise
        self._start = m._clock()
        return self

    async def anew_token(self, token) -> None:
        """``new_token`` for async code: awaits the callbacks' async hooks."""
        self._note_token()
        pairs = self._tables[2][_TOKEN]
        if pairs:
            await self._manager._afire(pairs, _TOKEN, (self.model, token), {"run_id": self.run_id})

    async def aend(self, response=None, *, tokens_used=None, usage=_MISSING,
                   response_model=None) -> None:
        """``end`` for async code."""
        if tokens_used is not None or usage is not _MISSING:
            tokens_used, usage = self._check_result(tokens_used, usage)
        _check_response_model(response_model)
        if response_model is not None:
            self.response_model = response_model
        await self._aend(response, tokens_used, usage)

    async def _aend(self, response, tokens_used, usage):
        m = self._manager
        now = m._clock()
        self._finish()
        if usage is _MISSING:
            usage = extract_usage(response)
        self._note_response(response, None)
        start = self._start
        m._record_end(self, now - start if now > start else 0.0, self._ttft(), usage)
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
        start = self._start
        m._record_error(self, error, now - start if now > start else 0.0)
        await m._afire(self._tables[2][_ERROR], _ERROR, (self.model, error),
                       self._error_kwargs(error, now))

    async def __aenter__(self) -> Run:
        return await self._start_async()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        if self._state != _RUNNING:
            return False
        if exc is None:
            await self._aend(self._response, self._tokens_used, self._usage)
        else:
            await self.aerror(exc)
        return False
