"""The Redis test files' server and clients: one of each, for every file that needs them.

The server itself is the bench's (``prodfast.bench.servers.RedisServer``: a throw-away
redis-server on a free loopback port, persistence off, which ``stop()`` and ``start()`` restart
on the same port). Here: the binary or a skip (a failure under PRODFAST_REQUIRE_REDIS=1), the
client arguments, and the fixtures, which a test file binds by importing them::

    from redis_server import aclient, client, own_server, redis_binary, server  # noqa: F401

``server`` is one per test file (module scope: a file that flushes or restarts disturbs no
other), ``own_server`` one per test (which the test may stop and start again), ``client`` and
``aclient`` a ``redis.Redis`` and a ``redis.asyncio.Redis`` on ``server``, closed after the test.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from prodfast._backend import env_flag
from prodfast.bench.servers import RedisServer, find_redis_server, free_port

__all__ = [
    "RedisServer",
    "aclient",
    "client",
    "fast_client_kwargs",
    "find_redis_server",
    "free_port",
    "own_server",
    "redis_binary",
    "require_redis_server",
    "server",
]

MISSING = (
    "redis-server not found on PATH: run scripts/ensure-redis.sh (Debian, as root) or install "
    "Redis to run the Redis tests"
)


def require_redis_server(reason: str = MISSING) -> str:
    """The redis-server binary; without one the calling test is skipped with ``reason``, or fails
    when PRODFAST_REQUIRE_REDIS=1 (CI), so that a Redis test never silently does not run."""
    path = find_redis_server()
    if path is None:
        if env_flag("PRODFAST_REQUIRE_REDIS"):
            pytest.fail(f"{reason} (PRODFAST_REQUIRE_REDIS=1 makes this a failure)")
        pytest.skip(reason)
    return path


def fast_client_kwargs(port: int, timeout: float = 2.0) -> dict:
    """redis.Redis arguments for the test server with no retries inside redis-py, so an outage
    reaches ``on_error`` at once."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return dict(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


@pytest.fixture(scope="session")
def redis_binary() -> str:
    return require_redis_server()


def _running(binary: str):
    srv = RedisServer(binary)
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def server(redis_binary):
    yield from _running(redis_binary)


@pytest.fixture
def own_server(redis_binary):
    """A server of the test's own, which the test may stop and start again."""
    yield from _running(redis_binary)


@pytest.fixture
def client(server):
    import redis

    c = redis.Redis(**fast_client_kwargs(server.port))
    yield c
    c.close()


@pytest_asyncio.fixture
async def aclient(server):
    import redis.asyncio

    c = redis.asyncio.Redis(**fast_client_kwargs(server.port))
    yield c
    await c.aclose()
