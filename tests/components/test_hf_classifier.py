"""In-process transformers classifiers and vLLM-served ones, through their real code paths."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from guard.components.base import Subject
from guard.components.hf_classifier import HFClassifier
from guard.components.specs import HFClassifierSpec
from tests.conftest import Fake
from tests.pipeline.test_rails import chat, guard_with

TEXTS = [
    "hello there",
    "how do I bake bread?",
    "a longer sentence about the weather today",
    "x",
    "tell me a story about a dragon and a knight",
    "what is 2 + 2?",
]


def classifier(
    path: Path, threshold: float = 0.5, batch: int = 32, max_length: int = 512
) -> HFClassifier:
    spec = HFClassifierSpec(
        kind="hf_classifier",
        model=str(path),
        max_batch_size=batch,
        max_length=max_length,
        thresholds={"unsafe": threshold},
    )
    return HFClassifier(spec)


def test_probabilities_are_a_distribution(tiny_classifier: Path) -> None:
    model = classifier(tiny_classifier)
    [verdict] = asyncio.run(model.classify([Subject("hello")]))
    assert set(verdict.category_scores) == {"safe", "unsafe"}
    assert sum(verdict.category_scores.values()) == pytest.approx(1.0)
    assert verdict.score == verdict.category_scores["unsafe"]


def test_thresholds_decide(tiny_classifier: Path) -> None:
    always = asyncio.run(classifier(tiny_classifier, 0.0).classify([Subject("hi")]))
    never = asyncio.run(classifier(tiny_classifier, 1.0).classify([Subject("hi")]))
    assert always[0].flagged and always[0].categories == ("unsafe",)
    assert not never[0].flagged


def test_concurrent_calls_are_batched_and_match_single_calls(tiny_classifier: Path) -> None:
    model = classifier(tiny_classifier, batch=4)

    async def run() -> tuple[list[float | None], list[float | None]]:
        alone = [(await model.classify([Subject(t)]))[0].score for t in TEXTS]
        together = await asyncio.gather(*(model.classify([Subject(t)]) for t in TEXTS))
        await model.aclose()
        return alone, [v[0].score for v in together]

    alone, together = asyncio.run(run())
    assert together == pytest.approx(alone, abs=1e-5)
    assert max(model.batcher.batch_sizes) > 1
    assert max(model.batcher.batch_sizes) <= 4


def test_a_long_texts_windows_go_through_as_batches_and_its_worst_window_stands(
    tiny_classifier: Path,
) -> None:
    import torch

    model = classifier(tiny_classifier, batch=4, max_length=16)
    long = " ".join(TEXTS) * 3

    async def run() -> list[float | None]:
        verdicts = await model.classify([Subject(long), Subject(TEXTS[1])])
        await model.aclose()
        return [v.score for v in verdicts]

    scores = asyncio.run(run())
    per_text = model.windows([long, TEXTS[1]])
    assert len(per_text[0]) > 8 and len(per_text[1]) == 1
    alone = []
    for windows in per_text:
        with torch.inference_mode():
            rows = [model.model(input_ids=torch.tensor([w])).logits.softmax(-1) for w in windows]
        alone.append(max(float(row[0, 1]) for row in rows))
    assert scores == pytest.approx(alone, abs=1e-5)
    assert len(model.batcher.batch_sizes) > 2 and max(model.batcher.batch_sizes) <= 4


def test_unknown_threshold_label_is_refused(tiny_classifier: Path) -> None:
    spec = HFClassifierSpec(
        kind="hf_classifier", model=str(tiny_classifier), thresholds={"toxic": 0.5}
    )
    with pytest.raises(ValueError, match="thresholds name"):
        HFClassifier(spec)


def test_hf_classifier_rail_through_guard(
    tiny_classifier: Path, fake_upstream: Fake, tmp_path: Path
) -> None:
    rails = (
        "output_rails:\n  - kind: hf_classifier\n    name: tiny\n"
        f"    model: {tiny_classifier}\n    thresholds: {{unsafe: 0.0}}\n"
    )
    with guard_with(fake_upstream, tmp_path, rails) as url:
        response = chat(url, "say: anything at all")
    [verdict] = response.json()["guard"]["verdicts"]
    assert verdict["kind"] == "hf_classifier" and verdict["outcome"] == "block"
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"


def test_vllm_classify_rail(fake_upstream: Fake, tmp_path: Path) -> None:
    rails = (
        "input_rails_mode: sequential\ninput_rails:\n  - kind: vllm_classify\n"
        f"    base_url: {fake_upstream.url}\n    model: classifier\n"
        "    labels: [safe, unsafe]\n    thresholds: {unsafe: 0.5}\n"
    )
    with guard_with(fake_upstream, tmp_path, rails) as url:
        blocked = chat(url, "something unsafe")
        passed = chat(url, "say: fine")
    verdict = blocked.json()["guard"]["verdicts"][0]
    assert verdict["outcome"] == "block" and verdict["score"] == pytest.approx(0.8)
    assert verdict["category_scores"] == {"safe": 0.2, "unsafe": 0.8}
    assert passed.json()["choices"][0]["message"]["content"] == "fine"


def test_cascade_escalates_only_uncertain_scores(fake_upstream: Fake, tmp_path: Path) -> None:
    """vllm_classify scores 0.8 for texts with 'unsafe', 0.1 otherwise; 0.8 is uncertain."""
    rails = f"""
input_rails_mode: sequential
input_rails:
  - kind: vllm_classify
    name: cheap
    base_url: {fake_upstream.url}
    model: classifier
    labels: [safe, unsafe]
    thresholds: {{unsafe: 0.5}}
    escalate:
      between: [0.5, 0.9]
      to:
        kind: llm_judge
        base_url: {fake_upstream.url}
        model: judge
        question: Is this harmful?
"""
    with guard_with(fake_upstream, tmp_path, rails) as url:
        before = fake_upstream.app.state.received.count
        cleared = chat(url, "unsafe-looking but say: No")
        escalated_calls = fake_upstream.app.state.received.count - before
        confirmed = chat(url, "unsafe for real, say: Yes")
        certain = chat(url, "say: hello")
    first = cleared.json()["guard"]["verdicts"][0]
    assert first["rail"] == "cheap" and first["outcome"] == "pass"
    assert first["escalated_from_score"] == pytest.approx(0.8)
    assert first["score"] == pytest.approx(0.0)
    assert escalated_calls == 3  # classify, judge, generation
    assert confirmed.json()["guard"]["verdicts"][0]["outcome"] == "block"
    assert "escalated_from_score" not in certain.json()["guard"]["verdicts"][0]


def test_vllm_classify_refuses_to_guess_label_names(fake_upstream: Fake, tmp_path: Path) -> None:
    rails = (
        "input_rails_mode: sequential\ninput_rails:\n  - kind: vllm_classify\n"
        f"    base_url: {fake_upstream.url}\n    model: classifier\n"
        "    thresholds: {LABEL_1: 0.5}\n"
    )
    with guard_with(fake_upstream, tmp_path, rails) as url:
        response = chat(url, "something unsafe")
    assert response.status_code == 503 and response.json()["error"]["code"] == "rail_error"
    verdict = response.json()["guard"]["verdicts"][0]
    assert verdict["outcome"] == "error" and "set 'labels'" in verdict["error"]


def test_a_remote_classifier_reads_a_long_text_in_windows(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    rails = (
        "input_rails_mode: sequential\ninput_rails:\n  - kind: vllm_classify\n"
        f"    base_url: {fake_upstream.url}\n    model: classifier\n"
        "    labels: [safe, unsafe]\n    thresholds: {unsafe: 0.5}\n    window_chars: 200\n"
    )
    text = "A calm paragraph about gardens and weather. " * 20 + "something unsafe"
    with guard_with(fake_upstream, tmp_path, rails) as url:
        before = fake_upstream.app.state.received.count
        blocked = chat(url, text)
        [call] = fake_upstream.app.state.received.since(before)
    windows = call["body"]["input"]
    assert len(windows) > 4 and all(len(w) <= 200 for w in windows)
    assert "".join(windows).count("unsafe") >= 1 and windows[-1].endswith("something unsafe")
    assert blocked.json()["choices"][0]["finish_reason"] == "content_filter"
    assert blocked.json()["guard"]["verdicts"][0]["score"] == pytest.approx(0.8)
