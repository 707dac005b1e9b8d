"""Rate limits the way an LLM provider enforces them: its headers are the truth.

The script starts a fake OpenAI-style HTTP server on 127.0.0.1 (the standard library's
``http.server``, in a thread) and stops it at the end. The server allows ``--server-requests``
requests and ``--server-tokens`` tokens per ``--server-window`` seconds; every answer carries
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (resets as durations like ``"1s"``,
``"250ms"``), and a request over the limit gets a 429 with ``retry-after`` / ``retry-after-ms``.

The client's own idea of the limit is a little too generous (a ``LimiterGroup`` of a requests
bucket and a tokens bucket a fifth above the provider's rates, ``resources=("requests",
"tokens")``), and the provider counts in fixed windows, so on its own it would be refused now
and then. For each call it

1. reserves an estimate (1 request, ``max_tokens`` + the prompt's tokens) with
   ``group.reserve(...)``, waiting as needed;
2. sends the request and hands the answer's headers to ``group.observe(headers, status=...)``:
   from then on the group grants no more than the provider says remains until its reset, and
   after a 429 it holds every caller until the retry time;
3. settles the reservation with the real usage from the answer (or cancels it on a 429 and tries
   again).

``--workers`` threads (8) share the group. The script runs twice, with ``observe`` and without
it (then a worker that meets a 429 sleeps its retry-after, as clients usually do), and prints
how many answers were 429s each time. ``--redis-url redis://host:port/0`` keeps the limits in Redis (``prodfast.redis``), so
every worker process learns from every answer at once. ``--json`` prints the figures as JSON.

Run it: ``python examples/provider_rate_limits.py`` (a few seconds).
"""

from __future__ import annotations

import argparse
import http.server
import json
import math
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import prodfast


class FakeProvider(http.server.ThreadingHTTPServer):
    """Fixed windows of ``requests`` requests and ``tokens`` tokens, as a provider counts them."""

    daemon_threads = True

    def __init__(self, requests: int, tokens: int, window: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.limits = {"requests": requests, "tokens": tokens}
        self.window = window
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.used = {"requests": 0, "tokens": 0}
        self.window_index = 0
        self.served = self.refused = 0

    def decide(self, tokens: int) -> tuple[int, dict[str, str]]:
        """(status, headers) for a request of ``tokens`` tokens, counting it if it passes."""
        with self.lock:
            now = time.monotonic() - self.started
            index = int(now // self.window)
            if index != self.window_index:
                self.window_index = index
                self.used = {"requests": 0, "tokens": 0}
            reset = (index + 1) * self.window - now
            fits = (self.used["requests"] + 1 <= self.limits["requests"]
                    and self.used["tokens"] + tokens <= self.limits["tokens"])
            if fits:
                self.used["requests"] += 1
                self.used["tokens"] += tokens
                self.served += 1
            else:
                self.refused += 1
            headers = {}
            for resource in ("requests", "tokens"):
                headers[f"x-ratelimit-limit-{resource}"] = str(self.limits[resource])
                left = self.limits[resource] - self.used[resource]
                headers[f"x-ratelimit-remaining-{resource}"] = str(left)
                headers[f"x-ratelimit-reset-{resource}"] = f"{math.ceil(reset * 1000)}ms"
            if not fits:
                headers["retry-after"] = str(math.ceil(reset))
                headers["retry-after-ms"] = str(math.ceil(reset * 1000))
            return (200 if fits else 429), headers


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeProvider

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        prompt_tokens = len(body["prompt"]) // 4
        completion_tokens = body["max_tokens"] // 2  # the model stops halfway, every time
        used = prompt_tokens + completion_tokens
        status, headers = self.server.decide(used)
        if status == 200:
            payload = {"usage": {"prompt_tokens": prompt_tokens,
                                 "completion_tokens": completion_tokens, "total_tokens": used}}
        else:
            payload = {"error": {"type": "rate_limit_exceeded"}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


def post(url: str, prompt: str, max_tokens: int) -> tuple[int, dict[str, str], dict]:
    data = json.dumps({"prompt": prompt, "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.loads(error.read())


# The client's own idea of the limits: a fifth above the provider's 10 requests and 4,000 tokens
# per second, as token buckets; the provider counts in fixed windows, so these alone would let
# too much through now and then.
RPM = (12.0, 6.0)  # rate per second, burst
TPM = (4_800.0, 2_400.0)


def build_limits(redis_url: str | None):
    """The client's LimiterGroup (requests, tokens): in memory, or in Redis for many workers."""
    if redis_url is None:
        return prodfast.LimiterGroup(
            [prodfast.TokenBucket(*RPM), prodfast.TokenBucket(*TPM)],
            resources=("requests", "tokens"),
        ), None
    import redis

    from prodfast.redis import RedisTokenBucket

    client = redis.Redis.from_url(redis_url)
    prefix = f"example:{uuid.uuid4().hex}"
    return prodfast.LimiterGroup(
        [RedisTokenBucket(client, f"{prefix}:rpm", *RPM),
         RedisTokenBucket(client, f"{prefix}:tpm", *TPM)],
        resources=("requests", "tokens"),
    ), client


def run(args, observe: bool) -> dict:
    """Make ``args.calls`` calls from ``args.workers`` threads against a fresh fake provider.

    ``observe``: the group learns from every answer's headers (and holds everyone after a
    429); without it, a worker that meets a 429 sleeps its retry-after and tries again (the
    usual client).
    """
    server = FakeProvider(args.server_requests, args.server_tokens, args.server_window)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
    group, client = build_limits(args.redis_url)
    prompt = "Tell me about rate limits. " * 20  # 135 tokens by the fake's count
    max_tokens = 200
    estimate = len(prompt) // 4 + max_tokens
    usage = []
    calls = iter(range(args.calls))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(calls, None)
            if i is None:
                return
            while True:
                reservation = group.reserve([1, estimate])
                status, headers, body = post(url, prompt, max_tokens)
                if observe:
                    group.observe(headers, status=status)
                if status == 200:
                    used = body["usage"]["total_tokens"]
                    reservation.settle([1, used])  # the estimate was too high: the rest back
                    usage.append(used)
                    break
                reservation.cancel()  # the provider counted nothing
                if not observe:
                    time.sleep(int(headers["retry-after-ms"]) / 1000)

    started = time.monotonic()
    workers = [threading.Thread(target=worker) for _ in range(args.workers)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        server.shutdown()
        server.server_close()
        if client is not None:
            client.close()
    return {
        "calls": args.calls,
        "served": server.served,
        "refused_429": server.refused,
        "tokens_used": sum(usage),
        "seconds": round(time.monotonic() - started, 3),
        "limits": "redis" if client is not None else "in-memory",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--workers", type=int, default=8, help="threads making calls")
    parser.add_argument("--server-requests", type=int, default=5)
    parser.add_argument("--server-tokens", type=int, default=2_000)
    parser.add_argument("--server-window", type=float, default=0.5)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = {"observed": run(args, observe=True), "not_observed": run(args, observe=False)}
    if args.json:
        print(json.dumps(figures))
        return 0
    for name, f in figures.items():
        print(f"{name:>12}: {f['calls']} calls in {f['seconds']:.2f} s ({f['limits']} limits), "
              f"{f['tokens_used']} tokens, {f['refused_429']} answers were 429s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
