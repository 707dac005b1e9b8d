# LRUCache and TTLCache: the compiled twin of prodfast._cache_py (the readable reference).
#
# Layout (per cache), modelled on CPython's compact dict:
#
#   _idx   int32[mask + 1]   linear-probing index table: -1 empty, else (hash tag << _ibits) | entry
#                            number; the home slot comes from Fibonacci hashing of the hash
#   _ents  _cache_ent[_cap]  dense entries 0.._n-1: key, value, hash, prev/next of the LRU list,
#                            expiry (double, TTLCache only)
#   _tl    _cache_tl[_cap]   TTLCache only: prev/next of the expiry list
#   _xexp  PyObject*[_cap]   TTLCache with a non-real timer/ttl only: expiry objects
#   _sizes PyObject*[_cap]   caches with getsizeof only: each item's size
#
#   LRU list:    _head (least recent) <-> ... <-> _tail (most recent)
#   expiry list: _thead (set first)   <-> ... <-> _ttail (set last)
#
# Deleting entry i empties its slot, shifting later members of the probe cluster back (no
# tombstones, so churn never forces a rebuild), and moves the last entry into hole i (fixing that
# entry's slot and its list neighbours), so entries stay dense. The index table doubles when half
# full; the entry array grows geometrically up to maxsize (never allocated up front). A full
# cache's set of a new key reuses the least recent entry in place. Per entry: 40 B of entry,
# about 8 B of index, and for TTLCache 8 B of expiry links.
#
# Re-entrancy: __hash__, __eq__, __del__, timers, getsizeof, on_evict and an overriding popitem()
# are user code. _ver counts structural changes (insert, delete, rebuild, clear); a lookup that ran
# __eq__ re-checks it: a change made by another thread (a thread switch inside __eq__) makes it
# probe again, one made by the same thread raises RuntimeError instead of following stale indices.
# _mod counts every change including reordering, for iterators. Surgery finishes before any DECREF
# of a removed key or value and before on_evict runs. Without user code an operation is atomic
# under the GIL, which is what makes the caches thread-safe.

from cpython.object cimport PyObject, Py_EQ, Py_LT
from cpython.ref cimport Py_INCREF, Py_DECREF, Py_XDECREF, Py_XINCREF
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcmp, memset, memcpy

import collections.abc as _cache_abc
import copyreg as _cache_copyreg
import math as _cache_math
import numbers as _cache_numbers
import threading as _cache_threading
import time as _cache_time
import types as _cache_types

cdef extern from "Python.h":
    int _cache_RichCompareBool "PyObject_RichCompareBool" (PyObject* a, PyObject* b, int op) except -1
    int _cache_RichCompareBool_nx "PyObject_RichCompareBool" (PyObject* a, PyObject* b, int op) noexcept
    bint _cache_UnicodeExact "PyUnicode_CheckExact" (PyObject* o)
    Py_ssize_t _cache_ULEN "PyUnicode_GET_LENGTH" (PyObject* o)
    unsigned int _cache_UKIND "PyUnicode_KIND" (PyObject* o)
    void* _cache_UDATA "PyUnicode_DATA" (PyObject* o)
    unsigned long PyThread_get_thread_ident() noexcept
    bint _cache_LongExact "PyLong_CheckExact" (PyObject* o)
    bint _cache_FloatExact "PyFloat_CheckExact" (object o)
    double _cache_FloatAsDouble "PyFloat_AS_DOUBLE" (object o)
    Py_ssize_t PY_SSIZE_T_MAX

cdef extern from "prodfast/_platform.h":
    void _cache_prefetch "prodfast_prefetch" (const void* p) noexcept nogil

ctypedef int (*_cache_visitproc)(PyObject*, void*) noexcept
ctypedef int (*_cache_traverseproc)(PyObject*, _cache_visitproc, void*) noexcept
ctypedef int (*_cache_inquiry)(PyObject*) noexcept

cdef extern from "Python.h":
    ctypedef struct _cache_TypeObject "PyTypeObject":
        _cache_traverseproc tp_traverse
        _cache_inquiry tp_clear

cdef struct _cache_ent:
    PyObject* key
    PyObject* value
    Py_hash_t hash
    int32_t prev
    int32_t next
    double exp          # TTLCache: expiry; kept in the entry so that a read touches one place

cdef struct _cache_tl:
    int32_t prev
    int32_t next

DEF _CACHE_EMPTY = -1
DEF _CACHE_MINSIZE = 8
DEF _CACHE_MAXENT = 0x7FFFFFF0

cdef object _cache_monotonic = _cache_time.monotonic
_CACHE_STATE_TAG = "prodfast.cache"
_cache_repr_running = set()
_CACHE_STATE_VERSION = 1
# pop()'s default sentinel is the twin's, so that both show one signature
from prodfast._cache_py import _MISSING as _cache_py_MISSING
cdef object _cache_MISSING = _cache_py_MISSING


cdef inline double _cache_cclock() noexcept nogil:
    # time.monotonic() without the Python call (prodfast/_platform.h)
    return prodfast_monotonic()


# Reads of the built-in clock may first try the kernel's coarse monotonic clock (a few ns instead
# of ~30 in a VM). It trails the precise clock by at most one tick (1-10 ms), so an item whose
# expiry lies more than this margin beyond the coarse time is alive by the precise clock too;
# anything closer is decided by a precise read. Expiries themselves always come from the precise
# clock, so results are those of time.monotonic().
DEF _CACHE_COARSE_MARGIN = 0.05

cdef inline double _cache_coarse() noexcept nogil:
    # the coarse clock where there is one, else -inf: then every read is precise
    return prodfast_monotonic_floor()


cdef inline bint _cache_str_eq(PyObject* a, PyObject* b) noexcept:
    cdef Py_ssize_t n = _cache_ULEN(a)
    cdef unsigned int kind = _cache_UKIND(a)
    if n != _cache_ULEN(b) or kind != _cache_UKIND(b):
        return False
    return memcmp(_cache_UDATA(a), _cache_UDATA(b), <size_t>n * kind) == 0


def _cache_check_maxsize(maxsize):
    if isinstance(maxsize, bool) or not (
        isinstance(maxsize, int) or (isinstance(maxsize, float) and maxsize == _cache_math.inf)
    ):
        raise TypeError(f"maxsize must be a non-negative int or math.inf, got {maxsize!r}")
    if maxsize < 0:
        raise ValueError(f"maxsize must be a non-negative int or math.inf, got {maxsize!r}")


def _cache_check_callable(name, fn):
    if fn is not None and not callable(fn):
        raise TypeError(f"{name} must be callable or None, got {fn!r}")


def _cache_check_ttl(ttl):
    if isinstance(ttl, bool):
        raise TypeError(f"ttl must be a positive number (or a duration the timer's values accept), got {ttl!r}")
    if isinstance(ttl, _cache_numbers.Real):
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        return
    try:
        zero = ttl - ttl
        positive = bool(ttl > zero)
    except Exception:
        raise TypeError(
            f"ttl must be a positive number (or a duration the timer's values accept), got {ttl!r}"
        ) from None
    if not positive:
        raise ValueError(f"ttl must be positive, got {ttl!r}")


cdef int _cache_check_size(object size, object maxsize) except -1:
    # getsizeof(value) must give a non-negative real number no larger than maxsize
    if type(size) is int:
        if size > maxsize:
            raise ValueError("value too large")
        if size < 0:
            raise ValueError("value size must be non-negative")
        return 0
    if isinstance(size, bool) or not isinstance(size, _cache_numbers.Real):
        raise TypeError(f"getsizeof must return a non-negative number, got {size!r}")
    if size > maxsize:
        raise ValueError("value too large")
    if not size >= 0:
        raise ValueError("value size must be non-negative")
    return 0


cdef class _cache_Timer:
    """Timer wrapper: ``with cache.timer as now:`` freezes the time for nested operations."""

    cdef object _timer
    cdef int _nesting
    cdef object _time

    def __cinit__(self, timer):
        self._timer = timer
        self._nesting = 0
        self._time = None

    def __call__(self):
        if self._nesting == 0:
            return self._timer()
        return self._time

    def __enter__(self):
        if self._nesting == 0:
            self._time = self._timer()
        self._nesting += 1
        return self._time

    def __exit__(self, *exc):
        self._nesting -= 1

    def __reduce__(self):
        return _cache_Timer, (self._timer,)

    def __getattr__(self, name):
        return getattr(self._timer, name)


@cython.no_gc_clear
cdef class _CacheCore:
    """Shared engine of LRUCache and TTLCache (not public)."""

    cdef _cache_ent* _ents
    cdef int32_t* _idx
    cdef _cache_tl* _tl
    cdef PyObject** _xexp
    cdef PyObject** _sizes
    cdef Py_ssize_t _mask
    cdef Py_ssize_t _n
    cdef Py_ssize_t _cap
    cdef int _shift
    cdef int _ibits
    cdef int32_t _imask
    cdef uint64_t _tagmask
    cdef Py_ssize_t _maxcap
    cdef int32_t _head, _tail, _thead, _ttail
    cdef Py_ssize_t _slot
    cdef size_t _ver
    cdef unsigned long _ver_tid
    cdef size_t _mod
    cdef Py_ssize_t _maxsize_c
    cdef object _maxsize
    cdef object _currsize_obj
    cdef object _getsizeof
    cdef object _on_evict
    cdef uint64_t _hits, _misses, _evictions, _expirations
    cdef bint _is_ttl, _objmode, _cclock, _hook, _has_missing, _fast_set
    cdef double _ttl_d
    cdef double _last_d
    cdef bint _has_last
    cdef object _last_o
    cdef object _ttl
    cdef _cache_Timer _tw
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._idx = <int32_t*>PyMem_Malloc(_CACHE_MINSIZE * sizeof(int32_t))
        if self._idx == NULL:
            raise MemoryError()
        memset(self._idx, 0xFF, _CACHE_MINSIZE * sizeof(int32_t))
        self._mask = _CACHE_MINSIZE - 1
        self._ents = NULL
        self._tl = NULL
        self._xexp = NULL
        self._sizes = NULL
        self._n = self._cap = 0
        self._shift = 61
        self._ibits = 31
        self._imask = 0x7FFFFFFF
        self._tagmask = 0
        self._head = self._tail = self._thead = self._ttail = -1
        self._maxsize_c = 0
        self._maxcap = 0
        self._maxsize = 0
        self._currsize_obj = 0
        self._getsizeof = None
        self._on_evict = None
        self._ttl = None
        self._tw = None
        cls = type(self)
        self._hook = getattr(cls, "popitem", None) is not _CacheCore.popitem
        self._has_missing = hasattr(cls, "__missing__")
        self._is_ttl = False
        self._objmode = False
        self._cclock = False
        self._ttl_d = 0.0
        self._last_d = 0.0
        self._has_last = False
        self._last_o = None
        self._fast_set = False

    def __dealloc__(self):
        cdef Py_ssize_t i
        cdef PyObject** xexp = self._xexp
        cdef PyObject** sizes = self._sizes
        cdef _cache_ent* ents = self._ents
        cdef Py_ssize_t n = self._n
        self._ents = NULL
        self._xexp = NULL
        self._sizes = NULL
        self._n = 0
        for i in range(n):
            Py_XDECREF(ents[i].key)
            Py_XDECREF(ents[i].value)
            if xexp != NULL:
                Py_XDECREF(xexp[i])
            if sizes != NULL:
                Py_XDECREF(sizes[i])
        PyMem_Free(ents)
        PyMem_Free(xexp)
        PyMem_Free(sizes)
        PyMem_Free(self._tl)
        PyMem_Free(self._idx)

    # ------------------------------------------------------------------ garbage collection

    @cython.final
    cdef int _visit(self, _cache_visitproc visit, void* arg) noexcept:
        # The references held in the C arrays, for the cycle collector.
        cdef Py_ssize_t i
        cdef int r
        for i in range(self._n):
            r = visit(self._ents[i].key, arg)
            if r:
                return r
            r = visit(self._ents[i].value, arg)
            if r:
                return r
            if self._xexp != NULL and self._xexp[i] != NULL:
                r = visit(self._xexp[i], arg)
                if r:
                    return r
            if self._sizes != NULL and self._sizes[i] != NULL:
                r = visit(self._sizes[i], arg)
                if r:
                    return r
        return 0

    @cython.final
    cdef void _drop_all(self) noexcept:
        # tp_clear: empty the cache without allocating; settings stay usable.
        cdef _cache_ent* ents = self._ents
        cdef PyObject** xexp = self._xexp
        cdef PyObject** sizes = self._sizes
        cdef Py_ssize_t n = self._n, i
        memset(self._idx, 0xFF, (self._mask + 1) * sizeof(int32_t))
        PyMem_Free(self._tl)
        self._ents = NULL
        self._tl = NULL
        self._xexp = NULL
        self._sizes = NULL
        self._n = self._cap = 0
        self._head = self._tail = self._thead = self._ttail = -1
        self._bump()
        self._mod += 1
        for i in range(n):
            Py_XDECREF(ents[i].key)
            Py_XDECREF(ents[i].value)
            if xexp != NULL:
                Py_XDECREF(xexp[i])
            if sizes != NULL:
                Py_XDECREF(sizes[i])
        PyMem_Free(ents)
        PyMem_Free(xexp)
        PyMem_Free(sizes)

    # ------------------------------------------------------------------ configuration

    @cython.final
    cdef int _configure(self, maxsize, getsizeof, on_evict) except -1:
        _cache_check_maxsize(maxsize)
        _cache_check_callable("getsizeof", getsizeof)
        _cache_check_callable("on_evict", on_evict)
        if self._n:
            raise RuntimeError(f"{type(self).__name__} is already initialized")
        self._release_arrays()
        self._maxsize = maxsize
        self._maxsize_c = PY_SSIZE_T_MAX if maxsize > PY_SSIZE_T_MAX else <Py_ssize_t>maxsize
        self._getsizeof = getsizeof
        self._on_evict = on_evict
        self._currsize_obj = 0
        if getsizeof is None:
            self._maxcap = _CACHE_MAXENT if self._maxsize_c > _CACHE_MAXENT else self._maxsize_c
        else:
            self._maxcap = _CACHE_MAXENT
        # entry numbers take the low _ibits bits of a slot, the hash tag the rest (up to bit 30)
        self._ibits = 1
        while (<Py_ssize_t>1 << self._ibits) <= self._maxcap and self._ibits < 31:
            self._ibits += 1
        self._imask = <int32_t>((<uint64_t>1 << self._ibits) - 1)
        self._tagmask = (<uint64_t>1 << (31 - self._ibits)) - 1
        self._update_fast()
        return 0

    @cython.final
    cdef int _reinit(self) except -1:
        # __init__ on a used cache starts afresh, as the twin's does: contents and counters go.
        if self._n:
            self.clear()
        self._hits = self._misses = self._evictions = self._expirations = 0
        return 0

    @cython.final
    cdef void _release_arrays(self) noexcept:
        # Only while empty (re-initialisation): the arrays' shapes depend on the settings.
        PyMem_Free(self._ents)
        PyMem_Free(self._tl)
        PyMem_Free(self._xexp)
        PyMem_Free(self._sizes)
        self._ents = NULL
        self._tl = NULL
        self._xexp = NULL
        self._sizes = NULL
        self._cap = 0

    @cython.final
    cdef void _update_fast(self) noexcept:
        self._fast_set = (not self._hook and self._getsizeof is None and self._on_evict is None
                          and not self._objmode)

    # ------------------------------------------------------------------ table primitives

    @cython.final
    cdef inline int32_t _tag(self, Py_hash_t h) noexcept:
        # Hash bits kept in the slot above the entry number: most slots of another key are
        # told apart without reading its entry (a miss reads the index table only).
        return <int32_t>((((<uint64_t>h * <uint64_t>0x9E3779B97F4A7C15ULL) >> 32) & self._tagmask)
                         << self._ibits)

    @cython.final
    cdef inline size_t _home(self, Py_hash_t h) noexcept:
        # Fibonacci hashing: the high bits of h * 2^64/phi pick the home slot, so that regular
        # hashes (ints with a common stride) spread out under linear probing.
        return <size_t>((<uint64_t>h * <uint64_t>0x9E3779B97F4A7C15ULL) >> self._shift)

    @cython.final
    cdef inline void _bump(self) noexcept:
        # A structural change (insert, delete, rebuild, clear), and the thread that made it.
        self._ver += 1
        self._ver_tid = PyThread_get_thread_ident()

    @cython.final
    cdef int _keys_equal(self, PyObject* other, PyObject* k) except -1:
        # 1 equal, 0 not, 2 another thread changed the table meanwhile (probe again); raises
        # what __eq__ raised, or RuntimeError if __eq__ itself changed the table.
        cdef size_t ver
        cdef int r
        if _cache_UnicodeExact(other) and _cache_UnicodeExact(k):
            return _cache_str_eq(other, k)
        ver = self._ver
        Py_INCREF(<object>other)
        r = _cache_RichCompareBool_nx(other, k, Py_EQ)
        Py_DECREF(<object>other)
        if r < 0:
            return -1
        if self._ver != ver:
            if self._ver_tid != PyThread_get_thread_ident():
                return 2
            raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        return r

    @cython.final
    cdef inline Py_ssize_t _find(self, object key, Py_hash_t h) except -2:
        # Entry number of key, or -1; self._slot is left at the key's slot (or the empty slot).
        cdef size_t mask = <size_t>self._mask
        cdef size_t i = self._home(h)
        cdef int32_t t = self._tag(h)
        cdef int32_t imask = self._imask
        cdef int32_t ix
        cdef PyObject* k = <PyObject*>key
        cdef PyObject* other
        cdef size_t ver
        cdef int r
        while True:
            ix = self._idx[i]
            if ix < 0:
                self._slot = <Py_ssize_t>i
                return -1
            if (ix & ~imask) != t:
                i = (i + 1) & mask
                continue
            ix &= imask
            other = self._ents[ix].key
            if other == k:
                self._slot = <Py_ssize_t>i
                return ix
            if self._ents[ix].hash == h:
                r = self._keys_equal(other, k)
                if r:
                    if r == 2:  # a thread switch inside __eq__ let another thread change it
                        mask = <size_t>self._mask
                        i = self._home(h)
                        continue
                    self._slot = <Py_ssize_t>i
                    return ix
            i = (i + 1) & mask

    @cython.final
    cdef inline Py_ssize_t _slot_of(self, Py_ssize_t ix) noexcept:
        # Slot holding entry ix (no user code: compares entry numbers only).
        cdef size_t mask = <size_t>self._mask
        cdef size_t i = self._home(self._ents[ix].hash)
        cdef int32_t imask = self._imask
        while (self._idx[i] & imask) != ix:
            i = (i + 1) & mask
        return <Py_ssize_t>i

    @cython.final
    cdef inline Py_ssize_t _free_slot(self, Py_hash_t h) noexcept:
        cdef size_t mask = <size_t>self._mask
        cdef size_t i = self._home(h)
        while self._idx[i] >= 0:
            i = (i + 1) & mask
        return <Py_ssize_t>i

    @cython.final
    cdef inline void _clear_slot(self, Py_ssize_t slot) noexcept:
        # Linear-probing deletion without tombstones: shift later members of the cluster back.
        cdef size_t mask = <size_t>self._mask
        cdef size_t i = <size_t>slot
        cdef size_t j = i
        cdef size_t k
        cdef int32_t v
        while True:
            j = (j + 1) & mask
            v = self._idx[j]
            if v < 0:
                break
            k = self._home(self._ents[v & self._imask].hash)
            # the entry at j may move to i only if its home is not cyclically in (i, j]
            if i <= j:
                if i < k and k <= j:
                    continue
            elif i < k or k <= j:
                continue
            self._idx[i] = v
            i = j
        self._idx[i] = _CACHE_EMPTY

    @cython.final
    cdef int _rebuild(self, Py_ssize_t need) except -1:
        # New index table for `need` entries: load factor <= 1/2.
        cdef Py_ssize_t size = _CACHE_MINSIZE
        cdef int shift = 61
        cdef Py_ssize_t i, s
        cdef int32_t* idx
        while size < 2 * need + 2:
            size <<= 1
            shift -= 1
        idx = <int32_t*>PyMem_Malloc(size * sizeof(int32_t))
        if idx == NULL:
            raise MemoryError()
        memset(idx, 0xFF, size * sizeof(int32_t))
        PyMem_Free(self._idx)
        self._idx = idx
        self._mask = size - 1
        self._shift = shift
        for i in range(self._n):
            s = self._free_slot(self._ents[i].hash)
            idx[s] = self._tag(self._ents[i].hash) | <int32_t>i
        self._bump()
        return 0

    @cython.final
    cdef int _reserve(self) except -1:
        # Room for one more entry in the entry arrays and in the index table.
        cdef Py_ssize_t newcap
        cdef void* p
        if self._n >= self._cap:
            if self._cap >= self._maxcap:
                if self._n >= _CACHE_MAXENT:
                    raise OverflowError(f"{type(self).__name__} cannot hold more items")
                newcap = self._n + 1
            else:
                newcap = self._cap * 2 if self._cap >= 8 else 8
                if newcap > self._maxcap:
                    newcap = self._maxcap
            p = PyMem_Realloc(self._ents, newcap * sizeof(_cache_ent))
            if p == NULL:
                raise MemoryError()
            self._ents = <_cache_ent*>p
            if self._is_ttl:
                p = PyMem_Realloc(self._tl, newcap * sizeof(_cache_tl))
                if p == NULL:
                    raise MemoryError()
                self._tl = <_cache_tl*>p
                if self._objmode:
                    p = PyMem_Realloc(self._xexp, newcap * sizeof(PyObject*))
                    if p == NULL:
                        raise MemoryError()
                    self._xexp = <PyObject**>p
            if self._getsizeof is not None:
                p = PyMem_Realloc(self._sizes, newcap * sizeof(PyObject*))
                if p == NULL:
                    raise MemoryError()
                self._sizes = <PyObject**>p
            self._cap = newcap
        if (self._n + 1) * 2 > self._mask + 1:
            self._rebuild(self._n + 1)
        return 0

    @cython.final
    cdef inline void _lru_unlink(self, int32_t ix) noexcept:
        cdef _cache_ent* e = &self._ents[ix]
        if e.prev >= 0:
            self._ents[e.prev].next = e.next
        else:
            self._head = e.next
        if e.next >= 0:
            self._ents[e.next].prev = e.prev
        else:
            self._tail = e.prev

    @cython.final
    cdef inline void _lru_append(self, int32_t ix) noexcept:
        cdef _cache_ent* e = &self._ents[ix]
        e.prev = self._tail
        e.next = -1
        if self._tail >= 0:
            self._ents[self._tail].next = ix
        else:
            self._head = ix
        self._tail = ix

    @cython.final
    cdef inline void _touch(self, int32_t ix) noexcept:
        cdef _cache_ent* e
        cdef int32_t p, nx
        if ix == self._tail:
            return
        e = &self._ents[ix]
        p = e.prev
        nx = e.next
        if p >= 0:
            self._ents[p].next = nx
        else:
            self._head = nx
        self._ents[nx].prev = p
        e.prev = self._tail
        e.next = -1
        self._ents[self._tail].next = ix
        self._tail = ix
        self._mod += 1

    @cython.final
    cdef inline void _ttl_unlink(self, int32_t ix) noexcept:
        cdef _cache_tl* t = &self._tl[ix]
        if t.prev >= 0:
            self._tl[t.prev].next = t.next
        else:
            self._thead = t.next
        if t.next >= 0:
            self._tl[t.next].prev = t.prev
        else:
            self._ttail = t.prev

    @cython.final
    cdef inline void _ttl_append(self, int32_t ix) noexcept:
        cdef _cache_tl* t = &self._tl[ix]
        t.prev = self._ttail
        t.next = -1
        if self._ttail >= 0:
            self._tl[self._ttail].next = ix
        else:
            self._thead = ix
        self._ttail = ix

    @cython.final
    cdef int32_t _insert(self, object key, object value, Py_hash_t h) except -1:
        # Append a new entry (key known absent; _reserve() already called). Returns its number.
        # TTL callers set the expiry and link the expiry list themselves.
        cdef Py_ssize_t s = self._free_slot(h)
        cdef int32_t ix = <int32_t>self._n
        cdef _cache_ent* e = &self._ents[ix]
        self._idx[s] = self._tag(h) | ix
        Py_INCREF(key)
        Py_INCREF(value)
        e.key = <PyObject*>key
        e.value = <PyObject*>value
        e.hash = h
        self._n += 1
        self._lru_append(ix)
        if self._is_ttl:
            self._ttl_append(ix)
            if self._objmode:
                self._xexp[ix] = NULL
        if self._sizes != NULL:
            self._sizes[ix] = NULL
        self._bump()
        self._mod += 1
        return ix

    @cython.final
    cdef void _remove(self, int32_t ix, Py_ssize_t slot) noexcept:
        # Unlink entry ix (at index slot `slot`) and fill its hole with the last entry.
        # The caller now owns ix's key, value, expiry object and size references: it must read
        # them BEFORE calling this, and release them after the structure is consistent.
        cdef int32_t last = <int32_t>(self._n - 1)
        cdef Py_ssize_t ls
        cdef _cache_ent* e
        self._clear_slot(slot)
        self._lru_unlink(ix)
        if self._is_ttl:
            self._ttl_unlink(ix)
        if ix != last:
            ls = self._slot_of(last)
            self._idx[ls] = (self._idx[ls] & ~self._imask) | ix
            self._ents[ix] = self._ents[last]
            e = &self._ents[ix]
            if e.prev >= 0:
                self._ents[e.prev].next = ix
            else:
                self._head = ix
            if e.next >= 0:
                self._ents[e.next].prev = ix
            else:
                self._tail = ix
            if self._is_ttl:
                self._tl[ix] = self._tl[last]
                if self._tl[ix].prev >= 0:
                    self._tl[self._tl[ix].prev].next = ix
                else:
                    self._thead = ix
                if self._tl[ix].next >= 0:
                    self._tl[self._tl[ix].next].prev = ix
                else:
                    self._ttail = ix
                if self._xexp != NULL:
                    self._xexp[ix] = self._xexp[last]
            if self._sizes != NULL:
                self._sizes[ix] = self._sizes[last]
        self._n -= 1
        self._bump()
        self._mod += 1

    @cython.final
    cdef tuple _take(self, int32_t ix, Py_ssize_t slot):
        # Remove entry ix and return (key, value) holding the only references the cache had.
        cdef PyObject* k = self._ents[ix].key
        cdef PyObject* v = self._ents[ix].value
        cdef PyObject* x = NULL
        cdef PyObject* sz = NULL
        cdef tuple pair = (<object>k, <object>v)
        if self._xexp != NULL:
            x = self._xexp[ix]
        if self._sizes != NULL:
            sz = self._sizes[ix]
            self._currsize_obj = self._currsize_obj - <object>sz
        self._remove(ix, slot)
        # the cache's own references: the tuple holds its own
        Py_DECREF(<object>k)
        Py_DECREF(<object>v)
        Py_XDECREF(x)
        Py_XDECREF(sz)
        return pair

    # ------------------------------------------------------------------ time

    @cython.final
    cdef double _to_double(self, object t) except? -1.0:
        if isinstance(t, (int, float)):
            return float(t)
        t + self._ttl          # the error a non-real timer value gives with a real ttl
        return float(t)

    @cython.final
    cdef inline double _now_d(self) except? -1.0:
        # One timer read as a double (real ttl), clamped so that time never goes backwards.
        cdef object t
        cdef double d
        if self._tw._nesting:
            t = self._tw._time
            d = _cache_FloatAsDouble(t) if _cache_FloatExact(t) else self._to_double(t)
        elif self._cclock:
            d = _cache_cclock()
        else:
            t = self._tw._timer()
            d = _cache_FloatAsDouble(t) if _cache_FloatExact(t) else self._to_double(t)
        if self._has_last and d < self._last_d:
            return self._last_d
        self._last_d = d
        self._has_last = True
        return d

    @cython.final
    cdef inline bint _fresh(self, Py_ssize_t ix) noexcept:
        # Built-in clock, read path: alive by time.monotonic() (see _CACHE_COARSE_MARGIN).
        cdef double exp = self._ents[ix].exp
        if _cache_coarse() + _CACHE_COARSE_MARGIN < exp:
            return True
        return _cache_cclock() < exp

    @cython.final
    cdef int _observe(self, object t) except -1:
        # Record a time read whose value is not otherwise used (the clamp's latest time).
        if self._objmode:
            if self._last_o is None or not (t < self._last_o):
                self._last_o = t
        elif isinstance(t, (int, float)):
            if not (self._has_last and t < self._last_d):
                self._last_d = t
                self._has_last = True
        return 0

    @cython.final
    cdef object _now_o(self):
        cdef object t
        if self._tw._nesting:
            t = self._tw._time
        else:
            t = self._tw._timer()
        last = self._last_o
        if last is not None and t < last:
            return last
        self._last_o = t
        return t

    @cython.final
    cdef object _now(self):
        # One timer read as a Python object (slow paths).
        if self._objmode:
            return self._now_o()
        return self._now_d()

    @cython.final
    cdef int _alive(self, int32_t ix, object now) except -1:
        # 1 if entry ix has not expired at `now` (now is a float in double mode).
        cdef size_t ver
        cdef object x
        cdef int r
        if not self._objmode:
            return (<double>now) < self._ents[ix].exp
        ver = self._ver
        x = <object>self._xexp[ix]
        r = True if now < x else False
        if self._ver != ver:
            raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        return r

    @cython.final
    cdef tuple _expired_prefix(self, object now):
        # (count, total size) of the expired items at the front of the expiry list.
        cdef Py_ssize_t k = 0
        cdef int32_t ix = self._thead
        cdef double d
        size = 0
        if not self._objmode:
            d = now
            while ix >= 0 and not (d < self._ents[ix].exp):
                k += 1
                if self._sizes != NULL:
                    size = size + <object>self._sizes[ix]
                ix = self._tl[ix].next
            return k, (size if self._sizes != NULL else k)
        while ix >= 0 and not self._alive(ix, now):
            k += 1
            if self._sizes != NULL:
                size = size + <object>self._sizes[ix]
            ix = self._tl[ix].next
        return k, (size if self._sizes != NULL else k)

    @cython.final
    cdef int _expire_into(self, object now, list evicted) except -1:
        # Remove every expired item (a prefix of the expiry list) into `evicted`.
        cdef int32_t ix
        while self._thead >= 0:
            ix = self._thead
            if self._alive(ix, now):
                break
            evicted.append(self._take(ix, self._slot_of(ix)))
            self._expirations += 1
        return 0

    @cython.final
    cdef int _notify(self, list evicted) except -1:
        # on_evict for each pair; the first exception is raised after all of them ran.
        cdef object error = None
        on_evict = self._on_evict
        if on_evict is None or not evicted:
            return 0
        for key, value in evicted:
            try:
                on_evict(key, value)
            except BaseException as exc:
                if error is None:
                    error = exc
        if error is not None:
            raise error
        return 0

    @cython.final
    cdef int _set_exp(self, int32_t ix, object exp) except -1:
        # Store the expiry of entry ix (just inserted or updated) and make it last in expiry order.
        cdef PyObject* old
        if self._objmode:
            old = self._xexp[ix]
            Py_INCREF(exp)
            self._xexp[ix] = <PyObject*>exp
            Py_XDECREF(old)
        else:
            self._ents[ix].exp = <double>exp
        if ix != self._ttail:
            self._ttl_unlink(ix)
            self._ttl_append(ix)
        return 0

    @cython.final
    cdef int _freeze(self, object now) except -1:
        # Freeze cache.timer at `now` (already read) for a nested operation; undo with _thaw().
        if self._tw._nesting == 0:
            self._tw._time = now
        self._tw._nesting += 1
        return 0

    @cython.final
    cdef void _thaw(self) noexcept:
        self._tw._nesting -= 1

    # ------------------------------------------------------------------ lookups (hot paths)

    def __getitem__(self, key):
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix
        cdef double now
        cdef object nowo
        if not self._is_ttl:
            ix = self._find(key, h)
            if ix >= 0:
                self._touch(<int32_t>ix)
                self._hits += 1
                return <object>self._ents[ix].value
        elif self._cclock and not self._tw._nesting:
            ix = self._find(key, h)
            if ix >= 0 and self._fresh(ix):
                self._touch(<int32_t>ix)
                self._hits += 1
                return <object>self._ents[ix].value
        elif not self._objmode:
            now = self._now_d()
            ix = self._find(key, h)
            if ix >= 0 and now < self._ents[ix].exp:
                self._touch(<int32_t>ix)
                self._hits += 1
                return <object>self._ents[ix].value
        else:
            nowo = self._now_o()
            ix = self._find(key, h)
            if ix >= 0 and self._alive(<int32_t>ix, nowo):
                self._touch(<int32_t>ix)
                self._hits += 1
                return <object>self._ents[ix].value
        self._misses += 1
        if self._has_missing:
            return self.__missing__(key)
        raise KeyError(key)

    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def get(self, key, default=None):
        """Return the value for key (making it most recent) or default."""
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix
        cdef double now
        if not self._is_ttl:
            ix = self._find(key, h)
            if ix >= 0:
                self._touch(<int32_t>ix)
                self._hits += 1
                return <object>self._ents[ix].value
        elif self._cclock and not self._tw._nesting:
            ix = self._find(key, h)
            if ix >= 0 and self._fresh(ix):
                self._touch(<int32_t>ix)
                self._hits += 1
                return <object>self._ents[ix].value
        elif not self._objmode:
            now = self._now_d()
            ix = self._find(key, h)
            if ix >= 0 and now < self._ents[ix].exp:
                self._touch(<int32_t>ix)
                self._hits += 1
                return <object>self._ents[ix].value
        else:
            nowo = self._now_o()
            ix = self._find(key, h)
            if ix >= 0 and self._alive(<int32_t>ix, nowo):
                self._touch(<int32_t>ix)
                self._hits += 1
                return <object>self._ents[ix].value
        self._misses += 1
        return default

    def __contains__(self, key):
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix
        cdef double now
        if not self._is_ttl:
            return self._find(key, h) >= 0
        if self._cclock and not self._tw._nesting:
            ix = self._find(key, h)
            return ix >= 0 and self._fresh(ix)
        if not self._objmode:
            now = self._now_d()
            ix = self._find(key, h)
            return ix >= 0 and now < self._ents[ix].exp
        nowo = self._now_o()
        ix = self._find(key, h)
        return ix >= 0 and self._alive(<int32_t>ix, nowo) == 1

    def peek(self, key, default=None):
        """Return the value for key, or default, without making it most recent or counting."""
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix
        cdef object now
        if self._is_ttl:
            now = self._now()
        ix = self._find(key, h)
        if ix < 0 or (self._is_ttl and not self._alive(<int32_t>ix, now)):
            return default
        return <object>self._ents[ix].value

    def __len__(self):
        if not self._is_ttl or self._thead < 0:
            return self._n
        if not self._objmode:
            return self._n - self._expired_prefix(self._now_d())[0]
        return self._n - self._expired_prefix(self._now_o())[0]

    # ------------------------------------------------------------------ insertion

    def __setitem__(self, key, value):
        cdef Py_hash_t h
        cdef Py_ssize_t ix
        cdef int32_t v
        cdef _cache_ent* e
        cdef PyObject* oldk
        cdef PyObject* oldv
        cdef double now = 0.0, exp = 0.0
        cdef list expired = None
        if not self._fast_set:
            self._set_slow(key, value)
            return
        # Fast path: no getsizeof, on_evict or popitem() override, real-number expiries.
        if self._n >= self._maxsize_c and self._head >= 0:
            # a new key will take the least recent entry: start loading it now
            _cache_prefetch(&self._ents[self._head])
            if self._tl != NULL:
                _cache_prefetch(&self._tl[self._head])
        h = hash(key)
        if self._is_ttl:
            now = self._now_d()
            exp = now + self._ttl_d
        if self._maxsize_c < 1:
            raise ValueError("value too large")
        if self._is_ttl and self._thead >= 0 and not (now < self._ents[self._thead].exp):
            expired = []           # released when this call returns, after all the surgery
            self._expire_into(now, expired)
        if self._n >= self._maxsize_c and self._head >= 0:
            # ... and the neighbours its unlinking will write to
            v = self._ents[self._head].next
            if v >= 0:
                _cache_prefetch(&self._ents[v])
            if self._tl != NULL:
                v = self._tl[self._head].next
                if v >= 0:
                    _cache_prefetch(&self._tl[v])
                v = self._tl[self._head].prev
                if v >= 0:
                    _cache_prefetch(&self._tl[v])
        ix = self._find(key, h)
        if ix >= 0:
            e = &self._ents[ix]
            oldv = e.value
            Py_INCREF(value)
            e.value = <PyObject*>value
            self._touch(<int32_t>ix)
            if self._is_ttl:
                self._ents[ix].exp = exp
                if ix != self._ttail:
                    self._ttl_unlink(<int32_t>ix)
                    self._ttl_append(<int32_t>ix)
            self._mod += 1
            Py_DECREF(<object>oldv)
            return
        if self._n >= self._maxsize_c:
            # Full: the least recent entry's slot takes the new item (no hole to fill).
            v = self._head
            self._clear_slot(self._slot_of(v))
            e = &self._ents[v]
            oldk = e.key
            oldv = e.value
            Py_INCREF(key)
            Py_INCREF(value)
            e.key = <PyObject*>key
            e.value = <PyObject*>value
            e.hash = h
            self._touch(v)
            self._idx[self._free_slot(h)] = self._tag(h) | v
            if self._is_ttl:
                self._ents[v].exp = exp
                if v != self._ttail:
                    self._ttl_unlink(v)
                    self._ttl_append(v)
            self._bump()
            self._mod += 1
            self._evictions += 1
            Py_DECREF(<object>oldk)
            Py_DECREF(<object>oldv)
            return
        self._reserve()
        ix = self._insert(key, value, h)
        if self._is_ttl:
            self._ents[ix].exp = exp

    def set(self, key, value):
        """Store value under key (the seed's name for ``cache[key] = value``)."""
        self[key] = value

    @cython.final
    cdef int _set_slow(self, object key, object value) except -1:
        cdef list evicted = []
        cdef object old = None
        cdef bint frozen = False
        try:
            if self._hook and self._is_ttl:
                # an overriding popitem() reads the timer too: freeze it for the operation
                self._tw.__enter__()
                frozen = True
            try:
                old = self._set(key, value, evicted)
            finally:
                if frozen:
                    self._thaw()
        finally:
            self._notify(evicted)
        old = None             # a replaced value is released last: its __del__ may use the cache
        return 0

    @cython.final
    cdef object _set(self, object key, object value, list evicted):
        # cachetools' __setitem__; returns the replaced value (or None) for the caller to release.
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix
        cdef object now = None, exp = None, size, diff, old
        cdef PyObject* p
        cdef size_t before
        if self._is_ttl:
            now = self._now()
            exp = now + self._ttl  # may raise (overflow): nothing changed yet
            if not self._objmode:
                exp = float(exp)
        if self._getsizeof is None:
            size = 1
        else:
            size = self._getsizeof(value)
        _cache_check_size(size, self._maxsize)
        if self._is_ttl:
            self._expire_into(now, evicted)
        ix = self._find(key, h)
        if ix >= 0:
            # Update in place: most recent first, so that making extra room never evicts it.
            self._touch(<int32_t>ix)
            if self._is_ttl:
                self._set_exp(<int32_t>ix, exp)
            self._mod += 1
            while True:
                diff = size - self._size_of(ix)
                if not (self._currsize() + diff > self._maxsize):
                    break
                self._evict_one(evicted)
                ix = self._find(key, h)
                if ix < 0:  # an overriding popitem() removed it after all
                    break
            if ix >= 0:
                p = self._ents[ix].value
                Py_INCREF(value)
                self._ents[ix].value = <PyObject*>value
                old = <object>p
                Py_DECREF(old)      # the cache's reference; `old` keeps it alive
                if self._sizes != NULL:
                    p = self._sizes[ix]
                    Py_INCREF(size)
                    self._sizes[ix] = <PyObject*>size
                    Py_DECREF(<object>p)
                    self._currsize_obj = self._currsize_obj + diff
                self._mod += 1
                return old
        if self._currsize() + size > self._maxsize:
            while self._currsize() + size > self._maxsize:
                self._evict_one(evicted)
            if self._hook and self._find(key, h) >= 0:
                # the overriding popitem() stored key meanwhile
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        self._reserve()
        ix = self._insert(key, value, h)
        if self._is_ttl:
            self._set_exp(<int32_t>ix, exp)
        if self._sizes != NULL:
            Py_INCREF(size)
            self._sizes[ix] = <PyObject*>size
            self._currsize_obj = self._currsize_obj + size
        return None

    @cython.final
    cdef object _size_of(self, Py_ssize_t ix):
        if self._sizes == NULL:
            return 1
        return <object>self._sizes[ix]

    @cython.final
    cdef object _currsize(self):
        # Sum of the sizes of all items held, expired ones included.
        if self._sizes == NULL:
            return self._n
        return self._currsize_obj

    @cython.final
    cdef int _evict_one(self, list evicted) except -1:
        # Make room: one item out, through an overriding popitem() when the subclass has one.
        cdef size_t before
        if self._hook:
            before = self._ver
            pair = self.popitem()
            key, value = pair
            if self._ver == before:
                raise RuntimeError(f"{type(self).__name__}.popitem() removed nothing")
            pair = (key, value)
        else:
            if self._n == 0:
                raise KeyError(f"{type(self).__name__} is empty")
            pair = self._take(self._head, self._slot_of(self._head))
        self._evictions += 1
        evicted.append(pair)
        return 0

    # ------------------------------------------------------------------ removal

    def __delitem__(self, key):
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix, slot
        cdef object now = None
        if self._is_ttl:
            now = self._now()
        ix = self._find(key, h)
        slot = self._slot
        if ix < 0 or (self._is_ttl and not self._alive(<int32_t>ix, now)):
            raise KeyError(key)
        if self._objmode:  # the expiry comparison ran Python code: look again
            ix = self._find(key, h)
            slot = self._slot
            if ix < 0:
                raise KeyError(key)
        pair = self._take(<int32_t>ix, slot)

    def pop(self, key, default=_cache_MISSING):
        """Remove key and return its value; default (or KeyError) when absent or expired."""
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix, slot
        cdef object now = None
        if self._is_ttl:
            now = self._now()
        ix = self._find(key, h)
        slot = self._slot
        if ix >= 0 and self._is_ttl and not self._alive(<int32_t>ix, now):
            ix = -1
        if ix >= 0 and self._objmode:  # the expiry comparison ran Python code: look again
            ix = self._find(key, h)
            slot = self._slot
        if ix < 0:
            if default is _cache_MISSING:
                raise KeyError(key)
            return default
        return self._take(<int32_t>ix, slot)[1]

    def popitem(self):
        """Remove and return the least recently used (key, value) pair (expired items first go)."""
        cdef list evicted
        if not self._is_ttl:
            if self._n == 0:
                raise KeyError(f"{type(self).__name__} is empty")
            return self._take(self._head, self._slot_of(self._head))
        evicted = []
        try:
            self._expire_into(self._now(), evicted)
            if self._n == 0:
                raise KeyError(f"{type(self).__name__} is empty")
            return self._take(self._head, self._slot_of(self._head))
        finally:
            self._notify(evicted)

    def setdefault(self, key, default=None):
        """Return the value for key if present (making it most recent), else store default."""
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix
        cdef object now = None
        if self._is_ttl:
            now = self._now()
        ix = self._find(key, h)
        if ix >= 0 and (not self._is_ttl or self._alive(<int32_t>ix, now)):
            self._touch(<int32_t>ix)
            self._mod += 1
            return <object>self._ents[ix].value
        if not self._is_ttl:
            self[key] = default
            return default
        self._freeze(now)      # store at the time already read: no second timer read
        try:
            self[key] = default
        finally:
            self._thaw()
        return default

    def update(self, other=(), /, **kwds):
        """Store every pair of a mapping or iterable of pairs, then the keyword arguments."""
        if isinstance(other, _cache_abc.Mapping):
            for key in other:
                self[key] = other[key]
        elif hasattr(other, "keys"):
            for key in other.keys():
                self[key] = other[key]
        else:
            for key, value in other:
                self[key] = value
        for key, value in kwds.items():
            self[key] = value

    def clear(self):
        """Remove every item (counters are kept; see reset_stats())."""
        cdef _cache_ent* ents = self._ents
        cdef PyObject** xexp = self._xexp
        cdef PyObject** sizes = self._sizes
        cdef Py_ssize_t n = self._n, i
        cdef int32_t* idx = <int32_t*>PyMem_Malloc(_CACHE_MINSIZE * sizeof(int32_t))
        if idx == NULL:
            raise MemoryError()
        memset(idx, 0xFF, _CACHE_MINSIZE * sizeof(int32_t))
        PyMem_Free(self._idx)
        PyMem_Free(self._tl)
        self._idx = idx
        self._mask = _CACHE_MINSIZE - 1
        self._ents = NULL
        self._tl = NULL
        self._xexp = NULL
        self._sizes = NULL
        self._n = self._cap = 0
        self._shift = 61
        self._head = self._tail = self._thead = self._ttail = -1
        self._currsize_obj = 0
        self._bump()
        self._mod += 1
        # the cache is empty and consistent: now release the old contents (may run __del__)
        for i in range(n):
            Py_DECREF(<object>ents[i].key)
            Py_DECREF(<object>ents[i].value)
            if xexp != NULL:
                Py_XDECREF(xexp[i])
            if sizes != NULL:
                Py_XDECREF(sizes[i])
        PyMem_Free(ents)
        PyMem_Free(xexp)
        PyMem_Free(sizes)

    # ------------------------------------------------------------------ iteration and views

    def __iter__(self):
        return _cache_Iter._new(self, 0)

    def keys(self):
        """A view of the keys, least recently used first."""
        return _cache_KeysView(self)

    def values(self):
        """A view of the values, least recently used first."""
        return _cache_ValuesView(self)

    def items(self):
        """A view of the (key, value) pairs, least recently used first."""
        return _cache_ItemsView(self)

    def _iter(self, int kind):
        return _cache_Iter._new(self, kind)

    def __eq__(self, other):
        if not isinstance(other, _cache_abc.Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None

    def __repr__(self):
        marker = (id(self), _cache_threading.get_ident())
        if marker in _cache_repr_running:
            return "..."
        _cache_repr_running.add(marker)
        try:
            body = ", ".join(f"{k!r}: {v!r}" for k, v in self._iter(2))
            currsize = self.currsize
        finally:
            _cache_repr_running.discard(marker)
        return f"{type(self).__name__}({{{body}}}, maxsize={self._maxsize!r}, currsize={currsize!r})"

    # ------------------------------------------------------------------ properties and stats

    @property
    def maxsize(self):
        """The maximum size of the cache."""
        return self._maxsize

    @property
    def currsize(self):
        """The total size of the items held (for TTLCache: of the items not yet expired)."""
        if not self._is_ttl or self._n == 0:
            return self._currsize()
        return self._currsize() - self._expired_prefix(self._now())[1]

    def getsizeof(self, value):
        """Return the size of a cache element's value (1 unless getsizeof was given)."""
        if self._getsizeof is None:
            return 1
        return self._getsizeof(value)

    @property
    def on_evict(self):
        """The callback called with (key, value) for each item evicted or expired."""
        return self._on_evict

    def stats(self):
        """Counters and settings: hits, misses, hit_rate, size, max_size, ttl, evictions, expirations."""
        cdef uint64_t total = self._hits + self._misses
        return {
            "hits": self._hits,
            "misses": self._misses,
            "hit_rate": (<double>self._hits / <double>total) if total else 0.0,
            "size": len(self),
            "max_size": self._maxsize,
            "ttl": self._ttl if self._is_ttl else None,
            "evictions": self._evictions,
            "expirations": self._expirations,
        }

    def reset_stats(self):
        """Zero the hit, miss, eviction and expiration counters."""
        self._hits = self._misses = self._evictions = self._expirations = 0

    @classmethod
    def __class_getitem__(cls, item):
        return _cache_types.GenericAlias(cls, item)

    # ------------------------------------------------------------------ pickling (state shared with the Python twin)

    def __reduce__(self):
        return _cache_copyreg.__newobj__, (type(self),), self.__getstate__()

    def __getstate__(self):
        cdef list items = []
        cdef list expires = []
        cdef list xorder = []
        cdef Py_ssize_t k = 0
        cdef int32_t ix = self._head
        cdef dict pos = {}
        while ix >= 0:
            items.append((<object>self._ents[ix].key, <object>self._ents[ix].value, self._size_of(ix)))
            if self._is_ttl:
                expires.append(<object>self._xexp[ix] if self._objmode else self._ents[ix].exp)
                pos[ix] = k
            k += 1
            ix = self._ents[ix].next
        if self._is_ttl:
            ix = self._thead
            while ix >= 0:
                xorder.append(pos[ix])
                ix = self._tl[ix].next
            if self._objmode:
                last = self._last_o
            else:
                last = self._last_d if self._has_last else None
            ttl_part = (expires, xorder, last)
            settings = (self._maxsize, self._getsizeof, self._on_evict, self._ttl, self._tw._timer)
        else:
            ttl_part = None
            settings = (self._maxsize, self._getsizeof, self._on_evict, None, None)
        return (_CACHE_STATE_TAG, _CACHE_STATE_VERSION, settings, items, ttl_part,
                (self._hits, self._misses, self._evictions, self._expirations))

    def __setstate__(self, state):
        cdef Py_ssize_t ix
        cdef list idxs = []
        name = type(self).__name__
        if not (isinstance(state, tuple) and len(state) == 6 and state[0] == _CACHE_STATE_TAG):
            raise TypeError(f"invalid {name} state")
        if state[1] != _CACHE_STATE_VERSION:
            raise ValueError(f"unsupported {name} state version {state[1]!r}")
        _, _, settings, items, ttl_part, counters = state
        maxsize, getsizeof, on_evict, ttl, timer = settings
        _cache_check_maxsize(maxsize)
        _cache_check_callable("getsizeof", getsizeof)
        _cache_check_callable("on_evict", on_evict)
        if self._n:
            self.clear()
        if isinstance(self, TTLCache):
            self._setup_ttl(ttl, timer)
            expires, xorder, last = ttl_part
            if len(expires) != len(items) or sorted(xorder) != list(range(len(items))):
                raise ValueError(f"invalid {name} state")
        self._configure(maxsize, getsizeof, on_evict)
        self._hits = self._misses = self._evictions = self._expirations = 0
        self._bump()
        self._mod += 1
        for key, value, size in items:
            h = hash(key)
            self._reserve()
            if self._find(key, h) >= 0:
                raise ValueError(f"invalid {name} state")
            ix = self._insert(key, value, h)
            idxs.append(ix)
            if self._sizes != NULL:
                Py_INCREF(size)
                self._sizes[ix] = <PyObject*>size
                self._currsize_obj = self._currsize_obj + size
        if self._is_ttl:
            for k in range(len(idxs)):
                ix = idxs[k]
                if self._objmode:
                    exp = expires[k]
                    Py_INCREF(exp)
                    self._xexp[ix] = <PyObject*>exp
                else:
                    self._ents[ix].exp = float(expires[k])
            for k in xorder:
                ix = idxs[k]
                self._ttl_unlink(<int32_t>ix)
                self._ttl_append(<int32_t>ix)
            if last is None:
                self._has_last = False
                self._last_o = None
            elif self._objmode:
                self._last_o = last
            else:
                self._last_d = float(last)
                self._has_last = True
        self._hits, self._misses, self._evictions, self._expirations = counters

    def __copy__(self):
        cls = type(self)
        new = cls.__new__(cls)
        new.__setstate__(self.__getstate__())
        return new

    @cython.final
    cdef int _setup_ttl(self, object ttl, object timer) except -1:
        _cache_check_ttl(ttl)
        if not callable(timer):
            raise TypeError(f"timer must be callable, got {timer!r}")
        if self._n:
            raise RuntimeError(f"{type(self).__name__} is already initialized")
        self._release_arrays()
        self._objmode = not (type(ttl) is float or type(ttl) is int)
        self._ttl_d = float(ttl) if not self._objmode else 0.0
        self._is_ttl = True
        self._ttl = ttl
        self._cclock = timer is _cache_monotonic
        self._tw = _cache_Timer(timer)
        self._has_last = False
        self._last_o = None
        return 0

    # ------------------------------------------------------------------ consistency check

    def _check(self):
        """Walk the table, the entries and both lists; raise AssertionError on any inconsistency."""
        cdef Py_ssize_t i, j, used = 0, count = 0
        cdef int32_t ix, prev
        assert self._n <= self._cap, "n > cap"
        assert (self._mask + 1) & self._mask == 0, "table size not a power of two"
        seen = [False] * self._n
        for i in range(self._mask + 1):
            ix = self._idx[i]
            if ix >= 0:
                assert (ix & ~self._imask) == self._tag(self._ents[ix & self._imask].hash), "bad tag"
                ix &= self._imask
                assert ix < self._n, "slot points past the entries"
                assert not seen[ix], "entry indexed twice"
                seen[ix] = True
                used += 1
                j = self._home(self._ents[ix].hash)
                while j != i:
                    assert self._idx[j] >= 0, "entry not reachable from its home slot"
                    j = (j + 1) & self._mask
            else:
                assert ix == _CACHE_EMPTY, "bad slot value"
        assert used == self._n, "table and entry count disagree"
        assert self._n * 2 <= self._mask + 1 or self._n == 0, "table overfull"
        prev = -1
        ix = self._head
        while ix >= 0:
            assert ix < self._n, "LRU link past the entries"
            assert self._ents[ix].prev == prev, "LRU prev link broken"
            prev = ix
            ix = self._ents[ix].next
            count += 1
            assert count <= self._n, "LRU list has a cycle"
        assert prev == self._tail, "LRU tail wrong"
        assert count == self._n, "LRU list misses entries"
        if self._is_ttl:
            count = 0
            prev = -1
            ix = self._thead
            while ix >= 0:
                assert ix < self._n, "expiry link past the entries"
                assert self._tl[ix].prev == prev, "expiry prev link broken"
                if self._objmode:
                    assert self._xexp[ix] != NULL, "missing expiry"
                prev = ix
                ix = self._tl[ix].next
                count += 1
                assert count <= self._n, "expiry list has a cycle"
            assert prev == self._ttail, "expiry tail wrong"
            assert count == self._n, "expiry list misses entries"
        if self._sizes != NULL:
            total = 0
            for i in range(self._n):
                total = total + <object>self._sizes[i]
            assert total == self._currsize_obj, "currsize disagrees with the item sizes"
        assert not (self._currsize() > self._maxsize), "currsize > maxsize"
        if self._is_ttl and not self._objmode:
            ix = self._thead
            while ix >= 0 and self._tl[ix].next >= 0:
                assert self._ents[ix].exp <= self._ents[self._tl[ix].next].exp, "expiry order is not sorted"
                ix = self._tl[ix].next
        assert self._tw is None or self._tw._nesting == 0, "timer left frozen"


cdef class _cache_Iter:
    cdef _CacheCore _c
    cdef int32_t _pos
    cdef size_t _mod
    cdef int _kind
    cdef object _now
    cdef bint _started

    @staticmethod
    cdef _cache_Iter _new(_CacheCore c, int kind):
        cdef _cache_Iter it = _cache_Iter.__new__(_cache_Iter)
        it._c = c
        it._pos = c._head
        it._mod = c._mod
        it._kind = kind
        it._now = None
        it._started = False
        return it

    def __iter__(self):
        return self

    def __next__(self):
        cdef _CacheCore c = self._c
        cdef int32_t ix
        if not self._started:
            # the time is read once, when iteration starts
            self._started = True
            self._pos = c._head
            self._mod = c._mod
            if c._is_ttl:
                if c._n:
                    self._now = c._now()
                else:
                    c._observe(c._tw())     # the one read; nothing to compare it with
                    return self.__next__()
        while True:
            if c._mod != self._mod:
                self._pos = -1
                raise RuntimeError(f"{type(c).__name__} changed during iteration")
            ix = self._pos
            if ix < 0:
                raise StopIteration
            self._pos = c._ents[ix].next
            if c._is_ttl and not c._alive(ix, self._now):
                continue
            if self._kind == 0:
                return <object>c._ents[ix].key
            if self._kind == 1:
                return <object>c._ents[ix].value
            return (<object>c._ents[ix].key, <object>c._ents[ix].value)


class _cache_KeysView(_cache_abc.KeysView):
    __slots__ = ()

    def __iter__(self):
        return self._mapping._iter(0)


class _cache_ValuesView(_cache_abc.ValuesView):
    __slots__ = ()

    def __iter__(self):
        return self._mapping._iter(1)

    def __contains__(self, value):
        for v in self._mapping._iter(1):
            if v is value or v == value:
                return True
        return False


class _cache_ItemsView(_cache_abc.ItemsView):
    __slots__ = ()

    def __iter__(self):
        return self._mapping._iter(2)

    def __contains__(self, item):
        key, value = item
        v = self._mapping.peek(key, _cache_MISSING)
        if v is _cache_MISSING:
            return False
        return v is value or v == value


@cython.no_gc_clear
cdef class LRUCache(_CacheCore):
    """Least Recently Used cache: an O(1) C hash table threaded by a doubly linked list."""

    def __init__(self, maxsize, getsizeof=None, *, on_evict=None):
        _cache_check_maxsize(maxsize)
        _cache_check_callable("getsizeof", getsizeof)
        _cache_check_callable("on_evict", on_evict)
        self._reinit()
        self._configure(maxsize, getsizeof, on_evict)


@cython.no_gc_clear
cdef class TTLCache(LRUCache):
    """LRU cache whose items expire ttl after they were set (valid while timer() < set + ttl)."""

    def __init__(self, maxsize, ttl, timer=_cache_time.monotonic, getsizeof=None, *, on_evict=None):
        _cache_check_maxsize(maxsize)
        _cache_check_ttl(ttl)
        if not callable(timer):
            raise TypeError(f"timer must be callable, got {timer!r}")
        _cache_check_callable("getsizeof", getsizeof)
        _cache_check_callable("on_evict", on_evict)
        self._reinit()
        self._setup_ttl(ttl, timer)
        self._configure(maxsize, getsizeof, on_evict)

    @property
    def ttl(self):
        """The time-to-live value of the cache's items."""
        return self._ttl

    @property
    def timer(self):
        """The timer wrapper: call it, or ``with cache.timer as now:`` to freeze time."""
        return self._tw

    def expire(self, time=None):
        """Remove expired items and return them as a list of (key, value) pairs."""
        cdef list evicted = []
        try:
            if time is None:
                time = self._now()
            elif not self._objmode:
                time = self._to_double(time)
            self._expire_into(time, evicted)
        finally:
            self._notify(evicted)
        return list(evicted)


_cache_abc.MutableMapping.register(LRUCache)
_cache_abc.MutableMapping.register(TTLCache)


cdef _cache_traverseproc _cache_base_traverse = (<_cache_TypeObject*>_CacheCore).tp_traverse


cdef int _cache_traverse(PyObject* o, _cache_visitproc visit, void* arg) noexcept:
    cdef int r = _cache_base_traverse(o, visit, arg) if _cache_base_traverse != NULL else 0
    if r:
        return r
    return (<_CacheCore>o)._visit(visit, arg)


cdef int _cache_clear(PyObject* o) noexcept:
    # Breaks reference cycles through a cache's contents (the settings are kept).
    (<_CacheCore>o)._drop_all()
    return 0


for _cache_t in (_CacheCore, LRUCache, TTLCache):
    (<_cache_TypeObject*>_cache_t).tp_traverse = _cache_traverse
    (<_cache_TypeObject*>_cache_t).tp_clear = _cache_clear
del _cache_t
