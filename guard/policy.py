"""Policy files: their models, loading them, and routing a request to one.

A policy file is YAML holding one policy (a mapping) or several (a list). It is
validated once, at load, into frozen models that forbid unknown keys, and every
problem is reported with file, line and field (see ``guard.policy_explain``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from guard.components.specs import AnyClassifier, AnyReward, RemoteModel
from guard.errors import ModelNotFound, PolicyError
from guard.policy_explain import explain_validation_error, read_yaml

WILDCARD = "*"


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Prune(Section):
    """Speculative-rejection style pruning of best-of-n candidates."""

    segment_tokens: int = Field(default=32, ge=1)
    keep_fraction: float = Field(default=0.5, gt=0, lt=1)
    rounds: int = Field(default=2, ge=1)


class BestOfN(Section):
    n: int = Field(ge=2, le=64)
    reward: AnyReward
    filter_unsafe: bool = False
    """Judge every candidate with the output rails first; only safe ones compete."""
    on_reward_error: Literal["first_safe", "fail"] = "first_safe"
    """When the reward fails or times out: return the first safe candidate, or 503."""
    min_temperature: float = Field(default=0.7, gt=0, le=2)
    """Candidates must differ: a request asking for less (e.g. greedy) is sampled at this."""
    prune: Prune | None = None


class Principle(Section):
    name: str
    critique: str
    revision: str


class Templates(Section):
    critique: str | None = None
    revision: str | None = None


class Constitutional(Section):
    principles: list[Principle] = []
    principles_file: str | None = None
    """A YAML list of principles, relative to the policy file."""
    trigger: Literal["always", "flagged", "low_reward"] = "flagged"
    reward: AnyReward | None = None
    reward_threshold: float | None = None
    select: Literal["all", "random", "rotate"] = "all"
    per_round: int | None = Field(default=None, ge=1)
    max_rounds: int = Field(default=1, ge=1, le=8)
    critic: RemoteModel | None = None
    """Another endpoint and model to critique with; None uses the request's upstream."""
    show_critiques: bool = True
    templates: Templates = Templates()

    @model_validator(mode="after")
    def _consistent(self) -> Constitutional:
        if not self.principles and self.principles_file is None:
            raise ValueError("give 'principles' or a 'principles_file'")
        if self.trigger == "low_reward" and (self.reward is None or self.reward_threshold is None):
            raise ValueError("trigger 'low_reward' needs both 'reward' and 'reward_threshold'")
        return self


class Streaming(Section):
    window_tokens: int = Field(default=32, ge=1)
    """Text is released only after the output rails passed a window containing it."""
    chunk_tokens: int = Field(default=16, ge=1)
    context_tokens: int = Field(default=64, ge=0)
    check_at: Literal["every_chunk", "sentence"] = "every_chunk"
    final_check: bool = True


class Refusal(Section):
    message: str = "I'm sorry, but I can't help with that."
    http_error: bool = False
    """Answer a block with HTTP 400, code content_filter, instead of a normal completion."""


class Audit(Section):
    include_text: bool = False
    """Put the prompt and the answers in this policy's audit lines (left out by default)."""


class Policy(Section):
    name: str = Field(min_length=1)
    description: str = ""
    models: dict[str, str | None] = Field(min_length=1)
    """Model name clients send -> upstream model name (null: the same name). '*' catches all."""
    input_rails: list[AnyClassifier] = []
    input_rails_mode: Literal["parallel", "sequential"] | None = None
    """parallel: generation starts with the input rails and is cancelled if one blocks.
    Unset: parallel, unless an input rail redacts (then generation must wait for it)."""
    output_rails: list[AnyClassifier] = []
    best_of_n: BestOfN | None = None
    constitutional: Constitutional | None = None
    streaming: Streaming = Streaming()
    refusal: Refusal = Refusal()
    audit: Audit = Audit()
    shadow: str | None = None
    """Another policy whose rails also judge this policy's traffic, in flag mode, off the
    response path: what it would have done goes to the metrics and the audit log."""
    keys_only: bool = False
    """Served only to API keys whose ``policy`` names it, so its model names may also
    belong to another policy (routing by key). Also fits a policy used only as a shadow."""

    @model_validator(mode="after")
    def _flagged_needs_output_rails(self) -> Policy:
        constitution = self.constitutional
        if constitution and constitution.trigger == "flagged" and not self.output_rails:
            raise ValueError(
                "constitutional trigger 'flagged' needs output_rails to flag the draft; "
                "add one, or use trigger 'always' or 'low_reward'"
            )
        return self

    @model_validator(mode="after")
    def _parallel_cannot_redact(self) -> Policy:
        if self.input_rails_mode == "parallel" and any(
            rail.action == "redact" for rail in self.input_rails
        ):
            raise ValueError(
                "input_rails_mode 'parallel' cannot be used with an input rail that redacts: "
                "the model must be sent the redacted prompt. Use 'sequential' or leave it unset."
            )
        return self

    def upstream_model(self, requested: str) -> str:
        target = self.models.get(requested, self.models.get(WILDCARD))
        return target or requested


_POLICY_LIST = TypeAdapter(list[Policy])


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    source: Path
    digest: str
    """sha256 of the file's bytes, to tell which version of a policy handled a request."""


def load_policy_file(path: Path) -> list[LoadedPolicy]:
    """Read and validate one file; raise PolicyError with every problem found in it."""
    parsed = read_yaml(path, "the file", "a policy")
    raw, node, data = parsed.raw, parsed.node, parsed.data
    as_list = data if isinstance(data, list) else [data]
    try:
        policies = _POLICY_LIST.validate_python(as_list)
    except ValidationError as exc:
        wrapped = not isinstance(data, list)
        raise PolicyError(explain_validation_error(path, node, exc, wrapped)) from exc
    digest = hashlib.sha256(raw).hexdigest()
    problems: list[str] = []
    for index, policy in enumerate(policies):
        constitution = policy.constitutional
        if constitution is None or constitution.principles_file is None:
            continue
        try:
            principles = load_principles(path.parent / constitution.principles_file)
        except PolicyError as exc:
            problems += [f"{path}: policy '{policy.name}': {p}" for p in exc.problems]
            continue
        merged = constitution.model_copy(
            update={"principles": [*constitution.principles, *principles]}
        )
        policies[index] = policy.model_copy(update={"constitutional": merged})
    if problems:
        raise PolicyError(problems)
    return [LoadedPolicy(policy, path, digest) for policy in policies]


_PRINCIPLES = TypeAdapter(list[Principle])


def load_principles(path: Path) -> list[Principle]:
    """A constitution file: a YAML list of principles (name, critique, revision)."""
    parsed = read_yaml(path, "the principles file", "a list of principles")
    try:
        return _PRINCIPLES.validate_python(parsed.data)
    except ValidationError as exc:
        raise PolicyError(
            explain_validation_error(path, parsed.node, exc, False, list[Principle])
        ) from exc


@dataclass(frozen=True)
class Route:
    policy: LoadedPolicy
    upstream_model: str


class PolicySet:
    """Every loaded policy, indexed by the model names it serves."""

    def __init__(self, loaded: list[LoadedPolicy]):
        problems: list[str] = []
        by_name: dict[str, LoadedPolicy] = {}
        policy_names: dict[str, LoadedPolicy] = {}
        for item in loaded:
            if other := policy_names.get(item.policy.name):
                problems.append(
                    f"policy name '{item.policy.name}' is used in both {other.source} "
                    f"and {item.source}; policy names must be unique"
                )
            policy_names[item.policy.name] = item
            if item.policy.keys_only:
                continue
            for model in item.policy.models:
                if other := by_name.get(model):
                    problems.append(
                        f"model '{model}' is served by policy '{other.policy.name}' "
                        f"({other.source}) and by policy '{item.policy.name}' ({item.source}); "
                        "each model name must belong to one policy"
                    )
                by_name[model] = item
        for item in loaded:
            shadow = item.policy.shadow
            if shadow is not None and (shadow == item.policy.name or shadow not in policy_names):
                problems.append(
                    f"{item.source}: policy '{item.policy.name}': shadow '{shadow}' must name "
                    f"another loaded policy ({', '.join(sorted(policy_names))})"
                )
        if not loaded:
            problems.append("no policy given: pass at least one policy file")
        if problems:
            raise PolicyError(problems)
        self.policies = loaded
        self.by_name = policy_names
        self._by_model = by_name

    @classmethod
    def from_files(cls, paths: list[Path]) -> PolicySet:
        loaded: list[LoadedPolicy] = []
        problems: list[str] = []
        for path in paths:
            try:
                loaded.extend(load_policy_file(path))
            except PolicyError as exc:
                problems.extend(exc.problems)
        if problems:
            raise PolicyError(problems)
        return cls(loaded)

    @property
    def model_names(self) -> list[str]:
        return [name for name in self._by_model if name != WILDCARD]

    @property
    def has_wildcard(self) -> bool:
        return WILDCARD in self._by_model

    def route(self, requested: str, policy: str | None = None) -> Route:
        """The policy serving ``requested``; ``policy`` (an API key's own) overrides
        routing by model name, and must itself serve the name."""
        item: LoadedPolicy | None
        names = self.model_names
        if policy is not None:
            item = self.by_name[policy]
            names = [name for name in item.policy.models if name != WILDCARD]
            if requested not in item.policy.models and WILDCARD not in item.policy.models:
                item = None
        else:
            item = self._by_model.get(requested) or self._by_model.get(WILDCARD)
        if item is None:
            raise ModelNotFound(
                f"The model '{requested}' does not exist. Models served here: "
                f"{', '.join(sorted(names)) or 'none'}.",
                param="model",
            )
        return Route(item, item.policy.upstream_model(requested))
