"""A mergeable quantile sketch with a relative-error guarantee: the pure-Python twin.

``QuantileSketch`` follows DDSketch (Masson, Rim & Lee, "DDSketch: a fast and fully-mergeable
quantile sketch with relative-error guarantees", VLDB 2019). A value ``x > 0`` falls into the
bucket ``k`` covering ``(gamma**(k-1), gamma**k]``; a bucket whose bounds have a ratio of at most
``(1 + a) / (1 - a)`` (``a`` the relative accuracy) is represented by ``2 * lo * hi / (lo + hi)``,
whose relative distance to every value of the bucket is at most ``a``. Here ``gamma = 2**(1/m)``
with ``m``, the number of buckets per power of two, the least one that keeps ``gamma`` within
``(1 + a) / (1 - a)``: then a key comes from the bits of the double (its exponent, and a table
lookup plus one comparison on its fraction), with no logarithm, and the same integers on every
backend and platform (``_Mapping`` has the details and the proof, checked exactly when a
mapping is built). Negative values go to a second set of buckets by their magnitude, zeros to a
counter of their own. Each bucket keeps an exact integer count, so two sketches merge exactly:
the merged sketch is the sketch of both streams.

What ``quantile(q)`` denotes: with ``n = count`` values sorted ascending, ``x_r`` is the value at
0-based rank ``r = floor(q * (n - 1))`` (``q * (n - 1)`` evaluated in floating point, as
ddsketch does, and never above ``n - 1``; numpy's ``quantile(..., method="lower")``). The answer ``y`` satisfies
``|y - x_r| <= a * |x_r|`` for every ``q`` in [0, 1] and every input (zeros are exact), and is
clamped to ``[min, max]`` (which never moves it away from ``x_r``); ranks 0 and ``n - 1`` are
answered with the exact ``min`` and ``max``. The one exception is an answer below the smallest
normal double (2.2e-308), rounded to the nearest subnormal: that can add up to 2.5e-324, half
the smallest subnormal, to its error.

Bounded memory: each sign keeps at most ``bucket_limit`` consecutive buckets (8 bytes each);
covering values from ``lo`` to ``hi`` takes ``log2(hi / lo) * m`` buckets, about
``ln(hi / lo) / (2 * a)``, so the default 2048 span a factor of about 4e17 at a = 0.01 (m = 35)
but only about 60 at a = 0.001 (m = 347; raise the limit with the accuracy). When a value would
need a wider range, the lowest-magnitude buckets of that sign are collapsed into the lowest
bucket kept (as ddsketch's collapsing-lowest store does). The guarantee then still holds for
every quantile whose true value ``x`` has ``|x| > M / gamma**(bucket_limit - 2)`` (``M`` the
largest magnitude of that sign; ``gamma = 2**(1/m)``, up to the boundaries' rounding to
doubles, and at most ``(1 + a) / (1 - a)``); a quantile that falls among the collapsed values is answered with the lowest kept bucket's value, which
overestimates its magnitude. Collapsing depends only on the multiset of values, never on their
order, so merging stays exact.

Accepted values are those of the statistics classes (real numbers; NaN/infinity raise
ValueError). ``push_many`` converts and checks everything before changing anything. The total
count is at most 2**63 - 1: a push, batch or merge beyond that raises OverflowError and applies
nothing.

``to_bytes()`` writes a versioned little-endian format, byte-identical on both backends:
the header ``_HEADER`` (magic ``PFQS``, version 2, relative_accuracy, bucket_limit, count, zero
count, sum, min, max), then for the negative and the positive buckets the lowest key, the number
of buckets and their uint64 counts (first and last never zero). Every field is checked by
``from_bytes``, which raises ValueError for anything that is not a sketch this module could
have written. Version 1 (written during the development of 0.2, whose keys were
``ceil(log(x) / log((1 + a) / (1 - a)))``) is refused with a ValueError that says so: its
buckets do not convert exactly into these.
"""

from __future__ import annotations

import decimal
import functools
import math
import numbers
import struct
import sys
import threading

import numpy as np

from ._stats_py import _as_float_block, _coerce_real

__all__ = ["QuantileSketch"]

_INF = math.inf
_NAN = math.nan

_MIN_ACCURACY = 1e-4
_TIGHTEN = 1.0 - 1e-6  # n is chosen for this much tighter an accuracy: room for the rounding
# of the boundaries to doubles (the exact check in _Mapping then never fails)
_MAX_BUCKET_LIMIT = 1 << 20
_MAX_COUNT = (1 << 63) - 1  # the total count stays a signed 64-bit integer on both backends

_MAGIC = b"PFQS"
_VERSION = 2
# magic, version, relative_accuracy, bucket_limit, count, zero_count, sum, min, max
_HEADER = struct.Struct("<4sBdIQQddd")
_STORE_HEADER = struct.Struct("<iI")  # lowest key, number of buckets (then that many uint64)


def _check_accuracy(relative_accuracy):
    if isinstance(relative_accuracy, bool) or not isinstance(relative_accuracy, numbers.Real):
        raise TypeError(
            f"relative_accuracy must be a real number, got {type(relative_accuracy).__name__}"
        )
    a = float(relative_accuracy)
    if not _MIN_ACCURACY <= a < 1.0:
        raise ValueError(f"relative_accuracy must be in [0.0001, 1), got {relative_accuracy!r}")
    return a


def _check_bucket_limit(bucket_limit):
    if isinstance(bucket_limit, bool) or not isinstance(bucket_limit, numbers.Integral):
        raise TypeError(f"bucket_limit must be an int, got {type(bucket_limit).__name__}")
    n = int(bucket_limit)
    if not 1 <= n <= _MAX_BUCKET_LIMIT:
        raise ValueError(f"bucket_limit must be between 1 and {_MAX_BUCKET_LIMIT}, got {n}")
    return n


def _check_quantile(q):
    if isinstance(q, bool) or not isinstance(q, numbers.Real):
        raise TypeError(f"q must be a real number, got {type(q).__name__}")
    v = float(q)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    return v


@functools.lru_cache(maxsize=64)
def _mapping_for(relative_accuracy):
    """The mapping of an accuracy, computed once (constructors and from_bytes reuse it)."""
    return _Mapping(relative_accuracy)


_TWO52 = 1 << 52
_FRAC_MASK = _TWO52 - 1


def _per_octave(a):
    """The least n with 2**(1/n) <= (1 + a) / (1 - a), in decimal arithmetic (the same n on
    every platform, whatever its libm)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        da = decimal.Decimal(a)  # exact
        ratio = decimal.Decimal(2).ln() / ((1 + da) / (1 - da)).ln()
        return max(1, int(ratio.to_integral_value(rounding=decimal.ROUND_CEILING)))


def _boundaries(n):
    """The fraction bits (x = 1 + f / 2**52) of 2**(i/n) for i = 0 .. n - 1, rounded down, then
    2**52 for 2.0: integer arithmetic only, so every platform gets the same ones."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        ratio = int(decimal.Decimal(2) ** (decimal.Decimal(1) / n) * (1 << 128))  # 2**(1/n)
    power = 1 << 128  # 2**(i/n) in fixed point with 128 fraction bits
    bounds = [0]
    for _ in range(1, n):
        power = (power * ratio) >> 128
        bounds.append((power >> 76) - _TWO52)
    bounds.append(_TWO52)
    return bounds


def _within(value, lo, hi, a):
    """Exactly (in rationals): |value - x| <= a * x for every x in (lo, hi] (all positive)."""
    vn, vd = value.as_integer_ratio()
    an, ad = a.as_integer_ratio()
    lon, lod = lo.as_integer_ratio()
    hin, hid = hi.as_integer_ratio()
    # value <= (1 + a) * lo  and  value >= (1 - a) * hi
    return (vn * ad * lod <= (ad + an) * lon * vd) and (vn * ad * hid >= (ad - an) * hin * vd)


class _Mapping:
    """Values to bucket keys and back, without a logarithm: exact logarithmic buckets.

    With ``m`` buckets per power of two (the least ``m`` for which ``2**(1/m)`` is at most
    ``(1 + a) / (1 - a)``), bucket ``k = e * m + j`` (``1 <= j <= m``) holds the magnitudes in
    ``(2**e * B[j-1], 2**e * B[j]]``, ``B[j]`` the double next below ``2**(j/m)`` (``B[0] = 1``,
    ``B[m] = 2``): DDSketch's logarithmic mapping for ``gamma = 2**(1/m)``, so the key of ``x``
    is ``ceil(log(x) / log(gamma))`` but for the boundaries' last-bit rounding. A key is found
    from the bits of the double: its exponent ``e`` and the top bits of its fraction ``f`` index
    ``first``, the bucket at the start of that slice of fractions; a slice is never wider than
    the narrowest bucket, so one comparison of ``f`` with the next boundary finishes the job.
    Every step is integer arithmetic and comparisons, so the compiled core, this twin and any
    platform agree on every key. Each bucket is represented by ``2 * lo * hi / (lo + hi)``
    (correctly rounded), whose distance to every value of the bucket is checked, in exact
    rational arithmetic when the mapping is built, to be at most ``a`` times that value.
    """

    __slots__ = (
        "per_octave",
        "gamma",
        "shift",
        "first",
        "bounds",
        "values",
        "max_key",
        "min_key",
        "arrays",
    )

    def __init__(self, relative_accuracy):
        a = relative_accuracy
        n = _per_octave(a * _TIGHTEN)
        while True:
            bounds = _boundaries(n)
            # bucket j (1..n) of the octave [1, 2) is (lo, hi]; its representative, a double
            edges = [
                (_TWO52 + lo, _TWO52 + hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
            ]
            values = [0.0] + [(2 * lo * hi) / ((lo + hi) << 52) for lo, hi in edges]
            if all(
                _within(v, lo / _TWO52, hi / _TWO52, a)
                for v, (lo, hi) in zip(values[1:], edges, strict=True)
            ):
                break
            n += 1  # (the 1e-6 margin of _TIGHTEN makes this unreachable in practice)
        gap = min(hi - lo for lo, hi in edges)
        shift = gap.bit_length() - 1  # slices of 2**shift fractions: at most one boundary each
        first = []
        j = 0
        for start in range(0, _TWO52, 1 << shift):
            while bounds[j] < start:
                j += 1
            first.append(j)  # the number of boundaries below the slice
        self.per_octave = n
        self.gamma = max(hi / lo for lo, hi in edges)  # the widest bucket (rounded)
        self.shift = shift
        self.first = first
        self.bounds = bounds
        self.values = values
        self.arrays = (
            np.array(first, dtype=np.int32),
            np.array(bounds, dtype=np.uint64),
            np.array(values, dtype=np.float64),
        )
        self.max_key = self.key(sys.float_info.max)
        self.min_key = self.key(5e-324)  # the smallest positive double

    def key(self, magnitude):
        m, e = math.frexp(magnitude)  # magnitude = m * 2**e, 0.5 <= m < 1, exactly
        f = int(m * 9007199254740992.0) & _FRAC_MASK  # m * 2**53 = 2**52 + f
        j = self.first[f >> self.shift]
        if f > self.bounds[j]:
            j += 1
        return (e - 1) * self.per_octave + j

    def value(self, key):
        e, j = divmod(key - 1, self.per_octave)
        return math.ldexp(self.values[j + 1], e)


class _Store:
    """Counts of consecutive bucket keys ``lo .. lo + len(counts) - 1``, at most ``limit`` of
    them; ``counts[0]`` and ``counts[-1]`` are never zero (the form is canonical)."""

    __slots__ = ("lo", "counts", "total")

    def __init__(self):
        self.lo = 0
        self.counts = []
        self.total = 0

    def copy(self):
        s = _Store()
        s.lo, s.counts, s.total = self.lo, list(self.counts), self.total
        return s

    def add(self, key, n, limit):
        """Add ``n`` to bucket ``key``, collapsing the lowest buckets beyond ``limit``."""
        counts = self.counts
        self.total += n
        i = key - self.lo
        if 0 <= i < len(counts):  # the common case: the bucket exists
            counts[i] += n
            return
        if not counts:
            self.lo = key
            counts.append(n)
            return
        lo = self.lo
        hi = lo + len(counts) - 1
        if key > hi:
            counts.extend([0] * (key - hi))
            floor = key - limit + 1  # the lowest bucket that may stay
            if floor > lo:
                cut = floor - lo
                counts[cut] += sum(counts[:cut])
                del counts[:cut]
                self.lo = floor
            counts[-1] += n
        elif key < lo:
            key = max(key, hi - limit + 1)  # below the range kept: into its lowest bucket
            if key < lo:
                counts[:0] = [0] * (lo - key)
                self.lo = key
            counts[key - self.lo] += n
        else:
            counts[key - lo] += n

    def merge(self, other, limit):
        """Add every bucket of ``other``: the result equals adding its values one by one,
        because where a key lands depends only on the highest key (``max(key, hi - limit + 1)``)."""
        if not other.counts:
            return
        hi = other.lo + len(other.counts) - 1
        lo = other.lo
        if self.counts:
            hi = max(hi, self.lo + len(self.counts) - 1)
            lo = min(lo, self.lo)
        lo = max(lo, hi - limit + 1)  # other may have a larger bucket limit
        merged = [0] * (hi - lo + 1)
        for store in (self, other):
            for i, n in enumerate(store.counts):
                merged[max(store.lo + i, lo) - lo] += n
        self.lo, self.counts = lo, merged
        self.total += other.total

    def key_at_rank(self, rank):
        """The key of the bucket holding the value of 0-based rank ``rank`` (ascending keys)."""
        running = 0
        for i, n in enumerate(self.counts):
            running += n
            if running > rank:
                return self.lo + i
        return self.lo + len(self.counts) - 1


class QuantileSketch:
    """A DDSketch-style quantile sketch: ``quantile(q)`` within ``relative_accuracy``, mergeable.

    ``push(x)`` adds a value, ``push_many(values)`` a batch; ``count``, ``sum``, ``min`` and
    ``max`` are exact (``min``/``max`` NaN while empty, ``sum`` 0.0); ``quantile(q)`` estimates
    the value of rank ``floor(q * (count - 1))`` within the relative accuracy (NaN while empty).
    ``a.merge(b)`` folds ``b`` in place (both need the same ``relative_accuracy``); ``a + b``
    returns a new sketch with ``a``'s bucket limit. ``to_bytes()``/``from_bytes()`` serialize
    it (the same bytes on both backends); picklable; safe to share between threads. See the
    module docstring for the exact guarantee and what the bucket limit does to it.
    """

    __slots__ = (
        "_a",
        "_limit",
        "_map",
        "_neg",
        "_pos",
        "_zeros",
        "_sum",
        "_min",
        "_max",
        "_lock",
        "__weakref__",
    )

    def __init_subclass__(cls, **kwargs):
        # final, like the compiled class (a subclass could not reach the C state anyway)
        raise TypeError("type 'prodfast._core_py.QuantileSketch' is not an acceptable base type")

    def __init__(self, relative_accuracy: float = 0.01, bucket_limit: int = 2048) -> None:
        self._a = _check_accuracy(relative_accuracy)
        self._limit = _check_bucket_limit(bucket_limit)
        self._map = _mapping_for(self._a)
        self._lock = threading.Lock()
        self._reset()

    def _reset(self):
        self._neg = _Store()  # negative values, by magnitude
        self._pos = _Store()
        self._zeros = 0
        self._sum = 0.0
        self._min = _INF
        self._max = -_INF

    def _count(self):
        return self._neg.total + self._zeros + self._pos.total

    def _add(self, x):
        if x > 0.0:
            self._pos.add(self._map.key(x), 1, self._limit)
        elif x < 0.0:
            self._neg.add(self._map.key(-x), 1, self._limit)
        else:
            self._zeros += 1
        self._sum += x
        if x < self._min:
            self._min = x
        if x > self._max:
            self._max = x

    def push(self, x, /) -> None:
        """Add one real number; TypeError for non-numbers, ValueError for NaN/infinity."""
        v = _coerce_real(x, "x")
        with self._lock:
            if self._count() >= _MAX_COUNT:
                raise OverflowError("the sketch holds 2**63 - 1 values, the most it can count")
            self._add(v)

    def push_many(self, values) -> None:
        """Add every value of an iterable; nothing is applied if any value is bad."""
        xs = _as_float_block(values).tolist()
        with self._lock:
            if self._count() + len(xs) > _MAX_COUNT:
                raise OverflowError("the sketch cannot count more than 2**63 - 1 values")
            add = self._add
            for x in xs:
                add(x)

    def _snapshot(self):
        """A detached copy of the state (taken under the lock)."""
        with self._lock:
            return (
                self._neg.copy(),
                self._pos.copy(),
                self._zeros,
                self._sum,
                self._min,
                self._max,
            )

    def _check_mergeable(self, other):
        if not isinstance(other, QuantileSketch):
            raise TypeError(f"other must be a QuantileSketch, got {type(other).__name__}")
        if other._a != self._a:
            raise ValueError(
                f"other must have the same relative_accuracy ({self._a!r}), got {other._a!r}"
            )

    def _merge_snapshot(self, snap):
        neg, pos, zeros, total_sum, mn, mx = snap
        if self._count() + neg.total + pos.total + zeros > _MAX_COUNT:
            raise OverflowError("the merged sketch would count more than 2**63 - 1 values")
        self._neg.merge(neg, self._limit)
        self._pos.merge(pos, self._limit)
        self._zeros += zeros
        self._sum += total_sum
        if mn < self._min:
            self._min = mn
        if mx > self._max:
            self._max = mx

    def merge(self, other: QuantileSketch) -> None:
        """Fold ``other``'s values into this sketch (exactly), leaving ``other`` unchanged."""
        self._check_mergeable(other)
        snap = other._snapshot()
        with self._lock:
            self._merge_snapshot(snap)

    def __add__(self, other):
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        self._check_mergeable(other)
        out = QuantileSketch(self._a, self._limit)
        out._merge_snapshot(self._snapshot())
        out._merge_snapshot(other._snapshot())
        return out

    def clear(self) -> None:
        """Forget every value (the accuracy and the bucket limit stay)."""
        with self._lock:
            self._reset()

    @property
    def relative_accuracy(self) -> float:
        """The promised relative accuracy of every quantile."""
        return self._a

    @property
    def bucket_limit(self) -> int:
        """The most buckets kept per sign (see the module docstring for collapsing)."""
        return self._limit

    @property
    def count(self) -> int:
        """How many values were pushed."""
        with self._lock:
            return self._count()

    @property
    def sum(self) -> float:
        """The sum of the values, added in the order they came (0.0 while empty; like any float
        sum it can overflow to infinity, and merging +inf with -inf gives NaN)."""
        return self._sum

    @property
    def min(self) -> float:
        """Smallest value (NaN while empty)."""
        with self._lock:
            return self._min if self._count() else _NAN

    @property
    def max(self) -> float:
        """Largest value (NaN while empty)."""
        with self._lock:
            return self._max if self._count() else _NAN

    def quantile(self, q: float) -> float:
        """The value of rank ``floor(q * (count - 1))``, within the relative accuracy."""
        q = _check_quantile(q)
        with self._lock:
            count = self._count()
            if count == 0:
                return _NAN
            # (near 2**63 the float product can round past the last rank)
            rank = min(math.floor(q * float(count - 1)), count - 1)
            if rank == 0:
                return self._min  # the extremes are known exactly
            if rank == count - 1:
                return self._max
            neg, zeros = self._neg, self._zeros
            if rank < neg.total:
                # ascending values are descending magnitudes
                y = -self._map.value(neg.key_at_rank(neg.total - 1 - rank))
            elif rank < neg.total + zeros:
                y = 0.0
            else:
                y = self._map.value(self._pos.key_at_rank(rank - neg.total - zeros))
            return min(max(y, self._min), self._max)

    def to_bytes(self) -> bytes:
        """The sketch in a versioned little-endian format (the same bytes on both backends)."""
        neg, pos, zeros, total_sum, mn, mx = self._snapshot()
        parts = [
            _HEADER.pack(
                _MAGIC,
                _VERSION,
                self._a,
                self._limit,
                neg.total + zeros + pos.total,
                zeros,
                total_sum,
                mn,
                mx,
            )
        ]
        for store in (neg, pos):
            parts.append(_STORE_HEADER.pack(store.lo, len(store.counts)))
            parts.append(np.asarray(store.counts, dtype="<u8").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileSketch:
        """A sketch from ``to_bytes()`` output; ValueError if ``data`` is not a valid sketch."""
        a, limit, zeros, total_sum, mn, mx, stores = _parse_sketch(data)
        out = cls(a, limit)
        out._set_parsed(zeros, total_sum, mn, mx, stores)
        return out

    def _set_parsed(self, zeros, total_sum, mn, mx, stores):
        neg, pos = _Store(), _Store()
        for store, (lo, counts, total) in zip((neg, pos), stores, strict=True):
            store.lo, store.counts, store.total = lo, counts.tolist(), total
        with self._lock:
            self._neg, self._pos, self._zeros = neg, pos, zeros
            self._sum, self._min, self._max = total_sum, mn, mx

    def __getstate__(self):
        return self.to_bytes()

    def __setstate__(self, state):
        a, limit, zeros, total_sum, mn, mx, stores = _parse_sketch(state)
        self._a, self._limit, self._map = a, limit, _mapping_for(a)
        self._set_parsed(zeros, total_sum, mn, mx, stores)

    def __reduce__(self):
        return (type(self), (self._a, self._limit), self.__getstate__())

    def __repr__(self) -> str:
        return (
            f"QuantileSketch(relative_accuracy={self._a!r}, count={self.count}, "
            f"min={self.min!r}, max={self.max!r})"
        )


def _exact_total(counts):
    """The exact sum of a uint64 count array, as a Python int."""
    return sum(counts.tolist())


def _parse_sketch(data, total=_exact_total):
    """Check every field of a serialized sketch; return them as Python values, each store as
    ``(lowest key, uint64 counts array, their total)``.

    Shared by both backends (the compiled core copies the count arrays into its buffers and
    passes its own ``total``, a C loop giving the same exact sum or any number above 2**63 - 1
    when the sum is larger), so one rule decides what is a valid sketch. Raises ValueError for
    anything else.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size or data[:4] != _MAGIC:
        raise ValueError("data is not a serialized QuantileSketch")
    magic, version, a, limit, count, zeros, total_sum, mn, mx = _HEADER.unpack_from(data)
    if version == 1:
        raise ValueError(
            "data has QuantileSketch format version 1, whose buckets (a logarithm's) this "
            f"version cannot read exactly; expected {_VERSION}"
        )
    if version != _VERSION:
        raise ValueError(f"data has QuantileSketch format version {version}, expected {_VERSION}")
    if not (_MIN_ACCURACY <= a < 1.0) or not 1 <= limit <= _MAX_BUCKET_LIMIT:
        raise ValueError(
            "data is not a valid QuantileSketch: bad relative_accuracy or bucket_limit"
        )
    mapping = _mapping_for(a)
    offset = _HEADER.size
    stores = []
    for _ in range(2):
        if len(data) < offset + _STORE_HEADER.size:
            raise ValueError("data is not a valid QuantileSketch: truncated")
        lo, n = _STORE_HEADER.unpack_from(data, offset)
        offset += _STORE_HEADER.size
        if n > limit or len(data) < offset + 8 * n:
            raise ValueError("data is not a valid QuantileSketch: bad bucket range")
        counts = np.frombuffer(data, dtype="<u8", count=n, offset=offset)
        offset += 8 * n
        if n and (
            counts[0] == 0
            or counts[-1] == 0
            or lo < mapping.min_key
            or lo + n - 1 > mapping.max_key
        ):
            raise ValueError("data is not a valid QuantileSketch: bad bucket range")
        stores.append((lo, counts, total(counts)))
    if offset != len(data):
        raise ValueError("data is not a valid QuantileSketch: trailing bytes")
    (neg_lo, neg_counts, neg_total), (pos_lo, pos_counts, pos_total) = stores
    if count > _MAX_COUNT or neg_total + zeros + pos_total != count:
        raise ValueError("data is not a valid QuantileSketch: the counts do not add up")
    if count == 0:
        ok = total_sum == 0.0 and mn == _INF and mx == -_INF
    else:
        ok = (
            math.isfinite(mn)
            and math.isfinite(mx)
            and mn <= mx
            and (neg_total > 0) == (mn < 0.0)
            and (pos_total > 0) == (mx > 0.0)
            and (zeros == 0 or mn <= 0.0 <= mx)
            and (neg_total == 0 or mapping.key(-mn) == neg_lo + len(neg_counts) - 1)
            and (pos_total == 0 or mapping.key(mx) == pos_lo + len(pos_counts) - 1)
        )
    if not ok:
        raise ValueError("data is not a valid QuantileSketch: inconsistent min, max or sum")
    return a, limit, zeros, total_sum, mn, mx, stores
