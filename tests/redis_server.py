"""A throw-away redis-server for the tests: found on PATH, run on a free loopback port.

``RedisServer.start()`` launches ``redis-server`` in a temporary directory with persistence off
(no RDB snapshots, no AOF), waits until it answers (checked by its process id) and returns;
``stop()`` ends it and ``start()`` may be called again to bring it back on the same port (a
"restart": the new server has an empty keyspace and an empty script cache).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

BINARY = "redis-server"


def find_redis_server() -> str | None:
    """Path of redis-server on PATH, or None."""
    return shutil.which(BINARY)


def require_redis_server(reason: str = "redis-server not found on PATH") -> str:
    """The redis-server binary; without one the calling test is skipped with ``reason``, or fails
    when PRODFAST_REQUIRE_REDIS=1 (CI), so that a Redis test never silently does not run."""
    import pytest

    path = find_redis_server()
    if path is None:
        if os.environ.get("PRODFAST_REQUIRE_REDIS", "").strip().lower() in {"1", "true", "yes", "on"}:
            pytest.fail(f"{reason} (PRODFAST_REQUIRE_REDIS=1 makes this a failure)")
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_pid(port: int, timeout: float = 0.5) -> int | None:
    """The process id of the Redis server answering on 127.0.0.1:port, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"INFO server\r\n")
            data = b""
            while b"process_id:" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    for line in data.split(b"\r\n"):
        if line.startswith(b"process_id:"):
            return int(line.split(b":", 1)[1])
    return None


class RedisServer:
    """One redis-server process bound to 127.0.0.1 on a free port, without persistence."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self._pick_port = port is None  # a port we chose may be taken meanwhile: choose again
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self._dir = tempfile.TemporaryDirectory(prefix="prodfast-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again, on the same port once it has run) and wait for PING."""
        if self.running:
            return
        for attempt in range(3):
            try:
                self._start(timeout)
            except RuntimeError:
                if not self._pick_port or attempt == 2:
                    raise
                self.port = free_port()
            else:
                self._pick_port = False  # from now on, restarts keep this port
                return

    def _start(self, timeout: float) -> None:
        log = os.path.join(self._dir.name, "redis.log")
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", self._dir.name,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", log,
        ]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        # wait until OUR process answers (another server may own the port if ours failed to bind)
        while server_pid(self.port) != self._proc.pid:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                tail = ""
                if os.path.exists(log):
                    with open(log, errors="replace") as f:
                        tail = f.read()[-2000:]
                raise RuntimeError(f"redis-server exited at start: {err}{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


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
