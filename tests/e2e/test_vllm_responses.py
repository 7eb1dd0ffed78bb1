"""The Responses API through guard, against the real vLLM (CPU build) serving SmolLM2:
plain and streamed, untouched with the default policy, and with output rails on the
real event stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from guard.demo.vllm_server import VLLMServer
from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.servers import serve_in_thread

QUESTION = "What is the capital of France?"

RAILED = """
name: railed
models: {railed: smollm2}
streaming: {window_tokens: 4, chunk_tokens: 2, context_tokens: 8}
input_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
output_rails:
  - kind: regex
    name: no-paris
    patterns: ["(?i)paris"]
    action: redact
    replacement: "[CITY]"
"""


@pytest.fixture(scope="module")
def railed(vllm: VLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    path = tmp_path_factory.mktemp("policy") / "railed.yaml"
    path.write_text(RAILED)
    app = create_app(Settings(upstream_url=vllm.url), PolicySet.from_files([Path(path)]))
    with serve_in_thread(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_responses_create_plain_is_what_vllm_answers(
    guarded: openai.OpenAI, direct: openai.OpenAI
) -> None:
    request = {"input": QUESTION, "instructions": "Answer in one short sentence."}
    settings = {"temperature": 0.0, "max_output_tokens": 16}
    through = guarded.responses.create(model="demo", **request, **settings)  # type: ignore[call-overload]
    straight = direct.responses.create(model="smollm2", **request, **settings)  # type: ignore[call-overload]
    assert through.output_text == straight.output_text and through.output_text
    assert through.usage == straight.usage and through.usage is not None
    assert through.model == "smollm2" and through.status == straight.status
    assert through.model_extra is not None and through.model_extra["guard"]["policy"] == "default"


def test_responses_create_streamed(guarded: openai.OpenAI) -> None:
    events = list(
        guarded.responses.create(
            model="demo", input=QUESTION, temperature=0.0, max_output_tokens=16, stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    text = "".join(getattr(event, "delta", "") for event in events)
    final = events[-1].response  # type: ignore[union-attr]
    assert text and final.output_text == text
    assert final.model_extra is not None and final.model_extra["guard"]["verdict"] == "pass"


def test_output_rails_on_the_real_event_stream(railed: openai.OpenAI) -> None:
    request = {
        "model": "railed",
        "input": QUESTION,
        "instructions": "Answer with the name of the city.",
        "temperature": 0.0,
        "max_output_tokens": 24,
    }
    plain = railed.responses.create(**request)  # type: ignore[call-overload]
    events = list(railed.responses.create(**request, stream=True))  # type: ignore[call-overload]
    text = "".join(getattr(event, "delta", "") for event in events)
    final = events[-1].response  # type: ignore[union-attr]
    assert "paris" not in plain.output_text.lower() and "paris" not in text.lower()
    assert "[CITY]" in plain.output_text  # the model named it; the rail rewrote it
    assert final.output_text == text and plain.output_text == text  # greedy: the same answer
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.model_extra is not None and final.model_extra["guard"]["stream_checks"] >= 1
