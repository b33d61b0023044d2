"""Glucoshare's generic CSV (``glucoshare_csv``): a documented, versioned layout for any source.

The way to bring data from a device or tool Glucoshare does not read (yet): an Eversense reading
list typed in by hand (no Eversense export layout is known, research/formats.md §7), a research
dataset, a hospital system. The full specification, with the downloadable template
(:func:`template_bytes`), is ``docs/formats/generic-csv.md``; this module follows it exactly.

**Recognition.** Line 1 is the version line ``# glucoshare-csv 1`` (no other format starts so;
padding by a spreadsheet, ``# glucoshare-csv 1,,,``, and a surrounding quote are accepted). Any
version is recognised, so that a file written for a later version is refused with a clear message
rather than as an unknown format. Further lines starting with ``#`` before the header row are
comments; blank lines are skipped.

**Header.** The first other line names the columns, in any order, case-insensitively: ``time`` and
``type`` are required; ``timezone``, ``subtype``, ``value``, ``unit``, ``annotation``,
``duration_min``, ``text``, ``device_manufacturer``, ``device_model`` and ``device_serial`` are
optional; a column whose name starts with ``x_`` is ignored (and named in the upload's warnings);
any other name, a repeated name or a missing required column refuses the file. The delimiter is
the one (``,``, ``;`` or tab) that makes the header name ``time`` and ``type``. Numbers take ``.``
or ``,`` as the decimal separator in every variant (no thousands separators, no exponents).

**Time.** ``time`` is ISO 8601 ``YYYY-MM-DDThh:mm[:ss[.ffffff]]`` (a space for ``T`` is accepted):

* with a numeric offset (``+01:00``, ``+0100``, ``+01``): the instant, and the offset is the local
  offset that is stored; a ``timezone`` on the row must agree with it at that instant;
* with ``Z`` (or ``-00:00``, RFC 3339 §4.3: UTC known, local offset not): the instant, and the
  local offset is the row's time zone's at that instant;
* without an offset: a local wall time in the row's time zone, resolved through a
  :class:`~glucoshare.ingest.localtime.LocalClock` per (device, type, time zone) stream fed in
  file order (research/formats.md §0 rule 3; docs/time.md).

The row's time zone is its ``timezone`` cell (an IANA name) or, when that is empty, the import's.
Offsets run from -12:00 to +14:00; milliseconds are kept, finer fractions are cut to them.

**Mapping.** Every row is one record of the canonical vocabulary (:mod:`glucoshare.records.vocabulary`)
named by ``type`` and ``subtype`` (both case-insensitive; an empty subtype takes the type's
default); ``value`` in ``unit`` becomes the canonical unit; ``text`` on a ``note`` is its text, on
a ``deviceEvent`` the event's text (payload and identity), and on any other row an extra ``note``
at the same time. Version 1 does not carry ``wizard``, ``pumpSettings`` or ``cgmSettings`` records
(their payloads do not fit one row).

==================  ===============================  ===============  ==================  =========
type                subtypes (default first)         units            value range         duration
==================  ===============================  ===============  ==================  =========
``cbg``             sensor, scan                     mg/dL, mmol/L    10–1000 mg/dL       no
``smbg``            meter, manual, calibration       mg/dL, mmol/L    10–1000 mg/dL       no
``bloodKetone``     (none)                           mmol/L           0–20                no
``basal``           scheduled, temp, suspend,        U/h              0–35 (suspend: 0)   optional
                    automated
``bolus``           normal, extended, dual,          U                0–100               extended,
                    automated                                                             dual
``food``            (none)                           g                0–1000              no
``insulin``         unknown, rapid, long             U                above 0, ≤ 100      no
``deviceEvent``     (required) alarm, prime, ...     U (prime only)   0–100               no
``note``            (none)                           (none)           (none; text 1–2000  no
                                                                      characters)
``physicalActivity`` unknown, light, medium, heavy   (none)           (none)              optional
==================  ===============================  ===============  ==================  =========

Glucose in mmol/L is multiplied by :data:`~glucoshare.records.vocabulary.MGDL_PER_MMOLL`; the
written number and unit stay in ``orig_value``/``orig_unit`` (ketones likewise, in mmol/L).
``annotation`` ``low``/``high`` (glucose only) marks a reading shown as LO/HI, the value being the
device's limit. ``duration_min`` is minutes, above 0 and at most 1440.

**Devices.** ``device_manufacturer`` + ``device_model`` (+ ``device_serial``) name each row's
device, so one file may hold several; a row without them belongs to the patient's "Glucoshare
Generic CSV" device. A device is registered with its first stored record.

**Rows and errors.** A row that cannot be read is rejected with its line and a reason that names
the column and the rule, never the cell's content; the other rows are kept (the import service
refuses a file with too many). A broken file as a whole (version line, header, a quote never
closed) raises :class:`~glucoshare.ingest.errors.MalformedFileError` naming the file and line.
Plain ``cbg`` rows (no annotation, duration or text) come as :class:`ReadingBlock` runs.

**Shared rules.** The native upload API (:mod:`glucoshare.datasets.records`) takes records as JSON
objects with these columns' names and applies the same rules through the same functions:
:func:`read_time` and :func:`place_time` (the time), :func:`zone_offsets` (a ``timezone``),
:func:`record_kind` (type, subtype, unit, annotation), :func:`records_of` (value, duration, text:
the records of a row), :func:`clock_notes` (the daylight-saving warnings); a broken rule raises
:class:`RowError`, whose message starts with the column's name.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import math
import operator
import re
import zoneinfo
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any, ClassVar, Final, Literal

import numpy as np

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
from glucoshare.ingest.localtime import LocalClock
from glucoshare.records.vocabulary import DEVICE_EVENT_SUBTYPES, MGDL_PER_MMOLL

FORMAT_NAME: Final = "glucoshare-csv"
VERSION: Final = 1
"""The version of the layout this module reads (and the simulator writes)."""
TEMPLATE_NAME: Final = "generic-csv-template.csv"

REQUIRED_COLUMNS: Final = ("time", "type")
COLUMNS: Final = (
    "time",
    "timezone",
    "type",
    "subtype",
    "value",
    "unit",
    "annotation",
    "duration_min",
    "text",
    "device_manufacturer",
    "device_model",
    "device_serial",
)
"""Every column of version 1, in the template's order."""
IGNORED_PREFIX: Final = "x_"

DEFAULT_DEVICE: Final = ("Glucoshare", "Generic CSV")
"""Manufacturer and model of the device of rows that name none (one per patient, no serial)."""

GLUCOSE_RANGE_MGDL: Final = (10.0, 1000.0)
"""Glucose values accepted, mg/dL: below 10 no meter or laboratory reports a number; above 1000 a
value is far more likely a unit mix-up (mmol/L written as mg/dL gives values below 10 in turn)."""
MAX_DURATION_MIN: Final = 1440.0
MAX_TEXT: Final = 2000
MAX_DEVICE_NAME: Final = 100
MAX_OFFSET_MIN: Final = 14 * 60
MIN_OFFSET_MIN: Final = -12 * 60

LOCAL_TIME: Final = -(1 << 40)
"""Offset marker of :func:`read_time` for a time without offset (a local wall time)."""
UTC_TIME: Final = -(1 << 41)
"""Offset marker of :func:`read_time` for a time in UTC (``Z``): the local offset comes from the
row's time zone."""
_DAY_MS: Final = 86_400_000
_SLOT_MS: Final = 900_000  # zone offsets change only at quarter hours (UTC)
_RUN_ROWS: Final = 4096
_CACHE_LIMIT: Final = 200_000
_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()

_SIGNATURE = re.compile(r'^\ufeff?\s*"?\s*#\s*glucoshare-csv\b', re.IGNORECASE)
_VERSION_LINE = re.compile(
    r'^\ufeff?\s*"?\s*#\s*glucoshare-csv(?:\s+([^\s",;]*))?\s*"?[\s,;]*$', re.IGNORECASE
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)")

_SEPARATORS = ("T", " ")
_BAD_TIME = "time: not ISO 8601 like 2026-11-20T07:30:00+01:00 or 2026-11-20T07:30"


class RowError(ValueError):
    """A row (or record) that breaks a rule of version 1.

    The message starts with the column it concerns (``value: ...``, ``time: ...``: the names of
    :data:`COLUMNS`, or ``device``) and names the rule, never the content.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class TypeRule:
    """What version 1 accepts for one record type."""

    subtypes: tuple[str, ...]
    """The subtypes; the first is the default of an empty cell, unless ``subtype_required``."""
    units: dict[str, float]
    """Accepted units and the factor to the canonical unit."""
    low: float
    high: float
    """Value range in the canonical unit (inclusive)."""
    value: Literal["required", "optional", "none"]
    """Whether a row of the type has a value."""
    durations: frozenset[str] = frozenset()
    """Subtypes that may have a ``duration_min``."""
    subtype_required: bool = False
    above_zero: bool = False
    glucose: bool = False
    value_subtypes: frozenset[str] | None = None
    """Subtypes that may have a value (``None``: all)."""


_GLUCOSE_UNITS = {"mg/dL": 1.0, "mmol/L": MGDL_PER_MMOLL}
_BASAL = ("scheduled", "temp", "suspend", "automated")
_EVENTS = tuple(sorted(DEVICE_EVENT_SUBTYPES))
RULES: Final[dict[str, TypeRule]] = {
    "cbg": TypeRule(("sensor", "scan"), _GLUCOSE_UNITS, *GLUCOSE_RANGE_MGDL, "required", glucose=True),
    "smbg": TypeRule(
        ("meter", "manual", "calibration"), _GLUCOSE_UNITS, *GLUCOSE_RANGE_MGDL, "required", glucose=True
    ),
    "bloodKetone": TypeRule(("",), {"mmol/L": 1.0}, 0.0, 20.0, "required"),
    "basal": TypeRule(_BASAL, {"U/h": 1.0}, 0.0, 35.0, "required", durations=frozenset(_BASAL)),
    "bolus": TypeRule(
        ("normal", "extended", "dual", "automated"),
        {"U": 1.0},
        0.0,
        100.0,
        "required",
        durations=frozenset({"extended", "dual"}),
    ),
    "food": TypeRule(("",), {"g": 1.0}, 0.0, 1000.0, "required"),
    "insulin": TypeRule(("unknown", "rapid", "long"), {"U": 1.0}, 0.0, 100.0, "required", above_zero=True),
    "deviceEvent": TypeRule(
        _EVENTS,
        {"U": 1.0},
        0.0,
        100.0,
        "optional",
        subtype_required=True,
        value_subtypes=frozenset({"prime"}),
    ),
    "note": TypeRule(("",), {}, 0.0, 0.0, "none"),
    "physicalActivity": TypeRule(
        ("unknown", "light", "medium", "heavy"),
        {},
        0.0,
        0.0,
        "none",
        durations=frozenset({"unknown", "light", "medium", "heavy"}),
    ),
}
"""The record types of version 1 and their rules (docs/formats/generic-csv.md)."""

NOT_IN_VERSION_1: Final = frozenset({"wizard", "pumpSettings", "cgmSettings"})
_TYPES = {name.lower(): name for name in RULES}
_EXCLUDED = {name.lower(): name for name in NOT_IN_VERSION_1}
_UNITS = {unit.lower(): unit for rule in RULES.values() for unit in rule.units}
_TYPE_LIST = ", ".join(RULES)


def template_bytes() -> bytes:
    """The downloadable template: a tiny valid file with one row of each record type, commented."""
    return resources.files("glucoshare.ingest").joinpath("data", TEMPLATE_NAME).read_bytes()


def version_line(version: int = VERSION) -> str:
    """Line 1 of a file of ``version``."""
    return f"# {FORMAT_NAME} {version}"


def _fmt(number: float) -> str:
    return f"{number:g}"


def _range_text(rule: TypeRule, type_name: str) -> str:
    unit = next(iter(rule.units))
    if rule.glucose:
        low, high = rule.low / MGDL_PER_MMOLL, rule.high / MGDL_PER_MMOLL
        return f"{_fmt(rule.low)}–{_fmt(rule.high)} mg/dL ({low:.1f}–{high:.1f} mmol/L)"
    span = (
        f"above 0 and at most {_fmt(rule.high)} {unit}"
        if rule.above_zero
        else f"{_fmt(rule.low)}–{_fmt(rule.high)} {unit}"
    )
    return f"{span} for a prime" if type_name == "deviceEvent" else span


def _local_wall(date: str) -> int | None:
    """Wall milliseconds of the midnight of ``YYYY-MM-DD`` (None when it is not a calendar date)."""
    match = _DATE.fullmatch(date)
    if match is None:
        return None
    try:
        day = dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    return (day.toordinal() - _EPOCH_ORDINAL) * _DAY_MS


def _clock(text: str) -> tuple[int, int]:
    """``(milliseconds into the day, offset)`` of ``hh:mm[:ss[.f]][offset]``; ``RowError`` if bad.

    The offset is minutes east of UTC, :data:`UTC_TIME` for ``Z``/``-00:00`` and :data:`LOCAL_TIME` for
    none.
    """
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise RowError(_BAD_TIME)
    hour, minute = int(match.group(1)), int(match.group(2))
    second = int(match.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:  # noqa: PLR2004
        msg = "time: not a real time of day"
        raise RowError(msg)
    fraction = (match.group(4) or "").ljust(3, "0")[:3]
    ms = ((hour * 60 + minute) * 60 + second) * 1000 + int(fraction)
    zone = match.group(5)
    if zone is None:
        return ms, LOCAL_TIME
    if zone in ("Z", "z") or zone in ("-00:00", "-0000", "-00"):
        return ms, UTC_TIME
    digits = zone[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
    if int(digits[2:4] or 0) > 59:  # noqa: PLR2004
        raise RowError(_BAD_TIME)
    offset = -minutes if zone[0] == "-" else minutes
    if not MIN_OFFSET_MIN <= offset <= MAX_OFFSET_MIN:
        msg = "time: UTC offset out of range (-12:00 to +14:00)"
        raise RowError(msg)
    return ms, offset


def _number(text: str) -> float | None:
    """A number written with ``.`` or ``,`` as decimal separator; None when it is not one."""
    cleaned = text.strip()
    if _NUMBER.fullmatch(cleaned) is None:
        return None
    return float(cleaned.replace(",", "."))


def read_time(text: str) -> tuple[int, int]:
    """Read a ``time`` of version 1 (module notes): ``(milliseconds, offset)``.

    ``YYYY-MM-DDThh:mm[:ss[.fff]]`` (``T``, ``t`` or a space between date and time; surrounding
    white space ignored) with a numeric offset gives the *wall* milliseconds since the naive epoch
    and the offset in minutes east of UTC (-12:00 to +14:00; the instant is ``wall - offset ×
    60000``); with ``Z``/``-00:00`` the UTC milliseconds and :data:`UTC_TIME`; without an offset
    the wall milliseconds and :data:`LOCAL_TIME`. Fractions finer than milliseconds are cut.
    :class:`RowError` (``time: ...``) when the text is none of these. :func:`place_time` turns
    the result into an instant and its local offset.
    """
    stamp = text.strip()
    if not stamp:
        msg = "time: empty"
        raise RowError(msg)
    separator = stamp[10:11]
    if separator not in ("T", " ", "t"):
        raise RowError(_BAD_TIME)
    date = stamp[:10]
    midnight = _local_wall(date)
    if midnight is None:
        msg = "time: not a real calendar date" if _DATE.fullmatch(date) else _BAD_TIME
        raise RowError(msg)
    into_day, offset = _clock(stamp[11:])
    return midnight + into_day, offset


class ZoneOffsets:
    """UTC offsets (minutes) of one time zone at instants, cached per quarter hour."""

    __slots__ = ("cache", "tz")

    def __init__(self, tz: zoneinfo.ZoneInfo) -> None:
        self.tz = tz
        self.cache: dict[int, int] = {}

    def at(self, time_ms: int) -> int:
        """The offset in force at ``time_ms``."""
        slot = time_ms // _SLOT_MS
        offset = self.cache.get(slot)
        if offset is None:
            try:
                moment = dt.datetime.fromtimestamp(slot * (_SLOT_MS // 1000), tz=self.tz)
            except (OverflowError, OSError, ValueError):
                msg = "time: outside the years a time zone can place"
                raise RowError(msg) from None
            delta = moment.utcoffset()
            offset = 0 if delta is None else int(delta.total_seconds() // 60)
            self.cache[slot] = offset
        return offset


def zone_offsets(name: str) -> ZoneOffsets:
    """The offsets of the IANA time zone ``name`` (a ``timezone`` cell); :class:`RowError` if unknown."""
    try:
        return ZoneOffsets(zoneinfo.ZoneInfo(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        msg = "timezone: unknown; give an IANA name such as Europe/Berlin"
        raise RowError(msg) from None


def place_time(
    wall: int, offset: int, zone: ZoneOffsets, clock: LocalClock, *, explicit_zone: bool
) -> tuple[int, int]:
    """``(UTC milliseconds, local offset in minutes)`` of a :func:`read_time` result (module notes).

    A local wall time goes through ``clock`` (the :class:`LocalClock` of its stream in ``zone``,
    fed in the stream's order: repeated and skipped hours as in docs/time.md); a UTC time takes
    ``zone``'s offset at that instant (RFC 3339 §4.3); a time with an offset is exact, and when
    the zone was named for this row or record (``explicit_zone``) the offset must be the zone's
    at that instant, or :class:`RowError`.
    """
    if offset == LOCAL_TIME:
        return clock.resolve_ms(wall)
    if offset == UTC_TIME:
        return wall, zone.at(wall)
    time_ms = wall - offset * 60_000
    if explicit_zone and zone.at(time_ms) != offset:
        msg = "time: the UTC offset is not the time zone's offset at that time"
        raise RowError(msg)
    return time_ms, offset


def clock_notes(zone_name: str, clock: LocalClock) -> list[str]:
    """The warnings about local times a clock placed in a skipped or repeated hour of ``zone_name``."""
    notes = []
    if clock.skipped_hour:
        notes.append(
            f"{clock.skipped_hour} records fall in the hour skipped by a daylight-saving change "
            f"in {zone_name}; they were read with the offset in force before the change"
        )
    if clock.ambiguous:
        notes.append(
            f"{clock.ambiguous} records fall in the hour repeated by a daylight-saving change in "
            f"{zone_name}; their order placed them in the first or second pass of that hour"
        )
    return notes


@dataclasses.dataclass(frozen=True, slots=True)
class RecordKind:
    """What a record's ``type``, ``subtype``, ``unit`` and ``annotation`` mean (:func:`record_kind`)."""

    type: str
    subtype: str
    rule: TypeRule
    unit: str | None
    """The canonical spelling of the written unit (``None``: none written)."""
    factor: float
    """From the written unit to the type's canonical unit (1 when none is written)."""
    annotation: str | None


def record_kind(type_text: str, subtype_text: str, unit_text: str, annotation_text: str) -> RecordKind:
    """Check a record's type, subtype, unit and annotation against :data:`RULES`.

    Names are case-insensitive and surrounding white space is ignored; an empty subtype is the
    type's default. :class:`RowError` (``type: ...``, ``subtype: ...``, ``unit: ...``,
    ``annotation: ...``, checked in this order) when one breaks a rule of version 1.
    """
    type_text, unit_text, annotation = type_text.strip(), unit_text.strip(), annotation_text.strip()
    if not type_text:
        msg = "type: empty"
        raise RowError(msg)
    type_name = _TYPES.get(type_text.lower())
    if type_name is None:
        excluded = _EXCLUDED.get(type_text.lower())
        if excluded is not None:
            msg = f"type: {excluded} records are not part of version {VERSION} of this format"
        else:
            msg = f"type: unknown; version {VERSION} reads {_TYPE_LIST}"
        raise RowError(msg)
    rule = RULES[type_name]
    subtype = _subtype(rule, type_name, subtype_text.strip())
    unit: str | None = None
    if unit_text:
        unit = _UNITS.get(unit_text.lower())
        if unit not in rule.units:
            msg = (
                f"unit: must be {' or '.join(rule.units)} for {type_name}"
                if rule.units
                else f"unit: {type_name} records have no value and no unit"
            )
            raise RowError(msg)
    if annotation:
        if annotation.lower() not in ("low", "high"):
            msg = "annotation: must be low or high (or empty)"
            raise RowError(msg)
        if not rule.glucose:
            msg = "annotation: low or high is only for glucose (cbg, smbg)"
            raise RowError(msg)
    factor = rule.units.get(unit, 1.0) if unit is not None else 1.0
    return RecordKind(type_name, subtype, rule, unit, factor, annotation.lower() or None)


def records_of(
    kind: RecordKind,
    value: str | float | None,
    duration_min: str | float | None,
    text: str,
    *,
    instant: tuple[int, int],
    line: int,
    device: str,
) -> list[ParsedRecord]:
    """The record(s) of one row or record of ``kind``: its value, duration and text checked.

    ``value`` and ``duration_min`` are written numbers (text with ``.`` or ``,``, or a float;
    empty or ``None``: none); ``text`` is stripped; ``instant`` is ``(UTC ms, offset)``; ``line``
    and ``device`` (its key) go into every record. Glucose in mmol/L becomes mg/dL
    (:data:`~glucoshare.records.vocabulary.MGDL_PER_MMOLL`) with the written number and unit kept
    in ``orig_value``/``orig_unit`` (ketones likewise); a note's and a device event's text is its
    payload ``{"text": ...}`` and identity; text on any other type adds a ``note`` at the same
    instant. :class:`RowError` (``value: ...``, ``unit: ...``, ``duration_min: ...``,
    ``text: ...``) when a rule of version 1 is broken.
    """
    rule = kind.rule
    type_name, subtype = kind.type, kind.subtype
    number: float | None = None
    if value is not None and value != "":
        mode = rule.value
        if rule.value_subtypes is not None and subtype not in rule.value_subtypes:
            mode = "none"
        if mode == "none":
            msg = f"value: {type_name} records have no value" + (
                "" if rule.value_subtypes is None else " (only a prime has one, in U)"
            )
            raise RowError(msg)
        number = _written_number(value)
        if number is None:
            msg = "value: not a number"
            raise RowError(msg)
        if kind.unit is None:
            msg = f"unit: empty; a {type_name} value needs its unit ({' or '.join(rule.units)})"
            raise RowError(msg)
        canonical = number * kind.factor
        if not rule.low <= canonical <= rule.high or (rule.above_zero and canonical <= 0):
            msg = f"value: out of range for {type_name} ({_range_text(rule, type_name)})"
            raise RowError(msg)
        if type_name == "basal" and subtype == "suspend" and canonical != 0:
            msg = "value: a suspended basal has the rate 0 U/h"
            raise RowError(msg)
    elif rule.value == "required":
        msg = f"value: empty; {type_name} records need one"
        raise RowError(msg)
    elif kind.unit is not None:
        msg = "unit: given without a value"
        raise RowError(msg)
    duration = _duration(duration_min, rule, subtype)
    text = text.strip()
    if len(text) > MAX_TEXT:
        msg = f"text: longer than {MAX_TEXT} characters"
        raise RowError(msg)
    time_ms, offset = instant
    if type_name == "note":
        if not text:
            msg = "text: empty; a note needs its text"
            raise RowError(msg)
        return [
            ParsedRecord("note", "", time_ms, offset, line, device, payload={"text": text}, identity=text)
        ]
    payload: dict[str, Any] | None = None
    identity = ""
    if type_name == "deviceEvent" and text:
        payload, identity = {"text": text}, text
    canonical_value = None if number is None else number * kind.factor
    original, original_unit = None, None
    if number is not None and (rule.glucose or type_name == "bloodKetone"):
        original, original_unit = number, kind.unit
    records = [
        ParsedRecord(
            type_name,
            subtype,
            time_ms,
            offset,
            line,
            device,
            canonical_value,
            original,
            original_unit,
            duration,
            kind.annotation,
            payload,
            identity,
        )
    ]
    if text and type_name != "deviceEvent":
        records.append(
            ParsedRecord("note", "", time_ms, offset, line, device, payload={"text": text}, identity=text)
        )
    return records


@dataclasses.dataclass(slots=True)
class _Kind:
    """What the descriptive cells of a row (type, subtype, unit, zone, annotation, device) mean.

    Built and checked once per distinct combination; ``error`` is the reason every row of the
    combination is rejected with.
    """

    error: str | None
    record: RecordKind | None = None
    type: str = ""
    subtype: str = ""
    unit: str | None = None
    factor: float = 1.0
    offsets: ZoneOffsets | None = None
    explicit_zone: bool = False
    clock: LocalClock | None = None
    device: str = ""
    device_info: DeviceInfo | None = None
    stream: str = ""
    low: float = 0.0
    high: float = 0.0
    block: bool = False
    registered: bool = False


@dataclasses.dataclass(slots=True)
class _Run:
    """Plain sensor readings of one kind waiting to become a :class:`ReadingBlock`."""

    kind: _Kind
    times: list[int] = dataclasses.field(default_factory=list)
    offsets: list[int] = dataclasses.field(default_factory=list)
    values: list[float] = dataclasses.field(default_factory=list)
    lines: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class _Header:
    """Where each column is."""

    line: int
    delimiter: str
    width: int
    columns: dict[str, int]
    ignored: tuple[str, ...]


def _parse_version(first: str, name: str) -> int:
    match = _VERSION_LINE.match(first)
    token = "" if match is None else match.group(1) or ""
    if not (token.isascii() and token.isdigit()):  # "\u00b2".isdigit() is true, but int() refuses it
        msg = f"{name}: line 1: the version line must end with a version number, as in '{version_line()}'"
        raise MalformedFileError(msg)
    version = int(token)
    if version > VERSION:
        msg = (
            f"{name}: line 1: this file was written for version {version} of the Glucoshare generic CSV; "
            f"this Glucoshare reads version {VERSION} (a newer Glucoshare reads it)"
        )
        raise MalformedFileError(msg)
    if version < 1:
        msg = f"{name}: line 1: there is no version {version}; this Glucoshare reads version {VERSION}"
        raise MalformedFileError(msg)
    return version


def _is_preamble(text: str) -> bool:
    """A comment line (``#``, perhaps quoted by a spreadsheet) or a line of nothing but delimiters."""
    stripped = text.strip()
    return not stripped.strip(",;\t") or stripped.lstrip('"').lstrip().startswith("#")


def _read_header(text: str, line: int, name: str) -> _Header:
    """The column map of the header row; ``MalformedFileError`` naming what is wrong."""
    best: tuple[str, list[str]] | None = None
    for delimiter in (",", ";", "\t"):
        try:
            cells = next(csv.reader([text], delimiter=delimiter), [])
        except csv.Error:
            msg = f"{name}: line {line}: the header row cannot be read (a quote or line break out of place)"
            raise MalformedFileError(msg) from None
        names = [cell.strip().lower() for cell in cells]
        if all(required in names for required in REQUIRED_COLUMNS) and (
            best is None or len(cells) > len(best[1])
        ):
            best = (delimiter, cells)
    if best is None:
        msg = (
            f"{name}: line {line}: the header row must name the columns "
            f"{' and '.join(REQUIRED_COLUMNS)} (separated by ',', ';' or a tab)"
        )
        raise MalformedFileError(msg)
    delimiter, cells = best
    names = [cell.strip().lower() for cell in cells]
    last_named = max(at for at, column in enumerate(names) if column)
    columns: dict[str, int] = {}
    ignored: list[str] = []
    for at, column in enumerate(names[: last_named + 1]):
        if not column:
            msg = f"{name}: line {line}: column {at + 1} of the header has no name"
            raise MalformedFileError(msg)
        if column.startswith(IGNORED_PREFIX):
            ignored.append(cells[at].strip())
            continue
        if column not in COLUMNS:
            msg = (
                f"{name}: line {line}: unknown column {shown(cells[at].strip())}; version {VERSION} has the "
                f"columns {', '.join(COLUMNS)} (start a column's name with {IGNORED_PREFIX} to have it "
                "ignored)"
            )
            raise MalformedFileError(msg)
        if column in columns:
            msg = f"{name}: line {line}: the column {shown(column)} appears twice"
            raise MalformedFileError(msg)
        columns[column] = at
    return _Header(line, delimiter, last_named + 1, columns, tuple(ignored))


class GlucoshareCsvImporter:
    """Reads Glucoshare's generic CSV (module notes; docs/formats/generic-csv.md)."""

    format: ClassVar[str] = "glucoshare_csv"
    label: ClassVar[str] = "Glucoshare generic CSV (any device; documented, versioned)"

    def detect(self, head: list[str]) -> bool:
        """Line 1 is the version line ``# glucoshare-csv <version>``."""
        return bool(head) and _SIGNATURE.match(head[0]) is not None

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Check the version line and header (refusing a broken file), then read rows lazily."""
        lines = source.lines()
        _parse_version(next(lines, "").rstrip("\r\n"), source.name)
        number = 1
        header: _Header | None = None
        for raw in lines:
            number += 1
            if _is_preamble(raw):
                continue
            header = _read_header(raw.rstrip("\r\n"), number, source.name)
            break
        if header is None:
            msg = f"{source.name}: line {number}: no header row follows the version line and comments"
            raise MalformedFileError(msg)
        result = ParseResult(records=iter(()))
        if header.ignored:
            result.notes.append(
                f"the columns {', '.join(header.ignored)} are not stored "
                f"(columns whose name starts with {IGNORED_PREFIX} are ignored)"
            )
        result.records = _Reader(source, ctx, header, result).records(lines)
        return result


class _Reader:
    """One file's rows after the header: the kinds seen, the clocks, the pending reading runs."""

    def __init__(self, source: SourceText, ctx: ParseContext, header: _Header, result: ParseResult) -> None:
        self.name = source.name
        self.ctx = ctx
        self.header = header
        self.result = result
        columns = header.columns
        self.kind_columns = [
            columns.get(column, -1)
            for column in (
                "type",
                "subtype",
                "unit",
                "timezone",
                "annotation",
                "device_manufacturer",
                "device_model",
                "device_serial",
            )
        ]
        present = [at for at in self.kind_columns if at >= 0]
        self.kind_cells: Callable[[list[str]], tuple[str, ...]]
        if len(present) == 1:  # only the type column: itemgetter would give a string, not a tuple
            only = present[0]
            self.kind_cells = lambda row: (row[only],)
        else:
            self.kind_cells = operator.itemgetter(*present)
        self.kind_slots = [present.index(at) if at >= 0 else -1 for at in self.kind_columns]
        self.kinds: dict[tuple[str, ...], _Kind] = {}
        self.zones: dict[str, ZoneOffsets] = {}
        self.import_zone = ZoneOffsets(ctx.tz)
        self.own_clocks: dict[str, tuple[str, LocalClock]] = {}
        self.days: dict[str, int] = {}  # "YYYY-MM-DD" -> wall ms of its midnight
        self.seconds: dict[str, int] = {}  # "hh:mm:ss" -> ms into the day
        self.tails: dict[str, tuple[int, int]] = {}  # fraction and offset -> (ms, offset)

    # --- kinds -------------------------------------------------------------------------------------

    def kind(self, cells: tuple[str, ...]) -> _Kind:
        """The meaning of a combination of descriptive cells (cached)."""
        kind = self.kinds.get(cells)
        if kind is None:
            values = [cells[slot].strip() if slot >= 0 else "" for slot in self.kind_slots]
            try:
                kind = self._build(values)
            except RowError as exc:
                kind = _Kind(error=str(exc))
            self.kinds[cells] = kind
        return kind

    def _zone(self, name: str) -> ZoneOffsets:
        """The offsets of a row's time zone (cached); :class:`RowError` when it is unknown."""
        zone = self.zones.get(name)
        if zone is None:
            zone = self.zones[name] = zone_offsets(name)
        return zone

    def _build(self, values: list[str]) -> _Kind:
        """Check the descriptive cells (type, subtype, unit, zone, annotation, device) of a kind."""
        type_text, subtype_text, unit_text, zone_name, annotation, manufacturer, model, serial = values
        record = record_kind(type_text, subtype_text, unit_text, annotation)
        type_name = record.type
        offsets = self._zone(zone_name) if zone_name else self.import_zone
        device, info = _device(manufacturer, model, serial)
        stream = f"{device}|{type_name}"
        if zone_name and zone_name != self.ctx.timezone:
            key = f"{stream}|{zone_name}"
            if key not in self.own_clocks:
                self.own_clocks[key] = (zone_name, LocalClock(offsets.tz))
            clock = self.own_clocks[key][1]
            stream = key
        else:
            clock = self.ctx.clock(stream)
        return _Kind(
            error=None,
            record=record,
            type=type_name,
            subtype=record.subtype,
            unit=record.unit,
            factor=record.factor,
            offsets=offsets,
            explicit_zone=bool(zone_name),
            clock=clock,
            device=device,
            device_info=info,
            stream=stream,
            low=record.rule.low,
            high=record.rule.high,
            block=type_name == "cbg" and record.annotation is None and record.unit is not None,
        )

    # --- rows --------------------------------------------------------------------------------------

    def stamp(self, text: str) -> tuple[int, int]:
        """``(wall or UTC milliseconds, offset)`` of a ``time`` cell (module notes).

        A time of the full form ``YYYY-MM-DDThh:mm:ss...`` fills the caches of its three parts
        (date, time of day, fraction and offset) that the hot loop looks up.
        """
        wall, offset = read_time(text)
        if text[10:11] in _SEPARATORS and text[13:14] == ":" and text[16:17] == ":" and text == text.strip():
            date = text[:10]
            midnight = _local_wall(date)
            assert midnight is not None  # noqa: S101 - read_time read this date
            whole = (int(text[11:13]) * 60 + int(text[14:16])) * 60_000 + int(text[17:19]) * 1000
            for cache in (self.days, self.seconds, self.tails):
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
            self.days[date] = midnight
            self.seconds[text[11:19]] = whole
            self.tails[text[19:]] = (wall - midnight - whole, offset)
        return wall, offset

    def fit(self, row: list[str], line: int) -> list[str] | None:
        """A row of the header's width (short rows padded); None for an empty or too-wide row."""
        width = self.header.width
        if len(row) < width:
            if not any(cell.strip() for cell in row):
                return None
            return row + [""] * (width - len(row))
        if any(cell.strip() for cell in row[width:]):
            self.result.rejected.append(
                RejectedRow(line, "the row has more cells than the header has columns")
            )
            return None
        return row[:width]

    def register(self, kind: _Kind) -> None:
        """Make a kind's device known before its first record is handed out."""
        assert kind.device_info is not None  # noqa: S101 - a kind without error has its device
        self.result.devices.setdefault(kind.device, kind.device_info)
        kind.registered = True

    def records(self, lines: Iterator[str]) -> Iterator[ParsedItem]:
        """Every record of the rows after the header (the hot loop: plain readings take the short path)."""
        header = self.header
        columns = header.columns
        reader = csv.reader(lines, delimiter=header.delimiter, strict=True)
        reject = self.result.rejected.append
        i_time = columns["time"]
        i_value = columns.get("value", -1)
        i_duration = columns.get("duration_min", -1)
        i_text = columns.get("text", -1)
        width = header.width
        kind_cells, kinds, kind_of = self.kind_cells, self.kinds, self.kind
        days, seconds, tails = self.days, self.seconds, self.tails
        numbers: dict[str, float | None] = {}
        runs: dict[str, _Run] = {}
        base = header.line
        previous = 0
        while True:  # a row the csv module cannot read is rejected, and reading goes on after it
            try:
                for read in reader:
                    line = base + previous + 1
                    previous = reader.line_num
                    row = read if len(read) == width else self.fit(read, line)
                    if row is None:
                        continue
                    text = row[i_time]
                    if not text and not any(cell.strip() for cell in row):
                        continue
                    cells = kind_cells(row)
                    kind = kinds.get(cells)
                    if kind is None:
                        kind = kind_of(cells)
                    if kind.error is not None:
                        reject(RejectedRow(line, kind.error))
                        continue
                    midnight = days.get(text[:10])
                    whole = seconds.get(text[11:19])
                    tail = tails.get(text[19:])
                    if (
                        midnight is None
                        or whole is None
                        or tail is None
                        or text[10:11] not in _SEPARATORS
                        or text[13:14] != ":"
                        or text[16:17] != ":"
                    ):
                        try:
                            wall, offset = self.stamp(text)
                        except RowError as exc:
                            reject(RejectedRow(line, str(exc)))
                            continue
                    else:
                        wall, offset = midnight + whole + tail[0], tail[1]
                    written = row[i_value] if i_value >= 0 else ""
                    if (
                        kind.block
                        and written
                        and not (i_duration >= 0 and row[i_duration])
                        and not (i_text >= 0 and row[i_text])
                    ):
                        number = numbers.get(written, _MISSING)
                        if number is _MISSING:
                            number = _number(written)
                            if len(numbers) > _CACHE_LIMIT:
                                numbers.clear()
                            numbers[written] = number
                        if number is not None and kind.low <= number * kind.factor <= kind.high:
                            if offset == LOCAL_TIME:
                                time_ms = wall  # resolved with the run, in file order
                            elif offset != UTC_TIME and not kind.explicit_zone:
                                time_ms = wall - offset * 60_000
                            else:
                                try:
                                    time_ms, offset = self.instant(kind, wall, offset, resolve=False)
                                except RowError as exc:
                                    reject(RejectedRow(line, str(exc)))
                                    continue
                            if not kind.registered:
                                self.register(kind)
                            run = runs.get(kind.stream)
                            if run is None or run.kind is not kind:
                                if run is not None:
                                    yield self.block(run)
                                run = runs[kind.stream] = _Run(kind)
                            run.times.append(time_ms)
                            run.offsets.append(offset)
                            run.values.append(number)
                            run.lines.append(line)
                            if len(run.times) >= _RUN_ROWS:
                                yield self.block(runs.pop(kind.stream))
                            continue
                    pending = runs.pop(kind.stream, None)
                    if pending is not None:  # this row's instant depends on the readings before it
                        yield self.block(pending)
                    try:
                        time_ms, offset = self.instant(kind, wall, offset, resolve=True)
                        records = self.row_records(kind, row, line, (time_ms, offset))
                    except RowError as exc:
                        reject(RejectedRow(line, str(exc)))
                        continue
                    if not kind.registered:
                        self.register(kind)
                    yield from records
            except csv.Error as exc:
                line = base + previous + 1
                previous = reader.line_num
                if "unexpected end of data" in str(exc):
                    msg = f"{self.name}: line {line}: a quoted cell is never closed (truncated file?)"
                    raise MalformedFileError(msg) from None
                if "field larger than field limit" in str(exc):
                    msg = (
                        f"{self.name}: line {line}: a cell is longer than {csv.field_size_limit()} characters"
                    )
                    raise MalformedFileError(msg) from None
                reason = (
                    "a quoted cell has text after its closing quote"
                    if "expected after" in str(exc)
                    else "a line break inside an unquoted cell"
                    if "new-line character" in str(exc)
                    else "the row cannot be read as CSV"
                )
                reject(RejectedRow(line, reason))
                continue
            break
        for run in runs.values():
            yield self.block(run)
        self.report_own_clocks()

    def instant(self, kind: _Kind, wall: int, offset: int, *, resolve: bool) -> tuple[int, int]:
        """``(UTC ms, offset)`` of a row's time; a local time stays a wall time unless ``resolve``."""
        if offset == LOCAL_TIME and not resolve:
            return wall, LOCAL_TIME
        assert kind.offsets is not None  # noqa: S101 - a kind without error has its zone and clock
        assert kind.clock is not None  # noqa: S101
        return place_time(wall, offset, kind.offsets, kind.clock, explicit_zone=kind.explicit_zone)

    def block(self, run: _Run) -> ReadingBlock:
        """A run of plain readings as one block; its local times resolved in file order."""
        kind = run.kind
        times = np.array(run.times, np.int64)
        offsets = np.array(run.offsets, np.int64)
        local = offsets == LOCAL_TIME
        if local.any():
            assert kind.clock is not None  # noqa: S101
            instants, zone_offsets = kind.clock.resolve_many(times[local])
            times[local] = instants
            offsets[local] = zone_offsets
        written = np.array(run.values, np.float64)
        assert kind.unit is not None  # noqa: S101 - a block kind has its unit
        return ReadingBlock(
            kind.type,
            kind.subtype,
            kind.device,
            kind.unit,
            times,
            offsets,
            written * kind.factor,
            written,
            np.array(run.lines, np.int64),
        )

    def row_records(
        self, kind: _Kind, row: list[str], line: int, instant: tuple[int, int]
    ) -> list[ParsedRecord]:
        """The record(s) of one row that is not a plain reading; ``RowError`` when it is unreadable."""
        columns = self.header.columns
        assert kind.record is not None  # noqa: S101 - a kind without error has its record kind

        def cell(column: str) -> str:
            at = columns.get(column, -1)
            return row[at].strip() if at >= 0 else ""

        return records_of(
            kind.record,
            cell("value"),
            cell("duration_min"),
            cell("text"),
            instant=instant,
            line=line,
            device=kind.device,
        )

    def report_own_clocks(self) -> None:
        """Warn about local times in a skipped or repeated hour of a row's own time zone.

        The import's own time zone is counted by the import service (:class:`ParseContext`).
        """
        for zone_name, clock in self.own_clocks.values():
            self.result.notes.extend(clock_notes(zone_name, clock))


_MISSING: Final[Any] = object()


def _subtype(rule: TypeRule, type_name: str, text: str) -> str:
    """The canonical subtype of a ``subtype`` cell (case-insensitive; empty: the default)."""
    if not text:
        if rule.subtype_required:
            msg = f"subtype: empty; {type_name} needs one of {', '.join(rule.subtypes)}"
            raise RowError(msg)
        return rule.subtypes[0]
    for subtype in rule.subtypes:
        if subtype.lower() == text.lower() and subtype:
            return subtype
    if rule.subtypes == ("",):
        msg = f"subtype: {type_name} records have no subtype"
    else:
        msg = f"subtype: must be one of {', '.join(rule.subtypes)} for {type_name}"
    raise RowError(msg)


def _device(manufacturer: str, model: str, serial: str) -> tuple[str, DeviceInfo]:
    """The key and description of a row's device (the file's default device when none is named)."""
    if not (manufacturer or model or serial):
        return "", DeviceInfo(manufacturer=DEFAULT_DEVICE[0], model=DEFAULT_DEVICE[1], serial=None)
    if not manufacturer or not model:
        msg = "device: a device needs device_manufacturer and device_model"
        raise RowError(msg)
    if max(len(manufacturer), len(model), len(serial)) > MAX_DEVICE_NAME:
        msg = f"device: names and serial are at most {MAX_DEVICE_NAME} characters"
        raise RowError(msg)
    key = f"{manufacturer}\x1f{model}\x1f{serial}"
    return key, DeviceInfo(manufacturer=manufacturer, model=model, serial=serial or None)


def _written_number(written: str | float) -> float | None:
    """A written number: text with ``.`` or ``,`` as decimal separator, or a float (not NaN)."""
    if isinstance(written, str):
        return _number(written)
    return None if math.isnan(written) else float(written)


def _duration(written: str | float | None, rule: TypeRule, subtype: str) -> int | None:
    """``duration_min`` in milliseconds (None when empty)."""
    if written is None or written == "":
        return None
    if subtype not in rule.durations:
        msg = "duration_min: only basal, extended and dual boluses and physicalActivity have a duration"
        raise RowError(msg)
    minutes = _written_number(written)
    if minutes is None:
        msg = "duration_min: not a number"
        raise RowError(msg)
    if not 0 < minutes <= MAX_DURATION_MIN:
        msg = f"duration_min: must be above 0 and at most {MAX_DURATION_MIN:g} minutes (24 hours)"
        raise RowError(msg)
    return round(minutes * 60_000)
