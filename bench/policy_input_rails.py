"""Speed of a policy's input rails as guard runs them (``judge``, every input rail on the
user's message), on this checkout or an older one, to compare the two in one session.

* long: one jailbreak prompt of 2,002 MiniLM tokens (``bench/attack_detector.py``'s
  wrapper and story, cut to 8,561 characters), one call at a time, ``--repeat`` calls
  after two warm-ups; p50 and p99 (of 30 calls, the highest);
* short: the 489 prompts of XSTest and AdvBench, 32 coroutines each judging one prompt
  at a time in a closed loop for ``--seconds``; prompts per second;
* the process CPU time beside the wall time (the machine is shared).

Each prompt is judged as a user message: by the rails whose ``parts`` include ``user``
(a checkout from before ``parts`` runs every rail on it). No verdict cache: every
judgement is computed. ``--root`` names the guard checkout whose
``guard`` package (and shipped heads) are imported; the policy file is read from there
too when it is a relative path.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/policy_input_rails.py \\
        [--policy policies/offline.yaml] [--root /path/to/older/checkout] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.jailbreak_text import jailbreak  # noqa: E402  (imports no guard)

LONG_CHARACTERS = 8_561
"""2,002 MiniLM tokens of this text."""


def long_prompt() -> str:
    return jailbreak()[:LONG_CHARACTERS]


def input_rails(policy: Path) -> list[Any]:
    from guard.components.registry import BuildContext, build_classifier
    from guard.pipeline.rails import Rail
    from guard.policy.load import load_policy_file

    [loaded] = load_policy_file(policy)
    context = BuildContext(upstream=None)  # type: ignore[arg-type]
    return [Rail(spec, build_classifier(spec, context)) for spec in loaded.policy.input_rails]


def as_user(count: int) -> list[list[str]]:
    """``judge``'s ``kinds`` argument for ``count`` user messages; none where it has none."""
    from guard.pipeline.rails import judge

    return [["user"] * count] if "kinds" in inspect.signature(judge).parameters else []


async def latencies(rails: list[Any], text: str, repeat: int) -> list[float]:
    from guard.components.base import Subject
    from guard.pipeline.rails import judge

    for _ in range(2):
        await judge(rails, [Subject(text)], "input", *as_user(1))
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        await judge(rails, [Subject(text)], "input", *as_user(1))
        out.append((time.perf_counter() - started) * 1000)
    return out


async def throughput(rails: list[Any], texts: list[str], seconds: float) -> float:
    from guard.components.base import Subject
    from guard.pipeline.rails import judge

    done = 0
    stop = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < stop:
            await judge(rails, [Subject(texts[i % len(texts)])], "input", *as_user(1))
            done += 1
            i += 32

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(32)))
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", type=Path, default=Path("policies/offline.yaml"))
    parser.add_argument("--root", type=Path, default=HERE.parent, help="guard checkout")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeat", type=int, default=30, help="long-prompt calls")
    parser.add_argument("--seconds", type=float, default=10, help="closed loop of short prompts")
    parser.add_argument("--json", type=Path, help="write the row here")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    sys.path.insert(0, str(root))
    policy = args.policy if args.policy.is_absolute() else root / args.policy
    import torch

    from guard import datasets

    torch.set_num_threads(args.threads)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/policy_input_rails.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"$ {command}\nload average {os.getloadavg()}", flush=True)
    rails = input_rails(policy)
    short = [r.text for name in ("xstest", "advbench") for r in datasets.load(name)]
    cpu, wall = time.process_time(), time.perf_counter()
    values = asyncio.run(latencies(rails, long_prompt(), args.repeat))
    rate = asyncio.run(throughput(rails, short, args.seconds))
    row = {
        "root": str(root),
        "policy": str(policy),
        "rails": [rail.name for rail in rails],
        "long_p50_ms": round(statistics.median(values), 1),
        "long_p99_ms": round(sorted(values)[min(len(values) - 1, int(len(values) * 0.99))], 1),
        "short_prompts_per_s": round(rate, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    print(
        f"{', '.join(row['rails'])}: long p50 {row['long_p50_ms']} ms, p99 {row['long_p99_ms']} "
        f"ms; short {row['short_prompts_per_s']}/s (cpu {row['cpu_s']} s, wall {row['wall_s']} s)",
        flush=True,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, **row}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
