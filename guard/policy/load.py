"""Reading policy and principles files into validated, frozen policies.

A policy file is YAML holding one policy (a mapping) or several (a list); every problem
is reported with file, line and field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from guard.errors import PolicyError
from guard.policy.models import Policy, Principle
from guard.yaml_errors import explain_validation_error, read_yaml

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
        raise PolicyError(explain_validation_error(path, node, exc, list[Policy], wrapped)) from exc
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
            explain_validation_error(path, parsed.node, exc, list[Principle])
        ) from exc
