"""The provider's headers as the truth: the parser, and observe() on limiters and groups.

After ``observe``, a limiter never grants more than the provider says remains until its reset,
and after a 429 holds every caller until the retry time. Wrong or missing headers change
nothing and are warned about once.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import time
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FakeClock
from prodfast import RateLimitError
from prodfast._rl_headers import (
    ProviderLimit,
    RateLimitHeaderWarning,
    _duration,
    _reported,
    parse_rate_limit_headers,
)
from prodfast.limiters import LimiterGroup

LONG = os.environ.get("PRODFAST_LONG_TESTS") == "1"


@pytest.fixture(autouse=True)
def fresh_reports():
    _reported.clear()
    yield
    _reported.clear()


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("120ms", 0.12),
        ("1h2m3.5s", 3723.5),
        ("20", 20.0),
        ("0s", 0.0),
        ("17ms", 0.017),
        ("250us", 0.00025),
        (" 2s ", 2.0),
    ],
)
def test_durations(text, seconds):
    assert _duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "6x", "1m-2s", "-3", "1s2", "inf", "nan", "m5"])
def test_bad_durations(text):
    assert _duration(text) is None


def test_openai_headers():
    report = parse_rate_limit_headers(
        {
            "X-RateLimit-Limit-Requests": "60",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6m0s",
            "content-type": "application/json",
        }
    )
    assert report.limits == {
        "requests": ProviderLimit(60.0, 59.0, 1.0),
        "tokens": ProviderLimit(150000.0, 149984.0, 360.0),
    }
    assert report.retry_after is None and report.problems == ()


def test_anthropic_headers():
    wall = 1_800_000_000.0
    at = dt.datetime.fromtimestamp(wall + 42.5, dt.timezone.utc).isoformat().replace("+00:00", "Z")
    headers = {}
    for res in ("requests", "tokens", "input-tokens", "output-tokens"):
        headers[f"anthropic-ratelimit-{res}-limit"] = "1000"
        headers[f"anthropic-ratelimit-{res}-remaining"] = "900"
        headers[f"anthropic-ratelimit-{res}-reset"] = at
    report = parse_rate_limit_headers(headers, wall_now=wall)
    assert set(report.limits) == {"requests", "tokens", "input-tokens", "output-tokens"}
    for lim in report.limits.values():
        assert (lim.limit, lim.remaining) == (1000.0, 900.0)
        assert lim.reset_after == pytest.approx(42.5)


def test_retry_after_forms():
    assert parse_rate_limit_headers({"retry-after": "7"}, status=429).retry_after == 7.0
    assert parse_rate_limit_headers({"retry-after-ms": "1500"}, status=429).retry_after == 1.5
    both = {"retry-after-ms": "250", "retry-after": "3"}
    assert parse_rate_limit_headers(both, status=429).retry_after == 0.25
    wall = 1_800_000_000.0
    http_date = "Fri, 15 Jan 2027 08:00:10 GMT"
    base = dt.datetime(2027, 1, 15, 8, 0, 0, tzinfo=dt.timezone.utc).timestamp()
    got = parse_rate_limit_headers({"Retry-After": http_date}, status=503, wall_now=base)
    assert got.retry_after == pytest.approx(10.0)
    assert parse_rate_limit_headers({"retry-after": "7"}, status=200).retry_after is None
    assert parse_rate_limit_headers({"retry-after": "7"}).retry_after == 7.0
    assert wall  # the wall clock is only used for dates


def test_wrong_headers_are_problems_not_errors():
    report = parse_rate_limit_headers(
        {
            "x-ratelimit-remaining-requests": "many",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-remaining-tokens": "100",  # no reset: until when?
            "anthropic-ratelimit-input-tokens-remaining": "5",
            "anthropic-ratelimit-input-tokens-reset": "yesterday",
            "retry-after": "soon",
        },
        status=429,
    )
    assert report.retry_after is None
    assert report.limits["requests"].remaining is None
    assert report.limits["tokens"].remaining is None
    assert report.limits["input-tokens"].reset_after is None
    assert len(report.problems) == 5
    with pytest.raises(TypeError, match="headers must be a mapping"):
        parse_rate_limit_headers(42)
    with pytest.raises(TypeError, match="status must be an int"):
        parse_rate_limit_headers({}, status="429")


def openai(remaining, reset="10s", resource="requests"):
    return {
        f"x-ratelimit-limit-{resource}": "100",
        f"x-ratelimit-remaining-{resource}": str(remaining),
        f"x-ratelimit-reset-{resource}": reset,
    }


def test_never_more_than_the_provider_says_remains(core, clock):
    b = core.TokenBucket(100, 100, clock=clock)
    b.observe(openai(3, "10s"))
    assert [b.try_acquire() for _ in range(5)] == [True, True, True, False, False]
    assert b.wait_time(1) == pytest.approx(10.0)
    assert b.stats()["tokens"] == 97.0  # the denials took nothing
    clock.tick(10.0)  # the provider's reset: the bucket is on its own again
    assert b.try_acquire(50) is True


def test_observe_for_each_limiter_kind(core, clock):
    for lim in (
        core.TokenBucket(100, 100, clock=clock),
        core.LeakyBucket(100, 100, clock=clock),
        core.SlidingWindowLimiter(100, 60.0, clock=clock),
    ):
        lim.observe(openai(2, "120ms"))
        assert lim.try_acquire(2) is True
        assert lim.try_acquire(1) is False
        with pytest.raises(RateLimitError):
            lim.reserve(1, timeout=0)
        assert lim.acquire(1, timeout=0.05) is False  # 120 ms > 50 ms: refused at once
        clock.tick(0.12)
        assert lim.try_acquire(1) is True


def test_observe_returns_the_exported_report_types(core, clock):
    # what a user annotates and isinstance-checks with: prodfast.ProviderReport/ProviderLimit
    import prodfast
    import prodfast.limiters

    assert prodfast.ProviderReport is prodfast.limiters.ProviderReport
    assert prodfast.ProviderLimit is prodfast.limiters.ProviderLimit is ProviderLimit
    assert prodfast.RateLimitHeaderWarning is prodfast.limiters.RateLimitHeaderWarning
    assert prodfast.RateLimitHeaderWarning is RateLimitHeaderWarning
    b = core.TokenBucket(100, 100, clock=clock)
    g = LimiterGroup([b, core.SlidingWindowLimiter(10, 1.0, clock=clock)])
    for report in (b.observe(openai(3)), g.observe(openai(3), resources=["requests", None])):
        assert type(report) is prodfast.ProviderReport
        assert report.limits == {"requests": prodfast.ProviderLimit(100.0, 3.0, 10.0)}


def test_a_429_holds_every_caller(core, clock):
    b = core.TokenBucket(100, 100, clock=clock)
    w = core.SlidingWindowLimiter(10, 1.0, clock=clock)
    g = LimiterGroup([b, w], resources=("tokens", "requests"))
    g.observe({"retry-after-ms": "2500"}, status=429)
    assert b.try_acquire(0) is False and w.try_acquire() is False
    assert g.try_acquire(1) is False
    assert g.wait_time(1) == pytest.approx(2.5)
    clock.tick(2.5)
    assert g.try_acquire(1) is True


def test_settle_gives_back_to_the_budget(core, clock):
    b = core.TokenBucket(1000, 1000, clock=clock)
    b.observe(openai(100, "60s", "tokens"), resource="tokens")
    r = b.reserve(80)
    assert b.try_acquire(30) is False
    r.settle(20)
    assert b.try_acquire(80) is True  # 100 - 20 - 80 = 0 left
    assert b.try_acquire(1) is False
    b.reserve(0).settle(5)  # a debt the provider counts too
    b.observe(openai(10, "61s", "tokens"), resource="tokens")  # a later reset: a new budget
    assert b.try_acquire(10) is True and b.try_acquire(1) is False


def test_group_maps_headers_to_members(core, clock):
    rpm = core.SlidingWindowLimiter(100, 60.0, clock=clock)
    tpm = core.TokenBucket(10_000, 10_000, clock=clock)
    g = LimiterGroup([rpm, tpm], resources=("requests", "tokens"))
    headers = {**openai(5, "30s", "requests"), **openai(300, "30s", "tokens")}
    report = g.observe(headers)
    assert set(report.limits) == {"requests", "tokens"}
    assert g.try_acquire([1, 250]) is True
    assert g.try_acquire([1, 100]) is False  # the tokens budget: 50 left
    assert g.try_acquire([4, 50]) is True
    assert g.try_acquire([1, 0]) is False  # the requests budget: 0 left
    g2 = LimiterGroup([core.TokenBucket(1, 1, clock=clock)])
    with pytest.raises(ValueError, match="resources: say which provider limit"):
        g2.observe(headers)
    g2.observe(headers, resources=[None])  # follows nothing: no change, no error
    assert g2.try_acquire(1) is True
    with pytest.raises(ValueError, match="resources must be one of"):
        LimiterGroup([core.TokenBucket(1, 1)], resources=["tokenz"])
    with pytest.raises(ValueError, match="one resource .or None. per limiter"):
        LimiterGroup([core.TokenBucket(1, 1)], resources=["tokens", "requests"])


def test_bad_or_missing_headers_change_nothing_and_warn_once(core, clock):
    b = core.TokenBucket(10, 10, clock=clock)
    with pytest.warns(RateLimitHeaderWarning, match="x-ratelimit-remaining-requests"):
        b.observe({"x-ratelimit-remaining-requests": "lots", "x-ratelimit-reset-requests": "1s"})
    with pytest.warns(RateLimitHeaderWarning, match="no rate-limit headers for 'tokens'"):
        b.observe({"content-type": "text/plain"}, resource="tokens")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b.observe({"x-ratelimit-remaining-requests": "many", "x-ratelimit-reset-requests": "1s"})
        b.observe({}, resource="tokens")  # reported once already
    assert [b.try_acquire() for _ in range(10)] == [True] * 10
    with pytest.raises(ValueError, match="resource must be one of"):
        b.observe({}, resource="token")


def test_observe_is_measured_on_the_limiters_clock(core):
    b = core.TokenBucket(1000, 1000)
    b.observe(openai(1, "50ms"))
    assert b.try_acquire() is True
    start = time.monotonic()
    assert b.acquire(1, timeout=1.0) is True  # waits for the provider's reset
    assert 0.03 < time.monotonic() - start < 0.5


def test_answers_out_of_order_only_tighten_the_active_budget(core, clock):
    b = core.TokenBucket(100, 100, clock=clock)
    b.observe(openai(0, "10s"))  # the newest answer: nothing left in this window
    b.observe(openai(4, "9s"))  # an older answer arriving late (same window): no loosening
    assert b.try_acquire() is False
    b.observe(openai(2, "20s"))  # a window that resets later: the newest truth
    assert [b.try_acquire() for _ in range(3)] == [True, True, False]


observe_ops = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(0.0, 2.0), st.just(0.0)),
        st.tuples(st.just("budget"), st.integers(0, 30), st.floats(0.0, 3.0)),
        st.tuples(st.just("hold"), st.floats(0.0, 2.0), st.just(0.0)),
        st.tuples(st.just("try"), st.integers(0, 10), st.just(0.0)),
        st.tuples(st.just("reserve"), st.integers(0, 10), st.just(0.0)),
        st.tuples(st.just("settle"), st.integers(0, 20), st.just(0.0)),
    ),
    min_size=1,
    max_size=40,
)


def _replay_observed(core, kind, steps):
    clock = FakeClock()
    make = {
        "token": lambda: core.TokenBucket(5, 20, clock=clock),
        "leaky": lambda: core.LeakyBucket(5, 20, clock=clock),
        "window": lambda: core.SlidingWindowLimiter(20, 4.0, clock=clock),
    }[kind]
    lim, open_, out = make(), [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateLimitHeaderWarning)
        for op, a, b in steps:
            if op == "tick":
                clock.tick(a)
            elif op == "budget":
                lim.observe(openai(a, f"{b}s"))
            elif op == "hold":
                lim.observe({"retry-after": str(a)}, status=429)
            elif op == "try":
                out.append(lim.try_acquire(a))
            elif op == "reserve":
                try:
                    open_.append(lim.reserve(a, timeout=0))
                    out.append(True)
                except RateLimitError:
                    out.append(False)
            elif open_:
                open_.pop(0).settle(a)
            out.append(round(lim.wait_time(1), 9))
    return out


@pytest.mark.cython_backend
@settings(max_examples=200 if LONG else 25, deadline=None)
@given(kind=st.sampled_from(["token", "leaky", "window"]), steps=observe_ops)
def test_twins_observe_alike(kind, steps):
    cy = importlib.import_module("prodfast._core")
    py = importlib.import_module("prodfast._core_py")
    assert _replay_observed(cy, kind, steps) == _replay_observed(py, kind, steps)
