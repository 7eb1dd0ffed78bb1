"""The gate every ``/v1`` request passes: API key, concurrency limit, rate limit.

``Gate`` is ASGI middleware. It leases the current runtime (policies, keys,
pipelines) for the whole request, refuses what it must with an OpenAI-shaped
error (401, 429 with Retry-After), and hands the finished request to
``Operations.finish``. Routes record what they learn through the helpers below.
``/health`` and ``/metrics`` bypass it (``/metrics`` checks a key itself when
``GUARD_METRICS_AUTH`` is on).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guard.errors import Forbidden, GuardError, Unauthorized
from guard.keys import ApiKey, KeyRing
from guard.ops import Operations, RequestRecord
from guard.pipeline import Pipeline, RequestContext
from guard.policy import WILDCARD, Route
from guard.relay import Relay

_RECORD = "guard_record"


class Gate:
    def __init__(self, app: ASGIApp, ops: Operations):
        self.app = app
        self.ops = ops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        ops = self.ops
        state = scope.setdefault("state", {})
        record = RequestRecord(scope["path"], state.get("request_id", "-"), ops.runtimes.acquire())
        state[_RECORD] = record
        entered = False
        try:
            try:
                record.key = authenticate(record.runtime.keys, scope)
                ops.concurrency.enter()
                entered = True
                ops.metrics.in_flight.inc()
                if record.key is not None:
                    ops.limiter.admit(record.key)
            except GuardError as exc:
                record.error, record.status = exc, exc.status_code
                await error_response(exc)(scope, receive, send)
                return

            async def send_and_note(message: Message) -> None:
                if message["type"] == "http.response.start":
                    record.status = message["status"]
                await send(message)

            await self.app(scope, receive, send_and_note)
        except BaseException:
            record.status = record.status or 500
            raise
        finally:
            if entered:
                ops.concurrency.leave()
                ops.metrics.in_flight.dec()
            ops.finish(record)


def authenticate(keys: KeyRing, scope: Scope) -> ApiKey | None:
    """The caller's key, None when guard has no keys; raises ``Unauthorized``."""
    if not keys.enabled:
        return None
    header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized(
            "You didn't provide an API key. Provide it in an Authorization header "
            "using Bearer auth (Authorization: Bearer YOUR_KEY)."
        )
    key = keys.find(presented.strip())
    if key is None:
        raise Unauthorized("Incorrect API key provided.")
    return key


def error_response(exc: GuardError) -> Response:
    return Response(
        orjson.dumps(exc.to_dict()),
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers,
    )


def record_of(request: Request) -> RequestRecord:
    record: RequestRecord = request.scope["state"][_RECORD]
    return record


def note_error(request: Request, exc: GuardError) -> None:
    """Called by the error handler, so the record knows why the request failed."""
    record = request.scope.get("state", {}).get(_RECORD)
    if record is not None:
        record.error = exc


def admit(request: Request, model: str) -> tuple[Pipeline, Route]:
    """Route ``model`` for this caller (by key, then by name); raises 404 or 403."""
    record = record_of(request)
    route = record.runtime.route(model, record.key)
    record.pipeline = record.runtime.pipelines[route.policy.policy.name]
    record.model = model
    record.model_entry = model if model in route.policy.policy.models else WILDCARD
    return record.pipeline, route


def admit_moderation(request: Request, pipeline: Pipeline, model: str | None) -> None:
    record = record_of(request)
    if record.key is not None:
        record.key.check_allowed(model, pipeline.name)
    record.pipeline, record.model = pipeline, model or ""
    record.model_entry = model if model in pipeline.loaded.policy.models else WILDCARD


def observe(
    request: Request, ctx: RequestContext, body: dict[str, Any], stream: bool
) -> dict[str, Any]:
    """Attach the request's context; returns the body to give the pipeline.

    A stream is always asked for usage, to count its tokens; ``observed_relay``
    removes the usage chunk again when the client did not ask for it.
    """
    record = record_of(request)
    assert record.pipeline is not None
    record.ctx, record.body, record.stream = ctx, body, stream
    policy = record.pipeline.loaded.policy
    shadow = (record.key.shadow if record.key else None) or policy.shadow
    record.shadow = record.runtime.pipelines[shadow] if shadow is not None else None
    ctx.trace.keep_answers = record.shadow is not None or policy.audit.include_text
    if not stream or _wants_usage(body):
        return body
    return {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}


def observed_relay(request: Request, relay: Relay, body: dict[str, Any]) -> Relay:
    record = record_of(request)
    wanted = _wants_usage(body)

    async def events() -> AsyncIterator[bytes]:
        async for event in relay.events:
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


async def metrics_endpoint(request: Request) -> Response:
    ops: Operations = request.app.state.guard.ops
    if ops.settings.metrics_auth:
        key = authenticate(ops.runtimes.current.keys, request.scope)
        if key is None or not key.metrics:
            raise Forbidden("This API key may not read /metrics.", code="metrics_not_allowed")
    body, content_type = ops.metrics.render()
    return Response(body, media_type=content_type)
