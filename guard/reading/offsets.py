"""Normalised text that remembers where each of its characters came from.

``Normalized.original_span`` maps a span of the normalised text back onto the original, so
that redaction cuts the original text at the right place (docs/safety.md, "Text as it
reads").
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class OffsetMap:
    """Pieces of the output, sorted by output start.

    Piece ``i`` covers output ``[out_starts[i], out_starts[i + 1])``.  A linear piece maps
    output character ``out_starts[i] + j`` to original character ``orig_starts[i] + j``; any
    other piece maps each of its output characters to ``[orig_starts[i], orig_ends[i])``.
    """

    __slots__ = ("linear", "orig_ends", "orig_starts", "out_starts")

    def __init__(self) -> None:
        self.out_starts: list[int] = []
        self.orig_starts: list[int] = []
        self.orig_ends: list[int] = []
        self.linear: list[bool] = []

    def add(self, out_start: int, out_len: int, orig_start: int, orig_end: int) -> None:
        if out_len == 1 and orig_end - orig_start == 1:
            if self.linear and self.linear[-1] and self.orig_ends[-1] == orig_start:
                last_len = self.orig_ends[-1] - self.orig_starts[-1]
                if self.out_starts[-1] + last_len == out_start:
                    self.orig_ends[-1] = orig_end
                    return
            linear = True
        else:
            linear = False
        self.out_starts.append(out_start)
        self.orig_starts.append(orig_start)
        self.orig_ends.append(orig_end)
        self.linear.append(linear)

    def add_identity(self, out_start: int, orig_start: int, length: int) -> None:
        if self.linear and self.linear[-1] and self.orig_ends[-1] == orig_start:
            last_len = self.orig_ends[-1] - self.orig_starts[-1]
            if self.out_starts[-1] + last_len == out_start:
                self.orig_ends[-1] = orig_start + length
                return
        self.out_starts.append(out_start)
        self.orig_starts.append(orig_start)
        self.orig_ends.append(orig_start + length)
        self.linear.append(True)

    def start_of(self, k: int) -> int:
        i = bisect_right(self.out_starts, k) - 1
        if self.linear[i]:
            return self.orig_starts[i] + (k - self.out_starts[i])
        return self.orig_starts[i]

    def end_of(self, k: int) -> int:
        i = bisect_right(self.out_starts, k) - 1
        if self.linear[i]:
            return self.orig_starts[i] + (k - self.out_starts[i]) + 1
        return self.orig_ends[i]

    def copy_into(self, target: OffsetMap, start: int, end: int, out_start: int) -> None:
        """Map output ``[start, end)`` as ``target``'s output from ``out_start`` on."""
        i = bisect_right(self.out_starts, start) - 1
        pos = start
        while pos < end:
            piece_end = self.out_starts[i + 1] if i + 1 < len(self.out_starts) else end
            stop = min(end, piece_end)
            at = out_start + pos - start
            if self.linear[i]:
                target.add_identity(at, self.orig_starts[i] + pos - self.out_starts[i], stop - pos)
            else:
                target.add(at, stop - pos, self.orig_starts[i], self.orig_ends[i])
            pos = stop
            i += 1


@dataclass(frozen=True)
class Normalized:
    """Normalised ``text`` of ``original``, with a map back to the original's offsets."""

    text: str
    original: str
    _map: OffsetMap | None = field(default=None, repr=False, compare=False)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Original span of ``text[start:end]``: from where its first character came from to
        where its last one did; an empty span is an empty span at its position."""
        if not 0 <= start <= end <= len(self.text):
            raise ValueError(
                f"span ({start}, {end}) outside normalised text of length {len(self.text)}"
            )
        offsets = self._map
        if offsets is None:
            return (start, end)
        if start == end:
            pos = len(self.original) if start == len(self.text) else offsets.start_of(start)
            return (pos, pos)
        return (offsets.start_of(start), offsets.end_of(end - 1))

    def without(self, spans: Sequence[tuple[int, int]]) -> Normalized:
        """This text with ``spans`` of it (sorted, not overlapping) left out, each remaining
        character still mapped onto the original."""
        return self.replacing([(start, end, "") for start, end in spans])

    def replacing(self, edits: Sequence[tuple[int, int, str]]) -> Normalized:
        """This text with each ``(start, end, new)`` span (sorted, not overlapping) read as
        ``new``, whose characters all map to where the span came from; every other
        character keeps its place in the original."""
        if not edits:
            return self
        offsets = OffsetMap()
        parts: list[str] = []
        out = 0
        pos = 0
        for start, end, new in [*edits, (len(self.text), len(self.text), "")]:
            if start > pos:
                parts.append(self.text[pos:start])
                if self._map is None:
                    offsets.add_identity(out, pos, start - pos)
                else:
                    self._map.copy_into(offsets, pos, start, out)
                out += start - pos
            if new:
                parts.append(new)
                offsets.add(out, len(new), *self.original_span(start, end))
                out += len(new)
            pos = end
        return Normalized("".join(parts), self.original, offsets)


def spliced(text: str, edits: Iterable[tuple[int, int, str]]) -> str:
    """``text`` with each ``(start, end, new)`` span (in order, not overlapping) read as
    ``new``; ``text`` itself when there is none."""
    parts: list[str] = []
    last = 0
    for start, end, new in edits:
        parts += [text[last:start], new]
        last = end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)
