"""A text spread over several fields of a request or an answer: judged as one, rewritten
field by field.

A ``Part`` is the text rails judge (its pieces joined in reading order) with a map of
``Segment``s back onto the fields it came from, so a redaction found in the joined text
rewrites each field at the right place, and a field a redaction cannot rewrite (a dict
key: ``KEY``) makes the redaction fail instead of leaving the text in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guard.components.base import Role, Subject
from guard.pipeline.rails import Judgement

Path = tuple[str | int, ...]
KEY: Path = ()
"""The path of a piece that is a dict key: judged, but not rewritable by a redaction."""
SEPARATOR = "\n"


@dataclass(frozen=True)
class Segment:
    """Where ``text[start:end]`` of a part came from: the string at ``path``."""

    start: int
    end: int
    path: Path


@dataclass(frozen=True)
class Part:
    """One text the rails judge whole."""

    where: str
    text: str
    segments: tuple[Segment, ...]
    context: tuple[Mapping[str, Any], ...] = ()
    kind: str = ""
    """Which part of a request it is (``tool``, ``documents``...: ``PartKind``), for input
    rails set to judge only some; empty for an answer."""

    def subject(self, role: Role = "user") -> Subject:
        return Subject(self.text, role, self.context, self.where)


def joined(
    where: str,
    pieces: Sequence[tuple[str, Path]],
    context: tuple[Any, ...] = (),
    separator: str = SEPARATOR,
) -> Part | None:
    """The part made of ``pieces`` (text, path) in order, ``separator`` between them (a
    stream's chunks join with none); None when they hold no text."""
    texts: list[str] = []
    segments: list[Segment] = []
    position = 0
    for text, path in pieces:
        if not text:
            continue
        if texts:
            position += len(separator)
        texts.append(text)
        segments.append(Segment(position, position + len(text), path))
        position += len(text)
    if not texts:
        return None
    return Part(where, separator.join(texts), tuple(segments), context)


def redact_fields(data: Any, parts: Sequence[Part], judgements: Sequence[Judgement]) -> set[int]:
    """Rewrite, in ``data``, every field a redaction of its part touches. Returns the
    indices of the parts changed. Raises ``ValueError`` when a span lies in a dict key."""
    edits: dict[Path, list[tuple[int, int, str]]] = {}
    changed: set[int] = set()
    for index, (part, judgement) in enumerate(zip(parts, judgements, strict=True)):
        for start, end, replacement in judgement.redactions:
            for segment in part.segments:
                low, high = max(start, segment.start), min(end, segment.end)
                if low >= high:
                    continue
                if segment.path == KEY:
                    raise ValueError(f"{part.where}: a span to redact lies in a key")
                # The replacement goes where the span starts; the rest of it is cut.
                text = replacement if low == start else ""
                edits.setdefault(segment.path, []).append(
                    (low - segment.start, high - segment.start, text)
                )
                changed.add(index)
    for path, spans in edits.items():
        value = get_path(data, path)
        for start, end, text in sorted(set(spans), reverse=True):
            value = value[:start] + text + value[end:]
        set_path(data, path, value)
    return changed


def get_path(data: Any, path: Path) -> str:
    for step in path:
        data = data[step]
    return str(data)


def set_path(data: Any, path: Path, value: str) -> None:
    *head, last = path
    for step in head:
        data = data[step]
    data[last] = value
