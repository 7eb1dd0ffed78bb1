"""`guard up`: which model name the demo tells a client to send, and a bad policy refused
before vLLM starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guard.cli.demo import client_model
from guard.errors import PolicyError
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("policy", "model"),
    [("default.yaml", "demo"), ("offline.yaml", "demo-safe"), ("passthrough.yaml", "smollm2")],
)
def test_the_demo_names_the_model_its_policy_serves(policy: str, model: str) -> None:
    assert client_model(ROOT / "policies" / policy) == model


def test_the_demo_names_a_model_routed_to_it_not_just_the_first(tmp_path: Path) -> None:
    policy = tmp_path / "two.yaml"
    policy.write_text(
        "name: p\nmodels: {other: big-model, mine: smollm2}\ninput_rails: []\noutput_rails: []\n"
    )
    assert client_model(policy) == "mine"


def test_a_policy_that_does_not_serve_the_demo_model_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "gpu.yaml"
    policy.write_text("name: p\nmodels: {big: big-model}\ninput_rails: []\noutput_rails: []\n")
    with pytest.raises(PolicyError, match="no model name leads to the demo model"):
        client_model(policy)


def test_guard_up_refuses_a_bad_policy_before_starting_vllm(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: p\nmodels: {demo: smollm2}\ninput_rails: [{kind: nope}]\noutput_rails: []\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "guard.cli", "up", "--policy", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "fix these problems" in done.stderr and "bad.yaml" in done.stderr
    assert "step 1/3" not in done.stdout
