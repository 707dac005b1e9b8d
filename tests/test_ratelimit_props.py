"""Hypothesis properties of the rate limiters on both backends.

- conformance: over any trace, what is granted between two requests never exceeds
  capacity + rate x elapsed (token and leaky bucket); the sliding window never holds more than
  max_calls calls in any window; clocks may go backwards;
- a denied request changes nothing;
- simulate() equals replaying try_acquire on a fresh limiter;
- the compiled and the pure-Python twins decide identically;
- LimiterGroup: all-or-nothing, and every member conforms.
"""

from __future__ import annotations

import importlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FakeClock
from prodfast.limiters import LimiterGroup

LONG = os.environ.get("PRODFAST_LONG_TESTS") == "1"
SETTINGS = settings(max_examples=400 if LONG else 25, deadline=None)
EPS = 1e-9

steps = st.lists(
    st.tuples(
        st.one_of(
            st.floats(0.0, 2.0),
            st.sampled_from([0.0, 0.0, -0.5, -3.0]),  # bursts at one instant, clock going back
        ),
        st.floats(0.0, 1.0),  # cost as a fraction of capacity
    ),
    min_size=1,
    max_size=30,
)
bucket_config = st.tuples(st.floats(0.1, 50.0), st.floats(1.0, 40.0))
window_config = st.tuples(st.integers(1, 12), st.floats(0.1, 5.0))


def state(lim) -> dict:
    s = lim.stats()
    for k in ("arrival_rate", "throughput", "allowed", "denied"):
        s.pop(k)
    return s


def build(core, kind, config, clock):
    if kind == "window":
        return core.SlidingWindowLimiter(*config, clock=clock)
    cls = core.TokenBucket if kind == "token" else core.LeakyBucket
    return cls(*config, clock=clock)


def cost_of(kind, config, fraction):
    if kind == "window":
        return round(fraction * config[0])
    return fraction * config[1]


def drive(lim, kind, config, trace, clock):
    """Run the trace; check 'denied changes nothing'; return [(effective time, granted cost)]."""
    t = teff = 0.0
    grants = []
    for dt, fraction in trace:
        t += dt
        teff = max(teff, t)
        clock.set(t)
        cost = cost_of(kind, config, fraction)
        before = state(lim)
        counts = lim.stats()
        if lim.try_acquire(cost):
            grants.append((teff, cost))
        else:
            assert state(lim) == before
            after = lim.stats()
            assert after["denied"] == counts["denied"] + 1
            assert after["allowed"] == counts["allowed"]
    return grants


def assert_conforms(kind, config, grants):
    if kind == "window":
        max_calls, window = config
        for i, (ti, _) in enumerate(grants):
            inside = sum(c for tj, c in grants[: i + 1] if ti - tj < window)
            assert inside <= max_calls
        return
    rate, capacity = config
    for i in range(len(grants)):
        total = 0.0
        for j in range(i, len(grants)):
            total += grants[j][1]
            elapsed = grants[j][0] - grants[i][0]
            assert total <= capacity + rate * elapsed + EPS * (1 + total)


@pytest.mark.parametrize("kind", ["token", "leaky", "window"])
def test_conformance_and_denials_change_nothing(core, kind):
    config_strategy = window_config if kind == "window" else bucket_config

    @SETTINGS
    @given(config_strategy, steps)
    def prop(config, trace):
        clock = FakeClock(0.0)
        lim = build(core, kind, config, clock)
        grants = drive(lim, kind, config, trace, clock)
        assert_conforms(kind, config, grants)
        assert lim.stats()["allowed"] == len(grants)

    prop()


@pytest.mark.parametrize("kind", ["token", "leaky", "window"])
def test_simulate_equals_replay(core, kind):
    config_strategy = window_config if kind == "window" else bucket_config

    @SETTINGS
    @given(config_strategy, st.lists(st.tuples(st.floats(0.0, 1.5), st.floats(0.0, 1.0)), max_size=80))
    def prop(config, trace):
        times, costs, t = [], [], 0.0
        for dt, fraction in trace:
            t += dt
            times.append(t)
            costs.append(cost_of(kind, config, fraction))
        live = build(core, kind, config, FakeClock(-5.0))
        got = live.simulate(times, costs).tolist()
        clock = FakeClock(times[0] if times else 0.0)
        fresh = build(core, kind, config, clock)
        expect = []
        for when, cost in zip(times, costs, strict=True):
            clock.set(when)
            expect.append(fresh.try_acquire(cost))
        assert got == expect
        assert live.stats()["allowed"] == 0

    prop()


@pytest.mark.cython_backend
@pytest.mark.parametrize("kind", ["token", "leaky", "window"])
def test_twins_decide_identically(kind):
    cy = importlib.import_module("prodfast._core")
    py = importlib.import_module("prodfast._core_py")
    config_strategy = window_config if kind == "window" else bucket_config

    @SETTINGS
    @given(config_strategy, steps)
    def prop(config, trace):
        c1, c2 = FakeClock(0.0), FakeClock(0.0)
        a, b = build(cy, kind, config, c1), build(py, kind, config, c2)
        t = 0.0
        for dt, fraction in trace:
            t += dt
            c1.set(t)
            c2.set(t)
            cost = cost_of(kind, config, fraction)
            assert a.try_acquire(cost) == b.try_acquire(cost)
            assert a.wait_time(cost) == b.wait_time(cost)
            assert a.stats() == b.stats()

    prop()


@SETTINGS
@given(
    bucket_config,
    bucket_config,
    window_config,
    st.lists(
        st.tuples(
            st.one_of(st.floats(0.0, 1.0), st.just(0.0), st.just(-1.0)),
            st.floats(0.0, 1.0),
            st.floats(0.0, 1.0),
            st.floats(0.0, 1.0),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_group_is_all_or_nothing_and_conforms(core, tb_cfg, lb_cfg, win_cfg, trace):
    clock = FakeClock(0.0)
    kinds = ["token", "leaky", "window"]
    configs = [tb_cfg, lb_cfg, win_cfg]
    members = [build(core, k, c, clock) for k, c in zip(kinds, configs, strict=True)]
    group = LimiterGroup(members)
    grants: list[list] = [[], [], []]
    t = teff = 0.0
    for dt, *fractions in trace:
        t += dt
        teff = max(teff, t)
        clock.set(t)
        costs = [cost_of(k, c, f) for k, c, f in zip(kinds, configs, fractions, strict=True)]
        before = [m.stats() for m in members]
        if group.try_acquire(costs):
            for g, c in zip(grants, costs, strict=True):
                g.append((teff, c))
        else:
            after = [m.stats() for m in members]
            assert after == before  # exactly: state and counters of every member
    for k, c, g in zip(kinds, configs, grants, strict=True):
        assert_conforms(k, c, g)
    s = group.stats()
    assert s["allowed"] == len(grants[0])
    assert s["allowed"] + s["denied"] == len(trace)
    assert [m["allowed"] for m in s["limiters"]] == [s["allowed"]] * 3
