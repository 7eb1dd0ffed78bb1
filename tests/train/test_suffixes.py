"""Optimised-suffix stand-ins for the attack head: drawn, reproducible, and trained as
jailbreaks; technical texts after requests trained as neither."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from guard.reading import normalized_text
from guard.train.suffixes import COMMON_ENTRIES, SYMBOLS, suffix, vocabulary_words

WORDS = ["table", "river", "lamp", "seven"]
ROOT = Path(__file__).resolve().parents[2]


def test_a_suffix_is_words_and_symbols_and_repeats_with_its_seed() -> None:
    first = suffix(WORDS, random.Random(1))
    assert first == suffix(WORDS, random.Random(1))
    assert first != suffix(WORDS, random.Random(2))
    pieces = first.split(" ")
    assert 12 <= len(pieces) <= 24
    glued = {a + b for a in ["", *WORDS] for b in ["", *WORDS]}
    for piece in pieces:
        letters = "".join(ch for ch in piece.lower() if ch not in SYMBOLS)
        assert all(ch in SYMBOLS for ch in piece) or letters in glued


def test_only_common_whole_words_are_drawn() -> None:
    vocab = ["[PAD]", "[unused0]", "the", "##ing", "of", "river", "naïve", "cat", "42"]
    assert vocabulary_words(vocab) == ["the", "river", "cat"]
    rare = ["[unused0]"] * COMMON_ENTRIES + ["zeppelin"]
    assert vocabulary_words(rare) == []


def test_suffixed_requests_are_jailbreaks_and_code_after_one_is_not() -> None:
    from guard import datasets
    from guard.train.attack_data import (
        AUTHORED_ATTACKS,
        DRAWN_SUFFIX,
        SUFFIXED_SETS,
        Config,
        training_rows,
    )
    from guard.train.embedding_head import GROUP_SEPARATOR, fold_of

    if not (datasets.data_root() / "README.md").exists():
        pytest.skip("the dev data is not here")
    rows = training_rows(Config(suffixes=40))
    assert rows == training_rows(Config(suffixes=40))  # the seed decides every draw
    groups: dict[str, set[str]] = {}
    for r in rows:
        if r.example.source in SUFFIXED_SETS:
            groups.setdefault(r.example.text, set()).add(r.example.group)
    technical = {
        r.example.text: r.example.group for r in rows if r.example.source == "authored_technical"
    }
    assert set(technical) == set(json.loads(AUTHORED_ATTACKS.read_text())["technical"])
    suffixed = [r for r in rows if r.example.source == "authored_suffixed"]
    followed = [r for r in rows if r.example.source == "authored_code_after"]
    assert len(suffixed) == len(followed) == 40
    for row in suffixed + followed:
        request = max((t for t in groups if row.example.text.startswith(t + " ")), key=len)
        assert row.trained
        assert row.example.group.split(GROUP_SEPARATOR)[0] in groups[request]
    assert all(r.labels == (True, False) and r.template == DRAWN_SUFFIX for r in suffixed)
    folds = fold_of([r.example for r in rows], 5, 0)
    fold = {r.example.text: f for r, f in zip(rows, folds, strict=True)}
    for row in followed:
        assert row.labels == (False, False) and row.template == row.example.group
        request, code = row.example.group.split(GROUP_SEPARATOR)
        after = row.example.text.removeprefix(
            max((t for t in groups if row.example.text.startswith(t + " ")), key=len) + " "
        )
        assert technical[after] == code
        # No fold tests the technical text, or the request, it trained on after the other.
        assert fold[after] == fold[row.example.text]
    added = {"authored_suffixed", "authored_code_after"}
    assert not [r for r in training_rows(Config(suffixes=0)) if r.example.source in added]


def word_runs(text: str, length: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + length]) for i in range(len(words) - length + 1)}


def test_the_probes_are_never_trained_on_nor_copied() -> None:
    from guard import datasets

    technical = json.loads((ROOT / "bench/data/technical_probe.json").read_text())["texts"]
    personas = json.loads((ROOT / "bench/data/persona_probe.json").read_text())
    rules = json.loads((ROOT / "bench/data/rules_probe.json").read_text())
    written = [*technical, *personas["jailbreaks"], *personas["roleplay"]]
    written += [*rules["jailbreaks"], *rules["honest"]]
    probe = {normalized_text(t) for t in written}

    def strings(value: object) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return []

    trained = [
        s
        for path in (ROOT / "guard/train/data").glob("*.json")
        for s in strings(json.loads(path.read_text()))
    ]
    elsewhere = {normalized_text(s) for s in trained}
    # Nor reworded: no run of ten words of a probe text is in a training text, but for one
    # honest role-play two helpers wrote alike (the probe's and the training's Riddle the
    # Owl, docs/safety.md, "Short persona jailbreaks").
    runs = {run for text in trained for run in word_runs(text, 10)}
    shared = [text for text in written if word_runs(text, 10) & runs]
    assert [text[:40] for text in shared] == ["Let's play 20 Questions. You're Riddle t"]
    if (datasets.data_root() / "README.md").exists():
        elsewhere |= {normalized_text(r.text) for n in datasets.DATASETS for r in datasets.load(n)}
    assert len(probe) == 40 + 60 + 80 and not probe & elsewhere
