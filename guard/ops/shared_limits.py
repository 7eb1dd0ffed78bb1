"""Per-key limits kept in Redis, so that every replica enforces them together.

Each check is one Lua script (``EVALSHA``; the client loads it again when Redis lost
it), run atomically by Redis: two replicas admitting the same key at once cannot both
take its last request. Time is Redis's own (``TIME``), so replicas whose clocks
disagree share one bucket all the same.

* requests and tokens per minute: the token buckets of ``guard.ops.limits``, one hash
  per key and limit (``level``, ``updated``). A limit that changes starts a fresh, full
  bucket, as in memory. A bucket expires when it would be full again, so idle keys
  cost nothing.
* concurrent requests: a sorted set per key of leases, one per request in flight,
  scored by when it expires. The replica that holds a lease renews it every third of
  ``LEASE_S``; a replica that dies stops renewing, and its leases stop counting within
  ``LEASE_S``.

All of one key's Redis keys carry the same hash tag (``{prefix:name}``), so the scripts
also work on Redis Cluster.

Redis down or slow is a fault: every call is bounded by the connect and command
timeouts (no retries), counted in ``guard_limit_store_errors_total``, and the settings
decide (``GUARD_REDIS_ON_ERROR``): ``allow`` serves the request unchecked, ``block``
answers 503 with Retry-After. After a request, one call (``settle``) gives back its place
and charges its tokens; if it fails, it is counted and dropped: the request is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from guard.errors import LimitStoreUnavailable, without_credentials
from guard.ops.keys import ApiKey
from guard.ops.limits import Lease, over_concurrency, over_limit
from guard.settings import Settings

log = logging.getLogger("guard.limits")

LEASE_S = 30.0
"""How long a request's place in its key's concurrent requests lasts unless renewed."""

STORE_FAILURES = (RedisError, OSError, TimeoutError)
LOG_EVERY_S = 10.0

# A bucket's level now: its stored level plus the refill since, at most full; a missing
# bucket is full. `save` stores it and lets it expire when it would be full again.
_BUCKET = """
local now_t = redis.call('TIME')
local now = now_t[1] * 1000 + math.floor(now_t[2] / 1000)
local function level(key, per_minute)
  local state = redis.call('HMGET', key, 'level', 'updated')
  local stored, updated = tonumber(state[1]), tonumber(state[2])
  if stored == nil or updated == nil then return per_minute end
  return math.min(per_minute, stored + math.max(0, now - updated) * per_minute / 60000)
end
local function save(key, per_minute, value)
  redis.call('HSET', key, 'level', value, 'updated', now)
  redis.call('PEXPIRE', key, math.ceil((per_minute - value) * 60000 / per_minute) + 1000)
end
"""

ADMIT = (
    _BUCKET
    + """
-- KEYS: requests bucket, tokens bucket, leases. ARGV: requests per minute, tokens per
-- minute, concurrent requests (0: no such limit), lease id, lease ms.
-- Returns {0, 0} when admitted, else {1 tokens | 2 requests | 3 concurrent, wait ms}.
local rpm, tpm, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if tpm > 0 then
  local tokens = level(KEYS[2], tpm)
  if tokens <= 0 then return {1, math.ceil((1 - tokens) * 60000 / tpm)} end
end
local requests = 0
if rpm > 0 then
  requests = level(KEYS[1], rpm)
  if requests < 1 then return {2, math.ceil((1 - requests) * 60000 / rpm)} end
end
if most > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= most then return {3, 1000} end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]))
end
if rpm > 0 then save(KEYS[1], rpm, requests - 1) end
return {0, 0}
"""
)

SETTLE = (
    _BUCKET
    + """
-- KEYS: tokens bucket, leases. ARGV: tokens per minute (0: no such limit), tokens spent,
-- the request's lease id ('': it holds none).
local tpm, spent = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 and spent > 0 then save(KEYS[1], tpm, level(KEYS[1], tpm) - spent) end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
return 0
"""
)

RENEW = """
-- KEYS: leases. ARGV: lease ms, then the lease ids this replica still holds.
local now_t = redis.call('TIME')
local until_ms = now_t[1] * 1000 + math.floor(now_t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 0
"""


class SharedLimits:
    """Each key's requests and tokens per minute and concurrent requests, in Redis."""

    def __init__(self, settings: Settings, errors: Counter, lease_s: float = LEASE_S):
        assert settings.redis_url is not None
        try:
            self.redis = Redis.from_url(
                settings.redis_url,
                socket_connect_timeout=settings.redis_connect_timeout_s,
                socket_timeout=settings.redis_timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ValueError(without_credentials(str(exc))) from None
        # One wait bounds a whole check, a new connection included.
        self.budget_s = settings.redis_connect_timeout_s + settings.redis_timeout_s
        self.block = settings.redis_on_error == "block"
        self.prefix = settings.redis_key_prefix
        self.errors = errors
        self.lease_s = lease_s
        self._admit = self.redis.register_script(ADMIT)
        self._settle = self.redis.register_script(SETTLE)
        self._renew = self.redis.register_script(RENEW)
        self._replica = uuid.uuid4().hex[:16]
        self._issued = 0
        self._held: dict[str, set[str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._logged_at = -math.inf
        self._unlogged = 0

    def _base(self, name: str) -> str:
        return f"{self.prefix}:limits:{{{self.prefix}:{name}}}"

    async def admit(self, key: ApiKey) -> Lease | None:
        """Take one request from ``key``'s limits; the lease that ``settle`` gives back
        when the request ends, if the key has a concurrent-requests limit. Raises
        ``RateLimited``, or ``LimitStoreUnavailable`` when Redis fails and the settings
        say block."""
        limit = key.rate_limit
        if limit is None:
            return None
        base = self._base(key.name)
        rpm, tpm = limit.requests_per_minute or 0, limit.tokens_per_minute or 0
        most = limit.concurrent_requests or 0
        if not (rpm or tpm or most):
            return None
        self._issued += 1
        member = f"{self._replica}:{self._issued}"
        leases = f"{base}:concurrent"
        keys = [f"{base}:rpm:{rpm}", f"{base}:tpm:{tpm}", leases]
        args: list[str | int] = [rpm, tpm, most, member, math.ceil(self.lease_s * 1000)]
        try:
            async with asyncio.timeout(self.budget_s):
                outcome, wait_ms = await self._admit(keys=keys, args=args)
        except STORE_FAILURES as exc:
            self._failed("admit", exc)
            if self.block:
                raise LimitStoreUnavailable(
                    "guard cannot check this key's rate limits: its limit store did not "
                    "answer; retry shortly."
                ) from None
            return None
        if outcome == 1:
            raise over_limit(key, "tokens", tpm, int(wait_ms) / 1000)
        if outcome == 2:
            raise over_limit(key, "requests", rpm, int(wait_ms) / 1000)
        if outcome == 3:
            raise over_concurrency(key, most)
        if not most:
            return None
        self._held.setdefault(leases, set()).add(member)
        return Lease(leases, member)

    async def settle(self, key: ApiKey, lease: Lease | None, tokens: int) -> None:
        """After a request: give back its place among the key's concurrent requests (if it
        holds one) and charge the tokens it spent, in one round trip. A failure is counted
        and dropped: the request is over, and a lease not given back lapses."""
        if lease is not None:
            held = self._held.get(lease.leases_key)
            if held is not None:
                held.discard(lease.member)
                if not held:
                    del self._held[lease.leases_key]
        limit = key.rate_limit
        tpm = (limit.tokens_per_minute or 0) if limit is not None else 0
        if lease is None and (not tpm or tokens <= 0):
            return
        base = self._base(key.name)
        keys = [f"{base}:tpm:{tpm}", f"{base}:concurrent"]
        args: list[str | int] = [tpm, max(0, tokens), lease.member if lease else ""]
        try:
            async with asyncio.timeout(self.budget_s):
                await self._settle(keys=keys, args=args)
        except STORE_FAILURES as exc:
            self._failed("settle", exc)

    def leases(self) -> list[Lease]:
        """The leases this replica holds now."""
        return [Lease(key, member) for key, members in self._held.items() for member in members]

    def start(self) -> None:
        self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew()
            except Exception:  # never let renewing stop: leases would lapse under requests
                log.exception("renewing the leases of requests in flight failed")

    async def renew(self) -> None:
        """Extend every lease this replica holds, in one round trip."""
        if not self._held:
            return
        lease_ms = math.ceil(self.lease_s * 1000)
        try:
            async with asyncio.timeout(self.budget_s):
                pipe = self.redis.pipeline(transaction=False)
                for leases, members in list(self._held.items()):
                    args: list[str | int] = [lease_ms, *sorted(members)]
                    await self._renew(keys=[leases], args=args, client=pipe)
                await pipe.execute()
        except STORE_FAILURES as exc:
            self._failed("renew", exc)

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.errors.labels(operation).inc()
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY_S:
            return  # one line per LOG_EVERY_S, not one per request, while Redis is down
        self._logged_at = now
        why = without_credentials(str(exc)) or "no answer in time"
        log.warning(
            "the limit store (Redis) failed %d time(s) since the last such line, and "
            "requests are %s meanwhile; the last failure, on %s: %s: %s",
            self._unlogged,
            "blocked (503)" if self.block else "allowed unchecked",
            operation,
            type(exc).__name__,
            why,
        )
        self._unlogged = 0

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        with contextlib.suppress(*STORE_FAILURES):
            await self.redis.aclose()

    def where(self) -> str:
        """Which Redis, without credentials: for the start-up log line."""
        kwargs = self.redis.connection_pool.connection_kwargs
        place = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"{place} (db {kwargs.get('db', 0)})"
