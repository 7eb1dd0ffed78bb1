"""The upstream client: base URLs as users write them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from guard.protocol.upstream import server_root
from tests.conftest import Fake, guard_app
from tests.servers import serve_in_thread


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_the_upstream_url_works_with_or_without_v1_and_slash(
    fake_upstream: Fake, aliases_policy: Path, suffix: str
) -> None:
    app = guard_app(fake_upstream.url + suffix, [aliases_policy])
    with serve_in_thread(app) as url:
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        )
        health = httpx.get(f"{url}/health")
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    assert health.status_code == 200
    assert fake_upstream.last_request()["path"] == "/v1/chat/completions"


def test_server_root_keeps_a_path_prefix() -> None:
    assert server_root("http://h:8000/v1/") == "http://h:8000"
    assert server_root("http://h/proxy/vllm/v1") == "http://h/proxy/vllm"
    assert server_root(" http://h:8000// ") == "http://h:8000"


def test_an_unreachable_upstream_written_with_v1_is_still_a_502(aliases_policy: Path) -> None:
    app = guard_app("http://127.0.0.1:9/v1", [aliases_policy])
    with serve_in_thread(app) as url:
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_unreachable"
