"""Pig Latin, read as English: a second reading, judged beside the text.

A capable model reads "erewhay oesday ethay useryay urrentlycay ivelay?" as "where does
the user currently live?"; a classifier reads soup. In Pig Latin a word that starts with
consonants moves them to its end and adds "ay" ("the" is "ethay"), and a word that
starts with a vowel adds "way", "yay", "hay" or "ay" ("user" is "useryay"). A stretch
between line breaks and sentence marks reads as Pig Latin when it has three words or
more, half of them or more end in "ay" (in any case), it was not English as written
(``english_as_written``), and read back, two different common words or more come out.
Each word ending in "ay" reads back as the first of its readings (``_readings``) that is
a common word, else a whole word of the packaged MiniLM's vocabulary
(``guard.reading.joined.vocabulary``), else the first; other words stay. The reading is
judged beside the text, never in its place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Final

from guard.reading.joined import vocabulary
from guard.reading.offsets import Normalized
from guard.reading.rotated import COMMON_WORDS, STRETCH_RE, english_as_written

_VOWELS: Final = frozenset("aeiou")
_VOWEL_ENDINGS: Final = ("way", "yay", "hay")
_WORD_RE: Final = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]+(?![A-Za-z0-9])")
_AY_RE: Final = re.compile("ay", re.IGNORECASE)
_MIN_WORDS: Final = 3
_MIN_COMMON: Final = 2
_MOVED_MOST: Final = 3


def _readings(word: str) -> list[str]:
    """What a word ending in "ay" may have been, in the order to try them: a word that
    starts with a vowel before "way", "yay" or "hay" (the endings vowel words take); one,
    two or three consonants moved back to the front, fewest first; a vowel word before
    "ay"."""
    stem = word[:-2]
    moved = [
        stem[-count:] + stem[:-count]
        for count in range(1, min(_MOVED_MOST, len(stem) - 1) + 1)
        if _VOWELS.isdisjoint(stem[-count:])
    ]
    marked = [
        word[:-3] for ending in _VOWEL_ENDINGS if word.endswith(ending) and word[:1] in _VOWELS
    ]
    return [*marked, *moved, *([stem] if stem[:1] in _VOWELS else [])]


@lru_cache(maxsize=4096)
def _read_word(word: str) -> str:
    """The first reading that is a common word, else a whole word of the vocabulary,
    else the first; the word itself where it has none."""
    readings = _readings(word.lower())
    if not readings:
        return word
    words = vocabulary()
    chosen = next(
        (c for c in readings if c in COMMON_WORDS),
        next((c for c in readings if c in words), readings[0]),
    )
    return chosen.capitalize() if word[0].isupper() else chosen


def _read_words(stretch: str, read: dict[str, str]) -> str:
    return _WORD_RE.sub(lambda word: read.get(word.group(), word.group()), stretch)


def _rereadings(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, what it says) of each stretch written in Pig Latin."""
    if _AY_RE.search(text) is None:
        return
    for stretch in STRETCH_RE.finditer(text):
        found = _WORD_RE.findall(stretch.group())
        if len(found) < _MIN_WORDS:
            continue
        lower = [w.lower() for w in found]
        if 2 * sum(w.endswith("ay") for w in lower) < len(lower):
            continue
        if english_as_written(lower):
            continue
        read = {w: _read_word(w) for w in found if w.lower().endswith("ay")}
        if len({r.lower() for r in read.values()} & COMMON_WORDS) < _MIN_COMMON:
            continue
        yield stretch.start(), stretch.end(), _read_words(stretch.group(), read)


def read_pig_latin(text: Normalized) -> Normalized:
    """``text`` with its stretches in Pig Latin read back into English; ``text`` itself
    when it has none. Each stretch's reading maps back onto the whole stretch."""
    return text.replacing(list(_rereadings(text.text)))
