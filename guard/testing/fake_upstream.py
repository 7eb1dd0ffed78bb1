"""A synthetic OpenAI-compatible upstream, for tests and benchmarks.

It is a real HTTP app (serve it with uvicorn), not a mock: guard talks to it
exactly as to vLLM. Its answers are scripted:

* the answer is ``tokens`` words (``"tok "`` each) streamed ``pace_s`` apart (on a fixed
  schedule, so the pace holds over a long answer), or,
  when the last user message (or prompt) contains ``say:``, exactly the text after
  the last ``say:``, one word (with its trailing space) per token;
* in a plain (non-streamed) answer, ``a | b | c`` gives choice i the i-th option
  (cycling), so that ``n`` samples can differ; with ``continue_final_message`` the
  answer continues the option that the final assistant message begins;
* ``stream_options.continuous_usage_stats`` (a vLLM extension) puts usage in every chunk;
* logprobs give every token -0.1, and ``top_logprobs`` lists it first, then
  ``"Maybe"`` at -4.0;
* ``max_tokens`` cuts the answer short with ``finish_reason: "length"``;
* embeddings and vLLM's pooling family (``/v1/embeddings``, ``/pooling``, ``/score``,
  ``/rerank``, ``/tokenize``, ``/detokenize``...) answer in vLLM's shapes, from the
  text (``guard.testing.fake_pooling``); ``/classify`` leans to "unsafe" for a text
  containing it;
* a model name picks a failure: ``reject`` (400 with vLLM's error shape),
  ``crash`` (500), ``slow`` (waits ``slow_s`` before answering), ``die-mid-stream``
  (drops the connection after two chunks), ``no-done`` (ends without ``[DONE]``),
  ``giant-event`` (its third chunk is one event of ``giant_event_bytes``, sent in
  64 KiB pieces, its text all ``x``; then the stream goes on as usual).

``POST /v1/responses`` answers the same script (the last user message of ``input``) as
vLLM 0.32 does: a reasoning item, a message, a function call, plain or as its event
stream (created, in progress, each item added -> deltas -> done, completed), with
``max_output_tokens`` making the response ``incomplete``; the failure models fail it too
(``no-done`` ends the stream without its terminal event).

Every request received is logged in ``app.state.received`` (a ``RequestLog``: the last
1,000, and a count that only goes up), and each stream's fate in ``app.state.streams``
("finished" or "cancelled").

Run it alone: ``python -m guard.testing.fake_upstream --port 9000 --tokens 64 --pace-ms 5``
(``--ttft-ms`` adds a prefill delay before the first word).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from guard.testing.answers import Answer, delta, message, script, tokenize
from guard.testing.fake_pooling import pooling_routes
from guard.testing.fake_responses import last_user_text, response, response_stream

CHAT = "chat.completion"
TEXT = "text_completion"


class RequestLog:
    """The requests received: the newest ``keep`` of them, and ``count``, every one ever.

    A test takes ``mark = log.count`` and later ``log.since(mark)``; if requests it wants
    have already been dropped, ``since`` raises rather than answering with too few.
    """

    def __init__(self, keep: int = 1000):
        self.count = 0
        self._kept: deque[dict[str, Any]] = deque(maxlen=keep)

    def append(self, entry: dict[str, Any]) -> None:
        self._kept.append(entry)
        self.count += 1

    def since(self, mark: int) -> list[dict[str, Any]]:
        new = self.count - mark
        if new > len(self._kept):
            raise LookupError(f"{new} requests since the mark, only {len(self._kept)} kept")
        return list(self._kept)[len(self._kept) - new :] if new else []

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._kept[index]


def create_fake_upstream(
    tokens: int = 8,
    pace_s: float = 0.0,
    slow_s: float = 5.0,
    first_token_s: float = 0.0,
    chunk_chars: int | None = None,
    giant_event_bytes: int = 1024 * 1024,
) -> Starlette:
    """``chunk_chars``: stream tokens of at most that many characters (subwords), not
    words. ``giant_event_bytes``: the size of the ``giant-event`` model's big event."""

    async def chat(request: Request) -> Response:
        return await _answer(request, CHAT)

    async def completions(request: Request) -> Response:
        return await _answer(request, TEXT)

    async def _answer(request: Request, kind: str) -> Response:
        body = orjson.loads(await request.body())
        app.state.received.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": body}
        )
        model = body.get("model", "")
        if (failure := _failure(model)) is not None:
            return failure
        if model == "slow":
            await asyncio.sleep(slow_s)
        answers = _answers(body, kind, tokens, chunk_chars)
        if first_token_s:
            await asyncio.sleep(first_token_s)  # prefill
        if body.get("stream"):
            return StreamingResponse(
                _stream(app, body, kind, answers, pace_s, giant_event_bytes),
                media_type="text/event-stream",
            )
        await asyncio.sleep(pace_s * max(len(a.tokens) for a in answers))
        return _json(_completion(body, kind, answers))

    async def responses(request: Request) -> Response:
        body = orjson.loads(await request.body())
        app.state.received.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": body}
        )
        model = body.get("model", "")
        if (failure := _failure(model)) is not None:
            return failure
        if model == "slow":
            await asyncio.sleep(slow_s)
        text = last_user_text(body.get("input"))
        answer = tokenize(script(text, 0, tokens), body.get("max_output_tokens"), chunk_chars)
        if first_token_s:
            await asyncio.sleep(first_token_s)  # prefill
        if body.get("stream"):
            return StreamingResponse(
                response_stream(app, body, answer, pace_s), media_type="text/event-stream"
            )
        await asyncio.sleep(pace_s * len(answer.tokens))
        return _json(response(body, answer, "resp_fake-1"))

    async def classify(request: Request) -> Response:
        """Two classes; texts containing "unsafe" lean to the second."""
        body = orjson.loads(await request.body())
        app.state.received.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": body}
        )
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for index, text in enumerate(texts):
            probs = [0.2, 0.8] if "unsafe" in text else [0.9, 0.1]
            label = "unsafe" if probs[1] > probs[0] else "safe"
            data.append({"index": index, "label": label, "probs": probs, "num_classes": 2})
        return _json(
            {"id": "classify-1", "object": "list", "model": body.get("model"), "data": data}
        )

    def record(request: Request, body: dict[str, Any]) -> None:
        app.state.received.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": body}
        )

    async def models(request: Request) -> Response:
        return _json(
            {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/classify", classify, methods=["POST"]),
            *pooling_routes(record),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    app.state.received = RequestLog()
    app.state.streams = deque(maxlen=1000)
    return app


def _failure(model: str) -> Response | None:
    """The answer of a model name that picks a failure before generation."""
    if model == "reject":
        return _json(
            {
                "object": "error",
                "message": "This model's maximum context length is 2048 tokens.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            },
            400,
        )
    if model == "crash":
        return _json(
            {
                "error": {
                    "message": "engine died",
                    "type": "InternalServerError",
                    "param": None,
                    "code": 500,
                }
            },
            500,
        )
    return None


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _answers(body: dict[str, Any], kind: str, tokens: int, chunk_chars: int | None) -> list[Answer]:
    """Each choice's scripted answer, tokenised and cut at ``max_tokens``."""
    if kind == CHAT:
        messages = body["messages"]
        users = [m for m in messages if m.get("role") == "user"] or messages
        last = users[-1].get("content") or ""
        text = last if isinstance(last, str) else ""
    else:
        prompt = body.get("prompt", "")
        text = prompt if isinstance(prompt, str) else ""
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    prefill = None
    if kind == CHAT and body.get("continue_final_message"):
        prefill = str(body["messages"][-1].get("content") or "")
    return [
        tokenize(script(text, index, tokens, prefill), limit, chunk_chars)
        for index in range(body.get("n") or 1)
    ]


def _finish(body: dict[str, Any], answer: Answer) -> str:
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    if limit is not None and len(answer.tokens) >= limit:
        return "length"
    return "tool_calls" if answer.call else "stop"


def _usage(body: dict[str, Any], generated: int) -> dict[str, int]:
    prompt = len(orjson.dumps(body.get("messages", body.get("prompt", "")))) // 4
    return {
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
    }


def _logprobs(kind: str, words: list[str], top: int) -> dict[str, Any]:
    if kind == TEXT:
        return {
            "tokens": words,
            "token_logprobs": [-0.1] * len(words),
            "top_logprobs": [{w: -0.1, "Maybe": -4.0} for w in words] if top else None,
            "text_offset": list(range(len(words))),
        }
    alternatives = [("Maybe", -4.0)]
    return {
        "content": [
            {
                "token": w,
                "logprob": -0.1,
                "bytes": list(w.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode())}
                    for t, lp in [(w, -0.1), *alternatives][:top]
                ],
            }
            for w in words
        ]
    }


def _completion(body: dict[str, Any], kind: str, answers: list[Answer]) -> dict[str, Any]:
    wants_logprobs = bool(body.get("logprobs"))
    top = int(body.get("top_logprobs") or 0) if kind == CHAT else int(body.get("logprobs") or 0)
    choices = []
    for index, answer in enumerate(answers):
        words = [token.text for token in answer.tokens if token.field == "content"]
        choice: dict[str, Any] = {
            "index": index,
            "finish_reason": _finish(body, answer),
            "logprobs": _logprobs(kind, words, top) if wants_logprobs else None,
            "stop_reason": None,
        }
        if kind == CHAT:
            choice["message"] = message(answer)
        else:
            choice["text"] = answer.content
        choices.append(choice)
    return {
        "id": "fake-1",
        "object": kind,
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": choices,
        "service_tier": None,
        "system_fingerprint": None,
        "usage": _usage(body, sum(len(a.tokens) for a in answers)),
        "prompt_logprobs": None,
        "prompt_token_ids": None,
        "kv_transfer_params": None,
    }


async def _stream(
    app: Starlette,
    body: dict[str, Any],
    kind: str,
    answers: list[Answer],
    pace_s: float,
    giant_event_bytes: int,
) -> AsyncIterator[bytes]:
    chunk_kind = "chat.completion.chunk" if kind == CHAT else TEXT
    head = {
        "id": "fake-1",
        "object": chunk_kind,
        "created": int(time.time()),
        "model": body.get("model"),
    }
    include_usage = (body.get("stream_options") or {}).get("include_usage")
    continuous_usage = include_usage and body["stream_options"].get("continuous_usage_stats")
    outcome = "cancelled"
    generated = 0
    try:
        if kind == CHAT:
            for index in range(len(answers)):
                yield _event(
                    {
                        **head,
                        "choices": [
                            {
                                "index": index,
                                "finish_reason": None,
                                "delta": {"role": "assistant", "content": ""},
                            }
                        ],
                    }
                )
        clock = asyncio.get_running_loop()
        start = clock.time()
        for position in range(max(len(a.tokens) for a in answers)):
            if pace_s:
                # Token i is due at start + (i + 1) x pace: sleep's overshoot does not add up.
                await asyncio.sleep(max(0.0, start + (position + 1) * pace_s - clock.time()))
            if body.get("model") == "die-mid-stream" and position == 2:
                raise ConnectionAbortedError("the fake upstream drops this stream on purpose")
            if body.get("model") == "giant-event" and position == 2:
                for piece in _giant_event(head, kind, giant_event_bytes):
                    yield piece
            for index, answer in enumerate(answers):
                if position >= len(answer.tokens):
                    continue
                token = answer.tokens[position]
                part: dict[str, Any] = (
                    {"delta": delta(token)} if kind == CHAT else {"text": token.text}
                )
                chunk = {**head, "choices": [{"index": index, "finish_reason": None, **part}]}
                generated += 1
                if continuous_usage:
                    chunk["usage"] = _usage(body, generated)
                yield _event(chunk)
        for index, answer in enumerate(answers):
            part = {"delta": {}} if kind == CHAT else {"text": ""}
            finish = _finish(body, answer)
            yield _event({**head, "choices": [{"index": index, "finish_reason": finish, **part}]})
        if include_usage:
            yield _event({**head, "choices": [], "usage": _usage(body, generated)})
        if body.get("model") != "no-done":
            yield b"data: [DONE]\n\n"
        outcome = "finished"
    finally:
        app.state.streams.append(outcome)


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _giant_event(head: dict[str, Any], kind: str, size: int) -> list[bytes]:
    """One chunk event of ``size`` bytes (its text all ``x``), in 64 KiB pieces."""
    part: dict[str, Any] = {"delta": {"content": "x"}} if kind == CHAT else {"text": "x"}
    event = _event({**head, "choices": [{"index": 0, "finish_reason": None, **part}]})
    before, after = event.split(b'"x"')
    padded = before + b'"' + b"x" * max(1, size - len(event) + 1) + b'"' + after
    step = 64 * 1024
    return [padded[i : i + step] for i in range(0, len(padded), step)]


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="a synthetic OpenAI-compatible upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--tokens", type=int, default=64, help="words per answer")
    parser.add_argument("--pace-ms", type=float, default=0.0, help="delay between words")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first word")
    parser.add_argument(
        "--giant-event-bytes", type=int, default=1024 * 1024, help="the giant-event model's event"
    )
    args = parser.parse_args()
    app = create_fake_upstream(
        args.tokens,
        args.pace_ms / 1000,
        first_token_s=args.ttft_ms / 1000,
        giant_event_bytes=args.giant_event_bytes,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
