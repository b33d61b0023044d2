"""The records of the native upload API: JSON in, canonical records out, and back.

Apps and the ``glucoshare upload`` command send ``POST /v1/datasets/{id}/records`` with the body
``{"records": [record, ...]}``, at most :data:`MAX_RECORDS` records a request. A data set belongs
to one device, named when it is opened, so records name no device. A record is a JSON object with
the columns of the generic CSV, version 1 (``docs/formats/generic-csv.md``), under the same names
and the same rules (the functions of :mod:`glucoshare.ingest.glucoshare_csv` check both), plus
what an importer knows beyond those columns:

================  ============  ===============================================================
field             JSON type     meaning
================  ============  ===============================================================
``type``          string        required: ``cbg``, ``smbg``, ``bloodKetone``, ``basal``, ``bolus``,
                                ``food``, ``insulin``, ``deviceEvent``, ``note``,
                                ``physicalActivity`` (case-insensitive)
``subtype``       string        the type's subtype; absent: its default
``time``          string        required: ISO 8601 with an offset (``+01:00``, exact), ``Z`` (the
                                zone's offset at that instant is stored) or without an offset (a
                                local wall time in the record's ``timezone`` or, without one, the
                                data set's)
``timezone``      string        IANA time zone of the record; a time with an offset must agree
``value``         number        in ``unit``; a string, ``true`` or ``false`` is refused
``unit``          string        the unit of ``value``; with a value and only with one
``annotation``    string        ``low`` or ``high``: a glucose device showed LO or HI
``duration_min``  number        minutes, above 0 and at most 1440
``text``          string        a note's or device event's text; on any other type an extra note
``id``            string        the record's identity beside type, instant and value, so that two
                                records alike in those stay two (two alarms, two snacks of one
                                minute) and a record sent again is one; at most
                                :data:`MAX_ID` characters. Absent: a note's or device event's
                                text, else empty (sensor readings, ``cbg``, are told apart by
                                instant and subtype alone; their ``id`` is not kept). The ``id``
                                is the record's, not the extra note's a ``text`` adds
``payload``       object        the record's further fields, stored as its payload: at most
                                :data:`MAX_PAYLOAD_CHARS` characters as compact JSON,
                                :data:`MAX_PAYLOAD_DEPTH` levels deep, finite numbers, whole
                                numbers within ±2^53; on a note or device event ``payload.text``
                                is the ``text`` field's (it may only be ``null``)
``orig_value``    number        what the device wrote, where it is not ``value`` in ``unit`` (an
                                importer's rounding, a LO whose limit is ``value``); ``null``:
                                no number. Either of the two given, ``null`` included, replaces
                                what is kept by default (glucose and ketones: ``value`` and
                                ``unit``; other types: nothing)
``orig_unit``     string        the unit of ``orig_value``, 1 to 10 characters, kept as written;
                                required with ``orig_value``
================  ============  ===============================================================

``null`` is the same as leaving a field out, except for ``orig_value`` and ``orig_unit``. Any
other field, or a record that is not an object, is refused; every string must be free of NUL
characters and unpaired surrogates (neither can be stored).

**Validation.** :func:`validate_records` checks every record of the ``records`` array and raises
one :class:`~glucoshare.datasets.errors.RecordsInvalidError` listing the problems (the first
:data:`MAX_ERRORS`) with RFC 6901 pointers into the body (``/records/3/value``); an array of more
than :data:`MAX_RECORDS` records raises :class:`~glucoshare.datasets.errors.TooManyRecordsError`
first. A record stops being checked at the first rule of version 1 it breaks, after every problem
of its JSON shape (unknown fields, JSON types) is listed. Local wall times are placed as the
generic CSV places them, per record type and time zone in the order of the array (the repeated
hour of a daylight-saving change by order, the skipped hour with the offset before the change);
each request starts its clocks afresh, so write offsets where requests may split such an hour.

**Writing.** :func:`record_json` turns a canonical record back into this form (the command-line
uploader reads device files locally with the importers and sends their records), so that
``validate_records`` gives the same record back, line and device aside. Types outside version 1
(``wizard``, ``pumpSettings``, ``cgmSettings``) cannot be sent. A record that breaks a rule of
version 1 (a food without carbohydrate, a temporary basal known only as a percentage) is written
all the same and refused by the check, which the uploader can run locally first.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import math
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from glucoshare.datasets.errors import RecordError, RecordsInvalidError, TooManyRecordsError
from glucoshare.ingest.base import ParsedRecord, ReadingBlock
from glucoshare.ingest.glucoshare_csv import (
    LOCAL_TIME,
    MAX_TEXT,
    RULES,
    UTC_TIME,
    RecordKind,
    RowError,
    ZoneOffsets,
    clock_notes,
    place_time,
    read_time,
    record_kind,
    records_of,
    zone_offsets,
)
from glucoshare.ingest.localtime import LocalClock

MAX_RECORDS: Final = 1000
"""Records one request may carry."""
MAX_ERRORS: Final = 100
"""Problems one :class:`RecordsInvalidError` lists; it counts the rest."""
MAX_ID: Final = MAX_TEXT
"""Characters of an ``id``: room for an importer's identity of a note (its category and text)."""
MAX_PAYLOAD_CHARS: Final = 4096
"""Characters of a ``payload`` written as compact JSON (an importer's payloads stay below 200)."""
MAX_PAYLOAD_DEPTH: Final = 8
"""Levels of objects and arrays in a ``payload``, the payload itself the first."""
MAX_ORIG_UNIT: Final = 10
"""Characters of ``orig_unit`` (the width of the stored column)."""
MAX_PAYLOAD_INT: Final = 2**53
"""Whole numbers in a payload stay within ±2^53, the integers every JSON reader keeps exactly."""

FIELDS: Final = (
    "type",
    "subtype",
    "time",
    "timezone",
    "value",
    "unit",
    "annotation",
    "duration_min",
    "text",
    "id",
    "payload",
    "orig_value",
    "orig_unit",
)
"""The fields of a record, in the order :func:`record_json` writes them."""

_STRINGS = frozenset({"type", "subtype", "time", "timezone", "unit", "annotation", "text", "id", "orig_unit"})
_NUMBERS = frozenset({"value", "duration_min", "orig_value"})
_TEXTS = ("text", "id", "orig_unit")  # kept as sent: no NUL, no unpaired surrogate
_TEXTUAL_TYPES = frozenset({"note", "deviceEvent"})
_FIELD_LIST = ", ".join(FIELDS)
_UNPAIRED = re.compile("[\ud800-\udfff]")
_EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - naive on purpose: wall-clock arithmetic


def json_pointer(*parts: str | int) -> str:
    """The RFC 6901 JSON pointer of a path (``~`` and ``/`` in a key escaped as ``~0``, ``~1``)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


class _Invalid(Exception):  # noqa: N818 - internal signal, never leaves this module
    """A record's problems (a record stops being checked at its first rule broken)."""

    def __init__(self, errors: list[RecordError]) -> None:
        super().__init__(len(errors))
        self.errors = errors


def _clean(text: str) -> bool:
    """No NUL character and no unpaired surrogate (neither can be stored)."""
    return "\x00" not in text and (text.isascii() or _UNPAIRED.search(text) is None)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float(value: float) -> float:
    """A JSON number as a float (a whole number beyond the float range becomes ±infinity)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _scalar_problem(value: object) -> str | None:
    """Why a payload value that is neither object nor array cannot be stored (``None``: it can)."""
    if isinstance(value, str):
        return None if _clean(value) else "payload: a string holds a NUL character or an unpaired surrogate"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return (
            None
            if -MAX_PAYLOAD_INT <= value <= MAX_PAYLOAD_INT
            else "payload: whole numbers must be within ±2^53"
        )
    if isinstance(value, float):
        return None if math.isfinite(value) else "payload: numbers must be finite"
    return "payload: only JSON values (objects, arrays, strings, numbers, true, false, null)"


def _payload_problem(payload: Mapping[str, Any], at: str) -> RecordError | None:
    """The first rule a payload object breaks (module notes), with its pointer; ``None`` if none."""
    stack: list[tuple[object, str, int]] = [(payload, at, 1)]
    while stack:
        value, where, depth = stack.pop()
        if not isinstance(value, dict | list):
            problem = _scalar_problem(value)
            if problem is not None:
                return RecordError(where, problem)
            continue
        if depth > MAX_PAYLOAD_DEPTH:
            return RecordError(where, f"payload: nested deeper than {MAX_PAYLOAD_DEPTH} levels")
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in pairs:
            if isinstance(value, dict) and not isinstance(key, str):
                return RecordError(where, "payload: keys must be strings")
            if isinstance(key, str) and not _clean(key):
                return RecordError(where, "payload: a key holds a NUL character or an unpaired surrogate")
            stack.append((item, where + json_pointer(key), depth + 1))
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    if size > MAX_PAYLOAD_CHARS:
        return RecordError(at, f"payload: longer than {MAX_PAYLOAD_CHARS} characters as compact JSON")
    return None


def _shape(record: Mapping[str, Any], at: str) -> list[RecordError]:
    """The problems of a record's JSON shape: unknown fields, JSON types, lengths, characters."""
    errors: list[RecordError] = []

    def fail(field: str, message: str) -> None:
        errors.append(RecordError(f"{at}{json_pointer(field)}", f"{field}: {message}"))

    for field in record:
        if field not in FIELDS:
            fail(field, f"unknown field; a record has the fields {_FIELD_LIST}")
    errors.extend(
        RecordError(at, f"{field}: required") for field in ("type", "time") if record.get(field) is None
    )
    for field, value in record.items():
        if value is None:
            continue
        if field in _STRINGS and not isinstance(value, str):
            fail(field, "must be a string")
        elif field in _NUMBERS and not _is_number(value):
            fail(field, "must be a JSON number" + (" (not a string)" if isinstance(value, str) else ""))
        elif field == "payload" and not isinstance(value, dict):
            fail(field, "must be a JSON object")
    if errors:
        return errors
    for field in _TEXTS:
        value = record.get(field)
        if value is not None and not _clean(value):
            fail(field, "holds a NUL character or an unpaired surrogate")
    identity = record.get("id")
    if identity is not None and len(identity) > MAX_ID:
        fail("id", f"longer than {MAX_ID} characters")
    unit = record.get("orig_unit")
    if unit is not None and not 0 < len(unit) <= MAX_ORIG_UNIT:
        fail("orig_unit", f"must have 1 to {MAX_ORIG_UNIT} characters")
    original = record.get("orig_value")
    if original is not None:
        if not math.isfinite(_float(original)):
            fail("orig_value", "not a finite number")
        elif unit is None:
            errors.append(
                RecordError(
                    f"{at}/orig_unit" if "orig_unit" in record else at, "orig_unit: required with orig_value"
                )
            )
    payload = record.get("payload")
    if payload is not None:
        problem = _payload_problem(payload, f"{at}/payload")
        if problem is not None:
            errors.append(problem)
    return errors


@dataclasses.dataclass(slots=True)
class _Batch:
    """One request's records: the data set's zone, the zones and clocks the records use."""

    device: str
    first_line: int
    zone: ZoneOffsets | None
    bounds: tuple[int, int] | None
    zones: dict[str, ZoneOffsets] = dataclasses.field(default_factory=dict)
    clocks: dict[tuple[str, str], tuple[str, LocalClock]] = dataclasses.field(default_factory=dict)

    def own_zone(self, name: str) -> ZoneOffsets:
        """The offsets of a record's ``timezone`` (cached); :class:`RowError` when it is unknown."""
        zone = self.zones.get(name)
        if zone is None:
            zone = self.zones[name] = zone_offsets(name)
        return zone

    def clock(self, kind: RecordKind, zone: ZoneOffsets) -> LocalClock:
        """The clock of one record type in one zone (the generic CSV's stream of a device and type)."""
        key = (kind.type, zone.tz.key)
        found = self.clocks.get(key)
        if found is None:
            found = self.clocks[key] = (zone.tz.key, LocalClock(zone.tz))
        return found[1]

    def instant(self, kind: RecordKind, time: str, zone_name: str) -> tuple[int, int]:
        """``(UTC ms, offset)`` of a record's ``time``; :class:`RowError` naming the rule broken."""
        own = self.own_zone(zone_name) if zone_name else None
        wall, offset = read_time(time)
        zone = own or self.zone
        if zone is not None:
            instant = place_time(wall, offset, zone, self.clock(kind, zone), explicit_zone=own is not None)
        elif offset == LOCAL_TIME:
            msg = "time: a local time needs a time zone; give the record a timezone or the time its offset"
            raise RowError(msg)
        else:
            instant = (wall, 0) if offset == UTC_TIME else (wall - offset * 60_000, offset)
        if self.bounds is not None and not self.bounds[0] <= instant[0] <= self.bounds[1]:
            msg = (
                "time: in the future"
                if instant[0] > self.bounds[1]
                else "time: earlier than records are accepted (device clock not set?)"
            )
            raise RowError(msg)
        return instant

    def records(self, index: int, record: object) -> list[ParsedRecord]:
        """The canonical record(s) of ``record``; :class:`_Invalid` with its problems."""
        at = json_pointer("records", index)
        if not isinstance(record, dict):
            raise _Invalid([RecordError(at, "a record must be a JSON object")])
        errors = _shape(record, at)
        if errors:
            raise _Invalid(errors)
        try:
            kind = record_kind(
                record["type"],
                record.get("subtype") or "",
                record.get("unit") or "",
                record.get("annotation") or "",
            )
            instant = self.instant(kind, record["time"], (record.get("timezone") or "").strip())
            value, duration = record.get("value"), record.get("duration_min")
            out = records_of(
                kind,
                None if value is None else _float(value),
                None if duration is None else _float(duration),
                record.get("text") or "",
                instant=instant,
                line=self.first_line + index,
                device=self.device,
            )
            _complete(out[0], record)
        except RowError as exc:
            message = str(exc)
            field = message.split(":", 1)[0]
            raise _Invalid([RecordError(f"{at}/{field}" if field in record else at, message)]) from None
        return out

    def notes(self) -> list[str]:
        """Warnings about local times in a skipped or repeated hour, per record type and zone."""
        return [note for zone_name, clock in self.clocks.values() for note in clock_notes(zone_name, clock)]


def _complete(main: ParsedRecord, record: Mapping[str, Any]) -> None:
    """Add ``id``, ``payload`` and ``orig_value``/``orig_unit`` to a record's main canonical record."""
    identity = record.get("id")
    if identity is not None:
        main.identity = identity
    payload = record.get("payload")
    if payload is not None:
        if (
            main.type in _TEXTUAL_TYPES
            and "text" in payload
            and (payload["text"] is not None or main.payload is not None)
        ):
            msg = f"payload: a {main.type}'s text goes in the field text (payload.text may only be null)"
            raise RowError(msg)
        main.payload = copy.deepcopy(payload) | (main.payload or {})
    if "orig_value" in record or "orig_unit" in record:
        original = record.get("orig_value")
        main.orig_value = None if original is None else float(original)
        main.orig_unit = record.get("orig_unit")


def validate_records(
    records: Sequence[object],
    *,
    device: str,
    first_line: int,
    zone: zoneinfo.ZoneInfo | None = None,
    bounds: tuple[int, int] | None = None,
    notes: list[str] | None = None,
) -> list[ParsedRecord]:
    """The canonical records of a request's ``records`` array (module notes), or why not.

    ``device`` is the key every record gets; record ``i`` of the array is line ``first_line + i``
    of the data set (its provenance); a text on a record that is neither a note nor a device
    event adds a note with the same line. ``zone`` is the data set's time zone, for the local
    wall times of records without a ``timezone`` of their own (without it such a time is
    refused, and a ``Z`` time keeps the offset 0). ``bounds``, when given, are the earliest and
    latest UTC milliseconds accepted (inclusive). Warnings about local times in a skipped or
    repeated hour are appended to ``notes``. Pointers start at ``/records``: the array is the
    ``records`` member of the body.

    Raises :class:`~glucoshare.datasets.errors.TooManyRecordsError` for more than
    :data:`MAX_RECORDS` records, and :class:`~glucoshare.datasets.errors.RecordsInvalidError`
    when anything breaks a rule (every record is checked; nothing is returned then).
    """
    if len(records) > MAX_RECORDS:
        msg = (
            f"a request carries at most {MAX_RECORDS:,} records and this one has {len(records):,}; "
            "send them in several requests"
        )
        raise TooManyRecordsError(msg)
    batch = _Batch(device, first_line, None if zone is None else ZoneOffsets(zone), bounds)
    out: list[ParsedRecord] = []
    errors: list[RecordError] = []
    for index, record in enumerate(records):
        try:
            out.extend(batch.records(index, record))
        except _Invalid as exc:
            errors.extend(exc.errors)
    if errors:
        raise RecordsInvalidError(errors[:MAX_ERRORS], max(0, len(errors) - MAX_ERRORS))
    if notes is not None:
        notes.extend(batch.notes())
    return out


# --- writing -------------------------------------------------------------------------------------


def _time_text(time_ms: int, offset: int) -> str:
    """``YYYY-MM-DDThh:mm:ss[.fff]±hh:mm``: the wall time and offset of an instant, exactly."""
    wall = time_ms + offset * 60_000
    moment = _EPOCH + dt.timedelta(milliseconds=wall)
    text = moment.isoformat(timespec="milliseconds" if wall % 1000 else "seconds")
    hours, minutes = divmod(abs(offset), 60)
    return f"{text}{'-' if offset < 0 else '+'}{hours:02d}:{minutes:02d}"


def _minutes(duration_ms: int) -> int | float:
    whole, rest = divmod(duration_ms, 60_000)
    return whole if not rest else duration_ms / 60_000


def record_json(record: ParsedRecord) -> dict[str, Any] | None:
    """The JSON form of a canonical record (module notes); ``None`` for a type outside version 1.

    ``validate_records([record_json(r)], device=r.device, first_line=r.line)`` gives
    ``[r]`` back for every record of version 1's types that keeps its rules. The time is written
    with its offset (exact, so the record needs no time zone); glucose and ketones as their
    original number and unit where that gives the stored value exactly, else in the canonical unit
    with ``orig_value``/``orig_unit``; ``id`` only where the identity is not the default one;
    ``payload`` without the text of a note or device event, which goes in ``text``.
    """
    rule = RULES.get(record.type)
    if rule is None:
        return None
    out: dict[str, Any] = {"type": record.type}
    if record.subtype:
        out["subtype"] = record.subtype
    out["time"] = _time_text(record.time_ms, record.utc_offset_min)
    kept_original = rule.glucose or record.type == "bloodKetone"
    original = (record.orig_value, record.orig_unit)
    if (
        kept_original
        and record.orig_value is not None
        and record.orig_unit in rule.units
        and record.value == record.orig_value * rule.units[record.orig_unit]
    ):
        out["value"], out["unit"] = record.orig_value, record.orig_unit
    elif record.value is not None:
        unit = next(iter(rule.units), None)
        out["value"] = record.value
        if unit is not None:
            out["unit"] = unit
        if original != ((record.value, unit) if kept_original else (None, None)):
            out["orig_value"], out["orig_unit"] = original
    elif original != (None, None):
        out["orig_value"], out["orig_unit"] = original
    if record.annotation is not None:
        out["annotation"] = record.annotation
    if record.duration_ms is not None:
        out["duration_min"] = _minutes(record.duration_ms)
    payload = None if record.payload is None else dict(record.payload)
    text = ""
    if record.type in _TEXTUAL_TYPES and payload is not None:
        written = payload.get("text")
        if isinstance(written, str) and written and written == written.strip():
            text = payload.pop("text")
            out["text"] = text
    if record.identity != text:
        out["id"] = record.identity
    if payload or (payload is not None and not text):
        out["payload"] = payload
    return {field: out[field] for field in FIELDS if field in out}


def block_json(block: ReadingBlock) -> list[dict[str, Any]]:
    """The JSON form of every reading of a block (:func:`record_json`; none outside version 1)."""
    return [written for written in map(record_json, block.records()) if written is not None]


def iter_json(records: Iterable[ParsedRecord | ReadingBlock]) -> Iterator[dict[str, Any]]:
    """The JSON form of what an importer yields (blocks expanded), skipping types outside version 1."""
    for item in records:
        if isinstance(item, ReadingBlock):
            yield from block_json(item)
        else:
            written = record_json(item)
            if written is not None:
                yield written
