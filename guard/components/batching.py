"""Batch CPU-bound model calls across concurrent requests, off the event loop, fairly.

Callers ``await batcher.submit(items)``: a job. One worker runs the model function in a
thread (the batcher's own, or one it shares with other batchers: ``threads.model_thread``);
while it runs, new jobs queue up and go together into the next call. So a lone
request pays no waiting, and under load the batches grow by themselves, up to
``max_batch_size`` items and ``max_batch_cost`` (with ``cost`` an item's share of the
work, such as its tokens; by default each item costs 1 and the two limits are one).

A batch is shared out among the waiting jobs, round-robin: each gives one item in
turn, and none more than its fair share of the cost, ``max_batch_cost`` divided by the
jobs waiting (rounded up). A job whose next item did not fit goes first next time, the
jobs that gave their share go last. So a job of thousands of items (a long text in
windows, see ``submit_in_pieces``) runs as many batches, and a small job that arrives
meanwhile waits for the batch in progress, then shares the next one. A job's outputs
come back, in order, when the last of its items is done; a batch that fails fails
every job with an item in it, and none of their other items run.

Capacity is admitted, not assumed:

* ``max_queued``: a job is refused (``QueueFull``) when the work queued ahead of its
  last item would exceed it: its own items plus, from each job already waiting, as
  many as it has itself (round-robin serves them side by side; a bigger job's surplus
  runs after). So a small job is never refused because one big job waits, while a big
  one that arrives behind others is. A job that finds nothing waiting is admitted
  whatever its size.
* ``queue_timeout_s``: a job whose first item has not started by then is refused
  (``QueueFull``), and its items not yet handed to the model never run (on a shared
  thread, an item starts when its model call begins, after any other batcher's call
  ahead of it). Both are load, never a verdict.
* ``timeout_s`` counts only the job's own work: from its first item's start to its last
  item's end (``TimeoutError``). A job whose caller stops waiting, by a time-out or by
  being cancelled, leaves the queue: its remaining items never run.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")
Result = TypeVar("Result")


PIECES_QUEUED = 65_536
"""``max_queued`` for classifiers that submit a text's windows: about eight of the longest
texts a policy judges (``inputs.max_chars``: 262,144 characters of prose make about
7,000 windows and sentences). Past it only texts behind as long ones are refused."""


ON_LOOP_CHARS = 1_024
"""Texts this short are cut into pieces on the event loop: tokenizing them takes a few
hundred microseconds at most, less than handing them to a thread and back."""


class _Calls:
    """Calls handed to each executor and not yet over (returned, failed, or cancelled
    before they started), across batchers; and when each thread's running call began."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[int, int] = {}
        self._began: dict[int, float] = {}

    def submit(
        self, executor: ThreadPoolExecutor, call: Callable[[], Result]
    ) -> tuple[bool, asyncio.Future[Result]]:
        """``call()`` on ``executor``, awaitable; and whether the executor had no call
        (then this one starts at once)."""
        with self._lock:
            before = self._count.get(id(executor), 0)
            self._count[id(executor)] = before + 1
        submitted = executor.submit(self._timed, call)
        submitted.add_done_callback(lambda _: self._over(executor))
        return before == 0, asyncio.wrap_future(submitted)

    def oldest_began(self) -> float | None:
        """When (``time.monotonic``) the oldest call still running began; None with none."""
        with self._lock:
            return min(self._began.values(), default=None)

    def _timed(self, call: Callable[[], Result]) -> Result:
        thread = threading.get_ident()
        with self._lock:
            self._began[thread] = time.monotonic()
        try:
            return call()
        finally:
            with self._lock:
                del self._began[thread]

    def _over(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            left = self._count[id(executor)] - 1
            if left:
                self._count[id(executor)] = left
            else:
                del self._count[id(executor)]


_calls = _Calls()


def oldest_model_call() -> float | None:
    """When (``time.monotonic``) the oldest model call still running began, over every
    batcher's thread; None with none running. A call that never returns holds its
    thread, and every rail that shares it, for good."""
    return _calls.oldest_began()


class QueueFull(Exception):
    """The classifier cannot start this work in time; the caller should shed the request."""


@dataclass(eq=False)
class _Job(Generic[In, Out]):
    items: Sequence[In]
    future: asyncio.Future[list[Out]]
    started: asyncio.Event = field(default_factory=asyncio.Event)
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float = 0.0
    """When its first item started (``time.monotonic``), once ``started`` is set."""
    taken: int = 0
    """Items handed to the model so far; they are taken in order."""
    finished: int = 0
    outputs: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outputs = [None] * len(self.items)

    @property
    def waiting(self) -> int:
        return len(self.items) - self.taken


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self,
        run: Callable[[list[In]], list[Out]],
        max_batch_size: int = 32,
        name: str = "model",
        max_queued: int = 4096,
        cost: Callable[[In], int] | None = None,
        max_batch_cost: int | None = None,
        executor: ThreadPoolExecutor | None = None,
    ):
        """``run`` is called on ``executor`` (shared, never shut down here:
        ``threads.model_thread``), or on a thread of the batcher's own."""
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_queued = max_queued
        self._cost = cost or _one
        self.max_batch_cost = max_batch_cost or max_batch_size
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"guard-{name}"
        )
        self._pending: deque[_Job[In, Out]] = deque()
        """Jobs with items not yet taken, in the order they are served next."""
        self._unresolved: set[_Job[In, Out]] = set()
        self._queued_items = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batch_sizes: deque[int] = deque(maxlen=1000)
        """Sizes of the latest batches run, to observe batching."""
        self.waits_s: deque[float] = deque(maxlen=1000)
        """How long the latest jobs waited for their first item to start, to observe queueing."""

    @property
    def queued(self) -> int:
        """Items waiting for the worker now."""
        return self._queued_items

    @property
    def jobs_waiting(self) -> int:
        """Jobs with items waiting for the worker now."""
        return len(self._pending)

    def work_ahead(self, count: int) -> int:
        """Items that would run before the last of a new job of ``count`` items."""
        return count + sum(min(job.waiting, count) for job in self._pending)

    async def submit(
        self,
        items: Sequence[In],
        timeout_s: float | None = None,
        queue_timeout_s: float | None = None,
    ) -> list[Out]:
        """The model's outputs for ``items``. ``QueueFull`` when the work cannot start
        (too much work ahead of it, or not started within ``queue_timeout_s``);
        ``TimeoutError`` when it started but took longer than ``timeout_s``."""
        outputs, _ = await self.submit_timed(items, timeout_s, queue_timeout_s)
        return outputs

    async def submit_timed(
        self,
        items: Sequence[In],
        timeout_s: float | None = None,
        queue_timeout_s: float | None = None,
    ) -> tuple[list[Out], float]:
        """``submit``, and when the work started (``time.monotonic``; now when there
        were no items)."""
        if not items:
            return [], time.monotonic()
        if self._queued_items and self.work_ahead(len(items)) > self.max_queued:
            raise QueueFull(f"{self._queued_items} items already wait for the classifier")
        if self._wakeup is None or self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = asyncio.create_task(self._work(self._wakeup))
        job: _Job[In, Out] = _Job(items, asyncio.get_running_loop().create_future())
        job.future.add_done_callback(_retrieve)
        self._pending.append(job)
        self._unresolved.add(job)
        self._queued_items += len(items)
        self._wakeup.set()
        try:
            try:
                await asyncio.wait_for(job.started.wait(), queue_timeout_s)
            except TimeoutError:
                raise QueueFull(f"waited {queue_timeout_s} s for the classifier to start") from None
            outputs = await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
            return outputs, job.started_at
        finally:
            if not job.future.done():
                self._abandon(job)  # the worker runs no more of it

    def _abandon(self, job: _Job[In, Out]) -> None:
        job.future.cancel()
        job.started.set()  # a caller still waiting for the start reads the outcome
        self._unresolved.discard(job)
        if job in self._pending:
            self._pending.remove(job)
            self._queued_items -= job.waiting

    def _next_batch(self) -> list[tuple[_Job[In, Out], int]]:
        """(job, item index) pairs for the next model call, taken round-robin."""
        share = math.ceil(self.max_batch_cost / len(self._pending))
        batch: list[tuple[_Job[In, Out], int]] = []
        cost = 0
        given: dict[_Job[In, Out], int] = {}
        skipped: list[_Job[In, Out]] = []
        """Jobs whose next item did not fit in this batch: they go first next time."""
        served: list[_Job[In, Out]] = []
        """Jobs that gave their share: they go last."""
        while self._pending and len(batch) < self.max_batch_size:
            job = self._pending.popleft()
            item_cost = self._cost(job.items[job.taken])
            fits = not batch or cost + item_cost <= self.max_batch_cost
            if not fits or (job in given and given[job] + item_cost > share):
                (served if job in given else skipped).append(job)
                continue
            batch.append((job, job.taken))
            job.taken += 1
            cost += item_cost
            given[job] = given.get(job, 0) + item_cost
            if job.waiting:
                self._pending.append(job)
        self._pending.extendleft(reversed(skipped))
        self._pending.extend(served)
        self._queued_items -= len(batch)
        return batch

    async def _work(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await wakeup.wait()
            wakeup.clear()
            while self._pending:
                batch = self._next_batch()
                first = [job for job, index in batch if index == 0]
                items = [job.items[index] for job, index in batch]
                call = partial(self._call, loop, first, items)
                idle, running = _calls.submit(self._executor, call)
                if idle:  # it starts now: no other call is ahead of it
                    self._started(first, time.monotonic())
                try:
                    outputs = await running
                    if len(outputs) != len(items):
                        raise RuntimeError(f"model gave {len(outputs)} results for {len(items)}")
                except Exception as exc:
                    for job, _ in batch:
                        if not job.future.done():
                            job.future.set_exception(exc)
                            self._abandon(job)
                    continue
                self.batch_sizes.append(len(items))
                for (job, index), output in zip(batch, outputs, strict=True):
                    job.outputs[index] = output
                    job.finished += 1
                    if job.finished == len(job.items) and not job.future.done():
                        job.future.set_result(job.outputs)
                        self._unresolved.discard(job)

    async def beside(self, call: Callable[[], Result]) -> Result:
        """``call()`` on the thread the model runs on, after the calls ahead of it: work
        that may use torch (combining a long text's pieces), kept off other threads
        (``threads``)."""
        _, running = _calls.submit(self._executor, call)
        return await running

    def _call(
        self, loop: asyncio.AbstractEventLoop, first: list[_Job[In, Out]], items: list[In]
    ) -> list[Out]:
        """The model on ``items``, on the executor. The ``first`` jobs start when this
        call does, not when their batch was formed: on a shared executor busy with another
        call, this one waits its turn."""
        loop.call_soon_threadsafe(self._started, first, time.monotonic())
        return self._run(items)

    def _started(self, jobs: list[_Job[In, Out]], at: float) -> None:
        """Marks the jobs started (those not already marked, or given up)."""
        for job in jobs:
            if not job.started.is_set() and not job.future.done():
                job.started_at = at
                job.started.set()
                self.waits_s.append(at - job.queued_at)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for job in list(self._unresolved):
            self._abandon(job)
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


async def submit_in_pieces(
    batcher: MicroBatcher[In, Out],
    texts: Sequence[str],
    expand: Callable[[], Sequence[Sequence[In]]],
    combine: Callable[[list[list[Out]]], Result],
    timeout_s: float | None = None,
    queue_timeout_s: float | None = None,
) -> Result:
    """``combine`` of the outputs of each text's pieces. ``expand`` cuts the ``texts``
    into pieces (a long text into windows): tokenizing, CPU work that grows with the
    text, so it runs in a thread, off the event loop (unless the texts are shorter than
    ``ON_LOOP_CHARS``), and its time counts towards ``timeout_s``. All the pieces go to
    the batcher as one job. ``combine`` runs on the model's thread when they were more
    than one batch, after the calls ahead of it there, within what is left of
    ``timeout_s``: cutting, the pieces' work and combining share the one limit (the
    pieces' wait for their first batch does not count, as in ``submit``). Behind a model
    call that never returns, the caller gets ``TimeoutError``, not a wait without end."""
    began = time.monotonic()
    if sum(len(text) for text in texts) <= ON_LOOP_CHARS:
        groups = expand()
    else:
        groups = await asyncio.to_thread(expand)
    if timeout_s is not None:
        timeout_s -= time.monotonic() - began
        if timeout_s <= 0:
            raise TimeoutError("cutting the texts into pieces took the whole time limit")
    flat, started = await batcher.submit_timed(
        [piece for group in groups for piece in group], timeout_s, queue_timeout_s
    )
    per_text, start = [], 0
    for group in groups:
        per_text.append(flat[start : start + len(group)])
        start += len(group)
    if len(flat) > batcher.max_batch_size:
        if timeout_s is not None:
            timeout_s -= time.monotonic() - started
            if timeout_s <= 0:
                raise TimeoutError("the pieces took the whole time limit")
        return await asyncio.wait_for(batcher.beside(partial(combine, per_text)), timeout_s)
    return combine(per_text)


def _one(item: object) -> int:
    return 1


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a job's failure as seen: its caller may have stopped waiting (a time-out)."""
    if not future.cancelled():
        future.exception()
