"""Output rails on a Responses event stream, with chat's guarantee: no character reaches
the client before an output rail has passed a window containing it.

The upstream's events are held in order, as the one choice of a ``WindowedStream``
(``guard.pipeline.streaming``), so the windows, checks and releases are chat's. Text
arrives in ``*.delta`` events, and a tool call's name in its
``response.output_item.added``: each such event is one chunk of the window. The other
events add no text and go out in order with the chunks around them.

Every event that repeats text (each ``*.done``, ``response.content_part.done``,
``response.output_item.done``, and the ``response`` object of ``response.created``,
``response.completed`` ...) is rewritten as it is released, to say exactly what the
released deltas said, redactions included. Text the upstream repeats without having
streamed it is judged first: a ``*.done`` whose text runs past its deltas gets a delta
for the rest, held like any other; text anywhere else that no delta carried is never
released. The events are numbered again (``sequence_number``), since guard adds some.

A block ends the stream:

1. ``response.created``, if it was still held;
2. for each output item that was opened and not finished, ``response.output_item.done``
   with the text released so far and ``status: "incomplete"``;
3. ``response.incomplete``: the response with ``status: "incomplete"``,
   ``incomplete_details.reason: "content_filter"``, the items released as its output,
   and the verdict under ``response.guard``.

The upstream request is then closed, so vLLM stops generating. ``response.created`` and
the terminal event carry ``guard`` in their ``response``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guard.errors import GuardError
from guard.pipeline.streaming import WindowedStream
from guard.pipeline.texts import Path, set_path
from guard.protocol.responses import (
    CALL_TEXTS,
    DONE_TEXT_KEYS,
    NAME,
    PART_STREAMS,
    TERMINAL,
    error_payload,
    event_payload,
    item_texts,
    named_event,
)

Key = tuple[str, Any, Any]
"""A text stream of the response: (stream, ``output_index``, ``content_index`` or
``summary_index``)."""

_PART_EVENTS = frozenset(
    {
        "response.content_part.added",
        "response.content_part.done",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_part.done",
    }
)


def _key(event: Mapping[str, Any], stream: str) -> Key:
    index = event.get("content_index", event.get("summary_index"))
    return stream, event.get("output_index"), index


@dataclass
class ResponseStreamGuard(WindowedStream):
    """One Responses stream through the output rails."""

    broken = "the upstream ended the Response stream without a terminal event"

    sequence: int = 0
    terminal: bool = False
    """A terminal event was read: the upstream's stream is whole."""
    received: dict[Key, str] = field(default_factory=dict)
    """Each stream's text as read (before any redaction)."""
    said: dict[Key, str] = field(default_factory=dict)
    """Each stream's text as released (redactions applied)."""
    redacted: set[Key] = field(default_factory=set)
    opened: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Output items released as added and not yet as done, by ``output_index``."""
    parts: dict[int, dict[tuple[str, int], dict[str, Any]]] = field(default_factory=dict)
    """The content (and summary) parts released as added, per open output item."""
    finished: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Output items released as done, by ``output_index``."""
    skeleton: dict[str, Any] = field(default_factory=dict)
    """The upstream's response object as it started (no output): what a block ends with."""
    created: dict[str, Any] | None = None
    """``response.created`` while it is held."""

    # -- reading ------------------------------------------------------------------

    def _on_event(self, event: bytes) -> list[bytes]:
        payload = event_payload(event)
        if payload is None:
            return []
        kind = str(payload.get("type"))
        if isinstance(payload.get("response"), dict) and not self.skeleton:
            self.skeleton = copy.deepcopy(payload["response"])
        if kind == "response.created":
            self.created = payload
        stream = kind.removesuffix(".done")
        if stream != kind and stream in DONE_TEXT_KEYS:
            self._take_unstreamed(payload, stream)
        self._take(payload)
        return []

    def _take_unstreamed(self, done: dict[str, Any], stream: str) -> None:
        """A delta for the part of a ``*.done`` text its deltas never carried."""
        text, got = done.get(DONE_TEXT_KEYS[stream]), self.received.get(_key(done, stream), "")
        if not isinstance(text, str) or len(text) <= len(got) or not text.startswith(got):
            return
        where: dict[str, Any] = {
            k: done[k]
            for k in ("item_id", "output_index", "content_index", "summary_index")
            if k in done
        }
        self._take({"type": f"{stream}.delta", **where, "delta": text[len(got) :]})

    def _take(self, payload: dict[str, Any]) -> None:
        kind = str(payload.get("type"))
        if kind.endswith(".delta") and isinstance(payload.get("delta"), str):
            key = _key(payload, kind.removesuffix(".delta"))
            self.received[key] = self.received.get(key, "") + payload["delta"]
        finishes = kind in TERMINAL
        self.terminal = self.terminal or finishes
        self._hold(0, payload, finishes)

    def _fields(self, item: dict[str, Any]) -> list[tuple[str, Path]]:
        kind = str(item.get("type"))
        if kind.endswith(".delta") and isinstance(item.get("delta"), str):
            return [(item["delta"], ("delta",))]
        added = item.get("item") if kind == "response.output_item.added" else None
        if isinstance(added, dict) and added.get("type") in CALL_TEXTS:
            name = added.get("name")
            return [(name, ("item", "name"))] if isinstance(name, str) else []
        return []

    def _complete(self) -> bool:
        return self.terminal

    # -- sending ------------------------------------------------------------------

    def _unspell(self, item: dict[str, Any]) -> None:
        kind = str(item.get("type"))
        if kind.endswith(".delta"):
            self.redacted.add(_key(item, kind.removesuffix(".delta")))
        if item.get("logprobs"):
            item["logprobs"] = []

    def _emit(self, items: list[dict[str, Any]]) -> list[bytes]:
        return [self._send(item) for item in items]

    def _send(self, event: dict[str, Any]) -> bytes:
        """One released event, its repeated texts rewritten to what was released."""
        kind = str(event.get("type"))
        index = event.get("output_index")
        stream = kind.rsplit(".", 1)[0]
        if kind.endswith(".delta") and isinstance(event.get("delta"), str):
            key = _key(event, stream)
            self.said[key] = self.said.get(key, "") + event["delta"]
        elif kind.endswith(".done") and stream in DONE_TEXT_KEYS:
            key = _key(event, stream)
            event[DONE_TEXT_KEYS[stream]] = self.said.get(key, "")
            if isinstance(event.get("name"), str):
                event["name"] = self.said.get((NAME, index, None), "")
            if event.get("logprobs") and key in self.redacted:
                event["logprobs"] = []
        elif kind in _PART_EVENTS and isinstance(event.get("part"), dict):
            self._rewrite_part(event)
            if kind.endswith(".added"):
                where = "summary" if "summary_index" in event else "content"
                number = int(event.get(f"{where}_index") or 0)
                opened = self.parts.setdefault(int(index or 0), {})
                opened[(where, number)] = copy.deepcopy(event["part"])
        elif kind == "response.output_item.added" and isinstance(event.get("item"), dict):
            item = event["item"]
            if item.get("type") in CALL_TEXTS and isinstance(item.get("name"), str):
                self.said[(NAME, index, None)] = item["name"]
            self._rewrite_item(item, index)
            self.opened[int(index or 0)] = copy.deepcopy(item)
        elif kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            self._rewrite_item(event["item"], index)
            self.opened.pop(int(index or 0), None)
            self.finished[int(index or 0)] = copy.deepcopy(event["item"])
        if kind == "response.created":
            self.created = None
        response = event.get("response")
        if isinstance(response, dict):
            response["output"] = [self.finished[i] for i in sorted(self.finished)]
            if kind == "response.created" or kind in TERMINAL:
                response["guard"] = self.guard_info()
        event["sequence_number"] = self.sequence
        self.sequence += 1
        return named_event(event)

    def _rewrite_part(self, event: dict[str, Any]) -> None:
        part = event["part"]
        stream = PART_STREAMS.get(str(part.get("type")))
        if stream is None:
            return
        key = _key(event, stream)
        part["refusal" if part.get("type") == "refusal" else "text"] = self.said.get(key, "")
        if part.get("logprobs") and key in self.redacted:
            part["logprobs"] = None

    def _rewrite_item(self, item: dict[str, Any], index: Any) -> None:
        """An output item saying what was released of it; text guard knows no stream of
        was never judged, so it is left out."""
        for _, path, stream, sub in item_texts(item):
            if stream is None:
                set_path(item, path, "")
                continue
            key = (stream, index, sub)
            set_path(item, path, self.said.get(key, ""))
            if stream == "response.output_text" and key in self.redacted:
                part = item["content"][sub]
                if part.get("logprobs"):
                    part["logprobs"] = None

    def _stopped(self, index: int) -> list[bytes]:
        out = [self._send(self.created)] if self.created is not None else []
        for position in sorted(self.opened):
            item = self.opened[position]
            released: dict[str, list[dict[str, Any]]] = {}
            for (where, _), part in sorted(self.parts.get(position, {}).items()):
                released.setdefault(where, []).append(part)
            item.update(released)
            if "status" in item or item.get("type") in ("message", *CALL_TEXTS):
                item["status"] = "incomplete"
            done = {"type": "response.output_item.done", "output_index": position, "item": item}
            out.append(self._send(done))
        response = {
            **self.skeleton,
            "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
        }
        out.append(self._send({"type": "response.incomplete", "response": response}))
        return out

    def _error(self, error: GuardError) -> bytes:
        return self._send(error_payload(error.code, error.message, error.param))
