# The hit path of the memoizing decorators (decorators.py), compiled: one key, one cache lookup,
# under the decorator's lock (and condition) when it has one, with cachetools' lock protocol call
# for call. The rest (computing a missed value and storing it, single flight, shared caches) is
# Python code in the subclasses decorators.py builds on these two bases. Twin: _cached_py.py.
#
# A call reaches the C functions below directly through the type's tp_call slot: a
# `def __call__(self, *args, **kwargs)` would first build an empty kwargs dict on every call,
# which costs as much as the rest of a hit. The class decorator _fast_call puts the slot on each
# subclass (CPython would otherwise give a subclass the base's __call__ wrapper).
#
# Three shortcuts keep a hit close to functools.lru_cache's:
# * a prodfast cache whose __getitem__ is the engine's own is read through the engine's lookup
#   (_CacheCore._lookup, the routine of __getitem__), without the mapping protocol and, on a
#   miss, without raising and catching a KeyError;
# * a plain threading.Lock or RLock, or the one under a threading.Condition, is taken and
#   released in C, as its own acquire() and release() do (a try without waiting; when that
#   fails, its acquire() method blocks);
# * lru_cache's key of a single argument (not a tuple) is the argument itself, as functools'
#   of an int or str: no tuple to hash and compare.

from cpython.object cimport PyObject, PyTypeObject, ternaryfunc
from cpython.pythread cimport PyThread_get_thread_ident

import _thread as _cached_thread
import threading as _cached_threading


cdef extern from "Python.h":
    void PyType_Modified(PyTypeObject *tp)
    Py_ssize_t PyDict_GET_SIZE(PyObject *mp)
    bint PyTuple_Check(object o)


# The C layouts of _thread.lock and _thread.RLock. They are private to CPython, so they are used
# only on the versions known to have them, and only after _cached_probe_locks() (below) has
# checked them against real locks at import; otherwise every lock takes the `with` protocol.
cdef extern from *:
    """
    #if PY_VERSION_HEX >= 0x03080000 && PY_VERSION_HEX < 0x030D0000 \
        && !defined(Py_GIL_DISABLED) && !defined(PYPY_VERSION)
    #define PRODFAST_C_LOCKS 1
    #else
    #define PRODFAST_C_LOCKS 0
    #endif

    typedef struct {
        PyObject_HEAD
        PyThread_type_lock lock_lock;
        PyObject *in_weakreflist;
        char locked;
    } prodfast_lock_view;

    typedef struct {
        PyObject_HEAD
        PyThread_type_lock rlock_lock;
        unsigned long rlock_owner;
        unsigned long rlock_count;
        PyObject *in_weakreflist;
    } prodfast_rlock_view;

    /* 1: acquired without waiting (as lock.acquire() does when the lock is free); 0: not. */
    static inline int prodfast_lock_try(PyObject *o, int rlock) {
    #if PRODFAST_C_LOCKS
        if (rlock) {
            prodfast_rlock_view *r = (prodfast_rlock_view *)o;
            unsigned long tid = PyThread_get_thread_ident();
            if (r->rlock_count > 0 && r->rlock_owner == tid) {
                if (r->rlock_count + 1 == 0)
                    return 0;  /* overflow: acquire() raises it */
                r->rlock_count++;
                return 1;
            }
            if (PyThread_acquire_lock_timed(r->rlock_lock, 0, 0) != PY_LOCK_ACQUIRED)
                return 0;
            r->rlock_owner = tid;
            r->rlock_count = 1;
            return 1;
        } else {
            prodfast_lock_view *l = (prodfast_lock_view *)o;
            if (PyThread_acquire_lock_timed(l->lock_lock, 0, 0) != PY_LOCK_ACQUIRED)
                return 0;
            l->locked = 1;
            return 1;
        }
    #else
        return 0;
    #endif
    }

    /* 1: released (as lock.release() does); 0: not held as expected (release() raises). */
    static inline int prodfast_lock_release(PyObject *o, int rlock) {
    #if PRODFAST_C_LOCKS
        if (rlock) {
            prodfast_rlock_view *r = (prodfast_rlock_view *)o;
            if (r->rlock_count == 0 || r->rlock_owner != PyThread_get_thread_ident())
                return 0;
            if (--r->rlock_count == 0) {
                r->rlock_owner = 0;
                PyThread_release_lock(r->rlock_lock);
            }
            return 1;
        } else {
            prodfast_lock_view *l = (prodfast_lock_view *)o;
            if (!l->locked)
                return 0;
            PyThread_release_lock(l->lock_lock);
            l->locked = 0;
            return 1;
        }
    #else
        return 0;
    #endif
    }

    static int prodfast_lock_layout_ok(PyObject *lock, PyObject *rlock) {
    #if PRODFAST_C_LOCKS
        return Py_TYPE(lock)->tp_basicsize == (Py_ssize_t)sizeof(prodfast_lock_view)
            && Py_TYPE(rlock)->tp_basicsize == (Py_ssize_t)sizeof(prodfast_rlock_view)
            && ((prodfast_lock_view *)lock)->lock_lock != NULL
            && ((prodfast_rlock_view *)rlock)->rlock_lock != NULL;
    #else
        return 0;
    #endif
    }

    static unsigned long prodfast_rlock_count(PyObject *o) {
        return ((prodfast_rlock_view *)o)->rlock_count;
    }

    static int prodfast_lock_locked(PyObject *o) {
        return ((prodfast_lock_view *)o)->locked;
    }

    /* the C function behind x[key] for the instances x of tp (NULL: none) */
    static inline void *prodfast_subscript_of(PyTypeObject *tp) {
        PyMappingMethods *m = tp->tp_as_mapping;
        return m == NULL ? NULL : (void *)m->mp_subscript;
    }
    """
    void *prodfast_subscript_of(PyTypeObject *tp) noexcept
    bint prodfast_lock_try(PyObject *o, int rlock) noexcept
    bint prodfast_lock_release(PyObject *o, int rlock) noexcept
    bint prodfast_lock_layout_ok(PyObject *lock, PyObject *rlock) noexcept
    unsigned long prodfast_rlock_count(PyObject *o) noexcept
    bint prodfast_lock_locked(PyObject *o) noexcept


cdef object _cached_Lock = type(_cached_thread.allocate_lock())
cdef object _cached_RLock = _cached_thread.RLock
cdef bint _cached_c_locks = False


cdef bint _cached_probe_locks():
    # The C lock path is used only if the layouts above read and drive real locks exactly as
    # their own methods do.
    cdef object lock = _cached_thread.allocate_lock()
    cdef object rlock = _cached_thread.RLock()
    if type(rlock) is not _cached_RLock or not prodfast_lock_layout_ok(<PyObject *>lock, <PyObject *>rlock):
        return False
    if prodfast_lock_locked(<PyObject *>lock):
        return False
    lock.acquire()
    if not prodfast_lock_locked(<PyObject *>lock) or prodfast_lock_try(<PyObject *>lock, 0):
        return False
    if not prodfast_lock_release(<PyObject *>lock, 0) or lock.locked():
        return False
    if not prodfast_lock_try(<PyObject *>lock, 0) or not lock.locked():
        return False
    lock.release()
    if lock.locked() or prodfast_lock_release(<PyObject *>lock, 0):
        return False
    rlock.acquire()
    rlock.acquire()
    if prodfast_rlock_count(<PyObject *>rlock) != 2:
        return False
    if not prodfast_lock_try(<PyObject *>rlock, 1) or prodfast_rlock_count(<PyObject *>rlock) != 3:
        return False
    for _ in range(3):
        if not prodfast_lock_release(<PyObject *>rlock, 1):
            return False
    if rlock._is_owned() or prodfast_lock_release(<PyObject *>rlock, 1):
        return False
    if not prodfast_lock_try(<PyObject *>rlock, 1) or not rlock._is_owned():
        return False
    rlock.release()
    return not rlock._is_owned()


_cached_c_locks = _cached_probe_locks()


cdef inline int _lock_kind(object lock) noexcept:
    # 1: a threading.Lock, 2: a threading.RLock (both driven in C); 0: any other context manager
    if not _cached_c_locks:
        return 0
    if type(lock) is _cached_Lock:
        return 1
    if type(lock) is _cached_RLock:
        return 2
    return 0


cdef object _cached_Condition = _cached_threading.Condition


cdef inline object _held_lock(object lock):
    # what `with lock` takes: a stock threading.Condition's __enter__ and __exit__ are its own
    # lock's (cachetools.func's decorators hold one), anything else is itself
    if type(lock) is _cached_Condition:
        return getattr(lock, "_lock", lock)
    return lock


cdef inline int _acquire(object lock, int kind) except -1:
    if not prodfast_lock_try(<PyObject *>lock, kind == 2):
        lock.acquire()  # held by another thread: wait as `with lock` would
    return 0


cdef inline int _release(object lock, int kind) except -1:
    if not prodfast_lock_release(<PyObject *>lock, kind == 2):
        lock.release()  # not held as expected: release() raises its own error
    return 0


# ---- the cache lookup

cdef object _cached_NOT_FOUND = object()
cdef void *_cached_subscript = prodfast_subscript_of(<PyTypeObject *>_CacheCore)


cdef inline object _cache_get(object cache, object key):
    # cache[key], or _cached_NOT_FOUND for its KeyError.
    cdef _CacheCore c
    cdef Py_ssize_t ix
    if prodfast_subscript_of((<PyObject *>cache).ob_type) == _cached_subscript:
        # what _CacheCore.__getitem__ does, without raising a KeyError on a miss
        c = <_CacheCore>cache
        ix = c._lookup(key)
        if ix >= 0:
            c._on_hit(<int32_t>ix)
            return <object>c._ents[ix].value
        c._misses += 1
        if not c._has_missing:
            return _cached_NOT_FOUND
        try:
            return cache.__missing__(key)
        except KeyError:
            return _cached_NOT_FOUND
    try:
        return cache[key]
    except KeyError:
        return _cached_NOT_FOUND


# ---- the call

# modes: what a call does before the cache lookup
cdef enum:
    _SLOW = 0        # everything in self._call (shared caches, asyncio)
    _PLAIN = 1       # no lock: a miss goes to self._miss (single flight)
    _LOCKED = 2      # the lookup under the lock; a miss goes to self._finish_locked
    _CONDITION = 3   # wait while another thread computes the key; then as _LOCKED, _finish_condition
    _LOCAL = 4       # a shared cache's local tier: a hit there is the value, a miss self._call


cdef inline dict _kwargs_dict(PyObject *kw):
    return {} if kw == NULL else <dict>kw


cdef inline bint _has_kwargs(PyObject *kw):
    return kw != NULL and PyDict_GET_SIZE(kw) != 0


cdef inline object _args_key(int kind, tuple args):
    # the key of a call without keyword arguments: kind 1 the argument tuple (keys.hashkey's),
    # kind 2 lru_cache's (a single argument that is not a tuple is its own key: it equals
    # another such key exactly when the one-element tuples would, and no tuple key equals it)
    if kind == 2 and len(args) == 1 and not PyTuple_Check(args[0]):
        return args[0]
    return args


cdef inline object _lookup_held(object cache, object key, object cond, dict pending, int mode,
                                bint *owner, Py_ssize_t *hits, Py_ssize_t *misses):
    # the part of a call under the lock: the value, or _cached_NOT_FOUND
    cdef object value, thread = None
    if mode == _CONDITION:
        thread = PyThread_get_thread_ident()
        while key in pending and pending[key] != thread:
            cond.wait()
    value = _cache_get(cache, key)
    if value is _cached_NOT_FOUND:
        misses[0] += 1
        if mode == _CONDITION and key not in pending:
            pending[key] = thread
            owner[0] = True
    else:
        hits[0] += 1
    return value


cdef object _locked_lookup(object me, object cache, object key, object lock, object cond,
                           dict pending, int mode, tuple args, PyObject *kw,
                           Py_ssize_t *hits, Py_ssize_t *misses):
    # cachetools' protocol: one lock hold for the lookup and, on a miss, its bookkeeping
    cdef object value = _cached_NOT_FOUND
    cdef bint owner = False
    cdef object held = _held_lock(lock)
    cdef int kind = _lock_kind(held)
    if kind == 0:
        with lock:
            value = _lookup_held(cache, key, cond, pending, mode, &owner, hits, misses)
    else:
        _acquire(held, kind)
        try:
            value = _lookup_held(cache, key, cond, pending, mode, &owner, hits, misses)
        except BaseException:
            _release(held, kind)
            raise
        _release(held, kind)
    if value is not _cached_NOT_FOUND:
        return value
    if mode == _LOCKED:
        return me._finish_locked(cache, key, args, _kwargs_dict(kw))
    return me._finish_condition(cache, key, args, _kwargs_dict(kw), owner)


cdef object _cached_call(object self, object args, PyObject *kw):
    cdef _CachedCall me = <_CachedCall>self
    cdef object key, value
    cdef int mode = me._mode
    if mode == _SLOW:
        return me._call(args, _kwargs_dict(kw))
    if me._key_kind == 0 or _has_kwargs(kw):
        key = me.cache_key(*args, **_kwargs_dict(kw))
    else:
        key = _args_key(me._key_kind, <tuple>args)
    if mode == _PLAIN:
        value = _cache_get(me.cache, key)
        if value is _cached_NOT_FOUND:
            return me._miss(key, args, _kwargs_dict(kw))
        me._hits += 1
        return value
    if mode == _LOCAL:
        value = _cache_get(me._local, key)
        if value is _cached_NOT_FOUND:
            return me._call(args, _kwargs_dict(kw))
        me._hits += 1
        return value
    return _locked_lookup(me, me.cache, key, me.cache_lock, me.cache_condition, me._pending,
                          mode, args, kw, &me._hits, &me._misses)


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
        return _locked_lookup(me, cache, key, lock, cond, me._pending, me._mode, args, kw,
                              &me._hits, &me._misses)
    value = _cache_get(cache, key)
    if value is _cached_NOT_FOUND:
        return me._miss(cache, key, args, _kwargs_dict(kw))
    me._hits += 1
    return value


cdef class _CachedCall:
    """Base of the callable ``cached``/``lru_cache`` return.

    ``key_kind`` 0 calls ``cache_key(*args, **kwargs)``; without keyword arguments, 1 takes the
    argument tuple as the key (what ``keys.hashkey`` returns then) and 2 a single argument that
    is not a tuple itself, else the tuple (``lru_cache``'s key). ``mode``: 0 sends every call to
    ``self._call(args, kwargs)``; 1 looks up without a lock, a miss going to ``self._miss(key,
    args, kwargs)``; 2 looks up under ``cache_lock`` (a miss: ``self._finish_locked(cache, key,
    args, kwargs)``); 3 first waits on ``cache_condition`` while another thread computes the key
    (a miss: ``self._finish_condition(cache, key, args, kwargs, owner)``); 4 looks up in
    ``local`` (a shared cache's local tier), a miss going to ``self._call(args, kwargs)``. Hits
    and misses are counted in ``_hits``/``_misses``.
    """

    cdef public object cache
    cdef public object cache_key
    cdef public object cache_lock
    cdef public object cache_condition
    cdef public object _local
    cdef public dict _pending
    cdef public Py_ssize_t _hits
    cdef public Py_ssize_t _misses
    cdef int _key_kind
    cdef readonly int _mode

    def __init__(self, cache, cache_key, int key_kind, int mode, lock, condition, local=None):
        self.cache = cache
        self._local = local
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


# whether threading.Lock/RLock are driven in C here (the tests check it is so where it should be)
_CACHED_C_LOCKS = _cached_c_locks


# ---- a shared cache's local tier

cdef class _TierFront:
    """The base of ``prodfast.redis.TieredCache``: ``get`` and ``[]`` answer a hit in the local
    tier here; a miss goes to the subclass's ``_get_remote(key)``, which returns the value or
    ``_missing``."""

    cdef public object local
    cdef public object _missing

    @cython.binding(False)
    def get(self, key, default=None):
        value = _cache_get(self.local, key)
        if value is not _cached_NOT_FOUND:
            return value
        value = self._get_remote(key)
        return default if value is self._missing else value

    def __getitem__(self, key):
        value = _cache_get(self.local, key)
        if value is not _cached_NOT_FOUND:
            return value
        value = self._get_remote(key)
        if value is self._missing:
            raise KeyError(key)
        return value
