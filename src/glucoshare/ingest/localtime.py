"""Map the local wall times of vendor exports to UTC instants, through daylight-saving changes.

Vendor exports (Clarity, LibreView, CareLink, ...) write local wall time without an offset. A
:class:`LocalClock` resolves one *stream* of records that the importer feeds in the device's own
chronological order (a device's log order, not a sorted order):

* an ordinary wall time maps to the single instant it names;
* a wall time in the **repeated hour** after a fall-back change is ambiguous. The clock takes the
  first occurrence until the stream's wall time steps back by more than :data:`FOLD_STEP_BACK`
  (the device clock was turned back), and the second occurrence from then on. Where the device
  also has a monotonic clock (a Dexcom transmitter's seconds since start), the occurrence whose
  instant keeps that clock's anchor steady wins;
* a wall time in the **skipped hour** of a spring-forward change cannot be shown by a clock that
  changed on time; it comes from a device whose clock had not changed yet, so it is read with the
  offset in force before the change, and the stream keeps that offset for as long as the new one
  would make its instants run backwards (the device clock still lags). When the device clock is
  put forward, its wall time jumps and the stream returns to the zone's offset. Such records are
  counted in :attr:`LocalClock.skipped_hour`.

Nothing is dropped and two different records never collapse into one instant by this mapping.
This is Tidepool's "across-the-board time zone" processing plus order-based fold resolution
(research/tidepool.md §1.4).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import zoneinfo
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

_EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - naive on purpose: wall-clock arithmetic
FOLD_STEP_BACK = dt.timedelta(minutes=10)
_FOLD_STEP_BACK_MS = FOLD_STEP_BACK // dt.timedelta(milliseconds=1)
_DAY_MS = 86_400_000
_SLOT_MS = 1_800_000
_SLOT_END = dt.timedelta(minutes=29, seconds=59, microseconds=999_999)
_DAY_END = dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999)
_NO_CACHE = (-100_000, -100_000)  # marks a half hour that holds a transition


def wall_ms(local: dt.datetime) -> int:
    """Milliseconds of a naive wall time since the naive epoch (no zone applied)."""
    delta = local - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _exact_offsets(tz: zoneinfo.ZoneInfo, local: dt.datetime) -> tuple[int, int]:
    """UTC offsets in minutes of a naive wall time in ``tz``, for fold 0 and fold 1."""
    first = local.replace(tzinfo=tz, fold=0).utcoffset()
    second = local.replace(tzinfo=tz, fold=1).utcoffset()
    assert first is not None  # noqa: S101 - ZoneInfo always answers
    assert second is not None  # noqa: S101
    return int(first.total_seconds()) // 60, int(second.total_seconds()) // 60


@functools.lru_cache(maxsize=16_384)
def _day_offsets(tz: zoneinfo.ZoneInfo, day: int) -> tuple[int, int] | None:
    """The offsets of a whole local day in ``tz``, or ``None`` when a transition falls inside it.

    Cached for the process: every stream of every file of an export asks for the same days.
    """
    start = _EPOCH + dt.timedelta(days=day)
    offsets = _exact_offsets(tz, start)
    uniform = offsets[0] == offsets[1] and _exact_offsets(tz, start + _DAY_END) == offsets
    return offsets if uniform else None


def day_offsets(
    tz: zoneinfo.ZoneInfo, walls: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The UTC offset (minutes) of each wall time's local day, and which days have no change.

    On a day without a daylight-saving change a wall time names one instant, whatever the order of
    a stream: a :class:`LocalClock` resolves it with this offset, unless the device clock of its
    stream still lags behind a spring-forward change (:meth:`LocalClock.resolve_ms`). The offset is
    0 where the day holds a change.
    """
    days, index = np.unique(walls // _DAY_MS, return_inverse=True)
    table = [_day_offsets(tz, day) for day in days.tolist()]
    uniform = np.array([entry is not None for entry in table], np.bool_)[index]
    offsets = np.array([0 if entry is None else entry[0] for entry in table], np.int64)[index]
    return offsets, uniform


class LocalClock:
    """Resolves the wall times of one stream of records, fed in device order, to UTC."""

    __slots__ = (
        "_anchor",
        "_cache",
        "_days",
        "_fold",
        "_lag",
        "_prev",
        "_prev_ms",
        "ambiguous",
        "skipped_hour",
        "tz",
    )

    def __init__(self, tz: zoneinfo.ZoneInfo) -> None:
        self.tz = tz
        self._prev: int | None = None  # wall time (ms) of the previous record
        self._fold = 0
        self._anchor: float | None = None
        self._lag: int | None = None  # offset of a device clock not yet put forward
        self._prev_ms: int | None = None  # instant of the previous record
        self._days: dict[int, tuple[int, int] | None] = {}
        self._cache: dict[int, tuple[int, int]] = {}
        self.skipped_hour = 0
        self.ambiguous = 0

    def _day_offsets(self, day: int) -> tuple[int, int] | None:
        """The offsets of a whole local day, or ``None`` when a transition falls inside it."""
        self._days[day] = offsets = _day_offsets(self.tz, day)
        return offsets

    def _slot_offsets(self, slot: int) -> tuple[int, int]:
        """UTC offsets in minutes for fold 0 and fold 1 of wall times in one half-hour slot.

        Cached per half hour of wall time when the offsets at the slot's first and last instant
        agree (no transition inside it); otherwise :data:`_NO_CACHE` and computed per record.
        """
        start = _EPOCH + dt.timedelta(milliseconds=slot * _SLOT_MS)
        offsets = _exact_offsets(self.tz, start)
        if _exact_offsets(self.tz, start + _SLOT_END) != offsets:
            offsets = _NO_CACHE
        self._cache[slot] = offsets
        return offsets

    def resolve(self, local: dt.datetime, device_clock_s: float | None = None) -> tuple[int, int]:
        """Return ``(utc_ms, utc_offset_min)`` for the naive wall time ``local``.

        ``device_clock_s`` is an optional monotonic device clock in seconds (for example a Dexcom
        transmitter time) of the same clock group as the stream.
        """
        return self.resolve_ms(wall_ms(local), device_clock_s)

    def resolve_ms(self, wall: int, device_clock_s: float | None = None) -> tuple[int, int]:
        """:meth:`resolve` for a wall time given as :func:`wall_ms` (no datetime per record)."""
        day = wall // _DAY_MS
        days = self._days
        offsets = days[day] if day in days else self._day_offsets(day)
        if offsets is None:  # a day with a transition: half-hour slots, or per record
            slot = wall // _SLOT_MS
            offsets = self._cache.get(slot)
            if offsets is None:
                offsets = self._slot_offsets(slot)
            if offsets == _NO_CACHE:
                offsets = _exact_offsets(self.tz, _EPOCH + dt.timedelta(milliseconds=wall))
        off0, off1 = offsets
        if off0 == off1:
            offset = off0
            self._fold = 0
            if self._lag is not None:
                offset = self._lagging_offset(wall, offset)
            if device_clock_s is not None:
                self._anchor = (wall - offset * 60_000) / 1000 - device_clock_s
        elif off0 < off1:
            # Skipped hour (spring forward): the device clock had not moved yet.
            offset = off0
            self.skipped_hour += 1
            self._fold = 0
            self._lag = off0
        else:
            self.ambiguous += 1
            fold = self._choose_fold(wall, off0, off1, device_clock_s)
            offset = off1 if fold else off0
            self._fold = fold
        self._prev = wall
        instant = wall - offset * 60_000
        self._prev_ms = instant
        return instant, offset

    def resolve_many(
        self, walls: npt.NDArray[np.int64], device_clock_s: Callable[[int], float | None] | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """:meth:`resolve_ms` for many wall times of the stream at once, in stream order.

        Returns ``(utc_ms, utc_offset_min)`` arrays and leaves the clock exactly as the same calls
        of :meth:`resolve_ms` one by one would. Runs of records on days without a daylight-saving
        change (nearly all) are resolved as whole arrays; records on a day with a change, or after a
        record of a skipped hour while the device clock lags, record by record.
        ``device_clock_s(i)`` gives the device clock of the ``i``-th wall time (or ``None``); it is
        called only where needed (on the fast path for the last record of a run that has one), so the
        caller can parse it lazily.
        """
        count = len(walls)
        instants = np.empty(count, np.int64)
        offsets = np.empty(count, np.int64)
        if count == 0:
            return instants, offsets
        days, index = np.unique(walls // _DAY_MS, return_inverse=True)
        table = [self._days[day] if day in self._days else self._day_offsets(day) for day in days.tolist()]
        known = np.array([entry is not None for entry in table], np.bool_)
        day_offsets = np.array([0 if entry is None else entry[0] for entry in table], np.int64)
        uniform = known[index]
        # Runs of records on days without a change, and of records on days with one, in stream order.
        edges = [0, *(np.flatnonzero(uniform[1:] != uniform[:-1]) + 1).tolist(), count]
        for start, stop in itertools.pairwise(edges):
            if uniform[start] and self._lag is None:
                self._resolve_uniform(
                    walls, day_offsets[index], device_clock_s, run=(start, stop), out=(instants, offsets)
                )
                continue
            for at in range(start, stop):
                clock = None if device_clock_s is None else device_clock_s(at)
                instants[at], offsets[at] = self.resolve_ms(int(walls[at]), clock)
        return instants, offsets

    def _resolve_uniform(
        self,
        walls: npt.NDArray[np.int64],
        day_offsets: npt.NDArray[np.int64],
        device_clock_s: Callable[[int], float | None] | None,
        *,
        run: tuple[int, int],
        out: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    ) -> None:
        """Resolve ``walls[run[0]:run[1]]`` (days without a change) into ``out`` as arrays.

        Leaves the clock as :meth:`resolve_ms` would after the run's last record.
        """
        start, stop = run
        instants, offsets = out
        offsets[start:stop] = day_offsets[start:stop]
        instants[start:stop] = walls[start:stop] - day_offsets[start:stop] * 60_000
        self._fold = 0
        self._prev = int(walls[stop - 1])
        self._prev_ms = int(instants[stop - 1])
        if device_clock_s is not None:
            for at in range(stop - 1, start - 1, -1):
                seconds = device_clock_s(at)
                if seconds is not None:
                    self._anchor = int(instants[at]) / 1000 - seconds
                    break

    def _lagging_offset(self, wall: int, offset: int) -> int:
        """After a skipped-hour record: keep the old offset while the zone's would run backwards."""
        lag = self._lag
        assert lag is not None  # noqa: S101 - only called while lagging
        if self._prev is None or self._prev_ms is None or wall <= self._prev:
            self._lag = None
            return offset
        if wall - offset * 60_000 <= self._prev_ms < wall - lag * 60_000:
            self.skipped_hour += 1
            return lag
        self._lag = None
        return offset

    def _choose_fold(self, wall: int, off0: int, off1: int, device_clock_s: float | None) -> int:
        if device_clock_s is not None and self._anchor is not None:
            anchor0 = (wall - off0 * 60_000) / 1000 - device_clock_s
            anchor1 = (wall - off1 * 60_000) / 1000 - device_clock_s
            return 0 if abs(anchor0 - self._anchor) <= abs(anchor1 - self._anchor) else 1
        if self._prev is not None and self._prev - wall > _FOLD_STEP_BACK_MS:
            return 1
        return self._fold
