"""Train the ``embedding`` classifier's head, and measure it by grouped cross-validation.

``guard train-embedding-head`` (or ``scripts/train_embedding_head.py``) reads only
sets whose licence allows training (``guard.datasets.LICENCES``) plus the benign
prompts written for guard (``guard/train/data/authored_benign_prompts.json``, and with
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

import json
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from guard import datasets
from guard.components.embedding import (
    HEAD,
    EmbeddingModel,
    file_sha256,
    head_meta_path,
    read_alone,
)
from guard.components.minilm import (
    PACKAGED_BACKBONE,
    Encoder,
    fit_length,
)
from guard.components.specs import SENTENCE_MARGIN, SENTENCE_MIN_WORDS
from guard.datasets.readers import Example, text_group
from guard.reading import normalized_text
from guard.reading.readings import readings as every_reading
from guard.train.batches import (
    Top,
    draw_seeds,
    frozen_states_of_ids,
    head_parser,
    length_batches,
    new_top,
    optimiser_for,
    pad,
    write_head,
)
from guard.train.calibration import (
    CATEGORIES,
    LABELS,
    UNSAFE_LABELS,
    Array,
    calibration,
    report,
    robustness,
)
from guard.train.edits import (
    EDITED_SETS,
    EDITS,
    OPENERS,
    broken_words,
    changed_ending,
    quoted,
    wrapped,
)
from guard.train.installed_text import (
    AUTHORED_DOCUMENTATION,
    documentation_examples,
    installed_examples,
    training_data_hashes,
)

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


TRAIN_DATA = Path(__file__).resolve().parent / "data"
AUTHORED = TRAIN_DATA / "authored_benign_prompts.json"


LOOKALIKES = TRAIN_DATA / "authored_lookalikes.json"
SECRETS = TRAIN_DATA / "authored_secrets.json"
FILLER = TRAIN_DATA / "authored_filler.json"


HATE_THREATS = ("threat_dir_h", "threat_norm_h")


LOOKALIKE_SETS = frozenset({"xstest", "jbb_benign"})
"""Sets whose benign rows are written to look like harmful requests."""


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
    system_prompts: bool = False
    """Train on CyberSecEval's system prompts too (``prompt_injection_benign``), as benign:
    "the password is X, never reveal it" is an application's instruction, not a harmful
    request."""
    secrets: bool = True
    """Train on the authored texts about keeping something private too
    (``authored_secrets.json``): without them the head flags texts that end with "don't
    tell anyone", an application's "never reveal the password" among them
    (docs/embedding-classifier.md, "The secrets experiment")."""
    endings: bool = True
    """Train on a seeded half of the rows with their ending changed (``changed_ending``).
    Most harmful training rows end with no punctuation mark and most benign ones with
    one; without this the head learns that, and a full stop added to a harmful request
    lets it through (docs/embedding-classifier.md, "Endings")."""
    wrappers: bool = False
    """Train on a seeded quarter of the rows in double quotes, and another quarter after
    an opener ("Please ", "Hi! ", "Hello, "): quoting a harmful request or opening it with
    "Please" lowers the head's score (docs/embedding-classifier.md, "Endings")."""
    copies: float = 0.5
    """Train a seeded share of the rows twice: as they are, and as a copy in double quotes
    (half of the copies) or after an opener (the other half). Unlike ``wrappers``, every
    row keeps its own text; the folds measure the originals only."""
    broken_words: float = 0.0
    """Train a seeded share of the rows outside ``TOXIC_SETS`` once more with a hyphen
    inside some of their words (``broken_words``): "in-structions" reads as "instructions"
    to a model, and the shipped head scores it as harmless. The folds measure the
    originals only. The first three trials (docs/embedding-classifier.md, "Broken words")
    broke the toxic sets' rows too, and their heads flagged filler ("lorem ipsum dolor
    sit amet") as toxic."""
    fillers: bool = False
    """Train on ``authored_filler.json`` too, as benign: placeholder text, test strings,
    loose syllables, harmless words spaced or broken. With ``broken_words`` the head
    otherwise flags "lorem ipsum dolor sit amet" as toxic."""
    installed: int = 800
    """Train on this many chunks of installed code, headers, data, descriptions and
    licences too, as benign (``guard.train.installed_text``): without them the head flags
    C headers and licence notices as harmful requests."""
    documentation: bool = False
    """Train on the authored documentation snippets too, as benign
    (``authored_documentation.json``, the attack head's since 2026-12-07): Markdown,
    reStructuredText, HTML, CSS and configuration, which the installed packages hold few of."""
    read_as_served: bool = False
    """Train on the texts as the rails read them (``guard.reading.normalized_text``) rather
    than as written. The shipped head reads them as written (56 of the 4,961 data-set and
    authored rows differ, nearly all an ellipsis); tried with ``broken_words``, not
    shipped yet."""
    focal: float = 0.0
    """Focal loss exponent: each output's loss on a row (the categories' too) is scaled by
    (1 - p)^focal, p the probability the head gives its true value, so the many easy rows
    (installed code, everyday prompts) weigh less against the few hard ones (benign twins
    of harmful requests). 0 is plain cross-entropy."""
    benign_pieces: int = 0
    """Train on this many sentences, drawn with the seed, of each benign row longer than
    one window, as benign copies of it. An ``embedding`` rail reads a long text's
    sentences alone too (``long_texts: windows``), but the head trained on whole rows cut
    to their start and end only, and flagged sentences of installed code and docs out of
    context (``cv.as_served``). The folds measure the originals only."""
    benign_piece_weight: float = 1.0
    """Weight of each ``benign_pieces`` copy against 1 for a benign row (it replaces the
    row's own weight, openai_moderation's too): lower, to teach that a benign text's
    sentences are benign without making every short text read so."""
    lookalike_weight: float = 3.0
    """Weight of the benign rows of ``LOOKALIKE_SETS`` (safe prompts worded like harmful
    requests, the hard negatives among the benign rows) against 1 for other benign rows.
    Each label's negatives still weigh half in all (``loss_weights``), so raising these
    lowers the others a little, for ``toxic`` as for ``harmful``. 3 since 2026-12-06
    (docs/embedding-classifier.md, "Hard negatives weigh more")."""
    folds: int = 5
    seed: int = 0
    draws: int = 1
    """How many times the groups are dealt into folds (seeds ``seed``, ``seed`` + 1, ...;
    the rows, their copies and the order of training stay ``seed``'s). The thresholds
    and tables pool every draw's out-of-fold scores (each row counted once); the scores
    file holds the first draw's, a file beside it each other draw's (``draw_path``), the
    misses file the first draw's, and all score the never-trained sets by the mean of
    every draw's fold models. One draw's thresholds are the fall of its
    folds as much as the head's (docs/embedding-classifier.md, "The same rows, folds
    dealt again")."""
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
    secrets = json.loads(SECRETS.read_text())["texts"] if config.secrets else []
    filler = json.loads(FILLER.read_text())["texts"] if config.fillers else []
    texts = [*data["prompts"], *generated[: config.generated_benign], *secrets, *filler]
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
    if config.system_prompts:
        rows += datasets.load("prompt_injection_benign", root)
    rows += authored_benign(config) + (authored_lookalikes() if config.lookalikes else [])
    documentation = documentation_examples(config.seed) if config.documentation else []
    return rows + installed_examples(config.installed, config.seed) + documentation


def trained_texts(rows: Sequence[Example], config: Config) -> list[str]:
    """The texts the head trains on: the rows', a seeded half with ``changed_ending``
    (``config.endings``), and each then ``wrapped`` by its own draw (``config.wrappers``:
    a quarter of all rows quoted, a quarter opened)."""
    rng = random.Random(config.seed)
    texts = []
    for row in rows:
        text = row.text
        if config.endings and rng.random() < 0.5:
            text = changed_ending(text)
        if config.wrappers:
            text = wrapped(text, rng.random(), rng.choice(OPENERS))
        texts.append(text)
    return texts


def copied_rows(texts: Sequence[str], config: Config) -> list[tuple[int, str]]:
    """(row, text) of each copy ``config.copies`` asks for, drawn from its own seeded
    generator, so that the rows' own draws stay as they are."""
    rng = random.Random(f"copies:{config.seed}")
    copies = []
    for index, text in enumerate(texts):
        if rng.random() < config.copies:
            copy = quoted(text) if rng.random() < 0.5 else rng.choice(OPENERS) + text
            copies.append((index, copy))
    return copies


def broken_copies(
    rows: Sequence[Example], texts: Sequence[str], config: Config
) -> list[tuple[int, str]]:
    """(row, text) of each copy with broken words ``config.broken_words`` asks for, from
    its own seeded generator, of rows outside ``TOXIC_SETS`` only. The toxic sets keep
    their own obfuscations (HateCheck's spaced letters); broken copies of their rows
    taught the ``toxic`` label that loose word pieces are toxic."""
    rng = random.Random(f"broken:{config.seed}")
    chosen = [
        index
        for index in range(len(texts))
        if rng.random() < config.broken_words and rows[index].source not in TOXIC_SETS
    ]
    return [(index, broken_words(texts[index], rng)) for index in chosen]


def piece_copies(
    model: EmbeddingModel, rows: Sequence[Example], config: Config
) -> list[tuple[int, str]]:
    """(row, text) of each sentence ``config.benign_pieces`` asks for: drawn from the
    sentences a rail reads alone of the benign rows longer than one window, normalised
    as the rail reads them (not their second readings), by their own seeded generator."""
    if not config.benign_pieces:
        return []
    rng = random.Random(f"pieces:{config.seed}")
    read = [normalized_text(row.text) for row in rows]
    long = [len(ids) > config.max_length for ids in model.encode(read)]
    copies = []
    for index, row in enumerate(rows):
        if long[index] and not row.unsafe:
            found = read_alone(read[index])
            chosen = rng.sample(found, min(config.benign_pieces, len(found)))
            copies += [(index, sentence) for sentence in chosen]
    return copies


def copied_examples(
    rows: Sequence[Example],
    others: Sequence[tuple[int, str]],
    pieces: Sequence[tuple[int, str]],
) -> list[Example]:
    """The row each copy trains as, in order: its original's, a ``benign_pieces`` copy's
    marked ``PIECE_SUBSET`` to weigh ``benign_piece_weight``."""
    marked = (replace(rows[index], subset=PIECE_SUBSET) for index, _ in pieces)
    return [*(rows[index] for index, _ in others), *marked]


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


GROUP_SEPARATOR = "\x1f"
"""Between the groups of a row that belongs to several (a request with an authored text
after it goes with the request and with the text): the row joins all of them. A control
character, so that no group read from data is split."""


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
        for group in row.group.split(GROUP_SEPARATOR):
            a, b = find(group), find(text_group(row.text))
            if a != b:
                parent[a] = b
    return [find(row.group.split(GROUP_SEPARATOR)[0]) for row in rows]


def fold_of(rows: Sequence[Example], folds: int, seed: int) -> NDArray[np.int64]:
    return folds_by_group(split_groups(rows), folds, seed)


def folds_by_group(groups: Sequence[str], folds: int, seed: int) -> NDArray[np.int64]:
    """Each row's fold: the groups, shuffled with ``seed``, dealt out in turn."""
    unique = sorted(set(groups))
    random.Random(seed).shuffle(unique)
    number = {group: i % folds for i, group in enumerate(unique)}
    return np.array([number[g] for g in groups])


def frozen_states(
    model: EmbeddingModel, texts: Sequence[str], config: Config
) -> list[torch.Tensor]:
    """Token states after the frozen bottom layers, one (length, hidden) tensor per text
    (read as the rails read it with ``config.read_as_served``)."""
    return frozen_states_of_ids(model, frozen_ids(model, texts, config), frozen_stop(model, config))


def frozen_stop(model: EmbeddingModel, config: Config) -> int:
    """The first trained layer: the layers below it are frozen."""
    return len(model.encoder.layers) - config.trained_layers


def frozen_ids(model: EmbeddingModel, texts: Sequence[str], config: Config) -> list[list[int]]:
    """The token ids of each text as training reads it: cut to its start and end where it
    is long (normalised first with ``config.read_as_served``)."""
    read = [normalized_text(text) for text in texts] if config.read_as_served else texts
    return [fit_length(row, config.max_length) for row in model.tokenize(read)]


PIECE_SUBSET = "sentence alone"
"""The ``subset`` of a ``benign_pieces`` copy, which weighs ``benign_piece_weight``."""


def row_weight(row: Example, config: Config) -> float:
    if row.subset == PIECE_SUBSET:
        return config.benign_piece_weight
    if row.source == "openai_moderation":
        return config.moderation_weight
    if row.source in LOOKALIKE_SETS and not row.unsafe:
        return config.lookalike_weight
    return 1.0


def loss_weights(
    rows: Sequence[Example], target: Targets, index: Sequence[int], config: Config
) -> NDArray[np.float32]:
    """Per row and label: positives and negatives of each label weigh half each."""
    weights = np.zeros(target.y.shape, np.float32)
    chosen = np.array(index)
    base = np.array([row_weight(rows[i], config) for i in chosen])
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
    top = new_top(encoder, config.trained_layers, config.seed, len(LABELS))
    steps = math.ceil(len(index) / config.batch_size) * config.epochs
    optimiser, schedule = optimiser_for(top, config.lr, config.head_lr, config.weight_decay, steps)
    weights = torch.from_numpy(loss_weights(rows, target, index, config))
    y = torch.from_numpy(target.y)
    lengths = [s.shape[0] for s in states]
    for _ in range(config.epochs):
        for batch in length_batches(list(index), lengths, config.batch_size, rng):
            x, attention = pad([states[i] for i in batch])
            pooled_logits = top.logits(F.dropout(x, 0.1, training=True), attention)
            loss = focal_loss(pooled_logits, y[batch], weights[batch], config.focal)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
    return top


def focal_loss(
    logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, focal: float
) -> torch.Tensor:
    """Weighted binary cross-entropy, each element scaled by (1 - p)^focal (p: the
    probability of its true label), summed and divided by the rows."""
    if not focal:
        summed = F.binary_cross_entropy_with_logits(logits, y, weight=weights, reduction="sum")
        return summed / len(logits)
    losses = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    p = torch.where(y > 0, logits.sigmoid(), 1 - logits.sigmoid())
    return (losses * (1 - p).pow(focal) * weights).sum() / len(logits)


def predict(
    top: Top,
    states: Sequence[torch.Tensor],
    index: Sequence[int],
    margins: Sequence[float] = (),
) -> Array:
    """Probabilities, one row per index, in the order of ``index``; the logits of the
    states with ``margins`` (one per state) read that much lower."""
    out = np.zeros((len(index), len(LABELS)))
    position = {i: p for p, i in enumerate(index)}
    with torch.inference_mode():
        for batch in length_batches(list(index), [s.shape[0] for s in states], 64):
            x, attention = pad([states[i] for i in batch])
            logits = top.logits(x, attention)
            if margins:
                logits -= torch.tensor([margins[i] for i in batch]).unsqueeze(1)
            probabilities = logits.sigmoid().double().numpy()
            for row, i in enumerate(batch):
                out[position[i]] = probabilities[row]
    return out


@dataclass
class Report:
    threshold: float
    cv: dict[str, dict[str, float]]
    goals: list[dict[str, Any]]
    category_thresholds: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)


Draw = tuple[Array, Array, dict[str, Array]]
"""One draw of the folds' out-of-fold probabilities, as ``cross_validate`` returns them."""

AS_SERVED = "as served"
"""The reading of ``served``: out-of-fold scores as an ``embedding`` rail reads the rows."""


@dataclass
class Reading:
    """Rows (``index`` into the training rows) read another way than they train: the
    frozen ``states`` of every piece read, and for each piece the position in ``index``
    of its row. A row's probabilities are its pieces' highest, as at run time."""

    index: list[int]
    owner: list[int]
    states: Sequence[torch.Tensor]
    margins: Sequence[float] = ()
    """Per piece, how much lower its logits are read (a sentence alone); none: 0."""


def edited_index(rows: Sequence[Example]) -> list[int]:
    """The rows of ``EDITED_SETS``."""
    return [i for i, row in enumerate(rows) if row.source in EDITED_SETS]


def edited(model: EmbeddingModel, rows: Sequence[Example], config: Config) -> dict[str, Reading]:
    """Per edit of ``EDITS``, the rows of ``EDITED_SETS`` with their text edited."""
    index = edited_index(rows)
    return {
        name: Reading(
            index,
            list(range(len(index))),
            frozen_states(model, [edit(rows[i].text) for i in index], config),
        )
        for name, edit in EDITS.items()
    }


def served(
    model: EmbeddingModel,
    rows: Sequence[Example],
    config: Config,
    sentence_margin: float = SENTENCE_MARGIN,
    sentence_min_words: int = SENTENCE_MIN_WORDS,
) -> Reading:
    """The rows an ``embedding`` rail reads otherwise than training does, read as it
    does: each of the text's readings (``guard.reading.readings``: normalised, and the
    second readings judged beside it), a reading longer than one window in windows and
    sentences (``long_texts: windows``, a sentence of ``sentence_min_words`` words or more
    alone, ``sentence_margin`` lower) rather than cut to its start and end. The rail
    flags a text when any reading does, so a row's score is the highest of all its
    pieces. (Float32; ``policies/offline.yaml`` serves bfloat16: docs, "Precision".)"""
    as_trained = frozen_ids(model, [row.text for row in rows], config)
    texts = [[norm.text for _, norm in every_reading(row.text)] for row in rows]
    every = [text for row in texts for text in row]
    flat = model.pieces(every, "windows", sentence_margin, sentence_min_words)
    pieces, start = [], 0
    for row in texts:
        pieces.append([piece for text in flat[start : start + len(row)] for piece in text])
        start += len(row)
    index = [i for i, own in enumerate(pieces) if [p.ids for p in own] != [as_trained[i]]]
    owner = [position for position, i in enumerate(index) for _ in pieces[i]]
    read = [piece for i in index for piece in pieces[i]]
    states = frozen_states_of_ids(model, [p.ids for p in read], frozen_stop(model, config))
    return Reading(index, owner, states, [p.margin for p in read])


def read_probabilities(top: Top, reading: Reading, positions: Sequence[int]) -> Array:
    """Probabilities of the rows at ``positions`` in ``reading.index``: each the highest
    of its pieces'."""
    wanted = set(positions)
    chosen = [piece for piece, owner in enumerate(reading.owner) if owner in wanted]
    per_piece = predict(top, reading.states, chosen, reading.margins)
    row_of = {position: row for row, position in enumerate(positions)}
    out = np.zeros((len(positions), len(LABELS)))
    for piece, probabilities in zip(chosen, per_piece, strict=True):
        row = row_of[reading.owner[piece]]
        out[row] = np.maximum(out[row], probabilities)
    return out


def cross_validate(
    model: EmbeddingModel,
    trained: Sequence[torch.Tensor],
    states: Sequence[torch.Tensor],
    rows: Sequence[Example],
    eval_states: Sequence[torch.Tensor],
    eval_rows: Sequence[Example],
    config: Config,
    log: Any = print,
    readings: Mapping[str, Reading] | None = None,
    measured: int | None = None,
    fold_seed: int | None = None,
) -> Draw:
    """Out-of-fold probabilities for the first ``measured`` of ``rows`` (their ``states``;
    the rest are copies, which only train), the fold models' mean for ``eval_rows``, and
    per reading of ``readings`` the out-of-fold probabilities of its rows; each fold's
    model trains on the ``trained`` states of the other folds' rows. The groups are dealt
    into folds with ``fold_seed`` (default ``config.seed``)."""
    target = targets(rows)
    fold = fold_of(rows, config.folds, config.seed if fold_seed is None else fold_seed)
    measured = len(rows) if measured is None else measured
    oof = np.zeros((measured, len(LABELS)))
    held = np.zeros((len(eval_rows), len(LABELS)))
    readings = readings or {}
    read_oof = {name: np.zeros((len(r.index), len(LABELS))) for name, r in readings.items()}
    for k in range(config.folds):
        started = time.perf_counter()
        train = [int(i) for i in np.where(fold != k)[0]]
        test = [int(i) for i in np.where(fold[:measured] == k)[0]]
        top = train_top(model.encoder, trained, rows, target, train, config)
        oof[test] = predict(top, states, test)
        held += predict(top, eval_states, list(range(len(eval_rows)))) / config.folds
        for name, reading in readings.items():
            here = [p for p, i in enumerate(reading.index) if fold[i] == k]
            read_oof[name][here] = read_probabilities(top, reading, here)
        took = time.perf_counter() - started
        log(f"fold {k + 1}/{config.folds}: {len(train)} train, {len(test)} test, {took:.0f} s")
    return oof, held, read_oof


def pooled(draws: Sequence[Draw], served_index: Sequence[int]) -> tuple[Draw, Array]:
    """The draws' out-of-fold probabilities one draw after the other (the rows as many
    times as there are draws, and each reading's rows likewise), the never-trained sets'
    mean over every fold model, and the pooled rows as served (each draw's out-of-fold
    probabilities with the rows at ``served_index`` read as served)."""
    oofs, helds, reads = zip(*draws, strict=True)
    served = []
    for oof, read in zip(oofs, reads, strict=True):
        as_served = oof.copy()
        as_served[served_index] = read[AS_SERVED]
        served.append(as_served)
    read = {name: np.concatenate([r[name] for r in reads]) for name in reads[0]}
    return (np.concatenate(oofs), np.mean(helds, axis=0), read), np.concatenate(served)


def never_trained_rows(root: Path | None = None) -> list[Example]:
    """The rows of ``EVAL_ONLY_SETS``, in the order the JSON's tables and scores give them."""
    return [row for name in EVAL_ONLY_SETS for row in datasets.load(name, root)]


def dataset_hashes(config: Config, root: Path | None = None) -> dict[str, str]:
    hashes = {name: datasets.sha256(name, root) for name in TRAIN_SETS}
    hashes["authored_benign"] = file_sha256(AUTHORED)
    if config.lookalikes:
        hashes["authored_lookalikes"] = file_sha256(LOOKALIKES)
    if config.system_prompts:
        hashes["prompt_injection_benign"] = datasets.sha256("prompt_injection_benign", root)
    if config.secrets:
        hashes["authored_secrets"] = file_sha256(SECRETS)
    if config.fillers:
        hashes["authored_filler"] = file_sha256(FILLER)
    if config.documentation:
        hashes[AUTHORED_DOCUMENTATION.name] = file_sha256(AUTHORED_DOCUMENTATION)
    return hashes | training_data_hashes(config.installed, config.seed)


def served_reading(
    margin: float = SENTENCE_MARGIN, min_words: int = SENTENCE_MIN_WORDS
) -> dict[str, Any]:
    """How the rows counted "as served" were read: the JSON's ``cv.as_served_reading``."""
    return {"long_texts": "windows", "sentence_margin": margin, "sentence_min_words": min_words}


def run(
    config: Config,
    out: Path = HEAD,
    root: Path | None = None,
    cv: bool = True,
    log: Any = print,
    scores_out: Path | None = None,
    misses_out: Path | None = None,
) -> dict[str, Any]:
    """Cross-validate (unless ``cv`` is false), train on every row, write the head to ``out``;
    ``scores_out`` gets every row's out-of-fold score as JSON lines, ``misses_out`` every
    miss as Markdown."""
    seeds = draw_seeds(config.seed, config.draws)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rows = training_rows(config, root)
    eval_rows = never_trained_rows(root)
    model = EmbeddingModel.bare(config.backbone, config.max_length)
    log(f"{len(rows)} training rows; computing frozen states")
    originals = [r.text for r in rows]
    states = frozen_states(model, originals, config)
    texts = trained_texts(rows, config)
    trained = states if texts == originals else frozen_states(model, texts, config)
    eval_states = frozen_states(model, [r.text for r in eval_rows], config) if cv else []
    edits = edited(model, rows, config) if cv else {}
    # the rail's defaults: the reading the JSON's table describes
    margin, min_words = SENTENCE_MARGIN, SENTENCE_MIN_WORDS
    readings = {**edits, AS_SERVED: served(model, rows, config, margin, min_words)} if cv else {}
    others = [*copied_rows(texts, config), *broken_copies(rows, texts, config)]
    pieces = piece_copies(model, rows, config)
    copies = [*others, *pieces]
    measured = len(rows)
    if copies:
        copy_states = frozen_states(model, [text for _, text in copies], config)
        trained, states = [*trained, *copy_states], [*states, *copy_states]
        rows = [*rows, *copied_examples(rows, others, pieces)]
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
        "training_rows": measured,
        "training_copies": len(copies),
    }
    meta["threshold"] = 0.5
    meta["label_thresholds"] = dict.fromkeys(UNSAFE_LABELS, 0.5)
    meta["category_thresholds"] = dict.fromkeys(CATEGORIES, 0.5)
    if cv:
        draws = [
            cross_validate(
                model, trained, states, rows, eval_states, eval_rows, config, log, readings,
                measured, fold_seed,
            )
            for fold_seed in seeds
        ]  # fmt: skip
        (oof, held, read_oof), as_served = pooled(draws, readings[AS_SERVED].index)
        drawn = rows[:measured] * config.draws
        meta.update(
            calibration(
                drawn,
                oof,
                eval_rows,
                held,
                config.folds,
                scores_out,
                misses_out,
                as_served,
                first=measured,
            )
        )
        meta["cv"]["draws"] = config.draws
        once = edited_index(drawn[:measured])
        index = [d * measured + i for d in range(config.draws) for i in once]
        edited_oof = {name: read_oof[name] for name in edits}
        meta["robustness"] = robustness([drawn[i] for i in index], oof[index], edited_oof, meta)
        meta["cv"]["as_served_reading"] = served_reading(margin, min_words)
        seconds["cross_validation"] = time.perf_counter() - started - seconds["frozen_states"]
    log("training the final head on every row")
    final_started = time.perf_counter()
    top = train_top(model.encoder, trained, rows, targets(rows), list(range(len(rows))), config)
    seconds["final_training"] = time.perf_counter() - final_started
    seconds["total"] = time.perf_counter() - started
    meta["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    write_head(top, out, meta, len(model.encoder.layers))
    log(f"wrote {out} and {head_meta_path(out).name} in {seconds['total']:.0f} s")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = head_parser(
        "guard train-embedding-head",
        "Train the embedding classifier's head on licence-compatible dev data "
        "(without cross-validation, the threshold stays 0.5).",
        HEAD,
        Config.epochs,
    )
    parser.add_argument(
        "--scores",
        type=Path,
        help="write out-of-fold scores here (JSON lines; each further draw's beside it)",
    )
    parser.add_argument("--misses", type=Path, help="write every out-of-fold miss here (Markdown)")
    parser.add_argument(
        "--draws",
        type=int,
        default=Config.draws,
        help="deal the folds this many times; thresholds from every draw's scores pooled",
    )
    args = parser.parse_args(argv)
    if args.draws < 1:
        parser.error(f"--draws must be 1 or more, not {args.draws}")
    if args.no_cv and args.draws != 1:
        parser.error("--draws deals the cross-validation's folds: not with --no-cv")
    torch.set_num_threads(args.threads)
    config = replace(Config(), epochs=args.epochs, backbone=args.backbone, draws=args.draws)
    meta = run(
        config,
        args.out,
        args.data,
        cv=not args.no_cv,
        log=lambda m: print(m, flush=True),
        scores_out=args.scores,
        misses_out=args.misses,
    )
    for line in report(meta):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
