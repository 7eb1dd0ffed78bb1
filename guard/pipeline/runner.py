"""Runs one policy's stages for one request.

The stages, in order: input rails -> generation -> best-of-n -> constitutional
revision -> output rails. On ``/v1/responses`` the stages are input rails ->
generation -> output rails; a policy with best-of-n or constitutional critique answers
that endpoint 400 rather than skip them. ``unsupported`` names every stage a policy asks for that
this version cannot run yet; the server refuses to start on such a policy rather
than silently skip a safety step.

Input rails run ``sequential`` (before generation) or ``parallel`` (generation
starts at once and is cancelled if a rail blocks; nothing is released before the
verdict). A policy with an input rail that redacts always runs them sequentially,
since the redacted prompt is what must be generated from.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from functools import partial
from typing import Any

from guard.components.base import Subject
from guard.components.registry import BuildContext, build_reward
from guard.errors import ContentFiltered
from guard.pipeline.best_of_n import BestOfNStage, check_n, upstream_request
from guard.pipeline.checks import built, check_responses
from guard.pipeline.constitutional import ConstitutionalStage, judge_critiques, trigger_reason
from guard.pipeline.context import Blocked, RequestContext, note_judgements
from guard.pipeline.guarded import GuardedCalls
from guard.pipeline.pruning import Pruner, survivor_events
from guard.pipeline.rails import Judgement, judge
from guard.pipeline.response_stream import ResponseStreamGuard
from guard.pipeline.streaming import Judge, StreamGuard
from guard.pipeline.subjects import conversation, items_touched, response_part
from guard.pipeline.texts import redact_fields
from guard.policy.load import LoadedPolicy
from guard.protocol.messages import COMPLETIONS, as_events, choice_text, set_choice_text
from guard.protocol.relay import Relay, passed_through, passed_through_responses, replay
from guard.protocol.responses import RESPONSES, response_events, set_refused
from guard.protocol.upstream import Upstream


class Pipeline(GuardedCalls):
    """One policy's stages for one request (the module's docstring)."""

    def __init__(self, loaded: LoadedPolicy, upstream: Upstream, components: BuildContext):
        super().__init__(loaded, upstream, components)
        policy = loaded.policy
        self.best_of_n = None
        if policy.best_of_n is not None:
            reward = built(
                self.loaded,
                "best_of_n.reward",
                policy.best_of_n.reward,
                lambda spec: build_reward(spec, components),
            )
            self.best_of_n = BestOfNStage(policy.best_of_n, reward)
        self.constitutional = None
        if policy.constitutional is not None:
            spec = policy.constitutional
            critic = components.endpoint(spec.critic) if spec.critic else upstream
            judge_reward = (
                built(
                    self.loaded,
                    "constitutional.reward",
                    spec.reward,
                    lambda r: build_reward(r, components),
                )
                if spec.reward is not None
                else None
            )
            self.constitutional = ConstitutionalStage(spec, critic, judge_reward)

    # -- plain JSON ---------------------------------------------------------------

    def check_request(self, body: dict[str, Any]) -> None:
        """What this policy refuses in a request before any work starts (400)."""
        if self.best_of_n is not None:
            check_n(self.best_of_n.spec, body)

    async def complete(
        self, path: str, body: dict[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        if path == RESPONSES:
            return await self._respond(body, ctx)
        self.check_request(body)
        try:
            if self.best_of_n is not None and self.best_of_n.spec.prune is not None:
                result, judged = await self._pruned_best_of_n(path, body, ctx)
            else:
                generation_body = (
                    upstream_request(self.best_of_n.spec, body) if self.best_of_n else body
                )
                result = await self._guarded_generation(
                    path,
                    generation_body,
                    ctx,
                    lambda b: self.upstream.post_json(path, b, ctx.request_id),
                )
                judged = False
                if self.best_of_n is not None:
                    judged = await self._best_of_n(path, body, result, ctx)
                ctx.trace.keep_result(path, body, result)
            if self.constitutional is not None:
                await self._constitutional(path, body, result, ctx, judged)
            elif not judged:
                await self._judge_output(path, body, result, ctx)
        except Blocked:
            result = self._refusal(path, body, ctx)
        result["guard"] = self.guard_info(ctx)
        return result

    async def forward(
        self, path: str, body: dict[str, Any], ctx: RequestContext, judge_input: bool
    ) -> dict[str, Any]:
        """An embeddings or pooling-family request: judged by the input rails when
        ``judge_input``, then forwarded; the answer (vectors, scores, token ids) comes
        back as the upstream sent it. No output rail reads it, and no refusal text fits
        it: a block is answered with HTTP 400, code ``content_filter``."""

        def send(sent: dict[str, Any]) -> Awaitable[dict[str, Any]]:
            return self.upstream.post_json(path, sent, ctx.request_id)

        try:
            if judge_input:
                result = await self._guarded_generation(path, body, ctx, send)
            else:
                with ctx.trace.timed("generation"):
                    result = await send(self._upstream_body(body, ctx))
        except Blocked:
            raise ContentFiltered(self.blocked_message(ctx), self.guard_info(ctx)) from None
        result["guard"] = self.guard_info(ctx)
        return result

    async def _pruned_best_of_n(
        self, path: str, body: dict[str, Any], ctx: RequestContext, pruner: Pruner | None = None
    ) -> tuple[dict[str, Any], bool]:
        """The pruned best-of-n result; True when the output rails already judged it.

        With a ``pruner`` made to stop at a streamable survivor, the result may be that
        survivor's partial answer (``pruner.survivor``), judged by nobody yet."""
        assert self.best_of_n is not None
        stream_last = pruner is not None
        pruner = pruner or Pruner(self.best_of_n, self.upstream, ctx.trace)
        filtering = self.best_of_n.spec.filter_unsafe and bool(self.output_rails)

        judged: list[Judgement] = []

        async def judge_all(choices: list[dict[str, Any]]) -> list[Judgement]:
            judged.extend(await self._judge_choices(path, body, choices, ctx))
            return judged

        result, ctx.best_of_n = await self._guarded_generation(
            path,
            body,
            ctx,
            lambda b: pruner.generate(
                path, b, ctx.request_id, judge_all if filtering else None, stream_last
            ),
        )
        if not result["choices"]:
            self._stop_on(judged, ctx)
            raise Blocked
        ctx.trace.keep_result(path, body, result)
        return result, filtering

    async def _best_of_n(
        self, path: str, body: dict[str, Any], result: dict[str, Any], ctx: RequestContext
    ) -> bool:
        """Keep the best candidates; True when the output rails already judged them."""
        assert self.best_of_n is not None
        filtering = self.best_of_n.spec.filter_unsafe and bool(self.output_rails)
        judged: list[Judgement] = []

        async def judge_all(choices: list[dict[str, Any]]) -> list[Judgement]:
            judged.extend(await self._judge_choices(path, body, choices, ctx))
            return judged

        _, ctx.best_of_n, all_unsafe = await self.best_of_n.select(
            path, body, result, judge_all if filtering else None, ctx.trace
        )
        if all_unsafe:
            self._stop_on(judged, ctx)
        if judged:
            ctx.winner_judgements = [judged[i] for i in ctx.best_of_n["chosen"]]
        return filtering

    async def _constitutional(
        self,
        path: str,
        body: dict[str, Any],
        result: dict[str, Any],
        ctx: RequestContext,
        judged: bool,
    ) -> None:
        """Critique and revise the choices that trigger; judge every final text. A revised
        choice's logprobs spell the draft: they are dropped, and ``guard.logprobs_dropped``
        lists the choice."""
        assert self.constitutional is not None
        stage = self.constitutional
        conversation = list(body.get("messages") or [])
        if path == COMPLETIONS:
            conversation = [{"role": "user", "content": str(body.get("prompt") or "")}]
        choices = result["choices"]
        judgements = ctx.winner_judgements
        if judgements is None and self.output_rails:
            judgements = await self._judge_choices(path, body, choices, ctx)
        infos = []
        refused: list[Judgement] = []  # the final judgement of each choice refused
        for index, choice in enumerate(choices):
            draft = choice_text(path, choice)
            judgement = judgements[index] if judgements else None
            with ctx.trace.timed("reward"):
                score = await stage.reward_score(conversation, draft)
            reason = trigger_reason(stage.spec, judgement, score)
            if reason is None:
                infos.append({"triggered": False, "reward": score})
                if judgement is not None and self._refuses(judgement, ctx):
                    refused.append(judgement)
                    message = self.refusal_message([judgement])
                    set_choice_text(path, choice, message, filtered=True)
                continue
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            with ctx.trace.timed("critique"):
                outcome = await stage.revise(
                    conversation, draft, ctx.upstream_model, reason, ctx.request_id, limit
                )
            set_choice_text(path, choice, outcome.text, filtered=False)
            if choice.get("logprobs") is not None:
                # They spell the draft, token by token: the text the revision removed.
                choice["logprobs"] = None
                ctx.logprobs_dropped.append(int(choice.get("index", index)))
            outcome.info["final"] = "passed"
            if self.output_rails:
                await judge_critiques(
                    outcome.info,
                    tuple(body.get("messages") or ()),
                    lambda subjects: self._judge(self.output_rails, subjects, "output", ctx),
                )
            if self.output_rails:
                [final] = await self._judge_choices(path, body, [choice], ctx)
                if self._refuses(final, ctx):
                    refused.append(final)
                    message = self.refusal_message([final])
                    set_choice_text(path, choice, message, filtered=True)
                    outcome.info["final"] = "blocked" if final.blocked else "error"
            infos.append(outcome.info)
        ctx.constitutional = infos[0] if len(infos) == 1 else {"choices": infos}
        blocked = any(c.get("finish_reason") == "content_filter" for c in choices)
        if self.loaded.policy.refusal.http_error and blocked:
            raise ContentFiltered(self.refusal_message(refused), self.guard_info(ctx))

    # -- streaming ----------------------------------------------------------------

    async def stream(self, path: str, body: dict[str, Any], ctx: RequestContext) -> Relay:
        """Start a stream. Errors before the first byte still get a proper status."""
        if path == RESPONSES:
            return await self._stream_response(body, ctx)
        self.check_request(body)
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        unstreamed = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        if self._streams_survivor(body):
            return await self._stream_pruned(path, body, unstreamed, ctx, wants_usage)
        if self.best_of_n is not None or self.constitutional is not None:
            # The answer is chosen (or revised) when finished, then streamed.
            return replay(as_events(path, await self.complete(path, unstreamed, ctx), wants_usage))
        return await self._stream_generation(path, body, ctx, wants_usage)

    def _streams_survivor(self, body: dict[str, Any]) -> bool:
        """Pruned best-of-n for one answer streams its last survivor's continuation."""
        return (
            self.best_of_n is not None
            and self.best_of_n.spec.prune is not None
            and self.constitutional is None
            and (body.get("n") or 1) == 1
        )

    async def _stream_pruned(
        self,
        path: str,
        body: dict[str, Any],
        unstreamed: dict[str, Any],
        ctx: RequestContext,
        wants_usage: bool,
    ) -> Relay:
        """Prune; stream the last survivor's continuation, or replay a finished answer."""
        assert self.best_of_n is not None
        pruner = Pruner(self.best_of_n, self.upstream, ctx.trace)
        try:
            result, judged = await self._pruned_best_of_n(path, unstreamed, ctx, pruner)
            survivor = pruner.survivor
            if survivor is None and not judged:
                await self._judge_output(path, unstreamed, result, ctx)
        except Blocked:
            result, survivor = self._refusal(path, body, ctx), None
        if survivor is None:
            result["guard"] = self.guard_info(ctx)
            return replay(as_events(path, result, wants_usage))
        request = self._stream_body(survivor.request, wants_usage)
        response = await self.upstream.open_stream(path, request, ctx.request_id)
        chunks = survivor_events(path, result, survivor, self.upstream.iter_bytes(response))
        return self._guarded_relay(path, body, chunks, response, ctx, wants_usage)

    def _stream_body(self, body: dict[str, Any], wants_usage: bool) -> dict[str, Any]:
        """The upstream's streaming request. With output rails, usage in every chunk lets
        a stream cut short still report what was generated."""
        options = dict(body.get("stream_options") or {})
        if self.output_rails:
            options |= {"include_usage": True, "continuous_usage_stats": True}
        elif wants_usage:
            options["include_usage"] = True
        return {**body, "stream_options": options} if options else body

    async def _stream_generation(
        self, path: str, body: dict[str, Any], ctx: RequestContext, wants_usage: bool
    ) -> Relay:
        try:
            response = await self._guarded_generation(
                path,
                self._stream_body(body, wants_usage),
                ctx,
                lambda b: self.upstream.open_stream(path, b, ctx.request_id),
                discard=self.upstream.close,
            )
        except Blocked:
            result = self._refusal(path, body, ctx)
            result["guard"] = self.guard_info(ctx)
            return replay(as_events(path, result, wants_usage))
        chunks = ctx.trace.upstream_chunks(self.upstream.iter_bytes(response))
        return self._guarded_relay(path, body, chunks, response, ctx, wants_usage)

    def _guarded_relay(
        self,
        path: str,
        body: dict[str, Any],
        chunks: AsyncIterator[bytes],
        response: Any,
        ctx: RequestContext,
        wants_usage: bool,
    ) -> Relay:
        """Relay an upstream stream, through the output rails' window when there are any."""
        if not self.output_rails:
            return Relay(
                passed_through(chunks, partial(self.guard_info, ctx)),
                partial(self.upstream.close, response),
            )
        guard = StreamGuard(
            self.loaded.policy.streaming,
            self._stream_judge(path, body, ctx),
            lambda: self.guard_info(ctx),
            wants_usage=wants_usage,
        )
        return Relay(guard.run(chunks), partial(self.upstream.close, response))

    def _stream_judge(self, path: str, body: dict[str, Any], ctx: RequestContext) -> Judge:
        """Judges a streamed answer's window with the output rails. A fail-closed rail that
        could not judge it raises the policy's error, unless the policy wants a refusal."""
        context = conversation(path, body)

        async def judge_text(text: str, index: int) -> Judgement:
            with ctx.trace.timed("output_rails") as span:
                [judgement] = await judge(
                    self.output_rails, [Subject(text, "assistant", context)], "output"
                )
                note_judgements(span, [judgement])
            ctx.stream_checks += 1
            if judgement.outcome != "pass":
                ctx.judgements.append(("output", judgement))
            if judgement.failed and not judgement.blocked:
                self._refuses(judgement, ctx)  # raises unless the policy wants a refusal
            return judgement

        return judge_text

    # -- the Responses API --------------------------------------------------------

    async def _respond(self, body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        check_responses(self.loaded.policy, body)
        try:
            result = await self._guarded_generation(
                RESPONSES,
                body,
                ctx,
                lambda b: self.upstream.post_json(RESPONSES, b, ctx.request_id),
            )
            ctx.trace.keep_result(RESPONSES, body, result)
            await self._judge_response(body, result, ctx)
        except Blocked:
            result = self._refusal(RESPONSES, body, ctx)
        result["guard"] = self.guard_info(ctx)
        return result

    async def _judge_response(
        self, body: dict[str, Any], result: dict[str, Any], ctx: RequestContext
    ) -> None:
        """Judge a finished Response's output: a block (or a failure the policy answers
        with a refusal) replaces it by the refusal; a redaction rewrites each field it
        touches, and drops that item's logprobs."""
        if not self.output_rails:
            return
        part = response_part(body, result)
        [judgement] = await self._judge(
            self.output_rails, [part.subject("assistant")], "output", ctx
        )
        message = self.refusal_message([judgement])
        if self._refuses(judgement, ctx):
            if self.loaded.policy.refusal.http_error and judgement.blocked:
                raise ContentFiltered(message, self.guard_info(ctx))
            set_refused(result, message, ctx.request_id)
            return
        redact_fields(result, [part], [judgement])
        for index in items_touched(part, judgement):
            item = result["output"][index]
            for content in item.get("content") or [] if item.get("type") == "message" else []:
                if isinstance(content, dict) and content.get("logprobs") is not None:
                    content["logprobs"] = None
                    ctx.logprobs_dropped.append(index)

    async def _stream_response(self, body: dict[str, Any], ctx: RequestContext) -> Relay:
        check_responses(self.loaded.policy, body)
        try:
            response = await self._guarded_generation(
                RESPONSES,
                body,
                ctx,
                lambda b: self.upstream.open_stream(RESPONSES, b, ctx.request_id),
                discard=self.upstream.close,
            )
        except Blocked:
            result = self._refusal(RESPONSES, body, ctx)
            result["guard"] = self.guard_info(ctx)
            return replay(response_events(result))
        chunks = ctx.trace.upstream_chunks(self.upstream.iter_bytes(response))
        close = partial(self.upstream.close, response)
        if not self.output_rails:
            return Relay(passed_through_responses(chunks, partial(self.guard_info, ctx)), close)
        guard = ResponseStreamGuard(
            self.loaded.policy.streaming,
            self._stream_judge(RESPONSES, body, ctx),
            lambda: self.guard_info(ctx),
        )
        return Relay(guard.run(chunks), close)
