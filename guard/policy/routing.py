"""Routing a requested model name (and an API key's own policy) to the policy serving it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from guard.errors import ModelNotFound, PolicyError
from guard.policy.load import LoadedPolicy, load_policy_file
from guard.policy.models import WILDCARD


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
