"""Tables of the records domain: uploads and the canonical records they brought."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base, UTCDateTime, new_id, utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
RecordId = BigInteger().with_variant(Integer(), "sqlite")


class Upload(Base):
    """One imported file: what it was, who brought it, when, and what it added."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    file_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(40))
    encoding: Mapped[str] = mapped_column(String(20))
    timezone: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    counts: Mapped[dict[str, int]] = mapped_column(JSONType)
    new_count: Mapped[int] = mapped_column(Integer)
    duplicate_count: Mapped[int] = mapped_column(Integer)
    rejected_count: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    first_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_ms: Mapped[int | None] = mapped_column(BigInteger)


class Record(Base):
    """One canonical datum.

    ``time_ms`` is the UTC instant in epoch milliseconds and ``utc_offset_min`` the source's offset,
    so the source's wall time is exactly ``time_ms + utc_offset_min * 60000`` (Tidepool's
    ``deviceTime = time + timezoneOffset``). Glucose is in mg/dL; ``orig_value``/``orig_unit`` keep
    what the file said. ``upload_id`` and ``source_line`` point at the raw row in the stored file.
    ``dedup_key`` completes the natural identity (device, type, instant, dedup key).
    """

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("device_id", "type", "time_ms", "dedup_key", name="uq_records_identity"),
        Index("ix_records_patient_type_time", "patient_id", "type", "time_ms"),
    )

    id: Mapped[int] = mapped_column(RecordId, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(20))
    subtype: Mapped[str] = mapped_column(String(20))
    time_ms: Mapped[int] = mapped_column(BigInteger)
    utc_offset_min: Mapped[int] = mapped_column(SmallInteger)
    value: Mapped[float | None] = mapped_column(Float)
    orig_value: Mapped[float | None] = mapped_column(Float)
    orig_unit: Mapped[str | None] = mapped_column(String(10))
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    annotation: Mapped[str | None] = mapped_column(String(20))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    source_line: Mapped[int] = mapped_column(Integer)
    dedup_key: Mapped[str] = mapped_column(String(120))
