"""Glooko export, read one member CSV at a time (research/formats.md §5; Omnipod §9, Eversense §7).

**Layout.** Glooko exports a zip of CSV files (``cgm_data_1.csv``, ``bg_data_1.csv``,
``cgm_carbs_data_1.csv``, ``alarms_data_1.csv``, ``Insulin data/{basal,bolus,insulin}_data_1.csv``,
``Manual data/{exercise,food,manual_insulin,medication,notes}_data_1.csv``; long ranges split into
``_1``, ``_2`` ...). The import service expands the archive and hands each member to this importer
as a file of its own, so one parse reads one member. Every member has the same shape: line 1 is
metadata, ``Name:<name>,Date Range:<a> - <b>`` (German ``Datumsbereich:``), padded with commas to
the column count; line 2 is the header, which alone tells the kind of the member; then one row per
event, **newest first**, CRLF line ends and no line break after the last row. A member whose kind
has no data holds the two lines only (no records). Delimiter ``,`` (``;`` or tab after a re-save);
a decimal comma comes quoted (``"215,0"``) and is accepted in any member.

**Recognised by** the metadata line alone (a cell starting ``Name:`` and one starting ``Date
Range:`` or ``Datumsbereich:``); the header on line 2 is then read by column name, in English or
German, case- and accent-insensitively, with the spellings known so far (the English bolus and
basal names are partly unverified, research/formats.md §15). A header of no known kind, a missing
required column or a glucose column whose unit is not ``mg/dl`` or ``mmol/l`` refuses the member
with :class:`MalformedFileError` naming the file and line 2.

**Timestamps** are local wall times with minutes (seconds and AM/PM are accepted). The date's
separator decides the order, never the values: ``.`` is ``DD.MM.YYYY`` (German), ``/`` is
``MM/DD/YYYY`` (US), ``-`` is ``YYYY-MM-DD``. A slash date that can only be read day first (a month
field above 12) refuses the file, since every other slash date of it would be misread.

**Mapping** (member kind → records):

=====================  =============================================================================
``cgm_data``           ``cbg`` ``sensor`` (as :class:`ReadingBlock` columns); LO/HI words or values at
                       the sensor's limits annotated ``low``/``high`` (:func:`cgm_limits_mgdl`)
``bg_data``            ``smbg`` ``meter``, or ``manual`` when ``Manual Reading`` says so (``M``, yes);
                       an unknown flag stays ``meter`` with the flag in the payload
``bolus_data``         ``bolus``: ``normal``; ``dual`` with both an initial and an extended part;
                       ``extended`` with only an extended part; ``automated`` for an ``Insulin Type``
                       naming automatic delivery. Value = delivered units. Plus a ``wizard`` (value =
                       carbohydrate input, g; BG input in mg/dL and carb ratio in the payload) when
                       the row has a carbohydrate or BG input above 0
``basal_data``         ``basal`` ``scheduled`` (``Scheduled``, German ``Eingeplant``), ``temp``,
                       ``suspend`` (rate 0 unless given), ``automated``; value = ``Rate`` (U/h), a
                       percent temp without a rate = percent of the scheduled rate before it;
                       ``duration_ms`` from ``Duration (minutes)``
``alarms_data``        ``deviceEvent`` ``alarm``; the alarm's name in the payload and identity
``cgm_carbs_data``     ``food`` (g)
``food_data``          ``food`` (g); name, fat, protein, calories and servings in the payload
``manual_insulin``     ``insulin`` ``rapid``/``long``/``unknown`` from ``Insulin Type`` (or the name)
``notes_data``         ``note``: the text in the payload, identity = the text
``exercise_data``      ``physicalActivity`` (``light``/``medium``/``heavy`` from ``Intensity``),
                       ``duration_ms`` from the minutes
``insulin_data``       not stored: daily totals, which Glucoshare derives from the doses (a note says so)
``medication_data``    not stored: the data model has no record type for other medication (a note)
=====================  =============================================================================

**Devices.** Members with a ``Serial Number`` column name a device per row. The text may be a serial
or a device name (``Omnipod 5``, an Eversense transmitter); a text naming a known make
(Omnipod/Insulet, Dexcom, FreeStyle/Libre/Abbott, Eversense/Senseonics, Tandem/t:slim,
Medtronic/MiniMed/Guardian, Accu-Chek/Roche, Contour/Ascensia, OneTouch/LifeScan) is that maker's
device with the text as its model; any other text is a serial of an "Unknown device reported by
Glooko" (manufacturer ``Unknown``, model ``device reported by Glooko``). Members without the column
(manual data, CGM carbs) are the patient's "Glooko manual entries". The inference depends on the
text only, so the same serial in several members is one device.

**Time streams.** Each (member, serial) is one local-time stream (:mod:`.localtime`). Rows are
written newest first; a stream is fed to its clock in device order, oldest first: its rows are
reversed unless more of its steps go forward in time than back (a member written oldest first is
read as it is). That order is what places a record in the first or second pass through the hour
repeated at a fall-back change. CGM readings on days without a change go before the stream's end
(:meth:`_FileReader.cgm`).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

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
    shown,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import day_offsets, wall_ms
from glucoshare.ingest.numbers import parse_number
from glucoshare.ingest.plain_columns import (
    Offsets,
    PlainRows,
    distinct_texts,
    first_space,
    plain_rows,
    small_distinct,
)
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

UNKNOWN_MANUFACTURER = "Unknown"
UNKNOWN_MODEL = "device reported by Glooko"
MANUAL_MANUFACTURER = "Glooko"
MANUAL_MODEL = "manual entries"

SENSOR_FLOOR_MGDL = 40.0
METER_LIMITS_MGDL = (20.0, 600.0)
"""What a meter's LO/HI words stand for (numbers from a meter are never annotated)."""

_MAKERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("omnipod", "insulet"), "Insulet"),
    (("dexcom",), "Dexcom"),
    (("freestyle", "libre", "abbott"), "Abbott"),
    (("eversense", "senseonics"), "Senseonics"),
    (("tandem", "t:slim", "tslim"), "Tandem"),
    (("medtronic", "minimed", "guardian"), "Medtronic"),
    (("accu-chek", "accuchek", "accu chek", "roche"), "Roche"),
    (("contour", "ascensia"), "Ascensia"),
    (("onetouch", "one touch", "lifescan"), "LifeScan"),
)
_CGM_CEILING_MGDL = {
    "Dexcom": 400.0,
    "Senseonics": 400.0,
    "Medtronic": 400.0,
    "Insulet": 400.0,  # Omnipod 5 shows HI above 400 mg/dL whichever sensor it uses
    "Tandem": 400.0,
    "Abbott": 500.0,
}
_WIDEST_CEILING_MGDL = 500.0
"""The ceiling of a device Glucoshare cannot identify: the highest any CGM reports."""


def device_info(serial: str | None) -> DeviceInfo:
    """The device a ``Serial Number`` cell names (``None``: a member without that column).

    A text naming a known make is that maker's device, the text its model and no serial; any other
    text is the serial of an unknown device; see the module notes.
    """
    if serial is None:
        return DeviceInfo(MANUAL_MANUFACTURER, MANUAL_MODEL, None)
    text = serial.strip()
    folded = text.casefold()
    for words, maker in _MAKERS:
        if any(word in folded for word in words):
            return DeviceInfo(maker, text, None)
    return DeviceInfo(UNKNOWN_MANUFACTURER, UNKNOWN_MODEL, text or None)


def cgm_limits_mgdl(serial: str | None) -> tuple[float, float]:
    """The (floor, ceiling) in mg/dL at which a CGM reading of this device is LO or HI.

    40 mg/dL for every sensor; 400 for Dexcom, Eversense, Medtronic, Omnipod 5 and Tandem, 500 for
    FreeStyle Libre and for a device that cannot be identified (so that only readings at the widest
    limit any sensor has are annotated).
    """
    maker = device_info(serial).manufacturer
    return SENSOR_FLOOR_MGDL, _CGM_CEILING_MGDL.get(maker, _WIDEST_CEILING_MGDL)


def written_limits(unit: str, limits_mgdl: tuple[float, float]) -> tuple[float, float]:
    """Limits in mg/dL as a file in ``unit`` writes them (mmol/L to one decimal: 2.2, 22.2, 27.8)."""
    if unit == "mmol/L":
        return round(limits_mgdl[0] / MGDL_PER_MMOLL, 1), round(limits_mgdl[1] / MGDL_PER_MMOLL, 1)
    return limits_mgdl


def reads_newest_first(walls: npt.NDArray[np.int64]) -> bool:
    """True when a stream's rows (wall times in file order) are read in reverse: newest first.

    That is unless more steps between neighbouring rows go forward in time than back.
    """
    steps = np.diff(walls)
    return int(np.count_nonzero(steps < 0)) >= int(np.count_nonzero(steps > 0))


@functools.lru_cache(maxsize=4096)
def _fold(text: str) -> str:
    """Case-folded, without accents and with single spaces, for matching translated names.

    Cached: the same few type and flag names fill whole columns.
    """
    decomposed = unicodedata.normalize("NFKD", text.strip().strip('"').casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


# Folded header names → field.
_FIELDS: dict[str, str] = {
    "timestamp": "timestamp",
    "zeitstempel": "timestamp",
    "serial number": "serial",
    "serial": "serial",
    "seriennummer": "serial",
    "manual reading": "manual",
    "manuelles lesen": "manual",
    "insulin type": "insulin_type",
    "insulin-typ": "insulin_type",
    "insulin typ": "insulin_type",
    "insulintyp": "insulin_type",
    "carbs input (g)": "carbs_input",
    "carbs input": "carbs_input",
    "carb input (g)": "carbs_input",
    "kohlenhydrataufnahme (g)": "carbs_input",
    "kohlenhydrataufnahme": "carbs_input",
    "carbs ratio": "carb_ratio",
    "carb ratio": "carb_ratio",
    "kohlenhydratverhaltnis": "carb_ratio",
    "insulin delivered (u)": "delivered",
    "insulin delivered": "delivered",
    "abgegebenes insulin (e)": "delivered",
    "abgegebenes insulin (u)": "delivered",
    "abgegebenes insulin": "delivered",
    "initial delivery (u)": "initial",
    "initial delivery": "initial",
    "anfangliche abgabe (e)": "initial",
    "anfangliche abgabe (u)": "initial",
    "anfangliche abgabe": "initial",
    "extended delivery (u)": "extended",
    "extended delivery": "extended",
    "verzogerte abgabe (e)": "extended",
    "verzogerte abgabe (u)": "extended",
    "verzogerte abgabe": "extended",
    "duration (minutes)": "duration",
    "duration (min)": "duration",
    "duration": "duration",
    "dauer (minuten)": "duration",
    "dauer (min)": "duration",
    "dauer": "duration",
    "percentage (%)": "percentage",
    "percentage": "percentage",
    "percent": "percentage",
    "prozentsatz (%)": "percentage",
    "prozentsatz": "percentage",
    "rate": "rate",
    "rate (u/h)": "rate",
    "rate (u/hr)": "rate",
    "rate (e/h)": "rate",
    "basal rate": "rate",
    "basalrate": "rate",
    "total bolus (u)": "total_bolus",
    "bolus gesamt (u)": "total_bolus",
    "bolus gesamt (e)": "total_bolus",
    "total basal (u)": "total_basal",
    "basal gesamt (u)": "total_basal",
    "basal gesamt (e)": "total_basal",
    "total insulin (u)": "total_insulin",
    "insulin gesamt (u)": "total_insulin",
    "insulin gesamt (e)": "total_insulin",
    "alarm/event": "alarm",
    "alarm/ereignis": "alarm",
    "alarm": "alarm",
    "name": "name",
    "intensity": "intensity",
    "intensitat": "intensity",
    "calories burned": "calories_burned",
    "calories burned (kcal)": "calories_burned",
    "verbrannte kalorien": "calories_burned",
    "carbs (g)": "carbs",
    "carbs": "carbs",
    "carbohydrates (g)": "carbs",
    "kh (g)": "carbs",
    "kh": "carbs",
    "kohlenhydrate (g)": "carbs",
    "fat (g)": "fat",
    "fat": "fat",
    "fett (g)": "fat",
    "fett": "fat",
    "protein (g)": "protein",
    "protein": "protein",
    "eiweiss (g)": "protein",
    "eiweiss": "protein",
    "calories": "calories",
    "calories (kcal)": "calories",
    "kalorien": "calories",
    "kalorien (kcal)": "calories",
    "serving": "serving",
    "servings": "serving",
    "serving size": "serving",
    "portion": "serving",
    "portionen": "serving",
    "number of servings": "servings",
    "number of portions": "servings",
    "anzahl der portionen": "servings",
    "value": "value",
    "wert": "value",
    "note": "value",
    "notes": "value",
    "notiz": "value",
    "notizen": "value",
    "medication type": "medication_type",
    "medikamententyp": "medication_type",
}

# Folded names of glucose columns without their unit → field.
_GLUCOSE_STEMS: dict[str, str] = {
    "cgm glucose value": "cgm_glucose",
    "cgm glucose": "cgm_glucose",
    "cgm-glukosewert": "cgm_glucose",
    "cgm glukosewert": "cgm_glucose",
    "glucose value": "glucose",
    "glukosewert": "glucose",
    "blood glucose": "glucose",
    "blutzucker": "glucose",
    "blood glucose input": "bg_input",
    "bg input": "bg_input",
    "blutzuckereingabe": "bg_input",
}
_WITH_UNIT = re.compile(r"^(.*?)\s*\(([^()]*)\)$")
_UNITS = {"mg/dl": "mg/dL", "mmol/l": "mmol/L"}

KINDS = (
    "cgm",
    "bg",
    "bolus",
    "basal",
    "insulin_totals",
    "alarms",
    "exercise",
    "food",
    "manual_insulin",
    "medication",
    "notes",
    "cgm_carbs",
)
"""The member kinds a header can name."""

_REQUIRED: dict[str, tuple[str, ...]] = {
    "cgm": ("cgm_glucose",),
    "bg": ("glucose",),
    "bolus": ("delivered",),
    "basal": ("insulin_type",),
    "alarms": ("alarm",),
    "manual_insulin": ("value",),
    "notes": ("value",),
    "cgm_carbs": ("carbs",),
}
_COLUMN_LABELS = {
    "cgm_glucose": "CGM Glucose Value",
    "glucose": "Glucose Value",
    "delivered": "Insulin Delivered (U)",
    "insulin_type": "Insulin Type",
    "alarm": "Alarm/Event",
    "value": "Value",
    "carbs": "Carbs (g)",
}
_NOT_STORED = {
    "insulin_totals": (
        "daily insulin totals (insulin_data) are not stored: Glucoshare derives them from the bolus "
        "and basal doses of the export"
    ),
    "medication": (
        "medications other than insulin (medication_data) are not stored: Glucoshare's data model "
        "has no record type for them"
    ),
}
_WITH_SERIAL = frozenset({"cgm", "bg", "bolus", "basal", "insulin_totals", "alarms"})


_NONE: frozenset[str] = frozenset()
_KIND_RULES: tuple[tuple[frozenset[str], frozenset[str], frozenset[str], str], ...] = (
    # (any of these fields, and all of these, and none of these) → kind; the first match wins
    (frozenset({"cgm_glucose"}), _NONE, _NONE, "cgm"),
    (frozenset({"glucose"}), _NONE, _NONE, "bg"),
    (frozenset({"bg_input", "carbs_input", "carb_ratio", "initial", "extended"}), _NONE, _NONE, "bolus"),
    (frozenset({"total_bolus", "total_basal", "total_insulin"}), _NONE, _NONE, "insulin_totals"),
    (frozenset({"alarm"}), _NONE, _NONE, "alarms"),
    (frozenset({"intensity", "calories_burned"}), _NONE, _NONE, "exercise"),
    (frozenset({"medication_type"}), _NONE, _NONE, "medication"),
    (frozenset({"fat", "protein", "calories", "serving", "servings"}), _NONE, _NONE, "food"),
    (frozenset({"duration", "percentage", "rate", "delivered"}), frozenset({"insulin_type"}), _NONE, "basal"),
    (frozenset({"value"}), frozenset({"insulin_type"}), _NONE, "manual_insulin"),
    (frozenset({"value"}), _NONE, frozenset({"name"}), "notes"),
    (frozenset({"carbs"}), frozenset({"name"}), _NONE, "food"),
    (frozenset({"carbs"}), _NONE, _NONE, "cgm_carbs"),
)


def _kind(fields: set[str]) -> str | None:
    """The member kind a header's fields name, or ``None``."""
    for any_of, all_of, none_of, kind in _KIND_RULES:
        if fields & any_of and all_of <= fields and not fields & none_of:
            return kind
    return None


_META = re.compile(r'(?:^|[,;\t])\s*"?\s*name\s*:')


def _is_metadata(line: str) -> bool:
    """True for Glooko's line 1: a ``Name:`` cell and a ``Date Range:``/``Datumsbereich:`` cell."""
    folded = line.lstrip("\ufeff").casefold()
    return bool(_META.search(folded)) and re.search(r"(date range|datumsbereich)\s*:", folded) is not None


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """A member's kind and where its columns are."""

    kind: str
    delimiter: str
    columns: dict[str, int]
    names: list[str]  # the header's cells as written, for messages
    units: dict[str, str]  # glucose field → "mg/dL" or "mmol/L"
    notes: list[str]

    @property
    def width(self) -> int:
        """Cells a row needs to reach every known column."""
        return max(self.columns.values()) + 1

    def label(self, field: str) -> str:
        """The column's name as the header writes it."""
        return self.names[self.columns[field]]


def _layout(name: str, head: list[str]) -> _Layout:
    """Read the header on line 2; :class:`MalformedFileError` when it is missing or unknown."""
    if len(head) < 2 or not head[1].strip():  # noqa: PLR2004 - metadata + header
        msg = (
            f"{name}: line 2: the header row is missing (Glooko files have the Name/Date Range line, then it)"
        )
        raise MalformedFileError(msg)
    line = head[1].lstrip("\ufeff")
    delimiter = ","
    try:
        for candidate in (",", ";", "\t"):
            cells = next(csv.reader([line], delimiter=candidate), [])
            if len(cells) > 1 and _fold(cells[0]) in ("timestamp", "zeitstempel"):
                delimiter = candidate
                break
        cells = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        msg = f"{name}: line 2: the header row is not a readable CSV row"
        raise MalformedFileError(msg) from None
    columns: dict[str, int] = {}
    units: dict[str, str] = {}
    notes: list[str] = []
    for index, cell in enumerate(cells):
        folded = _fold(cell)
        field = _FIELDS.get(folded)
        if field is None:
            match = _WITH_UNIT.match(folded)
            stem = match.group(1) if match is not None else folded
            field = _GLUCOSE_STEMS.get(stem)
            if field is not None:
                unit = _UNITS.get(match.group(2).replace(" ", "")) if match is not None else None
                if unit is None:
                    msg = f"{name}: line 2: unknown glucose unit in column {shown(cell.strip())}"
                    raise MalformedFileError(msg)
                units[field] = unit
        if field is None:
            if folded:
                notes.append(f"column {shown(cell.strip())} is not known to Glucoshare and was not read")
            continue
        columns.setdefault(field, index)
    kind = _kind(set(columns))
    if kind is None:
        msg = (
            f"{name}: line 2: not a header of any Glooko file Glucoshare knows (line 2 must be the "
            "header, such as Timestamp,CGM Glucose Value (mg/dl),Serial Number)"
        )
        raise MalformedFileError(msg)
    if "timestamp" not in columns:
        msg = f"{name}: line 2: the header has no Timestamp (Zeitstempel) column"
        raise MalformedFileError(msg)
    for field in _REQUIRED.get(kind, ()):
        if field not in columns:
            msg = f"{name}: line 2: the {kind} header has no {_COLUMN_LABELS[field]} column"
            raise MalformedFileError(msg)
    return _Layout(kind, delimiter, columns, [c.strip() for c in cells], units, notes)


# --- timestamps -----------------------------------------------------------------------------------

_DATE = re.compile(r"(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp])\.?\s*[Mm]\.?)?")
_YEAR_DIGITS = 4
_LAST_MONTH = 12
_NOON = 12
_BAD_TIMESTAMP = "unreadable timestamp (expected DD.MM.YYYY, MM/DD/YYYY or YYYY-MM-DD and HH:MM)"


class _Stamps:
    """Wall times of a member's timestamps, with the date and time parts cached."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.days: dict[str, int] = {}
        self.times: dict[str, int] = {}

    def wall(self, stamp: str, line: int) -> int | None:
        """Milliseconds of the wall time (as :func:`wall_ms` counts them), ``None`` if unreadable."""
        text = stamp.strip()
        date, sep, time = text.partition(" ")
        if not sep and "T" in text:
            date, _, time = text.partition("T")
        day = self.day(date, line)
        if day is None:
            return None
        delta = self.time(time.strip())
        return None if delta is None else day + delta

    def day(self, date: str, line: int) -> int | None:
        """Milliseconds of midnight of a date part (``line``: the first row with it, for messages)."""
        day = self.days.get(date)
        if day is None:
            day = self._day(date, line)
            if day is not None:
                self.days[date] = day
        return day

    def time(self, text: str) -> int | None:
        """Milliseconds since midnight of a (stripped) time part, ``None`` if invalid."""
        delta = self.times.get(text)
        if delta is None:
            delta = _time_of_day(text)
            if delta is not None:
                self.times[text] = delta
        return delta

    def _day(self, text: str, line: int) -> int | None:
        match = _DATE.fullmatch(text)
        if match is None:
            return None
        first, separator, second, third = match.groups()
        if separator == "-":
            if len(first) != _YEAR_DIGITS:
                return None
            year, month, day = int(first), int(second), int(third)
        elif len(third) != _YEAR_DIGITS:
            return None
        elif separator == ".":
            day, month, year = int(first), int(second), int(third)
        else:
            month, day, year = int(first), int(second), int(third)
            if month > _LAST_MONTH and 1 <= day <= _LAST_MONTH:
                msg = (
                    f"{self.file_name}: line {line}: this date can only be read day first (DD/MM/YYYY), "
                    "but Glooko writes dates with '/' month first (MM/DD/YYYY); the file's dates are "
                    "not as Glooko wrote them"
                )
                raise MalformedFileError(msg)
        try:
            return wall_ms(dt.datetime(year, month, day))  # noqa: DTZ001 - wall time, resolved later
        except ValueError:
            return None


def _time_of_day(text: str) -> int | None:
    """Milliseconds since midnight of ``HH:MM`` (optional seconds and AM/PM), ``None`` if invalid."""
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    meridiem = match.group(4)
    if meridiem is not None:
        if not 1 <= hour <= _NOON:
            return None
        hour = hour % _NOON + (_NOON if meridiem in "Pp" else 0)
    if hour > 23 or minute > 59 or second > 59:  # noqa: PLR2004
        return None
    return ((hour * 60 + minute) * 60 + second) * 1000


# --- values ---------------------------------------------------------------------------------------


class _RowError(ValueError):
    """A row cannot be read; the message names the column, never its content."""


_LOW_WORDS = frozenset({"low", "lo", "niedrig", "below"})
_HIGH_WORDS = frozenset({"high", "hi", "hoch", "above"})
_Glucose = tuple[float, float | None, str | None]  # (mg/dL, value as written, annotation)


class _GlucoseColumn:
    """Glucose values of one column and device: unit, limits and a cache by text."""

    def __init__(self, unit: str, limits_mgdl: tuple[float, float], *, annotate_numbers: bool) -> None:
        self.unit = unit
        self.factor = MGDL_PER_MMOLL if unit == "mmol/L" else 1.0
        self.limits_mgdl = limits_mgdl
        self.floor, self.ceiling = written_limits(unit, limits_mgdl)
        self.annotate_numbers = annotate_numbers
        self.cache: dict[str, _Glucose] = {}
        self.codes: dict[str, int] = {}
        """Of each text read by :meth:`code`, the index of its value in :attr:`table`."""
        self.table: list[_Glucose] = []
        self._columns: (
            tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None
        ) = None

    def code(self, text: str, what: str) -> int:
        """The index in :attr:`table` of a text's value, read on first sight (:meth:`read`).

        A CGM row keeps this index: a sensor writes a few hundred distinct values, and the rows'
        values become columns by indexing :meth:`columns` (NumPy) instead of row by row.
        """
        value = self.read(text, what)
        code = self.codes[text] = len(self.table)
        self.table.append(value)
        self._columns = None
        return code

    def columns(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """:attr:`table` as columns: mg/dL, the number as written (NaN for a word), flagged at a limit."""
        if self._columns is None:
            table = self.table
            self._columns = (
                np.array([value[0] for value in table], np.float64),
                np.array([np.nan if value[1] is None else value[1] for value in table], np.float64),
                np.array([value[2] is not None for value in table], np.bool_),
            )
        return self._columns

    def read(self, text: str, what: str) -> _Glucose:
        """``(mg/dL, written number, annotation)``; :class:`_RowError` naming ``what`` otherwise."""
        value = self.cache.get(text)
        if value is not None:
            return value
        stripped = text.strip()
        if not stripped:
            msg = f"{what} row without a glucose value"
            raise _RowError(msg)
        word = _fold(stripped)
        if word in _LOW_WORDS:
            value = (self.limits_mgdl[0], None, "low")
        elif word in _HIGH_WORDS:
            value = (self.limits_mgdl[1], None, "high")
        else:
            try:
                number = parse_number(stripped, decimal_comma="," in stripped)
            except ValueError:
                msg = f"{what} glucose value is not a number"
                raise _RowError(msg) from None
            if number <= 0:
                msg = f"{what} glucose value is not positive"
                raise _RowError(msg)
            annotation = None
            if self.annotate_numbers:
                annotation = "low" if number <= self.floor else "high" if number >= self.ceiling else None
            value = (number * self.factor, number, annotation)
        self.cache[text] = value
        return value


_AMOUNT = re.compile(r"^\s*([-+]?\d[\d.,]*)\s*(?:u|e|ie|iu|units?|einheiten)?\s*$", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _amount(text: str, what: str, *, signed: bool = False) -> float:
    """A number with a decimal point or comma (an insulin unit after it is allowed).

    Cached (a refusal is not: it raises each time): doses and rates repeat row after row.
    """
    match = _AMOUNT.match(text)
    try:
        if match is None:
            raise ValueError(text)  # noqa: TRY301 - one path for every unreadable number
        number = parse_number(match.group(1), decimal_comma="," in match.group(1))
    except ValueError:
        msg = f"{what} is not a number"
        raise _RowError(msg) from None
    if number < 0 and not signed:
        msg = f"{what} is negative"
        raise _RowError(msg)
    return number


def _has(folded: str, words: tuple[str, ...]) -> bool:
    return any(word in folded for word in words)


_MANUAL_YES = frozenset({"m", "manual", "manuell", "yes", "y", "ja", "j", "true", "wahr", "1", "x"})
_MANUAL_NO = frozenset({"no", "n", "nein", "false", "falsch", "0"})
_SUSPEND_WORDS = ("suspend", "unterbroch", "unterbrech", "ausgesetzt", "angehalten", "pause", "stopp", "stop")
_TEMP_WORDS = ("temp", "tbr", "vorubergehend")
_AUTO_WORDS = ("auto",)
_SCHEDULED_WORDS = ("scheduled", "eingeplant", "geplant", "programm", "standard", "normal", "basal")
_EXTENDED_WORDS = ("extended", "square", "verzogert", "verlangert")
_DUAL_WORDS = ("dual", "combo", "multiwave", "kombin")
_RAPID_WORDS = ("rapid", "fast", "short", "schnell", "kurz", "bolus", "mahlzeit", "correction", "korrektur")
_LONG_WORDS = ("long", "lang", "basal", "depot", "slow", "verzogert")
_INTENSITY: tuple[tuple[tuple[str, ...], str], ...] = (
    (("low", "light", "leicht", "niedrig", "gering", "easy"), "light"),
    (("medium", "moderate", "mittel", "massig", "normal"), "medium"),
    (("high", "heavy", "hard", "vigorous", "intens", "hoch", "schwer", "anstrengend"), "heavy"),
)


def _basal_subtype(folded: str) -> str | None:
    for words, subtype in (
        (_SUSPEND_WORDS, "suspend"),
        (_TEMP_WORDS, "temp"),
        (_AUTO_WORDS, "automated"),
        (_SCHEDULED_WORDS, "scheduled"),
    ):
        if _has(folded, words):
            return subtype
    return None


def _insulin_kind(*texts: str) -> str:
    for text in texts:
        folded = _fold(text)
        if _has(folded, _RAPID_WORDS):
            return "rapid"
        if _has(folded, _LONG_WORDS):
            return "long"
    return "unknown"


def _intensity(text: str) -> str:
    folded = _fold(text)
    for words, subtype in _INTENSITY:
        if folded in words:
            return subtype
    for words, subtype in _INTENSITY:
        if _has(folded, words):
            return subtype
    return "unknown"


def _number_key(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


# --- rows to records ------------------------------------------------------------------------------


class _Events:
    """Turns the rows of one stream of a non-CGM member into records (state: the basal in force)."""

    def __init__(self, layout: _Layout, device: str, glucose: _GlucoseColumn | None) -> None:
        self.layout = layout
        self.columns = layout.columns
        self.device = device
        self.glucose = glucose
        self.scheduled_rate: float | None = None
        self.row: list[str] = []
        self.at: tuple[int, int, int] = (0, 0, 0)
        readers: dict[str, Callable[[], list[ParsedRecord]]] = {
            "bg": self._bg,
            "bolus": self._bolus,
            "basal": self._basal,
            "alarms": self._alarms,
            "exercise": self._exercise,
            "food": self._food,
            "cgm_carbs": self._cgm_carbs,
            "manual_insulin": self._manual_insulin,
            "notes": self._notes,
        }
        self.reader = readers[layout.kind]

    def cell(self, field: str) -> str:
        """A cell of the current row, stripped ("" when the member has no such column)."""
        index = self.columns.get(field)
        return self.row[index].strip() if index is not None else ""

    def number(self, field: str, *, signed: bool = False) -> float | None:
        """A number cell, ``None`` when empty."""
        text = self.cell(field)
        if not text:
            return None
        return _amount(text, self.layout.label(field), signed=signed)

    def record(
        self,
        type_: str,
        subtype: str,
        value: float | None = None,
        *,
        duration_ms: int | None = None,
        payload: dict[str, Any] | None = None,
        identity: str = "",
    ) -> ParsedRecord:
        """A record at the current row's instant."""
        time_ms, offset, line = self.at
        return ParsedRecord(
            type_,
            subtype,
            time_ms,
            offset,
            line,
            self.device,
            value,
            duration_ms=duration_ms,
            payload=payload or None,
            identity=identity,
        )

    def read(self, row: list[str], line: int, time_ms: int, offset: int) -> list[ParsedRecord]:
        """The records of one row; :class:`_RowError` when it cannot be read."""
        self.row = row
        self.at = (time_ms, offset, line)
        return self.reader()

    def _bg(self) -> list[ParsedRecord]:
        assert self.glucose is not None  # noqa: S101 - bg members always have their column
        text = self.row[self.columns["glucose"]]
        mgdl, written, annotation = self.glucose.read(text, "BG")
        flag = self.cell("manual")
        folded = _fold(flag)
        subtype = "manual" if folded in _MANUAL_YES else "meter"
        payload = None
        if folded and folded not in _MANUAL_YES and folded not in _MANUAL_NO:
            payload = {"manual_reading": flag}
        time_ms, offset, line = self.at
        return [
            ParsedRecord(
                "smbg",
                subtype,
                time_ms,
                offset,
                line,
                self.device,
                mgdl,
                written,
                self.glucose.unit,
                None,
                annotation,
                payload,
            )
        ]

    def _bolus(self) -> list[ParsedRecord]:
        delivered = self.number("delivered")
        initial = self.number("initial")
        extended = self.number("extended")
        if delivered is None:
            if initial is None and extended is None:
                msg = "bolus row without Insulin Delivered"
                raise _RowError(msg)
            delivered = (initial or 0.0) + (extended or 0.0)
        kind = self.cell("insulin_type")
        folded = _fold(kind)
        if _has(folded, _AUTO_WORDS):
            subtype = "automated"
        elif extended is not None and extended > 0:
            subtype = "dual" if initial is not None and initial > 0 else "extended"
        elif initial is not None or extended is not None:
            subtype = "normal"
        elif _has(folded, _DUAL_WORDS):
            subtype = "dual"
        elif _has(folded, _EXTENDED_WORDS):
            subtype = "extended"
        else:
            subtype = "normal"
        payload: dict[str, Any] = {"insulin_type": kind or None}
        if initial is not None:
            payload["initial_units"] = initial
        if extended is not None:
            payload["extended_units"] = extended
        out = [self.record("bolus", subtype, delivered, payload=payload)]
        bg = self.number("bg_input")
        carbs = self.number("carbs_input")
        ratio = self.number("carb_ratio")
        if (carbs or 0.0) > 0 or (bg or 0.0) > 0:
            factor = MGDL_PER_MMOLL if self.layout.units.get("bg_input") == "mmol/L" else 1.0
            bg_mgdl = bg * factor if bg else None
            wizard = {"bg_input": bg_mgdl, "carb_ratio": ratio}
            identity = f"bg={_number_key(bg_mgdl)}|ratio={_number_key(ratio)}"
            out.append(self.record("wizard", "", carbs, payload=wizard, identity=identity))
        return out

    def _basal(self) -> list[ParsedRecord]:
        kind = self.cell("insulin_type")
        subtype = _basal_subtype(_fold(kind))
        if subtype is None:
            msg = "Insulin Type is not a known basal type (scheduled, temp, suspend or automated)"
            raise _RowError(msg)
        rate = self.number("rate")
        percent = self.number("percentage")
        minutes = self.number("duration")
        delivered = self.number("delivered")
        payload: dict[str, Any] = {"insulin_type": kind}
        if percent is not None:
            payload["percent"] = percent
        if delivered is not None:
            payload["delivered_units"] = delivered
        value = rate
        if subtype == "scheduled":
            if rate is None:
                msg = "scheduled basal row without a Rate"
                raise _RowError(msg)
            self.scheduled_rate = rate
        elif subtype == "suspend":
            value = 0.0 if rate is None else rate
        elif subtype == "temp" and rate is None and percent is not None and self.scheduled_rate is not None:
            value = self.scheduled_rate * percent / 100.0
            payload["scheduled_rate"] = self.scheduled_rate
        elif subtype == "automated" and rate is None:
            msg = "automated basal row without a Rate"
            raise _RowError(msg)
        duration = None if minutes is None else round(minutes * 60_000)
        identity = _number_key(percent) if subtype == "temp" else ""
        return [
            self.record("basal", subtype, value, duration_ms=duration, payload=payload, identity=identity)
        ]

    def _alarms(self) -> list[ParsedRecord]:
        text = self.cell("alarm")
        if not text:
            msg = "alarm row without an alarm name"
            raise _RowError(msg)
        return [self.record("deviceEvent", "alarm", payload={"text": text}, identity=text)]

    def _exercise(self) -> list[ParsedRecord]:
        name = self.cell("name")
        intensity = self.cell("intensity")
        minutes = self.number("duration")
        calories = self.number("calories_burned")
        if not name and not intensity and minutes is None:
            msg = "exercise row without a name, intensity or duration"
            raise _RowError(msg)
        payload: dict[str, Any] = {}
        if name:
            payload["name"] = name
        if calories is not None:
            payload["calories"] = calories
        duration = None if minutes is None else round(minutes * 60_000)
        return [
            self.record(
                "physicalActivity",
                _intensity(intensity),
                duration_ms=duration,
                payload=payload,
                identity=name,
            )
        ]

    def _food(self) -> list[ParsedRecord]:
        name = self.cell("name")
        carbs = self.number("carbs")
        if carbs is None and not name:
            msg = "food row without carbohydrates or a name"
            raise _RowError(msg)
        payload: dict[str, Any] = {}
        if name:
            payload["name"] = name
        for field, key in (("fat", "fat_g"), ("protein", "protein_g"), ("calories", "calories")):
            number = self.number(field)
            if number is not None:
                payload[key] = number
        serving = self.cell("serving")
        if serving:
            payload["serving"] = serving
        servings = self.number("servings")
        if servings is not None:
            payload["servings"] = servings
        return [self.record("food", "", carbs, payload=payload, identity=name)]

    def _cgm_carbs(self) -> list[ParsedRecord]:
        carbs = self.number("carbs")
        if carbs is None:
            msg = "CGM carbs row without carbohydrates"
            raise _RowError(msg)
        return [self.record("food", "", carbs, payload={"source": "cgm_carbs"})]

    def _manual_insulin(self) -> list[ParsedRecord]:
        units = self.number("value")
        if units is None:
            msg = "manual insulin row without a dose"
            raise _RowError(msg)
        name = self.cell("name")
        kind = self.cell("insulin_type")
        payload: dict[str, Any] = {}
        if name:
            payload["name"] = name
        if kind:
            payload["insulin_type"] = kind
        return [self.record("insulin", _insulin_kind(kind, name), units, payload=payload, identity=name)]

    def _notes(self) -> list[ParsedRecord]:
        text = self.cell("value")
        if not text:
            msg = "note row without text"
            raise _RowError(msg)
        return [self.record("note", "", payload={"text": text}, identity=text)]


def _refuse_if_cut_off(name: str, line: int, exc: csv.Error) -> None:
    """Refuse a file that ends inside a quoted field: Glooko quotes decimals, so that is a cut-off file.

    Glooko's files never end with a line break, so a truncated file shows only this way; the
    ``csv`` module's "unexpected end of data" (its wording since Python 2) is the end of the text
    reached inside quotes.
    """
    if "unexpected end of data" in str(exc):
        msg = f"{name}: line {line}: the file ends inside a quoted field (truncated?)"
        raise MalformedFileError(msg) from exc


_BLOCK_ROWS = 4096
"""Readings handed over as one :class:`ReadingBlock`."""
_CHUNK_ROWS = 4096
"""Readings read before those on days without a daylight-saving change are handed over."""
_MALFORMED_ROW = "a quoted field is malformed or never closed (truncated file?)"


@dataclasses.dataclass(slots=True)
class _CgmStream:
    """The CGM readings of one serial, in the order read (from the end of a file written newest first)."""

    device: str
    glucose: _GlucoseColumn
    walls: list[int] = dataclasses.field(default_factory=list)
    lines: list[int] = dataclasses.field(default_factory=list)
    codes: list[int] = dataclasses.field(default_factory=list)
    """Each row's value, as its index in ``glucose.table`` (:meth:`_GlucoseColumn.code`)."""
    ahead_to: int = 0
    """The rows up to here were looked at for handing over ahead of the stream's end."""
    ahead: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.int64]]] = (
        dataclasses.field(default_factory=list)
    )
    """Rows handed over ahead (their positions), with the instants and offsets they went with."""


def _cgm_items(
    stream: _CgmStream,
    unit: str,
    at: npt.NDArray[np.intp],
    resolved: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
) -> Iterator[ParsedItem]:
    """The records of the stream's rows ``at`` (positions as read), resolved to ``(instants, offsets)``.

    ``at`` ascends or descends (a chunk, the rest of a stream, a stream in device order). Readings
    flagged at a sensor limit come as single records, the others as blocks.
    """
    if not at.size:
        return
    instants, offsets = resolved
    first, last = int(at[0]), int(at[-1])
    if last - first + 1 == at.size:  # a run of rows (a chunk, or a whole stream): slices of the columns
        lines = np.array(stream.lines[first : last + 1], np.int64)
        codes = np.array(stream.codes[first : last + 1], np.intp)
    elif first - last + 1 == at.size:  # the same, newest first
        lines = np.array(stream.lines[last : first + 1][::-1], np.int64)
        codes = np.array(stream.codes[last : first + 1][::-1], np.intp)
    else:
        rows = at.tolist()
        lines = np.array([stream.lines[row] for row in rows], np.int64)
        codes = np.array([stream.codes[row] for row in rows], np.intp)
    table = stream.glucose.table
    all_mgdl, all_written, all_flagged = stream.glucose.columns()
    mgdl, written, flagged = all_mgdl[codes], all_written[codes], all_flagged[codes]
    device = stream.device
    for row in np.flatnonzero(flagged).tolist():
        value = table[codes[row]]
        yield ParsedRecord(
            "cbg",
            "sensor",
            int(instants[row]),
            int(offsets[row]),
            int(lines[row]),
            device,
            value[0],
            value[1],
            unit,
            None,
            value[2],
        )
    if flagged.any():
        plain = ~flagged
        instants, offsets, lines = instants[plain], offsets[plain], lines[plain]
        mgdl, written = mgdl[plain], written[plain]
    for start in range(0, len(instants), _BLOCK_ROWS):
        stop = start + _BLOCK_ROWS
        yield ReadingBlock(
            "cbg",
            "sensor",
            device,
            unit,
            instants[start:stop],
            offsets[start:stop],
            mgdl[start:stop],
            written[start:stop],
            lines[start:stop],
        )


_FIRST_ROW_LINE = 3
"""The line of a member's first row (after the metadata line and the header)."""


def _whole_lines(text: str) -> bool:
    """True when no line break of ``text`` falls inside quotes: every line is one whole CSV row.

    Every line break, and the end, must follow an even number of quote characters (``""`` inside
    quotes counts twice), counted over the UTF-8 bytes, in which neither character is ever part of
    another.
    """
    if '"' not in text:
        return True
    data = np.frombuffer(text.encode(), np.uint8)
    quotes = np.flatnonzero(data == ord('"'))
    breaks = np.flatnonzero(data == ord("\n"))
    return quotes.size % 2 == 0 and not (np.searchsorted(quotes, breaks) & 1).any()


def _one_row(line: str, delimiter: str) -> list[str] | None:
    """The cells of one line, ``None`` when it is not a well-formed row."""
    try:
        return next(csv.reader([line], delimiter=delimiter, strict=True), [])
    except csv.Error:
        return None


class _FileReader:
    """The state of reading one member: layout, timestamps, devices."""

    def __init__(self, source: SourceText, ctx: ParseContext, result: ParseResult, layout: _Layout) -> None:
        self.source = source
        self.ctx = ctx
        self.result = result
        self.layout = layout
        self.stamps = _Stamps(source.name)
        self.backwards = False
        """Whether the CGM rows are read from the end (:meth:`_cgm_cells`)."""

    def device(self, serial: str | None) -> str:
        """The result's key of the device a serial cell names, registered on first sight."""
        key = "manual" if serial is None else f"serial:{serial}"
        if key not in self.result.devices:
            self.result.devices[key] = device_info(serial)
        return key

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(line, cells)`` of every non-blank row, padded to the known columns."""
        reader = csv.reader(self._lines(), delimiter=self.layout.delimiter, strict=True)
        width = self.layout.width
        reject = self.result.rejected.append
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                _refuse_if_cut_off(self.source.name, reader.line_num + 2, exc)
                reject(RejectedRow(reader.line_num + 2, _MALFORMED_ROW))
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < width:
                row += [""] * (width - len(row))
            yield reader.line_num + 2, row

    def _lines(self) -> Iterator[str]:
        lines = self.source.lines()
        next(lines, None)  # metadata
        next(lines, None)  # header
        return lines

    def cgm(self) -> Iterator[ParsedItem]:
        """CGM readings, handed over a chunk of rows at a time.

        This is the hot path of a Glooko import: the timestamp's date and time parts and the
        glucose texts are looked up in caches (:meth:`_cgm_rows`), and the readings of a stream
        become :class:`ReadingBlock` columns (readings at a sensor limit single, annotated records).
        Glooko writes newest first, so a stream's clock runs only once all its rows are read; but a
        reading on a day without a daylight-saving change names one instant whatever the order
        (:func:`~glucoshare.ingest.localtime.day_offsets`), so those go as soon as their chunk is
        read. At the end each stream is resolved in its device order: the readings handed over must
        come out at the same instants (they do unless a device clock lagging behind a spring-forward
        change reaches them), and the others follow. When they do not, the readings go again, all
        of them resolved in device order (:class:`~glucoshare.ingest.base.Restart`).
        """
        unit = self.layout.units["cgm_glucose"]
        by_key: dict[str, _CgmStream] = {}  # by the serial
        for _ in self._cgm_rows(by_key):
            for stream in by_key.values():
                yield from self._cgm_ahead(stream, unit)
        settled = [self._cgm_settled(key, stream, unit) for key, stream in by_key.items()]
        if any(items is None for items in settled):
            yield Restart("a device clock lagged behind a spring-forward change: the readings go again")
            for key, stream in by_key.items():
                at, resolved = self._cgm_resolved(key, stream, fresh=True)
                yield from _cgm_items(stream, unit, at, resolved)
            return
        for items in settled:
            yield from items or ()

    def _cgm_rows(self, by_key: dict[str, _CgmStream]) -> Iterator[None]:
        """Read the CGM rows into one :class:`_CgmStream` per serial (``by_key``).

        Pauses (yields) after every :data:`_CHUNK_ROWS` readings.
        """
        plain = self._plain_cgm_rows(by_key)
        if plain is not None:
            yield from plain
            return
        layout = self.layout
        columns = layout.columns
        i_stamp, i_value = columns["timestamp"], columns["cgm_glucose"]
        i_serial = columns.get("serial", -1)
        width = layout.width
        reject = self.result.rejected.append
        days, times, stamps = self.stamps.days, self.stamps.times, self.stamps
        streams: dict[str, _CgmStream] = {}  # by the serial cell as written
        count, chunk_end = 0, _CHUNK_ROWS
        serial_text: str | None = None
        stream: _CgmStream | None = None
        for line, cells in self._cgm_cells():
            if len(cells) < width:
                if not any(cell.strip() for cell in cells):
                    continue
                row = cells + [""] * (width - len(cells))
            else:
                row = cells
            serial = row[i_serial] if i_serial >= 0 else ""
            if serial != serial_text or stream is None:
                serial_text = serial
                stream = streams.get(serial)
                if stream is None:
                    stream = streams[serial] = self._cgm_stream(by_key, serial)
            stamp = row[i_stamp]
            date, _, time = stamp.partition(" ")
            day = days.get(date)
            delta = times.get(time)
            if day is None or delta is None:
                wall = stamps.wall(stamp, line)
                if wall is None:
                    if not any(cell.strip() for cell in row):
                        continue  # a blank row of delimiters
                    reject(
                        RejectedRow(
                            line,
                            "CGM row without a timestamp" if not stamp.strip() else _BAD_TIMESTAMP,
                        )
                    )
                    continue
            else:
                wall = day + delta
            text = row[i_value]
            code = stream.glucose.codes.get(text)
            if code is None:
                try:
                    code = stream.glucose.code(text, "CGM")
                except _RowError as exc:
                    reject(RejectedRow(line, str(exc)))
                    continue
            stream.walls.append(wall)
            stream.lines.append(line)
            stream.codes.append(code)
            count += 1
            if count == chunk_end:
                chunk_end += _CHUNK_ROWS
                yield
        self.result.rejected.sort(key=lambda rejected: rejected.line)  # read backwards: in file order

    def _cgm_stream(self, by_key: dict[str, _CgmStream], serial: str) -> _CgmStream:
        """The stream of a serial cell as written, made (and its device registered) on first sight."""
        key = serial.strip()
        stream = by_key.get(key)
        if stream is None:
            unit = self.layout.units["cgm_glucose"]
            glucose = _GlucoseColumn(unit, cgm_limits_mgdl(key), annotate_numbers=True)
            stream = by_key[key] = _CgmStream(self.device(key), glucose)
        return stream

    def _plain_cgm_rows(self, by_key: dict[str, _CgmStream]) -> Iterator[None] | None:
        """What :meth:`_cgm_rows` does, for a plain member (:mod:`.plain_columns`), column by column.

        The rows are cut into columns with NumPy, and each distinct date, time, value and serial
        is read once, by the same code and with the same outcome (readings, rejected rows, errors,
        devices in the same order) as row by row; the streams then take a chunk of rows at a time.
        ``None`` when the member is not plain, or a timestamp is not a date, a space and a time:
        then it is read row by row.
        """
        columns = self.layout.columns
        data = self.source.text.encode()
        offset = 0
        for _ in range(_FIRST_ROW_LINE - 1):  # past the metadata line and the header
            offset = data.find(b"\n", offset) + 1
            if not offset:
                return None
        rows = plain_rows(data[offset:], self.layout.delimiter, self.layout.width)
        if rows is None:
            return None
        count = len(rows)
        self.backwards = count > 1 and self._backwards(rows.line(0), rows.line(count - 1), count)
        order = np.arange(count - 1, -1, -1) if self.backwards else np.arange(count)
        starts, ends = (rows.starts[::-1], rows.ends[::-1]) if self.backwards else (rows.starts, rows.ends)
        at_stamp = columns["timestamp"]
        stamp_starts, stamp_ends = starts[:, at_stamp], ends[:, at_stamp]
        space = first_space(rows, stamp_starts, stamp_ends)
        leading = rows.data[np.minimum(stamp_starts, rows.data.size - 1)]
        digits = (leading >= ord("0")) & (leading <= ord("9"))
        if space is None or not digits.all():
            return None  # a blank stamp, or an unusual one (ISO with a T, a date alone): row by row
        return self._plain_blocks(by_key, rows, (starts, ends, space), order + _FIRST_ROW_LINE)

    def _plain_blocks(
        self,
        by_key: dict[str, _CgmStream],
        rows: PlainRows,
        cells: tuple[Offsets, Offsets, Offsets],
        lines: npt.NDArray[np.intp],
    ) -> Iterator[None]:
        """Read the rows into their streams, pausing after every :data:`_CHUNK_ROWS` readings.

        ``cells``: where each row's cells start and end, and its stamp's first space, in the order
        read. The rows pause where row by row reading pauses. They are read in blocks, the first of
        a chunk's rows and each next one twice as large, so that the first readings go at once and
        the store is not kept waiting while a large rest is read.
        """
        starts, ends, space = cells
        streams: list[_CgmStream] = []  # each once: serials that differ in spaces share a stream
        filled, chunk_end = 0, _CHUNK_ROWS
        begin, size = 0, _CHUNK_ROWS
        while begin < lines.size:
            block = slice(begin, begin + size)
            begin, size = begin + size, size * 2
            stream_of, walls, kept_lines, codes = self._plain_block(
                by_key, streams, rows, (starts[block], ends[block], space[block]), lines[block]
            )
            start, total = 0, walls.size
            while start < total:
                stop = min(start + chunk_end - filled, total)
                for index, stream in enumerate(streams):
                    at: slice | npt.NDArray[np.intp] = slice(start, stop)
                    if len(streams) > 1:
                        at = start + np.flatnonzero(stream_of[start:stop] == index)
                    stream.walls += walls[at].tolist()
                    stream.lines += kept_lines[at].tolist()
                    stream.codes += codes[at].tolist()
                filled, start = filled + stop - start, stop
                if filled == chunk_end:
                    chunk_end += _CHUNK_ROWS
                    yield
        self.result.rejected.sort(key=lambda rejected: rejected.line)  # in file order, as row by row

    def _plain_block(
        self,
        by_key: dict[str, _CgmStream],
        streams: list[_CgmStream],
        rows: PlainRows,
        cells: tuple[Offsets, Offsets, Offsets],
        lines: npt.NDArray[np.intp],
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """The readings of some rows: ``(stream, wall, line, value code)`` of each row kept, in order.

        The rows' serials add their streams to ``streams`` (and ``by_key``) in the order first seen;
        the rows that cannot be read are rejected as row by row.
        """
        starts, ends, space = cells
        columns = self.layout.columns
        at_stamp, at_serial, at_value = (
            columns["timestamp"],
            columns.get("serial", -1),
            columns["cgm_glucose"],
        )
        walls, readable = self._plain_walls(rows, (starts[:, at_stamp], space, ends[:, at_stamp]), lines)
        if at_serial >= 0:
            serials, serial_of, serial_first = distinct_texts(
                rows, starts[:, at_serial], ends[:, at_serial], first=True
            )
        else:
            serials, serial_of, serial_first = [""], np.zeros(lines.size, np.intp), np.zeros(1, np.intp)
        assert serial_first is not None  # noqa: S101 - asked for; narrows the type for mypy
        serial_stream = np.empty(len(serials), np.intp)
        for index in np.argsort(serial_first, kind="stable").tolist():  # in the order first seen
            stream = self._cgm_stream(by_key, serials[index])
            known = next((at for at, seen in enumerate(streams) if seen is stream), None)
            if known is None:
                known = len(streams)
                streams.append(stream)
            serial_stream[index] = known
        stream_of = serial_stream[serial_of]
        values, value_of, _ = distinct_texts(rows, starts[:, at_value], ends[:, at_value])
        reject = self.result.rejected.append
        for row in np.flatnonzero(~readable).tolist():
            reject(RejectedRow(int(lines[row]), _BAD_TIMESTAMP))
        # Each (stream, value text) of a readable row, read once by the stream's glucose column.
        readable_rows = np.flatnonzero(readable)
        pairs, pair_of = small_distinct(stream_of[readable_rows] * len(values) + value_of[readable_rows])
        pair_codes = np.empty(pairs.size, np.intp)
        problems: dict[int, str] = {}
        for index, pair in enumerate(pairs.tolist()):
            glucose = streams[pair // len(values)].glucose
            value = values[pair % len(values)]
            code = glucose.codes.get(value)
            if code is None:
                try:
                    code = glucose.code(value, "CGM")
                except _RowError as exc:
                    code, problems[index] = -1, str(exc)
            pair_codes[index] = code
        codes = pair_codes[pair_of]
        for at in np.flatnonzero(codes < 0).tolist():
            reject(RejectedRow(int(lines[readable_rows[at]]), problems[int(pair_of[at])]))
        kept = readable_rows[codes >= 0]
        return stream_of[kept], walls[kept], lines[kept], codes[codes >= 0]

    def _plain_walls(
        self, rows: PlainRows, stamps: tuple[Offsets, Offsets, Offsets], lines: npt.NDArray[np.intp]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """The wall time of each row (milliseconds) and whether it is readable, from its stamp cell.

        ``stamps``: where each cell starts, its first space, and where it ends. Each distinct date
        is read in the order the rows first hold it, so a date that cannot be read raises the
        error row by row reading would raise first (:meth:`_Stamps.day`).
        """
        starts, space, ends = stamps
        dates, date_of, date_first = distinct_texts(rows, starts, space, first=True)
        assert date_first is not None  # noqa: S101 - asked for; narrows the type for mypy
        days = np.zeros(len(dates), np.int64)
        day_known = np.zeros(len(dates), np.bool_)
        for index in np.argsort(date_first, kind="stable").tolist():
            day = self.stamps.day(dates[index], int(lines[date_first[index]]))
            if day is not None:
                days[index], day_known[index] = day, True
        times, time_of, _ = distinct_texts(rows, space + 1, ends)
        deltas = np.zeros(len(times), np.int64)
        time_known = np.zeros(len(times), np.bool_)
        for index, text in enumerate(times):
            delta = self.stamps.time(text.strip())
            if delta is not None:
                deltas[index], time_known[index] = delta, True
        return days[date_of] + deltas[time_of], day_known[date_of] & time_known[time_of]

    def _cgm_cells(self) -> Iterator[tuple[int, list[str]]]:
        """``(line, cells)`` of the CGM rows, oldest first where the file allows (:meth:`_backwards`).

        Read from its end, a file written newest first hands its readings over oldest first: the
        order in which the store appends them to the end of its index of record identities, which
        takes about two thirds of the time of inserting each before the previous one (SQLite,
        ``benchmarks/store_once.py`` with the times reversed). A malformed row is rejected.
        """
        lines = list(self._lines())
        whole = len(lines) > 1 and _whole_lines(self.source.text)
        self.backwards = whole and self._backwards(lines[0], lines[-1], len(lines))
        if not self.backwards:
            yield from self._cells_forwards(lines)
            return
        delimiter = self.layout.delimiter
        for stop in range(len(lines), 0, -_CHUNK_ROWS):
            start = max(stop - _CHUNK_ROWS, 0)
            chunk = lines[start:stop]
            rows: list[list[str] | None]
            try:
                rows = list(csv.reader(chunk, delimiter=delimiter, strict=True))
            except csv.Error:  # a malformed row among them; each line is one row
                rows = [_one_row(line, delimiter) for line in chunk]
            del lines[start:]  # read: their memory goes
            first = start + _FIRST_ROW_LINE
            for at in range(len(rows) - 1, -1, -1):
                cells = rows[at]
                if cells is None:
                    self.result.rejected.append(RejectedRow(first + at, _MALFORMED_ROW))
                    continue
                yield first + at, cells

    def _backwards(self, first: str, last: str, count: int) -> bool:
        """True when ``count`` rows, one per line, from ``first`` to ``last``, are best read from the end.

        So they are when the first row is later than the last (Glooko writes newest first, but a
        file may have been re-sorted); a row whose time cannot be read counts as later.
        """
        at = self.layout.columns["timestamp"]
        walls = []
        for line, text in ((_FIRST_ROW_LINE, first), (count + _FIRST_ROW_LINE - 1, last)):
            cells = _one_row(text, self.layout.delimiter)
            walls.append(self.stamps.wall(cells[at], line) if cells and len(cells) > at else None)
        first_wall, last_wall = walls
        return first_wall is None or last_wall is None or first_wall > last_wall

    def _cells_forwards(self, lines: list[str]) -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(lines, delimiter=self.layout.delimiter, strict=True)
        while True:  # one pass of the for loop per malformed row (the reader goes on after it)
            try:
                for cells in reader:
                    yield reader.line_num + 2, cells
            except csv.Error as exc:
                _refuse_if_cut_off(self.source.name, reader.line_num + 2, exc)
                self.result.rejected.append(RejectedRow(reader.line_num + 2, _MALFORMED_ROW))
                continue
            return

    def _cgm_ahead(self, stream: _CgmStream, unit: str) -> Iterator[ParsedItem]:
        """The stream's readings read since the last chunk that are on days without a change."""
        start, stop = stream.ahead_to, len(stream.walls)
        if start == stop:
            return
        stream.ahead_to = stop
        walls = np.array(stream.walls[start:stop], np.int64)
        offsets, uniform = day_offsets(self.ctx.tz, walls)
        at = np.flatnonzero(uniform)
        if not at.size:
            return
        resolved = (walls[at] - offsets[at] * 60_000, offsets[at])
        at += start
        stream.ahead.append((at, *resolved))
        yield from _cgm_items(stream, unit, at, resolved)

    def _cgm_resolved(
        self, key: str, stream: _CgmStream, *, fresh: bool = False
    ) -> tuple[npt.NDArray[np.intp], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """Every reading of a stream in device order (its positions as read), resolved.

        Rows written newest first are reversed (:func:`reads_newest_first`); ``fresh``: a new clock.
        """
        walls = np.array(stream.walls, np.int64)
        at = np.arange(walls.size)  # the rows as read
        if self.backwards:
            at = at[::-1]  # in file order: the device order must not depend on how the file was read
        if reads_newest_first(walls[at]):
            at = at[::-1]
        name = f"glooko|cgm|{key.strip()}"
        clock = self.ctx.fresh_clock(name) if fresh else self.ctx.clock(name)
        return at, clock.resolve_many(walls[at])

    def _cgm_settled(self, key: str, stream: _CgmStream, unit: str) -> list[ParsedItem] | None:
        """The stream's readings not handed over yet; ``None``: those handed over came out otherwise."""
        if not stream.walls:
            return []
        order, (instants, offsets) = self._cgm_resolved(key, stream)
        by_row = np.empty(order.size, np.intp)
        by_row[order] = np.arange(order.size)  # where each row is in device order
        left = np.ones(order.size, np.bool_)
        for at, ahead_instants, ahead_offsets in stream.ahead:
            where = by_row[at]
            same = np.array_equal(instants[where], ahead_instants)
            if not (same and np.array_equal(offsets[where], ahead_offsets)):
                return None
            left[where] = False
        return list(_cgm_items(stream, unit, order[left], (instants[left], offsets[left])))

    def events(self) -> Iterator[ParsedItem]:
        """Records of a member other than CGM, stream by stream in device order."""
        layout = self.layout
        i_stamp = layout.columns["timestamp"]
        i_serial = layout.columns.get("serial", -1) if layout.kind in _WITH_SERIAL else -1
        reject = self.result.rejected.append
        streams: dict[str | None, list[tuple[int, int, list[str]]]] = {}
        for line, row in self.rows():
            stamp = row[i_stamp]
            wall = self.stamps.wall(stamp, line)
            if wall is None:
                reject(RejectedRow(line, "row without a timestamp" if not stamp.strip() else _BAD_TIMESTAMP))
                continue
            serial = row[i_serial].strip() if i_serial >= 0 else None
            streams.setdefault(serial, []).append((wall, line, row))
        glucose_field = {"bg": "glucose"}.get(layout.kind)
        for serial, rows in streams.items():
            device = self.device(serial)
            glucose = None
            if glucose_field is not None:
                glucose = _GlucoseColumn(
                    layout.units[glucose_field], METER_LIMITS_MGDL, annotate_numbers=False
                )
            walls = np.array([wall for wall, _, _ in rows], np.int64)
            if reads_newest_first(walls):
                rows.reverse()
                walls = walls[::-1].copy()
            clock = self.ctx.clock(f"glooko|{layout.kind}|{serial or ''}")
            instants, offsets = clock.resolve_many(walls)
            events = _Events(layout, device, glucose)
            for (_, line, row), time_ms, offset in zip(
                rows, instants.tolist(), offsets.tolist(), strict=True
            ):
                try:
                    records = events.read(row, line, time_ms, offset)
                except _RowError as exc:
                    reject(RejectedRow(line, str(exc)))
                    continue
                yield from records


class GlookoImporter:
    """Reads the member CSVs of a Glooko export (one member per file)."""

    format: ClassVar[str] = "glooko"
    label: ClassVar[str] = "Glooko export (CSV files of its zip)"
    checks_truncation: ClassVar[bool] = True
    """Glooko ends every file without a line break: a refused last row is no sign of truncation (a
    file cut inside a quoted decimal is refused by the importer)."""

    def detect(self, head: list[str]) -> bool:
        """True when line 1 is Glooko's metadata line (``Name:...,Date Range:...``)."""
        return bool(head) and _is_metadata(head[0])

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Parse one member; :class:`MalformedFileError` for a missing or unknown header.

        Members whose kind is not stored (daily insulin totals, other medication) give no records
        and a note saying why.
        """
        layout = _layout(source.name, source.head(2))
        result = ParseResult(records=iter(()), notes=list(layout.notes))
        reason = _NOT_STORED.get(layout.kind)
        if reason is not None:
            result.notes.append(reason)
            return result
        reader = _FileReader(source, ctx, result, layout)
        result.records = reader.cgm() if layout.kind == "cgm" else reader.events()
        return result
