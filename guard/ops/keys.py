"""API keys: who may call guard, with which models and policies, and how often.

Keys come from a YAML keys file (``GUARD_KEYS_FILE``) and from ``GUARD_API_KEYS``
(comma-separated ``name:sha256hex``). Only sha256 hashes are stored; a client's
key is hashed on each request and looked up. ``guard hash-key`` makes a hash.
With no keys at all, guard is open to every caller.

A key's access is explicit: each entry in the file says ``models`` (a list, or
``"*"`` for any), so an entry cut short is refused rather than read as "any model".
Keys from ``GUARD_API_KEYS`` have no entry to say it in: they may use every model
and policy, by construction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from guard.errors import Forbidden, PolicyError
from guard.policy.models import WILDCARD
from guard.policy.routing import PolicySet
from guard.yaml_errors import explain_validation_error, read_yaml

_HEX = re.compile(r"^[0-9a-f]{64}$")
NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A random key with 256 bits of entropy: safe to store as an unsalted sha256."""
    return "sk-guard-" + secrets.token_urlsafe(32)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RateLimit(_Section):
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    """Prompt plus completion tokens, as the upstream reports them in ``usage``."""
    concurrent_requests: int | None = Field(default=None, ge=1)
    """This key's requests in flight at once (a stream until its last byte)."""


class ApiKey(_Section):
    name: str = Field(pattern=NAME_PATTERN)
    """Shown in metrics, the audit log and the logs; the key itself never is."""
    sha256: str = Field(pattern=_HEX.pattern)
    """sha256 of the key, in hex (``guard hash-key``)."""
    models: Literal["*"] | list[str] = Field(
        description=(
            "say which model names this key may request: a list, or '*' for any; an "
            "entry without it may have been cut short, and is not read as 'any'"
        )
    )
    """Model names this key may request: a list (``[]``: none), or ``"*"``: any."""
    policies: list[str] | None = None
    """Policies this key's requests may be served by; unset: any."""
    policy: str | None = None
    """Serve every request of this key with this policy instead of routing by model name."""
    shadow: str | None = None
    """A shadow policy for this key's requests; overrides the serving policy's own."""
    rate_limit: RateLimit | None = None
    metrics: bool = False
    """May read /metrics when GUARD_METRICS_AUTH is on."""

    @property
    def any_model(self) -> bool:
        return self.models == WILDCARD or WILDCARD in self.models

    def allows_model(self, model: str) -> bool:
        return self.any_model or model in self.models

    def allows(self, model: str, policy: str) -> bool:
        return self.allows_model(model) and (self.policies is None or policy in self.policies)

    def check_model(self, model: str) -> None:
        """Raise ``Forbidden`` unless this key may request ``model``."""
        if not self.allows_model(model):
            raise Forbidden(
                f"The API key '{self.name}' may not use the model '{model}'.", param="model"
            )

    def check_policy(self, policy: str, model: str | None) -> None:
        """Raise ``Forbidden`` unless this key may be served by ``policy``."""
        if self.policies is not None and policy not in self.policies:
            serving = f" that serves the model '{model}'" if model else ""
            raise Forbidden(
                f"The API key '{self.name}' may not use the policy '{policy}'{serving}.",
                param="model",
                code="policy_not_allowed",
            )


class KeysFile(_Section):
    keys: list[ApiKey] = Field(min_length=1)


_KEYS_FILE = TypeAdapter(KeysFile)


@dataclass(frozen=True)
class KeyRing:
    """Every configured key, by hash. Empty: authentication is off."""

    by_hash: dict[str, ApiKey]

    @property
    def enabled(self) -> bool:
        return bool(self.by_hash)

    def find(self, presented: str) -> ApiKey | None:
        return self.by_hash.get(hash_key(presented))

    @property
    def names(self) -> list[str]:
        return [key.name for key in self.by_hash.values()]


def load_keys(
    path: Path | None, env: str | None, policies: PolicySet, raw: bytes | None = None
) -> KeyRing:
    """Read the keys file (``raw``: its bytes, already read) and the env keys; check them
    against the loaded policies.

    Raises ``PolicyError`` with every problem, phrased like policy problems.
    """
    keys = _read_file(path, raw) if path is not None else []
    keys += _parse_env(env)
    problems: list[str] = []
    by_hash: dict[str, ApiKey] = {}
    names: set[str] = set()
    where = str(path) if path is not None else "GUARD_API_KEYS"
    for key in keys:
        if key.name in names:
            problems.append(f"{where}: key name '{key.name}' is used twice; names must be unique")
        if key.sha256 in by_hash:
            problems.append(
                f"{where}: keys '{by_hash[key.sha256].name}' and '{key.name}' have the same hash"
            )
        names.add(key.name)
        by_hash[key.sha256] = key
        named = [key.policy, key.shadow, *(key.policies or [])]
        for policy in named:
            if policy is not None and policy not in policies.by_name:
                problems.append(
                    f"{where}: key '{key.name}' names policy '{policy}', which is not loaded "
                    f"({', '.join(sorted(policies.by_name))})"
                )
    if problems:
        raise PolicyError(problems)
    return KeyRing(by_hash)


def _read_file(path: Path, raw: bytes | None) -> list[ApiKey]:
    parsed = read_yaml(path, "the keys file", "'keys: [...]'", raw)
    try:
        return list(_KEYS_FILE.validate_python(parsed.data).keys)
    except ValidationError as exc:
        raise PolicyError(explain_validation_error(path, parsed.node, exc, KeysFile)) from exc


def _parse_env(env: str | None) -> list[ApiKey]:
    keys = []
    for index, part in enumerate(p.strip() for p in (env or "").split(",")):
        if not part:
            continue
        name, _, digest = part.partition(":")
        try:
            keys.append(ApiKey(name=name.strip(), sha256=digest.strip().lower(), models=WILDCARD))
        except ValidationError as exc:
            raise PolicyError(
                [
                    f"GUARD_API_KEYS entry {index + 1}: expected 'name:sha256hex' with a name of "
                    f"letters, digits, '_.@-' and a 64-digit hex hash ({exc.error_count()} "
                    "problems); the hash comes from `guard hash-key`"
                ]
            ) from exc
    return keys
