"""bench/policy_oof.py: a row is flagged by the policy when either head flags it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.policy_oof import scored, table


def harm(source: str, subset: str, unsafe: bool, score: float) -> dict[str, object]:
    return {"source": source, "subset": subset, "unsafe": unsafe, "score": score}


def attack(source: str, kind: str, jailbreak: float, injection: float) -> dict[str, object]:
    return {"source": source, "kind": kind, "jailbreak": jailbreak, "prompt_injection": injection}


def test_either_head_flags_a_row_and_the_rows_join_in_order() -> None:
    harms = [
        harm("harmbench", "standard", True, 0.9),
        harm("harmbench", "standard", True, 0.1),
        harm("harmbench", "contextual", True, 0.2),
        harm("xstest", "homonyms", False, 0.6),
        harm("xstest", "homonyms", False, 0.1),
    ]
    attacks = [
        attack("harmbench", "standard", 0.1, 0.1),
        attack("harmbench", "standard", 0.1, 0.8),
        attack("harmbench", "contextual", 0.1, 0.1),
        attack("xstest", "homonyms", 0.1, 0.1),
        attack("xstest", "homonyms", 0.7, 0.1),
    ]
    rows = table(harms, attacks, 0.5, {"jailbreak": 0.5, "prompt_injection": 0.5})
    assert "| harmbench (3) | 0.333 / - / - | 0.667 / - / - |" in rows
    assert "| xstest (2) | - / 0.500 / - | - / 1.000 / - |" in rows
    assert "| simplesafetytests (0) | not in the files | |" in rows


def test_files_that_list_other_rows_are_refused() -> None:
    harms = [harm("harmbench", "standard", True, 0.9), harm("harmbench", "contextual", True, 0.9)]
    attacks = [
        attack("harmbench", "contextual", 0.1, 0.1),
        attack("harmbench", "standard", 0.1, 0.1),
    ]
    with pytest.raises(SystemExit, match="harmbench"):
        table(harms, attacks, 0.5, {"jailbreak": 0.5})


def test_the_served_reading_counts_the_served_score(tmp_path: Path) -> None:
    harms = [
        {**harm("harmbench", "contextual", True, 0.2), "served_score": 0.9},
        {**harm("harmbench", "standard", True, 0.9), "served_score": 0.9},
    ]
    attacks = [attack("harmbench", "contextual", 0.1, 0.1), attack("harmbench", "standard", 0, 0)]
    thresholds = {"jailbreak": 0.5, "prompt_injection": 0.5}
    assert "| harmbench (2) | 0.500 / - / - | 0.500 / - / - |" in table(
        harms, attacks, 0.5, thresholds
    )
    served = table(read(tmp_path, harms, "served_score"), attacks, 0.5, thresholds)
    assert "| harmbench (2) | 1.000 / - / - | 1.000 / - / - |" in served


def read(folder: Path, rows: list[dict[str, object]], field: str) -> list[dict[str, object]]:
    path = folder / "oof.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return scored(path, field)


def test_the_evaluated_sets_keep_their_score_and_a_trained_row_needs_the_field(
    tmp_path: Path,
) -> None:
    rows: list[dict[str, object]] = [
        {"source": "harmbench", "unsafe": True, "score": 0.9, "served_score": 0.3},
        {"source": "toxicchat_human", "unsafe": False, "score": 0.2},
    ]
    assert [r["score"] for r in read(tmp_path, rows, "served_score")] == [0.3, 0.2]
    assert [r["score"] for r in read(tmp_path, rows, "score")] == [0.9, 0.2]
    rows.append({"source": "xstest", "unsafe": False, "score": 0.4})
    with pytest.raises(SystemExit, match="xstest row has no served_score"):
        read(tmp_path, rows, "served_score")
