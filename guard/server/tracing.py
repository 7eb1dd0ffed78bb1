"""``Traced``: one OpenTelemetry trace per request, when tracing is on.

The request's span (kind server, named ``POST /v1/chat/completions``: the method and
the route) is current while the request runs, so the pipeline's stage spans are its
children (``guard.pipeline.trace``) and the upstream is sent their ``traceparent``. An
incoming W3C ``traceparent`` is continued: the span joins the client's trace. Only the
trace context is taken from the client: what the propagators read is the span's parent,
never the current context, so a client's baggage goes no further. A stream's
span ends when the stream has been sent, not with its headers. ``/health``, ``/livez``
and ``/metrics`` are not traced: probes and scrapes would bury the requests.

The span's attributes are in docs/operations.md ("Traces"); what a request says is in
them only where its policy opts in (``guard.ops.tracing``).
"""

from __future__ import annotations

import logging

from opentelemetry.propagate import extract
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guard.ops.tracing import request_attributes
from guard.pipeline.trace import current
from guard.server.middleware import OPEN_PATHS, scope_record

log = logging.getLogger("guard")


class Traced:
    def __init__(self, app: ASGIApp, tracer: Tracer):
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        state = scope.setdefault("state", {})
        span = self.tracer.start_span(
            method,
            context=extract(headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "guard.request_id": state.get("request_id", "-"),
            },
        )
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with current(span):
                await self.app(scope, receive, send_and_note)
        except BaseException:
            status = status or 500
            raise
        finally:
            record = scope_record(scope)
            try:
                if record is not None and record.ctx is not None:
                    record.ctx.trace.end()
                if record is not None and span.is_recording():
                    span.set_attributes(request_attributes(record))
                _describe_http(span, scope, status or (record.status if record else 0))
            except Exception:  # the request is over: a span must never fail it
                log.exception(
                    "request %s: its span could not be described", state.get("request_id")
                )
            span.end()


def _describe_http(span: Span, scope: Scope, status: int) -> None:
    route = getattr(scope.get("route"), "path", None)
    if route is not None:
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
