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

ctypedef struct _st_welford:
    long long count
    double shift
    double mean
    double m2
    double min
    double max

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
    w.shift = 0.0
    w.mean = 0.0
    w.m2 = 0.0
    w.min = INFINITY
    w.max = -INFINITY


@cython.cdivision(True)
cdef inline void _st_w_push(_st_welford* w, double x) noexcept nogil:
    cdef long long c = w.count + 1
    cdef double y, delta
    w.count = c
    if c == 1:
        w.shift = x
    y = x - w.shift
    delta = y - w.mean
    w.mean += delta / <double>c          # c >= 1
    w.m2 += delta * (y - w.mean)
    if x < w.min:
        w.min = x
    if x > w.max:
        w.max = x


@cython.cdivision(True)
cdef inline void _st_w_merge(_st_welford* w, _st_welford o) noexcept nogil:
    cdef double na, total, delta
    if o.count == 0:
        return
    if w.count == 0:
        w[0] = o
        return
    na = <double>w.count
    total = <double>(w.count + o.count)   # > 0
    delta = ((o.shift - w.shift) + o.mean) - w.mean
    w.mean += delta * <double>o.count / total
    w.m2 += o.m2 + delta * delta * na * <double>o.count / total
    w.count = w.count + o.count
    if o.min < w.min:
        w.min = o.min
    if o.max > w.max:
        w.max = o.max


cdef inline double _st_w_mean(const _st_welford* w) noexcept nogil:
    return w.shift + w.mean if w.count else NAN


@cython.cdivision(True)
cdef inline double _st_w_variance(const _st_welford* w) noexcept nogil:
    return w.m2 / <double>(w.count - 1) if w.count > 1 else 0.0


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


cdef inline void _st_p2_push(_st_p2* e, double x) noexcept nogil:
    cdef double* q = e.q
    cdef double* n = e.n
    cdef long long c = e.count
    cdef int i, k
    cdef double m, d, s, qn
    cdef double desired[4]
    if c < 5:
        # A. the first five observations, sorted when the fifth arrives
        q[c] = x
        e.count = c + 1
        if c == 4:
            _st_sort(q, 5)
        return
    c += 1
    e.count = c
    # B.1 the cell k with q[k] <= x < q[k+1], extending the extremes
    if x < q[0]:
        q[0] = x
        k = 0
    elif x < q[1]:
        k = 0
    elif x < q[2]:
        k = 1
    elif x < q[3]:
        k = 2
    elif x <= q[4]:
        k = 3
    else:
        q[4] = x
        k = 3
    # B.2 markers above the cell move up; desired positions come from the count
    for i in range(k + 1, 5):
        n[i] += 1.0
    m = <double>c - 1.0
    desired[1] = 1.0 + m * e.f1
    desired[2] = 1.0 + m * e.f2
    desired[3] = 1.0 + m * e.f3
    # B.3 adjust markers 2-4 that are off by one position or more
    for i in range(1, 4):
        d = desired[i] - n[i]
        if (d >= 1.0 and n[i + 1] - n[i] > 1.0) or (d <= -1.0 and n[i - 1] - n[i] < -1.0):
            s = 1.0 if d >= 0.0 else -1.0
            qn = _st_p2_parabolic(q, n, i, s)
            if q[i - 1] < qn and qn < q[i + 1]:
                q[i] = qn
            else:
                q[i] = _st_p2_linear(q, n, i, s)
            n[i] += s


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
    cdef Py_ssize_t i
    for i in range(xs.shape[0]):
        _st_w_push(w, xs[i])


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _st_p2_push_block(_st_p2* es, Py_ssize_t k, const double[::1] xs) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double x
    for i in range(xs.shape[0]):
        x = xs[i]
        for j in range(k):
            _st_p2_push(&es[j], x)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _st_ls_push_block(_st_welford* w, _st_p2* es, const double[::1] xs) noexcept nogil:
    cdef Py_ssize_t i
    cdef double x
    for i in range(xs.shape[0]):
        x = xs[i]
        _st_w_push(w, x)
        _st_p2_push(&es[0], x)
        _st_p2_push(&es[1], x)
        _st_p2_push(&es[2], x)


cdef tuple _st_w_getstate(const _st_welford* w):
    return (w.count, w.shift, w.mean, w.m2, w.min, w.max)


cdef int _st_w_setstate(_st_welford* w, object state) except -1:
    count, shift, mean, m2, mn, mx = _st_check_welford_state(state)
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

    def push(self, x):
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
        return self._w.count

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
        return self._w.min if self._w.count else NAN

    @property
    def max(self):
        """Largest value (NaN while empty)."""
        return self._w.max if self._w.count else NAN

    def __getstate__(self):
        return _st_w_getstate(&self._w)

    def __setstate__(self, state):
        _st_check_state(state, "RunningStats", 6)
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

    def push(self, x):
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

    def __dealloc__(self):
        PyMem_Free(self._es)

    def push(self, x):
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
        if len(state[1]) != len(ps) or len(ps) != self._k:
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

    def push(self, x):
        """Add one real number (a latency, in any unit)."""
        cdef double v = _st_coerce(x)
        _st_w_push(&self._w, v)
        _st_p2_push(&self._es[0], v)
        _st_p2_push(&self._es[1], v)
        _st_p2_push(&self._es[2], v)

    def push_many(self, values):
        """Add every value of an iterable; nothing is applied if any value is bad."""
        _st_ls_push_block(&self._w, self._es, _st_block(values))

    def clear(self):
        """Forget every value."""
        _st_w_reset(&self._w)
        _st_p2_reset(&self._es[0])
        _st_p2_reset(&self._es[1])
        _st_p2_reset(&self._es[2])

    @property
    def count(self):
        """How many values were pushed."""
        return self._w.count

    def snapshot(self):
        """count, mean, std_dev, min, max, p50, p95, p99 of everything pushed so far."""
        cdef bint empty = self._w.count == 0
        return {
            "count": self._w.count,
            "mean": _st_w_mean(&self._w),
            "std_dev": sqrt(_st_w_variance(&self._w)),
            "min": NAN if empty else self._w.min,
            "max": NAN if empty else self._w.max,
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
        _st_check_state(state[0], "LatencySummary", 6)
        if len(state[1]) != 3:
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
