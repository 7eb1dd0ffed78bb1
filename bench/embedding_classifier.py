"""Speed of the built-in ``embedding`` classifier (packaged MiniLM plus the shipped head).

For each prompt set:

* single: one prompt per call through ``EmbeddingClassifier.classify`` (the batcher
  path a rail takes), one call at a time; p50 and p99 latency;
* batch 32: ``EmbeddingModel.predict`` on lists of 32 prompts; prompts per second;
* concurrency 32: 32 coroutines, each classifying one prompt at a time in a closed
  loop through the micro-batcher; prompts per second and the mean batch size formed.

Process CPU time is reported beside wall time: on a machine shared with other jobs,
wall time measures the neighbours too, while CPU time with ``--threads 1`` is close to
the wall time the same work takes on an idle core.

Prompt sets (from ``guard.datasets``, whole files, in file order): ``short`` is
XSTest + AdvBench + JBB behaviours + SimpleSafetyTests (typical chat prompts, about
15 tokens), ``moderation`` is openai_moderation (forum comments, about 100 tokens,
cut to the model's 128).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embedding_classifier.py [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard import datasets  # noqa: E402
from guard.components.base import Subject  # noqa: E402
from guard.components.embedding import EmbeddingClassifier  # noqa: E402
from guard.components.specs import EmbeddingSpec  # noqa: E402

SETS = {
    "short": ("xstest", "advbench", "jbb_behaviors", "simplesafetytests"),
    "moderation": ("openai_moderation",),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def single(classifier: EmbeddingClassifier, texts: list[str]) -> dict[str, float]:
    for text in texts[:5]:
        await classifier.classify([Subject(text)])
    latencies, cpu = [], []
    for text in texts:
        started, cpu_started = time.perf_counter(), time.process_time()
        await classifier.classify([Subject(text)])
        latencies.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies),
        "cpu_p50_ms": statistics.median(cpu),
    }


def batched(classifier: EmbeddingClassifier, texts: list[str], size: int) -> dict[str, float]:
    classifier.model.predict(texts[:size])
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), size):
        classifier.model.predict(texts[start : start + size])
    return {
        "prompts_per_s": len(texts) / (time.perf_counter() - started),
        "prompts_per_cpu_s": len(texts) / (time.process_time() - cpu_started),
    }


async def concurrent(
    classifier: EmbeddingClassifier, texts: list[str], workers: int
) -> dict[str, float]:
    queue = list(reversed(texts))

    async def worker() -> None:
        while queue:
            await classifier.classify([Subject(queue.pop())])

    await classifier.classify([Subject(t) for t in texts[:workers]])
    classifier.batcher.batch_sizes.clear()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - started
    sizes = list(classifier.batcher.batch_sizes)
    return {"prompts_per_s": len(texts) / elapsed, "mean_batch": statistics.fmean(sizes)}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    classifier = EmbeddingClassifier(EmbeddingSpec(kind="embedding"))
    load_s = time.perf_counter() - started
    results: dict[str, Any] = {"load_s": load_s}
    for name in args.sets:
        texts = [row.text for source in SETS[name] for row in datasets.load(source)]
        texts = texts[: args.limit] if args.limit else texts
        tokens = [len(ids) for ids in classifier.model.tokenize(texts)]
        results[name] = {
            "prompts": len(texts),
            "mean_tokens": statistics.fmean(tokens),
            "single": await single(classifier, texts[: args.single]),
            "batch_32": batched(classifier, texts, 32),
            "concurrency_32": await concurrent(classifier, texts, 32),
        }
    await classifier.aclose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--single", type=int, default=200, help="prompts timed one at a time")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N prompts")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print("$ " + shlex.join([Path(sys.executable).name, *sys.argv]))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )
    results = asyncio.run(measure(args))
    print(f"model load: {results['load_s']:.2f} s")
    for name in args.sets:
        r = results[name]
        print(
            f"{name:10s} {r['prompts']:5d} prompts, {r['mean_tokens']:5.1f} tokens | "
            f"single p50 {r['single']['p50_ms']:6.1f} ms p99 {r['single']['p99_ms']:6.1f} ms "
            f"(CPU {r['single']['cpu_p50_ms']:.1f} ms) | "
            f"batch 32 {r['batch_32']['prompts_per_s']:6.0f}/s "
            f"({r['batch_32']['prompts_per_cpu_s']:.0f} per CPU-s) | "
            f"concurrency 32 {r['concurrency_32']['prompts_per_s']:6.0f}/s "
            f"(mean batch {r['concurrency_32']['mean_batch']:.1f})"
        )
    print(f"load average after {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
