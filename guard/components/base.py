"""What every classifier is: texts in, one verdict per text out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Subject:
    """One thing to judge: a prompt (role ``user``) or an answer (role ``assistant``)."""

    text: str
    role: Role = "user"
    context: tuple[Mapping[str, Any], ...] = ()
    """The conversation before ``text``, as chat messages, for classifiers that read it."""


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    score: float | None = None
    """Probability-like unsafe score in [0, 1], where the classifier has one."""
    categories: tuple[str, ...] = ()
    """The categories that made it flagged."""
    category_scores: Mapping[str, float] = field(default_factory=dict)
    spans: tuple[tuple[int, int], ...] = ()
    """Character ranges to redact, for classifiers that locate what they found."""


class Classifier(ABC):
    """A built component. ``classify`` is batched: callers pass every text they have."""

    can_redact = False

    @abstractmethod
    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]: ...

    async def aclose(self) -> None:  # noqa: B027 - most classifiers hold nothing
        """Release what the classifier holds (clients, threads)."""


@dataclass(frozen=True)
class Candidate:
    """One answer to score, with the conversation it answers."""

    text: str
    conversation: tuple[Mapping[str, Any], ...] = ()
    prompt: str | None = None
    """For text completions: the prompt the text continues."""


class Reward(ABC):
    """A built reward component: higher scores are better answers. Batched like classifiers."""

    @abstractmethod
    async def score(self, candidates: Sequence[Candidate]) -> list[float]: ...

    async def aclose(self) -> None:  # noqa: B027 - most rewards hold nothing
        """Release what the reward holds."""
