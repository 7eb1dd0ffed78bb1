"""Completions guard writes itself: refusals, and a checked answer replayed as a stream.

Also where guard reads and rewrites the text inside OpenAI request and response
objects, so the rest of the pipeline deals in plain strings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from guard.api.sse import DONE, EVENT_END, data_event
from guard.components.base import Subject
from guard.errors import InvalidRequest

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


def input_subjects(path: str, body: dict[str, Any]) -> list[Subject]:
    """What input rails judge: the latest user message, with the conversation before it.

    Raises ``InvalidRequest`` for a prompt given as token ids, which rails cannot read:
    passing it unchecked would fail open.
    """
    if path == COMPLETIONS:
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt or []
        if not all(isinstance(p, str) for p in prompts):
            raise InvalidRequest(
                "This model's policy checks prompts, so the prompt must be text, not token ids.",
                param="prompt",
            )
        return [Subject(p) for p in prompts]
    messages = body["messages"]
    index = _latest_user_message(messages)
    text = message_text(messages[index].get("content"))
    return [Subject(text, "user", tuple(messages[:index]))]


def _latest_user_message(messages: list[dict[str, Any]]) -> int:
    """The index of the latest user message, or of the last message if none is a user's."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return len(messages) - 1


def with_redacted_input(path: str, body: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """``body`` with the judged texts replaced by their redacted versions."""
    if path == COMPLETIONS:
        prompt = body.get("prompt")
        return {**body, "prompt": texts[0] if isinstance(prompt, str) else texts}
    messages = list(body["messages"])
    index = _latest_user_message(messages)
    content = messages[index].get("content")
    others = [p for p in content if p.get("type") != "text"] if isinstance(content, list) else []
    new_content: Any = [{"type": "text", "text": texts[0]}, *others] if others else texts[0]
    messages[index] = {**messages[index], "content": new_content}
    return {**body, "messages": messages}


def output_subjects(path: str, body: dict[str, Any], result: dict[str, Any]) -> list[Subject]:
    """What output rails judge: each choice's text, with the conversation as context."""
    context = tuple(body.get("messages") or ()) if path != COMPLETIONS else ()
    return [Subject(choice_text(path, c), "assistant", context) for c in result["choices"]]


def choice_text(path: str, choice: dict[str, Any]) -> str:
    """A finished choice's text (for chat: the content plus any tool call arguments)."""
    if path == COMPLETIONS:
        return str(choice.get("text") or "")
    return _answer_text(choice.get("message") or {})


def _answer_text(message: dict[str, Any]) -> str:
    """The content, plus any tool call arguments, since those can carry unsafe text too."""
    parts = [message_text(message.get("content"))]
    for call in message.get("tool_calls") or []:
        parts.append(str((call.get("function") or {}).get("arguments", "")))
    return "\n".join(p for p in parts if p)


def set_choice_text(path: str, choice: dict[str, Any], text: str, filtered: bool) -> None:
    """Replace a choice's text; ``filtered`` also marks it as stopped by a content filter."""
    if path == COMPLETIONS:
        choice["text"] = text
    else:
        message = choice.setdefault("message", {"role": "assistant"})
        message["content"] = text
        if filtered:
            message.pop("tool_calls", None)
    if filtered:
        choice["finish_reason"] = "content_filter"
        choice["logprobs"] = None


def refusal(path: str, model: str, message: str, n: int, request_id: str) -> dict[str, Any]:
    """A normal completion whose every choice is the policy's refusal."""
    choices: list[dict[str, Any]] = []
    for index in range(n):
        choice: dict[str, Any] = {"index": index}
        set_choice_text(path, choice, message, filtered=True)
        choices.append(choice)
    return {
        "id": f"guard-{request_id}",
        "object": "text_completion" if path == COMPLETIONS else "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


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
