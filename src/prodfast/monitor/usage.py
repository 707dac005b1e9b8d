"""Token usage: the OpenAI, Anthropic and LangChain shapes read into one dict.

The functions live in ``prodfast._monitor_py`` (which the compiled core imports too).
"""

from __future__ import annotations

from .._monitor_py import (  # noqa: F401  (InputOnlyUsage and the private two: for the callbacks)
    InputOnlyUsage,
    _normalize_usage,
    _token_count,
    extract_response_model,
    extract_usage,
)

__all__ = ["extract_usage", "extract_response_model"]
