"""examples/provider_rate_limits.py runs against its fake provider, in memory (each backend) and
over the suite's redis-server, and learning from the headers avoids most 429s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "provider_rate_limits.py"


def run_example(core, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODFAST_")}
    if core is not None and core.__name__ == "prodfast._core_py":
        env["PRODFAST_PURE_PYTHON"] = "1"
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--json", "--calls", "10", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return json.loads(out.stdout)


def check(figures, limits):
    observed, blind = figures["observed"], figures["not_observed"]
    for f in (observed, blind):
        assert f["limits"] == limits
        assert f["served"] == f["calls"] == 10  # every call got through in the end
        assert f["tokens_used"] == 10 * 235  # settled with the real usage
    # 2 or 3 windows of 0.5 s: the headers leave at most a 429 or two per window; blind, more
    assert observed["refused_429"] <= 4
    assert observed["refused_429"] < blind["refused_429"]


def test_example_in_memory(core):
    check(run_example(core), "in-memory")


def test_example_over_redis():  # the Redis limiters do not depend on the backend
    pytest.importorskip("redis")
    import redis_server
    srv = redis_server.RedisServer(redis_server.require_redis_server())
    srv.start()
    try:
        check(run_example(None, "--redis-url", srv.url), "redis")
    finally:
        srv.close()
