"""The former home of the monitoring classes, kept for code that imports it.

Everything here now lives in :mod:`prodfast.monitor`; this module re-exports its public names.
"""

from .monitor import (
    BaseCallback,
    CallbackManager,
    ErrorTrackingCallback,
    RateLimitingCallback,
    Run,
    TimingCallback,
    TokenUsageCallback,
    extract_usage,
)

__all__ = [
    "BaseCallback",
    "CallbackManager",
    "Run",
    "TimingCallback",
    "ErrorTrackingCallback",
    "RateLimitingCallback",
    "TokenUsageCallback",
    "extract_usage",
]
