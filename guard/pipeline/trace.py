"""What the pipeline measures about one request, for metrics, the audit log and traces.

The pipeline times its stages here and, when asked (a shadow policy, or an audit
log with text), keeps the upstream's answers as generated, before output rails
changed them. It never changes what the client gets.

When the request is traced (``tracer`` set: ``guard.ops.tracing``), each timed stage is
also an OpenTelemetry span, ``guard.<stage>``, current while the stage runs: what the
stage sends upstream carries its ``traceparent``. A span says what happened, never with
text: a failure sets its status to the error's class and code, not its message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode, Tracer, use_span

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
    tracer: Tracer | None = None
    """Opens the stages' spans when the request is traced; None: no spans at all."""
    _streams: list[Span] = field(default_factory=list)
    """Generation spans of streams, open until the stream ends (``upstream_chunks``)."""

    def add(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds

    @contextmanager
    def timed(self, stage: str) -> Iterator[Span]:
        """Time ``stage``; its span (a no-op one when untraced) is current meanwhile."""
        started = time.perf_counter()
        try:
            if self.tracer is None:
                yield INVALID_SPAN
            else:
                span = self.tracer.start_span(f"guard.{stage}")
                with current(span, end_on_exit=True):
                    yield span
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

    def stream_call(self, call: Callable[[A], Awaitable[R]]) -> Callable[[A], Awaitable[R]]:
        """``timed_call("generation", call)`` for a call that opens a stream: its span
        stays open until ``upstream_chunks`` has passed the stream on (or ``end``)."""
        if self.tracer is None:
            return self.timed_call("generation", call)
        tracer = self.tracer

        async def stream_call(arg: A) -> R:
            started = time.perf_counter()
            span = tracer.start_span("guard.generation")
            try:
                with current(span):
                    response = await call(arg)
            except BaseException:
                span.end()
                raise
            finally:
                self.add("generation", time.perf_counter() - started)
            self._streams.append(span)
            return response

        return stream_call

    def end(self) -> None:
        """End the spans still open: streams that were never read (a block, a client gone)."""
        while self._streams:
            self._streams.pop().end()

    def keep_result(self, path: str, body: dict[str, Any], result: dict[str, Any]) -> None:
        """Keep a plain completion's answers, before output rails judge them."""
        if self.keep_answers:
            for index, subject in enumerate(output_subjects(path, body, result)):
                self.answers[index] = subject.text

    async def upstream_chunks(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass the upstream's stream through; the time it takes counts as generation,
        and its end ends the generation span ``stream_call`` opened."""
        started = time.perf_counter()
        span = self._streams.pop() if self._streams else INVALID_SPAN
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
            span.set_status(failure_status(exc))
            raise
        finally:
            self.add("generation", time.perf_counter() - started)
            span.end()

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


@contextmanager
def current(span: Span, end_on_exit: bool = False) -> Iterator[None]:
    """``span`` is current meanwhile; what escapes marks it failed: cancelled, or an
    error's class and code (the SDK's own notes of an exception would carry its message)."""
    try:
        with use_span(span, record_exception=False, set_status_on_exception=False):
            yield
    except asyncio.CancelledError:
        span.set_attribute("guard.cancelled", True)
        raise
    except Exception as exc:
        span.set_status(failure_status(exc))
        raise
    finally:
        if end_on_exit:
            span.end()


def failure_status(exc: BaseException) -> Status:
    """An error span's status: the error's class, and its code. Never the message,
    which may quote what the request said."""
    code = exc.code if isinstance(exc, GuardError) else None
    return Status(StatusCode.ERROR, type(exc).__name__ + (f": {code}" if code else ""))
