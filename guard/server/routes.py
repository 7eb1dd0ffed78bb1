"""HTTP routes. Thin: parse, route to a policy's pipeline, choose JSON or SSE."""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from guard.components.batching import oldest_model_call
from guard.errors import (
    GuardError,
    InvalidRequest,
    ModelCallStalled,
    ModelNotFound,
    PayloadTooLarge,
)
from guard.pipeline.context import RequestContext
from guard.protocol.messages import CHAT, COMPLETIONS
from guard.protocol.relay import Relay
from guard.protocol.responses import RESPONSES
from guard.protocol.schema import (
    ChatCompletionRequest,
    CompletionRequest,
    ModelRequest,
    ModerationRequest,
    ResponsesRequest,
)
from guard.server.admission import admit, admit_moderation, note_result, observe, observed_relay
from guard.server.middleware import record_of
from guard.server.moderation import moderate, moderation_inputs
from guard.server.state import GuardState

Schema = TypeVar("Schema", bound=BaseModel)
_STARTED = int(time.time())

log = logging.getLogger("guard")


class ORJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class RelayResponse(StreamingResponse):
    """An SSE response that closes the upstream stream however it ends."""

    def __init__(self, relay: Relay, headers: dict[str, str]):
        super().__init__(relay.events, media_type="text/event-stream", headers=headers)
        self._close_upstream = relay.aclose

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._close_upstream()


def guard_state(request: Request) -> GuardState:
    state: GuardState = request.app.state.guard
    return state


async def chat_completions(request: Request) -> Response:
    return await _generate(request, CHAT, ChatCompletionRequest)


async def completions(request: Request) -> Response:
    return await _generate(request, COMPLETIONS, CompletionRequest)


async def responses(request: Request) -> Response:
    return await _generate(request, RESPONSES, ResponsesRequest)


async def _generate(request: Request, path: str, schema: type[ModelRequest]) -> Response:
    state = guard_state(request)
    body = await read_json_object(request, state.settings.max_body_bytes)
    parsed = validated(schema, body)
    pipeline, route = admit(request, parsed.model)
    ctx = RequestContext(request.state.request_id, route.upstream_model, parsed.model)
    sent = observe(request, ctx, body, bool(parsed.stream), path)
    if parsed.stream:
        relay = observed_relay(request, await pipeline.stream(path, sent, ctx), body, path)
        headers = _guard_headers(pipeline.name, ctx)
        return RelayResponse(
            relay, {**headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
        )
    result = await pipeline.complete(path, body, ctx)
    note_result(request, result)
    return ORJSONResponse(result, headers=_guard_headers(pipeline.name, ctx))


def _guard_headers(policy: str, ctx: RequestContext) -> dict[str, str]:
    return {"x-guard-policy": policy, "x-guard-verdict": ctx.verdict}


async def moderations(request: Request) -> Response:
    state = guard_state(request)
    body = await read_json_object(request, state.settings.max_body_bytes)
    parsed = validated(ModerationRequest, body)
    texts = moderation_inputs(parsed.input)
    model = parsed.model
    pipeline = admit_moderation(request, model, state.settings.moderation_policy)
    result = await moderate(pipeline, texts, model or pipeline.name, request.state.request_id)
    return ORJSONResponse(result, headers={"x-guard-policy": pipeline.name})


async def list_models(request: Request) -> Response:
    record = record_of(request)
    names, has_wildcard = record.runtime.model_names(record.key)
    if has_wildcard:
        names += [name for name in await _upstream_models(request) if name not in names]
    return ORJSONResponse({"object": "list", "data": [_model(name) for name in names]})


async def retrieve_model(request: Request) -> Response:
    """One model this caller may use (as ``/v1/models`` lists them); 404 for any other."""
    name = request.path_params["model"]
    record = record_of(request)
    names, has_wildcard = record.runtime.model_names(record.key)
    if name not in names and not (has_wildcard and name in await _upstream_models(request)):
        raise ModelNotFound(
            f"The model '{name}' does not exist or you do not have access to it.",
            param="model",
        )
    return ORJSONResponse(_model(name))


async def _upstream_models(request: Request) -> list[str]:
    """The upstream's model names, which a ``*`` policy serves; none when it is down."""
    try:
        listed = await guard_state(request).upstream.get_json("/v1/models", timeout_s=5.0)
    except GuardError:
        return []  # the explicitly named models are still worth listing
    data = listed.get("data")
    if not isinstance(data, list):
        return []
    return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _STARTED, "owned_by": "guard"}


async def livez(request: Request) -> Response:
    """200 while the event loop answers and no in-process model call has stalled. It asks
    the upstream nothing, so a liveness probe on it never restarts guard because vLLM is
    down (``/health`` tells that)."""
    stalled = _stalled_model_call(guard_state(request).settings.stalled_model_call_s)
    if stalled is not None:
        return ORJSONResponse(stalled.to_dict(), status_code=stalled.status_code)
    return ORJSONResponse({"status": "alive"})


async def health(request: Request) -> Response:
    """200 when guard and its upstream are both up and no in-process model call has
    stalled; 503 with the reason otherwise. Anyone may call it, so it names no address:
    the upstream's URL is in the server log."""
    state = guard_state(request)
    stalled = _stalled_model_call(state.settings.stalled_model_call_s)
    if stalled is not None:
        return ORJSONResponse(stalled.to_dict(), status_code=stalled.status_code)
    try:
        await state.upstream.get_json("/health", timeout_s=5.0)
    except GuardError as exc:
        return ORJSONResponse(exc.to_dict(), status_code=503)
    return ORJSONResponse({"status": "ok", "upstream": "ok"})


class _StallLog:
    """Logs each stalled call once: the probes ask every few seconds."""

    began: float | None = None

    @classmethod
    def once(cls, began: float, message: str) -> None:
        if began != cls.began:
            cls.began = began
            log.error("%s", message)


def _stalled_model_call(limit_s: float) -> ModelCallStalled | None:
    """The error to answer with while a model call has run past ``limit_s`` (logged once
    per call)."""
    began = oldest_model_call()
    if began is None:
        return None
    running_s = time.monotonic() - began
    if running_s <= limit_s:
        return None
    stalled = ModelCallStalled(
        f"a model call has run for {running_s:.0f} s (GUARD_STALLED_MODEL_CALL_S is "
        f"{limit_s:g}): in-process rails cannot run until guard restarts"
    )
    _StallLog.once(began, stalled.message)
    return stalled


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return data


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")


def validated(schema: type[Schema], body: dict[str, Any]) -> Schema:
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        # The most specific error: of a union, the branch that got furthest in.
        error = max(exc.errors(), key=lambda e: len(e["loc"]))
        loc = error["loc"]
        param = _param_path(body, loc[:-1] if error["type"] == "missing" else loc)
        if error["type"] == "missing":
            param = f"{param}.{loc[-1]}".lstrip(".")
        message = error["msg"].removeprefix("Value error, ")
        raise InvalidRequest(
            f"Invalid value for '{param}': {message}.", param=param, code="invalid_value"
        ) from exc


def _param_path(body: Any, loc: tuple[int | str, ...]) -> str:
    """``messages[0].role`` from an error location, leaving out union branch names."""
    path = ""
    for part in loc:
        if isinstance(body, dict) and part in body:
            path += f".{part}"
        elif isinstance(body, list) and isinstance(part, int) and part < len(body):
            path += f"[{part}]"
        else:
            continue
        body = body[part]
    return path.lstrip(".")


ROUTES = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/responses", responses, methods=["POST"]),
    Route("/v1/moderations", moderations, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/livez", livez, methods=["GET"]),
]
