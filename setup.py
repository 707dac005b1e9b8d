"""Build the compiled core, prodfast._core, from src/prodfast/_core.pyx.

On a user's machine a failed compile leaves a working pure-Python install (with a warning at
import); with PRODFAST_REQUIRE_EXTENSION=1 (CI, `make test`) it fails the build instead.
PRODFAST_PURE_PYTHON=1 skips the extension altogether. PRODFAST_PORTABLE_CLOCK=1 compiles the
clock every platform has instead of Linux's coarse clock (src/prodfast/_platform.h), so that the
path macOS and Windows take is built and tested on Linux too.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_TRUE = frozenset({"1", "true", "yes", "on"})


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


strict = env_flag("PRODFAST_REQUIRE_EXTENSION")
pure = env_flag("PRODFAST_PURE_PYTHON") or sys.implementation.name != "cpython"
trace = env_flag("PRODFAST_CYTHON_TRACE")
portable_clock = env_flag("PRODFAST_PORTABLE_CLOCK")


class BuildExt(build_ext):
    """Optimise with the flags of the compiler in use (MSVC takes none of gcc's and clang's)."""

    def build_extensions(self):
        if self.compiler.compiler_type != "msvc":
            for ext in self.extensions:
                ext.extra_compile_args = ["-O3", "-ffp-contract=off", *ext.extra_compile_args]
        super().build_extensions()


ext_modules = []
if not pure:
    from Cython.Build import cythonize

    macros = [("CYTHON_TRACE_NOGIL", "1")] if trace else []
    if portable_clock:
        macros.append(("PRODFAST_PORTABLE_CLOCK", "1"))
    ext_modules = cythonize(
        [
            Extension(
                "prodfast._core",
                ["src/prodfast/_core.pyx"],
                optional=not strict,
                include_dirs=["src"],  # for "prodfast/_platform.h"
                define_macros=macros,
            )
        ],
        compiler_directives={"language_level": 3, "embedsignature": True, "linetrace": trace},
        annotate=env_flag("PRODFAST_CYTHON_ANNOTATE"),
    )

print(
    f"*** prodfast: {'pure-Python' if pure else 'Cython'} build, "
    f"extension {'required' if strict else 'optional'}"
    f"{', portable clock' if portable_clock and not pure else ''} ***",
    file=sys.stderr,
)
setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
