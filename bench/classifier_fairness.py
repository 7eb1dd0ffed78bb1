"""Fairness of the classifier worker: short requests while a very long text is judged.

Two scenarios, each ``--seconds`` long, against one ``EmbeddingClassifier`` (the
built-in ``embedding`` kind, shipped head) in one event loop, as guard's rails call it:

* quiet: short requests (one XSTest prompt per ``classify`` call) arrive at a steady
  ``--rate`` per second, whatever the earlier ones are doing (an open loop, as
  independent tenants send them);
* adversary: the same, while another caller judges a ``--big-chars`` text (openai
  moderation comments one after another, 300,000 characters by default) over and over,
  so that one is always being judged.

For each: p50, p99 and the largest latency of the short requests, and how many waited
longer than 10 s (the default ``queue_timeout_s``: guard would have refused them); how
long the long text takes alone (once, first), and each judgement of it that finished
during the adversary scenario.

Directly against the classifier, not through guard over HTTP: what is measured is the
worker's scheduling, and on a small machine a load generator and an upstream would
take the same cores. (guard itself refuses a text over the policy's
``inputs.max_chars``, 262,144 characters by default, with a 413; ``--big-chars
262144`` is the longest text it judges.)

The time limits are lifted (``timeout_s`` and ``queue_timeout_s`` 600 s) so that
every latency is measured rather than cut off.

``--before REV`` measures guard at that commit too, first: its ``guard/`` is taken
with ``git archive`` into a temporary folder, and each variant runs in its own
process, with the same script, data and settings.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/classifier_fairness.py --before 4173da1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 600.0
REFUSED_AFTER_S = 10.0


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One variant, in this process, with guard imported from ``args.guard_from``."""
    sys.path.insert(0, str(args.guard_from))
    import guard
    from guard.components.base import Subject
    from guard.components.embedding import EmbeddingClassifier
    from guard.components.specs import EmbeddingSpec
    from guard.eval import percentile

    texts = json.loads(args.texts.read_text())
    shorts: list[str] = texts["shorts"]
    big: str = texts["big"]

    spec = EmbeddingSpec(
        kind="embedding", precision=args.precision, timeout_s=LIMIT_S, queue_timeout_s=LIMIT_S
    )

    async def open_loop(classifier: EmbeddingClassifier) -> list[float]:
        latencies: list[float] = []

        async def one(text: str) -> None:
            began = time.perf_counter()
            await classifier.classify([Subject(text)])
            latencies.append(time.perf_counter() - began)

        tasks = []
        began = time.perf_counter()
        for i in range(round(args.rate * args.seconds)):
            await asyncio.sleep(max(0.0, began + i / args.rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(shorts[i % len(shorts)])))
        await asyncio.gather(*tasks)
        return latencies

    async def adversary(
        classifier: EmbeddingClassifier, judged: list[float], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():  # not only a cancel: wait_for may swallow one (Python 3.11)
            began = time.perf_counter()
            await classifier.classify([Subject(big)])
            judged.append(time.perf_counter() - began)
            progress(f"long text judged in {judged[-1]:.1f} s")

    def summary(latencies: list[float]) -> dict[str, float]:
        ms = [1000 * x for x in latencies]
        return {
            "requests": len(ms),
            "p50_ms": percentile(ms, 50) or 0.0,
            "p99_ms": percentile(ms, 99) or 0.0,
            "max_ms": max(ms),
            "over_10s": sum(x > REFUSED_AFTER_S for x in latencies),
        }

    async def measure() -> dict[str, Any]:
        classifier = EmbeddingClassifier(spec)
        for text in shorts[:20]:
            await classifier.classify([Subject(text)])
        began = time.perf_counter()
        await classifier.classify([Subject(big)])
        out: dict[str, Any] = {"big_alone_s": round(time.perf_counter() - began, 2)}
        progress(f"long text alone: {out['big_alone_s']} s")
        out["load_before"] = os.getloadavg()[0]
        out["quiet"] = summary(await open_loop(classifier))
        out["load_between"] = os.getloadavg()[0]
        progress(f"quiet: {out['quiet']}")
        judged: list[float] = []
        started = len(classifier.batcher.waits_s)
        stop = asyncio.Event()
        attack = asyncio.create_task(adversary(classifier, judged, stop))
        for _ in range(6000):  # until its work has begun (bounded: 60 s)
            if len(classifier.batcher.waits_s) > started:
                break
            await asyncio.sleep(0.01)
        out["adversary"] = summary(await open_loop(classifier))
        out["load_after"] = os.getloadavg()[0]
        out["big_judged_s"] = [round(x, 2) for x in judged]
        progress(f"adversary: {out['adversary']}, long text judged in {judged} s")
        stop.set()
        attack.cancel()
        await asyncio.gather(attack, return_exceptions=True)
        out["batches"] = len(classifier.batcher.batch_sizes)
        await classifier.aclose()
        return out

    result = asyncio.run(measure())
    result["guard"] = str(Path(guard.__file__).parent)
    result["big_chars"] = len(big)
    return result


def progress(line: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.2f}] {line}", file=sys.stderr)


def texts(big_chars: int) -> dict[str, Any]:
    """The short prompts (XSTest) and the long text (openai_moderation comments)."""
    from guard import datasets

    big = ""
    for row in datasets.load("openai_moderation"):
        if len(big) >= big_chars:
            break
        big += row.text + "\n\n"
    return {"shorts": [e.text for e in datasets.load("xstest")], "big": big[:big_chars]}


def extract(revision: str, into: Path) -> Path:
    """``guard/`` as it was at ``revision`` (read-only git), in ``into``."""
    archive = subprocess.run(
        ["git", "archive", revision, "guard"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="also measure guard at this commit, first")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each scenario")
    parser.add_argument("--rate", type=float, default=5.0, help="short requests per second")
    parser.add_argument("--big-chars", type=int, default=300_000)
    parser.add_argument("--precision", choices=["float32", "int8"], default="float32")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--guard-from", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.guard_from:
        print(json.dumps(child(args)), flush=True)
        # Leave at once: an older batcher's worker thread may still be judging the long
        # text, and waiting for it measures nothing.
        os._exit(0)

    sys.path.insert(0, str(ROOT))
    from bench.harness import guard_revision, machine_info, machine_line

    print("$ " + shlex.join([Path(sys.executable).name, *sys.argv]))
    print(machine_line(machine_info()))
    passed = [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ("seconds", "rate", "big_chars", "precision")
    ]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "texts.json"
        data.write_text(json.dumps(texts(args.big_chars)))
        passed.append(f"--texts={data}")
        variants = []
        if args.before:
            tree = Path(folder) / "before"
            tree.mkdir()
            variants.append((f"before ({args.before})", extract(args.before, tree)))
        variants.append((f"after ({guard_revision()})", ROOT))
        for name, tree in variants:
            argv = [sys.executable, str(Path(__file__).resolve()), *passed, f"--guard-from={tree}"]
            env = {**os.environ, "PYTHONPATH": str(tree)}
            run = subprocess.run(argv, stdout=subprocess.PIPE, text=True, env=env, check=False)
            if run.returncode:
                return run.returncode
            results[name] = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"{name}: done, load average {os.getloadavg()[0]:.2f}", flush=True)

    print(f"\nshort requests: XSTest prompts, {args.rate:g}/s for {args.seconds:g} s a scenario")
    print(f"long text: {args.big_chars} characters of openai_moderation, {args.precision}\n")
    print(
        "| guard | scenario | short requests | p50 ms | p99 ms | max ms | waited > 10 s "
        "| long text judged in (s) | load avg (1 min) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for name, result in results.items():
        for scenario in ("quiet", "adversary"):
            row = result[scenario]
            judged = (
                ", ".join(f"{x:.1f}" for x in result["big_judged_s"]) or "none finished"
                if scenario == "adversary"
                else f"alone: {result['big_alone_s']:.1f}"
            )
            loads = (
                (result["load_before"], result["load_between"])
                if scenario == "quiet"
                else (result["load_between"], result["load_after"])
            )
            print(
                f"| {name} | {scenario} | {row['requests']} | {row['p50_ms']:.0f} "
                f"| {row['p99_ms']:.0f} | {row['max_ms']:.0f} | {row['over_10s']} | {judged} "
                f"| {loads[0]:.2f} -> {loads[1]:.2f} |"
            )
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
