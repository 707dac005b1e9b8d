# Streaming statistics: the Cython twin of prodfast._stats_py (read that module for the
# algorithms' description; the C kernels below mirror its _Welford and _P2 line by line, so
# both twins produce bit-identical floats when compiled with -ffp-contract=off).

from libc.math cimport isfinite, sqrt, floor, NAN, INFINITY
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble

import numpy as _st_np
from prodfast._stats_py import (
    _coerce_real as _st_coerce_real,
    _as_float_block as _st_as_float_block,
    _check_p as _st_check_p,
    _check_ps as _st_check_ps,
    _check_state as _st_check_state,
    _check_p2_state as _st_check_p2_state,
    _check_welford_state as _st_check_welford_state,
)

cdef object _st_float64 = _st_np.dtype(_st_np.float64)
cdef object _st_ndarray = _st_np.ndarray
cdef tuple _st_LS_PS = (0.5, 0.95, 0.99)


# --------------------------------------------------------------------------------------------
# C state and kernels

cdef enum:
    _ST_BLOCK = 32   # values buffered before they are folded (_BLOCK in the Python twin)

ctypedef struct _st_welford:
    long long count          # values folded into mean/m2
    int nbuf                 # values waiting in buf (fewer than _ST_BLOCK)
    double shift
    double mean
    double m2
    double min
    double max
    double buf[_ST_BLOCK]

ctypedef struct _st_p2:
    double p
    double f1
    double f2
    double f3
    long long count
    double q[5]
    double n[5]


cdef inline void _st_w_reset(_st_welford* w) noexcept nogil:
    w.count = 0
    w.nbuf = 0
    w.shift = 0.0
    w.mean = 0.0
    w.m2 = 0.0
    w.min = INFINITY
    w.max = -INFINITY


@cython.cdivision(True)
cdef inline void _st_block_moments(const double* xs, int m, double shift,
                                   double* mean_out, double* m2_out) noexcept nogil:
    # two passes over four interleaved sums (element i goes to sum i % 4); m >= 1
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, mean, d
    cdef int i = 0
    while i + 4 <= m:
        a0 += xs[i] - shift
        a1 += xs[i + 1] - shift
        a2 += xs[i + 2] - shift
        a3 += xs[i + 3] - shift
        i += 4
    if i < m:
        a0 += xs[i] - shift
    if i + 1 < m:
        a1 += xs[i + 1] - shift
    if i + 2 < m:
        a2 += xs[i + 2] - shift
    mean = ((a0 + a1) + (a2 + a3)) / <double>m
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    i = 0
    while i + 4 <= m:
        d = (xs[i] - shift) - mean
        a0 += d * d
        d = (xs[i + 1] - shift) - mean
        a1 += d * d
        d = (xs[i + 2] - shift) - mean
        a2 += d * d
        d = (xs[i + 3] - shift) - mean
        a3 += d * d
        i += 4
    if i < m:
        d = (xs[i] - shift) - mean
        a0 += d * d
    if i + 1 < m:
        d = (xs[i + 1] - shift) - mean
        a1 += d * d
    if i + 2 < m:
        d = (xs[i + 2] - shift) - mean
        a2 += d * d
    mean_out[0] = mean
    m2_out[0] = (a0 + a1) + (a2 + a3)


@cython.cdivision(True)
cdef inline void _st_w_combine(_st_welford* w, int m, double bmean, double bm2) noexcept nogil:
    # fold a block of m >= 1 values (same shift) into (count, mean, m2)
    cdef long long c = w.count
    cdef double total, delta
    if c == 0:
        w.mean = bmean
        w.m2 = bm2
    else:
        total = <double>(c + m)
        delta = bmean - w.mean
        w.mean += delta * <double>m / total
        w.m2 += bm2 + delta * delta * <double>c * <double>m / total
    w.count = c + m


cdef inline void _st_w_fold(_st_welford* w) noexcept nogil:
    cdef double bmean, bm2
    if w.nbuf == 0:
        return
    # the buffer holds x - shift already; subtracting 0.0 leaves every value as it is
    _st_block_moments(w.buf, w.nbuf, 0.0, &bmean, &bm2)
    _st_w_combine(w, w.nbuf, bmean, bm2)
    w.nbuf = 0


cdef inline void _st_w_push(_st_welford* w, double x) noexcept nogil:
    if w.nbuf == 0 and w.count == 0:
        w.shift = x
    w.buf[w.nbuf] = x - w.shift
    w.nbuf += 1
    if x < w.min:
        w.min = x
    if x > w.max:
        w.max = x
    if w.nbuf == _ST_BLOCK:
        _st_w_fold(w)


@cython.cdivision(True)
cdef inline void _st_w_merge(_st_welford* w, _st_welford o) noexcept nogil:
    # Chan et al.; o is a copy, so the caller's other object is left unchanged
    cdef double na, nb, total, delta
    _st_w_fold(&o)
    if o.count == 0:
        return
    _st_w_fold(w)
    if w.count == 0:
        w[0] = o
        return
    na = <double>w.count
    nb = <double>o.count
    total = <double>(w.count + o.count)   # > 0
    delta = ((o.shift - w.shift) + o.mean) - w.mean
    w.mean += delta * nb / total
    w.m2 += o.m2 + delta * delta * na * nb / total
    w.count = w.count + o.count
    if o.min < w.min:
        w.min = o.min
    if o.max > w.max:
        w.max = o.max


cdef inline _st_welford _st_w_folded(const _st_welford* w) noexcept nogil:
    cdef _st_welford f = w[0]
    _st_w_fold(&f)
    return f


cdef inline double _st_w_mean(const _st_welford* w) noexcept nogil:
    cdef _st_welford f = _st_w_folded(w)
    return f.shift + f.mean if f.count else NAN


@cython.cdivision(True)
cdef inline double _st_w_variance(const _st_welford* w) noexcept nogil:
    cdef _st_welford f = _st_w_folded(w)
    return f.m2 / <double>(f.count - 1) if f.count > 1 else 0.0


cdef inline long long _st_w_total(const _st_welford* w) noexcept nogil:
    return w.count + w.nbuf


cdef inline void _st_p2_reset(_st_p2* e) noexcept nogil:
    cdef int i
    e.count = 0
    for i in range(5):
        e.q[i] = 0.0
        e.n[i] = i + 1.0


cdef inline void _st_p2_init(_st_p2* e, double p) noexcept nogil:
    e.p = p
    e.f1 = p / 2.0
    e.f2 = p
    e.f3 = (1.0 + p) / 2.0
    _st_p2_reset(e)


cdef inline void _st_sort(double* a, int m) noexcept nogil:
    # stable insertion sort of at most five values (same order as Python's list.sort)
    cdef int i, j
    cdef double v
    for i in range(1, m):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@cython.cdivision(True)
cdef inline double _st_p2_parabolic(const double* q, const double* n, int i, double d) noexcept nogil:
    # marker positions are strictly increasing, so no denominator is zero
    return q[i] + d / (n[i + 1] - n[i - 1]) * (
        (n[i] - n[i - 1] + d) * (q[i + 1] - q[i]) / (n[i + 1] - n[i])
        + (n[i + 1] - n[i] - d) * (q[i] - q[i - 1]) / (n[i] - n[i - 1])
    )


@cython.cdivision(True)
cdef inline double _st_p2_linear(const double* q, const double* n, int i, double d) noexcept nogil:
    cdef int j = i + 1 if d > 0.0 else i - 1
    return q[i] + d * (q[j] - q[i]) / (n[j] - n[i])


cdef inline void _st_p2_step(double* q, double* n, double m, double f1, double f2, double f3,
                             double x) noexcept nogil:
    # one P2 update once five values are in; m = count - 1 after counting x
    cdef int i
    cdef double d, qn
    cdef double desired[4]
    # B.1/B.2 without branches: the markers are sorted, so "marker i lies above the cell
    # of x" is just x < q[i]; the extremes take x when it falls outside them
    n[1] += <double>(x < q[1])
    n[2] += <double>(x < q[2])
    n[3] += <double>(x < q[3])
    # n1 = 1 and n5 = count always (the state checks enforce both): storing them as constants
    # lets the compiler drop a load, an add and a dependency (same values as n[4] += 1.0)
    n[0] = 1.0
    n[4] = m + 1.0
    q[0] = x if x < q[0] else q[0]
    q[4] = x if x > q[4] else q[4]
    # desired positions from the count: n'_i = 1 + (count - 1) * f_i
    desired[1] = 1.0 + m * f1
    desired[2] = 1.0 + m * f2
    desired[3] = 1.0 + m * f3
    # B.3 adjust markers 2-4 that are off by one position or more. The direction is tested
    # first and the room next to the marker second, each case with its constant d: the same
    # decisions as the twin's one condition, with fewer instructions and branches the CPU
    # predicts better (d <= -1 first measured faster than d >= 1 first)
    for i in range(1, 4):
        d = desired[i] - n[i]
        if d <= -1.0:
            if n[i - 1] - n[i] < -1.0:
                qn = _st_p2_parabolic(q, n, i, -1.0)
                if q[i - 1] < qn and qn < q[i + 1]:
                    q[i] = qn
                else:
                    q[i] = _st_p2_linear(q, n, i, -1.0)
                n[i] -= 1.0
        elif d >= 1.0:
            if n[i + 1] - n[i] > 1.0:
                qn = _st_p2_parabolic(q, n, i, 1.0)
                if q[i - 1] < qn and qn < q[i + 1]:
                    q[i] = qn
                else:
                    q[i] = _st_p2_linear(q, n, i, 1.0)
                n[i] += 1.0


cdef inline void _st_p2_push(_st_p2* e, double x) noexcept nogil:
    cdef long long c = e.count
    if c < 5:
        # A. the first five observations, sorted when the fifth arrives
        e.q[c] = x
        e.count = c + 1
        if c == 4:
            _st_sort(e.q, 5)
        return
    e.count = c + 1
    _st_p2_step(e.q, e.n, <double>(c + 1) - 1.0, e.f1, e.f2, e.f3, x)


cdef void _st_p2_run(_st_p2* e, const double* xs, Py_ssize_t size) noexcept nogil:
    # push xs[0:size] into one estimator, with its state in local variables for the loop
    cdef Py_ssize_t i = 0
    cdef double q[5]
    cdef double n[5]
    cdef double f1 = e.f1, f2 = e.f2, f3 = e.f3
    cdef long long c
    cdef int j
    while i < size and e.count < 5:
        _st_p2_push(e, xs[i])
        i += 1
    if i == size:
        return
    for j in range(5):
        q[j] = e.q[j]
        n[j] = e.n[j]
    c = e.count
    while i < size:
        c += 1
        _st_p2_step(q, n, <double>c - 1.0, f1, f2, f3, xs[i])
        i += 1
    e.count = c
    for j in range(5):
        e.q[j] = q[j]
        e.n[j] = n[j]


cdef inline double _st_p2_value(const _st_p2* e) noexcept nogil:
    cdef double buf[5]
    cdef int m = <int>e.count if e.count < 5 else 5
    cdef int i, lo
    cdef double h, t, a, b, diff
    if e.count == 0:
        return NAN
    if e.count > 5:
        return e.q[2]
    for i in range(m):
        buf[i] = e.q[i]
    _st_sort(buf, m)
    # numpy.quantile's default: linear interpolation, from the nearer end
    h = <double>(m - 1) * e.p
    lo = <int>floor(h)
    t = h - <double>lo
    a = buf[lo]
    if lo + 1 >= m:
        return a
    b = buf[lo + 1]
    diff = b - a
    if t >= 0.5:
        return b - diff * (1.0 - t)
    return a + diff * t


cdef Py_ssize_t _st_first_nonfinite(const double* xs, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        if not isfinite(xs[i]):
            return i
    return -1


cdef inline double _st_coerce(object x) except? -1.0:
    """The value of x as a finite double: a fast path for float and int, else the shared rules."""
    cdef double v
    if type(x) is float:
        v = PyFloat_AS_DOUBLE(x)
        if isfinite(v):
            return v
    elif type(x) is int:
        try:
            v = PyLong_AsDouble(x)
        except OverflowError:
            pass
        else:
            return v
    return _st_coerce_real(x, "x")


cdef object _st_block(object values):
    """values as a contiguous 1-D float64 array of finite numbers (converted at most once)."""
    cdef const double[::1] mv
    cdef Py_ssize_t bad
    if (type(values) is _st_ndarray and values.dtype is _st_float64
            and values.ndim == 1 and values.flags.c_contiguous):
        mv = values
        if mv.shape[0]:
            bad = _st_first_nonfinite(&mv[0], mv.shape[0])
            if bad >= 0:
                raise ValueError(f"values must be finite, got {values[bad]!r} at index {bad}")
        return values
    return _st_as_float_block(values)


# The batch kernels run without touching Python objects; the GIL stays held, so another
# thread's push waits for the batch instead of racing it.

@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _st_w_push_block(_st_welford* w, const double[::1] xs) noexcept nogil:
    # same blocks as pushing one by one: fill the open buffer first, then reduce whole
    # blocks straight from the array, then buffer the tail
    cdef Py_ssize_t i = 0, j, size = xs.shape[0]
    cdef double bmean, bm2, x, mn, mx
    while i < size and (w.nbuf != 0 or w.count == 0):
        _st_w_push(w, xs[i])
        i += 1
    mn = w.min
    mx = w.max
    while i + _ST_BLOCK <= size:
        for j in range(i, i + _ST_BLOCK):
            x = xs[j]
            mn = x if x < mn else mn
            mx = x if x > mx else mx
        _st_block_moments(&xs[i], _ST_BLOCK, w.shift, &bmean, &bm2)
        _st_w_combine(w, _ST_BLOCK, bmean, bm2)
        i += _ST_BLOCK
    w.min = mn
    w.max = mx
    while i < size:
        _st_w_push(w, xs[i])
        i += 1


cdef void _st_p2_run3(_st_p2* a, _st_p2* b, _st_p2* e, const double* xs,
                     Py_ssize_t size) noexcept nogil:
    # three estimators side by side: their updates are independent chains the CPU overlaps
    cdef Py_ssize_t i = 0
    cdef double qa[5]
    cdef double na[5]
    cdef double qb[5]
    cdef double nb[5]
    cdef double qe[5]
    cdef double ne[5]
    cdef double m, x
    cdef long long c
    cdef int j
    while i < size and a.count < 5:  # the three always hold the same count
        _st_p2_push(a, xs[i])
        _st_p2_push(b, xs[i])
        _st_p2_push(e, xs[i])
        i += 1
    if i == size:
        return
    for j in range(5):
        qa[j] = a.q[j]
        na[j] = a.n[j]
        qb[j] = b.q[j]
        nb[j] = b.n[j]
        qe[j] = e.q[j]
        ne[j] = e.n[j]
    c = a.count
    while i < size:
        c += 1
        m = <double>c - 1.0
        x = xs[i]
        # last estimator first: measured a little faster than first to last
        _st_p2_step(qe, ne, m, e.f1, e.f2, e.f3, x)
        _st_p2_step(qb, nb, m, b.f1, b.f2, b.f3, x)
        _st_p2_step(qa, na, m, a.f1, a.f2, a.f3, x)
        i += 1
    a.count = c
    b.count = c
    e.count = c
    for j in range(5):
        a.q[j] = qa[j]
        a.n[j] = na[j]
        b.q[j] = qb[j]
        b.n[j] = nb[j]
        e.q[j] = qe[j]
        e.n[j] = ne[j]


cdef enum:
    _ST_CHUNK = 2048   # values per estimator per turn: the chunk stays in the L1/L2 cache


cdef void _st_p2_push_block(_st_p2* es, Py_ssize_t k, const double[::1] xs) noexcept nogil:
    # The estimators are independent, so feeding them chunk by chunk in turn gives exactly
    # what feeding every estimator each value in turn gives.
    cdef Py_ssize_t lo, size = xs.shape[0], j
    if size == 0:
        return
    cdef Py_ssize_t chunk
    lo = 0
    while lo < size:
        chunk = min(size - lo, <Py_ssize_t>_ST_CHUNK)
        j = 0
        while j + 3 <= k:
            _st_p2_run3(&es[j], &es[j + 1], &es[j + 2], &xs[lo], chunk)
            j += 3
        while j < k:
            _st_p2_run(&es[j], &xs[lo], chunk)
            j += 1
        lo += chunk


cdef tuple _st_w_getstate(const _st_welford* w):
    cdef int i
    return (w.count, w.shift, w.mean, w.m2, w.min, w.max,
            tuple([w.buf[i] for i in range(w.nbuf)]))


cdef int _st_w_setstate(_st_welford* w, object state) except -1:
    cdef int i
    count, shift, mean, m2, mn, mx, buf = _st_check_welford_state(state)
    w.nbuf = len(buf)
    for i in range(w.nbuf):
        w.buf[i] = buf[i]
    w.count = count
    w.shift = shift
    w.mean = mean
    w.m2 = m2
    w.min = mn
    w.max = mx
    return 0


cdef tuple _st_p2_getstate(const _st_p2* e):
    cdef int i
    return (e.count, tuple([e.q[i] for i in range(5)]), tuple([e.n[i] for i in range(5)]))


cdef int _st_p2_setstate(_st_p2* e, object state) except -1:
    cdef int i
    count, q, n = _st_check_p2_state(state)
    e.count = count
    for i in range(5):
        e.q[i] = q[i]
        e.n[i] = n[i]
    return 0


cdef tuple _st_p2_markers(const _st_p2* e):
    cdef double buf[5]
    cdef int i, m
    if e.count >= 5:
        return tuple([e.q[i] for i in range(5)])
    m = <int>e.count
    for i in range(m):
        buf[i] = e.q[i]
    _st_sort(buf, m)
    return tuple([buf[i] for i in range(m)])


cdef tuple _st_p2_positions(const _st_p2* e):
    cdef int i
    if e.count < 5:
        return tuple(range(1, e.count + 1))
    return tuple([<long long>e.n[i] for i in range(5)])


# --------------------------------------------------------------------------------------------
# the public classes


@cython.final
cdef class RunningStats:
    """Count, mean, sample variance, standard deviation, min and max of a stream in O(1) memory.

    See prodfast._stats_py.RunningStats, the readable reference of this class.
    """

    cdef _st_welford _w
    cdef object __weakref__

    def __cinit__(self):
        _st_w_reset(&self._w)

    def __init__(self):
        pass  # refuses arguments, as the twin does (a lone __cinit__(self) would ignore them)

    def push(self, x, /):
        """Add one real number; TypeError for non-numbers, ValueError for NaN/infinity."""
        _st_w_push(&self._w, _st_coerce(x))

    def push_many(self, values):
        """Add every value of an iterable; nothing is applied if any value is bad."""
        _st_w_push_block(&self._w, _st_block(values))

    def merge(self, other):
        """Fold other's stream into this one, as if its values had been pushed here."""
        if not isinstance(other, RunningStats):
            raise TypeError(f"other must be a RunningStats, got {type(other).__name__}")
        _st_w_merge(&self._w, (<RunningStats>other)._w)

    def __add__(self, other):
        if not isinstance(self, RunningStats) or not isinstance(other, RunningStats):
            return NotImplemented
        cdef RunningStats out = RunningStats.__new__(RunningStats)
        out._w = (<RunningStats>self)._w
        _st_w_merge(&out._w, (<RunningStats>other)._w)
        return out

    def clear(self):
        """Forget every value."""
        _st_w_reset(&self._w)

    @property
    def count(self):
        """How many values were pushed."""
        return _st_w_total(&self._w)

    @property
    def mean(self):
        """Arithmetic mean (NaN while empty)."""
        return _st_w_mean(&self._w)

    @property
    def variance(self):
        """Sample variance, divided by n - 1 (0.0 below two values)."""
        return _st_w_variance(&self._w)

    @property
    def stdev(self):
        """Sample standard deviation, the square root of variance."""
        return sqrt(_st_w_variance(&self._w))

    @property
    def min(self):
        """Smallest value (NaN while empty)."""
        return self._w.min if _st_w_total(&self._w) else NAN

    @property
    def max(self):
        """Largest value (NaN while empty)."""
        return self._w.max if _st_w_total(&self._w) else NAN

    def __getstate__(self):
        return _st_w_getstate(&self._w)

    def __setstate__(self, state):
        _st_w_setstate(&self._w, state)

    def __reduce__(self):
        return (type(self), (), self.__getstate__())

    def __repr__(self):
        return (
            f"RunningStats(count={self.count}, mean={self.mean!r}, "
            f"stdev={self.stdev!r}, min={self.min!r}, max={self.max!r})"
        )


@cython.final
cdef class P2Quantile:
    """One quantile p (0 < p < 1) of a stream by the P-square algorithm, in O(1) memory.

    See prodfast._stats_py.P2Quantile, the readable reference of this class.
    """

    cdef _st_p2 _e
    cdef object __weakref__

    def __cinit__(self, p):
        _st_p2_init(&self._e, _st_check_p(p))

    def __init__(self, p):
        """Track the p-quantile, 0 < p < 1 (checked and set up by __cinit__)."""

    def push(self, x, /):
        """Add one real number; TypeError for non-numbers, ValueError for NaN/infinity."""
        _st_p2_push(&self._e, _st_coerce(x))

    def push_many(self, values):
        """Add every value of an iterable; nothing is applied if any value is bad."""
        _st_p2_push_block(&self._e, 1, _st_block(values))

    def clear(self):
        """Forget every value (p stays)."""
        _st_p2_reset(&self._e)

    @property
    def p(self):
        """The probability this estimator tracks."""
        return self._e.p

    @property
    def count(self):
        """How many values were pushed."""
        return self._e.count

    @property
    def value(self):
        """The current estimate of the p-quantile (NaN while empty)."""
        return _st_p2_value(&self._e)

    @property
    def markers(self):
        """The marker heights q1..q5 (the sorted values while fewer than five)."""
        return _st_p2_markers(&self._e)

    @property
    def positions(self):
        """The actual 1-based marker positions n1..n5."""
        return _st_p2_positions(&self._e)

    def __getstate__(self):
        return (self._e.p,) + _st_p2_getstate(&self._e)

    def __setstate__(self, state):
        _st_check_state(state, "P2Quantile", 4)
        cdef _st_p2 e
        _st_p2_init(&e, _st_check_p(state[0]))
        _st_p2_setstate(&e, state[1:])
        self._e = e

    def __reduce__(self):
        return (type(self), (self._e.p,), self.__getstate__())

    def __repr__(self):
        return f"P2Quantile(p={self.p!r}, count={self.count}, value={self.value!r})"


@cython.final
cdef class Quantiles:
    """Several P2 estimators fed together: values -> {p: estimate} in the order of ps.

    See prodfast._stats_py.Quantiles, the readable reference of this class.
    """

    cdef _st_p2* _es
    cdef Py_ssize_t _k
    cdef tuple _ps
    cdef object __weakref__

    def __cinit__(self, ps=(0.5, 0.95, 0.99)):
        cdef Py_ssize_t j
        cdef tuple checked = _st_check_ps(ps)
        self._es = <_st_p2*>PyMem_Malloc(len(checked) * sizeof(_st_p2))
        if self._es is NULL:
            raise MemoryError()
        self._k = len(checked)
        self._ps = checked
        for j in range(self._k):
            _st_p2_init(&self._es[j], checked[j])

    def __init__(self, ps=(0.5, 0.95, 0.99)):
        """Track every probability in ps (checked and allocated by __cinit__)."""

    def __dealloc__(self):
        PyMem_Free(self._es)

    def push(self, x, /):
        """Add one real number to every estimator."""
        cdef double v = _st_coerce(x)
        cdef Py_ssize_t j
        for j in range(self._k):
            _st_p2_push(&self._es[j], v)

    def push_many(self, values):
        """Add every value of an iterable; nothing is applied if any value is bad."""
        _st_p2_push_block(self._es, self._k, _st_block(values))

    def clear(self):
        """Forget every value (ps stay)."""
        cdef Py_ssize_t j
        for j in range(self._k):
            _st_p2_reset(&self._es[j])

    @property
    def ps(self):
        """The probabilities tracked, in the order given."""
        return self._ps

    @property
    def count(self):
        """How many values were pushed."""
        return self._es[0].count

    @property
    def values(self):
        """{p: estimate} for every tracked probability (NaN while empty)."""
        cdef Py_ssize_t j
        return {self._es[j].p: _st_p2_value(&self._es[j]) for j in range(self._k)}

    def __getstate__(self):
        cdef Py_ssize_t j
        return (self._ps, tuple([_st_p2_getstate(&self._es[j]) for j in range(self._k)]))

    def __setstate__(self, state):
        cdef Py_ssize_t j
        _st_check_state(state, "Quantiles", 2)
        ps = _st_check_ps(state[0])
        if not isinstance(state[1], tuple) or len(state[1]) != len(ps) or len(ps) != self._k:
            raise ValueError("state is not a valid Quantiles state")
        checked = [_st_check_p2_state(s) for s in state[1]]
        for j in range(self._k):
            _st_p2_init(&self._es[j], ps[j])
            _st_p2_setstate(&self._es[j], checked[j])
        self._ps = ps

    def __reduce__(self):
        return (type(self), (self._ps,), self.__getstate__())

    def __repr__(self):
        return f"Quantiles(ps={self._ps!r}, count={self.count})"


@cython.final
cdef class LatencySummary:
    """RunningStats plus p50/p95/p99 P2 estimators, fed by one push.

    See prodfast._stats_py.LatencySummary, the readable reference of this class.
    """

    cdef _st_welford _w
    cdef _st_p2 _es[3]
    cdef object __weakref__

    def __cinit__(self):
        _st_w_reset(&self._w)
        _st_p2_init(&self._es[0], 0.5)
        _st_p2_init(&self._es[1], 0.95)
        _st_p2_init(&self._es[2], 0.99)

    def __init__(self):
        pass  # refuses arguments, as the twin does (a lone __cinit__(self) would ignore them)

    def push(self, x, /):
        """Add one real number (a latency, in any unit)."""
        cdef double v = _st_coerce(x)
        _st_w_push(&self._w, v)
        _st_p2_push(&self._es[0], v)
        _st_p2_push(&self._es[1], v)
        _st_p2_push(&self._es[2], v)

    def push_many(self, values):
        """Add every value of an iterable; nothing is applied if any value is bad."""
        cdef const double[::1] xs = _st_block(values)
        # the moments and the estimators are independent: two passes give what pushes give
        _st_w_push_block(&self._w, xs)
        _st_p2_push_block(self._es, 3, xs)

    def clear(self):
        """Forget every value."""
        _st_w_reset(&self._w)
        _st_p2_reset(&self._es[0])
        _st_p2_reset(&self._es[1])
        _st_p2_reset(&self._es[2])

    @property
    def count(self):
        """How many values were pushed."""
        return _st_w_total(&self._w)

    def snapshot(self):
        """count, mean, std_dev, min, max, p50, p95, p99 of everything pushed so far."""
        cdef _st_welford w = _st_w_folded(&self._w)
        cdef bint empty = w.count == 0
        return {
            "count": w.count,
            "mean": _st_w_mean(&w),
            "std_dev": sqrt(_st_w_variance(&w)),
            "min": NAN if empty else w.min,
            "max": NAN if empty else w.max,
            "p50": _st_p2_value(&self._es[0]),
            "p95": _st_p2_value(&self._es[1]),
            "p99": _st_p2_value(&self._es[2]),
        }

    def __getstate__(self):
        return (_st_w_getstate(&self._w),
                (_st_p2_getstate(&self._es[0]), _st_p2_getstate(&self._es[1]),
                 _st_p2_getstate(&self._es[2])))

    def __setstate__(self, state):
        cdef _st_welford w
        cdef int j
        _st_check_state(state, "LatencySummary", 2)
        if not isinstance(state[1], tuple) or len(state[1]) != 3:
            raise ValueError("state is not a valid LatencySummary state")
        checked = [_st_check_p2_state(s) for s in state[1]]
        _st_w_setstate(&w, state[0])
        self._w = w
        for j in range(3):
            _st_p2_init(&self._es[j], _st_LS_PS[j])
            _st_p2_setstate(&self._es[j], checked[j])

    def __reduce__(self):
        return (type(self), (), self.__getstate__())

    def __repr__(self):
        return f"LatencySummary(count={self.count})"
