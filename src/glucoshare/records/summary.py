"""A patient's overview: devices, uploads, record counts and a CGM summary of the stored data."""

from __future__ import annotations

import dataclasses

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from glucoshare.analytics.summary import GlucoseSummary, glucose_summary
from glucoshare.devices.models import Device
from glucoshare.records.models import Record, Upload
from glucoshare.records.vocabulary import RecordType


@dataclasses.dataclass(frozen=True, slots=True)
class PatientOverview:
    """What a patient has: counts per record type, the time span, and the CGM summary."""

    uploads: int
    counts: dict[str, int]
    first_ms: int | None
    last_ms: int | None
    cgm: GlucoseSummary


def patient_overview(session: Session, patient_id: str) -> PatientOverview:
    """Overview of everything stored for one patient (CGM summary over the regular sensor series)."""
    devices = select(Device.seq).where(Device.patient_id == patient_id).scalar_subquery()
    counts: dict[str, int] = {
        kind: count
        for kind, count in session.execute(
            select(Record.type, func.count()).where(Record.device_seq.in_(devices)).group_by(Record.type)
        )
    }
    first, last = session.execute(
        select(func.min(Record.time_ms), func.max(Record.time_ms)).where(Record.device_seq.in_(devices))
    ).one()
    uploads = session.scalar(select(func.count()).select_from(Upload).where(Upload.patient_id == patient_id))
    values = np.fromiter(
        session.scalars(
            select(Record.value).where(
                Record.device_seq.in_(devices),
                Record.type == RecordType.CBG,
                Record.subtype == "sensor",
                Record.value.is_not(None),
            )
        ),
        dtype=np.float64,
    )
    return PatientOverview(
        uploads=int(uploads or 0),
        counts={k: counts[k] for k in sorted(counts)},
        first_ms=first,
        last_ms=last,
        cgm=glucose_summary(values),
    )
