"""``Trace``'s spans, with the SDK's in-memory exporter: a stage's span is current while
it runs; a stream's generation span stays open until the stream has been passed on, and
``end`` closes one that never was; a failure says its class and code, never its message;
untraced, there are no spans and the stages are still timed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, get_current_span

from guard.errors import UpstreamStreamBroken, UpstreamTimeout
from guard.pipeline.trace import Trace

SECRET_WORDS = "the user's own words"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def traced(exporter: InMemorySpanExporter) -> Trace:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Trace(tracer=provider.get_tracer("test"))


async def chunks(*parts: bytes, error: Exception | None = None) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if error is not None:
        raise error


def test_a_stage_span_is_current_while_the_stage_runs(exporter: InMemorySpanExporter) -> None:
    trace = traced(exporter)
    with trace.timed("input_rails") as span:
        assert get_current_span() is span and span.is_recording()
    [finished] = exporter.get_finished_spans()
    assert finished.name == "guard.input_rails"
    assert trace.stage_s.keys() == {"input_rails"}


def test_a_stream_generation_span_ends_when_the_stream_does(
    exporter: InMemorySpanExporter,
) -> None:
    trace = traced(exporter)

    async def open_stream(body: str) -> str:
        assert get_current_span().is_recording()  # what the upstream is sent carries it
        return body

    async def run() -> list[bytes]:
        assert await trace.stream_call(open_stream)("head") == "head"
        assert exporter.get_finished_spans() == ()  # the head arrived; the stream goes on
        return [chunk async for chunk in trace.upstream_chunks(chunks(b"a", b"b"))]

    assert asyncio.run(run()) == [b"a", b"b"]
    [generation] = exporter.get_finished_spans()
    assert generation.name == "guard.generation"
    assert generation.status.status_code == StatusCode.UNSET


def test_end_closes_a_stream_nobody_read(exporter: InMemorySpanExporter) -> None:
    trace = traced(exporter)

    async def open_stream(body: str) -> str:
        return body

    asyncio.run(trace.stream_call(open_stream)("head"))
    assert exporter.get_finished_spans() == ()
    trace.end()
    assert [s.name for s in exporter.get_finished_spans()] == ["guard.generation"]


def test_failures_say_their_class_and_code_not_their_message(
    exporter: InMemorySpanExporter,
) -> None:
    trace = traced(exporter)

    async def times_out(body: str) -> str:
        raise UpstreamTimeout(f"the upstream did not answer: {SECRET_WORDS}")

    async def opens(body: str) -> str:
        return body

    async def run() -> None:
        with pytest.raises(UpstreamTimeout):
            await trace.timed_call("generation", times_out)("body")
        await trace.stream_call(opens)("body")
        with pytest.raises(UpstreamStreamBroken):
            broken = UpstreamStreamBroken(SECRET_WORDS)
            async for _ in trace.upstream_chunks(chunks(b"a", error=broken)):
                pass
        with pytest.raises(ValueError), trace.timed("reward"):
            raise ValueError(SECRET_WORDS)

    asyncio.run(run())
    spans = exporter.get_finished_spans()
    assert [(s.name, s.status.status_code, s.status.description) for s in spans] == [
        ("guard.generation", StatusCode.ERROR, "UpstreamTimeout: upstream_timeout"),
        ("guard.generation", StatusCode.ERROR, "UpstreamStreamBroken: upstream_stream_broken"),
        ("guard.reward", StatusCode.ERROR, "ValueError"),
    ]
    assert all(s.events == () for s in spans)


def test_a_cancelled_stage_says_so(exporter: InMemorySpanExporter) -> None:
    trace = traced(exporter)

    async def run() -> None:
        async def stage() -> None:
            with trace.timed("generation"):
                await asyncio.sleep(3600)

        task = asyncio.ensure_future(stage())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    [span] = exporter.get_finished_spans()
    assert (span.attributes or {})["guard.cancelled"] is True


def test_untraced_stages_are_timed_without_spans() -> None:
    trace = Trace()
    with trace.timed("output_rails") as span:
        assert not span.is_recording()
        assert not get_current_span().get_span_context().is_valid
    assert trace.stage_s.keys() == {"output_rails"}
