"""Why int8 ran slower through a rail: one MiniLM call, in the main thread and in a worker.

One call of ``EmbeddingModel.logits_of_ids`` on ``--texts`` texts of ``--tokens`` tokens,
for int8 and float32, with torch's thread count (``single_threaded`` off, as int8 ran
before) and with int8's one thread a call (``one_thread``, as int8 runs now). Each is
timed in three places, in this order:

1. the main thread, before any other thread has used torch;
2. a worker thread (a ``MicroBatcher``'s, as a rail runs it);
3. the main thread again, the worker still alive.

Configurations alternate within each place, ``--repeat`` calls each; medians of wall
and process CPU time. The load average is printed before and after: the machine is
shared, so compare rows of one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/int8_threads.py [--texts 32] [--tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard.components.batching import MicroBatcher  # noqa: E402
from guard.components.embedding import EmbeddingModel  # noqa: E402

PLACES = ("main, alone", "worker", "main, worker alive")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print("load average before:", *(f"{x:.2f}" for x in os.getloadavg()))
    int8, float32 = EmbeddingModel.load(precision="int8"), EmbeddingModel.load()
    configs = {
        "int8, torch's count": (int8, False),
        "int8, one thread": (int8, True),
        "float32, torch's count": (float32, False),
    }
    # Distinct texts: the encoder runs each one (``SharedPooling`` runs a repeated one once).
    ids = [[101, *range(2000 + i, 2000 + i + args.tokens - 2), 102] for i in range(args.texts)]

    def timed(name: str) -> tuple[float, float]:
        model, single = configs[name]
        model.single_threaded = single
        wall, cpu = time.perf_counter(), time.process_time()
        model.logits_of_ids(ids)
        return time.perf_counter() - wall, time.process_time() - cpu

    batcher: MicroBatcher[str, tuple[float, float]] = MicroBatcher(
        lambda names: [timed(name) for name in names], max_batch_size=1
    )
    loop = asyncio.new_event_loop()

    def run(place: str, name: str) -> tuple[float, float]:
        if place == "worker":
            [result] = loop.run_until_complete(batcher.submit([name]))
            return result
        return timed(name)

    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for place in PLACES:
        for name in configs:
            run(place, name)  # warm-up
        for _ in range(args.repeat):
            for name in configs:
                results.setdefault((place, name), []).append(run(place, name))
    loop.run_until_complete(batcher.aclose())
    print("load average after:", *(f"{x:.2f}" for x in os.getloadavg()))
    print(f"\n{args.texts} texts x {args.tokens} tokens, median of {args.repeat} calls\n")
    print("| place | configuration | wall ms | CPU ms |\n|---|---|---:|---:|")
    for (place, name), runs in results.items():
        wall = statistics.median(r[0] for r in runs) * 1000
        cpu = statistics.median(r[1] for r in runs) * 1000
        print(f"| {place} | {name} | {wall:.0f} | {cpu:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
