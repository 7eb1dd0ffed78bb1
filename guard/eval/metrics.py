"""Classifier metrics: confusion counts, precision/recall/F1, average precision, the
precision-recall curve, and guard's one percentile.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any


def binary_metrics(truth: Sequence[bool], flagged: Sequence[bool]) -> dict[str, Any]:
    tp = sum(t and f for t, f in zip(truth, flagged, strict=True))
    fp = sum(f and not t for t, f in zip(truth, flagged, strict=True))
    fn = sum(t and not f for t, f in zip(truth, flagged, strict=True))
    tn = len(truth) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else None
    )
    return {
        "n": len(truth),
        "positives": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_positive_rate": fp / (fp + tn) if fp + tn else None,
        "flagged_rate": (tp + fp) / len(truth) if truth else None,
    }


def _cumulative(truth: Sequence[bool], scores: Sequence[float]) -> list[tuple[float, int, int]]:
    """(threshold, true positives, flagged) for each distinct score, highest first."""
    ranked = sorted(zip(scores, truth, strict=True), key=lambda pair: -pair[0])
    points = []
    hits = seen = 0
    for threshold, group in itertools.groupby(ranked, key=lambda pair: pair[0]):
        labels = [label for _, label in group]
        hits += sum(labels)
        seen += len(labels)
        points.append((threshold, hits, seen))
    return points


def average_precision(truth: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the precision-recall curve, as average precision (ties counted together)."""
    positives = sum(truth)
    if positives == 0:
        return None
    area = 0.0
    previous_hits = 0
    for _, hits, seen in _cumulative(truth, scores):
        area += (hits - previous_hits) / positives * hits / seen
        previous_hits = hits
    return area


def pr_curve(truth: Sequence[bool], scores: Sequence[float]) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) at every distinct score."""
    positives = sum(truth)
    return [
        (threshold, hits / seen, hits / positives if positives else 0.0)
        for threshold, hits, seen in _cumulative(truth, scores)
    ]


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]
