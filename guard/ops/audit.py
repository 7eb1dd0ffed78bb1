"""The audit log: one JSON line per request, in a file that rotates by size.

A line is written when a request has finished (after its shadow policy, if any).
A write that fails never fails the request: it is counted in
``guard_audit_write_failures_total`` and logged, at most once a minute. The format
is in docs/operations.md; ``guard audit FILE`` summarises a log.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Counter

log = logging.getLogger("guard")


class _Handler(logging.handlers.RotatingFileHandler):
    def __init__(self, path: Path, max_bytes: int, backups: int, failures: Counter):
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.setFormatter(logging.Formatter("%(message)s"))
        self._failures = failures
        self._last_warning = 0.0

    def handleError(self, record: logging.LogRecord) -> None:
        self._failures.inc()
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            log.warning("cannot write the audit log %s; lines are being lost", self.baseFilename)


class AuditLog:
    """Writes audit lines. Opening the file at start-up fails loudly (bad path, no rights)."""

    def __init__(self, path: Path, max_bytes: int, backups: int, failures: Counter):
        self.path = path
        self._handler = _Handler(path, max_bytes, backups, failures)

    def write(self, entry: dict[str, Any]) -> None:
        line = orjson.dumps(entry, default=str).decode()
        record = logging.LogRecord("guard.audit", logging.INFO, "", 0, line, None, None)
        self._handler.handle(record)

    def close(self) -> None:
        """Close the file. Lines it could not take were counted when they failed."""
        try:
            self._handler.close()
        except OSError as exc:
            log.warning("cannot flush the audit log %s on close: %s", self.path, exc)
