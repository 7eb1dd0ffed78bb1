"""Optimised-suffix stand-ins for the attack head: drawn, reproducible, and trained as
jailbreaks in their request's group."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from guard.train.suffixes import SYMBOLS, suffix, vocabulary_words

WORDS = ["table", "river", "lamp", "seven"]


def test_a_suffix_is_words_and_symbols_and_repeats_with_its_seed() -> None:
    first = suffix(WORDS, random.Random(1))
    assert first == suffix(WORDS, random.Random(1))
    assert first != suffix(WORDS, random.Random(2))
    pieces = first.split(" ")
    assert 12 <= len(pieces) <= 24
    for piece in pieces:
        letters = "".join(ch for ch in piece.lower() if ch not in SYMBOLS)
        assert all(ch in SYMBOLS for ch in piece) or letters in {
            a + b for a in ["", *WORDS] for b in ["", *WORDS]
        }


def test_only_common_whole_words_are_drawn() -> None:
    vocab = ["[PAD]", "[unused0]", "the", "##ing", "of", "river", "naïve", "cat", "42"]
    assert vocabulary_words(vocab) == ["the", "river", "cat"]


def test_suffixed_requests_are_jailbreaks_and_code_after_one_is_not() -> None:
    from guard import datasets
    from guard.train.attack_data import AUTHORED_ATTACKS, SUFFIXED_SETS, Config, training_rows

    if not (datasets.data_root() / "README.md").exists():
        pytest.skip("the dev data is not here")
    rows = training_rows(Config(suffixes=40))
    groups: dict[str, set[str]] = {}
    for r in rows:
        if r.example.source in SUFFIXED_SETS:
            groups.setdefault(r.example.text, set()).add(r.example.group)
    technical = json.loads(AUTHORED_ATTACKS.read_text())["technical"]
    for source, labels in (
        ("authored_suffixed", (True, False)),
        ("authored_code_after", (False, False)),
    ):
        added = [r for r in rows if r.example.source == source]
        assert len(added) == 40
        for row in added:
            assert row.labels == labels and row.trained
            request = max((t for t in groups if row.example.text.startswith(t + " ")), key=len)
            # In its request's group: no fold tests a request it trained on with an ending.
            assert row.example.group in groups[request] and row.template == row.example.group
            if source == "authored_code_after":
                assert row.example.text[len(request) + 1 :] in technical
    added = {"authored_suffixed", "authored_code_after"}
    assert not [r for r in training_rows(Config(suffixes=0)) if r.example.source in added]


def test_the_technical_probe_is_never_trained_on() -> None:
    from guard.train.attack_data import AUTHORED_ATTACKS

    probe = Path(__file__).resolve().parents[2] / "bench" / "data" / "technical_probe.json"
    authored = json.loads(AUTHORED_ATTACKS.read_text())
    trained = {text for texts in authored.values() if isinstance(texts, list) for text in texts}
    assert not set(json.loads(probe.read_text())["texts"]) & trained
