"""Glooko export: member round trips in every variant, the mapping, devices, time, bad input, service."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import io
import re
import zipfile
import zoneinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    SourceText,
    each_record,
)
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import MalformedFileError, NoRecordsError
from glucoshare.ingest.glooko import GlookoImporter, cgm_limits_mgdl, device_info
from glucoshare.ingest.registry import detect_format, importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.glooko import GlookoOptions, glooko_members, write_glooko
from glucoshare.simulator.writers.libreview import write_libreview
from tests.ingest.helpers import committed_upload, expected_keys, parsed_keys, profile, refused_unchanged

IMPORTER = GlookoImporter()

META_EN = "Name:Test Person,Date Range:2026-06-22 - 2026-06-22"
META_DE = "Name:Test Person,Datumsbereich:22.06.2026 - 22.06.2026"
CGM_DE = "Zeitstempel,CGM-Glukosewert (mg/dl),Seriennummer"
CGM_EN = "Timestamp,CGM Glucose Value (mg/dl),Serial Number"
BG_EN = "Timestamp,Glucose Value (mg/dl),Manual Reading,Serial Number"
BOLUS_EN = (
    "Timestamp,Insulin Type,Blood Glucose Input (mg/dl),Carbs Input (g),Carbs Ratio,"
    "Insulin Delivered (U),Initial Delivery (U),Extended Delivery (U),Serial Number"
)
BOLUS_DE = (
    "Zeitstempel,Insulin-Typ,Blutzuckereingabe (mg/dl),Kohlenhydrataufnahme (g),Kohlenhydratverhältnis,"
    "Abgegebenes Insulin (E),Anfängliche Abgabe (E),Verzögerte Abgabe (E),Seriennummer"
)
BASAL_EN = "Timestamp,Insulin Type,Duration (minutes),Percentage (%),Rate,Insulin Delivered (U),Serial Number"
BASAL_DE = "Zeitstempel,Insulin-Typ,Dauer (Minuten),Prozentsatz (%),Rate,Abgegebenes Insulin (E),Seriennummer"
SERIAL = "00000000-000000000"


def _text(meta: str, header: str, *rows: str) -> str:
    """A member as Glooko writes it: CRLF, no line break after the last row."""
    return "\r\n".join([meta, header, *rows])


def _parse_text(
    text: str, timezone: str = "UTC", name: str = "member.csv"
) -> tuple[list[ParsedRecord], ParseResult]:
    result = IMPORTER.parse(SourceText(name, text, "utf-8"), ParseContext(timezone))
    return list(each_record(result.records)), result


def _source(export: WrittenExport) -> SourceText:
    decoded = decode_text(export.data, export.file_name)
    return SourceText(export.file_name, decoded.text, decoded.encoding)


def _parse(export: WrittenExport, timezone: str) -> tuple[list[ParsedRecord], ParseResult, ParseContext]:
    """One member through detection and parsing, with its own context (as the service does)."""
    source = _source(export)
    importer = detect_format(source)
    assert importer.format == "glooko", export.file_name
    ctx = ParseContext(timezone)
    result = importer.parse(source, ctx)
    return list(each_record(result.records)), result, ctx


def _utc(text: str, timezone: str = "UTC") -> int:
    """Epoch ms of a wall time in a zone (no repeated hour involved)."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(timezone)).timestamp() * 1000)


def _round_trip(members: list[WrittenExport], timezone: str) -> tuple[list[ParsedRecord], list[ParseResult]]:
    """Every member read back exactly as written; returns all records and every member's result."""
    records: list[ParsedRecord] = []
    results: list[ParseResult] = []
    for member in members:
        got, result, _ = _parse(member, timezone)
        assert result.rejected == [], member.file_name
        assert parsed_keys(got) == expected_keys(member.expected), member.file_name
        assert {r.device for r in got} <= set(result.devices), member.file_name
        records += got
        results.append(result)
    return records, results


@functools.cache
def _pump() -> Timeline:
    """A pump user around Berlin's fall-back change (26 October 2025)."""
    return simulate(
        profile(therapy="pump", cgm="dexcom_g6", timezone="Europe/Berlin", control=0.1, seed=3),
        start=dt.date(2025, 10, 22),
        days=8,
    )


@functools.cache
def _mdi() -> Timeline:
    """A pen user with a Libre around New York's spring-forward change (9 March 2025)."""
    return simulate(
        profile(therapy="mdi", cgm="libre2", timezone="America/New_York", control=0.05, seed=5),
        start=dt.date(2025, 3, 6),
        days=7,
    )


_TIMELINES = {"pump": (_pump, "Europe/Berlin"), "mdi": (_mdi, "America/New_York")}
_KINDS = {
    "pump": [
        ("cbg", "sensor"),
        ("smbg", "meter"),
        ("smbg", "manual"),
        ("bolus", "normal"),
        ("bolus", "dual"),
        ("bolus", "extended"),
        ("wizard", ""),
        ("basal", "scheduled"),
        ("basal", "temp"),
        ("deviceEvent", "alarm"),
        ("food", ""),
        ("note", ""),
        ("physicalActivity", "medium"),
    ],
    "mdi": [
        ("cbg", "sensor"),
        ("smbg", "meter"),
        ("insulin", "rapid"),
        ("insulin", "long"),
        ("deviceEvent", "alarm"),
        ("food", ""),
        ("note", ""),
    ],
}
_VARIANTS = {
    "english": GlookoOptions(),
    "german": GlookoOptions(language="de"),
    "german-mmol": GlookoOptions(language="de", units="mmol/L"),
    "us-dates-mmol": GlookoOptions(units="mmol/L", date_style="us"),
    "decimal-comma-dots": GlookoOptions(decimal_comma=True, date_style="de"),
    "oldest-first": GlookoOptions(newest_first=False),
    "lf-final-newline": GlookoOptions(crlf=False, final_newline=True),
    "unpadded": GlookoOptions(pad_metadata=False, language="de"),
    "split": GlookoOptions(split_rows=400, date_style="us"),
    "cgm-folder-names": GlookoOptions(cgm_folder=True, serial="Omnipod 5", cgm_serial="Dexcom G6"),
}


# --- simulated round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(_VARIANTS))
@pytest.mark.parametrize("therapy", ["pump", "mdi"])
def test_round_trip_every_variant(therapy: str, variant: str) -> None:
    make, timezone = _TIMELINES[therapy]
    options = _VARIANTS[variant]
    members = glooko_members(make(), options)
    records, results = _round_trip(members, timezone)
    kinds = collections.Counter((r.type, r.subtype) for r in records)
    for kind in _KINDS[therapy]:
        assert kinds[kind] > 0, f"the simulation must produce {kind}"
    glucose = [r for r in records if r.type in ("cbg", "smbg")]
    assert {r.orig_unit for r in glucose} == {options.units}
    factor = MGDL_PER_MMOLL if options.units == "mmol/L" else 1.0
    assert all(r.value == pytest.approx(r.orig_value * factor) for r in glucose if r.orig_value is not None)
    notes = {note.partition(" (")[0] for result in results for note in result.notes}
    assert notes == {"daily insulin totals", "medications other than insulin"}, "not stored, and said so"


def test_the_zip_holds_exactly_the_members() -> None:
    options = GlookoOptions(language="de", split_rows=1000)
    export = write_glooko(_pump(), options)
    members = glooko_members(_pump(), options)
    assert export.file_name == "Test_Person_glooko_export_2025-10-29.zip"
    with zipfile.ZipFile(io.BytesIO(export.data)) as archive:
        assert archive.namelist() == [m.file_name for m in members]
        assert all(archive.read(m.file_name) == m.data for m in members)
    assert export.expected == [record for member in members for record in member.expected]
    assert [m.file_name for m in members if m.file_name.startswith("cgm_data")] == [
        "cgm_data_1.csv",
        "cgm_data_2.csv",
        "cgm_data_3.csv",
    ]
    assert {m.file_name.partition("/")[0] for m in members if "/" in m.file_name} == {
        "Insulin data",
        "Manual data",
    }


def test_writer_writes_the_quirks_of_the_real_files() -> None:
    members = {
        m.file_name: m.data.decode("utf-8") for m in glooko_members(_pump(), GlookoOptions(language="de"))
    }
    cgm = members["cgm_data_1.csv"]
    lines = cgm.split("\r\n")
    assert "\n" not in cgm.replace("\r\n", "")
    assert not cgm.endswith("\r\n"), "no line break after the last row"
    assert lines[0] == "Name:Test Person,Datumsbereich:22.10.2025 - 29.10.2025,"
    assert lines[1] == "Zeitstempel,CGM-Glukosewert (mg/dl),Seriennummer"
    assert re.fullmatch(r'\d\d\.\d\d\.2025 \d\d:\d\d,"\d+,0",\d{8}-\d{9}', lines[2])
    stamps = [dt.datetime.strptime(line[:16], "%d.%m.%Y %H:%M").replace(tzinfo=dt.UTC) for line in lines[2:]]
    assert stamps[0] > stamps[-1], "newest first"
    bolus = members["Insulin data/bolus_data_1.csv"].split("\r\n")
    assert bolus[0].endswith(",,,,,,,"), "the metadata line is padded to the nine columns"
    assert bolus[1].startswith("Zeitstempel,Insulin-Typ,Blutzuckereingabe (mg/dl),Kohlenhydrataufnahme (g)")
    assert members["Manual data/manual_insulin_data_1.csv"].split("\r\n") == [
        "Name:Test Person,Datumsbereich:22.10.2025 - 29.10.2025,,",
        "Zeitstempel,Name,Wert,Insulin-Typ",
    ], "a kind without data: the two header lines only"
    basal = members["Insulin data/basal_data_1.csv"]
    assert ",Eingeplant," in basal
    assert '"nach dem ""Training""\nalles gut"' in members["Manual data/notes_data_1.csv"]

    english = {m.file_name: m.data.decode() for m in glooko_members(_mdi(), GlookoOptions(units="mmol/L"))}
    lines = english["cgm_data_1.csv"].split("\r\n")
    assert lines[0] == "Name:Test Person,Date Range:2025-03-06 - 2025-03-12,"
    assert lines[1] == "Timestamp,CGM Glucose Value (mmol/l),Serial Number"
    assert re.fullmatch(r"2025-03-\d\d \d\d:\d\d,\d+\.\d,\d{8}-\d{9}", lines[2])
    us = glooko_members(
        _mdi(), GlookoOptions(date_style="us", newest_first=False, crlf=False, final_newline=True)
    )
    lines = us[0].data.decode().split("\n")
    assert lines[-1] == ""
    assert re.fullmatch(r"03/06/2025 \d\d:\d\d,\d+\.0,\d{8}-\d{9}", lines[2])
    stamps = [
        dt.datetime.strptime(line[:16], "%m/%d/%Y %H:%M").replace(tzinfo=dt.UTC) for line in lines[2:-1]
    ]
    assert stamps == sorted(stamps), "oldest first"
    unpadded = glooko_members(_mdi(), GlookoOptions(pad_metadata=False))
    assert unpadded[0].data.decode().split("\r\n")[0] == "Name:Test Person,Date Range:2025-03-06 - 2025-03-12"


_DAYS_BEFORE_A_CHANGE = [
    dt.date(2025, 3, 8),  # New York springs forward on the 9th
    dt.date(2025, 11, 1),  # and falls back on 2 November
    dt.date(2025, 3, 29),  # Berlin: 30 March
    dt.date(2025, 10, 25),  # and 26 October
    dt.date(2025, 4, 5),  # Sydney falls back on 6 April
]


@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 3),
    start=st.one_of(
        st.dates(dt.date(2020, 1, 1), dt.date(2026, 6, 30)), st.sampled_from(_DAYS_BEFORE_A_CHANGE)
    ),
    timezone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Tokyo"]),
    therapy=st.sampled_from(["pump", "mdi"]),
    cgm=st.sampled_from(["dexcom_g6", "libre2", "libre3", "guardian4"]),
    control=st.floats(0.0, 1.0),
    language=st.sampled_from(["en", "de"]),
    units=st.sampled_from(["mg/dL", "mmol/L"]),
    date_style=st.sampled_from([None, "iso", "us", "de"]),
    split_rows=st.sampled_from([None, 7, 150]),
    serial=st.sampled_from([None, "Omnipod 5", "Eversense E3", ""]),
    flags=st.tuples(*[st.booleans()] * 4),
)
def test_round_trip_property(
    seed: int,
    days: int,
    start: dt.date,
    timezone: str,
    therapy: str,
    cgm: str,
    control: float,
    language: str,
    units: str,
    date_style: str | None,
    split_rows: int | None,
    serial: str | None,
    flags: tuple[bool, bool, bool, bool],
) -> None:
    newest_first, crlf, final_newline, decimal_comma = flags
    timeline = simulate(
        profile(seed=seed, therapy=therapy, cgm=cgm, timezone=timezone, control=control),
        start=start,
        days=days,
    )
    options = GlookoOptions(
        language=language,  # type: ignore[arg-type]
        units=units,  # type: ignore[arg-type]
        date_style=date_style,  # type: ignore[arg-type]
        decimal_comma=decimal_comma,
        newest_first=newest_first,
        crlf=crlf,
        final_newline=final_newline,
        split_rows=split_rows,
        serial=serial,
    )
    _round_trip(glooko_members(timeline, options), timezone)


@given(data=st.data())
def test_mutated_members_raise_only_input_errors(data: st.DataObject) -> None:
    members = [m for m in glooko_members(_short(), GlookoOptions(language="de")) if m.expected]
    member = data.draw(st.sampled_from(members))
    text = member.data.decode()
    cuts = data.draw(st.lists(st.integers(0, len(text) - 1), min_size=1, max_size=4))
    insert = data.draw(st.sampled_from(["", ",", '"', "\r\n", "x", ";", "31.02.2026 25:61", "-5", "ü"]))
    for cut in sorted(cuts, reverse=True):
        text = text[:cut] + insert + text[cut + 1 :]
    source = SourceText(member.file_name, text, "utf-8")
    try:
        if not IMPORTER.detect(source.head()):
            return
        result = IMPORTER.parse(source, ParseContext("Europe/Berlin"))
        for record in each_record(result.records):
            assert record.time_ms is not None
    except InputError:
        pass


@functools.cache
def _short() -> Timeline:
    return simulate(profile(therapy="pump", seed=11), start=dt.date(2025, 6, 1), days=1)


def test_cgm_readings_come_as_reading_blocks() -> None:
    member = glooko_members(_pump())[0]
    source = _source(member)
    items = list(IMPORTER.parse(source, ParseContext("Europe/Berlin")).records)
    blocks = [item for item in items if isinstance(item, ReadingBlock)]
    singles = [item for item in items if not isinstance(item, ReadingBlock)]
    assert sum(len(b) for b in blocks) > 2000
    assert all(item.annotation is not None for item in singles), "only readings at a limit come single"


# --- time ------------------------------------------------------------------------------------------


def test_repeated_hour_is_read_in_device_order() -> None:
    """Rows are newest first: the stream is reversed, so the clock steps back into the second pass."""
    rows = (
        [f"26.10.2025 03:{m:02d},100,{SERIAL}" for m in (5,)]
        + [f"26.10.2025 02:{m:02d},101,{SERIAL}" for m in (50, 30, 10)]
        + [f"26.10.2025 02:{m:02d},102,{SERIAL}" for m in (50, 30, 10)]
        + [f"26.10.2025 01:{m:02d},103,{SERIAL}" for m in (55,)]
    )
    records, _ = _parse_text(_text(META_DE, CGM_DE, *rows), "Europe/Berlin")
    records.sort(key=lambda r: r.line)
    first = _utc("2025-10-26T00:10", "UTC")  # 02:10 CEST
    assert [(r.time_ms - first) // 60_000 for r in records] == [115, 100, 80, 60, 40, 20, 0, -15]
    assert [r.utc_offset_min for r in records] == [60, 60, 60, 60, 120, 120, 120, 120]
    oldest_first = _text(META_DE, CGM_DE, *reversed(rows))
    again, _ = _parse_text(oldest_first, "Europe/Berlin")
    assert sorted(r.time_ms for r in again) == sorted(r.time_ms for r in records)


@pytest.mark.parametrize("therapy", ["pump", "mdi"])
def test_daylight_saving_changes_round_trip(therapy: str) -> None:
    make, timezone = _TIMELINES[therapy]
    member = glooko_members(make())[0]
    records, _, ctx = _parse(member, timezone)
    assert parsed_keys(records) == expected_keys(member.expected)
    assert ctx.skipped_hour_records == 0
    zone = zoneinfo.ZoneInfo(timezone)
    assert len({r.utc_offset_min for r in records}) == 2
    for record in records:
        offset = dt.datetime.fromtimestamp(record.time_ms / 1000, tz=zone).utcoffset()
        assert offset == dt.timedelta(minutes=record.utc_offset_min)
    if therapy == "pump":
        assert ctx.repeated_hour_records > 0
        walls = collections.Counter(r.time_ms + r.utc_offset_min * 60_000 for r in records)
        assert any(count == 2 for count in walls.values()), "one wall time read as two instants"


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("22.06.2026 23:55", "2026-06-22T23:55"),
        ("2.6.2026 7:05", "2026-06-02T07:05"),
        ("2026-06-22 23:55", "2026-06-22T23:55"),
        ("2026-06-22 23:55:30", "2026-06-22T23:55:30"),
        ("2026-06-22T08:30", "2026-06-22T08:30"),
        ("06/22/2026 23:55", "2026-06-22T23:55"),
        ("06/02/2026 23:55", "2026-06-02T23:55"),
        ("6/2/2026 11:55 PM", "2026-06-02T23:55"),
        ("06/02/2026 12:05 am", "2026-06-02T00:05"),
        (" 22.06.2026 08:00 ", "2026-06-22T08:00"),
    ],
)
def test_timestamps_separator_decides_the_date_order(stamp: str, expected: str) -> None:
    records, result = _parse_text(_text(META_EN, CGM_EN, f"{stamp},120,{SERIAL}"))
    assert result.rejected == []
    assert [r.time_ms for r in records] == [_utc(expected)]


@pytest.mark.parametrize(
    "stamp",
    ["22-06-2026 23:55", "2026/06/22 23:55", "31.02.2026 10:00", "22.06.2026 24:00", "22.06.26 10:00", ""],
)
def test_unreadable_timestamps_are_rejected_rows(stamp: str) -> None:
    text = _text(META_EN, CGM_EN, f"22.06.2026 10:00,120,{SERIAL}", f"{stamp},121,{SERIAL}")
    records, result = _parse_text(text)
    assert len(records) == 1
    assert [r.line for r in result.rejected] == [4]
    assert "timestamp" in result.rejected[0].reason


def test_a_slash_date_that_is_day_first_refuses_the_file() -> None:
    text = _text(META_EN, CGM_EN, f"06/12/2026 10:00,120,{SERIAL}", f"13/06/2026 10:00,121,{SERIAL}")
    with pytest.raises(MalformedFileError, match=r"member.csv: line 4: this date can only be read day first"):
        _parse_text(text)


# --- the mapping -----------------------------------------------------------------------------------


def _got(records: list[ParsedRecord]) -> list[tuple[object, ...]]:
    return [
        (r.line, r.type, r.subtype, r.value, r.duration_ms, r.annotation, r.payload, r.identity)
        for r in sorted(records, key=lambda r: (r.line, r.type))
    ]


def test_bolus_rows_and_the_bolus_calculator() -> None:
    text = _text(
        META_DE + ",,,,,,,",
        BOLUS_DE,
        f'22.06.2026 16:38,Normal,"0,0","13,0","6,0","2,0",,,{SERIAL}',
        f'22.06.2026 13:17,Normal,"112,0","41,0","7,0","6,0",,,{SERIAL}',
        f'22.06.2026 12:00,Verzögert,,,,"3,0","1,0","2,0",{SERIAL}',
        f'22.06.2026 11:00,Verzögert,,,,"2,5","0,0","2,5",{SERIAL}',
        f'22.06.2026 10:00,Automatisch,,,,"0,35",,,{SERIAL}',
        f'22.06.2026 09:00,Normal,"0,0","0,0","8,0","1,5",,,{SERIAL}',
        f'22.06.2026 08:00,Normal,"180,0",,,"1,0",,,{SERIAL}',
        f'22.06.2026 07:00,Normal,,,,,"1,0","0,5",{SERIAL}',
        f"22.06.2026 06:00,Normal,,,,,,,{SERIAL}",
        f'22.06.2026 05:00,Normal,,,,"x",,,{SERIAL}',
    )
    records, result = _parse_text(text, "Europe/Berlin")
    assert sorted(result.rejected, key=lambda r: r.line) == [
        RejectedRow(11, "bolus row without Insulin Delivered"),
        RejectedRow(12, "Abgegebenes Insulin (E) is not a number"),
    ]
    normal = {"insulin_type": "Normal"}
    assert _got(records) == [
        (3, "bolus", "normal", 2.0, None, None, normal, ""),
        (3, "wizard", "", 13.0, None, None, {"bg_input": None, "carb_ratio": 6.0}, "bg=|ratio=6"),
        (4, "bolus", "normal", 6.0, None, None, normal, ""),
        (4, "wizard", "", 41.0, None, None, {"bg_input": 112.0, "carb_ratio": 7.0}, "bg=112|ratio=7"),
        (
            5,
            "bolus",
            "dual",
            3.0,
            None,
            None,
            {"insulin_type": "Verzögert", "initial_units": 1.0, "extended_units": 2.0},
            "",
        ),
        (
            6,
            "bolus",
            "extended",
            2.5,
            None,
            None,
            {"insulin_type": "Verzögert", "initial_units": 0.0, "extended_units": 2.5},
            "",
        ),
        (7, "bolus", "automated", 0.35, None, None, {"insulin_type": "Automatisch"}, ""),
        (8, "bolus", "normal", 1.5, None, None, normal, ""),
        (9, "bolus", "normal", 1.0, None, None, normal, ""),
        (9, "wizard", "", None, None, None, {"bg_input": 180.0, "carb_ratio": None}, "bg=180|ratio="),
        (
            10,
            "bolus",
            "dual",
            1.5,
            None,
            None,
            {"insulin_type": "Normal", "initial_units": 1.0, "extended_units": 0.5},
            "",
        ),
    ]
    assert min(r.time_ms for r in records if r.line == 3) == _utc("2026-06-22T16:38", "Europe/Berlin")
    mmol = _text(
        META_EN, BOLUS_EN.replace("mg/dl", "mmol/l"), f"2026-06-22 08:00,Normal,7.5,30,10,3,,,{SERIAL}"
    )
    records, _ = _parse_text(mmol)
    wizard = next(r for r in records if r.type == "wizard")
    assert wizard.payload == {"bg_input": pytest.approx(7.5 * MGDL_PER_MMOLL), "carb_ratio": 10.0}


def test_basal_rows() -> None:
    text = _text(
        META_DE + ",,,,,",
        BASAL_DE,
        f'22.06.2026 21:12,Eingeplant,7,,"0,7",,{SERIAL}',
        f"22.06.2026 15:00,Temporär,60,50,,,{SERIAL}",
        f'22.06.2026 14:00,Temporär,30,120,"1,2",,{SERIAL}',
        f"22.06.2026 13:00,Unterbrochen,45,,,,{SERIAL}",
        f'22.06.2026 12:00,Automatisch,5,,"0,45","0,04",{SERIAL}',
        f'22.06.2026 10:00,Eingeplant,120,,"0,8",,{SERIAL}',
        f'22.06.2026 09:00,Bonus-Modus,60,,"0,8",,{SERIAL}',
        f"22.06.2026 08:00,Eingeplant,60,,,,{SERIAL}",
    )
    records, result = _parse_text(text, "Europe/Berlin")
    assert sorted(result.rejected, key=lambda r: r.line) == [
        RejectedRow(9, "Insulin Type is not a known basal type (scheduled, temp, suspend or automated)"),
        RejectedRow(10, "scheduled basal row without a Rate"),
    ]
    assert _got(records) == [
        (3, "basal", "scheduled", 0.7, 7 * 60_000, None, {"insulin_type": "Eingeplant"}, ""),
        (
            4,
            "basal",
            "temp",
            0.4,
            3_600_000,
            None,
            {"insulin_type": "Temporär", "percent": 50.0, "scheduled_rate": 0.8},
            "50",
        ),
        (5, "basal", "temp", 1.2, 1_800_000, None, {"insulin_type": "Temporär", "percent": 120.0}, "120"),
        (6, "basal", "suspend", 0.0, 2_700_000, None, {"insulin_type": "Unterbrochen"}, ""),
        (
            7,
            "basal",
            "automated",
            0.45,
            300_000,
            None,
            {"insulin_type": "Automatisch", "delivered_units": 0.04},
            "",
        ),
        (8, "basal", "scheduled", 0.8, 7_200_000, None, {"insulin_type": "Eingeplant"}, ""),
    ]
    english = _text(
        META_EN,
        BASAL_EN,
        f"2026-06-22 10:00,Temp Basal,30,,1.5,,{SERIAL}",
        f"2026-06-22 09:00,Suspended,15,,0,,{SERIAL}",
        f"2026-06-22 08:00,Scheduled,60,,0.9,,{SERIAL}",
    )
    records, _ = _parse_text(english)
    assert [(r.subtype, r.value) for r in sorted(records, key=lambda r: r.time_ms)] == [
        ("scheduled", 0.9),
        ("suspend", 0.0),
        ("temp", 1.5),
    ]


def test_bg_rows_manual_flags_and_units() -> None:
    text = _text(
        META_EN + ",,",
        BG_EN,
        f"2026-06-22 07:19,72.0,M,{SERIAL}",
        f"2026-06-22 07:20,73.0,,{SERIAL}",
        f"2026-06-22 07:21,74.0,No,{SERIAL}",
        f"2026-06-22 07:22,75.0,Yes,{SERIAL}",
        f"2026-06-22 07:23,76.0,Z,{SERIAL}",
        f"2026-06-22 07:24,HI,,{SERIAL}",
        f"2026-06-22 07:25,700,,{SERIAL}",
        f"2026-06-22 07:26,,M,{SERIAL}",
        f"2026-06-22 07:27,-3,M,{SERIAL}",
    )
    records, result = _parse_text(text)
    assert sorted(result.rejected, key=lambda r: r.line) == [
        RejectedRow(10, "BG row without a glucose value"),
        RejectedRow(11, "BG glucose value is not positive"),
    ]
    assert [
        (r.subtype, r.value, r.orig_value, r.annotation, r.payload)
        for r in sorted(records, key=lambda r: r.line)
    ] == [
        ("manual", 72.0, 72.0, None, None),
        ("meter", 73.0, 73.0, None, None),
        ("meter", 74.0, 74.0, None, None),
        ("manual", 75.0, 75.0, None, None),
        ("meter", 76.0, 76.0, None, {"manual_reading": "Z"}),
        ("meter", 600.0, None, "high", None),
        ("meter", 700.0, 700.0, None, None),
    ]
    german = _text(
        META_DE + ",,",
        "Zeitstempel,Glukosewert (mmol/l),Manuelles Lesen,Seriennummer",
        f'22.06.2026 07:19,"4,0",M,{SERIAL}',
    )
    records, _ = _parse_text(german)
    assert [(r.type, r.subtype, r.orig_value, r.orig_unit) for r in records] == [
        ("smbg", "manual", 4.0, "mmol/L")
    ]
    assert records[0].value == pytest.approx(4.0 * MGDL_PER_MMOLL)


@pytest.mark.parametrize(
    ("serial", "low", "high"),
    [
        (SERIAL, 40.0, 500.0),
        ("Dexcom G7", 40.0, 400.0),
        ("Omnipod 5", 40.0, 400.0),
        ("FreeStyle Libre 2 Plus", 40.0, 500.0),
        ("Eversense E3 Transmitter", 40.0, 400.0),
    ],
)
def test_cgm_limits_follow_the_device(serial: str, low: float, high: float) -> None:
    rows = [
        f"2026-06-22 08:{m:02d},{value},{serial}"
        for m, value in enumerate(["40", "39", "LO", "400", "450", "500", "HI", "High", "120"])
    ]
    records, result = _parse_text(_text(META_EN, CGM_EN, *rows))
    assert result.rejected == []
    got = [(r.value, r.annotation) for r in sorted(records, key=lambda r: r.line)]
    assert got == [
        (40.0, "low"),
        (39.0, "low"),
        (low, "low"),
        (400.0, "high" if high == 400.0 else None),
        (450.0, "high" if high == 400.0 else None),
        (500.0, "high"),
        (high, "high"),
        (high, "high"),
        (120.0, None),
    ]
    assert cgm_limits_mgdl(serial) == (low, high)
    mmol = _text(
        META_EN,
        CGM_EN.replace("mg/dl", "mmol/l"),
        f"2026-06-22 08:00,2.2,{serial}",
        f"2026-06-22 08:01,5.5,{serial}",
    )
    records, _ = _parse_text(mmol)
    assert [(r.orig_value, r.annotation) for r in sorted(records, key=lambda r: r.line)] == [
        (2.2, "low"),
        (5.5, None),
    ]


def test_cgm_rows_that_cannot_be_read() -> None:
    text = _text(
        META_EN,
        CGM_EN,
        f"2026-06-22 08:00,120,{SERIAL}",
        f"2026-06-22 08:05,,{SERIAL}",
        f"2026-06-22 08:10,abc,{SERIAL}",
        f"2026-06-22 08:15,0,{SERIAL}",
        "",
        ",,",
        "2026-06-22 08:20,130",
        f'2026-06-22 08:25,"12"3,{SERIAL}',
    )
    records, result = _parse_text(text)
    assert sorted(result.rejected, key=lambda r: r.line) == [
        RejectedRow(4, "CGM row without a glucose value"),
        RejectedRow(5, "CGM glucose value is not a number"),
        RejectedRow(6, "CGM glucose value is not positive"),
        RejectedRow(10, "a quoted field is malformed or never closed (truncated file?)"),
    ]
    assert sorted((r.line, r.value, r.device) for r in records) == [
        (3, 120.0, f"serial:{SERIAL}"),
        (9, 130.0, "serial:"),
    ]
    assert result.devices["serial:"] == DeviceInfo("Unknown", "device reported by Glooko", None)


def test_alarms_notes_exercise_food_carbs_and_pen_insulin() -> None:
    alarms, _ = _parse_text(
        _text(
            META_DE + ",",
            "Zeitstempel,Alarm/Ereignis,Seriennummer",
            f"22.06.2026 16:44,Pod läuft bald ab,{SERIAL}",
        )
    )
    assert _got(alarms) == [
        (3, "deviceEvent", "alarm", None, None, None, {"text": "Pod läuft bald ab"}, "Pod läuft bald ab")
    ]
    notes, result = _parse_text(
        _text(
            META_DE,
            "Zeitstempel,Wert",
            '22.06.2026 08:00,"synthetisch, ""quotiert""\r\nzweite Zeile"',
            "22.06.2026 09:00,",
        )
    )
    assert _got(notes) == [
        (
            4,
            "note",
            "",
            None,
            None,
            None,
            {"text": 'synthetisch, "quotiert"\r\nzweite Zeile'},
            'synthetisch, "quotiert"\r\nzweite Zeile',
        )
    ]
    assert result.rejected == [RejectedRow(5, "note row without text")]
    assert result.devices == {"manual": DeviceInfo("Glooko", "manual entries", None)}
    exercise, _ = _parse_text(
        _text(
            META_DE + ",,,",
            "Zeitstempel,Name,Intensität,Dauer (Minuten),Verbrannte Kalorien",
            "22.06.2026 18:00,Spaziergang,Mittel,30,120",
            "22.06.2026 19:00,Laufen,Hoch,45,",
            "22.06.2026 20:00,Yoga,Niedrig,,",
            "22.06.2026 21:00,Tanzen,,20,",
        )
    )
    assert _got(exercise) == [
        (
            3,
            "physicalActivity",
            "medium",
            None,
            1_800_000,
            None,
            {"name": "Spaziergang", "calories": 120.0},
            "Spaziergang",
        ),
        (4, "physicalActivity", "heavy", None, 2_700_000, None, {"name": "Laufen"}, "Laufen"),
        (5, "physicalActivity", "light", None, None, None, {"name": "Yoga"}, "Yoga"),
        (6, "physicalActivity", "unknown", None, 1_200_000, None, {"name": "Tanzen"}, "Tanzen"),
    ]
    food, result = _parse_text(
        _text(
            META_DE + ",,,,,,",
            "Zeitstempel,Name,KH (g),Fett,Eiweiß,Kalorien,Portionen,Anzahl der Portionen",
            '22.06.2026 08:00,Hafermilch,"5,9","1,4","0,8",45,Glas,1',
            "22.06.2026 08:00,Haferflocken,35,,,,,",
            "22.06.2026 09:00,,,,,,,",
        )
    )
    assert _got(food) == [
        (
            3,
            "food",
            "",
            5.9,
            None,
            None,
            {
                "name": "Hafermilch",
                "fat_g": 1.4,
                "protein_g": 0.8,
                "calories": 45.0,
                "serving": "Glas",
                "servings": 1.0,
            },
            "Hafermilch",
        ),
        (4, "food", "", 35.0, None, None, {"name": "Haferflocken"}, "Haferflocken"),
    ]
    assert result.rejected == [RejectedRow(5, "food row without carbohydrates or a name")]
    carbs, _ = _parse_text(_text(META_DE, "Zeitstempel,KH (g)", '22.06.2026 08:45,"12,5"'))
    assert _got(carbs) == [(3, "food", "", 12.5, None, None, {"source": "cgm_carbs"}, "")]
    pens, result = _parse_text(
        _text(
            META_DE + ",,",
            "Zeitstempel,Name,Wert,Insulin-Typ",
            '22.06.2026 08:00,Korrektur,"0,5",Schnell',
            "22.06.2026 22:00,Tresiba,18 E,Lang wirkend",
            "22.06.2026 22:05,Basalinsulin,4,",
            "22.06.2026 22:10,Mischinsulin,6,",
            "22.06.2026 22:15,Tresiba,,Lang wirkend",
        )
    )
    assert [(r.subtype, r.value, r.identity) for r in sorted(pens, key=lambda r: r.line)] == [
        ("rapid", 0.5, "Korrektur"),
        ("long", 18.0, "Tresiba"),
        ("long", 4.0, "Basalinsulin"),
        ("unknown", 6.0, "Mischinsulin"),
    ]
    assert result.rejected == [RejectedRow(7, "manual insulin row without a dose")]


@pytest.mark.parametrize(
    ("header", "note"),
    [
        (
            "Zeitstempel,Bolus gesamt (U),Insulin gesamt (U),Basal gesamt (U),Seriennummer",
            "daily insulin totals",
        ),
        ("Timestamp,Total Bolus (U),Total Insulin (U),Total Basal (U),Serial Number", "daily insulin totals"),
        ("Zeitstempel,Name,Wert,Medikamententyp", "medications other than insulin"),
    ],
)
def test_totals_and_medication_are_not_stored_and_say_why(header: str, note: str) -> None:
    records, result = _parse_text(_text(META_DE, header, '22.06.2026 23:55,"16,25","37,45","21,2",x'))
    assert records == []
    assert result.rejected == []
    assert len(result.notes) == 1
    assert result.notes[0].startswith(note)


def test_a_member_without_data_has_no_records() -> None:
    records, result = _parse_text(_text(META_DE + ",,", "Zeitstempel,Name,Wert,Insulin-Typ"))
    assert (records, result.rejected, result.notes) == ([], [], [])


def test_unknown_columns_are_named_in_a_note() -> None:
    records, result = _parse_text(
        _text(META_EN, CGM_EN + ",Trend Arrow", f"2026-06-22 08:00,120,{SERIAL},up")
    )
    assert [r.value for r in records] == [120.0]
    assert result.notes == ["column 'Trend Arrow' is not known to Glucoshare and was not read"]


# --- devices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00000000-000000000", DeviceInfo("Unknown", "device reported by Glooko", "00000000-000000000")),
        ("", DeviceInfo("Unknown", "device reported by Glooko", None)),
        ("Omnipod 5", DeviceInfo("Insulet", "Omnipod 5", None)),
        ("OmniPod DASH", DeviceInfo("Insulet", "OmniPod DASH", None)),
        ("Dexcom G6", DeviceInfo("Dexcom", "Dexcom G6", None)),
        ("FreeStyle Libre 3", DeviceInfo("Abbott", "FreeStyle Libre 3", None)),
        ("Eversense E3 Transmitter", DeviceInfo("Senseonics", "Eversense E3 Transmitter", None)),
        ("Tandem t:slim X2", DeviceInfo("Tandem", "Tandem t:slim X2", None)),
        ("MiniMed 780G", DeviceInfo("Medtronic", "MiniMed 780G", None)),
        ("Accu-Chek Guide", DeviceInfo("Roche", "Accu-Chek Guide", None)),
        ("Contour Next One", DeviceInfo("Ascensia", "Contour Next One", None)),
        (None, DeviceInfo("Glooko", "manual entries", None)),
    ],
)
def test_device_inference(text: str | None, expected: DeviceInfo) -> None:
    assert device_info(text) == expected


def test_one_member_with_two_devices_keeps_their_streams_apart() -> None:
    options = GlookoOptions(serial="Omnipod 5", cgm_serial="Dexcom G6")
    members = {m.file_name: m for m in glooko_members(_pump(), options)}
    records, result, _ = _parse(members["alarms_data_1.csv"], "Europe/Berlin")
    assert {(d.manufacturer, d.model, d.serial) for d in result.devices.values()} == {
        ("Insulet", "Omnipod 5", None),
        ("Dexcom", "Dexcom G6", None),
    }
    assert {r.device for r in records} == set(result.devices)


# --- detection and broken headers ------------------------------------------------------------------


def test_detection_both_ways() -> None:
    timeline = simulate(profile(seed=2, cgm="libre2"), start=dt.date(2025, 6, 1), days=1)
    others = [write_clarity(timeline), write_libreview(timeline), write_carelink(_pump())]
    for export in others:
        assert not IMPORTER.detect(_source(export).head()), export.file_name
    for member in glooko_members(_pump(), GlookoOptions(language="de")) + glooko_members(_mdi()):
        head = _source(member).head()
        assert IMPORTER.detect(head)
        claims = [i.format for i in importers() if i.detect(head)]
        assert claims == ["glooko"], member.file_name
    head = ['"Name:Doe, Jane",Date Range:2024-01-01 - 2024-01-31,', "Timestamp,Value"]
    assert IMPORTER.detect(head)
    assert not IMPORTER.detect(["Name,Date Range", "Timestamp,Value"])
    assert not IMPORTER.detect(["Timestamp,CGM Glucose Value (mg/dl),Serial Number"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (META_EN, r"the header row is missing"),
        (_text(META_EN, "Timestamp,Sensor Value (mg/dl),Serial Number"), r"not a header of any Glooko file"),
        (
            _text(META_EN, "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type"),
            r"not a header of any Glooko file",
        ),
        (
            _text(META_EN, "Timestamp,CGM Glucose Value (mg/100ml),Serial Number"),
            r"unknown glucose unit in column 'CGM Glucose Value \(mg/100ml\)'",
        ),
        (
            _text(META_EN, "Timestamp,CGM Glucose Value,Serial Number"),
            r"unknown glucose unit in column 'CGM Glucose Value'",
        ),
        (_text(META_EN, "Time,CGM Glucose Value (mg/dl),Serial Number"), r"the header has no Timestamp"),
        (
            _text(META_EN, "Timestamp,Insulin Type,Carbs Input (g),Serial Number"),
            r"the bolus header has no Insulin Delivered \(U\) column",
        ),
    ],
)
def test_broken_headers_refuse_the_member(text: str, message: str) -> None:
    with pytest.raises(MalformedFileError, match=r"^member\.csv: line 2: " + message):
        _parse_text(text)


# --- through the import service, on both databases -------------------------------------------------


@pytest.fixture
def stored(engine: Engine, settings: Settings) -> Patient:
    """A committed patient with one committed Glooko member: the state a refused import must not change."""
    member = glooko_members(_short())[0]
    return committed_upload(engine, settings, member, email="g@example.org", name="G")


def _bad_members() -> dict[str, tuple[bytes, type[InputError], str]]:
    good = _text(
        META_DE + ",", CGM_DE, f'22.06.2025 23:55,"215,0",{SERIAL}', f'22.06.2025 23:50,"220,0",{SERIAL}'
    )
    return {
        "truncated": (
            (good + '\r\n22.06.2025 23:45,"22').encode(),
            MalformedFileError,
            "line 5: the file ends inside a quoted field",
        ),
        "missing column": (
            good.replace(",CGM-Glukosewert (mg/dl)", "").encode(),
            MalformedFileError,
            "line 2: not a header of any Glooko file",
        ),
        "renamed column": (
            good.replace("CGM-Glukosewert", "Sensorwert").encode(),
            MalformedFileError,
            "line 2: not a header of any Glooko file",
        ),
        "unknown unit": (
            good.replace("(mg/dl)", "(mg%)").encode(),
            MalformedFileError,
            "unknown glucose unit",
        ),
        "bad dates": (
            (good.replace("22.06.2025", "22.13.2025") + "\r\n").encode(),
            MalformedFileError,
            "line 3: unreadable timestamp (expected DD.MM.YYYY, MM/DD/YYYY or YYYY-MM-DD and HH:MM); no row",
        ),
        "day-first slash dates": (
            good.replace("22.06.2025", "22/06/2025").encode(),
            MalformedFileError,
            "line 3: this date can only be read day first",
        ),
        "wrong vendor": (
            _text(
                META_EN,
                "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype",
                "1,2025-06-22T10:00:00,EGV,",
            ).encode(),
            MalformedFileError,
            "line 2: not a header of any Glooko file",
        ),
        "only metadata": (META_DE.encode(), MalformedFileError, "line 2: the header row is missing"),
        "empty kind": (_text(META_DE + ",", CGM_DE).encode(), NoRecordsError, "holds no records"),
        "medication only": (
            _text(
                META_DE + ",,",
                "Zeitstempel,Name,Wert,Medikamententyp",
                "22.06.2025 08:00,Metformin,500,Tablette",
            ).encode(),
            NoRecordsError,
            "holds no records",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_members()))
def test_bad_members_are_refused_and_change_nothing(
    case: str, engine: Engine, settings: Settings, stored: Patient
) -> None:
    data, error, message = _bad_members()[case]
    bad = IncomingFile("export.zip/cgm_data_1.csv", data)
    refused = refused_unchanged(engine, settings, stored.id, bad, error)
    assert refused.message.startswith("export.zip/cgm_data_1.csv: ")
    assert message in refused.message


def test_import_service_stores_every_member_once(session: Session, settings: Settings) -> None:
    timeline = _pump()
    options = GlookoOptions(language="de", serial="Omnipod 5", cgm_serial="Dexcom G6", split_rows=1500)
    members = [m for m in glooko_members(timeline, options) if m.expected]
    patient = add_patient(
        session, validate_patient(email="pod@example.org", name="Pod", timezone="Europe/Berlin")
    )
    files = [IncomingFile(f"glooko.zip/{m.file_name}", m.data) for m in members]
    uploads = import_files(
        session, settings=settings, patient=patient, files=files, timezone=None, actor="test"
    )
    assert {u.format for u in uploads} == {"glooko"}
    counts: collections.Counter[str] = collections.Counter()
    for upload in uploads:
        counts.update(upload.counts)
        assert upload.rejected_count == 0
    assert dict(counts) == dict(collections.Counter(e.type for e in (r for m in members for r in m.expected)))
    total = sum(counts.values())
    assert sum(u.new for u in uploads) + sum(u.duplicates for u in uploads) == total
    devices = {(u.device.manufacturer, u.device.model, u.device.serial) for u in uploads if u.device}
    assert devices == {
        ("Insulet", "Omnipod 5", None),
        ("Dexcom", "Dexcom G6", None),
        ("Glooko", "manual entries", None),
    }
    cgm = next(u for u in uploads if u.file.endswith("cgm_data_1.csv"))
    assert cgm.device is not None
    assert cgm.device.model == "Dexcom G6"
    assert any("repeated by a daylight-saving change" in w for w in cgm.warnings)
    again = import_files(
        session, settings=settings, patient=patient, files=files, timezone=None, actor="test"
    )
    assert sum(u.new for u in again) == 0
    assert sum(u.duplicates for u in again) == total


def test_a_word_for_a_reading_and_a_blank_line_in_a_cgm_member_read_exactly() -> None:
    member = next(m for m in glooko_members(_pump(), GlookoOptions()) if "cgm_data" in m.file_name)
    lines = member.data.decode().split("\r\n")
    cells = lines[5].split(",")
    lines[5] = f"{cells[0]},Low,{cells[2]}"
    lines.insert(7, "")
    records, result = _parse_text("\r\n".join(lines), "Europe/Berlin")
    assert result.rejected == []
    assert [(r.value, r.annotation) for r in records if r.line == 6] == [(40.0, "low")]
    assert len(records) == len(lines) - 3
