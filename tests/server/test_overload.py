"""Overload is said as overload: more concurrent requests than the classifier can start in
time get 503 with Retry-After, never a refusal; the rest get real verdicts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import Fake, guard_app, write_policy
from tests.scrape import metric
from tests.servers import serve_in_thread

REQUESTS = 48


def policy(model: Path) -> str:
    return f"""
name: busy
models: {{'*': null}}
output_rails: []
input_rails_mode: sequential
input_rails:
  - kind: hf_classifier
    name: tiny
    model: {model}
    thresholds: {{unsafe: 0.5}}
    max_batch_size: 1
    queue_timeout_s: 0.001
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


def test_more_than_the_classifier_can_start_is_shed_not_refused(
    fake_upstream: Fake, tiny_classifier: Path, tmp_path: Path
) -> None:
    app = guard_app(fake_upstream.url, [write_policy(tmp_path, policy(tiny_classifier))])
    with serve_in_thread(app) as url:
        responses = asyncio.run(burst(url))
        counted = metric(url, "guard_rail_failures_total", policy="busy", code="rails_overloaded")
    shed = [r for r in responses if r.status_code == 503]
    served = [r for r in responses if r.status_code == 200]
    assert len(shed) + len(served) == REQUESTS, {r.status_code for r in responses}
    assert shed and served, "the burst should both overload the rail and be served"
    for response in shed:
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "rails_overloaded"
        assert response.json()["error"]["message"] == (
            "The rail 'tiny' is overloaded and could not judge this request in time; retry later."
        )
        assert response.json()["guard"]["verdict"] == "error"
    for response in served:
        data = response.json()
        assert data["guard"]["verdict"] in ("pass", "block")
        for verdict in data["guard"]["verdicts"]:
            assert verdict["outcome"] != "error" and verdict["score"] is not None
        if data["choices"][0]["finish_reason"] == "content_filter":
            assert data["guard"]["verdict"] == "block"  # a refusal only from a real verdict
    assert counted == len(shed)
