"""``hf_classifier``: any AutoModelForSequenceClassification, in process, batched.

The model loads once, from a hub id or a local path; ``labels`` can name its classes where
its config does not. A text longer than ``max_length``
tokens is read whole, in overlapping windows; its worst window's verdict stands. Texts
are cut into windows in a thread (tokenizing a long text is CPU work), and the windows
of concurrent requests are batched (``MicroBatcher``) on guard's one model thread
(``threads``), off the event loop, round-robin between requests: a long text's windows
never hold up a short text for longer than one batch (plus the calls of other rails
ahead of it on that thread).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from guard.components.base import Classifier, Subject, Verdict
from guard.components.batching import PIECES_QUEUED, MicroBatcher, submit_in_pieces
from guard.components.specs import HFClassifierSpec
from guard.components.threads import load_alone, model_thread


def verdict_from_probabilities(
    probabilities: Mapping[str, float], thresholds: Mapping[str, float]
) -> Verdict:
    """Flag the labels whose probability reaches their threshold; score the likeliest of them."""
    watched = {label: probabilities.get(label, 0.0) for label in thresholds}
    over = tuple(label for label, p in watched.items() if p >= thresholds[label])
    return Verdict(
        flagged=bool(over),
        score=max(watched.values()),
        categories=over,
        category_scores=dict(probabilities),
    )


def token_windows(ids: list[int], size: int) -> list[list[int]]:
    """``ids`` in windows of at most ``size`` tokens, each overlapping the next by a
    quarter, the last one ending with the text; one (possibly empty) window if it fits."""
    if len(ids) <= size:
        return [ids]
    step = size - size // 4
    starts = [*range(0, len(ids) - size, step), len(ids) - size]
    return [ids[start : start + size] for start in starts]


def special_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text's own tokens."""
    framed = tokenizer("a", verbose=False)["input_ids"]
    bare = tokenizer("a", add_special_tokens=False, verbose=False)["input_ids"]
    for start in range(len(framed) - len(bare) + 1):
        if framed[start : start + len(bare)] == bare:
            return framed[:start], framed[start + len(bare) :]
    raise ValueError("cannot tell the tokenizer's special tokens from a text's own")


def load_sequence_classifier(model: str) -> tuple[Any, Any]:
    """Tokenizer and ``AutoModelForSequenceClassification`` (hub id or path), ready to batch."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded = AutoModelForSequenceClassification.from_pretrained(model)
    loaded.config.pad_token_id = tokenizer.pad_token_id
    loaded.eval()
    return tokenizer, loaded


class HFClassifier(Classifier):
    times_itself = True

    def __init__(self, spec: HFClassifierSpec):
        import torch

        self.spec = spec
        self._torch = torch
        self.tokenizer, self.model = load_alone(lambda: load_sequence_classifier(spec.model))
        config = self.model.config
        if spec.labels and len(spec.labels) != config.num_labels:
            raise ValueError(
                f"{spec.model} has {config.num_labels} classes; this rail's labels name "
                f"{len(spec.labels)}: {spec.labels}"
            )
        self.labels = list(spec.labels) or [
            str(config.id2label[i]) for i in range(config.num_labels)
        ]
        self.multi_label = (
            config.num_labels == 1 or config.problem_type == "multi_label_classification"
        )
        self.special_ids = special_ids(self.tokenizer)
        unknown = [label for label in spec.thresholds if label not in self.labels]
        if unknown:
            raise ValueError(f"{spec.model} has labels {self.labels}; thresholds name {unknown}")
        self.categories = tuple(spec.thresholds)
        self._tokenizing = threading.Lock()
        """transformers' fast tokenizers may reconfigure themselves on a call, which fails
        while another thread is tokenizing with the same one."""
        self.batcher: MicroBatcher[list[int], dict[str, float]] = MicroBatcher(
            self._probabilities,
            spec.max_batch_size,
            name="hf-classifier",
            max_queued=PIECES_QUEUED,
            executor=model_thread(),
        )

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        texts = [subject.text for subject in subjects]
        return await submit_in_pieces(
            self.batcher,
            texts,
            lambda: self.windows(texts),
            lambda per_text: [self._worst(rows) for rows in per_text],
            timeout_s=self.spec.timeout_s,
            queue_timeout_s=self.spec.queue_timeout_s,
        )

    def _worst(self, windows: list[dict[str, float]]) -> Verdict:
        verdicts = [verdict_from_probabilities(row, self.spec.thresholds) for row in windows]
        return max(verdicts, key=lambda v: (v.flagged, v.score or 0.0))

    def windows(self, texts: list[str]) -> list[list[list[int]]]:
        """Per text, the token ids of its windows, each framed by the special tokens."""
        first, last = self.special_ids
        size = self.spec.max_length - len(first) - len(last)
        with self._tokenizing:
            bodies = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [[[*first, *w, *last] for w in token_windows(ids, size)] for ids in bodies]

    def _probabilities(self, windows: list[list[int]]) -> list[dict[str, float]]:
        """The label probabilities of each window (at most ``max_batch_size`` of them)."""
        torch: Any = self._torch
        encoded = self.tokenizer.pad({"input_ids": windows}, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**encoded).logits.float()
        probabilities = logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)
        return [dict(zip(self.labels, row.tolist(), strict=True)) for row in probabilities]

    async def aclose(self) -> None:
        await self.batcher.aclose()
