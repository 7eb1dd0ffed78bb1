"""Codes that spell letter by letter: where their words part, and letters written with no
space between words parted into words.

Codes that spell letter by letter (places in the alphabet, Morse, spelling alphabets)
part letters with one kind of gap and words with a wider one ("8-15-23 4-15", ".... ---
.-- / -.. ---"), or leave the spaces out: "howdoimakeabomb" is still "how do i make a
bomb" to a capable model, while WordPiece cuts it into pieces that mean little.
``segmented`` parts a run of letters into the words of least cost in all: a common
English word ("a" and "i" too) costs 1, another whole word of the packaged MiniLM's
vocabulary 2 (2.5 with three letters or fewer: "ak", "ea" and "mph" are words there too),
a stretch of 4 to 16 letters that is no word 3 plus half a letter each ("methamphetamine"
is not in the vocabulary), a lone letter 4; and keeps the parts only where two different
common words come out, one of three letters or more, or three words or more of three
letters or more and nothing else, so that a word alone ("thermite", "detonator" rather
than "det on at or") stays whole.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Final

from guard.reading.joined import vocabulary
from guard.reading.rotated import COMMON_WORDS

_COMMON: Final = COMMON_WORDS | {"a", "i"}
_COMMON_COST: Final = 1.0
_WORD_COST: Final = 2.0
_SHORT_WORD_COST: Final = 2.5
_SHORT: Final = 3
_LETTER_COST: Final = 4.0
_OTHER_COST: Final = 3.0
_OTHER_LETTER_COST: Final = 0.5
_OTHER_SHORTEST: Final = 4
_OTHER_LONGEST: Final = 16
_MIN_COMMON: Final = 2
_MIN_WORDS: Final = 3
_LETTERS_RE: Final = re.compile("[a-z]+")
_WORD_RE: Final = re.compile("[^\\W\\d_]+")
_LINE_BREAK_RE: Final = re.compile("\r\n|[\n\r\u2028\u2029]")
_MOST_LETTERS: Final = 400
"""Longer runs stay as written: parting them costs more than a glance."""


@cache
def _priced() -> tuple[dict[str, float], frozenset[str]]:
    """Each word's cost, and every start of a word (so that a search stops where no word
    goes on)."""
    words = vocabulary()
    costs = {w: _WORD_COST if len(w) > _SHORT else _SHORT_WORD_COST for w in words if len(w) > 1}
    costs.update(dict.fromkeys(_COMMON, _COMMON_COST))
    starts = frozenset(word[:n] for word in costs for n in range(1, len(word) + 1))
    return costs, starts


def _parts(letters: str) -> list[str]:
    """``letters`` parted into the words of least cost in all."""
    costs, starts = _priced()
    # per end: (least cost up to it, start of its last part)
    best = [(0.0, 0)] + [(_LETTER_COST * end, end - 1) for end in range(1, len(letters) + 1)]
    # starts of a stretch that is no word and could end here, by increasing cost to them
    # less half a letter each: the cheapest such stretch is the first, found in one step
    stretches: deque[int] = deque()

    def after(start: int) -> float:
        return best[start][0] - _OTHER_LETTER_COST * start

    for start in range(len(letters) + 1):
        if start >= _OTHER_SHORTEST:
            newest = start - _OTHER_SHORTEST
            while stretches and after(stretches[-1]) >= after(newest):
                stretches.pop()
            stretches.append(newest)
            if stretches[0] < start - _OTHER_LONGEST:
                stretches.popleft()
            first = stretches[0]
            cost = best[first][0] + _OTHER_COST + _OTHER_LETTER_COST * (start - first)
            if (cost, first) < best[start]:
                best[start] = (cost, first)
        if start == len(letters):
            break
        so_far = best[start][0]
        if (so_far + _LETTER_COST, start) < best[start + 1]:
            best[start + 1] = (so_far + _LETTER_COST, start)
        for end in range(start + 1, len(letters) + 1):
            piece = letters[start:end]
            if piece not in starts:
                break
            if piece in costs and (so_far + costs[piece], start) < best[end]:
                best[end] = (so_far + costs[piece], start)
    parts = []
    end = len(letters)
    while end:
        start = best[end][1]
        parts.append(letters[start:end])
        end = start
    return parts[::-1]


@dataclass
class Budget:
    """How many letters a text may still have parted into words (about 2 µs a letter): a
    text full of runs with no word break pays a bounded price; the rest stay as written."""

    letters: int = 4_000

    def spend(self, letters: int) -> bool:
        if letters > self.letters:
            return False
        self.letters -= letters
        return True


def segmented(letters: str, budget: Budget | None = None) -> str:
    """``letters`` (lower case, no spaces) parted into words by spaces where two different
    common words or more come out, one of three letters or more, or three words or more,
    all of three letters or more, and nothing else; as they are otherwise ("ricin" is not "ric in",
    "detonator" not "det on at or"), when longer than ``_MOST_LETTERS`` or beyond
    ``budget``."""
    if len(letters) > _MOST_LETTERS or (budget is not None and not budget.spend(len(letters))):
        return letters
    parts = _parts(letters)
    costs = _priced()[0]
    common = set(parts) & _COMMON
    enough = len(common) >= _MIN_COMMON and any(len(word) >= _SHORT for word in common)
    long_parts = [part for part in parts if len(part) >= _SHORT]
    all_words = len(parts) >= _MIN_WORDS and long_parts == parts and all(p in costs for p in parts)
    return " ".join(parts) if enough or all_words else letters


def segmented_runs(text: str, budget: Budget | None = None) -> str:
    """``text`` with each of its runs of lower-case letters ``segmented``: what comes
    between them (digits, marks) stays."""
    return _LETTERS_RE.sub(lambda run: segmented(run.group(), budget), text)


@lru_cache(maxsize=1024)  # a code's gaps are a few short strings, again and again
def _width(gap: str) -> tuple[int, int, int, bool]:
    """How wide a gap between two letters is: by its line breaks, then its marks (``/``,
    ``|``, a full stop), then its spaces; of two gaps alike so far, the one without other marks (a
    comma, a hyphen) is wider."""
    marks = gap.count("/") + gap.count("|") + gap.count(".")
    spaces = sum(ch in " \t" for ch in gap)
    other = any(not ch.isspace() and ch not in "/|." for ch in gap)  # "," or "-"
    return len(_LINE_BREAK_RE.findall(gap)), marks, spaces, not other


def word_breaks(gaps: list[str]) -> list[bool]:
    """Which gaps between the letters of a code that spells letter by letter part words:
    those wider (``_width``) than the narrowest, which parts letters. "8-15-23 4-15",
    ".... --- .-- / -.. ---", "..../---/.-- // -../---" and "H, O, W\\nD, O" all part as
    written; gaps all alike part no words."""
    widths = [_width(gap) for gap in gaps]
    narrowest = min(widths, default=None)
    return [width != narrowest for width in widths]


def spelled_words(letters: list[str], breaks: list[bool], budget: Budget | None = None) -> str:
    """Letters spelled one by one as words: parted at ``breaks`` (one per gap between
    two letters), or, with no break at all, by ``segmented``."""
    words = [letters[0]]
    for part, letter in zip(breaks, letters[1:], strict=True):
        if part:
            words.append("")
        words[-1] += letter
    return " ".join(words) if len(words) > 1 else segmented(words[0], budget)


def reads_as_words(text: str) -> bool:
    """Whether ``text`` reads as words, not as a list of letters ("abcdefghij", "my f h h
    j or", "HDKP MIE", "abc bc cd de"): half of its letters or more in common words and
    words of the vocabulary of three letters or more (two-letter ones are abbreviations
    there), one of them three letters or more."""
    words = vocabulary()
    found = [word.lower() for word in _WORD_RE.findall(text)]
    known = [w for w in found if w in _COMMON or (len(w) >= _SHORT and w in words)]
    letters = sum(map(len, found))
    return 2 * sum(map(len, known)) >= letters > 0 and any(len(w) >= _SHORT for w in known)
