"""Constitutional self-critique: the model critiques its draft against principles, then
rewrites it, only when the policy's trigger says so.

Triggers: ``always``; ``flagged``, when an output rail flags (or blocks) the draft;
``low_reward``, when the reward scores the draft below ``reward_threshold``. A draft
that does not trigger costs nothing more. Each round asks the critic (by default the
request's own upstream model) for a critique, then for a revision; the caller judges
the final text with the output rails again. The draft is never sent to the client.
What the critic reads of the conversation, the draft and its own critique is neutralised
(``guard.components.neutralize``).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from guard.components.base import Candidate, Reward, Subject
from guard.components.neutralize import neutralize, neutralize_messages
from guard.pipeline.rails import Judgement
from guard.policy.models import Constitutional, Principle
from guard.protocol.upstream import Upstream

CRITIQUE_TEMPLATE = (
    "Here is your previous response:\n\n{response}\n\n{critique_request}\n"
    "Answer with a short critique only."
)
CRITIQUE_MAX_TOKENS = 128
"""A critique is a short note: at most this, and at most half the answer's ``max_tokens``
(never under ``CRITIQUE_MIN_TOKENS``), so one round stays near three calls' cost."""
CRITIQUE_MIN_TOKENS = 16
REVISION_MAX_TOKENS = 512
"""The revision's budget when the request sets no ``max_tokens``."""
REVISION_TEMPLATE = "{revision_request}\nReply with the rewritten response only, and nothing else."


@dataclass
class Outcome:
    text: str
    info: dict[str, Any] = field(default_factory=dict)


def critique_budget(max_tokens: int | None) -> int:
    if max_tokens is None:
        return CRITIQUE_MAX_TOKENS
    return max(CRITIQUE_MIN_TOKENS, min(CRITIQUE_MAX_TOKENS, max_tokens // 2))


def principles_for_round(spec: Constitutional, number: int, seed: str) -> list[Principle]:
    """``all``; or ``per_round`` of them, drawn at random (seeded) or in rotation."""
    principles = spec.principles
    if spec.select == "all" or spec.per_round is None:
        return list(principles)
    size = min(spec.per_round, len(principles))
    if spec.select == "rotate":
        start = number * size
        return [principles[(start + i) % len(principles)] for i in range(size)]
    return random.Random(f"{seed}:{number}").sample(list(principles), size)


def critique_messages(
    spec: Constitutional,
    conversation: list[dict[str, Any]],
    draft: str,
    principles: list[Principle],
) -> list[dict[str, Any]]:
    """The critic's messages. The conversation and the draft are neutralised: the client
    wrote the one and steered the other, and neither may write the critic a turn."""
    template = spec.templates.critique or CRITIQUE_TEMPLATE
    request = " ".join(p.critique for p in principles)
    quoted = neutralize(draft)
    return [
        *neutralize_messages(conversation),
        {"role": "assistant", "content": quoted},
        {"role": "user", "content": template.format(response=quoted, critique_request=request)},
    ]


def revision_messages(
    spec: Constitutional,
    conversation: list[dict[str, Any]],
    draft: str,
    principles: list[Principle],
    critique: str,
) -> list[dict[str, Any]]:
    template = spec.templates.revision or REVISION_TEMPLATE
    request = " ".join(p.revision for p in principles)
    critique = neutralize(critique)
    return [
        *critique_messages(spec, conversation, draft, principles),
        {"role": "assistant", "content": critique},
        {
            "role": "user",
            "content": template.format(
                revision_request=request, critique=critique, response=neutralize(draft)
            ),
        },
    ]


def trigger_reason(
    spec: Constitutional, judgement: Judgement | None, reward_score: float | None
) -> str | None:
    """Why the draft is revised, or None when it is not."""
    if spec.trigger == "always":
        return "always"
    if spec.trigger == "flagged":
        flagged = [
            r.rail
            for r in (judgement.reports if judgement else ())
            if r.outcome in ("flag", "redact", "block")
        ]
        return f"flagged by {', '.join(flagged)}" if flagged else None
    assert spec.reward_threshold is not None
    if reward_score is not None and reward_score < spec.reward_threshold:
        return f"reward {reward_score:.3f} is below {spec.reward_threshold}"
    return None


class ConstitutionalStage:
    def __init__(self, spec: Constitutional, critic: Upstream, reward: Reward | None):
        self.spec = spec
        self.critic = critic
        self.reward = reward

    async def reward_score(self, conversation: list[dict[str, Any]], draft: str) -> float | None:
        if self.spec.trigger != "low_reward" or self.reward is None:
            return None
        [score] = await self.reward.score([Candidate(draft, tuple(conversation))])
        return score

    async def revise(
        self,
        conversation: list[dict[str, Any]],
        draft: str,
        model: str,
        reason: str,
        request_id: str,
        max_tokens: int | None,
    ) -> Outcome:
        """Run the rounds; the text returned still has to pass the output rails."""
        critic_model = self.spec.critic.model if self.spec.critic else model
        rounds = []
        spent = {"prompt_tokens": 0, "completion_tokens": 0}
        text = draft
        for number in range(self.spec.max_rounds):
            principles = principles_for_round(self.spec, number, request_id)
            critique = await self._ask(
                critique_messages(self.spec, conversation, text, principles),
                critic_model,
                request_id,
                critique_budget(max_tokens),
                spent,
            )
            revised = await self._ask(
                revision_messages(self.spec, conversation, text, principles, critique),
                critic_model,
                request_id,
                max_tokens or REVISION_MAX_TOKENS,
                spent,
            )
            round_info: dict[str, Any] = {
                "principles": [p.name for p in principles],
                "changed": revised.strip() != text.strip(),
            }
            if self.spec.show_critiques:
                round_info["critique"] = critique
            rounds.append(round_info)
            text = revised or text
        return Outcome(
            text,
            {
                "triggered": True,
                "reason": reason,
                "rounds": rounds,
                "extra_calls": 2 * len(rounds),
                "extra_usage": spent,
            },
        )

    async def _ask(
        self,
        messages: list[dict[str, Any]],
        model: str,
        request_id: str,
        max_tokens: int,
        spent: dict[str, int],
    ) -> str:
        answer = await self.critic.post_json(
            "/v1/chat/completions",
            {
                "model": model,
                "messages": messages,
                "temperature": 0,
                "max_tokens": max_tokens,
            },
            request_id,
        )
        usage = answer.get("usage") or {}
        for key in spent:
            spent[key] += int(usage.get(key) or 0)
        return str(answer["choices"][0]["message"].get("content") or "").strip()


async def judge_critiques(
    info: dict[str, Any],
    context: tuple[Any, ...],
    judge: Callable[[list[Subject]], Awaitable[list[Judgement]]],
) -> None:
    """Critiques shown under ``guard.constitutional`` are answers the client reads: the
    output rails (``judge``) judge them. One a rail stops is withheld (the verdict names
    it, not its text); one it redacts is shown redacted."""
    rounds = [
        (number, r)
        for number, r in enumerate(info.get("rounds", []))
        if isinstance(r.get("critique"), str)
    ]
    if not rounds:
        return
    subjects = [
        Subject(r["critique"], "assistant", context, f"constitutional.rounds[{n}].critique")
        for n, r in rounds
    ]
    judgements = await judge(subjects)
    for (_, round_info), judgement in zip(rounds, judgements, strict=True):
        if judgement.stops:
            round_info["critique"] = None
            round_info["critique_withheld"] = "failed" if not judgement.blocked else "blocked"
        elif judgement.redactions:
            round_info["critique"] = judgement.redacted(round_info["critique"])
