"""Packaging: the sdist and the wheel that `python -m build` makes, and the wheel at work.

The sdist must carry the Cython sources but no generated C; the wheel, built from that sdist
with the extension required, must contain the compiled core. The wheel is then tested as
cibuildwheel tests each wheel it builds, following [tool.cibuildwheel] in pyproject.toml: installed
into a fresh virtual environment with its test extras and requirements, the configured
test-command runs the suite against it from a directory outside the source tree, so nothing can
be imported from src/ by accident. cibuildwheel itself lists the wheels it would build for
Linux, macOS and Windows (building them needs Docker, a Mac and a Windows machine).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent

# Deselected by --no-cython with the rest of the compiled-core tests: the wheel's point is the
# compiled module, and the pure-Python leg of the suite need not build it twice.
pytestmark = [pytest.mark.cython_backend, pytest.mark.timeout(400)]

# The wheel's tests are cibuildwheel's: the [tool.cibuildwheel] table of pyproject.toml says what
# to install (test-extras, test-requires), what to copy (test-sources) and what to run
# (test-command), and test_installed_wheel_passes_the_suite does exactly that, so the command CI
# runs on every wheel is the one this test runs here.
with open(ROOT / "pyproject.toml", "rb") as _f:
    CIBW = tomllib.load(_f)["tool"]["cibuildwheel"]

# What cibuildwheel builds for each platform (CPython 3.10 to 3.14, 64-bit; the free-threaded
# builds are not declared compatible, see the README).
PYTHONS = ("cp310", "cp311", "cp312", "cp313", "cp314")
EXPECTED_IDENTIFIERS = {
    "linux": [f"{py}-{tag}" for tag in ("manylinux_x86_64", "musllinux_x86_64") for py in PYTHONS],
    "macos": [f"{py}-{tag}" for py in PYTHONS for tag in ("macosx_x86_64", "macosx_arm64")],
    "windows": [f"{py}-win_amd64" for py in PYTHONS],
}


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
        # -O1: this wheel is tested, never timed, and compiles in a third of the time
        env=_env(PRODFAST_REQUIRE_EXTENSION="1", PRODFAST_QUICK_BUILD="1"),
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
    # the examples the README points to and tests/test_example*.py, test_service.py run
    shipped = [
        path.relative_to(ROOT).as_posix()
        for folder in ("examples", "scripts")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".sh") and "__pycache__" not in path.parts
    ]
    assert "examples/service/app.py" in shipped and "scripts/ensure-redis.sh" in shipped
    assert [n for n in shipped if n not in names] == []
    # every file the README links to (the benchmark outputs and charts under docs/)
    linked = set(re.findall(r"\((docs/[^)#\s]+)\)", (ROOT / "README.md").read_text("utf-8")))
    assert linked and sorted(linked - set(names)) == []
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
    """cibuildwheel's test step, as configured, against the wheel in a fresh virtualenv."""
    _, wheel = dists
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=_env())
    python = _venv_python(venv)
    extras = ",".join(CIBW.get("test-extras", []))
    _run(
        python, "-m", "pip", "install", "--quiet", f"{wheel}[{extras}]" if extras else wheel,
        *CIBW["test-requires"], cwd=tmp_path, env=_env(),
    )  # fmt: skip

    # cibuildwheel copies test-sources into an empty directory and runs the command there, so
    # nothing can be imported from src/ by accident
    work = tmp_path / "work"
    work.mkdir()
    skip = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.so", "*.c")
    for source in CIBW["test-sources"]:
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, work / source, ignore=skip)
        else:
            shutil.copy(ROOT / source, work / source)
    env = _env(**CIBW["environment"])

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

    command = shlex.split(CIBW["test-command"])
    assert command[:3] == ["python", "-m", "pytest"] and "{" not in CIBW["test-command"]
    out = _run(python, *command[1:], cwd=work, env=env, timeout=200)
    assert " passed" in out and " failed" not in out and " error" not in out


@pytest.mark.parametrize("platform", sorted(EXPECTED_IDENTIFIERS))
def test_cibuildwheel_builds_the_promised_wheels(platform):
    """cibuildwheel, reading pyproject.toml, would build exactly these wheels on each platform
    (it lists them without a Docker engine, a Mac or a Windows machine)."""
    pytest.importorskip("cibuildwheel", reason="the test extra installs cibuildwheel")
    out = _run(
        sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform,
        ROOT, cwd=ROOT, env=_env(),
    )  # fmt: skip
    assert out.split() == EXPECTED_IDENTIFIERS[platform]
