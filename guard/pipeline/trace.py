"""What the pipeline measures about one request, for metrics and the audit log.

The pipeline times its stages here and, when asked (a shadow policy, or an audit
log with text), keeps the upstream's answers as generated, before output rails
changed them. It never changes what the client gets.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from guard.errors import GuardError
from guard.pipeline.streaming import chunk_text
from guard.pipeline.subjects import output_subjects
from guard.protocol.responses import event_payload
from guard.protocol.sse import DONE, split_events

A = TypeVar("A")
R = TypeVar("R")


@dataclass
class Trace:
    stage_s: dict[str, float] = field(default_factory=dict)
    """Seconds per stage (``guard.metrics.STAGES``); a stage that did not run is absent."""
    keep_answers: bool = False
    answers: dict[int, str] = field(default_factory=dict)
    """Choice index -> the upstream's answer text, when ``keep_answers``."""
    upstream_error: GuardError | None = None
    """What broke a stream after it began (errors before it reach the error handler)."""

    def add(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def timed_call(
        self, stage: str, call: Callable[[A], Awaitable[R]]
    ) -> Callable[[A], Awaitable[R]]:
        """``call``, with the time each call takes counted under ``stage``."""

        async def timed_call(arg: A) -> R:
            with self.timed(stage):
                return await call(arg)

        return timed_call

    def keep_result(self, path: str, body: dict[str, Any], result: dict[str, Any]) -> None:
        """Keep a plain completion's answers, before output rails judge them."""
        if self.keep_answers:
            for index, subject in enumerate(output_subjects(path, body, result)):
                self.answers[index] = subject.text

    async def upstream_chunks(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass the upstream's stream through; the time it takes counts as generation."""
        started = time.perf_counter()
        try:
            if self.keep_answers:
                async for event in split_events(chunks):
                    self._keep_event(event)
                    yield event + b"\n\n"
            else:
                async for chunk in chunks:
                    yield chunk
        except GuardError as exc:
            self.upstream_error = exc
            raise
        finally:
            self.add("generation", time.perf_counter() - started)

    def _keep_event(self, event: bytes) -> None:
        if event.startswith(b"event:"):  # a Responses event: its deltas make one answer
            payload = event_payload(event) or {}
            if str(payload.get("type")).endswith(".delta") and isinstance(
                payload.get("delta"), str
            ):
                self.answers[0] = self.answers.get(0, "") + payload["delta"]
            return
        if event == DONE or not event.startswith(b"data:"):
            return
        try:
            chunk = orjson.loads(event[5:])
        except orjson.JSONDecodeError:
            return
        if isinstance(chunk, dict):
            for choice in chunk.get("choices") or []:
                index = int(choice.get("index", 0))
                self.answers[index] = self.answers.get(index, "") + chunk_text(choice)
