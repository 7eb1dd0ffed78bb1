"""``vllm_classify``: a sequence classifier served by vLLM, through its ``/classify`` route."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from guard.components.base import Classifier, Subject, Verdict
from guard.components.hf_classifier import verdict_from_probabilities
from guard.components.specs import VLLMClassifySpec
from guard.protocol.upstream import Upstream


class VLLMClassifier(Classifier):
    def __init__(self, spec: VLLMClassifySpec, endpoint: Upstream):
        self.spec = spec
        self.window_chars = spec.window_chars
        self.endpoint = endpoint
        self.categories = tuple(spec.thresholds)

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        answer = await self.endpoint.post_json(
            "/classify",
            {"model": self.spec.model, "input": [subject.text for subject in subjects]},
            "guard-vllm-classify",
        )
        rows = sorted(answer["data"], key=lambda row: row["index"])
        return [verdict_from_probabilities(self._named(row), self.spec.thresholds) for row in rows]

    def _named(self, row: dict[str, Any]) -> dict[str, float]:
        probabilities = [float(p) for p in row["probs"]]
        names = list(self.spec.labels) or [f"LABEL_{i}" for i in range(len(probabilities))]
        likeliest = probabilities.index(max(probabilities))
        if len(names) != len(probabilities) or names[likeliest] != str(row["label"]):
            # Guessing would let a threshold watch the wrong class: fail visibly instead.
            raise ValueError(
                f"the served model names class {likeliest} {row['label']!r}, but this rail's "
                f"labels are {names}; set 'labels' to the model's labels in class order"
            )
        return dict(zip(names, probabilities, strict=True))
