"""Prometheus metrics, in a registry of each app's own (so apps in one process don't mix).

Every metric is listed, with its labels and meaning, in docs/operations.md. Label
values stay bounded: ``model`` is the policy's ``models`` entry that matched (a
name from the policy file, or ``*``), never a free-form name a client sent.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

STAGES = ("input_rails", "generation", "reward", "critique", "output_rails")
"""Pipeline stages timed per request; reward and critique only where a policy runs them."""

NO_KEY = "-"
"""The ``key`` label when guard is open (no keys) or the caller was not authenticated."""

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "guard_requests",
            "Requests, by serving policy, model entry, HTTP status, API key and endpoint.",
            ["policy", "model", "status", "key", "endpoint"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "guard_request_duration_seconds",
            "Whole request time, until the last byte of the answer (streams included).",
            ["policy", "stream", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "guard_stage_duration_seconds",
            "Time spent in each pipeline stage of a request.",
            ["policy", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.verdicts = Counter(
            "guard_rail_verdicts",
            "Rail verdicts by rail and outcome; mode=shadow for a shadow policy's verdicts.",
            ["policy", "rail", "stage", "outcome", "mode"],
            registry=r,
        )
        self.shadow_requests = Counter(
            "guard_shadow_requests",
            "Requests a shadow policy judged, by the active and the shadow overall verdict.",
            ["policy", "shadow", "verdict", "shadow_verdict"],
            registry=r,
        )
        self.candidates_generated = Counter(
            "guard_candidates_generated",
            "Best-of-n candidates generated.",
            ["policy"],
            registry=r,
        )
        self.candidates_scored = Counter(
            "guard_candidates_scored",
            "Best-of-n candidates scored by a reward model.",
            ["policy"],
            registry=r,
        )
        self.tokens = Counter(
            "guard_tokens",
            "Tokens the upstream reported in usage, by policy, key and kind.",
            ["policy", "key", "kind"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "guard_upstream_errors",
            "Failures of the upstream while generating, by reason (timeout included).",
            ["reason"],
            registry=r,
        )
        self.rejections = Counter(
            "guard_rejections",
            "Requests refused before reaching a policy, by reason.",
            ["reason", "key"],
            registry=r,
        )
        self.rail_failures = Counter(
            "guard_rail_failures",
            "Requests stopped because a fail-closed rail could not judge them, by policy and "
            "code: rails_overloaded (load, answered 503 with Retry-After) or rail_error.",
            ["policy", "code"],
            registry=r,
        )
        self.in_flight = Gauge(
            "guard_requests_in_flight", "Requests to /v1 routes in progress.", registry=r
        )
        self.reloads = Counter(
            "guard_policy_reloads",
            "Attempts to reload policies and keys, by result (success or failure).",
            ["result"],
            registry=r,
        )
        self.last_reload = Gauge(
            "guard_policy_last_reload_timestamp_seconds",
            "Unix time of the last successful load of policies and keys.",
            registry=r,
        )
        self.policy_info = Gauge(
            "guard_policy_info",
            "1 for each policy being served, with the sha256 of its file.",
            ["policy", "sha256"],
            registry=r,
        )
        self.limit_store_errors = Counter(
            "guard_limit_store_errors",
            "Calls to the shared limits' Redis that failed or timed out, by operation: admit "
            "(the request was then allowed or blocked, as GUARD_REDIS_ON_ERROR says), settle "
            "(a request's tokens and place after it ended) or renew (leases).",
            ["operation"],
            registry=r,
        )
        self.audit_failures = Counter(
            "guard_audit_write_failures",
            "Audit lines that could not be written.",
            registry=r,
        )
        for reason in (
            "timeout",
            "unreachable",
            "http_4xx",
            "http_5xx",
            "stream_broken",
            "event_too_large",
            "response_too_large",
        ):
            self.upstream_errors.labels(reason)
        for result in ("success", "failure"):
            self.reloads.labels(result)
        for operation in ("admit", "settle", "renew"):
            self.limit_store_errors.labels(operation)

    def policies_loaded(self, policies: list[Any]) -> None:
        """Show the policies now served (``LoadedPolicy`` items) and zero their counters."""
        self.policy_info.clear()
        for item in policies:
            name = item.policy.name
            self.policy_info.labels(name, item.digest).set(1)
            self.candidates_generated.labels(name)
            self.candidates_scored.labels(name)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
