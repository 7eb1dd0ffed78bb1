"""``guard up``: the demo, vLLM (CPU) serving SmolLM2 with guard in front."""

from __future__ import annotations

from pathlib import Path

from guard.cli.serve import serve_with


def run_demo(policy: Path, port: int, vllm_port: int) -> int:
    from guard.demo.model import ensure_demo_model
    from guard.demo.vllm_server import DEMO_ARGS, VLLMServer

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
