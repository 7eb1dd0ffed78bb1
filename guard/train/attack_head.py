"""Train the ``attacks`` detector's head, and measure it by grouped cross-validation.

``guard train-attack-head`` reads only sets whose licence allows training, plus the
frames written for guard in ``guard/train/data/authored_attacks.json``:

* ``jailbreak`` positives: JailbreakBench attack artifacts, in-the-wild jailbreaks, and
  the GPTFuzz templates, each filled with ``fills`` GPTFuzz questions;
* ``prompt_injection`` positives: CyberSecEval prompt injections, the authored injected
  instructions alone and placed inside authored documents and tool results;
* negatives of both: every trainable request set (benign, borderline and plainly
  harmful requests: a harmful request is not an attack), toxic and hateful texts, the
  injection set's own system prompts, and the authored benign prompts, look-alikes,
  documents, system prompts and role-play requests.

Features are ``guard.components.attacks``'s: hashed token n-grams of the whole text and of
its windows, and the frozen backbone's embedding of the whole text. One logistic
regression per label (scikit-learn, L2, classes balanced) learns from the whole texts
and from the windows of negative texts, so a window of a benign document is known to
be benign. Cross-validation is grouped twice: by goal (a JailbreakBench goal with all
its attacks, every row's own group, identical texts) and by template (an attack kind of
JailbreakBench, the opening words of a jailbreak template, an authored payload). The
thresholds are chosen on the goal split's out-of-fold scores; both splits are reported.
The final head is trained on every row.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
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
    AttackModel,
    ngram_counts,
    windows_of,
)
from guard.components.minilm import PACKAGED_BACKBONE, fit_length, load_backbone
from guard.components.specs import ATTACK_LABELS
from guard.datasets.readers import Example, text_group
from guard.train.calibration import Goal, metrics
from guard.train.embedding_head import (
    AUTHORED,
    LOOKALIKES,
    TRAIN_DATA,
    authored_benign,
    split_groups,
)
from guard.train.embedding_head import Config as HeadConfig

AUTHORED_ATTACKS = TRAIN_DATA / "authored_attacks.json"

JAILBREAK_SETS = ("jbb_artifacts", "inthewild_jailbreaks")
INJECTION_SETS = ("prompt_injection",)
NEGATIVE_SETS = (
    "xstest",
    "jbb_benign",
    "jbb_harmful",
    "mitre_frr",
    "openai_moderation",
    "hatecheck",
    "harmbench",
    "advbench",
    "simplesafetytests",
    "gptfuzz_questions",
    "prompt_injection_benign",
)
HH_RLHF = "hh_rlhf_harmless/harmless-base/test.dev.jsonl.gz"
"""Anthropic HH-RLHF (MIT): the first human turn of each red-team dialogue, a real
person's plain request, harmful or not but never an attack on the model's instructions."""

EVAL_ONLY_SETS = ("toxicchat_human", "do_not_answer")
"""Scored by the fold models; never trained on (non-commercial licences)."""

BENIGN_GOALS = (
    Goal("xstest", "fpr", 0.08, at_least=False),
    Goal("jbb_benign", "fpr", 0.10, at_least=False),
    Goal("mitre_frr", "fpr", 0.05, at_least=False),
    Goal("hh_rlhf_requests", "fpr", 0.03, at_least=False),
)
"""The over-refusal goals of issue #19, and guard's own for everyday requests."""
GOALS: dict[str, tuple[Goal, ...]] = {
    "jailbreak": (
        Goal("jbb_artifacts", "recall", 0.90),
        Goal("inthewild_jailbreaks", "recall", 0.90),
        *BENIGN_GOALS,
    ),
    "prompt_injection": (
        Goal("prompt_injection", "recall", 0.90),
        Goal("prompt_injection_benign", "fpr", 0.05, at_least=False),
        *BENIGN_GOALS,
    ),
}


@dataclass(frozen=True)
class Config:
    regularisation: float = 10.0
    """scikit-learn's ``C``: larger fits the training rows more closely."""
    embedding_weight: float = 1.0
    """Scale of the embedding features next to the unit-length n-gram vector."""
    fills: int = 3
    """How many GPTFuzz questions fill each GPTFuzz template."""
    injected_per_document: int = 3
    folds: int = 5
    seed: int = 0
    backbone: str = PACKAGED_BACKBONE


@dataclass(frozen=True)
class Row:
    example: Example
    labels: tuple[bool, bool]
    """(jailbreak, prompt_injection)"""
    template: str
    """The group of the template split."""


def attack(example: Example, label: str, template: str) -> Row:
    return Row(example, (label == "jailbreak", label == "prompt_injection"), template)


def benign(example: Example) -> Row:
    return Row(replace(example, unsafe=False), (False, False), example.group)


def template_of(example: Example) -> str:
    """JailbreakBench's templated attacks share one group per attack kind; a written
    template (in-the-wild, GPTFuzz) is known by its opening words."""
    if example.source == "jbb_artifacts":
        return example.group if example.subset == "PAIR" else f"attack:{example.subset}"
    if example.source in ("inthewild_jailbreaks", "gptfuzz_templates"):
        return "template:" + " ".join(re.findall(r"\w+", example.text.lower())[:8])
    return example.group


def filled_templates(config: Config, root: Path | None) -> list[Row]:
    questions = datasets.load("gptfuzz_questions", root)
    rng = random.Random(config.seed)
    rows = []
    for template in datasets.load("gptfuzz_templates", root):
        for question in rng.sample(questions, config.fills):
            text = template.text.replace("[INSERT PROMPT HERE]", question.text)
            example = replace(template, text=text, group=f"{template.group}|{question.group}")
            rows.append(attack(example, "jailbreak", template_of(template)))
    return rows


def authored_attack_rows(config: Config) -> list[Row]:
    data = json.loads(AUTHORED_ATTACKS.read_text())
    rng = random.Random(config.seed)
    rows = []

    def add(text: str, injected: bool, group: str) -> None:
        example = Example(text, injected, (), "authored_attacks", group)
        rows.append(attack(example, "prompt_injection", group) if injected else benign(example))

    inserts, payloads = data["benign_inserts"], data["payloads"]
    for i, document in enumerate(data["documents"]):
        add(re.sub(r" ?\{slot\}", "", document), False, f"document:{i}")
        for b in rng.sample(range(len(inserts)), 2):
            add(document.replace("{slot}", inserts[b]), False, f"insert:{b}")
        for p in rng.sample(range(len(payloads)), config.injected_per_document):
            add(document.replace("{slot}", payloads[p]), True, f"payload:{p}")
    for p, payload in enumerate(payloads):
        add(payload, True, f"payload:{p}")
    for kind in ("benign_inserts", "system_prompts", "roleplay", "chat"):
        for i, text in enumerate(data[kind]):
            add(text, False, f"insert:{i}" if kind == "benign_inserts" else f"{kind}:{i}")
    return rows


def training_rows(config: Config, root: Path | None = None) -> list[Row]:
    for name in (*JAILBREAK_SETS, *INJECTION_SETS, *NEGATIVE_SETS, "gptfuzz_templates"):
        if not datasets.trainable(name):
            raise ValueError(f"{name} may not be trained on ({datasets.LICENCES[name].name})")
    rows = [
        attack(example, "jailbreak", template_of(example))
        for name in JAILBREAK_SETS
        for example in datasets.load(name, root)
    ]
    rows += filled_templates(config, root)
    rows += [
        attack(example, "prompt_injection", example.group)
        for name in INJECTION_SETS
        for example in datasets.load(name, root)
    ]
    rows += [benign(example) for name in NEGATIVE_SETS for example in datasets.load(name, root)]
    rows += [benign(example) for example in authored_benign(HeadConfig(seed=config.seed))]
    lookalikes = json.loads(LOOKALIKES.read_text())["benign"]
    rows += [
        benign(Example(text, False, (), "authored_lookalikes", f"lookalike:{i}"))
        for i, text in enumerate(lookalikes)
    ]
    return rows + hh_rlhf_requests(root) + authored_attack_rows(config)


def hh_rlhf_requests(root: Path | None) -> list[Row]:
    path = (root or datasets.data_root()) / HH_RLHF
    first: dict[str, None] = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            found = re.search(r"Human: (.*?)\n\nAssistant:", json.loads(line)["chosen"], re.S)
            if found:
                first.setdefault(found.group(1).strip())
    return [
        benign(Example(text, False, (), "hh_rlhf_requests", text_group(text))) for text in first
    ]


@dataclass
class Features:
    whole: sparse.csr_matrix
    """Per row: n-grams of the whole text, then the scaled embedding."""
    windows: sparse.csr_matrix
    """Per window of every row: its n-grams (embedding columns zero)."""
    owner: NDArray[np.int64]
    """The row of each window."""


def ngram_matrix(vectors: Sequence[tuple[NDArray[np.int64], NDArray[np.float32]]]) -> Any:
    if not vectors:
        return sparse.csr_matrix((0, NGRAM_BUCKETS), dtype=np.float32)
    rows = np.concatenate([np.full(len(b), i) for i, (b, _) in enumerate(vectors)])
    columns = np.concatenate([b for b, _ in vectors])
    values = np.concatenate([w for _, w in vectors])
    return sparse.csr_matrix((values, (rows, columns)), shape=(len(vectors), NGRAM_BUCKETS))


def features(model: AttackModel, texts: Sequence[str], config: Config) -> Features:
    encoded = model.encode(list(texts))
    bodies = [np.asarray(ids[1:-1], dtype=np.int64) for ids in encoded]
    cut = [fit_length(ids, EMBEDDING_TOKENS) for ids in encoded]
    order = sorted(range(len(cut)), key=lambda i: len(cut[i]))
    embedded = np.zeros((len(cut), model.encoder.word.shape[1]), np.float32)
    for start in range(0, len(order), 64):
        chunk = order[start : start + 64]
        embedded[chunk] = model.embeddings([cut[i] for i in chunk])
    whole = sparse.hstack(
        [ngram_matrix([ngram_counts(b) for b in bodies]), config.embedding_weight * embedded]
    ).tocsr()
    pieces = [(i, w) for i, body in enumerate(bodies) for w in windows_of(body)]
    windows = sparse.hstack(
        [
            ngram_matrix([ngram_counts(w) for _, w in pieces]),
            sparse.csr_matrix((len(pieces), embedded.shape[1])),
        ]
    ).tocsr()
    return Features(whole, windows, np.array([i for i, _ in pieces], dtype=np.int64))


@dataclass
class Fitted:
    weights: NDArray[np.float64]
    """(labels, features)"""
    bias: NDArray[np.float64]


def fit(feats: Features, y: NDArray[np.bool_], train: NDArray[np.bool_], config: Config) -> Fitted:
    from sklearn.linear_model import LogisticRegression

    benign_windows = train[feats.owner] & ~y[feats.owner].any(axis=1)
    x = sparse.vstack([feats.whole[train], feats.windows[benign_windows]]).tocsr()
    weights, bias = [], []
    for label in range(y.shape[1]):
        target = np.concatenate([y[train, label], np.zeros(int(benign_windows.sum()), bool)])
        model = LogisticRegression(
            C=config.regularisation, class_weight="balanced", max_iter=5000
        ).fit(x, target)
        weights.append(model.coef_[0])
        bias.append(model.intercept_[0])
    return Fitted(np.array(weights), np.array(bias))


def predict(fitted: Fitted, feats: Features, rows: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Probabilities per label for the chosen rows (in row order): the highest over
    the whole text and its windows, as the classifier scores at run time."""
    logits = np.asarray(feats.whole[rows] @ fitted.weights.T) + fitted.bias
    chosen = np.where(rows)[0]
    position = {row: i for i, row in enumerate(chosen)}
    in_rows = rows[feats.owner]
    window_logits = np.asarray(feats.windows[in_rows] @ fitted.weights.T) + fitted.bias
    for owner, row_logits in zip(feats.owner[in_rows], window_logits, strict=True):
        i = position[int(owner)]
        logits[i] = np.maximum(logits[i], row_logits)
    return np.asarray(1 / (1 + np.exp(-logits)), dtype=np.float64)


def folds_of(keys: Sequence[Example], config: Config) -> NDArray[np.int64]:
    components = split_groups(keys)
    unique = sorted(set(components))
    random.Random(config.seed).shuffle(unique)
    number = {component: i % config.folds for i, component in enumerate(unique)}
    return np.array([number[c] for c in components])


def out_of_fold(
    feats: Features, y: NDArray[np.bool_], fold: NDArray[np.int64], config: Config, log: Any
) -> NDArray[np.float64]:
    oof = np.zeros(y.shape)
    for k in range(config.folds):
        started = time.perf_counter()
        fitted = fit(feats, y, fold != k, config)
        oof[fold == k] = predict(fitted, feats, fold == k)
        log(f"fold {k + 1}/{config.folds}: {time.perf_counter() - started:.0f} s")
    return oof


def source(row: Row) -> str:
    return row.example.source


def table(
    rows: Sequence[Row], probabilities: NDArray[np.float64], thresholds: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Per data set: rows, attacks, and for each label and for either, the share flagged
    (recall over the set's attacks, false-positive rate over its other rows)."""
    fired = np.stack(
        [probabilities[:, i] >= thresholds[label] for i, label in enumerate(ATTACK_LABELS)], 1
    )
    out: dict[str, dict[str, float]] = {}
    for name in sorted({source(row) for row in rows}):
        index = np.array([source(row) == name for row in rows])
        truth = np.array([any(row.labels) for row in rows])[index]
        entry: dict[str, float] = {"rows": int(index.sum()), "attacks": int(truth.sum())}
        for i, label in enumerate([*ATTACK_LABELS, "either"]):
            flagged = fired[index].any(axis=1) if label == "either" else fired[index, i]
            scores = metrics(truth, flagged)
            entry[f"{label}_recall"] = scores["recall"]
            entry[f"{label}_fpr"] = scores["fpr"]
        out[name] = entry
    return out


def goal_values(
    rows: Sequence[Row], scores: NDArray[np.float64], threshold: float, goals: Sequence[Goal]
) -> list[float]:
    values = []
    for goal in goals:
        index = np.array([source(row) == goal.dataset for row in rows])
        truth = np.array([any(row.labels) for row in rows])[index]
        values.append(metrics(truth, scores[index] >= threshold)[goal.metric])
    return values


def choose_threshold(rows: Sequence[Row], scores: NDArray[np.float64], label: str) -> float:
    """The threshold in 0.05...0.95 with the smallest total shortfall from the label's
    goals; ties go to the higher threshold (fewer false positives)."""
    goals = GOALS[label]

    def shortfall(threshold: float) -> float:
        values = goal_values(rows, scores, threshold, goals)
        return round(sum(g.shortfall(v) for g, v in zip(goals, values, strict=True)), 9)

    candidates = [round(0.05 + 0.01 * i, 2) for i in range(91)]
    return min(candidates, key=lambda t: (shortfall(t), -t))


def dataset_hashes(root: Path | None) -> dict[str, str]:
    base = root or datasets.data_root()
    hashes = {}
    names = (*JAILBREAK_SETS, *INJECTION_SETS, *NEGATIVE_SETS, "gptfuzz_templates")
    for name in sorted(set(names)):
        path = base / datasets.DATASETS[name].file
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.read_bytes())
        hashes[name] = digest.hexdigest()
    hashes["hh_rlhf_requests"] = hashlib.sha256((base / HH_RLHF).read_bytes()).hexdigest()
    for file in (AUTHORED, LOOKALIKES, AUTHORED_ATTACKS):
        hashes[file.name] = hashlib.sha256(file.read_bytes()).hexdigest()
    return hashes


def bare_model(backbone: str) -> AttackModel:
    encoder, encode = load_backbone(backbone, {})
    nothing = np.zeros(0, np.float32)
    return AttackModel(encoder, encode, nothing, nothing, nothing, {})


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
    config: Config, out: Path = ATTACK_HEAD, root: Path | None = None, log: Any = print
) -> dict[str, Any]:
    started = time.perf_counter()
    rows = training_rows(config, root)
    y = np.array([row.labels for row in rows])
    model = bare_model(config.backbone)
    log(f"{len(rows)} rows ({int(y[:, 0].sum())} jailbreaks, {int(y[:, 1].sum())} injections)")
    feats = features(model, [row.example.text for row in rows], config)
    log(f"features: {time.perf_counter() - started:.0f} s")
    by_goal = folds_of([row.example for row in rows], config)
    by_template = folds_of([replace(row.example, group=row.template) for row in rows], config)
    oof = out_of_fold(feats, y, by_goal, config, log)
    oof_template = out_of_fold(feats, y, by_template, config, log)
    thresholds = {
        label: choose_threshold(rows, oof[:, i], label) for i, label in enumerate(ATTACK_LABELS)
    }
    fold_models = [fit(feats, y, by_goal != k, config) for k in range(config.folds)]
    eval_rows, eval_scores = evaluate_only(model, config, root, fold_models)
    log("training the final head on every row")
    final = fit(feats, y, np.ones(len(rows), bool), config)
    hidden = model.encoder.word.shape[1]
    meta: dict[str, Any] = {
        "format": 1,
        "backbone": config.backbone,
        "labels": list(ATTACK_LABELS),
        "ngram_buckets": NGRAM_BUCKETS,
        "thresholds": thresholds,
        "config": asdict(config),
        "training_rows": len(rows),
        "training_data_sha256": dataset_hashes(root),
        "cv_goal_split": table(rows, oof, thresholds),
        "cv_template_split": table(rows, oof_template, thresholds),
        "eval_only": table(eval_rows, eval_scores, thresholds),
        "goals": {
            label: [
                {**asdict(goal), "value": round(value, 4), "met": goal.met(value)}
                for goal, value in zip(
                    GOALS[label],
                    goal_values(rows, oof[:, i], thresholds[label], GOALS[label]),
                    strict=True,
                )
            ]
            for i, label in enumerate(ATTACK_LABELS)
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    write(final, hidden, config, out, meta)
    log(f"wrote {out} and {out.with_suffix('.json').name} in {meta['seconds']:.0f} s")
    return meta


def write(fitted: Fitted, hidden: int, config: Config, out: Path, meta: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    # The embedding columns were scaled by embedding_weight in training; fold it in.
    tensors = {
        "ngram_weights": fitted.weights[:, :NGRAM_BUCKETS].astype(np.float32),
        "embedding_weights": (
            fitted.weights[:, NGRAM_BUCKETS : NGRAM_BUCKETS + hidden] * config.embedding_weight
        ).astype(np.float32),
        "bias": fitted.bias.astype(np.float32),
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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = run(Config(), args.out, args.data, log=lambda m: print(m, flush=True))
    for label, goals in meta["goals"].items():
        for goal in goals:
            sign = ">=" if goal["at_least"] else "<="
            mark = "met" if goal["met"] else "MISSED"
            print(
                f"{label:16s} {goal['dataset']:24s} {goal['metric']:6s} "
                f"{goal['value']:.3f} (goal {sign} {goal['bound']}) {mark}"
            )
    print(f"thresholds {meta['thresholds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
