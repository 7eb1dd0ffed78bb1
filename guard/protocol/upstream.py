"""The only code that talks HTTP to the upstream (vLLM or any OpenAI-compatible server).

Transport failures become guard's own errors here, so the rest of guard never
sees a client-library exception: refused or reset connections are
``UpstreamUnreachable``, time-outs ``UpstreamTimeout``, error statuses
``UpstreamHTTPError``, and a stream that dies after it began ``UpstreamStreamBroken``
(``UpstreamEventTooLarge`` when one of its events outgrows ``max_event_bytes``: a stream
is read one whole event at a time, and no more than that is ever held; a whole answer
past ``max_response_bytes`` is ``UpstreamResponseTooLarge``).
Their messages reach clients (a 502, a rail's error), so they name the server by what it
is to guard (``name``: "the upstream", "the model endpoint") and the kind of failure,
never its URL; the URL (credentials taken out) and the client library's own words go
to the server log, with the request id.

Each request carries the W3C ``traceparent`` of the span current when it is sent (a
generation or rail span, ``guard.pipeline.trace``), so vLLM started with
``--otlp-traces-endpoint`` continues guard's trace; untraced, nothing is added.

The client is aiohttp rather than httpx: under concurrent load httpx's connection
pool rescans every connection on each request start and end, which cost guard up
to 15 ms of CPU per request at 64 in flight (see docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson
from opentelemetry.propagate import inject

from guard.errors import (
    UpstreamError,
    UpstreamHTTPError,
    UpstreamResponseTooLarge,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnreachable,
    without_credentials,
)
from guard.logs import REQUEST_ID
from guard.protocol.sse import EVENT_END, split_events
from guard.settings import Settings

log = logging.getLogger("guard.upstream")

_JSON = {"content-type": "application/json"}


def server_root(url: str) -> str:
    """The server's root from a base URL as users write it: with or without ``/v1``, with
    or without a trailing slash (guard adds ``/v1/...`` or ``/classify`` itself)."""
    root = url.strip().rstrip("/")
    return root.removesuffix("/v1").rstrip("/")


class Upstream:
    """An OpenAI-compatible server: guard's upstream, or a model a component calls."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 1024,
        name: str = "the upstream",
        max_event_bytes: int = 8 * 1024 * 1024,
        max_response_bytes: int = 256 * 1024 * 1024,
    ):
        self.base_url = server_root(base_url)
        self.name = name
        """What clients are told failed; the URL is only ever logged."""
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=timeout_s
        )
        self._connect_timeout_s = connect_timeout_s
        self._max_connections = max_connections
        self.max_event_bytes = max_event_bytes
        self.max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Upstream:
        return cls(
            settings.upstream_url,
            settings.upstream_api_key,
            timeout_s=settings.upstream_timeout_s,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            max_connections=settings.upstream_max_connections,
            max_event_bytes=settings.upstream_max_event_bytes,
            max_response_bytes=settings.upstream_max_response_bytes,
        )

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use: it must be born inside the running event loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post_json(self, path: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        with self._translated(path, request_id):
            async with self._client().post(
                self.base_url + path,
                data=orjson.dumps(body),
                headers=_request_headers(request_id),
            ) as response:
                content = await self._read(response)
        if response.status >= 400:
            raise _http_error(response.status, content)
        return _parse_object(content, self.name)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, up to ``max_response_bytes``; past it the connection is cut."""
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self.max_response_bytes:
                response.close()
                raise UpstreamResponseTooLarge(
                    f"{self.name}'s answer grew past {self.max_response_bytes} bytes "
                    "(upstream_max_response_bytes); guard stopped reading it"
                )
        return bytes(body)

    async def open_stream(
        self, path: str, body: dict[str, Any], request_id: str
    ) -> aiohttp.ClientResponse:
        """Send a streaming request and wait for the response head.

        Errors before the first byte are raised here, while the client can still get
        a proper status. The caller must ``close(response)`` however it ends.
        """
        with self._translated(path, request_id):
            response = await self._client().post(
                self.base_url + path,
                data=orjson.dumps(body),
                headers=_request_headers(request_id),
            )
            if response.status >= 400:
                try:
                    content = await self._read(response)
                finally:
                    response.release()
                raise _http_error(response.status, content)
        return response

    async def iter_bytes(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The stream's bytes, one whole event (with its blank line) at a time."""
        async for event in split_events(self._received(response), self.max_event_bytes):
            yield event + EVENT_END

    async def _received(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            self._log("stopped sending in the middle of the stream", response.url.path, exc)
            raise UpstreamTimeout(
                f"{self.name} stopped sending in the middle of the stream"
            ) from exc
        except aiohttp.ClientError as exc:
            self._log("broke in the middle of the stream", response.url.path, exc)
            kind = failure_kind(exc)
            raise UpstreamStreamBroken(
                f"{self.name}'s connection broke in the middle of the stream ({kind})"
            ) from exc

    @staticmethod
    async def close(response: aiohttp.ClientResponse) -> None:
        """Return a finished stream's connection to the pool; cut an unfinished one,
        so that the upstream sees the disconnect and stops generating."""
        if response.content.at_eof():
            response.release()
        else:
            response.close()

    async def get_json(self, path: str, timeout_s: float | None = None) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else None
        with self._translated(path, None):
            async with self._client().get(
                self.base_url + path, timeout=timeout, headers=_trace_context()
            ) as response:
                content = await self._read(response)
        if response.status >= 400:
            raise _http_error(response.status, content)
        return _parse_object(content, self.name) if content else {}

    @contextmanager
    def _translated(self, path: str, request_id: str | None) -> Iterator[None]:
        """Turn client failures that happen before a response into guard errors."""
        try:
            yield
        except TimeoutError as exc:
            self._log("did not answer in time", path, exc, request_id)
            raise UpstreamTimeout(f"{self.name} did not answer in time") from exc
        except aiohttp.ClientError as exc:
            self._log("is unreachable", path, exc, request_id)
            raise UpstreamUnreachable(f"{self.name} is unreachable ({failure_kind(exc)})") from exc

    def _log(self, what: str, path: str, exc: BaseException, request_id: str | None = None) -> None:
        """The detail a client is not shown: the URL (without credentials) and the client
        library's own account of the failure."""
        log.warning(
            "request %s: %s at %s %s: %s",
            REQUEST_ID.get() or request_id or "-",
            self.name,
            without_credentials(self.base_url + path),
            what,
            without_credentials(f"{type(exc).__name__}: {exc}"),
        )


def failure_kind(exc: BaseException) -> str:
    """What went wrong with a connection, in words that name no address: aiohttp's own
    messages carry the host and port (and, for a bad URL, the URL itself)."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "its host name did not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "its TLS certificate was not accepted"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "the TLS handshake failed"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return "the proxy could not connect"
    if isinstance(exc, aiohttp.ClientOSError):
        code = exc.errno  # refused, reset...: the system's words, without the address
        return os.strerror(code).lower() if code and code > 0 else "the connection failed"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response was cut short or malformed"
    if isinstance(exc, aiohttp.InvalidURL):
        return "its URL is not valid"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "the HTTP exchange failed"
    return type(exc).__name__


def _request_headers(request_id: str) -> dict[str, str]:
    return {**_JSON, "x-request-id": request_id, **_trace_context()}


def _trace_context() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span, by the propagators
    ``OTEL_PROPAGATORS`` names (W3C trace context unless set). A client's baggage is not
    in guard's context (``guard.server.tracing``), so none of it goes on."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def _parse_object(content: bytes, name: str) -> dict[str, Any]:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{name} sent a response that is not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError(f"{name} sent JSON that is not an object")
    return data


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _http_error(status: int, content: bytes) -> UpstreamHTTPError:
    """Read OpenAI's ``{"error": {...}}``, vLLM's older flat error shape, or FastAPI's
    ``{"detail": "Not Found"}`` (vLLM's answer on a route it does not serve)."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    detail = data.get("error", data) if isinstance(data, dict) else None
    if not isinstance(detail, dict):
        text = content.decode("utf-8", errors="replace").strip()[:500]
        return UpstreamHTTPError(
            status, text or f"HTTP {status}", param=None, code=None, error_type=None
        )
    code = detail.get("code")
    return UpstreamHTTPError(
        status,
        str(detail.get("message") or _string(detail.get("detail")) or f"HTTP {status}"),
        param=detail.get("param"),
        code=str(code) if code is not None else None,
        error_type=detail.get("type"),
    )
