"""Device settings of a patient, on both databases: from the bolus calculator of a simulated CareLink
import (checked against the settings the simulator gave the pump), and from ``pumpSettings``
records, which win."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.analytics.settings import (
    PumpSettings,
    ScheduleEntry,
    TargetEntry,
    pump_settings_payload,
)
from glucoshare.config import Settings
from glucoshare.devices.models import Device
from glucoshare.records.models import Record, Upload
from glucoshare.records.service import dedup_key
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.carelink import CareLinkOptions, calculator_schedule, write_carelink
from glucoshare.summaries.settings_data import load_device_settings
from tests.ingest.helpers import profile, store_export
from tests.records.helpers import bare_upload

TZ = "Europe/Berlin"
DAY = 86_400_000
HOUR = 3_600_000
EPOCH = dt.datetime(1970, 1, 1)  # naive: the local time axis counts wall-clock time


def _local_ms(timeline: Timeline, utc_ms: int) -> int:
    """The patient's wall time at an instant, as milliseconds on the local time axis."""
    return int((timeline.local(utc_ms) - EPOCH).total_seconds() * 1000)


def _imported(session: Session, settings: Settings) -> tuple[Timeline, Patient]:
    """A pump patient's two weeks (no daylight-saving change), imported from a CareLink export."""
    timeline = simulate(
        profile(therapy="pump", cgm="guardian4", timezone=TZ, control=0.3, seed=8),
        start=dt.date(2025, 5, 5),
        days=14,
    )
    export = write_carelink(timeline, CareLinkOptions(generation=54))
    patient = add_patient(
        session, validate_patient(email="lena@example.org", name="Lena Fischer", timezone=TZ)
    )
    store_export(session, settings, patient, export)
    return timeline, patient


def test_settings_derived_from_the_bolus_calculator(session: Session, settings: Settings) -> None:
    timeline, patient = _imported(session, settings)
    truth = calculator_schedule(timeline)
    found = load_device_settings(session, patient.id, TZ, timeline.start_ms, timeline.end_ms)

    assert found.source == "calculator"
    before, after = found.history
    assert found.latest == after
    assert before.first_local_ms == _local_ms(timeline, timeline.start_ms)
    assert after.first_local_ms == after.local_ms == _local_ms(timeline, truth.change_ms)
    assert after.last_local_ms == _local_ms(timeline, timeline.end_ms - DAY)

    # At every use of the calculator, the derived settings of its day are those the pump used.
    uses = timeline.of_kind("wizard")
    assert len(uses) > 50
    for use in uses:
        local = _local_ms(timeline, use.utc_ms)
        (snapshot,) = [s for s in found.history if s.first_local_ms <= local < s.last_local_ms + DAY]
        minute = local % DAY // 60_000
        pump = truth.at(use.utc_ms)
        in_force = snapshot.at(minute)
        assert in_force.carb_ratio_g_per_u == pump.carb_ratio_at(minute)
        assert in_force.sensitivity_mgdl_per_u == pump.sensitivity_at(minute)
        assert (in_force.target_low_mgdl, in_force.target_high_mgdl) == pump.target_at(minute)
    # Every entry after the first starts where the pump's schedule has its value (the first reaches
    # back to midnight: the night is not seen).
    for snapshot, pump in ((before, truth.before), (after, truth.after)):
        for entry in snapshot.carb_ratios[1:]:
            assert pump.carb_ratio_at(entry.start_min) == entry.value
        for entry in snapshot.sensitivities[1:]:
            assert pump.sensitivity_at(entry.start_min) == entry.value
        for target in snapshot.targets[1:]:
            assert pump.target_at(target.start_min) == (target.low_mgdl, target.high_mgdl)
        assert [e.value for e in snapshot.carb_ratios] == [v for _, v in pump.carb_ratios]

    # The one change: the lunch carb ratio.
    (change,) = found.changes
    lunch_before, lunch_after = truth.before.carb_ratios[1][1], truth.after.carb_ratios[1][1]
    assert change.local_ms == after.local_ms
    assert change.what.startswith("carb ratio from 1")
    assert (change.before, change.after) == (f"{lunch_before:g} g/U", f"{lunch_after:g} g/U")
    # The scheduled basal of the latest complete day is the pump's schedule.
    assert found.basal_observed == tuple(ScheduleEntry(s, r) for s, r in timeline.basal_schedule)


def _pump_record(
    session: Session, device: Device, upload: Upload, utc_ms: int, settings: PumpSettings, line: int
) -> None:
    session.add(
        Record(
            device_seq=device.seq,
            upload_seq=upload.seq,
            type="pumpSettings",
            subtype="",
            time_ms=utc_ms,
            utc_offset_min=120,
            value=None,
            payload=pump_settings_payload(settings),
            source_line=line,
            dedup_key=dedup_key("pumpSettings", "", None, str(line)),
        )
    )


def test_pump_settings_records_win_with_their_history(session: Session, settings: Settings) -> None:
    timeline, patient = _imported(session, settings)
    device = session.scalars(select(Device).where(Device.patient_id == patient.id)).one()
    upload = bare_upload(session, patient.id, file_name="pump-settings.json", timezone=TZ)
    start, end = timeline.start_ms, timeline.end_ms
    standard = PumpSettings(
        local_ms=0,
        source="pump",
        first_local_ms=0,
        last_local_ms=0,
        active_schedule="Standard",
        basal_schedules={"Standard": tuple(ScheduleEntry(s, r) for s, r in timeline.basal_schedule)},
        carb_ratios=(ScheduleEntry(0, 8.0), ScheduleEntry(660, 10.0)),
        sensitivities=(ScheduleEntry(0, 50.0),),
        targets=(TargetEntry(0, 100.0, 120.0),),
        max_bolus_u=10.0,
        max_basal_u_h=3.0,
        insulin_duration_h=4.0,
    )
    changed = dataclasses.replace(
        standard, carb_ratios=(ScheduleEntry(0, 8.0), ScheduleEntry(660, 11.0)), max_bolus_u=12.0
    )
    older = dataclasses.replace(standard, max_bolus_u=5.0)
    _pump_record(session, device, upload, start - 20 * DAY, older, 1)  # superseded before the period
    _pump_record(session, device, upload, start - 10 * DAY, standard, 2)  # in force at the start
    _pump_record(session, device, upload, start + 2 * DAY + 9 * HOUR, standard, 3)  # the same again
    _pump_record(session, device, upload, start + 6 * DAY + 10 * HOUR, changed, 4)
    _pump_record(session, device, upload, end + DAY, standard, 5)  # after the period
    bad = Record(
        device_seq=device.seq,
        upload_seq=upload.seq,
        type="pumpSettings",
        subtype="",
        time_ms=start + 8 * DAY,
        utc_offset_min=120,
        payload={"carb_ratios": [{"start_min": 60, "g_per_u": 10.0}]},
        source_line=6,
        dedup_key="bad",
    )
    session.add(bad)
    session.flush()

    found = load_device_settings(session, patient.id, TZ, start, end)
    assert found.source == "pump"
    first, second = found.history
    assert first.same_settings(standard)
    assert (first.local_ms, first.last_local_ms) == (
        _local_ms(timeline, start - 10 * DAY),
        _local_ms(timeline, start + 2 * DAY + 9 * HOUR),
    )
    assert second.same_settings(changed)
    assert found.latest == second
    assert second.local_ms == _local_ms(timeline, start + 6 * DAY + 10 * HOUR)
    assert [str(c) for c in found.changes] == [
        "carb ratio from 11:00: 10 g/U → 11 g/U",
        "max bolus: 10 U → 12 U",
    ]
    assert {c.local_ms for c in found.changes} == {second.local_ms}
    assert found.basal_observed == tuple(ScheduleEntry(s, r) for s, r in timeline.basal_schedule)

    # A period before the CareLink data: the settings in force then, nothing observed.
    earlier = load_device_settings(session, patient.id, TZ, start - 15 * DAY, start - 5 * DAY)
    assert earlier.source == "pump"
    assert earlier.history[0].same_settings(older)
    assert earlier.latest is not None
    assert earlier.latest.same_settings(standard)
    assert [str(c) for c in earlier.changes] == ["max bolus: 5 U → 10 U"]
    assert earlier.basal_observed == ()


@pytest.mark.parametrize("days", [0, 14])
def test_no_settings(session: Session, days: int) -> None:
    patient = add_patient(
        session, validate_patient(email="noah@example.org", name="Noah Okafor", timezone=TZ)
    )
    start = int(dt.datetime(2025, 5, 5, tzinfo=zoneinfo.ZoneInfo(TZ)).timestamp() * 1000)
    found = load_device_settings(session, patient.id, TZ, start, start + days * DAY)
    assert (found.latest, found.history, found.changes, found.source, found.basal_observed) == (
        None,
        (),
        (),
        "none",
        (),
    )
