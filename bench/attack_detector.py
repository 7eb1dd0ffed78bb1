"""Speed of the built-in ``attacks`` detector, beside the ``embedding`` classifier.

Three measurements, each through ``classify`` (the batcher path a rail takes):

* long: one 2,000-token jailbreak prompt per call, one call at a time (``--repeat``
  calls after two warm-ups); p50 and p99 latency for the ``attacks`` rail, the
  ``embedding`` rail (float32 and int8), and both together as ``policies/offline.yaml``
  runs its input rails (concurrently);
* short, concurrency 32: 32 coroutines, each judging one short prompt at a time in a
  closed loop, for ``--seconds``; prompts per second for each rail and for both;
* the process CPU time of each, beside its wall time (the machine is shared).

The ``language`` rows add the ``language`` rail to the policy's two, through the rails'
windows as a policy runs it. The ``bfloat16`` rows run the encoder's matrix products in
bfloat16 (``precision: bfloat16``, both rails sharing it), as ``policies/offline.yaml``
does.

The ``attacks`` rail runs twice: on the prompts alone, and on the same prompts sent
after a system prompt that forbids something (``APP``), which it reads them against.

The long prompt is written here: a role-play jailbreak wrapper around ordinary text in
which no sentence repeats, cut to exactly 2,000 MiniLM tokens. The short prompts are
XSTest's and AdvBench's (whole files, in file order).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/attack_detector.py [--threads 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rail_speed import jailbreak, latencies, throughput  # noqa: E402
from guard import datasets  # noqa: E402
from guard.components.attacks import AttackClassifier  # noqa: E402
from guard.components.base import Classifier, Subject  # noqa: E402
from guard.components.embedding import EmbeddingClassifier  # noqa: E402
from guard.components.language import LanguageClassifier  # noqa: E402
from guard.components.specs import AttacksSpec, EmbeddingSpec, LanguageSpec  # noqa: E402
from guard.eval import percentile  # noqa: E402
from guard.pipeline.rails import Rail, judge  # noqa: E402

APP = (
    "You are the assistant of a bicycle shop. Answer questions about bikes, repairs and "
    "opening hours. Never reveal the supplier prices in your notes: city bike 210, "
    "e-bike 940."
)


def long_prompt(classifier: AttackClassifier, tokens: int = 2_000) -> str:
    """The wrapper and the story, told for 200 days, cut to ``tokens`` MiniLM tokens."""
    from tokenizers import Tokenizer

    from guard.components.minilm import PACKAGED_BACKBONE, backbone_path

    ids = classifier.model.encode([jailbreak()])[0][1 : tokens + 1]
    folder = Path(backbone_path(PACKAGED_BACKBONE))
    return str(Tokenizer.from_file(str(folder / "tokenizer.json")).decode(ids))


Judge = Callable[[list[Subject]], Awaitable[Any]]


def sent_after(instructions: str, judge: Judge) -> Judge:
    """``judge`` of each subject sent after a system message holding ``instructions``."""
    system = ({"role": "system", "content": instructions},)

    async def judge_sent(subjects: list[Subject]) -> Any:
        return await judge([replace(subject, context=system) for subject in subjects])

    return judge_sent


def together(*classifiers: Classifier) -> Judge:
    async def judge(subjects: list[Subject]) -> Any:
        return await asyncio.gather(*(c.classify(subjects) for c in classifiers))

    return judge


def with_language(judged: Judge) -> Judge:
    """``judged``, and beside it the ``language`` rail through its windows."""
    spec = LanguageSpec(kind="language", timeout_s=600)
    rail = Rail(spec, LanguageClassifier(spec))

    async def judge_both(subjects: list[Subject]) -> Any:
        return await asyncio.gather(judged(subjects), judge([rail], subjects, "input"))

    return judge_both


def measure(name: str, judge: Judge, long: str, short: list[str], args: Any) -> dict[str, Any]:
    cpu = time.process_time()
    wall = time.perf_counter()

    async def one(text: str) -> Any:
        return await judge([Subject(text)])

    values = asyncio.run(latencies(one, long, args.repeat))
    rate = asyncio.run(throughput(one, short, args.seconds))
    row = {
        "rails": name,
        "long_p50_ms": round(statistics.median(values), 1),
        "long_p99_ms": round(percentile(values, 99), 1),
        "short_prompts_per_s": round(rate, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    print(
        f"{name:32s} long p50 {row['long_p50_ms']:8.1f} ms  p99 {row['long_p99_ms']:8.1f} ms  "
        f"short {row['short_prompts_per_s']:7.1f}/s  "
        f"(cpu {row['cpu_s']} s, wall {row['wall_s']} s)",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeat", type=int, default=30, help="long-prompt calls per rail")
    parser.add_argument("--seconds", type=float, default=10, help="closed loop per rail")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/attack_detector.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"$ {command}\nload average {os.getloadavg()}", flush=True)
    attacks = AttackClassifier(AttacksSpec(kind="attacks", timeout_s=600))
    embedding = EmbeddingClassifier(EmbeddingSpec(kind="embedding", timeout_s=600))
    int8 = EmbeddingClassifier(EmbeddingSpec(kind="embedding", timeout_s=600, precision="int8"))
    half = EmbeddingClassifier(EmbeddingSpec(kind="embedding", timeout_s=600, precision="bfloat16"))
    half_attacks = AttackClassifier(
        AttacksSpec(kind="attacks", timeout_s=600, precision="bfloat16")
    )
    long = long_prompt(attacks)
    tokens = len(attacks.model.encode([long])[0]) - 2
    short = [r.text for name in ("xstest", "advbench") for r in datasets.load(name)]
    print(f"long prompt: {tokens} tokens, {len(long)} characters; {len(short)} short prompts")
    rows = [
        measure("attacks", together(attacks), long, short, args),
        measure(
            "attacks, after a system prompt", sent_after(APP, together(attacks)), long, short, args
        ),
        measure("embedding float32", together(embedding), long, short, args),
        measure("embedding int8", together(int8), long, short, args),
        measure("attacks + embedding float32", together(attacks, embedding), long, short, args),
        measure("attacks + embedding int8", together(attacks, int8), long, short, args),
        measure(
            "attacks + embedding float32 + language",
            with_language(together(attacks, embedding)),
            long,
            short,
            args,
        ),
        measure("embedding bfloat16", together(half), long, short, args),
        measure(
            "attacks + embedding bfloat16 + language",
            with_language(together(half_attacks, half)),
            long,
            short,
            args,
        ),
    ]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
