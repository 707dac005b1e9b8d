"""Build the compiled core, prodfast._core, from src/prodfast/_core.pyx.

On a user's machine a failed compile leaves a working pure-Python install (with a warning at
import); with PRODFAST_REQUIRE_EXTENSION=1 (CI, `make test`) it fails the build instead.
PRODFAST_PURE_PYTHON=1 skips the extension altogether.
"""

import os
import sys

from setuptools import Extension, setup

_TRUE = frozenset({"1", "true", "yes", "on"})


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


strict = env_flag("PRODFAST_REQUIRE_EXTENSION")
pure = env_flag("PRODFAST_PURE_PYTHON") or sys.implementation.name != "cpython"
trace = env_flag("PRODFAST_CYTHON_TRACE")

ext_modules = []
if not pure:
    from Cython.Build import cythonize

    macros = [("CYTHON_TRACE_NOGIL", "1")] if trace else []
    compile_args = [] if os.name == "nt" else ["-O3", "-ffp-contract=off"]
    ext_modules = cythonize(
        [
            Extension(
                "prodfast._core",
                ["src/prodfast/_core.pyx"],
                optional=not strict,
                define_macros=macros,
                extra_compile_args=compile_args,
            )
        ],
        compiler_directives={"language_level": 3, "embedsignature": True, "linetrace": trace},
        annotate=env_flag("PRODFAST_CYTHON_ANNOTATE"),
    )

print(
    f"*** prodfast: {'pure-Python' if pure else 'Cython'} build, "
    f"extension {'required' if strict else 'optional'} ***",
    file=sys.stderr,
)
setup(ext_modules=ext_modules)
