"""The records a daily view draws, read once for a period and cut into local days.

CGM readings, meter readings, boluses and pen doses, carbohydrates, basal segments (with their kind:
scheduled, temporary, suspended or automated), device events and notes, on the patient's local
time axis (as :mod:`glucoshare.summaries.data` places them). Note texts are sealed and opened here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from glucoshare.analytics.insulin import BasalSegments, segment_ends
from glucoshare.devices.models import Device
from glucoshare.records.models import Record
from glucoshare.records.periods import utc_offsets_ms
from glucoshare.records.service import note_place
from glucoshare.records.vocabulary import RecordType
from glucoshare.reports.charts import DayData
from glucoshare.summaries.data import BASAL_LOOKBACK_MS, distinct_readings
from glucoshare.vault.service import open_mapping

DAY_MS = 86_400_000
MINUTE_MS = 60_000
_EVENT_LABELS = {
    "siteChange": "infusion set changed",
    "reservoirChange": "reservoir changed",
    "prime": "primed",
    "sensorStart": "sensor started",
    "suspend": "pump suspended",
    "resume": "pump resumed",
    "timeChange": "device time changed",
}
_DRAWN = (
    RecordType.CBG,
    RecordType.SMBG,
    RecordType.BOLUS,
    RecordType.INSULIN,
    RecordType.WIZARD,
    RecordType.FOOD,
    RecordType.BASAL,
    RecordType.DEVICE_EVENT,
    RecordType.NOTE,
    RecordType.PHYSICAL_ACTIVITY,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One listed item of a day (a dose, a carb entry, an event or a note) for the day's table."""

    local_ms: int
    kind: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class PeriodRecords:
    """Everything the daily view draws for a period, on the local time axis (ms)."""

    cgm: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
    meter: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
    boluses: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
    carbs: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
    basal_start: npt.NDArray[np.int64]
    basal_end: npt.NDArray[np.int64]
    basal_rate: npt.NDArray[np.float64]
    basal_kind: tuple[str, ...]
    entries: tuple[Entry, ...]

    def day(self, day: int) -> DayData:
        """The chart data of local day ``day`` (days since 1970-01-01), times in minutes after midnight."""
        start, end = day * DAY_MS, (day + 1) * DAY_MS

        def cut(
            pair: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]],
        ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
            inside = (pair[0] >= start) & (pair[0] < end)
            return (pair[0][inside] - start) / MINUTE_MS, pair[1][inside]

        overlapping = (self.basal_start < end) & (self.basal_end > start)
        b_start = (np.clip(self.basal_start[overlapping], start, end) - start) / MINUTE_MS
        b_end = (np.clip(self.basal_end[overlapping], start, end) - start) / MINUTE_MS
        kinds = tuple(k for k, keep in zip(self.basal_kind, overlapping.tolist(), strict=True) if keep)
        events = [
            e for e in self.entries if start <= e.local_ms < end and e.kind in ("event", "note", "activity")
        ]
        cgm, meter, boluses, carbs = cut(self.cgm), cut(self.meter), cut(self.boluses), cut(self.carbs)
        return DayData(
            cgm_min=cgm[0],
            cgm_mgdl=cgm[1],
            meter_min=meter[0],
            meter_mgdl=meter[1],
            bolus_min=boluses[0],
            bolus_u=boluses[1],
            carbs_min=carbs[0],
            carbs_g=carbs[1],
            basal_start_min=b_start,
            basal_end_min=b_end,
            basal_rate=self.basal_rate[overlapping],
            basal_kind=kinds,
            event_min=np.array([(e.local_ms - start) / MINUTE_MS for e in events], np.float64),
            event_label=tuple(e.text for e in events),
        )

    def entries_of(self, day: int) -> list[Entry]:
        """The day's listed items in time order."""
        start, end = day * DAY_MS, (day + 1) * DAY_MS
        return [e for e in self.entries if start <= e.local_ms < end]


def _pair(times: list[int], values: list[float]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    return np.array(times, np.int64), np.array(values, np.float64)


def _counted_cgm(session: Session, patient_id: str, rows: Sequence[Row[Any]]) -> set[tuple[int, int]] | None:
    """The (instant, device) of the CGM readings to draw when several devices hold some; else ``None``."""
    times: list[int] = []
    values: list[float] = []
    devices: list[int] = []
    for row in rows:
        if row.type == RecordType.CBG and row.subtype == "sensor" and row.value is not None:
            times.append(row.time_ms)
            values.append(row.value)
            devices.append(row.device_seq)
    if len(set(devices)) < 2:  # noqa: PLR2004 - one source cannot repeat itself
        return None
    keep = distinct_readings(
        session,
        patient_id,
        np.array(times, np.int64),
        np.array(values, np.float64),
        np.array(devices, np.int64),
    )
    return {(t, d) for t, d, k in zip(times, devices, keep.tolist(), strict=True) if k}


def load_period_records(
    session: Session, patient_id: str, timezone: str, start_ms: int, end_ms: int
) -> PeriodRecords:
    """The patient's drawable records in ``[start_ms, end_ms)`` (UTC ms), basal from a day before."""
    rows = session.execute(
        select(
            Record.type,
            Record.subtype,
            Record.time_ms,
            Record.value,
            Record.duration_ms,
            Record.payload,
            Record.device_seq,
        )
        .where(
            Record.device_seq.in_(
                select(Device.seq).where(Device.patient_id == patient_id).scalar_subquery()
            ),
            Record.type.in_([t.value for t in _DRAWN]),
            Record.time_ms >= start_ms - BASAL_LOOKBACK_MS,
            Record.time_ms < end_ms,
        )
        .order_by(Record.time_ms, Record.id)  # one order on both engines
    ).all()
    utc = np.array([row[2] for row in rows], np.int64)
    local = (utc + utc_offsets_ms(utc, timezone)).tolist()
    cgm: tuple[list[int], list[float]] = ([], [])
    meter: tuple[list[int], list[float]] = ([], [])
    boluses: tuple[list[int], list[float]] = ([], [])
    carbs: tuple[list[int], list[float]] = ([], [])
    basal: list[tuple[int, int, float, str]] = []
    entries: list[Entry] = []
    place = note_place(patient_id)
    counted = _counted_cgm(session, patient_id, rows)
    for (kind, subtype, time_ms, value, duration, payload, device), at in zip(rows, local, strict=True):
        if kind == RecordType.BASAL:
            rate = np.nan if value is None else value  # unknown: a temporary basal given as a percentage
            basal.append((at, -1 if duration is None else duration, rate, subtype))
            continue
        if time_ms < start_ms:
            continue
        if kind == RecordType.CBG and subtype == "sensor" and value is not None:
            if counted is not None and (time_ms, device) not in counted:
                continue  # the same reading of the same sensor, from a better-ranked source
            cgm[0].append(at)
            cgm[1].append(value)
        elif kind == RecordType.SMBG and value is not None:
            meter[0].append(at)
            meter[1].append(value)
            entries.append(Entry(at, "meter", f"{subtype} reading {value:.0f} mg/dL"))
        elif kind in (RecordType.BOLUS, RecordType.INSULIN) and value:
            boluses[0].append(at)
            boluses[1].append(value)
            what = "bolus" if kind == RecordType.BOLUS else f"{subtype} insulin (pen)"
            entries.append(
                Entry(
                    at,
                    "dose",
                    f"{what} {value:.2f} U"
                    + (f" ({subtype})" if kind == RecordType.BOLUS and subtype != "normal" else ""),
                )
            )
        elif kind in (RecordType.WIZARD, RecordType.FOOD) and value:
            carbs[0].append(at)
            carbs[1].append(value)
            entries.append(
                Entry(
                    at,
                    "carbs",
                    f"{value:.0f} g carbohydrate"
                    + (" (bolus calculator)" if kind == RecordType.WIZARD else ""),
                )
            )
        elif kind == RecordType.DEVICE_EVENT and subtype != "other":
            text = _EVENT_LABELS.get(subtype) or str((payload or {}).get("text") or "alarm")
            entries.append(Entry(at, "event", text if subtype != "alarm" else f"alarm: {text}"))
        elif kind == RecordType.NOTE:
            opened = open_mapping(session, patient_id, payload, place) or {}
            entries.append(Entry(at, "note", f"note: {opened.get('text', '')}"))
        elif kind == RecordType.PHYSICAL_ACTIVITY:
            minutes = (duration or 0) // MINUTE_MS
            entries.append(Entry(at, "activity", f"{subtype} activity, {minutes} min"))
    segments = BasalSegments(
        start=np.array([b[0] for b in basal], np.int64),
        duration=np.array([b[1] for b in basal], np.int64),
        rate=np.array([b[2] for b in basal], np.float64),
        automated=np.array([b[3] == "automated" for b in basal], np.bool_),
    )
    order, ends = segment_ends(segments)
    return PeriodRecords(
        cgm=_pair(*cgm),
        meter=_pair(*meter),
        boluses=_pair(*boluses),
        carbs=_pair(*carbs),
        basal_start=segments.start[order],
        basal_end=ends,
        basal_rate=segments.rate[order],
        basal_kind=tuple(basal[i][3] for i in order.tolist()),
        entries=tuple(entries),
    )
