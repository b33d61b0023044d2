"""Tables of the summaries domain: per-patient daily CGM aggregates and what needs recomputing."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base, UTCDateTime, utcnow


class CgmSums:
    """The sums and counts of CGM readings that add up across days and patients."""

    readings: Mapped[int] = mapped_column(Integer)
    very_low: Mapped[int] = mapped_column(Integer)
    """Readings below 54 mg/dL (the bands of :mod:`glucoshare.analytics.ranges`)."""
    low: Mapped[int] = mapped_column(Integer)
    in_range: Mapped[int] = mapped_column(Integer)
    high: Mapped[int] = mapped_column(Integer)
    very_high: Mapped[int] = mapped_column(Integer)
    tight: Mapped[int] = mapped_column(Integer)
    extreme_high: Mapped[int] = mapped_column(Integer)
    """Readings at or above 350 mg/dL (Tidepool's "extreme high")."""
    sum_mgdl: Mapped[float] = mapped_column(Float)
    sum_sq_mgdl: Mapped[float] = mapped_column(Float)


class DailySummary(CgmSums, Base):
    """One patient's CGM readings of one local day, aggregated.

    Sums and counts only, so that any period's figures for a whole clinic add up from these rows
    (mean and SD from the sums; band percentages from the counts; sensor use from ``readings`` ×
    ``interval_min``) without reading the raw records again.
    """

    __tablename__ = "daily_summaries"

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Local calendar day in the patient's time zone, as days since 1970-01-01."""
    interval_min: Mapped[int] = mapped_column(Integer)
    """The sampling interval of the day's readings (minutes per reading, for sensor use)."""
    last_ms: Mapped[int] = mapped_column(BigInteger)
    """UTC instant of the day's last reading."""


class SummaryBacklog(Base):
    """A patient whose daily summaries are out of date between two instants (data landed)."""

    __tablename__ = "summary_backlog"

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True)
    first_ms: Mapped[int] = mapped_column(BigInteger)
    last_ms: Mapped[int] = mapped_column(BigInteger)
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(String(40))


class PeriodSummary(CgmSums, Base):
    """One patient's aggregates summed over the last ``days`` days of data, or the ``days`` before.

    The last days end with the local day of the patient's latest reading (``last_day``), as
    Tidepool's summaries do, so they stay valid until data lands; kept for the triage periods (1, 7,
    14 and 30 days) and rewritten with the daily summaries.
    """

    __tablename__ = "period_summaries"

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True)
    days: Mapped[int] = mapped_column(Integer, primary_key=True)
    previous: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    last_day: Mapped[int] = mapped_column(Integer)
    last_ms: Mapped[int] = mapped_column(BigInteger)
    minutes: Mapped[float] = mapped_column(Float)
    """Minutes the readings cover (readings × sampling interval)."""
