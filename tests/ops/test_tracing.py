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
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from guard.errors import PolicyError
from guard.ops.tracing import tracing_configured
from tests.conftest import ROOT, Fake, guard_app, write_policy
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
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP trace collector on loopback: its URL, and the exports it received."""
    received: list[ExportTraceServiceRequest] = []

    async def export(request: Request) -> Response:
        received.append(ExportTraceServiceRequest.FromString(await request.body()))
        answer = ExportTraceServiceResponse().SerializeToString()
        return Response(answer, media_type="application/x-protobuf")

    with serve_in_thread(Starlette(routes=[Route("/v1/traces", export, methods=["POST"])])) as url:
        yield url, received


def chat(url: str, text: str) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}{CHAT}", json=body, timeout=30)


@pytest.mark.parametrize("service_name", [None, "guard-eu-1"])
def test_the_otel_environment_exports_over_otlp_http(
    fake_upstream: Fake,
    tmp_path: Path,
    collector: tuple[str, list[ExportTraceServiceRequest]],
    monkeypatch: pytest.MonkeyPatch,
    service_name: str | None,
) -> None:
    collector_url, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector_url)
    if service_name is not None:
        monkeypatch.setenv("OTEL_SERVICE_NAME", service_name)
    app = guard_app(fake_upstream.url, [write_policy(tmp_path, POLICY)])
    with serve_in_thread(app) as url:
        mark = fake_upstream.app.state.received.count
        response = chat(url, "say: hello")
        [sent] = fake_upstream.app.state.received.since(mark)
    # Spans are sent in batches; the app's shutdown sent the last one.
    spans = [
        (resource_spans.resource, span)
        for export in received
        for resource_spans in export.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    names = sorted(span.name for _, span in spans)
    assert names == ["POST /v1/chat/completions", "guard.generation", "guard.input_rails"]
    resource = spans[0][0]
    attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert attributes["service.name"] == (service_name or "guard")
    [root] = [span for _, span in spans if span.name.startswith("POST")]
    request_id = {a.key: a.value.string_value for a in root.attributes}["guard.request_id"]
    assert request_id == response.headers["x-request-id"]
    assert sent["headers"]["traceparent"].split("-")[1] == root.trace_id.hex()


def test_without_an_endpoint_nothing_is_traced(
    fake_upstream: Fake, tmp_path: Path, collector: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    _, received = collector
    app = guard_app(fake_upstream.url, [write_policy(tmp_path, POLICY)])
    with serve_in_thread(app) as url:
        assert app.state.guard.tracer is None
        mark = fake_upstream.app.state.received.count
        assert chat(url, "say: hello").status_code == 200
        [sent] = fake_upstream.app.state.received.since(mark)
    assert "traceparent" not in sent["headers"]
    assert received == []
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
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "PROTOCOL=http/json"),
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
