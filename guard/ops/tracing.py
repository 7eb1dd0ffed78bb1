"""OpenTelemetry traces: the tracer provider, built from the standard ``OTEL_*``
environment, and what a request's span says.

Tracing is on only when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and ``OTEL_SDK_DISABLED`` is not true. Then
spans are exported in batches over OTLP/HTTP (protobuf); the SDK reads the rest of the
standard variables itself (sampler, headers, timeouts, batch sizes, resource
attributes). Otherwise no provider is built and the SDK is not even imported: the
serving path's only cost is a ``None`` check.

guard's provider is its own: it is not installed as the process's global provider.
Spans carry names, ids, outcomes and numbers, never the prompt or the answers, unless
the policy opts in with ``audit.include_text`` (as for the audit log): then the request
span gets them too, each text cut to ``TEXT_LIMIT`` characters.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from guard.errors import PolicyError
from guard.ops.accounting import RequestRecord, audit_texts

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

SERVICE_NAME = "guard"
"""``service.name`` unless ``OTEL_SERVICE_NAME`` (or ``OTEL_RESOURCE_ATTRIBUTES``) says."""
TEXT_LIMIT = 4096
"""Characters of each prompt or answer text a span keeps, when the policy opts in."""

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def tracing_configured() -> bool:
    """Whether the environment asks for traces. Raises ``PolicyError`` for a setting
    guard cannot honour (another protocol or exporter), rather than export nothing."""
    environ = os.environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if not any(environ.get(name, "").strip() for name in _ENDPOINTS):
        return False
    exporters = [e.strip() for e in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    if exporters == ["none"]:
        return False
    problems = []
    if "otlp" not in exporters:
        problems.append(
            f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']}: guard exports traces "
            "over OTLP only; set it to 'otlp' (or 'none' for no traces)"
        )
    named = next((name for name in _PROTOCOLS if environ.get(name, "").strip()), None)
    if named is not None and environ[named].strip() != "http/protobuf":
        problems.append(
            f"{named}={environ[named]}: guard exports traces over OTLP/HTTP "
            "(http/protobuf); point the endpoint at the collector's HTTP port (4318)"
        )
    if problems:
        raise PolicyError(problems)
    return True


def tracer_provider_from_env() -> TracerProvider | None:
    """An SDK tracer provider exporting over OTLP/HTTP, or None when tracing is off.
    Whoever gets one shuts it down (which sends the spans still batched)."""
    if not tracing_configured():
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def request_attributes(record: RequestRecord) -> dict[str, Any]:
    """What a finished request's span says beyond HTTP: policy, models, stream, verdict,
    the key's name; the prompt and answers only where the policy opts in."""
    attributes: dict[str, Any] = {"guard.stream": record.stream}
    if record.pipeline is not None:
        attributes["guard.policy"] = record.pipeline.name
    if record.model:
        attributes["guard.model"] = record.model
    if record.key is not None:
        attributes["guard.key"] = record.key.name
    if record.ctx is not None:
        attributes["guard.upstream_model"] = record.ctx.upstream_model
        attributes["guard.verdict"] = record.ctx.verdict
    error = record.error or (record.ctx.trace.upstream_error if record.ctx else None)
    if error is not None:
        attributes["error.type"] = type(error).__name__
    texts = audit_texts(record)
    if texts is not None:
        prompt, answers = texts
        if prompt is not None:
            attributes["guard.prompt"] = [text[:TEXT_LIMIT] for text in prompt]
        attributes["guard.answers"] = [text[:TEXT_LIMIT] for text in answers]
    return attributes
