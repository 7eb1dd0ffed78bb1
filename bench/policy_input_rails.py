"""Speed of a policy's input rails as guard runs them (``judge``, every input rail on the
user's message), on this checkout or an older one, to compare the two in one session.

* long: one jailbreak prompt of 2,002 MiniLM tokens (``bench/attack_detector.py``'s
  wrapper and story, cut to 8,561 characters), one call at a time, ``--repeat`` calls
  after two warm-ups; p50 and p99;
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

from bench.rail_speed import JudgeText, jailbreak, latencies, throughput  # noqa: E402

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


def as_user(rails: list[Any]) -> JudgeText:
    """Judging one text with ``rails`` as a user message (``judge``'s ``kinds``), or as
    every subject where ``judge`` has no ``kinds``."""
    from guard.components.base import Subject
    from guard.pipeline.rails import judge

    kinds = [["user"]] if "kinds" in inspect.signature(judge).parameters else []

    async def judged(text: str) -> Any:
        return await judge(rails, [Subject(text)], "input", *kinds)

    return judged


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
    from guard.eval import percentile

    torch.set_num_threads(args.threads)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/policy_input_rails.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"$ {command}\nload average {os.getloadavg()}", flush=True)
    rails = input_rails(policy)
    short = [r.text for name in ("xstest", "advbench") for r in datasets.load(name)]
    cpu, wall = time.process_time(), time.perf_counter()
    values = asyncio.run(latencies(as_user(rails), long_prompt(), args.repeat))
    rate = asyncio.run(throughput(as_user(rails), short, args.seconds))
    row = {
        "root": str(root),
        "policy": str(policy),
        "rails": [rail.name for rail in rails],
        "long_p50_ms": round(statistics.median(values), 1),
        "long_p99_ms": round(percentile(values, 99), 1),
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
