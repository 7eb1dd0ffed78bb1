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


async def gathered_in_order(**jobs: asyncio.Task[list[int]]) -> list[str]:
    """The names of ``jobs`` in the order they finished."""
    order: list[str] = []
    for name, task in jobs.items():
        task.add_done_callback(lambda _, name=name: order.append(name))  # type: ignore[misc]
    await asyncio.gather(*jobs.values())
    return order


def test_a_small_job_finishes_while_a_big_one_is_still_being_worked_through() -> None:
    async def scenario() -> tuple[list[str], list[list[int]], list[int], list[int]]:
        gate, seen = threading.Event(), []
        batcher: MicroBatcher[int, int] = MicroBatcher(gated_model(gate, seen), max_batch_size=4)
        big = asyncio.create_task(batcher.submit(list(range(1000, 1300))))
        await started(seen)  # the worker holds the big job's first batch at the gate
        small = asyncio.create_task(batcher.submit([7]))
        await asyncio.sleep(0)
        gate.set()
        order = await gathered_in_order(small=small, big=big)
        await batcher.aclose()
        return order, seen, big.result(), small.result()

    order, seen, big, small = asyncio.run(scenario())
    assert order == ["small", "big"]
    assert seen[0] == [1000, 1001, 1002, 1003]
    # It waited for the batch in progress only, and shared the next one: at most half of
    # it (4 / 2 jobs) was the big job's, so that batch was quicker, too.
    assert seen[1] == [1004, 7, 1005]
    assert len(seen) > 70 and max(len(batch) for batch in seen) <= 4
    assert small == [70] and big == [i * 10 for i in range(1000, 1300)]


def test_each_batch_takes_a_fair_share_from_every_waiting_job_in_turn() -> None:
    async def scenario() -> tuple[list[list[int]], list[list[int]]]:
        gate, seen = threading.Event(), []
        batcher: MicroBatcher[int, int] = MicroBatcher(gated_model(gate, seen), max_batch_size=4)
        first = asyncio.create_task(batcher.submit([0]))
        await started(seen)
        jobs = [list(range(100, 110)), list(range(200, 210)), [300]]
        tasks = [asyncio.create_task(batcher.submit(job)) for job in jobs]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(first, *tasks)
        await batcher.aclose()
        return seen, results

    seen, results = asyncio.run(scenario())
    assert seen == [
        [0],
        [100, 200, 300, 101],  # one each in turn, none past its share (4 / 3 jobs: 2)
        [201, 102, 202, 103],  # the job that gave least goes first
        [203, 104, 204, 105],
        [205, 106, 206, 107],
        [207, 108, 208, 109],
        [209],
    ]
    assert results == [
        [0],
        [i * 10 for i in range(100, 110)],
        [i * 10 for i in range(200, 210)],
        [3000],
    ]


def test_one_big_job_waiting_gets_no_small_job_refused_but_a_second_big_one_is() -> None:
    async def scenario() -> tuple[list[int], list[int], list[list[int]]]:
        gate, seen = threading.Event(), []
        batcher: MicroBatcher[int, int] = MicroBatcher(
            gated_model(gate, seen), max_batch_size=4, max_queued=10
        )
        big = asyncio.create_task(batcher.submit(list(range(100, 150))))
        await started(seen)  # 46 of its items wait: more than max_queued
        small = asyncio.create_task(batcher.submit([7, 8]))  # 2 + 2 of the big one's ahead
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(list(range(200, 220)))  # 20 + 20 of the big one's ahead
        gate.set()
        results = [await small, await big]
        await batcher.aclose()
        return results[0], results[1], seen

    small, big, seen = asyncio.run(scenario())
    assert small == [70, 80] and big == [i * 10 for i in range(100, 150)]
    assert not any(item >= 200 for batch in seen for item in batch)


def test_a_job_whose_caller_stops_waiting_leaves_the_queue() -> None:
    async def scenario() -> tuple[int, list[list[int]]]:
        gate, seen = threading.Event(), []
        batcher: MicroBatcher[int, int] = MicroBatcher(gated_model(gate, seen), max_batch_size=4)
        with pytest.raises(TimeoutError):
            await batcher.submit(list(range(100, 140)), timeout_s=0.05)  # held at the gate
        cancelled = asyncio.create_task(batcher.submit(list(range(200, 240))))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        waiting = batcher.queued
        gate.set()
        assert await batcher.submit([7]) == [70]
        await batcher.aclose()
        return waiting, seen

    waiting, seen = asyncio.run(scenario())
    assert waiting == 0
    assert seen == [[100, 101, 102, 103], [7]]  # nothing more of either ran


def test_a_failing_batch_fails_its_jobs_and_runs_no_more_of_them() -> None:
    seen: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        seen.append(list(items))
        if -1 in items:
            raise ValueError("the model failed")
        return [i * 10 for i in items]

    async def scenario() -> tuple[BaseException | list[int], ...]:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch_size=4)
        outcomes = await asyncio.gather(
            batcher.submit([1, -1, *range(2, 20)]),
            batcher.submit([5, 6]),
            return_exceptions=True,
        )
        after = await batcher.submit(list(range(30, 40)))
        await batcher.aclose()
        return (*outcomes, after)

    failed, bystander, after = asyncio.run(scenario())
    assert isinstance(failed, ValueError) and isinstance(bystander, ValueError)
    assert seen[0] == [1, 5, -1, 6] and not any(2 in batch for batch in seen)
    assert after == [i * 10 for i in range(30, 40)]


def test_batches_hold_at_most_their_cost_and_shares_are_counted_in_cost() -> None:
    """An item's cost here is its hundreds digit: 500 costs 5, 900 costs 9."""

    async def scenario() -> list[list[int]]:
        gate, seen = threading.Event(), []
        batcher: MicroBatcher[int, int] = MicroBatcher(
            gated_model(gate, seen), max_batch_size=8, cost=lambda i: i // 100, max_batch_cost=10
        )
        first = asyncio.create_task(batcher.submit([500]))
        await started(seen)
        jobs = [[400, 401, 402, 403], list(range(100, 106)), [900]]
        tasks = [asyncio.create_task(batcher.submit(job)) for job in jobs]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, *tasks)
        await batcher.aclose()
        return seen

    assert asyncio.run(scenario()) == [
        [500],
        [400, 100, 101, 102, 103],  # shares of 4 (10 / 3 jobs); 900 did not fit
        [900, 104],  # so it goes first; 400's next did not fit either
        [401, 105],
        [402, 403],
    ]


def test_a_job_whose_item_did_not_fit_goes_first_next_time() -> None:
    """Costs as above. Else a costly item could wait forever behind cheap ones."""

    async def scenario() -> list[list[int]]:
        gate, seen = threading.Event(), []
        batcher: MicroBatcher[int, int] = MicroBatcher(
            gated_model(gate, seen), max_batch_size=3, cost=lambda i: i // 100, max_batch_cost=10
        )
        first = asyncio.create_task(batcher.submit([500]))
        await started(seen)
        jobs = [[200, 201, 202], [900], [110, 111, 112]]
        tasks = [asyncio.create_task(batcher.submit(job)) for job in jobs]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, *tasks)
        await batcher.aclose()
        return seen

    assert asyncio.run(scenario()) == [[500], [200, 110, 201], [900, 111], [202, 112]]
