"""Overload is said as overload: more concurrent requests than the classifier can start in
time get 503 with Retry-After, never a refusal; the rest get real verdicts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from textwrap import indent

import httpx
import pytest

from tests.conftest import Fake, guard_app, write_policy
from tests.scrape import metric
from tests.servers import serve_in_thread

REQUESTS = 48


BUSY = """kind: hf_classifier
name: tiny
model: {model}
thresholds: {{unsafe: 0.5}}
max_batch_size: 1
queue_timeout_s: 0.001
"""

ESCALATING = """kind: regex
name: screen
presets: [secrets]
action: block
escalate:
  between: [0.0, 1.0]
  to:
"""
"""A first rail that escalates every text (a regex scores 0 or 1) to the busy one, which
fails closed (the default ``on_error``)."""


def policy(model: Path, escalated: bool = False) -> str:
    busy = BUSY.format(model=model)
    rail = ESCALATING + indent(busy, "    ") if escalated else busy
    return f"""
name: busy
models: {{'*': null}}
output_rails: []
input_rails_mode: sequential
input_rails:
  - {indent(rail, "    ").strip()}
"""


async def burst(url: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(
                        f"{url}/v1/chat/completions",
                        json={
                            "model": "fake-model",
                            "messages": [{"role": "user", "content": f"say: request {i}"}],
                        },
                    )
                    for i in range(REQUESTS)
                )
            )
        )


@pytest.mark.parametrize("escalated", [False, True], ids=["first-rail", "escalation"])
def test_more_than_the_classifier_can_start_is_shed_not_refused(
    fake_upstream: Fake, tiny_classifier: Path, tmp_path: Path, escalated: bool
) -> None:
    """The busy classifier is the rail itself, or the one a rail escalates to: either way
    its overload is said as overload (the rail named is the policy's, the first one)."""
    app = guard_app(fake_upstream.url, [write_policy(tmp_path, policy(tiny_classifier, escalated))])
    with serve_in_thread(app) as url:
        responses = asyncio.run(burst(url))
        counted = metric(url, "guard_rail_failures_total", policy="busy", code="rails_overloaded")
    rail = "screen" if escalated else "tiny"
    shed = [r for r in responses if r.status_code == 503]
    served = [r for r in responses if r.status_code == 200]
    assert len(shed) + len(served) == REQUESTS, {r.status_code for r in responses}
    assert shed and served, "the burst should both overload the rail and be served"
    for response in shed:
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "rails_overloaded"
        assert response.json()["error"]["message"] == (
            f"The rail '{rail}' is overloaded and could not judge this request in time; "
            "retry later."
        )
        assert response.json()["guard"]["verdict"] == "error"
        [verdict] = response.json()["guard"]["verdicts"]
        assert verdict["rail"] == rail and verdict["error"].startswith("overloaded: ")
        assert ("escalated_from_score" in verdict) is escalated
    for response in served:
        data = response.json()
        assert data["guard"]["verdict"] in ("pass", "block")
        for verdict in data["guard"]["verdicts"]:
            assert verdict["outcome"] != "error" and verdict["score"] is not None
            assert ("escalated_from_score" in verdict) is escalated
        if data["choices"][0]["finish_reason"] == "content_filter":
            assert data["guard"]["verdict"] == "block"  # a refusal only from a real verdict
    assert counted == len(shed)
