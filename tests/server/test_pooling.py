"""Embeddings and vLLM's pooling family through guard: forwarded untouched where the
policy enables them, 404 everywhere else, behind the same keys, limits, metrics, audit
and (where the policy asks) input rails as chat."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from guard.ops.keys import hash_key
from guard.testing.fake_pooling import embedding_of
from tests.conftest import Fake, guard_app, listing_rails
from tests.conftest import write_policy as write_file
from tests.scrape import metric
from tests.servers import serve_in_thread


def write_policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    """A policy file; the lists of rails it does not give are written out empty."""
    return write_file(tmp_path, listing_rails(text), name)


SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"
EVERY_ENDPOINT = """
endpoints:
  pooling: true
  classify: true
  score: true
  rerank: true
  tokenize: true
  detokenize: true
"""
POOLING = (
    "name: pool\nmodels: {embedder: fake-model, fake-model: null, reject: null}\n" + EVERY_ENDPOINT
)
PLAIN = "name: plain\nmodels: {plain: fake-model}\n"
RAILS = """
input_rails_mode: sequential
input_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
    action: block
"""

TEXT_PART = {"type": "text", "text": "x"}
REQUESTS: dict[str, dict[str, Any]] = {
    "/v1/embeddings": {"input": ["one two", "three"], "encoding_format": "float"},
    "/pooling": {"input": "one two", "task": "embed"},
    "/classify": {"input": ["a safe text", "an unsafe text"]},
    "/score": {"text_1": "one two", "text_2": ["two", "three"]},
    "/v1/score": {"queries": "one two", "documents": ["one", "four"]},
    "/rerank": {"query": "one two", "documents": ["three", "two one"], "top_n": 1},
    "/v1/rerank": {"query": "one", "documents": ["one", {"content": [TEXT_PART]}]},
    "/v2/rerank": {"query": "one", "documents": ["two", "one"]},
    "/tokenize": {"prompt": "one two three", "return_token_strs": True},
    "/detokenize": {"tokens": [1, 2, 3]},
}  # fmt: skip
VLLM_ONLY = sorted(set(REQUESTS) - {"/v1/embeddings"})


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def post(url: str, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)


def without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


@pytest.fixture
def pool_url(fake_upstream: Fake, tmp_path: Path) -> Iterator[str]:
    policies = [write_policy(tmp_path, POOLING), write_policy(tmp_path, PLAIN, "plain.yaml")]
    with serve_in_thread(guard_app(fake_upstream.url, policies)) as url:
        yield url


def test_openai_client_embeds_through_guard(pool_url: str, fake_upstream: Fake) -> None:
    """The client asks for base64 by default and decodes it: the vectors arrive exact."""
    answer = client(pool_url).embeddings.create(model="embedder", input=["hello world", "bye"])
    assert [item.embedding for item in answer.data] == [
        embedding_of("hello world"),
        embedding_of("bye"),
    ]
    assert answer.usage.prompt_tokens == 3 and answer.usage.total_tokens == 3
    assert answer.model == "fake-model"  # what the upstream reports, as for chat
    assert answer.model_extra is not None and answer.model_extra["guard"]["policy"] == "pool"
    sent = fake_upstream.last_request()
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"]["model"] == "fake-model"
    assert sent["body"]["encoding_format"] == "base64"
    floats = client(pool_url).embeddings.create(
        model="embedder", input="hello world", encoding_format="float", dimensions=4
    )
    assert floats.data[0].embedding == embedding_of("hello world", 4)


@pytest.mark.parametrize("path", sorted(REQUESTS))
def test_an_enabled_endpoint_is_forwarded_untouched_both_ways(
    pool_url: str, fake_upstream: Fake, path: str
) -> None:
    """Every field guard does not interpret reaches the upstream as sent; the answer
    comes back as the upstream sent it, with ``guard`` added."""
    extra = {"user": "u-1", "priority": 0, "truncate_prompt_tokens": 16, "vendor_field": [1, {}]}
    body = {"model": "embedder", **REQUESTS[path], **extra}
    response = post(pool_url, path, body)
    assert response.status_code == 200, response.text
    assert response.headers["x-guard-policy"] == "pool"
    sent = fake_upstream.last_request()
    assert sent["path"] == path
    assert sent["body"] == {**body, "model": "fake-model"}
    direct = httpx.post(f"{fake_upstream.url}{path}", json=sent["body"]).json()
    assert without(response.json(), "guard", "created") == without(direct, "created")
    assert response.json()["guard"]["verdict"] == "pass"


@pytest.mark.parametrize("path", VLLM_ONLY)
def test_a_vllm_endpoint_the_policy_does_not_list_is_404(
    pool_url: str, fake_upstream: Fake, path: str
) -> None:
    before = fake_upstream.app.state.received.count
    response = post(pool_url, path, {"model": "plain", **REQUESTS[path]})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "endpoint_not_enabled" and error["type"] == "invalid_request_error"
    assert fake_upstream.app.state.received.count == before


def test_embeddings_are_served_unless_the_policy_turns_them_off(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(
        tmp_path, "name: p\nmodels: {'*': null}\nendpoints: {embeddings: false}\n"
    )
    before = fake_upstream.app.state.received.count
    with (
        serve_in_thread(guard_app(fake_upstream.url, [policy])) as url,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        client(url).embeddings.create(model="fake-model", input="hi")
    assert caught.value.code == "endpoint_not_enabled"
    assert fake_upstream.app.state.received.count == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/messages", "/v1/messages/count_tokens", "/invocations", "/v2/embed",
        "/generative_scoring", "/v1/chat/completions/batch", "/inference/v1/generate",
        "/v1/audio/transcriptions", "/v1/systemone", "/cohere/v2/chat", "/v1/pooling",
        "/v1/classify", "/v1/tokenize", "/v1/completions/render",
    ],
)  # fmt: skip
def test_a_model_facing_path_guard_has_no_route_for_is_404(
    pool_url: str, fake_upstream: Fake, path: str
) -> None:
    before = fake_upstream.app.state.received.count
    response = post(pool_url, path, {"model": "embedder", "input": "hi", "messages": []})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert fake_upstream.app.state.received.count == before


KEYS = """
keys:
  - name: full
    sha256: {full}
    models: "*"
  - name: narrow
    sha256: {narrow}
    models: [plain]
  - name: metered
    sha256: {metered}
    models: "*"
    rate_limit: {{requests_per_minute: 1}}
  - name: frugal
    sha256: {frugal}
    models: "*"
    rate_limit: {{tokens_per_minute: 2}}
"""


@pytest.fixture
def keyed_url(fake_upstream: Fake, tmp_path: Path) -> Iterator[str]:
    keys = write_file(
        tmp_path,
        KEYS.format(**{name: hash_key(f"sk-{name}-0123456789") for name in KEYS_NAMES}),
        "keys.yaml",
    )
    policies = [write_policy(tmp_path, POOLING), write_policy(tmp_path, PLAIN, "plain.yaml")]
    app = guard_app(fake_upstream.url, policies, keys_file=keys, audit_log=tmp_path / "audit.log")
    with serve_in_thread(app) as url:
        yield url


KEYS_NAMES = ("full", "narrow", "metered", "frugal")


def key(name: str) -> str:
    return f"sk-{name}-0123456789"


@pytest.mark.parametrize("path", sorted(REQUESTS))
def test_keys_and_request_limits_apply_to_every_forwarded_endpoint(
    keyed_url: str, fake_upstream: Fake, path: str
) -> None:
    body = {"model": "embedder", **REQUESTS[path]}
    before = fake_upstream.app.state.received.count
    assert post(keyed_url, path, body).status_code == 401
    assert post(keyed_url, path, body, "sk-wrong").status_code == 401
    forbidden = post(keyed_url, path, body, key("narrow"))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "model_not_allowed"
    assert fake_upstream.app.state.received.count == before
    assert post(keyed_url, path, body, key("full")).status_code == 200
    assert post(keyed_url, path, body, key("metered")).status_code == 200
    limited = post(keyed_url, path, body, key("metered"))
    assert limited.status_code == 429 and "retry-after" in limited.headers


def test_embedding_tokens_are_charged_to_the_key(keyed_url: str) -> None:
    body = {"model": "embedder", "input": "one two three"}
    assert post(keyed_url, "/v1/embeddings", body, key("frugal")).status_code == 200
    second = post(keyed_url, "/v1/embeddings", body, key("frugal"))
    assert second.status_code == 429 and second.json()["error"]["type"] == "tokens"


def test_a_route_guard_does_not_have_needs_a_key_too(keyed_url: str) -> None:
    """The gate stands before routing: an unauthenticated caller learns nothing."""
    assert post(keyed_url, "/v1/messages", {}).status_code == 401
    assert post(keyed_url, "/v1/messages", {}, key("full")).status_code == 404
    assert httpx.get(f"{keyed_url}/health").status_code == 200


def test_forwarded_requests_are_counted_and_audited(keyed_url: str, tmp_path: Path) -> None:
    body = {"model": "embedder", "query": "one", "documents": ["one", "two"]}
    response = post(keyed_url, "/rerank", body, key("full"))
    tokens = response.json()["usage"]["total_tokens"]
    labels = {"policy": "pool", "model": "embedder", "key": "full", "endpoint": "/rerank"}
    assert metric(keyed_url, "guard_requests_total", status="200", **labels) == 1
    assert metric(keyed_url, "guard_tokens_total", policy="pool", kind="prompt") == tokens
    count = "guard_request_duration_seconds_count"
    assert metric(keyed_url, count, endpoint="/rerank", policy="pool") == 1
    [line] = [json.loads(text) for text in (tmp_path / "audit.log").read_text().splitlines()]
    assert line["path"] == "/rerank" and line["key"] == "full" and line["policy"] == "pool"
    assert line["upstream_model"] == "fake-model" and line["usage"]["total_tokens"] == tokens
    assert line["request_id"] == response.headers["x-request-id"]


@pytest.fixture
def railed(fake_upstream: Fake, tmp_path: Path) -> Iterator[str]:
    """Rails on, every endpoint listed with its default, tokenize judged on request."""
    policy = POOLING.replace("\n  tokenize: true", "\n  tokenize: {input_rails: true}") + RAILS
    with serve_in_thread(guard_app(fake_upstream.url, [write_policy(tmp_path, policy)])) as url:
        yield url


def test_input_rails_leave_embeddings_alone_by_default(railed: str, fake_upstream: Fake) -> None:
    answer = client(railed).embeddings.create(model="embedder", input=f"my key {SECRET}")
    assert answer.model_extra is not None
    assert answer.model_extra["guard"]["verdicts"] == []
    assert SECRET in fake_upstream.last_request()["body"]["input"]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


X_PART = {"type": "text", "text": "{x}"}
EMBEDDING_CASES: dict[str, dict[str, Any]] = {
    "input text": {"input": "my key {x}"},
    "second input text": {"input": ["hello", "my key {x}"]},
    "messages": {"messages": [user("hi"), user("{x}")]},
    "input as messages": {"input": [{"role": "system", "content": [X_PART]}]},
    "batch of conversations": {"messages": [[user("hi")], [user("{x}")]]},
    "input besides messages": {"messages": [user("hi")], "input": "{x}"},
    "chat_template_kwargs": {"input": "hi", "chat_template_kwargs": {"persona": "{x}"}},
}  # fmt: skip
EMBEDDINGS_RAILED = "name: p\nmodels: {'*': null}\nendpoints: {embeddings: {input_rails: true}}\n"


def fill(value: Any, text: str) -> Any:
    return json.loads(json.dumps(value).replace("{x}", text))


@pytest.mark.parametrize("case", sorted(EMBEDDING_CASES))
def test_input_rails_on_embeddings_block_a_secret_anywhere(
    fake_upstream: Fake, tmp_path: Path, case: str
) -> None:
    policy = write_policy(tmp_path, EMBEDDINGS_RAILED + RAILS)
    body = {"model": "fake-model", **EMBEDDING_CASES[case]}
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        before = fake_upstream.app.state.received.count
        blocked = post(url, "/v1/embeddings", fill(body, SECRET))
        assert fake_upstream.app.state.received.count == before
        passed = post(url, "/v1/embeddings", fill(body, "the weather is mild"))
    assert blocked.status_code == 400, blocked.text
    assert blocked.json()["error"]["code"] == "content_filter"
    assert blocked.json()["guard"]["verdict"] == "block"
    assert SECRET not in blocked.text
    assert passed.status_code == 200, passed.text
    assert passed.json()["guard"]["verdict"] == "pass"


def test_the_openai_client_sees_a_blocked_embedding_as_content_filter(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, EMBEDDINGS_RAILED + RAILS)
    with (
        serve_in_thread(guard_app(fake_upstream.url, [policy])) as url,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client(url).embeddings.create(model="fake-model", input=["ok", SECRET])
    assert caught.value.code == "content_filter"


POOLING_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "pooling input": ("/pooling", {"input": ["ok", "{x}"]}),
    "pooling messages": ("/pooling", {"messages": [{"role": "user", "content": "{x}"}]}),
    "classify input": ("/classify", {"input": "{x}"}),
    "score text_2": ("/score", {"text_1": "q", "text_2": ["a", "{x}"]}),
    "score queries": ("/v1/score", {"queries": "{x}", "documents": ["a"]}),
    "score items": ("/v1/score", {"queries": "q", "items": ["{x}"]}),
    "score data_1": ("/score", {"data_1": "{x}", "data_2": "a"}),
    "rerank query": ("/rerank", {"query": "{x}", "documents": ["a"]}),
    "rerank document": ("/v1/rerank", {"query": "q", "documents": ["a", "{x}"]}),
    "rerank content part": (
        "/v2/rerank",
        {"query": "q", "documents": [{"content": [{"type": "text", "text": "{x}"}]}]},
    ),
    "rerank instruction": ("/rerank", {"query": "q", "documents": ["a"], "instruction": "{x}"}),
    "tokenize prompt": ("/tokenize", {"prompt": "{x}"}),
    "tokenize messages": ("/tokenize", {"messages": [{"role": "user", "content": "{x}"}]}),
    "tokenize tools": ("/tokenize", {"messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "f", "description": "{x}"}}]}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(POOLING_CASES))
def test_input_rails_judge_every_text_of_a_listed_endpoint(
    railed: str, fake_upstream: Fake, case: str
) -> None:
    path, fields = POOLING_CASES[case]
    body = {"model": "embedder", **fields}
    before = fake_upstream.app.state.received.count
    blocked = post(railed, path, fill(body, SECRET))
    assert blocked.status_code == 400, blocked.text
    assert blocked.json()["error"]["code"] == "content_filter"
    assert fake_upstream.app.state.received.count == before
    passed = post(railed, path, fill(body, "the weather is mild"))
    assert passed.status_code == 200, passed.text


def test_tokenize_is_not_judged_by_default(fake_upstream: Fake, tmp_path: Path) -> None:
    """Only the tokenizer reads a tokenize request (docs/safety.md)."""
    policy = write_policy(tmp_path, POOLING + RAILS)
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        response = post(url, "/tokenize", {"model": "embedder", "prompt": SECRET})
    assert response.status_code == 200 and response.json()["guard"]["verdicts"] == []


def test_what_no_rail_reads_is_refused_on_a_judged_endpoint(
    railed: str, fake_upstream: Fake, tmp_path: Path
) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    for path, fields, param in (
        ("/pooling", {"input": [101, 102]}, "input"),
        ("/classify", {"input": ["ok", [101, 102]]}, "input[1]"),
        ("/rerank", {"query": "q", "documents": [{"content": [image]}]}, "documents[0].content[0]"),
        ("/pooling", {"data": {"pixels": [0, 1]}, "task": "plugin"}, "data"),
        ("/pooling", {"input": [{"role": "user", "content": [image]}]}, "input[0].content[0]"),
    ):
        response = post(railed, path, {"model": "embedder", **fields})
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "unjudgeable_input" and error["param"] == param
    policy = write_policy(
        tmp_path, POOLING + RAILS + "inputs: {allow_unjudged: [token_ids]}\n", "allow.yaml"
    )
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        allowed = post(url, "/pooling", {"model": "embedder", "input": [101, 102]})
    assert allowed.status_code == 200
    assert allowed.json()["guard"]["input"]["unjudged"][0]["field"] == "input"


def test_an_input_rail_redacts_what_is_embedded(fake_upstream: Fake, tmp_path: Path) -> None:
    rails = "input_rails:\n  - kind: regex\n    presets: [pii]\n    action: redact\n"
    policy = write_policy(tmp_path, EMBEDDINGS_RAILED + rails)
    text = "write to bob@example.com"
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        answer = client(url).embeddings.create(model="fake-model", input=["hi", text])
    assert fake_upstream.last_request()["body"]["input"] == ["hi", "write to [REDACTED]"]
    assert answer.data[1].embedding == embedding_of("write to [REDACTED]")


def test_bad_bodies_get_a_400_naming_the_parameter(pool_url: str) -> None:
    cases: list[tuple[str, Any, str | None]] = [
        ("/v1/embeddings", {"input": "hi"}, "model"),
        ("/v1/embeddings", {"model": 5, "input": "hi"}, "model"),
        ("/v1/embeddings", {"model": "embedder"}, "input"),
        ("/v1/embeddings", {"model": "embedder", "input": 5}, "input"),
        ("/v1/embeddings", {"model": "embedder", "messages": "hi"}, "messages"),
        ("/rerank", {"query": "q", "documents": []}, "model"),
        ("/tokenize", [1, 2], None),
    ]
    for path, body, param in cases:
        response = post(pool_url, path, body)
        assert response.status_code == 400, (path, body, response.text)
        assert response.json()["error"]["param"] == param, (path, body)
    broken = httpx.post(f"{pool_url}/score", content=b"{not json", timeout=10)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"


def test_an_upstream_4xx_passes_through(pool_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(pool_url).embeddings.create(model="reject", input="hi")
    assert "maximum context length" in caught.value.message
    response = post(pool_url, "/rerank", {"model": "reject", "query": "q", "documents": ["a"]})
    assert response.status_code == 400
    assert "maximum context length" in response.json()["error"]["message"]


def test_an_unknown_model_is_404_on_every_endpoint(pool_url: str) -> None:
    for path in REQUESTS:
        response = post(pool_url, path, {"model": "nope", **REQUESTS[path]})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"


def test_base64_embeddings_pass_through_byte_for_byte(pool_url: str) -> None:
    body = {"model": "embedder", "input": "hi", "encoding_format": "base64"}
    encoded = post(pool_url, "/v1/embeddings", body).json()["data"][0]["embedding"]
    vector = list(struct.unpack("<8f", base64.b64decode(encoded)))
    assert vector == embedding_of("hi")


def test_a_shadow_judges_what_its_own_endpoints_say(fake_upstream: Fake, tmp_path: Path) -> None:
    """A shadow policy whose rails judge embeddings records what it would have done; on
    an endpoint it does not judge, it would have done nothing, and records nothing."""
    active = "name: lenient\nmodels: {'*': null}\nshadow: candidate\nendpoints: {rerank: true}\n"
    candidate = (
        "name: candidate\nkeys_only: true\nmodels: {'*': null}\n"
        "endpoints: {embeddings: {input_rails: true}}\n"
    )
    policies = [
        write_policy(tmp_path, active),
        write_policy(tmp_path, candidate + RAILS, "candidate.yaml"),
    ]
    log = tmp_path / "audit.log"
    with serve_in_thread(guard_app(fake_upstream.url, policies, audit_log=log)) as url:
        embedded = post(url, "/v1/embeddings", {"model": "m", "input": SECRET})
        reranked = post(url, "/rerank", {"model": "m", "query": SECRET, "documents": ["a"]})
    assert embedded.status_code == reranked.status_code == 200
    assert "shadow" not in embedded.json()["guard"]
    deadline = time.monotonic() + 10  # the shadow writes its line when it is done
    while len(log.read_text().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    by_path = {line["path"]: line for line in map(json.loads, log.read_text().splitlines())}
    assert by_path["/v1/embeddings"]["shadow"]["verdict"] == "block"
    assert "shadow" not in by_path["/rerank"]


def test_an_upstream_without_the_endpoint_is_a_clear_404(tmp_path: Path) -> None:
    """vLLM registers each pooling route only for a model that supports it, and answers
    FastAPI's ``{"detail": "Not Found"}`` elsewhere (the demo model has no embeddings)."""

    async def not_found(request: Request) -> Response:
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    generate_only = Starlette(routes=[Route("/{path:path}", not_found, methods=["POST"])])
    policy = write_policy(tmp_path, "name: p\nmodels: {'*': null}\n")
    with (
        serve_in_thread(generate_only) as upstream,
        serve_in_thread(guard_app(upstream, [policy])) as url,
    ):
        response = post(url, "/v1/embeddings", {"model": "smollm2", "input": "hi"})
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "does not serve /v1/embeddings (Not Found)" in message
