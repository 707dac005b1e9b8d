"""Prometheus under several worker processes: one scrape shows the sum over all workers.

Real worker processes (subprocess, each its own interpreter, as uvicorn/gunicorn workers are)
write into one PROMETHEUS_MULTIPROC_DIR; the scrape reads it through the documented
multiprocess registry. A worker killed with SIGKILL after a flush keeps its counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from prodfast.integrations.prometheus import (
    OPERATION_DURATION,
    TOKEN_USAGE,
    MultiProcessSketchCollector,
    MultiProcessWriter,
    multiprocess_registry,
)
from prodfast.monitor import CallbackManager
from prodfast.monitor.series import DURATION_BUCKETS

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

WORKER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from prometheus_client import Counter
    from prodfast.monitor import CallbackManager
    from prodfast.integrations.prometheus import MultiProcessWriter

    class Clock:
        now = 0.0
        def __call__(self):
            return self.now

    index, calls, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    clock = Clock()
    manager = CallbackManager([], clock=clock, provider="openai")
    writer = MultiProcessWriter(manager, interval=None)
    own = Counter("worker_requests", "prometheus_client's own counter, beside prodfast's")
    rng = np.random.default_rng(index)
    for i, latency in enumerate(rng.lognormal(-1.0, 1.0, calls).tolist()):
        clock.now = 0.0
        try:
            with manager.track("m" + str(i % 2)) as run:
                clock.now = latency
                if i % 10 == 9:
                    raise TimeoutError
                run.set_response({"usage": {"prompt_tokens": i, "completion_tokens": 2 * i}})
        except TimeoutError:
            pass
        own.inc()
    if how == "kill":
        writer.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    # "exit": the writer's last flush runs at interpreter exit
    """
)


def expected(index, calls):
    """What worker ``index`` recorded: {(model, error): [latencies]}, tokens per model."""
    rng = np.random.default_rng(index)
    out: dict = {}
    tokens: dict = {}
    for i, latency in enumerate(rng.lognormal(-1.0, 1.0, calls).tolist()):
        error = "TimeoutError" if i % 10 == 9 else None
        out.setdefault((f"m{i % 2}", error), []).append(latency)
        if error is None:
            inp, outp = tokens.get(f"m{i % 2}", (0, 0))
            tokens[f"m{i % 2}"] = (inp + i, outp + 2 * i)
    return out, tokens


def run_workers(core, path, plan):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODFAST_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    if core.__name__ == "prodfast._core_py":
        env["PRODFAST_PURE_PYTHON"] = "1"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(i), str(calls), how], env=env,
                         stderr=subprocess.PIPE, text=True)
        for i, (calls, how) in enumerate(plan)
    ]
    for p, (_, how) in zip(procs, plan, strict=True):
        _, err = p.communicate(timeout=120)
        if how == "kill":
            assert p.returncode == -signal.SIGKILL, err
        else:
            assert p.returncode == 0, err


def families(registry):
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_one_scrape_sums_every_worker_and_merges_the_sketches(core, tmp_path):
    plan = [(40, "exit"), (30, "kill"), (50, "exit")]
    run_workers(core, tmp_path, plan)
    want: dict = {}
    want_tokens: dict = {}
    for i, (calls, _) in enumerate(plan):
        per_set, tokens = expected(i, calls)
        for key, values in per_set.items():
            want.setdefault(key, []).extend(values)
        for model, (a, b) in tokens.items():
            x, y = want_tokens.get(model, (0, 0))
            want_tokens[model] = (x + a, y + b)

    registry = multiprocess_registry(tmp_path)
    fams = families(registry)
    duration = fams[OPERATION_DURATION]
    assert duration.type == "histogram"
    quantiles = fams[OPERATION_DURATION + "_quantile"]
    for (model, error), values in want.items():
        labels = {"gen_ai_request_model": model, "gen_ai_operation_name": "chat",
                  "gen_ai_provider_name": "openai"}
        if error:
            labels["error_type"] = error

        def pick(family, name, extra=None, labels=labels):
            want_labels = {**labels, **(extra or {})}
            return [s for s in family.samples if s.name == name and s.labels == want_labels]

        (count,) = pick(duration, OPERATION_DURATION + "_count")
        assert count.value == len(values)  # the killed worker's calls included
        (total,) = pick(duration, OPERATION_DURATION + "_sum")
        assert total.value == pytest.approx(sum(values))
        for le in DURATION_BUCKETS:
            (bucket,) = [s for s in pick(duration, OPERATION_DURATION + "_bucket",
                                         {"le": str(le)})]
            assert bucket.value == sum(1 for v in values if v <= le)
        for q in (0.5, 0.95, 0.99):
            (s,) = pick(quantiles, OPERATION_DURATION + "_quantile", {"quantile": str(q)})
            exact = float(np.quantile(np.asarray(values), q, method="lower"))
            assert s.value == pytest.approx(exact, rel=0.0101)
    tokens = fams[TOKEN_USAGE]
    for model, (inp, outp) in want_tokens.items():
        sums = {s.labels["gen_ai_token_type"]: s.value for s in tokens.samples
                if s.name == TOKEN_USAGE + "_sum" and s.labels["gen_ai_request_model"] == model}
        assert sums == {"input": inp, "output": outp}
    # prometheus_client's own multiprocess metrics sit beside prodfast's, in the same scrape
    (own,) = [s for s in fams["worker_requests"].samples if s.name == "worker_requests_total"]
    assert own.value == sum(calls for calls, _ in plan)


def test_writer_in_this_process_and_the_collectors_checks(core, tmp_path):
    m = CallbackManager([], sketch_factory=core.QuantileSketch)
    writer = MultiProcessWriter(m, tmp_path, interval=None, attributes={"service.name": "api"})
    with m.track("x"):
        pass
    writer.flush()
    writer.flush()  # totals, not increments: flushing twice counts nothing twice
    registry = CollectorRegistry()
    MultiProcessSketchCollector(registry, tmp_path, sketch_type=core.QuantileSketch)
    fams = families(registry)
    (p50,) = [s for s in fams[OPERATION_DURATION + "_quantile"].samples
              if s.labels["quantile"] == "0.5"]
    assert p50.labels["service_name"] == "api"
    fams = families(multiprocess_registry(tmp_path))
    (count,) = [s for s in fams[OPERATION_DURATION].samples if s.name.endswith("_count")]
    assert count.value == 1
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.flush()
    # a corrupt sketch file is left out of the scrape (and logged), the others still count
    (tmp_path / "prodfast_sketches_999999.bin").write_bytes(b"garbage")
    fams = families(multiprocess_registry(tmp_path))
    assert len(fams[OPERATION_DURATION + "_quantile"].samples) == 3

    with pytest.raises(TypeError, match="manager"):
        MultiProcessWriter(object(), tmp_path)
    with pytest.raises(ValueError, match="interval"):
        MultiProcessWriter(m, tmp_path, interval=0)
    with pytest.raises(ValueError, match="directory"):
        MultiProcessWriter(m, tmp_path / "missing")
    with pytest.raises(ValueError, match="per-call"):
        MultiProcessWriter(m, tmp_path, attributes={"error.type": "x"})


def test_a_reused_pid_keeps_the_dead_workers_files(core, tmp_path):
    m = CallbackManager([], sketch_factory=core.QuantileSketch)
    first = MultiProcessWriter(m, tmp_path, interval=None)
    with m.track("x"):
        pass
    first.close()
    # a second writer with the same pid (as a new worker reusing a dead one's pid would be)
    second = MultiProcessWriter(CallbackManager([], sketch_factory=core.QuantileSketch),
                                tmp_path, interval=None)
    second.close()
    fams = families(multiprocess_registry(tmp_path))
    (count,) = [s for s in fams[OPERATION_DURATION].samples if s.name.endswith("_count")]
    assert count.value == 1


def test_background_flush(core, tmp_path):
    m = CallbackManager([], sketch_factory=core.QuantileSketch)
    writer = MultiProcessWriter(m, tmp_path, interval=0.01)
    try:
        with m.track("x"):
            pass
        for _ in range(500):
            if list(tmp_path.glob("prodfast_sketches_*.bin")):
                break
            __import__("time").sleep(0.01)
        fams = families(multiprocess_registry(tmp_path))
        assert len(fams[OPERATION_DURATION + "_quantile"].samples) == 3
    finally:
        writer.close()
