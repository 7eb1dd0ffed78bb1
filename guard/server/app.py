"""create_app(): the ASGI app. Its lifespan owns the upstream client and the pipelines."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from opentelemetry.trace import TracerProvider
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guard import __version__
from guard.components.registry import BuildContext
from guard.errors import GuardError, MethodNotAllowed, NotFound, without_credentials
from guard.logs import REQUEST_ID
from guard.ops.accounting import Operations
from guard.ops.metrics import Metrics
from guard.ops.reload import Reloader
from guard.ops.runtime import Runtimes, build_runtime
from guard.ops.tracing import tracer_provider_from_env
from guard.policy.routing import PolicySet
from guard.protocol.upstream import Upstream
from guard.server.middleware import Gate, metrics_endpoint, note_error
from guard.server.pooling import POOLING_ROUTES
from guard.server.routes import ROUTES, ORJSONResponse
from guard.server.state import GuardState
from guard.server.tracing import Traced
from guard.settings import Settings

log = logging.getLogger("guard")

_CLIENT_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def create_app(
    settings: Settings,
    policies: PolicySet | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> Starlette:
    """Load and check the policies and build their components now, so that an invalid
    policy or a model that cannot load stops start-up here.

    Traces go to ``tracer_provider``, or, without one, to the provider the ``OTEL_*``
    environment configures (``guard.ops.tracing``), which the app shuts down with itself;
    with neither, nothing is traced.

    Raises ``PolicyError`` listing the problems found.
    """
    policies = policies or PolicySet.from_files(list(settings.policies))
    upstream = Upstream.from_settings(settings)
    runtime = build_runtime(settings, policies, upstream, BuildContext(upstream))
    metrics = Metrics()
    metrics.policies_loaded(policies.policies)
    metrics.last_reload.set_to_current_time()
    runtimes = Runtimes(runtime)
    ops = Operations(settings, runtimes, metrics)
    files = list(dict.fromkeys(item.source for item in policies.policies))
    reloader = Reloader(settings, files, upstream, runtimes, metrics)
    owned_provider = tracer_provider_from_env() if tracer_provider is None else None
    tracer_provider = tracer_provider or owned_provider
    tracer = tracer_provider.get_tracer("guard", __version__) if tracer_provider else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.guard = GuardState(settings, upstream, ops, reloader, tracer)
        if not runtime.keys.enabled:
            log.warning(
                "no API keys configured: guard serves every caller "
                "(set GUARD_KEYS_FILE or GUARD_API_KEYS; docs/operations.md)"
            )
        async with AsyncExitStack() as shutdown:
            # Run last to first, each one even if one before it raised: a failing step
            # (say, an audit log on a full disk) must not leave the upstream client open.
            if owned_provider is not None:  # last: it sends the spans still batched
                shutdown.push_async_callback(asyncio.to_thread, owned_provider.shutdown)
            shutdown.push_async_callback(upstream.aclose)
            shutdown.push_async_callback(runtimes.aclose)
            shutdown.push_async_callback(ops.aclose, settings.shutdown_timeout_s)
            shutdown.push_async_callback(reloader.stop)
            reloader.start()
            ops.start()
            yield

    app = Starlette(
        routes=[*ROUTES, *POOLING_ROUTES, Route("/metrics", metrics_endpoint, methods=["GET"])],
        lifespan=lifespan,
        exception_handlers={
            GuardError: _guard_error,
            HTTPException: _http_exception,
            Exception: _unexpected_error,
        },
    )
    app.add_middleware(Gate, ops=ops)
    if tracer is not None:
        app.add_middleware(Traced, tracer=tracer)
    app.add_middleware(RequestIdMiddleware)
    return app


class RequestIdMiddleware:
    """Give every request an id (the client's ``x-request-id`` if sane) and echo it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _CLIENT_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        REQUEST_ID.set(request_id)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


async def _guard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GuardError)
    if exc.status_code >= 500:
        log.warning(
            "request %s failed: %s", request.state.request_id, without_credentials(exc.message)
        )
    note_error(request, exc)
    return ORJSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: GuardError
    if exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.")
    else:
        error = NotFound(f"There is no route {request.url.path}.")
    return ORJSONResponse(error.to_dict(), status_code=error.status_code)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    request_id = request.scope.get("state", {}).get("request_id", "?")
    log.exception("request %s: unexpected error", request_id)
    error = GuardError(f"guard hit an internal error; see its log for request id {request_id}.")
    # This handler runs outside RequestIdMiddleware, so it adds the header itself.
    return ORJSONResponse(error.to_dict(), status_code=500, headers={"x-request-id": request_id})
