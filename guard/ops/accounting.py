"""Accounting for each finished request: metrics, token charges, shadow, audit line.

``RequestRecord`` is filled in as a request goes (by ``guard.server.middleware`` and the routes);
``Operations.finish`` runs once it is over. Nothing here can fail a request: it is
done, and its client has its answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from guard.errors import (
    Forbidden,
    GuardError,
    LimitStoreUnavailable,
    Overloaded,
    PolicyError,
    RailFailed,
    RateLimited,
    Unauthorized,
    UpstreamError,
    UpstreamEventTooLarge,
    UpstreamHTTPError,
    UpstreamResponseTooLarge,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnreachable,
    without_credentials,
)
from guard.logs import log_field
from guard.ops.audit import AuditLog
from guard.ops.keys import ApiKey
from guard.ops.limits import ConcurrencyLimit, KeyConcurrency, Lease, RateLimiter
from guard.ops.metrics import NO_KEY, Metrics
from guard.ops.runtime import Runtime, Runtimes
from guard.ops.shadow import run_shadow, shadow_summary
from guard.pipeline.context import RequestContext
from guard.pipeline.inputs import input_subjects
from guard.pipeline.rails import Judgement, Stage
from guard.pipeline.runner import Pipeline
from guard.settings import Settings

if TYPE_CHECKING:
    from guard.ops.shared_limits import SharedLimits

log = logging.getLogger("guard")
access_log = logging.getLogger("guard.access")


@dataclass(eq=False)
class RequestRecord:
    path: str
    request_id: str
    runtime: Runtime
    endpoint: str = "-"
    """The route that served the request (``/v1/models/{model:path}``): the metrics'
    bounded ``endpoint`` label; ``-`` for a path guard has no route for."""
    started: float = field(default_factory=time.perf_counter)
    time: float = field(default_factory=time.time)
    key: ApiKey | None = None
    status: int = 0
    error: GuardError | None = None
    pipeline: Pipeline | None = None
    model: str = ""
    model_entry: str = "-"
    """The policy's ``models`` entry that matched: the metrics' bounded ``model`` label."""
    ctx: RequestContext | None = None
    body: dict[str, Any] | None = None
    stream: bool = False
    usage: dict[str, Any] | None = None
    shadow: Pipeline | None = None
    held: Lease | ApiKey | None = None
    """The request's place among its key's concurrent requests (``Operations.admit``),
    given back by ``Operations.finish``."""

    @property
    def key_name(self) -> str:
        return self.key.name if self.key else NO_KEY

    @property
    def policy_name(self) -> str:
        return self.pipeline.name if self.pipeline else "-"


class Operations:
    """What every request shares beyond its policy: limits, metrics, audit, runtimes."""

    def __init__(self, settings: Settings, runtimes: Runtimes, metrics: Metrics):
        self.settings = settings
        self.runtimes = runtimes
        self.metrics = metrics
        self.limiter = RateLimiter()
        self.key_concurrency = KeyConcurrency()
        self.concurrency = ConcurrencyLimit(settings.max_concurrent_requests)
        self.shared: SharedLimits | None = None
        """Each key's limits in Redis, for every replica (``GUARD_REDIS_URL``); None: in
        this process's memory. The replica's own concurrency limit stays here."""
        if settings.redis_url is not None:
            from guard.ops.shared_limits import SharedLimits  # the Redis client, only if used

            try:
                self.shared = SharedLimits(settings, metrics.limit_store_errors)
            except ValueError as exc:
                raise PolicyError([f"GUARD_REDIS_URL: {exc}"]) from None
        self.audit: AuditLog | None = None
        if settings.audit_log is not None:
            try:
                self.audit = AuditLog(
                    settings.audit_log,
                    settings.audit_max_bytes,
                    settings.audit_backup_count,
                    metrics.audit_failures,
                )
            except OSError as exc:
                raise PolicyError(
                    [f"GUARD_AUDIT_LOG: cannot open {settings.audit_log}: {exc.strerror or exc}"]
                ) from exc
        self._tasks: set[asyncio.Task[None]] = set()

    async def admit(self, key: ApiKey) -> Lease | ApiKey | None:
        """Take one request from ``key``'s limits; its place among the key's concurrent
        requests, if the key has such a limit (``RequestRecord.held``: ``finish`` gives it
        back). Raises ``RateLimited``, or ``LimitStoreUnavailable``."""
        if self.shared is not None:
            return await self.shared.admit(key)
        counted = self.key_concurrency.enter(key)
        try:
            self.limiter.admit(key)
        except BaseException:
            if counted:
                self.key_concurrency.leave(key)
            raise
        return key if counted else None

    def start(self) -> None:
        if self.shared is not None:
            self.shared.start()
            log.info(
                "limits shared through Redis at %s; when it fails: %s",
                self.shared.where(),
                self.settings.redis_on_error,
            )

    def finish(self, record: RequestRecord) -> None:
        """Account for a finished request; shadow work goes on in the background."""
        duration = time.perf_counter() - record.started
        unpaid = None
        try:
            unpaid = self._count(record, duration)
            access_log.info(
                "%s %s -> %d (%s, policy %s, %.1f ms)",
                log_field(record.path),
                log_field(record.model) if record.model else "-",
                record.status,
                record.key_name,
                record.policy_name,
                duration * 1000,
            )
        except Exception:
            log.exception("request %s: accounting failed", record.request_id)
        if isinstance(record.held, ApiKey):
            self.key_concurrency.leave(record.held)
        elif self.shared is not None and record.key is not None and (record.held or unpaid):
            # One round trip gives back the request's place and charges its tokens.
            lease = record.held if isinstance(record.held, Lease) else None
            self._background(self.shared.settle(record.key, lease, unpaid or 0))
        if record.shadow is not None and record.ctx is not None and record.body is not None:
            self._background(self._shadow(record, duration))
            return
        self._write_audit(record, duration, None)
        self.runtimes.release(record.runtime)

    async def _shadow(self, record: RequestRecord, duration: float) -> None:
        assert record.shadow is not None and record.ctx is not None and record.body is not None
        summary = None
        try:
            judgements, latency_ms = await run_shadow(
                record.shadow, record.path, record.body, record.ctx.trace.answers
            )
            summary = shadow_summary(record.shadow, judgements, latency_ms)
            self._count_verdicts(record.shadow.name, judgements, "shadow")
            self.metrics.shadow_requests.labels(
                record.policy_name, record.shadow.name, record.ctx.verdict, summary["verdict"]
            ).inc()
        except Exception as exc:
            log.exception("request %s: shadow policy failed", record.request_id)
            summary = {"policy": record.shadow.name, "error": f"{type(exc).__name__}: {exc}"}
        except asyncio.CancelledError:
            summary = {"policy": record.shadow.name, "error": "cancelled: guard shut down"}
            raise
        finally:
            self._write_audit(record, duration, summary)
            self.runtimes.release(record.runtime)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after the request; ``aclose`` waits for it."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _count(self, record: RequestRecord, duration: float) -> int | None:
        """Count the request in the metrics and charge its tokens in memory; with shared
        limits, the tokens still to charge."""
        m = self.metrics
        m.requests.labels(
            record.policy_name,
            record.model_entry,
            str(record.status),
            record.key_name,
            record.endpoint,
        ).inc()
        if (reason := _rejection(record.error)) is not None:
            m.rejections.labels(reason, record.key_name).inc()
        ctx = record.ctx
        upstream_error = record.error or (ctx.trace.upstream_error if ctx else None)
        if (reason := _upstream_reason(upstream_error)) is not None:
            m.upstream_errors.labels(reason).inc()
        if record.pipeline is None:
            return None
        policy = record.pipeline.name
        if isinstance(record.error, RailFailed):
            m.rail_failures.labels(policy, str(record.error.code)).inc()
        m.request_seconds.labels(policy, str(record.stream).lower(), record.endpoint).observe(
            duration
        )
        if ctx is not None:
            for stage, seconds in ctx.trace.stage_s.items():
                m.stage_seconds.labels(policy, stage).observe(seconds)
            self._count_verdicts(policy, ctx.judgements, "active")
            if ctx.best_of_n is not None:
                scores = ctx.best_of_n.get("scores") or []
                m.candidates_generated.labels(policy).inc(int(ctx.best_of_n.get("n") or 0))
                m.candidates_scored.labels(policy).inc(sum(s is not None for s in scores))
        usage = record.usage or {}
        extra = ctx.extra_usage() if ctx is not None else {}
        for kind, responses_kind in (("prompt", "input"), ("completion", "output")):
            tokens = usage.get(f"{kind}_tokens", usage.get(f"{responses_kind}_tokens"))
            if isinstance(tokens, int) and tokens > 0:
                m.tokens.labels(policy, record.key_name, kind).inc(tokens)
            if (spent := extra.get(f"{kind}_tokens", 0)) > 0:
                m.tokens.labels(policy, record.key_name, f"{kind}_critique").inc(spent)
        total = usage.get("total_tokens")
        if record.key is not None and isinstance(total, int):
            # A key pays for every token its request cost, the critiques' included.
            spent = total + sum(extra.values())
            if self.shared is not None:
                return spent
            self.limiter.charge_tokens(record.key, spent)
        return None

    def _count_verdicts(
        self, policy: str, judgements: list[tuple[Stage, Judgement]], mode: str
    ) -> None:
        for stage, judgement in judgements:
            for report in judgement.reports:
                self.metrics.verdicts.labels(policy, report.rail, stage, report.outcome, mode).inc()

    def _write_audit(
        self, record: RequestRecord, duration: float, shadow: dict[str, Any] | None
    ) -> None:
        if self.audit is None:
            return
        try:
            self.audit.write(audit_entry(record, duration, shadow))
        except Exception:
            self.metrics.audit_failures.inc()
            log.exception("request %s: the audit line could not be made", record.request_id)

    async def aclose(self, timeout_s: float) -> None:
        """Let shadow work finish (up to ``timeout_s``), cancel what is left, then close
        the audit log. Nothing may outlive this: the upstream client closes next."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        late = set(self._tasks)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if self.audit is not None:
            self.audit.close()
        if self.shared is not None:
            await self.shared.aclose()


def audit_entry(
    record: RequestRecord, duration: float, shadow: dict[str, Any] | None
) -> dict[str, Any]:
    """One audit line; the format is documented in docs/operations.md."""
    ctx, pipeline = record.ctx, record.pipeline
    latency = {"total": round(duration * 1000, 2)}
    if ctx is not None:
        latency.update({s: round(v * 1000, 2) for s, v in ctx.trace.stage_s.items()})
    entry: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.time, UTC).isoformat(timespec="milliseconds"),
        "request_id": record.request_id,
        "path": record.path,
        "key": record.key.name if record.key else None,
        "policy": pipeline.name if pipeline else None,
        "policy_sha256": pipeline.loaded.digest if pipeline else None,
        "model": record.model or None,
        "upstream_model": ctx.upstream_model if ctx else None,
        "stream": record.stream,
        "status": record.status,
        "verdict": ctx.verdict if ctx else None,
        "verdicts": [r.to_dict() for _, j in ctx.judgements for r in j.reports] if ctx else [],
        "best_of_n": ctx.best_of_n if ctx else None,
        "critique_rounds": None,
        "usage": record.usage,
        "latency_ms": latency,
    }
    if ctx is not None and ctx.stream_checks:
        entry["stream_checks"] = ctx.stream_checks
    error = record.error or (ctx.trace.upstream_error if ctx else None)
    if error is not None:
        entry["error"] = {"type": error.error_type, "code": error.code}
        if error.status_code >= 500:
            entry["error"]["message"] = without_credentials(error.message)
    if shadow is not None:
        entry["shadow"] = shadow
    texts = audit_texts(record)
    if texts is not None:
        entry["prompt"], entry["answers"] = texts
    return entry


def audit_texts(record: RequestRecord) -> tuple[list[str] | None, list[str]] | None:
    """The prompt's texts (None when the request cannot be read) and the answers as
    generated, where the policy opts in (``audit.include_text``); None where it does not."""
    pipeline, ctx = record.pipeline, record.ctx
    if not (pipeline and ctx and record.body and pipeline.loaded.policy.audit.include_text):
        return None
    try:
        prompt: list[str] | None = [s.text for s in input_subjects(record.path, record.body)]
    except GuardError:
        prompt = None
    return prompt, [ctx.trace.answers[i] for i in sorted(ctx.trace.answers)]


def _rejection(error: GuardError | None) -> str | None:
    if isinstance(error, Unauthorized):
        return "unauthorized"
    if isinstance(error, Forbidden):
        return "forbidden"
    if isinstance(error, Overloaded):
        return "overloaded"
    if isinstance(error, RateLimited):
        return f"rate_limit_{error.error_type}"
    if isinstance(error, LimitStoreUnavailable):
        return "limit_store_unavailable"
    return None


def _upstream_reason(error: GuardError | None) -> str | None:
    if not isinstance(error, UpstreamError):
        return None
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamUnreachable):
        return "unreachable"
    if isinstance(error, UpstreamEventTooLarge):
        return "event_too_large"
    if isinstance(error, UpstreamResponseTooLarge):
        return "response_too_large"
    if isinstance(error, UpstreamStreamBroken):
        return "stream_broken"
    if isinstance(error, UpstreamHTTPError):
        return "http_4xx" if error.status_code < 500 else "http_5xx"
    return "invalid_response"
