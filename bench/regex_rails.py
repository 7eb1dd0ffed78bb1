"""Regex rails under an adversarial prompt: does a short request still get its first token?

guard serves one policy whose input rail is ``regex`` with the presets ``secrets`` and
``pii``, in front of the synthetic upstream. The script measures a short streamed
request's time to first token and ``/health``'s answer time, each over its own keep-alive
connection, one after another: first on a quiet server, then while other connections
send ``--attacks`` prompts of ``--kb`` KB, ``--attackers`` at a time. An attack prompt is
what made the Python-re presets backtrack: a JWT-looking header and an address-like tail,
repeated, so that every repetition is a new start for the JWT and e-mail patterns, each
reading on to the end of the text. Each prompt differs (a counter in front), so the
verdict cache cannot answer it.

``--checkout DIR`` runs guard from another tree (its ``guard`` package; this interpreter
and its packages), e.g. the code before RE2:

    mkdir /tmp/guard-before && git archive <commit> | tar -x -C /tmp/guard-before
    .venv/bin/python bench/regex_rails.py --checkout /tmp/guard-before
    .venv/bin/python bench/regex_rails.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # run as a file: python bench/regex_rails.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    CHAT_PATH,
    ROOT,
    Connection,
    Server,
    chat_body,
    command_line,
    fmt,
    free_port,
    guard_revision,
    load_average,
    machine_info,
    machine_line,
    quantile_ms,
    run_async,
    server_env,
    start,
    stop,
    stop_on_sigterm,
    upstream_server,
    wait_healthy,
    write_policies,
)

MODEL = "fake-model"
SHORT = chat_body(MODEL, "say: the lighthouse is lit", stream=True)
ATTACK_UNIT = "eyJaaaaaaaa.a-"


def adversarial_prompt(kb: int) -> str:
    size = kb * 1000
    return (ATTACK_UNIT * (size // len(ATTACK_UNIT) + 1))[:size]


def policy() -> list[dict[str, Any]]:
    rail = {"kind": "regex", "name": "regex", "presets": ["secrets", "pii"], "timeout_s": 5.0}
    return [{"name": "regex", "models": {"*": None}, "input_rails": [rail]}]


@contextlib.contextmanager
def guard_from(checkout: Path, policy_file: Path, upstream_url: str) -> Iterator[Server]:
    """guard from ``checkout``'s package: ``-P`` keeps the working directory off sys.path."""
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        port = free_port()
        argv = [sys.executable, "-P", "-m", "guard.cli", "serve", "--policy", str(policy_file)]
        argv += ["--upstream", upstream_url, "--port", str(port)]
        env = {**server_env(), "PYTHONPATH": str(checkout)}
        guard = start("guard", argv, env, Path(tmp), f"http://127.0.0.1:{port}")
        try:
            wait_healthy(guard)
            yield guard
        finally:
            stop(guard)


FAILURES: list[str] = []
"""Probes that did not get a 200: when guard's event loop is held for longer than 5 s,
its own timers (connecting to the upstream, /health's check of it) fire at once when
the loop is free again."""


async def short_request(conn: Connection) -> float:
    """A short streamed request's time to its first token (or to its error), in s."""
    t0 = time.perf_counter()
    reply = await conn.post(CHAT_PATH, SHORT, watch_content=True)
    if reply.status != 200 or reply.first_content_s is None:
        FAILURES.append(f"short request: HTTP {reply.status} {reply.body[:160].decode()}")
        return time.perf_counter() - t0
    return reply.first_content_s - t0


async def health(conn: Connection) -> float:
    t0 = time.perf_counter()
    reply = await conn.get("/health")
    if reply.status != 200:
        FAILURES.append(f"/health: HTTP {reply.status} {reply.body[:160].decode()}")
    return time.perf_counter() - t0


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    chat, ping = Connection.to(url), Connection.to(url)
    await short_request(chat)  # warm-up: opens guard's upstream connection too
    await health(ping)
    quiet = {
        "ttft_s": [await short_request(chat) for _ in range(args.quiet)],
        "health_s": [await health(ping) for _ in range(args.quiet)],
    }
    prompt = adversarial_prompt(args.kb)
    attack_s: list[float] = []
    verdicts: list[str] = []
    sent = 0

    async def attacker() -> None:
        nonlocal sent
        own = Connection.to(url)
        try:
            while sent < args.attacks:
                sent += 1
                # Each prompt differs, so the verdict cache cannot answer it.
                body = chat_body(MODEL, f"{sent} {prompt}", stream=False)
                t0 = time.perf_counter()
                reply = await own.post(CHAT_PATH, body, watch_content=False)
                attack_s.append(time.perf_counter() - t0)
                verdict = orjson.loads(reply.body).get("guard", {}).get("verdict", "?")
                verdicts.append(f"HTTP {reply.status} {verdict}")
        finally:
            await own.close()

    async def probing(
        conn: Connection, probe: Callable[[Connection], Awaitable[float]], into: list[float]
    ) -> None:
        while not attackers.done():
            into.append(await probe(conn))

    attackers = asyncio.gather(*(attacker() for _ in range(args.attackers)))
    during: dict[str, list[float]] = {"ttft_s": [], "health_s": []}
    await asyncio.sleep(0.01)  # the first attacks are on their way
    await asyncio.gather(
        probing(chat, short_request, during["ttft_s"]),
        probing(ping, health, during["health_s"]),
        attackers,
    )
    await asyncio.gather(chat.close(), ping.close())
    return {
        "quiet": quiet,
        "during": during,
        "attack_s": attack_s,
        "verdicts": verdicts,
        "failures": FAILURES,
    }


def report(
    result: dict[str, Any],
    args: argparse.Namespace,
    command: str,
    revision: str,
    machine: dict[str, str],
) -> str:
    def cells(seconds: list[float]) -> str:
        values = [value * 1000 for value in seconds]
        return f"{len(values)}: {fmt(quantile_ms(values, 50))} / {fmt(quantile_ms(values, 100))}"

    quiet, during = result["quiet"], result["during"]
    attacks = ", ".join(f"{s:.2f}" for s in result["attack_s"])
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            machine_line(machine) + f", load average at end {load_average()}",
            "",
            f"guard: {revision}. Rail: regex, presets secrets + pii (timeout_s 5). "
            f"Attack: {args.attacks} prompts of {args.kb} KB ({ATTACK_UNIT!r} repeated), "
            f"{args.attackers} at a time.",
            "",
            "| | short requests: count: TTFT p50 / max (ms) | /health: count: p50 / max (ms) |",
            "|---|---:|---:|",
            f"| quiet | {cells(quiet['ttft_s'])} | {cells(quiet['health_s'])} |",
            f"| during the attack | {cells(during['ttft_s'])} | {cells(during['health_s'])} |",
            "",
            f"Attack requests: {attacks} s each; answers: {', '.join(result['verdicts'])}.",
            "",
            f"Probes answered other than 200: {len(result['failures'])}"
            + "".join(f"\n- {failure}" for failure in result["failures"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kb", type=int, default=160, help="size of an attack prompt")
    parser.add_argument("--attacks", type=int, default=4, help="attack prompts in all")
    parser.add_argument("--attackers", type=int, default=2, help="attack prompts at a time")
    parser.add_argument("--quiet", type=int, default=20, help="probes before the attack")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="run guard from this tree")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args(argv)
    command = command_line("bench/regex_rails.py", argv)
    print("command:", command, flush=True)
    machine = machine_info()
    stop_on_sigterm()
    checkout = args.checkout.resolve()
    revision = guard_revision() if checkout == ROOT else f"the tree at {checkout}"
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        policy_file = write_policies(Path(tmp) / "regex.yaml", policy())
        with (
            upstream_server(None, ["--tokens", "8"]) as upstream,
            guard_from(checkout, policy_file, upstream.url) as guard,
        ):
            result = run_async(measure(guard.url, args))
    print(report(result, args, command, revision, machine))
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
