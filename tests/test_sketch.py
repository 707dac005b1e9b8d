"""QuantileSketch on both backends, against exact quantiles of the same data.

The promise under test (see prodfast._sketch_py): with the n values sorted, ``quantile(q)`` is
within ``relative_accuracy`` of the value at 0-based rank ``floor(q * (n - 1))``, for every q
and every input. Each check asserts that bound, never a looser "close enough".
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import pickle
import struct
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CYTHON_BACKEND

LONG = os.environ.get("PRODFAST_LONG_TESTS") == "1"
EXAMPLES = 300 if LONG else 25

GRID = [0.0, 1e-4, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0]


SUM_FIELD = slice(33, 41)  # where to_bytes() keeps the float sum (order-dependent rounding)


def rank_of(q, n):
    return math.floor(q * float(n - 1))


def assert_guarantee(sk, data, qs):
    """Every q in qs: |quantile(q) - x_r| <= a * |x_r| with x_r the value of rank floor(q(n-1))."""
    xs = np.sort(np.asarray(data, dtype=np.float64))
    a = sk.relative_accuracy
    for q in qs:
        exact = float(xs[rank_of(q, len(xs))])
        got = sk.quantile(q)
        assert abs(got - exact) <= a * abs(exact), (q, got, exact)


def many_qs(n, k=150, seed=0):
    """The grid, k random q, and q hitting the ranks next to every grid point exactly."""
    rng = np.random.default_rng(seed)
    qs = GRID + rng.random(k).tolist()
    if n > 1:
        for q in GRID:
            r = rank_of(q, n)
            qs += [min(1.0, max(0.0, (r + d) / (n - 1))) for d in (-1, 1)]
    return qs


def same(x, y):
    return x == y or (math.isnan(x) and math.isnan(y))


def without_sum(data):
    return data[: SUM_FIELD.start] + data[SUM_FIELD.stop :]


def adversarial(name, n, rng):
    if name == "lognormal_heavy":
        return rng.lognormal(0.0, 3.0, n)
    if name == "pareto":
        return rng.pareto(0.5, n) + 1e-9
    if name == "cauchy":  # both signs, wild tails
        return rng.standard_cauchy(n)
    if name == "bimodal":
        return np.concatenate([rng.normal(1e-3, 1e-5, n // 2), rng.normal(1e3, 1.0, n - n // 2)])
    if name == "constant":
        return np.full(n, 7.25)
    if name == "constant_negative":
        return np.full(n, -3.5)
    if name == "zeros":
        return np.zeros(n)
    if name == "sorted":
        return np.sort(rng.lognormal(0.0, 1.0, n))
    if name == "reversed":
        return np.sort(rng.lognormal(0.0, 1.0, n))[::-1].copy()
    if name == "range_1e9":
        return 10.0 ** rng.uniform(-3.0, 6.0, n)
    if name == "signed_with_zeros":
        return rng.choice([-1.0, 0.0, 1.0], n) * 10.0 ** rng.uniform(-4.0, 4.0, n)
    if name == "extremes":  # subnormals to the largest doubles
        return np.concatenate(
            [
                [5e-324, 1e-310, sys.float_info.min, 1.0, 1e300, sys.float_info.max, -5e-324],
                rng.lognormal(0.0, 50.0, n - 7),
            ]
        )
    raise AssertionError(name)


KINDS = [
    "lognormal_heavy",
    "pareto",
    "cauchy",
    "bimodal",
    "constant",
    "constant_negative",
    "zeros",
    "sorted",
    "reversed",
    "range_1e9",
    "signed_with_zeros",
    "extremes",
]


@pytest.mark.parametrize(
    ("kind", "a"),
    # the whole double range at a = 0.001 needs about 730,000 buckets: slow on the twin, so that
    # one runs at the two coarser accuracies only
    [(k, a) for a in (0.01, 0.001, 0.05) for k in KINDS if (k, a) != ("extremes", 0.001)],
)
def test_quantiles_within_relative_accuracy(core, kind, a):
    rng = np.random.default_rng(abs(hash((kind, a))) % 2**32)
    n = 4000
    data = adversarial(kind, n, rng)
    # The default 2048 buckets span a factor of ~4e17 at a = 0.01 (enough for all but the
    # whole double range, ~71,000 buckets) and only ~60 at a = 0.001: without collapsing here
    limit = 2048 if a == 0.01 and kind != "extremes" else 2**20
    sk = core.QuantileSketch(a, limit)
    sk.push_many(data)
    assert sk.count == n
    assert sk.min == data.min() and sk.max == data.max()
    assert sk.quantile(0.0) == data.min() and sk.quantile(1.0) == data.max()
    assert_guarantee(sk, data, many_qs(n))


def test_every_rank_of_a_small_stream(core):
    rng = np.random.default_rng(3)
    data = np.concatenate([rng.standard_cauchy(300), np.zeros(20), -rng.pareto(1.0, 80)])
    sk = core.QuantileSketch(0.02)
    for x in data.tolist():
        sk.push(x)
    n = len(data)
    assert_guarantee(
        sk, data, [r / (n - 1) for r in range(n)] + [(r + 0.5) / (n - 1) for r in range(n - 1)]
    )


def test_rank_is_the_lower_one_as_numpy_method_lower(core):
    sk = core.QuantileSketch(0.0001, 2**20)
    sk.push_many([1.0, 2.0, 3.0, 4.0])
    # q * (n - 1) = 1.5 -> rank 1 (the value 2), not an interpolation between 2 and 3
    assert abs(sk.quantile(0.5) - 2.0) <= 2e-4
    assert float(np.quantile([1.0, 2.0, 3.0, 4.0], 0.5, method="lower")) == 2.0
    assert abs(sk.quantile(0.9) - 3.0) <= 3e-4


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    xs=st.lists(
        st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(0.0)),
        min_size=1,
        max_size=200,
    ),
    q=st.floats(0.0, 1.0),
    a=st.sampled_from([0.01, 0.001, 0.2]),
)
def test_guarantee_property(core, xs, q, a):
    sk = core.QuantileSketch(a, 2**20)
    sk.push_many(xs)
    assert_guarantee(sk, xs, [q, 0.0, 0.5, 1.0])


def test_empty(core):
    sk = core.QuantileSketch()
    assert sk.count == 0 and sk.sum == 0.0
    assert math.isnan(sk.min) and math.isnan(sk.max) and math.isnan(sk.quantile(0.5))
    assert sk.relative_accuracy == 0.01 and sk.bucket_limit == 2048
    assert repr(sk).startswith("QuantileSketch(relative_accuracy=0.01, count=0")


def test_count_sum_min_max(core):
    data = [3.0, -1.5, 0.0, 2, True, 1e-3]
    sk = core.QuantileSketch()
    for x in data:
        sk.push(x)
    assert sk.count == 6
    total = 0.0
    for x in data:
        total += float(x)
    assert sk.sum == total
    assert sk.min == -1.5 and sk.max == 3.0
    sk.clear()
    assert sk.count == 0 and sk.sum == 0.0 and math.isnan(sk.max)
    assert sk.relative_accuracy == 0.01


# ---------------------------------------------------------------------------------------------
# bounded memory: collapsing the lowest buckets


def gamma(a):
    """The widest bucket's ratio (2**(1/m)), a hair lower for the rounding of the boundaries."""
    from prodfast._sketch_py import _mapping_for

    return _mapping_for(a).gamma * (1 - 1e-12)


@pytest.mark.parametrize("limit", [1, 2, 50, 300])
def test_collapsing_keeps_the_guarantee_above_the_documented_range(core, limit):
    a = 0.01
    rng = np.random.default_rng(limit)
    data = np.concatenate([10.0 ** rng.uniform(-8, 8, 3000), -(10.0 ** rng.uniform(-8, 8, 1000))])
    sk = core.QuantileSketch(a, limit)
    sk.push_many(data)
    assert len(sk.to_bytes()) <= 57 + 2 * (8 + 8 * limit)  # at most `limit` buckets per sign
    xs = np.sort(data)
    pos_max, neg_max = data.max(), -data.min()
    checked = 0
    for q in many_qs(len(data), 400):
        x = float(xs[rank_of(q, len(xs))])
        top = pos_max if x > 0 else neg_max
        got = sk.quantile(q)
        if abs(x) > top / gamma(a) ** (limit - 2):
            assert abs(got - x) <= a * abs(x), (q, got, x)
            checked += 1
        else:  # a collapsed value: answered by the lowest kept bucket, never below it in size
            assert abs(got) >= abs(x) * (1 - a)
    assert checked > 0 or limit <= 2  # (with one or two buckets, only the top one is exact)
    assert sk.count == len(data) and sk.min == data.min() and sk.max == data.max()


def test_collapsing_does_not_depend_on_order(core):
    rng = np.random.default_rng(5)
    data = 10.0 ** rng.uniform(-6, 6, 2000)
    one = core.QuantileSketch(0.01, 100)
    one.push_many(data)
    other = core.QuantileSketch(0.01, 100)
    other.push_many(np.sort(data))
    third = core.QuantileSketch(0.01, 100)
    third.push_many(np.sort(data)[::-1].copy())
    assert without_sum(one.to_bytes()) == without_sum(other.to_bytes())
    assert without_sum(one.to_bytes()) == without_sum(third.to_bytes())


# ---------------------------------------------------------------------------------------------
# merging


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    xs=st.lists(st.floats(-1e12, 1e12, allow_nan=False), max_size=150),
    ys=st.lists(st.floats(-1e12, 1e12, allow_nan=False), max_size=150),
    limit=st.sampled_from([2048, 20, 3]),
)
def test_merge_equals_pushing_both(core, xs, ys, limit):
    a, b, both = (core.QuantileSketch(0.01, limit) for _ in range(3))
    a.push_many(xs)
    b.push_many(ys)
    both.push_many(xs + ys)
    b_before = b.to_bytes()
    added = a + b
    assert a.merge(b) is None
    assert b.to_bytes() == b_before
    for merged in (a, added):
        assert without_sum(merged.to_bytes()) == without_sum(both.to_bytes())
        assert merged.count == len(xs) + len(ys)
        assert math.isclose(merged.sum, both.sum, rel_tol=1e-9, abs_tol=1e-3 * (1 + len(xs + ys)))
        for q in GRID:
            assert same(merged.quantile(q), both.quantile(q))


def test_merge_rules(core):
    a = core.QuantileSketch()
    a.push_many([1.0, 2.0])
    before = a.to_bytes()
    with pytest.raises(TypeError, match="other must be a QuantileSketch, got RunningStats"):
        a.merge(core.RunningStats())
    with pytest.raises(ValueError, match="relative_accuracy"):
        a.merge(core.QuantileSketch(0.02))
    with pytest.raises(ValueError, match="relative_accuracy"):
        a + core.QuantileSketch(0.02)
    with pytest.raises(TypeError):
        a + 1
    assert a.to_bytes() == before
    a.merge(a)
    assert a.count == 4 and a.sum == 6.0
    small = core.QuantileSketch(0.01, 4)
    small.push(1.0)
    out = small + a
    assert out.bucket_limit == 4 and out.count == 5


@pytest.mark.parametrize("already", [[], [-1.0, 2.0]])
def test_merge_into_a_smaller_bucket_limit_collapses(core, already):
    data = 10.0 ** np.arange(-5, 6.0)
    wide = core.QuantileSketch(0.01, 500)
    wide.push_many(data)
    narrow = core.QuantileSketch(0.01, 3)
    narrow.push_many(already)
    narrow.merge(wide)
    reference = core.QuantileSketch(0.01, 3)
    reference.push_many(already + data.tolist())
    assert len(narrow.to_bytes()) <= 57 + 2 * (8 + 8 * 3)
    assert without_sum(narrow.to_bytes()) == without_sum(reference.to_bytes())


# ---------------------------------------------------------------------------------------------
# push_many: validated first, same as pushing one by one


def test_push_many_equals_push_loop(core):
    rng = np.random.default_rng(9)
    data = np.concatenate([rng.standard_cauchy(3000), np.zeros(10)])
    one, many = core.QuantileSketch(), core.QuantileSketch()
    for x in data.tolist():
        one.push(x)
    many.push_many(data[:1000])
    many.push_many(data[1000:].tolist())
    assert one.to_bytes() == many.to_bytes()


def test_push_many_accepts_any_real_iterable(core):
    sk = core.QuantileSketch()
    sk.push_many(np.arange(5, dtype=np.int32))
    sk.push_many(np.array([True, False]))
    sk.push_many(np.array([1.5], dtype=np.float32))
    sk.push_many(x for x in (1, 2.5))
    sk.push_many(np.arange(10.0)[::2])
    assert sk.count == 15


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [
        ([1.0, float("nan")], ValueError, "values must be finite, got .*nan.* at index 1"),
        ([1.0, float("inf")], ValueError, "values must be finite"),
        ([1.0, "2"], TypeError, "values must contain real numbers|values must be a real number"),
        ([1.0, None], TypeError, "values must"),
        (np.ones((2, 2)), ValueError, "values must be one-dimensional"),
        (np.ma.masked_array([1.0, 2.0, 99.0], mask=[0, 0, 1]), TypeError, "masked array"),
        ("abc", TypeError, "values must be an iterable of real numbers"),
        (5, TypeError, "values must be an iterable of real numbers"),
    ],
)
def test_bad_push_many_applies_nothing(core, bad, exc, match):
    sk = core.QuantileSketch()
    sk.push_many([0.5, -2.0])
    before = sk.to_bytes()
    with pytest.raises(exc, match=match):
        sk.push_many(bad)
    assert sk.to_bytes() == before


@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        (float("nan"), ValueError),
        (float("-inf"), ValueError),
        ("1", TypeError),
        (None, TypeError),
        (1j, TypeError),
        (10**400, ValueError),
    ],
)
def test_bad_push_changes_nothing(core, bad, exc):
    sk = core.QuantileSketch()
    sk.push(1.0)
    before = sk.to_bytes()
    with pytest.raises(exc, match="x must"):
        sk.push(bad)
    assert sk.to_bytes() == before


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"relative_accuracy": 0.0}, ValueError, r"relative_accuracy must be in \[0.0001, 1\)"),
        ({"relative_accuracy": 1.0}, ValueError, "relative_accuracy must be in"),
        ({"relative_accuracy": float("nan")}, ValueError, "relative_accuracy must be in"),
        (
            {"relative_accuracy": "0.01"},
            TypeError,
            "relative_accuracy must be a real number, got str",
        ),
        ({"relative_accuracy": True}, TypeError, "relative_accuracy must be a real number"),
        ({"bucket_limit": 0}, ValueError, "bucket_limit must be between 1 and 1048576, got 0"),
        ({"bucket_limit": 2**20 + 1}, ValueError, "bucket_limit must be between"),
        ({"bucket_limit": 10.0}, TypeError, "bucket_limit must be an int, got float"),
    ],
)
def test_bad_arguments(core, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        core.QuantileSketch(**kwargs)


@pytest.mark.parametrize(
    ("q", "exc"),
    [
        (-0.01, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (-float("inf"), ValueError),
        ("0.5", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_quantile_argument(core, q, exc):
    sk = core.QuantileSketch()
    sk.push(1.0)
    with pytest.raises(exc, match="q must"):
        sk.quantile(q)


def test_quantile_of_float_probabilities_on_both_backends(core):
    """A float q (the compiled core's fast path) and a float subclass (the checked path) give
    the twin's answers, the ends included."""
    from prodfast import _core_py

    class Q(float):
        pass

    values = [0.003 * 1.7**i for i in range(40)]
    sk, ref = core.QuantileSketch(), _core_py.QuantileSketch()
    for v in values:
        sk.push(v)
        ref.push(v)
    for q in (0.0, -0.0, 1e-300, 0.25, 0.5, 0.95, 0.99, 1.0 - 1e-16, 1.0):
        assert sk.quantile(q) == ref.quantile(q) == sk.quantile(Q(q)), q


def test_quantile_takes_numpy_and_int_probabilities(core):
    sk = core.QuantileSketch()
    sk.push_many([1.0, 5.0])
    assert sk.quantile(1) == 5.0 and sk.quantile(np.float64(0.0)) == 1.0


# ---------------------------------------------------------------------------------------------
# the 2**63 count limit


def crafted(core, zeros, a=0.01, limit=2048):
    """Bytes of a sketch holding ``zeros`` zeros (min = max = 0)."""
    header = struct.pack("<4sBdIQQddd", b"PFQS", 2, a, limit, zeros, zeros, 0.0, 0.0, 0.0)
    return header + struct.pack("<iI", 0, 0) * 2


def test_count_limit(core):
    full = core.QuantileSketch.from_bytes(crafted(core, 2**63 - 1))
    assert full.count == 2**63 - 1
    for q in (0.0, 0.5, 1 - 2**-53, 1.0):  # q * (count - 1) rounds up to 2**63 for the last two
        assert full.quantile(q) == 0.0
    before = full.to_bytes()
    with pytest.raises(OverflowError):
        full.push(1.0)
    with pytest.raises(OverflowError):
        full.push_many([1.0])
    one = core.QuantileSketch()
    one.push(2.0)
    with pytest.raises(OverflowError):
        full.merge(one)
    with pytest.raises(OverflowError):
        one.merge(full)
    with pytest.raises(OverflowError):
        full + one
    assert full.to_bytes() == before and one.count == 1
    with pytest.raises(ValueError, match="counts do not add up"):
        core.QuantileSketch.from_bytes(crafted(core, 2**63))
    # bucket counts whose sum needs more than 64 bits (it must not wrap around to `count`)
    for counts in ([2**63 - 1, 2**63 - 1], [2**64 - 1, 2]):
        wrapped = sum(counts) % 2**64
        header = struct.pack("<4sBdIQQddd", b"PFQS", 2, 0.01, 2048, wrapped, 0, 3.0, 1.0, 1.0)
        store = struct.pack("<iI", 0, 2) + struct.pack("<QQ", *counts)
        with pytest.raises(ValueError, match="counts do not add up"):
            core.QuantileSketch.from_bytes(header + struct.pack("<iI", 0, 0) + store)


# ---------------------------------------------------------------------------------------------
# serialization


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    xs=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=200),
    a=st.sampled_from([0.01, 0.0001, 0.5]),
    limit=st.sampled_from([2048, 5]),
)
def test_to_bytes_round_trip(core, xs, a, limit):
    sk = core.QuantileSketch(a, limit)
    sk.push_many(xs)
    data = sk.to_bytes()
    assert isinstance(data, bytes)
    back = core.QuantileSketch.from_bytes(data)
    assert back.to_bytes() == data
    assert back.relative_accuracy == a and back.bucket_limit == limit
    assert back.count == sk.count and back.sum == sk.sum
    for q in GRID:
        assert same(back.quantile(q), sk.quantile(q))
    for p in (pickle.loads(pickle.dumps(sk)), copy.copy(sk), copy.deepcopy(sk)):
        assert type(p) is type(sk) and p.to_bytes() == data
    back.push(1.0)
    sk.push(1.0)
    assert back.to_bytes() == sk.to_bytes()


def sample_bytes(core):
    sk = core.QuantileSketch(0.01, 64)
    sk.push_many([-3.0, -0.5, 0.0, 0.0, 1.0, 2.5, 1e6])
    return sk.to_bytes()


def test_every_truncation_and_extension_is_rejected(core):
    data = sample_bytes(core)
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            core.QuantileSketch.from_bytes(data[:cut])
    with pytest.raises(ValueError, match="trailing bytes"):
        core.QuantileSketch.from_bytes(data + b"\0")


def test_corrupt_bytes_raise_value_error_or_load_a_valid_sketch(core):
    data = sample_bytes(core)
    rng = np.random.default_rng(1)
    loaded = 0
    for i in range(len(data)):
        for _ in range(3):
            bad = bytearray(data)
            bad[i] = (bad[i] + int(rng.integers(1, 256))) % 256
            try:
                sk = core.QuantileSketch.from_bytes(bytes(bad))
            except ValueError:
                continue
            loaded += 1  # what loads is a consistent sketch: it works and round-trips
            assert core.QuantileSketch.from_bytes(sk.to_bytes()).to_bytes() == sk.to_bytes()
            for q in GRID:
                sk.quantile(q)
            sk.push(1.0)
            sk.merge(sk)
    assert loaded < 3 * len(data) // 2  # most corruptions are caught


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: b"XXXX" + d[4:], "not a serialized QuantileSketch"),
        (lambda d: d[:4] + b"\x03" + d[5:], "format version 3, expected 2"),
        (lambda d: d[:4] + b"\x01" + d[5:], "format version 1, whose buckets"),
        (lambda d: d[:5] + struct.pack("<d", 0.0) + d[13:], "bad relative_accuracy"),
        (lambda d: d[:13] + struct.pack("<I", 0) + d[17:], "bucket_limit"),
        (lambda d: d[:13] + struct.pack("<I", 2) + d[17:], "bad bucket range"),
        (lambda d: d[:17] + struct.pack("<Q", 8) + d[25:], "counts do not add up"),
        (lambda d: d[:41] + struct.pack("<d", 7.0) + d[49:], "inconsistent min"),
        (lambda d: d[:49] + struct.pack("<d", 2e6) + d[57:], "inconsistent min"),
        (lambda d: d[:49] + struct.pack("<d", -1.0) + d[57:], "inconsistent min"),
    ],
)
def test_specific_corruptions(core, edit, match):
    with pytest.raises(ValueError, match=match):
        core.QuantileSketch.from_bytes(edit(sample_bytes(core)))


def test_non_canonical_and_out_of_range_buckets_are_rejected(core):
    header = struct.pack("<4sBdIQQddd", b"PFQS", 2, 0.01, 2048, 2, 0, 2.0, 1.0, 1.0)
    empty = struct.pack("<iI", 0, 0)
    ok = header + empty + struct.pack("<iI", 0, 1) + struct.pack("<Q", 2)
    assert core.QuantileSketch.from_bytes(ok).count == 2
    for store in (
        struct.pack("<iI", -1, 2) + struct.pack("<QQ", 0, 2),  # a zero lowest bucket
        struct.pack("<iI", 0, 2) + struct.pack("<QQ", 2, 0),  # a zero highest bucket
        struct.pack("<iI", 2**31 - 1, 1) + struct.pack("<Q", 2),  # a key no double maps to
        struct.pack("<iI", 5, 1) + struct.pack("<Q", 2),  # max = 1.0 is not in bucket 5
    ):
        with pytest.raises(ValueError):
            core.QuantileSketch.from_bytes(header + empty + store)
    with pytest.raises(TypeError, match="data must be bytes, got str"):
        core.QuantileSketch.from_bytes("PFQS")


def test_setstate_validates_first(core):
    sk = core.QuantileSketch()
    sk.push(4.0)
    before = sk.to_bytes()
    with pytest.raises(ValueError):
        sk.__setstate__(before[:-1])
    assert sk.to_bytes() == before


# ---------------------------------------------------------------------------------------------
# both backends, threads


@CYTHON_BACKEND
@settings(max_examples=EXAMPLES, deadline=None)
@given(
    xs=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=200),
    limit=st.sampled_from([2048, 7]),
)
def test_backends_write_the_same_bytes(xs, limit):
    from prodfast import _core, _core_py

    cy, py = _core.QuantileSketch(0.01, limit), _core_py.QuantileSketch(0.01, limit)
    for sk in (cy, py):
        sk.push_many(xs[: len(xs) // 2])
        for x in xs[len(xs) // 2 :]:
            sk.push(x)
    assert cy.to_bytes() == py.to_bytes()
    for q in GRID:
        assert same(cy.quantile(q), py.quantile(q))
    assert _core.QuantileSketch.from_bytes(py.to_bytes()).to_bytes() == cy.to_bytes()
    assert _core_py.QuantileSketch.from_bytes(cy.to_bytes()).to_bytes() == py.to_bytes()


_OP = st.one_of(
    st.tuples(st.just("push"), st.floats(-1e30, 1e30, allow_nan=False)),
    st.tuples(st.just("push_many"), st.lists(st.floats(-1e30, 1e30, allow_nan=False), max_size=40)),
    st.tuples(st.just("merge"), st.lists(st.floats(-1e30, 1e30, allow_nan=False), max_size=40)),
    st.tuples(st.just("merge_self"), st.none()),
    st.tuples(st.just("clear"), st.none()),
    st.tuples(st.just("reload"), st.none()),
)


@CYTHON_BACKEND
@settings(max_examples=EXAMPLES * 4, deadline=None)
@given(ops=st.lists(_OP, max_size=30), limit=st.sampled_from([1, 3, 16, 70, 2048]))
def test_backends_agree_on_any_sequence_of_operations(ops, limit):
    """The compiled core's bucket windows (grown, shifted, collapsed) against the twin's lists."""
    from prodfast import _core, _core_py

    sketches = [m.QuantileSketch(0.05, limit) for m in (_core, _core_py)]
    for op, arg in ops:
        for i, (m, sk) in enumerate(zip((_core, _core_py), sketches, strict=True)):
            if op == "push":
                sk.push(arg)
            elif op == "push_many":
                sk.push_many(arg)
            elif op == "merge":
                other = m.QuantileSketch(0.05, 7)
                other.push_many(arg)
                sk.merge(other)
            elif op == "merge_self":
                sk.merge(sk)
            elif op == "clear":
                sk.clear()
            else:
                sketches[i] = sk = m.QuantileSketch.from_bytes(sk.to_bytes())
        cy, py = sketches
        assert cy.to_bytes() == py.to_bytes()
        assert same(cy.quantile(0.3), py.quantile(0.3))


OCTAVES = [-1074, -1060, -1023, -1022, -1021, -60, -1, 0, 1, 40, 1000, 1023]


def boundary_values(mapping, e):
    """Every bucket boundary of octave e, with the doubles next to each: where a key computed
    any other way than the twin's would differ first."""
    frac = np.array([1.0 + b / 2**52 for b in mapping.bounds])
    with np.errstate(over="ignore"):  # 2.0 * 2**1023
        edges = np.ldexp(frac, e)
    near = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf)])
    return near[np.isfinite(near) & (near > 0)]


@CYTHON_BACKEND
@pytest.mark.parametrize("a", [0.01, 0.0001, 0.3])
def test_backends_agree_at_bucket_boundaries(a):
    from prodfast import _core, _core_py
    from prodfast._sketch_py import _Mapping

    mapping = _Mapping(a)
    for e, sign in itertools.product(OCTAVES, (1.0, -1.0)):
        near = sign * boundary_values(mapping, e)
        cy, py = _core.QuantileSketch(a, 2**20), _core_py.QuantileSketch(a, 2**20)
        cy.push_many(near)
        py.push_many(near)
        assert cy.to_bytes() == py.to_bytes()
        one = _core.QuantileSketch(a, 2**20)
        for x in near.tolist():
            one.push(x)
        assert one.to_bytes() == py.to_bytes()


@pytest.mark.parametrize("a", [0.01, 0.001, 0.0001, 0.05, 0.3, 0.9, 0.999])
def test_mapping_buckets_are_logarithmic_and_within_the_accuracy(a):
    """The proof of the mapping, checked again here: m buckets per power of two with
    2**(1/m) <= (1 + a) / (1 - a) (m the least such), the key of each boundary and of the
    double above it, and (in exact rationals) every bucket's representative within a of
    every value of the bucket, at both ends."""
    from fractions import Fraction

    from prodfast._sketch_py import _Mapping

    mapping = _Mapping(a)
    m = mapping.per_octave
    g = Fraction(1 + a) / Fraction(1 - a)  # a as the double it is
    assert Fraction(2) <= g**m
    assert m == 1 or Fraction(2) > g ** (m - 1) * (1 + Fraction(1, 10**5))
    assert mapping.bounds[0] == 0 and mapping.bounds[-1] == 2**52 and len(mapping.bounds) == m + 1
    for j in range(1, m + 1):
        lo = 1 + Fraction(mapping.bounds[j - 1], 2**52)
        hi = 1 + Fraction(mapping.bounds[j], 2**52)
        assert abs(float(hi) - 2 ** (j / m)) <= 4e-16 * 2 ** (j / m)
        v = Fraction(mapping.value(j))
        assert v - lo <= Fraction(a) * lo and hi - v <= Fraction(a) * hi, j
        for e in (-1022, 0, 1023):  # every octave alike: the same j, shifted by e * m
            if j < m or e < 1023:  # (2**1024 is no double)
                top = math.ldexp(float(hi), e)
                assert mapping.key(top) == e * m + j
                assert mapping.key(math.nextafter(top, math.inf)) == e * m + j + 1
            assert mapping.value(e * m + j) == math.ldexp(float(v), e)
    rng = np.random.default_rng(11)
    log_gamma = math.log(2) / m
    for x in (10.0 ** rng.uniform(-300, 300, 2000)).tolist():
        t = math.log(x) / log_gamma  # ceil(t), but for ties within the rounding of log
        assert t - 1e-6 <= mapping.key(x) < t + 1 + 1e-6
    assert mapping.min_key == -1074 * m and mapping.max_key == 1024 * m


def test_serialized_format_is_pinned(core):
    """Version 2 bytes of a small sketch: integer keys, so the same on every platform."""
    sk = core.QuantileSketch(0.01)
    sk.push_many([-3.0, 0.0, 1.0, 1.01, 1.03])
    assert sk.to_bytes() == bytes.fromhex(
        "5046515302"  # magic, version 2
        "7b14ae47e17a843f"
        "00080000"  # relative_accuracy 0.01, bucket_limit 2048
        "0500000000000000"
        "0100000000000000"  # count 5, zeros 1
        "8014ae47e17aa43f"
        "00000000000008c0"
        "7b14ae47e17af03f"  # sum, min -3.0, max 1.03
        "38000000"
        "01000000"
        "0100000000000000"  # negative: key 56 = 35 + 21, one bucket
        "00000000"
        "03000000"
        "010000000000000001000000000000000100000000000000"  # keys 0..2
    )


@CYTHON_BACKEND
@pytest.mark.parametrize("count", [2**62 + 1, 2**63 - 1, 2**53 + 1])
def test_backends_agree_on_ranks_near_the_count_limit(count):
    """q * (count - 1) in floating point rounds differently from the exact rank there."""
    from prodfast import _core, _core_py

    header = struct.pack(
        "<4sBdIQQddd", b"PFQS", 2, 0.01, 2048, count, 1, 2.0 * (count - 1), 0.0, 2.0
    )
    store = struct.pack("<iI", 0, 36) + struct.pack("<36Q", count - 3, *([0] * 34), 2)
    data = header + struct.pack("<iI", 0, 0) + store
    cy, py = _core.QuantileSketch.from_bytes(data), _core_py.QuantileSketch.from_bytes(data)
    for q in (0.0, 0.5, 1 - 2**-52, 1 - 2**-53, 1.0, 1 - 1e-18, 1 - 3 / count):
        assert cy.quantile(q) == py.quantile(q), q


def test_threads_do_not_lose_values(core):
    sk = core.QuantileSketch()
    other = core.QuantileSketch()
    other.push_many(np.ones(10))
    per_thread, threads = 2000, 4
    barrier = threading.Barrier(threads)

    def work(seed):
        xs = np.random.default_rng(seed).random(per_thread).tolist()
        barrier.wait()
        for i, x in enumerate(xs):
            if i % 100 == 0:
                sk.push_many(xs[i : i + 10])
                sk.merge(other)
            sk.push(x)

    ts = [threading.Thread(target=work, args=(s,)) for s in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sk.count == threads * (per_thread + 20 * 20)


def test_class_is_final(core):
    with pytest.raises(TypeError, match="not an acceptable base type"):
        type("Sub", (core.QuantileSketch,), {})


@pytest.mark.parametrize("a", [0.0001, 0.01, 0.9])
def test_values_next_to_the_largest_double(core, a):
    big = sys.float_info.max
    data = [big, -big, 1.7976566225640982e308, -1.79e308, 1.0e308, 0.0]
    sk = core.QuantileSketch(a, 2**20)
    sk.push_many(data)
    assert_guarantee(sk, data, [r / 5 for r in range(6)] + [0.3, 0.5, 0.7])
    assert core.QuantileSketch.from_bytes(sk.to_bytes()).to_bytes() == sk.to_bytes()


@CYTHON_BACKEND
def test_twins_have_the_same_surface():
    import inspect

    from prodfast import _core, _core_py

    cy, py = _core.QuantileSketch, _core_py.QuantileSketch
    public = {a for a in dir(py) if not a.startswith("_")}
    assert public == {a for a in dir(cy) if not a.startswith("_")}
    data = np.random.default_rng(4).standard_cauchy(500)
    pairs = [(cy(), py()), (cy(0.02, 64), py(0.02, 64))]
    for obj_cy, obj_py in pairs[1:]:
        obj_cy.push_many(data)
        obj_py.push_many(data)
    for attr in sorted(public):
        f_cy, f_py = getattr(cy, attr), getattr(py, attr)
        if isinstance(f_py, property):
            for obj_cy, obj_py in pairs:
                a, b = getattr(obj_cy, attr), getattr(obj_py, attr)
                assert type(a) is type(b) and same(a, b), attr
            continue
        shape = [(p.name, p.kind, p.default) for p in inspect.signature(f_py).parameters.values()]
        assert shape == [
            (p.name, p.kind, p.default) for p in inspect.signature(f_cy).parameters.values()
        ], attr


@CYTHON_BACKEND
@pytest.mark.parametrize("n", [1, 3, 4, 5, 9, 64, 1001])
def test_push_many_keeps_the_first_of_equal_extremes(n):
    """The compiled batch pass keeps several minima and maxima at once: the zero it reports
    (0.0 or -0.0) is still the first one, as pushing one by one keeps, on arrays of any length."""
    from prodfast import _core, _core_py

    rng = np.random.default_rng(n)
    for trial in range(20):
        data = rng.choice([0.0, -0.0, 1.5, -2.5], n) if trial % 2 else rng.choice([0.0, -0.0], n)
        if trial == 3:
            data[n // 2] = np.nan
        sketches = [m.QuantileSketch() for m in (_core, _core_py)]
        outcomes = []
        for sk in sketches:
            try:
                sk.push_many(data)
                outcomes.append(sk.to_bytes())
            except ValueError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1], data
        if not isinstance(outcomes[0], str):
            cy = sketches[0]
            assert math.copysign(1.0, cy.min) == math.copysign(1.0, data[data == data.min()][0])


@CYTHON_BACKEND
@pytest.mark.parametrize("limit", [64, 2048])
def test_large_batches_counted_chunk_by_chunk_equal_the_twin(limit):
    """A large array is checked and counted chunk by chunk by the compiled core (read from
    memory once): the same bytes as the twin, and a bad value in the last chunk applies
    nothing, after earlier chunks were counted."""
    from prodfast import _core, _core_py

    rng = np.random.default_rng(limit)
    data = np.concatenate(
        [rng.standard_cauchy(50_000), np.zeros(3), [-0.0], 10.0 ** rng.uniform(-9, 9, 20_000)]
    )
    rng.shuffle(data)
    cy, py = _core.QuantileSketch(0.01, limit), _core_py.QuantileSketch(0.01, limit)
    for sk in (cy, py):
        sk.push_many([2.0, -1.0])
        sk.push_many(data)
    assert cy.to_bytes() == py.to_bytes()
    before = cy.to_bytes()
    bad = data.copy()
    bad[-2] = np.inf
    with pytest.raises(ValueError, match=f"got .*inf.* at index {len(bad) - 2}"):
        cy.push_many(bad)
    assert cy.to_bytes() == before
    cy.push_many(data)
    py.push_many(data)
    assert cy.to_bytes() == py.to_bytes()
