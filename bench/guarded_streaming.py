"""Guarded streaming: what output rails on a stream cost in time to first token and total.

The synthetic upstream answers every request with ``--tokens`` words (256), the first
after ``--ttft-ms`` (50 ms, the prefill) and then one every ``--pace-ms`` (20 ms: 50
tokens/s, like a GPU stream), one word per token. The words are English prose
(``--answer prose``, bench/data/lighthouse.txt, repeated as needed), about 1.1 MiniLM
wordpieces per word, so a bit more text per token than a real LLM token; or the upstream's
own ``"tok"`` (``--answer tok``), 2 wordpieces per word, the earlier tables' answer.
One guard process serves, under different model names, policies written to a temporary
directory at run time:

* ``unguarded``: no rails (what policies/passthrough.yaml does);
* ``window-W``: one output rail with a real in-process classifier, ``streaming``
  ``window_tokens: W`` (``--windows``, default 16 32 64) and ``chunk_tokens``
  (``--chunk-tokens``, default 16), ``context_tokens`` 64, ``final_check`` on;
* ``buffered``: the same rail with ``window_tokens`` and ``chunk_tokens`` 100000, larger
  than any answer: guard then holds the whole answer and releases it only after the
  final check of all of it. This is how fully buffered checking is emulated.

The classifier is the built-in ``embedding`` kind when guard can load it (``--classifier
auto``), else an ``hf_classifier`` on all-MiniLM-L6-v2 with a fresh head fixed to "safe"
(built at run time; the same size as the embedding kind's backbone), so every check runs
the full forward pass and no answer is blocked. ``--classifier tiny`` uses an
``hf_classifier`` on a tiny random BERT (2 layers, hidden 128) instead, the issue's "tiny
``hf_classifier``": the cheapest real check, so what is left is guard's own cost. Every
answer is checked: HTTP 200, all
the words, ``data: [DONE]``, no ``content_filter``.

At concurrency 1 it measures TTFT (to the first chunk with content text) and total time
(``--requests`` per configuration in ``--rounds`` rounds; 0 skips this part); at
``--high-concurrency`` (64; 0 skips it) throughput relative to unguarded, with
``--high-requests`` per configuration in ``--high-rounds`` rounds. Configurations are
interleaved, the order reversed every other round, so drift of the machine hits them
alike. ``--torch-threads N`` sets ``OMP_NUM_THREADS`` for guard; ``--precision int8``
runs the embedding kind with int8 weights.

    .venv/bin/python -m bench.guarded_streaming --high-concurrency 0   # c=1, ~5 min
    .venv/bin/python -m bench.guarded_streaming --requests 0           # c=64
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python bench/guarded_streaming.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    RunResult,
    Server,
    Summary,
    chat_body,
    closed_loop,
    command_line,
    cpu_cell,
    fmt,
    guard_revision,
    guard_with_classifier,
    load_average,
    machine_info,
    machine_line,
    pct,
    ratio,
    run_async,
    stop_on_sigterm,
    summarize,
    torch_threads_env,
    upstream_server,
)

PROMPT = "Tell me a long story about a lighthouse."
PROSE = Path(__file__).resolve().parent / "data" / "lighthouse.txt"
BUFFERED = 100_000


def prompt(answer: str, tokens: int) -> str:
    """The prompt that makes the synthetic upstream answer ``tokens`` words of ``answer``."""
    if answer == "tok":
        return PROMPT
    words = PROSE.read_text().split()
    words = (words * (tokens // len(words) + 1))[:tokens]
    return f"{PROMPT}\nsay: {' '.join(words)}"


@dataclass(frozen=True)
class Config:
    name: str
    window_tokens: int | None
    """None: no output rail."""
    chunk_tokens: int | None

    @property
    def model(self) -> str:
        return f"bench-{self.name}"


def configs(args: argparse.Namespace) -> list[Config]:
    out = [Config("unguarded", None, None)]
    out += [Config(f"window-{w}", w, args.chunk_tokens) for w in args.windows]
    out.append(Config("buffered", BUFFERED, BUFFERED))
    return out


def policies(cfgs: list[Config], rail: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for cfg in cfgs:
        policy: dict[str, Any] = {"name": cfg.name, "models": {cfg.model: "fake-model"}}
        if cfg.window_tokens is not None:
            policy["output_rails"] = [rail]
            policy["streaming"] = {
                "window_tokens": cfg.window_tokens,
                "chunk_tokens": cfg.chunk_tokens,
                "context_tokens": 64,
                "check_at": "every_chunk",
                "final_check": True,
            }
        out.append(policy)
    return out


async def benchmark(
    args: argparse.Namespace, cfgs: list[Config], upstream: Server, guard: Server
) -> dict[tuple[str, int], Summary]:
    pids = {"upstream": upstream.pid, "guard": guard.pid, "client": os.getpid()}
    text = prompt(args.answer, args.tokens)
    runs: dict[tuple[str, int], list[RunResult]] = {}
    plan = [(1, args.requests, args.rounds)] if args.requests else []
    if args.high_concurrency:
        plan.append((args.high_concurrency, args.high_requests, args.high_rounds))
    for concurrency, total, rounds in plan:
        per_run = math.ceil(total / rounds)
        for round_ in range(rounds):
            order = cfgs if round_ % 2 == 0 else cfgs[::-1]
            for cfg in order:
                run = await closed_loop(
                    guard,
                    "stream",
                    concurrency,
                    per_run,
                    chat_body(cfg.model, text, True),
                    chat_body(cfg.model, text, True, max_tokens=1),
                    pids=pids,
                    expected_words=args.tokens,
                    max_seconds=args.max_seconds,
                    request_timeout=args.request_timeout,
                )
                run.target = cfg.name
                runs.setdefault((cfg.name, concurrency), []).append(run)
                print(
                    f"  c={concurrency:<3} {cfg.name:<10} round {round_ + 1}: "
                    f"{len(run.samples)} ok, {len(run.errors)} errors, {run.wall_s:.1f} s, "
                    f"load {load_average()}",
                    file=sys.stderr,
                    flush=True,
                )
    return {key: summarize(value) for key, value in runs.items()}


def report(
    args: argparse.Namespace,
    cfgs: list[Config],
    results: dict[tuple[str, int], Summary],
    machine: dict[str, str],
    command: str,
    classifier: str,
    load_at_end: str,
) -> str:
    pace = args.pace_ms
    threads = f"OMP_NUM_THREADS={args.torch_threads}" if args.torch_threads else "torch's default"
    lines = [
        f"Command: `{command}`",
        "",
        machine_line({k: v for k, v in machine.items() if k != "guard"})
        + f", load average at end {load_at_end}",
        "",
        f"guard: {machine['guard']}",
        "",
        f"Upstream: {args.tokens} tokens ({answer_line(args.answer)}), prefill "
        f"{args.ttft_ms:g} ms, then one token every {pace:g} ms. Output rail: {classifier}. "
        "`context_tokens` 64, `final_check` on. "
        f"Rail timeout {args.rail_timeout_s:g} s. Torch threads in guard: {threads}.",
    ]
    if args.requests:
        lines += c1_table(args, cfgs, results)
    if args.high_concurrency:
        lines += high_table(args, cfgs, results)
    for s in results.values():
        for example in s.error_examples:
            lines.append(f"\nerror ({s.target}, c={s.concurrency}): {example}")
    return "\n".join(lines)


def answer_line(answer: str) -> str:
    if answer == "tok":
        return '"tok" words, 2 MiniLM wordpieces each'
    return "English prose, one word per token, about 1.1 MiniLM wordpieces each"


def c1_table(
    args: argparse.Namespace, cfgs: list[Config], results: dict[tuple[str, int], Summary]
) -> list[str]:
    pace = args.pace_ms
    base = results[("unguarded", 1)]
    buffered = results[("buffered", 1)]
    lines = [
        "",
        f"Concurrency 1, {args.requests} requests per configuration. Times in ms. "
        "Bound: window_tokens x pace (the goal: TTFT within a window of unguarded). "
        "TTFT / buffered: TTFT p50 over the buffered total p50 (goal ≤ 20%).",
        "",
        "| configuration | window / chunk | TTFT p50 | TTFT p99 | total p50 | total p99 "
        "| TTFT - unguarded (p50) | bound | within bound | TTFT / buffered | ok / errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for cfg in cfgs:
        s = results[(cfg.name, 1)]
        if cfg.window_tokens is None:
            wc, extra, bound, within = "none", "0", "", ""
        elif cfg.window_tokens == BUFFERED:
            wc, extra, bound, within = "whole answer", fmt(s.ttft_p50_ms - base.ttft_p50_ms), "", ""
        else:
            assert cfg.chunk_tokens is not None
            limit = cfg.window_tokens * pace
            delta = s.ttft_p50_ms - base.ttft_p50_ms
            wc = f"{cfg.window_tokens} / {cfg.chunk_tokens}"
            extra, bound = fmt(delta), fmt(limit, 0)
            within = "n/a" if math.isnan(delta) else ("yes" if delta <= limit else "no")
        share = pct(ratio(s.ttft_p50_ms, buffered.total_p50_ms))
        lines.append(
            f"| {cfg.name} | {wc} | {fmt(s.ttft_p50_ms)} | {fmt(s.ttft_p99_ms)} "
            f"| {fmt(s.total_p50_ms)} | {fmt(s.total_p99_ms)} | {extra} | {bound} | {within} "
            f"| {share} | {s.requests} / {s.errors} |"
        )
    return lines


def high_table(
    args: argparse.Namespace, cfgs: list[Config], results: dict[tuple[str, int], Summary]
) -> list[str]:
    c = args.high_concurrency
    high_base = results[("unguarded", c)]
    lines = [
        "",
        f"Concurrency {c}, {args.high_requests} requests per configuration in "
        f"{args.high_rounds} round(s). req/s: answers completed per second of the run. "
        "CPU: ms of guard's CPU per request.",
        "",
        "| configuration | req/s | vs unguarded | TTFT p50 | TTFT p99 | total p50 | total p99 "
        "| CPU guard | ok / errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cfg in cfgs:
        s = results[(cfg.name, c)]
        lines.append(
            f"| {cfg.name} | {fmt(s.rps)} | {pct(ratio(s.rps, high_base.rps))} "
            f"| {fmt(s.ttft_p50_ms)} | {fmt(s.ttft_p99_ms)} | {fmt(s.total_p50_ms)} "
            f"| {fmt(s.total_p99_ms)} | {cpu_cell(s, 'guard')} | {s.requests} / {s.errors} |"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--tokens", type=int, default=256, help="words per answer")
    parser.add_argument(
        "--answer", choices=["prose", "tok"], default="prose", help="what the upstream says"
    )
    parser.add_argument("--pace-ms", type=float, default=20.0, help="delay between words")
    parser.add_argument("--ttft-ms", type=float, default=50.0, help="prefill delay")
    parser.add_argument("--windows", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--chunk-tokens", type=int, default=16)
    parser.add_argument("--classifier", choices=["auto", "embedding", "hf", "tiny"], default="auto")
    parser.add_argument(
        "--precision", choices=["float32", "int8"], default="float32", help="embedding kind's"
    )
    parser.add_argument("--rail-timeout-s", type=float, default=30.0)
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="OMP_NUM_THREADS for guard (0: default)"
    )
    parser.add_argument(
        "--requests", type=int, default=10, help="per configuration at c=1 (0 skips c=1)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds at c=1")
    parser.add_argument(
        "--high-concurrency", type=int, default=64, help="0 skips the throughput part"
    )
    parser.add_argument("--high-requests", type=int, default=64, help="per configuration")
    parser.add_argument("--high-rounds", type=int, default=1)
    parser.add_argument(
        "--max-seconds", type=float, default=120.0, help="no new request after this, per run"
    )
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="save raw numbers here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.high_rounds < 1 or args.requests < 0:
        parser.error("--rounds and --high-rounds must be at least 1")
    if not args.requests and not args.high_concurrency:
        parser.error("nothing to run: --requests 0 and --high-concurrency 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("bench/guarded_streaming.py", argv)
    stop_on_sigterm()
    machine = {**machine_info(), "guard": guard_revision()}
    cfgs = configs(args)
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
                lambda rail: policies(cfgs, rail),
                args.rail_timeout_s,
                env=torch_threads_env(args.torch_threads),
                precision=args.precision,
            ) as (guard, classifier),
        ):
            print(f"upstream {upstream.url}, guard {guard.url}; {classifier}", file=sys.stderr)
            results = run_async(benchmark(args, cfgs, upstream, guard))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    load_at_end = load_average()
    print(report(args, cfgs, results, machine, command, classifier, load_at_end))
    if args.json:
        raw = {
            "command": command,
            "machine": {**machine, "load average at end": load_at_end},
            "classifier": classifier,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": [asdict(s) for s in results.values()],
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
