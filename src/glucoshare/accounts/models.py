"""Tables of the accounts domain."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, Float, String
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base, UTCDateTime, new_id, utcnow


class Patient(Base):
    """A person with diabetes whose device data Glucoshare holds."""

    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    birthdate: Mapped[dt.date | None] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    display_units: Mapped[str] = mapped_column(String(8))
    target_scheme: Mapped[str] = mapped_column(String(16), default="standard", server_default="standard")
    """``standard``, ``older``, ``pregnancy`` or ``custom`` (:mod:`glucoshare.analytics.ranges`)."""
    target_low_mgdl: Mapped[float | None] = mapped_column(Float)
    target_high_mgdl: Mapped[float | None] = mapped_column(Float)
    """The ends of a custom target range (mg/dL, inclusive)."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
