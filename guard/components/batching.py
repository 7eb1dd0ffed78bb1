"""Batch CPU-bound model calls across concurrent requests, off the event loop.

Callers ``await batcher.submit(items)``. One worker runs the model function in a
thread; while it runs, new submissions queue up and go together into the next
call. So a lone request pays no waiting, and under load the batches grow by
themselves, up to ``max_batch_size`` items.

Capacity is admitted, not assumed. A submission that finds more than ``max_queued``
items already waiting, or that waits longer than its ``queue_timeout_s`` for the
worker, raises ``QueueFull``: that is load, never a verdict. A ``timeout_s`` counts
only the submission's own work, from the moment its batch starts.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFull(Exception):
    """The classifier cannot start this work in time; the caller should shed the request."""


@dataclass
class _Job(Generic[In, Out]):
    items: Sequence[In]
    future: asyncio.Future[list[Out]]
    started: asyncio.Event = field(default_factory=asyncio.Event)
    queued_at: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self,
        run: Callable[[list[In]], list[Out]],
        max_batch_size: int = 32,
        name: str = "model",
        max_queued: int = 4096,
    ):
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_queued = max_queued
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"guard-{name}")
        self._pending: deque[_Job[In, Out]] = deque()
        self._queued_items = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batch_sizes: deque[int] = deque(maxlen=1000)
        """Sizes of the latest batches run, to observe batching."""
        self.waits_s: deque[float] = deque(maxlen=1000)
        """How long the latest jobs waited for the worker, to observe queueing."""

    @property
    def queued(self) -> int:
        """Items waiting for the worker now."""
        return self._queued_items

    async def submit(
        self,
        items: Sequence[In],
        timeout_s: float | None = None,
        queue_timeout_s: float | None = None,
    ) -> list[Out]:
        """The model's outputs for ``items``. ``QueueFull`` when the work cannot start
        (``max_queued`` waiting, or not started within ``queue_timeout_s``);
        ``TimeoutError`` when it started but took longer than ``timeout_s``."""
        if not items:
            return []
        if self._queued_items and self._queued_items + len(items) > self.max_queued:
            raise QueueFull(f"{self._queued_items} texts already wait for the classifier")
        if self._wakeup is None or self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = asyncio.create_task(self._work(self._wakeup))
        job: _Job[In, Out] = _Job(items, asyncio.get_running_loop().create_future())
        job.future.add_done_callback(_retrieve)
        self._pending.append(job)
        self._queued_items += len(items)
        self._wakeup.set()
        try:
            await asyncio.wait_for(job.started.wait(), queue_timeout_s)
        except TimeoutError:
            raise QueueFull(f"waited {queue_timeout_s} s for the classifier to start") from None
        finally:
            if not job.started.is_set():
                job.future.cancel()  # the worker skips it
        return await asyncio.wait_for(asyncio.shield(job.future), timeout_s)

    def _next_batch(self) -> list[_Job[In, Out]]:
        jobs = [self._pending.popleft()]
        size = len(jobs[0].items)
        while self._pending and size + len(self._pending[0].items) <= self.max_batch_size:
            jobs.append(self._pending.popleft())
            size += len(jobs[-1].items)
        for job in jobs:
            self._queued_items -= len(job.items)
        return [job for job in jobs if not job.future.done()]

    async def _work(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await wakeup.wait()
            wakeup.clear()
            while self._pending:
                jobs = self._next_batch()
                if not jobs:
                    continue
                now = time.monotonic()
                for job in jobs:
                    job.started.set()
                    self.waits_s.append(now - job.queued_at)
                batch = [item for job in jobs for item in job.items]
                try:
                    results = await loop.run_in_executor(self._executor, self._run, batch)
                    if len(results) != len(batch):
                        raise RuntimeError(f"model gave {len(results)} results for {len(batch)}")
                except Exception as exc:
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                self.batch_sizes.append(len(batch))
                start = 0
                for job in jobs:
                    end = start + len(job.items)
                    if not job.future.done():
                        job.future.set_result(results[start:end])
                    start = end

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for job in self._pending:
            job.future.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a job's failure as seen: its caller may have stopped waiting (a time-out)."""
    if not future.cancelled():
        future.exception()
