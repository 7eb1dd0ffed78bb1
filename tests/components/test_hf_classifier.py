"""In-process transformers classifiers and vLLM-served ones, through their real code paths."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from guard.components.base import Subject
from guard.components.hf_classifier import HFClassifier
from guard.components.specs import HFClassifierSpec
from guard.policy.load import load_policy_file
from tests.conftest import ROOT, Fake, guard_app, write_policy
from tests.pipeline.test_rails import chat, guard_with
from tests.servers import serve_in_thread

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


# -- the shipped Prompt Guard 2 rail (policies/safety-gpu.yaml) --------------------------

SHIPPED = ROOT / "policies" / "safety-gpu.yaml"
PROMPT_GUARD = "meta-llama/Llama-Prompt-Guard-2-86M"
LLAMA_GUARD_URL = "http://127.0.0.1:8001"
HUB_LABELS = ["LABEL_0", "LABEL_1"]
"""The names the hub's config.json gives Prompt Guard 2's classes, as users report them."""
CARD_LABELS = ["BENIGN", "MALICIOUS"]
"""The names Meta's model card prints (``model.config.id2label``)."""


def make_tiny_prompt_guard(path: Path, labels: list[str], malicious: float) -> Path:
    """A randomly initialised ``DebertaV2ForSequenceClassification`` shaped like Prompt
    Guard 2 (DeBERTa-v3: relative attention with position buckets, no absolute positions,
    512 positions, two classes named ``labels``), saved to ``path`` with a DeBERTa-v2
    tokenizer over single characters: Meta's own 251,000-piece tokenizer cannot be
    downloaded here. Its classifier's weights are zero and its bias set so that every
    text scores ``malicious`` for class 1."""
    import math
    import string

    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = [("[PAD]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[UNK]", 0.0), ("▁", -2.0)]
    vocab += [(c, -5.0) for c in chars] + [("▁" + c, -4.0) for c in chars] + [("[MASK]", 0.0)]
    tokenizer = DebertaV2Tokenizer(vocab=vocab, unk_id=3)
    config = DebertaV2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=256,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        type_vocab_size=0,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    model = DebertaV2ForSequenceClassification(config)
    half = math.log(malicious / (1 - malicious)) / 2
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([-half, half]))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def shipped_with(model: Path, llama_guard_url: str) -> str:
    """policies/safety-gpu.yaml with only Prompt Guard's model id (and Llama Guard's address,
    for the fake upstream to answer) replaced."""
    text = SHIPPED.read_text()
    assert text.count(PROMPT_GUARD) == 1 and LLAMA_GUARD_URL in text
    return text.replace(PROMPT_GUARD, str(model)).replace(LLAMA_GUARD_URL, llama_guard_url)


@pytest.mark.parametrize("labels", [HUB_LABELS, CARD_LABELS], ids=["hub-config", "model-card"])
@pytest.mark.parametrize(("malicious", "outcome"), [(0.85, "pass"), (0.95, "block")])
def test_the_shipped_prompt_guard_rail_blocks_class_1_at_its_threshold(
    fake_upstream: Fake, tmp_path: Path, labels: list[str], malicious: float, outcome: str
) -> None:
    model = make_tiny_prompt_guard(tmp_path / "prompt-guard", labels, malicious)
    policy = write_policy(tmp_path, shipped_with(model, fake_upstream.url))
    # The fake upstream answers what follows "say:": the chat model and Llama Guard alike.
    body = {
        "model": "llama-3.1-8b",
        "messages": [
            {"role": "system", "content": "Be brief. say: safe"},
            {"role": "user", "content": "say: safe"},
        ],
    }
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    info = response.json()["guard"]
    [verdict] = [v for v in info["verdicts"] if v["rail"] == "prompt-guard"]
    assert verdict["kind"] == "hf_classifier" and verdict["part"] == "messages[1]"
    assert verdict["outcome"] == outcome
    assert verdict["score"] == pytest.approx(malicious, abs=1e-4)
    assert verdict["category_scores"] == {
        "BENIGN": pytest.approx(1 - malicious, abs=1e-4),
        "MALICIOUS": pytest.approx(malicious, abs=1e-4),
    }
    assert verdict["categories"] == (["MALICIOUS"] if outcome == "block" else [])
    [scoped] = info["input"]["scoped"]
    assert scoped["rail"] == "prompt-guard" and scoped["judged"] == ["messages[1]"]
    assert info["verdict"] == outcome
    finish = response.json()["choices"][0]["finish_reason"]
    assert finish == ("content_filter" if outcome == "block" else "stop")


def test_the_shipped_prompt_guard_rail_reads_a_long_text_in_512_token_windows(
    tmp_path: Path,
) -> None:
    from guard.policy.load import load_policy_file

    model = make_tiny_prompt_guard(tmp_path / "prompt-guard", HUB_LABELS, 0.5)
    policy = write_policy(tmp_path, shipped_with(model, "http://127.0.0.1:1"))
    [loaded] = load_policy_file(policy)
    [spec] = [r for r in loaded.policy.input_rails if r.name == "prompt-guard"]
    assert isinstance(spec, HFClassifierSpec) and spec.max_length == 512
    rail = HFClassifier(spec)
    text = " ".join(f"w{i % 10}" for i in range(1200))  # 2,400 tokens: "▁w", then the digit
    [windows] = rail.windows([text])
    body = rail.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(body) == 2400 and len(windows) == 6
    assert all(len(w) <= 512 for w in windows)
    assert all(
        w[0] == rail.tokenizer.cls_token_id and w[-1] == rail.tokenizer.sep_token_id
        for w in windows
    )
    assert windows[0][1:-1] == body[:510] and windows[-1][1:-1] == body[-510:]
    covered = {tuple(w[1:-1]) for w in windows}
    assert sum(len(w) for w in covered) >= len(body)


def test_labels_name_the_classes_in_place_of_the_config(tiny_classifier: Path) -> None:
    spec = HFClassifierSpec(
        kind="hf_classifier",
        model=str(tiny_classifier),
        labels=["ok", "bad"],
        thresholds={"bad": 0.0},
    )
    [verdict] = asyncio.run(HFClassifier(spec).classify([Subject("hi")]))
    assert verdict.categories == ("bad",) and set(verdict.category_scores) == {"ok", "bad"}
    with pytest.raises(ValueError, match="has 2 classes; this rail's labels name 3"):
        HFClassifier(spec.model_copy(update={"labels": ["a", "b", "bad"]}))
    with pytest.raises(ValueError, match=r"thresholds name \['unsafe'\], which 'labels'"):
        HFClassifierSpec(
            kind="hf_classifier", model="m", labels=["ok", "bad"], thresholds={"unsafe": 0.5}
        )


def test_the_shipped_gpu_policy_answers_self_harm_with_its_own_refusal(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    """Llama Guard's S11 (Suicide & Self-Harm) gets the policy's self-harm message; another
    category the policy's refusal. The fake upstream answers for Llama Guard what follows
    "say:" in the user's message."""
    model = make_tiny_prompt_guard(tmp_path / "prompt-guard", CARD_LABELS, 0.5)
    policy = write_policy(tmp_path, shipped_with(model, fake_upstream.url))

    def ask(text: str) -> str:
        body = {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": text}]}
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).json()
        return str(answer["choices"][0]["message"]["content"])

    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        hurting, violent = ask("say: unsafe S11"), ask("say: unsafe S1")
    assert hurting.startswith("I can't help with that, but you don't have to go through")
    [loaded] = load_policy_file(policy)
    assert violent == loaded.policy.refusal.message != hurting
