"""The one exception tree of guard.

Every failure a client can see is a ``GuardError``: it knows its HTTP status and
renders itself as OpenAI's error object ``{"error": {message, type, param, code}}``.
Policy problems are found at load time and raised as ``PolicyError``, which never
reaches a client: it stops the server from starting.

    GuardError
    ├── InvalidRequest        400  malformed JSON, missing or invalid field
    ├── NotFound              404  unknown model or route
    ├── MethodNotAllowed      405
    ├── PayloadTooLarge       413  body over GUARD_MAX_BODY_BYTES
    ├── UpstreamHTTPError     upstream's own 4xx (passed through) or 5xx (as 502)
    ├── UpstreamUnreachable   502  connection refused or reset before a response
    ├── UpstreamTimeout       504
    ├── UpstreamStreamBroken  -    the upstream died after streaming began
    └── ContentFiltered       400  a rail blocked and the policy wants an HTTP error
"""

from __future__ import annotations

from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GuardError):
    status_code = 400
    error_type = "invalid_request_error"


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


class PolicyError(Exception):
    """One or more problems in policy files, each already phrased for a policy author."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


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
