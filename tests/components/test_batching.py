"""MicroBatcher: capacity is admitted, and a time limit counts only the work itself."""

from __future__ import annotations

import asyncio
import threading

import pytest

from guard.components.batching import MicroBatcher, QueueFull


def gated_model(gate: threading.Event, seen: list[list[int]]):  # type: ignore[no-untyped-def]
    def run(items: list[int]) -> list[int]:
        seen.append(list(items))
        gate.wait(5)
        return [i * 10 for i in items]

    return run


async def started(seen: list[list[int]], count: int = 1) -> None:
    """Until the model has been handed ``count`` batches (bounded: 10 s)."""
    for _ in range(1000):
        if len(seen) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never started")


def test_a_full_queue_sheds_at_once_and_later_work_still_runs() -> None:
    async def scenario() -> tuple[list[object], list[list[int]]]:
        gate, seen = threading.Event(), []
        batcher: MicroBatcher[int, int] = MicroBatcher(gated_model(gate, seen), max_queued=3)
        first = asyncio.create_task(batcher.submit([1]))
        await started(seen)  # the worker holds [1] at the gate
        queued = asyncio.create_task(batcher.submit([2, 3]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit([4, 5])  # 2 waiting + 2 more > 3
        gate.set()
        results = [await first, await queued, await batcher.submit([6])]
        await batcher.aclose()
        return results, seen

    results, seen = asyncio.run(scenario())
    assert results == [[10], [20, 30], [60]]
    assert [4, 5] not in seen and [4] not in seen


def test_waiting_for_the_worker_is_load_and_the_time_limit_counts_only_the_work() -> None:
    async def scenario() -> tuple[type[BaseException] | None, list[int]]:
        gate, seen = threading.Event(), []
        batcher: MicroBatcher[int, int] = MicroBatcher(gated_model(gate, seen))
        busy = asyncio.create_task(batcher.submit([1]))
        await started(seen)
        shed: type[BaseException] | None = None
        try:
            await batcher.submit([2], timeout_s=60, queue_timeout_s=0.05)
        except QueueFull:
            shed = QueueFull
        # A job that waits longer than its own time limit, then runs quickly, succeeds:
        waiting = asyncio.create_task(batcher.submit([3], timeout_s=0.5, queue_timeout_s=10))
        await asyncio.sleep(0.8)
        gate.set()
        done = [*(await busy), *(await waiting)]
        await batcher.aclose()
        return shed, done

    shed, done = asyncio.run(scenario())
    assert shed is QueueFull
    assert done == [10, 30]


def test_work_that_overruns_its_limit_times_out() -> None:
    async def scenario() -> None:
        gate, seen = threading.Event(), []
        batcher: MicroBatcher[int, int] = MicroBatcher(gated_model(gate, seen))
        with pytest.raises(TimeoutError):
            await batcher.submit([1], timeout_s=0.05)  # the gate is shut: it cannot finish
        gate.set()
        assert await batcher.submit([2], timeout_s=5) == [20]
        await batcher.aclose()

    asyncio.run(scenario())
