"""Output rails on a Responses event stream: the hold-back guarantee over random chunkings,
and every event that repeats text saying only what was judged and released."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from guard.components.base import Verdict
from guard.pipeline.rails import Judgement, RailReport
from guard.pipeline.response_stream import ResponseStreamGuard
from guard.policy.models import Streaming

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
HEAD = {
    "id": "resp_1",
    "object": "response",
    "created_at": 0,
    "model": "m",
    "output": [],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "status": "in_progress",
    "usage": None,
}


def upstream_events(reasoning: list[str], content: list[str], call: list[str]) -> list[dict]:
    """A stream in vLLM's order: a reasoning item, a message, a function call (named by the
    first piece of ``call``, its arguments the rest), each left out when it has no piece."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": HEAD},
        {"type": "response.in_progress", "response": HEAD},
    ]
    output: list[dict[str, Any]] = []
    if reasoning:
        at = {"output_index": len(output), "item_id": "rs_1", "content_index": 0}
        text = "".join(reasoning)
        part = {"type": "reasoning_text", "text": text}
        item = {"type": "reasoning", "id": "rs_1", "summary": [], "content": [part]}
        events += [
            {"type": "response.output_item.added", "output_index": len(output),
             "item": {**item, "content": [], "status": "in_progress"}},
            {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
            *({"type": "response.reasoning_text.delta", **at, "delta": p} for p in reasoning),
            {"type": "response.reasoning_text.done", **at, "text": text},
            {"type": "response.content_part.done", **at, "part": part},
            {"type": "response.output_item.done", "output_index": len(output), "item": item},
        ]  # fmt: skip
        output.append(item)
    if content:
        at = {"output_index": len(output), "item_id": "msg_1", "content_index": 0}
        text = "".join(content)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": None}
        item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                "content": [part]}  # fmt: skip
        events += [
            {"type": "response.output_item.added", "output_index": len(output),
             "item": {**item, "content": [], "status": "in_progress"}},
            {"type": "response.content_part.added", **at,
             "part": {**part, "text": "", "logprobs": []}},
            *({"type": "response.output_text.delta", **at, "delta": p, "logprobs": []}
              for p in content),
            {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **at, "part": part},
            {"type": "response.output_item.done", "output_index": len(output), "item": item},
        ]  # fmt: skip
        output.append(item)
    if call:
        at = {"output_index": len(output), "item_id": "fc_1"}
        name, arguments = call[0], "".join(call[1:])
        item = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": name,
                "arguments": arguments, "status": "completed"}  # fmt: skip
        events += [
            {"type": "response.output_item.added", "output_index": len(output),
             "item": {**item, "arguments": "", "status": "in_progress"}},
            *({"type": "response.function_call_arguments.delta", **at, "delta": p}
              for p in call[1:]),
            {"type": "response.function_call_arguments.done", **at, "arguments": arguments,
             "name": name},
            {"type": "response.output_item.done", "output_index": len(output), "item": item},
        ]  # fmt: skip
        output.append(item)
    events.append(
        {
            "type": "response.completed",
            "response": {**HEAD, "status": "completed", "output": output},
        }
    )
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def encoded(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n"


def _judgement(blocked: bool) -> Judgement:
    verdict = Verdict(flagged=blocked)
    report = RailReport("r", "regex", "output", "block" if blocked else "pass", verdict, 0.1)
    return Judgement((report,))


async def run_guard(
    events: list[dict[str, Any]],
    window: int,
    chunk: int,
    judge_of: Any,
    delay: int = 0,
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The events released, and each passing check as (released length then, text judged)."""
    checked: list[tuple[int, str]] = []
    released_now = [0]
    settings_ = Streaming(
        window_tokens=window, chunk_tokens=chunk, context_tokens=0, final_check=False
    )

    async def judge(text: str, index: int) -> Judgement:
        released = released_now[0]
        for _ in range(delay):
            await asyncio.sleep(0)
        judgement = judge_of(text)
        if not judgement.stops:
            checked.append((released, text))
        return judgement

    async def upstream() -> AsyncIterator[bytes]:
        for event in events:
            yield encoded(event)
            if delay:
                await asyncio.sleep(0)

    guard = ResponseStreamGuard(settings_, judge, lambda: {"verdict": "x"})
    out = []
    async for raw in guard.run(upstream()):
        name, data = raw.rstrip(b"\n").split(b"\n", 1)
        payload = orjson.loads(data.removeprefix(b"data: "))
        assert name == f"event: {payload['type']}".encode()
        out.append(payload)
        released_now[0] = len(released_text(out))
    return out, checked


def released_text(events: list[dict[str, Any]]) -> str:
    """What the released events said, in order: deltas, and tool call names."""
    text = ""
    for event in events:
        if event["type"].endswith(".delta"):
            text += event["delta"]
        elif event["type"] == "response.output_item.added" and "name" in event["item"]:
            text += event["item"]["name"]
    return text


def repeated_texts(events: list[dict[str, Any]]) -> list[str]:
    """Every text an event repeats whole: done events, parts, items, response outputs."""
    texts: list[str] = []
    for event in events:
        for key in ("text", "arguments"):
            if isinstance(event.get(key), str):
                texts.append(event[key])
        if isinstance(event.get("part"), dict):
            texts.append(event["part"].get("text", ""))
        items = [event["item"]] if "item" in event else []
        items += (event.get("response") or {}).get("output", [])
        for item in items:
            texts += [p["text"] for p in item.get("content", [])]
            texts += [item.get("arguments", ""), item.get("name", "")]
    return [t for t in texts if t]


def _pieces(text: str, cuts: list[int]) -> list[str]:
    pieces, position, turn = [], 0, 0
    while position < len(text):
        cut = cuts[turn % len(cuts)]
        pieces.append(text[position : position + cut])
        position, turn = position + cut, turn + 1
    return pieces


def check_guarantee(
    text: str,
    forbidden: str,
    events: list[dict[str, Any]],
    checked: list[tuple[int, str]],
    streams: list[str],
) -> None:
    for event in events:
        EVENTS.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    released = released_text(events)
    assert text.startswith(released)
    if forbidden in text:
        assert len(released) <= text.find(forbidden)  # no part of the phrase went out
        assert events[-1]["type"] == "response.incomplete"
        assert events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}
    else:
        assert released == text
        assert events[-1]["type"] == "response.completed"
    covered = 0
    for start, judged in checked:  # each passing check covers text[start:start + len]
        assert text[start : start + len(judged)] == judged
        assert start <= covered
        covered = max(covered, start + len(judged))
    assert covered >= len(released)
    # Whatever an event repeats is a whole stream's released text, nothing more.
    said = [s for s in streams if s]
    position, released_streams = 0, []
    for stream in said:
        released_streams.append(released[position : position + len(stream)])
        position += len(stream)
    for repeated in repeated_texts(events):
        assert repeated in released_streams, (repeated, released_streams)
    final = Response.model_validate(events[-1]["response"])
    assert final.model_extra is not None and final.model_extra["guard"] == {"verdict": "x"}


ALPHABET = st.sampled_from(["a", "b", "c", "X", "Y", " ", "."])


@settings(max_examples=150, deadline=None)
@given(
    reasoning=st.lists(ALPHABET, max_size=15),
    content=st.lists(ALPHABET, min_size=1, max_size=30),
    name=st.sampled_from(["", "f", "Y", "lookup"]),
    arguments=st.lists(ALPHABET, max_size=15),
    cuts=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=40),
    window=st.integers(min_value=2, max_value=6),
    chunk=st.integers(min_value=1, max_value=6),
    delay=st.integers(min_value=0, max_value=6),
)
def test_released_text_was_checked_and_never_holds_the_phrase(
    reasoning: list[str],
    content: list[str],
    name: str,
    arguments: list[str],
    cuts: list[int],
    window: int,
    chunk: int,
    delay: int,
) -> None:
    streams = ["".join(reasoning), "".join(content), name, "".join(arguments)]
    call = [name, *_pieces(streams[3], cuts)] if name else []
    events = upstream_events(_pieces(streams[0], cuts), _pieces(streams[1], cuts), call)
    text = "".join(streams if name else streams[:2])
    forbidden = "XY"  # spans at most 2 chunks: always inside a window of 2 or more

    def judge_of(judged: str) -> Judgement:
        return _judgement(forbidden in judged)

    out, checked = asyncio.run(run_guard(events, window, chunk, judge_of, delay))
    check_guarantee(text, forbidden, out, checked, streams if name else streams[:2])


def test_a_clean_stream_comes_out_as_it_went_in_but_for_guard() -> None:
    events = upstream_events(["let ", "me ", "see"], ["hello ", "there"], ["f", '{"a"', ": 1}"])
    out, _ = asyncio.run(run_guard(events, 3, 2, lambda _: _judgement(False)))
    for event in (out[0], out[-1]):
        assert event["response"].pop("guard") == {"verdict": "x"}
    assert out == events


def test_a_done_text_no_delta_carried_is_judged_before_it_goes_out() -> None:
    events = upstream_events([], ["fine"], ["f"])  # a call with no argument deltas
    arguments_done = next(e for e in events if e["type"].endswith("arguments.done"))
    arguments_done["arguments"] = '{"q": "XY"}'  # only the done event says it
    judged: list[str] = []

    def judge_of(text: str) -> Judgement:
        judged.append(text)
        return _judgement("XY" in text)

    out, _ = asyncio.run(run_guard(events, 2, 1, judge_of))
    assert any("XY" in text for text in judged)
    assert "XY" not in orjson.dumps(out).decode()
    assert out[-1]["type"] == "response.incomplete"
    arguments_done["arguments"] = '{"q": "ok"}'
    out, _ = asyncio.run(run_guard(events, 2, 1, judge_of))
    assert out[-1]["response"]["output"][1]["arguments"] == '{"q": "ok"}'


def test_a_done_text_that_contradicts_its_deltas_says_the_deltas() -> None:
    events = upstream_events([], ["fine"], ["f", "{}"])
    arguments_done = next(e for e in events if e["type"].endswith("arguments.done"))
    arguments_done["arguments"] = '{"q": "XY"}'  # not what the deltas said: never judged
    out, _ = asyncio.run(run_guard(events, 2, 1, lambda _: _judgement(False)))
    assert "XY" not in orjson.dumps(out).decode()
    assert out[-1]["response"]["output"][1]["arguments"] == "{}"


def test_text_in_an_item_guard_cannot_follow_is_not_released() -> None:
    events = upstream_events([], ["fine"], [])
    search = {"type": "web_search_call", "id": "ws_1", "status": "completed",
              "action": {"type": "search", "query": "XY secret"}}  # fmt: skip
    events[-1:-1] = [
        {"type": "response.output_item.added", "output_index": 1, "item": search},
        {"type": "response.output_item.done", "output_index": 1, "item": search},
    ]
    events[-1]["response"]["output"].append(search)
    out, _ = asyncio.run(run_guard(events, 2, 1, lambda _: _judgement(False)))
    assert "XY secret" not in orjson.dumps(out).decode()
    assert out[-1]["response"]["output"][1]["action"]["query"] == ""
