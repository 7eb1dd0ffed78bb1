"""The ``guard`` command: serve, check, eval, up, and the training commands."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from guard import ops_cli
from guard.errors import PolicyError

POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"


TRAINERS = {
    "train-embedding-head": ("guard.training", "train the embedding classifier's head"),
    "train-embedding-reward": ("guard.reward_training", "train the embedding reward head"),
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

    evaluate = commands.add_parser("eval", help="measure a policy's rails on a labelled set")
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

    up = commands.add_parser("up", help="run the demo: vLLM with SmolLM2 and guard in front")
    up.add_argument("--policy", type=Path, default=POLICIES_DIR / "default.yaml")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--vllm-port", type=int, default=8000)

    ops_cli.add_commands(commands)

    args = parser.parse_args(given)
    if (done := ops_cli.run(args)) is not None:
        return done
    if args.command == "check":
        return check_files(args.files, args.keys)
    if args.command == "eval":
        from guard.eval_command import run_eval

        return run_eval(
            args.policy,
            args.policy_name,
            args.dataset,
            args.out,
            args.concurrency,
            args.limit,
            args.upstream,
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


def check_files(files: list[Path], keys: Path | None = None) -> int:
    from guard.keys import load_keys
    from guard.pipeline import unsupported
    from guard.policy import PolicySet, load_policy_file

    failed = False
    loaded = []
    for path in files:
        try:
            policies = load_policy_file(path)
        except PolicyError as exc:
            failed = True
            print("\n".join(exc.problems), file=sys.stderr)
            continue
        problems = [p for item in policies for p in unsupported(item)]
        if problems:
            failed = True
            print("\n".join(problems), file=sys.stderr)
            continue
        loaded.extend(policies)
        print(f"ok: {path} ({', '.join(item.policy.name for item in policies)})")
    if failed:
        return 1
    try:
        served = PolicySet(loaded)
    except PolicyError as exc:
        print("these files cannot be served together:\n" + "\n".join(exc.problems), file=sys.stderr)
        return 1
    if keys is not None:
        try:
            ring = load_keys(keys, None, served)
        except PolicyError as exc:
            print("\n".join(exc.problems), file=sys.stderr)
            return 1
        print(f"ok: {keys} ({len(ring.names)} keys)")
    return 0


def serve_with(overrides: dict[str, object]) -> int:
    import uvicorn

    from guard.app import create_app
    from guard.logs import log_config
    from guard.settings import Settings

    settings = Settings(**overrides)  # type: ignore[arg-type]
    try:
        app = create_app(settings)
    except PolicyError as exc:
        print(
            "guard cannot start; fix these problems:\n" + "\n".join(exc.problems),
            file=sys.stderr,
        )
        return 2
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_format, settings.log_level),
        access_log=False,  # guard logs each request itself, with key, policy and request id
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
    )
    return 0


def run_demo(policy: Path, port: int, vllm_port: int) -> int:
    from guard.demo_model import ensure_demo_model
    from guard.vllm_server import DEMO_ARGS, VLLMServer

    def say(message: str) -> None:
        print(f"[guard up] {message}", flush=True)

    say("step 1/3: the demo model (SmolLM2-135M-Instruct)")
    model_dir = ensure_demo_model(progress=say)
    say(f"step 2/3: starting vLLM on 127.0.0.1:{vllm_port} (usually about 40 s)")
    with VLLMServer(
        model_dir, port=vllm_port, served_name="smollm2", extra_args=DEMO_ARGS, progress=say
    ) as vllm:
        say(f"step 3/3: starting guard on 127.0.0.1:{port} with {policy}")
        say(
            f"ready soon: point any OpenAI client at http://127.0.0.1:{port}/v1 "
            "with model 'demo'. Try:"
        )
        say(
            f"  curl -s http://127.0.0.1:{port}/v1/chat/completions -H 'content-type: "
            'application/json\' -d \'{"model": "demo", "messages": [{"role": "user", '
            '"content": "What is the capital of France?"}]}\''
        )
        say("Ctrl-C stops guard and vLLM.")
        return serve_with({"policies": [policy], "upstream_url": vllm.url, "port": port})


if __name__ == "__main__":
    sys.exit(main())
