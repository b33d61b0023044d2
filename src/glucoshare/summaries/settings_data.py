"""The data of a "Device settings" report: a patient's pump settings, their changes, the basal seen.

Records are read through the patient's devices, as :mod:`glucoshare.summaries.data` reads them,
and placed on the patient's local time axis. The settings come from ``pumpSettings`` records (the
canonical payload of :mod:`glucoshare.analytics.settings`) when there are any up to the end of the
period; else they are derived from the bolus calculator (``wizard`` records) of the period. Method,
units and limits: :mod:`glucoshare.analytics.settings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from sqlalchemy import ScalarSelect, select
from sqlalchemy.orm import Session

from glucoshare.analytics.settings import (
    GlucoseUnit,
    InvalidPumpSettingsError,
    PumpSettings,
    ScheduleEntry,
    SettingsChange,
    calculator_settings,
    merge_unchanged,
    observed_basal_schedule,
    parse_pump_settings,
    settings_changes,
)
from glucoshare.devices.models import Device
from glucoshare.records.models import Record
from glucoshare.records.periods import utc_offsets_ms
from glucoshare.records.vocabulary import RecordType
from glucoshare.summaries.data import BASAL_LOOKBACK_MS

WIZARD_KEYS = ("carb_ratio", "insulin_sensitivity", "target_low", "target_high")
"""The ``wizard`` payload keys read: carb ratio (g/U), sensitivity (mg/dL per U), targets (mg/dL)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceSettings:
    """A patient's device settings over a period.

    ``history`` holds the snapshots in force during the period, oldest first (for pump settings the
    first may be from before the period: the one in force at its start; consecutive records with
    the same settings are one snapshot), ``latest`` the last of them and ``changes`` what changed
    from one to the next. ``source`` tells where they come from: ``pump`` (``pumpSettings``
    records), ``calculator`` (derived from the bolus calculator) or ``none``. ``basal_observed`` is
    the scheduled basal rate by time of day of the period's most recent complete day (empty when
    there is none).
    """

    latest: PumpSettings | None
    history: tuple[PumpSettings, ...]
    changes: tuple[SettingsChange, ...]
    source: Literal["pump", "calculator", "none"]
    basal_observed: tuple[ScheduleEntry, ...]


def _devices(patient_id: str) -> ScalarSelect[int]:
    return select(Device.seq).where(Device.patient_id == patient_id).scalar_subquery()


def _local(utc_ms: Sequence[int], timezone: str) -> list[int]:
    utc = np.array(utc_ms, np.int64)
    return [int(at) for at in (utc + utc_offsets_ms(utc, timezone)).tolist()]


def _pump_snapshots(
    session: Session, patient_id: str, timezone: str, start_ms: int, end_ms: int
) -> list[PumpSettings]:
    """The valid ``pumpSettings`` snapshots in ``[start_ms, end_ms)``, and the latest before."""
    kind = Record.type == RecordType.PUMP_SETTINGS.value
    devices = Record.device_seq.in_(_devices(patient_id))
    rows: list[tuple[int, Any]] = []
    earlier = session.execute(
        select(Record.time_ms, Record.payload)
        .where(devices, kind, Record.time_ms < start_ms)
        .order_by(Record.time_ms.desc(), Record.id.desc())
    )
    for time_ms, payload in earlier:  # the latest that is valid is in force at the start
        try:
            parse_pump_settings(payload, 0)
        except InvalidPumpSettingsError:
            continue
        rows.append((time_ms, payload))
        break
    rows.extend(
        (int(time_ms), payload)
        for time_ms, payload in session.execute(
            select(Record.time_ms, Record.payload)
            .where(devices, kind, Record.time_ms >= start_ms, Record.time_ms < end_ms)
            .order_by(Record.time_ms, Record.id)
        )
    )
    snapshots = []
    for (_, payload), local_ms in zip(rows, _local([r[0] for r in rows], timezone), strict=True):
        try:
            snapshots.append(parse_pump_settings(payload, local_ms))
        except InvalidPumpSettingsError:
            continue  # an importer validates what it stores; a damaged payload is left out
    return snapshots


def _number(payload: dict[str, Any] | None, key: str) -> float:
    value = (payload or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan")
    return float(value)


def _calculator_snapshots(
    session: Session, patient_id: str, timezone: str, start_ms: int, end_ms: int
) -> list[PumpSettings]:
    rows = session.execute(
        select(Record.time_ms, Record.payload)
        .where(
            Record.device_seq.in_(_devices(patient_id)),
            Record.type == RecordType.WIZARD.value,
            Record.time_ms >= start_ms,
            Record.time_ms < end_ms,
        )
        .order_by(Record.time_ms, Record.id)
    ).all()
    local = np.array(_local([row[0] for row in rows], timezone), np.int64)
    ratio, isf, low, high = (
        np.array([_number(row[1], key) for row in rows], np.float64) for key in WIZARD_KEYS
    )
    return calculator_settings(local, ratio, isf, low, high)


def _basal_observed(
    session: Session, patient_id: str, timezone: str, start_ms: int, end_ms: int
) -> tuple[ScheduleEntry, ...]:
    rows = session.execute(
        select(Record.time_ms, Record.subtype, Record.value, Record.duration_ms).where(
            Record.device_seq.in_(_devices(patient_id)),
            Record.type == RecordType.BASAL.value,
            Record.time_ms >= start_ms - BASAL_LOOKBACK_MS,
            Record.time_ms < end_ms,
        )
    ).all()
    local = np.array(_local([row[0] for row in rows], timezone), np.int64)
    bounds = _local([start_ms, end_ms], timezone)
    return observed_basal_schedule(
        local,
        np.array([-1 if row[3] is None else row[3] for row in rows], np.int64),
        np.array([0.0 if row[2] is None else row[2] for row in rows], np.float64),
        np.array([row[1] == "scheduled" for row in rows], np.bool_),
        within=(bounds[0], bounds[1]),
    )


def load_device_settings(
    session: Session,
    patient_id: str,
    timezone: str,
    start_ms: int,
    end_ms: int,
    *,
    glucose_unit: GlucoseUnit = "mg/dL",
) -> DeviceSettings:
    """The patient's device settings over ``[start_ms, end_ms)`` (UTC ms), in ``timezone``.

    Pump settings: the ``pumpSettings`` records of the period and the latest one before it (in
    force at the start), consecutive ones with the same settings merged; a payload that does not
    validate is left out. Without any, settings derived from the period's ``wizard`` records
    (payload keys :data:`WIZARD_KEYS`, glucose in mg/dL). ``basal_observed`` from the ``basal``
    records (those that began up to a day before the period too, which may run into it). The
    changes write glucose in ``glucose_unit``. Reads only; payloads of these types are stored as
    they are (only notes are sealed).
    """
    snapshots = merge_unchanged(_pump_snapshots(session, patient_id, timezone, start_ms, end_ms))
    source: Literal["pump", "calculator", "none"] = "pump"
    if not snapshots:
        snapshots = _calculator_snapshots(session, patient_id, timezone, start_ms, end_ms)
        source = "calculator" if snapshots else "none"
    return DeviceSettings(
        latest=snapshots[-1] if snapshots else None,
        history=tuple(snapshots),
        changes=tuple(settings_changes(snapshots, glucose_unit=glucose_unit)),
        source=source,
        basal_observed=_basal_observed(session, patient_id, timezone, start_ms, end_ms),
    )
