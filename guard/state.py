"""What the running app holds: settings, the upstream client, and operations.

Policies, keys and pipelines are in ``ops.runtimes``: a reload swaps them, and each
request uses the runtime it leased when it started (``guard.gate``).
"""

from __future__ import annotations

from dataclasses import dataclass

from guard.ops import Operations
from guard.settings import Settings
from guard.upstream import Upstream


@dataclass(frozen=True)
class GuardState:
    settings: Settings
    upstream: Upstream
    ops: Operations
