"""Outputs of the records domain (the ``import --json`` and ``uploads list --json`` shapes)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from glucoshare.devices.schemas import DeviceOut


class RejectedRowOut(BaseModel):
    """A row of a file that was not imported, and why."""

    line: int
    reason: str


class UploadOut(BaseModel):
    """One upload as CONTRACT.md shows it, plus provenance details."""

    id: str
    file: str
    format: str
    device: DeviceOut | None
    counts: dict[str, int]
    new: int
    duplicates: int
    first: str | None
    last: str | None
    patient_id: str
    timezone: str
    encoding: str
    sha256: str
    size_bytes: int
    created_at: dt.datetime
    rejected_count: int
    rejected: list[RejectedRowOut] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def iso_utc(time_ms: int | None) -> str | None:
    """An epoch-millisecond instant as ISO 8601 in UTC (``2024-05-01T08:30:00Z``)."""
    if time_ms is None:
        return None
    instant = dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.UTC)
    spec = "milliseconds" if time_ms % 1000 else "seconds"
    return instant.isoformat(timespec=spec).replace("+00:00", "Z")


class CgmSummaryOut(BaseModel):
    """The CGM summary of a patient's regular sensor series (glucose mg/dL, percentages 0–100)."""

    readings: int
    mean_mgdl: float | None
    sd_mgdl: float | None
    cv_pct: float | None
    gmi_pct: float | None
    time_very_low_pct: float | None
    time_low_pct: float | None
    time_in_range_pct: float | None
    time_high_pct: float | None
    time_very_high_pct: float | None


class PatientOverviewOut(BaseModel):
    """Everything stored for a patient, in brief."""

    uploads: int
    counts: dict[str, int]
    first: str | None
    last: str | None
    cgm: CgmSummaryOut
