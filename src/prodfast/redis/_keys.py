"""How a cache key becomes a Redis key and back (the listener needs the way back).

A ``str`` key that does not start with NUL is stored as its UTF-8 bytes, so the common case
stays readable in ``redis-cli``.  Every other key is NUL followed by a canonical literal:
``repr`` of str/bytes, ints (``True`` and ``1.0`` are written as ``1``, because Python treats
them as the same dict key), floats, ``None``, tuples and ``functools`` argument lists
(written as ``[...]``, with ``...`` standing for the keyword marker ``functools._make_key``
puts between positional and keyword arguments), and classes reachable by module and qualified
name (typed keys, keyword markers), written as a one-string set ``{'module:qualname'}`` (sets
are never key parts, so this cannot be confused with one).  ``ast.literal_eval`` reads it back;
a class is found again only in a module already imported.
"""

from __future__ import annotations

import ast
import functools
import math
import sys
from typing import Any

__all__ = ["decode_key", "encode_key"]

# the object functools._make_key puts before keyword arguments (the decorators' default keys)
_KWD_MARK: Any = functools._make_key.__defaults__[0][0]  # type: ignore[attr-defined,index]
_HashedSeq: Any = functools._HashedSeq  # type: ignore[attr-defined]
_TAG = "\x00"
_SUPPORTED = "str, bytes, int, float, bool, None, importable classes and tuples of them"


def _class_name(cls: type) -> str:
    module, qualname = cls.__module__, cls.__qualname__
    if "<" in qualname or _find_class(module, qualname) is not cls:
        raise TypeError(f"key must not contain a class that is not importable by name: {cls!r}")
    return f"{module}:{qualname}"


# builtin types that no module attribute names
_UNNAMED = {f"builtins:{t.__qualname__}": t for t in (type(None), type(...), type(NotImplemented))}


def _find_class(module: str, qualname: str) -> object:
    if module == "builtins" and f"builtins:{qualname}" in _UNNAMED:
        return _UNNAMED[f"builtins:{qualname}"]
    obj: object = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def _text(part: Any) -> str:
    if isinstance(part, str):
        return repr(str(part))
    if isinstance(part, bytes):
        return repr(bytes(part))
    if part is None:
        return "None"
    if isinstance(part, int):  # bool and int subclasses (IntEnum) hash and compare as ints
        return repr(int(part))
    if isinstance(part, float):
        if math.isnan(part):
            raise ValueError("key must not contain NaN (it never equals itself)")
        if math.isinf(part):
            return "1e999" if part > 0 else "-1e999"
        if part.is_integer():
            return repr(int(part))
        return repr(float(part))
    if part is _KWD_MARK:
        return "..."
    if isinstance(part, type):
        return "{" + repr(_class_name(part)) + "}"
    if isinstance(part, tuple):
        inner = ",".join(_text(p) for p in part)
        return f"({inner},)" if len(part) == 1 else f"({inner})"
    if isinstance(part, _HashedSeq):
        return "[" + ",".join(_text(p) for p in part) + "]"
    raise TypeError(f"key must be built from {_SUPPORTED}, got {type(part).__name__}")


def encode_key(key: Any) -> bytes:
    """The bytes that name ``key`` inside a namespace; TypeError/ValueError if it has none."""
    if type(key) is str and not key.startswith(_TAG):
        return key.encode("utf-8", "surrogatepass")
    return (_TAG + _text(key)).encode("utf-8", "surrogatepass")


def _restore(obj: Any) -> Any:
    if obj is Ellipsis:
        return _KWD_MARK
    if isinstance(obj, tuple):
        return tuple(_restore(p) for p in obj)
    if isinstance(obj, list):
        return _HashedSeq(tuple(_restore(p) for p in obj))
    if isinstance(obj, set):
        name = next(iter(obj)) if len(obj) == 1 else None
        if not isinstance(name, str):
            raise ValueError(f"not a class name: {obj!r}")
        module, _, qualname = name.partition(":")
        cls = _find_class(module, qualname)
        if not isinstance(cls, type):
            raise ValueError(f"class {name!r} is not imported")
        return cls
    return obj


def decode_key(raw: bytes) -> Any:
    """The key ``encode_key`` turned into ``raw`` (equal to it, with the same hash); ValueError if
    ``raw`` is not such an encoding."""
    try:
        text = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not an encoded cache key: {raw!r}") from exc
    if not text.startswith(_TAG):
        return text
    try:
        return _restore(ast.literal_eval(text[1:]))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not an encoded cache key: {raw!r}") from exc
