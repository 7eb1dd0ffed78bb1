"""What an application's own instructions forbid, and how close a text comes to it.

Many prompt injections are ordinary requests that become attacks only against the
instructions they are sent to: a recipe asked of an app told never to give recipes,
"what is the password?" asked of one told to keep a password. Read alone, they are
honest questions. The ``attacks`` detector's ``prompt_injection`` label therefore also
reads a message together with the system and developer messages before it, when they
forbid something: how close the message comes to each sentence that forbids (with the
sentence before it, which often names what "it" is), to the other sentences, and to
the instructions as a whole. A small linear layer, trained by ``guard train-attack-head``,
weighs these similarities with the message's own injection score. Instructions that
forbid nothing add nothing: a question close to what an application is for is what it
is for.

Training and serving both use these functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guard.components.embedding import sentences

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

INSTRUCTING_ROLES = ("system", "developer")

FORBIDDING = re.compile(
    r"\b(not|never|no|avoid\w*|refus\w*|don'?t|dont|cannot|can'?t|forbid\w*|prohibit\w*"
    r"|confidential|secret|private|under no circumstances)\b",
    re.IGNORECASE,
)

FEATURES = (
    "injection_logit",
    "forbidden_similarity",
    "other_similarity",
    "whole_similarity",
)
"""The inputs of the instruction-aware layer, in its weights' order."""


def instructions_of(context: Sequence[Mapping[str, Any]]) -> str:
    """The text of the system and developer messages in ``context``, joined."""
    texts = []
    for message in context:
        if message.get("role") not in INSTRUCTING_ROLES:
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if isinstance(p, Mapping) and "text" in p]
    return "\n".join(text for text in texts if text.strip())


MOST_SENTENCES = 32
"""Of each kind, the first this many sentences are read: each costs a MiniLM pass the
first time an application's instructions are seen, and a client chooses their length.
The message itself is read whole either way."""


def clauses(instructions: str) -> tuple[list[str], list[str]]:
    """(what the instructions forbid, the rest): each sentence that forbids something,
    joined with the sentence before it; and every other sentence. At most
    ``MOST_SENTENCES`` of each."""
    split = sentences(instructions)
    forbidding = [i for i, sentence in enumerate(split) if FORBIDDING.search(sentence)]
    joined = [" ".join(split[max(i - 1, 0) : i + 1]) for i in forbidding]
    forbids = set(forbidding)
    rest = [sentence for i, sentence in enumerate(split) if i not in forbids]
    return joined[:MOST_SENTENCES], rest[:MOST_SENTENCES]


@dataclass(frozen=True)
class InstructionVectors:
    """Unit embeddings of one application's instructions."""

    forbidden: NDArray[np.float32]
    """(sentences that forbid, hidden); may have no rows"""
    other: NDArray[np.float32]
    whole: NDArray[np.float32]
    """(hidden,)"""


def similarities(text: NDArray[np.float32], vectors: InstructionVectors) -> list[float] | None:
    """The features after ``injection_logit``, for a text's unit embedding; None when the
    instructions forbid nothing."""
    if not len(vectors.forbidden):
        return None
    other = float((vectors.other @ text).max()) if len(vectors.other) else 0.0
    return [float((vectors.forbidden @ text).max()), other, float(vectors.whole @ text)]
