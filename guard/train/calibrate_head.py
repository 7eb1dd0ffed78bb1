"""``guard calibrate-embedding-head``: the embedding head's thresholds and its
cross-validation table chosen again from the out-of-fold scores its training wrote
(``guard train-embedding-head --scores``), without training again: seconds, not hours,
for a new threshold rule or for draws of the folds run apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.components.embedding import HEAD, head_meta_path
from guard.datasets.readers import Example
from guard.train.calibration import LABELS, Array, calibration, report
from guard.train.embedding_head import (
    EVAL_ONLY_SETS,
    Config,
    never_trained_rows,
    served_reading,
    training_rows,
)

Draws = tuple[list[Example], Array, Array, list[Example], Array]
"""The trained rows (once); every draw's out-of-fold probabilities, and the same read as
served, one draw after the other; the never-trained rows and their probabilities."""


def _key(row: Example) -> tuple[Any, ...]:
    return row.source, row.group, row.subset, row.unsafe, row.categories


def _read(path: Path) -> tuple[list[Example], Array, Array | None]:
    """A ``--scores`` file's rows (no text), their probabilities, and those as served
    (None when a trained row has none)."""
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        rows = [
            Example("", r["unsafe"], tuple(r["categories"]), r["source"], r["group"], r["subset"])
            for r in lines
        ]
        probabilities = np.array([[r[label] for label in LABELS] for r in lines], dtype=float)
        served = [r.get("served", r if r["source"] in EVAL_ONLY_SETS else None) for r in lines]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a --scores file ({error!r})") from error
    if not any(row.source not in EVAL_ONLY_SETS for row in rows):
        raise ValueError(f"{path} has no trained rows")
    if any(r is None for r in served):
        return rows, probabilities, None
    return rows, probabilities, np.array([[r[label] for label in LABELS] for r in served])


def read_draws(paths: Sequence[Path]) -> Draws:
    """The draws of the folds in ``paths``, one ``--scores`` file each (the first draw's
    file, then ``oof.draw1.jsonl``...). Every file must list the same rows in the same
    order; the never-trained rows get the mean of the files' probabilities (each file's
    is the mean of its fold models)."""
    if len({path.resolve() for path in paths}) < len(paths):
        raise ValueError("a scores file is given twice: each file is one draw")
    draws = [_read(path) for path in paths]
    rows = draws[0][0]
    for path, (other, _, served) in zip(paths, draws, strict=True):
        if [_key(row) for row in other] != [_key(row) for row in rows]:
            raise ValueError(f"{path} does not list the rows of {paths[0]} in its order")
        if served is None:
            raise ValueError(f"{path}: a trained row has no reading as served")
    trained = [i for i, row in enumerate(rows) if row.source not in EVAL_ONLY_SETS]
    never = [i for i, row in enumerate(rows) if row.source in EVAL_ONLY_SETS]
    return (
        [rows[i] for i in trained],
        np.concatenate([probabilities[trained] for _, probabilities, _ in draws]),
        np.concatenate([served[trained] for _, _, served in draws if served is not None]),
        [rows[i] for i in never],
        np.mean([probabilities[never] for _, probabilities, _ in draws], axis=0),
    )


def with_texts(
    rows: list[Example], eval_rows: list[Example], meta: dict[str, Any], root: Path | None
) -> tuple[list[Example], list[Example]]:
    """``rows`` and ``eval_rows`` with their texts, read again as the head's training read
    them: the data in ``root`` and the configuration its JSON records must give the
    same rows in the same order."""
    if "config" not in meta:
        raise ValueError("the head's JSON records no configuration to read its rows with")
    trained = training_rows(Config(**meta["config"]), root)
    never = never_trained_rows(root)
    for given, read in ((rows, trained), (eval_rows, never)):
        if [_key(row) for row in given] != [_key(row) for row in read]:
            raise ValueError(
                "the data and the head's configuration give other rows than the scores "
                "files: not the data the head trained on?"
            )
    return trained, never


def recalibrate(
    meta: dict[str, Any],
    paths: Sequence[Path],
    scores_out: Path | None = None,
    misses_out: Path | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """``meta`` (a head's JSON) with its thresholds, cross-validation tables and goals
    chosen on the draws in ``paths``; ``misses_out`` gets the first draw's misses, their
    texts read from the data in ``root`` (``with_texts``). ``robustness`` cannot be
    measured from scores files: ``robustness_at`` keeps the thresholds it was measured
    at. The table as served is recorded as read by this version's rail defaults."""
    if "folds" not in meta.get("cv", {}):
        raise ValueError("the head's JSON has no cross-validation to choose again")
    rows, oof, served, eval_rows, held = read_draws(paths)
    if misses_out is not None:
        rows, eval_rows = with_texts(rows, eval_rows, meta, root)
    folds = meta["cv"]["folds"]
    drawn = rows * len(paths)
    chosen = calibration(
        drawn, oof, eval_rows, held, folds, scores_out, misses_out, served, len(rows)
    )
    if "robustness" in meta and "robustness_at" not in meta:
        meta["robustness_at"] = {k: meta[k] for k in ("threshold", "label_thresholds")}
    cv = {**meta["cv"], **chosen.pop("cv"), "draws": len(paths)}
    return {**meta, **chosen, "cv": {**cv, "as_served_reading": served_reading()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="guard calibrate-embedding-head",
        description="Choose the embedding head's thresholds again from the out-of-fold "
        "scores of its training (guard train-embedding-head --scores), without training; "
        "several files are several draws of the folds, pooled. The table as served is "
        "recorded as read by this version's rail defaults: give files this version wrote.",
    )
    parser.add_argument(
        "scores", nargs="+", type=Path, help="--scores files: the first draw's, then each other"
    )
    parser.add_argument(
        "--head", type=Path, default=HEAD, help="the head whose .json to rewrite (.safetensors)"
    )
    parser.add_argument(
        "--scores-out",
        type=Path,
        help="write the scores at the new thresholds here (each further draw's beside it)",
    )
    parser.add_argument(
        "--misses",
        type=Path,
        help="write the first draw's misses here (Markdown; reads the texts from --data)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data folder the head trained on (default: $GUARD_DATA_DIR or ../shared/data)",
    )
    args = parser.parse_args(argv)
    path = head_meta_path(args.head)
    try:
        meta = json.loads(path.read_text())
        meta = recalibrate(meta, args.scores, args.scores_out, args.misses, args.data)
        written = path.with_name(f".{path.name}.new")
        written.write_text(json.dumps(meta, indent=1) + "\n")
        written.replace(path)
    except KeyError as error:
        print(f"guard calibrate-embedding-head: error: {path} lacks {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError) as error:
        print(f"guard calibrate-embedding-head: error: {error}", file=sys.stderr)
        return 2
    for line in report(meta):
        print(line)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
