"""What a type checker makes of prodfast: tests/typing/usage.py type-checks cleanly under
``mypy --strict`` and pyright, and every line of tests/typing/mistakes.py marked ``# mistake``
(and no other) is an error for both. usage.py also runs, on both backends, with warnings as
errors, and uses every public name of prodfast and of its public subpackages.

The types come from _core.pyi whichever backend is active, so this runs once, in the leg with
the compiled core (the cython_backend marker).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cython_backend, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent
TYPING = Path(__file__).resolve().parent / "typing"
USAGE = TYPING / "usage.py"
MISTAKES = TYPING / "mistakes.py"


# The public modules a user imports from, each with its __all__; usage.py must use every name.
PUBLIC_MODULES = (
    "prodfast",
    "prodfast.keys",
    "prodfast.limiters",
    "prodfast.decorators",
    "prodfast.monitor",
    "prodfast.callbacks",
    "prodfast.redis",
    "prodfast.integrations.prometheus",
    "prodfast.integrations.otel",
    "prodfast.integrations.langchain",
    "prodfast.compat.cachetools",
    "prodfast.compat.cachetools.keys",
    "prodfast.compat.cachetools.func",
)


def _marked(path: Path) -> set[int]:
    lines = path.read_text().splitlines()
    return {n for n, line in enumerate(lines, 1) if line.rstrip().endswith("# mistake")}


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def mypy_errors() -> dict[Path, set[int]]:
    done = _run(
        sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(USAGE), str(MISTAKES)
    )
    # 1: errors found (mistakes.py has them); anything else means mypy did not check
    assert done.returncode == 1 and " error: " in done.stdout, done.stdout + done.stderr
    errors: dict[Path, set[int]] = {USAGE: set(), MISTAKES: set()}
    for line in done.stdout.splitlines():
        found = re.match(r"(.+?):(\d+): error:", line)
        if found:
            errors[(ROOT / found[1]).resolve()].add(int(found[2]))
    return errors


@pytest.fixture(scope="module")
def pyright_errors() -> dict[Path, set[int]]:
    done = _run(
        sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable,
        str(USAGE), str(MISTAKES),
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # 1: errors found, as in mypy's case
    errors: dict[Path, set[int]] = {USAGE: set(), MISTAKES: set()}
    for diagnostic in json.loads(done.stdout)["generalDiagnostics"]:
        if diagnostic["severity"] == "error":
            line = diagnostic["range"]["start"]["line"] + 1
            errors[Path(diagnostic["file"]).resolve()].add(line)
    return errors


UNKNOWN = object()


def _used_objects(path: Path) -> list[object]:
    """The objects of prodfast that ``path`` uses: every name or dotted attribute read outside
    the import statements, resolved through those imports to what it is at run time."""
    tree = ast.parse(path.read_text())
    bound: dict[str, object] = {}  # local name -> the module or object it was imported as
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = importlib.import_module(alias.name)
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = importlib.import_module(top)
                    importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if value is None:
                    value = importlib.import_module(f"{node.module}.{alias.name}")
                bound[alias.asname or alias.name] = value

    def resolve(expr: ast.expr) -> object:
        if isinstance(expr, ast.Name):
            return bound.get(expr.id, UNKNOWN)
        if isinstance(expr, ast.Attribute):
            base = resolve(expr.value)
            return UNKNOWN if base is UNKNOWN else getattr(base, expr.attr, UNKNOWN)
        return UNKNOWN

    used = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
            value = resolve(node)
            if value is not UNKNOWN:
                used.append(value)
    return used


def test_usage_uses_every_public_name():
    used = {id(value) for value in _used_objects(USAGE)}
    unused = []
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        assert module.__all__, name
        unused += [f"{name}.{n}" for n in module.__all__ if id(getattr(module, n)) not in used]
    assert unused == [], "not used in tests/typing/usage.py"


def test_mistakes_file_marks_mistakes():
    assert len(_marked(MISTAKES)) >= 40


def test_usage_passes_mypy_strict(mypy_errors):
    assert mypy_errors[USAGE] == set()


def test_usage_passes_pyright(pyright_errors):
    assert pyright_errors[USAGE] == set()


def test_mypy_flags_exactly_the_mistakes(mypy_errors):
    assert mypy_errors[MISTAKES] == _marked(MISTAKES)


def test_pyright_flags_exactly_the_mistakes(pyright_errors):
    assert pyright_errors[MISTAKES] == _marked(MISTAKES)


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cy", "py"])
def test_usage_runs(pure):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODFAST_")}
    env["PRODFAST_PURE_PYTHON"] = pure
    done = subprocess.run(
        [sys.executable, "-W", "error", str(USAGE)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
