"""What routes record about a request once the gate let it in: which policy serves it
(routing by key, then by name), its context, and its usage, for ``Operations.finish``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request

from guard.errors import InvalidRequest
from guard.pipeline.context import RequestContext
from guard.pipeline.runner import Pipeline
from guard.policy.models import WILDCARD
from guard.policy.routing import Route
from guard.protocol.relay import Relay
from guard.protocol.responses import RESPONSES, event_payload
from guard.server.middleware import record_of
from guard.server.moderation import choose_pipeline


def admit(request: Request, model: str) -> tuple[Pipeline, Route]:
    """Route ``model`` for this caller (by key, then by name); raises 404 or 403."""
    record = record_of(request)
    route = record.runtime.route(model, record.key)
    record.pipeline = record.runtime.pipelines[route.policy.policy.name]
    record.model = model
    record.model_entry = model if model in route.policy.policy.models else WILDCARD
    return record.pipeline, route


def admit_moderation(request: Request, model: str | None, configured: str | None) -> Pipeline:
    """The pipeline that moderates for this caller (``choose_pipeline``); raises 400
    when a key restricted to some models names none, 403 for one it may not use."""
    record = record_of(request)
    key = record.key
    if key is not None and model is None and not key.any_model:
        raise InvalidRequest(
            f"The API key '{key.name}' may use only some models: name one of them in 'model'.",
            param="model",
        )
    if key is not None and model is not None:
        key.check_model(model)
    runtime = record.runtime
    pipeline = choose_pipeline(
        model, runtime.policies, runtime.pipelines, configured, key.policy if key else None
    )
    if key is not None:
        key.check_policy(pipeline.name, model)
    record.pipeline, record.model = pipeline, model or ""
    record.model_entry = model if model in pipeline.loaded.policy.models else WILDCARD
    return pipeline


def observe(
    request: Request, ctx: RequestContext, body: dict[str, Any], stream: bool, path: str
) -> dict[str, Any]:
    """Attach the request's context; returns the body to give the pipeline.

    A chat or completions stream is always asked for usage, to count its tokens;
    ``observed_relay`` removes the usage chunk again when the client did not ask for it.
    A Responses stream reports usage in its last event anyway.
    """
    record = record_of(request)
    assert record.pipeline is not None
    record.ctx, record.body, record.stream = ctx, body, stream
    policy = record.pipeline.loaded.policy
    shadow = (record.key.shadow if record.key else None) or policy.shadow
    record.shadow = record.runtime.pipelines[shadow] if shadow is not None else None
    ctx.trace.keep_answers = record.shadow is not None or policy.audit.include_text
    ctx.trace.tracer = request.app.state.guard.tracer
    if not stream or path == RESPONSES or _wants_usage(body):
        return body
    return {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}


def observed_relay(request: Request, relay: Relay, body: dict[str, Any], path: str) -> Relay:
    record = record_of(request)
    wanted = _wants_usage(body)

    async def events() -> AsyncIterator[bytes]:
        async for event in relay.events:
            if path == RESPONSES:
                if b'"usage"' in event and event.startswith(b"event: response."):
                    response = (event_payload(event) or {}).get("response")
                    if isinstance(response, dict) and isinstance(response.get("usage"), dict):
                        record.usage = response["usage"]
                yield event
                continue
            if b'"usage"' in event and event.startswith(b"data: {"):
                chunk = orjson.loads(event[6:])
                if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                    record.usage = chunk["usage"]
                    if not wanted and not chunk.get("choices"):
                        continue
            yield event

    return Relay(events(), relay.aclose)


def note_result(request: Request, result: dict[str, Any]) -> None:
    usage = result.get("usage")
    record_of(request).usage = usage if isinstance(usage, dict) else None


def _wants_usage(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))
