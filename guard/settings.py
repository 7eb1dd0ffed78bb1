"""Server settings: where guard listens, where the upstream is, and limits.

These are about the deployment, not about behaviour: behaviour lives in policy
files. Every field can be set from the environment as ``GUARD_<FIELD>``, e.g.
``GUARD_UPSTREAM_URL=http://127.0.0.1:8000``; CLI flags override the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUARD_", frozen=True, extra="forbid")

    upstream_url: str = "http://127.0.0.1:8000"
    """Base URL of the OpenAI-compatible upstream (vLLM), without ``/v1``."""

    upstream_api_key: str | None = None
    """Sent to the upstream as a bearer token. Clients' own keys are never forwarded."""

    policies: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """Policy files; from the environment as a comma-separated list."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)

    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_timeout_s: float = Field(default=600.0, gt=0)
    """Longest wait for the upstream's response or for its next streamed chunk."""

    upstream_max_connections: int = Field(default=1024, gt=0)
    upstream_max_event_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """The longest event of an upstream stream guard reads (a vLLM event is one JSON chunk,
    a few KB). Past it the client gets an error event (``upstream_event_too_large``) and
    ``[DONE]``, and the upstream connection is cut."""
    upstream_max_response_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    """The largest whole (not streamed) answer guard reads from the upstream or a model
    endpoint (``n`` answers with logprobs can reach tens of MB). Past it the client gets a
    502 (``upstream_response_too_large``) and the connection is cut."""
    moderation_policy: str | None = None
    """The policy whose input rails answer /v1/moderations when ``model`` names none."""
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    """json: one JSON object per log line, with the request id where there is one."""

    # -- operations (docs/operations.md) -------------------------------------------
    keys_file: Path | None = None
    """YAML file of API keys (sha256 hashes). With no keys at all, guard is open."""
    api_keys: str | None = None
    """More keys, comma-separated ``name:sha256hex`` pairs, each allowed everything."""
    metrics_auth: bool = False
    """Require, for /metrics, an API key whose entry says ``metrics: true``."""
    audit_log: Path | None = None
    """Where audit lines go (one JSON object per request); none: no audit log."""
    audit_max_bytes: int = Field(default=100 * 1024 * 1024, ge=0)
    """Rotate the audit log past this size; 0 never rotates."""
    audit_backup_count: int = Field(default=10, ge=0)
    max_concurrent_requests: int = Field(default=1024, ge=1)
    """Requests beyond this many in flight get 429 with Retry-After at once."""
    shutdown_timeout_s: float = Field(default=30.0, ge=0)
    """On SIGTERM: how long requests and streams in flight may take to finish."""
    stalled_model_call_s: float = Field(default=300.0, gt=0)
    """``/livez`` and ``/health`` answer 503 while an in-process model call has run longer
    than this (a batch takes seconds): a call that hangs holds the thread every
    in-process rail runs on, and only a restart frees it."""
    watch: bool = False
    """Reload policies and keys when their files change (polled)."""
    watch_interval_s: float = Field(default=1.0, gt=0)

    # -- several replicas (docs/operations.md, "Running several replicas") ---------
    redis_url: str | None = None
    """Redis (or Valkey) where every replica keeps the keys' rate limits and concurrent
    requests (``redis://``, ``rediss://`` for TLS, ``unix://``); none: each replica keeps
    them in its own memory."""
    redis_on_error: Literal["allow", "block"] = "allow"
    """When Redis fails or is slow: ``allow`` serves the request without checking the
    key's limits, ``block`` answers 503 with Retry-After."""
    redis_connect_timeout_s: float = Field(default=0.1, gt=0)
    redis_timeout_s: float = Field(default=0.1, gt=0)
    """The longest wait for one limit check (a Lua script) once connected."""
    redis_key_prefix: str = Field(default="guard", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Starts every Redis key guard writes; replicas that share limits share the prefix."""

    @field_validator("policies", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
