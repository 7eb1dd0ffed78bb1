"""guard: an OpenAI-compatible proxy that aligns a vLLM-served model's answers at inference time.

``import guard`` is cheap: the names below are imported when first used, so no server,
no pydantic models and no torch load until someone asks for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guard.errors import GuardError, PolicyError
    from guard.policy import Policy, PolicySet, load_policy_file
    from guard.server import create_app
    from guard.settings import Settings

__version__ = "0.1.0"

_EXPORTS = {
    "GuardError": "guard.errors",
    "Policy": "guard.policy",
    "PolicyError": "guard.errors",
    "PolicySet": "guard.policy",
    "Settings": "guard.settings",
    "create_app": "guard.server",
    "load_policy_file": "guard.policy",
}

__all__ = [
    "GuardError",
    "Policy",
    "PolicyError",
    "PolicySet",
    "Settings",
    "create_app",
    "load_policy_file",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'guard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
