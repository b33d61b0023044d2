"""mySugr app CSV export, English and German (research/formats.md §8).

**Layout.** One header row, then one row per logbook entry; comma-delimited (``;`` or tab after a
re-save), fields quoted where needed, quoted fields may hold line breaks. Columns are taken by
header name, in any order; an entry fills only the columns it has. Names known: English ``Date,
Time, Tags, Blood Sugar Measurement (mg/dL), Insulin Injection Units (Pen), Basal Injection Units,
Insulin Injection Units (pump), Insulin (Meal), Insulin (Correction), Temporary Basal Percentage,
Temporary Basal Duration (Minutes), Meal Carbohydrates (Grams, Factor 1), Meal Descriptions,
Activity Duration (Minutes), Activity Intensity (1: Cosy, 2: Ordinary, 3: Demanding), Activity
Description, Steps, Note, Location, Blood pressure, Body weight (kg), HbA1c (Percent), Ketones, Food
type, Medication, Timezone, Latitude, Longitude`` (older exports: ``Blood Glucose Measurement
(mg/dL)``, ``Body weight (lbs)``); German ``Datum, Zeit, Tags, Blutzuckermessung (mg/dL),
Bolusinjektionseinheiten (Pen), Basalinjektionseinheiten, Bolusinjektionseinheiten (Pump), Bolus
(Mahlzeit), Bolus (Korrektur), Mahlzeitkohlenhydrate (Broteinheiten, Faktor 12),
Mahlzeitbeschreibung, Aktivitätsdauer (Minuten), Aktivitätsintensität (1: Bequem, 2: Normal, 3:
Anstrengend), Ketone, Blutdruck, Art der Nahrung, Notiz``. German names of the other columns are
not known; the importer accepts likely ones (``Zeitzone``, ``Temporäre Basalrate (Prozent)``, ...)
and names every column it does not know in :attr:`ParseResult.notes`.

**Recognised** by its header: the first two columns are ``Date``/``Datum`` and ``Time``/``Zeit``,
and at least three more are mySugr columns.

**Units.** The glucose unit is in the glucose column's name (``mg/dL`` or ``mmol/L``; another unit
refuses the file). The carbohydrate unit and its factor to grams are in the carbohydrate column's
name: ``(Grams, Factor 1)``; German ``(Broteinheiten, Faktor 12)``, bread units, so grams = BE × 12
(``orig_unit`` ``BE``); any other ``(<unit>, Factor <n>)`` the same way. Ketones are mmol/L.
Decimals may be written with a point or a comma.

**Time.** ``Date`` like ``Jan 5, 2024`` and ``Time`` like ``8:32:15 AM`` (English), ``Datum``
``05.01.2024`` and ``Zeit`` ``08:32:15`` (German); also accepted in either language: ISO dates
(``2024-01-05``), ``d.m.yy``, ``M/D/YYYY`` (month first; day first in a German file), full or
German month names, 24-hour times and times without seconds. The ``Timezone`` column, where a row
has one, gives that row's zone: an IANA name (``Europe/Berlin``), ``UTC``/``GMT``/``Z``, or an
offset (``+01:00``, ``+0100``, ``+1``, ``UTC+1``, ``GMT-05:00``); anything else, or no column,
means the upload's time zone (counted in the notes when the text is not readable). Rows of one zone
are one local-time stream, fed oldest first: a file written newest first (most steps between rows
go back in time) is read from its end.

**Mapping.**

=====================================  =====================================================
column                                 record
=====================================  =====================================================
blood sugar                            ``smbg`` ``meter`` (mg/dL; ``orig_value`` as written)
pen                                    ``insulin`` ``rapid``
basal injection                        ``insulin`` ``long``
pump                                   ``bolus`` ``normal``
meal, correction                       the parts of the row's bolus, never a second dose: in
                                       the payload (``meal_units``, ``correction_units``) of the
                                       pump bolus, else of the pen dose. A row with only the
                                       parts is one dose of their sum (``dose_from_parts``): a
                                       ``bolus`` ``normal`` in a file of a pump user (any row
                                       has pump insulin or a temporary basal), else an
                                       ``insulin`` ``rapid``
temporary basal % and minutes          ``basal`` ``temp``, value ``None`` (the rate is not in
                                       the file), ``percent`` in the payload, ``duration_ms``
carbohydrates                          ``food``, grams (× the column's factor)
activity minutes and intensity         ``physicalActivity`` ``light``/``medium``/``heavy`` for
                                       1/2/3 (else ``unknown``), ``duration_ms``
ketones                                ``bloodKetone`` (mmol/L)
note; meal, activity description;      ``note`` with the text in the payload (sealed like
tags; food type; medication            every note); identity the text (``<category>: <text>``
                                       for all but the ``Note`` column)
=====================================  =====================================================

Not stored (and said so in :attr:`ParseResult.notes`): HbA1c, blood pressure, body weight, steps,
location, latitude and longitude. A location is sensitive, and none of these is therapy data
Glucoshare reads. The device is the mySugr app, one per patient (the file names no serial).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime as dt
import itertools
import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    RejectedRow,
    RowOrigin,
    SourceText,
    shown,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import LocalClock, wall_ms
from glucoshare.ingest.numbers import bounded_amount, parse_number
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

DEVICE_KEY = "mysugr"
MANUFACTURER = "Roche"
MODEL = "mySugr app"

# Folded header names (lower case, no accents, single spaces) → column kind.
_NAMES: dict[str, str] = {
    "date": "date",
    "datum": "date",
    "time": "time",
    "zeit": "time",
    "uhrzeit": "time",
    "tags": "tags",
    "insulin injection units (pen)": "pen",
    "bolusinjektionseinheiten (pen)": "pen",
    "basal injection units": "basal_injection",
    "basalinjektionseinheiten": "basal_injection",
    "insulin injection units (pump)": "pump",
    "bolusinjektionseinheiten (pump)": "pump",
    "insulin (meal)": "meal",
    "bolus (mahlzeit)": "meal",
    "insulin (correction)": "correction",
    "bolus (korrektur)": "correction",
    "temporary basal percentage": "temp_percent",
    "temporare basalrate (prozent)": "temp_percent",
    "temporare basalrate (%)": "temp_percent",
    "temporary basal duration (minutes)": "temp_minutes",
    "temporare basalrate dauer (minuten)": "temp_minutes",
    "dauer der temporaren basalrate (minuten)": "temp_minutes",
    "meal descriptions": "meal_text",
    "mahlzeitbeschreibung": "meal_text",
    "activity duration (minutes)": "activity_minutes",
    "aktivitatsdauer (minuten)": "activity_minutes",
    "activity description": "activity_text",
    "aktivitatsbeschreibung": "activity_text",
    "steps": "steps",
    "schritte": "steps",
    "note": "note",
    "notiz": "note",
    "location": "location",
    "ort": "location",
    "blood pressure": "blood_pressure",
    "blutdruck": "blood_pressure",
    "hba1c (percent)": "hba1c",
    "hba1c (prozent)": "hba1c",
    "ketones": "ketones",
    "ketone": "ketones",
    "food type": "food_type",
    "art der nahrung": "food_type",
    "medication": "medication",
    "medikation": "medication",
    "medikamente": "medication",
    "timezone": "timezone",
    "zeitzone": "timezone",
    "latitude": "latitude",
    "breitengrad": "latitude",
    "longitude": "longitude",
    "langengrad": "longitude",
}
# Columns whose name goes on with a unit or a legend: folded stem → column kind.
_STEMS: dict[str, str] = {
    "activity intensity": "activity_intensity",
    "aktivitatsintensitat": "activity_intensity",
    "body weight": "weight",
    "korpergewicht": "weight",
    "blood sugar measurement": "glucose",
    "blood glucose measurement": "glucose",
    "blutzuckermessung": "glucose",
    "meal carbohydrates": "carbs",
    "mahlzeitkohlenhydrate": "carbs",
}
_GLUCOSE_UNIT = re.compile(r"\(\s*(mg/dl|mmol/l)\s*\)")
_CARB_UNIT = re.compile(r"\(\s*([^,()]+?)\s*,\s*(?:factor|faktor)\s*(\d+(?:[.,]\d+)?)\s*\)", re.IGNORECASE)
_CARB_LABELS = {
    "grams": "g",
    "gramm": "g",
    "g": "g",
    "broteinheiten": "BE",
    "bread units": "BE",
    "be": "BE",
    "kohlenhydrateinheiten": "KE",
    "carb units": "KE",
    "ke": "KE",
}
_NOT_STORED = ("steps", "location", "blood_pressure", "weight", "hba1c", "latitude", "longitude")
_NOT_STORED_WORDS = {
    "steps": "steps",
    "location": "location",
    "blood_pressure": "blood pressure",
    "weight": "body weight",
    "hba1c": "HbA1c",
    "latitude": "location",
    "longitude": "location",
}
_TEXTS = (  # (column kind, note category); the Note column has none
    ("note", ""),
    ("meal_text", "meal"),
    ("activity_text", "activity"),
    ("tags", "tags"),
    ("food_type", "food type"),
    ("medication", "medication"),
)
_PARTS = (("meal_units", "meal", "meal insulin"), ("correction_units", "correction", "correction insulin"))
_INTENSITY = {"1": "light", "2": "medium", "3": "heavy"}
_MIN_MYSUGR_COLUMNS = 3  # besides date and time, for detection
_FACTORS = {"mg/dL": 1.0, "mmol/L": MGDL_PER_MMOLL}

# Limits of plausible values: beyond them a cell is an error, not a reading.
_MAX_GLUCOSE_MGDL = 5000.0
_MAX_UNITS = 1000.0
_MAX_CARBS_G = 10_000.0
_MAX_KETONES = 100.0
_MAX_PERCENT = 1000.0
_MAX_MINUTES = 7 * 24 * 60.0
_MAX_OFFSET_MIN = 14 * 60

_MONTHS = {
    "jan": 1, "january": 1, "januar": 1, "jänner": 1, "janner": 1,
    "feb": 2, "february": 2, "februar": 2,
    "mar": 3, "march": 3, "mär": 3, "mrz": 3, "marz": 3, "märz": 3,
    "apr": 4, "april": 4,
    "may": 5, "mai": 5,
    "jun": 6, "june": 6, "juni": 6,
    "jul": 7, "july": 7, "juli": 7,
    "aug": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10, "okt": 10, "oktober": 10,
    "nov": 11, "november": 11,
    "dec": 12, "december": 12, "dez": 12, "dezember": 12,
}  # fmt: skip
_NAMED_MONTH_FIRST = re.compile(r"([^\W\d_]{3,9})\.?\s+(\d{1,2})\.?,?\s+(\d{4})")
_NAMED_DAY_FIRST = re.compile(r"(\d{1,2})\.?\s+([^\W\d_]{3,9})\.?,?\s+(\d{4})")
_DOTTED = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{2}|\d{4})")
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_SLASHED = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp])\.?\s*[Mm]\.?)?")
_OFFSET = re.compile(r"(?:(?:utc|gmt)\s*)?([+\-\u2212])\s*(\d{1,2})(?::?(\d{2}))?")
_UTC_WORDS = frozenset({"utc", "gmt", "z"})
_CENTURY = 100
_YEAR_2000 = 2000
_NOON = 12


def _fold(text: str) -> str:
    """Lower case without accents and with single spaces, for matching translated names."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


@dataclasses.dataclass(slots=True)
class _Header:
    """Where each column is, with the units the column names carry."""

    columns: dict[str, int]
    width: int
    glucose_unit: str | None = None
    carb_unit: str = "g"
    carb_factor: float = 1.0
    german: bool = False  # ``Datum``: slashed dates are read day first
    unknown: list[str] = dataclasses.field(default_factory=list)
    problem: str | None = None  # what is wrong with a unit in a column name


def _carb_unit(cell: str, header: _Header) -> None:
    """The carbohydrate unit and its factor to grams from a column name: ``(<unit>, Factor <n>)``."""
    match = _CARB_UNIT.search(cell)
    factor = 0.0
    if match is not None and not cell[match.end() :].strip(' "'):
        try:
            factor = parse_number(match.group(2), decimal_comma="," in match.group(2))
        except ValueError:
            factor = 0.0
    if match is None or not 0 < factor <= _CENTURY:
        header.problem = header.problem or f"unknown carbohydrate unit in column {shown(cell.strip())}"
        return
    label = match.group(1).strip()
    header.carb_unit = _CARB_LABELS.get(_fold(label), label)
    header.carb_factor = factor


def _read_header(cells: list[str]) -> _Header | None:
    """Map a header row; ``None`` unless it is a mySugr header (date, time, three more columns)."""
    if len(cells) < 2:  # noqa: PLR2004 - date and time
        return None
    header = _Header(columns={}, width=len(cells))
    for index, cell in enumerate(cells):
        name = _fold(cell)
        kind = _NAMES.get(name)
        if kind is None:
            stem = next((s for s in _STEMS if name.startswith(s)), None)
            if stem is not None:
                kind = _STEMS[stem]
                rest = name[len(stem) :].strip()
                if kind == "glucose":
                    match = _GLUCOSE_UNIT.fullmatch(rest)
                    if match is None:
                        header.problem = (
                            header.problem or f"unknown glucose unit in column {shown(cell.strip())}"
                        )
                    else:
                        header.glucose_unit = "mg/dL" if match.group(1) == "mg/dl" else "mmol/L"
                elif kind == "carbs":
                    _carb_unit(cell, header)
        if kind is None:
            if name:
                header.unknown.append(cell.strip())
            continue
        header.columns.setdefault(kind, index)
    if header.columns.get("date") != 0 or header.columns.get("time") != 1:
        return None
    header.german = _fold(cells[0]) == "datum"
    if len(header.columns) - 2 < _MIN_MYSUGR_COLUMNS:
        return None
    return header


def _sniff(head: list[str]) -> tuple[str, _Header] | None:
    """The delimiter and header of a mySugr file from its first line."""
    if not head:
        return None
    for delimiter in (",", ";", "\t"):
        try:
            cells = next(csv.reader([head[0]], delimiter=delimiter), [])
        except csv.Error:
            continue
        header = _read_header(cells)
        if header is not None:
            return delimiter, header
    return None


def _year(text: str) -> int:
    year = int(text)
    return year + _YEAR_2000 if year < _CENTURY else year


def _date_fields(value: str, *, day_first_slashes: bool) -> tuple[int, int, int] | None:
    """``(year, month, day)`` of a date in one of the accepted forms (month 0: an unknown name)."""
    if match := _ISO.fullmatch(value):
        return int(match[1]), int(match[2]), int(match[3])
    if match := _DOTTED.fullmatch(value):
        return _year(match[3]), int(match[2]), int(match[1])
    if match := _NAMED_MONTH_FIRST.fullmatch(value):
        return int(match[3]), _MONTHS.get(match[1].lower(), 0), int(match[2])
    if match := _NAMED_DAY_FIRST.fullmatch(value):
        return int(match[3]), _MONTHS.get(match[2].lower(), 0), int(match[1])
    if match := _SLASHED.fullmatch(value):
        first, second = int(match[1]), int(match[2])
        return (_year(match[3]), second, first) if day_first_slashes else (_year(match[3]), first, second)
    return None


def parse_date(text: str, *, day_first_slashes: bool = False) -> dt.date | None:
    """The calendar date of a ``Date``/``Datum`` cell in any accepted form, or ``None``.

    ``M/D/YYYY`` is read month first unless ``day_first_slashes`` (a German file).
    """
    fields = _date_fields(text.strip(), day_first_slashes=day_first_slashes)
    if fields is None:
        return None
    try:
        return dt.date(*fields)
    except ValueError:  # a day or month out of range
        return None


def parse_time(text: str) -> int | None:
    """Milliseconds into the day of a ``Time``/``Zeit`` cell (12- or 24-hour), or ``None``."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        return None
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if match[4] is not None:
        if not 1 <= hour <= _NOON:
            return None
        hour = hour % _NOON + (_NOON if match[4] in "Pp" else 0)
    if hour > 23 or minute > 59 or second > 59:  # noqa: PLR2004
        return None
    return ((hour * 60 + minute) * 60 + second) * 1000


Zone = int | str
"""A row's zone: a fixed UTC offset in minutes, or an IANA zone name."""


def parse_timezone(text: str) -> Zone | None:
    """The zone a ``Timezone`` cell names (module notes); ``None`` when it names none."""
    value = text.strip()
    if not value:
        return None
    folded = value.lower()
    if folded in _UTC_WORDS:
        return 0
    match = _OFFSET.fullmatch(folded)
    if match is not None:
        minutes = int(match[2]) * 60 + int(match[3] or 0)
        if (match[3] is not None and int(match[3]) > 59) or minutes > _MAX_OFFSET_MIN:  # noqa: PLR2004
            return None
        return -minutes if match[1] != "+" else minutes
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return value


_Make = Callable[..., ParsedRecord]
"""Makes a record of the row being read: ``(type, subtype, value, **fields)``."""


class _RowError(ValueError):
    """A cell of a row cannot be read (the message names the column, never the value)."""


@dataclasses.dataclass(slots=True)
class _Row:
    """A data row read ahead: its line, its non-empty cells by column kind, wall time and zone."""

    line: int
    cells: dict[str, str]
    wall: int
    zone: Zone | None


class MySugrImporter:
    """Reads the mySugr app's CSV export (English and German)."""

    format: ClassVar[str] = "mysugr"
    label: ClassVar[str] = "mySugr CSV export"

    def detect(self, head: list[str]) -> bool:
        """True when line 1 is a mySugr header (``Date,Time,...`` or ``Datum,Zeit,...``)."""
        return _sniff(head) is not None

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Parse a mySugr export; :class:`MalformedFileError` for a unit the header cannot name."""
        sniffed = _sniff(source.head(1))
        if sniffed is None:  # pragma: no cover - detect() ran first
            msg = f"{source.name}: line 1: not a mySugr header"
            raise MalformedFileError(msg)
        delimiter, header = sniffed
        if header.problem is not None:
            msg = f"{source.name}: line 1: {header.problem}"
            raise MalformedFileError(msg)
        result = ParseResult(records=iter(()))
        result.devices[DEVICE_KEY] = DeviceInfo(manufacturer=MANUFACTURER, model=MODEL, serial=None)
        result.primary_device = DEVICE_KEY
        if header.unknown:
            names = ", ".join(repr(name) for name in header.unknown)
            result.notes.append(f"columns Glucoshare does not know were not read: {names}")
        result.records = _Reader(source, ctx, result, delimiter, header).records()
        return result


class _Reader:
    """The state of reading one file."""

    def __init__(
        self, source: SourceText, ctx: ParseContext, result: ParseResult, delimiter: str, header: _Header
    ) -> None:
        self.source = source
        self.ctx = ctx
        self.result = result
        self.delimiter = delimiter
        self.header = header
        self.columns = header.columns
        self.factor = _FACTORS[header.glucose_unit or "mg/dL"]
        self.days: dict[str, int | None] = {}
        self.times: dict[str, int | None] = {}
        self.zones: dict[str, Zone | None] = {}
        self.clocks: dict[str, LocalClock] = {}
        self.unreadable_zones = 0
        self.not_stored: collections.Counter[str] = collections.Counter()

    def reject(self, line: int, reason: str) -> None:
        self.result.rejected.append(RejectedRow(line, reason))

    def rows(self) -> list[_Row]:
        """Every data row with a readable date and time, in file order; the others are rejected."""
        last = [""]

        def lines() -> Iterator[str]:
            for line in self.source.lines():
                last[0] = line
                yield line

        reader = csv.reader(lines(), delimiter=self.delimiter, strict=True)
        rows: list[_Row] = []
        width = self.header.width
        i_date, i_time = self.columns["date"], self.columns["time"]
        i_zone = self.columns.get("timezone", -1)
        data_columns = [(k, i) for k, i in self.columns.items() if k not in ("date", "time", "timezone")]
        try:
            next(reader)
        except (csv.Error, StopIteration):  # pragma: no cover - the header was read by detect()
            return rows
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error:
                self.reject(reader.line_num, "a quoted field is malformed or never closed (truncated file?)")
                continue
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) < width:
                if not last[0].endswith(("\n", "\r")):
                    self.reject(line, "the last row is cut short (truncated file?)")
                    continue
                cells += [""] * (width - len(cells))
            wall = self.wall(cells[i_date], cells[i_time])
            if wall is None:
                empty = not cells[i_date].strip() or not cells[i_time].strip()
                self.reject(line, "no date or time" if empty else "unreadable date or time")
                continue
            zone = self.zone(cells[i_zone]) if i_zone >= 0 else None
            values = {kind: text for kind, index in data_columns if (text := cells[index].strip())}
            rows.append(_Row(line, values, wall, zone))
        return rows

    def wall(self, date: str, time: str) -> int | None:
        """Wall milliseconds (:func:`~glucoshare.ingest.localtime.wall_ms`) of a date and a time."""
        if date not in self.days:
            parsed = parse_date(date, day_first_slashes=self.header.german)
            self.days[date] = None if parsed is None else wall_ms(dt.datetime.combine(parsed, dt.time()))
        if time not in self.times:
            self.times[time] = parse_time(time)
        day, delta = self.days[date], self.times[time]
        if day is None or delta is None:
            return None
        return day + delta

    def zone(self, text: str) -> Zone | None:
        """The zone of a ``Timezone`` cell; counts texts that name none."""
        if text not in self.zones:
            self.zones[text] = parse_timezone(text)
        zone = self.zones[text]
        if zone is None and text.strip():
            self.unreadable_zones += 1
        return zone

    def instant(self, row: _Row) -> tuple[int, int]:
        """``(utc_ms, offset_min)`` of a row, through its zone's clock unless the offset is fixed."""
        zone = row.zone
        if isinstance(zone, int):
            return row.wall - zone * 60_000, zone
        if zone is None or zone == self.ctx.timezone:
            return self.ctx.clock("mysugr").resolve_ms(row.wall)
        clock = self.clocks.get(zone)
        if clock is None:
            clock = self.clocks[zone] = LocalClock(zoneinfo.ZoneInfo(zone))
        return clock.resolve_ms(row.wall)

    def records(self) -> Iterator[ParsedItem]:
        """Every record of the file, oldest row first."""
        rows = self.rows()
        ups = downs = 0
        for earlier, later in itertools.pairwise(rows):
            if later.wall > earlier.wall:
                ups += 1
            elif later.wall < earlier.wall:
                downs += 1
        if downs > ups:
            rows.reverse()
        pump_file = any("pump" in row.cells or "temp_percent" in row.cells for row in rows)
        for row in rows:
            instant = self.instant(row)
            try:
                records = self.row_records(row, instant, pump_file=pump_file)
            except _RowError as exc:
                self.reject(row.line, str(exc))
                continue
            yield from records
        self.finish_notes()

    def finish_notes(self) -> None:
        """Say what was not stored, and which zones could not be read."""
        if self.not_stored:
            kinds = sorted({_NOT_STORED_WORDS[kind] for kind in self.not_stored})
            why = "none of these is therapy data Glucoshare reads"
            if "location" in kinds:
                why = f"a location is sensitive, and {why}"
            self.result.notes.append(
                f"not stored: {', '.join(kinds)} ({sum(self.not_stored.values())} values); {why}"
            )
        if self.unreadable_zones:
            self.result.notes.append(
                f"{self.unreadable_zones} rows have a Timezone Glucoshare cannot read; their times were "
                f"read in {self.ctx.timezone}"
            )
        odd = sum(clock.ambiguous + clock.skipped_hour for clock in self.clocks.values())
        if odd:
            self.result.notes.append(
                f"{odd} records of rows in another time zone fall in an hour repeated or skipped by a "
                "daylight-saving change"
            )

    @staticmethod
    def amount(cells: dict[str, str], kind: str, what: str, upper: float) -> float | None:
        """A number of a cell (``None`` when empty); :class:`_RowError` when unreadable."""
        text = cells.get(kind)
        if text is None:
            return None
        try:
            return bounded_amount(text, what, upper)
        except ValueError as exc:
            raise _RowError(str(exc)) from None

    def row_records(self, row: _Row, instant: tuple[int, int], *, pump_file: bool) -> list[ParsedRecord]:
        """The records of one row (:class:`_RowError` when a cell cannot be read)."""
        cells, line = row.cells, row.line
        time_ms, offset = instant

        record = RowOrigin(time_ms, offset, line, DEVICE_KEY).record

        out: list[ParsedRecord] = []
        glucose = self.amount(cells, "glucose", "blood sugar", _MAX_GLUCOSE_MGDL / self.factor)
        if glucose is not None:
            if glucose <= 0:
                msg = "blood sugar is not positive"
                raise _RowError(msg)
            unit = self.header.glucose_unit or "mg/dL"
            out.append(record("smbg", "meter", glucose * self.factor, orig_value=glucose, orig_unit=unit))
        out.extend(self.insulin(cells, record, pump_file=pump_file))
        long_acting = self.amount(cells, "basal_injection", "basal injection", _MAX_UNITS)
        if long_acting:
            out.append(record("insulin", "long", long_acting))
        out.extend(self.temp_basal(cells, record))
        carbs = self.amount(cells, "carbs", "meal carbohydrates", _MAX_CARBS_G / self.header.carb_factor)
        if carbs:
            grams = carbs * self.header.carb_factor
            out.append(record("food", "", grams, orig_value=carbs, orig_unit=self.header.carb_unit))
        out.extend(self.activity(cells, record))
        ketones = self.amount(cells, "ketones", "ketones", _MAX_KETONES)
        if ketones is not None:
            out.append(record("bloodKetone", "", ketones, orig_value=ketones, orig_unit="mmol/L"))
        for kind, category in _TEXTS:
            text = cells.get(kind)
            if text:
                payload = {"text": text, "category": category} if category else {"text": text}
                identity = f"{category}: {text}" if category else text
                out.append(record("note", payload=payload, identity=identity))
        for kind in _NOT_STORED:
            if kind in cells:
                self.not_stored[kind] += 1
        return out

    def insulin(self, cells: dict[str, str], record: _Make, *, pump_file: bool) -> list[ParsedRecord]:
        """Pen, pump and the calculator's meal and correction parts of one row (module notes)."""
        pen = self.amount(cells, "pen", "pen insulin", _MAX_UNITS)
        pump = self.amount(cells, "pump", "pump insulin", _MAX_UNITS)
        parts: dict[str, Any] = {}
        for key, kind, what in _PARTS:
            number = self.amount(cells, kind, what, _MAX_UNITS)
            if number is not None:
                parts[key] = number
        out: list[ParsedRecord] = []
        if pump:
            out.append(record("bolus", "normal", pump, payload=dict(parts) or None))
            parts = {}
        if pen:
            out.append(record("insulin", "rapid", pen, payload=dict(parts) or None))
            parts = {}
        if parts and not pump and not pen:
            total = sum(float(v) for v in parts.values())
            if total > 0:
                payload = {**parts, "dose_from_parts": True}
                if pump_file:
                    out.append(record("bolus", "normal", total, payload=payload))
                else:
                    out.append(record("insulin", "rapid", total, payload=payload))
        return out

    def temp_basal(self, cells: dict[str, str], record: _Make) -> list[ParsedRecord]:
        """A temporary basal rate: percent of the scheduled rate and its minutes."""
        percent = self.amount(cells, "temp_percent", "temporary basal percentage", _MAX_PERCENT)
        minutes = self.amount(cells, "temp_minutes", "temporary basal duration", _MAX_MINUTES)
        if percent is None:
            if minutes is not None:
                msg = "temporary basal duration without a percentage"
                raise _RowError(msg)
            return []
        duration = None if minutes is None else round(minutes * 60_000)
        identity = f"{percent:g}%" if minutes is None else f"{percent:g}% {minutes:g} min"
        payload = {"percent": percent}
        return [record("basal", "temp", None, duration_ms=duration, payload=payload, identity=identity)]

    def activity(self, cells: dict[str, str], record: _Make) -> list[ParsedRecord]:
        """Activity minutes and intensity (1: light, 2: medium, 3: heavy)."""
        minutes = self.amount(cells, "activity_minutes", "activity duration", _MAX_MINUTES)
        intensity = cells.get("activity_intensity", "")
        if minutes is None and not intensity:
            return []
        subtype = _INTENSITY.get(intensity.split(".")[0].split(",")[0], "unknown")
        duration = None if minutes is None else round(minutes * 60_000)
        identity = "" if duration is None else str(duration)
        return [record("physicalActivity", subtype, duration_ms=duration, identity=identity)]
