"""How many honest technical prompts the ``attacks`` detector flags.

The prompts (``bench/data/technical_probe.json``) were written for guard and are never
trained on: shell and git commands, regular expressions, SQL, stack traces, code, LaTeX,
markdown tables, configuration files, log lines, spreadsheet formulas and chat full of
emoticons. Symbols and code are what optimised jailbreak suffixes are made of, so this is
where an attack detector over-refuses first. Each text is judged alone, through
``classify``, by the shipped head or by ``--head``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/technical_probe.py [--head FILE ...]
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
    args = parser.parse_args()
    texts = json.loads(PROBE.read_text())["texts"]
    print("$ " + shlex.join(["python", *sys.argv]))
    for head in args.head:
        detector = AttackClassifier(AttacksSpec(kind="attacks", head=str(head)))
        verdicts = asyncio.run(detector.classify([Subject(text) for text in texts]))
        flagged = [(v, t) for v, t in zip(verdicts, texts, strict=True) if v.flagged]
        print(f"\n{head}: {len(flagged)} of {len(texts)} flagged")
        for verdict, text in flagged:
            scores = " / ".join(
                f"{verdict.category_scores[k]:.2f}" for k in sorted(verdict.category_scores)
            )
            print(f"  {scores}  {text[:100]!r}")


if __name__ == "__main__":
    main()
