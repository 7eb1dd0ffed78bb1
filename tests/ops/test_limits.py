"""A key's limits through guard, in memory and in Redis alike: one request more than its
concurrent requests gets 429 while the others run, and the key is served again once one
ends; the tokens an answer spent are charged after it, and its place given back."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from starlette.applications import Starlette

from guard.ops.keys import hash_key
from tests.conftest import Fake, guard_app, write_policy
from tests.scrape import metric
from tests.servers import RedisServer, serve_in_thread

CHAT = "/v1/chat/completions"
POLICY = "name: p\nmodels: {'*': null}\ninput_rails: []\noutput_rails: []\n"
KEY = "sk-test-limits-0123456789abcdef"
HEADERS = {"authorization": f"Bearer {KEY}"}


def ask(url: str) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "say: hi"}]}
    return httpx.post(f"{url}{CHAT}", json=body, headers=HEADERS, timeout=30)


def keyed_app(
    store: str, upstream: Fake, tmp_path: Path, request: pytest.FixtureRequest, limit: str
) -> Starlette:
    """guard with one key of ``limit``, its limits in memory or in the session's Redis."""
    policy = write_policy(tmp_path, POLICY)
    keys = write_policy(
        tmp_path,
        f"keys:\n  - name: tenant\n    sha256: {hash_key(KEY)}\n    models: '*'\n"
        f"    rate_limit: {limit}\n",
        "keys.yaml",
    )
    shared: dict[str, object] = {}
    if store == "redis":
        redis: RedisServer = request.getfixturevalue("redis")
        shared = {"redis_url": redis.url, "redis_key_prefix": f"t{uuid.uuid4().hex[:12]}"}
        shared |= {"redis_connect_timeout_s": 5.0, "redis_timeout_s": 5.0}
    return guard_app(upstream.url, [policy], keys_file=keys, **shared)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_keys_concurrent_requests_are_capped(
    store: str, paced_upstream: Fake, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app = keyed_app(store, paced_upstream, tmp_path, request, "{concurrent_requests: 1}")
    long_answer = {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "say: " + "word " * 400}],  # 20 s
    }
    with serve_in_thread(app) as url:
        with httpx.stream(
            "POST", f"{url}{CHAT}", json=long_answer, headers=HEADERS, timeout=30
        ) as stream:
            lines = stream.iter_lines()  # kept: a dropped iterator would close the stream
            assert next(lines).startswith("data: ")  # in flight now
            refused = ask(url)
        # The stream was cut by its client: its place is given back.
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "concurrent"
        assert refused.headers["retry-after"] == "1"
        assert metric(url, "guard_rejections_total", reason="rate_limit_concurrent") == 1
        for _ in range(100):  # bounded: 10 s for guard to see the client leave
            if (served := ask(url)).status_code == 200:
                break
            time.sleep(0.1)
        assert served.status_code == 200


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_an_answers_tokens_are_charged_and_its_place_given_back(
    store: str, fake_upstream: Fake, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    limit = "{tokens_per_minute: 5, concurrent_requests: 3}"
    app = keyed_app(store, fake_upstream, tmp_path, request, limit)
    with serve_in_thread(app) as url:
        first = ask(url)
        assert first.status_code == 200 and first.json()["usage"]["total_tokens"] > 5
        for _ in range(100):  # bounded: 10 s (in Redis the charge follows the answer)
            if (refused := ask(url)).status_code == 429:
                break
            time.sleep(0.1)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "tokens"
        ops = app.state.guard.ops
        if store == "memory":
            assert ops.key_concurrency.in_flight == {}
        else:
            assert ops.shared.leases() == []
            prefix = ops.settings.redis_key_prefix
            leases = f"{prefix}:limits:{{{prefix}:tenant}}:concurrent"
            assert redis_sync.Redis.from_url(ops.settings.redis_url).zcard(leases) == 0
