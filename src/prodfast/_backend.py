"""Choose the implementation once, at import, and record what actually happened.

This module is the only reader of PRODFAST_PURE_PYTHON and PRODFAST_REQUIRE_EXTENSION.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import ModuleType

_TRUE = frozenset({"1", "true", "yes", "on"})


def env_flag(name: str) -> bool:
    """True when the environment variable is one of 1/true/yes/on (any case, spaces ignored)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def _select() -> tuple[ModuleType, str | None]:
    if env_flag("PRODFAST_PURE_PYTHON"):
        from . import _core_py

        return _core_py, "pure Python requested by PRODFAST_PURE_PYTHON"
    if sys.implementation.name != "cpython":
        from . import _core_py

        return _core_py, f"the compiled core needs CPython, not {sys.implementation.name}"
    try:
        from . import _core
    except ImportError as exc:
        if env_flag("PRODFAST_REQUIRE_EXTENSION"):
            raise ImportError(
                f"prodfast: the compiled core is required (PRODFAST_REQUIRE_EXTENSION=1) "
                f"but could not be imported: {exc}"
            ) from exc
        warnings.warn(
            f"prodfast: compiled core unavailable ({exc}); using the pure-Python fallback",
            RuntimeWarning,
            stacklevel=3,
        )
        from . import _core_py

        return _core_py, repr(exc)
    return _core, None


impl, BACKEND_ERROR = _select()
BACKEND = "cython" if impl.__name__ == "prodfast._core" else "python"
