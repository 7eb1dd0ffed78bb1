"""Embeddings and vLLM's pooling family through guard, against a real vLLM (CPU build).

The demo model generates and cannot embed, so a tiny random Llama made here is served
with ``--runner pooling --convert embed`` (vLLM's mean-pooled embedding adapter). Its
vectors mean nothing; what is tested is that guard passes them on exactly, and that
the fake upstream answers in the shapes this vLLM does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from guard.demo.vllm_server import VLLMServer
from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.conftest import Fake, listing_rails
from tests.servers import serve_in_thread

SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"
POLICY = """
name: embed
models: {embedder: tiny-embed, '*': null}
endpoints:
  embeddings: {input_rails: true}
  pooling: true
  score: true
  rerank: true
  tokenize: true
  detokenize: true
input_rails_mode: sequential
input_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
    action: block
"""
REQUESTS: dict[str, dict[str, Any]] = {
    "/v1/embeddings": {"input": ["the cat sat", "on the mat"], "encoding_format": "float"},
    "/pooling": {"input": "the cat sat"},
    "/score": {"text_1": "the cat", "text_2": ["a cat", "a dog"]},
    "/v1/score": {"queries": "the cat", "documents": ["a cat", "a dog"]},
    "/rerank": {"query": "the cat", "documents": ["a dog", "a cat"]},
    "/v1/rerank": {"query": "the cat", "documents": ["a dog", "a cat"], "top_n": 1},
    "/v2/rerank": {"query": "the cat", "documents": ["a dog", "a cat"]},
    "/tokenize": {"prompt": "the cat sat"},
    "/detokenize": {"tokens": [504, 2644]},
}


def make_tiny_llama_embedder(path: Path) -> Path:
    """A randomly initialised 2-layer Llama with the SmolLM2 tokenizer (a few MB); head
    size 32, the smallest vLLM's CPU attention kernels take."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from guard.demo.model import ensure_demo_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=tokenizer.eos_token_id,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def embed_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    model = make_tiny_llama_embedder(tmp_path_factory.mktemp("tiny-embed"))
    log_path = tmp_path_factory.mktemp("embed-vllm") / "vllm.log"
    args = ("--max-model-len", "1024", "--runner", "pooling", "--convert", "embed")
    with VLLMServer(model, served_name="tiny-embed", log_path=log_path, extra_args=args) as server:
        yield server


@pytest.fixture(scope="module")
def embed_guard(embed_vllm: VLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("embed-policy") / "embed.yaml"
    path.write_text(listing_rails(POLICY))
    app = create_app(Settings(upstream_url=embed_vllm.url), PolicySet.from_files([path]))
    with serve_in_thread(app) as url:
        yield url


def api(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys and types, not values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return "number" if isinstance(value, int | float) else type(value).__name__


def without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def test_openai_client_embeds_through_guard_exactly_as_directly(
    embed_guard: str, embed_vllm: VLLMServer
) -> None:
    texts = ["the cat sat on the mat", "guard passes vectors on"]
    guarded = api(embed_guard).embeddings.create(model="embedder", input=texts)
    direct = api(embed_vllm.url).embeddings.create(model="tiny-embed", input=texts)
    assert [d.embedding for d in guarded.data] == [d.embedding for d in direct.data]
    assert len(guarded.data[0].embedding) == 64
    assert guarded.usage == direct.usage and guarded.model == "tiny-embed"
    assert guarded.model_extra is not None
    assert guarded.model_extra["guard"]["input"]["judged"] == ["input[0]", "input[1]"]


def test_input_rails_on_embeddings_block_a_secret(embed_guard: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        api(embed_guard).embeddings.create(model="embedder", input=["hello", f"key {SECRET}"])
    assert caught.value.code == "content_filter"


@pytest.mark.parametrize("path", sorted(REQUESTS))
def test_every_listed_endpoint_answers_as_vllm_does_and_as_the_fake_does(
    embed_guard: str, embed_vllm: VLLMServer, fake_upstream: Fake, path: str
) -> None:
    guarded = httpx.post(f"{embed_guard}{path}", json={"model": "embedder", **REQUESTS[path]})
    assert guarded.status_code == 200, guarded.text
    body = {"model": "tiny-embed", **REQUESTS[path]}
    direct = httpx.post(f"{embed_vllm.url}{path}", json=body).json()
    ignored = ("guard", "id", "created")
    assert without(guarded.json(), *ignored) == without(direct, *ignored)
    fake = httpx.post(f"{fake_upstream.url}{path}", json=body).json()
    assert shape(fake) == shape(direct)


def test_an_endpoint_the_policy_does_not_list_is_404(embed_guard: str) -> None:
    response = httpx.post(f"{embed_guard}/classify", json={"model": "embedder", "input": "hi"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "endpoint_not_enabled"


def test_models_retrieve_against_the_real_upstream(embed_guard: str) -> None:
    client = api(embed_guard)
    assert client.models.retrieve("embedder").id == "embedder"
    assert client.models.retrieve("tiny-embed").owned_by == "guard"  # via '*', as vLLM lists it
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("not-served")


def test_the_demo_guard_retrieves_its_models_and_explains_it_cannot_embed(
    guarded: openai.OpenAI,
) -> None:
    """The session's guard before SmolLM2 (policies/default.yaml): vLLM has no
    /v1/models/{id} and, for a generating model, no embeddings route."""
    assert guarded.models.retrieve("demo").id == "demo"
    with pytest.raises(openai.NotFoundError) as caught:
        guarded.models.retrieve("smollm3")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as refused:
        guarded.embeddings.create(model="demo", input="hello")
    assert "does not serve /v1/embeddings" in refused.value.message
