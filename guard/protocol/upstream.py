"""The only code that talks HTTP to the upstream (vLLM or any OpenAI-compatible server).

Transport failures become guard's own errors here, so the rest of guard never
sees a client-library exception: refused or reset connections are
``UpstreamUnreachable``, time-outs ``UpstreamTimeout``, error statuses
``UpstreamHTTPError``, and a stream that dies after it began ``UpstreamStreamBroken``.

The client is aiohttp rather than httpx: under concurrent load httpx's connection
pool rescans every connection on each request start and end, which cost guard up
to 15 ms of CPU per request at 64 in flight (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
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
    ):
        self.base_url = server_root(base_url)
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=timeout_s
        )
        self._connect_timeout_s = connect_timeout_s
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Upstream:
        return cls(
            settings.upstream_url,
            settings.upstream_api_key,
            timeout_s=settings.upstream_timeout_s,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            max_connections=settings.upstream_max_connections,
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
        with self._translated():
            async with self._client().post(
                self.base_url + path,
                data=orjson.dumps(body),
                headers={**_JSON, "x-request-id": request_id},
            ) as response:
                content = await response.read()
        if response.status >= 400:
            raise _http_error(response.status, content)
        return _parse_object(content)

    async def open_stream(
        self, path: str, body: dict[str, Any], request_id: str
    ) -> aiohttp.ClientResponse:
        """Send a streaming request and wait for the response head.

        Errors before the first byte are raised here, while the client can still get
        a proper status. The caller must ``close(response)`` however it ends.
        """
        with self._translated():
            response = await self._client().post(
                self.base_url + path,
                data=orjson.dumps(body),
                headers={**_JSON, "x-request-id": request_id},
            )
            if response.status >= 400:
                try:
                    content = await response.read()
                finally:
                    response.release()
                raise _http_error(response.status, content)
        return response

    async def iter_bytes(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout(
                "the upstream stopped sending in the middle of the stream"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamStreamBroken(
                f"the upstream connection broke in the middle of the stream ({_reason(exc)})"
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
        with self._translated():
            async with self._client().get(self.base_url + path, timeout=timeout) as response:
                content = await response.read()
        if response.status >= 400:
            raise _http_error(response.status, content)
        return _parse_object(content) if content else {}

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn client failures that happen before a response into guard errors."""
        try:
            yield
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"the upstream at {self.base_url} did not answer in time"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(
                f"the upstream at {self.base_url} is unreachable ({_reason(exc)})"
            ) from exc


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _parse_object(content: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("the upstream sent a response that is not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError("the upstream sent JSON that is not an object")
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
