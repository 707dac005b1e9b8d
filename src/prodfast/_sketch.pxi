# The quantile sketch: the Cython twin of prodfast._sketch_py (read that module for the
# algorithm, the guarantee and the byte format). The mapping's tables come from the twin's
# _Mapping and a key is the same integer arithmetic on the double's bits as its key(), so both
# backends produce the same buckets, the same quantiles and the same bytes.

from libc.math cimport ldexp
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memmove, memset
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from prodfast._sketch_py import (
    _check_accuracy as _qs_check_accuracy,
    _check_bucket_limit as _qs_check_bucket_limit,
    _check_quantile as _qs_check_quantile,
    _parse_sketch as _qs_parse,
    _mapping_for as _qs_mapping_for,
    _HEADER as _QS_HEADER,
    _MAGIC as _QS_MAGIC,
    _VERSION as _QS_VERSION,
)

ctypedef unsigned long long _qs_u64


ctypedef struct _qs_map:
    const int* first      # the twin's _Mapping.first, bounds and values (arrays it keeps)
    const _qs_u64* bounds
    const double* values
    int shift
    int per_octave


cdef inline int _qs_key(double x, const _qs_map* m) noexcept nogil:
    """The bucket key of |x| for x != 0 (finite): the twin's _Mapping.key, on the bits."""
    cdef _qs_u64 bits
    memcpy(&bits, &x, 8)
    bits &= 0x7FFFFFFFFFFFFFFFULL
    cdef int e = <int>(bits >> 52) - 1023  # |x| = 2**e * (1 + f / 2**52)
    if e == -1023:  # subnormal: scaled by 2**64 (exactly) it is a normal double
        x = ldexp(x, 64)
        memcpy(&bits, &x, 8)
        bits &= 0x7FFFFFFFFFFFFFFFULL
        e = <int>(bits >> 52) - 1023 - 64
    cdef _qs_u64 f = bits & 0xFFFFFFFFFFFFFULL
    cdef int j = m.first[f >> m.shift]
    j += f > m.bounds[j]
    return e * m.per_octave + j


@cython.cdivision(True)
cdef inline double _qs_value(int key, const _qs_map* m) noexcept nogil:
    """The twin's _Mapping.value: the representative of bucket key (exact scaling)."""
    cdef int q = key - 1 + 2048 * m.per_octave  # > 0: keys are >= -1074 * per_octave
    cdef int e = q / m.per_octave
    return ldexp(m.values[q - e * m.per_octave + 1], e - 2048)


cdef long long _QS_MAX_COUNT = 9223372036854775807   # 2**63 - 1
cdef Py_ssize_t _QS_HEADER_SIZE = _QS_HEADER.size
cdef enum:
    _QS_MIN_CAP = 64   # buckets allocated at first (never more than the bucket limit)
    _QS_CHUNK = 4096   # values checked, then counted, at a time in a large push_many
    _QS_FUSED_MIN = 32768   # from this many values on (and 16 per bucket of the limit)


ctypedef struct _qs_store:
    _qs_u64* bins     # bins[i] counts key base + i; zero outside lo..hi
    int base
    int cap
    int lo            # lowest and highest key in use (when total > 0); bins[lo], bins[hi] > 0
    int hi
    long long total


cdef inline void _qs_store_clear(_qs_store* s) noexcept nogil:
    if s.total and s.bins is not NULL:
        memset(&s.bins[s.lo - s.base], 0, (s.hi - s.lo + 1) * sizeof(_qs_u64))
    s.lo = 0
    s.hi = 0
    s.total = 0


ctypedef struct _qs_window:
    _qs_u64* bins     # a fresh zeroed buffer, or NULL to keep (and shift within) the current one
    int base
    int cap


cdef int _qs_prepare(_qs_store* s, int new_lo, int new_hi, int limit,
                     _qs_window* w) except -1:
    """Find room for keys new_lo..new_hi: the current buffer, or a new one (the only step that
    can fail, so it runs before anything changes)."""
    cdef int span = new_hi - new_lo + 1
    cdef int cap
    w.bins = NULL
    if s.bins is not NULL and new_lo >= s.base and new_hi < s.base + s.cap:
        w.base = s.base
        w.cap = s.cap
        return 0
    if s.bins is not NULL and s.cap >= span:
        w.cap = s.cap  # shift within the buffer: centre the keys in it
        w.base = new_lo - (s.cap - span) // 2
        return 0
    cap = 2 * span if 2 * span > _QS_MIN_CAP else _QS_MIN_CAP
    if cap > limit:
        cap = limit  # span <= limit always
    w.bins = <_qs_u64*>calloc(cap, sizeof(_qs_u64))
    if w.bins is NULL:
        raise MemoryError()
    w.cap = cap
    w.base = new_lo - (cap - span) // 2
    return 0


cdef void _qs_commit(_qs_store* s, int new_lo, int new_hi, const _qs_window* w) noexcept nogil:
    """Set the key range to new_lo..new_hi in the window w, folding the buckets below new_lo
    into new_lo (collapsing). Never fails."""
    cdef _qs_u64 folded = 0
    cdef int k, keep_lo, keep_hi, n
    cdef _qs_u64* src
    cdef _qs_u64* dst
    if s.total:
        keep_lo = s.lo if s.lo > new_lo else new_lo
        keep_hi = s.hi
        k = s.lo
        while k <= s.hi and k < new_lo:
            folded += s.bins[k - s.base]
            s.bins[k - s.base] = 0
            k += 1
    else:
        keep_lo = 1
        keep_hi = 0
    n = keep_hi - keep_lo + 1 if keep_hi >= keep_lo else 0
    if w.bins is not NULL:
        if n:
            memcpy(&w.bins[keep_lo - w.base], &s.bins[keep_lo - s.base], n * sizeof(_qs_u64))
        free(s.bins)
        s.bins = w.bins
    elif w.base != s.base:
        if n:
            src = &s.bins[keep_lo - s.base]
            dst = &s.bins[keep_lo - w.base]
            memmove(dst, src, n * sizeof(_qs_u64))
        # everything outside the kept keys (now at their new place) is zero again
        if n:
            memset(s.bins, 0, (keep_lo - w.base) * sizeof(_qs_u64))
            memset(&s.bins[keep_hi - w.base + 1], 0,
                   (w.base + w.cap - 1 - keep_hi) * sizeof(_qs_u64))
        else:
            memset(s.bins, 0, w.cap * sizeof(_qs_u64))
    s.base = w.base
    s.cap = w.cap
    s.bins[new_lo - s.base] += folded
    s.lo = new_lo
    s.hi = new_hi


cdef inline bint _qs_range_for(const _qs_store* s, int key, int limit,
                               int* new_lo, int* new_hi, int* target) noexcept nogil:
    """The key range after adding key, and the bucket the value lands in (the twin's
    _Store.add); False when key is already inside the range."""
    cdef int floor
    if s.total == 0:
        new_lo[0] = key
        new_hi[0] = key
        target[0] = key
        return True
    if key > s.hi:
        floor = key - limit + 1
        new_lo[0] = s.lo if s.lo > floor else floor
        new_hi[0] = key
        target[0] = key
        return True
    if key < s.lo:
        floor = s.hi - limit + 1
        if key < floor:
            key = floor
        target[0] = key
        new_lo[0] = key if key < s.lo else s.lo
        new_hi[0] = s.hi
        return new_lo[0] != s.lo
    target[0] = key
    return False


cdef int _qs_add(_qs_store* s, int key, int limit) except -1:
    """Count one value in bucket key (allocating when the range grows)."""
    cdef int new_lo, new_hi, target
    cdef _qs_window w
    if _qs_range_for(s, key, limit, &new_lo, &new_hi, &target):
        _qs_prepare(s, new_lo, new_hi, limit, &w)
        _qs_commit(s, new_lo, new_hi, &w)
    s.bins[target - s.base] += 1
    s.total += 1
    return 0


cdef inline void _qs_add_reserved(_qs_store* s, int key, int limit) noexcept nogil:
    """_qs_add for a store whose buffer already holds limit buckets: it never allocates."""
    cdef int new_lo, new_hi, target
    cdef _qs_window w
    if s.total and key >= s.lo and key <= s.hi:
        s.bins[key - s.base] += 1
        s.total += 1
        return
    _qs_range_for(s, key, limit, &new_lo, &new_hi, &target)
    w.bins = NULL
    w.cap = s.cap
    if new_lo >= s.base and new_hi < s.base + s.cap:
        w.base = s.base
    else:
        w.base = new_lo - (s.cap - (new_hi - new_lo + 1)) // 2
    _qs_commit(s, new_lo, new_hi, &w)
    s.bins[target - s.base] += 1
    s.total += 1


cdef int _qs_reserve_full(_qs_store* s, int limit) except -1:
    """Give the store a buffer of limit buckets (keeping its keys), so no add can allocate."""
    cdef _qs_window w
    cdef int lo = s.lo, hi = s.hi
    if s.bins is not NULL and s.cap == limit:
        return 0
    w.bins = <_qs_u64*>calloc(limit, sizeof(_qs_u64))
    if w.bins is NULL:
        raise MemoryError()
    w.cap = limit
    if s.total == 0:
        lo = 0
        hi = 0
    w.base = lo - (limit - (hi - lo + 1)) // 2
    if s.bins is NULL:
        s.bins = w.bins
        s.base = w.base
        s.cap = w.cap
        return 0
    if s.total:
        _qs_commit(s, lo, hi, &w)
    else:
        free(s.bins)
        s.bins = w.bins
        s.base = w.base
        s.cap = w.cap
    return 0


cdef int _qs_merge_prepare(_qs_store* s, const _qs_store* o, int limit,
                           int* new_lo, int* new_hi, _qs_window* w) except -1:
    """The twin's _Store.merge, first half: the merged key range and room for it."""
    cdef int floor
    w.bins = NULL
    if o.total == 0:
        return 0
    if s.total == 0:
        new_lo[0] = o.lo
        new_hi[0] = o.hi
    else:
        new_hi[0] = s.hi if s.hi > o.hi else o.hi
        new_lo[0] = s.lo if s.lo < o.lo else o.lo
    floor = new_hi[0] - limit + 1  # o may have a larger bucket limit
    if floor > new_lo[0]:
        new_lo[0] = floor
    _qs_prepare(s, new_lo[0], new_hi[0], limit, w)
    return 0


cdef void _qs_merge_commit(_qs_store* s, const _qs_u64* obins, int obase, int olo, int ohi,
                           long long ototal, int new_lo, int new_hi,
                           const _qs_window* w) noexcept nogil:
    """Second half: move to the merged range, then add the other store's buckets (o's buckets
    are read from a copy when o is s itself)."""
    cdef int k, t
    if ototal == 0:
        return
    _qs_commit(s, new_lo, new_hi, w)
    for k in range(olo, ohi + 1):
        t = k if k > new_lo else new_lo
        s.bins[t - s.base] += obins[k - obase]
    s.total += ototal


cdef inline int _qs_key_at_rank(const _qs_store* s, long long rank) noexcept nogil:
    cdef long long running = 0
    cdef int k
    for k in range(s.lo, s.hi + 1):
        running += <long long>s.bins[k - s.base]
        if running > rank:
            return k
    return s.hi


@cython.final
cdef class QuantileSketch:
    """A DDSketch-style quantile sketch: quantile(q) within relative_accuracy, mergeable.

    See prodfast._sketch_py.QuantileSketch, the readable reference of this class.
    """

    cdef double _a
    cdef int _limit
    cdef _qs_map _m
    cdef object _mapping  # owns the arrays _m points into
    cdef _qs_store _neg
    cdef _qs_store _pos
    cdef long long _zeros
    cdef long long _count
    cdef double _sum
    cdef double _min
    cdef double _max
    cdef object __weakref__

    def __cinit__(self, relative_accuracy=0.01, bucket_limit=2048):
        cdef double a = _qs_check_accuracy(relative_accuracy)
        cdef int limit = _qs_check_bucket_limit(bucket_limit)
        self._set_params(a, limit)
        self._reset()

    def __init__(self, relative_accuracy=0.01, bucket_limit=2048):
        """Checked and set up by __cinit__."""

    def __dealloc__(self):
        free(self._neg.bins)
        free(self._pos.bins)

    cdef int _set_params(self, double a, int limit) except -1:
        m = _qs_mapping_for(a)
        cdef const int[::1] first = m.arrays[0]
        cdef const _qs_u64[::1] bounds = m.arrays[1]
        cdef const double[::1] values = m.arrays[2]
        self._mapping = m
        self._m.first = &first[0]
        self._m.bounds = &bounds[0]
        self._m.values = &values[0]
        self._m.shift = m.shift
        self._m.per_octave = m.per_octave
        self._a = a
        self._limit = limit
        return 0

    cdef void _reset(self) noexcept:
        _qs_store_clear(&self._neg)
        _qs_store_clear(&self._pos)
        self._zeros = 0
        self._count = 0
        self._sum = 0.0
        self._min = INFINITY
        self._max = -INFINITY

    cdef double _value(self, int key) noexcept nogil:
        return _qs_value(key, &self._m)

    # binding(False): a METH_O method, called as directly as list.append; _signatures.pxi
    # gives it an adapter that words a call with no or two arguments as the twin does
    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def push(self, x, /):
        """Add one real number; TypeError for non-numbers, ValueError for NaN/infinity."""
        cdef double v = _st_coerce(x)
        if self._count >= _QS_MAX_COUNT:
            raise OverflowError("the sketch holds 2**63 - 1 values, the most it can count")
        cdef _qs_store* pos = &self._pos
        cdef int k
        if v > 0.0:
            k = _qs_key(v, &self._m)
            if pos.total and k >= pos.lo and k <= pos.hi:
                pos.bins[k - pos.base] += 1
                pos.total += 1
            else:
                _qs_add(pos, k, self._limit)
        elif v < 0.0:
            _qs_add(&self._neg, _qs_key(v, &self._m), self._limit)
        else:
            self._zeros += 1
        self._count += 1
        self._sum += v
        if v < self._min:
            self._min = v
        if v > self._max:
            self._max = v

    def push_many(self, values):
        """Add every value of an iterable; nothing is applied if any value is bad."""
        cdef const double[::1] xs
        cdef Py_ssize_t size, bad
        cdef double mn = INFINITY, mx = -INFINITY
        if (type(values) is _st_ndarray and values.dtype is _st_float64
                and values.ndim == 1 and values.flags.c_contiguous):
            xs = values  # checked by the extremes pass below (one pass over the array)
            checked = False
        else:
            xs = _st_as_float_block(values)
            checked = True
        size = xs.shape[0]
        if size == 0:
            return
        if size > _QS_MAX_COUNT - self._count:
            raise OverflowError("the sketch cannot count more than 2**63 - 1 values")
        if size >= _QS_FUSED_MIN and size >= 16 * <Py_ssize_t>self._limit:
            # a large array: checked and counted chunk by chunk, read from memory once
            if not self._push_chunks(&xs[0], size):
                bad = _st_first_nonfinite(&xs[0], size)
                raise ValueError(f"values must be finite, got {values[bad]!r} at index {bad}")
            return
        if not _qs_extremes(&xs[0], size, &mn, &mx) and not checked:
            bad = _st_first_nonfinite(&xs[0], size)
            raise ValueError(f"values must be finite, got {values[bad]!r} at index {bad}")
        # room for limit buckets in every store the batch touches: the loop cannot fail
        if mx > 0.0:
            _qs_reserve_full(&self._pos, self._limit)
        if mn < 0.0:
            _qs_reserve_full(&self._neg, self._limit)
        self._push_block(&xs[0], size, mn, mx)

    cdef bint _push_chunks(self, const double* xs, Py_ssize_t size) except -1:
        """push_many for a large array: each chunk (small enough to stay in cache) is checked,
        then counted. A bad value restores the state saved first, so nothing is applied: with
        both stores reserved at limit buckets no count moves a buffer, and saving them costs
        at most 1/8 of reading the array. False (state unchanged) if some value is bad."""
        cdef Py_ssize_t start, n, limit = self._limit
        cdef double mn, mx
        _qs_reserve_full(&self._pos, self._limit)
        _qs_reserve_full(&self._neg, self._limit)
        cdef _qs_u64* saved = <_qs_u64*>malloc(2 * limit * sizeof(_qs_u64))
        if saved is NULL:
            raise MemoryError()
        memcpy(saved, self._pos.bins, limit * sizeof(_qs_u64))
        memcpy(&saved[limit], self._neg.bins, limit * sizeof(_qs_u64))
        cdef _qs_store pos = self._pos, neg = self._neg
        cdef long long zeros = self._zeros, count = self._count
        cdef double total = self._sum, lowest = self._min, highest = self._max
        for start in range(0, size, _QS_CHUNK):
            n = size - start if size - start < _QS_CHUNK else _QS_CHUNK
            if not _qs_extremes(&xs[start], n, &mn, &mx):
                memcpy(pos.bins, saved, limit * sizeof(_qs_u64))
                memcpy(neg.bins, &saved[limit], limit * sizeof(_qs_u64))
                free(saved)
                self._pos = pos
                self._neg = neg
                self._zeros = zeros
                self._count = count
                self._sum = total
                self._min = lowest
                self._max = highest
                return False
            self._push_block(&xs[start], n, mn, mx)
        free(saved)
        return True

    cdef void _push_block(self, const double* xs, Py_ssize_t size, double mn,
                          double mx) noexcept nogil:
        # The hot path: a positive normal value whose bucket is already in the range. The key
        # stays in its biased form t = key + 1023 * per_octave (the exponent field times
        # per_octave, plus the bucket of the fraction), the range in the same form; the store's
        # fields live in locals (a store to bins cannot alias them) and its total is derived
        # from the values that were not positive.
        cdef _qs_store* pos = &self._pos
        cdef _qs_store* neg = &self._neg
        cdef const int* first = self._m.first
        cdef const _qs_u64* bounds = self._m.bounds
        cdef int shift = self._m.shift, per = self._m.per_octave
        cdef int off = 1023 * per
        cdef _qs_u64* bins = pos.bins
        cdef int tbase = pos.base + off, tlo = pos.lo + off
        cdef unsigned int width = pos.hi - pos.lo + 1 if pos.total else 0
        cdef long long ptotal0 = pos.total
        cdef Py_ssize_t zeros = 0, negs = 0, i
        cdef double x, total = self._sum
        cdef _qs_u64 bits, f
        cdef int limit = self._limit, t, j
        for i in range(size):
            x = xs[i]
            total += x
            memcpy(&bits, &x, 8)
            if <long long>bits > 0:  # x > 0.0 (x is finite)
                t = <int>(bits >> 52)
                if t:
                    f = bits & 0xFFFFFFFFFFFFFULL
                    j = first[f >> shift]
                    j += f > bounds[j]
                    t = t * per + j
                else:  # subnormal
                    t = _qs_key(x, &self._m) + off
                if <unsigned int>(t - tlo) < width:
                    bins[t - tbase] += 1
                else:
                    pos.total = ptotal0 + i - zeros - negs
                    _qs_add_reserved(pos, t - off, limit)
                    bins = pos.bins
                    tbase = pos.base + off
                    tlo = pos.lo + off
                    width = pos.hi - pos.lo + 1
            elif bits << 1:  # x < 0.0
                _qs_add_reserved(neg, _qs_key(x, &self._m), limit)
                negs += 1
            else:
                zeros += 1
        pos.total = ptotal0 + size - zeros - negs
        self._zeros += zeros
        self._count += size
        self._sum = total
        if mn < self._min:
            self._min = mn
        if mx > self._max:
            self._max = mx

    cdef int _check_mergeable(self, other) except -1:
        if not isinstance(other, QuantileSketch):
            raise TypeError(f"other must be a QuantileSketch, got {type(other).__name__}")
        if (<QuantileSketch>other)._a != self._a:
            raise ValueError(
                f"other must have the same relative_accuracy ({self._a!r}), "
                f"got {(<QuantileSketch>other)._a!r}"
            )
        return 0

    cdef int _merge_from(self, QuantileSketch o) except -1:
        cdef int nlo = 0, nhi = 0, plo = 0, phi = 0
        cdef _qs_window wn, wp
        if o is self:
            o = self._copy()
        if o._count > _QS_MAX_COUNT - self._count:
            raise OverflowError("the merged sketch would count more than 2**63 - 1 values")
        _qs_merge_prepare(&self._neg, &o._neg, self._limit, &nlo, &nhi, &wn)
        try:
            _qs_merge_prepare(&self._pos, &o._pos, self._limit, &plo, &phi, &wp)
        except MemoryError:
            free(wn.bins)
            raise
        _qs_merge_commit(&self._neg, o._neg.bins, o._neg.base, o._neg.lo, o._neg.hi,
                         o._neg.total, nlo, nhi, &wn)
        _qs_merge_commit(&self._pos, o._pos.bins, o._pos.base, o._pos.lo, o._pos.hi,
                         o._pos.total, plo, phi, &wp)
        self._zeros += o._zeros
        self._count += o._count
        self._sum += o._sum
        if o._min < self._min:
            self._min = o._min
        if o._max > self._max:
            self._max = o._max
        return 0

    cdef QuantileSketch _copy(self):
        cdef QuantileSketch out = QuantileSketch.__new__(QuantileSketch, self._a, self._limit)
        out._merge_from(self)
        return out

    def merge(self, other):
        """Fold other's values into this sketch (exactly), leaving other unchanged."""
        self._check_mergeable(other)
        self._merge_from(<QuantileSketch>other)

    def __add__(self, other):
        if not isinstance(self, QuantileSketch) or not isinstance(other, QuantileSketch):
            return NotImplemented
        (<QuantileSketch>self)._check_mergeable(other)
        cdef QuantileSketch out = (<QuantileSketch>self)._copy()
        out._merge_from(<QuantileSketch>other)
        return out

    def clear(self):
        """Forget every value (the accuracy and the bucket limit stay)."""
        self._reset()

    @property
    def relative_accuracy(self):
        """The promised relative accuracy of every quantile."""
        return self._a

    @property
    def bucket_limit(self):
        """The most buckets kept per sign (see prodfast._sketch_py for collapsing)."""
        return self._limit

    @property
    def count(self):
        """How many values were pushed."""
        return self._count

    @property
    def sum(self):
        """The sum of the values, added in the order they came (0.0 while empty)."""
        return self._sum

    @property
    def min(self):
        """Smallest value (NaN while empty)."""
        return self._min if self._count else NAN

    @property
    def max(self):
        """Largest value (NaN while empty)."""
        return self._max if self._count else NAN

    def quantile(self, q):
        """The value of rank floor(q * (count - 1)), within the relative accuracy."""
        cdef double qv
        cdef long long rank
        cdef double r, y
        if type(q) is float and 0.0 <= <double>q <= 1.0:
            qv = <double>q  # what _check_quantile returns for it, without the call
        else:
            qv = _qs_check_quantile(q)
        if self._count == 0:
            return NAN
        # the twin's min(floor(q * (count - 1)), count - 1): near 2**63 the product can round
        # past the last rank, and 2**63 itself does not fit a long long
        r = floor(qv * <double>(self._count - 1))
        rank = self._count - 1
        if r < 9223372036854775808.0 and <long long>r < rank:
            rank = <long long>r
        if rank == 0:
            return self._min
        if rank == self._count - 1:
            return self._max
        if rank < self._neg.total:
            y = -self._value(_qs_key_at_rank(&self._neg, self._neg.total - 1 - rank))
        elif rank < self._neg.total + self._zeros:
            y = 0.0
        else:
            y = self._value(_qs_key_at_rank(&self._pos, rank - self._neg.total - self._zeros))
        y = self._min if self._min > y else y
        return self._max if self._max < y else y

    def to_bytes(self):
        """The sketch in a versioned little-endian format (the same bytes on both backends)."""
        # the layout is _sketch_py's; the counters are copied as they sit in memory, which is
        # little-endian on every platform the wheels are built for
        cdef Py_ssize_t nn = self._neg.hi - self._neg.lo + 1 if self._neg.total else 0
        cdef Py_ssize_t np_ = self._pos.hi - self._pos.lo + 1 if self._pos.total else 0
        head = _QS_HEADER.pack(_QS_MAGIC, _QS_VERSION, self._a, self._limit, self._count,
                               self._zeros, self._sum, self._min, self._max)
        cdef Py_ssize_t size = _QS_HEADER_SIZE + 16 + 8 * (nn + np_)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
        cdef char* p = PyBytes_AS_STRING(out)
        memcpy(p, PyBytes_AS_STRING(head), _QS_HEADER_SIZE)
        p += _QS_HEADER_SIZE
        p = _qs_write_store(p, &self._neg, nn)
        _qs_write_store(p, &self._pos, np_)
        return out

    @classmethod
    def from_bytes(cls, data):
        """A sketch from to_bytes() output; ValueError if data is not a valid sketch."""
        parsed = _qs_parse(data, _qs_total)
        cdef QuantileSketch out = QuantileSketch.__new__(QuantileSketch, parsed[0], parsed[1])
        out._load(parsed)
        return out

    cdef int _load(self, tuple parsed) except -1:
        """Replace the state by a checked one (_parse_sketch's result); all or nothing."""
        cdef _qs_store neg, pos
        cdef int j
        a, limit, zeros, total_sum, mn, mx, stores = parsed
        neg.bins = NULL
        pos.bins = NULL
        try:
            _qs_fill(&neg, stores[0][0], stores[0][1], stores[0][2])
            _qs_fill(&pos, stores[1][0], stores[1][1], stores[1][2])
        except BaseException:
            free(neg.bins)
            free(pos.bins)
            raise
        free(self._neg.bins)
        free(self._pos.bins)
        self._neg = neg
        self._pos = pos
        self._set_params(a, limit)
        self._zeros = zeros
        self._count = neg.total + zeros + pos.total
        self._sum = total_sum
        self._min = mn
        self._max = mx
        return 0

    def __getstate__(self):
        return self.to_bytes()

    def __setstate__(self, state):
        self._load(_qs_parse(state, _qs_total))

    def __reduce__(self):
        return (type(self), (self._a, self._limit), self.__getstate__())

    def __repr__(self):
        return (
            f"QuantileSketch(relative_accuracy={self._a!r}, count={self.count}, "
            f"min={self.min!r}, max={self.max!r})"
        )


cdef extern from *:
    """
    /* Smallest and largest of xs[0..n-1], each lane keeping the first of equal values (x < m ? x
       : m, which is what MINPD computes); 0 if some value is NaN. Several independent minima
       and maxima, so that no comparison waits for the previous one. */
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    static int prodfast_qs_minmax(const double* xs, Py_ssize_t n, double* mn_out, double* mx_out) {
        __m128d mn0 = _mm_set1_pd(INFINITY), mn1 = mn0, mx0 = _mm_set1_pd(-INFINITY), mx1 = mx0;
        __m128d bad = _mm_setzero_pd(), a, b;
        double lanes[2], mn, mx, x;
        Py_ssize_t i = 0;
        int nan;
        for (; i + 4 <= n; i += 4) {
            a = _mm_loadu_pd(xs + i);
            b = _mm_loadu_pd(xs + i + 2);
            mn0 = _mm_min_pd(a, mn0);
            mn1 = _mm_min_pd(b, mn1);
            mx0 = _mm_max_pd(a, mx0);
            mx1 = _mm_max_pd(b, mx1);
            bad = _mm_or_pd(bad, _mm_or_pd(_mm_cmpunord_pd(a, a), _mm_cmpunord_pd(b, b)));
        }
        mn0 = _mm_min_pd(mn0, mn1);
        mx0 = _mm_max_pd(mx0, mx1);
        nan = _mm_movemask_pd(bad) != 0;
        _mm_storeu_pd(lanes, mn0);
        mn = lanes[0] < lanes[1] ? lanes[0] : lanes[1];
        _mm_storeu_pd(lanes, mx0);
        mx = lanes[0] > lanes[1] ? lanes[0] : lanes[1];
    #else
    static int prodfast_qs_minmax(const double* xs, Py_ssize_t n, double* mn_out, double* mx_out) {
        double mn0 = INFINITY, mn1 = INFINITY, mx0 = -INFINITY, mx1 = -INFINITY, mn, mx, x, y;
        Py_ssize_t i = 0;
        int nan = 0;
        for (; i + 2 <= n; i += 2) {
            x = xs[i];
            y = xs[i + 1];
            mn0 = x < mn0 ? x : mn0;
            mn1 = y < mn1 ? y : mn1;
            mx0 = x > mx0 ? x : mx0;
            mx1 = y > mx1 ? y : mx1;
            nan |= (x != x) | (y != y);
        }
        mn = mn0 < mn1 ? mn0 : mn1;
        mx = mx0 > mx1 ? mx0 : mx1;
    #endif
        for (; i < n; i++) {
            x = xs[i];
            mn = x < mn ? x : mn;
            mx = x > mx ? x : mx;
            nan |= x != x;
        }
        *mn_out = mn;
        *mx_out = mx;
        return !nan;
    }
    """
    bint _qs_minmax "prodfast_qs_minmax" (const double* xs, Py_ssize_t n, double* mn_out,
                                          double* mx_out) noexcept nogil


cdef bint _qs_extremes(const double* xs, Py_ssize_t size, double* mn_out,
                       double* mx_out) noexcept nogil:
    """Smallest and largest value, the first of equal ones (as pushing one by one keeps them:
    0.0 or -0.0); False if some value is NaN or infinite."""
    cdef double mn, mx
    cdef Py_ssize_t i
    cdef bint ok = _qs_minmax(xs, size, &mn, &mx)
    if mn == 0.0 or mx == 0.0:  # which zero came first (the lanes cannot tell)
        for i in range(size):
            if xs[i] == 0.0:
                if mn == 0.0:
                    mn = xs[i]
                if mx == 0.0:
                    mx = xs[i]
                break
    mn_out[0] = mn
    mx_out[0] = mx
    return ok and mn != -INFINITY and mx != INFINITY


cdef char* _qs_write_store(char* p, const _qs_store* s, Py_ssize_t n) noexcept:
    cdef int lo = s.lo if n else 0
    cdef unsigned int count = <unsigned int>n
    memcpy(p, &lo, 4)
    memcpy(p + 4, &count, 4)
    p += 8
    if n:
        memcpy(p, &s.bins[s.lo - s.base], n * sizeof(_qs_u64))
    return p + 8 * n


def _qs_total(counts):
    """The exact sum of a uint64 count array, or 2**63 when it exceeds 2**63 - 1."""
    cdef const _qs_u64[::1] mv = counts
    cdef _qs_u64 total = 0, c
    cdef Py_ssize_t i
    for i in range(mv.shape[0]):
        c = mv[i]
        if c > <_qs_u64>_QS_MAX_COUNT - total:
            return _QS_MAX_COUNT + 1
        total += c
    return total


cdef int _qs_fill(_qs_store* s, int lo, object counts, long long total) except -1:
    """A store holding counts (a checked uint64 array) for keys lo, lo + 1, ..."""
    cdef const _qs_u64[::1] mv = counts
    cdef Py_ssize_t n = mv.shape[0]
    s.base = lo
    s.cap = 0
    s.lo = 0
    s.hi = 0
    s.total = 0
    s.bins = NULL
    if n == 0:
        return 0
    s.bins = <_qs_u64*>calloc(n, sizeof(_qs_u64))
    if s.bins is NULL:
        raise MemoryError()
    memcpy(s.bins, &mv[0], n * sizeof(_qs_u64))  # little-endian hosts: the format's order
    s.cap = <int>n
    s.total = total
    s.lo = lo
    s.hi = lo + <int>n - 1
    return 0
