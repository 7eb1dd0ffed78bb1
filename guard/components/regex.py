"""``regex``: patterns, with presets for secrets and common PII. It can redact."""

from __future__ import annotations

import re
from collections.abc import Sequence

from guard.components.base import Classifier, Subject, Verdict
from guard.components.specs import RegexSpec

_SECRETS = [
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",  # OpenAI / Anthropic style keys
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub tokens
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API keys
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWTs
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
]
_EMAIL = [r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"]
_PHONE = [
    r"(?<![\w+])\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}(?!\w)",  # +44 20 7946 0958
    r"(?<!\w)(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?!\w)",  # (415) 555-0100, 415-555-0100
]
_CARD = [r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"]

PATTERNS: dict[str, list[str]] = {
    "secrets": _SECRETS,
    "email": _EMAIL,
    "phone": _PHONE,
    "credit_card": _CARD,
}
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


class RegexClassifier(Classifier):
    can_redact = True

    def __init__(self, spec: RegexSpec):
        self.spec = spec
        self.rules: list[tuple[str, re.Pattern[str]]] = []
        groups = dict.fromkeys(group for preset in spec.presets for group in PRESETS[preset])
        for group in groups:
            self.rules += [(group, re.compile(pattern)) for pattern in PATTERNS[group]]
        self.rules += [("pattern", re.compile(p)) for p in spec.patterns]

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        return [self.check(subject.text) for subject in subjects]

    def check(self, text: str) -> Verdict:
        spans: list[tuple[int, int]] = []
        categories: list[str] = []
        for category, pattern in self.rules:
            for match in pattern.finditer(text):
                if category == "credit_card" and not luhn_valid(match.group()):
                    continue
                spans.append(match.span())
                if category not in categories:
                    categories.append(category)
        return Verdict(
            flagged=bool(spans),
            score=1.0 if spans else 0.0,
            categories=tuple(categories),
            spans=tuple(_merged(spans)),
        )


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
