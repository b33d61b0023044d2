"""Turn the patient's local calendar dates into UTC instant ranges."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np
import numpy.typing as npt

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


_DAY_MS = 86_400_000
_STEP_MS = 15 * 60_000  # time-zone changes fall on a quarter hour of UTC


def utc_offsets_ms(utc_ms: npt.NDArray[np.int64], timezone: str) -> npt.NDArray[np.int64]:
    """The UTC offset (ms) of ``timezone`` at each instant, so that wall time = instant + offset.

    Asks the zone database once per UTC day and, on a day with a change, once per quarter hour.
    """
    if utc_ms.size == 0:
        return np.empty(0, np.int64)
    tz = zoneinfo.ZoneInfo(timezone)

    def offset_at(instant_ms: int) -> int:
        moment = dt.datetime.fromtimestamp(instant_ms / 1000, tz=dt.UTC).astimezone(tz)
        delta = moment.utcoffset()
        return 0 if delta is None else int(delta.total_seconds() * 1000)

    days = np.unique(utc_ms // _DAY_MS)
    index = np.searchsorted(days, utc_ms // _DAY_MS)
    at_start = np.empty(days.size, np.int64)
    changing: list[int] = []
    for position, day in enumerate(days.tolist()):
        start = day * _DAY_MS
        at_start[position] = offset_at(start)
        if offset_at(start + _DAY_MS - _STEP_MS) != at_start[position]:
            changing.append(position)
    out = at_start[index]
    for position in changing:  # a day with a change: quarter hour by quarter hour
        start = int(days[position]) * _DAY_MS
        table = np.array([offset_at(start + k * _STEP_MS) for k in range(_DAY_MS // _STEP_MS)], np.int64)
        here = index == position
        out[here] = table[(utc_ms[here] - start) // _STEP_MS]
    return out
