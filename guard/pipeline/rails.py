"""Running a list of rails over texts: concurrently, each within its time limit.

A rail is a built classifier plus what the policy says to do with its verdict
(``action``) and with its failure (``on_error``). Every rail that ran is reported;
the text it judged never is, so a blocked prompt is never echoed back.

Texts are judged as they read (``guard.reading.normalize``): the classifiers see the
normalised text, and redaction spans are mapped back onto the original. A text with
stretches in a shifted alphabet or written backwards, words broken by hyphens, or Morse
code, is judged again with those read (``guard.reading.readings``); per rail, the worst
verdict stands. A classifier with a window (``window_chars``) reads a longer text whole,
in overlapping windows; the worst window's verdict stands.

An input rail with ``parts`` judges only the parts of a request of those kinds (tool results,
documents...); the others judge every part.

A failure is never a verdict. A rail that errs, times out or finds its classifier too
busy to start reports ``error``; under ``on_error: block`` it is ``fail_closed`` and the
text stops (``Judgement.failed``), but nothing says the text was unsafe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from guard.components.base import Classifier, Subject, Verdict
from guard.components.batching import QueueFull
from guard.components.registry import BuildContext, build_classifier
from guard.components.specs import ClassifierSpec
from guard.errors import client_safe, without_credentials
from guard.logs import REQUEST_ID
from guard.pipeline.verdict_cache import VerdictCache
from guard.reading.offsets import Normalized
from guard.reading.readings import readings

log = logging.getLogger("guard")

Stage = Literal["input", "output"]
Outcome = Literal["pass", "error", "flag", "redact", "block"]
SEVERITY: dict[Outcome, int] = {"pass": 0, "error": 1, "flag": 2, "redact": 3, "block": 4}
OFF_LOOP_CHARS = 16_384
"""Text past this size is read in a thread (normalised, and searched for second
readings: about 6 ms per 16 KB of the worst mixes, up to about 17 ms of dense non-ASCII
character references or of short stretches crafted against the shifted readings), so a
large request cannot hold the event loop."""


@dataclass(frozen=True)
class Rail:
    spec: ClassifierSpec
    classifier: Classifier
    escalation: Rail | None = None
    """The classifier asked when this one's score is in the uncertain band."""
    cache: VerdictCache | None = field(default=None, compare=False)
    """Verdicts this rail already gave, by content (input rails only)."""

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
    fail_closed: bool = False
    """An error under ``on_error: block``: the text stops, unjudged."""
    overloaded: bool = False
    """The error was load: the classifier could not start the work in time."""
    cached: bool = False
    part: str | None = None
    """Where the text came from in the request (``messages[2].content``)."""
    reading: str | None = None
    """Set when this verdict is on a second reading of the text, judged beside it:
    ``rotated`` (its shifted alphabet or backwards writing read,
    ``guard.reading.rotated``), ``joined`` (its words broken by hyphens joined,
    ``guard.reading.joined``), ``morse`` (its Morse code read, ``guard.reading.morse``),
    ``pig_latin`` (its Pig Latin read back, ``guard.reading.pig_latin``), ``char_codes``
    (characters written as numbers read, ``guard.reading.char_codes``) or
    ``spelling_alphabet`` (NATO code words read as the letters they spell,
    ``guard.reading.spelling_alphabet``)."""

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
        if self.part is not None:
            data["part"] = self.part
        if self.reading is not None:
            data["reading"] = self.reading
        if verdict and verdict.category_scores:
            data["category_scores"] = dict(verdict.category_scores)
        if self.error is not None:
            data["error"] = self.error
            data["on_error"] = "block" if self.fail_closed else "allow"
        if self.escalated_from is not None:
            data["escalated_from_score"] = self.escalated_from
        if self.cached:
            data["cached"] = True
        return data


@dataclass(frozen=True)
class Judgement:
    """Every rail's report on one text, and what follows from them."""

    reports: tuple[RailReport, ...]
    redactions: tuple[tuple[int, int, str], ...] = ()
    refusal: str | None = None
    """The ``refusal`` of the first rail, in policy order, that blocked the text, if it has one."""

    @property
    def outcome(self) -> Outcome:
        return max((r.outcome for r in self.reports), key=SEVERITY.__getitem__, default="pass")

    @property
    def blocked(self) -> bool:
        """A rail judged the text unsafe and blocks it."""
        return self.outcome == "block"

    @property
    def failed(self) -> bool:
        """A fail-closed rail could not judge the text."""
        return any(r.fail_closed for r in self.reports)

    @property
    def overloaded(self) -> bool:
        """Every failure that stops the text was load."""
        closed = [r for r in self.reports if r.fail_closed]
        return bool(closed) and all(r.overloaded for r in closed)

    @property
    def stops(self) -> bool:
        """The text must not go on: blocked by a verdict, or unjudged by a fail-closed rail."""
        return self.blocked or self.failed

    def redacted(self, text: str) -> str:
        """``text`` with every span a ``redact`` rail found replaced."""
        for start, end, replacement in sorted(self.redactions, reverse=True):
            text = text[:start] + replacement + text[end:]
        return text


def judges(rail: Rail, kind: str) -> bool:
    """Whether ``rail`` judges a part of this kind (``parts``; unset: every part)."""
    return rail.spec.parts is None or kind in rail.spec.parts


async def judge(
    rails: Sequence[Rail],
    subjects: Sequence[Subject],
    stage: Stage,
    kinds: Sequence[str] | None = None,
) -> list[Judgement]:
    """Run the rails on the subjects; one ``Judgement`` per subject, in order. With the
    ``kinds`` of the subjects (the parts of a request they are), a rail with ``parts``
    judges only those of its kinds; without, every rail judges every subject."""
    if not rails or not subjects:
        return [Judgement(()) for _ in subjects]
    if sum(len(s.text) for s in subjects) > OFF_LOOP_CHARS:
        each = await asyncio.to_thread(lambda: [readings(s.text) for s in subjects])
    else:
        each = [readings(subject.text) for subject in subjects]
    # Every reading of every subject is a text to judge, known by its subject's index.
    texts = [(index, *reading) for index, found in enumerate(each) for reading in found]
    as_read = [replace(subjects[index], text=norm.text) for index, _, norm in texts]
    chosen = [
        [k for k, (i, _, _) in enumerate(texts) if kinds is None or judges(rail, kinds[i])]
        for rail in rails
    ]
    per_rail = await asyncio.gather(
        *(
            _run_rail(rail, [as_read[k] for k in picked], stage)
            for rail, picked in zip(rails, chosen, strict=True)
        )
    )
    judged: list[list[tuple[Rail, RailReport]]] = [[] for _ in texts]
    for rail, picked, reports in zip(rails, chosen, per_rail, strict=True):
        for k, report in zip(picked, reports, strict=True):
            index, name, _ = texts[k]
            where = subjects[index].where or None
            judged[k].append((rail, replace(report, part=where, reading=name)))
    by_subject: list[list[tuple[list[tuple[Rail, RailReport]], Normalized]]] = [
        [] for _ in subjects
    ]
    for (index, _, norm), pairs in zip(texts, judged, strict=True):
        by_subject[index].append((pairs, norm))
    return [_judgement(found) for found in by_subject]


def _judgement(judged: Sequence[tuple[list[tuple[Rail, RailReport]], Normalized]]) -> Judgement:
    """One text's judgement from every rail's reports on each of its readings: per rail,
    the report that says most (``_weight``; the text as written on a tie); spans to
    redact from all of them."""
    pairs = list(judged[0][0])
    for other, _ in judged[1:]:
        pairs = [
            theirs if _weight(theirs[1]) > _weight(mine[1]) else mine
            for mine, theirs in zip(pairs, other, strict=True)
        ]
    return Judgement(
        tuple(report for _, report in pairs),
        _redactions(judged),
        next(
            (_refusal(rail, report) for rail, report in pairs if report.outcome == "block"),
            None,
        ),
    )


def _weight(report: RailReport) -> tuple[bool, bool, int]:
    """How much a report says about its text: a block first, then an error that stops the
    text (fail closed), then by ``SEVERITY``."""
    return report.outcome == "block", report.fail_closed, SEVERITY[report.outcome]


def _refusal(rail: Rail, report: RailReport) -> str | None:
    return rail.spec.refusal_for(report.verdict.categories if report.verdict else ())


async def _run_rail(rail: Rail, subjects: Sequence[Subject], stage: Stage) -> list[RailReport]:
    if not subjects:
        return []
    started = time.perf_counter()
    cache, read = rail.cache, rail.classifier.context_read
    keys = [cache.key(subject, read(subject)) for subject in subjects] if cache is not None else []
    known = [cache.get(k) for k in keys] if cache is not None else [None] * len(subjects)
    todo = [i for i, verdict in enumerate(known) if verdict is None]
    try:
        fresh = await _classify(rail, [subjects[i] for i in todo]) if todo else []
    except Exception as exc:  # a failing classifier must never fail the request itself
        latency = (time.perf_counter() - started) * 1000
        closed = rail.spec.on_error == "block"
        overloaded = isinstance(exc, QueueFull)
        reason = _reason(exc, rail)
        return [
            RailReport(rail.name, rail.spec.kind, stage, "error", None, latency, reason, None,
                       closed, overloaded)
            for _ in subjects
        ]  # fmt: skip
    latency = (time.perf_counter() - started) * 1000
    verdicts: list[Verdict | None] = list(known)
    for index, verdict in zip(todo, fresh, strict=True):
        verdicts[index] = verdict
        if rail.cache is not None:
            rail.cache.put(keys[index], verdict)
    reports = [
        RailReport(
            rail.name,
            rail.spec.kind,
            stage,
            _outcome(rail.spec, verdict),
            verdict,
            latency if index in todo else 0.0,
            cached=index not in todo,
        )
        for index, verdict in enumerate(verdicts)
        if verdict is not None
    ]
    if rail.escalation is not None and rail.spec.escalate is not None:
        reports = await _escalate(rail, rail.escalation, subjects, reports, stage)
    return reports


async def _classify(rail: Rail, subjects: Sequence[Subject]) -> list[Verdict]:
    """The classifier's verdicts, each text read whole: a classifier with a window gets
    overlapping windows, and each text's worst window speaks for it."""
    classifier = rail.classifier
    timeout = None if classifier.times_itself else rail.spec.timeout_s
    size = classifier.window_chars
    if size is None or all(len(s.text) <= size for s in subjects):
        verdicts = await asyncio.wait_for(classifier.classify(subjects), timeout)
        _check_count(verdicts, subjects)
        return verdicts
    pieces: list[Subject] = []
    owners: list[tuple[int, int]] = []
    for index, subject in enumerate(subjects):
        for start, end in char_windows(len(subject.text), size):
            pieces.append(replace(subject, text=subject.text[start:end]))
            owners.append((index, start))
    verdicts = await asyncio.wait_for(classifier.classify(pieces), timeout)
    _check_count(verdicts, pieces)
    worst: list[Verdict | None] = [None] * len(subjects)
    spans: list[list[tuple[int, int]]] = [[] for _ in subjects]
    for (index, start), verdict in zip(owners, verdicts, strict=True):
        spans[index] += [(start + a, start + b) for a, b in verdict.spans]
        current = worst[index]
        if current is None or _severity(verdict) > _severity(current):
            worst[index] = verdict
    return [
        replace(verdict, spans=tuple(sorted(set(found))))
        for verdict, found in zip(worst, spans, strict=True)
        if verdict is not None
    ]


def char_windows(length: int, size: int) -> list[tuple[int, int]]:
    """Overlapping ``[start, end)`` windows of at most ``size`` characters covering
    ``length``; each overlaps the next by a quarter, and the last ends with the text."""
    if length <= size:
        return [(0, length)]
    step = size - size // 4
    starts = [*range(0, length - size, step), length - size]
    return [(start, start + size) for start in starts]


def _severity(verdict: Verdict) -> tuple[bool, float]:
    return verdict.flagged, verdict.score if verdict.score is not None else 0.0


def _check_count(verdicts: Sequence[Verdict], subjects: Sequence[Subject]) -> None:
    if len(verdicts) != len(subjects):
        raise RuntimeError(f"returned {len(verdicts)} verdicts for {len(subjects)} texts")


def _reason(exc: Exception, rail: Rail) -> str:
    """The error a verdict shows the client; the server log gets the whole of it."""
    if isinstance(exc, QueueFull):
        return f"overloaded: {exc}"
    if isinstance(exc, TimeoutError):
        return f"timed out after {rail.spec.timeout_s} s"
    detail = f"{type(exc).__name__}: {exc}"
    log.warning(
        "request %s: rail '%s' (%s) failed: %s",
        REQUEST_ID.get() or "-",
        rail.name,
        rail.spec.kind,
        without_credentials(detail),
    )
    return client_safe(detail)


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
            fail_closed=decision.fail_closed,
            overloaded=decision.overloaded,
            cached=first.cached and decision.cached,
        )
    return reports


def _outcome(spec: ClassifierSpec, verdict: Verdict) -> Outcome:
    if not verdict.flagged:
        return "pass"
    return spec.action


def _redactions(
    judged: Sequence[tuple[Sequence[tuple[Rail, RailReport]], Normalized]],
) -> tuple[tuple[int, int, str], ...]:
    """The spans to redact, found in any reading, in the original text's offsets."""
    found: list[tuple[int, int, str]] = []
    for pairs, readable in judged:
        for rail, report in pairs:
            if report.outcome == "redact" and report.verdict is not None:
                replacement = str(getattr(rail.spec, "replacement", "[REDACTED]"))
                for start, end in report.verdict.spans:
                    found.append((*readable.original_span(start, end), replacement))
    merged: list[tuple[int, int, str]] = []
    for start, end, replacement in sorted(found):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(end, last[1]), last[2])
        else:
            merged.append((start, end, replacement))
    return tuple(merged)


def note_unshared_encoders(rails: Sequence[Rail]) -> None:
    """Log when a stage's ``attacks`` rails (``rails``: one stage's, input or output)
    read texts through another copy of the MiniLM encoder than its ``embedding`` rails:
    each short text then runs through the encoder once for each
    (``minilm.SharedPooling``)."""
    found: dict[str, dict[int, str]] = {"embedding": {}, "attacks": {}}
    for rail in [*rails, *(r.escalation for r in rails if r.escalation is not None)]:
        pooling = getattr(getattr(rail.classifier, "model", None), "pooling", None)
        if rail.spec.kind in found and pooling is not None:
            found[rail.spec.kind][id(pooling)] = rail.name
    embedding, attacks = found["embedding"], found["attacks"]
    if embedding and attacks and not embedding.keys() & attacks.keys():
        log.warning(
            "the attacks rail '%s' and the embedding rail '%s' read texts through separate "
            "copies of the encoder (another precision, int8, or heads not trained "
            "together), so every short text runs through it twice; with the shipped heads, "
            "name one precision (float32 or bfloat16) on both to share it",
            next(iter(attacks.values())),
            next(iter(embedding.values())),
        )


def cached_rail(rail: Rail) -> Rail:
    """The rail, and its escalation, with a verdict cache (for input rails)."""
    escalation = cached_rail(rail.escalation) if rail.escalation else None
    return replace(rail, escalation=escalation, cache=VerdictCache())


def build_rail(spec: Any, components: BuildContext) -> Rail:
    """The rail of a spec, with the rail it escalates to."""
    escalation = build_rail(spec.escalate.to, components) if spec.escalate else None
    classifier = build_classifier(spec, components)
    # An escalated verdict is the second classifier's, with its categories.
    known = classifier.categories
    if escalation is not None and known is not None:
        second = escalation.classifier.categories
        known = None if second is None else (*known, *second)
    if isinstance(spec.refusal, dict) and known is not None:
        unknown = [key for key in spec.refusal if key != "*" and key not in known]
        if unknown:
            raise ValueError(
                f"refusal names categories this rail never reports: {', '.join(unknown)} "
                f"(it reports: {', '.join(known) or 'none; give one message'})"
            )
    return Rail(spec, classifier, escalation)
