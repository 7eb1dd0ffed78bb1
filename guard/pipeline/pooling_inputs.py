"""Reading embeddings and vLLM's pooling family (pooling, classify, score, rerank,
tokenize): every text such a request carries, read as chat messages where it holds
messages (``guard.pipeline.input_reader``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from guard.components.specs import PartKind
from guard.errors import InvalidRequest
from guard.pipeline.input_reader import InputPlan, Reader
from guard.pipeline.texts import KEY, Path


class PoolingReader(Reader):
    """Reads any request ``Reader`` reads, and the pooling family's."""

    def pooling(self, body: Mapping[str, Any]) -> None:
        """Embeddings, pooling, classify, score, rerank, tokenize, detokenize: each
        request shape of vLLM 0.32 (``vllm/entrypoints/pooling``, ``serve/tokenize``).
        vLLM reads ``messages`` when a request has both it and ``input``; guard judges
        both."""
        chat_fields = {key: body[key] for key in _CHAT_FIELDS if key in body}
        messages = body.get("messages")
        if _is_conversation(messages):
            chat_fields["messages"] = messages
        elif isinstance(messages, list):
            for index, conversation in enumerate(messages):
                self.conversation(("messages", index), conversation)
        self.chat(chat_fields)
        if "prompt" in body:
            self.completion({"prompt": body["prompt"]})
        if "input" in body:
            self.pooling_input(body["input"])
        for key in _SCORE_FIELDS:
            if key in body:
                self.score_input(key, body[key])
        if isinstance(body.get("instruction"), str):
            self.add("instruction", "input", [(body["instruction"], ("instruction",))])
        if body.get("tokens") is not None:
            self.unreadable("tokens", "token_ids", "token ids")
        if body.get("data") is not None:
            self.unreadable("data", "plugin_data", "data for a pooling plugin")

    def pooling_input(self, value: Any) -> None:
        """``input``: a text, texts, token ids, a conversation or conversations."""
        if isinstance(value, str):
            self.add("input", "input", [(value, ("input",))])
            return
        if not isinstance(value, list):
            raise InvalidRequest(
                "'input' must be a text, a list of texts, token ids or messages.", param="input"
            )
        if _is_token_ids(value):
            self.unreadable("input", "token_ids", "an input given as token ids")
            return
        if _is_conversation(value):
            self.conversation(("input",), value)
            return
        for index, item in enumerate(value):
            where = f"input[{index}]"
            if isinstance(item, str):
                self.add(where, "input", [(item, ("input", index))])
            elif isinstance(item, list) and _is_token_ids(item):
                self.unreadable(where, "token_ids", "an input given as token ids")
            elif isinstance(item, list) and _is_conversation(item):
                self.conversation(("input", index), item)
            else:
                raise InvalidRequest(
                    f"{where} is neither text, token ids nor a list of messages.", param=where
                )

    def conversation(self, base: tuple[str, *tuple[int, ...]], messages: Any) -> None:
        """A list of chat messages at ``base``, read as chat messages are; each part is
        named and located at ``base`` (``input[2]``) instead of ``messages``."""
        name = base[0] + "".join(f"[{step}]" for step in base[1:])
        if not _is_conversation(messages):
            raise InvalidRequest(f"{name} is not a list of messages.", param=name)
        sub = Reader(InputPlan(), self.inputs)
        try:
            sub.chat({"messages": messages})
        except InvalidRequest as exc:
            if not exc.param:
                raise
            param = name + exc.param.removeprefix("messages")
            message = exc.message.replace(exc.param, param)
            raise InvalidRequest(message, param=param, code=exc.code) from exc
        for part in sub.plan.parts:
            segments = tuple(
                replace(s, path=(*base, *s.path[1:]) if s.path != KEY else KEY)
                for s in part.segments
            )
            where = name + part.where.removeprefix("messages")
            self.plan.parts.append(replace(part, where=where, segments=segments))
        for note in sub.plan.unjudged:
            field_name = name + note["field"].removeprefix("messages")
            self.plan.unjudged.append({**note, "field": field_name})

    def score_input(self, key: str, value: Any) -> None:
        """A score's or rerank's query or documents: a text, ``{"content": [parts]}``, or a
        list of those."""
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            where = key if index is None else f"{key}[{index}]"
            path: Path = (key,) if index is None else (key, index)
            kind: PartKind = "documents" if key == "documents" else "input"
            if isinstance(item, str):
                self.add(where, kind, [(item, path)])
            elif isinstance(item, Mapping) and "content" in item:
                pieces = self.content(f"{where}.content", item["content"], (*path, "content"))
                self.add(where, kind, pieces)
            else:
                raise InvalidRequest(
                    f"{where} must be a text or an object with 'content' parts.", param=where
                )


_CHAT_FIELDS = (
    "kv_transfer_params",
    "ec_transfer_params",
    "chat_template",
    "chat_template_kwargs",
    "tools",
)
"""Fields of pooling requests that mean what they mean on a chat request."""
_SCORE_FIELDS = (
    "query", "queries", "documents", "items", "data_1", "data_2", "text_1", "text_2"
)  # fmt: skip
"""The texts a score or rerank request pairs (vLLM's ``ScoreInput`` fields)."""


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, Mapping) for m in value)


def _is_token_ids(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(item, int) for item in value)
