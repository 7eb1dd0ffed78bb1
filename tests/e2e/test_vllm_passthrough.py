"""guard in front of a real vLLM with the default policy: an OpenAI client sees no difference."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def test_capital_of_france(guarded: openai.OpenAI) -> None:
    answer = guarded.chat.completions.create(
        model="demo",
        messages=FRANCE,
        temperature=0,
        max_tokens=20,
    )
    assert "Paris" in (answer.choices[0].message.content or "")
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert answer.model_extra is not None
    assert answer.model_extra["guard"] == {
        "policy": "default",
        "policy_sha256": answer.model_extra["guard"]["policy_sha256"],
        "verdict": "pass",
        "verdicts": [],
    }


def test_same_answer_and_usage_as_vllm_directly(
    guarded: openai.OpenAI, direct: openai.OpenAI
) -> None:
    request = {"messages": FRANCE, "temperature": 0.8, "seed": 7, "max_tokens": 24}
    through_guard = guarded.chat.completions.create(model="demo", **request)
    straight = direct.chat.completions.create(model="smollm2", **request)
    assert through_guard.choices[0].message.content == straight.choices[0].message.content
    assert through_guard.usage == straight.usage
    assert through_guard.model == straight.model == "smollm2"


def test_streaming_through_guard(guarded: openai.OpenAI) -> None:
    stream = guarded.chat.completions.create(
        model="demo",
        messages=FRANCE,
        temperature=0,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert (
        chunks[0].model_extra is not None and chunks[0].model_extra["guard"]["policy"] == "default"
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_n_samples_and_logprobs(guarded: openai.OpenAI) -> None:
    answer = guarded.chat.completions.create(
        model="demo",
        messages=FRANCE,
        n=3,
        seed=1,
        max_tokens=8,
        logprobs=True,
        top_logprobs=2,
    )
    assert [c.index for c in answer.choices] == [0, 1, 2]
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert len(logprobs.content[0].top_logprobs) == 2


def test_text_completions(guarded: openai.OpenAI) -> None:
    answer = guarded.completions.create(
        model="demo", prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert answer.choices[0].text.strip()
    streamed = guarded.completions.create(
        model="demo", prompt="One, two,", max_tokens=5, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices)


def test_json_schema_output(guarded: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    answer = guarded.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        max_tokens=30,
        temperature=0,
    )
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


def test_forced_tool_call(guarded: openai.OpenAI) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    answer = guarded.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=80,
        temperature=0,
    )
    calls = answer.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    json.loads(calls[0].function.arguments)  # the arguments are valid JSON


def test_vllm_4xx_passes_through(guarded: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        guarded.chat.completions.create(model="demo", messages=FRANCE, max_tokens=100_000)
    assert "context" in str(caught.value.message).lower() or "max" in str(caught.value.message)


def test_models_and_health(guarded: openai.OpenAI, guard_url: str) -> None:
    assert {m.id for m in guarded.models.list()} == {"demo", "smollm2"}
    assert httpx.get(f"{guard_url}/health").status_code == 200
