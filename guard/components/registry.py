"""Which component kinds this build can run, and building them from their specs.

A plain dict from ``kind`` to a builder. A kind that a policy may name (see
``specs``) but that has no builder here makes the server refuse that policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guard.components.base import Classifier
from guard.components.regex import RegexClassifier
from guard.components.specs import ClassifierSpec
from guard.upstream import Upstream


@dataclass
class BuildContext:
    """What builders may need; built classifiers are shared by identical specs."""

    upstream: Upstream
    built: dict[str, Classifier] = field(default_factory=dict)

    async def aclose(self) -> None:
        for classifier in self.built.values():
            await classifier.aclose()


Builder = Callable[[Any, BuildContext], Classifier]

CLASSIFIERS: dict[str, Builder] = {
    "regex": lambda spec, ctx: RegexClassifier(spec),
}


def build_classifier(spec: ClassifierSpec, ctx: BuildContext) -> Classifier:
    key = spec.model_dump_json(exclude={"name", "action", "timeout_s", "on_error"})
    if key not in ctx.built:
        ctx.built[key] = CLASSIFIERS[spec.kind](spec, ctx)
    return ctx.built[key]
