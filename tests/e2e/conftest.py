"""One real vLLM (CPU build) serving SmolLM2 for the whole test session, and guard before it.
The vLLM exports its traces to a collector on loopback, so that a test can see it continue
guard's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from guard.demo.model import ensure_demo_model
from guard.demo.vllm_server import DEMO_ARGS, VLLMServer
from guard.server.app import create_app
from guard.settings import Settings
from tests.conftest import Collector, make_tiny_llama_classifier, otlp_collector
from tests.servers import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def vllm_collector() -> Iterator[Collector]:
    """Where the session's vLLM sends its spans (tests/e2e/test_vllm_tracing.py)."""
    with otlp_collector() as collector:
        yield collector


@pytest.fixture(scope="session")
def vllm(
    tmp_path_factory: pytest.TempPathFactory, vllm_collector: Collector
) -> Iterator[VLLMServer]:
    model_dir = ensure_demo_model()
    log_path = tmp_path_factory.mktemp("vllm") / "vllm.log"
    traces = ("--otlp-traces-endpoint", f"{vllm_collector.url}/v1/traces")
    server = VLLMServer(
        model_dir, served_name="smollm2", log_path=log_path, extra_args=(*DEMO_ARGS, *traces)
    )
    with pytest.MonkeyPatch.context() as env:  # for vLLM's process only
        env.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")  # not its gRPC
        env.setenv("OTEL_SERVICE_NAME", "vllm")
        server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


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
    """Head size 32 (hidden 64, 2 heads): the smallest vLLM's CPU attention kernels take."""
    path = tmp_path_factory.mktemp("tiny-reward-vllm")
    return make_tiny_llama_classifier(path, ["reward"], hidden_size=64, seed=1)


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
