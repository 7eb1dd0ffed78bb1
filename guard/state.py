"""What the running app holds: settings, policies, their pipelines and the upstream client."""

from __future__ import annotations

from dataclasses import dataclass

from guard.pipeline import Pipeline
from guard.policy import PolicySet
from guard.settings import Settings
from guard.upstream import Upstream


@dataclass(frozen=True)
class GuardState:
    settings: Settings
    policies: PolicySet
    upstream: Upstream
    pipelines: dict[str, Pipeline]
    """Policy name -> its pipeline."""
