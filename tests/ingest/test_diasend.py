"""diasend workbook: round trips in every variant, sheets, times, settings, detection, bad input, service."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import io
import zoneinfo

import pytest
import xlwt
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.archives import ArchiveLimits
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
from glucoshare.ingest.diasend import (
    CGM_MODEL,
    METER_MODEL,
    PUMP_MODEL,
    DiasendImporter,
    glucose_unit,
    pump_device,
)
from glucoshare.ingest.errors import MalformedFileError, NoRecordsError, UnknownFormatError
from glucoshare.ingest.registry import detect_format, importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.ingest.workbooks import workbook_text
from glucoshare.records.models import Record
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.accuchek_smartpix import write_smartpix
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.diasend import DiasendOptions, pump_settings, write_diasend
from glucoshare.simulator.writers.glooko import glooko_members
from glucoshare.simulator.writers.libreview import write_libreview
from tests.ingest.helpers import committed_upload, expected_keys, parsed_keys, profile, refused_unchanged

IMPORTER = DiasendImporter()
LIMITS = ArchiveLimits(max_members=50, max_member_bytes=100_000_000, max_total_bytes=200_000_000)
STAMP = xlwt.easyxf(num_format_str="DD/MM/YYYY HH:MM")
INSULIN = [
    "Time",
    "Basal Amount (U/h)",
    "Bolus Volume (U)",
    "Immediate Volume (U)",
    "Extended Volume (U)",
    "Duration (min)",
    "Carbs(g)",
    "Notes",
]
Cell = str | float | int | dt.datetime | None


def _xls(sheets: dict[str, list[list[Cell]]]) -> bytes:
    """A workbook with these sheets (datetimes become real date cells)."""
    book = xlwt.Workbook()
    for name, rows in sheets.items():
        sheet = book.add_sheet(name)
        for r, cells in enumerate(rows):
            for c, cell in enumerate(cells):
                if isinstance(cell, dt.datetime):
                    sheet.write(r, c, cell, STAMP)
                elif cell is not None:
                    sheet.write(r, c, cell)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _glucose(*rows: list[Cell], unit: str = "mmol/L") -> list[list[Cell]]:
    """A ``Name and glucose`` sheet: name, date range on row 4, header on row 5, these rows."""
    return [["Name:", "X"], [], [], ["Date range:", "01/03/2021 to 02/03/2021"], ["Time", unit], *rows]


def _cgm(*rows: list[Cell], unit: str = "mg/dL") -> list[list[Cell]]:
    return [["Name:", "X"], ["Time", unit], *rows]


def _source_of(name: str, data: bytes) -> SourceText:
    return SourceText(name, workbook_text(name, data, LIMITS), "xls")


def _source(export: WrittenExport) -> SourceText:
    return _source_of(export.file_name, export.data)


def _parse_book(
    sheets: dict[str, list[list[Cell]]], timezone: str = "UTC"
) -> tuple[list[ParsedRecord], ParseResult]:
    source = _source_of("export.xls", _xls(sheets))
    assert IMPORTER.detect(source.head())
    result = IMPORTER.parse(source, ParseContext(timezone))
    return list(each_record(result.records)), result


def _parse(export: WrittenExport, timezone: str) -> tuple[list[ParsedRecord], ParseResult, ParseContext]:
    source = _source(export)
    importer = detect_format(source)
    assert importer.format == "diasend"
    ctx = ParseContext(timezone)
    result = importer.parse(source, ctx)
    return list(each_record(result.records)), result, ctx


def _utc(text: str, timezone: str = "UTC") -> int:
    wall = dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return int(wall.timestamp() * 1000)


@functools.cache
def _pump() -> Timeline:
    return simulate(
        profile(therapy="pump", cgm="libre3", seed=5, control=0.1, timezone="Europe/Berlin"),
        start=dt.date(2025, 6, 8),
        days=8,
    )


@functools.cache
def _mdi() -> Timeline:
    return simulate(profile(seed=9, timezone="Europe/Berlin"), start=dt.date(2025, 6, 1), days=3)


# --- simulated round trips -------------------------------------------------------------------------

VARIANTS = {
    "default": DiasendOptions(),
    "mg/dL": DiasendOptions(units="mg/dL"),
    "text dates": DiasendOptions(text_dates=True),
    "text dates, month first": DiasendOptions(text_dates=True, month_first=True, units="mg/dL"),
    "newest first": DiasendOptions(newest_first=True, units="mg/dL"),
    "bolus type column": DiasendOptions(bolus_type_column=True),
    "daily totals": DiasendOptions(daily_totals=True, text_dates=True),
    "LO/HI words": DiasendOptions(limit_words=True, units="mg/dL"),
    "lower-case units, +/-": DiasendOptions(lower_case_units=True, range_mark="+/-"),
    "only CGM": DiasendOptions(sheets=("cgm",)),
    "no Name and glucose": DiasendOptions(sheets=("cgm", "insulin", "settings", "alarms")),
    "everything at once": DiasendOptions(
        units="mg/dL",
        text_dates=True,
        newest_first=True,
        bolus_type_column=True,
        daily_totals=True,
        limit_words=True,
        lower_case_units=True,
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip_every_variant(variant: str) -> None:
    options = VARIANTS[variant]
    export = write_diasend(_pump(), options)
    records, result, _ = _parse(export, "Europe/Berlin")
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    kinds = collections.Counter((r.type, r.subtype) for r in records)
    assert kinds[("cbg", "sensor")] > 1000
    if "insulin" in options.sheets:
        for kind in [
            ("basal", "scheduled"),
            ("bolus", "normal"),
            ("bolus", "dual"),
            ("bolus", "extended"),
            ("food", ""),
            ("note", ""),
            ("deviceEvent", "alarm"),
            ("pumpSettings", ""),
        ]:
            assert kinds[kind] > 0, f"the simulation must produce {kind}"
        assert result.devices["pump"] == DeviceInfo("Unknown", PUMP_MODEL, _pump().device_serials["pump"])
    if "glucose" in options.sheets:
        assert kinds[("smbg", "meter")] > 0
        assert result.devices["meter"] == DeviceInfo("Unknown", METER_MODEL, None)
    assert result.devices["cgm"] == DeviceInfo("Unknown", CGM_MODEL, None)
    assert {r.device for r in records} == set(result.devices)
    glucose = [r for r in records if r.type in ("cbg", "smbg") and r.orig_value is not None]
    assert {r.orig_unit for r in glucose} == {options.units}
    factor = MGDL_PER_MMOLL if options.units == "mmol/L" else 1.0
    assert all(r.value == pytest.approx(r.orig_value * factor) for r in glucose)  # type: ignore[operator]
    notes = [n for n in result.notes if "daily insulin totals" in n]
    assert bool(notes) == options.daily_totals


def test_an_mdi_timeline_writes_an_empty_insulin_sheet() -> None:
    export = write_diasend(_mdi())
    records, result, _ = _parse(export, "Europe/Berlin")
    assert parsed_keys(records) == expected_keys(export.expected)
    assert {r.type for r in records} == {"cbg", "smbg"}
    text = _source(export).text
    assert "#sheet\tInsulin use and carbs\nTime\tBasal Amount (U/h)\t" in text
    assert "#sheet\tInsulin pump settings" not in text
    assert set(result.devices) == {"meter", "cgm"}


def test_cgm_readings_come_as_reading_blocks() -> None:
    timeline = simulate(profile(cgm="libre3", control=0.0, seed=12), start=dt.date(2025, 2, 1), days=10)
    export = write_diasend(timeline, DiasendOptions(sheets=("cgm",)))
    result = IMPORTER.parse(_source(export), ParseContext("Europe/Berlin"))
    items = list(result.records)
    blocks = [item for item in items if isinstance(item, ReadingBlock)]
    assert len(blocks) == 1
    assert len(blocks[0]) > 1000
    singles = [item for item in items if not isinstance(item, ReadingBlock)]
    assert singles, "the simulation reaches 40 and 500 mg/dL: flagged readings come one by one"
    assert {item.annotation for item in singles} == {"low", "high"}  # type: ignore[union-attr]


def test_basal_segments_last_until_the_next_basal_row_at_most_a_day() -> None:
    export = write_diasend(_pump())
    records, _, _ = _parse(export, "Europe/Berlin")
    basal = sorted((r for r in records if r.type == "basal"), key=lambda r: r.time_ms)
    for record, following in zip(basal, basal[1:], strict=False):
        assert record.duration_ms == following.time_ms - record.time_ms
    assert basal[-1].duration_ms is None
    rows = [
        INSULIN,
        [dt.datetime(2021, 3, 1, 0, 0), 0.8],
        [dt.datetime(2021, 3, 1, 6, 0), None, 2.5],
        [dt.datetime(2021, 3, 1, 6, 0), 1.2],
        [dt.datetime(2021, 3, 2, 12, 0), 0.9],
        [dt.datetime(2021, 3, 2, 13, 30), 0],
    ]
    records, result = _parse_book({"Insulin use and carbs": rows})
    assert result.rejected == []
    basal = [r for r in records if r.type == "basal"]
    assert [(r.value, r.duration_ms) for r in basal] == [
        (0.8, 6 * 3_600_000),
        (1.2, 24 * 3_600_000),
        (0.9, 90 * 60_000),
        (0.0, None),
    ]
    assert all(r.subtype == "scheduled" for r in basal)


@pytest.mark.parametrize("newest", [False, True], ids=["oldest-first", "newest-first"])
@pytest.mark.parametrize("timezone", ["Europe/Berlin", "America/New_York"])
def test_daylight_saving_changes_round_trip(timezone: str, newest: bool) -> None:
    start = {"Europe/Berlin": dt.date(2025, 10, 24), "America/New_York": dt.date(2025, 10, 31)}[timezone]
    timeline = simulate(
        profile(therapy="pump", cgm="dexcom_g7", seed=4, timezone=timezone), start=start, days=4
    )
    export = write_diasend(timeline, DiasendOptions(newest_first=newest, text_dates=newest))
    records, result, ctx = _parse(export, timezone)
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    assert ctx.repeated_hour_records > 0
    sensor = [r for r in records if r.type == "cbg"]
    walls = collections.Counter(r.time_ms + r.utc_offset_min * 60_000 for r in sensor)
    assert any(count == 2 for count in walls.values()), "one wall time read as two instants"
    spring = simulate(profile(cgm="dexcom_g6", seed=6, timezone=timezone), start=dt.date(2025, 3, 8), days=3)
    export = write_diasend(spring)
    records, result, _ = _parse(export, timezone)
    assert parsed_keys(records) == expected_keys(export.expected)


_DAYS_BEFORE_A_CHANGE = [dt.date(2025, 3, 29), dt.date(2025, 10, 25), dt.date(2025, 11, 1)]


@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 2),
    start=st.one_of(
        st.dates(dt.date(2015, 1, 1), dt.date(2026, 6, 30)), st.sampled_from(_DAYS_BEFORE_A_CHANGE)
    ),
    timezone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Tokyo"]),
    therapy=st.sampled_from(["pump", "mdi"]),
    cgm=st.sampled_from(["dexcom_g6", "libre2", "guardian4"]),
    units=st.sampled_from(["mg/dL", "mmol/L"]),
    flags=st.tuples(*[st.booleans()] * 6),
)
def test_round_trip_property(
    seed: int,
    days: int,
    start: dt.date,
    timezone: str,
    therapy: str,
    cgm: str,
    units: str,
    flags: tuple[bool, bool, bool, bool, bool, bool],
) -> None:
    text_dates, newest, bolus_type, words, totals, lower = flags
    timeline = simulate(
        profile(seed=seed, therapy=therapy, cgm=cgm, timezone=timezone), start=start, days=days
    )
    options = DiasendOptions(
        units=units,  # type: ignore[arg-type]
        text_dates=text_dates,
        newest_first=newest,
        bolus_type_column=bolus_type,
        limit_words=words,
        daily_totals=totals,
        lower_case_units=lower,
    )
    export = write_diasend(timeline, options)
    records, result, _ = _parse(export, timezone)
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)


@given(
    units=st.sampled_from(["mg/dL", "mmol/L"]),
    tenths=st.lists(st.integers(11, 333), min_size=1, max_size=20),
)
def test_any_glucose_value_in_range_survives(units: str, tenths: list[int]) -> None:
    """Meter and CGM values as written come back in mg/dL; only CGM values at 40/500 are annotated."""
    mmol = units == "mmol/L"
    values = [t / 10 if mmol else float(t * 18 // 10) for t in tenths]
    start = dt.datetime(2024, 2, 1, 8, 0)
    rows: list[list[Cell]] = [[start + dt.timedelta(minutes=5 * i), v] for i, v in enumerate(values)]
    records, result = _parse_book(
        {"Name and glucose": _glucose(*rows, unit=units), "CGM": _cgm(*rows, unit=units)}
    )
    assert result.rejected == []
    factor = MGDL_PER_MMOLL if mmol else 1.0
    floor, ceiling = (2.2, 27.8) if mmol else (40.0, 500.0)
    for kind in ("smbg", "cbg"):
        got = sorted((r.time_ms, r.value, r.orig_value, r.annotation) for r in records if r.type == kind)
        want = [
            (
                int(row[0].replace(tzinfo=dt.UTC).timestamp() * 1000),  # type: ignore[union-attr]
                v * factor,
                v,
                None if kind == "smbg" else "low" if v <= floor else "high" if v >= ceiling else None,
            )
            for row, v in zip(rows, values, strict=True)
        ]
        assert got == sorted(want)


@functools.cache
def _small_text() -> str:
    timeline = simulate(profile(therapy="pump", seed=11), start=dt.date(2025, 6, 1), days=1)
    return _source(write_diasend(timeline, DiasendOptions(text_dates=True, daily_totals=True))).text


@given(data=st.data())
def test_mutated_workbooks_raise_only_input_errors(data: st.DataObject) -> None:
    text = _small_text()
    cuts = data.draw(st.lists(st.integers(0, len(text) - 1), min_size=1, max_size=5))
    insert = data.draw(
        st.sampled_from(
            ["", "\t", "\n", "x", "-5", "LO", "31/02/2026 25:61", "13/13/2021 10:00", "±", "Program: 9"]
        )
    )
    for cut in sorted(cuts, reverse=True):
        text = text[:cut] + insert + text[cut + 1 :]
    source = SourceText("mutated.xls", text, "xls")
    try:
        if not IMPORTER.detect(source.head()):
            return
        result = IMPORTER.parse(source, ParseContext("Europe/Berlin"))
        for record in each_record(result.records):
            assert record.line >= 1
    except InputError:
        pass


# --- times -----------------------------------------------------------------------------------------


def test_real_date_cells_and_text_dates_both_read() -> None:
    rows: list[list[Cell]] = [
        [dt.datetime(2021, 3, 1, 8, 30), 5.5],
        [dt.datetime(2021, 3, 2, 0, 0), 5.6],  # a date cell at midnight is rendered as a date
        ["01/03/2021 09:15", 5.7],
        ["1/3/2021 9:20", 5.8],
        ["01.03.2021 09:25", 5.9],
        ["2021-03-01 09:30", 6.0],
        ["01/03/2021 09:35:20", 6.1],
        ["01/03/2021 09:40 PM", 6.2],
        ["01/03/21 10:00", 6.3],
    ]
    records, result = _parse_book({"Name and glucose": _glucose(*rows)}, "Europe/Stockholm")
    assert result.rejected == []
    assert [r.time_ms for r in records] == [
        _utc(text, "Europe/Stockholm")
        for text in [
            "2021-03-01T08:30",
            "2021-03-02T00:00",
            "2021-03-01T09:15",
            "2021-03-01T09:20",
            "2021-03-01T09:25",
            "2021-03-01T09:30",
            "2021-03-01T09:35:20",
            "2021-03-01T21:40",
            "2021-03-01T10:00",
        ]
    ]
    assert [r.line for r in records] == list(range(8, 17))


def test_text_dates_are_month_first_only_when_a_date_proves_it() -> None:
    rows: list[list[Cell]] = [["03/01/2021 10:00", 100], ["03/13/2021 10:00", 101]]
    records, _ = _parse_book({"CGM": _cgm(*rows)})
    assert [r.time_ms for r in records] == [_utc("2021-03-01T10:00"), _utc("2021-03-13T10:00")]
    rows = [["03/01/2021 10:00", 100], ["13/03/2021 10:00", 101]]
    records, _ = _parse_book({"CGM": _cgm(*rows)})
    assert [r.time_ms for r in records] == [_utc("2021-01-03T10:00"), _utc("2021-03-13T10:00")]
    rows = [["03/01/2021 10:00", 100], ["04/01/2021 10:00", 101]]
    records, _ = _parse_book({"CGM": _cgm(*rows)})
    assert [r.time_ms for r in records] == [_utc("2021-01-03T10:00"), _utc("2021-01-04T10:00")]


def test_dates_that_contradict_each_other_refuse_the_workbook() -> None:
    rows: list[list[Cell]] = [["13/03/2021 10:00", 100], ["03/14/2021 10:00", 101]]
    with pytest.raises(
        MalformedFileError, match=r"^export\.xls: line 6: the dates on lines 5 and 6 .* contradict"
    ):
        _parse_book({"CGM": _cgm(*rows)})


# --- sheets, rows and the mapping ------------------------------------------------------------------


def test_only_a_cgm_sheet_and_empty_or_unknown_sheets() -> None:
    sheets: dict[str, list[list[Cell]]] = {
        "Name and glucose": _glucose(),
        "CGM": _cgm([dt.datetime(2021, 3, 1, 10, 0), 120], [dt.datetime(2021, 3, 1, 10, 5), "HI"]),
        "Insulin use and carbs": [],
        "Alarms and events": [["Time", "Alarm/Event"]],
        "Patient": [["Name", "X"]],
        "Notes": [],
    }
    records, result = _parse_book(sheets)
    assert result.rejected == []
    records.sort(key=lambda r: r.time_ms)
    assert [(r.type, r.value, r.annotation) for r in records] == [
        ("cbg", 120.0, None),
        ("cbg", 500.0, "high"),
    ]
    assert records[1].orig_value is None
    assert set(result.devices) == {"cgm"}
    assert result.notes == ["not read: sheet 'Patient' (not a diasend sheet Glucoshare knows)"]


def test_meter_words_and_bad_rows_are_rejected_with_their_line() -> None:
    rows: list[list[Cell]] = [
        [dt.datetime(2021, 3, 1, 7, 0), "LO"],
        [dt.datetime(2021, 3, 1, 7, 5), "HI"],
        [dt.datetime(2021, 3, 1, 7, 10), "1x9"],
        [dt.datetime(2021, 3, 1, 7, 15), -5],
        [dt.datetime(2021, 3, 1, 7, 20)],
        [None, 5.5],
        ["41/03/2021 10:30", 6.5],
        [dt.datetime(2021, 3, 1, 7, 30), 400],
        [],
        [dt.datetime(2021, 3, 1, 7, 35), "5,5"],
    ]
    records, result = _parse_book({"Name and glucose": _glucose(*rows)})
    assert [(r.line, r.value, r.orig_value, r.annotation) for r in records] == [
        (8, 20.0, None, "low"),
        (9, 600.0, None, "high"),
        (17, 5.5 * MGDL_PER_MMOLL, 5.5, None),
    ]
    assert result.rejected == [
        RejectedRow(10, "glucose value is not a number"),
        RejectedRow(11, "glucose value is not positive"),
        RejectedRow(12, "no glucose value"),
        RejectedRow(13, "no time"),
        RejectedRow(14, "unreadable time"),
        RejectedRow(15, "glucose value is out of range"),
    ]
    for rejected in result.rejected:
        assert not any(secret in rejected.reason for secret in ("1x9", "-5", "41", "400"))


def test_insulin_rows_map_to_basal_bolus_food_and_notes() -> None:
    rows: list[list[Cell]] = [
        ["Time", "Basal Amount (U/h)", "Bolus Type", *INSULIN[2:], "Total daily dose", "Pump mode"],
        [dt.datetime(2021, 3, 1, 7, 0), 0.8, None, None, None, None, None, None, "  woke up "],
        [dt.datetime(2021, 3, 1, 7, 30), None, "Normal", 4.5, None, None, None, 45],
        [dt.datetime(2021, 3, 1, 12, 0), None, "Combination", 6, 2, 4, 120],
        [dt.datetime(2021, 3, 1, 18, 0), None, "Combination", 3, 0, 3, 90],
        [dt.datetime(2021, 3, 1, 19, 0), None, None, None, 1.5, 2.5],
        [dt.datetime(2021, 3, 1, 20, 0), None, "Normal", 0],
        [dt.datetime(2021, 3, 1, 23, 59), None, None, None, None, None, None, None, None, 35.5],
        [dt.datetime(2021, 3, 1, 21, 0), "fast", None, 2],
        [dt.datetime(2021, 3, 1, 21, 5), None, None, -1],
        [dt.datetime(2021, 3, 1, 21, 10), None, None, 500],
        [dt.datetime(2021, 3, 1, 21, 15)],
        [dt.datetime(2021, 3, 1, 21, 20), None, None, None, None, None, None, 0],
    ]
    records, result = _parse_book({"Insulin use and carbs": rows})
    got = [(r.line, r.type, r.subtype, r.value, r.duration_ms, r.payload, r.identity) for r in records]
    assert got == [
        (4, "basal", "scheduled", 0.8, None, None, ""),
        (4, "note", "", None, None, {"text": "woke up"}, "woke up"),
        (5, "bolus", "normal", 4.5, None, {"bolus_type": "Normal"}, ""),
        (5, "food", "", 45.0, None, None, ""),
        (
            6,
            "bolus",
            "dual",
            6.0,
            7_200_000,
            {"immediate_u": 2.0, "extended_u": 4.0, "bolus_type": "Combination"},
            "",
        ),
        (
            7,
            "bolus",
            "extended",
            3.0,
            5_400_000,
            {"immediate_u": 0.0, "extended_u": 3.0, "bolus_type": "Combination"},
            "",
        ),
        (8, "bolus", "dual", 4.0, None, {"immediate_u": 1.5, "extended_u": 2.5}, ""),
    ]
    assert result.rejected == [
        RejectedRow(11, "basal rate is not a number"),
        RejectedRow(12, "bolus volume is negative"),
        RejectedRow(13, "bolus volume is out of range"),
        RejectedRow(14, "row without a basal rate, bolus, carbohydrates or a note"),
    ]
    assert result.notes == [
        "not read: column(s) 'Pump mode' of sheet 'Insulin use and carbs'",
        "not stored: 1 rows of daily insulin totals (Glucoshare sums the doses itself)",
        "not stored: 1 boluses of 0 U",
    ]
    assert result.devices == {"pump": DeviceInfo("Unknown", PUMP_MODEL, None)}


def test_an_insulin_sheet_without_basal_rows() -> None:
    rows: list[list[Cell]] = [
        INSULIN,
        [dt.datetime(2021, 3, 1, 7, 0), None, None, None, None, None, 30, "toast"],
    ]
    records, result = _parse_book({"Insulin use and carbs": rows})
    assert [(r.type, r.value) for r in records] == [("food", 30.0), ("note", None)]
    assert result.rejected == []


def test_alarms_are_device_events_of_the_pump() -> None:
    rows: list[list[Cell]] = [
        ["Time", "Alarm/Event", "Serial Number"],
        [dt.datetime(2021, 3, 1, 7, 0), "Occlusion"],
        [dt.datetime(2021, 3, 1, 8, 0)],
        [dt.datetime(2021, 3, 1, 8, 30), "  Low battery"],
    ]
    records, result = _parse_book({"Alarms and events": rows})
    assert [(r.line, r.type, r.subtype, r.payload, r.identity, r.device) for r in records] == [
        (4, "deviceEvent", "alarm", {"alarm": "Occlusion"}, "Occlusion", "pump"),
        (6, "deviceEvent", "alarm", {"alarm": "Low battery"}, "Low battery", "pump"),
    ]
    assert result.rejected == [RejectedRow(5, "alarm row without a text")]


def test_alarms_in_a_layout_not_known_are_not_read_and_say_so() -> None:
    sheets: dict[str, list[list[Cell]]] = {
        "CGM": _cgm([dt.datetime(2021, 3, 1, 10, 0), 120]),
        "Alarms and events": [["Date", "Code"], ["01/03/2021", "E4"]],
    }
    records, result = _parse_book(sheets)
    assert len(records) == 1
    assert result.notes == ["not read: sheet 'Alarms and events' (its layout is not one Glucoshare knows)"]


# --- pump settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("units", ["mmol/L", "mg/dL"])
def test_pump_settings_become_one_canonical_record_at_the_end_of_the_date_range(units: str) -> None:
    timeline = _pump()
    export = write_diasend(timeline, DiasendOptions(units=units))  # type: ignore[arg-type]
    records, _, _ = _parse(export, "Europe/Berlin")
    [settings] = [r for r in records if r.type == "pumpSettings"]
    assert settings.payload == pump_settings(timeline, units)  # type: ignore[arg-type]
    assert settings.time_ms == _utc("2025-06-15T23:59", "Europe/Berlin")
    assert settings.device == "pump"
    payload = settings.payload
    assert payload is not None
    assert payload["active_schedule"] == "Program 1"
    assert set(payload["basal_schedules"]) == {"Program 1", "Program 2"}, "unused programs are left out"
    assert payload["basal_schedules"]["Program 1"] == [
        {"start_min": start, "rate_u_h": rate} for start, rate in timeline.basal_schedule
    ]
    assert payload["max_bolus_u"] == 10.0
    assert payload["insulin_duration_h"] == 4.0
    low, high = payload["targets"][0]["low_mgdl"], payload["targets"][0]["high_mgdl"]
    assert (
        (low, high) == ((6.1 - 0.6) * MGDL_PER_MMOLL, (6.1 + 0.6) * MGDL_PER_MMOLL)
        if units == "mmol/L"
        else (
            100.0,
            120.0,
        )
    )


def test_pump_settings_without_a_date_range_take_the_latest_record() -> None:
    export = write_diasend(_pump(), DiasendOptions(sheets=("insulin", "settings")))
    records, _, _ = _parse(export, "Europe/Berlin")
    [settings] = [r for r in records if r.type == "pumpSettings"]
    assert settings.time_ms == max(r.time_ms for r in records if r.type != "pumpSettings")
    export = write_diasend(_pump(), DiasendOptions(sheets=("settings",)))
    records, result, _ = _parse(export, "Europe/Berlin")
    assert records == []
    assert result.notes == [
        "not stored: the pump settings (the workbook has no date range and no dated rows to place them at)"
    ]


def _settings_sheet(*rows: list[Cell], unit: str = "mmol/l") -> list[list[Cell]]:
    return [
        ["Insulin pump settings for Serial number:", "12345678 (Animas Vibe)"],
        ["General"],
        ["BG unit", unit],
        ["Active basal program", "2"],
        [],
        *rows,
    ]


def _book_with_settings(*rows: list[Cell], unit: str = "mmol/l") -> dict[str, list[list[Cell]]]:
    return {
        "Name and glucose": _glucose([dt.datetime(2021, 3, 1, 9, 0), 6.0]),
        "Insulin pump settings": _settings_sheet(*rows, unit=unit),
    }


def test_pump_settings_tables_and_the_device_they_name() -> None:
    records, result = _parse_book(
        _book_with_settings(
            ["Basal profiles"],
            ["Program: 1"],
            ["Number", "Start time", "U/h"],
            [1, "00:00", 0.5],
            ["Sum", None, 12],
            [],
            ["Program: 2"],
            ["Number", "Start time", "U/h"],
            [1, "00:00:00", 0.7],
            [2, "06:30:00", 1.1],
            ["Sum", None, 20.1],
            [],
            ["Program: 3"],
            ["Number", "Start time", "U/h"],
            [1, "00:00:00", 0],
            ["I:C ratio settings"],
            ["Number", "Start time", "g/U"],
            [1, "00:00:00", 10],
            ["ISF programs"],
            ["Number", "Start time", "mmol/L/U"],
            [1, "00:00:00", "2,5"],
            ["BG target range settings"],
            ["Number", "Start time", "mmol/L", "Range"],
            [1, "00:00:00", 6, "+/- 1"],
            [2, "22:00:00", 7, "±0.5"],
            ["Bolus"],
            ["Max Bolus", "12.5 U"],
            [1, "this row is not part of a table"],
        )
    )
    assert result.rejected == []
    [settings] = [r for r in records if r.type == "pumpSettings"]
    assert settings.line == 10  # the serial row
    assert settings.time_ms == _utc("2021-03-02T23:59")
    f = MGDL_PER_MMOLL
    assert settings.payload == {
        "active_schedule": "Program 2",
        "basal_schedules": {
            "Program 1": [{"start_min": 0, "rate_u_h": 0.5}],
            "Program 2": [{"start_min": 0, "rate_u_h": 0.7}, {"start_min": 390, "rate_u_h": 1.1}],
        },
        "carb_ratios": [{"start_min": 0, "g_per_u": 10.0}],
        "sensitivities": [{"start_min": 0, "mgdl_per_u": 2.5 * f}],
        "targets": [
            {"start_min": 0, "low_mgdl": 5 * f, "high_mgdl": 7 * f},
            {"start_min": 1320, "low_mgdl": 6.5 * f, "high_mgdl": 7.5 * f},
        ],
        "max_bolus_u": 12.5,
        "max_basal_u_h": None,
        "insulin_duration_h": None,
    }
    assert result.devices["pump"] == DeviceInfo("Animas", "Animas Vibe", "12345678")


@pytest.mark.parametrize(
    ("rows", "rejected"),
    [
        (
            [["Basal profiles"], ["Program: 1"], [1, "00:00", "fast"]],
            RejectedRow(17, "unreadable value in the pump settings"),
        ),
        (
            [["I:C ratio settings"], ["Number", "Start time", "g/U"], [1, "25:00", 10]],
            RejectedRow(17, "unreadable start time in the pump settings"),
        ),
        (
            [["I:C ratio settings"], ["Number", "Start time", "g/U"], [1, "06:00", 10]],
            RejectedRow(
                10,
                "the pump settings cannot be read (carb_ratios[0].start_min is not 0 (a schedule starts at midnight))",
            ),
        ),
        (
            [["I:C ratio settings"], ["Number", "Start time", "g/U"], [1, "00:00", 0]],
            RejectedRow(10, "the pump settings cannot be read (carb_ratios[0].g_per_u is outside 1 to 150)"),
        ),
        (
            [["Max Basal", "lots"]],
            RejectedRow(15, "the pump setting max_basal_u_h is not a number"),
        ),
    ],
    ids=["bad rate", "bad start", "not from midnight", "ratio out of range", "bad maximum"],
)
def test_unreadable_pump_settings_are_a_rejected_row_and_not_stored(
    rows: list[list[Cell]], rejected: RejectedRow
) -> None:
    records, result = _parse_book(_book_with_settings(*rows))
    assert [r.type for r in records] == ["smbg"]
    assert result.rejected == [rejected]
    assert "fast" not in rejected.reason


def test_pump_settings_without_a_bg_unit_or_with_an_unknown_one() -> None:
    sheets = _book_with_settings(["ISF programs"], ["Number", "Start time", "x"], [1, "00:00", 2])
    del sheets["Insulin pump settings"][2]
    records, result = _parse_book(sheets)
    assert [r.type for r in records] == ["smbg"]
    assert result.rejected == [
        RejectedRow(16, "the pump settings name no BG unit for sensitivities and targets")
    ]
    with pytest.raises(MalformedFileError, match=r"line 12: unknown BG unit 'mg%' in the pump settings"):
        _parse_book(_book_with_settings(["Max Bolus", "10 U"], unit="mg%"))


def test_only_the_first_pump_settings_block_is_read() -> None:
    sheets = _book_with_settings(
        ["Max Bolus", "10 U"], ["Insulin pump settings for Serial number:", "999"], ["Max Bolus", "5 U"]
    )
    records, result = _parse_book(sheets)
    [settings] = [r for r in records if r.type == "pumpSettings"]
    assert settings.payload is not None
    assert settings.payload["max_bolus_u"] == 10.0
    assert result.notes == [
        "not read: further pump settings blocks on sheet 'Insulin pump settings' (only the first)"
    ]


def test_devices_named_by_the_settings_serial_cell() -> None:
    assert pump_device("12345678") == DeviceInfo("Unknown", PUMP_MODEL, "12345678")
    assert pump_device("AB-12 (Accu-Chek Spirit Combo)") == DeviceInfo(
        "Roche", "Accu-Chek Spirit Combo", "AB-12"
    )
    assert pump_device("(Paradigm 722)") == DeviceInfo("Medtronic", "Paradigm 722", None)
    assert pump_device(None) == DeviceInfo("Unknown", PUMP_MODEL, None)
    assert pump_device("1 (Pump X)") == DeviceInfo("Unknown", "Pump X", "1")


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("mmol/L", "mmol/L"),
        ("mg/dL", "mg/dL"),
        ("mg/dl", "mg/dL"),
        ("mg dl", "mg/dL"),
        ("Glucose (mmol/l)", "mmol/L"),
    ],
)
def test_glucose_units_in_headers(text: str, unit: str) -> None:
    assert glucose_unit(text) == unit


def test_unknown_units_are_not_guessed() -> None:
    for text in ("mg/100ml", "Glucose", "", "mmol/L/U"):
        assert glucose_unit(text) is None


# --- detection and broken sheets -------------------------------------------------------------------


def test_detection_both_ways() -> None:
    timeline = simulate(profile(seed=2, cgm="libre2"), start=dt.date(2025, 6, 1), days=1)
    others = [
        write_clarity(timeline),
        write_libreview(timeline),
        write_carelink(_short()),
        write_smartpix(_short()),
        *glooko_members(timeline),
    ]
    for export in others:
        decoded = decode_text(export.data, export.file_name)
        assert not IMPORTER.detect(SourceText(export.file_name, decoded.text, decoded.encoding).head())
    for options in (
        *VARIANTS.values(),
        DiasendOptions(sheets=("insulin",)),
        DiasendOptions(sheets=("alarms",)),
    ):
        head = _source(write_diasend(_short(), options)).head()
        assert IMPORTER.detect(head)
        assert [i.format for i in importers() if i.detect(head)] == ["diasend"]


def test_a_long_first_sheet_does_not_hide_the_signature() -> None:
    rows: list[list[Cell]] = [
        [dt.datetime(2021, 3, 1) + dt.timedelta(minutes=5 * i), 100 + i % 50] for i in range(5000)
    ]
    source = _source_of("x.xls", _xls({"CGM": _cgm(*rows), "Name and glucose": _glucose()}))
    assert source.head()[:4] == ["#workbook\t1", "#sheet\tCGM", "Name:\tX", "Time\tmg/dL"]
    assert detect_format(source).format == "diasend"
    settings_first = _source_of("x.xls", _xls({"Insulin pump settings": _settings_sheet(), "CGM": _cgm()}))
    assert IMPORTER.detect(settings_first.head())


@pytest.mark.parametrize(
    "head",
    [
        [],
        ["#workbook\t1"],
        ["#workbook\t1", "#sheet\tReadings", "Time\tmg/dL"],
        ["#workbook\t1", "#sheet\tCGM", "Time"],
        ["#workbook\t1", "#sheet\tCGM", "Zeit\tmg/dL"],
        ["#workbook\t1", "#sheet\tInsulin use and carbs", "Time\tRate"],
        ["#workbook\t1", "#sheet\tAlarms and events", "Time\tCode"],
        ["#workbook\t1", "#sheet\tInsulin pump settings", "Serial number\t123"],
        ["#sheet\tCGM", "Time\tmg/dL"],
        ["Time,mg/dL"],
    ],
)
def test_does_not_detect_other_files(head: list[str]) -> None:
    assert not IMPORTER.detect(head)


@pytest.mark.parametrize(
    ("sheets", "message"),
    [
        (
            {"Name and glucose": [["Name:", "X"], [], ["Zeit", "mmol/L"], ["01/03/2021 10:00", 5]]},
            r"line 2: sheet 'Name and glucose' has no header row \(Time and a glucose unit\) in its first 10 rows",
        ),
        (
            {"CGM": _cgm([dt.datetime(2021, 3, 1, 10, 0), 120], unit="mg/100ml")},
            r"line 4: unknown glucose unit 'mg/100ml' in sheet 'CGM' \(mmol/L or mg/dL expected\)",
        ),
        (
            {
                "CGM": [["Time", "mg/dL"]],
                "Insulin use and carbs": [["Time", "Rate"], ["01/03/2021 10:00", 1]],
            },
            r"line 4: sheet 'Insulin use and carbs' has no header row",
        ),
        (
            {"CGM": [["Time", "mg/dL"]], "Insulin pump settings": [["Serial", "1"], ["BG unit", "mmol/l"]]},
            r"line 4: sheet 'Insulin pump settings' has no 'Insulin pump settings for Serial number:' row",
        ),
    ],
    ids=["no header", "unknown unit", "no insulin columns", "no serial row"],
)
def test_broken_sheets_refuse_the_workbook(sheets: dict[str, list[list[Cell]]], message: str) -> None:
    source = _source_of("export.xls", _xls(sheets))
    with pytest.raises(MalformedFileError, match=r"^export\.xls: " + message):
        IMPORTER.parse(source, ParseContext("UTC"))


def test_text_that_is_not_a_workbook_is_refused() -> None:
    with pytest.raises(MalformedFileError, match=r"^x\.csv: line 1: this is not a workbook"):
        IMPORTER.parse(SourceText("x.csv", "Time,mg/dL\n", "utf-8"), ParseContext("UTC"))


# --- through the import service, on both databases -------------------------------------------------


@functools.cache
def _short() -> Timeline:
    return simulate(
        profile(therapy="pump", cgm="dexcom_g6", seed=13, timezone="Europe/Berlin"),
        start=dt.date(2025, 6, 1),
        days=2,
    )


@pytest.fixture
def stored(engine: Engine, settings: Settings) -> Patient:
    """A committed patient with one committed diasend workbook: the state a refused import must keep."""
    export = write_diasend(_short(), DiasendOptions(sheets=("cgm",)))
    return committed_upload(engine, settings, export, email="d@example.org", name="D")


def _bad_inputs() -> dict[str, tuple[bytes, type[InputError], str]]:
    good = write_diasend(_short(), DiasendOptions(text_dates=True)).data
    cgm_rows: list[list[Cell]] = [["13/03/2021 10:00", 100], ["03/14/2021 10:00", 101]]
    bad_rows: list[list[Cell]] = [[f"01/03/2021 10:{m:02d}", "x"] for m in range(20)]
    return {
        "damaged xls": (good[:3000], MalformedFileError, "the workbook cannot be read"),
        "another workbook": (
            _xls({"Budget": [["Month", "Spent"], ["January", 120]]}),
            UnknownFormatError,
            "unrecognised format",
        ),
        "renamed header": (
            _xls(
                {
                    "CGM": [["Name:", "X"], ["Zeit", "mg/dL"], ["01/03/2021 10:00", 100]],
                    "Name and glucose": _glucose(),
                }
            ),
            MalformedFileError,
            "line 2: sheet 'CGM' has no header row",
        ),
        "unknown unit": (
            _xls({"CGM": _cgm(["01/03/2021 10:00", 100], unit="mg%")}),
            MalformedFileError,
            "line 4: unknown glucose unit 'mg%'",
        ),
        "bad dates": (
            _xls({"CGM": _cgm(*cgm_rows)}),
            MalformedFileError,
            "line 6: the dates on lines 5 and 6 can only be read in different day/month orders",
        ),
        "only headers": (
            _xls({"Name and glucose": _glucose(), "CGM": _cgm()}),
            NoRecordsError,
            "holds no records",
        ),
        "every row unreadable": (
            _xls({"CGM": _cgm(*bad_rows)}),
            MalformedFileError,
            "line 5: glucose value is not a number; no row of the file could be read",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_workbooks_are_refused_and_change_nothing(
    case: str, engine: Engine, settings: Settings, stored: Patient
) -> None:
    data, error, message = _bad_inputs()[case]
    refused = refused_unchanged(engine, settings, stored.id, IncomingFile("export.xls", data), error)
    assert refused.message.startswith("export.xls: ")
    assert message in refused.message


def test_import_service_stores_a_workbook_once(session: Session, settings: Settings) -> None:
    timeline = _short()
    export = write_diasend(timeline, DiasendOptions(units="mg/dL", bolus_type_column=True))
    patient = add_patient(
        session, validate_patient(email="dia@example.org", name="Dia", timezone="Europe/Berlin")
    )
    incoming = IncomingFile("Dia_export.xls", export.data)
    first = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    expected = collections.Counter(e.type for e in export.expected)
    total = sum(expected.values())
    assert first.format == "diasend"
    assert first.encoding == "xls"
    assert first.counts == dict(expected)
    assert (first.new, first.duplicates, first.rejected_count) == (total, 0, 0)
    assert first.device is not None
    assert (first.device.manufacturer, first.device.model, first.device.serial) == (
        "Unknown",
        CGM_MODEL,
        None,
    )
    settings_payload = session.scalars(select(Record.payload).where(Record.type == "pumpSettings")).all()
    assert settings_payload == [pump_settings(timeline, "mg/dL")]
    again = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    assert (again.new, again.duplicates) == (0, total)
