"""What one request carries through a policy's stages: its verdicts, what best-of-n and
critique did, its trace; and how a rail that could not judge is answered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from guard.errors import GuardError, RailFailed, RailsOverloaded
from guard.pipeline.inputs import InputPlan
from guard.pipeline.rails import SEVERITY, Judgement, Outcome, Stage
from guard.pipeline.trace import Trace


@dataclass
class RequestContext:
    request_id: str
    upstream_model: str
    requested_model: str = ""
    judgements: list[tuple[Stage, Judgement]] = field(default_factory=list)
    best_of_n: dict[str, Any] | None = None
    winner_judgements: list[Judgement] | None = None
    """Output-rail judgements of the chosen candidates, when best-of-n already made them."""
    constitutional: dict[str, Any] | None = None
    input_plan: InputPlan | None = None
    """What the input rails read (and what they let through unjudged), once they ran."""
    input_judgements: list[Judgement] = field(default_factory=list)
    logprobs_dropped: list[int] = field(default_factory=list)
    """Choices whose logprobs were dropped: a redaction changed their text."""
    stream_checks: int = 0
    """How many times output rails judged a streamed answer (only non-passing ones are kept)."""
    trace: Trace = field(default_factory=Trace)
    """Stage timings (and answers, when asked) for metrics and the audit log."""

    def extra_usage(self) -> dict[str, int]:
        """Tokens guard spent beyond the answer's own usage: critiques and revisions."""
        infos = []
        if self.constitutional is not None:
            infos = self.constitutional.get("choices", [self.constitutional])
        spent = {"prompt_tokens": 0, "completion_tokens": 0}
        for info in infos:
            for key, value in (info.get("extra_usage") or {}).items():
                spent[key] = spent.get(key, 0) + int(value)
        return spent

    @property
    def verdict(self) -> str:
        """The most severe outcome of every rail that ran: the ``x-guard-verdict`` header."""
        outcomes = [j.outcome for _, j in self.judgements]
        return max(outcomes, key=SEVERITY.__getitem__, default="pass")


class Blocked(Exception):
    """Internal signal: a rail blocked; the caller answers with the refusal."""


def rail_failure(judgement: Judgement, guard: dict[str, Any]) -> GuardError:
    """The error for a text a fail-closed rail could not judge: 503, with Retry-After
    when the cause was load. ``guard`` goes in the error body, as for a block."""
    closed = [r for r in judgement.reports if r.fail_closed]
    names = ", ".join(sorted({f"'{r.rail}'" for r in closed}))
    if judgement.overloaded:
        return RailsOverloaded(
            f"The rail {names} is overloaded and could not judge this request in time; "
            "retry later.",
            guard,
        )
    reasons = "; ".join(sorted({f"{r.rail}: {r.error}" for r in closed}))
    return RailFailed(
        f"The rail {names} could not judge this request ({reasons}), and this model's "
        "policy does not serve what it cannot judge.",
        guard,
    )


def note_judgements(span: Span, judgements: list[Judgement]) -> None:
    """A rails span's attributes: how many texts were judged, each rail's most severe
    outcome, and the stage's. Names and outcomes only: never the text."""
    if not span.is_recording():
        return
    worst: dict[str, Outcome] = {}
    for report in (r for j in judgements for r in j.reports):
        seen = worst.get(report.rail, "pass")
        worst[report.rail] = max(seen, report.outcome, key=SEVERITY.__getitem__)
    span.set_attributes(
        {
            "guard.texts": len(judgements),
            "guard.rails": list(worst),
            "guard.rail_outcomes": list(worst.values()),
            "guard.outcome": max(worst.values(), key=SEVERITY.__getitem__, default="pass"),
        }
    )
