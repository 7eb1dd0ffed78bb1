"""One policy's rails around one upstream call: the rails built from the policy, the
input rails before (or beside) generation, the output rails on finished choices, and the
refusal. ``guard.pipeline.runner.Pipeline`` builds its stages on these (best-of-n,
constitutional revision, streaming, the Responses API)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from guard.components.registry import BuildContext
from guard.errors import ContentFiltered, PolicyError
from guard.pipeline.checks import built
from guard.pipeline.context import Blocked, RequestContext, note_judgements, rail_failure
from guard.pipeline.inputs import InputPlan, read_input, with_redacted_input
from guard.pipeline.rails import (
    Judgement,
    Rail,
    Stage,
    build_rail,
    cached_rail,
    judge,
    note_unshared_encoders,
)
from guard.pipeline.refusal import refusal
from guard.pipeline.subjects import output_parts
from guard.pipeline.texts import redact_fields
from guard.policy.load import LoadedPolicy
from guard.protocol.messages import set_choice_text
from guard.protocol.responses import RESPONSES, refused_response
from guard.protocol.upstream import Upstream

T = TypeVar("T")


class GuardedCalls:
    """A policy's rails, built once, and the calls that run them around a generation."""

    def __init__(self, loaded: LoadedPolicy, upstream: Upstream, components: BuildContext):
        self.loaded = loaded
        self.upstream = upstream
        policy = loaded.policy
        problems: list[str] = []
        inputs = self._build_rails(policy.input_rails, "input_rails", components, problems)
        self.input_rails = [cached_rail(rail) for rail in inputs]
        self.output_rails = self._build_rails(
            policy.output_rails, "output_rails", components, problems
        )
        if problems:
            raise PolicyError(problems)
        note_unshared_encoders(self.input_rails)
        note_unshared_encoders(self.output_rails)
        redacts = any(rail.action == "redact" for rail in policy.input_rails)
        self.input_in_parallel = policy.input_rails_mode != "sequential" and not redacts

    def _build_rails(
        self, specs: list[Any], section: str, components: BuildContext, problems: list[str]
    ) -> list[Rail]:
        """The rails of ``specs``; each one that cannot be built adds its problem instead,
        so that start-up names every one, not the first."""
        rails = []
        for index, spec in enumerate(specs):
            build = lambda s: build_rail(s, components)  # noqa: E731
            try:
                rails.append(built(self.loaded, f"{section}[{index}]", spec, build))
            except PolicyError as exc:
                problems += exc.problems
        return rails

    @property
    def name(self) -> str:
        return self.loaded.policy.name

    def guard_info(self, ctx: RequestContext) -> dict[str, Any]:
        """The ``guard`` object added to every response."""
        verdicts = [r.to_dict() for _, j in ctx.judgements for r in j.reports]
        info: dict[str, Any] = {
            "policy": self.name,
            "policy_sha256": self.loaded.digest[:16],
            "verdict": ctx.verdict,
            "verdicts": verdicts,
        }
        if ctx.input_plan is not None:
            info["input"] = ctx.input_plan.summary(ctx.input_judgements, self.input_rails)
        if ctx.logprobs_dropped:
            info["logprobs_dropped"] = ctx.logprobs_dropped
        if ctx.stream_checks:
            info["stream_checks"] = ctx.stream_checks
        if ctx.best_of_n is not None:
            info["best_of_n"] = ctx.best_of_n
        if ctx.constitutional is not None:
            info["constitutional"] = ctx.constitutional
        return info

    async def _guarded_generation(
        self,
        path: str,
        body: dict[str, Any],
        ctx: RequestContext,
        generate: Callable[[dict[str, Any]], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """Generate behind the input rails. Raises ``Blocked`` if a rail blocks."""
        body = self._upstream_body(body, ctx)
        if discard is None:
            generate = ctx.trace.timed_call("generation", generate)
        else:  # a stream (the one kind with ``discard``): its span ends with it
            generate = ctx.trace.stream_call(generate)
        if not self.input_rails:
            return await generate(body)
        plan = ctx.input_plan = read_input(path, body, self.loaded.policy.inputs)
        if not self.input_in_parallel:
            judgements = await self._judge_input(plan, ctx)
            self._stop_on(judgements, ctx)
            redacted = with_redacted_input(body, plan.parts, judgements)
            if redacted is None:
                raise Blocked  # a span to redact lies where guard cannot rewrite it
            return await generate(redacted)
        generation = asyncio.ensure_future(generate(body))
        try:
            judgements = await self._judge_input(plan, ctx)
            self._stop_on(judgements, ctx)
        except BaseException:
            await _cancel(generation, discard)
            raise
        return await generation

    async def _judge_input(self, plan: InputPlan, ctx: RequestContext) -> list[Judgement]:
        ctx.input_judgements = await self._judge(
            self.input_rails, plan.subjects, "input", ctx, plan.kinds
        )
        return ctx.input_judgements

    def _stop_on(self, judgements: list[Judgement], ctx: RequestContext) -> None:
        """Raise ``Blocked`` when a rail judged a text unsafe. When a fail-closed rail could
        not judge one, raise what the policy answers to that: an error, or ``Blocked``."""
        if any(j.blocked for j in judgements) or any(self._refuses(j, ctx) for j in judgements):
            raise Blocked

    def _refuses(self, judgement: Judgement, ctx: RequestContext) -> bool:
        """Whether the text judged must be replaced by the refusal: a rail blocked it, or a
        fail-closed rail could not judge it and the policy answers that with the refusal.
        Raises ``RailFailed`` (or ``RailsOverloaded``) when the policy answers an error."""
        if judgement.blocked:
            return True
        if not judgement.failed:
            return False
        if self.loaded.policy.refusal.on_rail_error == "refusal":
            return True
        raise rail_failure(judgement, self.guard_info(ctx))

    async def _judge_output(
        self, path: str, body: dict[str, Any], result: dict[str, Any], ctx: RequestContext
    ) -> None:
        if not self.output_rails:
            return
        judgements = await self._judge_choices(path, body, result["choices"], ctx)
        for choice, judgement in zip(result["choices"], judgements, strict=True):
            if self._refuses(judgement, ctx):
                set_choice_text(path, choice, self.refusal_message([judgement]), filtered=True)
        if self.loaded.policy.refusal.http_error and any(j.blocked for j in judgements):
            raise ContentFiltered(self.refusal_message(judgements), self.guard_info(ctx))

    async def _judge_choices(
        self,
        path: str,
        body: dict[str, Any],
        choices: list[dict[str, Any]],
        ctx: RequestContext,
    ) -> list[Judgement]:
        """Judge finished choices with the output rails; apply redactions in place, to every
        field they touch. A redacted choice's logprobs cannot be rewritten to match: they
        are dropped, and ``guard.logprobs_dropped`` lists the choice."""
        parts = output_parts(path, body, choices)
        subjects = [part.subject("assistant") for part in parts]
        judgements = await self._judge(self.output_rails, subjects, "output", ctx)
        redacting = [j if not j.stops else Judgement(j.reports) for j in judgements]
        for index in sorted(redact_fields(choices, parts, redacting)):
            if choices[index].get("logprobs") is not None:
                choices[index]["logprobs"] = None
                ctx.logprobs_dropped.append(int(choices[index].get("index", index)))
        return judgements

    async def _judge(
        self,
        rails: list[Rail],
        subjects: list[Any],
        stage: Stage,
        ctx: RequestContext,
        kinds: list[str] | None = None,
    ) -> list[Judgement]:
        with ctx.trace.timed(f"{stage}_rails") as span:
            judgements = await judge(rails, subjects, stage, kinds)
            note_judgements(span, judgements)
        ctx.judgements += [(stage, j) for j in judgements]
        return judgements

    def refusal_message(self, judgements: Iterable[Judgement]) -> str:
        """What a blocked client is told: the first blocked text's ``refusal`` (its first
        blocking rail's own), in the order the texts were judged, or the policy's message."""
        first = next((j for j in judgements if j.blocked), None)
        own = first.refusal if first is not None else None
        return own or self.loaded.policy.refusal.message

    def blocked_message(self, ctx: RequestContext) -> str:
        """What a request stopped by a block is told: an input rail's block speaks first
        (output rails may have judged candidates beside the input rails)."""
        inputs = ctx.input_judgements
        judged = inputs if any(j.blocked for j in inputs) else [j for _, j in ctx.judgements]
        return self.refusal_message(judged)

    def _refusal(self, path: str, body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        message = self.blocked_message(ctx)
        if self.loaded.policy.refusal.http_error:
            raise ContentFiltered(message, self.guard_info(ctx))
        if path == RESPONSES:
            return refused_response(body, message, ctx.request_id)
        return refusal(path, str(body.get("model")), message, body.get("n") or 1, ctx.request_id)

    def _upstream_body(self, body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {**body, "model": ctx.upstream_model}


async def _cancel(task: asyncio.Future[T], discard: Callable[[T], Awaitable[None]] | None) -> None:
    """Cancel a generation; if it already finished, release what it produced."""
    task.cancel()
    await asyncio.wait([task])
    if task.cancelled() or task.exception() is not None:
        return
    if discard is not None:
        await discard(task.result())
