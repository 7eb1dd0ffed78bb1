"""Guarded streaming: output rails on a stream, with no unchecked text ever released.

Each choice of the stream holds the chunks it has not released yet. A check judges the
recent released text (``context_tokens`` chunks) plus the held chunks. When it passes,
the held chunks it judged go out, except the last ``window_tokens - 1`` text chunks:
those stay back, so a phrase of up to ``window_tokens`` chunks that straddles the cut
was judged whole, and is judged whole again, before any part of it goes out. A phrase
of up to ``window_tokens`` chunks is therefore never released in part.

When checks run, per choice:

* the first as soon as ``window_tokens`` text chunks are held: it releases the first one;
* then whenever ``chunk_tokens`` new text chunks arrived since the last check began
  (with ``check_at: sentence``, at a sentence end, or after 4 x ``chunk_tokens``);
* never two at once. Chunks that arrive while a check runs wait for the next one, which
  covers all of them (up to 4 x ``chunk_tokens``). When the rails are slow, as a busy
  CPU classifier is, the checks grow longer and fewer by themselves, and concurrent
  streams' checks meet in the classifier's batches;
* at the end of the choice the rest is judged (with ``final_check``, the whole answer)
  before the last chunks go out. Without ``final_check``, held chunks that a passing
  check already covered go out without being judged again.

A chunk with no text (the role, a bare finish) counts for nothing; a chunk with text
counts as one token, which is how vLLM streams. Upstream events are read by a task of
their own while checks run, so a check never holds up reading; closing the stream
cancels that task and every check in flight.

A block stops that choice: a last chunk with ``finish_reason: "content_filter"`` and
the verdict under ``guard``; when every choice has stopped, the upstream request is
closed, so vLLM stops generating.

``WindowedStream`` is that machinery, whatever the wire; ``StreamGuard`` fits it to chat
and text completion chunks, ``guard.pipeline.response_stream`` to Responses events.
"""

from __future__ import annotations

import asyncio
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from guard.errors import GuardError, UpstreamStreamBroken
from guard.pipeline.rails import Judgement
from guard.pipeline.texts import Path, joined, redact_fields
from guard.policy.models import Streaming
from guard.protocol.messages import REASONING_KEYS
from guard.protocol.sse import DONE, data_event, error_event, split_events

log = logging.getLogger("guard")

SENTENCE_END = re.compile(r"[.!?;:]\s*$|\n\s*$")
COALESCE = 4
"""A check covers at most this many times ``chunk_tokens`` new text chunks."""

Judge = Callable[[str, int], Awaitable[Judgement]]
"""Judges ``(text, choice index)``; the pipeline binds it to the output rails."""


def chunk_fields(choice: dict[str, Any]) -> list[tuple[str, Path]]:
    """The texts a streamed choice adds, each with its path in the choice: reasoning,
    content (or a text completion's text), refusal, tool call names and arguments."""
    if "text" in choice:
        return [(str(choice.get("text") or ""), ("text",))]
    delta = choice.get("delta") or {}
    fields: list[tuple[str, Path]] = [
        (delta[key], ("delta", key))
        for key in (*REASONING_KEYS, "content", "refusal")
        if isinstance(delta.get(key), str)
    ]
    for index, call in enumerate(delta.get("tool_calls") or []):
        function = call.get("function") or {}
        for key in ("name", "arguments"):
            if isinstance(function.get(key), str):
                fields.append((function[key], ("delta", "tool_calls", index, "function", key)))
    return fields


def chunk_text(choice: dict[str, Any]) -> str:
    """The text a streamed choice adds (``chunk_fields`` joined)."""
    return "".join(text for text, _ in chunk_fields(choice))


@dataclass(frozen=True)
class Check:
    """One check of a choice: what it judges, and how far it may release if it passes."""

    text: str
    start: int
    """Where the held text starts in ``text`` (before it: context)."""
    end: int
    """The held chunks ``held[:end]`` are judged."""
    cut: int
    """On a pass, ``held[:cut]`` go out."""
    final: bool
    judged: bool = True
    """False: a passing check already covered every held character; nothing to ask."""


@dataclass
class ChoiceGuard:
    """The held and released chunks of one choice, and when to judge them."""

    settings: Streaming
    held: list[dict[str, Any]] = field(default_factory=list)
    """Upstream chunks (each carrying only this choice), or events, not released yet."""
    texts: list[str] = field(default_factory=list)
    """The text of each held chunk."""
    checked: int = 0
    """``held[:checked]`` were judged, in full, by the last passing check."""
    held_count: int = 0
    new_count: int = 0
    """Text chunks held, and held since ``checked``."""
    clean: bool = False
    """The last passing check redacted nothing (so ``held[:checked]`` may go out as is)."""
    began: bool = False
    """A check has run (the first one waits for a full window)."""
    released: list[str] = field(default_factory=list)
    """Texts of released chunks, for the context of later checks."""
    redacting: bool = False
    """The released text ends (but for white space) inside or at the end of a redacted
    span: a span that goes on from there in a later check is the same one, already
    replaced."""
    in_flight: asyncio.Task[None] | None = None
    stopped: bool = False
    finished: bool = False
    """The upstream sent this choice's finish chunk."""
    done: bool = False
    """Everything this choice will ever send is sent."""

    def hold(self, item: dict[str, Any], text: str, finishes: bool) -> None:
        """Hold ``item``, which adds ``text``; ``finishes``: it is the choice's last."""
        self.held.append(item)
        self.texts.append(text)
        if text:
            self.held_count += 1
            self.new_count += 1
        if finishes:
            self.finished = True

    def _text_chunks(self, start: int, end: int) -> int:
        return sum(1 for text in self.texts[start:end] if text)

    def next_check(self) -> Check | None:
        """The check to run now, if one is due."""
        if self.stopped or self.done or self.in_flight is not None:
            return None
        w, c = self.settings.window_tokens, self.settings.chunk_tokens
        most = max(COALESCE * c, w)
        if self.finished:
            if self.settings.final_check or self.new_count <= most:
                return self._final()
        elif not self._due(w, c):
            return None
        end = self._limit(most)
        return self._check(end, self._cut(end, w - 1), final=False)

    def _due(self, w: int, c: int) -> bool:
        if self.held_count < w or (self.began and self.new_count < c):
            return False
        if self.settings.check_at == "sentence" and self.new_count < COALESCE * c:
            return bool(SENTENCE_END.search("".join(self.texts[-8:])))
        return True

    def _limit(self, most_new: int) -> int:
        """The end of a check that judges at most ``most_new`` new text chunks."""
        count = 0
        for position in range(self.checked, len(self.held)):
            if self.texts[position]:
                count += 1
                if count > most_new:
                    return position
        return len(self.held)

    def _cut(self, end: int, keep: int) -> int:
        """Release up to here: ``held[:end]`` less its last ``keep`` text chunks."""
        if keep == 0:
            return end
        kept = 0
        for position in range(end - 1, -1, -1):
            if self.texts[position]:
                kept += 1
                if kept == keep:
                    return position
        return 0

    def _final(self) -> Check | None:
        whole = self.settings.final_check
        if not whole and self.clean and not self.new_count:
            return self._check(len(self.held), len(self.held), final=True, judged=False)
        if not self.held and not whole:
            self.done = True
            return None
        return self._check(len(self.held), len(self.held), final=True, whole=whole)

    def _check(
        self, end: int, cut: int, final: bool, whole: bool = False, judged: bool = True
    ) -> Check:
        keep = len(self.released) if whole else self.settings.context_tokens
        context = "".join(self.released[-keep:]) if keep else ""
        return Check(context + "".join(self.texts[:end]), len(context), end, cut, final, judged)

    def release(self, cut: int, end: int, clean: bool) -> list[dict[str, Any]]:
        """Hand out ``held[:cut]``; ``held[:end]`` passed a check."""
        out, self.held = self.held[:cut], self.held[cut:]
        self.redacting = False
        self.released += self.texts[:cut]
        self.texts = self.texts[cut:]
        self.checked, self.clean, self.began = end - cut, clean, True
        self.held_count = self._text_chunks(0, len(self.held))
        self.new_count = self._text_chunks(self.checked, len(self.held))
        return out


@dataclass
class WindowedStream(ABC):
    """Runs the events of one upstream stream through the output rails, per choice.

    A wire fits it with how to read an upstream event (``_on_event``: hold its items),
    the texts an item adds (``_fields``), how to send released items (``_emit``), what
    a block sends (``_stopped``) and how the stream ends."""

    settings: Streaming
    judge: Judge
    guard_info: Callable[[], dict[str, Any]]
    choices: dict[int, ChoiceGuard] = field(default_factory=dict)
    _inbox: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    """Upstream events, check results and the end of the upstream, in arrival order."""

    broken = "the upstream ended the stream without [DONE]"

    # -- what a wire says ---------------------------------------------------------

    @abstractmethod
    def _on_event(self, event: bytes) -> list[bytes]:
        """Hold what an upstream event adds; return anything to send at once."""

    @abstractmethod
    def _fields(self, item: dict[str, Any]) -> list[tuple[str, Path]]:
        """The texts a held item adds, each with its path in the item."""

    @abstractmethod
    def _emit(self, items: list[dict[str, Any]]) -> list[bytes]:
        """The events that send released items."""

    @abstractmethod
    def _stopped(self, index: int) -> list[bytes]:
        """What a choice a rail stopped sends last."""

    @abstractmethod
    def _error(self, error: GuardError) -> bytes:
        """The event that reports an error in the middle of the stream."""

    @abstractmethod
    def _unspell(self, item: dict[str, Any]) -> None:
        """Forget what spelled an item's text before a redaction changed it (logprobs)."""

    def _closing(self) -> Iterable[bytes]:
        """What a stream that ran to its end sends after the last released item."""
        return ()

    def _ending(self) -> Iterable[bytes]:
        """What every stream sends last, after an error too."""
        return ()

    def _complete(self) -> bool:
        """Whether the upstream's stream, ended without ``[DONE]``, was whole all the same."""
        return False

    # -- the machinery ------------------------------------------------------------

    def _text(self, item: dict[str, Any]) -> str:
        return "".join(text for text, _ in self._fields(item))

    def _choice(self, index: int) -> ChoiceGuard:
        if index not in self.choices:
            self.choices[index] = ChoiceGuard(self.settings)
        return self.choices[index]

    async def run(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        reader = asyncio.create_task(self._read(chunks))
        try:
            try:
                async for out in self._serve():
                    yield out
                for out in self._closing():
                    yield out
            except GuardError as exc:
                yield self._error(exc)
            except Exception:  # a bug: the client is told, not left with a cut stream
                log.exception("a guarded stream failed")
                yield self._error(GuardError("guard hit an internal error; see its log."))
            for out in self._ending():
                yield out
        finally:
            # A closed or cancelled stream must leave nothing running: the reader (so
            # the upstream can be closed) and every pending check.
            reader.cancel()
            for choice in self.choices.values():
                if choice.in_flight is not None:
                    choice.in_flight.cancel()

    async def _serve(self) -> AsyncIterator[bytes]:
        upstream_done = False
        while not upstream_done or not all(c.done or c.stopped for c in self.choices.values()):
            kind, item = await self._inbox.get()
            if kind == "event":
                outs = self._on_event(item)
            elif kind == "checked":
                outs = self._on_checked(*item)
            elif kind == "done":
                if not item and not self._complete():
                    raise UpstreamStreamBroken(self.broken)
                upstream_done, outs = True, []
                for choice in self.choices.values():
                    choice.finished = True
            else:
                raise item
            for index, choice in self.choices.items():
                outs += self._start_due(index, choice)
            for out in outs:
                yield out
            if self.choices and all(c.stopped for c in self.choices.values()):
                return  # every choice blocked: stop reading, so the upstream is closed

    async def _read(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for event in split_events(chunks):
                if event == DONE:
                    self._inbox.put_nowait(("done", True))
                    return
                self._inbox.put_nowait(("event", event))
            self._inbox.put_nowait(("done", False))
        except Exception as exc:  # handed to the stream, which reports it
            self._inbox.put_nowait(("error", exc))

    def _hold(self, index: int, item: dict[str, Any], finishes: bool) -> None:
        state = self._choice(index)
        if not state.stopped:
            state.hold(item, self._text(item), finishes)

    def _start_due(self, index: int, state: ChoiceGuard) -> list[bytes]:
        check = state.next_check()
        if check is None:
            return []
        if not check.judged:
            state.done = True
            return self._emit(state.release(check.cut, check.end, True))
        state.in_flight = asyncio.create_task(self._judge(index, check))
        return []

    async def _judge(self, index: int, check: Check) -> None:
        try:
            judgement = await self.judge(check.text, index)
        except Exception as exc:
            self._inbox.put_nowait(("error", exc))
        else:
            self._inbox.put_nowait(("checked", (index, check, judgement)))

    def _on_checked(self, index: int, check: Check, judgement: Judgement) -> list[bytes]:
        """Release what a check passed, or stop the choice on a block."""
        state = self.choices[index]
        state.in_flight = None
        state.done = check.final
        if judgement.stops:
            state.stopped = True
            state.held, state.texts = [], []
            return self._stopped(index)
        if not judgement.redactions:
            return self._emit(state.release(check.cut, check.end, clean=True))
        return self._release_redacted(index, state, judgement, check)

    def _release_redacted(
        self, index: int, state: ChoiceGuard, judgement: Judgement, check: Check
    ) -> list[bytes]:
        """Release the passed text with its spans replaced.

        The cut moves back before any span that would straddle it, so a redacted span
        is never released in part.
        """
        lengths = [len(text) for text in state.texts[: check.end]]
        cut = check.cut
        while cut > 0:
            end = check.start + sum(lengths[:cut])
            if not any(s < end < e for s, e, _ in judgement.redactions):
                break
            cut -= 1
        continued = state.redacting
        sent = "".join(state.texts[:cut])
        released = state.release(cut, check.end, clean=False)
        if not released:
            return []
        # where the released text ends, white space at its end left out
        end = check.start + len(sent.rstrip())
        state.redacting = any(s < end <= e for s, e, _ in judgement.redactions)
        pieces = [
            (text, (number, *path))
            for number, item in enumerate(released)
            for text, path in self._fields(item)
        ]
        part = joined(f"choices[{index}]", pieces, separator="")
        # A span that began in text already released goes on as its replacement here, or
        # as nothing where an earlier check already put the replacement out.
        spans = tuple(
            (s - check.start, e - check.start, r)
            if s >= check.start
            else (0, e - check.start, "" if continued else r)
            for s, e, r in judgement.redactions
        )
        if part is not None:
            redact_fields(released, [part], [Judgement((), spans)])
        texts = [self._text(item) for item in released]
        for item, before in zip(released, state.released[-len(released) :], strict=True):
            if self._text(item) != before:
                self._unspell(item)  # what spelled the redacted text must go too
        state.released[-len(released) :] = texts
        return self._emit(released)


@dataclass
class StreamGuard(WindowedStream):
    """Chat and text completion chunks: a choice's held items are chunks carrying only
    that choice."""

    usage: dict[str, Any] | None = None
    wants_usage: bool = False
    tagged: bool = False
    _head: dict[str, Any] = field(default_factory=dict)
    """id, object, created, model of the upstream's chunks."""

    def _on_event(self, event: bytes) -> list[bytes]:
        try:
            chunk = orjson.loads(event.removeprefix(b"data:").strip())
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict) or "error" in chunk:
            return [event + b"\n\n"]
        self._head = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            finishes = choice.get("finish_reason") is not None
            self._hold(int(choice.get("index", 0)), {**self._head, "choices": [choice]}, finishes)
        return []

    def _fields(self, item: dict[str, Any]) -> list[tuple[str, Path]]:
        return [(text, ("choices", 0, *path)) for text, path in chunk_fields(item["choices"][0])]

    def _unspell(self, item: dict[str, Any]) -> None:
        item["choices"][0]["logprobs"] = None

    def _emit(self, items: list[dict[str, Any]]) -> list[bytes]:
        return [self._event(chunk) for chunk in items]

    def _stopped(self, index: int) -> list[bytes]:
        return [self._event({"choices": [self._stop(index)]})]

    def _error(self, error: GuardError) -> bytes:
        return error_event(error)

    def _closing(self) -> Iterable[bytes]:
        if self.wants_usage and self.usage is not None:
            yield self._event({"choices": [], "usage": self.usage})

    def _ending(self) -> Iterable[bytes]:
        yield DONE + b"\n\n"

    def _is_chat(self) -> bool:
        return "chat" in str(self._head.get("object"))

    def _text_choice(self, index: int, text: str, finish: str | None) -> dict[str, Any]:
        part: dict[str, Any] = {"delta": {"content": text}} if self._is_chat() else {"text": text}
        return {"index": index, **part, "finish_reason": finish, "logprobs": None}

    def _stop(self, index: int) -> dict[str, Any]:
        part: dict[str, Any] = {"delta": {}} if self._is_chat() else {"text": ""}
        return {"index": index, **part, "finish_reason": "content_filter", "logprobs": None}

    def _event(self, chunk: dict[str, Any]) -> bytes:
        """Our chunk: the upstream's head, ``guard`` on the first and on every block."""
        chunk = {**self._head, **chunk}
        if chunk.get("choices"):
            chunk.pop("usage", None)  # per-chunk usage stats stay internal
        stopped = any(c.get("finish_reason") == "content_filter" for c in chunk.get("choices", []))
        if not self.tagged or stopped:
            chunk["guard"] = self.guard_info()
            self.tagged = True
        return data_event(chunk)
