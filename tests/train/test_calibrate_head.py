"""``guard calibrate-embedding-head``: a head's thresholds chosen again from the scores
files its training wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guard.cli.main import main as guard_main
from tests.train.test_embedding_head import goal_rows

pytest.importorskip("torch")


def write_draws(folder: Path) -> tuple[list[Path], Any]:
    """Two draws' scores files as training writes them (``calibration(scores_out=...)``),
    the second reading XSTest's safe prompts surer; and their probabilities pooled."""
    import numpy as np

    from guard.datasets.readers import Example
    from guard.train.calibration import LABELS, calibration

    rows, first = goal_rows()
    second = first.copy()
    second[30:40, 1] = 0.75
    never = [Example("never trained", True, source="toxicchat_human")]
    for name, draw in (("one", first), ("two", second)):
        held = np.full((1, len(LABELS)), 0.9 if name == "one" else 0.7)
        calibration(rows, draw, never, held, 5, folder / f"{name}.jsonl", as_served=draw)
    return [folder / "one.jsonl", folder / "two.jsonl"], np.concatenate([first, second])


def head_json(folder: Path) -> Path:
    meta = {
        "threshold": 0.5,
        "label_thresholds": {"toxic": 0.5, "harmful": 0.5},
        "cv": {"folds": 5, "per_dataset": {}, "as_served_reading": {"long_texts": "windows"}},
        "robustness": {"as written": {}},
        "seconds": {"total": 1.0},
    }
    path = folder / "head.json"
    path.write_text(json.dumps(meta))
    return path


def test_calibrating_again_pools_the_draws_files_as_training_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from guard.train.calibration import calibration

    files, pooled = write_draws(tmp_path)
    head = head_json(tmp_path)
    rows = goal_rows()[0]
    out = tmp_path / "again.jsonl"

    weights = tmp_path / "head.safetensors"
    arguments = [*map(str, files), "--head", str(weights), "--scores-out", str(out)]
    code = guard_main(["calibrate-embedding-head", *arguments])

    assert code == 0
    meta = json.loads(head.read_text())
    expected = calibration(rows * 2, pooled, [], pooled[:0], 5, first=len(rows))
    assert meta["label_thresholds"] == expected["label_thresholds"]
    assert meta["label_thresholds"]["harmful"] > 0.75  # the second draw's safe prompts
    assert meta["threshold"] == expected["threshold"]
    assert meta["goals"] == expected["goals"]
    assert meta["cv"]["draws"] == 2 and meta["cv"]["folds"] == 5
    assert meta["cv"]["per_dataset"]["xstest"]["n"] == 20  # each row once
    assert meta["cv"]["per_dataset"]["toxicchat_human"]["recall"] == 1.0  # the mean 0.8
    assert meta["cv"]["as_served_reading"]["sentence_min_words"] >= 1
    before = {"threshold": 0.5, "label_thresholds": {"toxic": 0.5, "harmful": 0.5}}
    assert meta["robustness_at"] == before
    assert meta["seconds"] == {"total": 1.0}
    assert f"threshold {meta['threshold']}" in capsys.readouterr().out
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(again) == len(rows) + 1 and (tmp_path / "again.draw1.jsonl").exists()
    assert again[-1]["toxic"] == 0.8  # the never-trained row: the two files' mean


def test_files_of_other_rows_or_without_the_served_reading_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, _ = write_draws(tmp_path)
    head = head_json(tmp_path)
    before = head.read_text()
    lines = files[1].read_text().splitlines()
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join([lines[1], lines[0], *lines[2:]]))
    unserved = tmp_path / "unserved.jsonl"
    unserved.write_text(
        "\n".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "served"})
                  for line in lines)
    )  # fmt: skip
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cases = {
        shuffled: "does not list the rows of",
        unserved: "has no reading as served",
        tmp_path / "head.json": "is not a --scores file",
        empty: "has no trained rows",
        tmp_path / "missing.jsonl": "No such file",
        files[0]: "given twice",
    }

    for second, message in cases.items():
        code = guard_main(
            ["calibrate-embedding-head", str(files[0]), str(second), "--head", str(head)]
        )
        assert code == 2
        assert message in capsys.readouterr().err
    assert head.read_text() == before
    head.write_text(json.dumps({"threshold": 0.5}))  # trained with --no-cv
    assert guard_main(["calibrate-embedding-head", str(files[0]), "--head", str(head)]) == 2
    assert "no cross-validation to choose again" in capsys.readouterr().err


def test_misses_are_written_with_the_texts_the_head_trained_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scores files carry no text: ``--misses`` reads the rows again from the data
    and the head's recorded configuration, and refuses rows that do not match."""
    from dataclasses import asdict

    import numpy as np

    from guard import datasets
    from guard.train.calibration import LABELS, calibration
    from guard.train.embedding_head import EVAL_ONLY_SETS, Config, training_rows

    if not (datasets.data_root() / "README.md").exists():
        pytest.skip("needs the dev data")
    rows = training_rows(Config())
    never = [row for name in EVAL_ONLY_SETS for row in datasets.load(name)]
    p = np.full((len(rows), len(LABELS)), 0.05)
    p[[row.unsafe for row in rows], 1] = 0.95
    missed = next(i for i, row in enumerate(rows) if row.unsafe and row.source == "harmbench")
    p[missed, 1] = 0.05
    scores = tmp_path / "oof.jsonl"
    calibration(rows, p, never, np.full((len(never), len(LABELS)), 0.05), 5, scores, as_served=p)
    meta = {"config": asdict(Config()), "threshold": 0.5, "label_thresholds": {}}
    meta["cv"] = {"folds": 5}
    head = tmp_path / "head.json"
    head.write_text(json.dumps(meta))
    misses = tmp_path / "misses.md"
    arguments = ["calibrate-embedding-head", str(scores), "--head", str(head), "--misses"]

    assert guard_main([*arguments, str(misses)]) == 0
    report = misses.read_text()
    assert "### harmbench (1 of " in report
    assert " ".join(rows[missed].text.split())[:100] in report
    head.write_text(json.dumps({**meta, "config": {**meta["config"], "installed": 10}}))
    assert guard_main([*arguments, str(tmp_path / "other.md")]) == 2
    assert "other rows than the scores files" in capsys.readouterr().err
    assert not (tmp_path / "other.md").exists()
