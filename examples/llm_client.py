"""A fake LLM client that is cached, rate-limited and instrumented with prodfast.

The client answers after a random latency, fails now and then (timeouts, server errors) and
can stream its answer token by token. Around it:

- ``prodfast.lru_cache(ttl=...)`` caches completed answers (concurrent identical prompts
  share one in-flight call), so repeated prompts never reach the model;
- a ``CallbackManager`` with the four stock callbacks times every call that does reach it
  (p50/p95/p99 in O(1) memory, time to first token for streams), counts errors by type and
  tokens, and holds every call behind a token bucket (waiting with ``await``, so the event
  loop keeps serving the other requests);
- at the end it prints ``manager.metrics()`` as a report (``--json`` prints the raw dict,
  ``--prometheus`` the Prometheus exposition, which needs prometheus_client).

Run it: ``python examples/llm_client.py`` (a second or two).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys

import prodfast
from prodfast import (
    CallbackManager,
    ErrorTrackingCallback,
    RateLimitingCallback,
    TimingCallback,
    TokenUsageCallback,
)


class ServerError(Exception):
    """The fake provider's 5xx."""


class FakeLLMClient:
    """Answers prompts like an LLM API would, minus the intelligence."""

    WORDS = ("the", "cache", "bucket", "token", "latency", "quantile", "stream", "model",
             "prompt", "answer", "fast", "error", "budget", "window", "rate")  # fmt: skip

    def __init__(self, rng: random.Random, mean_latency: float = 0.01, error_rate: float = 0.08):
        self.rng = rng
        self.mean_latency = mean_latency
        self.error_rate = error_rate
        self.requests = 0

    def _latency(self) -> float:
        # log-normal, like real model latency: mostly quick, with a long tail
        return self.mean_latency * math.exp(self.rng.gauss(0.0, 0.6))

    def _maybe_fail(self) -> None:
        if self.rng.random() < self.error_rate:
            raise (TimeoutError if self.rng.random() < 0.5 else ServerError)("fake provider failure")

    def _answer(self, prompt: str) -> list[str]:
        n = 5 + len(prompt) % 12
        return [self.rng.choice(self.WORDS) + " " for _ in range(n)]

    async def complete(self, prompt: str) -> dict:
        """One completion, OpenAI style: ``{"text": ..., "usage": {...}}``."""
        self.requests += 1
        await asyncio.sleep(self._latency())
        self._maybe_fail()
        words = self._answer(prompt)
        return {
            "text": "".join(words).strip(),
            "model": "fake-gpt-0613",  # the model that answered: gen_ai.response.model
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(words)},
        }

    async def stream(self, prompt: str):
        """The same answer, one token at a time."""
        self.requests += 1
        await asyncio.sleep(self._latency())  # time to first token
        self._maybe_fail()
        for word in self._answer(prompt):
            yield word
            await asyncio.sleep(self._latency() / 10)


def build(seed: int, rate: float, capacity: float):
    client = FakeLLMClient(random.Random(seed))
    manager = CallbackManager(
        [
            RateLimitingCallback(rate=rate, capacity=capacity),  # first: a call waits here
            TimingCallback(),
            ErrorTrackingCallback(),
            TokenUsageCallback(),
        ],
        provider="fake",  # every call's gen_ai.provider.name; the model comes from each call
    )

    @prodfast.lru_cache(maxsize=256, ttl=300.0)
    @manager.instrument(model="fake-gpt")
    async def complete(prompt: str) -> dict:
        return await client.complete(prompt)

    @manager.instrument(model="fake-gpt")
    async def stream(prompt: str):
        async for token in client.stream(prompt):
            yield token

    return client, manager, complete, stream


async def workload(complete, stream, rng: random.Random, requests: int, streams: int):
    prompts = [f"question number {i} about caching and rate limits" for i in range(40)]
    outcome = {"ok": 0, "failed": 0, "streamed_ok": 0, "streamed_failed": 0}
    slots = asyncio.Semaphore(16)  # at most 16 requests in flight, like a connection pool

    async def one(prompt):
        async with slots:
            try:
                await complete(prompt)
                outcome["ok"] += 1
            except (TimeoutError, ServerError):
                outcome["failed"] += 1

    async def one_stream(prompt):
        async with slots:
            try:
                async for _ in stream(prompt):
                    pass
                outcome["streamed_ok"] += 1
            except (TimeoutError, ServerError):
                outcome["streamed_failed"] += 1

    jobs = [one(rng.choice(prompts)) for _ in range(requests)]
    jobs += [one_stream(f"stream {i}") for i in range(streams)]
    rng.shuffle(jobs)
    await asyncio.gather(*jobs)
    return outcome


def fmt_ms(x: float) -> str:
    return "   n/a" if math.isnan(x) else f"{x * 1000:7.2f} ms"


def report(metrics: dict, outcome: dict, cache_info, client: FakeLLMClient) -> str:
    lat, ttft, tok = metrics["latency"], metrics["ttft"], metrics["tokens"]
    lines = [
        f"prodfast backend: {prodfast.BACKEND}",
        f"requests: {outcome['ok'] + outcome['failed']} completions "
        f"({outcome['failed']} failed), "
        f"{outcome['streamed_ok'] + outcome['streamed_failed']} streams "
        f"({outcome['streamed_failed']} failed)",
        f"cache: {cache_info.hits} hits, {cache_info.misses} misses; "
        f"the model saw {client.requests} requests",
        f"calls: {metrics['calls']}  errors: {metrics['errors']}  "
        f"error rate: {metrics['error_rate']:.3f}  reliability: {metrics['reliability']:.3f}",
        f"errors by type: {metrics['errors_by_type']}",
        "latency     count   mean        p50         p95         p99         max",
        f"  call      {lat['count']:5d}  {fmt_ms(lat['mean'])}  {fmt_ms(lat['p50'])}  "
        f"{fmt_ms(lat['p95'])}  {fmt_ms(lat['p99'])}  {fmt_ms(lat['max'])}",
        f"  ttft      {ttft['count']:5d}  {fmt_ms(ttft['mean'])}  {fmt_ms(ttft['p50'])}  "
        f"{fmt_ms(ttft['p95'])}  {fmt_ms(ttft['p99'])}  {fmt_ms(ttft['max'])}",
        f"tokens: {tok['prompt_tokens']} prompt + {tok['completion_tokens']} completion = "
        f"{tok['total_tokens']}; {tok['output_tokens_per_second']:.0f} output tokens/s; "
        f"{tok['chunks']} streamed chunks",
        f"throughput: {metrics['throughput']:.1f} calls/s over {metrics['uptime']:.2f} s",
    ]
    gate = metrics.get("rate_limit")
    if gate:
        lines.append(
            f"rate limit: {gate['rate']:g}/s (burst {gate['capacity']:g}); measured over the run, "
            f"first burst included: arrival {gate['arrival_rate']:.1f}/s, "
            f"throughput {gate['throughput']:.1f}/s"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--rate", type=float, default=150.0, help="calls per second")
    parser.add_argument("--capacity", type=float, default=20.0, help="burst size")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--prometheus", action="store_true",
                        help="also print the Prometheus text exposition")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    client, manager, complete, stream = build(args.seed, args.rate, args.capacity)
    outcome = asyncio.run(workload(complete, stream, rng, args.requests, args.streams))
    metrics = manager.metrics()
    info = complete.cache_info()

    if args.json:
        json.dump(
            {"metrics": metrics, "outcome": outcome, "model_requests": client.requests,
             "cache": {"hits": info.hits, "misses": info.misses}},
            sys.stdout, indent=2, default=str,
        )
        print()
    else:
        print(report(metrics, outcome, info, client))
    if args.prometheus:
        from prometheus_client import CollectorRegistry, generate_latest

        from prodfast.integrations.prometheus import PrometheusCollector

        registry = CollectorRegistry()
        registry.register(PrometheusCollector(manager, {"service.name": "llm-client-example"}))
        print(generate_latest(registry).decode(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
