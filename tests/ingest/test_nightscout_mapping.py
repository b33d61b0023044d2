"""Nightscout documents ↔ canonical records: the shapes of real clients, errors, and round trips."""

from __future__ import annotations

import json
import zoneinfo
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.analytics.settings import parse_pump_settings
from glucoshare.ingest.nightscout_mapping import (
    MappedDocument,
    MappedRecord,
    NightscoutDocumentError,
    describe_ignored,
    device_info,
    document_collection,
    entry_document,
    entry_records,
    iso_utc,
    map_document,
    nightscout_document,
    parse_instant,
    profile_document,
    profile_records,
    treatment_document,
    treatment_records,
    zone_offset_min,
)
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
UTC = zoneinfo.ZoneInfo("UTC")
T0 = 1705593600000  # 2024-01-18T16:00:00Z, 17:00 in Berlin
ISO0 = "2024-01-18T16:00:00.000Z"


def _one(mapped: MappedDocument) -> MappedRecord:
    assert mapped.ignored == ()
    assert len(mapped.records) == 1, mapped
    return mapped.records[0]


def _kinds(mapped: MappedDocument) -> list[tuple[str, str, float | None]]:
    return [(r.type, r.subtype, r.value) for r in mapped.records]


# --- times and offsets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (T0, (T0, None)),
        (float(T0) + 0.4, (T0, None)),
        (str(T0), (T0, None)),
        (ISO0, (T0, 0)),
        ("2024-01-18T17:00:00.000+01:00", (T0, 60)),
        ("2024-01-18T17:00:00.000+0100", (T0, 60)),
        ("2024-01-18T17:00:00+01", (T0, 60)),
        ("2024-01-18T10:30:00.000-05:30", (T0, -330)),
        ("2024-01-18 16:00:00", (T0, None)),
        ("2024-01-18T16:00:00", (T0, None)),
        ("2024-01-18T16:00:00.1234567Z", (T0 + 123, 0)),
        ("2024-01-18T16:00Z", (T0, 0)),
    ],
)
def test_every_time_format_clients_send(value: object, expected: tuple[int, int | None]) -> None:
    assert parse_instant(value) == expected


@pytest.mark.parametrize(
    # "9" * 400: digits beyond a float's range (infinity) were an OverflowError (found by tests/fuzz).
    "value",
    ["yesterday", "2024-13-01T00:00:00Z", True, None, [1], float("nan"), "9" * 400, "-" + "9" * 400],
)
def test_unreadable_times_name_the_field(value: object) -> None:
    with pytest.raises(NightscoutDocumentError, match=r"^created_at is not"):
        parse_instant(value, "created_at")


def test_offset_comes_from_utc_offset_then_the_iso_text_then_the_zone() -> None:
    base = {"type": "sgv", "sgv": 100, "date": T0}
    cases: list[tuple[dict[str, Any], int]] = [
        ({"utcOffset": 120, "dateString": "2024-01-18T17:00:00.000+0100"}, 120),
        ({"dateString": "2024-01-18T17:00:00.000+0100"}, 60),
        ({"dateString": "2024-01-18T10:00:00.000-0600"}, -360),
        ({"dateString": ISO0}, 60),  # Z says nothing: the zone's offset
        ({"utcOffset": 0}, 60),  # Loop's utcOffset 0 says nothing either
        ({"utcOffset": "-300"}, -300),
        ({"utcOffset": 5000}, 60),  # not an offset
        ({}, 60),
    ]
    for extra, offset in cases:
        record = _one(entry_records({**base, **extra}, BERLIN))
        assert (record.time_ms, record.utc_offset_min) == (T0, offset), extra
    summer = _one(entry_records({**base, "date": T0 + 180 * 86_400_000}, BERLIN))
    assert summer.utc_offset_min == 120
    naive = _one(
        treatment_records({"eventType": "Note", "created_at": "2024-01-18 16:00", "notes": "x"}, BERLIN)
    )
    assert (naive.time_ms, naive.utc_offset_min) == (T0, 60), "text without an offset is UTC"


def test_zone_offsets_are_exact_at_daylight_saving_changes() -> None:
    change = 1711846800000  # 2024-03-31T01:00:00Z: Berlin springs forward
    assert zone_offset_min(BERLIN, change - 1) == 60
    assert zone_offset_min(BERLIN, change) == 120
    kathmandu = zoneinfo.ZoneInfo("Asia/Kathmandu")
    assert zone_offset_min(kathmandu, T0) == 345


# --- entries ---------------------------------------------------------------------------------------


def test_entries_of_every_type() -> None:
    xdrip = {
        "_id": "65a9b1c2d3e4f5a6b7c8d9e0",
        "device": "xDrip-DexcomG6",
        "date": T0,
        "dateString": "2024-01-18T17:00:00.000+0100",
        "sgv": 123,
        "delta": 1.5,
        "direction": "Flat",
        "type": "sgv",
        "filtered": 123000,
        "unfiltered": 124000,
        "rssi": 100,
        "noise": 1,
        "sysTime": "2024-01-18T17:00:00.000+0100",
    }
    assert _one(entry_records(xdrip, UTC)) == MappedRecord(
        "cbg", "sensor", T0, 60, "xDrip-DexcomG6", 123.0, 123.0, "mg/dL"
    )
    low = _one(entry_records({**xdrip, "sgv": 39}, UTC))
    assert (low.value, low.orig_value, low.annotation) == (40.0, 39.0, "low")
    assert entry_records({**xdrip, "sgv": 5}, UTC) == MappedDocument(ignored=("sgv_code",))
    assert entry_records({**xdrip, "sgv": 0}, UTC) == MappedDocument(ignored=("sgv_code",))
    high = _one(entry_records({**xdrip, "sgv": 450}, UTC))
    assert (high.value, high.annotation) == (450.0, None)
    no_type = _one(entry_records({"sgv": "98", "dateString": "2019-02-06T01:53:18.005+0100"}, UTC))
    assert (no_type.type, no_type.value, no_type.time_ms) == ("cbg", 98.0, 1549414398005)
    mbg = {"device": "xDrip-DexcomG6", "type": "mbg", "date": T0, "mbg": 104}
    assert _one(entry_records(mbg, BERLIN)) == MappedRecord(
        "smbg", "meter", T0, 60, "xDrip-DexcomG6", 104.0, 104.0, "mg/dL"
    )
    cal = {"device": "xDrip-DexcomG6", "type": "cal", "date": T0, "slope": 1000, "intercept": 0, "scale": 1}
    assert entry_records(cal, UTC) == MappedDocument(ignored=("cal",))
    assert entry_records({"type": "etc", "date": T0}, UTC) == MappedDocument(ignored=("entry_type",))
    assert entry_records({**xdrip, "isValid": False}, UTC) == MappedDocument(ignored=("deleted",))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"type": "sgv", "sgv": 100}, "no date (date, dateString, sysTime, mills)"),
        ({"type": "sgv", "sgv": "high", "date": T0}, "sgv is not a number"),
        ({"type": "sgv", "sgv": True, "date": T0}, "sgv is not a number"),
        ({"type": "sgv", "date": T0}, "sgv is missing"),
        ({"type": "sgv", "sgv": -4, "date": T0}, "sgv is negative"),
        ({"type": "sgv", "sgv": 1200, "date": T0}, "sgv is above 1000 mg/dL"),
        ({"type": "mbg", "mbg": 0, "date": T0}, "mbg is outside 0 to 1000 mg/dL"),
        ({"type": "sgv", "sgv": 100, "date": "soon"}, "date is not an ISO 8601 date and time"),
    ],
)
def test_unreadable_entries(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(NightscoutDocumentError) as info:
        entry_records(doc, UTC)
    assert str(info.value) == message


# --- treatments: the shapes of real clients --------------------------------------------------------


def test_loop_treatments() -> None:
    base = {"created_at": ISO0, "timestamp": ISO0, "enteredBy": "Loop"}
    automatic = {
        **base,
        "eventType": "Correction Bolus",
        "type": "normal",
        "insulin": 1.5,
        "programmed": 1.5,
        "unabsorbed": 0.5,
        "duration": 0,
        "automatic": True,
        "insulinType": "humalog",
        "syncIdentifier": "loop-bolus-abc123",
    }
    assert _one(treatment_records(automatic, UTC)) == MappedRecord(
        "bolus", "automated", T0, 0, "Loop", 1.5, payload={"event_type": "Correction Bolus"}
    )
    stopped = _one(
        treatment_records({**automatic, "automatic": False, "insulin": 2.2, "programmed": 3.0}, UTC)
    )
    assert (stopped.subtype, stopped.value, stopped.payload) == (
        "normal",
        2.2,
        {"event_type": "Correction Bolus", "programmed": 3.0},
    )
    square = _one(treatment_records({**automatic, "automatic": False, "type": "square", "duration": 90}, UTC))
    assert (square.subtype, square.duration_ms) == ("extended", 90 * 60_000)
    dual = _one(treatment_records({**automatic, "automatic": False, "type": "dual", "duration": 30}, UTC))
    assert (dual.subtype, dual.duration_ms) == ("dual", 30 * 60_000)
    carbs = {
        **base,
        "eventType": "Carb Correction",
        "carbs": 45,
        "absorptionTime": 180,
        "glucose": 120,
        "glucoseType": "Sensor",
        "units": "mg/dL",
        "foodType": "Mixed meal",
    }
    assert _one(treatment_records(carbs, UTC)) == MappedRecord(
        "food", "", T0, 0, "Loop", 45.0, payload={"event_type": "Carb Correction", "absorption_min": 180.0}
    ), "a Sensor glucose is a copy of a sensor reading"
    temp = {
        **base,
        "eventType": "Temp Basal",
        "temp": "absolute",
        "rate": 1.2,
        "absolute": 1.2,
        "duration": 30,
        "automatic": True,
        "reason": "Loop predicted high BG",
    }
    assert _one(treatment_records(temp, UTC)) == MappedRecord(
        "basal", "automated", T0, 0, "Loop", 1.2, duration_ms=1_800_000
    )
    zero = _one(treatment_records({**temp, "rate": 0, "absolute": 0}, UTC))
    assert (zero.subtype, zero.value) == ("automated", 0.0)
    override = {**base, "eventType": "Temporary Override", "reason": "Running", "duration": 90}
    assert treatment_records(override, UTC) == MappedDocument(ignored=("event:Temporary Override",))
    meal = {
        **base,
        "eventType": "Meal Bolus",
        "carbs": 60,
        "insulin": 6.0,
        "glucose": 135,
        "glucoseType": "Finger",
        "units": "mg/dL",
    }
    assert _kinds(treatment_records(meal, UTC)) == [
        ("bolus", "normal", 6.0),
        ("food", "", 60.0),
        ("smbg", "meter", 135.0),
    ]
    bg = {**base, "eventType": "BG Check", "glucose": 110, "glucoseType": "Finger", "units": "mg/dL"}
    assert _one(treatment_records(bg, UTC)) == MappedRecord(
        "smbg", "meter", T0, 0, "Loop", 110.0, orig_value=110.0, orig_unit="mg/dL"
    )
    note = {**base, "eventType": "Note", "notes": " Started new sensor "}
    assert _one(treatment_records(note, UTC)) == MappedRecord(
        "note", "", T0, 0, "Loop", payload={"text": "Started new sensor"}, identity="Started new sensor"
    )
    for event, subtype in (("Site Change", "siteChange"), ("Sensor Start", "sensorStart")):
        assert _kinds(treatment_records({**base, "eventType": event}, UTC)) == [
            ("deviceEvent", subtype, None)
        ]
    calibration = {
        **base,
        "eventType": "Calibration",
        "glucose": 120,
        "glucoseType": "Finger",
        "units": "mg/dL",
    }
    assert _kinds(treatment_records(calibration, UTC)) == [("smbg", "calibration", 120.0)]


def test_androidaps_treatments() -> None:
    base = {"created_at": ISO0, "date": T0, "isValid": True, "app": "AAPS"}
    pump = {"pumpId": 4148, "pumpType": "ACCU_CHEK_INSIGHT_BLUETOOTH", "pumpSerial": "33013206"}
    smb = {**base, **pump, "eventType": "Correction Bolus", "insulin": 0.25, "type": "SMB", "isSMB": True}
    assert _one(treatment_records(smb, UTC)) == MappedRecord(
        "bolus", "automated", T0, 0, "AAPS", 0.25, payload={"event_type": "Correction Bolus"}
    )
    flagged = {**smb, "type": "NORMAL"}
    assert _one(treatment_records(flagged, UTC)).subtype == "automated", "isSMB alone marks an SMB"
    meal = {
        **base,
        **pump,
        "eventType": "Meal Bolus",
        "insulin": 8.1,
        "carbs": 45,
        "type": "NORMAL",
        "isSMB": False,
    }
    assert _kinds(treatment_records(meal, UTC)) == [("bolus", "normal", 8.1), ("food", "", 45.0)]
    temp = {
        "eventType": "Temp Basal",
        "created_at": ISO0,
        "enteredBy": "openaps://AndroidAPS",
        "isValid": True,
        "duration": 60,
        "rate": 0,
        "type": "NORMAL",
        "absolute": 0,
        **pump,
        "app": "AAPS",
    }
    record = _one(treatment_records(temp, UTC))
    assert (record.type, record.subtype, record.value, record.duration_ms, record.device) == (
        "basal",
        "temp",
        0.0,
        3_600_000,
        "openaps://AndroidAPS",
    )
    priming = {**base, **pump, "eventType": "Correction Bolus", "insulin": 0.7, "type": "PRIMING"}
    assert _one(treatment_records(priming, UTC)) == MappedRecord(
        "deviceEvent", "prime", T0, 0, "AAPS", 0.7, payload={"prime_type": "PRIMING"}
    )
    wizard = {
        **base,
        "eventType": "Bolus Wizard",
        "glucose": 134,
        "glucoseType": "Sensor",
        "carbs": 45,
        "insulin": 8.1,
    }
    assert _one(treatment_records(wizard, UTC)) == MappedRecord(
        "wizard", "", T0, 0, "AAPS", 45.0, payload={"estimate": 8.1, "bg_input": None}
    ), "without units the BG input is left out, never guessed"
    with_units = _one(treatment_records({**wizard, "units": "mmol", "glucose": 7.4}, UTC))
    assert with_units.payload == {"estimate": 8.1, "bg_input": pytest.approx(7.4 * MGDL_PER_MMOLL)}
    target = {
        "eventType": "Temporary Target",
        "created_at": ISO0,
        "targetBottom": 80,
        "targetTop": 80,
        "units": "mg/dl",
        "duration": 60,
    }
    assert treatment_records(target, UTC).ignored == ("event:Temporary Target",)
    switch = {"eventType": "Profile Switch", "created_at": ISO0, "profile": "Default", "profileJson": "{}"}
    assert treatment_records(switch, UTC).ignored == ("event:Profile Switch",)
    assert treatment_records({**meal, "isValid": False}, UTC) == MappedDocument(ignored=("deleted",))


def test_xdrip_treatments() -> None:
    base = {
        "timestamp": T0,
        "eventType": "<none>",
        "enteredBy": "xdrip",
        "uuid": "0b5d...",
        "created_at": ISO0,
    }
    mixed = {**base, "notes": "lunch", "carbs": 40, "insulin": 4.5}
    assert [(r.type, r.value, r.identity, r.device) for r in treatment_records(mixed, UTC).records] == [
        ("bolus", 4.5, "", "xdrip"),
        ("food", 40.0, "", "xdrip"),
        ("note", None, "lunch", "xdrip"),
    ]
    empty = {**base, "notes": "", "carbs": 0, "insulin": 0}
    assert treatment_records(empty, UTC) == MappedDocument(ignored=("empty",))
    injections = json.dumps(
        [
            {"insulin": "Fiasp", "units": 4.0},
            {"insulin": "Tresiba", "units": 18},
            {"insulin": "X", "units": 1},
        ]
    )
    pens = {**base, "insulin": 23.0, "carbs": 0, "insulinInjections": injections}
    assert [
        (r.type, r.subtype, r.value, r.payload, r.identity) for r in treatment_records(pens, UTC).records
    ] == [
        ("insulin", "rapid", 4.0, {"insulin_name": "Fiasp"}, "Fiasp"),
        ("insulin", "long", 18.0, {"insulin_name": "Tresiba"}, "Tresiba"),
        ("insulin", "unknown", 1.0, {"insulin_name": "X"}, "X"),
    ], "the injections, never their sum as a bolus as well"
    with pytest.raises(NightscoutDocumentError, match="insulinInjections is not JSON"):
        treatment_records({**pens, "insulinInjections": "[{"}, UTC)
    # Found by review after the fuzzer (tests/fuzz) met RecursionError in the file's decoder: text
    # nested too deeply made this decoder raise it too.
    with pytest.raises(NightscoutDocumentError, match="insulinInjections is not JSON"):
        treatment_records({**pens, "insulinInjections": "[" * 100_000 + "]" * 100_000}, UTC)


def test_trio_and_careportal_treatments() -> None:
    trio = {"created_at": ISO0, "enteredBy": "Trio"}
    exercise = _kinds(
        treatment_records({**trio, "eventType": "Exercise", "duration": 60, "notes": "Running"}, UTC)
    )
    assert exercise == [("physicalActivity", "unknown", None), ("note", "", None)]
    tt = {
        **trio,
        "eventType": "Temporary Target",
        "duration": 60,
        "targetTop": 110,
        "targetBottom": 110,
        "id": "t1",
    }
    assert treatment_records(tt, UTC).ignored == ("event:Temporary Target",)
    assert _one(treatment_records({**trio, "eventType": "Bolus", "insulin": 5.0}, UTC)).subtype == "normal"
    care = {"created_at": ISO0, "enteredBy": "Mom", "units": "mmol"}
    combo = {
        **care,
        "eventType": "Combo Bolus",
        "enteredinsulin": 6,
        "insulin": 2.4,
        "relative": 3.6,
        "splitNow": 40,
        "splitExt": 60,
        "duration": 60,
    }
    record = _one(treatment_records(combo, UTC))
    assert (record.type, record.subtype, record.value, record.duration_ms, record.device) == (
        "bolus",
        "dual",
        6.0,
        3_600_000,
        "",
    )
    assert record.payload == {"event_type": "Combo Bolus", "normal_u": 2.4, "extended_u": pytest.approx(3.6)}
    no_entered = _one(treatment_records({**combo, "enteredinsulin": None}, UTC))
    assert no_entered.value == pytest.approx(6.0), "insulin now plus relative U/h over the duration"
    square = _one(treatment_records({**combo, "insulin": 0, "splitNow": 0, "splitExt": 100}, UTC))
    assert (square.subtype, square.value) == ("extended", 6.0)
    bg = _one(
        treatment_records({**care, "eventType": "BG Check", "glucose": 6.1, "glucoseType": "Manual"}, UTC)
    )
    assert (bg.subtype, bg.value, bg.orig_value, bg.orig_unit) == (
        "manual",
        6.1 * MGDL_PER_MMOLL,
        6.1,
        "mmol/L",
    )
    sensor_bg = {**care, "eventType": "BG Check", "glucose": 6.1, "glucoseType": "Sensor"}
    assert treatment_records(sensor_bg, UTC) == MappedDocument(ignored=("bg_sensor",))
    percent = _one(
        treatment_records({**care, "eventType": "Temp Basal", "percent": -30, "duration": 120}, UTC)
    )
    assert (percent.value, percent.payload, percent.identity, percent.duration_ms) == (
        None,
        {"percent": 70.0},
        "percent=70",
        7_200_000,
    )
    assert treatment_records({**care, "eventType": "Temp Basal", "duration": 0}, UTC).ignored == (
        "temp_basal_end",
    )
    assert treatment_records({**care, "eventType": "Temp Basal End"}, UTC).ignored == ("temp_basal_end",)
    for event, expected in (
        ("Announcement", ("announcement", "announcement: pump alarm")),
        ("Question", ("question", "question: pump alarm")),
        ("D.A.D. Alert", ("D.A.D. Alert", "D.A.D. Alert: pump alarm")),
    ):
        note = _one(treatment_records({**care, "eventType": event, "notes": "pump alarm"}, UTC))
        assert (note.payload or {}).get("category") == expected[0]
        assert note.identity == expected[1]
    dog = _one(treatment_records({**care, "eventType": "D.A.D. Alert"}, UTC))
    assert dog.payload == {"text": "D.A.D. Alert", "category": "D.A.D. Alert"}
    assert treatment_records({**care, "eventType": "Note"}, UTC) == MappedDocument(ignored=("empty",))
    for event, subtype, payload in (
        ("Insulin Change", "reservoirChange", None),
        ("Sensor Change", "sensorStart", {"event_type": "Sensor Change"}),
        ("Sensor Stop", "other", {"event": "sensorStop"}),
        ("Pump Battery Change", "other", {"event": "pumpBatteryChange"}),
        ("Resume Pump", "resume", None),
    ):
        record = _one(treatment_records({**care, "eventType": event}, UTC))
        assert (record.type, record.subtype, record.payload) == ("deviceEvent", subtype, payload)
    suspend = _one(treatment_records({**care, "eventType": "Suspend Pump", "duration": 45}, UTC))
    assert (suspend.subtype, suspend.duration_ms) == ("suspend", 2_700_000)
    site = treatment_records(
        {**care, "eventType": "Site Change", "glucose": 5.5, "glucoseType": "Finger", "notes": "left"}, UTC
    )
    assert _kinds(site) == [
        ("deviceEvent", "siteChange", None),
        ("smbg", "meter", 5.5 * MGDL_PER_MMOLL),
        ("note", "", None),
    ]
    assert treatment_records({**care, "eventType": "Question"}, UTC).ignored == ("empty",)
    assert treatment_records({**care, "eventType": "Sleep"}, UTC).ignored == ("event_other",)
    assert _one(treatment_records({"created_at": ISO0, "carbs": 12}, UTC)).type == "food", (
        "no eventType: <none>"
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"eventType": "BG Check", "glucose": 120, "glucoseType": "Finger"},
            "glucose without units (mg/dl or mmol)",
        ),
        ({"eventType": "BG Check", "glucose": 120, "units": "mg%"}, "units is not mg/dl or mmol"),
        ({"eventType": "BG Check", "glucose": 1200, "units": "mg/dl"}, "glucose is outside 0 to 1000 mg/dL"),
        ({"eventType": "Meal Bolus", "insulin": -1}, "insulin is negative"),
        ({"eventType": "Meal Bolus", "carbs": "lots"}, "carbs is not a number"),
        ({"eventType": "Temp Basal", "duration": 30}, "temp basal without absolute, rate or percent"),
        ({"eventType": "Temp Basal", "absolute": -1, "duration": 30}, "temp basal rate is negative"),
        ({"eventType": "Exercise", "duration": -5}, "duration is negative"),
        (
            {"eventType": "Combo Bolus", "insulin": 5, "enteredinsulin": 4},
            "insulin of a Combo Bolus is not part of enteredinsulin",
        ),
        (
            {"eventType": "<none>", "insulin": 2, "insulinInjections": {"a": 1}},
            "insulinInjections is not a list",
        ),
    ],
)
def test_unreadable_treatments(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(NightscoutDocumentError) as info:
        treatment_records({"created_at": ISO0, **doc}, UTC)
    assert str(info.value) == message
    with pytest.raises(
        NightscoutDocumentError, match=r"^no date \(eventTime, created_at, timestamp, date, mills\)$"
    ):
        treatment_records({"eventType": "Note", "notes": "x"}, UTC)


def test_event_time_replaces_created_at_as_the_server_does() -> None:
    doc = {"eventType": "Note", "notes": "x", "created_at": ISO0, "eventTime": "2024-01-18T16:05:00Z"}
    assert _one(treatment_records(doc, UTC)).time_ms == T0 + 300_000


# --- profiles --------------------------------------------------------------------------------------


def _item(hours: int, minutes: int, value: float | str) -> dict[str, Any]:
    return {
        "time": f"{hours:02d}:{minutes:02d}",
        "timeAsSeconds": (hours * 60 + minutes) * 60,
        "value": value,
    }


LOOP_PROFILE: dict[str, Any] = {
    "defaultProfile": "Default",
    "startDate": "2026-03-16T14:01:00.000Z",
    "mills": "1773669660000",
    "units": "mg/dl",
    "enteredBy": "Loop",
    "loopSettings": {"dosingEnabled": True, "maximumBasalRatePerHour": 5.0, "maximumBolus": 10.0},
    "store": {
        "Default": {
            "dia": 6,
            "carbs_hr": "0",
            "delay": "0",
            "timezone": "ETC/GMT+5",
            "target_low": [_item(0, 0, 100), _item(7, 0, 90)],
            "target_high": [_item(0, 0, 110), _item(22, 0, 120)],
            "sens": [_item(0, 0, 45), _item(8, 0, 40), _item(20, 0, 50)],
            "basal": [_item(0, 0, 0.8), _item(6, 0, 1.2), _item(12, 0, 1.0)],
            "carbratio": [_item(0, 0, 12), _item(6, 0, 10)],
            "units": "mg/dl",
        },
        "Sport": {"basal": [_item(0, 0, "0.5")], "units": "mg/dl"},
    },
}


def test_a_loop_profile_becomes_pump_settings() -> None:
    record = _one(profile_records(LOOP_PROFILE, UTC))
    assert (record.type, record.time_ms, record.device) == ("pumpSettings", 1773669660000, "Loop")
    assert record.payload == {
        "active_schedule": "Default",
        "basal_schedules": {
            "Default": [
                {"start_min": 0, "rate_u_h": 0.8},
                {"start_min": 360, "rate_u_h": 1.2},
                {"start_min": 720, "rate_u_h": 1.0},
            ],
            "Sport": [{"start_min": 0, "rate_u_h": 0.5}],
        },
        "carb_ratios": [{"start_min": 0, "g_per_u": 12.0}, {"start_min": 360, "g_per_u": 10.0}],
        "sensitivities": [
            {"start_min": 0, "mgdl_per_u": 45.0},
            {"start_min": 480, "mgdl_per_u": 40.0},
            {"start_min": 1200, "mgdl_per_u": 50.0},
        ],
        "targets": [
            {"start_min": 0, "low_mgdl": 100.0, "high_mgdl": 110.0},
            {"start_min": 420, "low_mgdl": 90.0, "high_mgdl": 110.0},
            {"start_min": 1320, "low_mgdl": 90.0, "high_mgdl": 120.0},
        ],
        "max_bolus_u": 10.0,
        "max_basal_u_h": 5.0,
        "insulin_duration_h": 6.0,
    }
    parse_pump_settings(record.payload, 0)


def test_profiles_in_mmol_with_times_as_text_and_further_profiles() -> None:
    doc = {
        "defaultProfile": "Work",
        "created_at": "2024-01-18T17:00:00+01:00",
        "store": {
            "Work": {
                "units": "mmol",
                "dia": "5",
                "basal": [{"time": "00:00", "value": "0.9"}, {"time": "06:30", "value": "1.1"}],
                "carbratio": [{"time": "00:00", "value": "9"}],
                "sens": [{"time": "00:00", "value": "2.5"}],
                "target_low": [{"time": "00:00", "value": "5.5"}],
                "target_high": [{"time": "00:00", "value": "6.5"}],
            },
            "Weekend": {
                "units": "mmol",
                "basal": [{"time": "00:00", "value": "0.7"}],
                "carbratio": [{"time": "00:00", "value": 12}],
            },
        },
    }
    mapped = profile_records(doc, BERLIN)
    assert mapped.ignored == ("profile_other",)
    (record,) = mapped.records
    assert (record.time_ms, record.utc_offset_min, record.device) == (T0, 60, "")
    payload = record.payload or {}
    assert payload["active_schedule"] == "Work"
    assert payload["basal_schedules"]["Work"][1] == {"start_min": 390, "rate_u_h": 1.1}
    assert payload["sensitivities"] == [{"start_min": 0, "mgdl_per_u": 2.5 * MGDL_PER_MMOLL}]
    assert payload["targets"] == [
        {"start_min": 0, "low_mgdl": 5.5 * MGDL_PER_MMOLL, "high_mgdl": 6.5 * MGDL_PER_MMOLL}
    ]
    assert payload["insulin_duration_h"] == 5.0
    mdi = {
        "startDate": ISO0,
        "defaultProfile": "Default",
        "units": "mg/dl",
        "store": {"Default": {"basal": [], "carbratio": 10}},
    }
    payload = _one(profile_records(mdi, UTC)).payload or {}
    assert (payload["basal_schedules"], payload["active_schedule"], payload["carb_ratios"]) == (
        {},
        None,
        [{"start_min": 0, "g_per_u": 10.0}],
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"store": {}}, "store holds no profile"),
        ({"store": {"Default": 5}}, "store holds a profile that is not an object"),
        (
            {"units": None, "store": {"Default": {"basal": [_item(0, 0, 1)]}}},
            "profile without units (mg/dl or mmol)",
        ),
        (
            {"units": "mg", "store": {"Default": {"basal": [_item(1, 0, 1)], "units": "mmol/L"}}},
            "pumpSettings basal_schedules.Default[0].start_min: is not 0 (a schedule starts at midnight)",
        ),
        (
            {"store": {"Default": {"units": "mg/dl", "sens": [{"time": "noon", "value": 40}]}}},
            "store.Default.sens: time is not HH:MM",
        ),
        (
            {"store": {"Default": {"units": "mg/dl", "carbratio": [{"time": "00:00"}]}}},
            "store.Default.carbratio: an entry has no value",
        ),
        (
            {"store": {"Default": {"units": "mg/dl", "carbratio": [_item(0, 0, 500)]}}},
            "pumpSettings carb_ratios[0].g_per_u: is outside 1 to 150",
        ),
        ({"startDate": None, "mills": None}, "no date (startDate, created_at, mills, date)"),
    ],
)
def test_unreadable_profiles(change: dict[str, Any], message: str) -> None:
    with pytest.raises(NightscoutDocumentError) as info:
        profile_records({**LOOP_PROFILE, **change}, UTC)
    assert str(info.value) == message


# --- collections, devices, notes ------------------------------------------------------------------


def test_collection_of_a_document_by_its_fields() -> None:
    assert document_collection({"sgv": 1}) == "entries"
    assert document_collection({"type": "cal"}) == "entries"
    assert document_collection({"eventType": "Note"}) == "treatments"
    assert document_collection({"created_at": ISO0, "carbs": 10}) == "treatments"
    assert document_collection({"store": {}, "defaultProfile": "x"}) == "profile"
    assert document_collection({"device": "loop://iPhone", "loop": {}}) == "devicestatus"
    assert document_collection({"device": "x", "uploader": {"battery": 50}}) == "devicestatus"
    assert document_collection({"foo": 1}) is None
    status = {"device": "openaps://x", "created_at": ISO0, "openaps": {"iob": {}}, "pump": {}}
    assert map_document(None, status, UTC) == MappedDocument(ignored=("devicestatus",))
    assert map_document(None, {"foo": 1}, UTC) == MappedDocument(ignored=("unknown",))


@pytest.mark.parametrize(
    ("source", "manufacturer", "model"),
    [
        ("xDrip-DexcomG5", "Dexcom", "G5 (xDrip-DexcomG5)"),
        ("xDrip-DexcomG6", "Dexcom", "G6 (xDrip-DexcomG6)"),
        ("AndroidAPS-DexcomG6", "Dexcom", "G6 (AndroidAPS-DexcomG6)"),
        ("xDrip-BluetoothWixel", "Dexcom", "CGM (xDrip-BluetoothWixel)"),
        ("Dexcom ONE", "Dexcom", "ONE (Dexcom ONE)"),
        ("share2", "Dexcom", "Share (share2)"),
        ("xDrip-DexcomShare", "Dexcom", "Share (xDrip-DexcomShare)"),
        ("nightscout-librelink-up", "Abbott", "FreeStyle Libre (nightscout-librelink-up)"),
        ("xDrip-LibreReceiver", "Abbott", "FreeStyle Libre (xDrip-LibreReceiver)"),
        ("AndroidAPS-Libre2", "Abbott", "FreeStyle Libre 2 (AndroidAPS-Libre2)"),
        ("xDrip-CLFollower", "Medtronic", "CareLink (xDrip-CLFollower)"),
        ("medtronic-780g", "Medtronic", "MiniMed 780G (medtronic-780g)"),
        ("tconnectsync", "Tandem", "t:slim (tconnectsync)"),
        ("loop://iPhone", "Loop", "Loop (loop://iPhone)"),
        ("Loop", "Loop", "Loop (Loop)"),
        ("openaps://samsung SM-G970F", "OpenAPS", "OpenAPS (openaps://samsung SM-G970F)"),
        ("openaps://AndroidAPS", "AndroidAPS", "AndroidAPS (openaps://AndroidAPS)"),
        ("AAPS", "AndroidAPS", "AndroidAPS (AAPS)"),
        ("Trio", "Trio", "Trio (Trio)"),
        ("xdrip", "xDrip+", "xDrip+ (xdrip)"),
        ("nightscout-connect", "Nightscout", "Nightscout (nightscout-connect)"),
        ("some-bridge", "Nightscout", "some-bridge"),
        ("", "Nightscout", "Nightscout"),
        ("x" * 200, "Nightscout", "x" * 60),
    ],
)
def test_devices_of_uploader_strings(source: str, manufacturer: str, model: str) -> None:
    info = device_info(source)
    assert (info.manufacturer, info.model, info.serial, info.identifiers) == (
        manufacturer,
        model,
        None,
        set(),
    )


def test_enteredby_nicknames_are_not_devices() -> None:
    for entered_by, source in (("Mom", ""), ("Dad's phone", ""), ("xdrip", "xdrip"), ("Loop", "Loop")):
        doc = {"eventType": "Note", "created_at": ISO0, "notes": "x", "enteredBy": entered_by}
        assert _one(treatment_records(doc, UTC)).device == source
    doc = {
        "eventType": "Note",
        "created_at": ISO0,
        "notes": "x",
        "enteredBy": "Mom",
        "device": "tconnectsync",
    }
    assert _one(treatment_records(doc, UTC)).device == "tconnectsync"


def test_ignored_parts_are_described_without_content() -> None:
    notes = describe_ignored(
        {"cal": 3, "devicestatus": 0, "event:Profile Switch": 2, "event:Temporary Target": 1}
    )
    assert notes == [
        "calibration entries not stored (type cal: the sensor's calibration parameters, not readings): 3",
        (
            "treatments of loop states not stored: 3 (2 Profile Switch (a switch between stored profiles; "
            "the profile documents hold the settings), 1 Temporary Target (a temporary glucose target of "
            "the loop))"
        ),
    ]


# --- canonical records → Nightscout documents ------------------------------------------------------


def test_documents_of_canonical_records_look_like_the_servers() -> None:
    reading = MappedRecord("cbg", "sensor", T0, 60, "xDrip-DexcomG6", 123.0, 123.0, "mg/dL")
    assert entry_document(reading) == {
        "type": "sgv",
        "sgv": 123,
        "date": T0,
        "dateString": ISO0,
        "sysTime": ISO0,
        "utcOffset": 60,
        "device": "xDrip-DexcomG6",
    }
    assert (entry_document(MappedRecord("cbg", "sensor", T0, 0, value=40.0, annotation="low")) or {})[
        "sgv"
    ] == 39
    assert (entry_document(MappedRecord("cbg", "sensor", T0, 0, value=131.7)) or {})["sgv"] == 132
    assert (
        entry_document(MappedRecord("smbg", "meter", T0, 0, value=99.0, orig_value=5.5, orig_unit="mmol/L"))
        is None
    )
    bolus = MappedRecord("bolus", "automated", T0, 0, "Loop", 0.35)
    assert treatment_document(bolus) == {
        "eventType": "Correction Bolus",
        "created_at": ISO0,
        "utcOffset": 0,
        "device": "Loop",
        "enteredBy": "Loop",
        "insulin": 0.35,
        "type": "SMB",
        "automatic": True,
        "isSMB": True,
    }
    temp = MappedRecord("basal", "temp", T0, 0, value=0.75, duration_ms=1_800_000)
    assert treatment_document(temp) == {
        "eventType": "Temp Basal",
        "created_at": ISO0,
        "utcOffset": 0,
        "absolute": 0.75,
        "rate": 0.75,
        "duration": 30,
    }
    assert treatment_document(MappedRecord("deviceEvent", "alarm", T0, 0, payload={"text": "x"})) is None
    assert treatment_document(MappedRecord("note", "", T0, 0, payload={"text": ""})) is None
    assert nightscout_document(MappedRecord("cbgSettings", "", T0, 0)) is None
    assert profile_document(MappedRecord("note", "", T0, 0)) is None
    assert iso_utc(T0 + 7) == "2024-01-18T16:00:00.007Z"


def test_a_combo_bolus_and_a_profile_survive_the_round_trip() -> None:
    care = {"created_at": ISO0, "enteredBy": "Mom"}
    combo = {
        **care,
        "eventType": "Combo Bolus",
        "enteredinsulin": 6,
        "insulin": 3,
        "relative": 3,
        "splitNow": 50,
        "splitExt": 50,
        "duration": 60,
    }
    record = _one(treatment_records(combo, UTC))
    again = treatment_document(record)
    assert again is not None
    assert {
        k: again[k]
        for k in ("eventType", "enteredinsulin", "insulin", "relative", "splitNow", "splitExt", "duration")
    } == {
        "eventType": "Combo Bolus",
        "enteredinsulin": 6,
        "insulin": 3,
        "relative": 3,
        "splitNow": 50,
        "splitExt": 50,
        "duration": 60,
    }
    settings = _one(profile_records(LOOP_PROFILE, UTC))
    document = profile_document(settings)
    assert document is not None
    assert _one(profile_records(json.loads(json.dumps(document)), UTC)) == settings


# --- the round trip canonical → Nightscout → canonical, for every supported record -------------------

_TIMES = st.integers(946_684_800_000, 4_102_444_799_999)
_OFFSETS = st.integers(-720, 840)
_DEVICES = st.sampled_from(["", "xDrip-DexcomG6", "loop://iPhone", "openaps://AndroidAPS", "Trio", "share2"])
_UNITS = st.integers(1, 2000).map(lambda n: n / 20)  # pump steps of 0.05 U
_QUARTERS = st.integers(1, 200).map(lambda n: n / 4)  # exact binary fractions
_MINUTES = st.integers(1, 720).map(lambda m: m * 60_000)
_TEXT = st.text(min_size=1, max_size=40).map(str.strip).filter(bool)


@st.composite
def _record(draw: st.DrawFn) -> MappedRecord:  # noqa: PLR0911 - one branch per record kind
    time_ms, offset, device = draw(_TIMES), draw(_OFFSETS), draw(_DEVICES)

    def make(kind: str, subtype: str, value: float | None = None, **fields: Any) -> MappedRecord:
        return MappedRecord(kind, subtype, time_ms, offset, device, value, **fields)

    kind = draw(
        st.sampled_from(
            [
                "cbg",
                "smbg",
                "bolus",
                "combo",
                "food",
                "basal",
                "device",
                "note",
                "activity",
                "wizard",
                "insulin",
                "settings",
            ]
        )
    )
    if kind == "cbg":
        if draw(st.booleans()):
            return make("cbg", "sensor", 40.0, orig_value=39.0, orig_unit="mg/dL", annotation="low")
        value = float(draw(st.integers(40, 1000)))
        return make("cbg", "sensor", value, orig_value=value, orig_unit="mg/dL")
    if kind == "smbg":
        subtype = draw(st.sampled_from(["meter", "manual", "calibration"]))
        if draw(st.booleans()):
            mmol = draw(st.integers(6, 550)) / 10
            return make("smbg", subtype, mmol * MGDL_PER_MMOLL, orig_value=mmol, orig_unit="mmol/L")
        mgdl = draw(st.integers(10, 10_000)) / 10
        return make("smbg", subtype, mgdl, orig_value=mgdl, orig_unit="mg/dL")
    if kind == "bolus":
        event = draw(st.sampled_from(["Correction Bolus", "Meal Bolus", "Snack Bolus", "Bolus", "<none>"]))
        payload: dict[str, Any] = {"event_type": event}
        value = draw(_UNITS)
        if draw(st.booleans()):
            payload["programmed"] = value + draw(_UNITS)
        subtype = draw(st.sampled_from(["normal", "automated", "extended", "dual"]))
        duration = draw(_MINUTES) if subtype in ("extended", "dual") else None
        return make("bolus", subtype, value, duration_ms=duration, payload=payload)
    if kind == "combo":
        now, extended = draw(_QUARTERS), draw(_QUARTERS)
        payload = {"event_type": "Combo Bolus", "normal_u": now, "extended_u": extended}
        return make("bolus", "dual", now + extended, duration_ms=draw(_MINUTES), payload=payload)
    if kind == "food":
        payload = {"event_type": draw(st.sampled_from(["Carb Correction", "Meal Bolus", "Snack Bolus"]))}
        if draw(st.booleans()):
            payload["absorption_min"] = float(draw(st.integers(30, 480)))
        return make("food", "", float(draw(st.integers(1, 300))), payload=payload)
    if kind == "basal":
        subtype = draw(st.sampled_from(["temp", "automated"]))
        duration = draw(_MINUTES)
        if draw(st.booleans()):
            percent = float(draw(st.integers(0, 250)))
            return make(
                "basal",
                subtype,
                None,
                duration_ms=duration,
                payload={"percent": percent},
                identity=f"percent={percent:g}",
            )
        return make("basal", subtype, draw(st.integers(0, 35_000)) / 1000, duration_ms=duration)
    if kind == "device":
        choice = draw(
            st.sampled_from(
                [
                    "siteChange",
                    "reservoirChange",
                    "sensorStart",
                    "sensorChange",
                    "sensorStop",
                    "pumpBatteryChange",
                    "suspend",
                    "resume",
                    "prime",
                ]
            )
        )
        if choice in ("sensorStop", "pumpBatteryChange"):
            return make("deviceEvent", "other", payload={"event": choice}, identity=choice)
        if choice == "sensorChange":
            return make("deviceEvent", "sensorStart", payload={"event_type": "Sensor Change"})
        if choice == "suspend":
            return make("deviceEvent", "suspend", duration_ms=draw(st.none() | _MINUTES))
        if choice == "prime":
            return make("deviceEvent", "prime", draw(_UNITS), payload={"prime_type": "PRIMING"})
        return make("deviceEvent", choice)
    if kind == "note":
        text = draw(_TEXT)
        category = draw(st.sampled_from([None, "announcement", "question", "D.A.D. Alert"]))
        if category is None:
            return make("note", "", payload={"text": text}, identity=text)
        return make("note", "", payload={"text": text, "category": category}, identity=f"{category}: {text}")
    if kind == "activity":
        return make(
            "physicalActivity",
            draw(st.sampled_from(["light", "medium", "heavy", "unknown"])),
            duration_ms=draw(st.none() | _MINUTES),
        )
    if kind == "wizard":
        carbs = draw(st.none() | st.integers(1, 200).map(float))
        bg = draw(st.none() | st.integers(40, 400).map(float))
        return make("wizard", "", carbs, payload={"estimate": draw(st.none() | _UNITS), "bg_input": bg})
    if kind == "insulin":
        name, subtype = draw(
            st.sampled_from(
                [
                    ("Fiasp", "rapid"),
                    ("Humalog", "rapid"),
                    ("Tresiba", "long"),
                    ("Lantus", "long"),
                    ("Afrezza", "rapid"),
                    ("Mystery", "unknown"),
                ]
            )
        )
        return make("insulin", subtype, draw(_UNITS), payload={"insulin_name": name}, identity=name)
    return make("pumpSettings", "", payload=draw(_settings()))


def _schedule(key: str, values: st.SearchStrategy[float]) -> st.SearchStrategy[list[dict[str, Any]]]:
    starts = st.lists(st.integers(1, 1439), max_size=5, unique=True).map(lambda s: [0, *sorted(s)])
    return starts.flatmap(
        lambda s: st.lists(values, min_size=len(s), max_size=len(s)).map(
            lambda v: [{"start_min": start, key: value} for start, value in zip(s, v, strict=True)]
        )
    )


@st.composite
def _settings(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(_TEXT, max_size=3, unique=True))
    schedules = {
        name: draw(_schedule("rate_u_h", st.integers(0, 35_000).map(lambda n: n / 1000))) for name in names
    }
    targets = draw(st.none() | _schedule("low_mgdl", st.integers(40, 300).map(float)))
    if targets:
        for entry in targets:
            entry["high_mgdl"] = entry["low_mgdl"] + draw(st.integers(0, 300 - int(entry["low_mgdl"])))
    payload = {
        "active_schedule": draw(st.sampled_from(names)) if names else None,
        "basal_schedules": schedules,
        "carb_ratios": draw(_schedule("g_per_u", st.integers(10, 1500).map(lambda n: n / 10))),
        "sensitivities": draw(st.just([]) | _schedule("mgdl_per_u", st.integers(5, 600).map(float))),
        "targets": targets or [],
        "max_bolus_u": draw(st.none() | st.integers(1, 100).map(float)),
        "max_basal_u_h": draw(st.none() | st.integers(1, 350).map(lambda n: n / 10)),
        "insulin_duration_h": draw(st.none() | st.integers(10, 100).map(lambda n: n / 10)),
    }
    parse_pump_settings(payload, 0)
    return payload


@given(record=_record())
def test_canonical_to_nightscout_to_canonical_is_the_identity(record: MappedRecord) -> None:
    """Every record a Nightscout document can hold comes back unchanged (through JSON text)."""
    written = nightscout_document(record)
    assert written is not None, record
    collection, document = written
    again = map_document(collection, json.loads(json.dumps(document)), UTC)
    assert again == MappedDocument((record,)), (document, again)
    assert document_collection(document) == collection


@given(
    doc=st.dictionaries(
        st.sampled_from(
            [
                "eventType",
                "created_at",
                "insulin",
                "carbs",
                "glucose",
                "units",
                "glucoseType",
                "duration",
                "absolute",
                "percent",
                "notes",
                "type",
                "sgv",
                "date",
                "dateString",
                "utcOffset",
                "store",
                "enteredinsulin",
                "insulinInjections",
                "automatic",
            ]
        ),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=8)
        | st.lists(st.integers(), max_size=2)
        | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ),
    collection=st.sampled_from([None, "entries", "treatments", "profile", "devicestatus"]),
)
def test_any_document_maps_or_is_refused_cleanly(doc: dict[str, Any], collection: str | None) -> None:
    """Mutated documents never raise anything but NightscoutDocumentError."""
    try:
        mapped = map_document(collection, doc, BERLIN)
    except NightscoutDocumentError:
        return
    for record in mapped.records:
        assert record.type


def test_a_fingerstick_without_units_beside_a_bolus_is_left_out_but_a_bg_check_is_refused() -> None:
    # tconnectsync sends a bolus with the pump's BG input and no units: the bolus is stored.
    bolus = {
        "eventType": "Meal Bolus",
        "created_at": "2026-01-10T12:00:00Z",
        "insulin": 4.2,
        "carbs": 40,
        "glucose": 156,
        "glucoseType": "Finger",
        "enteredBy": "Pump (tconnectsync)",
    }
    mapped = treatment_records(bolus, UTC)
    assert sorted(r.type for r in mapped.records) == ["bolus", "food"]
    assert mapped.ignored == ("glucose_units",)
    assert describe_ignored({"glucose_units": 1}) == [
        "glucose readings beside a bolus or carbs without units (mg/dl or mmol) not stored: 1"
    ]
    check = {
        "eventType": "BG Check",
        "created_at": "2026-01-10T12:00:00Z",
        "glucose": 156,
        "glucoseType": "Finger",
    }
    with pytest.raises(NightscoutDocumentError, match="glucose without units"):
        treatment_records(check, UTC)
