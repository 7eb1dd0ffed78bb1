"""Letters written as digits ("leetspeak") read as the letters: "b0mb", "m3th", "h4ck".

A model reads "H0w d0 1 k1ll mys3lf" as the question it is; a classifier reads rare word
pieces: the shipped `embedding` head scored it 0.02. A word of letters and digits is read
with its digits as letters (0 o, 1 i, 3 e, 4 a, 5 s, 7 t) when some run of those digits
sits between two of its letters, and every digit of the word is one of them: "b0mb",
"3xpla1n" and "p01s0n" are read, "mp3", "var1", "4K", "B2B", "i18n" and "21st" are not
(the digits stand at an end, or one of them is not a letter's look-alike). One character
for one character, so offsets do not move.
"""

from __future__ import annotations

import re
from typing import Final

_DIGITS: Final = "013457"
_LOWER: Final = str.maketrans(_DIGITS, "oieast")
_UPPER: Final = str.maketrans(_DIGITS, "OIEAST")
# A look-alike digit followed by a letter; starting with a digit, the search skips ordinary
# text in C. That a letter also stands before its run of digits is checked per match.
_DIGIT_BEFORE_LETTER_RE: Final = re.compile(rf"[{_DIGITS}](?=[^\W\d_])")
_WORD_RE: Final = re.compile(r"[^\W_]*")


def _word_around(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    found = _WORD_RE.match(text, end)
    return start, found.end() if found else end


def read_leet(text: str) -> str:
    """``text`` with the digits of its leetspeak words read as letters."""
    if not any(digit in text for digit in _DIGITS):
        return text
    parts: list[str] = []
    last = 0
    for match in _DIGIT_BEFORE_LETTER_RE.finditer(text):
        start = match.start()
        while start > last and text[start - 1] in _DIGITS:
            start -= 1
        if start <= last or not text[start - 1].isalpha():
            continue
        begin, end = _word_around(text, start, match.end())
        word = text[begin:end]
        if not word.translate(_LOWER).isalpha():
            continue
        letters = [ch for ch in word if ch.isalpha()]
        table = _UPPER if all(ch.isupper() for ch in letters) else _LOWER
        parts.append(text[last:begin])
        parts.append(word.translate(table))
        last = end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)
