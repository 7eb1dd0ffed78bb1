"""Offline measurement: ``guard eval`` over labelled sets, its metrics and picture, and
``guard audit`` over audit logs. Never imported by the serving path.
"""

from guard.eval.audit_report import run_audit
from guard.eval.command import run_eval
from guard.eval.metrics import average_precision, binary_metrics, percentile, pr_curve
from guard.eval.runner import Scored, report, score_examples

__all__ = [
    "Scored",
    "average_precision",
    "binary_metrics",
    "percentile",
    "pr_curve",
    "report",
    "run_audit",
    "run_eval",
    "score_examples",
]
