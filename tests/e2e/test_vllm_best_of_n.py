"""Best-of-n against the real vLLM: n samples from SmolLM2, rewards in process and served."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from guard.components.base import Candidate
from guard.components.hf_reward import HFReward
from guard.components.specs import HFRewardSpec, VLLMRewardSpec
from guard.components.vllm_reward import VLLMReward
from guard.demo.vllm_server import VLLMServer
from guard.policy.routing import PolicySet
from guard.protocol.upstream import Upstream
from guard.server.app import create_app
from guard.settings import Settings
from tests.servers import serve_in_thread

QUESTION = [{"role": "user", "content": "Name a fruit and say why you like it."}]
TEXTS = [
    "An apple, because it is crisp.",
    "Bananas! Sweet and easy.",
    "Mango: so juicy.",
    "I like grapes.",
    "Oranges, full of vitamin C.",
]


def test_in_process_and_served_rewards_agree(
    tiny_reward_dir: Path, reward_vllm: VLLMServer
) -> None:
    candidates = [Candidate(text, tuple(QUESTION)) for text in TEXTS]

    async def both() -> tuple[list[float], list[float]]:
        local = HFReward(HFRewardSpec(kind="hf_reward", model=str(tiny_reward_dir)))
        endpoint = Upstream(reward_vllm.url)
        served = VLLMReward(VLLMRewardSpec(kind="vllm_reward", model="tiny-reward"), endpoint)
        try:
            return await local.score(candidates), await served.score(candidates)
        finally:
            await local.aclose()
            await endpoint.aclose()

    local, served = asyncio.run(both())
    assert served == pytest.approx(local, abs=1e-3)
    assert max(range(5), key=local.__getitem__) == max(range(5), key=served.__getitem__)


POLICY = """
name: bon
models: {bon: smollm2, pruned: null}
input_rails: []
output_rails: []
best_of_n:
  n: 8
  reward: {kind: vllm_reward, base_url: "REWARD", model: tiny-reward}
"""


@pytest.fixture(scope="module")
def bon_client(
    vllm: VLLMServer, reward_vllm: VLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    path = tmp_path_factory.mktemp("bon") / "bon.yaml"
    path.write_text(POLICY.replace("REWARD", reward_vllm.url))
    app = create_app(Settings(upstream_url=vllm.url), PolicySet.from_files([path]))
    with serve_in_thread(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_best_of_8_returns_the_highest_reward(bon_client: openai.OpenAI) -> None:
    answer = bon_client.chat.completions.create(
        model="bon", messages=QUESTION, max_tokens=24, seed=3
    )
    assert answer.model_extra is not None
    info = answer.model_extra["guard"]["best_of_n"]
    scores = info["scores"]
    assert info["n"] == 8 and len(scores) == 8
    best = max(range(8), key=lambda i: (scores[i], -i))
    assert info["chosen"] == [best]
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.completion_tokens == info["generated_tokens"]
    assert answer.usage.completion_tokens > 24  # every candidate counted, not just the winner


PRUNED = """
- name: pruned
  models: {pruned: smollm2}
  input_rails: []
  output_rails: []
  best_of_n:
    n: 4
    reward: {kind: hf_reward, model: "REWARD_DIR"}
    prune: {segment_tokens: 6, keep_fraction: 0.5, rounds: 1}
- name: streamed
  models: {streamed: smollm2}
  input_rails: []
  output_rails: []
  best_of_n:
    n: 4
    reward: {kind: hf_reward, model: "REWARD_DIR"}
    prune: {segment_tokens: 4, keep_fraction: 0.5, rounds: 2}
"""


def test_pruning_continues_drafts_in_real_vllm(
    vllm: VLLMServer, tiny_reward_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "pruned.yaml"
    path.write_text(PRUNED.replace("REWARD_DIR", str(tiny_reward_dir)))
    app = create_app(Settings(upstream_url=vllm.url), PolicySet.from_files([path]))
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(
            model="pruned", messages=QUESTION, max_tokens=20, seed=5
        )
        stream = client.chat.completions.create(
            model="streamed",
            messages=QUESTION,
            max_tokens=40,
            seed=5,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert answer.model_extra is not None
    info = answer.model_extra["guard"]["best_of_n"]
    [round_one] = info["pruning"]["rounds"]
    assert len(round_one["kept"]) == 2
    assert info["chosen"][0] in round_one["kept"]
    assert answer.choices[0].message.content
    # 4 -> 2 -> 1: the last survivor's continuation streams from vLLM
    streamed = next(c.model_extra["guard"] for c in chunks if c.model_extra.get("guard"))
    survivor = streamed["best_of_n"]["pruning"]["streamed"]
    assert streamed["best_of_n"]["chosen"] == [survivor]
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 1 and "".join(texts).strip()
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > streamed["best_of_n"]["generated_tokens"]
