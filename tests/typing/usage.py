"""Typed use of prodfast's public names, checked by ``mypy --strict`` and pyright
(tests/test_typing.py). Every line here must type-check; mistakes.py holds the ones that must not.

Not imported by the test suite: the type checkers read it, and ``assert_type`` states what each
expression's type must be. It also runs (on both backends), except the functions that need a
Redis server, which are only type-checked. tests/test_typing.py checks that every public name
of prodfast and of its public subpackages is used here.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import assert_type

import prodfast
import prodfast.callbacks
import prodfast.compat.cachetools as cachetools
import prodfast.monitor
import prodfast.redis
from prodfast import (
    AsyncGroupReservation,
    AsyncLimiter,
    AsyncLimiterGroup,
    BaseCallback,
    Cache,
    CacheInfo,
    CallbackManager,
    ErrorTrackingCallback,
    FIFOCache,
    GroupReservation,
    LatencySummary,
    LeakyBucket,
    LFUCache,
    LimiterGroup,
    LRUCache,
    P2Quantile,
    ProviderLimit,
    ProviderReport,
    Quantiles,
    QuantileSketch,
    RateLimitError,
    RateLimitHeaderWarning,
    RateLimitingCallback,
    Reservation,
    RRCache,
    RunningStats,
    SlidingWindowLimiter,
    TimingCallback,
    TLRUCache,
    TokenBucket,
    TokenUsageCallback,
    TTLCache,
    cached,
    cachedmethod,
    check_limiter,
    keys,
    limiter_kind,
    lru_cache,
    parse_rate,
    rate_limit,
)
from prodfast.compat.cachetools import func as cachetools_func
from prodfast.compat.cachetools import keys as cachetools_keys
from prodfast.integrations import langchain as pf_langchain
from prodfast.integrations import otel as pf_otel
from prodfast.integrations import prometheus as pf_prometheus
from prodfast.monitor import Run, extract_usage
from prodfast.redis import (
    AsyncRedisCache,
    AsyncRedisReservation,
    AsyncRedisSlidingWindow,
    AsyncRedisTokenBucket,
    AsyncTieredCache,
    BackendUnavailable,
    RedisCache,
    RedisReservation,
    RedisSlidingWindow,
    RedisTokenBucket,
    TieredCache,
)

# ---- which backend ----------------------------------------------------------------------------

backend: str = prodfast.BACKEND
error: str | None = prodfast.BACKEND_ERROR

# ---- caches: generic in key and value (and the timer's time for TTLCache) ---------------------

lru: LRUCache[str, int] = LRUCache(128)
lru["a"] = 1
assert_type(lru["a"], int)
assert_type(lru.get("a"), int | None)
assert_type(lru.get("a", 0), int)
assert_type(lru.get("a", "none"), int | str)
assert_type(lru.peek("a"), int | None)
assert_type(lru.pop("a"), int)
assert_type(lru.pop("a", None), int | None)
assert_type(lru.setdefault("b", 2), int)
assert_type(lru.popitem(), tuple[str, int])
assert_type(iter(lru), Iterator[str])
assert_type(list(lru.items()), list[tuple[str, int]])
assert_type(lru.maxsize, float)
assert_type(lru.currsize, float)
assert_type(lru.stats(), dict[str, Any])
lru.update({"c": 3})
del lru["c"]
assert_type("a" in lru, bool)
sized = LRUCache[str, bytes](1 << 20, getsizeof=len, on_evict=lambda key, value: None)
sized.set("blob", b"\0" * 10)

ttl = TTLCache[str, list[int], float](100, ttl=30.0, timer=time.monotonic)
ttl["k"] = [1, 2]
assert_type(ttl.get("k"), list[int] | None)
assert_type(ttl.timer(), float)
with ttl.timer as frozen:
    assert_type(frozen, float)
assert_type(ttl.expire(), list[tuple[str, list[int]]])
assert_type(ttl.expire(frozen + 60.0), list[tuple[str, list[int]]])
ttl_by_default: TTLCache[int, str, float] = TTLCache(10, 5.0)
plain: Cache[str, int] = Cache(10)
fifo: FIFOCache[str, int] = FIFOCache(10)
lfu: LFUCache[str, int] = LFUCache(10)
for each in (plain, fifo, lfu):
    each["x"] = 1
    assert_type(each.get("x"), int | None)
random_evict: RRCache[str, int] = RRCache(10, choice=min)
assert_type(random_evict.choice(["a", "b"]), str)
tlru = TLRUCache[str, int, float](10, ttu=lambda key, value, now: now + value)
tlru["t"] = 5
assert_type(tlru.expire(), list[tuple[str, int]])
assert_type(fifo.__copy__(), FIFOCache[str, int])

# ---- rate limiters ---------------------------------------------------------------------------

bucket = TokenBucket(rate=10, capacity=20.0, initial=5)
assert_type(bucket.try_acquire(), bool)
assert_type(bucket.try_acquire(2.5), bool)
assert_type(bucket.wait_time(3), float)
assert_type(bucket.acquire(1, timeout=0.5), bool)
assert_type(bucket.rate, float)
assert_type(bucket.simulate(np.arange(10.0)), npt.NDArray[np.bool_])
leaky = LeakyBucket(5, 10, clock=time.monotonic)
assert_type(leaky.try_acquire(1), bool)
window = SlidingWindowLimiter(max_calls=100, window=60)
assert_type(window.max_calls, int)
assert_type(window.wait_time(), float)
window.reset()
reservation = TokenBucket(10, 10).reserve(3)
assert_type(reservation, Reservation)
with reservation:
    reservation.settle(2)
assert_type(reservation.settled, bool)


async def limited() -> None:
    waiting = bucket.acquire_async(1)
    assert_type(waiting, Awaitable[bool])
    await waiting
    granted: bool = await bucket.acquire_async(1, timeout=1.0)
    limiter = AsyncLimiter(10, 1.0)
    async with limiter:
        assert_type(limiter.has_capacity(), bool)
    await limiter.acquire()
    assert granted


asyncio.run(limited())
assert_type(parse_rate("100/min"), tuple[int | float, float])
try:
    raise RateLimitError(retry_after=1.5)
except RateLimitError as exc:
    assert_type(exc.retry_after, float)

# ---- streaming statistics --------------------------------------------------------------------

stats = RunningStats()
stats.push(1)
stats.push(2.5)
stats.push(np.float32(3.0))
stats.push_many(np.arange(10.0))
stats.push_many([1, 2, 3])
assert_type(stats.mean, float)
assert_type(stats.count, int)
assert_type(stats + RunningStats(), RunningStats)
median = P2Quantile(0.5)
median.push(4)
assert_type(median.value, float)
quantiles = Quantiles((0.5, 0.99))
assert_type(quantiles.values, dict[float, float])
sketch = QuantileSketch(relative_accuracy=0.01)
sketch.push(1.5)
sketch.push_many(np.arange(100.0))
assert_type(sketch.quantile(0.99), float)
assert_type(QuantileSketch.from_bytes(sketch.to_bytes()), QuantileSketch)
latency = LatencySummary()
latency.push(0.25)
assert_type(latency.snapshot(), dict[str, float])

# ---- decorators and keys ---------------------------------------------------------------------


@cached(LRUCache[Hashable, str](100), key=keys.hashkey)
def complete(prompt: str, model: str = "gpt-4o") -> str:
    return prompt + model


assert_type(complete("hi"), str)
assert_type(complete("hi", model="small"), str)
assert_type(complete.cache_key("hi"), Hashable)
complete.cache_clear()


@cached(LFUCache[Hashable, int](10), info=True, lock=threading.Lock())
def length(text: str) -> int:
    return len(text)


assert_type(length("abc"), int)
assert_type(length.cache_info(), CacheInfo)
unwrapped: Callable[[str], int] = length.__wrapped__


@lru_cache(maxsize=1024, ttl=300)
async def embed(text: str) -> list[float]:
    return [float(len(text))]


@lru_cache
def square(x: int) -> int:
    return x * x


assert_type(square(3), int)
assert_type(square.cache_parameters(), dict[str, Any])
assert_type(embed.cache_info(), CacheInfo)


class Client:
    def __init__(self) -> None:
        self.memo: LRUCache[Hashable, str] = LRUCache(10)

    @cachedmethod(lambda self: self.memo, key=keys.methodkey)
    def ask(self, prompt: str) -> str:
        return prompt.upper()

    @cachedmethod(lambda self: self.memo, info=True)
    def shout(self, prompt: str) -> str:
        return prompt.upper() + "!"


client_obj = Client()
assert_type(client_obj.ask("x"), str)
client_obj.ask.cache_clear()
assert_type(client_obj.shout("x"), str)
assert_type(client_obj.shout.cache_info(), CacheInfo)
assert_type(keys.typedkey(1, b=2), tuple[Hashable, ...])
assert_type(keys.typedmethodkey(client_obj, 1), tuple[Hashable, ...])

# the cachetools port: the same classes and decorators under cachetools' names
ported: cachetools.LRUCache[str, int] = cachetools.LRUCache(10)
assert_type(ported.get("a"), int | None)
ported_classes = (
    cachetools.Cache, cachetools.FIFOCache, cachetools.LFUCache, cachetools.RRCache,
    cachetools.TTLCache, cachetools.TLRUCache, cachetools.CacheInfo,
)  # fmt: skip


@cachetools.cached(cachetools.TTLCache[Hashable, int, float](10, ttl=60), key=cachetools.keys.hashkey)
def ported_double(x: int) -> int:
    return 2 * x


@cachetools.cachedmethod(lambda self: self.memo)
def ported_method(self: Client, x: str) -> str:
    return x


assert_type(ported_double(2), int)
assert_type(cachetools_keys.methodkey(client_obj, 1), tuple[Hashable, ...])
assert_type(cachetools_keys.typedkey(1), tuple[Hashable, ...])
assert_type(cachetools_keys.typedmethodkey(client_obj, 1), tuple[Hashable, ...])
assert_type(cachetools_keys.hashkey(1), tuple[Hashable, ...])
assert_type(cachetools.func is cachetools_func, bool)


@cachetools_func.lru_cache(maxsize=32)
def lru_double(x: int) -> int:
    return 2 * x


@cachetools_func.ttl_cache(maxsize=32, ttl=60)
def ttl_double(x: int) -> int:
    return 2 * x


@cachetools_func.fifo_cache()
def fifo_double(x: int) -> int:
    return 2 * x


@cachetools_func.lfu_cache(16)
def lfu_double(x: int) -> int:
    return 2 * x


@cachetools_func.rr_cache(16)
def rr_double(x: int) -> int:
    return 2 * x


for memo in (lru_double, ttl_double, fifo_double, lfu_double, rr_double):
    assert_type(memo(1), int)
    assert_type(memo.cache_info(), CacheInfo)

# ---- limiter groups, rate_limit, reservations, provider headers -------------------------------

rpm = TokenBucket(rate=500 / 60, capacity=500)
tpm = TokenBucket(rate=200_000 / 60, capacity=200_000)
group = LimiterGroup([rpm, tpm], resources=("requests", "tokens"))
assert_type(group.try_acquire([1, 1200]), bool)
assert_type(group.try_acquire((1, 1200)), bool)
assert_type(group.try_acquire(1), bool)
assert_type(group.wait_time([1, 1200]), float)
assert_type(group.acquire([1, 1200], timeout=2.0), bool)
assert_type(group.limiters, tuple[Any, ...])
assert_type(len(group), int)
with group.reserve([1, 1200]) as group_reservation:
    assert_type(group_reservation, GroupReservation)
    group_reservation.settle([1, 900])
assert_type(group_reservation.cost, tuple[float, ...])
group.reserve((1, 10)).cancel()
headers = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "200000",
    "x-ratelimit-remaining-tokens": "150000",
    "x-ratelimit-reset-tokens": "15s",
}
report = group.observe(headers)
assert_type(report, ProviderReport)
assert_type(report.retry_after, float | None)
assert_type(report.limits["tokens"].remaining, float | None)
tokens_limit: ProviderLimit = report.limits["tokens"]
assert_type(tokens_limit.reset_after, float | None)
with warnings.catch_warnings():  # an unreadable header changes nothing and warns once
    warnings.simplefilter("ignore", RateLimitHeaderWarning)
    assert_type(rpm.observe({"x-ratelimit-remaining-requests": "many"}), ProviderReport)
assert_type(rpm.observe(headers, resource="requests", status=200).problems, tuple[str, ...])
assert_type(group.stats(), dict[str, Any])
group.reset()
assert_type(limiter_kind(group), str)
check_limiter(rpm, sync=True)
with rpm.reserve(1, timeout=1.0) as single:
    single.settle(1)
rpm.reserve(1).cancel()


def estimate_tokens(prompt: str) -> int:
    return len(prompt) // 4


@rate_limit(group, cost=lambda prompt, **kw: [1, estimate_tokens(prompt)])
def ask(prompt: str, **kw: Any) -> str:
    return prompt


@rate_limit(rpm, block=False)
async def ask_async(prompt: str) -> int:
    return len(prompt)


@rate_limit(tpm, cost=estimate_tokens)
def ask_counted(prompt: str) -> str:
    return prompt


assert_type(ask("hello", temperature=0.2), str)
assert_type(ask_counted("hello"), str)
pending: Coroutine[Any, Any, int] = ask_async("hello")
pending.close()


async def limited_group() -> None:
    assert_type(await group.acquire_async([1, 10]), bool)
    async with await group.reserve_async([1, 10]) as held:
        assert_type(held, GroupReservation)
    async with await rpm.reserve_async(1) as held_one:
        assert_type(held_one, Reservation)
    assert_type(await ask_async("hi"), int)


asyncio.run(limited_group())

# ---- monitoring: the manager, runs, stock callbacks, metrics ----------------------------------


class Audit(BaseCallback):
    def __init__(self) -> None:
        self.models: list[str] = []

    def on_llm_start(self, model: str, prompt: Any, **kwargs: Any) -> None:
        self.models.append(model)


timing = TimingCallback()
errors = ErrorTrackingCallback()
usage_cb = TokenUsageCallback()
gate = RateLimitingCallback(rate=100, capacity=100, block=False)
manager = CallbackManager([gate, timing, errors, usage_cb, Audit()], provider="openai")
manager.add_callback(prodfast.callbacks.TimingCallback())
with manager.track("gpt-4o", "prompt", operation="chat") as run:
    assert_type(run, Run)
    run.new_token("a")
    run.set_response({"usage": {"prompt_tokens": 3, "completion_tokens": 5}})
started = manager.start("gpt-4o", "again")
started.end("done", tokens_used=10)
dashboard: dict[str, Any] = manager.metrics()
latencies: dict[str, Any] = timing.get_stats()
assert_type(errors.get_error_rate(), float)
token_counts: dict[str, Any] = usage_cb.get_stats()
assert_type(gate.allow_request(1.0), bool)
counted: dict[str, Any] | None = extract_usage({"usage": {"prompt_tokens": 1}})
assert_type(prodfast.monitor.Run, type[Run])


@manager.instrument(model="gpt-4o")
def chat(prompt: str) -> str:
    return prompt


@manager.instrument
async def achat(prompt: str) -> str:
    return prompt


@manager.instrument(prompt_arg="text", operation="text_completion")
async def stream(text: str) -> AsyncIterator[str]:
    yield text


assert_type(chat("hi"), str)


async def monitored() -> None:
    assert_type(await achat("hi"), str)
    async for chunk in stream("hi"):
        assert_type(chunk, str)
    async with manager.track("gpt-4o") as arun:
        await arun.anew_token("x")
    begun = await manager.astart("gpt-4o")
    await begun.aend("ok")


asyncio.run(monitored())

# exporters (the prometheus, otel and langchain extras)
collector = pf_prometheus.PrometheusCollector(manager, {"service": "api"})
assert_type(pf_prometheus.prometheus_name("gen_ai.client.token.usage", "{token}"), str)
metric_names: list[str] = [
    pf_prometheus.OPERATION_DURATION, pf_prometheus.TIME_TO_FIRST_CHUNK,
    pf_prometheus.TIME_PER_OUTPUT_CHUNK, pf_prometheus.TOKEN_USAGE,
    pf_prometheus.OPERATION_ERRORS, pf_prometheus.OPERATIONS,
    pf_otel.OPERATION_DURATION, pf_otel.TIME_TO_FIRST_CHUNK, pf_otel.TIME_PER_OUTPUT_CHUNK,
    pf_otel.TOKEN_USAGE,
]  # fmt: skip


def multiprocess(directory: str) -> None:  # needs PROMETHEUS_MULTIPROC_DIR: type-checked only
    writer = pf_prometheus.MultiProcessWriter(manager, directory, interval=None)
    writer.flush()
    writer.close()
    registry = pf_prometheus.multiprocess_registry(directory)
    pf_prometheus.MultiProcessSketchCollector(registry, directory)


bridge = pf_otel.OpenTelemetryBridge(manager, attributes={"service": "api"})
exported: list[Any] = bridge.metrics()
handler = pf_langchain.ProdfastCallbackHandler(manager)
async_handler = pf_langchain.AsyncProdfastCallbackHandler(manager)
assert_type(handler.in_flight, int)

# ---- Redis (type-checked only: these need a server) -------------------------------------------


def shared(client: Any) -> None:
    remote: RedisCache = RedisCache(client, "emb", ttl=86_400, serializer="json")
    remote["k"] = [1.0]
    assert_type(remote.get_many(["k"]), dict[Any, Any])
    tiered = TieredCache(LRUCache[Any, Any](100), remote)
    assert_type(tiered.get_or_compute("k", lambda: 1.0), Any)
    tiered.close()
    bucket = RedisTokenBucket(client, "rpm", rate=10, capacity=20, lease=5)
    window = RedisSlidingWindow(client, "rpm:window", max_calls=100, window=60.0)
    assert_type(bucket.try_acquire(), bool)
    assert_type(window.acquire(1, timeout=1.0), bool)
    with bucket.reserve(3) as held:
        assert_type(held, RedisReservation)
        held.settle(2)
    sync_group = LimiterGroup([bucket, window])
    assert_type(sync_group, LimiterGroup)
    assert_type(sync_group.try_acquire([1, 1]), bool)
    try:
        bucket.acquire()
    except BackendUnavailable:
        pass


async def shared_async(client: Any) -> None:
    remote = AsyncRedisCache(client, "emb")
    await remote.set("k", 1)
    assert_type(await remote.get("k"), Any)
    tiered = AsyncTieredCache(LRUCache[Any, Any](100), remote)
    await tiered.aget_or_compute("k", lambda: asyncio.sleep(0, 1))
    bucket = AsyncRedisTokenBucket(client, "rpm", rate=10, capacity=20)
    window = AsyncRedisSlidingWindow(client, "win", max_calls=10, window=1.0)
    assert_type(await bucket.try_acquire(2), bool)
    assert_type(await window.wait_time(), float)
    held = await bucket.reserve(2)
    assert_type(held, AsyncRedisReservation)
    await held.settle(1)
    # a group of async limiters is an AsyncLimiterGroup: every method is awaited
    group = LimiterGroup([bucket, window], resources=("tokens", "requests"))
    assert_type(group, AsyncLimiterGroup)
    members = [bucket, window]
    assert_type(LimiterGroup(members), AsyncLimiterGroup)
    assert_type(LimiterGroup([bucket]), AsyncLimiterGroup)
    assert_type(await group.try_acquire([5, 1]), bool)
    assert_type(await group.wait_time(1), float)
    assert_type(await group.acquire([5, 1], timeout=1.0), bool)
    assert_type(await group.acquire_async(1), bool)
    async with await group.reserve([50, 1], timeout=2.0) as group_held:
        assert_type(group_held, AsyncGroupReservation)
        await group_held.settle([20, 1])
    await (await group.reserve_async(1)).cancel()
    assert_type(await group.observe({"retry-after": "1"}, status=429), ProviderReport)
    assert_type(await group.stats(), dict[str, Any])
    await group.reset()
    await bucket.close()
