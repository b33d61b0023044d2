"""Nightscout JSON importer: simulated round trips for every uploader and layout, detection, bad input."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import importlib
import json
import zoneinfo
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.analytics.settings import parse_pump_settings, pump_settings_payload
from glucoshare.config import Settings
from glucoshare.devices.models import Device
from glucoshare.errors import InputError
from glucoshare.ingest.base import (
    ParseContext,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    SourceText,
    each_record,
)
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import MalformedFileError, NoRecordsError, UnknownFormatError
from glucoshare.ingest.nightscout import BLOCK_READINGS, NightscoutImporter
from glucoshare.ingest.nightscout_mapping import MGDL_PER_MMOLL
from glucoshare.ingest.registry import detect_format, importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.models import Record
from glucoshare.records.schemas import UploadOut
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import calculator_schedule, write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.libreview import write_libreview
from glucoshare.simulator.writers.nightscout import NightscoutOptions, write_nightscout
from tests.ingest.helpers import committed_upload, expected_keys, parsed_keys, profile, refused_unchanged

IMPORTER = NightscoutImporter()
UPLOADERS = ["xdrip", "loop", "aaps", "trio", "share2", "librelinkup"]
ZONE = "Europe/Berlin"


@functools.cache
def _timeline(therapy: str = "pump", cgm: str = "dexcom_g6") -> Timeline:
    """A winter-to-spring fortnight: a daylight-saving change, lows, sensor starts."""
    return simulate(
        profile(therapy=therapy, cgm=cgm, control=0.1, seed=11, timezone=ZONE),
        start=dt.date(2025, 3, 24),
        days=12,
    )


def _source(export: WrittenExport) -> SourceText:
    decoded = decode_text(export.data, export.file_name)
    return SourceText(export.file_name, decoded.text, decoded.encoding)


def _parse(export: WrittenExport, timezone: str = ZONE) -> tuple[list[ParsedRecord], ParseResult]:
    """Detected by this importer and parsed by it (never by the file name)."""
    source = _source(export)
    assert IMPORTER.detect(source.head())
    result = IMPORTER.parse(source, ParseContext(timezone))
    return list(each_record(result.records)), result


def _parse_text(text: str, timezone: str = "UTC") -> tuple[list[ParsedRecord], ParseResult]:
    result = IMPORTER.parse(SourceText("ns.json", text, "utf-8"), ParseContext(timezone))
    return list(each_record(result.records)), result


def _assert_round_trip(export: WrittenExport, timezone: str = ZONE) -> tuple[list[ParsedRecord], ParseResult]:
    records, result = _parse(export, timezone)
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    zone = zoneinfo.ZoneInfo(timezone)
    for record in records:
        offset = dt.datetime.fromtimestamp(record.time_ms / 1000, tz=zone).utcoffset()
        assert offset == dt.timedelta(minutes=record.utc_offset_min), record
    assert {r.device for r in records} <= set(result.devices)
    return records, result


# --- simulated round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("therapy", ["pump", "mdi"])
@pytest.mark.parametrize("uploader", UPLOADERS)
def test_round_trip_every_uploader(uploader: str, therapy: str) -> None:
    export = write_nightscout(
        _timeline(therapy),
        NightscoutOptions(uploader=uploader, automatic_every=4, combo_every=6),  # type: ignore[arg-type]
    )
    records, result = _assert_round_trip(export)
    kinds = collections.Counter((r.type, r.subtype) for r in records)
    must = [("cbg", "sensor"), ("food", ""), ("pumpSettings", ""), ("deviceEvent", "sensorStart")]
    if uploader == "xdrip":
        must += [("smbg", "meter")]
        must += [("bolus", "normal")] if therapy == "pump" else [("insulin", "rapid"), ("insulin", "long")]
    else:
        must += [("smbg", "meter"), ("bolus", "normal"), ("bolus", "dual"), ("physicalActivity", "unknown")]
        must += [("note", "")]
    if therapy == "pump" and uploader != "xdrip":
        must += [("deviceEvent", "reservoirChange"), ("deviceEvent", "siteChange"), ("basal", "temp")]
        if uploader in ("loop", "aaps", "trio"):
            must += [("bolus", "automated"), ("deviceEvent", "suspend"), ("deviceEvent", "resume")]
        if uploader == "loop":
            must.remove(("basal", "temp"))
            must += [("basal", "automated")]
        if uploader == "aaps":
            must += [("wizard", ""), ("deviceEvent", "prime")]
    for kind in must:
        assert kinds[kind] > 0, f"the simulation must produce {kind}"
    lows = [r for r in records if r.annotation == "low"]
    assert lows, "LOW (39) readings"
    assert all((r.value, r.orig_value) == (40.0, 39.0) for r in lows)
    assert any(note.startswith("devicestatus documents not stored") for note in result.notes)
    assert any(note.startswith("calibration entries not stored") for note in result.notes) == (
        uploader == "xdrip"
    )


EXPECTED_DEVICES = {
    "xdrip": {("Dexcom", "G6 (xDrip-DexcomG6)"), ("xDrip+", "xDrip+ (xdrip)")},
    "loop": {("Loop", "Loop (loop://iPhone)"), ("Loop", "Loop (Loop)")},
    "aaps": {
        ("Dexcom", "G6 (AndroidAPS-DexcomG6)"),
        ("AndroidAPS", "AndroidAPS (AAPS)"),
        ("AndroidAPS", "AndroidAPS (openaps://AndroidAPS)"),
    },
    "trio": {("Trio", "Trio (Trio)")},
    "share2": {("Dexcom", "Share (share2)"), ("Nightscout", "Nightscout")},
    "librelinkup": {("Abbott", "FreeStyle Libre (nightscout-librelink-up)"), ("Nightscout", "Nightscout")},
}


@pytest.mark.parametrize("uploader", UPLOADERS)
def test_devices_are_the_uploaders(uploader: str) -> None:
    export = write_nightscout(_timeline(), NightscoutOptions(uploader=uploader))  # type: ignore[arg-type]
    records, result = _parse(export)
    devices = {(d.manufacturer, d.model) for d in result.devices.values()}
    assert devices == EXPECTED_DEVICES[uploader]
    assert all(d.serial is None and not d.identifiers for d in result.devices.values())
    used = {r.device for r in records}
    assert used == set(result.devices), "every registered device holds records"


VARIANTS = {
    "server-stored": NightscoutOptions(),
    "pretty-crlf-bom": NightscoutOptions(pretty=True, crlf=True, bom=True),
    "offset-text": NightscoutOptions(date_string="offset", utc_offset=False),
    "xdrip-compact": NightscoutOptions(date_string="compact", utc_offset=False),
    "naive-utc": NightscoutOptions(date_string="naive", utc_offset=False, uploader="loop"),
    "no-datestring": NightscoutOptions(date_string="none", utc_offset=False, uploader="aaps"),
    "oldest-first": NightscoutOptions(newest_first=False, uploader="trio"),
    "mmol": NightscoutOptions(glucose_units="mmol", uploader="share2", combo_every=2),
    "no-ids-no-cal": NightscoutOptions(ids=False, calibrations=False),
    "mixed-array": NightscoutOptions(layout="array", uploader="aaps", automatic_every=2),
    "entries-only": NightscoutOptions(layout="entries"),
    "treatments-only": NightscoutOptions(layout="treatments", uploader="loop", automatic_every=3),
    "profile-only": NightscoutOptions(layout="profile", uploader="loop"),
    "pretty-treatments": NightscoutOptions(layout="treatments", pretty=True, uploader="librelinkup"),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_round_trip_every_variant(name: str) -> None:
    options = VARIANTS[name]
    export = write_nightscout(_timeline(), options)
    if options.bom:
        assert export.data.startswith(b"\xef\xbb\xbf")
    if options.pretty:
        assert export.data.count(b"\n") > 100
        assert (b"\r\n" in export.data) == options.crlf
    else:
        assert b"\n" not in export.data
    records, _ = _assert_round_trip(export)
    if options.layout == "profile":
        assert {r.type for r in records} == {"pumpSettings"}
    if options.layout == "entries":
        assert {r.type for r in records} == {"cbg", "smbg"}


def test_readings_come_as_blocks_and_lines_point_at_their_documents() -> None:
    export = write_nightscout(_timeline(), NightscoutOptions(pretty=True))
    source = _source(export)
    result = IMPORTER.parse(source, ParseContext(ZONE))
    items = list(result.records)
    blocks = [i for i in items if isinstance(i, ReadingBlock)]
    assert sum(len(b) for b in blocks) > 3000
    assert all(len(b) <= BLOCK_READINGS for b in blocks)
    lines = source.text.split("\n")
    for record in each_record(items):
        assert lines[record.line - 1].strip() == "{", record
        assert lines[record.line - 2].strip() in (
            "[",
            "},",
            '"entries": [',
            '"treatments": [',
            '"profile": [',
        )
    minified = IMPORTER.parse(_source(write_nightscout(_timeline())), ParseContext(ZONE))
    assert {r.line for r in each_record(minified.records)} == {1}


def test_profiles_hold_the_pump_settings_in_mg_dl() -> None:
    timeline = _timeline()
    schedule = calculator_schedule(timeline)
    for units in ("mg/dl", "mmol"):
        export = write_nightscout(
            timeline, NightscoutOptions(layout="profile", glucose_units=units, uploader="loop")
        )  # type: ignore[arg-type]
        records, result = _parse(export)
        assert [r.time_ms for r in records] == [schedule.change_ms, timeline.start_ms], "newest first"
        assert result.notes == []
        for record, settings in zip(records, (schedule.after, schedule.before), strict=True):
            payload = record.payload or {}
            local_ms = record.time_ms + record.utc_offset_min * 60_000
            parsed = parse_pump_settings(payload, local_ms)
            assert payload == pump_settings_payload(parsed)
            assert parsed.active_schedule == "Default"
            assert {n: [(e.start_min, e.value) for e in s] for n, s in parsed.basal_schedules.items()} == {
                "Default": [(s, r) for s, r in timeline.basal_schedule],
                "Exercise": [(s, round(r * 0.8, 3)) for s, r in timeline.basal_schedule],
            }
            assert [(e.start_min, e.value) for e in parsed.carb_ratios] == list(settings.carb_ratios)
            factor = MGDL_PER_MMOLL if units == "mmol" else 1.0
            want = [
                (s, round(v / factor, 1 if units == "mmol" else 0) * factor)
                for s, v in settings.sensitivities
            ]
            assert [e.start_min for e in parsed.sensitivities] == [start for start, _ in want]
            assert [e.value for e in parsed.sensitivities] == pytest.approx([value for _, value in want])
            assert len(parsed.targets) == len(settings.targets)
            assert (parsed.max_bolus_u, parsed.max_basal_u_h, parsed.insulin_duration_h) == (10.0, 3.0, 6.0)


@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 3),
    start=st.dates(dt.date(2020, 1, 1), dt.date(2026, 6, 30))
    | st.sampled_from([dt.date(2025, 3, 29), dt.date(2025, 10, 25)]),
    timezone=st.sampled_from(
        ["Europe/Berlin", "America/New_York", "Australia/Adelaide", "Asia/Kathmandu", "UTC"]
    ),
    therapy=st.sampled_from(["pump", "mdi"]),
    cgm=st.sampled_from(["dexcom_g6", "dexcom_g7", "libre2", "libre3", "guardian4"]),
    control=st.floats(0.0, 1.0),
    uploader=st.sampled_from(UPLOADERS),
    layout=st.sampled_from(["collections", "array", "entries", "treatments"]),
    date_string=st.sampled_from(["utc", "offset", "compact", "naive", "none"]),
    units=st.sampled_from(["mg/dl", "mmol"]),
    every=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    flags=st.tuples(*[st.booleans()] * 5),
)
def test_round_trip_property(
    seed: int,
    days: int,
    start: dt.date,
    timezone: str,
    therapy: str,
    cgm: str,
    control: float,
    uploader: str,
    layout: str,
    date_string: str,
    units: str,
    every: tuple[int, int],
    flags: tuple[bool, bool, bool, bool, bool],
) -> None:
    utc_offset, pretty, newest_first, ids, calibrations = flags
    timeline = simulate(
        profile(seed=seed, therapy=therapy, cgm=cgm, control=control, timezone=timezone),
        start=start,
        days=days,
    )
    options = NightscoutOptions(
        uploader=uploader,  # type: ignore[arg-type]
        layout=layout,  # type: ignore[arg-type]
        date_string=date_string,  # type: ignore[arg-type]
        utc_offset=utc_offset,
        pretty=pretty,
        newest_first=newest_first,
        glucose_units=units,  # type: ignore[arg-type]
        automatic_every=every[0],
        combo_every=every[1],
        ids=ids,
        calibrations=calibrations,
    )
    _assert_round_trip(write_nightscout(timeline, options), timezone)


_MUTATIONS: list[Callable[[str, int], str]] = [
    lambda text, at: text[:at],
    lambda text, at: text[:at] + text[at + 1 :],
    lambda text, at: text[:at] + "x" + text[at:],
    lambda text, at: text[:at] + '"' + text[at:],
    lambda text, at: text[:at] + "{}" + text[at:],
    lambda text, at: text.replace(text[at : at + 3], "null", 1) if text[at : at + 3] else text,
]


@given(mutation=st.sampled_from(range(len(_MUTATIONS))), where=st.floats(0.0, 1.0))
def test_parser_raises_only_ingest_errors_on_mutated_input(mutation: int, where: float) -> None:
    text = write_nightscout(
        _timeline().window(_timeline().start_ms, _timeline().start_ms + 8 * 3_600_000)
    ).data.decode()
    mutated = _MUTATIONS[mutation](text, int(where * len(text)))
    try:
        records, result = _parse_text(mutated, ZONE)
    except MalformedFileError as exc:
        refused = str(exc)
    else:
        assert all(rejected.line >= 1 for rejected in result.rejected)
        assert all(r.type for r in records)
        return
    assert refused.startswith("ns.json: line ")


# --- layouts and shapes written by hand ------------------------------------------------------------


def test_a_single_document_and_wrappers() -> None:
    profile_doc = {
        "_id": "5f0c0ffee0ddba11deadbeef",
        "defaultProfile": "Default",
        "startDate": "2024-01-18T16:00:00.000Z",
        "units": "mg/dl",
        "store": {
            "Default": {
                "basal": [{"time": "00:00", "value": 0.9}],
                "carbratio": [{"time": "00:00", "value": 10}],
            }
        },
    }
    records, _ = _parse_text(json.dumps(profile_doc))
    assert [r.type for r in records] == ["pumpSettings"]
    v3 = {
        "status": 200,
        "result": [
            {"type": "sgv", "sgv": 101, "date": 1705593600000},
            {"eventType": "Note", "created_at": "2024-01-18T16:00:00Z", "notes": "hi"},
        ],
    }
    records, result = _parse_text(json.dumps(v3))
    assert [r.type for r in records] == ["note", "cbg"]
    assert result.notes == []
    mixed = {
        "entries": [{"type": "sgv", "sgv": 101, "date": 1705593600000}],
        "profiles": [profile_doc],
        "food": [{"name": "apple", "carbs": 12}],
        "settings": {"units": "mg/dl"},
        "count": 3,
        "treatments": [],
        "devicestatus": {"device": "loop://iPhone", "loop": {}},
    }
    records, result = _parse_text(json.dumps(mixed, indent=1))
    assert sorted(r.type for r in records) == ["cbg", "pumpSettings"]
    assert result.notes == [
        "top-level parts other than entries, treatments, devicestatus and profile not read: 2",
        (
            "devicestatus documents not stored (loop, pump and phone state; the temporary basals and "
            "boluses they report come as treatments): 1"
        ),
    ]
    records, _ = _parse_text("  []  ")
    assert records == []


def test_documents_that_cannot_be_read_are_rejected_with_their_line() -> None:
    docs: list[Any] = [
        {"type": "sgv", "sgv": 120, "date": 1705593600000, "device": "xDrip-DexcomG6"},
        {"type": "sgv", "sgv": "a lot", "date": 1705593900000},
        42,
        {"type": "sgv", "sgv": 130},
        {
            "eventType": "BG Check",
            "created_at": "2024-01-18T16:00:00Z",
            "glucose": 7.2,
            "glucoseType": "Finger",
        },
        {"eventType": "Meal Bolus", "created_at": "in a minute", "insulin": 3},
        {"eventType": "Correction Bolus", "created_at": "2024-01-18T16:10:00Z", "insulin": 1.2},
        {
            "store": {"Default": {"basal": [{"time": "01:00", "value": 1}]}},
            "defaultProfile": "Default",
            "startDate": "2024-01-18T16:00:00Z",
            "units": "mg/dl",
        },
        {"something": "else"},
    ]
    text = "[\n" + ",\n".join(json.dumps(d) for d in docs) + "\n]\n"
    records, result = _parse_text(text)
    assert [(r.line, r.type) for r in records] == [(8, "bolus"), (2, "cbg")]
    assert result.rejected == [
        RejectedRow(3, "entry 2: sgv is not a number"),
        RejectedRow(4, "document 3: not a JSON object"),
        RejectedRow(5, "entry 4: no date (date, dateString, sysTime, mills)"),
        RejectedRow(6, "treatment 5: glucose without units (mg/dl or mmol)"),
        RejectedRow(7, "treatment 6: created_at is not an ISO 8601 date and time"),
        RejectedRow(
            9,
            "profile 8: pumpSettings basal_schedules.Default[0].start_min: is not 0 (a schedule starts at midnight)",
        ),
    ]
    assert result.notes == ["documents of no known Nightscout collection not stored: 1"]
    for rejected in result.rejected:
        assert not any(secret in rejected.reason for secret in ("a lot", "7.2", "in a minute", "42"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[{"type": "sgv", "sgv": 120, "date": 1705593600000}, {"type": "sgv", "sg',
            "line 1, column 73: the file ends in the middle of a document (truncated?)",
        ),
        (
            '[{"type": "sgv", "sgv": 120, "date": 1705593600000}\n{"type": "sgv"}]',
            "line 2, column 1: not valid JSON (Expecting ',' delimiter)",
        ),
        (
            '[{"type": "sgv", "sgv": 120, "date": 1705593600000}]\n]',
            "line 2, column 1: not valid JSON (Extra data)",
        ),
        (
            '{"entries": [{"type": "sgv", "sgv": 120, "date": 1705593600000}] "x": 1}',
            "line 1, column 66: not valid JSON (Expecting ',' delimiter)",
        ),
        ('{"entries" [1]}', "line 1, column 12: not valid JSON (Expecting ':' delimiter)"),
        (
            '{"entries": [], 5: 1}',
            "line 1, column 17: not valid JSON (Expecting property name enclosed in double quotes)",
        ),
        (
            '[{"type": "sgv", "sgv": 120, "date": 1705593600000}, ]',
            "line 1, column 54: not valid JSON (Expecting value)",
        ),
        ("sgv,date\n120,1705593600000\n", "line 1: the file is not a JSON array or object"),
    ],
    ids=[
        "truncated",
        "no-comma",
        "extra-data",
        "wrapper-comma",
        "wrapper-colon",
        "wrapper-key",
        "trailing-comma",
        "not-json",
    ],
)
def test_broken_json_refuses_the_file_naming_line_and_column(text: str, message: str) -> None:
    with pytest.raises(MalformedFileError) as info:
        _parse_text(text)
    assert str(info.value) == f"ns.json: {message}"


def test_a_reading_dated_beyond_any_clock_is_a_rejected_row() -> None:
    # Found by the fuzzer (tests/fuzz): the fast path of plain readings took any whole number as
    # the date, and one beyond 64 bits overflowed the block's column (OverflowError).
    text = json.dumps(
        [{"type": "sgv", "sgv": 120, "date": 1717315200000}, {"type": "sgv", "sgv": 121, "date": 10**30}]
    )
    records, result = _parse_text(text)
    assert [r.time_ms for r in records] == [1717315200000]
    assert [(row.line, row.reason) for row in result.rejected] == [
        (1, "entry 2: date is outside the years 1970 to 2099")
    ]


def test_a_document_nested_too_deeply_refuses_the_file() -> None:
    # Found by the fuzzer (tests/fuzz): the JSON decoder raises RecursionError, not JSONDecodeError,
    # on deep nesting; that escaped the importer.
    deep = "[" * 100_000 + "]" * 100_000
    text = f'[{{"type": "sgv", "sgv": 120, "date": 1717315200000}}, {{"type": "sgv", "sgv": {deep}}}]'
    with pytest.raises(MalformedFileError, match=r"^ns\.json: .*nested too deeply"):
        _parse_text(text)


# --- detection -------------------------------------------------------------------------------------

_OTHER_WRITERS = [
    ("dexcom_clarity", write_clarity),
    ("libreview", write_libreview),
    ("carelink", write_carelink),
]


def _writer(module: str, name: str) -> Callable[[Timeline], WrittenExport]:
    found: Callable[[Timeline], WrittenExport] = getattr(
        importlib.import_module(f"glucoshare.simulator.writers.{module}"), name
    )
    return found


@pytest.mark.parametrize(
    "options",
    [
        NightscoutOptions(pretty=True),
        NightscoutOptions(pretty=True, layout="array", uploader="aaps"),
        NightscoutOptions(pretty=True, layout="treatments", uploader="loop"),
        NightscoutOptions(pretty=True, layout="profile", uploader="trio", bom=True),
        NightscoutOptions(pretty=True, layout="devicestatus", uploader="loop"),
        NightscoutOptions(layout="entries", uploader="share2"),
    ],
    ids=["collections", "array", "treatments", "profile", "devicestatus", "entries-minified"],
)
def test_nightscout_files_are_recognised_by_this_importer_only(options: NightscoutOptions) -> None:
    timeline = _timeline().window(_timeline().start_ms, _timeline().start_ms + 10 * 3_600_000)
    export = write_nightscout(timeline, options)
    for name in ("nightscout.json", "export.csv", "Clarity_Export.csv"):
        source = dataclasses.replace(_source(export), name=name)
        assert [i.format for i in importers() if i.detect(source.head())] == ["nightscout"]
        assert detect_format(source).format == "nightscout"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("dexcom_clarity", "write_clarity"),
        ("libreview", "write_libreview"),
        ("carelink", "write_carelink"),
        ("tidepool", "write_tidepool"),
        ("xdrip", "write_xdrip"),
        ("mysugr", "write_mysugr"),
        ("glucoshare_csv", "write_glucoshare_csv"),
        ("accuchek_smartpix", "write_smartpix"),
    ],
)
def test_other_formats_are_not_nightscout(module: str, name: str) -> None:
    export = _writer(module, name)(
        _timeline().window(_timeline().start_ms, _timeline().start_ms + 86_400_000)
    )
    source = _source(export)
    assert not IMPORTER.detect(source.head())


@pytest.mark.parametrize(
    "head",
    [
        [
            '[{"_id":"65a","sgv":120,"date":1705593600000,"dateString":"2024-01-18T16:00:00.000Z","type":"sgv"}]'
        ],
        ["[", "  {", '    "device": "xDrip-DexcomG6",', '    "date": 1705593600000,', '    "sgv": 120,'],
        ['\ufeff[{"type":"mbg","mbg":104,"dateString":"2024-01-18T16:00:00Z"}]'],
        ['[{"eventType":"Meal Bolus","created_at":"2024-01-18T16:00:00Z","insulin":4}]'],
        ['[{"eventType":"Temp Basal","timestamp":1705593600000,"absolute":0.6}]'],
        ['{"defaultProfile":"Default","startDate":"2024-01-18T16:00:00Z","store":{"Default":{}}}'],
        [
            "{",
            '  "entries": [],',
            '  "treatments": [',
            "    {",
            '      "eventType": "Note",',
            '      "created_at": "x"',
        ],
        ['{"status":200,"result":[{"device":"openaps://x","created_at":"2024","openaps":{}}]}'],
        ['[{"device":"xDrip-DexcomG6","uploader":{"battery":80}}]'],
        ['[{"type":"cal","date":1705593600000,"slope":1000}]'],
    ],
    ids=[
        "entries",
        "pretty-cut",
        "bom-mbg",
        "treatment",
        "timestamp",
        "profile",
        "wrapper-cut",
        "v3",
        "xdrip-status",
        "cal",
    ],
)
def test_detects_every_known_top_of_file(head: list[str]) -> None:
    assert IMPORTER.detect(head)


@pytest.mark.parametrize(
    "head",
    [
        [],
        [""],
        ["[]"],
        ["[1, 2, 3]"],
        ['{"status":"ok","name":"nightscout","version":"15.0.7","settings":{"units":"mg/dl"}}'],
        ['[{"type":"cbg","time":"2024-01-18T16:00:00Z","value":6.1,"units":"mmol/L","uploadId":"u1"}]'],
        ['[{"type":"bolus","subType":"normal","time":"2024-01-18T16:00:00Z","normal":2,"deviceId":"d"}]'],
        [
            '[{"id":"x","time":"2024-01-18T16:00:00Z","type":"smbg","value":6.1,"uploadId":"u","sgv":1,"date":1}]'
        ],
        ['{"resourceType":"Bundle","entry":[{"resource":{"date":1,"sgv":1}}]}'],
        ['{"format": "glucoshare-diary", "version": 1}', '{"time": "2026-11-20T08:15", "glucose": 120}'],
        ["Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype"],
        ['[{"sgv": 120}]'],
        ['{"eventType": "Note"}'],
    ],
    ids=[
        "empty",
        "blank",
        "empty-array",
        "numbers",
        "status-json",
        "tidepool-cbg",
        "tidepool-bolus",
        "tidepool-with-sgv",
        "fhir",
        "diary",
        "clarity",
        "sgv-without-date",
        "treatment-without-time",
    ],
)
def test_does_not_detect_other_files(head: list[str]) -> None:
    assert not IMPORTER.detect(head)


# --- through the import service, on both databases -------------------------------------------------


def _patient(session: Session, email: str = "ns@example.org") -> Patient:
    return add_patient(session, validate_patient(email=email, name="NS User", timezone=ZONE))


def _import(
    session: Session, settings: Settings, patient: Patient, export: WrittenExport, name: str | None = None
) -> UploadOut:
    incoming = IncomingFile(name or export.file_name, export.data)
    return import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )


def test_import_service_stores_a_nightscout_file_once(session: Session, settings: Settings) -> None:
    timeline = _timeline()
    export = write_nightscout(
        timeline, NightscoutOptions(uploader="aaps", pretty=True, automatic_every=3, combo_every=5)
    )
    patient = _patient(session)
    first = _import(session, settings, patient, export)
    counts = collections.Counter(e.type for e in export.expected)
    total = sum(counts.values())
    assert first.format == "nightscout"
    assert first.counts == dict(counts)
    assert (first.new, first.duplicates, first.rejected_count) == (total, 0, 0)
    assert first.device is not None
    assert (first.device.manufacturer, first.device.model) == ("Dexcom", "G6 (AndroidAPS-DexcomG6)")
    assert any(w.startswith("devicestatus documents not stored") for w in first.warnings)
    devices = session.scalars(select(Device).where(Device.patient_id == patient.id)).all()
    assert {(d.manufacturer, d.model, d.serial) for d in devices} == {
        (m, model, None) for m, model in EXPECTED_DEVICES["aaps"]
    }
    again = _import(session, settings, patient, export)
    assert (again.new, again.duplicates) == (0, total)
    entries = write_nightscout(
        timeline, NightscoutOptions(uploader="aaps", layout="entries", date_string="compact")
    )
    overlap = _import(session, settings, patient, entries, "entries.json")
    assert overlap.new == 0, "the same readings saved again in another layout are duplicates"
    assert session.scalar(select(func.count()).select_from(Record)) == total


def test_text_no_database_stores_is_stored_as_the_replacement_character(
    session: Session, settings: Settings
) -> None:
    # Found by the fuzzers (tests/fuzz, the NUL on the API): JSON may escape half of a UTF-16 pair
    # (\udc80) alone, and a NUL (\u0000); the database driver failed on the first
    # (UnicodeEncodeError), PostgreSQL refuses the second (DataError).
    at = 1717315200000
    devices = ["xDrip-\\udc80", "xDrip-\\\\udc80", "xDrip-\\u0000"]  # the second: a backslash, then "udc80"
    text = json.dumps(
        [{"type": "sgv", "sgv": 120 + n, "date": at + n * 300_000, "device": "D"} for n in range(3)]
    )
    for device in devices:
        text = text.replace('"D"', f'"{device}"', 1)
    upload = import_file(
        session,
        settings=settings,
        patient=_patient(session),
        incoming=IncomingFile("ns.json", text.encode()),
        timezone=None,
        actor="test",
    )
    assert upload.new == 3
    models = " ".join(d.model for d in session.scalars(select(Device)))
    assert "xDrip-\ufffd" in models
    assert "xDrip-\\udc80" in models  # an escaped backslash before "udc80": text, kept
    assert "\x00" not in models


def test_import_service_detects_a_minified_file(session: Session, settings: Settings) -> None:
    """A minified file is one line of (often many) megabytes; detection sees its start only."""
    export = write_nightscout(_timeline(), NightscoutOptions(uploader="loop"))
    assert b"\n" not in export.data
    assert len(export.data) > 500_000
    outcome = _import(session, settings, _patient(session), export, "ns.txt")
    assert (outcome.format, outcome.new, outcome.rejected_count) == ("nightscout", len(export.expected), 0)


def _bad_inputs() -> dict[str, tuple[bytes, type[InputError], str]]:
    timeline = _timeline().window(_timeline().start_ms, _timeline().start_ms + 86_400_000)
    good = write_nightscout(timeline, NightscoutOptions(pretty=True, uploader="loop")).data
    docs = json.loads(good)
    undated = docs["entries"][:1] + [
        {k: v for k, v in d.items() if k not in ("date", "dateString", "sysTime")}
        for d in docs["entries"][1:]
    ]
    future = [{**d, "date": 4_000_000_000_000} for d in docs["entries"]]
    check = {
        "eventType": "BG Check",
        "created_at": "2025-03-24T10:00:00Z",
        "glucose": 6.1,
        "glucoseType": "Finger",
    }
    status_only = {"devicestatus": docs["devicestatus"]}
    undated_only = [{"type": "sgv", "sgv": 120, "device": "xDrip-DexcomG6"}] * 3
    many_bad = docs["entries"][:20] + [{"type": "sgv", "sgv": "?", "date": 1742810000000}] * 15
    return {
        "truncated": (
            good[:-40],
            MalformedFileError,
            "the file ends in the middle of a document (truncated?)",
        ),
        "extra data": (good + b"\n]", MalformedFileError, "not valid JSON (Extra data)"),
        "no dates": (json.dumps(undated).encode(), MalformedFileError, "entry 2: no date (date, dateString"),
        "in the future": (json.dumps(future).encode(), MalformedFileError, "date is in the future"),
        "glucose without units": (
            json.dumps([{**check, "utcOffset": n} for n in range(12)]).encode(),
            MalformedFileError,
            "glucose without units",
        ),
        "mostly unreadable": (
            json.dumps(many_bad).encode(),
            MalformedFileError,
            "15 of 35 rows cannot be read",
        ),
        "only device status": (json.dumps(status_only).encode(), NoRecordsError, "holds no records"),
        "no vendor fields": (json.dumps(undated_only).encode(), UnknownFormatError, "unrecognised format"),
        "not json": (b"[this is not json\n", UnknownFormatError, "unrecognised format"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "truncated",
        "extra data",
        "no dates",
        "in the future",
        "glucose without units",
        "mostly unreadable",
        "only device status",
        "no vendor fields",
        "not json",
    ],
)
def test_bad_input_is_refused_and_changes_nothing(case: str, engine: Engine, settings: Settings) -> None:
    data, error, message = _bad_inputs()[case]
    first = write_nightscout(_timeline().window(_timeline().start_ms, _timeline().start_ms + 3 * 3_600_000))
    first_json = IncomingFile("first.json", first.data)
    patient = committed_upload(
        engine, settings, first_json, email="ns@example.org", name="NS User", timezone=ZONE
    )
    refused = refused_unchanged(engine, settings, patient.id, IncomingFile("bad.json", data), error)
    assert refused.message.startswith("bad.json")
    assert message in refused.message
