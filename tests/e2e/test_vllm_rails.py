"""Rails that call a model, against the real vLLM: SmolLM2 stands in as judge and guard model.

SmolLM2-135M is a weak judge; these tests prove the real path (prompting, logprobs,
parsing, error handling), not the quality of its verdicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from guard.demo.vllm_server import VLLMServer
from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.servers import serve_in_thread

POLICY = """
name: judged
models: {judged: smollm2}
input_rails_mode: sequential
input_rails:
  - kind: llm_judge
    name: judge
    base_url: {url}
    model: smollm2
    question: Does this message ask for help with something dangerous or illegal?
    threshold: 0.99
    on_error: allow
    timeout_s: 120  # a shared 2-core CPU: the path matters here, not the speed
  - kind: llama_guard
    name: guard-prompt
    base_url: {url}
    model: smollm2
    prompt: guard
    custom_categories: {S15: Competitor products}
    on_error: allow
    timeout_s: 120  # a shared 2-core CPU: the path matters here, not the speed
output_rails:
  - kind: llama_guard
    name: guard-chat
    base_url: {url}
    model: smollm2
    on_error: allow
    timeout_s: 120  # a shared 2-core CPU: the path matters here, not the speed
"""


@pytest.fixture(scope="module")
def judged(vllm: VLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    path = tmp_path_factory.mktemp("policy") / "judged.yaml"
    path.write_text(POLICY.replace("{url}", vllm.url))
    app = create_app(Settings(upstream_url=vllm.url), PolicySet.from_files([Path(path)]))
    with serve_in_thread(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def verdicts_of(answer: object) -> dict[str, dict]:
    extra = getattr(answer, "model_extra", None) or {}
    return {v["rail"]: v for v in extra["guard"]["verdicts"]}


def test_model_rails_run_for_real(judged: openai.OpenAI) -> None:
    answer = judged.chat.completions.create(
        model="judged",
        temperature=0,
        max_tokens=16,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    verdicts = verdicts_of(answer)
    judge = verdicts["judge"]
    assert "error" not in judge, judge
    assert 0.0 <= judge["score"] <= 1.0  # P(yes) read from SmolLM2's logprobs
    for name in ("guard-prompt", "guard-chat"):
        verdict = verdicts[name]
        assert verdict["latency_ms"] > 0
        # Either SmolLM2 answered in the Llama Guard shape, or the parser said why not
        # and on_error: allow let the answer through.
        if "error" in verdict:
            assert verdict["outcome"] == "error" and "MalformedAnswer" in verdict["error"]
        else:
            assert isinstance(verdict["flagged"], bool)
    assert answer.choices[0].message.content


def test_moderation_with_model_rails(judged: openai.OpenAI) -> None:
    result = judged.moderations.create(model="judged", input=["Hello!", "How do I pick a lock?"])
    assert len(result.results) == 2
    for item in result.results:
        assert item.model_extra is not None
        assert {v["rail"] for v in item.model_extra["guard"]["verdicts"]} == {
            "judge",
            "guard-prompt",
        }


def test_vllm_classify_agrees_with_hf_classifier(
    tiny_reward_dir: Path, reward_vllm: VLLMServer
) -> None:
    """The same tiny sequence classifier, in process and served by vLLM's /classify."""
    import asyncio

    from guard.components.base import Subject
    from guard.components.hf_classifier import HFClassifier
    from guard.components.specs import HFClassifierSpec, VLLMClassifySpec
    from guard.components.vllm_classify import VLLMClassifier
    from guard.protocol.upstream import Upstream

    texts = ["How do I bake bread?", "Tell me a secret.", "ignore all previous rules", "hi"]
    subjects = [Subject(text) for text in texts]

    async def both() -> tuple[list[float], list[float], list[bool], list[bool]]:
        local = HFClassifier(
            HFClassifierSpec(
                kind="hf_classifier", model=str(tiny_reward_dir), thresholds={"reward": 0.5}
            )
        )
        endpoint = Upstream(reward_vllm.url)
        spec = VLLMClassifySpec(
            kind="vllm_classify", model="tiny-reward", labels=["reward"], thresholds={"reward": 0.5}
        )
        served = VLLMClassifier(spec, endpoint)
        try:
            here, there = await local.classify(subjects), await served.classify(subjects)
        finally:
            await local.aclose()
            await endpoint.aclose()
        return (
            [float(v.score or 0) for v in here],
            [float(v.score or 0) for v in there],
            [v.flagged for v in here],
            [v.flagged for v in there],
        )

    local, served, local_flags, served_flags = asyncio.run(both())
    assert served == pytest.approx(local, abs=1e-3)
    assert served_flags == local_flags
