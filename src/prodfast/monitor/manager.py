"""The :class:`CallbackManager`: runs the callbacks around every call and keeps the counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._backend import impl
from .hooks import (
    _HOOKS,
    _START,
    BaseCallback,
    _hook_is_real,
    _is_refusal,
    _sync_entry,
    logger,
)
from .instrument import instrument
from .run import Run
from .stock import RateLimitingCallback, TimingCallback, TokenUsageCallback, _empty_snapshot

__all__ = ["CallbackManager"]


def _check_model(model):
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, got {type(model).__name__}")



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
        return instrument(self, model, prompt_arg)

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
            factory = impl.LatencySummary
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
