"""Letters written with no space between words, parted into words.

Codes that spell letter by letter (places in the alphabet, Morse, spelling alphabets)
often leave the spaces out: "howdoimakeabomb" is still "how do i make a bomb" to a
capable model, while WordPiece cuts it into pieces that mean little. ``segmented`` parts
a run of letters into the words of least cost in all: a common English word ("a" and
"i" too) costs 1, another whole word of the packaged MiniLM's vocabulary 2 (3 when it
has three letters or fewer: "ak", "ea" and "mph" are words there too), a letter that is
neither 4.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Final

from guard.reading.joined import vocabulary
from guard.reading.rotated import COMMON_WORDS

_COMMON: Final = COMMON_WORDS | {"a", "i"}
_COMMON_COST: Final = 1
_WORD_COST: Final = 2
_SHORT_WORD_COST: Final = 3
_SHORT: Final = 3
_LETTER_COST: Final = 4
_LETTERS_RE: Final = re.compile("[a-z]+")
MOST_LETTERS: Final = 400
"""Longer runs stay as written: parting them costs more than a glance."""


@cache
def _priced() -> tuple[dict[str, int], frozenset[str]]:
    """Each word's cost, and every start of a word (so that a search stops where no word
    goes on)."""
    costs = {word: _WORD_COST if len(word) > _SHORT else _SHORT_WORD_COST for word in vocabulary()}
    costs.update(dict.fromkeys(_COMMON, _COMMON_COST))
    starts = frozenset(word[:n] for word in costs for n in range(1, len(word) + 1))
    return costs, starts


def segmented(letters: str) -> str:
    """``letters`` (lower case, no spaces) parted into words by spaces; as they are when
    longer than ``MOST_LETTERS``."""
    if len(letters) > MOST_LETTERS:
        return letters
    costs, starts = _priced()
    # per end: (least cost up to it, start of its last word); a lone letter costs the most
    best = [(0, 0)] + [(_LETTER_COST * end, end - 1) for end in range(1, len(letters) + 1)]
    for start in range(len(letters)):
        so_far = best[start][0]
        if so_far + _LETTER_COST < best[start + 1][0]:
            best[start + 1] = (so_far + _LETTER_COST, start)
        for end in range(start + 1, len(letters) + 1):
            piece = letters[start:end]
            if piece not in starts:
                break
            cost = costs.get(piece)
            if cost is not None and (so_far + cost, start) < best[end]:
                best[end] = (so_far + cost, start)
    parts = []
    end = len(letters)
    while end:
        start = best[end][1]
        parts.append(letters[start:end])
        end = start
    return " ".join(reversed(parts))


def segmented_runs(text: str) -> str:
    """``text`` with each of its runs of lower-case letters ``segmented``: what comes
    between them (digits, marks) stays."""
    return _LETTERS_RE.sub(lambda run: segmented(run.group()), text)


def word_breaks(gaps: list[str]) -> list[bool]:
    """Which gaps between the letters of a code that spells letter by letter part words:
    a ``/``, a ``|`` or a line break; a space where letters are joined by ``-``; a space
    wider than the narrowest between two letters."""
    marked = [bool(set(gap) & set("/|\n")) for gap in gaps]
    unmarked = [gap for gap, m in zip(gaps, marked, strict=True) if not m]
    if any("-" in gap for gap in unmarked) and any("-" not in gap for gap in unmarked):
        return [m or "-" not in gap for gap, m in zip(gaps, marked, strict=True)]
    narrowest = min((len(gap) for gap in unmarked if gap.isspace()), default=0)
    wider = [gap.isspace() and len(gap) > narrowest for gap in gaps]
    return [m or w for m, w in zip(marked, wider, strict=True)]


def spelled_words(letters: list[str], breaks: list[bool]) -> str:
    """Letters spelled one by one as words: parted at ``breaks`` (one per gap between
    two letters), or, with no break at all, by ``segmented``."""
    words = [letters[0]]
    for part, letter in zip(breaks, letters[1:], strict=True):
        if part:
            words.append("")
        words[-1] += letter
    return " ".join(words) if len(words) > 1 else segmented(words[0])


def reads_as_words(text: str) -> bool:
    """Whether ``text`` holds two different common English words or more, or is all
    common words and words of the vocabulary of four letters or more: a message, not a
    list of letters ("abc abc abc")."""
    found = text.split()
    if len(set(found) & COMMON_WORDS) >= 2:
        return True
    words = vocabulary()
    return all(word in _COMMON or (len(word) > _SHORT and word in words) for word in found)
