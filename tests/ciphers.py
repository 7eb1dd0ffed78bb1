"""Ways to hide English from a classifier that a capable model still reads: the tests'
own writers of them, independent of ``guard.reading.rotated``."""

from __future__ import annotations

import re
import string

LOWER = string.ascii_lowercase


def _letters(text: str, letters: str) -> str:
    return text.translate(str.maketrans(LOWER + LOWER.upper(), letters + letters.upper()))


def shifted(text: str, by: int) -> str:
    """``text`` in a Caesar shift: each letter ``by`` places on (13 is ROT13)."""
    return _letters(text, LOWER[by:] + LOWER[:by])


def atbash(text: str) -> str:
    """Each letter written as its mirror in the alphabet: a for z, b for y..."""
    return _letters(text, LOWER[::-1])


def words_backwards(text: str) -> str:
    """Each word written backwards in its own place."""
    return " ".join(word[::-1] for word in text.split(" "))


MORSE = {
    "a": ".-", "b": "-...", "c": "-.-.", "d": "-..", "e": ".", "f": "..-.", "g": "--.",
    "h": "....", "i": "..", "j": ".---", "k": "-.-", "l": ".-..", "m": "--", "n": "-.",
    "o": "---", "p": ".--.", "q": "--.-", "r": ".-.", "s": "...", "t": "-", "u": "..-",
    "v": "...-", "w": ".--", "x": "-..-", "y": "-.--", "z": "--..", "'": ".----.",
    "?": "..--..", ".": ".-.-.-", ",": "--..--", "-": "-....-",
}  # fmt: skip


def morse(text: str, letters: str = " ", words: str = " / ") -> str:
    """``text`` in Morse code, its letters parted by ``letters`` and words by ``words``."""
    return words.join(letters.join(MORSE[c] for c in word) for word in text.lower().split())


def tags(text: str) -> str:
    """``text`` in Unicode tag characters: shown as nothing."""
    return "".join(chr(0xE0000 + ord(c)) for c in text)


def pig_latin(text: str) -> str:
    """``text`` in Pig Latin: each word's leading consonants ("y" only first) moved to its
    end and "ay" added, "way" after a word that starts with a vowel; marks stay."""

    def word(found: re.Match[str]) -> str:
        w = found.group()
        lead = len(w) - len(re.sub(r"^[yY]?[^aeiouyAEIOUY]*", "", w))
        return w + "way" if not lead else w[lead:] + w[:lead].lower() + "ay"

    return re.sub(r"[A-Za-z]+", word, text)


def char_codes(text: str, between: str = " ") -> str:
    """``text`` as the decimal codes of its characters."""
    return between.join(str(ord(c)) for c in text)


def octal_escapes(text: str) -> str:
    """``text``'s UTF-8 bytes as octal escapes ("\\150")."""
    return "".join(f"\\{byte:03o}" for byte in text.encode())


def code_points(text: str) -> str:
    """``text`` as "U+0068 U+006F ..."."""
    return " ".join(f"U+{ord(c):04X}" for c in text)


def places(text: str, letters: str = "-", words: str = " ") -> str:
    """``text``'s letters as their places in the alphabet (A1Z26), letters parted by
    ``letters`` and words by ``words``."""
    return words.join(
        letters.join(str(LOWER.index(c) + 1) for c in word if c in LOWER)
        for word in text.lower().split()
    )


NATO = [
    "Alfa", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett",
    "Kilo", "Lima", "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo", "Sierra", "Tango",
    "Uniform", "Victor", "Whiskey", "X-ray", "Yankee", "Zulu",
]  # fmt: skip


def spelling_alphabet(text: str, letters: str = " ", words: str = " / ") -> str:
    """``text``'s letters as NATO code words, letters parted by ``letters`` and words by
    ``words``."""
    return words.join(
        letters.join(NATO[LOWER.index(c)] for c in word if c in LOWER)
        for word in text.lower().split()
    )
