"""prodfast: production primitives for LLM and API services.

Every class below comes from the compiled Cython core when it is available and from the
pure-Python fallback otherwise; ``prodfast.BACKEND`` says which ("cython" or "python").
"""

from ._backend import BACKEND, BACKEND_ERROR, impl

__all__ = ["BACKEND", "BACKEND_ERROR"]

# streaming statistics
RunningStats = impl.RunningStats
P2Quantile = impl.P2Quantile
Quantiles = impl.Quantiles
LatencySummary = impl.LatencySummary
__all__ += ["RunningStats", "P2Quantile", "Quantiles", "LatencySummary"]

# callbacks and monitoring for LLM calls (a pure-Python layer over the active backend)
from .callbacks import (  # noqa: E402
    BaseCallback,
    CallbackManager,
    ErrorTrackingCallback,
    RateLimitingCallback,
    TimingCallback,
    TokenUsageCallback,
)

__all__ += [
    "BaseCallback",
    "CallbackManager",
    "TimingCallback",
    "ErrorTrackingCallback",
    "RateLimitingCallback",
    "TokenUsageCallback",
]
