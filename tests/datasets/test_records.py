"""Records of the native upload API: every rule with its pointer, times, the CSV's twin, round trips."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import math
import zoneinfo
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.datasets.errors import RecordError, RecordsInvalidError, TooManyRecordsError
from glucoshare.datasets.records import (
    FIELDS,
    MAX_ERRORS,
    MAX_PAYLOAD_INT,
    MAX_RECORDS,
    block_json,
    iter_json,
    json_pointer,
    record_json,
    validate_records,
)
from glucoshare.datasets.schemas import RecordIn, RecordsIn
from glucoshare.errors import InputError
from glucoshare.ingest.archives import ArchiveLimits, expand_archive, is_archive
from glucoshare.ingest.base import ParseContext, ParsedRecord, ReadingBlock, SourceText, each_record
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.glucoshare_csv import RULES, GlucoshareCsvImporter, version_line
from glucoshare.ingest.registry import detect_format
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.glooko import write_glooko
from glucoshare.simulator.writers.libreview import write_libreview
from glucoshare.simulator.writers.mysugr import write_mysugr
from glucoshare.simulator.writers.tidepool import write_tidepool
from tests.ingest.helpers import profile

ZONE = "Europe/Berlin"
BERLIN = zoneinfo.ZoneInfo(ZONE)
DEVICE = "device"


def _utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


def _parse(*records: object, zone: zoneinfo.ZoneInfo | None = BERLIN, **options: Any) -> list[ParsedRecord]:
    return validate_records(list(records), device=DEVICE, first_line=1, zone=zone, **options)


def _errors(*records: object, zone: zoneinfo.ZoneInfo | None = BERLIN, **options: Any) -> list[RecordError]:
    with pytest.raises(RecordsInvalidError) as caught:
        _parse(*records, zone=zone, **options)
    return list(caught.value.errors)


def _resolve(document: object, pointer: str) -> object:
    """The value an RFC 6901 pointer names (``KeyError``/``IndexError``/``TypeError`` if none)."""
    if not pointer:
        return document
    assert pointer.startswith("/")
    for token in pointer[1:].split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(document, list):
            assert key.isdigit()
            document = document[int(key)]
        elif isinstance(document, dict):
            document = document[key]
        else:
            raise TypeError(pointer)
    return document


# --- what a record becomes -------------------------------------------------------------------------


def test_a_sensor_reading_with_its_offset_is_exact() -> None:
    records = validate_records(
        [
            {
                "type": "cbg",
                "subtype": "sensor",
                "time": "2026-01-15T07:00:00+01:00",
                "value": 142,
                "unit": "mg/dL",
            }
        ],
        device="cgm",
        first_line=41,
    )
    assert records == [
        ParsedRecord("cbg", "sensor", _utc("2026-01-15T06:00:00+00:00"), 60, 41, "cgm", 142.0, 142.0, "mg/dL")
    ]


def test_mmol_per_litre_becomes_mg_per_decilitre_and_keeps_what_was_written() -> None:
    (record,) = _parse({"type": "smbg", "time": "2026-01-15T07:10:00+01:00", "value": 7.9, "unit": "mmol/l"})
    assert record.value == 7.9 * MGDL_PER_MMOLL
    assert (record.orig_value, record.orig_unit, record.subtype) == (7.9, "mmol/L", "meter")
    (ketone,) = _parse(
        {"type": "bloodKetone", "time": "2026-01-15T07:10:00+01:00", "value": 0.4, "unit": "mmol/L"}
    )
    assert (ketone.value, ketone.orig_value, ketone.orig_unit) == (0.4, 0.4, "mmol/L")


def test_lines_are_the_records_places_and_a_text_adds_a_note() -> None:
    records = validate_records(
        [
            {"type": "food", "time": "2026-01-15T07:05:00+01:00", "value": 40, "unit": "g", "text": "  apple "},
            {"type": "deviceEvent", "subtype": "alarm", "time": "2026-01-15T07:06:00+01:00", "text": "Low glucose"},
            {"type": "note", "time": "2026-01-15T07:07:00+01:00", "text": "first\nsecond"},
            {"type": "bolus", "subtype": "extended", "time": "2026-01-15T07:08:00+01:00", "value": 3.5, "unit": "U",
             "duration_min": 90.5},
        ],
        device=DEVICE,
        first_line=1001,
    )  # fmt: skip
    got = [(r.line, r.type, r.payload, r.identity, r.duration_ms) for r in records]
    assert got == [
        (1001, "food", None, "", None),
        (1001, "note", {"text": "apple"}, "apple", None),
        (1002, "deviceEvent", {"text": "Low glucose"}, "Low glucose", None),
        (1003, "note", {"text": "first\nsecond"}, "first\nsecond", None),
        (1004, "bolus", None, "", 5_430_000),
    ]


def test_id_payload_and_original_complete_the_record() -> None:
    time = "2026-01-15T07:00:00+01:00"
    records = _parse(
        {"type": "food", "time": time, "value": 20, "unit": "g", "id": "snack-2", "payload": {"name": "Apple"}},
        {"type": "deviceEvent", "subtype": "alarm", "time": time, "text": "Low", "id": "A12",
         "payload": {"code": 12, "more": [1, {"x": None}]}},
        {"type": "cbg", "time": time, "value": 40, "unit": "mg/dL", "annotation": "LOW", "orig_value": 26,
         "orig_unit": "mg/dL"},
        {"type": "cbg", "time": time, "value": 40, "unit": "mg/dL", "annotation": "low", "orig_unit": "mg/dL"},
        {"type": "food", "time": time, "value": 24, "unit": "g", "orig_value": 2, "orig_unit": "BE"},
        {"type": "deviceEvent", "subtype": "other", "time": time, "payload": {"text": None, "code": "E1"}},
        {"type": "note", "time": time, "text": "Pasta", "id": "meal: Pasta", "payload": {"category": "meal"}},
    )  # fmt: skip
    got = [(r.identity, r.payload, r.annotation, r.orig_value, r.orig_unit) for r in records]
    assert got == [
        ("snack-2", {"name": "Apple"}, None, None, None),
        ("A12", {"code": 12, "more": [1, {"x": None}], "text": "Low"}, None, None, None),
        ("", None, "low", 26.0, "mg/dL"),
        ("", None, "low", None, "mg/dL"),
        ("", None, None, 2.0, "BE"),
        ("", {"text": None, "code": "E1"}, None, None, None),
        ("meal: Pasta", {"category": "meal", "text": "Pasta"}, None, None, None),
    ]


def test_the_payload_is_a_copy() -> None:
    payload = {"nested": {"a": [1]}}
    (record,) = _parse(
        {"type": "food", "time": "2026-01-15T07:00Z", "value": 1, "unit": "g", "payload": payload}
    )
    payload["nested"]["a"].append(2)
    assert record.payload == {"nested": {"a": [1]}}


# --- times ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "timezone", "expected_utc", "offset"),
    [
        ("2026-01-15T07:00:00+01:00", None, "2026-01-15T06:00:00+00:00", 60),
        ("2026-01-15T07:00+0530", None, "2026-01-15T01:30:00+00:00", 330),
        ("2026-01-15T06:00:00Z", None, "2026-01-15T06:00:00+00:00", 60),
        ("2026-07-15T06:00:00-00:00", None, "2026-07-15T06:00:00+00:00", 120),
        ("2026-01-15T07:00", None, "2026-01-15T06:00:00+00:00", 60),
        (" 2026-07-15t07:00:05,5 ", None, "2026-07-15T05:00:05.500+00:00", 120),
        ("2026-01-15T07:00", "America/New_York", "2026-01-15T12:00:00+00:00", -300),
        ("2026-01-15T07:00-05:00", "America/New_York", "2026-01-15T12:00:00+00:00", -300),
        ("2026-01-15T12:00Z", "Asia/Kathmandu", "2026-01-15T12:00:00+00:00", 345),
    ],
)
def test_every_time_form_with_the_data_sets_or_the_records_zone(
    time: str, timezone: str | None, expected_utc: str, offset: int
) -> None:
    record = {"type": "food", "time": time, "value": 10, "unit": "g", "timezone": timezone}
    assert [(r.time_ms, r.utc_offset_min) for r in _parse(record)] == [(_utc(expected_utc), offset)]


def test_without_any_zone_offsets_are_exact_z_is_utc_and_a_local_time_is_refused() -> None:
    records = _parse(
        {"type": "food", "time": "2026-01-15T07:00:00+01:00", "value": 1, "unit": "g"},
        {"type": "food", "time": "2026-01-15T07:00:00Z", "value": 2, "unit": "g"},
        {"type": "food", "time": "2026-01-15T07:00", "value": 3, "unit": "g", "timezone": "Asia/Tokyo"},
        zone=None,
    )
    assert [(r.time_ms, r.utc_offset_min) for r in records] == [
        (_utc("2026-01-15T06:00:00+00:00"), 60),
        (_utc("2026-01-15T07:00:00+00:00"), 0),
        (_utc("2026-01-14T22:00:00+00:00"), 540),
    ]
    (error,) = _errors({"type": "food", "time": "2026-01-15T07:00", "value": 1, "unit": "g"}, zone=None)
    assert error == RecordError(
        "/records/0/time",
        "time: a local time needs a time zone; give the record a timezone or the time its offset",
    )


def test_the_repeated_hour_is_placed_by_order_and_reported() -> None:
    """Readings every 20 minutes through New York's fall-back change, as the generic CSV reads them."""
    walls = ["00:40", "01:00", "01:20", "01:40", "01:00", "01:20", "01:40", "02:00"]
    zone = zoneinfo.ZoneInfo("America/New_York")
    notes: list[str] = []
    records = _parse(
        *[{"type": "cbg", "time": f"2025-11-02T{w}", "value": 100, "unit": "mg/dL"} for w in walls],
        zone=zone,
        notes=notes,
    )
    start = _utc("2025-11-02T04:40:00+00:00")
    assert [r.time_ms for r in records] == [start + 20 * 60_000 * step for step in range(8)]
    assert [r.utc_offset_min for r in records] == [-240] * 4 + [-300] * 4
    assert notes == [
        (
            "6 records fall in the hour repeated by a daylight-saving change in America/New_York; "
            "their order placed them in the first or second pass of that hour"
        )
    ]


def test_the_skipped_hour_takes_the_offset_before_the_change_per_type() -> None:
    """Berlin's clocks go from 02:00 to 03:00 on 29 March 2026; each record type has its own clock."""
    notes: list[str] = []
    records = _parse(
        {"type": "cbg", "time": "2026-03-29T01:55", "value": 100, "unit": "mg/dL"},
        {"type": "cbg", "time": "2026-03-29T02:30", "value": 101, "unit": "mg/dL"},
        {"type": "food", "time": "2026-03-29T03:10", "value": 10, "unit": "g"},
        {"type": "cbg", "time": "2026-03-29T03:35", "value": 102, "unit": "mg/dL"},
        notes=notes,
    )
    assert [(r.time_ms, r.utc_offset_min) for r in records] == [
        (_utc("2026-03-29T00:55:00+00:00"), 60),
        (_utc("2026-03-29T01:30:00+00:00"), 60),
        (_utc("2026-03-29T01:10:00+00:00"), 120),
        (_utc("2026-03-29T01:35:00+00:00"), 120),
    ]
    assert notes == [
        (
            "1 records fall in the hour skipped by a daylight-saving change in Europe/Berlin; "
            "they were read with the offset in force before the change"
        )
    ]


def test_bounds_refuse_records_outside_the_accepted_dates() -> None:
    bounds = (_utc("2000-01-01T00:00:00+00:00"), _utc("2026-01-16T00:00:00+00:00"))
    errors = _errors(
        {"type": "food", "time": "2026-01-15T07:00:00Z", "value": 1, "unit": "g"},
        {"type": "food", "time": "2026-01-17T07:00:00Z", "value": 1, "unit": "g"},
        {"type": "food", "time": "1999-12-31T07:00:00Z", "value": 1, "unit": "g"},
        bounds=bounds,
    )
    assert errors == [
        RecordError("/records/1/time", "time: in the future"),
        RecordError("/records/2/time", "time: earlier than records are accepted (device clock not set?)"),
    ]


# --- every rule, with its pointer ------------------------------------------------------------------

_T = "2026-01-15T07:00:00+01:00"
_RULES: list[tuple[str, object, str, str]] = [
    ("not an object", ["cbg"], "/records/0", "a record must be a JSON object"),
    ("unknown field", {"type": "food", "time": _T, "value": 1, "unit": "g", "device_serial": "S1"}, "/records/0/device_serial", "device_serial: unknown field; a record has the fields type, subtype"),
    ("field with a slash", {"type": "food", "time": _T, "value": 1, "unit": "g", "a/b~": 1}, "/records/0/a~1b~0", "a/b~: unknown field"),
    ("no type", {"time": _T, "value": 1, "unit": "g"}, "/records/0", "type: required"),
    ("no time", {"type": "food", "time": None, "value": 1, "unit": "g"}, "/records/0", "time: required"),
    ("type not a string", {"type": 3, "time": _T}, "/records/0/type", "type: must be a string"),
    ("value as a string", {"type": "cbg", "time": _T, "value": "120", "unit": "mg/dL"}, "/records/0/value", "value: must be a JSON number (not a string)"),
    ("value true", {"type": "cbg", "time": _T, "value": True, "unit": "mg/dL"}, "/records/0/value", "value: must be a JSON number"),
    ("duration as a string", {"type": "physicalActivity", "time": _T, "duration_min": "30"}, "/records/0/duration_min", "duration_min: must be a JSON number"),
    ("payload not an object", {"type": "food", "time": _T, "value": 1, "unit": "g", "payload": [1]}, "/records/0/payload", "payload: must be a JSON object"),
    ("id not a string", {"type": "food", "time": _T, "value": 1, "unit": "g", "id": 7}, "/records/0/id", "id: must be a string"),
    ("id too long", {"type": "food", "time": _T, "value": 1, "unit": "g", "id": "q" * 2001}, "/records/0/id", "id: longer than 2000 characters"),
    ("NUL in a text", {"type": "note", "time": _T, "text": "a\x00b"}, "/records/0/text", "text: holds a NUL character or an unpaired surrogate"),
    ("surrogate in an id", {"type": "note", "time": _T, "text": "ab", "id": "x\ud800"}, "/records/0/id", "id: holds a NUL character"),
    ("empty type", {"type": " ", "time": _T, "value": 1, "unit": "g"}, "/records/0/type", "type: empty"),
    ("unknown type", {"type": "meal", "time": _T, "value": 1, "unit": "g"}, "/records/0/type", "type: unknown; version 1 reads cbg, smbg"),
    ("wizard", {"type": "Wizard", "time": _T, "value": 1, "unit": "g"}, "/records/0/type", "type: wizard records are not part of version 1"),
    ("bad subtype", {"type": "cbg", "subtype": "meter", "time": _T, "value": 100, "unit": "mg/dL"}, "/records/0/subtype", "subtype: must be one of sensor, scan for cbg"),
    ("subtype on food", {"type": "food", "subtype": "snack", "time": _T, "value": 10, "unit": "g"}, "/records/0/subtype", "subtype: food records have no subtype"),
    ("event without subtype", {"type": "deviceEvent", "time": _T}, "/records/0", "subtype: empty; deviceEvent needs one of alarm"),
    ("glucose in U", {"type": "cbg", "time": _T, "value": 120, "unit": "U"}, "/records/0/unit", "unit: must be mg/dL or mmol/L for cbg"),
    ("unit on a note", {"type": "note", "time": _T, "unit": "g", "text": "x"}, "/records/0/unit", "unit: note records have no value and no unit"),
    ("bad annotation", {"type": "cbg", "time": _T, "value": 40, "unit": "mg/dL", "annotation": "LO"}, "/records/0/annotation", "annotation: must be low or high"),
    ("annotation on food", {"type": "food", "time": _T, "value": 40, "unit": "g", "annotation": "high"}, "/records/0/annotation", "annotation: low or high is only for glucose"),
    ("unknown zone", {"type": "food", "time": _T, "value": 4, "unit": "g", "timezone": "Berlin/Mitte"}, "/records/0/timezone", "timezone: unknown; give an IANA name such as Europe/Berlin"),
    ("empty time", {"type": "food", "time": "", "value": 4, "unit": "g"}, "/records/0/time", "time: empty"),
    ("day-first time", {"type": "food", "time": "15.01.2026 07:00", "value": 4, "unit": "g"}, "/records/0/time", "time: not ISO 8601"),
    ("no such date", {"type": "food", "time": "2026-02-30T07:00", "value": 4, "unit": "g"}, "/records/0/time", "time: not a real calendar date"),
    ("no such hour", {"type": "food", "time": "2026-02-03T25:00", "value": 4, "unit": "g"}, "/records/0/time", "time: not a real time of day"),
    ("offset out of range", {"type": "food", "time": "2026-02-03T07:00+15:00", "value": 4, "unit": "g"}, "/records/0/time", "time: UTC offset out of range (-12:00 to +14:00)"),
    ("offset not the zone's", {"type": "food", "time": "2026-02-03T07:00+02:00", "value": 4, "unit": "g", "timezone": "Europe/Berlin"}, "/records/0/time", "time: the UTC offset is not the time zone's offset"),
    ("no value", {"type": "insulin", "time": _T, "unit": "U"}, "/records/0", "value: empty; insulin records need one"),
    ("NaN", {"type": "cbg", "time": _T, "value": math.nan, "unit": "mg/dL"}, "/records/0/value", "value: not a number"),
    ("glucose too high", {"type": "cbg", "time": _T, "value": 1200, "unit": "mg/dL"}, "/records/0/value", "value: out of range for cbg (10–1000 mg/dL (0.6–55.5 mmol/L))"),
    ("huge whole number", {"type": "cbg", "time": _T, "value": 10**400, "unit": "mg/dL"}, "/records/0/value", "value: out of range for cbg"),
    ("mmol as mg/dL", {"type": "smbg", "time": _T, "value": 6.5, "unit": "mg/dL"}, "/records/0/value", "value: out of range for smbg"),
    ("zero insulin", {"type": "insulin", "time": _T, "value": 0, "unit": "U"}, "/records/0/value", "value: out of range for insulin (above 0 and at most 100 U)"),
    ("suspend with a rate", {"type": "basal", "subtype": "suspend", "time": _T, "value": 0.5, "unit": "U/h"}, "/records/0/value", "value: a suspended basal has the rate 0 U/h"),
    ("value on a note", {"type": "note", "time": _T, "value": 5, "text": "x"}, "/records/0/value", "value: note records have no value"),
    ("value on an alarm", {"type": "deviceEvent", "subtype": "alarm", "time": _T, "value": 5, "unit": "U"}, "/records/0/value", "value: deviceEvent records have no value (only a prime has one, in U)"),
    ("value without unit", {"type": "food", "time": _T, "value": 5}, "/records/0", "unit: empty; a food value needs its unit (g)"),
    ("unit without value", {"type": "deviceEvent", "subtype": "prime", "time": _T, "unit": "U"}, "/records/0/unit", "unit: given without a value"),
    ("duration on food", {"type": "food", "time": _T, "value": 40, "unit": "g", "duration_min": 5}, "/records/0/duration_min", "duration_min: only basal, extended and dual boluses"),
    ("zero duration", {"type": "basal", "time": _T, "value": 0.4, "unit": "U/h", "duration_min": 0}, "/records/0/duration_min", "duration_min: must be above 0 and at most 1440"),
    ("long duration", {"type": "physicalActivity", "time": _T, "duration_min": 1441}, "/records/0/duration_min", "duration_min: must be above 0 and at most 1440"),
    ("note without text", {"type": "note", "time": _T, "text": "   "}, "/records/0/text", "text: empty; a note needs its text"),
    ("text too long", {"type": "note", "time": _T, "text": "y" * 2001}, "/records/0/text", "text: longer than 2000 characters"),
    ("text in a note's payload", {"type": "note", "time": _T, "text": "x", "payload": {"text": None}}, "/records/0/payload", "payload: a note's text goes in the field text"),
    ("text in an alarm's payload", {"type": "deviceEvent", "subtype": "alarm", "time": _T, "payload": {"text": "x"}}, "/records/0/payload", "payload: a deviceEvent's text goes in the field text"),
    ("payload infinite", {"type": "food", "time": _T, "value": 1, "unit": "g", "payload": {"a": [1, math.inf]}}, "/records/0/payload/a/1", "payload: numbers must be finite"),
    ("payload whole number too large", {"type": "food", "time": _T, "value": 1, "unit": "g", "payload": {"n": MAX_PAYLOAD_INT + 1}}, "/records/0/payload/n", "payload: whole numbers must be within ±2^53"),
    ("payload NUL", {"type": "food", "time": _T, "value": 1, "unit": "g", "payload": {"k": {"s": "a\x00"}}}, "/records/0/payload/k/s", "payload: a string holds a NUL character"),
    ("payload key NUL", {"type": "food", "time": _T, "value": 1, "unit": "g", "payload": {"k\x00": 1}}, "/records/0/payload", "payload: a key holds a NUL character"),
    ("payload too deep", {"type": "food", "time": _T, "value": 1, "unit": "g", "payload": {"a": [[[[[[[[1]]]]]]]]}}, "/records/0/payload/a/0/0/0/0/0/0/0", "payload: nested deeper than 8 levels"),
    ("payload too long", {"type": "food", "time": _T, "value": 1, "unit": "g", "payload": {"a": "z" * 4096}}, "/records/0/payload", "payload: longer than 4096 characters as compact JSON"),
    ("orig_value without unit", {"type": "food", "time": _T, "value": 24, "unit": "g", "orig_value": 2}, "/records/0", "orig_unit: required with orig_value"),
    ("orig_value with a null unit", {"type": "food", "time": _T, "value": 24, "unit": "g", "orig_value": 2, "orig_unit": None}, "/records/0/orig_unit", "orig_unit: required with orig_value"),
    ("orig_value infinite", {"type": "food", "time": _T, "value": 24, "unit": "g", "orig_value": math.inf, "orig_unit": "g"}, "/records/0/orig_value", "orig_value: not a finite number"),
    ("orig_unit too long", {"type": "food", "time": _T, "value": 24, "unit": "g", "orig_unit": "g" * 11}, "/records/0/orig_unit", "orig_unit: must have 1 to 10 characters"),
]  # fmt: skip
_SECRETS = (
    "S1",
    "meal",
    "snack",
    "Berlin/Mitte",
    "15.01.2026",
    "+15:00",
    "LO",
    "1200",
    "yyyy",
    "qqqq",
    "zzzz",
    "6.5",
)


@pytest.mark.parametrize(
    ("record", "pointer", "message"), [case[1:] for case in _RULES], ids=[case[0] for case in _RULES]
)
def test_each_rule_names_its_field_and_the_rule_and_refuses_the_whole_request(
    record: object, pointer: str, message: str
) -> None:
    good = {"type": "food", "time": "2026-01-15T06:00", "value": 20, "unit": "g"}
    with pytest.raises(RecordsInvalidError) as caught:
        validate_records([good, record, good], device=DEVICE, first_line=1, zone=BERLIN)
    (error,) = caught.value.errors
    expected = pointer.replace("/records/0", "/records/1", 1)
    assert error.pointer == expected
    assert error.message.startswith(message)
    assert not any(secret in error.message for secret in _SECRETS)
    _resolve({"records": [good, record, good]}, error.pointer)


def test_every_record_is_checked_and_its_shape_problems_are_all_listed() -> None:
    errors = _errors(
        {"type": "cbg", "time": _T, "value": 1200, "unit": "mg/dL"},
        {"type": "food", "time": _T, "value": 1, "unit": "g"},
        {"type": 1, "value": "1", "colour": "red"},
        "note",
    )
    assert [e.pointer for e in errors] == [
        "/records/0/value",
        "/records/2/colour",
        "/records/2",
        "/records/2/type",
        "/records/2/value",
        "/records/3",
    ]


def test_at_most_a_hundred_problems_are_listed_and_the_rest_counted() -> None:
    with pytest.raises(RecordsInvalidError) as caught:
        validate_records([{"type": "meal", "time": _T}] * 130, device=DEVICE, first_line=1)
    error = caught.value
    assert len(error.errors) == MAX_ERRORS
    assert error.more == 30
    assert error.errors[-1].pointer == f"/records/{MAX_ERRORS - 1}/type"
    assert isinstance(error, InputError)
    assert (error.code, error.http_status) == ("records_invalid", 422)
    document = error.to_dict()["error"]
    assert isinstance(document, dict)
    assert document["more_errors"] == 30
    assert document["errors"][0] == {"pointer": "/records/0/type", "message": error.errors[0].message}
    assert error.message.startswith(
        "nothing was stored: 130 problems in the records; the first: /records/0/type: type:"
    )


def test_a_thousand_records_are_accepted_and_a_thousand_and_one_refused() -> None:
    start = dt.datetime(2026, 1, 1)  # a local wall time in the data set's zone
    batch = [
        {"type": "cbg", "time": (start + dt.timedelta(minutes=5 * i)).isoformat(), "value": 100 + i % 50, "unit": "mg/dL"}
        for i in range(MAX_RECORDS + 1)
    ]  # fmt: skip
    records = validate_records(batch[:MAX_RECORDS], device=DEVICE, first_line=5001, zone=BERLIN)
    assert len(records) == MAX_RECORDS
    assert (records[0].line, records[-1].line) == (5001, 5000 + MAX_RECORDS)
    with pytest.raises(TooManyRecordsError) as caught:
        validate_records(batch, device=DEVICE, first_line=1, zone=BERLIN)
    assert isinstance(caught.value, InputError)
    assert (caught.value.code, caught.value.http_status) == ("too_many_records", 413)
    assert "at most 1,000 records" in caught.value.message


def test_json_pointers_escape_tilde_and_slash() -> None:
    assert json_pointer("records", 3, "a/b~c") == "/records/3/a~1b~0c"
    assert json_pointer() == ""


# --- the twin of the generic CSV ---------------------------------------------------------------------

_CSV_COLUMNS = ("time", "timezone", "type", "subtype", "value", "unit", "annotation", "duration_min", "text")
_ROWS = st.fixed_dictionaries(
    {
        "time": st.sampled_from([
            "2026-01-15T07:00:00+01:00", "2026-01-15T07:00", "2026-01-15T06:00:00Z", "2026-03-29T02:30",
            "2026-10-25T02:30", "2026-10-25T02:10", "2026-07-15 07:00:05.5+02:00", "2026-02-30T07:00",
            "15.01.2026 07:00", "2026-01-15T07:00+15:00", "",
        ]),
        "timezone": st.sampled_from(["", "", "Europe/Berlin", "America/New_York", "Berlin/Mitte"]),
        "type": st.sampled_from([*RULES, *RULES, "", "wizard", "Meal", "CBG"]),
        "subtype": st.sampled_from(["", "", "sensor", "meter", "temp", "suspend", "extended", "alarm", "prime",
                                    "light", "LONG", "snack"]),
        "value": st.sampled_from(["", "", "0", "0.5", "3.5", "7.9", "40", "120", "400", "1200", "-5", "20.25"]),
        "unit": st.sampled_from(["", "mg/dL", "mmol/L", "U", "U/h", "g", "mg/dl", "kg"]),
        "annotation": st.sampled_from(["", "", "", "low", "HIGH", "LO"]),
        "duration_min": st.sampled_from(["", "", "", "0", "30", "90.5", "1441"]),
        "text": st.sampled_from(["", "", "", "apple", ' a, "b" ', "line\nbreak", "x" * 2001]),
    }
)  # fmt: skip


def _csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for row in rows:
        writer.writerow([row[column] for column in _CSV_COLUMNS])
    return f"{version_line()}\n{out.getvalue()}"


def _json_record(row: dict[str, str]) -> dict[str, object]:
    record: dict[str, object] = {"type": row["type"], "time": row["time"]}
    for column in ("timezone", "subtype", "unit", "annotation", "text"):
        if row[column]:
            record[column] = row[column]
    for column in ("value", "duration_min"):
        if row[column]:
            record[column] = float(row[column])
    return record


def _order(record: ParsedRecord) -> tuple[int, bool]:
    return record.line, record.type == "note"


@given(st.lists(_ROWS, min_size=1, max_size=6))
def test_a_record_is_what_the_generic_csv_makes_of_the_same_row(rows: list[dict[str, str]]) -> None:
    """The same rows as CSV and as JSON: the same records, or the same rows refused for the same reason."""
    result = GlucoshareCsvImporter().parse(
        SourceText("twin.csv", _csv_text(rows), "utf-8"), ParseContext(ZONE)
    )
    starts = [3]  # the line each row starts on (a text with a line break spans two)
    for row in rows:
        starts.append(starts[-1] + 1 + sum(cell.count("\n") for cell in row.values()))
    index_of = {line: index for index, line in enumerate(starts)}
    from_csv = list(each_record(result.records))
    for record in from_csv:
        record.line = index_of[record.line]
    records = [_json_record(row) for row in rows]
    if result.rejected:
        with pytest.raises(RecordsInvalidError) as caught:
            validate_records(records, device="", first_line=0, zone=BERLIN)
        reasons = {(index_of[r.line], r.reason) for r in result.rejected}
        assert {(int(e.pointer.split("/")[2]), e.message) for e in caught.value.errors} == reasons
    else:
        got = validate_records(records, device="", first_line=0, zone=BERLIN)
        assert sorted(got, key=_order) == sorted(from_csv, key=_order)


# --- writing: round trips ------------------------------------------------------------------------------

_CLEAN = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_PAYLOAD_INT, MAX_PAYLOAD_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_CLEAN, max_size=12)
)
_PAYLOAD_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(_CLEAN, max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_TEXTS = st.text(_CLEAN, min_size=1, max_size=40).filter(lambda t: t == t.strip() and bool(t))


@st.composite
def _canonical(draw: st.DrawFn) -> ParsedRecord:
    """A canonical record of a version-1 type that keeps the rules of version 1."""
    type_name = draw(st.sampled_from(list(RULES)))
    rule = RULES[type_name]
    subtype = draw(st.sampled_from(rule.subtypes))
    time_ms = draw(st.integers(946_684_800_000, 1_900_000_000_000))
    offset = draw(st.integers(-720, 840))
    value: float | None = None
    original: tuple[float | None, str | None] = (None, None)
    has_value = rule.value != "none" and (rule.value_subtypes is None or subtype in rule.value_subtypes)
    if has_value and (rule.value == "required" or draw(st.booleans())):
        kept = rule.glucose or type_name == "bloodKetone"
        if type_name == "basal" and subtype == "suspend":
            value = 0.0
        elif kept and draw(st.booleans()):  # as written, in one of the type's units
            unit, factor = draw(st.sampled_from(list(rule.units.items())))
            number = draw(
                st.floats(rule.low / factor, rule.high / factor).filter(
                    lambda n: rule.low <= n * factor <= rule.high
                )
            )
            value, original = number * factor, (number, unit)
        else:
            value = draw(st.floats(rule.low, rule.high).filter(lambda v: v > 0 or not rule.above_zero))
            original = (value, next(iter(rule.units))) if kept else (None, None)
    if draw(st.booleans()):  # what a device wrote beside the value (an importer's rounding, a LO)
        original = (draw(st.none() | st.floats(-1e6, 1e6)), draw(st.text(_CLEAN, min_size=1, max_size=10)))
        if original[0] is None and draw(st.booleans()):
            original = (None, None)
    duration = draw(st.none() | st.integers(1, 86_400_000)) if subtype in rule.durations else None
    annotation = draw(st.sampled_from([None, "low", "high"])) if rule.glucose else None
    payload: dict[str, Any] | None = draw(
        st.none() | st.dictionaries(st.text(_CLEAN, max_size=6), _PAYLOAD_VALUES, max_size=3)
    )
    identity = ""
    if type_name in ("note", "deviceEvent"):
        if payload is not None:
            payload.pop("text", None)
        text = draw(_TEXTS) if type_name == "note" else draw(st.none() | _TEXTS)
        if text is not None:
            payload = {**(payload or {}), "text": text}
            identity = text
        elif payload is not None and draw(st.booleans()):
            payload["text"] = None
    if draw(st.booleans()):
        identity = draw(st.text(_CLEAN, max_size=30))
    return ParsedRecord(type_name, subtype, time_ms, offset, 7, DEVICE, value, original[0], original[1], duration,
                        annotation, payload, identity)  # fmt: skip


@given(st.lists(_canonical(), min_size=1, max_size=8))
def test_any_canonical_record_of_version_1_round_trips_through_json(records: list[ParsedRecord]) -> None:
    for index, record in enumerate(records):
        record.line = 7 + index
    sent = json.loads(json.dumps([record_json(r) for r in records], allow_nan=False))
    got = validate_records(sent, device=DEVICE, first_line=7)
    assert got == records
    for written in sent:
        RecordIn.model_validate(written)
        assert list(written) == [field for field in FIELDS if field in written]


def test_types_outside_version_1_cannot_be_sent_and_blocks_are_expanded() -> None:
    wizard = ParsedRecord("wizard", "", 0, 0, 1, DEVICE, 40.0, payload={"bg_input": 120})
    settings = ParsedRecord("pumpSettings", "", 0, 0, 1, DEVICE, payload={})
    assert record_json(wizard) is None
    assert record_json(settings) is None
    block = ReadingBlock(
        "cbg", "sensor", DEVICE, "mmol/L",
        *(_array(values) for values in ([1_760_000_000_000, 1_760_000_300_000], [120, 120], [7.9 * MGDL_PER_MMOLL,
                                        8.1 * MGDL_PER_MMOLL], [7.9, 8.1], [3, 4])),
    )  # fmt: skip
    written = block_json(block)
    assert written == [
        {
            "type": "cbg",
            "subtype": "sensor",
            "time": "2025-10-09T10:53:20+02:00",
            "value": 7.9,
            "unit": "mmol/L",
        },
        {
            "type": "cbg",
            "subtype": "sensor",
            "time": "2025-10-09T10:58:20+02:00",
            "value": 8.1,
            "unit": "mmol/L",
        },
    ]
    assert list(iter_json([wizard, block, settings])) == written
    assert validate_records(written, device=DEVICE, first_line=3) == list(block.records())


def _array(values: Sequence[float]) -> Any:
    kind = np.float64 if isinstance(values[0], float) else np.int64
    return np.array(values, kind)


def test_times_are_written_with_their_offset_and_milliseconds() -> None:
    record = ParsedRecord("food", "", _utc("2026-01-15T06:00:00.045+00:00"), -210, 1, DEVICE, 20.0)
    assert record_json(record) == {
        "type": "food",
        "time": "2026-01-15T02:30:00.045-03:30",
        "value": 20.0,
        "unit": "g",
    }
    utc = ParsedRecord("physicalActivity", "light", 0, 0, 1, DEVICE, duration_ms=5_430_000)
    assert record_json(utc) == {"type": "physicalActivity", "subtype": "light", "time": "1970-01-01T00:00:00+00:00",
                                "duration_min": 90.5}  # fmt: skip


@functools.cache
def _importer_records() -> list[tuple[str, ParsedRecord]]:
    """What six importers read from the exports of two simulated days (a pump and a pen user)."""
    pump = simulate(profile(therapy="pump", cgm="guardian4", seed=5), start=dt.date(2025, 10, 25), days=2)
    pens = simulate(
        profile(therapy="mdi", cgm="libre2", units="mmol/L", seed=6), start=dt.date(2025, 10, 25), days=2
    )
    exports = [write_carelink(pump), write_tidepool(pump), write_glooko(pump), write_clarity(pens),
               write_libreview(pens), write_mysugr(pens)]  # fmt: skip
    limits = ArchiveLimits(max_members=50, max_member_bytes=1 << 26, max_total_bytes=1 << 27)
    files = [IncomingFile(export.file_name, export.data) for export in exports]
    files = [
        member
        for f in files
        for member in (expand_archive(f.name, f.data, limits) if is_archive(f.data) else [f])
    ]
    out: list[tuple[str, ParsedRecord]] = []
    for incoming in files:
        decoded = decode_text(incoming.data, incoming.name)
        source = SourceText(incoming.name, decoded.text, decoded.encoding)
        importer = detect_format(source)
        result = importer.parse(source, ParseContext(ZONE))
        out.extend((importer.format, record) for record in each_record(result.records))
    return out


def test_what_the_importers_read_round_trips_but_for_types_and_values_version_1_lacks() -> None:
    """The command-line uploader sends an importer's records; each comes back as it was read."""
    formats, unsendable, refused = set(), set(), set()
    for fmt, record in _importer_records():
        formats.add(fmt)
        written = record_json(record)
        if written is None:
            unsendable.add(record.type)
            continue
        sent = json.loads(json.dumps(written, allow_nan=False))
        try:
            got = validate_records([sent], device=record.device, first_line=record.line)
        except RecordsInvalidError as exc:
            refused.add((fmt, record.type, record.subtype, exc.errors[0].message))
            continue
        assert got == [record], fmt
    assert formats == {"carelink", "tidepool", "glooko", "dexcom_clarity", "libreview", "mysugr"}
    assert unsendable == {"wizard", "pumpSettings", "cgmSettings"}
    assert refused <= {
        ("libreview", "food", "", "value: empty; food records need one"),  # servings without carbohydrate
        ("mysugr", "basal", "temp", "value: empty; basal records need one"),  # a percentage without a rate
        (  # a pump suspension with its length: version 1 has no duration for device events
            "tidepool",
            "deviceEvent",
            "suspend",
            "duration_min: only basal, extended and dual boluses and physicalActivity have a duration",
        ),
    }


# --- junk never gets through, and every pointer points somewhere -----------------------------------------

_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["\x00", "\ud800", 10**400, "2026-01-15T07:00", "Europe/Berlin", "mg/dL", "cbg", "note"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip
_PLAUSIBLE = {
    "type": st.sampled_from([*RULES, "wizard", ""]),
    "subtype": st.sampled_from(["", "sensor", "alarm", "prime", "temp", "suspend"]),
    "time": st.sampled_from(["2026-01-15T07:00", "2026-01-15T07:00Z", "2026-03-29T02:30", "2026-01-15T07:00+01:00"]),
    "timezone": st.sampled_from(["Europe/Berlin", "Asia/Tokyo", "../etc/passwd", "a" * 300]),
    "value": st.floats() | st.integers(),
    "unit": st.sampled_from(["mg/dL", "mmol/L", "U", "U/h", "g"]),
    "annotation": st.sampled_from(["low", "high"]),
    "duration_min": st.floats() | st.integers(),
    "text": st.text(max_size=5),
    "id": st.text(max_size=5),
    "payload": st.dictionaries(st.text(max_size=4), _JUNK, max_size=3),
    "orig_value": st.floats() | st.integers(),
    "orig_unit": st.text(max_size=12),
}  # fmt: skip
_RECORDISH = st.lists(st.sampled_from([*FIELDS, "junk"]), max_size=9, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: _PLAUSIBLE[k] | _JUNK if k in _PLAUSIBLE else _JUNK for k in keys})
)


@given(st.lists(_RECORDISH | _JUNK, max_size=6), st.booleans())
def test_junk_raises_only_records_invalid_and_every_pointer_resolves(
    records: list[object], zoned: bool
) -> None:
    errors: tuple[RecordError, ...] = ()
    try:
        validate_records(records, device=DEVICE, first_line=1, zone=BERLIN if zoned else None, notes=[])
    except RecordsInvalidError as exc:
        errors = exc.errors
        assert errors
    for error in errors:
        _resolve({"records": records}, error.pointer)
        assert error.pointer.startswith("/records/")
        assert error.message


# --- the OpenAPI description -----------------------------------------------------------------------------


def test_the_openapi_models_describe_every_field() -> None:
    assert tuple(RecordIn.model_fields) == FIELDS
    assert all(field.description for field in RecordIn.model_fields.values())
    schema = RecordsIn.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["RecordIn"]["additionalProperties"] is False
    for example in schema["$defs"]["RecordIn"]["examples"]:
        validate_records([example], device=DEVICE, first_line=1, zone=BERLIN)
