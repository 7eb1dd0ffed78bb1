"""Operations: API keys, limits, metrics, the audit log, shadow policies, and the
runtime that hot reload swaps.
"""

from guard.ops.accounting import Operations, RequestRecord
from guard.ops.keys import ApiKey, KeyRing, RateLimit, hash_key, load_keys, new_key
from guard.ops.limits import ConcurrencyLimit, KeyConcurrency, Lease, RateLimiter
from guard.ops.metrics import Metrics
from guard.ops.reload import Reloader
from guard.ops.runtime import Runtime, Runtimes, build_runtime

__all__ = [
    "ApiKey",
    "ConcurrencyLimit",
    "KeyConcurrency",
    "KeyRing",
    "Lease",
    "Metrics",
    "Operations",
    "RateLimit",
    "RateLimiter",
    "Reloader",
    "RequestRecord",
    "Runtime",
    "Runtimes",
    "build_runtime",
    "hash_key",
    "load_keys",
    "new_key",
]
