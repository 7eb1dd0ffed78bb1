"""Every reading of a text the rails judge: the text as it reads, then the readings that
are guesses (``SECOND_READINGS``), judged beside it; per rail, the worst verdict stands."""

from __future__ import annotations

from collections.abc import Callable

from guard.reading.char_codes import read_char_codes
from guard.reading.joined import read_joined
from guard.reading.morse import read_morse
from guard.reading.normalize import before_leet, with_leet_read
from guard.reading.offsets import Normalized
from guard.reading.pig_latin import read_pig_latin
from guard.reading.rotated import read_rotated
from guard.reading.spelling_alphabet import read_spelling_alphabet


def _rotated(before_leet: Normalized) -> Normalized:
    """A shifted alphabet or backwards writing read, from the text before leetspeak is read (rotated
    "b0mb" is "o0zo", whose "0" must stay a digit until it is rotated back); words it
    shows broken by hyphens are joined in the same reading."""
    read = read_rotated(before_leet)
    return before_leet if read is before_leet else read_joined(with_leet_read(read))


def _char_codes(before_leet: Normalized) -> Normalized:
    """Numbers read as characters, from the text before leetspeak is read (which reads
    some digits as letters); the rest of the text's leetspeak read after."""
    read = read_char_codes(before_leet)
    return before_leet if read is before_leet else with_leet_read(read)


SECOND_READINGS: dict[str, Callable[[Normalized, Normalized], Normalized]] = {
    "rotated": lambda before_leet, _: _rotated(before_leet),
    "joined": lambda _, norm: read_joined(norm),
    "morse": lambda _, norm: read_morse(norm),
    "pig_latin": lambda _, norm: read_pig_latin(norm),
    "char_codes": lambda before_leet, _: _char_codes(before_leet),
    "spelling_alphabet": lambda _, norm: read_spelling_alphabet(norm),
}
"""Readings that are guesses (shifted alphabets or backwards writing read, words broken by
hyphens joined; Morse code, Pig Latin, characters written as numbers and the spelling
alphabet read), each from the text before or after leetspeak is read (numbers before:
leetspeak reads some digits as letters): each is judged beside the text as it reads,
never in its place. A rotated reading is joined too (ROT13 of broken words); a joined
one is not rotated, since joining makes no common words."""


def readings(text: str) -> list[tuple[str | None, Normalized]]:
    """The text as it reads, then each second reading it has, by name."""
    before = before_leet(text)
    norm = with_leet_read(before)
    found = [(name, read(before, norm)) for name, read in SECOND_READINGS.items()]
    seconds = [(name, other) for name, other in found if other is not before and other is not norm]
    return [(None, norm), *seconds]
