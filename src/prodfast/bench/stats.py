"""Statistics: push(x) from a Python loop, and batch updates over a float64 numpy array.

Scalar pushes are timed on a batch of lognormal latencies (Python floats). Their floor is
``list.append`` — keeping the value at all. Batch operations report ns per value; their floor
is numpy doing the same job on the same array (``arr.mean() + arr.var()``, or
``np.percentile(arr, [50, 95, 99])``). Pure-Python contenders, whose cost per value does not
depend on the array's length, get a shorter slice of it so a run stays short.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .runner import (
    BACKENDS,
    FLOOR,
    PEER,
    PRODFAST,
    Case,
    Group,
    Missing,
    Settings,
    Timed,
    call_each,
    expect,
    require,
)

AREA = "stats"
PS = (0.5, 0.95, 0.99)


def _latencies(size: int) -> np.ndarray:
    return np.random.default_rng(11).lognormal(mean=-3.0, sigma=0.8, size=size)


Counted = Callable[[], float]  # how many values the contender has taken in


def _pushes(make: Callable[[], tuple[Callable[[float], object], Counted]], values: list[float]):
    """A setup timing ``fn(x)`` over the prepared values, ``fn, count = make()``; the check
    wants ``count()`` to say every value of the first run was taken in."""

    def setup() -> Timed:
        push, count = make()

        def check() -> None:
            taken = count()
            expect(taken == len(values), f"counted {taken} values after a run of {len(values)}")

        return Timed(call_each(push, values), len(values), check)

    return setup


def _floor_append():
    kept: list[float] = []
    return kept.append, lambda: len(kept)


def _prodfast(module: str, cls_name: str, *args):
    def make():
        stat = require(module, cls_name)(*args)
        if cls_name == "LatencySummary":
            return stat.push, lambda: stat.snapshot()["count"]
        return stat.push, lambda: stat.count

    return make


def _runstats():
    s = require("runstats", "Statistics")()
    return s.push, lambda: len(s)


def _prometheus():
    prom = require("prometheus_client", dist="prometheus-client")
    registry = prom.CollectorRegistry()
    summary = prom.Summary("bench_latency_seconds", "latency", registry=registry)
    return summary.observe, lambda: registry.get_sample_value("bench_latency_seconds_count")


def _ddsketch():
    sk = require("ddsketch", "DDSketch")()
    return sk.add, lambda: sk.count


def _tdigest():
    td = require("fastdigest", "TDigest")()
    return td.update, lambda: td.n_values


def push_groups(settings: Settings) -> Iterator[Group]:
    values = _latencies(settings.batch).tolist()
    floor = Case("list.append", FLOOR, _pushes(_floor_append, values))

    def pushes(cls_name: str, *args) -> list[Case]:
        return [
            Case(
                f"prodfast {cls_name} [{tag}]",
                PRODFAST,
                _pushes(_prodfast(module, cls_name, *args), values),
            )
            for tag, module in BACKENDS
        ]

    yield Group(
        AREA,
        "push(x): mean/variance",
        [
            floor,
            *pushes("RunningStats"),
            Case("runstats Statistics", PEER, _pushes(_runstats, values)),
        ],
    )
    yield Group(
        AREA,
        "push(x): one quantile (p=0.99)",
        [
            floor,
            *pushes("P2Quantile", 0.99),
            Case("ddsketch DDSketch.add", PEER, _pushes(_ddsketch, values)),
            Case("fastdigest TDigest.update", PEER, _pushes(_tdigest, values)),
        ],
    )
    yield Group(
        AREA,
        "push(x): mergeable quantile sketch",
        [
            floor,
            *pushes("QuantileSketch"),
            Case("ddsketch DDSketch.add", PEER, _pushes(_ddsketch, values)),
            Case("fastdigest TDigest.update", PEER, _pushes(_tdigest, values)),
        ],
    )
    yield Group(
        AREA,
        "push(x): latency summary",
        [
            floor,
            *pushes("LatencySummary"),
            *pushes("Quantiles", PS),
            Case("prometheus_client Summary.observe", PEER, _pushes(_prometheus, values)),
        ],
    )


def _batch(run_on: Callable[[], tuple[Callable[[np.ndarray], object], Counted]], arr: np.ndarray):
    """A setup timing ``fn(arr)``; the check wants ``count()`` to be ``len(arr)`` after it."""

    def setup() -> Timed:
        fn, count = run_on()

        def check() -> None:
            taken = count()
            expect(taken == len(arr), f"counted {taken} values after a batch of {len(arr)}")

        return Timed(lambda: fn(arr), len(arr), check)

    return setup


def _numpy(fn: Callable[[np.ndarray], object]):
    """A numpy floor: ``fn(arr)``, its last result kept so the check can see its size."""

    def make():
        last: list[object] = []

        def run(a: np.ndarray) -> None:
            last[:] = [fn(a), len(a)]

        return run, lambda: last[1] if last else 0

    return make


def _numpy_mean_var():
    return _numpy(lambda a: (a.mean(), a.var()))()


def _numpy_percentiles():
    return _numpy(lambda a: np.percentile(a, [50, 95, 99]))()


def _tdigest_batch():
    td = require("fastdigest", "TDigest")()
    return td.batch_update, lambda: td.n_values


def _push_many(module: str, cls_name: str, *args):
    def make():
        stat = require(module, cls_name)(*args)
        return stat.push_many, lambda: stat.count

    return make


def batch_groups(settings: Settings) -> Iterator[Group]:
    arr = _latencies(settings.array)
    short = {"cy": arr, "py": arr[: settings.pure_array].copy()}

    def push_many(cls_name: str, *args) -> list[Case]:
        return [
            Case(
                f"prodfast {cls_name}.push_many [{tag}]",
                PRODFAST,
                _batch(_push_many(module, cls_name, *args), short[tag]),
            )
            for tag, module in BACKENDS
        ]

    yield Group(
        AREA,
        f"batch mean+variance ({len(arr):,} values)",
        [
            Case("numpy mean()+var()", FLOOR, _batch(_numpy_mean_var, arr)),
            *push_many("RunningStats"),
        ],
        unit="value",
    )
    yield Group(
        AREA,
        f"batch quantiles 50/95/99 ({len(arr):,} values)",
        [
            Case("numpy percentile", FLOOR, _batch(_numpy_percentiles, arr)),
            *push_many("Quantiles", PS),
            *push_many("QuantileSketch"),
            Case("fastdigest TDigest.batch_update", PEER, _batch(_tdigest_batch, arr)),
        ],
        unit="value",
    )
    yield merge_group(settings, arr)


MERGES = 100  # merges per timed call


def _merges(build: Callable[[np.ndarray], tuple[object, object]], merge_name: str, values):
    """A setup timing ``a.<merge_name>(b)`` for two sketches built from the halves of values."""

    def setup() -> Timed:
        a, b = build(values)
        merge = getattr(a, merge_name)
        count_a, count_b = _count(a), _count(b)

        def run() -> None:
            for _ in range(MERGES):
                merge(b)

        def check() -> None:
            want = count_a + MERGES * count_b
            expect(_count(a) == want, f"merged sketch counts {_count(a)} values, not {want}")

        return Timed(run, MERGES, check)

    return setup


def _count(sketch) -> float:
    for attr in ("count", "n_values"):
        if hasattr(sketch, attr):
            return getattr(sketch, attr)
    raise Missing(f"{type(sketch).__name__} has no count")


def _prodfast_pair(module: str):
    def build(values: np.ndarray):
        cls = require(module, "QuantileSketch")
        half = len(values) // 2
        a, b = cls(), cls()
        a.push_many(values[:half])
        b.push_many(values[half:])
        return a, b

    return build


def _ddsketch_pair(values: np.ndarray):
    cls = require("ddsketch", "DDSketch")
    half = len(values) // 2
    a, b = cls(), cls()
    for x in values[:half].tolist():
        a.add(x)
    for x in values[half:].tolist():
        b.add(x)
    return a, b


def _tdigest_pair(values: np.ndarray):
    cls = require("fastdigest", "TDigest")
    half = len(values) // 2
    return cls.from_values(values[:half]), cls.from_values(values[half:])


def merge_group(settings: Settings, arr: np.ndarray) -> Group:
    """Merging two sketches of n values each (the compiled ones; the pure-Python contenders,
    whose merge cost depends on the buckets, not on n, are built from a shorter slice)."""
    n = min(len(arr) // 2, 1_000_000)
    both = arr[: 2 * n]
    short = arr[: settings.pure_array]
    return Group(
        AREA,
        f"merge two sketches of {n:,} values",
        [
            Case(
                "prodfast QuantileSketch.merge [cy]",
                PRODFAST,
                _merges(_prodfast_pair("prodfast._core"), "merge", both),
            ),
            Case(
                "prodfast QuantileSketch.merge [py]",
                PRODFAST,
                _merges(_prodfast_pair("prodfast._core_py"), "merge", short),
            ),
            Case("ddsketch DDSketch.merge", PEER, _merges(_ddsketch_pair, "merge", short)),
            Case(
                "fastdigest TDigest.merge_inplace",
                PEER,
                _merges(_tdigest_pair, "merge_inplace", both),
            ),
        ],
    )


def groups(settings: Settings) -> Iterator[Group]:
    yield from push_groups(settings)
    yield from batch_groups(settings)
