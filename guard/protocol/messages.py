"""The text inside OpenAI request and response objects: a message's content, a choice's
answer, and the fields every streamed chunk repeats, so the rest of guard deals in
plain strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from guard.protocol.sse import DONE, EVENT_END, data_event

CHAT = "/v1/chat/completions"


COMPLETIONS = "/v1/completions"


def message_text(content: Any) -> str:
    """The text of a chat message's content, a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def choice_text(path: str, choice: dict[str, Any]) -> str:
    """A finished choice's answer (for chat: the content plus any tool call arguments),
    what rewards score and critiques read."""
    if path == COMPLETIONS:
        return str(choice.get("text") or "")
    return _answer_text(choice.get("message") or {})


def _answer_text(message: dict[str, Any]) -> str:
    """The content, plus any tool call arguments, since those can carry unsafe text too."""
    parts = [message_text(message.get("content"))]
    for call in message.get("tool_calls") or []:
        parts.append(str((call.get("function") or {}).get("arguments", "")))
    return "\n".join(p for p in parts if p)


FieldPath = tuple[str | int, ...]
REASONING_KEYS = ("reasoning", "reasoning_content")


def answer_fields(path: str, choice: dict[str, Any]) -> list[tuple[str, FieldPath]]:
    """Every text of a finished choice the client gets, in reading order, each with its
    path in the choice: reasoning, content (or text), refusal, tool call names and
    arguments."""
    if path == COMPLETIONS:
        return [(str(choice.get("text") or ""), ("text",))]
    message = choice.get("message") or {}
    fields: list[tuple[str, FieldPath]] = []
    for key in REASONING_KEYS:
        if isinstance(message.get(key), str):
            fields.append((message[key], ("message", key)))
    content = message.get("content")
    if isinstance(content, str):
        fields.append((content, ("message", "content")))
    elif isinstance(content, list):
        for index, part in enumerate(content):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                fields.append((part["text"], ("message", "content", index, "text")))
    if isinstance(message.get("refusal"), str):
        fields.append((message["refusal"], ("message", "refusal")))
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        for key in ("name", "arguments"):
            if isinstance(function.get(key), str):
                fields.append((function[key], ("message", "tool_calls", index, "function", key)))
    return fields


def set_choice_text(path: str, choice: dict[str, Any], text: str, filtered: bool) -> None:
    """Replace a choice's text; ``filtered`` also marks it as stopped by a content filter,
    and removes every other text it held (reasoning, refusal, tool calls, logprobs)."""
    if path == COMPLETIONS:
        choice["text"] = text
    else:
        message = choice.setdefault("message", {"role": "assistant"})
        message["content"] = text
        if filtered:
            message.pop("tool_calls", None)
            for key in (*REASONING_KEYS, "refusal"):
                if message.get(key) is not None:
                    message[key] = None
    if filtered:
        choice["finish_reason"] = "content_filter"
        choice["logprobs"] = None


def chunk_head(path: str, result: dict[str, Any]) -> dict[str, Any]:
    """The fields every streamed chunk of ``result`` repeats."""
    return {
        "id": result.get("id"),
        "object": "text_completion" if path == COMPLETIONS else "chat.completion.chunk",
        "created": result.get("created"),
        "model": result.get("model"),
    }


def as_events(path: str, result: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """Replay a finished completion as the SSE chunks a streaming client expects."""
    head = chunk_head(path, result)
    extra = {"guard": result["guard"]} if "guard" in result else {}
    for choice in result["choices"]:
        index = choice.get("index", 0)
        part: dict[str, Any]
        if path == COMPLETIONS:
            part = {"text": choice.get("text") or ""}
        else:
            message = choice.get("message") or {}
            delta: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
            if message.get("tool_calls"):
                delta["tool_calls"] = [
                    {**call, "index": position}
                    for position, call in enumerate(message["tool_calls"])
                ]
            part = {"delta": delta}
        first = {"index": index, "finish_reason": None, "logprobs": choice.get("logprobs"), **part}
        yield data_event({**head, "choices": [first], **extra})
        extra = {}
        last: dict[str, Any] = {"text": ""} if path == COMPLETIONS else {"delta": {}}
        yield data_event(
            {
                **head,
                "choices": [{"index": index, "finish_reason": choice.get("finish_reason"), **last}],
            }
        )
    if include_usage:
        yield data_event({**head, "choices": [], "usage": result.get("usage")})
    yield DONE + EVENT_END
