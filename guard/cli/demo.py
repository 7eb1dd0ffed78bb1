"""``guard up``: the demo, vLLM (CPU) serving SmolLM2 with guard in front."""

from __future__ import annotations

from pathlib import Path

from guard.cli.serve import cannot_start, serve_with
from guard.errors import PolicyError
from guard.policy.load import load_policy_file
from guard.policy.models import WILDCARD

SERVED_NAME = "smollm2"
"""The name vLLM serves the demo model by."""


def client_model(policy: Path) -> str:
    """The model name a client sends to reach the demo model under ``policy``: the first
    name it routes there (``demo`` in policies/default.yaml, ``demo-safe`` in
    offline.yaml), or the served name itself under a ``"*"`` policy. ``PolicyError`` for a
    policy that serves it by no name."""
    loaded = load_policy_file(policy)
    for one in loaded:
        for name, target in one.policy.models.items():
            if name != WILDCARD and (target or name) == SERVED_NAME:
                return name
    if any(WILDCARD in one.policy.models for one in loaded):
        return SERVED_NAME
    raise PolicyError(
        [f"{policy}: no model name leads to the demo model '{SERVED_NAME}' (add one to `models`)"]
    )


def run_demo(policy: Path, port: int, vllm_port: int) -> int:
    from guard.demo.model import ensure_demo_model
    from guard.demo.vllm_server import DEMO_ARGS, VLLMServer

    def say(message: str) -> None:
        print(f"[guard up] {message}", flush=True)

    try:  # before vLLM's start, which takes most of a minute
        model = client_model(policy)
    except PolicyError as exc:
        return cannot_start(exc)
    say("step 1/3: the demo model (SmolLM2-135M-Instruct)")
    model_dir = ensure_demo_model(progress=say)
    say(f"step 2/3: starting vLLM on 127.0.0.1:{vllm_port} (usually about 40 s)")
    with VLLMServer(
        model_dir, port=vllm_port, served_name=SERVED_NAME, extra_args=DEMO_ARGS, progress=say
    ) as vllm:
        say(f"step 3/3: starting guard on 127.0.0.1:{port} with {policy}")
        say(
            f"ready soon: point any OpenAI client at http://127.0.0.1:{port}/v1 "
            f"with model '{model}'. Try:"
        )
        say(
            f"  curl -s http://127.0.0.1:{port}/v1/chat/completions -H 'content-type: "
            f'application/json\' -d \'{{"model": "{model}", "temperature": 0, "messages": '
            '[{"role": "user", "content": "What is the capital of France?"}]}\''
        )
        say("Ctrl-C stops guard and vLLM.")
        return serve_with({"policies": [policy], "upstream_url": vllm.url, "port": port})
