"""Redis-backed limiters: decisions per second, from one process and from four sharing one key.

Peers on the same redis-server (started here on a free loopback port):
- token bucket: pyrate-limiter's ``TokenBucket`` on its ``RedisStateStore`` (the same kind of
  O(1) hash state) and limits' ``FixedWindowRateLimiter`` on ``RedisStorage`` (limits has no
  token bucket; its fixed window is the nearest O(1) strategy);
- sliding window: pyrate-limiter's ``RedisBucket`` (a sorted-set log) and limits'
  ``MovingWindowRateLimiter`` on ``RedisStorage`` (a list log), both exact logs like ours.

Every limit is 1,000,000 per second, so nearly every decision is a grant: the measured cost is
the round trip plus the script, the path a service under its limit pays on every request.
One benchmark call makes ``N`` decisions in each process; decisions per second is
``N * processes / median``.

Leases (``lease=``): a leased ``RedisTokenBucket`` against the compiled in-memory
``TokenBucket.try_acquire`` of the active backend, ``N_LOCAL`` decisions per call in one
process (a lease of ``LEASE`` tokens per round trip, so the round trips are in the figure).  The Redis limiters do not depend on prodfast's backend, so these
benchmarks do not take the ``core`` fixture (they would measure the same code twice).
"""

from __future__ import annotations

import multiprocessing
import pathlib
import sys
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from prodfast._backend import env_flag  # noqa: E402

REQUIRE = env_flag("PRODFAST_REQUIRE_REDIS")
try:
    import redis
except ImportError:  # pragma: no cover - depends on the environment
    if REQUIRE:
        raise
    pytest.skip("redis-py is not installed (pip install 'prodfast[redis]')", allow_module_level=True)

from redis_server import RedisServer, find_redis_server  # noqa: E402

N = 200  # decisions per process per benchmark call
N_LOCAL = 200_000  # decisions per benchmark call, leased or in memory
LEASE = 100_000
LOCAL_LIMIT = 1e12  # per second and burst: never the bottleneck over a benchmark run
LIMIT = 1_000_000  # per second, for every library
PROCESSES = 4

TOKEN_BUCKETS = ["prodfast", "pyrate-limiter", "limits-fixed-window"]
SLIDING_WINDOWS = ["prodfast", "pyrate-limiter", "limits-moving-window"]


def make_decider(lib: str, kind: str, port: int, key: str):
    """A zero-argument callable making one decision; truthy when granted."""
    client = redis.Redis(host="127.0.0.1", port=port)
    if lib == "prodfast":
        from prodfast.redis import RedisSlidingWindow, RedisTokenBucket

        if kind == "token_bucket":
            return RedisTokenBucket(client, key, LIMIT, LIMIT).try_acquire, None
        return RedisSlidingWindow(client, key, LIMIT, 1.0).try_acquire, None
    if lib == "pyrate-limiter":
        import pyrate_limiter as pl

        rate = pl.Rate(LIMIT, pl.Duration.SECOND)
        if kind == "token_bucket":
            store = pl.RedisStateStore(client, key)
            bucket = pl.StateBucket([rate], algorithm=pl.TokenBucket(), store=store)
        else:
            bucket = pl.RedisBucket.init([rate], client, key)
        limiter = pl.Limiter(bucket)
        return (lambda: limiter.try_acquire("bench", blocking=False)), limiter.close
    from limits import RateLimitItemPerSecond
    from limits.storage import RedisStorage
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    storage = RedisStorage(f"redis://127.0.0.1:{port}")
    item = RateLimitItemPerSecond(LIMIT)
    strategy = FixedWindowRateLimiter if kind == "token_bucket" else MovingWindowRateLimiter
    hit = strategy(storage).hit
    return (lambda: hit(item, key)), None


def run_decisions(decide, n: int) -> int:
    granted = 0
    for _ in range(n):
        if decide():
            granted += 1
    return granted


def worker_loop(conn) -> None:
    """Child process: build deciders on demand and run ``n`` decisions per request."""
    deciders = {}
    closers = []
    while True:
        msg = conn.recv()
        if msg is None:
            break
        lib, kind, port, key, n = msg
        if (lib, kind, key) not in deciders:
            decide, close = make_decider(lib, kind, port, key)
            deciders[lib, kind, key] = decide
            if close is not None:
                closers.append(close)
        conn.send(run_decisions(deciders[lib, kind, key], n))
    for close in closers:
        close()
    conn.close()


@pytest.fixture(scope="module")
def server():
    path = find_redis_server()
    if path is None:
        reason = "redis-server not found on PATH: run scripts/ensure-redis.sh or install Redis"
        if REQUIRE:
            pytest.fail(f"{reason} (PRODFAST_REQUIRE_REDIS=1 makes this a failure)")
        pytest.skip(reason)
    srv = RedisServer(path)
    srv.start()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def workers(server):
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for _ in range(PROCESSES):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_loop, args=(child,), daemon=True)
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)
    yield pipes
    for conn in pipes:
        conn.send(None)
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    for conn in pipes:
        conn.close()


def _one_process(benchmark, server, lib, kind):
    decide, close = make_decider(lib, kind, server.port, f"bench:{lib}:{uuid.uuid4().hex}")
    benchmark.extra_info["decisions_per_round"] = N
    try:
        granted = benchmark(run_decisions, decide, N)
    finally:
        if close is not None:
            close()
    assert granted == N


def _four_processes(benchmark, workers, server, lib, kind):
    msg = (lib, kind, server.port, f"bench:{lib}:{uuid.uuid4().hex}", N)

    def round_():
        for conn in workers:
            conn.send(msg)
        return sum(conn.recv() for conn in workers)

    round_()  # every worker builds its limiter (and loads its script) outside the timing
    benchmark.extra_info["decisions_per_round"] = N * PROCESSES
    assert benchmark(round_) == N * PROCESSES


@pytest.mark.benchmark(group="redis token bucket: 1 process x 200 decisions")
@pytest.mark.parametrize("lib", TOKEN_BUCKETS)
def test_redis_token_bucket_one_process(benchmark, server, lib):
    _one_process(benchmark, server, lib, "token_bucket")


@pytest.mark.benchmark(group="redis token bucket: 4 processes x 200 decisions, one key")
@pytest.mark.parametrize("lib", TOKEN_BUCKETS)
def test_redis_token_bucket_four_processes(benchmark, workers, server, lib):
    _four_processes(benchmark, workers, server, lib, "token_bucket")


@pytest.mark.benchmark(group="redis sliding window: 1 process x 200 decisions")
@pytest.mark.parametrize("lib", SLIDING_WINDOWS)
def test_redis_sliding_window_one_process(benchmark, server, lib):
    _one_process(benchmark, server, lib, "sliding_window")


@pytest.mark.benchmark(group="redis sliding window: 4 processes x 200 decisions, one key")
@pytest.mark.parametrize("lib", SLIDING_WINDOWS)
def test_redis_sliding_window_four_processes(benchmark, workers, server, lib):
    _four_processes(benchmark, workers, server, lib, "sliding_window")


def _local_decider(lib: str, port: int):
    if lib == "in-memory":
        import prodfast

        return prodfast.TokenBucket(LOCAL_LIMIT, LOCAL_LIMIT).try_acquire, None
    from prodfast.redis import RedisTokenBucket

    client = redis.Redis(host="127.0.0.1", port=port)
    key = f"bench:lease:{uuid.uuid4().hex}"
    limiter = RedisTokenBucket(client, key, LOCAL_LIMIT, LOCAL_LIMIT, lease=LEASE)
    return limiter.try_acquire, limiter.close


@pytest.mark.benchmark(group=f"leased redis token bucket vs in-memory: 1 process x {N_LOCAL} decisions")
@pytest.mark.parametrize("lib", ["in-memory", "redis-lease"])
def test_leased_decisions(benchmark, server, lib):
    decide, close = _local_decider(lib, server.port)
    benchmark.extra_info["decisions_per_round"] = N_LOCAL
    try:
        granted = benchmark(run_decisions, decide, N_LOCAL)
    finally:
        if close is not None:
            close()
    assert granted == N_LOCAL
