"""The only code that talks HTTP to the upstream (vLLM or any OpenAI-compatible server).

Transport failures become guard's own errors here, so the rest of guard never
sees an httpx exception: refused or reset connections are ``UpstreamUnreachable``,
time-outs ``UpstreamTimeout``, error statuses ``UpstreamHTTPError``, and a stream
that dies after it began ``UpstreamStreamBroken``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from guard.errors import (
    UpstreamError,
    UpstreamHTTPError,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from guard.settings import Settings

_JSON = {"content-type": "application/json"}


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
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> Upstream:
        return cls(
            settings.upstream_url,
            settings.upstream_api_key,
            timeout_s=settings.upstream_timeout_s,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            max_connections=settings.upstream_max_connections,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post_json(self, path: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        request = self._build(path, body, request_id)
        with self._translated():
            response = await self._client.send(request)
        if response.status_code >= 400:
            raise _http_error(response.status_code, response.content)
        return _parse_object(response.content)

    async def open_stream(self, path: str, body: dict[str, Any], request_id: str) -> httpx.Response:
        """Send a streaming request and wait for the response head.

        Errors before the first byte are raised here, while the client can still get
        a proper status. The caller must ``aclose()`` the returned response.
        """
        request = self._build(path, body, request_id)
        with self._translated():
            response = await self._client.send(request, stream=True)
        if response.status_code >= 400:
            try:
                with self._translated():
                    content = await response.aread()
            finally:
                await response.aclose()
            raise _http_error(response.status_code, content)
        return response

    async def iter_bytes(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                "the upstream stopped sending in the middle of the stream"
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamStreamBroken(
                f"the upstream connection broke in the middle of the stream ({_reason(exc)})"
            ) from exc

    async def get_json(self, path: str, timeout_s: float | None = None) -> dict[str, Any]:
        with self._translated():
            response = await self._client.get(path, timeout=timeout_s or httpx.USE_CLIENT_DEFAULT)
        if response.status_code >= 400:
            raise _http_error(response.status_code, response.content)
        return _parse_object(response.content) if response.content else {}

    def _build(self, path: str, body: dict[str, Any], request_id: str) -> httpx.Request:
        headers = {**_JSON, "x-request-id": request_id}
        return self._client.build_request("POST", path, content=orjson.dumps(body), headers=headers)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn httpx failures that happen before a response into guard errors."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"the upstream at {self.base_url} did not answer in time"
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnreachable(
                f"the upstream at {self.base_url} is unreachable ({_reason(exc)})"
            ) from exc


def _reason(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__


def _parse_object(content: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("the upstream sent a response that is not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError("the upstream sent JSON that is not an object")
    return data


def _http_error(status: int, content: bytes) -> UpstreamHTTPError:
    """Read OpenAI's ``{"error": {...}}`` or vLLM's older flat error shape."""
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
        str(detail.get("message") or f"HTTP {status}"),
        param=detail.get("param"),
        code=str(code) if code is not None else None,
        error_type=detail.get("type"),
    )
