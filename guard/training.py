"""Train the ``embedding`` classifier's head, and measure it by grouped cross-validation.

``guard train-embedding-head`` (or ``scripts/train_embedding_head.py``) reads only
sets whose licence allows training (``guard.datasets.LICENCES``) plus the benign
prompts written for guard (``guard/data/authored_benign_prompts.json``, and with
``lookalikes`` ``authored_lookalikes.json``). The embeddings and any layers below the
top ``trained_layers`` stay frozen and run once; those layers and a linear head are
fine-tuned. The head has two "unsafe" outputs, ``toxic`` (text that
is itself sexual, hateful, violent... as in openai_moderation and HateCheck) and
``harmful`` (requests for harmful help), and one output per OpenAI category. The
unsafe score is the larger of the two.

Cross-validation is grouped (``Example.group`` plus identical texts), so related rows
never sit on both sides. The threshold is chosen once, on the out-of-fold scores,
and the final head is trained on everything. Seeds are fixed: a rerun gives the
same head on the same machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from guard import datasets
from guard.components.embedding import (
    DATA_DIR,
    HEAD,
    PACKAGED_BACKBONE,
    EmbeddingModel,
    Encoder,
    EncoderLayer,
    Layout,
    fit_length,
    head_meta_path,
    label_shifts,
    mean_pool,
)
from guard.datasets import OPENAI_CATEGORIES, Example, text_group

TRAIN_SETS = (
    "openai_moderation",
    "hatecheck",
    "xstest",
    "harmbench",
    "advbench",
    "advbench_strings",
    "simplesafetytests",
    "jbb_harmful",
    "jbb_benign",
    "gptfuzz_questions",
    "mitre_frr",
)
TOXIC_SETS = frozenset({"openai_moderation", "hatecheck"})
"""Sets whose unsafe rows train the ``toxic`` output; every other unsafe row trains ``harmful``."""
EVAL_ONLY_SETS = ("toxicchat_human", "do_not_answer")
"""Measured with the fold models; never trained on (non-commercial licences)."""
AUTHORED = DATA_DIR / "authored_benign_prompts.json"
LOOKALIKES = DATA_DIR / "authored_lookalikes.json"
UNSAFE_LABELS = ("toxic", "harmful")
CATEGORIES = tuple(OPENAI_CATEGORIES.values())
LABELS = (*UNSAFE_LABELS, *CATEGORIES)
HATE_THREATS = ("threat_dir_h", "threat_norm_h")

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Config:
    trained_layers: int = 6
    max_length: int = 128
    epochs: int = 4
    lr: float = 1e-4
    head_lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    moderation_weight: float = 1.5
    """Extra weight of openai_moderation rows, the hardest set to fit."""
    generated_benign: int = 400
    """How many frame x topic prompts to draw from the authored file."""
    lookalikes: bool = False
    """Train on the authored look-alikes too: benign prompts with alarming words, and
    harmful requests worded like them."""
    folds: int = 5
    seed: int = 0
    backbone: str = PACKAGED_BACKBONE


@dataclass
class Targets:
    """Per row: a 0/1 target for each label, and whether that target is known."""

    y: NDArray[np.float32]
    known: NDArray[np.bool_]


def authored_benign(config: Config) -> list[Example]:
    data = json.loads(AUTHORED.read_text())
    generated = [frame.format(t=topic) for frame in data["frames"] for topic in data["topics"]]
    random.Random(config.seed).shuffle(generated)
    texts = [*data["prompts"], *generated[: config.generated_benign]]
    return [Example(t, False, (), "authored_benign", f"authored:{i}") for i, t in enumerate(texts)]


def authored_lookalikes() -> list[Example]:
    data = json.loads(LOOKALIKES.read_text())
    return [
        Example(text, unsafe, (), "authored_lookalikes", f"lookalike:{kind}:{i}")
        for kind, unsafe in (("benign", False), ("harmful", True))
        for i, text in enumerate(data[kind])
    ]


def training_rows(config: Config, root: Path | None = None) -> list[Example]:
    rows: list[Example] = []
    for name in TRAIN_SETS:
        if not datasets.trainable(name):
            raise ValueError(f"{name} may not be trained on ({datasets.LICENCES[name].name})")
        rows += datasets.load(name, root)
    return rows + authored_benign(config) + (authored_lookalikes() if config.lookalikes else [])


def targets(rows: Sequence[Example]) -> Targets:
    y = np.zeros((len(rows), len(LABELS)), np.float32)
    known = np.zeros((len(rows), len(LABELS)), bool)
    for i, row in enumerate(rows):
        toxic = row.source in TOXIC_SETS
        y[i, 0] = row.unsafe and toxic
        y[i, 1] = row.unsafe and not toxic
        known[i, 0] = not row.unsafe or toxic
        known[i, 1] = not row.unsafe or not toxic
        if row.source == "openai_moderation":
            known[i, 2:] = True
            y[i, 2:] = [name in row.categories for name in CATEGORIES]
        elif row.source == "hatecheck":
            for name, value in (
                ("hate", row.unsafe),
                ("hate/threatening", row.unsafe and row.subset in HATE_THREATS),
            ):
                column = LABELS.index(name)
                known[i, column], y[i, column] = True, value
    return Targets(y, known)


def split_groups(rows: Sequence[Example]) -> list[str]:
    """Each row's component: rows sharing a group key or a normalised text are joined."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for row in rows:
        a, b = find(row.group), find(text_group(row.text))
        if a != b:
            parent[a] = b
    return [find(row.group) for row in rows]


def fold_of(rows: Sequence[Example], folds: int, seed: int) -> NDArray[np.int64]:
    components = split_groups(rows)
    unique = sorted(set(components))
    random.Random(seed).shuffle(unique)
    number = {component: i % folds for i, component in enumerate(unique)}
    return np.array([number[c] for c in components])


# --- the model --------------------------------------------------------------------


@dataclass
class Top:
    """The trained part: the encoder's top layers and the linear head."""

    layers: list[EncoderLayer]
    head_w: torch.Tensor
    head_b: torch.Tensor

    def parameters(self) -> list[torch.Tensor]:
        return [t for layer in self.layers for t in asdict_tensors(layer)] + [
            self.head_w,
            self.head_b,
        ]

    def logits(self, states: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        layout = Layout.of(attention)
        for layer in self.layers:
            states = layer(states, layout)
        return F.linear(mean_pool(states, attention), self.head_w, self.head_b)


def asdict_tensors(layer: EncoderLayer) -> list[torch.Tensor]:
    return [getattr(layer, name) for name in EncoderLayer.__dataclass_fields__]


def new_top(encoder: Encoder, trained_layers: int, seed: int, outputs: int = len(LABELS)) -> Top:
    """Trainable copies of the encoder's top ``trained_layers`` and a fresh linear head."""
    generator = torch.Generator().manual_seed(seed)
    first = len(encoder.layers) - trained_layers
    layers = [
        EncoderLayer(*(t.detach().clone().requires_grad_() for t in asdict_tensors(layer)))
        for layer in encoder.layers[first:]
    ]
    hidden = encoder.word.shape[1]
    head_w = (torch.randn(outputs, hidden, generator=generator) * 0.02).requires_grad_()
    return Top(layers, head_w, torch.zeros(outputs, requires_grad=True))


def optimiser_for(
    top: Top, lr: float, head_lr: float, weight_decay: float, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (layers at ``lr``, head at ``head_lr``), linear warm-up over the first tenth
    of ``steps``, then linear decay to zero."""
    head = [top.head_w, top.head_b]
    groups = [{"params": head, "lr": head_lr}]
    if top.layers:
        groups.insert(0, {"params": top.parameters()[: -len(head)], "lr": lr})
    optimiser = torch.optim.AdamW(groups, weight_decay=weight_decay)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / steps)
    )
    return optimiser, schedule


def frozen_states(
    model: EmbeddingModel, texts: Sequence[str], config: Config
) -> list[torch.Tensor]:
    """Token states after the frozen bottom layers, one (length, hidden) tensor per text."""
    stop = len(model.encoder.layers) - config.trained_layers
    ids = [fit_length(row, config.max_length) for row in model.tokenize(texts)]
    return frozen_states_of_ids(model, ids, stop)


def frozen_states_of_ids(
    model: EmbeddingModel, ids: Sequence[list[int]], stop: int
) -> list[torch.Tensor]:
    """Token states after layers ``[0, stop)``, one (length, hidden) tensor per id list."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    with torch.inference_mode():
        for chunk in _length_batches(list(range(len(ids))), [len(i) for i in ids], 64):
            batch, attention = _pad([torch.tensor(ids[i]) for i in chunk])
            hidden = model.encoder.hidden(batch, attention, 0, stop)
            for row, i in enumerate(chunk):
                out[i] = hidden[row, : len(ids[i])].clone()
    return out


def _pad(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(r.shape[0] for r in rows)
    batch = torch.zeros((len(rows), length, *rows[0].shape[1:]), dtype=rows[0].dtype)
    attention = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, : r.shape[0]] = r
        attention[i, : r.shape[0]] = 1
    return batch, attention


def _length_batches(
    index: list[int], lengths: Sequence[int], size: int, rng: random.Random | None = None
) -> list[list[int]]:
    """Batches of similar length; shuffled (within pools of 20 batches) when ``rng`` is given."""
    if rng is None:
        ordered = sorted(index, key=lambda i: lengths[i])
        return [ordered[s : s + size] for s in range(0, len(ordered), size)]
    index = index[:]
    rng.shuffle(index)
    batches = []
    for s in range(0, len(index), size * 20):
        pool = sorted(index[s : s + size * 20], key=lambda i: lengths[i])
        batches += [pool[p : p + size] for p in range(0, len(pool), size)]
    rng.shuffle(batches)
    return batches


def loss_weights(
    rows: Sequence[Example], target: Targets, index: Sequence[int], config: Config
) -> NDArray[np.float32]:
    """Per row and label: positives and negatives of each label weigh half each."""
    weights = np.zeros(target.y.shape, np.float32)
    chosen = np.array(index)
    base = np.array(
        [config.moderation_weight if rows[i].source == "openai_moderation" else 1.0 for i in chosen]
    )
    for label in range(len(LABELS)):
        known = target.known[chosen, label]
        positive = known & (target.y[chosen, label] > 0)
        negative = known & ~positive
        if positive.any() and negative.any():
            column = np.where(positive, 0.5 / base[positive].sum(), 0.5 / base[negative].sum())
            weights[chosen, label] = np.where(known, base * column * len(chosen), 0)
    weights[:, len(UNSAFE_LABELS) :] *= 0.5  # the category outputs are secondary
    return weights


def train_top(
    encoder: Encoder,
    states: Sequence[torch.Tensor],
    rows: Sequence[Example],
    target: Targets,
    index: Sequence[int],
    config: Config,
) -> Top:
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    top = new_top(encoder, config.trained_layers, config.seed)
    steps = math.ceil(len(index) / config.batch_size) * config.epochs
    optimiser, schedule = optimiser_for(top, config.lr, config.head_lr, config.weight_decay, steps)
    weights = torch.from_numpy(loss_weights(rows, target, index, config))
    y = torch.from_numpy(target.y)
    lengths = [s.shape[0] for s in states]
    for _ in range(config.epochs):
        for batch in _length_batches(list(index), lengths, config.batch_size, rng):
            x, attention = _pad([states[i] for i in batch])
            pooled_logits = top.logits(F.dropout(x, 0.1, training=True), attention)
            loss = F.binary_cross_entropy_with_logits(
                pooled_logits, y[batch], weight=weights[batch], reduction="sum"
            ) / len(batch)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
    return top


def predict(top: Top, states: Sequence[torch.Tensor], index: Sequence[int]) -> Array:
    """Probabilities, one row per index, in the order of ``index``."""
    out = np.zeros((len(index), len(LABELS)))
    position = {i: p for p, i in enumerate(index)}
    with torch.inference_mode():
        for batch in _length_batches(list(index), [s.shape[0] for s in states], 64):
            x, attention = _pad([states[i] for i in batch])
            probabilities = top.logits(x, attention).sigmoid().double().numpy()
            for row, i in enumerate(batch):
                out[position[i]] = probabilities[row]
    return out


def unsafe_score(probabilities: Array, shifts: Sequence[float] | None = None) -> Array:
    """The highest unsafe-label probability, each first shifted in logit space by
    ``shifts`` (see ``label_shifts``), as the classifier does at run time."""
    unsafe = np.clip(probabilities[:, : len(UNSAFE_LABELS)], 1e-12, 1 - 1e-12)
    if shifts is not None:
        unsafe = 1 / (1 + np.exp(-(np.log(unsafe / (1 - unsafe)) + np.asarray(shifts))))
    return np.asarray(unsafe.max(axis=1), dtype=np.float64)


# --- measuring --------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    dataset: str
    metric: str
    bound: float
    at_least: bool = True

    def met(self, value: float) -> bool:
        return value >= self.bound if self.at_least else value <= self.bound

    def shortfall(self, value: float) -> float:
        return max(0.0, self.bound - value) if self.at_least else max(0.0, value - self.bound)


GOALS = (
    Goal("openai_moderation", "f1", 0.78),
    Goal("xstest", "recall", 0.85),
    Goal("xstest", "fpr", 0.10, at_least=False),
    Goal("harmbench", "recall", 0.95),
    Goal("advbench", "recall", 0.95),
    Goal("simplesafetytests", "recall", 0.95),
    Goal("jbb_benign", "fpr", 0.10, at_least=False),
)


def metrics(unsafe: NDArray[np.bool_], flagged: NDArray[np.bool_]) -> dict[str, float]:
    tp = int((flagged & unsafe).sum())
    fp = int((flagged & ~unsafe).sum())
    fn = int((~flagged & unsafe).sum())
    tn = int((~flagged & ~unsafe).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": tp + fp + fn + tn,
        "unsafe": tp + fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
    }


def per_dataset(
    rows: Sequence[Example], scores: Array, threshold: float
) -> dict[str, dict[str, float]]:
    unsafe = np.array([r.unsafe for r in rows])
    sources = np.array([r.source for r in rows])
    return {
        name: metrics(unsafe[sources == name], scores[sources == name] >= threshold)
        for name in dict.fromkeys(sources)
    }


def _rank(rows: Sequence[Example], scores: Array, threshold: float) -> tuple[float, float]:
    """Higher is better: the smaller total shortfall from the goals, then the better
    openai_moderation F1."""
    table = per_dataset(rows, scores, threshold)
    shortfall = sum(g.shortfall(table[g.dataset][g.metric]) for g in GOALS)
    return -shortfall, table["openai_moderation"]["f1"]


THRESHOLD_GRID = [float(t) for t in np.round(np.arange(0.05, 0.96, 0.01), 2)]


def choose_threshold(rows: Sequence[Example], scores: Array) -> float:
    """The threshold with the smallest total shortfall from the goals; ties go to the
    best openai_moderation F1."""
    return max(THRESHOLD_GRID, key=lambda t: (*_rank(rows, scores, t), -t))


def choose_label_thresholds(
    rows: Sequence[Example], probabilities: Array
) -> tuple[float, dict[str, float]]:
    """One threshold for every unsafe label (``choose_threshold``), then each label's own,
    in turn, by the same rule with the others held: a toxic comment and a harmful request
    need not be equally sure. Returns the first threshold and the labels' own."""
    threshold = choose_threshold(rows, unsafe_score(probabilities))
    chosen = dict.fromkeys(UNSAFE_LABELS, threshold)

    def rank(label: str, value: float) -> tuple[float, float, float]:
        shifts = label_shifts(UNSAFE_LABELS, {**chosen, label: value}, threshold)
        return *_rank(rows, unsafe_score(probabilities, shifts), threshold), -abs(value - threshold)

    for label in UNSAFE_LABELS:
        chosen[label] = max(THRESHOLD_GRID, key=partial(rank, label))
    return threshold, chosen


def category_thresholds(rows: Sequence[Example], probabilities: Array) -> dict[str, float]:
    """Per OpenAI category, the threshold with the best F1 on openai_moderation rows."""
    moderation = [i for i, r in enumerate(rows) if r.source == "openai_moderation"]
    chosen: dict[str, float] = {}
    for column, name in enumerate(CATEGORIES, start=len(UNSAFE_LABELS)):
        truth = np.array([name in rows[i].categories for i in moderation])
        scores = probabilities[moderation, column]
        candidates = [
            (metrics(truth, scores >= t)["f1"], float(t)) for t in np.arange(0.1, 0.95, 0.05)
        ]
        chosen[name] = round(max(candidates)[1], 2)
    return chosen


# --- the whole run ----------------------------------------------------------------


@dataclass
class Report:
    threshold: float
    cv: dict[str, dict[str, float]]
    goals: list[dict[str, Any]]
    category_thresholds: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)


def cross_validate(
    model: EmbeddingModel,
    states: Sequence[torch.Tensor],
    rows: Sequence[Example],
    eval_states: Sequence[torch.Tensor],
    eval_rows: Sequence[Example],
    config: Config,
    log: Any = print,
) -> tuple[Array, Array]:
    """Out-of-fold probabilities for ``rows``, and the fold models' mean for ``eval_rows``."""
    target = targets(rows)
    fold = fold_of(rows, config.folds, config.seed)
    oof = np.zeros((len(rows), len(LABELS)))
    held = np.zeros((len(eval_rows), len(LABELS)))
    for k in range(config.folds):
        started = time.perf_counter()
        train = [int(i) for i in np.where(fold != k)[0]]
        test = [int(i) for i in np.where(fold == k)[0]]
        top = train_top(model.encoder, states, rows, target, train, config)
        oof[test] = predict(top, states, test)
        held += predict(top, eval_states, list(range(len(eval_rows)))) / config.folds
        took = time.perf_counter() - started
        log(f"fold {k + 1}/{config.folds}: {len(train)} train, {len(test)} test, {took:.0f} s")
    return oof, held


def dataset_hashes(config: Config, root: Path | None = None) -> dict[str, str]:
    base = root or datasets.data_root()
    hashes = {}
    for name in TRAIN_SETS:
        path = base / datasets.DATASETS[name].file
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.read_bytes())
        hashes[name] = digest.hexdigest()
    hashes["authored_benign"] = hashlib.sha256(AUTHORED.read_bytes()).hexdigest()
    if config.lookalikes:
        hashes["authored_lookalikes"] = hashlib.sha256(LOOKALIKES.read_bytes()).hexdigest()
    return hashes


def write_head(top: Top, path: Path, meta: dict[str, Any], layer_count: int) -> None:
    """The trained layers (half precision, under their place in a ``layer_count``-layer
    encoder) and the head in ``path``; ``meta`` in the ``.json`` beside it."""
    from safetensors.torch import save_file

    first = layer_count - len(top.layers)
    tensors: dict[str, torch.Tensor] = {}
    for offset, layer in enumerate(top.layers):
        prefix = f"encoder.layer.{first + offset}."
        q, k, v = layer.qkv_w.detach().chunk(3)
        qb, kb, vb = layer.qkv_b.detach().chunk(3)
        named = {
            "attention.self.query.weight": q,
            "attention.self.key.weight": k,
            "attention.self.value.weight": v,
            "attention.self.query.bias": qb,
            "attention.self.key.bias": kb,
            "attention.self.value.bias": vb,
            "attention.output.dense.weight": layer.out_w,
            "attention.output.dense.bias": layer.out_b,
            "attention.output.LayerNorm.weight": layer.ln1_w,
            "attention.output.LayerNorm.bias": layer.ln1_b,
            "intermediate.dense.weight": layer.up_w,
            "intermediate.dense.bias": layer.up_b,
            "output.dense.weight": layer.down_w,
            "output.dense.bias": layer.down_b,
            "output.LayerNorm.weight": layer.ln2_w,
            "output.LayerNorm.bias": layer.ln2_b,
        }
        for name, tensor in named.items():
            tensors[prefix + name] = tensor.detach().half().contiguous()
    tensors["head.weight"] = top.head_w.detach().float().contiguous()
    tensors["head.bias"] = top.head_b.detach().float().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    head_meta_path(path).write_text(json.dumps(meta, indent=1) + "\n")


def write_scores(path: Path, rows: Sequence[Example], probabilities: Array, scores: Array) -> None:
    with path.open("w") as out:
        for row, p, score in zip(rows, probabilities, scores, strict=True):
            record = {
                "source": row.source,
                "group": row.group,
                "subset": row.subset,
                "unsafe": row.unsafe,
                "categories": list(row.categories),
                "score": float(score),
                **{label: round(float(v), 5) for label, v in zip(LABELS, p, strict=True)},
            }
            out.write(json.dumps(record) + "\n")


def calibration(
    rows: Sequence[Example],
    oof: Array,
    eval_rows: Sequence[Example],
    held: Array,
    folds: int,
    scores_out: Path | None = None,
) -> dict[str, Any]:
    """The head's thresholds, chosen on the out-of-fold probabilities ``oof``, and the
    cross-validation table they give (``held``: the never-trained sets' probabilities)."""
    threshold, label_thresholds = choose_label_thresholds(rows, oof)
    all_rows = [*rows, *eval_rows]
    probabilities = np.concatenate([oof, held])
    scores = unsafe_score(probabilities, label_shifts(UNSAFE_LABELS, label_thresholds, threshold))
    table = per_dataset(all_rows, scores, threshold)
    if scores_out is not None:
        write_scores(scores_out, all_rows, probabilities, scores)
    return {
        "cv": {"folds": folds, "per_dataset": table},
        "goals": [
            {
                **asdict(g),
                "value": table[g.dataset][g.metric],
                "met": g.met(table[g.dataset][g.metric]),
            }
            for g in GOALS
        ],
        "threshold": threshold,
        "label_thresholds": label_thresholds,
        "category_thresholds": category_thresholds(rows, oof),
    }


def run(
    config: Config,
    out: Path = HEAD,
    root: Path | None = None,
    cv: bool = True,
    log: Any = print,
    scores_out: Path | None = None,
) -> dict[str, Any]:
    """Cross-validate (unless ``cv`` is false), train on every row, write the head to ``out``;
    ``scores_out`` gets every row's out-of-fold score as JSON lines."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rows = training_rows(config, root)
    eval_rows = [r for name in EVAL_ONLY_SETS for r in datasets.load(name, root)]
    model = EmbeddingModel.bare(config.backbone, config.max_length)
    log(f"{len(rows)} training rows; computing frozen states")
    states = frozen_states(model, [r.text for r in rows], config)
    eval_states = frozen_states(model, [r.text for r in eval_rows], config) if cv else []
    seconds = {"frozen_states": time.perf_counter() - started}
    meta: dict[str, Any] = {
        "format": 1,
        "backbone": config.backbone,
        "max_length": config.max_length,
        "labels": list(LABELS),
        "unsafe_labels": list(UNSAFE_LABELS),
        "config": asdict(config),
        "training_sets": {name: datasets.LICENCES[name].name for name in TRAIN_SETS},
        "training_data_sha256": dataset_hashes(config, root),
        "training_rows": len(rows),
    }
    meta["threshold"] = 0.5
    meta["label_thresholds"] = dict.fromkeys(UNSAFE_LABELS, 0.5)
    meta["category_thresholds"] = dict.fromkeys(CATEGORIES, 0.5)
    if cv:
        oof, held = cross_validate(model, states, rows, eval_states, eval_rows, config, log)
        meta.update(calibration(rows, oof, eval_rows, held, config.folds, scores_out))
        seconds["cross_validation"] = time.perf_counter() - started - seconds["frozen_states"]
    log("training the final head on every row")
    final_started = time.perf_counter()
    top = train_top(model.encoder, states, rows, targets(rows), list(range(len(rows))), config)
    seconds["final_training"] = time.perf_counter() - final_started
    seconds["total"] = time.perf_counter() - started
    meta["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    write_head(top, out, meta, len(model.encoder.layers))
    log(f"wrote {out} and {head_meta_path(out).name} in {seconds['total']:.0f} s")
    return meta


def head_parser(prog: str, description: str, head: Path, epochs: int) -> argparse.ArgumentParser:
    """The options every head-training script has: --out, --data, --no-cv, --epochs, --threads."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", type=Path, default=head, help="head file to write (.safetensors)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data folder (default: $GUARD_DATA_DIR or ../shared/data)",
    )
    parser.add_argument("--no-cv", action="store_true", help="skip cross-validation")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = head_parser(
        "guard train-embedding-head",
        "Train the embedding classifier's head on licence-compatible dev data "
        "(without cross-validation, the threshold stays 0.5).",
        HEAD,
        Config.epochs,
    )
    parser.add_argument("--scores", type=Path, help="write out-of-fold scores here (JSON lines)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = replace(Config(), epochs=args.epochs)
    meta = run(
        config,
        args.out,
        args.data,
        cv=not args.no_cv,
        log=lambda m: print(m, flush=True),
        scores_out=args.scores,
    )
    for goal in meta.get("goals", []):
        mark = "met" if goal["met"] else "MISSED"
        sign = ">=" if goal["at_least"] else "<="
        bound = f"goal {sign} {goal['bound']}"
        print(f"{goal['dataset']:18s} {goal['metric']:7s} {goal['value']:.3f} ({bound}) {mark}")
    print(f"threshold {meta['threshold']}, per label {meta['label_thresholds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
