"""The regex kind: RE2 patterns that find what the Python-re presets found, in linear time,
matched off the event loop when the text is large."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.components.base import Subject, Verdict
from guard.components.regex import OFF_LOOP_CHARS, PRESETS, RegexClassifier, Rule, luhn_valid
from guard.components.specs import RegexSpec
from guard.pipeline.rails import Rail, judge
from tests.conftest import Fake, guard_app, write_policy
from tests.servers import serve_in_thread

# The presets as they were under Python's re, lookaround and all: the reference for
# what the RE2 rewrite must still find.
PYTHON_RE_PRESETS = {
    "secrets": [
        r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",
        r"\bAKIA[0-9A-Z]{16}\b",
        r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
        r"\bAIza[0-9A-Za-z_-]{35}\b",
        r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
    ],
    "email": [r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"],
    "phone": [
        r"(?<![\w+])\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}(?!\w)",
        r"(?<!\w)(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?!\w)",
    ],
    "credit_card": [r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"],
}
ALL = RegexClassifier(RegexSpec(kind="regex", presets=["secrets", "pii"]))


def python_re_matches(text: str) -> list[tuple[str, tuple[int, int]]]:
    found = []
    for category, patterns in PYTHON_RE_PRESETS.items():
        for pattern in patterns:
            for match in re.finditer(pattern, text):
                if category != "credit_card" or luhn_valid(match.group()):
                    found.append((category, match.span()))
    return sorted(found)


def re2_matches(text: str) -> list[tuple[str, tuple[int, int]]]:
    data = text.encode()
    found = []
    for rule in ALL.rules:
        for start, end in rule.spans(data):
            if rule.category != "credit_card" or luhn_valid(data[start:end].decode()):
                chars = len(data[:start].decode()), len(data[:end].decode())
                found.append((rule.category, chars))
    return sorted(found)


EXAMPLES = [
    "call +44 20 7946 0958 or (415) 555-0100 or 415.555.0100 today",
    "415-555-0100 415-555-0101,415-555-0102",  # neighbours share their context character
    "a415-555-0100 415-555-01001 ++44 20 7946 0958 x+1 212 555 0100 but (212) 555-0100",
    "+44 20 7946 09581",  # a longer split of the groups ends before a non-word character
    "card 4111 1111 1111 1111, 4111-1111-1111-1111 and 41111111111111112 and 5500005555555559",
    "4111 1111 1111 1111 1111 1111",  # a run too long: a shorter one ends at a space
    "mail bob@example.com, .alice@mail.example.org. x@y.z",
    "AKIAABCDEFGHIJKLMNOP sk-abcdefghijklmnopqrstuvwxyz0123 xoxb-1234567890ab",
    "ghp_" + "a" * 36 + " AIza" + "B" * 35 + " eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeK",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- and "
    "-----BEGIN PRIVATE KEY-----\nunterminated",
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_presets_find_what_the_python_re_presets_found(text: str) -> None:
    assert re2_matches(text) == python_re_matches(text)
    assert python_re_matches(text), "each example holds something to find"


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(alphabet="0123456789" * 3 + " -.+()@_aZx\n", max_size=60))
def test_presets_agree_with_python_re_on_any_ascii_text(text: str) -> None:
    assert re2_matches(text) == python_re_matches(text)


@pytest.mark.parametrize("comma", [",", "，"])  # noqa: RUF001 - a full-width comma, 3 bytes
def test_a_match_s_last_character_can_be_the_next_one_s_context(comma: str) -> None:
    """As lookbehind reads it: ``(?<![^,])\\d+,(?=\\d|\\Z)`` finds both numbers in '1,2,'."""
    pattern = re2.compile(rf"(?:^|{comma})(?P<hit>\d+{comma})(?:\d|\z)")
    rule = Rule("test", pattern, hit=pattern.groupindex["hit"])
    data = f"1{comma}2{comma}".encode()
    width = len(comma.encode())
    assert list(rule.spans(data)) == [(0, 1 + width), (1 + width, 2 + 2 * width)]


def test_digits_and_word_characters_of_other_scripts_count_as_before() -> None:
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in "4111111111111111")
    assert re2_matches(f"card {arabic_indic}.") == python_re_matches(f"card {arabic_indic}.")
    assert ALL.check(f"card {arabic_indic}.").categories == ("credit_card",)
    # A phone number glued to a Cyrillic letter is part of a word, as under Python's re.
    assert ALL.check("ж415-555-0100").spans == ()
    assert ALL.check("ж 415-555-0100").categories == ("phone",)


def test_ascii_word_boundary_next_to_a_non_ascii_letter() -> None:
    """RE2's \\b is ASCII (docs/safety.md): Python's re missed this address, RE2 finds it;
    the one case the other way is a Google key that ends in '-' before such a letter."""
    assert python_re_matches("ébob@example.com") == []
    verdict = ALL.check("ébob@example.com")
    assert verdict.categories == ("email",) and verdict.spans == ((1, 16),)
    google = "AIza" + "B" * 34 + "-"
    assert python_re_matches(google + "é") == [("secrets", (0, 39))]
    assert ALL.check(google + "é").spans == ()
    assert ALL.check(google + "x").spans == ((0, 39),)


def test_spans_are_characters_of_the_text_not_bytes() -> None:
    text = "héllo wörld 🙂 mail bob@example.com and +44 20 7946 0958"
    verdict = ALL.check(text)
    assert [text[a:b] for a, b in verdict.spans] == ["bob@example.com", "+44 20 7946 0958"]


def test_every_rule_runs_on_re2_and_a_catastrophic_pattern_completes() -> None:
    presets = list(PRESETS)
    classifier = RegexClassifier(RegexSpec(kind="regex", presets=presets, patterns=["(a+)+$"]))
    assert {type(rule.pattern) for rule in classifier.rules} == {type(re2.compile("a"))}
    # Backtracking takes 2**50 steps here; RE2 reads the text once.
    assert classifier.check("a" * 50 + "b").spans == ()
    assert classifier.check("a" * 50).spans == ((0, 50),)


def test_a_lookaround_pattern_is_refused_in_words() -> None:
    with pytest.raises(ValueError, match="lookahead or lookbehind") as caught:
        RegexSpec(kind="regex", patterns=["secret(?!ary)"])
    assert "RE2" in str(caught.value)
    with pytest.raises(ValueError, match="backreferences"):
        RegexSpec(kind="regex", patterns=[r"(\w)\1"])
    with pytest.raises(ValueError, match="not a valid regular expression"):
        RegexSpec(kind="regex", patterns=["("])


# ------------------------------------------------------------------- off the event loop


@contextmanager
def spied_matching(monkeypatch: pytest.MonkeyPatch, release: threading.Event) -> Iterator[dict]:
    """Record the thread that matches and hold it until ``release`` (at most 10 s)."""
    seen: dict = {"entered": threading.Event(), "released": None}
    real = RegexClassifier.check_all

    def check_all(self: RegexClassifier, subjects: Sequence[Subject]) -> list[Verdict]:
        seen["thread"] = threading.get_ident()
        seen["entered"].set()
        seen["released"] = release.wait(timeout=10)
        return real(self, subjects)

    monkeypatch.setattr(RegexClassifier, "check_all", check_all)
    yield seen


def test_a_large_text_is_matched_in_a_thread_so_the_rail_timeout_fires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = RegexSpec(kind="regex", presets=["email"], timeout_s=0.2)
    rail = Rail(spec, RegexClassifier(spec))
    release = threading.Event()
    large = Subject("a-" * OFF_LOOP_CHARS)

    async def run() -> tuple[str, str | None, int]:
        [judgement] = await judge([rail], [large], "input")
        release.set()
        [report] = judgement.reports
        return report.outcome, report.error, threading.get_ident()

    with spied_matching(monkeypatch, release) as seen:
        outcome, reason, loop_thread = asyncio.run(run())
    assert seen["thread"] != loop_thread
    assert outcome == "error" and reason == "timed out after 0.2 s"


def test_a_short_text_is_matched_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = RegexSpec(kind="regex", presets=["email"])
    release = threading.Event()
    release.set()

    async def run() -> int:
        await judge([Rail(spec, RegexClassifier(spec))], [Subject("bob@example.com")], "input")
        return threading.get_ident()

    with spied_matching(monkeypatch, release) as seen:
        loop_thread = asyncio.run(run())
    assert seen["thread"] == loop_thread


def test_guard_answers_health_while_a_large_prompt_is_matched(
    fake_upstream: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = write_policy(
        tmp_path,
        "name: p\nmodels: {'*': null}\ninput_rails:\n  - {kind: regex, presets: [secrets, pii]}\n"
        "output_rails: []\n",
    )
    prompt = "eyJ-a." * 30_000  # 180 KB that made the Python-re presets backtrack
    release = threading.Event()
    answers: list[httpx.Response] = []
    with (
        spied_matching(monkeypatch, release) as seen,
        serve_in_thread(guard_app(fake_upstream.url, [policy])) as url,
    ):
        body = {"model": "fake-model", "messages": [{"role": "user", "content": prompt}]}
        chat = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            )
        )
        chat.start()
        assert seen["entered"].wait(timeout=30)
        health = httpx.get(f"{url}/health", timeout=5)  # the match is held until this answers
        release.set()
        chat.join(timeout=30)
    assert health.status_code == 200
    assert seen["released"] is True
    [answer] = answers
    assert answer.status_code == 200 and answer.headers["x-guard-verdict"] == "pass"
