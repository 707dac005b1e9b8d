"""cachetools 8, laid out as cachetools is, over prodfast's caches and decorators.

``import prodfast.compat.cachetools as cachetools`` replaces ``import cachetools``: the seven cache
classes (from the active backend), ``CacheInfo``, ``cached``, ``cachedmethod`` and the submodules
``keys`` and ``func``. Every class keeps prodfast's extras (``stats()``, ``on_evict=``, ``peek``,
thread safety).
"""

from ... import _backend
from ...decorators import CacheInfo, cached, cachedmethod
from . import func, keys

Cache = _backend.impl.Cache
FIFOCache = _backend.impl.FIFOCache
LFUCache = _backend.impl.LFUCache
LRUCache = _backend.impl.LRUCache
RRCache = _backend.impl.RRCache
TLRUCache = _backend.impl.TLRUCache
TTLCache = _backend.impl.TTLCache

__all__ = (
    "Cache",
    "CacheInfo",
    "FIFOCache",
    "LFUCache",
    "LRUCache",
    "RRCache",
    "TLRUCache",
    "TTLCache",
    "cached",
    "cachedmethod",
    "func",
    "keys",
)
