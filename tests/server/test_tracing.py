"""Traces after real requests through the app, against the fake upstream: one trace per
request, a span per stage under the request's span, the W3C ``traceparent`` the upstream
receives, an incoming one continued, a stream's span ending with the stream, and no
prompt or answer text unless the policy opts in. Spans are read with the SDK's in-memory
exporter, from a provider given to ``create_app``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.conftest import Fake, write_policy
from tests.servers import serve_in_thread

CHAT = "/v1/chat/completions"
SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"
MARK = "quokka"
"""In every prompt, and so (``say:``) in every answer: no span may carry it by default."""

RAILED = """
name: railed
models: {fake-model: null, crash: null, die-mid-stream: null}
input_rails_mode: sequential
input_rails:
  - {kind: regex, name: secrets, presets: [secrets], action: block}
output_rails:
  - {kind: regex, name: email, presets: [email], action: flag}
"""

PARALLEL = """
name: parallel
models: {fake-model: null}
input_rails_mode: parallel
input_rails:
  - {kind: regex, name: secrets, presets: [secrets], action: block}
output_rails: []
"""

PASSTHROUGH = """
name: passthrough
models: {fake-model: null}
input_rails: []
output_rails: []
"""

ALIGNED = """
name: aligned
models: {'*': null}
input_rails: []
output_rails:
  - {kind: regex, name: email, presets: [email], action: flag}
best_of_n:
  n: 2
  reward: {kind: vllm_reward, model: reward-model, base_url: '%s'}
constitutional:
  principles:
    - {name: kind, critique: 'Is it kind?', revision: 'Make it kind.'}
  trigger: always
"""


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@contextmanager
def traced_guard(
    upstream: Fake, tmp_path: Path, policy: str, exporter: InMemorySpanExporter
) -> Iterator[str]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = Settings(upstream_url=upstream.url, upstream_timeout_s=5.0)
    policies = PolicySet.from_files([write_policy(tmp_path, policy)])
    with serve_in_thread(create_app(settings, policies, tracer_provider=provider)) as url:
        yield url
    provider.shutdown()


def chat(url: str, text: str, model: str = "fake-model", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}{CHAT}", json=body, timeout=30, **extra)


def streamed(url: str, text: str, model: str = "fake-model", **extra: Any) -> tuple[str, list[str]]:
    """The request id and the stream's events."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}
    with httpx.stream("POST", f"{url}{CHAT}", json=body, timeout=30, **extra) as response:
        return response.headers["x-request-id"], [line for line in response.iter_lines() if line]


def trace_of(spans: Sequence[ReadableSpan], request_id: str) -> list[ReadableSpan]:
    """The spans of the request with this id: its server span first."""
    [root] = [s for s in spans if (s.attributes or {}).get("guard.request_id") == request_id]
    assert root.context is not None
    trace_id = root.context.trace_id
    rest = [s for s in spans if s is not root and s.context and s.context.trace_id == trace_id]
    return [root, *rest]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    context = span.context
    trace_id, flags = format_trace_id(context.trace_id), f"{context.trace_flags:02x}"
    return f"00-{trace_id}-{format_span_id(context.span_id)}-{flags}"


def everything_said(spans: Sequence[ReadableSpan]) -> str:
    """Every name, attribute, event, link and status a span carries, as one text."""
    said = []
    for span in spans:
        said += [span.name, str(span.status.description), str(dict(span.attributes or {}))]
        said += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
        said += [str(dict(link.attributes or {})) for link in span.links]
    return "\n".join(said)


def test_a_request_is_one_trace_a_span_per_stage_under_the_request(
    fake_upstream: Fake, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    with traced_guard(fake_upstream, tmp_path, RAILED, exporter) as url:
        mark = fake_upstream.app.state.received.count
        response = chat(url, f"say: hello {MARK}")
        [sent] = fake_upstream.app.state.received.since(mark)
    assert response.status_code == 200
    root, *stages = trace_of(exporter.get_finished_spans(), response.headers["x-request-id"])
    assert root.name == "POST /v1/chat/completions"
    assert root.kind == SpanKind.SERVER and root.parent is None
    assert dict(root.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": CHAT,
        "url.path": CHAT,
        "http.response.status_code": 200,
        "guard.request_id": response.headers["x-request-id"],
        "guard.policy": "railed",
        "guard.model": "fake-model",
        "guard.upstream_model": "fake-model",
        "guard.stream": False,
        "guard.verdict": "pass",
    }
    assert [s.name for s in stages] == [
        "guard.input_rails",
        "guard.generation",
        "guard.output_rails",
    ]
    assert {parent_id(s) for s in stages} == {span_id(root)}
    assert all(s.kind == SpanKind.INTERNAL for s in stages)
    input_rails, generation, output_rails = stages
    assert dict(input_rails.attributes or {}) == {
        "guard.texts": 1,
        "guard.rails": ("secrets",),
        "guard.rail_outcomes": ("pass",),
        "guard.outcome": "pass",
    }
    assert (output_rails.attributes or {})["guard.rails"] == ("email",)
    # vLLM continues the trace under the generation span.
    assert sent["headers"]["traceparent"] == traceparent_of(generation)
    assert MARK not in everything_said([root, *stages])


def test_rail_outcomes_and_errors_name_no_text(
    fake_upstream: Fake, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    with traced_guard(fake_upstream, tmp_path, RAILED, exporter) as url:
        blocked = chat(url, f"say: {MARK} {SECRET}")
        flagged = chat(url, f"say: {MARK} write to bob@example.com")
        crashed = chat(url, f"say: {MARK}", model="crash")
        broken_id, broken = streamed(url, f"say: {MARK} one two three", model="die-mid-stream")
    spans = exporter.get_finished_spans()
    assert blocked.json()["guard"]["verdict"] == "block"
    root, input_rails = trace_of(spans, blocked.headers["x-request-id"])
    assert (root.attributes or {})["guard.verdict"] == "block"
    assert (input_rails.attributes or {})["guard.outcome"] == "block"

    flagged_spans = trace_of(spans, flagged.headers["x-request-id"])
    [output_rails] = [s for s in flagged_spans if s.name == "guard.output_rails"]
    assert (output_rails.attributes or {})["guard.rail_outcomes"] == ("flag",)

    assert crashed.status_code == 502
    root, *stages = trace_of(spans, crashed.headers["x-request-id"])
    [generation] = [s for s in stages if s.name == "guard.generation"]
    assert root.status.status_code == StatusCode.ERROR
    assert generation.status.status_code == StatusCode.ERROR
    assert generation.status.description == "UpstreamHTTPError: 500"  # the fake's code
    assert (root.attributes or {})["error.type"] == "UpstreamHTTPError"

    assert broken[-1] == "data: [DONE]" and any("error" in line for line in broken)
    [generation] = [s for s in trace_of(spans, broken_id) if s.name == "guard.generation"]
    assert generation.status.status_code == StatusCode.ERROR
    assert generation.status.description == "UpstreamStreamBroken: upstream_stream_broken"
    assert SECRET not in everything_said(spans)
    assert MARK not in everything_said(spans) and "bob@example.com" not in everything_said(spans)


def test_reward_and_critique_spans_and_the_traceparent_of_their_calls(
    fake_upstream: Fake, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    with traced_guard(fake_upstream, tmp_path, ALIGNED % fake_upstream.url, exporter) as url:
        mark = fake_upstream.app.state.received.count
        response = chat(url, f"say: {MARK} a | {MARK} b")
        sent = fake_upstream.app.state.received.since(mark)
    assert response.status_code == 200
    root, *stages = trace_of(exporter.get_finished_spans(), response.headers["x-request-id"])
    assert {parent_id(s) for s in stages} == {span_id(root)}
    names = [s.name for s in stages]
    assert names[:2] == ["guard.generation", "guard.reward"]
    assert {"guard.critique", "guard.output_rails"} <= set(names)
    generation, best_of_n_reward = stages[:2]
    [critique] = [s for s in stages if s.name == "guard.critique"]
    parents = [(r["path"], r["headers"]["traceparent"]) for r in sent]
    assert parents[:3] == [
        (CHAT, traceparent_of(generation)),
        ("/pooling", traceparent_of(best_of_n_reward)),
        ("/pooling", traceparent_of(best_of_n_reward)),
    ]
    # The critic's calls (critique, then revision) continue under the critique span.
    assert parents[3:] and all(p == (CHAT, traceparent_of(critique)) for p in parents[3:])
    assert MARK not in everything_said([root, *stages])


AUDITED = RAILED + "audit: {include_text: true}\n"


def test_text_only_where_the_policy_opts_in(
    fake_upstream: Fake, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    from guard.ops.tracing import TEXT_LIMIT

    long_prompt = "say: " + "x" * (TEXT_LIMIT + 100)
    with traced_guard(fake_upstream, tmp_path, AUDITED, exporter) as url:
        plain = chat(url, f"say: hello {MARK}")
        stream_id, _ = streamed(url, f"say: streamed {MARK}")
        long = chat(url, long_prompt)
    spans = exporter.get_finished_spans()
    root = trace_of(spans, plain.headers["x-request-id"])[0].attributes or {}
    assert root["guard.prompt"] == (f"say: hello {MARK}",)
    assert [MARK in answer for answer in root["guard.answers"]] == [True]  # type: ignore[union-attr]
    root = trace_of(spans, stream_id)[0].attributes or {}
    assert root["guard.prompt"] == (f"say: streamed {MARK}",)
    assert "".join(root["guard.answers"]).strip() == f"streamed {MARK}"  # type: ignore[arg-type]
    root = trace_of(spans, long.headers["x-request-id"])[0].attributes or {}
    assert root["guard.prompt"] == (long_prompt[:TEXT_LIMIT],)
    # Only the request span says it: the stage spans stay as they are without the opt-in.
    stages = [s for s in spans if s.name.startswith("guard.")]
    assert stages and MARK not in everything_said(stages)


def test_an_incoming_traceparent_is_continued(
    fake_upstream: Fake, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    client_trace, client_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    incoming = {
        "traceparent": f"00-{client_trace}-{client_span}-01",
        "tracestate": "vendor=x",
        "baggage": "tenant=a",
    }
    with traced_guard(fake_upstream, tmp_path, RAILED, exporter) as url:
        mark = fake_upstream.app.state.received.count
        response = chat(url, "say: hello", headers=incoming)
        [sent] = fake_upstream.app.state.received.since(mark)
    root, *stages = trace_of(exporter.get_finished_spans(), response.headers["x-request-id"])
    assert root.context is not None and root.parent is not None
    assert format_trace_id(root.context.trace_id) == client_trace
    assert format_span_id(root.parent.span_id) == client_span and root.parent.is_remote
    assert sent["headers"]["traceparent"].split("-")[1] == client_trace
    assert sent["headers"]["tracestate"] == "vendor=x"  # part of the trace context
    assert "baggage" not in sent["headers"]  # guard passes on no header of the client's
    assert len(stages) == 3


def test_a_client_that_does_not_sample_its_trace_is_not_recorded(
    fake_upstream: Fake, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    client_trace = "0af7651916cd43dd8448eb211c80319c"
    incoming = {"traceparent": f"00-{client_trace}-b7ad6b7169203331-00"}
    with traced_guard(fake_upstream, tmp_path, RAILED, exporter) as url:
        mark = fake_upstream.app.state.received.count
        assert chat(url, f"say: {MARK}", headers=incoming).status_code == 200
        [sent] = fake_upstream.app.state.received.since(mark)
    assert exporter.get_finished_spans() == ()
    _, trace_id, _, flags = sent["headers"]["traceparent"].split("-")
    assert (trace_id, flags) == (client_trace, "00")  # vLLM is told not to record it either


def test_a_streamed_request_span_ends_with_the_stream(
    paced_upstream: Fake, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    windowed = RAILED + "streaming: {window_tokens: 2, chunk_tokens: 1}\n"
    with traced_guard(paced_upstream, tmp_path, windowed, exporter) as url:
        mark = paced_upstream.app.state.received.count
        request_id, events = streamed(url, "say: one two three four five six seven eight")
        [sent] = paced_upstream.app.state.received.since(mark)
    assert events[-1] == "data: [DONE]"
    root, *stages = trace_of(exporter.get_finished_spans(), request_id)
    assert (root.attributes or {})["guard.stream"] is True
    assert {parent_id(s) for s in stages} == {span_id(root)}
    [generation] = [s for s in stages if s.name == "guard.generation"]
    output_checks = [s for s in stages if s.name == "guard.output_rails"]
    assert sent["headers"]["traceparent"] == traceparent_of(generation)
    # Output rails judge windows as the answer arrives, after the response head was
    # sent: the generation span, and the request's, are still open then. The request
    # span outlasts every stage.
    assert len(output_checks) > 1
    assert generation.end_time is not None and root.end_time is not None
    assert min(s.start_time or 0 for s in output_checks) <= generation.end_time
    assert all(s.end_time is not None and s.end_time <= root.end_time for s in stages)
