"""``guard audit FILE...``: summarise audit logs.

Per policy: requests, the share that a rail blocked, statuses, p50/p99 per stage.
Per rail: how often it judged, blocked, flagged, redacted or failed. Per shadow
policy: how often it would have blocked, and how often it disagreed with the active
policy. Rotated files (``audit.log.1``...) can be given too; bad lines are counted
and skipped.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.eval.metrics import percentile


@dataclass
class _PolicyStats:
    requests: int = 0
    blocked: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def summarise(lines: list[str]) -> dict[str, Any]:
    policies: dict[str, _PolicyStats] = defaultdict(_PolicyStats)
    rails: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    shadows: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    bad = 0
    for line in lines:
        try:
            entry = json.loads(line)
            assert isinstance(entry, dict)
        except (ValueError, AssertionError):
            bad += 1
            continue
        policy = entry.get("policy") or "-"
        stats = policies[policy]
        stats.requests += 1
        stats.statuses[str(entry.get("status"))] += 1
        stats.blocked += entry.get("verdict") == "block"
        for stage, ms in (entry.get("latency_ms") or {}).items():
            stats.latencies[stage].append(float(ms))
        _count_rails(rails, policy, entry.get("verdicts") or [])
        if isinstance(shadow := entry.get("shadow"), dict) and "verdict" in shadow:
            counts = shadows[(policy, str(shadow.get("policy")))]
            counts["requests"] += 1
            would_block = shadow["verdict"] == "block"
            counts["would_block"] += would_block
            counts["disagree"] += would_block != (entry.get("verdict") == "block")
            _count_rails(rails, f"{shadow.get('policy')} (shadow)", shadow.get("verdicts") or [])
    return {
        "policies": {
            name: {
                "requests": s.requests,
                "block_rate": s.blocked / s.requests if s.requests else 0.0,
                "statuses": dict(s.statuses),
                "latency_ms": {
                    stage: {"p50": percentile(v, 50), "p99": percentile(v, 99), "count": len(v)}
                    for stage, v in sorted(s.latencies.items())
                },
            }
            for name, s in sorted(policies.items())
        },
        "rails": [
            {
                "policy": policy,
                "rail": rail,
                "stage": stage,
                "judged": sum(c.values()),
                "block_rate": c["block"] / sum(c.values()),
                **dict(c),
            }
            for (policy, rail, stage), c in sorted(rails.items())
        ],
        "shadows": [
            {
                "policy": policy,
                "shadow": shadow,
                "requests": c["requests"],
                "would_block_rate": c["would_block"] / c["requests"],
                "disagreement_rate": c["disagree"] / c["requests"],
            }
            for (policy, shadow), c in sorted(shadows.items())
        ],
        "unreadable_lines": bad,
    }


def _count_rails(
    rails: dict[tuple[str, str, str], Counter[str]], policy: str, verdicts: list[Any]
) -> None:
    for verdict in verdicts:
        if isinstance(verdict, dict):
            key = (policy, str(verdict.get("rail")), str(verdict.get("stage")))
            rails[key][str(verdict.get("outcome"))] += 1


def render(summary: dict[str, Any]) -> str:
    out = []
    for name, s in summary["policies"].items():
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items()))
        out.append(
            f"policy {name}: {s['requests']} requests, {s['block_rate']:.1%} blocked ({statuses})"
        )
        for stage, p in s["latency_ms"].items():
            out.append(
                f"  {stage:<14} p50 {p['p50']:9.1f} ms   p99 {p['p99']:9.1f} ms   n={p['count']}"
            )
    if summary["rails"]:
        out.append("rails:")
        for r in summary["rails"]:
            others = ", ".join(
                f"{k} {r[k]}" for k in ("flag", "redact", "error", "pass") if r.get(k)
            )
            out.append(
                f"  {r['policy']} / {r['rail']} ({r['stage']}): {r['judged']} judged, "
                f"{r['block_rate']:.1%} blocked" + (f"; {others}" if others else "")
            )
    for s in summary["shadows"]:
        out.append(
            f"shadow {s['shadow']} beside {s['policy']}: {s['requests']} requests, would have "
            f"blocked {s['would_block_rate']:.1%}, disagreed on {s['disagreement_rate']:.1%}"
        )
    if summary["unreadable_lines"]:
        out.append(f"{summary['unreadable_lines']} unreadable lines skipped")
    return "\n".join(out) if out else "no audit lines"


def run_audit(files: list[Path], as_json: bool) -> int:
    lines: list[str] = []
    for path in files:
        try:
            lines += [line for line in path.read_text().splitlines() if line.strip()]
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            return 2
    summary = summarise(lines)
    print(json.dumps(summary, indent=2) if as_json else render(summary))
    return 0
