"""Reloading policies and keys without a restart: on SIGHUP, or when their files change.

A reload reads every policy file, their principles files and the keys file again
and builds new pipelines (in a thread: models may load). If all is valid, new
requests get the new runtime at once and requests in flight finish with the old
one, which closes after them. If anything is invalid, the error is logged,
``guard_policy_reloads_total{result="failure"}`` counts it, and the old runtime
stays: nothing of the new files is used, not even the valid ones.

With ``watch``, ``Reloader.poll`` reads the files every ``watch_interval_s``. A
change is loaded only once the files read the same, byte for byte, on two polls in
a row, and the bytes loaded are exactly those: a file being written in place is
left alone until its writer has been quiet for a whole interval. That is the
defence against half-written files; validation (every file ends with a newline,
keys say their ``models``, policies list their rails) catches most of the cuts a
stalled or dead writer can leave behind, not all (docs/operations.md).
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

Snapshot = dict[Path, bytes | None]
"""Every watched file's bytes; None: it could not be read."""


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
        self._served = read_files(self.watched)
        """What the current runtime was loaded from (or failed to load from)."""
        self._last_poll = self._served

    @property
    def watched(self) -> list[Path]:
        """The policy files, the principles files they read, and the keys file."""
        principles = [
            item.principles_file
            for item in self.runtimes.current.policies.policies
            if item.principles_file is not None
        ]
        keys = [self.settings.keys_file] if self.settings.keys_file else []
        return list(dict.fromkeys([*self.policy_files, *principles, *keys]))

    async def reload(self, why: str, files: Snapshot | None = None) -> bool:
        """Load everything again (``files``: from these bytes); True if the new runtime
        is now serving."""
        async with self._lock:
            if files is None:
                files = await asyncio.to_thread(read_files, self.watched)
            self._served = self._last_poll = files
            contents = {path: raw for path, raw in files.items() if raw is not None}
            components = BuildContext(self.upstream)
            try:
                runtime = await asyncio.to_thread(
                    load_runtime,
                    self.settings,
                    self.policy_files,
                    self.upstream,
                    components,
                    contents,
                )
            except Exception as exc:
                await components.aclose()
                problems = exc.problems if isinstance(exc, PolicyError) else [repr(exc)]
                self.metrics.reloads.labels("failure").inc()
                log.error(
                    "reload (%s) failed; still serving the previous policies and keys:\n%s",
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

    async def poll(self) -> bool | None:
        """Read the watched files once. Reload when they differ from what was last loaded
        and are the same as on the previous poll; returns the reload's result, or None
        when there was nothing (yet) to reload."""
        now = await asyncio.to_thread(read_files, self.watched)
        settled, self._last_poll = now == self._last_poll, now
        if now == self._served or not settled or self._lock.locked():
            return None
        changed = [str(path) for path in now if now[path] != self._served.get(path)]
        return await self.reload(f"file changed: {', '.join(changed)}", now)

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
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            await self.poll()

    async def stop(self) -> None:
        if self._on_signal:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        tasks: list[asyncio.Task[object]] = [*self._tasks]
        if self._watcher is not None:
            self._watcher.cancel()
            tasks.append(self._watcher)
        await asyncio.gather(*tasks, return_exceptions=True)


def read_files(paths: list[Path]) -> Snapshot:
    found: Snapshot = {}
    for path in paths:
        try:
            found[path] = path.read_bytes()
        except OSError:
            found[path] = None
    return found
