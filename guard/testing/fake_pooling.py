"""The fake upstream's embeddings and vLLM pooling family, in vLLM 0.32's shapes.

Answers are deterministic functions of the text, so a test can compute what it
expects: an embedding is ``dimensions`` (default 8) floats made from a hash of the
text (``base64``: little-endian float32, as vLLM and OpenAI send it); a score is the
share of the second text's words found in the first; a token is a word, its id a
hash of it. ``usage`` counts words. The model ``reject`` gets a 400 in vLLM's shape.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Answer = Callable[[dict[str, Any]], dict[str, Any]]
Record = Callable[[Request, dict[str, Any]], None]
DIMENSIONS = 8


def embedding_of(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """The fake's vector for ``text``: floats in [-1, 1) from its sha256, float32-exact."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 128) / 128 for i in range(dimensions)]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *raw)))


def token_id(word: str) -> int:
    return int.from_bytes(hashlib.sha256(word.encode()).digest()[:2], "little")


def pooling_routes(record: Record) -> list[Route]:
    """The routes, each logging its request with ``record`` before answering."""

    def route(path: str, answer: Answer) -> Route:
        async def endpoint(request: Request) -> Response:
            body = orjson.loads(await request.body())
            record(request, body)
            if body.get("model") == "reject":
                return _json(_VLLM_ERROR, 400)
            return _json(answer(body))

        handler: Callable[[Request], Awaitable[Response]] = endpoint
        return Route(path, handler, methods=["POST"])

    return [
        route("/v1/embeddings", _embeddings),
        route("/pooling", _pooling),
        route("/score", _score),
        route("/v1/score", _score),
        *(route(path, _rerank) for path in ("/rerank", "/v1/rerank", "/v2/rerank")),
        route("/tokenize", _tokenize),
        route("/detokenize", _detokenize),
    ]


_VLLM_ERROR = {
    "error": {
        "message": "This model's maximum context length is 512 tokens.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
}


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    texts = _inputs(body)
    dimensions = int(body.get("dimensions") or DIMENSIONS)
    data = []
    for index, text in enumerate(texts):
        vector = embedding_of(text, dimensions)
        encoded: list[float] | str = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"index": index, "object": "embedding", "embedding": encoded})
    return {**_head("embd", body), "data": data, "usage": _usage(texts)}


def _pooling(body: dict[str, Any]) -> dict[str, Any]:
    texts = _inputs(body)
    data = [
        {"index": index, "object": "pooling", "data": embedding_of(text)}
        for index, text in enumerate(texts)
    ]
    return {**_head("pool", body), "data": data, "usage": _usage(texts)}


def _score(body: dict[str, Any]) -> dict[str, Any]:
    for first, second in (("queries", "documents"), ("queries", "items"), ("data_1", "data_2")):
        if first in body and second in body:
            break
    else:
        first, second = "text_1", "text_2"
    lefts, rights = _score_texts(body.get(first)), _score_texts(body.get(second))
    paired = lefts * len(rights) if len(lefts) == 1 else lefts  # one query: each document
    data = [
        {"index": index, "object": "score", "score": _overlap(left, right)}
        for index, (left, right) in enumerate(zip(paired, rights, strict=False))
    ]
    return {**_head("score", body), "data": data, "usage": _usage(lefts + rights)}


def _rerank(body: dict[str, Any]) -> dict[str, Any]:
    [query] = _score_texts(body.get("query"))
    documents = _score_texts(body.get("documents"))
    scores = [_overlap(query, text) for text in documents]
    ranked = sorted(range(len(documents)), key=lambda index: -scores[index])
    results = [
        {
            "index": index,
            "document": {"text": documents[index], "multi_modal": None},
            "relevance_score": scores[index],
        }
        for index in ranked
    ]
    top = int(body.get("top_n") or 0)
    words = sum(len(t.split()) for t in [query, *documents])
    return {
        "id": "score-fake-1",
        "model": body.get("model"),
        "usage": {"prompt_tokens": words, "total_tokens": words},
        "results": results[:top] if top else results,
    }


def _tokenize(body: dict[str, Any]) -> dict[str, Any]:
    text = body["prompt"] if "prompt" in body else " ".join(_message_texts(body["messages"]))
    words = text.split()
    strs = words if body.get("return_token_strs") else None
    return {
        "count": len(words),
        "max_model_len": 2048,
        "tokens": [token_id(word) for word in words],
        "token_strs": strs,
    }


def _detokenize(body: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": " ".join(f"tok{token}" for token in body["tokens"])}


def _head(prefix: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{prefix}-fake-1",
        "object": "list",
        "created": int(time.time()),
        "model": body.get("model"),
    }


def _inputs(body: dict[str, Any]) -> list[str]:
    """One text per item to embed (a text, token ids, a conversation): vLLM reads
    ``messages`` when there are any, else ``input``."""
    value = body["messages"] if body.get("messages") is not None else body["input"]
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(item, int | dict) for item in value):
        value = [value]  # one item: token ids, or a conversation
    return [_text(item) for item in value]


def _text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if item and all(isinstance(message, dict) for message in item):
        return " ".join(_message_texts(item))
    return " ".join(str(token) for token in item)


def _message_texts(messages: list[dict[str, Any]]) -> list[str]:
    texts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
    return texts


def _score_texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    texts = []
    for item in items:
        if isinstance(item, dict):
            texts.append(" ".join(_message_texts([item])))
        else:
            texts.append(str(item))
    return texts


def _overlap(first: str, second: str) -> float:
    words = second.lower().split()
    found = set(first.lower().split())
    return sum(word in found for word in words) / len(words) if words else 0.0


def _usage(texts: list[str]) -> dict[str, Any]:
    words = sum(len(text.split()) for text in texts)
    return {
        "prompt_tokens": words,
        "total_tokens": words,
        "completion_tokens": 0,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")
