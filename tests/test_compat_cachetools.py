"""prodfast.compat.cachetools: laid out as cachetools 8 is, and the runner of cachetools' suite."""

from __future__ import annotations

import inspect
import os
import pickle
import subprocess
import sys
import textwrap

import cachetools
import cachetools.func
import cachetools.keys
import pytest

import prodfast
import prodfast.compat.cachetools as compat
from conftest import CYTHON_BACKEND

SHIM_DIR = os.path.join(os.path.dirname(__file__), "cachetools_suite")


def test_every_public_name_of_cachetools():
    assert set(cachetools.__all__) <= set(compat.__all__)
    for name in cachetools.__all__:
        assert hasattr(compat, name), name
    assert set(cachetools.func.__all__) == set(compat.func.__all__)
    assert set(cachetools.keys.__all__) == set(compat.keys.__all__)
    for name in ("Cache", "FIFOCache", "LFUCache", "LRUCache", "RRCache", "TTLCache", "TLRUCache"):
        assert getattr(compat, name) is getattr(prodfast, name)
        assert issubclass(getattr(compat, name), compat.Cache)
    assert compat.cached is prodfast.cached and compat.cachedmethod is prodfast.cachedmethod
    assert compat.keys.hashkey is prodfast.keys.hashkey


def _shape(fn):
    # parameters with each default key function compared by name (ours are prodfast.keys')
    return [
        (p.name, p.kind, getattr(p.default, "__name__", p.default))
        for p in inspect.signature(fn).parameters.values()
    ]


def test_decorator_signatures_match_cachetools():
    for name in ("cached", "cachedmethod"):
        assert _shape(getattr(compat, name)) == _shape(getattr(cachetools, name))
    assert compat.cached.__defaults__[0] is compat.keys.hashkey
    assert compat.cachedmethod.__defaults__[0] is compat.keys.methodkey
    for name in cachetools.func.__all__:
        assert _shape(getattr(compat.func, name)) == _shape(getattr(cachetools.func, name)), name


KEY_CALLS = [((), {}), ((1, 2.0, "x"), {}), ((1,), {"b": 2, "a": 1}), (("s",), {"z": None}),
             ((1, True), {"k": 1.0})]


def _plain(key):
    # a key with its keyword separator (a private class in each library) spelled out
    return tuple("<kw>" if isinstance(part, type) and part.__name__ in ("_KeywordMark", "_HashedTuple")
                 else part for part in key)


@pytest.mark.parametrize("name", ["hashkey", "methodkey", "typedkey", "typedmethodkey"])
def test_keys_match_cachetools_keys(name):
    ours, theirs = getattr(compat.keys, name), getattr(cachetools.keys, name)
    for args, kwargs in KEY_CALLS:
        if "method" in name:
            args = ("self", *args)
        assert _plain(ours(*args, **kwargs)) == _plain(theirs(*args, **kwargs))
        if not kwargs:
            assert ours(*args) == theirs(*args) and hash(ours(*args)) == hash(theirs(*args))
    # the order of keyword arguments never changes the key
    assert ours("o", a=1, b=2) == ours("o", b=2, a=1)
    assert pickle.loads(pickle.dumps(ours("o", a=1))) == ours("o", a=1)


def test_func_decorators_over_prodfast_caches():
    f = compat.func.lfu_cache(maxsize=2)(lambda x: x)
    assert isinstance(f.cache, prodfast.LFUCache)
    t = compat.func.ttl_cache(maxsize=None, ttl=5)(lambda x: x)
    assert isinstance(t.cache, prodfast.TTLCache) and t.cache_info().maxsize is None


def _run_shimmed(tmp_path, body, env=None):
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "shim", "-p", "no:cacheprovider", "test_probe.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": SHIM_DIR, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("pure", [pytest.param("", id="cy", marks=CYTHON_BACKEND), pytest.param("1", id="py")])
def test_suite_shim_swaps_cachetools_for_prodfast(tmp_path, pure):
    # what `make cachetools-suite` relies on: inside the run, `import cachetools` (and its
    # submodules) is prodfast's replacement on the backend PRODFAST_PURE_PYTHON selects, and a
    # test that fails there is reported as failed
    result = _run_shimmed(tmp_path, """
        import os
        import cachetools, cachetools.func, cachetools.keys
        from cachetools import LRUCache, cached
        import prodfast, prodfast.compat.cachetools as compat

        def test_swapped():
            assert cachetools is compat and cachetools.func is compat.func
            assert LRUCache is prodfast.LRUCache and cached is prodfast.cached
            assert cachetools.keys.hashkey is prodfast.keys.hashkey

        def test_backend():
            expected = "python" if os.environ.get("PRODFAST_PURE_PYTHON") else "cython"
            assert prodfast.BACKEND == expected

        def test_fails_on_purpose():
            assert cachetools.LRUCache(1).stats()["hits"] == 1  # it is 0
    """, {"PRODFAST_PURE_PYTHON": pure})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 2 passed" in result.stdout, result.stdout
    assert "FAILED test_probe.py::test_fails_on_purpose" in result.stdout
