"""Server-sent events: splitting an upstream byte stream into events, and writing ours."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from guard.errors import GuardError

DONE = b"data: [DONE]"
EVENT_END = b"\n\n"


async def split_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield each event's raw text (``data: ...``) without its blank-line terminator.

    Events are yielded as soon as their terminator arrives, whatever the chunking.
    """
    buffer = b""
    async for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
        while (end := buffer.find(EVENT_END)) >= 0:
            event, buffer = buffer[:end], buffer[end + 2 :]
            if event:
                yield event
    if buffer.strip():
        yield buffer.strip()


def data_event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + EVENT_END


def error_event(error: GuardError) -> bytes:
    return data_event(error.to_dict())
