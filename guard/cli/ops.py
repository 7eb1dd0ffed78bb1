"""Command-line parts for operations: ``serve`` options, ``guard hash-key``, ``guard audit``."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--keys", type=Path, help="API keys file (YAML); env GUARD_KEYS_FILE")
    serve.add_argument("--audit-log", type=Path, help="audit log file; env GUARD_AUDIT_LOG")
    serve.add_argument(
        "--watch",
        action="store_true",
        default=None,
        help="reload policies and keys when their files change; env GUARD_WATCH",
    )
    serve.add_argument(
        "--max-concurrent-requests",
        type=int,
        help="beyond this many requests in flight, answer 429; env GUARD_MAX_CONCURRENT_REQUESTS",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        help="seconds requests in flight get to finish on SIGTERM; env GUARD_SHUTDOWN_TIMEOUT_S",
    )
    serve.add_argument(
        "--log-format", choices=["text", "json"], help="log line format; env GUARD_LOG_FORMAT"
    )


def serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "keys_file": args.keys,
        "audit_log": args.audit_log,
        "watch": args.watch,
        "max_concurrent_requests": args.max_concurrent_requests,
        "shutdown_timeout_s": args.shutdown_timeout,
        "log_format": args.log_format,
    }


def add_commands(commands: Any) -> None:
    hash_key = commands.add_parser(
        "hash-key", help="print the sha256 of an API key, for the keys file"
    )
    hash_key.add_argument("key", nargs="?", help="the key; read from standard input if left out")
    hash_key.add_argument("--new", action="store_true", help="make a new random key, print both")
    audit = commands.add_parser("audit", help="summarise audit logs: block rates, p50/p99")
    audit.add_argument("files", nargs="+", type=Path)
    audit.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int | None:
    """Run an operations command; None if ``args`` names another command."""
    if args.command == "hash-key":
        return _hash_key(args.key, args.new)
    if args.command == "audit":
        from guard.eval.audit_report import run_audit

        return run_audit(args.files, args.json)
    return None


def _hash_key(key: str | None, new: bool) -> int:
    from guard.ops.keys import hash_key, new_key

    if new:
        key = new_key()
        print(f"key:    {key}")
        print(f"sha256: {hash_key(key)}")
        return 0
    if key is None:
        key = sys.stdin.readline().strip()
    if not key:
        print("give a key, as an argument or on standard input", file=sys.stderr)
        return 2
    if problems := key_weaknesses(key):
        print(
            f"warning: this key is weak: it {'; it '.join(problems)}. A key is stored as an "
            "unsalted sha256, which only a long random key makes safe: "
            "`guard hash-key --new` makes one.",
            file=sys.stderr,
        )
    print(hash_key(key))
    return 0


MIN_KEY_CHARS = 32
MIN_KEY_BITS = 128
_ALPHABETS = (
    (str.isdigit, 10),
    (str.islower, 26),
    (str.isupper, 26),
)


def key_weaknesses(key: str) -> list[str]:
    """Why a key is too weak to be stored as an unsalted sha256 (empty when it is not):
    under ``MIN_KEY_CHARS`` characters; under ``MIN_KEY_BITS`` bits by the size of the
    alphabet it draws on (digits 10, lower and upper case letters 26 each, other ASCII
    symbols 33, anything else 100) times its length; or one short pattern repeated. A
    heuristic: it cannot see dictionary words, and a key that passes is not thereby random.
    """
    problems = []
    if len(key) < MIN_KEY_CHARS:
        problems.append(f"has {len(key)} characters, fewer than {MIN_KEY_CHARS}")
    bits = len(key) * math.log2(_alphabet_size(key))
    if bits < MIN_KEY_BITS:
        problems.append(f"carries at most about {bits:.0f} bits, fewer than {MIN_KEY_BITS}")
    period = next((p for p in range(1, len(key) // 2 + 1) if key[p:] == key[:-p]), None)
    if period is not None:
        problems.append(
            "repeats one character" if period == 1 else f"repeats a {period}-character pattern"
        )
    return problems


def _alphabet_size(key: str) -> int:
    size = 0
    for belongs, count in _ALPHABETS:
        if any(belongs(c) and c.isascii() for c in key):
            size += count
    if any(c.isascii() and not c.isalnum() for c in key):
        size += 33
    if not key.isascii():
        size += 100
    return max(size, 2)
