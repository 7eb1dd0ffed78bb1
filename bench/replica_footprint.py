"""What one guard replica needs: resident memory at start and at its peak under load, and
CPU per request, for a policy that runs no model in guard (``passthrough``) and for one
with the in-process ``embedding`` classifier on prompts and answers
(``policies/offline.yaml``). These are the numbers behind the resource requests in
``deploy/k8s/base/deployment.yaml``.

Two processes besides this one: the synthetic upstream and guard. For each policy, guard
is started, its resident memory read (``VmRSS``), then ``--requests`` non-stream and
``--requests`` streamed requests are sent by ``--concurrency`` workers (the closed loop
of ``bench.harness``), and the peak resident memory (``VmHWM``) and guard's CPU per
request are read. The upstream answers ``--tokens`` words of English prose. An answer
counts as an error unless it is whole (a rail that timed out, or blocked, is one).
Linux only (``/proc``).

    .venv/bin/python -m bench.replica_footprint
    .venv/bin/python -m bench.replica_footprint --policies passthrough --concurrency 256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python bench/replica_footprint.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    ROOT,
    Server,
    chat_body,
    closed_loop,
    command_line,
    fmt,
    guard_revision,
    machine_info,
    machine_line,
    run_async,
    servers,
    summarize,
)

POLICIES = {
    # name: (policy file, model name it serves, seconds it may take to start)
    "passthrough": (ROOT / "policies" / "passthrough.yaml", "fake-model", 30.0),
    "embedding": (ROOT / "policies" / "offline.yaml", "demo-safe", 300.0),
}
PROMPT = "Tell me a short story about a lighthouse."
PROSE = Path(__file__).resolve().parent / "data" / "lighthouse.txt"


def prompt(tokens: int) -> str:
    """The prompt that makes the synthetic upstream answer ``tokens`` words of English
    prose (as in bench.guarded_streaming: the classifier reads text like a model's)."""
    words = PROSE.read_text().split()
    words = (words * (tokens // len(words) + 1))[:tokens]
    return f"{PROMPT}\nsay: {' '.join(words)}"


def memory_mib(pid: int | None) -> dict[str, float]:
    """Resident memory now (``VmRSS``) and at its peak so far (``VmHWM``), in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


async def load(args: argparse.Namespace, guard: Server, model: str) -> dict[str, object]:
    row: dict[str, object] = {}
    for mode in ("non-stream", "stream"):
        stream = mode == "stream"
        body = chat_body(model, prompt(args.tokens), stream)
        run = await closed_loop(
            guard,
            mode,
            args.concurrency,
            args.requests,
            body,
            body,
            pids={"guard": guard.pid},
            expected_words=args.tokens,
            max_seconds=args.max_seconds,
            request_timeout=args.request_timeout,
        )
        summary = summarize([run])
        row[mode] = {
            "requests": summary.requests,
            "errors": summary.errors,
            "error_examples": summary.error_examples,
            "guard_cpu_ms_per_request": summary.cpu_ms_per_request.get("guard"),
        }
    return row


def measure(args: argparse.Namespace, name: str) -> dict[str, object]:
    policy, model, start_s = POLICIES[name]
    upstream_args = ["--tokens", str(args.tokens), "--pace-ms", str(args.pace_ms)]
    with servers(policy, upstream_args=upstream_args, health_timeout_s=start_s) as (_, guard):
        started = memory_mib(guard.pid)["VmRSS"]
        row = run_async(load(args, guard, model))
        peak = memory_mib(guard.pid)["VmHWM"]
    return {"policy": name, "rss_at_start_mib": started, "rss_peak_mib": peak, **row}


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| policy | RSS at start (MiB) | peak RSS (MiB) | guard CPU ms/request, non-stream "
        "| stream | requests (errors) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        plain, streamed = row["non-stream"], row["stream"]
        assert isinstance(plain, dict) and isinstance(streamed, dict)
        done = f"{plain['requests']} + {streamed['requests']}"
        lines.append(
            f"| {row['policy']} | {fmt(float(str(row['rss_at_start_mib'])), 0)} "
            f"| {fmt(float(str(row['rss_peak_mib'])), 0)} "
            f"| {fmt(plain['guard_cpu_ms_per_request'] or float('nan'), 2)} "
            f"| {fmt(streamed['guard_cpu_ms_per_request'] or float('nan'), 2)} "
            f"| {done} ({plain['errors']} + {streamed['errors']}) |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", nargs="+", choices=list(POLICIES), default=list(POLICIES))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=512, help="per mode")
    parser.add_argument("--tokens", type=int, default=64, help="synthetic upstream: words")
    parser.add_argument("--pace-ms", type=float, default=5.0, help="synthetic upstream: pace")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time cap per mode")
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="save raw numbers here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    rows = [measure(args, name) for name in args.policies]
    print(f"Command: {command_line('bench/replica_footprint.py', argv)}")
    print(f"{machine_line(machine)}; guard {guard_revision()}")
    words = f"{args.tokens} words an answer, {args.pace_ms} ms apart"
    print(f"Concurrency {args.concurrency}, {args.requests} requests per mode, {words}.")
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
