# LRUCache and TTLCache: the compiled twin of prodfast._cache_py (the readable reference).
#
# Layout (per cache), modelled on CPython's compact dict:
#
#   _ix    _cache_index      the hash index: linear-probing int32 slots, -1 empty, else
#                            (hash tag << ibits) | entry number; the home slot comes from
#                            Fibonacci hashing of the hash (struct and kernels: _cache_kernels.pxi)
#   _ents  _cache_ent[_cap]  dense entries 0.._n-1: key, value, hash, links of the order list,
#                            expiry (double, TTLCache only)
#   _tl    _cache_link[_cap] TTLCache only: links of the expiry list
#   _heap  int32[_cap]       TLRUCache, built-in clock: min-heap of entries by expiry (_hpos: places)
#   _xh    _cache_xrec[..]   TLRUCache, user timer: heap of (expiry object, push number, entry)
#                            records, deleted lazily (_hpos: each entry's record)
#   _xexp  PyObject*[_cap]   TTLCache/TLRUCache with a non-real timer/ttl only: expiry objects
#   _sizes PyObject*[_cap]   caches with getsizeof only: each item's size
#
#   order list:  _order.head (least recent) <-> ... <-> _order.tail (most recent)
#   expiry list: _tlist.head (set first)    <-> ... <-> _tlist.tail (set last)
#   (one set of list kernels serves both: _cache_kernels.pxi)
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
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcmp, memset, memcpy

import collections.abc as _cache_abc
import copyreg as _cache_copyreg
import math as _cache_math
import numbers as _cache_numbers
import threading as _cache_threading
import random as _cache_random
import time as _cache_time
import types as _cache_types

# The twin's validators (one set of error texts), pop()'s default sentinel (one signature) and
# its pickle state tag and version (one state format)
import prodfast._cache_py as _cache_py

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

include "_cache_kernels.pxi"     # the entry, the hash index and their kernels


cdef struct _cache_xrec:
    # TLRUCache with object expiries: one record of the expiry heap, which deletes lazily (as
    # the twin's does): a removed item's record stays, dead, until it reaches the top
    PyObject* exp       # the item's expiry (a reference of its own)
    double seq          # push number: of two equal expiries the one pushed first comes first
    int32_t ent         # the entry it times, -1 once dead

cdef struct _cache_store:
    # A cache's contents detached from it, waiting to be released (see _detach)
    _cache_xrec* xh
    Py_ssize_t xhn
    _cache_ent* ents
    _cache_link* tl
    int32_t* heap
    int32_t* hpos
    int32_t* lfb
    _cache_bk* bks
    PyObject** xexp
    PyObject** sizes
    double* seqs
    Py_ssize_t n

DEF _CACHE_MAXENT = 0x7FFFFFF0

# Eviction policies. The entry list (prev/next) is the iteration order and, except for RR, the
# eviction order: its head is the next victim.
DEF _POL_LRU = 0        # LRUCache, TTLCache, TLRUCache: a hit or update moves the entry to the tail
DEF _POL_FIFO = 1       # FIFOCache: an update moves the entry to the tail, a hit does not
DEF _POL_INS = 2        # Cache: insertion order, nothing moves
DEF _POL_RR = 3         # RRCache: insertion order; choice() over the dense entries picks the victim
DEF _POL_LFU = 4        # LFUCache: sorted by use count (buckets), least recent first within one

cdef object _cache_monotonic = _cache_time.monotonic
_CACHE_STATE_TAG = _cache_py._STATE_TAG
_cache_repr_running = set()
_CACHE_STATE_VERSION = _cache_py._STATE_VERSION
cdef object _cache_MISSING = _cache_py._MISSING


cdef inline bint _cache_str_eq(PyObject* a, PyObject* b) noexcept:
    cdef Py_ssize_t n = _cache_ULEN(a)
    cdef unsigned int kind = _cache_UKIND(a)
    if n != _cache_ULEN(b) or kind != _cache_UKIND(b):
        return False
    return memcmp(_cache_UDATA(a), _cache_UDATA(b), <size_t>n * kind) == 0


cdef object _cache_check_size(object size, object maxsize):
    # getsizeof(value) must give a finite, non-negative real number no larger than maxsize; it is
    # kept as a plain int, float or Fraction (a subclass's arithmetic would be user code)
    if type(size) is int:
        if size > maxsize:
            raise ValueError("value too large")
        if size < 0:
            raise ValueError("value size must be non-negative")
        return size
    return _cache_py._check_size(size, maxsize)


cdef void _cache_release(_cache_store st) noexcept:
    # The references and arrays _detach() handed over: released only once the cache no longer
    # refers to them (a key's or value's __del__ may use the cache).
    cdef Py_ssize_t i
    for i in range(st.n):
        Py_XDECREF(st.ents[i].key)
        Py_XDECREF(st.ents[i].value)
        if st.xexp != NULL:
            Py_XDECREF(st.xexp[i])
        if st.sizes != NULL:
            Py_XDECREF(st.sizes[i])
    for i in range(st.xhn):
        Py_XDECREF(st.xh[i].exp)
    PyMem_Free(st.xh)
    PyMem_Free(st.ents)
    PyMem_Free(st.tl)
    PyMem_Free(st.heap)
    PyMem_Free(st.hpos)
    PyMem_Free(st.lfb)
    PyMem_Free(st.bks)
    PyMem_Free(st.xexp)
    PyMem_Free(st.sizes)
    PyMem_Free(st.seqs)


cdef object _cache_getrandbits = _cache_random._inst.getrandbits
# RRCache's default choice may be replayed with getrandbits() (see _rr_pick) when random.choice
# is the module's own and picks by Random._randbelow_with_getrandbits
cdef bint _cache_rr_replay = (
    getattr(_cache_random.choice, "__self__", None) is _cache_random._inst
    and type(_cache_random._inst)._randbelow is _cache_random.Random._randbelow_with_getrandbits
    and type(_cache_random._inst).choice is _cache_random.Random.choice
)

# getrandbits(k) for k <= 32 is one draw of CPython's Mersenne Twister, shifted right by 32 - k
# (Modules/_randommodule.c). The replay may make that draw on the generator's own state instead
# of calling getrandbits() (a Python call per eviction), when the state has the layout below: it
# is checked at import by drawing from two equal generators, one each way (_cache_mt_check). The
# draw runs no Python code, so under the GIL it is as atomic as the C method; builds without a
# GIL keep the call (the C method takes the object's lock there).
cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define prodfast_mt_direct 0
    #else
    #define prodfast_mt_direct 1
    #endif
    typedef struct { PyObject_HEAD int index; uint32_t state[624]; } prodfast_mt_object;
    static uint32_t prodfast_mt_draw(PyObject* o)
    {
        static const uint32_t mag01[2] = {0x0U, 0x9908b0dfU};
        prodfast_mt_object* r = (prodfast_mt_object*)o;
        uint32_t* mt = r->state;
        uint32_t y;
        int kk;
        if (r->index >= 624) {          /* the next 624 words at once, as genrand_uint32 does */
            for (kk = 0; kk < 624 - 397; kk++) {
                y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
                mt[kk] = mt[kk + 397] ^ (y >> 1) ^ mag01[y & 0x1U];
            }
            for (; kk < 623; kk++) {
                y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
                mt[kk] = mt[kk + (397 - 624)] ^ (y >> 1) ^ mag01[y & 0x1U];
            }
            y = (mt[623] & 0x80000000U) | (mt[0] & 0x7fffffffU);
            mt[623] = mt[396] ^ (y >> 1) ^ mag01[y & 0x1U];
            r->index = 0;
        }
        y = mt[r->index++];
        y ^= (y >> 11);
        y ^= (y << 7) & 0x9d2c5680U;
        y ^= (y << 15) & 0xefc60000U;
        y ^= (y >> 18);
        return y;
    }
    /* n.bit_length() */
    static inline int prodfast_bit_length(size_t n)
    {
    #if defined(__GNUC__) || defined(__clang__)
        return n ? (int)(8 * sizeof(unsigned long long)) - __builtin_clzll((unsigned long long)n) : 0;
    #else
        int k = 0;
        while ((n >> k) != 0)
            k++;
        return k;
    #endif
    }
    /* The draw `ahead` places after the next one (0: the next one) into *out, without making
       it; 0 when the words must be refilled before it */
    static int prodfast_mt_peek(PyObject* o, int ahead, uint32_t* out)
    {
        prodfast_mt_object* r = (prodfast_mt_object*)o;
        uint32_t y;
        if (r->index + ahead >= 624)
            return 0;
        y = r->state[r->index + ahead];
        y ^= (y >> 11);
        y ^= (y << 7) & 0x9d2c5680U;
        y ^= (y << 15) & 0xefc60000U;
        y ^= (y >> 18);
        *out = y;
        return 1;
    }
    """
    bint prodfast_mt_direct
    Py_ssize_t prodfast_mt_size "sizeof(prodfast_mt_object)"
    uint32_t prodfast_mt_draw(PyObject* o) noexcept
    int prodfast_mt_peek(PyObject* o, int ahead, uint32_t* out) noexcept
    int prodfast_bit_length(size_t n) noexcept


cdef bint _cache_mt_check():
    # True when drawing on the generator's state gives getrandbits()' results, state included
    import _random
    cdef object a, b
    cdef int i, k
    if not prodfast_mt_direct or not _cache_rr_replay:
        return False
    if not (type(_cache_random._inst).getrandbits is _random.Random.getrandbits
            and isinstance(_cache_random._inst, _random.Random)
            and _random.Random.__basicsize__ == prodfast_mt_size):
        return False
    a = _cache_random.Random(20261202)
    b = _cache_random.Random(20261202)
    for i in range(2000):       # more than three refills of the 624 words
        k = 1 + i % 31
        if (prodfast_mt_draw(<PyObject*>a) >> (32 - k)) != b.getrandbits(k):
            return False
    return a.getstate() == b.getstate()


cdef bint _cache_mt_ok = _cache_mt_check()
cdef PyObject* _cache_mt_inst = <PyObject*>_cache_random._inst


cdef inline Py_ssize_t _rr_peek(Py_ssize_t n, int k, int* ahead) noexcept:
    # The entry _rr_pick will take on its draws from `ahead` on (tried twice, as most picks end
    # by then), -1 if neither is taken or they lie past a refill; `ahead` moves past them
    cdef uint32_t y
    cdef Py_ssize_t r
    cdef int stop = ahead[0] + 2
    while ahead[0] < stop:
        if not prodfast_mt_peek(_cache_mt_inst, ahead[0], &y):
            return -1
        ahead[0] += 1
        r = y >> (32 - k)
        if r < n:
            return r
    return -1


cdef double _cache_tlru_double(object exp) except? -1.0:
    if isinstance(exp, bool) or not isinstance(exp, _cache_numbers.Real):
        raise TypeError(f"ttu must return a number with the default timer, got {exp!r}")
    return float(exp)


cdef int _cache_xbefore(object a, double aseq, object b, double bseq) except -1:
    # (a, aseq) < (b, bseq) as the twin's [expires, seq] lists compare: equal expiries by seq.
    # The caller holds a and b (user code may drop the records they came from).
    if _cache_RichCompareBool(<PyObject*>a, <PyObject*>b, Py_EQ):
        return aseq < bseq
    return _cache_RichCompareBool(<PyObject*>a, <PyObject*>b, Py_LT)


def _cache_xkey(rec):
    return (rec[0], rec[1])


def _cache_first(pair):
    return pair[0]


cdef class _cache_RRKeys:
    """The keys an RRCache's choice picks from: a read-only view of the live entries."""

    cdef _CacheCore _c

    @staticmethod
    cdef _cache_RRKeys _new(_CacheCore c):
        cdef _cache_RRKeys v = _cache_RRKeys.__new__(_cache_RRKeys)
        v._c = c
        return v

    # While a key is updated (c._keep), it is left out: the last key stands in its place.

    def __len__(self):
        return self._c._n - (self._c._keep >= 0)

    def __getitem__(self, i):
        cdef Py_ssize_t n = self._c._n - (self._c._keep >= 0), k
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(n))]
        k = i
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError("index out of range")
        if k == self._c._keep:
            k = self._c._n - 1
        return <object>self._c._ents[k].key


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
    cdef _cache_index _ix       # the hash index (_cache_kernels.pxi)
    cdef _cache_link* _tl
    cdef int32_t* _heap         # TLRUCache with real expiries: min-heap of entry numbers by expiry
    cdef int32_t* _hpos         # ... and each entry's position in it (or in _xh; -1: none yet)
    cdef _cache_xrec* _xh       # TLRUCache with object expiries: the expiry heap's records
    cdef Py_ssize_t _xhn, _xhcap, _xdead    # ... records held, room, dead ones among them
    cdef double _xhseq          # ... the next record's push number
    cdef size_t _xhver          # ... changes of the heap (a planned move is valid while unchanged)
    cdef _cache_lfu _lfu        # LFUCache: the use-count buckets (_cache_kernels.pxi)
    cdef int32_t _keep          # the entry being updated while room is made: never the victim
    cdef double* _seqs          # TTLCache, TLRUCache: insertion numbers (others keep them in .exp)
    cdef double _seq            # the next insertion number: iteration is in first-insertion order
    cdef PyObject** _xexp
    cdef PyObject** _sizes
    cdef Py_ssize_t _n
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _maxcap
    cdef _cache_list _order     # the order list: iteration order, and the eviction order but for RR
    cdef _cache_list _tlist     # TTLCache: the expiry list (links in _tl)
    cdef Py_ssize_t _slot
    cdef Py_ssize_t _rr_slot    # RRCache: where _rr_replace() last indexed entry _n - 1 (a hint)
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
    cdef bint _is_tlru, _use_heap, _size_override, _xheap
    cdef int _pol
    cdef object _choice
    cdef object _ttu
    cdef object _wlock
    cdef double _ttl_d
    cdef double _last_d
    cdef bint _has_last
    cdef object _last_o
    cdef object _ttl
    cdef _cache_Timer _tw
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        cdef int32_t* slots = _ix_alloc(_CACHE_MINSIZE)
        if slots == NULL:
            raise MemoryError()
        _ix_adopt(&self._ix, slots, _CACHE_MINSIZE)
        _ix_bits(&self._ix, 0x7FFFFFFF)
        self._ents = NULL
        self._tl = NULL
        self._heap = NULL
        self._hpos = NULL
        self._xh = NULL
        self._xhn = self._xhcap = self._xdead = 0
        self._xhseq = 0.0
        self._xhver = 0
        self._lfu.of = NULL
        self._lfu.bks = NULL
        self._lfu.free = -1
        self._keep = -1
        self._seqs = NULL
        self._seq = 0.0
        self._xexp = NULL
        self._sizes = NULL
        self._n = self._cap = 0
        self._order.head = self._order.tail = self._tlist.head = self._tlist.tail = -1
        self._maxsize_c = 0
        self._maxcap = 0
        self._maxsize = 0
        self._currsize_obj = 0
        self._getsizeof = None
        self._on_evict = None
        self._ttl = None
        self._ttu = None
        self._choice = None
        self._wlock = None
        self._tw = None
        cls = type(self)
        self._hook = getattr(cls, "popitem", None) is not _CacheCore.popitem
        self._size_override = getattr(cls, "getsizeof", None) is not _CacheCore.getsizeof
        # c[k] calls __missing__ on a miss only when a subclass overrides it (the base's raises
        # KeyError(key), which c[k] raises itself)
        self._has_missing = getattr(cls, "__missing__", None) is not _CacheCore.__missing__
        self._pol = _POL_LRU
        self._is_ttl = False
        self._is_tlru = False
        self._use_heap = False
        self._xheap = False
        self._objmode = False
        self._cclock = False
        self._ttl_d = 0.0
        self._last_d = 0.0
        self._has_last = False
        self._last_o = None
        self._fast_set = False

    def __dealloc__(self):
        _cache_release(self._detach())
        PyMem_Free(self._ix.slots)
        self._ix.slots = NULL

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
        for i in range(self._xhn):
            r = visit(self._xh[i].exp, arg)
            if r:
                return r
        return 0

    # ------------------------------------------------------------------ the one release routine

    @cython.final
    cdef _cache_store _detach(self) noexcept:
        # Empty the cache without allocating or running user code (the index table is wiped in
        # place, settings and counters stay) and hand the old contents to the caller, who passes
        # them to _cache_release() once nothing refers to them: clear(), tp_clear and dealloc.
        cdef _cache_store st
        st.ents = self._ents
        st.tl = self._tl
        st.heap = self._heap
        st.hpos = self._hpos
        st.lfb = self._lfu.of
        st.bks = self._lfu.bks
        st.xexp = self._xexp
        st.sizes = self._sizes
        st.seqs = self._seqs
        st.n = self._n
        st.xh = self._xh
        st.xhn = self._xhn
        self._xh = NULL
        self._xhn = self._xhcap = self._xdead = 0
        self._xhseq = 0.0
        self._xhver += 1
        _ix_wipe(&self._ix)
        self._ents = NULL
        self._tl = NULL
        self._heap = NULL
        self._hpos = NULL
        self._lfu.of = NULL
        self._lfu.bks = NULL
        self._lfu.free = -1
        self._seqs = NULL
        self._xexp = NULL
        self._sizes = NULL
        self._n = self._cap = 0
        self._order.head = self._order.tail = self._tlist.head = self._tlist.tail = -1
        self._keep = -1                 # an update in progress finds its entry gone
        self._currsize_obj = 0
        self._bump()
        self._mod += 1
        return st

    # ------------------------------------------------------------------ configuration

    @cython.final
    cdef int _configure(self, maxsize, getsizeof, on_evict) except -1:
        _cache_py._check_maxsize(maxsize)
        _cache_py._check_callable("getsizeof", getsizeof)
        _cache_py._check_callable("on_evict", on_evict)
        if self._n:
            raise RuntimeError(f"{type(self).__name__} is already initialized")
        _cache_release(self._detach())     # empty: frees the arrays, whose shapes depend on the settings
        self._maxsize = maxsize
        self._maxsize_c = PY_SSIZE_T_MAX if maxsize > PY_SSIZE_T_MAX else <Py_ssize_t>maxsize
        if getsizeof is None and self._size_override:
            getsizeof = self.getsizeof       # a subclass's getsizeof method, as in cachetools
        self._getsizeof = getsizeof
        self._on_evict = on_evict
        self._currsize_obj = 0
        if getsizeof is None:
            self._maxcap = _CACHE_MAXENT if self._maxsize_c > _CACHE_MAXENT else self._maxsize_c
        else:
            self._maxcap = _CACHE_MAXENT
        _ix_bits(&self._ix, self._maxcap)
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
    cdef void _update_fast(self) noexcept:
        # The inline __setitem__ path: no user code but __hash__/__eq__ (and ttu)
        self._fast_set = (not self._hook and self._getsizeof is None and self._on_evict is None
                          and not self._objmode
                          and (self._pol != _POL_RR
                               or (self._choice is _cache_random.choice and _cache_rr_replay)))

    # ------------------------------------------------------------------ the index: lookup

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
        # The index kernel proposes candidates; __eq__ (user code) runs here, between them.
        cdef size_t i = _ix_home(&self._ix, h)
        cdef int32_t t = _ix_tag(&self._ix, h)
        cdef PyObject* k = <PyObject*>key
        cdef int32_t ix
        cdef int r
        while True:
            ix = _ix_probe(&self._ix, self._ents, h, t, k, &i)
            if ix < 0 or self._ents[ix].key == k:
                self._slot = <Py_ssize_t>i
                return ix
            r = self._keys_equal(self._ents[ix].key, k)
            if r == 1:
                self._slot = <Py_ssize_t>i
                return ix
            if r == 2:      # a thread switch inside __eq__ let another thread change the table
                i = _ix_home(&self._ix, h)
                t = _ix_tag(&self._ix, h)
                continue
            i = (i + 1) & <size_t>self._ix.mask     # not equal: the table is as it was

    @cython.final
    cdef int _rebuild(self, Py_ssize_t need) except -1:
        # New index table for `need` entries (I1).
        cdef Py_ssize_t size = _ix_size_for(need)
        cdef int32_t* slots = _ix_alloc(size)
        if slots == NULL:
            raise MemoryError()
        PyMem_Free(self._ix.slots)
        _ix_adopt(&self._ix, slots, size)
        _ix_fill(&self._ix, self._ents, self._n)
        self._bump()
        return 0

    @cython.final
    cdef int _reserve(self) except -1:
        # Room for one more entry in the entry arrays and in the index table.
        cdef Py_ssize_t newcap, i
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
            p = _cache_grow(self._ents, self._cap * sizeof(_cache_ent), newcap * sizeof(_cache_ent))
            if p == NULL:
                raise MemoryError()
            self._ents = <_cache_ent*>p
            if self._is_ttl and not self._use_heap and not self._xheap:
                p = _cache_grow(self._tl, self._cap * sizeof(_cache_link), newcap * sizeof(_cache_link))
                if p == NULL:
                    raise MemoryError()
                self._tl = <_cache_link*>p
            if self._is_ttl:
                p = _cache_grow(self._seqs, self._cap * sizeof(double), newcap * sizeof(double))
                if p == NULL:
                    raise MemoryError()
                self._seqs = <double*>p
            if self._objmode:
                p = _cache_grow(self._xexp, self._cap * sizeof(PyObject*), newcap * sizeof(PyObject*))
                if p == NULL:
                    raise MemoryError()
                self._xexp = <PyObject**>p
            if self._use_heap:
                p = _cache_grow(self._heap, self._cap * sizeof(int32_t), newcap * sizeof(int32_t))
                if p == NULL:
                    raise MemoryError()
                self._heap = <int32_t*>p
            if self._use_heap or self._xheap:
                p = _cache_grow(self._hpos, self._cap * sizeof(int32_t), newcap * sizeof(int32_t))
                if p == NULL:
                    raise MemoryError()
                self._hpos = <int32_t*>p
            if self._pol == _POL_LFU:
                p = _cache_grow(self._lfu.of, self._cap * sizeof(int32_t), newcap * sizeof(int32_t))
                if p == NULL:
                    raise MemoryError()
                self._lfu.of = <int32_t*>p
                p = _cache_grow(self._lfu.bks, self._cap * sizeof(_cache_bk), newcap * sizeof(_cache_bk))
                if p == NULL:
                    raise MemoryError()
                self._lfu.bks = <_cache_bk*>p
            if self._getsizeof is not None:
                p = _cache_grow(self._sizes, self._cap * sizeof(PyObject*), newcap * sizeof(PyObject*))
                if p == NULL:
                    raise MemoryError()
                self._sizes = <PyObject**>p
            if self._pol == _POL_LFU:
                _lfu_grown(&self._lfu, self._cap, newcap)
            self._cap = newcap
        if not _ix_has_room(&self._ix, self._n + 1):
            self._rebuild(self._n + 1)
        return 0

    # ------------------------------------------------------------------ the two lists
    #
    # The kernels of _cache_kernels.pxi over the order list (links in the entries) and the TTL
    # expiry list (links in _tl).

    @cython.final
    cdef inline void _lru_unlink(self, int32_t ix) noexcept:
        _ll_unlink(&self._order, <char*>&self._ents[0].lk, sizeof(_cache_ent), ix)

    @cython.final
    cdef inline void _lru_append(self, int32_t ix) noexcept:
        _ll_append(&self._order, <char*>&self._ents[0].lk, sizeof(_cache_ent), ix)

    @cython.final
    cdef inline void _touch(self, int32_t ix) noexcept:
        # A use: ix becomes the most recent (a reordering, which iterators notice)
        if _ll_move_to_tail(&self._order, <char*>&self._ents[0].lk, sizeof(_cache_ent), ix):
            self._mod += 1

    @cython.final
    cdef inline void _link_after(self, int32_t ix, int32_t after) noexcept:
        # Order list: put entry ix right after entry `after` (-1: at the head).
        _ll_link_after(&self._order, <char*>&self._ents[0].lk, sizeof(_cache_ent), ix, after)

    @cython.final
    cdef inline void _ttl_unlink(self, int32_t ix) noexcept:
        _ll_unlink(&self._tlist, <char*>self._tl, sizeof(_cache_link), ix)

    @cython.final
    cdef inline void _ttl_append(self, int32_t ix) noexcept:
        _ll_append(&self._tlist, <char*>self._tl, sizeof(_cache_link), ix)

    @cython.final
    cdef inline void _ttl_link_after(self, int32_t ix, int32_t after) noexcept:
        # Expiry list: put entry ix right after entry `after` (-1: at the head).
        _ll_link_after(&self._tlist, <char*>self._tl, sizeof(_cache_link), ix, after)

    # ------------------------------------------------------------------ LFU and TLRU kernels
    #
    # The use-count buckets and the double expiry heap are kernels of _cache_kernels.pxi (with
    # their invariants); these bind them to this cache's arrays. LFU's are not inline: called
    # from the big __setitem__, they would keep the compiler from inlining its lookup there.

    @cython.final
    cdef inline int32_t _bk_new(self, int64_t count, int32_t ix) noexcept:
        return _lfu_new(&self._lfu, count, ix)

    @cython.final
    cdef void _bk_leave(self, int32_t ix) noexcept:
        # Entry ix leaves its bucket (call before unlinking it from the order list).
        _lfu_leave(&self._lfu, self._ents, ix)

    @cython.final
    cdef void _lfu_add(self, int32_t ix) noexcept:
        # A new entry: use count 1, the most recent of the count-1 bucket.
        _lfu_add(&self._lfu, &self._order, self._ents, ix)

    @cython.final
    cdef void _lfu_bump(self, int32_t ix) noexcept:
        # One more use of entry ix (a reordering, which iterators notice).
        self._mod += 1
        _lfu_bump(&self._lfu, &self._order, self._ents, ix)

    @cython.final
    cdef inline void _heap_put(self, Py_ssize_t pos, int32_t ix) noexcept:
        _hp_put(self._heap, self._hpos, pos, ix)

    @cython.final
    cdef inline void _heap_fix(self, int32_t ix) noexcept:
        # Entry ix's expiry changed: restore the heap order around it.
        _hp_fix(self._heap, self._hpos, self._ents, ix, self._n)

    @cython.final
    cdef inline void _heap_remove(self, int32_t ix) noexcept:
        # Take entry ix out of the heap (before _n drops): the last element fills its place.
        _hp_remove(self._heap, self._hpos, self._ents, ix, self._n)

    # ------------------------------------------------------------------ the policy layer
    #
    # What each policy does, over the kernels above: a hit (_use), an update (_on_update) and an
    # insert (_pol_link, or _pol_relink when a full cache reuses its victim's entry) dispatch on
    # _pol here, once each. The victim is the order list's head but for RR: _take_victim, and
    # __setitem__'s full-cache branch, which reuses the head entry or calls _rr_replace (RR's
    # fast eviction). Removal (_remove) keeps LFU's buckets with the order list.
    #
    #   policy  class(es)                     hit           update         insert     victim
    #   LRU     LRUCache, TTLCache, TLRUCache  to the tail   to the tail    at tail    head
    #   FIFO    FIFOCache                      -             to the tail    at tail    head
    #   INS     Cache                          -             -              at tail    head
    #   RR      RRCache                        -             -              at tail    choice()
    #   LFU     LFUCache                       count a use   count a use    count 1    head
    #
    # TTLCache and TLRUCache add an expiry order on top (_place/_set_exp): TTLCache's sorted
    # expiry list (_tlist), TLRUCache's double heap (_heap, _hpos) or object heap (_xh).

    @cython.final
    cdef inline void _use(self, int32_t ix) noexcept:
        # A use of the entry by a read: LRU moves it to the end, LFU counts it.
        if self._pol == _POL_LRU:
            self._touch(ix)
        elif self._pol == _POL_LFU:
            self._lfu_bump(ix)

    @cython.final
    cdef inline void _on_hit(self, int32_t ix) noexcept:
        # A successful c[k] or c.get(k).
        self._use(ix)
        self._hits += 1

    @cython.final
    cdef inline void _on_update(self, int32_t ix) noexcept:
        # c[k] = v on a present key: LRU and FIFO move it to the end, LFU counts a use.
        if self._pol == _POL_LRU or self._pol == _POL_FIFO:
            self._touch(ix)
        elif self._pol == _POL_LFU:
            self._lfu_bump(ix)
        self._mod += 1

    @cython.final
    cdef inline void _pol_link(self, int32_t ix) noexcept:
        # A new entry ix (not linked) joins the order list where its policy puts new items.
        if self._pol == _POL_LFU:
            self._lfu_add(ix)
        else:
            self._lru_append(ix)

    @cython.final
    cdef inline void _pol_relink(self, int32_t ix) noexcept:
        # Entry ix, the victim at the head, now holds a new item: it goes where new items go.
        if self._pol == _POL_LFU:
            self._bk_leave(ix)
            self._lru_unlink(ix)
            self._lfu_add(ix)
        else:
            self._touch(ix)

    # ------------------------------------------------------------------ TLRU: object expiry heap
    #
    # With a user timer, TLRUCache's expiries are Python objects: comparing two is user code, so
    # no comparison may run while the heap is being changed. Each change is planned first, by
    # comparisons alone (the place a pushed record takes, the path the last record sinks along
    # when the top goes), and checked against _xhver (and _ver) after every comparison; the moves
    # then run without any. A removed item's record is only marked dead (no comparison); dead
    # records leave at the top, or all at once when they outnumber the live ones (_xh_compact
    # heapifies a private copy, swapped in if nothing changed meanwhile). Records are ordered by
    # (exp, seq), as the twin's [expires, seq, node] lists: set, expire and len are O(log n).

    @cython.final
    cdef inline void _xh_bump(self) noexcept:
        self._xhver += 1
        self._ver_tid = PyThread_get_thread_ident()

    @cython.final
    cdef inline void _xh_kill(self, int32_t ix) noexcept:
        # Entry ix leaves: its record (if it has one yet) stays in place, dead
        cdef int32_t p = self._hpos[ix]
        if p >= 0:
            self._xh[p].ent = -1
            self._hpos[ix] = -1
            self._xdead += 1

    @cython.final
    cdef inline void _xh_set(self, Py_ssize_t pos, _cache_xrec rec) noexcept:
        self._xh[pos] = rec
        if rec.ent >= 0:
            self._hpos[rec.ent] = <int32_t>pos

    @cython.final
    cdef int _xh_changed(self, size_t hv, size_t v) except -1:
        # A comparison (user code) changed the heap or the table: this thread's own change is an
        # error; another thread's (a reader never holds the writer lock) is 1: start again.
        if self._xhver == hv and self._ver == v:
            return 0
        if self._ver_tid == PyThread_get_thread_ident():
            raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        return 1

    @cython.final
    cdef int _xh_reserve(self) except -1:
        # Room for one more record (no user code, no move: planned places stay valid)
        cdef Py_ssize_t cap
        cdef void* p
        if self._xhn < self._xhcap:
            return 0
        cap = self._xhcap * 2 if self._xhcap >= 8 else 8
        p = PyMem_Realloc(self._xh, cap * sizeof(_cache_xrec))
        if p == NULL:
            raise MemoryError()
        self._xh = <_cache_xrec*>p
        self._xhcap = cap
        return 0

    @cython.final
    cdef Py_ssize_t _xh_plan_push(self, object exp) except -1:
        # Where a record for `exp` pushed now goes (sifting up from the end): comparisons only.
        cdef Py_ssize_t pos = self._xhn, parent
        cdef size_t hv = self._xhver, v = self._ver
        cdef double seq = self._xhseq
        cdef object other
        cdef int r
        while pos > 0:
            parent = (pos - 1) >> 1
            other = <object>self._xh[parent].exp
            r = _cache_xbefore(exp, seq, other, self._xh[parent].seq)
            if self._xhver != hv or self._ver != v:
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
            if not r:
                break
            pos = parent
        return pos

    @cython.final
    cdef void _xh_push(self, int32_t ix, object exp, Py_ssize_t pos) noexcept:
        # Entry ix's record goes to `pos` (from _xh_plan_push, heap unchanged since): the records
        # from there down to the end each move one level down. No user code.
        cdef Py_ssize_t hole = self._xhn, parent
        cdef _cache_xrec rec
        while hole > pos:
            parent = (hole - 1) >> 1
            self._xh_set(hole, self._xh[parent])
            hole = parent
        Py_INCREF(exp)
        rec.exp = <PyObject*>exp
        rec.seq = self._xhseq
        rec.ent = ix
        self._xhseq += 1.0
        self._xh_set(pos, rec)
        self._xhn += 1
        self._xh_bump()

    @cython.final
    cdef int _xh_pop_dead(self) except -1:
        # Drop the dead record at the top: the last record sinks from the top along the path the
        # comparisons choose (found first), then the records on it move up. The dropped expiry
        # is released last.
        cdef Py_ssize_t size = self._xhn - 1, pos = 0, c, q, d, p
        cdef size_t hv = self._xhver, v = self._ver
        cdef PyObject* dead = self._xh[0].exp
        cdef object last = <object>self._xh[size].exp
        cdef double lseq = self._xh[size].seq
        cdef object a, b
        cdef int r
        while True:
            c = 2 * pos + 1
            if c >= size:
                break
            if c + 1 < size:
                a = <object>self._xh[c + 1].exp
                b = <object>self._xh[c].exp
                r = _cache_xbefore(a, self._xh[c + 1].seq, b, self._xh[c].seq)
                if self._xhver != hv or self._ver != v:
                    raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
                if r:
                    c += 1
            a = <object>self._xh[c].exp
            r = _cache_xbefore(a, self._xh[c].seq, last, lseq)
            if self._xhver != hv or self._ver != v:
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
            if not r:
                break
            pos = c
        if size > 0:
            q = pos + 1         # 1-based: the path from the top to pos spells q's bits
            d = prodfast_bit_length(<size_t>q) - 1
            while d > 0:
                p = (q >> d) - 1
                self._xh_set(p, self._xh[(q >> (d - 1)) - 1])
                d -= 1
            self._xh_set(pos, self._xh[size])
        self._xhn = size
        self._xdead -= 1
        self._xh_bump()
        Py_DECREF(<object>dead)
        return 0

    @cython.final
    cdef int _xh_compact(self) except -1:
        # The live records as a new heap (heapified with comparisons, on an array nobody else
        # sees), taking the old one's place if nothing changed meanwhile.
        cdef Py_ssize_t live = self._xhn - self._xdead, i, j = 0, top, pos, c
        cdef size_t hv = self._xhver, v = self._ver
        cdef _cache_xrec* new = <_cache_xrec*>PyMem_Malloc((live if live > 0 else 1) * sizeof(_cache_xrec))
        cdef _cache_xrec* old
        cdef _cache_xrec tmp
        cdef Py_ssize_t oldn
        cdef int r
        if new == NULL:
            raise MemoryError()
        for i in range(self._xhn):
            if self._xh[i].ent >= 0:
                new[j] = self._xh[i]
                Py_INCREF(<object>new[j].exp)
                j += 1
        try:
            top = live // 2 - 1
            while top >= 0:         # heapify: sift each inner node down
                pos = top
                while True:
                    c = 2 * pos + 1
                    if c >= live:
                        break
                    if c + 1 < live and _cache_xbefore(<object>new[c + 1].exp, new[c + 1].seq,
                                                       <object>new[c].exp, new[c].seq):
                        c += 1
                    if not _cache_xbefore(<object>new[c].exp, new[c].seq,
                                          <object>new[pos].exp, new[pos].seq):
                        break
                    tmp = new[c]
                    new[c] = new[pos]
                    new[pos] = tmp
                    pos = c
                top -= 1
            if self._xhver != hv or self._ver != v:
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        except BaseException:
            for i in range(live):
                Py_DECREF(<object>new[i].exp)
            PyMem_Free(new)
            raise
        old = self._xh
        oldn = self._xhn
        self._xh = new
        self._xhn = self._xhcap = live
        self._xdead = 0
        for i in range(live):
            self._hpos[new[i].ent] = <int32_t>i
        self._xh_bump()
        for i in range(oldn):           # the structure is consistent: release the old records
            Py_DECREF(<object>old[i].exp)
        PyMem_Free(old)
        return 0

    @cython.final
    cdef Py_ssize_t _xh_prepare(self, object exp) except -1:
        # Before a set's structural change: compact if due, room for one record, and its place
        if self._xdead > 8 and self._xdead * 2 > self._xhn:
            self._xh_compact()
        self._xh_reserve()
        return self._xh_plan_push(exp)

    @cython.final
    cdef Py_ssize_t _xh_expired(self, Py_ssize_t pos, object now, list sizes, size_t hv,
                                size_t v) except -2:
        # Live records of the subtree at pos expired at `now` (children of a record alive at
        # now expire later still), their sizes collected; -1: another thread changed the heap.
        cdef object x
        cdef int32_t ent
        cdef Py_ssize_t k = 0, a
        cdef int alive
        if pos >= self._xhn:
            return 0
        x = <object>self._xh[pos].exp
        alive = _cache_RichCompareBool(<PyObject*>now, <PyObject*>x, Py_LT)
        if self._xh_changed(hv, v):
            return -1
        if alive:
            return 0
        ent = self._xh[pos].ent
        if ent >= 0:
            k = 1
            if sizes is not None:
                sizes.append(<object>self._sizes[ent])
        a = self._xh_expired(2 * pos + 1, now, sizes, hv, v)
        if a < 0:
            return -1
        k += a
        a = self._xh_expired(2 * pos + 2, now, sizes, hv, v)
        if a < 0:
            return -1
        return k + a

    @cython.final
    cdef int32_t _insert(self, object key, object value, Py_hash_t h) except -1:
        # Add a new entry (key known absent; _reserve() already called) at the end of its
        # policy's order. Returns its number. A TTL/TLRU caller then calls _set_exp() at once.
        cdef int32_t ix = <int32_t>self._n
        cdef _cache_ent* e = &self._ents[ix]
        _ix_insert(&self._ix, h, ix)
        Py_INCREF(key)
        Py_INCREF(value)
        e.key = <PyObject*>key
        e.value = <PyObject*>value
        e.hash = h
        if self._is_ttl:
            e.exp = _cache_math.inf
            self._seqs[ix] = self._seq
        else:
            e.exp = self._seq
        self._seq += 1.0
        self._n += 1
        self._pol_link(ix)
        if self._use_heap:
            self._heap_put(self._n - 1, ix)      # expiry inf: the heap's last place is right
        elif self._xheap:
            self._hpos[ix] = -1                  # its record comes with _set_exp()
        elif self._is_ttl:
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
        _ix_clear_slot(&self._ix, self._ents, slot)
        if ix == self._keep:
            self._keep = -1
        elif last == self._keep:
            self._keep = ix
        if self._pol == _POL_LFU:
            self._bk_leave(ix)
        self._lru_unlink(ix)
        if self._use_heap:
            self._heap_remove(ix)
        elif self._xheap:
            self._xh_kill(ix)
        elif self._is_ttl:
            self._ttl_unlink(ix)
        if ix != last:
            # entry `last` becomes entry ix: every reference to it is renumbered
            _ix_renumber(&self._ix, _ix_slot_of(&self._ix, self._ents, last), ix)
            self._ents[ix] = self._ents[last]
            _ll_renumbered(&self._order, <char*>&self._ents[0].lk, sizeof(_cache_ent),
                           &self._ents[ix].lk, ix)
            if self._use_heap:
                self._heap_put(self._hpos[last], ix)
            elif self._xheap:
                self._hpos[ix] = self._hpos[last]
                if self._hpos[ix] >= 0:
                    self._xh[self._hpos[ix]].ent = ix
            elif self._is_ttl:
                self._tl[ix] = self._tl[last]
                _ll_renumbered(&self._tlist, <char*>self._tl, sizeof(_cache_link), &self._tl[ix], ix)
            if self._pol == _POL_LFU:
                _lfu_renumbered(&self._lfu, last, ix)
            if self._xexp != NULL:
                self._xexp[ix] = self._xexp[last]
            if self._sizes != NULL:
                self._sizes[ix] = self._sizes[last]
            if self._seqs != NULL:
                self._seqs[ix] = self._seqs[last]
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
        self._remove(ix, slot)
        # the cache's own references: the tuple holds its own
        Py_DECREF(<object>k)
        Py_DECREF(<object>v)
        if sz != NULL:
            # after the structural change: subtracting may be user code (and re-enter)
            self._currsize_add(<object>sz, True)
        Py_XDECREF(x)
        Py_XDECREF(sz)
        return pair

    @cython.final
    cdef int _currsize_add(self, object size, bint subtract) except -1:
        # currsize +/- size, where the arithmetic is user code that may change currsize itself
        # (re-entering the cache): retried until no change happened meanwhile.
        cdef object old, new
        while True:
            old = self._currsize_obj
            new = old - size if subtract else old + size
            if self._currsize_obj is old:
                self._currsize_obj = new
                return 0

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
            d = _clock_now()
        else:
            t = self._tw._timer()
            d = _cache_FloatAsDouble(t) if _cache_FloatExact(t) else self._to_double(t)
        if d - d != 0.0:        # NaN or an infinity: no place in the expiry order
            _cache_py._check_time(t)
        if self._has_last and d < self._last_d:
            return self._last_d
        self._last_d = d
        self._has_last = True
        return d

    @cython.final
    cdef inline bint _fresh(self, Py_ssize_t ix) noexcept:
        # Built-in clock, read path: alive by time.monotonic() (see _clock_before).
        return _clock_before(self._ents[ix].exp)

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
        _cache_py._check_time(t)
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
    cdef int _alive_o(self, int32_t ix, object now) except -1:
        # Object expiries: 1 if entry ix has not expired at `now` (user code: the caller checks
        # _ver afterwards).
        cdef object x = <object>self._xexp[ix]
        return 1 if now < x else 0

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
    cdef Py_ssize_t _heap_expired(self, Py_ssize_t pos, double now, list sizes) except -1:
        # Count the expired entries of the heap below `pos` (their subtrees are the only ones to
        # visit), collecting their sizes when there are any.
        cdef int32_t ix
        if pos >= self._n:
            return 0
        ix = self._heap[pos]
        if now < self._ents[ix].exp:
            return 0
        if sizes is not None:
            sizes.append(<object>self._sizes[ix])
        return (1 + self._heap_expired(2 * pos + 1, now, sizes)
                + self._heap_expired(2 * pos + 2, now, sizes))

    @cython.final
    cdef tuple _expired_prefix(self, object now):
        # (count, total size) of the expired items, which are still held: a prefix of the expiry
        # list, or the top of the heap. The sizes are collected first and added up afterwards, as
        # adding them may be user code.
        cdef Py_ssize_t k = 0
        cdef int32_t ix = self._tlist.head
        cdef double d
        cdef list sizes = [] if self._sizes != NULL else None
        cdef size_t ver
        cdef int r
        if self._use_heap:
            k = self._heap_expired(0, now, sizes)
        elif self._xheap:
            while True:
                k = self._xh_expired(0, now, sizes, self._xhver, self._ver)
                if k >= 0:
                    break
                if sizes is not None:
                    del sizes[:]
        elif not self._objmode:
            d = now
            while ix >= 0 and not (d < self._ents[ix].exp):
                k += 1
                if sizes is not None:
                    sizes.append(<object>self._sizes[ix])
                ix = self._tl[ix].next
        else:
            # object expiries: comparing is user code; a change by another thread meanwhile
            # restarts the walk, one by this thread is an error
            ver = self._ver
            while ix >= 0:
                r = self._alive_o(ix, now)
                if self._ver != ver:
                    if self._ver_tid == PyThread_get_thread_ident():
                        raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
                    ver = self._ver
                    ix = self._tlist.head
                    k = 0
                    if sizes is not None:
                        del sizes[:]
                    continue
                if r:
                    break
                k += 1
                if sizes is not None:
                    sizes.append(<object>self._sizes[ix])
                ix = self._tl[ix].next
        if sizes is None:
            return k, k
        total = 0
        for size in sizes:
            total = total + size
        return k, total

    @cython.final
    cdef int _expire_into(self, object now, list evicted) except -1:
        # Remove every expired item (a prefix of the expiry list, or the top of the heap) into
        # `evicted`.
        cdef int32_t ix
        cdef double d
        cdef size_t ver, hv
        cdef object x
        cdef int alive
        if self._use_heap:
            d = now
            while self._n and not (d < self._ents[self._heap[0]].exp):
                ix = self._heap[0]
                evicted.append(self._take(ix, _ix_slot_of(&self._ix, self._ents, ix)))
                self._expirations += 1
            return 0
        if self._xheap:
            while self._xhn:
                if self._xh[0].ent < 0:
                    self._xh_pop_dead()
                    continue
                ver = self._ver
                hv = self._xhver
                x = <object>self._xh[0].exp
                alive = _cache_RichCompareBool(<PyObject*>now, <PyObject*>x, Py_LT)
                if self._ver != ver or self._xhver != hv:
                    raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
                if alive:
                    break
                ix = self._xh[0].ent
                evicted.append(self._take(ix, _ix_slot_of(&self._ix, self._ents, ix)))
                self._expirations += 1
            return 0
        while self._tlist.head >= 0:
            ix = self._tlist.head
            if self._alive(ix, now):
                break
            evicted.append(self._take(ix, _ix_slot_of(&self._ix, self._ents, ix)))
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
    cdef inline void _ttl_place(self, int32_t ix, double exp) noexcept:
        # Real expiries on a list: entry ix gets `exp` and its sorted place, looked for from the
        # tail (O(1) unless sets of other threads, whose time was read later, got in first).
        cdef int32_t after
        self._ents[ix].exp = exp
        if ix == self._tlist.tail and (self._tl[ix].prev < 0 or self._ents[self._tl[ix].prev].exp <= exp):
            return
        self._ttl_unlink(ix)
        after = self._tlist.tail
        while after >= 0 and self._ents[after].exp > exp:
            after = self._tl[after].prev
        self._ttl_link_after(ix, after)

    @cython.final
    cdef int _set_exp(self, int32_t ix, object exp, Py_ssize_t anchor) except -1:
        # Store the expiry of entry ix (just inserted or updated) and put it in its place in
        # expiry order: the heap, the sorted list, or (object expiries of a TLRUCache) at heap
        # position `anchor`, which _xh_prepare() found before the structural change began.
        cdef PyObject* old
        if not self._objmode:
            if self._use_heap:
                self._ents[ix].exp = <double>exp
                self._heap_fix(ix)
            else:
                self._ttl_place(ix, <double>exp)
            return 0
        old = self._xexp[ix]
        Py_INCREF(exp)
        self._xexp[ix] = <PyObject*>exp
        if self._xheap:
            self._xh_kill(ix)       # an update: the old record dies, a new one is pushed
            self._xh_push(ix, exp, anchor)
        else:
            self._ttl_unlink(ix)
            self._ttl_link_after(ix, self._tlist.tail)
        Py_XDECREF(old)         # a number: no user code, and the structure is consistent again
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

    @cython.final
    cdef inline Py_ssize_t _lookup(self, object key) except -2:
        # The one lookup of __getitem__, get and __contains__: the entry number of key when it is
        # present and not expired, else -1. Changes nothing.
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix
        cdef double now
        if not self._is_ttl:
            return self._find(key, h)
        if self._cclock and not self._tw._nesting:
            ix = self._find(key, h)
            return ix if ix < 0 or self._fresh(ix) else -1
        if not self._objmode:
            now = self._now_d()
            ix = self._find(key, h)
            return ix if ix < 0 or now < self._ents[ix].exp else -1
        return self._lookup_o(key, h, self._now_o())

    @cython.final
    cdef Py_ssize_t _lookup_o(self, object key, Py_hash_t h, object now) except -2:
        # Object expiries: the comparison is user code; another thread may change the table
        # meanwhile (look again), this one may not (RuntimeError).
        cdef Py_ssize_t ix
        cdef size_t ver
        cdef int r
        while True:
            ix = self._find(key, h)
            if ix < 0:
                return -1
            ver = self._ver
            r = self._alive_o(<int32_t>ix, now)
            if self._ver == ver:
                return ix if r else -1
            if self._ver_tid == PyThread_get_thread_ident():
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")

    def __getitem__(self, key):
        cdef Py_ssize_t ix = self._lookup(key)
        if ix >= 0:
            self._on_hit(<int32_t>ix)
            return <object>self._ents[ix].value
        self._misses += 1
        if self._has_missing:
            return self.__missing__(key)
        raise KeyError(key)

    def __missing__(self, key):
        """Called by ``c[key]`` on a miss: raises KeyError(key) (a subclass may return a value)."""
        raise KeyError(key)

    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def get(self, key, default=None):
        """Return the value for key (counting a use of it) or default."""
        cdef Py_ssize_t ix = self._lookup(key)
        if ix >= 0:
            self._on_hit(<int32_t>ix)
            return <object>self._ents[ix].value
        self._misses += 1
        return default

    def __contains__(self, key):
        return self._lookup(key) >= 0

    def peek(self, key, default=None):
        """Return the value for key, or default, without counting a use of it."""
        cdef Py_ssize_t ix = self._lookup(key)
        if ix < 0:
            return default
        return <object>self._ents[ix].value

    def __len__(self):
        if not self._is_ttl or self._n == 0:
            return self._n
        return self._n - self._expired_prefix(self._now())[0]

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
        cdef tuple victim = None        # released when this call returns, after all the surgery
        cdef size_t hole
        if not self._fast_set:
            self._set_slow(key, value)
            return
        # Fast path: no getsizeof, on_evict or popitem() override, real expiries, RRCache with
        # random.choice; the only user code is __hash__, __eq__ and TLRUCache's ttu, which runs
        # before the lookup.
        if self._n >= self._maxsize_c and self._order.head >= 0:
            # a new key will take the next victim's entry: start loading it now
            if self._pol != _POL_RR:
                _cache_prefetch(&self._ents[self._order.head])
                if self._tl != NULL:
                    _cache_prefetch(&self._tl[self._order.head])
            elif _cache_mt_ok:
                self._rr_prefetch()
        h = hash(key)
        if self._is_ttl:
            now = self._now_d()
            if self._is_tlru:
                exp = self._ttu_d(key, value, now)
            else:
                exp = now + self._ttl_d
        if self._maxsize_c < 1:
            raise ValueError("value too large")
        if self._is_ttl and self._n and not (now < self._ents[self._next_expiry()].exp):
            expired = []
            self._expire_into(now, expired)
        if self._is_tlru and not (now < exp):
            # cachetools: an item that would be expired already is not stored (and replaces
            # nothing)
            ix = self._find(key, h)
            if ix >= 0:
                victim = self._take(<int32_t>ix, self._slot)
            return
        if self._n >= self._maxsize_c and self._order.head >= 0 and self._pol != _POL_RR:
            # ... and the neighbours its unlinking will write to
            v = self._ents[self._order.head].lk.next
            if v >= 0:
                _cache_prefetch(&self._ents[v])
            if self._tl != NULL:
                v = self._tl[self._order.head].next
                if v >= 0:
                    _cache_prefetch(&self._tl[v])
                v = self._tl[self._order.head].prev
                if v >= 0:
                    _cache_prefetch(&self._tl[v])
        ix = self._find(key, h)
        if ix >= 0:
            e = &self._ents[ix]
            oldv = e.value
            Py_INCREF(value)
            e.value = <PyObject*>value
            self._on_update(<int32_t>ix)
            if self._is_ttl:
                self._place(<int32_t>ix, exp)
            Py_DECREF(<object>oldv)
            return
        if self._n >= self._maxsize_c:
            if self._pol == _POL_RR:
                self._rr_replace(key, value, h)
                return
            else:
                # the victim's entry takes the new item (no hole to fill)
                v = self._order.head
                hole = _ix_clear_slot(&self._ix, self._ents,
                                      _ix_slot_of(&self._ix, self._ents, v))
                e = &self._ents[v]
                oldk = e.key
                oldv = e.value
                Py_INCREF(key)
                Py_INCREF(value)
                e.key = <PyObject*>key
                e.value = <PyObject*>value
                e.hash = h
                self._pol_relink(v)
                _ix_insert_run(&self._ix, h, <size_t>self._slot, hole, v)    # _find's slot
                if self._is_ttl:
                    self._seqs[v] = self._seq
                    self._place(v, exp)
                else:
                    e.exp = self._seq
                self._seq += 1.0
                self._bump()
                self._mod += 1
                self._evictions += 1
                Py_DECREF(<object>oldk)
                Py_DECREF(<object>oldv)
                return
        self._reserve()
        ix = self._insert(key, value, h)
        if self._is_ttl:
            self._place(<int32_t>ix, exp)

    @cython.final
    cdef inline int32_t _next_expiry(self) noexcept:
        # The entry that expires first (cache not empty; real expiries).
        return self._heap[0] if self._use_heap else self._tlist.head

    @cython.final
    cdef inline void _place(self, int32_t ix, double exp) noexcept:
        # Real expiries: entry ix expires at `exp`; its place in the heap or the sorted list.
        if self._use_heap:
            self._ents[ix].exp = exp
            self._heap_fix(ix)
        else:
            self._ttl_place(ix, exp)

    @cython.final
    cdef double _ttu_d(self, object key, object value, double now) except? -1.0:
        # TLRUCache with the built-in clock: ttu(key, value, now) as a double.
        cdef object exp = self._ttu(key, value, now)
        cdef double d
        if _cache_FloatExact(exp):
            d = _cache_FloatAsDouble(exp)
        else:
            d = _cache_tlru_double(exp)
        if d != d:
            raise ValueError(f"ttu must not return NaN, got {exp!r}")
        return d

    @cython.final
    cdef Py_ssize_t _rr_pick(self) except -1:
        # random.choice(keys) without the sequence: the same getrandbits() calls as
        # Random._randbelow, so the victim is the one random.choice would pick.
        cdef Py_ssize_t n = self._n, r
        cdef int k = prodfast_bit_length(<size_t>n)
        if _cache_mt_ok:            # k <= 31: one draw per try, as getrandbits(k) makes
            r = prodfast_mt_draw(_cache_mt_inst) >> (32 - k)
            while r >= n:
                r = prodfast_mt_draw(_cache_mt_inst) >> (32 - k)
            return r
        r = _cache_getrandbits(k)
        while r >= n:
            r = _cache_getrandbits(k)
        return r

    @cython.final
    cdef inline void _rr_prefetch(self) noexcept:
        # Evictions are known before they are made: _rr_pick's next draws can be read off the
        # generator (peeked, not drawn). The previous call fetched this eviction's victim; now
        # fetch what its removal touches, and the next eviction's victim for the next call.
        cdef Py_ssize_t n = self._n, r, after
        cdef int k = prodfast_bit_length(<size_t>n)
        cdef int ahead = 0
        cdef _cache_ent* e
        r = _rr_peek(n, k, &ahead)
        if r < 0:
            return
        e = &self._ents[r]
        _cache_prefetch(e)
        after = _rr_peek(n, k, &ahead)
        if after >= 0:
            _cache_prefetch(&self._ents[after])
        _cache_prefetch(e.key)
        _cache_prefetch(e.value)
        if e.lk.prev >= 0:
            _cache_prefetch(&self._ents[e.lk.prev])
        if e.lk.next >= 0:
            _cache_prefetch(&self._ents[e.lk.next])
        _cache_prefetch(&self._ix.slots[_ix_home(&self._ix, e.hash)])

    @cython.final
    cdef int _rr_replace(self, object key, object value, Py_hash_t h) except -1:
        # RRCache's eviction on the fast path (a full cache, key absent, no hook): the victim
        # goes as _remove() takes it (the last entry fills its hole) and the new item is
        # appended in the freed last entry, as _insert() would; no tuple, no reallocation.
        cdef Py_ssize_t r = self._rr_pick()
        cdef int32_t v = <int32_t>r
        cdef int32_t last = <int32_t>(self._n - 1)
        cdef _cache_ent* e = &self._ents[v]
        cdef PyObject* oldk = e.key
        cdef PyObject* oldv = e.value
        # the victim's list neighbours, its index slot and the objects released at the end are
        # loaded next: fetch them together
        _cache_prefetch(oldk)
        _cache_prefetch(oldv)
        if e.lk.prev >= 0:
            _cache_prefetch(&self._ents[e.lk.prev])
        if e.lk.next >= 0:
            _cache_prefetch(&self._ents[e.lk.next])
        cdef size_t hole
        cdef Py_ssize_t s = self._rr_slot
        _cache_prefetch(&self._ix.slots[_ix_home(&self._ix, e.hash)])
        hole = _ix_clear_slot(&self._ix, self._ents, _ix_slot_of(&self._ix, self._ents, v))
        self._lru_unlink(v)
        if v != last:
            # entry `last` becomes entry v: every reference to it is renumbered. Its slot is
            # most often where the previous call put it (a hint, checked: I2)
            if s > self._ix.mask or (self._ix.slots[s] & self._ix.imask) != last:
                s = _ix_slot_of(&self._ix, self._ents, last)
            _ix_renumber(&self._ix, s, v)
            e[0] = self._ents[last]
            _ll_renumbered(&self._order, <char*>&self._ents[0].lk, sizeof(_cache_ent), &e.lk, v)
            e = &self._ents[last]
        # _find() left self._slot at the empty slot ending the key's run; no code ran since
        self._rr_slot = <Py_ssize_t>_ix_insert_run(&self._ix, h, <size_t>self._slot, hole, last)
        Py_INCREF(key)
        Py_INCREF(value)
        e.key = <PyObject*>key
        e.value = <PyObject*>value
        e.hash = h
        e.exp = self._seq
        self._seq += 1.0
        self._lru_append(last)
        self._bump()
        self._mod += 1
        self._evictions += 1
        # the structure is consistent: the victim's __del__ may use the cache
        Py_DECREF(<object>oldk)
        Py_DECREF(<object>oldv)
        return 0

    def set(self, key, value):
        """Store value under key (the seed's name for ``cache[key] = value``)."""
        self[key] = value

    @cython.final
    cdef int _set_slow(self, object key, object value) except -1:
        cdef list evicted = []
        cdef object released = None
        cdef bint frozen = False
        try:
            if self._wlock is not None:
                self._wlock.acquire()
            try:
                if (self._hook or self._pol == _POL_RR) and self._is_ttl:
                    # an overriding popitem() or choice() reads the timer too: freeze it
                    self._tw.__enter__()
                    frozen = True
                try:
                    released = self._set(key, value, evicted)
                finally:
                    if frozen:
                        self._thaw()
            finally:
                if self._wlock is not None:
                    self._wlock.release()
        finally:
            self._notify(evicted)
        released = None        # replaced objects go last: a __del__ may use the cache
        return 0

    @cython.final
    cdef object _expiry(self, object key, object value, object now):
        # The expiry of an item set at `now`: now + ttl, or ttu(key, value, now).
        if not self._is_tlru:
            exp = now + self._ttl  # may raise (overflow): nothing changed yet
        else:
            exp = self._ttu(key, value, now)
            if exp != exp:  # NaN (of any type): no place in the expiry order
                raise ValueError(f"ttu must not return NaN, got {exp!r}")
        if self._objmode:
            return exp
        if not (type(exp) is float or type(exp) is int):
            if isinstance(exp, bool) or not isinstance(exp, _cache_numbers.Real):
                raise TypeError(f"ttu must return a number with the default timer, got {exp!r}")
        return float(exp)

    @cython.final
    cdef object _set(self, object key, object value, list evicted):
        # cachetools' __setitem__, under the writer lock when there is one. User code (getsizeof,
        # arithmetic on its sizes, ttu, expiry comparisons, an overriding popitem, choice) runs
        # first; then, with _ver unchanged since it was last checked, the structural change runs
        # without any. Returns what the caller must release (replaced value, size, total).
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix
        cdef Py_ssize_t anchor = -1
        cdef object now = None, exp = None, size, diff = None, total = None, old
        cdef PyObject* p
        cdef size_t ver, hv = 0
        cdef bint runs_code = self._hook or self._pol == _POL_RR
        if self._is_ttl:
            now = self._now()
            exp = self._expiry(key, value, now)
        if self._getsizeof is None:
            size = _cache_check_size(1, self._maxsize)
        else:
            size = _cache_check_size(self._getsizeof(value), self._maxsize)
        if self._is_ttl:
            self._expire_into(now, evicted)
            if self._is_tlru and not (now < exp):
                # cachetools: an item that would be expired already is not stored (and replaces
                # nothing)
                ix = self._find(key, h)
                if ix >= 0:
                    return self._take(<int32_t>ix, self._slot)
                return None
        ix = self._find(key, h)
        if ix >= 0:
            # Update in place, used first: making extra room never evicts the key itself.
            self._on_update(<int32_t>ix)
            self._keep = <int32_t>ix
            try:
                while True:
                    ver = self._ver
                    diff = size - self._size_of(ix)
                    over = self._currsize() + diff > self._maxsize
                    if self._ver != ver:
                        raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
                    if not over:
                        break
                    self._evict_one(evicted)
                    ix = self._keep     # renumbered by the removal, or -1: an overriding popitem()
                    if ix < 0:          # removed it after all
                        break
            finally:
                self._keep = -1
            if ix >= 0:
                ver = self._ver
                base = self._currsize_obj
                if self._getsizeof is not None:
                    total = base + diff
                if self._xheap:
                    anchor = self._xh_prepare(exp)
                    hv = self._xhver
                if self._ver != ver or self._currsize_obj is not base or (self._xheap and self._xhver != hv):
                    raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
                # no user code from here on
                p = self._ents[ix].value
                Py_INCREF(value)
                self._ents[ix].value = <PyObject*>value
                old = <object>p
                Py_DECREF(old)      # the cache's reference; `old` keeps it alive
                if self._sizes != NULL:
                    p = self._sizes[ix]
                    Py_INCREF(size)
                    self._sizes[ix] = <PyObject*>size
                    size = <object>p
                    Py_DECREF(size)
                    total, self._currsize_obj = self._currsize_obj, total
                if self._is_ttl:
                    self._set_exp(<int32_t>ix, exp, anchor)
                self._mod += 1
                return (old, size, total)
        while True:
            ver = self._ver
            over = self._currsize() + size > self._maxsize
            if self._ver != ver:
                raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
            if not over:
                break
            self._evict_one(evicted)
        ver = self._ver
        if runs_code and self._find(key, h) >= 0:
            # the overriding popitem() or choice() stored key meanwhile
            raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        base = self._currsize_obj
        if self._getsizeof is not None:
            total = base + size
        if self._xheap:
            anchor = self._xh_prepare(exp)
            hv = self._xhver
        if self._ver != ver or self._currsize_obj is not base or (self._xheap and self._xhver != hv):
            raise RuntimeError(f"{type(self).__name__} changed size during key lookup")
        # no user code from here on
        self._reserve()
        ix = self._insert(key, value, h)
        if self._is_ttl:
            self._set_exp(<int32_t>ix, exp, anchor)
        if self._sizes != NULL:
            Py_INCREF(size)
            self._sizes[ix] = <PyObject*>size
            total, self._currsize_obj = self._currsize_obj, total
        return total

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
    cdef tuple _take_victim(self):
        # Remove the policy's next victim, never the entry being updated (_keep): the head of
        # the entry list, or for RRCache the key choice() picks (user code; then looked up again).
        cdef Py_ssize_t ix
        cdef int32_t victim
        if self._pol != _POL_RR:
            victim = self._order.head
            if victim == self._keep:
                victim = self._ents[victim].lk.next
            if victim < 0:
                raise KeyError(f"{type(self).__name__} is empty")
            return self._take(victim, _ix_slot_of(&self._ix, self._ents, victim))
        if self._n - (self._keep >= 0) <= 0:
            raise KeyError(f"{type(self).__name__} is empty")
        key = self._choice(_cache_RRKeys._new(self))
        ix = self._find(key, hash(key))
        if ix < 0 or ix == self._keep:
            raise KeyError(key)
        return self._take(<int32_t>ix, self._slot)

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
            pair = self._take_victim()
        self._evictions += 1
        evicted.append(pair)
        return 0

    # ------------------------------------------------------------------ removal

    @cython.final
    cdef object _pop(self, object key, object default):
        # del c[key] (default _cache_MISSING) and pop(): the removed value, or default.
        cdef Py_hash_t h = hash(key)
        cdef Py_ssize_t ix
        cdef object now = None
        if self._is_ttl:
            now = self._now()
        ix = self._find(key, h)
        if ix >= 0 and self._is_ttl and not self._alive(<int32_t>ix, now):
            ix = -1         # expired: stays until expired items are removed
        elif ix >= 0 and self._objmode:
            ix = self._find(key, h)     # the expiry comparison ran user code: locate it again
        if ix < 0:
            if default is _cache_MISSING:
                raise KeyError(key)
            return default
        return self._take(<int32_t>ix, self._slot)[1]

    def __delitem__(self, key):
        if self._wlock is None:
            self._pop(key, _cache_MISSING)
            return
        with self._wlock:
            value = self._pop(key, _cache_MISSING)
        value = None        # released outside the lock

    def pop(self, key, default=_cache_MISSING):
        """Remove key and return its value; default (or KeyError) when absent or expired."""
        if self._wlock is None:
            return self._pop(key, default)
        with self._wlock:
            return self._pop(key, default)

    def popitem(self):
        """Remove and return the item the policy evicts next (expired items go first)."""
        cdef list evicted
        if not self._is_ttl:
            if self._wlock is None:
                if self._n == 0:
                    raise KeyError(f"{type(self).__name__} is empty") from None
                return self._take_victim()
            with self._wlock:
                if self._n == 0:
                    raise KeyError(f"{type(self).__name__} is empty") from None
                return self._take_victim()
        evicted = []
        try:
            if self._wlock is not None:
                self._wlock.acquire()
            try:
                self._expire_into(self._now(), evicted)
                if self._n == 0:
                    raise KeyError(f"{type(self).__name__} is empty") from None
                return self._take_victim()
            finally:
                if self._wlock is not None:
                    self._wlock.release()
        finally:
            self._notify(evicted)

    def setdefault(self, key, default=None):
        """Return the value for key if present (counting a use of it), else store default."""
        cdef Py_ssize_t ix
        if not self._is_ttl:
            ix = self._lookup(key)
            if ix >= 0:
                self._use(<int32_t>ix)
                return <object>self._ents[ix].value
            self[key] = default
            return default
        self._freeze(self._now())      # look up and store at one time read
        try:
            ix = self._lookup(key)
            if ix >= 0:
                self._use(<int32_t>ix)
                return <object>self._ents[ix].value
            self[key] = default
        finally:
            self._thaw()
        return default

    def update(self, other=(), /, **kwds):
        """Store every pair of a mapping or iterable of pairs, then the keyword arguments."""
        # MutableMapping.update (iteration is a snapshot, so `other` may be this cache)
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
        if self._wlock is None:
            self._clear()
            return
        with self._wlock:
            self._clear()

    @cython.final
    cdef int _clear(self) except -1:
        cdef int32_t* slots = _ix_alloc(_CACHE_MINSIZE)
        cdef _cache_store old
        if slots == NULL:
            raise MemoryError()
        old = self._detach()
        PyMem_Free(self._ix.slots)
        _ix_adopt(&self._ix, slots, _CACHE_MINSIZE)
        _cache_release(old)    # the cache is empty and consistent: now the old contents may go
        return 0

    # ------------------------------------------------------------------ iteration and views

    @cython.final
    cdef inline double _seq_of(self, int32_t ix) noexcept:
        # Entry ix's insertion number.
        return self._seqs[ix] if self._is_ttl else self._ents[ix].exp

    @cython.final
    cdef list _snapshot(self):
        # [(insertion number, key, entry number), ...] of every entry, in first-insertion order.
        cdef Py_ssize_t i
        cdef list snap = [(self._seq_of(<int32_t>i), <object>self._ents[i].key, i) for i in range(self._n)]
        snap.sort(key=_cache_first)
        return snap

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

    @property
    def getsizeof(self):
        """The function giving a value's size: the getsizeof passed in, or one returning 1."""
        return _cache_py._default_getsizeof if self._getsizeof is None else self._getsizeof

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
        """The twin's state: (tag, version, settings, items, order, timing, counters, attributes)."""
        cdef list snap = self._snapshot()
        cdef dict pos = {}
        cdef list items = []
        cdef list order = None
        cdef list expires, xorder
        cdef Py_ssize_t k, ix
        cdef int32_t j
        for k in range(len(snap)):
            ix = snap[k][2]
            pos[ix] = k
            items.append((<object>self._ents[ix].key, <object>self._ents[ix].value, self._size_of(ix)))
        if self._pol != _POL_INS and self._pol != _POL_RR:
            order = []
            j = self._order.head
            while j >= 0:
                order.append((pos[j], self._lfu.bks[self._lfu.of[j]].count) if self._pol == _POL_LFU else pos[j])
                j = self._ents[j].lk.next
        timing = None
        if self._is_ttl:
            expires = [None] * len(items)
            for ix in range(self._n):
                expires[pos[ix]] = <object>self._xexp[ix] if self._objmode else self._ents[ix].exp
            if self._use_heap:
                xorder = sorted(range(len(items)), key=expires.__getitem__)
            elif self._xheap:
                # the live records (taken without user code), in (expiry, push number) order
                recs = [(<object>self._xh[k].exp, self._xh[k].seq, pos[self._xh[k].ent])
                        for k in range(self._xhn) if self._xh[k].ent >= 0]
                recs.sort(key=_cache_xkey)
                xorder = [rec[2] for rec in recs]
            else:
                xorder = []
                j = self._tlist.head
                while j >= 0:
                    xorder.append(pos[j])
                    j = self._tl[j].next
            last = self._last_o if self._objmode else (self._last_d if self._has_last else None)
            timing = (expires, xorder, last)
        getsizeof = None if self._size_override else self._getsizeof
        settings = (self._maxsize, getsizeof, self._on_evict, self._state_param(),
                    self._tw._timer if self._is_ttl else None)
        attributes = getattr(self, "__dict__", None) or None
        return (_CACHE_STATE_TAG, _CACHE_STATE_VERSION, settings, items, order, timing,
                (self._hits, self._misses, self._evictions, self._expirations), attributes)

    def __setstate__(self, state):
        """Restore a state made by __getstate__ (either backend's); an invalid one changes nothing."""
        cdef _CacheCore new
        cdef Py_ssize_t k, n, ix
        cdef list idxs = []
        cdef int timing_kind
        cls = type(self)
        invalid = f"invalid {cls.__name__} state"
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == _CACHE_STATE_TAG):
            raise TypeError(invalid)
        if state[1] != _CACHE_STATE_VERSION:
            raise ValueError(f"unsupported {cls.__name__} state version {state[1]!r}")
        _, _, settings, items, order, timing, counters, attributes = state
        if not (isinstance(settings, tuple) and len(settings) == 5):
            raise ValueError(invalid)
        maxsize, getsizeof, on_evict, param, timer = settings
        if not (isinstance(counters, tuple) and len(counters) == 4
                and all(type(c) is int and c >= 0 for c in counters)):
            raise ValueError(invalid)
        if attributes is not None and not isinstance(attributes, dict):
            raise ValueError(invalid)
        if not isinstance(items, list):
            raise ValueError(invalid)
        # Build the whole new structure in a fresh object: validation and user __hash__/__eq__ run
        # there; this cache changes only at the end, in one step without user code.
        new = cls.__new__(cls)
        pol, timing_kind = _cache_kind_of(cls)
        if not timing_kind and (timer is not None or (param is not None and pol != _POL_RR)):
            raise ValueError(invalid)
        new._setup(pol, timing_kind, maxsize, getsizeof, on_evict, param, timer)
        n = len(items)
        if n > new._maxcap or not (n <= maxsize):
            raise ValueError(invalid)
        total = 0
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 3):
                raise ValueError(invalid)
            key, value, size = item
            if new._getsizeof is None and not (type(size) is int and size == 1):
                raise ValueError(invalid)
            try:
                size = _cache_check_size(size, maxsize)
            except (TypeError, ValueError):
                raise ValueError(invalid) from None
            h = hash(key)
            if new._find(key, h) >= 0:
                raise ValueError(invalid)
            new._reserve()
            ix = new._insert(key, value, h)
            idxs.append(ix)
            if new._sizes != NULL:
                Py_INCREF(size)
                new._sizes[ix] = <PyObject*>size
            total = total + size
        if total > maxsize:
            raise ValueError(invalid)
        if new._sizes != NULL:
            new._currsize_obj = total
        new._restore_order(order, idxs, invalid)
        if new._is_ttl:
            new._restore_timing(timing, idxs, invalid)
        elif timing is not None:
            raise ValueError(invalid)
        new._hits, new._misses, new._evictions, new._expirations = counters
        # everything checked: this cache takes the new contents, `new` the old ones
        if self._wlock is not None:
            with self._wlock:
                self._swap(new)
        else:
            self._swap(new)
        if attributes:
            self.__dict__.update(attributes)
        # `new` (holding the old contents) is released when this returns

    @cython.final
    cdef int _restore_order(self, object order, list idxs, str invalid) except -1:
        # The eviction order of a state: item indices (LFU: (index, count) pairs, counts ascending).
        cdef Py_ssize_t n = len(idxs), k
        cdef int32_t ix, b = -1
        cdef int64_t count, prev = 0
        if self._pol == _POL_INS or self._pol == _POL_RR:
            if order is not None:
                raise ValueError(invalid)
            return 0
        if not isinstance(order, list) or len(order) != n:
            raise ValueError(invalid)
        seen = set()
        for o in order:
            k = o[0] if self._pol == _POL_LFU and isinstance(o, tuple) and len(o) == 2 else o
            if type(k) is not int or not 0 <= k < n or k in seen:
                raise ValueError(invalid)
            seen.add(k)
            if self._pol == _POL_LFU:
                if not isinstance(o, tuple) or type(o[1]) is not int or not (prev <= o[1]) or o[1] < 1:
                    raise ValueError(invalid)
                prev = o[1]
        # relink the entry list in that order (and for LFU rebuild the buckets)
        self._order.head = self._order.tail = -1
        if self._pol == _POL_LFU:
            self._lfu.free = -1
            for k in range(self._cap):
                self._lfu.bks[k].first = self._lfu.free
                self._lfu.free = <int32_t>k
        for o in order:
            if self._pol == _POL_LFU:
                ix = <int32_t>idxs[o[0]]
                count = o[1]
                self._lru_append(ix)
                if b >= 0 and self._lfu.bks[b].count == count:
                    self._lfu.bks[b].last = ix
                    self._lfu.of[ix] = b
                else:
                    b = self._bk_new(count, ix)
            else:
                self._lru_append(<int32_t>idxs[o])
        return 0

    @cython.final
    cdef int _restore_timing(self, object timing, list idxs, str invalid) except -1:
        # Expiries per item, the expiry order (indices) and the latest time read.
        cdef Py_ssize_t n = len(idxs), k
        cdef int32_t ix
        if not (isinstance(timing, tuple) and len(timing) == 3):
            raise ValueError(invalid)
        expires, xorder, last = timing
        if not (isinstance(expires, list) and len(expires) == n and isinstance(xorder, list)
                and len(xorder) == n):
            raise ValueError(invalid)
        if sorted(x for x in xorder if type(x) is int) != list(range(n)):
            raise ValueError(invalid)
        for k in range(1, n):
            if expires[xorder[k]] < expires[xorder[k - 1]]:
                raise ValueError(invalid)
        for x in expires:
            if not self._objmode and (isinstance(x, bool) or not isinstance(x, _cache_numbers.Real)):
                raise ValueError(invalid)
            if isinstance(x, float) and x != x:
                raise ValueError(invalid)
        if last is not None and not self._objmode:
            if isinstance(last, bool) or not isinstance(last, _cache_numbers.Real) or last != last:
                raise ValueError(invalid)
        if not self._use_heap:
            self._tlist.head = self._tlist.tail = -1
        if self._xheap and n:
            self._xh = <_cache_xrec*>PyMem_Malloc(n * sizeof(_cache_xrec))
            if self._xh == NULL:
                raise MemoryError()
            self._xhcap = n
        for k in range(n):
            ix = <int32_t>idxs[xorder[k]]
            x = expires[xorder[k]]
            if self._objmode:
                Py_INCREF(x)
                self._xexp[ix] = <PyObject*>x
            else:
                self._ents[ix].exp = float(x)
            if self._use_heap:
                self._heap_put(k, ix)       # sorted: a valid heap
            elif self._xheap:
                # sorted, push numbers ascending: a valid heap
                Py_INCREF(x)
                self._xh[k].exp = <PyObject*>x
                self._xh[k].seq = <double>k
                self._xh[k].ent = ix
                self._hpos[ix] = <int32_t>k
                self._xhn = k + 1
                self._xhseq = k + 1.0
            else:
                self._ttl_append(ix)
        if last is None:
            self._has_last = False
            self._last_o = None
        elif self._objmode:
            self._last_o = last
        else:
            self._last_d = float(last)
            self._has_last = True
        return 0

    @cython.final
    cdef void _swap(self, _CacheCore o) noexcept:
        # Exchange every setting and all contents with `o` (a fresh object of the same class).
        cdef _cache_index ix
        self._ents, o._ents = o._ents, self._ents
        ix = self._ix
        self._ix = o._ix
        o._ix = ix
        self._tl, o._tl = o._tl, self._tl
        self._heap, o._heap = o._heap, self._heap
        self._hpos, o._hpos = o._hpos, self._hpos
        self._lfu.of, o._lfu.of = o._lfu.of, self._lfu.of
        self._lfu.bks, o._lfu.bks = o._lfu.bks, self._lfu.bks
        self._lfu.free, o._lfu.free = o._lfu.free, self._lfu.free
        self._seqs, o._seqs = o._seqs, self._seqs
        self._seq, o._seq = o._seq, self._seq
        self._xexp, o._xexp = o._xexp, self._xexp
        self._sizes, o._sizes = o._sizes, self._sizes
        self._n, o._n = o._n, self._n
        self._cap, o._cap = o._cap, self._cap
        self._maxcap, o._maxcap = o._maxcap, self._maxcap
        self._order.head, o._order.head = o._order.head, self._order.head
        self._order.tail, o._order.tail = o._order.tail, self._order.tail
        self._tlist.head, o._tlist.head = o._tlist.head, self._tlist.head
        self._tlist.tail, o._tlist.tail = o._tlist.tail, self._tlist.tail
        self._maxsize_c, o._maxsize_c = o._maxsize_c, self._maxsize_c
        self._maxsize, o._maxsize = o._maxsize, self._maxsize
        self._currsize_obj, o._currsize_obj = o._currsize_obj, self._currsize_obj
        self._getsizeof, o._getsizeof = o._getsizeof, self._getsizeof
        self._on_evict, o._on_evict = o._on_evict, self._on_evict
        self._hits, o._hits = o._hits, self._hits
        self._misses, o._misses = o._misses, self._misses
        self._evictions, o._evictions = o._evictions, self._evictions
        self._expirations, o._expirations = o._expirations, self._expirations
        self._is_ttl, o._is_ttl = o._is_ttl, self._is_ttl
        self._objmode, o._objmode = o._objmode, self._objmode
        self._cclock, o._cclock = o._cclock, self._cclock
        self._fast_set, o._fast_set = o._fast_set, self._fast_set
        self._is_tlru, o._is_tlru = o._is_tlru, self._is_tlru
        self._use_heap, o._use_heap = o._use_heap, self._use_heap
        self._xheap, o._xheap = o._xheap, self._xheap
        self._xh, o._xh = o._xh, self._xh
        self._xhn, o._xhn = o._xhn, self._xhn
        self._xhcap, o._xhcap = o._xhcap, self._xhcap
        self._xdead, o._xdead = o._xdead, self._xdead
        self._xhseq, o._xhseq = o._xhseq, self._xhseq
        self._xh_bump()
        o._xh_bump()
        self._pol, o._pol = o._pol, self._pol
        self._choice, o._choice = o._choice, self._choice
        self._ttu, o._ttu = o._ttu, self._ttu
        self._ttl, o._ttl = o._ttl, self._ttl
        self._ttl_d, o._ttl_d = o._ttl_d, self._ttl_d
        self._last_d, o._last_d = o._last_d, self._last_d
        self._has_last, o._has_last = o._has_last, self._has_last
        self._last_o, o._last_o = o._last_o, self._last_o
        self._tw, o._tw = o._tw, self._tw
        if self._wlock is None:     # a lock once given stays: writers may be waiting on it
            self._wlock = o._wlock
        if self._size_override and o._getsizeof is not None:
            self._getsizeof = self.getsizeof        # bound to this object, not to `o`
        self._bump()
        self._mod += 1

    def __copy__(self):
        cls = type(self)
        new = cls.__new__(cls)
        new.__setstate__(self.__getstate__())
        return new

    @cython.final
    cdef int _setup(self, int pol, int timing, object maxsize, object getsizeof, object on_evict,
                    object param, object timer) except -1:
        # Validate every setting, then (re)configure the empty cache. timing: 0 none, 1 ttl=param,
        # 2 ttu=param; RRCache's choice is param too.
        _cache_py._check_maxsize(maxsize)
        if pol == _POL_RR and not callable(param):
            raise TypeError(f"choice must be callable, got {param!r}")
        if timing == 1:
            _cache_py._check_ttl(param)
        elif timing == 2 and not callable(param):
            raise TypeError(f"ttu must be callable, got {param!r}")
        if timing and not callable(timer):
            raise TypeError(f"timer must be callable, got {timer!r}")
        _cache_py._check_callable("getsizeof", getsizeof)
        _cache_py._check_callable("on_evict", on_evict)
        if self._n:
            raise RuntimeError(f"{type(self).__name__} is already initialized")
        _cache_release(self._detach())
        self._pol = pol
        self._choice = param if pol == _POL_RR else None
        self._is_ttl = timing != 0
        self._is_tlru = timing == 2
        self._ttl = param if timing == 1 else None
        self._ttu = param if timing == 2 else None
        if timing == 1:
            self._objmode = not (type(param) is float or type(param) is int)
        else:
            # ttu's results are compared as doubles only with the built-in clock
            self._objmode = timing == 2 and timer is not _cache_monotonic
        self._use_heap = timing == 2 and not self._objmode
        self._xheap = timing == 2 and self._objmode
        self._ttl_d = float(param) if timing == 1 and not self._objmode else 0.0
        self._cclock = timing != 0 and timer is _cache_monotonic
        self._tw = _cache_Timer(timer) if timing else None
        self._has_last = False
        self._last_o = None
        self._configure(maxsize, getsizeof, on_evict)
        # User code inside a write (getsizeof and its sizes' arithmetic, expiry comparisons, an
        # overriding popitem, RRCache's own choice): writers of other threads wait for it, so
        # that nothing they do lands between this write's lookup and its structural change.
        self._wlock = (_cache_threading.RLock()
                       if (self._getsizeof is not None or self._objmode or self._hook
                           or (self._pol == _POL_RR and not self._fast_set)) else None)
        return 0

    @cython.final
    cdef object _state_param(self):
        # RRCache's choice, TTLCache's ttl, TLRUCache's ttu (else None), as the state holds it
        if self._pol == _POL_RR:
            return self._choice
        if self._is_tlru:
            return self._ttu
        return self._ttl

    @cython.final
    cdef list _expire_public(self, object time):
        # TTLCache.expire and TLRUCache.expire
        cdef list evicted = []
        try:
            if self._wlock is not None:
                self._wlock.acquire()
            try:
                if time is None:
                    time = self._now()
                else:
                    _cache_py._check_time(time)
                    if not self._objmode:
                        time = self._to_double(time)
                self._expire_into(time, evicted)
            finally:
                if self._wlock is not None:
                    self._wlock.release()
        finally:
            self._notify(evicted)
        return list(evicted)

    # ------------------------------------------------------------------ consistency check

    def _check(self):
        """Walk the table, the entries and both lists; raise AssertionError on any inconsistency."""
        cdef Py_ssize_t i, j, used = 0, count = 0
        cdef int32_t ix, prev
        cdef _cache_bk* bk
        assert self._n <= self._cap, "n > cap"
        assert (self._ix.mask + 1) & self._ix.mask == 0, "table size not a power of two"
        seen = [False] * self._n
        for i in range(self._ix.mask + 1):
            ix = self._ix.slots[i]
            if ix >= 0:
                assert (ix & self._ix.imask) < self._n, "slot points past the entries"
                j = _ix_home(&self._ix, self._ents[ix & self._ix.imask].hash)
                assert (ix & self._ix.tmask) == _ix_tag(&self._ix, self._ents[ix & self._ix.imask].hash), "bad tag"
                assert (ix & ~self._ix.tmask & ~self._ix.imask) == _ix_disp(&self._ix, (i - j) & self._ix.mask), "bad displacement"
                ix &= self._ix.imask
                assert not seen[ix], "entry indexed twice"
                seen[ix] = True
                used += 1
                while j != i:
                    assert self._ix.slots[j] >= 0, "entry not reachable from its home slot"
                    j = (j + 1) & self._ix.mask
            else:
                assert ix == _CACHE_EMPTY, "bad slot value"
        assert used == self._n, "table and entry count disagree"
        assert _ix_has_room(&self._ix, self._n), "table overfull"
        prev = -1
        ix = self._order.head
        while ix >= 0:
            assert ix < self._n, "LRU link past the entries"
            assert self._ents[ix].lk.prev == prev, "LRU prev link broken"
            prev = ix
            ix = self._ents[ix].lk.next
            count += 1
            assert count <= self._n, "LRU list has a cycle"
        assert prev == self._order.tail, "LRU tail wrong"
        assert count == self._n, "LRU list misses entries"
        if self._pol == _POL_LFU:
            ix = self._order.head
            while ix >= 0:      # buckets: runs of one count, counts ascending
                bk = &self._lfu.bks[self._lfu.of[ix]]
                assert bk.first == ix, "bucket does not start where its run starts"
                while ix != bk.last:
                    ix = self._ents[ix].lk.next
                    assert ix >= 0 and self._lfu.of[ix] == self._lfu.of[bk.first], "bucket run broken"
                ix = self._ents[ix].lk.next
                assert ix < 0 or self._lfu.bks[self._lfu.of[ix]].count > bk.count, "counts not ascending"
        if self._use_heap:
            for i in range(self._n):
                assert self._hpos[self._heap[i]] == i, "heap position wrong"
                if i:
                    assert not (self._ents[self._heap[i]].exp < self._ents[self._heap[(i - 1) >> 1]].exp), \
                        "heap order broken"
        elif self._xheap:
            dead = 0
            for i in range(self._xhn):
                ix = self._xh[i].ent
                if ix < 0:
                    dead += 1
                else:
                    assert ix < self._n and self._hpos[ix] == i, "heap position wrong"
                    assert self._xh[i].exp == self._xexp[ix], "heap record disagrees with its entry"
                if i:
                    assert not _cache_xbefore(<object>self._xh[i].exp, self._xh[i].seq,
                                              <object>self._xh[(i - 1) >> 1].exp,
                                              self._xh[(i - 1) >> 1].seq), "heap order broken"
            assert dead == self._xdead, "dead record count wrong"
            assert self._xhn - dead == self._n, "heap misses entries"
            for i in range(self._n):
                assert 0 <= self._hpos[i] < self._xhn and self._xh[self._hpos[i]].ent == i, \
                    "entry without its heap record"
        elif self._is_ttl:
            count = 0
            prev = -1
            ix = self._tlist.head
            while ix >= 0:
                assert ix < self._n, "expiry link past the entries"
                assert self._tl[ix].prev == prev, "expiry prev link broken"
                if self._objmode:
                    assert self._xexp[ix] != NULL, "missing expiry"
                prev = ix
                ix = self._tl[ix].next
                count += 1
                assert count <= self._n, "expiry list has a cycle"
            assert prev == self._tlist.tail, "expiry tail wrong"
            assert count == self._n, "expiry list misses entries"
        if self._sizes != NULL:
            total = 0
            for i in range(self._n):
                total = total + <object>self._sizes[i]
            assert total == self._currsize_obj, "currsize disagrees with the item sizes"
        assert not (self._currsize() > self._maxsize), "currsize > maxsize"
        if self._is_ttl and not self._objmode and not self._use_heap:
            ix = self._tlist.head
            while ix >= 0 and self._tl[ix].next >= 0:
                assert self._ents[ix].exp <= self._ents[self._tl[ix].next].exp, "expiry order is not sorted"
                ix = self._tl[ix].next
        assert self._tw is None or self._tw._nesting == 0, "timer left frozen"


cdef class _cache_Iter:
    # A snapshot iterator, as cachetools 8's: the keys present when iteration starts, in
    # first-insertion order; each is yielded if it is still there (the same insertion, not a
    # re-insertion) and, for timed caches, not expired at the time read when iteration started.
    # It never raises "changed during iteration": the cache may change meanwhile.
    cdef _CacheCore _c
    cdef list _snap
    cdef Py_ssize_t _pos
    cdef int _kind
    cdef object _now

    @staticmethod
    cdef _cache_Iter _new(_CacheCore c, int kind):
        cdef _cache_Iter it = _cache_Iter.__new__(_cache_Iter)
        it._c = c
        it._snap = None
        it._pos = 0
        it._kind = kind
        it._now = None
        return it

    def __iter__(self):
        return self

    def __next__(self):
        cdef _CacheCore c = self._c
        cdef Py_ssize_t ix
        cdef double seq
        if self._snap is None:
            if c._is_ttl:
                if not c._n:
                    c._observe(c._tw())     # the one read; nothing to compare it with
                    self._snap = []
                    raise StopIteration
                self._now = c._now()
            self._snap = c._snapshot()
        while self._pos < len(self._snap):
            seq, key, _ = self._snap[self._pos]
            self._pos += 1
            ix = c._find(key, hash(key))
            if ix < 0 or c._seq_of(<int32_t>ix) != seq:
                continue
            if c._is_ttl:
                if c._objmode:
                    if not c._alive_o(<int32_t>ix, self._now):
                        continue
                    ix = c._find(key, hash(key))    # the comparison was user code
                    if ix < 0 or c._seq_of(<int32_t>ix) != seq:
                        continue
                elif not (<double>self._now < c._ents[ix].exp):
                    continue
            if self._kind == 0:
                return <object>c._ents[ix].key
            if self._kind == 1:
                return <object>c._ents[ix].value
            return (<object>c._ents[ix].key, <object>c._ents[ix].value)
        self._snap = []
        raise StopIteration


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
cdef class Cache(_CacheCore):
    """A bounded mapping evicting the item inserted first (an update keeps its place)."""


    def __init__(self, maxsize, getsizeof=None, *, on_evict=None):
        self._reinit()
        self._setup(_POL_INS, 0, maxsize, getsizeof, on_evict, None, None)


@cython.no_gc_clear
cdef class FIFOCache(Cache):
    """First In First Out cache: evicts the item set longest ago (an update re-queues it)."""


    def __init__(self, maxsize, getsizeof=None, *, on_evict=None):
        self._reinit()
        self._setup(_POL_FIFO, 0, maxsize, getsizeof, on_evict, None, None)


@cython.no_gc_clear
cdef class LFUCache(Cache):
    """Least Frequently Used cache: O(1) use-count buckets, least recent first within a count."""


    def __init__(self, maxsize, getsizeof=None, *, on_evict=None):
        self._reinit()
        self._setup(_POL_LFU, 0, maxsize, getsizeof, on_evict, None, None)


@cython.no_gc_clear
cdef class LRUCache(Cache):
    """Least Recently Used cache: an O(1) C hash table threaded by a doubly linked list."""


    def __init__(self, maxsize, getsizeof=None, *, on_evict=None):
        self._reinit()
        self._setup(_POL_LRU, 0, maxsize, getsizeof, on_evict, None, None)


@cython.no_gc_clear
cdef class RRCache(Cache):
    """Random Replacement cache: evicts choice(keys) (random.choice by default)."""


    def __init__(self, maxsize, choice=_cache_random.choice, getsizeof=None, *, on_evict=None):
        self._reinit()
        self._setup(_POL_RR, 0, maxsize, getsizeof, on_evict, choice, None)

    @property
    def choice(self):
        """The function that picks the key to evict."""
        return self._choice


@cython.no_gc_clear
cdef class TTLCache(Cache):
    """LRU cache whose items expire ttl after they were set (valid while timer() < set + ttl)."""


    def __init__(self, maxsize, ttl, timer=_cache_time.monotonic, getsizeof=None, *, on_evict=None):
        self._reinit()
        self._setup(_POL_LRU, 1, maxsize, getsizeof, on_evict, ttl, timer)

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
        return self._expire_public(time)


@cython.no_gc_clear
cdef class TLRUCache(Cache):
    """LRU cache whose items expire at ttu(key, value, now) (an O(log n) expiry heap)."""


    def __init__(self, maxsize, ttu, timer=_cache_time.monotonic, getsizeof=None, *, on_evict=None):
        self._reinit()
        self._setup(_POL_LRU, 2, maxsize, getsizeof, on_evict, ttu, timer)

    @property
    def ttu(self):
        """The function ``ttu(key, value, now)`` giving each item's expiry time."""
        return self._ttu

    @property
    def timer(self):
        """The timer wrapper: call it, or ``with cache.timer as now:`` to freeze time."""
        return self._tw

    def expire(self, time=None):
        """Remove expired items and return them as a list of (key, value) pairs."""
        return self._expire_public(time)


cdef tuple _cache_classes = (Cache, FIFOCache, LFUCache, LRUCache, RRCache, TTLCache, TLRUCache)
cdef dict _cache_kinds = {
    Cache: (_POL_INS, 0), FIFOCache: (_POL_FIFO, 0), LFUCache: (_POL_LFU, 0),
    LRUCache: (_POL_LRU, 0), RRCache: (_POL_RR, 0), TTLCache: (_POL_LRU, 1), TLRUCache: (_POL_LRU, 2),
}


cdef tuple _cache_kind_of(type cls):
    # (policy, timing) of a compiled cache class or of a Python subclass of one
    for c in cls.__mro__:
        if c in _cache_kinds:
            return _cache_kinds[c]
    raise TypeError(f"{cls.__name__} is not a cache class")
for _cache_t in _cache_classes:
    _cache_abc.MutableMapping.register(_cache_t)
_cache_abc.Sequence.register(_cache_RRKeys)


cdef _cache_traverseproc _cache_base_traverse = (<_cache_TypeObject*>_CacheCore).tp_traverse


cdef int _cache_traverse(PyObject* o, _cache_visitproc visit, void* arg) noexcept:
    cdef int r = _cache_base_traverse(o, visit, arg) if _cache_base_traverse != NULL else 0
    if r:
        return r
    return (<_CacheCore>o)._visit(visit, arg)


cdef int _cache_clear(PyObject* o) noexcept:
    # Breaks reference cycles through a cache's contents (the settings are kept).
    _cache_release((<_CacheCore>o)._detach())
    return 0


for _cache_t in (_CacheCore,) + _cache_classes:
    (<_cache_TypeObject*>_cache_t).tp_traverse = _cache_traverse
    (<_cache_TypeObject*>_cache_t).tp_clear = _cache_clear
del _cache_t
