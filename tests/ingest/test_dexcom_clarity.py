"""Dexcom Clarity importer: simulated round trips in every variant, real samples, bad rows."""

from __future__ import annotations

import datetime as dt
import math
import warnings
import zoneinfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from glucoshare.ingest.base import ParseContext, SourceText, each_record
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.dexcom_clarity import DexcomClarityImporter, _glucose_numbers, _wall_times
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import wall_ms
from glucoshare.ingest.numbers import parse_number
from glucoshare.ingest.timestamps import parse_iso_wall_time
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import ClarityOptions, write_clarity
from tests.conftest import SAMPLES
from tests.ingest.helpers import expected_keys, parse_export, parsed_keys, profile

IMPORTER = DexcomClarityImporter()


@pytest.mark.parametrize("language", ["en", "de", "es"])
@pytest.mark.parametrize("units", ["mg/dL", "mmol/L"])
@pytest.mark.parametrize("quoted", [False, True])
def test_round_trip_every_variant(language: str, units: str, quoted: bool) -> None:
    timeline = simulate(profile(control=0.2, seed=11), start=dt.date(2025, 6, 1), days=6)
    export = write_clarity(timeline, ClarityOptions(language=language, units=units, quoted=quoted))  # type: ignore[arg-type]
    fmt, records, result = parse_export(export, "Europe/Berlin")
    assert fmt == "dexcom_clarity"
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    glucose = [r for r in records if r.type == "cbg" and r.annotation is None]
    assert all(r.orig_unit == units for r in glucose)
    if units == "mmol/L":
        assert all(r.value == pytest.approx(r.orig_value * 18.01559) for r in glucose)


def test_out_of_range_words_become_limits_with_a_flag() -> None:
    timeline = simulate(profile(control=0.05, seed=5), start=dt.date(2025, 6, 1), days=10)
    export = write_clarity(timeline)
    _, records, _ = parse_export(export, "Europe/Berlin")
    lows = [r for r in records if r.annotation == "low"]
    highs = [r for r in records if r.annotation == "high"]
    assert lows, "the simulation must produce LO readings"
    assert highs, "the simulation must produce HI readings"
    assert {r.value for r in lows} == {40.0}
    assert {r.value for r in highs} == {400.0}


@pytest.mark.parametrize("order", ["device", "sorted"])
@pytest.mark.parametrize(
    ("timezone", "start"),
    [
        ("America/New_York", dt.date(2025, 3, 7)),
        ("America/New_York", dt.date(2025, 10, 31)),
        ("Europe/Berlin", dt.date(2025, 3, 28)),
        ("Europe/Berlin", dt.date(2025, 10, 24)),
    ],
)
def test_daylight_saving_transitions_round_trip(order: str, timezone: str, start: dt.date) -> None:
    timeline = simulate(profile(timezone=timezone, seed=3), start=start, days=4)
    export = write_clarity(timeline, ClarityOptions(order=order))  # type: ignore[arg-type]
    _, records, _ = parse_export(export, timezone)
    assert parsed_keys(records) == expected_keys(export.expected)
    cgm = sorted(r.time_ms for r in records if r.type == "cbg")
    assert len(cgm) == len(set(cgm)), "no two readings collapse into one instant"
    offsets = {r.utc_offset_min for r in records}
    assert len(offsets) == 2, "both sides of the transition are present"
    for r in records:
        wall = dt.datetime.fromtimestamp(r.time_ms / 1000, tz=zoneinfo.ZoneInfo(timezone))
        assert wall.utcoffset() == dt.timedelta(minutes=r.utc_offset_min)


@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 3),
    units=st.sampled_from(["mg/dL", "mmol/L"]),
    language=st.sampled_from(["en", "de", "es"]),
    control=st.floats(0.0, 1.0),
)
def test_round_trip_property(seed: int, days: int, units: str, language: str, control: float) -> None:
    timeline = simulate(
        profile(seed=seed, control=control, units=units), start=dt.date(2024, 1, 10), days=days
    )
    export = write_clarity(timeline, ClarityOptions(units=units, language=language))  # type: ignore[arg-type]
    _, records, result = parse_export(export, "Europe/Berlin")
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)


def _parse_text(text: str, timezone: str = "UTC") -> tuple[list[object], list[object]]:
    source = SourceText("x.csv", text, "utf-8")
    result = IMPORTER.parse(source, ParseContext(timezone))
    records = sorted(each_record(result.records), key=lambda record: record.line)
    return records, sorted(result.rejected, key=lambda row: row.line)


HEADER = (
    "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,Source Device ID,"
    "Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),"
    "Glucose Rate of Change (mg/dL/min),Transmitter Time (Long Integer),Transmitter ID\n"
)


def test_bad_rows_are_reported_with_their_line_and_the_rest_imports() -> None:
    text = HEADER + (
        "1,2024-01-01T10:00:00,EGV,,,,Android G6,120,,,,,100,8ABCDE\n"
        "2,2024-01-01T10:05:00,EGV,,,,Android G6,abc,,,,,400,8ABCDE\n"
        "3,2024-13-01T10:10:00,EGV,,,,Android G6,130,,,,,700,8ABCDE\n"
        "4,2024-01-01T10:15:00,Insulin,Fast-Acting,,,Android G6,,x,,,,\n"
        "5,2024-01-01T10:20:00,Mystery,,,,Android G6,,,,,,\n"
        "6,2024-01-01T10:25:00,EGV,,,,Android G6,140,,,,,1000,8ABCDE\n"
        "7,,EGV,,,,Android G6,150,,,,,1300,8ABCDE\n"
        "8,2024-01-01T10:35:00,EGV,,,,Android G6,,,,,,1600,8ABCDE\n"
        "9,2024-01-01T10:40:00,EGV,,,,Android G6,0,,,,,1900,8ABCDE\n"
    )
    records, rejected = _parse_text(text)
    assert len(records) == 2
    assert [(r.line, r.reason) for r in rejected] == [  # type: ignore[attr-defined]
        (3, "glucose value is not a number"),
        (4, "timestamp is not YYYY-MM-DDThh:mm:ss"),
        (5, "insulin value is not a number"),
        (6, "unknown event type"),
        (8, "row without a timestamp"),
        (9, "EGV row without a glucose value"),
        (10, "glucose value is not positive"),
    ]
    assert all("abc" not in r.reason for r in rejected)  # type: ignore[attr-defined]


def test_glucose_text_that_is_not_a_finite_number_is_refused() -> None:
    text = HEADER + (
        "1,2024-01-01T10:00:00,EGV,,,,Android G6,inf,,,,,100,8ABCDE\n"
        "2,2024-01-01T10:05:00,EGV,,,,Android G6,nan,,,,,400,8ABCDE\n"
        "3,2024-01-01T10:10:00,EGV,,,,Android G6,1_20,,,,,700,8ABCDE\n"
        "4,2024-01-01T10:15:00,EGV,,,,Android G6,120,,,,,1000,8ABCDE\n"
    )
    records, rejected = _parse_text(text)
    assert [r.value for r in records] == [120.0]  # type: ignore[attr-defined]
    assert [(r.line, r.reason) for r in rejected] == [  # type: ignore[attr-defined]
        (line, "glucose value is not a number") for line in (2, 3, 4)
    ]


def test_a_timestamp_with_an_offset_is_a_bad_row_not_a_crash() -> None:
    text = HEADER + (
        "1,2024-01-01T10:00:00+01:00,EGV,,,,Android G6,120,,,,,100,8ABCDE\n"
        "2,2024-01-01T10:05:00,EGV,,,,Android G6,125,,,,,400,8ABCDE\n"
    )
    records, rejected = _parse_text(text)
    assert [r.value for r in records] == [125.0]  # type: ignore[attr-defined]
    assert [(r.line, r.reason) for r in rejected] == [(2, "timestamp is not YYYY-MM-DDThh:mm:ss")]  # type: ignore[attr-defined]


def test_ragged_rows_and_excel_variants_are_accepted() -> None:
    text = HEADER + (
        "1,2024-01-01 9:00:00,EGV,,,,Android G6,120,,,,,100,8ABCDE\n"
        "2,2024-01-01T09:05,Carbs,,,,Android G6,,,30\n"
    )
    records, rejected = _parse_text(text)
    assert rejected == []
    assert [(r.type, r.value) for r in records] == [("cbg", 120.0), ("food", 30.0)]  # type: ignore[attr-defined]


def test_a_stray_carriage_return_refuses_the_file_with_its_line() -> None:
    # Found by the fuzzer (tests/fuzz): "\n\r" line ends put a carriage return at the start of every
    # row, which the csv module cannot split; that was an unhandled csv.Error.
    rows = [
        "1,2024-01-01T10:00:00,EGV,,,,Android G6,120,,,,,100,8ABCDE",
        "2,2024-01-01T10:05:00,EGV,,,,x,1,,,,,1,8A",
    ]
    text = HEADER.rstrip("\n") + "\n\r" + "\n\r".join(rows) + "\n\r"
    with pytest.raises(MalformedFileError, match=r"x\.csv: line 2: .*stray line break or quote"):
        _parse_text(text)


def test_a_transmitter_time_that_is_not_an_ascii_number_is_left_aside() -> None:
    # The mistake the fuzzer (tests/fuzz) found in the Smart Pix importer, found here by review: in
    # the hour a fall-back change repeats, the transmitter time orders the readings; "\u00b2" passes
    # str.isdigit() but not float(), and the ValueError escaped.
    timeline = simulate(profile(seed=3), start=dt.date(2025, 10, 25), days=2)
    lines = write_clarity(timeline).data.decode("utf-8-sig").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if ",EGV," in line and "2025-10-26T02:3" in line)
    cells = lines[at].split(",")
    cells[12] = "\u00b2"
    lines[at] = ",".join(cells)
    records, rejected = _parse_text("".join(lines), "Europe/Berlin")
    assert rejected == []
    assert at + 1 in {record.line for record in records}  # type: ignore[attr-defined]


def test_unknown_glucose_unit_refuses_the_file() -> None:
    text = (
        HEADER.replace("Glucose Value (mg/dL)", "Glucose Value (mg%)")
        + "1,2024-01-01T10:00:00,EGV,,,,x,1,,,,,1,8A\n"
    )
    with pytest.raises(MalformedFileError, match="line 1: unknown glucose unit"):
        _parse_text(text)


def test_transmitters_become_device_identifiers() -> None:
    text = HEADER + (
        "1,,Device,,,Dexcom G7,iOS G7,,,,,,,\n2,2024-01-01T10:00:00,EGV,,,,iOS G7,120,,,,,100,123456789012\n"
    )
    source = SourceText("x.csv", text, "utf-8")
    result = IMPORTER.parse(source, ParseContext("UTC"))
    list(each_record(result.records))
    device = result.devices["cgm"]
    assert (device.manufacturer, device.model, device.serial) == ("Dexcom", "G7", None)
    assert device.identifiers == {("dexcom_transmitter", "123456789012")}


def test_detection_is_by_content() -> None:
    assert IMPORTER.detect([HEADER.strip()])
    assert IMPORTER.detect([HEADER.strip().replace(",", ";")])
    assert not IMPORTER.detect(["Index,Date,Time,New Device Time"])
    assert not IMPORTER.detect(["Glucose Data,Generated on,29-03-2021 18:51 UTC,Generated by,X"])
    assert not IMPORTER.detect([])


SAMPLE_FILES = {
    "clarity_g6_2019_unquoted.csv": {
        "cbg": 3913,
        "insulin": 73,
        "smbg": 9,
        "food": 4,
        "physicalActivity": 3,
        "cgmSettings": 1,
    },
    "clarity_g6_2025_quoted_first3000lines.csv": {"cbg": 2944, "insulin": 43, "smbg": 2, "cgmSettings": 1},
}


@pytest.mark.skipif(not (SAMPLES / "dexcom_clarity").is_dir(), reason="shared/samples is not present")
@pytest.mark.parametrize("name", sorted(SAMPLE_FILES))
def test_real_clarity_exports(name: str) -> None:
    data = (SAMPLES / "dexcom_clarity" / name).read_bytes()
    decoded = decode_text(data, name)
    assert decoded.encoding == "utf-8-sig"
    source = SourceText(name, decoded.text, decoded.encoding)
    assert IMPORTER.detect(source.head())
    result = IMPORTER.parse(source, ParseContext("Europe/Bucharest"))
    records = list(each_record(result.records))
    assert result.rejected == []
    counts: dict[str, int] = {}
    for r in records:
        counts[r.type] = counts.get(r.type, 0) + 1
    assert counts == SAMPLE_FILES[name]
    assert result.devices["cgm"].model == "G6"
    settings = next(r for r in records if r.type == "cgmSettings")
    assert settings.payload is not None
    assert settings.payload["alerts"]["Urgent Low"] == {"threshold_mgdl": 55.0}


def _scalar_wall(stamp: str) -> int | None:
    try:
        return wall_ms(parse_iso_wall_time(stamp))
    except ValueError:
        return None


_STAMP = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
        lambda d: d.replace(microsecond=0).isoformat()
    ),
    st.text(alphabet="0123456789-T: Z+.", min_size=17, max_size=21),
    st.sampled_from(
        ["2024-13-01T10:10:00", "0000-01-01T00:00:00", "2024-01-01T10:00+01", "2024-01-01 10:00:00"]
    ),
)


@given(stamps=st.lists(_STAMP, min_size=1, max_size=30))
@example(stamps=["2024-01-01T10:00:00", "0000-01-01T00:00:00"])
def test_column_timestamps_read_as_one_by_one(stamps: list[str]) -> None:
    walls, unreadable = _wall_times(stamps)
    expected = [_scalar_wall(stamp) for stamp in stamps]
    assert unreadable == [at for at, wall in enumerate(expected) if wall is None]
    assert walls.tolist() == [wall for wall in expected if wall is not None]


def test_a_zoned_stamp_in_a_column_is_unreadable_whatever_the_warning_filter() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as in production, where warnings are not errors
        walls, unreadable = _wall_times(["2024-01-01T10:00:00", "2024-01-01T10:00+01"])
    assert (walls.tolist(), unreadable) == ([wall_ms(dt.datetime(2024, 1, 1, 10))], [1])


_CELL = st.one_of(
    st.floats(min_value=0, max_value=1000, allow_nan=False).map(lambda x: f"{x:.1f}"),
    st.integers(0, 500).map(str),
    st.sampled_from(
        ["Low", "High", "", " 120", "1_20", "inf", "nan", "1.234,5", "5,5", "+7", "12abc", "١٢٠"]
    ),
    st.text(alphabet="0123456789.,-e ", max_size=6),
)


@given(cells=st.lists(_CELL, min_size=1, max_size=30), decimal_comma=st.booleans())
def test_column_glucose_numbers_read_as_one_by_one(cells: list[str], decimal_comma: bool) -> None:
    numbers = _glucose_numbers(cells, decimal_comma=decimal_comma)
    expected = []
    for cell in cells:
        try:
            expected.append(parse_number(cell, decimal_comma=decimal_comma))
        except ValueError:
            expected.append(math.nan)
    for got, want in zip(numbers.tolist(), expected, strict=True):
        assert got == want or (math.isnan(want) and not math.isfinite(got)), (cells, got, want)
