"""Small edits of a text that keep what it asks: the ones the harm head trains with
(``endings``, ``wrappers``, ``copies`` in ``guard.train.embedding_head``) and the ones its
cross-validation measures it with (``EDITS``)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Final


def changed_ending(text: str) -> str:
    """``text`` without its final full stops, question and exclamation marks, or with a
    full stop where it ends with none."""
    stripped = text.rstrip()
    if stripped[-1:] in (".", "?", "!"):
        return stripped.rstrip(".?!").rstrip()
    return stripped + "."


OPENERS = ("Please ", "Hi! ", "Hello, ")


def quoted(text: str) -> str:
    return f'"{text}"'


def please_first(text: str) -> str:
    return "Please " + text[:1].lower() + text[1:]


def thanks_last(text: str) -> str:
    return text.rstrip() + " Thanks!"


_LONG_WORD: Final = re.compile(r"[A-Za-z]{5,}")


def hyphens_inside(text: str) -> str:
    """``text`` with a hyphen after the second letter of each word of six letters or more:
    "in-structions", "me-thamphetamine". A model reads through it; normalisation cannot
    join it back without a dictionary ("e-mail", "self-harm" are words)."""
    return _LONG_WORD.sub(lambda m: m[0] if len(m[0]) < 6 else f"{m[0][:2]}-{m[0][2:]}", text)


def broken_words(text: str, rng: random.Random) -> str:
    """``text`` with a hyphen inside some of its words of five letters or more, each word a
    third of the time and at least one word, at a drawn place that leaves two letters or
    more on each side. (A space too, at random, taught the head that loose word pieces
    are harmful: it then flagged "lorem ipsum dolor sit amet".)"""
    words = list(_LONG_WORD.finditer(text))
    if not words:
        return text
    chosen = [word for word in words if rng.random() < 1 / 3] or [rng.choice(words)]
    out, last = [], 0
    for word in chosen:
        cut = rng.randint(word.start() + 2, word.end() - 2)
        out += [text[last:cut], "-"]
        last = cut
    return "".join(out) + text[last:]


EDITS: dict[str, Callable[[str], str]] = {
    "ending changed": changed_ending,
    "quoted": quoted,
    "Please first": please_first,
    "Thanks! last": thanks_last,
    "hyphens inside words": hyphens_inside,
}
"""Edits that change no request's meaning. The cross-validation scores each held-out row
of ``EDITED_SETS`` with each, too (``robustness`` in the head's JSON)."""
EDITED_SETS = ("harmbench", "advbench", "simplesafetytests", "jbb_harmful", "xstest", "jbb_benign")


def wrapped(text: str, draw: float, opener: str) -> str:
    """``text`` in double quotes (``draw`` under 0.25), after ``opener`` (under 0.5), or as
    it is."""
    if draw < 0.25:
        return quoted(text)
    return opener + text if draw < 0.5 else text
