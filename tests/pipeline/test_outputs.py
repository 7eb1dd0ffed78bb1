"""Output rails judge every text the client gets: reasoning, content, tool calls, logprobs,
streamed or not, against a fake upstream that answers with vLLM's fields and, for the
streaming cases, splits words (and secrets) across chunks as a subword tokenizer does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from guard.testing.fake_upstream import create_fake_upstream
from tests.conftest import Fake, guard_app, listing_rails, write_policy
from tests.servers import serve_in_thread

SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"
EMAIL = "bob@example.com"
BLOCK = "output_rails:\n  - kind: regex\n    name: secrets\n    presets: [secrets]\n"
REDACT = "output_rails:\n  - kind: regex\n    name: pii\n    presets: [pii]\n    action: redact\n"
STREAMING = "streaming: {window_tokens: 4, chunk_tokens: 2, context_tokens: 4}\n"


@pytest.fixture(scope="module")
def subword_upstream() -> Iterator[Fake]:
    app = create_fake_upstream(chunk_chars=3)
    with serve_in_thread(app) as url:
        yield Fake(app, url)


@contextmanager
def guarded(upstream: Fake, tmp_path: Path, rails: str) -> Iterator[str]:
    text = listing_rails(f"name: out\nmodels: {{'*': null}}\n{rails}{STREAMING}")
    policy = write_policy(tmp_path, text)
    with serve_in_thread(guard_app(upstream.url, [policy])) as url:
        yield url


def ask(url: str, text: str, **extra: Any) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def stream(url: str, text: str, **extra: Any) -> list[dict[str, Any]]:
    body = {
        "model": "fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [orjson.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def streamed(events: list[dict[str, Any]], index: int = 0) -> dict[str, str]:
    """What the client received for choice ``index``, field by field."""
    out = {"reasoning": "", "content": "", "arguments": ""}
    for event in events:
        for choice in event.get("choices") or []:
            if choice["index"] != index:
                continue
            delta = choice.get("delta") or {}
            out["reasoning"] += delta.get("reasoning") or ""
            out["content"] += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                out["arguments"] += (call.get("function") or {}).get("arguments") or ""
    return out


def finish(events: list[dict[str, Any]], index: int = 0) -> str | None:
    reasons = [
        c.get("finish_reason")
        for e in events
        for c in e.get("choices") or []
        if c["index"] == index and c.get("finish_reason")
    ]
    return reasons[-1] if reasons else None


def test_reasoning_is_judged_and_a_blocked_answer_keeps_none_of_it(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    with guarded(fake_upstream, tmp_path, BLOCK) as url:
        plain = ask(url, f"think: the key is {SECRET} say: I cannot tell you.")
    choice = plain.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["reasoning"] is None and SECRET not in plain.text
    assert plain.json()["guard"]["verdicts"][0]["part"] == "choices[0]"


def test_streamed_reasoning_never_goes_out_unjudged(subword_upstream: Fake, tmp_path: Path) -> None:
    with guarded(subword_upstream, tmp_path, BLOCK) as url:
        events = stream(url, f"think: the key is {SECRET} ok say: I cannot tell you.")
        clean = stream(url, "think: nothing secret here say: hello there")
    got = streamed(events)
    assert "sk-" not in got["reasoning"] and finish(events) == "content_filter"
    assert streamed(clean) == {
        "reasoning": "nothing secret here",
        "content": "hello there",
        "arguments": "",
    }


def test_tool_call_arguments_are_redacted_in_place_not_appended_to_content(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    script = f'call: lookup {{"email": "{EMAIL}"}} say: Looking it up.'
    with guarded(fake_upstream, tmp_path, REDACT) as url:
        response = ask(url, script, logprobs=True)
    data = response.json()
    message = data["choices"][0]["message"]
    assert message["content"] == "Looking it up."
    assert message["tool_calls"][0]["function"]["arguments"] == '{"email": "[REDACTED]"}'
    assert message["tool_calls"][0]["function"]["name"] == "lookup"
    assert EMAIL not in response.text
    assert data["choices"][0]["logprobs"] is None and data["guard"]["logprobs_dropped"] == [0]


def test_an_answer_without_redaction_keeps_its_logprobs(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    with guarded(fake_upstream, tmp_path, REDACT) as url:
        data = ask(url, "say: nothing to hide", logprobs=True).json()
    assert data["choices"][0]["logprobs"]["content"]
    assert "logprobs_dropped" not in data["guard"]


def test_streamed_redaction_rewrites_each_field_and_drops_their_logprobs(
    subword_upstream: Fake, tmp_path: Path
) -> None:
    script = f'think: mail {EMAIL} now call: lookup {{"email": "{EMAIL}"}} say: write to {EMAIL}'
    with guarded(subword_upstream, tmp_path, REDACT) as url:
        events = stream(url, script, logprobs=True)
    got = streamed(events)
    assert got == {
        "reasoning": "mail [REDACTED] now",
        "content": "write to [REDACTED]",
        "arguments": '{"email": "[REDACTED]"}',
    }
    assert EMAIL not in orjson.dumps(events).decode()


def test_a_secret_split_across_subword_chunks_is_never_released_in_part(
    subword_upstream: Fake, tmp_path: Path
) -> None:
    with guarded(subword_upstream, tmp_path, BLOCK) as url:
        events = stream(url, f"say: here it is {SECRET} enjoy")
    got = streamed(events)["content"]
    assert finish(events) == "content_filter"
    assert not any(SECRET[: i + 1] in got for i in range(3, len(SECRET)))


def test_each_streamed_choice_is_judged_on_its_own_text(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    with guarded(fake_upstream, tmp_path, BLOCK) as url:
        events = stream(url, f"say: the key is {SECRET} | all clear here", n=2)
    assert finish(events, 0) == "content_filter" and SECRET not in streamed(events, 0)["content"]
    assert finish(events, 1) == "stop" and streamed(events, 1)["content"] == "all clear here"
