"""What a policy asks for that this build cannot run: the server refuses to start on such
a policy rather than serve it while silently skipping a safety step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from guard.components.registry import CLASSIFIERS, REWARDS
from guard.errors import InvalidRequest, PolicyError
from guard.policy.load import LoadedPolicy
from guard.policy.models import Policy

T = TypeVar("T")


def unsupported(loaded: LoadedPolicy) -> list[str]:
    """What the policy asks for that this version of guard cannot run, in words."""
    policy = loaded.policy
    rails = [*policy.input_rails, *policy.output_rails]
    rails += [rail.escalate.to for rail in rails if rail.escalate]
    asked = [
        *(f"rail kind '{rail.kind}'" for rail in rails if rail.kind not in CLASSIFIERS),
        *(
            [f"reward kind '{policy.best_of_n.reward.kind}'"]
            if policy.best_of_n and policy.best_of_n.reward.kind not in REWARDS
            else []
        ),
        *(
            [f"reward kind '{policy.constitutional.reward.kind}'"]
            if policy.constitutional
            and policy.constitutional.reward
            and policy.constitutional.reward.kind not in REWARDS
            else []
        ),
    ]
    return [
        f"{loaded.source}: policy '{policy.name}' uses {what}, which this version of guard "
        "cannot run yet; remove it or upgrade guard"
        for what in asked
    ]


def check_runnable(policies: list[LoadedPolicy]) -> None:
    problems = [problem for loaded in policies for problem in unsupported(loaded)]
    if problems:
        raise PolicyError(problems)


def check_responses(policy: Policy, body: dict[str, Any]) -> None:
    """Refuse what ``policy`` cannot do on /v1/responses: never skip a stage."""
    stages = [
        name
        for name, stage in (
            ("best_of_n", policy.best_of_n),
            ("constitutional", policy.constitutional),
        )
        if stage is not None
    ]
    if stages:
        raise InvalidRequest(
            f"This model's policy '{policy.name}' uses {' and '.join(stages)}, which guard "
            "does not run on /v1/responses yet; use /v1/chat/completions for this model.",
            code="unsupported_on_endpoint",
        )
    refused = policy.inputs.previous_response == "refuse"
    if refused and body.get("previous_response_id") is not None:
        raise InvalidRequest(
            "This model's policy does not continue conversations the upstream stored: "
            "guard cannot see them. Send the whole conversation as 'input' instead.",
            param="previous_response_id",
            code="stored_history_refused",
        )


def built(loaded: LoadedPolicy, where: str, spec: Any, build: Callable[[Any], T]) -> T:
    """A component built from ``spec``; a failure names the policy, the place and the kind."""
    try:
        return build(spec)
    except Exception as exc:
        raise PolicyError(
            [
                f"{loaded.source}: policy '{loaded.policy.name}': {where} ({spec.kind}) "
                f"could not be built: {type(exc).__name__}: {exc}"
            ]
        ) from exc
