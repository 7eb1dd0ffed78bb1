"""The upstream client: base URLs as users write them; a stream event's size is capped."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import aiohttp
import httpx
import orjson
import pytest

from guard.protocol.upstream import Upstream, failure_kind, server_root
from guard.settings import Settings
from tests.conftest import Fake, guard_app, listing_rails, write_policy
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


GIANT = 1024 * 1024  # the fake upstream's `giant-event`, in 64 KiB pieces
OUTPUT_RAIL = "output_rails:\n  - {kind: regex, presets: [secrets]}\n"


def stream_lines(url: str, model: str) -> tuple[int, list[str]]:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        return response.status_code, [line for line in response.iter_lines() if line]


@pytest.mark.parametrize("rails", ["", OUTPUT_RAIL], ids=["relayed", "output-rails"])
def test_an_upstream_event_over_the_limit_ends_the_stream_with_an_error_event(
    paced_upstream: Fake, tmp_path: Path, rails: str
) -> None:
    policy = write_policy(tmp_path, listing_rails(f"name: p\nmodels: {{'*': null}}\n{rails}"))
    app = guard_app(paced_upstream.url, [policy], upstream_max_event_bytes=64 * 1024)
    streams = paced_upstream.app.state.streams
    cancelled = streams.count("cancelled")
    with serve_in_thread(app) as url:
        status, lines = stream_lines(url, "giant-event")
        counted = 'guard_upstream_errors_total{reason="event_too_large"} 1.0'
        for _ in range(200):  # bounded wait for the cut to reach the upstream, and the metric
            metrics = httpx.get(f"{url}/metrics").text
            if streams.count("cancelled") > cancelled and counted in metrics:
                break
        after = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "say: still here"}]},
        )
    assert status == 200
    assert lines[-1] == "data: [DONE]"
    error = orjson.loads(lines[-2].removeprefix("data: "))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "upstream_event_too_large" and error["type"] == "upstream_error"
    assert "65536 bytes" in error["message"]
    assert max(len(line) for line in lines) < 64 * 1024  # none of the giant event went out
    assert streams.count("cancelled") == cancelled + 1  # guard cut the upstream's stream
    assert counted in metrics
    assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"] == (
        "still here"
    )


def test_an_event_under_the_limit_passes_whole(fake_upstream: Fake, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, listing_rails("name: p\nmodels: {'*': null}\n"))
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:  # 8 MiB by default
        status, lines = stream_lines(url, "giant-event")
    assert status == 200 and lines[-1] == "data: [DONE]"
    chunks = [orjson.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert not any("error" in chunk for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(text) > GIANT - 200 and set(text.replace("tok ", "")) == {"x"}


def test_the_event_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Upstream.from_settings(Settings()).max_event_bytes == 8 * 1024 * 1024
    monkeypatch.setenv("GUARD_UPSTREAM_MAX_EVENT_BYTES", "65536")
    assert Upstream.from_settings(Settings()).max_event_bytes == 65536


def test_a_whole_answer_over_the_limit_is_a_502_and_guard_keeps_serving(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, listing_rails("name: p\nmodels: {'*': null}\n"))
    app = guard_app(fake_upstream.url, [policy], upstream_max_response_bytes=64 * 1024)
    long_answer = "word " * 20_000  # about 100 KB of answer
    with serve_in_thread(app) as url:
        too_large = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": f"say: {long_answer}"}]},
            timeout=30,
        )
        metrics = httpx.get(f"{url}/metrics").text
        after = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "say: still here"}]},
            timeout=30,
        )
    assert too_large.status_code == 502
    error = too_large.json()["error"]
    assert error["code"] == "upstream_response_too_large" and "65536 bytes" in error["message"]
    assert "word word" not in too_large.text
    assert 'guard_upstream_errors_total{reason="response_too_large"} 1.0' in metrics
    assert after.json()["choices"][0]["message"]["content"] == "still here"


def test_the_answer_limit_comes_from_the_settings() -> None:
    assert Upstream.from_settings(Settings()).max_response_bytes == 256 * 1024 * 1024
    limited = Settings(upstream_max_response_bytes=1024)
    assert Upstream.from_settings(limited).max_response_bytes == 1024
