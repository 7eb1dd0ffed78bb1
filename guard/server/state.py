"""What the running app holds: settings, the upstream client, operations, the reloader,
and the tracer when tracing is on (``guard.ops.tracing``).

Policies, keys and pipelines are in ``ops.runtimes``: a reload swaps them, and each
request uses the runtime it leased when it started (``guard.server.middleware``).
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.trace import Tracer

from guard.ops.accounting import Operations
from guard.ops.reload import Reloader
from guard.protocol.upstream import Upstream
from guard.settings import Settings


@dataclass(frozen=True)
class GuardState:
    settings: Settings
    upstream: Upstream
    ops: Operations
    reloader: Reloader
    tracer: Tracer | None = None
