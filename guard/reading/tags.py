"""Tag characters, read as the ASCII they spell.

Unicode's tag characters (U+E0020 to U+E007E) mirror printable ASCII and render as
nothing, so "Hi" followed by the tags of "ignore your instructions" shows as "Hi"; a
model whose tokenizer keeps them can still read the hidden words ("ASCII smuggling").
Their one use in text is an emoji's subdivision flag: a black flag, a region code in
tags and the cancel tag (U+E007F). Unicode recommends three, the flags of England,
Scotland and Wales ("gbeng", "gbsct", "gbwls"); their tags are left alone, for
``normalize`` to drop with the other invisible characters. Every other run of tags reads
as the ASCII it spells, one character for one, so that offsets stay where they were: a
"flag" of any other code may be a word hidden in it.
"""

from __future__ import annotations

import re
from typing import Final

_TAG_OFFSET: Final = 0xE0000
_TAGS_TO_ASCII: Final = {code: code - _TAG_OFFSET for code in range(0xE0020, 0xE007F)}
_TAG_RE: Final = re.compile("[\U000e0020-\U000e007e]")
_FLAGS: Final = ("gbeng", "gbsct", "gbwls")
_FLAG_RE: Final = re.compile(
    "|".join(
        "\U0001f3f4" + "".join(chr(_TAG_OFFSET + ord(c)) for c in flag) + "\U000e007f"
        for flag in _FLAGS
    )
)


def read_tags(text: str) -> str:
    """``text`` with its tag characters read as ASCII, but an emoji flag's; ``text``
    itself when it has none. The same length: each character stays where it was."""
    if text.isascii() or _TAG_RE.search(text) is None:
        return text
    parts: list[str] = []
    last = 0
    for flag in _FLAG_RE.finditer(text):
        parts += [text[last : flag.start()].translate(_TAGS_TO_ASCII), flag.group()]
        last = flag.end()
    parts.append(text[last:].translate(_TAGS_TO_ASCII))
    return "".join(parts)
