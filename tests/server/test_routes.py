"""guard with a policy that applies no technique is invisible to an OpenAI client."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from guard.components.batching import MicroBatcher
from guard.ops.keys import hash_key
from tests.conftest import ALIASES_POLICY as ALIASES
from tests.conftest import Fake, guard_app, listing_rails, write_policy
from tests.servers import free_port, serve_in_thread

PASSTHROUGH = Path(__file__).resolve().parents[2] / "policies" / "passthrough.yaml"


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_chat_answer_and_usage_come_back_untouched(guard_url: str, fake_upstream: Fake) -> None:
    answer = client(guard_url).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "say: Paris is the capital."}]
    )
    assert answer.choices[0].message.content == "Paris is the capital."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 4
    assert answer.model_extra is not None
    assert answer.model_extra["guard"]["policy"] == "aliases"
    assert answer.model_extra["guard"]["verdicts"] == []


def test_alias_maps_to_upstream_model(guard_url: str, fake_upstream: Fake) -> None:
    client(guard_url).chat.completions.create(
        model="alias-a", messages=[{"role": "user", "content": "hi"}]
    )
    assert fake_upstream.last_request()["body"]["model"] == "fake-model"


def test_every_uninterpreted_field_is_forwarded_untouched(
    guard_url: str, fake_upstream: Fake
) -> None:
    fields = {
        "n": 3,
        "logprobs": True,
        "top_logprobs": 2,
        "stop": ["\n\n", "END"],
        "seed": 1234,
        "temperature": 0.7,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "top_k": 5,
        "repetition_penalty": 1.1,
        "guided_json": {"type": "object"},
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi", "name": "alice"},
        ],
    }
    body = {"model": "fake-model", **fields}
    response = httpx.post(f"{guard_url}/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert fake_upstream.last_request()["body"] == body
    data = response.json()
    assert len(data["choices"]) == 3
    assert data["choices"][0]["logprobs"]["content"][0]["logprob"] == -0.1


def test_client_api_key_is_not_forwarded(guard_url: str, fake_upstream: Fake) -> None:
    httpx.post(
        f"{guard_url}/v1/chat/completions",
        headers={"authorization": "Bearer client-secret"},
        json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert "authorization" not in fake_upstream.last_request()["headers"]


def test_upstream_api_key_is_guards_own(fake_upstream: Fake, tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path, "name: p\nmodels: {'*': null}\ninput_rails: []\noutput_rails: []\n"
    )
    app = guard_app(fake_upstream.url, [policy], upstream_api_key="upstream-secret")
    with serve_in_thread(app) as url:
        client(url).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert fake_upstream.last_request()["headers"]["authorization"] == "Bearer upstream-secret"


def test_stream_is_relayed_chunk_by_chunk_and_ends_with_done(guard_url: str) -> None:
    with httpx.stream(
        "POST",
        f"{guard_url}/v1/chat/completions",
        json={
            "model": "fake-model",
            "stream": True,
            "n": 2,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "say: one two three"}],
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [orjson.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[0]["guard"]["policy"] == "aliases"
    assert all("guard" not in c for c in chunks[1:])
    text = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk["choices"]:
            text[choice["index"]] += choice["delta"].get("content") or ""
    assert text == {0: "one two three", 1: "one two three"}
    assert chunks[-1]["usage"]["completion_tokens"] == 6


def test_stream_is_not_buffered(paced_upstream: Fake, aliases_policy: Path) -> None:
    """The first chunk reaches the client while the upstream is still generating."""
    app = guard_app(paced_upstream.url, [aliases_policy])
    with serve_in_thread(app) as url:
        finished_before = paced_upstream.app.state.streams.count("finished")
        stream = client(url).chat.completions.create(
            model="fake-model", stream=True, messages=[{"role": "user", "content": "hi"}]
        )
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        assert paced_upstream.app.state.streams.count("finished") == finished_before
        rest = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in rest) == "tok " * 8


def test_openai_client_streams_through_guard(guard_url: str) -> None:
    stream = client(guard_url).chat.completions.create(
        model="fake-model", stream=True, messages=[{"role": "user", "content": "say: a b c"}]
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_text_completions_plain_and_streamed(guard_url: str) -> None:
    api = client(guard_url)
    answer = api.completions.create(model="fake-model", prompt="say: x y", logprobs=1)
    assert answer.choices[0].text == "x y"
    assert answer.choices[0].logprobs is not None
    streamed = api.completions.create(model="fake-model", prompt="say: x y z", stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "x y z"


def test_models_lists_policy_names(guard_url: str) -> None:
    ids = [m.id for m in client(guard_url).models.list()]
    assert "alias-a" in ids and "fake-model" in ids


def test_wildcard_policy_lists_upstream_models(fake_upstream: Fake) -> None:
    app = guard_app(fake_upstream.url, [PASSTHROUGH])
    with serve_in_thread(app) as url:
        assert [m.id for m in client(url).models.list()] == ["fake-model"]


def test_health_reports_upstream(guard_url: str, fake_upstream: Fake) -> None:
    response = httpx.get(f"{guard_url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "upstream": "ok"}  # no address: anyone may ask
    assert fake_upstream.url.split("//")[1] not in response.text


def test_health_with_a_dead_upstream_names_no_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    policy = write_policy(
        tmp_path, "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\n"
    )
    app = guard_app(f"http://ops:hunter2@127.0.0.1:{port}/v1", [policy])
    with caplog.at_level(logging.WARNING), serve_in_thread(app) as url:
        response = httpx.get(f"{url}/health")
    assert response.status_code == 503
    assert response.json()["error"]["message"] == (
        "the upstream is unreachable (connection refused)"
    )
    for leak in ("hunter2", "ops:", f"{port}", "127.0.0.1", "http"):
        assert leak not in response.text
    [line] = [r.getMessage() for r in caplog.records if r.name == "guard.upstream"]
    assert f"the upstream at http://127.0.0.1:{port}/health is unreachable" in line
    assert "hunter2" not in caplog.text


def test_livez_answers_without_the_upstream_and_without_a_key(tmp_path: Path) -> None:
    """Kubernetes' liveness probe: it must not restart guard because vLLM is down, and the
    kubelet sends no API key."""
    dead = f"http://127.0.0.1:{free_port()}"
    policy = write_policy(
        tmp_path, "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\n"
    )
    app = guard_app(dead, [policy], api_keys=f"ops:{hash_key('sk-ops-1')}")
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/health").status_code == 503  # the upstream is down
        live = httpx.get(f"{url}/livez")
        assert live.status_code == 200
        assert live.json() == {"status": "alive"}
        assert httpx.get(f"{url}/v1/models").status_code == 401  # keys are on


def test_livez_and_health_fail_while_a_model_call_has_stalled(
    fake_upstream: Fake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model call that never returns holds the thread its rails share: liveness fails,
    so the kubelet restarts guard, readiness too, so traffic goes elsewhere meanwhile, and
    both pass again once the call is over. The stall is logged once, not per probe."""
    release = threading.Event()

    def hangs(items: list[str]) -> list[str]:
        release.wait(60)
        return items

    async def one_call() -> None:
        batcher: MicroBatcher[str, str] = MicroBatcher(hangs, name="hangs")
        try:
            await batcher.submit(["x"])
        finally:
            await batcher.aclose()

    policy = write_policy(
        tmp_path, "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\n"
    )
    app = guard_app(fake_upstream.url, [policy], stalled_model_call_s=0.2)
    with serve_in_thread(app) as url:
        assert wait_for(f"{url}/livez", 200).json() == {"status": "alive"}
        assert httpx.get(f"{url}/health").status_code == 200
        call = threading.Thread(target=asyncio.run, args=(one_call(),))
        call.start()
        try:
            error = wait_for(f"{url}/livez", 503).json()["error"]
            assert error["type"] == "service_unavailable"
            assert error["code"] == "model_call_stalled"
            assert "GUARD_STALLED_MODEL_CALL_S is 0.2" in error["message"]
            assert httpx.get(f"{url}/health").json()["error"]["code"] == "model_call_stalled"
            assert httpx.get(f"{url}/livez").status_code == 503
            logged = [r for r in caplog.records if "a model call has run for" in r.message]
            assert len(logged) == 1 and logged[0].levelname == "ERROR"
        finally:
            release.set()
            call.join(60)
        assert wait_for(f"{url}/livez", 200).json() == {"status": "alive"}
        assert httpx.get(f"{url}/health").status_code == 200


def wait_for(url: str, status: int) -> httpx.Response:
    """``url``'s answer once it has ``status`` (asked for up to 30 s)."""
    for _ in range(300):
        answer = httpx.get(url)
        if answer.status_code == status:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"{url} still answers {answer.status_code}")


def test_request_id_is_generated_or_honoured(guard_url: str, fake_upstream: Fake) -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    generated = httpx.post(f"{guard_url}/v1/chat/completions", json=body)
    assert len(generated.headers["x-request-id"]) == 32
    given = httpx.post(
        f"{guard_url}/v1/chat/completions", json=body, headers={"x-request-id": "trace-42"}
    )
    assert given.headers["x-request-id"] == "trace-42"
    assert fake_upstream.last_request()["headers"]["x-request-id"] == "trace-42"
    assert given.headers["x-guard-policy"] == "aliases"


def test_an_empty_model_name_is_refused(guard_url: str, fake_upstream: Fake) -> None:
    """vLLM answers an empty name with its default model: guard never forwards one."""
    mark = fake_upstream.app.state.received.count
    for name in ("", "   ", "\t"):
        for path, field in (("chat/completions", "messages"), ("completions", "prompt")):
            given = [{"role": "user", "content": "hi"}] if field == "messages" else "hi"
            body = {"model": name, field: given}
            response = httpx.post(f"{guard_url}/v1/{path}", json=body, timeout=30)
            assert response.status_code == 400, (path, name)
            error = response.json()["error"]
            assert error["param"] == "model" and error["code"] == "invalid_value"
            assert "empty" in error["message"]
    assert fake_upstream.app.state.received.count == mark


def test_models_retrieve_answers_each_exposed_name_in_openais_shape(guard_url: str) -> None:
    api = client(guard_url)
    listed = {m.id: m for m in api.models.list()}
    for name in ("alias-a", "fake-model"):
        model = api.models.retrieve(name)
        assert model.id == name and model.object == "model" and model.owned_by == "guard"
        assert model.created == listed[name].created
    with pytest.raises(openai.NotFoundError) as caught:
        api.models.retrieve("gpt-4o")
    assert caught.value.code == "model_not_found"
    assert caught.value.body is not None and caught.value.body["param"] == "model"  # type: ignore[index,call-overload]


def test_models_retrieve_a_name_with_a_slash(fake_upstream: Fake, tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path, listing_rails("name: p\nmodels: {'meta-llama/Llama-3.1-8B': fake-model}\n")
    )
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        model = client(url).models.retrieve("meta-llama/Llama-3.1-8B")
        unquoted = httpx.get(f"{url}/v1/models/meta-llama/Llama-3.1-8B")
    assert model.id == "meta-llama/Llama-3.1-8B"
    assert unquoted.json()["id"] == "meta-llama/Llama-3.1-8B"


def test_models_retrieve_behind_a_wildcard_asks_the_upstream(fake_upstream: Fake) -> None:
    app = guard_app(fake_upstream.url, [PASSTHROUGH])
    with serve_in_thread(app) as url:
        assert client(url).models.retrieve("fake-model").id == "fake-model"
        with pytest.raises(openai.NotFoundError):
            client(url).models.retrieve("not-upstream")


def test_a_restricted_key_sees_only_its_models(fake_upstream: Fake, tmp_path: Path) -> None:
    from guard.ops.keys import hash_key

    keys = write_policy(
        tmp_path,
        f"keys:\n  - name: k\n    sha256: {hash_key('sk-k-0123456789')}\n    models: [alias-a]\n",
        "keys.yaml",
    )
    policy = write_policy(tmp_path, ALIASES)
    with serve_in_thread(guard_app(fake_upstream.url, [policy], keys_file=keys)) as url:
        api = client(url, "sk-k-0123456789")
        assert [m.id for m in api.models.list()] == ["alias-a"]
        assert api.models.retrieve("alias-a").id == "alias-a"
        with pytest.raises(openai.NotFoundError):
            api.models.retrieve("fake-model")
        with pytest.raises(openai.AuthenticationError):
            client(url, "sk-wrong").models.retrieve("alias-a")
