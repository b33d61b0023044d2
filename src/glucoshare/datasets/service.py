"""Data sets of the native upload API: open one for a device, append records, close it.

A data set is an upload whose records arrive in requests instead of a file. Each accepted request
is kept as it came (:class:`DatasetBatch`, sealed): those are the raw rows the records point at.
An ``open`` data set stores its records when it is closed, all in one transaction, so readers see
all of them or none; a ``continuous`` one (an app that uploads as readings arrive) stores each
request's records at once. Records are deduplicated by their natural key like every import, so a
retried request adds nothing; a request sent again with the same ``Idempotency-Key`` gets the
first answer.

The request or command owns the transaction: nothing here commits.
"""

from __future__ import annotations

import hashlib
import json
import zoneinfo
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.schemas import check_timezone
from glucoshare.datasets.errors import (
    DatasetClosedError,
    DatasetNotFoundError,
    RecordsBodyError,
    TooManyRecordsError,
)
from glucoshare.datasets.models import DatasetBatch
from glucoshare.datasets.records import MAX_RECORDS, validate_records
from glucoshare.datasets.schemas import AppendOut, DatasetIn, DatasetOut
from glucoshare.devices.models import Device
from glucoshare.devices.schemas import DeviceOut
from glucoshare.devices.service import resolve_device
from glucoshare.ingest.base import DeviceInfo, ParsedRecord, ParseResult
from glucoshare.ingest.registry import SOURCE_RANKS
from glucoshare.ingest.service import store_parsed
from glucoshare.records.models import Record, Upload
from glucoshare.records.schemas import iso_utc
from glucoshare.vault.cipher import seal
from glucoshare.vault.service import data_key, open_value

API_FORMAT: Final = "upload_api"
"""The format of a data set whose client names no export format it read."""
DEVICE_KEY: Final = "device"
"""The one device key of a data set's parsed records (a data set belongs to one device)."""


def _place(upload: Upload, batch_seq: int) -> str:
    return f"dataset_batches:{upload.patient_id}:{upload.id}:{batch_seq}"


def open_dataset(session: Session, *, patient: Patient, given: DatasetIn, actor: str) -> Upload:
    """Open a data set for one of the patient's devices (or find the one opened under the same ``name``).

    ``given.source_format`` names the export format the records were read from (the
    command-line uploader reads vendor files itself), so that deduplication across sources ranks
    them like the file; any other client's records rank as an app relay.
    """
    if given.name is not None:
        existing = session.scalar(
            select(Upload).where(Upload.patient_id == patient.id, Upload.client_key == given.name)
        )
        if existing is not None:
            return existing
    zone = check_timezone(given.timezone) if given.timezone else patient.timezone
    device = resolve_device(
        session,
        patient_id=patient.id,
        manufacturer=given.device.manufacturer,
        model=given.device.model,
        serial=given.device.serial,
    )
    known = given.source_format if given.source_format in SOURCE_RANKS else API_FORMAT
    upload = Upload(
        patient_id=patient.id,
        device_seq=device.seq,
        file_name=f"{device.manufacturer} {device.model} (upload API)",
        sha256="0" * 64,  # set below from the id: a data set has no file
        size_bytes=0,
        format=known,
        encoding="json",
        timezone=zone,
        uploaded_by=actor,
        state="continuous" if given.continuous else "open",
        client_key=given.name,
        counts={},
    )
    session.add(upload)
    session.flush()
    upload.sha256 = hashlib.sha256(f"dataset:{upload.id}".encode()).hexdigest()
    return upload


def get_dataset(session: Session, dataset_id: str, patient_id: str | None = None) -> Upload:
    """A data set by its id (of ``patient_id`` when given); :class:`DatasetNotFoundError` else."""
    upload = session.scalar(select(Upload).where(Upload.id == dataset_id))
    if (
        upload is None
        or upload.state == "file"
        or (patient_id is not None and upload.patient_id != patient_id)
    ):
        msg = "no data set with this id"
        raise DatasetNotFoundError(msg)
    return upload


def _device_key_info(session: Session, upload: Upload) -> dict[str, DeviceInfo]:
    device = session.get(Device, upload.device_seq) if upload.device_seq is not None else None
    if device is None:
        msg = "the data set's device was removed; open a new data set"
        raise DatasetClosedError(msg)
    return {
        DEVICE_KEY: DeviceInfo(manufacturer=device.manufacturer, model=device.model, serial=device.serial)
    }


def append_records(
    session: Session,
    *,
    patient: Patient,
    upload: Upload,
    records: Sequence[Any],
    request_key: str | None,
) -> AppendOut:
    """Add a request's records to a data set (all of them, or none with every error named).

    Raises :class:`TooManyRecordsError` beyond :data:`MAX_RECORDS` (the client halves the batch),
    :class:`~glucoshare.datasets.errors.RecordsInvalidError` with a JSON pointer per fault, and
    :class:`DatasetClosedError` for a closed data set.
    """
    if upload.state not in ("open", "continuous"):
        msg = "the data set is closed; open a new one for more records"
        raise DatasetClosedError(msg)
    if len(records) > MAX_RECORDS:
        msg = f"at most {MAX_RECORDS:,} records per request; send {len(records):,} in smaller batches"
        raise TooManyRecordsError(msg)
    if request_key is not None:
        done = session.scalar(
            select(DatasetBatch).where(
                DatasetBatch.upload_seq == upload.seq, DatasetBatch.request_key == request_key
            )
        )
        if done is not None:
            return AppendOut(
                accepted=done.count, new=done.new_count, first_line=done.first_line, repeated=True
            )
    first_line = upload.line_count + 1
    parsed = validate_records(
        records, zone=zoneinfo.ZoneInfo(upload.timezone), device=DEVICE_KEY, first_line=first_line
    )
    batch = DatasetBatch(
        upload_seq=upload.seq, first_line=first_line, count=len(records), request_key=request_key
    )
    batch.body_sealed = b""
    session.add(batch)
    session.flush()
    plain = json.dumps(list(records), separators=(",", ":")).encode()
    batch.body_sealed = seal(data_key(session, patient.id), plain, _place(upload, batch.seq))
    upload.line_count += len(records)
    upload.size_bytes += len(plain)
    new: int | None = None
    if upload.state == "continuous" and parsed:
        run = store_parsed(
            session,
            patient=patient,
            upload=upload,
            result=ParseResult(
                records=iter(parsed), devices=_device_key_info(session, upload), primary_device=DEVICE_KEY
            ),
        )
        new = run.new
        batch.new_count = run.new
    session.flush()
    return AppendOut(accepted=len(records), new=new, first_line=first_line, repeated=False)


def dataset_records(session: Session, upload: Upload) -> list[ParsedRecord]:
    """Every record a data set's batches hold, read again from the kept requests (in order)."""
    zone = zoneinfo.ZoneInfo(upload.timezone)
    out: list[ParsedRecord] = []
    batches = session.scalars(
        select(DatasetBatch).where(DatasetBatch.upload_seq == upload.seq).order_by(DatasetBatch.first_line)
    )
    for batch in batches:
        plain = open_value(session, upload.patient_id, batch.body_sealed, _place(upload, batch.seq))
        out.extend(
            validate_records(json.loads(plain), zone=zone, device=DEVICE_KEY, first_line=batch.first_line)
        )
    return out


def restore_dataset(session: Session, patient: Patient, upload: Upload) -> int:
    """Store again the records of a data set that another upload's removal took away; how many came back."""
    result = ParseResult(
        records=iter(dataset_records(session, upload)),
        devices=_device_key_info(session, upload),
        primary_device=DEVICE_KEY,
    )
    return store_parsed(session, patient=patient, upload=upload, result=result, count=False).new


def records_of(body: bytes) -> list[Any]:
    """The ``records`` array of a request body ``{"records": [...]}``; :class:`RecordsBodyError` else."""
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        msg = 'the body is not JSON; send {"records": [...]}'
        raise RecordsBodyError(msg) from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("records"), list):
        msg = 'the body must be a JSON object with a "records" array'
        raise RecordsBodyError(msg)
    extra = sorted(set(parsed) - {"records"})
    if extra:
        msg = f"unknown field(s) beside records: {', '.join(extra)}"
        raise RecordsBodyError(msg)
    records: list[Any] = parsed["records"]
    return records


def close_dataset(session: Session, *, patient: Patient, upload: Upload) -> Upload:
    """Store an open data set's records, all at once; closing it again changes nothing."""
    if upload.state == "closed":
        return upload
    if upload.state == "continuous":
        msg = "a continuous data set shows its records as they arrive and is not closed"
        raise DatasetClosedError(msg)
    records = dataset_records(session, upload)
    if records:
        store_parsed(
            session,
            patient=patient,
            upload=upload,
            result=ParseResult(
                records=iter(records), devices=_device_key_info(session, upload), primary_device=DEVICE_KEY
            ),
        )
    upload.state = "closed"
    session.flush()
    return upload


def device_latest(session: Session, device_seq: int) -> dict[str, str]:
    """The newest instant the server holds for each record type of a device (UTC ISO 8601).

    The command-line uploader sends only what is newer (issue 9: only what the server lacks).
    """
    rows = session.execute(
        select(Record.type, func.max(Record.time_ms))
        .where(Record.device_seq == device_seq)
        .group_by(Record.type)
    )
    return {kind: iso for kind, newest in rows if (iso := iso_utc(newest)) is not None}


def dataset_out(session: Session, upload: Upload) -> DatasetOut:
    """The answer shape of a data set."""
    device = session.get(Device, upload.device_seq) if upload.device_seq is not None else None
    return DatasetOut(
        id=upload.id,
        patient_id=upload.patient_id,
        state=upload.state,
        name=upload.client_key,
        format=upload.format,
        timezone=upload.timezone,
        device=DeviceOut.model_validate(device) if device is not None else None,
        records_received=upload.line_count,
        counts=dict(upload.counts or {}),
        new=upload.new_count,
        duplicates=upload.duplicate_count,
        first=iso_utc(upload.first_ms),
        last=iso_utc(upload.last_ms),
        created_at=upload.created_at,
        device_latest=device_latest(session, device.seq) if device is not None else {},
    )
