"""The one exception tree of guard.

Every failure a client can see is a ``GuardError``: it knows its HTTP status and
renders itself as OpenAI's error object ``{"error": {message, type, param, code}}``.
Policy problems are found at load time and raised as ``PolicyError``, which never
reaches a client: it stops the server from starting.

    GuardError
    ├── InvalidRequest        400  malformed JSON, missing or invalid field
    ├── Unauthorized          401  missing or wrong API key
    ├── Forbidden             403  the key may not use this model or policy
    ├── NotFound              404  unknown model or route
    ├── MethodNotAllowed      405
    ├── PayloadTooLarge       413  body over GUARD_MAX_BODY_BYTES
    ├── RateLimited           429  a key's rate limit; sends Retry-After
    │   └── Overloaded        429  over GUARD_MAX_CONCURRENT_REQUESTS
    ├── UpstreamHTTPError     upstream's own 4xx (passed through) or 5xx (as 502)
    ├── UpstreamUnreachable   502  connection refused or reset before a response
    ├── UpstreamTimeout       504
    ├── UpstreamStreamBroken  -    the upstream died after streaming began
    │   └── UpstreamEventTooLarge  -  one of its events passed GUARD_UPSTREAM_MAX_EVENT_BYTES
    ├── RewardUnavailable     503  best-of-n's reward failed and the policy says fail
    ├── LimitStoreUnavailable 503  shared limits' Redis failed and GUARD_REDIS_ON_ERROR=block
    ├── ContentFiltered       400  a rail blocked and the policy wants an HTTP error
    ├── RailFailed            503  a fail-closed rail errored or timed out (not a verdict)
    └── RailsOverloaded       503  a fail-closed rail could not start in time; Retry-After

What a client reads names the part that failed and how, never an address: an error's
message passes through ``client_safe`` when it is rendered, which takes out URLs that
carry credentials and absolute filesystem paths, whoever wrote the message (guard, a
client library, the upstream). The full detail goes to the server log instead, with
``without_credentials`` applied to it.
"""

from __future__ import annotations

import re
from typing import Any

_CREDENTIAL_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@]*@[^\s'\"<>()\[\]]*")
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@]*@")
_FILESYSTEM_ROOTS = (
    "home|root|tmp|var|usr|opt|etc|srv|mnt|media|data|work|workspace|models|app|proc|sys|"
    "dev|run|nix|snap|boot|lib|lib64|bin|sbin|Users|private|Volumes|Library"
)
_PATH = re.compile(
    rf"(?<![\w.~/:-])(?:~(?=/)|/(?:{_FILESYSTEM_ROOTS})(?![\w.-]))[^\s'\"<>()\[\],;]*"
    r"|\b[A-Za-z]:\\[^\s'\"<>,;]*"
)


def client_safe(text: str) -> str:
    """``text`` without URLs that carry credentials (``scheme://user:pass@host/...``:
    the whole URL goes) and without absolute filesystem paths (``/home/...``, ``/tmp/...``,
    ``~/...``, ``C:\\...``): for anything a client may read. A last line of defence: the
    messages guard writes name no URL or path in the first place. Routes (``/v1/...``)
    are not filesystem paths and stay."""
    return _PATH.sub("[path]", _CREDENTIAL_URL.sub("[url]", text))


def without_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it taken out: for logs,
    which keep the address but never a password."""
    return _USERINFO.sub(r"\1", text)


class GuardError(Exception):
    status_code = 500
    error_type = "internal_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    @property
    def headers(self) -> dict[str, str]:
        """Extra HTTP headers the error response carries."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": client_safe(self.message),
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GuardError):
    status_code = 400
    error_type = "invalid_request_error"


class Unauthorized(GuardError):
    """No API key, or one guard does not know. Shaped like OpenAI's answer to a bad key."""

    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"

    @property
    def headers(self) -> dict[str, str]:
        return {"www-authenticate": "Bearer"}


class Forbidden(GuardError):
    status_code = 403
    error_type = "invalid_request_error"
    code = "model_not_allowed"


class NotFound(GuardError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GuardError):
    status_code = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GuardError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(GuardError):
    """Too many requests or tokens for a key; ``retry_after`` is in whole seconds."""

    status_code = 429
    error_type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: int, *, error_type: str | None = None):
        super().__init__(message)
        self.retry_after = max(1, retry_after)
        if error_type is not None:
            self.error_type = error_type  # OpenAI says "requests" or "tokens"

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class Overloaded(RateLimited):
    """guard is at GUARD_MAX_CONCURRENT_REQUESTS; it refuses rather than queue."""

    error_type = "server_overloaded"
    code = "server_overloaded"


class UpstreamError(GuardError):
    """Base for failures of the upstream model server."""

    status_code = 502
    error_type = "upstream_error"


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with an error status.

    A 4xx is the client's problem (context too long, bad parameter), so its status
    and message pass through unchanged. A 5xx is ours to report, as 502.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None,
        code: str | None,
        error_type: str | None,
    ):
        super().__init__(message, param=param, code=code)
        if status < 500:
            self.status_code = status
            self.error_type = error_type or "invalid_request_error"
        else:
            self.message = f"upstream failed with HTTP {status}: {message}"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamStreamBroken(UpstreamError):
    code = "upstream_stream_broken"


class UpstreamResponseTooLarge(UpstreamError):
    """A whole (not streamed) answer of the upstream grew past ``upstream_max_response_bytes``:
    guard stops reading it and cuts the connection."""

    code = "upstream_response_too_large"


class UpstreamEventTooLarge(UpstreamStreamBroken):
    """One event of the upstream's stream grew past ``upstream_max_event_bytes``: guard
    stops reading (a retry will not help, unlike a broken connection)."""

    code = "upstream_event_too_large"


class PolicyError(Exception):
    """One or more problems in policy files, each already phrased for a policy author."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class RewardUnavailable(GuardError):
    """The reward model failed and the policy says best-of-n must not go on without it."""

    status_code = 503
    error_type = "service_unavailable"
    code = "reward_unavailable"


class ModelCallStalled(GuardError):
    """A model call has run far longer than any batch takes: its thread, which every
    in-process rail shares, is held until guard restarts (``/livez`` and ``/health``
    say so)."""

    status_code = 503
    error_type = "service_unavailable"
    code = "model_call_stalled"


class LimitStoreUnavailable(GuardError):
    """The shared limits' store (Redis) did not answer in time or failed, and the settings
    say a request must not pass unchecked: a fault, not a verdict on the key."""

    status_code = 503
    error_type = "service_unavailable"
    code = "limit_store_unavailable"
    retry_after = 1

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class ContentFiltered(GuardError):
    """A rail blocked the request and the policy asked for an HTTP error, not a refusal."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "content_filter"

    def __init__(self, message: str, guard: dict[str, Any]):
        super().__init__(message)
        self.guard = guard

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "guard": self.guard}


class RailFailed(GuardError):
    """A rail with ``on_error: block`` failed or timed out: the text was not judged, so the
    request stops, as an error rather than a refusal (the policy may ask for a refusal)."""

    status_code = 503
    error_type = "service_unavailable"
    code = "rail_error"

    def __init__(self, message: str, guard: dict[str, Any]):
        super().__init__(message)
        self.guard = guard

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "guard": self.guard}


class RailsOverloaded(RailFailed):
    """A fail-closed rail's classifier had no room to start the work in time: load, not a
    verdict. The client may retry."""

    code = "rails_overloaded"
    retry_after = 1

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}
