"""Overload: the offline policy at concurrency 64 and 256, beside the classifier alone.

Two processes on 127.0.0.1, started by ``bench.harness``: the synthetic upstream
(``guard.testing.fake_upstream``, answers at once) and guard serving
``policies/offline.yaml`` (the built-in ``embedding`` classifier on prompts and on
answers, regex rails; ``GUARD_LOG_LEVEL=warning``). This script is the load generator:
for each ``--concurrency`` it runs a closed loop of that many workers, each on its own
keep-alive connection, after one warm-up request per connection, for ``--seconds`` or
``--requests``, whichever ends first. Requests are non-streamed chat completions for
model ``demo-safe``, so guard judges two texts per request: the prompt (input rail) and
the answer (output rail).

Prompts are XSTest's safe prompts (``guard.datasets.load("xstest")``, not unsafe), each
with its request number appended, so that no two requests carry the same text and
guard's verdict cache never answers in the classifier's place, and then ``say:`` and a
fixed benign answer of 34 words, which the synthetic upstream answers word for word
(its default answer, ``tok tok ...``, is one the classifier flags). So the input rail
reads about 50 words and the output rail 34.

Every response is classified:

* answered: 200 and not cut by a rail;
* refused: 200 with ``finish_reason: content_filter``. A refusal whose
  ``guard.verdict`` is not ``block`` (a failure or load said as a refusal) is counted
  apart and must be 0; after the run, every refused prompt is judged again by the
  classifier alone, to show that the refusal is the classifier's verdict, not load's;
* shed: 429 or 503, by error code (``rails_overloaded`` is load; ``rail_error`` is a
  rail that failed or timed out), and how many carried ``Retry-After``;
* other: any other status, a time-out or a broken connection.

Served requests are the 200s (answered and refused): served requests per second over
the run's wall time, and their p50 and p99 latency.

The classifier alone is measured in the same run, in this process, with guard idle:
the policy's own ``embedding`` rail spec in one ``EmbeddingClassifier`` (guard, too,
builds one for its input and output rails, which differ only in name), on the first
``--texts`` prompts sent. Once: ``predict`` on batches of 32. Before each load run, at
its concurrency: that many coroutines each classifying one prompt at a time through the
micro-batcher (prompts/s), and each classifying a prompt and then the answer, one
request's rail work (pairs/s). Pairs/s is the ceiling for guard's requests/s here; guard
also pays for HTTP, JSON and the regex rails, and the upstream and this client share
its two cores. Runs go in ``--rounds`` rounds, the order of concurrencies reversed
every other round, so that a busy neighbour shows as a difference between rounds.

    .venv/bin/python -m bench.overload [--concurrency 64 256] [--rounds 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # run as a file: python bench/overload.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    CHAT_PATH,
    ROOT,
    Connection,
    Reply,
    chat_body,
    command_line,
    cpu_seconds,
    fmt,
    guard_revision,
    guard_server,
    load_average,
    machine_info,
    machine_line,
    quantile_ms,
    ratio,
    run_async,
    stop_on_sigterm,
    upstream_server,
)

POLICY = ROOT / "policies" / "offline.yaml"
MODEL = "demo-safe"
ANSWER = (
    "Sure. Here is a short answer: start with the basics, take it one step at a time, and "
    "check the official documentation for the details that matter in your case. I hope this "
    "helps."
)
"""What the synthetic upstream answers (after ``say:``): what the output rail judges."""


def safe_prompts() -> list[str]:
    from guard import datasets

    return [row.text for row in datasets.load("xstest") if not row.unsafe]


def request_text(prompts: list[str], index: int) -> str:
    """Request ``index``'s user message: unique, so the verdict cache cannot answer for
    it, and asking the synthetic upstream for ``ANSWER``."""
    return f"{prompts[index % len(prompts)]} (request {index})\nsay: {ANSWER}"


class HeadConnection(Connection):
    """A harness ``Connection`` that keeps the last response head, to read Retry-After."""

    head = b""

    async def _send(self, request: bytes) -> bytes:
        self.head = await super()._send(request)
        return self.head


@dataclass
class Tally:
    concurrency: int
    round: int = 0
    sent: int = 0
    answered: int = 0
    refused: int = 0
    refused_not_block: int = 0
    """Refusals whose ``guard.verdict`` is not ``block`` (e.g. ``error``): must be 0."""
    served_with_rail_error: int = 0
    """200s where some rail reported an error (a fail-open rail): none in this policy."""
    shed: dict[str, int] = field(default_factory=dict)
    shed_with_retry_after: int = 0
    other: dict[str, int] = field(default_factory=dict)
    served_ms: list[float] = field(default_factory=list)
    refused_texts: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def served(self) -> int:
        return self.answered + self.refused

    @property
    def served_per_s(self) -> float:
        return ratio(self.served, self.wall_s)

    def record(self, reply: Reply, head: bytes, text: str, elapsed_s: float) -> None:
        if reply.status == 200:
            self.served_ms.append(elapsed_s * 1000)
            try:
                body = orjson.loads(reply.body)
                finish = body["choices"][0].get("finish_reason")
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
                _count(self.other, "200 malformed")
                return
            guard = body.get("guard") or {}
            if any(v.get("outcome") == "error" for v in guard.get("verdicts", [])):
                self.served_with_rail_error += 1
            if finish != "content_filter":
                self.answered += 1
                return
            self.refused += 1
            self.refused_texts.append(text)
            if guard.get("verdict") != "block":
                self.refused_not_block += 1
            return
        try:
            code = (orjson.loads(reply.body).get("error") or {}).get("code")
        except (orjson.JSONDecodeError, AttributeError):
            code = None
        key = f"{reply.status} {code or '?'}"
        if reply.status in (429, 503):
            _count(self.shed, key)
            if b"\r\nretry-after:" in head.lower():
                self.shed_with_retry_after += 1
        else:
            _count(self.other, key)


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


async def overload(
    url: str,
    concurrency: int,
    prompts: list[str],
    numbers: itertools.count[int],
    args: argparse.Namespace,
    pids: dict[str, int | None],
    round_: int,
) -> Tally:
    """A closed loop of ``concurrency`` workers, each request with a new prompt number.

    (``harness.closed_loop`` sends one body throughout, which the verdict cache would
    answer, and keeps no status codes or headers of failed requests.)"""
    tally = Tally(concurrency, round_)
    conns = [HeadConnection.to(url) for _ in range(concurrency)]
    warm = chat_body(MODEL, "Hello!", False, max_tokens=1)
    try:
        outcomes = await asyncio.gather(
            *(c.post(CHAT_PATH, warm, False) for c in conns), return_exceptions=True
        )
        for conn, outcome in zip(conns, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                await conn.close()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        deadline = started + args.seconds
        last_done = started

        async def worker(conn: HeadConnection) -> None:
            nonlocal last_done
            while tally.sent < args.requests and time.perf_counter() < deadline:
                tally.sent += 1
                text = request_text(prompts, next(numbers))
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(args.request_timeout):
                        reply = await conn.post(CHAT_PATH, chat_body(MODEL, text, False), False)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                    _count(tally.other, type(exc).__name__)
                    await conn.close()
                    continue
                t1 = time.perf_counter()
                last_done = max(last_done, t1)
                tally.record(reply, conn.head, text, t1 - t0)

        await asyncio.gather(*(worker(c) for c in conns))
        tally.wall_s = last_done - started
        for name, pid in pids.items():
            before, after = cpu_before[name], cpu_seconds(pid)
            if before is not None and after is not None:
                tally.cpu_s[name] = after - before
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return tally


async def benchmark(
    args: argparse.Namespace, url: str, prompts: list[str], pids: dict[str, int | None]
) -> dict[str, Any]:
    """Rounds of, per concurrency: the classifier alone, then guard under load (the order
    of concurrencies reversed every other round); then the refused prompts judged alone."""
    from bench.embedding_classifier import batched
    from guard.components.base import Subject
    from guard.components.embedding import EmbeddingClassifier
    from guard.components.specs import EmbeddingSpec
    from guard.policy import load_policy_file

    spec = load_policy_file(POLICY)[0].policy.input_rails[0]
    assert isinstance(spec, EmbeddingSpec), spec
    classifier = EmbeddingClassifier(spec)
    texts = [request_text(prompts, i) for i in range(args.texts)]
    singles = [[Subject(text)] for text in texts]
    pairs = [[Subject(text), Subject(ANSWER, "assistant")] for text in texts[: len(texts) // 2]]
    numbers = itertools.count()
    out: dict[str, Any] = {"load": [], "alone": []}
    try:
        await classifier.classify([Subject(text) for text in texts[:64]])  # warm-up
        out["batch_32"] = batched(classifier, texts[:512], 32)
        for round_ in range(args.rounds):
            for concurrency in args.concurrency[:: 1 if round_ % 2 == 0 else -1]:
                alone = {
                    "round": round_,
                    "concurrency": concurrency,
                    "prompts": await closed_classify(classifier, singles, concurrency),
                    "pairs": await closed_classify(classifier, pairs, concurrency),
                }
                out["alone"].append(alone)
                tally = await overload(url, concurrency, prompts, numbers, args, pids, round_)
                out["load"].append(tally)
                print(
                    f"  round {round_ + 1}, c={concurrency}: alone "
                    f"{alone['prompts']['per_s']:.0f} prompts/s, {alone['pairs']['per_s']:.0f} "
                    f"pairs/s; guard {tally.served_per_s:.1f} served/s ({tally.refused} refused), "
                    f"{sum(tally.shed.values())} shed, {sum(tally.other.values())} other, "
                    f"load {load_average()}",
                    file=sys.stderr,
                    flush=True,
                )
        refused = [text for tally in out["load"] for text in tally.refused_texts]
        verdicts = await classifier.classify([Subject(t) for t in refused] + [Subject(ANSWER)])
        out["refused_flagged_alone"] = sum(v.flagged for v in verdicts[:-1])
        out["answer_flagged_alone"] = verdicts[-1].flagged
    finally:
        await classifier.aclose()
    return out


async def closed_classify(classifier: Any, jobs: list[list[Any]], workers: int) -> dict[str, float]:
    """``workers`` coroutines take the jobs in turn, each job's subjects classified one
    call after another (a pair: the prompt, then the answer, as a request's rails do).
    Jobs per second, CPU ms of this process per job, and the mean batch formed."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            for subject in queue.pop():
                await classifier.classify([subject])

    classifier.batcher.batch_sizes.clear()
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "per_s": len(jobs) / elapsed,
        "cpu_ms_each": 1000 * cpu / len(jobs),
        "mean_batch": statistics.fmean(classifier.batcher.batch_sizes),
    }


# ---------------------------------------------------------------- report


def report(
    args: argparse.Namespace,
    results: dict[str, Any],
    machine: dict[str, str],
    command: str,
    load_at_end: str,
) -> str:
    tallies: list[Tally] = results["load"]
    lines = [
        f"Command: `{command}`",
        "",
        machine_line({k: v for k, v in machine.items() if k != "guard"})
        + f", load average at end {load_at_end}",
        "",
        f"guard: {machine['guard']}; policy {POLICY.relative_to(ROOT)}, non-stream, "
        f"unique XSTest safe prompts, {len(ANSWER.split())}-word answers.",
        "",
        "| round | concurrency | sent | served req/s | p50 ms | p99 ms | answered | refused "
        "| refused, verdict not block | shed (with Retry-After) | other | guard CPU cores "
        "| guard CPU ms / request |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for t in tallies:
        shed = ", ".join(f"{n} {k}" for k, n in sorted(t.shed.items())) or "0"
        shed += f" ({t.shed_with_retry_after})" if t.shed else ""
        other = ", ".join(f"{n} {k}" for k, n in sorted(t.other.items())) or "0"
        guard_cpu = t.cpu_s.get("guard", float("nan"))
        lines.append(
            f"| {t.round + 1} | {t.concurrency} | {t.sent} | {fmt(t.served_per_s)} "
            f"| {fmt(quantile_ms(t.served_ms, 50), 0)} | {fmt(quantile_ms(t.served_ms, 99), 0)} "
            f"| {t.answered} | {t.refused} | {t.refused_not_block} | {shed} | {other} "
            f"| {fmt(ratio(guard_cpu, t.wall_s), 2)} | {fmt(ratio(1000 * guard_cpu, t.sent))} |"
        )
    batch = results["batch_32"]
    lines += [
        "",
        f"The classifier alone (the policy's embedding rail, in the load generator's process, "
        f"while guard idles), just before each load run above, on {args.texts} of the prompts "
        f"sent; `predict` in batches of 32: {batch['prompts_per_s']:.0f} prompts/s "
        f"({batch['prompts_per_cpu_s']:.0f} per CPU-second).",
        "",
        "| round | concurrency | prompts/s (mean batch) | prompt + answer pairs/s (mean batch) "
        "| texts/s in pairs | CPU ms / pair | guard's served req/s as a share of pairs/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for alone, t in zip(results["alone"], tallies, strict=True):
        prompts, pairs = alone["prompts"], alone["pairs"]
        share = ratio(t.served_per_s, pairs["per_s"])
        lines.append(
            f"| {alone['round'] + 1} | {alone['concurrency']} "
            f"| {prompts['per_s']:.0f} ({prompts['mean_batch']:.1f}) "
            f"| {pairs['per_s']:.0f} ({pairs['mean_batch']:.1f}) | {2 * pairs['per_s']:.0f} "
            f"| {pairs['cpu_ms_each']:.1f} | {fmt(100 * share)}% |"
        )
    refused = sum(t.refused for t in tallies)
    lines += [
        "",
        f"Refused prompts the classifier alone also flags: {results['refused_flagged_alone']} "
        f"of {refused}; the answer flagged alone: {results['answer_flagged_alone']}.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="time cap per load run")
    parser.add_argument("--requests", type=int, default=6000, help="request cap per load run")
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument(
        "--texts", type=int, default=1024, help="prompts per classifier-alone measurement"
    )
    parser.add_argument("--health-timeout", type=float, default=300.0, help="guard start-up")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / "overload.json",
        help="raw numbers",
    )
    args = parser.parse_args(argv)
    if any(c < 1 for c in args.concurrency) or args.rounds < 1 or args.texts < 64:
        parser.error("--concurrency and --rounds must be at least 1, --texts at least 64")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("bench/overload.py", argv)
    stop_on_sigterm()
    machine = {**machine_info(), "guard": guard_revision()}
    prompts = safe_prompts()
    try:
        with (
            upstream_server() as upstream,
            guard_server(POLICY, upstream.url, args.health_timeout) as guard,
        ):
            pids = {"upstream": upstream.pid, "guard": guard.pid, "client": os.getpid()}
            print(f"upstream {upstream.url}, guard {guard.url}", file=sys.stderr, flush=True)
            results = run_async(benchmark(args, guard.url, prompts, pids))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    load_at_end = load_average()
    print(report(args, results, machine, command, load_at_end))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    raw = {
        "command": command,
        "machine": {**machine, "load average at end": load_at_end},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **results,
        "load": [
            {
                **asdict(t),
                "served": t.served,
                "served_per_s": t.served_per_s,
                "p50_ms": quantile_ms(t.served_ms, 50),
                "p99_ms": quantile_ms(t.served_ms, 99),
            }
            for t in results["load"]
        ],
    }
    args.json.write_text(json.dumps(raw, indent=1))
    print(f"raw numbers: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
