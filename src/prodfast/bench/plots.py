"""PNG charts with matplotlib (Agg backend, no display needed).

- ``<area>.png``: per operation, one bar per contender (ns/op, log scale). For the caches,
  one such chart per size N.
- ``caches_scaling.png``: per operation, ns/op against N on log-log axes, one line per
  contender: a flat line is O(1) in practice; a rising one is the memory hierarchy or worse.
"""

from __future__ import annotations

import os
from collections import defaultdict

from .runner import FLOOR, PEER, Missing, Report, Result

HATCH = {FLOOR: "//", PEER: "", "prodfast": ""}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise Missing("matplotlib is not installed (pip install 'prodfast[bench]')") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _contenders(results: list[Result]) -> list[str]:
    names: list[str] = []
    for r in results:
        if r.contender not in names:
            names.append(r.contender)
    return names


def _colors(plt, names: list[str]) -> dict[str, object]:
    cmap = plt.get_cmap("tab20")
    return {name: cmap(i % 20) for i, name in enumerate(names)}


def bars(plt, results: list[Result], title: str, path: str) -> str:
    """Grouped bars: operations along x, one bar per contender."""
    operations: list[str] = []
    for r in results:
        if r.operation not in operations:
            operations.append(r.operation)
    names = _contenders(results)
    colors = _colors(plt, names)
    by_key = {(r.operation, r.contender): r for r in results}
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(8, 2.2 * len(operations)), 5.5))
    for j, name in enumerate(names):
        xs, heights, role = [], [], None
        for i, op in enumerate(operations):
            r = by_key.get((op, name))
            if r is not None:
                xs.append(i - 0.4 + (j + 0.5) * width)
                heights.append(r.ns_per_op)
                role = r.role
        ax.bar(
            xs,
            heights,
            width,
            label=name,
            color=colors[name],
            hatch=HATCH.get(role, ""),
            edgecolor="black",
            linewidth=0.3,
        )
    ax.set_xticks(
        range(len(operations)), [op.replace(" (", "\n(") for op in operations], fontsize=8
    )
    ax.set_yscale("log")
    ax.set_ylabel("median ns per operation (log)")
    ax.set_title(title)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scaling(plt, results: list[Result], title: str, path: str) -> str:
    """One panel per operation: ns/op against N, log-log, one line per contender."""
    per_op: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        per_op[r.operation].append(r)
    names = _contenders(results)
    colors = _colors(plt, names)
    cols = min(3, len(per_op))
    rows = -(-len(per_op) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    for ax, (op, rs) in zip(axes.flat, per_op.items(), strict=False):
        for name in names:
            points = sorted((r.n, r.ns_per_op) for r in rs if r.contender == name)
            if points:
                style = "--" if any(r.role == FLOOR for r in rs if r.contender == name) else "-"
                ax.plot(
                    *zip(*points, strict=True),
                    style,
                    marker="o",
                    markersize=3,
                    label=name,
                    color=colors[name],
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(op, fontsize=10)
        ax.set_xlabel("N (entries)")
        ax.set_ylabel("median ns/op")
        ax.grid(which="both", alpha=0.3)
    for ax in list(axes.flat)[len(per_op) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=4)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(names) // 4), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(report: Report, directory: str) -> list[str]:
    """Write every chart into ``directory``; return the paths written."""
    plt = _pyplot()
    os.makedirs(directory, exist_ok=True)
    written = []
    by_area: dict[str, list[Result]] = defaultdict(list)
    for r in report.results:
        by_area[r.area].append(r)
    for area, results in by_area.items():
        sizes = sorted({r.n for r in results if r.n is not None})
        if not sizes:
            written.append(
                bars(plt, results, f"prodfast {area}", os.path.join(directory, f"{area}.png"))
            )
            continue
        for n in sizes:
            subset = [r for r in results if r.n == n]
            path = os.path.join(directory, f"{area}_n{n}.png")
            written.append(bars(plt, subset, f"prodfast {area}, N={n:,}", path))
        if len(sizes) > 1:
            path = os.path.join(directory, f"{area}_scaling.png")
            written.append(scaling(plt, results, f"prodfast {area}: cost against N", path))
    return written
