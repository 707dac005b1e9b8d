"""The Prometheus scrape text, byte for byte: prometheus_client's ``generate_latest`` of a registry
holding a PrometheusCollector, and the collector's own ``exposition()``, for a fixed sequence of
calls (tests/prometheus_scrape.txt holds the text the collector gave before exposition() and the
split sample caches, less the embeddings call's output-token histogram, no longer recorded;
regenerate it only for a deliberate change of the output, and read the diff:
``python tests/test_prometheus_scrape.py > tests/prometheus_scrape.txt``)."""

from __future__ import annotations

import pathlib
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest

GOLDEN = pathlib.Path(__file__).with_name("prometheus_scrape.txt")


def fixed_calls(core, clock):
    """Two managers with a fixed sequence of calls: plain, streamed, failed, with a response
    model, token counts in several buckets, an embeddings response, a label value that needs
    escaping, the overflow set, and constant attributes."""
    from prodfast.callbacks import CallbackManager, TimingCallback, TokenUsageCallback

    def manager(**kwargs):
        return CallbackManager([TimingCallback(summary_factory=core.LatencySummary),
                                TokenUsageCallback()], sketch_factory=core.QuantileSketch,
                               clock=clock, **kwargs)  # fmt: skip

    a = manager(provider="openai", max_attribute_sets=6)
    b = manager(provider="anthropic")

    def call(m, model, seconds, response=None, *, operation=None, chunks=0, error=None):
        try:
            with m.track(model, operation=operation) as run:
                for i in range(chunks):
                    clock.tick(seconds / (chunks + 1))
                    run.new_token(f"t{i}")
                clock.tick(seconds / (chunks + 1))
                if error is not None:
                    raise error
                run.set_response(response)
        except ValueError:
            pass

    for i in range(30):
        call(
            a,
            "gpt-4o",
            0.003 * (i + 1) ** 1.7,
            {
                "model": "gpt-4o-2024-08-06",
                "usage": {"prompt_tokens": 7 * i + 1, "completion_tokens": 3 ** (i % 9)},
            },
        )
    for i in range(5):
        call(
            a,
            "gpt-4o-mini",
            0.2 + i,
            {"usage": {"prompt_tokens": 40, "completion_tokens": 9}},
            chunks=4 + i,
        )
    call(a, "gpt-4o", 1.5, error=ValueError("boom"))
    call(a, "gpt-4o", 0.7, error=ValueError("again"))
    call(a, 'say "hi"\\now\n', 0.01, {"usage": {"prompt_tokens": 2, "completion_tokens": 2}})
    call(
        a,
        "text-embedding-3-small",
        0.02,
        {"usage": {"prompt_tokens": 8, "total_tokens": 8}},
        operation="embeddings",
    )
    for model in ("m1", "m2", "m3"):  # the sixth set, then two calls in the overflow set
        call(a, model, 0.04, {"usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    for i in range(12):
        call(
            b,
            "claude",
            2.0 ** (i - 6),
            {"usage": {"input_tokens": 10**6 * i, "output_tokens": i}},
            operation="chat",
        )
    return a, b


def collector_of(core, clock):
    from prodfast.integrations.prometheus import PrometheusCollector

    a, b = fixed_calls(core, clock)
    collector = PrometheusCollector(a, {"service.name": "api", "deployment": "eu-1"})
    collector.add(b, {"service.name": "batch", "deployment": "eu-1"})
    return collector


def prometheus_client_text(collector):
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry)


def test_the_scrape_is_the_text_it_was(core):
    from conftest import FakeClock

    collector = collector_of(core, FakeClock(100.0))
    expected = GOLDEN.read_bytes()
    assert prometheus_client_text(collector) == expected
    assert prometheus_client_text(collector) == expected  # the second scrape, from the caches


def test_a_collected_family_does_not_change_after_later_calls(core):
    """A consumer holding one collect()'s families sees the numbers of that scrape, whatever
    the later scrapes rebuild or reuse."""
    from conftest import FakeClock

    clock = FakeClock(100.0)
    collector = collector_of(core, clock)
    (manager, _), _ = collector._sources
    first = list(collector.collect())
    frozen = [(f.name, [tuple(s) for s in f.samples]) for f in first]
    copies = [(f.name, [(s.name, dict(s.labels), s.value) for s in f.samples]) for f in first]
    for _ in range(3):
        with manager.track("gpt-4o") as run:
            clock.tick(0.5)
            run.set_response({"usage": {"prompt_tokens": 3, "completion_tokens": 4}})
        later = list(collector.collect())
        assert later != first
    assert [(f.name, [tuple(s) for s in f.samples]) for f in first] == frozen
    assert [(f.name, [(s.name, dict(s.labels), s.value) for s in f.samples])
            for f in first] == copies  # fmt: skip


def test_exposition_is_prometheus_client_text(core):
    """exposition() writes what generate_latest does, at the first scrape and the later ones
    (new calls in some sets, new sets), with its caches and without."""
    from conftest import FakeClock

    clock = FakeClock(100.0)
    collector = collector_of(core, clock)
    assert collector.exposition() == GOLDEN.read_bytes()
    assert collector.exposition() == GOLDEN.read_bytes()
    (a, _), (b, _) = collector._sources
    for step in range(4):
        with a.track("gpt-4o" if step % 2 else f"new-{step}") as run:
            clock.tick(0.3 * step)
            run.set_response({"usage": {"prompt_tokens": step, "completion_tokens": 2}})
        with b.track("claude") as run:
            run.new_token("x")
            clock.tick(2.0)
        text = collector.exposition()
        assert text == prometheus_client_text(collector)
        assert text == collector.exposition()
        assert text == collector_fresh(collector).exposition()
    a.reset()
    assert collector.exposition() == prometheus_client_text(collector)


def collector_fresh(collector):
    from prodfast.integrations.prometheus import PrometheusCollector

    (a, a_labels), (b, b_labels) = collector._sources  # the labels: already Prometheus names
    fresh = PrometheusCollector(a, a_labels)
    fresh.add(b, b_labels)
    return fresh


@pytest.mark.parametrize("small", [0, 3, 10**6])
def test_exposition_of_large_counts(core, monkeypatch, small):
    """From _SMALL_COUNT calls on, a count is written in Go's exponent form, as prometheus_client
    does: the same text either side of the bound."""
    from conftest import FakeClock
    from prodfast.integrations import prometheus

    monkeypatch.setattr(prometheus, "_SMALL_COUNT", small)
    collector = collector_of(core, FakeClock(100.0))
    assert collector.exposition() == GOLDEN.read_bytes()


def test_small_counts_are_written_as_prometheus_client_writes_them():
    from prometheus_client.utils import floatToGoString

    from prodfast.integrations.prometheus import _SMALL_COUNT

    for n in [*range(2000), *range(_SMALL_COUNT - 2000, _SMALL_COUNT)]:
        assert f"{n}.0" == floatToGoString(float(n)), n
    assert floatToGoString(float(_SMALL_COUNT)) != f"{_SMALL_COUNT}.0"


def test_exposition_of_label_values_with_percent_signs(core):
    from conftest import FakeClock
    from prodfast.callbacks import CallbackManager
    from prodfast.integrations.prometheus import PrometheusCollector

    m = CallbackManager([], sketch_factory=core.QuantileSketch, clock=FakeClock(1.0))
    for model in ("100%", "%d %s %%", 'a\\b\n"c"', "\u00e9t\u00e9 \u2603"):
        with m.track(model) as run:
            run.set_response({"usage": {"prompt_tokens": 5, "completion_tokens": 1}})
    collector = PrometheusCollector(m, {"team": '50% "ops"'})
    assert collector.exposition() == prometheus_client_text(collector)
    assert "100%" in collector.exposition().decode()


if __name__ == "__main__":  # write the golden text (see the module's docstring)
    sys.path.insert(0, str(GOLDEN.parent.parent))
    import prodfast._core as compiled
    from conftest import FakeClock

    sys.stdout.write(prometheus_client_text(collector_of(compiled, FakeClock(100.0))).decode())
