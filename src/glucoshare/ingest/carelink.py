"""Medtronic CareLink CSV export (research/formats.md §3).

Layout
------
A preamble (``Last Name,First Name,...`` and the patient's row, a note, blank lines) is followed by
one or more **sections**. Each section starts with a separator row
``-------,<device name>,<Pump|Sensor>,<serial>,------- `` (a 780G adds one whose last cell is
``Aggregated Auto Insulin Data``) and repeats the full header row ``Index,Date,Time,New Device
Time,...``. Three header generations are known (47, 49 and 54 columns); columns are found **by name
in each section's header**, never by position, so a reordered or extended header reads the same.
US exports use ``,`` and a decimal point, EU exports ``;`` and a decimal comma. ``Date`` is
``YYYY/MM/DD`` and ``Time`` ``hh:mm:ss`` in every locale (only the preamble's dates follow the
locale and are not needed); the forms Excel writes when it re-saves a file are accepted too
(M/D/YYYY in ``,`` files, D.M.YYYY in ``;`` files, ``h:mm`` and ``h:mm:ss AM/PM``). Glucose
columns carry their unit in the name: ``(mg/dL)`` or ``(mmol/L)``; mmol/L values are converted
with 18.01559 and the written number is kept in ``orig_value``/``orig_unit``. A row normally holds
one event; third-party notes show 780G suspend and rewind rows that also carry a ``Basal Rate`` of
0, so each filled group of columns of a row becomes its own record. A row's records are accepted or
rejected together.

Recognition uses content only: a preamble line starting ``Last Name`` that names ``First Name``,
and a separator row of the shape above. The header row itself is not needed to recognise the file,
so a section whose header is missing or damaged is reported as a malformed file naming the line,
not as an unknown format.

Time
----
Rows are written newest first in each section (in the pump's log order, so neighbouring rows may
step back a few seconds), and ``Index`` runs on across sections. Each section is read back in the
device's own order, oldest first (``Index`` descending; the file order reversed when an ``Index`` is
unreadable), and each section is one clock stream (``carelink|<n>|<kind>|<device>|<serial>``): a
section is one device log, so the fall-back repeated hour is resolved by the order of that log
(the wall time steps back when the second pass starts), and the clock is never fed across the
boundary of two logs. Records are yielded section by section in that order.

Mapping to the canonical model
------------------------------
=====================================  ======================================================================
CareLink columns                       record
=====================================  ======================================================================
``Sensor Glucose``                     ``cbg`` ``sensor``; ``ISIG Value`` in the payload. A word
                                       (``Low``/``High``) or a number outside 40 to 400 mg/dL
                                       (2.2 to 22.2 mmol/L) becomes 40/400 with annotation ``low``/``high``
``BG Reading``                         ``smbg`` ``meter``; ``Linked BG Meter ID`` and ``BG Source`` in
                                       the payload
``Sensor Calibration BG``              ``smbg`` ``calibration`` (distinct from a meter reading of the
                                       same second by its subtype)
``Basal Rate (U/h)``                   ``basal`` ``scheduled``, value U/h; ``duration_ms`` runs to the
                                       next later basal row (scheduled or temp) of the section, None
                                       for the last one
``Temp Basal Amount/Type/Duration``    ``basal`` ``temp`` with ``duration_ms``. ``Percent``: value =
                                       the scheduled rate in force * percent / 100 (None when no
                                       scheduled rate precedes it), percent in the payload; any other
                                       type: the amount is the rate in U/h
``Bolus Type`` + volumes               ``bolus``: ``Normal`` → ``normal``, ``Square`` → ``extended``,
                                       ``Dual (normal part)``/``Dual (square part)`` → ``dual``; a
                                       ``Bolus Source`` of ``CLOSED_LOOP_AUTO_INSULIN`` or
                                       ``CLOSED_LOOP_MICRO_BOLUS`` → ``automated``. Value = delivered
                                       units; the payload has programmed (selected) units, duration,
                                       bolus number, cancellation reason, source and the part. The two
                                       parts of a dual bolus stay **two records** (each with its own
                                       delivered volume; ``identity`` = the part), so their sum is the
                                       dual bolus and nothing is counted twice. A row with a selected
                                       but no delivered volume (a programming row) becomes a
                                       ``deviceEvent`` ``other`` (``event`` = ``bolusProgrammed``),
                                       never a second bolus
``BWZ ...``                            ``wizard``, value = carb input (g); payload: BG input (mg/dL,
                                       None when 0 = not entered), carb ratio, sensitivity (mg/dL/U),
                                       target low/high (mg/dL), estimate, correction and food
                                       estimates, active and unabsorbed insulin, final estimate, status
``Prime Type`` + volume                ``deviceEvent`` ``prime``, value = volume (U); ``Fixed`` and
                                       ``Cannula Fill`` prime the cannula, ``Manual`` and ``Tubing
                                       Fill`` the tubing (``prime_target`` in the payload)
``Rewind``                             ``deviceEvent`` ``reservoirChange``
``Suspend``                            ``NORMAL_PUMPING`` → ``deviceEvent`` ``resume``; any other
                                       value (``USER_SUSPEND``, ``NOTSEATED_SUSPEND``, ``ALARM_SUSPEND``,
                                       ...) → ``deviceEvent`` ``suspend`` with the reason in the payload
``Alarm`` / ``Alert``                  ``deviceEvent`` ``alarm``, the text in the payload and identity
``Event Marker``                       ``Meal: N grams`` → ``food`` (N g); ``Insulin: N`` → ``insulin``
                                       ``unknown`` (N U); any other text → ``note``
``New Device Time``                    ``deviceEvent`` ``timeChange``, payload ``from`` (the row's time)
                                       and ``to`` (the new device time)
other filled columns only              ``deviceEvent`` ``other`` with the filled columns in the payload
                                       (sensor exceptions, network events, settings rows), so no row
                                       with content is dropped
=====================================  ======================================================================

The 780G's ``Aggregated Auto Insulin Data`` section holds one row per day (``00:00:00``) with the
SmartGuard auto-basal and auto-correction insulin of that day as a ``CLOSED_LOOP_AUTO_INSULIN``
bolus. It is a daily **total**, not a dose given at midnight, and it overlaps any auto-correction
bolus rows of the pump section, so it is kept as ``deviceEvent`` ``other`` (no value; payload
``event`` = ``aggregatedAutoInsulin`` with ``units``) and never as a ``bolus``.

``identity`` completes the natural key (records/service.py ``dedup_key``) where type, subtype,
instant and value do not tell two events apart: the part of a dual bolus, the prime target, the
suspend reason, the alarm or note text, the wizard's estimate, BG input and status, the new device
time. So a meter reading and a calibration of the same second, or the two equal parts of a dual
bolus, stay two records, while a row CareLink repeats identically has the same identity twice.

Devices: one :class:`DeviceInfo` (``Medtronic``, section device name, section serial) per distinct
device name and serial; a pump's Pump and Sensor sections share their serial and so one device. All
sections' devices are registered when the file is parsed, empty sections included. Identical
duplicated rows (CareLink repeats some) are emitted as they are: the database keeps one of each
natural identity. A row that cannot be read is reported with its line and the reason, which names
the column at fault and never its content.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime as dt
import math
import operator
import re
from collections.abc import Iterator
from typing import Any, ClassVar

from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedRecord,
    ParseResult,
    RejectedRow,
    SourceText,
    checked_rows,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.numbers import parse_duration_ms, parse_number
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

MANUFACTURER = "Medtronic"
SENSOR_LOW_MGDL = 40.0
SENSOR_HIGH_MGDL = 400.0
SENSOR_LOW_MMOLL = 2.2
SENSOR_HIGH_MMOLL = 22.2
AUTO_INSULIN_SOURCES = frozenset({"CLOSED_LOOP_AUTO_INSULIN", "CLOSED_LOOP_MICRO_BOLUS"})

_SEPARATOR = "-------"
_HEADER = re.compile(r'^\ufeff?"?Index"?([,;])"?Date"?\1"?Time"?\1"?New Device Time"?', re.IGNORECASE)
_NAME_LINE = re.compile(r'^\ufeff?"?Last Name"?[,;]', re.IGNORECASE)
_SECTION_ROW = re.compile(r'^\ufeff?-{7}([,;])[^,;]*\1"?(?:Pump|Sensor)"?\1', re.IGNORECASE)
_DATE = re.compile(r"^\s*(\d{4})[/-](\d{1,2})[/-](\d{1,2})\s*$")
_US_DATE = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})\s*$")  # Excel re-save: M/D/YYYY
_EU_DATE = re.compile(r"^\s*(\d{1,2})[./-](\d{1,2})[./-](\d{2}|\d{4})\s*$")  # Excel re-save: D.M.YYYY
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?\s*$")
_NEW_TIME = re.compile(r"^\s*(\d{4})[/-](\d{1,2})[/-](\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
_MARKER = re.compile(
    r"^\s*(meal|insulin)\s*:\s*(\d+(?:[.,]\d+)?)\s*(?:grams?|g|units?|u)?\s*$", re.IGNORECASE
)

# Normalised header name → field. Glucose columns are normalised to "(mg/dl" whatever their unit.
_COLUMNS: dict[str, str] = {
    "index": "index",
    "date": "date",
    "time": "time",
    "new device time": "new_time",
    "bg source": "bg_source",
    "bg reading (mg/dl)": "bg",
    "linked bg meter id": "meter_id",
    "basal rate (u/h)": "basal_rate",
    "temp basal amount": "temp_amount",
    "temp basal type": "temp_type",
    "temp basal duration (h:mm:ss)": "temp_duration",
    "bolus type": "bolus_type",
    "bolus volume selected (u)": "bolus_selected",
    "bolus volume delivered (u)": "bolus_delivered",
    "bolus duration (h:mm:ss)": "bolus_duration",
    "prime type": "prime_type",
    "prime volume delivered (u)": "prime_volume",
    "estimated reservoir volume after fill (u)": "reservoir",
    "alarm": "alarm",
    "alert": "alarm",
    "suspend": "suspend",
    "rewind": "rewind",
    "bwz estimate (u)": "bwz_estimate",
    "bwz target high bg (mg/dl)": "bwz_target_high",
    "bwz target low bg (mg/dl)": "bwz_target_low",
    "bwz carb ratio (g/u)": "bwz_carb_ratio",
    "bwz insulin sensitivity (mg/dl/u)": "bwz_isf",
    "bwz carb input (grams)": "bwz_carbs",
    "bwz bg input (mg/dl)": "bwz_bg",
    "bwz bg/sg input (mg/dl)": "bwz_bg",
    "bwz correction estimate (u)": "bwz_correction",
    "bwz food estimate (u)": "bwz_food",
    "bwz active insulin (u)": "bwz_active",
    "bwz status": "bwz_status",
    "bwz unabsorbed insulin total (u)": "bwz_unabsorbed",
    "final bolus estimate": "bwz_final",
    "sensor calibration bg (mg/dl)": "calibration",
    "sensor glucose (mg/dl)": "sg",
    "isig value": "isig",
    "event marker": "marker",
    "bolus number": "bolus_number",
    "bolus cancellation reason": "bolus_cancel",
    "preset bolus": "preset_bolus",
    "bolus source": "bolus_source",
}

# Fields that make a row an event of its own; a row filled only outside these is kept as "other".
_EVENT_FIELDS = (
    "new_time",
    "bg",
    "basal_rate",
    "temp_amount",
    "temp_type",
    "bolus_type",
    "bolus_selected",
    "bolus_delivered",
    "prime_type",
    "prime_volume",
    "alarm",
    "suspend",
    "rewind",
    "bwz_estimate",
    "bwz_carbs",
    "bwz_bg",
    "calibration",
    "sg",
    "marker",
)
_BWZ_FIELDS = (
    ("bwz_estimate", "estimate", False),
    ("bwz_target_high", "target_high", True),
    ("bwz_target_low", "target_low", True),
    ("bwz_carb_ratio", "carb_ratio", False),
    ("bwz_isf", "insulin_sensitivity", True),
    ("bwz_correction", "correction_estimate", False),
    ("bwz_food", "food_estimate", False),
    ("bwz_active", "active_insulin", False),
    ("bwz_unabsorbed", "unabsorbed_insulin", False),
    ("bwz_final", "final_estimate", False),
)
_PRIME_TARGETS = {"fixed": "cannula", "cannula fill": "cannula", "manual": "tubing", "tubing fill": "tubing"}
_LOW_WORDS = ("low", "lo", "below")
_HIGH_WORDS = ("high", "hi", "above")


class _RowError(ValueError):
    """A row cannot be read; the message names what is wrong, never the content."""


@dataclasses.dataclass(slots=True)
class _Section:
    """One ``-------`` section: its device, its header and its rows as read from the file."""

    number: int
    line: int
    model: str
    kind: str
    serial: str | None
    aggregated: bool
    device: str
    header: list[str] = dataclasses.field(default_factory=list)
    header_line: int = 0
    rows: list[tuple[int, list[str]]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class _Columns:
    """Where each field sits in a section's header, and the unit of each glucose column."""

    index: dict[str, int]
    width: int
    names: list[str]
    factors: dict[str, float]
    units: dict[str, str]

    def at(self, field: str) -> int:
        """Position of ``field``; ``width`` (an always-empty padding cell) when absent."""
        return self.index.get(field, self.width)


def _normalise(name: str) -> tuple[str, float | None, str | None]:
    """Normalised column key, and for a glucose column its mg/dL factor and written unit."""
    key = " ".join(name.replace("\ufeff", "").strip().strip('"').lower().split())
    if "(mmol/l" in key:
        return key.replace("(mmol/l", "(mg/dl"), MGDL_PER_MMOLL, "mmol/L"
    if "(mg/dl" in key:
        return key, 1.0, "mg/dL"
    return key, None, None


def _columns(header: list[str]) -> _Columns:
    index: dict[str, int] = {}
    factors: dict[str, float] = {}
    units: dict[str, str] = {}
    for position, name in enumerate(header):
        key, factor, unit = _normalise(name)
        field = _COLUMNS.get(key)
        if field is None or field in index:
            continue
        index[field] = position
        if factor is not None and unit is not None:
            factors[field] = factor
            units[field] = unit
    return _Columns(index, len(header), [h.strip() for h in header], factors, units)


def _split_lines(text: str) -> list[str]:
    """Lines without terminators, numbered as the import service numbers them (line feeds).

    A file with carriage returns only (an old Mac re-save) is split at those.
    """
    if "\n" not in text and "\r" in text:
        return text.split("\r")
    return [line.removesuffix("\r") for line in text.split("\n")]


def _is_header(cells: list[str]) -> bool:
    return (
        len(cells) >= 3  # noqa: PLR2004 - Index, Date, Time at least
        and _normalise(cells[0])[0] == "index"
        and _normalise(cells[1])[0] == "date"
        and _normalise(cells[2])[0] == "time"
    )


class CareLinkImporter:
    """Reads Medtronic CareLink CSV exports (pumps and Guardian sensors)."""

    format: ClassVar[str] = "carelink"
    label: ClassVar[str] = "Medtronic CareLink CSV export"

    def detect(self, head: list[str]) -> bool:
        """True when the head has the CareLink preamble's name line and a section separator row."""
        named = False
        for line in head:
            text = line.lstrip()
            if not named:
                named = bool(_NAME_LINE.match(text)) and "first name" in text.lower()
            elif _SECTION_ROW.match(text) or _HEADER.match(text):
                return True
        return False

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Split the file into sections (eagerly) and return their records (lazily).

        Raises :class:`MalformedFileError` when the file has no section, or a section has no header.
        """
        lines = _split_lines(source.text)
        delimiter = self._delimiter(source.name, lines)
        sections = self._sections(source.name, lines, delimiter)
        result = ParseResult(records=iter(()))
        for section in sections:
            if section.device not in result.devices:
                result.devices[section.device] = DeviceInfo(
                    manufacturer=MANUFACTURER, model=section.model, serial=section.serial
                )
        result.records = self._records(sections, ctx, result, decimal_comma=delimiter == ";")
        return result

    @staticmethod
    def _delimiter(name: str, lines: list[str]) -> str:
        for line in lines:
            text = line.lstrip("\ufeff").lstrip()
            if text.startswith(_SEPARATOR):
                rest = text.lstrip("-")
                if rest[:1] in (",", ";"):
                    return rest[0]
            match = _HEADER.match(text)
            if match is not None:
                return match.group(1)
        msg = f"{name}: no CareLink section (a '-------' row followed by the Index, Date, Time header)"
        raise MalformedFileError(msg)

    @staticmethod
    def _sections(name: str, lines: list[str], delimiter: str) -> list[_Section]:
        sections: list[_Section] = []
        current: _Section | None = None
        awaiting_header = False
        reader = csv.reader(lines, delimiter=delimiter)
        for cells in checked_rows(reader, name):
            line = reader.line_num
            if not cells or not any(cells):
                continue
            first = cells[0].lstrip("\ufeff").strip()
            if first.startswith(_SEPARATOR):
                if awaiting_header and current is not None:
                    msg = f"{name}: line {current.line}: the section has no header row (Index, Date, Time)"
                    raise MalformedFileError(msg)
                current = CareLinkImporter._section_from(cells, line, len(sections), current)
                sections.append(current)
                awaiting_header = True
                continue
            if current is None:
                continue  # preamble
            if first[:5].lower() == "index" and _is_header(cells):
                if current.rows:  # a header repeated inside a section: what follows reads by it
                    current = dataclasses.replace(current, number=len(sections), rows=[])
                    sections.append(current)
                current.header = cells
                current.header_line = line
                awaiting_header = False
                continue
            if awaiting_header:
                msg = (
                    f"{name}: line {line}: expected the header row (Index, Date, Time, ...) of the "
                    f"section starting at line {current.line}"
                )
                raise MalformedFileError(msg)
            current.rows.append((line, cells))
        if current is None:
            msg = f"{name}: no CareLink section (a '-------' row followed by the Index, Date, Time header)"
            raise MalformedFileError(msg)
        if awaiting_header:
            msg = f"{name}: line {current.line}: the section has no header row (Index, Date, Time)"
            raise MalformedFileError(msg)
        return sections

    @staticmethod
    def _section_from(cells: list[str], line: int, number: int, previous: _Section | None) -> _Section:
        parts = [c.strip() for c in cells]
        model = parts[1] if len(parts) > 1 else ""
        kind = parts[2] if len(parts) > 2 else ""  # noqa: PLR2004
        serial = parts[3] if len(parts) > 3 else ""  # noqa: PLR2004
        label = parts[4] if len(parts) > 4 else ""  # noqa: PLR2004
        if not model and previous is not None:
            model, serial = previous.model, previous.serial or ""
        model = model or "CareLink device"
        return _Section(
            number=number,
            line=line,
            model=model,
            kind=kind,
            serial=serial or None,
            aggregated="aggregated" in label.lower(),
            device=f"{model}|{serial}",
        )

    def _records(
        self, sections: list[_Section], ctx: ParseContext, result: ParseResult, *, decimal_comma: bool
    ) -> Iterator[ParsedRecord]:
        for section in sections:
            if section.rows:
                yield from self._section_records(section, ctx, result, decimal_comma=decimal_comma)

    @staticmethod
    def _device_order(
        section: _Section, cols: _Columns, *, decimal_comma: bool
    ) -> list[tuple[int, list[str]]]:
        """The section's rows oldest first: ``Index`` descending, else the file order reversed."""
        rows = section.rows[::-1]
        position = cols.index.get("index")
        if position is None:
            return rows
        keys: list[float] = []
        for _, cells in rows:
            try:
                keys.append(parse_number(cells[position], decimal_comma=decimal_comma))
            except (ValueError, IndexError):
                return rows
        order = sorted(range(len(rows)), key=lambda i: -keys[i])  # stable: ties keep reversed order
        return [rows[i] for i in order]

    def _section_records(
        self, section: _Section, ctx: ParseContext, result: ParseResult, *, decimal_comma: bool
    ) -> Iterator[ParsedRecord]:
        cols = _columns(section.header)
        reader = _RowReader(cols, section.device, decimal_comma=decimal_comma)
        clock = ctx.clock(f"carelink|{section.number}|{section.kind}|{section.model}|{section.serial}")
        reject = result.rejected.append
        dates: dict[str, dt.date] = {}
        date_at, time_at = cols.at("date"), cols.at("time")
        pad = [""] * (cols.width + 1)
        out: list[ParsedRecord] = []
        for line, raw in self._device_order(section, cols, decimal_comma=decimal_comma):
            cells = raw + pad[len(raw) :] if len(raw) <= cols.width else [*raw[: cols.width], ""]
            try:
                local = _wall_time(cells[date_at], cells[time_at], dates, day_first=decimal_comma)
            except _RowError as exc:
                reject(RejectedRow(line, str(exc)))
                continue
            time_ms, offset = clock.resolve(local)
            try:
                if section.aggregated:
                    records = reader.aggregated(cells, line, time_ms, offset)
                else:
                    records = reader.row(cells, line, local, time_ms, offset)
            except _RowError as exc:
                reject(RejectedRow(line, str(exc)))
                continue
            out.extend(records)
        _basal_durations(out)
        yield from out


def _date(text: str, *, day_first: bool) -> dt.date:
    """A row's date: ``YYYY/MM/DD``, or the local form of an Excel re-save (research/formats.md §0).

    Excel writes M/D/YYYY in US exports and D.M.YYYY in EU ones.
    """
    match = _DATE.match(text)
    if match is not None:
        year, month, day = int(match[1]), int(match[2]), int(match[3])
    else:
        match = (_EU_DATE if day_first else _US_DATE).match(text)
        if match is None:
            msg = "Date is not YYYY/MM/DD"
            raise _RowError(msg)
        first, second, year = int(match[1]), int(match[2]), int(match[3])
        month, day = (second, first) if day_first else (first, second)
        year += 2000 if year < 100 else 0  # noqa: PLR2004 - two-digit years of an Excel re-save
    try:
        return dt.date(year, month, day)
    except ValueError:
        msg = "Date is not a valid calendar date"
        raise _RowError(msg) from None


def _wall_time(date_text: str, time_text: str, cache: dict[str, dt.date], *, day_first: bool) -> dt.datetime:
    day = cache.get(date_text)
    if day is None:
        day = cache[date_text] = _date(date_text, day_first=day_first)
    parts = time_text.split(":")
    hour_shift = 0
    if len(parts) == 3 and len(parts[0]) == 2 and len(parts[1]) == 2 and len(parts[2]) == 2:  # noqa: PLR2004
        texts: tuple[str, str, str | None] = (parts[0], parts[1], parts[2])
    else:
        match = _TIME.match(time_text)
        if match is None:
            msg = "Time is not hh:mm:ss"
            raise _RowError(msg)
        texts = (match[1], match[2], match[3])
        if match[4] is not None:  # 12-hour clock of an Excel re-save
            if not 1 <= int(match[1]) <= 12:  # noqa: PLR2004
                msg = "Time is not a valid time of day"
                raise _RowError(msg)
            hour_shift = (12 if match[4].lower() == "pm" else 0) - (12 if int(match[1]) == 12 else 0)  # noqa: PLR2004
    try:
        return dt.datetime(  # noqa: DTZ001 - wall time, resolved by the stream's clock
            day.year, day.month, day.day, int(texts[0]) + hour_shift, int(texts[1]), int(texts[2] or 0)
        )
    except ValueError:
        msg = "Time is not a valid time of day"
        raise _RowError(msg) from None


def _basal_durations(records: list[ParsedRecord]) -> None:
    """Give each scheduled basal the time until the next later basal record of its section."""
    starts = sorted({r.time_ms for r in records if r.type == "basal"})
    for record in records:
        if record.type == "basal" and record.subtype == "scheduled":
            following = bisect.bisect_right(starts, record.time_ms)
            if following < len(starts):
                record.duration_ms = starts[following] - record.time_ms


class _RowReader:
    """Turns one row of a section into its records (each filled group of columns is one record)."""

    def __init__(self, cols: _Columns, device: str, *, decimal_comma: bool) -> None:
        self.cols = cols
        self.device = device
        self.decimal_comma = decimal_comma
        at = cols.at
        # The cells of a row's event columns, fetched in one call (a sentinel keeps it a tuple).
        self.event_cells = operator.itemgetter(cols.width, *(at(f) for f in _EVENT_FIELDS))
        self.known = {cols.index[f] for f in ("index", "date", "time") if f in cols.index}
        self.scheduled_rate: float | None = None
        self.at: tuple[int, int, int] = (0, 0, 0)
        self.out: list[ParsedRecord] = []
        self.i_new_time = at("new_time")
        self.i_bg = at("bg")
        self.i_bg_source = at("bg_source")
        self.i_meter = at("meter_id")
        self.i_basal = at("basal_rate")
        self.i_temp_amount = at("temp_amount")
        self.i_temp_type = at("temp_type")
        self.i_temp_duration = at("temp_duration")
        self.i_bolus_type = at("bolus_type")
        self.i_selected = at("bolus_selected")
        self.i_delivered = at("bolus_delivered")
        self.i_bolus_duration = at("bolus_duration")
        self.i_prime_type = at("prime_type")
        self.i_prime_volume = at("prime_volume")
        self.i_reservoir = at("reservoir")
        self.i_alarm = at("alarm")
        self.i_suspend = at("suspend")
        self.i_rewind = at("rewind")
        self.i_calibration = at("calibration")
        self.i_sg = at("sg")
        self.i_isig = at("isig")
        self.i_marker = at("marker")
        self.i_bolus_number = at("bolus_number")
        self.i_bolus_cancel = at("bolus_cancel")
        self.i_preset_bolus = at("preset_bolus")
        self.i_bolus_source = at("bolus_source")
        self.i_bwz_carbs = at("bwz_carbs")
        self.i_bwz_bg = at("bwz_bg")
        self.i_bwz_status = at("bwz_status")
        self.bwz_cells = operator.itemgetter(
            cols.width, *(at(f) for f, _, _ in _BWZ_FIELDS), self.i_bwz_carbs, self.i_bwz_bg
        )

    # -- numbers -------------------------------------------------------------------------------

    def number(self, cells: list[str], position: int) -> float:
        """The number in a cell; ``_RowError`` naming the column when it is not one."""
        try:
            return parse_number(cells[position], decimal_comma=self.decimal_comma)
        except ValueError:
            msg = f"{self.cols.names[position]} is not a number"
            raise _RowError(msg) from None

    def optional(self, cells: list[str], position: int) -> float | None:
        """The number in a cell, or None when the cell is empty."""
        if not cells[position].strip():
            return None
        return self.number(cells, position)

    def units(self, cells: list[str], position: int) -> float:
        """A non-negative insulin volume."""
        value = self.number(cells, position)
        if value < 0:
            msg = f"{self.cols.names[position]} is negative"
            raise _RowError(msg)
        return value

    def glucose(self, cells: list[str], position: int, field: str) -> tuple[float, float, str]:
        """``(mg/dL, written number, written unit)`` of a positive glucose cell."""
        original = self.number(cells, position)
        if original <= 0:
            msg = f"{self.cols.names[position]} is not positive"
            raise _RowError(msg)
        return original * self.cols.factors.get(field, 1.0), original, self.cols.units.get(field, "mg/dL")

    def duration(self, cells: list[str], position: int) -> int | None:
        """A ``h:mm:ss`` cell in milliseconds, None when empty."""
        text = cells[position].strip()
        if not text:
            return None
        try:
            return parse_duration_ms(text)
        except ValueError:
            msg = f"{self.cols.names[position]} is not h:mm:ss"
            raise _RowError(msg) from None

    # -- rows ----------------------------------------------------------------------------------

    def emit(
        self,
        type_: str,
        subtype: str,
        value: float | None = None,
        *,
        orig_value: float | None = None,
        orig_unit: str | None = None,
        duration_ms: int | None = None,
        annotation: str | None = None,
        payload: dict[str, Any] | None = None,
        identity: str = "",
    ) -> ParsedRecord:
        """Add one record of the current row (its time, line and device are the row's)."""
        time_ms, offset, line = self.at
        item = ParsedRecord(
            type_,
            subtype,
            time_ms,
            offset,
            line,
            self.device,
            value,
            orig_value,
            orig_unit,
            duration_ms,
            annotation,
            payload,
            identity,
        )
        self.out.append(item)
        return item

    def row(
        self, cells: list[str], line: int, local: dt.datetime, time_ms: int, offset: int
    ) -> list[ParsedRecord]:
        """The records of one row of a Pump or Sensor section."""
        self.at = (time_ms, offset, line)
        out = self.out = []
        sg = cells[self.i_sg].strip()
        events = self.event_cells(cells)
        filled = len(events) - events.count("")
        if sg:
            self.sensor_glucose(cells, sg)
            if filled == 1:
                return out
        elif not filled:
            self.other(cells)
            return out
        text = cells[self.i_new_time].strip()
        if text:
            self.emit(
                "deviceEvent",
                "timeChange",
                payload={"from": local.isoformat(), "to": _new_time(text)},
                identity=text,
            )
        if cells[self.i_bg].strip():
            mgdl, original, unit = self.glucose(cells, self.i_bg, "bg")
            meter = {
                k: v
                for k, v in (
                    ("meter_id", cells[self.i_meter].strip()),
                    ("bg_source", cells[self.i_bg_source].strip()),
                )
                if v
            }
            self.emit("smbg", "meter", mgdl, orig_value=original, orig_unit=unit, payload=meter or None)
        if cells[self.i_calibration].strip():
            mgdl, original, unit = self.glucose(cells, self.i_calibration, "calibration")
            self.emit("smbg", "calibration", mgdl, orig_value=original, orig_unit=unit)
        if cells[self.i_basal].strip():
            rate = self.units(cells, self.i_basal)
            self.scheduled_rate = rate
            self.emit("basal", "scheduled", rate)
        if cells[self.i_temp_amount].strip() or cells[self.i_temp_type].strip():
            self.temp_basal(cells)
        if (
            cells[self.i_bolus_type].strip()
            or cells[self.i_selected].strip()
            or cells[self.i_delivered].strip()
        ):
            self.bolus(cells)
        if cells[self.i_prime_type].strip() or cells[self.i_prime_volume].strip():
            kind = cells[self.i_prime_type].strip()
            target = _PRIME_TARGETS.get(kind.lower(), "unknown")
            payload: dict[str, Any] = {"prime_type": kind, "prime_target": target}
            reservoir = self.optional(cells, self.i_reservoir)
            if reservoir is not None:
                payload["reservoir_after_fill"] = reservoir
            self.emit(
                "deviceEvent",
                "prime",
                self.units(cells, self.i_prime_volume),
                payload=payload,
                identity=target,
            )
        text = cells[self.i_alarm].strip()
        if text:
            self.emit("deviceEvent", "alarm", payload={"text": text}, identity=text)
        text = cells[self.i_suspend].strip()
        if text:
            if text.upper() == "NORMAL_PUMPING":
                self.emit("deviceEvent", "resume", payload={"state": text}, identity=text)
            else:
                self.emit("deviceEvent", "suspend", payload={"reason": text}, identity=text)
        if cells[self.i_rewind].strip():
            self.emit("deviceEvent", "reservoirChange")
        if any(self.bwz_cells(cells)):
            self.wizard(cells)
        text = cells[self.i_marker].strip()
        if text:
            self.marker(text)
        return out

    def sensor_glucose(self, cells: list[str], text: str) -> None:
        """``cbg`` from a Sensor Glucose cell (out-of-range words and numbers annotated)."""
        unit = self.cols.units.get("sg", "mg/dL")
        payload: dict[str, Any] | None = None
        if cells[self.i_isig].strip():
            payload = {"isig": self.number(cells, self.i_isig)}
        try:
            original = parse_number(text, decimal_comma=self.decimal_comma)
        except ValueError:
            word = text.lower()
            if word.startswith(_LOW_WORDS):
                self.emit("cbg", "sensor", SENSOR_LOW_MGDL, orig_unit=unit, annotation="low", payload=payload)
                return
            if word.startswith(_HIGH_WORDS):
                self.emit(
                    "cbg", "sensor", SENSOR_HIGH_MGDL, orig_unit=unit, annotation="high", payload=payload
                )
                return
            msg = f"{self.cols.names[self.i_sg]} is not a number"
            raise _RowError(msg) from None
        low, high = (
            (SENSOR_LOW_MMOLL, SENSOR_HIGH_MMOLL) if unit == "mmol/L" else (SENSOR_LOW_MGDL, SENSOR_HIGH_MGDL)
        )
        if original <= 0:
            msg = f"{self.cols.names[self.i_sg]} is not positive"
            raise _RowError(msg)
        if original < low:
            value, annotation = SENSOR_LOW_MGDL, "low"
        elif original > high:
            value, annotation = SENSOR_HIGH_MGDL, "high"
        else:
            value, annotation = original * self.cols.factors.get("sg", 1.0), None
        self.emit(
            "cbg",
            "sensor",
            value,
            orig_value=original,
            orig_unit=unit,
            annotation=annotation,
            payload=payload,
        )

    def temp_basal(self, cells: list[str]) -> None:
        """``basal`` ``temp``: a percent of the scheduled rate in force, or a rate."""
        if not cells[self.i_temp_amount].strip():
            msg = "temp basal row without a Temp Basal Amount"
            raise _RowError(msg)
        amount = self.units(cells, self.i_temp_amount)
        kind = cells[self.i_temp_type].strip()
        duration = self.duration(cells, self.i_temp_duration)
        payload: dict[str, Any] = {"temp_type": kind or None}
        if kind.lower() == "percent":
            payload["percent"] = amount
            scheduled = self.scheduled_rate
            rate = scheduled * amount / 100.0 if scheduled is not None else None
            if scheduled is not None:
                payload["scheduled_rate"] = scheduled
        else:
            rate = amount
        if rate is not None and not math.isfinite(rate):  # a percent of the scheduled rate can overflow
            msg = f"{self.cols.names[self.i_temp_amount]} is out of range"
            raise _RowError(msg)
        self.emit("basal", "temp", rate, duration_ms=duration, payload=payload, identity=f"{kind}|{amount}")

    def bolus(self, cells: list[str]) -> None:
        """A bolus (or a bolus programming row without a delivered volume)."""
        kind = cells[self.i_bolus_type].strip()
        folded = kind.lower()
        part: str | None = None
        if folded.startswith("dual"):
            subtype = "dual"
            part = "square" if "square" in folded else "normal"
        elif folded.startswith("square"):
            subtype = "extended"
        elif folded in ("normal", ""):
            subtype = "normal"
        else:
            msg = "Bolus Type is not Normal, Square or Dual"
            raise _RowError(msg)
        source = cells[self.i_bolus_source].strip()
        if source.upper() in AUTO_INSULIN_SOURCES:
            subtype = "automated"
        selected = self.optional(cells, self.i_selected)
        if selected is not None and selected < 0:
            msg = f"{self.cols.names[self.i_selected]} is negative"
            raise _RowError(msg)
        payload: dict[str, Any] = {"bolus_type": kind or None, "programmed": selected}
        duration = self.duration(cells, self.i_bolus_duration)
        for key, position in (
            ("bolus_number", self.i_bolus_number),
            ("cancellation_reason", self.i_bolus_cancel),
            ("preset", self.i_preset_bolus),
            ("source", self.i_bolus_source),
        ):
            text = cells[position].strip()
            if text:
                payload[key] = text
        if part is not None:
            payload["part"] = part
        if not cells[self.i_delivered].strip():
            payload["event"] = "bolusProgrammed"
            payload["subtype"] = subtype
            self.emit(
                "deviceEvent",
                "other",
                duration_ms=duration,
                payload=payload,
                identity=f"bolusProgrammed|{subtype}|{part or ''}|{selected}",
            )
            return
        delivered = self.units(cells, self.i_delivered)
        self.emit("bolus", subtype, delivered, duration_ms=duration, payload=payload, identity=part or "")

    def wizard(self, cells: list[str]) -> None:
        """``wizard``: the bolus calculator's inputs and estimates (value = carbs, g)."""
        factors = self.cols.factors
        payload: dict[str, Any] = {}
        for field, key, glucose in _BWZ_FIELDS:
            value = self.optional(cells, self.cols.at(field))
            if value is not None:
                payload[key] = value * factors.get(field, 1.0) if glucose else value
        bg = self.optional(cells, self.i_bwz_bg)
        payload["bg_input"] = bg * factors.get("bwz_bg", 1.0) if bg else None
        status = cells[self.i_bwz_status].strip()
        if status:
            payload["status"] = status
        carbs = self.optional(cells, self.i_bwz_carbs)
        if carbs is not None and carbs < 0:
            msg = f"{self.cols.names[self.i_bwz_carbs]} is negative"
            raise _RowError(msg)
        identity = f"{payload.get('estimate')}|{payload['bg_input']}|{status}"
        self.emit("wizard", "", carbs, payload=payload, identity=identity)

    def marker(self, text: str) -> None:
        """An Event Marker: ``Meal: N grams`` → food, ``Insulin: N`` → insulin, else a note."""
        match = _MARKER.match(text)
        if match is not None:
            amount = float(match[2].replace(",", "."))
            if match[1].lower() == "meal":
                self.emit("food", "", amount, payload={"marker": text})
            else:
                self.emit("insulin", "unknown", amount, payload={"marker": text})
            return
        self.emit("note", "", payload={"text": text, "category": "event marker"}, identity=text)

    def other(self, cells: list[str]) -> None:
        """A row filled only in columns without an event of their own: kept as ``other``."""
        names = self.cols.names
        fields = {
            names[i]: cells[i].strip()
            for i in range(self.cols.width)
            if i not in self.known and cells[i].strip()
        }
        if fields:
            identity = "|".join(f"{k}={v}" for k, v in sorted(fields.items()))
            self.emit(
                "deviceEvent", "other", payload={"event": "columns", "fields": fields}, identity=identity
            )

    def aggregated(self, cells: list[str], line: int, time_ms: int, offset: int) -> list[ParsedRecord]:
        """A row of ``Aggregated Auto Insulin Data``: a daily total kept as ``deviceEvent`` ``other``."""
        delivered_text = cells[self.i_delivered].strip()
        position = self.i_delivered if delivered_text else self.i_selected
        if not cells[position].strip():
            return []
        units = self.units(cells, position)
        payload: dict[str, Any] = {"event": "aggregatedAutoInsulin", "units": units, "period": "day"}
        source = cells[self.i_bolus_source].strip()
        if source:
            payload["source"] = source
        return [
            ParsedRecord(
                "deviceEvent",
                "other",
                time_ms,
                offset,
                line,
                self.device,
                payload=payload,
                identity="aggregatedAutoInsulin",
            )
        ]


def _new_time(text: str) -> str:
    match = _NEW_TIME.match(text)
    if match is None:
        msg = "New Device Time is not YYYY/MM/DD hh:mm:ss"
        raise _RowError(msg)
    try:
        moment = dt.datetime(  # noqa: DTZ001 - a wall time of the device clock
            int(match[1]), int(match[2]), int(match[3]), int(match[4]), int(match[5]), int(match[6] or 0)
        )
    except ValueError:
        msg = "New Device Time is not a valid date and time"
        raise _RowError(msg) from None
    return moment.isoformat()
