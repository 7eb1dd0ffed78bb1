"""What input rails read: the parts of a request (``guard.pipeline.input_reader`` and, for
the pooling family, ``guard.pipeline.pooling_inputs``), within the policy's limit; and
the request again with the parts an input rail redacted rewritten."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from guard.components.base import Subject
from guard.errors import PayloadTooLarge
from guard.pipeline.input_reader import InputPlan
from guard.pipeline.pooling_inputs import PoolingReader
from guard.pipeline.rails import Judgement
from guard.pipeline.texts import Part, redact_fields
from guard.policy.models import Inputs
from guard.protocol.messages import COMPLETIONS
from guard.protocol.pooling import ENDPOINT_OF
from guard.protocol.responses import RESPONSES

__all__ = ["InputPlan", "input_subjects", "read_input", "with_redacted_input"]


def read_input(path: str, body: Mapping[str, Any], inputs: Inputs) -> InputPlan:
    """Every text of ``body`` the model will read, as parts to judge.

    Raises ``InvalidRequest`` (400) for what no rail can read and the policy does not let
    through, and ``PayloadTooLarge`` (413) past the policy's ``inputs.max_chars``."""
    plan = InputPlan()
    reader = PoolingReader(plan, inputs)
    if path == COMPLETIONS:
        reader.completion(body)
    elif path in ENDPOINT_OF:
        reader.pooling(body)
    elif path == RESPONSES:
        reader.responses(body)
    else:
        reader.chat(body)
    total = sum(len(part.text) for part in plan.parts)
    if total > inputs.max_chars:
        raise PayloadTooLarge(
            f"This request holds {total} characters of text for the input rails to judge; "
            f"this model's policy judges at most {inputs.max_chars} per request.",
            code="input_too_large",
        )
    return plan


def input_subjects(
    path: str, body: Mapping[str, Any], inputs: Inputs | None = None
) -> list[Subject]:
    """The subjects ``read_input`` finds (default policy settings unless given)."""
    return read_input(path, body, inputs or Inputs()).subjects


def with_redacted_input(
    body: dict[str, Any], parts: Sequence[Part], judgements: Sequence[Judgement]
) -> dict[str, Any] | None:
    """``body`` with every span a ``redact`` rail found replaced, field by field; None
    when a span lies in a dict key, which cannot be rewritten (the caller refuses)."""
    if not any(judgement.redactions for judgement in judgements):
        return body
    copy: dict[str, Any] = orjson.loads(orjson.dumps(body))
    try:
        redact_fields(copy, parts, judgements)
    except ValueError:
        return None
    return copy
