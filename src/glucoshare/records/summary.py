"""A patient's overview: devices, uploads, record counts and a CGM summary of the stored data."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from glucoshare.analytics.summary import glucose_summary
from glucoshare.devices.models import Device
from glucoshare.records.models import Record, Upload
from glucoshare.records.schemas import CgmSummaryOut, PatientOverviewOut, iso_utc
from glucoshare.records.vocabulary import RecordType


def patient_overview(session: Session, patient_id: str) -> PatientOverviewOut:
    """Overview of everything stored for one patient (CGM summary over the regular sensor series)."""
    devices = select(Device.seq).where(Device.patient_id == patient_id).scalar_subquery()
    counts: dict[str, int] = {
        str(row[0]): int(row[1])
        for row in session.execute(
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
    cgm = glucose_summary(values)
    return PatientOverviewOut(
        uploads=int(uploads or 0),
        counts={k: counts[k] for k in sorted(counts)},
        first=iso_utc(first),
        last=iso_utc(last),
        cgm=CgmSummaryOut(
            readings=cgm.readings,
            mean_mgdl=cgm.mean_mgdl,
            sd_mgdl=cgm.sd_mgdl,
            cv_pct=cgm.cv_pct,
            gmi_pct=cgm.gmi_pct,
            time_very_low_pct=cgm.very_low_pct,
            time_low_pct=cgm.low_pct,
            time_in_range_pct=cgm.in_range_pct,
            time_high_pct=cgm.high_pct,
            time_very_high_pct=cgm.very_high_pct,
        ),
    )
