"""``guard eval``: run a policy's rails over a labelled set and measure them.

Prompts go through the input rails, answers through the output rails, each example as
its own call with ``concurrency`` in flight, as in serving (so in-process classifiers
batch across them and latency includes that wait). A prompt is any text, judged by every
input rail, whatever its ``parts``, so that a detector set to judge only tool results is
measured too; a row that is an application's own instructions (``role: system``) is
judged as a system message is in serving: only by rails that judge the ``system`` part,
and by none when the policy trusts the system role.
An example counts as flagged when any rail flags it or the rails block it.

A rail failure is never a verdict. A row whose judgement holds any error (a rail that
failed, timed out or was overloaded, fail-closed or not) is an error row: it is left out
of every metric, counted, and listed by its index in the set with the error messages
(never its text), so that the numbers measure the classifier, not the machine.
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
    errors: tuple[str, ...] = ()
    """Each failed rail's error (``rail: message``); any makes this an error row, which
    no metric counts."""
    judged: bool = True
    """False when no rail read the row (every rail's ``parts`` left it out, or the policy
    trusts its role): counted as not flagged, and reported as ``unjudged``."""

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def _score(judgement: Judgement) -> tuple[bool, float, bool, tuple[str, ...]]:
    """Flagged, score and escalated from the verdicts alone; the errors apart."""
    flagged = judgement.blocked
    score = 0.0
    escalated = False
    errors: list[str] = []
    for report in judgement.reports:
        escalated = escalated or report.escalated_from is not None
        if report.outcome == "error" or report.error is not None:
            errors.append(f"{report.rail}: {report.error or 'error'}")
            continue
        verdict = report.verdict
        if verdict is None:
            continue
        flagged = flagged or verdict.flagged
        fallback = 1.0 if verdict.flagged else 0.0
        score = max(score, verdict.score if verdict.score is not None else fallback)
    return flagged, score, escalated, tuple(errors)


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
        kinds: list[str] | None = None
        if example.role == "assistant":
            context = ({"role": "user", "content": example.prompt or ""},)
            subject = Subject(example.text, "assistant", context)
            rails, stage = pipeline.output_rails, "output"
        else:
            told = ({"role": "system", "content": example.instructions},)
            subject = Subject(example.text, context=told if example.instructions else ())
            rails, stage = pipeline.input_rails, "input"
            if example.role == "system":
                kinds = ["system"]
                if "system" in pipeline.loaded.policy.inputs.trusted_roles:
                    rails = []
        async with semaphore:
            began = time.perf_counter()
            [judgement] = await judge(rails, [subject], stage, kinds)  # type: ignore[arg-type]
            latency = (time.perf_counter() - began) * 1000
        done += 1
        if progress is not None:
            progress(done, len(examples), time.perf_counter() - started)
        flagged, score, escalated, errors = _score(judgement)
        read = bool(judgement.reports)
        return Scored(example, flagged, score, latency, escalated, errors, read)

    return list(await asyncio.gather(*(one(example) for example in examples)))


def report(dataset: str, policy: str, scored: Sequence[Scored], wall_s: float) -> dict[str, Any]:
    """The metrics over the judged rows; error rows only under ``errors`` (``rows``: each
    one's index in the set, 0-based, its label and its errors) and in ``rail_errors``
    (how many rail reports were errors)."""
    judged = [s for s in scored if not s.failed]
    failed = [(index, s) for index, s in enumerate(scored) if s.failed]
    truth = [s.example.unsafe for s in judged]
    flagged = [s.flagged for s in judged]
    scores = [s.score for s in judged]
    latencies = [s.latency_ms for s in judged]
    result: dict[str, Any] = {
        "dataset": dataset,
        "policy": policy,
        "rows": len(scored),
        "overall": {**binary_metrics(truth, flagged), "auprc": average_precision(truth, scores)},
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        "throughput_per_s": len(judged) / wall_s if wall_s else None,
        "escalated_share": sum(s.escalated for s in judged) / len(judged) if judged else None,
        "errors": {
            "count": len(failed),
            "rows": [
                {"row": index, "unsafe": s.example.unsafe, "errors": list(s.errors)}
                for index, s in failed
            ],
        },
        "rail_errors": sum(len(s.errors) for s in scored),
        "unjudged": sum(not s.judged for s in judged),
        "per_category": _grouped(judged, lambda s: s.example.categories),
        "per_subset": _grouped(judged, lambda s: (s.example.subset,) if s.example.subset else ()),
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
