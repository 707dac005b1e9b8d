"""One tracked call: :class:`Run`, its state and the paths that dispatch its hooks.

The synchronous hot path (start, chunks, result, successful end) is the active backend's
``_RunCore`` (``_monitor.pxi`` compiled, ``prodfast._monitor_py`` its twin); :class:`Run`
adds the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .._backend import impl
from .._monitor_py import (
    _DONE,
    _END,
    _ERROR,
    _MISSING,
    _PENDING,
    _RUNNING,
    _START,
    _TOKEN,
    _check_response_model,
    _check_result,
)
from .usage import extract_response_model, extract_usage

__all__ = ["Run"]


def _joined(parts):
    if parts and all(type(p) is str for p in parts):
        return "".join(parts)
    return list(parts)


class _RunMethods:
    """What :class:`Run` adds to the backend's ``_RunCore``: failures, ``end``/``error`` and the
    async paths (a mixin without state, so a Run can be built over either backend)."""

    __slots__ = ()

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

    def _failed_start(self, exc):
        """A start hook raised or the start was cancelled: the run ends here, as an error."""
        self._state = _DONE
        self._start = 0.0
        self._manager._record_error(self, exc, 0.0)
        return self._error_kwargs(exc, 0.0)

    # -- sync (start, new_token, set_response and a successful end: _RunCore)

    def end(self, response=None, *, tokens_used=None, usage=_MISSING, response_model=None) -> None:
        """End the run with ``response`` (``usage`` and ``response_model`` default to what it
        reports)."""
        if tokens_used is not None or usage is not _MISSING:
            tokens_used, usage = _check_result(tokens_used, usage)
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
            tokens_used, usage = _check_result(tokens_used, usage)
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


def run_type(core):
    """The Run class over ``core``'s ``_RunCore`` (``prodfast._core`` or ``prodfast._core_py``)."""
    if core is impl:
        return Run
    return type("Run", (_RunMethods, core._RunCore), {"__slots__": (), "__doc__": Run.__doc__,
                                                       "__module__": __name__})  # fmt: skip


if TYPE_CHECKING:

    class _RunCore:
        """The backend's ``_RunCore`` as a type checker sees it."""

        model: str
        prompt: Any
        run_id: Any
        operation: str | None
        provider: str | None
        response_model: str | None

        def __enter__(self) -> Run: ...
        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]: ...
        def new_token(self, token: Any) -> None: ...
        def set_response(self, response: Any, *, tokens_used: int | None = None,
                         usage: Any = ..., response_model: str | None = None) -> None: ...

else:
    _RunCore = impl._RunCore


class Run(_RunMethods, _RunCore):
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

    __slots__ = ()  # the state is _RunCore's
