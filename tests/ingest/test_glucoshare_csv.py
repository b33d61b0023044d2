"""Glucoshare's generic CSV: template, round trips in every variant, rules, detection, bad input."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import math
import re
import zoneinfo
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.devices.models import Device
from glucoshare.errors import InputError
from glucoshare.export.rows import EXPORT_FIELDS
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
from glucoshare.ingest.diary import DiaryEntry, diary_document
from glucoshare.ingest.errors import MalformedFileError, NoRecordsError, UnknownFormatError
from glucoshare.ingest.glucoshare_csv import (
    COLUMNS,
    RULES,
    GlucoshareCsvImporter,
    template_bytes,
    version_line,
)
from glucoshare.ingest.registry import detect_format, importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.models import Record
from glucoshare.records.vocabulary import MGDL_PER_MMOLL, SUBTYPES
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.glucoshare_csv import (
    NO_DEVICE,
    CsvRow,
    GlucoshareCsvOptions,
    timeline_rows,
    write_glucoshare_csv,
    write_rows,
)
from glucoshare.simulator.writers.libreview import write_libreview
from tests.ingest.helpers import committed_upload, expected_keys, parsed_keys, profile, refused_unchanged

IMPORTER = GlucoshareCsvImporter()
ZONE = "Europe/Berlin"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "formats" / "generic-csv.md"
HEADER = ",".join(COLUMNS)
TYPES = list(RULES)
DEFAULT_DEVICE = ("Glucoshare", "Generic CSV", None)


def _source(text: str, name: str = "data.csv") -> SourceText:
    return SourceText(name, text, "utf-8")


def _parse_text(text: str, timezone: str = ZONE) -> tuple[list[ParsedRecord], ParseResult]:
    result = IMPORTER.parse(_source(text), ParseContext(timezone))
    return list(each_record(result.records)), result


def _file(*rows: str, header: str = HEADER) -> str:
    return "\n".join([version_line(), header, *rows]) + "\n"


def _row(time: str, kind: str, **cells: str) -> str:
    """One row of the full header, by column name."""
    values = {"time": time, "type": kind, **cells}
    unknown = set(values) - set(COLUMNS)
    assert not unknown, unknown
    return ",".join(values.get(column, "") for column in COLUMNS)


def _utc(text: str) -> int:
    return round(dt.datetime.fromisoformat(text).timestamp() * 1000)


def _offset_at(zone: str, time_ms: int) -> int:
    offset = dt.datetime.fromtimestamp(time_ms / 1000, tz=zoneinfo.ZoneInfo(zone)).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)


def _parse_export(export: WrittenExport, timezone: str) -> tuple[list[ParsedRecord], ParseResult]:
    decoded = decode_text(export.data, export.file_name)
    source = SourceText(export.file_name, decoded.text, decoded.encoding)
    importer = detect_format(source)
    assert importer.format == "glucoshare_csv"
    result = importer.parse(source, ParseContext(timezone))
    return list(each_record(result.records)), result


def _patient(session: Session, email: str = "csv@example.org", timezone: str = ZONE) -> Patient:
    return add_patient(session, validate_patient(email=email, name="CSV User", timezone=timezone))


def _import(
    session: Session,
    settings: Settings,
    patient: Patient,
    name: str,
    data: bytes,
    timezone: str | None = None,
):
    return import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile(name, data),
        timezone=timezone,
        actor="test",
    )


# --- the template and the documented example --------------------------------------------------------


def test_the_template_is_package_data_with_one_row_of_each_type() -> None:
    text = template_bytes().decode("utf-8")
    lines = text.splitlines()
    assert lines[0] == version_line() == "# glucoshare-csv 1"
    header = next(line for line in lines[1:] if not line.startswith("#"))
    assert header.split(",") == list(COLUMNS)
    comments = [line for line in lines[1:] if line.startswith("#")]
    for column in COLUMNS:
        assert any(column in comment for comment in comments), f"the comments explain {column}"
    assert not any("," in comment or ";" in comment for comment in comments), "one cell in a spreadsheet"
    records, result = _parse_text(text)
    assert result.rejected == []
    assert {r.type for r in records} == set(RULES)
    food_line = next(r.line for r in records if r.type == "food")
    per_type = collections.Counter(r.type for r in records if r.type != "note" or r.line != food_line)
    assert per_type == dict.fromkeys(RULES, 1), "one row of each record type"
    assert len({r.line for r in records}) == len(RULES)
    assert [(d.manufacturer, d.model, d.serial) for d in result.devices.values()] == [
        ("Senseonics", "Eversense E3", "T1234567"),
        ("Roche", "Accu-Chek Guide", "92412345"),
        DEFAULT_DEVICE,
        ("Tandem Diabetes Care", "t:slim X2", "1234567"),
        ("Novo Nordisk", "NovoPen 6", None),
    ]


def test_the_template_imports_cleanly_through_the_service(session: Session, settings: Settings) -> None:
    patient = _patient(session, timezone="America/New_York")  # the template's rows name their offsets or zone
    first = _import(session, settings, patient, "generic-csv-template.csv", template_bytes())
    assert first.format == "glucoshare_csv"
    assert first.rejected_count == 0
    assert first.warnings == []
    assert first.counts == {**dict.fromkeys(RULES, 1), "note": 2}
    assert first.new == sum(first.counts.values()) == 11
    insulin = session.scalars(select(Record).where(Record.type == "insulin")).one()
    assert (insulin.time_ms, insulin.utc_offset_min) == (_utc("2026-01-15T12:00:00+00:00"), -300)
    models = set(session.scalars(select(Device.model).where(Device.patient_id == patient.id)))
    assert models == {"Eversense E3", "Accu-Chek Guide", "Generic CSV", "t:slim X2", "NovoPen 6"}
    again = _import(session, settings, patient, "copy.csv", template_bytes())
    assert (again.new, again.duplicates) == (0, 11)


def test_the_documented_example_reads_as_described() -> None:
    text = DOCS.read_text(encoding="utf-8")
    example = text.split("## Example", 1)[1].split("```", 2)[1].lstrip("\n")
    records, result = _parse_text(example)
    assert result.rejected == []
    assert [(r.type, r.subtype, r.annotation) for r in records if r.type == "cbg"] == [
        ("cbg", "sensor", None),
        ("cbg", "sensor", "low"),
    ]
    assert len(records) == 9  # eight rows, one of them with a text


def test_every_rule_of_the_module_is_in_the_documentation() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name, rule in RULES.items():
        line = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
        for subtype in rule.subtypes:
            assert not subtype or f"`{subtype}`" in line, (name, subtype)
        for unit in rule.units:
            assert f"`{unit}`" in line, (name, unit)
    assert "`x_`" in text


# --- simulated round trips -------------------------------------------------------------------------


@functools.cache
def _timeline(therapy: str) -> Timeline:
    """Four days over Berlin's fall-back change (26 October 2025), with every kind of row."""
    cgm, seed = ("dexcom_g6", 9) if therapy == "pump" else ("libre2", 7)
    return simulate(
        profile(therapy=therapy, cgm=cgm, timezone=ZONE, control=0.05, seed=seed),
        start=dt.date(2025, 10, 24),
        days=4,
    )


def _check_round_trip(
    timeline: Timeline, options: GlucoshareCsvOptions
) -> tuple[list[ParsedRecord], ParseResult]:
    export = write_glucoshare_csv(timeline, options)
    records, result = _parse_export(export, timeline.profile.timezone)
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    for record in records:
        assert record.utc_offset_min == _offset_at(timeline.profile.timezone, record.time_ms)
    rows = timeline_rows(timeline, options)
    durations = collections.Counter(
        (r.type, r.subtype, r.utc_ms, r.duration_ms) for r in rows if r.duration_ms
    )
    assert durations == collections.Counter(
        (r.type, r.subtype, r.time_ms, r.duration_ms) for r in records if r.duration_ms
    )
    devices = {(d.manufacturer, d.model, d.serial) for d in result.devices.values()}
    if options.devices:
        written = {
            (m, model, serial or None) if m else DEFAULT_DEVICE
            for m, model, serial in {r.device for r in rows}
        }
        assert devices == written
    else:
        assert devices == {DEFAULT_DEVICE}
    assert {r.device for r in records} == set(result.devices)
    return records, result


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
@pytest.mark.parametrize("time_style", ["offset", "offset_zoned", "utc", "local", "zoned"])
@pytest.mark.parametrize("therapy", ["pump", "mdi"])
def test_round_trip_every_type_time_style_and_delimiter(
    therapy: str, time_style: str, delimiter: str
) -> None:
    options = GlucoshareCsvOptions(
        time_style=time_style,  # type: ignore[arg-type]
        delimiter=delimiter,  # type: ignore[arg-type]
        decimal_comma=delimiter != ",",
    )
    records, _ = _check_round_trip(_timeline(therapy), options)
    kinds = collections.Counter(r.type for r in records)
    expected = {"cbg", "smbg", "bloodKetone", "food", "note", "physicalActivity", "deviceEvent"}
    expected |= {"basal", "bolus"} if therapy == "pump" else {"insulin"}
    assert set(kinds) == expected
    subtypes = {(r.type, r.subtype) for r in records}
    if therapy == "pump":
        for kind in [
            ("bolus", "extended"),
            ("bolus", "dual"),
            ("basal", "temp"),
            ("basal", "suspend"),
            ("deviceEvent", "prime"),
        ]:
            assert kind in subtypes
    else:
        assert ("cbg", "scan") in subtypes
    assert {r.annotation for r in records if r.type == "cbg"} >= {"low", "high"}


@pytest.mark.parametrize(
    "options",
    [
        GlucoshareCsvOptions(units="mmol/L"),
        GlucoshareCsvOptions(units="mmol/L", delimiter=",", decimal_comma=True),
        GlucoshareCsvOptions(devices=False, comments=False),
        GlucoshareCsvOptions(order="type", time_style="local"),
        GlucoshareCsvOptions(order="newest_first", time_style="zoned"),
        GlucoshareCsvOptions(column_order="reversed", default_subtypes=True),
        GlucoshareCsvOptions(milliseconds=True, time_style="utc"),
        GlucoshareCsvOptions(crlf=True, encoding="utf-8-sig"),
        GlucoshareCsvOptions(encoding="utf-16", delimiter="\t"),
        GlucoshareCsvOptions(spreadsheet=True, delimiter=";", decimal_comma=True, extra_column=True),
    ],
    ids=[
        "mmol",
        "mmol-quoted-comma",
        "no-devices-no-comments",
        "grouped-by-type-local",
        "newest-first-zoned",
        "reversed-columns-default-subtypes",
        "milliseconds-utc",
        "crlf-bom",
        "utf16-tab",
        "spreadsheet",
    ],
)
@pytest.mark.parametrize("therapy", ["pump", "mdi"])
def test_round_trip_every_quirk(therapy: str, options: GlucoshareCsvOptions) -> None:
    _, result = _check_round_trip(_timeline(therapy), options)
    if options.extra_column:
        assert result.notes == [
            "the columns X_row are not stored (columns whose name starts with x_ are ignored)"
        ]
    else:
        assert result.notes == []


def test_local_times_in_the_repeated_hour_carry_their_offset_and_read_exactly() -> None:
    export = write_glucoshare_csv(_timeline("pump"), GlucoshareCsvOptions(time_style="local"))
    lines = export.data.decode().splitlines()
    repeated = [line for line in lines if line.startswith("2025-10-26T02:")]
    assert repeated
    assert all(re.match(r"2025-10-26T02:\d\d:\d\d(\.\d{3})?\+0[12]:00,", line) for line in repeated)
    assert all(
        not re.match(r"\d{4}-.*[+-]\d\d:\d\d,", line)
        for line in lines
        if line not in repeated and line[:1].isdigit()
    )


def test_plain_sensor_readings_come_as_blocks() -> None:
    export = write_glucoshare_csv(_timeline("pump"), GlucoshareCsvOptions(time_style="local"))
    decoded = decode_text(export.data, export.file_name)
    result = IMPORTER.parse(SourceText("x.csv", decoded.text, "utf-8"), ParseContext(ZONE))
    items = list(result.records)
    blocks = [item for item in items if isinstance(item, ReadingBlock)]
    plain = sum(len(block) for block in blocks)
    assert plain > 1000
    assert all(block.type == "cbg" for block in blocks)
    assert plain == sum(1 for r in export.expected if r.type == "cbg" and r.annotation is None)


@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 3),
    start=st.one_of(
        st.dates(dt.date(2021, 1, 1), dt.date(2026, 6, 30)),
        st.sampled_from(
            [dt.date(2025, 3, 29), dt.date(2025, 10, 25), dt.date(2025, 11, 1), dt.date(2025, 4, 5)]
        ),
    ),
    timezone=st.sampled_from(
        ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]
    ),
    therapy=st.sampled_from(["mdi", "pump"]),
    cgm=st.sampled_from(["dexcom_g6", "dexcom_g7", "libre2", "libre3", "guardian4"]),
    control=st.floats(0.0, 1.0),
    options=st.builds(
        GlucoshareCsvOptions,
        time_style=st.sampled_from(["offset", "offset_zoned", "utc", "local", "zoned"]),
        delimiter=st.sampled_from([",", ";", "\t"]),
        decimal_comma=st.booleans(),
        units=st.sampled_from(["mg/dL", "mmol/L"]),
        devices=st.booleans(),
        comments=st.booleans(),
        order=st.sampled_from(["time", "type", "newest_first"]),
        column_order=st.sampled_from(["standard", "reversed"]),
        default_subtypes=st.booleans(),
        milliseconds=st.booleans(),
        crlf=st.booleans(),
        encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
        spreadsheet=st.booleans(),
        extra_column=st.booleans(),
    ),
)
def test_any_simulated_timeline_round_trips(
    seed: int,
    days: int,
    start: dt.date,
    timezone: str,
    therapy: str,
    cgm: str,
    control: float,
    options: GlucoshareCsvOptions,
) -> None:
    timeline = simulate(
        profile(seed=seed, timezone=timezone, therapy=therapy, cgm=cgm, control=control),
        start=start,
        days=days,
    )
    _check_round_trip(timeline, options)


# --- any single valid row --------------------------------------------------------------------------

_ZONES = ["Europe/Berlin", "America/Los_Angeles", "Asia/Kathmandu", "Pacific/Chatham", "UTC"]
_NAME = st.text(alphabet="AbcXyz 09,;\"'-:/#", min_size=1, max_size=20).map(str.strip).filter(bool)
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from('\n\t,;"#'), min_size=1, max_size=40
).map(str.strip)


@st.composite
def _valid_rows(draw: st.DrawFn) -> CsvRow:
    kind = draw(st.sampled_from(TYPES))
    rule = RULES[kind]
    subtype = draw(st.sampled_from(rule.subtypes))
    value, unit, decimals = None, "", 0
    may_have_value = rule.value_subtypes is None or subtype in rule.value_subtypes
    if rule.units and may_have_value and (rule.value == "required" or draw(st.booleans())):
        unit = draw(st.sampled_from(list(rule.units)))
        factor = rule.units[unit]
        decimals = draw(st.integers(0, 3))
        scale = 10**decimals
        low = math.ceil(rule.low / factor * scale) + (1 if rule.above_zero and rule.low == 0 else 0)
        high = math.floor(rule.high / factor * scale)
        if kind == "basal" and subtype == "suspend":
            high = 0
        value = draw(st.integers(low, high)) / scale
    annotation = draw(st.sampled_from(["", "low", "high"])) if rule.glucose else ""
    duration = draw(st.none() | st.integers(1, 1440 * 60_000)) if subtype in rule.durations else None
    text = draw(_TEXT) if kind == "note" or draw(st.booleans()) else ""
    if kind == "note" and not text:
        text = "x"
    device = NO_DEVICE
    if draw(st.booleans()):
        device = (draw(_NAME), draw(_NAME), draw(st.just("") | _NAME))
    return CsvRow(
        utc_ms=draw(st.integers(978_307_200_000, 1_767_225_600_000)),
        type=kind,
        subtype=subtype,
        value=value,
        unit=unit,
        decimals=decimals,
        annotation=annotation,
        duration_ms=duration,
        text=text,
        device=device,
        timezone=draw(st.none() | st.sampled_from(_ZONES)),
    )


@given(
    row=_valid_rows(),
    zone=st.sampled_from(_ZONES),
    time_style=st.sampled_from(["offset", "offset_zoned", "utc", "local", "zoned"]),
    delimiter=st.sampled_from([",", ";", "\t"]),
    decimal_comma=st.booleans(),
    default_subtypes=st.booleans(),
)
def test_any_valid_row_round_trips(
    row: CsvRow, zone: str, time_style: str, delimiter: str, decimal_comma: bool, default_subtypes: bool
) -> None:
    options = GlucoshareCsvOptions(
        time_style=time_style,  # type: ignore[arg-type]
        delimiter=delimiter,  # type: ignore[arg-type]
        decimal_comma=decimal_comma,
        default_subtypes=default_subtypes,
    )
    export = write_rows([row], zone, options)
    records, result = _parse_export(export, zone)
    assert result.rejected == []
    assert [(r.type, r.subtype, r.time_ms, r.value, r.annotation) for r in records] == [
        (e.type, e.subtype, e.utc_ms, e.value, e.annotation) for e in export.expected
    ]
    first = records[0]
    assert first.utc_offset_min == _offset_at(row.timezone or zone, row.utc_ms)
    assert first.duration_ms == row.duration_ms
    if row.type in ("cbg", "smbg", "bloodKetone"):
        assert (first.orig_value, first.orig_unit) == (row.value, row.unit)
    if row.text:
        texted = records[-1]
        assert texted.payload == {"text": row.text}
        assert texted.identity == row.text
    device = result.devices[first.device]
    manufacturer, model, serial = row.device
    assert (device.manufacturer, device.model, device.serial) == (
        (manufacturer, model, serial or None) if manufacturer else DEFAULT_DEVICE
    )


# --- mutated files ---------------------------------------------------------------------------------

_BASE = _file(
    _row(
        "2026-01-15T07:00:00+01:00",
        "cbg",
        value="142",
        unit="mg/dL",
        device_manufacturer="A",
        device_model="B",
    ),
    _row("2026-01-15T07:05", "cbg", value="7,9", unit="mmol/L", timezone="Europe/Berlin"),
    _row("2026-01-15T07:10Z", "smbg", subtype="manual", value="99", unit="mg/dL", annotation="low"),
    _row("2026-01-15T07:15", "basal", subtype="temp", value="0.5", unit="U/h", duration_min="30"),
    _row("2026-01-15T07:20", "bolus", subtype="dual", value="2.5", unit="U", duration_min="60"),
    _row("2026-01-15T07:25", "deviceEvent", subtype="prime", value="0.3", unit="U", text='"tubing, fill"'),
    _row("2026-01-15T07:30", "note", text='"two\nlines"'),
    _row("2026-01-15T07:35", "physicalActivity", duration_min="45"),
    _row("2026-01-15T07:40", "food", value="30", unit="g", text="toast"),
)
_NOISE = [*',;\t"\n\r#0123456789.:+-TZ xé€', "", "2026-", "mmol/L", "cbg", "-00:00", '""']


@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_BASE)),
            st.sampled_from(["insert", "delete", "replace"]),
            st.sampled_from(_NOISE),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_files_never_raise_anything_but_ingest_errors(mutations: list[tuple[int, str, str]]) -> None:
    text = _BASE
    for position, action, noise in mutations:
        at = min(position, len(text))
        if action == "insert":
            text = text[:at] + noise + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + noise + text[at + 1 :]
    source = _source(text)
    if not IMPORTER.detect(source.head()):
        return
    failure: InputError | None = None
    try:
        result = IMPORTER.parse(source, ParseContext(ZONE))
        records = list(each_record(result.records))
    except InputError as exc:  # anything else fails the test
        failure = exc
    if failure is not None:
        assert isinstance(failure, MalformedFileError)
        assert failure.message.startswith("data.csv: line ")
        return
    lines = text.count("\n") + 1
    for record in records:
        assert record.type in RULES
        assert record.subtype in SUBTYPES[record.type]
        assert 2 <= record.line <= lines
        assert record.device in result.devices
        if record.value is not None:
            rule = RULES[record.type]
            assert math.isfinite(record.value)
            assert rule.low <= record.value <= rule.high
    for rejected in result.rejected:
        assert 2 <= rejected.line <= lines


# --- the rules, one by one -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "expected_utc", "offset"),
    [
        ("2026-01-15T07:00:00+01:00", "2026-01-15T06:00:00+00:00", 60),
        ("2026-01-15T07:00:00+0530", "2026-01-15T01:30:00+00:00", 330),
        ("2026-01-15T07:00-03", "2026-01-15T10:00:00+00:00", -180),
        ("2026-01-15 07:00:00.123456+01:00", "2026-01-15T06:00:00.123+00:00", 60),
        ("2026-01-15T06:00:00Z", "2026-01-15T06:00:00+00:00", 60),
        ("2026-07-15T06:00:00-00:00", "2026-07-15T06:00:00+00:00", 120),
        ("2026-07-15T06:00:00+00:00", "2026-07-15T06:00:00+00:00", 0),
        ("2026-01-15T07:00", "2026-01-15T06:00:00+00:00", 60),
        ('"2026-07-15T7:00:05,5"', "2026-07-15T05:00:05.500+00:00", 120),
        (" 2026-07-15t07:00 ", "2026-07-15T05:00:00+00:00", 120),
    ],
)
def test_every_time_form(time: str, expected_utc: str, offset: int) -> None:
    records, result = _parse_text(_file(_row(time, "food", value="10", unit="g")))
    assert result.rejected == []
    assert [(r.time_ms, r.utc_offset_min) for r in records] == [(_utc(expected_utc), offset)]


def test_a_row_time_zone_places_local_times_and_checks_offsets() -> None:
    rows = [
        _row("2026-01-15T07:00", "food", value="10", unit="g", timezone="America/New_York"),
        _row("2026-01-15T07:00-05:00", "food", value="11", unit="g", timezone="America/New_York"),
        _row("2026-01-15T12:00Z", "food", value="12", unit="g", timezone="Asia/Kathmandu"),
        _row("2026-01-15T07:00+01:00", "food", value="13", unit="g", timezone="America/New_York"),
    ]
    records, result = _parse_text(_file(*rows))
    assert [(r.value, r.time_ms, r.utc_offset_min) for r in records] == [
        (10.0, _utc("2026-01-15T12:00:00+00:00"), -300),
        (11.0, _utc("2026-01-15T12:00:00+00:00"), -300),
        (12.0, _utc("2026-01-15T12:00:00+00:00"), 345),
    ]
    assert result.rejected == [
        RejectedRow(6, "time: the UTC offset is not the time zone's offset at that time")
    ]


def test_the_repeated_hour_of_local_times_is_placed_by_order_and_reported() -> None:
    """Readings every 20 minutes through New York's fall-back change, in a row time zone of their own."""
    walls = ["00:40", "01:00", "01:20", "01:40", "01:00", "01:20", "01:40", "02:00"]
    rows = [
        _row(f"2025-11-02T{wall}", "cbg", value="100", unit="mg/dL", timezone="America/New_York")
        for wall in walls
    ]
    records, result = _parse_text(_file(*rows), "Europe/Berlin")
    start = _utc("2025-11-02T04:40:00+00:00")
    assert [r.time_ms for r in records] == [start + 20 * 60_000 * step for step in range(8)]
    assert [r.utc_offset_min for r in records] == [-240] * 4 + [-300] * 4
    assert result.notes == [
        (
            "6 records fall in the hour repeated by a daylight-saving change in America/New_York; "
            "their order placed them in the first or second pass of that hour"
        )
    ]


def test_names_are_case_insensitive_and_subtypes_have_defaults() -> None:
    header = "TIME , Type,SubType,VALUE,Unit"
    rows = [
        "2026-01-15T07:00,CBG,,120,MG/DL",
        "2026-01-15T07:05,smbg,,6.5,mmol/l",
        "2026-01-15T07:10,bloodketone,,0.2,MMOL/L",
        "2026-01-15T07:15,Insulin,,4,u",
        "2026-01-15T07:20,basal,,0.7,u/h",
        "2026-01-15T07:25,bolus,,1,U",
        "2026-01-15T07:30,physicalactivity,,,",
        "2026-01-15T07:35,deviceevent,SiteChange,,",
    ]
    records, result = _parse_text(_file(*rows, header=header))
    assert result.rejected == []
    assert [(r.type, r.subtype, r.orig_unit) for r in records] == [
        ("smbg", "meter", "mmol/L"),
        ("bloodKetone", "", "mmol/L"),
        ("insulin", "unknown", None),
        ("basal", "scheduled", None),
        ("bolus", "normal", None),
        ("physicalActivity", "unknown", None),
        ("deviceEvent", "siteChange", None),
        ("cbg", "sensor", "mg/dL"),
    ]
    assert records[0].value == pytest.approx(6.5 * MGDL_PER_MMOLL)


def test_texts_become_payloads_identities_and_extra_notes() -> None:
    rows = [
        _row("2026-01-15T07:00", "deviceEvent", subtype="alarm", text="Low glucose"),
        _row("2026-01-15T07:00", "deviceEvent", subtype="alarm", text="Signal loss"),
        _row("2026-01-15T07:05", "food", value="40", unit="g", text="  apple  "),
        _row("2026-01-15T07:10", "note", text='"first line\nsecond, line"'),
        _row("2026-01-15T07:15", "cbg", value="101", unit="mg/dL", text="after coffee"),
    ]
    records, result = _parse_text(_file(*rows))
    assert result.rejected == []
    got = [(r.line, r.type, r.payload, r.identity) for r in records]
    assert got == [
        (3, "deviceEvent", {"text": "Low glucose"}, "Low glucose"),
        (4, "deviceEvent", {"text": "Signal loss"}, "Signal loss"),
        (5, "food", None, ""),
        (5, "note", {"text": "apple"}, "apple"),
        (6, "note", {"text": "first line\nsecond, line"}, "first line\nsecond, line"),
        (8, "cbg", None, ""),
        (8, "note", {"text": "after coffee"}, "after coffee"),
    ]


def test_layout_leniency_blank_lines_padding_short_rows_and_ignored_columns() -> None:
    lines = [
        '"# glucoshare-csv 1",,,',
        "",
        '# a comment, with commas; and a stray quote "',
        ",,,",
        "x_source,time,type,value,unit,,",
        "lab,2026-01-15T07:00,cbg,120,mg/dL,,",
        "",
        ",,,,,,",
        "lab,2026-01-15T07:05,cbg,121",
        "lab,2026-01-15T07:10,cbg,122,mg/dL,,extra",
    ]
    records, result = _parse_text("".join(line + "\r\n" for line in lines))
    assert [(r.line, r.value) for r in records] == [(6, 120.0)]
    assert result.rejected == [
        RejectedRow(9, "unit: empty; a cbg value needs its unit (mg/dL or mmol/L)"),
        RejectedRow(10, "the row has more cells than the header has columns"),
    ]
    assert result.notes == [
        "the columns x_source are not stored (columns whose name starts with x_ are ignored)"
    ]


_ROW_RULES: list[tuple[str, str, str]] = [
    ("glucose in U", _row("2026-01-15T07:00", "cbg", value="120", unit="U"), "unit: must be mg/dL or mmol/L for cbg"),
    ("ketone in mg/dL", _row("2026-01-15T07:00", "bloodKetone", value="3", unit="mg/dL"), "unit: must be mmol/L for bloodKetone"),
    ("unit on a note", _row("2026-01-15T07:00", "note", unit="g", text="x"), "unit: note records have no value and no unit"),
    ("empty type", _row("2026-01-15T07:00", "", value="1", unit="g"), "type: empty"),
    ("unknown type", _row("2026-01-15T07:00", "meal", value="1", unit="g"), "type: unknown; version 1 reads cbg, smbg"),
    ("wizard", _row("2026-01-15T07:00", "Wizard", value="1", unit="g"), "type: wizard records are not part of version 1"),
    ("bad subtype", _row("2026-01-15T07:00", "cbg", subtype="meter", value="100", unit="mg/dL"), "subtype: must be one of sensor, scan for cbg"),
    ("subtype on food", _row("2026-01-15T07:00", "food", subtype="snack", value="10", unit="g"), "subtype: food records have no subtype"),
    ("event without subtype", _row("2026-01-15T07:00", "deviceEvent"), "subtype: empty; deviceEvent needs one of alarm"),
    ("no value", _row("2026-01-15T07:00", "insulin", unit="U"), "value: empty; insulin records need one"),
    ("not a number", _row("2026-01-15T07:00", "cbg", value="12O", unit="mg/dL"), "value: not a number"),
    ("thousands separator", _row("2026-01-15T07:00", "food", value='"1.234,5"', unit="g"), "value: not a number"),
    ("glucose too high", _row("2026-01-15T07:00", "cbg", value="1200", unit="mg/dL"), "value: out of range for cbg (10–1000 mg/dL (0.6–55.5 mmol/L))"),
    ("mmol as mg/dL", _row("2026-01-15T07:00", "smbg", value="6.5", unit="mg/dL"), "value: out of range for smbg"),
    ("mg/dL as mmol", _row("2026-01-15T07:00", "cbg", value="120", unit="mmol/L"), "value: out of range for cbg"),
    ("zero insulin", _row("2026-01-15T07:00", "insulin", value="0", unit="U"), "value: out of range for insulin (above 0 and at most 100 U)"),
    ("negative carbs", _row("2026-01-15T07:00", "food", value="-5", unit="g"), "value: out of range for food (0–1000 g)"),
    ("suspend with a rate", _row("2026-01-15T07:00", "basal", subtype="suspend", value="0.5", unit="U/h"), "value: a suspended basal has the rate 0 U/h"),
    ("value on a note", _row("2026-01-15T07:00", "note", value="5", text="x"), "value: note records have no value"),
    ("value on an alarm", _row("2026-01-15T07:00", "deviceEvent", subtype="alarm", value="5", unit="U"), "value: deviceEvent records have no value (only a prime has one, in U)"),
    ("value without unit", _row("2026-01-15T07:00", "food", value="5"), "unit: empty; a food value needs its unit (g)"),
    ("unit without value", _row("2026-01-15T07:00", "deviceEvent", subtype="prime", unit="U"), "unit: given without a value"),
    ("bad annotation", _row("2026-01-15T07:00", "cbg", value="40", unit="mg/dL", annotation="LO"), "annotation: must be low or high"),
    ("annotation on food", _row("2026-01-15T07:00", "food", value="40", unit="g", annotation="high"), "annotation: low or high is only for glucose"),
    ("duration on food", _row("2026-01-15T07:00", "food", value="40", unit="g", duration_min="5"), "duration_min: only basal, extended and dual boluses"),
    ("duration on a normal bolus", _row("2026-01-15T07:00", "bolus", value="4", unit="U", duration_min="5"), "duration_min: only basal"),
    ("zero duration", _row("2026-01-15T07:00", "basal", value="0.4", unit="U/h", duration_min="0"), "duration_min: must be above 0 and at most 1440"),
    ("long duration", _row("2026-01-15T07:00", "physicalActivity", duration_min="1441"), "duration_min: must be above 0 and at most 1440"),
    ("duration not a number", _row("2026-01-15T07:00", "physicalActivity", duration_min="1h"), "duration_min: not a number"),
    ("note without text", _row("2026-01-15T07:00", "note"), "text: empty; a note needs its text"),
    ("text too long", _row("2026-01-15T07:00", "note", text="y" * 2001), "text: longer than 2000 characters"),
    ("serial alone", _row("2026-01-15T07:00", "food", value="4", unit="g", device_serial="S1"), "device: a device needs device_manufacturer and device_model"),
    ("long device name", _row("2026-01-15T07:00", "food", value="4", unit="g", device_manufacturer="M", device_model="z" * 101), "device: names and serial are at most 100 characters"),
    ("no time", _row("", "food", value="4", unit="g"), "time: empty"),
    ("day-first time", _row("15.01.2026 07:00", "food", value="4", unit="g"), "time: not ISO 8601"),
    ("no such date", _row("2026-02-30T07:00", "food", value="4", unit="g"), "time: not a real calendar date"),
    ("no such hour", _row("2026-02-03T25:00", "food", value="4", unit="g"), "time: not a real time of day"),
    ("offset out of range", _row("2026-02-03T07:00+15:00", "food", value="4", unit="g"), "time: UTC offset out of range (-12:00 to +14:00)"),
    ("offset not the zone's", _row("2026-02-03T07:00+02:00", "food", value="4", unit="g", timezone="Europe/Berlin"), "time: the UTC offset is not the time zone's offset"),
    ("unknown zone", _row("2026-02-03T07:00", "food", value="4", unit="g", timezone="Berlin/Mitte"), "timezone: unknown; give an IANA name such as Europe/Berlin"),
    ("extra cells", _row("2026-02-03T07:00", "food", value="4", unit="g") + ",1,2", "the row has more cells than the header has columns"),
    ("text after a quote", _row("2026-02-03T07:00", "food", value='"4"0', unit="g"), "a quoted cell has text after its closing quote"),
]  # fmt: skip
_SECRETS = (
    "12O",
    "1200",
    "meal",
    "snack",
    "Berlin/Mitte",
    "15.01.2026",
    "+15:00",
    "LO",
    "1h",
    "S1",
    "yyyy",
    "zzzz",
)


@pytest.mark.parametrize(
    ("row", "reason"), [case[1:] for case in _ROW_RULES], ids=[case[0] for case in _ROW_RULES]
)
def test_each_row_rule_rejects_the_row_with_its_line_and_keeps_the_others(row: str, reason: str) -> None:
    good = _row("2026-01-15T06:00", "food", value="20", unit="g")
    records, result = _parse_text(_file(good, row, good.replace("T06:00", "T06:30")))
    assert [(r.line, r.type) for r in records] == [(3, "food"), (5, "food")]
    assert [r.line for r in result.rejected] == [4]
    assert result.rejected[0].reason.startswith(reason)
    assert not any(secret in result.rejected[0].reason for secret in _SECRETS)
    assert result.devices.keys() == {r.device for r in records}, "no device of a rejected row is registered"


# --- detection -------------------------------------------------------------------------------------


def _other_exports() -> dict[str, bytes]:
    timeline = simulate(profile(therapy="pump", seed=3), start=dt.date(2025, 6, 1), days=1)
    header = ",".join(EXPORT_FIELDS) + "\r\n1,cbg,sensor,2025-06-01T10:00:00Z,,,120,mg/dL\r\n"
    return {
        "dexcom_clarity": write_clarity(timeline).data,
        "libreview": write_libreview(timeline).data,
        "carelink": write_carelink(timeline).data,
        "glucoshare_diary": diary_document([DiaryEntry(time=dt.datetime(2025, 6, 1, 8), carbs_g=20)]),
        "export csv": header.encode(),
        "headed but unversioned": f"{HEADER}\n{_row('2026-01-15T07:00', 'food', value='4', unit='g')}\n".encode(),
        "a comment about it": b"# this is a glucoshare-csvfile\ntime,type\n",
    }


def test_detection_is_by_the_version_line_both_ways() -> None:
    for name in ("export.txt", "Clarity_Export_Person_2025-06-02_120000.csv", "glucose.csv"):
        export = write_glucoshare_csv(_timeline("mdi"))
        decoded = decode_text(export.data, name)
        source = SourceText(name, decoded.text, decoded.encoding)
        assert detect_format(source).format == "glucoshare_csv"
        for importer in importers():
            assert importer.format == "glucoshare_csv" or not importer.detect(source.head()), importer.format
    for what, data in _other_exports().items():
        decoded = decode_text(data, "x.csv")
        source = SourceText("x.csv", decoded.text, decoded.encoding)
        assert not IMPORTER.detect(source.head()), what
        if what in RULES or what in {i.format for i in importers()}:
            assert detect_format(source).format == what
    for variant in (
        "# glucoshare-csv 2",
        '"# glucoshare-csv 1";;;',
        "#glucoshare-csv 1",
        "\ufeff# GLUCOSHARE-CSV 1",
        "# glucoshare-csv",
    ):
        assert IMPORTER.detect([variant]), variant


# --- bad input through the import service: a clear error and nothing stored --------------------------


@pytest.fixture
def stored(engine: Engine, settings: Settings) -> Patient:
    """A committed patient with one committed upload (the template): the state a refusal keeps."""
    template = IncomingFile("template.csv", template_bytes())
    return committed_upload(
        engine, settings, template, email="csv@example.org", name="CSV User", timezone=ZONE
    )


_GOOD = _row("2026-01-15T07:00", "food", value="20", unit="g")
_FILE_CASES: list[tuple[str, str, type[InputError], str]] = [
    ("no version", "# glucoshare-csv\n" + HEADER + "\n" + _GOOD + "\n", MalformedFileError,
     "bad.csv: line 1: the version line must end with a version number, as in '# glucoshare-csv 1'"),
    ("later version", _file(_GOOD).replace(" 1\n", " 2\n", 1), MalformedFileError,
     ("bad.csv: line 1: this file was written for version 2 of the Glucoshare generic CSV; "
      "this Glucoshare reads version 1")),
    ("version zero", _file(_GOOD).replace(" 1\n", " 0\n", 1), MalformedFileError,
     "bad.csv: line 1: there is no version 0; this Glucoshare reads version 1"),
    ("decimal version", _file(_GOOD).replace(" 1\n", " 1.1\n", 1), MalformedFileError,
     "bad.csv: line 1: the version line must end with a version number"),
    # Found by review after the fuzzer (tests/fuzz) found the same mistake in the Smart Pix importer:
    # "\u00b2" passes str.isdigit() but not int().
    ("superscript version", _file(_GOOD).replace(" 1\n", " \u00b2\n", 1), MalformedFileError,
     "bad.csv: line 1: the version line must end with a version number"),
    ("no header", version_line() + "\n# only comments\n\n", MalformedFileError,
     "bad.csv: line 3: no header row follows the version line and comments"),
    ("no type column", _file(_GOOD, header=HEADER.replace(",type,", ",kind,")), MalformedFileError,
     "bad.csv: line 2: the header row must name the columns time and type"),
    ("unknown column", _file(_GOOD, header=HEADER.replace(",value,", ",vaule,")), MalformedFileError,
     "bad.csv: line 2: unknown column 'vaule'; version 1 has the columns time, timezone"),
    # A damaged header's "column" may be huge: the message names it, cut to 40 characters.
    ("huge unknown column", _file(_GOOD, header=HEADER.replace(",value,", "," + "v" * 10_000 + ",")),
     MalformedFileError, f"bad.csv: line 2: unknown column '{'v' * 40}'… (10,000 characters); version 1 has"),
    ("column twice", _file(_GOOD, header=HEADER.replace(",value,", ",unit,")), MalformedFileError,
     "bad.csv: line 2: the column 'unit' appears twice"),
    ("unnamed column", _file(_GOOD, header=HEADER.replace(",value,", ",,")), MalformedFileError,
     "bad.csv: line 2: column 5 of the header has no name"),
    ("quote never closed", _file(_GOOD, _row("2026-01-15T07:05", "note", text='"open'), _GOOD), MalformedFileError,
     "bad.csv: line 4: a quoted cell is never closed (truncated file?)"),
    ("only a header", _file(), NoRecordsError, "bad.csv: the file holds no records"),
    ("unversioned", HEADER + "\n" + _GOOD + "\n", UnknownFormatError, "bad.csv: unrecognised format"),
    ("truncated", _file(_GOOD, _GOOD)[: -len(_GOOD) + 7], MalformedFileError,
     "bad.csv: line 4: the file ends in the middle of a row (truncated?)"),
]  # fmt: skip
_FILE_CASES += [
    (name, _file(row, row), MalformedFileError, f"bad.csv: line 3: {reason}")
    for name, row, reason in _ROW_RULES
]


def test_bad_input_is_refused_with_a_clear_error_and_changes_nothing(
    engine: Engine, settings: Settings, stored: Patient
) -> None:
    """Every broken file and every row rule (a file of only such rows), one import each.

    One test for all cases: a database per case would cost far more than the imports.
    """
    for case, text, error, message in _FILE_CASES:
        bad = IncomingFile("bad.csv", text.encode())
        refused = refused_unchanged(engine, settings, stored.id, bad, error)
        assert refused.message.startswith(message), (case, refused.message)
        assert refused.exit_code == 2, case


# --- end to end through the service, on both databases ---------------------------------------------


def test_import_service_stores_a_simulated_file_once(session: Session, settings: Settings) -> None:
    timeline = _timeline("pump")
    export = write_glucoshare_csv(timeline, GlucoshareCsvOptions(time_style="zoned", units="mmol/L"))
    patient = _patient(session, timezone="Asia/Tokyo")  # the file names its zone on every row
    first = _import(session, settings, patient, export.file_name, export.data)
    expected = collections.Counter(e.type for e in export.expected)
    total = sum(expected.values())
    assert first.format == "glucoshare_csv"
    assert first.counts == dict(sorted(expected.items()))
    assert first.rejected_count == 0
    assert first.new + first.duplicates == total
    assert first.duplicates == 0
    assert first.device is not None
    assert (first.device.manufacturer, first.device.model) == ("Dexcom", "G6")
    devices = session.scalars(select(Device).where(Device.patient_id == patient.id)).all()
    assert {(d.manufacturer, d.model, d.serial) for d in devices} == {
        ("Dexcom", "G6", timeline.device_serials["reader"]),
        ("Roche", "Accu-Chek Guide", timeline.device_serials["meter"]),
        ("Tandem Diabetes Care", "t:slim X2", timeline.device_serials["pump"]),
        DEFAULT_DEVICE,
    }
    assert first.warnings == [], "rows in the repeated hour carry their offset"
    assert session.scalar(select(func.count()).select_from(Record)) == total
    again = _import(session, settings, patient, "again.csv", export.data)
    assert (again.new, again.duplicates) == (0, total)


def test_single_bad_rows_are_reported_through_the_service(session: Session, settings: Settings) -> None:
    rows = [
        _row(f"2026-01-15T07:{minute:02d}", "cbg", value=str(100 + minute), unit="mg/dL")
        for minute in range(30)
    ]
    rows[4] = _row("2026-01-15T07:04", "cbg", value="120", unit="U")
    rows[9] = _row("2026-01-15T07:09", "cbg", value="5000", unit="mg/dL")
    patient = _patient(session)
    upload = _import(session, settings, patient, "lab.csv", _file(*rows).encode())
    assert upload.counts == {"cbg": 28}
    assert [(r.line, r.reason) for r in upload.rejected] == [
        (7, "unit: must be mg/dL or mmol/L for cbg"),
        (12, "value: out of range for cbg (10–1000 mg/dL (0.6–55.5 mmol/L))"),
    ]
    assert upload.device is not None
    assert (upload.device.manufacturer, upload.device.model, upload.device.serial) == DEFAULT_DEVICE


def test_a_row_value_survives_exactly_with_its_original(session: Session, settings: Settings) -> None:
    patient = _patient(session)
    row = _row(
        "2026-01-15T07:00:00+01:00",
        "cbg",
        value='"5,5"',
        unit="mmol/L",
        device_manufacturer="Senseonics",
        device_model="Eversense E3",
        device_serial="T9",
    )
    _import(session, settings, patient, "eversense.csv", _file(row).encode())
    record = session.scalars(select(Record)).one()
    assert (record.value, record.orig_value, record.orig_unit) == (5.5 * MGDL_PER_MMOLL, 5.5, "mmol/L")
    assert (record.time_ms, record.utc_offset_min, record.source_line) == (
        _utc("2026-01-15T06:00:00+00:00"),
        60,
        3,
    )
