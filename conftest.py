"""Shared by tests/ and bench/: the backend fixture and a fake clock.

Every behaviour test takes ``core`` and so runs once against the compiled core ([cy]) and
once against the pure-Python twin ([py]). A missing extension makes the [cy] cases error,
never skip; ``--no-cython`` deselects them (the pure-Python leg of ``make test``).
"""

from __future__ import annotations

import argparse
import importlib

import pytest

CYTHON_BACKEND = pytest.mark.cython_backend
PYTHON_BACKEND = pytest.mark.python_backend


def pytest_addoption(parser):
    parser.addoption(
        "--cython",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the [cy] cases against the compiled core (--no-cython deselects them)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "cython_backend: runs against prodfast._core")
    # the wheels' test-command (pyproject.toml) leaves these out: no wheel changes the twin
    config.addinivalue_line("markers", "python_backend: runs against prodfast._core_py")


def pytest_report_header(config):
    # Which compiled core the [cy] cases run against (the portable-clock leg puts its own first).
    if not config.getoption("--cython"):
        return None
    try:
        core = importlib.import_module("prodfast._core")
    except ImportError as exc:
        return f"prodfast._core: not importable ({exc})"
    return f"prodfast._core: {core.__file__}"


def pytest_collection_modifyitems(config, items):
    if config.getoption("--cython"):
        return
    dropped = [item for item in items if item.get_closest_marker("cython_backend")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("cython_backend")]


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("prodfast._core", id="cy", marks=CYTHON_BACKEND),
        pytest.param("prodfast._core_py", id="py", marks=PYTHON_BACKEND),
    ],
)
def core(request):
    """The module of one backend: prodfast._core or prodfast._core_py."""
    return importlib.import_module(request.param)


class FakeClock:
    """A clock that moves only when told: ``clock()`` reads it, ``clock.tick(dt)`` advances it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def tick(self, dt: float) -> float:
        self.now += dt
        return self.now

    def set(self, t: float) -> None:
        self.now = t


@pytest.fixture
def clock():
    return FakeClock()
