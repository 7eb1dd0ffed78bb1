"""What output rails judge: every text of each finished choice the client gets
(reasoning, content, refusal, tool calls), as one part per choice, with the conversation as
context. What input rails judge is ``guard.pipeline.inputs``.
"""

from __future__ import annotations

from typing import Any

from guard.components.base import Subject
from guard.pipeline.texts import Part, joined
from guard.protocol.messages import COMPLETIONS, answer_fields


def output_parts(path: str, body: dict[str, Any], choices: list[dict[str, Any]]) -> list[Part]:
    """One part per choice; its segments' paths start with the choice's index in ``choices``."""
    context = tuple(body.get("messages") or ()) if path != COMPLETIONS else ()
    parts = []
    for index, choice in enumerate(choices):
        where = f"choices[{index}]"
        pieces = [(text, (index, *field)) for text, field in answer_fields(path, choice)]
        parts.append(joined(where, pieces, context) or Part(where, "", (), context))
    return parts


def output_subjects(path: str, body: dict[str, Any], result: dict[str, Any]) -> list[Subject]:
    """What output rails judge: each choice's texts, with the conversation as context."""
    return [part.subject("assistant") for part in output_parts(path, body, result["choices"])]
