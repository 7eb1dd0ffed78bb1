"""What every classifier is: texts in, one verdict per text out."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Role = Literal["user", "assistant"]


T = TypeVar("T")


async def all_done(calls: Sequence[Awaitable[T]]) -> list[T]:
    """The results of ``calls``, run together; when one fails, the first failure is
    raised once every call has ended, so that no call runs on after the caller answered."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if not isinstance(result, BaseException)]


@dataclass(frozen=True)
class Subject:
    """One thing to judge: text the model reads (role ``user``: any input, whatever its
    message's role) or an answer (role ``assistant``)."""

    text: str
    role: Role = "user"
    context: tuple[Mapping[str, Any], ...] = ()
    """The conversation before ``text``, as chat messages, for classifiers that read it."""
    where: str = ""
    """Where the text is in the request (``messages[2].content``), for the verdicts."""


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
    reads_context = False
    """Its verdict depends on ``Subject.context`` too, not only on the text."""
    times_itself = False
    """It applies the rail's ``timeout_s`` to its own work (not to queueing) and raises
    ``QueueFull`` when it cannot start in time; otherwise the rail times the whole call."""
    categories: tuple[str, ...] | None = None
    """Every category its verdicts can name, where the kind knows them (a typo in a
    rail's ``refusal`` keys is then a load error); None: not known in advance."""
    window_chars: int | None = None
    """The longest text it reads at once; longer texts are judged in overlapping windows
    of this size. None: it reads any length whole itself."""

    @abstractmethod
    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]: ...

    def context_read(self, subject: Subject) -> Any:
        """What of ``subject.context`` its verdict depends on (the verdict cache keys on
        it): all of it, or None when it reads none."""
        return list(subject.context) if self.reads_context else None

    async def aclose(self) -> None:  # noqa: B027 - most classifiers hold nothing
        """Release what the classifier holds (clients, threads)."""


class TextChecker(Classifier):
    """A classifier that judges each text alone, in plain Python work. Texts longer than
    ``off_loop_chars`` in all are judged in a thread, so that the rail's ``timeout_s`` can
    fire and the event loop keeps serving meanwhile; shorter ones in place."""

    off_loop_chars = 4096

    @abstractmethod
    def check(self, text: str) -> Verdict: ...

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        if sum(len(subject.text) for subject in subjects) > self.off_loop_chars:
            return await asyncio.to_thread(self.check_all, subjects)
        return self.check_all(subjects)

    def check_all(self, subjects: Sequence[Subject]) -> list[Verdict]:
        return [self.check(subject.text) for subject in subjects]


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
