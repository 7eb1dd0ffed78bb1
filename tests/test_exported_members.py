"""Each package's declared surface (``__all__``), pinned: adding or removing a public name
is a deliberate change to this file. Modelled on httpx's test of its exported members."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

EXPORTS = {
    "guard": [
        "GuardError",
        "Policy",
        "PolicyError",
        "PolicySet",
        "Settings",
        "create_app",
        "load_policy_file",
    ],
    "guard.protocol": [
        "CHAT",
        "COMPLETIONS",
        "ChatCompletionRequest",
        "CompletionRequest",
        "DONE",
        "EMBEDDINGS",
        "EVENT_END",
        "EmbeddingRequest",
        "GenerationRequest",
        "PoolingRequest",
        "Relay",
        "Upstream",
        "as_events",
        "choice_text",
        "chunk_head",
        "data_event",
        "error_event",
        "message_text",
        "passed_through",
        "replay",
        "set_choice_text",
        "split_events",
    ],
    "guard.reading": ["Normalized", "normalize", "normalized_text"],
    "guard.components": [
        "AnyClassifier",
        "AnyReward",
        "BuildContext",
        "CLASSIFIERS",
        "Candidate",
        "Classifier",
        "ClassifierSpec",
        "REWARDS",
        "RemoteModel",
        "Reward",
        "RewardSpec",
        "Subject",
        "Verdict",
        "build_classifier",
        "build_reward",
    ],
    "guard.policy": [
        "BestOfN",
        "Constitutional",
        "LoadedPolicy",
        "Policy",
        "PolicySet",
        "Principle",
        "Route",
        "Streaming",
        "WILDCARD",
        "load_policy_file",
        "load_principles",
    ],
    "guard.pipeline": [
        "Judgement",
        "Pipeline",
        "Rail",
        "RailReport",
        "RequestContext",
        "SEVERITY",
        "Stage",
        "Trace",
        "check_runnable",
        "input_subjects",
        "judge",
        "output_subjects",
        "unsupported",
    ],
    "guard.ops": [
        "ApiKey",
        "ConcurrencyLimit",
        "KeyConcurrency",
        "KeyRing",
        "Lease",
        "Metrics",
        "Operations",
        "RateLimit",
        "RateLimiter",
        "Reloader",
        "RequestRecord",
        "Runtime",
        "Runtimes",
        "build_runtime",
        "hash_key",
        "load_keys",
        "new_key",
    ],
    "guard.server": ["create_app"],
    "guard.cli": ["main"],
    "guard.eval": [
        "Scored",
        "average_precision",
        "binary_metrics",
        "percentile",
        "pr_curve",
        "report",
        "run_audit",
        "run_eval",
        "score_examples",
    ],
    "guard.datasets": [
        "DATASETS",
        "Dataset",
        "Example",
        "LICENCES",
        "Licence",
        "OPENAI_CATEGORIES",
        "data_root",
        "load",
        "names",
        "sha256",
        "text_group",
        "trainable",
    ],
    "guard.train": [
        "Config",
        "LABELS",
        "UNSAFE_LABELS",
        "choose_label_thresholds",
        "run",
        "unsafe_score",
    ],
    "guard.demo": ["DEMO_ARGS", "VLLMServer", "ensure_demo_model"],
    "guard.testing": ["create_fake_upstream"],
}


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_each_package_declares_its_public_names(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == EXPORTS[package]
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_import_guard_loads_no_server_and_no_torch() -> None:
    probe = (
        "import sys, guard, guard.demo.vllm_server, guard.errors;"
        "print(sorted(m for m in ('starlette', 'aiohttp', 'torch', 'pydantic', 'uvicorn',"
        " 'opentelemetry') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_the_lazy_top_level_names_are_the_real_ones() -> None:
    import guard
    from guard.server.app import create_app

    assert guard.create_app is create_app
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = guard.nothing  # type: ignore[attr-defined]
