"""Input rails: what they add to time to first token, run in parallel with generation or before it.

The synthetic upstream streams a short answer (``--tokens`` 32 words, ``--pace-ms`` 5)
after a prefill delay (``--ttft-ms`` 100). One guard process serves, under different
model names, three policies written to a temporary directory at run time:

* ``none``: no rails (what policies/passthrough.yaml does);
* ``parallel``: one input rail with a real in-process classifier and
  ``input_rails_mode: parallel`` (generation starts at once; nothing is released before
  the rail has passed);
* ``sequential``: the same rail with ``input_rails_mode: sequential`` (generation starts
  after the rail has passed).

The classifier is the built-in ``embedding`` kind when guard can load it (``--classifier
auto``), else an ``hf_classifier`` on all-MiniLM-L6-v2 with a fresh head fixed to "safe"
(built at run time; the same size as the embedding kind's backbone). The rail judges the
user message; ``--prompt-words`` sets its length (0: a one-line prompt of 9 words; N: N
words of plain English prose). The rail's own latency is read from the verdict guard
returns on the first chunk (``latency_ms``).

Expected: parallel TTFT = max(rail, prefill) + guard's overhead; sequential = rail +
prefill + overhead. Configurations are interleaved in ``--rounds`` rounds (the order
reversed every other round).

    .venv/bin/python -m bench.input_rails [--json bench/results/input-rails.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # run as a file: python bench/input_rails.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    RAIL_NAME,
    Reply,
    RunResult,
    Server,
    Summary,
    chat_body,
    closed_loop,
    command_line,
    fmt,
    guard_revision,
    guard_with_classifier,
    load_average,
    machine_info,
    machine_line,
    quantile_ms,
    run_async,
    stop_on_sigterm,
    summarize,
    torch_threads_env,
    upstream_server,
)

MODES = ("none", "parallel", "sequential")
SHORT_PROMPT = "Tell me a short story about a lighthouse."
PROSE = (
    "The old lighthouse stood on a rocky point at the edge of the bay, and for more than a "
    "hundred years its keepers had climbed the spiral stairs each evening to light the lamp. "
    "Fishing boats returning late relied on its beam to find the narrow channel between the "
    "reefs. In winter the storms came from the north, and waves broke over the lower "
    "gallery, but the tower never failed. Please summarise this history in a few sentences "
    "and suggest a title for a short story set there. "
)


def prompt(words: int) -> str:
    if words <= 0:
        return SHORT_PROMPT
    pool = PROSE.split()
    return " ".join(pool[i % len(pool)] for i in range(words))


def policies(rail: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "none", "models": {"bench-none": "fake-model"}}]
    for mode in ("parallel", "sequential"):
        out.append(
            {
                "name": mode,
                "models": {f"bench-{mode}": "fake-model"},
                "input_rails": [rail],
                "input_rails_mode": mode,
            }
        )
    return out


def rail_latency(reply: Reply) -> dict[str, float]:
    """The input rail's ``latency_ms`` from the ``guard`` object on the first chunk."""
    for event in reply.body.split(b"\n\n"):
        if event.startswith(b"data: {"):
            guard = orjson.loads(event[6:]).get("guard") or {}
            for verdict in guard.get("verdicts", []):
                if verdict.get("rail") == RAIL_NAME and verdict.get("stage") == "input":
                    return {"rail_ms": float(verdict["latency_ms"])}
            return {}
    return {}


async def benchmark(
    args: argparse.Namespace, upstream: Server, guard: Server
) -> dict[tuple[int, str, int], tuple[Summary, list[float]]]:
    pids = {"upstream": upstream.pid, "guard": guard.pid, "client": os.getpid()}
    out: dict[tuple[int, str, int], tuple[Summary, list[float]]] = {}
    for words in args.prompt_words:
        text = prompt(words)
        for concurrency in args.concurrency:
            total = args.requests or max(40, 8 * concurrency)
            per_run = math.ceil(total / args.rounds)
            runs: dict[str, list[RunResult]] = {mode: [] for mode in MODES}
            for round_ in range(args.rounds):
                for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                    run = await closed_loop(
                        guard,
                        "stream",
                        concurrency,
                        per_run,
                        chat_body(f"bench-{mode}", text, True),
                        chat_body(f"bench-{mode}", text, True, max_tokens=1),
                        pids=pids,
                        expected_words=args.tokens,
                        max_seconds=args.max_seconds,
                        request_timeout=args.request_timeout,
                        extract=rail_latency,
                    )
                    run.target = mode
                    runs[mode].append(run)
                    print(
                        f"  prompt {words:<4} c={concurrency:<3} {mode:<10} round {round_ + 1}: "
                        f"{len(run.samples)} ok, {len(run.errors)} errors, {run.wall_s:.1f} s, "
                        f"load {load_average()}",
                        file=sys.stderr,
                        flush=True,
                    )
            for mode, mode_runs in runs.items():
                rail = [s.extra["rail_ms"] for r in mode_runs for s in r.samples if s.extra]
                out[(words, mode, concurrency)] = (summarize(mode_runs), rail)
    return out


def report(
    args: argparse.Namespace,
    results: dict[tuple[int, str, int], tuple[Summary, list[float]]],
    machine: dict[str, str],
    command: str,
    classifier: str,
    load_at_end: str,
) -> str:
    prefill = args.ttft_ms
    lines = [
        f"Command: `{command}`",
        "",
        machine_line({k: v for k, v in machine.items() if k != "guard"})
        + f", load average at end {load_at_end}",
        "",
        f"guard: {machine['guard']}",
        "",
        f"Upstream: prefill {prefill:g} ms, then {args.tokens} tokens {args.pace_ms:g} ms apart. "
        f"Input rail: {classifier}. Torch threads in guard: "
        + (f"OMP_NUM_THREADS={args.torch_threads}." if args.torch_threads else "torch's default."),
        "",
        "Times in ms. `+TTFT` is the mode's TTFT p50 minus the no-rail TTFT p50. Expected "
        "+TTFT: parallel max(0, rail - prefill - upstream's own time to first token), "
        "sequential rail p50 (both plus guard's work for the rail).",
        "",
        "| prompt | conc | mode | rail p50 | rail p99 | TTFT p50 | TTFT p99 | +TTFT p50 "
        "| +TTFT p99 | expected +TTFT | ok / errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (words, mode, concurrency), (s, rail) in results.items():
        base = results[(words, "none", concurrency)][0]
        rail50, rail99 = quantile_ms(rail, 50), quantile_ms(rail, 99)
        first = base.ttft_p50_ms  # the upstream's prefill and first token, plus guard
        if mode == "none":
            expected = ""
        elif mode == "parallel":
            expected = fmt(max(0.0, rail50 - first))
        else:
            expected = fmt(rail50)
        size = "9 words" if words <= 0 else f"{words} words"
        lines.append(
            f"| {size} | {concurrency} | {mode} | {fmt(rail50)} | {fmt(rail99)} "
            f"| {fmt(s.ttft_p50_ms)} | {fmt(s.ttft_p99_ms)} "
            f"| {fmt(s.ttft_p50_ms - base.ttft_p50_ms, 2)} "
            f"| {fmt(s.ttft_p99_ms - base.ttft_p99_ms, 2)} | {expected} "
            f"| {s.requests} / {s.errors} |"
        )
    for s, _ in results.values():
        for example in s.error_examples:
            lines.append(f"\nerror ({s.target}, c={s.concurrency}): {example}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--tokens", type=int, default=32, help="words per answer")
    parser.add_argument("--pace-ms", type=float, default=5.0, help="delay between words")
    parser.add_argument("--ttft-ms", type=float, default=100.0, help="prefill delay")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--prompt-words",
        type=int,
        nargs="+",
        default=[0, 200],
        help="user message length in words; 0: a one-line prompt",
    )
    parser.add_argument("--classifier", choices=["auto", "embedding", "hf"], default="auto")
    parser.add_argument("--rail-timeout-s", type=float, default=30.0)
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="OMP_NUM_THREADS for guard (0: default)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="per mode and configuration (default max(40, 8*concurrency))",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap per run")
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="save raw numbers here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or any(c < 1 for c in args.concurrency):
        parser.error("--rounds and --concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("bench/input_rails.py", argv)
    stop_on_sigterm()
    machine = {**machine_info(), "guard": guard_revision()}
    upstream_args = ["--tokens", str(args.tokens), "--pace-ms", str(args.pace_ms)]
    upstream_args += ["--ttft-ms", str(args.ttft_ms)]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp,
            upstream_server(None, upstream_args) as upstream,
            guard_with_classifier(
                args.classifier,
                upstream.url,
                Path(tmp),
                policies,
                args.rail_timeout_s,
                env=torch_threads_env(args.torch_threads),
            ) as (guard, classifier),
        ):
            print(f"upstream {upstream.url}, guard {guard.url}; {classifier}", file=sys.stderr)
            results = run_async(benchmark(args, upstream, guard))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    load_at_end = load_average()
    print(report(args, results, machine, command, classifier, load_at_end))
    if args.json:
        raw = {
            "command": command,
            "machine": {**machine, "load average at end": load_at_end},
            "classifier": classifier,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": [
                {"prompt_words": w, "mode": m, "rail_ms": rail, **asdict(s)}
                for (w, m, _), (s, rail) in results.items()
            ],
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
