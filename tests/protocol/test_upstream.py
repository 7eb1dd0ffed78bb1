"""The upstream client: base URLs as users write them."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import aiohttp
import httpx
import pytest

from guard.protocol.upstream import failure_kind, server_root
from tests.conftest import Fake, guard_app
from tests.servers import free_port, serve_in_thread


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


@pytest.mark.parametrize("stream", [False, True])
def test_a_502_names_the_upstream_not_its_address(
    aliases_policy: Path, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    port = free_port()
    app = guard_app(f"http://vllm:p4ssw0rd@127.0.0.1:{port}/v1", [aliases_policy])
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    with caplog.at_level(logging.WARNING), serve_in_thread(app) as url:
        answer = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": stream})
    assert answer.status_code == 502
    assert answer.json()["error"]["message"] == "the upstream is unreachable (connection refused)"
    for leak in ("p4ssw0rd", "vllm:", f"{port}", "127.0.0.1", "http"):
        assert leak not in answer.text
    request_id = answer.headers["x-request-id"]
    [line] = [r.getMessage() for r in caplog.records if r.name == "guard.upstream"]
    assert line.startswith(f"request {request_id}: the upstream at http://127.0.0.1:{port}/v1/")
    assert "ClientConnectorError" in line  # aiohttp's own words stay in the log
    assert "p4ssw0rd" not in caplog.text


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (aiohttp.ServerDisconnectedError(), "the server closed the connection"),
        (aiohttp.ClientOSError(errno.ECONNRESET, "reset by 10.0.0.7:8000"), "connection reset"),
        (aiohttp.InvalidURL("http://u:p@host:bad"), "its URL is not valid"),
        (aiohttp.ClientPayloadError("at http://u:p@h/"), "the response was cut short or malformed"),
    ],
)
def test_failure_kinds_carry_no_address(error: Exception, kind: str) -> None:
    assert failure_kind(error).startswith(kind)  # "connection reset by peer" on Linux
