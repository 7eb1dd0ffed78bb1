"""Train the ``attacks`` detector's head, and measure it by grouped cross-validation.

``guard train-attack-head`` reads the rows of ``guard.train.attack_data`` (licence-
compatible dev sets and the frames written for guard): jailbreaks, prompt injections,
and honest text of every kind as negatives of both.

Features are ``guard.components.attacks``'s: hashed token n-grams of the whole text and of
its windows, and the frozen backbone's embedding of the whole text. One logistic
regression per label (scikit-learn, L2, classes balanced) learns from the whole texts
and from the windows of negative texts, so a window of a benign document is known to
be benign. Cross-validation is grouped twice: by goal (a JailbreakBench goal with all
its attacks, every row's own group, identical texts) and by template (an attack kind of
JailbreakBench, the opening words of a jailbreak template, an authored payload, the
drawn suffixes of ``guard.train.suffixes`` as one kind, the authored short persona
set-ups as another). Each split deals the groups into folds ``Config.draws`` times;
the thresholds are chosen on the goal split's out-of-fold scores of every draw pooled,
and both splits are reported pooled.
The final head is trained on every row, and then the instruction-aware layer of
``prompt_injection`` (``guard.train.instructed``) on its scores.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from guard import datasets
from guard.components.attacks import (
    ATTACK_HEAD,
    EMBEDDING_TOKENS,
    NGRAM_BUCKETS,
    SENTENCE_LABELS,
    AttackModel,
    logit,
    ngram_counts,
    read,
)
from guard.components.embedding import HEAD as EMBEDDING_HEAD
from guard.components.embedding import file_sha256, load_model
from guard.components.minilm import fit_length, load_backbone
from guard.components.specs import ATTACK_LABELS
from guard.reading import normalized_text
from guard.train.attack_data import (
    EVAL_ONLY_SETS,
    Config,
    Row,
    dataset_hashes,
    training_rows,
)
from guard.train.attack_report import source, table, write_misses
from guard.train.batches import draw_seeds
from guard.train.calibration import Goal, metrics
from guard.train.embedding_head import fold_of
from guard.train.instructed import sent_with_instructions
from guard.train.instructed import train as train_instructed

EVERYDAY_SETS = (
    "xstest",
    "jbb_benign",
    "mitre_frr",
    "openai_moderation",
    "hh_rlhf_requests",
    "authored_everyday",
)
BENIGN_GOALS = (
    *(Goal(name, "fpr", 0.02, at_least=False) for name in EVERYDAY_SETS),
    Goal("prompt_injection_benign", "fpr", 0.05, at_least=False),
)
"""What the detector may flag of honest text. The over-refusal goals of issue #19 (XSTest
8 %, JBB benign 10 %, MITRE 5 %) are for a whole policy, whose harm classifier spends
most of them; this detector gets 2 % of each everyday set, and 5 % of system prompts."""

GROUPED_SOURCES = {
    "authored_everyday": (
        "authored_benign",
        "authored_chat",
        "authored_roleplay",
        "authored_persona_roleplay",
        "authored_rules",
        "authored_technical",
    ),
}
"""Goal names that stand for several small sets of the same kind of text, measured
together (50 rows would make 2 % a single row)."""
GOALS: dict[str, tuple[Goal, ...]] = {
    "jailbreak": (
        Goal("jbb_artifacts", "recall", 0.90),
        Goal("inthewild_jailbreaks", "recall", 0.90),
        *BENIGN_GOALS,
    ),
    "prompt_injection": (
        Goal("prompt_injection", "recall", 0.90),
        Goal("authored_injected_documents", "recall", 0.90),
        Goal("authored_documents", "fpr", 0.05, at_least=False),
        *BENIGN_GOALS,
    ),
}


@dataclass
class Features:
    whole: sparse.csr_matrix
    """Per row: n-grams of the whole text, then the scaled embedding."""
    windows: sparse.csr_matrix
    """Per window or sentence of every row: its n-grams (embedding columns zero)."""
    owner: NDArray[np.int64]
    """The row of each window or sentence."""
    sentence: NDArray[np.bool_]
    """Whether each is a sentence (read only by ``SENTENCE_LABELS``)."""

    def read_by(self, label: int) -> NDArray[np.bool_]:
        """Which windows and sentences the label reads."""
        reads_sentences = ATTACK_LABELS[label] in SENTENCE_LABELS
        return np.asarray(~self.sentence | reads_sentences)


def ngram_matrix(vectors: Sequence[tuple[NDArray[np.int64], NDArray[np.float32]]]) -> Any:
    if not vectors:
        return sparse.csr_matrix((0, NGRAM_BUCKETS), dtype=np.float32)
    rows = np.concatenate([np.full(len(b), i) for i, (b, _) in enumerate(vectors)])
    columns = np.concatenate([b for b, _ in vectors])
    values = np.concatenate([w for _, w in vectors])
    return sparse.csr_matrix((values, (rows, columns)), shape=(len(vectors), NGRAM_BUCKETS))


def features(model: AttackModel, texts: Sequence[str], config: Config) -> Features:
    """The head's inputs for ``texts``, read as the rails read them (``normalized_text``)."""
    read_texts = read(model.encode, [normalized_text(text) for text in texts])
    cut = [fit_length(ids, EMBEDDING_TOKENS) for ids, _, _ in read_texts]
    order = sorted(range(len(cut)), key=lambda i: len(cut[i]))
    embedded = np.zeros((len(cut), model.encoder.word.shape[1]), np.float32)
    for start in range(0, len(order), 64):
        chunk = order[start : start + 64]
        embedded[chunk] = model.embeddings([cut[i] for i in chunk])
    whole = sparse.hstack(
        [
            ngram_matrix([ngram_counts(body) for _, body, _ in read_texts]),
            config.embedding_weight * embedded,
        ]
    ).tocsr()
    pieces = [(i, *part) for i, (_, _, parts) in enumerate(read_texts) for part in parts]
    windows = sparse.hstack(
        [
            ngram_matrix([ngram_counts(part) for _, part, _ in pieces]),
            sparse.csr_matrix((len(pieces), embedded.shape[1])),
        ]
    ).tocsr()
    owner = np.array([i for i, _, _ in pieces], dtype=np.int64)
    return Features(whole, windows, owner, np.array([s for _, _, s in pieces], dtype=bool))


@dataclass
class Fitted:
    whole_weights: NDArray[np.float64]
    """(labels, n-gram buckets + embedding): how a whole text is read."""
    whole_bias: NDArray[np.float64]
    part_weights: NDArray[np.float64]
    """(labels, n-gram buckets): how a window or a sentence is read (no embedding)."""
    part_bias: NDArray[np.float64]


def logistic(x: Any, target: NDArray[np.bool_], config: Config) -> tuple[Any, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=config.regularisation, class_weight="balanced", max_iter=5000)
    model.fit(x, target)
    return model.coef_[0], float(model.intercept_[0])


def fit(feats: Features, y: NDArray[np.bool_], train: NDArray[np.bool_], config: Config) -> Fitted:
    """Per label, two logistic regressions, each learning from the rows ``train`` (rows,
    labels) marks for the label: one reads whole texts (n-grams and embedding); one reads
    parts (n-grams only), learnt from the whole texts' n-grams and from the windows and
    sentences of benign texts."""
    assert train.shape == y.shape, "one column of rows per label"
    whole_ngrams = feats.whole[:, :NGRAM_BUCKETS]
    wholes, parts = [], []
    for label in range(y.shape[1]):
        rows = train[:, label]
        wholes.append(logistic(feats.whole[rows], y[rows, label], config))
        chosen = rows[feats.owner] & ~y[feats.owner].any(axis=1) & feats.read_by(label)
        x = sparse.vstack([whole_ngrams[rows], feats.windows[chosen][:, :NGRAM_BUCKETS]])
        target = np.concatenate([y[rows, label], np.zeros(int(chosen.sum()), bool)])
        parts.append(logistic(x.tocsr(), target, config))
    return Fitted(
        np.array([w for w, _ in wholes]),
        np.array([b for _, b in wholes]),
        np.array([w for w, _ in parts]),
        np.array([b for _, b in parts]),
    )


def predict(fitted: Fitted, feats: Features, rows: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Probabilities per label for the chosen rows (in row order): the highest over
    the whole text and its windows and sentences, as the classifier scores at run time."""
    logits = np.asarray(feats.whole[rows] @ fitted.whole_weights.T) + fitted.whole_bias
    chosen = np.where(rows)[0]
    position = {row: i for i, row in enumerate(chosen)}
    in_rows = rows[feats.owner]
    part_ngrams = feats.windows[in_rows][:, :NGRAM_BUCKETS]
    part_logits = np.asarray(part_ngrams @ fitted.part_weights.T) + fitted.part_bias
    for label in range(len(ATTACK_LABELS)):
        part_logits[~feats.read_by(label)[in_rows], label] = -np.inf
    for owner, row_logits in zip(feats.owner[in_rows], part_logits, strict=True):
        i = position[int(owner)]
        logits[i] = np.maximum(logits[i], row_logits)
    return np.asarray(1 / (1 + np.exp(-logits)), dtype=np.float64)


def out_of_fold(
    feats: Features,
    y: NDArray[np.bool_],
    trains: NDArray[np.bool_],
    fold: NDArray[np.int64],
    config: Config,
    log: Any,
) -> NDArray[np.float64]:
    oof = np.zeros(y.shape)
    for k in range(config.folds):
        started = time.perf_counter()
        fitted = fit(feats, y, (fold != k)[:, None] & trains, config)
        oof[fold == k] = predict(fitted, feats, fold == k)
        log(f"fold {k + 1}/{config.folds}: {time.perf_counter() - started:.0f} s")
    return oof


def goal_values(
    rows: Sequence[Row], scores: NDArray[np.float64], threshold: float, goals: Sequence[Goal]
) -> list[float]:
    return values_at(goal_sets(rows, goals), scores, threshold, goals)


GoalSet = tuple[NDArray[np.bool_], NDArray[np.bool_]]
"""A goal's rows (a mask over all rows) and which of them are attacks."""


def goal_sets(rows: Sequence[Row], goals: Sequence[Goal]) -> list[GoalSet]:
    sources = np.array([source(row) for row in rows])
    attacks = np.array([any(row.labels) for row in rows])
    sets = []
    for goal in goals:
        index = np.isin(sources, GROUPED_SOURCES.get(goal.dataset, (goal.dataset,)))
        sets.append((index, attacks[index]))
    return sets


def values_at(
    sets: Sequence[GoalSet], scores: NDArray[np.float64], threshold: float, goals: Sequence[Goal]
) -> list[float]:
    return [
        metrics(truth, scores[index] >= threshold)[goal.metric]
        for (index, truth), goal in zip(sets, goals, strict=True)
    ]


def choose_threshold(rows: Sequence[Row], scores: NDArray[np.float64], label: str) -> float:
    """Over-refusal first: the lowest threshold in 0.05...0.95 at which every
    false-positive goal of the label is met (the most recall they allow). If none meets
    them all, the one with the smallest total shortfall from every goal; ties go to the
    higher threshold."""
    goals = GOALS[label]
    candidates = [round(0.05 + 0.01 * i, 2) for i in range(91)]
    sets = goal_sets(rows, goals)

    def shortfalls(threshold: float) -> list[float]:
        values = values_at(sets, scores, threshold, goals)
        return [g.shortfall(v) for g, v in zip(goals, values, strict=True)]

    def refuses_too_much(threshold: float) -> bool:
        missed = shortfalls(threshold)
        return any(missed[i] > 0 for i, goal in enumerate(goals) if not goal.at_least)

    acceptable = [t for t in candidates if not refuses_too_much(t)]
    if acceptable:
        return acceptable[0]
    return min(candidates, key=lambda t: (round(sum(shortfalls(t)), 9), -t))


def bare_model(config: Config) -> AttackModel:
    """An attack model with no head yet, reading texts as ``config`` says."""
    plain, encode = load_backbone(config.backbone, {})
    none = np.zeros(0, np.float32)
    if not config.tuned_states:
        return AttackModel(plain, encode, none, none, none, none, none, {})
    tuned = load_model(EMBEDDING_HEAD, config.backbone, "float32")
    return AttackModel(tuned.encoder, tuned.encode, none, none, none, none, none, {}, None, plain)


def states(config: Config) -> dict[str, Any]:
    """The head's JSON entries that say which encoder it reads texts through."""
    if not config.tuned_states:
        return {"format": 2}
    entry = {"embedding_head": EMBEDDING_HEAD.name, "sha256": file_sha256(EMBEDDING_HEAD)}
    return {"format": 3, "states": entry}


def evaluate_only(
    model: AttackModel, config: Config, root: Path | None, fitted: list[Fitted]
) -> tuple[list[Row], NDArray[np.float64]]:
    """Eval-only rows (ToxicChat's jailbreaking label), scored by the fold models' mean."""
    rows = []
    for name in EVAL_ONLY_SETS:
        for example in datasets.load(name, root):
            jailbreak = "jailbreaking" in example.categories
            rows.append(Row(example, (jailbreak, False), example.group))
    feats = features(model, [row.example.text for row in rows], config)
    every = np.ones(len(rows), bool)
    return rows, np.mean([predict(f, feats, every) for f in fitted], axis=0)


def run(
    config: Config,
    out: Path = ATTACK_HEAD,
    root: Path | None = None,
    log: Any = print,
    misses: Path | None = None,
    scores: Path | None = None,
) -> dict[str, Any]:
    """Cross-validate, train on every row, write the head to ``out``; ``misses`` gets every
    miss (Markdown) and ``scores`` every row's out-of-fold scores (JSON lines), both of
    the first draw of the folds at the thresholds every draw chose."""
    seeds = draw_seeds(config.seed, config.draws)
    started = time.perf_counter()
    rows = training_rows(config, root)
    y = np.array([row.labels for row in rows])
    model = bare_model(config)
    log(f"{len(rows)} rows ({int(y[:, 0].sum())} jailbreaks, {int(y[:, 1].sum())} injections)")
    feats = features(model, [row.example.text for row in rows], config)
    log(f"features: {time.perf_counter() - started:.0f} s")
    templates = [replace(row.example, group=row.template) for row in rows]
    trains = np.array([row.trains for row in rows])
    by_goal = [fold_of([r.example for r in rows], config.folds, seed) for seed in seeds]
    oofs = [out_of_fold(feats, y, trains, fold, config, log) for fold in by_goal]
    pooled = np.concatenate(oofs)
    pooled_template = np.concatenate(
        [
            out_of_fold(feats, y, trains, fold_of(templates, config.folds, seed), config, log)
            for seed in seeds
        ]
    )
    # Per row: the first draw (the folds of ``seed``); thresholds and tables: every draw.
    oof, by_goal_first, drawn = oofs[0], by_goal[0], [*rows] * config.draws
    thresholds = {
        label: choose_threshold(drawn, pooled[:, i], label) for i, label in enumerate(ATTACK_LABELS)
    }
    fold_models = [
        fit(feats, y, (by_goal_first != k)[:, None] & trains, config) for k in range(config.folds)
    ]
    eval_rows, eval_scores = evaluate_only(model, config, root, fold_models)
    log("training the final head on every row")
    final = fit(feats, y, trains, config)
    hidden = model.encoder.word.shape[1]
    injection = ATTACK_LABELS.index("prompt_injection")

    def final_logits(texts: list[str]) -> list[float]:
        scored = predict(final, features(model, texts, config), np.ones(len(texts), bool))
        return [logit(p) for p in scored[:, injection]]

    log("the instruction-aware layer")
    instructed = train_instructed(
        model,
        [row.example for row in rows],
        [logit(p) for p in oof[:, injection]],
        final_logits,
        thresholds["prompt_injection"],
        config.folds,
        config.seed,
    )
    meta: dict[str, Any] = {
        **states(config),
        "backbone": config.backbone,
        "labels": list(ATTACK_LABELS),
        "ngram_buckets": NGRAM_BUCKETS,
        "sentence_labels": list(SENTENCE_LABELS),
        "thresholds": thresholds,
        "config": asdict(config),
        "training_rows": len(rows),
        "training_data_sha256": dataset_hashes(config, root),
        "cv_goal_split": table(drawn, pooled, thresholds, config.draws),
        "cv_template_split": table(drawn, pooled_template, thresholds, config.draws),
        "eval_only": table(eval_rows, eval_scores, thresholds),
        "goals": {
            label: [
                {**asdict(goal), "value": round(value, 4), "met": goal.met(value)}
                for goal, value in zip(
                    GOALS[label],
                    goal_values(drawn, pooled[:, i], thresholds[label], GOALS[label]),
                    strict=True,
                )
            ]
            for i, label in enumerate(ATTACK_LABELS)
        },
        "instructed": instructed.layer,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write(final, hidden, config, out, meta)
    if misses is not None:
        write_misses(misses, rows, oof, thresholds, instructed.wrong)
    if scores is not None:
        write_scores(scores, rows, oof, instructed.injections_caught)
    log(f"wrote {out} and {out.with_suffix('.json').name} in {meta['seconds']:.0f} s")
    return meta


def write_scores(
    path: Path, rows: Sequence[Row], oof: NDArray[np.float64], caught: list[bool]
) -> None:
    """Each row's out-of-fold scores (JSON lines); an injection sent with instructions also
    says whether the instruction-aware layer caught it, out of fold (``with_instructions``)."""
    told = iter(caught)
    with path.open("w") as lines:
        for row, probabilities in zip(rows, oof, strict=True):
            record = {
                "source": source(row),
                "kind": row.example.subset,
                "attack": any(row.labels),
                "jailbreak": round(float(probabilities[0]), 6),
                "prompt_injection": round(float(probabilities[1]), 6),
            }
            if sent_with_instructions(row.example):
                record["with_instructions"] = next(told)
            lines.write(json.dumps(record) + "\n")


def write(fitted: Fitted, hidden: int, config: Config, out: Path, meta: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    # The embedding columns were scaled by embedding_weight in training; fold it in.
    embedding = fitted.whole_weights[:, NGRAM_BUCKETS : NGRAM_BUCKETS + hidden]
    tensors = {
        "ngram_weights": fitted.whole_weights[:, :NGRAM_BUCKETS].astype(np.float32),
        "embedding_weights": (embedding * config.embedding_weight).astype(np.float32),
        "bias": fitted.whole_bias.astype(np.float32),
        "part_ngram_weights": fitted.part_weights.astype(np.float32),
        "part_bias": fitted.part_bias.astype(np.float32),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out))
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    import torch

    parser = argparse.ArgumentParser(
        prog="guard train-attack-head",
        description="Train the attacks detector's head on licence-compatible dev data, "
        "with grouped cross-validation by goal and by template.",
    )
    parser.add_argument("--out", type=Path, default=ATTACK_HEAD)
    parser.add_argument("--data", type=Path, default=None, help="data folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    first = "the first draw of the folds"
    parser.add_argument("--misses", type=Path, help=f"write every miss here (Markdown; {first})")
    parser.add_argument(
        "--scores", type=Path, help=f"write out-of-fold scores (JSON lines; {first})"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    log = lambda message: print(message, flush=True)  # noqa: E731
    meta = run(Config(), args.out, args.data, log, args.misses, args.scores)
    for label, goals in meta["goals"].items():
        for goal in goals:
            sign = ">=" if goal["at_least"] else "<="
            mark = "met" if goal["met"] else "MISSED"
            print(
                f"{label:16s} {goal['dataset']:24s} {goal['metric']:6s} "
                f"{goal['value']:.3f} (goal {sign} {goal['bound']}) {mark}"
            )
    print(f"thresholds {meta['thresholds']}")
    for kind, entry in meta["instructed"]["cv"].items():
        print(
            f"with instructions: {kind:20s} {entry['rows']:4d} rows, flagged "
            f"{entry['flagged_alone']:.3f} alone, {entry['flagged_with_instructions']:.3f} "
            "with the instructions"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
