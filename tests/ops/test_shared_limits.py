"""Limits shared through a real Redis (tests/servers.py starts one on loopback): one key's
requests, tokens and concurrent requests hold across replicas, atomically; leases of a
dead replica lapse; Redis down or silent is counted and obeys GUARD_REDIS_ON_ERROR,
within the timeouts; two real `guard serve` processes share one key's limit; Redis
killed under two running apps, then started again."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from guard.errors import LimitStoreUnavailable, RateLimited
from guard.ops.keys import ApiKey, RateLimit, hash_key
from guard.ops.metrics import Metrics
from guard.ops.shared_limits import SharedLimits
from guard.settings import Settings
from tests.cli.test_serve import _wait_healthy
from tests.conftest import ROOT, Fake, guard_app, write_policy
from tests.scrape import metric, metric_in
from tests.servers import RedisServer, free_port, redis_server, serve_in_thread

CHAT = "/v1/chat/completions"
POLICY = "name: p\nmodels: {'*': null}\ninput_rails: []\noutput_rails: []\n"
KEY = "sk-test-shared-0123456789abcdef"


def a_key(**limit: int) -> ApiKey:
    return ApiKey(name="tenant", sha256=hash_key(KEY), models="*", rate_limit=RateLimit(**limit))


def prefix() -> str:
    """A Redis key prefix of the test's own: tests share the session's Redis."""
    return f"t{uuid.uuid4().hex[:12]}"


# Timeouts for tests that are not about timeouts: a busy test machine can hold the event
# loop past the default 0.1 s, and a check that timed out is let through (or blocked).
PATIENT = {"redis_connect_timeout_s": 5.0, "redis_timeout_s": 5.0}


def replica(url: str, key_prefix: str, **settings: object) -> tuple[SharedLimits, Metrics]:
    """One replica's shared limits (and its metrics), as ``Operations`` builds them."""
    metrics = Metrics()
    given = {**PATIENT, **settings}
    config = Settings(redis_url=url, redis_key_prefix=key_prefix, **given)  # type: ignore[arg-type]
    return SharedLimits(config, metrics.limit_store_errors), metrics


def store_errors(metrics: Metrics, operation: str) -> float:
    return metric_in(
        metrics.render()[0].decode(), "guard_limit_store_errors_total", operation=operation
    )


async def outcome(limits: SharedLimits, key: ApiKey) -> str:
    """``admitted``, or the rate limit's type."""
    try:
        await limits.admit(key)
    except RateLimited as exc:
        return exc.error_type
    return "admitted"


def test_one_keys_requests_per_minute_hold_across_replicas(redis: RedisServer) -> None:
    async def run() -> list[str]:
        shared = prefix()
        (a, _), (b, _) = replica(redis.url, shared), replica(redis.url, shared)
        key = a_key(requests_per_minute=4)
        try:
            return [await outcome(a if i % 2 else b, key) for i in range(8)]
        finally:
            await a.aclose()
            await b.aclose()

    assert asyncio.run(run()) == ["admitted"] * 4 + ["requests"] * 4


def test_admissions_at_once_from_two_replicas_never_overshoot(redis: RedisServer) -> None:
    """40 admissions at the same moment from each of two replicas, for a limit of 25:
    exactly 25 pass. A read-then-write check would let more through."""

    async def run() -> list[str]:
        shared = prefix()
        (a, _), (b, _) = replica(redis.url, shared), replica(redis.url, shared)
        key = a_key(requests_per_minute=25)
        try:
            return await asyncio.gather(*(outcome(r, key) for r in [a, b] * 40))
        finally:
            await a.aclose()
            await b.aclose()

    results = asyncio.run(run())
    assert results.count("admitted") == 25
    assert results.count("requests") == 55


def test_tokens_charged_on_one_replica_hold_on_the_other(redis: RedisServer) -> None:
    async def run() -> tuple[str, int, int]:
        shared = prefix()
        (a, _), (b, _) = replica(redis.url, shared), replica(redis.url, shared)
        key = a_key(tokens_per_minute=60, concurrent_requests=5)
        try:
            lease = await a.admit(key)
            assert lease is not None
            await a.settle(key, lease, 120)  # one token a second: 61 s of debt
            in_flight = await a.redis.zcard(lease.leases_key)
            try:
                await b.admit(key)
            except RateLimited as exc:
                return exc.error_type, exc.retry_after, in_flight
            return "admitted", 0, in_flight
        finally:
            await a.aclose()
            await b.aclose()

    refused, retry_after, in_flight = asyncio.run(run())
    assert refused == "tokens"
    assert 55 <= retry_after <= 62
    assert in_flight == 0  # the same call gave the request's place back


def test_a_changed_limit_starts_a_fresh_full_bucket(redis: RedisServer) -> None:
    async def run() -> list[str]:
        (a, _) = replica(redis.url, prefix())
        try:
            spent = [await outcome(a, a_key(requests_per_minute=2)) for _ in range(3)]
            return [*spent, await outcome(a, a_key(requests_per_minute=3))]
        finally:
            await a.aclose()

    assert asyncio.run(run()) == ["admitted", "admitted", "requests", "admitted"]


def test_concurrent_requests_count_across_replicas_until_released(redis: RedisServer) -> None:
    async def run() -> list[str]:
        shared = prefix()
        (a, _), (b, _) = replica(redis.url, shared), replica(redis.url, shared)
        key = a_key(concurrent_requests=2)
        seen = []
        try:
            first, second = await a.admit(key), await b.admit(key)
            assert first is not None and second is not None
            seen.append(await outcome(a, key))
            await b.settle(key, second, 0)
            third = await a.admit(key)
            assert third is not None
            seen.append(await outcome(b, key))
            await a.settle(key, first, 0)
            await a.settle(key, third, 0)
            seen.append(await outcome(b, key))
            return seen
        finally:
            await a.aclose()
            await b.aclose()

    assert asyncio.run(run()) == ["concurrent", "concurrent", "admitted"]


def test_a_dead_replicas_leases_lapse_and_a_live_one_renews_its_own(redis: RedisServer) -> None:
    async def run() -> tuple[str, float, float, int]:
        shared = prefix()
        metrics = Metrics()
        config = Settings(redis_url=redis.url, redis_key_prefix=shared, **PATIENT)
        dead = SharedLimits(config, metrics.limit_store_errors, lease_s=0.3)
        live = SharedLimits(config, metrics.limit_store_errors, lease_s=60)
        key = a_key(concurrent_requests=1)
        try:
            lease = await dead.admit(key)  # and the replica dies: nothing renews it
            assert lease is not None
            refused = await outcome(live, key)
            for _ in range(100):  # bounded: 10 s
                await asyncio.sleep(0.1)
                if await outcome(live, key) == "admitted":
                    break
            else:
                raise AssertionError("the dead replica's lease never lapsed")
            held = next(iter(live.leases()))
            before = await live.redis.zscore(held.leases_key, held.member)
            await asyncio.sleep(0.01)
            await live.renew()
            after = await live.redis.zscore(held.leases_key, held.member)
            assert before is not None and after is not None
            await live.settle(key, held, 0)
            left = await live.redis.zcard(held.leases_key)
            return refused, before, after, left
        finally:
            await dead.aclose()
            await live.aclose()

    refused, before, after, left = asyncio.run(run())
    assert refused == "concurrent"
    assert after > before  # renewed: its expiry moved on
    assert left == 0


@pytest.mark.parametrize("on_error", ["allow", "block"])
def test_redis_unreachable_obeys_the_setting_and_is_counted(on_error: str) -> None:
    async def run() -> tuple[str, Metrics]:
        url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
        limits, metrics = replica(url, prefix(), redis_on_error=on_error)
        key = a_key(requests_per_minute=1, tokens_per_minute=10)
        try:
            results = []
            for _ in range(3):
                try:
                    results.append("admitted" if await limits.admit(key) is None else "lease")
                except LimitStoreUnavailable as exc:
                    assert exc.status_code == 503 and exc.headers == {"retry-after": "1"}
                    results.append("blocked")
            await limits.settle(key, None, 5)  # counted, never raised: the request is over
            assert set(results) == {"admitted" if on_error == "allow" else "blocked"}
            return results[0], metrics
        finally:
            await limits.aclose()

    result, metrics = asyncio.run(run())
    assert result == ("admitted" if on_error == "allow" else "blocked")
    assert store_errors(metrics, "admit") == 3
    assert store_errors(metrics, "settle") == 1


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections (the kernel does, from its backlog) and never
    answers: a Redis that hangs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


@pytest.mark.parametrize("on_error", ["allow", "block"])
def test_a_redis_that_never_answers_cannot_hold_a_request(on_error: str) -> None:
    async def run() -> tuple[str, Metrics]:
        with silent_server() as url:
            limits, metrics = replica(
                url,
                prefix(),
                redis_on_error=on_error,
                **{name: Settings.model_fields[name].default for name in PATIENT},  # 0.1 s each
            )
            try:
                # Far above the 0.2 s the settings allow; without them this waits forever.
                async with asyncio.timeout(20):
                    try:
                        await limits.admit(a_key(requests_per_minute=5))
                        return "admitted", metrics
                    except LimitStoreUnavailable:
                        return "blocked", metrics
            finally:
                await limits.aclose()

    result, metrics = asyncio.run(run())
    assert result == ("admitted" if on_error == "allow" else "blocked")
    assert store_errors(metrics, "admit") == 1


def test_a_bad_redis_url_stops_start_up(fake_upstream: Fake, tmp_path: Path) -> None:
    from guard.errors import PolicyError

    policy = write_policy(tmp_path, POLICY)
    with pytest.raises(PolicyError) as caught:
        guard_app(fake_upstream.url, [policy], redis_url="http://user:secret@example.invalid/0")
    assert "GUARD_REDIS_URL" in caught.value.problems[0]
    assert "secret" not in caught.value.problems[0]


# ---------------------------------------------------------------- through guard


def keys_file(tmp_path: Path, limit: str) -> Path:
    return write_policy(
        tmp_path,
        f"keys:\n  - name: tenant\n    sha256: {hash_key(KEY)}\n    models: '*'\n"
        f"    rate_limit: {limit}\n",
        "keys.yaml",
    )


def chat(url: str) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "say: hi"}]}
    headers = {"authorization": f"Bearer {KEY}"}
    return httpx.post(f"{url}{CHAT}", json=body, headers=headers, timeout=30)


@contextmanager
def guard_process(
    upstream: str, policy: Path, keys: Path, redis_url: str, key_prefix: str
) -> Iterator[str]:
    """A real `guard serve` with shared limits; stopped when the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        *(sys.executable, "-m", "guard.cli", "serve", "--policy", str(policy)),
        *("--upstream", upstream, "--port", str(port), "--keys", str(keys)),
    ]
    env = {
        **os.environ,
        "GUARD_REDIS_URL": redis_url,
        "GUARD_REDIS_KEY_PREFIX": key_prefix,
        "GUARD_LOG_LEVEL": "warning",
        **{f"GUARD_{name.upper()}": str(value) for name, value in PATIENT.items()},
    }
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_two_guard_processes_hold_one_keys_limit_together(
    redis: RedisServer, fake_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, POLICY)
    keys = keys_file(tmp_path, "{requests_per_minute: 5}")
    shared = prefix()
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(guard_process(fake_upstream.url, policy, keys, redis.url, shared))
            for _ in range(2)
        )
        statuses = [chat(url).status_code for url in [a, b] * 6]
        assert statuses.count(200) == 5
        assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}
        # Each refused on its own, both had admitted some: one bucket for both.
        assert metric(a, "guard_rejections_total", reason="rate_limit_requests") >= 1
        assert metric(b, "guard_rejections_total", reason="rate_limit_requests") >= 1
        assert metric(a, "guard_limit_store_errors_total") == 0


def test_redis_killed_under_running_replicas_allow_and_block_as_set(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, POLICY)
    keys = keys_file(tmp_path, "{requests_per_minute: 4}")
    with redis_server(tmp_path) as server, ExitStack() as stack:
        common = {"keys_file": keys, "redis_url": server.url, "redis_key_prefix": prefix()}
        common.update(PATIENT)
        apps = [guard_app(fake_upstream.url, [policy], redis_on_error=rule, **common)
                for rule in ("allow", "block")]  # fmt: skip
        allow, block = (stack.enter_context(serve_in_thread(app)) for app in apps)
        assert [chat(url).status_code for url in [allow, block] * 3] == [200] * 4 + [429] * 2

        server.kill()  # as a crash: connections reset, the port refuses
        opened = [chat(allow) for _ in range(3)]
        closed = [chat(block) for _ in range(3)]
        assert [r.status_code for r in opened] == [200] * 3  # past its limit: unchecked
        for response in closed:
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "limit_store_unavailable"
        assert metric(allow, "guard_limit_store_errors_total", operation="admit") == 3
        assert metric(block, "guard_limit_store_errors_total", operation="admit") == 3
        assert metric(block, "guard_rejections_total", reason="limit_store_unavailable") == 3
        assert metric(allow, "guard_rejections_total", reason="limit_store_unavailable") == 0

        server.start()  # empty: no persistence, so the key starts with a full bucket
        statuses = [chat(url).status_code for url in [allow, block] * 3]
        assert statuses == [200] * 4 + [429] * 2
