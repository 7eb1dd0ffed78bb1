"""The fake upstream's ``/v1/responses``: a scripted answer as vLLM 0.32 shapes a Response
object and its event stream (event order and fields from vllm/entrypoints/openai/responses).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette

from guard.testing.answers import Answer, Token


def last_user_text(items: Any) -> str:
    """The text of the last user message of a Responses ``input`` (a string, or items)."""
    if isinstance(items, str):
        return items
    users = [i for i in items or [] if isinstance(i, dict) and i.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _response_items(answer: Answer, wants_logprobs: bool) -> list[dict[str, Any]]:
    """The output items of a finished answer: reasoning, message, function call."""
    items: list[dict[str, Any]] = []
    if answer.reasoning:
        items.append(
            {
                "id": "rs_fake-1",
                "summary": [],
                "type": "reasoning",
                "content": [{"text": answer.reasoning, "type": "reasoning_text"}],
                "encrypted_content": None,
                "status": "completed",
            }
        )
    if answer.content:
        words = [t.text for t in answer.tokens if t.field == "content"]
        logprobs = [
            {"token": w, "logprob": -0.1, "bytes": list(w.encode()), "top_logprobs": []}
            for w in words
        ]
        items.append(
            {
                "id": "msg_fake-1",
                "content": [
                    {
                        "annotations": [],
                        "text": answer.content,
                        "type": "output_text",
                        "logprobs": logprobs if wants_logprobs else None,
                    }
                ],
                "role": "assistant",
                "status": "completed",
                "type": "message",
                "phase": None,
            }
        )
    if answer.call is not None:
        items.append(
            {
                "arguments": answer.call[1],
                "call_id": "call_fake-1",
                "name": answer.call[0],
                "type": "function_call",
                "id": "fc_fake-1",
                "namespace": None,
                "status": "completed",
            }
        )
    return items


def response(
    body: dict[str, Any],
    answer: Answer | None,
    response_id: str,
    status: str | None = None,
) -> dict[str, Any]:
    """A Response object; ``answer`` None: the in-progress one a stream starts with."""
    include = body.get("include") or []
    wants_logprobs = bool(body.get("top_logprobs")) or "message.output_text.logprobs" in include
    limit = body.get("max_output_tokens")
    if status is None:
        cut = answer is not None and limit is not None and len(answer.tokens) >= limit
        status = "incomplete" if cut else "completed"
    return {
        "id": response_id,
        "created_at": int(time.time()),
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata"),
        "model": body.get("model"),
        "object": "response",
        "output": _response_items(answer, wants_logprobs) if answer is not None else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "temperature": body.get("temperature") or 1.0,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p") or 1.0,
        "background": False,
        "max_output_tokens": limit or 2048,
        "max_tool_calls": None,
        "previous_response_id": body.get("previous_response_id"),
        "prompt": None,
        "reasoning": body.get("reasoning"),
        "service_tier": "auto",
        "status": status,
        "text": body.get("text"),
        "top_logprobs": body.get("top_logprobs"),
        "truncation": "disabled",
        "usage": _response_usage(body, answer) if answer is not None else None,
        "user": None,
        "presence_penalty": None,
        "frequency_penalty": None,
        "kv_transfer_params": None,
        "ec_transfer_params": None,
        "input_messages": None,
        "output_messages": None,
    }


def _response_usage(body: dict[str, Any], answer: Answer) -> dict[str, Any]:
    prompt = len(orjson.dumps([body.get("instructions"), body.get("input")])) // 4
    generated = len(answer.tokens)
    reasoning = sum(1 for t in answer.tokens if t.field == "reasoning")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "input_tokens_per_turn": [],
            "cached_tokens_per_turn": [],
        },
        "output_tokens": generated,
        "output_tokens_details": {
            "reasoning_tokens": reasoning,
            "tool_output_tokens": 0,
            "output_tokens_per_turn": [],
            "tool_output_tokens_per_turn": [],
        },
        "total_tokens": prompt + generated,
    }


async def response_stream(
    app: Starlette, body: dict[str, Any], answer: Answer, pace_s: float
) -> AsyncIterator[bytes]:
    """vLLM's simple (non-Harmony) event order: created, in_progress, then per output
    item added -> (part added) -> deltas -> done events -> item done; then completed."""
    events = _ResponseEvents(body)
    outcome = "cancelled"
    try:
        yield events.emit("response.created", response=events.started)
        yield events.emit("response.in_progress", response=events.started)
        clock = asyncio.get_running_loop()
        start = clock.time()
        for position, token in enumerate(answer.tokens):
            if pace_s:
                await asyncio.sleep(max(0.0, start + (position + 1) * pace_s - clock.time()))
            if body.get("model") == "die-mid-stream" and position == 2:
                raise ConnectionAbortedError("the fake upstream drops this stream on purpose")
            for event in events.token(token):
                yield event
        for event in events.close():
            yield event
        if body.get("model") != "no-done":
            final = response(body, answer, events.response_id)
            final["output"] = events.items
            yield events.emit("response.completed", response=final)
        outcome = "finished"
    finally:
        app.state.streams.append(outcome)


class _ResponseEvents:
    """The state of one streamed Response: the item open now and what it said."""

    def __init__(self, body: dict[str, Any]):
        self.body = body
        self.response_id = "resp_fake-1"
        self.started = response(body, None, self.response_id, status="in_progress")
        self.sequence = 0
        self.state: str | None = None
        self.text = ""
        self.name = ""
        self.items: list[dict[str, Any]] = []

    def emit(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    @property
    def where(self) -> dict[str, Any]:
        return {"output_index": len(self.items), "item_id": self._id}

    @property
    def _id(self) -> str:
        return {"reasoning": "rs_fake-1", "content": "msg_fake-1", "call": "fc_fake-1"}.get(
            self.state or "", ""
        )

    def token(self, token: Token) -> list[bytes]:
        state = "call" if token.field in ("call", "arguments") else token.field
        out: list[bytes] = []
        if state != self.state or token.field == "call":
            out += self.close()
            out += self.open(state, token.text if token.field == "call" else "")
            if token.field == "call":
                return out
        self.text += token.text
        at = self.where
        if state == "reasoning":
            out.append(
                self.emit("response.reasoning_text.delta", **at, content_index=0, delta=token.text)
            )
        elif state == "content":
            out.append(
                self.emit(
                    "response.output_text.delta",
                    **at,
                    content_index=0,
                    delta=token.text,
                    logprobs=[],
                )
            )
        else:
            out.append(self.emit("response.function_call_arguments.delta", **at, delta=token.text))
        return out

    def open(self, state: str, name: str) -> list[bytes]:
        self.state, self.text, self.name = state, "", name
        index = len(self.items)
        item: dict[str, Any]
        if state == "call":
            item = {
                "arguments": "",
                "call_id": "call_fake-1",
                "name": name,
                "type": "function_call",
                "id": self._id,
                "namespace": None,
                "status": "in_progress",
            }
            return [self.emit("response.output_item.added", output_index=index, item=item)]
        if state == "reasoning":
            item = {"id": self._id, "summary": [], "type": "reasoning", "status": "in_progress"}
            part: dict[str, Any] = {"text": "", "type": "reasoning_text"}
        else:
            item = {
                "id": self._id,
                "content": [],
                "role": "assistant",
                "status": "in_progress",
                "type": "message",
                "phase": None,
            }
            part = {"annotations": [], "text": "", "type": "output_text", "logprobs": []}
        return [
            self.emit("response.output_item.added", output_index=index, item=item),
            self.emit("response.content_part.added", **self.where, content_index=0, part=part),
        ]

    def close(self) -> list[bytes]:
        if self.state is None:
            return []
        at, text = self.where, self.text
        out: list[bytes]
        if self.state == "call":
            item: dict[str, Any] = {
                "arguments": text,
                "call_id": "call_fake-1",
                "name": self.name,
                "type": "function_call",
                "id": self._id,
                "namespace": None,
                "status": "completed",
            }
            out = [
                self.emit(
                    "response.function_call_arguments.done", **at, arguments=text, name=self.name
                )
            ]
        elif self.state == "reasoning":
            part: dict[str, Any] = {"text": text, "type": "reasoning_text"}
            item = {
                "id": self._id,
                "summary": [],
                "type": "reasoning",
                "content": [part],
                "encrypted_content": None,
                "status": "completed",
            }
            out = [
                self.emit("response.reasoning_text.done", **at, content_index=0, text=text),
                self.emit("response.content_part.done", **at, content_index=0, part=part),
            ]
        else:
            part = {"annotations": [], "text": text, "type": "output_text", "logprobs": None}
            item = {
                "id": self._id,
                "content": [part] if text else [],
                "role": "assistant",
                "status": "completed",
                "type": "message",
                "phase": None,
            }
            out = [
                self.emit(
                    "response.output_text.done", **at, content_index=0, text=text, logprobs=[]
                ),
                self.emit("response.content_part.done", **at, content_index=0, part=part),
            ]
        out.append(
            self.emit("response.output_item.done", output_index=at["output_index"], item=item)
        )
        self.items.append(item)
        self.state = None
        return out
