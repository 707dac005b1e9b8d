"""The :class:`CallbackManager`: runs the callbacks around every call and keeps the counts."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .._backend import impl
from .._monitor_py import (
    PENDING_LIMIT,  # finished calls queued before they are aggregated
    _check_attribute,
    _new_run,
    _output_tokens,
)
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
from .series import MAX_ATTRIBUTE_SETS, OVERFLOW_KEY, Series, SeriesView
from .stock import RateLimitingCallback, TimingCallback, TokenUsageCallback, _empty_snapshot

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    _P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = ["CallbackManager"]



class CallbackManager:
    """Runs callbacks around LLM calls and keeps the dashboard numbers (``metrics()``).

    ``callbacks``: the callbacks, run in this order (put a rate-limit gate first, so a refused
    call starts nothing in the others). ``raise_errors``: let a callback's exception reach
    the caller (after the other callbacks of that hook ran) instead of logging it.
    ``clock``: the clock latency is measured on, in seconds.

    Per-call dimensions: every call is also recorded under its attribute set (see
    :mod:`prodfast.monitor.series`): ``gen_ai.operation.name`` and ``gen_ai.provider.name``
    from the call's ``operation=``/``provider=`` or the manager's (``operation`` defaults to
    ``"chat"``, ``provider`` to none), ``gen_ai.request.model`` from the call,
    ``gen_ai.response.model`` from the response and ``error.type`` for a failed call.
    ``max_attribute_sets`` bounds how many sets are kept (calls beyond go to one overflow set
    and are counted). ``sketch_factory`` builds their quantile sketches (default: the active
    backend's ``QuantileSketch``). A finished call costs one queue append; the queue is
    aggregated in one pass at every read (``metrics()``, ``series()``, an export) and whenever
    ``PENDING_LIMIT`` calls wait, so a read sees every call that finished before it.
    """

    _run_type = Run  # a test builds managers over either backend's _RunCore (run.run_type)

    def __init__(
        self,
        callbacks: Iterable[Any] = (),
        *,
        raise_errors: bool = False,
        clock: Callable[[], float] = time.perf_counter,
        operation: str | None = "chat",
        provider: str | None = None,
        max_attribute_sets: int = MAX_ATTRIBUTE_SETS,
        sketch_factory: Callable[[], Any] | None = None,
    ) -> None:
        if sketch_factory is not None:
            if not callable(sketch_factory):
                raise TypeError("sketch_factory must be callable")
            probe = sketch_factory()
            for method in ("push", "quantile", "to_bytes"):
                if not callable(getattr(probe, method, None)):
                    raise TypeError(f"sketch_factory must build sketches with a {method}() method")
        operation = _check_attribute(operation, "operation")
        provider = _check_attribute(provider, "provider")
        if isinstance(max_attribute_sets, bool) or not isinstance(max_attribute_sets, int):
            raise TypeError(
                f"max_attribute_sets must be an int, got {type(max_attribute_sets).__name__}"
            )
        if max_attribute_sets < 1:
            raise ValueError(f"max_attribute_sets must be >= 1, got {max_attribute_sets}")
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
        self._operation = operation
        self._provider = provider
        self._max_sets = max_attribute_sets
        self._sketch_factory = impl.QuantileSketch if sketch_factory is None else sketch_factory
        self._user_sketch_factory = sketch_factory is not None
        self._series: dict[tuple, Series] = {}
        self._pending: deque = deque()
        self._overflow_calls = 0
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

    @property
    def operation(self) -> str | None:
        """The default ``gen_ai.operation.name`` of the calls."""
        return self._operation

    @property
    def provider(self) -> str | None:
        """The default ``gen_ai.provider.name`` of the calls."""
        return self._provider

    @property
    def max_attribute_sets(self) -> int:
        return self._max_sets

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

    def _series_for(self, key, calls=1):
        """The series of ``key``, made on first use; the overflow one past the cap.

        Called with the lock held and returns with it held; a ``sketch_factory`` given to the
        manager is user code, which may call back into it, so the lock is released while it
        builds the new series' sketches (the active backend's QuantileSketch is built under it).
        """
        if not self._user_sketch_factory:
            series = self._series
            if len(series) - (OVERFLOW_KEY in series) < self._max_sets:
                s = series[key] = Series(key, self._sketch_factory)
                return s
            self._overflow_calls += calls
            s = series.get(OVERFLOW_KEY)
            if s is None:
                s = series[OVERFLOW_KEY] = Series(OVERFLOW_KEY, self._sketch_factory)
            return s
        fresh = None
        while True:
            series = self._series
            found = series.get(key)
            if found is not None:
                return found
            full = len(series) - (OVERFLOW_KEY in series) >= self._max_sets
            target = OVERFLOW_KEY if full else key
            found = series.get(target)
            if found is None and fresh is not None and fresh.key == target:
                found = series[target] = fresh
            if found is not None:
                if full:
                    self._overflow_calls += calls
                return found
            lock = self._lock
            lock.release()
            try:
                fresh = Series(target, self._sketch_factory)
            finally:
                lock.acquire()
            # and look again: another thread may have made it, or filled the last place

    def _drain_pending(self):
        """Aggregate the queued calls now (a run's end, when PENDING_LIMIT calls wait)."""
        with self._lock:
            self._drain()

    def _record_end(self, run, latency, ttft, usage):
        # the async end (the sync one is _RunCore.__exit__'s): the call is queued, and aggregated with the others at the next read
        # (or when PENDING_LIMIT calls are waiting); deque.append is atomic, so no lock here
        pending = self._pending
        if usage is None:
            pending.append(((run.operation, run.provider, run.model, run.response_model, None),
                            latency, ttft, run._gaps, None, None))
        else:
            pending.append(((run.operation, run.provider, run.model, run.response_model, None),
                            latency, ttft, run._gaps, usage["prompt_tokens"],
                            _output_tokens(usage)))
        if len(pending) >= PENDING_LIMIT:
            with self._lock:
                self._drain()

    def _record_error(self, run, error, latency):
        name = type(error).__name__
        with self._lock:
            self._errors += 1
            self._by_type[name] = self._by_type.get(name, 0) + 1
            self._pending.append(((run.operation, run.provider, run.model, run.response_model,
                                   name), latency, run._ttft(), run._gaps, None, None))

    def _drain(self):
        """Aggregate the queued calls into their series. Under the lock."""
        pending = self._pending
        n = len(pending)  # exactly these: calls queued meanwhile wait for the next drain
        if not n:
            return
        popleft = pending.popleft
        by_key: dict[tuple, list] = {}
        for _ in range(n):
            call = popleft()
            calls = by_key.get(call[0])
            if calls is None:
                by_key[call[0]] = [call]
            else:
                calls.append(call)
        self._calls += n
        series = self._series
        for key, calls in by_key.items():
            s = series.get(key)
            if s is None:
                s = self._series_for(key, len(calls))
            s.record_calls(calls)

    # -- entry points

    _run = _new_run  # (self, model, prompt, run_id, operation, provider, kwargs) -> Run

    # track(model, prompt=None, *, run_id=None, operation=None, provider=None, **kwargs): the
    # backend's (compiled: one C call from the arguments to the Run); documented there
    if TYPE_CHECKING:

        def track(self, model: str, prompt: Any = None, *, run_id: Any = None,
                  operation: str | None = None, provider: str | None = None,
                  **kwargs: Any) -> Run: ...

    else:
        track = impl._track

    _is_refusal = staticmethod(_is_refusal)  # for the compiled start loop

    def start(self, model: str, prompt: Any = None, *, run_id: Any = None,
              operation: str | None = None, provider: str | None = None, **kwargs: Any) -> Run:
        """Start a run now (``on_llm_start``); finish it with ``run.end()`` or ``run.error()``."""
        return self._run(model, prompt, run_id, operation, provider, kwargs)._start_sync()

    async def astart(self, model: str, prompt: Any = None, *, run_id: Any = None,
                     operation: str | None = None, provider: str | None = None,
                     **kwargs: Any) -> Run:
        """``start`` for async code: awaits the async hooks (a gate waits without blocking)."""
        run = self._run(model, prompt, run_id, operation, provider, kwargs)
        return await run._start_async()

    @overload
    def instrument(self, model: Callable[_P, _R], /) -> Callable[_P, _R]: ...
    @overload
    def instrument(self, model: str | None = None, *, prompt_arg: str = "prompt",
                   operation: str | None = None,
                   provider: str | None = None) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]: ...
    def instrument(self, model: Any = None, *, prompt_arg: str = "prompt",
                   operation: str | None = None, provider: str | None = None) -> Any:
        """Decorator: track every call of a sync or async function, or a (async) generator.

        ``model`` defaults to the call's ``model=`` keyword argument, else the function's
        name. The prompt is the argument named ``prompt_arg`` (by keyword or by position);
        for a function without such a parameter, its first argument that is not ``self`` or
        ``cls``. A function's result is the response (usage read from its ``usage``). A generator's
        items are streamed tokens: the first one sets time-to-first-token, the response is
        their concatenation (strings) or list, and an item reporting ``usage`` gives the
        call's usage (and an item naming its ``model`` the response model). ``operation`` and
        ``provider``: the calls' ``gen_ai.operation.name`` / ``gen_ai.provider.name`` (default:
        the manager's). Exceptions reach the caller after the error hooks ran. Usable bare
        (``@manager.instrument``) or called.
        """
        return instrument(self, model, prompt_arg, operation, provider)

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

        Per attribute set: ``by_attributes``, a list of :meth:`Series.snapshot
        <prodfast.monitor.series.Series.snapshot>` dicts (``attributes``, ``calls`` and the
        ``duration``, ``time_to_first_chunk``, ``time_per_output_chunk``, ``input_tokens`` and
        ``output_tokens`` histograms with their p50/p95/p99), and ``overflow_calls``: the calls
        recorded in the overflow set because ``max_attribute_sets`` sets existed already.
        """
        with self._lock:
            self._drain()
            calls, errors, by_type, since = self._calls, self._errors, dict(self._by_type), self._since
            series, overflow_calls = self._copy_series()
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
            "by_attributes": [s.snapshot() for s in series],
            "overflow_calls": overflow_calls,
        }
        gate = self._first(RateLimitingCallback)
        if gate is not None:
            out["rate_limit"] = gate.get_stats()
        return out

    def _copy_series(self, with_sketches=False):
        """Views of every series (the overflow one last) and the overflow count. Under the lock."""
        items = [s for k, s in self._series.items() if k != OVERFLOW_KEY]
        overflow = self._series.get(OVERFLOW_KEY)
        if overflow is not None:
            items.append(overflow)
        return [s.view(with_sketches) for s in items], self._overflow_calls

    def series(self, with_sketches: bool = False) -> tuple[list[SeriesView], int]:
        """A consistent copy of the per-attribute-set statistics, for exporters: a
        :class:`~prodfast.monitor.series.SeriesView` of every set (in the order they appeared,
        the overflow set last; with each sketch's bytes when ``with_sketches``) and the
        overflow call count."""
        with self._lock:
            self._drain()
            return self._copy_series(with_sketches)

    def reset(self) -> None:
        """Zero the manager's counters and restart its throughput clock, and ``reset()`` every
        callback that has one (a rate-limit gate's bucket is left as it is)."""
        with self._lock:
            self._calls = 0
            self._errors = 0
            self._by_type = {}
            self._pending.clear()
            self._series = {}
            self._overflow_calls = 0
            self._since = self._clock()
        for cb in self._tables[0]:
            if isinstance(cb, RateLimitingCallback):
                continue
            reset = getattr(cb, "reset", None)
            if callable(reset):
                reset()
