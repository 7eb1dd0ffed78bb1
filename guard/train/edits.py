"""Small edits of a text that keep what it asks: the ones the harm head trains with
(``endings``, ``wrappers``, ``copies`` in ``guard.train.embedding_head``) and the ones its
cross-validation measures it with (``EDITS``)."""

from __future__ import annotations

from collections.abc import Callable


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


EDITS: dict[str, Callable[[str], str]] = {
    "ending changed": changed_ending,
    "quoted": quoted,
    "Please first": please_first,
    "Thanks! last": thanks_last,
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
