"""Command line: ``python -m prodfast.bench [--quick|--smoke] [--area AREA ...] [--json PATH] [--plot-dir DIR]``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from . import (
    caches,
    decorators,
    limiters,
    monitoring,
    redis_limiters,
    report,
    shared_caches,
    stats,
)
from .runner import Budget, Missing, Settings, progress, run_groups

# every area, in the order of a run; the Redis ones start their own redis-server
AREAS = {
    area.AREA: area
    for area in (caches, decorators, limiters, redis_limiters, shared_caches, stats, monitoring)
}


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(float(part)) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes wants numbers like 1e3,1e4, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("--sizes must be positive")
    return sizes


def _positive(text: str) -> int:
    value = int(float(text))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m prodfast.bench",
        description="Time prodfast's two backends beside the installed peers, side by side.",
    )
    preset = p.add_mutually_exclusive_group()
    preset.add_argument(
        "--quick", action="store_true", help="smaller sizes and budgets (a few minutes)"
    )
    preset.add_argument(
        "--smoke",
        action="store_true",
        help="every case once at tiny sizes, with its check: a correctness pass, not figures",
    )
    p.add_argument(
        "--area",
        action="append",
        choices=sorted(AREAS),
        help="run only this area (repeatable; default: all)",
    )
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot-dir", metavar="DIR", help="draw PNG charts into DIR")
    tuning = p.add_argument_group("tuning (override the preset)")
    tuning.add_argument("--sizes", type=_sizes, help="cache sizes N, e.g. 1e3,1e4,1e5,1e6")
    tuning.add_argument("--batch", type=_positive, help="operations per timed call")
    tuning.add_argument("--array", type=_positive, help="values per batch statistics call")
    tuning.add_argument("--trace", type=_positive, help="decisions per simulate() call")
    tuning.add_argument("--window-fill", type=_positive, help="calls already in a sliding window")
    tuning.add_argument("--keys", choices=("str", "int"), help="cache key type (default: str)")
    tuning.add_argument("--rounds", type=_positive, help="at most this many rounds per operation")
    tuning.add_argument("--seconds", type=float, help="timing budget per operation")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    base = Settings.quick() if args.quick else Settings.smoke() if args.smoke else Settings.full()
    changes = {
        field: getattr(args, field)
        for field in ("sizes", "batch", "array", "trace", "window_fill", "keys")
        if getattr(args, field) is not None
    }
    if args.array is not None:
        changes["pure_array"] = min(base.pure_array, args.array)
    budget = base.budget
    if args.rounds is not None:
        budget = Budget(min(budget.min_rounds, args.rounds), args.rounds, budget.seconds)
    if args.seconds is not None:
        budget = dataclasses.replace(budget, seconds=args.seconds)
    return dataclasses.replace(base, budget=budget, **changes)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    settings = settings_from(args)
    env = report.environment(argv)
    chosen = args.area or list(AREAS)
    started = time.perf_counter()
    progress(f"prodfast bench: {', '.join(chosen)}; {'quick' if args.quick else 'smoke' if args.smoke else 'full'} run")
    groups = (group for name in chosen for group in AREAS[name].groups(settings))
    result = run_groups(groups, settings.budget)
    progress(f"done in {time.perf_counter() - started:.1f}s")
    charts: list[str] = []
    if args.plot_dir:
        try:
            from . import plots

            charts = plots.draw(result, args.plot_dir, env)
            for path in charts:
                progress(f"wrote {path}")
        except Missing as exc:
            result.notes.append(f"charts skipped ({exc})")
    print(report.render(result, env))
    if charts:
        names = ", ".join(os.path.basename(path) for path in charts)
        print(f"\ncharts written to {args.plot_dir}: {names}")
    if args.json:
        report.write_json(args.json, report.to_json(result, env, settings))
        progress(f"wrote {args.json}")
    broken = [s for s in result.skips if not s.reason_is_missing]
    if broken:
        # a contender that failed its check or raised is a bug, not an absence: say so in the status
        progress(f"{len(broken)} case(s) failed their check or raised (see the notes): exit status 1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
