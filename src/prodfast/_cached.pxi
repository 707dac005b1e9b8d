# The hit path of the memoizing decorators (decorators.py), compiled: one key, one cache lookup,
# under the decorator's lock (and condition) when it has one, with cachetools' lock protocol call
# for call. The rest (computing a missed value and storing it, single flight, shared caches) is
# Python code in the subclasses decorators.py builds on these two bases. Twin: _cached_py.py.
#
# A call reaches the C functions below directly through the type's tp_call slot: a
# `def __call__(self, *args, **kwargs)` would first build an empty kwargs dict on every call,
# which costs as much as the rest of a hit. The class decorator _fast_call puts the slot on each
# subclass (CPython would otherwise give a subclass the base's __call__ wrapper).

from cpython.object cimport PyObject, PyTypeObject, ternaryfunc
from cpython.pythread cimport PyThread_get_thread_ident


cdef extern from "Python.h":
    void PyType_Modified(PyTypeObject *tp)
    Py_ssize_t PyDict_GET_SIZE(PyObject *mp)


# modes: what a call does before the cache lookup
cdef enum:
    _SLOW = 0        # everything in self._call (shared caches, asyncio)
    _PLAIN = 1       # no lock: a miss goes to self._miss (single flight)
    _LOCKED = 2      # the lookup under the lock; a miss goes to self._finish_locked
    _CONDITION = 3   # wait while another thread computes the key; then as _LOCKED, _finish_condition


cdef inline dict _kwargs_dict(PyObject *kw):
    return {} if kw == NULL else <dict>kw


cdef inline bint _has_kwargs(PyObject *kw):
    return kw != NULL and PyDict_GET_SIZE(kw) != 0


cdef object _locked_lookup(object me, object cache, object key, object lock, object cond,
                           dict pending, int mode, tuple args, PyObject *kw):
    # cachetools' protocol: one lock hold for the lookup and, on a miss, its bookkeeping
    cdef object value, thread = None, owner = False
    with lock:
        if mode == _CONDITION:
            thread = PyThread_get_thread_ident()
            while key in pending and pending[key] != thread:
                cond.wait()
        try:
            value = cache[key]
        except KeyError:
            me._misses += 1
            if mode == _CONDITION and key not in pending:
                pending[key] = thread
                owner = True
        else:
            me._hits += 1
            return value
    if mode == _LOCKED:
        return me._finish_locked(cache, key, args, _kwargs_dict(kw))
    return me._finish_condition(cache, key, args, _kwargs_dict(kw), owner)


cdef object _cached_call(object self, object args, PyObject *kw):
    cdef _CachedCall me = <_CachedCall>self
    cdef object key, value
    if me._mode == _SLOW:
        return me._call(args, _kwargs_dict(kw))
    if me._key_kind == 0 or _has_kwargs(kw):
        key = me.cache_key(*args, **_kwargs_dict(kw))
    else:
        key = args
    if me._mode != _PLAIN:
        return _locked_lookup(me, me.cache, key, me.cache_lock, me.cache_condition, me._pending,
                              me._mode, args, kw)
    try:
        value = me.cache[key]
    except KeyError:
        return me._miss(key, args, _kwargs_dict(kw))
    me._hits += 1
    return value


cdef object _cached_method_call(object self, object args, PyObject *kw):
    cdef _CachedMethodCall me = <_CachedMethodCall>self
    cdef object key, value, lock, cond = None, obj = me._obj
    cdef object cache = me._cache_of(obj)
    if me._mode == _SLOW or type(cache) is not me._plain_type:
        return me._call(cache, args, _kwargs_dict(kw))
    if me._key_kind == 0 or _has_kwargs(kw):
        key = me._key(obj, *args, **_kwargs_dict(kw))
    else:
        key = args
    if me._mode != _PLAIN:
        if me._mode == _CONDITION:
            cond = me._cond_of(obj)
        lock = cond if me._lock_of is None else me._lock_of(obj)
        return _locked_lookup(me, cache, key, lock, cond, me._pending, me._mode, args, kw)
    try:
        value = cache[key]
    except KeyError:
        return me._miss(cache, key, args, _kwargs_dict(kw))
    me._hits += 1
    return value


cdef class _CachedCall:
    """Base of the callable ``cached``/``lru_cache`` return.

    ``key_kind`` 0 calls ``cache_key(*args, **kwargs)``; 1 takes the argument tuple as the key
    when there are no keyword arguments (what ``keys.hashkey`` returns then). ``mode``: 0 sends
    every call to ``self._call(args, kwargs)``; 1 looks up without a lock, a miss going to
    ``self._miss(key, args, kwargs)``; 2 looks up under ``cache_lock`` (a miss:
    ``self._finish_locked(cache, key, args, kwargs)``); 3 first waits on ``cache_condition``
    while another thread computes the key (a miss: ``self._finish_condition(cache, key, args,
    kwargs, owner)``). Hits and misses are counted in ``_hits``/``_misses``.
    """

    cdef public object cache
    cdef public object cache_key
    cdef public object cache_lock
    cdef public object cache_condition
    cdef public dict _pending
    cdef public Py_ssize_t _hits
    cdef public Py_ssize_t _misses
    cdef int _key_kind
    cdef readonly int _mode

    def __init__(self, cache, cache_key, int key_kind, int mode, lock, condition):
        self.cache = cache
        self.cache_key = cache_key
        self.cache_lock = lock
        self.cache_condition = condition
        self._pending = {}
        self._key_kind = key_kind
        self._mode = mode

    def __call__(self, /, *args, **kwargs):
        return _cached_call(self, args, <PyObject *>kwargs)


cdef class _CachedMethodCall:
    """Base of the per-instance callable of ``cachedmethod``.

    At each call ``cache_of(obj)`` gives the cache, ``lock_of(obj)`` and ``cond_of(obj)`` the lock
    and condition (the condition is the lock when there is no ``lock_of``); ``key(obj, *args,
    **kwargs)`` the key (``key_kind`` 1: the argument tuple without keyword arguments, as
    ``keys.methodkey``). ``mode`` as in ``_CachedCall``, the misses going to ``self._miss(cache,
    key, args, kwargs)`` and the same ``_finish_*``; a call whose cache's type is not
    ``_plain_type`` (kept by the subclass) goes to ``self._call(cache, args, kwargs)``.
    """

    cdef public object _obj
    cdef public object _cache_of
    cdef public object _lock_of
    cdef public object _cond_of
    cdef public object _key
    cdef public object _plain_type
    cdef public dict _pending
    cdef public Py_ssize_t _hits
    cdef public Py_ssize_t _misses
    cdef int _key_kind
    cdef readonly int _mode

    def __init__(self, obj, cache_of, lock_of, cond_of, key, int key_kind, int mode):
        self._obj = obj
        self._cache_of = cache_of
        self._lock_of = lock_of
        self._cond_of = cond_of
        self._key = key
        self._pending = {}
        self._key_kind = key_kind
        self._mode = mode
        self._plain_type = None

    def __call__(self, /, *args, **kwargs):
        return _cached_method_call(self, args, <PyObject *>kwargs)


def _fast_call(cls):
    """Class decorator: calls of ``cls`` (a subclass of one of the two bases) go straight to the
    compiled hit path."""
    if issubclass(cls, _CachedCall):
        (<PyTypeObject *>cls).tp_call = <ternaryfunc>_cached_call
    elif issubclass(cls, _CachedMethodCall):
        (<PyTypeObject *>cls).tp_call = <ternaryfunc>_cached_method_call
    else:
        raise TypeError(f"_fast_call expects a subclass of _CachedCall or _CachedMethodCall, got {cls!r}")
    PyType_Modified(<PyTypeObject *>cls)
    return cls
