"""``llm_judge``: ask a chat model a yes/no question about a text.

The score is P(yes) read from the logprobs of the first answer token, normalised
over the yes and no tokens the model considered, not a parsed word: so it is a
probability a threshold can be set on.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from guard.components.base import Classifier, Subject, Verdict
from guard.components.specs import LLMJudgeSpec
from guard.upstream import Upstream

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


class LLMJudgeClassifier(Classifier):
    def __init__(self, spec: LLMJudgeSpec, endpoint: Upstream):
        self.spec = spec
        self.endpoint = endpoint

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        # One request each: vLLM batches concurrent requests itself.
        return list(await asyncio.gather(*(self._judge(s) for s in subjects)))

    async def _judge(self, subject: Subject) -> Verdict:
        body = {
            "model": self.spec.model,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {
                    "role": "user",
                    "content": TEMPLATE.format(question=self.spec.question, text=subject.text),
                },
            ],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 20,
        }
        answer = await self.endpoint.post_json("/v1/chat/completions", body, "guard-llm-judge")
        content = answer["choices"][0]["logprobs"]["content"]
        if not content:
            raise ValueError("the judge returned no logprobs")
        score = yes_probability(content[0]["top_logprobs"])
        return Verdict(flagged=score >= self.spec.threshold, score=score)
