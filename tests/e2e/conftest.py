"""One real vLLM (CPU build) serving SmolLM2 for the whole test session, and guard before it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from guard.app import create_app
from guard.demo_model import ensure_demo_model
from guard.settings import Settings
from guard.vllm_server import DEMO_ARGS, VLLMServer
from tests.servers import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    model_dir = ensure_demo_model()
    log_path = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with VLLMServer(
        model_dir, served_name="smollm2", log_path=log_path, extra_args=DEMO_ARGS
    ) as server:
        yield server


@pytest.fixture(scope="session")
def guard_url(vllm: VLLMServer) -> Iterator[str]:
    settings = Settings(upstream_url=vllm.url, policies=[ROOT / "policies" / "default.yaml"])
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="session")
def guarded(guard_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{guard_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def direct(vllm: VLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{vllm.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random one-output Llama reward model (head size 32, which vLLM's CPU kernels take)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tokenizer.eos_token_id,
        max_position_embeddings=2048,
    )
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tiny-reward")
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def reward_vllm(
    tiny_reward_dir: Path, vllm: VLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    """A second vLLM, serving the tiny reward model for /pooling (after the first is up)."""
    log_path = tmp_path_factory.mktemp("reward-vllm") / "vllm.log"
    with VLLMServer(
        tiny_reward_dir,
        served_name="tiny-reward",
        log_path=log_path,
        extra_args=("--max-model-len", "1024"),
    ) as server:
        yield server
