"""Verdicts already given, so a long conversation is not judged again on every turn.

One cache per input rail, bounded, least recently used out. The key is a hash of what
the classifier reads: the text and its role, plus the conversation before it for a
classifier that reads that too. Only verdicts are kept; an error is never remembered.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import orjson

from guard.components.base import Subject, Verdict


class VerdictCache:
    def __init__(self, size: int = 10_000):
        self.size = size
        self._entries: OrderedDict[bytes, Verdict] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(subject: Subject, context_read: Any = None) -> bytes:
        """The subject's key, with what the classifier reads of its context (None: none)."""
        digest = hashlib.sha256()
        digest.update(subject.role.encode())
        digest.update(b"\0")
        digest.update(subject.text.encode("utf-8", "surrogatepass"))
        if context_read is not None:
            digest.update(b"\0")
            digest.update(orjson.dumps(context_read, option=orjson.OPT_SORT_KEYS))
        return digest.digest()

    def get(self, key: bytes) -> Verdict | None:
        verdict = self._entries.get(key)
        if verdict is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return verdict

    def put(self, key: bytes, verdict: Verdict) -> None:
        self._entries[key] = verdict
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
