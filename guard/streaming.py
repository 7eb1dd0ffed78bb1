"""Guarded streaming: output rails on a stream, with no unchecked text ever released.

Each choice of the stream keeps the chunks it has not released yet. Every
``chunk_tokens`` new chunks (or at a sentence end, with ``check_at: sentence``) the
output rails judge the recent released text (``context_tokens`` chunks) plus every
held chunk. If they pass, the held chunks are released except the last
``window_tokens``: those stay back, so anything that straddles the boundary is judged
again, whole, before any part of it goes out. A phrase of up to ``window_tokens``
chunks is therefore never released in part. At the end the rest is judged (and with
``final_check``, the whole answer) before the last chunks go out.

A block stops that choice: a last chunk with ``finish_reason: "content_filter"`` and
the verdict under ``guard``; when every choice has stopped, the upstream request is
closed, so vLLM stops generating. A chunk is counted as one token, which is how vLLM
streams.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from guard.api.sse import DONE, data_event, error_event, split_events
from guard.errors import GuardError, UpstreamStreamBroken
from guard.policy import Streaming
from guard.rails import Judgement

SENTENCE_END = re.compile(r"[.!?;:]\s*$|\n\s*$")

Judge = Callable[[str, int], Awaitable[Judgement]]
"""Judges ``(text, choice index)``; the pipeline binds it to the output rails."""


def chunk_text(choice: dict[str, Any]) -> str:
    """The text a streamed choice adds: content, text-completion text, tool-call arguments."""
    if "text" in choice:
        return str(choice.get("text") or "")
    delta = choice.get("delta") or {}
    parts = [str(delta.get("content") or "")]
    for call in delta.get("tool_calls") or []:
        parts.append(str((call.get("function") or {}).get("arguments") or ""))
    return "".join(parts)


@dataclass
class ChoiceGuard:
    """The held and released chunks of one choice, and when to judge them."""

    settings: Streaming
    held: list[dict[str, Any]] = field(default_factory=list)
    """Upstream chunks (each carrying only this choice) not released yet."""
    unchecked: int = 0
    released: list[str] = field(default_factory=list)
    """Texts of released chunks, for the context of later checks."""
    stopped: bool = False
    finished: bool = False
    """The upstream sent this choice's finish chunk."""

    def hold(self, chunk: dict[str, Any]) -> None:
        self.held.append(chunk)
        self.unchecked += 1
        if chunk["choices"][0].get("finish_reason") is not None:
            self.finished = True

    def check_due(self) -> bool:
        if self.unchecked < self.settings.chunk_tokens:
            return False
        if self.settings.check_at == "every_chunk":
            return True
        return bool(SENTENCE_END.search(self.held_text())) or (
            self.unchecked >= 4 * self.settings.chunk_tokens
        )

    def held_text(self) -> str:
        return "".join(chunk_text(c["choices"][0]) for c in self.held)

    def window(self, whole: bool = False) -> tuple[str, int]:
        """The text to judge, and where the held part starts in it."""
        keep = len(self.released) if whole else self.settings.context_tokens
        context = "".join(self.released[-keep:]) if keep else ""
        return context + self.held_text(), len(context)

    def release(self, keep_back: int) -> list[dict[str, Any]]:
        """Hand out the held chunks except the last ``keep_back``."""
        cut = max(len(self.held) - keep_back, 0)
        out, self.held = self.held[:cut], self.held[cut:]
        self.released += [chunk_text(c["choices"][0]) for c in out]
        self.unchecked = 0
        return out


@dataclass
class StreamGuard:
    """Runs the chunks of one upstream stream through the output rails, per choice."""

    settings: Streaming
    judge: Judge
    guard_info: Callable[[], dict[str, Any]]
    choices: dict[int, ChoiceGuard] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    wants_usage: bool = False
    tagged: bool = False
    _head: dict[str, Any] = field(default_factory=dict)
    """id, object, created, model of the upstream's chunks."""

    def _choice(self, index: int) -> ChoiceGuard:
        if index not in self.choices:
            self.choices[index] = ChoiceGuard(self.settings)
        return self.choices[index]

    async def run(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for event in split_events(chunks):
                if event == DONE:
                    break
                for out in await self._on_event(event):
                    yield out
                if self.choices and all(c.stopped for c in self.choices.values()):
                    break  # every choice blocked: stop reading, so the upstream is closed
            else:
                raise UpstreamStreamBroken("the upstream ended the stream without [DONE]")
            for index, choice in sorted(self.choices.items()):
                for out in await self._finish(index, choice):
                    yield out
            if self.wants_usage and self.usage is not None:
                yield self._event({"choices": [], "usage": self.usage})
        except GuardError as exc:
            yield error_event(exc)
        yield DONE + b"\n\n"

    async def _on_event(self, event: bytes) -> list[bytes]:
        try:
            chunk = orjson.loads(event.removeprefix(b"data:").strip())
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict) or "error" in chunk:
            return [event + b"\n\n"]
        self._head = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        out: list[bytes] = []
        for choice in chunk.get("choices") or []:
            state = self._choice(int(choice.get("index", 0)))
            if state.stopped:
                continue
            state.hold({**self._head, "choices": [choice]})
            if state.check_due():
                out += await self._check(
                    int(choice.get("index", 0)), state, keep_back=self.settings.window_tokens
                )
        return out

    async def _check(
        self, index: int, state: ChoiceGuard, keep_back: int, whole: bool = False
    ) -> list[bytes]:
        """Judge the window (or the whole answer so far) and release what passed."""
        text, start = state.window(whole)
        judgement = await self.judge(text, index)
        if judgement.blocked:
            state.stopped = True
            state.held = []
            return [self._event({"choices": [self._stop(index)]})]
        if not judgement.redactions:
            return [self._event(chunk) for chunk in state.release(keep_back)]
        return self._release_redacted(index, state, judgement, text, start, keep_back)

    def _release_redacted(
        self,
        index: int,
        state: ChoiceGuard,
        judgement: Judgement,
        text: str,
        start: int,
        keep_back: int,
    ) -> list[bytes]:
        """Release the held text with its spans replaced, as one chunk.

        The cut moves back before any span that would straddle it, so a redacted span
        is never released in part.
        """
        lengths = [len(chunk_text(c["choices"][0])) for c in state.held]
        cut = max(len(state.held) - keep_back, 0)
        while cut > 0:
            end = start + sum(lengths[:cut])
            if not any(s < end < e for s, e, _ in judgement.redactions):
                break
            cut -= 1
        end = start + sum(lengths[:cut])
        piece = text[start:end]
        for s, e, replacement in sorted(judgement.redactions, reverse=True):
            if start <= s and e <= end:
                piece = piece[: s - start] + replacement + piece[e - start :]
        released = state.release(len(state.held) - cut)
        if not released:
            return []
        state.released[-len(released) :] = [piece] + [""] * (len(released) - 1)
        finish = released[-1]["choices"][0].get("finish_reason")
        return [self._event({"choices": [self._text_choice(index, piece, finish)]})]

    async def _finish(self, index: int, state: ChoiceGuard) -> list[bytes]:
        """The end of a choice: nothing more is held back; ``final_check`` judges it all."""
        if state.stopped or not (state.held or self.settings.final_check):
            return []
        return await self._check(index, state, keep_back=0, whole=self.settings.final_check)

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
