"""xDrip+ "Export CSV (SiDiary format)" (research/formats.md §10).

**Layout.** xDrip+ (Android) writes ``exportCSV<yyyyMMdd-HHmmss>.zip`` holding one
``export<yyyyMMdd-HHmmss>.csv`` (the archive is opened by the import service; this module reads the
CSV). Line 1 is the header ``DAY;TIME;UDT_CGMS;BG_LEVEL;CH_GR;BOLUS;REMARK`` (very old versions:
``DAY;TIME;UDT_CGMS``, CGM readings only); every further line is one row,
``dd.MM.yyyy;HH:mm;<CGM>;<BG>;<carbs>;<insulin>;<remark>``, ``;``-separated and never quoted. The
app writes LF (a file re-saved on Windows may have CRLF), no BOM, and ends every line with a line
break, so a file without a final line break is refused as truncated. Excel's re-saved forms of the
date and time (one-digit day, month or hour; seconds) are accepted.

**Recognised by** line 1 starting with ``DAY;TIME;UDT_CGMS``. A header that starts so but is not
one of the two known headers (a renamed or missing column) refuses the file naming the column.

**Time.** ``DAY`` and ``TIME`` are the phone's local wall time at the moment of the export,
without seconds. The app writes three blocks one after the other, each in time order: the CGM
readings, then the calibrations, then the treatments; the file as a whole is not in time order. So
each block is its own local-time stream (:mod:`.localtime`): ``cgm``, ``calibration`` and
``treatment``, each fed in file order, which places a row in the first or second pass of the hour
repeated at a daylight-saving change. Very old exports (3-column header) list readings in the
order the phone's database holds them, which is time order except for back-filled readings.

**Mapping.**

==============  ================================================================================
column          record
==============  ================================================================================
``UDT_CGMS``    ``cbg`` ``sensor``, mg/dL (xDrip+ stores and exports mg/dL whatever unit the phone
                shows, rounded to whole mg/dL). Like the app's display: ≤ 39 is ``LOW`` and ≥ 400
                ``HIGH``, so such values keep the written number with annotation ``low``/``high``
                (xDrip+ clamps its values to 39–400). Readings come as :class:`ReadingBlock` runs.
``BG_LEVEL``    ``smbg`` ``calibration``, mg/dL: the app exports its *Calibration* table here (finger
                sticks entered to calibrate the sensor); blood tests that did not calibrate are not
                in this export.
``CH_GR``       ``food``, grams of carbohydrate (``0`` is never written).
``BOLUS``       ``insulin`` ``unknown``, units: a treatment entered in (or synced to) the app, most
                often a pen injection; the export does not say which insulin or whether a pump
                delivered it, so it is neither a ``bolus`` nor ``rapid``/``long``.
``REMARK``      ``note`` with the text (the app writes a line break as ``||``; it is turned back
                into a line break); ``;`` inside a remark is kept (the remark is the rest of the row).
==============  ================================================================================

One row may fill several of CH_GR, BOLUS and REMARK (a treatment with carbs and insulin); each
becomes its own record. **Minute precision:** two CGM readings that resolve to the same minute (a
one-minute sensor with a slow clock, back-filled readings, rows written twice) cannot both be
stored: the first in file order is kept, the others are left out and counted in the result's notes.

**Device:** the xDrip+ app itself as the collecting device, ``xDrip+ (open source)`` ``xDrip+
app`` without a serial number (the export names no sensor or transmitter), one per patient.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    SourceText,
    shown,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import LocalClock, wall_ms
from glucoshare.ingest.numbers import bounded_amount

HEADER: tuple[str, ...] = ("DAY", "TIME", "UDT_CGMS", "BG_LEVEL", "CH_GR", "BOLUS", "REMARK")
"""The header of every current export."""
OLD_HEADER: tuple[str, ...] = ("DAY", "TIME", "UDT_CGMS")
"""The header of very old exports (CGM readings only)."""

DEVICE_KEY = "xdrip"
MANUFACTURER = "xDrip+ (open source)"
MODEL = "xDrip+ app"
LOW_MGDL = 39.0
"""A CGM value at or below this is shown as LOW by the app (its values are clamped to 39–400)."""
HIGH_MGDL = 400.0
"""A CGM value at or above this is shown as HIGH by the app."""
_MAX_GLUCOSE_MGDL = 1000.0
_MAX_CARBS_G = 1000.0
_MAX_INSULIN_U = 100.0

_SIGNATURE = "DAY;TIME;UDT_CGMS"
_HEADER_CHARS = 200  # detection looks at no more of line 1 (a one-line JSON file may be huge)
_RUN_ROWS = 4096
"""CGM readings resolved and handed over together (one :class:`ReadingBlock`)."""
_DATE = re.compile(r"\s*(\d{1,2})\.(\d{1,2})\.(\d{4})\s*")
_TIME = re.compile(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*")
_EMPTY_TAILS = frozenset({";;;", ";;;\n", ";;;\r\n"})  # BG_LEVEL to REMARK empty: a plain CGM row
_LINE_ENDS = "\r\n"
_BAD_STAMP = "DAY and TIME are not a date dd.MM.yyyy and a time HH:mm"

_Reading = tuple[float, float, str | None]  # (mg/dL, written value, annotation)


def _cells(line: str) -> list[str]:
    """The header's cells, upper case, trailing empty cells (Excel's padding) dropped."""
    cells = [cell.strip().upper() for cell in line.lstrip("\ufeff").split(";")]
    while cells and not cells[-1]:
        cells.pop()
    return cells


class _Stamps:
    """Wall times of ``DAY`` and ``TIME`` texts (milliseconds as :func:`wall_ms` counts them), cached."""

    def __init__(self) -> None:
        self.days: dict[str, int | None] = {}
        self.times: dict[str, int | None] = {}

    def day(self, text: str) -> int | None:
        """The wall time of midnight of a ``dd.MM.yyyy`` date; ``None`` when it is not one."""
        if text in self.days:
            return self.days[text]
        value: int | None = None
        match = _DATE.fullmatch(text)
        if match is not None:
            day, month, year = (int(part) for part in match.groups())
            try:
                value = wall_ms(dt.datetime(year, month, day))  # noqa: DTZ001 - wall time, resolved later
            except ValueError:
                value = None
        self.days[text] = value
        return value

    def time(self, text: str) -> int | None:
        """Milliseconds into the day of an ``HH:mm`` time; ``None`` when it is not one."""
        if text in self.times:
            return self.times[text]
        value: int | None = None
        match = _TIME.fullmatch(text)
        if match is not None:
            hour, minute = int(match.group(1)), int(match.group(2))
            second = int(match.group(3) or 0)
            if hour < 24 and minute < 60 and second < 60:  # noqa: PLR2004
                value = ((hour * 60 + minute) * 60 + second) * 1000
        self.times[text] = value
        return value

    def wall(self, day: str, time: str) -> int | None:
        """The wall time of a row; ``None`` when its date or time cannot be read."""
        midnight = self.days[day] if day in self.days else self.day(day)
        into = self.times[time] if time in self.times else self.time(time)
        if midnight is None or into is None:
            return None
        return midnight + into


def _glucose(text: str, what: str) -> float:
    """A glucose value in mg/dL, above 0."""
    number = bounded_amount(text, what, _MAX_GLUCOSE_MGDL)
    if number == 0:
        msg = f"{what} is 0"
        raise ValueError(msg)
    return number


@dataclasses.dataclass(slots=True)
class _Run:
    """CGM readings collected before they are resolved to UTC together."""

    walls: list[int] = dataclasses.field(default_factory=list)
    lines: list[int] = dataclasses.field(default_factory=list)
    values: list[_Reading] = dataclasses.field(default_factory=list)


class _Reader:
    """The state of reading one export: the streams' clocks, cached texts, the last CGM instant."""

    def __init__(self, source: SourceText, ctx: ParseContext, result: ParseResult) -> None:
        self.source = source
        self.result = result
        self.reject: Callable[[RejectedRow], None] = result.rejected.append
        self.cgm: LocalClock = ctx.clock("xdrip|cgm")
        self.calibrations: LocalClock = ctx.clock("xdrip|calibration")
        self.treatments: LocalClock = ctx.clock("xdrip|treatment")
        self.stamps = _Stamps()
        self.readings: dict[str, _Reading | None] = {}
        self.last_cgm_ms: int | None = None
        self.same_minute = 0

    def reading(self, text: str) -> _Reading:
        """A CGM cell as (mg/dL, written value, annotation); ``ValueError`` when unreadable."""
        cached = self.readings.get(text)
        if cached is not None:
            return cached
        number = _glucose(text, "UDT_CGMS")
        annotation = "low" if number <= LOW_MGDL else "high" if number >= HIGH_MGDL else None
        reading = self.readings[text] = (number, number, annotation)
        return reading

    def flush(self, run: _Run) -> list[ParsedItem]:
        """Resolve a run of CGM readings in stream order; one block plus the annotated readings.

        A reading that resolves to the same instant as the kept reading before it is left out
        (and counted in :attr:`same_minute`).
        """
        if not run.walls:
            return []
        instants, offsets = self.cgm.resolve_many(np.array(run.walls, np.int64))
        previous = np.empty_like(instants)
        previous[1:] = instants[:-1]
        previous[0] = -1 if self.last_cgm_ms is None else self.last_cgm_ms
        keep = instants != previous
        self.last_cgm_ms = int(instants[-1])
        self.same_minute += int(keep.size - np.count_nonzero(keep))
        values = run.values
        flagged = [at for at, value in enumerate(values) if value[2] is not None and keep[at]]
        items: list[ParsedItem] = [
            ParsedRecord(
                "cbg",
                "sensor",
                int(instants[at]),
                int(offsets[at]),
                run.lines[at],
                DEVICE_KEY,
                values[at][0],
                values[at][1],
                "mg/dL",
                annotation=values[at][2],
            )
            for at in flagged
        ]
        plain: npt.NDArray[np.bool_] = keep.copy()
        plain[flagged] = False
        if plain.any():
            items.append(
                ReadingBlock(
                    "cbg",
                    "sensor",
                    DEVICE_KEY,
                    "mg/dL",
                    instants[plain],
                    offsets[plain],
                    np.array([value[0] for value in values], np.float64)[plain],
                    np.array([value[1] for value in values], np.float64)[plain],
                    np.array(run.lines, np.int64)[plain],
                )
            )
        return items

    def records(self) -> Iterator[ParsedItem]:
        """Every record of the file (the hot loop: plain CGM rows take the shortest path)."""
        lines = self.source.lines()
        next(lines, None)  # the header
        stamps = self.stamps
        days, times = stamps.days, stamps.times
        readings = self.readings
        reject = self.reject
        run = _Run()
        walls, line_numbers, values = run.walls, run.lines, run.values
        number = 1
        for raw in lines:
            number += 1
            parts = raw.split(";", 3)
            if len(parts) == 4:  # noqa: PLR2004 - DAY, TIME, UDT_CGMS and the rest
                cgm, tail = parts[2], parts[3]
            elif len(parts) == 3:  # noqa: PLR2004 - a row of the 3-column layout
                cgm, tail = parts[2].rstrip(_LINE_ENDS), ""
            else:
                if raw.strip():
                    reject(RejectedRow(number, "the row has fewer than 3 fields"))
                continue
            if cgm and (not tail or tail in _EMPTY_TAILS):
                day, time = parts[0], parts[1]
                midnight = days.get(day)
                into = times.get(time)
                wall = (
                    midnight + into if midnight is not None and into is not None else stamps.wall(day, time)
                )
                if wall is None:
                    reject(RejectedRow(number, _BAD_STAMP))
                    continue
                reading = readings.get(cgm)
                if reading is None:
                    try:
                        reading = self.reading(cgm)
                    except ValueError as exc:
                        reject(RejectedRow(number, str(exc)))
                        continue
                walls.append(wall)
                line_numbers.append(number)
                values.append(reading)
                if len(walls) >= _RUN_ROWS:
                    yield from self.flush(run)
                    run = _Run()
                    walls, line_numbers, values = run.walls, run.lines, run.values
                continue
            try:
                yield from self.row(raw, number, run)
            except ValueError as exc:
                reject(RejectedRow(number, str(exc)))
            if len(walls) >= _RUN_ROWS:
                yield from self.flush(run)
                run = _Run()
                walls, line_numbers, values = run.walls, run.lines, run.values
        yield from self.flush(run)
        if self.same_minute:
            self.result.notes.append(
                f"{self.same_minute} CGM readings fall in the same minute as the reading before them "
                "(xDrip+ writes times to the minute); only the first of each minute is stored"
            )

    def row(self, raw: str, number: int, run: _Run) -> list[ParsedRecord]:
        """The records of a row other than a plain CGM reading (``ValueError`` when unreadable).

        A CGM value on such a row joins ``run``; the row's fields are checked before anything of
        it is kept.
        """
        cells = raw.rstrip(_LINE_ENDS).split(";", 6)
        cells += [""] * (len(HEADER) - len(cells))
        day, time, cgm, bg, carbs, insulin, remark = cells
        if not any(cell.strip() for cell in cells):
            return []  # a blank line
        wall = self.stamps.wall(day, time)
        if wall is None:
            raise ValueError(_BAD_STAMP)
        reading = self.reading(cgm.strip()) if cgm.strip() else None
        calibration = _glucose(bg, "BG_LEVEL") if bg.strip() else None
        grams = bounded_amount(carbs, "CH_GR", _MAX_CARBS_G) if carbs.strip() else None
        units = bounded_amount(insulin, "BOLUS", _MAX_INSULIN_U) if insulin.strip() else None
        text = remark.replace("||", "\n").strip()
        if reading is None and calibration is None and not grams and not units and not text:
            msg = "the row holds no value"
            raise ValueError(msg)
        if reading is not None:
            run.walls.append(wall)
            run.lines.append(number)
            run.values.append(reading)
        out: list[ParsedRecord] = []
        if calibration is not None:
            time_ms, offset = self.calibrations.resolve_ms(wall)
            out.append(
                ParsedRecord(
                    "smbg",
                    "calibration",
                    time_ms,
                    offset,
                    number,
                    DEVICE_KEY,
                    calibration,
                    calibration,
                    "mg/dL",
                )
            )
        if grams or units or text:
            time_ms, offset = self.treatments.resolve_ms(wall)
            if grams:
                out.append(ParsedRecord("food", "", time_ms, offset, number, DEVICE_KEY, grams))
            if units:
                out.append(ParsedRecord("insulin", "unknown", time_ms, offset, number, DEVICE_KEY, units))
            if text:
                out.append(
                    ParsedRecord(
                        "note",
                        "",
                        time_ms,
                        offset,
                        number,
                        DEVICE_KEY,
                        payload={"text": text},
                        identity=text,
                    )
                )
        return out


class XDripImporter:
    """Reads xDrip+ CSV exports (SiDiary format)."""

    format: ClassVar[str] = "xdrip"
    label: ClassVar[str] = "xDrip+ CSV export (SiDiary format)"
    final_newline: ClassVar[bool] = True

    def detect(self, head: list[str]) -> bool:
        """True when line 1 starts with ``DAY;TIME;UDT_CGMS``."""
        return bool(head) and ";".join(_cells(head[0][:_HEADER_CHARS])).startswith(_SIGNATURE)

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Parse an export; :class:`MalformedFileError` when the header is not a known one."""
        header = _cells(source.head(1)[0])
        if tuple(header) not in (HEADER, OLD_HEADER):
            raise MalformedFileError(_header_problem(source.name, header))
        result = ParseResult(
            records=iter(()),
            devices={DEVICE_KEY: DeviceInfo(manufacturer=MANUFACTURER, model=MODEL, serial=None)},
            primary_device=DEVICE_KEY,
        )
        result.records = _Reader(source, ctx, result).records()
        return result


def _header_problem(name: str, header: list[str]) -> str:
    """What is wrong with a header that starts like xDrip+'s but is not one of its two headers."""
    for at, expected in enumerate(HEADER):
        if at >= len(header):
            return f"{name}: line 1: the header ends before column {at + 1}, {expected}"
        if header[at] != expected:
            return f"{name}: line 1: column {at + 1} is {shown(header[at])}, expected {expected}"
    return (
        f"{name}: line 1: the header has {len(header)} columns, expected {len(HEADER)} ({';'.join(HEADER)})"
    )
