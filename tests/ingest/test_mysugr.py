"""mySugr importer: simulated round trips in every variant, the column mapping, time zones, bad input."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import functools
import io
import re
import zoneinfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.devices.service import list_devices
from glucoshare.errors import InputError
from glucoshare.ingest.base import (
    ParseContext,
    ParsedRecord,
    ParseResult,
    RejectedRow,
    SourceText,
    each_record,
)
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import MalformedFileError, NoRecordsError, UnknownFormatError
from glucoshare.ingest.mysugr import MySugrImporter, parse_date, parse_time, parse_timezone
from glucoshare.ingest.registry import detect_format, importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.accuchek_smartpix import SmartPixOptions, write_smartpix
from glucoshare.simulator.writers.carelink import CareLinkOptions, write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.libreview import write_libreview
from glucoshare.simulator.writers.mysugr import HEADER_EN, MySugrOptions, write_mysugr
from tests.ingest.helpers import (
    committed_upload,
    expected_keys,
    parse_export,
    parsed_keys,
    profile,
    refused_unchanged,
)

IMPORTER = MySugrImporter()
HEADER = ",".join(
    f'"{name}"' if "," in name else name
    for name in (n.format(unit="mg/dL", carbs="Grams, Factor 1", weight="kg") for n in HEADER_EN)
)
COLUMNS = [n.format(unit="mg/dL", carbs="Grams, Factor 1", weight="kg") for n in HEADER_EN]
GERMAN = (
    "Datum,Zeit,Tags,Blutzuckermessung (mg/dL),Bolusinjektionseinheiten (Pen),Basalinjektionseinheiten,"
    "Bolusinjektionseinheiten (Pump),Bolus (Mahlzeit),Bolus (Korrektur),"
    '"Mahlzeitkohlenhydrate (Broteinheiten, Faktor 12)",Mahlzeitbeschreibung,Aktivitätsdauer (Minuten),'
    '"Aktivitätsintensität (1: Bequem, 2: Normal, 3: Anstrengend)",Ketone,Blutdruck,Art der Nahrung,Notiz'
)


def _row(date: str, time: str, **cells: str) -> str:
    """One row of the English layout, cells given by column name (without a unit in parentheses)."""
    values = dict.fromkeys(COLUMNS, "")
    values["Date"], values["Time"] = date, time
    for name, text in cells.items():
        column = next(c for c in COLUMNS if c == name or c.split(" (")[0] == name)
        values[column] = text
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values.values())
    return out.getvalue()


def _file(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def _parse_text(text: str, timezone: str = "UTC") -> tuple[list[ParsedRecord], ParseResult]:
    result = IMPORTER.parse(SourceText("mysugr.csv", text, "utf-8"), ParseContext(timezone))
    return list(each_record(result.records)), result


def _utc(text: str, timezone: str = "UTC") -> int:
    wall = dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return int(wall.timestamp() * 1000)


@functools.cache
def _timeline(therapy: str = "mdi", timezone: str = "Europe/Berlin", days: int = 12) -> Timeline:
    return simulate(
        profile(therapy=therapy, timezone=timezone, control=0.1, seed=5), start=dt.date(2025, 5, 3), days=days
    )


# --- simulated round trips -------------------------------------------------------------------------

VARIANTS = {
    "default": MySugrOptions(),
    "mmol": MySugrOptions(units="mmol/L"),
    "german": MySugrOptions(language="de"),
    "german-mmol-grams": MySugrOptions(language="de", units="mmol/L", carb_unit="g", decimal_comma=True),
    "english-bread-units": MySugrOptions(carb_unit="BE"),
    "offsets": MySugrOptions(timezone_column="offset"),
    "no-timezone-column": MySugrOptions(timezone_column="none"),
    "unreadable-timezone": MySugrOptions(timezone_column="invalid"),
    "oldest-first": MySugrOptions(newest_first=False),
    "old-header": MySugrOptions(old_header=True),
    "no-parts": MySugrOptions(bolus_parts=False, parts_only_every=0),
    "all-parts-only": MySugrOptions(parts_only_every=1),
    "excel-semicolons": MySugrOptions(delimiter=";", decimal_comma=True, iso_dates=True, quote_all=True),
    "crlf-bom": MySugrOptions(crlf=True, bom=True),
    "no-extras": MySugrOptions(extras=False),
}


@pytest.mark.parametrize("therapy", ["mdi", "pump"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip_every_variant(variant: str, therapy: str) -> None:
    options = VARIANTS[variant]
    export = write_mysugr(_timeline(therapy), options)
    importer, records, result = parse_export(export, "Europe/Berlin")
    assert importer == "mysugr"
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    assert [(d.manufacturer, d.model, d.serial) for d in result.devices.values()] == [
        ("Roche", "mySugr app", None)
    ]
    kinds = collections.Counter((r.type, r.subtype) for r in records)
    wanted = [("smbg", "meter"), ("food", ""), ("note", ""), ("physicalActivity", "medium")]
    wanted += [("bolus", "normal")] if therapy == "pump" else [("insulin", "rapid"), ("insulin", "long")]
    if therapy == "pump" and options.language == "en":
        wanted.append(("basal", "temp"))
    for kind in wanted:
        assert kinds[kind] > 0, f"the simulation must produce {kind}"
    unit = options.units
    glucose = [r for r in records if r.type == "smbg"]
    factor = MGDL_PER_MMOLL if unit == "mmol/L" else 1.0
    assert {r.orig_unit for r in glucose} == {unit}
    assert all(r.value == pytest.approx(r.orig_value * factor) for r in glucose)  # type: ignore[operator]
    carb_unit = options.carb_unit or ("BE" if options.language == "de" else "g")
    food = [r for r in records if r.type == "food"]
    assert {r.orig_unit for r in food} == {carb_unit}
    assert all(r.value == pytest.approx(r.orig_value * (12 if carb_unit == "BE" else 1)) for r in food)  # type: ignore[operator]
    if options.extras:
        assert any(note.startswith("not stored:") for note in result.notes)


def test_german_bread_units_become_grams_and_keep_what_was_written() -> None:
    text = _file('05.01.2024,08:32:15,,,,,,,,"4,5",Nudeln,,,,,,', header=GERMAN)
    records, result = _parse_text(text, "Europe/Berlin")
    assert result.rejected == []
    food = [r for r in records if r.type == "food"]
    assert [(r.value, r.orig_value, r.orig_unit) for r in food] == [(54.0, 4.5, "BE")]
    assert food[0].time_ms == _utc("2024-01-05T08:32:15", "Europe/Berlin")
    notes = [r.payload for r in records if r.type == "note"]
    assert notes == [{"text": "Nudeln", "category": "meal"}]


def test_pump_file_parts_only_rows_are_pump_boluses() -> None:
    timeline = _timeline("pump")
    export = write_mysugr(timeline, MySugrOptions(parts_only_every=3))
    _, records, _ = parse_export(export, "Europe/Berlin")
    from_parts = [r for r in records if r.payload and r.payload.get("dose_from_parts")]
    assert from_parts
    assert {(r.type, r.subtype) for r in from_parts} == {("bolus", "normal")}
    mdi = write_mysugr(_timeline("mdi"), MySugrOptions(parts_only_every=3))
    _, records, _ = parse_export(mdi, "Europe/Berlin")
    from_parts = [r for r in records if r.payload and r.payload.get("dose_from_parts")]
    assert {(r.type, r.subtype) for r in from_parts} == {("insulin", "rapid")}


_DAYS_BEFORE_A_CHANGE = [
    dt.date(2025, 3, 29),
    dt.date(2025, 10, 25),
    dt.date(2025, 11, 1),
    dt.date(2025, 4, 5),
]


@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 3),
    start=st.one_of(
        st.dates(dt.date(2020, 1, 1), dt.date(2026, 6, 30)), st.sampled_from(_DAYS_BEFORE_A_CHANGE)
    ),
    timezone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Tokyo"]),
    therapy=st.sampled_from(["mdi", "pump"]),
    language=st.sampled_from(["en", "de"]),
    units=st.sampled_from(["mg/dL", "mmol/L"]),
    zone=st.sampled_from(["iana", "offset", "none", "invalid"]),
    flags=st.tuples(*[st.booleans()] * 6),
)
def test_round_trip_property(
    seed: int,
    days: int,
    start: dt.date,
    timezone: str,
    therapy: str,
    language: str,
    units: str,
    zone: str,
    flags: tuple[bool, bool, bool, bool, bool, bool],
) -> None:
    newest_first, decimal_comma, iso_dates, crlf, bom, old_header = flags
    timeline = simulate(profile(seed=seed, therapy=therapy, timezone=timezone), start=start, days=days)
    options = MySugrOptions(
        language=language,  # type: ignore[arg-type]
        units=units,  # type: ignore[arg-type]
        timezone_column=zone,  # type: ignore[arg-type]
        newest_first=newest_first,
        decimal_comma=decimal_comma,
        iso_dates=iso_dates,
        crlf=crlf,
        bom=bom,
        old_header=old_header,
    )
    export = write_mysugr(timeline, options)
    if not export.expected:
        return
    _, records, result = parse_export(export, timezone)
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)


@given(value=st.integers(1, 4999), mmol=st.integers(1, 2770), grams=st.integers(1, 9999))
def test_any_value_in_range_survives(value: int, mmol: int, grams: int) -> None:
    text = _file(
        _row(
            "Jan 5, 2024",
            "8:32:15 AM",
            **{"Blood Sugar Measurement": str(value), "Meal Carbohydrates": str(grams)},
        )
    )
    records, _ = _parse_text(text)
    assert [(r.type, r.value) for r in records] == [("smbg", float(value)), ("food", float(grams))]
    written = f"{mmol / 10:.1f}"
    mmol_file = _file(
        _row("Jan 5, 2024", "8:32:15 AM", **{"Blood Sugar Measurement": written}),
        header=HEADER.replace("(mg/dL)", "(mmol/L)"),
    )
    records, _ = _parse_text(mmol_file)
    assert [(r.orig_value, r.orig_unit) for r in records] == [(float(written), "mmol/L")]
    assert records[0].value == pytest.approx(float(written) * MGDL_PER_MMOLL)


@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=60)
@given(data=st.data())
def test_mutated_files_fail_only_with_input_errors(data: st.DataObject) -> None:
    export = write_mysugr(_timeline("pump", days=2), MySugrOptions())
    raw = bytearray(export.data)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["replace", "delete", "insert", "cut"]))
        chunk = data.draw(
            st.binary(min_size=1, max_size=8) | st.sampled_from([b'"', b",", b"\n", b"-", b"PM", b"/"])
        )
        if action == "replace":
            raw[at : at + len(chunk)] = chunk
        elif action == "delete":
            del raw[at : at + len(chunk)]
        elif action == "insert":
            raw[at:at] = chunk
        else:
            del raw[at:]
    try:
        decoded = decode_text(bytes(raw), "m.csv")
        source = SourceText("m.csv", decoded.text, decoded.encoding)
        importer = detect_format(source)
        if importer.format != "mysugr":
            return
        result = importer.parse(source, ParseContext("Europe/Berlin"))
        for record in each_record(result.records):
            assert record.type
    except InputError:
        pass


# --- detection -------------------------------------------------------------------------------------


def _source(name: str, data: bytes) -> SourceText:
    decoded = decode_text(data, name)
    return SourceText(name, decoded.text, decoded.encoding)


def test_detection_both_ways() -> None:
    mysugr = [write_mysugr(_timeline(), options) for options in VARIANTS.values()]
    others = [
        write_clarity(simulate(profile(seed=2), start=dt.date(2025, 6, 1), days=1)),
        write_libreview(simulate(profile(cgm="libre2", seed=2), start=dt.date(2025, 6, 1), days=1)),
        write_carelink(
            simulate(profile(cgm="guardian4", therapy="pump", seed=2), start=dt.date(2025, 6, 1), days=1),
            CareLinkOptions(),
        ),
        write_smartpix(_timeline(), SmartPixOptions()),
        write_smartpix(_timeline("pump"), SmartPixOptions(report="pump")),
    ]
    for export in mysugr:
        source = _source("export.txt", export.data)
        assert [i.format for i in importers() if i.detect(source.head())] == ["mysugr"]
        assert detect_format(source).format == "mysugr"
    for export in others:
        source = _source(export.file_name, export.data)
        assert not IMPORTER.detect(source.head())
        assert detect_format(source).format != "mysugr"


@pytest.mark.parametrize(
    "head",
    [
        [HEADER],
        [GERMAN],
        ["Date,Time,Tags,Blood Glucose Measurement (mg/dL),Insulin (Meal),Insulin (Correction)"],
        ["Date;Time;Tags;Blood Sugar Measurement (mmol/L);Note"],
        ["Date,Time,Tags,Blood Sugar Measurement (mg/100ml),Note"],
    ],
    ids=["english", "german", "older", "semicolons", "unknown-unit"],
)
def test_detects_mysugr_headers(head: list[str]) -> None:
    assert IMPORTER.detect(head)


@pytest.mark.parametrize(
    "head",
    [
        [],
        ["Date,Time"],
        ["Date,Time,Value,Unit"],
        ["Time,Date,Tags,Note,Ketones"],
        ["Index,Date,Time,New Device Time,BG Reading (mg/dL)"],
        ["DAY;TIME;UDT_CGMS;BG_LEVEL"],
        ['"Date,Time,Tags,Note,Ketones"'],
    ],
    ids=["empty", "two-columns", "other-columns", "swapped", "carelink", "xdrip", "one-cell"],
)
def test_does_not_detect_other_files(head: list[str]) -> None:
    assert not IMPORTER.detect(head)


# --- mapping ---------------------------------------------------------------------------------------


def test_every_column_maps_to_the_canonical_model() -> None:
    text = _file(
        _row(
            "Jan 5, 2024",
            "7:00:00 AM",
            **{"Blood Sugar Measurement": "123", "Ketones": "0.6", "Note": "shaky"},
        ),
        _row(
            "Jan 5, 2024",
            "7:05:00 AM",
            **{"Insulin Injection Units (Pen)": "4.5", "Insulin (Meal)": "3.5", "Insulin (Correction)": "1"},
        ),
        _row("Jan 5, 2024", "7:06:00 AM", **{"Insulin (Meal)": "2", "Insulin (Correction)": "0.5"}),
        _row("Jan 5, 2024", "10:00:00 PM", **{"Basal Injection Units": "18", "Body weight": "72"}),
        _row(
            "Jan 5, 2024",
            "12:00:00 PM",
            **{
                "Meal Carbohydrates": "45",
                "Meal Descriptions": "Pasta",
                "Tags": "Lunch, Before the meal",
                "Food type": "Fast",
            },
        ),
        _row(
            "Jan 5, 2024",
            "6:00:00 PM",
            **{
                "Activity Duration": "30",
                "Activity Intensity": "3",
                "Activity Description": "Run",
                "Steps": "4000",
            },
        ),
        _row("Jan 5, 2024", "6:40:00 PM", **{"Activity Duration": "20"}),
        _row(
            "Jan 5, 2024",
            "7:00:00 PM",
            Medication="Metformin",
            Location="Home",
            Latitude="48.2",
            Longitude="16.3",
        ),
        _row("Jan 5, 2024", "8:00:00 PM", **{"HbA1c": "6.9", "Blood pressure": "120/80"}),
    )
    records, result = _parse_text(text)
    assert result.rejected == []
    got = [(r.line, r.type, r.subtype, r.value, r.duration_ms, r.payload, r.identity) for r in records]
    assert got == [
        (2, "smbg", "meter", 123.0, None, None, ""),
        (2, "bloodKetone", "", 0.6, None, None, ""),
        (2, "note", "", None, None, {"text": "shaky"}, "shaky"),
        (3, "insulin", "rapid", 4.5, None, {"meal_units": 3.5, "correction_units": 1.0}, ""),
        (
            4,
            "insulin",
            "rapid",
            2.5,
            None,
            {"meal_units": 2.0, "correction_units": 0.5, "dose_from_parts": True},
            "",
        ),
        (5, "insulin", "long", 18.0, None, None, ""),
        (6, "food", "", 45.0, None, None, ""),
        (6, "note", "", None, None, {"text": "Pasta", "category": "meal"}, "meal: Pasta"),
        (
            6,
            "note",
            "",
            None,
            None,
            {"text": "Lunch, Before the meal", "category": "tags"},
            "tags: Lunch, Before the meal",
        ),
        (6, "note", "", None, None, {"text": "Fast", "category": "food type"}, "food type: Fast"),
        (7, "physicalActivity", "heavy", None, 1_800_000, None, "1800000"),
        (7, "note", "", None, None, {"text": "Run", "category": "activity"}, "activity: Run"),
        (8, "physicalActivity", "unknown", None, 1_200_000, None, "1200000"),
        (9, "note", "", None, None, {"text": "Metformin", "category": "medication"}, "medication: Metformin"),
    ]
    assert result.notes == [
        (
            "not stored: HbA1c, blood pressure, body weight, location, steps (7 values); a location is "
            "sensitive, and none of these is therapy data Glucoshare reads"
        )
    ]
    assert records[0].time_ms == _utc("2024-01-05T07:00:00")


def test_pump_insulin_is_the_bolus_and_the_parts_never_count_twice() -> None:
    text = _file(
        _row(
            "Jan 5, 2024",
            "7:05:00 AM",
            **{
                "Insulin Injection Units (pump)": "4.25",
                "Insulin (Meal)": "3",
                "Insulin (Correction)": "1.25",
            },
        ),
        _row("Jan 5, 2024", "7:10:00 AM", **{"Insulin (Meal)": "1.5"}),
        _row(
            "Jan 5, 2024",
            "9:00:00 AM",
            **{"Temporary Basal Percentage": "70", "Temporary Basal Duration": "90"},
        ),
        _row("Jan 5, 2024", "9:30:00 AM", **{"Temporary Basal Percentage": "0"}),
        _row("Jan 5, 2024", "9:45:00 AM", **{"Temporary Basal Duration": "30"}),
    )
    records, result = _parse_text(text)
    got = [(r.type, r.subtype, r.value, r.duration_ms, r.payload) for r in records]
    assert got == [
        ("bolus", "normal", 4.25, None, {"meal_units": 3.0, "correction_units": 1.25}),
        ("bolus", "normal", 1.5, None, {"meal_units": 1.5, "dose_from_parts": True}),
        ("basal", "temp", None, 5_400_000, {"percent": 70.0}),
        ("basal", "temp", None, None, {"percent": 0.0}),
    ]
    assert sum(r.value or 0 for r in records if r.type == "bolus") == 5.75
    assert result.rejected == [RejectedRow(6, "temporary basal duration without a percentage")]


def test_german_columns_and_unknown_columns() -> None:
    header = GERMAN + ",Zeitzone,Temporäre Basalrate (Prozent),Schritte,Lieblingsfarbe"
    text = _file(
        '05.01.2024,21:15,,"5,5",,,,,,,,,,,,,Notiz hier,+01:00,80,1200,blau',
        header=header.replace("(mg/dL)", "(mmol/L)"),
    )
    records, result = _parse_text(text, "UTC")
    assert result.rejected == []
    assert [(r.type, r.orig_value) for r in records] == [("smbg", 5.5), ("basal", None), ("note", None)]
    assert records[0].time_ms == _utc("2024-01-05T20:15")
    assert records[0].utc_offset_min == 60
    assert result.notes[0] == "columns Glucoshare does not know were not read: 'Lieblingsfarbe'"
    assert any(note.startswith("not stored: steps (1 values)") for note in result.notes)


def test_other_carbohydrate_units_use_the_factor_in_the_column_name() -> None:
    header = HEADER.replace("Grams, Factor 1", "Exchanges, Factor 15")
    records, _ = _parse_text(
        _file(_row("Jan 5, 2024", "8:00:00 AM", **{"Meal Carbohydrates": "3"}), header=header)
    )
    assert [(r.value, r.orig_value, r.orig_unit) for r in records] == [(45.0, 3.0, "Exchanges")]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "Blood Sugar Measurement (mg/dL)",
            "Blood Sugar Measurement (mg/100ml)",
            "unknown glucose unit in column 'Blood Sugar Measurement (mg/100ml)'",
        ),
        ("Blood Sugar Measurement (mg/dL)", "Blood Sugar Measurement", "unknown glucose unit"),
        (
            '"Meal Carbohydrates (Grams, Factor 1)"',
            "Meal Carbohydrates (Grams)",
            "unknown carbohydrate unit in column 'Meal Carbohydrates (Grams)'",
        ),
        ("Grams, Factor 1", "Grams, Factor 0", "unknown carbohydrate unit"),
    ],
)
def test_unknown_units_refuse_the_file(old: str, new: str, message: str) -> None:
    text = _file(
        _row("Jan 5, 2024", "8:00:00 AM", **{"Blood Sugar Measurement": "100"}),
        header=HEADER.replace(old, new),
    )
    with pytest.raises(MalformedFileError, match="^" + re.escape(f"mysugr.csv: line 1: {message}")):
        _parse_text(text)


# --- time -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Jan 5, 2024", dt.date(2024, 1, 5)),
        ("January 15, 2024", dt.date(2024, 1, 15)),
        ("Sept 5, 2024", dt.date(2024, 9, 5)),
        ("05.01.2024", dt.date(2024, 1, 5)),
        ("5.1.24", dt.date(2024, 1, 5)),
        ("2024-01-05", dt.date(2024, 1, 5)),
        ("1/5/2024", dt.date(2024, 1, 5)),
        ("5. Jan. 2024", dt.date(2024, 1, 5)),
        ("5 März 2024", dt.date(2024, 3, 5)),
        ("Feb 30, 2024", None),
        ("Foo 3, 2024", None),
        ("13/13/2024", None),
        ("", None),
    ],
)
def test_dates(text: str, expected: dt.date | None) -> None:
    assert parse_date(text) == expected
    assert parse_date("5/1/2024", day_first_slashes=True) == dt.date(2024, 1, 5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8:32:15 AM", "08:32:15"),
        ("12:00:00 AM", "00:00:00"),
        ("12:30 PM", "12:30:00"),
        ("11:59:59 p.m.", "23:59:59"),
        ("08:32:15", "08:32:15"),
        ("23:59", "23:59:00"),
        ("13:00 PM", None),
        ("24:00", None),
        ("8:60", None),
        ("noon", None),
    ],
)
def test_times(text: str, expected: str | None) -> None:
    millis = parse_time(text)
    if expected is None:
        assert millis is None
    else:
        assert millis is not None
        assert str(dt.timedelta(milliseconds=millis)).zfill(8) == expected


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("Europe/Berlin", "Europe/Berlin"),
        ("America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
        ("UTC", 0),
        ("GMT", 0),
        ("Z", 0),
        ("+01:00", 60),
        ("+0530", 330),
        ("+1", 60),
        ("-3", -180),
        ("UTC+1", 60),
        ("GMT-05:00", -300),
        ("UTC\u221202:00", -120),
        ("Mars/Olympus", None),
        ("../../etc/passwd", None),
        ("+25:00", None),
        ("+01:75", None),
        ("", None),
    ],
)
def test_timezone_cells(text: str, zone: int | str | None) -> None:
    assert parse_timezone(text) == zone


def test_each_row_is_read_in_its_own_zone() -> None:
    text = _file(
        _row(
            "Jan 5, 2024", "8:00:00 AM", **{"Blood Sugar Measurement": "100", "Timezone": "America/New_York"}
        ),
        _row("Jan 5, 2024", "9:00:00 AM", **{"Blood Sugar Measurement": "101", "Timezone": "+05:30"}),
        _row("Jan 5, 2024", "10:00:00 AM", **{"Blood Sugar Measurement": "102", "Timezone": ""}),
        _row(
            "Jan 5, 2024", "11:00:00 AM", **{"Blood Sugar Measurement": "103", "Timezone": "Atlantis/Capital"}
        ),
    )
    records, result = _parse_text(text, "Europe/Berlin")
    assert [(r.time_ms, r.utc_offset_min) for r in records] == [
        (_utc("2024-01-05T08:00", "America/New_York"), -300),
        (_utc("2024-01-05T03:30"), 330),
        (_utc("2024-01-05T10:00", "Europe/Berlin"), 60),
        (_utc("2024-01-05T11:00", "Europe/Berlin"), 60),
    ]
    assert result.notes == [
        "1 rows have a Timezone Glucoshare cannot read; their times were read in Europe/Berlin"
    ]


@pytest.mark.parametrize("newest_first", [True, False])
def test_the_repeated_hour_is_read_oldest_first_whatever_the_file_order(newest_first: bool) -> None:
    """Berlin falls back at 03:00 CEST on 26 October 2025: 02:00-03:00 happens twice."""
    walls = ["01:50", "02:10", "02:40", "02:05", "02:30", "03:10"]
    rows = [
        _row("Oct 26, 2025", f"{wall}:00", **{"Blood Sugar Measurement": str(100 + number)})
        for number, wall in enumerate(walls)
    ]
    if newest_first:
        rows.reverse()
    records, _ = _parse_text(_file(*rows), "Europe/Berlin")
    by_value = sorted((r.value, r.time_ms, r.utc_offset_min) for r in records)
    first = _utc("2025-10-26T00:00")  # 02:00 CEST
    assert [(t - first) // 60_000 for _, t, _ in by_value] == [-10, 10, 40, 65, 90, 130]
    assert [offset for _, _, offset in by_value] == [120, 120, 120, 60, 60, 60]


def test_a_skipped_wall_time_is_read_with_the_offset_before_the_change() -> None:
    text = _file(_row("Mar 30, 2025", "2:30:00 AM", **{"Blood Sugar Measurement": "100"}))
    ctx = ParseContext("Europe/Berlin")
    result = IMPORTER.parse(SourceText("x.csv", text, "utf-8"), ctx)
    records = list(each_record(result.records))
    assert [(r.time_ms, r.utc_offset_min) for r in records] == [(_utc("2025-03-30T01:30"), 60)]
    assert ctx.skipped_hour_records == 1


# --- bad rows ----------------------------------------------------------------------------------------


def test_bad_rows_are_reported_with_their_line_and_the_rest_imports() -> None:
    text = _file(
        _row("Jan 5, 2024", "8:00:00 AM", **{"Blood Sugar Measurement": "120"}),
        _row("Jan 5, 2024", "8:15:00 AM", **{"Blood Sugar Measurement": "1x9"}),
        _row("Jan 41, 2024", "8:30:00 AM", **{"Blood Sugar Measurement": "131"}),
        _row("Jan 5, 2024", "25:45:00", **{"Blood Sugar Measurement": "131"}),
        _row("", "8:50:00 AM", **{"Blood Sugar Measurement": "131"}),
        _row("Jan 5, 2024", "9:00:00 AM", **{"Blood Sugar Measurement": "-5"}),
        _row("Jan 5, 2024", "9:10:00 AM", **{"Blood Sugar Measurement": "0"}),
        _row("Jan 5, 2024", "9:15:00 AM", **{"Insulin Injection Units (Pen)": "lots"}),
        _row("Jan 5, 2024", "9:20:00 AM", **{"Meal Carbohydrates": "99999"}),
        _row(
            "Jan 5, 2024",
            "9:30:00 AM",
            **{"Blood Sugar Measurement": "140", "Note": 'a "quoted", multi\nline note'},
        ),
        ",,,,",
    )
    records, result = _parse_text(text)
    assert [(r.line, r.type, r.value) for r in records] == [
        (2, "smbg", 120.0),
        (12, "smbg", 140.0),
        (12, "note", None),
    ]
    assert records[2].payload == {"text": 'a "quoted", multi\nline note'}
    assert sorted((r.line, r.reason) for r in result.rejected) == [
        (3, "blood sugar is not a number"),
        (4, "unreadable date or time"),
        (5, "unreadable date or time"),
        (6, "no date or time"),
        (7, "blood sugar is negative"),
        (8, "blood sugar is not positive"),
        (9, "pen insulin is not a number"),
        (10, "meal carbohydrates is out of range"),
    ]
    for rejected in result.rejected:
        assert not any(secret in rejected.reason for secret in ("1x9", "41", "25:45", "-5", "lots", "99999"))


def test_a_truncated_last_row_and_an_unclosed_quote_are_reported() -> None:
    good = _row("Jan 5, 2024", "8:00:00 AM", **{"Blood Sugar Measurement": "120"})
    records, result = _parse_text(_file(good) + '"Jan 5, 2024",8:15:00 AM,,13')
    assert [r.line for r in records] == [2]
    assert result.rejected == [RejectedRow(3, "the last row is cut short (truncated file?)")]
    _, result = _parse_text(_file(good) + '"Jan 5, 2024",8:15:00 AM,"never closed\n')
    assert result.rejected == [
        RejectedRow(3, "a quoted field is malformed or never closed (truncated file?)")
    ]


# --- through the import service, on both databases -------------------------------------------------


def test_import_service_end_to_end(session: Session, settings: Settings) -> None:
    tz = "Europe/Vienna"
    timeline = simulate(profile(therapy="pump", timezone=tz, seed=31), start=dt.date(2025, 10, 20), days=10)
    export = write_mysugr(timeline, MySugrOptions(timezone_column="iana"))
    patient = add_patient(session, validate_patient(email="mysugr@example.org", name="Mia Sugr", timezone=tz))
    incoming = IncomingFile(export.file_name, export.data)
    first = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    expected_counts = collections.Counter(e.type for e in export.expected)
    assert first.format == "mysugr"
    assert first.counts == dict(sorted(expected_counts.items()))
    assert (first.new, first.duplicates, first.rejected_count) == (len(export.expected), 0, 0)
    assert first.device is not None
    assert (first.device.manufacturer, first.device.model, first.device.serial) == (
        "Roche",
        "mySugr app",
        None,
    )
    assert any(w.startswith("not stored: HbA1c, blood pressure, location, steps") for w in first.warnings)
    again = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    assert (again.new, again.duplicates) == (0, len(export.expected))
    german = write_mysugr(timeline, MySugrOptions(language="de", units="mmol/L"))
    other = import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile(german.file_name, german.data),
        timezone=None,
        actor="test",
    )
    assert other.new > 0
    assert len(list_devices(session, patient.id)) == 1, "one mySugr app device per patient"


def _bad_inputs() -> dict[str, tuple[bytes, type[InputError], str]]:
    good = write_mysugr(_timeline(days=3), MySugrOptions(crlf=True)).data
    lines = good.splitlines(keepends=True)
    header = lines[0]
    dates = [line.replace(b", 2025", b", 20x5") for line in lines[1:]]
    return {
        "truncated": (good[: len(good) // 2], MalformedFileError, "truncated"),
        "renamed column": (
            good.replace(b"Blood Sugar Measurement (mg/dL)", b"Blood Sugar Measurement (mg/100ml)"),
            MalformedFileError,
            "line 1: unknown glucose unit in column",
        ),
        "unknown unit": (
            good.replace(b"Meal Carbohydrates (Grams, Factor 1)", b"Meal Carbohydrates (Ounces)"),
            MalformedFileError,
            "line 1: unknown carbohydrate unit",
        ),
        "bad dates": (
            header + b"".join(dates),
            MalformedFileError,
            "unreadable date or time; no row of the file",
        ),
        "missing time column": (
            good.replace(b"Date,Time,", b"Date,Uhr,", 1),
            UnknownFormatError,
            "unrecognised format",
        ),
        "wrong vendor": (
            write_clarity(simulate(profile(seed=3), start=dt.date(2025, 6, 1), days=1)).data.replace(
                b"Timestamp (YYYY-MM-DDThh:mm:ss)", b"Time"
            ),
            UnknownFormatError,
            "unrecognised format",
        ),
        "only a header": (header, NoRecordsError, "holds no records"),
    }


@pytest.fixture
def stored(engine: Engine, settings: Settings) -> Patient:
    """A committed patient with a committed mySugr upload: what a refused import must not change."""
    return committed_upload(engine, settings, write_mysugr(_timeline(days=2)))


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_input_is_refused_and_changes_nothing(
    case: str, engine: Engine, settings: Settings, stored: Patient
) -> None:
    data, error, message = _bad_inputs()[case]
    refused = refused_unchanged(engine, settings, stored.id, IncomingFile("bad.csv", data), error)
    assert refused.message.startswith("bad.csv")
    assert message in refused.message
