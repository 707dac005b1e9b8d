"""Child-process bodies for the multi-process Redis tests (importable, for the spawn start method).

``serve`` runs in each of a few long-lived worker processes and calls the task functions below
by name. Each task builds its own client and limiter, waits on ``barrier`` so all processes
start together, decides for ``duration`` seconds and returns its counts.
"""

from __future__ import annotations

import time


def _client(port):
    import redis as redis_py

    return redis_py.Redis(host="127.0.0.1", port=port, socket_timeout=5)


def serve(conn, barrier):
    """Run ``(task name, args)`` requests from ``conn`` until None; send back each result."""
    while True:
        msg = conn.recv()
        if msg is None:
            break
        name, args = msg
        conn.send(globals()[name](*args, barrier))
    conn.close()


def hammer(kind, port, key, params, duration, barrier):
    """``try_acquire()`` on a plain limiter -> (granted, attempts)."""
    from prodfast.redis import RedisSlidingWindow, RedisTokenBucket

    client = _client(port)
    cls = RedisTokenBucket if kind == "token_bucket" else RedisSlidingWindow
    limiter = cls(client, key, *params)
    limiter.wait_time()  # connect and load the script before the start line
    barrier.wait()
    granted = attempts = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        attempts += 1
        if limiter.try_acquire():
            granted += 1
    client.close()
    return granted, attempts


def group_hammer(port, keys, costs, duration, barrier):
    """A RedisSlidingWindow + RedisTokenBucket group: ``try_acquire(costs)`` -> (granted, attempts)."""
    from prodfast.limiters import LimiterGroup
    from prodfast.redis import RedisSlidingWindow, RedisTokenBucket

    client = _client(port)
    rpm = RedisSlidingWindow(client, keys[0], 50, 3600.0)
    tpm = RedisTokenBucket(client, keys[1], 1e-9, 400.0)
    group = LimiterGroup([rpm, tpm])
    group.wait_time(costs)  # connect and load the script before the start line
    barrier.wait()
    granted = attempts = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        attempts += 1
        if group.try_acquire(costs):
            granted += 1
    client.close()
    return granted, attempts


def lease_hammer(kind, port, key, params, lease, duration, barrier):
    """A leased limiter: ``try_acquire()`` -> (granted, attempts, round trips); gives back at close."""
    from prodfast.redis import RedisSlidingWindow, RedisTokenBucket

    client = _client(port)
    cls = RedisTokenBucket if kind == "token_bucket" else RedisSlidingWindow
    limiter = cls(client, key, *params, lease=lease)
    limiter.wait_time()
    barrier.wait()
    granted = attempts = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        attempts += 1
        if limiter.try_acquire():
            granted += 1
    trips = limiter.stats()["round_trips"]
    limiter.close()
    client.close()
    return granted, attempts, trips


def lease_and_exit(port, key, lease):
    """Take one lease, spend one token of it and exit without closing: atexit gives the rest back."""
    from prodfast.redis import RedisTokenBucket

    limiter = RedisTokenBucket(_client(port), key, 1e-9, 100.0, lease=lease, lease_ttl=3600.0)
    assert limiter.try_acquire()
