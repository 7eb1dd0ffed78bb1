"""Per-key rate limits (in-memory token buckets), per-key concurrent requests, and the
replica's concurrent-request limit.

A requests bucket holds up to a minute's worth of requests and refills evenly; a
request takes one. A tokens bucket is checked before a request (it must not be in
debt) and charged after it, with the usage the upstream reported, since nobody
knows beforehand how many tokens an answer will take. A long answer can leave the
bucket in debt; the key then waits until the refill pays it back.

Buckets and counts live in memory, per process: limits hold per guard replica.
``guard.ops.shared_limits`` keeps the same per-key limits in Redis, for all replicas.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from guard.errors import Overloaded, RateLimited
from guard.ops.keys import ApiKey, RateLimit

Clock = Callable[[], float]


@dataclass
class TokenBucket:
    per_minute: int
    level: float
    updated: float

    @classmethod
    def full(cls, per_minute: int, now: float) -> TokenBucket:
        return cls(per_minute, float(per_minute), now)

    def refill(self, now: float) -> None:
        rate = self.per_minute / 60.0
        self.level = min(float(self.per_minute), self.level + (now - self.updated) * rate)
        self.updated = now

    def seconds_until(self, level: float) -> float:
        """How long until the bucket holds ``level``."""
        missing = level - self.level
        return max(0.0, missing * 60.0 / self.per_minute)


@dataclass
class _KeyBuckets:
    limit: RateLimit
    requests: TokenBucket | None
    tokens: TokenBucket | None


class RateLimiter:
    def __init__(self, clock: Clock = time.monotonic):
        self._clock = clock
        self._buckets: dict[str, _KeyBuckets] = {}

    def admit(self, key: ApiKey) -> None:
        """Take one request from the key's buckets, or raise ``RateLimited``."""
        buckets = self._for(key)
        if buckets is None:
            return
        now = self._clock()
        if buckets.tokens is not None:
            buckets.tokens.refill(now)
            if buckets.tokens.level <= 0:
                wait = buckets.tokens.seconds_until(1.0)
                raise over_limit(key, "tokens", buckets.tokens.per_minute, wait)
        if buckets.requests is not None:
            buckets.requests.refill(now)
            if buckets.requests.level < 1:
                wait = buckets.requests.seconds_until(1.0)
                raise over_limit(key, "requests", buckets.requests.per_minute, wait)
            buckets.requests.level -= 1

    def charge_tokens(self, key: ApiKey, tokens: int) -> None:
        buckets = self._for(key)
        if buckets is None or buckets.tokens is None or tokens <= 0:
            return
        buckets.tokens.refill(self._clock())
        buckets.tokens.level -= tokens

    def _for(self, key: ApiKey) -> _KeyBuckets | None:
        """The key's buckets; made anew (full) when its limits changed in a reload."""
        limit = key.rate_limit
        if limit is None:
            self._buckets.pop(key.name, None)
            return None
        found = self._buckets.get(key.name)
        if found is None or found.limit != limit:
            now = self._clock()
            found = _KeyBuckets(
                limit,
                TokenBucket.full(limit.requests_per_minute, now)
                if limit.requests_per_minute
                else None,
                TokenBucket.full(limit.tokens_per_minute, now) if limit.tokens_per_minute else None,
            )
            self._buckets[key.name] = found
        return found


def over_limit(key: ApiKey, kind: str, limit: int, wait_s: float) -> RateLimited:
    """The 429 for a key over its ``kind`` (``requests`` or ``tokens``) per minute."""
    return RateLimited(
        f"Rate limit reached for API key '{key.name}' on {kind} per minute: "
        f"limit {limit}. Retry in {wait_s:.1f} s.",
        math.ceil(wait_s),
        error_type=kind,
    )


def over_concurrency(key: ApiKey, limit: int) -> RateLimited:
    """The 429 for a key at its limit of concurrent requests."""
    return RateLimited(
        f"Rate limit reached for API key '{key.name}' on concurrent requests: "
        f"limit {limit}. Retry when one of its requests ends.",
        1,
        error_type="concurrent",
    )


@dataclass(frozen=True)
class Lease:
    """A request's place among its key's concurrent requests, in Redis
    (``guard.ops.shared_limits``): the sorted set, and the request's member in it."""

    leases_key: str
    member: str


class KeyConcurrency:
    """Each key's requests in flight, for keys whose rate limit says ``concurrent_requests``."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}

    def enter(self, key: ApiKey) -> bool:
        """Count one more request of ``key``; False when its limit says nothing to count.
        Raises ``RateLimited`` at the limit."""
        limit = key.rate_limit.concurrent_requests if key.rate_limit else None
        if limit is None:
            return False
        count = self.in_flight.get(key.name, 0)
        if count >= limit:
            raise over_concurrency(key, limit)
        self.in_flight[key.name] = count + 1
        return True

    def leave(self, key: ApiKey) -> None:
        count = self.in_flight.get(key.name, 0) - 1
        if count > 0:
            self.in_flight[key.name] = count
        else:
            self.in_flight.pop(key.name, None)


class ConcurrencyLimit:
    """Counts requests in flight; refuses one over the limit instead of queueing it."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> None:
        if self.in_flight >= self.limit:
            raise Overloaded(
                f"guard is serving its limit of {self.limit} concurrent requests; retry shortly.",
                1,
            )
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
