"""Accu-Chek Smart Pix importer: safe XML, meter and pump reports, round trips, bad input."""

from __future__ import annotations

import collections
import datetime as dt
import functools
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
from glucoshare.analytics.settings import parse_pump_settings
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.accuchek_smartpix import SmartPixImporter
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
from glucoshare.simulator.writers.mysugr import MySugrOptions, write_mysugr
from tests.ingest.helpers import (
    committed_upload,
    expected_keys,
    parse_export,
    parsed_keys,
    profile,
    refused_unchanged,
)

IMPORTER = SmartPixImporter()
PROLOGUE = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<IMPORT>\n<ACSPIX Type="2106" SN="UI000001" Ver="3.01.03"/>\n'
METER = '<DEVICE Name="Performa" SN="50003006" Dt="2024-01-06" Tm="10:12" BGUnit="{unit}" CarbUnit="g"/>\n'
PUMP = '<IP Name="Combo" SN="P123" Dt="2024-01-06" Tm="10:12" ActiveProf="1"></IP>\n'


def _meter(*entries: str, unit: str = "mg/dL", device: str = METER) -> str:
    body = "\n".join(entries)
    return PROLOGUE + device.format(unit=unit) + f"<BGDATA>\n{body}\n</BGDATA>\n</IMPORT>\n"


def _pump(*entries: str, ip: str = PUMP) -> str:
    body = "\n".join(entries)
    return PROLOGUE + ip + f"<IPDATA>\n{body}\n</IPDATA>\n</IMPORT>\n"


def _parse_text(text: str, timezone: str = "UTC") -> tuple[list[ParsedRecord], ParseResult]:
    result = IMPORTER.parse(SourceText("G0003006.XML", text, "utf-8"), ParseContext(timezone))
    return list(each_record(result.records)), result


def _utc(text: str, timezone: str = "UTC") -> int:
    wall = dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return int(wall.timestamp() * 1000)


def _source(name: str, data: bytes) -> SourceText:
    decoded = decode_text(data, name)
    return SourceText(name, decoded.text, decoded.encoding)


@functools.cache
def _timeline(therapy: str = "mdi", days: int = 28) -> Timeline:
    return simulate(
        profile(therapy=therapy, timezone="Europe/Berlin", control=0.0, seed=9),
        start=dt.date(2025, 6, 2),
        days=days,
    )


# --- simulated round trips -------------------------------------------------------------------------

METER_VARIANTS = {
    "default": SmartPixOptions(),
    "mmol": SmartPixOptions(units="mmol/L", meter="Aviva"),
    "bread-units": SmartPixOptions(carb_unit="BE"),
    "no-carb-unit": SmartPixOptions(carb_unit=""),
    "lo-hi": SmartPixOptions(meter_range=(140.0, 270.0)),
    "mmol-lo-hi": SmartPixOptions(units="mmol/L", meter_range=(150.0, 300.0)),
    "control-every-reading": SmartPixOptions(control_every=1),
    "duplicates": SmartPixOptions(duplicate_every=3),
    "oldest-first": SmartPixOptions(newest_first=False),
    "bare": SmartPixOptions(dtd=False, stylesheet=False, encoding="utf-8", crlf=False),
    "one-line": SmartPixOptions(one_line=True),
    "no-insulin-slots": SmartPixOptions(insulin_slots=False, control_every=0),
}
PUMP_VARIANTS = {
    "pump": SmartPixOptions(report="pump"),
    "pump-oldest-first": SmartPixOptions(report="pump", newest_first=False),
    "pump-one-line": SmartPixOptions(report="pump", one_line=True, dtd=False),
    "pump-plain": SmartPixOptions(
        report="pump", extended_every=0, dual_every=0, daily_totals=False, power_entries=False
    ),
}


@pytest.mark.parametrize("variant", list(METER_VARIANTS))
def test_meter_round_trip_every_variant(variant: str) -> None:
    options = METER_VARIANTS[variant]
    timeline = _timeline()
    export = write_smartpix(timeline, options)
    importer, records, result = parse_export(export, "Europe/Berlin")
    assert importer == "accuchek_smartpix"
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    assert [(d.manufacturer, d.model, d.serial) for d in result.devices.values()] == [
        ("Roche", f"Accu-Chek {options.meter}", timeline.device_serials["meter"])
    ]
    kinds = collections.Counter((r.type, r.subtype) for r in records)
    wanted = [("smbg", "meter"), ("food", ""), ("deviceEvent", "other")]
    if options.insulin_slots:
        wanted.append(("insulin", "unknown"))
    for kind in wanted:
        assert kinds[kind] > 0, f"the simulation must produce {kind}"
    glucose = [r for r in records if r.type == "smbg"]
    assert {r.orig_unit for r in glucose} == {options.units}
    plain = [r for r in glucose if r.annotation is None]
    factor = MGDL_PER_MMOLL if options.units == "mmol/L" else 1.0
    assert all(r.value == pytest.approx(r.orig_value * factor) for r in plain)  # type: ignore[operator]
    if options.meter_range != (20.0, 600.0):
        assert {(r.value, r.annotation) for r in glucose if r.annotation} == {(20.0, "low"), (600.0, "high")}
    controls = sum("Ctrl=" in line for line in export.data.decode("latin-1").split("<"))
    if controls:
        assert (
            f"not stored: {controls} control-solution tests (they check the meter, not the patient)"
            in result.notes
        )
    if options.duplicate_every:
        assert len(set(parsed_keys(records))) < len(records), "duplicated entries are read twice"


@pytest.mark.parametrize("variant", list(PUMP_VARIANTS))
def test_pump_round_trip_every_variant(variant: str) -> None:
    options = PUMP_VARIANTS[variant]
    timeline = _timeline("pump")
    export = write_smartpix(timeline, options)
    _, records, result = parse_export(export, "Europe/Berlin")
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    assert [(d.manufacturer, d.model, d.serial) for d in result.devices.values()] == [
        ("Roche", "Accu-Chek Combo", timeline.device_serials["pump"])
    ]
    kinds = collections.Counter((r.type, r.subtype) for r in records)
    wanted = [
        ("pumpSettings", ""),
        ("bolus", "normal"),
        ("basal", "scheduled"),
        ("basal", "temp"),
        ("basal", "suspend"),
        ("deviceEvent", "suspend"),
        ("deviceEvent", "resume"),
        ("deviceEvent", "prime"),
        ("deviceEvent", "reservoirChange"),
        ("deviceEvent", "alarm"),
    ]
    if options.extended_every:
        wanted += [("bolus", "extended"), ("bolus", "dual")]
    for kind in wanted:
        assert kinds[kind] > 0, f"the simulation must produce {kind}"
    totals = [
        note for note in result.notes if re.fullmatch(r"not stored: \d+ daily insulin totals \(.*\)", note)
    ]
    assert bool(totals) == options.daily_totals


def test_pump_settings_temp_basals_and_dual_boluses_in_detail() -> None:
    timeline = _timeline("pump")
    _, records, _ = parse_export(write_smartpix(timeline, SmartPixOptions(report="pump")), "Europe/Berlin")
    settings = next(r for r in records if r.type == "pumpSettings")
    assert settings.payload is not None
    parsed = parse_pump_settings(settings.payload, 0)
    assert parsed.active_schedule == "1"
    assert [(e.start_min, e.value) for e in parsed.basal_schedules["1"]] == [
        (0, 0.8),
        (180, 0.95),
        (420, 1.05),
        (720, 0.85),
        (1200, 0.9),
    ]
    assert [round(e.value, 2) for e in parsed.basal_schedules["2"]][:2] == [0.96, 1.14]
    assert settings.time_ms == timeline.end_ms
    temps = [r for r in records if r.subtype == "temp"]
    assert all(r.payload and r.payload["percent"] in (50, 70, 80, 120, 150) for r in temps)
    assert any(r.duration_ms for r in temps), "temporary basals start with their duration"
    assert any(r.duration_ms is None for r in temps), "a scheduled change during a temporary basal"
    dual = next(r for r in records if r.subtype == "dual")
    assert dual.payload is not None
    assert dual.value == pytest.approx(dual.payload["normal_u"] + dual.payload["extended_u"])
    assert dual.duration_ms == 3_600_000
    extended = next(r for r in records if r.subtype == "extended")
    assert extended.duration_ms == 5_400_000


_DAYS_BEFORE_A_CHANGE = [
    dt.date(2025, 3, 29),
    dt.date(2025, 10, 25),
    dt.date(2025, 11, 1),
    dt.date(2025, 4, 5),
]


@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 4),
    start=st.one_of(
        st.dates(dt.date(2020, 1, 1), dt.date(2026, 6, 30)), st.sampled_from(_DAYS_BEFORE_A_CHANGE)
    ),
    timezone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Tokyo"]),
    report=st.sampled_from(["meter", "pump"]),
    units=st.sampled_from(["mg/dL", "mmol/L"]),
    low=st.floats(20.0, 120.0),
    flags=st.tuples(*[st.booleans()] * 4),
    every=st.integers(0, 4),
)
def test_round_trip_property(
    seed: int,
    days: int,
    start: dt.date,
    timezone: str,
    report: str,
    units: str,
    low: float,
    flags: tuple[bool, bool, bool, bool],
    every: int,
) -> None:
    newest_first, dtd, crlf, one_line = flags
    therapy = "pump" if report == "pump" else "mdi"
    timeline = simulate(profile(seed=seed, therapy=therapy, timezone=timezone), start=start, days=days)
    options = SmartPixOptions(
        report=report,  # type: ignore[arg-type]
        units=units,  # type: ignore[arg-type]
        meter_range=(low, low + 150.0),
        newest_first=newest_first,
        dtd=dtd,
        crlf=crlf,
        one_line=one_line,
        control_every=every,
        duplicate_every=every,
        extended_every=every,
        dual_every=every + 1,
    )
    export = write_smartpix(timeline, options)
    _, records, result = parse_export(export, timezone)
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)


@given(value=st.integers(1, 4999), mmol=st.integers(1, 2770), carbs=st.integers(1, 9999))
def test_any_value_in_range_survives(value: int, mmol: int, carbs: int) -> None:
    entry = f'<BG Val="{value}" Dt="2024-01-05" Tm="08:30" Carb="{carbs}"/>'
    records, _ = _parse_text(_meter(entry))
    assert [(r.type, r.value) for r in records] == [("smbg", float(value)), ("food", float(carbs))]
    written = f"{mmol / 10:.1f}"
    records, _ = _parse_text(_meter(f'<BG Val="{written}" Dt="2024-01-05" Tm="08:30"/>', unit="mmol/L"))
    assert [(r.orig_value, r.orig_unit) for r in records] == [(float(written), "mmol/L")]
    assert records[0].value == pytest.approx(float(written) * MGDL_PER_MMOLL)


@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=80)
@given(data=st.data())
def test_mutated_reports_fail_only_with_input_errors(data: st.DataObject) -> None:
    report = data.draw(st.sampled_from(["meter", "pump"]))
    export = write_smartpix(
        _timeline("pump" if report == "pump" else "mdi", days=2), SmartPixOptions(report=report)
    )  # type: ignore[arg-type]
    raw = bytearray(export.data)
    tokens = [b"<", b">", b'"', b"&", b"---", b"LO", b"<!ENTITY a 'b'>", b"&a;", b"dur 1:", b"%", b"\n"]
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(raw)))
        chunk = data.draw(st.binary(min_size=1, max_size=8) | st.sampled_from(tokens))
        action = data.draw(st.sampled_from(["replace", "delete", "insert", "cut"]))
        if action == "replace":
            raw[at : at + len(chunk)] = chunk
        elif action == "delete":
            del raw[at : at + len(chunk)]
        elif action == "insert":
            raw[at:at] = chunk
        else:
            del raw[at:]
    try:
        source = _source("G.XML", bytes(raw))
        if not IMPORTER.detect(source.head()):
            return
        result = IMPORTER.parse(source, ParseContext("Europe/Berlin"))
        for record in each_record(result.records):
            assert record.type
    except InputError:
        pass


# --- safe XML --------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE IMPORT [\n<!ENTITY lol "lol">\n'
    + "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">\n' for n in range(1, 10))
    + ']>\n<IMPORT>\n<ACSPIX Type="2106" SN="UI1" Ver="3.01"/>\n'
    + '<DEVICE Name="Performa" SN="1" Dt="2024-01-06" Tm="10:12" BGUnit="mg/dL"/>\n'
    + '<BGDATA>\n<BG Val="100" Dt="2024-01-05" Tm="08:30" Flg="&lol9;"/>\n</BGDATA>\n</IMPORT>\n'
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE IMPORT [\n<!ENTITY secret SYSTEM "file:///etc/passwd">\n]>\n'
    '<IMPORT>\n<ACSPIX Type="2106" SN="UI1" Ver="3.01"/>\n'
    '<DEVICE Name="&secret;" SN="1" Dt="2024-01-06" Tm="10:12" BGUnit="mg/dL"/>\n</IMPORT>\n'
)
EXTERNAL_DTD = (
    '<?xml version="1.0"?>\n<!DOCTYPE IMPORT SYSTEM "http://example.org/acspix.dtd">\n'
    '<IMPORT>\n<ACSPIX Type="2106" SN="UI1" Ver="3.01"/>\n'
    '<DEVICE Name="P" SN="1" Dt="2024-01-06" Tm="10:12" BGUnit="mg/dL"/>\n</IMPORT>\n'
)
PARAMETER_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE IMPORT [\n<!ENTITY % remote SYSTEM "http://example.org/x.dtd">\n%remote;\n]>\n'
    '<IMPORT>\n<ACSPIX Type="2106" SN="UI1" Ver="3.01"/>\n</IMPORT>\n'
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BILLION_LAUGHS, "line 3: the XML declares XML entities"),
        (EXTERNAL_ENTITY, "line 3: the XML declares XML entities"),
        (EXTERNAL_DTD, "line 2: the XML refers to an external DTD"),
        (PARAMETER_ENTITY, "line 3: the XML declares XML entities"),
    ],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity"],
)
def test_unsafe_xml_is_refused(text: str, message: str) -> None:
    source = SourceText("evil.XML", text, "utf-8")
    assert IMPORTER.detect(source.head())
    with pytest.raises(MalformedFileError, match="^" + re.escape(f"evil.XML: {message}")):
        IMPORTER.parse(source, ParseContext("UTC"))


def test_an_internal_dtd_of_declarations_is_allowed() -> None:
    export = write_smartpix(_timeline(days=3), SmartPixOptions(dtd=True))
    assert b"<!DOCTYPE IMPORT [" in export.data
    assert b"<!ENTITY" not in export.data
    _, records, _ = parse_export(export, "Europe/Berlin")
    assert records


# --- the meter report in detail --------------------------------------------------------------------


def test_meter_entries_map_to_the_canonical_model() -> None:
    text = _meter(
        '<BG Val="123" Dt="2024-01-05" Tm="07:00" Flg="M1" D="1"/>',
        '<BG Val="LO" Dt="2024-01-05" Tm="07:10"/>',
        '<BG Val="HI" Dt="2024-01-05" Tm="07:20" Evt="3"/>',
        '<BG Val="98" Dt="2024-01-05" Tm="07:30" Ctrl="1"/>',
        '<BG Val="99" Dt="2024-01-05" Tm="07:31" Ctrl="?"/>',
        '<BG Val="101" Dt="2024-01-05" Tm="07:32" Ctrl="0"/>',
        '<BG Val="---" Dt="2024-01-05" Tm="12:00" Carb="60" Ins1="6.5"/>',
        '<BG Val="---" Dt="2024-01-05" Tm="18:00" Evt="2"/>',
        '<BG Val="---" Dt="2024-01-05" Tm="19:00"/>',
        '<BG Val="" Dt="2024-01-05" Tm="22:00" Ins3="18"/>',
    )
    records, result = _parse_text(text)
    assert result.rejected == []
    got = [
        (r.line, r.type, r.subtype, r.value, r.orig_value, r.annotation, r.payload, r.identity)
        for r in records
    ]
    assert got == [
        (6, "smbg", "meter", 123.0, 123.0, None, {"flags": "M1"}, ""),
        (7, "smbg", "meter", 20.0, 20.0, "low", None, ""),
        (8, "smbg", "meter", 600.0, 600.0, "high", {"event": "3"}, ""),
        (11, "smbg", "meter", 101.0, 101.0, None, None, ""),
        (12, "food", "", 60.0, 60.0, None, None, ""),
        (12, "insulin", "unknown", 6.5, None, None, None, "Ins1"),
        (13, "deviceEvent", "other", None, None, None, {"smartpix_event": "2"}, "2"),
        (15, "insulin", "unknown", 18.0, None, None, None, "Ins3"),
    ]
    assert records[0].time_ms == _utc("2024-01-05T07:00")
    assert result.notes == ["not stored: 2 control-solution tests (they check the meter, not the patient)"]


def test_mmol_meter_lo_and_hi_keep_the_written_limits() -> None:
    text = _meter(
        '<BG Val="LO" Dt="2024-01-05" Tm="07:10"/>',
        '<BG Val="5.5" Dt="2024-01-05" Tm="07:20"/>',
        unit="mmol/L",
    )
    records, _ = _parse_text(text)
    assert [(r.value, r.orig_value, r.orig_unit, r.annotation) for r in records] == [
        (20.0, 1.1, "mmol/L", "low"),
        (pytest.approx(5.5 * MGDL_PER_MMOLL), 5.5, "mmol/L", None),
    ]


@pytest.mark.parametrize("newest_first", [True, False])
def test_the_repeated_hour_is_read_oldest_first_whatever_the_order(newest_first: bool) -> None:
    """Berlin falls back at 03:00 CEST on 26 October 2025: 02:00-03:00 happens twice."""
    walls = ["01:50", "02:10", "02:40", "02:05", "02:30", "03:10"]
    entries = [f'<BG Val="{100 + n}" Dt="2025-10-26" Tm="{wall}"/>' for n, wall in enumerate(walls)]
    if newest_first:
        entries.reverse()
    records, _ = _parse_text(_meter(*entries), "Europe/Berlin")
    by_value = sorted((r.value, r.time_ms, r.utc_offset_min) for r in records)
    first = _utc("2025-10-26T00:00")
    assert [(t - first) // 60_000 for _, t, _ in by_value] == [-10, 10, 40, 65, 90, 130]
    assert [offset for _, _, offset in by_value] == [120, 120, 120, 60, 60, 60]


def test_bad_meter_entries_are_reported_and_the_rest_imports() -> None:
    text = _meter(
        '<BG Val="120" Dt="2024-01-05" Tm="08:00"/>',
        '<BG Val="1x9" Dt="2024-01-05" Tm="08:15"/>',
        '<BG Val="131" Dt="2024-01-41" Tm="08:30"/>',
        '<BG Val="131" Dt="2024-01-05" Tm="25:30"/>',
        '<BG Val="131"/>',
        '<BG Val="-5" Dt="2024-01-05" Tm="09:00"/>',
        '<BG Val="0" Dt="2024-01-05" Tm="09:10"/>',
        '<BG Val="---" Dt="2024-01-05" Tm="09:20" Carb="lots"/>',
        '<BG Val="99999" Dt="2024-01-05" Tm="09:30"/>',
        '<BG Val="140" Dt="2024-01-05" Tm="09:40"/>',
    )
    records, result = _parse_text(text)
    assert [(r.line, r.value) for r in records] == [(6, 120.0), (15, 140.0)]
    assert sorted((r.line, r.reason) for r in result.rejected) == [
        (7, "glucose value is not a number"),
        (8, "unreadable date or time"),
        (9, "unreadable date or time"),
        (10, "no date or time"),
        (11, "glucose value is negative"),
        (12, "glucose value is not positive"),
        (13, "carbohydrates is not a number"),
        (14, "glucose value is out of range"),
    ]
    for rejected in result.rejected:
        assert not any(secret in rejected.reason for secret in ("1x9", "41", "25:30", "-5", "lots", "99999"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _meter('<BG Val="5" Dt="2024-01-05" Tm="08:00"/>', unit="mg/100ml"),
            "line 4: unknown blood glucose unit in BGUnit",
        ),
        (
            _meter(
                '<BG Val="---" Dt="2024-01-05" Tm="08:00" Carb="3"/>', device=METER.replace('"g"', '"oz"')
            ),
            "line 4: unknown carbohydrate unit in CarbUnit",
        ),
        (PROLOGUE + "<BGDATA/>\n</IMPORT>\n", "line 2: neither a meter (DEVICE) nor a pump (IP) report"),
        (
            PROLOGUE
            + METER.format(unit="mg/dL")
            + '<IPDATA><BOLUS Dt="2024-01-05" Tm="08:00" type="Std" amount="1"/></IPDATA></IMPORT>',
            "line 5: pump entries without the pump's IP element",
        ),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE IMPORT [\n<!ELEMENT IMPORT ANY>\n]>\n<EXPORT><ACSPIX/></EXPORT>\n',
            "line 5: the root element is 'EXPORT', not a Smart Pix IMPORT",
        ),
    ],
    ids=["glucose-unit", "carb-unit", "no-device", "log-without-pump", "wrong-root"],
)
def test_wrong_layouts_refuse_the_file(text: str, message: str) -> None:
    with pytest.raises(MalformedFileError, match="^" + re.escape(f"G0003006.XML: {message}")):
        _parse_text(text)


# --- the pump report in detail ---------------------------------------------------------------------


def test_a_slot_number_that_is_not_an_ascii_number_is_an_unreadable_profile() -> None:
    # Found by the fuzzer (tests/fuzz): "\u00b21" passes str.isdigit() but not int(); the ValueError
    # escaped the importer.
    ip = (
        '<IP Name="Combo" SN="P123" Dt="2024-01-06" Tm="10:12" ActiveProf="2">\n'
        '<IPPROFILE Name="1" Active="0" IUday="24"><IPTIMESLOT Number="\u00b21" IU="1.00"/></IPPROFILE>\n'
        '<IPPROFILE Name="2" Active="1" IUday="12"><IPTIMESLOT Number="1" IU="0.50"/></IPPROFILE>\n'
        "</IP>\n"
    )
    records, result = _parse_text(_pump('<BASAL Dt="2024-01-05" Tm="07:00" cbrf="0.50" profile="2"/>', ip=ip))
    assert [(row.line, row.reason) for row in result.rejected] == [(5, "unreadable basal profile")]
    assert [(r.type, r.value) for r in records] == [("basal", 0.5)]


def test_pump_entries_map_to_the_canonical_model() -> None:
    ip = (
        '<IP Name="Combo" SN="P123" Dt="2024-01-06" Tm="10:12" ActiveProf="2">\n'
        '<IPPROFILE Name="1" Active="0" IUday="24"><IPTIMESLOT Number="2" IU="1.00"/><IPTIMESLOT Number="1" IU="1.00"/></IPPROFILE>\n'
        '<IPPROFILE Name="2" Active="1" IUday="19"><IPTIMESLOT Number="1" IU="0.50"/><IPTIMESLOT Number="7" IU="1.20"/></IPPROFILE>\n'
        "</IP>\n"
    )
    text = _pump(
        '<BOLUS Dt="2024-01-05" Tm="" type="" amount="30.10" remark="Bolus+Basal Total"/>',
        '<EVENT Dt="2024-01-05" Tm="21:00" shortinfo="W1" description="cartridge low"/>',
        '<EVENT Dt="2024-01-05" Tm="20:00" shortinfo="7.3 IU" description="prime infusion set"/>',
        '<EVENT Dt="2024-01-05" Tm="19:58" shortinfo="" description="cartridge changed"/>',
        '<BASAL Dt="2024-01-05" Tm="19:57" cbrf="0.00" remark="power up"/>',
        '<BASAL Dt="2024-01-05" Tm="19:00" cbrf="0.90" profile="2" remark="Run"/>',
        '<BASAL Dt="2024-01-05" Tm="18:30" cbrf="0.00" remark="Stop"/>',
        '<BASAL Dt="2024-01-05" Tm="14:00" cbrf="0.90" profile="2" remark="TBR End"/>',
        '<BASAL Dt="2024-01-05" Tm="13:00" cbrf="0.63" TBRdec="70%"/>',
        '<BASAL Dt="2024-01-05" Tm="12:00" cbrf="0.56" TBRdec="70%" remark="dur 2:00 h"/>',
        '<BASAL Dt="2024-01-05" Tm="07:00" cbrf="0.80" profile="2"/>',
        '<BOLUS Dt="2024-01-05" Tm="06:50" type="Mul" amount="5.00" remark="3.00 / 2.00  1:30 h"/>',
        '<BOLUS Dt="2024-01-05" Tm="06:40" type="Ext" amount="2.00" remark=" 0:45 h"/>',
        '<BOLUS Dt="2024-01-05" Tm="06:30" type="Scr" amount="1.50"/>',
        '<BOLUS Dt="2024-01-05" Tm="06:20" type="Std" amount="0.00"/>',
        '<EVENT Dt="2024-01-05" Tm="06:10" shortinfo="R1" description="own reminder"/>',
        ip=ip,
    )
    records, result = _parse_text(text)
    assert result.rejected == []
    got = [(r.line, r.type, r.subtype, r.value, r.duration_ms, r.payload) for r in records]
    settings_payload = records[0].payload
    assert records[0].type == "pumpSettings"
    assert settings_payload is not None
    assert settings_payload["active_schedule"] == "2"
    assert settings_payload["basal_schedules"] == {
        "1": [{"start_min": 0, "rate_u_h": 1.0}],
        "2": [{"start_min": 0, "rate_u_h": 0.5}, {"start_min": 360, "rate_u_h": 1.2}],
    }
    assert records[0].time_ms == _utc("2024-01-06T10:12")
    assert got[1:] == [
        (24, "deviceEvent", "other", None, None, {"code": "R1", "text": "own reminder"}),
        (22, "bolus", "normal", 1.5, None, {"bolus_type": "Scr"}),
        (21, "bolus", "extended", 2.0, 2_700_000, {"bolus_type": "Ext"}),
        (20, "bolus", "dual", 5.0, 5_400_000, {"bolus_type": "Mul", "normal_u": 3.0, "extended_u": 2.0}),
        (19, "basal", "scheduled", 0.8, None, {"schedule": "2"}),
        (18, "basal", "temp", 0.56, 7_200_000, {"percent": 70.0, "change": "decrease"}),
        (17, "basal", "temp", 0.63, None, {"percent": 70.0, "change": "decrease"}),
        (16, "basal", "scheduled", 0.9, None, {"remark": "TBR End", "schedule": "2"}),
        (15, "deviceEvent", "suspend", None, None, None),
        (15, "basal", "suspend", 0.0, None, None),
        (14, "deviceEvent", "resume", None, None, None),
        (14, "basal", "scheduled", 0.9, None, {"schedule": "2"}),
        (12, "deviceEvent", "reservoirChange", None, None, None),
        (11, "deviceEvent", "prime", 7.3, None, {"target": "tubing"}),
        (
            10,
            "deviceEvent",
            "alarm",
            None,
            None,
            {"code": "W1", "alarm": "low cartridge", "text": "cartridge low"},
        ),
    ]
    assert result.notes == [
        "not stored: 1 daily insulin totals (sums of the doses stored)",
        "not stored: 1 boluses of 0 U",
        "not stored: 1 pump power-on and power-off entries",
    ]


def test_bad_pump_entries_are_reported() -> None:
    text = _pump(
        '<BOLUS Dt="2024-01-05" Tm="06:00" type="Std" amount="1.00"/>',
        '<BOLUS Dt="2024-01-05" Tm="06:10" type="Odd" amount="1.00"/>',
        '<BOLUS Dt="2024-01-05" Tm="06:20" type="Ext" amount="1.00" remark="soon"/>',
        '<BOLUS Dt="2024-01-05" Tm="06:30" type="Mul" amount="1.00" remark="1.00"/>',
        '<BASAL Dt="2024-01-05" Tm="06:40" cbrf="0.80" TBRinc="lots"/>',
        '<BASAL Dt="2024-01-05" Tm="06:50" cbrf="0.80" remark="mystery"/>',
        '<BASAL Dt="2024-01-05" Tm="07:00" profile="1"/>',
        '<BASAL Dt="2024-01-05" Tm="07:10" cbrf="99" profile="1"/>',
        '<BOLUS Dt="2024-01-05" Tm="07:20" type="Std"/>',
        '<SOMETHING Dt="2024-01-05" Tm="07:30"/>',
        '<BOLUS Dt="2024-01-05" Tm="07:40" type="Std" amount="2.00"/>',
    )
    records, result = _parse_text(text)
    assert [(r.line, r.value) for r in records] == [(6, 1.0), (16, 2.0)]
    assert sorted((r.line, r.reason) for r in result.rejected) == [
        (7, "unknown bolus type"),
        (8, "extended bolus without a duration"),
        (9, "dual bolus without its parts and duration"),
        (10, "temporary basal without a percentage"),
        (11, "unknown basal remark"),
        (12, "basal entry without a rate"),
        (13, "basal rate is out of range"),
        (14, "bolus without an amount"),
    ]
    assert result.notes == ["not stored: 1 pump log entries of a kind Glucoshare does not know"]


# --- detection -------------------------------------------------------------------------------------


def test_detection_both_ways() -> None:
    ours = [write_smartpix(_timeline(days=2), options) for options in METER_VARIANTS.values()]
    ours += [write_smartpix(_timeline("pump", days=2), options) for options in PUMP_VARIANTS.values()]
    others = [
        write_mysugr(_timeline(days=2), MySugrOptions()),
        write_mysugr(_timeline(days=2), MySugrOptions(language="de")),
        write_clarity(simulate(profile(seed=2), start=dt.date(2025, 6, 1), days=1)),
        write_libreview(simulate(profile(cgm="libre2", seed=2), start=dt.date(2025, 6, 1), days=1)),
        write_carelink(
            simulate(profile(cgm="guardian4", therapy="pump", seed=2), start=dt.date(2025, 6, 1), days=1),
            CareLinkOptions(),
        ),
    ]
    for export in ours:
        source = _source("report.txt", export.data)
        assert [i.format for i in importers() if i.detect(source.head())] == ["accuchek_smartpix"]
        assert detect_format(source).format == "accuchek_smartpix"
    for export in others:
        source = _source(export.file_name, export.data)
        assert not IMPORTER.detect(source.head())
        assert detect_format(source).format != "accuchek_smartpix"


@pytest.mark.parametrize(
    "head",
    [
        [],
        ['<?xml version="1.0"?>', "<HealthData>", '<Record type="HKQuantityTypeIdentifierBloodGlucose"/>'],
        ['<?xml version="1.0"?>', "<IMPORT>", "<ROWS/>"],
        ["IMPORT,ACSPIX,DEVICE"],
        ['[{"type": "smbg", "time": "2024-01-01T00:00:00Z", "uploadId": "x"}]'],
    ],
    ids=["empty", "apple-health", "import-without-smart-pix", "csv", "json"],
)
def test_does_not_detect_other_files(head: list[str]) -> None:
    assert not IMPORTER.detect(head)


# --- through the import service, on both databases -------------------------------------------------


def test_import_service_end_to_end(session: Session, settings: Settings) -> None:
    tz = "Europe/Berlin"
    patient = add_patient(session, validate_patient(email="pix@example.org", name="Pia Pix", timezone=tz))
    for timeline, options, model, serial in (
        (_timeline(days=10), SmartPixOptions(duplicate_every=4), "Accu-Chek Performa", "meter"),
        (_timeline("pump", days=10), SmartPixOptions(report="pump"), "Accu-Chek Combo", "pump"),
    ):
        export = write_smartpix(timeline, options)
        incoming = IncomingFile(export.file_name, export.data)
        first = import_file(
            session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
        )
        distinct = len(set(expected_keys(export.expected)))
        assert first.format == "accuchek_smartpix"
        assert first.counts == dict(sorted(collections.Counter(e.type for e in export.expected).items()))
        assert (first.new, first.duplicates, first.rejected_count) == (
            distinct,
            len(export.expected) - distinct,
            0,
        )
        assert first.device is not None
        assert (first.device.manufacturer, first.device.model, first.device.serial) == (
            "Roche",
            model,
            timeline.device_serials[serial],
        )
        again = import_file(
            session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
        )
        assert (again.new, again.duplicates) == (0, len(export.expected))
    assert re.fullmatch(
        r"not stored: \d+ daily insulin totals \(sums of the doses stored\)", first.warnings[0]
    )
    assert re.fullmatch(r"not stored: \d+ pump power-on and power-off entries", first.warnings[1])


def _bad_inputs() -> dict[str, tuple[bytes, type[InputError], str]]:
    good = write_smartpix(_timeline(days=3), SmartPixOptions()).data
    return {
        "billion laughs": (BILLION_LAUGHS.encode(), MalformedFileError, "declares XML entities"),
        "external entity": (EXTERNAL_ENTITY.encode(), MalformedFileError, "declares XML entities"),
        "external dtd": (EXTERNAL_DTD.encode(), MalformedFileError, "refers to an external DTD"),
        "truncated": (good[: len(good) * 2 // 3], MalformedFileError, "the XML is broken"),
        "unknown unit": (
            good.replace(b'BGUnit="mg/dL"', b'BGUnit="mg/100ml"'),
            MalformedFileError,
            "unknown blood glucose unit",
        ),
        "bad dates": (
            re.sub(rb'Dt="2025-', b'Dt="20x5-', good),
            MalformedFileError,
            "unreadable date or time; no row",
        ),
        "only controls": (
            re.sub(rb"<BG [^>]*/>", b"", good).replace(
                b"<BGDATA>", b'<BGDATA><BG Val="99" Dt="2025-06-02" Tm="08:00" Ctrl="1"/>'
            ),
            NoRecordsError,
            "holds no records",
        ),
        "wrong vendor": (
            good.replace(b"IMPORT", b"EXPORT").replace(b"ACSPIX", b"READER"),
            UnknownFormatError,
            "unrecognised",
        ),
    }


@pytest.fixture
def stored(engine: Engine, settings: Settings) -> Patient:
    """A committed patient with a committed Smart Pix upload: what a refused import must not change."""
    return committed_upload(engine, settings, write_smartpix(_timeline(days=2)))


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_input_is_refused_and_changes_nothing(
    case: str, engine: Engine, settings: Settings, stored: Patient
) -> None:
    data, error, message = _bad_inputs()[case]
    refused = refused_unchanged(engine, settings, stored.id, IncomingFile("bad.XML", data), error)
    assert refused.message.startswith("bad.XML")
    assert message in refused.message


def test_rejected_row_reasons_never_hold_the_value() -> None:
    records, result = _parse_text(_meter('<BG Val="secret-77" Dt="2024-01-05" Tm="08:00"/>'))
    assert records == []
    assert result.rejected == [RejectedRow(6, "glucose value is not a number")]


def test_latin1_reports_and_a_meter_and_a_pump_in_one_report() -> None:
    text = (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<IMPORT>\n<ACSPIX Type="2106" SN="UI1" Ver="3.01"/>\n'
        '<DEVICE Name="Aviva Combo" SN="M1" Dt="2024-01-06" Tm="10:12" BGUnit="mmol/L"/>\n'
        '<IP Name="Spirit Combo" SN="P1" Dt="2024-01-06" Tm="10:12" ActiveProf="1"></IP>\n'
        '<BGDATA><BG Val="6.1" Dt="2024-01-05" Tm="08:00"/></BGDATA>\n'
        '<IPDATA><EVENT Dt="2024-01-05" Tm="09:00" shortinfo="R1" description="Erinnerung für später"/></IPDATA>\n'
        "</IMPORT>\n"
    )
    source = _source("both.XML", text.encode("latin-1"))
    assert source.encoding == "cp1252"
    result = IMPORTER.parse(source, ParseContext("Europe/Berlin"))
    records = list(each_record(result.records))
    assert [(d.model, d.serial) for d in result.devices.values()] == [
        ("Accu-Chek Aviva Combo", "M1"),
        ("Accu-Chek Spirit Combo", "P1"),
    ]
    assert [(r.device, r.type) for r in records] == [("meter", "smbg"), ("pump", "deviceEvent")]
    assert records[1].payload == {"code": "R1", "text": "Erinnerung für später"}
