"""Letters written as digits ("leetspeak") read as the letters: "b0mb", "m3th", "h4ck".

A model reads "H0w d0 1 k1ll mys3lf" as the question it is; a classifier reads rare word
pieces: the shipped `embedding` head scored it 0.02. A word of ASCII letters and digits
is read with its digits as letters (0 o, 1 i, 3 e, 4 a, 5 s, 7 t) when some run of those
digits sits between two of its letters, and every digit of the word is one of them:
"b0mb", "3xpla1n" and "p01s0n" are read, "mp3", "var1", "4K", "B2B", "i18n" and "21st"
are not (the digits stand at an end, or one of them is not a letter's look-alike), nor
are words with a letter of another script ("第1章"). Numeronyms with those digits change
too ("l10n" reads "lion", "a11y" "aiiy"), which costs a classifier nothing. One character
for one character, so offsets do not move.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

LETTERS_OF_DIGITS: Final = MappingProxyType(dict(zip("013457", "oieast", strict=True)))
"""Digit -> the lower-case letter it stands for."""
_DIGITS: Final = "".join(LETTERS_OF_DIGITS)
_LOWER: Final = str.maketrans(dict(LETTERS_OF_DIGITS))
_UPPER: Final = str.maketrans({d: letter.upper() for d, letter in LETTERS_OF_DIGITS.items()})
# A look-alike digit followed by an ASCII letter; starting with a digit, the search skips
# ordinary text in C. That a letter also stands before its run of digits is checked per match.
_DIGIT_BEFORE_LETTER_RE: Final = re.compile(rf"[{_DIGITS}](?=[A-Za-z])")
_WORD_RE: Final = re.compile(r"[^\W_]*")


def read_leet(text: str) -> str:
    """``text`` with the digits of its leetspeak words read as letters."""
    if not any(digit in text for digit in _DIGITS):
        return text
    parts: list[str] = []
    last = 0  # end of what is in parts
    checked = 0  # end of the last word looked at: each word is looked at once
    for match in _DIGIT_BEFORE_LETTER_RE.finditer(text):
        start = match.start()
        if start < checked:
            continue
        while start > checked and text[start - 1] in _DIGITS:
            start -= 1
        if start == checked or not (text[start - 1].isascii() and text[start - 1].isalpha()):
            continue
        begin = start - 1
        while begin > checked and text[begin - 1].isalnum():
            begin -= 1
        found = _WORD_RE.match(text, match.end())
        end = checked = found.end() if found else match.end()
        word = text[begin:end]
        read = word.translate(_LOWER)
        if not (read.isascii() and read.isalpha()):
            continue
        table = _UPPER if word.translate(_UPPER).isupper() else _LOWER
        parts.append(text[last:begin])
        parts.append(word.translate(table))
        last = end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)
