"""How many of a probe's texts the ``attacks`` detector flags.

The default probe (``bench/data/technical_probe.json``) holds honest technical prompts
written for guard and never trained on: shell and git commands, regular expressions,
SQL, stack traces, code, LaTeX, markdown tables, configuration files, log lines,
spreadsheet formulas and chat full of emoticons. Symbols and code are what optimised
jailbreak suffixes are made of, so this is where an attack detector over-refuses first.
``--probe bench/data/persona_probe.json`` holds short jailbreak set-ups (flagged:
caught) and honest role-play requests worded like them (flagged: over-refused), written
apart from the training ones; ``--probe bench/data/rules_probe.json`` the same for
forced openings, cipher games, claimed authority and opposite-day games. Each list of
the probe is counted on its own; each text is
judged alone, through ``classify``, by the shipped head or by ``--head``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/technical_probe.py [--head FILE ...]
        [--probe FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard.components.attacks import ATTACK_HEAD, AttackClassifier  # noqa: E402
from guard.components.base import Subject  # noqa: E402
from guard.components.specs import AttacksSpec  # noqa: E402

PROBE = ROOT / "bench" / "data" / "technical_probe.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head", type=Path, nargs="+", default=[ATTACK_HEAD])
    parser.add_argument("--probe", type=Path, default=PROBE, help="JSON: lists of texts")
    args = parser.parse_args()
    lists = {k: v for k, v in json.loads(args.probe.read_text()).items() if isinstance(v, list)}
    print("$ " + shlex.join(["python", *sys.argv]))
    for head in args.head:
        detector = AttackClassifier(AttacksSpec(kind="attacks", head=str(head)))
        for name, texts in lists.items():
            verdicts = asyncio.run(detector.classify([Subject(text) for text in texts]))
            flagged = [(v, t) for v, t in zip(verdicts, texts, strict=True) if v.flagged]
            print(f"\n{head}, {name}: {len(flagged)} of {len(texts)} flagged")
            for verdict, text in flagged:
                scores = " / ".join(
                    f"{verdict.category_scores[k]:.2f}" for k in sorted(verdict.category_scores)
                )
                print(f"  {scores}  {text[:100]!r}")


if __name__ == "__main__":
    main()
