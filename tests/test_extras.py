"""An optional integration imported without its extra says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK_AND_IMPORT = """
import sys
sys.modules[{dependency!r}] = None   # makes `import {dependency}` raise ImportError
try:
    import {module}
except ImportError as exc:
    print(exc)
else:
    print("imported")
"""


@pytest.mark.parametrize(
    ("module", "dependency", "hint"),
    [
        ("prodfast.redis", "redis", "pip install 'prodfast[redis]'"),
        ("prodfast.integrations.prometheus", "prometheus_client", "pip install 'prodfast[prometheus]'"),
        ("prodfast.integrations.langchain", "langchain_core", "pip install 'prodfast[langchain]'"),
    ],
)
def test_missing_extra_names_the_install_command(module, dependency, hint):
    code = BLOCK_AND_IMPORT.format(module=module, dependency=dependency)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert hint in out, out
