"""cachetools 8, laid out as cachetools is, over prodfast's caches and decorators.

``import prodfast.compat.cachetools as cachetools`` replaces ``import cachetools``: the seven cache
classes (from the active backend), ``CacheInfo``, ``cached``, ``cachedmethod`` and the submodules
``keys`` and ``func``. Every class keeps prodfast's extras (``stats()``, ``on_evict=``, ``peek``,
thread safety).
"""

from typing import TYPE_CHECKING

from ...decorators import CacheInfo, cached, cachedmethod
from . import func, keys

# as in prodfast/__init__.py: type checkers see the typed contract, _core.pyi
if TYPE_CHECKING:
    from ... import _core as impl
else:
    from ..._backend import impl

Cache = impl.Cache
FIFOCache = impl.FIFOCache
LFUCache = impl.LFUCache
LRUCache = impl.LRUCache
RRCache = impl.RRCache
TLRUCache = impl.TLRUCache
TTLCache = impl.TTLCache

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
