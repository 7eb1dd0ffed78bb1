"""The installed technical text the heads train on, and the text the bench measures: drawn
the same way every time, never the same files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from guard.train.installed_text import (
    ASKED,
    KINDS,
    TRAINING_PACKAGES,
    about,
    chunk_of,
    installed_examples,
    measured_files,
    package_folder,
    training_chunks,
)

pytestmark = pytest.mark.skipif(
    package_folder("torch") is None or package_folder("vllm") is None,
    reason="the training packages come with the CPU demo's install",
)


def test_chunks_are_drawn_the_same_way_every_time() -> None:
    first = training_chunks(60, 0)
    training_chunks.cache_clear()
    again = training_chunks(60, 0)
    assert first == again and len(first) == 60
    assert training_chunks(60, 1) != first
    assert {chunk.kind for chunk in first} <= {*KINDS.values(), "description", "licence"}
    assert all(chunk.group.startswith("installed:") for chunk in first)
    assert all(40 <= len(chunk.text) <= 4_000 for chunk in first)
    assert len({chunk.kind for chunk in first}) >= 5  # a share of each kind, not C alone


def test_every_third_example_is_asked_about() -> None:
    examples = installed_examples(30, 0)
    chunks = training_chunks(30, 0)
    for i, (example, chunk) in enumerate(zip(examples, chunks, strict=True)):
        assert not example.unsafe and example.source == "installed_text"
        assert example.group == chunk.group and example.subset == chunk.kind
        if i % 3 == 2:
            request, text = example.text.split("\n\n", 1)
            assert request in ASKED and text == chunk.text
        else:
            assert example.text == chunk.text


def test_the_bench_never_reads_a_training_file(tmp_path: Path) -> None:
    measured = {path for paths in measured_files().values() for path in paths}
    folders = [package_folder(name) for name in TRAINING_PACKAGES]
    trained = [folder for folder in folders if folder is not None]
    assert measured and trained
    assert not any(folder in path.parents for path in measured for folder in trained)
    assert not measured & {path for name in TRAINING_PACKAGES for _, path in about(name)}


def test_a_chunk_is_a_run_of_lines(tmp_path: Path) -> None:
    lines = [f"line {i} of a file that is long enough to keep" for i in range(100)]
    path = tmp_path / "module.py"
    path.write_text("\n".join(lines))
    text = chunk_of(path, random.Random(0))
    picked = text.splitlines()
    start = lines.index(picked[0])
    assert picked == lines[start : start + len(picked)] and len(picked) in (3, 8, 20, 40)
    (tmp_path / "short.py").write_text("x = 1\n")
    (tmp_path / "binary.py").write_bytes(b"\xff\xfe" * 200)
    assert chunk_of(tmp_path / "short.py", random.Random(0)) == ""
    assert chunk_of(tmp_path / "binary.py", random.Random(0)) == ""
