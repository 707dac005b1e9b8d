"""prodfast: production primitives for LLM and API services.

Every class below comes from the compiled Cython core when it is available and from the
pure-Python fallback otherwise; ``prodfast.BACKEND`` says which ("cython" or "python").
The decorators, limiter groups and callbacks are Python layers over the active backend.
"""

from typing import TYPE_CHECKING

from ._backend import BACKEND, BACKEND_ERROR

# Type checkers see the compiled core's typed contract, _core.pyi (which stubtest holds to the
# compiled module, and tests/test_parity.py the twin to it); at run time impl is the backend in use.
if TYPE_CHECKING:
    from . import _core as impl
else:
    from ._backend import impl

# caches (API.md section 1): cachetools 8's classes
Cache = impl.Cache
FIFOCache = impl.FIFOCache
LFUCache = impl.LFUCache
LRUCache = impl.LRUCache
RRCache = impl.RRCache
TTLCache = impl.TTLCache
TLRUCache = impl.TLRUCache

# rate limiters (section 2)
TokenBucket = impl.TokenBucket
LeakyBucket = impl.LeakyBucket
SlidingWindowLimiter = impl.SlidingWindowLimiter
Reservation = impl.Reservation  # made by reserve(); the type, for isinstance and hints

# streaming statistics (section 3)
RunningStats = impl.RunningStats
P2Quantile = impl.P2Quantile
Quantiles = impl.Quantiles
LatencySummary = impl.LatencySummary
QuantileSketch = impl.QuantileSketch

from . import keys  # noqa: E402
from .decorators import CacheInfo, cached, cachedmethod, lru_cache  # noqa: E402
from .limiters import (  # noqa: E402
    AsyncGroupReservation,
    AsyncLimiter,
    AsyncLimiterGroup,
    GroupReservation,
    LimiterGroup,
    ProviderLimit,
    ProviderReport,
    RateLimitError,
    RateLimitHeaderWarning,
    check_limiter,
    limiter_kind,
    parse_rate,
    rate_limit,
)
from .monitor import (  # noqa: E402  (section 4: needs the classes above)
    BaseCallback,
    CallbackManager,
    ErrorTrackingCallback,
    RateLimitingCallback,
    TimingCallback,
    TokenUsageCallback,
)

__all__ = [
    "BACKEND",
    "BACKEND_ERROR",
    "Cache",
    "FIFOCache",
    "LFUCache",
    "LRUCache",
    "RRCache",
    "TTLCache",
    "TLRUCache",
    "CacheInfo",
    "cached",
    "cachedmethod",
    "keys",
    "lru_cache",
    "TokenBucket",
    "LeakyBucket",
    "SlidingWindowLimiter",
    "Reservation",
    "GroupReservation",
    "check_limiter",
    "limiter_kind",
    "RateLimitError",
    "rate_limit",
    "parse_rate",
    "LimiterGroup",
    "AsyncLimiterGroup",
    "AsyncGroupReservation",
    "AsyncLimiter",
    "ProviderReport",
    "ProviderLimit",
    "RateLimitHeaderWarning",
    "RunningStats",
    "P2Quantile",
    "Quantiles",
    "LatencySummary",
    "QuantileSketch",
    "BaseCallback",
    "CallbackManager",
    "TimingCallback",
    "ErrorTrackingCallback",
    "RateLimitingCallback",
    "TokenUsageCallback",
]
