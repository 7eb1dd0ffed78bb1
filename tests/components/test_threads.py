"""Where torch runs: one model thread for every batcher, and loads that leave no OpenMP
team behind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from guard.components.batching import MicroBatcher, QueueFull, submit_in_pieces
from guard.components.threads import load_alone, model_thread


def test_batchers_on_the_model_thread_share_it_and_closing_one_leaves_it_running() -> None:
    threads: list[str] = []

    def run(items: list[int]) -> list[int]:
        threads.append(threading.current_thread().name)
        return [i + 1 for i in items]

    async def scenario() -> list[list[int]]:
        first: MicroBatcher[int, int] = MicroBatcher(run, executor=model_thread())
        second: MicroBatcher[int, int] = MicroBatcher(run, executor=model_thread())
        out = [await first.submit([1]), await second.submit([2])]
        await first.aclose()
        out.append(await second.submit([3]))
        await second.aclose()
        return out

    assert asyncio.run(scenario()) == [[2], [3], [4]]
    assert len(set(threads)) == 1 and threads[0].startswith("guard-model")


def test_a_model_loads_on_its_thread_alone_and_the_thread_keeps_its_count() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert load_alone(torch.get_num_threads) == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class Held:
    """A thread shared by batchers, and a model call that holds it until ``gate`` opens."""

    def __init__(self) -> None:
        self.shared = ThreadPoolExecutor(max_workers=1)
        self.gate = threading.Event()

    def gated(self, items: list[int]) -> list[int]:
        self.gate.wait(10)
        return items


@pytest.fixture
def held() -> Iterator[Held]:
    holding = Held()
    try:
        yield holding
    finally:
        holding.gate.set()
        holding.shared.shutdown(wait=True)


def test_waiting_behind_another_batchers_call_is_load_not_the_jobs_own_work(held: Held) -> None:
    """On a shared thread a job starts when its call does: waiting behind another
    batcher's long call is queueing (``QueueFull``), not a time-out of its own work."""
    shared, gate = held.shared, held.gate

    async def scenario() -> None:
        long: MicroBatcher[int, int] = MicroBatcher(held.gated, executor=shared)
        short: MicroBatcher[int, int] = MicroBatcher(lambda items: items, executor=shared)
        holding = asyncio.create_task(long.submit([1]))
        await asyncio.sleep(0.05)  # the long call holds the shared thread
        with pytest.raises(QueueFull):
            await short.submit([2], timeout_s=0.5, queue_timeout_s=0.1)
        gate.set()
        assert await holding == [1]
        assert await short.submit([3], timeout_s=5, queue_timeout_s=5) == [3]
        assert short.waits_s[-1] < 1  # [3]'s: the refused job's wait is not recorded
        assert len(short.waits_s) == 1
        await long.aclose()
        await short.aclose()

    asyncio.run(scenario())


def test_closing_one_batcher_leaves_the_others_work_on_the_shared_thread(held: Held) -> None:
    shared, gate = held.shared, held.gate

    async def scenario() -> list[int]:
        closing: MicroBatcher[int, int] = MicroBatcher(held.gated, executor=shared)
        staying: MicroBatcher[int, int] = MicroBatcher(held.gated, executor=shared)
        abandoned = asyncio.create_task(closing.submit([1]))
        kept = asyncio.create_task(staying.submit([2]))
        await asyncio.sleep(0.05)  # one call runs, the other waits its turn
        await closing.aclose()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        result = await kept
        await staying.aclose()
        return result

    assert asyncio.run(scenario()) == [2]


def test_a_long_texts_pieces_are_combined_on_the_models_thread() -> None:
    """Combining may use torch: on another thread it would make a second OpenMP team."""
    ran: list[str] = []

    def run(items: list[int]) -> list[int]:
        ran.append(threading.current_thread().name)
        return items

    def combine(per_text: list[list[int]]) -> list[int]:
        ran.append(threading.current_thread().name)
        return [sum(pieces) for pieces in per_text]

    async def scenario() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch_size=8, name="pieces")
        try:
            return await submit_in_pieces(batcher, ["a long text"], lambda: [range(40)], combine)
        finally:
            await batcher.aclose()

    assert asyncio.run(scenario()) == [sum(range(40))]
    assert len(ran) == 6 and len(set(ran)) == 1 and ran[0].startswith("guard-pieces")


def test_combining_behind_a_model_call_that_never_returns_times_out() -> None:
    """The rails give classifiers that time themselves no limit of their own: combining
    must not wait without end behind a hung call on the model's thread."""
    executor = ThreadPoolExecutor(max_workers=1)
    hung = threading.Event()
    release = threading.Event()

    def hang() -> None:
        hung.set()
        release.wait(30)

    def run(items: list[int]) -> list[int]:
        if items[-1] == 39:  # the last batch queues a call that hangs, ahead of combining
            executor.submit(hang)
        return items

    def combine(per_text: list[list[int]]) -> list[int]:
        return [sum(pieces) for pieces in per_text]

    batches = timed_out_in_pieces(executor, run, combine, pieces=40, timeout_s=2, release=release)
    assert len(batches) == 5 and hung.is_set()  # the pieces all ran


def test_combining_gets_what_the_pieces_left_of_the_time_limit() -> None:
    """Cutting, the pieces and combining share one ``timeout_s``: pieces that take half of
    it leave combining the rest, not a fresh limit of its own."""
    executor = ThreadPoolExecutor(max_workers=1)
    combining, release = threading.Event(), threading.Event()

    def run(items: list[int]) -> list[int]:
        time.sleep(1.0)
        return items

    def combine(per_text: list[list[int]]) -> list[int]:
        combining.set()
        release.wait(3.0)  # within a fresh 4 s; past the 2 s the pieces leave
        return [sum(pieces) for pieces in per_text]

    timed_out_in_pieces(executor, run, combine, pieces=16, timeout_s=4, release=release)
    assert combining.is_set()  # the pieces were done: combining ran out of time


def timed_out_in_pieces(
    executor: ThreadPoolExecutor,
    run: Callable[[list[int]], list[int]],
    combine: Callable[[list[list[int]]], list[int]],
    pieces: int,
    timeout_s: float,
    release: threading.Event,
) -> list[int]:
    """``submit_in_pieces`` of one text of ``pieces`` pieces in batches of 8 on
    ``executor``, which must time out; then ``release`` is set and the executor shut
    down. The sizes of the batches that ran."""

    async def scenario() -> list[int]:
        batcher = MicroBatcher(run, max_batch_size=8, name="pieces", executor=executor)
        try:
            with pytest.raises(TimeoutError):
                await submit_in_pieces(
                    batcher, ["a long text"], lambda: [range(pieces)], combine, timeout_s
                )
            return list(batcher.batch_sizes)
        finally:
            release.set()
            await batcher.aclose()

    try:
        return asyncio.run(scenario())
    finally:
        executor.shutdown(wait=True)


TEAMS = """
import os, sys, threading
import torch
from guard.components.threads import load_alone

def threads_gained(work):
    # New thread ids, not a count: a thread joined just before may still be leaving.
    gained = []

    def body():
        before = set(os.listdir("/proc/self/task"))
        work()
        gained.append(len(set(os.listdir("/proc/self/task")) - before))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(60)
    return gained[0]

def parallel_work():
    torch.ones(1_000_000).exp().sum()

print(
    torch.get_num_threads(),
    threads_gained(lambda: load_alone(parallel_work)),
    threads_gained(parallel_work),
)
"""
"""Run in a fresh interpreter: ``torch.set_num_threads``, which other tests call, also
sets MKL's thread count for the whole process, and MKL then ignores a thread's OpenMP
limit (``threads.one_thread``)."""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_work_loaded_alone_leaves_no_openmp_threads_behind() -> None:
    """A thread that runs torch's parallel work keeps a team of OpenMP helpers while it
    lives; under ``load_alone`` it makes none."""
    pytest.importorskip("torch")
    done = subprocess.run(
        [sys.executable, "-c", TEAMS], capture_output=True, text=True, timeout=120, check=True
    )
    threads, alone, plain = (int(n) for n in done.stdout.split())
    if threads < 2:
        pytest.skip("torch runs one thread here (OMP_NUM_THREADS, affinity): it makes no team")
    assert alone == 0
    assert plain >= 1


def test_closing_a_batcher_whose_call_waits_its_turn_ends_its_callers_wait(held: Held) -> None:
    shared, gate = held.shared, held.gate

    async def scenario() -> None:
        running: MicroBatcher[int, int] = MicroBatcher(held.gated, executor=shared)
        waiting: MicroBatcher[int, int] = MicroBatcher(held.gated, executor=shared)
        holding = asyncio.create_task(running.submit([1]))
        await asyncio.sleep(0.05)  # the first call holds the shared thread
        queued = asyncio.create_task(waiting.submit([2]))  # no queue_timeout_s
        await asyncio.sleep(0.05)
        await waiting.aclose()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, 5)  # not a TimeoutError: it does end
        gate.set()
        assert await holding == [1]
        await running.aclose()

    asyncio.run(scenario())
