"""The glue between pytest-benchmark and ``prodfast.bench``: every workload and peer is defined
once, there; each file here names one area (``AREA = "caches"``) and has one test taking
``bench_case`` and ``bench_run``, parametrized over every case of that area.

A case's ``setup()`` gives a ``Timed``; ``bench_run`` makes its first run and its ``check()``
(a failed check fails the test), then hands ``Timed.run`` to pytest-benchmark, so that
``pytest bench --benchmark-only`` and ``make bench`` time the same code. A contender that
cannot run here (a peer not installed) is skipped with the reason; so is an area that needs a
redis-server when none can be found, unless ``PRODFAST_REQUIRE_REDIS=1``, which makes it fail.

Sizes: ``--benchmark-disable`` (``make test``) uses the smoke preset (every case once, on tiny
data); timing runs use the quick preset, or the one named by ``PRODFAST_BENCH_PRESET``
(``quick``, ``full`` or ``smoke``). Per-operation figures: pytest-benchmark reports the time of
one ``run``, and ``extra_info["ops"]`` is the number of operations it makes (1,000 for the
caches, decorators, limiter decisions and statistics pushes of the quick preset, where
microseconds per run read as nanoseconds per operation).
``make bench`` divides for you, and interleaves the contenders of an operation; prefer it for
ratios on a shared machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from prodfast.bench.__main__ import AREAS
from prodfast.bench.runner import Group, Missing, NoServer, Settings, Timed
from prodfast.bench.servers import require_redis

PRESETS = {"quick": Settings.quick, "full": Settings.full, "smoke": Settings.smoke}


def _settings(config: pytest.Config) -> Settings:
    if config.getoption("benchmark_disable"):
        return Settings.smoke()
    name = os.environ.get("PRODFAST_BENCH_PRESET", "quick")
    if name not in PRESETS:
        raise pytest.UsageError(f"PRODFAST_BENCH_PRESET must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]()


class _Stream:
    """The groups of one area, built lazily and in order (an area builds the data of one size
    at a time and frees it before the next); asking for an earlier group starts over."""

    def __init__(self, area: str, settings: Settings) -> None:
        self.area, self.settings = area, settings
        self._groups: Iterator[Group] | None = None
        self._index = -1
        self._current: Group | None = None

    def group(self, index: int) -> Group:
        if self._groups is None or index < self._index:
            self.close()
            self._groups = iter(AREAS[self.area].groups(self.settings))
            self._index = -1
        while self._index < index:
            self._current = next(self._groups)
            self._index += 1
        assert self._current is not None
        return self._current

    def close(self) -> None:
        if self._groups is not None:
            close = getattr(self._groups, "close", None)
            if close is not None:
                close()  # a generator's finally: stops the area's server and workers
        self._groups, self._current, self._index = None, None, -1


_streams: dict[str, _Stream] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_case" not in metafunc.fixturenames:
        return
    area = metafunc.module.AREA
    params = []
    groups = AREAS[area].groups(_settings(metafunc.config))
    try:
        for index, group in enumerate(groups):
            size = f" N={group.n}" if group.n else ""
            for case in group.cases:
                marks = [pytest.mark.cython_backend] if case.contender.endswith("[cy]") else []
                ident = f"{group.operation}{size} | {case.contender}"
                params.append(pytest.param((area, index, case.contender), id=ident, marks=marks))
    finally:
        groups.close()  # listing the cases builds no structure and starts no server
    metafunc.parametrize("bench_case", params)


def pytest_sessionfinish(session: pytest.Session) -> None:
    for stream in _streams.values():
        stream.close()
    _streams.clear()


def _skip(exc: Missing) -> None:
    if isinstance(exc, NoServer) and require_redis():
        pytest.fail(f"{exc} (PRODFAST_REQUIRE_REDIS=1 makes this a failure)")
    pytest.skip(str(exc))


@pytest.fixture
def bench_run(benchmark, request):
    """``bench_run(bench_case)``: set the case up, check its first run, time its run."""
    settings = _settings(request.config)

    def run(ref: tuple[str, int, str]) -> None:
        area, index, name = ref
        stream = _streams.get(area)
        if stream is None:
            stream = _streams[area] = _Stream(area, settings)
        group = stream.group(index)
        (case,) = [c for c in group.cases if c.contender == name]
        timed: Timed | None = None
        try:
            try:
                timed = case.setup()
                timed.first_run()  # a CheckFailed fails the test
            except Missing as exc:
                _skip(exc)
            size = f" N={group.n:,}" if group.n else ""
            benchmark.group = f"{area}: {group.operation}{size}"
            benchmark.extra_info.update(
                area=area,
                operation=group.operation,
                n=group.n,
                contender=name,
                role=case.role,
                ops=timed.ops,
                unit=group.unit,
            )
            benchmark(timed.run)
        finally:
            if timed is not None and timed.close is not None:
                timed.close()

    return run
