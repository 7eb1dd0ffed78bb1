"""The fake upstream's embeddings answer as OpenAI's own types say, and its pooling
family as vLLM 0.32 does (the e2e tier compares them with the real vLLM)."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
from openai.types import CreateEmbeddingResponse

from guard.testing.fake_pooling import embedding_of
from tests.conftest import Fake


def test_embeddings_validate_as_openais_response(fake_upstream: Fake) -> None:
    body = {"model": "m", "input": ["a b", "c"], "encoding_format": "float"}
    answer = httpx.post(f"{fake_upstream.url}/v1/embeddings", json=body).json()
    parsed = CreateEmbeddingResponse.model_validate(answer)
    assert [item.embedding for item in parsed.data] == [embedding_of("a b"), embedding_of("c")]
    assert [item.index for item in parsed.data] == [0, 1]
    assert parsed.object == "list" and parsed.usage.prompt_tokens == 3


def test_the_openai_client_decodes_the_fakes_base64(fake_upstream: Fake) -> None:
    api = openai.OpenAI(base_url=f"{fake_upstream.url}/v1", api_key="x", max_retries=0)
    answer = api.embeddings.create(model="m", input="hello", dimensions=5)
    assert answer.data[0].embedding == embedding_of("hello", 5)
    sent = fake_upstream.last_request()["body"]
    assert sent["encoding_format"] == "base64"
    raw = httpx.post(f"{fake_upstream.url}/v1/embeddings", json=sent).json()
    encoded = raw["data"][0]["embedding"]
    assert list(struct.unpack("<5f", base64.b64decode(encoded))) == embedding_of("hello", 5)


def test_pooling_family_shapes(fake_upstream: Fake) -> None:
    def post(path: str, **fields: object) -> dict:
        response = httpx.post(f"{fake_upstream.url}{path}", json={"model": "m", **fields})
        assert response.status_code == 200, response.text
        data: dict = response.json()
        return data

    rerank = post("/v1/rerank", query="a b", documents=["c", "b d", "a b"], top_n=2)
    assert [r["index"] for r in rerank["results"]] == [2, 1]
    assert rerank["results"][0] == {
        "index": 2,
        "document": {"text": "a b", "multi_modal": None},
        "relevance_score": 1.0,
    }
    assert set(rerank) == {"id", "model", "usage", "results"}
    score = post("/score", text_1="a b", text_2=["a", "c"])
    assert [d["score"] for d in score["data"]] == [1.0, 0.0]
    assert score["data"][0]["object"] == "score"
    pairs = post("/v1/score", queries=["a", "b"], documents=["a", "a"])
    assert [d["score"] for d in pairs["data"]] == [1.0, 0.0]
    pooled = post("/pooling", messages=[{"role": "user", "content": "a"}])
    assert pooled["data"] == [{"index": 0, "object": "pooling", "data": embedding_of("a")}]
    tokens = post("/tokenize", prompt="a b", return_token_strs=True)
    assert tokens["count"] == 2 and tokens["token_strs"] == ["a", "b"]
    assert post("/detokenize", tokens=[1, 2]) == {"prompt": "tok1 tok2"}
    rejected = httpx.post(f"{fake_upstream.url}/rerank", json={"model": "reject"})
    assert rejected.status_code == 400 and "maximum context" in rejected.json()["error"]["message"]
