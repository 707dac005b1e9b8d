"""Key functions for the memoizing decorators, with cachetools 8's names and keys.

A key is the tuple of the positional arguments; keyword arguments follow a separator, sorted by
name, so the order they were passed in never changes the key. The typed variants append the
type of every argument, so ``f(1)`` and ``f(1.0)`` get different keys. The method variants leave
out the first positional argument (``self``). Keys are plain tuples laid out as cachetools' keys
(without keyword arguments they are the same tuples; with them, only the separator differs).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["hashkey", "methodkey", "typedkey", "typedmethodkey"]


class _KeywordMark(tuple):
    """The type whose name separates positional from keyword arguments in a key.

    A class (not an instance) so it is unique, pickles by reference and never equals an
    argument by accident.
    """

    __slots__ = ()


_kwmark = (_KeywordMark,)


def hashkey(*args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """The cache key of a call with these (hashable) arguments."""
    if kwargs:
        return args + _kwmark + tuple(sorted(kwargs.items()))
    return args


def methodkey(self: Any, /, *args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """The cache key of a method call: ``hashkey`` of the arguments after ``self``."""
    if kwargs:
        return args + _kwmark + tuple(sorted(kwargs.items()))
    return args


def typedkey(*args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """``hashkey`` plus the type of every argument: ``f(1)`` and ``f(1.0)`` differ."""
    if kwargs:
        items = tuple(sorted(kwargs.items()))
        return args + _kwmark + items + tuple([type(v) for _, v in items]) + tuple(map(type, args))
    return args + tuple(map(type, args))


def typedmethodkey(self: Any, /, *args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """``typedkey`` of the arguments after ``self``."""
    if kwargs:
        items = tuple(sorted(kwargs.items()))
        return args + _kwmark + items + tuple([type(v) for _, v in items]) + tuple(map(type, args))
    return args + tuple(map(type, args))
