"""Every failure gets the right status and an OpenAI-shaped error; guard keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from guard.errors import UpstreamUnreachable, client_safe, without_credentials
from tests.conftest import Fake, guard_app, write_policy
from tests.servers import free_port, serve_in_thread

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]


def assert_openai_error(
    response: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    assert response.headers["x-request-id"]
    return error


@pytest.fixture
def still_serving(guard_url: str) -> Iterator[str]:
    """After each error test, a normal request must still work."""
    yield guard_url
    ok = httpx.post(f"{guard_url}{CHAT}", json={"model": "fake-model", "messages": HELLO})
    assert ok.status_code == 200


def test_malformed_json(still_serving: str) -> None:
    response = httpx.post(
        f"{still_serving}{CHAT}",
        content=b'{"model": "x", ',
        headers={"content-type": "application/json"},
    )
    assert_openai_error(response, 400, code="invalid_json")


def test_body_that_is_not_an_object(still_serving: str) -> None:
    response = httpx.post(f"{still_serving}{CHAT}", content=b"[1, 2]")
    assert_openai_error(response, 400, code="invalid_json")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "fake-model", "messages": "hello"}, "messages"),
        ({"model": "fake-model", "messages": []}, "messages"),
        ({"model": "fake-model", "messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"model": "fake-model", "messages": HELLO, "max_tokens": -5}, "max_tokens"),
        ({"model": "fake-model", "messages": HELLO, "n": 0}, "n"),
        ({"messages": HELLO}, "model"),
    ],
)
def test_invalid_field_names_the_param(
    still_serving: str, body: dict[str, object], param: str
) -> None:
    response = httpx.post(f"{still_serving}{CHAT}", json=body)
    error = assert_openai_error(response, 400, param=param)
    assert error["type"] == "invalid_request_error"


def test_invalid_completion_prompt(still_serving: str) -> None:
    response = httpx.post(
        f"{still_serving}/v1/completions", json={"model": "fake-model", "prompt": {"not": "text"}}
    )
    assert_openai_error(response, 400, param="prompt")


def test_unknown_model(still_serving: str) -> None:
    response = httpx.post(f"{still_serving}{CHAT}", json={"model": "gpt-9", "messages": HELLO})
    error = assert_openai_error(response, 404, code="model_not_found", param="model")
    assert "alias-a" in str(error["message"])


def test_unknown_model_through_the_openai_client(still_serving: str) -> None:
    api = openai.OpenAI(base_url=f"{still_serving}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        api.chat.completions.create(model="gpt-9", messages=HELLO)
    assert caught.value.code == "model_not_found"


def test_body_over_the_limit(still_serving: str) -> None:
    big = {"model": "fake-model", "messages": [{"role": "user", "content": "x" * 70_000}]}
    response = httpx.post(f"{still_serving}{CHAT}", json=big)
    assert_openai_error(response, 413, code="payload_too_large")


def test_body_over_the_limit_without_content_length(still_serving: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "fake-model", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}]}'

    response = httpx.post(f"{still_serving}{CHAT}", content=chunks())
    assert_openai_error(response, 413)


def test_unknown_route_and_wrong_method(still_serving: str) -> None:
    assert_openai_error(httpx.get(f"{still_serving}/v1/nothing"), 404)
    assert_openai_error(httpx.get(f"{still_serving}{CHAT}"), 405)


def test_upstream_4xx_passes_through_with_its_message(still_serving: str) -> None:
    response = httpx.post(f"{still_serving}{CHAT}", json={"model": "reject", "messages": HELLO})
    error = assert_openai_error(response, 400)
    assert "maximum context length" in str(error["message"])


def test_upstream_5xx_is_a_bad_gateway(still_serving: str) -> None:
    response = httpx.post(f"{still_serving}{CHAT}", json={"model": "crash", "messages": HELLO})
    error = assert_openai_error(response, 502)
    assert "engine died" in str(error["message"])


def test_upstream_4xx_on_a_stream_is_an_http_error(still_serving: str) -> None:
    response = httpx.post(
        f"{still_serving}{CHAT}", json={"model": "reject", "messages": HELLO, "stream": True}
    )
    assert_openai_error(response, 400)


def test_upstream_timeout(still_serving: str) -> None:
    response = httpx.post(f"{still_serving}{CHAT}", json={"model": "slow", "messages": HELLO})
    assert_openai_error(response, 504, code="upstream_timeout")


def test_upstream_that_refuses_connections(tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path, "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\n"
    )
    app = guard_app(f"http://127.0.0.1:{free_port()}", [policy])
    with serve_in_thread(app) as url:
        for stream in (False, True):
            response = httpx.post(
                f"{url}{CHAT}", json={"model": "m", "messages": HELLO, "stream": stream}
            )
            error = assert_openai_error(response, 502, code="upstream_unreachable")
            assert "unreachable" in str(error["message"])
        assert_openai_error(httpx.get(f"{url}/health"), 503, code="upstream_unreachable")


@pytest.mark.parametrize("model", ["die-mid-stream", "no-done"])
def test_upstream_dying_mid_stream_gives_an_error_event_then_done(
    still_serving: str, model: str
) -> None:
    with httpx.stream(
        "POST", f"{still_serving}{CHAT}", json={"model": model, "messages": HELLO, "stream": True}
    ) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    error = orjson.loads(events[-2].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_stream_broken"
    assert set(error) == {"message", "type", "param", "code"}


def test_openai_client_sees_a_mid_stream_failure(still_serving: str) -> None:
    api = openai.OpenAI(base_url=f"{still_serving}/v1", api_key="x", max_retries=0)
    stream = api.chat.completions.create(
        model="die-mid-stream",
        messages=HELLO,
        stream=True,
    )
    with pytest.raises(openai.APIError, match="broke in the middle"):
        list(stream)


def test_client_disconnect_cancels_the_upstream_stream(
    paced_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(
        tmp_path, "name: p\nmodels: {'*': null}\ninput_rails: []\noutput_rails: []\n"
    )
    app = guard_app(paced_upstream.url, [policy])
    streams = paced_upstream.app.state.streams
    before = streams.count("cancelled")
    with serve_in_thread(app) as url:
        with httpx.stream(
            "POST", f"{url}{CHAT}", json={"model": "m", "messages": HELLO, "stream": True}
        ) as response:
            next(response.iter_lines())
        for _ in range(200):  # bounded wait for the cancellation to reach the upstream
            if streams.count("cancelled") > before:
                break
            httpx.get(f"{url}/health")
    assert streams.count("cancelled") == before + 1


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("at http://user:secret@10.0.0.7:8000/v1 failed", "at [url] failed"),
        ("(postgres://app@db/x)", "([url])"),
        ("No such file: /home/ops/models/lg.bin", "No such file: [path]"),
        ("in /usr/lib/python3.12/x.py and ~/keys.yaml", "in [path] and [path]"),
        ("C:\\Users\\ops\\key.txt missing", "[path] missing"),
        # What clients may read stays: routes, model ids, URLs without credentials.
        ("There is no route /v1/chat/x.", "There is no route /v1/chat/x."),
        ("model meta-llama/Llama-Guard-3-1B", "model meta-llama/Llama-Guard-3-1B"),
        ("see https://platform.openai.com/docs", "see https://platform.openai.com/docs"),
        ("/homework and a/home/b", "/homework and a/home/b"),
    ],
)
def test_client_safe_takes_out_credentials_and_paths(text: str, shown: str) -> None:
    assert client_safe(text) == shown


def test_every_error_a_client_reads_is_client_safe() -> None:
    error = UpstreamUnreachable("at http://u:pw@h:1/v1 from /srv/guard/app.py")
    assert error.to_dict()["error"]["message"] == "at [url] from [path]"
    assert error.message == "at http://u:pw@h:1/v1 from /srv/guard/app.py"  # for the log


def test_logs_keep_the_address_without_the_password() -> None:
    assert without_credentials("GET http://user:secret@h:8000/v1 and ws://a@b/c") == (
        "GET http://h:8000/v1 and ws://b/c"
    )
