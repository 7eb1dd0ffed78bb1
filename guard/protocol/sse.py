"""Server-sent events: splitting an upstream byte stream into events, and writing ours."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from guard.errors import GuardError, UpstreamEventTooLarge

DONE = b"data: [DONE]"
EVENT_END = b"\n\n"


async def split_events(
    chunks: AsyncIterator[bytes], max_event_bytes: int | None = None
) -> AsyncIterator[bytes]:
    """Yield each event's raw text (``data: ...``) without its blank-line terminator.

    Events are yielded as soon as their terminator arrives, whatever the chunking (a
    ``\\r\\n`` line end counts as ``\\n``, even split across chunks); each byte is searched
    once. An event that grows past ``max_event_bytes`` before its terminator arrives
    raises ``UpstreamEventTooLarge``: no more than that is ever held.
    """
    buffer = bytearray()
    carried = b""  # a chunk's last "\r", which may start a "\r\n" the next one ends
    async for chunk in chunks:
        searched = max(0, len(buffer) - 1)  # a terminator may straddle the old end
        if carried or b"\r" in chunk:
            chunk = carried + chunk
            carried = b"\r" if chunk.endswith(b"\r") else b""
            chunk = chunk[: len(chunk) - len(carried)].replace(b"\r\n", b"\n")
        buffer += chunk
        start = 0
        while (end := buffer.find(EVENT_END, max(start, searched))) >= 0:
            if end > start:
                yield bytes(buffer[start:end])
            start = end + 2
        del buffer[:start]
        if max_event_bytes is not None and len(buffer) > max_event_bytes:
            raise UpstreamEventTooLarge(
                f"the upstream sent a stream event larger than guard's limit of "
                f"{max_event_bytes} bytes (upstream_max_event_bytes); the stream was cut there"
            )
    buffer += carried
    if buffer.strip():
        yield bytes(buffer.strip())


def data_event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + EVENT_END


def error_event(error: GuardError) -> bytes:
    return data_event(error.to_dict())
