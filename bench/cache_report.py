"""Summarise a cache benchmark run: ns/op per implementation, the speed goals and the O(1) check.

    pytest bench/test_bench_cache.py --benchmark-only --benchmark-json=cache.json
    python bench/cache_report.py cache.json

All figures come from the one side-by-side run in the JSON file (medians; ns/op = median of a
batch divided by the batch size). Exit status 1 when a goal of the compiled backend is missed,
so the script can gate CI on a quiet machine; on a shared machine read it as a report.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

FAST_PEERS = ("lru-dict", "cachebox.LRUCache", "functools.lru_cache")
SLOW_PEERS = ("cachetools.LRUCache", "seed.EmbeddingCache")
# the goals for every compiled class: at least as fast as cachebox's class of the same
# policy, 5x faster than cachetools' at N <= 1e5, a hit at N = 1e6 no dearer than dict's
SAME_POLICY = {
    "prodfast.FIFOCache[cy]": ("cachebox.FIFOCache", "cachetools.FIFOCache"),
    "prodfast.LFUCache[cy]": ("cachebox.LFUCache", "cachetools.LFUCache"),
    "prodfast.RRCache[cy]": ("cachebox.RRCache", "cachetools.RRCache"),
    "prodfast.TLRUCache[cy]": ("cachebox.VTTLCache", "cachetools.TLRUCache"),
    "prodfast.TTLCache[cy]": ("cachebox.TTLCache", "cachetools.TTLCache"),
}
MEMORY_BOUNDS = {
    "prodfast.LRUCache[cy]": 56,
    "prodfast.FIFOCache[cy]": 56,
    "prodfast.RRCache[cy]": 56,
    "prodfast.LFUCache[cy]": 72,
    "prodfast.TTLCache[cy]": 72,
    "prodfast.TLRUCache[cy]": 72,
}


def load(path: str):
    """{(op, kind, n): {implementation label: ns/op}} and {label: bytes per entry}."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    ns: dict[tuple, dict[str, float]] = defaultdict(dict)
    memory: dict[str, float] = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        name = bench["name"]
        backend = "[cy]" if "[cy-" in name or "-cy]" in name else "[py]" if "[py-" in name or "-py]" in name else ""
        if "bytes_per_entry" in info:
            memory[info["impl"]] = info["bytes_per_entry"]
            continue
        if "op" not in info:
            continue
        label = info["impl"] + (backend if info["impl"].startswith("prodfast.") else "")
        ns[(info["op"], info["kind"], info["n"])][label] = bench["stats"]["median"] / info["batch"] * 1e9
    return ns, memory


def main(path: str) -> int:
    ns, memory = load(path)
    misses = []
    for (op, kind, n), row in sorted(ns.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        print(f"\n{op:13s} {kind:3s} N={n:<8d}")
        for label, value in sorted(row.items(), key=lambda kv: kv[1]):
            print(f"    {label:28s} {value:8.1f} ns/op")
        for impl in ("prodfast.LRUCache[cy]", "prodfast.TTLCache[cy]"):
            ours = row.get(impl)
            if ours is None:
                continue
            fast = [row[p] for p in FAST_PEERS if p in row]
            if fast and ours > min(fast):
                misses.append(f"{impl} {op} {kind} N={n}: {ours:.1f} > fastest peer {min(fast):.1f}")
            for p in SLOW_PEERS:
                if p in row and ours * 5 > row[p]:
                    misses.append(f"{impl} {op} {kind} N={n}: not 5x faster than {p} ({row[p]:.1f})")
            if op in ("hit", "get") and "dict" in row:
                limit = 1.5 if n <= 1000 else 1.6
                if ours > limit * row["dict"]:
                    misses.append(f"{impl} {op} {kind} N={n}: {ours / row['dict']:.2f}x dict > {limit}")
        for impl, (box, tools) in SAME_POLICY.items():
            ours = row.get(impl)
            if ours is None:
                continue
            if box in row and ours > row[box]:
                misses.append(f"{impl} {op} {kind} N={n}: {ours:.1f} > {box} {row[box]:.1f}")
            if tools in row and n <= 100_000 and ours * 5 > row[tools]:
                misses.append(f"{impl} {op} {kind} N={n}: not 5x faster than {tools} ({row[tools]:.1f})")
            if op == "hit" and n >= 1_000_000 and "dict" in row and ours > row["dict"]:
                misses.append(f"{impl} {op} {kind} N={n}: {ours:.1f} > dict {row['dict']:.1f}")
        lru, ttl = row.get("prodfast.LRUCache[cy]"), row.get("prodfast.TTLCache[cy]")
        if lru and ttl and ttl > 1.3 * lru:
            misses.append(f"TTLCache {op} {kind} N={n}: {ttl / lru:.2f}x LRUCache > 1.3")
    # O(1): the ratio to dict at the largest N within 1.6x of the ratio at the smallest N
    sizes = sorted({n for (_, _, n) in ns})
    if len(sizes) >= 2:
        print(f"\nO(1) check: (ours/dict at N={sizes[-1]}) / (ours/dict at N={sizes[0]})")
        for op in ("hit", "get", "miss", "set_existing"):
            for kind in ("str", "int"):
                lo, hi = ns.get((op, kind, sizes[0]), {}), ns.get((op, kind, sizes[-1]), {})
                for impl in ("prodfast.LRUCache[cy]", *SAME_POLICY):
                    if impl in lo and impl in hi and "dict" in lo and "dict" in hi:
                        growth = (hi[impl] / hi["dict"]) / (lo[impl] / lo["dict"])
                        print(f"    {impl:24s} {op:13s} {kind}: {growth:.2f}")
                        if growth > 1.6:
                            misses.append(f"O(1) {impl} {op} {kind}: ratio grew {growth:.2f}x")
    if memory:
        print("\nbytes per entry (beyond key and value objects)")
        for label, value in sorted(memory.items(), key=lambda kv: kv[1]):
            print(f"    {label:28s} {value:8.1f}")
        for impl, bound in MEMORY_BOUNDS.items():
            if memory.get(impl, 0) > bound:
                misses.append(f"{impl}: {memory[impl]:.1f} B/entry > {bound}")
    print("\ngoals missed:" if misses else "\nall goals met")
    for line in misses:
        print("    " + line)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cache.json"))
