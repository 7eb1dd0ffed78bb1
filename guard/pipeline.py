"""Runs one policy's stages for one request.

The stages, in order: input rails -> generation -> best-of-n -> constitutional
revision -> output rails. This version runs generation only; ``unsupported``
names every stage a policy asks for that this version cannot run yet, and the
server refuses to start on such a policy rather than silently skip a safety step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from guard.api.sse import DONE, EVENT_END, error_event, split_events
from guard.errors import GuardError, PolicyError, UpstreamStreamBroken
from guard.policy import LoadedPolicy
from guard.upstream import Upstream

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def unsupported(loaded: LoadedPolicy) -> list[str]:
    """What the policy asks for that this version of guard cannot run, in words."""
    policy = loaded.policy
    asked = [
        *(f"input rail kind '{rail.kind}'" for rail in policy.input_rails),
        *(f"output rail kind '{rail.kind}'" for rail in policy.output_rails),
        *(["best_of_n"] if policy.best_of_n else []),
        *(["constitutional"] if policy.constitutional else []),
    ]
    return [
        f"{loaded.source}: policy '{policy.name}' uses {what}, which this version of guard "
        "cannot run yet; remove it or upgrade guard"
        for what in asked
    ]


def check_runnable(policies: list[LoadedPolicy]) -> None:
    problems = [problem for loaded in policies for problem in unsupported(loaded)]
    if problems:
        raise PolicyError(problems)


@dataclass(frozen=True)
class Relay:
    """Events to send; ``aclose`` must be awaited however the response ends."""

    events: AsyncIterator[bytes]
    aclose: Callable[[], Awaitable[None]]


@dataclass
class RequestContext:
    request_id: str
    upstream_model: str
    verdicts: list[dict[str, Any]] = field(default_factory=list)


class Pipeline:
    def __init__(self, loaded: LoadedPolicy, upstream: Upstream):
        self.loaded = loaded
        self.upstream = upstream

    @property
    def name(self) -> str:
        return self.loaded.policy.name

    def guard_info(self, ctx: RequestContext) -> dict[str, Any]:
        """The ``guard`` object added to every response."""
        return {
            "policy": self.name,
            "policy_sha256": self.loaded.digest[:16],
            "verdicts": ctx.verdicts,
        }

    async def complete(
        self, path: str, body: dict[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        result = await self.upstream.post_json(path, self._upstream_body(body, ctx), ctx.request_id)
        result["guard"] = self.guard_info(ctx)
        return result

    async def stream(self, path: str, body: dict[str, Any], ctx: RequestContext) -> Relay:
        """Open the upstream stream now, so its errors still get a proper status."""
        response = await self.upstream.open_stream(
            path, self._upstream_body(body, ctx), ctx.request_id
        )
        return Relay(self._relay_events(self.upstream.iter_bytes(response), ctx), response.aclose)

    async def _relay_events(
        self, chunks: AsyncIterator[bytes], ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        """Pass events through as they arrive; always end with ``[DONE]``.

        The first JSON chunk carries the ``guard`` object. A broken upstream becomes an
        error event, so the client is told instead of seeing a silently short answer.
        """
        tagged = False
        try:
            async for event in split_events(chunks):
                if event == DONE:
                    break
                if not tagged and event.startswith(b"data: {"):
                    event, tagged = self._with_guard_info(event, ctx)
                yield event + EVENT_END
            else:
                raise UpstreamStreamBroken("the upstream ended the stream without [DONE]")
        except GuardError as exc:
            yield error_event(exc)
        yield DONE + EVENT_END

    def _with_guard_info(self, event: bytes, ctx: RequestContext) -> tuple[bytes, bool]:
        try:
            chunk = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            return event, False
        if not isinstance(chunk, dict) or "error" in chunk:
            return event, False
        chunk["guard"] = self.guard_info(ctx)
        return b"data: " + orjson.dumps(chunk), True

    def _upstream_body(self, body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {**body, "model": ctx.upstream_model}
