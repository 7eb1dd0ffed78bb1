"""``guard hash-key``: it hashes any key, and says so when a key is too weak to hash."""

from __future__ import annotations

import io

import pytest

from guard.cli.main import main
from guard.cli.ops import MIN_KEY_BITS, MIN_KEY_CHARS, key_weaknesses
from guard.ops.keys import hash_key


@pytest.mark.parametrize(
    ("key", "problems"),
    [
        ("sk-123", ["has 6 characters, fewer than 32", "about 37 bits, fewer than 128"]),
        ("1234567890" * 4, ["repeats a 10-character pattern"]),  # 133 bits by its alphabet
        ("7" * 40, ["repeats one character"]),
        ("31415926535897932384626433832795028841", ["about 126 bits, fewer than 128"]),
        ("abcdefghijklmnopqrstuvwxyzabcde", ["has 31 characters"]),
    ],
)
def test_weak_keys_and_why(key: str, problems: list[str]) -> None:
    found = key_weaknesses(key)
    assert len(found) == len(problems)
    for expected, said in zip(problems, found, strict=True):
        assert expected in said


@pytest.mark.parametrize(
    "key",
    [
        "sk-guard-VQ0zbGo7r5yhqwHG3yIgQdDxWHzhRIIwEtx_8sfnPGY",  # what --new makes
        "abb48cde75d3b8281444a7f0b2a13efb",  # 32 hex digits: 128 random bits
        "correcthorsebatterystaplecorrecthorse",  # a heuristic: it cannot see words
    ],
)
def test_long_varied_keys_pass(key: str) -> None:
    assert key_weaknesses(key) == []


def test_the_threshold() -> None:
    assert (MIN_KEY_CHARS, MIN_KEY_BITS) == (32, 128)


def test_hash_key_warns_on_stderr_and_still_prints_the_hash(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["hash-key", "sk-123"]) == 0
    out, err = capsys.readouterr()
    assert out == hash_key("sk-123") + "\n"
    assert err.startswith("warning: this key is weak: it has 6 characters, fewer than 32;")
    assert "guard hash-key --new" in err and "sk-123" not in err  # the key is not echoed
    monkeypatch.setattr("sys.stdin", io.StringIO("7777777777777777777777777777777777777\n"))
    assert main(["hash-key"]) == 0
    assert "repeats one character" in capsys.readouterr().err


def test_strong_and_new_keys_never_warn(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-key", "sk-guard-VQ0zbGo7r5yhqwHG3yIgQdDxWHzhRIIwEtx_8sfnPGY"]) == 0
    assert capsys.readouterr().err == ""
    for _ in range(20):
        assert main(["hash-key", "--new"]) == 0
        assert capsys.readouterr().err == ""
