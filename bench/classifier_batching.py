"""hf_classifier throughput: concurrent requests batched by guard vs one at a time.

The classifier is SmolLM2-135M (the converted demo model) with a fresh 2-label head:
a real 135M-parameter transformer, the size of Prompt Guard 86M-class classifiers,
so the compute is realistic even though its verdicts are not. Prompts are the XSTest
dev prompts. Each call classifies one prompt, as a request would; with concurrency C,
C calls are in flight and guard's MicroBatcher merges them into batches.

    .venv/bin/python bench/classifier_batching.py [--prompts 128] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from guard import datasets
from guard.components.base import Subject
from guard.components.hf_classifier import HFClassifier
from guard.components.specs import HFClassifierSpec
from guard.demo.model import ensure_demo_model
from guard.eval import percentile


def make_classifier(folder: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = ensure_demo_model()
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "safe", 1: "unsafe"}, label2id={"safe": 0, "unsafe": 1}
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


async def run(classifier: HFClassifier, prompts: list[str], concurrency: int) -> dict[str, float]:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(prompt: str) -> None:
        async with semaphore:
            started = time.perf_counter()
            await classifier.classify([Subject(prompt)])
            latencies.append((time.perf_counter() - started) * 1000)

    classifier.batcher.batch_sizes.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    wall = time.perf_counter() - started
    sizes = list(classifier.batcher.batch_sizes)
    return {
        "prompts_per_s": len(prompts) / wall,
        "p50_ms": percentile(latencies, 50) or 0.0,
        "p99_ms": percentile(latencies, 99) or 0.0,
        "mean_batch": sum(sizes) / len(sizes),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch-size", type=int, default=32)
    args = parser.parse_args()
    prompts = [e.text for e in datasets.load("xstest")][: args.prompts]
    with tempfile.TemporaryDirectory() as folder:
        spec = HFClassifierSpec(
            kind="hf_classifier",
            model=str(make_classifier(Path(folder))),
            thresholds={"unsafe": 0.5},
            max_batch_size=args.max_batch_size,
        )
        classifier = HFClassifier(spec)
        await classifier.classify([Subject("warm up")])
        rows = [(c, await run(classifier, prompts, c)) for c in args.concurrency]
        await classifier.aclose()
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{len(prompts)} XSTest prompts, max_batch_size {args.max_batch_size}\n"
    )
    print("| concurrency | prompts/s | vs 1 | p50 ms | p99 ms | mean batch |")
    print("|---:|---:|---:|---:|---:|---:|")
    base = rows[0][1]["prompts_per_s"]
    for concurrency, row in rows:
        print(
            f"| {concurrency} | {row['prompts_per_s']:.1f} | {row['prompts_per_s'] / base:.2f}x"
            f" | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['mean_batch']:.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
