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
    once, and the pieces of an event are joined once. An event that grows past
    ``max_event_bytes`` before its terminator arrives raises ``UpstreamEventTooLarge``:
    no more than that is ever held.
    """
    pending: list[bytes] = []  # the pieces of an event whose terminator has not come
    held = 0
    carried = b""  # a chunk's last "\r", which may start a "\r\n" the next one ends
    async for chunk in chunks:
        if carried or b"\r" in chunk:
            chunk = carried + chunk
            carried = b"\r" if chunk.endswith(b"\r") else b""
            chunk = chunk[: len(chunk) - len(carried)].replace(b"\r\n", b"\n")
        start = 0
        if pending and pending[-1].endswith(b"\n") and chunk.startswith(b"\n"):
            event = b"".join(pending)[:-1]  # the terminator straddles the two chunks
            pending, held, start = [], 0, 1
            if event:
                yield event
        while (end := chunk.find(EVENT_END, start)) >= 0:
            event = b"".join((*pending, chunk[start:end])) if pending else chunk[start:end]
            pending, held, start = [], 0, end + 2
            if event:
                yield event
        if start < len(chunk):
            pending.append(chunk[start:] if start else chunk)
            held += len(chunk) - start
            if max_event_bytes is not None and held > max_event_bytes:
                raise UpstreamEventTooLarge(
                    f"the upstream sent a stream event larger than guard's limit of "
                    f"{max_event_bytes} bytes (upstream_max_event_bytes); the stream was cut "
                    "there"
                )
    rest = b"".join(pending) + carried
    if rest.strip():
        yield rest.strip()


def data_event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + EVENT_END


def error_event(error: GuardError) -> bytes:
    return data_event(error.to_dict())
