"""``llm_judge``: ask a chat model about a text.

As a classifier it asks a yes/no question; the score is P(yes) read from the
logprobs of the first answer token, normalised over the yes and no tokens the model
considered, not a parsed word, so it is a probability a threshold can be set on.
As a reward it asks for a rating from 1 to 9; the score is the expected rating under
the digits' probabilities. The texts quoted in either prompt are neutralised
(``guard.components.neutralize``): they cannot close ``<text>`` or the turn and answer for
the judge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from guard.components.base import Candidate, Classifier, Reward, Subject, Verdict, all_done
from guard.components.hf_reward import reward_conversation
from guard.components.neutralize import neutralize
from guard.components.specs import LLMJudgeRewardSpec, LLMJudgeSpec
from guard.protocol.messages import message_text
from guard.protocol.upstream import Upstream

SYSTEM = (
    "You are a careful content reviewer. You read a text and answer a question about it "
    "with a single word: Yes or No."
)
TEMPLATE = "{question}\n\n<text>\n{text}\n</text>\n\nAnswer with one word, Yes or No."
YES = {"yes", "y", "true"}
NO = {"no", "n", "false"}


def yes_probability(top_logprobs: Sequence[dict[str, Any]]) -> float:
    """P(yes) among the yes/no candidates of one token; ValueError if there are none."""
    yes = no = 0.0
    for candidate in top_logprobs:
        word = str(candidate.get("token", "")).strip().strip(".").lower()
        probability = math.exp(float(candidate["logprob"]))
        if word in YES:
            yes += probability
        elif word in NO:
            no += probability
    if yes + no == 0:
        raise ValueError("the judge answered neither yes nor no")
    return yes / (yes + no)


async def first_token_candidates(
    endpoint: Upstream, model: str, messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The top 20 candidates for the first token of a greedy one-token answer."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 20,
    }
    answer = await endpoint.post_json("/v1/chat/completions", body, "guard-llm-judge")
    content = answer["choices"][0]["logprobs"]["content"]
    if not content:
        raise ValueError("the judge returned no logprobs")
    return list(content[0]["top_logprobs"])


class LLMJudgeClassifier(Classifier):
    def __init__(self, spec: LLMJudgeSpec, endpoint: Upstream):
        self.spec = spec
        self.window_chars = spec.window_chars
        self.endpoint = endpoint
        self.categories = ()  # a yes/no question names none

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        # One request each: vLLM batches concurrent requests itself.
        return await all_done([self._judge(s) for s in subjects])

    async def _judge(self, subject: Subject) -> Verdict:
        prompt = TEMPLATE.format(question=self.spec.question, text=neutralize(subject.text))
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        score = yes_probability(
            await first_token_candidates(self.endpoint, self.spec.model, messages)
        )
        return Verdict(flagged=score >= self.spec.threshold, score=score)


_ROLES = ("system", "developer", "user", "assistant", "tool")
"""The role labels the rating prompt writes at the start of its conversation's lines."""
RATING_TEMPLATE = (
    "{question}\n\n<conversation>\n{conversation}\n</conversation>\n\n<answer>\n{answer}\n"
    "</answer>\n\nReply with a single digit from 1 to 9."
)


def expected_rating(top_logprobs: Sequence[dict[str, Any]]) -> float:
    """The mean rating 1..9 weighted by the probabilities of the digit tokens."""
    weights: dict[int, float] = {}
    for candidate in top_logprobs:
        token = str(candidate.get("token", "")).strip()
        if len(token) == 1 and token in "123456789":
            weights[int(token)] = weights.get(int(token), 0.0) + math.exp(
                float(candidate["logprob"])
            )
    if not weights:
        raise ValueError("the judge gave no rating from 1 to 9")
    return sum(r * p for r, p in weights.items()) / sum(weights.values())


class LLMJudgeReward(Reward):
    """``llm_judge`` as a reward: a chat model rates each answer 1 to 9."""

    def __init__(self, spec: LLMJudgeRewardSpec, endpoint: Upstream):
        self.spec = spec
        self.endpoint = endpoint

    async def score(self, candidates: Sequence[Candidate]) -> list[float]:
        return await all_done([self._rate(c) for c in candidates])

    async def _rate(self, candidate: Candidate) -> float:
        conversation = "\n".join(
            f"{m['role']}: {neutralize(message_text(m.get('content')), _ROLES)}"
            for m in reward_conversation(candidate)[:-1]
        )
        prompt = RATING_TEMPLATE.format(
            question=self.spec.question,
            conversation=conversation,
            answer=neutralize(candidate.text),
        )
        messages = [{"role": "user", "content": prompt}]
        return expected_rating(
            await first_token_candidates(self.endpoint, self.spec.model, messages)
        )
