"""What a reload replaces at once: the policies, the API keys and the built pipelines.

Each request leases the runtime that is current when it starts and keeps it to the
end, shadow work included. A reload swaps in a new runtime for new requests; the
old one closes its components when its last lease is returned.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from guard.components.registry import BuildContext
from guard.errors import GuardError, PolicyError
from guard.ops.keys import ApiKey, KeyRing, load_keys
from guard.pipeline.runner import Pipeline, check_runnable
from guard.policy.models import WILDCARD
from guard.policy.routing import PolicySet, Route
from guard.protocol.upstream import Upstream
from guard.settings import Settings

log = logging.getLogger("guard")


@dataclass(eq=False)
class Runtime:
    policies: PolicySet
    keys: KeyRing
    pipelines: dict[str, Pipeline]
    components: BuildContext
    leases: int = 0
    retired: bool = False
    closed: bool = False

    def route(self, model: str, key: ApiKey | None) -> Route:
        """The policy for ``model`` and this caller; raises ModelNotFound or Forbidden."""
        route = self.policies.route(model, key.policy if key else None)
        if key is not None:
            key.check_allowed(model, route.policy.policy.name)
        return route

    def model_names(self, key: ApiKey | None) -> tuple[list[str], bool]:
        """The model names this caller may use, and whether a ``*`` policy serves it."""
        if key is not None and key.policy is not None:
            models = list(self.policies.by_name[key.policy].policy.models)
            names, wildcard = [m for m in models if m != WILDCARD], WILDCARD in models
        else:
            names, wildcard = self.policies.model_names, self.policies.has_wildcard
        if key is None:
            return names, wildcard
        asked = [m for m in key.models or [] if m != WILDCARD and m not in names]
        allowed = []
        for name in [*names, *asked]:
            try:
                self.route(name, key)
            except GuardError:
                continue
            allowed.append(name)
        may_any = key.models is None or WILDCARD in key.models
        return allowed, wildcard and may_any

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.components.aclose()


def build_runtime(
    settings: Settings, policies: PolicySet, upstream: Upstream, components: BuildContext
) -> Runtime:
    """Check the policies, read the keys and build every pipeline.

    Raises ``PolicyError``. Blocking (models may load): reloads call it in a thread.
    The caller closes ``components`` if this fails.
    """
    check_runnable(policies.policies)
    names = [item.policy.name for item in policies.policies]
    if settings.moderation_policy is not None and settings.moderation_policy not in names:
        raise PolicyError(
            [
                f"GUARD_MODERATION_POLICY names '{settings.moderation_policy}', "
                f"which is not a loaded policy ({', '.join(names)})"
            ]
        )
    keys = load_keys(settings.keys_file, settings.api_keys, policies)
    if settings.metrics_auth and not any(key.metrics for key in keys.by_hash.values()):
        raise PolicyError(
            ["GUARD_METRICS_AUTH is on, but no API key has 'metrics: true' to read /metrics"]
        )
    pipelines = {
        item.policy.name: Pipeline(item, upstream, components) for item in policies.policies
    }
    return Runtime(policies, keys, pipelines, components)


def load_runtime(
    settings: Settings, paths: list[Path], upstream: Upstream, components: BuildContext
) -> Runtime:
    return build_runtime(settings, PolicySet.from_files(paths), upstream, components)


class Runtimes:
    """The current runtime, and leases on it. Used from the event loop only."""

    def __init__(self, first: Runtime):
        self.current = first
        self._closing: set[asyncio.Task[None]] = set()

    def acquire(self) -> Runtime:
        runtime = self.current
        runtime.leases += 1
        return runtime

    def release(self, runtime: Runtime) -> None:
        runtime.leases -= 1
        if runtime.retired and runtime.leases == 0:
            self._close_later(runtime)

    def swap(self, new: Runtime) -> Runtime:
        """Make ``new`` current; the old one closes when its last lease is returned."""
        old, self.current = self.current, new
        old.retired = True
        if old.leases == 0:
            self._close_later(old)
        else:
            log.info("the previous policies close after %d request(s) in flight", old.leases)
        return old

    def _close_later(self, runtime: Runtime) -> None:
        task = asyncio.get_running_loop().create_task(runtime.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self.current.aclose()
