"""Splitting an upstream byte stream into events, whatever the chunking, within a size cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from guard.errors import UpstreamEventTooLarge
from guard.protocol.sse import split_events


def split(chunks: list[bytes], max_event_bytes: int | None = None) -> list[bytes]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def collect() -> list[bytes]:
        return [event async for event in split_events(source(), max_event_bytes)]

    return asyncio.run(collect())


def test_events_come_whole_however_the_bytes_are_cut() -> None:
    stream = b'data: {"a": 1}\n\ndata: {"b": 2}\r\n\r\n\n\ndata: [DONE]\n\n'
    expected = [b'data: {"a": 1}', b'data: {"b": 2}', b"data: [DONE]"]
    assert split([stream]) == expected
    assert split([bytes([byte]) for byte in stream]) == expected
    for cut in range(1, len(stream)):  # a terminator straddling two chunks included
        assert split([stream[:cut], stream[cut:]]) == expected


def test_a_last_event_without_its_blank_line_still_comes() -> None:
    assert split([b"data: 1\n\ndata: 2\n"]) == [b"data: 1", b"data: 2"]


def test_an_event_may_fill_the_limit_but_not_pass_it() -> None:
    event = b"data: " + b"x" * 94  # 100 bytes
    then = b"\n\ndata: [DONE]\n\n"
    assert split([event[:50], event[50:] + then], 100) == [event, b"data: [DONE]"]
    with pytest.raises(UpstreamEventTooLarge, match="limit of 99 bytes"):
        split([event[:50], event[50:], b"\n\n"], 99)


def test_the_limit_holds_back_a_line_that_never_ends() -> None:
    pieces = (b"x" * 1000 for _ in range(10_000))  # 10 MB, never terminated
    seen: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        for piece in pieces:
            seen.append(len(piece))
            yield piece

    async def read() -> None:
        async for _ in split_events(source(), 4096):
            pass

    with pytest.raises(UpstreamEventTooLarge):
        asyncio.run(read())
    assert sum(seen) == 5000  # it stopped reading as soon as the event passed 4096 bytes
