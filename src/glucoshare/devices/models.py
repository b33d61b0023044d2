"""Tables of the devices domain."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from glucoshare.db.base import Base, UTCDateTime, new_id, utcnow


class Device(Base):
    """A physical device.

    ``device_key`` makes it unique: by serial number where the export gives one, otherwise per
    patient (a Dexcom Clarity export names the system but no serial).
    """

    __tablename__ = "devices"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    """Internal key that records refer to (compact); ``id`` is the public identifier."""
    id: Mapped[str] = mapped_column(String(32), unique=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    manufacturer: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    serial: Mapped[str | None] = mapped_column(String(100))
    device_key: Mapped[str] = mapped_column(String(400), unique=True)
    source_rank: Mapped[int | None] = mapped_column(SmallInteger)
    """The best route this device's data has come by (:mod:`glucoshare.analytics.sources`: 0 the
    maker's own export … 3 typed in); where two devices carry the same CGM readings, the better
    ranked one is counted. ``None``: no import has said (counted as an app relay)."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    identifiers: Mapped[list[DeviceIdentifier]] = relationship(
        back_populates="device", cascade="all, delete-orphan"
    )


class DeviceIdentifier(Base):
    """A further identifier of a device's parts, such as a Dexcom transmitter id.

    Each belongs to one device, so a file carrying another patient's transmitter is recognised and
    refused.
    """

    __tablename__ = "device_identifiers"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    device_seq: Mapped[int] = mapped_column(ForeignKey("devices.seq", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(100))

    device: Mapped[Device] = relationship(back_populates="identifiers")
