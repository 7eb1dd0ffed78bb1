"""``guard check``: validate policy files (and a keys file) and explain every problem."""

from __future__ import annotations

import sys
from pathlib import Path

from guard.errors import PolicyError


def check_files(files: list[Path], keys: Path | None = None) -> int:
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
