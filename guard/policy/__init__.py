"""Policies: what a policy file may say (models), reading files (load), and routing a
requested model name to the policy that serves it (routing).
"""

from guard.policy.load import LoadedPolicy, load_policy_file, load_principles
from guard.policy.models import WILDCARD, BestOfN, Constitutional, Policy, Principle, Streaming
from guard.policy.routing import PolicySet, Route

__all__ = [
    "WILDCARD",
    "BestOfN",
    "Constitutional",
    "LoadedPolicy",
    "Policy",
    "PolicySet",
    "Principle",
    "Route",
    "Streaming",
    "load_policy_file",
    "load_principles",
]
