"""The pure-Python twin of ``_monitor.pxi``: reading a call's token usage and response model.

Kept outside ``prodfast.monitor`` so that the compiled core can import it while ``prodfast``
itself is being imported; ``prodfast.monitor.usage`` is the public home of these functions.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

_USAGE_KEYS = (
    ("prompt_tokens", "input_tokens"),
    ("completion_tokens", "output_tokens"),
    ("total_tokens", "total_tokens"),
)


def _token_count(value, name):
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _normalize_usage(usage, name="usage"):
    """``usage`` (a mapping or an object) as ``{prompt_tokens, completion_tokens, total_tokens}``.

    Accepts the OpenAI names (``prompt_tokens``, ``completion_tokens``, ``total_tokens``) and
    the Anthropic / LangChain ones (``input_tokens``, ``output_tokens``). Returns None when
    ``usage`` carries none of them; raises TypeError/ValueError naming ``name`` for counts
    that are not non-negative ints.
    """
    if usage is None:
        return None
    if isinstance(usage, Mapping):
        get = usage.get
    else:

        def get(key, _u=usage):
            return getattr(_u, key, None)

    found = False
    out = []
    for primary, alternative in _USAGE_KEYS:
        value = get(primary)
        if value is None and alternative != primary:
            value = get(alternative)
        if value is not None:
            found = True
        out.append(_token_count(value, f"{name}[{primary!r}]"))
    if not found:
        return None
    prompt, completion, total = (0 if v is None else v for v in out)
    if out[2] is None:
        total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def extract_usage(result) -> dict | None:
    """The token usage an LLM result reports, OpenAI style, or None.

    Reads ``result["usage"]`` (a mapping result) or ``result.usage`` (an object), itself a
    mapping or an object with ``prompt_tokens``/``completion_tokens``/``total_tokens``
    (or ``input_tokens``/``output_tokens``). A result that reports nothing, or reports
    counts that are not non-negative ints, gives None: reading usage never breaks a call.
    """
    t = type(result)
    if t is dict:
        usage = result.get("usage")
    elif result is None or t is str or t is bytes:
        return None
    elif isinstance(result, Mapping):
        try:
            usage = result.get("usage")
        except Exception:
            return None
    else:
        try:
            usage = getattr(result, "usage", None)
        except Exception:
            return None
    if usage is None:
        return None
    if type(usage) is dict:
        # the common OpenAI shape, without the general path's per-key work
        p = usage.get("prompt_tokens")
        c = usage.get("completion_tokens")
        total = usage.get("total_tokens")
        if type(p) is int and type(c) is int and p >= 0 and c >= 0:
            if total is None:
                total = p + c
            if type(total) is int and total >= 0:
                return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": total}
    try:
        return _normalize_usage(usage)
    except Exception:
        return None


def extract_response_model(result) -> str | None:
    """The model a result says answered (``result["model"]`` or ``result.model``), or None.

    OpenAI and Anthropic responses (and their stream chunks) carry it as ``model``; LangChain
    messages as ``response_metadata["model_name"]``. Anything that is not a non-empty str
    gives None: reading it never breaks a call.
    """
    t = type(result)
    if t is dict:
        name = result.get("model")
    elif result is None or t is str or t is bytes or t is list:
        return None
    else:
        try:
            if isinstance(result, Mapping):
                name = result.get("model")
            else:
                name = getattr(result, "model", None)
                if name is None:
                    metadata = getattr(result, "response_metadata", None)
                    if isinstance(metadata, Mapping):
                        name = metadata.get("model_name") or metadata.get("model")
        except Exception:
            return None
    return name if type(name) is str and name else None
