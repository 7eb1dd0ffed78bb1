"""Routing a requested model name (and an API key's own policy) to the policy serving it.

A model name belongs to one policy; an exact name wins over a ``"*"`` policy. A
``"*": null`` policy forwards every other name unchanged, so it would also serve an
upstream model that another policy offers only under an alias (``demo: smollm2``)
by that model's own name, past the other policy's rails. ``PolicySet`` refuses that
combination unless the ``"*"`` policy says ``raw_names: true``. Names written out in
a policy (an exact name, or ``"*": some-model``) are taken at their word.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from guard.errors import ModelNotFound, PolicyError
from guard.policy.load import Contents, LoadedPolicy, load_policy_file
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
        problems += _raw_names_past_aliases(loaded, by_name)
        if not loaded:
            problems.append("no policy given: pass at least one policy file")
        if problems:
            raise PolicyError(problems)
        self.policies = loaded
        self.by_name = policy_names
        self._by_model = by_name

    @classmethod
    def from_files(cls, paths: list[Path], contents: Contents | None = None) -> PolicySet:
        """Load every file (``contents``: some of them, already read)."""
        loaded: list[LoadedPolicy] = []
        problems: list[str] = []
        for path in paths:
            try:
                loaded.extend(load_policy_file(path, contents))
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

    def find(self, requested: str, policy: str | None = None) -> Route | None:
        """The policy serving ``requested``, or None; ``policy`` (an API key's own)
        overrides routing by model name, and must itself serve the name."""
        item: LoadedPolicy | None
        if policy is not None:
            item = self.by_name[policy]
            if requested not in item.policy.models and WILDCARD not in item.policy.models:
                item = None
        else:
            item = self._by_model.get(requested) or self._by_model.get(WILDCARD)
        return Route(item, item.policy.upstream_model(requested)) if item else None

    def route(self, requested: str, policy: str | None = None) -> Route:
        """``find``, or ``ModelNotFound`` listing every name served (to this policy)."""
        found = self.find(requested, policy)
        if found is None:
            if policy is not None:
                names = [m for m in self.by_name[policy].policy.models if m != WILDCARD]
            else:
                names = self.model_names
            raise model_not_found(requested, names)
        return found


def model_not_found(requested: str, listed: list[str]) -> ModelNotFound:
    """404 for ``requested``, naming ``listed``: the models this caller may use."""
    return ModelNotFound(
        f"The model '{requested}' does not exist. Models served here: "
        f"{', '.join(sorted(listed)) or 'none'}.",
        param="model",
    )


def _raw_names_past_aliases(
    loaded: list[LoadedPolicy], by_model: dict[str, LoadedPolicy]
) -> list[str]:
    """The upstream models that a ``"*": null`` policy would serve by their own name
    although another policy serves them under an alias and not by that name."""
    catch_all = by_model.get(WILDCARD)
    if catch_all is None or catch_all.policy.models[WILDCARD] is not None:
        return []
    if catch_all.policy.raw_names:
        return []
    problems: list[str] = []
    for item in loaded:
        if item is catch_all or item.policy.keys_only:
            continue
        aliased: dict[str, list[str]] = {}
        for name, target in item.policy.models.items():
            if target is not None and target != name and target not in by_model:
                aliased.setdefault(target, []).append(name)
        for target, names in aliased.items():
            problems.append(
                f"policy '{item.policy.name}' ({item.source}) serves the upstream model "
                f"'{target}' as {', '.join(repr(n) for n in names)}, and policy "
                f"'{catch_all.policy.name}' ({catch_all.source}) serves every other name "
                f"unchanged (\"'*': null\"): a client sending '{target}' would get policy "
                f"'{catch_all.policy.name}' instead. Add '{target}: null' to the models of "
                f"policy '{item.policy.name}', or, if that is intended, 'raw_names: true' "
                f"to policy '{catch_all.policy.name}'"
            )
    return problems
