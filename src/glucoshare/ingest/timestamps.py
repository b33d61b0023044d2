"""Fast parsers for the wall-time formats vendor exports use (no zone; see :mod:`.localtime`)."""

from __future__ import annotations

import datetime as dt
import re

_ISO_LOOSE = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*$"
)


def parse_iso_wall_time(value: str) -> dt.datetime:
    """Parse ``YYYY-MM-DDThh:mm:ss`` and the variants Excel writes when it re-saves a file.

    Accepts a space instead of ``T``, a one-digit hour and no seconds. Raises ``ValueError``.
    """
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        match = _ISO_LOOSE.match(value)
        if match is None:
            raise
        year, month, day, hour, minute, second, fraction = match.groups()
        micro = int((fraction or "0").ljust(6, "0"))
        return dt.datetime(  # noqa: DTZ001 - wall time, resolved later
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro
        )
    if parsed.tzinfo is not None:
        msg = "a local wall time was expected, not a time with an offset"
        raise ValueError(msg)
    return parsed
