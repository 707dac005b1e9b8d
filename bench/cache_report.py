"""The caches' speed goals and the O(1) check, read from one ``make bench`` run's JSON.

    make bench                                  # or: make bench BENCH_ARGS="--area caches"
    python bench/cache_report.py bench-results/results.json

Every figure comes from that one side-by-side run (medians of interleaved rounds, ns/op).
Exit status 1 when a goal of the compiled backend is missed, so the script can gate CI on a
quiet machine; on a shared machine read it as a report. Bytes per entry come from
``pytest bench/test_bench_cache.py -k memory --benchmark-only`` (prodfast.bench.memory).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

FAST_PEERS = ("lru-dict LRU", "cachebox LRUCache", "functools.lru_cache")
SLOW_PEERS = ("cachetools LRUCache", "seed EmbeddingCache")
# the goals for every compiled class: at least as fast as cachebox's class of the same
# policy, 5x faster than cachetools' at N <= 1e5, a hit at N = 1e6 no dearer than dict's
SAME_POLICY = {
    "FIFO": ("prodfast FIFOCache [cy]", "cachebox FIFOCache", "cachetools FIFOCache"),
    "LFU": ("prodfast LFUCache [cy]", "cachebox LFUCache", "cachetools LFUCache"),
    "RR": ("prodfast RRCache [cy]", "cachebox RRCache", "cachetools RRCache"),
    "TLRU": ("prodfast TLRUCache [cy]", "cachebox VTTLCache", "cachetools TLRUCache"),
    "TTL": ("prodfast TTLCache [cy]", "cachebox TTLCache", "cachetools TTLCache"),
}
LRU = "prodfast LRUCache [cy]"


def load(path: str) -> dict[tuple[str, str, int], dict[str, float]]:
    """{(operation, policy, n): {contender: ns/op}} of the caches area."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    ns: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    for r in data["results"]:
        if r["area"] != "caches":
            continue
        # "hit c[k] · FIFO (int keys)": the key type (--keys int) is one run's, not a policy's
        op, _, policy = r["operation"].removesuffix(" (int keys)").partition(" · ")
        ns[(op, policy or "LRU", r["n"])][r["contender"]] = r["ns_per_op"]
    return ns


def _times(row: dict[str, float], ours: float, peer: str) -> str:
    """The 5x goal missed, with the ceiling a plain dict sets on it: a mapping that cost no more
    than dict's own operation would be peer/dict times faster, and no faster."""
    text = f"not 5x faster than {peer} ({row[peer]:.1f}): {row[peer] / ours:.2f}x"
    if "dict" in row:
        text += f", ours {ours / row['dict']:.2f}x dict, dict itself {row[peer] / row['dict']:.2f}x"
    return text


def misses_of(ns: dict[tuple[str, str, int], dict[str, float]]) -> list[str]:
    misses = []
    for (op, policy, n), row in ns.items():
        where = f"{op} · {policy} N={n}"
        if policy == "LRU" and LRU in row:
            ours = row[LRU]
            fast = [row[p] for p in FAST_PEERS if p in row]
            if fast and ours > min(fast):
                misses.append(f"{LRU} {where}: {ours:.1f} > fastest peer {min(fast):.1f}")
            for p in SLOW_PEERS:
                if p in row and ours * 5 > row[p]:
                    misses.append(f"{LRU} {where}: {_times(row, ours, p)}")
            if op.startswith("hit") and "dict" in row:
                limit = 1.5 if n <= 1000 else 1.6
                if ours > limit * row["dict"]:
                    misses.append(f"{LRU} {where}: {ours / row['dict']:.2f}x dict > {limit}")
        if policy in SAME_POLICY:
            impl, box, tools = SAME_POLICY[policy]
            ours = row.get(impl)
            if ours is None:
                continue
            if box in row and ours > row[box]:
                misses.append(f"{impl} {where}: {ours:.1f} > {box} {row[box]:.1f}")
            if tools in row and n <= 100_000 and ours * 5 > row[tools]:
                misses.append(f"{impl} {where}: {_times(row, ours, tools)}")
            if op.startswith("hit") and n >= 1_000_000 and "dict" in row and ours > row["dict"]:
                misses.append(f"{impl} {where}: {ours:.1f} > dict {row['dict']:.1f}")
    # TTLCache within 1.3x of LRUCache, operation by operation
    for (op, policy, n), row in ns.items():
        if policy != "TTL":
            continue
        lru, ttl = ns.get((op, "LRU", n), {}).get(LRU), row.get("prodfast TTLCache [cy]")
        if lru and ttl and ttl > 1.3 * lru:
            misses.append(f"TTLCache {op} N={n}: {ttl / lru:.2f}x LRUCache > 1.3")
    return misses


def growth_rows(ns: dict[tuple[str, str, int], dict[str, float]]) -> list[tuple[str, str, float]]:
    """O(1): each compiled class's ratio to dict at the largest N over its ratio at the smallest."""
    sizes = sorted({n for (_, _, n) in ns})
    if len(sizes) < 2:
        return []
    rows = []
    for (op, policy, n), lo in ns.items():
        if n != sizes[0] or op == "insert+evict":
            continue
        hi = ns.get((op, policy, sizes[-1]), {})
        impl = LRU if policy == "LRU" else SAME_POLICY.get(policy, ("",))[0]
        if impl in lo and impl in hi and "dict" in lo and "dict" in hi:
            rows.append((impl, op, (hi[impl] / hi["dict"]) / (lo[impl] / lo["dict"])))
    return rows


def main(path: str) -> int:
    ns = load(path)
    if not ns:
        print(f"{path}: no caches results (run make bench, or --area caches)")
        return 1
    for (op, policy, n), row in sorted(ns.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        print(f"\n{op} · {policy}  N={n:,}")
        for label, value in sorted(row.items(), key=lambda kv: kv[1]):
            print(f"    {label:32s} {value:9.1f} ns/op")
    misses = misses_of(ns)
    rows = growth_rows(ns)
    if rows:
        print("\nO(1) check: (ours/dict at the largest N) / (ours/dict at the smallest N)")
        for impl, op, growth in rows:
            print(f"    {impl:26s} {op:16s} {growth:.2f}")
            if growth > 1.6:
                misses.append(f"O(1) {impl} {op}: ratio grew {growth:.2f}x")
    print("\ngoals missed:" if misses else "\nall goals met")
    for line in misses:
        print("    " + line)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "bench-results/results.json"))
