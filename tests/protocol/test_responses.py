"""The Responses wire shapes guard makes: each checked against the ``openai`` types."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from guard.protocol.responses import (
    event_payload,
    output_fields,
    refused_response,
    response_events,
)
from guard.protocol.sse import split_events

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def test_a_refused_response_is_a_valid_incomplete_response() -> None:
    body = {"model": "m", "input": "x", "instructions": "secret", "tools": [{"type": "x"}]}
    refused = refused_response(body, "No.", "r1")
    response = Response.model_validate(refused)
    assert response.status == "incomplete" and response.output_text == "No."
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert "secret" not in orjson.dumps(refused).decode()  # the request's texts stay out


def test_a_finished_response_replays_as_a_valid_event_stream() -> None:
    refused = {**refused_response({"model": "m"}, "No, sorry.", "r1"), "guard": {"v": 1}}
    events = [event_payload(e) for e in response_events(refused)]
    kinds = [e["type"] for e in events if e is not None]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    for number, event in enumerate(events):
        assert event is not None and event["sequence_number"] == number
        EVENTS.validate_python(event)
    assert events[0]["response"]["guard"] == events[-1]["response"]["guard"] == {"v": 1}
    assert Response.model_validate(events[-1]["response"]).output_text == "No, sorry."


def test_named_events_split_whole_however_the_bytes_are_cut() -> None:
    events = b"".join(response_events(refused_response({"model": "m"}, "No.", "r1")))

    async def cut(size: int) -> list[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(events), size):
                yield events[start : start + size]

        return [event async for event in split_events(chunks())]

    whole = [event.removesuffix(b"\n\n") for event in events.split(b"\n\n") if event]
    for size in (1, 7, 64, len(events)):
        assert asyncio.run(cut(size)) == whole
    assert event_payload(b'event: x\ndata: {"a":\ndata: 1}') == {"a": 1}


def test_output_fields_name_every_text_and_its_path() -> None:
    response = {
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}],
             "content": [{"type": "reasoning_text", "text": "r"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "t"},
                                            {"type": "refusal", "refusal": "no"}]},
            {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"},
            {"type": "custom_tool_call", "name": "g", "input": "raw", "call_id": "d"},
        ]
    }  # fmt: skip
    assert output_fields(response) == [
        ("s", ("output", 0, "summary", 0, "text")),
        ("r", ("output", 0, "content", 0, "text")),
        ("t", ("output", 1, "content", 0, "text")),
        ("no", ("output", 1, "content", 1, "refusal")),
        ("f", ("output", 2, "name")),
        ("{}", ("output", 2, "arguments")),
        ("g", ("output", 3, "name")),
        ("raw", ("output", 3, "input")),
    ]
