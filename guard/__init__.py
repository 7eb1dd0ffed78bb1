"""guard: an OpenAI-compatible proxy that aligns a vLLM-served model's answers at inference time."""

from guard.app import create_app
from guard.errors import GuardError, PolicyError
from guard.policy import Policy, PolicySet, load_policy_file
from guard.settings import Settings

__all__ = [
    "GuardError",
    "Policy",
    "PolicyError",
    "PolicySet",
    "Settings",
    "create_app",
    "load_policy_file",
]
__version__ = "0.1.0"
