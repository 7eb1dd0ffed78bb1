"""``regex``: patterns, with presets for secrets and common PII. It can redact.

Every pattern, preset or a policy's own, runs on RE2 (the ``google-re2`` package): its
matching time grows linearly with the text whatever the pattern says, so no text can
make a rail backtrack for seconds. RE2 has no lookaround and no backreferences; where a
preset needs to see past its match (a phone number not glued to a word, a card number
not inside a longer run of digits), the pattern also reads the character on either side,
and only its group ``hit`` counts as found (``Rule.hit``). RE2 matches UTF-8, so a text
is encoded once and spans come back in bytes, mapped to characters at the end.

Texts longer than ``OFF_LOOP_CHARS`` in all are matched in a thread (RE2 releases the
GIL), so the rail's ``timeout_s`` can fire and the event loop keeps serving meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import re2

from guard.components.base import TextChecker, Verdict
from guard.components.specs import RE2_OPTIONS, RegexSpec

OFF_LOOP_CHARS: Final = 4096
"""Texts longer than this, together, are matched in a thread. On the loop, 4 KB of prose
takes about 0.1 ms with every preset, and 4 KB packed with phone numbers or cards about
2 ms (Python's work per match)."""

# `\w` and `\d` as Python's re read them (any script); RE2's own are ASCII only.
# \b in the \b-presets stays RE2's ASCII one: next to a letter outside ASCII it sees a
# boundary where Python's re saw none (docs/safety.md).
_SECRETS = [
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",  # OpenAI / Anthropic style keys
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub tokens
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API keys
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWTs
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\z)",
]
_EMAIL = [r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"]
# Around the group `hit`: not after a word character or '+', not before a word character.
_PHONE = [
    # +44 20 7946 0958
    r"(?:^|[^\pL\pN_+])"
    r"(?P<hit>\+\p{Nd}{1,3}[ .-]?\(?\p{Nd}{1,4}\)?(?:[ .-]?\p{Nd}{2,4}){2,4})"
    r"(?:[^\pL\pN_]|\z)",
    # (415) 555-0100, 415-555-0100
    r"(?:^|[^\pL\pN_])"
    r"(?P<hit>(?:\(\p{Nd}{3}\) ?|\p{Nd}{3}[.-])\p{Nd}{3}[.-]\p{Nd}{4})"
    r"(?:[^\pL\pN_]|\z)",
]
# Around the group `hit`: no digit on either side.
_CARD = [r"(?:^|\P{Nd})(?P<hit>(?:\p{Nd}[ -]?){12,18}\p{Nd})(?:\P{Nd}|\z)"]

PATTERNS: dict[str, list[str]] = {
    "secrets": _SECRETS,
    "email": _EMAIL,
    "phone": _PHONE,
    "credit_card": _CARD,
}
"""Pattern group -> its patterns, in RE2 syntax."""
PRESETS: dict[str, list[str]] = {
    **{name: [name] for name in PATTERNS},
    "pii": ["email", "phone", "credit_card"],
}
"""Preset name -> the pattern groups it turns on."""


def luhn_valid(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()]
    checksum = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        checksum += digit
    return checksum % 10 == 0


@dataclass(frozen=True)
class Rule:
    category: str
    pattern: Any
    """A compiled ``re2`` pattern."""
    hit: int = 0
    """The group that is the match. 0: the whole match; else the rest of the pattern is
    context on either side (a character, or the text's edge), read but not found."""

    def spans(self, data: bytes) -> Iterator[tuple[int, int]]:
        """Byte spans of the matches in ``data`` (UTF-8), left to right, not overlapping."""
        if not self.hit:
            for match in self.pattern.finditer(data):
                yield match.span()
            return
        pos = 0
        while (match := self.pattern.search(data, pos)) is not None:
            start, end = match.span(self.hit)
            yield start, end
            # The next match may read this one's last character as its context (as
            # lookbehind would): search again from where that character starts.
            pos = end - 1
            while pos > start and data[pos] & 0xC0 == 0x80:
                pos -= 1
            pos = max(pos, start + 1)


class RegexClassifier(TextChecker):
    can_redact = True
    off_loop_chars = OFF_LOOP_CHARS

    def __init__(self, spec: RegexSpec):
        self.spec = spec
        self.rules: list[Rule] = []
        groups = dict.fromkeys(group for preset in spec.presets for group in PRESETS[preset])
        for group in groups:
            for pattern in PATTERNS[group]:
                compiled = re2.compile(pattern, RE2_OPTIONS)
                self.rules.append(Rule(group, compiled, compiled.groupindex.get("hit", 0)))
        self.rules += [Rule("pattern", re2.compile(p, RE2_OPTIONS)) for p in spec.patterns]
        self.categories = tuple(dict.fromkeys(rule.category for rule in self.rules))

    def check(self, text: str) -> Verdict:
        data = text.encode()
        spans: list[tuple[int, int]] = []
        categories: list[str] = []
        for rule in self.rules:
            for start, end in rule.spans(data):
                if rule.category == "credit_card" and not luhn_valid(data[start:end].decode()):
                    continue
                spans.append((start, end))
                if rule.category not in categories:
                    categories.append(rule.category)
        if not text.isascii():
            spans = _char_spans(data, spans)
        return Verdict(
            flagged=bool(spans),
            score=1.0 if spans else 0.0,
            categories=tuple(categories),
            spans=tuple(_merged(spans)),
        )


def _char_spans(data: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` of UTF-8 ``data`` in bytes, as spans of the decoded text in characters."""
    chars: dict[int, int] = {}
    last_byte = last_char = 0
    for offset in sorted({offset for span in spans for offset in span}):
        last_char += len(data[last_byte:offset].decode())
        last_byte, chars[offset] = offset, last_char
    return [(chars[start], chars[end]) for start, end in spans]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
