"""xDrip+ SiDiary CSV importer: simulated round trips in every variant, time streams, bad input."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import io
import zipfile
import zoneinfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.base import ParseContext, ParsedRecord, ParseResult, SourceText, each_record
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import MalformedFileError, NoRecordsError, UnknownFormatError
from glucoshare.ingest.registry import detect_format, importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file, import_files
from glucoshare.ingest.xdrip import XDripImporter
from glucoshare.records.schemas import iso_utc
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.libreview import write_libreview
from glucoshare.simulator.writers.tidepool import TidepoolOptions, write_tidepool
from glucoshare.simulator.writers.xdrip import XDripOptions, write_xdrip
from tests.ingest.helpers import (
    committed_upload,
    expected_keys,
    parse_export,
    parsed_keys,
    profile,
    refused_unchanged,
)

IMPORTER = XDripImporter()
HEADER = "DAY;TIME;UDT_CGMS;BG_LEVEL;CH_GR;BOLUS;REMARK\n"
ZONE = "Europe/Berlin"


def _parse_text(text: str, timezone: str = "UTC") -> tuple[list[ParsedRecord], ParseResult]:
    result = IMPORTER.parse(SourceText("export.csv", text, "utf-8"), ParseContext(timezone))
    records = sorted(each_record(result.records), key=lambda r: (r.line, r.type))
    return records, result


def _utc(text: str, timezone: str = "UTC") -> int:
    wall = dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return int(wall.timestamp() * 1000)


@functools.cache
def _timeline(therapy: str = "mdi") -> Timeline:
    return simulate(profile(control=0.1, seed=9, therapy=therapy), start=dt.date(2025, 6, 1), days=4)


# --- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize("therapy", ["mdi", "pump"])
@pytest.mark.parametrize(
    "options",
    [
        XDripOptions(),
        XDripOptions(old_header=True),
        XDripOptions(crlf=True),
        XDripOptions(duplicates=True),
        XDripOptions(combine_treatments=True),
        XDripOptions(tricky_remarks=True),
        XDripOptions(crlf=True, duplicates=True, combine_treatments=True, tricky_remarks=True),
    ],
    ids=["plain", "old-header", "crlf", "duplicates", "combined", "remarks", "all"],
)
def test_round_trip_every_variant(therapy: str, options: XDripOptions) -> None:
    export = write_xdrip(_timeline(therapy), options)
    fmt, records, result = parse_export(export, ZONE)
    assert fmt == "xdrip"
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    assert {r.device for r in records} == {"xdrip"}
    device = result.devices["xdrip"]
    assert (device.manufacturer, device.model, device.serial) == ("xDrip+ (open source)", "xDrip+ app", None)
    assert all(r.orig_unit == "mg/dL" for r in records if r.type in ("cbg", "smbg"))
    if options.old_header:
        assert {r.type for r in records} == {"cbg"}
    else:
        assert {"cbg", "smbg", "food", "insulin"} <= {r.type for r in records}
    if options.duplicates:
        assert result.notes and "only the first of each minute is stored" in result.notes[0]
    else:
        assert result.notes == []


def test_out_of_range_values_are_annotated_like_the_app_shows_them() -> None:
    timeline = simulate(profile(control=0.05, seed=2), start=dt.date(2025, 6, 1), days=6)
    export = write_xdrip(timeline)
    _, records, _ = parse_export(export, ZONE)
    lows = [r for r in records if r.annotation == "low"]
    highs = [r for r in records if r.annotation == "high"]
    assert lows, "the simulation must produce LOW readings"
    assert highs, "the simulation must produce HIGH readings"
    assert {r.value for r in lows} == {39.0}
    assert {r.value for r in highs} == {400.0}
    assert all(r.type == "cbg" for r in lows + highs)


def test_blocks_are_not_in_time_order_and_each_is_its_own_stream() -> None:
    export = write_xdrip(_timeline())
    lines = export.data.decode().splitlines()
    _, records, _ = parse_export(export, ZONE)
    by_line = {r.line: r for r in records}
    kinds = [by_line[n].type for n in range(2, len(lines) + 1) if n in by_line]
    first_smbg, first_food = kinds.index("smbg"), kinds.index("food")
    assert set(kinds[:first_smbg]) == {"cbg"}
    assert first_smbg < first_food
    assert by_line[first_smbg + 2].time_ms < by_line[first_smbg + 1].time_ms, "the file steps back in time"


@pytest.mark.parametrize(
    ("timezone", "start"),
    [
        ("America/New_York", dt.date(2025, 3, 7)),
        ("America/New_York", dt.date(2025, 10, 31)),
        ("Europe/Berlin", dt.date(2025, 3, 28)),
        ("Europe/Berlin", dt.date(2025, 10, 24)),
    ],
)
def test_daylight_saving_transitions_round_trip(timezone: str, start: dt.date) -> None:
    timeline = simulate(profile(timezone=timezone, seed=3), start=start, days=4)
    export = write_xdrip(timeline)
    _, records, _ = parse_export(export, timezone)
    assert parsed_keys(records) == expected_keys(export.expected)
    assert len(export.expected) == len(timeline.cgm_ms) + len(timeline.events), "no row was left out"
    cgm = [r.time_ms for r in records if r.type == "cbg"]
    assert len(cgm) == len(set(cgm)), "no two readings collapse into one instant"
    assert {r.utc_offset_min for r in records} == {
        int(dt.datetime(2025, m, 1, tzinfo=zoneinfo.ZoneInfo(timezone)).utcoffset().total_seconds()) // 60
        for m in (1, 7)
    }
    for r in records:
        wall = dt.datetime.fromtimestamp(r.time_ms / 1000, tz=zoneinfo.ZoneInfo(timezone))
        assert wall.utcoffset() == dt.timedelta(minutes=r.utc_offset_min)


def test_the_repeated_hour_is_placed_by_the_order_of_the_cgm_block() -> None:
    text = HEADER + "".join(
        f"26.10.2025;{stamp};{value};;;;\n"
        for stamp, value in [("01:50", 100), ("02:10", 101), ("02:50", 102), ("02:10", 103), ("03:10", 104)]
    )
    records, _ = _parse_text(text, "Europe/Berlin")
    first = _utc("2025-10-25T23:50", "UTC")
    assert [(r.time_ms - first) // 60_000 for r in records] == [0, 20, 60, 80, 140]
    assert [r.utc_offset_min for r in records] == [120, 120, 120, 60, 60]


def test_readings_sharing_a_minute_keep_the_first() -> None:
    timeline = simulate(profile(seed=12), start=dt.date(2025, 6, 1), days=1, cgm_interval_s=30)
    export = write_xdrip(timeline)
    _, records, result = parse_export(export, ZONE)
    assert parsed_keys(records) == expected_keys(export.expected)
    cgm = [r for r in records if r.type == "cbg"]
    assert len(cgm) < len(timeline.cgm_ms) - 1000
    dropped = len(timeline.cgm_ms) - len(cgm)
    note = (
        f"{dropped} CGM readings fall in the same minute as the reading before them (xDrip+ writes times "
        "to the minute); only the first of each minute is stored"
    )
    assert result.notes == [note]
    text = HEADER + "01.06.2025;10:00;120;;;;\n01.06.2025;10:00;125;;;;\n01.06.2025;10:01;130;;;;\n"
    records, result = _parse_text(text)
    assert [(r.line, r.value) for r in records] == [(2, 120.0), (4, 130.0)]


def test_treatment_rows_map_to_food_insulin_and_notes() -> None:
    text = HEADER + (
        "01.06.2025;10:00;;;45;4.5;Pizza; with extra cheese||and salad\n"
        "01.06.2025;11:00;;;;0.05;\n"
        "01.06.2025;12:00;;;12.5;;\n"
        "01.06.2025;13:00;;;;;Sensor Start\n"
        "01.06.2025;14:00;;118;;;\n"
    )
    records, result = _parse_text(text)
    assert result.rejected == []
    assert [(r.line, r.type, r.subtype, r.value) for r in records] == [
        (2, "food", "", 45.0),
        (2, "insulin", "unknown", 4.5),
        (2, "note", "", None),
        (3, "insulin", "unknown", 0.05),
        (4, "food", "", 12.5),
        (5, "note", "", None),
        (6, "smbg", "calibration", 118.0),
    ]
    note = records[2]
    assert note.payload == {"text": "Pizza; with extra cheese\nand salad"}
    assert note.identity == "Pizza; with extra cheese\nand salad"
    assert records[6].orig_value == 118.0
    assert records[6].orig_unit == "mg/dL"


def test_bad_rows_are_reported_with_their_line_and_the_rest_imports() -> None:
    text = HEADER + (
        "01.06.2025;10:00;120;;;;\n"
        "01.06.2025;10:05;abc;;;;\n"
        "31.06.2025;10:10;125;;;;\n"
        "01.06.2025;25:10;125;;;;\n"
        "01.06.2025;10:15;0;;;;\n"
        "01.06.2025;10:20;-3;;;;\n"
        "01.06.2025;10:25;1200;;;;\n"
        "01.06.2025\n"
        "01.06.2025;10:30;;;-5;;\n"
        "01.06.2025;10:35;;;;x;\n"
        "01.06.2025;10:40;;;;;\n"
        "\n"
        "2025-06-01;10:45;130;;;;\n"
        "01.06.2025;10:50;;5,5;;;\n"
        "01.06.2025;10:55;140;;;;\n"
        "01.06.2025;11:00;;1000,5;;;\n"
        "01.06.2025;11:05;;;1001;;\n"
        "01.06.2025;11:10;;;;100.5;\n"
        "01.06.2025;11:15;;;1000;100;\n"
    )
    records, result = _parse_text(text)
    assert [(r.line, r.value) for r in records] == [
        (2, 120.0),
        (15, 5.5),
        (16, 140.0),
        (20, 1000.0),
        (20, 100.0),
    ]
    stamp = "DAY and TIME are not a date dd.MM.yyyy and a time HH:mm"
    assert sorted((r.line, r.reason) for r in result.rejected) == [
        (3, "UDT_CGMS is not a number"),
        (4, stamp),
        (5, stamp),
        (6, "UDT_CGMS is 0"),
        (7, "UDT_CGMS is negative"),
        (8, "UDT_CGMS is out of range"),
        (9, "the row has fewer than 3 fields"),
        (10, "CH_GR is negative"),
        (11, "BOLUS is not a number"),
        (12, "the row holds no value"),
        (14, stamp),
        (17, "BG_LEVEL is out of range"),
        (18, "CH_GR is out of range"),
        (19, "BOLUS is out of range"),
    ]
    assert all("abc" not in r.reason and "100" not in r.reason for r in result.rejected)


def test_excel_resaved_dates_and_times_are_accepted() -> None:
    text = HEADER + "1.6.2025;9:05;120;;;;\n01.06.2025;09:10:00;125;;;;\n"
    records, result = _parse_text(text)
    assert result.rejected == []
    assert [r.time_ms for r in records] == [_utc("2025-06-01T09:05"), _utc("2025-06-01T09:10")]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("DAY;TIME;UDT_CGMS;BG_LEVEL;CH_GR;INSULIN;REMARK", "line 1: column 6 is 'INSULIN', expected BOLUS"),
        ("DAY;TIME;UDT_CGMS;BG_LEVEL;CH_GR", "line 1: the header ends before column 6, BOLUS"),
        (
            "DAY;TIME;UDT_CGMS;BG_LEVEL;CH_GR;BOLUS;REMARK;EXTRA",
            "line 1: the header has 8 columns, expected 7",
        ),
    ],
)
def test_a_renamed_or_missing_column_refuses_the_file(header: str, message: str) -> None:
    with pytest.raises(MalformedFileError, match=message):
        _parse_text(header + "\n01.06.2025;10:00;120;;;;\n")


def test_writer_layout_and_zip() -> None:
    timeline = _timeline()
    text = write_xdrip(timeline).data.decode()
    lines = text.split("\n")
    assert lines[0] == HEADER.strip()
    assert lines[1].endswith(";;;;")
    assert lines[-1] == ""
    assert "\r" not in text
    old = write_xdrip(timeline, XDripOptions(old_header=True, crlf=True)).data.decode()
    assert old.startswith("DAY;TIME;UDT_CGMS\r\n")
    assert old.split("\r\n")[1].count(";") == 2
    zipped = write_xdrip(timeline, XDripOptions(zipped=True))
    assert zipped.file_name.startswith("exportCSV") and zipped.file_name.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(zipped.data)) as archive:
        (member,) = archive.namelist()
        assert member == zipped.file_name.replace("exportCSV", "export").replace(".zip", ".csv")
        assert archive.read(member) == write_xdrip(timeline).data


# --- properties ----------------------------------------------------------------------------------------


@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 3),
    control=st.floats(0.0, 1.0),
    therapy=st.sampled_from(["mdi", "pump"]),
    crlf=st.booleans(),
    duplicates=st.booleans(),
    combine=st.booleans(),
    timezone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"]),
)
def test_round_trip_property(
    seed: int,
    days: int,
    control: float,
    therapy: str,
    crlf: bool,
    duplicates: bool,
    combine: bool,
    timezone: str,
) -> None:
    timeline = simulate(
        profile(seed=seed, control=control, therapy=therapy, timezone=timezone),
        start=dt.date(2024, 10, 25),
        days=days,
    )
    options = XDripOptions(crlf=crlf, duplicates=duplicates, combine_treatments=combine)
    export = write_xdrip(timeline, options)
    _, records, result = parse_export(export, timezone)
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)


@given(value=st.integers(14, 1000))
def test_any_cgm_value_survives(value: int) -> None:
    records, _ = _parse_text(HEADER + f"01.06.2025;10:00;{value};;;;\n")
    (record,) = records
    assert (record.value, record.orig_value) == (float(value), float(value))
    expected = "low" if value <= 39 else "high" if value >= 400 else None
    assert record.annotation == expected


_CELL = st.one_of(
    st.text(alphabet="0123456789.;:,-|x\r ", max_size=12),
    st.sampled_from(["01.06.2025", "10:00", "120", ";;;;", "", "||", "\n"]),
)


@given(rows=st.lists(st.lists(_CELL, min_size=0, max_size=8).map(";".join), max_size=12))
@example(rows=["01.06.2025;10:00;120;;;;;;;;", ";", "\r"])
def test_mutated_input_raises_only_ingest_errors(rows: list[str]) -> None:
    text = HEADER + "\n".join(rows) + "\n"
    records, result = _parse_text(text)
    assert all(r.line >= 2 for r in records)
    assert all(2 <= r.line <= text.count("\n") for r in result.rejected)


# --- detection -----------------------------------------------------------------------------------------


def _source(export: WrittenExport) -> SourceText:
    decoded = decode_text(export.data, export.file_name)
    return SourceText(export.file_name, decoded.text, decoded.encoding)


def _other_exports() -> dict[str, WrittenExport]:
    cgm = simulate(profile(seed=2), start=dt.date(2025, 6, 1), days=1)
    pump = simulate(profile(seed=2, therapy="pump", cgm="guardian4"), start=dt.date(2025, 6, 1), days=1)
    libre = simulate(profile(seed=2, cgm="libre2"), start=dt.date(2025, 6, 1), days=1)
    short = cgm.window(cgm.start_ms, cgm.start_ms + 3 * 3_600_000)
    return {
        "dexcom_clarity": write_clarity(cgm),
        "libreview": write_libreview(libre),
        "carelink": write_carelink(pump),
        "tidepool": write_tidepool(short, TidepoolOptions(pretty=True)),
    }


def test_detection_both_ways() -> None:
    for options in (XDripOptions(), XDripOptions(old_header=True), XDripOptions(crlf=True)):
        source = _source(write_xdrip(_timeline(), options))
        assert detect_format(source).format == "xdrip"
        others = [i.format for i in importers() if i.format != "xdrip" and i.detect(source.head())]
        assert others == []
    for fmt, export in _other_exports().items():
        source = _source(export)
        assert not IMPORTER.detect(source.head()), fmt
        assert detect_format(source).format == fmt
    assert IMPORTER.detect(["DAY;TIME;UDT_CGMS;BG_LEVEL;CH_GR;BOLUS;REMARK;;"])
    assert IMPORTER.detect(["\ufeffday;time;udt_cgms"])
    assert not IMPORTER.detect(["DAY;TIME;BG_LEVEL;CH_GR;BOLUS;REMARK"])
    assert not IMPORTER.detect(["DAY,TIME,UDT_CGMS"])
    assert not IMPORTER.detect([])


# --- through the import service, on both databases ------------------------------------------------------


def _patient(session: Session, email: str = "xdrip@example.org") -> Patient:
    return add_patient(session, validate_patient(email=email, name="X Drip", timezone=ZONE))


def test_import_service_stores_an_xdrip_export_once(session: Session, settings: Settings) -> None:
    timeline = simulate(profile(seed=14, therapy="mdi"), start=dt.date(2025, 6, 1), days=3)
    export = write_xdrip(timeline, XDripOptions(duplicates=True, tricky_remarks=True))
    patient = _patient(session)
    incoming = IncomingFile(export.file_name, export.data)
    first = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    expected_counts = collections.Counter(e.type for e in export.expected)
    total = sum(expected_counts.values())
    assert first.format == "xdrip"
    assert first.counts == dict(expected_counts)
    assert (first.new, first.duplicates, first.rejected_count) == (total, 0, 0)
    assert first.first == iso_utc(min(e.utc_ms for e in export.expected))
    assert first.last == iso_utc(max(e.utc_ms for e in export.expected))
    assert first.device is not None
    assert (first.device.manufacturer, first.device.model, first.device.serial) == (
        "xDrip+ (open source)",
        "xDrip+ app",
        None,
    )
    assert any("only the first of each minute is stored" in w for w in first.warnings)
    again = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    assert (again.new, again.duplicates) == (0, total)


def test_the_apps_zip_is_imported_through_its_csv(session: Session, settings: Settings) -> None:
    timeline = simulate(profile(seed=17), start=dt.date(2025, 6, 1), days=1)
    plain = write_xdrip(timeline)
    zipped = write_xdrip(timeline, XDripOptions(zipped=True))
    patient = _patient(session)
    (upload,) = import_files(
        session,
        settings=settings,
        patient=patient,
        files=[IncomingFile(zipped.file_name, zipped.data)],
        timezone=None,
        actor="test",
    )
    assert upload.format == "xdrip"
    assert upload.new == len(plain.expected)
    assert upload.counts == dict(collections.Counter(e.type for e in plain.expected))


@pytest.fixture
def stored(engine: Engine, settings: Settings) -> Patient:
    """A committed patient with one committed xDrip+ upload: the state a refused import must not change."""
    timeline = simulate(profile(seed=15), start=dt.date(2025, 6, 1), days=1)
    export = write_xdrip(timeline)
    return committed_upload(engine, settings, export, email="xdrip@example.org", name="X Drip", timezone=ZONE)


def _bad_inputs() -> dict[str, tuple[bytes, type[InputError], str]]:
    timeline = simulate(profile(seed=16), start=dt.date(2025, 6, 3), days=1)
    good = write_xdrip(timeline).data
    lines = good.splitlines(keepends=True)
    bad_dates = [lines[0]] + [line.replace(b".06.2025;", b".13.2025;") for line in lines[1:]]
    bad_values = [lines[0]] + [line.replace(b";;;;\n", b"x;;;;\n") for line in lines[1:]]
    return {
        "truncated": (good[:-7], MalformedFileError, "the file ends in the middle of a row (truncated?)"),
        "renamed column": (
            good.replace(b"UDT_CGMS;BG_LEVEL", b"UDT_CGMS;BG_MMOL", 1),
            MalformedFileError,
            "line 1: column 4 is 'BG_MMOL', expected BG_LEVEL",
        ),
        "missing columns": (
            good.replace(b";CH_GR;BOLUS;REMARK", b"", 1),
            MalformedFileError,
            "line 1: the header ends before column 5, CH_GR",
        ),
        "bad dates": (
            b"".join(bad_dates),
            MalformedFileError,
            "line 2: DAY and TIME are not a date dd.MM.yyyy and a time HH:mm; no row of the file could be read",
        ),
        "bad values": (b"".join(bad_values), MalformedFileError, "UDT_CGMS is not a number"),
        "only a header": (lines[0], NoRecordsError, "holds no records"),
        "wrong vendor": (
            b"DAY,TIME,GLUCOSE\n01.06.2025,10:00,120\n",
            UnknownFormatError,
            "unrecognised format",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "truncated",
        "renamed column",
        "missing columns",
        "bad dates",
        "bad values",
        "only a header",
        "wrong vendor",
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    case: str, engine: Engine, settings: Settings, stored: Patient
) -> None:
    data, error, message = _bad_inputs()[case]
    bad = IncomingFile("export20250603-120000.csv", data)
    refused = refused_unchanged(engine, settings, stored.id, bad, error)
    assert refused.message.startswith("export20250603-120000.csv")
    assert message in refused.message
