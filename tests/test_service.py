"""The example service (examples/service/) run as a user runs it, and checked where users rely on it.

The fake provider runs in a thread of this process; the app runs under ``uvicorn --workers 3``
against a redis-server of the test's own, with ``PROMETHEUS_MULTIPROC_DIR`` set; httpx clients
drive it with concurrent requests, each on a new connection so that the requests spread over
the workers (every answer names its worker in ``x-worker-pid``). What is checked is what the
provider saw (its log) and what one scrape of ``/metrics`` reports:

* a cold text asked by every worker at once is embedded by the provider exactly once;
* an overwrite made through one worker is served by every worker within the staleness bound;
* the requests and tokens granted per model, over the three workers, never exceed the
  service's limits (capacity + rate x elapsed, on the grant times the app sends along);
* after a 429 with ``retry-after`` no worker sends that model anything until the retry time;
* the scrape's totals equal the calls made, per model and outcome, failures by ``error.type``.

The whole service runs once per backend (``PRODFAST_PURE_PYTHON=1`` in the workers for [py]).
Without redis-server, fastapi or uvicorn the tests skip with the reason
(``PRODFAST_REQUIRE_REDIS=1``: a missing redis-server fails).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the example service needs fastapi (the test extra)")
pytest.importorskip("uvicorn", reason="the example service needs uvicorn (the test extra)")
httpx = pytest.importorskip("httpx", reason="the example service needs httpx (the test extra)")
pytest.importorskip("redis", reason="the example service needs redis-py (prodfast[redis])")
pytest.importorskip("prometheus_client", reason="needs prometheus_client (prodfast[prometheus])")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from redis_server import RedisServer, free_port, require_redis_server  # noqa: E402

from conftest import CYTHON_BACKEND  # noqa: E402

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="uvicorn workers and signals"),
    pytest.mark.timeout(120),
]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "service"
if not (EXAMPLE / "app.py").is_file():  # e.g. the tests of an installed wheel, without examples/
    pytest.skip(f"the example service is not in this tree ({EXAMPLE})", allow_module_level=True)
WORKERS = 3
PER_WORKER = 8  # client connections kept open to each worker
BOUND = 2.0  # the TieredCache staleness bound: health_interval + health_timeout (defaults)
# Seconds the app's x-granted-at reading may lag behind the Redis decision (a loaded machine):
# the limits are checked as capacity + rate x (elapsed + GRANT_SLACK).
GRANT_SLACK = 0.2
# A worker may still be granted requests this long after the provider sent the first 429 (the
# answer on its way to the worker that calls observe()); later ones must wait for the retry time.
OBSERVE_GRACE = 0.3


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


provider_module = _load("service_example_provider", EXAMPLE / "provider.py")
app_module = _load("service_example_app", EXAMPLE / "app.py")  # builds nothing until start-up
LIMITS = app_module.LIMITS


class Service:
    def __init__(self, url, provider, proc):
        self.url = url
        self.provider = provider
        self.proc = proc
        self.outcomes = collections.Counter()  # (model, HTTP status) of every /chat answer
        # one event loop for the module's clients (their connections belong to it)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._pool_cm = self.workers(PER_WORKER)
        self.pool = self.run(self._pool_cm.__aenter__())

    def run(self, coro, timeout: float = 90.0):
        """Run ``coro`` on the clients' event loop; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.run(self._pool_cm.__aexit__(None, None, None), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()

    @contextlib.asynccontextmanager
    async def workers(self, per_worker: int):
        """Connections pinned to the workers: ``per_worker`` for each of them.

        uvicorn's workers share one listening socket and a burst of new connections often
        lands on one worker, so the tests open keep-alive connections (one per client) until
        every worker holds ``per_worker`` of them, and spread their requests over those."""
        pool = Pool()
        spare = []
        try:
            deadline = time.monotonic() + 30
            while not pool.full(per_worker):
                assert time.monotonic() < deadline, f"connections per worker: {pool.counts()}"
                clients = [
                    httpx.AsyncClient(
                        base_url=self.url, timeout=60.0,
                        # one connection, never closed for idling (it would reconnect elsewhere)
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1,
                                            keepalive_expiry=None),
                    )
                    for _ in range(WORKERS)
                ]
                answers = await asyncio.gather(*[c.get("/healthz") for c in clients])
                for client, answer in zip(clients, answers, strict=True):
                    pid = _pid(answer)
                    if len(pool.by_pid.get(pid, ())) < per_worker:
                        pool.by_pid.setdefault(pid, []).append(client)
                        pool.pid_of[id(client)] = pid
                    else:
                        spare.append(client)
            for client in spare:  # closed at once, so they do not hold the workers
                await client.aclose()
            spare = []
            yield pool
        finally:
            for client in spare + [c for cs in pool.by_pid.values() for c in cs]:
                await client.aclose()


class Pool:
    """Clients grouped by the worker their connection belongs to."""

    def __init__(self):
        self.by_pid: dict[int, list[httpx.AsyncClient]] = {}
        self.pid_of: dict[int, int] = {}  # id(client) -> the worker its connection went to

    def full(self, per_worker: int) -> bool:
        return len(self.by_pid) == WORKERS and all(
            len(cs) >= per_worker for cs in self.by_pid.values()
        )

    def counts(self) -> dict[int, int]:
        return {pid: len(cs) for pid, cs in self.by_pid.items()}

    def spread(self, n: int) -> list[httpx.AsyncClient]:
        """n clients, round-robin over the workers (and over each worker's connections)."""
        pids = sorted(self.by_pid)
        return [self.by_pid[pids[i % len(pids)]][(i // len(pids)) % len(self.by_pid[pids[0]])]
                for i in range(n)]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # uvicorn's supervisor stops its workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def _wait_for_workers(url: str, proc: subprocess.Popen, timeout: float) -> dict[int, str]:
    """{pid: prodfast.BACKEND} of every worker, once all of them answer."""
    deadline = time.monotonic() + timeout
    pids: dict[int, str] = {}
    async with httpx.AsyncClient(
        base_url=url, timeout=5.0, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}")
            try:
                answers = await asyncio.gather(*[client.get("/healthz") for _ in range(12)])
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            pids.update((a.json()["pid"], a.json()["backend"]) for a in answers
                        if a.status_code == 200)
            if len(pids) >= WORKERS:
                return pids
            await asyncio.sleep(0.05)
    raise RuntimeError(f"only {len(pids)} of {WORKERS} workers answered within {timeout} s")


@pytest.fixture(
    scope="module",
    params=[pytest.param("cython", id="cy", marks=CYTHON_BACKEND), pytest.param("python", id="py")],
)
def service(request, tmp_path_factory):
    redis_server = RedisServer(require_redis_server())
    redis_server.start()
    provider, _thread = provider_module.start_provider(embed_delay=0.25)
    metrics_dir = tmp_path_factory.mktemp("metrics")
    port = free_port()
    env = dict(os.environ)
    env.pop("PRODFAST_PURE_PYTHON", None)
    if request.param == "python":
        env["PRODFAST_PURE_PYTHON"] = "1"
    env.update(
        SERVICE_REDIS_URL=redis_server.url,
        SERVICE_PROVIDER_URL=provider.url,
        SERVICE_NAMESPACE=f"svc-{uuid.uuid4().hex[:8]}",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(EXAMPLE),
         "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--timeout-keep-alive", "120"],
        env=env, start_new_session=True, stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        backends = asyncio.run(_wait_for_workers(url, proc, timeout=60.0))
        assert set(backends.values()) == {request.param}, backends
        svc = Service(url, provider, proc)
        try:
            yield svc
        finally:
            svc.close()
    finally:
        _stop(proc)
        provider.shutdown()
        provider.server_close()
        redis_server.close()


def _pid(response) -> int:
    return int(response.headers["x-worker-pid"])


# -- the shared embedding cache ------------------------------------------------------------------


def test_cold_text_asked_by_every_worker_is_embedded_once(service):
    texts = [f"cold text {i} {uuid.uuid4().hex}" for i in range(4)]
    per_text = 2 * WORKERS  # every text asked twice by each worker, all at once

    async def drive():
        pool = service.pool
        clients = pool.spread(len(texts) * per_text)
        calls = [c.post("/embed", json={"text": texts[i % len(texts)]})
                 for i, c in enumerate(clients)]
        first = await asyncio.gather(*calls)
        calls = [c.post("/embed", json={"text": texts[i % len(texts)]})
                 for i, c in enumerate(clients)]
        return first, await asyncio.gather(*calls)

    answers, again = service.run(drive())
    asked = [texts[i % len(texts)] for i in range(len(answers))]
    assert all(a.status_code == 200 for a in answers + again), [a.text for a in answers]
    served_by = collections.defaultdict(set)
    vectors = collections.defaultdict(set)
    for text, answer in zip(asked + asked, answers + again, strict=True):
        served_by[text].add(_pid(answer))
        vectors[text].add(tuple(answer.json()["vector"]))
    assert all(len(pids) == WORKERS for pids in served_by.values()), served_by
    assert all(len(v) == 1 for v in vectors.values()), vectors
    # one provider call per text, whichever worker made it; asked again: none
    calls = service.provider.log()["embeddings"]
    assert {t: calls.get(t, 0) for t in texts} == {t: 1 for t in texts}


def test_overwrite_in_one_worker_is_seen_by_every_worker_within_the_bound(service):
    text = f"to be corrected {uuid.uuid4().hex}"

    async def run():
        pool = service.pool
        clients = pool.spread(2 * WORKERS)
        # every worker reads the text, so every worker holds a local copy of the old vector
        old = (await clients[0].post("/embed", json={"text": text})).json()["vector"]
        for a in await asyncio.gather(*[c.post("/embed", json={"text": text}) for c in clients]):
            assert a.json()["vector"] == old
        new = [-1.0] * len(old)
        put = await clients[0].put("/embed", json={"text": text, "vector": new})
        assert put.status_code == 200
        written = time.monotonic()
        first_new: dict[int, float] = {}
        stale: list[tuple[int, float]] = []
        answered = []
        while len(first_new) < WORKERS and time.monotonic() < written + BOUND + 3.0:
            sent = time.monotonic()
            for c, a in zip(clients, await asyncio.gather(
                *[c.post("/embed", json={"text": text}) for c in clients]
            ), strict=True):
                vector, pid = a.json()["vector"], _pid(a)
                answered.append((pool.pid_of[id(c)], pid, round(sent - written, 3)))
                if vector == new:
                    first_new.setdefault(pid, sent - written)
                else:
                    assert vector == old
                    stale.append((pid, sent - written))
            await asyncio.sleep(0.01)
        return _pid(put), first_new, stale, answered

    writer, first_new, stale, answered = service.run(run())
    late = sorted({pid for pid, after in stale if after > BOUND})
    assert not late, f"workers {late} served the old vector more than {BOUND} s after the write"
    assert len(first_new) == WORKERS, (
        f"only workers {sorted(first_new)} served the new vector", answered[:30]
    )
    assert not [pid for pid, _ in stale if pid == writer], "the writer served its old vector"
    assert service.provider.log()["embeddings"][text] == 1
    print(f"\noverwrite via worker {writer}: stale reads {len(stale)}, the last sent "
          f"{max((a for _, a in stale), default=0.0) * 1000:.1f} ms after the PUT returned")


# -- rate limits -------------------------------------------------------------------------------


def _max_excess(events, rate, capacity):
    """The largest amount granted in any interval [t_i, t_j] of the events (time, amount)
    beyond capacity + rate x (t_j - t_i + GRANT_SLACK); <= 0 when the limit held."""
    events = sorted(events)
    worst = -float("inf")
    for i in range(len(events)):
        total = 0.0
        for j in range(i, len(events)):
            total += events[j][1]
            allowed = capacity + rate * (events[j][0] - events[i][0] + GRANT_SLACK)
            worst = max(worst, total - allowed)
    return worst


async def _chat(service, client, model, prompt, max_tokens):
    answer = await client.post("/chat", json={"model": model, "prompt": prompt,
                                              "max_tokens": max_tokens})
    service.outcomes[(model, answer.status_code)] += 1
    return answer


def test_limits_hold_across_workers_with_reserve_and_settle(service):
    started = time.monotonic()
    prompt = "Summarise the rate limits of this service, please. " * 4  # 51 tokens
    jobs = (
        [("gpt-small", prompt, 100)] * 8
        + [("gpt-large", prompt, 400)] * 6
        + [("gpt-large", prompt + " [fail]", 400)] * 2
    )

    async def drive():
        pool = service.pool
        return await asyncio.gather(*[
            _chat(service, c, m, p, n)
            for c, (m, p, n) in zip(pool.spread(len(jobs)), jobs, strict=True)
        ])

    answers = service.run(drive())
    statuses = collections.Counter((m, a.status_code) for (m, _, _), a in zip(jobs, answers, strict=True))
    assert statuses == {("gpt-small", 200): 8, ("gpt-large", 200): 6, ("gpt-large", 502): 2}
    log = [e for e in service.provider.log()["chat"] if e["t"] >= started]
    for model, limits in LIMITS.items():
        granted = [e for e in log if e["model"] == model and e["status"] != 429]
        assert all(e["granted_at"] is not None for e in granted)
        rate, capacity = limits["requests"]
        excess = _max_excess([(e["granted_at"], 1) for e in granted], rate, capacity)
        assert excess <= 0, f"{model}: {excess:.2f} requests over the limit"
        rate, capacity = limits["tokens"]
        excess = _max_excess([(e["granted_at"], e["tokens"]) for e in granted], rate, capacity)
        assert excess <= 0, f"{model}: {excess:.0f} tokens over the limit"
    # and the limits bind: 8 requests at 4/s after a burst of 2 take at least 1.5 s; the
    # tokens of gpt-large (6 x 251 settled, 600/s after a burst of 500) at least 1.6 s
    for model, least in (("gpt-small", (8 - 2) / 4), ("gpt-large", (6 * 251 - 500) / 600)):
        times = sorted(e["granted_at"] for e in log if e["model"] == model)
        assert times[-1] - times[0] >= least - GRANT_SLACK, (model, times)
        print(f"\n{model}: {len(times)} grants in {times[-1] - times[0]:.2f} s (least {least:.2f})")


def test_a_429_holds_every_worker_until_the_retry_time(service):
    model = "gpt-large"
    prompt = "short"  # 1 token

    async def drive():
        pool = service.pool
        until = service.provider.overload(model, 0.8)
        answers = await asyncio.gather(
            *[_chat(service, c, model, prompt, 10) for c in pool.spread(12)]
        )
        return until, answers

    overloaded_at = time.monotonic()
    until, answers = service.run(drive())
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
    log = [e for e in service.provider.log()["chat"]
           if e["model"] == model and e["t"] >= overloaded_at]
    refused = [e for e in log if e["status"] == 429]
    assert refused, "the overloaded provider refused nothing"
    first_refusal = min(e["t"] for e in refused)
    # granted after the first 429 had (long) reached a worker, and before the retry time:
    # that worker's observe() did not hold the others
    early = [e for e in log if first_refusal + OBSERVE_GRACE < e["granted_at"] < until - 0.005]
    assert not early, f"{len(early)} requests granted during the provider's retry-after"
    assert min(e["t"] for e in log if e["status"] == 200) >= until
    # each request met at most one 429: the hold stopped them all until the retry time
    assert all(a.json()["attempts"] <= 2 for a in answers), [a.json() for a in answers]


# -- monitoring --------------------------------------------------------------------------------


def _scrape_totals(text):
    """{(metric sample name, frozenset(labels)): value} of the counters and histogram counts."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith(("_total", "_count", "_sum")):
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _labels(model, operation, error=None, response_model=None):
    labels = {"gen_ai_operation_name": operation, "gen_ai_provider_name": "openai",
              "gen_ai_request_model": model}
    if error is not None:
        labels["error_type"] = error
    if response_model is not None:
        labels["gen_ai_response_model"] = response_model
    return frozenset(labels.items())


def test_one_scrape_sums_every_worker_per_model_and_error_type(service):
    async def drive():
        pool = service.pool
        clients = pool.spread(8)
        jobs = [_chat(service, c, "gpt-small", "monitor me " * 8, 50) for c in clients[:6]]
        jobs += [_chat(service, c, "gpt-large", "monitor me [fail]", 50) for c in clients[6:]]
        await asyncio.gather(*jobs)

    service.run(drive())
    log = service.provider.log()
    expected = {}
    for model in LIMITS:
        chats = [e for e in log["chat"] if e["model"] == model]
        ok = [e for e in chats if e["status"] == 200]
        ok_labels = _labels(model, "chat", response_model=f"{model}-2026-01")
        expected[("gen_ai_client_operations_total", ok_labels)] = len(ok)
        # every call has its duration sample, failed ones under their error.type
        expected[("gen_ai_client_operation_duration_seconds_count", ok_labels)] = len(ok)
        for status, error in ((429, "ProviderRateLimited"), (500, "ProviderServerError")):
            n = sum(e["status"] == status for e in chats)
            if n:
                err = _labels(model, "chat", error=error)
                expected[("gen_ai_client_operation_errors_total", err)] = n
                expected[("gen_ai_client_operations_total", err)] = n
                expected[("gen_ai_client_operation_duration_seconds_count", err)] = n
        for kind, field in (("input", "prompt_tokens"), ("output", "completion_tokens")):
            tokens = frozenset(ok_labels | {("gen_ai_token_type", kind)})
            expected[("gen_ai_client_token_usage_sum", tokens)] = sum(e[field] for e in ok)
            expected[("gen_ai_client_token_usage_count", tokens)] = len(ok)
        # what the clients saw: every 200 they got is one successful call in the scrape
        assert service.outcomes[(model, 200)] == len(ok)
        assert service.outcomes[(model, 502)] == sum(e["status"] == 500 for e in chats)
    embedded = sum(log["embeddings"].values())
    if embedded:
        emb = _labels("embed-small", "embeddings", response_model="embed-small")
        expected[("gen_ai_client_operations_total", emb)] = embedded
        # an embeddings response reports input tokens only: no output-token series for it
        tokens = ("gen_ai_client_token_usage_count", emb | {("gen_ai_token_type", "input")})
        expected[tokens] = embedded
        expected[("gen_ai_client_token_usage_count", emb | {("gen_ai_token_type", "output")})] = None

    async def scrape_until_settled():
        # each worker flushes its figures every second: poll until one scrape has them all
        async with httpx.AsyncClient(base_url=service.url, timeout=30.0) as client:
            deadline = time.monotonic() + 10
            while True:
                answer = await client.get("/metrics")
                assert answer.status_code == 200
                totals = _scrape_totals(answer.text)
                got = {k: totals.get(k) for k in expected}
                if got == expected or time.monotonic() > deadline:
                    return got, totals
                await asyncio.sleep(0.25)

    got, totals = service.run(scrape_until_settled())
    assert got == expected
    # no other chat series than those expected (e.g. a model label lost, or counted twice)
    chat_ops = {k: v for k, v in totals.items()
                if k[0] == "gen_ai_client_operations_total" and v}
    assert set(chat_ops) == {k for k in expected if k[0] == "gen_ai_client_operations_total"}

    async def scrapes():
        pool = service.pool
        return await asyncio.gather(*[c.get("/metrics") for c in pool.spread(WORKERS)])

    # every worker's scrape is the same sum over all workers
    answers = service.run(scrapes())
    assert len({_pid(a) for a in answers}) == WORKERS
    for a in answers:
        totals = _scrape_totals(a.text)
        assert {k: totals.get(k) for k in expected} == expected, _pid(a)
