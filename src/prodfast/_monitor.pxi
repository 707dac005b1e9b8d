# Monitoring: the compiled twin of prodfast._monitor_py (the reference, with the docs).
#
# _RunCore is one tracked call's state and its synchronous hot path -- start, streamed chunks,
# the result, a successful end -- which prodfast.monitor.Run subclasses with the rest. What
# runs here is what the twin runs, in the same order: the manager's start hooks, its clock, the
# usage and response model read from the result (a C fast path for the OpenAI dict shape, the
# twin's functions for everything else), the call queued for aggregation, then the end hooks.
# Failures (a start hook that raises, an exception leaving the block) go to the Python
# methods of Run, as in the twin.

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject

from prodfast._monitor_py import PENDING_LIMIT as _MON_PENDING_LIMIT
from prodfast._monitor_py import _check_attribute as _mon_check_attribute
from prodfast._monitor_py import _check_model as _mon_check_model
from prodfast._monitor_py import _check_response_model as _mon_check_response_model
from prodfast._monitor_py import _check_result as _mon_check_result
from prodfast._monitor_py import _MISSING as _mon_MISSING
from prodfast._monitor_py import _run_ids as _mon_run_ids
from prodfast._monitor_py import _token_count as _mon_token_count
from prodfast._monitor_py import extract_response_model as _mon_extract_response_model
from prodfast._monitor_py import extract_usage as _mon_extract_usage
from prodfast._monitor_py import InputOnlyUsage as _mon_InputOnlyUsage

cdef enum:
    _MON_PENDING = 0
    _MON_RUNNING = 1
    _MON_DONE = 2

cdef enum:
    _MON_START = 0
    _MON_TOKEN = 1
    _MON_END = 2

cdef Py_ssize_t _mon_pending_limit = _MON_PENDING_LIMIT


cdef inline bint _mon_count(object v):
    """A token count the twin's fast path takes: an exact int >= 0."""
    return type(v) is int and v >= 0


cdef object _mon_usage_of(object response):
    """``extract_usage(response)``: the OpenAI dict shape here, every other one by the twin."""
    cdef PyObject* found
    cdef object usage, p, c, total
    if type(response) is dict:
        found = PyDict_GetItem(response, "usage")
        if found != NULL and type(<object>found) is dict:
            usage = <object>found
            found = PyDict_GetItem(usage, "prompt_tokens")
            p = None if found == NULL else <object>found
            found = PyDict_GetItem(usage, "completion_tokens")
            c = None if found == NULL else <object>found
            if _mon_count(p) and _mon_count(c):
                found = PyDict_GetItem(usage, "total_tokens")
                total = p + c if found == NULL or <object>found is None else <object>found
                if _mon_count(total):
                    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": total}
    return _mon_extract_usage(response)


cdef object _mon_model_of(object response):
    """``extract_response_model(response)``: a dict here, everything else by the twin."""
    cdef PyObject* found
    if type(response) is dict:
        found = PyDict_GetItem(response, "model")
        if found == NULL:
            return None
        name = <object>found
        return name if type(name) is str and len(<str>name) else None
    return _mon_extract_response_model(response)


cdef class _RunCore


def _track(self, model, prompt=None, *, run_id=None, operation=None, provider=None, **kwargs):
    """A context manager (``with`` or ``async with``) around one call; yields its Run.

    ``model`` is the call's ``gen_ai.request.model``; ``operation`` and ``provider`` its
    ``gen_ai.operation.name`` and ``gen_ai.provider.name`` (default: the manager's).
    Extra keyword arguments reach every ``on_llm_start`` hook.
    """
    cdef _RunCore run
    if type(model) is not str:
        _mon_check_model(model)
    if operation is None:
        operation = self._operation
    elif type(operation) is not str:
        operation = _mon_check_attribute(operation, "operation")
    if provider is None:
        provider = self._provider
    elif type(provider) is not str:
        provider = _mon_check_attribute(provider, "provider")
    cls = self._run_type
    if type(cls) is type and issubclass(cls, _RunCore):
        # the Run built without a call of the type: its __init__ is _RunCore's, done here
        run = _RunCore.__new__(cls)
        run._setup(self, model, prompt, run_id, kwargs, operation, provider)
        return run
    return cls(self, model, prompt, run_id, kwargs, operation, provider)


cdef object _mon_fire_start(object m, tuple entries, object model, object prompt, object kw,
                            object extra):
    """The manager's ``_fire`` for the start hooks (a refusal raises at once; any other error
    is the manager's ``_failed``, the first one raised after every hook ran)."""
    first = None
    for fn, fast in entries:
        try:
            if fast:
                fn(model, prompt, extra)
            else:
                fn(model, prompt, **kw)
        except Exception as exc:
            if m._is_refusal(exc):
                raise
            first = m._failed(_MON_START, fn, exc, first)
    if first is not None:
        raise first


cdef class _RunCore:
    """The state of one call and its synchronous hot path (see prodfast._monitor_py)."""

    cdef public object _manager
    cdef public object model
    cdef public object prompt
    cdef public object run_id
    cdef public object operation
    cdef public object provider
    cdef public object response_model
    cdef public object _extra
    cdef public int _state
    cdef public object _start
    cdef public object _tables
    cdef public object _first_token
    cdef public object _last_token
    cdef public object _gaps
    cdef public Py_ssize_t _tokens
    cdef public object _response
    cdef public object _tokens_used
    cdef public object _usage

    def __init__(self, manager, model, prompt, run_id, extra, operation, provider):
        self._setup(manager, model, prompt, run_id, extra, operation, provider)

    cdef void _setup(self, manager, model, prompt, run_id, extra, operation,
                     provider) except *:
        self._manager = manager
        self.model = model
        self.prompt = prompt
        self.run_id = next(_mon_run_ids) if run_id is None else run_id
        self.operation = operation
        self.provider = provider
        self.response_model = None
        self._extra = extra
        self._state = _MON_PENDING
        self._start = 0.0
        self._tables = None
        self._first_token = None
        self._last_token = 0.0
        self._gaps = None
        self._tokens = 0
        self._response = None
        self._tokens_used = None
        self._usage = _mon_MISSING

    cdef object _begin_sync(self):
        if self._state != _MON_PENDING:
            raise RuntimeError(f"run {self.run_id!r} was already started")
        self._state = _MON_RUNNING
        m = self._manager
        tables = self._tables = m._tables
        entries, needs_kw = (<tuple>(<tuple>tables)[1])[_MON_START]
        if entries:
            extra = self._extra
            kw = None
            if needs_kw:
                kw = dict(extra) if extra else {}
                kw["run_id"] = self.run_id
            try:
                _mon_fire_start(m, entries, self.model, self.prompt, kw, extra)
            except BaseException as exc:
                self._failed_start(exc)
                self._fire_error(exc, 0.0)
                raise
        self._start = m._clock()
        return self

    def _start_sync(self):
        """Run the start hooks, then start the clock; returns the run."""
        return self._begin_sync()

    def __enter__(self):
        return self._begin_sync()

    def _note_token(self):
        if self._state != _MON_RUNNING:
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

    def new_token(self, token):
        """Report one streamed chunk (see prodfast._monitor_py)."""
        self._note_token()
        entries = (<tuple>(<tuple>(<tuple>self._tables)[1])[_MON_TOKEN])[0]
        if entries:
            self._manager._fire(entries, _MON_TOKEN, (self.model, token), {"run_id": self.run_id})

    def set_response(self, response, *, tokens_used=None, usage=_mon_MISSING,
                     response_model=None):
        """Give the call's result; the run ends with it when the ``with`` block exits."""
        if tokens_used is not None or usage is not _mon_MISSING:
            tokens_used, usage = _mon_check_result(tokens_used, usage)
        if response_model is not None:
            self.response_model = _mon_check_response_model(response_model)
        self._response = response
        self._tokens_used = tokens_used
        self._usage = usage

    def __exit__(self, exc_type, exc, tb):
        if self._state != _MON_RUNNING:
            return False
        if exc is not None:
            self.error(exc)
            return False
        m = self._manager
        now = m._clock()
        self._state = _MON_DONE
        response = self._response
        usage = self._usage
        if usage is _mon_MISSING:
            usage = _mon_usage_of(response)
        if self.response_model is None:
            self.response_model = _mon_model_of(response)
        start = self._start
        latency = now - start if now > start else 0.0
        first = self._first_token
        ttft = None if first is None else (first - start if first > start else 0.0)
        key = (self.operation, self.provider, self.model, self.response_model, None)
        pending = m._pending
        if usage is None:
            pending.append((key, latency, ttft, self._gaps, None, None))
        else:
            pending.append((key, latency, ttft, self._gaps, usage["prompt_tokens"],
                            None if type(usage) is _mon_InputOnlyUsage
                            else usage["completion_tokens"]))
        if len(pending) >= _mon_pending_limit:
            m._drain_pending()
        entries, needs_kw = (<tuple>(<tuple>self._tables)[1])[_MON_END]
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
                failed = m._failed(_MON_END, fn, err, failed)
        if failed is not None:
            raise failed
        return False


# ---- the stock callbacks' end hooks (the twin's _TimingCore, _ErrorsCore, _TokensCore) ------

cdef class _TimingCore:
    """TimingCallback's state and its end hook (see prodfast._monitor_py)."""

    cdef public object _lock
    cdef public object _latency
    cdef public object _ttft

    def _fast_end(self, model, response, tokens_used, run_id, latency, ttft, usage, streamed):
        lock = self._lock
        lock.acquire()
        try:
            self._latency.push(latency)
            if ttft is not None:
                self._ttft.push(ttft)
        finally:
            lock.release()


cdef class _ErrorsCore:
    """ErrorTrackingCallback's counts and its end hook (see prodfast._monitor_py)."""

    cdef public object _lock
    cdef public object _total
    cdef public object _errors
    cdef public object _by_type

    def _fast_end(self, model, response, tokens_used, run_id, latency, ttft, usage, streamed):
        lock = self._lock
        lock.acquire()
        try:
            self._total += 1
        finally:
            lock.release()


cdef class _TokensCore:
    """TokenUsageCallback's sums and its end hook (see prodfast._monitor_py)."""

    cdef public object _lock
    cdef public object _calls
    cdef public object _prompt
    cdef public object _completion
    cdef public object _total
    cdef public object _chunks
    cdef public object _seconds

    def _fast_end(self, model, response, tokens_used, run_id, latency, ttft, usage, streamed):
        if usage is not None:
            prompt = usage["prompt_tokens"]
            completion = usage["completion_tokens"]
            total = usage["total_tokens"]
        elif tokens_used is not None:
            prompt = completion = 0
            total = _mon_token_count(tokens_used, "tokens_used")
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


cdef class _GateCore:
    """RateLimitingCallback's start hook (see prodfast._monitor_py)."""

    cdef public object bucket
    cdef public object block
    cdef public object _timeout
    cdef public object _cost
    cdef public object _kind

    def _fast_start(self, model, prompt, extra):
        if self._kind == "async":
            raise self._wrong_path()
        cost = extra.get("cost", self._cost) if extra else self._cost
        bucket = self.bucket
        try:
            if self.block:
                if bucket.acquire(cost, self._timeout):
                    return
            elif bucket.try_acquire(cost):
                return
        except (TypeError, ValueError) as exc:
            raise self._refused(exc) from None
        raise self._denied(cost)
