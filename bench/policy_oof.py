"""The harm and over-refusal sets as ``policies/offline.yaml`` judges a user message, from
both heads' out-of-fold scores: a row counts as flagged when the ``embedding`` head flags
it or the attack head does (either label), each at its shipped thresholds.

HARM is what ``guard train-embedding-head --scores FILE`` writes, ATTACK what
``guard train-attack-head --scores FILE`` writes. Both list each data set's rows in the
order ``guard.datasets.load`` reads them, so a set's rows are joined by position (their
subsets, which both files give, must agree row by row). The policy's ``language`` rail
flags none of these English rows. The thresholds are read from the shipped heads' JSON,
or from ``--harm-meta`` and ``--attack-meta`` for other heads; each harm row is scored
again from its ``toxic`` and ``harmful`` probabilities at those thresholds (the file's own
``score`` is at the thresholds of the head that wrote it). With ``--served`` the harm
head's rows count as the rail reads them (``served``: normalised, each second reading
too, a long text in windows and sentences), not as they trained (cut to their start and
end); the attack head's scores are already read as served.

    .venv/bin/python bench/policy_oof.py HARM ATTACK [--served]
        [--harm-meta JSON] [--attack-meta JSON]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard.components.attacks import ATTACK_HEAD  # noqa: E402
from guard.components.embedding import HEAD, head_meta_path, label_shifts  # noqa: E402
from guard.train.calibration import UNSAFE_LABELS, metrics, unsafe_score  # noqa: E402
from guard.train.embedding_head import EVAL_ONLY_SETS  # noqa: E402

SETS = (
    "harmbench",
    "advbench",
    "simplesafetytests",
    "xstest",
    "jbb_benign",
    "mitre_frr",
    "openai_moderation",
    "installed_text",
)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def scored(path: Path, served: bool, meta: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of a harm head's ``--scores`` file, as the head trained or, with
    ``served``, as the rail reads them (``served_score``, ``served``), each with its
    ``score``: the file's own, or with ``meta`` (a head's JSON) scored again from its
    ``toxic`` and ``harmful`` probabilities at that head's thresholds. The sets only
    evaluated, scored by the fold models' mean, have no served reading and keep how they
    trained: their prompts are short."""
    rows = lines(path)
    as_served = [served and r["source"] not in EVAL_ONLY_SETS for r in rows]
    if lacking := [r for r, s in zip(rows, as_served, strict=True) if s and "served" not in r]:
        raise SystemExit(
            f"{path}: a {lacking[0]['source']} row has no served reading: "
            "written before the served reading was"
        )
    if meta is None:
        scores = [
            r["served_score"] if s else r["score"] for r, s in zip(rows, as_served, strict=True)
        ]
    else:
        shifts = label_shifts(UNSAFE_LABELS, meta.get("label_thresholds", {}), meta["threshold"])
        read = [r["served"] if s else r for r, s in zip(rows, as_served, strict=True)]
        probabilities = np.array([[p[label] for label in UNSAFE_LABELS] for p in read], dtype=float)
        scores = unsafe_score(probabilities.reshape(-1, len(UNSAFE_LABELS)), shifts).tolist()
    return [{**r, "score": score} for r, score in zip(rows, scores, strict=True)]


def of_set(rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["source"] == source]


def cells(unsafe: np.ndarray, flagged: np.ndarray) -> str:
    m = metrics(unsafe, flagged)
    recall = f"{m['recall']:.3f}" if m["unsafe"] else "-"
    fpr = f"{m['fpr']:.3f}" if m["unsafe"] < m["n"] else "-"
    f1 = f"{m['f1']:.3f}" if m["unsafe"] and m["unsafe"] < m["n"] else "-"
    return f"{recall} / {fpr} / {f1}"


def table(
    harm: list[dict[str, Any]],
    attack: list[dict[str, Any]],
    threshold: float,
    attack_thresholds: dict[str, float],
) -> list[str]:
    out = [
        "| set (rows) | `embedding` head: recall / FPR / F1 | policy: recall / FPR / F1 |",
        "|---|---|---|",
    ]
    for source in SETS:
        mine, theirs = of_set(harm, source), of_set(attack, source)
        if not mine:
            out.append(f"| {source} (0) | not in the files | |")
            continue
        if [r["subset"] for r in mine] != [r["kind"] for r in theirs]:
            raise SystemExit(f"{source}: the two files do not list the same rows in order")
        unsafe = np.array([r["unsafe"] for r in mine])
        by_harm = np.array([r["score"] >= threshold for r in mine])
        by_attack = np.array(
            [any(r[label] >= bound for label, bound in attack_thresholds.items()) for r in theirs]
        )
        policy = cells(unsafe, by_harm | by_attack)
        out.append(f"| {source} ({len(mine)}) | {cells(unsafe, by_harm)} | {policy} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("harm", type=Path)
    parser.add_argument("attack", type=Path)
    parser.add_argument("--harm-meta", type=Path, default=head_meta_path(HEAD))
    parser.add_argument("--attack-meta", type=Path, default=ATTACK_HEAD.with_suffix(".json"))
    parser.add_argument("--served", action="store_true", help="the harm rows as a rail reads them")
    args = parser.parse_args(argv)
    print(
        "$ .venv/bin/python bench/policy_oof.py "
        + shlex.join(sys.argv[1:] if argv is None else argv)
    )
    harm_meta = json.loads(args.harm_meta.read_text())
    attack_thresholds = json.loads(args.attack_meta.read_text())["thresholds"]
    harm = scored(args.harm, args.served, harm_meta)
    rows = table(harm, lines(args.attack), harm_meta["threshold"], attack_thresholds)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
