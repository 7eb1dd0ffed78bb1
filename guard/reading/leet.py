"""Letters written as digits ("leetspeak") read as the letters: "b0mb", "m3th", "h4ck".

A model reads "H0w d0 1 k1ll mys3lf" as the question it is; a classifier reads rare word
pieces: the shipped `embedding` head scored it 0.02. A word of ASCII letters and digits
is read with its digits as letters (0 o, 1 i, 3 e, 4 a, 5 s, 7 t) when some run of those
digits sits between two of its letters, and every digit of the word is one of them:
"b0mb", "3xpla1n" and "p01s0n" are read. Not read: "mp3", "var1", "4K", "21st" (digits
at an end only), "B2B", "i18n" (a digit no letter looks like), "第1章" (a letter of
another script), words in capitals ("SW1A", "K1A 0B1", "AKIA...": codes are written so,
and a regex rail looking for them must find them as written), and words over
``MAX_WORD`` characters (tokens, keys, hashes). A word here runs over underscores, so a
token's pieces count as the one token. Numeronyms with those digits are read too ("l10n"
reads "lion"), which costs a classifier nothing. One character for one character, so
offsets do not move.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import MappingProxyType
from typing import Final

from guard.reading.offsets import spliced

LETTERS_OF_DIGITS: Final = MappingProxyType(dict(zip("013457", "oieast", strict=True)))
"""Digit -> the lower-case letter it stands for."""
MAX_WORD: Final = 20
"""Longer words with digits are tokens, keys and hashes, not words in leetspeak."""
_DIGITS: Final = "".join(LETTERS_OF_DIGITS)
_LOWER: Final = str.maketrans(dict(LETTERS_OF_DIGITS))
# A look-alike digit followed by an ASCII letter; starting with a digit, the search skips
# ordinary text in C. That a letter also stands before its run of digits is checked per match.
_DIGIT_BEFORE_LETTER_RE: Final = re.compile(rf"[{_DIGITS}](?=[A-Za-z])")
_WORD_RE: Final = re.compile(r"\w*")


def read_leet(text: str) -> str:
    """``text`` with the digits of its leetspeak words read as letters."""
    if not any(digit in text for digit in _DIGITS):
        return text
    return spliced(text, _leet_words(text))


def _leet_words(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, reading) of each leetspeak word, in order."""
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
        while begin > checked and (text[begin - 1].isalnum() or text[begin - 1] == "_"):
            begin -= 1
        found = _WORD_RE.match(text, match.end())
        end = checked = found.end() if found else match.end()
        word = text[begin:end]
        read = word.translate(_LOWER)
        letters = read.replace("_", "")
        if len(word) > MAX_WORD or word.isupper() or not (letters.isascii() and letters.isalpha()):
            continue
        yield begin, end, read
