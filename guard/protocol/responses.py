"""The Responses API on the wire (``POST /v1/responses``): the texts of a finished
Response, its stream's events, and a finished Response replayed as that stream.

A Response stream is a sequence of named events, ``event: <type>\\ndata: <json>\\n\\n``,
each with a ``sequence_number``, and no ``[DONE]``: it ends with a terminal event
(``response.completed``, ``response.incomplete``, ``response.failed`` or ``error``).
Model text arrives in ``*.delta`` events and is repeated whole by the ``*.done`` events,
``response.content_part.done``, ``response.output_item.done`` and the terminal event's
``response.output``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from guard.protocol.sse import EVENT_END

RESPONSES = "/v1/responses"

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
"""The event types that end a Response stream."""

NAME = "name"
"""The stream of a tool call's name: it comes whole, in ``response.output_item.added``."""

DONE_TEXT_KEYS = {
    "response.output_text": "text",
    "response.refusal": "refusal",
    "response.reasoning_text": "text",
    "response.reasoning_summary_text": "text",
    "response.function_call_arguments": "arguments",
    "response.custom_tool_call_input": "input",
    "response.mcp_call_arguments": "arguments",
    "response.code_interpreter_call_code": "code",
}
"""A text stream (the event type less ``.delta``) -> the key of its ``.done`` event that
repeats the whole text."""

PART_STREAMS = {
    "output_text": "response.output_text",
    "refusal": "response.refusal",
    "reasoning_text": "response.reasoning_text",
    "summary_text": "response.reasoning_summary_text",
}
"""A content part's type -> the stream its text arrives in."""

CALL_TEXTS = {
    "function_call": ("arguments", "response.function_call_arguments"),
    "custom_tool_call": ("input", "response.custom_tool_call_input"),
    "mcp_call": ("arguments", "response.mcp_call_arguments"),
}
"""A tool call item's type -> the key of what the model wrote for it, and its stream."""

_STRUCTURAL = frozenset({"id", "type", "status", "call_id", "role", "server_label"})

Path = tuple[str | int, ...]
ItemText = tuple[str, Path, str | None, int | None]
"""A text of an output item: (text, path in the item, its stream, the stream's index:
``content_index`` or ``summary_index``, or None); a stream of None: none that guard knows."""


def item_texts(item: Mapping[str, Any]) -> list[ItemText]:
    """Every text of an output item the client gets, in reading order."""
    kind = item.get("type")
    texts: list[ItemText] = []
    if kind == "message":
        for index, part in enumerate(item.get("content") or []):
            if not isinstance(part, Mapping):
                continue
            key = "refusal" if part.get("type") == "refusal" else "text"
            if isinstance(part.get(key), str):
                stream = PART_STREAMS.get(str(part.get("type")), "response.output_text")
                texts.append((part[key], ("content", index, key), stream, index))
    elif kind == "reasoning":
        for key in ("summary", "content"):
            for index, part in enumerate(item.get(key) or []):
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    stream = PART_STREAMS.get(str(part.get("type")), "response.reasoning_text")
                    texts.append((part["text"], (key, index, "text"), stream, index))
    elif kind in CALL_TEXTS:
        key, stream = CALL_TEXTS[kind]
        if isinstance(item.get("name"), str):
            texts.append((item["name"], ("name",), NAME, None))
        if isinstance(item.get(key), str):
            texts.append((item[key], (key,), stream, None))
    elif kind == "code_interpreter_call" and isinstance(item.get("code"), str):
        texts.append((item["code"], ("code",), "response.code_interpreter_call_code", None))
    else:
        texts += [(text, path, None, None) for text, path in _strings(item, ())]
    return texts


def output_fields(response: Mapping[str, Any]) -> list[tuple[str, Path]]:
    """Every text of a finished Response's output, in reading order, each with its path
    in the response: reasoning, message texts and refusals, tool call names and
    arguments."""
    return [
        (text, ("output", index, *path))
        for index, item in enumerate(response.get("output") or [])
        if isinstance(item, Mapping)
        for text, path, _, _ in item_texts(item)
    ]


def _strings(value: Any, path: Path) -> Iterator[tuple[str, Path]]:
    if isinstance(value, str):
        yield value, path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in _STRUCTURAL:
                yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def conversation(body: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """A Responses request as the chat messages it becomes (texts only): the context
    classifiers that read a conversation get."""
    turns: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        turns.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        return (*turns, {"role": "user", "content": items})
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        if "role" in item and item.get("type") in (None, "message"):
            turns.append({"role": item["role"], "content": _text_of(item.get("content"))})
        elif item.get("type") in ("function_call_output", "custom_tool_call_output"):
            turns.append({"role": "tool", "content": _text_of(item.get("output"))})
    return tuple(turns)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "\n".join(
        str(part.get("text") or part.get("refusal") or "")
        for part in parts
        if isinstance(part, Mapping)
    )


def refusal_item(message: str, request_id: str) -> dict[str, Any]:
    """An assistant message saying the policy's refusal."""
    return {
        "type": "message",
        "id": f"msg_guard-{request_id}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": message, "annotations": [], "logprobs": None}],
    }


def set_refused(response: dict[str, Any], message: str, request_id: str) -> None:
    """Replace a Response's output by the refusal, stopped by the content filter."""
    response["output"] = [refusal_item(message, request_id)]
    response["status"] = "incomplete"
    response["incomplete_details"] = {"reason": "content_filter"}


def refused_response(body: Mapping[str, Any], message: str, request_id: str) -> dict[str, Any]:
    """The Response a request blocked before generation gets. It repeats none of the
    request's texts (``instructions``, ``tools``): a rail may have stopped them."""
    response: dict[str, Any] = {
        "id": f"resp_guard-{request_id}",
        "object": "response",
        "created_at": int(time.time()),
        "model": str(body.get("model")),
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
    }
    set_refused(response, message, request_id)
    return response


def named_event(payload: Mapping[str, Any]) -> bytes:
    """One event of a Response stream: its type as the SSE event name."""
    name = str(payload.get("type", "message")).encode()
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + EVENT_END


def event_payload(event: bytes) -> dict[str, Any] | None:
    """The JSON object an event carries (its ``data:`` lines), or None."""
    data = b"\n".join(
        line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
    )
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def error_payload(code: str | None, message: str, param: str | None) -> dict[str, Any]:
    """A Response stream's ``error`` event (its ``sequence_number`` is set when sent)."""
    return {"type": "error", "code": code, "message": message, "param": param}


def response_events(response: Mapping[str, Any]) -> Iterator[bytes]:
    """Replay a finished Response as the events a streaming client expects: created,
    in progress, each output item (added, its texts, done), then the terminal event
    (``response.completed``, or ``response.incomplete`` for an incomplete one)."""
    head = {k: v for k, v in response.items() if k != "guard"}
    start = {**head, "status": "in_progress", "output": [], "incomplete_details": None}
    start.pop("usage", None)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**start, **_guard(response)}},
        {"type": "response.in_progress", "response": start},
    ]
    for index, item in enumerate(response.get("output") or []):
        events += _item_events(index, item)
    status = response.get("status")
    terminal = "response.incomplete" if status == "incomplete" else "response.completed"
    if status == "failed":
        terminal = "response.failed"
    events.append({"type": terminal, "response": dict(response)})
    for number, event in enumerate(events):
        yield named_event({**event, "sequence_number": number})


def _guard(response: Mapping[str, Any]) -> dict[str, Any]:
    return {"guard": response["guard"]} if "guard" in response else {}


def _item_events(index: int, item: Mapping[str, Any]) -> list[dict[str, Any]]:
    at = {"output_index": index, "item_id": item.get("id")}
    if item.get("type") != "message":
        return [
            {"type": "response.output_item.added", "output_index": index, "item": item},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]
    opened = {**item, "status": "in_progress", "content": []}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": index, "item": opened}
    ]
    for number, part in enumerate(item.get("content") or []):
        key = "refusal" if part.get("type") == "refusal" else "text"
        stream = PART_STREAMS.get(str(part.get("type")), "response.output_text")
        text = str(part.get(key) or "")
        empty = {**part, key: ""}
        where = {**at, "content_index": number}
        delta: dict[str, Any] = {"type": f"{stream}.delta", **where, "delta": text}
        done: dict[str, Any] = {"type": f"{stream}.done", **where, key: text}
        if stream == "response.output_text":
            delta["logprobs"], done["logprobs"] = [], []
            empty["logprobs"] = []
        events += [
            {"type": "response.content_part.added", **where, "part": empty},
            delta,
            done,
            {"type": "response.content_part.done", **where, "part": part},
        ]
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events
