"""Medtronic CareLink CSV: simulated round trips, the real samples, detection, bad rows, the service."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import itertools
import zoneinfo
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.devices.errors import DeviceOwnedByAnotherPatientError
from glucoshare.ingest.base import ParseContext, ParsedRecord, ParseResult, SourceText, each_record
from glucoshare.ingest.carelink import CareLinkImporter
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.dexcom_clarity import DexcomClarityImporter
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.registry import detect_format
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.service import dedup_key
from glucoshare.simulator.physiology import simulate
from glucoshare.simulator.timeline import PatientProfile, Timeline
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import HEADER_47, HEADER_54, CareLinkOptions, write_carelink
from glucoshare.simulator.writers.dexcom_clarity import ClarityOptions, write_clarity
from tests.conftest import SAMPLES
from tests.ingest.helpers import expected_keys, parsed_keys

CARELINK_SAMPLES = SAMPLES / "carelink"
PARADIGM = CARELINK_SAMPLES / "carelink_paradigm723_2018_anonymised.csv"
GUARDIAN = CARELINK_SAMPLES / "guardian4_carelink_anonymised.csv"


def _profile(
    tz: str, therapy: str, *, seed: int = 8, control: float = 0.3, cgm: str = "guardian4"
) -> PatientProfile:
    return PatientProfile(
        name="Lena Fischer",
        email="lena@example.org",
        birthdate=dt.date(1985, 5, 17),
        timezone=tz,
        therapy=therapy,  # type: ignore[arg-type]
        cgm=cgm,  # type: ignore[arg-type]
        control=control,
        seed=seed,
    )


def _timeline(tz: str, therapy: str, start: dt.date, days: int, *, seed: int = 8) -> Timeline:
    return simulate(_profile(tz, therapy, seed=seed), start=start, days=days)


def _source(name: str, data: bytes) -> SourceText:
    decoded = decode_text(data, name)
    return SourceText(name=name, text=decoded.text, encoding=decoded.encoding)


def _parse(source: SourceText, tz: str) -> tuple[ParseResult, list[ParsedRecord], ParseContext]:
    ctx = ParseContext(tz)
    result = CareLinkImporter().parse(source, ctx)
    records = list(each_record(result.records))
    return result, records, ctx


def _round_trip(export: WrittenExport, tz: str) -> tuple[ParseResult, list[ParsedRecord], ParseContext]:
    source = _source(export.file_name, export.data)
    assert CareLinkImporter().detect(source.head())
    result, records, ctx = _parse(source, tz)
    assert result.rejected == []
    got, expected = parsed_keys(records), expected_keys(export.expected)
    if got != expected:
        extra = collections.Counter(got) - collections.Counter(expected)
        missing = collections.Counter(expected) - collections.Counter(got)
        pytest.fail(
            f"read back differs: {len(extra)} unexpected, e.g. {list(extra)[:3]}; "
            f"{len(missing)} missing, e.g. {list(missing)[:3]}"
        )
    return result, records, ctx


# -- simulated round trips ---------------------------------------------------------------------------

# A pump week crossing the European fall-back change, and a Guardian-only timeline crossing the
# US spring-forward change.
TIMELINES = {
    "pump-berlin-fall-back": ("Europe/Berlin", "pump", dt.date(2025, 10, 23), 5),
    "guardian-new-york-spring": ("America/New_York", "mdi", dt.date(2025, 3, 7), 4),
}


@pytest.fixture(scope="module")
def timelines() -> dict[str, Timeline]:
    return {
        name: _timeline(tz, therapy, start, days) for name, (tz, therapy, start, days) in TIMELINES.items()
    }


@pytest.mark.parametrize("case", sorted(TIMELINES))
@pytest.mark.parametrize(
    ("generation", "locale", "units"),
    list(itertools.product((47, 49, 54), ("us", "eu"), ("mg/dL", "mmol/L"))),
)
def test_round_trip(
    timelines: dict[str, Timeline], case: str, generation: Any, locale: Any, units: Any
) -> None:
    timeline = timelines[case]
    tz = timeline.profile.timezone
    out_of_range: Any = "word" if generation == 49 else "number"
    options = CareLinkOptions(generation=generation, locale=locale, units=units, out_of_range=out_of_range)
    export = write_carelink(timeline, options)
    text = _source(export.file_name, export.data).text
    delimiter = ";" if locale == "eu" else ","
    header_line = next(line for line in text.splitlines() if line.startswith("Index"))
    assert len(header_line.split(delimiter)) == generation
    assert ("(mmol/L)" in header_line) == (units == "mmol/L")

    result, records, ctx = _round_trip(export, tz)

    assert len({r.utc_offset_min for r in records}) == 2  # the timeline crosses a DST change
    kinds = collections.Counter((r.type, r.subtype) for r in records)
    annotations = collections.Counter(r.annotation for r in records if r.type == "cbg")
    assert annotations["low"] > 0  # the trace leaves the sensor range (control=0.3)
    assert kinds["deviceEvent", "alarm"] > 0
    if timeline.profile.therapy == "pump":
        assert ctx.repeated_hour_records > 0
        for kind in [
            ("basal", "scheduled"),
            ("basal", "temp"),
            ("bolus", "normal"),
            ("bolus", "dual"),
            ("bolus", "extended"),
            ("wizard", ""),
            ("smbg", "meter"),
            ("smbg", "calibration"),
            ("deviceEvent", "prime"),
            ("deviceEvent", "reservoirChange"),
            ("deviceEvent", "timeChange"),
            ("note", ""),
        ]:
            assert kinds[kind] > 0, kind
        interrupted = [
            r
            for r in records
            if r.type == "bolus" and r.value is not None and r.value < (r.payload or {})["programmed"]
        ]
        assert interrupted  # the seed has a bolus interrupted before all of it was delivered
        temp_types = {(r.payload or {})["temp_type"] for r in records if r.subtype == "temp"}
        assert temp_types == {"Percent", "Rate"}
        model = {47: "Paradigm Revel - 723", 49: "MiniMed 770G MMT-1880", 54: "MiniMed 780G MMT-1886"}[
            generation
        ]
        assert [(d.manufacturer, d.model, d.serial) for d in result.devices.values()] == [
            ("Medtronic", model, timeline.device_serials["pump"])
        ]
        if generation == 54:
            assert kinds["deviceEvent", "other"] == 5  # one aggregated auto-insulin row per day
    else:
        for kind in [("food", ""), ("insulin", "unknown"), ("smbg", "meter")]:
            assert kinds[kind] > 0, kind
        assert kinds["bolus", "normal"] == 0
    glucose = [r for r in records if r.type == "cbg" and r.annotation is None]
    assert {r.orig_unit for r in glucose} == {units}


@pytest.mark.parametrize(
    "options",
    [
        CareLinkOptions(generation=54, locale="eu", units="mmol/L"),
        CareLinkOptions(generation=47, locale="us", units="mg/dL", bom=False, crlf=False),
    ],
    ids=["54-eu-mmol", "47-us-mgdl"],
)
def test_round_trip_across_both_dst_changes(options: CareLinkOptions) -> None:
    # Morocco leaves summer time for Ramadan: in 2025 its clocks went back on 23 February and
    # forward on 6 April, so seven weeks cross both changes.
    tz = "Africa/Casablanca"
    timeline = _timeline(tz, "pump", dt.date(2025, 2, 20), 48)
    export = write_carelink(timeline, options)
    _, records, ctx = _round_trip(export, tz)
    offsets = {r.utc_offset_min for r in records}
    assert offsets == {0, 60}
    zone = zoneinfo.ZoneInfo(tz)
    back = int(dt.datetime(2025, 2, 23, 2, tzinfo=dt.UTC).timestamp() * 1000)
    forward = int(dt.datetime(2025, 4, 6, 2, tzinfo=dt.UTC).timestamp() * 1000)
    assert min(r.time_ms for r in records) < back < forward < max(r.time_ms for r in records)
    assert dt.datetime.fromtimestamp(back / 1000 - 1, tz=zone).utcoffset() == dt.timedelta(hours=1)
    assert ctx.repeated_hour_records > 0
    assert ctx.skipped_hour_records == 0


@given(
    seed=st.integers(1, 100_000),
    days=st.integers(1, 3),
    start=st.dates(dt.date(2023, 1, 1), dt.date(2026, 12, 31)),
    tz=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Tokyo", "UTC"]),
    therapy=st.sampled_from(["pump", "mdi"]),
    control=st.floats(0.0, 1.0),
    generation=st.sampled_from([47, 49, 54]),
    locale=st.sampled_from(["us", "eu"]),
    units=st.sampled_from(["mg/dL", "mmol/L"]),
    out_of_range=st.sampled_from(["number", "word"]),
    bom=st.booleans(),
    crlf=st.booleans(),
)
def test_round_trip_property(
    *,
    seed: int,
    days: int,
    start: dt.date,
    tz: str,
    therapy: str,
    control: float,
    generation: Any,
    locale: Any,
    units: Any,
    out_of_range: Any,
    bom: bool,
    crlf: bool,
) -> None:
    profile = dataclasses.replace(_profile(tz, therapy, seed=seed), control=control)
    timeline = simulate(profile, start=start, days=days)
    options = CareLinkOptions(
        generation=generation, locale=locale, units=units, out_of_range=out_of_range, bom=bom, crlf=crlf
    )
    export = write_carelink(timeline, options)
    assert export.data.startswith("\ufeff".encode()) == bom
    assert (b"\r\n" in export.data) == crlf
    _round_trip(export, tz)


# -- the real samples --------------------------------------------------------------------------------

needs_samples = pytest.mark.skipif(
    not CARELINK_SAMPLES.is_dir(), reason=f"real CareLink samples not present at {CARELINK_SAMPLES}"
)


def _utc_ms(local: str, tz: str) -> int:
    return int(dt.datetime.fromisoformat(local).replace(tzinfo=zoneinfo.ZoneInfo(tz)).timestamp() * 1000)


@needs_samples
@pytest.mark.slow
def test_paradigm_sample() -> None:
    source = _source(PARADIGM.name, PARADIGM.read_bytes())
    assert CareLinkImporter().detect(source.head())
    result, records, _ = _parse(source, "America/Chicago")
    assert result.rejected == []
    assert collections.Counter(r.type for r in records) == {
        "basal": 373,
        "smbg": 186,
        "wizard": 96,
        "bolus": 93,
        "deviceEvent": 69,
    }
    assert collections.Counter((r.type, r.subtype) for r in records) == {
        ("basal", "scheduled"): 371,
        ("basal", "temp"): 2,
        ("smbg", "calibration"): 109,
        ("smbg", "meter"): 77,
        ("wizard", ""): 96,
        ("bolus", "normal"): 93,
        ("deviceEvent", "suspend"): 25,
        ("deviceEvent", "resume"): 25,
        ("deviceEvent", "prime"): 12,
        ("deviceEvent", "reservoirChange"): 6,
        ("deviceEvent", "timeChange"): 1,
    }
    # Pump and (empty) Sensor sections share the pump's serial: one device.
    assert [(d.manufacturer, d.model, d.serial) for d in result.devices.values()] == [
        ("Medtronic", "Paradigm Revel - 723", "814962")
    ]
    times = [r.time_ms for r in records]
    assert min(times) == _utc_ms("2018-09-05T07:45:28", "America/Chicago")
    assert max(times) == _utc_ms("2018-09-26T14:42:33", "America/Chicago")
    # The file repeats 166 rows identically; they share their natural identity and nothing else does.
    identities = {
        (r.device, r.type, r.time_ms, dedup_key(r.type, r.subtype, r.value, r.identity)) for r in records
    }
    assert len(identities) == len(records) - 166
    primes = collections.Counter(
        (r.payload or {}).get("prime_target") for r in records if r.subtype == "prime"
    )
    assert primes == {"cannula": 6, "tubing": 6}
    temps = sorted((r.payload or {})["percent"] for r in records if r.subtype == "temp")
    assert temps == [80.0, 150.0]
    assert all(r.duration_ms == 4 * 3_600_000 for r in records if r.subtype == "temp")
    meter = [r for r in records if r.subtype == "meter"]
    assert {(r.payload or {}).get("meter_id") for r in meter} == {"C7DE4B"}
    suspends = {(r.payload or {}).get("reason") for r in records if r.subtype == "suspend"}
    assert suspends == {"USER_SUSPEND"}


@needs_samples
@pytest.mark.slow
def test_guardian_sample() -> None:
    data = GUARDIAN.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in data
    source = _source(GUARDIAN.name, data)
    assert CareLinkImporter().detect(source.head())
    result, records, _ = _parse(source, "Asia/Taipei")
    assert result.rejected == []
    assert collections.Counter(r.type for r in records) == {
        "cbg": 1999,
        "food": 23,
        "insulin": 22,
        "deviceEvent": 20,
        "smbg": 1,
    }
    assert {r.subtype for r in records if r.type == "deviceEvent"} == {"alarm"}
    assert {r.value for r in records if r.type == "food"} == {1.0}
    assert {r.value for r in records if r.type == "insulin"} == {8.0, 9.0, 25.0}
    assert not any(r.annotation for r in records)
    assert [(d.manufacturer, d.model, d.serial) for d in result.devices.values()] == [
        ("Medtronic", "Guardian™ 4 system", "GAAAAA-0000-AAAA-AAAA"),
        ("Medtronic", "Guardian™ 4 system", "GBBBBB-0000-BBBB-BBBB"),  # the second, empty app section
    ]
    assert {r.device for r in records} == {"Guardian™ 4 system|GAAAAA-0000-AAAA-AAAA"}
    times = [r.time_ms for r in records]
    assert min(times) == _utc_ms("2024-08-19T08:00:00", "Asia/Taipei")
    assert max(times) == _utc_ms("2024-08-26T14:53:33", "Asia/Taipei")


# -- detection ---------------------------------------------------------------------------------------


def test_detection_tells_carelink_and_clarity_apart() -> None:
    timeline = _timeline("Europe/Berlin", "pump", dt.date(2025, 6, 2), 1)
    carelink = _source("c.csv", write_carelink(timeline, CareLinkOptions(generation=54, locale="eu")).data)
    dexcom = simulate(_profile("Europe/Berlin", "mdi", cgm="dexcom_g6"), start=dt.date(2025, 6, 2), days=1)
    clarity = _source("d.csv", write_clarity(dexcom, ClarityOptions(language="de")).data)
    assert CareLinkImporter().detect(carelink.head())
    assert not DexcomClarityImporter().detect(carelink.head())
    assert DexcomClarityImporter().detect(clarity.head())
    assert not CareLinkImporter().detect(clarity.head())
    assert detect_format(carelink).format == "carelink"
    assert detect_format(clarity).format == "dexcom_clarity"
    # A preamble alone, or sections without the preamble, are not CareLink.
    head = carelink.head()
    assert not CareLinkImporter().detect(head[:3])
    assert not CareLinkImporter().detect([line for line in head if not line.startswith("Last Name")])


@needs_samples
def test_detection_of_the_real_samples() -> None:
    for path in (PARADIGM, GUARDIAN):
        source = _source(path.name, path.read_bytes())
        assert CareLinkImporter().detect(source.head())
        assert not DexcomClarityImporter().detect(source.head())
        assert detect_format(source).format == "carelink"


# -- hand-written files: bad rows, broken structure, mapping details ---------------------------------


def _carelink(sections: list[tuple[str, list[dict[str, str]]]], *, header: list[str] = HEADER_47) -> str:
    """A small US CareLink file; each row gives its cells by column name (Index is numbered)."""
    lines = [
        "Last Name,First Name,Patient ID,Start Date,End Date,Device,Paradigm Revel - 723",
        '"Doe","Jo","","9/1/18 12:00:00 AM","9/2/18 11:59:59 PM","Serial Number",123456',
        "",
        "Device data shown may exceed selected date range.",
        "",
    ]
    index = 0
    for kind, rows in sections:
        lines.append(f"-------,Paradigm Revel - 723,{kind},123456,------- ")
        lines.append(",".join(header))
        for row in rows:
            cells = {"Index": f"{index}.00000", **row}
            lines.append(",".join(cells.get(name, "") for name in header))
            index += 1
        lines.append("")
    return "\r\n".join(lines) + "\r\n"


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.split("\n"), 1) if needle in line)


def test_bad_rows_are_reported_with_their_lines_and_the_rest_imports() -> None:
    text = _carelink(
        [
            (
                "Pump",
                [
                    {"Date": "2018/09/02", "Time": "10:00:00", "BG Reading (mg/dL)": "143.00"},
                    {"Date": "2018/09/02", "Time": "09:30:00", "BG Reading (mg/dL)": "x7y", "Rewind": "r1"},
                    {"Date": "2018/09/02", "Time": "09:00:00", "Basal Rate (U/h)": "0.80"},
                    {"Date": "02.09.2018", "Time": "08:30:00", "Basal Rate (U/h)": "0.70"},
                    {"Date": "2018/09/02", "Time": "25:61:00", "Basal Rate (U/h)": "0.60"},
                    {"Date": "2018/02/30", "Time": "08:15:00", "Basal Rate (U/h)": "0.55"},
                    {"Date": "2018/09/02", "Time": "08:00:00", "Basal Rate (U/h)": "0.50"},
                ],
            ),
            ("Sensor", [{"Date": "2018/09/02", "Time": "09:55:00", "Sensor Glucose (mg/dL)": "1O5"}]),
        ]
    )
    result = CareLinkImporter().parse(SourceText("bad.csv", text, "utf-8"), ParseContext("Europe/Berlin"))
    records = list(each_record(result.records))
    rejected = sorted(result.rejected, key=lambda r: r.line)
    assert [r.line for r in rejected] == [
        _line_of(text, "x7y"),
        _line_of(text, "02.09.2018"),
        _line_of(text, "25:61:00"),
        _line_of(text, "2018/02/30"),
        _line_of(text, "1O5"),
    ]
    assert rejected[0].reason == "BG Reading (mg/dL) is not a number"
    assert rejected[1].reason == "Date is not YYYY/MM/DD"
    assert rejected[2].reason == "Time is not a valid time of day"
    assert rejected[3].reason == "Date is not a valid calendar date"
    assert rejected[4].reason == "Sensor Glucose (mg/dL) is not a number"
    for row in rejected:  # the reason names what is wrong, never the row's content
        assert not any(
            value in row.reason for value in ("x7y", "r1", "02.09", "25:61", "0.70", "0.60", "1O5")
        )
    assert sorted((r.type, r.value, r.line) for r in records) == [
        ("basal", 0.5, _line_of(text, "08:00:00")),
        ("basal", 0.8, _line_of(text, "09:00:00")),
        ("smbg", 143.0, _line_of(text, "10:00:00")),
    ]
    basal = {r.value: r for r in records if r.type == "basal"}
    assert basal[0.5].duration_ms == 3_600_000  # until the 09:00 basal (the bad rows in between are gone)
    assert basal[0.8].duration_ms is None  # the last basal of the section


def test_a_section_without_header_is_a_malformed_file() -> None:
    good = _carelink(
        [("Pump", [{"Date": "2018/09/02", "Time": "10:00:00", "Rewind": "Rewind"}]), ("Sensor", [])]
    )
    lines = good.split("\r\n")
    sensor = next(n for n, line in enumerate(lines) if line.startswith("-------,Paradigm Revel - 723,Sensor"))
    # The Sensor section loses its header: the file ends right after its separator row.
    broken = "\r\n".join(lines[: sensor + 1]) + "\r\n"
    assert CareLinkImporter().detect(SourceText("b.csv", broken, "utf-8").head())
    with pytest.raises(MalformedFileError, match=rf"b\.csv: line {sensor + 1}: the section has no header"):
        CareLinkImporter().parse(SourceText("b.csv", broken, "utf-8"), ParseContext("UTC"))
    # The Pump section's header replaced by a data row.
    pump = next(n for n, line in enumerate(lines) if line.startswith("Index,"))
    broken = "\r\n".join([*lines[:pump], "0.00000,2018/09/02,10:00:00", *lines[pump + 2 :]])
    with pytest.raises(MalformedFileError, match=rf"c\.csv: line {pump + 1}: expected the header row"):
        CareLinkImporter().parse(SourceText("c.csv", broken, "utf-8"), ParseContext("UTC"))
    with pytest.raises(MalformedFileError, match="no CareLink section"):
        CareLinkImporter().parse(SourceText("d.csv", "\r\n".join(lines[:5]), "utf-8"), ParseContext("UTC"))


def test_a_temp_basal_beyond_any_rate_is_a_rejected_row() -> None:
    # Found by the fuzzer (tests/fuzz): a percent temp basal of the scheduled rate overflowed to an
    # infinite rate (2 U/h x 1e308 %), and that was stored.
    day = {"Date": "9/2/18"}
    text = _carelink(
        [
            (
                "Pump",
                [
                    {**day, "Time": "07:00:00", "Temp Basal Amount": "1e308", "Temp Basal Type": "Percent"},
                    {**day, "Time": "06:00:00", "Basal Rate (U/h)": "2"},
                ],
            )
        ]
    )
    result = CareLinkImporter().parse(SourceText("t.csv", text, "utf-8"), ParseContext("UTC"))
    records = list(each_record(result.records))
    assert [(r.type, r.subtype, r.value) for r in records] == [("basal", "scheduled", 2.0)]
    assert [(row.line, row.reason) for row in result.rejected] == [
        (_line_of(text, "07:00:00"), "Temp Basal Amount is out of range")
    ]


def test_a_stray_carriage_return_refuses_the_file_with_its_line() -> None:
    # Found by the fuzzer (tests/fuzz): "\n\r" line ends put a carriage return at the start of every
    # row, which the csv module cannot split; that was an unhandled csv.Error.
    text = _carelink([("Pump", [{"Date": "2018/09/02", "Time": "10:00:00", "Rewind": "Rewind"}])])
    damaged = text.replace("\r\n", "\n\r")
    assert CareLinkImporter().detect(SourceText("e.csv", damaged, "utf-8").head())
    with pytest.raises(MalformedFileError, match=r"e\.csv: line 2: .*stray line break or quote"):
        CareLinkImporter().parse(SourceText("e.csv", damaged, "utf-8"), ParseContext("UTC"))


def _eu_780g(rows: list[tuple[str, dict[str, str]]], *, mmol: bool = False) -> str:
    """A small EU 780G file; ``rows`` are (section label, cells by mg/dL column name), newest first."""
    header = [h.replace("(mg/dL", "(mmol/L") if mmol else h for h in HEADER_54]
    lines = [
        "Last Name;First Name;Patient ID;System ID;Start Date;End Date;Device;MiniMed 780G MMT-1886",
        '"Doe";"Jo";"";"";"04.07.2026 00:00:00";"05.07.2026 00:00:00";"Serial Number";NG0000001X',
        "",
        "",
    ]
    index = 0
    for label, group in itertools.groupby(rows, key=lambda item: item[0]):
        kind = "Sensor" if label == "Sensor" else "Pump"
        tail = "Aggregated Auto Insulin Data " if label == "Aggregated" else "------- "
        lines.append(f"-------;MiniMed 780G MMT-1886;{kind};NG0000001X;{tail}")
        lines.append(";".join(header))
        for _, cells in group:
            full = {"Index": f"{index},00000", **cells}
            lines.append(";".join(full.get(name.replace("(mmol/L", "(mg/dL"), "") for name in header))
            index += 1
        lines.append("")
    return "\r\n".join(lines)


def test_780g_mapping_details() -> None:
    day = {"Date": "2026/07/04"}
    text = _eu_780g(
        [
            (
                "Pump",
                {
                    **day,
                    "Time": "18:00:05",
                    "Bolus Type": "Normal",
                    "Bolus Volume Selected (U)": "1,500",
                    "Bolus Volume Delivered (U)": "1,500",
                    "Bolus Source": "CLOSED_LOOP_MICRO_BOLUS",
                },
            ),
            (
                "Pump",
                {**day, "Time": "17:00:00", "Bolus Type": "Normal", "Bolus Volume Selected (U)": "4,000"},
            ),
            (
                "Pump",
                {
                    **day,
                    "Time": "12:00:00",
                    "Bolus Type": "Dual (square part)",
                    "Bolus Volume Selected (U)": "2,000",
                    "Bolus Volume Delivered (U)": "2,000",
                    "Bolus Duration (h:mm:ss)": "02:00:00",
                    "Bolus Number": "7",
                },
            ),
            (
                "Pump",
                {
                    **day,
                    "Time": "12:00:00",
                    "Bolus Type": "Dual (normal part)",
                    "Bolus Volume Selected (U)": "2,000",
                    "Bolus Volume Delivered (U)": "2,000",
                    "Bolus Number": "7",
                },
            ),
            (
                "Pump",
                {
                    **day,
                    "Time": "09:30:00",
                    "Bolus Type": "Normal",
                    "Bolus Volume Selected (U)": "5,000",
                    "Bolus Volume Delivered (U)": "3,250",
                    "Bolus Cancellation Reason": "USER_CANCELLED",
                },
            ),
            ("Pump", {**day, "Time": "09:00:00", "BG Reading (mg/dL)": "6,1"}),
            ("Pump", {**day, "Time": "09:00:00", "Sensor Calibration BG (mg/dL)": "6,1"}),
            ("Pump", {**day, "Time": "08:00:00", "Basal Rate (U/h)": "0", "Suspend": "NOTSEATED_SUSPEND"}),
            (
                "Pump",
                {
                    **day,
                    "Time": "07:00:00",
                    "Temp Basal Amount": "50",
                    "Temp Basal Type": "Percent",
                    "Temp Basal Duration (h:mm:ss)": "01:30:00",
                },
            ),
            ("Pump", {**day, "Time": "06:00:00", "Basal Rate (U/h)": "0,850"}),
            (
                "Pump",
                {
                    **day,
                    "Time": "05:00:00",
                    "Prime Type": "Cannula Fill",
                    "Prime Volume Delivered (U)": "0,3",
                    "Estimated Reservoir Volume after Fill (U)": "260,35",
                },
            ),
            ("Pump", {**day, "Time": "04:00:00", "Alert": "ALERT BEFORE LOW: siren"}),
            ("Pump", {**day, "Time": "03:00:00", "Network Device Associated Reason": "PAIRED"}),
            (
                "Aggregated",
                {
                    **day,
                    "Time": "00:00:00",
                    "Bolus Type": "Normal",
                    "Bolus Volume Selected (U)": "27,895",
                    "Bolus Volume Delivered (U)": "27,895",
                    "Bolus Source": "CLOSED_LOOP_AUTO_INSULIN",
                },
            ),
            ("Sensor", {**day, "Time": "10:05:00", "Sensor Glucose (mg/dL)": "25,0", "ISIG Value": "80,10"}),
            ("Sensor", {**day, "Time": "10:00:00", "Sensor Glucose (mg/dL)": "2,1", "ISIG Value": "5,12"}),
            ("Sensor", {**day, "Time": "09:55:00", "Sensor Glucose (mg/dL)": "6,5", "ISIG Value": "25,74"}),
            ("Sensor", {**day, "Time": "00:00:00", "Event Marker": "Start of the day"}),
        ],
        mmol=True,
    )
    source = SourceText("780g.csv", text, "utf-8")
    assert CareLinkImporter().detect(source.head())
    result, records, _ = _parse(source, "Europe/Amsterdam")
    assert result.rejected == []
    assert list(result.devices) == ["MiniMed 780G MMT-1886|NG0000001X"]
    by = collections.defaultdict(list)
    for record in records:
        by[record.type, record.subtype].append(record)

    (auto,) = by["bolus", "automated"]
    assert auto.value == 1.5
    (programmed,) = [
        r for r in by["deviceEvent", "other"] if (r.payload or {}).get("event") == "bolusProgrammed"
    ]
    assert programmed.payload is not None
    assert programmed.payload["programmed"] == 4.0
    assert not any(r.value == 4.0 for r in records if r.type == "bolus")  # a programming row is no bolus
    parts = sorted(by["bolus", "dual"], key=lambda r: r.identity)
    assert [(r.identity, r.value, r.duration_ms) for r in parts] == [
        ("normal", 2.0, None),
        ("square", 2.0, 7_200_000),
    ]
    keys = {dedup_key(r.type, r.subtype, r.value, r.identity) for r in parts}
    assert len(keys) == 2  # two parts of the same size at the same second stay two records
    (interrupted,) = by["bolus", "normal"]
    assert interrupted.value == 3.25
    assert interrupted.payload == {
        "bolus_type": "Normal",
        "programmed": 5.0,
        "cancellation_reason": "USER_CANCELLED",
    }

    (meter,) = by["smbg", "meter"]
    (calibration,) = by["smbg", "calibration"]
    assert meter.time_ms == calibration.time_ms
    assert meter.value == calibration.value == pytest.approx(6.1 * 18.01559)
    assert (meter.orig_value, meter.orig_unit) == (6.1, "mmol/L")
    assert dedup_key("smbg", "meter", meter.value, meter.identity) != dedup_key(
        "smbg", "calibration", calibration.value, calibration.identity
    )

    scheduled = sorted(by["basal", "scheduled"], key=lambda r: r.time_ms)
    assert [(r.value, r.duration_ms) for r in scheduled] == [(0.85, 3_600_000), (0.0, None)]
    (temp,) = by["basal", "temp"]
    assert (temp.value, temp.duration_ms) == (0.425, 5_400_000)
    assert temp.payload is not None
    assert temp.payload["percent"] == 50.0
    (suspend,) = by["deviceEvent", "suspend"]
    assert suspend.payload == {"reason": "NOTSEATED_SUSPEND"}
    (prime,) = by["deviceEvent", "prime"]
    assert prime.value == 0.3
    assert prime.payload == {
        "prime_type": "Cannula Fill",
        "prime_target": "cannula",
        "reservoir_after_fill": 260.35,
    }
    (alarm,) = by["deviceEvent", "alarm"]
    assert alarm.identity == "ALERT BEFORE LOW: siren"
    (network,) = [r for r in by["deviceEvent", "other"] if (r.payload or {}).get("event") == "columns"]
    assert network.payload == {"event": "columns", "fields": {"Network Device Associated Reason": "PAIRED"}}
    (aggregated,) = [
        r for r in by["deviceEvent", "other"] if (r.payload or {}).get("event") == "aggregatedAutoInsulin"
    ]
    assert aggregated.value is None
    assert aggregated.payload is not None
    assert aggregated.payload["units"] == 27.895
    assert aggregated.time_ms == _utc_ms("2026-07-04T00:00:00", "Europe/Amsterdam")

    sensor = sorted(by["cbg", "sensor"], key=lambda r: r.time_ms)
    assert [(r.value, r.annotation, r.orig_value) for r in sensor] == [
        (pytest.approx(6.5 * 18.01559), None, 6.5),
        (40.0, "low", 2.1),
        (400.0, "high", 25.0),
    ]
    assert sensor[0].payload == {"isig": 25.74}
    (note,) = by["note", ""]
    assert note.payload == {"text": "Start of the day", "category": "event marker"}


def test_sensor_words_and_excel_resaved_rows() -> None:
    text = _carelink(
        [
            (
                "Sensor",
                [
                    {"Date": "2018/09/02", "Time": "10:10:00", "Sensor Glucose (mg/dL)": "High"},
                    {"Date": "2018/09/02", "Time": "10:05:00", "Sensor Glucose (mg/dL)": "412"},
                    {"Date": "2018/09/02", "Time": "10:00:00", "Sensor Glucose (mg/dL)": "Low"},
                    {"Date": "9/2/2018", "Time": "9:55", "Sensor Glucose (mg/dL)": "40"},
                    {"Date": "9/2/18", "Time": "12:50:00 AM", "Sensor Glucose (mg/dL)": "41"},
                    {"Date": "9/1/2018", "Time": "11:45:00 PM", "Sensor Glucose (mg/dL)": "42"},
                ],
            )
        ]
    ).replace("\r\n", "\n")
    _, records, _ = _parse(SourceText("w.csv", text, "utf-8"), "UTC")
    assert [(r.value, r.annotation, r.orig_value) for r in sorted(records, key=lambda r: r.time_ms)] == [
        (42.0, None, 42.0),
        (41.0, None, 41.0),
        (40.0, None, 40.0),
        (40.0, "low", None),
        (400.0, "high", 412.0),
        (400.0, "high", None),
    ]
    # Records come in the device's order: oldest first, the reverse of the file.
    assert records[0].time_ms == _utc_ms("2018-09-01T23:45:00", "UTC")
    assert records[1].time_ms == _utc_ms("2018-09-02T00:50:00", "UTC")
    assert records[2].time_ms == _utc_ms("2018-09-02T09:55:00", "UTC")
    assert records[0].line == _line_of(text, "11:45:00 PM")
    assert [r.line for r in records] == sorted((r.line for r in records), reverse=True)


# -- through the import service, on SQLite and PostgreSQL --------------------------------------------


def test_import_service_end_to_end(session: Session, settings: Settings) -> None:
    tz = "Europe/Berlin"
    timeline = _timeline(tz, "pump", dt.date(2025, 10, 24), 3)
    export = write_carelink(timeline, CareLinkOptions(generation=54, locale="eu", units="mmol/L"))
    patient = add_patient(
        session, validate_patient(email="lena@example.org", name="Lena Fischer", timezone=tz)
    )
    incoming = IncomingFile(export.file_name, export.data)

    first = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    expected_counts = collections.Counter(e.type for e in export.expected)
    assert first.format == "carelink"
    assert first.counts == dict(sorted(expected_counts.items()))
    assert first.new == len(export.expected)
    assert first.duplicates == 0
    assert first.rejected_count == 0
    assert first.device is not None
    assert (first.device.manufacturer, first.device.model, first.device.serial) == (
        "Medtronic",
        "MiniMed 780G MMT-1886",
        timeline.device_serials["pump"],
    )
    assert any("repeated by a daylight-saving change" in w for w in first.warnings)

    again = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    assert again.new == 0
    assert again.duplicates == len(export.expected)

    other = add_patient(session, validate_patient(email="noah@example.org", name="Noah Okafor", timezone=tz))
    with pytest.raises(DeviceOwnedByAnotherPatientError):
        import_file(session, settings=settings, patient=other, incoming=incoming, timezone=None, actor="test")


@needs_samples
@pytest.mark.slow
def test_import_service_dedupes_the_repeated_rows_of_the_paradigm_sample(
    session: Session, settings: Settings
) -> None:
    patient = add_patient(
        session, validate_patient(email="jo@example.org", name="Jo Doe", timezone="America/Chicago")
    )
    incoming = IncomingFile(PARADIGM.name, PARADIGM.read_bytes())
    upload = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    assert sum(upload.counts.values()) == 817
    assert (upload.new, upload.duplicates, upload.rejected_count) == (651, 166, 0)
    assert upload.first == "2018-09-05T12:45:28Z"
    assert upload.last == "2018-09-26T19:42:33Z"
