"""A real vLLM continues guard's trace: its ``llm_request`` span, exported to a collector
on loopback, is a child of guard's ``guard.generation`` span, plain and streamed."""

from __future__ import annotations

import time

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guard.demo.vllm_server import VLLMServer
from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.conftest import Collector
from tests.e2e.conftest import ROOT
from tests.servers import serve_in_thread


def test_vllm_continues_the_trace_under_the_generation_span(
    vllm: VLLMServer, vllm_collector: Collector
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    policies = PolicySet.from_files([ROOT / "policies" / "passthrough.yaml"])
    app = create_app(Settings(upstream_url=vllm.url), policies, tracer_provider=provider)
    with serve_in_thread(app) as url:
        for stream in (False, True):
            body = {
                "model": "smollm2",
                "max_tokens": 8,
                "stream": stream,
                "messages": [{"role": "user", "content": "Say hello."}],
            }
            assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).is_success
    generations = {
        span.context.trace_id: span.context.span_id
        for span in exporter.get_finished_spans()
        if span.name == "guard.generation" and span.context is not None
    }
    assert len(generations) == 2
    # vLLM sends its spans in batches (every 5 s by default): wait for both, bounded.
    deadline = time.monotonic() + 60
    while True:
        continued = {
            int.from_bytes(span.trace_id, "big"): int.from_bytes(span.parent_span_id, "big")
            for resource, span in vllm_collector.spans()
            if resource.get("service.name") == "vllm" and span.name == "llm_request"
        }
        if generations.keys() <= continued.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {trace: continued.get(trace) for trace in generations} == generations
