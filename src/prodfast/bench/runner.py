"""The timing engine: contenders of one operation, interleaved round-robin, medians in ns/op.

A *case* is one contender doing one operation: its ``setup()`` prepares the data structure
and a batch of inputs and returns a :class:`Timed` — a zero-argument ``run`` that performs
``ops`` operations in a tight loop. The cases of one operation form a :class:`Group`; the
runner sets them all up, then times them A B C A B C ... over many short rounds, so that
the noise of a shared machine (other processes, frequency changes) lands on every
contender alike. The figure reported is the median over rounds of ``elapsed / ops``.

Every figure includes the cost of the Python loop that drives the operations (a ``for`` over
a prepared list, a few ns per iteration), the same for every contender; the floor of each
operation (a dict, a bare ``time.monotonic()``, numpy) is timed the same way, so ratios to
it are fair. The cyclic garbage collector is switched off inside the rounds and run between
them, so that no contender pays for another's garbage.

A contender whose library is not installed, or a prodfast class that does not exist yet,
raises :class:`Missing` from its setup: the runner skips it and keeps a note (an area that needs
a redis-server it cannot find raises :class:`NoServer`, a kind of Missing).

Every ``Timed`` carries a ``check()``: after the first (untimed) run, it verifies that the
contender did the work it is timed for (a hit returned the value, a limiter granted, a peer
counted every value), and raises :class:`CheckFailed` otherwise. ``python -m prodfast.bench``
and the pytest-benchmark wrappers in ``bench/`` both run it before timing, so that a figure
never comes from a contender that silently did something else.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

FLOOR = "floor"
PEER = "peer"
PRODFAST = "prodfast"
ROLES = (FLOOR, PEER, PRODFAST)


class Missing(Exception):
    """A contender cannot run here (library not installed, class not available)."""


class NoServer(Missing):
    """A contender needs a server (redis-server) that cannot be found or started here."""


class CheckFailed(AssertionError):
    """A contender's first run did not do the work it is timed for."""


def expect(condition: object, message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


@dataclass(frozen=True)
class Timed:
    """What one setup returns: ``run()`` performs ``ops`` operations of the measured kind;
    ``check()``, called once after the first run, raises :class:`CheckFailed` unless that run
    did the work (required: a case that checks nothing cannot fail)."""

    run: Callable[[], object]
    ops: int
    check: Callable[[], object] | None = None
    close: Callable[[], object] | None = None  # called once timing is over

    def first_run(self) -> None:
        """The warm-up run and its check (both harnesses call this before timing)."""
        if self.check is None:
            raise CheckFailed("this case has no check()")
        self.run()
        self.check()


@dataclass(frozen=True)
class Case:
    """One contender doing one operation."""

    contender: str
    role: str
    setup: Callable[[], Timed]

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")


@dataclass
class Group:
    """The cases of one operation (at one size ``n``), timed side by side."""

    area: str
    operation: str
    cases: list[Case]
    n: int | None = None
    unit: str = "op"


@dataclass(frozen=True)
class Budget:
    """How long to time one group: at least ``min_rounds``, at most ``max_rounds`` rounds,
    stopping early once ``seconds`` of timing have passed."""

    min_rounds: int = 5
    max_rounds: int = 40
    seconds: float = 1.0


@dataclass
class Result:
    area: str
    operation: str
    n: int | None
    contender: str
    role: str
    ns_per_op: float
    rounds: int
    ops_per_round: int
    unit: str = "op"
    ratio_fastest_peer: float | None = None
    ratio_floor: float | None = None
    samples: list[float] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Skip:
    """A contender that did not run for one operation, and why (``reason_is_missing``: it
    cannot run here; otherwise it failed its check or raised, which is a bug)."""

    area: str
    operation: str
    n: int | None
    contender: str
    reason: str
    reason_is_missing: bool = False


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # anything else worth saying

    def skip_notes(self) -> list[str]:
        """One line per skipped contender and reason, however many operations it missed."""
        grouped: dict[tuple[str, str, str], list[Skip]] = {}
        for s in self.skips:
            grouped.setdefault((s.area, s.contender, s.reason), []).append(s)
        lines = []
        for (area, contender, reason), skips in grouped.items():
            ops = list(dict.fromkeys(s.operation for s in skips))
            where = ops[0] if len(ops) == 1 else f"{len(ops)} operations"
            lines.append(f"{area}: {contender} skipped in {where} ({reason})")
        return lines


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, CheckFailed):
        return f"failed its check: {text}"
    return text if isinstance(exc, Missing) else f"{type(exc).__name__}: {text}"


def _prepare(group: Group, skips: list[Skip]) -> list[tuple[Case, Timed]]:
    """Set up every case and run each once (a warm-up), then its check."""
    ready = []
    for case in group.cases:
        timed = None
        try:
            timed = case.setup()
            timed.first_run()
        except Exception as exc:  # a contender that cannot run is skipped, never fatal
            if timed is not None:
                _close(timed)
            missing = isinstance(exc, Missing)
            skips.append(
                Skip(group.area, group.operation, group.n, case.contender, _describe(exc), missing)
            )
            continue
        ready.append((case, timed))
    return ready


def _close(timed: Timed) -> None:
    if timed.close is not None:
        timed.close()


def _rounds(ready: list[tuple[Case, Timed]], budget: Budget) -> list[list[float] | Exception]:
    """Time the cases round-robin; return the per-op samples (ns) of each case, or the
    exception that stopped it (it then sits out the remaining rounds)."""
    samples: list[list[float] | Exception] = [[] for _ in ready]
    clock = time.perf_counter_ns
    started = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for done in range(budget.max_rounds):
            if done >= budget.min_rounds and time.perf_counter() - started > budget.seconds:
                break
            # Each round starts at the next case: the first case of a round pays for loading
            # what the cases share (the batch's keys, say) into the CPU caches, so a fixed order
            # would favour whoever runs after it.
            start = done % len(ready)
            for i in [*range(start, len(ready)), *range(start)]:
                timed = ready[i][1]
                kept = samples[i]
                if isinstance(kept, Exception):
                    continue
                t0 = clock()
                try:
                    timed.run()
                except Exception as exc:  # a contender failing midway is dropped, not fatal
                    samples[i] = exc
                    continue
                kept.append((clock() - t0) / timed.ops)
            # The collector still runs between rounds, outside any timed region.
            gc.collect(0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def _ratios(results: list[Result]) -> None:
    peers = [r.ns_per_op for r in results if r.role == PEER]
    floors = [r.ns_per_op for r in results if r.role == FLOOR]
    fastest_peer = min(peers) if peers else None
    floor = min(floors) if floors else None
    for r in results:
        r.ratio_fastest_peer = r.ns_per_op / fastest_peer if fastest_peer else None
        r.ratio_floor = r.ns_per_op / floor if floor else None


def time_group(group: Group, budget: Budget, skips: list[Skip]) -> list[Result]:
    """Set up and time one group; skipped contenders only leave a note."""
    ready = _prepare(group, skips)
    if not ready:
        return []
    try:
        samples = _rounds(ready, budget)
    finally:
        for _, timed in ready:
            _close(timed)
    results = []
    for (case, timed), s in zip(ready, samples, strict=True):
        if isinstance(s, Exception):
            reason = f"failed while timed: {_describe(s)}"
            skips.append(Skip(group.area, group.operation, group.n, case.contender, reason))
            continue
        results.append(
            Result(
                area=group.area,
                operation=group.operation,
                n=group.n,
                contender=case.contender,
                role=case.role,
                ns_per_op=statistics.median(s),
                rounds=len(s),
                ops_per_round=timed.ops,
                unit=group.unit,
                samples=s,
            )
        )
    _ratios(results)
    return results


def progress(message: str, stream=None) -> None:
    """One line of progress on stderr (the tables go to stdout)."""
    print(message, file=stream or sys.stderr, flush=True)


def run_groups(groups: Iterable[Group], budget: Budget, *, quiet: bool = False) -> Report:
    """Time every group in turn. ``groups`` may be a generator: each area builds its large
    data for one size at a time, and it is freed before the next size is built."""
    report = Report()
    started = time.perf_counter()
    for index, group in enumerate(groups, 1):
        size = f" N={group.n:,}" if group.n else ""
        if not quiet:
            progress(
                f"[{time.perf_counter() - started:6.1f}s] #{index} {group.area}:{size} "
                f"{group.operation} ({len(group.cases)} contenders)"
            )
        report.results.extend(time_group(group, budget, report.skips))
    return report


def repeat_calls(fn: Callable[[], object], count: int) -> Callable[[], None]:
    """A run() that calls ``fn()`` ``count`` times."""

    def run() -> None:
        for _ in itertools.repeat(None, count):
            fn()

    return run


def call_each(fn: Callable[[object], object], items: list) -> Callable[[], None]:
    """A run() that calls ``fn(x)`` for every prepared ``x``."""

    def run() -> None:
        for x in items:
            fn(x)

    return run


def call_each_pair(fn: Callable[[object, object], object], pairs: list) -> Callable[[], None]:
    """A run() that calls ``fn(a, b)`` for every prepared pair."""

    def run() -> None:
        for a, b in pairs:
            fn(a, b)

    return run


def getitem_each(obj, keys: list) -> Callable[[], None]:
    """A run() that evaluates ``obj[k]`` for every key (the subscript syntax, not a call)."""

    def run() -> None:
        for k in keys:
            _ = obj[k]

    return run


def setitem_each(obj, pairs: list) -> Callable[[], None]:
    """A run() that executes ``obj[k] = v`` for every prepared pair."""

    def run() -> None:
        for k, v in pairs:
            obj[k] = v

    return run


def cycle_runs(runs: list[Callable[[], object]]) -> Callable[[], None]:
    """A run() that calls the next of ``runs`` at every call, cyclically (for operations that
    change what the next call sees, such as inserting keys that must be new)."""
    next_run = itertools.cycle(runs).__next__

    def run() -> None:
        next_run()()

    return run


def chunks(seq: list, size: int) -> Iterator[list]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


BACKENDS = (("cy", "prodfast._core"), ("py", "prodfast._core_py"))


def require(module: str, attr: str | None = None, *, dist: str | None = None):
    """Import ``module`` (and fetch ``attr``), or raise :class:`Missing` saying what is absent."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        hint = f"{dist or module} is not installed (pip install 'prodfast[bench]')"
        if module == "prodfast" or module.startswith("prodfast."):
            hint = f"{module} cannot be imported ({exc})"
        raise Missing(hint) from None
    if attr is None:
        return mod
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise Missing(f"{module} has no {attr}") from None


@dataclass(frozen=True)
class Settings:
    """Sizes and budgets of one run; ``quick()`` and ``full()`` are the two presets."""

    sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)  # cache sizes N
    batch: int = 1_000  # operations per timed call
    array: int = 10_000_000  # values per push_many / numpy call
    pure_array: int = 100_000  # the same for pure-Python contenders, whose cost is linear
    trace: int = 1_000_000  # decisions per simulate() call
    window_fill: int = 100_000  # calls already in a sliding window
    keys: str = "str"  # cache keys: "str" or "int"
    budget: Budget = Budget(min_rounds=9, max_rounds=100, seconds=3.0)

    @classmethod
    def full(cls) -> Settings:
        return cls()

    @classmethod
    def smoke(cls) -> Settings:
        """The least that runs every case once (``pytest bench --benchmark-disable``)."""
        return cls(
            sizes=(1_000,),
            batch=100,
            array=20_000,
            pure_array=2_000,
            trace=2_000,
            window_fill=200,
            budget=Budget(min_rounds=1, max_rounds=1, seconds=0.0),
        )

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            sizes=(1_000, 10_000, 100_000),
            array=1_000_000,
            pure_array=20_000,
            trace=100_000,
            window_fill=100_000,
            budget=Budget(min_rounds=5, max_rounds=25, seconds=0.35),
        )
