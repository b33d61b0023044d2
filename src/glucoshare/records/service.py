"""Store, list and delete records and uploads. Services flush but never commit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from glucoshare.devices.models import Device
from glucoshare.devices.schemas import DeviceOut
from glucoshare.records.errors import UploadNotFoundError
from glucoshare.records.models import Record, Upload
from glucoshare.records.schemas import RejectedRowOut, UploadOut, iso_utc
from glucoshare.records.vocabulary import RecordType

BATCH_SIZE = 5000
_MAX_KEY = 120

RECORD_COLUMNS = (
    "patient_id",
    "device_id",
    "upload_id",
    "type",
    "subtype",
    "time_ms",
    "utc_offset_min",
    "value",
    "orig_value",
    "orig_unit",
    "duration_ms",
    "annotation",
    "payload",
    "source_line",
    "dedup_key",
)


def dedup_key(record_type: str, subtype: str, value: float | None, identity: str) -> str:
    """The part of a record's natural identity beyond (device, type, instant).

    A CGM reading is identified by its device, instant and origin (sensor or scan) alone, so a
    re-export that rounds differently cannot double it; other types add their value (6
    significant digits) and the importer's ``identity`` text (an alarm's name, a note's text).
    """
    if record_type == RecordType.CBG:
        key = subtype
    else:
        number = "" if value is None else f"{value:.6g}"
        key = f"{subtype}|{number}|{identity}"
    if len(key) > _MAX_KEY:
        key = "sha1:" + hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()
    return key


class RecordWriter:
    """Insert records in batches; a record whose natural identity is already stored is skipped.

    Rows are tuples in :data:`RECORD_COLUMNS` order. Works inside the caller's transaction.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._rows: list[dict[str, Any]] = []
        dialect = session.get_bind().dialect.name
        table = Record.__table__
        if dialect == "postgresql":
            self._stmt: Any = postgresql.insert(table).on_conflict_do_nothing()
        elif dialect == "sqlite":
            self._stmt = sqlite.insert(table).on_conflict_do_nothing()
        else:  # pragma: no cover - only the two engines are supported
            msg = f"unsupported database {dialect}"
            raise RuntimeError(msg)

    def add(self, row: Sequence[Any]) -> None:
        """Queue one row (a tuple in :data:`RECORD_COLUMNS` order)."""
        self._rows.append(dict(zip(RECORD_COLUMNS, row, strict=True)))
        if len(self._rows) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows."""
        if self._rows:
            self._session.execute(self._stmt, self._rows)
            self._rows = []


def count_upload_records(session: Session, upload_id: str) -> int:
    """How many stored records came from this upload."""
    return session.scalar(select(func.count()).select_from(Record).where(Record.upload_id == upload_id)) or 0


def upload_out(upload: Upload, device: Device | None, warnings: Sequence[str] = ()) -> UploadOut:
    """The output shape of an upload."""
    return UploadOut(
        id=upload.id,
        file=upload.file_name,
        format=upload.format,
        device=DeviceOut.model_validate(device) if device is not None else None,
        counts=dict(upload.counts),
        new=upload.new_count,
        duplicates=upload.duplicate_count,
        first=iso_utc(upload.first_ms),
        last=iso_utc(upload.last_ms),
        patient_id=upload.patient_id,
        timezone=upload.timezone,
        encoding=upload.encoding,
        sha256=upload.sha256,
        size_bytes=upload.size_bytes,
        created_at=upload.created_at,
        rejected_count=upload.rejected_count,
        rejected=[RejectedRowOut.model_validate(r) for r in upload.rejected],
        warnings=list(warnings),
    )


def list_uploads(session: Session, patient_id: str) -> list[UploadOut]:
    """The patient's uploads, oldest first."""
    rows = session.execute(
        select(Upload, Device)
        .outerjoin(Device, Device.id == Upload.device_id)
        .where(Upload.patient_id == patient_id)
        .order_by(Upload.created_at, Upload.id)
    ).all()
    return [upload_out(upload, device) for upload, device in rows]


def get_upload(session: Session, upload_id: str) -> Upload:
    """One upload by id."""
    upload = session.get(Upload, upload_id.strip())
    if upload is None:
        msg = "no upload with this id"
        raise UploadNotFoundError(msg)
    return upload


def delete_upload(session: Session, upload_id: str) -> tuple[Upload, int]:
    """Delete one upload and exactly the records it stored; return it and how many records went."""
    upload = get_upload(session, upload_id)
    removed = session.execute(delete(Record).where(Record.upload_id == upload.id)).rowcount
    session.delete(upload)
    session.flush()
    return upload, int(removed or 0)


def records_query(
    patient_id: str, *, start_ms: int | None = None, end_ms: int | None = None
) -> Select[tuple[Record, Device]]:
    """The patient's records with their device, in time order, optionally within [start, end)."""
    query = (
        select(Record, Device)
        .join(Device, Device.id == Record.device_id)
        .where(Record.patient_id == patient_id)
    )
    if start_ms is not None:
        query = query.where(Record.time_ms >= start_ms)
    if end_ms is not None:
        query = query.where(Record.time_ms < end_ms)
    return query.order_by(Record.time_ms, Record.type, Record.id)


def iter_records(
    session: Session, patient_id: str, *, start_ms: int | None = None, end_ms: int | None = None
) -> Iterator[tuple[Record, Device]]:
    """Stream the patient's records with their device, in time order."""
    result = session.execute(
        records_query(patient_id, start_ms=start_ms, end_ms=end_ms).execution_options(yield_per=2000)
    )
    for record, device in result.tuples():
        yield record, device
