"""A throw-away redis-server for the Redis areas, and a pool of worker processes.

The server is ``PRODFAST_BENCH_REDIS_SERVER`` (a path) if set, else redis-server on PATH
(``scripts/ensure-redis.sh`` installs Debian's); it is started on a free
loopback port with persistence off when the first case of an area needs it, and stopped when
the area is done. No server: every case of the area raises :class:`NoServer`, so it is skipped
with that reason (``PRODFAST_REQUIRE_REDIS=1`` makes the pytest wrappers fail instead).
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

from .runner import NoServer, require

HINT = "no redis-server on PATH: run scripts/ensure-redis.sh or install Redis"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server on 127.0.0.1, started on first use by :meth:`port`."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._port: int | None = None
        self._failed: str | None = None
        self.version: str | None = None

    def port(self) -> int:
        """The port of the running server; starts it the first time, NoServer if it cannot."""
        if self._port is not None:
            return self._port
        if self._failed:
            raise NoServer(self._failed)
        require("redis", dist="redis-py")
        binary = self.binary or os.environ.get("PRODFAST_BENCH_REDIS_SERVER") or shutil.which("redis-server")
        if binary is None:
            self._failed = HINT
            raise NoServer(HINT)
        try:
            self._start(binary)
        except (OSError, RuntimeError) as exc:
            self._failed = f"{binary} did not start: {exc}"
            raise NoServer(self._failed) from None
        return self._port  # type: ignore[return-value]

    def _start(self, binary: str) -> None:
        import redis

        self._dir = tempfile.TemporaryDirectory(prefix="prodfast-bench-redis-")
        port = _free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", self._dir.name,
                "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
                self.close()
                raise RuntimeError(err.splitlines()[-1] if err else "exited at start")
            try:
                client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
                info = client.info("server")
                client.close()
                if info.get("process_id") == self._proc.pid:
                    self.version = str(info["redis_version"])
                    self._port = port
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"no answer on port {port}")
            time.sleep(0.02)

    def version_tuple(self) -> tuple[int, ...]:
        self.port()
        return tuple(int(p) for p in (self.version or "0").split(".")[:2])

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        self._port = None


def require_redis() -> bool:
    """Whether a missing redis-server must fail rather than skip (PRODFAST_REQUIRE_REDIS=1)."""
    return os.environ.get("PRODFAST_REQUIRE_REDIS", "").strip().lower() in ("1", "true", "yes", "on")


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
