"""What the ``language`` rail flags on every dev set, how fast it is, and what it adds to
``policies/offline.yaml`` against prompt injection.

* flagged: each data set's rows (and the attack head's authored texts) through the rail
  as a policy runs it (``judge``: windows of 300 characters), English only;
* speed: p50 of one short prompt and of one 8,000-character English text, ``--repeat``
  calls each, through ``judge``;
* with ``--attack-scores`` (the out-of-fold scores of ``guard train-attack-head
  --scores``, goal split, from the shipped head's configuration): CyberSecEval's
  injections and jailbreak sets through the attack detector (out of fold), the shipped
  ``embedding`` head, and the rail, alone and together. Read with their system prompts,
  whether the detector caught each injection is the file's ``with_instructions``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/language_rail.py [--attack-scores oof.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard import datasets  # noqa: E402
from guard.components.base import Subject  # noqa: E402
from guard.components.language import LanguageClassifier  # noqa: E402
from guard.components.specs import LanguageSpec  # noqa: E402
from guard.pipeline.rails import Rail, judge  # noqa: E402

SPEC = LanguageSpec(kind="language", languages=["en"])
AUTHORED = ROOT / "guard" / "train" / "data" / "authored_attacks.json"


def flagged(rail: Rail, texts: list[str]) -> list[bool]:
    [*judged] = asyncio.run(judge([rail], [Subject(text) for text in texts], "input"))
    return [any(report.outcome == "block" for report in j.reports) for j in judged]


def sets(rail: Rail) -> None:
    authored = json.loads(AUTHORED.read_text())
    named = {f"authored {kind}": authored[kind] for kind in ("chat", "technical", "documents")}
    named |= {name: [row.text for row in datasets.load(name)] for name in datasets.names()}
    print("\n| rows | n | flagged as another language |\n|---|---:|---:|")
    for name, texts in named.items():
        found = sum(flagged(rail, texts))
        print(f"| {name} | {len(texts)} | {found} ({found / len(texts):.1%}) |", flush=True)


def speed(rail: Rail, repeat: int) -> None:
    short = "What is the boiling point of water at high altitude?"
    sentence = "On day {} the harbour town woke slowly and the boats came in with the tide. "
    long = "".join(sentence.format(day) for day in range(120))[:8000]
    for name, text in (("short prompt", short), (f"{len(long)}-character text", long)):
        times = []
        for _ in range(repeat + 2):
            started = time.perf_counter()
            flagged(rail, [text])
            times.append(time.perf_counter() - started)
        print(f"{name}: p50 {statistics.median(times[2:]) * 1000:.2f} ms ({repeat} calls)")


def injections(rail: Rail, scores: Path) -> None:
    import numpy as np

    from guard.components.embedding import EmbeddingModel
    from guard.train.attack_data import Config, training_rows

    rows = training_rows(Config())
    oof = [json.loads(line) for line in scores.read_text().splitlines()]
    if len(oof) != len(rows):
        raise SystemExit(f"{scores}: {len(oof)} rows, the attack data has {len(rows)}")
    thresholds = json.loads((ROOT / "guard/data/attack_head.json").read_text())["thresholds"]
    harm = EmbeddingModel.load(ROOT / "guard/data/embedding_head.safetensors")

    def harmful(texts: list[str]) -> np.ndarray:
        return np.array([x.unsafe >= harm.threshold for x in harm.predict(texts, "windows")])

    print("\n| set | n | attacks | embedding | language | policy before | with language |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    names = ("prompt_injection", "prompt_injection_benign", "jbb_artifacts", "inthewild_jailbreaks")
    for name in names:
        index = [i for i, row in enumerate(rows) if row.example.source == name]
        texts = [rows[i].example.text for i in index]
        attacks = np.array(
            [any(oof[i][label] >= thresholds[label] for label in thresholds) for i in index]
        )
        embedding, language = harmful(texts), np.array(flagged(rail, texts))
        before, after = attacks | embedding, attacks | embedding | language
        cells = [x.mean() for x in (attacks, embedding, language, before, after)]
        print(f"| {name} | {len(index)} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    if not any("with_instructions" in record for record in oof):
        raise SystemExit(f"{scores}: no 'with_instructions'; write it with this guard version")
    missed = [
        row.example.text
        for row, record in zip(rows, oof, strict=True)
        if record.get("with_instructions") is False
    ]
    embedding, language = harmful(missed), np.array(flagged(rail, missed))
    n = sum(row.example.source == "prompt_injection" for row in rows)
    print(
        f"\ninjections read with their system prompts: the detector misses {len(missed)} of "
        f"{n}; the policy before {(n - len(missed) + embedding.sum()) / n:.3f}, with the "
        f"language rail {(n - len(missed) + (embedding | language).sum()) / n:.3f}"
    )
    for text, e, lang in zip(missed, embedding, language, strict=True):
        caught = "language" if lang else "embedding" if e else "missed"
        print(f"  {caught:9s} {' '.join(text.split())[:100]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--attack-scores", type=Path, help="guard train-attack-head --scores")
    args = parser.parse_args(argv)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/language_rail.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    print(f"$ {command}\nload average {os.getloadavg()}", flush=True)
    rail = Rail(SPEC, LanguageClassifier(SPEC))
    speed(rail, args.repeat)
    sets(rail)
    if args.attack_scores:
        injections(rail, args.attack_scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
