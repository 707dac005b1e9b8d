"""A pytest plugin that runs cachetools' own test suite against prodfast.compat.cachetools.

Loaded with ``-p`` before the suite is collected, it makes ``import cachetools`` (and
``cachetools.keys`` / ``cachetools.func``) resolve to prodfast's replacement, on whichever
backend ``PRODFAST_PURE_PYTHON`` selects, and refuses to run against the real package.
"""

import sys

import prodfast
import prodfast.compat.cachetools as replacement

sys.modules["cachetools"] = replacement
sys.modules["cachetools.keys"] = replacement.keys
sys.modules["cachetools.func"] = replacement.func


def pytest_report_header(config):
    return f"cachetools suite against prodfast.compat.cachetools ({prodfast.BACKEND} backend)"


def pytest_collection_finish(session):
    import cachetools

    if cachetools is not replacement or cachetools.LRUCache is not prodfast.LRUCache:
        raise RuntimeError("the cachetools suite would not run against prodfast")
