"""Log lines as text or as JSON objects, each carrying the request id where there is one.

``guard serve`` hands ``log_config`` to uvicorn, so uvicorn's own lines use the same
format. The request id comes from a context variable that ``RequestIdMiddleware``
sets, so any log call made while serving a request carries it.

A client cannot write a log line of its own: a value it chose (a model name, a path)
goes into a message through ``log_field``, which quotes and escapes it, and the text
format writes every message on one line, control characters escaped (``TextFormatter``).
JSON lines are escaped by JSON itself.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("guard_request_id", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


_PLAIN_FIELD = re.compile(r"[A-Za-z0-9._:/@+=-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
"""What the text format escapes: C0 and C1 controls, line and paragraph separators, and
the bidi controls that can make a terminal show a line other than it is."""


def log_field(value: str) -> str:
    """A client-chosen value as it goes into a log message: as it is when it is plain
    (``fake-model``, ``/v1/chat/completions``), else a JSON string, quoted and escaped
    (``"m\\n2026-01-01 INFO forged"``), so it can neither break the line nor pass for
    the fields around it."""
    if _PLAIN_FIELD.fullmatch(value):
        return value
    return json.dumps(value)


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return named.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


class TextFormatter(logging.Formatter):
    """The text format, one line per message: newlines and other control characters in
    the message are written as ``\\n``, ``\\x1b``, ``\\u202e``... A traceback, which guard itself
    writes, follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        return _CONTROL.sub(_escape_control, line) if _CONTROL.search(line) else line


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id and request_id != "-":
            entry["request_id"] = request_id
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for guard's and uvicorn's loggers."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if log_format == "json"
        else {
            "()": TextFormatter,
            "fmt": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        }
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "guard",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    loggers = {
        name: {"handlers": ["default"], "level": level.upper(), "propagate": False}
        for name in ("guard", "uvicorn", "uvicorn.error")
    }
    loggers["uvicorn.access"] = {"handlers": [], "level": "WARNING", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"guard": formatter},
        "handlers": {"default": handler},
        "loggers": loggers,
    }
