"""Optimised-suffix stand-ins: a harmful request with a soup of words and symbols after it.

GCG-style attacks append a suffix found by search; every search finds another, so the
n-grams of the suffixes in the data do not carry over to the next attack's. These
suffixes are drawn here, from the MiniLM vocabulary's common words and from symbols, so
that the attack head learns what such a suffix looks like rather than which ones it saw.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

SYMBOLS = "\\{}[]()<>=*$|`'\";!?-_%#@+/~.,:^&"
PIECES_PER_SUFFIX = (12, 24)
SYMBOLS_PER_RUN = (1, 3)
CAPITALISED = 0.15
"""The share of pieces written with a capital."""
COMMON_ENTRIES = 12_000
"""BERT's WordPiece vocabulary lists its words roughly by frequency; optimised suffixes
are mostly everyday words."""

Piece = Callable[[Sequence[str], random.Random], str]


def _word(words: Sequence[str], rng: random.Random) -> str:
    return rng.choice(words)


def _symbols(words: Sequence[str], rng: random.Random) -> str:
    return "".join(rng.choice(SYMBOLS) for _ in range(rng.randint(*SYMBOLS_PER_RUN)))


def _glued_words(words: Sequence[str], rng: random.Random) -> str:
    """Two words in camel case: "lanternBeginning"."""
    return rng.choice(words) + rng.choice(words).capitalize()


def _word_and_symbol(words: Sequence[str], rng: random.Random) -> str:
    return rng.choice(words) + rng.choice(SYMBOLS)


PIECES: tuple[tuple[Piece, float], ...] = (
    (_word, 0.5),
    (_symbols, 0.3),
    (_glued_words, 0.12),
    (_word_and_symbol, 0.08),
)
"""Each kind of piece, and how often it is drawn."""


def suffix(words: Sequence[str], rng: random.Random) -> str:
    """One suffix: ``PIECES_PER_SUFFIX`` pieces drawn from ``PIECES``, some capitalised."""
    kinds = [kind for kind, _ in PIECES]
    weights = [weight for _, weight in PIECES]
    out = []
    for _ in range(rng.randint(*PIECES_PER_SUFFIX)):
        piece = rng.choices(kinds, weights)[0](words, rng)
        out.append(piece.capitalize() if rng.random() < CAPITALISED else piece)
    return " ".join(out)


def vocabulary_words(vocab: Sequence[str]) -> list[str]:
    """The common whole words of a WordPiece vocabulary, of three letters or more (no
    ``##`` pieces, no [unused] slots)."""
    return [
        token
        for token in vocab[:COMMON_ENTRIES]
        if token.isalpha() and token.isascii() and len(token) >= 3
    ]
