"""What output rails judge: each finished choice's text, with the conversation as context.

What input rails judge is ``guard.pipeline.inputs``.
"""

from __future__ import annotations

from typing import Any

from guard.components.base import Subject
from guard.protocol.messages import COMPLETIONS, choice_text


def output_subjects(path: str, body: dict[str, Any], result: dict[str, Any]) -> list[Subject]:
    """What output rails judge: each choice's text, with the conversation as context."""
    context = tuple(body.get("messages") or ()) if path != COMPLETIONS else ()
    return [Subject(choice_text(path, c), "assistant", context) for c in result["choices"]]
