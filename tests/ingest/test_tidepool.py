"""Tidepool JSON importer: both shapes in every variant, the type mapping, devices, bad input."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.analytics.settings import parse_pump_settings
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.base import ParseContext, ParsedRecord, ParseResult, SourceText, each_record
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import MalformedFileError, NoRecordsError, UnknownFormatError
from glucoshare.ingest.registry import detect_format, importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.ingest.tidepool import TidepoolImporter, mgdl_from_export, mgdl_from_mmol, stored_mmol
from glucoshare.records.schemas import iso_utc
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.libreview import write_libreview
from glucoshare.simulator.writers.tidepool import TidepoolOptions, write_tidepool
from glucoshare.simulator.writers.xdrip import write_xdrip
from tests.ingest.helpers import committed_upload, expected_keys, parsed_keys, profile, refused_unchanged

IMPORTER = TidepoolImporter()
ZONE = "Europe/Berlin"
T0 = "2025-06-01T10:00:00.000Z"
T0_MS = int(dt.datetime(2025, 6, 1, 10, tzinfo=dt.UTC).timestamp() * 1000)


def _source(export: WrittenExport) -> SourceText:
    decoded = decode_text(export.data, export.file_name)
    return SourceText(export.file_name, decoded.text, decoded.encoding)


def _parse(export: WrittenExport, timezone: str = ZONE) -> tuple[list[ParsedRecord], ParseResult]:
    source = _source(export)
    assert IMPORTER.detect(source.head())
    result = IMPORTER.parse(source, ParseContext(timezone))
    return list(each_record(result.records)), result


def _parse_text(text: str, timezone: str = "UTC") -> tuple[list[ParsedRecord], ParseResult]:
    result = IMPORTER.parse(SourceText("TidepoolExport.json", text, "utf-8"), ParseContext(timezone))
    return list(each_record(result.records)), result


def _datum(kind: str, **fields: Any) -> dict[str, Any]:
    """A platform datum at ``T0`` of the test pump, with ``fields``."""
    return {
        "type": kind,
        "time": T0,
        "timezoneOffset": 120,
        "deviceTime": "2025-06-01T12:00:00",
        "deviceId": "MMT-1884:NG1234567H",
        "uploadId": "u1",
        **fields,
    }


UPLOAD = {
    "type": "upload",
    "time": T0,
    "uploadId": "u1",
    "deviceId": "MMT-1884:NG1234567H",
    "deviceManufacturers": ["Medtronic"],
    "deviceModel": "MiniMed 780G",
    "deviceSerialNumber": "NG1234567H",
}


def _records(*datums: dict[str, Any], indent: int | None = None) -> tuple[list[ParsedRecord], ParseResult]:
    return _parse_text(json.dumps([UPLOAD, *datums], indent=indent))


@functools.cache
def _timeline(therapy: str) -> Timeline:
    return simulate(profile(control=0.1, seed=9, therapy=therapy), start=dt.date(2025, 6, 1), days=3)


# --- round trips ---------------------------------------------------------------------------------------

VARIANTS = {
    "platform": TidepoolOptions(),
    "platform-pretty": TidepoolOptions(pretty=True),
    "platform-decimal": TidepoolOptions(glucose="decimal"),
    "platform-mmol-meter": TidepoolOptions(glucose="mmol", pretty=True),
    "platform-uploads-last": TidepoolOptions(uploads="last", time_precision="ns"),
    "platform-no-uploads": TidepoolOptions(uploads="none", time_precision="s"),
    "platform-one-device": TidepoolOptions(several_devices=False),
    "platform-unknown-types": TidepoolOptions(unknown_types=True),
    "platform-no-oor": TidepoolOptions(out_of_range=False),
    "export": TidepoolOptions(layout="export"),
    "export-mgdl": TidepoolOptions(layout="export", units="mg/dL"),
    "export-mgdl-decimal": TidepoolOptions(layout="export", units="mg/dL", glucose="decimal"),
    "export-mgdl-mmol-meter": TidepoolOptions(layout="export", units="mg/dL", glucose="mmol"),
    "export-pretty": TidepoolOptions(layout="export", pretty=True, uploads="last"),
    "export-unknown-types": TidepoolOptions(layout="export", unknown_types=True, several_devices=False),
}


@pytest.mark.parametrize("therapy", ["mdi", "pump"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_round_trip_every_variant(therapy: str, variant: str) -> None:
    options = VARIANTS[variant]
    export = write_tidepool(_timeline(therapy), options)
    records, result = _parse(export)
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)
    glucose = [r for r in records if r.type in ("cbg", "smbg") and r.annotation is None]
    unit = options.units if options.layout == "export" else "mmol/L"
    assert {r.orig_unit for r in glucose} == {unit}
    if options.glucose == "integer":
        assert all(r.value == round(r.value) for r in glucose), "whole mg/dL values come back whole"
    if options.unknown_types:
        assert result.notes == [
            "4 datums of types Glucoshare has no record type for were not stored: dosingDecision (1), water (3)"
        ]
    else:
        assert result.notes == []
    makers = {d.manufacturer for d in result.devices.values()}
    if options.uploads == "none":
        assert makers == {"Unknown (Tidepool export)"}
    elif options.several_devices:
        assert "Dexcom" in makers
        assert ("Medtronic" in makers) == (therapy == "pump")


def test_pretty_files_come_through_the_registry_and_the_service_detection() -> None:
    for variant in ("platform-pretty", "export-pretty"):
        source = _source(write_tidepool(_timeline("pump"), VARIANTS[variant]))
        assert detect_format(source).format == "tidepool"


def test_glucose_snaps_back_to_the_whole_mg_dl_tidepool_rounded() -> None:
    assert stored_mmol(100) == 5.55075
    assert mgdl_from_mmol(5.55075) == 100.0
    assert mgdl_from_mmol(2.2203) == 40.0
    assert mgdl_from_mmol(5.6) == pytest.approx(5.6 * MGDL_PER_MMOLL)
    assert mgdl_from_mmol(5.6) != round(mgdl_from_mmol(5.6))
    assert mgdl_from_export(5.55075 * MGDL_PER_MMOLL) == 100.0
    assert mgdl_from_export(101.0) == 101.0
    assert mgdl_from_export(100.5) == 100.5
    records, _ = _records(
        _datum("cbg", value=5.55075, units="mmol/L"),
        _datum("smbg", value=5.6, units="mmol/l", time="2025-06-01T10:05:00Z"),
        _datum("smbg", value=101.5, units="mg/dL", time="2025-06-01T10:10:00Z"),
    )
    assert [
        (r.type, r.value, r.orig_value, r.orig_unit) for r in sorted(records, key=lambda r: r.time_ms)
    ] == [
        ("cbg", 100.0, 5.55075, "mmol/L"),
        ("smbg", 5.6 * MGDL_PER_MMOLL, 5.6, "mmol/L"),
        ("smbg", 101.5, 101.5, "mg/dL"),
    ]


@given(mgdl=st.integers(1, 1000))
def test_any_whole_mg_dl_value_survives_tidepool_rounding(mgdl: int) -> None:
    mmol = stored_mmol(mgdl)
    assert mgdl_from_mmol(mmol) == mgdl
    assert mgdl_from_export(mmol * MGDL_PER_MMOLL) == mgdl


@given(tenths=st.integers(1, 550))
def test_a_mmol_meter_value_is_never_mistaken_for_rounded_mg_dl(tenths: int) -> None:
    mmol = tenths / 10
    assert mgdl_from_mmol(mmol) == pytest.approx(mmol * MGDL_PER_MMOLL, abs=0)


def test_out_of_range_readings_keep_the_threshold_and_an_annotation() -> None:
    low = [{"code": "bg/out-of-range", "value": "low", "threshold": 40}]
    high = json.dumps([{"code": "bg/out-of-range", "value": "high", "threshold": 400}])
    records, _ = _records(
        _datum("cbg", value=stored_mmol(40), units="mmol/L", annotations=low),
        _datum("cbg", value=stored_mmol(400), units="mmol/L", annotations=high, time="2025-06-01T10:05:00Z"),
        _datum(
            "cbg",
            value=150,
            units="mg/dL",
            annotations=[{"code": "carelink/basal/fabricated-from-schedule"}],
            time="2025-06-01T10:10:00Z",
        ),
    )
    assert [(r.value, r.annotation) for r in records] == [(40.0, "low"), (400.0, "high"), (150.0, None)]
    timeline = simulate(profile(control=0.05, seed=2), start=dt.date(2025, 6, 1), days=4)
    records, _ = _parse(write_tidepool(timeline))
    assert {r.value for r in records if r.annotation == "low"} == {40.0}
    assert {r.value for r in records if r.annotation == "high"} == {400.0}


# --- the mapping ---------------------------------------------------------------------------------------


def test_every_type_maps_to_the_canonical_model() -> None:
    at = iter(f"2025-06-01T10:{minute:02d}:00Z" for minute in range(60))
    records, result = _records(
        _datum("smbg", value=6.0, units="mmol/L", subType="manual", time=next(at)),
        _datum("smbg", value=stored_mmol(120), units="mmol/L", subType="linked", time=next(at)),
        _datum("deviceEvent", subType="calibration", value=stored_mmol(110), units="mmol/L", time=next(at)),
        _datum("bloodKetone", value=0.6, units="mmol/L", time=next(at)),
        _datum("basal", deliveryType="scheduled", rate=0.85, duration=3_600_000, time=next(at)),
        _datum(
            "basal",
            deliveryType="temp",
            percent=0.5,
            duration=1_800_000,
            suppressed={"type": "basal", "deliveryType": "scheduled", "rate": 0.8},
            time=next(at),
        ),
        _datum("basal", deliveryType="suspend", duration=600_000, time=next(at)),
        _datum("basal", deliveryType="automated", rate=1.1, duration=300_000, time=next(at)),
        _datum("bolus", subType="normal", normal=2.5, expectedNormal=3.0, time=next(at)),
        _datum("bolus", subType="square", extended=1.5, duration=3_600_000, time=next(at)),
        _datum("bolus", subType="dual/square", normal=1.0, extended=2.0, duration=7_200_000, time=next(at)),
        _datum("bolus", subType="automated", normal=0.3, time=next(at)),
        _datum("bolus", subType="normal", normal=0.2, deliveryContext="algorithm", time=next(at)),
        _datum(
            "wizard",
            carbInput=45,
            bgInput=stored_mmol(150),
            insulinCarbRatio=10,
            insulinSensitivity=stored_mmol(50),
            bgTarget={"target": stored_mmol(110), "range": stored_mmol(10)},
            insulinOnBoard=0.5,
            recommended={"carb": 4.5, "correction": 0.8, "net": 4.8},
            units="mmol/L",
            time=next(at),
        ),
        _datum(
            "food", nutrition={"carbohydrate": {"net": 30, "units": "grams"}}, meal="lunch", time=next(at)
        ),
        _datum("food", name="Apple", time=next(at)),
        _datum(
            "insulin",
            dose={"total": 6, "units": "Units"},
            formulation={"simple": {"actingType": "rapid"}},
            time=next(at),
        ),
        _datum("insulin", dose={"total": 18}, formulation={"simple": {"actingType": "long"}}, time=next(at)),
        _datum("insulin", dose={"total": 2}, time=next(at)),
        _datum(
            "physicalActivity",
            duration={"value": 45, "units": "minutes"},
            reportedIntensity="high",
            name="Run",
            time=next(at),
        ),
        _datum("deviceEvent", subType="alarm", alarmType="occlusion", time=next(at)),
        _datum("deviceEvent", subType="prime", primeTarget="cannula", volume=0.3, time=next(at)),
        _datum("deviceEvent", subType="reservoirChange", time=next(at)),
        _datum(
            "deviceEvent",
            subType="status",
            status="suspended",
            reason={"suspended": "manual"},
            duration=60000,
            time=next(at),
        ),
        _datum(
            "deviceEvent", subType="status", status="resumed", reason={"resumed": "manual"}, time=next(at)
        ),
        _datum(
            "deviceEvent",
            subType="timeChange",
            change={"from": "2025-06-01T11:00:00", "to": "2025-06-01T12:00:00", "agent": "manual"},
            time=next(at),
        ),
        _datum(
            "deviceEvent",
            subType="pumpSettingsOverride",
            overrideType="physicalActivity",
            duration=3_600_000,
            time=next(at),
        ),
        _datum(
            "cgmSettings",
            units="mmol/L",
            transmitterId="8ABCDE",
            lowAlerts={"enabled": True, "level": stored_mmol(70)},
            highAlerts={"enabled": False, "level": stored_mmol(250)},
            time=next(at),
        ),
        _datum("smbg", value=stored_mmol(95), units="mmol/L", notes=["before lunch"], time=next(at)),
        _datum("dosingDecision", reason="loop", time=next(at)),
    )
    summary = [
        (r.type, r.subtype, None if r.value is None else round(r.value, 6), r.duration_ms) for r in records
    ]
    assert summary == [
        ("smbg", "manual", round(6.0 * MGDL_PER_MMOLL, 6), None),
        ("smbg", "meter", 120.0, None),
        ("smbg", "calibration", 110.0, None),
        ("bloodKetone", "", 0.6, None),
        ("basal", "scheduled", 0.85, 3_600_000),
        ("basal", "temp", 0.4, 1_800_000),
        ("basal", "suspend", 0.0, 600_000),
        ("basal", "automated", 1.1, 300_000),
        ("bolus", "normal", 2.5, None),
        ("bolus", "extended", 1.5, 3_600_000),
        ("bolus", "dual", 3.0, 7_200_000),
        ("bolus", "automated", 0.3, None),
        ("bolus", "automated", 0.2, None),
        ("wizard", "", 45.0, None),
        ("food", "", 30.0, None),
        ("insulin", "rapid", 6.0, None),
        ("insulin", "long", 18.0, None),
        ("insulin", "unknown", 2.0, None),
        ("physicalActivity", "heavy", None, 2_700_000),
        ("deviceEvent", "alarm", None, None),
        ("deviceEvent", "prime", 0.3, None),
        ("deviceEvent", "reservoirChange", None, None),
        ("deviceEvent", "suspend", None, 60_000),
        ("deviceEvent", "resume", None, None),
        ("deviceEvent", "timeChange", None, None),
        ("deviceEvent", "other", None, 3_600_000),
        ("cgmSettings", "", None, None),
        ("smbg", "meter", 95.0, None),
        ("note", "", None, None),
    ]
    by_kind = {(r.type, r.subtype): r for r in records}
    assert by_kind["basal", "temp"].payload == {"percent": 50.0, "scheduled_rate": 0.8}
    assert by_kind["bolus", "normal"].payload == {"programmed": 3.0, "bolus_type": "normal", "normal": 2.5}
    assert by_kind["wizard", ""].payload == {
        "bg_input": 150.0,
        "carb_ratio": 10.0,
        "insulin_sensitivity": 50.0,
        "target_low": 100.0,
        "target_high": 120.0,
        "active_insulin": 0.5,
        "food_estimate": 4.5,
        "correction_estimate": 0.8,
        "estimate": 4.8,
    }
    assert by_kind["food", ""].payload == {"meal": "lunch"}
    assert by_kind["deviceEvent", "alarm"].payload == {"text": "occlusion"}
    assert by_kind["deviceEvent", "prime"].identity == "cannula"
    assert by_kind["deviceEvent", "timeChange"].payload == {
        "from": "2025-06-01T11:00:00",
        "to": "2025-06-01T12:00:00",
    }
    assert by_kind["deviceEvent", "other"].payload == {
        "event": "pumpSettingsOverride",
        "override_type": "physicalActivity",
    }
    assert by_kind["cgmSettings", ""].payload == {
        "alerts": {
            "low": {"enabled": True, "threshold_mgdl": 70.0},
            "high": {"enabled": False, "threshold_mgdl": 250.0},
        },
        "units": "mg/dL",
        "transmitter_id": "8ABCDE",
    }
    assert by_kind["physicalActivity", "heavy"].payload is None, (
        "the activity's name is free text: not stored"
    )
    assert by_kind["note", ""].payload == {"text": "before lunch"}
    assert all(r.time_ms >= T0_MS and r.utc_offset_min == 120 for r in records)
    assert result.rejected == []
    assert result.notes == [
        "1 datums of types Glucoshare has no record type for were not stored: dosingDecision (1)",
        "1 food entries without a carbohydrate amount were not stored",
    ]


PUMP_SETTINGS = {
    "activeSchedule": "Weekday",
    "basalSchedules": {
        "Weekday": [{"start": 0, "rate": 0.8}, {"start": 25_200_000, "rate": 1.05}],
        "Weekend": [{"start": 0, "rate": 0.7}],
    },
    "carbRatios": {
        "Weekday": [{"start": 0, "amount": 10}, {"start": 39_600_000, "amount": 12}],
        "Weekend": [],
    },
    "insulinSensitivities": {"Weekday": [{"start": 0, "amount": stored_mmol(45)}]},
    "bgTargets": {"Weekday": [{"start": 0, "low": stored_mmol(100), "high": stored_mmol(120)}]},
    "units": {"bg": "mmol/L", "carb": "grams"},
    "bolus": {
        "amountMaximum": {"value": 12, "units": "Units"},
        "calculator": {"insulin": {"duration": 180, "units": "minutes"}},
    },
    "basal": {"rateMaximum": {"value": 3, "units": "Units/hour"}},
}
EXPECTED_SETTINGS = {
    "active_schedule": "Weekday",
    "basal_schedules": {
        "Weekday": [{"start_min": 0, "rate_u_h": 0.8}, {"start_min": 420, "rate_u_h": 1.05}],
        "Weekend": [{"start_min": 0, "rate_u_h": 0.7}],
    },
    "carb_ratios": [{"start_min": 0, "g_per_u": 10.0}, {"start_min": 660, "g_per_u": 12.0}],
    "sensitivities": [{"start_min": 0, "mgdl_per_u": 45.0}],
    "targets": [{"start_min": 0, "low_mgdl": 100.0, "high_mgdl": 120.0}],
    "max_bolus_u": 12.0,
    "max_basal_u_h": 3.0,
    "insulin_duration_h": 3.0,
}


def test_pump_settings_become_the_canonical_payload() -> None:
    records, result = _records(_datum("pumpSettings", **PUMP_SETTINGS))
    (record,) = records
    assert record.type == "pumpSettings"
    assert record.payload == EXPECTED_SETTINGS
    parse_pump_settings(record.payload, record.time_ms)
    single = {
        "activeSchedule": "standard",
        "basalSchedule": [{"start": 0, "rate": 1.0}],
        "carbRatio": [{"start": 0, "amount": 9}],
        "insulinSensitivity": [{"start": 0, "amount": 60}],
        "bgTarget": [{"start": 0, "target": 110}, {"start": 21_600_000, "target": 100, "high": 140}],
        "units": {"bg": "mg/dL", "carb": "grams"},
    }
    records, _ = _records(_datum("pumpSettings", **single))
    assert records[0].payload == {
        "active_schedule": "standard",
        "basal_schedules": {"standard": [{"start_min": 0, "rate_u_h": 1.0}]},
        "carb_ratios": [{"start_min": 0, "g_per_u": 9.0}],
        "sensitivities": [{"start_min": 0, "mgdl_per_u": 60.0}],
        "targets": [
            {"start_min": 0, "low_mgdl": 110.0, "high_mgdl": 110.0},
            {"start_min": 360, "low_mgdl": 100.0, "high_mgdl": 140.0},
        ],
        "max_bolus_u": None,
        "max_basal_u_h": None,
        "insulin_duration_h": None,
    }
    bad = {**PUMP_SETTINGS, "carbRatios": {"Weekday": [{"start": 0, "amount": 400}]}}
    records, result = _records(_datum("pumpSettings", **bad))
    assert records == []
    assert [r.reason for r in result.rejected] == [
        "datum 2: pumpSettings carb_ratios[0].g_per_u: is outside 1 to 150"
    ]


@pytest.mark.parametrize("units", ["mmol/L", "mg/dL"])
def test_split_pump_settings_of_the_web_export_are_gathered_back(units: str) -> None:
    timeline = _timeline("pump")
    export = write_tidepool(timeline, TidepoolOptions(layout="export", units=units))  # type: ignore[arg-type]
    rows = json.loads(export.data)
    assert {row["type"] for row in rows if row["type"].startswith("pumpSettings")} == {
        "pumpSettings.basalSchedules",
        "pumpSettings.bgTargets",
        "pumpSettings.carbRatios",
        "pumpSettings.insulinSensitivities",
    }
    platform, _ = _parse(write_tidepool(timeline))
    exported, _ = _parse(export)
    (expected,) = [r.payload for r in platform if r.type == "pumpSettings"]
    (payload,) = [r.payload for r in exported if r.type == "pumpSettings"]
    assert payload == expected
    assert expected is not None
    assert expected["targets"] == [{"start_min": 0, "low_mgdl": 100.0, "high_mgdl": 120.0}]
    assert set(expected["basal_schedules"]) == {"Standard", "Sick day"}


def test_split_rows_of_single_schedules_are_gathered_with_their_units() -> None:
    common = {
        "time": T0,
        "localTime": "2025-06-01T12:00:00.000Z",
        "timezoneOffset": 120,
        "deviceId": "pump-1",
        "id": "settings-1",
        "activeSchedule": "standard",
    }
    mgdl = {"units.bg": "mg/dL", "units.carb": "grams"}
    rows = [
        {
            **common,
            "type": "pumpSettings.basalSchedules",
            "scheduleName": "standard",
            "basalSchedule.start": 0,
            "basalSchedule.rate": 0.9,
        },
        {**common, **mgdl, "type": "pumpSettings.carbRatio", "carbRatio.start": 0, "carbRatio.amount": 11},
        {
            **common,
            **mgdl,
            "type": "pumpSettings.insulinSensitivity",
            "insulinSensitivity.start": 0,
            "insulinSensitivity.amount": stored_mmol(40) * MGDL_PER_MMOLL,
        },
        {
            **common,
            **mgdl,
            "type": "pumpSettings.bgTarget",
            "bgTarget.start": 0,
            "bgTarget.low": stored_mmol(90) * MGDL_PER_MMOLL,
            "bgTarget.high": stored_mmol(110) * MGDL_PER_MMOLL,
        },
        {
            **common,
            "type": "cbg",
            "units": "mg/dL",
            "value": stored_mmol(120) * MGDL_PER_MMOLL,
            "id": "reading-1",
        },
    ]
    records, result = _parse_text(json.dumps(rows))
    assert result.rejected == []
    assert [r.type for r in records] == ["pumpSettings", "cbg"]
    assert records[0].payload == {
        "active_schedule": "standard",
        "basal_schedules": {"standard": [{"start_min": 0, "rate_u_h": 0.9}]},
        "carb_ratios": [{"start_min": 0, "g_per_u": 11.0}],
        "sensitivities": [{"start_min": 0, "mgdl_per_u": 40.0}],
        "targets": [{"start_min": 0, "low_mgdl": 90.0, "high_mgdl": 110.0}],
        "max_bolus_u": None,
        "max_basal_u_h": None,
        "insulin_duration_h": None,
    }
    assert records[1].value == 120.0


def test_web_export_durations_are_minutes_and_nested_fields_json_text() -> None:
    row = {
        "type": "basal",
        "time": T0,
        "localTime": "2025-06-01T12:00:00.000Z",
        "timezoneOffset": 120,
        "deviceId": "d1",
        "deliveryType": "scheduled",
        "rate": 0.9,
        "duration": 30,
    }
    activity = {
        **row,
        "type": "physicalActivity",
        "duration": json.dumps({"value": 1, "units": "hours"}),
        "reportedIntensity": "low",
    }
    food = {**row, "type": "food", "nutrition": json.dumps({"carbohydrate": {"net": 20, "units": "grams"}})}
    cbg = {
        **row,
        "type": "cbg",
        "units": "mg/dL",
        "value": stored_mmol(39) * MGDL_PER_MMOLL,
        "annotations": json.dumps([{"code": "bg/out-of-range", "value": "low", "threshold": 40}]),
    }
    wizard = {
        **row,
        "type": "wizard",
        "units": "mg/dL",
        "carbInput": 20,
        "bgTarget.low": stored_mmol(90) * MGDL_PER_MMOLL,
        "bgTarget.high": stored_mmol(130) * MGDL_PER_MMOLL,
        "recommended.net": 2,
    }
    records, result = _parse_text(json.dumps([row, activity, food, cbg, wizard]))
    assert result.rejected == []
    assert [(r.type, r.subtype, r.value, r.duration_ms, r.annotation) for r in records] == [
        ("basal", "scheduled", 0.9, 1_800_000, None),
        ("physicalActivity", "light", None, 3_600_000, None),
        ("food", "", 20.0, None, None),
        ("cbg", "sensor", 39.0, None, "low"),
        ("wizard", "", 20.0, None, None),
    ]
    assert records[-1].payload is not None
    assert (records[-1].payload["target_low"], records[-1].payload["target_high"]) == (90.0, 130.0)


# --- devices -------------------------------------------------------------------------------------------


def test_devices_are_named_from_upload_datums_wherever_they_stand() -> None:
    cgm_upload = {
        "type": "upload",
        "time": T0,
        "uploadId": "u2",
        "deviceId": "DexG6MobRec_8ABCDE",
        "deviceManufacturers": json.dumps(["Dexcom"]),
        "deviceModel": "G6 Mobile",
        "deviceSerialNumber": "8ABCDE",
        "client": {"name": "org.tidepool.uploader", "private": {"note": '{"type": "upload"}'}},
    }
    cgm = {**_datum("cbg", value=5.55075, units="mmol/L"), "deviceId": "DexG6MobRec_8ABCDE", "uploadId": "u2"}
    by_upload = {**_datum("cbg", value=5.6, units="mmol/L"), "uploadId": "u2"}
    del by_upload["deviceId"]
    loose = {**_datum("smbg", value=6.1, units="mmol/L"), "deviceId": "OneTouch-123", "uploadId": "u9"}
    account = {"type": "food", "time": T0, "nutrition": {"carbohydrate": {"net": 10}}}
    text = json.dumps(
        [cgm, by_upload, loose, account, _datum("basal", deliveryType="suspend"), cgm_upload, UPLOAD],
        indent=1,
    )
    records, result = _parse_text(text)
    assert result.rejected == []
    names = {key: (d.manufacturer, d.model, d.serial) for key, d in result.devices.items()}
    assert names == {
        "DexG6MobRec_8ABCDE": ("Dexcom", "G6 Mobile", "8ABCDE"),
        "upload:u2": ("Dexcom", "G6 Mobile", "8ABCDE"),
        "OneTouch-123": ("Unknown (Tidepool export)", "OneTouch-123", None),
        "tidepool": ("Tidepool", "Tidepool account", None),
        "MMT-1884:NG1234567H": ("Medtronic", "MiniMed 780G", "NG1234567H"),
    }
    assert [r.device for r in sorted(records, key=lambda r: r.line)] == [
        "DexG6MobRec_8ABCDE",
        "upload:u2",
        "OneTouch-123",
        "tidepool",
        "MMT-1884:NG1234567H",
    ]


def test_time_and_offsets() -> None:
    records, result = _records(
        _datum("cbg", value=5.55075, units="mmol/L", time="2025-06-01T10:00:00Z"),
        _datum("cbg", value=5.55075, units="mmol/L", time="2025-06-01T10:05:00.123456789Z"),
        _datum("cbg", value=5.55075, units="mmol/L", time="2025-06-01T12:10:00+02:00"),
        {**_datum("cbg", value=5.55075, units="mmol/L", time="2025-01-01T10:15:00Z"), "timezoneOffset": None},
    )
    assert result.rejected == []
    assert sorted((r.time_ms - T0_MS, r.utc_offset_min) for r in records if r.time_ms > T0_MS - 10**9) == [
        (0, 120),
        (300_123, 120),
        (600_000, 120),
    ]
    (winter,) = [r for r in records if r.time_ms < T0_MS - 10**9]
    assert winter.utc_offset_min == 0  # the zone given for the import: UTC


# --- bad input -----------------------------------------------------------------------------------------


def test_bad_datums_are_rejected_with_the_line_they_start_on() -> None:
    datums: list[object] = [
        _datum("cbg", value=5.55075, units="mmol/L"),
        "not an object",
        {"time": T0, "deviceId": "x"},
        _datum("cbg", value=5.5, units="mmol/L", time=None),
        _datum("cbg", value=5.5, units="mmol/L", time="01.06.2025 10:00"),
        _datum("cbg", value=5.5, units="mmol/L", time="2025-06-01T10:00:00"),
        _datum("cbg", value="high", units="mmol/L"),
        _datum("cbg", value=-1.0, units="mmol/L"),
        _datum("cbg", value=5.5),
        _datum("bolus", subType="sideways", normal=1),
        _datum("basal", deliveryType="sometimes", rate=1),
        _datum("deviceEvent", subType="status", status="paused"),
        _datum("cbg", value=5.55075, units="mmol/L", timezoneOffset="+02:00"),
        _datum("smbg", value=float("nan"), units="mmol/L"),
        _datum("cbg", value=5.6, units="mmol/L"),
    ]
    text = json.dumps(datums, indent=2)
    records, result = _parse_text(text)
    assert sorted(r.value for r in records if r.value is not None) == [100.0, 5.6 * MGDL_PER_MMOLL]
    starts = [n for n, line in enumerate(text.splitlines(), start=1) if line in ("  {", '  "not an object",')]
    assert [(r.line, r.reason) for r in result.rejected] == [
        (starts[1], "datum 2: the datum is not a JSON object"),
        (starts[2], "datum 3: the datum has no type"),
        (starts[3], "datum 4: time is missing"),
        (starts[4], "datum 5: time is not an ISO 8601 date and time"),
        (starts[5], "datum 6: time has no zone (Tidepool writes UTC with Z)"),
        (starts[6], "datum 7: value is not a number"),
        (starts[7], "datum 8: value is not positive"),
        (starts[8], "datum 9: value has no units"),
        (starts[9], "datum 10: subType is not normal, square, dual/square or automated"),
        (starts[10], "datum 11: deliveryType is not scheduled, temp, suspend or automated"),
        (starts[11], "datum 12: status is not suspended or resumed"),
        (starts[12], "datum 13: timezoneOffset is not a number"),
        (starts[13], "datum 14: value is not a finite number"),
    ]
    assert all("high" not in r.reason for r in result.rejected)
    compact, result = _parse_text(json.dumps(datums))
    assert {r.line for r in result.rejected} == {1}
    assert len(compact) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[{"type": "cbg",\n "time": "2025-06-01T10:00:00Z" "value": 5}]',
            "line 2, column 33: invalid JSON (Expecting ',' delimiter)",
        ),
        (
            '[{"type": "cbg"},\n  {"type": "cbg"}\n  {"type": "smbg"}]',
            "line 3, column 3: invalid JSON (expecting ',' or ']' after a datum)",
        ),
        ('[{"type": "cbg"},]', "line 1, column 18: invalid JSON (a ',' before the closing ']')"),
        ('[{"type": "cbg"}] []', "line 1, column 19: invalid JSON (more text after the array)"),
        ('[{"type": "cbg", "time": "2025-06-01T10:0', "the file ends inside a datum (truncated file?)"),
        ('[{"type": "cbg"},\n', "line 2, column 1: the JSON array is not closed (truncated file?)"),
        ('[{"type": "cbg"}', "line 1, column 17: the JSON array is not closed (truncated file?)"),
        ('{"type": "cbg"}', "line 1, column 1: a Tidepool export is a JSON array"),
        (
            json.dumps([_datum("cbg", value=5.5, units="mmol/mol")]),
            "line 1: unknown glucose unit 'mmol/mol' (Tidepool writes mmol/L or mg/dL)",
        ),
    ],
)
def test_broken_json_refuses_the_file_naming_line_and_column(text: str, message: str) -> None:
    with pytest.raises(MalformedFileError, match=r"^TidepoolExport\.json: ") as info:
        _parse_text(text)
    assert message in info.value.message


def test_an_export_cut_short_by_tidepool_is_noted() -> None:
    text = json.dumps(
        [UPLOAD, _datum("cbg", value=5.55075, units="mmol/L"), {"exportError": "Due to the size..."}]
    )
    records, result = _parse_text(text)
    assert len(records) == 1
    assert result.rejected == []
    incomplete = (
        "Tidepool marked this export as incomplete (the export was cut short); "
        "export a shorter date range to get all the data"
    )
    assert result.notes == [incomplete]
    records, result = _parse_text("[]")
    assert records == []


def test_json_nested_too_deeply_refuses_the_file_or_is_kept_as_text() -> None:
    # Found by the fuzzer (tests/fuzz): the JSON decoder raises RecursionError, not ValueError, on
    # deep nesting; that escaped the importer where a datum, a datum's JSON text or the search for
    # the upload datums met it.
    deep = "[" * 100_000 + "]" * 100_000
    reading = _datum("cbg", value=5.55075, units="mmol/L", annotations=deep)
    records, result = _records(reading)
    assert [(r.type, r.annotation) for r in records] == [("cbg", None)]
    assert result.rejected == []
    text = json.dumps([{**UPLOAD, "extra": "DEEP"}, _datum("cbg", value=5.5, units="mmol/L")])
    with pytest.raises(
        MalformedFileError, match=r"^TidepoolExport\.json: line 1, column 2: .*nested too deeply"
    ):
        _parse_text(text.replace('"DEEP"', deep))


@pytest.mark.parametrize("value", [1e305, 1e308, float("inf")], ids=["large", "huge", "infinite"])
def test_a_reading_beyond_any_glucose_is_a_rejected_row(
    session: Session, settings: Settings, value: float
) -> None:
    # Found by the fuzzer (tests/fuzz): 1e305, 1e308 or Infinity mmol/L overflowed the conversion to
    # mg/dL (OverflowError); the reading is now left to the import's glucose bounds, which reject it.
    good = _datum("cbg", value=5.55075, units="mmol/L")
    bad = _datum("cbg", value=value, units="mmol/L", time="2025-06-01T10:05:00.000Z")
    data = json.dumps([UPLOAD, good, bad], indent=1).encode()
    upload = import_file(
        session,
        settings=settings,
        patient=_patient(session),
        incoming=IncomingFile("TidepoolExport.json", data),
        timezone=None,
        actor="test",
    )
    assert upload.counts == {"cbg": 1}
    assert [row.reason for row in upload.rejected] == ["glucose out of range (0 to 5000 mg/dL)"]


def test_half_a_character_in_a_string_becomes_the_replacement_character() -> None:
    # Found by the fuzzer in Nightscout files (tests/fuzz): JSON may escape half of a UTF-16 pair
    # (\udc80) alone; the decoded text cannot be encoded, so a database driver fails on it.
    note = _datum("food", nutrition={"carbohydrate": {"net": 30, "units": "grams"}}, notes=["NOTE"])
    text = json.dumps([UPLOAD, note]).replace("NOTE", "pasta \\udc80")
    records, result = _parse_text(text)
    assert result.rejected == []
    notes = [r for r in records if r.type == "note"]
    assert [r.payload["text"] for r in notes if r.payload] == ["pasta \ufffd"]


_JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True)
    | st.sampled_from(
        ["cbg", "smbg", "basal", "bolus", "wizard", "pumpSettings", "mmol/L", "mg/dL", T0, "", "upload"]
    ),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "time",
                    "value",
                    "units",
                    "deviceId",
                    "subType",
                    "deliveryType",
                    "rate",
                    "normal",
                    "duration",
                    "basalSchedules",
                    "carbRatios",
                    "bgTarget",
                    "annotations",
                    "nutrition",
                    "dose",
                    "timezoneOffset",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=12,
)


@given(datums=st.lists(_JSONISH, max_size=8), cut=st.integers(0, 400))
@example(datums=[{"type": "pumpSettings", "time": T0, "basalSchedules": {"type": [None]}}], cut=400)
@example(
    datums=[
        {"type": "cbg", "time": T0, "value": 5.5, "units": ["mmol/L"]},
        {"type": "basal", "time": T0, "deliveryType": {"x": 1}},
        {"type": "bloodKetone", "time": T0, "value": 1, "units": {}},
        {"type": "pumpSettings.bgTargets", "time": T0, "bgTarget": {"start": 0}},
        {"type": ["cbg"], "time": T0, "deviceId": "d"},
    ],
    cut=400,
)
def test_mutated_input_raises_only_ingest_errors(datums: list[object], cut: int) -> None:
    text = json.dumps(datums)
    for candidate in (text, text[:cut]):
        try:
            records, result = _parse_text(candidate)
        except MalformedFileError:
            continue
        assert len(result.rejected) <= len(datums)
        assert all(r.line == 1 for r in result.rejected)
        assert all(isinstance(r, ParsedRecord) for r in records)


@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 2),
    therapy=st.sampled_from(["mdi", "pump"]),
    layout=st.sampled_from(["platform", "export"]),
    units=st.sampled_from(["mmol/L", "mg/dL"]),
    glucose=st.sampled_from(["integer", "decimal", "mmol"]),
    pretty=st.booleans(),
    uploads=st.sampled_from(["first", "last", "none"]),
)
def test_round_trip_property(
    seed: int, days: int, therapy: str, layout: str, units: str, glucose: str, pretty: bool, uploads: str
) -> None:
    timeline = simulate(
        profile(seed=seed, therapy=therapy, control=0.3), start=dt.date(2024, 10, 26), days=days
    )
    options = TidepoolOptions(layout=layout, units=units, glucose=glucose, pretty=pretty, uploads=uploads)  # type: ignore[arg-type]
    export = write_tidepool(timeline, options)
    records, result = _parse(export)
    assert result.rejected == []
    assert parsed_keys(records) == expected_keys(export.expected)


# --- detection -----------------------------------------------------------------------------------------


def test_detection_both_ways() -> None:
    timeline = _timeline("pump")
    short = timeline.window(timeline.start_ms, timeline.start_ms + 2 * 3_600_000)
    for variant in ("platform", "export", "platform-pretty", "export-pretty"):
        small = _source(write_tidepool(short, VARIANTS[variant]))
        assert detect_format(small).format == "tidepool", variant
        others = [i.format for i in importers() if i.format != "tidepool" and i.detect(small.head())]
        assert others == [], variant
        whole = _source(write_tidepool(timeline, VARIANTS[variant]))
        assert IMPORTER.detect(whole.head()), variant
    cgm = simulate(profile(seed=2), start=dt.date(2025, 6, 1), days=1)
    pump = simulate(profile(seed=2, therapy="pump", cgm="guardian4"), start=dt.date(2025, 6, 1), days=1)
    libre = simulate(profile(seed=2, cgm="libre2"), start=dt.date(2025, 6, 1), days=1)
    for export in (write_clarity(cgm), write_libreview(libre), write_carelink(pump), write_xdrip(cgm)):
        assert not IMPORTER.detect(_source(export).head()), export.file_name
    nightscout = [{"type": "sgv", "sgv": 120, "date": T0_MS, "dateString": T0, "device": "xDrip-DexcomG5"}]
    assert not IMPORTER.detect([json.dumps(nightscout)])
    assert not IMPORTER.detect(['{"format": "glucoshare-diary", "version": 1}'])
    assert not IMPORTER.detect([json.dumps([{"type": "cbg", "time": T0}])]), "neither uploadId nor deviceId"
    assert not IMPORTER.detect(["[]"])
    assert not IMPORTER.detect([])


def test_a_first_datum_longer_than_the_detected_head_is_recognised_by_its_keys() -> None:
    settings = _datum("pumpSettings", **PUMP_SETTINGS, padding=[{"n": n} for n in range(200)])
    lines = json.dumps([settings], indent=2).splitlines()
    assert len(lines) > 400
    assert IMPORTER.detect(lines[:40])
    assert not IMPORTER.detect(
        json.dumps(
            [{"type": "thing", "time": T0, "deviceId": "x", "padding": list(range(100))}], indent=2
        ).splitlines()[:40]
    )


# --- through the import service, on both databases ------------------------------------------------------


def _patient(session: Session, email: str = "tidepool@example.org") -> Patient:
    return add_patient(session, validate_patient(email=email, name="Tide Pool", timezone=ZONE))


def test_import_service_stores_a_tidepool_export_once(session: Session, settings: Settings) -> None:
    timeline = simulate(profile(seed=14, therapy="pump"), start=dt.date(2025, 6, 1), days=3)
    export = write_tidepool(timeline, TidepoolOptions(pretty=True, unknown_types=True))
    patient = _patient(session)
    incoming = IncomingFile(export.file_name, export.data)
    first = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    expected_counts = collections.Counter(e.type for e in export.expected)
    total = sum(expected_counts.values())
    assert first.format == "tidepool"
    assert first.counts == dict(expected_counts)
    assert (first.new, first.duplicates, first.rejected_count) == (total, 0, 0)
    assert first.first == iso_utc(min(e.utc_ms for e in export.expected))
    assert first.last == iso_utc(max(e.utc_ms for e in export.expected))
    assert first.device is not None
    assert (first.device.manufacturer, first.device.model, first.device.serial) == (
        "Dexcom",
        "G6 Mobile",
        timeline.transmitters[0],
    )
    assert "4 datums of types Glucoshare has no record type for were not stored" in first.warnings[0]
    again = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )
    assert (again.new, again.duplicates) == (0, total)
    compact = write_tidepool(
        timeline.window(timeline.start_ms, timeline.start_ms + 3_600_000),
        TidepoolOptions(layout="export", units="mg/dL"),
    )
    third = import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile("compact.json", compact.data),
        timezone=None,
        actor="test",
    )
    assert third.new == 0, "the web export of the same hour holds the same records"
    assert third.duplicates == len(compact.expected)


@pytest.fixture
def stored(engine: Engine, settings: Settings) -> Patient:
    """A committed patient with one committed Tidepool upload: the state a refused import must not change."""
    timeline = simulate(profile(seed=15), start=dt.date(2025, 6, 1), days=1)
    export = write_tidepool(timeline, TidepoolOptions(pretty=True))
    return committed_upload(
        engine, settings, export, email="tidepool@example.org", name="Tide Pool", timezone=ZONE
    )


def _bad_inputs() -> dict[str, tuple[bytes, type[InputError], str]]:
    timeline = simulate(profile(seed=16), start=dt.date(2025, 6, 3), days=1)
    good = write_tidepool(timeline, TidepoolOptions(pretty=True)).data
    datums = json.loads(good)
    bad_times = [{**d, "time": "yesterday"} if d["type"] != "upload" else d for d in datums]
    bad_units = [{**d, "units": "mg%"} if d["type"] == "cbg" else d for d in datums]
    other_vendor = [{"timestamp": T0, "glucose": 120, "unit": "mg/dL", "source": "some app"}]
    return {
        "truncated": (good[: len(good) // 2], MalformedFileError, "truncated file?"),
        "invalid json": (
            good.replace(b'"type": "cbg",', b'"type": "cbg"', 1),
            MalformedFileError,
            "invalid JSON (Expecting ',' delimiter)",
        ),
        "unknown unit": (
            json.dumps(bad_units, indent=1).encode(),
            MalformedFileError,
            "unknown glucose unit 'mg%'",
        ),
        "bad times": (
            json.dumps(bad_times, indent=1).encode(),
            MalformedFileError,
            "datum 4: time is not an ISO 8601 date and time; no row of the file could be read",
        ),
        "only uploads": (json.dumps(datums[:3], indent=1).encode(), NoRecordsError, "holds no records"),
        "wrong vendor": (json.dumps(other_vendor).encode(), UnknownFormatError, "unrecognised format"),
    }


@pytest.mark.parametrize(
    "case", ["truncated", "invalid json", "unknown unit", "bad times", "only uploads", "wrong vendor"]
)
def test_bad_input_is_refused_and_changes_nothing(
    case: str, engine: Engine, settings: Settings, stored: Patient
) -> None:
    data, error, message = _bad_inputs()[case]
    refused = refused_unchanged(engine, settings, stored.id, IncomingFile("TidepoolExport.json", data), error)
    assert refused.message.startswith("TidepoolExport.json")
    assert message in refused.message
