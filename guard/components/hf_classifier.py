"""``hf_classifier``: any AutoModelForSequenceClassification, in process, batched.

The model loads once, from a hub id or a local path. Calls from concurrent requests
are batched in one worker thread (``MicroBatcher``), off the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from guard.components.base import Classifier, Subject, Verdict
from guard.components.batching import MicroBatcher
from guard.components.specs import HFClassifierSpec


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
    def __init__(self, spec: HFClassifierSpec):
        import torch

        self.spec = spec
        self._torch = torch
        self.tokenizer, self.model = load_sequence_classifier(spec.model)
        config = self.model.config
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        self.multi_label = (
            config.num_labels == 1 or config.problem_type == "multi_label_classification"
        )
        unknown = [label for label in spec.thresholds if label not in self.labels]
        if unknown:
            raise ValueError(f"{spec.model} has labels {self.labels}; thresholds name {unknown}")
        self.batcher: MicroBatcher[str, dict[str, float]] = MicroBatcher(
            self._probabilities, spec.max_batch_size, name="hf-classifier"
        )

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        rows = await self.batcher.submit([subject.text for subject in subjects])
        return [verdict_from_probabilities(row, self.spec.thresholds) for row in rows]

    def _probabilities(self, texts: list[str]) -> list[dict[str, float]]:
        torch: Any = self._torch
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.spec.max_length,
            return_tensors="pt",
        )
        with torch.inference_mode():
            logits = self.model(**encoded).logits.float()
        probabilities = logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)
        return [dict(zip(self.labels, row.tolist(), strict=True)) for row in probabilities]

    async def aclose(self) -> None:
        await self.batcher.aclose()
