"""``POST /v1/moderations``: OpenAI's moderation API, backed by a policy's input rails.

Which policy: the API key's own ``policy`` when it has one (as for its chat
requests); otherwise the one serving the requested ``model`` by exact name; otherwise
the one named by ``GUARD_MODERATION_POLICY``; otherwise the only policy with input
rails. Each input is judged by every input rail of that policy.

An API key restricted to some models must name one of them in ``model`` (an unnamed
model would otherwise skip that restriction). A request holds at most
``MAX_INPUTS`` inputs (OpenAI documents no limit; each input costs a call of every
rail, Llama Guard's an upstream call) and at most the policy's ``inputs.max_chars``
characters in all, as a chat request does.

Verdicts become OpenAI's categories through a fixed mapping: Llama Guard codes by
the table below, and classifier labels that already carry an OpenAI category name
(the built-in ``embedding`` head, many hub classifiers) as they are. A rail that
flags without a mappable category (``regex`` secrets, a binary classifier) still
sets ``flagged``; the detail is under each result's ``guard``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from guard.components.base import Subject
from guard.errors import InvalidRequest, NotFound, PayloadTooLarge
from guard.pipeline.context import rail_failure
from guard.pipeline.rails import Judgement, judge
from guard.pipeline.runner import Pipeline
from guard.policy.routing import PolicySet

MAX_INPUTS = 32
"""The most inputs one moderation request may hold."""

OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

LLAMA_GUARD_TO_OPENAI: dict[str, tuple[str, ...]] = {
    "S1": ("violence", "illicit/violent"),  # violent crimes
    "S2": ("illicit",),  # non-violent crimes
    "S3": ("sexual", "illicit"),  # sex-related crimes
    "S4": ("sexual/minors",),  # child sexual exploitation
    "S5": ("harassment",),  # defamation
    "S6": (),  # specialized advice
    "S7": (),  # privacy
    "S8": (),  # intellectual property
    "S9": ("illicit/violent", "violence"),  # indiscriminate weapons
    "S10": ("hate",),  # hate
    "S11": ("self-harm",),  # suicide and self-harm
    "S12": ("sexual",),  # sexual content
    "S13": (),  # elections
    "S14": ("illicit",),  # code interpreter abuse
}


def openai_categories(category: str) -> tuple[str, ...]:
    """The OpenAI categories a classifier's category stands for (maybe none)."""
    if category in LLAMA_GUARD_TO_OPENAI:
        return LLAMA_GUARD_TO_OPENAI[category]
    name = category.lower().replace("_", "-")
    return (name,) if name in OPENAI_CATEGORIES else ()


def choose_pipeline(
    model: str | None,
    policies: PolicySet,
    pipelines: dict[str, Pipeline],
    configured: str | None,
    key_policy: str | None = None,
) -> Pipeline:
    if key_policy is not None:
        chosen = pipelines[key_policy]
    elif model and model in policies.model_names:
        chosen = pipelines[policies.route(model).policy.policy.name]
    elif configured:
        chosen = pipelines[configured]
    else:
        railed = [p for p in pipelines.values() if p.input_rails]
        if len(railed) != 1:
            raise NotFound(
                "Cannot tell which policy should moderate: name one of its models in "
                "'model', or set GUARD_MODERATION_POLICY.",
                param="model",
            )
        chosen = railed[0]
    if not chosen.input_rails:
        raise InvalidRequest(
            f"Policy '{chosen.name}' has no input rails to moderate with.", param="model"
        )
    return chosen


def moderation_inputs(raw: Any) -> list[str]:
    """OpenAI's ``input``: a string, a list of strings, or a list of typed parts."""
    items = raw if isinstance(raw, list) else [raw]
    if len(items) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' holds {len(items)} inputs; guard moderates at most {MAX_INPUTS} "
            "per request: split them.",
            param="input",
        )
    texts = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and item.get("type") == "text":
            texts.append(str(item.get("text", "")))
        elif isinstance(item, dict) and item.get("type") == "image_url":
            raise InvalidRequest("guard's moderation reads text only.", param="input")
        else:
            raise InvalidRequest("'input' must be a string or a list of strings.", param="input")
    if not texts:
        raise InvalidRequest("'input' is empty.", param="input")
    return texts


async def moderate(
    pipeline: Pipeline, texts: Sequence[str], model: str, request_id: str
) -> dict[str, Any]:
    """Judge ``texts`` with the policy's input rails; 413 past its ``inputs.max_chars``."""
    limit = pipeline.loaded.policy.inputs.max_chars
    total = sum(len(text) for text in texts)
    if total > limit:
        raise PayloadTooLarge(
            f"This request holds {total} characters of text to moderate; policy "
            f"'{pipeline.name}' judges at most {limit} per request.",
            code="input_too_large",
        )
    judgements = await judge(pipeline.input_rails, [Subject(t) for t in texts], "input")
    for judgement in judgements:
        if judgement.failed:
            guard = {"policy": pipeline.name, "verdicts": [r.to_dict() for r in judgement.reports]}
            raise rail_failure(judgement, guard)
    return {
        "id": f"modr-{request_id}",
        "model": model,
        "results": [_result(judgement, pipeline.name) for judgement in judgements],
    }


def _result(judgement: Judgement, policy: str) -> dict[str, Any]:
    categories = dict.fromkeys(OPENAI_CATEGORIES, False)
    scores = dict.fromkeys(OPENAI_CATEGORIES, 0.0)
    flagged = judgement.blocked
    for report in judgement.reports:
        verdict = report.verdict
        if verdict is None:
            continue
        flagged = flagged or verdict.flagged
        per_category = {c: verdict.score or 1.0 for c in verdict.categories}
        for category, score in {**verdict.category_scores, **per_category}.items():
            for name in openai_categories(category):
                scores[name] = max(scores[name], float(score))
                categories[name] = categories[name] or category in verdict.categories
    return {
        "flagged": flagged,
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": {name: ["text"] for name in OPENAI_CATEGORIES},
        "guard": {"policy": policy, "verdicts": [r.to_dict() for r in judgement.reports]},
    }
