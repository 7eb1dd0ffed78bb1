"""Best-of-n: one upstream request for n samples, one batched reward call, the best kept.

vLLM shares the prompt's KV cache across the n samples of one request. With
``filter_unsafe`` the output rails judge every candidate first and only safe ones
compete (the winner is not judged again). Ranking is by reward, ties to the earlier
candidate, so runs are deterministic. A client asking ``n=k`` gets the top k
distinct candidates (padded with the next best when fewer are distinct); the policy's
``n`` bounds k (``check_n``), so a client never chooses how many candidates are
generated and scored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from guard.components.base import Candidate, Reward
from guard.errors import InvalidRequest, RewardUnavailable, client_safe
from guard.pipeline.rails import Judgement
from guard.pipeline.trace import Trace
from guard.policy.models import BestOfN
from guard.protocol.messages import COMPLETIONS, choice_text

JudgeAll = Callable[[list[dict[str, Any]]], Awaitable[list[Judgement]]]


def check_n(spec: BestOfN, body: dict[str, Any]) -> None:
    """Refuse a client's ``n`` above the policy's: the policy sets the candidates'
    count, and a client may ask for at most that many of them back."""
    wanted = int(body.get("n") or 1)
    if wanted > spec.n:
        raise InvalidRequest(
            f"Invalid 'n': integer above maximum value. Expected a value <= {spec.n}, but got "
            f"{wanted} instead. This model's policy samples {spec.n} candidates per request "
            "(best_of_n.n) and returns at most that many.",
            param="n",
            code="integer_above_max_value",
        )


def upstream_request(spec: BestOfN, body: dict[str, Any]) -> dict[str, Any]:
    """The body asking for every candidate at once, sampled so that they differ (the
    client's ``n``, at most the policy's, was checked by ``check_n``)."""
    request = {**body, "n": spec.n}
    temperature = body.get("temperature")
    if temperature is not None and temperature < spec.min_temperature:
        request["temperature"] = spec.min_temperature
    return request


def rank(scores: Sequence[float | None]) -> list[int]:
    """Indices of the scored candidates, best first; ties go to the earlier one."""
    scored = [(score, index) for index, score in enumerate(scores) if score is not None]
    return [index for score, index in sorted(scored, key=lambda pair: (-pair[0], pair[1]))]


def top_distinct(order: Sequence[int], texts: Sequence[str], k: int) -> list[int]:
    distinct: list[int] = []
    for index in order:
        if texts[index] not in {texts[i] for i in distinct}:
            distinct.append(index)
    padding = [i for i in order if i not in distinct]
    return (distinct + padding)[:k]


@dataclass
class BestOfNStage:
    spec: BestOfN
    reward: Reward

    @property
    def reward_name(self) -> str:
        return str(
            self.spec.reward.name or getattr(self.spec.reward, "model", self.spec.reward.kind)
        )

    async def select(
        self,
        path: str,
        body: dict[str, Any],
        result: dict[str, Any],
        judge_all: JudgeAll | None,
        trace: Trace,
    ) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """Keep the best choices. Returns the result, ``guard.best_of_n``, and whether
        every candidate was unsafe (then the caller refuses). The reward call is timed
        in ``trace`` as the ``reward`` stage."""
        choices = result["choices"]
        texts = [choice_text(path, c) for c in choices]
        safe = [True] * len(choices)
        if self.spec.filter_unsafe and judge_all is not None:
            judgements = await judge_all(choices)
            safe = [not j.stops for j in judgements]
        info: dict[str, Any] = {
            "n": len(choices),
            "reward": self.reward_name,
            "unsafe": [i for i, ok in enumerate(safe) if not ok],
            "generated_tokens": (result.get("usage") or {}).get("completion_tokens"),
        }
        if not any(safe):
            return result, {**info, "scores": [None] * len(choices), "chosen": []}, True
        scores: list[float | None] = [None] * len(choices)
        try:
            with trace.timed("reward"):
                scored = await asyncio.wait_for(
                    self.reward.score(
                        [self.candidate(path, body, t) for i, t in enumerate(texts) if safe[i]]
                    ),
                    self.spec.reward.timeout_s,
                )
            safe_indices = [i for i, ok in enumerate(safe) if ok]
            for index, score in zip(safe_indices, scored, strict=True):
                scores[index] = score
            order = rank(scores)
        except Exception as exc:
            if self.spec.on_reward_error == "fail":
                raise RewardUnavailable(f"best-of-n's reward model failed: {reason(exc)}") from exc
            info["reward_error"] = reason(exc)
            order = [i for i, ok in enumerate(safe) if ok]  # first safe candidates
        chosen = top_distinct(order, texts, body.get("n") or 1)
        result["choices"] = [{**choices[i], "index": position} for position, i in enumerate(chosen)]
        return result, {**info, "scores": scores, "chosen": chosen}, False

    @staticmethod
    def candidate(path: str, body: dict[str, Any], text: str) -> Candidate:
        if path == COMPLETIONS:
            prompt = body.get("prompt")
            return Candidate(text, prompt=prompt if isinstance(prompt, str) else None)
        return Candidate(text, tuple(body.get("messages") or ()))


def reason(exc: BaseException) -> str:
    """Why the reward failed, as the client is shown it."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return client_safe(f"{type(exc).__name__}: {exc}")
