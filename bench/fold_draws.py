"""How much the attack head's thresholds move with how the folds fall.

The goal split of ``guard train-attack-head`` (shipped configuration), dealt into folds
with seeds 0 to ``--draws`` - 1: for each single draw, and for pools of consecutive
draws, the thresholds the training command's rule chooses and the `jailbreak` and
`prompt_injection` goal values at them (docs/safety.md, "Folds drawn again").

With ``--jailbreak-at T ...``, also the `jailbreak` label over every draw pooled at each
fixed threshold T: the system prompts flagged, the jailbreaks caught (docs/safety.md,
"Instructions judged a little higher").

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fold_draws.py [--draws 12] [--pools 3 6 10]
        [--jailbreak-at 0.54 0.6]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from guard.components.specs import ATTACK_LABELS  # noqa: E402
from guard.train import attack_head  # noqa: E402
from guard.train.attack_data import Config, Row, training_rows  # noqa: E402
from guard.train.embedding_head import fold_of  # noqa: E402


def report(name: str, rows: list[Row], oofs: list[np.ndarray]) -> None:
    drawn, pooled = [*rows] * len(oofs), np.concatenate(oofs)
    cells = []
    for i, label in enumerate(ATTACK_LABELS):
        threshold = attack_head.choose_threshold(drawn, pooled[:, i], label)
        goals = attack_head.GOALS[label]
        values = attack_head.goal_values(drawn, pooled[:, i], threshold, goals)
        recalls = [f"{g.dataset} {v:.3f}" for g, v in zip(goals, values, strict=True) if g.at_least]
        cells.append(f"{label} {threshold:.2f} ({', '.join(recalls)})")
    print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


AT_SETS = (
    ("prompt_injection_benign", False, "system prompts flagged"),
    ("inthewild_jailbreaks", True, "in-the-wild jailbreaks caught"),
    ("jbb_artifacts", True, "JBB artifacts caught"),
)


def at_thresholds(rows: list[Row], oofs: list[np.ndarray], thresholds: list[float]) -> None:
    label = ATTACK_LABELS.index("jailbreak")
    pooled = np.concatenate([oof[:, label] for oof in oofs])
    sources = np.array([row.example.source for row in rows] * len(oofs))
    attacks = np.array([row.labels[label] for row in rows] * len(oofs), dtype=bool)
    names = " | ".join(
        f"{title} ({(sources == name).sum() // len(oofs)})" for name, _, title in AT_SETS
    )
    print(f"\n| `jailbreak` threshold | {names} |\n|---|" + "---:|" * len(AT_SETS))
    for threshold in thresholds:
        shares = [
            np.mean(pooled[(sources == name) & (attacks == attack)] >= threshold)
            for name, attack, _ in AT_SETS
        ]
        print(f"| {threshold:.2f} | " + " | ".join(f"{share:.3f}" for share in shares) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=12)
    parser.add_argument("--pools", type=int, nargs="*", default=[3, 6, 10])
    parser.add_argument("--jailbreak-at", type=float, nargs="*", default=[])
    args = parser.parse_args()
    print("$ " + shlex.join(["python", *sys.argv]))
    torch.set_num_threads(1)
    config = Config()
    rows = training_rows(config)
    y = np.array([row.labels for row in rows])
    trains = np.array([row.trains for row in rows])
    model = attack_head.bare_model(config)
    feats = attack_head.features(model, [row.example.text for row in rows], config)
    examples = [row.example for row in rows]
    oofs = [
        attack_head.out_of_fold(
            feats, y, trains, fold_of(examples, config.folds, seed), config, lambda _: None
        )
        for seed in range(args.draws)
    ]
    print("\n| draws (seeds) | thresholds and goal recalls | |")
    print("|---|---|---|")
    for seed in range(args.draws):
        report(f"{seed}", rows, oofs[seed : seed + 1])
    for size in args.pools:
        for start in range(0, args.draws - size + 1, size):
            report(f"{start}-{start + size - 1}", rows, oofs[start : start + size])
    if args.jailbreak_at:
        at_thresholds(rows, oofs, args.jailbreak_at)


if __name__ == "__main__":
    main()
