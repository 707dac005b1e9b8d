"""The pure-Python twin of prodfast._core: the same names, behaviour and error messages."""

from ._cache_py import (  # noqa: F401
    Cache,
    FIFOCache,
    LFUCache,
    LRUCache,
    RRCache,
    TLRUCache,
    TTLCache,
)
from ._cached_py import _CachedCall, _CachedMethodCall, _fast_call, _TierFront  # noqa: F401
from ._monitor_py import (  # noqa: F401  (the monitoring hot paths: bases of its classes)
    _ErrorsCore,
    _GateCore,
    _RunCore,
    _TimingCore,
    _TokensCore,
    _track,
)
from ._ratelimit_py import (  # noqa: F401  (Reservation: made by reserve())
    LeakyBucket,
    Reservation,
    SlidingWindowLimiter,
    TokenBucket,
)
from ._sketch_py import QuantileSketch  # noqa: F401
from ._stats_py import LatencySummary, P2Quantile, Quantiles, RunningStats  # noqa: F401
