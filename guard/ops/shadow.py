"""A shadow policy: its rails judge a request's prompt and answers after the response.

It runs in flag mode: nothing it decides reaches the client, and it starts only
once the response is complete, so it adds no latency. What it would have done
(each rail's outcome under its own ``action``) goes to the metrics and the audit
log. Only the shadow's rails run; its generation settings are not used.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from guard.components.base import Subject
from guard.errors import GuardError
from guard.pipeline.inputs import InputPlan, read_input
from guard.pipeline.rails import SEVERITY, Judgement, Stage, judge
from guard.pipeline.runner import Pipeline


async def run_shadow(
    shadow: Pipeline, path: str, body: dict[str, Any], answers: dict[int, str]
) -> tuple[list[tuple[Stage, Judgement]], float]:
    """Every judgement the shadow's rails make, and how long they took (ms)."""
    started = time.perf_counter()
    try:
        plan = (
            read_input(path, body, shadow.loaded.policy.inputs)
            if shadow.input_rails
            else InputPlan()
        )
    except GuardError:
        plan = InputPlan()  # a token-id prompt: the active policy answered it already
    context = tuple(body.get("messages") or ())
    outputs = [Subject(answers[i], "assistant", context) for i in sorted(answers)]
    inputs, outs = await asyncio.gather(
        judge(shadow.input_rails, plan.subjects, "input", plan.kinds),
        judge(shadow.output_rails, outputs if shadow.output_rails else [], "output"),
    )
    judgements: list[tuple[Stage, Judgement]] = [
        *(("input", j) for j in inputs),
        *(("output", j) for j in outs),
    ]
    return judgements, (time.perf_counter() - started) * 1000


def shadow_summary(
    shadow: Pipeline, judgements: list[tuple[Stage, Judgement]], latency_ms: float
) -> dict[str, Any]:
    """The ``shadow`` object of an audit line."""
    outcomes = [j.outcome for _, j in judgements]
    return {
        "policy": shadow.name,
        "policy_sha256": shadow.loaded.digest,
        "verdict": max(outcomes, key=SEVERITY.__getitem__, default="pass"),
        "verdicts": [r.to_dict() for _, j in judgements for r in j.reports],
        "latency_ms": round(latency_ms, 2),
    }
