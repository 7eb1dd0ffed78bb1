"""``attacks``: the built-in jailbreak and prompt-injection detector.

A linear head over two kinds of features of a text, both from the built-in MiniLM
backbone (no download):

* hashed counts of its WordPiece token n-grams (1 to 3 tokens): the wording of
  jailbreak templates ("you are DAN", "stay in character", "developer mode") and of
  injected instructions ("ignore the previous instructions", "new system message"),
  and the odd token soup of optimised suffixes;
* the backbone's mean-pooled sentence embedding, for what the wording alone misses:
  reworded role-play framings, and instructions phrased in new words. The shipped head
  reads it through the fine-tuned encoder of the shipped ``embedding`` head
  (``states`` in its JSON): a policy that runs both rails runs that encoder once per
  short text (``minilm.SharedPooling``). The head checks that file's SHA-256 when it
  loads, so a retrained ``embedding`` head asks for a retrained attack head.

A text is read whole, as the model will read it: the n-grams of all of it, plus the
n-grams of every window of ``WINDOW_TOKENS`` tokens and of every sentence (an
instruction injected into a long document would be diluted in the whole text's counts),
plus the embedding of its first and last tokens (``fit_length``). Each label's score is
its highest over those pieces.

Each label (``jailbreak``, ``prompt_injection``) has its own threshold, chosen by
cross-validation (``guard train-attack-head``, docs/safety.md); a verdict names the labels
that fired. torch is imported only when a classifier of this kind is built.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.components.base import Classifier, Subject, Verdict
from guard.components.batching import PIECES_QUEUED, MicroBatcher, submit_in_pieces
from guard.components.embedding import file_sha256, in_bfloat16, load_model, sentences
from guard.components.instructions import (
    InstructionVectors,
    clauses,
    instructions_of,
    similarities,
)
from guard.components.minilm import (
    PACKAGED_BACKBONE,
    Encode,
    Encoder,
    SharedPooling,
    fit_length,
    load_backbone,
)
from guard.components.specs import ATTACK_LABELS, AttacksSpec, SharedPrecision
from guard.components.threads import load_alone, model_thread

if TYPE_CHECKING:
    import numpy as np
    import torch
    from numpy.typing import NDArray

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
ATTACK_HEAD = DATA_DIR / "attack_head.safetensors"
"""The shipped head; its settings, thresholds and metrics are in the ``.json`` beside it."""

FORMATS = (2, 3)
"""2: the plain backbone reads every text; 3: ``states`` may name the encoder."""
NGRAM_ORDERS = (1, 2, 3)
NGRAM_BUCKETS = 1 << 18
WINDOW_TOKENS = 48
EMBEDDING_TOKENS = 128
_PRIME = 1_000_003


def ngram_counts(ids: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The hashed n-gram buckets of a token id sequence, and their weights: log(1 + count),
    scaled to unit length. Training and serving both use this function."""
    import numpy as np

    keys = []
    for order in NGRAM_ORDERS:
        if len(ids) < order:
            continue
        key = np.zeros(len(ids) - order + 1, dtype=np.int64)
        for offset in range(order):
            key = key * _PRIME + ids[offset : len(ids) - order + 1 + offset]
        keys.append(key * 31 + order)
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    buckets, counts = np.unique(np.concatenate(keys) % NGRAM_BUCKETS, return_counts=True)
    weights = np.log1p(counts).astype(np.float32)
    return buckets, weights / np.linalg.norm(weights)


def windows_of(ids: NDArray[np.int64]) -> list[NDArray[np.int64]]:
    """Windows of ``WINDOW_TOKENS`` overlapping by half that cover a longer text; none for
    a text that fits in one (its whole is read anyway)."""
    if len(ids) <= WINDOW_TOKENS:
        return []
    starts = [*range(0, len(ids) - WINDOW_TOKENS, WINDOW_TOKENS // 2), len(ids) - WINDOW_TOKENS]
    return [ids[start : start + WINDOW_TOKENS] for start in starts]


SENTENCE_LABELS = ("prompt_injection",)
"""Labels that read a text's sentences alone too: an instruction injected into a document
is a sentence or two, and alone it reads as what it is. A jailbreak is the whole
template; its sentences alone add false positives, not recall."""


def read(
    encode: Encode, texts: Sequence[str]
) -> list[tuple[list[int], NDArray[np.int64], list[tuple[NDArray[np.int64], bool]]]]:
    """Per text: its token ids, its body (the ids without [CLS] and [SEP]), and the parts
    read besides the whole, each with whether it is a sentence: its windows, and its
    sentences when it has more than one. Training and serving both use this function, on
    text as it reads (``guard.reading``: base64 already decoded in place)."""
    import numpy as np

    out = []
    for text, ids in zip(texts, encode(list(texts)), strict=True):
        body = np.asarray(ids[1:-1], dtype=np.int64)
        parts = [(window, False) for window in windows_of(body)]
        split = sentences(text)
        if len(split) > 1:
            parts += [(np.asarray(i[1:-1], dtype=np.int64), True) for i in encode(split)]
        out.append((ids, body, parts))
    return out


@dataclass(frozen=True)
class Piece:
    """What the head reads of a text: all of it (``embed`` set: its cut ids for the
    embedding, and the instructions it was sent with) or one window (n-grams only)."""

    ngrams: tuple[NDArray[np.int64], NDArray[np.float32]]
    embed: list[int] | None = None
    sentence: bool = False
    instructions: str = ""


@dataclass
class AttackModel:
    encoder: Encoder
    encode: Encode
    ngram_weights: NDArray[np.float32]
    """(labels, NGRAM_BUCKETS): the whole text's n-grams"""
    embedding_weights: NDArray[np.float32]
    """(labels, hidden): the whole text's embedding"""
    bias: NDArray[np.float32]
    part_weights: NDArray[np.float32]
    """(labels, NGRAM_BUCKETS): a window's or a sentence's n-grams"""
    part_bias: NDArray[np.float32]
    meta: dict[str, Any]
    pooling: SharedPooling | None = None
    """How ``encoder`` is run: shared with the ``embedding`` rail whose encoder it is."""
    similarity: Encoder | None = None
    """The encoder whose embeddings the instruction-aware layer compares (the plain
    backbone: fine-tuning for harm blurs topics apart from harm); ``encoder`` if None."""
    sentence_bias: NDArray[np.float32] = field(init=False)
    """The bias of a sentence piece: labels that do not read sentences never fire on one."""
    instructed: NDArray[np.float32] | None = field(init=False)
    """The instruction-aware layer of ``prompt_injection``: one weight per
    ``instructions.FEATURES``, then the bias; None for a head without one."""

    def __post_init__(self) -> None:
        import numpy as np

        reads = [label in self.meta.get("sentence_labels", ()) for label in self.labels]
        self.sentence_bias = np.where(reads, self.part_bias, np.float32(-1e4)).astype(np.float32)
        layer = self.meta.get("instructed")
        self.instructed = None
        if layer is not None and "prompt_injection" in self.labels:
            self.instructed = np.array([*layer["weights"], layer["bias"]], dtype=np.float32)
        self.instruction_vectors = lru_cache(maxsize=256)(self._instruction_vectors)
        if self.pooling is None:
            self.pooling = SharedPooling(self.encoder)
        self.reader = self.pooling.reader()

    @property
    def labels(self) -> list[str]:
        return list(self.meta.get("labels", ()))

    @staticmethod
    def load(
        head: Path = ATTACK_HEAD,
        backbone: str | None = None,
        precision: SharedPrecision = "float32",
    ) -> AttackModel:
        import numpy as np
        from safetensors.numpy import load_file

        meta = json.loads(head.with_suffix(".json").read_text())
        if meta.get("format") not in FORMATS or meta.get("ngram_buckets") != NGRAM_BUCKETS:
            raise ValueError(f"{head}: not an attack head of this guard version")
        tensors = load_file(str(head))
        plain, encode = load_backbone(backbone or meta.get("backbone", PACKAGED_BACKBONE), {})
        if precision == "bfloat16":
            plain = in_bfloat16(plain)
        encoder, pooling = plain, None
        if meta.get("states"):
            # Called as the ``embedding`` rail calls it, to share its loaded model.
            tuned = load_model(states_head(head, meta["states"]), backbone, precision)
            encoder, encode, pooling = tuned.encoder, tuned.encode, tuned.pooling
        return AttackModel(
            encoder,
            encode,
            tensors["ngram_weights"].astype(np.float32),
            tensors["embedding_weights"].astype(np.float32),
            tensors["bias"].astype(np.float32),
            tensors["part_ngram_weights"].astype(np.float32),
            tensors["part_bias"].astype(np.float32),
            meta,
            pooling,
            plain,
        )

    def pieces(
        self, texts: Sequence[str], instructions: Sequence[str] | None = None
    ) -> list[list[Piece]]:
        """Per text: its whole (with the instructions it was sent with, if the head reads
        them), then its windows and sentences."""
        given = instructions if self.instructed is not None and instructions else None
        return [
            [Piece(ngram_counts(body), fit_length(ids, EMBEDDING_TOKENS), instructions=told)]
            + [Piece(ngram_counts(part), sentence=sentence) for part, sentence in parts]
            for (ids, body, parts), told in zip(
                read(self.encode, texts), given or [""] * len(texts), strict=True
            )
        ]

    def logit_rows(self, pieces: list[Piece]) -> list[NDArray[np.float32]]:
        """One row per piece: a ``MicroBatcher``'s outputs. The row holds the label
        logits, then what the instructions add to ``prompt_injection`` (see
        ``combine``), or -inf when the piece was sent with none."""
        import numpy as np

        whole = [i for i, piece in enumerate(pieces) if piece.embed is not None]
        hidden = self.embedding_weights.shape[1]
        vectors = (
            self.embeddings([pieces[i].embed or [] for i in whole])
            if whole
            else np.zeros((0, hidden), np.float32)
        )
        embedded = dict(zip(whole, vectors, strict=True))
        # Only instructions that forbid something are compared with (a cached check).
        told = [i for i in whole if self.forbids(pieces[i].instructions)]
        compared = {i: embedded[i] for i in told}
        if told and self.similarity is not None and self.similarity is not self.encoder:
            plain = self.similarity_embeddings([pieces[i].embed or [] for i in told])
            compared = dict(zip(told, plain, strict=True))
        rows = []
        for i, piece in enumerate(pieces):
            vector = embedded.get(i)
            if vector is None:
                rows.append(np.append(self.part_logits(piece), np.float32(-np.inf)))
                continue
            added = -math.inf
            if i in compared:
                added = self.instructed_partial(compared[i], piece.instructions)
            logits = self.whole_logits(piece, vector @ self.embedding_weights.T)
            rows.append(np.append(logits, np.float32(added)))
        return rows

    def forbids(self, instructions: str) -> bool:
        return bool(instructions) and len(self.instruction_vectors(instructions).forbidden) > 0

    def instructed_partial(self, vector: NDArray[np.float32], instructions: str) -> float:
        """The instruction-aware logit, less its ``injection_logit`` term (known only once
        every piece of the text is scored); -inf when the instructions forbid nothing."""
        assert self.instructed is not None
        features = similarities(vector, self.instruction_vectors(instructions))
        if features is None:
            return -math.inf
        return float(self.instructed[1:-1] @ features + self.instructed[-1])

    def _instruction_vectors(self, instructions: str) -> InstructionVectors:
        import numpy as np

        forbidden, other = clauses(instructions)
        if not forbidden:  # nothing to compare with (``similarities``): nothing to embed
            none = np.zeros((0, 0), np.float32)
            return InstructionVectors(none, none, np.zeros(0, np.float32))
        texts = [*forbidden, *other, instructions]
        cut = [fit_length(ids, EMBEDDING_TOKENS) for ids in self.encode(texts)]
        vectors = self.similarity_embeddings(cut)
        hidden = vectors.shape[1]
        return InstructionVectors(
            vectors[: len(forbidden)].reshape(-1, hidden),
            vectors[len(forbidden) : -1].reshape(-1, hidden),
            np.asarray(vectors[-1]),
        )

    def whole_logits(self, piece: Piece, embedded: NDArray[np.float32]) -> NDArray[np.float32]:
        buckets, weights = piece.ngrams
        logits: NDArray[np.float32] = self.ngram_weights[:, buckets] @ weights + self.bias
        return logits + embedded

    def part_logits(self, piece: Piece) -> NDArray[np.float32]:
        buckets, weights = piece.ngrams
        bias = self.sentence_bias if piece.sentence else self.part_bias
        logits: NDArray[np.float32] = self.part_weights[:, buckets] @ weights + bias
        return logits

    def embeddings(self, ids: list[list[int]]) -> NDArray[np.float32]:
        """Unit-length mean-pooled states of ``encoder``, one row per id list."""
        assert self.pooling is not None
        return _unit(partial(self.pooling.pooled, reader=self.reader), ids)

    def similarity_embeddings(self, ids: list[list[int]]) -> NDArray[np.float32]:
        """Unit-length mean-pooled states of ``similarity``, one row per id list."""
        if self.similarity is None or self.similarity is self.encoder:
            return self.embeddings(ids)
        return _unit(self.similarity.pooled, ids)

    def probabilities(
        self, texts: Sequence[str], instructions: Sequence[str] | None = None
    ) -> list[dict[str, float]]:
        """Per text, each label's probability: its highest over the text's pieces."""
        return self.combine([self.logit_rows(p) for p in self.pieces(texts, instructions)])

    def combine(self, per_text: Sequence[Sequence[NDArray[np.float32]]]) -> list[dict[str, float]]:
        """Each label's highest logit over a text's pieces. For a text sent with
        instructions, ``prompt_injection`` is the higher of that and the
        instruction-aware logit: its own weight times that, plus the partial."""
        import numpy as np

        out = []
        for rows in per_text:
            highest = np.max(np.stack(rows), axis=0)
            logits = [float(x) for x in highest[: len(self.labels)]]
            if self.instructed is not None and np.isfinite(highest[-1]):
                at = self.labels.index("prompt_injection")
                aware = float(self.instructed[0]) * logits[at] + float(highest[-1])
                logits[at] = max(logits[at], aware)
            out.append({label: _sigmoid(x) for label, x in zip(self.labels, logits, strict=True)})
        return out


def _unit(pooled: Any, ids: list[list[int]]) -> NDArray[np.float32]:
    import torch

    with torch.inference_mode():
        unit: torch.Tensor = torch.nn.functional.normalize(pooled(ids), dim=-1)
    return unit.numpy()


def states_head(head: Path, states: dict[str, str]) -> Path:
    """The ``embedding`` head whose encoder an attack head reads texts through: its file
    beside the attack head, or among the shipped ones; refused unless its SHA-256 is the
    one the attack head was trained on."""
    name = states["embedding_head"]
    path = head.parent / name if (head.parent / name).is_file() else DATA_DIR / name
    if not path.is_file() or file_sha256(path) != states["sha256"]:
        raise ValueError(
            f"{head}: trained on the encoder of the embedding head {name} "
            f"(SHA-256 {states['sha256'][:12]}...), which is not at {path}; "
            "retrain it with `guard train-attack-head`"
        )
    return path.resolve()


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def logit(p: float) -> float:
    """The log-odds of a probability, clipped away from 0 and 1."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@lru_cache(maxsize=4)
def load_attack_model(
    head: Path = ATTACK_HEAD, backbone: str | None = None, precision: SharedPrecision = "float32"
) -> AttackModel:
    """One loaded model per head, backbone and precision, shared by the classifiers using it."""
    return AttackModel.load(head, backbone, precision)


class AttackClassifier(Classifier):
    times_itself = True

    def __init__(self, spec: AttacksSpec, backbone: str | None = None):
        self.spec = spec
        head = Path(spec.head).expanduser() if spec.head else ATTACK_HEAD
        self.model = load_alone(lambda: load_attack_model(head.resolve(), backbone, spec.precision))
        shipped: dict[str, float] = self.model.meta["thresholds"]
        self.thresholds = {
            label: (spec.thresholds or {}).get(label, shipped[label]) for label in spec.labels
        }
        self.categories = tuple(spec.labels)
        self.reads_context = (
            spec.instructions
            and "prompt_injection" in spec.labels
            and self.model.instructed is not None
        )
        self.batcher: MicroBatcher[Piece, NDArray[np.float32]] = MicroBatcher(
            self.model.logit_rows,
            max_batch_size=64,
            name="attacks",
            max_queued=PIECES_QUEUED,
            cost=_cost,
            max_batch_cost=2_048,
            executor=model_thread(),
        )

    def context_read(self, subject: Subject) -> str | None:
        """Only the instructions: the rest of the conversation changes no verdict."""
        return instructions_of(subject.context) if self.reads_context else None

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        texts = [subject.text for subject in subjects]
        instructions = [self.context_read(subject) or "" for subject in subjects]
        probabilities = await submit_in_pieces(
            self.batcher,
            texts,
            partial(self.model.pieces, texts, instructions),
            self.model.combine,
            timeout_s=self.spec.timeout_s,
            queue_timeout_s=self.spec.queue_timeout_s,
        )
        return [self.verdict(scores) for scores in probabilities]

    def verdict(self, probabilities: dict[str, float]) -> Verdict:
        """Flagged when a label reaches its own threshold. ``score`` is the highest label
        probability, shifted in logit space so that each label's threshold lands on 0.5."""
        shifted = {
            label: _sigmoid(logit(probabilities[label]) - logit(threshold))
            for label, threshold in self.thresholds.items()
        }
        fired = tuple(label for label, score in shifted.items() if score >= 0.5)
        scores = {label: round(probabilities[label], 6) for label in ATTACK_LABELS}
        return Verdict(bool(fired), max(shifted.values()), fired, scores)

    async def aclose(self) -> None:
        await self.batcher.aclose()


def _cost(piece: Piece) -> int:
    """A window's n-grams cost about as much as one token of the embedding."""
    return len(piece.embed) if piece.embed is not None else 1
