"""Reading policy and principles files into validated, frozen policies.

A policy file is YAML holding one policy (a mapping) or several (a list); every problem
is reported with file, line and field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from guard.errors import PolicyError
from guard.policy.models import Policy, Principle
from guard.yaml_errors import explain_validation_error, read_yaml

_POLICY_LIST = TypeAdapter(list[Policy])

Contents = Mapping[Path, bytes]
"""Files already read, by path: a reload loads exactly the bytes it saw settle."""


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    source: Path
    digest: str
    """sha256 of the file's bytes, to tell which version of a policy handled a request."""
    principles_file: Path | None = None
    """The constitution file this policy read (a reload watches it too)."""


def load_policy_file(path: Path, contents: Contents | None = None) -> list[LoadedPolicy]:
    """Read and validate one file; raise PolicyError with every problem found in it.
    ``contents``: this file, or its principles files, already read."""
    contents = contents or {}
    parsed = read_yaml(path, "the file", "a policy", contents.get(path))
    raw, node, data = parsed.raw, parsed.node, parsed.data
    as_list = data if isinstance(data, list) else [data]
    try:
        policies = _POLICY_LIST.validate_python(as_list)
    except ValidationError as exc:
        wrapped = not isinstance(data, list)
        raise PolicyError(explain_validation_error(path, node, exc, list[Policy], wrapped)) from exc
    digest = hashlib.sha256(raw).hexdigest()
    problems: list[str] = []
    loaded: list[LoadedPolicy] = []
    for policy in policies:
        constitution = policy.constitutional
        if constitution is None or constitution.principles_file is None:
            loaded.append(LoadedPolicy(policy, path, digest))
            continue
        principles_path = path.parent / constitution.principles_file
        try:
            principles = load_principles(principles_path, contents.get(principles_path))
        except PolicyError as exc:
            problems += [f"{path}: policy '{policy.name}': {p}" for p in exc.problems]
            continue
        merged = constitution.model_copy(
            update={"principles": [*constitution.principles, *principles]}
        )
        merged_policy = policy.model_copy(update={"constitutional": merged})
        loaded.append(LoadedPolicy(merged_policy, path, digest, principles_path))
    if problems:
        raise PolicyError(problems)
    return loaded


_PRINCIPLES = TypeAdapter(list[Principle])


def load_principles(path: Path, raw: bytes | None = None) -> list[Principle]:
    """A constitution file: a YAML list of principles (name, critique, revision)."""
    parsed = read_yaml(path, "the principles file", "a list of principles", raw)
    try:
        return _PRINCIPLES.validate_python(parsed.data)
    except ValidationError as exc:
        raise PolicyError(
            explain_validation_error(path, parsed.node, exc, list[Principle])
        ) from exc
