"""bench/operating_points.py: heads compared at equal operating points, as trained or served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.operating_points import read, table


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_served_reads_the_served_score_and_the_evaluated_sets_keep_theirs(tmp_path: Path) -> None:
    path = write(
        tmp_path / "oof.jsonl",
        [
            {"source": "harmbench", "unsafe": True, "score": 0.9, "served_score": 0.3},
            {"source": "toxicchat_human", "unsafe": False, "score": 0.2},
        ],
    )
    assert [row["score"] for row in read(path, "served_score")] == [0.3, 0.2]
    assert [row["score"] for row in read(path, "score")] == [0.9, 0.2]


def test_a_file_without_the_served_reading_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "old.jsonl", [{"source": "harmbench", "unsafe": True, "score": 0.9}])
    with pytest.raises(SystemExit, match="no served_score"):
        read(path, "served_score")


def test_the_other_sets_are_read_at_the_threshold_that_meets_the_target() -> None:
    def rows(source: str, unsafe: bool, *scores: float) -> list[dict[str, object]]:
        return [{"source": source, "unsafe": unsafe, "score": score} for score in scores]

    lines = table(
        [
            *rows("harmbench", True, *(s / 10 for s in range(1, 11))),
            *rows("simplesafetytests", True, 0.1, 0.3),
            *rows("xstest", True, 0.25),
            *rows("xstest", False, 0.15, 0.95),
            *rows("jbb_benign", False, 0.5, 0.1),
            *rows("do_not_answer", True, 0.05),
            *rows("openai_moderation", True, 0.9),
            *rows("openai_moderation", False, 0.1),
            *rows("toxicchat_human", True, 0.1),
            *rows("toxicchat_human", False, 0.9),
        ]
    )
    # recall 0.9 of the ten HarmBench scores 0.1 ... 1.0: threshold 0.2, nine caught
    cells = next(line for line in lines if line.startswith("| HarmBench recall 0.9 |"))
    assert cells.split(" | ")[1:] == [
        "0.200",
        "0.900",
        "0.500",
        "1.000",
        "0.500",
        "0.500",
        "0.000",
        "1.000",
        "0.000 |",
    ]
