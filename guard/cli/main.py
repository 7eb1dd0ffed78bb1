"""The ``guard`` command: serve, check, eval, up, and the training commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from guard.cli import ops as ops_cli
from guard.cli.check import check_files
from guard.cli.demo import run_demo
from guard.cli.serve import serve_with

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"


TRAINERS = {
    "train-embedding-head": ("guard.train.embedding_head", "train the embedding classifier's head"),
    "calibrate-embedding-head": (
        "guard.train.calibrate_head",
        "choose the embedding head's thresholds again from its --scores files",
    ),
    "train-embedding-reward": ("guard.train.reward_head", "train the embedding reward head"),
    "train-attack-head": ("guard.train.attack_head", "train the attacks detector's head"),
}
"""Commands that hand all their arguments to a training module's own ``main``."""


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in TRAINERS:
        import importlib

        trainer = importlib.import_module(TRAINERS[given[0]][0])
        return int(trainer.main(given[1:]))
    parser = argparse.ArgumentParser(prog="guard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, summary) in TRAINERS.items():
        commands.add_parser(name, help=f"{summary} (--help for its options)")

    serve = commands.add_parser("serve", help="serve policies in front of an upstream")
    serve.add_argument(
        "--policy",
        action="append",
        type=Path,
        default=None,
        help="policy file (repeatable); env GUARD_POLICIES, comma-separated",
    )
    serve.add_argument("--upstream", help="upstream base URL; env GUARD_UPSTREAM_URL")
    serve.add_argument("--host", help="address to listen on; env GUARD_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on; env GUARD_PORT (8080)")
    ops_cli.add_serve_options(serve)

    check = commands.add_parser("check", help="validate policy files and explain problems")
    check.add_argument("files", nargs="+", type=Path)
    check.add_argument("--keys", type=Path, help="also check this keys file against the policies")
    check.add_argument(
        "--build",
        action="store_true",
        help="also build every rail as 'guard serve' does (loads in-process models, "
        "sends no request)",
    )

    evaluate = commands.add_parser(
        "eval",
        help="measure a policy's rails on a labelled set",
        description="Measure a policy's rails on a labelled set. Every rail waits for its "
        "judgement (offline work: its timeout_s and queue_timeout_s become an hour); a "
        "row a rail still cannot judge is an error row, left out of the metrics "
        "and listed in the report. Exit status: 0 done, 2 bad policy, 3 some rows errored "
        "(the report is written; --allow-errors exits 0).",
    )
    evaluate.add_argument("--policy", type=Path, required=True)
    evaluate.add_argument("--policy-name", help="which policy, if the file holds several")
    evaluate.add_argument("--dataset", required=True, help="a data set name or a file path")
    evaluate.add_argument(
        "--out",
        type=Path,
        default=Path("eval-results"),
        help="folder for the JSON report and the PNG picture",
    )
    evaluate.add_argument("--concurrency", type=int, default=16)
    evaluate.add_argument("--limit", type=int, help="only the first N rows (a smoke test)")
    evaluate.add_argument("--upstream", help="where remote components without base_url go")
    evaluate.add_argument(
        "--allow-errors",
        action="store_true",
        help="exit 0 even when rows errored (by default exit 3; they are never in the metrics)",
    )

    up = commands.add_parser("up", help="run the demo: vLLM with SmolLM2 and guard in front")
    up.add_argument("--policy", type=Path, default=POLICIES_DIR / "default.yaml")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--vllm-port", type=int, default=8000)

    ops_cli.add_commands(commands)

    args = parser.parse_args(given)
    if (done := ops_cli.run(args)) is not None:
        return done
    if args.command == "check":
        return check_files(args.files, args.keys, args.build)
    if args.command == "eval":
        from guard.eval.command import run_eval

        return run_eval(
            args.policy,
            args.policy_name,
            args.dataset,
            args.out,
            args.concurrency,
            args.limit,
            args.upstream,
            allow_errors=args.allow_errors,
        )
    if args.command == "serve":
        overrides = {
            "policies": args.policy,
            "upstream_url": args.upstream,
            "host": args.host,
            "port": args.port,
            **ops_cli.serve_overrides(args),
        }
        return serve_with({k: v for k, v in overrides.items() if v is not None})
    return run_demo(args.policy, args.port, args.vllm_port)


if __name__ == "__main__":
    sys.exit(main())
