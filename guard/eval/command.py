"""The ``guard eval`` command: load, score, print, write JSON and PNG."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from guard import datasets
from guard.components.registry import BuildContext
from guard.components.specs import ClassifierSpec
from guard.errors import PolicyError
from guard.eval.runner import print_progress, report, score_examples
from guard.pipeline.checks import check_runnable
from guard.pipeline.runner import Pipeline
from guard.policy.load import LoadedPolicy, load_policy_file
from guard.protocol.upstream import Upstream
from guard.settings import Settings

EVAL_TIME_LIMIT_S = 3600.0
"""Every rail's ``timeout_s`` and ``queue_timeout_s`` under ``guard eval``."""
ERRORS_EXIT = 3
"""The exit status when any row errored (unless ``allow_errors``)."""
SHOWN_ERROR_ROWS = 5
"""Error rows the printed summary lists; the JSON report lists them all."""


def run_eval(
    policy_file: Path,
    policy_name: str | None,
    dataset: str,
    out: Path,
    concurrency: int,
    limit: int | None,
    upstream_url: str | None,
    allow_errors: bool = False,
) -> int:
    """Measure one policy's rails on a labelled set. 0 when done, 2 on a bad policy, 3 when
    any row errored (its rails could not judge it) unless ``allow_errors``; the report is
    written either way."""
    try:
        loaded = [p for p in load_policy_file(policy_file) if policy_name in (None, p.policy.name)]
        if len(loaded) != 1:
            raise PolicyError([f"{policy_file}: name one policy with --policy-name"])
        check_runnable(loaded)
    except PolicyError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    examples = datasets.load(dataset)[:limit]
    print(
        f"eval: {len(examples)} rows of {dataset} through policy '{loaded[0].policy.name}'",
        file=sys.stderr,
    )
    settings = Settings() if upstream_url is None else Settings(upstream_url=upstream_url)
    patient = patient_policy(loaded[0])
    result = asyncio.run(_evaluate(patient, settings, examples, concurrency, dataset))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{loaded[0].policy.name}-{Path(dataset).stem}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    from guard.eval.plots import draw

    draw(result, out / f"{stem}.png")
    print(summary(result))
    print(f"wrote {out / stem}.json and .png")
    errored = result["errors"]["count"]
    if errored and not allow_errors:
        print(
            f"eval: {errored} of {result['rows']} rows errored (their rails could not judge "
            f"them; left out of the metrics); exit {ERRORS_EXIT} (--allow-errors: exit 0)",
            file=sys.stderr,
        )
        return ERRORS_EXIT
    return 0


def patient_policy(loaded: LoadedPolicy) -> LoadedPolicy:
    """``loaded`` with every rail (input, output, and escalation targets) given
    ``EVAL_TIME_LIMIT_S`` for its own work and for the wait for a busy worker.

    Evaluation is offline work: it waits for the real judgement. A time-out under eval's
    own concurrency is a fact about the machine, not about the text, and counting it
    (as a detection or as a miss) made two runs of the same set disagree. Whatever still
    fails is reported as an error row, apart from the metrics.
    """
    policy = loaded.policy
    patient = policy.model_copy(
        update={
            "input_rails": [_patient_rail(rail) for rail in policy.input_rails],
            "output_rails": [_patient_rail(rail) for rail in policy.output_rails],
        }
    )
    return dataclasses.replace(loaded, policy=patient)


def _patient_rail(spec: ClassifierSpec) -> ClassifierSpec:
    update: dict[str, Any] = {"timeout_s": EVAL_TIME_LIMIT_S, "queue_timeout_s": EVAL_TIME_LIMIT_S}
    if spec.escalate is not None:
        to = _patient_rail(spec.escalate.to)
        update["escalate"] = spec.escalate.model_copy(update={"to": to})
    return spec.model_copy(update=update)


async def _evaluate(
    loaded: LoadedPolicy,
    settings: Settings,
    examples: list[datasets.Example],
    concurrency: int,
    dataset: str,
) -> dict[str, Any]:
    upstream = Upstream.from_settings(settings)
    components = BuildContext(upstream)
    try:
        pipeline = Pipeline(loaded, upstream, components)
        started = time.perf_counter()
        scored = await score_examples(pipeline, examples, concurrency, print_progress)
        return report(dataset, pipeline.name, scored, time.perf_counter() - started)
    finally:
        await components.aclose()
        await upstream.aclose()


def summary(result: dict[str, Any]) -> str:
    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    overall = result["overall"]
    errors = result["errors"]
    lines = [
        f"{result['policy']} on {result['dataset']}: {overall['n']} rows judged, "
        f"{overall['positives']} unsafe; {errors['count']} rows errored (not in the metrics)",
        f"  precision {show(overall['precision'])}  recall {show(overall['recall'])}  "
        f"F1 {show(overall['f1'])}  AUPRC {show(overall['auprc'])}  "
        f"FPR {show(overall['false_positive_rate'])}  flagged {show(overall['flagged_rate'])}",
        f"  latency p50 {show(result['latency_ms']['p50'])} ms  "
        f"p99 {show(result['latency_ms']['p99'])} ms  "
        f"escalated {show(result['escalated_share'])}  rail errors {result['rail_errors']}",
    ]
    if result["unjudged"]:
        lines.append(
            f"  {result['unjudged']} rows judged by no rail (the policy's parts or trusted "
            "roles leave them out): counted as not flagged"
        )
    for title, key in (("category", "per_category"), ("subset", "per_subset")):
        for name, metrics in result[key].items():
            lines.append(
                f"  {title} {name}: n {metrics['n']}  recall {show(metrics['recall'])}  "
                f"FPR {show(metrics['false_positive_rate'])}  "
                f"flagged {show(metrics['flagged_rate'])}"
            )
    for row in errors["rows"][:SHOWN_ERROR_ROWS]:
        lines.append(f"  error in row {row['row']}: {'; '.join(row['errors'])}")
    if errors["count"] > SHOWN_ERROR_ROWS:
        lines.append(f"  ... and {errors['count'] - SHOWN_ERROR_ROWS} more error rows (the JSON)")
    return "\n".join(lines)
