"""Best-of-n with early pruning, after Speculative Rejection (Sun et al., 2024).

Every candidate is generated for ``segment_tokens`` (one upstream request with n
samples). The reward scores the partial answers and only the best ``keep_fraction``
go on; each survivor is continued for another segment by asking the upstream to
continue its own partial answer (chat: ``continue_final_message``; text completions:
the partial text appended to the prompt), which vLLM's prefix cache makes cheap.
After ``rounds`` rounds the survivors are finished and the best is returned. A
pruned candidate is never continued.

For a stream (``stream_last``) asking for one answer, as soon as a single unfinished
candidate is left it is not finished here: ``Pruner.survivor`` holds the request that
continues it, and the caller streams that continuation straight to the client.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from guard.components.base import Candidate, all_done
from guard.errors import RewardUnavailable
from guard.pipeline.best_of_n import (
    BestOfNStage,
    JudgeAll,
    rank,
    reason,
    top_distinct,
    upstream_request,
)
from guard.pipeline.trace import Trace
from guard.protocol.messages import COMPLETIONS, choice_text, chunk_head
from guard.protocol.sse import EVENT_END, data_event, split_events
from guard.protocol.upstream import Upstream

_STREAMING = ("stream", "stream_options")


@dataclass(frozen=True)
class Survivor:
    """The last candidate left, to be continued as a stream."""

    index: int
    text: str
    """Its partial answer so far: the client gets it first."""
    request: dict[str, Any]
    """The streaming request that continues it."""
    usage: dict[str, Any]
    """What every candidate has used so far."""


@dataclass
class Draft:
    text: str
    finished: bool
    finish_reason: str | None
    tokens: int
    dropped_in_round: int | None = None
    requests: int = 1
    """Upstream requests that generated it so far (the first one included)."""


def _limit(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if value is not None else None


def continuation(
    path: str, body: dict[str, Any], index: int, draft: Draft, max_tokens: int | None
) -> dict[str, Any]:
    """The request that continues ``draft``, candidate ``index``, where it stopped.

    With a client ``seed``, each continuation gets a seed of its own, ``seed + n x
    requests + index`` (vLLM gives the first request's i-th sample ``seed + i``), so no
    two requests of one answer share one. Sent with the client's seed as it is, every
    survivor's continuation would draw the same random numbers, and vLLM's sampler (an
    exponential race over the vocabulary) would then pick the same token wherever their
    next-token distributions are alike: coupled continuations, less varied than the
    independent samples best-of-n counts on. Runs stay reproducible."""
    request = {k: v for k, v in body.items() if k not in (*_STREAMING, "n")}
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        request["seed"] = seed + int(body.get("n") or 1) * draft.requests + index
    request.pop("max_completion_tokens", None)
    if max_tokens is None:
        request.pop("max_tokens", None)
    else:
        request["max_tokens"] = max_tokens
    if path == COMPLETIONS:
        request["prompt"] = str(body.get("prompt") or "") + draft.text
    else:
        request["messages"] = [*body["messages"], {"role": "assistant", "content": draft.text}]
        request["continue_final_message"] = True
        request["add_generation_prompt"] = False
    return request


class Pruner:
    def __init__(self, stage: BestOfNStage, upstream: Upstream, trace: Trace):
        assert stage.spec.prune is not None
        self.stage = stage
        self.prune = stage.spec.prune
        self.upstream = upstream
        self.trace = trace
        """Times each reward call as the ``reward`` stage."""
        self.reward_error: str | None = None
        self.survivor: Survivor | None = None

    async def generate(
        self,
        path: str,
        body: dict[str, Any],
        request_id: str,
        judge_all: JudgeAll | None = None,
        stream_last: bool = False,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The finished result with the best candidates, and ``guard.best_of_n``.

        ``judge_all``: the output rails, to drop unsafe finished drafts before the final
        ranking (``filter_unsafe``); the result has no choices when none is safe.
        ``stream_last``: stop at a single unfinished survivor, which is then
        ``self.survivor``, and the result holds its partial answer.
        """
        wanted = body.get("n") or 1
        k = min(wanted, self.stage.spec.n)
        body = upstream_request(
            self.stage.spec, {key: v for key, v in body.items() if key not in _STREAMING}
        )
        limit = _limit(body)
        segment = min(self.prune.segment_tokens, limit) if limit else self.prune.segment_tokens
        first = await self.upstream.post_json(path, {**body, "max_tokens": segment}, request_id)
        usage = dict(first.get("usage") or {})
        drafts = [
            Draft(
                choice_text(path, c),
                c.get("finish_reason") != "length",
                c.get("finish_reason"),
                segment,
            )
            for c in first["choices"]
        ]
        rounds: list[dict[str, Any]] = []
        for number in range(self.prune.rounds):
            alive = [i for i, d in enumerate(drafts) if d.dropped_in_round is None]
            if len(alive) <= k or all(drafts[i].finished for i in alive):
                break
            scores = await self._scores(path, body, drafts, alive)
            keep = max(k, math.ceil(len(alive) * self.prune.keep_fraction))
            survivors = rank(scores)[:keep]
            for i in alive:
                if i not in survivors:
                    drafts[i].dropped_in_round = number
            rounds.append({"scores": scores, "kept": sorted(survivors)})
            if stream_last and k == 1 and len(survivors) == 1:
                [index] = survivors
                if not drafts[index].finished:
                    left = None if limit is None else limit - drafts[index].tokens
                    request = continuation(path, body, index, drafts[index], left)
                    request["stream"] = True
                    self.survivor = Survivor(index, drafts[index].text, request, usage)
                    return self._result(path, first, usage, drafts, [index]), self._info(
                        usage, drafts, segment, rounds, scores, [index], []
                    )
            last = number == self.prune.rounds - 1
            await self._extend(
                path, body, drafts, survivors, None if last else segment, limit, usage, request_id
            )
        alive = [i for i, d in enumerate(drafts) if d.dropped_in_round is None]
        await self._extend(path, body, drafts, alive, None, limit, usage, request_id)
        unsafe: list[int] = []
        if judge_all is not None:
            finals = [self._choice(path, i, drafts[i]) for i in alive]
            judgements = await judge_all(finals)
            for i, choice, judgement in zip(alive, finals, judgements, strict=True):
                if judgement.stops:
                    unsafe.append(i)
                else:
                    drafts[i].text = choice_text(path, choice)  # redactions applied
            alive = [i for i in alive if i not in unsafe]
        scores = await self._scores(path, body, drafts, alive) if alive else [None] * len(drafts)
        chosen = top_distinct(rank(scores), [d.text for d in drafts], wanted)
        return self._result(path, first, usage, drafts, chosen), self._info(
            usage, drafts, segment, rounds, scores, chosen, unsafe
        )

    def _result(
        self,
        path: str,
        first: dict[str, Any],
        usage: dict[str, Any],
        drafts: list[Draft],
        chosen: list[int],
    ) -> dict[str, Any]:
        choices = [self._choice(path, position, drafts[i]) for position, i in enumerate(chosen)]
        return {**first, "usage": usage, "choices": choices}

    def _info(
        self,
        usage: dict[str, Any],
        drafts: list[Draft],
        segment: int,
        rounds: list[dict[str, Any]],
        scores: list[float | None],
        chosen: list[int],
        unsafe: list[int],
    ) -> dict[str, Any]:
        pruning: dict[str, Any] = {"segment_tokens": segment, "rounds": rounds}
        if self.survivor is not None:
            pruning["streamed"] = self.survivor.index
        info: dict[str, Any] = {
            "unsafe": unsafe,
            "n": len(drafts),
            "reward": self.stage.reward_name,
            "pruning": pruning,
            "scores": scores,
            "chosen": chosen,
            "generated_tokens": usage.get("completion_tokens"),
        }
        if self.reward_error is not None:
            info["reward_error"] = self.reward_error
        return info

    async def _scores(
        self, path: str, body: dict[str, Any], drafts: list[Draft], alive: list[int]
    ) -> list[float | None]:
        candidates: list[Candidate] = [
            BestOfNStage.candidate(path, body, drafts[i].text) for i in alive
        ]
        try:
            with self.trace.timed("reward"):
                values = await asyncio.wait_for(
                    self.stage.reward.score(candidates), self.stage.spec.reward.timeout_s
                )
        except Exception as exc:
            if self.stage.spec.on_reward_error == "fail":
                raise RewardUnavailable(f"best-of-n's reward model failed: {reason(exc)}") from exc
            self.reward_error = reason(exc)
            values = [-float(position) for position in range(len(alive))]  # first ones win
        scores: list[float | None] = [None] * len(drafts)
        for i, value in zip(alive, values, strict=True):
            scores[i] = value
        return scores

    async def _extend(
        self,
        path: str,
        body: dict[str, Any],
        drafts: list[Draft],
        which: list[int],
        segment: int | None,
        limit: int | None,
        usage: dict[str, Any],
        request_id: str,
    ) -> None:
        """Continue the unfinished drafts among ``which`` (to the end when no segment)."""
        todo = [i for i in which if not drafts[i].finished]

        async def one(i: int) -> None:
            draft = drafts[i]
            left = None if limit is None else limit - draft.tokens
            if left is not None and left <= 0:
                draft.finished = True
                return
            size = segment if left is None else min(segment or left, left)
            answer = await self.upstream.post_json(
                path, continuation(path, body, i, draft, size), request_id
            )
            draft.requests += 1
            choice = answer["choices"][0]
            draft.text += choice_text(path, choice)
            draft.finish_reason = choice.get("finish_reason")
            draft.finished = segment is None or draft.finish_reason != "length"
            generated = int((answer.get("usage") or {}).get("completion_tokens") or 0)
            draft.tokens += generated
            usage["completion_tokens"] = int(usage.get("completion_tokens") or 0) + generated
            usage["total_tokens"] = int(usage.get("total_tokens") or 0) + generated

        await all_done([one(i) for i in todo])

    @staticmethod
    def _choice(path: str, index: int, draft: Draft) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": index,
            "finish_reason": draft.finish_reason,
            "logprobs": None,
        }
        if path == COMPLETIONS:
            choice["text"] = draft.text
        else:
            choice["message"] = {"role": "assistant", "content": draft.text}
        return choice


async def survivor_events(
    path: str, result: dict[str, Any], survivor: Survivor, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """The survivor's partial answer as one chunk, then the upstream's stream of its
    continuation, with usage counting every candidate generated."""
    head = chunk_head(path, result)
    part: dict[str, Any] = (
        {"text": survivor.text}
        if path == COMPLETIONS
        else {"delta": {"role": "assistant", "content": survivor.text}}
    )
    yield data_event({**head, "choices": [{"index": 0, "finish_reason": None, **part}]})
    async for event in split_events(chunks):
        if event.startswith(b"data: {") and b'"usage"' in event:
            chunk = orjson.loads(event[6:])
            if isinstance(chunk, dict) and chunk.get("usage"):
                chunk["usage"] = _added(survivor.usage, chunk["usage"])
                event = b"data: " + orjson.dumps(chunk)
        yield event + EVENT_END


def _added(before: dict[str, Any], continuation: dict[str, Any]) -> dict[str, Any]:
    completion = int(before.get("completion_tokens") or 0) + int(
        continuation.get("completion_tokens") or 0
    )
    prompt = int(before.get("prompt_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
