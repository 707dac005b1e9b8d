"""Which backend is active, and that the switch between them tells the truth."""

import os
import subprocess
import sys

import pytest

import prodfast
from prodfast._backend import env_flag


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("TRUE", True), (" yes ", True), ("on", True),
     ("", False), ("0", False), ("false", False), ("no", False), ("off", False), ("2", False)],
)
def test_env_flag_truth_table(monkeypatch, value, expected):
    monkeypatch.setenv("PRODFAST_TEST_FLAG", value)
    assert env_flag("PRODFAST_TEST_FLAG") is expected


def test_env_flag_unset(monkeypatch):
    monkeypatch.delenv("PRODFAST_TEST_FLAG", raising=False)
    assert env_flag("PRODFAST_TEST_FLAG") is False


def test_backend_names_the_module_in_use():
    expected = "cython" if prodfast.impl.__name__ == "prodfast._core" else "python"
    assert prodfast.BACKEND == expected
    assert (prodfast.BACKEND_ERROR is None) == (prodfast.BACKEND == "cython")


@pytest.mark.skipif(
    not env_flag("PRODFAST_REQUIRE_EXTENSION") or env_flag("PRODFAST_PURE_PYTHON"),
    reason="only meaningful when the compiled core is required and not switched off",
)
def test_required_extension_is_the_one_in_use():
    assert prodfast.BACKEND == "cython"
    assert prodfast.impl.__file__.endswith((".so", ".pyd"))


def _backend_in_child(**env):
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PRODFAST_")}
    child_env.update(env)
    out = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c",
         "import prodfast; print(prodfast.BACKEND)"],
        env=child_env, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def test_pure_python_switch_in_a_fresh_process():
    assert _backend_in_child(PRODFAST_PURE_PYTHON="1") == "python"


@pytest.mark.cython_backend
def test_compiled_core_is_default_in_a_fresh_process():
    assert _backend_in_child() == "cython"


def test_every_public_name_is_exported():
    # `from prodfast import *` gives exactly __all__, each name the object it stands for: the
    # active backend's class, or the Python layer's own function, class or module of that name
    namespace: dict = {}
    exec("from prodfast import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(set(prodfast.__all__)) and len(namespace) == len(prodfast.__all__)
    impl = prodfast.impl
    for name, value in namespace.items():
        if name in ("BACKEND", "BACKEND_ERROR"):
            continue
        if hasattr(impl, name):
            assert value is getattr(impl, name), name
        elif name == "keys":
            assert value is sys.modules["prodfast.keys"]
        else:
            assert value.__name__ == name and value.__module__.startswith("prodfast."), name
