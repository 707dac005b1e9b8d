"""A small LLM service built from prodfast's README: FastAPI, several uvicorn workers, one Redis.

Two chat models (``gpt-small``, ``gpt-large``) and one embedding model (``embed-small``) of an
OpenAI-style provider (``provider.py`` beside this file is a fake one). Every worker process
builds the same objects at start-up, and they share their state through Redis:

* **embedding cache**: ``cached(AsyncTieredCache(LRUCache(...), AsyncRedisCache(...)))`` on the
  function that calls the provider, so a text is embedded once for all workers (a cold text
  asked by every worker at once calls the provider once), repeated texts are local hits, and an
  overwrite (``PUT /embed``) in one worker drops the other workers' local copies;
* **rate limits**: per chat model a ``LimiterGroup`` of two ``AsyncRedisTokenBucket``
  (requests and tokens per second, ``resources=("requests", "tokens")``). Each call reserves
  its estimate (1 request, prompt tokens + ``max_tokens``), hands every answer's headers to
  ``observe()`` (``x-ratelimit-*``, and after a 429 ``retry-after``, which holds every worker),
  then settles with the real usage, or cancels after a 429 and tries again;
* **monitoring**: one ``CallbackManager(provider="openai")`` per worker; each provider call is
  tracked with its model and operation (``chat``/``embeddings``), failures with ``error.type``
  (the exception's class name). ``MultiProcessWriter`` writes each worker's figures into
  ``PROMETHEUS_MULTIPROC_DIR``, and ``GET /metrics`` on any worker serves the sum over all of
  them (``multiprocess_registry()``).

Endpoints: ``POST /chat {"model", "prompt", "max_tokens"}``, ``POST /embed {"text"}``,
``PUT /embed {"text", "vector"}``, ``GET /metrics``, ``GET /healthz``. Each JSON answer says
which worker (``pid``) served it.

Configuration (environment): ``SERVICE_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``),
``SERVICE_PROVIDER_URL`` (default ``http://127.0.0.1:8001``), ``SERVICE_NAMESPACE`` (prefix of
every Redis key, default ``svc``) and ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, set
before the workers start).

Run it::

    python examples/service/provider.py --port 8001 &
    mkdir -p /tmp/svc-metrics && rm -f /tmp/svc-metrics/*
    PROMETHEUS_MULTIPROC_DIR=/tmp/svc-metrics \\
        uvicorn app:app --app-dir examples/service --workers 3 --port 8000

``pip install fastapi uvicorn httpx 'prodfast[redis,prometheus]'`` (the test extra has them).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import httpx
import redis.asyncio
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import prodfast
from prodfast import (
    CallbackManager,
    ErrorTrackingCallback,
    LimiterGroup,
    LRUCache,
    TimingCallback,
    TokenUsageCallback,
    cached,
)
from prodfast.integrations.prometheus import MultiProcessWriter, multiprocess_registry
from prodfast.redis import AsyncRedisCache, AsyncRedisTokenBucket, AsyncTieredCache

# The service's own idea of each model's limits: (rate per second, burst) for requests and for
# tokens. Kept small so that a test sees them bind within a few seconds.
LIMITS = {
    "gpt-small": {"requests": (4.0, 2.0), "tokens": (1_000.0, 400.0)},
    "gpt-large": {"requests": (5.0, 2.0), "tokens": (600.0, 500.0)},
}
EMBEDDING_MODEL = "embed-small"
MAX_ATTEMPTS = 5  # a request meeting more 429s than this fails with 429 itself


class ProviderRateLimited(Exception):
    """The provider answered 429 (its error.type in the metrics)."""


class ProviderServerError(Exception):
    """The provider answered 5xx."""


class Service:
    """Everything one worker builds at start-up."""

    def __init__(self) -> None:
        namespace = os.environ.get("SERVICE_NAMESPACE", "svc")
        self.provider_url = os.environ.get("SERVICE_PROVIDER_URL", "http://127.0.0.1:8001")
        self.redis = redis.asyncio.Redis.from_url(
            os.environ.get("SERVICE_REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=5.0
        )
        self.http = httpx.AsyncClient(base_url=self.provider_url, timeout=30.0)

        self.manager = CallbackManager(
            [TimingCallback(), ErrorTrackingCallback(), TokenUsageCallback()], provider="openai"
        )
        self.writer = MultiProcessWriter(self.manager)

        self.limits = {
            model: LimiterGroup(
                [AsyncRedisTokenBucket(self.redis, f"{namespace}:limit:{model}:{resource}", *spec)
                 for resource, spec in specs.items()],
                resources=tuple(specs),
            )
            for model, specs in LIMITS.items()
        }

        self.embeddings = AsyncTieredCache(
            LRUCache(10_000), AsyncRedisCache(self.redis, f"{namespace}/emb", ttl=86_400)
        )
        self.embed = cached(self.embeddings)(self._embed)

    async def close(self) -> None:
        self.embeddings.close()
        self.writer.close()
        await self.http.aclose()
        await self.redis.aclose()

    async def _embed(self, text: str) -> list[float]:
        """One provider call (the cache above makes it one per text across all workers)."""
        async with self.manager.track(EMBEDDING_MODEL, text, operation="embeddings") as run:
            response = await self.http.post(
                "/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": text}
            )
            if response.status_code >= 400:
                raise ProviderServerError(f"embeddings: HTTP {response.status_code}")
            body = response.json()
            run.set_response(body)
        return body["data"][0]["embedding"]

    async def chat(self, model: str, prompt: str, max_tokens: int) -> tuple[dict, int]:
        """(the provider's answer, attempts): reserve, call, observe, settle; retry on 429."""
        limits = self.limits[model]
        estimate = [1, len(prompt) // 4 + max_tokens]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            reservation = await limits.reserve(estimate, timeout=30.0)
            try:
                async with self.manager.track(model, prompt, operation="chat") as run:
                    response = await self.http.post(
                        "/v1/chat/completions",
                        json={"model": model, "prompt": prompt, "max_tokens": max_tokens},
                        # when the limits let this call go (the fake provider logs it, so a
                        # test can check the limits held across the workers)
                        headers={"x-granted-at": repr(time.monotonic())},
                    )
                    # the provider's headers are the truth: every worker learns them at once
                    await limits.observe(response.headers, status=response.status_code)
                    if response.status_code == 429:
                        raise ProviderRateLimited(response.headers.get("retry-after-ms"))
                    if response.status_code >= 500:
                        raise ProviderServerError(f"chat: HTTP {response.status_code}")
                    body = response.json()
                    run.set_response(body)
            except ProviderRateLimited:
                await reservation.cancel()  # the provider counted nothing; observe() holds us
                continue
            except ProviderServerError:
                await reservation.settle([1, 0])  # a request, but no tokens
                raise
            except BaseException:
                await reservation.cancel()
                raise
            await reservation.settle([1, body["usage"]["total_tokens"]])
            return body, attempt
        raise ProviderRateLimited(f"still rate limited after {MAX_ATTEMPTS} attempts")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    service = Service()
    app.state.service = service
    try:
        yield
    finally:
        await service.close()


app = FastAPI(title="prodfast example service", lifespan=lifespan)


@app.middleware("http")
async def _say_which_worker(request: Request, call_next):
    response = await call_next(request)
    response.headers["x-worker-pid"] = str(os.getpid())
    return response


def _service(request: Request) -> Service:
    return request.app.state.service


@app.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"pid": os.getpid(), "backend": prodfast.BACKEND}


@app.post("/chat")
async def chat(request: Request) -> dict[str, Any]:
    data = await request.json()
    model = data.get("model")
    if model not in LIMITS:
        raise HTTPException(404, f"unknown model {model!r}")
    service = _service(request)
    try:
        body, attempts = await service.chat(model, data["prompt"], int(data.get("max_tokens", 100)))
    except ProviderRateLimited as exc:
        raise HTTPException(429, str(exc)) from None
    except ProviderServerError as exc:
        raise HTTPException(502, str(exc)) from None
    return {"pid": os.getpid(), "attempts": attempts, "model": body["model"],
            "usage": body["usage"], "content": body["choices"][0]["message"]["content"]}


@app.post("/embed")
async def embed(request: Request) -> dict[str, Any]:
    data = await request.json()
    vector = await _service(request).embed(data["text"])
    return {"pid": os.getpid(), "vector": vector}


@app.put("/embed")
async def overwrite_embedding(request: Request) -> dict[str, Any]:
    """Store a vector for a text (a correction): every worker serves it from now on."""
    data = await request.json()
    service = _service(request)
    await service.embeddings.set(service.embed.cache_key(data["text"]), list(data["vector"]))
    return {"pid": os.getpid()}


@app.get("/metrics")
async def metrics() -> Response:
    """One scrape, the sum over every worker (prometheus_client's multiprocess mode)."""
    return Response(generate_latest(multiprocess_registry()), media_type=CONTENT_TYPE_LATEST)


@app.exception_handler(ProviderServerError)
async def _provider_failed(request: Request, exc: ProviderServerError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=502)
