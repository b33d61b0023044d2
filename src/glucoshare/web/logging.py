"""Logging of the HTTP server and the workers that can hold no secret and no health data.

The access log shows method, path (never the query string: Nightscout clients put tokens and
secrets there), status and duration; no client address, user agent or body. Patient ids in paths
are random identifiers, not personal data. A traceback is logged as the chain of exception types
and the places they passed (file, line, function), never with the exceptions' messages: those of
a database driver quote the statement's values (a reading, an e-mail address).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any


class RedactQuery(logging.Filter):
    """Drop the query string from uvicorn's access-log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's path argument without its query string; keep the record."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 5:  # noqa: PLR2004 - uvicorn: client, method, path, version, status
            path = str(args[2]).split("?", 1)[0]
            record.args = ("-", args[1], path, args[3], args[4])
        return True


def safe_traceback(error: BaseException) -> str:
    """The exception chain as types and places only (no message), most recent call last."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        places = [f"  {frame.filename}:{frame.lineno} in {frame.name}" for frame in frames]
        parts.insert(0, "\n".join([*places, f"{type(current).__module__}.{type(current).__qualname__}"]))
        current = current.__cause__ or current.__context__
    return "\n(caused by the above)\n".join(parts)


class SafeTracebacks(logging.Filter):
    """Replace a record's traceback by :func:`safe_traceback` (types and places, no messages)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's exception information; keep the record."""
        if record.exc_info and record.exc_info[1] is not None:
            summary = safe_traceback(record.exc_info[1])
            record.msg = f"{record.getMessage()}\n{summary}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def log_config() -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document for uvicorn."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": "glucoshare.web.logging.RedactQuery"},
            "safe": {"()": "glucoshare.web.logging.SafeTracebacks"},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "access": {"format": "%(asctime)s access %(message)s"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["safe"],
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "glucoshare": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "procrastinate": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
    }
