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
from guard.errors import PolicyError
from guard.ops.keys import ApiKey, KeyRing, load_keys
from guard.pipeline.checks import check_runnable
from guard.pipeline.runner import Pipeline
from guard.policy.load import Contents
from guard.policy.models import WILDCARD
from guard.policy.routing import PolicySet, Route, model_not_found
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
        """The policy for ``model`` and this caller; raises Forbidden or ModelNotFound.

        A key restricted to some models gets 403 for any other name, served or not, and
        a 404 lists only the models the caller may use (every model with no keys)."""
        if key is not None:
            key.check_model(model)
        found = self.policies.find(model, key.policy if key else None)
        if found is None:
            raise model_not_found(model, self.model_names(key)[0])
        if key is not None:
            key.check_policy(found.policy.policy.name, model)
        return found

    def model_names(self, key: ApiKey | None) -> tuple[list[str], bool]:
        """The model names this caller may use, and whether a ``*`` policy serves it."""
        if key is not None and key.policy is not None:
            models = list(self.policies.by_name[key.policy].policy.models)
            names, wildcard = [m for m in models if m != WILDCARD], WILDCARD in models
        else:
            names, wildcard = self.policies.model_names, self.policies.has_wildcard
        if key is None:
            return names, wildcard
        asked = [] if key.models == WILDCARD else [m for m in key.models if m not in names]
        allowed = []
        for name in [*names, *asked]:
            if name == WILDCARD:
                continue
            found = self.policies.find(name, key.policy)
            if found is not None and key.allows(name, found.policy.policy.name):
                allowed.append(name)
        return allowed, wildcard and key.any_model

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.components.aclose()


def build_runtime(
    settings: Settings,
    policies: PolicySet,
    upstream: Upstream,
    components: BuildContext,
    contents: Contents | None = None,
) -> Runtime:
    """Check the policies, read the keys (``contents``: maybe already read) and build
    every pipeline.

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
    keys_file = settings.keys_file
    raw = (contents or {}).get(keys_file) if keys_file is not None else None
    keys = load_keys(keys_file, settings.api_keys, policies, raw)
    if settings.metrics_auth and not any(key.metrics for key in keys.by_hash.values()):
        raise PolicyError(
            ["GUARD_METRICS_AUTH is on, but no API key has 'metrics: true' to read /metrics"]
        )
    pipelines = {
        item.policy.name: Pipeline(item, upstream, components) for item in policies.policies
    }
    return Runtime(policies, keys, pipelines, components)


def load_runtime(
    settings: Settings,
    paths: list[Path],
    upstream: Upstream,
    components: BuildContext,
    contents: Contents | None = None,
) -> Runtime:
    """``build_runtime`` from the policy files and the keys file; ``contents``: those
    files already read, so that exactly these bytes are loaded."""
    policies = PolicySet.from_files(paths, contents)
    return build_runtime(settings, policies, upstream, components, contents)


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
