"""Logging of the HTTP server that can hold no secret and no health data.

The access log shows method, path (never the query string: Nightscout clients put tokens and
secrets there), status and duration; no client address, user agent or body. Patient ids in paths
are random identifiers, not personal data.
"""

from __future__ import annotations

import logging
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


def log_config() -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document for uvicorn."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "glucoshare.web.logging.RedactQuery"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "access": {"format": "%(asctime)s access %(message)s"},
        },
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
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
        },
    }
