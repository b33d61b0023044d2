"""Tables of the records domain: uploads and the canonical records they brought."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base, UTCDateTime, new_id, utcnow
from glucoshare.vault.sealed import SealedText

JSONType = JSON().with_variant(JSONB(), "postgresql")

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
RecordId = BigInteger().with_variant(Integer(), "sqlite")


class Upload(Base):
    """One imported file: what it was, who brought it, when, and what it added."""

    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("patient_id", "client_key", name="uq_uploads_client_key"),)

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    """Internal key that records refer to (compact); ``id`` is the public identifier."""
    id: Mapped[str] = mapped_column(String(32), unique=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    device_seq: Mapped[int | None] = mapped_column(ForeignKey("devices.seq", ondelete="SET NULL"))
    file_name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    file_name = SealedText("file_name_sealed", subject="patient_id")
    """The name of the uploaded file (sealed: exports often carry the patient's name)."""
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(40))
    encoding: Mapped[str] = mapped_column(String(20))
    timezone: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(254))
    batch_id: Mapped[str | None] = mapped_column(String(32))
    """Shared by the uploads that arrived together: the files of one archive, folder or request
    (an importer may read a file's siblings, so a re-read needs them too)."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    counts: Mapped[dict[str, int]] = mapped_column(JSONType, default=dict)
    new_count: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    rejected_count: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    first_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_ms: Mapped[int | None] = mapped_column(BigInteger)
    first_record_id: Mapped[int | None] = mapped_column(BigInteger)
    """Lowest ``records.id`` this upload stored: with ``last_record_id`` it bounds the upload's
    records, so finding them needs no index on ``records.upload_seq`` (one less index to update
    on every inserted record)."""
    last_record_id: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(12), default="file", server_default="file")
    """``file``: an imported file. A data set of the upload API is ``open`` (its records are kept
    but not visible yet), then ``closed`` (visible, all at once); a ``continuous`` one (an app's,
    or the Nightscout API's) shows its records as they arrive."""
    client_key: Mapped[str | None] = mapped_column(String(100))
    """The client's name for a data set (opening it again with the same name finds it)."""
    line_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Records a data set has received so far (the next batch's first line follows them)."""


class Record(Base):
    """One canonical datum.

    ``time_ms`` is the UTC instant in epoch milliseconds and ``utc_offset_min`` the source's offset,
    so the source's wall time is exactly ``time_ms + utc_offset_min * 60000`` (Tidepool's
    ``deviceTime = time + timezoneOffset``). Glucose is in mg/dL; ``orig_value``/``orig_unit`` keep
    what the file said. ``upload_seq`` and ``source_line`` point at the raw row in the stored file.

    A record belongs to its device, and a device to one patient, so the patient is found through
    the device (assigning a device to a patient moves its records with it). The one index is the
    natural identity (device, type, instant, ``dedup_key``); it also serves every per-patient
    query, which reads the patient's few devices by type and time range.
    """

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("device_seq", "type", "time_ms", "dedup_key", name="uq_records_identity"),
    )

    id: Mapped[int] = mapped_column(RecordId, primary_key=True, autoincrement=True)
    device_seq: Mapped[int] = mapped_column(ForeignKey("devices.seq", ondelete="CASCADE"))
    upload_seq: Mapped[int] = mapped_column(Integer)
    """The upload that stored the record: ``uploads.seq``. Not a foreign key on purpose: a key
    would make deleting an upload scan every record (there is no index on this column, see
    :attr:`Upload.first_record_id`); the services delete an upload's records with it."""
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
