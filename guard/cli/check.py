"""``guard check``: validate policy files (and a keys file) and explain every problem."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from guard.errors import PolicyError

if TYPE_CHECKING:
    from guard.policy.load import LoadedPolicy


def build_every_rail(loaded: list[LoadedPolicy]) -> list[str]:
    """Build each policy's rails and rewards, as ``guard serve`` does at start-up: loads the
    in-process models and sends no request. Returns every problem: each rail that could
    not be built, then (when every rail was) each reward."""
    from guard.components.registry import BuildContext
    from guard.pipeline.runner import Pipeline
    from guard.protocol.upstream import Upstream

    upstream = Upstream("http://127.0.0.1:9")  # never called
    components = BuildContext(upstream)
    problems: list[str] = []
    try:
        for item in loaded:
            try:
                Pipeline(item, upstream, components)
            except PolicyError as exc:
                problems += exc.problems
    finally:
        asyncio.run(components.aclose())
        asyncio.run(upstream.aclose())
    return problems


def check_files(files: list[Path], keys: Path | None = None, build: bool = False) -> int:
    from guard.ops.keys import load_keys
    from guard.pipeline.checks import unsupported
    from guard.policy.load import load_policy_file
    from guard.policy.routing import PolicySet

    failed = False
    loaded = []
    for path in files:
        try:
            policies = load_policy_file(path)
        except PolicyError as exc:
            failed = True
            print("\n".join(exc.problems), file=sys.stderr)
            continue
        problems = [p for item in policies for p in unsupported(item)]
        if problems:
            failed = True
            print("\n".join(problems), file=sys.stderr)
            continue
        unbuilt = build_every_rail(policies) if build else []
        if unbuilt:
            failed = True
            print("\n".join(unbuilt), file=sys.stderr)
            continue
        loaded.extend(policies)
        print(f"ok: {path} ({', '.join(item.policy.name for item in policies)})")
    if failed:
        return 1
    try:
        served = PolicySet(loaded)
    except PolicyError as exc:
        print("these files cannot be served together:\n" + "\n".join(exc.problems), file=sys.stderr)
        return 1
    if keys is not None:
        try:
            ring = load_keys(keys, None, served)
        except PolicyError as exc:
            print("\n".join(exc.problems), file=sys.stderr)
            return 1
        print(f"ok: {keys} ({len(ring.names)} keys)")
    return 0
