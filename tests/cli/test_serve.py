"""Overload (429 at the concurrency limit), and a real `guard serve` process: SIGHUP
reloads, SIGTERM lets a stream in flight finish, logs are JSON with request ids."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.conftest import ROOT, Fake, write_policy
from tests.scrape import metric
from tests.servers import free_port, serve_in_thread

CHAT = "/v1/chat/completions"
POLICY = "name: p\nmodels: {'*': null}\ninput_rails: []\noutput_rails: []\n"


def test_over_the_concurrency_limit_requests_get_429_at_once(
    paced_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, POLICY)
    settings = Settings(
        upstream_url=paced_upstream.url, upstream_timeout_s=10, max_concurrent_requests=2
    )
    app = create_app(settings, PolicySet.from_files([policy]))
    body = {"model": "m", "messages": [{"role": "user", "content": "say: " + "w " * 30}]}

    with serve_in_thread(app) as url, httpx.Client(timeout=20) as client:

        def send(_: int) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            response = client.post(f"{url}{CHAT}", json=body)
            return response, time.monotonic() - started

        with ThreadPoolExecutor(max_workers=8) as pool:  # 8 requests, each 1.5 s upstream
            results = list(pool.map(send, range(8)))
        ok = [r for r, _ in results if r.status_code == 200]
        refused = [(r, t) for r, t in results if r.status_code == 429]
        assert len(ok) + len(refused) == 8
        assert len(ok) >= 2 and refused
        for response, seconds in refused:
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "server_overloaded"
            assert seconds < 1.0  # refused at once, not queued behind the 1.5 s answers
        assert metric(url, "guard_rejections_total", reason="overloaded") == len(refused)
        assert metric(url, "guard_requests_in_flight") == 0
        assert client.post(f"{url}{CHAT}", json=body).status_code == 200


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("guard serve did not become healthy in 60 s")


def test_guard_serve_reloads_on_sighup_and_drains_a_stream_on_sigterm(
    paced_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, POLICY)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        *(sys.executable, "-m", "guard.cli", "serve", "--policy", str(policy)),
        *("--upstream", paced_upstream.url, "--port", str(port)),
        *("--shutdown-timeout", "20", "--log-format", "json"),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        _wait_healthy(url, process)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while metric(url, "guard_policy_reloads_total", result="success") < 1:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)

        body = {
            "model": "m",
            "stream": True,
            "messages": [{"role": "user", "content": "say: " + "word " * 40}],  # ~2 s
        }
        headers = {"x-request-id": "drain-test-1"}
        with httpx.stream("POST", f"{url}{CHAT}", json=body, headers=headers) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line)
            process.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
            # The listening socket closed at once: new clients are turned away.
            refused = False
            try:
                httpx.get(f"{url}/health", timeout=2)
            except httpx.TransportError:
                refused = True
        events = [first, *rest]
        assert events[-1] == "data: [DONE]"
        chunks = [orjson.loads(e.removeprefix("data: ")) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == "word " * 39 + "word"
        assert refused
        # uvicorn re-raises SIGTERM after its graceful shutdown, as a process killed by it.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.stderr is not None
    records = [json.loads(line) for line in process.stderr.read().decode().splitlines() if line]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"] == "guard" and "reloaded (SIGHUP)" in r["message"] for r in records)
    assert any(r["message"] == "Application shutdown complete." for r in records)
    [access] = [r for r in records if r.get("request_id") == "drain-test-1"]
    assert access["logger"] == "guard.access" and "-> 200" in access["message"]
