"""Server settings: where guard listens, where the upstream is, and limits.

These are about the deployment, not about behaviour: behaviour lives in policy
files. Every field can be set from the environment as ``GUARD_<FIELD>``, e.g.
``GUARD_UPSTREAM_URL=http://127.0.0.1:8000``; CLI flags override the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    moderation_policy: str | None = None
    """The policy whose input rails answer /v1/moderations when ``model`` names none."""
    log_level: str = "info"

    @field_validator("policies", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
