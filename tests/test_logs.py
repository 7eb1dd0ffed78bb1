"""Log lines: one line per message in the text format, client values quoted."""

from __future__ import annotations

import logging
import sys

import pytest

from guard.logs import TextFormatter, log_field


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("fake-model", "fake-model"),
        ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("m\n2026 INFO forged", '"m\\n2026 INFO forged"'),
        ("a -> 200 (admin, policy open)", '"a -> 200 (admin, policy open)"'),
        ("\x1b[31mred\u202e", '"\\u001b[31mred\\u202e"'),
        ("", '""'),
    ],
)
def test_a_client_value_is_plain_or_quoted_and_escaped(value: str, written: str) -> None:
    assert log_field(value) == written


NASTY = "a\nb\r\x1b[2J\x85\u2028\u202ec\td"


def test_the_text_format_writes_one_line_per_message() -> None:
    formatter = TextFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("guard", logging.WARNING, __file__, 1, "got %s", (NASTY,), None)
    escaped = "WARNING got a\\nb\\r\\x1b[2J\\x85\\u2028\\u202ec\\td"
    assert formatter.format(record) == escaped
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    lines = formatter.format(record).splitlines()
    assert lines[0] == escaped
    assert lines[1] == "Traceback (most recent call last):"  # guard's own, on its lines
