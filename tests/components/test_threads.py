"""Where torch runs: one model thread for every batcher, and loads that leave no OpenMP
team behind."""

from __future__ import annotations

import asyncio
import threading

import pytest

from guard.components.batching import MicroBatcher
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
