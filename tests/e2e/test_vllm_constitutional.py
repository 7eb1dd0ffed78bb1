"""Constitutional self-critique against the real vLLM: SmolLM2 critiques and revises itself."""

from __future__ import annotations

from pathlib import Path

import openai

from guard.demo.vllm_server import VLLMServer
from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.servers import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
POLICY = """
name: revised
models: {revised: smollm2}
input_rails: []
output_rails:
  - kind: regex
    name: no-paris
    patterns: ["(?i)paris"]
constitutional:
  principles_file: CONSTITUTION
  select: rotate
  per_round: 1
  trigger: flagged
  templates:
    revision: "Repeat your previous response word for word."
"""


def test_flagged_draft_is_critiqued_revised_rechecked_and_refused(
    vllm: VLLMServer, tmp_path: Path
) -> None:
    path = tmp_path / "revised.yaml"
    constitution = ROOT / "policies" / "constitutions" / "default.yaml"
    path.write_text(POLICY.replace("CONSTITUTION", str(constitution)))
    app = create_app(Settings(upstream_url=vllm.url), PolicySet.from_files([path]))
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(
            model="revised",
            temperature=0,
            max_tokens=20,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        streamed = list(
            client.chat.completions.create(
                model="revised",
                temperature=0,
                max_tokens=20,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                stream=True,
            )
        )
    assert answer.model_extra is not None
    guard = answer.model_extra["guard"]
    info = guard["constitutional"]
    assert info["triggered"] and info["reason"] == "flagged by no-paris"
    assert info["extra_calls"] == 2 and info["rounds"][0]["principles"] == ["harm"]
    # SmolLM2 really wrote a critique; the output rails judged it before it was shown
    assert info["rounds"][0]["critique"] or info["rounds"][0]["critique_withheld"]
    critique = "constitutional.rounds[0].critique"
    assert [v["part"] for v in guard["verdicts"]].count(critique) == 1
    outputs = [v for v in guard["verdicts"] if v["stage"] == "output" and v["part"] != critique]
    assert len(outputs) == 2  # the draft, then the revision
    # told to repeat itself, the revision still names Paris: the refusal goes out
    assert info["final"] == "blocked"
    assert answer.choices[0].finish_reason == "content_filter"
    assert "paris" not in (answer.choices[0].message.content or "").lower()
    # streamed: only the final text goes out, never the draft that named Paris
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert "paris" not in text.lower()
    finishes = [c.choices[0].finish_reason for c in streamed if c.choices]
    assert [f for f in finishes if f] == ["content_filter"]
    stream_info = next(c.model_extra["guard"] for c in streamed if c.model_extra.get("guard"))
    assert stream_info["constitutional"]["extra_calls"] == 2
