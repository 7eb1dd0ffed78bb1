"""POST /v1/responses through the real app, with the official ``openai`` client (and the
OpenAI Agents SDK) against the fake upstream: what passes through untouched, what the
rails stop, and how, plain and streamed. Every shape is checked against the ``openai``
package's own types."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from guard.ops.keys import hash_key
from tests.conftest import Fake, guard_app, listing_rails
from tests.conftest import write_policy as write_file
from tests.ops.test_accounting import audit_lines
from tests.scrape import metric
from tests.servers import free_port, serve_in_thread


def write_policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    """A policy file; the lists of rails it does not give are written out empty."""
    return write_file(tmp_path, listing_rails(text), name)


RESPONSES = "/v1/responses"
SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"
REFUSAL = "I'm sorry, but I can't help with that."
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ANSWER = 'think: let me see call: lookup {"city": "Paris"} say: the weather is mild today'

INPUT_SECRETS = """
input_rails_mode: sequential
input_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
    action: block
"""


def forbidding(phrase: str, action: str = "block", window: int = 3) -> str:
    return f"""
streaming: {{window_tokens: {window}, chunk_tokens: 2, context_tokens: 4}}
output_rails:
  - kind: regex
    name: forbidden
    patterns: ["{phrase}"]
    action: {action}
"""


SECRETS_OUT = """
output_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
    action: redact
"""


@contextmanager
def guarded(upstream: Fake, tmp_path: Path, rails: str = "", **settings: Any) -> Iterator[str]:
    policy = write_policy(tmp_path, f"name: responses\nmodels: {{'*': null}}\n{rails}")
    with serve_in_thread(guard_app(upstream.url, [policy], **settings)) as url:
        yield url


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}{RESPONSES}", json=body, timeout=30)


def raw_events(url: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) of each event of a stream, each checked by the openai types."""
    with httpx.stream("POST", f"{url}{RESPONSES}", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()
    events = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        name, data = block.split(b"\n", 1)
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        payload = orjson.loads(data[6:])
        EVENTS.validate_python(payload)
        assert payload["type"] == name[7:].decode()
        events.append((name[7:].decode(), payload))
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    return events


def streamed_text(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(p.get("delta", "") for kind, p in events if kind.endswith(".delta"))


def without_times(value: Any) -> Any:
    """``value`` less what differs between two calls (creation times) and ``guard``."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in ("created_at", "guard")}
    if isinstance(value, list | tuple):
        return [without_times(v) for v in value]
    return value


# -- passing through --------------------------------------------------------------


def test_a_plain_response_and_its_request_pass_untouched(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    request = {
        "model": "fake-model",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": ANSWER}]}],
        "instructions": "Be brief.",
        "metadata": {"team": "a"},
        "store": False,
        "previous_response_id": "resp_earlier",
        "text": {"format": {"type": "text"}},
        "reasoning": {"effort": "low"},
        "top_logprobs": 2,
        "extra_body": {"top_k": 5},  # a vLLM extra
    }
    with guarded(fake_upstream, tmp_path) as url:
        through = client(url).responses.create(**request)  # type: ignore[call-overload]
        sent = fake_upstream.last_request()["body"]
    direct = client(fake_upstream.url).responses.create(**request)  # type: ignore[call-overload]
    assert sent == fake_upstream.last_request()["body"]  # the same request reached the upstream
    assert without_times(through.model_dump()) == without_times(direct.model_dump())
    assert through.usage == direct.usage and through.usage is not None
    assert [item.type for item in through.output] == ["reasoning", "message", "function_call"]
    assert through.output_text == "the weather is mild today"
    assert through.model_extra is not None and through.model_extra["guard"]["verdict"] == "pass"


def test_a_stream_passes_event_for_event_without_output_rails(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    body = {"model": "fake-model", "input": ANSWER}
    direct = raw_events(fake_upstream.url, body)
    with guarded(fake_upstream, tmp_path, INPUT_SECRETS) as url:
        through = raw_events(url, body)
        typed = list(client(url).responses.create(model="fake-model", input=ANSWER, stream=True))
    assert without_times(through) == without_times(direct)
    assert [e.type for e in typed] == [kind for kind, _ in direct]
    first, last = through[0][1]["response"], through[-1][1]["response"]
    assert first["guard"]["input"] == {"judged": ["input"]}
    assert (
        last["guard"]["verdict"] == "pass" and last["usage"] == direct[-1][1]["response"]["usage"]
    )


def test_output_rails_that_pass_keep_every_event_and_text(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    body = {"model": "fake-model", "input": ANSWER}
    direct = raw_events(fake_upstream.url, body)
    with guarded(fake_upstream, tmp_path, forbidding("zebra quokka")) as url:
        through = raw_events(url, body)
    assert [kind for kind, _ in through] == [kind for kind, _ in direct]
    assert without_times(through) == without_times(direct)  # texts, items, ids, usage
    guard = through[-1][1]["response"]["guard"]
    assert guard["stream_checks"] >= 2 and guard["verdict"] == "pass"


# -- input rails ------------------------------------------------------------------

HARMFUL_PLACES = {
    "instructions": lambda x: {"instructions": x, "input": "say: hi"},
    "an earlier input item": lambda x: {
        "input": [
            {"role": "user", "content": x},
            {"role": "assistant", "content": "noted"},
            {"role": "user", "content": "say: hi"},
        ]
    },
    "a function call output": lambda x: {
        "input": [
            {"role": "user", "content": "what is the key?"},
            {"type": "function_call", "call_id": "c1", "name": "vault", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": x},
        ]
    },
    "a tool description": lambda x: {
        "input": "say: hi",
        "tools": [{"type": "function", "name": "vault", "description": x, "parameters": {}}],
    },
}


@pytest.mark.parametrize("place", sorted(HARMFUL_PLACES))
def test_harmful_input_is_blocked_before_the_upstream_plain_and_streamed(
    fake_upstream: Fake, tmp_path: Path, place: str
) -> None:
    make = HARMFUL_PLACES[place]
    received = fake_upstream.app.state.received
    with guarded(fake_upstream, tmp_path, INPUT_SECRETS) as url:
        before = received.count
        blocked = client(url).responses.create(model="fake-model", **make(f"the key {SECRET}"))
        events = list(client(url).responses.create(model="fake-model", stream=True, **make(SECRET)))
        assert received.count == before, "the blocked text reached the upstream"
        passed = client(url).responses.create(model="fake-model", **make("the key is safe"))
        assert received.count == before + 1
    assert blocked.status == "incomplete" and blocked.incomplete_details is not None
    assert blocked.incomplete_details.reason == "content_filter"
    assert blocked.output_text == REFUSAL and SECRET not in blocked.model_dump_json()
    assert blocked.model_extra is not None and blocked.model_extra["guard"]["verdict"] == "block"
    assert [e.type for e in events][-1] == "response.incomplete"
    assert "".join(getattr(e, "delta", "") for e in events) == REFUSAL
    assert passed.status == "completed" and passed.model_extra is not None
    assert passed.model_extra["guard"]["verdict"] == "pass"


def test_an_input_block_as_an_http_error(fake_upstream: Fake, tmp_path: Path) -> None:
    rails = INPUT_SECRETS + "refusal: {http_error: true}\n"
    with guarded(fake_upstream, tmp_path, rails) as url:
        with pytest.raises(openai.BadRequestError) as caught:
            client(url).responses.create(model="m", input=f"my key {SECRET}")
        with pytest.raises(openai.BadRequestError):
            client(url).responses.create(model="m", input=f"my key {SECRET}", stream=True)
    assert caught.value.code == "content_filter"


def test_stored_history_is_forwarded_and_named_or_refused_by_policy(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    body = {"model": "m", "input": "say: hi", "previous_response_id": "resp_1", "store": True}
    with guarded(fake_upstream, tmp_path, INPUT_SECRETS) as url:
        allowed = post(url, body)
        assert fake_upstream.last_request()["body"]["previous_response_id"] == "resp_1"
    assert allowed.status_code == 200
    assert allowed.json()["guard"]["input"]["unjudged"] == [
        {
            "field": "previous_response_id",
            "kind": "stored_history",
            "reason": "history the upstream stored: judged when it was sent",
        }
    ]
    refuse = INPUT_SECRETS + "inputs: {previous_response: refuse}\n"
    with guarded(fake_upstream, tmp_path, refuse) as url:
        before = fake_upstream.app.state.received.count
        refused = post(url, body)
        assert post(url, {**body, "previous_response_id": None}).status_code == 200
        assert fake_upstream.app.state.received.count == before + 1
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "previous_response_id"
    assert refused.json()["error"]["code"] == "stored_history_refused"


# -- output rails -----------------------------------------------------------------

PHRASE = "zebra quokka narwhal"
FILLER = "the cat sat on a mat and then it ran far away from home"


def test_an_output_block_returns_the_refusal_response(fake_upstream: Fake, tmp_path: Path) -> None:
    with guarded(fake_upstream, tmp_path, forbidding(PHRASE)) as url:
        blocked = client(url).responses.create(model="m", input=f"say: {FILLER} {PHRASE}")
        raw = post(url, {"model": "m", "input": f"call: f {{'a': '{PHRASE}'}} say: fine"})
    assert blocked.status == "incomplete" and blocked.incomplete_details is not None
    assert blocked.incomplete_details.reason == "content_filter"
    assert [item.type for item in blocked.output] == ["message"]
    assert blocked.output_text == REFUSAL
    assert blocked.usage is not None and blocked.usage.output_tokens > 0  # tokens were spent
    assert blocked.model_extra is not None and blocked.model_extra["guard"]["verdict"] == "block"
    assert PHRASE not in raw.text  # function call arguments are judged too
    assert raw.json()["status"] == "incomplete"


def test_an_output_block_as_an_http_error(fake_upstream: Fake, tmp_path: Path) -> None:
    rails = forbidding(PHRASE) + "refusal: {http_error: true}\n"
    with guarded(fake_upstream, tmp_path, rails) as url:
        response = post(url, {"model": "m", "input": f"say: {PHRASE}"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "content_filter"
    assert PHRASE not in response.text and response.json()["guard"]["verdict"] == "block"


def test_a_rail_s_own_refusal_answers_a_response(fake_upstream: Fake, tmp_path: Path) -> None:
    own = "    refusal: Remove the key, then ask again.\n"
    rails = INPUT_SECRETS + own + forbidding(PHRASE) + "    refusal: That answer was withheld.\n"
    with guarded(fake_upstream, tmp_path, rails) as url:
        keyed = client(url).responses.create(model="m", input=f"my key {SECRET}")
        events = list(client(url).responses.create(model="m", input=SECRET, stream=True))
        answered = client(url).responses.create(model="m", input=f"say: {FILLER} {PHRASE}")
    assert keyed.output_text == "Remove the key, then ask again."
    assert "".join(getattr(e, "delta", "") for e in events) == "Remove the key, then ask again."
    assert answered.status == "incomplete" and answered.output_text == "That answer was withheld."


def test_a_streamed_block_ends_with_response_incomplete_and_stops_generation(
    paced_upstream: Fake, tmp_path: Path
) -> None:
    streams = paced_upstream.app.state.streams
    before = streams.count("cancelled")
    answer = f"say: {FILLER} {PHRASE} {FILLER} {FILLER}"
    with guarded(paced_upstream, tmp_path, forbidding(PHRASE)) as url:
        events = raw_events(url, {"model": "m", "input": answer})
        for _ in range(300):  # bounded wait for the cancellation to reach the upstream
            if streams.count("cancelled") > before:
                break
            httpx.get(f"{url}/health")
    kinds = [kind for kind, _ in events]
    assert kinds[-2:] == ["response.output_item.done", "response.incomplete"]
    text = streamed_text(events)
    assert text and FILLER.startswith(text.strip())
    for word in PHRASE.split():
        assert word not in orjson.dumps(events).decode()
    item = events[-2][1]["item"]
    assert item["status"] == "incomplete" and item["content"][0]["text"] == text
    final = events[-1][1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "content_filter"}
    assert final["output"] == [item] and final["guard"]["verdict"] == "block"
    assert Response.model_validate(final).output_text == text
    assert streams.count("cancelled") == before + 1


def test_a_redaction_rewrites_every_field_plain_and_streamed(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    answer = f'call: send {{"key": "{SECRET}"}} say: your key is {SECRET} ok'
    body = {"model": "m", "input": answer, "top_logprobs": 1}
    with guarded(fake_upstream, tmp_path, SECRETS_OUT) as url:
        plain = post(url, body)
        events = raw_events(url, body)
    assert plain.status_code == 200 and SECRET not in plain.text
    result = Response.model_validate(plain.json())
    assert result.output_text == "your key is [REDACTED] ok"
    assert result.output[1].type == "function_call"
    assert result.output[1].arguments == '{"key": "[REDACTED]"}'
    assert plain.json()["output"][0]["content"][0]["logprobs"] is None
    assert plain.json()["guard"]["logprobs_dropped"] == [0]
    assert SECRET not in orjson.dumps(events).decode()
    done = {p["type"]: p for _, p in events if p["type"].endswith(".done")}
    assert done["response.output_text.done"]["text"] == "your key is [REDACTED] ok"
    assert done["response.function_call_arguments.done"]["arguments"] == '{"key": "[REDACTED]"}'
    completed = Response.model_validate(events[-1][1]["response"])
    assert completed.output_text == "your key is [REDACTED] ok"


# -- what guard refuses, and errors -----------------------------------------------

BAD_BODIES = [
    ({"input": "hi"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": 5}, "input"),
    ({"model": "m", "input": [1]}, "input[0]"),
    ({"model": "m", "input": "hi", "instructions": 3}, "instructions"),
    ({"model": "m", "input": "hi", "tools": "all"}, "tools"),
    ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "hi", "stream": "yes please"}, "stream"),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
def test_a_bad_body_gets_a_400_naming_the_parameter(
    fake_upstream: Fake, tmp_path: Path, body: dict[str, Any], param: str
) -> None:
    with guarded(fake_upstream, tmp_path, INPUT_SECRETS) as url:
        response = post(url, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "stage",
    [
        "best_of_n: {n: 2, reward: {kind: vllm_reward, model: r, base_url: 'http://127.0.0.1:9'}}",
        "constitutional:\n  trigger: always\n  principles: [{name: p, critique: c, revision: r}]",
    ],
)
def test_a_stage_guard_cannot_run_here_is_a_400_never_skipped(
    fake_upstream: Fake, tmp_path: Path, stage: str
) -> None:
    received = fake_upstream.app.state.received
    with guarded(fake_upstream, tmp_path, stage + "\n") as url:
        before = received.count
        plain = post(url, {"model": "m", "input": "hi"})
        streamed = post(url, {"model": "m", "input": "hi", "stream": True})
        assert received.count == before
        chat = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "say: ok"}]},
            timeout=30,
        )
    for response in (plain, streamed):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "unsupported_on_endpoint"
        assert "/v1/chat/completions" in response.json()["error"]["message"]
    assert chat.status_code == 200  # the same policy still serves chat


def test_upstream_errors_keep_their_status(fake_upstream: Fake, tmp_path: Path) -> None:
    with guarded(fake_upstream, tmp_path) as url:
        with pytest.raises(openai.BadRequestError) as rejected:
            client(url).responses.create(model="reject", input="hi")
        crashed = post(url, {"model": "crash", "input": "hi"})
    assert "maximum context length" in rejected.value.message
    assert crashed.status_code == 502


@pytest.mark.parametrize("rails", ["", forbidding(PHRASE)], ids=["passthrough", "output rails"])
@pytest.mark.parametrize("model", ["die-mid-stream", "no-done"])
def test_a_broken_stream_ends_with_an_error_event(
    fake_upstream: Fake, tmp_path: Path, rails: str, model: str
) -> None:
    with guarded(fake_upstream, tmp_path, rails) as url:
        events = raw_events(url, {"model": model, "input": f"say: {FILLER}"})
    kind, error = events[-1]
    assert kind == "error" and error["code"] == "upstream_stream_broken"
    assert not any(k in ("response.completed", "response.incomplete") for k, _ in events)


def test_an_output_rail_that_cannot_judge_sends_nothing_unjudged(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    rails = f"""
output_rails:
  - kind: llm_judge
    name: judge-out
    base_url: http://127.0.0.1:{free_port()}
    model: fake-model
    question: Is this answer harmful?
    on_error: block
"""
    with guarded(fake_upstream, tmp_path, rails) as url:
        plain = post(url, {"model": "m", "input": "say: here is the answer"})
        events = raw_events(url, {"model": "m", "input": "say: here is the answer"})
    assert plain.status_code == 503 and plain.json()["error"]["code"] == "rail_error"
    assert streamed_text(events) == "" and "here is the answer" not in orjson.dumps(events).decode()
    assert events[-1][0] == "error" and events[-1][1]["code"] == "rail_error"


# -- keys, limits, metrics, audit -------------------------------------------------


def test_keys_limits_metrics_and_audit_as_for_chat(fake_upstream: Fake, tmp_path: Path) -> None:
    keys = write_file(
        tmp_path,
        f"keys:\n  - name: lean\n    sha256: {hash_key('sk-lean')}\n    models: '*'\n"
        "    rate_limit: {tokens_per_minute: 5}\n",
        "keys.yaml",
    )
    log = tmp_path / "audit.log"
    with guarded(fake_upstream, tmp_path, INPUT_SECRETS, keys_file=keys, audit_log=log) as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, "sk-wrong").responses.create(model="fake-model", input="say: hi")
        first = client(url, "sk-lean").responses.create(model="fake-model", input="say: hi there")
        with pytest.raises(openai.RateLimitError):  # the first used more than 5 tokens
            client(url, "sk-lean").responses.create(model="fake-model", input="say: hi")
        served = {"policy": "responses", "model": "*", "key": "lean"}
        assert metric(url, "guard_requests_total", status="200", **served) == 1
        refused = {"policy": "-", "model": "-", "key": "lean"}
        assert metric(url, "guard_requests_total", status="429", **refused) == 1
        assert first.usage is not None
        tokens = {"policy": "responses", "key": "lean"}
        assert metric(url, "guard_tokens_total", kind="prompt", **tokens) == (
            first.usage.input_tokens
        )
        assert metric(url, "guard_tokens_total", kind="completion", **tokens) == 2
    line = next(e for e in audit_lines(log, 3) if e["status"] == 200)
    assert line["path"] == RESPONSES and line["key"] == "lean"
    assert line["usage"]["total_tokens"] == first.usage.total_tokens
    assert [v["rail"] for v in line["verdicts"]] == ["secrets"]


def test_the_audit_text_and_a_shadow_policy_read_responses_too(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(
        tmp_path,
        "name: responses\nmodels: {'*': null}\nshadow: candidate\naudit: {include_text: true}\n"
        + forbidding(PHRASE),
    )
    candidate = write_policy(
        tmp_path,
        "name: candidate\nkeys_only: true\nmodels: {'*': null}\n" + INPUT_SECRETS + SECRETS_OUT,
        "candidate.yaml",
    )
    log = tmp_path / "audit.log"
    with serve_in_thread(guard_app(fake_upstream.url, [policy, candidate], audit_log=log)) as url:
        body = {"model": "m", "instructions": f"key {SECRET}", "input": "say: the key is safe"}
        assert post(url, body).status_code == 200
        assert streamed_text(raw_events(url, body)) == "the key is safe"
    plain, streamed = audit_lines(log, 2)
    for line in (plain, streamed):
        assert line["prompt"] == [f"key {SECRET}", "say: the key is safe"]
        assert line["answers"] == ["the key is safe"]
        assert line["shadow"]["verdict"] == "block"  # the shadow judged the instructions


# -- the OpenAI Agents SDK, with its default (Responses) model --------------------


def test_the_agents_sdk_runs_through_guard(fake_upstream: Fake, tmp_path: Path) -> None:
    agents = pytest.importorskip("agents")
    mark = fake_upstream.app.state.received.count
    agents.set_tracing_disabled(True)
    with guarded(fake_upstream, tmp_path, INPUT_SECRETS + forbidding(PHRASE)) as url:

        def agent() -> Any:  # a client per event loop: each run has its own
            agents.set_default_openai_client(
                openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            )
            return agents.Agent(name="helper", instructions="Be brief.", model="fake-model")

        result = agents.Runner.run_sync(agent(), "say: hello from the agent")
        streamed = asyncio.run(_streamed(agents, agent(), "say: streamed hello"))
        # The SDK takes an incomplete Response, plain or streamed, as a failed model call.
        with pytest.raises(agents.exceptions.ModelBehaviorError, match="content_filter"):
            agents.Runner.run_sync(agent(), f"say: {PHRASE}")
        with pytest.raises(agents.exceptions.ModelBehaviorError, match="content_filter"):
            asyncio.run(_streamed(agents, agent(), f"say: {PHRASE}"))
        sent = fake_upstream.app.state.received.since(mark)
    assert result.final_output == "hello from the agent"
    assert streamed.final_output == "streamed hello"
    assert [request["path"] for request in sent] == [RESPONSES] * 4  # the SDK's default API
    assert all(request["body"]["instructions"] == "Be brief." for request in sent)


async def _streamed(agents: Any, agent: Any, text: str) -> Any:
    run = agents.Runner.run_streamed(agent, text)
    async for _ in run.stream_events():
        pass
    return run
