"""What rails judge: the subjects taken from a request and from a finished answer,
and the request rewritten with redacted input.
"""

from __future__ import annotations

from typing import Any

from guard.components.base import Subject
from guard.errors import InvalidRequest
from guard.protocol.messages import COMPLETIONS, choice_text, message_text


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
