"""The picture ``guard eval`` draws: precision-recall curve and confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = result["overall"]
    figure, (curve, matrix) = plt.subplots(1, 2, figsize=(10, 4.2))
    points = result["pr_curve"]
    if overall["positives"] and points:
        recall = [0.0] + [r for _, _, r in points]
        precision = [points[0][1]] + [p for _, p, _ in points]
        curve.step(recall, precision, where="pre")
        auprc = overall["auprc"]
        curve.set_title(
            f"precision-recall (AUPRC {auprc:.3f})" if auprc is not None else "precision-recall"
        )
    else:
        curve.set_title("precision-recall: no positive rows")
    curve.set_xlabel("recall")
    curve.set_ylabel("precision")
    curve.set_xlim(0, 1.02)
    curve.set_ylim(0, 1.02)
    cells = [[overall["tn"], overall["fp"]], [overall["fn"], overall["tp"]]]
    matrix.imshow(cells, cmap="Blues")
    for row in range(2):
        for column in range(2):
            value = cells[row][column]
            color = "white" if value > max(max(cells)) / 2 else "black"
            matrix.text(column, row, str(value), ha="center", va="center", color=color)
    matrix.set_xticks([0, 1], ["passed", "flagged"])
    matrix.set_yticks([0, 1], ["safe", "unsafe"])
    matrix.set_xlabel("guard")
    matrix.set_ylabel("label")
    matrix.set_title("confusion matrix")
    figure.suptitle(f"{result['policy']} on {result['dataset']} ({overall['n']} rows)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
