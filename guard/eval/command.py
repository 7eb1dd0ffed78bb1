"""The ``guard eval`` command: load, score, print, write JSON and PNG."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from guard import datasets
from guard.components.registry import BuildContext
from guard.errors import PolicyError
from guard.eval.runner import print_progress, report, score_examples
from guard.pipeline.runner import Pipeline, check_runnable
from guard.policy.load import load_policy_file
from guard.protocol.upstream import Upstream
from guard.settings import Settings


def run_eval(
    policy_file: Path,
    policy_name: str | None,
    dataset: str,
    out: Path,
    concurrency: int,
    limit: int | None,
    upstream_url: str | None,
) -> int:
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
    result = asyncio.run(_evaluate(loaded[0], settings, examples, concurrency, dataset))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{loaded[0].policy.name}-{Path(dataset).stem}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    from guard.eval.plots import draw

    draw(result, out / f"{stem}.png")
    print(summary(result))
    print(f"wrote {out / stem}.json and .png")
    return 0


async def _evaluate(
    loaded: Any,
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
    lines = [
        f"{result['policy']} on {result['dataset']}: {overall['n']} rows, "
        f"{overall['positives']} unsafe",
        f"  precision {show(overall['precision'])}  recall {show(overall['recall'])}  "
        f"F1 {show(overall['f1'])}  AUPRC {show(overall['auprc'])}  "
        f"FPR {show(overall['false_positive_rate'])}  flagged {show(overall['flagged_rate'])}",
        f"  latency p50 {show(result['latency_ms']['p50'])} ms  "
        f"p99 {show(result['latency_ms']['p99'])} ms  "
        f"escalated {show(result['escalated_share'])}  rail errors {result['rail_errors']}",
    ]
    for title, key in (("category", "per_category"), ("subset", "per_subset")):
        for name, metrics in result[key].items():
            lines.append(
                f"  {title} {name}: n {metrics['n']}  recall {show(metrics['recall'])}  "
                f"FPR {show(metrics['false_positive_rate'])}  "
                f"flagged {show(metrics['flagged_rate'])}"
            )
    return "\n".join(lines)
