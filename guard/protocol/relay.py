"""What a streamed response is made of: a ``Relay`` of server-sent events, and the
ways the pipeline makes one (replaying a finished answer, passing an upstream through,
chat chunks or Responses events)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from guard.errors import GuardError, UpstreamStreamBroken
from guard.protocol.responses import TERMINAL, error_payload, event_payload, named_event
from guard.protocol.sse import DONE, EVENT_END, error_event, split_events

GuardInfo = Callable[[], dict[str, Any]]
"""The response's ``guard`` object, made when it is sent."""


@dataclass(frozen=True)
class Relay:
    """Events to send; ``aclose`` must be awaited however the response ends."""

    events: AsyncIterator[bytes]
    aclose: Callable[[], Awaitable[None]]


def replay(events: Iterator[bytes]) -> Relay:
    """A relay of events already made (a finished answer, a refusal)."""

    async def each() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    async def nothing_to_close() -> None:
        return None

    return Relay(each(), nothing_to_close)


async def passed_through(chunks: AsyncIterator[bytes], info: GuardInfo) -> AsyncIterator[bytes]:
    """Upstream events as they arrive; always ends with ``[DONE]``.

    The first JSON chunk carries the ``guard`` object. A broken upstream becomes an
    error event, so the client is told instead of seeing a silently short answer.
    """
    tagged = False
    try:
        async for event in split_events(chunks):
            if event == DONE:
                break
            if not tagged and event.startswith(b"data: {"):
                event, tagged = _with_guard_info(event, info)
            yield event + EVENT_END
        else:
            raise UpstreamStreamBroken("the upstream ended the stream without [DONE]")
    except GuardError as exc:
        yield error_event(exc)
    yield DONE + EVENT_END


def _with_guard_info(event: bytes, info: GuardInfo) -> tuple[bytes, bool]:
    try:
        chunk = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return event, False
    if not isinstance(chunk, dict) or "error" in chunk:
        return event, False
    chunk["guard"] = info()
    return b"data: " + orjson.dumps(chunk), True


async def passed_through_responses(
    chunks: AsyncIterator[bytes], info: GuardInfo
) -> AsyncIterator[bytes]:
    """Responses events as they arrive, untouched but for ``guard`` in the ``response``
    of ``response.created`` and of the terminal event. A stream that ends without a
    terminal event ends with an ``error`` event."""
    count = 0
    try:
        async for event in split_events(chunks):
            kind = _event_type(event)
            if kind == "response.created" or kind in TERMINAL:
                event = _with_response_guard(event, info)
            count += 1
            yield event + EVENT_END
            if kind in TERMINAL:
                return
        raise UpstreamStreamBroken(
            "the upstream ended the Response stream without a terminal event"
        )
    except GuardError as exc:
        payload = error_payload(exc.code, exc.message, exc.param)
        yield named_event({**payload, "sequence_number": count})


def _event_type(event: bytes) -> str | None:
    if event.startswith(b"event:"):
        return event.split(b"\n", 1)[0][6:].strip().decode("utf-8", errors="replace")
    payload = event_payload(event)
    return str(payload.get("type")) if payload is not None else None


def _with_response_guard(event: bytes, info: GuardInfo) -> bytes:
    payload = event_payload(event)
    if payload is None or not isinstance(payload.get("response"), dict):
        return event
    payload["response"]["guard"] = info()
    return named_event(payload).removesuffix(EVENT_END)
