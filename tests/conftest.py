from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from guard.testing.fake_upstream import create_fake_upstream
from tests.servers import RedisServer, redis_server, serve_in_thread

ROOT = Path(__file__).resolve().parent.parent

ALIASES_POLICY = """
name: aliases
models:
  alias-a: fake-model
  fake-model: null
  slow: null
  reject: null
  crash: null
  die-mid-stream: null
  no-done: null
input_rails: []
output_rails: []
"""


@dataclass
class Fake:
    app: Starlette
    url: str

    def last_request(self) -> dict:
        return self.app.state.received[-1]


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[Fake]:
    app = create_fake_upstream(tokens=8, pace_s=0.0, slow_s=3.0)
    with serve_in_thread(app) as url:
        yield Fake(app, url)


@pytest.fixture(scope="session")
def paced_upstream() -> Iterator[Fake]:
    app = create_fake_upstream(tokens=8, pace_s=0.05)
    with serve_in_thread(app) as url:
        yield Fake(app, url)


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real Redis on loopback for the whole session; tests keep apart by key prefix."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@dataclass
class Collector:
    """An OTLP/HTTP trace collector on loopback: its base URL and the exports it got."""

    url: str
    exports: list[Any]

    def spans(self) -> list[tuple[dict[str, str], Any]]:
        """Every span received, with its resource's string attributes."""
        return [
            ({a.key: a.value.string_value for a in resource_spans.resource.attributes}, span)
            for export in self.exports
            for resource_spans in export.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]


@contextmanager
def otlp_collector() -> Iterator[Collector]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    exports: list[Any] = []

    async def export(request: Request) -> Response:
        exports.append(ExportTraceServiceRequest.FromString(await request.body()))
        answer = ExportTraceServiceResponse().SerializeToString()
        return Response(answer, media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/traces", export, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield Collector(url, exports)


def write_policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def offline_policy_for(tmp_path: Path, model: str | None = None) -> Path:
    """``policies/offline.yaml`` with its rails' 2 s time-outs raised to 120 s: the tests
    judge verdicts, and a loaded machine would turn a slow rail into a 503. With ``model``,
    it serves that model with no upstream name instead of ``demo-safe``."""
    offline = (Path(__file__).resolve().parent.parent / "policies/offline.yaml").read_text()
    assert offline.count("timeout_s: 2\n") >= 1 and "  demo-safe: smollm2" in offline
    if model is not None:
        offline = offline.replace("  demo-safe: smollm2", f"  {model}: null")
    return write_policy(tmp_path, offline.replace("timeout_s: 2\n", "timeout_s: 120\n"))


def listing_rails(text: str) -> str:
    """A policy's YAML with ``input_rails: []`` and ``output_rails: []`` added for the lists
    it does not give (every policy lists both), for tests that compose policies from parts."""
    text = text if text.endswith("\n") else text + "\n"
    for key in ("input_rails", "output_rails"):
        if not re.search(rf"^{key}:", text, re.MULTILINE):
            text += f"{key}: []\n"
    return text


def guard_app(upstream_url: str, policy_files: list[Path], **settings: object) -> Starlette:
    config = Settings(upstream_url=upstream_url, upstream_timeout_s=1.0, **settings)
    return create_app(config, PolicySet.from_files(policy_files))


@pytest.fixture
def aliases_policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path, ALIASES_POLICY)


@pytest.fixture
def guard_url(fake_upstream: Fake, aliases_policy: Path) -> Iterator[str]:
    """guard with the aliases policy in front of the fake upstream."""
    app = guard_app(fake_upstream.url, [aliases_policy], max_body_bytes=64 * 1024)
    with serve_in_thread(app) as url:
        yield url


def make_tiny_llama_classifier(
    path: Path, labels: list[str], hidden_size: int = 32, seed: int = 0
) -> Path:
    """A randomly initialised Llama ``*ForSequenceClassification`` with the SmolLM2
    tokenizer, saved to ``path`` (a few MB): one label makes a reward model. It exercises
    the real loading and batching code; its verdicts mean nothing."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from guard.demo.model import ensure_demo_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tokenizer.eos_token_id,
        max_position_embeddings=2048,
    )
    torch.manual_seed(seed)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama_classifier(
        tmp_path_factory.mktemp("tiny-classifier"), ["safe", "unsafe"]
    )


@pytest.fixture(scope="session")
def tiny_reward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama_classifier(tmp_path_factory.mktemp("tiny-reward"), ["reward"], seed=1)
