"""Tables for the terminal and a JSON file of the results, with the run's circumstances."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from dataclasses import asdict
from importlib import metadata

from .runner import Report, Result

PEER_DISTRIBUTIONS = (
    "numpy",
    "cachetools",
    "lru-dict",
    "cachebox",
    "limits",
    "pyrate-limiter",
    "aiolimiter",
    "runstats",
    "ddsketch",
    "fastdigest",
    "prometheus-client",
    "matplotlib",
)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for dist in ("prodfast", *PEER_DISTRIBUTIONS):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def environment(argv: list[str]) -> dict[str, object]:
    """Date, machine, Python and command of this run, for the JSON file and the table header."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        "command": "python -m prodfast.bench " + " ".join(argv),
        "versions": versions(),
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _size(n: int | None) -> str:
    if n is None:
        return ""
    exponent = len(str(n)) - 1
    return f"1e{exponent}" if n == 10**exponent else f"{n:,}"


COLUMNS = ("operation", "N", "contender", "ns/op", "vs fastest peer", "vs floor")


def _rows(results: list[Result]) -> list[tuple[str, ...]]:
    rows = []
    previous = None
    for r in results:
        key = (r.operation, r.n)
        label = (r.operation, _size(r.n)) if key != previous else ("", "")
        previous = key
        role = "" if r.role == "prodfast" else f" ({r.role})"
        unit = "" if r.unit == "op" else f"/{r.unit}"
        rows.append(
            (
                *label,
                r.contender + role,
                f"{r.ns_per_op:,.1f}{unit}",
                _ratio(r.ratio_fastest_peer),
                _ratio(r.ratio_floor),
            )
        )
    return rows


def table(results: list[Result]) -> str:
    """One plain-text table; rows of one operation (and size) stay together."""
    rows = [COLUMNS, *_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    right = {3, 4, 5}

    def line(row: tuple[str, ...]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def scaling_rows(results: list[Result]) -> list[dict[str, object]]:
    """For operations timed at several sizes: each contender's ratio to the floor at the
    smallest and the largest N, and how much it grew (1.0 = scales exactly like a dict)."""
    sizes = sorted({r.n for r in results if r.n is not None})
    if len(sizes) < 2:
        return []
    small, large = sizes[0], sizes[-1]
    at = {(r.operation, r.contender, r.n): r for r in results}
    rows = []
    for r in results:
        if r.n != small or r.role == "floor" or r.ratio_floor is None:
            continue
        big = at.get((r.operation, r.contender, large))
        if big is None or big.ratio_floor is None:
            continue
        rows.append(
            {
                "operation": r.operation,
                "contender": r.contender,
                "n_small": small,
                "n_large": large,
                "vs_floor_small": r.ratio_floor,
                "vs_floor_large": big.ratio_floor,
                "growth": big.ratio_floor / r.ratio_floor,
            }
        )
    return rows


def scaling_table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return ""
    small, large = _size(rows[0]["n_small"]), _size(rows[0]["n_large"])
    head = ("operation", "contender", f"vs floor N={small}", f"vs floor N={large}", "growth")
    body = [
        (
            str(row["operation"]),
            str(row["contender"]),
            _ratio(row["vs_floor_small"]),
            _ratio(row["vs_floor_large"]),
            _ratio(row["growth"]),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)])


def areas(report: Report) -> list[str]:
    seen: list[str] = []
    for r in report.results:
        if r.area not in seen:
            seen.append(r.area)
    return seen


def render(report: Report, env: dict[str, object]) -> str:
    """Every area's table, then the notes (skipped contenders and why)."""
    parts = [
        f"prodfast benchmark — {env['date']} — {env['cpu']} ({env['cpus']} CPUs) — "
        f"Python {env['python']} — {env['command']}",
        "median ns per operation over interleaved rounds; ratios: lower is faster",
    ]
    for area in areas(report):
        results = [r for r in report.results if r.area == area]
        parts += ["", f"== {area} ==", table(results)]
        scaled = scaling_table(scaling_rows(results))
        if scaled:
            parts += ["", f"== {area}: cost relative to the floor as N grows ==", scaled]
    notes = report.skip_notes() + report.notes
    if notes:
        parts += ["", "notes:", *(f"  - {note}" for note in notes)]
    return "\n".join(parts)


def to_json(report: Report, env: dict[str, object], settings: object) -> dict[str, object]:
    return {
        "environment": env,
        "settings": asdict(settings),
        "results": [asdict(r) for r in report.results],
        "scaling": {
            area: scaling_rows([r for r in report.results if r.area == area])
            for area in areas(report)
        },
        "skipped": [asdict(s) for s in report.skips],
        "notes": report.skip_notes() + report.notes,
    }


def write_json(path: str, data: dict[str, object]) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
