"""Proxy overhead: what guard (passthrough policy) adds over calling the upstream directly.

Three processes on 127.0.0.1: the synthetic upstream (``guard.testing.fake_upstream``, which
streams ``--tokens`` words ``--pace-ms`` apart), guard in front of it
(``guard.cli serve --policy policies/passthrough.yaml``), and this script, the load
generator. For every concurrency level and mode (stream / non-stream) it runs a closed
loop of ``concurrency`` workers, each on its own keep-alive connection, first against the
upstream directly and then through guard (the order alternates between rounds, so slow
drift of the machine hits both alike), after a warm-up request on every connection.

Per request it measures TTFT (stream: until the first chunk carrying content text;
non-stream: the whole response) and total latency, and checks the answer: status 200,
all the words, and ``data: [DONE]`` at the end of a stream. Per configuration it reports
p50/p99 of both, requests/s, errors and the CPU each process spent per request, and for
guard the difference to direct. The client is a minimal HTTP/1.1 client on raw asyncio
streams (uvloop when installed): it costs both paths the same and far less CPU than httpx,
which matters when all three processes share a small machine.

``--api chat responses`` measures ``/v1/responses`` too (the same answer as its event
stream; TTFT until the first ``"delta"`` with text), next to chat; the mode column then
names the API.

``--trace`` runs guard with OpenTelemetry tracing on, exporting every request's spans
over OTLP/HTTP to ``bench.otlp_sink`` (a collector that counts them and keeps none);
compare with a run without it for what tracing costs. The report says how many spans
arrived.

``--upstream-url URL --model NAME`` benchmarks an existing server (e.g. vLLM) instead of
starting the synthetic one; guard is then started with ``--policy``.

    .venv/bin/python bench/proxy_overhead.py
    .venv/bin/python bench/proxy_overhead.py --upstream-url http://127.0.0.1:8000 --model smollm2

(the latter defaults to concurrency 1 and 4, 16 requests each, max_tokens 32).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python bench/proxy_overhead.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    CHAT,
    RESPONSES,
    Api,
    RunResult,
    Server,
    Summary,
    added,
    chat_body,
    closed_loop,
    command_line,
    cpu_cell,
    fmt,
    machine_info,
    machine_line,
    otlp_sink,
    pct,
    responses_body,
    run_async,
    servers,
    sink_stats,
    stop_on_sigterm,
    summarize,
)

PROMPT = "Tell me a short story about a lighthouse."


APIS = {"chat": CHAT, "responses": RESPONSES}


def request_body(
    args: argparse.Namespace, stream: bool, max_tokens: int | None, api: Api = CHAT
) -> bytes:
    if api is RESPONSES:
        return responses_body(args.model, PROMPT, stream, max_tokens)
    extra = {}
    if args.upstream_url:
        extra["temperature"] = 0
        if args.ignore_eos:
            extra["ignore_eos"] = True  # vLLM extension: always generate max_tokens
    return chat_body(args.model, PROMPT, stream, max_tokens, extra)


async def run_once(
    args: argparse.Namespace,
    target: Server,
    pids: dict[str, int | None],
    mode: str,
    concurrency: int,
    count: int,
    api: Api = CHAT,
) -> RunResult:
    stream = mode == "stream"
    expected = None if args.upstream_url else args.tokens
    if args.max_tokens is not None and expected is not None:
        expected = min(expected, args.max_tokens)
    return await closed_loop(
        target,
        mode,
        concurrency,
        count,
        request_body(args, stream, args.max_tokens, api),
        request_body(args, stream, 1, api),
        pids=pids,
        expected_words=expected,
        max_seconds=args.max_seconds,
        request_timeout=args.request_timeout,
        api=api,
    )


# ---------------------------------------------------------------- report


def report(pairs: list[tuple[Summary, Summary]], machine: dict[str, str], command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        machine_line(machine),
        "",
        "Latency in ms; `+` is guard minus direct.",
        "",
        "| conc | mode | TTFT p50 direct | guard | + | TTFT p99 direct | guard | + "
        "| total p50 direct | guard | + | total p99 direct | guard | + |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d, g in pairs:
        cells = [str(d.concurrency), d.mode]
        for metric in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms"):
            dv, gv = getattr(d, metric), getattr(g, metric)
            cells += [fmt(dv), fmt(gv), added(gv, dv)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Throughput and cost. CPU is milliseconds of CPU per request, per process.",
        "",
        "| conc | mode | ok (d / g) | errors (d / g) | req/s direct | req/s guard | guard/direct "
        "| CPU upstream (d / g) | CPU guard | CPU client (d / g) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d, g in pairs:
        ratio = g.rps / d.rps if d.rps and not math.isnan(d.rps) else math.nan
        lines.append(
            f"| {d.concurrency} | {d.mode} | {d.requests} / {g.requests} "
            f"| {d.errors} / {g.errors} | {fmt(d.rps)} | {fmt(g.rps)} | {pct(ratio)} "
            f"| {cpu_cell(d, 'upstream')} / {cpu_cell(g, 'upstream')} | {cpu_cell(g, 'guard')} "
            f"| {cpu_cell(d, 'client')} / {cpu_cell(g, 'client')} |"
        )
    for d, g in pairs:
        for summary in (d, g):
            for example in summary.error_examples:
                lines.append(
                    f"\nerror ({summary.target}, c={summary.concurrency}, {summary.mode}): "
                    + example
                )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


async def benchmark(
    args: argparse.Namespace, upstream: Server, guard: Server
) -> list[tuple[Summary, Summary]]:
    pids = {"upstream": upstream.pid, "guard": guard.pid, "client": os.getpid()}
    pairs = []
    for concurrency in args.concurrency:
        total = args.requests or max(50, 8 * concurrency)
        per_run = math.ceil(total / args.rounds)
        for mode in args.modes:
            for name in args.api:
                label = mode if args.api == ["chat"] else f"{name} {mode}"
                runs: dict[str, list[RunResult]] = {"upstream": [], "guard": []}
                for round_ in range(args.rounds):
                    order = (upstream, guard) if round_ % 2 == 0 else (guard, upstream)
                    for target in order:
                        run = await run_once(
                            args, target, pids, mode, concurrency, per_run, APIS[name]
                        )
                        runs[target.name].append(run)
                        print(
                            f"  c={concurrency:<4} {label:<20} {target.name:<8} "
                            f"round {round_ + 1}: {len(run.samples)} ok, "
                            f"{len(run.errors)} errors, {run.wall_s:.1f} s",
                            file=sys.stderr,
                            flush=True,
                        )
                direct, via_guard = summarize(runs["upstream"]), summarize(runs["guard"])
                direct.target = "direct"
                direct.mode = via_guard.mode = label
                pairs.append((direct, via_guard))
    return pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=None,
        help="closed-loop workers (default 1 64 256; with --upstream-url 1 4)",
    )
    parser.add_argument(
        "--modes", nargs="+", choices=["stream", "non-stream"], default=["stream", "non-stream"]
    )
    parser.add_argument(
        "--api", nargs="+", choices=sorted(APIS), default=["chat"], help="the APIs to measure"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="measured requests per target and configuration\n"
        "(default max(50, 8*concurrency); with --upstream-url 16)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating direct/guard rounds")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap per run")
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--tokens", type=int, default=64, help="synthetic upstream: words")
    parser.add_argument("--pace-ms", type=float, default=5.0, help="synthetic upstream: pace")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="max_tokens to request (default none; with --upstream-url 32)",
    )
    parser.add_argument("--upstream-url", help="benchmark this server instead of the synthetic")
    parser.add_argument("--model", default="fake-model", help="model name to request")
    parser.add_argument(
        "--no-ignore-eos",
        dest="ignore_eos",
        action="store_false",
        help="real upstream: do not send vLLM's ignore_eos (answers may then differ in length)",
    )
    parser.add_argument("--policy", type=Path, default=Path("policies/passthrough.yaml"))
    parser.add_argument(
        "--trace", action="store_true", help="guard exports traces (OTLP/HTTP) to a local sink"
    )
    parser.add_argument("--json", type=Path, help="save raw numbers here")
    args = parser.parse_args(argv)
    real = bool(args.upstream_url)
    if args.concurrency is None:
        args.concurrency = [1, 4] if real else [1, 64, 256]
    if args.requests is None and real:
        args.requests = 16
    if args.max_tokens is None and real:
        args.max_tokens = 32
    if args.rounds < 1 or any(c < 1 for c in args.concurrency):
        parser.error("--rounds and --concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("bench/proxy_overhead.py", argv)
    stop_on_sigterm()
    machine = machine_info()
    upstream_args = ["--tokens", str(args.tokens), "--pace-ms", str(args.pace_ms)]
    traced = ""
    try:
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(otlp_sink()) if args.trace else None
            guard_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url} if sink else None
            with servers(args.policy, args.upstream_url, upstream_args, guard_env=guard_env) as (
                upstream,
                guard,
            ):
                print(f"upstream {upstream.url}, guard {guard.url}", file=sys.stderr)
                pairs = run_async(benchmark(args, upstream, guard))
            if sink is not None:  # guard has stopped: its shutdown sent the last spans
                stats = sink_stats(sink)
                traced = (
                    f"\n\nTracing on: the sink received {stats['spans']} spans "
                    f"in {stats['exports']} exports."
                )
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    print(report(pairs, machine, command) + traced)
    if args.json:
        raw = {
            "command": command,
            "machine": machine,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": [{"direct": asdict(d), "guard": asdict(g)} for d, g in pairs],
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
