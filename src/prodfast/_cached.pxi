# The hit path of the memoizing decorators (decorators.py), compiled: one key, one cache lookup.
# Everything else (misses, locks and conditions, single flight, shared caches) is Python code in
# the subclasses decorators.py builds on these two bases. Pure-Python twin: _cached_py.py.
#
# A call reaches the C functions below directly through the type's tp_call slot: a
# `def __call__(self, *args, **kwargs)` would first build an empty kwargs dict on every call,
# which costs as much as the rest of a hit. The class decorator _fast_call puts the slot on each
# subclass (CPython would otherwise give a subclass the base's __call__ wrapper).

from cpython.object cimport PyObject, PyTypeObject, ternaryfunc


cdef extern from "Python.h":
    void PyType_Modified(PyTypeObject *tp)
    Py_ssize_t PyDict_GET_SIZE(PyObject *mp)


cdef inline dict _kwargs_dict(PyObject *kw):
    return {} if kw == NULL else <dict>kw


cdef object _cached_call(object self, object args, PyObject *kw):
    cdef _CachedCall me = <_CachedCall>self
    cdef object key, value
    if not me._fast:
        return me._call(args, _kwargs_dict(kw))
    if me._key_kind == 0 or (kw != NULL and PyDict_GET_SIZE(kw) != 0):
        key = me.cache_key(*args, **_kwargs_dict(kw))
    else:
        key = args
    try:
        value = me.cache[key]
    except KeyError:
        return me._miss(key, args, _kwargs_dict(kw))
    me._hits += 1
    return value


cdef object _cached_method_call(object self, object args, PyObject *kw):
    cdef _CachedMethodCall me = <_CachedMethodCall>self
    cdef object key, value, obj = me._obj
    cdef object cache = me._cache_of(obj)
    if not me._fast or type(cache) is not me._plain_type:
        return me._call(cache, args, _kwargs_dict(kw))
    if me._key_kind == 0 or (kw != NULL and PyDict_GET_SIZE(kw) != 0):
        key = me._key(obj, *args, **_kwargs_dict(kw))
    else:
        key = args
    try:
        value = cache[key]
    except KeyError:
        return me._miss(cache, key, args, _kwargs_dict(kw))
    me._hits += 1
    return value


cdef class _CachedCall:
    """Base of the callable ``cached``/``lru_cache`` return.

    ``key_kind`` 0 calls ``cache_key(*args, **kwargs)``; 1 takes the argument tuple as the key
    when there are no keyword arguments (what ``keys.hashkey`` returns then). With ``fast``
    false every call goes to ``self._call(args, kwargs)``; a miss goes to
    ``self._miss(key, args, kwargs)``.
    """

    cdef public object cache
    cdef public object cache_key
    cdef public Py_ssize_t _hits
    cdef public Py_ssize_t _misses
    cdef int _key_kind
    cdef readonly bint _fast

    def __init__(self, cache, cache_key, int key_kind, bint fast):
        self.cache = cache
        self.cache_key = cache_key
        self._key_kind = key_kind
        self._fast = fast

    def __call__(self, /, *args, **kwargs):
        return _cached_call(self, args, <PyObject *>kwargs)


cdef class _CachedMethodCall:
    """Base of the per-instance callable of ``cachedmethod``.

    ``cache_of(obj)`` gives the cache at each call; ``key(obj, *args, **kwargs)`` the key
    (``key_kind`` 1: the argument tuple without keyword arguments, as ``keys.methodkey``). A call
    takes the hit path when ``fast`` is true and the cache's type is the last one found plain
    (``_plain_type``, kept by the subclass); otherwise ``self._call(cache, args, kwargs)``.
    """

    cdef public object _obj
    cdef public object _cache_of
    cdef public object _key
    cdef public object _plain_type
    cdef public Py_ssize_t _hits
    cdef public Py_ssize_t _misses
    cdef int _key_kind
    cdef readonly bint _fast

    def __init__(self, obj, cache_of, key, int key_kind, bint fast):
        self._obj = obj
        self._cache_of = cache_of
        self._key = key
        self._key_kind = key_kind
        self._fast = fast
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
