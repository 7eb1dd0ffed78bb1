"""Optimised-suffix stand-ins: a harmful request with a soup of words and symbols after it.

GCG-style attacks append a suffix found by search; every search finds another, so the
n-grams of the suffixes in the data do not carry over to the next attack's. These
suffixes are drawn here, from the MiniLM vocabulary's whole words and from symbols, so
that the attack head learns what such a suffix looks like rather than which ones it saw.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

SYMBOLS = "\\{}[]()<>=*$|`'\";!?-_%#@+/~.,:^&"

PIECES = (("word", 0.5), ("symbols", 0.3), ("glued words", 0.12), ("word and symbol", 0.08))


def suffix(words: Sequence[str], rng: random.Random) -> str:
    """One suffix of 12 to 24 pieces: words, runs of symbols, words glued together
    (``subsequentlyInsert``) and words glued to symbols (``tuple]``)."""
    kinds = [kind for kind, _ in PIECES]
    weights = [weight for _, weight in PIECES]
    out = []
    for _ in range(rng.randint(12, 24)):
        kind = rng.choices(kinds, weights)[0]
        if kind == "word":
            piece = rng.choice(words)
        elif kind == "symbols":
            piece = "".join(rng.choice(SYMBOLS) for _ in range(rng.randint(1, 3)))
        elif kind == "glued words":
            piece = rng.choice(words) + rng.choice(words).capitalize()
        else:
            piece = rng.choice(words) + rng.choice(SYMBOLS)
        out.append(piece.capitalize() if rng.random() < 0.15 else piece)
    return " ".join(out)


COMMON_ENTRIES = 12_000
"""BERT's WordPiece vocabulary lists its words roughly by frequency; optimised suffixes
are mostly everyday words."""


def vocabulary_words(vocab: Sequence[str]) -> list[str]:
    """The common whole words of a WordPiece vocabulary, of three letters or more (no
    ``##`` pieces, no [unused] slots)."""
    return [
        token
        for token in vocab[:COMMON_ENTRIES]
        if token.isalpha() and token.isascii() and len(token) >= 3
    ]
