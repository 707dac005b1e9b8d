"""User code that re-enters the cache: no crash, no corruption (RuntimeError is acceptable).

The scenarios live in _cache_reentrancy_cases.py and run in a child process, so a crash of the
interpreter fails the test instead of killing the test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "_cache_reentrancy_cases.py")


def run_cases(module_name, *names, timeout=240):
    proc = subprocess.run(
        [sys.executable, SCRIPT, module_name, *names],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(HERE),
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, results


def test_scenarios_without_crash_or_corruption(core):
    proc, results = run_cases(core.__name__)
    assert proc.returncode == 0, f"child died (code {proc.returncode}):\n{proc.stderr[-3000:]}"
    failed = [r for r in results if not r["ok"]]
    assert not failed, "\n\n".join(f"{r['name']}:\n{r['error']}" for r in failed[:5])
    assert len(results) > 240  # every scenario reported


def test_eq_that_inserts_during_set_is_refused_or_finishes(core):
    class Sneaky:
        armed = True

        def __hash__(self):
            return hash(1)

        def __eq__(self, other):
            if Sneaky.armed:
                Sneaky.armed = False
                for i in range(100, 140):  # enough to force the table to grow
                    cache[i] = i
            return False

    cache = core.LRUCache(64)
    cache[1] = "one"
    try:
        cache[Sneaky()] = "sneaky"
    except RuntimeError:
        pass
    cache._check()
    assert cache[1] == "one"
    assert len(cache) <= 64


def test_hash_that_clears_during_get(core):
    class Clearing:
        def __hash__(self):
            cache.clear()
            return 7

    cache = core.TTLCache(8, 10)
    cache["a"] = 1
    try:
        assert cache.get(Clearing()) is None
    except RuntimeError:
        pass  # the lookup noticed the change (the clear itself may or may not have happened)
    else:
        assert "a" not in cache  # the clear went through before the lookup
    cache._check()
    assert cache.get("a") in (None, 1)
    cache["b"] = 2
    assert cache["b"] == 2


def test_on_evict_reentering_set(core):
    seen = []

    def cb(k, v):
        seen.append(k)
        if k == 0:
            cache["from-callback"] = -1  # may evict again: a nested callback

    cache = core.LRUCache(2, on_evict=cb)
    for i in range(4):
        cache[i] = i
    cache._check()
    assert seen[0] == 0 and len(cache) == 2
    assert cache.stats()["evictions"] == len(seen)


def test_missing_that_stores(core):
    class Memo(core.TTLCache):
        def __missing__(self, key):
            self[key] = value = key * 2
            return value

    c = Memo(2, 10)
    assert [c[i] for i in range(5)] == [0, 2, 4, 6, 8]
    c._check()
    assert list(c) == [3, 4]


@pytest.mark.parametrize("kind", ["lru", "ttl"])
def test_value_del_reenters_on_replacement(core, kind):
    c = core.LRUCache(4) if kind == "lru" else core.TTLCache(4, 10)

    class Noisy:
        def __del__(self):
            c["from-del"] = 1

    c["a"] = Noisy()
    c["a"] = 2  # the replaced value dies after the cache is consistent
    c._check()
    assert c.peek("a") == 2 and c.peek("from-del") == 1
