"""Streaming statistics in O(1) memory: the pure-Python twin of the compiled core.

``RunningStats``
    Count, mean, sample variance (n - 1), standard deviation, min and max by Welford's
    update, with two streams combined by Chan et al.'s formula (``merge`` and ``a + b``).
    The update runs on ``x - shift`` where ``shift`` is the first value pushed: the
    subtraction is exact for data like ``1e9 + U(0, 1)``, so the variance keeps full
    precision where plain Welford loses about eight digits and the naive sum-of-squares
    formula loses all of them.
``P2Quantile``
    One quantile by the P-square algorithm of Jain & Chlamtac, "The P2 algorithm for
    dynamic calculation of quantiles and histograms without storing observations",
    CACM 28(10), 1985: five markers, parabolic prediction, linear fallback, marker
    adjustment, exactly as the paper states them. The desired marker positions are
    computed from the count (``1 + (count - 1) * f``), never accumulated, so they do not
    drift at extreme ``p``.
``Quantiles``
    Several P2 estimators fed together, one pass over the data.
``LatencySummary``
    RunningStats and the p50/p95/p99 estimators in one object, with ``snapshot()``.

Accepted values are real numbers: ``int``, ``float``, ``bool`` (as 0.0/1.0, like numpy and
the ``statistics`` module), ``fractions.Fraction`` and numpy integer, floating and bool
scalars. A string, ``None``, a complex number or any other object raises ``TypeError``;
NaN or infinity (or an integer too large for a float) raises ``ValueError``. ``push_many``
converts its argument to one float64 array first and checks every value before it changes
anything, so a bad value anywhere applies nothing. ``push_many(values)`` gives exactly what
``for x in values: push(x)`` gives.

What P2 does not promise: its estimate has no error bound (it is a heuristic that works
well on smooth distributions and can be far off on adversarial or multi-modal streams,
or early in a stream), and two P2 estimators cannot be merged.
"""

from __future__ import annotations

import math
import numbers
import threading

import numpy as np

__all__ = ["RunningStats", "P2Quantile", "Quantiles", "LatencySummary"]

_INF = math.inf
_NAN = math.nan


# ---------------------------------------------------------------------------------------------
# validation, shared by both twins (the compiled core imports these helpers, so the accepted
# inputs and the error texts are one and the same)


def _coerce_real(x, name):
    """Return ``x`` as a finite float, or raise TypeError/ValueError naming ``name``."""
    if type(x) is float:
        v = x
    elif isinstance(x, (numbers.Real, np.bool_)):
        try:
            v = float(x)
        except OverflowError:
            raise ValueError(f"{name} must be finite, got a number too large for a float") from None
    else:
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return v


def _as_float_block(values, name="values"):
    """Convert ``values`` once into a one-dimensional float64 array of finite numbers.

    A contiguous float64 array is returned as it is (no copy); every other array is
    converted once; any other iterable is consumed exactly once. Raises TypeError for
    non-numeric content and ValueError for NaN/infinity or a shape that is not flat.
    """
    if isinstance(values, np.ma.MaskedArray):
        # its data holds whatever sits under the mask: refuse rather than guess
        raise TypeError(
            f"{name} must not be a masked array (pass values.compressed() to drop the masked "
            f"entries)"
        )
    if isinstance(values, np.ndarray):
        arr = values
    else:
        if isinstance(values, (str, bytes)) or not _is_iterable(values):
            raise TypeError(
                f"{name} must be an iterable of real numbers, got {type(values).__name__}"
            )
        items = values if isinstance(values, (list, tuple)) else list(values)
        try:
            arr = np.asarray(items)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name} must be a flat iterable of real numbers") from exc
    kind = arr.dtype.kind
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if kind == "O":
        arr = np.array([_coerce_real(v, name) for v in arr.tolist()], dtype=np.float64)
    elif kind in "fiub":
        if arr.dtype != np.float64 or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=np.float64)
    else:
        raise TypeError(f"{name} must contain real numbers, got dtype {arr.dtype}")
    finite = np.isfinite(arr)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} must be finite, got {arr[i]!r} at index {i}")
    return arr


def _is_iterable(obj):
    try:
        iter(obj)
    except TypeError:
        return False
    return True


def _check_p(p, name="p"):
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(p).__name__}")
    v = float(p)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {p!r}")
    return v


def _check_ps(ps, name="ps"):
    if isinstance(ps, (str, bytes)) or not _is_iterable(ps):
        raise TypeError(f"{name} must be a sequence of probabilities, got {type(ps).__name__}")
    out = tuple(_check_p(p, name) for p in ps)
    if not out:
        raise ValueError(f"{name} must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not contain duplicates, got {out!r}")
    return out


def _check_state(state, cls_name, size):
    if not isinstance(state, tuple) or len(state) != size:
        raise ValueError(f"state must be a tuple of {size} items for {cls_name}")


_MAX_COUNT = (1 << 63) - 1  # counts are signed 64-bit integers in the compiled core


def _state_count(count, buffered=0):
    """A state's count, checked: an int from 0 to 2**63 - 1 (with ``buffered`` values on top),
    one rule for both backends, so the compiled core never meets a count it cannot hold."""
    if (
        isinstance(count, bool)
        or not isinstance(count, int)
        or count < 0
        or count > _MAX_COUNT - buffered
    ):
        raise ValueError(f"state has an invalid count: {count!r}")
    return count


def _check_welford_state(state):
    """Validate a RunningStats state tuple; return it with floats in place of numbers."""
    _check_state(state, "RunningStats", 7)
    shift, mean, m2, mn, mx = (float(v) for v in state[1:6])
    if not isinstance(state[6], tuple):
        raise ValueError("state is not a valid RunningStats state")
    buf = tuple(float(v) for v in state[6])
    count = _state_count(state[0], len(buf))
    ok = (
        len(buf) < _BLOCK
        and all(math.isfinite(v) for v in buf)
        and math.isfinite(shift)
        and math.isfinite(mean)
        and math.isfinite(m2)
        and m2 >= 0.0
    )
    if ok and (count or buf):
        ok = math.isfinite(mn) and math.isfinite(mx) and mn <= mx
    if not ok:
        raise ValueError("state is not a valid RunningStats state")
    if not (count or buf):
        shift, mean, m2, mn, mx = 0.0, 0.0, 0.0, _INF, -_INF
    return (count, shift, mean, m2, mn, mx, buf)


def _check_p2_state(state):
    """Validate a P2 state (count, heights, positions); return it with floats."""
    if not isinstance(state, tuple) or len(state) != 3:
        raise ValueError("state is not a valid P2 estimator state")
    count = _state_count(state[0])
    q = tuple(float(v) for v in state[1])
    n = tuple(float(v) for v in state[2])
    ok = len(q) == 5 and len(n) == 5 and all(math.isfinite(v) for v in q)
    if ok and count < 5:
        ok = n == (1.0, 2.0, 3.0, 4.0, 5.0)
    elif ok:
        ok = (
            n[0] == 1.0
            and n[4] == count
            and all(v == int(v) for v in n)
            and all(a < b for a, b in zip(n, n[1:], strict=False))
            and all(a <= b for a, b in zip(q, q[1:], strict=False))
        )
    if not ok:
        raise ValueError("state is not a valid P2 estimator state")
    return (count, q, n)


# ---------------------------------------------------------------------------------------------
# the kernels: plain functions over plain lists, mirrored line by line by the C structs and
# inline functions of the compiled core so both produce bit-identical floats


def _exact_quantile(sorted_xs, p):
    """Sample quantile of a sorted list with linear interpolation, as numpy.quantile's default."""
    m = len(sorted_xs)
    h = (m - 1) * p
    lo = math.floor(h)
    t = h - lo
    a = sorted_xs[lo]
    if lo + 1 >= m:
        return a
    b = sorted_xs[lo + 1]
    diff = b - a
    if t >= 0.5:  # numpy's _lerp: interpolate from the nearer end
        return b - diff * (1.0 - t)
    return a + diff * t


class _P2:
    """State of one P2 estimator (the compiled core keeps the same fields in a C struct)."""

    __slots__ = ("p", "f1", "f2", "f3", "count", "q", "n")

    def __init__(self, p):
        self.p = p
        self.f1 = p / 2.0
        self.f2 = p
        self.f3 = (1.0 + p) / 2.0
        self.count = 0
        self.q = [0.0, 0.0, 0.0, 0.0, 0.0]  # marker heights q1..q5
        self.n = [1.0, 2.0, 3.0, 4.0, 5.0]  # actual marker positions n1..n5 (1-based)

    def reset(self):
        self.count = 0
        self.q = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.n = [1.0, 2.0, 3.0, 4.0, 5.0]

    def push(self, x):
        q = self.q
        n = self.n
        c = self.count
        if c < 5:
            # A. Initialisation: the first five observations, sorted when the fifth arrives.
            q[c] = x
            self.count = c + 1
            if c == 4:
                q.sort()
            return
        self.count = c = c + 1
        # B.1 find the cell k with q[k] <= x < q[k+1], extending the extremes.
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
        # B.2 markers above the cell move up one position.
        for i in range(k + 1, 5):
            n[i] += 1.0
        # Desired positions from the count: n'_i = 1 + (count - 1) * f_i.
        m = c - 1.0
        desired = (0.0, 1.0 + m * self.f1, 1.0 + m * self.f2, 1.0 + m * self.f3)
        # B.3 adjust the heights of markers 2-4 if they are off by one position or more.
        for i in (1, 2, 3):
            d = desired[i] - n[i]
            if (d >= 1.0 and n[i + 1] - n[i] > 1.0) or (d <= -1.0 and n[i - 1] - n[i] < -1.0):
                s = 1.0 if d >= 0.0 else -1.0
                qn = _p2_parabolic(q, n, i, s)
                if q[i - 1] < qn < q[i + 1]:
                    q[i] = qn
                else:
                    q[i] = _p2_linear(q, n, i, s)
                n[i] += s

    def value(self):
        c = self.count
        if c == 0:
            return _NAN
        if c <= 5:
            return _exact_quantile(sorted(self.q[:c]), self.p)
        return self.q[2]

    def markers(self):
        c = self.count
        if c < 5:
            return tuple(sorted(self.q[:c]))
        return tuple(self.q)

    def positions(self):
        c = self.count
        if c < 5:
            return tuple(range(1, c + 1))
        return tuple(int(v) for v in self.n)

    def getstate(self):
        return (self.count, tuple(self.q), tuple(self.n))

    def setstate(self, state):
        count, q, n = _check_p2_state(state)
        self.count = count
        self.q = list(q)
        self.n = list(n)


def _p2_parabolic(q, n, i, d):
    """The piecewise-parabolic (P2) prediction of marker i moved by d = +1 or -1."""
    return q[i] + d / (n[i + 1] - n[i - 1]) * (
        (n[i] - n[i - 1] + d) * (q[i + 1] - q[i]) / (n[i + 1] - n[i])
        + (n[i + 1] - n[i] - d) * (q[i] - q[i - 1]) / (n[i] - n[i - 1])
    )


def _p2_linear(q, n, i, d):
    """The linear fallback when the parabolic prediction leaves (q[i-1], q[i+1])."""
    j = i + 1 if d > 0.0 else i - 1
    return q[i] + d * (q[j] - q[i]) / (n[j] - n[i])


_BLOCK = 32  # values buffered before they are folded into the running moments


def _block_moments(ys):
    """Mean and sum of squared deviations of a short list, by two passes over four sums.

    The four interleaved partial sums (element i goes to sum i % 4) let the compiled twin
    run four independent additions per step; the order of every operation is fixed, so
    both twins get bit-identical results.
    """
    m = len(ys)
    a = [0.0, 0.0, 0.0, 0.0]
    for i in range(m):
        a[i & 3] += ys[i]
    mean = ((a[0] + a[1]) + (a[2] + a[3])) / m
    a = [0.0, 0.0, 0.0, 0.0]
    for i in range(m):
        d = ys[i] - mean
        a[i & 3] += d * d
    return mean, (a[0] + a[1]) + (a[2] + a[3])


class _Welford:
    """Count, mean and squared deviations of a stream, updated a block at a time.

    Values are kept relative to ``shift`` (the first value pushed), which makes the
    subtraction exact for data like ``1e9 + U(0, 1)``. Up to ``_BLOCK`` shifted values wait
    in ``buf``; a full block is reduced by two passes and folded into ``(count, mean, m2)``
    by Chan et al.'s formula. The result depends only on the order of the values, never
    on how they were handed over (push or push_many). The compiled twin keeps the same
    fields in a C struct.
    """

    __slots__ = ("count", "shift", "mean", "m2", "min", "max", "buf")

    def __init__(self):
        self.reset()

    def reset(self):
        self.count = 0  # values folded into mean/m2 (the buffered ones come on top)
        self.shift = 0.0
        self.mean = 0.0  # mean of x - shift over the folded values
        self.m2 = 0.0  # their sum of squared deviations from that mean
        self.min = _INF
        self.max = -_INF
        self.buf = []  # x - shift of the values not folded yet (fewer than _BLOCK)

    def copy(self):
        w = _Welford.__new__(_Welford)
        w.count, w.shift, w.mean, w.m2 = self.count, self.shift, self.mean, self.m2
        w.min, w.max, w.buf = self.min, self.max, list(self.buf)
        return w

    def total(self):
        return self.count + len(self.buf)

    def push(self, x):
        buf = self.buf
        if not buf and self.count == 0:
            self.shift = x
        buf.append(x - self.shift)
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        if len(buf) == _BLOCK:
            self.fold()

    def fold(self):
        """Fold the buffered values into (count, mean, m2)."""
        buf = self.buf
        if not buf:
            return
        m = len(buf)
        bmean, bm2 = _block_moments(buf)
        c = self.count
        if c == 0:
            self.mean, self.m2 = bmean, bm2
        else:
            total = c + m
            delta = bmean - self.mean
            self.mean += delta * m / total
            self.m2 += bm2 + delta * delta * c * m / total
        self.count = c + m
        self.buf = []

    def merge(self, other):
        """Chan et al.: fold ``other`` (left unchanged) into this stream."""
        o = other.copy()
        o.fold()
        if o.count == 0:
            return
        self.fold()
        if self.count == 0:
            self.count, self.shift, self.mean, self.m2 = o.count, o.shift, o.mean, o.m2
            self.min, self.max = o.min, o.max
            return
        na = self.count
        nb = o.count
        total = na + nb
        # the other stream's mean expressed against this stream's shift
        delta = ((o.shift - self.shift) + o.mean) - self.mean
        self.mean += delta * nb / total
        self.m2 += o.m2 + delta * delta * na * nb / total
        self.count = total
        if o.min < self.min:
            self.min = o.min
        if o.max > self.max:
            self.max = o.max

    def folded(self):
        """A copy with the buffer folded in (what the statistics are read from)."""
        w = self.copy()
        w.fold()
        return w

    def getstate(self):
        return (self.count, self.shift, self.mean, self.m2, self.min, self.max, tuple(self.buf))

    def setstate(self, state):
        count, shift, mean, m2, mn, mx, buf = _check_welford_state(state)
        self.count = count
        self.shift, self.mean, self.m2 = shift, mean, m2
        self.min, self.max = mn, mx
        self.buf = list(buf)

    def mean_value(self):
        w = self.folded()
        return w.shift + w.mean if w.count else _NAN

    def variance(self):
        w = self.folded()
        return w.m2 / (w.count - 1) if w.count > 1 else 0.0


# ---------------------------------------------------------------------------------------------
# the public classes


class RunningStats:
    """Count, mean, sample variance, standard deviation, min and max of a stream in O(1) memory.

    ``push(x)`` adds one value, ``push_many(values)`` a batch (a contiguous float64 numpy
    array is consumed without conversion). ``mean``, ``min`` and ``max`` are NaN while empty;
    ``variance`` is the sample variance (divided by n - 1) and 0.0 below two values.
    ``a.merge(b)`` folds ``b`` into ``a`` in place; ``a + b`` returns a new object; both
    equal having pushed both streams into one object (Chan et al.), to rounding. Picklable;
    safe to share between threads.
    """

    __slots__ = ("_w", "_lock", "__weakref__")

    def __init_subclass__(cls, **kwargs):
        # final, like the compiled class (a subclass could not reach the C state anyway)
        raise TypeError("type 'prodfast._core_py.RunningStats' is not an acceptable base type")

    def __init__(self) -> None:
        self._w = _Welford()
        self._lock = threading.Lock()

    def push(self, x, /) -> None:
        """Add one real number; TypeError for non-numbers, ValueError for NaN/infinity."""
        v = _coerce_real(x, "x")
        with self._lock:
            self._w.push(v)

    def push_many(self, values) -> None:
        """Add every value of an iterable; nothing is applied if any value is bad."""
        xs = _as_float_block(values).tolist()
        with self._lock:
            push = self._w.push
            for x in xs:
                push(x)

    def _copy_w(self):
        with self._lock:
            return self._w.copy()

    def merge(self, other: RunningStats) -> None:
        """Fold ``other``'s stream into this one, as if its values had been pushed here."""
        if not isinstance(other, RunningStats):
            raise TypeError(f"other must be a RunningStats, got {type(other).__name__}")
        o = other._copy_w()
        with self._lock:
            self._w.merge(o)

    def __add__(self, other):
        if not isinstance(other, RunningStats):
            return NotImplemented
        w = self._copy_w()
        w.merge(other._copy_w())
        out = type(self)()
        out._w = w
        return out

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._w.reset()

    @property
    def count(self) -> int:
        """How many values were pushed."""
        return self._copy_w().total()

    @property
    def mean(self) -> float:
        """Arithmetic mean (NaN while empty)."""
        return self._copy_w().mean_value()

    @property
    def variance(self) -> float:
        """Sample variance, divided by n - 1 (0.0 below two values)."""
        return self._copy_w().variance()

    @property
    def stdev(self) -> float:
        """Sample standard deviation, the square root of ``variance``."""
        return math.sqrt(self._copy_w().variance())

    @property
    def min(self) -> float:
        """Smallest value (NaN while empty)."""
        w = self._copy_w()
        return w.min if w.total() else _NAN

    @property
    def max(self) -> float:
        """Largest value (NaN while empty)."""
        w = self._copy_w()
        return w.max if w.total() else _NAN

    def __getstate__(self):
        return self._copy_w().getstate()

    def __setstate__(self, state):
        w = _Welford()
        w.setstate(state)
        with self._lock:
            self._w = w

    def __reduce__(self):
        return (type(self), (), self.__getstate__())

    def __repr__(self) -> str:
        return (
            f"RunningStats(count={self.count}, mean={self.mean!r}, "
            f"stdev={self.stdev!r}, min={self.min!r}, max={self.max!r})"
        )


class P2Quantile:
    """One quantile ``p`` (0 < p < 1) of a stream by the P-square algorithm, in O(1) memory.

    ``value`` is NaN while empty, the exact sample quantile (linear interpolation, as
    ``numpy.quantile``'s default) while at most five values were pushed, and the P2
    estimate of the middle marker after. ``markers`` are the marker heights (the sorted
    values while fewer than five), ``positions`` their 1-based positions. P2 gives no error
    bound and two estimators cannot be merged.
    """

    __slots__ = ("_e", "_lock", "__weakref__")

    def __init_subclass__(cls, **kwargs):
        # final, like the compiled class (a subclass could not reach the C state anyway)
        raise TypeError("type 'prodfast._core_py.P2Quantile' is not an acceptable base type")

    def __init__(self, p: float) -> None:
        self._e = _P2(_check_p(p))
        self._lock = threading.Lock()

    def push(self, x, /) -> None:
        """Add one real number; TypeError for non-numbers, ValueError for NaN/infinity."""
        v = _coerce_real(x, "x")
        with self._lock:
            self._e.push(v)

    def push_many(self, values) -> None:
        """Add every value of an iterable; nothing is applied if any value is bad."""
        xs = _as_float_block(values).tolist()
        with self._lock:
            push = self._e.push
            for x in xs:
                push(x)

    def clear(self) -> None:
        """Forget every value (``p`` stays)."""
        with self._lock:
            self._e.reset()

    @property
    def p(self) -> float:
        """The probability this estimator tracks."""
        return self._e.p

    @property
    def count(self) -> int:
        """How many values were pushed."""
        return self._e.count

    @property
    def value(self) -> float:
        """The current estimate of the p-quantile (NaN while empty)."""
        with self._lock:
            return self._e.value()

    @property
    def markers(self) -> tuple[float, ...]:
        """The marker heights q1..q5 (the sorted values while fewer than five)."""
        with self._lock:
            return self._e.markers()

    @property
    def positions(self) -> tuple[int, ...]:
        """The actual 1-based marker positions n1..n5."""
        with self._lock:
            return self._e.positions()

    def __getstate__(self):
        with self._lock:
            return (self._e.p,) + self._e.getstate()

    def __setstate__(self, state):
        _check_state(state, "P2Quantile", 4)
        e = _P2(_check_p(state[0]))
        e.setstate(state[1:])
        with self._lock:
            self._e = e

    def __reduce__(self):
        return (type(self), (self._e.p,), self.__getstate__())

    def __repr__(self) -> str:
        return f"P2Quantile(p={self.p!r}, count={self.count}, value={self.value!r})"


class Quantiles:
    """Several P2 estimators fed together: ``values`` -> ``{p: estimate}`` in the order of ``ps``."""

    __slots__ = ("_ps", "_es", "_lock", "__weakref__")

    def __init_subclass__(cls, **kwargs):
        # final, like the compiled class (a subclass could not reach the C state anyway)
        raise TypeError("type 'prodfast._core_py.Quantiles' is not an acceptable base type")

    def __init__(self, ps=(0.5, 0.95, 0.99)) -> None:
        self._ps = _check_ps(ps)
        self._es = [_P2(p) for p in self._ps]
        self._lock = threading.Lock()

    def push(self, x, /) -> None:
        """Add one real number to every estimator."""
        v = _coerce_real(x, "x")
        with self._lock:
            for e in self._es:
                e.push(v)

    def push_many(self, values) -> None:
        """Add every value of an iterable; nothing is applied if any value is bad."""
        xs = _as_float_block(values).tolist()
        with self._lock:
            es = self._es
            for x in xs:  # one pass: every estimator sees x before the next value
                for e in es:
                    e.push(x)

    def clear(self) -> None:
        """Forget every value (``ps`` stay)."""
        with self._lock:
            for e in self._es:
                e.reset()

    @property
    def ps(self) -> tuple[float, ...]:
        """The probabilities tracked, in the order given."""
        return self._ps

    @property
    def count(self) -> int:
        """How many values were pushed."""
        return self._es[0].count

    @property
    def values(self) -> dict[float, float]:
        """``{p: estimate}`` for every tracked probability (NaN while empty)."""
        with self._lock:
            return {e.p: e.value() for e in self._es}

    def __getstate__(self):
        with self._lock:
            return (self._ps, tuple(e.getstate() for e in self._es))

    def __setstate__(self, state):
        _check_state(state, "Quantiles", 2)
        ps = _check_ps(state[0])
        if not isinstance(state[1], tuple) or len(state[1]) != len(ps) or len(ps) != len(self._ps):
            raise ValueError("state is not a valid Quantiles state")
        es = [_P2(p) for p in ps]
        for e, s in zip(es, state[1], strict=True):
            e.setstate(s)
        with self._lock:
            self._ps, self._es = ps, es

    def __reduce__(self):
        return (type(self), (self._ps,), self.__getstate__())

    def __repr__(self) -> str:
        return f"Quantiles(ps={self._ps!r}, count={self.count})"


_LS_PS = (0.5, 0.95, 0.99)


class LatencySummary:
    """RunningStats plus p50/p95/p99 P2 estimators, fed by one ``push``.

    ``snapshot()`` returns ``{"count", "mean", "std_dev", "min", "max", "p50", "p95",
    "p99"}``; while empty, ``mean``, ``min``, ``max`` and the quantiles are NaN and
    ``std_dev`` is 0.0.
    """

    __slots__ = ("_w", "_es", "_lock", "__weakref__")

    def __init_subclass__(cls, **kwargs):
        # final, like the compiled class (a subclass could not reach the C state anyway)
        raise TypeError("type 'prodfast._core_py.LatencySummary' is not an acceptable base type")

    def __init__(self) -> None:
        self._w = _Welford()
        self._es = [_P2(p) for p in _LS_PS]
        self._lock = threading.Lock()

    def push(self, x, /) -> None:
        """Add one real number (a latency, in any unit)."""
        v = _coerce_real(x, "x")
        with self._lock:
            self._w.push(v)
            for e in self._es:
                e.push(v)

    def push_many(self, values) -> None:
        """Add every value of an iterable; nothing is applied if any value is bad."""
        xs = _as_float_block(values).tolist()
        with self._lock:
            push = self._w.push
            es = self._es
            for x in xs:
                push(x)
                for e in es:
                    e.push(x)

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._w.reset()
            for e in self._es:
                e.reset()

    @property
    def count(self) -> int:
        """How many values were pushed."""
        with self._lock:
            return self._w.total()

    def snapshot(self) -> dict[str, float]:
        """count, mean, std_dev, min, max, p50, p95, p99 of everything pushed so far."""
        with self._lock:
            w = self._w.folded()
            p50, p95, p99 = (e.value() for e in self._es)
        empty = w.count == 0
        return {
            "count": w.count,
            "mean": w.mean_value(),
            "std_dev": math.sqrt(w.variance()),
            "min": _NAN if empty else w.min,
            "max": _NAN if empty else w.max,
            "p50": p50,
            "p95": p95,
            "p99": p99,
        }

    def __getstate__(self):
        with self._lock:
            return (self._w.getstate(), tuple(e.getstate() for e in self._es))

    def __setstate__(self, state):
        _check_state(state, "LatencySummary", 2)
        if not isinstance(state[1], tuple) or len(state[1]) != len(_LS_PS):
            raise ValueError("state is not a valid LatencySummary state")
        w = _Welford()
        w.setstate(state[0])
        es = [_P2(p) for p in _LS_PS]
        for e, s in zip(es, state[1], strict=True):
            e.setstate(s)
        with self._lock:
            self._w, self._es = w, es

    def __reduce__(self):
        return (type(self), (), self.__getstate__())

    def __repr__(self) -> str:
        return f"LatencySummary(count={self.count})"
