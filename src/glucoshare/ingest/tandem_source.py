"""Tandem Source CSV export, t:slim X2 and Mobi pumps (research/formats.md §4.1).

**Layout.** Tandem Source exports **one CSV per data type** (usually zipped, named
``<NAME>_<serial>_<DDMonYYYY>_<hhmm>-<Kind>.csv``): UTF-8, comma-separated, no preamble, the
header on line 1, ISO local wall times without an offset (``2026-03-05T00:04:33``). Each file is
recognised from its own header and read on its own; the import service hands the other files of
the same upload to it as :attr:`~glucoshare.ingest.base.ParseContext.siblings`. The five headers:

==========================  ==================================================================
kind                        header (columns are found by name, in any order)
==========================  ==================================================================
CGM                         ``Device Type,Serial Number,Description,Event Date Time,Readings (mg/dL)``
BG                          ``Device Type,Serial Number,Description,Event Date Time,BG (mg/dL),Note``
Bolus                       ``Type,Bolus Type,Bolus Delivery Method,BG (mg/dL),Serial Number,Completion
                            Date Time,Insulin Delivered,Food Delivered,Correction Delivered,Completion
                            Status Desc,Bolex Start Date Time,Bolex Completion Date Time,Bolex Insulin
                            Delivered,Bolex Completion Status Desc,Standard Percent,Duration (mins),Carb
                            Size,Target BG (mg/dL),Correction Factor,Carb Ratio``
Basal-doses                 ``Device Type,Serial Number,Event Date Time,Commanded Basal Dose (units of
                            insulin)``, a row about every 5 minutes
Hourly-basal-delivery       ``Serial Number,Event Date,12:00 AM,1:00 AM,…,11:00 PM``: one row per day
                            (``3/5/26``, month first), 24 hourly columns
==========================  ==================================================================

The glucose unit comes from the column name (``(mg/dL)`` or ``(mmol/L)``; any other unit refuses the
file). ``;`` or tab as delimiter (an Excel re-save) are accepted, with a decimal comma in ``;``
files; so are the timestamp forms Excel writes (``2026-03-05 00:04``, ``3/5/2026 0:04``).

**Mapping.**

* CGM ``EGV`` → ``cbg`` ``sensor`` (in :class:`ReadingBlock` columns). How the export writes a reading
  out of the sensor's range was not seen: a number at or beyond 40 or 400 mg/dL (2.2, 22.2 mmol/L)
  and the words ``Low``/``High`` are stored at the limit with the ``low``/``high`` annotation. A row
  described ``BG`` in either file → ``smbg`` ``meter``; any other description is a rejected row.
* BG ``Note`` text → a ``note`` (payload ``{"text": …}``, identity = the text) at the reading's time.
* Bolus rows → ``bolus`` at ``Completion Date Time`` (the export has no request time): value = the
  units delivered (``Insulin Delivered``), also for a bolus that did not complete (its ``Completion
  Status Desc`` goes into the payload; a bolus stopped before any insulin is stored with 0 U). A row
  with a Bolex (extended) part gives a second record at ``Bolex Start Date Time`` with the extended
  units (``Bolex Insulin Delivered``) and its duration (Bolex completion − start, else ``Duration
  (mins)``): both parts are subtype ``dual`` (identity ``normal`` / ``extended``, so their sum is the
  bolus), and an extended part without a delivered standard part is subtype ``extended``. A bolus
  type or delivery method naming automation (``Automatic …``, ``Control-IQ``) → ``automated``.
  ``Food Delivered``/``Correction Delivered`` go into the payload (``meal_units``,
  ``correction_units``). When the bolus calculator had inputs (``Carb Size`` or ``BG`` above 0) a
  ``wizard`` record (value = carbs, g) is added with ``bg_input`` and, where above 0, the carb ratio,
  correction factor (``insulin_sensitivity``) and target (``target_low`` = ``target_high``); a 0 in
  those columns means "not given" (the real export writes 0s there).
* Basal-doses: ``Commanded Basal Dose`` is a **dose in units**, not a rate: its values (0.028,
  0.139 U …) sum, row by row, to the ``Hourly-basal-delivery`` totals of the same export (12 rows =
  1.037 U in the sample's first hour). Each row is the insulin of the ~5-minute segment starting
  at its time, which lasts until the next row of the same serial (in time); a gap of more than
  :data:`MAX_DOSE_SEGMENT_MS` (missing rows) or the last row counts :data:`DOSE_INTERVAL_MS`. Stored
  as ``basal`` ``automated`` with value = dose ÷ segment length (U/h), ``duration_ms`` = the segment
  and ``orig_value`` = the dose (``orig_unit`` ``U``), so rate × duration gives back the dose exactly.
* Hourly-basal-delivery: the hourly totals of the same insulin. When a Basal-doses file with the same
  serial is among the siblings, the hours its doses cover (and the hours with 0 U) store nothing
  and :attr:`ParseResult.notes` says so. Otherwise each hour becomes one ``basal`` ``automated``
  record at the start of that wall-clock hour, lasting until the next one (two hours for the hour a
  fall-back change repeats), value = the hour's average rate (U ÷ its length, U/h),
  ``orig_value`` = the total; a blank cell stores nothing. Uploaded apart from its doses file, the
  same insulin is stored twice (the notes say so).
* Basal subtype: the export does not say whether Control-IQ or the profile commanded a dose. The
  rows come at the closed loop's 5-minute cadence and vary from one to the next, so they are
  ``automated``; ``scheduled`` would make a programmed "schedule" of them (the settings report reads
  scheduled basal as the profile). A pump run without Control-IQ is shown as automated too.

**Devices.** One device per ``Serial Number``: manufacturer Tandem Diabetes Care, the model from
``Device Type`` (``Tandem Mobi™ System`` → ``Tandem Mobi``, ``t:slim X2 …`` → ``t:slim X2``, so that
spellings of one pump are one device). Files without that column (Bolus, Hourly-basal-delivery) take
the model from a sibling file with the same serial, else :data:`GENERIC_MODEL`. CGM readings belong
to the pump: the sensor paired with it is not named by the export, only the pump that received its
readings. A pump replaced during the export period is a second serial, so a second device.

**Time.** Each (file kind, serial) is one local-time stream. Rows are fed to its clock in the
device's order: the file order when the rows ascend (a step back only into the hour a fall-back
change repeats), reversed when they descend, else sorted by wall time (then a repeated hour is
read as its first pass). A CGM, BG or Basal-doses file without quotes is read 4,096 rows at a time,
and each stream's records are handed over as they are read while its rows ascend
(:class:`_LiveReadings`, :class:`_LiveDoses`); a stream that stops ascending is resolved whole at
its end, and if what went before comes out otherwise, the file is read again (docs/architecture.md,
"Handing records over while reading").
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import math
import re
import warnings
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Protocol

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
    Restart,
    SourceText,
    checked_chunks,
    checked_rows,
    shown,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import LocalClock, wall_ms
from glucoshare.ingest.numbers import parse_number
from glucoshare.ingest.timestamps import parse_iso_wall_time
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

MANUFACTURER = "Tandem Diabetes Care"
GENERIC_MODEL = "t:slim X2 or Mobi insulin pump"
"""The model of a pump known only by its serial number (a Bolus or Hourly file on its own)."""

SENSOR_LIMITS = {"mg/dL": (40.0, 400.0), "mmol/L": (2.2, 22.2)}
"""A CGM reading at or beyond these (in the file's unit) is stored at the limit and annotated."""
SENSOR_LOW_MGDL = 40.0
SENSOR_HIGH_MGDL = 400.0

DOSE_INTERVAL_MS = 300_000
"""How long a basal dose lasts when no next row follows closely: the pump's 5-minute cycle."""
MAX_DOSE_SEGMENT_MS = 600_000
"""The longest gap to the next row that still counts as the segment of one dose (two cycles)."""
HOUR_MS = 3_600_000
MAX_BASAL_RATE_U_H = 50.0
"""A basal dose or hourly total giving more than this rate (U/h) is a rejected row (the limit of
the other pump importers; a Tandem pump delivers at most 15 U/h)."""

UNIT_FACTORS = {"mg/dL": 1.0, "mmol/L": MGDL_PER_MMOLL}

KIND_NAMES = {
    "cgm": "CGM",
    "bg": "BG",
    "bolus": "Bolus",
    "doses": "Basal-doses",
    "hourly": "Hourly-basal-delivery",
}

_NAMES: dict[str, str] = {
    "device type": "device",
    "serial number": "serial",
    "description": "description",
    "event date time": "stamp",
    "event date": "date",
    "note": "note",
    "type": "type",
    "bolus type": "bolus_type",
    "bolus delivery method": "method",
    "completion date time": "completion",
    "insulin delivered": "insulin",
    "food delivered": "food",
    "correction delivered": "correction",
    "completion status desc": "status",
    "bolex start date time": "bolex_start",
    "bolex completion date time": "bolex_end",
    "bolex insulin delivered": "bolex_insulin",
    "bolex completion status desc": "bolex_status",
    "standard percent": "standard_percent",
    "duration (mins)": "duration",
    "carb size": "carbs",
    "correction factor": "isf",
    "carb ratio": "carb_ratio",
}
_UNIT_STEMS = {"readings": "glucose", "bg": "bg", "target bg": "target"}
_UNIT_NAME = re.compile(r"^(.*?)\s*\(([^)]*)\)$")
_UNITS = {"mg/dl": "mg/dL", "mmol/l": "mmol/L"}
_HOUR_NAME = re.compile(r"^(\d{1,2}):00(?::00)?(?:\s*([ap])\.?\s*m\.?)?$")
_DOSE_STEM = "commanded basal dose"
_US_STAMP = re.compile(
    r"^\s*(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp])?\.?\s*[Mm]?\.?)?\s*$"
)
_ISO_WIDTH = 19
_EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - naive: wall-clock arithmetic
_BLOCK_ROWS = 16_384
_CHUNK_ROWS = 4096
"""Rows read, resolved and handed over at once by a stream that ascends (:class:`_LiveReadings`)."""
_FOLD_STEP_LIMIT_MS = HOUR_MS + 60_000
_MAX_FOLD_STEPS = 16


def fold_name(text: str) -> str:
    """A column name folded for matching: lower case, single spaces, no BOM or quotes."""
    return " ".join(text.replace("\ufeff", "").strip().strip('"').lower().split())


def pump_model(device_type: str) -> str:
    """The model of a Tandem pump from the export's ``Device Type`` (one name per pump family).

    ``Tandem Mobi™ System`` → ``Tandem Mobi``, ``t:slim X2 Insulin Pump`` → ``t:slim X2``; other
    texts are kept without trade-mark signs; an empty text gives :data:`GENERIC_MODEL`.
    """
    text = " ".join(device_type.replace("™", " ").replace("®", " ").split())
    folded = text.lower()
    if "mobi" in folded:
        return "Tandem Mobi"
    if "x2" in folded and "slim" in folded:
        return "t:slim X2"
    return text or GENERIC_MODEL


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    """A recognised Tandem Source header: its kind, delimiter, columns and units."""

    kind: str
    delimiter: str
    columns: dict[str, int]
    units: dict[str, str]
    hours: tuple[int, ...]
    """For an hourly file: the column of each hour of the day, 0 to 23."""
    width: int
    bad_unit: str | None


def _read_header(cells: list[str], delimiter: str) -> Header | None:
    columns: dict[str, int] = {}
    units: dict[str, str] = {}
    hours: dict[int, int] = {}
    bad_unit: str | None = None
    for index, cell in enumerate(cells):
        name = fold_name(cell)
        kind = _NAMES.get(name)
        if kind is None and name.startswith(_DOSE_STEM):
            kind = "dose"
        if kind is None:
            match = _UNIT_NAME.match(name)
            if match is not None and match.group(1) in _UNIT_STEMS:
                kind = _UNIT_STEMS[match.group(1)]
                unit = _UNITS.get(match.group(2).strip())
                if unit is None:
                    bad_unit = bad_unit or cell.strip()
                else:
                    units[kind] = unit
        if kind is None:
            hour = _HOUR_NAME.match(name)
            if hour is not None:
                number = int(hour.group(1))
                if hour.group(2) is not None:
                    number = number % 12 + (12 if hour.group(2) == "p" else 0)
                if number < 24 and number not in hours:  # noqa: PLR2004 - hours of a day
                    hours[number] = index
            continue
        columns.setdefault(kind, index)
    if "serial" not in columns:
        tandem_time = {"stamp", "completion"} & columns.keys()
        if tandem_time and {"glucose", "bg", "dose", "insulin", "device"} & columns.keys():
            return Header("damaged", delimiter, columns, units, (), len(cells), bad_unit)
        return None
    if "completion" in columns and "insulin" in columns:
        kind = "bolus"
    elif "stamp" in columns and "glucose" in columns:
        kind = "cgm"
    elif "stamp" in columns and "bg" in columns:
        kind = "bg"
    elif "stamp" in columns and "dose" in columns:
        kind = "doses"
    elif "date" in columns and len(hours) == 24:  # noqa: PLR2004
        kind = "hourly"
    elif {"stamp", "completion"} & columns.keys() or ("date" in columns and hours):
        kind = "damaged"  # Tandem's own column names, but not all of any of the five files
    else:
        return None
    order = tuple(hours[h] for h in range(24)) if kind == "hourly" else ()
    return Header(kind, delimiter, columns, units, order, len(cells), bad_unit)


def sniff_header(line: str) -> Header | None:
    """The Tandem Source header on a file's first line, or ``None`` when it is not one."""
    text = line.lstrip("\ufeff")
    for delimiter in (",", ";", "\t"):
        if delimiter not in text:
            continue
        try:
            cells = next(csv.reader([text], delimiter=delimiter), [])
        except csv.Error:  # a stray carriage return or quote: not a header
            return None
        header = _read_header(cells, delimiter)
        if header is not None:
            return header
    return None


# --- times and numbers ------------------------------------------------------------------------------


def _us_wall(text: str) -> int | None:
    """Wall ms of ``M/D/YY[YY] [h:mm[:ss] [AM|PM]]`` (Tandem's dates, Excel's re-saved stamps)."""
    match = _US_STAMP.match(text)
    if match is None:
        return None
    month, day, year = int(match[1]), int(match[2]), int(match[3])
    year += 2000 if year < 100 else 0  # noqa: PLR2004 - two-digit years
    hour, minute, second = int(match[4] or 0), int(match[5] or 0), int(match[6] or 0)
    if match[7] is not None:
        if not 1 <= hour <= 12:  # noqa: PLR2004
            return None
        hour = hour % 12 + (12 if match[7] in "Pp" else 0)
    try:
        return wall_ms(dt.datetime(year, month, day, hour, minute, second))  # noqa: DTZ001 - wall time
    except ValueError:
        return None


def parse_wall(text: str) -> int | None:
    """Wall time in ms (:func:`~glucoshare.ingest.localtime.wall_ms`) of a stamp, ``None`` if unreadable.

    ISO (``2026-03-05T00:04:33``, and Excel's ``2026-03-05 0:04``) or month first (``3/5/26``,
    ``3/5/2026 12:04:33 AM``); never with an offset.
    """
    try:
        return wall_ms(parse_iso_wall_time(text.strip()))
    except ValueError:
        return _us_wall(text)


def wall_times(stamps: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Wall times (ms) of a column of stamps, and which of them were readable.

    A column of 19-character ISO stamps (what Tandem writes) is parsed by NumPy at once (a zone
    designator makes NumPy warn: the column then goes stamp by stamp, where it is unreadable);
    anything else stamp by stamp through :func:`parse_wall`. Unreadable stamps give 0.
    """
    count = len(stamps)
    if count and set(map(len, stamps)) == {_ISO_WIDTH}:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                seconds = np.array(stamps, dtype="datetime64[s]").astype(np.int64)
        except (ValueError, UserWarning, DeprecationWarning):
            pass
        else:
            return seconds * 1000, np.ones(count, np.bool_)
    walls = np.zeros(count, np.int64)
    readable = np.zeros(count, np.bool_)
    for at, stamp in enumerate(stamps):
        wall = parse_wall(stamp)
        if wall is not None:
            walls[at] = wall
            readable[at] = True
    return walls, readable


def _number_or_nan(text: str, *, decimal_comma: bool) -> float:
    try:
        return parse_number(text, decimal_comma=decimal_comma)
    except ValueError:
        return math.nan


def numbers(texts: list[str], *, decimal_comma: bool) -> npt.NDArray[np.float64]:
    """The numbers of a column of cells; NaN where a cell is empty or not a finite number."""
    if not any("_" in text for text in texts):
        cells = [text.replace(",", ".") for text in texts] if decimal_comma else texts
        if not decimal_comma or not any("." in text for text in texts):
            try:
                values = np.array(cells, np.float64)
            except ValueError:
                pass
            else:
                values[~np.isfinite(values)] = np.nan
                return values
    return np.array([_number_or_nan(text, decimal_comma=decimal_comma) for text in texts], np.float64)


def _ambiguous(wall: int, tz: zoneinfo.ZoneInfo) -> bool:
    """True when a wall time falls in the hour a fall-back change repeats."""
    local = _EPOCH + dt.timedelta(milliseconds=wall)
    return local.replace(tzinfo=tz, fold=0).utcoffset() != local.replace(tzinfo=tz, fold=1).utcoffset()


def _steps_back(walls: npt.NDArray[np.int64], tz: zoneinfo.ZoneInfo) -> int | None:
    """How many steps back wall times take, each into a repeated (fall-back) hour.

    ``None`` when there are too many, or one of another kind.
    """
    back = np.flatnonzero(walls[1:] < walls[:-1])
    if back.size > _MAX_FOLD_STEPS:
        return None
    fold_steps = all(
        walls[at] - walls[at + 1] <= _FOLD_STEP_LIMIT_MS and _ambiguous(int(walls[at + 1]), tz)
        for at in back.tolist()
    )
    return back.size if fold_steps else None


def _ascending(walls: npt.NDArray[np.int64], tz: zoneinfo.ZoneInfo) -> bool:
    """True when wall times ascend apart from a few steps back into a repeated (fall-back) hour."""
    return _steps_back(walls, tz) is not None


def device_order(walls: npt.NDArray[np.int64], tz: zoneinfo.ZoneInfo) -> npt.NDArray[np.intp] | None:
    """The order in which to feed a stream's wall times (file order) to its clock; ``None``: as is.

    Ascending (steps back only into a repeated hour): as is; descending: reversed; otherwise sorted
    by wall time (stable), which reads a repeated hour as its first pass.
    """
    if _ascending(walls, tz):
        return None
    reverse = np.arange(walls.size - 1, -1, -1, dtype=np.intp)
    if _ascending(walls[reverse], tz):
        return reverse
    return np.argsort(walls, kind="stable")


def resolve_stream(
    clock: LocalClock, walls: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """UTC instants (ms) and offsets (min) of one stream's wall times, given in file order.

    The clock is fed in :func:`device_order`; the results come back in file order.
    """
    order = device_order(walls, clock.tz)
    if order is None:
        return clock.resolve_many(walls)
    instants = np.empty_like(walls)
    offsets = np.empty_like(walls)
    instants[order], offsets[order] = clock.resolve_many(walls[order])
    return instants, offsets


# --- rows ---------------------------------------------------------------------------------------------


def csv_rows(
    source: SourceText, delimiter: str, width: int, *, skip: int = 1
) -> Iterator[tuple[int, list[str]]]:
    """``(line, cells)`` of every non-blank row after the first ``skip`` lines, padded to ``width``.

    A row the csv module cannot split (a stray line break or quote) refuses the file
    (:func:`~glucoshare.ingest.base.checked_rows`).
    """
    reader = csv.reader(source.lines(), delimiter=delimiter)
    rows = checked_rows(reader, source.name)
    for _ in range(skip):
        next(rows, None)
    pad = [""] * width
    for cells in rows:
        padded = _padded(cells, width, pad)
        if padded is not None:
            yield reader.line_num, padded


def _padded(cells: list[str], width: int, pad: list[str]) -> list[str] | None:
    """A row padded to ``width`` cells; ``None`` for a blank line or one of delimiters only."""
    if len(cells) < width or not cells[0]:
        if not any(cell.strip() for cell in cells):
            return None
        cells.extend(pad[len(cells) :])
    return cells


def csv_chunks(source: SourceText, delimiter: str) -> Iterator[tuple[int, list[list[str]]]]:
    """``(first line, rows)`` of the rows after the header, :data:`_CHUNK_ROWS` rows at a time.

    Only for a text without quotes, where every row is one line, so that the rows of a chunk are on
    consecutive lines (a blank line is a row ``[]``). A row the csv module cannot split refuses the
    file as :func:`csv_rows` does.
    """
    reader = csv.reader(source.lines(), delimiter=delimiter)
    chunks = checked_chunks(reader, source.name, _CHUNK_ROWS)
    first = next(chunks, [])[1:]  # the header is line 1
    if first:
        yield 2, first
    for chunk in chunks:
        yield reader.line_num - len(chunk) + 1, chunk


@dataclasses.dataclass(slots=True)
class ReadingRows:
    """The glucose rows of one serial, as read (one stream), column by column."""

    lines: list[int] = dataclasses.field(default_factory=list)
    stamps: list[str] = dataclasses.field(default_factory=list)
    values: list[str] = dataclasses.field(default_factory=list)
    descriptions: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    model: str = ""

    def extend(self, other: ReadingRows) -> None:
        """Add the rows of ``other`` after these."""
        self.lines += other.lines
        self.stamps += other.stamps
        self.values += other.values
        self.descriptions += other.descriptions
        self.notes += other.notes


@dataclasses.dataclass(frozen=True, slots=True)
class ReadingFormat:
    """How the glucose rows of one file read: unit, decimal comma, description of blank rows."""

    unit: str
    decimal_comma: bool
    default_description: str
    """``egv`` (CGM file) or ``bg`` (BG file): what a row without a description is."""


def _description(text: str, default: str) -> str | None:
    folded = text.strip().lower()
    if not folded:
        return default
    if folded == "egv":
        return "egv"
    if folded in ("bg", "bgm"):
        return "bg"
    return None


def reading_items(
    rows: ReadingRows,
    *,
    device: str,
    clock: LocalClock,
    style: ReadingFormat,
    reject: Callable[[RejectedRow], None],
) -> list[ParsedItem]:
    """The records of one stream of glucose rows (CGM ``EGV``, meter ``BG``, notes).

    Plain sensor readings come in :class:`ReadingBlock` columns; readings at the sensor limits, meter
    readings and notes as single records. Unreadable rows go to ``reject``.
    """
    walls, readable = readable_walls(rows, reject)
    if not readable.any():
        return []
    resolved = _spread(readable, resolve_stream(clock, walls[readable]))
    return items_at(rows, readable, resolved, device=device, style=style, reject=reject)


def readable_walls(
    rows: ReadingRows, reject: Callable[[RejectedRow], None]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The wall times of rows (:func:`wall_times`); a row without a readable one goes to ``reject``."""
    walls, readable = wall_times(rows.stamps)
    if not readable.all():
        for at in np.flatnonzero(~readable).tolist():
            stamp = rows.stamps[at].strip()
            reject(
                RejectedRow(rows.lines[at], "unreadable Event Date Time" if stamp else "no Event Date Time")
            )
    return walls, readable


def items_at(
    rows: ReadingRows,
    readable: npt.NDArray[np.bool_],
    resolved: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    *,
    device: str,
    style: ReadingFormat,
    reject: Callable[[RejectedRow], None],
) -> list[ParsedItem]:
    """The records of glucose rows whose readable times are resolved (``(instants, offsets)``, per row).

    See :func:`reading_items`.
    """
    instants, offsets = resolved
    lines = np.array(rows.lines, np.int64)
    keep = np.flatnonzero(readable)
    written = numbers(rows.values, decimal_comma=style.decimal_comma)
    factor = UNIT_FACTORS[style.unit]
    low, high = SENSOR_LIMITS[style.unit]
    descriptions = rows.descriptions
    kinds: dict[str, str | None] = {}
    plain = np.zeros(len(rows.lines), np.bool_)
    if set(descriptions) <= {"EGV"} and not any(rows.notes):
        plain[keep] = (written[keep] > low) & (written[keep] < high)  # NaN compares False
    items: list[ParsedItem] = []
    unit = style.unit
    for at in np.flatnonzero(readable & ~plain).tolist():
        line = rows.lines[at]
        text = descriptions[at]
        kind = kinds.get(text, "?")
        if kind == "?":
            kind = kinds[text] = _description(text, style.default_description)
        time_ms, offset = int(instants[at]), int(offsets[at])
        note = rows.notes[at].strip() if rows.notes else ""
        value = float(written[at])
        if kind is None:
            reject(RejectedRow(line, "unknown reading Description (not EGV or BG)"))
            continue
        if math.isnan(value):
            cell = rows.values[at].strip()
            word = cell.lower()
            if kind == "egv" and word in ("low", "lo", "high", "hi"):
                flag = "low" if word.startswith("lo") else "high"
                limit = SENSOR_LOW_MGDL if flag == "low" else SENSOR_HIGH_MGDL
                items.append(
                    ParsedRecord(
                        "cbg", "sensor", time_ms, offset, line, device, limit, None, unit, None, flag
                    )
                )
            elif not cell and note:
                pass
            else:
                reason = "glucose value is not a number" if cell else "row without a glucose value"
                reject(RejectedRow(line, reason))
                continue
        elif value <= 0:
            reject(RejectedRow(line, "glucose value is not positive"))
            continue
        elif kind == "egv":
            annotation = "low" if value <= low else "high" if value >= high else None
            mgdl = (
                SENSOR_LOW_MGDL
                if annotation == "low"
                else SENSOR_HIGH_MGDL
                if annotation == "high"
                else value * factor
            )
            items.append(
                ParsedRecord(
                    "cbg", "sensor", time_ms, offset, line, device, mgdl, value, unit, None, annotation
                )
            )
        else:
            items.append(
                ParsedRecord("smbg", "meter", time_ms, offset, line, device, value * factor, value, unit)
            )
        if note:
            items.append(
                ParsedRecord("note", "", time_ms, offset, line, device, payload={"text": note}, identity=note)
            )
    where = np.flatnonzero(plain)
    for start in range(0, where.size, _BLOCK_ROWS):
        chosen = where[start : start + _BLOCK_ROWS]
        original = written[chosen]
        items.append(
            ReadingBlock(
                "cbg",
                "sensor",
                device,
                unit,
                instants[chosen],
                offsets[chosen],
                original * factor,
                original,
                lines[chosen],
            )
        )
    return items


# --- boluses (shared with the t:connect importer) --------------------------------------------------------

_BOLUS_NAMES: dict[str, str] = {
    "insulin": "Insulin Delivered",
    "bolex_insulin": "Bolex Insulin Delivered",
    "food": "Food Delivered",
    "correction": "Correction Delivered",
    "carbs": "Carb Size",
    "bg": "BG",
    "duration": "Duration (mins)",
    "bolex_start": "Bolex Start Date Time",
    "bolex_end": "Bolex Completion Date Time",
    "carb_ratio": "Carb Ratio",
    "isf": "Correction Factor",
    "target": "Target BG",
}


@dataclasses.dataclass(frozen=True, slots=True)
class BolusFormat:
    """How the cells of a bolus table read."""

    decimal_comma: bool
    bg_unit: str
    """The unit of the BG input (``mg/dL`` or ``mmol/L``)."""
    target_unit: str
    """The unit of the target and of the correction factor (per U)."""
    names: Mapping[str, str]
    """The file's column name of each field, for messages."""


def _amount(cell: Callable[[str], str], field: str, style: BolusFormat) -> float | None:
    """A non-negative number of a bolus row (``None`` when empty; ``ValueError`` naming the column)."""
    text = cell(field)
    if not text:
        return None
    what = style.names.get(field, field)
    try:
        value = parse_number(text, decimal_comma=style.decimal_comma)
    except ValueError:
        msg = f"{what} is not a number"
        raise ValueError(msg) from None
    if value < 0:
        msg = f"{what} is negative"
        raise ValueError(msg)
    return value


def _bolex_walls(cell: Callable[[str], str], style: BolusFormat) -> tuple[int | None, int | None]:
    """Wall times of an extended part's start and completion (``ValueError`` when unreadable)."""
    walls: list[int | None] = []
    for field in ("bolex_start", "bolex_end"):
        text = cell(field)
        wall = parse_wall(text) if text else None
        if text and wall is None:
            msg = f"{style.names.get(field, field)} is unreadable"
            raise ValueError(msg)
        walls.append(wall)
    return walls[0], walls[1]


def bolus_records(
    cell: Callable[[str], str],
    *,
    line: int,
    device: str,
    wall: int,
    clocks: tuple[LocalClock, LocalClock],
    style: BolusFormat,
) -> list[ParsedRecord]:
    """The records of one bolus row (module notes); ``ValueError`` naming the column when unreadable.

    ``cell(field)`` gives a stripped cell by field name (``insulin``, ``bolex_insulin``, ``food``,
    ``correction``, ``carbs``, ``bg``, ``duration`` in minutes, ``bolex_start``, ``bolex_end``,
    ``bolus_type``, ``method``, ``status``, ``bolex_status``, ``carb_ratio``, ``isf``, ``target``, and
    t:connect's ``programmed``, ``food_estimate``, ``correction_estimate``; "" when absent). ``wall`` is
    the wall time of the standard part (its completion), ``clocks`` the serial's stream and the
    stream of Bolex completion times. Insulin in U, glucose in mg/dL.
    """
    clock, ends = clocks
    insulin = _amount(cell, "insulin", style)
    extended = _amount(cell, "bolex_insulin", style)
    start_wall, end_wall = _bolex_walls(cell, style)
    has_extended = extended is not None and (extended > 0 or start_wall is not None)
    has_normal = insulin is not None and (insulin > 0 or not has_extended)
    if not has_normal and not has_extended:
        msg = f"bolus row without {style.names.get('insulin', 'insulin delivered')}"
        raise ValueError(msg)
    food, correction = _amount(cell, "food", style), _amount(cell, "correction", style)
    carbs, bg = _amount(cell, "carbs", style), _amount(cell, "bg", style)
    minutes, programmed = _amount(cell, "duration", style), _amount(cell, "programmed", style)
    bolus_type, method = cell("bolus_type"), cell("method")
    automated = any(word in f"{bolus_type} {method}".lower() for word in ("auto", "control-iq"))
    time_ms, offset = clock.resolve_ms(wall)
    base: dict[str, Any] = {k: v for k, v in (("bolus_type", bolus_type), ("delivery_method", method)) if v}
    out: list[ParsedRecord] = []
    if has_normal:
        payload = dict(base)
        extra = (
            ("completion_status", cell("status") or None),
            ("meal_units", food),
            ("correction_units", correction),
            ("programmed", programmed),
            ("part", "normal" if has_extended else None),
        )
        payload.update((key, value) for key, value in extra if value is not None)
        subtype = "automated" if automated else "dual" if has_extended else "normal"
        out.append(
            ParsedRecord(
                "bolus",
                subtype,
                time_ms,
                offset,
                line,
                device,
                insulin,
                payload=payload or None,
                identity="normal" if has_extended else "",
            )
        )
    if has_extended:
        start_ms, start_offset = (time_ms, offset) if start_wall is None else clock.resolve_ms(start_wall)
        duration: int | None = None
        if start_wall is not None and end_wall is not None and end_wall >= start_wall:
            duration = max(0, ends.resolve_ms(end_wall)[0] - start_ms)
        elif minutes is not None:
            duration = round(minutes * 60_000)
        payload = dict(base)
        status = cell("bolex_status")
        if status:
            payload["completion_status"] = status
        payload["part"] = "extended"
        out.append(
            ParsedRecord(
                "bolus",
                "automated" if automated else "dual" if has_normal else "extended",
                start_ms,
                start_offset,
                line,
                device,
                extended,
                duration_ms=duration,
                payload=payload,
                identity="extended",
            )
        )
    if not automated and ((carbs or 0) > 0 or (bg or 0) > 0):
        out.append(_wizard(cell, style, carbs=carbs, bg=bg, at=(time_ms, offset, line), device=device))
    return out


def _wizard(
    cell: Callable[[str], str],
    style: BolusFormat,
    *,
    carbs: float | None,
    bg: float | None,
    at: tuple[int, int, int],
    device: str,
) -> ParsedRecord:
    """The bolus calculator's record of a bolus row: value = carbs (g); 0 in a setting = not given."""
    factor = UNIT_FACTORS[style.target_unit]
    payload: dict[str, Any] = {"bg_input": bg * UNIT_FACTORS[style.bg_unit] if bg else None}
    ratio, isf, target = (_amount(cell, field, style) for field in ("carb_ratio", "isf", "target"))
    if ratio:
        payload["carb_ratio"] = ratio
    if isf:
        payload["insulin_sensitivity"] = isf * factor
    if target:
        payload["target_low"] = payload["target_high"] = target * factor
    for field in ("food_estimate", "correction_estimate"):
        value = _amount(cell, field, style)
        if value is not None:
            payload[field] = value
    time_ms, offset, line = at
    return ParsedRecord(
        "wizard",
        "",
        time_ms,
        offset,
        line,
        device,
        carbs,
        payload=payload,
        identity=f"bg={payload['bg_input']}",
    )


# --- the importer ---------------------------------------------------------------------------------------


def _cells(line: str, delimiter: str) -> list[str] | None:
    """The cells of one line of a sibling file (``None`` when it cannot be split)."""
    if '"' not in line:
        return line.rstrip("\r\n").split(delimiter)
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:  # the sibling's own import reports it
        return None


def _doses_hours_fast(
    source: SourceText, delimiter: str, serial_at: int, stamp_at: int
) -> dict[str, set[str]] | None:
    """:func:`_doses_hours` by one regular expression over the whole text (the usual file).

    The usual file has no quotes and ISO times in every row; ``None`` when any row is otherwise (the
    caller then reads row by row).
    """
    text = source.text
    if '"' in text:
        return None
    cell = f"[^{re.escape(delimiter)}\r\n]*"
    fields = []
    for at in range(max(serial_at, stamp_at) + 1):
        if at == serial_at:
            fields.append(f"({cell})")
        elif at == stamp_at:
            fields.append(f"(\\d{{4}}-\\d{{2}}-\\d{{2}})[T ](\\d{{2}}){cell}")
        else:
            fields.append(cell)
    pattern = re.compile("^" + re.escape(delimiter).join(fields), re.MULTILINE)
    body = text[text.find("\n") + 1 :]
    found = pattern.findall(body)
    lines = body.count("\n") + (not body.endswith("\n") and bool(body))
    # Every line matched (so none is blank), or else every non-blank line (the slower count).
    if len(found) != lines and len(found) != sum(1 for line in body.splitlines() if line.strip()):
        return None
    hours: dict[str, set[str]] = {}
    for serial, date, hour in set(found):  # a dose every five minutes: twelve rows per hour
        hours.setdefault(serial.strip(), set()).add(f"{date}T{hour}")
    return hours


def _doses_hours(source: SourceText, header: Header) -> dict[str, set[str]]:
    """Per serial, the wall-clock hours (``YYYY-MM-DDTHH``) a Basal-doses file has doses in.

    Every row with a readable time counts (a row whose dose is unreadable too: its hour is the
    doses file's). Lines are split without the csv module unless quoted: this reads a year of
    doses for every hourly file of an upload.
    """
    serial_at, stamp_at = header.columns["serial"], header.columns["stamp"]
    width = max(serial_at, stamp_at) + 1
    fast = _doses_hours_fast(source, header.delimiter, serial_at, stamp_at)
    if fast is not None:
        return fast
    hours: dict[str, set[str]] = {}
    lines = source.lines()
    next(lines, None)
    for line in lines:
        cells = _cells(line, header.delimiter)
        if cells is None or len(cells) < width:
            continue
        stamp = cells[stamp_at].strip()
        if len(stamp) >= 13 and stamp[4] == "-" and stamp[10] in "T ":  # noqa: PLR2004 - ISO
            key = f"{stamp[:10]}T{stamp[11:13]}"
        else:
            wall = parse_wall(stamp)
            if wall is None:
                continue
            key = (_EPOCH + dt.timedelta(milliseconds=wall)).strftime("%Y-%m-%dT%H")
        serial = cells[serial_at].strip()
        bucket = hours.get(serial)
        if bucket is None:
            bucket = hours[serial] = set()
        bucket.add(key)
    return hours


def _device_model(source: SourceText, header: Header, serial: str) -> str | None:
    """The pump model a sibling file with a ``Device Type`` column names for one serial.

    Looks the serial up in the text (a search, not a parse: a sibling may hold a year of readings)
    and reads the first row that has it in its ``Serial Number`` column.
    """
    text = source.text
    device_at, serial_at = header.columns["device"], header.columns["serial"]
    first_row = text.find("\n") + 1
    at = text.find(serial, first_row) if first_row else -1
    while at >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        cells = _cells(text[start:end], header.delimiter)
        if (
            cells is not None
            and len(cells) > max(device_at, serial_at)
            and cells[serial_at].strip() == serial
        ):
            device_type = cells[device_at].strip()
            if device_type:
                return pump_model(device_type)
        at = text.find(serial, end)
    return None


class _Siblings:
    """What the other files of the upload tell: pump models by serial, doses by serial and hour."""

    def __init__(self, source: SourceText, ctx: ParseContext) -> None:
        self.files: list[tuple[SourceText, Header]] = []
        for sibling in ctx.siblings:
            if sibling is source or (sibling.name == source.name and sibling.text == source.text):
                continue
            head = sibling.head(1)
            header = sniff_header(head[0]) if head else None
            if header is not None:
                self.files.append((sibling, header))
        self._models: dict[str, str | None] = {}
        self._hours: dict[str, set[str]] | None = None
        self.doses_names: dict[str, list[str]] = {}

    def model(self, serial: str) -> str | None:
        """The pump model of a serial, from the siblings that name a ``Device Type`` (``None``: none)."""
        if serial not in self._models:
            found = (
                _device_model(sibling, header, serial)
                for sibling, header in self.files
                if "device" in header.columns and serial
            )
            self._models[serial] = next((model for model in found if model is not None), None)
        return self._models[serial]

    def dose_hours(self) -> dict[str, set[str]]:
        """Wall-clock hours with basal doses, by serial, from the Basal-doses siblings."""
        if self._hours is None:
            self._hours = {}
            for sibling, header in self.files:
                if header.kind != "doses":
                    continue
                for serial, hours in _doses_hours(sibling, header).items():
                    self._hours.setdefault(serial, set()).update(hours)
                    self.doses_names.setdefault(serial, []).append(sibling.name)
        return self._hours


class TandemSourceImporter:
    """Reads the CSV files of a Tandem Source export (CGM, BG, Bolus, Basal-doses, Hourly)."""

    format: ClassVar[str] = "tandem_source"
    label: ClassVar[str] = "Tandem Source CSV export"

    def detect(self, head: list[str]) -> bool:
        """True when the first line is a Tandem Source header (one of the five, or a damaged one)."""
        return bool(head) and sniff_header(head[0]) is not None

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Parse one file of the export; :class:`MalformedFileError` for an unknown glucose unit.

        The records are read lazily; devices are registered before their first record.
        """
        head = source.head(1)
        header = sniff_header(head[0]) if head else None
        if header is None:  # pragma: no cover - detect() ran first
            msg = f"{source.name}: line 1: not a Tandem Source header"
            raise MalformedFileError(msg)
        if header.bad_unit is not None:
            msg = f"{source.name}: line 1: unknown glucose unit in column {shown(header.bad_unit)}"
            raise MalformedFileError(msg)
        if header.kind == "damaged":
            msg = (
                f"{source.name}: line 1: a Tandem Source header without the columns of any of its files "
                "(Serial Number with CGM Readings, BG, Bolus Insulin Delivered, Commanded Basal Dose, "
                "or all 24 hourly columns)"
            )
            raise MalformedFileError(msg)
        result = ParseResult(records=iter(()))
        reader = _FileReader(source, ctx, result, header)
        result.records = reader.records()
        return result


class _SerialRows:
    """Collects glucose or dose rows as one :class:`ReadingRows` per serial, in file order."""

    def __init__(
        self,
        columns: Mapping[str, int],
        *,
        value_at: int,
        description_at: int | None,
        note_at: int,
        reject: Callable[[RejectedRow], None],
    ) -> None:
        self.serial_at, self.stamp_at = columns["serial"], columns["stamp"]
        self.device_at = columns.get("device", -1)
        self.value_at, self.description_at, self.note_at = value_at, description_at, note_at
        self.reject = reject
        self.streams: dict[str, ReadingRows] = {}
        self._rows: ReadingRows | None = None
        self._serial: str | None = None  # the serial cell of the last row, as written

    def add(self, line: int, cells: list[str]) -> None:
        """One row (padded to the header's width); a row without a serial is rejected."""
        serial = cells[self.serial_at]
        if serial != self._serial or self._rows is None:
            key = serial.strip()
            if not key:
                self.reject(RejectedRow(line, "no Serial Number"))
                return
            rows = self.streams.get(key)
            if rows is None:
                model = cells[self.device_at] if self.device_at >= 0 else ""
                rows = self.streams[key] = ReadingRows(model=model)
            self._rows, self._serial = rows, serial
        rows = self._rows
        rows.lines.append(line)
        rows.stamps.append(cells[self.stamp_at])
        rows.values.append(cells[self.value_at])
        if self.description_at is not None:
            rows.descriptions.append(cells[self.description_at] if self.description_at >= 0 else "")
        if self.note_at >= 0:
            rows.notes.append(cells[self.note_at])

    def add_chunk(self, first: int, chunk: list[list[str]], width: int) -> None:
        """Rows on consecutive lines from ``first`` (:func:`csv_chunks`), each as :meth:`add` takes it."""
        pad = [""] * width
        for line, cells in enumerate(chunk, first):
            padded = _padded(cells, width, pad)
            if padded is not None:
                self.add(line, padded)


class _LiveStream(Protocol):
    """One serial's rows, handed over a chunk at a time (:class:`_LiveReadings`, :class:`_LiveDoses`)."""

    def add(self, rows: ReadingRows) -> list[ParsedItem]:
        """The records of the next chunk's rows that can go now."""
        ...

    def finish(self) -> list[ParsedItem] | None:
        """The records still to go; ``None`` when those that went came out otherwise (read again)."""
        ...


@dataclasses.dataclass(slots=True)
class _Ascent:
    """Whether a stream's rows, read a chunk at a time, ascend so far (:func:`_steps_back` over all)."""

    tz: zoneinfo.ZoneInfo
    last_wall: int | None = None
    steps_back: int = 0
    holds: bool = True

    def follow(self, timed: npt.NDArray[np.int64]) -> bool:
        """Take the next chunk's readable wall times; ``True`` while the stream still ascends."""
        if self.holds:
            joined = timed if self.last_wall is None else np.concatenate(([self.last_wall], timed))
            steps = _steps_back(joined, self.tz)
            self.holds = steps is not None and self.steps_back + steps <= _MAX_FOLD_STEPS
            self.steps_back += steps or 0
        if timed.size:
            self.last_wall = int(timed[-1])
        return self.holds


class _LiveReadings:
    """One serial's glucose rows, resolved and handed over a chunk at a time while they ascend.

    Tandem writes every stream in time order, so its device order is the file order
    (:func:`device_order`): each chunk is resolved by the stream's clock as it is read, and its
    records handed over at once. From a chunk on that steps back (more than into a repeated hour),
    the rows are kept. At the end the whole stream is then resolved in its device order by a new
    clock; the rows handed over must come out at the same instants (they do unless a device clock
    lagging behind a spring-forward change reaches them), and the kept rows follow. When they do not,
    :meth:`finish` says so and the file is read again whole (:class:`~glucoshare.ingest.base.Restart`).
    """

    def __init__(self, reader: _FileReader, serial: str, device: str, style: ReadingFormat) -> None:
        self.reader = reader
        self.serial = serial
        self.device = device
        self.style = style
        self.clock = reader.clock(serial)
        self.walls: list[npt.NDArray[np.int64]] = []
        """The readable wall times of every chunk, in file order."""
        self.handed: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
        """Instants and offsets of the readable rows handed over, chunk by chunk."""
        self.kept = ReadingRows()
        self.kept_readable: list[npt.NDArray[np.bool_]] = []
        self.ascent = _Ascent(self.clock.tz)

    def add(self, rows: ReadingRows) -> list[ParsedItem]:
        """The records of the next chunk's rows of the stream (none while rows are kept)."""
        walls, readable = readable_walls(rows, self.reader.reject)
        timed = walls[readable]
        self.walls.append(timed)
        if not self.ascent.follow(timed):
            self.kept.extend(rows)
            self.kept_readable.append(readable)
            return []
        resolved = self.clock.resolve_many(timed)
        self.handed.append(resolved)
        return items_at(
            rows,
            readable,
            _spread(readable, resolved),
            device=self.device,
            style=self.style,
            reject=self.reader.reject,
        )

    def finish(self) -> list[ParsedItem] | None:
        """The records of the kept rows; ``None`` when those handed over came out at other instants."""
        if not self.kept.lines:
            return []
        walls = np.concatenate(self.walls)
        instants, offsets = resolve_stream(self.reader.clock(self.serial, fresh=True), walls)
        count = sum(len(handed) for handed, _ in self.handed)
        if count:
            handed_instants = np.concatenate([handed for handed, _ in self.handed])
            handed_offsets = np.concatenate([handed for _, handed in self.handed])
            if not (
                np.array_equal(instants[:count], handed_instants)
                and np.array_equal(offsets[:count], handed_offsets)
            ):
                return None
        readable = np.concatenate(self.kept_readable)
        return items_at(
            self.kept,
            readable,
            _spread(readable, (instants[count:], offsets[count:])),
            device=self.device,
            style=self.style,
            reject=self.reader.reject,
        )


class _LiveDoses:
    """One serial's basal doses, resolved and handed over a chunk at a time while they ascend.

    As :class:`_LiveReadings`, with one more thing to know before a dose can go: its segment lasts
    until the next later dose, so the doses at the latest instant read so far wait for the next
    chunk. At the end the segments of all doses are worked out again (and, if the stream stopped
    ascending, their instants, by a new clock in the device order); the doses handed over must come
    out the same, else :meth:`finish` answers ``None`` and the file is read again.
    """

    def __init__(self, reader: _FileReader, serial: str, device: str) -> None:
        self.reader = reader
        self.serial = serial
        self.device = device
        self.clock = reader.clock(serial)
        self.walls: list[npt.NDArray[np.int64]] = []
        """The readable wall times of every chunk, in file order."""
        self.usable: list[npt.NDArray[np.bool_]] = []
        """Per chunk, which of its readable rows have a usable dose."""
        self.lines: list[npt.NDArray[np.int64]] = []
        self.doses: list[npt.NDArray[np.float64]] = []
        self.resolved: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
        """Instants and offsets of the usable doses, per chunk, while the stream ascends."""
        self.count = 0
        """Usable doses so far: a dose is known by its position among them."""
        self.handed: list[
            tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]
        ] = []
        """Position, instant, offset and segment of the doses handed over, per chunk."""
        self.pending = _NO_DOSES
        self.ascent = _Ascent(self.clock.tz)

    def add(self, rows: ReadingRows) -> list[ParsedItem]:
        """The doses of the next chunk's rows of the stream that can go now."""
        walls, readable, doses, good = self.reader.dose_cells(rows)
        timed = walls[readable]
        ascending = self.ascent.follow(timed)
        usable = good[readable]
        keep = np.flatnonzero(good)
        first = self.count
        self.count += keep.size
        self.walls.append(timed)
        self.usable.append(usable)
        self.lines.append(np.array(rows.lines, np.int64)[keep])
        self.doses.append(doses[keep])
        if not ascending:
            return []
        instants, offsets = self.clock.resolve_many(timed)
        self.resolved.append((instants[usable], offsets[usable]))
        waiting = _Doses(
            np.concatenate((self.pending.at, np.arange(first, self.count))),
            np.concatenate((self.pending.instants, instants[usable])),
            np.concatenate((self.pending.offsets, offsets[usable])),
            np.concatenate((self.pending.doses, self.doses[-1])),
            np.concatenate((self.pending.lines, self.lines[-1])),
        )
        if not waiting.at.size:
            self.pending = waiting
            return []
        going = waiting.instants < waiting.instants.max()
        segments = dose_segments(waiting.instants)[going]
        self.pending = waiting.chosen(~going)
        now = waiting.chosen(going)
        self.handed.append((now.at, now.instants, now.offsets, segments))
        return _present(
            self.reader.dose_block(self.device, (now.instants, now.offsets, segments), now.doses, now.lines)
        )

    def finish(self) -> list[ParsedItem] | None:
        """The doses still to go; ``None`` when those handed over came out otherwise."""
        if not self.count:  # no dose to store: as read whole, the stream's times count for nothing
            self.reader.clock(self.serial, fresh=True)
            return []
        if self.ascent.holds:
            instants = np.concatenate([at for at, _ in self.resolved])
            offsets = np.concatenate([offset for _, offset in self.resolved])
        else:
            clock = self.reader.clock(self.serial, fresh=True)
            all_instants, all_offsets = resolve_stream(clock, np.concatenate(self.walls))
            usable = np.concatenate(self.usable)
            instants, offsets = all_instants[usable], all_offsets[usable]
        segments = dose_segments(instants)
        left = np.ones(self.count, np.bool_)
        for at, handed_instants, handed_offsets, handed_segments in self.handed:
            if not (
                np.array_equal(instants[at], handed_instants)
                and np.array_equal(offsets[at], handed_offsets)
                and np.array_equal(segments[at], handed_segments)
            ):
                return None
            left[at] = False
        lines, doses = np.concatenate(self.lines)[left], np.concatenate(self.doses)[left]
        resolved = (instants[left], offsets[left], segments[left])
        return _present(self.reader.dose_block(self.device, resolved, doses, lines))


def _present(block: ReadingBlock | None) -> list[ParsedItem]:
    """A block to hand over, if there is one."""
    return [] if block is None else [block]


@dataclasses.dataclass(frozen=True, slots=True)
class _Doses:
    """Usable doses of a stream by column: position among them, instant, offset, dose, line."""

    at: npt.NDArray[np.intp]
    instants: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    doses: npt.NDArray[np.float64]
    lines: npt.NDArray[np.int64]

    def chosen(self, mask: npt.NDArray[np.bool_]) -> _Doses:
        """The doses ``mask`` selects."""
        return _Doses(
            self.at[mask], self.instants[mask], self.offsets[mask], self.doses[mask], self.lines[mask]
        )


_NO_DOSES = _Doses(
    np.zeros(0, np.intp),
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros(0, np.float64),
    np.zeros(0, np.int64),
)


def _spread(
    readable: npt.NDArray[np.bool_], resolved: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Instants and offsets of the readable rows placed at their rows (0 at the others)."""
    instants = np.zeros(readable.size, np.int64)
    offsets = np.zeros(readable.size, np.int64)
    instants[readable], offsets[readable] = resolved
    return instants, offsets


class _FileReader:
    """The state of reading one file of the export."""

    def __init__(self, source: SourceText, ctx: ParseContext, result: ParseResult, header: Header) -> None:
        self.source = source
        self.ctx = ctx
        self.result = result
        self.header = header
        self.columns = header.columns
        self.decimal_comma = header.delimiter == ";"
        self.reject = result.rejected.append
        self.siblings = _Siblings(source, ctx)

    def records(self) -> Iterator[ParsedItem]:
        """Every record of the file, by its kind."""
        kind = self.header.kind
        if kind in ("cgm", "bg"):
            return self.readings()
        if kind == "doses":
            return self.doses()
        if kind == "bolus":
            return self.boluses()
        return self.hourly()

    def device(self, serial: str, device_type: str) -> str:
        """The key of a serial's device, registered on first sight."""
        devices = self.result.devices
        if serial not in devices:
            model = pump_model(device_type) if device_type.strip() else self.siblings.model(serial)
            devices[serial] = DeviceInfo(MANUFACTURER, model or GENERIC_MODEL, serial)
        return serial

    def clock(self, serial: str, part: str = "", *, fresh: bool = False) -> LocalClock:
        """The clock of one stream of this file: its kind, the serial, and a part of a row.

        ``fresh``: a new clock, for a stream read again from its start.
        """
        stream = f"tandem_source|{self.header.kind}{part}|{serial}"
        return self.ctx.fresh_clock(stream) if fresh else self.ctx.clock(stream)

    def cell(self, cells: list[str], column: str) -> str:
        """A cell by column name, stripped ("" when the file has no such column)."""
        index = self.columns.get(column)
        return cells[index].strip() if index is not None else ""

    # -- CGM and BG ------------------------------------------------------------------------------

    def _rows_by_serial(
        self, value_at: int, *, description_at: int | None = None, note_at: int = -1
    ) -> dict[str, ReadingRows]:
        """The file's rows as one column set per serial, in file order (a row without one refused).

        ``value_at`` is the value's column; descriptions are kept when ``description_at`` is given
        (``-1``: the file has none, an empty one per row), notes when ``note_at`` is a column.
        """
        collector = self._collector(value_at, description_at=description_at, note_at=note_at)()
        for line, cells in csv_rows(self.source, self.header.delimiter, self.header.width):
            collector.add(line, cells)
        return collector.streams

    def _collector(
        self, value_at: int, *, description_at: int | None, note_at: int
    ) -> Callable[[], _SerialRows]:
        """What makes a :class:`_SerialRows` of this file's rows (the value, description, note columns)."""
        return functools.partial(
            _SerialRows,
            self.columns,
            value_at=value_at,
            description_at=description_at,
            note_at=note_at,
            reject=self.reject,
        )

    def readings(self) -> Iterator[ParsedItem]:
        """CGM or BG file: rows grouped by serial, each serial one stream (:class:`_LiveReadings`)."""
        header, columns = self.header, self.columns
        value_at = columns["glucose" if header.kind == "cgm" else "bg"]
        unit = header.units["glucose" if header.kind == "cgm" else "bg"]
        style = ReadingFormat(unit, self.decimal_comma, "egv" if header.kind == "cgm" else "bg")
        return self._streams(
            self._collector(
                value_at, description_at=columns.get("description", -1), note_at=columns.get("note", -1)
            ),
            lambda serial, device: _LiveReadings(self, serial, device, style),
            functools.partial(self._readings_whole, value_at, style),
        )

    def _streams(
        self,
        collector: Callable[[], _SerialRows],
        live_stream: Callable[[str, str], _LiveStream],
        whole: Callable[..., Iterator[ParsedItem]],
    ) -> Iterator[ParsedItem]:
        """The records of a CGM, BG or Basal-doses file, each serial's handed over by its live stream.

        A file without quotes is read a chunk of rows at a time (``collector`` makes a chunk's
        streams); each serial's records go while its rows ascend, and the file is read again whole
        when a stream's :meth:`_LiveStream.finish` finds that what went came out otherwise. Any
        other file is read ``whole`` first.
        """
        if '"' in self.source.text:
            yield from whole(fresh=False)
            return
        live: dict[str, _LiveStream] = {}
        for first, chunk in csv_chunks(self.source, self.header.delimiter):
            chunk_rows = collector()
            chunk_rows.add_chunk(first, chunk, self.header.width)
            for serial, rows in chunk_rows.streams.items():
                stream = live.get(serial)
                if stream is None:
                    stream = live[serial] = live_stream(serial, self.device(serial, rows.model))
                yield from stream.add(rows)
        finished = [stream.finish() for stream in live.values()]
        if any(items is None for items in finished):
            self.result.rejected.clear()
            yield Restart("a stream does not ascend: the file is read again, whole, in its device order")
            yield from whole(fresh=True)
            return
        for items in finished:
            yield from items or ()

    def _readings_whole(self, value_at: int, style: ReadingFormat, *, fresh: bool) -> Iterator[ParsedItem]:
        """The glucose rows read whole, then each serial's records (``fresh``: each stream from the start)."""
        columns = self.columns
        streams = self._rows_by_serial(
            value_at, description_at=columns.get("description", -1), note_at=columns.get("note", -1)
        )
        for serial, stream in streams.items():
            device = self.device(serial, stream.model)
            clock = self.clock(serial, fresh=fresh)
            yield from reading_items(stream, device=device, clock=clock, style=style, reject=self.reject)

    # -- Basal-doses ------------------------------------------------------------------------------

    def doses(self) -> Iterator[ParsedItem]:
        """Basal-doses file: each dose a basal segment until the next row of its serial (module notes).

        Each serial one stream (:class:`_LiveDoses`).
        """
        return self._streams(
            self._collector(self.columns["dose"], description_at=None, note_at=-1),
            lambda serial, device: _LiveDoses(self, serial, device),
            self._doses_whole,
        )

    def _doses_whole(self, *, fresh: bool) -> Iterator[ParsedItem]:
        """The doses read whole, then each serial's (``fresh``: each stream from the start)."""
        streams = self._rows_by_serial(self.columns["dose"])
        for serial, stream in streams.items():
            device = self.device(serial, stream.model)
            block = self._dose_block(stream, device, self.clock(serial, fresh=fresh))
            if block is not None:
                yield block

    def dose_cells(
        self, rows: ReadingRows
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """``(walls, readable, doses, good)`` of dose rows; a row without a usable dose is rejected.

        ``readable``: the row's time is; ``good``: its time and its dose (a number, not negative) are.
        """
        walls, readable = wall_times(rows.stamps)
        doses = numbers(rows.values, decimal_comma=self.decimal_comma)
        good = readable & (doses >= 0)  # NaN compares False
        if not good.all():
            for at in np.flatnonzero(~good).tolist():
                text = rows.values[at].strip()
                if not readable[at]:
                    reason = "unreadable Event Date Time" if rows.stamps[at].strip() else "no Event Date Time"
                elif not text:
                    reason = "no Commanded Basal Dose"
                elif math.isnan(doses[at]):
                    reason = "Commanded Basal Dose is not a number"
                else:
                    reason = "Commanded Basal Dose is negative"
                self.reject(RejectedRow(rows.lines[at], reason))
        return walls, readable, doses, good

    def _dose_block(self, rows: ReadingRows, device: str, clock: LocalClock) -> ReadingBlock | None:
        """The basal records of one serial's doses (module notes); unreadable rows are rejected."""
        walls, readable, doses, good = self.dose_cells(rows)
        timed = np.flatnonzero(readable)
        if not good.any():
            return None
        # Every timed row is fed to the clock (as the readings are), then the unreadable doses dropped.
        all_instants, all_offsets = resolve_stream(clock, walls[timed])
        usable = good[timed]
        keep = timed[usable]
        instants = all_instants[usable]
        lines = np.array(rows.lines, np.int64)[keep]
        doses_kept = doses[keep]
        return self.dose_block(
            device, (instants, all_offsets[usable], dose_segments(instants)), doses_kept, lines
        )

    def dose_block(
        self,
        device: str,
        resolved: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
        doses: npt.NDArray[np.float64],
        lines: npt.NDArray[np.int64],
    ) -> ReadingBlock | None:
        """Doses with their ``(instants, offsets, segments)`` as basal records (``None``: none left).

        A dose beyond what a pump delivers in its segment is rejected.
        """
        instants, offsets, segments = resolved
        plausible = doses <= segments * (MAX_BASAL_RATE_U_H / HOUR_MS)  # the dose at the largest rate
        if not plausible.all():
            for line in lines[~plausible].tolist():
                reason = f"Commanded Basal Dose is more than {MAX_BASAL_RATE_U_H:g} U/h"
                self.reject(RejectedRow(line, reason))
            instants, offsets, segments = instants[plausible], offsets[plausible], segments[plausible]
            doses, lines = doses[plausible], lines[plausible]
        if not instants.size:
            return None
        return ReadingBlock(
            type="basal",
            subtype="automated",
            device=device,
            orig_unit="U",
            time_ms=instants,
            utc_offset_min=offsets,
            value=doses * HOUR_MS / segments,
            orig_value=doses,
            line=lines,
            duration_ms=segments,
        )

    # -- Bolus ---------------------------------------------------------------------------------------

    def boluses(self) -> Iterator[ParsedItem]:
        """Bolus file: one stream per serial, rows fed in the device's order of completion times."""
        header = self.header
        serial_at = self.columns["serial"]
        streams: dict[str, list[tuple[int, list[str], int | None]]] = {}
        for line, cells in csv_rows(self.source, header.delimiter, header.width):
            serial = cells[serial_at].strip()
            if not serial:
                self.reject(RejectedRow(line, "no Serial Number"))
                continue
            kind = self.cell(cells, "type").lower()
            if kind not in ("", "bolus"):
                self.reject(RejectedRow(line, "unknown row Type (not Bolus)"))
                continue
            when = self.cell(cells, "completion") or self.cell(cells, "bolex_start")
            streams.setdefault(serial, []).append((line, cells, parse_wall(when) if when else None))
        units = header.units
        style = BolusFormat(
            self.decimal_comma,
            units.get("bg", "mg/dL"),
            units.get("target", units.get("bg", "mg/dL")),
            _BOLUS_NAMES,
        )
        for serial, rows in streams.items():
            device = self.device(serial, "")
            clock, ends = self.clock(serial), self.clock(serial, "|bolex-end")
            timed = [row for row in rows if row[2] is not None]
            for line, _, wall in rows:
                if wall is None:
                    self.reject(RejectedRow(line, "no readable Completion Date Time"))
            walls = np.array([row[2] for row in timed], np.int64)
            order = device_order(walls, clock.tz) if walls.size else None
            ordered = timed if order is None else [timed[at] for at in order.tolist()]
            for line, cells, wall in ordered:
                assert wall is not None  # noqa: S101 - only timed rows
                try:
                    yield from bolus_records(
                        functools.partial(self.cell, cells),
                        line=line,
                        device=device,
                        wall=wall,
                        clocks=(clock, ends),
                        style=style,
                    )
                except ValueError as exc:
                    self.reject(RejectedRow(line, str(exc)))

    # -- Hourly-basal-delivery -----------------------------------------------------------------------

    def hourly(self) -> Iterator[ParsedItem]:
        """Hourly-basal-delivery file: hours the doses of a sibling cover are left out (module notes)."""
        header = self.header
        serial_at, date_at = self.columns["serial"], self.columns["date"]
        streams: dict[str, list[tuple[int, int, list[str]]]] = {}
        for line, cells in csv_rows(self.source, header.delimiter, header.width):
            serial = cells[serial_at].strip()
            if not serial:
                self.reject(RejectedRow(line, "no Serial Number"))
                continue
            day = parse_wall(cells[date_at])
            if day is None or day % 86_400_000:
                reason = "unreadable Event Date" if cells[date_at].strip() else "no Event Date"
                self.reject(RejectedRow(line, reason))
                continue
            streams.setdefault(serial, []).append((day, line, cells))
        covered = self.siblings.dose_hours()
        stored = deferred = 0
        for serial, rows in streams.items():
            device = self.device(serial, "")
            hours = covered.get(serial)
            clock = self.clock(serial)
            for day, line, cells in sorted(rows, key=lambda row: row[0]):
                try:
                    records, left_out = self._hour_records(
                        cells, line, device, day=day, clock=clock, covered=hours
                    )
                except ValueError as exc:
                    self.reject(RejectedRow(line, str(exc)))
                    continue
                stored += len(records)
                deferred += left_out
                yield from records
        notes = self.result.notes
        if deferred:
            names = sorted({name for serial in streams for name in self.siblings.doses_names.get(serial, [])})
            notes.append(
                f"{deferred} hourly basal totals were not stored: the Basal-doses file of the same upload "
                f"({', '.join(names)}) holds the doses of those hours (or they were 0 U)"
            )
        if stored:
            notes.append(
                f"{stored} hourly basal totals were stored as one basal record per hour (the hour's "
                "average rate); they are the insulin the Basal-doses file lists dose by dose, so when that "
                "file is imported in another upload the same insulin is stored twice"
            )

    def _hour_records(
        self,
        cells: list[str],
        line: int,
        device: str,
        *,
        day: int,
        clock: LocalClock,
        covered: set[str] | None,
    ) -> tuple[list[ParsedRecord], int]:
        """The records of one day row and how many of its hours were left to the doses file."""
        totals: list[float | None] = []
        for hour, index in enumerate(self.header.hours):
            text = cells[index].strip()
            if not text:
                totals.append(None)
                continue
            try:
                value = parse_number(text, decimal_comma=self.decimal_comma)
            except ValueError:
                msg = f"the {_hour_label(hour)} column is not a number"
                raise ValueError(msg) from None
            if value < 0:
                msg = f"the {_hour_label(hour)} column is negative"
                raise ValueError(msg)
            if value > MAX_BASAL_RATE_U_H:
                msg = f"the {_hour_label(hour)} column is more than {MAX_BASAL_RATE_U_H:g} U"
                raise ValueError(msg)
            totals.append(value)
        # Hour boundaries on the stream's clock; a wall time the zone skips is never fed to it (the
        # clock would take it for a device clock not yet put forward, and shift the hours after it).
        skipped = _skipped_hours(day, clock.tz)
        bounds = [None if hour in skipped else clock.resolve_ms(day + hour * HOUR_MS) for hour in range(25)]
        date = (_EPOCH + dt.timedelta(milliseconds=day)).strftime("%Y-%m-%d")
        out: list[ParsedRecord] = []
        left_out = 0
        for hour, total in enumerate(totals):
            if total is None:
                continue
            if covered is not None and (total == 0 or f"{date}T{hour:02d}" in covered):
                left_out += 1
                continue
            begin = bounds[hour]
            if begin is None:
                if total > 0:
                    msg = f"insulin in the {_hour_label(hour)} column, an hour skipped by daylight saving"
                    raise ValueError(msg)
                continue
            start, offset = begin
            end = next((bound[0] for bound in bounds[hour + 1 :] if bound is not None), start + HOUR_MS)
            out.append(
                ParsedRecord(
                    "basal",
                    "automated",
                    start,
                    offset,
                    line,
                    device,
                    total * HOUR_MS / (end - start),
                    total,
                    "U",
                    end - start,
                )
            )
        return out, left_out


def _skipped_hours(day: int, tz: zoneinfo.ZoneInfo) -> set[int]:
    """The hours 0 to 24 of a local day (wall ms of its midnight) whose start the zone skips."""
    midnight = _EPOCH + dt.timedelta(milliseconds=day)
    after = midnight + dt.timedelta(hours=25)
    if midnight.replace(tzinfo=tz).utcoffset() == after.replace(tzinfo=tz).utcoffset():
        return set()
    skipped: set[int] = set()
    for hour in range(25):
        local = midnight + dt.timedelta(hours=hour)
        if local.replace(tzinfo=tz).astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != local:
            skipped.add(hour)
    return skipped


def _hour_label(hour: int) -> str:
    """The export's name of an hour column (``12:00 AM`` … ``11:00 PM``)."""
    return f"{(hour % 12) or 12}:00 {'AM' if hour < 12 else 'PM'}"  # noqa: PLR2004


def dose_segments(instants: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """How long each basal dose lasts (ms): until the next later row, or one pump cycle.

    A gap of more than :data:`MAX_DOSE_SEGMENT_MS` to the next later instant (or none) counts
    :data:`DOSE_INTERVAL_MS`; rows at the same instant share the gap of their instant.
    """
    ordered = np.sort(instants)
    following = np.searchsorted(ordered, instants, side="right")
    segments = np.full(instants.size, DOSE_INTERVAL_MS, np.int64)
    has_next = following < ordered.size
    gaps = ordered[np.minimum(following, ordered.size - 1)] - instants
    usable = has_next & (gaps <= MAX_DOSE_SEGMENT_MS)
    segments[usable] = gaps[usable]
    return segments
