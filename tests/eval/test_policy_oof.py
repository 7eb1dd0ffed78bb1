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
        {**harm("harmbench", "contextual", True, 0.2), "served_score": 0.9, "served": {}},
        {**harm("harmbench", "standard", True, 0.9), "served_score": 0.9, "served": {}},
    ]
    attacks = [attack("harmbench", "contextual", 0.1, 0.1), attack("harmbench", "standard", 0, 0)]
    thresholds = {"jailbreak": 0.5, "prompt_injection": 0.5}
    assert "| harmbench (2) | 0.500 / - / - | 0.500 / - / - |" in table(
        harms, attacks, 0.5, thresholds
    )
    served = table(read(tmp_path, harms, served=True), attacks, 0.5, thresholds)
    assert "| harmbench (2) | 1.000 / - / - | 1.000 / - / - |" in served


def read(
    folder: Path,
    rows: list[dict[str, object]],
    served: bool,
    meta: dict[str, object] | None = None,
) -> list[dict[str, object]]:
    path = folder / "oof.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return scored(path, served, meta)


def test_the_evaluated_sets_keep_their_score_and_a_trained_row_needs_the_field(
    tmp_path: Path,
) -> None:
    rows: list[dict[str, object]] = [
        {"source": "harmbench", "unsafe": True, "score": 0.9, "served_score": 0.3, "served": {}},
        {"source": "toxicchat_human", "unsafe": False, "score": 0.2},
    ]
    assert [r["score"] for r in read(tmp_path, rows, served=True)] == [0.3, 0.2]
    assert [r["score"] for r in read(tmp_path, rows, served=False)] == [0.9, 0.2]
    rows.append({"source": "xstest", "unsafe": False, "score": 0.4})
    with pytest.raises(SystemExit, match="xstest row has no served reading"):
        read(tmp_path, rows, served=True)


def test_another_heads_thresholds_score_the_rows_again_from_their_labels(tmp_path: Path) -> None:
    # written by a head at 0.5 for both labels; read at toxic 0.4 / harmful 0.8
    rows: list[dict[str, object]] = [
        {
            "source": "xstest",
            "score": 0.7,
            "toxic": 0.1,
            "harmful": 0.7,
            "served": {"toxic": 0.45, "harmful": 0.1},
        },
        {
            "source": "xstest",
            "score": 0.45,
            "toxic": 0.45,
            "harmful": 0.1,
            "served": {"toxic": 0.1, "harmful": 0.85},
        },
        {"source": "toxicchat_human", "score": 0.3, "toxic": 0.3, "harmful": 0.1},
    ]
    meta: dict[str, object] = {"threshold": 0.6, "label_thresholds": {"toxic": 0.4, "harmful": 0.8}}
    trained = [r["score"] >= 0.6 for r in read(tmp_path, rows, served=False, meta=meta)]
    assert trained == [False, True, False]
    as_served = [r["score"] >= 0.6 for r in read(tmp_path, rows, served=True, meta=meta)]
    assert as_served == [True, True, False]
    # a label exactly at its own threshold lands on the shared one
    [at_bound] = read(
        tmp_path, [{"source": "xstest", "score": 0.0, "toxic": 0.4, "harmful": 0.0}], False, meta
    )
    assert at_bound["score"] == pytest.approx(0.6)
