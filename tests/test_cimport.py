"""Other Cython code can cimport the rate-limit kernels from prodfast/_core.pxd.

The probe module in cimport_probe/ is cythonized and built in a temporary directory (in a
child process, so the build's own warnings stay out of this run); it decides in ``with nogil``
loops, and its decisions must equal the compiled limiters' own.
"""

from __future__ import annotations

import importlib.util
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
    import sys
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    src, out, include = sys.argv[1:4]
    exts = cythonize([Extension("probe", [src], extra_compile_args=["-O1"])], include_path=[include], quiet=True,
                     build_dir=out)
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
    t0 = time.monotonic()
    t = probe.now()
    t1 = time.monotonic()
    assert t0 - 1e-6 <= t <= t1 + 1e-6
