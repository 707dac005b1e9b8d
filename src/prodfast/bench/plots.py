"""PNG charts with matplotlib (Agg backend, no display needed).

- ``<area>.png``: per operation, one bar per contender (ns/op, log scale). For the caches,
  one such chart per size N.
- ``caches_scaling.png``: per operation, ns/op against N on log-log axes, one line per
  contender: a flat line is O(1) in practice; a rising one is the memory hierarchy or worse.

Every chart carries its key (what the colours, line styles and markers mean) and a footer
with the date, machine, Python and command of the run. Operations with no result get no panel.
"""

from __future__ import annotations

import os
from collections import defaultdict

from .runner import FLOOR, PEER, PRODFAST, Missing, Report, Result

ROLE_COLORS = {FLOOR: "#9e9e9e", PEER: "#4c78a8", PRODFAST: "#f58518"}
PURE_COLOR = "#fdc086"  # prodfast's pure-Python twin
BAR_KEY = (
    (PRODFAST, ROLE_COLORS[PRODFAST], "prodfast: compiled core [cy], or code the same on both"),
    (PRODFAST, PURE_COLOR, "prodfast: pure-Python twin [py]"),
    (PEER, ROLE_COLORS[PEER], "peer library"),
    (FLOOR, ROLE_COLORS[FLOOR], "floor: the least the operation costs (dict, bare call, numpy, ...)"),
)
MARKERS = "osD^vP*Xh<>p"


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
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def footer(env: dict[str, object] | None) -> str:
    """The run's date, machine, Python and command, for the bottom of each chart."""
    if not env:
        return ""
    return (
        f"{env.get('date', '')} | {env.get('cpu', '')} ({env.get('cpus', '?')} CPUs), "
        f"{env.get('platform', '')} | Python {env.get('python', '')} | {env.get('command', '')}"
    )


def _finish(fig, title: str, env: dict[str, object] | None, path: str, bottom: float) -> str:
    fig.suptitle(title)
    text = footer(env)
    if text:
        fig.text(0.005, 0.005, text, fontsize=6.5, color="#555555", ha="left", va="bottom")
    fig.tight_layout(rect=(0, bottom, 1, 0.97))
    fig.savefig(path, dpi=110)
    return path


def _style(r: Result) -> dict[str, object]:
    if r.role == FLOOR:
        return {"linestyle": "--", "color": "black"}
    if r.contender.endswith("[py]"):
        return {"linestyle": ":"}
    return {"linestyle": "-", "linewidth": 2.2 if r.role == PRODFAST else 1.2}


def _bar_color(r: Result) -> str:
    if r.role == PRODFAST and r.contender.endswith("[py]"):
        return PURE_COLOR
    return ROLE_COLORS[r.role]


def _operations(results: list[Result]) -> list[str]:
    return list(dict.fromkeys(r.operation for r in results))


def bars(
    plt, results: list[Result], title: str, path: str, env: dict[str, object] | None = None
) -> str:
    """One panel per operation: a horizontal bar per contender (ns/op, log scale),
    floors grey, peers blue, prodfast orange (light for the pure-Python twin), with that key."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import NullFormatter

    operations = _operations(results)
    cols = min(3, len(operations))
    rows = -(-len(operations) // cols)
    heights = [sum(1 for r in results if r.operation == op) for op in operations]
    # the panels, then an inch for the key and the footer (a chart of one short panel, as an
    # area that lost its contenders to a missing server, still has room for both)
    height = 0.38 * max(heights) * rows + 1.6 * rows + 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, height), squeeze=False)
    for ax, op in zip(axes.flat, operations, strict=False):
        rs = [r for r in results if r.operation == op]
        ys = range(len(rs))
        ax.barh(ys, [r.ns_per_op for r in rs], color=[_bar_color(r) for r in rs])
        ax.set_yticks(ys, [r.contender for r in rs], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # narrow ranges would label every tick
        ax.set_title(op, fontsize=10)
        ax.set_xlabel(f"median ns per {rs[0].unit} (log)", fontsize=8)
        ax.grid(axis="x", which="both", alpha=0.3)
        for y, r in zip(ys, rs, strict=True):
            ax.annotate(
                f" {r.ns_per_op:,.0f}" if r.ns_per_op >= 100 else f" {r.ns_per_op:.1f}",
                (r.ns_per_op, y),
                va="center",
                fontsize=7,
            )
        # every bar visible (a log axis starts where it likes), room for the labels on the right
        ax.set_xlim(min(r.ns_per_op for r in rs) / 2, max(r.ns_per_op for r in rs) * 4)
    for ax in list(axes.flat)[len(operations) :]:
        ax.set_visible(False)
    shown = {(r.role, _bar_color(r)) for r in results}
    key = [Patch(color=c, label=label) for role, c, label in BAR_KEY if (role, c) in shown]
    fig.legend(handles=key, fontsize=8, loc="lower center", ncol=2, bbox_to_anchor=(0.5, 0.02))
    bottom = min(0.4, (0.5 + 0.25 * ((len(key) + 1) // 2)) / fig.get_figheight())
    _finish(fig, title, env, path, bottom)
    plt.close(fig)
    return path


def _family(operation: str) -> tuple[str, str]:
    """("hit c[k]", "FIFO") for "hit c[k] · FIFO"; the family of a bare operation is ""."""
    base, _, family = operation.partition(" · ")
    return base, family


def scaling(
    plt, results: list[Result], title: str, path: str, env: dict[str, object] | None = None
) -> str:
    """ns/op against N, log-log: one row of panels per family of contenders (the caches: one
    per policy), one panel per operation, one line per contender with its own colour and
    marker, keyed at the end of its row (dashed black: the floor, dotted: the pure-Python
    twin, thick: prodfast's compiled core)."""
    from matplotlib.ticker import NullFormatter

    families = list(dict.fromkeys(_family(r.operation)[1] for r in results))
    bases = list(dict.fromkeys(_family(r.operation)[0] for r in results))
    cols = len(bases)
    fig, axes = plt.subplots(
        len(families), cols, figsize=(3.6 * cols + 3.2, 3.1 * len(families)), squeeze=False
    )
    for row, family in zip(axes, families, strict=True):
        mine = [r for r in results if _family(r.operation)[1] == family]
        names = _contenders(mine)
        cmap = plt.get_cmap("tab10")
        colors = {name: cmap(i % 10) for i, name in enumerate(n for n in names)}
        markers = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}
        for ax, base in zip(row, bases, strict=True):
            op = f"{base} · {family}" if family else base
            rs = [r for r in mine if r.operation == op]
            if not rs:
                ax.set_visible(False)
                continue
            for name in names:
                line = sorted((r for r in rs if r.contender == name), key=lambda r: r.n)
                if line:
                    style = {"color": colors[name], **_style(line[0])}
                    if line[0].role == FLOOR:
                        style["color"] = "black"
                    ax.plot(
                        [r.n for r in line],
                        [r.ns_per_op for r in line],
                        marker=markers[name],
                        markersize=4,
                        label=name,
                        **style,
                    )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())  # minor labels would overlap
            ax.set_title(op, fontsize=9)
            ax.set_xlabel("N (entries)", fontsize=8)
            ax.set_ylabel(f"median ns per {rs[0].unit}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(which="both", alpha=0.3)
        handles: dict[str, object] = {}
        for ax in row:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        labels = [n for n in names if n in handles]
        shown = [ax for ax in row if ax.get_visible()]
        shown[-1].legend(
            [handles[n] for n in labels],
            labels,
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.03, 1.0),
            borderaxespad=0.0,
        )
    _finish(fig, title, env, path, 0.35 / fig.get_figheight())
    plt.close(fig)
    return path


def draw(report: Report, directory: str, env: dict[str, object] | None = None) -> list[str]:
    """Write every chart into ``directory``; return the paths written. ``env`` (the run's
    date, machine, Python and command, from report.environment) goes in each chart's footer."""
    plt = _pyplot()
    os.makedirs(directory, exist_ok=True)
    written = []
    by_area: dict[str, list[Result]] = defaultdict(list)
    for r in report.results:
        by_area[r.area].append(r)
    for area, results in by_area.items():
        sizes = sorted({r.n for r in results if r.n is not None})
        if not sizes:
            path = os.path.join(directory, f"{area}.png")
            written.append(bars(plt, results, f"prodfast {area}", path, env))
            continue
        for n in sizes:
            subset = [r for r in results if r.n == n]
            path = os.path.join(directory, f"{area}_n{n}.png")
            written.append(bars(plt, subset, f"prodfast {area}, N={n:,}", path, env))
        if len(sizes) > 1:
            path = os.path.join(directory, f"{area}_scaling.png")
            written.append(scaling(plt, results, f"prodfast {area}: cost against N", path, env))
    return written
