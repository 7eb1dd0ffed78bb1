"""Which component kinds this build can run, and building them from their specs.

A plain dict from ``kind`` to a builder. A kind that a policy may name (see
``specs``) but that has no builder here makes the server refuse that policy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guard.components.attacks import AttackClassifier
from guard.components.base import Classifier, Reward
from guard.components.embedding import EmbeddingClassifier
from guard.components.embedding_reward import EmbeddingReward
from guard.components.hf_classifier import HFClassifier
from guard.components.hf_reward import HFReward
from guard.components.language import LanguageClassifier
from guard.components.llama_guard import LlamaGuardClassifier
from guard.components.llm_judge import LLMJudgeClassifier, LLMJudgeReward
from guard.components.regex import RegexClassifier
from guard.components.specs import ClassifierSpec, RemoteModel, RewardSpec
from guard.components.vllm_classify import VLLMClassifier
from guard.components.vllm_reward import VLLMReward
from guard.protocol.upstream import Upstream


@dataclass
class BuildContext:
    """What builders may need; built classifiers are shared by identical specs."""

    upstream: Upstream
    built: dict[str, Classifier] = field(default_factory=dict)
    built_rewards: dict[str, Reward] = field(default_factory=dict)
    endpoints: dict[str, Upstream] = field(default_factory=dict)

    def endpoint(self, spec: RemoteModel) -> Upstream:
        """The server a remote component calls: its own ``base_url``, or guard's upstream."""
        if spec.base_url is None:
            return self.upstream
        if spec.base_url not in self.endpoints:
            api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
            self.endpoints[spec.base_url] = Upstream(
                spec.base_url, api_key, name="the model endpoint"
            )
        return self.endpoints[spec.base_url]

    async def aclose(self) -> None:
        for classifier in self.built.values():
            await classifier.aclose()
        for reward in self.built_rewards.values():
            await reward.aclose()
        for endpoint in self.endpoints.values():
            await endpoint.aclose()


Builder = Callable[[Any, BuildContext], Classifier]

CLASSIFIERS: dict[str, Builder] = {
    "regex": lambda spec, ctx: RegexClassifier(spec),
    "llm_judge": lambda spec, ctx: LLMJudgeClassifier(spec, ctx.endpoint(spec)),
    "llama_guard": lambda spec, ctx: LlamaGuardClassifier(spec, ctx.endpoint(spec)),
    "vllm_classify": lambda spec, ctx: VLLMClassifier(spec, ctx.endpoint(spec)),
    "hf_classifier": lambda spec, ctx: HFClassifier(spec),
    "embedding": lambda spec, ctx: EmbeddingClassifier(spec),
    "attacks": lambda spec, ctx: AttackClassifier(spec),
    "language": lambda spec, ctx: LanguageClassifier(spec),
}


REWARDS: dict[str, Callable[[Any, BuildContext], Reward]] = {
    "hf_reward": lambda spec, ctx: HFReward(spec),
    "vllm_reward": lambda spec, ctx: VLLMReward(spec, ctx.endpoint(spec)),
    "llm_judge": lambda spec, ctx: LLMJudgeReward(spec, ctx.endpoint(spec)),
    "embedding_reward": lambda spec, ctx: EmbeddingReward(spec),
}


def build_reward(spec: RewardSpec, ctx: BuildContext) -> Reward:
    key = "reward:" + spec.model_dump_json(exclude={"name", "timeout_s"})
    if key not in ctx.built_rewards:
        ctx.built_rewards[key] = REWARDS[spec.kind](spec, ctx)
    return ctx.built_rewards[key]


def build_classifier(spec: ClassifierSpec, ctx: BuildContext) -> Classifier:
    key = spec.model_dump_json(exclude={"name", "action", "timeout_s", "on_error", "escalate"})
    if key not in ctx.built:
        ctx.built[key] = CLASSIFIERS[spec.kind](spec, ctx)
    return ctx.built[key]
