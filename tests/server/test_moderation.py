"""/v1/moderations, called exactly as OpenAI's, backed by a policy's input rails."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from guard.server.moderation import LLAMA_GUARD_TO_OPENAI, OPENAI_CATEGORIES, openai_categories
from tests.conftest import Fake, guard_app, write_policy
from tests.servers import serve_in_thread

POLICY = """
name: moderated
models: {chat: fake-model}
input_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
  - kind: llama_guard
    base_url: {upstream}
    model: guard-model
"""


def test_every_llama_guard_code_maps_to_openai_names() -> None:
    assert set(LLAMA_GUARD_TO_OPENAI) == {f"S{i}" for i in range(1, 15)}
    for names in LLAMA_GUARD_TO_OPENAI.values():
        assert set(names) <= set(OPENAI_CATEGORIES)
    assert openai_categories("self_harm") == ("self-harm",)
    assert openai_categories("secrets") == ()


def test_openai_client_moderation(fake_upstream: Fake, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, POLICY.replace("{upstream}", fake_upstream.url))
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        result = client.moderations.create(
            model="chat",
            input=["say: unsafe\nS10", "say: safe", "say: safe sk-abcdefghijklmnopqrstuv0123"],
        )
        single = client.moderations.create(input="say: unsafe\nS1")
    hate, fine, secret = result.results
    assert hate.flagged and hate.categories.hate and not hate.categories.violence
    assert not fine.flagged and not any(fine.categories.model_dump().values())
    assert secret.flagged and not any(secret.categories.model_dump().values())
    assert secret.model_extra is not None
    assert secret.model_extra["guard"]["verdicts"][0]["categories"] == ["secrets"]
    [violent] = single.results
    assert violent.categories.violence and violent.categories.illicit_violent


def test_moderation_errors(fake_upstream: Fake, tmp_path: Path) -> None:
    plain = write_policy(tmp_path, "name: plain\nmodels: {m: null}\n", "plain.yaml")
    with serve_in_thread(guard_app(fake_upstream.url, [plain])) as url:
        no_rails = httpx.post(f"{url}/v1/moderations", json={"input": "hi", "model": "m"})
        unknown = httpx.post(f"{url}/v1/moderations", json={"input": "hi"})
        bad_input = httpx.post(f"{url}/v1/moderations", json={"input": 42, "model": "m"})
    assert no_rails.status_code == 400 and "no input rails" in no_rails.json()["error"]["message"]
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    assert bad_input.status_code == 400


def test_moderation_policy_must_exist(fake_upstream: Fake, tmp_path: Path) -> None:
    from guard.errors import PolicyError

    plain = write_policy(tmp_path, "name: plain\nmodels: {m: null}\n")
    with pytest.raises(PolicyError, match="GUARD_MODERATION_POLICY"):
        guard_app(fake_upstream.url, [plain], moderation_policy="nope")
