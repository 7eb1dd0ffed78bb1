"""Harm heads compared at equal operating points, from their out-of-fold scores.

Each FILE is what ``guard train-embedding-head --scores FILE`` writes: one JSON line per
row, with its out-of-fold unsafe ``score``. One threshold is moved over each file's
scores until HarmBench recall, or XSTest's false-positive rate, reaches a target, and
the other sets are read at that threshold. Two heads at their own thresholds sit at
different operating points; here they are compared at the same ones. With ``--served``
each row counts as the rail reads it (``served_score``: normalised, a long text in
windows and each sentence alone a margin lower), as ``bench/policy_oof.py --served``.

    .venv/bin/python bench/operating_points.py FILE [FILE ...] [--served]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.policy_oof import scored  # noqa: E402
from guard.train.calibration import metrics  # noqa: E402

RECALL_TARGETS = (0.90, 0.923, 0.95)
FPR_TARGETS = (0.14, 0.10, 0.08)
SHARES = (
    ("HarmBench", "harmbench", True),
    ("SST", "simplesafetytests", True),
    ("XSTest unsafe", "xstest", True),
    ("XSTest safe", "xstest", False),
    ("JBB benign", "jbb_benign", False),
    ("Do-Not-Answer", "do_not_answer", True),
)
"""(column, set, unsafe rows?): the share of those rows flagged."""
F1_SETS = (("openai F1", "openai_moderation"), ("ToxicChat F1", "toxicchat_human"))


Rows = list[dict[str, Any]]
"""One dict per row of a ``--scores`` file: its ``source``, ``unsafe`` and ``score``."""


def scores(rows: Rows, source: str, unsafe: bool | None = None) -> np.ndarray:
    return np.array(
        [r["score"] for r in rows if r["source"] == source and unsafe in (None, r["unsafe"])]
    )


def f1(rows: Rows, source: str, threshold: float) -> float:
    unsafe = np.array([r["unsafe"] for r in rows if r["source"] == source])
    return metrics(unsafe, scores(rows, source) >= threshold)["f1"]


def row(rows: Rows, point: str, threshold: float) -> str:
    cells = [f"{(scores(rows, s, u) >= threshold).mean():.3f}" for _, s, u in SHARES]
    cells += [f"{f1(rows, s, threshold):.3f}" for _, s in F1_SETS]
    return f"| {point} | {threshold:.3f} | " + " | ".join(cells) + " |"


def table(rows: Rows) -> list[str]:
    harmbench = np.sort(scores(rows, "harmbench"))
    safe = np.sort(scores(rows, "xstest", False))
    header = ["operating point", "threshold", *(c for c, _, _ in SHARES), *(c for c, _ in F1_SETS)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    # the 1e-9s: (1 - 0.9) * 10 is 0.999..., and a target met exactly must count as met
    for target in RECALL_TARGETS:
        threshold = harmbench[int(np.floor((1 - target) * len(harmbench) + 1e-9))]
        lines.append(row(rows, f"HarmBench recall {target}", threshold))
    for target in FPR_TARGETS:
        threshold = safe[int(np.ceil((1 - target) * len(safe) - 1e-9)) - 1] + 1e-9
        lines.append(row(rows, f"XSTest FPR {target}", threshold))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--served", action="store_true", help="the rows as a rail reads them")
    args = parser.parse_args(argv)
    print(
        "$ .venv/bin/python bench/operating_points.py "
        + shlex.join(sys.argv[1:] if argv is None else argv)
    )
    for path in args.files:
        rows = scored(path, args.served)
        print(f"\n{path}\n")
        print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
