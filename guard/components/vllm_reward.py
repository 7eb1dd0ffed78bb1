"""``vllm_reward``: the same reward model served by vLLM, scored through ``/pooling``.

``"use_activation": false`` asks for the raw logit, which matches the in-process
``hf_reward`` score.
"""

from __future__ import annotations

from collections.abc import Sequence

from guard.components.base import Candidate, Reward, all_done
from guard.components.hf_reward import reward_conversation
from guard.components.specs import VLLMRewardSpec
from guard.protocol.upstream import Upstream


class VLLMReward(Reward):
    def __init__(self, spec: VLLMRewardSpec, endpoint: Upstream):
        self.spec = spec
        self.endpoint = endpoint

    async def score(self, candidates: Sequence[Candidate]) -> list[float]:
        # One request per candidate; vLLM batches concurrent requests itself.
        return await all_done([self._one(c) for c in candidates])

    async def _one(self, candidate: Candidate) -> float:
        answer = await self.endpoint.post_json(
            "/pooling",
            {
                "model": self.spec.model,
                "messages": reward_conversation(candidate),
                "use_activation": False,
            },
            "guard-vllm-reward",
        )
        data = answer["data"][0]["data"]  # [logit] for a one-output model
        return float(data[0] if isinstance(data, list) else data)
