"""Regenerate the homoglyph fold table, ``guard/reading/fold_table.py``.

With the ``confusable-homoglyphs`` package (MIT licence; a development dependency)::

    .venv/bin/python scripts/gen_fold_table.py > /tmp/fold_table.txt

and paste the output as the body of the ``FOLD_CODEPOINTS`` dict literal between the
``BEGIN GENERATED`` / ``END GENERATED`` markers (inside the ``# fmt: off`` / ``# fmt: on``
pair). ``tests/reading/test_normalize.py::test_fold_table_matches_generator`` checks that
the two agree.

The package ships, as ``confusables.json``, a symmetric view of Unicode's
``confusables.txt`` (UTS #39 security data, Unicode License v3); it is only read here, at
generation time, and is not a runtime dependency.

Selection rule (docs/safety.md, "Text as it reads", says why):

* the source is a single non-ASCII character that NFKC leaves unchanged (NFKC already
  handles full-width forms, mathematical alphanumerics, ligatures, ...);
* the source is a letter or a number (Unicode category L* or N*); symbols such as
  U+00D7 MULTIPLICATION SIGN or box drawing characters are not folded;
* the confusables.txt prototype is exactly one ASCII letter or digit;
* an uppercase source whose prototype is ``l`` (Unicode's prototype for the I/l/1 class)
  is folded to ``I`` instead, so that e.g. Cyrillic U+0406 reads as the capital I it imitates.

Then a second pass adds precomposed letters whose canonical decomposition is a folded base
plus combining marks, when the folded base plus those marks composes to one character
(e.g. Cyrillic U+0451 small io -> U+00EB e with diaeresis), so that a letter keeps folding
when it carries an accent.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from importlib import resources


def build() -> dict[int, str]:
    data = json.loads(
        resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    )
    table: dict[int, str] = {}
    for src, entries in data.items():
        if len(src) != 1 or src.isascii():
            continue
        if unicodedata.normalize("NFKC", src) != src:
            continue
        if unicodedata.category(src)[0] not in "LN":
            continue
        targets = {
            e["c"] for e in entries if len(e["c"]) == 1 and e["c"].isascii() and e["c"].isalnum()
        }
        if not targets:
            continue
        if len(targets) != 1:
            raise SystemExit(f"ambiguous prototype for U+{ord(src):04X}: {sorted(targets)}")
        target = targets.pop()
        if target == "l" and unicodedata.category(src) == "Lu":
            target = "I"
        table[ord(src)] = target
    # accented variants of folded letters
    for cp in range(0x80, 0x110000):
        ch = chr(cp)
        if cp in table or unicodedata.category(ch)[0] != "L":
            continue
        if unicodedata.normalize("NFKC", ch) != ch:
            continue
        nfd = unicodedata.normalize("NFD", ch)
        if len(nfd) < 2 or ord(nfd[0]) not in table:
            continue
        if not all(unicodedata.category(m).startswith("M") for m in nfd[1:]):
            continue
        folded = unicodedata.normalize("NFC", table[ord(nfd[0])] + nfd[1:])
        if len(folded) == 1:
            table[cp] = folded
    return dict(sorted(table.items()))


def main() -> None:
    table = build()
    items = [f"0x{cp:04X}: {json.dumps(t)}," for cp, t in table.items()]
    line = "    "
    out = []
    for item in items:
        if len(line) + len(item) + 1 > 96:
            out.append(line.rstrip())
            line = "    "
        line += item + " "
    out.append(line.rstrip())
    sys.stdout.write(f"# {len(table)} entries, Unicode {unicodedata.unidata_version} NFD data\n")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
