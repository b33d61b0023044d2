"""diasend export (legacy, before Glooko): an Excel 97 ``.xls`` workbook (research/formats.md §6).

diasend, the Swedish service that Glooko took over, exported a patient's data as one workbook with
one sheet per kind of data. The import service renders any workbook as text before the importers
see it (:mod:`glucoshare.ingest.workbooks`): ``#workbook	1``, then per sheet a ``#sheet	<name>`` line
followed by one tab-separated line per spreadsheet row (empty rows kept), so a record's line number
points at its row. Everything about the layout comes from third-party parsers (Tidepool's old
diasend importer, GGC), not from a raw file we hold; what is assumed beyond them is marked in
``docs/formats/diasend.md``.

**Recognised** from the head of the rendering: the ``#workbook`` line, then a sheet named as one of
diasend's sheets whose own signature follows within the first lines: ``Time`` and a unit column on
``Name and glucose`` or ``CGM``; ``Time`` and ``Basal Amount (U/h)``, ``Bolus Volume (U)`` or
``Carbs(g)`` on ``Insulin use and carbs``; ``Insulin pump settings for Serial number:`` on ``Insulin
pump settings``; ``Time`` and an alarm/event column on ``Alarms and events``. Every diasend sheet has
its header within its first rows, so a long first sheet does not hide it.

**Sheets and mapping.**

=========================  ========================================================================
sheet                      records
=========================  ========================================================================
``Name and glucose``       header ``Time`` + unit (``mmol/L``/``mg/dL``) on row 5; date range
                           ``DD/MM/YYYY to DD/MM/YYYY`` above it → ``smbg`` ``meter`` (mg/dL);
                           ``LO``/``HI`` → 20/600 mg/dL annotated ``low``/``high``
``CGM``                    header on row 2 → ``cbg`` ``sensor`` as :class:`ReadingBlock` columns;
                           values at or beyond 40/500 mg/dL (2.2/27.8 mmol/L) annotated, the words
                           ``LO``/``HI`` stored as 40/500 mg/dL
``Insulin use and carbs``  header on row 1, columns by name: ``Basal Amount (U/h)`` → ``basal``
                           ``scheduled`` (a rate change, lasting to the next basal row, at most
                           24 h; the last has no duration); ``Bolus Volume (U)`` with ``Immediate``/
                           ``Extended Volume (U)`` and ``Duration (min)`` → ``bolus`` ``normal``,
                           ``extended`` (extended part only) or ``dual`` (both parts); ``Carbs(g)``
                           → ``food`` (g); ``Notes`` → ``note`` (identity = the text). Daily totals
                           and boluses of 0 U are not stored (a note says how many)
``Insulin pump settings``  key/value rows (serial, active program, BG unit, maxima) and tables
                           (``Basal profiles`` ``Program: 1..4``, ``I:C ratio settings``, ``ISF
                           programs``, ``BG target range settings`` with ``± x``) → one
                           ``pumpSettings`` in the canonical payload (:mod:`glucoshare.analytics.
                           settings`), dated at the export's end (below)
``Alarms and events``      header ``Time`` + a column naming alarms or events → ``deviceEvent``
                           ``alarm`` (identity = the alarm's text); another layout is not read (a
                           note says so)
=========================  ========================================================================

A sheet without rows is nothing; a diasend sheet with rows but without its header, or with a glucose
unit other than mmol/L or mg/dL, refuses the workbook with :class:`MalformedFileError` naming the
sheet and line. Sheets of other names are not read (a note names them).

**Times** are local wall times to the minute: a real Excel date cell (rendered ISO) or text
``DD/MM/YYYY HH:MM``. Text dates with ``/`` or ``-`` are read day-first unless a date of the
workbook can only be read month-first (a second field above 12) and none only day-first; a workbook
with both is refused. Dotted dates are day-first. Each sheet is one local-time stream, fed to its
clock oldest first (a sheet written newest first is read from its end).

**Devices.** The sheets do not name the meter or the CGM: they are ``Unknown`` devices "blood
glucose meter reported by diasend" and "CGM reported by diasend" without serials. The pump
(insulin, alarms, settings) takes its serial, and its model where the cell reads ``serial (model)``,
from the settings sheet. **Pump settings** are dated at 23:59 of the last day of the date range on
``Name and glucose``, else at the instant of the workbook's latest record; without either they are
not stored (a note says so).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from glucoshare.analytics.settings import InvalidPumpSettingsError, parse_pump_settings, pump_settings_payload
from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    SourceText,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import LocalClock
from glucoshare.ingest.numbers import bounded_amount, parse_number
from glucoshare.ingest.workbooks import SHEET_MARK, WORKBOOK_MARK
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

GLUCOSE_SHEET: Final = "Name and glucose"
CGM_SHEET: Final = "CGM"
INSULIN_SHEET: Final = "Insulin use and carbs"
SETTINGS_SHEET: Final = "Insulin pump settings"
ALARMS_SHEET: Final = "Alarms and events"
SHEET_NAMES: Final = {
    "glucose": GLUCOSE_SHEET,
    "cgm": CGM_SHEET,
    "insulin": INSULIN_SHEET,
    "settings": SETTINGS_SHEET,
    "alarms": ALARMS_SHEET,
}
"""diasend's sheet names by the kind of data they hold."""

SERIAL_KEY: Final = "Insulin pump settings for Serial number:"
UNKNOWN_MANUFACTURER: Final = "Unknown"
METER_MODEL: Final = "blood glucose meter reported by diasend"
CGM_MODEL: Final = "CGM reported by diasend"
PUMP_MODEL: Final = "insulin pump reported by diasend"
METER_KEY: Final = "meter"
CGM_KEY: Final = "cgm"
PUMP_KEY: Final = "pump"

CGM_LIMITS_MGDL: Final = (40.0, 500.0)
"""What the CGM's LO/HI words are stored as; numbers at or beyond these (as written, see
:data:`CGM_WRITTEN_LIMITS`) are annotated ``low``/``high``. The sensor is unknown, so the ceiling is
the widest any sensor has."""
CGM_WRITTEN_LIMITS: Final = {"mg/dL": (40.0, 500.0), "mmol/L": (2.2, 27.8)}
METER_LIMITS_MGDL: Final = (20.0, 600.0)
"""What a meter's LO/HI words are stored as (numbers from a meter are never annotated)."""
MAX_BASAL_SEGMENT_MS: Final = 86_400_000
"""A basal rate lasts until the next basal row, at most this long (24 h)."""
HEADER_ROWS: Final = 10
"""A sheet's header row is looked for in this many leading rows."""

_DAY_MS = 86_400_000
_MINUTE_MS = 60_000
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_FACTORS = {"mg/dL": 1.0, "mmol/L": MGDL_PER_MMOLL}
_MAX_MGDL = 1500.0
_MAX_RATE = 50.0
_MAX_UNITS = 250.0
_MAX_CARBS_G = 5000.0
_MAX_MINUTES = 1440.0
_LAST_MONTH = 12
_SHORT_YEAR = 2  # digits of a two-digit year (2000 + yy)
_YEAR_2000 = 2000
_LAST_HOUR_12 = 12
_LOW_WORDS = frozenset({"lo", "low"})
_HIGH_WORDS = frozenset({"hi", "high"})

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NUM_DATE = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})")
_LEADING_DATE = re.compile(r"^(\d{1,2})([/-])(\d{1,2})\2(?:\d{4}|\d{2})(?!\d)", re.MULTILINE)
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp])\.?\s*[Mm]\.?)?")
_RANGE = re.compile(r"(\S+)\s+(?:to|-|–)\s+(\S+)", re.IGNORECASE)
_UNIT = re.compile(r"(mmol/?l|mg/?dl)\)?$")
_PROGRAM = re.compile(r"program:?\s*(\d+)")
_LEADING_NUMBER = re.compile(r"\s*(\d+(?:[.,]\d+)?)")
_SERIAL_MODEL = re.compile(r"(.*?)\s*\((.+)\)")

DAY_FIRST: Final = "day-first"
MONTH_FIRST: Final = "month-first"

_Glucose = tuple[float, float | None, str | None]  # (mg/dL, value as written, annotation)

_PUMP_MAKERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("animas",), "Animas"),
    (("accu-chek", "accuchek"), "Roche"),
    (("omnipod", "insulet"), "Insulet"),
    (("minimed", "medtronic", "paradigm"), "Medtronic"),
    (("t:slim", "tandem"), "Tandem"),
    (("dana",), "SOOIL"),
    (("cellnovo",), "Cellnovo"),
    (("ypsomed", "mylife"), "Ypsomed"),
)

_INSULIN_COLUMNS: dict[str, str] = {
    "time": "time",
    "basal amount (u/h)": "basal",
    "bolus type": "bolus_type",
    "bolus volume (u)": "bolus",
    "immediate volume (u)": "immediate",
    "extended volume (u)": "extended",
    "duration (min)": "duration",
    "carbs(g)": "carbs",
    "carbs (g)": "carbs",
    "notes": "notes",
    "note": "notes",
    "total daily dose": "totals",
    "total daily basal": "totals",
    "total daily bolus": "totals",
}
_INSULIN_DATA = frozenset({"basal", "bolus", "immediate", "extended", "carbs", "notes"})

_SETTINGS_TABLES: dict[str, str] = {
    "basal profiles": "basal",
    "i:c ratio settings": "carb",
    "isf programs": "isf",
    "bg target range settings": "target",
}
_SETTINGS_SCALARS: dict[str, str] = {
    "active basal program": "active",
    "bg unit": "unit",
    "max bolus": "max_bolus_u",
    "max basal": "max_basal_u_h",
    "insulin-on-board duration": "insulin_duration_h",
}


def fold(text: str) -> str:
    """Lower case without accents and with single spaces, for matching names."""
    decomposed = unicodedata.normalize("NFKD", text.strip().casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


_SHEET_KINDS: Final = {fold(name): kind for kind, name in SHEET_NAMES.items()}
_SERIAL_FOLDED: Final = fold(SERIAL_KEY).rstrip(":")


def glucose_unit(text: str) -> str | None:
    """The glucose unit a header cell names (``mmol/L`` or ``mg/dL``), ``None`` for anything else."""
    match = _UNIT.search(fold(text).replace(" ", ""))
    if match is None:
        return None
    return "mmol/L" if match.group(1).startswith("mmol") else "mg/dL"


def newest_first(walls: npt.NDArray[np.int64]) -> bool:
    """True when a stream's rows (wall times in file order) are newest first: read from the end.

    That is when more steps between neighbouring rows go back in time than forward.
    """
    steps = np.diff(walls)
    return int(np.count_nonzero(steps < 0)) > int(np.count_nonzero(steps > 0))


def resolve_stream(
    clock: LocalClock, walls: list[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """UTC instants (ms) and offsets (min) of a stream's wall times, in file order.

    The clock is fed oldest first: a stream written newest first is fed from its end.
    """
    array = np.array(walls, np.int64)
    if newest_first(array):
        instants, offsets = clock.resolve_many(np.ascontiguousarray(array[::-1]))
        return instants[::-1], offsets[::-1]
    return clock.resolve_many(array)


def pump_device(serial_cell: str | None) -> DeviceInfo:
    """The pump a settings sheet's serial cell names (``serial`` or ``serial (model)``).

    A model naming a known make is that maker's; otherwise the maker is unknown.
    """
    text = (serial_cell or "").strip()
    model = PUMP_MODEL
    match = _SERIAL_MODEL.fullmatch(text)
    if match is not None:
        text, model = match.group(1).strip(), match.group(2).strip()
    folded = model.casefold()
    maker = next(
        (maker for words, maker in _PUMP_MAKERS if any(word in folded for word in words)),
        UNKNOWN_MANUFACTURER,
    )
    return DeviceInfo(maker, model, text or None)


def _date_order(name: str, text: str) -> str:
    """The day/month order of the workbook's text dates (module notes); raises on contradiction."""
    day_only: re.Match[str] | None = None
    month_only: re.Match[str] | None = None
    for match in _LEADING_DATE.finditer(text):
        first, second = int(match.group(1)), int(match.group(3))
        if day_only is None and first > _LAST_MONTH >= second:
            day_only = match
        elif month_only is None and second > _LAST_MONTH >= first:
            month_only = match
        if day_only is not None and month_only is not None:
            day_line = text.count("\n", 0, day_only.start()) + 1
            month_line = text.count("\n", 0, month_only.start()) + 1
            later, earlier = max(day_line, month_line), min(day_line, month_line)
            msg = (
                f"{name}: line {later}: the dates on lines {earlier} and {later} can only be read in "
                "different day/month orders; the workbook's dates contradict themselves"
            )
            raise MalformedFileError(msg)
    return MONTH_FIRST if month_only is not None else DAY_FIRST


class _Times:
    """Local wall times of the ``Time`` cells (ms since the naive epoch), parts cached."""

    def __init__(self, name: str, text: str) -> None:
        self.order = _date_order(name, text)
        self.days: dict[str, int] = {}
        self.clock: dict[str, int] = {}

    def day(self, text: str) -> int | None:
        """Wall ms of the midnight starting a date (ISO, or numbers in the workbook's order)."""
        text = text.strip()
        iso = _ISO_DATE.fullmatch(text)
        if iso is not None:
            year, month, day = int(iso.group(1)), int(iso.group(2)), int(iso.group(3))
        else:
            numbers = _NUM_DATE.fullmatch(text)
            if numbers is None:
                return None
            first, second = int(numbers.group(1)), int(numbers.group(3))
            year = int(numbers.group(4))
            if len(numbers.group(4)) == _SHORT_YEAR:
                year += _YEAR_2000
            day_first = numbers.group(2) == "." or self.order == DAY_FIRST
            day, month = (first, second) if day_first else (second, first)
        try:
            ordinal = dt.date(year, month, day).toordinal()
        except ValueError:
            return None
        return (ordinal - _EPOCH_ORDINAL) * _DAY_MS

    @staticmethod
    def time_of_day(text: str) -> int | None:
        """Milliseconds into the day of ``HH:MM[:SS]`` (optionally with AM/PM), else ``None``."""
        match = _TIME.fullmatch(text.strip())
        if match is None:
            return None
        hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
        meridiem = match.group(4)
        if meridiem is not None:
            if not 1 <= hour <= _LAST_HOUR_12:
                return None
            hour = hour % _LAST_HOUR_12 + (_LAST_HOUR_12 if meridiem in "Pp" else 0)
        if hour > 23 or minute > 59 or second > 59:  # noqa: PLR2004
            return None
        return ((hour * 60 + minute) * 60 + second) * 1000

    def wall(self, stamp: str) -> int | None:
        """The wall time of a ``Time`` cell, ``None`` when unreadable.

        A date without a time is midnight only when it is ISO: a real date cell at midnight is
        rendered as a date.
        """
        date, sep, time = stamp.partition("T")
        if not sep:
            date, _, time = stamp.strip().partition(" ")
        day = self.days.get(date)
        if day is None:
            day = self.day(date)
            if day is None:
                return None
            self.days[date] = day
        if not time.strip():
            return day if _ISO_DATE.fullmatch(date.strip()) else None
        moment = self.clock.get(time)
        if moment is None:
            moment = self.time_of_day(time)
            if moment is None:
                return None
            self.clock[time] = moment
        return day + moment


@dataclasses.dataclass(slots=True)
class _Sheet:
    """One sheet of the rendering: row ``i`` (0-based) is on line ``line + 1 + i``."""

    name: str
    kind: str | None
    line: int
    rows: list[str]

    def cells(self, index: int) -> list[str]:
        return self.rows[index].split("\t")

    def row_line(self, index: int) -> int:
        return self.line + 1 + index

    def blank(self, start: int = 0) -> bool:
        """True when no row from ``start`` on holds anything."""
        return not any(row.strip("\t ") for row in self.rows[start:])


def _sheets(source: SourceText) -> list[_Sheet]:
    """The sheets of a rendered workbook, in workbook order."""
    text = source.text
    if not text.startswith(WORKBOOK_MARK):
        msg = f"{source.name}: line 1: this is not a workbook (a diasend export is an Excel workbook)"
        raise MalformedFileError(msg)
    marker = "\n" + SHEET_MARK
    sheets: list[_Sheet] = []
    line, counted = 1, 0
    at = text.find(marker)
    while at >= 0:
        start = at + 1
        line += text.count("\n", counted, start)
        counted = start
        end_of_line = text.find("\n", start)
        if end_of_line < 0:
            end_of_line = len(text)
        name = text[start + len(SHEET_MARK) : end_of_line]
        following = text.find(marker, end_of_line)
        stop = len(text) if following < 0 else following + 1
        rows = text[end_of_line + 1 : stop].split("\n")
        if rows[-1] == "":
            rows.pop()
        sheets.append(_Sheet(name, _SHEET_KINDS.get(fold(name)), line, rows))
        at = following
    return sheets


def _header_row(sheet: _Sheet, accept: Callable[[list[str]], bool]) -> int | None:
    """The index of the first of the leading rows whose cells ``accept`` takes for the header."""
    for index in range(min(HEADER_ROWS, len(sheet.rows))):
        cells = sheet.cells(index)
        if fold(cells[0]) == "time" and accept(cells):
            return index
    return None


def _signature(kind: str, cells: list[str]) -> bool:
    """Whether a row is the signature row of a diasend sheet of ``kind``."""
    first = fold(cells[0])
    if kind == "settings":
        return first.startswith(_SERIAL_FOLDED)
    if first != "time" or len(cells) < 2:  # noqa: PLR2004 - Time and one more column
        return False
    names = [fold(cell) for cell in cells[1:]]
    if kind in ("glucose", "cgm"):
        return bool(names[0])
    if kind == "insulin":
        return any(_INSULIN_COLUMNS.get(name) in ("basal", "bolus", "carbs") for name in names)
    return any("alarm" in name or "event" in name for name in names)


class _RowError(ValueError):
    """A row cannot be read (the message names the cell, never its content)."""


class _SettingsError(ValueError):
    """An entry of the pump settings cannot be read: its line and why (never its content)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def _amount(text: str, what: str, upper: float) -> float | None:
    """A non-negative number of a cell, ``None`` when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        return bounded_amount(text, what, upper)
    except ValueError as exc:
        raise _RowError(str(exc)) from None


@dataclasses.dataclass(frozen=True, slots=True)
class _GlucoseTable:
    """Where a glucose sheet's readings are and how they are written."""

    header: int
    column: int
    unit: str
    cgm: bool


@dataclasses.dataclass(slots=True)
class _PumpSettings:
    """What the settings sheet holds: where, the serial cell, the payload (``None``: not stored)."""

    line: int
    serial: str
    payload: dict[str, Any] | None


class _Reader:
    """Reads one rendered workbook into records (see the module notes)."""

    def __init__(self, source: SourceText, ctx: ParseContext) -> None:
        self.name = source.name
        self.ctx = ctx
        self.sheets = _sheets(source)
        self.times = _Times(source.name, source.text)
        self.result = ParseResult(records=iter(()))
        self.notes: dict[str, int] = {}
        self.latest: tuple[int, int] | None = None
        self.range_end: int | None = None
        self.tables: dict[int, _GlucoseTable] = {}
        self.insulin: dict[int, tuple[int, dict[str, int]]] = {}
        self.alarms: dict[int, tuple[int, int]] = {}
        self.settings: _PumpSettings | None = None
        self.pump = pump_device(None)
        for number, sheet in enumerate(self.sheets):
            self.prepare(number, sheet)
        self.result.records = self.records()

    def refuse(self, line: int, what: str) -> MalformedFileError:
        return MalformedFileError(f"{self.name}: line {line}: {what}")

    def reject(self, line: int, reason: str) -> None:
        self.result.rejected.append(RejectedRow(line, reason))

    def skip(self, what: str) -> None:
        """Count something deliberately not stored (:meth:`finish` says so in a note)."""
        self.notes[what] = self.notes.get(what, 0) + 1

    # -- the structure, read before any record ------------------------------------------------------

    def prepare(self, number: int, sheet: _Sheet) -> None:
        """Find a sheet's header (and read the settings); refuse a diasend sheet without one."""
        kind = sheet.kind
        if kind is None:
            if not sheet.blank():
                self.result.notes.append(
                    f"not read: sheet {sheet.name!r} (not a diasend sheet Glucoshare knows)"
                )
            return
        if sheet.blank():
            return
        if kind in ("glucose", "cgm"):
            self.tables[number] = self.glucose_table(sheet, cgm=kind == "cgm")
        elif kind == "insulin":
            self.insulin[number] = self.insulin_table(sheet)
        elif kind == "alarms":
            found = self.alarms_table(sheet)
            if found is None:
                self.result.notes.append(
                    f"not read: sheet {sheet.name!r} (its layout is not one Glucoshare knows)"
                )
            else:
                self.alarms[number] = found
        elif self.settings is None:
            self.settings = self.read_settings(sheet)
            self.pump = pump_device(self.settings.serial)

    def glucose_table(self, sheet: _Sheet, *, cgm: bool) -> _GlucoseTable:
        header = _header_row(sheet, lambda cells: len(cells) > 1 and bool(cells[1].strip()))
        if header is None:
            what = (
                f"sheet {sheet.name!r} has no header row (Time and a glucose unit) in its first "
                f"{HEADER_ROWS} rows"
            )
            raise self.refuse(sheet.line, what)
        cells = sheet.cells(header)
        unit = glucose_unit(cells[1])
        if unit is None:
            what = (
                f"unknown glucose unit {cells[1].strip()[:40]!r} in sheet {sheet.name!r} "
                "(mmol/L or mg/dL expected)"
            )
            raise self.refuse(sheet.row_line(header), what)
        if not cgm:
            for index in range(header):
                for cell in sheet.cells(index):
                    match = _RANGE.fullmatch(cell.strip())
                    if match is not None and self.times.day(match.group(1)) is not None:
                        self.range_end = self.times.day(match.group(2))
        return _GlucoseTable(header, 1, unit, cgm)

    def insulin_table(self, sheet: _Sheet) -> tuple[int, dict[str, int]]:
        def known(cells: list[str]) -> bool:
            return any(_INSULIN_COLUMNS.get(fold(cell)) in _INSULIN_DATA for cell in cells)

        header = _header_row(sheet, known)
        if header is None:
            what = (
                f"sheet {sheet.name!r} has no header row (Time, Basal Amount (U/h), Bolus Volume (U), "
                f"Carbs(g), ...) in its first {HEADER_ROWS} rows"
            )
            raise self.refuse(sheet.line, what)
        columns: dict[str, int] = {}
        unknown: list[str] = []
        for index, cell in enumerate(sheet.cells(header)):
            field = _INSULIN_COLUMNS.get(fold(cell))
            if field is None:
                if cell.strip():
                    unknown.append(cell.strip()[:40])
            elif field not in columns:
                columns[field] = index
        if unknown:
            names = ", ".join(repr(name) for name in unknown)
            self.result.notes.append(f"not read: column(s) {names} of sheet {sheet.name!r}")
        return header, columns

    @staticmethod
    def alarms_table(sheet: _Sheet) -> tuple[int, int] | None:
        def text_column(cells: list[str]) -> int | None:
            for index, cell in enumerate(cells[1:], 1):
                name = fold(cell)
                if "alarm" in name or "event" in name:
                    return index
            return None

        header = _header_row(sheet, lambda cells: text_column(cells) is not None)
        if header is None:
            return None
        column = text_column(sheet.cells(header))
        assert column is not None  # noqa: S101 - the header was accepted for having it
        return header, column

    # -- pump settings ------------------------------------------------------------------------------

    def read_settings(self, sheet: _Sheet) -> _PumpSettings:
        """Read the settings sheet (the first settings block only) into a canonical payload."""
        first_line: int | None = None
        serial = ""
        scalars: dict[str, tuple[int, str]] = {}
        programs: dict[str, list[tuple[int, list[str]]]] = {}
        tables: dict[str, list[tuple[int, list[str]]]] = {"carb": [], "isf": [], "target": []}
        section: str | None = None
        program: str | None = None
        for index in range(len(sheet.rows)):
            cells = sheet.cells(index)
            line = sheet.row_line(index)
            head = cells[0].strip()
            key = fold(head)
            filled = [cell for cell in cells if cell.strip()]
            if not filled:
                continue
            if key.startswith(_SERIAL_FOLDED):
                if first_line is not None:
                    self.result.notes.append(
                        f"not read: further pump settings blocks on sheet {sheet.name!r} (only the first)"
                    )
                    break
                first_line, serial, section = line, cells[1].strip() if len(cells) > 1 else "", None
            elif key in _SETTINGS_TABLES:
                section, program = _SETTINGS_TABLES[key], None
            elif key in _SETTINGS_SCALARS:
                scalars[_SETTINGS_SCALARS[key]] = (line, cells[1].strip() if len(cells) > 1 else "")
            elif section == "basal" and _PROGRAM.fullmatch(key):
                match = _PROGRAM.fullmatch(key)
                assert match is not None  # noqa: S101 - matched just above
                program = f"Program {int(match.group(1))}"
                programs.setdefault(program, [])
            elif section is not None and head.isdigit():
                if section == "basal":
                    programs.setdefault(program or "Program 1", []).append((line, cells))
                else:
                    tables[section].append((line, cells))
            elif len(filled) == 1 and key != "sum" and not key.startswith("program"):
                section = None  # another section (General, Bolus, ...) whose rows are not read
        if first_line is None:
            what = f"sheet {sheet.name!r} has no {SERIAL_KEY!r} row"
            raise self.refuse(sheet.line, what)
        try:
            payload = self.settings_payload(scalars, programs, tables)
        except _SettingsError as exc:
            self.reject(exc.line, exc.reason)
            return _PumpSettings(first_line, serial, None)
        if payload is None:
            self.result.notes.append("not stored: the pump settings sheet holds no settings")
            return _PumpSettings(first_line, serial, None)
        try:
            checked = parse_pump_settings(payload, 0)
        except InvalidPumpSettingsError as exc:
            self.reject(first_line, f"the pump settings cannot be read ({exc.field} {exc.problem})")
            return _PumpSettings(first_line, serial, None)
        return _PumpSettings(first_line, serial, pump_settings_payload(checked))

    def settings_payload(
        self,
        scalars: dict[str, tuple[int, str]],
        programs: dict[str, list[tuple[int, list[str]]]],
        tables: dict[str, list[tuple[int, list[str]]]],
    ) -> dict[str, Any] | None:
        """The canonical payload of the settings read; :class:`_SettingsError` for a bad entry."""
        factor = 1.0
        if "unit" in scalars:
            line, text = scalars["unit"]
            unit = glucose_unit(text)
            if unit is None:
                raise self.refuse(line, f"unknown BG unit {text[:40]!r} in the pump settings")
            factor = _FACTORS[unit]
        elif tables["isf"] or tables["target"]:
            line = (tables["isf"] or tables["target"])[0][0]
            raise _SettingsError(line, "the pump settings name no BG unit for sensitivities and targets")
        schedules: dict[str, list[dict[str, Any]]] = {}
        for name, entries in programs.items():
            schedule = [
                {"start_min": start, "rate_u_h": value}
                for start, value, _ in (_settings_entry(line, cells) for line, cells in entries)
            ]
            unused = len(schedule) == 1 and schedule[0]["start_min"] == 0 and schedule[0]["rate_u_h"] == 0
            if schedule and not unused:
                schedules[name] = schedule
        carb = [_settings_entry(line, cells) for line, cells in tables["carb"]]
        isf = [_settings_entry(line, cells) for line, cells in tables["isf"]]
        targets = [_settings_entry(line, cells, with_range=True) for line, cells in tables["target"]]
        payload: dict[str, Any] = {
            "basal_schedules": schedules,
            "carb_ratios": [{"start_min": start, "g_per_u": value} for start, value, _ in carb],
            "sensitivities": [{"start_min": start, "mgdl_per_u": value * factor} for start, value, _ in isf],
            "targets": [
                {
                    "start_min": start,
                    "low_mgdl": (value - spread) * factor,
                    "high_mgdl": (value + spread) * factor,
                }
                for start, value, spread in targets
            ],
        }
        for key in ("max_bolus_u", "max_basal_u_h", "insulin_duration_h"):
            if key in scalars:
                line, text = scalars[key]
                match = _LEADING_NUMBER.match(text)
                if match is None:
                    raise _SettingsError(line, f"the pump setting {key} is not a number")
                payload[key] = parse_number(match.group(1), decimal_comma="," in match.group(1))
        if not any(payload.values()):
            return None
        digits = re.search(r"\d+", scalars.get("active", (0, ""))[1])
        active = f"Program {int(digits.group())}" if digits else ""
        payload["active_schedule"] = active if active in schedules else None
        return payload

    # -- records ------------------------------------------------------------------------------------

    def register(self, key: str) -> None:
        devices = self.result.devices
        if key not in devices:
            if key == PUMP_KEY:
                devices[key] = self.pump
            else:
                devices[key] = DeviceInfo(
                    UNKNOWN_MANUFACTURER, METER_MODEL if key == METER_KEY else CGM_MODEL, None
                )

    def seen(self, time_ms: int, offset: int) -> None:
        if self.latest is None or time_ms > self.latest[0]:
            self.latest = (time_ms, offset)

    def records(self) -> Iterator[ParsedItem]:
        """Every record, sheet by sheet in workbook order, the pump settings last."""
        for number, sheet in enumerate(self.sheets):
            if number in self.tables:
                yield from self.glucose(sheet, self.tables[number])
            elif number in self.insulin:
                yield from self.insulin_rows(sheet, *self.insulin[number])
            elif number in self.alarms:
                yield from self.alarm_rows(sheet, *self.alarms[number])
        yield from self.settings_record()
        self.finish()

    def finish(self) -> None:
        """Say what was deliberately not stored."""
        words = {
            "totals": "rows of daily insulin totals (Glucoshare sums the doses itself)",
            "zero": "boluses of 0 U",
        }
        for key, text in words.items():
            if self.notes.get(key):
                self.result.notes.append(f"not stored: {self.notes[key]} {text}")

    def glucose(self, sheet: _Sheet, table: _GlucoseTable) -> Iterator[ParsedItem]:
        """The readings of ``Name and glucose`` (records) or ``CGM`` (a block plus flagged readings)."""
        walls, lines, values = self.readings(sheet, table)
        if not walls:
            return
        key = CGM_KEY if table.cgm else METER_KEY
        self.register(key)
        instants, offsets = resolve_stream(self.ctx.clock(f"diasend|{key}"), walls)
        flagged = [at for at, value in enumerate(values) if value[2] is not None or not table.cgm]
        subtype, kind = ("sensor", "cbg") if table.cgm else ("meter", "smbg")
        for at in flagged:
            time_ms, offset = int(instants[at]), int(offsets[at])
            mgdl, written, annotation = values[at]
            self.seen(time_ms, offset)
            yield ParsedRecord(
                kind, subtype, time_ms, offset, lines[at], key, mgdl, written, table.unit, None, annotation
            )
        if len(flagged) < len(values):
            plain: slice | npt.NDArray[np.bool_] = slice(None)
            if flagged:
                plain = np.ones(len(values), np.bool_)
                plain[flagged] = False
            block = ReadingBlock(
                kind,
                subtype,
                key,
                table.unit,
                instants[plain],
                offsets[plain],
                np.array([value[0] for value in values], np.float64)[plain],
                np.array([value[1] for value in values], np.float64)[plain],
                np.array(lines, np.int64)[plain],
            )
            last = int(np.argmax(block.time_ms))
            self.seen(int(block.time_ms[last]), int(block.utc_offset_min[last]))
            yield block

    def readings(self, sheet: _Sheet, table: _GlucoseTable) -> tuple[list[int], list[int], list[_Glucose]]:
        """The readable rows of a glucose sheet in file order: wall times, lines, values.

        The hot loop of a CGM sheet: date and time parts and glucose texts are cached.
        """
        times = self.times
        days, clock = times.days, times.clock
        reject = self.result.rejected.append
        column = table.column
        unit = table.unit
        cache: dict[str, _Glucose | str] = {}
        walls: list[int] = []
        lines: list[int] = []
        values: list[_Glucose] = []
        line = sheet.row_line(table.header)
        for raw in sheet.rows[table.header + 1 :]:
            line += 1
            cells = raw.split("\t", column + 1)
            stamp = cells[0]
            text = cells[column] if len(cells) > column else ""
            date, sep, time = stamp.partition("T")
            if not sep:
                date, sep, time = stamp.partition(" ")
            day = days.get(date)
            moment = clock.get(time)
            if day is None or moment is None:
                if not stamp.strip() and not text.strip():
                    continue
                found = times.wall(stamp) if stamp.strip() else None
                if found is None:
                    reject(RejectedRow(line, "unreadable time" if stamp.strip() else "no time"))
                    continue
                wall = found
            else:
                wall = day + moment
            value = cache.get(text)
            if value is None:
                value = cache[text] = _glucose(text, unit, cgm=table.cgm)
            if isinstance(value, str):
                reject(RejectedRow(line, value))
                continue
            walls.append(wall)
            lines.append(line)
            values.append(value)
        return walls, lines, values

    def timed_rows(self, sheet: _Sheet, header: int, time_column: int) -> list[tuple[int, int, list[str]]]:
        """``(wall, line, cells)`` of a sheet's rows below its header; rows without a time rejected."""
        out: list[tuple[int, int, list[str]]] = []
        for index in range(header + 1, len(sheet.rows)):
            raw = sheet.rows[index]
            if not raw.strip("\t "):
                continue
            cells = raw.split("\t")
            line = sheet.row_line(index)
            stamp = cells[time_column] if time_column < len(cells) else ""
            if not stamp.strip():
                self.reject(line, "no time")
                continue
            wall = self.times.wall(stamp)
            if wall is None:
                self.reject(line, "unreadable time")
                continue
            out.append((wall, line, cells))
        return out

    def insulin_rows(self, sheet: _Sheet, header: int, columns: dict[str, int]) -> Iterator[ParsedRecord]:
        """Basal rate changes, boluses, carbohydrates and notes of ``Insulin use and carbs``."""
        pending: list[tuple[int, int, list[_Event]]] = []
        for wall, line, cells in self.timed_rows(sheet, header, columns["time"]):

            def cell(field: str, cells: list[str] = cells) -> str:
                index = columns.get(field, -1)
                return cells[index].strip() if 0 <= index < len(cells) else ""

            try:
                events = self.insulin_events(cell)
            except _RowError as exc:
                self.reject(line, str(exc))
                continue
            if events:
                pending.append((wall, line, events))
            elif not any(cell(field) for field in _INSULIN_DATA):
                if cell("totals"):
                    self.skip("totals")
                else:
                    self.reject(line, "row without a basal rate, bolus, carbohydrates or a note")
        if not pending:
            return
        self.register(PUMP_KEY)
        instants, offsets = resolve_stream(self.ctx.clock("diasend|pump"), [wall for wall, _, _ in pending])
        records = [
            ParsedRecord(
                event.type,
                event.subtype,
                int(instants[at]),
                int(offsets[at]),
                line,
                PUMP_KEY,
                event.value,
                duration_ms=event.duration_ms,
                payload=event.payload,
                identity=event.identity,
            )
            for at, (_, line, events) in enumerate(pending)
            for event in events
        ]
        _basal_durations(records)
        records.sort(key=lambda record: record.time_ms)
        for record in records:
            self.seen(record.time_ms, record.utc_offset_min)
        yield from records

    def insulin_events(self, cell: Callable[[str], str]) -> list[_Event]:
        """The records of one row of ``Insulin use and carbs`` (``_RowError`` for a bad cell)."""
        events: list[_Event] = []
        rate = _amount(cell("basal"), "basal rate", _MAX_RATE)
        if rate is not None:
            events.append(_Event("basal", "scheduled", rate))
        total = _amount(cell("bolus"), "bolus volume", _MAX_UNITS)
        immediate = _amount(cell("immediate"), "immediate volume", _MAX_UNITS)
        extended = _amount(cell("extended"), "extended volume", _MAX_UNITS)
        minutes = _amount(cell("duration"), "bolus duration", _MAX_MINUTES)
        if total is None and (immediate is not None or extended is not None):
            total = (immediate or 0.0) + (extended or 0.0)
        if total is not None:
            if total == 0:
                self.skip("zero")
            else:
                events.append(_bolus(total, immediate, extended, minutes, cell("bolus_type")))
        carbs = _amount(cell("carbs"), "carbohydrates", _MAX_CARBS_G)
        if carbs:
            events.append(_Event("food", "", carbs))
        note = cell("notes")
        if note:
            events.append(_Event("note", "", None, payload={"text": note}, identity=note))
        return events

    def alarm_rows(self, sheet: _Sheet, header: int, column: int) -> Iterator[ParsedRecord]:
        """``deviceEvent`` ``alarm`` records of ``Alarms and events`` (the pump's)."""
        pending: list[tuple[int, int, str]] = []
        for wall, line, cells in self.timed_rows(sheet, header, 0):
            text = cells[column].strip() if column < len(cells) else ""
            if not text:
                self.reject(line, "alarm row without a text")
                continue
            pending.append((wall, line, text))
        if not pending:
            return
        self.register(PUMP_KEY)
        instants, offsets = resolve_stream(self.ctx.clock("diasend|alarms"), [wall for wall, _, _ in pending])
        for at, (_, line, text) in enumerate(pending):
            time_ms, offset = int(instants[at]), int(offsets[at])
            self.seen(time_ms, offset)
            yield ParsedRecord(
                "deviceEvent",
                "alarm",
                time_ms,
                offset,
                line,
                PUMP_KEY,
                payload={"alarm": text},
                identity=text,
            )

    def settings_record(self) -> Iterator[ParsedRecord]:
        """The pump settings, dated at the export's end (module notes)."""
        settings = self.settings
        if settings is None or settings.payload is None:
            return
        if self.range_end is not None:
            wall = self.range_end + _DAY_MS - _MINUTE_MS
            time_ms, offset = self.ctx.clock("diasend|settings").resolve_ms(wall)
        elif self.latest is not None:
            time_ms, offset = self.latest
        else:
            self.result.notes.append(
                "not stored: the pump settings (the workbook has no date range and no dated rows to "
                "place them at)"
            )
            return
        self.register(PUMP_KEY)
        yield ParsedRecord(
            "pumpSettings", "", time_ms, offset, settings.line, PUMP_KEY, payload=settings.payload
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Event:
    """One record of an insulin row before its instant is known."""

    type: str
    subtype: str
    value: float | None
    duration_ms: int | None = None
    payload: dict[str, Any] | None = None
    identity: str = ""


def _bolus(
    total: float, immediate: float | None, extended: float | None, minutes: float | None, kind: str
) -> _Event:
    """A bolus: ``dual`` with an immediate and an extended part, ``extended`` with only the latter."""
    payload: dict[str, Any] = {}
    subtype, duration = "normal", None
    if extended:
        subtype = "dual" if immediate else "extended"
        payload = {"immediate_u": immediate or 0.0, "extended_u": extended}
        duration = None if minutes is None else round(minutes * _MINUTE_MS)
    if kind:
        payload["bolus_type"] = kind
    return _Event("bolus", subtype, total, duration_ms=duration, payload=payload or None)


def _basal_durations(records: list[ParsedRecord]) -> None:
    """Give each basal rate the time until the next later basal row, at most 24 h (the last: none)."""
    starts = sorted({record.time_ms for record in records if record.type == "basal"})
    following: dict[int, int | None] = dict(zip(starts, [*starts[1:], None], strict=False))
    for record in records:
        if record.type == "basal":
            end = following[record.time_ms]
            if end is not None:
                record.duration_ms = min(end - record.time_ms, MAX_BASAL_SEGMENT_MS)


def _glucose(text: str, unit: str, *, cgm: bool) -> _Glucose | str:  # noqa: PLR0911 - one per outcome
    """``(mg/dL, value as written, annotation)`` of a glucose cell, or why it cannot be read."""
    word = text.strip().casefold()
    if not word:
        return "no glucose value"
    low_mgdl, high_mgdl = CGM_LIMITS_MGDL if cgm else METER_LIMITS_MGDL
    if word in _LOW_WORDS:
        return (low_mgdl, None, "low")
    if word in _HIGH_WORDS:
        return (high_mgdl, None, "high")
    try:
        number = parse_number(word, decimal_comma="," in word)
    except ValueError:
        return "glucose value is not a number"
    if number <= 0:
        return "glucose value is not positive"
    mgdl = number * _FACTORS[unit]
    if mgdl > _MAX_MGDL:
        return "glucose value is out of range"
    annotation = None
    if cgm:
        floor, ceiling = CGM_WRITTEN_LIMITS[unit]
        annotation = "low" if number <= floor else "high" if number >= ceiling else None
    return (mgdl, number, annotation)


def _settings_entry(line: int, cells: list[str], *, with_range: bool = False) -> tuple[int, float, float]:
    """``(start minute, value, ± range)`` of a numbered settings row; :class:`_SettingsError` otherwise."""
    padded = [*cells, "", "", ""]
    moment = _Times.time_of_day(padded[1])
    if moment is None or moment % _MINUTE_MS:
        raise _SettingsError(line, "unreadable start time in the pump settings")
    try:
        value = parse_number(padded[2], decimal_comma="," in padded[2])
        spread_text = padded[3].strip().removeprefix("±").removeprefix("+/-").strip() if with_range else ""
        spread = parse_number(spread_text, decimal_comma="," in spread_text) if spread_text else 0.0
    except ValueError:
        raise _SettingsError(line, "unreadable value in the pump settings") from None
    return moment // _MINUTE_MS, value, spread


class DiasendImporter:
    """diasend ``.xls`` export (research/formats.md §6; module notes)."""

    format: ClassVar[str] = "diasend"
    label: ClassVar[str] = "diasend export (Excel workbook)"

    def detect(self, head: list[str]) -> bool:
        """True for a rendered workbook with a diasend sheet whose signature row is in the head."""
        if not head or head[0] != WORKBOOK_MARK:
            return False
        kind: str | None = None
        for line in head[1:]:
            if line.startswith(SHEET_MARK):
                kind = _SHEET_KINDS.get(fold(line[len(SHEET_MARK) :]))
            elif kind is not None and line and _signature(kind, line.split("\t")):
                return True
        return False

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Read the workbook's sheets (lazily) into canonical records."""
        return _Reader(source, ctx).result
