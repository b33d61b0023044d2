"""Tandem Source (five CSVs) and legacy t:connect: round trips, mapping, detection, bad input, service."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import functools
import io
import zipfile
import zoneinfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.base import ParseContext, ParsedRecord, ParseResult, SourceText, each_record
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import EmptyFileError, MalformedFileError, NoRecordsError, UnknownFormatError
from glucoshare.ingest.registry import detect_format, importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file, import_files
from glucoshare.ingest.tandem_source import (
    GENERIC_MODEL,
    TandemSourceImporter,
    device_order,
    dose_segments,
    pump_model,
)
from glucoshare.ingest.tandem_tconnect import UNNAMED_PUMP, TConnectImporter
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.libreview import write_libreview
from glucoshare.simulator.writers.tandem import (
    TandemSourceExport,
    TandemSourceOptions,
    TConnectOptions,
    write_tandem_source,
    write_tconnect,
)
from tests.ingest.helpers import committed_upload, expected_keys, parsed_keys, profile, refused_unchanged

SOURCE = TandemSourceImporter()
TCONNECT = TConnectImporter()
KINDS = ("CGM", "BG", "Bolus", "Basal-doses", "Hourly-basal-delivery")

CGM_HEADER = "Device Type,Serial Number,Description,Event Date Time,Readings (mg/dL)"
BG_HEADER = "Device Type,Serial Number,Description,Event Date Time,BG (mg/dL),Note"
BOLUS_HEADER = (
    "Type,Bolus Type,Bolus Delivery Method,BG (mg/dL),Serial Number,Completion Date Time,Insulin Delivered,"
    "Food Delivered,Correction Delivered,Completion Status Desc,Bolex Start Date Time,Bolex Completion Date "
    "Time,Bolex Insulin Delivered,Bolex Completion Status Desc,Standard Percent,Duration (mins),Carb Size,"
    "Target BG (mg/dL),Correction Factor,Carb Ratio"
)
DOSES_HEADER = "Device Type,Serial Number,Event Date Time,Commanded Basal Dose (units of insulin)"
HOURS = ",".join(f"{(h % 12) or 12}:00 {'AM' if h < 12 else 'PM'}" for h in range(24))
HOURLY_HEADER = f"Serial Number,Event Date,{HOURS}"
MOBI = "Tandem Mobi™ System"

# The first hour of the real sample's Basal-doses file (madleina/aidR, research/formats.md §4.1):
# its twelve doses sum to the 1.037 U of the Hourly file's 12:00 AM column.
SAMPLE_DOSES = [
    ("00:04:04", "0.028"),
    ("00:09:03", "0.041"),
    ("00:14:04", "0.102"),
    ("00:19:04", "0.139"),
    ("00:24:04", "0.139"),
    ("00:29:05", "0.139"),
    ("00:34:05", "0.112"),
    ("00:39:06", "0.103"),
    ("00:44:06", "0.068"),
    ("00:49:06", "0.066"),
    ("00:54:07", "0.04"),
    ("00:59:06", "0.06"),
    ("01:04:07", "0.086"),
]
SAMPLE_HOURLY = (
    "1111111,3/5/26,1.037,0.968,0.57,0.811,0.707,0.241,0.114,0.338,0.732,0.61,1.093,0.684,0.684,1.162,"
    "1.057,0.518,0.372,0.114,1.175,0.817,1.254,0.57,0.457,0.376"
)


def _source(name: str, data: bytes) -> SourceText:
    decoded = decode_text(data, name)
    return SourceText(name, decoded.text, decoded.encoding)


def _text(name: str, *lines: str, newline: str = "\n", final: bool = True) -> SourceText:
    return SourceText(name, newline.join(lines) + (newline if final else ""), "utf-8")


def _parse(
    importer: TandemSourceImporter | TConnectImporter,
    source: SourceText,
    tz: str = "UTC",
    siblings: tuple[SourceText, ...] = (),
) -> tuple[list[ParsedRecord], ParseResult]:
    result = importer.parse(source, ParseContext(tz, siblings))
    return list(each_record(result.records)), result


def _utc(text: str, tz: str = "UTC") -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz)).timestamp() * 1000)


def _pump(tz: str, start: dt.date, days: int, *, seed: int = 3, control: float = 0.4) -> Timeline:
    return simulate(profile(therapy="pump", timezone=tz, seed=seed, control=control), start=start, days=days)


@functools.cache
def _fall_back() -> Timeline:
    """Four days across Berlin's fall-back change (26 October 2025)."""
    return _pump("Europe/Berlin", dt.date(2025, 10, 24), 4, seed=6, control=0.0)


def _check_export(export: TandemSourceExport, tz: str) -> dict[str, tuple[list[ParsedRecord], ParseResult]]:
    """Parse every file with the others as siblings; each must give its expected records exactly."""
    sources = [_source(f.file_name, f.data) for f in export.files]
    out: dict[str, tuple[list[ParsedRecord], ParseResult]] = {}
    for written, source in zip(export.files, sources, strict=True):
        assert detect_format(source).format == "tandem_source", written.file_name
        records, result = _parse(SOURCE, source, tz, tuple(s for s in sources if s is not source))
        got, expected = parsed_keys(records), expected_keys(written.expected)
        if got != expected:
            extra = collections.Counter(got) - collections.Counter(expected)
            missing = collections.Counter(expected) - collections.Counter(got)
            pytest.fail(f"{written.file_name}: extra {list(extra)[:3]}, missing {list(missing)[:3]}")
        assert tuple(sorted(r.line for r in result.rejected)) == export.rejected[written.file_name]
        assert {r.device for r in records} <= set(result.devices)
        kind = next(k for k in KINDS if written.file_name.endswith(f"-{k}.csv"))
        out["Hourly" if kind.startswith("Hourly") else kind] = (records, result)
    hourly = export.file("Hourly-basal-delivery")
    records, _ = _parse(SOURCE, _source(hourly.file_name, hourly.data), tz)
    assert parsed_keys(records) == expected_keys(list(export.hourly_alone))
    return out


# --- Tandem Source: simulated round trips ---------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        TandemSourceOptions(),
        TandemSourceOptions(pump="tslim", crlf=True, bom=True, final_newline=False),
        TandemSourceOptions(order="descending", out_of_range="word", empty_hours="blank"),
        TandemSourceOptions(order="shuffled", pump_replaced=True, blank_cells=True),
        TandemSourceOptions(pump="tslim", order="descending", pump_replaced=True, empty_hours="blank"),
    ],
    ids=[
        "as-exported",
        "tslim-crlf-bom-no-final-newline",
        "descending-words",
        "shuffled-two-pumps",
        "reversed",
    ],
)
def test_round_trip_every_variant(options: TandemSourceOptions) -> None:
    timeline = _fall_back()
    export = write_tandem_source(timeline, options)
    parsed = _check_export(export, "Europe/Berlin")
    records = [r for records, _ in parsed.values() for r in records]
    kinds = collections.Counter((r.type, r.subtype) for r in records)
    for kind in [
        ("cbg", "sensor"),
        ("smbg", "meter"),
        ("note", ""),
        ("bolus", "normal"),
        ("bolus", "dual"),
        ("bolus", "extended"),
        ("bolus", "automated"),
        ("wizard", ""),
        ("basal", "automated"),
    ]:
        assert kinds[kind] > 0, f"the simulation must produce {kind}"
    annotations = collections.Counter(r.annotation for r in records if r.type == "cbg")
    assert annotations["low"] > 0
    assert annotations["high"] > 0
    assert any(r.value == 0 for r in records if r.type == "basal"), "zero doses"
    # Every file names the same pump the same way, also those without a Device Type column.
    for _, result in parsed.values():
        for serial, device in result.devices.items():
            assert (device.manufacturer, device.model, device.serial) == (
                "Tandem Diabetes Care",
                export.models[serial],
                serial,
            )
    assert len({s for _, result in parsed.values() for s in result.devices}) == (
        2 if options.pump_replaced else 1
    )
    # The hourly totals are the doses summed: stored only when the hourly file comes alone.
    _, hourly = parsed["Hourly"]
    assert any("not stored: the Basal-doses file of the same upload" in note for note in hourly.notes)
    assert sum(1 for e in export.hourly_alone) > 0


def test_the_repeated_hour_is_read_in_order_and_the_hourly_file_spans_it() -> None:
    timeline = _fall_back()
    export = write_tandem_source(timeline)
    parsed = _check_export(export, "Europe/Berlin")
    cgm, _ = parsed["CGM"]
    walls = collections.Counter(r.time_ms + r.utc_offset_min * 60_000 for r in cgm)
    offsets = {r.utc_offset_min for r in cgm}
    assert offsets == {60, 120}
    change = _utc("2025-10-26T03:00", "Europe/Berlin")  # 01:00 UTC
    in_second_pass = [r for r in cgm if change <= r.time_ms < change + 3_600_000]
    assert in_second_pass, "readings of the repeated hour's second pass were read as such"
    assert any(count == 2 for count in walls.values()), "one wall time read as two instants (both passes)"
    # The hourly record of 2:00 AM on the change day lasts two hours (both passes of that hour).
    first_pass = _utc("2025-10-26T00:00", "UTC")
    hour = [e for e in export.hourly_alone if e.utc_ms == first_pass]
    assert len(hour) == 1
    hourly = export.file("Hourly-basal-delivery")
    records, _ = _parse(SOURCE, _source(hourly.file_name, hourly.data), "Europe/Berlin")
    long_hour = next(r for r in records if r.time_ms == first_pass and r.utc_offset_min == 120)
    assert long_hour.duration_ms == 2 * 3_600_000
    assert long_hour.value == pytest.approx(long_hour.orig_value / 2)  # type: ignore[operator]


def test_spring_forward_round_trip_and_the_skipped_hour() -> None:
    timeline = _pump("America/New_York", dt.date(2025, 3, 8), 2, seed=9)
    export = write_tandem_source(timeline, TandemSourceOptions(pump_replaced=True))
    _check_export(export, "America/New_York")
    hourly = export.file("Hourly-basal-delivery")
    records, result = _parse(SOURCE, _source(hourly.file_name, hourly.data), "America/New_York")
    assert result.rejected == []
    assert all(r.duration_ms == 3_600_000 for r in records)
    # 2:00 AM does not exist on 9 March: the 47 hourly records of the pump listed first tile its two days.
    first = next(iter(result.devices))
    starts = sorted(r.time_ms for r in records if r.device == first)
    assert len(starts) == 47
    assert {b - a for a, b in zip(starts, starts[1:], strict=False)} == {3_600_000}
    assert starts[0] == _utc("2025-03-08T00:00", "America/New_York")


_DST_STARTS = [dt.date(2025, 3, 29), dt.date(2025, 10, 25), dt.date(2025, 11, 1), dt.date(2025, 3, 8)]


@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 2),
    start=st.one_of(st.dates(dt.date(2021, 1, 1), dt.date(2026, 6, 30)), st.sampled_from(_DST_STARTS)),
    timezone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]),
    control=st.floats(0.0, 1.0),
    order=st.sampled_from(["ascending", "descending", "shuffled"]),
    flags=st.tuples(*[st.booleans()] * 7),
)
def test_round_trip_property(
    seed: int,
    days: int,
    start: dt.date,
    timezone: str,
    control: float,
    order: str,
    flags: tuple[bool, bool, bool, bool, bool, bool, bool],
) -> None:
    mobi, crlf, bom, final_newline, word, blank_hours, replaced = flags
    timeline = _pump(timezone, start, days, seed=seed, control=control)
    options = TandemSourceOptions(
        pump="mobi" if mobi else "tslim",
        crlf=crlf,
        bom=bom,
        final_newline=final_newline,
        order=order,  # type: ignore[arg-type]
        out_of_range="word" if word else "limit",
        empty_hours="blank" if blank_hours else "zero",
        pump_replaced=replaced,
        blank_cells=seed % 2 == 0,
    )
    _check_export(write_tandem_source(timeline, options), timezone)


@given(
    readings=st.lists(st.integers(41, 399), min_size=1, max_size=30),
    doses=st.lists(st.integers(0, 2000), min_size=1, max_size=30),
)
def test_any_value_in_range_survives(readings: list[int], doses: list[int]) -> None:
    cgm = _text(
        "x-CGM.csv",
        CGM_HEADER,
        *(f"{MOBI},77,EGV,2026-03-05T{i // 12:02d}:{i % 12 * 5:02d}:33,{v}" for i, v in enumerate(readings)),
    )
    records, result = _parse(SOURCE, cgm)
    assert result.rejected == []
    assert [(r.value, r.orig_value, r.annotation) for r in records] == [
        (float(v), float(v), None) for v in readings
    ]
    written = [f"{d / 1000:.3f}" for d in doses]
    basal = _text(
        "x-Basal-doses.csv",
        DOSES_HEADER,
        *(f"{MOBI},77,2026-03-05T{i // 12:02d}:{i % 12 * 5:02d}:00,{w}" for i, w in enumerate(written)),
    )
    records, _ = _parse(SOURCE, basal)
    assert [r.orig_value for r in records] == [float(w) for w in written]
    assert sum(r.value * r.duration_ms / 3_600_000 for r in records) == pytest.approx(  # type: ignore[operator]
        sum(float(w) for w in written)
    )


@functools.cache
def _small_files() -> tuple[WrittenExport, ...]:
    timeline = _pump("Europe/Berlin", dt.date(2025, 5, 2), 1, seed=5)
    return (*write_tandem_source(timeline).files, write_tconnect(timeline).file)


@given(
    which=st.integers(0, 5),
    cuts=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 40), st.text(max_size=6)), max_size=6),
)
def test_mutated_input_never_raises_anything_but_input_errors(
    which: int, cuts: list[tuple[int, int, str]]
) -> None:
    export = _small_files()[which]
    text = _source(export.file_name, export.data).text[:20_000]
    for where, length, insert in cuts:
        at = where % max(len(text), 1)
        text = text[:at] + insert + text[at + length :]
    source = SourceText(export.file_name, text, "utf-8")
    for importer in (SOURCE, TCONNECT):
        if not importer.detect(source.head()):
            continue
        with contextlib.suppress(InputError):
            _parse(importer, source, "Europe/Berlin")


@given(
    which=st.integers(0, 5),
    keep=st.lists(st.booleans(), min_size=45, max_size=45),
    order=st.randoms(use_true_random=False),
)
def test_damaged_headers_never_raise_anything_but_input_errors(
    which: int, keep: list[bool], order: object
) -> None:
    """Columns left out of a header or moved (the rows unchanged) give rows or refusals, never a crash."""
    export = _small_files()[which]
    lines = _source(export.file_name, export.data).text.split("\n")
    at = next((i for i, line in enumerate(lines) if "EventDateTime" in line and "Bolus" in line), 0)
    names = lines[at].split(",")
    kept = [name for name, flag in zip(names, keep, strict=False) if flag]
    order.shuffle(kept)  # type: ignore[attr-defined]
    lines[at] = ",".join(kept)
    source = SourceText(export.file_name, "\n".join(lines), "utf-8")
    for importer in (SOURCE, TCONNECT):
        if importer.detect(source.head()):
            with contextlib.suppress(InputError):
                _parse(importer, source, "Europe/Berlin")


# --- Tandem Source: the mapping in detail ----------------------------------------------------------------


def test_a_basal_beyond_what_a_pump_delivers_is_a_rejected_row_not_an_infinite_rate() -> None:
    # Found by the fuzzer (tests/fuzz): a dose or hourly total of 1e308 U made the rate (U/h) infinite,
    # and that was stored.
    doses = _text(
        "x-Basal-doses.csv",
        DOSES_HEADER,
        f"{MOBI},1111111,2026-03-05T00:04:04,0.028",
        f"{MOBI},1111111,2026-03-05T00:09:03,1e308",
        f"{MOBI},1111111,2026-03-05T00:14:04,9",
        f"{MOBI},1111111,2026-03-05T00:19:04,0.139",
    )
    records, result = _parse(SOURCE, doses, "Europe/Zurich")
    assert [(row.line, row.reason) for row in result.rejected] == [
        (3, "Commanded Basal Dose is more than 50 U/h"),
        (4, "Commanded Basal Dose is more than 50 U/h"),
    ]
    assert [r.orig_value for r in records] == [0.028, 0.139]
    hourly = _text(
        "x-Hourly-basal-delivery.csv", HOURLY_HEADER, SAMPLE_HOURLY.replace(",1.037,", ",1e308,", 1)
    )
    records, result = _parse(SOURCE, hourly, "Europe/Zurich")
    assert records == []
    assert [(row.line, row.reason) for row in result.rejected] == [
        (2, "the 12:00 AM column is more than 50 U")
    ]


def test_basal_doses_are_doses_and_sum_to_the_hourly_totals_of_the_sample() -> None:
    doses = _text(
        "XXX_1111111_10Mar2026_1111-Basal-doses.csv",
        DOSES_HEADER,
        *(f"{MOBI},1111111,2026-03-05T{stamp},{dose}" for stamp, dose in SAMPLE_DOSES),
    )
    hourly = _text("XXX_1111111_10Mar2026_1111-Hourly-basal-delivery.csv", HOURLY_HEADER, SAMPLE_HOURLY)
    records, result = _parse(SOURCE, doses, "Europe/Zurich")
    assert result.rejected == []
    assert [(d.manufacturer, d.model, d.serial) for d in result.devices.values()] == [
        ("Tandem Diabetes Care", "Tandem Mobi", "1111111")
    ]
    assert {(r.type, r.subtype, r.orig_unit) for r in records} == {("basal", "automated", "U")}
    first_hour = [r for r in records if r.time_ms < _utc("2026-03-05T01:00", "Europe/Zurich")]
    delivered = sum(r.value * r.duration_ms / 3_600_000 for r in first_hour)  # type: ignore[operator]
    assert delivered == pytest.approx(1.037)
    assert records[0].time_ms == _utc("2026-03-05T00:04:04", "Europe/Zurich")
    assert records[0].duration_ms == 299_000  # until 00:09:03
    assert records[0].value == pytest.approx(0.028 * 3_600_000 / 299_000)
    assert records[-1].duration_ms == 300_000  # the last one: one cycle
    # Alone, the hourly file stores 24 hourly averages and says they double the doses' insulin.
    alone, result = _parse(SOURCE, hourly, "Europe/Zurich")
    assert len(alone) == 24
    assert alone[0].value == pytest.approx(1.037)
    assert (alone[0].duration_ms, alone[0].orig_value, alone[0].orig_unit) == (3_600_000, 1.037, "U")
    assert alone[0].time_ms == _utc("2026-03-05T00:00", "Europe/Zurich")
    assert any("stored twice" in note for note in result.notes)
    assert result.devices["1111111"].model == GENERIC_MODEL
    # With its doses file, it stores only the hours the doses do not cover, and takes the model.
    together, result = _parse(SOURCE, hourly, "Europe/Zurich", (doses,))
    assert len(together) == 22
    assert {r.time_ms for r in together}.isdisjoint(
        {_utc("2026-03-05T00:00", "Europe/Zurich"), _utc("2026-03-05T01:00", "Europe/Zurich")}
    )
    assert result.devices["1111111"].model == "Tandem Mobi"
    assert any(
        note.startswith("2 hourly basal totals were not stored") and doses.name in note
        for note in result.notes
    )


def test_dose_segments() -> None:
    minute = 60_000
    instants = np.array([0, 5 * minute, 10 * minute, 10 * minute, 30 * minute, 35 * minute + 1000], np.int64)
    assert dose_segments(instants).tolist() == [
        5 * minute,
        5 * minute,
        5 * minute,  # rows at the same instant share the gap of their instant (20 min: too long)
        5 * minute,
        5 * minute + 1000,
        5 * minute,  # the last row
    ]


def test_bolus_rows_map_to_boluses_and_the_calculator() -> None:
    source = _text(
        "x-Bolus.csv",
        BOLUS_HEADER,
        "Bolus,Food / Correction,Standard,158,1111111,2026-03-05T04:51:44,2.48,1.89,0.59,Completed,,,,,100,0,17,0,0,0",
        "Bolus,Food,Extended,,1111111,2026-03-05T08:02:13,1.8,3,0,Completed,2026-03-05T08:02:13,"
        "2026-03-05T10:02:13,1.2,Completed,60,120,45,110,40,10",
        "Bolus,Food,Extended,,1111111,2026-03-05T09:00:00,0,2,0,Completed,2026-03-05T09:00:00,,2,Completed,0,60,24,0,0,0",
        "Bolus,Automatic Correction,Standard,,1111111,2026-03-05T10:00:00,0.4,0,0.4,Completed,,,,,100,0,0,0,0,0",
        "Bolus,Correction,Standard,210,1111111,2026-03-05T11:00:00,0.8,0,0.8,Terminated by user,,,,,100,0,0,0,0,0",
        "Bolus,Food,Standard,,1111111,2026-03-05T12:00:00,,0,0,Completed,,,,,100,0,20,0,0,0",
        "Bolus,Food,Standard,,,2026-03-05T12:30:00,1,0,0,Completed,,,,,100,0,20,0,0,0",
        "Bolus,Food,Standard,,1111111,2026-03-05T13:00:00,lots,0,0,Completed,,,,,100,0,20,0,0,0",
        "Basal,Food,Standard,,1111111,2026-03-05T13:30:00,1,0,0,Completed,,,,,100,0,20,0,0,0",
        "Bolus,Food,Standard,,1111111,,1,0,0,Completed,,,,,100,0,20,0,0,0",
    )
    records, result = _parse(SOURCE, source)
    got = [(r.line, r.type, r.subtype, r.value, r.duration_ms, r.identity) for r in records]
    assert got == [
        (2, "bolus", "normal", 2.48, None, ""),
        (2, "wizard", "", 17.0, None, "bg=158.0"),
        (3, "bolus", "dual", 1.8, None, "normal"),
        (3, "bolus", "dual", 1.2, 7_200_000, "extended"),
        (3, "wizard", "", 45.0, None, "bg=None"),
        (4, "bolus", "extended", 2.0, 3_600_000, "extended"),
        (4, "wizard", "", 24.0, None, "bg=None"),
        (5, "bolus", "automated", 0.4, None, ""),
        (6, "bolus", "normal", 0.8, None, ""),
        (6, "wizard", "", 0.0, None, "bg=210.0"),
    ]
    assert records[0].payload == {
        "bolus_type": "Food / Correction",
        "delivery_method": "Standard",
        "completion_status": "Completed",
        "meal_units": 1.89,
        "correction_units": 0.59,
    }
    assert records[1].payload == {"bg_input": 158.0}  # the real export's 0s mean "not given"
    assert records[4].payload == {
        "bg_input": None,
        "carb_ratio": 10.0,
        "insulin_sensitivity": 40.0,
        "target_low": 110.0,
        "target_high": 110.0,
    }
    assert records[3].payload is not None
    assert records[3].payload["part"] == "extended"
    assert records[8].payload is not None
    assert records[8].payload["completion_status"] == "Terminated by user"
    assert records[0].time_ms == _utc("2026-03-05T04:51:44")
    assert sorted((r.line, r.reason) for r in result.rejected) == [
        (7, "bolus row without Insulin Delivered"),
        (8, "no Serial Number"),
        (9, "Insulin Delivered is not a number"),
        (10, "unknown row Type (not Bolus)"),
        (11, "no readable Completion Date Time"),
    ]
    assert all("lots" not in r.reason for r in result.rejected)


def test_cgm_and_bg_rows() -> None:
    cgm = _text(
        "x-CGM.csv",
        CGM_HEADER,
        f"{MOBI},1111111,EGV,2026-03-05T00:04:33,131",
        f"{MOBI},1111111,EGV,2026-03-05T00:09:32,40",
        f"{MOBI},1111111,EGV,2026-03-05T00:14:33,High",
        f"{MOBI},1111111,EGV,2026-03-05T00:19:33,",
        f"{MOBI},1111111,EGV,2026-03-05T00:24:33,1x1",
        f"{MOBI},1111111,EGV,2026-03-05T00:29:33,-3",
        f"{MOBI},1111111,Calibration,2026-03-05T00:34:33,120",
        f"{MOBI},1111111,BG,2026-03-05T00:35:00,118",
        f"{MOBI},1111111,EGV,2026-03-05 0:39,125",
        f"{MOBI},1111111,EGV,3/5/2026 12:44:33 AM,126",
        f"{MOBI},1111111,EGV,2026-03-05T00:49:33+01:00,127",
        f"{MOBI},1111111,EGV,,127",
        f"{MOBI},,EGV,2026-03-05T00:59:33,127",
        "",
        ",,,,",
    )
    records, result = _parse(SOURCE, cgm)
    got = sorted((r.line, r.type, r.value, r.orig_value, r.orig_unit, r.annotation) for r in records)
    assert got == [
        (2, "cbg", 131.0, 131.0, "mg/dL", None),
        (3, "cbg", 40.0, 40.0, "mg/dL", "low"),
        (4, "cbg", 400.0, None, "mg/dL", "high"),
        (9, "smbg", 118.0, 118.0, "mg/dL", None),
        (10, "cbg", 125.0, 125.0, "mg/dL", None),
        (11, "cbg", 126.0, 126.0, "mg/dL", None),
    ]
    assert [(r.line, r.reason) for r in sorted(result.rejected, key=lambda r: r.line)] == [
        (5, "row without a glucose value"),
        (6, "glucose value is not a number"),
        (7, "glucose value is not positive"),
        (8, "unknown reading Description (not EGV or BG)"),
        (12, "unreadable Event Date Time"),
        (13, "no Event Date Time"),
        (14, "no Serial Number"),
    ]
    mmol = _text("x-CGM.csv", CGM_HEADER.replace("mg/dL", "mmol/L"), f"{MOBI},1,EGV,2026-03-05T00:04:33,7.2")
    records, _ = _parse(SOURCE, mmol)
    assert (records[0].value, records[0].orig_value, records[0].orig_unit) == (
        7.2 * MGDL_PER_MMOLL,
        7.2,
        "mmol/L",
    )
    semicolons = _text(
        "x-CGM.csv",
        CGM_HEADER.replace(",", ";").replace("mg/dL", "mmol/L"),
        f"{MOBI};1;EGV;2026-03-05T00:04:33;7,2",
    )
    records, _ = _parse(SOURCE, semicolons)
    assert records[0].orig_value == 7.2
    bg = _text(
        "x-BG.csv",
        BG_HEADER,
        f"{MOBI},1111111,BG,2026-03-05T14:51:50,119,",
        f'{MOBI},1111111,BG,2026-03-05T15:43:34,136,"before lunch, felt low "',
        f"{MOBI},1111111,BG,2026-03-05T17:08:39,,only a note",
        final=False,  # as the real BG file
    )
    records, result = _parse(SOURCE, bg)
    assert result.rejected == []
    assert [(r.line, r.type, r.subtype, r.value, r.payload, r.identity) for r in records] == [
        (2, "smbg", "meter", 119.0, None, ""),
        (3, "smbg", "meter", 136.0, None, ""),
        (3, "note", "", None, {"text": "before lunch, felt low"}, "before lunch, felt low"),
        (4, "note", "", None, {"text": "only a note"}, "only a note"),
    ]


def test_several_pumps_in_one_file_are_several_devices_and_streams() -> None:
    cgm = _text(
        "x-CGM.csv",
        CGM_HEADER,
        "t:slim X2 Insulin Pump,222,EGV,2026-03-05T00:04:33,131",
        "t:slim X2 Insulin Pump,222,EGV,2026-03-05T00:09:33,132",
        f"{MOBI},333,EGV,2026-03-05T00:14:33,133",
    )
    records, result = _parse(SOURCE, cgm)
    assert [(d.model, d.serial) for d in result.devices.values()] == [
        ("t:slim X2", "222"),
        ("Tandem Mobi", "333"),
    ]
    assert [(r.device, r.value) for r in records] == [("222", 131.0), ("222", 132.0), ("333", 133.0)]
    bolus = _text(
        "x-Bolus.csv",
        BOLUS_HEADER,
        "Bolus,Food,Standard,,333,2026-03-05T04:51:44,2,0,0,Completed,,,,,100,0,17,0,0,0",
    )
    _, result = _parse(SOURCE, bolus, siblings=(cgm,))
    assert result.devices["333"].model == "Tandem Mobi"


@pytest.mark.parametrize(
    ("device_type", "model"),
    [
        ("Tandem Mobi™ System", "Tandem Mobi"),
        ("Tandem Mobi System", "Tandem Mobi"),
        ("t:slim X2™ Insulin Pump", "t:slim X2"),
        ("t:slim X2 Insulin Pump", "t:slim X2"),
        ("t:flex®  Pump", "t:flex Pump"),
        ("  ", GENERIC_MODEL),
    ],
)
def test_pump_models(device_type: str, model: str) -> None:
    assert pump_model(device_type) == model


def test_device_order() -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    hour = 3_600_000
    ascending = np.array([0, 5, 10, 10, 20], np.int64) * 60_000
    assert device_order(ascending, berlin) is None
    assert device_order(ascending[::-1].copy(), berlin).tolist() == [4, 3, 2, 1, 0]
    shuffled = np.array([10, 0, 20, 5], np.int64) * 60_000
    assert device_order(shuffled, berlin).tolist() == [1, 3, 0, 2]
    # A step back into the hour the fall-back change repeats is the device's own order.
    walls = np.array(
        [_utc(f"2025-10-26T{t}", "UTC") for t in ("01:50", "02:10", "02:55", "02:05", "02:30", "03:10")],
        np.int64,
    )
    assert device_order(walls, berlin) is None
    assert device_order(walls[::-1].copy(), berlin).tolist() == [5, 4, 3, 2, 1, 0]
    # A step back of more than the repeated hour, or out of it, is disorder: sorted.
    walls[3] -= 2 * hour
    assert device_order(walls, berlin).tolist() == [3, 0, 1, 4, 2, 5]


# --- detection ---------------------------------------------------------------------------------------------


def _others() -> list[WrittenExport]:
    timeline = simulate(profile(cgm="libre2", seed=2), start=dt.date(2025, 6, 1), days=1)
    pump = _pump("Europe/Berlin", dt.date(2025, 6, 1), 1)
    return [write_clarity(timeline), write_libreview(timeline), write_carelink(pump)]


def test_detection_both_ways() -> None:
    timeline = _pump("Europe/Berlin", dt.date(2025, 6, 1), 1)
    ours = {f.file_name: ("tandem_source", f) for f in write_tandem_source(timeline).files}
    tconnect = write_tconnect(timeline).file
    ours[tconnect.file_name] = ("tandem_tconnect", tconnect)
    for name, (fmt, export) in ours.items():
        for renamed in (name, "export.txt", "Clarity_Export.csv"):
            source = _source(renamed, export.data)
            assert detect_format(source).format == fmt, name
            claimed = [i.format for i in importers() if i.detect(source.head())]
            assert claimed == [fmt], (name, claimed)
    for export in _others():
        source = _source("XXX_1111111_10Mar2026_1111-CGM.csv", export.data)
        assert not SOURCE.detect(source.head())
        assert not TCONNECT.detect(source.head())
        assert detect_format(source).format not in ("tandem_source", "tandem_tconnect")


@pytest.mark.parametrize(
    "head",
    [
        [],
        [""],
        ["Device,Serial Number,Device Timestamp,Record Type,Historic Glucose mg/dL"],
        ["Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype"],
        ["Serial Number,Readings (mg/dL)"],
        ["DeviceType,SerialNumber,Description,Timestamp,Value"],
        ["Name:,X,Date Range:,2021-01-01 - 2021-02-01", "Timestamp,Serial Number,Record Type"],
    ],
    ids=["empty", "blank", "libreview", "clarity", "no-time-column", "other-camel-case", "glooko"],
)
def test_does_not_detect_other_files(head: list[str]) -> None:
    assert not SOURCE.detect(head)
    assert not TCONNECT.detect(head)


@pytest.mark.parametrize(
    "header",
    [
        CGM_HEADER,
        BG_HEADER,
        BOLUS_HEADER,
        DOSES_HEADER,
        HOURLY_HEADER,
        "\ufeff" + CGM_HEADER,
        CGM_HEADER.replace(",", ";"),
    ],
)
def test_detects_each_header(header: str) -> None:
    assert SOURCE.detect([header])
    assert not TCONNECT.detect([header])


# --- bad input: refused with a specific error, nothing stored ----------------------------------------------


def _bad_inputs() -> dict[str, tuple[bytes, type[InputError], str]]:
    cgm = (CGM_HEADER + "\n" + f"{MOBI},1111111,EGV,2026-03-05T00:04:33,131\n" * 3).encode()
    return {
        "truncated": (
            cgm + f"{MOBI},1111111,EGV,2026-03-05T00:09".encode(),
            MalformedFileError,
            "line 5: the file ends in the middle of a row (truncated?)",
        ),
        "renamed column": (
            cgm.replace(b"Readings (mg/dL)", b"Reading"),
            MalformedFileError,
            "line 1: a Tandem Source header without the columns of any of its files",
        ),
        "missing column": (
            cgm.replace(b"Serial Number,", b""),
            MalformedFileError,
            "line 1: a Tandem Source header without the columns of any of its files",
        ),
        "unknown unit": (
            cgm.replace(b"(mg/dL)", b"(mg/100mL)"),
            MalformedFileError,
            "line 1: unknown glucose unit in column 'Readings (mg/100mL)'",
        ),
        "bad dates": (
            cgm.replace(b"2026-03-05T00:04:33", b"05.03.2026 25:04"),
            MalformedFileError,
            "line 2: unreadable Event Date Time; no row of the file could be read",
        ),
        "wrong vendor": (
            b"Date;Time;Glucose\n05.03.2026;00:04;131\n",
            UnknownFormatError,
            "unrecognised format",
        ),
        "only a header": (CGM_HEADER.encode() + b"\n", NoRecordsError, "holds no records"),
        "empty": (b"", EmptyFileError, "the file is empty"),
        "t:connect in mmol/L": (
            (
                b"DeviceType,SerialNumber,Description,EventDateTime,Readings (CGM / BGM)\n"
                b'"t:slim X2 Insulin Pump","1","EGV","2021-04-01T00:01:33","7.2",\n'
            ),
            MalformedFileError,
            "the readings look like mmol/L",
        ),
        "t:connect without tables": (
            b"Tandem Diabetes Care Inc.\nt:connect Therapy Timeline Data Export\nPatient Name, X\n",
            MalformedFileError,
            "no t:connect table",
        ),
    }


@pytest.fixture
def stored(engine: Engine, settings: Settings) -> Patient:
    """A committed patient with one committed Tandem upload: a refused import must not change it."""
    timeline = _pump("Europe/Berlin", dt.date(2025, 6, 1), 1)
    cgm = write_tandem_source(timeline).file("CGM")
    return committed_upload(engine, settings, cgm, email="t@example.org", name="T")


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_input_is_refused_and_changes_nothing(
    case: str, engine: Engine, settings: Settings, stored: Patient
) -> None:
    data, error, message = _bad_inputs()[case]
    refused = refused_unchanged(engine, settings, stored.id, IncomingFile("bad-CGM.csv", data), error)
    assert refused.message.startswith("bad-CGM.csv"), refused.message
    assert message in refused.message


# --- through the import service, on SQLite and PostgreSQL ----------------------------------------------------


def test_a_tandem_source_zip_end_to_end(session: Session, settings: Settings) -> None:
    timeline = _fall_back()
    export = write_tandem_source(timeline, TandemSourceOptions(pump_replaced=True))
    archive = export.zipped()
    with zipfile.ZipFile(io.BytesIO(archive.data)) as members:
        assert sorted(members.namelist()) == sorted(f.file_name for f in export.files)
    patient = add_patient(
        session, validate_patient(email="mobi@example.org", name="Mo Bi", timezone="Europe/Berlin")
    )
    uploads = import_files(
        session,
        settings=settings,
        patient=patient,
        files=[IncomingFile(archive.file_name, archive.data)],
        timezone=None,
        actor="test",
    )
    by_kind = {next(k for k in KINDS if u.file.endswith(f"-{k}.csv")): u for u in uploads}
    assert set(by_kind) == {"CGM", "BG", "Bolus", "Basal-doses"}, "the hourly totals were left to the doses"
    for kind, upload in by_kind.items():
        written = export.file(kind)
        assert upload.format == "tandem_source"
        assert upload.counts == dict(sorted(collections.Counter(e.type for e in written.expected).items()))
        assert upload.rejected_count == 0
        assert upload.device is not None
        assert upload.device.manufacturer == "Tandem Diabetes Care"
        assert (upload.device.model, upload.device.serial) in {(m, s) for s, m in export.models.items()}
    cgm = by_kind["CGM"]
    assert cgm.new == len(export.file("CGM").expected)
    assert any("repeated by a daylight-saving change" in w for w in cgm.warnings)
    again = import_files(
        session,
        settings=settings,
        patient=patient,
        files=[IncomingFile(archive.file_name, archive.data)],
        timezone=None,
        actor="test",
    )
    assert sum(u.new for u in again) == 0
    assert sum(u.duplicates for u in again) == sum(len(f.expected) for f in export.files)


def test_single_files_end_to_end(session: Session, settings: Settings) -> None:
    timeline = _pump("America/New_York", dt.date(2025, 6, 1), 2, seed=4)
    export = write_tandem_source(timeline, TandemSourceOptions(pump="tslim"))
    patient = add_patient(
        session, validate_patient(email="x2@example.org", name="X Two", timezone="America/New_York")
    )
    hourly = export.file("Hourly-basal-delivery")
    upload = import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile(hourly.file_name, hourly.data),
        timezone=None,
        actor="test",
    )
    assert upload.counts == {"basal": len(export.hourly_alone)}
    assert upload.device is not None
    assert upload.device.model == GENERIC_MODEL, "alone, the hourly file does not know the pump's model"
    assert any("stored twice" in w for w in upload.warnings)
    tconnect = write_tconnect(timeline, TConnectOptions(blank_cells=True))
    upload = import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile(tconnect.file.file_name, tconnect.file.data),
        timezone=None,
        actor="test",
    )
    assert upload.format == "tandem_tconnect"
    assert upload.counts == dict(sorted(collections.Counter(e.type for e in tconnect.file.expected).items()))
    assert [r.line for r in upload.rejected] == list(tconnect.rejected)
    assert any("insulin-on-board rows" in w for w in upload.warnings)
    assert upload.device is not None
    assert (upload.device.model, upload.device.serial) == ("t:slim X2", next(iter(export.models)))
    again = import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile(tconnect.file.file_name, tconnect.file.data),
        timezone=None,
        actor="test",
    )
    assert (again.new, again.duplicates) == (0, len(tconnect.file.expected))


# --- t:connect -------------------------------------------------------------------------------------------------

TCONNECT_FILE = """Tandem Diabetes Care Inc.
t:connect Therapy Timeline Data Export
Patient Name, Sample Name
Patient DOB, 1/1/1990
Report Generated On, 4/24/2021 7:50:04 PM

DeviceType,SerialNumber,Description,EventDateTime,Readings (CGM / BGM)
"t:slim X2 Insulin Pump","11111111","EGV","2021-04-01T00:01:33","235",
"t:slim X2 Insulin Pump","11111111","BG","2021-04-01T00:03:00","241",
"t:slim X2 Insulin Pump","11111111","EGV","2021-04-02T23:31:36","181",

Type,EventID,EventDateTime,IOB
"IOB","81","2021-04-01T00:00:19","13.24"
"IOB","9","2021-04-01T00:03:12","12.80"

Type,EventDateTime,BasalRate
"Basal","2021-04-01T00:00:00","0.8"
"TempRate","2021-04-01T03:00:00","0.4"
"Suspension","2021-04-01T04:00:00","0"
"Basal","2021-04-01T05:00:00","x"

Type,Description,BG,IOB,BolusRequestID,BolusCompletionID,CompletionDateTime,InsulinDelivered,FoodDelivered,\
CorrectionDelivered,CompletionStatusID,CompletionStatusDesc,BolusIsComplete,BolexCompletionID,BolexSize,\
BolexStartDateTime,BolexCompletionDateTime,BolexInsulinDelivered,BolexIOB,BolexCompletionStatusID,\
BolexCompletionStatusDesc,ExtendedBolusIsComplete,EventDateTime,RequestDateTime,BolusType,BolusRequestOptions,\
StandardPercent,Duration,CarbSize,UserOverride,TargetBG,CorrectionFactor,FoodBolusSize,CorrectionBolusSize,\
ActualTotalBolusRequested,IsQuickBolus,EventHistoryReportEventDesc,EventHistoryReportDetails,NoteID,IndexID,Note
"Bolus","Standard/Correction","141",,"7001.000","7001.000","2021-04-01T12:58:26","13.53","12.50","1.03","3",\
"Completed","1",,,,,,,,,,"2021-04-01T12:53:36","2021-04-01T12:53:36","Carb","Standard/Correction","100.00","0",\
"75","0","110","30.00","12.50","1.03","13.53","0","0","Correction & Food Bolus","CF 1:30 - Carb Ratio 1:6",\
"0","1181649","",
"Bolus","Extended","131","0.71","7003.000","7003.000","2021-04-01T16:03:25","1.50","2.50","0.00","3","Completed",\
"1","8003.000","1.00","2021-04-01T16:03:25","2021-04-01T17:03:25","1.00",,"3","Completed","1",\
"2021-04-01T16:02:04","2021-04-01T16:02:04","Carb","Extended","60.00","60","30","1","110","30.00","2.50","0.00",\
"2.50","0","0","Food Bolus","CF 1:30","0","1182026","",
"Bolus","Automatic Bolus/Correction",,"1.71","7004.000","7004.000","2021-04-01T16:24:08","0.60","0.00","0.60",\
"3","Completed","1",,,,,,,,,,"2021-04-01T16:22:21","2021-04-01T16:22:21","Automatic Bolus","Standard","100.00",\
"0","0","0","110","30.00","0.00","0.60","0.60","0","0","Automatic Bolus","","0","1182082","",
"""


def test_tconnect_fixture_shaped_file() -> None:
    source = _text("therapy_timeline.csv", *TCONNECT_FILE.split("\n")[:-1], newline="\r\n")
    assert TCONNECT.detect(source.head())
    assert not SOURCE.detect(source.head())
    records, result = _parse(TCONNECT, source, "America/New_York")
    got = [(r.line, r.type, r.subtype, r.value, r.identity) for r in records]
    assert got == [
        (8, "cbg", "sensor", 235.0, ""),
        (9, "smbg", "meter", 241.0, ""),
        (10, "cbg", "sensor", 181.0, ""),
        (17, "basal", "scheduled", 0.8, ""),
        (18, "basal", "temp", 0.4, ""),
        (19, "basal", "suspend", 0.0, ""),
        (23, "bolus", "normal", 13.53, ""),
        (23, "wizard", "", 75.0, "bg=141.0"),
        (24, "bolus", "dual", 1.5, "normal"),
        (24, "bolus", "dual", 1.0, "extended"),
        (24, "wizard", "", 30.0, "bg=131.0"),
        (25, "bolus", "automated", 0.6, ""),
    ]
    assert [(r.line, r.reason) for r in result.rejected] == [(20, "BasalRate is not a number")]
    assert [(d.manufacturer, d.model, d.serial) for d in result.devices.values()] == [
        ("Tandem Diabetes Care", "t:slim X2", "11111111")
    ]
    assert records[0].time_ms == _utc("2021-04-01T00:01:33", "America/New_York")
    assert [r.duration_ms for r in records[3:6]] == [3 * 3_600_000, 3_600_000, None]
    bolus = records[6]
    assert bolus.time_ms == _utc("2021-04-01T12:58:26", "America/New_York"), "the completion time"
    assert bolus.payload == {
        "bolus_type": "Carb",
        "delivery_method": "Standard/Correction",
        "completion_status": "Completed",
        "meal_units": 12.5,
        "correction_units": 1.03,
        "programmed": 13.53,
    }
    assert records[7].payload == {
        "bg_input": 141.0,
        "insulin_sensitivity": 30.0,
        "target_low": 110.0,
        "target_high": 110.0,
        "food_estimate": 12.5,
        "correction_estimate": 1.03,
    }
    assert records[9].duration_ms == 3_600_000
    assert result.notes == [
        (
            "2 insulin-on-board rows (IOB table) were not stored: the pump computes them from the boluses, "
            "which are stored"
        )
    ]


@pytest.mark.parametrize(
    "options",
    [
        TConnectOptions(),
        TConnectOptions(crlf=False, bom=True, order="descending", shuffle_tables=True),
        TConnectOptions(order="shuffled", pump_replaced=True, blank_cells=True, basal_table=False),
    ],
    ids=["as-exported", "lf-bom-descending-tables-shuffled", "shuffled-two-pumps-no-basal"],
)
def test_tconnect_round_trip(options: TConnectOptions) -> None:
    timeline = _fall_back()
    export = write_tconnect(timeline, options)
    source = _source(export.file.file_name, export.file.data)
    assert detect_format(source).format == "tandem_tconnect"
    records, result = _parse(TCONNECT, source, "Europe/Berlin")
    assert parsed_keys(records) == expected_keys(export.file.expected)
    assert tuple(sorted(r.line for r in result.rejected)) == export.rejected
    kinds = collections.Counter((r.type, r.subtype) for r in records)
    assert kinds["bolus", "dual"] and kinds["bolus", "extended"] and kinds["bolus", "automated"]
    assert kinds["basal", "temp"] or not options.basal_table
    assert len(result.devices) == (2 if options.pump_replaced else 1)
    assert {d.model for d in result.devices.values()} == {"t:slim X2"}


def test_tconnect_tables_without_readings_and_unknown_tables() -> None:
    text = TCONNECT_FILE.split("\n\n")
    no_readings = "\n\n".join(
        [text[0], text[2], text[3], 'Type,Something,EventDateTime\n"X","1","2021-04-01T00:00:00"\n']
    )
    source = SourceText("t.csv", no_readings, "utf-8")
    assert TCONNECT.detect(source.head())
    records, result = _parse(TCONNECT, source)
    assert [(d.model, d.serial) for d in result.devices.values()] == [(UNNAMED_PUMP, None)]
    assert {r.type for r in records} == {"basal"}
    assert any("the table at line" in note and "1 rows were not read" in note for note in result.notes)


def test_tconnect_boluses_go_to_the_pump_in_use() -> None:
    text = TCONNECT_FILE.replace(
        '"t:slim X2 Insulin Pump","11111111","EGV","2021-04-02T23:31:36"',
        '"t:slim X2 Insulin Pump","22222222","EGV","2021-04-01T14:00:00"',
    )
    records, result = _parse(TCONNECT, SourceText("t.csv", text, "utf-8"))
    assert list(result.devices) == ["11111111", "22222222"]
    boluses = [r for r in records if r.type == "bolus"]
    assert [r.device for r in boluses] == ["11111111", "22222222", "22222222", "22222222"]


def test_tconnect_older_readings_variant_with_bg_and_note_columns() -> None:
    source = _text(
        "old.csv",
        "DeviceType,SerialNumber,Description,EventDateTime,BG,IOB,Note",
        '"t:slim X2 Insulin Pump","1234","BG","2019-02-01T08:00:00","143","1.2","before breakfast"',
        '"t:slim X2 Insulin Pump","1234","EGV","2019-02-01T08:05:00","150","",""',
    )
    assert TCONNECT.detect(source.head())
    records, result = _parse(TCONNECT, source)
    assert result.rejected == []
    assert [(r.type, r.value, r.payload) for r in records] == [
        ("smbg", 143.0, None),
        ("note", None, {"text": "before breakfast"}),
        ("cbg", 150.0, None),
    ]


def test_the_hours_of_the_doses_are_the_same_by_the_fast_and_the_row_by_row_reading() -> None:
    from glucoshare.ingest import tandem_source  # noqa: PLC0415

    doses = write_tandem_source(_pump("Europe/Berlin", dt.date(2025, 6, 1), 3)).files[3]
    text = doses.data.decode("utf-8-sig")
    header = tandem_source.sniff_header(text.splitlines()[0])
    assert header is not None
    source = SourceText(doses.file_name, text, "utf-8")
    fast = tandem_source._doses_hours_fast(
        source, header.delimiter, header.columns["serial"], header.columns["stamp"]
    )
    assert fast is not None
    lines = text.splitlines(keepends=True)
    slow_text = lines[0] + '"' + lines[1].replace(",", '",', 1) + "".join(lines[2:])  # one quoted cell
    slow_source = SourceText(doses.file_name, slow_text, "utf-8")
    assert (
        tandem_source._doses_hours_fast(slow_source, ",", header.columns["serial"], header.columns["stamp"])
        is None
    )
    assert tandem_source._doses_hours(slow_source, header) == fast


def test_removing_an_upload_restores_the_hourly_totals_read_beside_their_doses(
    session: Session, settings: Settings
) -> None:
    """A batch keeps its files together: an hourly file restored later still defers to its doses."""
    from sqlalchemy import func, select  # noqa: PLC0415

    from glucoshare.devices.models import Device  # noqa: PLC0415
    from glucoshare.ingest.service import remove_upload  # noqa: PLC0415
    from glucoshare.records.models import Record  # noqa: PLC0415

    export = write_tandem_source(_pump("Europe/Berlin", dt.date(2025, 6, 1), 2))
    doses, hourly = export.file("Basal-doses"), export.file("Hourly-basal-delivery")
    lines = doses.data.decode("utf-8-sig").splitlines(keepends=True)
    gap = lines[40].split(",")[2][:13]  # the doses of one hour are missing: the hourly file fills it
    kept = "".join(line for line in lines if f",{gap}" not in line).encode()
    files = [IncomingFile(doses.file_name, kept), IncomingFile(hourly.file_name, hourly.data)]
    patient = add_patient(
        session, validate_patient(email="t@example.org", name="T", timezone="Europe/Berlin")
    )

    def basal() -> int:
        devices = select(Device.seq).where(Device.patient_id == patient.id).scalar_subquery()
        query = select(func.count()).select_from(Record)
        return int(session.scalar(query.where(Record.device_seq.in_(devices), Record.type == "basal")) or 0)

    first = import_files(session, settings=settings, patient=patient, files=files, timezone=None, actor="t")
    assert [u.counts["basal"] for u in first][1] == 1  # the one hour without doses, from the totals
    stored = basal()
    import_files(session, settings=settings, patient=patient, files=files, timezone=None, actor="t")
    assert basal() == stored
    for upload in first:  # each is restored from the second batch, the hourly file beside its doses
        remove_upload(session, settings=settings, upload_id=upload.id, actor="t")
        assert basal() == stored
