"""How many verdicts of the shipped heads change when their encoder computes in
bfloat16 instead of float32 (the precision they were trained and calibrated in).

Every row of every data set under the data root (or ``--sets``) is scored twice by the
``embedding`` head (read whole, in windows, as a rail reads it) and the ``attacks`` head
(each label at its shipped threshold; a row sent after an application's instructions,
as CyberSecEval's injections are, is read against them): once with the float32 encoder,
once with the bfloat16 one (``precision: bfloat16``). Printed per set: rows, verdicts
flipped (to flagged / to passed) and the largest change of a score, for each head. Last,
how far a score moves with its batch mates in each precision: XSTest's prompts judged
alone and together.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/precision.py [--sets xstest,harmbench] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard import datasets  # noqa: E402
from guard.components.attacks import ATTACK_HEAD, load_attack_model  # noqa: E402
from guard.components.embedding import HEAD, load_model  # noqa: E402
from guard.components.minilm import bfloat16_is_fast  # noqa: E402


def flips(before: list[bool], after: list[bool]) -> tuple[int, int]:
    """(passed → flagged, flagged → passed)."""
    pairs = list(zip(before, after, strict=True))
    return sum(not b and a for b, a in pairs), sum(b and not a for b, a in pairs)


def compare(texts: list[str], instructions: list[str]) -> dict[str, Any]:
    embedding = {p: load_model(HEAD.resolve(), None, p) for p in ("float32", "bfloat16")}
    attacks = {p: load_attack_model(ATTACK_HEAD.resolve(), None, p) for p in embedding}
    harm = {p: [s.unsafe for s in m.predict(texts, "windows")] for p, m in embedding.items()}
    threshold = embedding["float32"].threshold
    attack = {p: m.probabilities(texts, instructions) for p, m in attacks.items()}
    thresholds: dict[str, float] = attacks["float32"].meta["thresholds"]

    def fired(rows: list[dict[str, float]]) -> list[bool]:
        return [any(row[label] >= t for label, t in thresholds.items()) for row in rows]

    return {
        "rows": len(texts),
        "embedding_flips": flips(
            [s >= threshold for s in harm["float32"]], [s >= threshold for s in harm["bfloat16"]]
        ),
        "embedding_largest_change": max(
            abs(a - b) for a, b in zip(harm["float32"], harm["bfloat16"], strict=True)
        ),
        "attacks_flips": flips(fired(attack["float32"]), fired(attack["bfloat16"])),
        "attacks_largest_change": max(
            abs(a[label] - b[label])
            for a, b in zip(attack["float32"], attack["bfloat16"], strict=True)
            for label in thresholds
        ),
    }


def batch_mates(texts: list[str]) -> dict[str, float]:
    """Per precision, the largest change of a text's unsafe score between judging it
    alone and among the others (in batches of 32, as ``predict`` runs them)."""
    out = {}
    for precision in ("float32", "bfloat16"):
        model = load_model(HEAD.resolve(), None, precision)
        together = [s.unsafe for s in model.predict(texts, "windows")]
        alone = [model.predict([text], "windows")[0].unsafe for text in texts]
        out[precision] = max(abs(a - b) for a, b in zip(alone, together, strict=True))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", help="comma-separated data set names (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/precision.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"$ {command}", flush=True)
    if not bfloat16_is_fast():
        print("this CPU has no bfloat16 instructions: bfloat16 runs as float32; nothing to compare")
        return 1
    print(
        "\n| set | rows | `embedding` flips (to flagged / to passed) | largest change "
        "| `attacks` flips | largest change |\n|---|---:|---:|---:|---:|---:|",
        flush=True,
    )
    rows = {}
    for name in args.sets.split(",") if args.sets else datasets.names():
        examples = datasets.load(name)
        if not examples:
            continue
        texts = [example.text for example in examples]
        row = rows[name] = compare(texts, [example.instructions or "" for example in examples])
        up, down = row["embedding_flips"]
        a_up, a_down = row["attacks_flips"]
        print(
            f"| {name} | {row['rows']} | {up} / {down} | {row['embedding_largest_change']:.4f} "
            f"| {a_up} / {a_down} | {row['attacks_largest_change']:.4f} |",
            flush=True,
        )
    total = sum(r["rows"] for r in rows.values())
    changed = sum(sum(r["embedding_flips"]) for r in rows.values())
    a_changed = sum(sum(r["attacks_flips"]) for r in rows.values())
    print(f"\n{total} rows: `embedding` {changed} verdicts changed, `attacks` {a_changed}")
    mates = batch_mates([row.text for row in datasets.load("xstest")])
    print(
        "XSTest, a score alone against among its batch mates, largest change: float32 "
        f"{mates['float32']:.1e}, bfloat16 {mates['bfloat16']:.1e}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": command, "sets": rows, "batch_mates_xstest": mates}
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
