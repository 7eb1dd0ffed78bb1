"""Reloading policies and keys without a restart: on SIGHUP, or when their files change.

A reload reads every policy file and the keys file again and builds new pipelines
(in a thread: models may load). If all is valid, new requests get the new runtime
at once and requests in flight finish with the old one, which closes after them.
If anything is invalid, the error is logged, ``guard_policy_reloads_total
{result="failure"}`` counts it, and the old runtime stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

from guard.components.registry import BuildContext
from guard.errors import PolicyError
from guard.ops.metrics import Metrics
from guard.ops.runtime import Runtimes, load_runtime
from guard.protocol.upstream import Upstream
from guard.settings import Settings

log = logging.getLogger("guard")

Snapshot = dict[Path, tuple[int, int] | None]


class Reloader:
    def __init__(
        self,
        settings: Settings,
        policy_files: list[Path],
        upstream: Upstream,
        runtimes: Runtimes,
        metrics: Metrics,
    ):
        self.settings = settings
        self.policy_files = policy_files
        self.upstream = upstream
        self.runtimes = runtimes
        self.metrics = metrics
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[bool]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._on_signal = False

    @property
    def watched(self) -> list[Path]:
        keys = [self.settings.keys_file] if self.settings.keys_file else []
        return [*self.policy_files, *keys]

    async def reload(self, why: str) -> bool:
        """Load everything again; True if the new runtime is now serving."""
        async with self._lock:
            components = BuildContext(self.upstream)
            try:
                runtime = await asyncio.to_thread(
                    load_runtime, self.settings, self.policy_files, self.upstream, components
                )
            except Exception as exc:
                await components.aclose()
                problems = exc.problems if isinstance(exc, PolicyError) else [repr(exc)]
                self.metrics.reloads.labels("failure").inc()
                log.error(
                    "reload (%s) failed; still serving the previous policies:\n%s",
                    why,
                    "\n".join(problems),
                )
                return False
            self.runtimes.swap(runtime)
            self.metrics.reloads.labels("success").inc()
            self.metrics.last_reload.set(time.time())
            self.metrics.policies_loaded(runtime.policies.policies)
            served = ", ".join(
                f"{item.policy.name} ({item.digest[:12]})" for item in runtime.policies.policies
            )
            log.info("reloaded (%s): serving %s; %d API keys", why, served, len(runtime.keys.names))
            return True

    def start(self) -> None:
        """Reload on SIGHUP (main thread only) and, with ``watch``, on file changes."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, self._sighup)
            self._on_signal = True
        if self.settings.watch:
            self._watcher = loop.create_task(self._watch())

    def _sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        seen = self._snapshot()
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            now = self._snapshot()
            if now != seen:
                changed = [str(path) for path in now if now[path] != seen.get(path)]
                seen = now
                await self.reload(f"file changed: {', '.join(changed) or 'policies'}")

    def _snapshot(self) -> Snapshot:
        found: Snapshot = {}
        for path in self.watched:
            try:
                stat = path.stat()
                found[path] = (stat.st_mtime_ns, stat.st_size)
            except OSError:
                found[path] = None
        return found

    async def stop(self) -> None:
        if self._on_signal:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        tasks: list[asyncio.Task[object]] = [*self._tasks]
        if self._watcher is not None:
            self._watcher.cancel()
            tasks.append(self._watcher)
        await asyncio.gather(*tasks, return_exceptions=True)
