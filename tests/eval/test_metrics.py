"""guard eval: the metrics, and the command on real shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard.cli.main import main
from guard.eval.metrics import average_precision, binary_metrics, percentile, pr_curve
from tests.conftest import write_policy


def test_binary_metrics() -> None:
    truth = [True, True, True, False, False]
    flagged = [True, True, False, True, False]
    metrics = binary_metrics(truth, flagged)
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (2, 1, 1, 1)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["false_positive_rate"] == pytest.approx(0.5)
    assert binary_metrics([False], [False])["recall"] is None


def test_average_precision_and_curve() -> None:
    assert average_precision([True, False, True], [0.9, 0.8, 0.7]) == pytest.approx(
        (1 / 2) * 1 + (1 / 2) * (2 / 3)
    )
    assert average_precision([True, True], [0.5, 0.4]) == pytest.approx(1.0)
    assert average_precision([False], [0.3]) is None
    # tied scores count together: one point at precision 1/2
    assert average_precision([True, False], [0.5, 0.5]) == pytest.approx(0.5)
    assert pr_curve([True, False, True], [0.9, 0.8, 0.7]) == [
        (0.9, 1.0, 0.5),
        (0.8, 0.5, 0.5),
        (0.7, pytest.approx(2 / 3), 1.0),
    ]


def test_percentile() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0
    assert percentile([], 50) is None


def test_eval_command_on_shared_data(tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path,
        """
name: words
models: {m: null}
output_rails: []
input_rails:
  - kind: regex
    patterns: ["(?i)\\\\b(bomb|kill|steal|weapon)"]
""",
    )
    out = tmp_path / "out"
    assert (
        main(["eval", "--policy", str(policy), "--dataset", "simplesafetytests", "--out", str(out)])
        == 0
    )
    result = json.loads((out / "words-simplesafetytests.json").read_text())
    overall = result["overall"]
    assert overall["n"] == 56 and overall["positives"] == 56
    assert 0 < overall["recall"] < 1
    assert result["rows"] == 56 and result["errors"] == {"count": 0, "rows": []}
    assert result["latency_ms"]["p50"] is not None
    assert (out / "words-simplesafetytests.png").stat().st_size > 10_000
