"""Normalise text to "what it reads as" before safety classifiers judge it.

Self-contained (standard library only; imports nothing from ``guard``), so it can be
dropped in as ``guard/textnorm.py``.  The docstring names look-alike characters by code
point, so that it stays ASCII.

Pipeline
========

1. **Invisible characters are removed**: every character of Unicode category ``Cf``
   (zero-width space/joiners U+200B..U+200F, word joiner and invisible operators
   U+2060..U+2064, BOM U+FEFF, soft hyphen U+00AD, bidi controls U+202A..U+202E and
   U+2066..U+2069, tag characters U+E0000..U+E007F, Mongolian vowel separator U+180E, Arabic
   number signs, ...) plus every other ``Default_Ignorable_Code_Point`` (combining grapheme
   joiner U+034F, variation selectors U+FE00..U+FE0F and U+E0100..U+E01EF, Hangul fillers
   U+115F U+1160 U+3164 U+FFA0, Khmer inherent vowels, Mongolian free variation selectors,
   ...).  Ordinary whitespace (space, ``\\t``, ``\\n``, ``\\r``) and the other ``Cc`` controls
   are kept.  Removal happens *before* composition, so ``e`` U+200B U+0301 reads as U+00E9.
   ZWJ/ZWNJ go too: emoji ZWJ sequences fall apart into their emoji and Persian ZWNJ
   spellings are joined up, which costs a classifier nothing.

2. **Unicode NFKC**: full-width forms, mathematical alphanumerics, ligatures, circled and
   super/subscript digits, compatibility jamo, NBSP and the other space characters, ... all
   become what they stand for.  One deliberate deviation: a *spacing* diacritic whose NFKC
   form is a space followed by combining marks (U+00B4 ACUTE ACCENT, U+00A8 DIAERESIS, U+02DC
   SMALL TILDE, ...) is left as it is; otherwise ``it`` U+00B4 ``s`` would read ``it s``
   after step 3.

3. **Combining marks that do not belong ("zalgo") are removed.**  After composition, a
   combining mark (category ``M*``) that is still attached to an ASCII character, to a
   Latin-script letter, to a look-alike from the fold table, to a symbol, punctuation or
   space, or to nothing at all, is decoration: genuine Latin accents compose to precomposed
   letters (``e`` + U+0301 -> U+00E9 survives), whereas strike-through (U+0336), underline
   (U+0332), keycaps (U+20E3), enclosing circles and zalgo stacks do not.  So ``b``
   U+0336 ``o`` U+0336 ``m`` U+0336 ``b`` U+0336 reads ``bomb``.  The price: the rare
   uncomposable accents on Latin letters (Yoruba tone marks on dotted vowels, IPA
   diacritics, Russian stress marks) are dropped, which does not change what a classifier
   understands.  On letters of other scripts (Devanagari, Hebrew, Arabic, Thai, Tibetan, ...)
   marks are orthography and are kept, up to ``MAX_MARKS_PER_LETTER`` (4) per letter; longer
   stacks are cut (in canonical order).

4. **Homoglyph folding** (``fold="auto"``, the default).  A letter or digit that Unicode's
   confusables data (UTS #39) lists as a look-alike of one ASCII letter or digit (Cyrillic
   U+0430 -> ``a``, Greek U+03BF -> ``o``, Cherokee U+13AA -> ``A``, ...; 436 characters, in
   ``FOLD_TABLE``) is replaced by that letter, *word by word* (a word is a maximal ``\\w+``
   run of the text after steps 1-3), when

   a. the word also contains a Latin letter: a mixed-script word such as ``p`` U+0430 ``ssw``
      U+043E ``rd`` is the classic spoof and practically never genuine text; or
   b. the word has two or more look-alikes and no other letter, and the text shows no
      genuine use of their script: nowhere in the whole text is there a letter of the same
      script without a Latin look-alike.  This catches all-Cyrillic disguises such as
      U+0412 U+041E U+041C U+0412 (reads ``BOMB``) in an otherwise English prompt.

   Genuine Russian, Greek, Armenian, Cherokee... text is left alone: real prose in those
   scripts always has letters without a Latin look-alike (Cyrillic U+0431 folds to ``6`` but
   U+0434, U+0438, U+043B, U+0436, Greek U+03BB, U+03C0, ... do not fold), so rule (b) does
   not fire, and rule (a) only touches words that mix in Latin letters.  Why not fold
   always: that half-Latinises every Russian sentence into gibberish for a multilingual
   classifier (Llama Guard and friends do read Russian), while an English-only classifier
   gains little from half-Latinised Russian.  Known gaps, accepted: an attacker who writes an
   all-look-alike word *and* genuine text of the same script in one prompt defeats (b) (the
   mixed words of (a) are still folded); single look-alike letters are left to themselves by
   (b) (a lone Greek sigma in a formula stays a sigma), while a two-letter all-capital Greek
   word in otherwise English text is folded.  ``fold="always"`` folds every look-alike
   whatever its context (only sensible in front of an English-only classifier);
   ``fold="never"`` skips this step.

   Only letters and digits are folded, never symbols (U+00D7 MULTIPLICATION SIGN, U+2223
   DIVIDES, box drawing stay), and only to a *single* ASCII letter or digit (multi-character
   confusables such as ``rn`` vs ``m`` are not touched).  Upper-case look-alikes of the I/l/1
   class fold to ``I`` rather than to Unicode's prototype ``l``.  Accented look-alikes fold to
   the accented Latin letter (Cyrillic U+0451 -> U+00EB).  Folding replaces one character by
   one character, so it leaves offsets alone.

The data comes from Unicode's ``confusables.txt`` by way of the ``confusable-homoglyphs``
package (MIT licence), which is *not* a runtime dependency: it ships the data as a 900 KB
JSON of a symmetric graph (the direction to the prototype left implicit) loaded eagerly at
import, whereas the 436 mappings needed here fit inline; ``gen_fold_table.py`` regenerates
them.

Offsets
=======

``normalize`` returns a :class:`Normalized` that maps any span of the normalised text back
to the original text, so redaction can cut the *original* after a pattern matched the
normalised text.  Normalisation runs per *cluster*: a character together with every
following character that may compose with it or attaches to it (combining marks, Hangul
vowel/final jamo, halfwidth voiced sound marks, and invisible characters in between).
Every output character records the original span of the cluster that produced it; removed
characters between clusters belong to no output character.

``Normalized.original_span(start, end)`` for ``start < end`` returns ``(a, b)``, where ``a``
is the original start of the cluster that produced output character ``start`` and ``b`` the
original end of the cluster that produced output character ``end - 1``: the minimal original
span that holds every original character that produced ``text[start:end]``, with whatever
lies between them (removed characters strictly inside are included, those at the edges are
not).  Invariant (tested with Hypothesis): with ``fold="never"`` or ``fold="always"``,
``text[start:end]`` is a substring of ``normalize(original[a:b], fold=same).text``, and equal
to it when ``start`` and ``end`` fall on cluster boundaries.  With ``fold="auto"`` it holds
modulo folding, as folding depends on the surrounding word and text: the ``"auto"`` text has
the length and offsets of the ``"never"`` text and differs from it only in characters
replaced by their ``FOLD_TABLE`` entries.  An empty span ``(k, k)`` maps to ``(p, p)``, with
``p`` the original start of the cluster that produced output character ``k`` (or
``len(original)`` when ``k == len(text)``).

Cost: all-ASCII text (``str.isascii()``, C speed) is returned as is, with no per-character
work.  Otherwise stretches of ASCII and NFKC-stable word characters are checked and copied
in bulk (``unicodedata.is_normalized``), and the remaining characters go through a small
per-character state machine with a per-character cache; the fold step walks only the words
that contain look-alikes (or Latin letters).  All of it is linear in the text length.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "FOLD_TABLE",
    "MAX_MARKS_PER_LETTER",
    "FoldMode",
    "Normalized",
    "normalize",
    "normalized_text",
]

FoldMode = Literal["auto", "always", "never"]

MAX_MARKS_PER_LETTER: Final = 4
"""Combining marks kept on one letter of a non-Latin script; more are zalgo."""

# Homoglyph fold table: code point -> the ASCII letter/digit it imitates (or, for accented
# look-alikes, the accented Latin letter).  Generated by gen_fold_table.py from
# confusables.json as shipped in confusable-homoglyphs 3.3.1 (MIT licence), which is derived
# from Unicode's confusables.txt (UTS #39 security data).  Unicode data:
# Copyright (c) 1991-2024 Unicode, Inc.; distributed under the Unicode License v3
# (https://www.unicode.org/license.txt).
# BEGIN GENERATED
# fmt: off
_FOLD_CODEPOINTS: Final[dict[int, str]] = {
    0x0131: "i", 0x0184: "b", 0x018D: "g", 0x0196: "I", 0x01A6: "R", 0x01A7: "2", 0x01B7: "3",
    0x01BC: "5", 0x01BD: "s", 0x01C0: "l", 0x021C: "3", 0x0222: "8", 0x0223: "8", 0x0251: "a",
    0x0261: "g", 0x0263: "y", 0x0269: "i", 0x026A: "i", 0x026F: "w", 0x028B: "u", 0x028F: "y",
    0x037F: "J", 0x0386: "\u00c1", 0x0388: "\u00c9", 0x038A: "\u00cd", 0x038C: "\u00d3",
    0x038E: "\u00dd", 0x0390: "\u1e2f", 0x0391: "A", 0x0392: "B", 0x0395: "E", 0x0396: "Z",
    0x0397: "H", 0x0399: "I", 0x039A: "K", 0x039C: "M", 0x039D: "N", 0x039F: "O", 0x03A1: "P",
    0x03A4: "T", 0x03A5: "Y", 0x03A7: "X", 0x03AA: "\u00cf", 0x03AB: "\u0178",
    0x03AC: "\u00e1", 0x03AF: "\u00ed", 0x03B0: "\u01d8", 0x03B1: "a", 0x03B3: "y",
    0x03B9: "i", 0x03BD: "v", 0x03BF: "o", 0x03C1: "p", 0x03C3: "o", 0x03C5: "u",
    0x03CA: "\u00ef", 0x03CB: "\u00fc", 0x03CC: "\u00f3", 0x03CD: "\u00fa", 0x03DC: "F",
    0x03E8: "2", 0x03F3: "j", 0x03FA: "M", 0x0400: "\u00c8", 0x0401: "\u00cb", 0x0405: "S",
    0x0406: "I", 0x0407: "\u00cf", 0x0408: "J", 0x040C: "\u1e30", 0x0410: "A", 0x0412: "B",
    0x0415: "E", 0x0417: "3", 0x041A: "K", 0x041C: "M", 0x041D: "H", 0x041E: "O", 0x0420: "P",
    0x0421: "C", 0x0422: "T", 0x0423: "Y", 0x0425: "X", 0x042C: "b", 0x0430: "a", 0x0431: "6",
    0x0433: "r", 0x0435: "e", 0x043E: "o", 0x0440: "p", 0x0441: "c", 0x0443: "y", 0x0445: "x",
    0x0450: "\u00e8", 0x0451: "\u00eb", 0x0453: "\u0155", 0x0455: "s", 0x0456: "i",
    0x0457: "\u00ef", 0x0458: "j", 0x0461: "w", 0x0474: "V", 0x0475: "v", 0x04AE: "Y",
    0x04AF: "y", 0x04BB: "h", 0x04BD: "e", 0x04C0: "I", 0x04CF: "i", 0x04D0: "\u0102",
    0x04D1: "\u0103", 0x04D2: "\u00c4", 0x04D3: "\u00e4", 0x04D6: "\u0114", 0x04D7: "\u0115",
    0x04E0: "3", 0x04E6: "\u00d6", 0x04E7: "\u00f6", 0x04EE: "\u0232", 0x04EF: "\u0233",
    0x04F0: "\u0178", 0x04F1: "\u00ff", 0x0501: "d", 0x050C: "G", 0x051B: "q", 0x051C: "W",
    0x051D: "w", 0x054D: "U", 0x054F: "S", 0x0555: "O", 0x0561: "w", 0x0563: "q", 0x0566: "q",
    0x0570: "h", 0x0578: "n", 0x057C: "n", 0x057D: "u", 0x0581: "g", 0x0584: "f", 0x0585: "o",
    0x06F1: "l", 0x06F5: "o", 0x06F7: "V", 0x0966: "o", 0x09E6: "O", 0x09EA: "8", 0x09ED: "9",
    0x0A66: "o", 0x0A67: "9", 0x0A6A: "8", 0x0AE6: "o", 0x0B20: "O", 0x0B66: "O", 0x0B68: "9",
    0x0BE6: "o", 0x0C66: "o", 0x0CE6: "o", 0x0D20: "o", 0x0D66: "o", 0x0D6D: "9", 0x0E50: "o",
    0x0ED0: "o", 0x101D: "o", 0x1040: "o", 0x10E7: "y", 0x10FF: "o", 0x1200: "U", 0x12D0: "O",
    0x13A0: "D", 0x13A1: "R", 0x13A2: "T", 0x13A5: "i", 0x13A9: "Y", 0x13AA: "A", 0x13AB: "J",
    0x13AC: "E", 0x13B3: "W", 0x13B7: "M", 0x13BB: "H", 0x13BD: "Y", 0x13C0: "G", 0x13C2: "h",
    0x13C3: "Z", 0x13CE: "4", 0x13CF: "b", 0x13D2: "R", 0x13D4: "W", 0x13D5: "S", 0x13D9: "V",
    0x13DA: "S", 0x13DE: "L", 0x13DF: "C", 0x13E2: "P", 0x13E6: "K", 0x13E7: "d", 0x13EE: "6",
    0x13F3: "G", 0x13F4: "B", 0x142F: "V", 0x144C: "U", 0x146D: "P", 0x146F: "d", 0x1472: "b",
    0x148D: "J", 0x14AA: "L", 0x14BF: "2", 0x1541: "x", 0x157C: "H", 0x157D: "x", 0x1587: "R",
    0x15AF: "b", 0x15B4: "F", 0x15C5: "A", 0x15DE: "D", 0x15EA: "D", 0x15F0: "M", 0x15F7: "B",
    0x16B7: "X", 0x16C1: "l", 0x16D5: "K", 0x16D6: "M", 0x1D04: "c", 0x1D0F: "o", 0x1D11: "o",
    0x1D1C: "u", 0x1D20: "v", 0x1D21: "w", 0x1D22: "z", 0x1D26: "r", 0x1D83: "g", 0x1D8C: "y",
    0x1E9D: "f", 0x1EFF: "y", 0x1F70: "\u00e0", 0x1F76: "\u00ec", 0x1F78: "\u00f2",
    0x1F7A: "\u00f9", 0x1FB0: "\u0103", 0x1FB1: "\u0101", 0x1FB8: "\u0102", 0x1FB9: "\u0100",
    0x1FBA: "\u00c0", 0x1FC8: "\u00c8", 0x1FD0: "\u012d", 0x1FD1: "\u012b", 0x1FD8: "\u012c",
    0x1FD9: "\u012a", 0x1FDA: "\u00cc", 0x1FE0: "\u016d", 0x1FE1: "\u016b", 0x1FE2: "\u01dc",
    0x1FE9: "\u0232", 0x1FEA: "\u1ef2", 0x1FF8: "\u00d2", 0x2C85: "r", 0x2C8E: "H",
    0x2C92: "I", 0x2C94: "K", 0x2C98: "M", 0x2C9A: "N", 0x2C9E: "O", 0x2C9F: "o", 0x2CA2: "P",
    0x2CA3: "p", 0x2CA4: "C", 0x2CA5: "c", 0x2CA6: "T", 0x2CA8: "Y", 0x2CAC: "X", 0x2CCA: "9",
    0x2CCC: "3", 0x2CD0: "L", 0x2CD2: "6", 0x2D38: "V", 0x2D39: "E", 0x2D4F: "l", 0x2D54: "O",
    0x2D55: "Q", 0x2D5D: "X", 0x3007: "O", 0xA4D0: "B", 0xA4D1: "P", 0xA4D2: "d", 0xA4D3: "D",
    0xA4D4: "T", 0xA4D6: "G", 0xA4D7: "K", 0xA4D9: "J", 0xA4DA: "C", 0xA4DC: "Z", 0xA4DD: "F",
    0xA4DF: "M", 0xA4E0: "N", 0xA4E1: "L", 0xA4E2: "S", 0xA4E3: "R", 0xA4E6: "V", 0xA4E7: "H",
    0xA4EA: "W", 0xA4EB: "X", 0xA4EC: "Y", 0xA4EE: "A", 0xA4F0: "E", 0xA4F2: "l", 0xA4F3: "O",
    0xA4F4: "U", 0xA644: "2", 0xA647: "i", 0xA6DF: "V", 0xA6EF: "2", 0xA731: "s", 0xA75A: "2",
    0xA76A: "3", 0xA76E: "9", 0xA798: "F", 0xA799: "f", 0xA79F: "u", 0xA7AB: "3", 0xA7B2: "J",
    0xA7B3: "X", 0xA7B4: "B", 0xAB32: "e", 0xAB35: "f", 0xAB3D: "o", 0xAB47: "r", 0xAB48: "r",
    0xAB4E: "u", 0xAB52: "u", 0xAB5A: "y", 0xAB75: "i", 0xAB81: "r", 0xAB83: "w", 0xAB93: "z",
    0xABA9: "v", 0xABAA: "s", 0xABAF: "c", 0x10282: "B", 0x10286: "E", 0x10287: "F",
    0x1028A: "l", 0x10290: "X", 0x10292: "O", 0x10295: "P", 0x10296: "S", 0x10297: "T",
    0x102A0: "A", 0x102A1: "B", 0x102A2: "C", 0x102A5: "F", 0x102AB: "O", 0x102B0: "M",
    0x102B1: "T", 0x102B2: "Y", 0x102B4: "X", 0x102CF: "H", 0x102F5: "Z", 0x10301: "B",
    0x10302: "C", 0x10309: "l", 0x10311: "M", 0x10315: "T", 0x10317: "X", 0x1031A: "8",
    0x10320: "l", 0x10322: "X", 0x10404: "O", 0x10415: "C", 0x1041B: "L", 0x10420: "S",
    0x1042C: "o", 0x1043D: "c", 0x10448: "s", 0x104B4: "R", 0x104C2: "O", 0x104CE: "U",
    0x104D2: "7", 0x104EA: "o", 0x104F6: "u", 0x10513: "N", 0x10516: "O", 0x10518: "K",
    0x1051C: "C", 0x1051D: "V", 0x10525: "F", 0x10526: "L", 0x10527: "X", 0x114D0: "O",
    0x11706: "v", 0x1170A: "w", 0x1170E: "w", 0x1170F: "w", 0x118A0: "V", 0x118A2: "F",
    0x118A3: "L", 0x118A4: "Y", 0x118A6: "E", 0x118A9: "Z", 0x118AC: "9", 0x118AE: "E",
    0x118AF: "4", 0x118B2: "L", 0x118B5: "O", 0x118B8: "U", 0x118BB: "5", 0x118BC: "T",
    0x118C0: "v", 0x118C1: "s", 0x118C2: "F", 0x118C3: "i", 0x118C4: "z", 0x118C6: "7",
    0x118C8: "o", 0x118CA: "3", 0x118CC: "9", 0x118D5: "6", 0x118D6: "9", 0x118D7: "o",
    0x118D8: "u", 0x118DC: "y", 0x118E0: "O", 0x118E5: "Z", 0x118E6: "W", 0x118E9: "C",
    0x118EC: "X", 0x118EF: "W", 0x118F2: "C", 0x16F08: "V", 0x16F0A: "T", 0x16F16: "L",
    0x16F28: "l", 0x16F35: "R", 0x16F3A: "S", 0x16F3B: "3", 0x16F40: "A", 0x16F42: "U",
    0x16F43: "Y",
}
# fmt: on
# END GENERATED

_FOLD: Final[dict[str, str]] = {chr(cp): target for cp, target in _FOLD_CODEPOINTS.items()}
FOLD_TABLE: Final = MappingProxyType(_FOLD)
"""Read-only view of the homoglyph fold table (character -> replacement)."""

_FOLD_TRANSLATE: Final = str.maketrans(_FOLD)
_FOLD_CLASS: Final = "".join(re.escape(ch) for ch in _FOLD)
_FOLD_CHAR_RE: Final = re.compile(f"[{_FOLD_CLASS}]")
# A word (\w+ run) containing at least one fold-table character.  The leading \b makes
# every position inside a word fail at once, so matching stays linear.
_FOLD_WORD_RE: Final = re.compile(rf"\b\w*[{_FOLD_CLASS}]\w*")
_FOLD_DELETE: Final = str.maketrans(dict.fromkeys(_FOLD))
_NON_ASCII_RUN_RE: Final = re.compile(r"[^\x00-\x7f]+")
# Characters that need per-character work even inside an NFKC-stable stretch: non-ASCII
# characters that are not word characters (marks, format characters, symbols, punctuation)
# and the word characters that are removed or attach to the preceding character (Hangul
# fillers and vowel/final jamo, Thai/Lao AM, halfwidth voiced sound marks).
_SPECIAL_RE: Final = re.compile(
    r"(?:[^\w\x00-\x7f]|[\u0e33\u0eb3\u115f-\u1175\u11a8-\u11c2\u3164\uff9e\uff9f\uffa0])+"
)
_LETTER_RE: Final = re.compile(r"[^\W\d_]")

# Blocks holding the non-ASCII letters of the Latin script.
_LATIN_BLOCKS: Final = (
    (0x00C0, 0x02AF),
    (0x1D00, 0x1DBF),
    (0x1E00, 0x1EFF),
    (0x2184, 0x2184),
    (0x2C60, 0x2C7F),
    (0xA720, 0xA7FF),
    (0xAB30, 0xAB6F),
    (0x10780, 0x107BF),
    (0x1DF00, 0x1DFFF),
)
_LATIN_LETTERS: Final = frozenset(
    ch
    for lo, hi in _LATIN_BLOCKS
    for ch in map(chr, range(lo, hi + 1))
    if ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN ")
)
_LATIN_CLASS: Final = "A-Za-z" + "".join(re.escape(ch) for ch in sorted(_LATIN_LETTERS))
_LATIN_LETTER_RE: Final = re.compile(f"[{_LATIN_CLASS}]")
_LATIN_WORD_RE: Final = re.compile(rf"\b\w*[{_LATIN_CLASS}]\w*")

# Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt) that are not category Cf.
_IGNORABLE_RANGES: Final = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

# Per-character facts, cached: (pre-mapped decomposition, attaches to the preceding cluster,
# NFKC of the character alone, that NFKC contains a combining mark, the character is plain:
# kept, not attaching, unchanged by NFKC).  A removed character has an empty decomposition.
_Info = tuple[str, bool, str, bool, bool]
_REMOVED: Final[_Info] = ("", False, "", False, False)
_INFO_CACHE: dict[str, _Info] = {}
_SCRIPT_CACHE: dict[str, str] = {}
_CACHE_LIMIT: Final = 20_000


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "M"


def _is_removed(ch: str) -> bool:
    if unicodedata.category(ch) == "Cf":
        return True
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _IGNORABLE_RANGES)


def _compute_info(ch: str) -> _Info:
    if _is_removed(ch):
        return _REMOVED
    decomposed = unicodedata.normalize("NFKD", ch)
    if len(decomposed) > 1 and decomposed[0] == " " and all(_is_mark(m) for m in decomposed[1:]):
        # spacing diacritic (U+00B4 ...): keep it rather than leave a bare space
        decomposed = unicodedata.normalize("NFD", ch)
    if any(_is_removed(c) for c in decomposed):
        decomposed = "".join(c for c in decomposed if not _is_removed(c))
        if not decomposed:
            return _REMOVED
    first = decomposed[0]
    attaches = (
        _is_mark(first)
        or "\u1161" <= first <= "\u1175"  # Hangul vowel jamo (compose with a leading jamo)
        or "\u11a8" <= first <= "\u11c2"  # Hangul final jamo (compose with an LV syllable)
    )
    alone = unicodedata.normalize("NFC", decomposed)
    has_marks = any(_is_mark(c) for c in alone)
    return (decomposed, attaches, alone, has_marks, not attaches and not has_marks and alone == ch)


def _info(ch: str) -> _Info:
    info = _INFO_CACHE.get(ch)
    if info is None:
        info = _compute_info(ch)
        if len(_INFO_CACHE) >= _CACHE_LIMIT:
            _INFO_CACHE.clear()
        _INFO_CACHE[ch] = info
    return info


def _script(ch: str) -> str:
    """Rough script of a character: the first word of its Unicode name (LATIN, CYRILLIC...)."""
    script = _SCRIPT_CACHE.get(ch)
    if script is None:
        script = unicodedata.name(ch, "").split(" ", 1)[0]
        if len(_SCRIPT_CACHE) >= _CACHE_LIMIT:
            _SCRIPT_CACHE.clear()
        _SCRIPT_CACHE[ch] = script
    return script


def _keeps_marks(base: str) -> bool:
    """Whether combining marks on ``base`` are orthography rather than decoration."""
    return (
        not base.isascii() and base.isalpha() and base not in _FOLD and base not in _LATIN_LETTERS
    )


def _drop_marks(cluster: str) -> str:
    kept: list[str] = []
    keep = False
    count = 0
    for ch in cluster:
        if _is_mark(ch):
            if keep and count < MAX_MARKS_PER_LETTER:
                kept.append(ch)
                count += 1
        else:
            kept.append(ch)
            keep = _keeps_marks(ch)
            count = 0
    return "".join(kept)


class _OffsetMap:
    """Pieces of the output, sorted by output start.

    Piece ``i`` covers output ``[out_starts[i], out_starts[i + 1])``.  A linear piece maps
    output character ``out_starts[i] + j`` to original character ``orig_starts[i] + j``; any
    other piece maps each of its output characters to ``[orig_starts[i], orig_ends[i])``.
    """

    __slots__ = ("linear", "orig_ends", "orig_starts", "out_starts")

    def __init__(self) -> None:
        self.out_starts: list[int] = []
        self.orig_starts: list[int] = []
        self.orig_ends: list[int] = []
        self.linear: list[bool] = []

    def add(self, out_start: int, out_len: int, orig_start: int, orig_end: int) -> None:
        if out_len == 1 and orig_end - orig_start == 1:
            if self.linear and self.linear[-1] and self.orig_ends[-1] == orig_start:
                last_len = self.orig_ends[-1] - self.orig_starts[-1]
                if self.out_starts[-1] + last_len == out_start:
                    self.orig_ends[-1] = orig_end
                    return
            linear = True
        else:
            linear = False
        self.out_starts.append(out_start)
        self.orig_starts.append(orig_start)
        self.orig_ends.append(orig_end)
        self.linear.append(linear)

    def add_identity(self, out_start: int, orig_start: int, length: int) -> None:
        if self.linear and self.linear[-1] and self.orig_ends[-1] == orig_start:
            last_len = self.orig_ends[-1] - self.orig_starts[-1]
            if self.out_starts[-1] + last_len == out_start:
                self.orig_ends[-1] = orig_start + length
                return
        self.out_starts.append(out_start)
        self.orig_starts.append(orig_start)
        self.orig_ends.append(orig_start + length)
        self.linear.append(True)

    def start_of(self, k: int) -> int:
        i = bisect_right(self.out_starts, k) - 1
        if self.linear[i]:
            return self.orig_starts[i] + (k - self.out_starts[i])
        return self.orig_starts[i]

    def end_of(self, k: int) -> int:
        i = bisect_right(self.out_starts, k) - 1
        if self.linear[i]:
            return self.orig_starts[i] + (k - self.out_starts[i]) + 1
        return self.orig_ends[i]


@dataclass(frozen=True)
class Normalized:
    """Normalised ``text`` of ``original``, with a map back to the original's offsets."""

    text: str
    original: str
    _map: _OffsetMap | None = field(default=None, repr=False, compare=False)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Original span of ``text[start:end]``; see the module docstring for the contract."""
        if not 0 <= start <= end <= len(self.text):
            raise ValueError(
                f"span ({start}, {end}) outside normalised text of length {len(self.text)}"
            )
        offsets = self._map
        if offsets is None:
            return (start, end)
        if start == end:
            pos = len(self.original) if start == len(self.text) else offsets.start_of(start)
            return (pos, pos)
        return (offsets.start_of(start), offsets.end_of(end - 1))


class _Transformer:
    """Steps 1-3 (invisible removal, NFKC, mark dropping), cluster by cluster."""

    __slots__ = (
        "cluster_end",
        "cluster_info",
        "cluster_parts",
        "cluster_start",
        "offsets",
        "out",
        "out_len",
        "text",
    )

    def __init__(self, text: str, offsets: _OffsetMap | None) -> None:
        self.text = text
        self.offsets = offsets
        self.out: list[str] = []
        self.out_len = 0
        self.cluster_start = -1  # -1: no open cluster
        self.cluster_end = -1
        self.cluster_info: _Info = _REMOVED
        self.cluster_parts: list[str] | None = None

    def run(self) -> str:
        text = self.text
        plain_start = 0
        for special in _SPECIAL_RE.finditer(text):
            if all(_info(ch)[4] for ch in special.group()):
                continue  # punctuation, symbols, emoji...: as plain as word characters
            start, end = special.span()
            if start > plain_start:
                self.plain(plain_start, start)
            self.steps(start, end)
            plain_start = end
        if plain_start < len(text):
            self.plain(plain_start, len(text))
        self.close()
        return "".join(self.out)

    def plain(self, start: int, end: int) -> None:
        """Characters that are never removed, never marks, and only attach to the preceding
        character when NFKC changes them (U+0E33 ...)."""
        text = self.text
        stretch = text[start:end]
        if stretch.isascii() or unicodedata.is_normalized("NFKC", stretch):
            self.bulk(start, end)
            return
        pos = start
        for run in _NON_ASCII_RUN_RE.finditer(stretch):
            run_start = start + run.start()
            run_end = start + run.end()
            if run_start > pos:
                self.bulk(pos, run_start)
            if unicodedata.is_normalized("NFKC", text[run_start:run_end]):
                self.bulk(run_start, run_end)
            else:
                self.steps(run_start, run_end)
            pos = run_end
        if pos < end:
            self.bulk(pos, end)

    def bulk(self, start: int, end: int) -> None:
        """Plain characters that NFKC leaves alone: each is its own cluster, mapping to itself.

        None of them attaches to the open cluster, which is closed.  The last one is left
        open, since a combining mark right after the stretch attaches to it.
        """
        self.close()
        if end - 1 > start:
            self.identity(start, end - 1)
        self.open(end - 1, _info(self.text[end - 1]))

    def identity(self, start: int, end: int) -> None:
        self.out.append(self.text[start:end])
        if self.offsets is not None:
            self.offsets.add_identity(self.out_len, start, end - start)
        self.out_len += end - start

    def open(self, i: int, info: _Info) -> None:
        self.cluster_start = i
        self.cluster_end = i + 1
        self.cluster_info = info
        self.cluster_parts = None

    def steps(self, start: int, end: int) -> None:
        """Run characters ``start..end`` through the cluster state machine."""
        text = self.text
        cache = _INFO_CACHE
        for i in range(start, end):
            ch = text[i]
            info = cache.get(ch) or _info(ch)
            decomposed = info[0]
            if not decomposed:
                continue  # removed; inside the cluster only if something attaches later
            if info[1] and self.cluster_start >= 0:
                if self.cluster_parts is None:
                    self.cluster_parts = [self.cluster_info[0]]
                self.cluster_parts.append(decomposed)
                self.cluster_end = i + 1
                continue
            self.close()
            self.cluster_start = i
            self.cluster_end = i + 1
            self.cluster_info = info
            self.cluster_parts = None

    def close(self) -> None:
        if self.cluster_start < 0:
            return
        info = self.cluster_info
        if self.cluster_parts is not None:
            result = _drop_marks(unicodedata.normalize("NFC", "".join(self.cluster_parts)))
        elif info[3]:
            result = _drop_marks(info[2])
        else:
            result = info[2]
        if result:
            self.out.append(result)
            if self.offsets is not None:
                self.offsets.add(self.out_len, len(result), self.cluster_start, self.cluster_end)
            self.out_len += len(result)
        self.cluster_start = -1


def _fold(text: str, mode: FoldMode) -> str:
    """Homoglyph folding (step 4); one character for one character."""
    if mode == "never" or not _FOLD_CHAR_RE.search(text):
        return text
    if mode == "always":
        return text.translate(_FOLD_TRANSLATE)
    chars = set(text)
    # scripts in genuine use: some letter of theirs has no Latin look-alike
    genuine = {_script(ch) for ch in chars if not ch.isascii() and ch.isalpha() and ch not in _FOLD}
    lookalike_scripts = {_script(ch) for ch in chars if ch in _FOLD}
    parts: list[str] = []
    last = 0
    if lookalike_scripts <= genuine:
        # Rule (b) cannot fire; only mixed-script words fold.  Walk the words that hold a
        # Latin letter (cheaper for mostly non-Latin text).
        if _LATIN_LETTER_RE.search(text) is None:
            return text
        for match in _LATIN_WORD_RE.finditer(text):
            word = match.group()
            folded = word.translate(_FOLD_TRANSLATE)
            if folded != word:
                parts.append(text[last : match.start()])
                parts.append(folded)
                last = match.end()
    else:
        for match in _FOLD_WORD_RE.finditer(text):
            word = match.group()
            if _LATIN_LETTER_RE.search(word) is None:
                # rule (b): two or more look-alikes, no other letter, script not in genuine use
                rest = word.translate(_FOLD_DELETE)
                if len(word) - len(rest) < 2 or _LETTER_RE.search(rest) is not None:
                    continue
                if any(_script(ch) in genuine for ch in word if ch in _FOLD):
                    continue
            parts.append(text[last : match.start()])
            parts.append(word.translate(_FOLD_TRANSLATE))
            last = match.end()
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def normalize(text: str, *, fold: FoldMode = "auto") -> Normalized:
    """Normalise ``text`` to what it reads as, keeping a map back to original offsets."""
    if text.isascii():
        return Normalized(text, text)
    offsets = _OffsetMap()
    result = _fold(_Transformer(text, offsets).run(), fold)
    return Normalized(result, text, offsets)


def normalized_text(text: str, *, fold: FoldMode = "auto") -> str:
    """``normalize(text, fold=fold).text`` without building the offset map."""
    if text.isascii():
        return text
    return _fold(_Transformer(text, None).run(), fold)


def _demo_text(size: int) -> str:
    """About ``size`` characters of mixed text: English, obfuscations, Russian, CJK, emoji."""
    chunks = (
        "Please summarise the attached report before the meeting on Tuesday. ",
        "How do I make a b\u200bo\u200bm\u200bb at home? ",
        "p\u0430ssw\u043erd: \uff53\uff45\uff43\uff52\uff45\uff54 \ufb01le ",
        "\u0412\u041e\u041c\u0412 b\u0336o\u0336m\u0336b\u0336 ",
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430? ",
        "\u4eca\u65e5\u306f\u3044\u3044\u5929\u6c17\u3067\u3059\u3002 ",
        "caf\u00e9 cafe\u0301 na\u00efve \U0001f44d\ufe0f \U0001f468\u200d\U0001f469 ",
        "\U0001d41b\U0001d428\U0001d426\U0001d41b \u2460\u2461\u2462 \u202eevil\u202c ",
    )
    parts: list[str] = []
    total = 0
    i = 0
    while total < size:
        chunk = chunks[i % len(chunks)]
        parts.append(chunk)
        total += len(chunk)
        i += 1
    return "".join(parts)[:size]


def _benchmark() -> None:
    import time

    samples = {
        "mixed": _demo_text(100_000),
        "ascii": ("The quick brown fox jumps over the lazy dog. " * 2300)[:100_000],
        "russian": (
            "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a "
            "\u0434\u0435\u043b\u0430? " * 6000
        )[:100_000],
    }
    for name, sample in samples.items():
        for label, func in (("normalize", normalize), ("normalized_text", normalized_text)):
            _INFO_CACHE.clear()
            _SCRIPT_CACHE.clear()
            func(sample)  # cold: fills the per-character caches
            runs = 20
            t0 = time.perf_counter()
            for _ in range(runs):
                func(sample)
            per_call = (time.perf_counter() - t0) / runs
            print(f"{name:8} {len(sample):>7} chars  {label:16} {per_call * 1000:8.2f} ms")


if __name__ == "__main__":
    _benchmark()
