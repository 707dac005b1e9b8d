"""A fake OpenAI-style provider for the example service: chat completions and embeddings.

It is the fake server of ``examples/provider_rate_limits.py`` grown to several models and an
embeddings endpoint, and it keeps a log of what reached it, so a test can check what a user
relies on (how many calls a cache saved, whether the limits held).

* ``POST /v1/chat/completions`` ``{"model", "prompt", "max_tokens"}``: per model, fixed windows
  of ``requests`` requests and ``tokens`` tokens per ``window`` seconds, as a provider counts
  them. Every answer carries ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (resets as
  durations such as ``"250ms"``); a request over the limit gets a 429 with ``retry-after`` and
  ``retry-after-ms``. The usage is ``len(prompt) // 4`` prompt tokens and ``max_tokens // 2``
  completion tokens (the model stops halfway, every time). A prompt containing ``[fail]`` gets a
  500 (counted as a request, no tokens).
* ``POST /v1/embeddings`` ``{"model", "input"}``: a deterministic 8-float vector of the input,
  after ``embed_delay`` seconds (so that concurrent cold requests overlap).
* ``POST /admin/overload`` ``{"model", "seconds"}``: the provider refuses every request for that
  model with a 429 for ``seconds`` (``retry-after-ms`` says until when), as an overloaded
  provider does.
* ``GET /admin/log``: the log (every chat arrival with its time, status, tokens and the
  client's ``x-granted-at`` header; embedding calls per input); ``POST /admin/reset`` empties it.

Times are ``time.monotonic()`` of this process (on Linux one clock for every process of the
machine, so a client's ``x-granted-at`` can be compared with them).

Run it alone: ``python examples/service/provider.py --port 8001``; the test
``tests/test_service.py`` runs it in a thread (``start_provider``).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import math
import struct
import sys
import threading
import time
from dataclasses import dataclass

# What the provider itself allows (per model, per window). The service's own limits are below
# these, so the provider only refuses when it is told to be overloaded.
MODELS = {
    "gpt-small": {"requests": 40, "tokens": 40_000, "window": 1.0},
    "gpt-large": {"requests": 40, "tokens": 40_000, "window": 1.0},
}
EMBEDDING_MODELS = {"embed-small"}


@dataclass
class _Window:
    index: int = 0
    requests: int = 0
    tokens: int = 0


class FakeProvider(http.server.ThreadingHTTPServer):
    """The provider: ``decide_chat`` and ``embed`` are the whole behaviour; ``log()`` the record."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int = 0, *, models: dict | None = None,
                 embed_delay: float = 0.05) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.models = {name: dict(spec) for name, spec in (models or MODELS).items()}
        self.embed_delay = embed_delay
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self._reset_state()

    def _reset_state(self) -> None:
        self.windows = {name: _Window() for name in self.models}
        self.overloaded_until: dict[str, float] = {}
        self.chat_log: list[dict] = []
        self.embed_calls: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reset(self) -> None:
        with self.lock:
            self._reset_state()

    def overload(self, model: str, seconds: float) -> float:
        """Refuse every request for ``model`` for ``seconds``; returns the time it ends."""
        with self.lock:
            until = time.monotonic() + seconds
            self.overloaded_until[model] = until
            return until

    def log(self) -> dict:
        with self.lock:
            return {"chat": [dict(e) for e in self.chat_log],
                    "embeddings": dict(self.embed_calls),
                    "overloaded_until": dict(self.overloaded_until)}

    def decide_chat(self, model: str, prompt_tokens: int, completion_tokens: int, fail: bool,
                    granted_at: float | None) -> tuple[int, dict[str, str]]:
        """(status, headers) of one chat request, counted if it passes."""
        tokens = prompt_tokens + completion_tokens
        spec = self.models[model]
        with self.lock:
            now = time.monotonic()
            window = spec["window"]
            index = int((now - self.started) // window)
            w = self.windows[model]
            if index != w.index:
                w.index, w.requests, w.tokens = index, 0, 0
            reset = (index + 1) * window - (now - self.started)
            retry_at = None
            until = self.overloaded_until.get(model, 0.0)
            if now < until:
                retry_at = until
            elif (w.requests + 1 > spec["requests"]
                  or w.tokens + (0 if fail else tokens) > spec["tokens"]):
                retry_at = now + reset
            if retry_at is None:
                status = 500 if fail else 200
                w.requests += 1
                w.tokens += 0 if fail else tokens
            else:
                status = 429
            headers = {}
            for resource in ("requests", "tokens"):
                used = w.requests if resource == "requests" else w.tokens
                headers[f"x-ratelimit-limit-{resource}"] = str(spec[resource])
                headers[f"x-ratelimit-remaining-{resource}"] = str(max(spec[resource] - used, 0))
                headers[f"x-ratelimit-reset-{resource}"] = f"{math.ceil(reset * 1000)}ms"
            if retry_at is not None:
                wait = retry_at - now
                headers["retry-after"] = str(math.ceil(wait))
                headers["retry-after-ms"] = str(math.ceil(wait * 1000))
            self.chat_log.append({
                "model": model, "t": now, "status": status,
                "tokens": tokens if status == 200 else 0,
                "prompt_tokens": prompt_tokens if status == 200 else 0,
                "completion_tokens": completion_tokens if status == 200 else 0,
                "granted_at": granted_at, "retry_at": retry_at,
            })
            return status, headers

    def embed(self, text: str) -> list[float]:
        with self.lock:
            self.embed_calls[text] = self.embed_calls.get(text, 0) + 1
        time.sleep(self.embed_delay)
        digest = hashlib.sha256(text.encode()).digest()
        return [round(x / 2**32, 6) for x in struct.unpack("<8I", digest)]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeProvider
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/admin/log":
            self._reply(200, self.server.log())
        else:
            self._reply(404, {"error": {"type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        server = self.server
        if self.path == "/v1/chat/completions":
            model = body.get("model")
            if model not in server.models:
                self._reply(404, {"error": {"type": "model_not_found"}})
                return
            prompt = body["prompt"]
            prompt_tokens = len(prompt) // 4
            completion_tokens = body["max_tokens"] // 2
            granted = self.headers.get("x-granted-at")
            status, headers = server.decide_chat(
                model, prompt_tokens, completion_tokens, "[fail]" in prompt,
                float(granted) if granted else None,
            )
            if status == 200:
                payload = {
                    "model": f"{model}-2026-01",
                    "choices": [{"message": {"role": "assistant", "content": "ok " * 3}}],
                    "usage": {"prompt_tokens": prompt_tokens,
                              "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens},
                }
            elif status == 429:
                payload = {"error": {"type": "rate_limit_exceeded"}}
            else:
                payload = {"error": {"type": "server_error"}}
            self._reply(status, payload, headers)
        elif self.path == "/v1/embeddings":
            if body.get("model") not in EMBEDDING_MODELS:
                self._reply(404, {"error": {"type": "model_not_found"}})
                return
            vector = server.embed(body["input"])
            self._reply(200, {"model": body["model"], "data": [{"embedding": vector}],
                              "usage": {"prompt_tokens": len(body["input"]) // 4,
                                        "total_tokens": len(body["input"]) // 4}})
        elif self.path == "/admin/overload":
            until = server.overload(body["model"], float(body["seconds"]))
            self._reply(200, {"until": until})
        elif self.path == "/admin/reset":
            server.reset()
            self._reply(200, {})
        else:
            self._reply(404, {"error": {"type": "not_found"}})

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


def start_provider(port: int = 0, **kwargs) -> tuple[FakeProvider, threading.Thread]:
    """A FakeProvider serving in a daemon thread; stop it with ``server.shutdown()``."""
    server = FakeProvider(port, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="fake-provider")
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    server = FakeProvider(args.port)
    print(f"fake provider on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
