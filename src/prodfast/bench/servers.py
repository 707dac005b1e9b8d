"""A throw-away redis-server (for the Redis areas, and for the test suite), and a pool of worker
processes.

The server is ``PRODFAST_BENCH_REDIS_SERVER`` (a path) if set, else redis-server on PATH
(``scripts/ensure-redis.sh`` installs Debian's); it runs on a free loopback port (or the one
given) with persistence off, in a temporary directory. An area starts it when its first case
needs it (:meth:`RedisServer.ensure`) and stops it when the area is done. No server: every case
of the area raises :class:`NoServer`, so it is skipped with that reason
(``PRODFAST_REQUIRE_REDIS=1`` makes the pytest wrappers fail instead). The tests start and stop
it themselves (:meth:`RedisServer.start`, :meth:`~RedisServer.stop`: a "restart" on the same
port, with an empty keyspace and an empty script cache).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

from .._backend import env_flag
from .runner import NoServer, require

HINT = "no redis-server on PATH: run scripts/ensure-redis.sh or install Redis"


def find_redis_server() -> str | None:
    """``PRODFAST_BENCH_REDIS_SERVER`` if set, else the path of redis-server on PATH, or None."""
    return os.environ.get("PRODFAST_BENCH_REDIS_SERVER") or shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_info(port: int, timeout: float = 0.5) -> dict[str, str]:
    """The ``INFO server`` fields of the Redis server answering on 127.0.0.1:port ({} if none
    answers), read over a plain socket: no client library needed."""
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
        return {}
    fields = (line.split(b":", 1) for line in data.split(b"\r\n") if b":" in line)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields}


def server_pid(port: int, timeout: float = 0.5) -> int | None:
    """The process id of the Redis server answering on 127.0.0.1:port, or None."""
    pid = server_info(port, timeout).get("process_id")
    return int(pid) if pid is not None and pid.isdigit() else None


class RedisServer:
    """One redis-server process bound to 127.0.0.1, without persistence.

    ``binary`` None: :func:`find_redis_server` when it starts. ``port`` None: a free port, chosen
    again if another process takes it before the server binds it; once the server has run,
    restarts keep its port. ``start()`` waits until this very process answers (another server
    may own the port), RuntimeError if it does not; ``ensure()`` starts it on first use, for the
    bench's cases, and raises :class:`NoServer` instead (the reason is kept: not tried again).
    """

    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        self.binary = binary
        self.host = "127.0.0.1"
        self._pick_port = port is None  # a port we chose may be taken meanwhile: choose again
        self.port = port if port is not None else free_port()
        self.version: str | None = None  # the server's redis_version, once it has started
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._failed: str | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again, on the same port once it has run) and wait for its answer."""
        if self.running:
            return
        if self.binary is None:
            self.binary = find_redis_server()
            if self.binary is None:
                raise RuntimeError(HINT)
        for attempt in range(3):
            try:
                self._start(self.binary, timeout)
            except RuntimeError:
                if not self._pick_port or attempt == 2:
                    raise
                self.port = free_port()
            else:
                self._pick_port = False  # from now on, restarts keep this port
                return

    def _start(self, binary: str, timeout: float) -> None:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="prodfast-redis-")
        log = os.path.join(self._dir.name, "redis.log")
        args = [
            binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", self._dir.name,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", log,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        # wait until OUR process answers (another server may own the port if ours failed to bind)
        while True:
            info = server_info(self.port)
            if info.get("process_id") == str(self._proc.pid):
                self.version = info.get("redis_version")
                return
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                tail = ""
                if os.path.exists(log):
                    with open(log, errors="replace") as f:
                        tail = f.read()[-2000:]
                raise RuntimeError(f"redis-server exited at start: {err}{tail}".strip())
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.01)

    def ensure(self) -> int:
        """The port of the running server; starts it the first time, NoServer if it cannot."""
        if self.running:
            return self.port
        if self._failed:
            raise NoServer(self._failed)
        require("redis", dist="redis-py")  # every case that needs the server talks through it
        binary = self.binary or find_redis_server()
        if binary is None:
            self._failed = HINT
            raise NoServer(HINT)
        self.binary = binary
        try:
            self.start()
        except (OSError, RuntimeError) as exc:
            last = str(exc).strip().splitlines()
            self._failed = f"{binary} did not start: {last[-1] if last else exc!r}"
            raise NoServer(self._failed) from None
        return self.port

    def version_tuple(self) -> tuple[int, ...]:
        self.ensure()
        return tuple(int(p) for p in (self.version or "0").split(".")[:2])

    def stop(self) -> None:
        """End the server process (``start()`` brings it back on the same port)."""
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
        """Stop the server and remove its directory."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def require_redis() -> bool:
    """Whether a missing redis-server must fail rather than skip (PRODFAST_REQUIRE_REDIS=1)."""
    return env_flag("PRODFAST_REQUIRE_REDIS")


def _serve(conn, build: Callable) -> None:
    """Child process: ``build(*args)`` returns a zero-argument job; run it ``n`` times per
    request and send back the sum of its results."""
    jobs: dict = {}
    while True:
        msg = conn.recv()
        if msg is None:
            break
        args, n = msg
        if args not in jobs:
            jobs[args] = build(*args)
        job = jobs[args]
        conn.send(sum(1 for _ in range(n) if job()))
    conn.close()


class Workers:
    """``count`` worker processes (spawned, so they import prodfast afresh), started on first
    use; :meth:`run` has each make ``n`` calls of the job ``build(*args)`` and returns how many
    of all calls were truthy."""

    def __init__(self, count: int, build: Callable) -> None:
        self.count = count
        self.build = build
        self._pipes: list = []
        self._procs: list = []

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        for _ in range(self.count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, self.build), daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def run(self, args: tuple, n: int) -> int:
        if not self._pipes:
            self._start()
        for conn in self._pipes:
            conn.send((args, n))
        return sum(conn.recv() for conn in self._pipes)

    def close(self) -> None:
        for conn in self._pipes:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        for conn in self._pipes:
            conn.close()
        self._pipes, self._procs = [], []
