"""Text as it reads: what rails judge, in and out, before any classifier sees it.

1. Tag characters, which spell ASCII invisibly, read as the ASCII they spell, but in an
   emoji's subdivision flag (``guard.reading.tags``). Then invisible characters go:
   Unicode category Cf and every other default-ignorable code point (zero-width spaces
   and joiners, soft hyphens, bidi controls, a flag's tags, variation selectors, Hangul
   fillers...), before composition. Whitespace stays.
2. Unicode NFKC (full-width forms, mathematical letters, ligatures, circled digits...),
   except that a spacing accent (U+00B4, U+00A8...) is kept as it is; and letters written
   as symbols that NFKC leaves alone or spells out (``STYLED_LETTERS``: regional
   indicators, negative circled and squared capitals, small capitals, parenthesised
   letters, Braille) become the letters they spell.
3. Combining marks that do not belong go ("zalgo", strike-through, keycaps): a mark still
   attached to an ASCII or Latin letter, a look-alike, a symbol or nothing after
   composition. Genuine accents compose and stay; other scripts keep up to
   ``MAX_MARKS_PER_LETTER`` marks per letter.
4. Look-alike letters fold to the ASCII letter they imitate (``fold="auto"``), word by
   word: in a word that also holds a Latin letter, or in an all-look-alike word of two or
   more when the text shows no genuine use of that script. Real Russian or Greek prose is
   left alone. The table (``guard.reading.fold_table``) comes from Unicode's
   confusables data.
5. HTML character references and ``\\u`` escapes ("&#98;", "&#x62;", "&amp;", "\\u0062")
   read as the characters they stand for, then base64, hex and bit runs that decode to text
   read as that text, each normalised in its turn (``guard.reading.encoded``); where
   that changed the text, step 4 runs again.
6. Words spelled out letter by letter ("b-o-m-b", "m.e.t.h") lose their separators
   (``guard.reading.spelled``); where that made new words, step 4 runs again on them.
7. Digits written for letters inside a word ("b0mb", "m3th") read as the letters
   (``guard.reading.leet``).

``normalize`` returns a ``Normalized`` whose ``original_span`` maps a span of the
normalised text back onto the original, so redaction cuts the original text at the right
place. Work goes per cluster (a character with what composes or attaches to it; at most
32 characters of a cluster are normalised, since CPython's NFC is quadratic in long runs
of marks). Text in a shifted alphabet or written backwards is a second reading, judged
beside this one (``guard.reading.rotated``). All-ASCII text only goes through steps 5 to
7; everything is linear in the text's length. docs/safety.md ("Text as it reads") gives
the rules, their reasons and known gaps.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from types import MappingProxyType
from typing import Final, Literal

from guard.reading.braille import BRAILLE_LETTERS
from guard.reading.encoded import read_encoded, read_encoded_text
from guard.reading.fold_table import FOLD_CODEPOINTS
from guard.reading.leet import read_leet
from guard.reading.offsets import Normalized, OffsetMap
from guard.reading.spelled import join_spelled_text, join_spelled_words
from guard.reading.tags import read_tags

FoldMode = Literal["auto", "always", "never"]

MAX_MARKS_PER_LETTER: Final = 4
"""Combining marks kept on one letter of a non-Latin script; more are zalgo."""


_FOLD: Final[dict[str, str]] = {chr(cp): target for cp, target in FOLD_CODEPOINTS.items()}
FOLD_TABLE: Final = MappingProxyType(_FOLD)
"""Read-only view of the homoglyph fold table (character -> replacement)."""

_FOLD_KEYS: Final = frozenset(_FOLD)
_FOLD_TRANSLATE: Final = str.maketrans(_FOLD)
_FOLD_CLASS: Final = "".join(re.escape(ch) for ch in _FOLD)
# A word (\w+ run) containing at least one fold-table character.  The leading \b makes
# every position inside a word fail at once, so matching stays linear.
_FOLD_WORD_RE: Final = re.compile(rf"\b\w*[{_FOLD_CLASS}]\w*")
_FOLD_DELETE: Final = str.maketrans(dict.fromkeys(_FOLD))
_NON_ASCII_RUN_RE: Final = re.compile(r"[^\x00-\x7f]+")


def _styled_letters() -> dict[str, str]:
    """Letters written as symbols, which a model reads as the letters they spell
    ("\U0001f1ed\U0001f1f4\U0001f1fc" reads "HOW") but NFKC leaves alone, or spells out
    with brackets: each Unicode character so named, in the blocks that hold them, and the
    Braille letters (``guard.reading.braille``)."""
    names = (
        (re.compile(r"REGIONAL INDICATOR SYMBOL LETTER ([A-Z])"), str.upper),
        (re.compile(r"NEGATIVE (?:CIRCLED|SQUARED) LATIN CAPITAL LETTER ([A-Z])"), str.upper),
        (re.compile(r"LATIN LETTER SMALL CAPITAL ([A-Z])"), str.lower),
        (re.compile(r"PARENTHESIZED LATIN SMALL LETTER ([A-Z])"), str.lower),
        (re.compile(r"PARENTHESIZED LATIN CAPITAL LETTER ([A-Z])"), str.upper),
    )
    blocks = (
        (0x0250, 0x02AF),
        (0x1D00, 0x1D2B),
        (0x2460, 0x24FF),
        (0xA720, 0xA7FF),
        (0x1F100, 0x1F1FF),
    )
    table = {}
    for lo, hi in blocks:
        for ch in map(chr, range(lo, hi + 1)):
            name = unicodedata.name(ch, "")
            for pattern, case in names:
                found = pattern.fullmatch(name)
                if found:
                    table[ch] = case(found.group(1))
    return table | BRAILLE_LETTERS


STYLED_LETTERS: Final = MappingProxyType(_styled_letters())
"""Letter-like symbol -> the ASCII letter it spells (step 2)."""

# Characters that need per-character work even inside an NFKC-stable stretch: non-ASCII
# characters that are not word characters (marks, format characters, symbols, punctuation),
# the word characters that are removed or attach to the preceding character (Hangul
# fillers and vowel/final jamo, Thai/Lao AM, halfwidth voiced sound marks), and the styled
# letters that are word characters (small capitals).
_STYLED_WORD_CLASS: Final = "".join(re.escape(ch) for ch in STYLED_LETTERS if ch.isalnum())
_SPECIAL_RE: Final = re.compile(
    r"(?:[^\w\x00-\x7f]|[\u0e33\u0eb3\u115f-\u1175\u11a8-\u11c2\u3164\uff9e\uff9f\uffa0"
    + _STYLED_WORD_CLASS
    + "])+"
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
_LATIN_KEYS: Final = _LATIN_LETTERS | frozenset(string.ascii_letters)
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

# How a character attaches to the cluster before it: not at (0), always (its decomposition
# starts with a combining mark), or, for Hangul vowel/final jamo, when the cluster ends in
# a leading/vowel jamo (what NFC composes them with).
_ATTACH_NONE: Final = 0
_ATTACH_MARK: Final = 1
_ATTACH_VOWEL_JAMO: Final = 2
_ATTACH_FINAL_JAMO: Final = 3

# Per-character facts, cached: (pre-mapped decomposition, how it attaches, NFKC of the
# character alone, that NFKC contains a combining mark, the character is plain: kept, not
# attaching, unchanged by NFKC).  A removed character has an empty decomposition.
_Info = tuple[str, int, str, bool, bool]
_REMOVED: Final[_Info] = ("", _ATTACH_NONE, "", False, False)
_INFO_CACHE: dict[str, _Info] = {}
# Most characters of one cluster that are normalised; further marks are left out, so that
# zalgo piles cost linear time: CPython sorts combining marks in quadratic time (NFC of "a"
# followed by 20,000 alternating marks takes a quarter of a second).
_MAX_CLUSTER: Final = 32
_SCRIPT_CACHE: dict[str, str] = {}
_CACHE_LIMIT: Final = 20_000


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "M"


def clear_caches() -> None:
    """Forget the per-character work done so far (for measuring a cold start)."""
    _INFO_CACHE.clear()
    _SCRIPT_CACHE.clear()


def is_removed(ch: str) -> bool:
    if unicodedata.category(ch) == "Cf":
        return True
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _IGNORABLE_RANGES)


def _compute_info(ch: str) -> _Info:
    if is_removed(ch):
        return _REMOVED
    decomposed = STYLED_LETTERS.get(ch) or unicodedata.normalize("NFKD", ch)
    # A modifier small capital decomposes to the small capital, which reads as a letter too.
    decomposed = "".join(STYLED_LETTERS.get(c, c) for c in decomposed)
    if len(decomposed) > 1 and decomposed[0] == " " and all(_is_mark(m) for m in decomposed[1:]):
        # spacing diacritic (U+00B4 ...): keep it rather than leave a bare space
        decomposed = unicodedata.normalize("NFD", ch)
    if any(is_removed(c) for c in decomposed):
        decomposed = "".join(c for c in decomposed if not is_removed(c))
        if not decomposed:
            return _REMOVED
    first = decomposed[0]
    if _is_mark(first):
        attach = _ATTACH_MARK
    elif "\u1161" <= first <= "\u1175":
        attach = _ATTACH_VOWEL_JAMO
    elif "\u11a8" <= first <= "\u11c2":
        attach = _ATTACH_FINAL_JAMO
    else:
        attach = _ATTACH_NONE
    alone = unicodedata.normalize("NFC", decomposed)
    has_marks = any(_is_mark(c) for c in alone)
    plain = attach == _ATTACH_NONE and not has_marks and alone == ch
    return (decomposed, attach, alone, has_marks, plain)


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

    def __init__(self, text: str, offsets: OffsetMap | None) -> None:
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
        cache = _INFO_CACHE
        for special in _SPECIAL_RE.finditer(text):
            chunk = special.group()
            # punctuation, symbols, emoji...: as plain as word characters
            if len(chunk) == 1:
                if (cache.get(chunk) or _info(chunk))[4]:
                    continue
            elif all(_info(ch)[4] for ch in chunk):
                continue
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
            attach = info[1]
            if attach and self.cluster_start >= 0:
                parts = self.cluster_parts
                if attach != _ATTACH_MARK:
                    last = parts[-1][-1] if parts is not None else self.cluster_info[0][-1]
                    if attach == _ATTACH_VOWEL_JAMO:
                        joins = "\u1100" <= last <= "\u1112"
                    else:
                        joins = "\u1161" <= last <= "\u1175"
                    if not joins:
                        self.close()
                        self.cluster_start = i
                        self.cluster_end = i + 1
                        self.cluster_info = info
                        self.cluster_parts = None
                        continue
                if parts is None:
                    parts = self.cluster_parts = [self.cluster_info[0]]
                if len(parts) < _MAX_CLUSTER:
                    parts.append(decomposed)
                    self.cluster_end = i + 1
                    continue
                if all(_is_mark(c) for c in decomposed):
                    self.cluster_end = i + 1  # zalgo pile: in the span, left out of the NFC
                    continue
                # too long a run of other attaching characters: start a new cluster
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
    if mode == "never":
        return text
    chars = set(text)
    if _FOLD_KEYS.isdisjoint(chars):
        return text
    if mode == "always":
        return text.translate(_FOLD_TRANSLATE)
    # scripts in genuine use: some letter of theirs has no Latin look-alike
    genuine = {_script(ch) for ch in chars if not ch.isascii() and ch.isalpha() and ch not in _FOLD}
    lookalike_scripts = {_script(ch) for ch in chars if ch in _FOLD and ch.isalpha()}
    parts: list[str] = []
    last = 0
    if lookalike_scripts <= genuine:
        # Rule (b) cannot fire; only mixed-script words fold.  Walk the words that hold a
        # Latin letter (cheaper for mostly non-Latin text).
        if _LATIN_KEYS.isdisjoint(chars):
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
                # rule (b): no letter but look-alikes, two or more of them letters, and their
                # script not in genuine use
                if _LETTER_RE.search(word.translate(_FOLD_DELETE)) is not None:
                    continue
                letters = [ch for ch in word if ch in _FOLD and ch.isalpha()]
                if len(letters) < 2 or any(_script(ch) in genuine for ch in letters):
                    continue
            parts.append(text[last : match.start()])
            parts.append(word.translate(_FOLD_TRANSLATE))
            last = match.end()
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def _readers(fold: FoldMode) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """How what a run decodes to is read: base64 and hex runs as a whole text; character
    references without folding, since the whole text is folded again after them."""
    return partial(normalized_text, fold=fold), partial(normalized_text, fold="never")


def normalize(text: str, *, fold: FoldMode = "auto") -> Normalized:
    """Normalise ``text`` to what it reads as, keeping a map back to original offsets."""
    return with_leet_read(before_leet(text, fold=fold))


def before_leet(text: str, *, fold: FoldMode = "auto") -> Normalized:
    """Steps 1 to 6, all of ``normalize`` but leetspeak (of the text itself: what a
    base64 run or a reference decodes to was read whole, leetspeak included). A second
    reading that changes letters (a shifted alphabet, ``guard.reading.rotated``) starts from here:
    digits already read as letters would rotate into the wrong ones."""
    if text.isascii():
        steps = Normalized(text, text)
    else:
        offsets = OffsetMap()
        read = _Transformer(read_tags(text), offsets).run()  # one character for one
        steps = Normalized(_fold(read, fold), text, offsets)
    decoded = read_encoded(steps, *_readers(fold))
    if decoded is not steps:  # "p&#1072;ssword": a look-alike in a word only now
        decoded = replace(decoded, text=_fold(decoded.text, fold))
    steps = decoded
    joined = join_spelled_words(steps)
    if joined is not steps:
        joined = replace(joined, text=_fold(joined.text, fold))
    return joined


def with_leet_read(text: Normalized) -> Normalized:
    """Step 7 on text read so far; one character for one, so the map stays."""
    read = read_leet(text.text)
    return text if read is text.text else replace(text, text=read)


def normalized_text(text: str, *, fold: FoldMode = "auto") -> str:
    """``normalize(text, fold=fold).text`` without building the offset map."""
    steps = text if text.isascii() else _fold(_Transformer(read_tags(text), None).run(), fold)
    decoded = read_encoded_text(steps, *_readers(fold))
    if decoded is not steps:
        decoded = _fold(decoded, fold)
    steps = decoded
    joined = join_spelled_text(steps)
    if joined is not steps:
        joined = _fold(joined, fold)
    return read_leet(joined)
