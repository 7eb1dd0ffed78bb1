"""Train the ``embedding_reward`` head on HH-RLHF harmlessness pairs, and measure it.

``scripts/train_embedding_reward.py`` reads the dev pairs of ``hh_rlhf_harmless``
(Anthropic HH-RLHF, harmless-base test split, MIT): two transcripts that differ only in
the last assistant turn, the ``chosen`` one preferred by a human rater. Each answer is
read as ``guard.components.embedding_reward`` reads a candidate (``reward_text``), so
training and serving see the same text.

The model is a Bradley-Terry reward: one linear output over the mean-pooled MiniLM
states, with the top ``trained_layers`` of the encoder fine-tuned (0 keeps the whole
encoder frozen), trained with the pairwise loss ``-log sigmoid(r(chosen) - r(rejected))``.
The frozen bottom layers run once per text (``guard.train.batches.frozen_states_of_ids``).

Measured by k-fold cross-validation grouped by the first human turn (pairs that start
from the same prompt never sit on both sides), as pairwise accuracy: the share of
held-out pairs whose chosen answer scores higher. The same run reports the floor, a
logistic regression on frozen mean-pooled embeddings (scikit-learn's objective, on the
difference of the two answers' embeddings), on the same folds. ``--compare`` also
cross-validates the other variants tried (``VARIANTS``) and prints their table. Then
the head is trained on every pair and written. Seeds are fixed: a rerun gives the same
head on the same machine.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from guard import datasets
from guard.components.embedding import EmbeddingModel, file_sha256
from guard.components.embedding_reward import (
    HEAD,
    Context,
    Turn,
    reward_ids,
    reward_text,
    transcript_turns,
)
from guard.components.minilm import PACKAGED_BACKBONE, Encoder
from guard.datasets.readers import Example, text_group
from guard.train.batches import (
    Top,
    frozen_states_of_ids,
    head_parser,
    length_batches,
    new_top,
    optimiser_for,
    pad,
    write_head,
)
from guard.train.embedding_head import fold_of

DATA_FILE = Path("hh_rlhf_harmless") / "harmless-base" / "test.dev.jsonl.gz"
LICENCE = "MIT"

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Config:
    context: Context = "last_turn"
    trained_layers: int = 3
    """Top encoder layers fine-tuned; 0 trains the linear head alone on frozen states."""
    max_length: int = 256
    epochs: int = 3
    lr: float = 1e-4
    head_lr: float = 1e-3
    batch_size: int = 16
    """Pairs per step."""
    weight_decay: float = 0.01
    folds: int = 5
    seed: int = 0
    backbone: str = PACKAGED_BACKBONE

    @property
    def name(self) -> str:
        trained = (
            "frozen + linear"
            if self.trained_layers == 0
            else f"top {self.trained_layers} layer{'s' * (self.trained_layers > 1)} fine-tuned"
        )
        return f"{trained}, {self.context}, {self.epochs} epochs"


VARIANTS = (
    Config(context="answer", trained_layers=0, epochs=30),
    Config(context="last_turn", trained_layers=0, epochs=30),
    Config(context="conversation", trained_layers=0, epochs=30),
    Config(context="answer", trained_layers=1),
    Config(context="last_turn", trained_layers=1),
    Config(context="conversation", trained_layers=1),
    Config(context="last_turn", trained_layers=2),
)
"""What ``--compare`` cross-validates next to the chosen configuration."""


@dataclass(frozen=True)
class Pair:
    turns: tuple[Turn, ...]
    """The conversation before the two answers."""
    chosen: str
    rejected: str

    @property
    def group(self) -> str:
        first = next((text for role, text in self.turns if role == "user"), "")
        return text_group(first)


def load_pairs(path: Path) -> tuple[list[Pair], int]:
    """The pairs, and how many rows were skipped because the two transcripts differ
    before their last ``Assistant:`` turn (3 of the 1171 dev rows)."""
    pairs, skipped = [], 0
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            before, _, chosen = row["chosen"].rpartition("\n\nAssistant:")
            other, _, rejected = row["rejected"].rpartition("\n\nAssistant:")
            if before != other or not before:
                skipped += 1
                continue
            pairs.append(Pair(tuple(transcript_turns(before)), chosen.strip(), rejected.strip()))
    return pairs, skipped


def pair_folds(pairs: Sequence[Pair], folds: int, seed: int) -> NDArray[np.int64]:
    """Each pair's fold; pairs with the same first human turn share one."""
    rows = [Example(p.group, False, group=p.group) for p in pairs]
    return fold_of(rows, folds, seed)


def answer_texts(pairs: Sequence[Pair], context: Context) -> list[str]:
    """Two texts per pair: ``2i`` the chosen answer, ``2i + 1`` the rejected one."""
    return [
        reward_text(pair.turns, answer, context)
        for pair in pairs
        for answer in (pair.chosen, pair.rejected)
    ]


# --- states -----------------------------------------------------------------------


@dataclass
class StateCache:
    """Frozen token states per (context, first trained layer), computed once."""

    model: EmbeddingModel
    pairs: Sequence[Pair]
    max_length: int
    cache: dict[tuple[str, int], list[torch.Tensor]] = field(default_factory=dict)
    seconds: float = 0.0

    def states(self, context: Context, trained_layers: int) -> list[torch.Tensor]:
        """Token states entering the trained layers; with none trained, each text's
        mean-pooled output as a single (1, hidden) "token"."""
        layers = len(self.model.encoder.layers)
        key = (context, layers - trained_layers)
        if key not in self.cache:
            started = time.perf_counter()
            deeper = [k for c, k in self.cache if c == context and k < key[1]]
            if deeper:  # run only the layers in between on cached states
                start = max(deeper)
                states = advance(self.model.encoder, self.cache[(context, start)], start, key[1])
            else:
                ids = reward_ids(
                    self.model.encode, answer_texts(self.pairs, context), self.max_length
                )
                states = frozen_states_of_ids(self.model, ids, key[1])
            if trained_layers == 0:
                states = [s.mean(0, keepdim=True) for s in states]
            self.cache[key] = states
            self.seconds += time.perf_counter() - started
        return self.cache[key]


def advance(
    encoder: Encoder, states: Sequence[torch.Tensor], start: int, stop: int
) -> list[torch.Tensor]:
    """Token states after layers ``[start, stop)``, from states after ``start`` layers."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(states)
    with torch.inference_mode():
        for chunk in length_batches(list(range(len(states))), [s.shape[0] for s in states], 64):
            x, attention = pad([states[i] for i in chunk])
            hidden = encoder.hidden(x, attention, start, stop)
            for row, i in enumerate(chunk):
                out[i] = hidden[row, : states[i].shape[0]].clone()
    return out


# --- training ---------------------------------------------------------------------


def _pair_lengths(states: Sequence[torch.Tensor]) -> list[int]:
    return [
        max(states[2 * i].shape[0], states[2 * i + 1].shape[0]) for i in range(len(states) // 2)
    ]


def _rewards(
    top: Top, states: Sequence[torch.Tensor], batch: Sequence[int], dropout: float = 0.0
) -> torch.Tensor:
    """Rewards of the batch's chosen answers, then of its rejected ones."""
    x, attention = pad([states[2 * i + side] for side in (0, 1) for i in batch])
    if dropout:
        x = F.dropout(x, dropout, training=True)
    return top.logits(x, attention)[:, 0]


def train_pairs(
    encoder: Encoder, states: Sequence[torch.Tensor], index: Sequence[int], config: Config
) -> Top:
    """A Bradley-Terry head (and top layers) trained on the pairs in ``index``."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    top = new_top(encoder, config.trained_layers, config.seed, outputs=1)
    steps = math.ceil(len(index) / config.batch_size) * config.epochs
    optimiser, schedule = optimiser_for(top, config.lr, config.head_lr, config.weight_decay, steps)
    lengths = _pair_lengths(states)
    for _ in range(config.epochs):
        for batch in length_batches(list(index), lengths, config.batch_size, rng):
            rewards = _rewards(top, states, batch, dropout=0.1)
            margin = rewards[: len(batch)] - rewards[len(batch) :]
            loss = -F.logsigmoid(margin).mean()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
    return top


def margins(top: Top, states: Sequence[torch.Tensor], index: Sequence[int]) -> Array:
    """reward(chosen) - reward(rejected) for each pair in ``index``, in that order."""
    out = np.zeros(len(index))
    position = {i: p for p, i in enumerate(index)}
    with torch.inference_mode():
        for batch in length_batches(list(index), _pair_lengths(states), 32):
            rewards = _rewards(top, states, batch).double().numpy()
            for row, i in enumerate(batch):
                out[position[i]] = rewards[row] - rewards[len(batch) + row]
    return out


def accuracy(margin: Array) -> float:
    """Pairwise accuracy; a tie counts half."""
    return float(((margin > 0).sum() + 0.5 * (margin == 0).sum()) / max(1, len(margin)))


def cross_validate(
    encoder: Encoder,
    states: Sequence[torch.Tensor],
    fold: NDArray[np.int64],
    config: Config,
    log: Any = print,
) -> dict[str, Any]:
    oof = np.zeros(len(fold))
    started = time.perf_counter()
    for k in range(config.folds):
        train = [int(i) for i in np.where(fold != k)[0]]
        test = [int(i) for i in np.where(fold == k)[0]]
        oof[test] = margins(train_pairs(encoder, states, train, config), states, test)
        log(f"  fold {k + 1}/{config.folds}: accuracy {accuracy(oof[test]):.3f}")
    return _summary(oof, fold, config.folds, time.perf_counter() - started)


def baseline(pooled: Sequence[torch.Tensor], fold: NDArray[np.int64], folds: int) -> dict[str, Any]:
    """The floor: L2-regularised logistic regression (C = 1, scikit-learn's default
    objective, solved with L-BFGS) on frozen mean-pooled embeddings, fit on the difference
    chosen - rejected, without intercept: a linear Bradley-Terry model."""
    started = time.perf_counter()
    x = torch.cat(list(pooled)).double()
    diff = x[0::2] - x[1::2]
    oof = np.zeros(len(fold))
    for k in range(folds):
        train = torch.from_numpy(fold != k)
        w = logistic_weights(diff[train])
        oof[fold == k] = (diff[~train] @ w).numpy()
    return _summary(oof, fold, folds, time.perf_counter() - started)


def logistic_weights(positive: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """argmin 0.5 |w|^2 + c * sum log(1 + exp(-x w)) over the rows x of ``positive`` (each
    a pair seen as "first preferred"; the mirrored pairs add the same loss again)."""
    w = torch.zeros(positive.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [w], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        loss = 0.5 * w.dot(w) + 2 * c * F.softplus(-(positive @ w)).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(objective)  # type: ignore[no-untyped-call]
    return w.detach()


def _summary(oof: Array, fold: NDArray[np.int64], folds: int, seconds: float) -> dict[str, Any]:
    return {
        "accuracy": accuracy(oof),
        "per_fold": [round(accuracy(oof[fold == k]), 4) for k in range(folds)],
        "seconds": round(seconds, 1),
    }


# --- the run ----------------------------------------------------------------------


def data_path(root: Path | None = None) -> Path:
    return (root or datasets.data_root()) / DATA_FILE


def run(
    config: Config,
    out: Path = HEAD,
    root: Path | None = None,
    cv: bool = True,
    compare: Sequence[int] = (),
    limit: int | None = None,
    write: bool = True,
    log: Any = print,
    command: str = "",
) -> dict[str, Any]:
    """Cross-validate (unless ``cv`` is false) the configuration, the logistic floor and
    the ``VARIANTS`` numbered in ``compare``; then (when ``write``) train on every pair
    and write the head to ``out``. ``limit`` keeps only the first pairs (a quick check)."""
    variants = [VARIANTS[i] for i in compare]
    started = time.perf_counter()
    path = data_path(root)
    pairs, skipped = load_pairs(path)
    pairs = pairs[:limit]
    model = EmbeddingModel.bare(config.backbone, config.max_length)
    cache = StateCache(model, pairs, config.max_length)
    encoder = model.encoder
    fold = pair_folds(pairs, config.folds, config.seed)
    meta: dict[str, Any] = {
        "format": 1,
        "kind": "bradley_terry",
        "backbone": config.backbone,
        "max_length": config.max_length,
        "context": config.context,
        "labels": ["reward"],
        "config": asdict(config),
        "training_data": {
            "file": str(DATA_FILE),
            "licence": LICENCE,
            "sha256": file_sha256(path),
            "pairs": len(pairs),
            "skipped_rows": skipped,
            "groups": len({p.group for p in pairs}),
        },
        "command": command,
    }
    if cv:
        log(f"{len(pairs)} pairs, {config.folds} folds grouped by the first human turn")
        contexts = dict.fromkeys([config.context, *(v.context for v in variants)])
        floors = {}
        for context in contexts:
            floors[context] = baseline(cache.states(context, 0), fold, config.folds)
            log(f"floor (logistic, frozen), {context}: {floors[context]['accuracy']:.3f}")
        chosen = cross_validate(
            encoder, cache.states(config.context, config.trained_layers), fold, config, log
        )
        log(f"{config.name}: accuracy {chosen['accuracy']:.3f}")
        meta["cv"] = {
            "folds": config.folds,
            "grouped_by": "first human turn",
            "accuracy": chosen["accuracy"],
            "per_fold": chosen["per_fold"],
            "floor_logistic_frozen": floors[config.context],
        }
        if variants:
            table = [
                {"variant": f"floor: logistic on frozen embeddings, {c}", **floors[c]}
                for c in contexts
            ]
            for variant in variants:
                variant = replace(variant, folds=config.folds, seed=config.seed)
                if variant == config:
                    result = chosen
                else:
                    states = cache.states(variant.context, variant.trained_layers)
                    result = cross_validate(encoder, states, fold, variant, log)
                    log(f"{variant.name}: accuracy {result['accuracy']:.3f}")
                table.append({"variant": variant.name, **result})
            meta["cv"]["variants"] = table
    if not write:
        meta["seconds"] = {"frozen_states": round(cache.seconds, 1)}
        return meta
    log("training on every pair")
    final_started = time.perf_counter()
    states = cache.states(config.context, config.trained_layers)
    top = train_pairs(encoder, states, list(range(len(pairs))), config)
    seconds = {
        "frozen_states": cache.seconds,
        "final_training": time.perf_counter() - final_started,
        "total": time.perf_counter() - started,
    }
    meta["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    write_head(top, out, meta, len(encoder.layers))
    log(f"wrote {out} in {seconds['total']:.0f} s")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = head_parser(
        "guard train-embedding-reward",
        "Train the embedding_reward head on the HH-RLHF harmless dev pairs.",
        HEAD,
        Config.epochs,
    )
    parser.add_argument(
        "--compare",
        type=int,
        nargs="*",
        metavar="N",
        help="also cross-validate these VARIANTS (numbers from 0; none given: all)",
    )
    parser.add_argument("--no-head", action="store_true", help="cross-validate only")
    parser.add_argument(
        "--context", choices=["answer", "last_turn", "conversation"], default=Config.context
    )
    parser.add_argument("--trained-layers", type=int, default=Config.trained_layers)
    parser.add_argument(
        "--lr", type=float, default=Config.lr, help="learning rate of the fine-tuned layers"
    )
    parser.add_argument("--folds", type=int, default=Config.folds)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N pairs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = Config(
        context=args.context,
        trained_layers=args.trained_layers,
        epochs=args.epochs,
        lr=args.lr,
        folds=args.folds,
        backbone=args.backbone,
    )
    command = "scripts/train_embedding_reward.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    meta = run(
        config,
        args.out,
        args.data,
        cv=not args.no_cv,
        compare=range(len(VARIANTS)) if args.compare == [] else (args.compare or ()),
        limit=args.limit,
        write=not args.no_head,
        log=lambda m: print(m, flush=True),
        command=command.strip(),
    )
    if "cv" in meta:
        for row in meta["cv"].get("variants", []):
            folds = " ".join(f"{a:.3f}" for a in row["per_fold"])
            print(f"{row['accuracy']:.3f}  {row['variant']}  (folds {folds}; {row['seconds']} s)")
        print(
            f"pairwise accuracy {meta['cv']['accuracy']:.3f} "
            f"(floor {meta['cv']['floor_logistic_frozen']['accuracy']:.3f}, goal 0.66)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
