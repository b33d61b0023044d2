"""Turn the patient's local calendar dates into UTC instant ranges."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from glucoshare.errors import InputError


class InvalidPeriodError(InputError):
    """The dates of a period are malformed or out of order."""

    code = "invalid_period"


def parse_local_date(value: str, option: str) -> dt.date:
    """Parse ``YYYY-MM-DD``; raise :class:`InvalidPeriodError` naming ``option`` otherwise."""
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        msg = f"{option}: {value!r} is not a date in the form YYYY-MM-DD"
        raise InvalidPeriodError(msg) from exc


def local_day_start_ms(day: dt.date, timezone: str) -> int:
    """The UTC instant (epoch ms) of local midnight starting ``day`` in ``timezone``.

    A midnight skipped by a daylight-saving change resolves to the first instant after the gap.
    """
    tz = zoneinfo.ZoneInfo(timezone)
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    return int(midnight.timestamp() * 1000)


def local_dates_to_range(
    start: dt.date | None, end: dt.date | None, timezone: str
) -> tuple[int | None, int | None]:
    """``[start, end]`` inclusive local dates → ``[start_ms, end_ms)`` UTC epoch milliseconds."""
    if start is not None and end is not None and end < start:
        msg = "--to is before --from"
        raise InvalidPeriodError(msg)
    start_ms = local_day_start_ms(start, timezone) if start is not None else None
    end_ms = local_day_start_ms(end + dt.timedelta(days=1), timezone) if end is not None else None
    return start_ms, end_ms
