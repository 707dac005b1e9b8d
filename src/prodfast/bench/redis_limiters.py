"""Redis limiters: one decision from one process, and from four processes sharing one key, beside
pyrate-limiter and limits on the same redis-server; a leased token bucket beside the in-memory one.

Peers: for the token bucket, pyrate-limiter's ``TokenBucket`` on its ``RedisStateStore`` (the same
kind of O(1) hash state) and limits' ``FixedWindowRateLimiter`` on ``RedisStorage`` (limits has
no token bucket; its fixed window is the nearest O(1) strategy); for the sliding window,
pyrate-limiter's ``RedisBucket`` (a sorted-set log) and limits' ``MovingWindowRateLimiter`` (a
list log), both exact logs like prodfast's.

Every limit is 1,000,000 per second, so every decision is a grant: the cost is the round trip
plus the script, which a service under its limit pays on every request. Four processes: each
makes ``DECISIONS`` per run, and the figure is the run's time over all their decisions (so
1e9 / figure is the decisions per second of the four together). The Redis limiters do not
depend on prodfast's backend; the leased bucket's local part does (the active one).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

from .runner import (
    FLOOR,
    PEER,
    PRODFAST,
    Case,
    Group,
    Settings,
    Timed,
    expect,
    repeat_calls,
    require,
)
from .servers import RedisServer, Workers

AREA = "redis-limiters"
DECISIONS = 200  # per process per run
LIMIT = 1_000_000  # per second, for every library
LEASE = 100_000  # tokens a leased bucket takes per round trip
LOCAL_LIMIT = 1e12  # never the bottleneck over a run
PROCESSES = 4

TOKEN_BUCKETS = ("prodfast RedisTokenBucket", "pyrate-limiter TokenBucket", "limits FixedWindow")
SLIDING_WINDOWS = (
    "prodfast RedisSlidingWindow",
    "pyrate-limiter RedisBucket",
    "limits MovingWindow",
)


def make_decider(lib: str, port: int, key: str) -> tuple[Callable[[], object], Callable | None]:
    """A zero-argument decision (truthy when granted) of ``lib`` on the server at ``port``,
    and what closes it (or None)."""
    redis = require("redis", dist="redis-py")
    client = redis.Redis(host="127.0.0.1", port=port)
    if lib.startswith("prodfast"):
        from prodfast.redis import RedisSlidingWindow, RedisTokenBucket

        if lib == "prodfast RedisTokenBucket":
            return RedisTokenBucket(client, key, LIMIT, LIMIT).try_acquire, client.close
        return RedisSlidingWindow(client, key, LIMIT, 1.0).try_acquire, client.close
    if lib.startswith("pyrate-limiter"):
        pl = require("pyrate_limiter", dist="pyrate-limiter")
        rate = pl.Rate(LIMIT, pl.Duration.SECOND)
        if lib == "pyrate-limiter TokenBucket":
            store = pl.RedisStateStore(client, key)
            bucket = pl.StateBucket([rate], algorithm=pl.TokenBucket(), store=store)
        else:
            bucket = pl.RedisBucket.init([rate], client, key)
        limiter = pl.Limiter(bucket)
        return (lambda: limiter.try_acquire("bench", blocking=False)), limiter.close
    limits = require("limits")
    from limits.storage import RedisStorage

    storage = RedisStorage(f"redis://127.0.0.1:{port}")
    item = limits.RateLimitItemPerSecond(LIMIT)
    if lib == "limits FixedWindow":
        hit = limits.strategies.FixedWindowRateLimiter(storage).hit
    else:
        hit = limits.strategies.MovingWindowRateLimiter(storage).hit
    return (lambda: hit(item, key)), None


def worker_job(lib: str, port: int, key: str) -> Callable[[], object]:
    """What each worker process runs (module level, so a spawned process can import it)."""
    return make_decider(lib, port, key)[0]


def _granting(decide: Callable[[], object], n: int) -> Callable[[], None]:
    def check() -> None:
        granted = sum(1 for _ in range(n) if decide())
        expect(granted == n, f"{n - granted} of {n} decisions refused")

    return check


def _one_process(server: RedisServer, lib: str, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        decide, close = make_decider(lib, server.ensure(), f"bench:{uuid.uuid4().hex}")
        return Timed(repeat_calls(decide, n), n, _granting(decide, n), close)

    return setup


def _processes(server: RedisServer, workers: Workers, lib: str, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        args = (lib, server.ensure(), f"bench:{uuid.uuid4().hex}")
        workers.run(args, 1)  # every worker builds its limiter (and loads its script) untimed
        total = n * workers.count

        def check() -> None:
            granted = workers.run(args, n)
            expect(granted == total, f"{total - granted} of {total} decisions refused")

        return Timed(lambda: workers.run(args, n), total, check)

    return setup


def _leased(server: RedisServer, n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        redis = require("redis", dist="redis-py")
        from prodfast.redis import RedisTokenBucket

        client = redis.Redis(host="127.0.0.1", port=server.ensure())
        key = f"bench:lease:{uuid.uuid4().hex}"
        limiter = RedisTokenBucket(client, key, LOCAL_LIMIT, LOCAL_LIMIT, lease=LEASE)

        def close() -> None:
            limiter.close()
            client.close()

        return Timed(repeat_calls(limiter.try_acquire, n), n, _granting(limiter.try_acquire, n), close)

    return setup


def _in_memory(n: int) -> Callable[[], Timed]:
    def setup() -> Timed:
        bucket = require("prodfast", "TokenBucket")(LOCAL_LIMIT, LOCAL_LIMIT)
        return Timed(repeat_calls(bucket.try_acquire, n), n, _granting(bucket.try_acquire, n))

    return setup


def _role(lib: str) -> str:
    return PRODFAST if lib.startswith("prodfast") else PEER


def _backend() -> str:
    try:
        return "cy" if require("prodfast").BACKEND == "cython" else "py"
    except Exception:
        return "?"


def groups(settings: Settings) -> Iterator[Group]:
    """The server and the worker processes start with the first case and stop at the end."""
    server = RedisServer()
    workers = Workers(PROCESSES, worker_job)
    n = min(DECISIONS, settings.batch)
    local = 200 * settings.batch  # leased decisions per run: many leases' worth at full size
    try:
        for kind, libs in (("token bucket", TOKEN_BUCKETS), ("sliding window", SLIDING_WINDOWS)):
            yield Group(
                AREA,
                f"{kind}: 1 process",
                [Case(lib, _role(lib), _one_process(server, lib, n)) for lib in libs],
                unit="decision",
            )
            yield Group(
                AREA,
                f"{kind}: {PROCESSES} processes, one key",
                [Case(lib, _role(lib), _processes(server, workers, lib, n)) for lib in libs],
                unit="decision",
            )
        tag = _backend()
        yield Group(
            AREA,
            f"leased token bucket (lease {LEASE:,})",
            [
                Case(f"prodfast TokenBucket in memory [{tag}]", FLOOR, _in_memory(local)),
                Case(f"prodfast RedisTokenBucket(lease=...) [{tag}]", PRODFAST, _leased(server, local)),
            ],
            unit="decision",
        )
    finally:
        workers.close()
        server.close()
