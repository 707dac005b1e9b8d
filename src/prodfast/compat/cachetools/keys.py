"""cachetools.keys: ``hashkey``, ``methodkey``, ``typedkey``, ``typedmethodkey`` (prodfast.keys)."""

from ...keys import hashkey, methodkey, typedkey, typedmethodkey

__all__ = ("hashkey", "methodkey", "typedkey", "typedmethodkey")
