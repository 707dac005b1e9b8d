"""examples/llm_client.py runs, on each backend, and its report adds up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "llm_client.py"


def run_example(core, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODFAST_")}
    if core.__name__ == "prodfast._core_py":
        env["PRODFAST_PURE_PYTHON"] = "1"
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


def test_example_metrics_add_up(core):
    data = json.loads(run_example(core, "--json", "--requests", "200", "--streams", "20"))
    m, outcome = data["metrics"], data["outcome"]
    # every request that reached the model went through the manager, and nothing else did
    assert m["calls"] == data["model_requests"]
    assert data["cache"]["hits"] > 0
    assert m["calls"] < 200 + 20
    assert m["errors"] == sum(m["errors_by_type"].values())
    assert set(m["errors_by_type"]) <= {"TimeoutError", "ServerError"}
    assert m["error_rate"] == pytest.approx(m["errors"] / m["calls"])
    assert m["reliability"] == pytest.approx(1.0 - m["error_rate"])
    successes = m["calls"] - m["errors"]
    assert m["latency"]["count"] == successes
    assert m["tokens"]["calls"] == successes
    assert m["ttft"]["count"] == outcome["streamed_ok"]
    assert outcome["streamed_ok"] + outcome["streamed_failed"] == 20
    lat = m["latency"]
    assert 0.0 < lat["min"] <= lat["p50"] <= lat["max"]
    assert m["tokens"]["total_tokens"] == m["tokens"]["prompt_tokens"] + m["tokens"]["completion_tokens"]
    assert m["rate_limit"]["allowed"] == m["calls"]


def test_example_report_and_prometheus_output(core):
    text = run_example(core, "--prometheus", "--requests", "60", "--streams", "5")
    backend = "python" if core.__name__ == "prodfast._core_py" else "cython"
    assert f"prodfast backend: {backend}" in text
    report, exposition = text.split("# HELP", 1)
    assert "latency" in report and "ttft" in report and "error rate" in report
    families = {f.name: f for f in text_string_to_metric_families("# HELP" + exposition)}
    duration = families["gen_ai_client_operation_duration_seconds"]
    assert duration.type == "histogram"
    assert all(s.labels["gen_ai_request_model"] == "fake-gpt" for s in duration.samples)
    assert all(s.labels["gen_ai_provider_name"] == "fake" for s in duration.samples)
    ok = [s for s in duration.samples if "error_type" not in s.labels]
    # completions report the model that answered; the streams do not
    assert {s.labels.get("gen_ai_response_model") for s in ok} == {"fake-gpt-0613", None}
    quantiles = families["gen_ai_client_operation_duration_seconds_quantile"]
    assert {s.labels["quantile"] for s in quantiles.samples} == {"0.5", "0.95", "0.99"}
