"""Running a list of rails over texts: concurrently, each within its time limit.

A rail is a built classifier plus what the policy says to do with its verdict
(``action``) and with its failure (``on_error``). Every rail that ran is reported;
the text it judged never is, so a blocked prompt is never echoed back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from guard.components.base import Classifier, Subject, Verdict
from guard.components.specs import ClassifierSpec

Stage = Literal["input", "output"]
Outcome = Literal["pass", "error", "flag", "redact", "block"]
SEVERITY: dict[Outcome, int] = {"pass": 0, "error": 1, "flag": 2, "redact": 3, "block": 4}


@dataclass(frozen=True)
class Rail:
    spec: ClassifierSpec
    classifier: Classifier
    escalation: Rail | None = None
    """The classifier asked when this one's score is in the uncertain band."""

    @property
    def name(self) -> str:
        return self.spec.display_name


@dataclass(frozen=True)
class RailReport:
    """One rail's judgement of one text, as shown under ``guard.verdicts``."""

    rail: str
    kind: str
    stage: Stage
    outcome: Outcome
    verdict: Verdict | None
    latency_ms: float
    error: str | None = None
    escalated_from: float | None = None
    """The first classifier's score, when an escalation decided this verdict."""

    def to_dict(self) -> dict[str, Any]:
        verdict = self.verdict
        data: dict[str, Any] = {
            "rail": self.rail,
            "kind": self.kind,
            "stage": self.stage,
            "outcome": self.outcome,
            "flagged": verdict.flagged if verdict else None,
            "score": verdict.score if verdict else None,
            "categories": list(verdict.categories) if verdict else [],
            "latency_ms": round(self.latency_ms, 2),
        }
        if verdict and verdict.category_scores:
            data["category_scores"] = dict(verdict.category_scores)
        if self.error is not None:
            data["error"] = self.error
        if self.escalated_from is not None:
            data["escalated_from_score"] = self.escalated_from
        return data


@dataclass(frozen=True)
class Judgement:
    """Every rail's report on one text, and what follows from them."""

    reports: tuple[RailReport, ...]
    redactions: tuple[tuple[int, int, str], ...] = ()

    @property
    def outcome(self) -> Outcome:
        return max((r.outcome for r in self.reports), key=SEVERITY.__getitem__, default="pass")

    @property
    def blocked(self) -> bool:
        return self.outcome == "block"

    def redacted(self, text: str) -> str:
        """``text`` with every span a ``redact`` rail found replaced."""
        for start, end, replacement in sorted(self.redactions, reverse=True):
            text = text[:start] + replacement + text[end:]
        return text


async def judge(
    rails: Sequence[Rail], subjects: Sequence[Subject], stage: Stage
) -> list[Judgement]:
    """Run every rail on every subject; one ``Judgement`` per subject, in order."""
    if not rails or not subjects:
        return [Judgement(()) for _ in subjects]
    per_rail = await asyncio.gather(*(_run_rail(rail, subjects, stage) for rail in rails))
    judgements = []
    for index in range(len(subjects)):
        reports = tuple(reports[index] for reports in per_rail)
        judgements.append(Judgement(reports, _redactions(rails, reports)))
    return judgements


async def _run_rail(rail: Rail, subjects: Sequence[Subject], stage: Stage) -> list[RailReport]:
    started = time.perf_counter()
    try:
        verdicts = await asyncio.wait_for(rail.classifier.classify(subjects), rail.spec.timeout_s)
        if len(verdicts) != len(subjects):
            raise RuntimeError(f"returned {len(verdicts)} verdicts for {len(subjects)} texts")
    except Exception as exc:  # a failing classifier must never fail the request itself
        latency = (time.perf_counter() - started) * 1000
        reason = (
            f"timed out after {rail.spec.timeout_s} s"
            if isinstance(exc, TimeoutError)
            else f"{type(exc).__name__}: {exc}"
        )
        outcome: Outcome = "block" if rail.spec.on_error == "block" else "error"
        return [
            RailReport(rail.name, rail.spec.kind, stage, outcome, None, latency, reason)
            for _ in subjects
        ]
    latency = (time.perf_counter() - started) * 1000
    reports = [
        RailReport(rail.name, rail.spec.kind, stage, _outcome(rail.spec, verdict), verdict, latency)
        for verdict in verdicts
    ]
    if rail.escalation is not None and rail.spec.escalate is not None:
        reports = await _escalate(rail, rail.escalation, subjects, reports, stage)
    return reports


async def _escalate(
    rail: Rail, second: Rail, subjects: Sequence[Subject], reports: list[RailReport], stage: Stage
) -> list[RailReport]:
    """Let ``second`` decide where the first score is uncertain; keep the first's action."""
    assert rail.spec.escalate is not None
    low, high = rail.spec.escalate.between
    uncertain = [
        index
        for index, report in enumerate(reports)
        if report.verdict is not None
        and report.verdict.score is not None
        and low <= report.verdict.score <= high
    ]
    if not uncertain:
        return reports
    decided = await _run_rail(second, [subjects[i] for i in uncertain], stage)
    reports = list(reports)
    for index, decision in zip(uncertain, decided, strict=True):
        first = reports[index]
        outcome = (
            decision.outcome if decision.verdict is None else _outcome(rail.spec, decision.verdict)
        )
        reports[index] = replace(
            first,
            outcome=outcome,
            verdict=decision.verdict,
            error=decision.error,
            latency_ms=first.latency_ms + decision.latency_ms,
            escalated_from=first.verdict.score if first.verdict else None,
        )
    return reports


def _outcome(spec: ClassifierSpec, verdict: Verdict) -> Outcome:
    if not verdict.flagged:
        return "pass"
    return spec.action


def _redactions(
    rails: Sequence[Rail], reports: Sequence[RailReport]
) -> tuple[tuple[int, int, str], ...]:
    found: list[tuple[int, int, str]] = []
    for rail, report in zip(rails, reports, strict=True):
        if report.outcome == "redact" and report.verdict is not None:
            replacement = str(getattr(rail.spec, "replacement", "[REDACTED]"))
            found += [(start, end, replacement) for start, end in report.verdict.spans]
    merged: list[tuple[int, int, str]] = []
    for start, end, replacement in sorted(found):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(end, last[1]), last[2])
        else:
            merged.append((start, end, replacement))
    return tuple(merged)
