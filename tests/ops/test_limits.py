"""A key's concurrent requests, in memory and in Redis alike: one more than its limit gets
429 while the others run, and the key is served again once one ends."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

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


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_keys_concurrent_requests_are_capped(
    store: str, paced_upstream: Fake, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    policy = write_policy(tmp_path, POLICY)
    keys = write_policy(
        tmp_path,
        f"keys:\n  - name: tenant\n    sha256: {hash_key(KEY)}\n    models: '*'\n"
        "    rate_limit: {concurrent_requests: 1}\n",
        "keys.yaml",
    )
    shared: dict[str, object] = {}
    if store == "redis":
        redis: RedisServer = request.getfixturevalue("redis")
        shared = {"redis_url": redis.url, "redis_key_prefix": f"t{uuid.uuid4().hex[:12]}"}
        shared |= {"redis_connect_timeout_s": 5.0, "redis_timeout_s": 5.0}
    app = guard_app(paced_upstream.url, [policy], keys_file=keys, **shared)
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
