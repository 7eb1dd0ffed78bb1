"""Speed of the built-in ``embedding`` classifier (packaged MiniLM plus the shipped head).

For each prompt set:

* single: one prompt per call through ``EmbeddingClassifier.classify`` (the batcher
  path a rail takes), one call at a time; p50 and p99 latency;
* batch 32: ``EmbeddingModel.predict`` on lists of 32 prompts; prompts per second;
* concurrency 32: 32 coroutines, each classifying one prompt at a time in a closed
  loop through the micro-batcher; prompts per second and the mean batch size formed.

Each ``--precisions`` value (``int8`` and ``float32`` by default) is measured in the
same run, one after the other. For each, the quality part scores every row of the
evaluation sets (``QUALITY``) with the shipped threshold and reports recall, false
positive rate and, for openai_moderation, F1. These are the shipped head's in-sample
numbers; what they show is the difference int8 makes (largest change of a probability,
and how many verdicts flip), not the head's quality, which cross-validation measures.

Process CPU time is reported beside wall time: on a machine shared with other jobs,
wall time measures the neighbours too, while CPU time with ``--threads 1`` is close to
the wall time the same work takes on an idle core.

Prompt sets (from ``guard.datasets``, whole files, in file order): ``short`` is
XSTest + AdvBench + JBB behaviours + SimpleSafetyTests (typical chat prompts, about
15 tokens), ``moderation`` is openai_moderation (forum comments, about 100 tokens,
cut to the model's 128).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embedding_classifier.py [--threads 1] [--json FILE]
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
from guard.eval import binary_metrics, percentile  # noqa: E402

QUALITY = (
    "openai_moderation",
    "xstest",
    "harmbench",
    "advbench",
    "simplesafetytests",
    "jbb_harmful",
    "jbb_benign",
)
SETS = {
    "short": ("xstest", "advbench", "jbb_behaviors", "simplesafetytests"),
    "moderation": ("openai_moderation",),
}


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
    spec = classifier.spec
    read = (spec.long_texts, spec.sentence_margin, spec.sentence_min_words)
    classifier.model.predict(texts[:size], *read)
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), size):
        classifier.model.predict(texts[start : start + size], *read)
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


def quality(classifier: EmbeddingClassifier) -> dict[str, Any]:
    """Per set: every row's P(unsafe) and the metrics at the classifier's threshold."""
    results = {}
    for source in QUALITY:
        rows = datasets.load(source)
        texts = [r.text for r in rows]
        spec = classifier.spec
        predicted = classifier.model.predict(
            texts, spec.long_texts, spec.sentence_margin, spec.sentence_min_words
        )
        scores = [score.unsafe for score in predicted]
        flagged = [score >= classifier.threshold for score in scores]
        results[source] = {
            "scores": scores,
            **binary_metrics([r.unsafe for r in rows], flagged),
        }
    return results


async def measure(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    started = time.perf_counter()
    spec = EmbeddingSpec(  # limits far beyond any call: a loaded machine is slow, not failing
        kind="embedding",
        precision=precision,
        long_texts=args.long_texts,
        timeout_s=600,
        queue_timeout_s=600,
    )
    classifier = EmbeddingClassifier(spec)
    load_s = time.perf_counter() - started
    results: dict[str, Any] = {
        "load_s": load_s,
        "threshold": classifier.threshold,
        "quality": quality(classifier),
    }
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


def print_quality(results: dict[str, dict[str, Any]]) -> None:
    """Recall, false positive rate and F1 per set and precision; then how int8 differs."""
    print("| set | rows | " + " | ".join(f"{p} recall / FPR / F1" for p in results) + " |")
    for source in QUALITY:
        cells = []
        for result in results.values():
            q = result["quality"][source]
            cells.append(" / ".join(_number(q[k]) for k in ("recall", "false_positive_rate", "f1")))
        rows = next(iter(results.values()))["quality"][source]["n"]
        print(f"| {source} | {rows} | " + " | ".join(cells) + " |")
    if "int8" in results and "float32" in results:
        for source in QUALITY:
            a = results["int8"]["quality"][source]["scores"]
            b = results["float32"]["quality"][source]["scores"]
            gap = max(abs(x - y) for x, y in zip(a, b, strict=True))
            threshold = results["int8"]["threshold"]
            flips = sum((x >= threshold) != (y >= threshold) for x, y in zip(a, b, strict=True))
            print(f"int8 vs float32, {source}: largest |change| {gap:.4f}, flipped {flips}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--single", type=int, default=200, help="prompts timed one at a time")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N prompts")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--long-texts", choices=["windows", "head_and_tail"], default="windows", help="see guard"
    )
    parser.add_argument(
        "--precisions", nargs="+", default=["int8", "float32"], choices=["int8", "float32"]
    )
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
    results = {precision: asyncio.run(measure(args, precision)) for precision in args.precisions}
    for precision, result in results.items():
        print(f"[{precision}] model load: {result['load_s']:.2f} s")
        for name in args.sets:
            r = result[name]
            print(
                f"[{precision}] {name:10s} {r['prompts']:5d} prompts, {r['mean_tokens']:5.1f} "
                f"tokens | single p50 {r['single']['p50_ms']:6.1f} ms "
                f"p99 {r['single']['p99_ms']:6.1f} ms (CPU {r['single']['cpu_p50_ms']:.1f} ms) | "
                f"batch 32 {r['batch_32']['prompts_per_s']:6.0f}/s "
                f"({r['batch_32']['prompts_per_cpu_s']:.0f} per CPU-s) | "
                f"concurrency 32 {r['concurrency_32']['prompts_per_s']:6.0f}/s "
                f"(mean batch {r['concurrency_32']['mean_batch']:.1f})"
            )
    print_quality(results)
    print(f"load average after {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
