"""Other Cython code can cimport the rate-limit kernels from prodfast/_core.pxd.

The probe module in cimport_probe/ is cythonized and built in a temporary directory (in a
child process, so the build's own warnings stay out of this run); it decides in ``with nogil``
loops, and its decisions must equal the compiled limiters' own.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import prodfast

pytestmark = pytest.mark.cython_backend

BUILD = textwrap.dedent(
    """
    import os
    import sys
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    src, out, include = sys.argv[1:4]
    quick = [] if os.name == "nt" else ["-O1"]
    # include: the root of prodfast/_core.pxd and of the header it declares
    ext = Extension("probe", [src], include_dirs=[include], extra_compile_args=quick)
    exts = cythonize([ext], include_path=[include], quiet=True, build_dir=out)
    dist = Distribution({"ext_modules": exts, "script_args": ["build_ext"]})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = out
    cmd.build_temp = out + "/tmp"
    cmd.ensure_finalized()
    cmd.run()
    """
)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    out = tmp_path_factory.mktemp("cimport_probe")
    src = out / "probe.pyx"
    shutil.copy(Path(__file__).parent / "cimport_probe" / "probe.pyx", src)
    include = Path(prodfast.__file__).resolve().parent.parent  # holds prodfast/_core.pxd
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(src), str(out), str(include)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    built = next(out.glob("probe*.so"), None) or next(out.glob("probe*.pyd"))
    spec = importlib.util.spec_from_file_location("probe", built)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trace(n=5000, seed=11):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(0.05, n)), rng.uniform(0.0, 3.0, n)


def test_cimported_bucket_kernel_decides_like_the_class(probe):
    from prodfast._core import TokenBucket

    times, costs = trace()
    got, tokens, wait = probe.bucket(10.0, 20.0, times.tobytes(), costs.tobytes())
    expect = TokenBucket(10.0, 20.0).simulate(times, costs)
    assert got == expect.astype(int).tolist()
    assert 0 < sum(got) < len(got)
    assert 0.0 <= tokens <= 20.0
    assert wait == (0.0 if tokens >= 1.0 else pytest.approx((1.0 - tokens) / 10.0))


def test_cimported_leaky_and_window_kernels(probe):
    from prodfast._core import LeakyBucket, SlidingWindowLimiter

    times, costs = trace(seed=12)
    assert probe.leaky(8.0, 15.0, times.tobytes(), costs.tobytes()) == (
        LeakyBucket(8.0, 15.0).simulate(times, costs).astype(int).tolist()
    )
    got, left = probe.window(30, 2.0, times.tobytes())
    assert got == SlidingWindowLimiter(30, 2.0).simulate(times).astype(int).tolist()
    end = times[-1]
    granted = times[np.array(got, dtype=bool)]
    assert left == int(np.sum(end - granted < 2.0))


def test_cimported_clock_is_time_monotonic(probe):
    # The same clock and the same conversion: never outside the two readings around it.
    for _ in range(2000):
        t0 = time.monotonic()
        t = probe.now()
        t1 = time.monotonic()
        assert t0 <= t <= t1


def test_clock_floor_is_a_lower_bound_within_a_tick(probe):
    for _ in range(200):
        floor = probe.floor()
        assert floor <= time.monotonic()
        if sys.platform.startswith("linux"):  # the coarse clock (-inf in a portable build)
            assert floor == -math.inf or floor > time.monotonic() - 0.05


def _as_time_monotonic(ns: int) -> float:
    # CPython's _PyTime_AsSecondsDouble
    return float(ns // 10**9) if ns % 10**9 == 0 else float(ns) / 1e9


def test_nanoseconds_to_seconds_as_cpython_converts(probe):
    rng = np.random.default_rng(3)
    uptimes = rng.integers(0, 10**18, 20000, dtype=np.int64).tolist()
    whole = [s * 10**9 for s in rng.integers(0, 10**9, 200).tolist()]
    edges = [0, 1, 999_999_999, 10**9, 2**53, 2**53 + 1, 2**63 - 1]
    for ns in uptimes + whole + edges:
        assert probe.seconds(ns) == _as_time_monotonic(ns), ns
    # the same clock as time.monotonic(): a reading falls between two of its readings around it
    before = time.monotonic()
    now = probe.seconds(time.monotonic_ns())
    after = time.monotonic()
    assert before - 1e-6 <= now <= after + 1e-6
