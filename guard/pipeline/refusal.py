"""The completion a blocked request gets: a normal answer whose every choice is the
policy's refusal, stopped by the content filter.
"""

from __future__ import annotations

import time
from typing import Any

from guard.protocol.messages import COMPLETIONS, set_choice_text


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
