"""Tables of the accounts domain."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, String
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
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
