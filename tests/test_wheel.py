"""Packaging: the sdist and the wheel that `python -m build` makes, and the wheel at work.

The sdist must carry the Cython sources but no generated C; the wheel, built from that sdist
with the extension required, must contain the compiled core. The wheel is then installed
into a fresh virtual environment and a representative part of the suite runs against the
installed package from a directory outside the source tree, so nothing can be imported
from src/ by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Deselected by --no-cython with the rest of the compiled-core tests: the wheel's point is the
# compiled module, and the pure-Python leg of the suite need not build it twice.
pytestmark = [pytest.mark.cython_backend, pytest.mark.timeout(400)]

# The suite run against the installed wheel: the test files of the compiled core's areas
# (caches, limiters, statistics, their seed-compatible wrappers), backend selection, and the
# cimport of the installed _core.pxd, without the pure-Python twin's cases, which the wheel
# does not change (the plugin below deselects those). The integrations (callbacks, Redis) and
# this file's own tests, which need the source tree, are left to the main run.
SAMPLE = (
    "test_backend*.py",
    "test_cache*.py",
    "test_ratelimit*.py",
    "test_limiters*.py",
    "test_stats*.py",
    "test_llmkit*.py",
    "test_cimport*.py",
)
# What those tests import besides prodfast: the test tools, the libraries they compare with,
# and Cython with setuptools to build a module that cimports the installed _core.pxd.
REQUIREMENTS = (
    "pytest",
    "hypothesis",
    "numpy",
    "pytest-asyncio",
    "pytest-timeout",
    "cachetools",
    "aiolimiter",
    "Cython>=3.1,<4",
    "setuptools",
)
SAMPLE_PLUGIN = """
def pytest_collection_modifyitems(config, items):
    def pure(item):
        spec = getattr(item, "callspec", None)
        return spec is not None and spec.params.get("core") == "prodfast._core_py"

    dropped = [item for item in items if pure(item)]
    config.hook.pytest_deselected(items=dropped)
    items[:] = [item for item in items if not pure(item)]
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRODFAST_", "PYTHON"))}
    env.update(extra)
    return env


def _run(*cmd, cwd: Path, env: dict[str, str], timeout: float = 240) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {done.returncode}\n"
            f"--- stdout ---\n{done.stdout[-6000:]}\n--- stderr ---\n{done.stderr[-6000:]}"
        )
    return done.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """Build the sdist, then the wheel from it (the default of `python -m build`)."""
    pytest.importorskip("build", reason="the test extra installs build")
    out = tmp_path_factory.mktemp("dist")
    _run(
        sys.executable,
        "-m",
        "build",
        "--no-isolation",  # this environment already has setuptools and Cython
        "--outdir",
        out,
        ROOT,
        cwd=out,
        env=_env(PRODFAST_REQUIRE_EXTENSION="1"),
        timeout=300,
    )
    (sdist,) = out.glob("prodfast-*.tar.gz")
    (wheel,) = out.glob("prodfast-*.whl")
    return sdist, wheel


def test_sdist_has_sources_but_no_generated_c(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
    assert "src/prodfast/_core.pyx" in names
    assert "setup.py" in names and "pyproject.toml" in names and "MANIFEST.in" in names
    assert "src/prodfast/bench/__main__.py" in names
    assert any(n.startswith("tests/test_") for n in names)
    generated = [n for n in names if n.endswith((".c", ".so", ".pyd", ".html"))]
    assert generated == []


def test_wheel_has_the_compiled_core(dists):
    _, wheel = dists
    assert "-cp" in wheel.name and not wheel.name.endswith("-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = zf.read(entry_points).decode()
    compiled = [n for n in names if n.startswith("prodfast/_core.") and n.endswith((".so", ".pyd"))]
    assert len(compiled) == 1
    for required in (
        "prodfast/_core_py.py",
        "prodfast/py.typed",
        "prodfast/bench/__main__.py",
        "prodfast/_core.pxd",  # with the header it declares: for modules that cimport the core
        "prodfast/_platform.h",
    ):
        assert required in names
    assert not [n for n in names if n.endswith(".c")]
    assert "prodfast-bench = prodfast.bench.__main__:main" in scripts


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def test_installed_wheel_passes_the_suite(dists, tmp_path):
    _, wheel = dists
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=_env())
    python = _venv_python(venv)
    _run(python, "-m", "pip", "install", "--quiet", wheel, *REQUIREMENTS, cwd=tmp_path, env=_env())

    # The suite without the source tree: tests, the shared conftest and the pytest settings.
    work = tmp_path / "work"
    skip = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.so", "*.c")
    shutil.copytree(ROOT / "tests", work / "tests", ignore=skip)
    files = sorted(
        {f"tests/{p.name}" for pattern in SAMPLE for p in (work / "tests").glob(pattern)}
    )
    assert "tests/test_backend.py" in files
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / name, work / name)
    env = _env(PRODFAST_REQUIRE_EXTENSION="1")

    probe = _run(
        python,
        "-c",
        "import prodfast, prodfast._core as c; print(prodfast.BACKEND); print(c.__file__)",
        cwd=work,
        env=env,
    ).split()
    assert probe[0] == "cython"
    assert Path(probe[1]).resolve().is_relative_to(venv.resolve())
    assert not Path(probe[1]).resolve().is_relative_to(ROOT)

    (work / "wheel_sample.py").write_text(SAMPLE_PLUGIN)
    out = _run(
        python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "wheel_sample",
        *files,
        cwd=work,
        env=env,
        timeout=200,
    )
    assert " passed" in out and " failed" not in out and " error" not in out
