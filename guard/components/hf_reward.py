"""``hf_reward``: a reward model with one output (``*ForSequenceClassification``), in process.

The candidate is scored as the model expects: the conversation plus the answer as
the assistant's turn, written with the model's own chat template. The score is the
raw logit. Calls from concurrent requests are batched off the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from guard.components.base import Candidate, Reward
from guard.components.batching import MicroBatcher
from guard.components.hf_classifier import load_sequence_classifier
from guard.components.specs import HFRewardSpec
from guard.components.threads import load_alone, model_thread


def reward_conversation(candidate: Candidate) -> list[dict[str, Any]]:
    """The conversation a reward model scores: the messages, then the answer."""
    if candidate.prompt is not None:
        return [
            {"role": "user", "content": candidate.prompt},
            {"role": "assistant", "content": candidate.text},
        ]
    messages = [
        {"role": str(m.get("role")), "content": m.get("content") or ""}
        for m in candidate.conversation
    ]
    return [*messages, {"role": "assistant", "content": candidate.text}]


class HFReward(Reward):
    def __init__(self, spec: HFRewardSpec):
        import torch

        self.spec = spec
        self._torch = torch
        self.tokenizer, self.model = load_alone(lambda: load_sequence_classifier(spec.model))
        if self.model.config.num_labels != 1:
            raise ValueError(
                f"{spec.model} has {self.model.config.num_labels} outputs; a reward model has one"
            )
        self.batcher: MicroBatcher[str, float] = MicroBatcher(
            self._scores, spec.max_batch_size, name="hf-reward", executor=model_thread()
        )

    async def score(self, candidates: Sequence[Candidate]) -> list[float]:
        texts = [
            str(self.tokenizer.apply_chat_template(reward_conversation(c), tokenize=False))
            for c in candidates
        ]
        return await self.batcher.submit(texts)

    def _scores(self, texts: list[str]) -> list[float]:
        torch: Any = self._torch
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=4096,
            return_tensors="pt",
            add_special_tokens=False,
        )
        with torch.inference_mode():
            logits = self.model(**encoded).logits.float()
        return [float(value) for value in logits[:, 0].tolist()]

    async def aclose(self) -> None:
        await self.batcher.aclose()
