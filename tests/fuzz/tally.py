"""The count of fuzz cases run: (layout or API, engine, outcome) → cases, for ``build/fuzz-report.json``."""

from __future__ import annotations

import collections
import threading

TALLY: collections.Counter[tuple[str, str, str]] = collections.Counter()
"""Cases run per (layout, engine, outcome); outcome is ``stored``, an error code, or an HTTP status class."""

_LOCK = threading.Lock()


def count(layout: str, engine: str, outcome: str) -> None:
    """Count one case."""
    with _LOCK:
        TALLY[layout, engine, outcome] += 1
