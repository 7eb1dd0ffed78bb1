"""Tracing from the standard ``OTEL_*`` environment: spans reach an OTLP/HTTP collector
(a real one on loopback, decoding what it gets) and the app's shutdown sends the last
batch; without an endpoint nothing is traced, no provider is installed and the SDK is
not even imported; a setting guard cannot honour stops start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace

from guard.errors import PolicyError
from guard.ops.tracing import tracing_configured
from tests.conftest import ROOT, Collector, Fake, guard_app, otlp_collector, write_policy
from tests.servers import serve_in_thread

POLICY = """
name: railed
models: {fake-model: null}
input_rails:
  - {kind: regex, name: secrets, presets: [secrets], action: block}
output_rails: []
"""
CHAT = "/v1/chat/completions"


@pytest.fixture(autouse=True)
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment that configures no tracing."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as collector:
        yield collector


def chat(url: str, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}{CHAT}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("service_name", [None, "guard-eu-1"])
def test_the_otel_environment_exports_over_otlp_http(
    fake_upstream: Fake,
    tmp_path: Path,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
    service_name: str | None,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    if service_name is not None:
        monkeypatch.setenv("OTEL_SERVICE_NAME", service_name)
    app = guard_app(fake_upstream.url, [write_policy(tmp_path, POLICY)])
    with serve_in_thread(app) as url:
        mark = fake_upstream.app.state.received.count
        response = chat(url, "say: hello")
        [sent] = fake_upstream.app.state.received.since(mark)
    # Spans are sent in batches; the app's shutdown sent the last one.
    spans = collector.spans()
    names = sorted(span.name for _, span in spans)
    assert names == ["POST /v1/chat/completions", "guard.generation", "guard.input_rails"]
    assert {resource["service.name"] for resource, _ in spans} == {service_name or "guard"}
    [root] = [span for _, span in spans if span.name.startswith("POST")]
    request_id = {a.key: a.value.string_value for a in root.attributes}["guard.request_id"]
    assert request_id == response.headers["x-request-id"]
    assert sent["headers"]["traceparent"].split("-")[1] == root.trace_id.hex()


def test_without_an_endpoint_nothing_is_traced(
    fake_upstream: Fake, tmp_path: Path, collector: Collector
) -> None:
    app = guard_app(fake_upstream.url, [write_policy(tmp_path, POLICY)])
    with serve_in_thread(app) as url:
        assert app.state.guard.tracer is None
        mark = fake_upstream.app.state.received.count
        client_context = {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "baggage": "tenant=a",
        }
        assert chat(url, "say: hello", client_context).status_code == 200
        [sent] = fake_upstream.app.state.received.since(mark)
    assert "traceparent" not in sent["headers"] and "baggage" not in sent["headers"]
    assert collector.exports == []
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_without_an_endpoint_the_sdk_is_not_even_imported(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, POLICY)
    probe = (
        "import sys, pathlib; from guard import create_app, Settings, PolicySet;"
        f"create_app(Settings(), PolicySet.from_files([pathlib.Path({str(policy)!r})]));"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "TRACES_PROTOCOL=http/json"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER=console"),
    ],
)
def test_a_setting_guard_cannot_honour_stops_start_up(
    fake_upstream: Fake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    named: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(PolicyError, match=named):
        guard_app(fake_upstream.url, [write_policy(tmp_path, POLICY)])


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"OTEL_SERVICE_NAME": "guard", "OTEL_TRACES_SAMPLER": "always_on"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_tracing_is_off_without_an_endpoint_or_when_turned_off(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert not tracing_configured()


@pytest.mark.parametrize(
    "name", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_either_endpoint_turns_tracing_on(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "http://127.0.0.1:4318")
    assert tracing_configured()
