"""The installed technical text the heads train on, and the text the bench measures: drawn
the same way every time, never the same files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from guard.components.attacks import ATTACK_HEAD
from guard.components.embedding import HEAD, file_sha256
from guard.train.installed_text import (
    ASKED,
    KINDS,
    TRAINING_PACKAGES,
    chunk_of,
    installed_examples,
    measured_chunks,
    measured_files,
    package_folder,
    pinned_differences,
    provenance,
    training_chunks,
    training_files,
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


def test_the_bench_never_reads_a_training_file() -> None:
    """Not the training packages' files, nor a copy of one elsewhere (a vendored package,
    a common licence): compared by path, folder name and content."""
    files = measured_files()
    drawn = measured_chunks(files, 20, 0)
    trained = training_files()
    assert drawn and trained
    folders = [folder.resolve() for name in TRAINING_PACKAGES if (folder := package_folder(name))]
    measured = {path for paths in files.values() for path in paths}
    assert not measured & set(trained)
    assert not any(path.is_relative_to(folder) for path in measured for folder in folders)
    assert not any(set(path.parts) & set(TRAINING_PACKAGES) for path in measured)
    hashes = {file_sha256(path) for path in trained}
    assert not any(file_sha256(path) in hashes for _, path, _ in drawn)


@pytest.mark.skipif(bool(pinned_differences()), reason="other versions than the shipped heads'")
def test_the_shipped_heads_read_these_chunks() -> None:
    """With the pinned packages installed, the chunks are the ones the shipped heads were
    trained on (their SHA-256 in each head's JSON)."""
    for head in (ATTACK_HEAD, HEAD):
        recorded = json.loads(head.with_suffix(".json").read_text())["training_data_sha256"]
        config = json.loads(head.with_suffix(".json").read_text())["config"]
        found = provenance(config["installed"], config["seed"])
        assert recorded["installed_text chunks"] == found["chunks"]


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
