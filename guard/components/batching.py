"""Batch CPU-bound model calls across concurrent requests, off the event loop.

Callers ``await batcher.submit(items)``. One worker runs the model function in a
thread; while it runs, new submissions queue up and go together into the next
call. So a lone request pays no waiting, and under load the batches grow by
themselves, up to ``max_batch_size`` items.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Job(Generic[In, Out]):
    items: Sequence[In]
    future: asyncio.Future[list[Out]]


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self, run: Callable[[list[In]], list[Out]], max_batch_size: int = 32, name: str = "model"
    ):
        self._run = run
        self.max_batch_size = max_batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"guard-{name}")
        self._pending: deque[_Job[In, Out]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batch_sizes: deque[int] = deque(maxlen=1000)
        """Sizes of the latest batches run, to observe batching."""

    async def submit(self, items: Sequence[In]) -> list[Out]:
        if not items:
            return []
        if self._wakeup is None or self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = asyncio.create_task(self._work(self._wakeup))
        future: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(items, future))
        self._wakeup.set()
        return await future

    def _next_batch(self) -> list[_Job[In, Out]]:
        jobs = [self._pending.popleft()]
        size = len(jobs[0].items)
        while self._pending and size + len(self._pending[0].items) <= self.max_batch_size:
            jobs.append(self._pending.popleft())
            size += len(jobs[-1].items)
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
