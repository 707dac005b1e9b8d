"""prodfast: production primitives for LLM and API services.

Every class below comes from the compiled Cython core when it is available and from the
pure-Python fallback otherwise; ``prodfast.BACKEND`` says which ("cython" or "python").
"""

from ._backend import BACKEND, BACKEND_ERROR, impl

__all__ = ["BACKEND", "BACKEND_ERROR"]

# --- caches (issue 2) ---
LRUCache = impl.LRUCache
TTLCache = impl.TTLCache
from .decorators import cached, lru_cache  # noqa: E402

__all__ += ["LRUCache", "TTLCache", "cached", "lru_cache"]
# --- end caches ---
# streaming statistics
RunningStats = impl.RunningStats
P2Quantile = impl.P2Quantile
Quantiles = impl.Quantiles
LatencySummary = impl.LatencySummary
__all__ += ["RunningStats", "P2Quantile", "Quantiles", "LatencySummary"]
# -- rate limiters (section 2) --
TokenBucket = impl.TokenBucket
LeakyBucket = impl.LeakyBucket
SlidingWindowLimiter = impl.SlidingWindowLimiter
from .limiters import (  # noqa: E402
    AsyncLimiter,
    LimiterGroup,
    RateLimitError,
    parse_rate,
    rate_limit,
)

__all__ += [
    "TokenBucket",
    "LeakyBucket",
    "SlidingWindowLimiter",
    "RateLimitError",
    "rate_limit",
    "parse_rate",
    "LimiterGroup",
    "AsyncLimiter",
]
