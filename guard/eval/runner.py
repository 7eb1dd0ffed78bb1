"""``guard eval``: run a policy's rails over a labelled set and measure them.

Prompts (``role: user``) go through the input rails, answers through the output
rails, each example as its own call with ``concurrency`` in flight, as in serving
(so in-process classifiers batch across them and latency includes that wait).
An example counts as flagged when any rail flags it or the rails block it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from guard.components.base import Subject
from guard.datasets.readers import Example
from guard.eval.metrics import average_precision, binary_metrics, percentile, pr_curve
from guard.pipeline.rails import Judgement, Rail, judge
from guard.pipeline.runner import Pipeline


@dataclass(frozen=True)
class Scored:
    example: Example
    flagged: bool
    score: float
    """Highest unsafe score any rail gave (1.0 / 0.0 for rails without a score)."""
    latency_ms: float
    escalated: bool
    errors: int


def _score(judgement: Judgement) -> tuple[bool, float, bool, int]:
    flagged = judgement.blocked
    score = 0.0
    escalated = False
    errors = 0
    for report in judgement.reports:
        verdict = report.verdict
        errors += report.error is not None
        escalated = escalated or report.escalated_from is not None
        if verdict is None:
            score = max(score, 1.0 if report.outcome == "block" else 0.0)
            continue
        flagged = flagged or verdict.flagged
        fallback = 1.0 if verdict.flagged else 0.0
        score = max(score, verdict.score if verdict.score is not None else fallback)
    return flagged, score, escalated, errors


async def score_examples(
    pipeline: Pipeline,
    examples: Sequence[Example],
    concurrency: int = 16,
    progress: Callable[[int, int, float], None] | None = None,
) -> list[Scored]:
    semaphore = asyncio.Semaphore(concurrency)
    done = 0
    started = time.perf_counter()

    async def one(example: Example) -> Scored:
        nonlocal done
        rails: list[Rail]
        if example.role == "assistant":
            context = ({"role": "user", "content": example.prompt or ""},)
            subject = Subject(example.text, "assistant", context)
            rails, stage = pipeline.output_rails, "output"
        else:
            subject, rails, stage = Subject(example.text), pipeline.input_rails, "input"
        async with semaphore:
            began = time.perf_counter()
            [judgement] = await judge(rails, [subject], stage)  # type: ignore[arg-type]
            latency = (time.perf_counter() - began) * 1000
        done += 1
        if progress is not None:
            progress(done, len(examples), time.perf_counter() - started)
        flagged, score, escalated, errors = _score(judgement)
        return Scored(example, flagged, score, latency, escalated, errors)

    return list(await asyncio.gather(*(one(example) for example in examples)))


def report(dataset: str, policy: str, scored: Sequence[Scored], wall_s: float) -> dict[str, Any]:
    truth = [s.example.unsafe for s in scored]
    flagged = [s.flagged for s in scored]
    scores = [s.score for s in scored]
    latencies = [s.latency_ms for s in scored]
    result: dict[str, Any] = {
        "dataset": dataset,
        "policy": policy,
        "overall": {**binary_metrics(truth, flagged), "auprc": average_precision(truth, scores)},
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        "throughput_per_s": len(scored) / wall_s if wall_s else None,
        "escalated_share": sum(s.escalated for s in scored) / len(scored) if scored else None,
        "rail_errors": sum(s.errors for s in scored),
        "per_category": _grouped(scored, lambda s: s.example.categories),
        "per_subset": _grouped(scored, lambda s: (s.example.subset,) if s.example.subset else ()),
        "pr_curve": pr_curve(truth, scores),
    }
    return result


def _grouped(
    scored: Sequence[Scored], keys: Callable[[Scored], Sequence[str]]
) -> dict[str, dict[str, Any]]:
    """Metrics over the rows carrying each key (a category, or a subset of the set)."""
    groups: dict[str, list[Scored]] = {}
    for item in scored:
        for key in keys(item):
            groups.setdefault(key, []).append(item)
    return {
        key: binary_metrics([s.example.unsafe for s in rows], [s.flagged for s in rows])
        for key, rows in sorted(groups.items())
    }


def print_progress(done: int, total: int, elapsed_s: float) -> None:
    step = max(1, total // 20)
    if done % step and done != total:
        return
    left = elapsed_s / done * (total - done)
    print(
        f"eval: {done}/{total} ({done / total:.0%}) {elapsed_s:.0f} s, about {left:.0f} s left",
        file=sys.stderr,
        flush=True,
    )
