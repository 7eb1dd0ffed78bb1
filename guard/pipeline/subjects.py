"""What output rails judge: every text of each finished choice the client gets
(reasoning, content, refusal, tool calls), as one part per choice, or of a finished
Response's output (reasoning, message texts and refusals, tool calls), as one part, with
the conversation as context. What input rails judge is ``guard.pipeline.inputs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guard.components.base import Subject
from guard.pipeline.rails import Judgement
from guard.pipeline.texts import Part, joined
from guard.protocol.messages import COMPLETIONS, answer_fields
from guard.protocol.responses import RESPONSES, output_fields
from guard.protocol.responses import conversation as response_conversation


def conversation(path: str, body: dict[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The conversation an answer continues, as chat messages, for classifiers that
    read it (none for text completions)."""
    if path == COMPLETIONS:
        return ()
    if path == RESPONSES:
        return response_conversation(body)
    return tuple(body.get("messages") or ())


def output_parts(path: str, body: dict[str, Any], choices: list[dict[str, Any]]) -> list[Part]:
    """One part per choice; its segments' paths start with the choice's index in ``choices``."""
    context = conversation(path, body)
    parts = []
    for index, choice in enumerate(choices):
        where = f"choices[{index}]"
        pieces = [(text, (index, *field)) for text, field in answer_fields(path, choice)]
        parts.append(joined(where, pieces, context) or Part(where, "", (), context))
    return parts


def response_part(body: dict[str, Any], response: dict[str, Any]) -> Part:
    """A Response's output as one part; its segments' paths are paths in the response."""
    context = conversation(RESPONSES, body)
    return joined("output", output_fields(response), context) or Part("output", "", (), context)


def output_subjects(path: str, body: dict[str, Any], result: dict[str, Any]) -> list[Subject]:
    """What output rails judge: each choice's texts (or a Response's output), with the
    conversation as context."""
    if path == RESPONSES:
        return [response_part(body, result).subject("assistant")]
    return [part.subject("assistant") for part in output_parts(path, body, result["choices"])]


def items_touched(part: Part, judgement: Judgement) -> set[int]:
    """The output items of a Response a redaction of its part changed."""
    return {
        int(segment.path[1])
        for start, end, _ in judgement.redactions
        for segment in part.segments
        if max(start, segment.start) < min(end, segment.end)
    }
