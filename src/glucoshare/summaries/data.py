"""A patient's stored records as NumPy arrays, on the UTC and on the patient's local time axis.

The analytics work on arrays; this module is the one place that turns rows into them. Local times
are the patient's time zone (the stats are "computed in the patient's time zone", CONTRACT.md),
not the offsets the sources wrote, so that a day is the patient's day wherever the data came from.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
from sqlalchemy import ScalarSelect, select
from sqlalchemy.orm import Session

from glucoshare.analytics.insulin import BasalSegments, Doses
from glucoshare.analytics.sources import repeated_readings
from glucoshare.devices.models import Device
from glucoshare.records.models import Record
from glucoshare.records.periods import utc_offsets_ms
from glucoshare.records.vocabulary import RecordType

BASAL_LOOKBACK_MS = 24 * 3_600_000
"""Basal segments that started up to a day before a period can still run into it."""


@dataclasses.dataclass(frozen=True, slots=True)
class CgmArrays:
    """CGM readings of the regular sensor series, sorted by time.

    ``mmol`` is the value as reported in mmol/L, NaN for readings reported in mg/dL.
    """

    utc_ms: npt.NDArray[np.int64]
    local_ms: npt.NDArray[np.int64]
    mgdl: npt.NDArray[np.float64]
    mmol: npt.NDArray[np.float64]

    def take(self, index: npt.NDArray[np.intp]) -> CgmArrays:
        """The readings at ``index``."""
        return CgmArrays(self.utc_ms[index], self.local_ms[index], self.mgdl[index], self.mmol[index])


def _devices(patient_id: str) -> ScalarSelect[int]:
    return select(Device.seq).where(Device.patient_id == patient_id).scalar_subquery()


def device_ranks(session: Session, patient_id: str) -> dict[int, int]:
    """The source rank of each of the patient's devices that has one (:mod:`glucoshare.analytics.sources`)."""
    rows = session.execute(
        select(Device.seq, Device.source_rank).where(
            Device.patient_id == patient_id, Device.source_rank.is_not(None)
        )
    ).all()
    return {int(seq): int(rank) for seq, rank in rows if rank is not None}


def distinct_readings(
    session: Session,
    patient_id: str,
    time_ms: npt.NDArray[np.int64],
    mgdl: npt.NDArray[np.float64],
    device_seq: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """Which CGM readings to count: all but those a better-ranked device also holds (same sensor).

    The one rule for every reader of CGM data (stats, reports, FHIR): see
    :func:`glucoshare.analytics.sources.repeated_readings`.
    """
    if len(device_seq) == 0 or bool((device_seq == device_seq[0]).all()):
        return np.ones(len(time_ms), np.bool_)
    return ~repeated_readings(time_ms, mgdl, device_seq, device_ranks(session, patient_id))


def load_cgm(session: Session, patient_id: str, timezone: str, start_ms: int, end_ms: int) -> CgmArrays:
    """The patient's CGM sensor readings in ``[start_ms, end_ms)`` (UTC ms), sorted by time.

    A reading that reached Glucoshare by two routes (the same sensor in a Clarity and a Glooko
    export) is counted once (:func:`distinct_readings`).
    """
    rows = session.execute(
        select(Record.time_ms, Record.value, Record.orig_value, Record.orig_unit, Record.device_seq)
        .where(
            Record.device_seq.in_(_devices(patient_id)),
            Record.type == RecordType.CBG.value,
            Record.subtype == "sensor",
            Record.time_ms >= start_ms,
            Record.time_ms < end_ms,
            Record.value.is_not(None),
        )
        .order_by(Record.time_ms, Record.id)  # one order on both engines: sums agree to the last digit
    ).all()
    if not rows:
        empty_i, empty_f = np.empty(0, np.int64), np.empty(0, np.float64)
        return CgmArrays(empty_i, empty_i, empty_f, empty_f)
    times, values, originals, units, devices = zip(*rows, strict=True)
    utc = np.array(times, np.int64)
    mgdl = np.array(values, np.float64)
    mmol = np.array(
        [o if u == "mmol/L" and o is not None else np.nan for o, u in zip(originals, units, strict=True)],
        np.float64,
    )
    keep = distinct_readings(session, patient_id, utc, mgdl, np.array(devices, np.int64))
    if not keep.all():
        utc, mgdl, mmol = utc[keep], mgdl[keep], mmol[keep]
    return CgmArrays(utc, utc + utc_offsets_ms(utc, timezone), mgdl, mmol)


def latest_cgm(session: Session, patient_id: str) -> tuple[int, float | None] | None:
    """The patient's latest CGM reading: its UTC instant (ms) and glucose (mg/dL), if any.

    Asked device by device: each question is one step down the records' index (device, type,
    time), where one question over all the devices would read and sort every reading they hold.
    """
    latest: tuple[int, float | None] | None = None
    for device_seq in session.scalars(select(Device.seq).where(Device.patient_id == patient_id)):
        row = session.execute(
            select(Record.time_ms, Record.value)
            .where(Record.device_seq == device_seq, Record.type == RecordType.CBG.value)
            .order_by(Record.time_ms.desc())
            .limit(1)
        ).first()
        if row is not None and (latest is None or int(row[0]) > latest[0]):
            latest = (int(row[0]), None if row[1] is None else float(row[1]))
    return latest


def latest_cgm_ms(session: Session, patient_id: str) -> int | None:
    """The UTC instant of the patient's latest CGM reading, if any."""
    latest = latest_cgm(session, patient_id)
    return None if latest is None else latest[0]


@dataclasses.dataclass(frozen=True, slots=True)
class TherapyArrays:
    """Insulin, carbohydrate and site-change records on the local time axis."""

    basal: BasalSegments
    boluses: Doses
    rapid_pen: Doses
    long_pen: Doses
    wizard_carbs: Doses
    food_carbs: Doses
    site_changes: npt.NDArray[np.int64]


def load_therapy(
    session: Session, patient_id: str, timezone: str, start_ms: int, end_ms: int
) -> TherapyArrays:
    """The patient's basal, bolus, pen, carb and site-change records around ``[start_ms, end_ms)``."""
    kinds = (
        RecordType.BASAL.value,
        RecordType.BOLUS.value,
        RecordType.INSULIN.value,
        RecordType.WIZARD.value,
        RecordType.FOOD.value,
        RecordType.DEVICE_EVENT.value,
    )
    rows = session.execute(
        select(Record.type, Record.subtype, Record.time_ms, Record.value, Record.duration_ms).where(
            Record.device_seq.in_(_devices(patient_id)),
            Record.type.in_(kinds),
            Record.time_ms >= start_ms - BASAL_LOOKBACK_MS,
            Record.time_ms < end_ms,
        )
    ).all()
    utc = np.array([row[2] for row in rows], np.int64)
    local = utc + utc_offsets_ms(utc, timezone)
    by: dict[str, list[int]] = {}
    for at, row in enumerate(rows):
        kind, subtype = row[0], row[1]
        if kind == RecordType.INSULIN.value:
            kind = "long_pen" if subtype == "long" else "rapid_pen"
        elif kind == RecordType.DEVICE_EVENT.value:
            if subtype not in ("siteChange", "reservoirChange"):
                continue
            kind = subtype
        by.setdefault(kind, []).append(at)

    def doses(kind: str) -> Doses:
        index = np.array(by.get(kind, []), np.intp)
        values = np.array([rows[i][3] for i in index.tolist()], np.float64)
        return Doses(local[index], np.nan_to_num(values))

    basal_index = np.array(by.get(RecordType.BASAL.value, []), np.intp)
    basal_rows = [rows[i] for i in basal_index.tolist()]
    basal = BasalSegments(
        start=local[basal_index],
        duration=np.array([-1 if r[4] is None else r[4] for r in basal_rows], np.int64),
        rate=np.array([np.nan if r[3] is None else r[3] for r in basal_rows], np.float64),
        automated=np.array([r[1] == "automated" for r in basal_rows], np.bool_),
    )
    # Site changes: cannula changes where the device reports them, else reservoir changes.
    sites = "siteChange" if by.get("siteChange") else "reservoirChange"
    return TherapyArrays(
        basal=basal,
        boluses=doses(RecordType.BOLUS.value),
        rapid_pen=doses("rapid_pen"),
        long_pen=doses("long_pen"),
        wizard_carbs=doses(RecordType.WIZARD.value),
        food_carbs=doses(RecordType.FOOD.value),
        site_changes=local[np.array(by.get(sites, []), np.intp)],
    )
