"""The gate every request passes: API key, concurrency limit, the key's limits.

``Gate`` is ASGI middleware. It leases the current runtime (policies, keys,
pipelines) for the whole request, refuses what it must with an OpenAI-shaped
error (401, 429 with Retry-After; 503 when the shared limits' Redis fails and the
settings say block), and hands the finished request to
``Operations.finish``. Only ``/health``, ``/livez`` and ``/metrics`` bypass it
(``/metrics`` checks a key itself when ``GUARD_METRICS_AUTH`` is on): a route added
later, with or without ``/v1`` (vLLM's ``/rerank``, ``/tokenize``...), is behind the
gate unless it is named here.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guard.errors import Forbidden, GuardError, Unauthorized
from guard.ops.accounting import Operations, RequestRecord
from guard.ops.keys import ApiKey, KeyRing

_RECORD = "guard_record"
OPEN_PATHS = frozenset({"/health", "/livez", "/metrics"})


class Gate:
    def __init__(self, app: ASGIApp, ops: Operations):
        self.app = app
        self.ops = ops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
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
                    record.held = await ops.admit(record.key)
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
            record.endpoint = getattr(scope.get("route"), "path", record.endpoint)
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


def scope_record(scope: Scope) -> RequestRecord | None:
    """The request's record, once the gate made one (none on an open path)."""
    record: RequestRecord | None = scope.get("state", {}).get(_RECORD)
    return record


def note_error(request: Request, exc: GuardError) -> None:
    """Called by the error handler, so the record knows why the request failed."""
    record = scope_record(request.scope)
    if record is not None:
        record.error = exc


async def metrics_endpoint(request: Request) -> Response:
    ops: Operations = request.app.state.guard.ops
    if ops.settings.metrics_auth:
        key = authenticate(ops.runtimes.current.keys, request.scope)
        if key is None or not key.metrics:
            raise Forbidden("This API key may not read /metrics.", code="metrics_not_allowed")
    body, content_type = ops.metrics.render()
    return Response(body, media_type=content_type)
