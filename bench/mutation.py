"""Mutation testing of the safety core: do the tests fail when the code is wrong?

mutmut (a dev dependency; ``[tool.mutmut]`` in pyproject.toml) copies ``guard`` and the
tests into ``mutants/``, rewrites each function of the files it mutates into many
small variants (a ``<`` for a ``<=``, ``None`` for a value, a dropped argument...),
maps every test to the functions it calls, and runs, per mutant, the tests that call
its function. A mutant no test notices *survived*: either the tests miss a behaviour,
or the change cannot be seen from outside (docs/testing.md lists every survivor and
which it was).

This is not part of the test command: the whole set takes hours on a small machine.
The script installs nothing; it runs mutmut with the project's configuration over
``SCOPE`` (or the mutant names given, mutmut's globs), then prints killed / survived /
timeout per file, and writes the summary with every survivor's name and diff to
``bench/results/mutation-<time>.json``.

    .venv/bin/python bench/mutation.py                 # the scope of docs/testing.md
    .venv/bin/python bench/mutation.py --all           # every mutant of [tool.mutmut]
    .venv/bin/python bench/mutation.py 'guard.pipeline.rails.x__outcome*'
    .venv/bin/python bench/mutation.py --report-only   # summarize what mutants/ holds
    .venv/bin/python bench/mutation.py --rerun survived --rerun 'no tests'

Results are kept in ``mutants/`` between runs: the script gives mutmut only the mutants
of the scope not decided yet, so an interrupted run resumes; ``--rerun survived`` (and
``--rerun 'no tests'``, ``--rerun timeout``) runs those of the scope again, after new
tests. Keep ``mutants/`` after changing guard: mutmut keeps a hash of every function and
forgets only the results of the functions that changed (new tests are mapped when it
starts). A change to ``[tool.mutmut]``'s pytest arguments forgets every result.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

SCOPE = [
    # every mutant of these
    "guard.pipeline.rails.*",
    "guard.ops.reload.*",
    "guard.policy.*",
    # the functions of streaming.py that hold back, release and stop text
    "guard.pipeline.streaming.xǁChoiceGuardǁ*",
    "guard.pipeline.streaming.xǁWindowedStreamǁ_on_checked*",
    "guard.pipeline.streaming.xǁWindowedStreamǁ_release_redacted*",
    "guard.pipeline.streaming.xǁWindowedStreamǁ_start_due*",
    "guard.pipeline.streaming.xǁWindowedStreamǁ_serve*",
    "guard.pipeline.streaming.x_chunk_fields*",
    # the functions of runner.py that decide what a rail's verdict or failure does
    "guard.pipeline.runner.xǁPipelineǁ_guarded_generation*",
    "guard.pipeline.runner.xǁPipelineǁ_stop_on*",
    "guard.pipeline.runner.xǁPipelineǁ_refuses*",
    "guard.pipeline.runner.xǁPipelineǁ_judge_output*",
    "guard.pipeline.runner.xǁPipelineǁ_judge_choices*",
    "guard.pipeline.runner.xǁPipelineǁ_stream_judge*",
    # the error a fail-closed rail's failure answers (in runner.py until 700d8eb)
    "guard.pipeline.context.x_rail_failure*",
]
"""What docs/testing.md reports on: the issue's list, less what one hour on two cores
cannot run (the rest of streaming.py and runner.py)."""

STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "caught by type check",
    None: "not checked",
}


def mutmut_command() -> Path:
    return Path(sys.executable).parent / "mutmut"


def mutant_results() -> dict[str, dict[str, Any]]:
    """Every mutant mutmut generated, by name: its file and status."""
    found: dict[str, dict[str, Any]] = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        source = str(meta.relative_to(ROOT / "mutants")).removesuffix(".meta")
        data = json.loads(meta.read_text())
        for name, code in data["exit_code_by_key"].items():
            status = STATUS.get(code, "suspicious")
            found[name] = {"file": source, "status": status, "exit_code": code}
    return found


def selected(names: list[str], patterns: list[str]) -> list[str]:
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def diff_of(name: str) -> list[str]:
    """The lines a mutant changes (``mutmut show``, in this process: much faster)."""
    from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=find_mutant(name).path)
    return [
        line
        for line in diff.splitlines()
        if line[:1] in "-+" and not line.startswith(("---", "+++"))
    ]


def run_mutmut(names: list[str], max_children: int) -> tuple[list[str], int]:
    command = [str(mutmut_command()), "run", "--max-children", str(max_children), *names]
    # mutants/ holds the package mutmut imports; an editable install or PYTHONPATH must not
    # put the unmutated one first (mutmut drops the working directory from sys.path).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    print("$", shlex.join(command), flush=True)
    return command, subprocess.run(command, cwd=ROOT, env=env).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", help="mutant names or globs, run again if decided (default: SCOPE)"
    )
    parser.add_argument("--all", action="store_true", help="every mutant of [tool.mutmut]")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="run nothing; summarize")
    parser.add_argument(
        "--rerun",
        action="append",
        default=[],
        metavar="STATUS",
        help="run the scope's mutants of this status again ('survived', 'no tests', ...)",
    )
    args = parser.parse_args()
    os.chdir(ROOT)  # mutmut reads its configuration and mutants/ from here

    patterns = args.names or (["*"] if args.all else SCOPE)
    load_before = os.getloadavg()
    started = time.time()
    command: list[str] = []
    returncode = 0
    if not args.report_only:
        # mutmut runs every mutant it is given by name again: give it the undecided ones
        # (all of them on a first run, when mutants/ does not exist yet).
        known = mutant_results()
        wanted = set(args.rerun) or {"not checked"}
        in_scope = selected(list(known), patterns)
        to_run = [n for n in in_scope if known[n]["status"] in wanted] if known else patterns
        # a pattern no known mutant matches (a file just added to [tool.mutmut]): mutmut
        # generates its mutants when it starts, so give it the pattern itself
        to_run += [p for p in patterns if known and not selected(list(known), [p])]
        if args.names and not args.rerun:
            to_run = args.names  # named: run them, decided or not
        if to_run:
            command, returncode = run_mutmut(to_run, args.max_children)
    wall_s = time.time() - started

    results = mutant_results()
    names = selected(list(results), patterns)
    per_file: dict[str, Counter[str]] = {}
    for name in names:
        per_file.setdefault(results[name]["file"], Counter())[results[name]["status"]] += 1
    columns = ["killed", "survived", "timeout", "no tests", "not checked"]
    print(f"\n{'file':36} {'mutants':>8} " + " ".join(f"{c:>11}" for c in columns))
    total: Counter[str] = Counter()
    for source, counts in sorted(per_file.items()):
        total += counts
        cells = " ".join(f"{counts[c]:>11}" for c in columns)
        print(f"{source:36} {sum(counts.values()):>8} {cells}")
    print(f"{'total':36} {sum(total.values()):>8} " + " ".join(f"{total[c]:>11}" for c in columns))
    survivors = [n for n in names if results[n]["status"] == "survived"]
    print(f"\n{len(survivors)} survivors:")
    for name in survivors:
        print("  ", name)
    print(
        f"\nwall {wall_s:.0f} s; load average {load_before[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; {os.cpu_count()} CPUs"
    )

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"mutation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    summary = {
        "command": shlex.join(command) if command else None,
        "patterns": patterns,
        "returncode": returncode,
        "wall_s": round(wall_s),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "per_file": {source: dict(counts) for source, counts in per_file.items()},
        "total": dict(total),
        "survivors": {name: diff_of(name) for name in survivors},
    }
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"written: {out.relative_to(ROOT)}")
    sys.exit(returncode)


if __name__ == "__main__":
    main()
