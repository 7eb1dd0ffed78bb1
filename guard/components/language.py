"""``language``: flags text written in a language the policy's other rails cannot read.

The built-in ``embedding`` and ``attacks`` classifiers read English (MiniLM-L6 was trained
on English text): a request in German or Hindi is, to them, a string of sub-word
fragments, and most of it passes whatever it asks. This rail turns "guard cannot read
it" into a verdict the policy acts on, rather than a silent pass.

Two language identifiers must agree before a text counts as foreign, because each alone
is wrong on short or technical English: langid.py (``py3langid``, naive Bayes over byte
n-grams) calls "quantum computing" Latin at 0.92, and CLD2 (``pycld2``) calls a shell
command Danish with its "reliable" flag set. A text is foreign when

* most of its letters (at least ``MIN_SCRIPT_LETTERS``) are outside the Latin script and
  langid.py's language is not accepted (an English model reads CJK, Devanagari or Hangul
  as unknown tokens), or
* it has at least ``MIN_LETTERS`` letters, langid.py gives a language that is not
  accepted a probability of at least ``MIN_PROBABILITY``, and CLD2 reliably detects a
  language that is not accepted either.

A long text is read in windows of ``WINDOW_CHARS`` (the rail's overlapping windows), so a
paragraph in another language inside an English document is found.
"""

from __future__ import annotations

from typing import Any, Final

from guard.components.base import TextChecker, Verdict
from guard.components.specs import LanguageSpec

WINDOW_CHARS: Final = 300
"""A short paragraph: long enough for both identifiers to be sure, short enough that a
foreign paragraph of about 150 characters or more is most of some window. (On the dev
sets' English rows, windows of 300, 400 and 600 flagged none.)"""
MIN_PROBABILITY: Final = 0.5
MIN_LETTERS: Final = 8
"""Fewer letters than this say too little: three Greek letters in a formula are not a
request in Greek."""
MIN_SCRIPT_LETTERS: Final = 4
CLD2_ALIASES: Final = {"iw": "he", "jw": "jv", "in": "id"}
"""CLD2's older codes -> the ISO 639-1 codes langid.py and policies use."""


class LanguageClassifier(TextChecker):
    window_chars = WINDOW_CHARS

    def __init__(self, spec: LanguageSpec):
        try:
            import pycld2
            from py3langid.langid import MODEL_FILE, LanguageIdentifier
        except ImportError as exc:
            raise RuntimeError(
                "kind 'language' needs the language extra: pip install 'guard[language]'"
            ) from exc
        self.accepted = frozenset(spec.languages)
        self.cld2: Any = pycld2
        self.langid = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        known = set(self.langid.nb_classes)
        if unknown := sorted(self.accepted - known):
            # A typo ("eng") would otherwise refuse every text in the language meant.
            raise ValueError(
                f"languages: {unknown} not known to the language identifier; "
                f"use ISO 639-1 codes such as {sorted(known & {'de', 'en', 'es', 'fr', 'ja'})}"
            )

    def check(self, text: str) -> Verdict:
        found = self.foreign_language(text)
        if found is None:
            return Verdict(flagged=False, score=0.0)
        return Verdict(flagged=True, score=1.0, categories=(found,))

    def foreign_language(self, text: str) -> str | None:
        """The language ``text`` is written in, when it is not an accepted one and both
        identifiers say so; else None. CLD2 (microseconds) speaks first: most texts stop
        there."""
        if not text.isascii() and mostly_outside_latin(text):
            language = str(self.langid.classify(text)[0])
            return None if language in self.accepted else language
        second = self.cld2_language(text)
        if second is None or second in self.accepted:
            return None
        if sum(char.isalpha() for char in text) < MIN_LETTERS:
            return None
        language, probability = self.langid.classify(text)
        if language in self.accepted or probability < MIN_PROBABILITY:
            return None
        return str(language)

    def cld2_language(self, text: str) -> str | None:
        """CLD2's language for ``text`` when it is reliable, as an ISO 639-1 code."""
        try:
            reliable, _, details = self.cld2.detect(text)
        except (self.cld2.error, UnicodeEncodeError):  # some controls; lone surrogates
            return None
        code: str = details[0][1].split("-")[0]
        if not reliable or code == "un":
            return None
        return CLD2_ALIASES.get(code, code)


def mostly_outside_latin(text: str) -> bool:
    letters = [char for char in text if char.isalpha()]
    others = sum(1 for char in letters if not _latin(char))
    return others >= MIN_SCRIPT_LETTERS and others * 2 >= len(letters)


def _latin(char: str) -> bool:
    """Basic Latin to Latin Extended-B, IPA, and Latin Extended Additional."""
    point = ord(char)
    return point < 0x0300 or 0x1E00 <= point <= 0x1EFF
